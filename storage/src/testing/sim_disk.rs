//! An in-memory disk that can lose power, for tests.
//!
//! Each file keeps two images: `data` (what reads see: the page cache) and `durable`
//! (what survives power loss: everything covered by a `sync_data`, and the range of each
//! completed `write_at_durable`). The directory tree likewise keeps the live names and
//! the names as of each directory's last `sync_dir`. [`SimDisk::power_loss`] throws
//! away everything not synced: file contents revert to their durable image, files
//! created since their directory was last synced vanish, and files removed since then
//! come back. [`SimDisk::power_loss_torn`] is harsher: of each unsynced 512-byte sector
//! it keeps a random half, as a disk that reorders writes would.
//!
//! Faults: a capacity (writes and allocations past it fail with ENOSPC, changing
//! nothing), counted failures of the next writes (EIO) or syncs (EIO; the sync half of a
//! `write_at_durable` counts as one), a script for the next writes (each slow, failing,
//! or both: writes then complete out of order, as several in flight on a real disk may),
//! slow or failing range preparations, and slow reads (which see the bytes as of their
//! completion, as a read the kernel performs late does: what lets tests race reads
//! against writes and truncates).
//!
//! `prepare_range` zeros its range when it starts and again when it ends, and makes the
//! zeros durable: a store that prepared a range holding data, or wrote into a range
//! while it was being prepared, loses that data here, where tests see it.
//!
//! A file opened [`OpenMode::ReadOnly`] refuses every change (write, allocation,
//! zeroing, truncation, preparation) with EBADF, as an O_RDONLY descriptor does, so a
//! test of a read-only path fails loudly on the first write it should not make.
//!
//! Directory creation is durable at once (a simplification: the store creates its
//! directories at start-up and syncs their parents anyway).
//!
//! Test code only: compiled for the crate's tests and for crates that enable the
//! `testing` feature (see `testing/mod.rs`). Runs on the executor of the test's store,
//! or on any thread without one (recovery in `fuzzing.rs`); nothing here is `Send`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::disk::{Disk, DiskFile, OpenMode};

const SECTOR_BYTES: usize = 512;

#[derive(Clone, Default)]
pub struct SimDisk {
    state: Rc<RefCell<State>>,
}

#[derive(Default)]
struct State {
    files: BTreeMap<PathBuf, Rc<FileData>>,
    durable_files: BTreeMap<PathBuf, Rc<FileData>>,
    dirs: BTreeSet<PathBuf>,
    capacity_bytes: Option<u64>,
    failing_writes: u32,
    failing_syncs: u32,
    sync_delay: Option<std::time::Duration>,
    write_script: VecDeque<SimWrite>,
    failing_prepares: u32,
    prepare_delay: Option<Duration>,
    read_delay: Option<Duration>,
    /// Every completed preparation: file, start, end.
    prepared: Vec<(PathBuf, u64, u64)>,
    stats: SimStats,
}

/// How one scripted write behaves ([`SimDisk::script_writes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimWrite {
    /// The write completes (and changes the file) only after this long.
    pub delay: Option<Duration>,
    /// The write fails with EIO (after its delay), changing nothing.
    pub fail: bool,
}

/// Counters a test can read to check how the store used the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    pub writes: u64,
    pub syncs: u64,
    /// Completed `write_at_durable` calls (counted in neither `writes` nor `syncs`).
    pub durable_writes: u64,
    pub direct_reads: u64,
    pub buffered_reads: u64,
    /// Completed `prepare_range` calls and the bytes they covered; failed ones.
    pub prepares: u64,
    pub prepared_bytes: u64,
    pub failed_prepares: u64,
}

struct FileData {
    data: RefCell<Vec<u8>>,
    durable: RefCell<Vec<u8>>,
    modified: Cell<SystemTime>,
}

pub struct SimFile {
    path: PathBuf,
    data: Rc<FileData>,
    disk: SimDisk,
    /// Opened [`OpenMode::ReadOnly`]: every change through it fails with EBADF, as on
    /// an O_RDONLY descriptor.
    read_only: bool,
}

fn enoent(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", path.display()))
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl SimDisk {
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits the bytes all files together may hold; `None` lifts the limit.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.state.borrow_mut().capacity_bytes = bytes;
    }

    /// Bytes all live files hold.
    pub fn used_bytes(&self) -> u64 {
        self.state.borrow().used()
    }

    /// The next `n` writes fail with EIO.
    pub fn fail_next_writes(&self, n: u32) {
        self.state.borrow_mut().failing_writes = n;
    }

    /// The next `n` syncs fail with EIO; so does the sync half of a `write_at_durable`,
    /// after its bytes reached the live image.
    pub fn fail_next_syncs(&self, n: u32) {
        self.state.borrow_mut().failing_syncs = n;
    }

    /// Every sync (and the sync half of every `write_at_durable`) takes this long (a
    /// slow or stalled disk); needs a glommio executor.
    pub fn set_sync_delay(&self, delay: Option<std::time::Duration>) {
        self.state.borrow_mut().sync_delay = delay;
    }

    /// The next writes, in the order they are issued, behave as `writes` says (after
    /// any already scripted). Delays need a glommio executor.
    pub fn script_writes(&self, writes: impl IntoIterator<Item = SimWrite>) {
        self.state.borrow_mut().write_script.extend(writes);
    }

    /// Scripted writes not yet issued.
    pub fn scripted_writes_left(&self) -> usize {
        self.state.borrow().write_script.len()
    }

    /// The next `n` range preparations fail with EIO.
    pub fn fail_next_prepares(&self, n: u32) {
        self.state.borrow_mut().failing_prepares = n;
    }

    /// The ranges of `path` prepared so far, in the order they were prepared.
    pub fn prepared_ranges(&self, path: &Path) -> Vec<(u64, u64)> {
        self.state.borrow().prepared.iter().filter(|(p, ..)| p == path).map(|&(_, s, e)| (s, e)).collect()
    }

    /// Every range preparation takes this long; needs a glommio executor.
    pub fn set_prepare_delay(&self, delay: Option<Duration>) {
        self.state.borrow_mut().prepare_delay = delay;
    }

    /// Every read waits this long before it copies the bytes (needs a glommio executor).
    pub fn set_read_delay(&self, delay: Option<Duration>) {
        self.state.borrow_mut().read_delay = delay;
    }

    /// An independent copy of the whole disk, live and durable images alike, so one
    /// written state can be damaged in many different ways.
    pub fn fork(&self) -> SimDisk {
        let st = self.state.borrow();
        let mut copies: BTreeMap<*const FileData, Rc<FileData>> = BTreeMap::new();
        let mut copy = |f: &Rc<FileData>| {
            copies
                .entry(Rc::as_ptr(f))
                .or_insert_with(|| {
                    Rc::new(FileData {
                        data: RefCell::new(f.data.borrow().clone()),
                        durable: RefCell::new(f.durable.borrow().clone()),
                        modified: Cell::new(f.modified.get()),
                    })
                })
                .clone()
        };
        let files = st.files.iter().map(|(p, f)| (p.clone(), copy(f))).collect();
        let durable_files = st.durable_files.iter().map(|(p, f)| (p.clone(), copy(f))).collect();
        SimDisk {
            state: Rc::new(RefCell::new(State {
                files,
                durable_files,
                dirs: st.dirs.clone(),
                capacity_bytes: st.capacity_bytes,
                failing_writes: 0,
                failing_syncs: 0,
                sync_delay: None,
                write_script: VecDeque::new(),
                failing_prepares: 0,
                prepare_delay: None,
                read_delay: None,
                prepared: Vec::new(),
                stats: SimStats::default(),
            })),
        }
    }

    pub fn stats(&self) -> SimStats {
        self.state.borrow().stats
    }

    /// Sets a file's modification time, for retention tests.
    pub fn set_modified(&self, path: &Path, at: SystemTime) {
        if let Some(f) = self.state.borrow().files.get(path) {
            f.modified.set(at);
        }
    }

    /// Live file paths, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        self.state.borrow().files.keys().cloned().collect()
    }

    /// The bytes a read of `path` would see now.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.state.borrow().files.get(path).map(|f| f.data.borrow().clone())
    }

    /// Overwrites bytes of a file as if the disk had been tampered with (durably).
    pub fn corrupt(&self, path: &Path, pos: usize, bytes: &[u8]) {
        let st = self.state.borrow();
        let f = st.files.get(path).expect("corrupt: no such file");
        for image in [&f.data, &f.durable] {
            let mut d = image.borrow_mut();
            if d.len() < pos + bytes.len() {
                d.resize(pos + bytes.len(), 0);
            }
            d[pos..pos + bytes.len()].copy_from_slice(bytes);
        }
    }

    /// Cuts a file to `len` bytes (durably), as a crash in the middle of a write may.
    pub fn cut(&self, path: &Path, len: usize) {
        let st = self.state.borrow();
        let f = st.files.get(path).expect("cut: no such file");
        f.data.borrow_mut().truncate(len);
        f.durable.borrow_mut().truncate(len);
    }

    /// Loses power: everything not synced is gone. Any store using this disk must be
    /// dropped first (its open handles see the reverted images).
    pub fn power_loss(&self) {
        self.lose_power(None);
    }

    /// Loses power, keeping a random half of the unsynced sectors (seeded).
    pub fn power_loss_torn(&self, seed: u64) {
        self.lose_power(Some(seed));
    }

    fn lose_power(&self, torn_seed: Option<u64>) {
        let mut st = self.state.borrow_mut();
        st.files = st.durable_files.clone();
        let mut rng = torn_seed.map(|s| s | 1);
        for f in st.files.values() {
            let data = f.data.borrow().clone();
            let mut kept = f.durable.borrow().clone();
            if let Some(state) = rng.as_mut() {
                for start in (0..data.len()).step_by(SECTOR_BYTES) {
                    let end = (start + SECTOR_BYTES).min(data.len());
                    let sector = &data[start..end];
                    let unchanged = kept.get(start..end) == Some(sector);
                    // xorshift64: a fixed seed gives the same tearing on every run.
                    *state ^= *state << 13;
                    *state ^= *state >> 7;
                    *state ^= *state << 17;
                    if !unchanged && *state % 2 == 0 {
                        if kept.len() < end {
                            kept.resize(end, 0);
                        }
                        kept[start..end].copy_from_slice(sector);
                    }
                }
            }
            *f.durable.borrow_mut() = kept.clone();
            *f.data.borrow_mut() = kept;
        }
    }
}

impl State {
    fn used(&self) -> u64 {
        self.files.values().map(|f| f.data.borrow().len() as u64).sum()
    }

    fn check_space(&self, growth: u64) -> io::Result<()> {
        match self.capacity_bytes {
            Some(cap) if self.used() + growth > cap => Err(errno(libc::ENOSPC)),
            _ => Ok(()),
        }
    }

    fn parent_exists(&self, path: &Path) -> bool {
        path.parent().is_none_or(|p| p.as_os_str().is_empty() || self.dirs.contains(p))
    }
}

impl Disk for SimDisk {
    type File = SimFile;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<SimFile> {
        let mut st = self.state.borrow_mut();
        let data = match (st.files.get(path), mode) {
            (Some(f), _) => f.clone(),
            (None, OpenMode::Existing | OpenMode::ReadOnly) => return Err(enoent(path)),
            (None, OpenMode::Create) => {
                if !st.parent_exists(path) {
                    return Err(enoent(path));
                }
                let f = Rc::new(FileData {
                    data: RefCell::new(Vec::new()),
                    durable: RefCell::new(Vec::new()),
                    modified: Cell::new(SystemTime::now()),
                });
                st.files.insert(path.to_path_buf(), f.clone());
                f
            }
        };
        Ok(SimFile { path: path.to_path_buf(), data, disk: self.clone(), read_only: mode == OpenMode::ReadOnly })
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        for dir in path.ancestors() {
            if !dir.as_os_str().is_empty() {
                st.dirs.insert(dir.to_path_buf());
            }
        }
        Ok(())
    }

    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.state.borrow();
        if !st.dirs.contains(dir) {
            return Err(enoent(dir));
        }
        let files = st.files.keys().filter(|p| p.parent() == Some(dir));
        let dirs = st.dirs.iter().filter(|p| p.parent() == Some(dir));
        Ok(files.chain(dirs).filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect())
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.state.borrow_mut().files.remove(path).map(|_| ()).ok_or_else(|| enoent(path))
    }

    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        st.files.retain(|p, _| !p.starts_with(path));
        st.durable_files.retain(|p, _| !p.starts_with(path));
        st.dirs.retain(|p| !p.starts_with(path));
        Ok(())
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        let f = st.files.remove(from).ok_or_else(|| enoent(from))?;
        st.files.insert(to.to_path_buf(), f);
        Ok(())
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        let State { files, durable_files, .. } = &mut *st;
        durable_files.retain(|p, _| p.parent() != Some(dir));
        for (p, f) in files.iter().filter(|(p, _)| p.parent() == Some(dir)) {
            durable_files.insert(p.clone(), f.clone());
        }
        Ok(())
    }

    async fn exists(&self, path: &Path) -> bool {
        let st = self.state.borrow();
        st.files.contains_key(path) || st.dirs.contains(path)
    }

    async fn modified(&self, path: &Path) -> io::Result<SystemTime> {
        self.state.borrow().files.get(path).map(|f| f.modified.get()).ok_or_else(|| enoent(path))
    }
}

impl SimFile {
    /// EBADF for a change through a file opened read-only.
    fn writable(&self) -> io::Result<()> {
        if self.read_only {
            return Err(errno(libc::EBADF));
        }
        Ok(())
    }

    /// The write half of `write_at` and `write_at_durable`: scripted behaviour, injected
    /// failures and the capacity limit, then the bytes into the live image.
    async fn write_live(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        self.writable()?;
        let scripted = self.disk.state.borrow_mut().write_script.pop_front().unwrap_or_default();
        if let Some(d) = scripted.delay {
            glommio::timer::sleep(d).await;
        }
        let mut st = self.disk.state.borrow_mut();
        if scripted.fail {
            return Err(errno(libc::EIO));
        }
        if st.failing_writes > 0 {
            st.failing_writes -= 1;
            return Err(errno(libc::EIO));
        }
        let end = pos as usize + buf.len();
        let len = self.data.data.borrow().len();
        st.check_space(end.saturating_sub(len) as u64)?;
        let mut d = self.data.data.borrow_mut();
        if d.len() < end {
            d.resize(end, 0);
        }
        d[pos as usize..end].copy_from_slice(&buf);
        self.data.modified.set(SystemTime::now());
        Ok(())
    }

    /// What every sync goes through before it makes anything durable: the configured
    /// delay, then an injected failure if one is due.
    async fn sync_delay_or_failure(&self) -> io::Result<()> {
        let delay = self.disk.state.borrow().sync_delay;
        if let Some(d) = delay {
            glommio::timer::sleep(d).await;
        }
        let mut st = self.disk.state.borrow_mut();
        if st.failing_syncs > 0 {
            st.failing_syncs -= 1;
            return Err(errno(libc::EIO));
        }
        Ok(())
    }

    async fn read_delay(&self) {
        let delay = self.disk.state.borrow().read_delay;
        if let Some(d) = delay {
            glommio::timer::sleep(d).await;
        }
    }
}

impl DiskFile for SimFile {
    fn path(&self) -> &PathBuf {
        &self.path
    }

    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        self.write_live(buf, pos).await?;
        self.disk.state.borrow_mut().stats.writes += 1;
        Ok(())
    }

    async fn write_at_durable(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        let (start, end) = (pos as usize, pos as usize + buf.len());
        self.write_live(buf, pos).await?;
        // As O_DSYNC does: if the sync half fails, the page cache has the bytes and the
        // disk may not.
        let written = self.data.data.borrow()[start..end].to_vec();
        self.sync_delay_or_failure().await?;
        self.disk.state.borrow_mut().stats.durable_writes += 1;
        // This range, and only it: earlier unsynced writes stay volatile.
        let mut image = self.data.durable.borrow_mut();
        if image.len() < end {
            image.resize(end, 0);
        }
        image[start..end].copy_from_slice(&written);
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.read_delay().await;
        self.disk.state.borrow_mut().stats.buffered_reads += 1;
        let d = self.data.data.borrow();
        let start = (pos as usize).min(d.len());
        let end = (start + len).min(d.len());
        Ok(Bytes::copy_from_slice(&d[start..end]))
    }

    async fn read_direct(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.read_delay().await;
        self.disk.state.borrow_mut().stats.direct_reads += 1;
        let d = self.data.data.borrow();
        let start = (pos as usize).min(d.len());
        let end = (start + len).min(d.len());
        Ok(Bytes::copy_from_slice(&d[start..end]))
    }

    async fn sync_data(&self) -> io::Result<()> {
        // fdatasync promises only what was written before it began: snapshot first, so a
        // slow sync does not also make durable the writes that land while it runs.
        let snapshot = self.data.data.borrow().clone();
        self.sync_delay_or_failure().await?;
        self.disk.state.borrow_mut().stats.syncs += 1;
        *self.data.durable.borrow_mut() = snapshot;
        Ok(())
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.data.data.borrow().len() as u64)
    }

    async fn allocate(&self, len: u64) -> io::Result<()> {
        self.writable()?;
        let st = self.disk.state.borrow();
        let cur = self.data.data.borrow().len() as u64;
        if len > cur {
            st.check_space(len - cur)?;
            self.data.data.borrow_mut().resize(len as usize, 0);
        }
        Ok(())
    }

    async fn zero_range(&self, pos: u64, len: u64) -> io::Result<()> {
        self.writable()?;
        let mut d = self.data.data.borrow_mut();
        let start = (pos as usize).min(d.len());
        let end = ((pos + len) as usize).min(d.len());
        d[start..end].fill(0);
        Ok(())
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.writable()?;
        self.data.data.borrow_mut().resize(len as usize, 0);
        Ok(())
    }

    async fn prepare_range(&self, pos: u64, len: u64) -> io::Result<()> {
        self.writable()?;
        let zero = |image: &RefCell<Vec<u8>>| {
            let mut d = image.borrow_mut();
            let start = (pos as usize).min(d.len());
            let end = ((pos + len) as usize).min(d.len());
            d[start..end].fill(0);
        };
        zero(&self.data.data);
        let delay = self.disk.state.borrow().prepare_delay;
        if let Some(d) = delay {
            glommio::timer::sleep(d).await;
        }
        let mut st = self.disk.state.borrow_mut();
        if st.failing_prepares > 0 {
            st.failing_prepares -= 1;
            st.stats.failed_prepares += 1;
            return Err(errno(libc::EIO));
        }
        zero(&self.data.data);
        {
            let mut durable = self.data.durable.borrow_mut();
            let end = ((pos + len) as usize).min(self.data.data.borrow().len());
            if durable.len() < end {
                durable.resize(end, 0);
            }
            let start = (pos as usize).min(end);
            durable[start..end].fill(0);
        }
        st.stats.prepares += 1;
        st.stats.prepared_bytes += len;
        st.prepared.push((self.path.clone(), pos, pos + len));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    #[test]
    fn power_loss_keeps_only_synced_data_and_synced_names() {
        block_on(async {
            let disk = SimDisk::new();
            disk.create_dir_all(Path::new("/d")).await.unwrap();
            let a = disk.open(Path::new("/d/a"), OpenMode::Create).await.unwrap();
            a.write_at(b"hello".to_vec(), 0).await.unwrap();
            a.sync_data().await.unwrap();
            disk.sync_dir(Path::new("/d")).await.unwrap();
            a.write_at(b"HELLO world".to_vec(), 0).await.unwrap();
            let b = disk.open(Path::new("/d/b"), OpenMode::Create).await.unwrap();
            b.write_at(b"never synced dir".to_vec(), 0).await.unwrap();
            b.sync_data().await.unwrap();
            drop((a, b));
            disk.power_loss();
            assert_eq!(disk.contents(Path::new("/d/a")).unwrap(), b"hello");
            assert!(disk.contents(Path::new("/d/b")).is_none(), "b's directory entry was never synced");
        });
    }

    #[test]
    fn capacity_refuses_growth_without_changing_anything() {
        block_on(async {
            let disk = SimDisk::new();
            disk.create_dir_all(Path::new("/d")).await.unwrap();
            disk.set_capacity(Some(10));
            let a = disk.open(Path::new("/d/a"), OpenMode::Create).await.unwrap();
            a.write_at(vec![1; 8], 0).await.unwrap();
            let err = a.write_at(vec![2; 8], 8).await.unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
            assert_eq!(disk.contents(Path::new("/d/a")).unwrap(), vec![1; 8]);
            // Overwriting inside the file needs no space.
            a.write_at(vec![3; 8], 0).await.unwrap();
            assert_eq!(a.allocate(100).await.unwrap_err().raw_os_error(), Some(libc::ENOSPC));
        });
    }

    #[test]
    fn torn_power_loss_is_deterministic_per_seed() {
        let run = |seed| {
            block_on(async {
                let disk = SimDisk::new();
                disk.create_dir_all(Path::new("/d")).await.unwrap();
                let a = disk.open(Path::new("/d/a"), OpenMode::Create).await.unwrap();
                a.write_at(vec![0; 8192], 0).await.unwrap();
                a.sync_data().await.unwrap();
                disk.sync_dir(Path::new("/d")).await.unwrap();
                a.write_at(vec![7; 8192], 0).await.unwrap();
                drop(a);
                disk.power_loss_torn(seed);
                disk.contents(Path::new("/d/a")).unwrap()
            })
        };
        let first = run(42);
        assert_eq!(first, run(42));
        let kept = first.chunks(SECTOR_BYTES).filter(|s| s[0] == 7).count();
        assert!(kept > 0 && kept < 16, "some but not all sectors survive: {kept}");
    }
}
