//! Opening a replica reconciles the raft files with the data side: index entries whose
//! bytes the data side lost are dropped, data past the last indexed entry is cut, and a
//! data side that holds bytes but was never replicated is refused rather than cut.
//! A single-voter group (it elects itself) on `MemLog` + `SimDisk`, manual clock.
//!
//! Thread: one glommio executor per test; loops bounded.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use common::run;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use rockshard_raft::{Clock, Error, Hooks, LogData, MemLog, Message, Replica, ReplicaConfig, Status, Transport};
use rockshard_storage::testing::SimDisk;

struct NoNet;
impl Transport for NoNet {
    fn send(&self, _msgs: Vec<Message>) {}
}
struct NoHooks;
impl Hooks for NoHooks {
    fn applied(&self, _index: u64, _data: &[u8]) {}
    fn role_changed(&self, _status: &Status) {}
}

const ROUNDS_MAX: usize = 200;

fn config() -> ReplicaConfig {
    let mut c = ReplicaConfig::new(1, vec![1], PathBuf::from("/raft"));
    c.randomize_election_timeout = false;
    c
}

async fn open(data: &MemLog, disk: &SimDisk) -> Result<Replica<SimDisk, MemLog>, Error> {
    Replica::open_with(config(), data.clone(), disk.clone(), Rc::new(NoNet), Rc::new(NoHooks), Clock::Manual).await
}

async fn settle() {
    for _ in 0..16 {
        futures_lite::future::yield_now().await;
    }
}

async fn lead(r: &Replica<SimDisk, MemLog>) {
    for _ in 0..ROUNDS_MAX {
        if r.is_leader() {
            return;
        }
        r.tick();
        settle().await;
    }
    panic!("a single voter elects itself: {:?}", r.status());
}

#[test]
fn index_entries_past_the_data_are_dropped_and_data_past_the_index_is_cut() {
    run(|| async {
        let (data, disk) = (MemLog::new(), SimDisk::new());
        data.set_auto_durable(true);
        let r = open(&data, &disk).await.unwrap();
        lead(&r).await;
        for k in 0..5 {
            let p = r.propose(Bytes::from(format!("entry-{k}"))).unwrap();
            settle().await;
            p.await.unwrap();
        }
        let last = r.status().last_index;
        assert_eq!(r.status().applied, last);
        // A tick writes the commit index, so a restart shows readers everything.
        r.tick();
        settle().await;
        r.abort();

        // Bytes appended past the last indexed entry (a crash between the CommitLog
        // append and the index write) are cut at open.
        let indexed_end = data.end();
        let stray = data.append(b"never indexed").unwrap();
        assert_eq!(stray.span.start, indexed_end);
        let r = open(&data, &disk).await.unwrap();
        assert_eq!(data.end(), indexed_end);
        assert_eq!(r.status().last_index, last);
        assert_eq!(r.read_entry(last).await.unwrap().unwrap().1, Bytes::from("entry-4"));
        // Readers see what was committed before the restart.
        assert_eq!(data.visible_limit(), Some(indexed_end));
        lead(&r).await;

        // Entries whose data was never durable are dropped from the index at open.
        data.set_auto_durable(false);
        let p = r.propose(Bytes::from_static(b"lost-with-power")).unwrap();
        settle().await;
        assert_eq!(r.status().last_index, last + 2, "the new term's empty entry and the proposal");
        r.abort();
        drop(p);
        data.lose_unsynced();
        disk.power_loss();
        let r = open(&data, &disk).await.unwrap();
        let st = r.status();
        assert_eq!(st.last_index, last + 1, "the empty entry needs no data and stays");
        assert_eq!(data.end(), indexed_end);
        assert_eq!(r.read_entry(last + 1).await.unwrap().unwrap().1, Bytes::new());
        r.abort();
    });
}

#[test]
fn data_written_outside_replication_is_refused() {
    run(|| async {
        let (data, disk) = (MemLog::new(), SimDisk::new());
        data.append(b"standalone bytes").unwrap();
        match open(&data, &disk).await {
            Err(Error::Config { key: "dir", .. }) => {}
            other => panic!("expected a refusal, got {:?}", other.map(|r| r.status())),
        }
        assert_eq!(data.end(), 16, "nothing was cut");
    });
}

#[test]
fn voters_other_than_the_files_were_written_for_are_refused() {
    run(|| async {
        let (data, disk) = (MemLog::new(), SimDisk::new());
        data.set_auto_durable(true);
        let r = open(&data, &disk).await.unwrap();
        lead(&r).await; // writes the hard state (term, vote, voters)
        r.abort();
        let mut c = config();
        c.voters = vec![1, 2, 3];
        let got =
            Replica::open_with(c, data.clone(), disk.clone(), Rc::new(NoNet), Rc::new(NoHooks), Clock::Manual).await;
        assert!(matches!(got, Err(Error::Config { key: "voters", .. })));
    });
}

#[test]
fn a_proposal_that_is_not_applied_in_time_fails_with_timeout() {
    run(|| async {
        let (data, disk) = (MemLog::new(), SimDisk::new());
        data.set_auto_durable(true);
        let mut c = config();
        c.propose_timeout_ms = 300; // 3 ticks
        let r = Replica::open_with(c, data.clone(), disk.clone(), Rc::new(NoNet), Rc::new(NoHooks), Clock::Manual)
            .await
            .unwrap();
        lead(&r).await;
        // The data side never becomes durable: the entry is never committed.
        data.set_auto_durable(false);
        let p = r.propose(Bytes::from_static(b"stuck")).unwrap();
        for _ in 0..4 {
            r.tick();
            settle().await;
        }
        match p.await {
            Err(Error::Timeout { timeout_ms: 300 }) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
        r.abort();
    });
}
