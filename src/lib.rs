//! Rockshard's broker, NameServer and admin client, as a library shared by the
//! `rockshard` binary, the load tool (`tools/bench`) and the tests.
//!
//! Map:
//! - `remoting`: sockets. A glommio server that turns a connection's bytes into
//!   [`rockshard_net::RemotingCommand`]s and hands them to a service, and a pipelined
//!   client for the other direction (broker → NameServer, admin, load tool).
//! - `namesrv`: the route registry (pure table + the request handler) and its server.
//! - `broker`: one shard per core; each owns a store, its consumer groups, offsets,
//!   long-polling waiters and delayed messages, and registers as `<name>-s<shard>`.
//!   In layers (`state` → `ops` → `handlers`/`tasks`, see its `mod.rs`).
//! - `config`: the broker's settings from a TOML file and flags.
//! - `dir_lock`: one broker per data directory, and `store inspect` kept off live ones.
//! - `admin`: what `rockshard admin` does, over the remoting protocol (it knows the
//!   broker only by its protocol: `net` and the remoting client).
//! - `logs`: repeated log lines shown once in full, then as a count per interval
//!   (`logs::RateLimited`). Defined in the storage crate, whose retry loops use it too.
//!
//! Threading: everything here runs on glommio executors, one per shard, plus one for the
//! embedded NameServer; state is never shared across executors except through owned
//! messages (see `broker::ops::control`). No `RefCell` borrow is held across an
//! `.await`: clippy's `await_holding_refcell_ref` is denied for the whole crate, and the
//! broker's shard state is lent only to synchronous closures (`broker::state::StateCell`).

// A borrow held across an `.await` lets another task of the same executor borrow the
// same cell and panic (or see it half changed); the rule is checked, not just written.
#![deny(clippy::await_holding_refcell_ref)]

pub mod admin;
pub mod broker;
pub mod config;
pub mod dir_lock;
pub mod error;
pub mod limits;
pub use rockshard_storage::logs;
pub mod namesrv;
pub mod process;
pub mod remoting;

pub use error::{Error, Result};
