//! Adaptive concurrency per pool or shared backend (`adaptive = true`): finished requests
//! feed samples into a window; each closed window goes to the pure `limit::GradientLimit`,
//! and the new limit is set on the bulkhead (which hands out permits in cost units, by
//! priority). `levee_concurrency_limit{pool}` follows it, and
//! `levee_concurrency_limit_requests{pool}` the limit on requests (below).
//!
//! **Latency is judged per class.** A pool serves requests of very different cost (a broad
//! category search takes ten times a narrow one), so the mean latency of a window moves with
//! the mix of requests, not only with load: shed the broad searches and the mean falls, admit
//! them and it rises, though the backend is no more loaded. Measured in the spike benchmark,
//! a mixed mean made the limit shrink at baseline load. So each class (a route) keeps its own
//! smoothed latency and its own lowest-seen baseline, and a window's signal is the inflation
//! of each class over its own baseline, averaged over the window's requests. The limit then
//! sees "latency x1.0" for an unloaded backend whatever the mix. `MAX_CLASSES` bounds the
//! table (routes come from config).
//!
//! **Two limits: units and requests.** The limit is in cost units, so the SRE can say a broad
//! search weighs 8. But a backend's capacity is usually counted in requests (workers,
//! connections), and a unit budget sized while costly requests held it admits eight times
//! as many cheap ones once the costly ones are shed. In the spike benchmark that is what
//! pushed the tier of 32 workers over its cliff: the unit limit stood at ~160 with latency
//! clean, then cheap requests filled it in 250 ms as their latency grew. So a second
//! `GradientLimit`, fed the same latency with the window's peak in *requests*, limits
//! requests in flight; the bulkhead admits a request only under both (a lone request always
//! fits). The request limit grows only while requests in flight reach 3/4 of it, so costly
//! traffic does not raise it. With it the benchmark's shared tier kept product pages and
//! narrow searches above their targets through the spike (benches/RESULTS.md, session 6),
//! against 97.6–100% and 84–89% before.

pub mod limit;

use limit::{GradientLimit, LimitConfig, Window};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// One finished request, as the limit sees it.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Admission to the upstream's response head; `None` if there was none.
    pub rtt: Option<Duration>,
    /// Units in flight in the pool when the request was admitted (itself included).
    pub inflight: u32,
    /// Requests in flight in the pool when the request was admitted (itself included).
    pub reqs: u32,
    /// The units the request took.
    pub cost: u32,
    /// A timeout, connect failure, or 503/429 from the upstream.
    pub dropped: bool,
    /// Which class of request (a route): latency is compared within a class.
    pub class: u64,
}

pub struct Adaptive {
    window: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct Class {
    sum: u128,
    n: u64,
    /// Smoothed mean latency (ns) and the lowest it has been: the class's baseline (the
    /// smoothing keeps one quick window from setting it too low).
    ema: f64,
    base: f64,
}

struct State {
    /// The limit in cost units, and the one in requests (same latency, own peak).
    limit: GradientLimit,
    rlimit: GradientLimit,
    rpeak: u32,
    max_cost: u32,
    opened: u64,
    classes: HashMap<u64, Class>,
    samples: u64,
    peak: u32,
    dropped: bool,
}

/// Fewest samples a window needs before it closes early at `window`.
const MIN_SAMPLES: u64 = 10;
/// Weight of a window's mean in a class's smoothed latency.
const CLASS_WEIGHT: f64 = 0.3;
/// Most classes tracked; beyond it new classes share one.
const MAX_CLASSES: usize = 1024;
/// The unit the limit sees: a class at its baseline is "1 ms".
const UNIT: f64 = 1_000_000.0;

impl Adaptive {
    pub fn new(cfg: LimitConfig, window: Duration) -> Adaptive {
        Adaptive {
            window,
            state: Mutex::new(State {
                limit: GradientLimit::new(cfg.clone()),
                rlimit: GradientLimit::new(cfg),
                rpeak: 0,
                max_cost: 0,
                opened: 0,
                classes: HashMap::new(),
                samples: 0,
                peak: 0,
                dropped: false,
            }),
        }
    }

    /// The limit on requests in flight, whatever their cost.
    pub fn request_limit(&self) -> u32 {
        self.lock().rlimit.limit()
    }

    pub fn initial_limit(&self) -> u32 {
        self.lock().limit.limit()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add a sample at `now` (ns). When it closes a window, returns the new limit. A window
    /// closes after `window` with at least 10 samples, after 10 × `window` with any, or at
    /// once on an overload signal (the cut should not wait).
    pub fn sample(&self, s: Sample, now: u64) -> Option<u32> {
        let mut st = self.lock();
        if st.opened == 0 {
            st.opened = now;
        }
        if let (Some(rtt), false) = (s.rtt, s.dropped) {
            let key = if st.classes.len() >= MAX_CLASSES && !st.classes.contains_key(&s.class) {
                u64::MAX
            } else {
                s.class
            };
            let c = st.classes.entry(key).or_default();
            c.sum += rtt.as_nanos();
            c.n += 1;
            st.samples += 1;
        }
        st.peak = st.peak.max(s.inflight);
        st.rpeak = st.rpeak.max(s.reqs);
        st.max_cost = st.max_cost.max(s.cost);
        st.dropped |= s.dropped;
        let age = now.saturating_sub(st.opened);
        let w = self.window.as_nanos() as u64;
        let due = st.dropped || (age >= w && st.samples >= MIN_SAMPLES) || age >= 10 * w;
        if !due {
            return None;
        }
        let (mut weighted, mut n) = (0.0, 0u64);
        for c in st.classes.values_mut().filter(|c| c.n > 0) {
            let mean = (c.sum / u128::from(c.n)) as f64;
            c.ema = if c.ema == 0.0 {
                mean
            } else {
                c.ema + (mean - c.ema) * CLASS_WEIGHT
            };
            c.base = if c.base == 0.0 {
                c.ema
            } else {
                c.base.min(c.ema)
            };
            // This window's mean against the class's baseline (the limit smooths the result).
            weighted += mean / c.base.max(1.0) * c.n as f64;
            n += c.n;
            c.sum = 0;
            c.n = 0;
        }
        let window = Window {
            mean_rtt: if n == 0 {
                0
            } else {
                (weighted / n as f64 * UNIT) as u64
            },
            peak_inflight: st.peak,
            max_cost: st.max_cost.max(1),
            dropped: st.dropped,
        };
        let rw = Window {
            peak_inflight: st.rpeak,
            max_cost: 1,
            ..window
        };
        st.max_cost = 0;
        st.rlimit.update(rw, now);
        st.rpeak = 0;
        st.opened = now;
        st.samples = 0;
        st.peak = 0;
        st.dropped = false;
        Some(st.limit.update(window, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn adaptive() -> Adaptive {
        Adaptive::new(
            LimitConfig {
                min_limit: 4,
                max_limit: 500,
                initial_limit: 40,
                tolerance: 1.5,
                backoff: 0.9,
                smoothing: 0.2,
            },
            Duration::from_millis(100),
        )
    }

    /// Feed a window of 20 requests: `broad` of them of class 2 at 300 ms, the rest class 1
    /// at 20 ms, all with the pool fully used.
    fn window(a: &Adaptive, t: &mut u64, broad: usize, scale: f64) -> Option<u32> {
        let mut out = None;
        for i in 0..20 {
            let (class, ms) = if i < broad { (2, 300.0) } else { (1, 20.0) };
            let s = Sample {
                rtt: Some(Duration::from_micros((ms * scale * 1000.0) as u64)),
                inflight: 40,
                reqs: 40,
                cost: 1,
                dropped: false,
                class,
            };
            *t += 5 * MS;
            out = a.sample(s, *t).or(out);
        }
        out
    }

    /// A controller after ten steady windows (2 broad requests in 20), its time and limit.
    fn warmed() -> (Adaptive, u64, u32) {
        let a = adaptive();
        let mut t = 0;
        for _ in 0..10 {
            window(&a, &mut t, 2, 1.0);
        }
        let limit = a.lock().limit.limit();
        (a, t, limit)
    }

    #[test]
    fn a_changing_mix_is_not_mistaken_for_load() {
        let (a, mut t, before) = warmed();
        // The mix swings from 0 to 10 broad requests in 20, latency per class unchanged: a
        // mixed mean would swing 20 ms → 160 ms and cut the limit; per class, nothing moved.
        let mut lim = before;
        for k in 0..20 {
            lim = window(&a, &mut t, if k % 2 == 0 { 0 } else { 10 }, 1.0).unwrap_or(lim);
        }
        assert!(lim >= before, "{before} -> {lim}");
    }

    #[test]
    fn the_request_limit_follows_requests_not_units() {
        // Units in flight at the limit (costly requests), but only 5 requests: with flat
        // latency the unit limit grows, the request limit has no reason to.
        let a = adaptive();
        let mut t = 0;
        let start = a.request_limit();
        // Cost-8 requests, `units` in flight, but only 5 of them.
        let costly = |rtt_ms: u64, units: u32| Sample {
            rtt: Some(Duration::from_millis(rtt_ms)),
            inflight: units,
            reqs: 5,
            cost: 8,
            dropped: false,
            class: 1,
        };
        for _ in 0..400 {
            t += 5 * MS;
            let units = a.lock().limit.limit();
            a.sample(costly(20, units), t);
        }
        assert_eq!(a.request_limit(), start);
        assert!(a.lock().limit.limit() > start * 2);
        // Latency triples: both fall.
        let units = a.lock().limit.limit();
        let reqs = a.request_limit();
        for _ in 0..200 {
            t += 5 * MS;
            a.sample(costly(60, units), t);
        }
        // A third off within a second, as in `inflation_in_every_class_still_cuts`.
        let units_now = a.lock().limit.limit();
        let reqs_now = a.request_limit();
        assert!(units_now * 3 < units * 2, "units {units} -> {units_now}");
        // The request limit sat far above the 5 in flight; it still falls by a quarter.
        assert!(reqs_now * 4 < reqs * 3, "requests {reqs} -> {reqs_now}");
    }

    #[test]
    fn inflation_in_every_class_still_cuts() {
        let (a, mut t, before) = warmed();
        let mut lim = before;
        for _ in 0..10 {
            lim = window(&a, &mut t, 2, 3.0).unwrap_or(lim);
        }
        // A third off within a second of 3x latency (smoothing: ~10% a window at most).
        assert!(lim * 3 < before * 2, "{before} -> {lim}");
    }
}
