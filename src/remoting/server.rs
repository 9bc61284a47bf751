//! Remoting server on glommio.
