//! The pull-through cache: repositories that mirror upstream registries.
//!
//! [`Proxy`] implements the core's [`Mirror`] hook. A repository is mirrored when its
//! name is under an upstream's prefix (or every repository, with distribution's
//! `proxy.remoteurl`); containerd's `?ns=<registry>` is mapped to the upstream whose
//! `ns` it names (`http::mirror`), and to nothing else.
//!
//! - Manifests (`manifests`): by digest, fetched once and kept; by tag, kept with the
//!   digest the upstream gave and revalidated with a `HEAD` once the upstream's
//!   `tagttl` has passed (or on every pull with `revalidatetags`). When the upstream
//!   fails, times out or answers 429, a cached manifest is served and the failure
//!   counted.
//! - Blobs (`fill`): a blob the store lacks is streamed to the client while it is
//!   written to the store and hashed, and committed only if its digest matches. One
//!   instance in the cluster fetches it, holding a lease in the metadata store; every
//!   other request, on any instance, follows the bytes that fill has committed.
//! - Expiry and eviction (`sweep`): content not pulled for the upstream's `ttl` is
//!   removed, and beyond `proxy.maxsize` the least recently pulled blobs are; one
//!   instance at a time runs the sweep.
//!
//! Layer: above the core (it stores through [`Registry`]) and the metadata store (its
//! own rows, `metadata::mirror`); nothing below calls it except through [`Mirror`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::config::Config;
use crate::registry::blobs::BlobContent;
use crate::registry::mirror::Mirror;
use crate::registry::{Registry, Result};
use crate::types::{BlobRecord, ByteRange, Digest, Reference, RepoName};

mod fill;
mod manifests;
pub mod metrics;
mod sweep;
pub mod upstream;

use upstream::UpstreamClient;

/// A mirrored repository: its upstream and its name there.
#[derive(Clone)]
pub struct Route {
    pub upstream: Arc<UpstreamClient>,
    pub remote: String,
}

/// The pull-through cache of one instance.
pub struct Proxy {
    /// This instance, as leases name it.
    instance: String,
    /// Prefixed upstreams, longest prefix first; then the catch-all one, if any.
    upstreams: Vec<Arc<UpstreamClient>>,
    fills: fill::Fills,
    /// One upstream fetch per manifest reference at a time in this instance.
    manifest_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Pulls not yet written to `last_pulled` (flushed by the sweeper).
    pulls: Mutex<HashMap<(RepoName, Digest), i64>>,
    max_size: Option<u64>,
    sweep_interval: std::time::Duration,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("instance", &self.instance)
            .field("upstreams", &self.upstreams)
            .finish()
    }
}

impl Proxy {
    /// The cache `proxy` configures, or `None` when it names no upstream.
    pub fn from_config(config: &Config) -> std::result::Result<Option<Arc<Proxy>>, String> {
        if !config.proxy.enabled() {
            return Ok(None);
        }
        let mut upstreams = config
            .proxy
            .upstreams()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|u| UpstreamClient::new(u).map(Arc::new))
            .collect::<std::result::Result<Vec<_>, String>>()?;
        // Longest prefix first; the catch-all ("") last.
        upstreams.sort_by_key(|u| std::cmp::Reverse(u.config.prefix.len()));
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        let instance = format!(
            "{}{}{}",
            host,
            if host.is_empty() { "" } else { "/" },
            uuid::Uuid::new_v4().simple()
        );
        for u in &upstreams {
            tracing::info!(
                upstream = %u.config.name,
                url = %u.config.url,
                prefix = %u.config.prefix,
                ns = u.config.ns.as_deref().unwrap_or(""),
                "pull-through cache upstream"
            );
        }
        Ok(Some(Arc::new(Proxy {
            instance,
            upstreams,
            fills: fill::Fills::default(),
            manifest_locks: Mutex::new(HashMap::new()),
            pulls: Mutex::new(HashMap::new()),
            max_size: config.proxy.max_size(),
            sweep_interval: config.proxy.sweep_interval(),
        })))
    }

    /// The upstream `repo` mirrors, and its name there (Docker Hub's single-component
    /// names get `library/`).
    pub fn route(&self, repo: &RepoName) -> Option<Route> {
        let name = repo.as_str();
        self.upstreams.iter().find_map(|u| {
            let prefix = &u.config.prefix;
            let rest = if prefix.is_empty() {
                name
            } else {
                name.strip_prefix(prefix.as_str())?.strip_prefix('/')?
            };
            if rest.is_empty() {
                return None;
            }
            let remote = if u.config.docker_hub && !rest.contains('/') {
                format!("library/{rest}")
            } else {
                rest.to_string()
            };
            Some(Route {
                upstream: u.clone(),
                remote,
            })
        })
    }

    /// Starts the sweeper (expiry, eviction, `last_pulled` flushes).
    pub fn spawn_background(self: &Arc<Self>, registry: Registry) {
        sweep::spawn(self.clone(), registry);
    }

    /// One lock per key, for the callers in this instance.
    async fn lock(&self, key: String) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = match self.manifest_locks.lock() {
                Ok(l) => l,
                Err(p) => p.into_inner(),
            };
            if locks.len() > 4096 {
                locks.retain(|_, l| Arc::strong_count(l) > 1);
            }
            locks.entry(key).or_default().clone()
        };
        lock.lock_owned().await
    }
}

#[async_trait]
impl Mirror for Proxy {
    fn ns_repository(&self, ns: &str, name: &str) -> std::result::Result<String, String> {
        let wanted = ns.to_ascii_lowercase();
        match self
            .upstreams
            .iter()
            .find(|u| u.config.ns.as_deref() == Some(wanted.as_str()))
        {
            Some(u) => Ok(format!("{}/{name}", u.config.prefix)),
            None => {
                let mut known: Vec<&str> = self
                    .upstreams
                    .iter()
                    .filter_map(|u| u.config.ns.as_deref())
                    .collect();
                // Sorted: the message is the same whatever the configuration's order.
                known.sort_unstable();
                Err(format!(
                    "ns={:?} is not an upstream of this mirror ({}); it is not contacted",
                    ns.chars().take(100).collect::<String>(),
                    if known.is_empty() {
                        "no ns is configured".to_string()
                    } else {
                        format!("configured: {}", known.join(", "))
                    }
                ))
            }
        }
    }

    fn mirror_of(&self, repo: &RepoName) -> Option<String> {
        self.route(repo).map(|r| {
            format!(
                "{}/{} (upstream {})",
                r.upstream.config.url,
                r.remote,
                r.upstream.name()
            )
        })
    }

    async fn refresh_manifest(
        &self,
        registry: &Registry,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<()> {
        match self.route(repo) {
            Some(route) => manifests::refresh(self, registry, repo, &route, reference).await,
            None => Ok(()),
        }
    }

    async fn stat_blob(
        &self,
        registry: &Registry,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<BlobRecord>> {
        match self.route(repo) {
            Some(route) => fill::stat(self, registry, repo, &route, digest)
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    async fn open_blob(
        &self,
        registry: &Registry,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<Option<BlobContent>> {
        match self.route(repo) {
            Some(route) => fill::open(self, registry, repo, &route, digest, range)
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    fn pulled(&self, repo: &RepoName, digest: &Digest, manifest: bool) {
        let Some(route) = self.route(repo) else {
            return;
        };
        if !manifest {
            metrics::hit(route.upstream.name(), "blob");
        }
        if let Ok(mut pulls) = self.pulls.lock() {
            pulls.insert((repo.clone(), digest.clone()), crate::clock::now_ms());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(yaml: &str) -> Arc<Proxy> {
        let tree: serde_norway::Value = serde_norway::from_str(yaml).unwrap();
        let config = Config::from_tree(tree).unwrap();
        Proxy::from_config(&config).unwrap().unwrap()
    }

    fn route(p: &Proxy, name: &str) -> Option<(String, String)> {
        p.route(&RepoName::parse(name).unwrap())
            .map(|r| (r.upstream.name().to_string(), r.remote))
    }

    #[test]
    fn routes_by_prefix_with_docker_hub_names() {
        let p = proxy(
            "proxy:\n  upstreams:\n    - name: hub\n      ns: docker.io\n    - name: ghcr\n      ns: ghcr.io\n      prefix: mirror/ghcr\n    - name: deep\n      prefix: mirror/ghcr/deep\n      remoteurl: http://127.0.0.1:1\n",
        );
        let r = |n| route(&p, n);
        assert_eq!(
            r("docker.io/alpine"),
            Some(("hub".into(), "library/alpine".into()))
        );
        assert_eq!(
            r("docker.io/library/alpine"),
            Some(("hub".into(), "library/alpine".into()))
        );
        assert_eq!(
            r("docker.io/bitnami/redis"),
            Some(("hub".into(), "bitnami/redis".into()))
        );
        assert_eq!(
            r("mirror/ghcr/org/tool"),
            Some(("ghcr".into(), "org/tool".into()))
        );
        assert_eq!(r("mirror/ghcr/tool"), Some(("ghcr".into(), "tool".into())));
        assert_eq!(r("mirror/ghcr/deep/x"), Some(("deep".into(), "x".into())));
        assert_eq!(r("mirror/ghcrx/tool"), None);
        assert_eq!(r("local/app"), None);
        assert_eq!(
            p.ns_repository("docker.io", "library/alpine").unwrap(),
            "docker.io/library/alpine"
        );
        assert_eq!(
            p.ns_repository("GHCR.io", "org/tool").unwrap(),
            "mirror/ghcr/org/tool"
        );
        let e = p.ns_repository("quay.io", "x").unwrap_err();
        assert!(
            e.contains("quay.io") && e.contains("docker.io, ghcr.io"),
            "{e}"
        );
    }

    #[test]
    fn distribution_remoteurl_mirrors_everything_else() {
        let p = proxy(
            "proxy:\n  remoteurl: https://registry-1.docker.io\n  upstreams:\n    - name: q\n      ns: quay.io\n",
        );
        assert_eq!(
            route(&p, "alpine"),
            Some(("remote".into(), "library/alpine".into()))
        );
        assert_eq!(
            route(&p, "team/app"),
            Some(("remote".into(), "team/app".into()))
        );
        assert_eq!(
            route(&p, "quay.io/org/x"),
            Some(("q".into(), "org/x".into()))
        );
        assert!(p.mirror_of(&RepoName::parse("x/y").unwrap()).is_some());
    }
}
