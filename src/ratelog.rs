//! Rate-limited logging for per-request events (rejections, upstream failures): at most
//! `per_sec` lines a second; the rest are counted and reported in the next line that gets
//! through, so a flood of rejections can never flood the disk. Lock-free: one atomic window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct RateLog {
    per_sec: u64,
    /// High 32 bits: current second (wrapping); low 32 bits: lines logged in it.
    window: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLog {
    pub fn new(per_sec: u64) -> Self {
        RateLog {
            per_sec,
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Returns `Some(suppressed_since_last)` when a line may be written now, else counts it.
    pub fn admit(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.admit_at(now)
    }

    fn admit_at(&self, now_secs: u64) -> Option<u64> {
        let sec = now_secs & 0xffff_ffff;
        let mut cur = self.window.load(Ordering::Relaxed);
        loop {
            let (wsec, count) = (cur >> 32, cur & 0xffff_ffff);
            let next = if wsec == sec {
                if count >= self.per_sec {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                (sec << 32) | (count + 1)
            } else {
                (sec << 32) | 1
            };
            match self
                .window
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(self.suppressed.swap(0, Ordering::Relaxed)),
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_lines_per_second_and_counts_the_rest() {
        let l = RateLog::new(3);
        let got: Vec<_> = (0..10).map(|_| l.admit_at(100)).collect();
        assert_eq!(got.iter().filter(|g| g.is_some()).count(), 3);
        assert_eq!(l.admit_at(101), Some(7));
        assert_eq!(l.admit_at(101), Some(0));
    }
}
