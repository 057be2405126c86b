//! The pool bulkhead: admission step 5. The pool has a limit in cost units (`max_inflight`,
//! or below it the adaptive limit of `protection::adaptive`); a request occupies its route's
//! `cost` units while in flight. When the pool is at its limit, requests wait in a bounded
//! priority queue (`queue.max` waiters, each at most `queue.timeout`) and freed units go to
//! the highest priority first.
//!
//! An adaptive pool has a second limit, on requests in flight whatever their cost (see
//! `protection::adaptive`): a request needs room under both, and the last eighth of the
//! request limit is for `normal` priority and above.
//!
//! Who is turned away first, as pressure rises:
//! - **Queue full**: a newcomer evicts the newest waiter of a *lower* priority (answered
//!   `overloaded`); if there is none, the newcomer is shed. So critical traffic is never shed
//!   while lower priorities hold queue places they can give up.
//! - **Cutoff**: when the queue has stayed over 3/4 full for 250 ms, the lowest priority still
//!   queued is cut off (new requests of it shed at once, its waiters shed now), one level per
//!   250 ms, never
//!   `critical`. It comes back one level per second once the queue is under 1/4 full: the
//!   hysteresis keeps it from flapping.
//! - **LIFO under overload**: within a priority, waiters are served oldest first, unless the
//!   oldest has already waited half the timeout: then the newest goes first, because it still
//!   has a client that is likely to be there when the answer comes (CoDel's insight, and
//!   Facebook's adaptive LIFO).
//!
//! A held slot is an RAII `Permit`; dropping it (success, upstream error, client gone,
//! panic) frees the units and hands them to waiters. A waiting request whose client goes
//! away leaves the queue (its future is dropped; the `Waiting` guard cleans up).
//!
//! Cost: one short mutex section to take a free slot and one to free it.

use crate::config::Priority;
use crate::metrics::PoolMetrics;
use crate::reason::Reason;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

const LEVELS: usize = 5;
const CUT_AFTER: Duration = Duration::from_millis(250);
const RESTORE_AFTER: Duration = Duration::from_secs(1);

pub struct Bulkhead {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    max_inflight: u32,
    queue_max: usize,
    queue_timeout: Duration,
    /// Mirrors of the state for lock-free reads (status, pressure).
    limit: AtomicU32,
    inflight: AtomicU32,
    requests: AtomicU32,
    rlimit: AtomicU32,
    queued: AtomicUsize,
    metrics: PoolMetrics,
}

struct Waiter {
    id: u64,
    cost: u32,
    since: Instant,
    /// Sent the units actually granted (the cost, clamped to the limit at grant time).
    grant: oneshot::Sender<u32>,
}

struct State {
    limit: u32,
    inflight: u32,
    /// Requests in flight, whatever their cost, and the adaptive limit on them
    /// (`u32::MAX`: none).
    requests: u32,
    rlimit: u32,
    queues: [VecDeque<Waiter>; LEVELS],
    queued: usize,
    /// Requests of a priority below this are shed without queueing.
    cutoff: Priority,
    cutoff_changed: Instant,
    /// Since when the queue has been over 3/4 full (the cutoff needs it to stay so).
    over_since: Option<Instant>,
    next_id: u64,
}

/// A held slot of a pool. Dropping it frees its units and hands them on.
#[must_use = "dropping the permit releases the pool slot at once"]
pub struct Permit {
    inner: Arc<Inner>,
    cost: u32,
}

impl Permit {
    /// The units this permit holds.
    pub fn cost(&self) -> u32 {
        self.cost
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.release(self.cost);
    }
}

impl Bulkhead {
    pub fn new(
        max_inflight: usize,
        queue_max: usize,
        queue_timeout: Duration,
        metrics: PoolMetrics,
    ) -> Self {
        let max = max_inflight.min(u32::MAX as usize) as u32;
        metrics.limit.set(i64::from(max));
        Bulkhead {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    limit: max,
                    inflight: 0,
                    requests: 0,
                    rlimit: u32::MAX,
                    queues: Default::default(),
                    queued: 0,
                    cutoff: Priority::Sheddable,
                    cutoff_changed: Instant::now(),
                    over_since: None,
                    next_id: 0,
                }),
                max_inflight: max,
                queue_max,
                queue_timeout,
                limit: AtomicU32::new(max),
                inflight: AtomicU32::new(0),
                requests: AtomicU32::new(0),
                rlimit: AtomicU32::new(u32::MAX),
                queued: AtomicUsize::new(0),
                metrics,
            }),
        }
    }

    /// Take `cost` units for a request of `priority`, waiting in the queue if need be.
    /// Errors: `Overloaded` (shed: queue full, evicted, or below the cutoff) or
    /// `QueueTimeout` (waited `queue.timeout`).
    pub async fn acquire(&self, cost: u32, priority: Priority) -> Result<Permit, Reason> {
        let inner = &self.inner;
        let (rx, id) = {
            let mut s = inner.lock();
            // A cost above the limit could never run: it takes the whole pool instead.
            let cost = cost.clamp(1, s.limit.max(1));
            let p = priority as usize;
            let ahead = s.queues[p..].iter().any(|q| !q.is_empty());
            if !ahead && s.fits(cost, priority) {
                s.inflight += cost;
                s.requests += 1;
                inner.mirror(&s);
                return Ok(self.permit(cost));
            }
            if priority < s.cutoff {
                return Err(Reason::Overloaded);
            }
            if s.queued >= inner.queue_max {
                // Make room by shedding the newest waiter of the lowest lower priority.
                let Some(victim) = (0..p).find(|&q| !s.queues[q].is_empty()) else {
                    return Err(Reason::Overloaded);
                };
                s.queues[victim].pop_back(); // dropping its sender tells it: overloaded
                s.queued -= 1;
            }
            let (tx, rx) = oneshot::channel();
            let id = s.next_id;
            s.next_id += 1;
            s.queues[p].push_back(Waiter {
                id,
                cost,
                since: Instant::now(),
                grant: tx,
            });
            s.queued += 1;
            inner.adjust_cutoff(&mut s);
            inner.mirror(&s);
            (rx, id)
        };
        let mut waiting = Waiting {
            inner,
            id,
            priority,
            rx: Some(rx),
        };
        let rx = waiting.rx.as_mut().expect("set above");
        let outcome = match tokio::time::timeout(inner.queue_timeout, rx).await {
            Ok(Ok(units)) => Ok(units),
            Ok(Err(_)) => Err(Reason::Overloaded), // evicted or cut off
            Err(_) => {
                // Timed out, unless a grant raced in: decide under the lock.
                let mut s = inner.lock();
                if s.remove(priority, id) {
                    // Its leaving may let the waiters behind it fit.
                    inner.grant(&mut s);
                    inner.mirror(&s);
                    Err(Reason::QueueTimeout)
                } else if let Some(units) = waiting.rx.as_mut().and_then(|rx| rx.try_recv().ok()) {
                    Ok(units) // granted just now: the units are ours
                } else {
                    Err(Reason::Overloaded)
                }
            }
        };
        waiting.rx = None; // settled: nothing for the guard to undo
        outcome.map(|units| self.permit(units))
    }

    fn permit(&self, cost: u32) -> Permit {
        Permit {
            inner: self.inner.clone(),
            cost,
        }
    }

    /// Set the pool's limit (the adaptive controller), within `[1, max_inflight]`.
    pub fn set_limit(&self, limit: u32) {
        let limit = limit.clamp(1, self.inner.max_inflight);
        let mut s = self.inner.lock();
        if s.limit != limit {
            s.limit = limit;
            self.inner.metrics.limit.set(i64::from(limit));
            self.inner.grant(&mut s);
            self.inner.mirror(&s);
        }
    }

    /// Set the adaptive limit on requests in flight (whatever their cost), at least 1.
    pub fn set_request_limit(&self, limit: u32) {
        let mut s = self.inner.lock();
        if s.rlimit != limit.max(1) {
            s.rlimit = limit.max(1);
            self.inner.rlimit.store(s.rlimit, Ordering::Relaxed);
            if let Some(g) = &self.inner.metrics.request_limit {
                g.set(i64::from(s.rlimit));
            }
            self.inner.grant(&mut s);
            self.inner.mirror(&s);
        }
    }

    /// Requests in flight.
    pub fn requests(&self) -> u32 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// The adaptive limit on requests in flight, if the pool has one.
    pub fn request_limit(&self) -> Option<u32> {
        Some(self.inner.rlimit.load(Ordering::Relaxed)).filter(|&l| l != u32::MAX)
    }

    pub fn max_inflight(&self) -> usize {
        self.inner.max_inflight as usize
    }

    pub fn limit(&self) -> u32 {
        self.inner.limit.load(Ordering::Relaxed)
    }

    /// Units in flight.
    pub fn inflight(&self) -> usize {
        self.inner.inflight.load(Ordering::Relaxed) as usize
    }

    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    pub fn queue_max(&self) -> usize {
        self.inner.queue_max
    }

    /// The lowest priority not shed at once.
    pub fn cutoff(&self) -> Priority {
        self.inner.lock().cutoff
    }

    /// Demand over capacity: (units in flight + waiters) / limit, or the same in requests
    /// against the request limit when that is the higher (it is what holds traffic back once
    /// costly requests are shed). 1.0 is a full pool with an empty queue.
    pub fn pressure(&self) -> f64 {
        let queued = self.queued() as f64;
        let units = (self.inflight() as f64 + queued) / f64::from(self.limit().max(1));
        match self.request_limit() {
            Some(r) => units.max((f64::from(self.requests()) + queued) / f64::from(r.max(1))),
            None => units,
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mirror(&self, s: &State) {
        self.limit.store(s.limit, Ordering::Relaxed);
        self.inflight.store(s.inflight, Ordering::Relaxed);
        self.requests.store(s.requests, Ordering::Relaxed);
        self.queued.store(s.queued, Ordering::Relaxed);
        self.metrics.inflight.set(i64::from(s.inflight));
        self.metrics.requests.set(i64::from(s.requests));
        self.metrics.queued.set(s.queued as i64);
    }

    fn release(&self, cost: u32) {
        let mut s = self.lock();
        s.inflight = s.inflight.saturating_sub(cost);
        s.requests = s.requests.saturating_sub(1);
        self.grant(&mut s);
        self.adjust_cutoff(&mut s);
        self.mirror(&s);
    }

    /// Hand free units to waiters, highest priority first; stop at the first that does not
    /// fit, so a costly high-priority request is not starved by cheap lower ones.
    fn grant(&self, s: &mut State) {
        let half = self.queue_timeout / 2;
        'levels: for p in (0..LEVELS).rev() {
            loop {
                let Some(front) = s.queues[p].front() else {
                    continue 'levels;
                };
                let lifo = front.since.elapsed() >= half;
                let next = if lifo {
                    s.queues[p].back()
                } else {
                    s.queues[p].front()
                };
                // Clamped again here: the limit may have fallen since the waiter queued,
                // and a waiter that could never fit would block everyone behind it.
                let cost = next.map_or(0, |w| w.cost.min(s.limit.max(1)));
                if !s.fits(cost, Priority::from_index(p)) {
                    break 'levels;
                }
                let w = if lifo {
                    s.queues[p].pop_back()
                } else {
                    s.queues[p].pop_front()
                };
                let Some(w) = w else { continue 'levels };
                s.queued -= 1;
                if w.grant.send(cost).is_ok() {
                    s.inflight += cost;
                    s.requests += 1;
                }
            }
        }
    }

    /// Move the cutoff with the queue's fill, with hysteresis.
    fn adjust_cutoff(&self, s: &mut State) {
        let fill = s.queued as f64 / self.queue_max.max(1) as f64;
        let now = Instant::now();
        let since = now.duration_since(s.cutoff_changed);
        if fill > 0.75 {
            s.over_since.get_or_insert(now);
        } else {
            s.over_since = None;
        }
        let stayed = s
            .over_since
            .is_some_and(|t| now.duration_since(t) >= CUT_AFTER);
        if stayed && s.cutoff < Priority::Critical && since >= CUT_AFTER {
            let lowest = (0..LEVELS).find(|&q| !s.queues[q].is_empty());
            if let Some(q) = lowest.filter(|&q| q < Priority::Critical as usize) {
                s.cutoff = Priority::from_index(q + 1);
                s.cutoff_changed = now;
                for level in 0..=q {
                    let n = s.queues[level].len();
                    s.queues[level].clear(); // dropped senders: overloaded
                    s.queued -= n;
                }
            }
        } else if fill < 0.25 && s.cutoff > Priority::Sheddable && since >= RESTORE_AFTER {
            s.cutoff = Priority::from_index(s.cutoff as usize - 1);
            s.cutoff_changed = now;
        }
    }
}

impl State {
    /// Whether `cost` more units and one more request of priority `p` fit within both
    /// limits. Below `normal`, the last eighth of the request limit is not for them: a
    /// sheddable request holds its slot for as long as it runs (a broad search, 300 ms and
    /// more), and the slots it takes while nobody above it happens to be waiting are the ones
    /// the next burst of product pages and narrow searches then waits for.
    fn fits(&self, cost: u32, p: Priority) -> bool {
        let reserve = if p < Priority::Normal && self.rlimit != u32::MAX {
            self.rlimit.div_ceil(8)
        } else {
            0
        };
        self.inflight + cost <= self.limit
            && (self.requests == 0 || self.requests + reserve < self.rlimit)
    }

    fn remove(&mut self, p: Priority, id: u64) -> bool {
        let q = &mut self.queues[p as usize];
        match q.iter().position(|w| w.id == id) {
            Some(i) => {
                q.remove(i);
                self.queued -= 1;
                true
            }
            None => false,
        }
    }
}

/// A queued request. If its future is dropped (client gone) it leaves the queue, or gives
/// back the units it was granted meanwhile.
struct Waiting<'a> {
    inner: &'a Inner,
    id: u64,
    priority: Priority,
    rx: Option<oneshot::Receiver<u32>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else { return };
        let mut s = self.inner.lock();
        if !s.remove(self.priority, self.id) {
            if let Ok(units) = rx.try_recv() {
                s.inflight = s.inflight.saturating_sub(units);
                s.requests = s.requests.saturating_sub(1);
            }
        }
        // Either way its place or its units are free now.
        self.inner.grant(&mut s);
        self.inner.mirror(&s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use Priority::*;

    fn bulkhead(max: usize, queue: usize) -> Arc<Bulkhead> {
        let m = Metrics::new();
        Arc::new(Bulkhead::new(
            max,
            queue,
            Duration::from_millis(100),
            m.pool("p"),
        ))
    }

    /// Queue a request in the background; the handle yields its result.
    async fn queue(
        b: &Arc<Bulkhead>,
        cost: u32,
        p: Priority,
    ) -> tokio::task::JoinHandle<Result<Permit, Reason>> {
        let b2 = b.clone();
        let h = tokio::spawn(async move { b2.acquire(cost, p).await });
        tokio::task::yield_now().await;
        h
    }

    #[tokio::test(start_paused = true)]
    async fn queue_full_is_overloaded_and_timeout_is_queue_timeout() {
        let b = bulkhead(1, 1);
        let held = b.acquire(1, Normal).await.unwrap();
        assert_eq!(b.inflight(), 1);
        let waiter = queue(&b, 1, Normal).await;
        assert_eq!(b.queued(), 1);
        assert_eq!(b.acquire(1, Normal).await.err(), Some(Reason::Overloaded));
        // Paused clock: the waiter times out after exactly queue.timeout.
        assert_eq!(waiter.await.unwrap().err(), Some(Reason::QueueTimeout));
        assert_eq!(b.queued(), 0);
        drop(held);
        assert_eq!(b.inflight(), 0);
        assert!(b.acquire(1, Normal).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn released_slot_goes_to_waiter_and_cancelled_waiters_leave() {
        let b = bulkhead(1, 4);
        let held = b.acquire(1, Normal).await.unwrap();
        let gone = queue(&b, 1, Normal).await;
        let waiter = queue(&b, 1, Normal).await;
        assert_eq!(b.queued(), 2);
        gone.abort();
        let _ = gone.await;
        assert_eq!(b.queued(), 1);
        drop(held);
        let p = waiter.await.unwrap().unwrap();
        assert_eq!((b.inflight(), b.queued()), (1, 0));
        drop(p);
        assert_eq!(b.inflight(), 0);
        assert_eq!(b.inner.metrics.inflight.get(), 0);
        assert_eq!(b.inner.metrics.queued.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn higher_priority_is_served_first() {
        let b = bulkhead(1, 4);
        let held = b.acquire(1, Normal).await.unwrap();
        let low = queue(&b, 1, Sheddable).await;
        let crit = queue(&b, 1, Critical).await;
        drop(held);
        let c = crit.await.unwrap().unwrap();
        assert!(!low.is_finished());
        drop(c);
        assert!(low.await.unwrap().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_sheds_lower_priority_for_higher() {
        let b = bulkhead(1, 1);
        let _held = b.acquire(1, Normal).await.unwrap();
        let low = queue(&b, 1, Low).await;
        let crit = queue(&b, 1, Critical).await;
        assert_eq!(low.await.unwrap().err(), Some(Reason::Overloaded));
        assert_eq!(b.queued(), 1);
        // A newcomer of equal or lower priority than every waiter is the one shed.
        assert_eq!(b.acquire(1, Critical).await.err(), Some(Reason::Overloaded));
        assert_eq!(
            b.acquire(1, Sheddable).await.err(),
            Some(Reason::Overloaded)
        );
        crit.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn cost_is_counted_in_units() {
        let b = bulkhead(10, 4);
        let a = b.acquire(4, Normal).await.unwrap();
        let _b2 = b.acquire(4, Normal).await.unwrap();
        assert_eq!(b.inflight(), 8);
        let third = queue(&b, 4, Normal).await;
        assert_eq!(b.queued(), 1);
        // A cost above the limit takes the whole pool rather than never running.
        let huge = queue(&b, 50, Normal).await;
        drop(a);
        assert!(third.await.unwrap().is_ok());
        assert!(!huge.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_limit_counts_requests_whatever_their_cost() {
        let b = bulkhead(100, 4);
        b.set_request_limit(2);
        let first = b.acquire(1, Normal).await.unwrap();
        let _second = b.acquire(1, Normal).await.unwrap();
        // 98 units free, but two requests in flight: the third waits.
        let third = queue(&b, 1, Normal).await;
        assert_eq!((b.requests(), b.queued()), (2, 1));
        drop(first);
        let _third = third.await.unwrap().unwrap();
        assert_eq!((b.requests(), b.inflight()), (2, 2));
        // A raised request limit admits waiters at once.
        let fourth = queue(&b, 1, Normal).await;
        assert_eq!(b.queued(), 1);
        b.set_request_limit(3);
        let _fourth = fourth.await.unwrap().unwrap();
        assert_eq!((b.requests(), b.queued()), (3, 0));
        // Pressure counts requests against the request limit when that binds: 3 in flight
        // of 3 allowed, none waiting, is 1.0 although 97 units are free.
        assert_eq!(b.pressure(), 1.0);
        // A lone request always fits, whatever the limit (it must never starve).
        drop((_second, _third, _fourth));
        b.set_request_limit(0);
        let _lone = b.acquire(1, Normal).await.unwrap();
        assert_eq!(b.requests(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_eighth_of_the_request_limit_is_kept_from_low_priorities() {
        let b = bulkhead(100, 8);
        b.set_request_limit(8);
        let mut held = Vec::new();
        for _ in 0..7 {
            held.push(b.acquire(1, Sheddable).await.unwrap());
        }
        // 7 of 8: a sheddable request waits, a normal one takes the last slot.
        let eighth = queue(&b, 1, Sheddable).await;
        assert_eq!((b.requests(), b.queued()), (7, 1));
        held.push(b.acquire(1, Normal).await.unwrap());
        assert_eq!(b.requests(), 8);
        // Two leave: the waiting sheddable request gets one slot, the other stays free.
        held.truncate(6);
        let _eighth = eighth.await.unwrap().unwrap();
        assert_eq!((b.requests(), b.queued()), (7, 0));
        // Without a request limit (a static pool) nothing is held back.
        let s = bulkhead(4, 4);
        let mut all = Vec::new();
        for _ in 0..4 {
            all.push(s.acquire(1, Sheddable).await.unwrap());
        }
        assert_eq!(s.requests(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_raised_limit_admits_waiters() {
        let b = bulkhead(8, 4);
        b.set_limit(1);
        assert_eq!(b.limit(), 1);
        let _held = b.acquire(1, Normal).await.unwrap();
        let w = queue(&b, 1, Normal).await;
        b.set_limit(2);
        assert!(w.await.unwrap().is_ok());
        b.set_limit(1000);
        assert_eq!(b.limit(), 8, "never above max_inflight");
    }

    #[tokio::test(start_paused = true)]
    async fn the_cutoff_needs_sustained_pressure_and_comes_back_slowly() {
        let m = Metrics::new();
        let b = Arc::new(Bulkhead::new(1, 4, Duration::from_secs(5), m.pool("p")));
        let held = b.acquire(1, Critical).await.unwrap();
        let mut waiters = Vec::new();
        for p in [Sheddable, Low, Normal, High] {
            waiters.push(queue(&b, 1, p).await);
        }
        // Full, but only just: a momentary burst cuts nothing.
        assert_eq!(b.cutoff(), Sheddable);
        tokio::time::advance(Duration::from_millis(300)).await;
        // Still full 300 ms later: the next arrival (high) takes the sheddable waiter's place,
        // and the lowest priority still queued (low) is cut off, its waiter shed.
        waiters.push(queue(&b, 1, High).await);
        assert_eq!(b.cutoff(), Normal);
        assert_eq!(b.acquire(1, Low).await.err(), Some(Reason::Overloaded));
        for _ in 0..2 {
            assert_eq!(
                waiters.remove(0).await.unwrap().err(),
                Some(Reason::Overloaded)
            );
        }
        // Releases with the queue under 1/4 full restore one level per second at most.
        drop(held);
        // Left: normal, high, high. The highs go first (oldest first), then normal; each
        // permit is dropped to free the slot for the next.
        let normal = waiters.remove(0);
        for w in waiters.drain(..) {
            drop(w.await.unwrap().unwrap());
        }
        drop(normal.await.unwrap().unwrap());
        assert_eq!(b.cutoff(), Normal, "hysteresis: not yet");
        tokio::time::advance(Duration::from_millis(1100)).await;
        drop(b.acquire(1, Normal).await.unwrap());
        assert_eq!(b.cutoff(), Low, "one level per second");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_costlier_than_a_lowered_limit_does_not_wedge_the_pool() {
        let b = bulkhead(20, 4);
        let held = b.acquire(10, Normal).await.unwrap();
        let big = queue(&b, 15, Normal).await;
        let small = queue(&b, 1, Normal).await;
        // The adaptive limit falls below the queued cost.
        b.set_limit(4);
        drop(held);
        // It is granted what the limit allows instead of blocking everyone behind it.
        let p = big.await.unwrap().unwrap();
        assert_eq!(b.inflight(), 4);
        drop(p);
        assert!(small.await.unwrap().is_ok());
        assert_eq!(b.inflight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocking_waiter_that_leaves_lets_the_next_in() {
        let b = bulkhead(4, 4);
        let _held = b.acquire(3, Normal).await.unwrap();
        let big = queue(&b, 4, Normal).await;
        let small = queue(&b, 1, Normal).await;
        // The costly head of the queue leaves (client gone): the small one fits now.
        big.abort();
        let _ = big.await;
        assert!(small.await.unwrap().is_ok());
    }
}
