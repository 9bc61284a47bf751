//! `rockshard admin cluster ...`: every broker the NameServer knows with its store
//! figures (`list`, from GET_BROKER_RUNTIME_INFO), and the Raft view of every node of
//! the replicated groups (`status`, from RAFT_STATUS).
//!
//! Every registered address is asked, masters and slaves, so a node that does not
//! answer shows as such in its row instead of failing the whole command.
//!
//! Deliberately not here: changing a group's membership or leadership (no admin command
//! does; leaders are placed by the brokers themselves).

use rockshard_net::body::{self, KVTable};
use rockshard_net::code::{request, response};
use rockshard_net::command::ExtFields;
use rockshard_net::rockshard::{StatusBody, RAFT_STATUS};
use rockshard_net::RemotingCommand;
use serde_json::{json, Value};

use super::client::{decode_body, Admin};
use super::render::Table;
use super::Report;
use crate::{Error, Result};

impl Admin {
    pub(super) async fn cluster_list(&self) -> Result<Report> {
        let info = self.cluster_info().await?;
        let mut table = Table::new(&[
            "CLUSTER",
            "BROKER",
            "ID",
            "ADDRESS",
            "VERSION",
            "TOPICS",
            "QUEUES",
            "MESSAGES",
            "COMMITLOG BYTES",
        ]);
        let mut rows = Vec::new();
        for (cluster, names) in &info.cluster_addr_table {
            let mut names = names.clone();
            names.sort();
            for name in names {
                let Some(data) = info.broker_addr_table.get(&name) else { continue };
                for (id, addr) in &data.broker_addrs {
                    let runtime = self
                        .call_ok(addr, RemotingCommand::new_request(request::GET_BROKER_RUNTIME_INFO, ExtFields::new()))
                        .await
                        .and_then(|a| decode_body(addr, "runtime info", body::from_json::<KVTable>(&a.body)));
                    let (cells, status) = match &runtime {
                        Ok(kv) => {
                            let get = |k: &str| kv.table.get(k).cloned().unwrap_or_else(|| "-".into());
                            let bytes = match (kv.table.get("commitLogMaxOffset"), kv.table.get("commitLogMinOffset")) {
                                (Some(max), Some(min)) => match (max.parse::<i64>(), min.parse::<i64>()) {
                                    (Ok(max), Ok(min)) => (max - min).to_string(),
                                    _ => "-".into(),
                                },
                                _ => "-".into(),
                            };
                            (
                                vec![
                                    get("brokerVersionDesc"),
                                    get("topicCount"),
                                    get("queueCount"),
                                    get("messagesInQueues"),
                                    bytes,
                                ],
                                Value::Null,
                            )
                        }
                        Err(e) => (
                            vec![format!("unreachable: {e}"), "-".into(), "-".into(), "-".into(), "-".into()],
                            Value::from(e.to_string()),
                        ),
                    };
                    let mut row = vec![cluster.clone(), name.clone(), id.to_string(), addr.clone()];
                    row.extend(cells);
                    table.row(row);
                    rows.push(json!({
                        "cluster": cluster, "brokerName": name, "brokerId": id, "addr": addr,
                        "runtime": runtime.as_ref().map(|kv| json!(kv.table)).unwrap_or(Value::Null), "error": status,
                    }));
                }
            }
        }
        Ok(Report { text: table.render(), json: json!({ "brokers": rows }) })
    }

    /// Asks every registered address of every broker for its Raft status.
    pub(super) async fn cluster_status(&self) -> Result<Report> {
        let info = self.cluster_info().await?;
        let mut table = Table::new(&[
            "BROKER",
            "ID",
            "ADDRESS",
            "NODE",
            "ROLE",
            "TERM",
            "LEADER",
            "COMMIT",
            "APPLIED",
            "LAST",
            "FOLLOWERS",
        ]);
        let mut rows = Vec::new();
        let mut names: Vec<&String> = info.broker_addr_table.keys().collect();
        names.sort();
        for name in names {
            let data = &info.broker_addr_table[name];
            for (id, addr) in &data.broker_addrs {
                let cmd = RemotingCommand::new_request(RAFT_STATUS, ExtFields::new());
                let status = self.call_ok(addr, cmd).await.and_then(|a| {
                    serde_json::from_slice::<StatusBody>(&a.body).map_err(|e| Error::Remote {
                        peer: addr.clone(),
                        code: response::SUCCESS,
                        remark: format!("its raft status body does not decode: {e}"),
                    })
                });
                match &status {
                    Ok(b) => {
                        let node = |id: u64| b.peers.get(id as usize - 1).cloned().unwrap_or_else(|| format!("#{id}"));
                        let st = &b.status;
                        let followers: Vec<String> = st
                            .progress
                            .iter()
                            .filter(|p| p.id != st.id)
                            .map(|p| format!("{} lag {} ({})", node(p.id), p.lag, p.state))
                            .collect();
                        table.row(vec![
                            name.clone(),
                            id.to_string(),
                            addr.clone(),
                            b.node.clone(),
                            st.stopped.as_ref().map_or(st.role.clone(), |why| format!("stopped: {why}")),
                            st.term.to_string(),
                            st.leader.map_or("-".into(), node),
                            st.commit.to_string(),
                            st.applied.to_string(),
                            st.last_index.to_string(),
                            if followers.is_empty() { "-".into() } else { followers.join(", ") },
                        ]);
                    }
                    Err(e) => {
                        let mut row = vec![name.clone(), id.to_string(), addr.clone()];
                        row.push(format!("no status: {e}"));
                        row.extend(std::iter::repeat_n("-".to_string(), 7));
                        table.row(row);
                    }
                }
                rows.push(json!({
                    "brokerName": name, "brokerId": id, "addr": addr,
                    "raft": status.as_ref().map(|b| json!(b)).unwrap_or(Value::Null),
                    "error": status.as_ref().err().map(|e| e.to_string()),
                }));
            }
        }
        Ok(Report { text: table.render(), json: json!({ "brokers": rows }) })
    }
}
