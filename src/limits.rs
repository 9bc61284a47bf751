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

/// Requests one remoting client connection keeps waiting for answers at once; a further
/// request waits for a slot. Above the load tool's deepest pipelines (a few hundred per
/// connection), and small enough that a stalled peer pins only a bounded table.
pub const CLIENT_PENDING_MAX: usize = 4096;

/// Smallest read a remoting client asks for: a few answers' worth, and the size a quiet
/// connection shrinks back to, so an idle connection does not zero large buffers.
pub const CLIENT_READ_CHUNK_MIN_BYTES: usize = 4 * 1024;

/// Largest read a remoting client asks for (unless the frame being received is bigger):
/// a full pull response (RocketMQ returns up to 256 KiB from page cache) in one syscall.
pub const CLIENT_READ_CHUNK_MAX_BYTES: usize = 256 * 1024;

/// Outgoing bytes a remoting client queues before new requests wait for the writer: a
/// peer that stops reading must not make us buffer without bound. 4 MiB is many batches
/// of the load tool's largest requests, so the writer never starves below it.
pub const CLIENT_OUT_QUEUE_HIGH_WATER_BYTES: usize = 4 * 1024 * 1024;

/// The write buffer a remoting client keeps between writes; a larger one (grown by a
/// big frame) is freed after use rather than held for the connection's lifetime.
pub const CLIENT_WRITE_BUFFER_KEEP_MAX_BYTES: usize = 1024 * 1024;

/// How long closing a remoting client waits for queued frames (oneway requests sent just
/// before) to be written; a peer that does not read must not block shutdown.
pub const CLIENT_CLOSE_FLUSH_MAX_MS: u64 = 1_000;
