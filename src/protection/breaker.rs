//! The circuit breaker (`routes.circuit_breaker`): when a route's upstream starts failing or
//! crawling, stop sending it traffic for `open_for` and answer at once instead of piling on.
//! Admission step 2, the gate: it never spends a rate-limit token, and a request it rejects
//! never holds a pool slot.
//!
//! Two parts, as in Netflix's concurrency-limits and resilience4j: `Core` is the pure state
//! machine (a sliding window of outcomes and the closed → open → half-open transitions; it
//! takes `now` as an argument, so tests drive it with a fake clock), and `Breaker` enforces it.
//! The gate reads an atomic mirror of the state and, while closed or open, decides without
//! taking the lock. Outcomes are recorded under a short mutex.

use crate::config::BreakerSpec;
use crate::protection::Outcome;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Buckets of the sliding window: the window slides in steps of `window / BUCKETS`.
const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Open,
            2 => State::HalfOpen,
            _ => State::Closed,
        }
    }
}

/// The gate's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Pass,
    /// Half-open: this request is one of the probes; its outcome decides.
    Probe,
    /// Open (or half-open with every probe out): retry after this long.
    Reject(Duration),
}

/// A change of state and why, for the log line and the gauge.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub why: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which step of time this bucket holds (`now / step`); stale buckets are reset on use.
    step: u64,
    total: u32,
    errors: u32,
    slow: u32,
}

/// The pure breaker: no atomics, no clock, no I/O. Times are nanoseconds.
#[derive(Debug, Clone)]
pub struct Core {
    spec: BreakerSpec,
    step: u64,
    buckets: [Bucket; BUCKETS],
    state: CoreState,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CoreState {
    Closed,
    Open {
        until: u64,
    },
    HalfOpen {
        since: u64,
        admitted: u32,
        passed: u32,
    },
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

impl Core {
    pub fn new(spec: &BreakerSpec) -> Core {
        Core {
            step: (ns(spec.window) / BUCKETS as u64).max(1),
            spec: spec.clone(),
            buckets: [Bucket::default(); BUCKETS],
            state: CoreState::Closed,
        }
    }

    pub fn state(&self) -> State {
        match self.state {
            CoreState::Closed => State::Closed,
            CoreState::Open { .. } => State::Open,
            CoreState::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// Until when the breaker stays open (0 when it is not open).
    pub fn open_until(&self) -> u64 {
        match self.state {
            CoreState::Open { until } => until,
            _ => 0,
        }
    }

    /// Decide on one request at `now`.
    pub fn gate(&mut self, now: u64) -> (Gate, Option<Transition>) {
        let mut t = None;
        if let CoreState::Open { until } = self.state {
            if now < until {
                return (Gate::Reject(Duration::from_nanos(until - now)), None);
            }
            self.state = CoreState::HalfOpen {
                since: now,
                admitted: 0,
                passed: 0,
            };
            t = Some(self.transition(State::Open, "open_for elapsed: probing"));
        }
        match &mut self.state {
            CoreState::Closed => (Gate::Pass, t),
            CoreState::Open { .. } => unreachable!("handled above"),
            CoreState::HalfOpen {
                since,
                admitted,
                passed,
            } => {
                // A probe whose outcome never came back must not wedge the breaker.
                if now.saturating_sub(*since)
                    > ns(self.spec.open_for).max(ns(Duration::from_secs(30)))
                {
                    *since = now;
                    *admitted = *passed;
                }
                if *admitted < self.spec.probes {
                    *admitted += 1;
                    (Gate::Probe, t)
                } else {
                    (Gate::Reject(Duration::from_secs(1)), t)
                }
            }
        }
    }

    /// Record the outcome of a request that took `elapsed`; `probe` if the gate made it one.
    pub fn record(
        &mut self,
        now: u64,
        outcome: Outcome,
        elapsed: Duration,
        probe: bool,
    ) -> Option<Transition> {
        let slow = self.spec.slow_call.is_some_and(|s| elapsed >= s);
        match self.state {
            CoreState::Closed => {
                let (failed, slow) = match outcome {
                    Outcome::Success => (false, slow),
                    Outcome::Failure => (true, slow),
                    Outcome::Ignored | Outcome::Dropped => return None,
                };
                let b = self.bucket(now);
                b.total += 1;
                b.errors += failed as u32;
                b.slow += slow as u32;
                self.evaluate(now)
            }
            CoreState::HalfOpen {
                since,
                admitted,
                passed,
            } if probe => match outcome {
                Outcome::Ignored | Outcome::Dropped => {
                    self.state = CoreState::HalfOpen {
                        since,
                        admitted: admitted.saturating_sub(1),
                        passed,
                    };
                    None
                }
                Outcome::Failure => Some(self.open(now, State::HalfOpen, "a probe failed".into())),
                Outcome::Success if slow => {
                    Some(self.open(now, State::HalfOpen, "a probe was slow".into()))
                }
                Outcome::Success if passed + 1 >= self.spec.probes => {
                    self.state = CoreState::Closed;
                    self.buckets = [Bucket::default(); BUCKETS];
                    Some(self.transition(State::HalfOpen, "every probe succeeded"))
                }
                Outcome::Success => {
                    self.state = CoreState::HalfOpen {
                        since,
                        admitted,
                        passed: passed + 1,
                    };
                    None
                }
            },
            // Requests let in before the breaker opened, or non-probes: they do not decide.
            _ => None,
        }
    }

    fn bucket(&mut self, now: u64) -> &mut Bucket {
        let step = now / self.step;
        let b = &mut self.buckets[(step % BUCKETS as u64) as usize];
        if b.step != step {
            *b = Bucket {
                step,
                ..Bucket::default()
            };
        }
        b
    }

    fn evaluate(&mut self, now: u64) -> Option<Transition> {
        let step = now / self.step;
        let (mut total, mut errors, mut slow) = (0u32, 0u32, 0u32);
        for b in &self.buckets {
            if b.step + (BUCKETS as u64) > step {
                total += b.total;
                errors += b.errors;
                slow += b.slow;
            }
        }
        if total < self.spec.min_requests {
            return None;
        }
        let s = &self.spec;
        let why = if f64::from(errors) >= s.error_ratio * f64::from(total) {
            format!(
                "{errors} of {total} calls in the window failed (error_ratio {})",
                s.error_ratio
            )
        } else if s.slow_call.is_some() && f64::from(slow) >= s.slow_ratio * f64::from(total) {
            format!(
                "{slow} of {total} calls in the window were slow (slow_ratio {})",
                s.slow_ratio
            )
        } else {
            return None;
        };
        Some(self.open(now, State::Closed, why))
    }

    fn open(&mut self, now: u64, from: State, why: String) -> Transition {
        self.state = CoreState::Open {
            until: now.saturating_add(ns(self.spec.open_for)),
        };
        self.buckets = [Bucket::default(); BUCKETS];
        Transition {
            from,
            to: State::Open,
            why,
        }
    }

    fn transition(&self, from: State, why: &str) -> Transition {
        Transition {
            from,
            to: self.state(),
            why: why.to_string(),
        }
    }
}

/// The breaker as the proxy uses it: a lock-free gate over `Core`.
pub struct Breaker {
    mirror: AtomicU8,
    open_until: AtomicU64,
    core: Mutex<Core>,
}

impl Breaker {
    pub fn new(spec: &BreakerSpec) -> Breaker {
        Breaker {
            mirror: AtomicU8::new(State::Closed as u8),
            open_until: AtomicU64::new(0),
            core: Mutex::new(Core::new(spec)),
        }
    }

    pub fn state(&self) -> State {
        State::from_u8(self.mirror.load(Ordering::Acquire))
    }

    /// The gate. Closed, or open and not yet due: decided from atomics alone.
    pub fn gate(&self, now: u64) -> (Gate, Option<Transition>) {
        match self.state() {
            State::Closed => return (Gate::Pass, None),
            State::Open => {
                let until = self.open_until.load(Ordering::Acquire);
                if now < until {
                    return (Gate::Reject(Duration::from_nanos(until - now)), None);
                }
            }
            State::HalfOpen => {}
        }
        self.locked(|c| c.gate(now))
    }

    pub fn record(
        &self,
        now: u64,
        outcome: Outcome,
        elapsed: Duration,
        probe: bool,
    ) -> Option<Transition> {
        if !probe && self.state() != State::Closed {
            return None; // only closed-state calls and probes count
        }
        if matches!(outcome, Outcome::Ignored | Outcome::Dropped) && !probe {
            return None;
        }
        self.locked(|c| ((), c.record(now, outcome, elapsed, probe)))
            .1
    }

    fn locked<T>(
        &self,
        f: impl FnOnce(&mut Core) -> (T, Option<Transition>),
    ) -> (T, Option<Transition>) {
        let mut core = self.core.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut core);
        self.open_until.store(core.open_until(), Ordering::Release);
        self.mirror.store(core.state() as u8, Ordering::Release);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn spec() -> BreakerSpec {
        BreakerSpec {
            window: Duration::from_secs(10),
            min_requests: 10,
            error_ratio: 0.5,
            slow_call: Some(Duration::from_millis(100)),
            slow_ratio: 0.5,
            open_for: Duration::from_secs(5),
            probes: 2,
            shadow: false,
        }
    }
    const FAST: Duration = Duration::from_millis(5);
    const SLOW: Duration = Duration::from_millis(150);

    #[test]
    fn opens_on_error_ratio_only_after_min_requests() {
        let mut c = Core::new(&spec());
        for i in 0..4 {
            assert_eq!(c.record(i * MS, Outcome::Failure, FAST, false), None);
            assert_eq!(c.record(i * MS, Outcome::Success, FAST, false), None);
        }
        // 4 of 8 failed: ratio reached but below min_requests; 4xx-like "ignored" do not count.
        assert_eq!(c.record(9 * MS, Outcome::Ignored, FAST, false), None);
        assert_eq!(c.record(9 * MS, Outcome::Success, FAST, false), None);
        let t = c
            .record(10 * MS, Outcome::Failure, FAST, false)
            .expect("opens");
        assert_eq!((t.from, t.to), (State::Closed, State::Open));
        assert!(t.why.contains("5 of 10"), "{}", t.why);
        assert_eq!(
            c.gate(11 * MS).0,
            Gate::Reject(Duration::from_nanos(5000 * MS - MS))
        );
    }

    #[test]
    fn opens_on_slow_ratio() {
        let mut c = Core::new(&spec());
        for i in 0..9 {
            let d = if i % 2 == 0 { SLOW } else { FAST };
            assert_eq!(c.record(i * MS, Outcome::Success, d, false), None);
        }
        let t = c
            .record(9 * MS, Outcome::Success, FAST, false)
            .expect("opens");
        assert!(t.why.contains("slow"), "{}", t.why);
    }

    #[test]
    fn old_outcomes_slide_out_of_the_window() {
        let mut c = Core::new(&spec());
        for i in 0..9 {
            c.record(i * MS, Outcome::Failure, FAST, false);
        }
        // 11 s later those 9 failures have left the 10 s window.
        assert_eq!(c.record(11_000 * MS, Outcome::Failure, FAST, false), None);
        assert_eq!(c.state(), State::Closed);
    }

    fn open_core() -> Core {
        let mut c = Core::new(&spec());
        for i in 0..10 {
            c.record(i * MS, Outcome::Failure, FAST, false);
        }
        assert_eq!(c.state(), State::Open);
        c
    }

    #[test]
    fn stays_open_for_open_for_then_probes_close_it() {
        let mut c = open_core();
        let opened = 9 * MS;
        assert!(matches!(c.gate(opened + 4999 * MS).0, Gate::Reject(_)));
        let (g, t) = c.gate(opened + 5000 * MS);
        assert_eq!(g, Gate::Probe);
        assert_eq!(t.unwrap().to, State::HalfOpen);
        assert_eq!(c.gate(opened + 5001 * MS).0, Gate::Probe);
        // Both probes are out: everyone else still waits.
        assert!(matches!(c.gate(opened + 5002 * MS).0, Gate::Reject(_)));
        let now = opened + 5010 * MS;
        assert_eq!(c.record(now, Outcome::Success, FAST, true), None);
        let t = c.record(now, Outcome::Success, FAST, true).unwrap();
        assert_eq!((t.from, t.to), (State::HalfOpen, State::Closed));
        assert_eq!(c.gate(now).0, Gate::Pass);
    }

    #[test]
    fn a_failed_or_slow_probe_reopens() {
        for (outcome, d) in [(Outcome::Failure, FAST), (Outcome::Success, SLOW)] {
            let mut c = open_core();
            let now = 6000 * MS;
            assert_eq!(c.gate(now).0, Gate::Probe);
            let t = c.record(now, outcome, d, true).unwrap();
            assert_eq!((t.from, t.to), (State::HalfOpen, State::Open));
            assert!(matches!(c.gate(now + MS).0, Gate::Reject(_)));
            assert_eq!(c.gate(now + 5000 * MS).0, Gate::Probe);
        }
    }

    #[test]
    fn a_dropped_probe_frees_its_slot() {
        let mut c = open_core();
        let now = 6000 * MS;
        assert_eq!(c.gate(now).0, Gate::Probe);
        assert_eq!(c.gate(now).0, Gate::Probe);
        assert!(matches!(c.gate(now).0, Gate::Reject(_)));
        c.record(now, Outcome::Dropped, FAST, true);
        assert_eq!(c.gate(now).0, Gate::Probe);
    }

    #[test]
    fn late_outcomes_do_not_decide() {
        let mut c = open_core();
        // A request admitted before opening finishes now, successfully: still open.
        assert_eq!(c.record(20 * MS, Outcome::Success, FAST, false), None);
        assert_eq!(c.state(), State::Open);
    }

    #[test]
    fn gate_is_lock_free_while_closed_or_open() {
        let b = Breaker::new(&spec());
        assert_eq!(b.gate(0).0, Gate::Pass);
        for i in 0..10 {
            b.record(i * MS, Outcome::Failure, FAST, false);
        }
        assert_eq!(b.state(), State::Open);
        // Poison the lock: the open gate must still answer without it.
        let b = std::sync::Arc::new(b);
        let b2 = b.clone();
        let _ = std::thread::spawn(move || {
            let _g = b2.core.lock().unwrap();
            panic!("poison");
        })
        .join();
        assert!(matches!(b.gate(100 * MS).0, Gate::Reject(_)));
        // And a poisoned lock does not panic the request path either.
        assert_eq!(b.gate(10_000 * MS).0, Gate::Probe);
    }
}
