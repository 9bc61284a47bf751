//! Delayed messages (owner: helper; placeholder until it lands).

use std::rc::Rc;

use rockshard_storage::Store;

use super::shard::Shard;
use crate::Result;

pub struct Scheduler {}

impl Scheduler {
    pub async fn load(_store: &Store) -> Result<Scheduler> {
        Ok(Scheduler {})
    }

    pub async fn persist(&self, _store: &Store) -> Result<()> {
        Ok(())
    }
}

pub fn start(_shard: &Rc<Shard>) {}
