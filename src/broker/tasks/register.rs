//! A shard's registration with every NameServer: REGISTER_BROKER at start, every
//! `register_interval_ms` (the heartbeat), and at once after a topic change;
//! UNREGISTER_BROKER on clean shutdown.
//!
//! Each shard registers as its own broker, `<broker_name>-s<shard>` with brokerId 0
//! (master) at its own address, carrying the topics it holds queues of, so routes send
//! clients straight to the owning core. In a replicated group the shard registers as
//! master only while it is its Raft group's leader, and as slave `<raft id>` otherwise;
//! a role change re-registers at once.
//!
//! NameServers are independent: a failure with one (down, slow) never delays
//! registration with the others; each has its own connection, re-made when it breaks.
//! Until a NameServer has accepted us once, a failed registration is retried soon (it
//! may still be starting), then less and less often: the delay doubles from
//! `REGISTER_RETRY_MS` up to the register interval, so a NameServer that stays down
//! costs a few log lines, not five a second per shard. After that, a failure waits for
//! the next heartbeat, as RocketMQ's brokers do.
//!
//! Runs on the shard's executor: one task per NameServer, woken at once by a topic
//! change (`Shard::on_topics_changed`). Reads the shard through its operations only.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use rockshard_local::{completion, Notify};
use rockshard_net::body::{self, DataVersion, RegisterBrokerBody, TopicConfigSerializeWrapper};
use rockshard_net::code::{request, response};
use rockshard_net::headers::CommandHeader;
use rockshard_net::headers::{RegisterBrokerRequestHeader, UnregisterBrokerRequestHeader};
use rockshard_net::{ExtFields, RemotingCommand};
use tracing::{debug, info, warn};

use crate::broker::ops::Shard;
use crate::broker::state::topics::wire_topic_config;
use crate::limits::{REGISTER_RETRY_MS, REGISTER_TIMEOUT_MS, UNREGISTER_TIMEOUT_MS};
use crate::remoting::client::Client;
use crate::{Error, Result};

/// The REGISTER_BROKER request for this shard's current topics.
pub fn register_request(shard: &Shard) -> RemotingCommand {
    let mut table = BTreeMap::new();
    for t in shard.topics() {
        table.insert(t.name.clone(), wire_topic_config(&t));
    }
    let version = shard.topic_version() as i64;
    // A replicated shard's state version is its Raft term: when an old leader that has not
    // heard of the new term registers as master again, NameServers keep the newer one.
    let state_version = shard.raft_status().map_or(0, |s| s.term as i64);
    let wrapper = TopicConfigSerializeWrapper {
        data_version: DataVersion { counter: version, state_version, timestamp: version },
        topic_config_table: table,
        ..Default::default()
    };
    let body =
        body::to_json(&RegisterBrokerBody { filter_server_list: Vec::new(), topic_config_serialize_wrapper: wrapper })
            .expect("topic configs always serialize");
    let header = RegisterBrokerRequestHeader {
        broker_name: shard.broker_name().to_string(),
        broker_addr: shard.addr().to_string(),
        cluster_name: shard.config().cluster_name.clone(),
        ha_server_addr: shard.addr().to_string(),
        broker_id: shard.broker_id(),
        // Tell the NameServer how long to keep us: four missed heartbeats.
        heartbeat_timeout_millis: Some((shard.config().register_interval_ms * 4) as i64),
        enable_acting_master: Some(false),
        compressed: Some(false),
        body_crc32: Some((rockshard_net::stored::body_crc(&body) & 0x7fff_ffff) as i32),
    };
    let mut ext = ExtFields::new();
    header.encode(&mut ext);
    RemotingCommand::new_request(request::REGISTER_BROKER, ext).with_body(body)
}

/// One NameServer's connection, made again when it breaks.
struct Namesrv {
    addr: String,
    client: RefCell<Option<Client>>,
    /// Whether this NameServer ever accepted our registration: only then do we
    /// unregister from it (an entry there under our name may be another broker's).
    registered: Cell<bool>,
}

impl Namesrv {
    async fn request(&self, cmd: RemotingCommand, timeout_ms: u64) -> Result<RemotingCommand> {
        let timeout = Duration::from_millis(timeout_ms);
        let existing = self.client.borrow().clone().filter(|c| !c.is_closed());
        let client = match existing {
            Some(c) => c,
            None => {
                let c = Client::connect(&self.addr, timeout).await?;
                *self.client.borrow_mut() = Some(c.clone());
                c
            }
        };
        let answer = client.request(cmd, timeout).await;
        if answer.is_err() {
            // A timed-out or broken connection is not reused.
            self.client.borrow_mut().take();
        }
        answer
    }

    async fn register(&self, shard: &Shard) -> Result<()> {
        let answer = self.request(register_request(shard), REGISTER_TIMEOUT_MS).await?;
        if answer.code != response::SUCCESS {
            return Err(Error::Remote {
                peer: self.addr.clone(),
                code: answer.code,
                remark: answer.remark.unwrap_or_default(),
            });
        }
        Ok(())
    }
}

/// How long to wait before the next attempt after `failures` failed registrations in a
/// row with a NameServer that has never accepted us: `REGISTER_RETRY_MS`, doubled after
/// each further failure, never more than the register interval.
pub fn retry_delay_ms(failures: u32, register_interval_ms: u64) -> u64 {
    // 200 ms << 32 is far past any interval and far below u64::MAX.
    let doublings = failures.saturating_sub(1).min(32);
    (REGISTER_RETRY_MS << doublings).min(register_interval_ms)
}

/// The shard's NameServers, for unregistering at the end.
pub struct Registrar {
    namesrvs: Vec<Rc<Namesrv>>,
}

/// Starts registering. The returned future resolves to true once every NameServer has
/// accepted a registration (false if the shard stops first).
pub fn start(shard: &Rc<Shard>) -> (Registrar, impl Future<Output = bool>) {
    let namesrvs: Vec<Rc<Namesrv>> = shard
        .config()
        .namesrv_addrs
        .iter()
        .map(|a| Rc::new(Namesrv { addr: a.clone(), client: RefCell::new(None), registered: Cell::new(false) }))
        .collect();
    let (done, registered) = completion::<bool>();
    let pending = Rc::new(RefCell::new(Some((done, namesrvs.len()))));
    for ns in namesrvs.iter().cloned() {
        let (shard, pending) = (shard.clone(), pending.clone());
        let topics_changed = Rc::new(Notify::default());
        shard.on_topics_changed(topics_changed.clone());
        glommio::spawn_local(async move {
            let interval_ms = shard.config().register_interval_ms;
            let mut accepted_once = false;
            // Failed registrations in a row.
            let mut failures: u32 = 0;
            loop {
                // Heartbeat at the interval, or at once when topics change; after a
                // failure, as `retry_delay_ms` says until the NameServer accepted us once.
                let wait = match ns.register(&shard).await {
                    Ok(()) => {
                        ns.registered.set(true);
                        if !accepted_once {
                            accepted_once = true;
                            info!(shard = shard.id(), namesrv = %ns.addr, broker = %shard.broker_name(), failures, "registered with NameServer");
                            let mut p = pending.borrow_mut();
                            if let Some((_, left)) = p.as_mut() {
                                *left -= 1;
                                if *left == 0 {
                                    let (done, _) = p.take().expect("present");
                                    done.complete(true);
                                }
                            }
                        } else if failures > 0 {
                            info!(shard = shard.id(), namesrv = %ns.addr, failures, "registered with NameServer again");
                        } else {
                            debug!(shard = shard.id(), namesrv = %ns.addr, "registered");
                        }
                        failures = 0;
                        interval_ms
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        let retry_in_ms = if accepted_once { interval_ms } else { retry_delay_ms(failures, interval_ms) };
                        warn!(shard = shard.id(), namesrv = %ns.addr, error = %e, failures, retry_in_ms, "registration failed; will retry");
                        retry_in_ms
                    }
                };
                let stop = futures_lite::future::or(
                    async {
                        let interval = glommio::timer::sleep(Duration::from_millis(wait));
                        futures_lite::future::or(topics_changed.notified(), interval).await;
                        false
                    },
                    async {
                        shard.shutdown().wait().await;
                        true
                    },
                )
                .await;
                if stop {
                    break;
                }
            }
            if let Some((done, _)) = pending.borrow_mut().take() {
                done.complete(false);
            }
        })
        .detach();
    }
    (Registrar { namesrvs }, registered)
}

impl Registrar {
    /// Tells every NameServer that accepted this shard's registration that it is going
    /// away (bounded wait per NameServer). One that never did is left alone: what it
    /// holds under this shard's name is not ours to remove.
    pub async fn unregister_all(&self, shard: &Rc<Shard>) {
        for ns in self.namesrvs.iter().filter(|ns| ns.registered.get()) {
            let header = UnregisterBrokerRequestHeader {
                broker_name: shard.broker_name().to_string(),
                broker_addr: shard.addr().to_string(),
                cluster_name: shard.config().cluster_name.clone(),
                broker_id: shard.broker_id(),
            };
            let mut ext = ExtFields::new();
            header.encode(&mut ext);
            let cmd = RemotingCommand::new_request(request::UNREGISTER_BROKER, ext);
            match ns.request(cmd, UNREGISTER_TIMEOUT_MS).await {
                Ok(_) => info!(shard = shard.id(), namesrv = %ns.addr, "unregistered"),
                Err(e) => warn!(shard = shard.id(), namesrv = %ns.addr, error = %e, "unregister failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_the_quick_retry_to_the_register_interval() {
        let delays: Vec<u64> = (1..=10).map(|n| retry_delay_ms(n, 30_000)).collect();
        assert_eq!(delays, [200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 30_000, 30_000]);
        assert_eq!(retry_delay_ms(u32::MAX, 30_000), 30_000, "no overflow after many failures");
        // An interval shorter than the quick retry (a test setting) is never exceeded.
        assert_eq!(retry_delay_ms(1, 100), 100);
    }
}
