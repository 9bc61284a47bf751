//! The `rockshard` command.
//!
//! Today it carries one working tool, `rockshard store inspect`, which opens a shard's
//! store directory (recovering it exactly as the broker will), and prints the recovery
//! report, the CommitLog positions and every queue's offsets. `broker`, `namesrv` and
//! `admin` are the commands of the broker issue; until it lands they say so and exit
//! with status 2 rather than pretend to run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rockshard_storage::{Store, StoreConfig};

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
    /// Run the broker (with its embedded NameServer). Not built yet.
    Broker,
    /// Run a standalone NameServer. Not built yet.
    Namesrv,
    /// Administer topics, routes and consumer groups. Not built yet.
    Admin,
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
    match Cli::parse().command {
        Command::Broker | Command::Namesrv | Command::Admin => {
            eprintln!(
                "rockshard: the broker, NameServer and admin commands are not built yet; \
                 the storage engine is (see README.md, Status)"
            );
            ExitCode::from(2)
        }
        Command::Store { command: StoreCommand::Inspect { dir, segment_size } } => inspect(dir, segment_size),
    }
}

fn inspect(dir: PathBuf, segment_size: u64) -> ExitCode {
    if !dir.is_dir() {
        eprintln!("rockshard: {} is not a directory", dir.display());
        return ExitCode::from(2);
    }
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
