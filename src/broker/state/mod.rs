//! The bottom layer of the broker: a shard's state as plain tables, and the pure rules
//! over it.
//!
//! Tables: consumer and producer groups (`groups`), consumer offsets (`offsets`), queue
//! locks (`locks`), long-polling waiters (`pulls`), delayed-delivery progress (`delay`).
//! Rules: tag filters (`filter`), topic names, system topics and queue shares
//! (`topics`), retries, dead letters and transaction halves (`sendback`).
//!
//! Invariants, which `broker::tests` checks on the source: nothing here imports the
//! layers above (`ops`, `handlers`, `tasks`), knows a `Shard`, a connection, the store
//! or a task, reads a clock (every method that needs the time takes it), or awaits:
//! every method is synchronous. The shard holds each table in a [`StateCell`], which
//! lends it only to synchronous closures, so no borrow of shard state can be held across
//! an `.await` — the compiler refuses one.
//!
//! Runs on the owning shard's executor, inside the operations (`ops`) that own each
//! table; tests run the tables alone.
//!
//! Deliberately not here: reading or writing files (the operations save what these
//! tables give them), and anything a request or a peer decides.

pub mod delay;
pub mod delay_rules;
pub mod filter;
pub mod groups;
pub mod locks;
pub mod offsets;
pub mod pulls;
pub mod sendback;
pub mod topics;

use std::cell::RefCell;

/// A piece of shard state, lent only to synchronous closures: [`StateCell::read`] and
/// [`StateCell::write`] take an `FnOnce`, and a closure that is not `async` cannot
/// `.await`, so a borrow of the state never lives across a suspension point (where
/// another task of the shard could borrow it again and panic, or see it half changed).
/// What the closure returns cannot borrow from the state either.
#[derive(Debug, Default)]
pub struct StateCell<T>(RefCell<T>);

impl<T> StateCell<T> {
    pub fn new(value: T) -> StateCell<T> {
        StateCell(RefCell::new(value))
    }

    /// Runs `f` with the state; returns what `f` returns.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.0.borrow())
    }

    /// Runs `f` with the state to change; returns what `f` returns.
    pub fn write<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_cell_lends_its_value_to_closures_only() {
        let cell = StateCell::new(vec![1, 2]);
        cell.write(|v| v.push(3));
        assert_eq!(cell.read(|v| v.len()), 3);
        assert_eq!(cell.read(|v| v.iter().sum::<i32>()), 6);
    }
}
