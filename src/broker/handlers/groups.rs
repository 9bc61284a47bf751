//! Consumer and producer groups, as requests: HEART_BEAT (34), UNREGISTER_CLIENT (35),
//! CHECK_CLIENT_CONFIG (46), GET_CONSUMER_LIST_BY_GROUP (38) and
//! GET_CONSUMER_CONNECTION_LIST (203).
//!
//! A heartbeat first makes sure every consumer group it names has its retry topic on
//! every shard (the push consumer looks up `%RETRY%<group>`'s route right after its
//! first heartbeat), then registers the client; the group table tells the members of a
//! group whose membership changed (NOTIFY_CONSUMER_IDS_CHANGED). A failed retry-topic
//! creation does not undo the membership: the client hears SYSTEM_ERROR and its next
//! heartbeat (30 s) retries the creation.
//!
//! Runs on the shard's executor, one task per request. Deliberately not here: the
//! membership rules (`state::groups`), the notices (`ops::groups`), and SQL92 filtering
//! (CHECK_CLIENT_CONFIG refuses it as a Java broker with `enablePropertyFilter=false`
//! does).

use std::rc::Rc;

use rockshard_net::body::{
    self, CheckClientRequestBody, ClientConnection, ConsumerConnection, ConsumerListBody, HeartbeatData,
};
use rockshard_net::code::response;
use rockshard_net::headers::{ConsumerGroupRequestHeader, UnregisterClientRequestHeader};
use rockshard_net::RemotingCommand;
use rockshard_storage::topics::perm;
use tracing::warn;

use super::answer::{bad_header, encode_failed, reply, success, success_with_body};
use crate::broker::ops::groups::HeartbeatFrom;
use crate::broker::ops::Shard;
use crate::broker::state::filter::is_tag_type;
use crate::broker::state::topics::RETRY_PREFIX;
use crate::remoting::server::Connection;

/// Response ext field: the broker understands heartbeat V2 (fingerprints).
pub const IS_SUPPORT_HEART_BEAT_V2: &str = "IS_SUPPORT_HEART_BEAT_V2";
/// Response ext field: the client should send full subscriptions next time.
pub const IS_SUB_CHANGE: &str = "IS_SUB_CHANGE";

/// HEART_BEAT (34): registers the client's groups (creating each consumer group's retry
/// topic on every shard first), answers heartbeat V2's questions.
pub async fn heart_beat(shard: &Rc<Shard>, conn: &Rc<Connection>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let hb: HeartbeatData = match body::from_json(&req.body) {
        Ok(hb) => hb,
        Err(e) => return reply(req, response::SYSTEM_ERROR, format!("heartbeat body: {e}")),
    };
    if hb.client_id.is_empty() {
        return reply(req, response::INVALID_PARAMETER, "heartbeat without clientID");
    }
    // Every consumer group gets its retry topic, on every shard, before it is
    // registered: the push consumer looks up `%RETRY%<group>`'s route right after its
    // first heartbeat. A topic every shard already has costs a lookup here.
    let mut failures = Vec::new();
    for data in hb.consumer_data_set.iter().filter(|d| !d.group_name.is_empty()) {
        let retry = format!("{RETRY_PREFIX}{}", data.group_name);
        if let Err(e) = shard.ensure_topic_on_every_shard(&retry, 1, perm::READ_WRITE).await {
            warn!(shard = shard.id(), topic = %retry, error = %e, "creating a retry topic failed");
            failures.push(format!("{retry}: {e}"));
        }
    }
    let sub_change = shard.heartbeat(&hb, HeartbeatFrom { conn, language: req.language, version: req.version });
    if !failures.is_empty() {
        // The membership above stands (consumption of normal topics works); the client
        // logs this and heartbeats again in 30 s, which retries the creation.
        return reply(req, response::SYSTEM_ERROR, format!("retry topic not created: {}", failures.join("; ")));
    }
    let mut answer = RemotingCommand::response_to(req, response::SUCCESS, None);
    answer.ext_fields.insert(IS_SUPPORT_HEART_BEAT_V2, "true");
    answer.ext_fields.insert(IS_SUB_CHANGE, sub_change.to_string());
    Some(answer)
}

/// UNREGISTER_CLIENT (35), usually oneway.
pub fn unregister_client(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: UnregisterClientRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    shard.unregister_client(h.producer_group.as_deref(), h.consumer_group.as_deref(), &h.client_id);
    success(req)
}

/// CHECK_CLIENT_CONFIG (46): only TAG subscriptions pass.
pub fn check_client_config(req: &RemotingCommand) -> Option<RemotingCommand> {
    if req.body.is_empty() {
        return Some(RemotingCommand::response_to(req, response::SUCCESS, None));
    }
    let body: CheckClientRequestBody = match body::from_json(&req.body) {
        Ok(b) => b,
        Err(e) => return reply(req, response::SYSTEM_ERROR, format!("check client config body: {e}")),
    };
    match body.subscription_data {
        Some(sub) if !is_tag_type(&sub.expression_type) => reply(
            req,
            response::SYSTEM_ERROR,
            format!("The broker does not support consumer to filter message by {}", sub.expression_type),
        ),
        _ => Some(RemotingCommand::response_to(req, response::SUCCESS, None)),
    }
}

/// GET_CONSUMER_LIST_BY_GROUP (38): the clientIds of a consumer group here.
pub fn consumer_list(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: ConsumerGroupRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let ids = shard.consumer_ids(&h.consumer_group);
    if ids.is_empty() {
        // Java's answer, word for word; clients log it and retry at the next rebalance.
        return reply(req, response::SYSTEM_ERROR, format!("no consumer for this group, {}", h.consumer_group));
    }
    match body::to_json(&ConsumerListBody { consumer_id_list: ids }) {
        Ok(bytes) => Some(RemotingCommand::response_to(req, response::SUCCESS, None).with_body(bytes)),
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}

/// GET_CONSUMER_CONNECTION_LIST (203): who of a consumer group is connected here.
pub fn consumer_connections(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: ConsumerGroupRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let Some(group) = shard.consumer_group(&h.consumer_group).filter(|g| !g.members.is_empty()) else {
        return reply(
            req,
            response::CONSUMER_NOT_ONLINE,
            format!("the consumer group `{}` is not online on {}", h.consumer_group, shard.broker_name()),
        );
    };
    let body = ConsumerConnection {
        connection_set: group
            .members
            .iter()
            .map(|m| ClientConnection {
                client_addr: m.peer.map_or_else(String::new, |p| p.to_string()),
                client_id: m.client_id.clone(),
                language: m.language.name().to_string(),
                version: m.version,
            })
            .collect(),
        consume_from_where: group.consume_from_where,
        consume_type: group.consume_type,
        message_model: group.message_model,
        subscription_table: group.subscriptions.into_iter().map(|s| (s.topic.clone(), s)).collect(),
    };
    match body::to_json(&body) {
        Ok(json) => success_with_body(req, json),
        Err(e) => encode_failed(req, e),
    }
}

#[cfg(test)]
mod tests {
    use rockshard_net::code::request;

    use super::*;

    #[test]
    fn only_tag_expressions_pass_the_client_config_check() {
        let sql = br#"{"clientId":"c","group":"G","subscriptionData":{"topic":"T","subString":"a > 1","expressionType":"SQL92"}}"#;
        let req = RemotingCommand::new_request(request::CHECK_CLIENT_CONFIG, Default::default()).with_body(&sql[..]);
        let answer = check_client_config(&req).expect("answered");
        assert_eq!(answer.code, response::SYSTEM_ERROR);
        assert_eq!(answer.remark.as_deref(), Some("The broker does not support consumer to filter message by SQL92"));
        let tag =
            br#"{"clientId":"c","group":"G","subscriptionData":{"topic":"T","subString":"*","expressionType":"TAG"}}"#;
        let req = RemotingCommand::new_request(request::CHECK_CLIENT_CONFIG, Default::default()).with_body(&tag[..]);
        assert_eq!(check_client_config(&req).map(|a| a.code), Some(response::SUCCESS));
        let bad = RemotingCommand::new_request(request::CHECK_CLIENT_CONFIG, Default::default()).with_body(&b"{"[..]);
        assert_eq!(check_client_config(&bad).map(|a| a.code), Some(response::SYSTEM_ERROR));
    }
}
