//! Broker and NameServer settings: built-in defaults, then a TOML file, then flags.
//!
//! One list of settings serves both sources: [`BrokerSettings`] is at once the clap
//! flags (`--segment-size-bytes`) and the TOML keys (`segment_size_bytes`), every field
//! optional; [`BrokerConfig::resolve`] lays flags over the file over the defaults and
//! checks every value, naming the key and the values it allows when one is wrong.
//!
//! Deliberately not here: reading the environment, or any setting that changes while
//! the broker runs (topic flush modes live in each shard's store and change by request).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use rockshard_storage::{FlushMode, StoreConfig};
use serde::Deserialize;

use crate::limits::*;
use crate::namesrv::NamesrvConfig;
use crate::remoting::server::ConnectionLimits;
use crate::{Error, Result};

/// Every broker setting, all optional, as flags and as TOML keys.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// Where shard data lives: `<data_dir>/shard-<i>/` [default: ./data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Number of shards (one executor per core) [default: the number of cores]
    #[arg(long)]
    pub shards: Option<usize>,
    /// Pin shard i to core i (off when sharing a machine with other work) [default: true]
    #[arg(long)]
    pub pin_cores: Option<bool>,
    /// Broker name; shard i registers as `<broker_name>-s<i>` [default: broker-a]
    #[arg(long)]
    pub broker_name: Option<String>,
    /// Cluster name [default: DefaultCluster]
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// Address the shards listen on [default: 127.0.0.1]
    #[arg(long)]
    pub listen_ip: Option<IpAddr>,
    /// Port of shard 0; shard i listens on `port + i` [default: 10911]
    #[arg(long)]
    pub port: Option<u16>,
    /// Address put in routes, like RocketMQ's brokerIP1 [default: the listen address,
    /// or 127.0.0.1 when listening on 0.0.0.0]
    #[arg(long)]
    pub advertise_ip: Option<IpAddr>,
    /// NameServers to register with, `host:port` separated by `;` (the embedded one is
    /// added when it runs)
    #[arg(long)]
    pub namesrv_addr: Option<String>,
    /// Run the NameServer inside the broker [default: true]
    #[arg(long)]
    pub embedded_namesrv: Option<bool>,
    /// Where the embedded NameServer listens [default: 127.0.0.1:9876]
    #[arg(long)]
    pub namesrv_listen: Option<SocketAddr>,
    /// Interval between registrations (heartbeats) to NameServers, ms [default: 30000]
    #[arg(long)]
    pub register_interval_ms: Option<u64>,
    /// How often the embedded NameServer looks for silent brokers, ms [default: 10000]
    #[arg(long)]
    pub namesrv_scan_interval_ms: Option<u64>,
    /// How long the embedded NameServer keeps a silent broker, ms [default: 120000]
    #[arg(long)]
    pub namesrv_broker_expiry_ms: Option<u64>,
    /// Create unknown topics on first send [default: true]
    #[arg(long)]
    pub auto_create_topic: Option<bool>,
    /// Queues of an auto-created topic, across all shards [default: 8]
    #[arg(long)]
    pub default_topic_queues: Option<u32>,
    /// Flush mode of topics that do not set one: `sync` or `async` [default: async]
    #[arg(long)]
    pub default_flush: Option<String>,
    /// Largest message body (or batch body) accepted, bytes [default: 4194304]
    #[arg(long)]
    pub max_message_size_bytes: Option<usize>,
    /// CommitLog segment size, bytes [default: 1073741824]
    #[arg(long)]
    pub segment_size_bytes: Option<u64>,
    /// Background flush interval for `async` topics, ms [default: 500]
    #[arg(long)]
    pub flush_interval_ms: Option<u64>,
    /// Longest wait for an fdatasync before a `sync` send answers FLUSH_DISK_TIMEOUT, ms
    /// [default: 5000]
    #[arg(long)]
    pub sync_flush_timeout_ms: Option<u64>,
    /// CommitLog bytes behind the end still read through the page cache [default: 1 GiB]
    #[arg(long)]
    pub hot_window_bytes: Option<u64>,
    /// Delete CommitLog segments older than this, hours (0 keeps them) [default: 72]
    #[arg(long)]
    pub retention_hours: Option<u64>,
    /// Keep each shard's CommitLog below this many bytes [default: unlimited]
    #[arg(long)]
    pub retention_bytes: Option<u64>,
    /// Drop a client (consumer or producer) silent for this long, ms [default: 120000]
    #[arg(long)]
    pub client_expiry_ms: Option<u64>,
    /// Longest a pull may be held waiting for messages, ms [default: 30000]
    #[arg(long)]
    pub long_polling_max_ms: Option<u64>,
    /// Connections one port (each shard's, the embedded NameServer's) keeps open at once;
    /// more are closed when accepted [default: 10000]
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Close a connection that sends nothing for this long with no request running, ms
    /// (RocketMQ's serverChannelMaxIdleTimeSeconds) [default: 120000]
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    /// Close a connection whose frame has not fully arrived this long after its first
    /// bytes, ms [default: 30000]
    #[arg(long)]
    pub frame_timeout_ms: Option<u64>,
    /// Replication: the broker group this node belongs to; routes name its shards
    /// `<group>-s<i>` (replaces broker_name) [default: no replication]
    #[arg(long)]
    pub group: Option<String>,
    /// Replication: this node's name in `peers`
    #[arg(long)]
    pub node: Option<String>,
    /// Replication: every node of the group as `name=host:port,...` (each node's base
    /// broker port; shard i replicates with port+i), in the same order on every node
    #[arg(long)]
    pub peers: Option<String>,
    /// Replication: Raft tick, ms [default: 100]
    #[arg(long)]
    pub raft_tick_ms: Option<u64>,
    /// Replication: ticks without a leader before a follower campaigns (randomised up to
    /// twice this) [default: 10]
    #[arg(long)]
    pub raft_election_ticks: Option<u64>,
    /// Replication: a send not committed by a majority within this long fails, ms
    /// [default: 5000]
    #[arg(long)]
    pub replication_timeout_ms: Option<u64>,
    /// Replication: move each shard's leadership back to its preferred node (shard i:
    /// the ((i mod n) + 1)-th of peers) whenever that node is caught up [default: false;
    /// leaders spread at start either way]
    #[arg(long)]
    pub raft_balance_leaders: Option<bool>,
}

/// The resolved broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub shards: usize,
    pub pin_cores: bool,
    pub broker_name: String,
    pub cluster_name: String,
    pub listen_ip: IpAddr,
    pub port: u16,
    pub advertise_ip: IpAddr,
    pub namesrv_addrs: Vec<String>,
    pub embedded_namesrv: Option<NamesrvConfig>,
    pub register_interval_ms: u64,
    pub auto_create_topic: bool,
    pub default_topic_queues: u32,
    pub default_flush: FlushMode,
    pub max_message_size_bytes: usize,
    pub segment_size_bytes: u64,
    pub flush_interval_ms: u64,
    pub sync_flush_timeout_ms: u64,
    pub hot_window_bytes: u64,
    pub retention_hours: u64,
    pub retention_bytes: Option<u64>,
    pub client_expiry_ms: u64,
    pub long_polling_max_ms: u64,
    /// What every listener of the process (shards, embedded NameServer) allows.
    pub connection_limits: ConnectionLimits,
    /// Set when this node is one of a replicated group.
    pub replication: Option<Replication>,
}

/// A node of a replicated broker group (DLedger-style: shard i of every node forms Raft
/// group i).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    pub group: String,
    /// This node's name and Raft id (its 1-based position in `peers`).
    pub node: String,
    pub node_id: u64,
    /// Every node, this one included, in `peers` order: (name, base broker address).
    pub peers: Vec<(String, SocketAddr)>,
    pub tick_ms: u64,
    pub election_ticks: u64,
    pub timeout_ms: u64,
    pub balance_leaders: bool,
}

impl Replication {
    /// Raft ids of every node.
    pub fn voters(&self) -> Vec<u64> {
        (1..=self.peers.len() as u64).collect()
    }

    /// The node shard `shard`'s leadership prefers: shards go round the peers in order,
    /// so every node leads (takes writes for) some of them.
    pub fn preferred_leader(&self, shard: usize) -> u64 {
        (shard % self.peers.len()) as u64 + 1
    }

    /// Where shard `shard` of node `id` listens (its base port + shard).
    pub fn peer_shard_addr(&self, id: u64, shard: usize) -> Option<SocketAddr> {
        let (_, a) = self.peers.get(id.checked_sub(1)? as usize)?;
        Some(SocketAddr::new(a.ip(), a.port().checked_add(shard as u16)?))
    }
}

/// Reads `--group/--node/--peers` and the Raft timing settings; `None` when no group is
/// given (a single node).
fn replication(s: &BrokerSettings) -> Result<Option<Replication>> {
    let Some(group) = s.group.clone() else {
        if s.node.is_some() || s.peers.is_some() {
            return Err(bad("group", "node and peers belong to a replicated group: give group too"));
        }
        return Ok(None);
    };
    if group.is_empty() || !group.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(bad("group", format!("`{group}`: use letters, digits, `-` and `_`")));
    }
    let node = s.node.clone().ok_or_else(|| bad("node", "a replicated node needs its name (one of peers)"))?;
    let list = s.peers.as_deref().ok_or_else(|| bad("peers", "a replicated node needs the group's peers"))?;
    let mut peers: Vec<(String, SocketAddr)> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((name, addr)) = item.split_once('=') else {
            return Err(bad("peers", format!("`{item}` is not name=host:port")));
        };
        let addr: SocketAddr =
            addr.trim().parse().map_err(|_| bad("peers", format!("`{addr}` (of {name}) is not ip:port")))?;
        if peers.iter().any(|(n, _)| n == name.trim()) {
            return Err(bad("peers", format!("`{name}` is listed twice")));
        }
        peers.push((name.trim().to_string(), addr));
    }
    if peers.is_empty() || peers.len() > REPLICATION_PEERS_MAX {
        return Err(bad("peers", format!("{} nodes: allowed 1 to {REPLICATION_PEERS_MAX}", peers.len())));
    }
    let Some(pos) = peers.iter().position(|(n, _)| *n == node) else {
        return Err(bad("node", format!("`{node}` is not one of peers ({list})")));
    };
    let election_ticks = s.raft_election_ticks.unwrap_or(RAFT_ELECTION_TICKS_DEFAULT);
    if election_ticks < RAFT_ELECTION_TICKS_MIN {
        return Err(bad("raft_election_ticks", format!("{election_ticks}: at least {RAFT_ELECTION_TICKS_MIN}")));
    }
    Ok(Some(Replication {
        group,
        node,
        node_id: pos as u64 + 1,
        peers,
        tick_ms: positive("raft_tick_ms", s.raft_tick_ms, RAFT_TICK_DEFAULT_MS)?,
        election_ticks,
        timeout_ms: positive("replication_timeout_ms", s.replication_timeout_ms, REPLICATION_TIMEOUT_DEFAULT_MS)?,
        balance_leaders: s.raft_balance_leaders.unwrap_or(false),
    }))
}

fn bad(key: &str, detail: impl Into<String>) -> Error {
    Error::Config { key: key.to_string(), detail: detail.into() }
}

/// Reads a TOML settings file; an unknown key or a value of the wrong type is an error
/// that names the key.
pub fn read_settings_file(path: &Path) -> Result<BrokerSettings> {
    let text = std::fs::read_to_string(path).map_err(Error::io("read config file", path.display()))?;
    toml::from_str(&text).map_err(|e| bad(&path.display().to_string(), e.to_string().trim_end().to_string()))
}

impl BrokerSettings {
    /// `self` with every value `over` sets replaced by that value.
    pub fn overlay(self, over: BrokerSettings) -> BrokerSettings {
        macro_rules! pick {
            ($($f:ident),* $(,)?) => { BrokerSettings { $($f: over.$f.or(self.$f)),* } };
        }
        pick!(
            data_dir,
            shards,
            pin_cores,
            broker_name,
            cluster_name,
            listen_ip,
            port,
            advertise_ip,
            namesrv_addr,
            embedded_namesrv,
            namesrv_listen,
            register_interval_ms,
            namesrv_scan_interval_ms,
            namesrv_broker_expiry_ms,
            auto_create_topic,
            default_topic_queues,
            default_flush,
            max_message_size_bytes,
            segment_size_bytes,
            flush_interval_ms,
            sync_flush_timeout_ms,
            hot_window_bytes,
            retention_hours,
            retention_bytes,
            client_expiry_ms,
            long_polling_max_ms,
            max_connections,
            idle_timeout_ms,
            frame_timeout_ms,
            group,
            node,
            peers,
            raft_tick_ms,
            raft_election_ticks,
            replication_timeout_ms,
            raft_balance_leaders,
        )
    }
}

impl BrokerConfig {
    /// Defaults, then `file` (when given), then `flags`; every value checked.
    pub fn resolve(file: Option<BrokerSettings>, flags: BrokerSettings) -> Result<BrokerConfig> {
        let s = file.unwrap_or_default().overlay(flags);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = s.shards.unwrap_or(cores);
        if shards == 0 || shards > SHARDS_MAX {
            return Err(bad("shards", format!("{shards} is not allowed: use 1 to {SHARDS_MAX}")));
        }
        let port = s.port.unwrap_or(BROKER_PORT_DEFAULT);
        if port as usize + shards > u16::MAX as usize + 1 || port == 0 {
            return Err(bad(
                "port",
                format!("{port}: shards listen on port..port+{}, which must be valid ports", shards - 1),
            ));
        }
        let listen_ip = s.listen_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let advertise_ip = s.advertise_ip.unwrap_or(if listen_ip.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            listen_ip
        });
        if advertise_ip.is_unspecified() {
            return Err(bad("advertise_ip", "must be an address clients can connect to, not 0.0.0.0"));
        }
        let default_flush = match s.default_flush.as_deref() {
            None => FlushMode::Async,
            Some(v) => v.parse::<FlushMode>().map_err(|_| {
                bad("default_flush", format!("`{v}` is not a flush mode: allowed {}", FlushMode::ALLOWED))
            })?,
        };
        let connection_limits = connection_limits(&s)?;
        let embedded = if s.embedded_namesrv.unwrap_or(true) {
            let d = NamesrvConfig::default();
            Some(NamesrvConfig {
                listen: s.namesrv_listen.unwrap_or(d.listen),
                scan_interval_ms: positive("namesrv_scan_interval_ms", s.namesrv_scan_interval_ms, d.scan_interval_ms)?,
                broker_expiry_ms: positive("namesrv_broker_expiry_ms", s.namesrv_broker_expiry_ms, d.broker_expiry_ms)?,
                connection_limits,
            })
        } else {
            None
        };
        let mut namesrv_addrs: Vec<String> = s
            .namesrv_addr
            .as_deref()
            .unwrap_or("")
            .split(';')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        for a in &namesrv_addrs {
            if a.parse::<SocketAddr>().is_err() && !a.contains(':') {
                return Err(bad("namesrv_addr", format!("`{a}` is not host:port (separate several with `;`)")));
            }
        }
        if let Some(ns) = &embedded {
            let own = if ns.listen.ip().is_unspecified() {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), ns.listen.port())
            } else {
                ns.listen
            }
            .to_string();
            if !namesrv_addrs.contains(&own) {
                namesrv_addrs.insert(0, own);
            }
        }
        if namesrv_addrs.is_empty() {
            return Err(bad(
                "namesrv_addr",
                "no NameServer: give namesrv_addr (host:port;host:port) or leave embedded_namesrv on",
            ));
        }
        let replication = replication(&s)?;
        if let Some(r) = &replication {
            check_own_peer_entry(r, listen_ip, advertise_ip, port)?;
        }
        if replication.is_some() && (s.retention_hours.is_some_and(|h| h > 0) || s.retention_bytes.is_some()) {
            // The Raft log is the CommitLog: deleting segments would delete entries a
            // follower that was down may still need, and there are no snapshots yet.
            return Err(bad("retention_hours", "retention is not available in a replicated group yet: remove it"));
        }
        let broker_name = match (&replication, s.broker_name) {
            (Some(r), None) => r.group.clone(),
            (Some(r), Some(n)) if n != r.group => {
                return Err(bad(
                    "broker_name",
                    format!("`{n}`: a replicated node's broker name is its group `{}`", r.group),
                ))
            }
            (_, n) => n.unwrap_or_else(|| BROKER_NAME_DEFAULT.to_string()),
        };
        if broker_name.is_empty() || !broker_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(bad("broker_name", format!("`{broker_name}`: use letters, digits, `-` and `_`")));
        }
        let max_message_size_bytes = s.max_message_size_bytes.unwrap_or(MESSAGE_SIZE_DEFAULT_MAX_BYTES);
        if max_message_size_bytes == 0 || max_message_size_bytes > MESSAGE_SIZE_LIMIT_BYTES {
            return Err(bad(
                "max_message_size_bytes",
                format!("{max_message_size_bytes}: allowed 1 to {MESSAGE_SIZE_LIMIT_BYTES}"),
            ));
        }
        let default_topic_queues = s.default_topic_queues.unwrap_or(DEFAULT_TOPIC_QUEUES);
        if default_topic_queues == 0 || default_topic_queues > TOPIC_QUEUES_MAX {
            return Err(bad(
                "default_topic_queues",
                format!("{default_topic_queues}: allowed 1 to {TOPIC_QUEUES_MAX}"),
            ));
        }
        let store_defaults = StoreConfig::new(".");
        let config = BrokerConfig {
            data_dir: absolute("data_dir", s.data_dir.unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT)))?,
            shards,
            pin_cores: s.pin_cores.unwrap_or(true),
            broker_name,
            cluster_name: s.cluster_name.unwrap_or_else(|| CLUSTER_NAME_DEFAULT.to_string()),
            listen_ip,
            port,
            advertise_ip,
            namesrv_addrs,
            embedded_namesrv: embedded,
            register_interval_ms: positive(
                "register_interval_ms",
                s.register_interval_ms,
                REGISTER_INTERVAL_DEFAULT_MS,
            )?,
            auto_create_topic: s.auto_create_topic.unwrap_or(true),
            default_topic_queues,
            default_flush,
            max_message_size_bytes,
            segment_size_bytes: s.segment_size_bytes.unwrap_or(store_defaults.segment_size_bytes),
            flush_interval_ms: positive("flush_interval_ms", s.flush_interval_ms, store_defaults.flush_interval_ms)?,
            sync_flush_timeout_ms: positive(
                "sync_flush_timeout_ms",
                s.sync_flush_timeout_ms,
                store_defaults.sync_flush_timeout_ms,
            )?,
            hot_window_bytes: s.hot_window_bytes.unwrap_or(store_defaults.hot_window_bytes),
            retention_hours: if replication.is_some() {
                0
            } else {
                s.retention_hours.unwrap_or(store_defaults.retention_hours)
            },
            retention_bytes: if replication.is_some() {
                None
            } else {
                s.retention_bytes.or(store_defaults.retention_bytes)
            },
            client_expiry_ms: positive("client_expiry_ms", s.client_expiry_ms, CLIENT_EXPIRY_DEFAULT_MS)?,
            long_polling_max_ms: positive("long_polling_max_ms", s.long_polling_max_ms, LONG_POLLING_MAX_DEFAULT_MS)?,
            connection_limits,
            replication,
        };
        // The store checks its own settings; run that now so a bad value fails at start
        // with the key named, not later inside a shard.
        config.store_config(0).validate().map_err(|e| match e {
            rockshard_storage::StorageError::Config { key, detail } => bad(key, detail),
            other => Error::Storage(other),
        })?;
        Ok(config)
    }

    /// Shard `shard`'s broker name as it appears in routes.
    pub fn shard_broker_name(&self, shard: usize) -> String {
        format!("{}-s{shard}", self.broker_name)
    }

    pub fn shard_listen(&self, shard: usize) -> SocketAddr {
        SocketAddr::new(self.listen_ip, self.port + shard as u16)
    }

    pub fn shard_advertised(&self, shard: usize) -> String {
        SocketAddr::new(self.advertise_ip, self.port + shard as u16).to_string()
    }

    pub fn shard_dir(&self, shard: usize) -> PathBuf {
        self.data_dir.join(format!("shard-{shard}"))
    }

    pub fn store_config(&self, shard: usize) -> StoreConfig {
        let mut c = StoreConfig::new(self.shard_dir(shard));
        c.segment_size_bytes = self.segment_size_bytes;
        c.flush_interval_ms = self.flush_interval_ms;
        c.sync_flush_timeout_ms = self.sync_flush_timeout_ms;
        c.hot_window_bytes = self.hot_window_bytes;
        c.retention_hours = self.retention_hours;
        c.retention_bytes = self.retention_bytes;
        c.default_flush = self.default_flush;
        c.tag_code_rule = crate::broker::state::delay_rules::delay_tag_code;
        c
    }
}

/// The data directory as an absolute path. glommio 0.9 opens directories relative to fd
/// -1 rather than the working directory (`Directory::open`), so a relative path such as
/// the default `./data` would fail at the first directory sync.
pub fn absolute(key: &str, path: PathBuf) -> Result<PathBuf> {
    std::path::absolute(&path).map_err(|e| bad(key, format!("{}: {e}", path.display())))
}

/// A node finds itself in `peers` by name; its entry there must be where it listens, or
/// its peers would send its Raft traffic elsewhere while it sits in pre-candidate with
/// no word of why.
fn check_own_peer_entry(r: &Replication, listen_ip: IpAddr, advertise_ip: IpAddr, port: u16) -> Result<()> {
    let Some((name, own)) = r.peers.get(r.node_id as usize - 1) else { return Ok(()) };
    if own.port() != port {
        return Err(bad(
            "port",
            format!("{port}, but this node ({name}) is {own} in peers: give --port {} or correct peers", own.port()),
        ));
    }
    if !listen_ip.is_unspecified() && own.ip() != listen_ip && own.ip() != advertise_ip {
        return Err(bad(
            "peers",
            format!(
                "this node ({name}) is {own} in peers, but it listens on {listen_ip} (advertised as {advertise_ip})"
            ),
        ));
    }
    Ok(())
}

/// `max_connections`, `idle_timeout_ms` and `frame_timeout_ms`, each positive.
fn connection_limits(s: &BrokerSettings) -> Result<ConnectionLimits> {
    let d = ConnectionLimits::default();
    let max_connections = match s.max_connections {
        None => d.max_connections,
        Some(0) => return Err(bad("max_connections", "0 is not allowed: use a positive number")),
        Some(n) => n,
    };
    Ok(ConnectionLimits {
        max_connections,
        idle_timeout_ms: positive("idle_timeout_ms", s.idle_timeout_ms, d.idle_timeout_ms)?,
        frame_timeout_ms: positive("frame_timeout_ms", s.frame_timeout_ms, d.frame_timeout_ms)?,
        ..d
    })
}

fn positive(key: &str, value: Option<u64>, default: u64) -> Result<u64> {
    match value {
        None => Ok(default),
        Some(0) => Err(bad(key, "0 is not allowed: use a positive number")),
        Some(v) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_single_machine_setup() {
        let c = BrokerConfig::resolve(None, BrokerSettings::default()).unwrap();
        assert_eq!(c.data_dir, std::env::current_dir().unwrap().join("data"));
        assert_eq!(c.port, 10911);
        assert!(c.auto_create_topic);
        assert_eq!(c.namesrv_addrs, vec!["127.0.0.1:9876".to_string()]);
        assert_eq!(c.embedded_namesrv.unwrap().listen.port(), 9876);
        assert_eq!(c.shard_broker_name(3), "broker-a-s3");
        assert!(c.shard_dir(1).is_absolute() && c.shard_dir(1).ends_with("data/shard-1"));
    }

    #[test]
    fn flags_override_the_file() {
        let file: BrokerSettings = toml::from_str("port = 20000\nauto_create_topic = false\nshards = 3").unwrap();
        let flags = BrokerSettings { port: Some(30000), ..Default::default() };
        let c = BrokerConfig::resolve(Some(file), flags).unwrap();
        assert_eq!(c.port, 30000);
        assert_eq!(c.shards, 3);
        assert!(!c.auto_create_topic);
        assert_eq!(c.shard_listen(2).port(), 30002);
    }

    #[test]
    fn bad_values_name_their_key_and_what_is_allowed() {
        let err = |s: BrokerSettings| BrokerConfig::resolve(None, s).unwrap_err().to_string();
        let e = err(BrokerSettings { default_flush: Some("sometimes".into()), ..Default::default() });
        assert!(e.contains("default_flush") && e.contains("`sync` or `async`"), "{e}");
        let e = err(BrokerSettings { shards: Some(0), ..Default::default() });
        assert!(e.contains("shards"), "{e}");
        let e = err(BrokerSettings { flush_interval_ms: Some(0), ..Default::default() });
        assert!(e.contains("flush_interval_ms"), "{e}");
        let e = err(BrokerSettings { segment_size_bytes: Some(10), ..Default::default() });
        assert!(e.contains("segment_size_bytes"), "{e}");
        let e = err(BrokerSettings { embedded_namesrv: Some(false), ..Default::default() });
        assert!(e.contains("namesrv_addr"), "{e}");
    }

    #[test]
    fn a_replicated_node_takes_its_id_from_its_place_in_peers() {
        let flags = BrokerSettings {
            group: Some("broker-b".into()),
            node: Some("n2".into()),
            peers: Some("n1=127.0.0.1:20911, n2=127.0.0.1:21911,n3=127.0.0.1:22911".into()),
            port: Some(21911),
            ..Default::default()
        };
        let c = BrokerConfig::resolve(None, flags.clone()).unwrap();
        let r = c.replication.as_ref().unwrap();
        assert_eq!((r.node_id, r.voters()), (2, vec![1, 2, 3]));
        assert_eq!(c.shard_broker_name(1), "broker-b-s1");
        assert_eq!(r.peer_shard_addr(3, 2), Some("127.0.0.1:22913".parse().unwrap()));
        assert_eq!(r.peer_shard_addr(4, 0), None);
        assert_eq!((r.preferred_leader(0), r.preferred_leader(1), r.preferred_leader(3)), (1, 2, 1));
        let err = |s: BrokerSettings| BrokerConfig::resolve(None, s).unwrap_err().to_string();
        let e = err(BrokerSettings { node: Some("n9".into()), ..flags.clone() });
        assert!(e.contains("node") && e.contains("n9"), "{e}");
        let e = err(BrokerSettings { peers: Some("n1=127.0.0.1:1,n1=127.0.0.1:2".into()), ..flags.clone() });
        assert!(e.contains("twice"), "{e}");
        let e = err(BrokerSettings { peers: Some("n2=localhost".into()), ..flags.clone() });
        assert!(e.contains("peers"), "{e}");
        let e = err(BrokerSettings { group: None, ..flags });
        assert!(e.contains("group"), "{e}");
    }

    #[test]
    fn a_replicated_node_must_listen_where_peers_say_it_is() {
        let flags = BrokerSettings {
            group: Some("g".into()),
            node: Some("n2".into()),
            peers: Some("n1=127.0.0.1:20911,n2=127.0.0.1:21911,n3=127.0.0.1:22911".into()),
            listen_ip: Some("127.0.0.1".parse().unwrap()),
            ..Default::default()
        };
        let err = |s: BrokerSettings| BrokerConfig::resolve(None, s).unwrap_err().to_string();
        let e = err(BrokerSettings { port: Some(21000), ..flags.clone() });
        assert!(e.contains("port") && e.contains("n2") && e.contains("21911"), "{e}");
        let e =
            err(BrokerSettings { port: Some(21911), listen_ip: Some("127.0.0.2".parse().unwrap()), ..flags.clone() });
        assert!(e.contains("peers") && e.contains("127.0.0.2"), "{e}");
        assert!(BrokerConfig::resolve(None, BrokerSettings { port: Some(21911), ..flags.clone() }).is_ok());
        let any = BrokerSettings { port: Some(21911), listen_ip: Some("0.0.0.0".parse().unwrap()), ..flags };
        assert!(BrokerConfig::resolve(None, any).is_ok());
    }

    #[test]
    fn connection_limits_come_from_settings_and_refuse_zero() {
        let c = BrokerConfig::resolve(None, BrokerSettings::default()).unwrap();
        assert_eq!(c.connection_limits, ConnectionLimits::default());
        assert_eq!(c.embedded_namesrv.unwrap().connection_limits, ConnectionLimits::default());
        let file: BrokerSettings =
            toml::from_str("max_connections = 5\nidle_timeout_ms = 700\nframe_timeout_ms = 900").unwrap();
        let c = BrokerConfig::resolve(Some(file), BrokerSettings::default()).unwrap();
        let want =
            ConnectionLimits { max_connections: 5, idle_timeout_ms: 700, frame_timeout_ms: 900, ..Default::default() };
        assert_eq!((c.connection_limits, c.embedded_namesrv.unwrap().connection_limits), (want, want));
        for key in ["max_connections", "idle_timeout_ms", "frame_timeout_ms"] {
            let file: BrokerSettings = toml::from_str(&format!("{key} = 0")).unwrap();
            let e = BrokerConfig::resolve(Some(file), BrokerSettings::default()).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused_by_name() {
        let e = toml::from_str::<BrokerSettings>("flush_mode = \"sync\"").unwrap_err().to_string();
        assert!(e.contains("flush_mode"), "{e}");
        let e = toml::from_str::<BrokerSettings>("port = \"x\"").unwrap_err().to_string();
        assert!(e.contains("port"), "{e}");
    }
}
