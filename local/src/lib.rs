//! Wake-up primitives for the tasks of one glommio executor: what a shard's store, its
//! replica, its network server and the load tool use to wait for each other without
//! spinning (GLOMMIO-NOTES: a task that spins on `yield_now` starves the reactor).
//!
//! - [`Notify`]: wakes one waiting task; a notification nobody waited for is kept (once).
//! - [`completion`]: a one-shot result slot the store completes and an appender awaits.
//! - [`oneshot`]: a one-shot channel whose receiver resolves to `None` when the sender is
//!   dropped without a value, so a waiter can never hang on a forgotten promise.
//! - [`Signal`]: a level-triggered flag many tasks wait on (shutdown, "stop producing").
//!
//! Everything here lives on one executor: `Rc`/`Cell`/`RefCell`, no atomics, nothing
//! `Send`. Borrows never outlive a call, so no `RefCell` borrow crosses an `.await`.
//!
//! It is its own crate, below the storage, replication and network code, so that none of
//! them depends on another only for these (the server used to take `Notify` from the
//! storage crate). Deliberately not here: anything between executors (glommio's shared
//! channels do that), and timers beyond [`Signal::sleep`].

mod completion;
mod notify;
pub mod oneshot;
mod signal;

pub use completion::{completion, Completer, Completion};
pub use notify::{Notified, Notify};
pub use signal::{Signal, SignalWait};
