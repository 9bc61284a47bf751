//! Consumer offsets of one shard (owner: helper; placeholder until it lands).

use std::rc::Rc;

use rockshard_net::RemotingCommand;
use rockshard_storage::Store;

use super::shard::Shard;
use crate::remoting::server::Connection;
use crate::Result;

pub struct ConsumerOffsets {}

impl ConsumerOffsets {
    pub async fn load(_store: &Store) -> Result<ConsumerOffsets> {
        Ok(ConsumerOffsets {})
    }

    pub async fn persist(&self, _store: &Store) -> Result<()> {
        Ok(())
    }

    /// Records `offset` as `group`'s committed offset of the queue.
    pub fn commit(&self, _group: &str, _topic: &str, _queue_id: i32, _offset: i64) {}
}

pub fn start(_shard: &Rc<Shard>) {}

pub async fn handle(_shard: &Rc<Shard>, _conn: &Rc<Connection>, req: RemotingCommand) -> Option<RemotingCommand> {
    Some(RemotingCommand::not_supported(&req))
}
