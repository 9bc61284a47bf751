//! Named limits of the broker and NameServer, each with the reason for its value.

/// Requests one connection may have running at once before we stop reading from it.
/// Far above what a client keeps in flight (the load tool's default is 256), low enough
/// that one connection cannot flood a shard's memory with waiting requests.
pub const CONNECTION_IN_FLIGHT_MAX: usize = 4096;

/// Unwritten answer bytes one connection may have queued before we stop reading its
/// requests: a client that does not read its answers must not grow our memory.
pub const CONNECTION_OUT_BUFFER_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Unwritten answer bytes all connections of one listener may hold together before
/// those with answers waiting stop reading requests: a pull answer is up to 8 MiB for a
/// request of a few hundred bytes, so without it a thousand clients that never read
/// could make a shard hold a thousand out buffers. Far above what live consumers keep
/// queued (they read as fast as the loopback or NIC carries it).
pub const LISTENER_UNWRITTEN_BYTES_MAX: usize = 512 * 1024 * 1024;

/// How much a connection reads per syscall: enough for 64 one-KiB requests at once.
pub const CONNECTION_READ_CHUNK_BYTES: usize = 64 * 1024;
/// Smallest read a connection asks for, and what a quiet one shrinks back to: a few
/// requests' worth, so an idle connection does not zero (or hold) large buffers. The
/// server twin of `CLIENT_READ_CHUNK_MIN_BYTES`.
pub const CONNECTION_READ_CHUNK_MIN_BYTES: usize = 4 * 1024;

/// Connections one listener (a shard's port, the NameServer's) keeps open at once; more
/// are closed as soon as they are accepted, with a WARN. Far above what clients open (a
/// RocketMQ client keeps one connection per broker address), and at the few KiB an idle
/// connection costs, a bound on what a connection flood can take.
pub const CONNECTIONS_PER_LISTENER_DEFAULT_MAX: usize = 10_000;

/// A connection that sends nothing for this long while no request of it runs is closed:
/// RocketMQ's `serverChannelMaxIdleTimeSeconds` (clients and brokers heartbeat every 30 s,
/// so a live peer is never idle this long).
pub const CONNECTION_IDLE_TIMEOUT_DEFAULT_MS: u64 = 120_000;

/// A frame whose first bytes arrived this long ago and is still incomplete closes its
/// connection: ten times a RocketMQ client's default send timeout (3 s), so the client
/// gave up on it long before; a peer trickling bytes cannot hold a buffer for ever.
pub const FRAME_TIMEOUT_DEFAULT_MS: u64 = 30_000;

/// Bytes all frames still arriving may hold in read buffers, in the whole process; past
/// it the oldest such frame is dropped with its connection. Room for 64 producers each
/// in the middle of a 4 MiB message, far below the memory of any machine we run on.
pub const PARTIAL_FRAME_BYTES_MAX: usize = 256 * 1024 * 1024;

/// A frame still arriving counts against `PARTIAL_FRAME_BYTES_MAX` only once its buffer
/// passes this: the tail of an ordinary pipelined read (a part of a 1 KiB request) then
/// never touches the process-wide counter, and 10,000 connections below it hold at most
/// 640 MiB only if each really sent its share.
pub const PARTIAL_FRAME_UNCOUNTED_BYTES: usize = 64 * 1024;

/// How often a listener's sweeper looks for idle connections and stuck frames: a quarter
/// of the shorter timeout, within these bounds (a round walks every connection).
pub const CONNECTION_SWEEP_INTERVAL_MAX_MS: u64 = 1_000;
pub const CONNECTION_SWEEP_INTERVAL_MIN_MS: u64 = 10;

/// A listener logs each kind of refusal (too many connections, idle, frame timeout,
/// memory bound) at most this often, with the count of those it did not log.
pub const REFUSAL_WARN_INTERVAL_MS: u64 = 10_000;

/// How long a bind of a port in use is tried again: a `kill -9`ed process's listening
/// sockets outlive it while the kernel tears down its io_uring instance (tens of ms).
pub const BIND_RETRY_MAX_MS: u64 = 3_000;
pub const BIND_RETRY_INTERVAL_MS: u64 = 20;

/// How long shutdown waits for in-flight requests (and their answers) before closing
/// anyway. Longer than a sync flush timeout (5 s), so a sync send still gets its answer.
pub const SHUTDOWN_DRAIN_MAX_MS: u64 = 8_000;

/// RocketMQ's default ports: brokers listen on 10911, NameServers on 9876. Shard i of a
/// broker takes `port + i`.
pub const BROKER_PORT_DEFAULT: u16 = 10911;
pub const NAMESRV_PORT_DEFAULT: u16 = 9876;

/// RocketMQ's NameServer timings: scan every 10 s, drop a broker silent for 120 s.
pub const NAMESRV_SCAN_INTERVAL_DEFAULT_MS: u64 = 10_000;
pub const NAMESRV_BROKER_EXPIRY_DEFAULT_MS: u64 = 120_000;

/// Brokers re-register (heartbeat) every 30 s, as RocketMQ's do; four missed beats
/// fit inside the NameServer's expiry.
pub const REGISTER_INTERVAL_DEFAULT_MS: u64 = 30_000;

/// More shards than this is a configuration mistake, not a machine.
pub const SHARDS_MAX: usize = 256;

pub const DATA_DIR_DEFAULT: &str = "./data";
pub const BROKER_NAME_DEFAULT: &str = "broker-a";
pub const CLUSTER_NAME_DEFAULT: &str = "DefaultCluster";
/// Bytes of a data directory's lock file read for the holder's pid: a pid and a newline
/// need at most 11; whatever else a file of that name holds is not worth reading.
pub const DATA_DIR_LOCK_READ_MAX_BYTES: usize = 32;

/// RocketMQ's `maxMessageSize` default: 4 MiB per message (or per batch body).
pub const MESSAGE_SIZE_DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;
/// The most `max_message_size_bytes` may be raised to: a stored record must fit a frame
/// with room for its header (the codec's frame limit is 16 MiB).
pub const MESSAGE_SIZE_LIMIT_BYTES: usize = 15 * 1024 * 1024;

/// Queues of an auto-created topic across all shards. RocketMQ creates 4 per broker; a
/// two-shard broker then shows 2 × 4 = 8, so 8 in all keeps what clients see familiar.
pub const DEFAULT_TOPIC_QUEUES: u32 = 8;
/// RocketMQ refuses more than 1024 queues per topic per broker.
pub const TOPIC_QUEUES_MAX: u32 = 1024;

/// Clients heartbeat every 30 s; one silent for 120 s is gone (RocketMQ's channel
/// expiry), and its consumer group rebalances.
pub const CLIENT_EXPIRY_DEFAULT_MS: u64 = 120_000;

/// Clients ask to be held 15 s (push) or 20 s (lite pull) and time out at 30 s; never
/// hold a pull longer than the client waits.
pub const LONG_POLLING_MAX_DEFAULT_MS: u64 = 30_000;

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

/// RocketMQ's 18 delay levels (1 s … 2 h); the delay topic has one queue per level.
pub const DELAY_LEVEL_COUNT: u32 = 18;

/// A message is retried this many times before it goes to the dead-letter queue, unless
/// the consumer says otherwise (RocketMQ's `maxReconsumeTimes` default).
pub const MAX_RECONSUME_TIMES_DEFAULT: i32 = 16;

/// RocketMQ's topic name limit (`TopicValidator.TOPIC_MAX_LENGTH`).
pub const TOPIC_NAME_MAX_BYTES: usize = 127;

/// Topic changes queued between two shards. They are rare (admin requests, first sends
/// of new topics); a full channel makes the sender wait, which is fine for them.
pub const CONTROL_CHANNEL_CAPACITY: usize = 1024;

/// How long a shard waits for a peer's control channel to connect (shards connect them
/// within moments of start).
pub const CONTROL_CONNECT_MAX_MS: u64 = 10_000;

/// How long a shard waits for another shard to apply a topic change and answer. Applying
/// one is a topic-table save (milliseconds); 3 s is RocketMQ clients' default request
/// timeout, past which the request that caused the change has been given up on anyway.
pub const CONTROL_APPLY_TIMEOUT_MS: u64 = 3_000;

/// Times a topic change is sent to a shard that failed it or did not answer, in all.
/// The second try covers a disk error that outlasted the other shard's own save retries
/// or an answer lost to a slow start; a shard failing twice is reported to the caller.
pub const CONTROL_APPLY_ATTEMPTS: u32 = 2;

/// Pause before sending a failed topic change again.
pub const CONTROL_RETRY_DELAY_MS: u64 = 50;

/// How often each executor looks at the process-wide stop flag.
pub const STOP_POLL_INTERVAL_MS: u64 = 50;

/// Most messages one pull returns, whatever the client asks: RocketMQ's default batch
/// is 32 and the client never asks for more than its pull batch size.
pub const PULL_MESSAGES_MAX: u32 = 1024;

/// Most bytes one pull returns: a pull answer must fit one frame with room to spare.
pub const PULL_BYTES_MAX: usize = 8 * 1024 * 1024;

/// How long a registration with a NameServer may take before it counts as failed (and
/// is retried); RocketMQ uses 6 s for the same call.
pub const REGISTER_TIMEOUT_MS: u64 = 6_000;
/// Until a NameServer has accepted us once, the first retry comes this soon (it may still
/// be starting), and each further one twice as late, up to the register interval: a
/// NameServer that is down for long costs a few attempts (and log lines), not five a
/// second per shard.
pub const REGISTER_RETRY_MS: u64 = 200;
/// Shutdown waits this long per NameServer for UNREGISTER_BROKER's answer.
pub const UNREGISTER_TIMEOUT_MS: u64 = 2_000;

/// Longest the delayed-message task sleeps between looks at the 18 delay queues, so a
/// newly parked message is noticed. The shortest delay (1 s) is ten of these, so every
/// message is seen before it is due; a look at an idle level costs one in-memory check.
pub const SCHEDULE_POLL_INTERVAL_MS: u64 = 100;
/// Delayed messages read from one level per store read (and re-appended together).
pub const SCHEDULE_BATCH_MESSAGES_MAX: u32 = 64;
/// Bytes read from one level per store read: bounds memory with large messages.
pub const SCHEDULE_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Batches one level delivers in a pass before the task turns to the other levels, saving
/// and shutdown: a backlog of one level (after a long stop) cannot starve the rest.
pub const SCHEDULE_LEVEL_BATCHES_PER_PASS_MAX: usize = 16;
/// How often delivery progress (`delayOffset.json`) is saved at most: each save costs two
/// fdatasyncs, and a crash re-delivers at most this much (plus the flush interval).
pub const SCHEDULE_PERSIST_INTERVAL_MS: u64 = 1_000;
/// Pause before a delay level tries again after its re-append failed (store busy, disk
/// error): long enough not to hammer a struggling store, short against the delays.
pub const SCHEDULE_RETRY_BACKOFF_MS: u64 = 1_000;
/// RocketMQ allows retry and dead-letter topic names up to 255 bytes (ordinary topics 127).
pub const RETRY_TOPIC_NAME_MAX_BYTES: usize = 255;

/// Client housekeeping (dropping clients silent past the expiry) runs every quarter of
/// the expiry, but at most this far apart: RocketMQ's housekeeping scans every 10 s.
pub const CLIENT_HOUSEKEEPING_INTERVAL_MAX_MS: u64 = 10_000;
/// ... and at least this far apart, so a tiny test expiry does not make it spin.
pub const CLIENT_HOUSEKEEPING_INTERVAL_MIN_MS: u64 = 100;
/// Most clients one housekeeping pass drops (each drop may send a notification to every
/// member of its group); the rest go on the next pass, so one pass stays short.
pub const CLIENT_EXPIRY_SWEEP_MAX: usize = 4096;

/// Consumer offsets are saved this often when they changed: RocketMQ's
/// `flushConsumerOffsetInterval`. A crash loses at most this much progress, which
/// clients then re-consume (at-least-once).
pub const CONSUMER_OFFSET_PERSIST_INTERVAL_MS: u64 = 5_000;

/// A queue lock for orderly consumption lapses when its holder has not renewed it for
/// this long (RocketMQ's `rocketmq.broker.rebalance.lockMaxLiveTime`); clients renew
/// every 20 s and trust their own lock for 30 s, so a live holder never loses it.
pub const REBALANCE_LOCK_MAX_LIVE_MS: u64 = 60_000;

/// Pending connections a listener queues (the kernel caps it at somaxconn): room for a
/// load test opening hundreds of connections at once.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Rejected requests (`remoting::rejections`) each listener logs at WARN per interval;
/// the rest are counted and the count logged with the next line. Twenty lines per ten
/// seconds show every kind of rejection a misbehaving client produces, while one that
/// retries a refused request in a tight loop adds at most two lines a second.
pub const REJECTION_LOG_LINES_MAX: u32 = 20;
pub const REJECTION_LOG_INTERVAL_MS: u64 = 10_000;

// ---- replication -----------------------------------------------------------------------

/// Nodes in one replicated group: DLedger groups are 3 or 5; 7 leaves room without
/// letting a typo build a group whose every write waits on a dozen followers.
pub const REPLICATION_PEERS_MAX: usize = 7;
/// Raft tick. Heartbeats go every 2 ticks (200 ms) and an election starts after 10 to 20
/// silent ticks (1–2 s), which puts a new leader well inside the 5 s failover target.
pub const RAFT_TICK_DEFAULT_MS: u64 = 100;
pub const RAFT_ELECTION_TICKS_DEFAULT: u64 = 10;
/// Below this an election timeout is only a few heartbeats long: a busy executor would
/// set off needless elections.
pub const RAFT_ELECTION_TICKS_MIN: u64 = 4;
/// A send not applied by a majority in this long gets an error (never SEND_OK). Matches
/// the store's sync flush timeout default: the client's own send timeout is 3 s, and a
/// commit that needs longer means the group is in trouble.
pub const REPLICATION_TIMEOUT_DEFAULT_MS: u64 = 5_000;
/// Raft messages waiting for one peer's connection; past this the newest are dropped
/// (Raft retransmits), so a dead peer cannot grow the leader's memory.
pub const RAFT_PEER_QUEUE_MAX_MSGS: usize = 4096;
/// Wait between connection attempts to an unreachable peer.
pub const RAFT_RECONNECT_BACKOFF_MS: u64 = 200;
/// How often a leader replicates changed consumer offsets (and delay progress) to its
/// followers: the most a failover can rewind a consumer beyond its own commit interval.
pub const META_REPLICATION_INTERVAL_MS: u64 = 1_000;
/// A shard's preferred node campaigns this many times at start (3 ticks apart) while
/// its group has no leader: enough to outrun the others' randomised election timeouts
/// when the nodes start together, bounded so a node started alone stops trying.
pub const LEADER_PLACEMENT_START_TRIES: usize = 10;
/// How often a leader checks whether to hand over to its shard's preferred node
/// (`raft_balance_leaders`).
pub const LEADER_BALANCE_INTERVAL_MS: u64 = 5_000;
/// The preferred node takes over only this close behind the leader's last index: a
/// transfer waits for the transferee to catch up, and sends stall meanwhile.
pub const LEADER_BALANCE_LAG_MAX: u64 = 64;
/// A link to a peer that has not come up this long after the shard started is reported
/// down (WARN). The nodes of a group start within moments of each other, so failures
/// before this are a peer still starting, not worth a warning.
pub const RAFT_LINK_START_GRACE_MS: u64 = 10_000;

// Relations between the limits above (and those of the crates below) that their
// comments state, checked when the crate compiles rather than left to prose.
const _: () = {
    use rockshard_net::limits::FRAME_SIZE_MAX_BYTES;
    use rockshard_storage::limits::SYNC_FLUSH_TIMEOUT_DEFAULT_MS;
    assert!(
        SHUTDOWN_DRAIN_MAX_MS > SYNC_FLUSH_TIMEOUT_DEFAULT_MS,
        "the shutdown drain outlasts a sync flush, so a sync send still gets its answer"
    );
    assert!(
        MESSAGE_SIZE_DEFAULT_MAX_BYTES <= MESSAGE_SIZE_LIMIT_BYTES && MESSAGE_SIZE_LIMIT_BYTES < FRAME_SIZE_MAX_BYTES,
        "a stored record fits a frame with room for its header"
    );
    assert!(PULL_BYTES_MAX < FRAME_SIZE_MAX_BYTES, "a pull answer fits one frame");
    assert!(
        4 * REGISTER_INTERVAL_DEFAULT_MS <= NAMESRV_BROKER_EXPIRY_DEFAULT_MS,
        "four missed registrations fit inside the NameServer's expiry"
    );
    assert!(
        CONNECTION_IDLE_TIMEOUT_DEFAULT_MS > REGISTER_INTERVAL_DEFAULT_MS,
        "a broker registering at the default interval never looks idle to a NameServer"
    );
    assert!(CONNECTION_READ_CHUNK_MIN_BYTES <= CONNECTION_READ_CHUNK_BYTES, "the read chunk's bounds are ordered");
    assert!(PARTIAL_FRAME_UNCOUNTED_BYTES < PARTIAL_FRAME_BYTES_MAX, "counted partial frames fit the bound");
    assert!(
        CONNECTION_SWEEP_INTERVAL_MIN_MS <= CONNECTION_SWEEP_INTERVAL_MAX_MS
            && CLIENT_HOUSEKEEPING_INTERVAL_MIN_MS <= CLIENT_HOUSEKEEPING_INTERVAL_MAX_MS,
        "interval bounds are ordered"
    );
    assert!(RAFT_ELECTION_TICKS_MIN <= RAFT_ELECTION_TICKS_DEFAULT, "the default election timeout is allowed");
    assert!(REGISTER_TIMEOUT_MS < REGISTER_INTERVAL_DEFAULT_MS, "a registration times out before the next is due");
};
