//! A type per kind of offset, so they never mix by accident.
//!
//! - [`PhysicalOffset`]: a byte position in a shard's CommitLog (RocketMQ's
//!   PHYSICALOFFSET / commitLogOffset). Segment files are named by one.
//! - [`QueueOffset`]: a logical index in one MessageQueue's ConsumeQueue (RocketMQ's
//!   queueOffset); entry n lives at byte n × 20.
//!
//! The CommitLog keeps three positions in a checked order, each its own type:
//! [`Flushed`] ≤ [`Written`] ≤ [`Appended`]. Appended: offsets handed out to records
//! (encoded in memory). Written: handed to the kernel (in the page cache, readable).
//! Flushed: covered by a completed fdatasync.

use std::fmt;

macro_rules! offset_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            pub const ZERO: Self = Self(0);
            pub fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

offset_type!(
    /// A byte position in a CommitLog.
    PhysicalOffset
);
offset_type!(
    /// A logical index in a ConsumeQueue.
    QueueOffset
);

impl PhysicalOffset {
    pub fn plus(self, bytes: u64) -> Self {
        Self(self.0 + bytes)
    }
}

impl QueueOffset {
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

offset_type!(
    /// End of the bytes given offsets and encoded in memory.
    Appended
);
offset_type!(
    /// End of the bytes handed to the kernel: readable, in the page cache.
    Written
);
offset_type!(
    /// End of the bytes covered by a completed fdatasync: survives power loss.
    Flushed
);

/// The three CommitLog positions. Every mutation goes through a method that checks
/// flushed ≤ written ≤ appended, and the check stays on in release builds: a store whose
/// positions disagree would acknowledge data it does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positions {
    flushed: Flushed,
    written: Written,
    appended: Appended,
}

impl Positions {
    /// All three at `at`: a freshly recovered log, everything on disk and synced.
    pub fn at(at: PhysicalOffset) -> Self {
        Self { flushed: Flushed(at.0), written: Written(at.0), appended: Appended(at.0) }
    }
    pub fn flushed(&self) -> PhysicalOffset {
        PhysicalOffset(self.flushed.0)
    }
    pub fn written(&self) -> PhysicalOffset {
        PhysicalOffset(self.written.0)
    }
    pub fn appended(&self) -> PhysicalOffset {
        PhysicalOffset(self.appended.0)
    }
    fn check(&self) {
        assert!(
            self.flushed.0 <= self.written.0 && self.written.0 <= self.appended.0,
            "CommitLog positions out of order: {self:?}"
        );
    }
    /// New records were given offsets up to `to`.
    pub fn append_to(&mut self, to: PhysicalOffset) {
        assert!(to.0 >= self.appended.0, "appended moves forward only");
        self.appended = Appended(to.0);
        self.check();
    }
    /// The kernel has everything up to `to`.
    pub fn write_to(&mut self, to: PhysicalOffset) {
        assert!(to.0 >= self.written.0, "written moves forward only");
        self.written = Written(to.0);
        self.check();
    }
    /// An fdatasync covering everything up to `to` completed.
    pub fn flush_to(&mut self, to: PhysicalOffset) {
        assert!(to.0 >= self.flushed.0, "flushed moves forward only");
        self.flushed = Flushed(to.0);
        self.check();
    }
    /// The CommitLog was cut at `at` (at or below `appended`, with nothing unwritten):
    /// appended = written = `at`, flushed = min(flushed, `at`).
    pub fn truncate_to(&mut self, at: PhysicalOffset) {
        assert!(at.0 <= self.appended.0, "a truncate never moves the end forward");
        self.appended = Appended(at.0);
        self.written = Written(at.0);
        self.flushed = Flushed(self.flushed.0.min(at.0));
        self.check();
    }
    /// A write failed: everything appended past the written end is abandoned.
    pub fn abandon_unwritten(&mut self) {
        self.appended = Appended(self.written.0);
        self.check();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_move_in_order() {
        let mut p = Positions::at(PhysicalOffset(10));
        p.append_to(PhysicalOffset(30));
        p.write_to(PhysicalOffset(20));
        p.flush_to(PhysicalOffset(20));
        assert_eq!((p.flushed().0, p.written().0, p.appended().0), (20, 20, 30));
        p.abandon_unwritten();
        assert_eq!(p.appended().0, 20);
    }

    #[test]
    fn a_truncate_moves_all_three_back_to_the_cut_at_most() {
        let mut p = Positions::at(PhysicalOffset(10));
        p.append_to(PhysicalOffset(50));
        p.write_to(PhysicalOffset(50));
        p.flush_to(PhysicalOffset(20));
        p.truncate_to(PhysicalOffset(30));
        assert_eq!((p.flushed().0, p.written().0, p.appended().0), (20, 30, 30));
        p.truncate_to(PhysicalOffset(15));
        assert_eq!((p.flushed().0, p.written().0, p.appended().0), (15, 15, 15));
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn writing_past_appended_is_a_bug() {
        let mut p = Positions::at(PhysicalOffset(0));
        p.write_to(PhysicalOffset(1));
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn flushing_past_written_is_a_bug() {
        let mut p = Positions::at(PhysicalOffset(0));
        p.append_to(PhysicalOffset(5));
        p.flush_to(PhysicalOffset(5));
    }
}
