//! The adaptive concurrency limit as a pure algorithm: windows of samples in, a limit out. No
//! atomics, no clock, no I/O (times are passed in), so it is tested with synthetic samples.
//!
//! **Algorithm: a gradient limit in the family of Netflix concurrency-limits' Gradient2.**
//! Each window gives a short-term RTT (the mean latency of the window's requests, smoothed
//! over a few windows). The baseline, standing in for the pool's no-load latency, is the
//! lowest smoothed RTT seen (as Vegas and BBR keep a min RTT). The
//! gradient `tolerance × baseline / short`, clamped to [0.5, 1], says how far latency has
//! inflated: at 1 the pool is not queueing, so the limit may grow by a queue allowance of
//! √limit; below 1 the limit shrinks in proportion. Timeouts, connect failures
//! and 503/429 answers from the upstream are explicit overload signals: the limit is cut by
//! `backoff` (multiplicative decrease), at most once per long RTT so one burst of failures
//! is one cut, not fifty.
//!
//! Why this and not the others:
//! - Envoy's adaptive-concurrency filter measures the min RTT by periodically pinning the
//!   limit to a few requests, which rejects real traffic during every probe (envoyproxy/envoy
//!   issues on minRTT recalculation causing 503 spikes). The minimum here is taken from real
//!   traffic and needs no probe.
//! - Gradient2 proper uses a long exponential average as its baseline. Measured against a
//!   queueing backend (`tests::finds_a_queueing_backends_capacity_and_stays_near_it`) that
//!   baseline chases the inflated latency and the limit creeps to the maximum: the long
//!   average rises with every window in which latency is within tolerance, which it always
//!   is after the limit rose by a little. A minimum does not chase. A minimum that expires
//!   after 30 s (tried too) drifts the same way, one step per 30 s: at its equilibrium the
//!   limit sits a queue allowance above capacity, so the no-load latency is never seen again.
//! - AIMD reacts only to drops, so it lets latency inflate until timeouts begin: too late
//!   for a search cluster whose queue makes every request slower.
//!
//! **The knee.** The latency signal is late: a request reports the queue it met only when it
//! finishes, and the smoothed RTT later still. Growing by √limit a window until latency
//! crosses the tolerance overshoots the backend's capacity, the fall that follows runs on
//! while the backend's queue drains, and the limit swings (measured in the spike benchmark:
//! between about 40 and 135 every 2–3 s, against a tier of 32 workers). So, as TCP keeps a
//! slow-start threshold: where a fall ends is remembered as the knee; below it growth is the
//! √limit allowance, above it one unit a window (Vegas: also whenever the window's own
//! latency is already 10 % over the baseline). Once the limit has grown half again past the
//! knee, five windows in a row at the baseline latency there (or 30 s without a fall) forget
//! the knee, so a backend that has room again is found. Windows at the baseline latency *at*
//! the knee prove nothing: the limit is what keeps the backend out of its queue. (Counting
//! them forgot the knee half a second after each fall and the limit swung between about 40
//! and 130 every 4 s through the spike; with the probe it saws between about 45 and 70.)
//! In the spike benchmark the knee took product pages from 84–90% to 91–100% of goodput
//! during the spike, and narrow searches from 60–62% to 73–82% (3 runs each); the probe and
//! the 3/4 guard below took them to 98–100% and 87–89% (benches/RESULTS.md, session 4).
//!
//! Known failure modes and what this does about them:
//! - **Limit creeping up** while the pool is not using it (concurrency-limits issues about
//!   Gradient2 growing without load): the limit grows only when the window's peak in-flight
//!   reached at least three quarters of the limit (app-limited guard; with half, the limit
//!   grew at baseline load to 2–3x what was in flight, and the first swing of a spike filled
//!   that headroom with costly requests).
//! - **Baseline drifting up** under sustained overload until inflated latency looks normal:
//!   the minimum never rises on its own. Only when the limit has sat at its floor for 10 s
//!   with latency still inflated (the backend is slower at any concurrency: a missing index,
//!   a heavier mix) is the current latency taken as the new baseline. When latency falls the
//!   baseline follows at once.
//! - **Collapse to the minimum** after a burst of failures: cuts are spaced by a long RTT,
//!   bounded below by `min_limit`, and growth after recovery is not smoothed (smoothing
//!   applies to decreases only), so the limit climbs back by √limit per window: from 4 to 100
//!   in about 20 windows (2 s at the default 100 ms window).

/// Tuning, validated in `config` (`[pools.NAME] adaptive = { ... }`).
#[derive(Debug, Clone, PartialEq)]
pub struct LimitConfig {
    pub min_limit: u32,
    pub max_limit: u32,
    pub initial_limit: u32,
    /// How much latency inflation is taken as "not queueing" (1.5 = 50 % over the baseline).
    pub tolerance: f64,
    /// Multiplicative decrease on an overload signal.
    pub backoff: f64,
    /// Weight of a new estimate when the limit falls (0–1).
    pub smoothing: f64,
}

/// One window's samples, summarised.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// Mean RTT of the window's successful requests, in ns (0: none).
    pub mean_rtt: u64,
    /// Highest in-flight count (units) seen when a request of the window was admitted.
    pub peak_inflight: u32,
    /// The most units one request of the window took (1 for a limit counted in requests).
    pub max_cost: u32,
    /// Any timeout, connect failure or 503/429 from the upstream in the window.
    pub dropped: bool,
}

/// Weight of a new window in the smoothed short-term RTT.
const SHORT_WEIGHT: f64 = 0.3;
/// A window latency up to this over the baseline allows fast growth; above it, one unit.
const FREE_GROWTH: f64 = 1.1;
/// Growth needs the window's peak in-flight to have reached this share of the limit
/// (app-limited guard).
const APP_LIMITED: f64 = 0.75;
/// How far past the knee the limit must have grown (one unit a window) before windows at
/// the baseline latency count as evidence of more room.
const KNEE_PROBED: f64 = 1.5;
/// Windows in a row at the baseline latency after which the knee is forgotten.
const CLEAN_TO_FORGET: u32 = 5;
/// How long the knee found by a fall is trusted (then fast growth is allowed again).
const KNEE_TTL_NS: u64 = 30_000_000_000;
/// How long latency must stay inflated with the limit at its floor before the baseline is
/// reset to the new latency (the backend itself got slower).
const RESET_AFTER_NS: u64 = 10_000_000_000;

#[derive(Debug, Clone)]
pub struct GradientLimit {
    cfg: LimitConfig,
    limit: f64,
    /// Smoothed short-term RTT (ns); 0 before the first window.
    short: f64,
    /// Lowest smoothed RTT seen (ns): the no-load latency estimate.
    baseline: f64,
    /// Since when the limit has sat at its floor with latency still inflated.
    floored_since: Option<u64>,
    last_cut: Option<u64>,
    /// Where the last fall ended: the backend's knee as last seen. Growth past it is one
    /// unit a window, below it fast (TCP's ssthresh).
    knee: f64,
    /// When `knee` was set; after `KNEE_TTL` without a fall it is forgotten.
    knee_at: u64,
    /// The limit when the current fall began (`None`: not falling).
    fall_from: Option<f64>,
    /// Windows in a row whose own latency was at the baseline.
    clean: u32,
}

impl GradientLimit {
    pub fn new(cfg: LimitConfig) -> GradientLimit {
        let limit = f64::from(cfg.initial_limit.clamp(cfg.min_limit, cfg.max_limit));
        GradientLimit {
            cfg,
            limit,
            short: 0.0,
            baseline: f64::INFINITY,
            floored_since: None,
            last_cut: None,
            knee: f64::INFINITY,
            knee_at: 0,
            fall_from: None,
            clean: 0,
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit.round() as u32
    }

    /// The no-load latency estimate (ns).
    pub fn baseline_rtt(&self) -> f64 {
        self.baseline
    }

    /// Take one window ending at `now` (ns); return the new limit.
    pub fn update(&mut self, w: Window, now: u64) -> u32 {
        let (min, max) = (f64::from(self.cfg.min_limit), f64::from(self.cfg.max_limit));
        if w.dropped {
            let spacing = (self.short as u64).max(1);
            if self
                .last_cut
                .is_none_or(|t| now.saturating_sub(t) >= spacing)
            {
                self.limit = (self.limit * self.cfg.backoff).clamp(min, max);
                self.last_cut = Some(now);
            }
            return self.limit();
        }
        if w.mean_rtt == 0 {
            return self.limit();
        }
        let rtt = w.mean_rtt as f64;
        self.short = if self.short == 0.0 {
            rtt
        } else {
            self.short + (rtt - self.short) * SHORT_WEIGHT
        };
        self.baseline = self.baseline.min(self.short);
        let gradient = (self.cfg.tolerance * self.baseline / self.short).clamp(0.5, 1.0);
        // At the floor and still inflated for long: the backend is slower at any
        // concurrency, so its latency now is the new no-load latency.
        if gradient < 1.0 && self.limit <= min * 1.25 {
            let since = *self.floored_since.get_or_insert(now);
            if now.saturating_sub(since) >= RESET_AFTER_NS {
                self.baseline = self.short;
                self.floored_since = None;
            }
        } else {
            self.floored_since = None;
        }
        let queue = self.limit.sqrt().max(1.0);
        let target = self.limit * gradient + queue;
        if gradient >= 1.0 {
            // Growth needs evidence that the limit is what holds traffic back. It is fast
            // (a queue allowance per window) only while this window's own latency is at the
            // baseline; once it shows the first inflation (a backend queue starting, which
            // the smoothed latency reports a few windows late), growth is one unit a window
            // (Vegas' two thresholds), so the limit does not overshoot the knee and swing.
            if self.fall_from.take().is_some() {
                // A fall just ended: about here the backend stopped queueing (the fall runs
                // on a little while the queue drains, so this is on the low side: safe).
                self.knee = self.limit;
                self.knee_at = now;
            } else if now.saturating_sub(self.knee_at) >= KNEE_TTL_NS {
                self.knee = f64::INFINITY; // no fall for a long while: capacity may have grown
            }
            let raw = rtt / self.baseline.max(1.0);
            // Windows in a row without queueing while the limit is well past the knee:
            // evidence of more room than the knee said. (At the knee itself latency is clean
            // because the limit is what keeps the backend out of its queue: counting those
            // windows forgot the knee half a second after each fall, and the limit swung
            // between about 40 and 130 every 4 s through the spike.)
            let past_knee = self.limit >= self.knee * KNEE_PROBED;
            self.clean = if raw <= FREE_GROWTH && past_knee {
                self.clean + 1
            } else {
                0
            };
            if self.clean >= CLEAN_TO_FORGET {
                self.knee = f64::INFINITY;
            }
            // Used: in flight near the limit, or too near it for the costliest request to
            // fit once more (a pool of cost-8 searches at 16 of 22 units admits no third
            // one, and would never reach 3/4 of a limit above 22).
            let peak = f64::from(w.peak_inflight);
            if peak >= self.limit * APP_LIMITED || peak + f64::from(w.max_cost) > self.limit {
                // (Growing by a quarter a window below the knee, like TCP's slow start, was
                // tried: in the spike benchmark the refills overshot, pdp 86–87%, narrow
                // searches 57–65%, against 91–100% and 73–82% with the queue allowance.)
                let step = if raw <= FREE_GROWTH && self.limit < self.knee {
                    queue
                } else {
                    1.0
                };
                self.limit = (self.limit + step).min(max);
            }
        } else {
            self.fall_from.get_or_insert(self.limit);
            self.clean = 0;
            let s = self.cfg.smoothing;
            self.limit = (self.limit * (1.0 - s) + target * s).clamp(min, max);
        }
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn cfg() -> LimitConfig {
        LimitConfig {
            min_limit: 4,
            max_limit: 500,
            initial_limit: 20,
            tolerance: 1.5,
            backoff: 0.9,
            smoothing: 0.2,
        }
    }

    fn ok(rtt_ms: u64, peak: u32) -> Window {
        Window {
            mean_rtt: rtt_ms * MS,
            peak_inflight: peak,
            max_cost: 1,
            dropped: false,
        }
    }

    /// Run `n` windows of 100 ms from `t`; return the limit and the new time.
    fn run(l: &mut GradientLimit, t: &mut u64, n: usize, mut w: impl FnMut(u32) -> Window) -> u32 {
        for _ in 0..n {
            *t += 100 * MS;
            let lim = l.limit();
            l.update(w(lim), *t);
        }
        l.limit()
    }

    #[test]
    fn grows_while_used_and_latency_is_flat() {
        let mut l = GradientLimit::new(cfg());
        let mut t = 0;
        let grown = run(&mut l, &mut t, 30, |lim| ok(10, lim));
        assert!(grown > 100, "{grown}");
        assert!(grown <= 500);
    }

    #[test]
    fn does_not_creep_up_when_not_used() {
        let mut l = GradientLimit::new(cfg());
        let mut t = 0;
        // Only 5 requests in flight at most: no reason to raise a limit of 20.
        assert_eq!(run(&mut l, &mut t, 200, |_| ok(10, 5)), 20);
    }

    #[test]
    fn costly_requests_alone_still_grow_the_limit() {
        let mut l = GradientLimit::new(cfg());
        let mut t = 0;
        // Requests of cost 8 only: at a limit of 20 two fit (16 units), a third does not.
        // The limit grows until three do, then stops: 16 + 8 = 24 fits a limit of 24.
        let grown = run(&mut l, &mut t, 50, |lim| Window {
            max_cost: 8,
            ..ok(10, (lim / 8).min(2) * 8)
        });
        assert_eq!(grown, 24);
        // With the demand there (as many as fit), it keeps growing.
        let more = run(&mut l, &mut t, 30, |lim| Window {
            max_cost: 8,
            ..ok(10, lim / 8 * 8)
        });
        assert!(more > 100, "{more}");
    }

    /// A backend that serves `cap` at once in 10 ms and queues the rest: latency grows with
    /// concurrency beyond `cap`.
    fn queueing(cap: u32) -> impl Fn(u32) -> Window {
        move |lim| ok(10 * u64::from(lim.max(cap)) / u64::from(cap), lim)
    }

    #[test]
    fn finds_a_queueing_backends_capacity_and_stays_near_it() {
        let mut l = GradientLimit::new(cfg());
        let mut t = 0;
        let mut seen = Vec::new();
        for _ in 0..60 {
            seen.push(run(&mut l, &mut t, 10, queueing(40)));
        }
        eprintln!("limit every second: {seen:?}");
        // After the first 10 s the limit stays within 2x the backend's capacity (latency at
        // most 2x its no-load value), never collapsing below it by half.
        assert!(
            seen[10..].iter().all(|&x| (20..=80).contains(&x)),
            "{seen:?}"
        );
    }

    #[test]
    fn past_the_last_knee_growth_is_one_unit_a_window() {
        let mut l = GradientLimit::new(cfg());
        let mut t = 0;
        let grown = run(&mut l, &mut t, 30, |lim| ok(10, lim));
        // Latency triples: the limit falls; then it is back within tolerance but above the
        // baseline (a queue is forming): the fall ends and sets the knee there.
        let fallen = run(&mut l, &mut t, 15, |lim| ok(30, lim));
        assert!(fallen < grown / 2, "{grown} -> {fallen}");
        let knee = run(&mut l, &mut t, 3, |lim| ok(13, lim));
        // Still a little inflated: one unit a window, not a √limit queue allowance.
        let later = run(&mut l, &mut t, 10, |lim| ok(13, lim));
        assert!(later <= knee + 10, "{knee} -> {later}");
        // Latency back at its baseline near the knee proves nothing (the limit is what keeps
        // the queue away): still one unit a window.
        let near = run(&mut l, &mut t, 5, |lim| ok(10, lim));
        assert!(near <= later + 5, "{later} -> {near}");
        // Once the limit has grown half again past the knee with latency still at its
        // baseline, the backend has more room: the knee is forgotten, growth is fast again.
        let probed = run(&mut l, &mut t, 40, |lim| ok(10, lim));
        let fast = run(&mut l, &mut t, 10, |lim| ok(10, lim));
        assert!(fast >= probed + 40, "{knee} -> {probed} -> {fast}");
    }

    #[test]
    fn falls_when_the_backend_slows_down_and_stops_at_min() {
        let mut l = GradientLimit::new(cfg());
        let mut t = 0;
        run(&mut l, &mut t, 50, queueing(200));
        let before = l.limit();
        // The backend loses 90 % of its capacity (a missing index, a failed node).
        let after = run(&mut l, &mut t, 20, queueing(20));
        assert!(after < before / 3, "{before} -> {after}");
        assert!(after >= 4);
        // Capacity 2: the limit goes down to its floor (min_limit plus the √limit queue
        // allowance), not below.
        let floor = run(&mut l, &mut t, 90, queueing(2));
        assert!((4..=6).contains(&floor), "{floor}");
    }

    #[test]
    fn tolerates_moderate_latency_noise() {
        let mut l = GradientLimit::new(cfg());
        let mut t = 0;
        run(&mut l, &mut t, 20, |lim| ok(10, lim));
        let before = l.limit();
        // ±40 % noise around the baseline stays within the tolerance of 1.5: no fall.
        let mut i = 0;
        let after = run(&mut l, &mut t, 20, |lim| {
            i += 1;
            ok(if i % 2 == 0 { 14 } else { 6 }, lim)
        });
        assert!(after >= before, "{before} -> {after}");
    }

    #[test]
    fn drops_cut_multiplicatively_once_per_rtt() {
        let mut l = GradientLimit::new(cfg());
        let mut t = 0;
        run(&mut l, &mut t, 5, |lim| ok(100, lim));
        let before = l.limit() as f64;
        let dropped = Window {
            dropped: true,
            ..Window::default()
        };
        t += MS;
        l.update(dropped, t);
        let once = l.limit() as f64;
        assert!(
            (once - (before * 0.9).round()).abs() <= 1.0,
            "{before} -> {once}"
        );
        // More failures within one long RTT (100 ms): no further cut.
        for _ in 0..5 {
            t += 10 * MS;
            l.update(dropped, t);
        }
        assert_eq!(l.limit() as f64, once);
        t += 100 * MS;
        l.update(dropped, t);
        assert!((l.limit() as f64) < once);
    }

    #[test]
    fn recovers_within_seconds_after_overload() {
        let mut l = GradientLimit::new(cfg());
        let mut t = 0;
        run(&mut l, &mut t, 30, |lim| ok(10, lim));
        // A long overload: the backend down to 2 at once for 60 s drags the limit down to
        // its floor; after 10 s there the slower latency becomes the baseline.
        let low = run(&mut l, &mut t, 600, queueing(2));
        assert!(low <= 10, "{low}");
        // Overload ends: the limit is back above 60 within 2 s (20 windows) and above 100
        // within 2.5 s. (Before the knee rule, above 100 within 2 s: the half second more is
        // the five windows at the baseline latency it takes to forget the low knee.)
        let seq: Vec<u32> = (0..25)
            .map(|_| run(&mut l, &mut t, 1, queueing(400)))
            .collect();
        assert!(
            seq[19] > 60,
            "limit only {} 2 s after recovery: {seq:?}",
            seq[19]
        );
        assert!(
            seq[24] > 100,
            "limit only {} 2.5 s after recovery: {seq:?}",
            seq[24]
        );
    }
}
