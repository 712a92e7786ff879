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
