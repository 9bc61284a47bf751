//! `rockshard admin`: topics, routes, cluster and consumer progress over the remoting
//! protocol (owner: helper; placeholder until it lands).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct AdminArgs {}

pub fn run(_args: AdminArgs) -> ExitCode {
    eprintln!("rockshard admin: not built yet");
    ExitCode::from(2)
}
