//! The real disk: glommio files on io_uring, and `pwrite` on glommio's blocking pool.
//!
//! Each file is opened up to four times: a `BufferedFile` for writes, page-cache reads,
//! syncs and allocation; a std `File` for large background writes, which run on the
//! blocking pool (see `write_at_in_background` for why); on first cold read or range
//! preparation, a `DmaFile` (O_DIRECT) for reads that must not pollute the page cache
//! and for writing zeros ahead of the data; and on first group commit, a `BufferedFile`
//! opened O_DSYNC (see `write_at_durable`). Mixing them is coherent: they share the page
//! cache, the kernel writes back dirty pages of a range before an O_DIRECT read of it,
//! and O_DIRECT zeros go only where no buffered write has been (see `prepare_range`).
//! A file opened [`OpenMode::ReadOnly`] gets only O_RDONLY descriptors (and no O_DSYNC
//! one), so nothing done through it can change the file.
//!
//! Directory operations (list, remove, rename, mtime) are rare (start-up, retention,
//! config saves) and use std on the executor thread, except file removal, which can take
//! milliseconds for a 1 GiB extent map and so runs on glommio's blocking pool.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

use bytes::Bytes;
use glommio::io::{BufferedFile, DmaBuffer, DmaFile, OpenOptions};

use super::{Disk, DiskFile, OpenMode};

#[derive(Debug, Clone, Default)]
pub struct GlommioDisk;

/// Blocks `prepare_range` writes: the page size, so a zeroed block never shares a page
/// with data written through the page cache, and a multiple of every O_DIRECT alignment.
const PREPARE_BLOCK_BYTES: u64 = 4096;

/// Background writes at least this large run on the blocking pool, smaller ones on
/// io_uring (see `write_at_in_background`). About 56 records of 1 KiB: a batch whose copy
/// takes longer than a thread hand-off.
const WRITE_OFFLOAD_MIN_BYTES: usize = 64 << 10;

/// The largest O_DIRECT write of zeros.
const ZERO_WRITE_BYTES: u64 = 1 << 20;

/// Zero buffers of every power of two from PREPARE_BLOCK_BYTES to ZERO_WRITE_BYTES
/// (2 MiB in all), allocated once per thread and shared by every write (`write_rc_at`):
/// any block-aligned length is a few of them, so preparing costs no memset per step.
const ZERO_BUFFER_SIZES: usize = (ZERO_WRITE_BYTES / PREPARE_BLOCK_BYTES).ilog2() as usize + 1;

thread_local! {
    static ZEROS: RefCell<[Option<Rc<DmaBuffer>>; ZERO_BUFFER_SIZES]> = const { RefCell::new([const { None }; ZERO_BUFFER_SIZES]) };
}

/// The shared zero buffer of the largest power-of-two size at most `len` (which is a
/// multiple of PREPARE_BLOCK_BYTES).
fn zero_buffer(file: &DmaFile, len: u64) -> Rc<DmaBuffer> {
    let size = 1u64 << len.min(ZERO_WRITE_BYTES).ilog2();
    let class = (size / PREPARE_BLOCK_BYTES).ilog2() as usize;
    ZEROS.with(|z| {
        z.borrow_mut()[class]
            .get_or_insert_with(|| {
                let mut b = file.alloc_dma_buffer(size as usize);
                b.as_bytes_mut().fill(0);
                Rc::new(b)
            })
            .clone()
    })
}

pub struct GlommioFile {
    path: PathBuf,
    /// False for a file opened [`OpenMode::ReadOnly`]: every descriptor of it is then
    /// opened O_RDONLY, so a write through any of them fails in the kernel.
    writable: bool,
    buffered: BufferedFile,
    direct: RefCell<Option<Rc<DmaFile>>>,
    /// The same file opened O_DSYNC, for `write_at_durable`.
    dsync: RefCell<Option<Rc<BufferedFile>>>,
    /// The same file, for `pwrite` on glommio's blocking pool (see `write_at`).
    std: std::sync::Arc<std::fs::File>,
}

fn to_io(e: glommio::GlommioError<()>) -> io::Error {
    io::Error::from(e)
}

/// Writes all of `buf` at `pos` through `file`, or fails.
///
/// glommio takes the buffer by value, so a short write cannot be resumed without keeping
/// a copy of every buffer. Segments are preallocated, so a short write means a real fault
/// (a full disk on a filesystem that ignores fallocate, EFBIG): report it as a failed
/// write and let the store roll back and retry.
async fn write_whole(file: &BufferedFile, buf: Vec<u8>, pos: u64) -> io::Result<()> {
    let len = buf.len();
    let n = file.write_at(buf, pos).await.map_err(to_io)?;
    if n != len {
        return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short write: {n} of {len} bytes")));
    }
    Ok(())
}

impl Disk for GlommioDisk {
    type File = GlommioFile;

    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<GlommioFile> {
        let writable = mode != OpenMode::ReadOnly;
        let buffered = OpenOptions::new()
            .read(true)
            .write(writable)
            .create(mode == OpenMode::Create)
            .buffered_open(path)
            .await
            .map_err(to_io)?;
        let std = std::sync::Arc::new(std::fs::OpenOptions::new().read(true).write(writable).open(path)?);
        Ok(GlommioFile {
            path: path.to_path_buf(),
            writable,
            buffered,
            direct: RefCell::new(None),
            dsync: RefCell::new(None),
            std,
        })
    }

    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    async fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        glommio::executor().spawn_blocking(move || std::fs::remove_file(path)).await
    }

    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        glommio::executor().spawn_blocking(move || std::fs::remove_dir_all(path)).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // glommio 0.9 opens a directory with openat(-1, path), which fails (EBADF) for a
        // relative path; files it resolves itself. A store in `./data` must still open.
        let dir = std::path::absolute(dir)?;
        let d = glommio::io::Directory::open(&dir).await.map_err(to_io)?;
        d.sync().await.map_err(to_io)?;
        d.close().await.map_err(to_io)
    }

    async fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    async fn modified(&self, path: &Path) -> io::Result<SystemTime> {
        std::fs::metadata(path)?.modified()
    }
}

impl GlommioFile {
    async fn direct(&self) -> io::Result<Rc<DmaFile>> {
        if let Some(f) = self.direct.borrow().as_ref() {
            return Ok(f.clone());
        }
        // Writable too (unless the file was opened read-only): `prepare_range` writes
        // zeros through it.
        let f = Rc::new(OpenOptions::new().read(true).write(self.writable).dma_open(&self.path).await.map_err(to_io)?);
        *self.direct.borrow_mut() = Some(f.clone());
        Ok(f)
    }

    async fn dsync(&self) -> io::Result<Rc<BufferedFile>> {
        if let Some(f) = self.dsync.borrow().as_ref() {
            return Ok(f.clone());
        }
        if !self.writable {
            // What a write on an O_RDONLY descriptor gets; never open a write-only one.
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .buffered_open(&self.path)
            .await
            .map_err(to_io)?;
        let f = Rc::new(f);
        *self.dsync.borrow_mut() = Some(f.clone());
        Ok(f)
    }
}

impl DiskFile for GlommioFile {
    fn path(&self) -> &PathBuf {
        &self.path
    }

    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        write_whole(&self.buffered, buf, pos).await
    }

    async fn write_at_in_background(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        if buf.len() < WRITE_OFFLOAD_MIN_BYTES {
            return self.write_at(buf, pos).await;
        }
        // pwrite on glommio's blocking pool, not a write on io_uring: this kernel runs a
        // buffered io_uring write to ext4 inline in the submitting thread, so the copy
        // into the page cache (most of an append's cost) ran on the executor, in turn
        // with encoding the next batch (BENCHMARKS.md). On the pool thread the copy
        // overlaps the executor's work, as the store's writes in flight intend. A pool of
        // more than one thread may run writes side by side and finish them out of order,
        // which the store allows for; a rare long job there (a segment removal) delays
        // the writes behind it. Not for writes `sync` appends wait on: in a group commit
        // the executor has nothing else to do meanwhile, and the hand-off's two wake-ups
        // would only lengthen every fdatasync cycle.
        use std::os::unix::fs::FileExt;
        let file = self.std.clone();
        glommio::executor().spawn_blocking(move || file.write_all_at(&buf, pos)).await
    }

    async fn write_at_durable(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        // One io_uring write on the O_DSYNC descriptor: the kernel copies into the page
        // cache, writes the range back and flushes the device cache before completing
        // it, all on one io_uring worker. A write then an fdatasync is two operations,
        // and between them the completion must come back to the executor and the
        // fdatasync go out again: two cross-thread wake-ups per group commit, which on
        // this VM cost more than the copy (BENCHMARKS.md, storage engine). The pages
        // stay cached, so consumers of fresh records still read memory.
        write_whole(&*self.dsync().await?, buf, pos).await
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let got = self.buffered.read_at(pos + out.len() as u64, len - out.len()).await.map_err(to_io)?;
            if got.is_empty() {
                break;
            }
            out.extend_from_slice(&got);
        }
        Ok(Bytes::from(out))
    }

    async fn read_direct(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        // Aligned reads done here rather than with glommio's unaligned `read_at`: that one
        // counts the bytes read from the aligned-down start but returns them from `pos`,
        // so near the end of a file it hands back bytes that lie past the end.
        let file = self.direct().await?;
        let start = file.align_down(pos);
        let skip = (pos - start) as usize;
        let want = file.align_up(pos + len as u64) - start;
        let got = file.read_at_aligned(start, want as usize).await.map_err(to_io)?;
        let available = got.len().saturating_sub(skip).min(len);
        if available == 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(&got[skip..skip + available]))
    }

    async fn sync_data(&self) -> io::Result<()> {
        self.buffered.fdatasync().await.map_err(to_io)
    }

    async fn size(&self) -> io::Result<u64> {
        self.buffered.file_size().await.map_err(to_io)
    }

    async fn allocate(&self, len: u64) -> io::Result<()> {
        self.buffered.pre_allocate(len, false).await.map_err(to_io)
    }

    async fn zero_range(&self, pos: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        // Punching a hole frees the blocks and makes the range read as zeros; allocating
        // it again keeps the promise that writes inside a segment cannot hit ENOSPC.
        self.buffered.deallocate(pos, len).await.map_err(to_io)?;
        self.buffered.pre_allocate(pos + len, false).await.map_err(to_io)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.buffered.truncate(len).await.map_err(to_io)
    }

    async fn prepare_range(&self, pos: u64, len: u64) -> io::Result<()> {
        let start = pos.div_ceil(PREPARE_BLOCK_BYTES) * PREPARE_BLOCK_BYTES;
        let end = (pos + len) / PREPARE_BLOCK_BYTES * PREPARE_BLOCK_BYTES;
        if end <= start {
            return Ok(());
        }
        let file = self.direct().await?;
        // O_DIRECT, so the zeros neither take page-cache memory nor cost a copy, and
        // the writes of one step in flight together.
        let mut writes = Vec::new();
        let mut at = start;
        while at < end {
            let buf = zero_buffer(&file, end - at);
            let n = buf.len() as u64;
            let file = file.clone();
            writes.push(glommio::spawn_local(async move {
                let written = file.write_rc_at(buf, at).await.map_err(to_io)?;
                if written as u64 != n {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short write: {written} of {n}")));
                }
                Ok(())
            }));
            at += n;
        }
        let mut first_error = None;
        for w in writes {
            if let Err(e) = w.await {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        // Through the O_DIRECT descriptor: an error here is also reported to the
        // buffered one's next fdatasync (the kernel tracks writeback errors per open
        // file), so the store's own flush still sees any error it must fence on.
        file.fdatasync().await.map_err(to_io)
    }
}
