//! The NameServer's key-value configuration: namespace → key → value, set by admin
//! tools (PUT_KV_CONFIG) and read by clients and brokers (GET_KV_CONFIG,
//! GET_KVLIST_BY_NAMESPACE, and REGISTER_BROKER's answer, which carries the
//! `ORDER_TOPIC_CONFIG` namespace).
//!
//! Invariants: no namespace is empty; the table holds at most [`KV_ENTRIES_MAX`] entries.
//!
//! Thread: the NameServer's executor, behind a `RefCell` in [`super::NameServer`]; pure
//! data, no I/O.
//!
//! Deliberately not here: persistence. A Java NameServer saves this table to
//! `kvConfig.json`; ours lives as long as the process, like the routes (which brokers
//! rebuild within one heartbeat). Nothing in a produce/consume path depends on it.

use std::collections::BTreeMap;

/// Entries the table may hold. Real deployments keep a handful (order-topic settings);
/// the bound keeps a misbehaving admin script from growing the NameServer without end.
pub const KV_ENTRIES_MAX: usize = 10_000;

/// The namespace brokers receive in REGISTER_BROKER's answer and clients consult for
/// order-topic settings (Java `NamesrvUtil.NAMESPACE_ORDER_TOPIC_CONFIG`).
pub const NAMESPACE_ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

#[derive(Debug, Default)]
pub struct KvTable {
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    entries: usize,
}

/// PUT_KV_CONFIG on a full table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvFull;

impl KvTable {
    pub fn get(&self, namespace: &str, key: &str) -> Option<&str> {
        self.namespaces.get(namespace)?.get(key).map(String::as_str)
    }

    /// Every entry of `namespace`, or `None` when it has none.
    pub fn namespace(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.namespaces.get(namespace)
    }

    /// Sets a value; replacing an existing one always succeeds, a new one only below
    /// [`KV_ENTRIES_MAX`].
    pub fn put(&mut self, namespace: &str, key: &str, value: &str) -> Result<(), KvFull> {
        let exists = self.get(namespace, key).is_some();
        if !exists && self.entries >= KV_ENTRIES_MAX {
            return Err(KvFull);
        }
        self.namespaces.entry(namespace.to_owned()).or_default().insert(key.to_owned(), value.to_owned());
        if !exists {
            self.entries += 1;
        }
        Ok(())
    }

    /// Removes a value; removing an absent one is not an error (Java's behaviour).
    pub fn delete(&mut self, namespace: &str, key: &str) {
        let Some(entries) = self.namespaces.get_mut(namespace) else { return };
        if entries.remove(key).is_some() {
            self.entries -= 1;
        }
        if entries.is_empty() {
            self.namespaces.remove(namespace);
        }
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete_and_the_bound() {
        let mut kv = KvTable::default();
        assert_eq!(kv.get(NAMESPACE_ORDER_TOPIC_CONFIG, "T"), None);
        kv.put(NAMESPACE_ORDER_TOPIC_CONFIG, "T", "broker-a:4").expect("room");
        kv.put(NAMESPACE_ORDER_TOPIC_CONFIG, "T", "broker-a:8").expect("replace");
        assert_eq!(kv.get(NAMESPACE_ORDER_TOPIC_CONFIG, "T"), Some("broker-a:8"));
        assert_eq!(kv.len(), 1);
        kv.delete(NAMESPACE_ORDER_TOPIC_CONFIG, "T");
        kv.delete(NAMESPACE_ORDER_TOPIC_CONFIG, "T");
        assert!(kv.is_empty());
        assert_eq!(kv.namespace(NAMESPACE_ORDER_TOPIC_CONFIG), None);

        for i in 0..KV_ENTRIES_MAX {
            kv.put("ns", &i.to_string(), "v").expect("room");
        }
        assert_eq!(kv.put("ns", "one more", "v"), Err(KvFull));
        assert_eq!(kv.put("ns", "0", "replaced"), Ok(()));
        kv.delete("ns", "1");
        assert_eq!(kv.put("ns", "one more", "v"), Ok(()));
        assert_eq!(kv.len(), KV_ENTRIES_MAX);
    }
}
