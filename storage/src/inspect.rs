//! A shard directory's state as the store would recover it, read without changing a
//! byte: what `rockshard store inspect` prints.
//!
//! Every file is opened read-only ([`crate::recovery::recover_read_only`] for the
//! CommitLog, the ConsumeQueues and the checkpoint; the topic table likewise), nothing is
//! created, truncated, zeroed, renamed, removed or synced, so this works on a read-only
//! mount and cannot damage a directory it was pointed at by mistake. The answer equals
//! what [`crate::Store::open`] of the same directory would recover (`tests/inspect.rs`
//! checks this on damaged stores) as long as nobody writes the directory meanwhile;
//! keeping writers out is the caller's job (the broker's data-directory lock).
//!
//! The ConsumeQueue tag codes recovery rebuilds come from `config.tag_code_rule`, so
//! give it the rule the store's owner opens it with (the broker's `store inspect` does).
//!
//! Runs on a glommio executor (the real disk reads through io_uring); nothing is kept
//! open once it returns. Deliberately not here: a replicated node's Raft log (`raft/`).
//! The CommitLog is read as it stands, records past the Raft commit index included.

use crate::checkpoint::Checkpoint;
use crate::config::StoreConfig;
use crate::consume_queue::QueueInfo;
use crate::disk::Disk;
use crate::error::Result;
use crate::offset::PhysicalOffset;
use crate::recovery::{self, RecoveryReport};
use crate::topics::{load_topics, TopicConfig};

/// What a shard directory holds, as recovery would leave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The scan recovery would do: from the checkpoint to the end, and why it stopped.
    pub report: RecoveryReport,
    /// The newest valid checkpoint; `None` when the directory has none.
    pub checkpoint: Option<Checkpoint>,
    /// The CommitLog's first byte still stored (retention deletes whole segments).
    pub min: PhysicalOffset,
    /// The recovered end of the CommitLog: the next append would go here.
    pub end: PhysicalOffset,
    /// Start offsets of the segment files that hold `[min, end)`, ascending.
    pub segments: Vec<u64>,
    /// The topic table (`config/topics.json`), by name.
    pub topics: Vec<TopicConfig>,
    /// Every ConsumeQueue with its min and max offset, by topic then queue id.
    pub queues: Vec<QueueInfo>,
}

/// Reads the store in `config.dir` without changing it (see the module header).
pub async fn inspect<D: Disk>(disk: &D, config: &StoreConfig) -> Result<Inspection> {
    config.validate()?;
    let scanned = recovery::recover_read_only(disk, config).await?;
    let topics = load_topics(disk, &config.dir).await?.iter().cloned().collect();
    let mut queues: Vec<QueueInfo> = scanned.queues.iter().map(|q| q.info()).collect();
    queues.sort_by(|a, b| (&a.topic, a.queue_id).cmp(&(&b.topic, b.queue_id)));
    Ok(Inspection {
        report: scanned.report,
        checkpoint: scanned.checkpoint,
        min: scanned.min,
        end: scanned.end,
        segments: scanned.segments.keys().copied().collect(),
        topics,
        queues,
    })
}
