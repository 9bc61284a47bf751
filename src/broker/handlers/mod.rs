//! The top layer of the broker, beside the background tasks: request handlers, one file
//! per concern (the mini-redis split). A handler decodes its request's header and body,
//! checks what only the request can get wrong, calls the shard's operations, and builds
//! the answer.
//!
//! Files: `send` (sends), `pull` (pulls, long polling), `groups` (heartbeats, clients,
//! consumer lists and connections), `offsets` (consumer and queue offsets, consume
//! stats, offset resets), `locks` (orderly consumption), `sendback` (retries, dead
//! letters, transaction ends), `topics` (creation, deletion, configs, stats), `messages`
//! (view, query), `runtime` (runtime info, delay progress), `replication` (Raft
//! messages and status), and `answer` (the answer shapes and the one mapping from
//! internal errors to response codes). Which request code goes to which handler, and
//! whether it needs the leader, is `dispatch`'s table.
//!
//! Invariants: a handler reaches shard state only through `ops` (the `Shard`'s fields
//! are private to it) and never another handler; it imports `answer`, `ops` and
//! `state`, never `tasks`. Every failure of ours is answered through
//! `answer::failure`, so its code is decided in one place. A handler returns its
//! refusals even for oneway requests: the dispatcher logs them and drops the answer.
//!
//! Runs on the shard's executor, one task per request.
//!
//! Deliberately not here: the leader check and the oneway rule (the dispatcher's), and
//! anything that runs without a request (`tasks`).

pub mod answer;
pub mod groups;
pub mod locks;
pub mod messages;
pub mod offsets;
pub mod pull;
pub mod replication;
pub mod runtime;
pub mod send;
pub mod sendback;
pub mod topics;
