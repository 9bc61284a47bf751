//! The task that applies topic changes other shards of the process send (`control`
//! messages), one at a time in the order they came, and answers each sender how it went.
//!
//! Invariant: two changes of one topic from one shard apply in the order that shard sent
//! them; a change is answered only after it was applied and saved.
//!
//! Runs on the shard's executor until shutdown; calls operations only. Deliberately not
//! here: what applying a change means (`ops::topics`) and the channels (`ops::control`).

use std::rc::Rc;

use tracing::warn;

use crate::broker::ops::Shard;

/// Applies topic changes other shards send, until shutdown.
pub fn start(shard: &Rc<Shard>) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        loop {
            let msg = futures_lite::future::or(async { Some(shard.control().next().await) }, async {
                shard.shutdown().wait().await;
                None
            })
            .await;
            let Some(incoming) = msg else { break };
            // One at a time, in the order they came: two changes of one topic from one
            // shard apply in the order that shard sent them.
            let result = shard.apply_control(&incoming.msg).await;
            if let Err(e) = &result {
                warn!(shard = shard.id(), from = incoming.from, msg = ?incoming.msg, error = %e, "applying a topic change from another shard failed");
            }
            shard.control().answer(&incoming, result.map_err(|e| e.to_string())).await;
        }
    })
    .detach();
}
