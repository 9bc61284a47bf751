//! `rockshard admin`'s side of the wire: one cached connection per address, requests
//! with the `--timeout-ms` bound, answers other than SUCCESS turned into errors that
//! name the peer and Java's name of the code, and the lookups every command starts
//! from (cluster info, routes, topic tables, which brokers serve what).
//!
//! A Rockshard process shows up as one broker per shard (`<name>-s<i>`):
//! [`process_name`] and [`one_per_process`] group shards back into processes, for the
//! commands that must reach each process once (topic creation and deletion).
//!
//! Invariants: every wait is bounded (connect by `CONNECT_TIMEOUT_MS`, each answer by
//! `--timeout-ms`); requests go out one at a time; nothing is retried.
//!
//! Deliberately not here: what a command does with the answers (the command files) and
//! how they are shown (`render.rs`).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rockshard_net::body::{self, ClusterInfo, TopicConfigSerializeWrapper, TopicRouteData};
use rockshard_net::code::{request, response};
use rockshard_net::command::ExtFields;
use rockshard_net::headers::{CommandHeader, GetRouteInfoRequestHeader};
use rockshard_net::RemotingCommand;

use super::args::AdminArgs;
use crate::remoting::client::Client;
use crate::{Error, Result};

/// A TCP connect that takes longer than this is a broker that is not there.
const CONNECT_TIMEOUT_MS: u64 = 3_000;

/// A broker as routes and cluster info name it: its name and master address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct BrokerRef {
    pub(super) name: String,
    pub(super) addr: String,
}

/// The process a broker name belongs to: `<name>-s<i>` is shard i of `<name>`.
pub(super) fn process_name(broker_name: &str) -> &str {
    match broker_name.rsplit_once("-s") {
        Some((base, shard)) if !base.is_empty() && !shard.is_empty() && shard.bytes().all(|b| b.is_ascii_digit()) => {
            base
        }
        _ => broker_name,
    }
}

/// One broker per process: the lowest-numbered shard of each.
pub(super) fn one_per_process(brokers: &[BrokerRef]) -> Vec<BrokerRef> {
    let mut picked: BTreeMap<&str, &BrokerRef> = BTreeMap::new();
    for b in brokers {
        let key = process_name(&b.name);
        let better = picked.get(key).is_none_or(|cur| shard_number(&b.name) < shard_number(&cur.name));
        if better {
            picked.insert(key, b);
        }
    }
    picked.into_values().cloned().collect()
}

fn shard_number(broker_name: &str) -> u64 {
    broker_name.rsplit_once("-s").and_then(|(_, n)| n.parse().ok()).unwrap_or(0)
}

/// The master address of a broker group, if it has one.
pub(super) fn master_addr(data: &body::BrokerData) -> Option<String> {
    data.broker_addrs.get(&0).cloned()
}

/// A failure answer as an error: who answered, the code with Java's name, the remark.
pub(super) fn remote_error(peer: &str, answer: &RemotingCommand) -> Error {
    let name = response::name(answer.code).unwrap_or("unknown code");
    let remark = answer.remark.as_deref().map(str::trim).filter(|r| !r.is_empty()).unwrap_or("(no remark)");
    Error::Remote { peer: peer.to_string(), code: answer.code, remark: format!("{name}: {remark}") }
}

pub(super) fn decode_body<T>(
    peer: &str,
    what: &str,
    decoded: std::result::Result<T, rockshard_net::Error>,
) -> Result<T> {
    decoded.map_err(|e| Error::Remote {
        peer: peer.to_string(),
        code: response::SUCCESS,
        remark: format!("its {what} body does not decode: {e}"),
    })
}

pub(super) struct Admin {
    /// The NameServer routes and cluster info come from (`--namesrv`).
    pub(super) namesrv: String,
    timeout: Duration,
    clients: RefCell<HashMap<String, Client>>,
}

impl Admin {
    pub(super) fn new(args: &AdminArgs) -> Admin {
        Admin {
            namesrv: args.namesrv.clone(),
            timeout: Duration::from_millis(args.timeout_ms.max(1)),
            clients: RefCell::new(HashMap::new()),
        }
    }

    pub(super) async fn close(&self) {
        let clients: Vec<Client> = self.clients.borrow_mut().drain().map(|(_, c)| c).collect();
        for c in clients {
            c.close().await;
        }
    }

    async fn client(&self, addr: &str) -> Result<Client> {
        let cached = self.clients.borrow().get(addr).filter(|c| !c.is_closed()).cloned();
        if let Some(c) = cached {
            return Ok(c);
        }
        let c = Client::connect(addr, Duration::from_millis(CONNECT_TIMEOUT_MS)).await?;
        self.clients.borrow_mut().insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Sends a request and returns the answer whatever its code.
    pub(super) async fn call(&self, addr: &str, cmd: RemotingCommand) -> Result<RemotingCommand> {
        self.client(addr).await?.request(cmd, self.timeout).await
    }

    /// Sends a request; an answer other than SUCCESS is an error naming the code.
    pub(super) async fn call_ok(&self, addr: &str, cmd: RemotingCommand) -> Result<RemotingCommand> {
        let answer = self.call(addr, cmd).await?;
        if answer.code == response::SUCCESS {
            Ok(answer)
        } else {
            Err(remote_error(addr, &answer))
        }
    }

    pub(super) async fn cluster_info(&self) -> Result<ClusterInfo> {
        let answer = self
            .call_ok(&self.namesrv, RemotingCommand::new_request(request::GET_BROKER_CLUSTER_INFO, ExtFields::new()))
            .await?;
        decode_body(&self.namesrv, "cluster info", body::from_json(&answer.body))
    }

    /// The topic's route, or `None` when the NameServer does not know it.
    pub(super) async fn route(&self, topic: &str) -> Result<Option<TopicRouteData>> {
        let header = GetRouteInfoRequestHeader { topic: topic.to_string(), accept_standard_json_only: Some(true) };
        let cmd = RemotingCommand::new_request(request::GET_ROUTEINFO_BY_TOPIC, header.to_ext_fields());
        let answer = self.call(&self.namesrv, cmd).await?;
        match answer.code {
            response::SUCCESS => decode_body(&self.namesrv, "route", body::from_json(&answer.body)).map(Some),
            response::TOPIC_NOT_EXIST => Ok(None),
            _ => Err(remote_error(&self.namesrv, &answer)),
        }
    }

    pub(super) async fn existing_route(&self, topic: &str) -> Result<TopicRouteData> {
        self.route(topic).await?.ok_or_else(|| {
            Error::Usage(format!(
                "topic `{topic}` does not exist (the NameServer at {} has no route for it)",
                self.namesrv
            ))
        })
    }

    /// This broker's topic table (its share of each topic's queues).
    pub(super) async fn topic_configs(&self, addr: &str) -> Result<TopicConfigSerializeWrapper> {
        let answer =
            self.call_ok(addr, RemotingCommand::new_request(request::GET_ALL_TOPIC_CONFIG, ExtFields::new())).await?;
        decode_body(addr, "topic configs", body::from_json(&answer.body))
    }

    /// The brokers of the cluster topic changes go to: `--cluster`, or the only one.
    pub(super) fn cluster_brokers(&self, info: &ClusterInfo, wanted: Option<&str>) -> Result<(String, Vec<BrokerRef>)> {
        let name = match wanted {
            Some(c) => c.to_string(),
            None => match info.cluster_addr_table.keys().collect::<Vec<_>>().as_slice() {
                [only] => (*only).clone(),
                [] => return Err(Error::Usage(format!("the NameServer at {} knows no broker yet", self.namesrv))),
                many => {
                    let names: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
                    return Err(Error::Usage(format!(
                        "there are several clusters ({}); pick one with --cluster",
                        names.join(", ")
                    )));
                }
            },
        };
        let Some(names) = info.cluster_addr_table.get(&name) else {
            let known: Vec<&str> = info.cluster_addr_table.keys().map(String::as_str).collect();
            return Err(Error::Usage(format!("no cluster `{name}`; the NameServer knows: {}", known.join(", "))));
        };
        let mut brokers: Vec<BrokerRef> = names
            .iter()
            .filter_map(|n| info.broker_addr_table.get(n))
            .filter_map(|d| master_addr(d).map(|addr| BrokerRef { name: d.broker_name.clone(), addr }))
            .collect();
        brokers.sort();
        if brokers.is_empty() {
            return Err(Error::Usage(format!("cluster `{name}` has no master broker registered")));
        }
        Ok((name, brokers))
    }

    /// Every (broker, address) serving `route`'s queues.
    pub(super) fn route_brokers(route: &TopicRouteData) -> Vec<BrokerRef> {
        let mut brokers: Vec<BrokerRef> = route
            .queue_datas
            .iter()
            .filter_map(|q| route.broker_datas.iter().find(|d| d.broker_name == q.broker_name))
            .filter_map(|d| master_addr(d).map(|addr| BrokerRef { name: d.broker_name.clone(), addr }))
            .collect();
        brokers.sort();
        brokers.dedup();
        brokers
    }

    /// Every master broker the NameServer knows, sorted by name.
    pub(super) async fn all_brokers(&self) -> Result<Vec<BrokerRef>> {
        let info = self.cluster_info().await?;
        let mut all: Vec<BrokerRef> = info
            .broker_addr_table
            .values()
            .filter_map(|d| master_addr(d).map(|addr| BrokerRef { name: d.broker_name.clone(), addr }))
            .collect();
        all.sort();
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_group_into_processes() {
        assert_eq!(process_name("broker-a-s0"), "broker-a");
        assert_eq!(process_name("broker-a-s12"), "broker-a");
        assert_eq!(process_name("broker-a"), "broker-a");
        assert_eq!(process_name("b-sx"), "b-sx");
        assert_eq!(process_name("-s1"), "-s1");
        let b = |name: &str, addr: &str| BrokerRef { name: name.into(), addr: addr.into() };
        let picked = one_per_process(&[
            b("broker-a-s10", "h:10921"),
            b("broker-a-s2", "h:10913"),
            b("java-broker", "j:10911"),
            b("broker-b-s0", "k:10911"),
        ]);
        assert_eq!(picked, [b("broker-a-s2", "h:10913"), b("broker-b-s0", "k:10911"), b("java-broker", "j:10911")]);
    }

    #[test]
    fn failure_answers_name_the_code() {
        let req = RemotingCommand::new_request(request::GET_TOPIC_STATS_INFO, ExtFields::new());
        let answer =
            RemotingCommand::response_to(&req, response::TOPIC_NOT_EXIST, Some("topic `X` does not exist".into()));
        let e = remote_error("127.0.0.1:10911", &answer).to_string();
        assert_eq!(e, "127.0.0.1:10911 answered code 17: TOPIC_NOT_EXIST: topic `X` does not exist");
    }
}
