//! [`completion`]: a one-shot result slot. The store completes it when an append is
//! written (or durable); the appending task awaits it. If the awaiting side is dropped (a
//! client disconnected), completing it is harmless.
//!
//! Thread: one executor (`Rc`/`RefCell`).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

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
