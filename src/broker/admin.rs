//! Broker-side admin and query requests (owner: helper; placeholder until it lands).

use std::rc::Rc;

use rockshard_net::RemotingCommand;

use super::shard::Shard;
use crate::remoting::server::Connection;

pub async fn handle(_shard: &Rc<Shard>, _conn: &Rc<Connection>, req: RemotingCommand) -> Option<RemotingCommand> {
    Some(RemotingCommand::not_supported(&req))
}
