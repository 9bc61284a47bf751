//! Sockets for the remoting protocol, on glommio: a server that feeds decoded commands
//! to a service, a pipelined client, and the rate-limited log of rejected requests.

pub mod client;
pub mod rejections;
pub mod server;
