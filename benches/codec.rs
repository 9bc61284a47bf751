//! Micro-benchmarks of the per-message work outside the disk: the remoting codec (a send
//! request decoded as the broker sees it and encoded as a producer does, the send answer
//! the broker writes, in both header encodings; a pull answer's header encoded), the body CRC every stored record carries, and ConsumeQueue entry
//! decoding.
//!
//! Why: at the load tool's target (400 k single 1 KiB sends a second on two cores) a
//! shard has about 2.5 µs of CPU per request for everything, so each piece here should
//! be a small fraction of that. The figures are in BENCHMARKS.md.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rockshard_net::code::request;
use rockshard_net::frame::ResponseWriter;
use rockshard_net::headers::{
    decode_send_message_ref, CommandHeader, PullMessageResponseHeader, SendMessageRequestHeader,
    SendMessageRequestHeaderV2,
};
use rockshard_net::properties::{self, keys};
use rockshard_net::{decode_frame, encode_frame, encode_frame_head, ExtFields, RemotingCommand, SerializeType};
use rockshard_storage::consume_queue::CqEntry;

const BODY_BYTES: usize = 1024;

/// The header of the benchmark's send, as the Java client fills it.
fn send_header() -> SendMessageRequestHeader {
    let props = properties::encode([
        (keys::TAGS, "TagA"),
        (keys::UNIQ_KEY, "7F0000010001B4AAC2A1A0CE57DE0000"),
        (keys::WAIT, "true"),
    ]);
    SendMessageRequestHeader {
        producer_group: "bench-producer".into(),
        topic: "bench".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 3,
        sys_flag: 0,
        born_timestamp_ms: 1_700_000_000_000,
        flag: 0,
        properties: Some(String::from_utf8(props).expect("ASCII properties")),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        max_reconsume_times: None,
        batch: Some(false),
        broker_name: Some("broker-a-s0".into()),
    }
}

/// A send as the Java client writes it (V2 keys), with a 1 KiB body.
fn send_request(serialize: SerializeType) -> RemotingCommand {
    let mut ext = ExtFields::new();
    send_header().encode_v2(&mut ext);
    RemotingCommand::new_request(request::SEND_MESSAGE_V2, ext)
        .with_body(vec![b'x'; BODY_BYTES])
        .with_serialize_type(serialize)
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    for (name, serialize) in [("json", SerializeType::Json), ("rocketmq", SerializeType::RocketMq)] {
        let mut frame = BytesMut::new();
        encode_frame(&send_request(serialize), &mut frame).expect("encodes");
        let frame = frame.freeze();
        // The frame is copied into a fresh read buffer outside the timed part (the broker
        // reads many frames into one buffer); decoding, the typed view and dropping the
        // command are timed, as the broker pays all three per send.
        g.bench_function(format!("send_request_decode_{name}"), |b| {
            b.iter_batched(
                || BytesMut::from(&frame[..]),
                |mut buf| {
                    let cmd = decode_frame(&mut buf).expect("valid").expect("whole frame");
                    let header = decode_send_message_ref(&cmd.ext_fields).expect("valid header");
                    black_box((header.topic.len(), header.queue_id, header.properties.map(str::len)));
                },
                BatchSize::SmallInput,
            )
        });
        // What a producer does per send: the V2 header's ext fields, the command, its frame.
        let v2 = SendMessageRequestHeaderV2::from(send_header());
        let body = bytes::Bytes::from(vec![b'x'; BODY_BYTES]);
        let mut out = BytesMut::with_capacity(64 * 1024);
        g.bench_function(format!("send_request_encode_{name}"), |b| {
            b.iter(|| {
                let cmd = RemotingCommand::new_request(request::SEND_MESSAGE_V2, v2.to_ext_fields())
                    .with_body(body.clone())
                    .with_serialize_type(serialize);
                out.clear();
                black_box(encode_frame(&cmd, &mut out).expect("encodes"))
            })
        });
        // What the broker does per single send it stores: the SUCCESS answer, written
        // straight into the connection's out buffer.
        let req = send_request(serialize);
        g.bench_function(format!("send_response_encode_{name}"), |b| {
            b.iter(|| {
                out.clear();
                let mut w = ResponseWriter::begin(&mut out, &req, 0);
                w.ext_str("msgId", black_box("7F00000100002A9F0000000012345678"));
                w.ext_i64("queueId", black_box(3));
                w.ext_i64("queueOffset", black_box(1_000_032));
                w.ext_str("transactionId", black_box("7F0000010001B4AAC2A1A0CE57DE0000"));
                black_box(w.finish().expect("encodes"))
            })
        });
        let req = send_request(serialize);
        g.bench_function(format!("pull_response_head_encode_{name}"), |b| {
            b.iter(|| {
                let mut a = RemotingCommand::response_to(&req, 0, None);
                a.set_ext_header(&PullMessageResponseHeader {
                    suggest_which_broker_id: 0,
                    next_begin_offset: 1_000_032,
                    min_offset: 0,
                    max_offset: 2_000_000,
                    offset_delta: None,
                    topic_sys_flag: None,
                    group_sys_flag: None,
                    forbidden_type: None,
                });
                out.clear();
                black_box(encode_frame_head(&a, 32 * 1100, &mut out).expect("encodes"))
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("crc");
    let body = vec![7u8; BODY_BYTES];
    g.throughput(Throughput::Bytes(BODY_BYTES as u64));
    g.bench_function("body_crc_1KiB", |b| b.iter(|| black_box(rockshard_net::stored::body_crc(black_box(&body)))));
    g.finish();

    let mut g = c.benchmark_group("consume_queue");
    let mut entries = Vec::new();
    for i in 0..1024u64 {
        CqEntry { physical_offset: rockshard_storage::PhysicalOffset(i * 1100), size: 1100, tags_code: i as i64 }
            .encode(&mut entries);
    }
    g.throughput(Throughput::Elements(1024));
    g.bench_function("decode_1024_entries", |b| b.iter(|| black_box(CqEntry::decode_all(black_box(&entries)))));
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
