//! One owner per data directory: the broker's exclusive lock on `<data_dir>/lock`, and
//! the shared lock `rockshard store inspect` holds while it reads.
//!
//! Why (issue 12): two brokers started on one directory both acknowledged sends and
//! overwrote each other's records, and `store inspect` run on a live directory repaired
//! the broker's files under it, zeroing records it had just acknowledged. Apache
//! RocketMQ locks `<storePathRootDir>/lock` the same way and refuses to start with
//! "Lock failed, MQ already started"; the message here says so too.
//!
//! How, and the invariants:
//! - flock(2) on the lock file, never waiting (LOCK_NB). The lock belongs to the open
//!   file description, so the kernel drops it when the process ends, however it ends:
//!   after a `kill -9` the file is still there but unlocked, and the next broker takes
//!   it. Nothing here ever decides from the file's contents or its existence whether a
//!   broker runs. (POSIX record locks would die with the process too, but any `close`
//!   of any descriptor of the file by the process drops them: a trap flock has not.)
//! - The descriptor is O_CLOEXEC (std opens everything so): no child inherits the lock.
//! - Once it holds the lock, the broker writes its pid into the file, only so that a
//!   refused broker or inspect can name the holder. A pid left by a killed broker is
//!   overwritten by the next owner; one read in the instant between another process's
//!   lock and its write may be missing (then the message says the pid is unknown).
//! - The file is never removed: removing it while another process opens it would let
//!   two processes lock two different files of the same name.
//! - `store inspect` may be given the data directory or a shard directory in it
//!   (`data/shard-0`, whose broker locks `data/lock`): it checks the directory it was
//!   given and its parent. For each lock file there it takes a shared lock (LOCK_SH)
//!   through a read-only descriptor, which creates nothing and works on a read-only
//!   mount, and holds them while it reads. A broker's exclusive lock makes inspect
//!   refuse (it names the broker's pid); a broker starting while inspect reads is
//!   refused in turn, naming inspect, so the directory cannot change under either. No
//!   lock file at all means no broker has run there since locking existed, so none runs.
//!
//! Runs on the calling thread: the broker's main thread before it starts any executor,
//! and `store inspect` before it opens the store. The guards live until the process has
//! stopped using the directory (`broker::run` returns after every shard closed its store).
//!
//! Deliberately not here: a lock per shard directory (a broker owns all its shards at
//! once, so the data directory is the unit), and waiting for a holder to go away.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::limits::DATA_DIR_LOCK_READ_MAX_BYTES;
use crate::{Error, Result};

/// The lock file's name in the data directory, as in Apache RocketMQ.
pub const LOCK_FILE_NAME: &str = "lock";

/// Who holds a data directory's lock, as far as a refused process can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// A broker holds the exclusive lock; its pid as it wrote it in the lock file.
    Broker { pid: Option<u32> },
    /// Only shared locks are held: `store inspect` is reading the directory.
    Inspect,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Broker { pid: Some(pid) } => write!(f, "a running broker, pid {pid}"),
            Holder::Broker { pid: None } => f.write_str("a running broker (pid unknown: not yet in the lock file)"),
            Holder::Inspect => f.write_str("`rockshard store inspect`, which is reading it"),
        }
    }
}

/// The broker's exclusive ownership of its data directory; released when dropped (or
/// when the process ends, however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    /// Holding the descriptor open is holding the lock.
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes `<data_dir>/lock` exclusively, without waiting, and writes our pid into it.
    /// Fails with [`Error::DirLocked`] when another process holds it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock> {
        let path = data_dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(Error::io("open lock file", path.display()))?;
        if !try_flock(&file, libc::LOCK_EX).map_err(Error::io("lock", path.display()))? {
            // Someone holds it. A shared lock we can take means only readers (inspect)
            // do; it is let go at once, the answer is only for the message.
            let holder = if try_flock(&file, libc::LOCK_SH).unwrap_or(false) {
                // SAFETY: flock(2) on a descriptor `file` owns, open for this whole call.
                unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
                Holder::Inspect
            } else {
                Holder::Broker { pid: recorded_pid(&file) }
            };
            return Err(Error::DirLocked { dir: data_dir.to_path_buf(), lock_file: path, holder });
        }
        // Ours now: replace whatever pid an earlier owner left.
        file.set_len(0).map_err(Error::io("truncate lock file", path.display()))?;
        file.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0)
            .map_err(Error::io("write lock file", path.display()))?;
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Shared locks on the lock files that can cover a directory `store inspect` reads,
/// held until dropped.
#[derive(Debug)]
pub struct ReadLocks {
    _files: Vec<File>,
}

/// Takes a shared lock on every lock file that can cover `dir`: its own and its
/// parent's (a shard directory's broker locks the data directory above it). Opens them
/// read-only and creates nothing. Fails with [`Error::DirLocked`] when a broker holds
/// one; a lock file that cannot be opened is an error too, since then nobody can tell
/// whether a broker writes there.
pub fn lock_for_reading(dir: &Path) -> Result<ReadLocks> {
    let mut files = Vec::new();
    for candidate in [Some(dir), dir.parent()].into_iter().flatten() {
        let path = candidate.join(LOCK_FILE_NAME);
        if !path.is_file() {
            continue;
        }
        let file = File::open(&path).map_err(Error::io("open lock file", path.display()))?;
        if !try_flock(&file, libc::LOCK_SH).map_err(Error::io("lock", path.display()))? {
            let holder = Holder::Broker { pid: recorded_pid(&file) };
            return Err(Error::DirLocked { dir: candidate.to_path_buf(), lock_file: path, holder });
        }
        files.push(file);
    }
    Ok(ReadLocks { _files: files })
}

/// flock(2) with LOCK_NB: `Ok(false)` when another open file description holds a
/// conflicting lock.
fn try_flock(file: &File, operation: libc::c_int) -> io::Result<bool> {
    // SAFETY: flock(2) on a descriptor `file` owns and keeps open for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(e)
}

/// The pid the holder wrote into the lock file, if there is a readable one.
fn recorded_pid(file: &File) -> Option<u32> {
    let mut buf = [0u8; DATA_DIR_LOCK_READ_MAX_BYTES];
    let n = file.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked_by(r: Result<impl fmt::Debug>) -> Holder {
        match r {
            Err(Error::DirLocked { holder, .. }) => holder,
            other => panic!("expected DirLocked, got {other:?}"),
        }
    }

    #[test]
    fn one_owner_at_a_time_and_the_lock_goes_with_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let owner = DataDirLock::acquire(dir.path()).unwrap();
        let pid = std::process::id();
        assert_eq!(std::fs::read_to_string(owner.path()).unwrap(), format!("{pid}\n"));
        // flock is per open file description: a second open in this process conflicts
        // exactly as another process would.
        let second = DataDirLock::acquire(dir.path());
        assert_eq!(locked_by(second), Holder::Broker { pid: Some(pid) });
        assert_eq!(locked_by(lock_for_reading(dir.path())), Holder::Broker { pid: Some(pid) });
        let shard = dir.path().join("shard-0");
        std::fs::create_dir(&shard).unwrap();
        match lock_for_reading(&shard) {
            Err(Error::DirLocked { dir: locked, holder, .. }) => {
                assert_eq!((locked.as_path(), holder), (dir.path(), Holder::Broker { pid: Some(pid) }))
            }
            other => panic!("a shard directory is covered by its parent's lock: {other:?}"),
        }
        drop(owner);
        // A pid left in the file decides nothing: the lock is free, and taken again.
        std::fs::write(dir.path().join(LOCK_FILE_NAME), "999999999\n").unwrap();
        let again = DataDirLock::acquire(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(again.path()).unwrap(), format!("{pid}\n"));
    }

    #[test]
    fn readers_share_and_keep_a_broker_out_while_they_read() {
        let dir = tempfile::tempdir().unwrap();
        // No lock file: nothing to take, and nothing is created.
        let none = lock_for_reading(dir.path()).unwrap();
        assert!(!dir.path().join(LOCK_FILE_NAME).exists());
        drop(none);
        drop(DataDirLock::acquire(dir.path()).unwrap());
        let a = lock_for_reading(dir.path()).unwrap();
        let b = lock_for_reading(&dir.path().join("shard-0")).unwrap();
        assert_eq!(locked_by(DataDirLock::acquire(dir.path())), Holder::Inspect);
        drop((a, b));
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
