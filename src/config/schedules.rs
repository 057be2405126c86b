//! Validation of `[[schedules]]`: pre-armed switch profiles with a `from`/`until` window
//! (RFC 3339 with an offset). Errors: missing or bad times, `until` not after `from`, unknown
//! routes, bad states. Warnings: a schedule already over, and overlapping schedules that set
//! the same route differently (the one that started later wins; see `switches`).

use super::diag::Diags;
use super::model::ScheduleSpec;
use super::validate::check_name;
use crate::switches::SwitchState;
use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    pub name: Option<String>,
    pub from: Option<String>,
    pub until: Option<String>,
    pub switches: Option<BTreeMap<String, String>>,
}

fn time(v: Option<&str>, path: &str, d: &mut Diags) -> Option<DateTime<FixedOffset>> {
    let Some(s) = v else {
        d.error(
            path,
            "missing: an RFC 3339 time with offset, e.g. \"2026-11-11T00:00:00+09:00\"",
        );
        return None;
    };
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => Some(t),
        Err(e) => {
            d.error(
                path,
                format!("bad time {s:?} ({e}): expected RFC 3339 with offset, e.g. \"2026-11-11T00:00:00+09:00\""),
            );
            None
        }
    }
}

pub(super) fn validate_schedules(
    raw: &[RawSchedule],
    routes: &[&str],
    now: DateTime<Utc>,
    d: &mut Diags,
) -> Vec<ScheduleSpec> {
    let mut out: Vec<(usize, ScheduleSpec)> = Vec::new();
    let mut names: Vec<(String, usize)> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let base = format!("schedules[{i}]");
        let p = |k: &str| format!("{base}.{k}");
        let mut ok = true;
        let name = match &r.name {
            None => {
                d.error(p("name"), "missing: every schedule needs a name");
                None
            }
            Some(n) if !check_name(n, &p("name"), d) => None,
            Some(n) => {
                if let Some((_, j)) = names.iter().find(|(s, _)| s == n) {
                    d.error(
                        p("name"),
                        format!("duplicate schedule name {n:?} (also schedules[{j}])"),
                    );
                    ok = false;
                }
                names.push((n.clone(), i));
                Some(n.clone())
            }
        };
        let from = time(r.from.as_deref(), &p("from"), d);
        let until = time(r.until.as_deref(), &p("until"), d);
        if let (Some(f), Some(u)) = (from, until) {
            if u <= f {
                d.error(p("until"), "must be after `from`");
                ok = false;
            }
        }
        let mut switches = Vec::new();
        match &r.switches {
            None => {
                d.error(
                    p("switches"),
                    "missing: e.g. switches = { \"search-broad\" = \"off\" }",
                );
                ok = false;
            }
            Some(m) if m.is_empty() => {
                d.error(
                    p("switches"),
                    "empty: a schedule must switch at least one route",
                );
                ok = false;
            }
            Some(m) => {
                for (route, state) in m {
                    let path = format!("{base}.switches.{}", super::diag::key_seg(route));
                    if !routes.contains(&route.as_str()) {
                        d.error(&path, format!("unknown route {route:?}"));
                        ok = false;
                        continue;
                    }
                    match SwitchState::parse(state) {
                        Some(s) => switches.push((route.clone(), s)),
                        None => {
                            d.error(
                                &path,
                                format!("unknown state {state:?}: expected on, off or degrade"),
                            );
                            ok = false;
                        }
                    }
                }
            }
        }
        let (Some(name), Some(from), Some(until), true) = (name, from, until, ok) else {
            continue;
        };
        if until <= now {
            d.warning(
                &base,
                format!("schedule {name:?} ended at {until}: it will never apply"),
            );
        }
        out.push((
            i,
            ScheduleSpec {
                name,
                from,
                until,
                switches,
            },
        ));
    }
    for (a, (i, x)) in out.iter().enumerate() {
        for (j, y) in out[a + 1..].iter().map(|(j, y)| (j, y)) {
            if x.from < y.until && y.from < x.until {
                for (route, s) in &x.switches {
                    if let Some((_, t)) = y.switches.iter().find(|(r, t)| r == route && t != s) {
                        d.warning(
                            format!("schedules[{j}]"),
                            format!(
                                "overlaps schedules[{i}] ({:?}) and sets route {route:?} to {} where it sets {}: while both apply, the one that started later wins",
                                x.name,
                                t.as_str(),
                                s.as_str()
                            ),
                        );
                    }
                }
            }
        }
    }
    out.into_iter().map(|(_, s)| s).collect()
}
