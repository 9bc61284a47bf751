//! Named limits of the broker and NameServer, each with the reason for its value.

/// Requests one connection may have running at once before we stop reading from it.
/// Far above what a client keeps in flight (the load tool's default is 256), low enough
/// that one connection cannot flood a shard's memory with waiting requests.
pub const CONNECTION_IN_FLIGHT_MAX: usize = 4096;

/// Unwritten answer bytes one connection may have queued before we stop reading its
/// requests: a client that does not read its answers must not grow our memory.
pub const CONNECTION_OUT_BUFFER_MAX_BYTES: usize = 64 * 1024 * 1024;

/// How much a connection reads per syscall: enough for 64 one-KiB requests at once.
pub const CONNECTION_READ_CHUNK_BYTES: usize = 64 * 1024;

/// How long shutdown waits for in-flight requests (and their answers) before closing
/// anyway. Longer than a sync flush timeout (5 s), so a sync send still gets its answer.
pub const SHUTDOWN_DRAIN_MAX_MS: u64 = 8_000;
