//! The recovery checkpoint: a CommitLog offset below which every record is durable in
//! the CommitLog *and* indexed durably in its ConsumeQueue. Recovery rescans only what
//! lies past it, so restart time does not grow with the size of the store.
//!
//! The file holds two slots, one per 512-byte sector, written alternately. A write torn
//! by power loss can damage only the slot being written; the other still holds the
//! previous checkpoint. On open the valid slot with the higher sequence wins.
//!
//! ```text
//!  slot k at byte k × 512
//!  offset  size  field
//!  0       4     magic "RSCP" (0x52534350)
//!  4       4     format version (1)
//!  8       8     sequence number, +1 per write
//!  16      8     CommitLog offset (PhysicalOffset)
//!  24      4     CRC32 of bytes 0..24
//!  28      4     zero
//! ```
//!
//! Invariant kept by the store: a checkpoint is written only after the CommitLog has been
//! fdatasynced up to its offset and every ConsumeQueue entry for records below it has
//! been written and fdatasynced.

use crate::offset::PhysicalOffset;

pub const FILE_NAME: &str = "checkpoint";
pub const SLOT_STRIDE_BYTES: u64 = 512;
pub const SLOT_BYTES: usize = 32;
const MAGIC: u32 = 0x5253_4350;
const VERSION: u32 = 1;
const _: () = assert!(SLOT_BYTES as u64 <= SLOT_STRIDE_BYTES);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub sequence: u64,
    pub commitlog: PhysicalOffset,
}

impl Checkpoint {
    /// The slot this checkpoint is written to.
    pub fn slot_pos(&self) -> u64 {
        (self.sequence % 2) * SLOT_STRIDE_BYTES
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SLOT_BYTES);
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.commitlog.0.to_be_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out
    }

    /// One slot; `None` if it is empty, torn or not ours.
    pub fn decode_slot(b: &[u8]) -> Option<Self> {
        let b = b.get(..SLOT_BYTES)?;
        let word = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let long = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        if word(0) != MAGIC || word(4) != VERSION || word(24) != crc32fast::hash(&b[..24]) {
            return None;
        }
        Some(Checkpoint { sequence: long(8), commitlog: PhysicalOffset(long(16)) })
    }

    /// The newest valid checkpoint in a whole checkpoint file.
    pub fn decode_file(file: &[u8]) -> Option<Self> {
        let slot = |k: u64| file.get((k * SLOT_STRIDE_BYTES) as usize..).and_then(Checkpoint::decode_slot);
        match (slot(0), slot(1)) {
            (Some(a), Some(b)) => Some(if a.sequence >= b.sequence { a } else { b }),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        let c = Checkpoint { sequence: 3, commitlog: PhysicalOffset(0x1234) };
        let b = c.encode();
        assert_eq!(
            &b[..24],
            &[0x52, 0x53, 0x43, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0x12, 0x34]
        );
        assert_eq!(&b[24..28], &crc32fast::hash(&b[..24]).to_be_bytes());
        assert_eq!(c.slot_pos(), 512);
        assert_eq!(Checkpoint::decode_slot(&b), Some(c));
    }

    #[test]
    fn the_newest_valid_slot_wins_and_a_torn_slot_is_ignored() {
        let mut file = vec![0u8; 1024];
        let old = Checkpoint { sequence: 4, commitlog: PhysicalOffset(100) };
        let new = Checkpoint { sequence: 5, commitlog: PhysicalOffset(200) };
        file[old.slot_pos() as usize..][..SLOT_BYTES].copy_from_slice(&old.encode());
        file[new.slot_pos() as usize..][..SLOT_BYTES].copy_from_slice(&new.encode());
        assert_eq!(Checkpoint::decode_file(&file), Some(new));
        file[new.slot_pos() as usize + 20] ^= 0xff;
        assert_eq!(Checkpoint::decode_file(&file), Some(old));
        assert_eq!(Checkpoint::decode_file(&[0u8; 1024]), None);
        assert_eq!(Checkpoint::decode_file(&[]), None);
    }
}
