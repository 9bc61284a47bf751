//! The broker, in layers (being moved into them): `state/` (pure tables), `ops/` (shard
//! operations), `handlers/` (request handlers) and `tasks/` (background tasks), started
//! by `start`.

pub mod handlers;
pub mod ops;
mod start;
pub mod state;
pub mod tasks;

use std::time::{SystemTime, UNIX_EPOCH};

// The modules under their old names until they are split along the layers.
pub use handlers::{admin, pull, send, sendback};
pub use ops as shard;
pub use ops::delay as schedule;
pub use ops::{control, replication, topics};
pub use start::run;
pub use state::{groups, locks, offsets};
pub use tasks::register;

/// Wall-clock milliseconds, as RocketMQ timestamps are.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
