//! The hard state of one shard's Raft group (term, vote, commit) and its voters, in the
//! file `<raft dir>/hardstate`, written so that a torn write cannot lose the previous
//! value: two slots, one sector apart, written alternately, each fdatasynced before the
//! next write begins.
//!
//! ```text
//!  slot at byte 0 and at byte 512; all integers big-endian
//!  offset  size  field
//!  0       8     SEQ      number of this write; the valid slot with the larger SEQ wins
//!  8       8     TERM
//!  16      8     VOTE     0: none
//!  24      8     COMMIT   may lag the real commit index (see COMMIT_PERSIST_EVERY_ENTRIES)
//!  32      4     VOTERS   count n, 1..=9
//!  36      72    VOTER    9 × u64 ids, the first n used, the rest zero
//!  108     4     CRC      CRC32 (IEEE) of bytes 0..108
//! ```
//!
//! Owns: the file. Invariants: a write goes to the slot the last durable write did not
//! use, and returns only after fdatasync, so at every moment one slot holds the latest
//! durable value intact; recovery takes the valid slot with the larger SEQ.
//! Thread: the shard's executor (the replica's completer task writes, serially).
//! Not here: deciding when to write (the replica: term/vote at once, commit lazily).

use std::path::{Path, PathBuf};

use rockshard_storage::disk::OpenMode;
use rockshard_storage::{Disk, DiskFile};

use crate::error::{Error, Result};
use crate::limits::{HARD_STATE_SLOT_STRIDE_BYTES, VOTERS_MAX};

/// Bytes of one slot.
pub const SLOT_BYTES: usize = 36 + 8 * VOTERS_MAX + 4;
const _: () = assert!(SLOT_BYTES == 112 && SLOT_BYTES <= HARD_STATE_SLOT_STRIDE_BYTES);

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    pub voters: Vec<u64>,
}

/// Encodes `hs` as write number `seq` (exactly [`SLOT_BYTES`] bytes).
pub fn encode(seq: u64, hs: &HardState) -> Vec<u8> {
    assert!(!hs.voters.is_empty() && hs.voters.len() <= VOTERS_MAX, "1..={VOTERS_MAX} voters");
    let mut out = Vec::with_capacity(SLOT_BYTES);
    for v in [seq, hs.term, hs.vote, hs.commit] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&(hs.voters.len() as u32).to_be_bytes());
    for i in 0..VOTERS_MAX {
        out.extend_from_slice(&hs.voters.get(i).copied().unwrap_or(0).to_be_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    debug_assert_eq!(out.len(), SLOT_BYTES);
    out
}

/// Decodes one slot: its SEQ and value, or `None` if it is not a valid slot.
pub fn decode(buf: &[u8]) -> Option<(u64, HardState)> {
    let buf = buf.get(..SLOT_BYTES)?;
    let crc_at = SLOT_BYTES - 4;
    let u64_at = |at: usize| u64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
    if crc32fast::hash(&buf[..crc_at]) != u32::from_be_bytes(buf[crc_at..].try_into().expect("4 bytes")) {
        return None;
    }
    let n = u32::from_be_bytes(buf[32..36].try_into().expect("4 bytes")) as usize;
    if n == 0 || n > VOTERS_MAX {
        return None;
    }
    let voters = (0..n).map(|i| u64_at(36 + 8 * i)).collect();
    Some((u64_at(0), HardState { term: u64_at(8), vote: u64_at(16), commit: u64_at(24), voters }))
}

pub struct HardStateFile<F: DiskFile> {
    file: F,
    path: PathBuf,
    /// SEQ of the last durable write (0: none yet).
    seq: u64,
}

impl<F: DiskFile> HardStateFile<F> {
    /// Opens (creating it if needed) the file; returns the latest durable hard state, or
    /// `None` when nothing was ever written.
    pub async fn open<D: Disk<File = F>>(disk: &D, path: &Path) -> Result<(Self, Option<HardState>)> {
        let created = !disk.exists(path).await;
        let file = disk.open(path, OpenMode::Create).await.map_err(Error::at("open", path, 0))?;
        if created {
            if let Some(dir) = path.parent() {
                disk.sync_dir(dir).await.map_err(Error::at("sync dir of", path, 0))?;
            }
        }
        let len = HARD_STATE_SLOT_STRIDE_BYTES + SLOT_BYTES;
        let buf = file.read_at(0, len).await.map_err(Error::at("read", path, 0))?;
        let slots = [buf.get(..).and_then(decode), buf.get(HARD_STATE_SLOT_STRIDE_BYTES..).and_then(decode)];
        let best = slots.into_iter().flatten().max_by_key(|(seq, _)| *seq);
        if best.is_none() && buf.iter().any(|&b| b != 0) {
            // Both slots damaged: the term and vote this node promised are unknown, and
            // guessing could make it vote twice in a term. An operator must look.
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                detail: "neither hard-state slot is valid".into(),
            });
        }
        let seq = best.as_ref().map_or(0, |(s, _)| *s);
        Ok((HardStateFile { file, path: path.to_path_buf(), seq }, best.map(|(_, hs)| hs)))
    }

    /// Writes `hs` into the slot the last durable write did not use, and fdatasyncs.
    pub async fn write(&mut self, hs: &HardState) -> Result<()> {
        let seq = self.seq + 1;
        let pos = (seq % 2) * HARD_STATE_SLOT_STRIDE_BYTES as u64;
        self.file.write_at(encode(seq, hs), pos).await.map_err(Error::at("write", &self.path, pos))?;
        self.file.sync_data().await.map_err(Error::at("fdatasync", &self.path, pos))?;
        self.seq = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rockshard_storage::testing::SimDisk;

    #[test]
    fn golden_bytes() {
        let hs = HardState { term: 5, vote: 2, commit: 300, voters: vec![1, 2, 3] };
        let out = encode(7, &hs);
        assert_eq!(out.len(), SLOT_BYTES);
        assert_eq!(&out[..8], &7u64.to_be_bytes());
        assert_eq!(&out[8..16], &5u64.to_be_bytes());
        assert_eq!(&out[16..24], &2u64.to_be_bytes());
        assert_eq!(&out[24..32], &300u64.to_be_bytes());
        assert_eq!(&out[32..36], &[0, 0, 0, 3]);
        assert_eq!(&out[36..60], &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3]);
        assert!(out[60..108].iter().all(|&b| b == 0));
        assert_eq!(&out[108..], &crc32fast::hash(&out[..108]).to_be_bytes());
        assert_eq!(decode(&out), Some((7, hs)));
        let mut torn = out.clone();
        torn[20] ^= 0x40;
        assert_eq!(decode(&torn), None);
    }

    #[test]
    fn a_torn_write_keeps_the_previous_value() {
        crate::test_util::run(|| async {
            let disk = SimDisk::new();
            disk.create_dir_all(Path::new("/r")).await.unwrap();
            let path = Path::new("/r/hardstate");
            let (mut f, hs) = HardStateFile::open(&disk, path).await.unwrap();
            assert_eq!(hs, None);
            let a = HardState { term: 1, vote: 1, commit: 0, voters: vec![1, 2, 3] };
            let b = HardState { term: 2, vote: 3, commit: 9, voters: vec![1, 2, 3] };
            f.write(&a).await.unwrap();
            f.write(&b).await.unwrap();
            drop(f);
            assert_eq!(HardStateFile::open(&disk, path).await.unwrap().1, Some(b.clone()));
            // The next write (to slot 1, where `a` was) is torn: `b` survives.
            disk.corrupt(path, HARD_STATE_SLOT_STRIDE_BYTES + 10, &[0xaa, 0xbb]);
            assert_eq!(HardStateFile::open(&disk, path).await.unwrap().1, Some(b.clone()));
            // Both slots damaged: refuse rather than guess a term and vote.
            disk.corrupt(path, 10, &[0xaa]);
            assert!(matches!(HardStateFile::open(&disk, path).await, Err(Error::Corrupt { .. })));
        });
    }

    #[test]
    fn unsynced_hard_state_is_not_lost_with_power() {
        crate::test_util::run(|| async {
            let disk = SimDisk::new();
            disk.create_dir_all(Path::new("/r")).await.unwrap();
            let path = Path::new("/r/hardstate");
            let (mut f, _) = HardStateFile::open(&disk, path).await.unwrap();
            let a = HardState { term: 4, vote: 2, commit: 1, voters: vec![1, 2, 3] };
            f.write(&a).await.unwrap();
            disk.power_loss_torn(99);
            assert_eq!(HardStateFile::open(&disk, path).await.unwrap().1, Some(a));
        });
    }
}
