//! The `rockshard` command: `broker` (with its embedded NameServer by default),
//! `namesrv` (standalone), `admin` (topics, routes, consumer progress over the remoting
//! protocol) and `store inspect` (recover a shard directory and print what it holds).
//!
//! Exit status: 0 after a clean stop, 1 when running failed, 2 for bad usage or
//! configuration (the message names the key at fault).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rockshard::config::{read_settings_file, BrokerConfig, BrokerSettings};
use rockshard::namesrv::NamesrvConfig;
use rockshard::remoting::server::ConnectionLimits;
use rockshard_storage::{Store, StoreConfig};
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
        #[command(flatten)]
        settings: BrokerSettings,
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
    /// Recover a store directory (as the broker does at start-up) and print its state.
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
        Command::Broker { config, settings } => broker(config, settings),
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
    let dir = match rockshard::config::absolute("--dir", dir) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("rockshard: {e}");
            return ExitCode::from(2);
        }
    };
    let mut config = StoreConfig::new(&dir);
    config.segment_size_bytes = segment_size;
    let executor = match glommio::LocalExecutorBuilder::default().make() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("rockshard: cannot start an io_uring executor: {e}");
            return ExitCode::FAILURE;
        }
    };
    executor.run(async move {
        let store = match Store::open(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("rockshard: cannot open the store in {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        };
        let r = store.recovery_report();
        println!(
            "recovery: scanned {} bytes from checkpoint {} to end {} ({} records replayed), stopped: {:?}",
            r.scanned_bytes, r.checkpoint, r.end, r.records_replayed, r.stop
        );
        let (min, flushed, written, _) = store.commitlog_positions();
        println!("commitlog: min {min} flushed {flushed} written {written}");
        for t in store.topics() {
            println!("topic {}: {} write / {} read queues, flush {}", t.name, t.write_queues, t.read_queues, t.flush);
        }
        let mut queues = store.queue_infos();
        queues.sort_by(|a, b| (&a.topic, a.queue_id).cmp(&(&b.topic, b.queue_id)));
        for q in queues {
            println!("queue {}:{} min {} max {}", q.topic, q.queue_id, q.min_offset, q.max_offset);
        }
        match store.close().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rockshard: closing the store failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
