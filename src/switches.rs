//! Route switches (DESIGN.md §1, §2): admission step 1. An SRE turns a route `off` (answered
//! with its degrade response, reason `switched_off`) or to `degrade` (same answer, reason
//! `degraded`) with `PUT /admin/routes/{name}/switch`, optionally for a TTL after which it
//! reverts by itself; `[[schedules]]` arm the same switches for a time window in advance.
//! A manual switch wins over a schedule; with neither, a route is `on`.
//!
//! Switches live in `Shared`, keyed by route name, so they survive reloads. The request path
//! reads one atomic while no switch is set, and one map lookup otherwise. Times are passed in
//! (`now`), so tests drive TTLs and schedules with a fake clock.

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchState {
    On,
    Off,
    Degrade,
}

impl SwitchState {
    pub fn parse(s: &str) -> Option<SwitchState> {
        Some(match s {
            "on" => SwitchState::On,
            "off" => SwitchState::Off,
            "degrade" => SwitchState::Degrade,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SwitchState::On => "on",
            SwitchState::Off => "off",
            SwitchState::Degrade => "degrade",
        }
    }
}

/// A switch set by a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Switch {
    pub state: SwitchState,
    pub until: Option<DateTime<Utc>>,
    pub reason: String,
    /// The admin token's name (or "anonymous" without a token).
    pub by: String,
    pub set_at: DateTime<Utc>,
}

/// Where a route's current state comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Default,
    Manual(Switch),
    Schedule(String),
}

#[derive(Default)]
pub struct Switches {
    manual: DashMap<String, Switch>,
    /// route → (state, schedule name), recomputed by the supervisor every second.
    scheduled: ArcSwap<HashMap<String, (SwitchState, String)>>,
    /// Manual plus scheduled entries: 0 lets the request path skip the lookups.
    active: AtomicUsize,
}

impl Switches {
    fn recount(&self) {
        let n = self.manual.len() + self.scheduled.load().len();
        self.active.store(n, Ordering::Release);
    }

    /// The state of `route` at `now`, and where it comes from.
    pub fn state(&self, route: &str, now: DateTime<Utc>) -> (SwitchState, Source) {
        if self.active.load(Ordering::Acquire) == 0 {
            return (SwitchState::On, Source::Default);
        }
        if let Some(s) = self.manual.get(route) {
            if s.until.is_none_or(|u| now < u) {
                return (s.state, Source::Manual(s.clone()));
            }
        }
        match self.scheduled.load().get(route) {
            Some((state, name)) => (*state, Source::Schedule(name.clone())),
            None => (SwitchState::On, Source::Default),
        }
    }

    /// Whether any switch (manual or scheduled) is set: one atomic load.
    pub fn any(&self) -> bool {
        self.active.load(Ordering::Acquire) != 0
    }

    /// The fast form for the request path.
    pub fn current(&self, route: &str, now: DateTime<Utc>) -> SwitchState {
        if self.active.load(Ordering::Acquire) == 0 {
            return SwitchState::On;
        }
        self.state(route, now).0
    }

    /// Set a manual switch. `on` without a TTL clears it (the route follows its schedule).
    pub fn set(&self, route: &str, sw: Switch) {
        if sw.state == SwitchState::On && sw.until.is_none() {
            self.manual.remove(route);
        } else {
            self.manual.insert(route.to_string(), sw);
        }
        self.recount();
    }

    /// Drop manual switches whose TTL has passed; returns them (for the audit log).
    pub fn expire(&self, now: DateTime<Utc>) -> Vec<(String, Switch)> {
        let expired: Vec<(String, Switch)> = self
            .manual
            .iter()
            .filter(|e| e.until.is_some_and(|u| now >= u))
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        for (route, _) in &expired {
            self.manual
                .remove_if(route, |_, s| s.until.is_some_and(|u| now >= u));
        }
        if !expired.is_empty() {
            self.recount();
        }
        expired
    }

    /// The switches schedules set now: route → (state, schedule).
    pub fn scheduled(&self) -> HashMap<String, (SwitchState, String)> {
        (**self.scheduled.load()).clone()
    }

    /// Replace the scheduled switches; returns whether they changed.
    pub fn set_scheduled(&self, map: HashMap<String, (SwitchState, String)>) -> bool {
        if **self.scheduled.load() == map {
            return false;
        }
        self.scheduled.store(Arc::new(map));
        self.recount();
        true
    }

    /// Manual switches now in force.
    pub fn manual(&self) -> Vec<(String, Switch)> {
        self.manual
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sw(state: SwitchState, until: Option<&str>) -> Switch {
        Switch {
            state,
            until: until.map(at),
            reason: "test".into(),
            by: "ops".into(),
            set_at: at("2026-11-11T00:00:00Z"),
        }
    }

    #[test]
    fn ttl_reverts_and_manual_beats_schedule() {
        let s = Switches::default();
        let t0 = at("2026-11-11T00:10:00Z");
        assert_eq!(s.current("search", t0), SwitchState::On);
        s.set_scheduled(HashMap::from([(
            "search".to_string(),
            (SwitchState::Degrade, "sale-open".to_string()),
        )]));
        assert_eq!(
            s.state("search", t0).1,
            Source::Schedule("sale-open".into())
        );
        s.set("search", sw(SwitchState::Off, Some("2026-11-11T00:40:00Z")));
        assert_eq!(s.current("search", t0), SwitchState::Off);
        // Past the TTL the manual switch no longer applies, even before it is swept.
        let t1 = at("2026-11-11T00:41:00Z");
        assert_eq!(s.current("search", t1), SwitchState::Degrade);
        let gone = s.expire(t1);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0, "search");
        s.set_scheduled(HashMap::new());
        assert_eq!(s.current("search", t1), SwitchState::On);
        assert_eq!(s.active.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn on_without_ttl_clears() {
        let s = Switches::default();
        s.set("recs", sw(SwitchState::Degrade, None));
        assert_eq!(s.current("recs", Utc::now()), SwitchState::Degrade);
        s.set("recs", sw(SwitchState::On, None));
        assert!(s.manual().is_empty());
        assert_eq!(s.current("recs", Utc::now()), SwitchState::On);
    }
}
