//! [`Signal`]: a level-triggered flag many tasks can wait on: once set it stays set. The
//! shutdown of a shard or a NameServer, "every connection has closed", the load tool's
//! "stop producing".
//!
//! Waiters sit in slots: a [`SignalWait`] takes a slot at its first poll, refreshes its
//! waker there on later polls and gives the slot back when dropped. So a task that waits
//! in a loop (a sleep cut short by the signal, again and again) holds one slot, not one
//! per poll, and many waiters cost no scan: the earlier design pushed a waker per poll,
//! and the list grew until the signal was set.
//!
//! Thread: one executor (`Cell`/`RefCell`); borrows end within each call.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A flag many tasks wait on; once set it stays set.
#[derive(Default)]
pub struct Signal {
    set: Cell<bool>,
    waiters: RefCell<Waiters>,
}

/// Slots of waiting tasks, with the free ones listed for reuse.
#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Signal {
    pub fn new() -> Rc<Signal> {
        Rc::new(Signal::default())
    }

    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Sets the signal and wakes every waiter (once; setting it again does nothing).
    pub fn trigger(&self) {
        if self.set.replace(true) {
            return;
        }
        let wakers: Vec<Waker> = self.waiters.borrow_mut().slots.iter_mut().filter_map(Option::take).collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves once the signal is set (at once if it already is).
    pub fn wait(&self) -> SignalWait<'_> {
        SignalWait { signal: self, slot: None }
    }

    /// Sleeps `d`, cut short by the signal: true when the signal is what ended it. The
    /// loop of every periodic task that stops at shutdown.
    pub async fn sleep(&self, d: Duration) -> bool {
        let cut_short = async {
            self.wait().await;
            true
        };
        let slept = async {
            glommio::timer::sleep(d).await;
            false
        };
        // The signal first: one already set ends the sleep at once.
        futures_or(cut_short, slept).await
    }

    /// [`Signal::sleep`] until `at` (at once when `at` has passed).
    pub async fn sleep_until(&self, at: Instant) -> bool {
        let d = at.saturating_duration_since(Instant::now());
        if d.is_zero() {
            return self.is_set();
        }
        self.sleep(d).await
    }

    /// Runs `f` unless the signal is set first (then `None`, and `f` is dropped: for a
    /// request that removes it from its connection's pending table).
    pub async fn unless<T>(&self, f: impl Future<Output = T>) -> Option<T> {
        let stopped = async {
            self.wait().await;
            None
        };
        futures_or(stopped, async { Some(f.await) }).await
    }

    fn register(&self, slot: &mut Option<usize>, waker: &Waker) {
        let mut w = self.waiters.borrow_mut();
        match *slot {
            Some(i) => match &mut w.slots[i] {
                Some(old) if old.will_wake(waker) => {}
                entry => *entry = Some(waker.clone()),
            },
            None => {
                let i = match w.free.pop() {
                    Some(i) => {
                        w.slots[i] = Some(waker.clone());
                        i
                    }
                    None => {
                        w.slots.push(Some(waker.clone()));
                        w.slots.len() - 1
                    }
                };
                *slot = Some(i);
            }
        }
    }

    fn release(&self, slot: usize) {
        let mut w = self.waiters.borrow_mut();
        w.slots[slot] = None;
        w.free.push(slot);
    }
}

/// The future of [`Signal::wait`]; holds one waiter slot from its first poll until
/// it is dropped.
pub struct SignalWait<'a> {
    signal: &'a Signal,
    slot: Option<usize>,
}

impl Future for SignalWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.signal.is_set() {
            return Poll::Ready(());
        }
        this.signal.register(&mut this.slot, cx.waker());
        Poll::Pending
    }
}

impl Drop for SignalWait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot.take() {
            self.signal.release(i);
        }
    }
}

/// The first of two futures to finish (the first polled first), without a dependency
/// for one combinator.
async fn futures_or<T>(a: impl Future<Output = T>, b: impl Future<Output = T>) -> T {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(v);
        }
        b.as_mut().poll(cx)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_holds_one_slot_however_often_it_is_polled_and_frees_it() {
        let signal = Signal::default();
        let waker = futures_lite::future::block_on(std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())));
        let mut cx = Context::from_waker(&waker);
        {
            let mut wait = std::pin::pin!(signal.wait());
            for _ in 0..1_000 {
                assert!(wait.as_mut().poll(&mut cx).is_pending());
            }
            assert_eq!(signal.waiters.borrow().slots.len(), 1);
        }
        assert_eq!(signal.waiters.borrow().free, [0], "the slot is given back on drop");
        let mut again = std::pin::pin!(signal.wait());
        assert!(again.as_mut().poll(&mut cx).is_pending());
        assert_eq!(signal.waiters.borrow().slots.len(), 1, "and reused");
        signal.trigger();
        assert!(again.as_mut().poll(&mut cx).is_ready());
        assert!(signal.is_set());
    }

    #[test]
    fn sleeps_end_on_their_own_or_when_the_signal_is_set() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).make().expect("executor");
        ex.run(async {
            let signal = Signal::new();
            assert!(!signal.sleep(Duration::from_millis(1)).await, "a sleep that ends on its own");
            let setter = signal.clone();
            glommio::spawn_local(async move {
                glommio::timer::sleep(Duration::from_millis(10)).await;
                setter.trigger();
            })
            .detach();
            let started = Instant::now();
            assert!(signal.sleep(Duration::from_secs(30)).await, "cut short by the signal");
            assert!(started.elapsed() < Duration::from_secs(5));
            assert!(signal.sleep_until(Instant::now() + Duration::from_secs(30)).await);
            assert_eq!(signal.unless(std::future::pending::<()>()).await, None);
        });
    }

    #[test]
    fn a_set_signal_ends_waits_at_once() {
        let signal = Signal::default();
        signal.trigger();
        futures_lite::future::block_on(signal.wait());
        signal.trigger();
        assert!(signal.is_set());
    }
}
