//! Tests across the broker's layers: the layering rule itself, read from the sources,
//! and scenarios that need a whole shard with its tasks running (retries through the
//! delay queue, transaction ends).
//!
//! Test-only; runs each scenario on a glommio executor of its own on the test thread,
//! with a one-shard broker in a temporary directory.

use std::path::{Path, PathBuf};

/// The layers of `src/broker`, and the modules of the broker each one must not import:
/// nothing imports upward (`handlers → ops → state`, `tasks → ops → state`), and the two
/// top layers do not import each other.
const FORBIDDEN: [(&str, &[&str]); 4] = [
    ("state", &["ops", "handlers", "tasks", "dispatch", "start"]),
    ("ops", &["handlers", "tasks", "dispatch", "start"]),
    ("handlers", &["tasks", "dispatch", "start"]),
    ("tasks", &["handlers", "dispatch", "start"]),
];

/// `text` without its comments and the insides of its string and char literals (doc
/// comments name other layers freely, and strings may say `async`).
fn code_of(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let ident_before = i > 0 && (at(i - 1).is_alphanumeric() || at(i - 1) == '_');
        if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && at(i + 1) == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && !ident_before && (at(i + 1) == '"' || at(i + 1) == '#') {
            let mut j = i + 1;
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            if at(j) != '"' {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len() && !(chars[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#')) {
                j += 1;
            }
            out.push_str("\"\"");
            i = j + 1 + hashes;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == '\'' && (at(i + 2) == '\'' || at(i + 1) == '\\') {
            // A char literal ('x', '\n', '\''); a lifetime ('a) has no closing quote.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            out.push_str("' '");
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The broker modules a source file of `layer` names, by the paths that lead out of
/// its layer: `crate::broker::<m>`, and `super::<m>` from the layer's `mod.rs` or
/// `super::super::<m>` from a file in it. A brace group names each of its items.
fn broker_modules_named(code: &str, in_mod_rs: bool) -> Vec<String> {
    let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let prefixes: &[&str] =
        if in_mod_rs { &["crate::broker::", "super::"] } else { &["crate::broker::", "super::super::"] };
    let mut named = Vec::new();
    for prefix in prefixes {
        let mut rest = compact.as_str();
        while let Some(at) = rest.find(prefix) {
            // `super::super::x` also contains `super::x`: only whole prefixes count.
            let whole = !(*prefix == "super::" && compact_before_is_super(rest, at));
            rest = &rest[at + prefix.len()..];
            if !whole {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    named.push(leading_ident(item));
                }
            } else {
                named.push(leading_ident(rest));
            }
        }
    }
    named.retain(|m| !m.is_empty());
    named
}

fn compact_before_is_super(rest: &str, at: usize) -> bool {
    rest[..at].ends_with("super::")
}

fn leading_ident(s: &str) -> String {
    s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The upward (or sideways) imports in one source file of `layer`.
fn violations(layer: &str, file_name: &str, text: &str) -> Vec<String> {
    let forbidden = FORBIDDEN.iter().find(|(l, _)| *l == layer).map_or(&[][..], |(_, f)| f);
    let code = code_of(text);
    let mut found: Vec<String> = broker_modules_named(&code, file_name == "mod.rs")
        .into_iter()
        .filter(|m| forbidden.contains(&m.as_str()))
        .map(|m| format!("imports `{m}`"))
        .collect();
    // The state layer never waits: its methods are synchronous, so no borrow of a table
    // can live across an `.await`.
    if layer == "state"
        && (code.contains(".await") || code.split(|c: char| !c.is_alphanumeric() && c != '_').any(|w| w == "async"))
    {
        found.push("awaits (state is synchronous)".into());
    }
    found
}

#[test]
fn layers_import_only_downward() {
    let broker = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/broker");
    let mut problems = Vec::new();
    for (layer, _) in FORBIDDEN {
        let files = sources(&broker.join(layer));
        assert!(files.len() >= 3, "{layer}: found only {files:?}; has src/broker moved?");
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            for v in violations(layer, name, &text) {
                problems.push(format!("{}: {v}", path.strip_prefix(&broker).unwrap_or(&path).display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "imports against the broker's layers (see src/broker/mod.rs):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_layering_check_sees_every_way_of_importing_upward() {
    assert_eq!(violations("state", "groups.rs", "use crate::broker::ops::Shard;"), ["imports `ops`"]);
    assert_eq!(violations("state", "groups.rs", "use crate::broker::{now_ms, handlers};"), ["imports `handlers`"]);
    assert_eq!(violations("state", "groups.rs", "let x = super::super::tasks::schedule::start;"), ["imports `tasks`"]);
    assert_eq!(violations("state", "mod.rs", "use super::ops::Shard;"), ["imports `ops`"]);
    assert_eq!(violations("ops", "topics.rs", "use crate::broker::\n    handlers::answer;"), ["imports `handlers`"]);
    assert_eq!(violations("handlers", "send.rs", "crate::broker::tasks::start(&shard)"), ["imports `tasks`"]);
    assert_eq!(violations("tasks", "mod.rs", "use super::handlers;"), ["imports `handlers`"]);
    assert_eq!(violations("state", "delay.rs", "pub async fn load() {}"), ["awaits (state is synchronous)"]);
    assert_eq!(violations("state", "delay.rs", "fn f() { x.await }"), ["awaits (state is synchronous)"]);
    // Downward imports, imports within a layer, and comments are fine.
    assert!(violations("handlers", "send.rs", "use crate::broker::ops::Shard;\nuse super::answer::reply;").is_empty());
    assert!(violations("ops", "append.rs", "use super::super::state::StateCell; // see handlers::send").is_empty());
    assert!(violations("ops", "delay.rs", "use super::append::Outgoing;\nuse crate::broker::now_ms;").is_empty());
    assert!(violations("state", "pulls.rs", "/// Woken by `ops::pulls`, awaited by the pull handler.").is_empty());
    assert!(violations("state", "topics.rs", "let x = \"+flush.mode=async\"; let y = r#\"crate::broker::ops\"#;")
        .is_empty());
    assert!(violations("state", "topics.rs", "let q = '\"'; /* super::super::ops */ fn f<'a>() {}").is_empty());
}

/// A shard with its delayed-delivery task: retries, dead letters, transaction ends.
mod shard_scenarios {
    use std::path::Path;
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    use rockshard_net::code::response;
    use rockshard_net::headers::{ConsumerSendMsgBackRequestHeader, EndTransactionRequestHeader};
    use rockshard_net::msgid;
    use rockshard_net::properties::{self, keys};
    use rockshard_net::stored::{self, sys_flag, MessageView, Record};
    use rockshard_storage::topics::perm;
    use rockshard_storage::{GetStatus, QueueOffset};

    use crate::broker::handlers::sendback::{end_transaction, send_back};
    use crate::broker::ops::append::Outgoing;
    use crate::broker::ops::control::{ControlPlane, Mesh};
    use crate::broker::ops::Shard;
    use crate::broker::tasks;
    use crate::config::{BrokerConfig, BrokerSettings};
    use rockshard_local::Signal;

    fn run<T: 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
        glommio::LocalExecutorBuilder::default().make().expect("glommio executor").run(f)
    }

    async fn open_shard(dir: &Path) -> Rc<Shard> {
        let settings = BrokerSettings {
            data_dir: Some(dir.to_path_buf()),
            shards: Some(1),
            segment_size_bytes: Some(1 << 20),
            ..Default::default()
        };
        let config = BrokerConfig::resolve(None, settings).expect("config");
        let endpoints = Mesh::new(1).into_endpoints().pop().expect("one shard");
        let control = ControlPlane::connect(0, endpoints).await;
        Shard::open(0, Rc::new(config), control, Signal::new()).await.expect("shard opens")
    }

    /// Stores a message as a producer's send would; returns its CommitLog offset.
    async fn produce(shard: &Rc<Shard>, topic: &str, props: &[u8], sys: i32) -> i64 {
        let m = Outgoing {
            topic,
            queue_id: 0,
            body: b"payload",
            flag: 3,
            properties: props,
            sys_flag: sys,
            born_timestamp_ms: 1_700_000_000_000,
            born_host: "127.0.0.1:40000".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        };
        let wait = shard.append(&[m], true).expect("append");
        wait.await.expect("stored").records[0].physical_offset.0 as i64
    }

    /// Waits (bounded) until `topic` queue 0 holds `n` messages; returns the last one's
    /// bytes and when it was seen.
    async fn wait_for(shard: &Rc<Shard>, topic: &str, n: u64) -> (bytes::Bytes, Instant) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((_, max)) = shard.queue_offsets(topic, 0) {
                if max.0 >= n {
                    let seen = Instant::now();
                    let got = shard.read_messages(topic, 0, QueueOffset(n - 1), 1, 1 << 20, None).await.unwrap();
                    assert_eq!(got.status, GetStatus::Found);
                    return (got.messages[0].clone(), seen);
                }
            }
            assert!(Instant::now() < deadline, "{topic} never got message {n}");
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }

    fn view(bytes: &[u8]) -> MessageView<'_> {
        match stored::decode(bytes) {
            Ok(Some(Record::Message(v))) => v,
            other => panic!("not a message: {other:?}"),
        }
    }

    fn back(offset: i64, delay_level: i32, max: i32) -> ConsumerSendMsgBackRequestHeader {
        ConsumerSendMsgBackRequestHeader {
            offset,
            group: "G".into(),
            delay_level,
            max_reconsume_times: Some(max),
            ..Default::default()
        }
    }

    #[test]
    fn failed_messages_retry_through_the_delay_queue_then_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let shard = open_shard(&path).await;
            tasks::schedule::start(&shard);
            let props = properties::encode([(keys::TAGS, "TagA"), (keys::UNIQ_KEY, "U1")]);
            let first = produce(&shard, "orders", &props, 0).await;
            let first_id = msgid::encode(shard.store_host(), first);

            // First failure, the consumer names level 1 (1 s): parked, then delivered
            // to %RETRY%G no earlier than its delay and soon after it.
            let asked = Instant::now();
            send_back(&shard, &back(first, 1, 2)).await.expect("sent back");
            assert_eq!(shard.topic("%RETRY%G").map(|t| t.write_queues), Some(1));
            let (parked, _) = wait_for(&shard, crate::broker::state::delay_rules::SCHEDULE_TOPIC, 1).await;
            assert_eq!(properties::get(view(&parked).properties, keys::REAL_TOPIC), Some("%RETRY%G"));
            let (retry1, seen) = wait_for(&shard, "%RETRY%G", 1).await;
            let waited = seen - asked;
            assert!(waited >= Duration::from_millis(1_000), "delivered after {waited:?}");
            assert!(waited < Duration::from_millis(1_900), "delivered after {waited:?}");
            let v = view(&retry1);
            assert_eq!(v.header.reconsume_times, 1);
            assert_eq!((v.body, v.header.flag), (&b"payload"[..], 3));
            assert_eq!(properties::get(v.properties, keys::RETRY_TOPIC), Some("orders"));
            assert_eq!(properties::get(v.properties, keys::ORIGIN_MESSAGE_ID), Some(first_id.as_str()));
            assert_eq!(properties::get(v.properties, keys::DELAY), None);
            assert_eq!(properties::get(v.properties, keys::TAGS), Some("TagA"));

            // Second failure: once more through the delay queue.
            send_back(&shard, &back(v.header.physical_offset, 1, 2)).await.expect("sent back");
            let (retry2, _) = wait_for(&shard, "%RETRY%G", 2).await;
            let v = view(&retry2);
            assert_eq!(v.header.reconsume_times, 2);
            assert_eq!(properties::get(v.properties, keys::ORIGIN_MESSAGE_ID), Some(first_id.as_str()));

            // Third failure: consumed max (2) times already, so straight to the DLQ.
            send_back(&shard, &back(v.header.physical_offset, 0, 2)).await.expect("sent back");
            let (dead, _) = wait_for(&shard, "%DLQ%G", 1).await;
            let v = view(&dead);
            assert_eq!(v.header.reconsume_times, 3);
            assert_eq!(properties::get(v.properties, keys::RETRY_TOPIC), Some("orders"));
            let dlq = shard.topic("%DLQ%G").expect("DLQ created");
            assert_eq!((dlq.write_queues, dlq.perm), (1, perm::READ_WRITE));

            // A consumer asking for the DLQ (level -1) gets it at once.
            send_back(&shard, &back(first, -1, 16)).await.expect("sent back");
            wait_for(&shard, "%DLQ%G", 2).await;

            // Offsets that name no message are refused, nothing is stored.
            let err = send_back(&shard, &back(first + 1, 0, 16)).await.unwrap_err();
            assert_eq!(err.0, response::SYSTEM_ERROR);
            let err = send_back(&shard, &back(-5, 0, 16)).await.unwrap_err();
            assert_eq!(err.0, response::SYSTEM_ERROR);
            assert_eq!(shard.queue_offsets("%DLQ%G", 0).map(|(_, max)| max.0), Some(2));

            shard.shutdown().trigger();
            shard.close().await.expect("closes");
        });
    }

    #[test]
    fn end_transaction_commits_or_drops_the_half() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let shard = open_shard(&path).await;
            let half_props = |key: &'static str| {
                properties::encode([(keys::TRAN_MSG, "true"), (keys::PGROUP, "pg"), (keys::UNIQ_KEY, key)])
            };
            let a = produce(&shard, "orders", &half_props("A"), sys_flag::TRANSACTION_PREPARED).await;
            let b = produce(&shard, "orders", &half_props("B"), sys_flag::TRANSACTION_PREPARED).await;
            assert_eq!(shard.queue_offsets("orders", 0), None, "halves are never indexed");
            let end = |offset: i64, how: i32, group: &str| EndTransactionRequestHeader {
                producer_group: group.into(),
                tran_state_table_offset: 0,
                commit_log_offset: offset,
                commit_or_rollback: how,
                msg_id: "U".into(),
                ..Default::default()
            };

            // Wrong group, an offset that is no half, and an unknown decision are refused.
            let err = end_transaction(&shard, &end(a, 8, "other")).await.unwrap_err();
            assert_eq!(err.0, response::SYSTEM_ERROR);
            let plain = produce(&shard, "orders", &properties::encode([(keys::UNIQ_KEY, "P")]), 0).await;
            assert!(end_transaction(&shard, &end(plain, 8, "pg")).await.is_err());
            assert_eq!(end_transaction(&shard, &end(a, 5, "pg")).await.unwrap_err().0, response::INVALID_PARAMETER);
            // "Unknown" and rollback store nothing.
            end_transaction(&shard, &end(a, 0, "pg")).await.expect("unknown is fine");
            end_transaction(&shard, &end(b, 12, "pg")).await.expect("rolled back");
            assert_eq!(shard.queue_offsets("orders", 0).map(|(_, max)| max.0), Some(1), "only the plain one");

            // Commit: the message appears on its topic, marked committed.
            end_transaction(&shard, &end(a, 8, "pg")).await.expect("committed");
            let (committed, _) = wait_for(&shard, "orders", 2).await;
            let v = view(&committed);
            assert_eq!(v.header.sys_flag & sys_flag::TRANSACTION_MASK, sys_flag::TRANSACTION_COMMIT);
            assert_eq!(v.header.prepared_transaction_offset, a);
            assert_eq!(properties::get(v.properties, keys::UNIQ_KEY), Some("A"));
            assert_eq!(properties::get(v.properties, keys::TRAN_MSG), None);
            assert_eq!(v.body, b"payload");

            shard.shutdown().trigger();
            shard.close().await.expect("closes");
        });
    }
}
