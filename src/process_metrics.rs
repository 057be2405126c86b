//! The process's own vital signs on `/metrics`, read from `/proc/self` at scrape time (never
//! on the request path), under the names every Prometheus client library uses:
//! `process_open_fds` against `process_max_fds` (a proxy in a flash sale runs out of file
//! descriptors before it runs out of CPU), `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_cpu_seconds_total`, `process_start_time_seconds`
//! and `process_threads`; and `levee_build_info{version}` (always 1), to tell which build
//! runs. On a system without `/proc` the process families are simply absent.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge, Opts};

/// What `/proc/self/stat` says, in the units it uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    pub threads: i64,
    /// Start time, in clock ticks after boot.
    pub start_ticks: u64,
    pub vsize_bytes: u64,
    pub rss_pages: i64,
}

/// Parse `/proc/self/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted after the *last* `)`.
pub fn parse_stat(s: &str) -> Option<Stat> {
    let rest = &s[s.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0 here, so field N is index N - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| f.get(field - 3)?.parse::<i64>().ok();
    Some(Stat {
        cpu_ticks: u64::try_from(num(14)? + num(15)?).ok()?,
        threads: num(20)?,
        start_ticks: u64::try_from(num(22)?).ok()?,
        vsize_bytes: u64::try_from(num(23)?).ok()?,
        rss_pages: num(24)?,
    })
}

/// The soft "Max open files" limit from `/proc/self/limits` (`None` when unlimited).
pub fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Boot time in seconds since the epoch, from `/proc/stat`'s `btime` line.
pub fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

pub struct ProcessCollector {
    descs: Vec<Desc>,
    build_info: IntGauge,
    open_fds: Gauge,
    max_fds: Gauge,
    rss: Gauge,
    vsize: Gauge,
    cpu: Counter,
    start: Gauge,
    threads: Gauge,
    ticks_per_second: f64,
    page_size: f64,
}

impl ProcessCollector {
    pub fn new() -> prometheus::Result<ProcessCollector> {
        let build_info = IntGauge::with_opts(
            Opts::new(
                "levee_build_info",
                "Always 1; the version label says which build of levee runs.",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build_info.set(1);
        let gauge = |name: &str, help: &str| Gauge::new(name, help);
        let c = ProcessCollector {
            build_info,
            open_fds: gauge("process_open_fds", "Number of open file descriptors.")?,
            max_fds: gauge(
                "process_max_fds",
                "Maximum number of open file descriptors (the soft limit).",
            )?,
            rss: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            )?,
            vsize: gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            )?,
            cpu: Counter::new(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
            )?,
            start: gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            )?,
            threads: gauge("process_threads", "Number of OS threads in the process.")?,
            descs: Vec::new(),
            // SAFETY: sysconf only reads a system constant.
            ticks_per_second: match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
                t if t > 0 => t as f64,
                _ => 100.0,
            },
            // SAFETY: as above.
            page_size: match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
                p if p > 0 => p as f64,
                _ => 4096.0,
            },
        };
        let descs = c
            .parts()
            .iter()
            .flat_map(|p| p.desc().into_iter().cloned())
            .chain(c.build_info.desc().into_iter().cloned())
            .collect();
        Ok(ProcessCollector { descs, ..c })
    }

    fn parts(&self) -> [&dyn Collector; 7] {
        [
            &self.open_fds,
            &self.max_fds,
            &self.rss,
            &self.vsize,
            &self.cpu,
            &self.start,
            &self.threads,
        ]
    }

    /// Read `/proc/self` into the metrics; `false` if it is not there.
    fn refresh(&self) -> bool {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return false;
        };
        if let Some(s) = parse_stat(&stat) {
            self.threads.set(s.threads as f64);
            self.vsize.set(s.vsize_bytes as f64);
            self.rss.set(s.rss_pages as f64 * self.page_size);
            // A counter only goes up: add what was used since the last scrape.
            let cpu = s.cpu_ticks as f64 / self.ticks_per_second;
            let seen = self.cpu.get();
            if cpu > seen {
                self.cpu.inc_by(cpu - seen);
            }
            if let Some(boot) = std::fs::read_to_string("/proc/stat")
                .ok()
                .as_deref()
                .and_then(parse_btime)
            {
                self.start
                    .set(boot as f64 + s.start_ticks as f64 / self.ticks_per_second);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries.
            self.open_fds.set(dir.count().saturating_sub(1) as f64);
        }
        if let Some(max) = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .as_deref()
            .and_then(parse_max_fds)
        {
            self.max_fds.set(max as f64);
        }
        true
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = self.build_info.collect();
        if self.refresh() {
            for p in self.parts() {
                out.extend(p.collect());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        // A command name with a space and a parenthesis, as a thread name can be.
        let line = "4242 (levee (proxy) x) S 1 4242 4242 0 -1 4194560 5000 0 0 0 \
                    150 50 0 0 20 0 7 0 123456 987654321 2500 18446744073709551615 1 1 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                cpu_ticks: 200,
                threads: 7,
                start_ticks: 123456,
                vsize_bytes: 987654321,
                rss_pages: 2500,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn limits_and_boot_time() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63432                63432                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_fds(unlimited), None);
        assert_eq!(
            parse_btime("cpu 1 2 3\nbtime 1763800000\n"),
            Some(1763800000)
        );
    }

    #[test]
    fn reads_this_process() {
        let c = ProcessCollector::new().unwrap();
        let fams = c.collect();
        let value = |name: &str| {
            let f = fams.iter().find(|f| f.name() == name)?;
            let m = &f.get_metric()[0];
            Some(if name.ends_with("_total") {
                m.get_counter().get_value()
            } else {
                m.get_gauge().get_value()
            })
        };
        assert_eq!(value("levee_build_info"), Some(1.0));
        if std::path::Path::new("/proc/self/stat").exists() {
            let fds = value("process_open_fds").unwrap();
            assert!(fds >= 3.0, "{fds}"); // stdin, stdout, stderr at least
            assert!(value("process_max_fds").unwrap() >= fds);
            assert!(value("process_resident_memory_bytes").unwrap() > 1e6);
            assert!(value("process_threads").unwrap() >= 1.0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            let start = value("process_start_time_seconds").unwrap();
            assert!(
                start <= now + 1.0 && start > now - 86_400.0,
                "{start} vs {now}"
            );
        }
    }
}
