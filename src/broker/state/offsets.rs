//! Consumer offsets of one shard, as a pure table: (group, topic, queueId) → the next
//! offset the group will consume, and its file format.
//!
//! Fed by UPDATE_CONSUMER_OFFSET and by pulls carrying the commit-offset bit, read back
//! by consumers that take over a queue and by admin (consumer progress, reset by time),
//! replaced wholesale on a replicated follower by its leader's snapshot.
//!
//! The file is `config/consumerOffset.json` in the shard's store, this shard's own:
//!
//! ```text
//! {"version":1,"offsets":[{"group":"G","topic":"T","queues":{"0":12,"1":40}}, ...]}
//! ```
//!
//! Invariants: the same table always writes the same bytes (sorted); a file of another
//! version or a damaged one is refused, never half read. [`ConsumerOffsets`] counts
//! changes (`version`, for replication) and knows whether the table changed since the
//! last save began (`dirty`), so a save never writes an older table over a newer one.
//! Every method is synchronous.
//!
//! Deliberately not here: reading and writing the file (the shard's operations,
//! `ops::offsets`, save it through the store every `CONSUMER_OFFSET_PERSIST_INTERVAL_MS`
//! and at shutdown), offsets of broadcasting consumers (clients keep those locally),
//! static-topic offset mapping, and the server-side offset-reset lock Java has behind a
//! flag (`useServerSideResetOffset`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// The offsets file, under the store's `config/` directory (RocketMQ's name).
pub const OFFSETS_FILE: &str = "consumerOffset.json";
const OFFSETS_FILE_VERSION: u32 = 1;

/// The persisted form of the table: one entry per (group, topic), sorted.
#[derive(Debug, Serialize, Deserialize)]
struct OffsetFile {
    version: u32,
    offsets: Vec<OffsetEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct OffsetEntry {
    group: String,
    topic: String,
    /// Queue id → offset; JSON object keys are strings, serde turns them back to i32.
    queues: BTreeMap<i32, i64>,
}

/// (group, topic, queueId) → offset. Two levels of maps keyed by owned strings, so the
/// hot path (a pull's commit of an offset already known) looks up by `&str` without
/// allocating.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OffsetTable {
    groups: HashMap<String, HashMap<String, BTreeMap<i32, i64>>>,
}

impl OffsetTable {
    pub fn get(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.groups.get(group)?.get(topic)?.get(&queue_id).copied()
    }

    /// Sets an offset; true when the table changed.
    pub fn set(&mut self, group: &str, topic: &str, queue_id: i32, offset: i64) -> bool {
        let topics = match self.groups.get_mut(group) {
            Some(t) => t,
            None => self.groups.entry(group.to_owned()).or_default(),
        };
        let queues = match topics.get_mut(topic) {
            Some(q) => q,
            None => topics.entry(topic.to_owned()).or_default(),
        };
        queues.insert(queue_id, offset) != Some(offset)
    }

    /// Groups with an offset on `topic`, sorted.
    pub fn groups_of_topic(&self, topic: &str) -> Vec<String> {
        let mut groups: Vec<String> =
            self.groups.iter().filter(|(_, topics)| topics.contains_key(topic)).map(|(g, _)| g.clone()).collect();
        groups.sort();
        groups
    }

    /// Topics `group` has offsets on, sorted.
    pub fn topics_of_group(&self, group: &str) -> Vec<String> {
        let mut topics: Vec<String> = self.groups.get(group).map(|t| t.keys().cloned().collect()).unwrap_or_default();
        topics.sort();
        topics
    }

    /// `group`'s offsets on `topic`, by queue id.
    pub fn queue_offsets(&self, group: &str, topic: &str) -> Vec<(i32, i64)> {
        self.groups
            .get(group)
            .and_then(|t| t.get(topic))
            .map(|q| q.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }

    /// Every group, sorted.
    pub fn group_names(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.groups.keys().cloned().collect();
        groups.sort();
        groups
    }

    /// Forgets everything `group` committed; true if it had anything.
    pub fn remove_group(&mut self, group: &str) -> bool {
        self.groups.remove(group).is_some()
    }

    /// Forgets every group's offsets on `topic` (the topic was deleted); true if any.
    pub fn remove_topic(&mut self, topic: &str) -> bool {
        let mut removed = false;
        self.groups.retain(|_, topics| {
            removed |= topics.remove(topic).is_some();
            !topics.is_empty()
        });
        removed
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut offsets: Vec<OffsetEntry> = self
            .groups
            .iter()
            .flat_map(|(group, topics)| {
                topics.iter().map(|(topic, queues)| OffsetEntry {
                    group: group.clone(),
                    topic: topic.clone(),
                    queues: queues.clone(),
                })
            })
            .collect();
        offsets.sort_by(|a, b| (&a.group, &a.topic).cmp(&(&b.group, &b.topic)));
        let file = OffsetFile { version: OFFSETS_FILE_VERSION, offsets };
        // Strings, integers and maps with integer keys always serialise.
        serde_json::to_vec(&file).expect("offset table serialises")
    }

    pub fn from_json(bytes: &[u8]) -> std::result::Result<OffsetTable, String> {
        let file: OffsetFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if file.version != OFFSETS_FILE_VERSION {
            return Err(format!("version {} (this build reads {OFFSETS_FILE_VERSION})", file.version));
        }
        let mut table = OffsetTable::default();
        for entry in file.offsets {
            let topics = table.groups.entry(entry.group).or_default();
            topics.entry(entry.topic).or_default().extend(entry.queues);
        }
        Ok(table)
    }
}

/// The shard's consumer offsets: the table, and what saving and replicating it need to
/// know about its changes.
#[derive(Debug, Default)]
pub struct ConsumerOffsets {
    table: OffsetTable,
    /// Set when the table changed since the last save began.
    dirty: bool,
    /// Bumped on every change: a replicated leader sends a snapshot when it moved.
    version: u64,
}

impl ConsumerOffsets {
    /// The table as loaded, clean (nothing to save yet).
    pub fn new(table: OffsetTable) -> ConsumerOffsets {
        ConsumerOffsets { table, dirty: false, version: 0 }
    }

    /// Records `offset` as `group`'s committed offset of the queue.
    pub fn commit(&mut self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        if self.table.set(group, topic, queue_id, offset) {
            self.changed();
        }
    }

    /// Sets a group's offset by operator's order (reset to a time or an offset); the
    /// same as a commit, named for what admin means by it.
    pub fn reset(&mut self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        self.commit(group, topic, queue_id, offset);
    }

    /// Replaces the whole table (a follower applying its leader's snapshot).
    pub fn replace(&mut self, table: OffsetTable) {
        self.table = table;
        self.changed();
    }

    pub fn remove_group(&mut self, group: &str) -> bool {
        let removed = self.table.remove_group(group);
        if removed {
            self.changed();
        }
        removed
    }

    pub fn remove_topic(&mut self, topic: &str) -> bool {
        let removed = self.table.remove_topic(topic);
        if removed {
            self.changed();
        }
        removed
    }

    fn changed(&mut self) {
        self.dirty = true;
        self.version += 1;
    }

    /// Counts changes; equal values mean the same table.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether the table changed since the last save began.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Starts a save: the table in consumerOffset.json's form if it changed since the
    /// last save began (it counts as clean from now on), `None` when there is nothing to
    /// save. A save that then fails calls [`ConsumerOffsets::save_failed`].
    pub fn begin_save(&mut self) -> Option<Vec<u8>> {
        if !std::mem::replace(&mut self.dirty, false) {
            return None;
        }
        Some(self.table.to_json())
    }

    /// The save [`ConsumerOffsets::begin_save`] started did not reach the disk: the
    /// table must be saved again.
    pub fn save_failed(&mut self) {
        self.dirty = true;
    }

    /// The table in consumerOffset.json's form.
    pub fn to_json(&self) -> Vec<u8> {
        self.table.to_json()
    }

    pub fn get(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        self.table.get(group, topic, queue_id)
    }

    /// Groups with an offset on `topic`, sorted.
    pub fn groups_of_topic(&self, topic: &str) -> Vec<String> {
        self.table.groups_of_topic(topic)
    }

    /// Topics `group` has offsets on, sorted.
    pub fn topics_of_group(&self, group: &str) -> Vec<String> {
        self.table.topics_of_group(group)
    }

    /// `group`'s offsets on `topic`, by queue id.
    pub fn queue_offsets(&self, group: &str, topic: &str) -> Vec<(i32, i64)> {
        self.table.queue_offsets(group, topic)
    }

    /// Every group with offsets here, sorted.
    pub fn group_names(&self) -> Vec<String> {
        self.table.group_names()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_reports_changes_and_get_reads_back() {
        let mut t = OffsetTable::default();
        assert_eq!(t.get("G", "T", 0), None);
        assert!(t.set("G", "T", 0, 5));
        assert!(!t.set("G", "T", 0, 5), "the same offset again is no change (no save needed)");
        assert!(t.set("G", "T", 0, 4), "going back is a change too (resets do it)");
        assert!(t.set("G", "T", 1, 9));
        assert!(t.set("H", "T", 0, 1));
        assert!(t.set("G", "U", 3, 2));
        assert_eq!(t.get("G", "T", 0), Some(4));
        assert_eq!(t.get("G", "T", 2), None);
        assert_eq!(t.get("X", "T", 0), None);
        assert_eq!(t.queue_offsets("G", "T"), [(0, 4), (1, 9)]);
        assert_eq!(t.groups_of_topic("T"), ["G", "H"]);
        assert_eq!(t.groups_of_topic("U"), ["G"]);
        assert_eq!(t.topics_of_group("G"), ["T", "U"]);
        assert_eq!(t.group_names(), ["G", "H"]);
    }

    #[test]
    fn json_round_trip_keeps_every_offset() {
        let mut t = OffsetTable::default();
        t.set("G", "T", 0, 12);
        t.set("G", "T", 1, 40);
        t.set("%RETRY%G", "%RETRY%G", 0, 3);
        t.set("H", "T", 7, i64::MAX);
        let json = t.to_json();
        assert_eq!(OffsetTable::from_json(&json), Ok(t.clone()));
        let text = String::from_utf8(json).expect("utf8");
        assert!(
            text.starts_with(r#"{"version":1,"offsets":[{"group":"%RETRY%G","topic":"%RETRY%G","queues":{"0":3}},{"group":"G","topic":"T","queues":{"0":12,"1":40}}"#),
            "{text}"
        );
        // Deterministic: the same table always writes the same bytes.
        assert_eq!(t.clone().to_json(), t.to_json());
        assert_eq!(OffsetTable::from_json(&OffsetTable::default().to_json()), Ok(OffsetTable::default()));
    }

    #[test]
    fn damaged_or_foreign_files_are_refused() {
        assert!(OffsetTable::from_json(b"{").is_err());
        assert!(
            OffsetTable::from_json(br#"{"version":1,"offsets":[{"group":"G","topic":"T","queues":{"x":1}}]}"#).is_err()
        );
        let err = OffsetTable::from_json(br#"{"version":2,"offsets":[]}"#).unwrap_err();
        assert!(err.contains("version 2"), "{err}");
    }

    #[test]
    fn changes_make_the_table_dirty_until_a_save_begins() {
        let mut o = ConsumerOffsets::new(OffsetTable::default());
        assert!(!o.is_dirty());
        assert_eq!(o.begin_save(), None, "nothing changed: nothing to save");
        o.commit("G", "T", 0, 17);
        o.reset("H", "T", 1, 2);
        assert_eq!((o.is_dirty(), o.version()), (true, 2));
        let saved = o.begin_save().expect("changed");
        assert_eq!(OffsetTable::from_json(&saved).map(|t| t.get("H", "T", 1)), Ok(Some(2)));
        assert!(!o.is_dirty(), "a save began: clean");
        // A commit of the offset already stored is no change.
        o.commit("G", "T", 0, 17);
        assert!(!o.is_dirty());
        assert_eq!(o.version(), 2);
        // A failed save leaves the table to be saved again.
        o.save_failed();
        assert!(o.begin_save().is_some());
        assert!(!o.remove_group("nobody") && !o.is_dirty());
        assert!(o.remove_topic("T") && o.is_dirty());
        assert_eq!(o.group_names(), Vec::<String>::new());
        o.replace(OffsetTable::from_json(&saved).expect("reads"));
        assert_eq!((o.get("G", "T", 0), o.version()), (Some(17), 4));
    }

    #[test]
    fn removing_groups_and_topics() {
        let mut t = OffsetTable::default();
        t.set("G", "T", 0, 1);
        t.set("G", "U", 0, 1);
        t.set("H", "T", 0, 1);
        assert!(t.remove_topic("T"));
        assert!(!t.remove_topic("T"));
        assert_eq!(t.group_names(), ["G"], "H had only T and is gone with it");
        assert!(t.remove_group("G"));
        assert!(!t.remove_group("G"));
        assert_eq!(t, OffsetTable::default());
    }
}
