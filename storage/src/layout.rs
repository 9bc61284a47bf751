//! Where each file of a store lives inside its directory, in one place for the store,
//! recovery and `store inspect`:
//!
//! ```text
//! <dir>/commitlog/<20-digit start offset>            CommitLog segments (commitlog.rs)
//! <dir>/consumequeue/<topic>/<queueId>/<20 digits>   ConsumeQueue files (consume_queue.rs)
//! <dir>/checkpoint                                   recovery checkpoint (checkpoint.rs)
//! <dir>/config/topics.json                           topic table (topics.rs)
//! <dir>/config/<name>                                the owner's state files (config_file.rs)
//! ```
//!
//! Pure path arithmetic: no I/O, any thread. Deliberately not here: the file names
//! inside these directories, which the modules named above own with their formats.

use std::path::{Path, PathBuf};

pub fn commitlog_dir(root: &Path) -> PathBuf {
    root.join("commitlog")
}

pub fn consumequeue_dir(root: &Path) -> PathBuf {
    root.join("consumequeue")
}

pub fn config_dir(root: &Path) -> PathBuf {
    root.join("config")
}

/// The directory of one ConsumeQueue's files.
pub fn queue_dir(root: &Path, topic: &str, queue_id: i32) -> PathBuf {
    consumequeue_dir(root).join(topic).join(queue_id.to_string())
}
