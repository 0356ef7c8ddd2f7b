//! The pod metadata cache: by uid (and namespace/name for paths without one), versioned so
//! readers re-check their files only on a change, entries dropped after `cache_ttl` unlisted, and
//! a first miss of a pod waking the refresher early.

use super::pods::PodMeta;
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

struct Cached {
    pod: Arc<PodMeta>,
    last_seen: Instant,
}

#[derive(Default)]
struct CacheInner {
    by_uid: HashMap<String, Cached>,
    /// `namespace/name` → uid, for files whose path carries no uid (`/var/log/containers` links).
    by_name: HashMap<String, String>,
}

/// Pod metadata by uid. The version changes whenever the contents do, so readers re-check their files only then.
#[derive(Default)]
pub struct PodCache {
    inner: RwLock<CacheInner>,
    version: AtomicU64,
    /// Pods looked up and not found; the first miss of each wakes the refresher early, so a new
    /// pod gets its metadata within `MIN_REFRESH_GAP` instead of a whole refresh interval.
    missed: std::sync::Mutex<std::collections::HashSet<String>>,
    wake: tokio::sync::Notify,
}

/// The shortest time between two refreshes, also when misses ask for one early.
pub const MIN_REFRESH_GAP: Duration = Duration::from_secs(2);
/// Missed pods remembered (so one pod that is never listed asks for one early refresh only).
const MISSED_REMEMBERED: usize = 10_000;

impl PodCache {
    /// Bumped on every change of the contents.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Returns once a pod the cache did not know was looked up (the first miss of each pod).
    pub(super) async fn missed_pod(&self) {
        self.wake.notified().await;
    }

    /// The pod with this uid (or, when `uid` is empty, this namespace and name); counts lookups and misses.
    pub fn lookup(
        &self,
        uid: &str,
        namespace: &str,
        name: &str,
        metrics: &Metrics,
    ) -> Option<Arc<PodMeta>> {
        metrics.metadata_lookups.inc_by(1);
        let g = self.inner.read().expect("pod cache lock");
        let found = if uid.is_empty() {
            g.by_name
                .get(&format!("{namespace}/{name}"))
                .and_then(|u| g.by_uid.get(u))
        } else {
            g.by_uid.get(uid)
        };
        let found = found.map(|c| c.pod.clone());
        drop(g);
        if found.is_none() {
            metrics.metadata_misses.inc_by(1);
            let key = if uid.is_empty() {
                format!("{namespace}/{name}")
            } else {
                uid.to_string()
            };
            let mut missed = self.missed.lock().expect("missed pods lock");
            if missed.len() >= MISSED_REMEMBERED {
                missed.clear();
            }
            if missed.insert(key) {
                self.wake.notify_one();
            }
        }
        found
    }

    /// Merges a fresh list: new or changed pods replace their entries, pods not listed for `ttl` are dropped.
    pub(super) fn update(
        &self,
        pods: Vec<(String, PodMeta)>,
        ttl: Duration,
        now: Instant,
    ) -> usize {
        let mut g = self.inner.write().expect("pod cache lock");
        let mut changed = false;
        for (uid, meta) in pods {
            match g.by_uid.get_mut(&uid) {
                Some(c) if *c.pod == meta => c.last_seen = now,
                _ => {
                    let key = format!("{}/{}", meta.namespace, meta.name);
                    g.by_name.insert(key, uid.clone());
                    g.by_uid.insert(
                        uid,
                        Cached {
                            pod: Arc::new(meta),
                            last_seen: now,
                        },
                    );
                    changed = true;
                }
            }
        }
        let before = g.by_uid.len();
        g.by_uid
            .retain(|_, c| now.duration_since(c.last_seen) < ttl);
        if g.by_uid.len() != before {
            let CacheInner { by_uid, by_name } = &mut *g;
            by_name.retain(|_, uid| by_uid.contains_key(uid));
            changed = true;
        }
        if changed {
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        g.by_uid.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_versions_lookups_and_ttl() {
        let m = Metrics::default();
        let cache = PodCache::default();
        let now = Instant::now();
        let pod = |app: &str| PodMeta {
            namespace: "shop".into(),
            name: "web-0".into(),
            labels: [("app".to_string(), app.to_string())].into(),
            ..Default::default()
        };
        assert!(cache.lookup("u1", "shop", "web-0", &m).is_none());
        cache.update(vec![("u1".into(), pod("a"))], Duration::from_secs(60), now);
        let v1 = cache.version();
        assert_eq!(cache.lookup("u1", "", "", &m).unwrap().labels["app"], "a");
        assert_eq!(
            cache.lookup("", "shop", "web-0", &m).unwrap().labels["app"],
            "a"
        );
        // The same content again: no new version.
        cache.update(vec![("u1".into(), pod("a"))], Duration::from_secs(60), now);
        assert_eq!(cache.version(), v1);
        cache.update(vec![("u1".into(), pod("b"))], Duration::from_secs(60), now);
        assert!(cache.version() > v1);
        // Not listed for longer than the TTL: gone.
        cache.update(
            vec![],
            Duration::from_secs(60),
            now + Duration::from_secs(61),
        );
        assert!(cache.lookup("u1", "", "", &m).is_none());
        assert_eq!(m.metadata_lookups.get(), 4);
        assert_eq!(m.metadata_misses.get(), 2);
    }
}
