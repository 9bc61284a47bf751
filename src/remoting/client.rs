//! Pipelined remoting client on glommio.
