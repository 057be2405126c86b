//! Validation of `[pools.NAME] adaptive`: `true`/`false`, or a table of tuning keys (which
//! turns it on). Defaults work without tuning; see `protection::adaptive::limit` for what each
//! key does to the algorithm.

use super::diag::Diags;
use super::model::AdaptiveSpec;
use super::validate::{decode, duration_in, int_in};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdaptive {
    pub min_limit: Option<i64>,
    pub initial_limit: Option<i64>,
    pub tolerance: Option<f64>,
    pub backoff: Option<f64>,
    pub smoothing: Option<f64>,
    pub window: Option<String>,
}

/// `Some(None)`: off; `Some(Some(spec))`: on; `None`: reported errors.
pub(super) fn validate_adaptive(
    v: Option<&toml::Value>,
    max_inflight: Option<i64>,
    base: &str,
    d: &mut Diags,
) -> Option<Option<AdaptiveSpec>> {
    let raw = match v {
        None | Some(toml::Value::Boolean(false)) => return Some(None),
        Some(toml::Value::Boolean(true)) => RawAdaptive::default(),
        Some(t @ toml::Value::Table(_)) => decode::<RawAdaptive>(t, base, d),
        Some(other) => {
            d.error(
                base,
                format!(
                    "expected true, false or a table of tuning keys, found {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    let p = |k: &str| format!("{base}.{k}");
    let max = max_inflight.unwrap_or(64);
    let min_limit = int_in(raw.min_limit, 4.min(max), 1, max, &p("min_limit"), d);
    let initial = int_in(
        raw.initial_limit,
        20.clamp(min_limit.unwrap_or(1), max),
        min_limit.unwrap_or(1),
        max,
        &p("initial_limit"),
        d,
    );
    let share = |v: Option<f64>, default: f64, lo: f64, hi: f64, key: &str, d: &mut Diags| {
        let x = v.unwrap_or(default);
        if !(x >= lo && x <= hi) {
            d.error(
                p(key),
                format!("{x} is out of range: expected {lo} to {hi}"),
            );
            return None;
        }
        Some(x)
    };
    let tolerance = share(raw.tolerance, 1.5, 1.0, 10.0, "tolerance", d);
    let backoff = share(raw.backoff, 0.9, 0.1, 0.99, "backoff", d);
    let smoothing = share(raw.smoothing, 0.2, 0.01, 1.0, "smoothing", d);
    let window = duration_in(
        raw.window.as_deref(),
        Duration::from_millis(100),
        Duration::from_millis(10),
        Duration::from_secs(10),
        &p("window"),
        d,
    );
    Some(Some(AdaptiveSpec {
        min_limit: min_limit? as u32,
        initial_limit: initial? as u32,
        tolerance: tolerance?,
        backoff: backoff?,
        smoothing: smoothing?,
        window: window?,
    }))
}
