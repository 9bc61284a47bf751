//! Delayed-delivery progress of one shard, as a pure table, and the rules of a parked
//! message: where it is really going, when it is due, what it carries once delivered.
//!
//! RocketMQ's 18 delay levels (1 s … 2 h) each have a queue on `SCHEDULE_TOPIC_XXXX`;
//! a level's progress is the next queue offset to deliver (all before it are
//! delivered). The progress is saved in `delayOffset.json` (RocketMQ's name and shape,
//! `{"offsetTable":{"1":n,…}}`, levels 1-based) and, in a replicated group, adopted by
//! followers from their leader.
//!
//! Invariants:
//! - A level's `not_before_ms` is cleared whenever its offset moves.
//! - The offsets saved never run ahead of the CommitLog flush: [`DelayProgress::to_save`]
//!   answers the current offsets only once the flushed position covers their
//!   re-appends (`delivered_end`); until then it keeps a candidate from an earlier call
//!   and answers that once the flush covers it, so progress is saved even while
//!   deliveries never pause. A crash, even a power loss, re-delivers; it never loses.
//!
//! Every method is synchronous and takes positions and times as arguments. Owned by the
//! shard's delayed-delivery operations (`ops::delay`), which read the queues, re-append
//! due messages and save the file.
//!
//! Deliberately not here: the delay levels and the delay topic's name (RocketMQ's rules,
//! taken from where the store defines them), reading queues and appending.

use std::collections::BTreeMap;

use crate::broker::state::delay_rules::{tags_code_of, DELAY_LEVELS_MS};
use rockshard_net::properties::{self, keys};
use rockshard_net::stored;
use serde::{Deserialize, Serialize};

use crate::limits::DELAY_LEVEL_COUNT;

/// The file (under the store's `config/`) holding each level's delivered offset.
pub const DELAY_OFFSET_FILE: &str = "delayOffset.json";

/// Delay levels, one queue each.
pub const LEVELS: usize = DELAY_LEVELS_MS.len();
const _: () = assert!(LEVELS == DELAY_LEVEL_COUNT as usize, "one delay queue per level");

/// One level's progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Level {
    /// The next SCHEDULE_TOPIC_XXXX queue offset to deliver; all before it are delivered.
    pub next: u64,
    /// The entry at `next` is not to be looked at before this time: its delivery time
    /// once read and found ahead (saves re-reading it every poll), or the end of a
    /// back-off after a failed re-append. Cleared whenever `next` moves.
    pub not_before_ms: Option<i64>,
}

/// Every level's progress, and what of it is saved.
#[derive(Debug, Default)]
pub struct DelayProgress {
    levels: [Level; LEVELS],
    /// CommitLog end of the latest confirmed re-append: the current offsets may be saved
    /// once the flushed position reaches it.
    delivered_end: u64,
    /// The offsets `delayOffset.json` holds.
    saved: [u64; LEVELS],
    /// Offsets noted at an earlier periodic save, not yet flushed, with the CommitLog end
    /// their re-appends reach. Kept until saved, so progress is saved even while
    /// deliveries never pause.
    candidate: Option<([u64; LEVELS], u64)>,
}

impl DelayProgress {
    /// Progress resuming from `saved` (what the file holds), each level pulled back to
    /// `ends[level]`, its queue's end, if it was past it (the queue lost a torn tail at
    /// recovery), so messages parked from now on are not skipped.
    pub fn resume(saved: [u64; LEVELS], ends: [u64; LEVELS]) -> DelayProgress {
        let mut progress = DelayProgress { saved, ..DelayProgress::default() };
        for (i, level) in progress.levels.iter_mut().enumerate() {
            level.next = saved[i].min(ends[i]);
        }
        progress
    }

    /// Each level's next undelivered offset (index 0 = level 1).
    pub fn offsets(&self) -> [u64; LEVELS] {
        self.levels.map(|l| l.next)
    }

    pub fn level(&self, level: usize) -> Level {
        self.levels[level]
    }

    /// Moves a level's offset (clearing its wait when it moves).
    pub fn advance(&mut self, level: usize, next: u64) {
        let l = &mut self.levels[level];
        if next != l.next {
            l.next = next;
            l.not_before_ms = None;
        }
    }

    /// The entry at the level's offset is not to be looked at before `at_ms`.
    pub fn wait_until(&mut self, level: usize, at_ms: i64) {
        self.levels[level].not_before_ms = Some(at_ms);
    }

    /// A re-append was confirmed; its record ends at CommitLog position `record_end`.
    pub fn delivered(&mut self, record_end: u64) {
        self.delivered_end = self.delivered_end.max(record_end);
    }

    /// Takes a replicated group leader's progress (a follower applying its snapshot), so
    /// that after a failover the new leader resumes where the old one was.
    pub fn adopt(&mut self, offsets: [u64; LEVELS]) {
        for (level, next) in self.levels.iter_mut().zip(offsets) {
            if level.next != next {
                level.next = next;
                level.not_before_ms = None;
            }
        }
        // The re-appends that progress covers are the leader's, committed already.
        self.delivered_end = 0;
        self.candidate = None;
    }

    /// What a save at shutdown writes: the current offsets and the CommitLog end a flush
    /// must reach first; `None` when the file already holds them.
    pub fn unsaved(&self) -> Option<([u64; LEVELS], u64)> {
        let offsets = self.offsets();
        (offsets != self.saved).then_some((offsets, self.delivered_end))
    }

    /// What a periodic save may write now that the CommitLog is flushed up to `flushed`,
    /// without forcing a flush: the current offsets when the flush covers their
    /// re-appends; otherwise an earlier candidate the flush now covers (the current
    /// offsets become the next candidate); `None` when there is nothing new it may save.
    pub fn to_save(&mut self, flushed: u64) -> Option<[u64; LEVELS]> {
        let current = self.offsets();
        let offsets = if current == self.saved {
            None
        } else if flushed >= self.delivered_end {
            self.candidate = None;
            Some(current)
        } else {
            let end = self.delivered_end;
            match self.candidate {
                Some((offsets, at)) if flushed >= at => {
                    self.candidate = Some((current, end));
                    Some(offsets)
                }
                Some(_) => None,
                None => {
                    self.candidate = Some((current, end));
                    None
                }
            }
        };
        offsets.filter(|o| *o != self.saved)
    }

    /// `offsets` are now what the file holds.
    pub fn saved(&mut self, offsets: [u64; LEVELS]) {
        self.saved = offsets;
        if self.candidate.is_some_and(|(c, _)| c == offsets) {
            self.candidate = None;
        }
    }
}

/// `delayOffset.json`: level (1-based) → next queue offset, as RocketMQ writes it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelayOffsetFile {
    pub offset_table: BTreeMap<u32, u64>,
}

impl DelayOffsetFile {
    /// Reads the file's bytes.
    pub fn from_json(bytes: &[u8]) -> Result<DelayOffsetFile, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Each level's saved offset (index 0 = level 1), and the entries naming a level
    /// outside 1..=18, which are ignored.
    pub fn offsets(&self) -> ([u64; LEVELS], Vec<(u32, u64)>) {
        let mut saved = [0u64; LEVELS];
        let mut ignored = Vec::new();
        for (&level, &offset) in &self.offset_table {
            match saved.get_mut((level as usize).wrapping_sub(1)) {
                Some(slot) => *slot = offset,
                None => ignored.push((level, offset)),
            }
        }
        (saved, ignored)
    }
}

/// The file's bytes for `offsets`.
pub fn to_json(offsets: &[u64; LEVELS]) -> Vec<u8> {
    let file = DelayOffsetFile { offset_table: offsets.iter().enumerate().map(|(i, &o)| (i as u32 + 1, o)).collect() };
    serde_json::to_vec(&file).expect("a map of integers always serializes")
}

/// The delivery time of a parked record: what the store put in its ConsumeQueue slot.
pub fn due_ms(view: &stored::MessageView<'_>) -> i64 {
    tags_code_of(view.topic, view.properties, view.header.store_timestamp_ms)
}

/// Where a parked message is really going: REAL_TOPIC / REAL_QID. `None` when either is
/// missing or the queue id is not a number ≥ 0 (such a record cannot be delivered).
pub fn real_destination(props: &[u8]) -> Option<(&str, i32)> {
    let topic = properties::get(props, keys::REAL_TOPIC)?;
    let queue_id = properties::get(props, keys::REAL_QID)?.trim().parse::<i32>().ok().filter(|q| *q >= 0)?;
    Some((topic, queue_id))
}

/// The properties of a delivered message: the parked ones without DELAY (so it is not
/// parked again), order kept.
pub fn delivery_properties(props: &[u8]) -> Vec<u8> {
    properties::encode(properties::iter(props).filter(|(name, _)| *name != keys::DELAY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_properties_drop_only_delay() {
        let props = properties::encode([
            (keys::TAGS, "a"),
            (keys::DELAY, "3"),
            (keys::REAL_TOPIC, "orders"),
            (keys::REAL_QID, "2"),
            (keys::UNIQ_KEY, "ABC"),
        ]);
        let out = delivery_properties(&props);
        let pairs: Vec<_> = properties::iter(&out).collect();
        assert_eq!(
            pairs,
            [(keys::TAGS, "a"), (keys::REAL_TOPIC, "orders"), (keys::REAL_QID, "2"), (keys::UNIQ_KEY, "ABC")]
        );
    }

    #[test]
    fn real_destination_needs_topic_and_a_queue_number() {
        let ok = properties::encode([(keys::REAL_TOPIC, "orders"), (keys::REAL_QID, "5")]);
        assert_eq!(real_destination(&ok), Some(("orders", 5)));
        assert_eq!(real_destination(&properties::encode([(keys::REAL_TOPIC, "orders")])), None);
        let bad = properties::encode([(keys::REAL_TOPIC, "orders"), (keys::REAL_QID, "x")]);
        assert_eq!(real_destination(&bad), None);
        let negative = properties::encode([(keys::REAL_TOPIC, "orders"), (keys::REAL_QID, "-1")]);
        assert_eq!(real_destination(&negative), None);
    }

    #[test]
    fn offset_file_has_rocketmq_shape_and_round_trips() {
        let mut offsets = [0u64; LEVELS];
        offsets[0] = 5;
        offsets[17] = 9;
        let json = to_json(&offsets);
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.starts_with(r#"{"offsetTable":{"1":5,"2":0,"#), "{text}");
        assert!(text.ends_with(r#""18":9}}"#), "{text}");
        let back = DelayOffsetFile::from_json(&json).unwrap();
        assert_eq!(back.offset_table.len(), LEVELS);
        assert_eq!(back.offset_table[&18], 9);
        assert_eq!(back.offsets(), (offsets, vec![]));
        let odd = DelayOffsetFile::from_json(br#"{"offsetTable":{"0":1,"2":7,"19":3}}"#).unwrap();
        let (saved, ignored) = odd.offsets();
        assert_eq!((saved[1], ignored), (7, vec![(0, 1), (19, 3)]));
    }

    #[test]
    fn progress_resumes_within_the_queues_and_moving_clears_the_wait() {
        let mut saved = [0u64; LEVELS];
        saved[0] = 10;
        saved[1] = 4;
        let mut ends = [100u64; LEVELS];
        ends[0] = 6;
        let mut p = DelayProgress::resume(saved, ends);
        assert_eq!((p.offsets()[0], p.offsets()[1]), (6, 4), "pulled back to the end of a shortened queue");
        p.wait_until(1, 500);
        p.advance(1, 4);
        assert_eq!(p.level(1).not_before_ms, Some(500), "not moved: still waiting");
        p.advance(1, 5);
        assert_eq!(p.level(1), Level { next: 5, not_before_ms: None });
        p.wait_until(2, 9);
        let mut leader = [0u64; LEVELS];
        leader[2] = 3;
        p.adopt(leader);
        assert_eq!(p.level(2), Level { next: 3, not_before_ms: None });
    }

    #[test]
    fn saves_wait_for_the_flush_to_cover_the_re_appends() {
        let mut p = DelayProgress::default();
        assert_eq!(p.to_save(0), None, "nothing delivered, nothing to save");
        assert_eq!(p.unsaved(), None);
        p.advance(0, 1);
        p.delivered(100);
        assert_eq!(p.unsaved().map(|(o, end)| (o[0], end)), Some((1, 100)));
        // Not flushed: the current offsets become a candidate.
        assert_eq!(p.to_save(50), None);
        // More progress meanwhile; the flush now covers the candidate, not the latest.
        p.advance(0, 2);
        p.delivered(200);
        let first = p.to_save(120).expect("the candidate");
        assert_eq!(first[0], 1);
        p.saved(first);
        // The flush catches up with everything: the latest offsets are saved.
        let latest = p.to_save(200).expect("covered");
        assert_eq!(latest[0], 2);
        p.saved(latest);
        assert_eq!(p.to_save(200), None, "saved already");
        assert_eq!(p.unsaved(), None);
    }
}
