//! Saves of the small whole-file state under a store's `config/` directory (the topic
//! table, consumer offsets, delay progress) when several run at once or the disk fails.
//!
//! What must hold: concurrent saves of one file all succeed and the file ends with the
//! newest snapshot offered, never an older one that happened to finish later; concurrent
//! topic changes all reach the disk (they survive power loss once answered); a save that
//! fails once is retried, and one that keeps failing is reported while the old contents
//! stay intact and no temporary file is left behind.
//!
//! Runs on one glommio executor on `SimDisk`, whose sync delay makes the saves overlap.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use common::{run, small_config};
use rockshard_storage::limits::CONFIG_SAVE_ATTEMPTS;
use rockshard_storage::testing::{SimDisk, SimWrite};
use rockshard_storage::{FlushMode, StorageError, Store, TopicConfig};

const DIR: &str = "/data";
const SEGMENT: u64 = 8192;
/// Saves in flight at once: enough that several wait while one writes.
const SAVES: usize = 16;
/// Every fdatasync takes this long, so each save yields while others start.
const SYNC_DELAY: Duration = Duration::from_millis(2);

async fn open(disk: &SimDisk) -> Store<SimDisk> {
    Store::open_on(disk.clone(), small_config(DIR, SEGMENT)).await.expect("store opens")
}

/// Files named `*.tmp` anywhere on the disk: a finished save leaves none.
fn temporary_files(disk: &SimDisk) -> Vec<String> {
    disk.files().iter().filter(|p| p.extension().is_some_and(|e| e == "tmp")).map(|p| p.display().to_string()).collect()
}

#[test]
fn concurrent_saves_of_one_file_all_succeed_and_the_newest_wins() {
    run(async {
        let disk = SimDisk::new();
        let store = Rc::new(open(&disk).await);
        disk.set_sync_delay(Some(SYNC_DELAY));
        // The first save's write is slow, so the saves after it would finish first if
        // nothing ordered them; the file must still end with the last one offered.
        disk.script_writes([SimWrite { delay: Some(Duration::from_millis(30)), fail: false }]);
        let syncs_before = disk.stats().syncs;
        let saves: Vec<_> = (0..SAVES)
            .map(|i| {
                let store = store.clone();
                glommio::spawn_local(
                    async move { store.save_config_file("progress.json", format!("{i}").into()).await },
                )
            })
            .collect();
        for (i, save) in saves.into_iter().enumerate() {
            save.await.unwrap_or_else(|e| panic!("save {i} failed: {e}"));
        }
        let saved = store.load_config_file("progress.json").await.expect("reads").expect("saved");
        assert_eq!(&saved[..], format!("{}", SAVES - 1).as_bytes(), "the newest snapshot wins");
        assert_eq!(temporary_files(&disk), Vec::<String>::new());
        // The saves that waited while the first one wrote are covered by one write of
        // the newest snapshot, not one write each.
        let syncs = disk.stats().syncs - syncs_before;
        assert!(syncs <= 2, "{SAVES} concurrent saves took {syncs} fdatasyncs");

        // And it is durable: power loss keeps it.
        disk.set_sync_delay(None);
        drop(store);
        disk.power_loss();
        let store = open(&disk).await;
        let saved = store.load_config_file("progress.json").await.expect("reads").expect("saved");
        assert_eq!(&saved[..], format!("{}", SAVES - 1).as_bytes());
    });
}

#[test]
fn concurrent_topic_creations_all_reach_the_disk() {
    run(async {
        let disk = SimDisk::new();
        let store = Rc::new(open(&disk).await);
        disk.set_sync_delay(Some(SYNC_DELAY));
        let creations: Vec<_> = (0..SAVES)
            .map(|i| {
                let store = store.clone();
                glommio::spawn_local(async move {
                    store.upsert_topic(TopicConfig::new(format!("%RETRY%group-{i}"), 1, FlushMode::Async)).await
                })
            })
            .collect();
        for (i, c) in creations.into_iter().enumerate() {
            c.await.unwrap_or_else(|e| panic!("creating topic {i} failed: {e}"));
        }
        disk.set_sync_delay(None);
        drop(store);
        disk.power_loss();
        let store = open(&disk).await;
        let mut names: Vec<String> = store.topics().into_iter().map(|t| t.name).collect();
        names.sort();
        let mut expected: Vec<String> = (0..SAVES).map(|i| format!("%RETRY%group-{i}")).collect();
        expected.sort();
        assert_eq!(names, expected, "every answered topic creation survives power loss");
        assert_eq!(temporary_files(&disk), Vec::<String>::new());
    });
}

#[test]
fn a_failed_save_is_retried_and_a_lasting_failure_is_reported_with_the_old_file_intact() {
    run(async {
        let disk = SimDisk::new();
        let store = open(&disk).await;
        store.save_config_file("offsets.json", b"first".to_vec()).await.expect("saves");

        // One failed fdatasync: the save tries again and succeeds.
        disk.fail_next_syncs(1);
        store.save_config_file("offsets.json", b"second".to_vec()).await.expect("a single failure is retried");
        let saved = store.load_config_file("offsets.json").await.expect("reads").expect("saved");
        assert_eq!(&saved[..], b"second");

        // A disk that keeps failing: the caller hears of it, naming the file.
        disk.fail_next_syncs(1_000);
        let err = store.save_config_file("offsets.json", b"third".to_vec()).await.expect_err("reported");
        assert!(matches!(err, StorageError::ConfigSave { attempts: CONFIG_SAVE_ATTEMPTS, .. }), "{err}");
        assert!(err.to_string().contains("offsets.json"), "the error names the file: {err}");
        disk.fail_next_syncs(0);
        let saved = store.load_config_file("offsets.json").await.expect("reads").expect("saved");
        assert_eq!(&saved[..], b"second", "the old contents stay");
        assert_eq!(temporary_files(&disk), Vec::<String>::new());
        assert!(disk.contents(Path::new("/data/config/offsets.json")).is_some());

        // The disk recovers: the next save goes through.
        store.save_config_file("offsets.json", b"fourth".to_vec()).await.expect("saves again");
        let saved = store.load_config_file("offsets.json").await.expect("reads").expect("saved");
        assert_eq!(&saved[..], b"fourth");
    });
}

#[test]
fn a_topic_change_whose_save_failed_is_known_unsaved_until_a_later_save_succeeds() {
    run(async {
        let disk = SimDisk::new();
        let store = open(&disk).await;
        store.upsert_topic(TopicConfig::new("Kept", 1, FlushMode::Async)).await.expect("saves");
        assert!(!store.topics_unsaved());

        disk.fail_next_syncs(1_000);
        let err = store.upsert_topic(TopicConfig::new("Late", 1, FlushMode::Async)).await.expect_err("reported");
        assert!(err.to_string().contains("topics.json"), "{err}");
        assert!(store.topics_unsaved(), "the change is in memory, not on disk");
        assert!(store.topic("Late").is_some());

        disk.fail_next_syncs(0);
        store.persist_topics().await.expect("saves now");
        assert!(!store.topics_unsaved());
        drop(store);
        disk.power_loss();
        let store = open(&disk).await;
        assert!(store.topic("Kept").is_some() && store.topic("Late").is_some());
    });
}

#[test]
fn the_maintenance_task_saves_a_topic_table_whose_save_failed() {
    run(async {
        let disk = SimDisk::new();
        let mut config = small_config(DIR, SEGMENT);
        config.checkpoint_interval_ms = 20;
        let store = Store::open_on(disk.clone(), config.clone()).await.expect("store opens");
        disk.fail_next_syncs(CONFIG_SAVE_ATTEMPTS);
        store.upsert_topic(TopicConfig::new("Late", 1, FlushMode::Async)).await.expect_err("every attempt fails");
        // Bounded wait: the maintenance task runs every 20 ms.
        for _ in 0..250 {
            if !store.topics_unsaved() {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        assert!(!store.topics_unsaved(), "the maintenance task did not save the table within 5 s");
        drop(store);
        disk.power_loss();
        let store = Store::open_on(disk.clone(), config).await.expect("store opens");
        assert!(store.topic("Late").is_some());
    });
}
