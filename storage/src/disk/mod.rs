//! The store's view of a disk: files it can write, read through the page cache or with
//! O_DIRECT, sync, allocate and trim, and directories it can list and sync.
//!
//! Two implementations: [`GlommioDisk`] (the real thing, io_uring through glommio) and,
//! for tests only, `crate::testing::SimDisk` (in memory: it keeps what has been
//! fdatasynced apart from what has only been written, and on power loss drops
//! everything not yet synced, including files whose directory entry was never synced;
//! it also injects ENOSPC, EIO and failed syncs). The simulator lives apart, behind the
//! `testing` feature, so it is no part of the production API.
//!
//! Runs on the executor of the shard that owns the store; nothing here is `Send`.
//!
//! Contract every implementation keeps, and the store relies on:
//! - `write_at` writes the whole buffer or fails; after a failure, the bytes of that range
//!   are unspecified but no other range changed.
//! - `sync_data` makes every completed `write_at` to that file durable; a new file (or a
//!   removal) is durable only after `sync_dir` of its directory.
//! - `write_at_durable` is `write_at` whose range is durable when it returns; it promises
//!   nothing for other ranges. If it fails, the range is unspecified, on the disk as in
//!   the page cache; ranges made durable before it stay durable.
//! - `read_at` and `read_direct` return identical bytes for the same range; both may
//!   return fewer bytes only at the end of the file.
//! - `prepare_range` writes zeros only into blocks wholly inside its range, and the store
//!   calls it only on ranges no write has touched or will touch while it runs.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;

mod glommio_disk;

pub use glommio_disk::{GlommioDisk, GlommioFile};

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file for reading and writing.
    Existing,
    /// Create the file if it does not exist, then open it for reading and writing.
    Create,
    /// Open an existing file for reading only (O_RDONLY), as `store inspect` does: every
    /// write, allocation, zeroing or truncation through it fails (EBADF) instead of
    /// changing the file, and opening works on a read-only mount.
    ReadOnly,
}

#[allow(async_fn_in_trait)] // The store is generic over one disk per shard; no `dyn`, no `Send`.
pub trait Disk: Clone + 'static {
    type File: DiskFile;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;
    async fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names (not paths) of the entries of `dir`, in no particular order.
    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    async fn remove_file(&self, path: &Path) -> io::Result<()>;
    async fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes creations, removals and renames inside `dir` durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    async fn exists(&self, path: &Path) -> bool;
    /// Last modification time, used by time-based retention.
    async fn modified(&self, path: &Path) -> io::Result<SystemTime>;
}

#[allow(async_fn_in_trait)]
pub trait DiskFile: 'static {
    fn path(&self) -> &PathBuf;
    /// Writes all of `buf` at `pos`.
    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> io::Result<()>;
    /// [`Self::write_at`] for a write nobody waits on with a deadline (no `sync`
    /// append): an implementation may hand it to another thread, trading latency for
    /// the caller's time.
    async fn write_at_in_background(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        self.write_at(buf, pos).await
    }
    /// Writes all of `buf` at `pos` and makes that range durable before returning, in
    /// one operation where the disk has one (O_DSYNC): a group commit whose earlier
    /// bytes are all durable needs no separate `sync_data`, and so no second trip
    /// through the kernel. The default writes, then syncs the whole file.
    async fn write_at_durable(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        self.write_at(buf, pos).await?;
        self.sync_data().await
    }
    /// Reads up to `len` bytes at `pos` through the page cache.
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    /// Reads up to `len` bytes at `pos` with O_DIRECT, bypassing (and not polluting) the
    /// page cache. Alignment is the implementation's business.
    async fn read_direct(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    async fn sync_data(&self) -> io::Result<()>;
    async fn size(&self) -> io::Result<u64>;
    /// Reserves `len` bytes from 0, extending the file with zeros if it is shorter, so
    /// writes inside the range cannot fail for lack of space.
    async fn allocate(&self, len: u64) -> io::Result<()>;
    /// Makes `[pos, pos + len)` read as zeros, keeping the file size.
    async fn zero_range(&self, pos: u64, len: u64) -> io::Result<()>;
    async fn truncate(&self, len: u64) -> io::Result<()>;
    /// Initializes the blocks wholly inside `[pos, pos + len)` of an allocated, unused
    /// range: writes zeros into them (bypassing the page cache where it can) and makes
    /// that durable, so later writes there overwrite written blocks and their
    /// fdatasyncs have no allocation state to commit. The range must hold no data and
    /// receive no write until this returns. A disk with nothing to gain does nothing.
    async fn prepare_range(&self, pos: u64, len: u64) -> io::Result<()> {
        let _ = (pos, len);
        Ok(())
    }
}

/// Reads exactly `len` bytes or fails with `UnexpectedEof`.
pub async fn read_exact<F: DiskFile>(file: &F, pos: u64, len: usize, direct: bool) -> io::Result<Bytes> {
    let got = if direct { file.read_direct(pos, len).await? } else { file.read_at(pos, len).await? };
    if got.len() < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("wanted {len} bytes at {pos}, the file has {}", got.len()),
        ));
    }
    Ok(got)
}
