//! Single-threaded wake-up primitives for the tasks of one shard.
//!
//! Everything here lives on one glommio executor: `Rc`/`Cell`, no atomics. GLOMMIO-NOTES
//! records that a task spinning on `yield_now` starves the reactor, so the store's tasks
//! always sleep on one of these instead.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
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

/// A one-shot result slot: the store completes it, the appending task awaits it. If the
/// awaiting side is dropped (a client disconnected), completing it is harmless.
pub struct Completion<T> {
    slot: Rc<Slot<T>>,
}

struct Slot<T> {
    value: RefCell<Option<T>>,
    waker: RefCell<Option<Waker>>,
}

/// The store's side of a [`Completion`].
pub struct Completer<T> {
    slot: Rc<Slot<T>>,
}

pub fn completion<T>() -> (Completer<T>, Completion<T>) {
    let slot = Rc::new(Slot { value: RefCell::new(None), waker: RefCell::new(None) });
    (Completer { slot: slot.clone() }, Completion { slot })
}

impl<T> Completer<T> {
    pub fn complete(self, value: T) {
        *self.slot.value.borrow_mut() = Some(value);
        if let Some(w) = self.slot.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

impl<T> Future for Completion<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if let Some(v) = self.slot.value.borrow_mut().take() {
            return Poll::Ready(v);
        }
        *self.slot.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}
