#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.
mod common;
use common::*;
use rockshard_storage::testing::SimDisk;
use rockshard_storage::{GetStatus, Store};

#[test]
fn append_then_read_back() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), small_config("/data", 8192)).await.unwrap();
        let mut expected = Vec::new();
        for i in 0..100 {
            let b = body(i, 100 + i);
            let w = store.append(&[fields("T", 0, &b, b"TAGS\x01a\x02")], true).unwrap();
            let r = w.await.unwrap();
            assert_eq!(r.records[0].queue_offset.0, i as u64);
            expected.push(b);
        }
        assert_eq!(read_bodies(&store, "T", 0).await, expected);
        let got = store.get_messages("T", 0, q(100), 32, 1 << 20, None).await.unwrap();
        assert_eq!(got.status, GetStatus::OffsetOverflowOne);
        store.close().await.unwrap();
        let store = Store::open_on(disk.clone(), small_config("/data", 8192)).await.unwrap();
        assert_eq!(store.recovery_report().scanned_bytes, 0);
        assert_eq!(read_bodies(&store, "T", 0).await, expected);
    });
}
