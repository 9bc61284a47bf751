//! Fuzz target: arbitrary bytes as a request body: a SEND_BATCH_MESSAGE body, a JSON
//! body in either dialect, and an offset message id. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rockshard_net::{batch, body, msgid};

fuzz_target!(|data: &[u8]| {
    for item in batch::iter(data) {
        if item.is_err() {
            break;
        }
    }
    let _ = body::from_json::<body::TopicRouteData>(data);
    let _ = body::from_json::<body::HeartbeatData>(data);
    let _ = body::from_json::<body::RegisterBrokerBody>(data);
    let _ = body::from_json::<body::LockBatchRequestBody>(data);
    let _ = body::from_json::<body::CheckClientRequestBody>(data);
    let _ = body::quote_bare_integer_keys(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = msgid::decode(text);
    }
});
