//! Consumer and producer groups of one shard (owner: helper; placeholder until it lands).

use std::rc::Rc;

use rockshard_net::body::SubscriptionData;
use rockshard_net::RemotingCommand;

use super::shard::Shard;
use crate::config::BrokerConfig;
use crate::remoting::server::Connection;

pub struct ConsumerGroups {}

impl ConsumerGroups {
    pub fn new(_config: &BrokerConfig) -> ConsumerGroups {
        ConsumerGroups {}
    }

    /// The subscription `group` registered for `topic` by heartbeat, if any.
    pub fn subscription(&self, _group: &str, _topic: &str) -> Option<SubscriptionData> {
        None
    }

    pub fn connection_closed(&self, _conn: &Connection) {}
}

pub fn start(_shard: &Rc<Shard>) {}

pub async fn handle(_shard: &Rc<Shard>, _conn: &Rc<Connection>, req: RemotingCommand) -> Option<RemotingCommand> {
    Some(RemotingCommand::not_supported(&req))
}
