//! Sockets for the remoting protocol, on glommio: a server that feeds decoded commands
//! to a service, and a pipelined client.

pub mod client;
pub mod server;
