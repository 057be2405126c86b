//! The pool bulkhead: at most `max_inflight` requests in flight to a pool; up to `queue.max`
//! more wait (FIFO) for at most `queue.timeout`, then are shed. A slot is an RAII `Permit`
//! held in the request context and released when the context drops — on success, upstream
//! error, client disconnect or panic alike. A request rejected here never holds a slot.
//!
//! Cost: two atomic operations on the fast path (a free slot); a queued request parks on the
//! semaphore's waiter list and costs one timer.

use crate::metrics::PoolMetrics;
use crate::reason::Reason;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Bulkhead {
    slots: Arc<Semaphore>,
    max_inflight: usize,
    queue_max: usize,
    queue_timeout: Duration,
    queued: AtomicUsize,
    metrics: PoolMetrics,
}

/// A held slot of a pool. Dropping it frees the slot and updates the in-flight gauge.
#[must_use = "dropping the permit releases the pool slot at once"]
pub struct Permit {
    _slot: OwnedSemaphorePermit,
    inflight: prometheus::IntGauge,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inflight.dec();
    }
}

/// Decrements the queue count however the wait ends (slot, timeout, or client gone).
struct Queued<'a>(&'a Bulkhead);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.queued.dec();
    }
}

impl Bulkhead {
    pub fn new(
        max_inflight: usize,
        queue_max: usize,
        queue_timeout: Duration,
        metrics: PoolMetrics,
    ) -> Self {
        metrics.limit.set(max_inflight as i64);
        Bulkhead {
            slots: Arc::new(Semaphore::new(max_inflight)),
            max_inflight,
            queue_max,
            queue_timeout,
            queued: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Take a slot, waiting in the bounded queue if none is free.
    /// Errors: `Overloaded` when the queue is full, `QueueTimeout` after `queue.timeout`.
    pub async fn acquire(&self) -> Result<Permit, Reason> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(self.permit(slot));
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.queue_max {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Reason::Overloaded);
        }
        self.metrics.queued.inc();
        let _queued = Queued(self);
        match tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(self.permit(slot)),
            // The semaphore is never closed; treat it like a full queue if it were.
            Ok(Err(_)) => Err(Reason::Overloaded),
            Err(_) => Err(Reason::QueueTimeout),
        }
    }

    fn permit(&self, slot: OwnedSemaphorePermit) -> Permit {
        self.metrics.inflight.inc();
        Permit {
            _slot: slot,
            inflight: self.metrics.inflight.clone(),
        }
    }

    pub fn max_inflight(&self) -> usize {
        self.max_inflight
    }

    pub fn inflight(&self) -> usize {
        self.max_inflight - self.slots.available_permits()
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    pub fn queue_max(&self) -> usize {
        self.queue_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn bulkhead(max: usize, queue: usize) -> Bulkhead {
        let m = Metrics::new();
        Bulkhead::new(max, queue, Duration::from_millis(100), m.pool("p"))
    }

    #[tokio::test(start_paused = true)]
    async fn queue_full_is_overloaded_and_timeout_is_queue_timeout() {
        let b = Arc::new(bulkhead(1, 1));
        let held = b.acquire().await.unwrap();
        assert_eq!(b.inflight(), 1);
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire().await.map(|_| ()) });
        tokio::task::yield_now().await;
        assert_eq!(b.queued(), 1);
        assert_eq!(b.acquire().await.err(), Some(Reason::Overloaded));
        // Paused clock: the waiter times out after exactly queue.timeout.
        assert_eq!(waiter.await.unwrap(), Err(Reason::QueueTimeout));
        assert_eq!(b.queued(), 0);
        drop(held);
        assert_eq!(b.inflight(), 0);
        assert!(b.acquire().await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn released_slot_goes_to_waiter() {
        let b = Arc::new(bulkhead(1, 4));
        let held = b.acquire().await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire().await.map(drop) });
        tokio::task::yield_now().await;
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(b.inflight(), 0);
        assert_eq!(b.metrics.inflight.get(), 0);
        assert_eq!(b.metrics.queued.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_waiter_leaves_queue() {
        let b = Arc::new(bulkhead(1, 4));
        let _held = b.acquire().await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.acquire().await.map(|_| ()) });
        tokio::task::yield_now().await;
        assert_eq!(b.queued(), 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(b.queued(), 0);
    }
}
