//! Adaptive concurrency per pool (`adaptive = true`): finished requests feed samples into a
//! window; each closed window goes to the pure `limit::GradientLimit`, and the new limit is
//! set on the pool's bulkhead (which hands out permits in cost units, by priority).
//! `levee_concurrency_limit{pool}` follows it.

pub mod limit;

use limit::{GradientLimit, LimitConfig, Window};
use std::sync::Mutex;
use std::time::Duration;

/// One finished request, as the limit sees it.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Admission to the upstream's response head; `None` if there was none.
    pub rtt: Option<Duration>,
    /// Units in flight in the pool when the request was admitted (itself included).
    pub inflight: u32,
    /// A timeout, connect failure, or 503/429 from the upstream.
    pub dropped: bool,
}

pub struct Adaptive {
    window: Duration,
    state: Mutex<State>,
}

struct State {
    limit: GradientLimit,
    opened: u64,
    rtt_sum: u128,
    rtt_n: u64,
    peak: u32,
    dropped: bool,
}

/// Fewest samples a window needs before it closes early at `window`.
const MIN_SAMPLES: u64 = 10;

impl Adaptive {
    pub fn new(cfg: LimitConfig, window: Duration) -> Adaptive {
        Adaptive {
            window,
            state: Mutex::new(State {
                limit: GradientLimit::new(cfg),
                opened: 0,
                rtt_sum: 0,
                rtt_n: 0,
                peak: 0,
                dropped: false,
            }),
        }
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
        match s.rtt {
            Some(rtt) if !s.dropped => {
                st.rtt_sum += rtt.as_nanos();
                st.rtt_n += 1;
            }
            _ => {}
        }
        st.peak = st.peak.max(s.inflight);
        st.dropped |= s.dropped;
        let age = now.saturating_sub(st.opened);
        let w = self.window.as_nanos() as u64;
        let due = st.dropped || (age >= w && st.rtt_n >= MIN_SAMPLES) || age >= 10 * w;
        if !due {
            return None;
        }
        let window = Window {
            mean_rtt: st.rtt_sum.checked_div(u128::from(st.rtt_n)).unwrap_or(0) as u64,
            peak_inflight: st.peak,
            dropped: st.dropped,
        };
        st.opened = now;
        st.rtt_sum = 0;
        st.rtt_n = 0;
        st.peak = 0;
        st.dropped = false;
        Some(st.limit.update(window, now))
    }
}
