//! `rockshard admin message view`: a stored message by its offset message id (what a
//! send returns as msgId: the storing shard's address and the CommitLog offset), asked
//! of that shard with VIEW_MESSAGE_BY_ID and shown field by field, the body as text when
//! it is text and as hex otherwise.
//!
//! Deliberately not here: looking messages up by key or by client-side id (UNIQ_KEY):
//! the broker keeps no key index, and the error says so.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rockshard_net::code::{request, response};
use rockshard_net::headers::{CommandHeader, ViewMessageRequestHeader};
use rockshard_net::stored::{self, sys_flag, Record};
use rockshard_net::{msgid, properties, RemotingCommand};
use serde_json::{json, Value};

use super::client::{remote_error, Admin};
use super::render::{hex, Table};
use super::time::format_time;
use super::Report;
use crate::{Error, Result};

/// Bytes of a message body `message view` shows.
const BODY_PREVIEW_BYTES: usize = 512;

impl Admin {
    pub(super) async fn message_view(&self, id: &str) -> Result<Report> {
        let (host, offset) = msgid::decode(id.trim()).map_err(|e| {
            Error::Usage(format!("{e}; `message view` takes the offset message id a send returns (msgId)"))
        })?;
        let addr = host.to_string();
        let header = ViewMessageRequestHeader { offset, topic: None };
        let cmd = RemotingCommand::new_request(request::VIEW_MESSAGE_BY_ID, header.to_ext_fields());
        let answer = match self.call(&addr, cmd).await {
            Ok(a) => a,
            Err(e @ (Error::Io { .. } | Error::Timeout { .. } | Error::Closed { .. })) => {
                return Err(Error::Usage(format!(
                    "message id {id} names broker {addr}, offset {offset}, which did not answer ({e}); is this an \
                     offset message id? A client-side id (UNIQ_KEY) cannot be looked up: the broker keeps no key index"
                )))
            }
            Err(e) => return Err(e),
        };
        if answer.code != response::SUCCESS {
            return Err(remote_error(&addr, &answer));
        }
        let view = match stored::decode(&answer.body) {
            Ok(Some(Record::Message(view))) => view,
            Ok(_) => return Err(Error::Usage(format!("{addr} returned no whole message record for offset {offset}"))),
            Err(e) => return Err(Error::Protocol { peer: addr, source: e }),
        };
        Ok(describe_message(id, &view))
    }
}

/// `message view`'s report for one decoded record.
fn describe_message(id: &str, view: &stored::MessageView<'_>) -> Report {
    let h = &view.header;
    let topic = String::from_utf8_lossy(view.topic).into_owned();
    let props: Vec<(String, String)> =
        properties::iter(view.properties).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let compressed = h.sys_flag & sys_flag::COMPRESSED != 0;
    let text_body =
        std::str::from_utf8(view.body).ok().filter(|s| !s.chars().any(|c| c.is_control() && !c.is_whitespace()));
    let mut fields = Table::new(&["FIELD", "VALUE"]);
    let mut add = |k: &str, v: String| fields.row(vec![k.to_string(), v]);
    add("msgId", id.to_string());
    add("topic", topic.clone());
    add("queueId", h.queue_id.to_string());
    add("queueOffset", h.queue_offset.to_string());
    add("physicalOffset", h.physical_offset.to_string());
    add("storeHost", h.store_host.to_string());
    add("storeTime", format!("{} ({})", format_time(h.store_timestamp_ms), h.store_timestamp_ms));
    add("bornHost", h.born_host.to_string());
    add("bornTime", format!("{} ({})", format_time(h.born_timestamp_ms), h.born_timestamp_ms));
    add("sysFlag", format!("{:#x}{}", h.sys_flag, if compressed { " (compressed body)" } else { "" }));
    add("flag", h.flag.to_string());
    add("reconsumeTimes", h.reconsume_times.to_string());
    add("preparedTransactionOffset", h.prepared_transaction_offset.to_string());
    add("bodyCrc", if view.body_crc_matches() { "ok".into() } else { "MISMATCH".into() });
    add("bodySize", view.body.len().to_string());
    for (k, v) in &props {
        add(&format!("property {k}"), v.clone());
    }
    let mut text = fields.render();
    let preview = &view.body[..view.body.len().min(BODY_PREVIEW_BYTES)];
    let more = if view.body.len() > preview.len() {
        format!(" … ({} more bytes)", view.body.len() - preview.len())
    } else {
        String::new()
    };
    match text_body {
        Some(s) if !compressed => {
            let cut = s.char_indices().map(|(i, _)| i).take_while(|&i| i <= BODY_PREVIEW_BYTES).last().unwrap_or(0);
            let shown = if s.len() <= BODY_PREVIEW_BYTES { s } else { &s[..cut] };
            let _ = writeln!(text, "body:\n{shown}{more}");
        }
        _ => {
            let _ = writeln!(text, "body (hex):\n{}{more}", hex(preview));
        }
    }
    let json = json!({
        "msgId": id, "topic": topic, "queueId": h.queue_id, "queueOffset": h.queue_offset, "physicalOffset": h.physical_offset,
        "storeHost": h.store_host.to_string(), "storeTimestamp": h.store_timestamp_ms, "bornHost": h.born_host.to_string(),
        "bornTimestamp": h.born_timestamp_ms, "sysFlag": h.sys_flag, "flag": h.flag, "reconsumeTimes": h.reconsume_times,
        "preparedTransactionOffset": h.prepared_transaction_offset, "bodyCrcOk": view.body_crc_matches(),
        "bodySize": view.body.len(), "properties": props.iter().cloned().collect::<BTreeMap<_, _>>(),
        "bodyText": text_body.filter(|_| !compressed), "bodyHex": if text_body.is_some() && !compressed { Value::Null } else { Value::from(hex(view.body)) },
    });
    Report { text, json }
}
