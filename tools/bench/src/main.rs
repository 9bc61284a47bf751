//! `rockshard-bench`: the load tool for RocketMQ-protocol brokers.
//!
//! It speaks the remoting protocol itself (through `rockshard-net` and Rockshard's
//! pipelined client), finds brokers through a NameServer like a real client, and so can
//! drive Rockshard or any other RocketMQ-compatible broker. Workloads: `produce`,
//! `consume`, `e2e`. Prints one line per second and a final report with HDR percentiles;
//! `--json FILE` writes the whole report. Every run ends by itself (duration, count, or
//! Ctrl-C, which still prints the report).
//!
//! Example: `rockshard-bench e2e --namesrv 127.0.0.1:9876 --size 1024 --batch 16 --duration 30s`
//!
//! Map: `args` (options, validation), `setup` (route, topic creation, start offsets),
//! `run` (executors and the coordinating main thread), `produce` / `consume` (the
//! workers), `worker` (what they share), `routes` (following the route through a
//! failover), `rate` (open-loop schedule, count budget), `stats` (counters and
//! histograms), `report` (lines, summary, JSON).
//!
//! Exit status: 0 when the run completed (its errors, if any, are in the report), 1 when
//! it could not run (no NameServer, no route, a broker refused topic creation), 2 for
//! invalid options.

mod args;
mod consume;
mod error;
mod limits;
mod produce;
mod rate;
mod report;
mod routes;
mod run;
mod setup;
mod stats;
mod worker;

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;

use crate::args::Args;
use crate::error::BenchError;
use crate::report::Report;

fn main() -> ExitCode {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let run_id = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
    );
    let cfg = match Args::parse().validate(cores, &run_id) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("rockshard-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match bench(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rockshard-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(cfg: args::Config) -> Result<(), BenchError> {
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second Ctrl-C while the report is being produced exits at once.
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 130, interrupted.clone())
            .and_then(|_| signal_hook::flag::register(signal, interrupted.clone()));
        if let Err(e) = registered {
            eprintln!("rockshard-bench: cannot handle signal {signal} ({e}); Ctrl-C will end the run without a report");
        }
    }

    let setup_started = Instant::now();
    let executor = glommio::LocalExecutorBuilder::default().make().map_err(|e| BenchError::Executor(e.to_string()))?;
    let plan = executor.run(setup::prepare(&cfg))?;
    drop(executor);
    let targets = &plan.route.masters;
    let brokers: Vec<String> = targets.iter().map(|t| format!("{} {}", t.broker_name, t.addr)).collect();
    eprintln!(
        "rockshard-bench: topic {} on {} master broker(s) [{}], {} write / {} read queues; setup took {:.2} s",
        cfg.topic,
        targets.len(),
        brokers.join(", "),
        targets.iter().map(|t| t.write_queues).sum::<i32>(),
        targets.iter().map(|t| t.read_queues).sum::<i32>(),
        setup_started.elapsed().as_secs_f64()
    );
    if cfg.workload.consumes() && cfg.consumers > plan.queues.len() {
        eprintln!(
            "rockshard-bench: {} consumers for {} queues: {} consumers stay idle",
            cfg.consumers,
            plan.queues.len(),
            cfg.consumers - plan.queues.len()
        );
    }
    let (outcome, clock) = run::run(cfg.clone(), plan, interrupted, |line| println!("{}", line.line()))?;
    let started_at_unix_ms = u64::try_from(clock.unix_ms(clock.base())).unwrap_or(0);
    let report = Report::build(&cfg, std::env::args().collect(), started_at_unix_ms, outcome);
    println!("{}", report.summary());
    if let Some(path) = &cfg.json {
        let json = serde_json::to_vec_pretty(&report)
            .map_err(|e| BenchError::Report { path: path.clone(), source: std::io::Error::other(e) })?;
        std::fs::write(path, json).map_err(|source| BenchError::Report { path: path.clone(), source })?;
        eprintln!("rockshard-bench: report written to {}", path.display());
    }
    Ok(())
}
