//! Shared by the raft crate's integration tests: running a test body on a glommio
//! executor (the replica, its disk and its tasks need one).

/// Runs the future `make` builds on a fresh glommio executor and waits for it; a panic
/// inside fails the test.
pub fn run<G, F>(make: G)
where
    G: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default().spawn(make).expect("executor").join().expect("test panicked");
}
