//! Broker and NameServer settings: defaults, a TOML file, then flags.
