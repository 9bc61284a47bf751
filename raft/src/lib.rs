//! Replication per shard (DLedger-style Raft). Empty until the replication issue: a single node must be solid first.
