//! Rockshard storage.
