//! Storage quotas: which quotas bind a repository, and refusing the bytes that would
//! take a scope over one before they are stored.
//!
//! **Which quotas.** A repository `a/b/c` is bound by the quotas of its scopes `a/`,
//! `a/b/` and `a/b/c`, and — when its namespace (`a/`, or the name itself when it has
//! no `/`) has no quota of its own — by the default (`*`). The quotas live in the
//! metadata store (every instance sees the same ones; the configuration seeds them and
//! the admin API changes them); each instance reads them at most every
//! [`QuotaOptions::refresh`] and at once after a change made through it.
//!
//! **Refusing before the bytes land.** An upload reserves, before it writes, the total
//! its session will hold: offset plus the declared length (`Content-Range`, else
//! `Content-Length`) when there is one, else in steps of [`STREAM_STEP`] ahead of the
//! bytes as they stream (the last step exactly, so a push that fits is not refused for
//! the step's sake). A request that names its blob (`POST ?digest=`, a session's final
//! `PUT`) and declares at most [`SMALL_PUSH`] bytes reserves nothing: it is checked
//! against the room left (stored bytes plus live reservations; a read, skipped when the
//! scope had [`ROOM_MARGIN`] to spare besides at a read less than a second ago — two
//! while another push is reading it again), and
//! its commit charges it (below): no metadata write of its own. When the blob's digest
//! is known (the final `PUT`, a mount), a scope that already holds the blob needs no
//! room for it: a layer shared across a namespace is charged, and checked, once. A push that does not fit is refused with the scope, its quota and its usage;
//! the upload's session and every byte it wrote are deleted. A mount reserves the
//! blob's size for as long as it takes to link it; a manifest is refused when the blobs
//! it references that the scope does not hold yet would take the scope over (and when
//! the scope is over its quota already — a quota lowered under its usage lets nothing
//! new in).
//!
//! **The bound.** Every reservation is checked and written in one transaction that
//! holds the scope's usage row (PostgreSQL `FOR UPDATE`; SQLite's one writer): it
//! fits only if stored bytes + every other live reservation + its own total ≤ quota.
//! A blob's commit is charged in its own transaction, which holds the scopes' rows the
//! same way: the blob must fit besides the stored bytes and every *other* live
//! reservation (a scope that holds it already needs no room); then the commit removes
//! the push's reservation and adds the blob's bytes. A commit that does not fit writes
//! nothing, and its bytes are deleted. On PostgreSQL the free room is handed out in
//! per-connection slices (`metadata::quota`, migration `0011_quota_slices`): a commit
//! that fits its connection's slice moves the bytes from the slice to stored without
//! the usage row, a slice's unused room counts as a reservation does, and a check that
//! would refuse first takes the other slices' unused room back. So stored + live
//! reservations (+ unused slices) ≤ quota holds
//! after every transaction, on every instance, and **stored bytes never exceed the
//! quota** — concurrent pushes cannot jointly go over, by any amount; a reservation
//! that expired while its session idled no longer counts, but its commit is checked
//! all the same. Two exceptions, neither a race: a quota set or lowered below what is
//! already stored; and blobs recorded without a push (an adopted blob store; a
//! pull-through cache's fills are uploads and are charged). The price of not reserving
//! a small push: two that each fit when checked but not together (or one checked by
//! a read up to two seconds old, in a scope that took in more than [`ROOM_MARGIN`] within
//! those seconds) write their bytes (each at most [`SMALL_PUSH`]) to their upload's file,
//! and the commit refuses them and deletes them — never stored as a blob, never
//! counted.
//! An instance killed mid-upload leaves its reservation counting until it expires
//! (the bytes are reserved, not stored: usage is over-estimated, never under).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tracing::debug;

use super::{now_ms, Registry, RegistryError, Result};
use crate::metadata::quota::{
    namespace_of, scopes_of, QuotaLimit, QuotaOutcome, Reservation, DEFAULT_SCOPE,
};
use crate::types::{Digest, RepoName};

/// How far ahead of a streamed upload's bytes its reservation runs.
pub const STREAM_STEP: u64 = 8 * 1024 * 1024;

/// The longest push whose bytes are only checked against the room left before they
/// are written, and charged by its commit, without a reservation of its own: a
/// single-request push (`POST ?digest=`, or a session's final `PUT`) whose length is
/// known up front. A longer one reserves first. Same as [`STREAM_STEP`]: a push that
/// loses a race for the last room writes at most this much before its commit refuses
/// it, as much as a streamed upload's reservation runs ahead of its bytes.
pub const SMALL_PUSH: u64 = STREAM_STEP;

/// How long a mount's reservation may live if the instance dies before releasing it.
const MOUNT_RESERVATION: Duration = Duration::from_secs(60);

/// `quotas` as the core needs it.
#[derive(Debug, Clone)]
pub struct QuotaOptions {
    /// How long an upload's reservation lasts after its last request.
    pub reservation_ttl: Duration,
    /// How stale an instance's copy of the quotas may be.
    pub refresh: Duration,
}

impl Default for QuotaOptions {
    fn default() -> Self {
        QuotaOptions {
            reservation_ttl: Duration::from_secs(3600),
            refresh: Duration::from_secs(2),
        }
    }
}

/// How long a scope's usage read by a small push's check may stand in for reading it
/// again ([`ROOM_MARGIN`]).
const ROOM_FRESH: Duration = Duration::from_secs(1);

/// The room a scope must have had left, beyond a small push, at its last read (at most
/// [`ROOM_FRESH`] ago; twice that while one push reads it again) for the push to go
/// without a read of its own: only a scope that took in more than this within those
/// seconds can have filled meanwhile — and even then
/// the push's commit refuses it (the bound does not rest on this read).
pub const ROOM_MARGIN: u64 = 1 << 30;

/// Most scopes whose last read is kept.
const ROOM_SCOPES: usize = 4096;

/// This instance's copy of the quotas, and the scopes' usage as its small pushes' checks
/// last read it.
#[derive(Default)]
pub(crate) struct QuotaCache {
    copy: RwLock<Option<(Instant, Arc<Vec<QuotaLimit>>)>>,
    rooms: Mutex<HashMap<String, Room>>,
}

/// A scope's usage at a small push's last read of it.
#[derive(Clone, Copy)]
struct Room {
    at: Instant,
    used: u64,
    /// A push found the read stale and is reading it again: until [`ROOM_FRESH`] more
    /// has passed, the pushes meanwhile go by this read rather than each read again.
    rereading: bool,
}

impl QuotaCache {
    /// Whether every scope of `limits` had, at a read less than [`ROOM_FRESH`] ago,
    /// room for `total` more bytes and [`ROOM_MARGIN`] besides. A read found stale is
    /// taken again by one push (this call answers false to it, and marks the scopes
    /// as being read); the others go by the stale one for up to another
    /// [`ROOM_FRESH`] meanwhile — instead of every push in flight reading at once.
    fn roomy(&self, limits: &[(String, u64)], total: u64) -> bool {
        let Ok(mut rooms) = self.rooms.lock() else {
            return false;
        };
        let mut stale = false;
        for (scope, quota) in limits {
            let Some(room) = rooms.get(scope) else {
                return false;
            };
            let age = room.at.elapsed();
            if age >= ROOM_FRESH.saturating_mul(2) {
                return false;
            }
            if room.used.saturating_add(total).saturating_add(ROOM_MARGIN) > *quota {
                return false;
            }
            stale |= age >= ROOM_FRESH && !room.rereading;
        }
        if stale {
            for (scope, _) in limits {
                if let Some(room) = rooms.get_mut(scope) {
                    room.rereading = true;
                }
            }
            return false;
        }
        true
    }

    fn read_rooms(&self, used: Vec<(String, u64)>) {
        if let Ok(mut rooms) = self.rooms.lock() {
            if rooms.len() >= ROOM_SCOPES {
                rooms.clear();
            }
            let now = Instant::now();
            for (scope, used) in used {
                rooms.insert(
                    scope,
                    Room {
                        at: now,
                        used,
                        rereading: false,
                    },
                );
            }
        }
    }

    fn fresh(&self, refresh: Duration) -> Option<Arc<Vec<QuotaLimit>>> {
        let guard = self.copy.read().ok()?;
        match &*guard {
            Some((at, limits)) if at.elapsed() < refresh => Some(limits.clone()),
            _ => None,
        }
    }

    fn store(&self, limits: Arc<Vec<QuotaLimit>>) {
        if let Ok(mut guard) = self.copy.write() {
            *guard = Some((Instant::now(), limits));
        }
    }

    pub(crate) fn invalidate(&self) {
        if let Ok(mut guard) = self.copy.write() {
            *guard = None;
        }
        if let Ok(mut rooms) = self.rooms.lock() {
            rooms.clear();
        }
    }
}

/// The quotas that bind `repo`, outermost scope first.
pub fn binding(limits: &[QuotaLimit], repo: &RepoName) -> Vec<(String, u64)> {
    let namespace = namespace_of(repo);
    let find = |scope: &str| limits.iter().find(|l| l.scope == scope).map(|l| l.bytes);
    scopes_of(repo)
        .into_iter()
        .filter_map(|scope| {
            let bytes = find(&scope).or_else(|| {
                if scope == namespace {
                    find(DEFAULT_SCOPE)
                } else {
                    None
                }
            })?;
            Some((scope, bytes))
        })
        .collect()
}

/// `Err(QuotaExceeded)` for a refusal (counted in the refusals metric).
pub(crate) fn refused(outcome: QuotaOutcome) -> Result<()> {
    match outcome {
        QuotaOutcome::Allowed => Ok(()),
        QuotaOutcome::Exceeded {
            scope,
            quota,
            usage,
            requested,
        } => {
            super::quota_metrics::refused();
            Err(RegistryError::QuotaExceeded {
                scope,
                quota,
                usage,
                requested,
            })
        }
    }
}

impl Registry {
    /// Every quota (this instance's copy, refreshed when stale).
    pub async fn quota_limits(&self) -> Result<Arc<Vec<QuotaLimit>>> {
        if let Some(limits) = self.quota_cache.fresh(self.options.quotas.refresh) {
            return Ok(limits);
        }
        let limits = Arc::new(self.meta.quotas.quota_limits().await?);
        self.quota_cache.store(limits.clone());
        Ok(limits)
    }

    /// Every quota, read from the store now (the admin API's view).
    pub async fn meta_quota_limits(&self) -> Result<Vec<QuotaLimit>> {
        Ok(self.meta.quotas.quota_limits().await?)
    }

    /// The quotas that bind `repo` (empty: nothing to check).
    pub async fn binding_quotas(&self, repo: &RepoName) -> Result<Vec<(String, u64)>> {
        Ok(binding(&self.quota_limits().await?, repo))
    }

    /// Reserves room for an upload whose session will hold `total` bytes; refused with
    /// [`RegistryError::QuotaExceeded`] if a binding quota has not that much left.
    pub(crate) async fn reserve_upload(
        &self,
        id: &str,
        repo: &RepoName,
        total: u64,
        digest: Option<&Digest>,
        limits: &[(String, u64)],
    ) -> Result<()> {
        if limits.is_empty() {
            return Ok(());
        }
        let ttl =
            i64::try_from(self.options.quotas.reservation_ttl.as_millis()).unwrap_or(i64::MAX);
        let reservation = Reservation {
            id: id.to_string(),
            repository: repo.clone(),
            bytes: total,
            expires_at: now_ms().saturating_add(ttl),
            digest: digest.cloned(),
        };
        let outcome = self.meta.quotas.reserve(&reservation, limits).await?;
        debug!(upload = %id, total, ?outcome, "quota reservation");
        refused(outcome)
    }

    /// Refuses an upload whose session would hold `total` bytes if a binding quota has
    /// not that much left now — a read: nothing is reserved (the commit charges it).
    /// The read is skipped when every scope had room to spare at a read less than a
    /// second ago — two while another push reads it again ([`ROOM_MARGIN`]).
    pub(crate) async fn check_upload_room(
        &self,
        id: &str,
        repo: &RepoName,
        total: u64,
        digest: &Digest,
        limits: &[(String, u64)],
    ) -> Result<()> {
        if self.quota_cache.roomy(limits, total) {
            debug!(upload = %id, total, "quota check: room to spare at the last read");
            return Ok(());
        }
        let reservation = Reservation {
            id: id.to_string(),
            repository: repo.clone(),
            bytes: total,
            expires_at: 0,
            digest: Some(digest.clone()),
        };
        let check = self.meta.quotas.check_room(&reservation, limits).await?;
        debug!(upload = %id, total, outcome = ?check.outcome, "quota check");
        self.quota_cache.read_rooms(check.used);
        refused(check.outcome)
    }

    /// A mount of `size` bytes into `repo`: reserved while `link` runs, then released.
    pub(crate) async fn reserve_mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<Option<String>> {
        let limits = self.binding_quotas(repo).await?;
        if limits.is_empty() {
            return Ok(None);
        }
        let id = format!("mount:{}", uuid::Uuid::new_v4());
        let reservation = Reservation {
            id: id.clone(),
            repository: repo.clone(),
            bytes: size,
            expires_at: now_ms() + MOUNT_RESERVATION.as_millis() as i64,
            digest: Some(digest.clone()),
        };
        refused(self.meta.quotas.reserve(&reservation, &limits).await?)?;
        Ok(Some(id))
    }

    /// Ends a reservation that no upload session carries (a mount's, a single-request
    /// upload's); a failure leaves it to expire.
    pub(crate) async fn release_reservation(&self, id: Option<String>) {
        if let Some(id) = id {
            if let Err(e) = self.meta.quotas.release(&id).await {
                tracing::warn!(reservation = %id, error = %e, "could not release a quota reservation; it expires");
            }
        }
    }

    /// Refuses a manifest whose blobs that `repo`'s scopes do not hold yet would take
    /// one of them over its quota.
    pub(crate) async fn check_manifest_quota(
        &self,
        repo: &RepoName,
        blobs: &[Digest],
    ) -> Result<()> {
        let limits = self.binding_quotas(repo).await?;
        if limits.is_empty() {
            return Ok(());
        }
        refused(self.meta.quotas.check_blobs(repo, blobs, &limits).await?)
    }

    /// Sets a quota in the metadata store (every instance sees it within
    /// [`QuotaOptions::refresh`]; this one at once).
    pub async fn set_quota(&self, scope: &str, bytes: u64) -> Result<()> {
        self.require_writable()?;
        let limit = QuotaLimit {
            scope: scope.to_string(),
            bytes,
            source: "api".into(),
        };
        self.meta.quotas.set_quota_limit(&limit).await?;
        self.quota_cache.invalidate();
        Ok(())
    }

    /// Removes a quota; false if there was none.
    pub async fn delete_quota(&self, scope: &str) -> Result<bool> {
        self.require_writable()?;
        let done = self.meta.quotas.delete_quota_limit(scope).await?;
        self.quota_cache.invalidate();
        Ok(done)
    }

    /// A scope's usage and the quota that binds it (its own, or the default for a
    /// namespace).
    pub async fn quota_usage(
        &self,
        scope: &str,
    ) -> Result<(crate::metadata::quota::ScopeUsage, Option<u64>)> {
        let usage = self.meta.quotas.scope_usage(scope).await?;
        let limits = self.quota_limits().await?;
        let own = limits.iter().find(|l| l.scope == scope).map(|l| l.bytes);
        let is_namespace = scope.ends_with('/') && scope.matches('/').count() == 1;
        let quota = own.or_else(|| {
            if is_namespace {
                limits
                    .iter()
                    .find(|l| l.scope == DEFAULT_SCOPE)
                    .map(|l| l.bytes)
            } else {
                None
            }
        });
        Ok((usage, quota))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(scope: &str, bytes: u64) -> QuotaLimit {
        QuotaLimit {
            scope: scope.into(),
            bytes,
            source: "config".into(),
        }
    }

    #[test]
    fn a_small_push_skips_its_read_only_with_room_to_spare_at_a_fresh_one() {
        let cache = QuotaCache::default();
        let quota = 10 * ROOM_MARGIN;
        let limits = vec![
            ("team/".to_string(), quota),
            ("team/app".to_string(), quota),
        ];
        assert!(!cache.roomy(&limits, 1), "never read");
        cache.read_rooms(vec![("team/".into(), 0)]);
        assert!(!cache.roomy(&limits, 1), "one scope never read");
        cache.read_rooms(vec![("team/".into(), 0), ("team/app".into(), 0)]);
        assert!(cache.roomy(&limits, 1));
        assert!(cache.roomy(&limits, quota - ROOM_MARGIN));
        assert!(
            !cache.roomy(&limits, quota - ROOM_MARGIN + 1),
            "within the margin"
        );
        cache.read_rooms(vec![("team/app".into(), quota - ROOM_MARGIN)]);
        assert!(
            !cache.roomy(&limits, 1),
            "the repository's scope is near its quota"
        );
        cache.read_rooms(vec![("team/".into(), 0), ("team/app".into(), 0)]);
        cache.invalidate();
        assert!(!cache.roomy(&limits, 1), "a quota changed here: read again");
        let age = |cache: &QuotaCache, by: Duration| {
            let old = Instant::now().checked_sub(by);
            if let (Some(old), Ok(mut rooms)) = (old, cache.rooms.lock()) {
                for room in rooms.values_mut() {
                    room.at = old;
                }
            }
        };
        cache.read_rooms(vec![("team/".into(), 0), ("team/app".into(), 0)]);
        age(&cache, ROOM_FRESH);
        assert!(!cache.roomy(&limits, 1), "stale: this push reads again");
        assert!(
            cache.roomy(&limits, 1),
            "stale, another push is reading it again"
        );
        assert!(
            !cache.roomy(&limits, quota - ROOM_MARGIN + 1),
            "within the margin, even while another push reads"
        );
        cache.read_rooms(vec![("team/".into(), 0), ("team/app".into(), 0)]);
        assert!(cache.roomy(&limits, 1), "read again");
        age(&cache, ROOM_FRESH);
        assert!(!cache.roomy(&limits, 1), "stale again: read by one push");
        age(&cache, ROOM_FRESH * 2);
        assert!(
            !cache.roomy(&limits, 1),
            "read too long ago, even while another push reads"
        );
    }

    #[test]
    fn binding_quotas() {
        let limits = vec![l("*", 100), l("team/", 50), l("team/app", 10), l("x/y/", 7)];
        let r = |s: &str| RepoName::parse(s).unwrap();
        assert_eq!(
            binding(&limits, &r("team/app")),
            vec![("team/".into(), 50), ("team/app".into(), 10)]
        );
        assert_eq!(
            binding(&limits, &r("other/app")),
            vec![("other/".into(), 100)]
        );
        assert_eq!(binding(&limits, &r("alpine")), vec![("alpine".into(), 100)]);
        assert_eq!(
            binding(&limits, &r("x/y/z")),
            vec![("x/".into(), 100), ("x/y/".into(), 7)]
        );
        assert!(binding(&[l("team/", 5)], &r("other/app")).is_empty());
    }
}
