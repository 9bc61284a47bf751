//! `rockshard admin`'s command line: the subcommands, their flags and the values they
//! take, as clap reads them. Every field is `pub(super)`: the rest of the admin folder
//! reads them, nothing outside it does.
//!
//! Invariants: flags and their defaults are the CLI's public face (scripts and the
//! README use them); renaming one is a breaking change.
//!
//! Deliberately not here: doing anything with a command (`mod.rs` dispatches it to the
//! command files), and parsing times (`time.rs`: `--timestamp` stays text until a
//! command needs it, so clap's error for it would not be ours).

use clap::{Subcommand, ValueEnum};
use rockshard_net::code::perm;

/// How long to wait for each answer unless `--timeout-ms` says otherwise: above a
/// broker's sync-flush timeout (5 s), so a slow topic change still gets its answer.
const REQUEST_TIMEOUT_DEFAULT_MS: u64 = 8_000;

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// NameServer to ask for routes and clusters, `host:port`
    #[arg(long, global = true, default_value = "127.0.0.1:9876")]
    pub(super) namesrv: String,
    /// Print JSON instead of tables
    #[arg(long, global = true)]
    pub(super) json: bool,
    /// How long to wait for each answer, in milliseconds
    #[arg(long, global = true, default_value_t = REQUEST_TIMEOUT_DEFAULT_MS)]
    pub(super) timeout_ms: u64,
    #[command(subcommand)]
    pub(super) command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub(super) enum AdminCommand {
    /// Create, change, delete and inspect topics
    Topic {
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// The brokers the NameServer knows
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Consumer group progress and offsets
    Consumer {
        #[command(subcommand)]
        command: ConsumerCommand,
    },
    /// Look stored messages up
    Message {
        #[command(subcommand)]
        command: MessageCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum TopicCommand {
    /// Create a topic on every broker of a cluster (fails if it exists)
    Create(TopicCreateArgs),
    /// Change an existing topic; options not given keep their current value
    Update(TopicUpdateArgs),
    /// Delete a topic from its brokers and from the NameServer
    Delete {
        #[arg(long)]
        topic: String,
    },
    /// Every topic the NameServer knows, with queue counts and flush mode
    List {
        /// Also list the brokers' own topics (TBW102, SCHEDULE_TOPIC_XXXX,
        /// SELF_TEST_TOPIC, cluster and broker names), left out by default
        #[arg(long)]
        system: bool,
    },
    /// Which brokers serve a topic, and their queues
    Route {
        #[arg(long)]
        topic: String,
    },
    /// Min and max offset of every queue of a topic
    Status {
        #[arg(long)]
        topic: String,
    },
}

#[derive(Debug, clap::Args)]
pub(super) struct TopicCreateArgs {
    #[arg(long)]
    pub(super) topic: String,
    /// Queues per broker process, spread over its shards
    #[arg(long)]
    pub(super) queues: u32,
    #[command(flatten)]
    pub(super) options: TopicOptions,
}

#[derive(Debug, clap::Args)]
pub(super) struct TopicUpdateArgs {
    #[arg(long)]
    pub(super) topic: String,
    /// Queues per broker process, spread over its shards [default: unchanged]
    #[arg(long)]
    pub(super) queues: Option<u32>,
    #[command(flatten)]
    pub(super) options: TopicOptions,
}

#[derive(Debug, clap::Args)]
pub(super) struct TopicOptions {
    /// When a send is answered: `sync` after fdatasync, `async` once in the page cache
    /// [default: the broker's default for a new topic, unchanged for an update]
    #[arg(long, value_enum)]
    pub(super) flush: Option<FlushArg>,
    /// Permission: `rw`, `r` (no sends) or `w` (no consumption) [default: rw, or unchanged]
    #[arg(long, value_enum)]
    pub(super) perm: Option<PermArg>,
    /// Ordered topic (`--order` or `--order=false`) [default: false, or unchanged]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub(super) order: Option<bool>,
    /// Cluster to create the topic in [default: the only cluster]
    #[arg(long)]
    pub(super) cluster: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum FlushArg {
    Sync,
    Async,
}

impl FlushArg {
    pub(super) fn name(self) -> &'static str {
        match self {
            FlushArg::Sync => "sync",
            FlushArg::Async => "async",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum PermArg {
    Rw,
    R,
    W,
}

impl PermArg {
    pub(super) fn bits(self) -> i32 {
        match self {
            PermArg::Rw => perm::READ | perm::WRITE,
            PermArg::R => perm::READ,
            PermArg::W => perm::WRITE,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum ClusterCommand {
    /// Every broker of every cluster, with its address and store figures
    List,
    /// Replicated groups: each shard group's leader, term, commit index, and each
    /// follower's lag, as every registered node sees it
    Status,
}

#[derive(Debug, Subcommand)]
pub(super) enum ConsumerCommand {
    /// The clients of a consumer group connected to each broker, and its subscriptions
    Connections {
        #[arg(long)]
        group: String,
    },
    /// Per queue: the queue's end, the group's committed offset and the lag
    Progress {
        #[arg(long)]
        group: String,
        /// Only this topic [default: every topic the group committed offsets for]
        #[arg(long)]
        topic: Option<String>,
    },
    /// Move a group's committed offsets to the first message stored at or after a time
    ResetOffset {
        #[arg(long)]
        group: String,
        #[arg(long)]
        topic: String,
        /// Milliseconds since the epoch, or ISO 8601 (`2024-05-01T12:00:00Z`; no zone = UTC)
        #[arg(long)]
        timestamp: String,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum MessageCommand {
    /// Show a message by its offset message id (what a send returns as msgId)
    View {
        #[arg(long)]
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: AdminArgs,
    }

    fn parse(line: &str) -> AdminArgs {
        Cli::try_parse_from(std::iter::once("admin").chain(line.split_whitespace())).expect("parses").args
    }

    #[test]
    fn command_lines_parse() {
        let a = parse("topic create --topic T --queues 4 --flush sync --order");
        assert_eq!(a.namesrv, "127.0.0.1:9876");
        let AdminCommand::Topic { command: TopicCommand::Create(c) } = a.command else { panic!("not create") };
        assert_eq!(
            (c.topic.as_str(), c.queues, c.options.flush, c.options.order),
            ("T", 4, Some(FlushArg::Sync), Some(true))
        );
        let a = parse("topic update --topic T --perm r --order=false --namesrv 10.0.0.1:9876 --json");
        assert!(a.json);
        assert_eq!(a.namesrv, "10.0.0.1:9876");
        let AdminCommand::Topic { command: TopicCommand::Update(u) } = a.command else { panic!("not update") };
        assert_eq!((u.queues, u.options.perm, u.options.order), (None, Some(PermArg::R), Some(false)));
        let a = parse("consumer reset-offset --group G --topic T --timestamp 2024-05-01T00:00:00Z");
        assert!(matches!(a.command, AdminCommand::Consumer { command: ConsumerCommand::ResetOffset { .. } }));
        assert!(Cli::try_parse_from(["admin", "topic", "create", "--topic", "T"]).is_err(), "create needs --queues");
        assert!(Cli::try_parse_from(["admin", "topic", "create", "--topic", "T", "--queues", "1", "--flush", "often"])
            .is_err());
    }
}
