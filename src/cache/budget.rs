//! One route cache's memory budget: an LRU eviction manager (pingora-cache's
//! `EvictionManager`) over the entries of that route's store only, so a flood of new pages on
//! one route evicts that route's own old pages and never another route's. Unlike Pingora's
//! `simple_lru`, its limit can change on reload, and it can list what it holds (to purge
//! every variant of a page, or empty the store when the route goes away).

use async_trait::async_trait;
use lru::LruCache;
use pingora_cache::eviction::{CacheEntryKey, CacheEntryKeyRef, EvictionManager};
use pingora_error::Result;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

/// An owned key and a borrowed one hash alike, so both find the same entry.
fn slot(k: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    k.hash(&mut h);
    h.finish()
}

pub struct Budget {
    lru: Mutex<LruCache<u64, (CacheEntryKey, usize)>>,
    limit: AtomicUsize,
    used: AtomicUsize,
    evicted_size: AtomicUsize,
    evicted_items: AtomicUsize,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget {
            lru: Mutex::new(LruCache::unbounded()),
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
            evicted_size: AtomicUsize::new(0),
            evicted_items: AtomicUsize::new(0),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// A new limit (reload). Returns what no longer fits, for the caller to purge.
    pub fn set_limit(&self, limit: usize) -> Vec<CacheEntryKey> {
        self.limit.store(limit, Ordering::Relaxed);
        let mut lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        self.evict(&mut lru)
    }

    /// Forget every entry, returning them (the caller purges them from the store).
    pub fn drain(&self) -> Vec<CacheEntryKey> {
        let mut lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        let out: Vec<CacheEntryKey> = lru.iter().map(|(_, (k, _))| k.clone()).collect();
        lru.clear();
        self.used.store(0, Ordering::Relaxed);
        out
    }

    /// Every entry (each method, key-header value and variant) of one page: the keys whose
    /// user tag (`policy::key` puts the path and query there) is `tag`.
    pub fn entries_tagged(&self, tag: &str) -> Vec<CacheEntryKey> {
        let lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        lru.iter()
            .filter(|(_, (k, _))| &*k.key().user_tag == tag)
            .map(|(_, (k, _))| k.clone())
            .collect()
    }

    fn insert(&self, item: CacheEntryKey, size: usize) -> Vec<CacheEntryKey> {
        let mut lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, old)) = lru.put(slot(&item), (item, size)) {
            self.used.fetch_sub(old, Ordering::Relaxed);
        }
        self.used.fetch_add(size, Ordering::Relaxed);
        self.evict(&mut lru)
    }

    /// Drop least recently used entries until under the limit.
    fn evict(&self, lru: &mut LruCache<u64, (CacheEntryKey, usize)>) -> Vec<CacheEntryKey> {
        let mut out = Vec::new();
        while self.used.load(Ordering::Relaxed) > self.limit() {
            let Some((_, (k, size))) = lru.pop_lru() else {
                break;
            };
            self.used.fetch_sub(size, Ordering::Relaxed);
            self.evicted_size.fetch_add(size, Ordering::Relaxed);
            self.evicted_items.fetch_add(1, Ordering::Relaxed);
            out.push(k);
        }
        out
    }
}

#[async_trait]
impl EvictionManager for Budget {
    fn total_size(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
    fn total_items(&self) -> usize {
        self.lru.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    fn evicted_size(&self) -> usize {
        self.evicted_size.load(Ordering::Relaxed)
    }
    fn evicted_items(&self) -> usize {
        self.evicted_items.load(Ordering::Relaxed)
    }

    fn admit(&self, item: CacheEntryKey, size: usize, _fresh: SystemTime) -> Vec<CacheEntryKey> {
        self.insert(item, size)
    }

    fn increment_weight(
        &self,
        item: &CacheEntryKey,
        delta: usize,
        max_weight: Option<usize>,
    ) -> Vec<CacheEntryKey> {
        let mut lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        let key = slot(item);
        let grown = match lru.get_mut(&key) {
            Some((_, size)) => {
                let new = match max_weight {
                    Some(m) if *size >= m => *size,
                    Some(m) => (*size + delta).min(m),
                    None => *size + delta,
                };
                self.used.fetch_add(new - *size, Ordering::Relaxed);
                *size = new;
                true
            }
            None => false,
        };
        if !grown {
            let size = max_weight.map_or(delta, |m| delta.min(m)).max(1);
            lru.put(key, (item.clone(), size));
            self.used.fetch_add(size, Ordering::Relaxed);
        }
        self.evict(&mut lru)
    }

    fn remove(&self, item: CacheEntryKeyRef<'_>) {
        let removed = self
            .lru
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop(&slot(item));
        if let Some((_, size)) = removed {
            self.used.fetch_sub(size, Ordering::Relaxed);
        }
    }

    fn access(&self, item: &CacheEntryKey, size: usize, _fresh: SystemTime) -> bool {
        let mut lru = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        if lru.get(&slot(item)).is_some() {
            return true;
        }
        drop(lru);
        // Not tracked (e.g. admitted before a restart of the budget): track it now.
        let _ = self.insert(item.clone(), size);
        false
    }

    fn peek(&self, item: &CacheEntryKey) -> bool {
        self.lru
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .peek(&slot(item))
            .is_some()
    }

    async fn save(&self, _dir: &str) -> Result<()> {
        Ok(()) // the cache lives in memory only: nothing outlives the process
    }

    async fn load(&self, _dir: &str) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_cache::CacheKey;

    fn key(s: &str) -> CacheEntryKey {
        CacheEntryKey::key_only(CacheKey::new(s, "t").to_compact())
    }

    #[test]
    fn evicts_least_recently_used_past_the_limit() {
        let b = Budget::new(100);
        let now = SystemTime::now();
        assert!(b.admit(key("a"), 40, now).is_empty());
        assert!(b.admit(key("b"), 40, now).is_empty());
        assert!(b.access(&key("a"), 40, now)); // a is now the most recent
        let out = b.admit(key("c"), 40, now);
        assert_eq!(out, vec![key("b")]);
        assert_eq!(b.total_size(), 80);
        assert_eq!(b.evicted_items(), 1);
        assert_eq!(b.evicted_size(), 40);
    }

    #[test]
    fn readmitting_replaces_the_size() {
        let b = Budget::new(100);
        let now = SystemTime::now();
        b.admit(key("a"), 40, now);
        b.admit(key("a"), 10, now);
        assert_eq!(b.total_size(), 10);
        assert_eq!(b.total_items(), 1);
    }

    #[test]
    fn shrinking_the_limit_returns_what_no_longer_fits() {
        let b = Budget::new(100);
        let now = SystemTime::now();
        for k in ["a", "b", "c"] {
            b.admit(key(k), 30, now);
        }
        let out = b.set_limit(40);
        assert_eq!(out, vec![key("a"), key("b")]);
        assert_eq!(b.total_size(), 30);
    }

    #[test]
    fn remove_by_borrowed_key_and_drain() {
        let b = Budget::new(100);
        let now = SystemTime::now();
        b.admit(key("a"), 30, now);
        b.admit(key("b"), 30, now);
        let a = key("a");
        b.remove((&a).into());
        assert_eq!(b.total_size(), 30);
        assert!(!b.peek(&a));
        assert_eq!(b.drain(), vec![key("b")]);
        assert_eq!(b.total_size(), 0);
    }

    #[test]
    fn entries_tagged_finds_every_variant_of_a_page() {
        let b = Budget::new(1000);
        let now = SystemTime::now();
        let mut v1 = CacheKey::new("GET page", "/p/1");
        v1.set_variance_key([1; 16]);
        let mut v2 = CacheKey::new("GET page", "/p/1");
        v2.set_variance_key([2; 16]);
        let head = CacheKey::new("HEAD page", "/p/1");
        for k in [v1, v2, head] {
            b.admit(CacheEntryKey::key_only(k.to_compact()), 10, now);
        }
        b.admit(
            CacheEntryKey::key_only(CacheKey::new("GET other", "/p/2").to_compact()),
            10,
            now,
        );
        assert_eq!(b.entries_tagged("/p/1").len(), 3);
    }
}
