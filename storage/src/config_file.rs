//! Saves of the small whole files a shard keeps under its store's `config/` directory:
//! the topic table (`topics.json`), and for the broker its consumer offsets and
//! delayed-delivery progress. Each save replaces the whole file with a snapshot of the
//! state, atomically: write `<name>.tmp`, fdatasync it, rename it over `<name>`, sync the
//! directory, so a crash leaves the old or the new contents.
//!
//! Owns, per file name, a slot that orders its saves. Invariants:
//! - Saves of one file run one at a time (the temporary name is fixed, so two at once
//!   would truncate and rename each other's file).
//! - The newest snapshot offered wins: each offer gets a sequence number and replaces
//!   any older snapshot still waiting; the writer whose turn comes writes the newest one
//!   there is, and a caller whose snapshot an equal or newer one already covered returns
//!   at once. So a burst of changes costs a few writes, not one each, and an older
//!   snapshot never lands after a newer one.
//! - A failed attempt is retried (`CONFIG_SAVE_ATTEMPTS`, with a growing pause, taking
//!   any newer snapshot offered meanwhile); when every attempt fails the caller gets
//!   [`StorageError::ConfigSave`], the file keeps its previous contents, no temporary
//!   file is left, and the snapshot stays offered, so the next save (or
//!   [`ConfigFiles::unsaved`] and a retry by the owner) writes it.
//! - If `written < seq` when a caller gets its turn, a snapshot at least as new as its
//!   own is waiting: offers only replace older ones, and a writer that fails puts its
//!   snapshot back unless a newer one arrived.
//!
//! Runs on the executor of the shard that owns the store; nothing here is `Send`. No
//! `RefCell` borrow is held across an `.await`. Deliberately not here: what the files
//! hold (the callers serialise their own state) and reading them back.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::disk::{Disk, DiskFile, OpenMode};
use crate::error::{Result, StorageError};
use crate::limits::{CONFIG_SAVE_ATTEMPTS, CONFIG_SAVE_RETRY_DELAY_MS};

/// A snapshot offered for saving, and its place in the order of offers.
struct Snapshot {
    seq: u64,
    bytes: Vec<u8>,
}

/// The save order of one file.
struct Slot {
    /// Whose turn it is to write: one save of this file at a time.
    turn: glommio::sync::Semaphore,
    /// Sequence number of the latest offer (0: none yet).
    offered: Cell<u64>,
    /// Sequence number of the snapshot the file holds (0: none saved since open).
    written: Cell<u64>,
    /// The newest snapshot offered and not yet written.
    newest: RefCell<Option<Snapshot>>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            turn: glommio::sync::Semaphore::new(1),
            offered: Cell::new(0),
            written: Cell::new(0),
            newest: RefCell::new(None),
        }
    }

    /// Offers `bytes` as the file's newest contents; returns the offer's number.
    fn offer(&self, bytes: Vec<u8>) -> u64 {
        let seq = self.offered.get() + 1;
        self.offered.set(seq);
        *self.newest.borrow_mut() = Some(Snapshot { seq, bytes });
        seq
    }

    /// Puts back a snapshot whose save failed, unless a newer one was offered meanwhile.
    fn put_back(&self, snapshot: Snapshot) {
        let mut newest = self.newest.borrow_mut();
        if newest.is_none() {
            *newest = Some(snapshot);
        }
    }
}

/// The save slots of one store's `config/` files.
#[derive(Default)]
pub(crate) struct ConfigFiles {
    slots: RefCell<HashMap<String, Rc<Slot>>>,
}

impl ConfigFiles {
    fn slot(&self, name: &str) -> Rc<Slot> {
        self.slots.borrow_mut().entry(name.to_owned()).or_insert_with(|| Rc::new(Slot::new())).clone()
    }

    /// Whether a snapshot of `name` was offered that the file does not hold yet (a save
    /// is running or waiting, or the last one failed).
    pub(crate) fn unsaved(&self, name: &str) -> bool {
        self.slots.borrow().get(name).is_some_and(|s| s.written.get() < s.offered.get())
    }

    /// Replaces `dir/name` with `bytes`, or with a newer snapshot offered before this
    /// returns. `Ok` means the file holds `bytes` or something newer, durably.
    pub(crate) async fn save<D: Disk>(&self, disk: &D, dir: &Path, name: &str, bytes: Vec<u8>) -> Result<()> {
        let slot = self.slot(name);
        let seq = slot.offer(bytes);
        // The semaphore is never closed; failing to get a permit would mean it was.
        let _turn = slot.turn.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        if slot.written.get() >= seq {
            return Ok(());
        }
        let mut snapshot = slot.newest.borrow_mut().take().expect("an unwritten offer leaves a snapshot waiting");
        assert!(snapshot.seq >= seq, "an older snapshot waits after offer {seq}");
        let mut delay = Duration::from_millis(CONFIG_SAVE_RETRY_DELAY_MS);
        let mut attempt = 1;
        loop {
            match write_atomically(disk, dir, name, snapshot.bytes.clone()).await {
                Ok(()) => {
                    slot.written.set(snapshot.seq);
                    return Ok(());
                }
                Err(e) if attempt >= CONFIG_SAVE_ATTEMPTS => {
                    slot.put_back(snapshot);
                    return Err(StorageError::ConfigSave {
                        path: dir.join(name),
                        attempts: attempt,
                        last: Arc::new(e),
                    });
                }
                Err(e) => {
                    tracing::warn!(file = %dir.join(name).display(), attempt, error = %e, "saving a config file failed; trying again");
                    glommio::timer::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                    // A snapshot offered while this one failed is newer: write that.
                    if let Some(newer) = slot.newest.borrow_mut().take() {
                        snapshot = newer;
                    }
                }
            }
        }
    }
}

/// One attempt at replacing `dir/name` with `bytes` so that a crash leaves the old or
/// the new contents. A failed attempt removes its temporary file (best effort: it may
/// already be gone), so a failure leaves nothing behind but the old file.
async fn write_atomically<D: Disk>(disk: &D, dir: &Path, name: &str, bytes: Vec<u8>) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let result = async {
        let path = dir.join(name);
        let io = |op, p: &Path| StorageError::at(op, p, 0);
        let file = disk.open(&tmp, OpenMode::Create).await.map_err(io("create", &tmp))?;
        file.truncate(0).await.map_err(io("truncate", &tmp))?;
        file.write_at(bytes, 0).await.map_err(io("write", &tmp))?;
        file.sync_data().await.map_err(io("fdatasync", &tmp))?;
        disk.rename(&tmp, &path).await.map_err(io("rename", &tmp))?;
        disk.sync_dir(dir).await.map_err(io("sync directory", dir))
    }
    .await;
    if result.is_err() && disk.exists(&tmp).await {
        if let Err(e) = disk.remove_file(&tmp).await {
            tracing::warn!(file = %tmp.display(), error = %e, "removing the temporary file of a failed save failed");
        }
    }
    result
}
