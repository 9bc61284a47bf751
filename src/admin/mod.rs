//! `rockshard admin`: topics, routes, clusters, consumer progress and message lookup,
//! over the remoting protocol, against any RocketMQ-speaking NameServer and brokers.
//!
//! How it finds things: routes and the cluster list come from the NameServer
//! (`--namesrv`); everything else is asked of the brokers those name. A Rockshard
//! process shows up as one broker per shard (`<name>-s<i>`), so per-queue questions
//! (status, consumer progress, offset resets) go to every shard in the topic's route,
//! while topic creation and deletion go to one shard per process, which applies the
//! change to all its shards. Brokers without the `-s<i>` suffix (a Java broker) are
//! each their own process.
//!
//! Output: aligned tables for people, `--json` for machines. Errors are one line on
//! stderr naming what failed and who said so; the exit status is 2 for a mistake in the
//! command (bad value, unknown topic or group), 1 for anything else.
//!
//! Map: `args` (the command line), `client` (connections, requests, route lookups),
//! one file per command group (`topics`, `cluster`, `consumers`, `messages`), `render`
//! (tables and values for people) and `time` (ISO 8601 and the calendar). The tool
//! depends on `net` (headers, bodies, codes) and the remoting client only: it knows the
//! broker by its protocol, never by its code.
//!
//! Threading: one glommio executor on the calling thread; requests go out one at a time
//! (admin traffic is small). Every wait is bounded by `--timeout-ms`.
//!
//! Deliberately not here: looking messages up by key (the broker keeps no key index),
//! and retrying failed requests (an admin command reports what happened and stops).

mod args;
mod client;
mod cluster;
mod consumers;
mod messages;
mod render;
mod time;
mod topics;

use std::process::ExitCode;

use serde_json::Value;

use crate::{Error, Result};
pub use args::AdminArgs;
use args::{AdminCommand, ClusterCommand, ConsumerCommand, MessageCommand, TopicCommand};
use client::Admin;
use time::parse_time;

/// Runs one admin command; prints its result; the exit status says how it went.
pub fn run(args: AdminArgs) -> ExitCode {
    let executor = match glommio::LocalExecutorBuilder::default().make() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("rockshard admin: cannot start an io_uring executor: {e}");
            return ExitCode::FAILURE;
        }
    };
    executor.run(async move {
        let admin = Admin::new(&args);
        let result = admin.execute(&args.command).await;
        admin.close().await;
        match result {
            Ok(report) => {
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&report.json).unwrap_or_else(|e| e.to_string()));
                } else {
                    print!("{}", report.text);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rockshard admin: {e}");
                match e {
                    Error::Usage(_) => ExitCode::from(2),
                    _ => ExitCode::FAILURE,
                }
            }
        }
    })
}

/// What a command found: text for people, JSON for machines.
struct Report {
    text: String,
    json: Value,
}

impl Admin {
    async fn execute(&self, command: &AdminCommand) -> Result<Report> {
        match command {
            AdminCommand::Topic { command } => match command {
                TopicCommand::Create(a) => self.topic_create(&a.topic, Some(a.queues), &a.options, true).await,
                TopicCommand::Update(a) => self.topic_create(&a.topic, a.queues, &a.options, false).await,
                TopicCommand::Delete { topic } => self.topic_delete(topic).await,
                TopicCommand::List { system } => self.topic_list(*system).await,
                TopicCommand::Route { topic } => self.topic_route(topic).await,
                TopicCommand::Status { topic } => self.topic_status(topic).await,
            },
            AdminCommand::Cluster { command: ClusterCommand::List } => self.cluster_list().await,
            AdminCommand::Cluster { command: ClusterCommand::Status } => self.cluster_status().await,
            AdminCommand::Consumer { command } => match command {
                ConsumerCommand::Connections { group } => self.consumer_connections(group).await,
                ConsumerCommand::Progress { group, topic } => self.consumer_progress(group, topic.as_deref()).await,
                ConsumerCommand::ResetOffset { group, topic, timestamp } => {
                    let ms = parse_time(timestamp).map_err(Error::Usage)?;
                    self.reset_offset(group, topic, ms).await
                }
            },
            AdminCommand::Message { command: MessageCommand::View { id } } => self.message_view(id).await,
        }
    }
}
