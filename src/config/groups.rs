//! Validation of `[groups.NAME]`: a backend that several pools share (the app tier or the
//! database behind them). A group has a limit of its own (`max_inflight`, or adaptive below
//! it) and a priority queue; every request of a member pool takes its cost in units from the
//! group as well as from its pool, so contention in the shared backend sheds the lowest
//! priorities of *any* member pool first.

use super::adaptive::validate_adaptive;
use super::diag::{key_seg, Diags};
use super::model::GroupSpec;
use super::schema::RawQueue;
use super::validate::{check_name, duration_in, int_in};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub max_inflight: Option<i64>,
    pub queue: Option<RawQueue>,
    pub adaptive: Option<toml::Value>,
}

pub(super) fn validate_group(
    name: &str,
    raw: &RawGroup,
    pools: &[&str],
    d: &mut Diags,
) -> Option<GroupSpec> {
    let base = format!("groups.{}", key_seg(name));
    let p = |k: &str| format!("{base}.{k}");
    let mut ok = check_name(name, &base, d);
    if pools.contains(&name) {
        d.error(
            &base,
            format!("{name:?} is also a pool: group and pool names share the `pool` metric label"),
        );
        ok = false;
    }
    let max_inflight = int_in(raw.max_inflight, 256, 1, 1_000_000, &p("max_inflight"), d);
    let queue_max = int_in(
        raw.queue.as_ref().and_then(|q| q.max),
        max_inflight.unwrap_or(256),
        0,
        1_000_000,
        &p("queue.max"),
        d,
    );
    let queue_timeout = duration_in(
        raw.queue.as_ref().and_then(|q| q.timeout.as_deref()),
        Duration::from_millis(100),
        Duration::from_millis(1),
        Duration::from_secs(60),
        &p("queue.timeout"),
        d,
    );
    let adaptive = validate_adaptive(raw.adaptive.as_ref(), max_inflight, &p("adaptive"), d);
    if !ok {
        return None;
    }
    Some(GroupSpec {
        name: name.to_string(),
        max_inflight: max_inflight? as usize,
        queue_max: queue_max? as usize,
        queue_timeout: queue_timeout?,
        adaptive: adaptive?,
    })
}
