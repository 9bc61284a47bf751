//! Named limits of the load tool, unit last, each with the reason for its value.

/// Default run length when neither --duration nor --count is given.
pub const DURATION_DEFAULT_S: u64 = 10;

/// A run with --count and no --duration still ends after this long: a broker that stops
/// answering, or a consumer waiting for messages nobody sends, must not hang the tool.
pub const COUNT_RUN_DURATION_MAX_S: u64 = 300;

/// Brokers cap a message body (and a batch travels as one body) at 4 MiB
/// (`maxMessageSize`), so a larger message or batch can only be refused.
pub const BATCH_BODY_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Messages per batch: RocketMQ clients send batches of hundreds at most; beyond 1024
/// the per-item work dominates and the figure stops meaning anything.
pub const BATCH_MAX: usize = 1024;

/// Bytes a batch item adds to its payload: the 22-byte item frame plus its properties
/// (UNIQ_KEY, WAIT, and a short tag/key), for the batch size check.
pub const ITEM_OVERHEAD_BYTES: usize = 128;

/// Longest --tag: it goes into every message's properties (capped at 32 KiB in the
/// stored format), and RocketMQ tags are short words.
pub const TAG_LEN_MAX_BYTES: usize = 255;

/// Producer or consumer clients per run: each holds sockets and tasks; more than this
/// on one machine measures the tool's scheduler rather than the broker.
pub const CONNECTIONS_MAX: usize = 4096;

/// Requests in flight per producer: bounded by the remoting client's pending table.
pub const INFLIGHT_MAX: usize = rockshard::limits::CLIENT_PENDING_MAX;

/// Queues per broker for a created topic: RocketMQ topics rarely exceed a few hundred.
pub const QUEUES_MAX: u32 = 1024;

/// Executors: one per core is the point; more than this is a typo.
pub const THREADS_MAX: usize = 256;

/// Messages asked for per pull, as RocketMQ's push consumer asks (`pullBatchSize`).
pub const PULL_BATCH_MAX_MESSAGES: i32 = 32;

/// How long the broker may hold a pull open when no message is there (long polling), as
/// RocketMQ's push consumer does. Pulls still in flight when the run ends are abandoned.
pub const PULL_SUSPEND_MS: i64 = 15_000;

/// A pull's timeout beyond its suspend time, for the answer to travel back.
pub const PULL_TIMEOUT_EXTRA_MS: u64 = 5_000;

/// Pause after a failed request before that worker tries again, so a broker that refuses
/// everything is not hammered in a tight loop (each failure is still counted).
pub const ERROR_BACKOFF_MS: u64 = 100;

/// How often each executor looks at the run's shared stop flags. A timer, not a spin:
/// the executor sleeps in between.
pub const STOP_POLL_MS: u64 = 5;

/// How long topic creation waits for the NameServer's route to show the topic on every
/// broker it was created on (brokers register new topics at once, or at their next
/// heartbeat).
pub const ROUTE_WAIT_MAX_MS: u64 = 35_000;

/// Pause between route lookups while waiting for a created topic to appear.
pub const ROUTE_POLL_MS: u64 = 200;

/// An open-loop send due within this much is sent at once instead of sleeping for it:
/// a timer costs more than the wait. Latency still counts from the scheduled time or the
/// real send time, whichever is earlier.
pub const OPEN_LOOP_SLACK_US: u64 = 20;

/// Largest latency the histograms hold; anything slower is recorded as this. Above every
/// timeout the tool uses.
pub const LATENCY_MAX_US: u64 = 600_000_000;

/// How long the main thread waits for per-second reports between checks of the stop
/// conditions.
pub const COORDINATOR_POLL_MS: u64 = 10;

/// How often each executor reads the topic's route even when nothing failed: RocketMQ
/// clients' `pollNameServerInterval` default, so queue changes made while a run goes on
/// are picked up as a client would.
pub const ROUTE_REFRESH_PERIOD_MS: u64 = 30_000;

/// Shortest gap between two route lookups of one executor, however many workers ask:
/// during an outage every failing request asks, and a few lookups per second already
/// follow a failover (an election takes about a second) without flooding the NameServer.
pub const ROUTE_REFRESH_BACKOFF_MS: u64 = 200;

/// How often each executor reads the route while a broker of the topic has no master
/// (an election under way): producers then send to the other brokers and no longer fail,
/// so no failure would ask for the route, and the new master (registered within a second
/// of its election) would wait for the 30 s poll.
pub const ROUTE_MASTERLESS_POLL_MS: u64 = 500;

/// How long a producer sends to other brokers' queues after a broker's connection was
/// lost or it answered that it is not the master. Short against a run, so a broker that
/// comes back at the same address is used again soon; long against a route lookup, so the
/// new master is usually known before it ends. (RocketMQ's latency fault tolerance
/// isolates for 30 s; a benchmark would then show an outage the broker did not have.)
pub const BROKER_AVOID_MS: u64 = 1_000;

/// Longest --warmup: far more than any cache, page cache or JIT needs to warm up; a
/// value beyond it is a typo that would make the run look hung.
pub const WARMUP_MAX_S: u64 = 3_600;
