//! Request handlers (being moved here).

pub mod admin;
pub mod pull;
pub mod send;
pub mod sendback;
