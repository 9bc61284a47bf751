//! The NameServer.
