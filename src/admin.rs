//! `rockshard admin`: topics, routes, cluster and consumer progress over the remoting
//! protocol.
