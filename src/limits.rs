//! Named limits of the broker and NameServer, each with the reason for its value.
