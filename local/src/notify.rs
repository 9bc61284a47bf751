//! [`Notify`]: wakes one waiting task, and remembers (once) a notification sent while
//! nobody waited, so a signal between "checked for work" and "went to sleep" is never
//! lost. The store's writer, flusher and preparer, the server's reader and writer and the
//! replica's driver each sleep on one.
//!
//! Thread: one executor (`Cell`/`RefCell`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes one waiting task. A notification sent while nobody waits is remembered (once),
/// so a signal between "checked for work" and "went to sleep" is never lost.
#[derive(Default)]
pub struct Notify {
    pending: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub fn notify(&self) {
        self.pending.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves at the next notification (or at once if one is pending).
    pub fn notified(&self) -> Notified<'_> {
        Notified { notify: self }
    }
}

pub struct Notified<'a> {
    notify: &'a Notify,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.pending.replace(false) {
            return Poll::Ready(());
        }
        *self.notify.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}
