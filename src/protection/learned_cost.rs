//! Learned cost (`routes.cost_key`): for when the SRE did not list the costly requests. Per
//! value of the key (a query parameter, a header, or the path) levee learns how much pool
//! time a request costs (its latency while holding its units, an exponentially decayed
//! average), and a value whose cost is far above the route's median is admitted as if its
//! cost were that multiple, at one priority lower. A broad category search is recognised as
//! costly from its latency alone.
//!
//! Memory is bounded: a space-saving sketch (Metwally et al.) keeps the `CAPACITY` most
//! frequent values; a new value replaces the least frequent one and inherits its count, so
//! heavy hitters are never lost to a flood of one-off values. Values are stored as a keyed
//! 64-bit hash plus at most `MAX_SHOWN` bytes of text for `/admin/status`.
//!
//! Admission step 6 input: `admit` (at the bulkhead) reads the multiplier; `observe` (after
//! the response) updates the value's cost. Counts halve every `DECAY_EVERY` observations,
//! so what was frequent an hour ago gives way to what is frequent now.

use crate::config::{CostKey, Priority};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::Duration;

pub const CAPACITY: usize = 128;
/// A value costing this many times the route's median is "costly".
pub const COSTLY_RATIO: f64 = 4.0;
/// The most a learned multiplier raises a request's cost.
pub const MAX_MULTIPLIER: f64 = 50.0;
const MAX_SHOWN: usize = 64;
/// Weight of a new observation in a value's average latency.
const ALPHA: f64 = 0.2;
/// A value needs this many observations before its cost is trusted.
const MIN_OBSERVED: u32 = 3;
const DECAY_EVERY: u64 = 10_000;
const MEDIAN_EVERY: u64 = 32;

#[derive(Debug, Clone)]
struct Entry {
    hash: u64,
    shown: String,
    count: u64,
    /// Observations behind `cost` (reset when the slot changes hands).
    observed: u32,
    /// Decayed average latency in seconds.
    cost: f64,
}

pub struct LearnedCost {
    key: CostKey,
    hasher: RandomState,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    observations: u64,
    median: f64,
}

/// A costly value, for status.
#[derive(Debug, Clone, PartialEq)]
pub struct Costly {
    pub value: String,
    pub count: u64,
    pub mean_latency: Duration,
    pub ratio: f64,
}

impl LearnedCost {
    pub fn new(key: CostKey) -> LearnedCost {
        LearnedCost {
            key,
            hasher: RandomState::new(),
            state: Mutex::default(),
        }
    }

    pub fn key(&self) -> &CostKey {
        &self.key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key's value in a request, if it has one.
    pub fn value<'a>(
        &self,
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a http::HeaderMap,
    ) -> Option<std::borrow::Cow<'a, str>> {
        match &self.key {
            CostKey::Path => Some(path.into()),
            CostKey::Query(name) => crate::routing::query_values(query?, name)
                .next()
                .map(|v| v.to_lowercase().into()),
            CostKey::Header(name) => headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .map(Into::into),
        }
    }

    /// Count one request with `value` and say how to admit it: `(cost, priority, hash)`.
    /// The hash is handed back to `observe` after the response.
    pub fn admit(&self, value: &str, cost: u32, priority: Priority) -> (u32, Priority, u64) {
        let hash = self.hasher.hash_one(value);
        let mut s = self.lock();
        let i = match s.entries.iter().position(|e| e.hash == hash) {
            Some(i) => i,
            None if s.entries.len() < CAPACITY => {
                s.entries.push(Entry {
                    hash,
                    shown: shown(value),
                    count: 0,
                    observed: 0,
                    cost: 0.0,
                });
                s.entries.len() - 1
            }
            None => {
                // Space-saving: the least frequent entry hands its slot (and count) over.
                let i = (0..s.entries.len())
                    .min_by_key(|&i| s.entries[i].count)
                    .unwrap_or(0);
                let e = &mut s.entries[i];
                *e = Entry {
                    hash,
                    shown: shown(value),
                    count: e.count,
                    observed: 0,
                    cost: 0.0,
                };
                i
            }
        };
        s.entries[i].count += 1;
        let e = &s.entries[i];
        let ratio = if e.observed >= MIN_OBSERVED && s.median > 0.0 {
            e.cost / s.median
        } else {
            0.0
        };
        if ratio >= COSTLY_RATIO {
            let learned = (f64::from(cost) * ratio.min(MAX_MULTIPLIER)).round() as u32;
            let lower = Priority::from_index((priority as usize).saturating_sub(1));
            (learned.max(cost), lower, hash)
        } else {
            (cost, priority, hash)
        }
    }

    /// The response to a request admitted with `hash` took `latency` of pool time.
    pub fn observe(&self, hash: u64, latency: Duration) {
        let mut s = self.lock();
        s.observations += 1;
        let secs = latency.as_secs_f64();
        if let Some(e) = s.entries.iter_mut().find(|e| e.hash == hash) {
            e.cost = if e.observed == 0 {
                secs
            } else {
                e.cost + (secs - e.cost) * ALPHA
            };
            e.observed = e.observed.saturating_add(1);
        }
        if s.observations % MEDIAN_EVERY == 1 || s.median == 0.0 {
            s.median = median(&s.entries);
        }
        if s.observations.is_multiple_of(DECAY_EVERY) {
            for e in &mut s.entries {
                e.count /= 2;
            }
        }
    }

    /// The route's median cost (seconds) over values with enough observations.
    pub fn median(&self) -> f64 {
        self.lock().median
    }

    /// The `n` costliest values, most costly first.
    pub fn top(&self, n: usize) -> Vec<Costly> {
        let s = self.lock();
        let mut v: Vec<&Entry> = s
            .entries
            .iter()
            .filter(|e| e.observed >= MIN_OBSERVED)
            .collect();
        v.sort_by(|a, b| b.cost.total_cmp(&a.cost));
        v.into_iter()
            .take(n)
            .map(|e| Costly {
                value: e.shown.clone(),
                count: e.count,
                mean_latency: Duration::from_secs_f64(e.cost),
                ratio: if s.median > 0.0 {
                    e.cost / s.median
                } else {
                    0.0
                },
            })
            .collect()
    }
}

/// Median of trusted entries' costs, each weighted by how often it is requested.
fn median(entries: &[Entry]) -> f64 {
    let mut v: Vec<(f64, u64)> = entries
        .iter()
        .filter(|e| e.observed >= MIN_OBSERVED)
        .map(|e| (e.cost, e.count.max(1)))
        .collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = v.iter().map(|x| x.1).sum();
    let mut seen = 0;
    for (cost, n) in &v {
        seen += n;
        if seen * 2 >= total {
            return *cost;
        }
    }
    v[v.len() - 1].0
}

fn shown(value: &str) -> String {
    let mut end = value.len().min(MAX_SHOWN);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn singles_out_the_slow_values() {
        let l = LearnedCost::new(CostKey::Query("q".into()));
        // Narrow searches take 10 ms, two broad terms 200 ms, in a realistic mix.
        for i in 0..2000 {
            let (v, lat) = match i % 10 {
                0 => ("women's clothing", 200),
                1 => ("shoes", 200),
                n => (
                    [
                        "socks red",
                        "usb-c cable 2m",
                        "iphone 15 case",
                        "lego 42115",
                    ][n % 4],
                    10,
                ),
            };
            let (_, _, h) = l.admit(v, 1, Priority::Normal);
            l.observe(h, ms(lat));
        }
        let (cost, prio, _) = l.admit("women's clothing", 1, Priority::Normal);
        assert_eq!(
            (cost, prio),
            (20, Priority::Low),
            "200 ms is 20x the 10 ms median"
        );
        let (cost, prio, _) = l.admit("socks red", 1, Priority::Normal);
        assert_eq!((cost, prio), (1, Priority::Normal));
        let top: Vec<String> = l.top(2).into_iter().map(|c| c.value).collect();
        assert!(
            top.contains(&"shoes".to_string()) && top.contains(&"women's clothing".to_string())
        );
        assert!((l.median() - 0.010).abs() < 0.001);
    }

    #[test]
    fn memory_is_bounded_and_heavy_hitters_survive_a_flood() {
        let l = LearnedCost::new(CostKey::Path);
        // 100,000 requests: one in 20 is the broad search, one in 20 a common narrow one,
        // the rest one-off values (a crawler, random junk). Space-saving keeps every value
        // more frequent than 1 in CAPACITY.
        for i in 0..100_000 {
            let (v, lat) = match i % 20 {
                0 => ("/search/broad".to_string(), 500),
                1 => ("/search/narrow".to_string(), 5),
                _ => (format!("/search/junk-{i}"), 5),
            };
            let (_, _, h) = l.admit(&v, 1, Priority::Normal);
            l.observe(h, ms(lat));
        }
        assert!(l.lock().entries.len() <= CAPACITY);
        let top = l.top(1);
        assert_eq!(top[0].value, "/search/broad");
        assert!(top[0].ratio > 50.0, "{top:?}");
    }

    #[test]
    fn untrusted_until_observed_and_capped() {
        let l = LearnedCost::new(CostKey::Path);
        for _ in 0..10 {
            let (_, _, h) = l.admit("/cheap", 2, Priority::High);
            l.observe(h, ms(1));
        }
        for _ in 0..2 {
            let (_, _, h) = l.admit("/huge", 2, Priority::High);
            l.observe(h, ms(10_000));
        }
        // Two observations are not enough to judge.
        assert_eq!(l.admit("/huge", 2, Priority::High).0, 2);
        let (_, _, h) = l.admit("/huge", 2, Priority::High);
        l.observe(h, ms(10_000));
        // 10,000x the median, capped at 50x the configured cost; one priority lower.
        assert_eq!(
            l.admit("/huge", 2, Priority::High),
            (100, Priority::Normal, l.hasher.hash_one("/huge"))
        );
        // Sheddable stays sheddable.
        assert_eq!(
            l.admit("/huge", 2, Priority::Sheddable).1,
            Priority::Sheddable
        );
    }
}
