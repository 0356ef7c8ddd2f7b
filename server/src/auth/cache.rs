//! A bounded map whose entries expire: the TokenReview and SubjectAccessReview answers, as the Kubernetes webhook caches keep them.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept at most; when full, expired entries go first, then everything.
const MAX_ENTRIES: usize = 16_384;

/// Values with an expiry time.
pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new() -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value of `key` if it has not expired.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut m = self.entries.lock().unwrap();
        match m.get(key) {
            Some((until, v)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                m.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` for `ttl` (a zero TTL keeps nothing).
    pub fn put(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut m = self.entries.lock().unwrap();
        if m.len() >= MAX_ENTRIES {
            m.retain(|_, (until, _)| *until > now);
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
        }
        m.insert(key, (now + ttl, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_map_stays_bounded() {
        let c = TtlCache::new();
        c.put("a", 1, Duration::from_millis(30));
        c.put("z", 9, Duration::ZERO);
        assert_eq!(c.get(&"a"), Some(1));
        assert_eq!(c.get(&"z"), None);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.get(&"a"), None);
        let c = TtlCache::new();
        for i in 0..MAX_ENTRIES + 5 {
            c.put(i, i, Duration::from_secs(60));
        }
        assert!(c.entries.lock().unwrap().len() <= MAX_ENTRIES);
        assert_eq!(c.get(&(MAX_ENTRIES + 4)), Some(MAX_ENTRIES + 4));
    }
}
