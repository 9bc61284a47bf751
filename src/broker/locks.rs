//! Queue locks for orderly consumption (owner: helper; placeholder until it lands).

use std::rc::Rc;

use rockshard_net::RemotingCommand;

use super::shard::Shard;
use crate::remoting::server::Connection;

pub struct QueueLocks {}

impl QueueLocks {
    pub fn new() -> QueueLocks {
        QueueLocks {}
    }
}

pub async fn handle(_shard: &Rc<Shard>, _conn: &Rc<Connection>, req: RemotingCommand) -> Option<RemotingCommand> {
    Some(RemotingCommand::not_supported(&req))
}
