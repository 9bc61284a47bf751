//! `rockshard admin consumer ...`: a consumer group's connections and subscriptions,
//! its progress (lag) per queue, and moving its committed offsets to a time.
//!
//! Not every broker sees every group (clients heartbeat to the brokers of the topics
//! they use), so `connections` asks every master and skips those where the group is not
//! online; `progress` and `reset-offset` ask the brokers of the topic's route (or every
//! master when no topic is given).
//!
//! Deliberately not here: resetting to an explicit offset (the broker supports it per
//! queue; the tool resets whole topics to a time) and deleting a group's offsets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rockshard_net::body::{self, ConsumeStats, ConsumerConnection, ResetOffsetBody};
use rockshard_net::code::{request, response};
use rockshard_net::headers::{
    CommandHeader, ConsumerGroupRequestHeader, GetConsumeStatsRequestHeader, ResetOffsetRequestHeader,
};
use rockshard_net::RemotingCommand;
use serde_json::json;

use super::client::{decode_body, remote_error, Admin};
use super::render::{enum_name, time_or_dash, Table};
use super::time::format_time;
use super::Report;
use crate::{Error, Result};

impl Admin {
    pub(super) async fn consumer_connections(&self, group: &str) -> Result<Report> {
        let brokers = self.all_brokers().await?;
        let mut table = Table::new(&["BROKER", "CLIENT ID", "CLIENT ADDRESS", "LANGUAGE", "VERSION"]);
        let mut rows = Vec::new();
        let mut subscriptions = BTreeMap::new();
        let mut kind = None;
        for b in &brokers {
            let header = ConsumerGroupRequestHeader { consumer_group: group.to_string() };
            let cmd = RemotingCommand::new_request(request::GET_CONSUMER_CONNECTION_LIST, header.to_ext_fields());
            let answer = self.call(&b.addr, cmd).await?;
            match answer.code {
                response::SUCCESS => {}
                // Not every broker sees every group: clients heartbeat to the brokers of
                // the topics they use.
                response::CONSUMER_NOT_ONLINE => continue,
                _ => return Err(remote_error(&b.addr, &answer)),
            }
            let body: ConsumerConnection = decode_body(&b.addr, "consumer connections", body::from_json(&answer.body))?;
            kind.get_or_insert((body.consume_type, body.message_model, body.consume_from_where));
            for c in &body.connection_set {
                table.row(vec![
                    b.name.clone(),
                    c.client_id.clone(),
                    c.client_addr.clone(),
                    c.language.clone(),
                    c.version.to_string(),
                ]);
                rows.push(json!({
                    "brokerName": b.name, "clientId": c.client_id, "clientAddr": c.client_addr,
                    "language": c.language, "version": c.version,
                }));
            }
            for (topic, sub) in body.subscription_table {
                subscriptions.entry(topic).or_insert(sub.sub_string);
            }
        }
        let Some((consume_type, model, from_where)) = kind else {
            return Err(Error::Usage(format!(
                "consumer group `{group}` is not online on any of {} broker(s)",
                brokers.len()
            )));
        };
        let mut text = table.render();
        let _ = writeln!(
            text,
            "consume type {}, message model {}, consume from {}",
            enum_name(&consume_type),
            enum_name(&model),
            enum_name(&from_where)
        );
        for (topic, expression) in &subscriptions {
            let _ = writeln!(text, "subscribes {topic}: {expression}");
        }
        Ok(Report {
            text,
            json: json!({
                "group": group, "connections": rows, "subscriptions": subscriptions,
                "consumeType": consume_type, "messageModel": model, "consumeFromWhere": from_where,
            }),
        })
    }

    pub(super) async fn consumer_progress(&self, group: &str, topic: Option<&str>) -> Result<Report> {
        let brokers = match topic {
            Some(t) => Self::route_brokers(&self.existing_route(t).await?),
            None => self.all_brokers().await?,
        };
        let mut table =
            Table::new(&["TOPIC", "BROKER", "QUEUE", "BROKER OFFSET", "CONSUMER OFFSET", "LAG", "LAST CONSUMED"]);
        let mut rows = Vec::new();
        let mut entries = Vec::new();
        for b in &brokers {
            let header =
                GetConsumeStatsRequestHeader { consumer_group: group.to_string(), topic: topic.map(str::to_string) };
            let answer = self
                .call_ok(&b.addr, RemotingCommand::new_request(request::GET_CONSUME_STATS, header.to_ext_fields()))
                .await?;
            let stats = decode_body(&b.addr, "consume stats", ConsumeStats::decode(&answer.body))?;
            entries.extend(stats.offset_table);
        }
        entries.sort_by(|(a, _), (b, _)| {
            (&a.topic, &a.broker_name, a.queue_id).cmp(&(&b.topic, &b.broker_name, b.queue_id))
        });
        let mut total_lag = 0i64;
        for (mq, o) in &entries {
            let lag = (o.broker_offset - o.consumer_offset).max(0);
            total_lag += lag;
            table.row(vec![
                mq.topic.clone(),
                mq.broker_name.clone(),
                mq.queue_id.to_string(),
                o.broker_offset.to_string(),
                o.consumer_offset.to_string(),
                lag.to_string(),
                time_or_dash(o.last_timestamp),
            ]);
            rows.push(json!({
                "topic": mq.topic, "brokerName": mq.broker_name, "queueId": mq.queue_id, "brokerOffset": o.broker_offset,
                "consumerOffset": o.consumer_offset, "lag": lag, "lastTimestamp": o.last_timestamp,
            }));
        }
        if entries.is_empty() {
            return Err(Error::Usage(format!(
                "consumer group `{group}` has committed no offset on any of {} broker(s){}",
                brokers.len(),
                topic.map(|t| format!(" for topic `{t}`")).unwrap_or_default()
            )));
        }
        let mut text = table.render();
        let _ = writeln!(text, "total lag: {total_lag}");
        Ok(Report { text, json: json!({ "group": group, "queues": rows, "totalLag": total_lag }) })
    }

    pub(super) async fn reset_offset(&self, group: &str, topic: &str, time_ms: i64) -> Result<Report> {
        let route = self.existing_route(topic).await?;
        let mut table = Table::new(&["TOPIC", "BROKER", "QUEUE", "NEW OFFSET"]);
        let mut rows = Vec::new();
        for b in Self::route_brokers(&route) {
            let header = ResetOffsetRequestHeader {
                topic: topic.to_string(),
                group: group.to_string(),
                queue_id: None,
                offset: None,
                timestamp_ms: time_ms,
                is_force: true,
            };
            let cmd = RemotingCommand::new_request(request::INVOKE_BROKER_TO_RESET_OFFSET, header.to_ext_fields());
            let answer = self.call_ok(&b.addr, cmd).await?;
            let reset = decode_body(&b.addr, "reset offsets", ResetOffsetBody::decode(&answer.body))?;
            for (mq, offset) in reset.offset_table {
                table.row(vec![mq.topic.clone(), mq.broker_name.clone(), mq.queue_id.to_string(), offset.to_string()]);
                rows.push(json!({ "topic": mq.topic, "brokerName": mq.broker_name, "queueId": mq.queue_id, "offset": offset }));
            }
        }
        let mut text = format!("reset group `{group}` on topic `{topic}` to {} ({time_ms} ms)\n", format_time(time_ms));
        text.push_str(&table.render());
        text.push_str(
            "running consumers of the group were told (RESET_CONSUMER_CLIENT_OFFSET) and move to these offsets\n",
        );
        Ok(Report { text, json: json!({ "group": group, "topic": topic, "timestamp": time_ms, "queues": rows }) })
    }
}
