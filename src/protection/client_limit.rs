//! The per-client rate limit (`routes.client_rate_limit`): GCRA per client key, so one client
//! hammering refresh is held to its own share while everyone else goes on. Admission step 4.
//!
//! Memory is bounded whatever the number of distinct keys: at most `max_keys` are tracked,
//! each as two `u64`s (a keyed hash of the client key, and its theoretical arrival time), in
//! 64 shards behind short mutexes. When a shard is full, keys that are idle (arrival time in
//! the past: indistinguishable from a key never seen, so dropping them loses nothing) go
//! first; if the shard is still over 7/8 full, arbitrary keys are dropped down to 7/8 (those
//! clients start over with a fresh burst: under a flood of random keys the limit fails open
//! per client, and the route limit and bulkhead still protect the backend). Each eviction
//! pass frees at least an eighth of the shard, so its cost is amortised to O(1) per insert.

use crate::config::ClientRateLimitSpec;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

const SHARDS: usize = 64;

/// Who a request is, for this limit: the configured key's value, or the client IP when the
/// request does not carry the key.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum ClientId<'a> {
    Ip(IpAddr),
    Value(&'a [u8]),
    Unknown,
}

pub struct ClientLimit {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    /// Emission interval and burst tolerance, in nanoseconds.
    period: u64,
    tolerance: u64,
    hasher: RandomState,
}

/// Keys are already hashes: the map only re-mixes them (one multiply).
#[derive(Default)]
struct Identity(u64);
impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // The top bits of `n` chose the shard, so within a shard they are all alike; the map
        // takes its tag from the top bits too. Re-mix so the table sees well-spread bits.
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[derive(Default)]
struct Shard {
    /// key hash → theoretical arrival time (ns on the limiter's clock).
    tat: HashMap<u64, u64, BuildHasherDefault<Identity>>,
    evicted: u64,
}

impl ClientLimit {
    pub fn new(spec: &ClientRateLimitSpec) -> ClientLimit {
        let period = ((1e9 / spec.rps) as u64).max(1);
        ClientLimit {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: spec.max_keys.div_ceil(SHARDS).max(1),
            period,
            tolerance: period.saturating_mul(u64::from(spec.burst.max(1))),
            hasher: RandomState::new(),
        }
    }

    /// Spend one of `id`'s tokens at `now` (ns): `Ok`, or `Err(wait)` until its next token.
    pub fn check(&self, id: ClientId<'_>, now: u64) -> Result<(), Duration> {
        let h = self.hasher.hash_one(id);
        let mut shard = self.shards[(h >> 58) as usize % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let prior = shard.tat.get(&h).copied();
        let new_tat = prior.unwrap_or(0).max(now) + self.period;
        if new_tat - now > self.tolerance {
            return Err(Duration::from_nanos(new_tat - self.tolerance - now));
        }
        if prior.is_none() && shard.tat.len() >= self.per_shard {
            shard.make_room(now, self.per_shard - self.per_shard / 8);
        }
        shard.tat.insert(h, new_tat);
        Ok(())
    }

    /// Keys tracked now (for status and the memory bench).
    pub fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.tat.len()))
            .sum()
    }

    /// Active keys dropped because the table was full (idle keys are not counted).
    pub fn evicted(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.evicted))
            .sum()
    }

    /// Drop idle keys everywhere and give memory back when a shard is mostly empty (a
    /// background tidy every 10 s; the table stays bounded without it).
    pub fn sweep(&self, now: u64) {
        for s in self.shards.iter() {
            if let Ok(mut s) = s.lock() {
                s.tat.retain(|_, tat| *tat > now);
                if s.tat.capacity() > 64 && s.tat.len() < s.tat.capacity() / 4 {
                    s.tat.shrink_to_fit();
                }
            }
        }
    }
}

impl Shard {
    fn make_room(&mut self, now: u64, target: usize) {
        self.tat.retain(|_, tat| *tat > now);
        let excess = self.tat.len().saturating_sub(target);
        if excess > 0 {
            let victims: Vec<u64> = self.tat.keys().take(excess).copied().collect();
            for k in victims {
                self.tat.remove(&k);
            }
            self.evicted += excess as u64;
        }
    }
}

/// The client id for `key` from a request's headers (`header:NAME`, `cookie:NAME`), falling
/// back to the client IP when the request does not carry it.
pub fn client_id<'a>(
    key: &crate::config::ClientKey,
    headers: &'a http::HeaderMap,
    ip: Option<IpAddr>,
) -> ClientId<'a> {
    use crate::config::ClientKey;
    let found = match key {
        ClientKey::Ip => None,
        ClientKey::Header(name) => headers
            .get(name.as_str())
            .map(|v| v.as_bytes())
            .filter(|v| !v.is_empty()),
        ClientKey::Cookie(name) => cookie(headers, name.as_bytes()),
    };
    match (found, ip) {
        (Some(v), _) => ClientId::Value(v),
        (None, Some(ip)) => ClientId::Ip(ip),
        (None, None) => ClientId::Unknown,
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a http::HeaderMap, name: &[u8]) -> Option<&'a [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (&pair[..eq] == name).then(|| &pair[eq + 1..])
        })
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientKey;

    const MS: u64 = 1_000_000;

    fn spec(rps: f64, burst: u32, max_keys: usize) -> ClientRateLimitSpec {
        ClientRateLimitSpec {
            key: ClientKey::Ip,
            rps,
            burst,
            max_keys,
            shadow: false,
        }
    }

    #[test]
    fn greedy_client_is_limited_polite_one_is_not() {
        let l = ClientLimit::new(&spec(2.0, 5, 1000));
        let greedy = ClientId::Value(b"greedy");
        let polite = ClientId::Value(b"polite");
        let ok = (0..20)
            .filter(|_| l.check(greedy, 1000 * MS).is_ok())
            .count();
        assert_eq!(ok, 5);
        assert_eq!(l.check(greedy, 1000 * MS), Err(Duration::from_millis(500)));
        assert!(l.check(polite, 1000 * MS).is_ok());
        // Steady state: 2/s exactly over 10 simulated seconds of 20/s offered.
        let mut t = 1000 * MS;
        let mut passed = 0;
        for _ in 0..200 {
            t += 50 * MS;
            passed += l.check(greedy, t).is_ok() as u32;
        }
        assert_eq!(passed, 20);
    }

    #[test]
    fn memory_is_bounded_and_idle_keys_go_first() {
        let l = ClientLimit::new(&spec(1.0, 1, 6400));
        // 100k distinct keys within one second: all active, the table stays bounded.
        for i in 0u64..100_000 {
            let k = i.to_le_bytes();
            assert!(l.check(ClientId::Value(&k), 5 * MS).is_ok());
        }
        assert!(l.keys() <= 6400, "{} keys", l.keys());
        assert!(l.evicted() > 0);
        // Much later every key is idle: new keys (fewer than fit) displace them without
        // evicting any active key.
        let before = l.evicted();
        for i in 0u64..3_000 {
            let k = (1_000_000 + i).to_le_bytes();
            assert!(l.check(ClientId::Value(&k), 60_000 * MS).is_ok());
        }
        assert!(l.keys() <= 6400);
        assert_eq!(l.evicted(), before);
        l.sweep(120_000 * MS);
        assert_eq!(l.keys(), 0);
    }

    #[test]
    fn keys_from_requests() {
        let mut h = http::HeaderMap::new();
        h.insert("x-client", "abc".parse().unwrap());
        h.append("cookie", "a=1; sid=xyz".parse().unwrap());
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let hk = ClientKey::Header("x-client".into());
        assert_eq!(client_id(&hk, &h, Some(ip)), ClientId::Value(b"abc"));
        let ck = ClientKey::Cookie("sid".into());
        assert_eq!(client_id(&ck, &h, Some(ip)), ClientId::Value(b"xyz"));
        let missing = ClientKey::Cookie("nope".into());
        assert_eq!(client_id(&missing, &h, Some(ip)), ClientId::Ip(ip));
        assert_eq!(client_id(&ClientKey::Ip, &h, Some(ip)), ClientId::Ip(ip));
    }
}
