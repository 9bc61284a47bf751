//! Opening a store after a clean shutdown, a `kill -9` or a power loss.
//!
//! 1. Read the checkpoint: offset P, below which the CommitLog and every ConsumeQueue
//!    entry for it are durable.
//! 2. Open the segments (contiguous, each the configured size) and the ConsumeQueues;
//!    cut every ConsumeQueue back to its entries for records below P (and any zeros or
//!    garbage a crash left at its end).
//! 3. Scan the CommitLog from P, record by record: size bounds, magic, the record's own
//!    PHYSICALOFFSET equal to where it sits, the body CRC, and a topic and properties
//!    free of the zeros a torn write leaves (BODYCRC does not cover them). Each good record is
//!    re-indexed in its ConsumeQueue, with the tag code the config's `TagCodeRule` gives
//!    (`record.rs`), as its append did. The first bad or missing record is the end.
//! 4. Zero everything past the end of its segment and delete later segments, so bytes
//!    of a torn record can never be mistaken for data after new appends land in front
//!    of them; then fdatasync what was scanned, so "flushed" is true from the start.
//!
//! Only step 3's scan and step 2's cut depend on data size, and both only over what came
//! after the checkpoint: restart time does not grow with the store.
//!
//! Two kinds of access ([`Access`]): [`recover`], the store's open, repairs as above.
//! [`recover_read_only`], for `store inspect`, opens every file read-only, cuts the
//! ConsumeQueues in memory only, and does step 4 by leaving the torn tail and later
//! segments out of its answer: it finds exactly what `recover` would leave and changes
//! nothing (a live broker's files, zeroed under it, once lost acknowledged messages).
//! Both share one scan (`scan`), so they cannot drift apart.
//!
//! Takes from the rest of the crate only the config (`config.rs`), the directory layout
//! (`layout.rs`), the record rules (`record.rs`) and the file formats; it never depends
//! on the store, which calls it before any of its parts starts.
//!
//! Runs on the executor of the shard that opens the store (or of `store inspect`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::Rc;

use rockshard_net::stored::{self, Record};

use crate::checkpoint::{self, Checkpoint};
use crate::config::StoreConfig;
use crate::consume_queue::{self, new_queue, ConsumeQueue, CqEntry, ENTRY_BYTES};
use crate::disk::{Disk, DiskFile, OpenMode};
use crate::error::{Result, StorageError};
use crate::layout::{commitlog_dir, config_dir, consumequeue_dir, queue_dir};
use crate::limits::RECOVERY_READ_BYTES;
use crate::offset::{PhysicalOffset, QueueOffset};
use crate::record::{dispatchable, tag_code, valid_properties, valid_topic};

/// What recovery found, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Where the scan started.
    pub checkpoint: PhysicalOffset,
    /// The recovered end of the CommitLog.
    pub end: PhysicalOffset,
    /// Bytes scanned (and kept) past the checkpoint.
    pub scanned_bytes: u64,
    /// Records re-indexed into ConsumeQueues.
    pub records_replayed: u64,
    /// Why the scan stopped.
    pub stop: ScanStop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// Zeros where the next record would start: a clean end.
    CleanEnd,
    /// The last segment ended (or no segment exists).
    EndOfLog,
    /// A record that failed a check: a torn or corrupt tail, cut off.
    Torn { at: PhysicalOffset, reason: String },
}

pub struct Recovered<F> {
    pub segments: BTreeMap<u64, Rc<F>>,
    pub min: PhysicalOffset,
    pub end: PhysicalOffset,
    pub queues: Vec<ConsumeQueue<F>>,
    pub checkpoint: Checkpoint,
    pub checkpoint_file: F,
    pub report: RecoveryReport,
}

/// What recovery may do to the directory it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The store's own open: create what is missing, allocate a short newest segment,
    /// cut the ConsumeQueues back, zero the torn tail, remove what lies past the end, and
    /// sync it all.
    Repair,
    /// `store inspect`: every file opened read-only ([`OpenMode::ReadOnly`]); what
    /// `Repair` would leave is computed in memory. Nothing is created, truncated, zeroed,
    /// renamed, removed or synced, so it works on a read-only mount and cannot damage a
    /// directory it should not have been pointed at.
    ReadOnly,
}

impl Access {
    fn open_mode(self) -> OpenMode {
        match self {
            Access::Repair => OpenMode::Existing,
            Access::ReadOnly => OpenMode::ReadOnly,
        }
    }
}

/// Steps 2 and 3: the segments, the ConsumeQueues and the scanned tail, as recovery
/// decides them. Under [`Access::ReadOnly`], also what [`recover_read_only`] returns: the
/// state a [`recover`] of the same directory would leave, its files open read-only.
pub struct Scanned<F> {
    pub segments: BTreeMap<u64, Rc<F>>,
    /// The start of the first segment (the recovered end when there is none).
    pub min: PhysicalOffset,
    pub end: PhysicalOffset,
    pub queues: Vec<ConsumeQueue<F>>,
    /// The newest valid checkpoint; `None` when the file is missing or holds none.
    pub checkpoint: Option<Checkpoint>,
    pub report: RecoveryReport,
}

/// Opens the store's directory as the store does at start, repairing what a crash left
/// (see the module header): the only recovery that writes.
pub async fn recover<D: Disk>(disk: &D, config: &StoreConfig) -> Result<Recovered<D::File>> {
    let root = &config.dir;
    for dir in [commitlog_dir(root), consumequeue_dir(root), config_dir(root)] {
        if !disk.exists(&dir).await {
            disk.create_dir_all(&dir).await.map_err(StorageError::at("create directory", &dir, 0))?;
            disk.sync_dir(root).await.map_err(StorageError::at("sync directory", root, 0))?;
        }
    }

    // 1. The checkpoint.
    let cp_path = root.join(checkpoint::FILE_NAME);
    let cp_file = disk.open(&cp_path, OpenMode::Create).await.map_err(StorageError::at("open", &cp_path, 0))?;
    let saved = read_checkpoint(&cp_file).await?;
    if saved.is_none() {
        disk.sync_dir(root).await.map_err(StorageError::at("sync directory", root, 0))?;
    }

    // 2 and 3.
    let Scanned { mut segments, min, end, queues, report, .. } = scan(disk, config, saved, Access::Repair).await?;
    let size = config.segment_size_bytes;
    let cl_dir = commitlog_dir(root);
    let start = report.checkpoint;

    // 4. Nothing past the end survives: zero the rest of its segment, drop later ones.
    let end_base = end.0 - end.0 % size;
    if let Some(file) = segments.get(&end_base) {
        let path = cl_dir.join(crate::commitlog::segment_name(end_base));
        file.zero_range(end.0 - end_base, end_base + size - end.0)
            .await
            .map_err(StorageError::at("zero", &path, end.0))?;
    }
    let doomed: Vec<u64> = segments.range(end_base + 1..).map(|(b, _)| *b).collect();
    for base in &doomed {
        let path = cl_dir.join(crate::commitlog::segment_name(*base));
        if let Some(file) = segments.remove(base) {
            // The store creates the next segment ahead of need; one never written to is
            // expected here, not a sign of damage.
            let unused = file.read_at(0, 4).await.is_ok_and(|head| head.iter().all(|&b| b == 0));
            if unused {
                tracing::info!(segment = %path.display(), "removing an unused segment created ahead");
            } else {
                tracing::warn!(segment = %path.display(), "removing a segment past the recovered end");
            }
        }
        disk.remove_file(&path).await.map_err(StorageError::at("remove", &path, *base))?;
    }
    if !doomed.is_empty() {
        disk.sync_dir(&cl_dir).await.map_err(StorageError::at("sync directory", &cl_dir, 0))?;
    }
    for (base, file) in segments.range(start.0 - start.0 % size..) {
        let path = cl_dir.join(crate::commitlog::segment_name(*base));
        file.sync_data().await.map_err(StorageError::at("sync", &path, *base))?;
    }

    let checkpoint = saved.unwrap_or(Checkpoint { sequence: 0, commitlog: min });
    let min = if segments.is_empty() { end } else { min };
    Ok(Recovered { segments, min, end, queues, checkpoint, checkpoint_file: cp_file, report })
}

/// What [`recover`] would leave in `config.dir`, found without changing a byte there:
/// the same checks and the same scan over files opened read-only, with step 4 done in
/// memory (the torn tail and the segments past it are left out, not zeroed or removed).
/// A missing directory or checkpoint reads as an empty one.
///
/// The answer is exact for a directory nobody writes meanwhile; the caller makes sure of
/// that (the broker's data directory lock).
pub async fn recover_read_only<D: Disk>(disk: &D, config: &StoreConfig) -> Result<Scanned<D::File>> {
    let cp_path = config.dir.join(checkpoint::FILE_NAME);
    let saved = if disk.exists(&cp_path).await {
        let file = disk.open(&cp_path, OpenMode::ReadOnly).await.map_err(StorageError::at("open", &cp_path, 0))?;
        read_checkpoint(&file).await?
    } else {
        None
    };
    let mut scanned = scan(disk, config, saved, Access::ReadOnly).await?;
    // Step 4, in memory: segments past the one the end lies in are not part of the log.
    let size = config.segment_size_bytes;
    let end_base = scanned.end.0 - scanned.end.0 % size;
    scanned.segments.retain(|base, _| *base <= end_base);
    if scanned.segments.is_empty() {
        scanned.min = scanned.end;
    }
    Ok(scanned)
}

/// The newest valid checkpoint slot of the checkpoint file.
async fn read_checkpoint<F: DiskFile>(file: &F) -> Result<Option<Checkpoint>> {
    let bytes = file.read_at(0, 2 * checkpoint::SLOT_STRIDE_BYTES as usize).await.map_err(StorageError::at(
        "read",
        file.path(),
        0,
    ))?;
    Ok(Checkpoint::decode_file(&bytes))
}

/// Names in `dir`; none when it does not exist (a read-only look at a directory the
/// store never opened; the store's own open creates it first).
async fn list_if_exists<D: Disk>(disk: &D, dir: &Path) -> Result<Vec<String>> {
    if !disk.exists(dir).await {
        return Ok(Vec::new());
    }
    disk.list_dir(dir).await.map_err(StorageError::at("list", dir, 0))
}

/// Steps 2 and 3 (see the module header), for both kinds of [`Access`]: only `Repair`
/// changes files (allocating a short newest segment, cutting ConsumeQueue files).
async fn scan<D: Disk>(
    disk: &D,
    config: &StoreConfig,
    saved: Option<Checkpoint>,
    access: Access,
) -> Result<Scanned<D::File>> {
    // 2. Segments.
    let (segments, bases) = open_segments(disk, config, access).await?;
    let size = config.segment_size_bytes;
    let first_base = bases.first().copied().unwrap_or(0);
    let min = PhysicalOffset(first_base);
    let last_end = bases.last().map_or(0, |b| b + size);
    let mut start = saved.map_or(min, |c| c.commitlog).max(min);
    if start.0 > last_end {
        // A checkpoint past every segment: the segments were lost or removed by hand.
        // Nothing can be trusted past what exists; scan what does.
        tracing::error!(checkpoint = start.0, end = last_end, "checkpoint lies past the last segment");
        start = min;
    }

    // 2b. ConsumeQueues, cut back to entries for records below `start`.
    let queues = open_queues(disk, config, start, min, access).await?;

    // 3. Scan from the checkpoint.
    let mut replay = Replay::new(config, queues);
    let (end, stop) = replay.run(&segments, start).await?;
    if let ScanStop::Torn { at, reason } = &stop {
        tracing::warn!(at = at.0, %reason, "CommitLog tail cut at recovery");
    }
    let report = RecoveryReport {
        checkpoint: start,
        end,
        scanned_bytes: end.0 - start.0,
        records_replayed: replay.replayed,
        stop,
    };
    Ok(Scanned { segments, min, end, queues: replay.queues, checkpoint: saved, report })
}

/// Step 2: opens the segments, which must be contiguous multiples of the segment size,
/// each of that size but a newest one a crash left short (allocated here under
/// `Repair`). Returns them by base, and the bases in order.
async fn open_segments<D: Disk>(
    disk: &D,
    config: &StoreConfig,
    access: Access,
) -> Result<(BTreeMap<u64, Rc<D::File>>, Vec<u64>)> {
    let cl_dir = commitlog_dir(&config.dir);
    let mut bases = Vec::new();
    for name in list_if_exists(disk, &cl_dir).await? {
        match crate::commitlog::parse_segment_name(&name) {
            Some(base) => bases.push(base),
            None => tracing::warn!(file = %cl_dir.join(&name).display(), "ignoring a file that is not a segment"),
        }
    }
    bases.sort_unstable();
    let size = config.segment_size_bytes;
    let mut segments = BTreeMap::new();
    for (i, &base) in bases.iter().enumerate() {
        let path = cl_dir.join(crate::commitlog::segment_name(base));
        if base % size != 0 || (i > 0 && base != bases[i - 1] + size) {
            return Err(StorageError::Corrupt {
                path,
                offset: base,
                detail: format!("segments must be contiguous multiples of the segment size {size}"),
            });
        }
        let file = disk.open(&path, access.open_mode()).await.map_err(StorageError::at("open", &path, base))?;
        let len = file.size().await.map_err(StorageError::at("stat", &path, base))?;
        if len != size {
            if i + 1 < bases.len() || len > size {
                return Err(StorageError::Config {
                    key: "segment_size_bytes",
                    detail: format!("{} is {len} bytes but the store is configured for {size}", path.display()),
                });
            }
            // The newest segment was created but not fully allocated before a crash. Read
            // only, the scan sees the zeros allocating it would add (see `Replay::run`).
            if access == Access::Repair {
                file.allocate(size).await.map_err(StorageError::at("allocate", &path, base))?;
            }
        }
        segments.insert(base, Rc::new(file));
    }
    Ok((segments, bases))
}

/// Step 3: the scan of the CommitLog from the checkpoint, re-indexing each good record
/// in its ConsumeQueue.
struct Replay<'a, F> {
    config: &'a StoreConfig,
    queues: Vec<ConsumeQueue<F>>,
    by_name: HashMap<(String, i32), usize>,
    /// Records scanned and kept (indexed or not).
    replayed: u64,
}

impl<'a, F: DiskFile> Replay<'a, F> {
    fn new(config: &'a StoreConfig, queues: Vec<ConsumeQueue<F>>) -> Self {
        let by_name = queues.iter().enumerate().map(|(i, q)| ((q.topic.clone(), q.queue_id), i)).collect();
        Replay { config, queues, by_name, replayed: 0 }
    }

    /// Scans from `start` to the first bad or missing record; returns where the log ends
    /// and why the scan stopped.
    async fn run(
        &mut self,
        segments: &BTreeMap<u64, Rc<F>>,
        start: PhysicalOffset,
    ) -> Result<(PhysicalOffset, ScanStop)> {
        let size = self.config.segment_size_bytes;
        let cl_dir = commitlog_dir(&self.config.dir);
        let mut pos = start;
        let stop = loop {
            let base = pos.0 - pos.0 % size;
            let Some(file) = segments.get(&base).cloned() else { break ScanStop::EndOfLog };
            let segment_end = base + size;
            let want = (segment_end - pos.0).min(RECOVERY_READ_BYTES as u64) as usize;
            let path = cl_dir.join(crate::commitlog::segment_name(base));
            let mut buf = file.read_at(pos.0 - base, want).await.map_err(StorageError::at("read", &path, pos.0))?;
            if buf.len() < want {
                // Only a newest segment left short by a crash reads short (repair allocates
                // it first): past its end it holds the zeros allocating it gives.
                let mut padded = buf.to_vec();
                padded.resize(want, 0);
                buf = padded.into();
            }
            let (at, stop) = self.walk(&buf, pos, segment_end);
            pos = PhysicalOffset(pos.0 + at as u64);
            if let Some(stop) = stop {
                break stop;
            }
            if at == 0 {
                // Not even one record fit in a full read: the segment ends inside a record.
                break ScanStop::Torn { at: pos, reason: "record runs past the end of the segment".into() };
            }
        };
        Ok((pos, stop))
    }

    /// Walks the records of `buf`, read at `pos` of a segment ending at `segment_end`.
    /// Returns how many bytes it kept, and why it stopped if not for want of bytes.
    fn walk(&mut self, buf: &[u8], pos: PhysicalOffset, segment_end: u64) -> (usize, Option<ScanStop>) {
        let mut at = 0usize;
        while at < buf.len() {
            let rest = &buf[at..];
            if rest.len() >= 4 && rest[..4] == [0, 0, 0, 0] {
                return (at, Some(ScanStop::CleanEnd));
            }
            let here = PhysicalOffset(pos.0 + at as u64);
            match stored::decode(rest) {
                Ok(None) => break, // Needs more bytes: read again from here.
                Ok(Some(Record::Blank { total_size })) => {
                    if here.0 + u64::from(total_size) != segment_end {
                        let reason = "BLANK does not end at the segment end".into();
                        return (at, Some(ScanStop::Torn { at: here, reason }));
                    }
                    at += total_size as usize;
                }
                Ok(Some(Record::Message(view))) => {
                    if let Err(reason) = self.record(&view, here, segment_end) {
                        return (at, Some(ScanStop::Torn { at: here, reason }));
                    }
                    self.replayed += 1;
                    at += view.header.total_size as usize;
                }
                Err(e) => return (at, Some(ScanStop::Torn { at: here, reason: e.to_string() })),
            }
        }
        (at, None)
    }

    /// Checks the record at `here` and re-indexes it if it is dispatchable; `Err` holds
    /// why it is damage (the end of the log).
    fn record(&mut self, view: &stored::MessageView<'_>, here: PhysicalOffset, segment_end: u64) -> Result<(), String> {
        let h = &view.header;
        if h.physical_offset != here.0 as i64 {
            return Err(format!("record says it is at {}", h.physical_offset));
        } else if !view.body_crc_matches() {
            return Err("body CRC mismatch".to_string());
        } else if !valid_topic(view.topic) || !valid_properties(view.properties) {
            return Err("topic or properties hold bytes no append writes (torn to zeros?)".to_string());
        } else if here.0 + u64::from(h.total_size) + stored::BLANK_SIZE_MIN_BYTES as u64 > segment_end {
            return Err("record runs into the segment's BLANK space".to_string());
        }
        if !dispatchable(h.sys_flag) {
            return Ok(());
        }
        let Ok(topic) = std::str::from_utf8(view.topic) else {
            return Err("topic is not UTF-8".into());
        };
        let key = (topic.to_string(), h.queue_id);
        let expected = self.by_name.get(&key).map_or(0, |&i| self.queues[i].published.0);
        if h.queue_offset != expected as i64 {
            // Only QUEUEOFFSET (or QUEUEID) can disagree here: the body CRC and the
            // position already matched. A damaged header, which like any other damage
            // ends the log. The queue is created only for a record that passes, so a
            // damaged queue id leaves no phantom queue behind.
            return Err(format!(
                "queue offset {} but {topic}:{} has {expected} entries before it",
                h.queue_offset, h.queue_id
            ));
        }
        let (config, queues) = (self.config, &mut self.queues);
        let qi = *self.by_name.entry(key).or_insert_with(|| {
            queues.push(new_queue(config, topic, h.queue_id));
            queues.len() - 1
        });
        self.queues[qi].recover_entry(CqEntry {
            physical_offset: here,
            size: h.total_size,
            tags_code: tag_code(config.tag_code_rule, view.topic, view.properties, h.store_timestamp_ms),
        });
        Ok(())
    }
}

/// Opens every ConsumeQueue and cuts each back to its plausible entries for records in
/// `[cl_min, cut_at)` (in its files under `Repair`, in memory only under `ReadOnly`).
async fn open_queues<D: Disk>(
    disk: &D,
    config: &StoreConfig,
    cut_at: PhysicalOffset,
    cl_min: PhysicalOffset,
    access: Access,
) -> Result<Vec<ConsumeQueue<D::File>>> {
    let cq_root = consumequeue_dir(&config.dir);
    let mut queues = Vec::new();
    let mut topics = list_if_exists(disk, &cq_root).await?;
    topics.sort();
    for topic in topics {
        let topic_dir = cq_root.join(&topic);
        let Ok(mut ids) = disk.list_dir(&topic_dir).await else { continue };
        ids.sort();
        for id in ids {
            let Ok(queue_id) = id.parse::<i32>() else { continue };
            queues.push(open_queue(disk, config, &topic, queue_id, cut_at, cl_min, access).await?);
        }
    }
    Ok(queues)
}

async fn open_queue<D: Disk>(
    disk: &D,
    config: &StoreConfig,
    topic: &str,
    queue_id: i32,
    cut_at: PhysicalOffset,
    cl_min: PhysicalOffset,
    access: Access,
) -> Result<ConsumeQueue<D::File>> {
    let dir = queue_dir(&config.dir, topic, queue_id);
    let per_file = config.cq_file_entries;
    let mut firsts: Vec<u64> = disk
        .list_dir(&dir)
        .await
        .map_err(StorageError::at("list", &dir, 0))?
        .iter()
        .filter_map(|n| consume_queue::parse_file_name(n))
        .filter(|f| f % per_file == 0)
        .collect();
    firsts.sort_unstable();

    // Files must follow each other. A file after a gap, or after a file that is not
    // full, holds nothing recovery can trust.
    let mut files: BTreeMap<u64, Rc<D::File>> = BTreeMap::new();
    let mut start = None;
    let mut end = 0u64;
    let mut sealed = false;
    let mut stale = Vec::new();
    for first in firsts {
        let path = dir.join(consume_queue::file_name(first));
        if sealed || (start.is_some() && first != end) {
            stale.push((first, path));
            continue;
        }
        let file = disk.open(&path, access.open_mode()).await.map_err(StorageError::at("open", &path, 0))?;
        let entries =
            (file.size().await.map_err(StorageError::at("stat", &path, 0))? / ENTRY_BYTES as u64).min(per_file);
        start.get_or_insert(first);
        end = first + entries;
        sealed = entries < per_file;
        files.insert(first, Rc::new(file));
    }
    let start = start.unwrap_or(0);

    // Cut back from the end: entries for records at or past the checkpoint, and zeros or
    // garbage a crash left behind.
    let (end, last_end) = cut_back(&files, per_file, start, end, cut_at).await?;

    // Make the files say what was decided: drop files past the end (keeping the first
    // file, so an emptied queue keeps its offset numbering), cut the last one. Read only,
    // the queue's offsets say it and the files stay as they are: nothing reads past `end`.
    for (first, file) in files.iter() {
        if *first > start && *first >= end {
            stale.push((*first, file.path().clone()));
        } else if *first + per_file > end && access == Access::Repair {
            let len = (end - first) * ENTRY_BYTES as u64;
            file.truncate(len).await.map_err(StorageError::at("truncate", file.path(), len))?;
        }
    }
    for (first, path) in &stale {
        files.remove(first);
        match access {
            Access::Repair => {
                tracing::warn!(file = %path.display(), "removing a ConsumeQueue file past the recovered end");
                disk.remove_file(path).await.map_err(StorageError::at("remove", path, 0))?;
            }
            Access::ReadOnly => {
                tracing::warn!(file = %path.display(), "a ConsumeQueue file past the recovered end (left alone)")
            }
        }
    }
    if !stale.is_empty() && access == Access::Repair {
        disk.sync_dir(&dir).await.map_err(StorageError::at("sync directory", &dir, 0))?;
    }

    let lo = first_retained(&files, per_file, start, end, cl_min).await?;
    let mut queue =
        ConsumeQueue::new(topic.to_string(), queue_id, dir, per_file, files, QueueOffset(lo), QueueOffset(end));
    queue.persisted_end = last_end;
    Ok(queue)
}

/// The end of a queue's plausible entries in `files` (holding `[start, end)`): entries
/// for records at or past `cut_at`, and zeros or garbage a crash left, are cut off. Reads
/// go backwards a block at a time. Returns the new end and the end of the record of the
/// last entry kept (zero when none is).
async fn cut_back<F: DiskFile>(
    files: &BTreeMap<u64, Rc<F>>,
    per_file: u64,
    start: u64,
    mut end: u64,
    cut_at: PhysicalOffset,
) -> Result<(u64, PhysicalOffset)> {
    const CUT_BLOCK_ENTRIES: u64 = 4096;
    let mut last_end = PhysicalOffset::ZERO;
    while end > start {
        let file_first = (end - 1) - (end - 1) % per_file;
        let block_start = end.saturating_sub(CUT_BLOCK_ENTRIES).max(start).max(file_first);
        let file = files.get(&file_first).cloned().expect("the file holding an entry below end is open");
        let pos = (block_start - file_first) * ENTRY_BYTES as u64;
        let bytes = file.read_at(pos, ((end - block_start) as usize) * ENTRY_BYTES).await.map_err(StorageError::at(
            "read",
            file.path(),
            pos,
        ))?;
        let entries = CqEntry::decode_all(&bytes);
        let good = entries.iter().rposition(|e| e.physical_offset < cut_at && e.is_plausible());
        match good {
            Some(i) => {
                end = block_start + i as u64 + 1;
                last_end = entries[i].end();
                break;
            }
            None => end = block_start,
        }
    }
    Ok((end, last_end))
}

/// The first entry of `[start, end)` in `files` whose record retention has not deleted
/// (whose CommitLog offset is at least `cl_min`), by binary search.
async fn first_retained<F: DiskFile>(
    files: &BTreeMap<u64, Rc<F>>,
    per_file: u64,
    start: u64,
    end: u64,
    cl_min: PhysicalOffset,
) -> Result<u64> {
    let (mut lo, mut hi) = (start, end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let file_first = mid - mid % per_file;
        let file = files.get(&file_first).cloned().expect("entries below end have a file");
        let pos = (mid - file_first) * ENTRY_BYTES as u64;
        let bytes = crate::disk::read_exact(&*file, pos, ENTRY_BYTES, false).await.map_err(StorageError::at(
            "read",
            file.path(),
            pos,
        ))?;
        let e = CqEntry::decode(bytes[..].try_into().expect("one entry"));
        if e.physical_offset < cl_min {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}
