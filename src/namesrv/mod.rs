//! The NameServer: RocketMQ's routing registry (REMOTING.md §4.1).
//!
//! Brokers register over a long-lived connection and re-register every 30 s; clients
//! ask which brokers serve a topic. NameServers never talk to each other: a broker
//! registers with each of them, and each answers from what it was told.
//!
//! Map: [`routes::RouteTable`] is the registry (pure data, time passed in);
//! [`kv::KvTable`] the admin key-value settings; [`NameServer`] turns one
//! [`RemotingCommand`] into its answer against both (pure apart from reading a monotonic
//! clock, so the tests call [`NameServer::handle_at`] with a chosen time); [`run`] serves
//! it over TCP and scans for silent brokers on the same executor.
//!
//! Served codes: REGISTER_BROKER, UNREGISTER_BROKER, GET_ROUTEINFO_BY_TOPIC,
//! GET_BROKER_CLUSTER_INFO, GET_ALL_TOPIC_LIST_FROM_NAMESERVER, GET_TOPICS_BY_CLUSTER,
//! GET_SYSTEM_TOPIC_LIST_FROM_NS, PUT/GET/DELETE_KV_CONFIG, GET_KVLIST_BY_NAMESPACE,
//! WIPE/ADD_WRITE_PERM_OF_BROKER, DELETE_TOPIC_IN_NAMESRV, REGISTER_TOPIC_IN_NAMESRV,
//! QUERY_DATA_VERSION, BROKER_HEARTBEAT. Anything else is answered
//! REQUEST_CODE_NOT_SUPPORTED. A request whose header lacks a required field, or whose
//! body does not parse, is answered SYSTEM_ERROR naming the problem, as Java does; such
//! refusals are also logged at WARN with the peer (`remoting::rejections`).
//!
//! Liveness: a broker is dropped when its connection closes, when it unregisters, or
//! when it has been silent for longer than its timeout (its own `heartbeatTimeoutMillis`
//! if it sends one, else [`NamesrvConfig::broker_expiry_ms`]) at a scan (every
//! [`NamesrvConfig::scan_interval_ms`]). Time is measured on a monotonic clock, so a
//! wall-clock step cannot expire every broker at once.
//!
//! Thread: one glommio executor (standalone `rockshard namesrv`, or the broker's
//! NameServer sidecar). State sits in `RefCell`s that are never borrowed across an
//! `.await`: every handler is synchronous.
//!
//! Deliberately not here: persistence (routes are rebuilt by the next heartbeats, and
//! the KV table is kept in memory only), closing the connection of an expired broker
//! (the remoting server gives services no way to close one; the broker's next
//! registration over it simply brings it back), and the compressed REGISTER_BROKER body
//! (Java brokers never send it; it is refused with SYSTEM_ERROR).

pub mod kv;
pub mod routes;

use std::cell::{Ref, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rockshard_net::body::{
    from_json, to_json, to_legacy_json, DataVersion, KVTable, RegisterBrokerBody, TopicConfigSerializeWrapper,
    TopicList, TopicRouteData,
};
use rockshard_net::code::{request as req, response as resp, version};
use rockshard_net::headers::{
    CommandHeader, GetRouteInfoRequestHeader, RegisterBrokerRequestHeader, RegisterBrokerResponseHeader,
    UnregisterBrokerRequestHeader,
};
use rockshard_net::RemotingCommand;
use tracing::{debug, info, warn};

use crate::limits::{NAMESRV_BROKER_EXPIRY_DEFAULT_MS, NAMESRV_PORT_DEFAULT, NAMESRV_SCAN_INTERVAL_DEFAULT_MS};
use crate::remoting::rejections::{RejectionLog, RequestSummary};
use crate::remoting::server::{self, Connection, ConnectionLimits, Service, Shutdown};
use crate::{Error, Result};
use kv::{KvTable, NAMESPACE_ORDER_TOPIC_CONFIG};
use routes::{BrokerAddr, ConnectionId, Expired, Registration, RouteTable};

/// Request ext key carrying a broker's zone (Java `MixAll.ZONE_NAME`).
const ZONE_NAME_KEY: &str = "__ZONE_NAME";

/// Settings of one NameServer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamesrvConfig {
    pub listen: SocketAddr,
    /// How often silent brokers are looked for.
    pub scan_interval_ms: u64,
    /// Silence after which a broker that did not state its own timeout is dropped.
    pub broker_expiry_ms: u64,
    /// What the listener allows its connections.
    pub connection_limits: ConnectionLimits,
}

impl Default for NamesrvConfig {
    /// RocketMQ's: port 9876 (on loopback, so nothing is exposed by accident), scan every
    /// 10 s, expire after 120 s.
    fn default() -> NamesrvConfig {
        NamesrvConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], NAMESRV_PORT_DEFAULT)),
            scan_interval_ms: NAMESRV_SCAN_INTERVAL_DEFAULT_MS,
            broker_expiry_ms: NAMESRV_BROKER_EXPIRY_DEFAULT_MS,
            connection_limits: ConnectionLimits::default(),
        }
    }
}

impl NamesrvConfig {
    /// Refuses settings that cannot work: a zero scan interval would make the scan task
    /// spin, a zero expiry would drop every broker at the first scan, and zero
    /// connection limits would refuse every connection.
    pub fn validate(&self) -> Result<()> {
        if self.scan_interval_ms == 0 {
            return Err(Error::Config { key: "scan_interval_ms".into(), detail: "must be at least 1".into() });
        }
        if self.broker_expiry_ms == 0 {
            return Err(Error::Config { key: "broker_expiry_ms".into(), detail: "must be at least 1".into() });
        }
        let limits = &self.connection_limits;
        for (key, value) in [
            ("max_connections", limits.max_connections as u64),
            ("idle_timeout_ms", limits.idle_timeout_ms),
            ("frame_timeout_ms", limits.frame_timeout_ms),
        ] {
            if value == 0 {
                return Err(Error::Config { key: key.into(), detail: "must be at least 1".into() });
            }
        }
        Ok(())
    }
}

/// Serves a NameServer on `listener` (bound to `config.listen` by
/// [`server::bind_std`], so the caller knows the port is ours before anything starts)
/// until `shutdown` is triggered, scanning for silent brokers every
/// `config.scan_interval_ms` on the same executor. Must be called inside a glommio
/// executor. Returns once the listener is closed and the connections have drained (see
/// [`server::serve`]).
pub async fn run(config: NamesrvConfig, listener: std::net::TcpListener, shutdown: Rc<Shutdown>) -> Result<()> {
    config.validate()?;
    let listener = server::adopt(listener);
    let local = listener.local_addr().map_or_else(|_| config.listen.to_string(), |a| a.to_string());
    info!(
        listen = %local, scan_interval_ms = config.scan_interval_ms, broker_expiry_ms = config.broker_expiry_ms,
        "NameServer listening"
    );
    let nameserver = Rc::new(NameServer::new(config.broker_expiry_ms));
    let scanner = glommio::spawn_local(scan_loop(nameserver.clone(), config.scan_interval_ms, shutdown.clone()));
    let served = server::serve(listener, nameserver, shutdown, config.connection_limits).await;
    // Normally the scanner has already seen the shutdown; if serving failed instead,
    // dropping the handle cancels it.
    drop(scanner);
    info!(listen = %local, "NameServer stopped");
    served
}

async fn scan_loop(nameserver: Rc<NameServer>, interval_ms: u64, shutdown: Rc<Shutdown>) {
    let interval = Duration::from_millis(interval_ms);
    // Each turn waits a full interval (validated non-zero) or ends at shutdown.
    while !shutdown.is_set() {
        let stop = shutdown.sleep(interval).await;
        if stop {
            break;
        }
        for e in nameserver.scan(nameserver.now_ms()) {
            warn!(
                cluster = %e.broker.cluster, addr = %e.broker.addr, silent_ms = e.silent_ms, connection = ?e.connection,
                "broker expired: no registration within its timeout"
            );
        }
    }
}

/// The request handler over a [`RouteTable`] and a [`KvTable`].
pub struct NameServer {
    routes: RefCell<RouteTable>,
    kv: RefCell<KvTable>,
    /// Origin of [`NameServer::now_ms`].
    clock_origin: Instant,
    /// WARN lines for the requests this NameServer refuses (rate-limited).
    rejections: RejectionLog,
}

impl NameServer {
    /// An empty NameServer whose brokers expire after `broker_expiry_ms` of silence
    /// unless they state their own timeout.
    pub fn new(broker_expiry_ms: u64) -> NameServer {
        NameServer {
            routes: RefCell::new(RouteTable::new(broker_expiry_ms)),
            kv: RefCell::new(KvTable::default()),
            clock_origin: Instant::now(),
            rejections: RejectionLog::new("namesrv"),
        }
    }

    /// Milliseconds since this NameServer was created, on a monotonic clock.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.clock_origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Read access to the routes (for the sidecar's diagnostics and for tests).
    pub fn routes(&self) -> Ref<'_, RouteTable> {
        self.routes.borrow()
    }

    /// Drops brokers silent past their timeout at `now_ms`.
    pub fn scan(&self, now_ms: u64) -> Vec<Expired> {
        self.routes.borrow_mut().scan_expired(now_ms)
    }

    /// Drops the brokers registered over `connection`, which has closed.
    pub fn connection_closed(&self, connection: ConnectionId) -> Vec<BrokerAddr> {
        self.routes.borrow_mut().connection_closed(connection)
    }

    /// The answer to `request`, received over `connection` at `now_ms`: `None` for
    /// oneway requests (after acting on them) and for stray responses.
    pub fn handle_at(
        &self,
        connection: Option<ConnectionId>,
        request: &RemotingCommand,
        now_ms: u64,
    ) -> Option<RemotingCommand> {
        let answer = self.respond(connection, request, now_ms)?;
        (!request.is_oneway()).then_some(answer)
    }

    /// The answer to `request`, oneway ones included (the caller drops those after
    /// logging a refusal); `None` only for stray responses.
    fn respond(
        &self,
        connection: Option<ConnectionId>,
        request: &RemotingCommand,
        now_ms: u64,
    ) -> Option<RemotingCommand> {
        if request.is_response() {
            return None;
        }
        Some(self.answer(connection, request, now_ms).unwrap_or_else(|e| {
            debug!(code = request.code, error = %e, "request refused");
            RemotingCommand::response_to(request, resp::SYSTEM_ERROR, Some(e.to_string()))
        }))
    }

    fn answer(
        &self,
        connection: Option<ConnectionId>,
        request: &RemotingCommand,
        now_ms: u64,
    ) -> Result<RemotingCommand, rockshard_net::Error> {
        let ok = |body: Vec<u8>| RemotingCommand::response_to(request, resp::SUCCESS, None).with_body(body);
        match request.code {
            req::REGISTER_BROKER => self.register_broker(connection, request, now_ms),
            req::UNREGISTER_BROKER => {
                let h = UnregisterBrokerRequestHeader::decode(&request.ext_fields)?;
                let removed = self.routes.borrow_mut().unregister(&h.cluster_name, &h.broker_addr, &h.broker_name);
                info!(cluster = %h.cluster_name, broker = %h.broker_name, addr = %h.broker_addr, removed, "broker unregistered");
                Ok(ok(Vec::new()))
            }
            req::GET_ROUTEINFO_BY_TOPIC => {
                let h = GetRouteInfoRequestHeader::decode(&request.ext_fields)?;
                let route = self.routes.borrow().route(&h.topic);
                match route {
                    Some(route) => {
                        Ok(ok(route.encode_for(request.version, h.accept_standard_json_only.unwrap_or(false))?))
                    }
                    None => Ok(RemotingCommand::response_to(
                        request,
                        resp::TOPIC_NOT_EXIST,
                        Some(format!("No topic route info in name server for the topic: {}", h.topic)),
                    )),
                }
            }
            // Java writes cluster info in the legacy dialect for every client.
            req::GET_BROKER_CLUSTER_INFO => Ok(ok(to_legacy_json(&self.routes.borrow().cluster_info())?)),
            req::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
                Ok(ok(to_json(&TopicList { broker_addr: None, topic_list: self.routes.borrow().topics() })?))
            }
            req::GET_TOPICS_BY_CLUSTER => {
                let cluster = field(request, "GetTopicsByClusterRequestHeader", "cluster")?;
                let topics = self.routes.borrow().topics_of_cluster(cluster);
                Ok(ok(to_json(&TopicList { broker_addr: None, topic_list: topics })?))
            }
            req::GET_SYSTEM_TOPIC_LIST_FROM_NS => {
                let (topic_list, broker_addr) = self.routes.borrow().system_topics();
                Ok(ok(to_json(&TopicList { broker_addr, topic_list })?))
            }
            req::PUT_KV_CONFIG => {
                let header = "PutKVConfigRequestHeader";
                let (ns, key) = (field(request, header, "namespace")?, field(request, header, "key")?);
                let value = field(request, header, "value")?;
                match self.kv.borrow_mut().put(ns, key, value) {
                    Ok(()) => Ok(ok(Vec::new())),
                    Err(kv::KvFull) => Ok(RemotingCommand::response_to(
                        request,
                        resp::SYSTEM_ERROR,
                        Some(format!("the KV table is full ({} entries)", kv::KV_ENTRIES_MAX)),
                    )),
                }
            }
            req::GET_KV_CONFIG => {
                let header = "GetKVConfigRequestHeader";
                let (ns, key) = (field(request, header, "namespace")?, field(request, header, "key")?);
                match self.kv.borrow().get(ns, key) {
                    Some(value) => {
                        let mut answer = ok(Vec::new());
                        answer.ext_fields.insert("value", value);
                        Ok(answer)
                    }
                    None => Ok(RemotingCommand::response_to(
                        request,
                        resp::QUERY_NOT_FOUND,
                        Some(format!("No config item, Namespace: {ns} Key: {key}")),
                    )),
                }
            }
            req::DELETE_KV_CONFIG => {
                let header = "DeleteKVConfigRequestHeader";
                let (ns, key) = (field(request, header, "namespace")?, field(request, header, "key")?);
                self.kv.borrow_mut().delete(ns, key);
                Ok(ok(Vec::new()))
            }
            req::GET_KVLIST_BY_NAMESPACE => {
                let ns = field(request, "GetKVListByNamespaceRequestHeader", "namespace")?;
                match self.kv.borrow().namespace(ns) {
                    Some(table) => Ok(ok(to_json(&KVTable { table: table.clone() })?)),
                    None => Ok(RemotingCommand::response_to(
                        request,
                        resp::QUERY_NOT_FOUND,
                        Some(format!("No config item, Namespace: {ns}")),
                    )),
                }
            }
            req::WIPE_WRITE_PERM_OF_BROKER | req::ADD_WRITE_PERM_OF_BROKER => {
                let wipe = request.code == req::WIPE_WRITE_PERM_OF_BROKER;
                let (header, count_key) = if wipe {
                    ("WipeWritePermOfBrokerRequestHeader", "wipeTopicCount")
                } else {
                    ("AddWritePermOfBrokerRequestHeader", "addTopicCount")
                };
                let broker_name = field(request, header, "brokerName")?;
                let touched = self.routes.borrow_mut().set_write_perm(broker_name, wipe);
                info!(broker = %broker_name, wipe, topics = touched, "write permission changed by an admin");
                let mut answer = ok(Vec::new());
                answer.ext_fields.insert(count_key, touched.to_string());
                Ok(answer)
            }
            req::DELETE_TOPIC_IN_NAMESRV => {
                let topic = field(request, "DeleteTopicFromNamesrvRequestHeader", "topic")?;
                let cluster = request.ext_fields.get("clusterName").filter(|c| !c.is_empty());
                self.routes.borrow_mut().delete_topic(topic, cluster);
                info!(topic, cluster = ?cluster, "topic deleted by an admin");
                Ok(ok(Vec::new()))
            }
            req::REGISTER_TOPIC_IN_NAMESRV => {
                let topic = field(request, "RegisterTopicRequestHeader", "topic")?;
                if !request.body.is_empty() {
                    let route: TopicRouteData = from_json(&request.body)?;
                    if let Err(unknown) = self.routes.borrow_mut().register_topic(topic, route.queue_datas) {
                        // Java logs and ignores the request; the admin learns nothing, so
                        // we say why instead.
                        return Ok(RemotingCommand::response_to(
                            request,
                            resp::SYSTEM_ERROR,
                            Some(format!("register topic {topic}: broker {unknown} is not registered")),
                        ));
                    }
                }
                Ok(ok(Vec::new()))
            }
            req::QUERY_DATA_VERSION => {
                let header = "QueryDataVersionRequestHeader";
                let cluster = field(request, header, "clusterName")?;
                let addr = field(request, header, "brokerAddr")?;
                let theirs: DataVersion = from_json(&request.body)?;
                let broker = BrokerAddr { cluster: cluster.to_owned(), addr: addr.to_owned() };
                let mut routes = self.routes.borrow_mut();
                let changed = routes.topic_config_changed(&broker, &theirs);
                // An unchanged broker skips its full registration, so this counts as its
                // heartbeat; a changed one is about to register anyway.
                if !changed {
                    routes.refresh(cluster, addr, now_ms);
                }
                let body = match routes.data_version(cluster, addr) {
                    Some(ours) => to_json(&ours)?,
                    None => Vec::new(),
                };
                let mut answer = ok(body);
                answer.ext_fields.insert("changed", changed.to_string());
                Ok(answer)
            }
            req::BROKER_HEARTBEAT => {
                let header = "BrokerHeartbeatRequestHeader";
                let (cluster, addr) = (field(request, header, "clusterName")?, field(request, header, "brokerAddr")?);
                self.routes.borrow_mut().refresh(cluster, addr, now_ms);
                Ok(ok(Vec::new()))
            }
            _ => Ok(RemotingCommand::not_supported(request)),
        }
    }

    fn register_broker(
        &self,
        connection: Option<ConnectionId>,
        request: &RemotingCommand,
        now_ms: u64,
    ) -> Result<RemotingCommand, rockshard_net::Error> {
        let h = RegisterBrokerRequestHeader::decode(&request.ext_fields)?;
        let refuse = |remark: &str| RemotingCommand::response_to(request, resp::SYSTEM_ERROR, Some(remark.to_owned()));
        if let Some(expected) = h.body_crc32.filter(|crc| *crc != 0) {
            // The header's i32 holds the masked (non-negative) CRC.
            if i64::from(expected) != i64::from(rockshard_net::stored::body_crc(&request.body)) {
                return Ok(refuse("crc32 not match"));
            }
        }
        if h.compressed == Some(true) {
            return Ok(refuse("compressed REGISTER_BROKER bodies are not supported; register uncompressed"));
        }
        let topics = if request.body.is_empty() {
            // No body: a broker without topics, version zero (Java's reading).
            TopicConfigSerializeWrapper::default()
        } else if request.version >= version::V3_0_11 {
            from_json::<RegisterBrokerBody>(&request.body)?.topic_config_serialize_wrapper
        } else {
            // Brokers older than 3.0.11 send the topic wrapper itself.
            from_json::<TopicConfigSerializeWrapper>(&request.body)?
        };
        let topic_count = topics.topic_config_table.len();
        let registration = Registration {
            cluster: h.cluster_name,
            broker_name: h.broker_name,
            broker_addr: h.broker_addr,
            broker_id: h.broker_id,
            ha_server_addr: h.ha_server_addr,
            expiry_ms: h.heartbeat_timeout_millis.and_then(|ms| u64::try_from(ms).ok()).filter(|ms| *ms > 0),
            enable_acting_master: h.enable_acting_master,
            zone_name: request.ext_fields.get(ZONE_NAME_KEY).map(str::to_owned),
            topics,
            connection,
        };
        let (cluster, name, addr, id) = (
            registration.cluster.clone(),
            registration.broker_name.clone(),
            registration.broker_addr.clone(),
            registration.broker_id,
        );
        let outcome = self.routes.borrow_mut().register(registration, now_ms);
        debug!(
            %cluster, broker = %name, %addr, id, topics = topic_count, applied = outcome.topics_applied,
            refused = outcome.refused_stale, "broker registered"
        );
        let mut answer = RemotingCommand::response_to(request, resp::SUCCESS, None);
        RegisterBrokerResponseHeader {
            ha_server_addr: outcome.master_ha_server_addr,
            master_addr: outcome.master_addr,
        }
        .encode(&mut answer.ext_fields);
        if let Some(order) = self.kv.borrow().namespace(NAMESPACE_ORDER_TOPIC_CONFIG) {
            answer.body = to_json(&KVTable { table: order.clone() })?.into();
        }
        Ok(answer)
    }
}

impl Service for NameServer {
    async fn handle(self: Rc<Self>, conn: &Rc<Connection>, request: RemotingCommand) -> Option<RemotingCommand> {
        let answer = self.respond(Some(conn.id()), &request, self.now_ms())?;
        self.rejections.note(RequestSummary::of(&request), &answer, conn.peer());
        (!request.is_oneway()).then_some(answer)
    }

    fn on_close(&self, conn: &Connection) {
        for broker in self.connection_closed(conn.id()) {
            info!(
                cluster = %broker.cluster, addr = %broker.addr, peer = %conn.peer(),
                "broker removed: its connection closed"
            );
        }
    }
}

/// A required ext field of a header this crate has no typed view for.
fn field<'a>(
    request: &'a RemotingCommand,
    header: &'static str,
    key: &'static str,
) -> Result<&'a str, rockshard_net::Error> {
    request.ext_fields.get(key).ok_or(rockshard_net::Error::MissingField { header, field: key })
}

#[cfg(test)]
mod tests;
