//! Single-thread wake-ups for tasks of one shard: an [`Event`] that tasks wait on and others fire.
//!
//! Used for "the high watermark moved", "the flusher has work", "space freed". Lossless when used
//! as `let listener = event.listen(); if condition() { … } listener.await;` — the listener is
//! created before the condition is checked, so a notification in between is not missed.
//! Not `Send`: it never leaves its shard.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Event {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Event {
    pub fn new() -> Rc<Event> {
        Rc::new(Event::default())
    }

    /// A future that completes at the next [`Event::notify`] after this call.
    pub fn listen(&self) -> Listener<'_> {
        Listener {
            event: self,
            generation: self.generation.get(),
        }
    }

    /// Wakes every listener.
    pub fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }
}

pub struct Listener<'a> {
    event: &'a Event,
    generation: u64,
}

impl Future for Listener<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut wakers = self.event.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Waits for `listener` or `timeout`, whichever comes first; true if notified.
pub async fn listen_with_timeout(listener: Listener<'_>, timeout: std::time::Duration) -> bool {
    use futures::future::{select, Either};
    let sleep = glommio::timer::sleep(timeout);
    futures::pin_mut!(listener);
    futures::pin_mut!(sleep);
    matches!(select(listener, sleep).await, Either::Left(_))
}

/// Milliseconds since the Unix epoch (Kafka's timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A lock that is granted strictly in the order [`OrderedLock::lock`] was called: the ticket is
/// taken in that call, before the first poll. Used where the order of acquisition is the order
/// of data, like a partition's appends.
///
/// glommio's `Semaphore` is not such a lock: a released unit goes to the first task that polls,
/// and a newcomer polled before the woken waiter takes it (the waiter stays queued), so two
/// pipelined Produce requests could land in the log in the opposite order.
///
/// Tickets of lockers dropped before their turn are skipped; [`OrderedLock::close`] fails every
/// waiting and later locker.
#[derive(Default)]
pub struct OrderedLock {
    next_ticket: Cell<u64>,
    serving: Cell<u64>,
    closed: Cell<bool>,
    /// Tickets whose lockers were dropped before their turn came.
    abandoned: RefCell<std::collections::BTreeSet<u64>>,
    /// Wakers of lockers waiting for their turn, by ticket.
    waiting: RefCell<std::collections::BTreeMap<u64, Waker>>,
}

/// [`OrderedLock::close`] was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockClosed;

impl OrderedLock {
    pub fn new() -> OrderedLock {
        OrderedLock::default()
    }

    /// Takes a ticket now; the returned future completes when every earlier ticket is done.
    pub fn lock(&self) -> Locking<'_> {
        if self.closed.get() {
            // No ticket: nothing to skip later (lockers of a closed lock would pile up otherwise).
            return Locking {
                lock: self,
                ticket: None,
            };
        }
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket + 1);
        Locking {
            lock: self,
            ticket: Some(ticket),
        }
    }

    /// Fails every waiting and later locker; a held guard stays valid until dropped.
    pub fn close(&self) {
        self.closed.set(true);
        let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        for waker in waiting.into_values() {
            waker.wake();
        }
    }

    /// Ends the turn of `ticket` (== serving) and wakes the next live ticket.
    fn advance(&self) {
        let mut next = self.serving.get() + 1;
        {
            let mut abandoned = self.abandoned.borrow_mut();
            while abandoned.remove(&next) {
                next += 1;
            }
        }
        self.serving.set(next);
        let waker = self.waiting.borrow_mut().remove(&next);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A pending [`OrderedLock::lock`].
pub struct Locking<'a> {
    lock: &'a OrderedLock,
    /// None once the guard was handed out.
    ticket: Option<u64>,
}

impl<'a> Future for Locking<'a> {
    type Output = Result<OrderedGuard<'a>, LockClosed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let lock = self.lock;
        if lock.closed.get() {
            // Dropping self (ticket still set) gives the turn on, so later tickets finish too.
            return Poll::Ready(Err(LockClosed));
        }
        let Some(ticket) = self.ticket else {
            panic!("Locking polled after completion");
        };
        if lock.serving.get() == ticket {
            lock.waiting.borrow_mut().remove(&ticket);
            self.ticket = None;
            return Poll::Ready(Ok(OrderedGuard { lock }));
        }
        lock.waiting.borrow_mut().insert(ticket, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Locking<'_> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else {
            return;
        };
        self.lock.waiting.borrow_mut().remove(&ticket);
        if self.lock.serving.get() == ticket {
            self.lock.advance();
        } else {
            self.lock.abandoned.borrow_mut().insert(ticket);
        }
    }
}

/// Holds an [`OrderedLock`]; dropping it lets the next ticket in.
pub struct OrderedGuard<'a> {
    lock: &'a OrderedLock,
}

impl Drop for OrderedGuard<'_> {
    fn drop(&mut self) {
        self.lock.advance();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn the_lock_goes_in_call_order_even_to_a_woken_waiter_that_has_not_run_yet() {
        let lock = OrderedLock::new();
        let first = lock.lock().now_or_never().unwrap().unwrap();
        let mut second = Box::pin(lock.lock());
        assert!((&mut second).now_or_never().is_none());
        drop(first);
        // A later locker polled before the woken second one must not barge in (glommio's
        // Semaphore lets it).
        let mut third = Box::pin(lock.lock());
        assert!((&mut third).now_or_never().is_none());
        let second = second.now_or_never().unwrap().unwrap();
        assert!((&mut third).now_or_never().is_none());
        drop(second);
        assert!(third.now_or_never().unwrap().is_ok());
    }

    #[test]
    fn dropped_lockers_are_skipped_and_close_fails_the_waiters() {
        let lock = OrderedLock::new();
        let first = lock.lock().now_or_never().unwrap().unwrap();
        let second = lock.lock();
        let mut third = Box::pin(lock.lock());
        let mut fourth = Box::pin(lock.lock());
        assert!((&mut third).now_or_never().is_none());
        drop(second);
        drop(first);
        let third = third.now_or_never().unwrap().unwrap();
        assert!((&mut fourth).now_or_never().is_none());
        lock.close();
        assert_eq!(fourth.now_or_never().unwrap().err(), Some(LockClosed));
        drop(third);
        assert_eq!(lock.lock().now_or_never().unwrap().err(), Some(LockClosed));
        // Refused lockers leave nothing behind.
        assert!(lock.abandoned.borrow().len() <= 1);
        for _ in 0..100 {
            assert!(lock.lock().now_or_never().unwrap().is_err());
        }
        assert!(lock.abandoned.borrow().len() <= 1);
    }

    #[test]
    fn a_locker_dropped_on_its_turn_passes_the_turn_on() {
        let lock = OrderedLock::new();
        let first = lock.lock().now_or_never().unwrap().unwrap();
        let mut second = Box::pin(lock.lock());
        let mut third = Box::pin(lock.lock());
        assert!((&mut second).now_or_never().is_none());
        assert!((&mut third).now_or_never().is_none());
        drop(first);
        drop(second);
        assert!(third.now_or_never().unwrap().is_ok());
    }
}
