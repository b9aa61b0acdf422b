//! The route table: which backends serve which hostnames, shared by the local runtimes
//! (writers, once per reconcile pass and at once when a replica is retired or changes
//! health) and the [`Router`](crate::Router) (reader, once per request).
//!
//! ```text
//!  LocalRuntime "dc1" ──set_cluster──┐
//!  LocalRuntime "dc2" ──set_cluster──┼─▶ RouteTable ◀──resolve(host)── Router
//!  retire / health change ─remove────┘   (copy-on-write snapshot)
//! ```
//!
//! Reads clone an `Arc` of the current snapshot under a read lock held for a few
//! nanoseconds; writes build a new snapshot. Writes are rare (a few per second), reads
//! are per request, so copy-on-write keeps the request path cheap.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use berth_core::render::WorkloadKey;

/// One replica that can take requests.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    /// Where it listens, e.g. `127.0.0.1:40123`.
    pub addr: SocketAddr,
    /// The container that serves there.
    pub container: String,
}

/// What one cluster serves for one application in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Application and environment.
    pub key: WorkloadKey,
    /// Hostnames answered (lowercase, without port).
    pub hosts: Vec<String>,
    /// Healthy replicas that are not being retired.
    pub backends: Vec<Backend>,
    /// Replicas wanted on this cluster.
    pub replicas: u32,
    /// Why the workload is not progressing, when the runtime knows (shown in 503 answers).
    pub status: Option<String>,
}

/// The backends for one request, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Application and environment (of the first matching route).
    pub key: WorkloadKey,
    /// Backends across all clusters, rotated round-robin: try the first, then the next.
    pub backends: Vec<Backend>,
    /// Replicas wanted across all clusters.
    pub replicas: u32,
    /// The first status message of the matching routes.
    pub status: Option<String>,
}

/// Routes of every cluster, by hostname. Cheap to clone: clones share the table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    inner: Arc<RwLock<Arc<Snapshot>>>,
}

#[derive(Debug, Default)]
struct Snapshot {
    /// Per cluster, its routes by workload.
    clusters: BTreeMap<String, BTreeMap<WorkloadKey, Route>>,
    /// Hostname → the routes answering it, as (cluster, key).
    by_host: HashMap<String, Vec<(String, WorkloadKey)>>,
    /// Workload → the clusters serving it.
    by_key: HashMap<WorkloadKey, Vec<String>>,
    /// Round-robin counters per hostname (or per workload), carried over across snapshots.
    counters: HashMap<String, Arc<AtomicUsize>>,
}

impl Snapshot {
    fn build(clusters: BTreeMap<String, BTreeMap<WorkloadKey, Route>>, previous: &Snapshot) -> Self {
        let mut by_host: HashMap<String, Vec<(String, WorkloadKey)>> = HashMap::new();
        let mut by_key: HashMap<WorkloadKey, Vec<String>> = HashMap::new();
        for (cluster, routes) in &clusters {
            for (key, route) in routes {
                by_key.entry(key.clone()).or_default().push(cluster.clone());
                for host in &route.hosts {
                    let entry = by_host.entry(host.clone()).or_default();
                    if !entry.iter().any(|(c, k)| c == cluster && k == key) {
                        entry.push((cluster.clone(), key.clone()));
                    }
                }
            }
        }
        let mut counters = HashMap::new();
        let names = by_host.keys().cloned().chain(by_key.keys().map(counter_name));
        for name in names {
            let counter = previous.counters.get(&name).cloned().unwrap_or_default();
            counters.insert(name, counter);
        }
        Self {
            clusters,
            by_host,
            by_key,
            counters,
        }
    }

    fn resolve_key(&self, key: &WorkloadKey) -> Option<Resolved> {
        let entries: Vec<(String, WorkloadKey)> = self
            .by_key
            .get(key)?
            .iter()
            .map(|cluster| (cluster.clone(), key.clone()))
            .collect();
        self.resolve_entries(&entries, &counter_name(key))
    }

    fn resolve_entries(&self, entries: &[(String, WorkloadKey)], counter: &str) -> Option<Resolved> {
        let mut routes = entries
            .iter()
            .filter_map(|(cluster, key)| self.clusters.get(cluster).and_then(|r| r.get(key)));
        let first = routes.next()?;
        let mut resolved = Resolved {
            key: first.key.clone(),
            backends: first.backends.clone(),
            replicas: first.replicas,
            status: first.status.clone(),
        };
        for route in routes {
            resolved.backends.extend(route.backends.iter().cloned());
            resolved.replicas = resolved.replicas.saturating_add(route.replicas);
            if resolved.status.is_none() {
                resolved.status.clone_from(&route.status);
            }
        }
        if !resolved.backends.is_empty() {
            let turn = self
                .counters
                .get(counter)
                .map_or(0, |c| c.fetch_add(1, Ordering::Relaxed));
            let len = resolved.backends.len();
            resolved.backends.rotate_left(turn % len);
        }
        Some(resolved)
    }
}

fn counter_name(key: &WorkloadKey) -> String {
    // A space cannot appear in a hostname, so these never collide with host counters.
    format!("key {key}")
}

/// Lowercases a `Host` value and strips its port and a trailing dot.
#[must_use]
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        // IPv6 literal: keep the brackets, drop what follows them.
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

impl RouteTable {
    /// An empty table.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.inner.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn update(&self, change: impl FnOnce(&mut BTreeMap<String, BTreeMap<WorkloadKey, Route>>)) {
        let mut current = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let mut clusters = current.clusters.clone();
        change(&mut clusters);
        *current = Arc::new(Snapshot::build(clusters, &current));
    }

    /// Replaces everything `cluster` serves with `routes`.
    pub fn set_cluster(&self, cluster: &str, routes: Vec<Route>) {
        let routes: BTreeMap<WorkloadKey, Route> = routes
            .into_iter()
            .map(|mut route| {
                route.hosts = route.hosts.iter().map(|h| normalize_host(h)).collect();
                route.hosts.sort();
                route.hosts.dedup();
                route.backends.sort();
                (route.key.clone(), route)
            })
            .collect();
        self.update(|clusters| {
            if routes.is_empty() {
                clusters.remove(cluster);
            } else {
                clusters.insert(cluster.to_owned(), routes);
            }
        });
    }

    /// Takes one container out of traffic at once (it is being retired).
    pub fn remove_backend(&self, cluster: &str, container: &str) {
        let present = self.snapshot().clusters.get(cluster).is_some_and(|routes| {
            routes
                .values()
                .any(|r| r.backends.iter().any(|b| b.container == container))
        });
        if present {
            self.update(|clusters| {
                if let Some(routes) = clusters.get_mut(cluster) {
                    for route in routes.values_mut() {
                        route.backends.retain(|b| b.container != container);
                    }
                }
            });
        }
    }

    /// Forgets everything `cluster` serves.
    pub fn remove_cluster(&self, cluster: &str) {
        self.update(|clusters| {
            clusters.remove(cluster);
        });
    }

    /// The backends for a `Host` value (any case, with or without port): a hostname listed
    /// by some workload, or else `<app>.<env>.<domain>` when `domain` is given.
    #[must_use]
    pub fn resolve(&self, host: &str, domain: Option<&str>) -> Option<Resolved> {
        let host = normalize_host(host);
        let snapshot = self.snapshot();
        if let Some(entries) = snapshot.by_host.get(&host) {
            return snapshot.resolve_entries(entries, &host);
        }
        let domain = normalize_host(domain?);
        let prefix = host.strip_suffix(&domain)?.strip_suffix('.')?;
        let (application, environment) = prefix.split_once('.')?;
        if environment.contains('.') {
            return None;
        }
        snapshot.resolve_key(&WorkloadKey {
            application: application.to_owned(),
            environment: environment.to_owned(),
        })
    }

    /// The backends of one application in one environment, across clusters.
    #[must_use]
    pub fn resolve_key(&self, key: &WorkloadKey) -> Option<Resolved> {
        self.snapshot().resolve_key(key)
    }

    /// The routes of one cluster, by workload.
    #[must_use]
    pub fn cluster_routes(&self, cluster: &str) -> Vec<Route> {
        self.snapshot()
            .clusters
            .get(cluster)
            .map(|routes| routes.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(app: &str) -> WorkloadKey {
        WorkloadKey {
            application: app.into(),
            environment: "qa".into(),
        }
    }

    fn backend(port: u16) -> Backend {
        Backend {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            container: format!("c{port}"),
        }
    }

    fn route(app: &str, ports: &[u16]) -> Route {
        Route {
            key: key(app),
            hosts: vec![format!("{app}.qa.localhost"), "Shop.Example.com:8080".into()],
            backends: ports.iter().map(|p| backend(*p)).collect(),
            replicas: 2,
            status: None,
        }
    }

    #[test]
    fn hosts_are_normalized() {
        for (raw, want) in [
            ("Web.QA.localhost:8080", "web.qa.localhost"),
            ("web.qa.localhost.", "web.qa.localhost"),
            ("[::1]:80", "[::1]"),
            ("127.0.0.1", "127.0.0.1"),
            (" x ", "x"),
        ] {
            assert_eq!(normalize_host(raw), want, "{raw}");
        }
    }

    #[test]
    fn resolves_listed_hosts_round_robin_across_clusters() {
        let table = RouteTable::new();
        table.set_cluster("dc1", vec![route("web", &[1, 2])]);
        table.set_cluster("dc2", vec![route("web", &[3])]);
        let mut firsts = Vec::new();
        for _ in 0..6 {
            let r = table.resolve("WEB.qa.localhost:80", None).unwrap();
            assert_eq!(r.backends.len(), 3);
            assert_eq!(r.replicas, 4);
            firsts.push(r.backends[0].addr.port());
        }
        assert_eq!(firsts, [1, 2, 3, 1, 2, 3]);
        assert!(table.resolve("shop.example.com", None).is_some());
        assert!(table.resolve("other.qa.localhost", None).is_none());
    }

    #[test]
    fn domain_fallback_and_keys() {
        let table = RouteTable::new();
        let mut r = route("web", &[1]);
        r.hosts = vec![];
        table.set_cluster("dc1", vec![r]);
        assert!(table.resolve("web.qa.localhost", None).is_none());
        let found = table.resolve("web.qa.localhost", Some("localhost")).unwrap();
        assert_eq!(found.key, key("web"));
        assert!(table.resolve("a.web.qa.localhost", Some("localhost")).is_none());
        assert!(table.resolve_key(&key("web")).is_some());
    }

    #[test]
    fn retiring_a_backend_and_clearing_a_cluster() {
        let table = RouteTable::new();
        table.set_cluster("dc1", vec![route("web", &[1, 2])]);
        table.remove_backend("dc1", "c1");
        let r = table.resolve("web.qa.localhost", None).unwrap();
        assert_eq!(r.backends, [backend(2)]);
        table.remove_backend("dc1", "c2");
        let r = table.resolve("web.qa.localhost", None).unwrap();
        assert!(r.backends.is_empty(), "the route stays, with nothing to serve");
        table.set_cluster("dc1", vec![]);
        assert!(table.resolve("web.qa.localhost", None).is_none());
        table.set_cluster("dc1", vec![route("web", &[1])]);
        table.remove_cluster("dc1");
        assert!(table.cluster_routes("dc1").is_empty());
    }
}
