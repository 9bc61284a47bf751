//! The `rockshard` command: `broker` (with its embedded NameServer by default),
//! `namesrv` (standalone), `admin` (topics, routes, consumer progress over the remoting
//! protocol) and `store inspect` (print what a shard directory holds, as the broker would
//! recover it, reading only: it never repairs, and refuses a directory a broker owns).
//!
//! Exit status: 0 after a clean stop, 1 when running failed, 2 for bad usage or
//! configuration (the message names the key at fault).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rockshard::config::{read_settings_file, BrokerConfig, BrokerSettings};
use rockshard::dir_lock;
use rockshard::namesrv::NamesrvConfig;
use rockshard::remoting::server::ConnectionLimits;
use rockshard_storage::{GlommioDisk, StoreConfig};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "rockshard",
    version,
    about = "A thread-per-core broker that speaks Apache RocketMQ's remoting protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker: one shard per core, embedded NameServer on 127.0.0.1:9876, data in ./data.
    Broker {
        /// A TOML file of settings (keys as the flags below, with `_` for `-`); flags win.
        #[arg(long)]
        config: Option<PathBuf>,
        // Boxed: the settings are dozens of options, and the other commands would
        // otherwise each carry their size.
        #[command(flatten)]
        settings: Box<BrokerSettings>,
    },
    /// Run a standalone NameServer.
    Namesrv {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9876")]
        listen: std::net::SocketAddr,
        /// How often to look for silent brokers, ms.
        #[arg(long, default_value_t = rockshard::limits::NAMESRV_SCAN_INTERVAL_DEFAULT_MS)]
        scan_interval_ms: u64,
        /// Drop a broker silent this long, ms (unless it registered its own timeout).
        #[arg(long, default_value_t = rockshard::limits::NAMESRV_BROKER_EXPIRY_DEFAULT_MS)]
        broker_expiry_ms: u64,
        /// Connections kept open at once; more are closed when accepted.
        #[arg(long, default_value_t = rockshard::limits::CONNECTIONS_PER_LISTENER_DEFAULT_MAX)]
        max_connections: usize,
        /// Close a connection that sends nothing for this long, ms.
        #[arg(long, default_value_t = rockshard::limits::CONNECTION_IDLE_TIMEOUT_DEFAULT_MS)]
        idle_timeout_ms: u64,
        /// Close a connection whose frame has not fully arrived this long after its first bytes, ms.
        #[arg(long, default_value_t = rockshard::limits::FRAME_TIMEOUT_DEFAULT_MS)]
        frame_timeout_ms: u64,
    },
    /// Administer topics, routes and consumer groups over the remoting protocol.
    Admin(rockshard::admin::AdminArgs),
    /// Work with a shard's store directly.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Print what a shard directory holds, as the broker would recover it; reads only, never repairs.
    ///
    /// Opens every file read-only and changes nothing, so it also works on a read-only
    /// mount: it reads the checkpoint, scans the CommitLog from there to find its end (as
    /// the broker's recovery does at start-up), reads the ConsumeQueues and the topic
    /// table, and prints the CommitLog bounds, the topics and each queue's min and max
    /// offset. A torn or damaged tail is reported, not cut: the broker cuts it at its
    /// next start.
    ///
    /// Refuses (exit status 1, naming the broker's pid) while a broker runs on the
    /// directory, i.e. holds the `lock` file in it or in its parent data directory: a
    /// store being written has no consistent state to read from outside. While inspect
    /// reads, a broker starting on the directory is refused in turn.
    Inspect {
        /// The shard's data directory (holds commitlog/, consumequeue/, checkpoint).
        #[arg(long)]
        dir: PathBuf,
        /// The segment size the store was written with.
        #[arg(long, default_value_t = rockshard_storage::limits::SEGMENT_SIZE_DEFAULT_BYTES)]
        segment_size: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Broker { config, settings } => broker(config, *settings),
        Command::Namesrv {
            listen,
            scan_interval_ms,
            broker_expiry_ms,
            max_connections,
            idle_timeout_ms,
            frame_timeout_ms,
        } => namesrv(NamesrvConfig {
            listen,
            scan_interval_ms,
            broker_expiry_ms,
            connection_limits: ConnectionLimits {
                max_connections,
                idle_timeout_ms,
                frame_timeout_ms,
                ..ConnectionLimits::default()
            },
        }),
        Command::Admin(args) => rockshard::admin::run(args),
        Command::Store { command: StoreCommand::Inspect { dir, segment_size } } => inspect(dir, segment_size),
    }
}

fn broker(config_file: Option<PathBuf>, flags: BrokerSettings) -> ExitCode {
    let file = match config_file.as_deref().map(read_settings_file).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("rockshard: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match BrokerConfig::resolve(file, flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rockshard: {e}");
            return ExitCode::from(2);
        }
    };
    match rockshard::broker::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rockshard: {e}");
            ExitCode::FAILURE
        }
    }
}

fn namesrv(config: NamesrvConfig) -> ExitCode {
    if let Err(e) = config.validate() {
        eprintln!("rockshard: {e}");
        return ExitCode::from(2);
    }
    match rockshard::process::run_namesrv(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rockshard: {e}");
            ExitCode::FAILURE
        }
    }
}

fn inspect(dir: PathBuf, segment_size: u64) -> ExitCode {
    if !dir.is_dir() {
        eprintln!("rockshard: {} is not a directory", dir.display());
        return ExitCode::from(2);
    }
    // Symlinks and `..` resolved, so that the parent checked for the broker's lock is
    // the real one.
    let dir = match std::fs::canonicalize(&dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("rockshard: --dir {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    // Held until the store has been read: no broker can start on the directory meanwhile.
    let _reading = match dir_lock::lock_for_reading(&dir) {
        Ok(locks) => locks,
        Err(rockshard::Error::DirLocked { dir: locked, lock_file, holder }) => {
            eprintln!(
                "rockshard: {} is in use: data directory {} is locked by {holder} (lock file {}); \
                 store inspect reads a store only while no broker runs on it",
                dir.display(),
                locked.display(),
                lock_file.display()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("rockshard: cannot tell whether a broker runs on {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let mut config = StoreConfig::new(&dir);
    config.segment_size_bytes = segment_size;
    // The broker's rule, so the tag codes recovery rebuilds are the ones it would.
    config.tag_code_rule = rockshard::broker::state::delay_rules::delay_tag_code;
    let executor = match glommio::LocalExecutorBuilder::default().make() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("rockshard: cannot start an io_uring executor: {e}");
            return ExitCode::FAILURE;
        }
    };
    executor.run(async move {
        let found = match rockshard_storage::inspect(&GlommioDisk, &config).await {
            Ok(found) => found,
            Err(e) => {
                eprintln!("rockshard: cannot read the store in {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        };
        let r = &found.report;
        println!(
            "recovery: scanned {} bytes from checkpoint {} to end {} ({} records replayed), stopped: {:?}",
            r.scanned_bytes, r.checkpoint, r.end, r.records_replayed, r.stop
        );
        match found.checkpoint {
            Some(c) => println!("checkpoint: {} (sequence {})", c.commitlog, c.sequence),
            None => println!("checkpoint: none"),
        }
        println!("commitlog: min {} end {} in {} segments", found.min, found.end, found.segments.len());
        for t in &found.topics {
            println!("topic {}: {} write / {} read queues, flush {}", t.name, t.write_queues, t.read_queues, t.flush);
        }
        for q in &found.queues {
            println!("queue {}:{} min {} max {}", q.topic, q.queue_id, q.min_offset, q.max_offset);
        }
        if dir.join("raft").is_dir() {
            // The Raft log decides which records are committed; inspect does not read it.
            println!("raft: a replicated node; records past the Raft commit index are counted too");
        }
        ExitCode::SUCCESS
    })
}
