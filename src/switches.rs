//! Route switches (DESIGN.md §1, §2): admission step 1. An SRE turns a route `off` (answered
//! with its degrade response, reason `switched_off`) or to `degrade` (same answer, reason
//! `degraded`) with `PUT /admin/routes/{name}/switch`, optionally for a TTL after which it
//! reverts by itself; `[[schedules]]` arm the same switches for a time window in advance.
//! A manual switch wins over a schedule; with neither, a route is `on`.
//!
//! Switches live in `Shared`, keyed by route name, so they survive reloads; with
//! `[server] state_file` the manual ones are also written to disk on every change (`save`) and
//! read back at start (`restore`), so a restart or an upgrade during an incident does not
//! quietly turn a route back on. The request path
//! reads one atomic while no switch is set, and one map lookup otherwise. Times are passed in
//! (`now`), so tests drive TTLs and schedules with a fake clock.

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
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

/// One manual switch as `state_file` keeps it (times in RFC 3339).
#[derive(Serialize, Deserialize)]
struct Saved {
    route: String,
    state: String,
    until: Option<String>,
    reason: String,
    by: String,
    set_at: String,
}

#[derive(Serialize, Deserialize)]
struct SavedFile {
    version: u32,
    switches: Vec<Saved>,
}

impl Switches {
    /// Write the manual switches to `path` (a temporary file renamed over it, so a crash
    /// mid-write leaves the previous file whole).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut switches: Vec<Saved> = self
            .manual()
            .into_iter()
            .map(|(route, s)| Saved {
                route,
                state: s.state.as_str().to_string(),
                until: s.until.map(|u| u.to_rfc3339()),
                reason: s.reason,
                by: s.by,
                set_at: s.set_at.to_rfc3339(),
            })
            .collect();
        switches.sort_by(|a, b| a.route.cmp(&b.route));
        let body = serde_json::to_vec_pretty(&SavedFile {
            version: 1,
            switches,
        })?;
        // Beside the file, named for this process: never the file itself, never another
        // process's (two levees overlap during an upgrade).
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }

    /// Read back what `save` wrote: switches of routes `known` accepts whose TTL has not passed
    /// by `now` are set again. Returns the switches restored and the routes skipped (no longer
    /// in the config). A missing file is nothing to restore; an unreadable one is an error.
    #[allow(clippy::type_complexity)]
    pub fn restore(
        &self,
        path: &Path,
        now: DateTime<Utc>,
        known: impl Fn(&str) -> bool,
    ) -> Result<(Vec<(String, Switch)>, Vec<String>), String> {
        let body = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((vec![], vec![])),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let file: SavedFile = serde_json::from_slice(&body)
            .map_err(|e| format!("{}: not a levee state file: {e}", path.display()))?;
        let time = |t: &str| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("{}: bad time {t:?}: {e}", path.display()))
        };
        if file.version != 1 {
            return Err(format!(
                "{}: state file version {} (this levee reads version 1)",
                path.display(),
                file.version
            ));
        }
        // Every entry is checked before any is set: a damaged file applies nothing.
        let (mut restored, mut skipped) = (Vec::new(), Vec::new());
        for s in file.switches {
            let state = SwitchState::parse(&s.state)
                .ok_or_else(|| format!("{}: bad state {:?}", path.display(), s.state))?;
            let until = s.until.as_deref().map(time).transpose()?;
            let set_at = time(&s.set_at)?;
            if until.is_some_and(|u| now >= u) {
                continue; // expired while levee was down
            }
            if !known(&s.route) {
                skipped.push(s.route);
                continue;
            }
            let sw = Switch {
                state,
                until,
                reason: s.reason,
                by: s.by,
                set_at,
            };
            restored.push((s.route, sw));
        }
        for (route, sw) in &restored {
            self.set(route, sw.clone());
        }
        Ok((restored, skipped))
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

    #[test]
    fn manual_switches_survive_a_save_and_restore_unless_expired_or_unknown() {
        let now = Utc::now();
        let sw = |state, until: Option<i64>| Switch {
            state,
            until: until.map(|m| now + chrono::Duration::minutes(m)),
            reason: "ES at 95% CPU".into(),
            by: "ops".into(),
            set_at: now,
        };
        let a = Switches::default();
        a.set("search", sw(SwitchState::Off, None));
        a.set("recs", sw(SwitchState::Degrade, Some(30)));
        a.set("banner", sw(SwitchState::Off, Some(1)));
        a.set("old", sw(SwitchState::Off, None));
        let dir = std::env::temp_dir().join(format!("levee-switch-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        a.save(&path).unwrap();

        // Restarted five minutes later: banner's TTL passed, "old" is no longer a route.
        let b = Switches::default();
        let later = now + chrono::Duration::minutes(5);
        let (restored, skipped) = b.restore(&path, later, |r| r != "old").unwrap();
        assert_eq!(restored.len(), 2);
        assert_eq!(skipped, ["old"]);
        assert_eq!(b.current("search", later), SwitchState::Off);
        assert_eq!(b.current("recs", later), SwitchState::Degrade);
        assert_eq!(b.current("banner", later), SwitchState::On);
        let (_, Source::Manual(s)) = b.state("recs", later) else {
            panic!("recs should be a manual switch");
        };
        assert_eq!(
            s,
            a.manual().into_iter().find(|(r, _)| r == "recs").unwrap().1
        );

        // A file with one bad entry after good ones applies none of them.
        let c = Switches::default();
        let good = r#"{"route":"search","state":"off","until":null,"reason":"","by":"ops","set_at":"2026-11-22T10:00:00Z"}"#;
        let bad = r#"{"route":"recs","state":"sideways","until":null,"reason":"","by":"ops","set_at":"2026-11-22T10:00:00Z"}"#;
        std::fs::write(
            &path,
            format!(r#"{{"version":1,"switches":[{good},{bad}]}}"#),
        )
        .unwrap();
        let e = c.restore(&path, later, |_| true).unwrap_err();
        assert!(e.contains("bad state"), "{e}");
        assert!(!c.any(), "nothing applied from a damaged file");

        // No file: nothing to restore. A damaged file: an error naming it.
        let missing = dir.join("none.json");
        assert_eq!(b.restore(&missing, later, |_| true).unwrap().0.len(), 0);
        std::fs::write(&path, "{\"version\":1,\"switches\":[{\"route\":").unwrap();
        let e = b.restore(&path, later, |_| true).unwrap_err();
        assert!(
            e.contains("state.json") && e.contains("not a levee state file"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
