//! The access log (`[log]`): one JSON line per request, bounded in every direction, because
//! a proxy must never be the thing that fills a disk during a sale.
//!
//! - **Sampling**: successful requests are logged with probability `sample`; errors (5xx)
//!   and levee's own answers (rejections) are always candidates.
//! - **Rate cap**: at most `errors_per_second` error/rejection lines a second; the rest are
//!   counted, and a `{"dropped":N,"why":"rate_cap"}` line says how many.
//! - **Never blocks**: lines go through a bounded channel to a writer thread; when it is full
//!   the line is dropped and counted (`"why":"queue_full"`). The request path only formats a
//!   line (for the few it keeps) and does one `try_send`.
//! - **Rotation**: the file is rotated at `max_size` and at most `max_files` files are kept
//!   (`levee.log`, `levee.log.1`, …), so disk use is bounded by `max_size x (max_files + 1)`.
//!
//! `levee_access_log_dropped_total{why}` counts every line not written.

use crate::config::LogSpec;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What one request looked like, for its line.
pub struct Entry<'a> {
    pub request_id: &'a str,
    pub trace_id: Option<&'a str>,
    pub route: &'a str,
    pub pool: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub reason: Option<&'a str>,
    pub upstream: Option<std::net::SocketAddr>,
    pub upstream_ms: Option<f64>,
    pub total_ms: f64,
    pub bytes: usize,
    pub client: Option<std::net::IpAddr>,
}

pub struct AccessLog {
    sample: f64,
    cap: u32,
    window: Mutex<(Instant, u32, u64)>,
    tx: SyncSender<String>,
    dropped_cap: prometheus::IntCounter,
    dropped_full: prometheus::IntCounter,
    pending_full: AtomicU64,
}

/// Longest path written (the rest is cut; a 64 KiB URL must not make a 64 KiB line).
const MAX_PATH: usize = 256;

impl AccessLog {
    /// Start the writer thread. `dropped` is `levee_access_log_dropped_total`.
    pub fn start(
        spec: &LogSpec,
        dropped: &prometheus::IntCounterVec,
    ) -> std::io::Result<AccessLog> {
        let (tx, rx) = sync_channel::<String>(spec.buffer);
        let sink: Box<dyn Write + Send> = match &spec.file {
            None => Box::new(std::io::stdout()),
            Some(p) => Box::new(Rotating::open(p, spec.max_size, spec.max_files)?),
        };
        std::thread::Builder::new()
            .name("levee-access-log".into())
            .spawn(move || writer(rx, sink))?;
        Ok(AccessLog {
            sample: spec.sample,
            cap: spec.errors_per_second,
            window: Mutex::new((Instant::now(), 0, 0)),
            tx,
            dropped_cap: dropped.with_label_values(&["rate_cap"]),
            dropped_full: dropped.with_label_values(&["queue_full"]),
            pending_full: AtomicU64::new(0),
        })
    }

    /// Log one finished request, if sampling and the cap allow.
    pub fn log(&self, e: &Entry<'_>) {
        let notable = e.status >= 500 || e.reason.is_some() || e.status == 0;
        let mut note = None;
        if notable {
            let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
            if w.0.elapsed() >= Duration::from_secs(1) {
                if w.2 > 0 {
                    note = Some(w.2);
                }
                *w = (Instant::now(), 0, 0);
            }
            if w.1 >= self.cap {
                w.2 += 1;
                self.dropped_cap.inc();
                drop(w);
                if let Some(n) = note {
                    self.send(dropped_line(n, "rate_cap"));
                }
                return;
            }
            w.1 += 1;
        } else if self.sample < 1.0 && rand::random::<f64>() >= self.sample {
            return;
        }
        if let Some(n) = note {
            self.send(dropped_line(n, "rate_cap"));
        }
        let full = self.pending_full.swap(0, Ordering::Relaxed);
        if full > 0 {
            self.send(dropped_line(full, "queue_full"));
        }
        self.send(line(e));
    }

    fn send(&self, s: String) {
        match self.tx.try_send(s) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped_full.inc();
                self.pending_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn dropped_line(n: u64, why: &str) -> String {
    format!(
        "{{\"time\":\"{}\",\"dropped\":{n},\"why\":\"{why}\"}}\n",
        now_rfc3339()
    )
}

fn line(e: &Entry<'_>) -> String {
    let mut path = e.path;
    if path.len() > MAX_PATH {
        let mut end = MAX_PATH;
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        path = &path[..end];
    }
    let v = serde_json::json!({
        "time": now_rfc3339(),
        "request_id": e.request_id,
        "trace_id": e.trace_id,
        "route": e.route,
        "pool": e.pool,
        "method": e.method,
        "path": path,
        "status": e.status,
        "reason": e.reason,
        "upstream": e.upstream.map(|a| a.to_string()),
        "upstream_ms": e.upstream_ms.map(|m| (m * 1000.0).round() / 1000.0),
        "total_ms": (e.total_ms * 1000.0).round() / 1000.0,
        "bytes": e.bytes,
        "client": e.client.map(|a| a.to_string()),
    });
    let mut s = v.to_string();
    s.push('\n');
    s
}

/// The writer thread: write lines as they come, flush when idle for 200 ms.
fn writer(rx: Receiver<String>, mut sink: Box<dyn Write + Send>) {
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) => {
                let _ = sink.write_all(l.as_bytes());
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = sink.flush();
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = sink.flush();
                return;
            }
        }
    }
}

/// A file that rotates itself at `max_size`, keeping `max_files` old ones.
struct Rotating {
    path: PathBuf,
    max_size: u64,
    max_files: usize,
    out: BufWriter<File>,
    written: u64,
}

impl Rotating {
    fn open(path: &Path, max_size: u64, max_files: usize) -> std::io::Result<Rotating> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        let written = f.metadata()?.len();
        Ok(Rotating {
            path: path.to_path_buf(),
            max_size,
            max_files,
            out: BufWriter::with_capacity(64 * 1024, f),
            written,
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let name = |i: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        let _ = std::fs::remove_file(name(self.max_files));
        for i in (1..self.max_files).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        if self.max_files > 0 {
            std::fs::rename(&self.path, name(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.out = BufWriter::with_capacity(64 * 1024, f);
        self.written = 0;
        Ok(())
    }
}

impl Write for Rotating {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > self.max_size && self.written > 0 {
            self.rotate()?;
        }
        let n = self.out.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_bounds_the_files() {
        let dir = std::env::temp_dir().join(format!("levee-rot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let mut r = Rotating::open(&path, 1000, 2).unwrap();
        for i in 0..500 {
            r.write_all(format!("line {i:05} ......................\n").as_bytes())
                .unwrap();
        }
        r.flush().unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(files.len(), 3, "a.log, a.log.1, a.log.2");
        for f in &files {
            assert!(f.metadata().unwrap().len() <= 1000);
        }
        let newest = std::fs::read_to_string(&path).unwrap();
        assert!(newest.ends_with("line 00499 ......................\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
