//! [`QuotaStore`]: storage quotas' aggregate — the per-scope usage counters, the quotas
//! themselves, and the reservations of uploads in flight.
//!
//! **Scopes.** A repository counts in its own scope (`team-a/app`) and in one namespace
//! scope per `/` in its name (`team-a/`). Every scope has counters whether or not a
//! quota names it.
//!
//! **Counting** is done by the schema (`migrations/*/0006_quotas.sql`): triggers on
//! `repository_blobs`, `manifests`, `manifest_references` and `blobs` update the
//! counters in the transaction of the write, so every writer — a commit, a mount, a
//! blob DELETE, garbage collection, the pull-through cache — counts alike, and a blob
//! is counted once per scope however many repositories link it. [`QuotaStore::recompute`]
//! recomputes every counter from the rows and says (and optionally fixes) any drift.
//!
//! **Reservations** ([`QuotaStore::reserve`]) are checked and written in one
//! transaction that holds the limited scopes' usage rows (PostgreSQL: `FOR UPDATE`, in
//! scope order; SQLite: the one writer), so concurrent reservations on any instance
//! are judged one after another against the stored bytes plus every other live
//! reservation. The argument for the bound this gives is in `registry::quota`.
//!
//! **Charging at commit** ([`QuotaStore::commit_blob_charged`]): a blob's commit runs
//! the same check in its own transaction, with the blob's size in place of the push's
//! reservation (which it ends), before it links anything; a push that fits commits,
//! one that does not writes nothing. A small single-request push needs no reservation
//! of its own then: [`QuotaStore::check_room`] (a read) refuses it before its bytes are
//! written, and its commit charges it.
//!
//! **Slices** (PostgreSQL, migration `0011_quota_slices`): a scope's free room is handed
//! out per database connection, so that a commit whose blob fits its connection's slice
//! is charged without taking the scope's usage row; a slice's unused room counts
//! against the quota as a reservation does (*stored + reservations + slices ≤ quota*),
//! and a check that locks takes the other slices back before it refuses. Usage is the
//! stored bytes alone: slices hold room, not bytes. A commit that fits its slice is
//! charged in the statement that links its blob (migration `0013_quota_link_charged`):
//! a charged push makes no round trip more than an uncharged one.

use async_trait::async_trait;

use super::{BlobCommit, Result};
use crate::types::{BlobRecord, EventRecord, RepoName};

/// The scope that holds the default quota for every namespace without its own.
pub const DEFAULT_SCOPE: &str = "*";

/// The scopes `repo` counts in, outermost first: each prefix up to a `/`, then the
/// repository itself (`a/b/c` → `a/`, `a/b/`, `a/b/c`). This order is the lock order.
pub fn scopes_of(repo: &RepoName) -> Vec<String> {
    let name = repo.as_str();
    let mut scopes: Vec<String> = name
        .match_indices('/')
        .map(|(i, _)| name[..=i].to_string())
        .collect();
    scopes.push(name.to_string());
    scopes
}

/// The namespace a default quota applies to: the name up to its first `/`, or the
/// repository itself when its name has none.
pub fn namespace_of(repo: &RepoName) -> String {
    let name = repo.as_str();
    match name.find('/') {
        Some(i) => name[..=i].to_string(),
        None => name.to_string(),
    }
}

/// A quota: at most `bytes` stored in `scope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaLimit {
    pub scope: String,
    pub bytes: u64,
    /// `config` (seeded from the configuration) or `api` (set at run time).
    pub source: String,
}

/// A scope's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeUsage {
    pub scope: String,
    /// What the scope's manifests reference (a layer in two manifests counts twice).
    pub logical_bytes: u64,
    /// What the scope's unique blobs take (each blob once).
    pub stored_bytes: u64,
    pub blobs: u64,
    pub manifests: u64,
    pub repositories: u64,
    /// Bytes uploads in flight have reserved (live reservations only).
    pub reserved_bytes: u64,
}

/// Bytes an upload in flight (or a mount) may add to `repository`'s scopes.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// The upload session's id (its end removes the reservation), or a mount's.
    pub id: String,
    pub repository: RepoName,
    /// The total the session will have stored (not an increment).
    pub bytes: u64,
    /// Unix ms after which it no longer counts.
    pub expires_at: i64,
    /// The blob it is for, when known (a mount, an upload's final `PUT`): a scope that
    /// holds it already needs no room for it.
    pub digest: Option<crate::types::Digest>,
}

/// What a reservation or a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaOutcome {
    Allowed,
    /// The first scope (outermost first) the request would take over its quota.
    Exceeded {
        scope: String,
        quota: u64,
        /// Stored bytes plus others' live reservations, before this request.
        usage: u64,
        /// What this request would add.
        requested: u64,
    },
}

/// What [`QuotaStore::check_room`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomCheck {
    pub outcome: QuotaOutcome,
    /// The usage it read in each scope it checked (stored bytes plus the other live
    /// reservations), outermost first.
    pub used: Vec<(String, u64)>,
}

/// The quotas a blob's commit is charged to ([`QuotaStore::commit_blob_charged`]).
#[derive(Debug, Clone)]
pub struct QuotaCharge {
    /// Each scope the repository counts in that has a quota, with the quota.
    pub limits: Vec<(String, u64)>,
    /// The reservation the push holds, if any (a streamed single-request push's): not
    /// counted against it, and ended by the commit. An upload session's own
    /// reservation (its id is the session's) is likewise not counted, and ends with
    /// the session.
    pub reservation: Option<String>,
}

/// What a charged commit did.
#[derive(Debug, Clone)]
pub enum ChargedCommit {
    Committed(BlobCommit),
    /// A scope had no room for the blob: nothing was written (the upload session, if
    /// any, is still there).
    Refused(QuotaOutcome),
}

/// A counter that did not match the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub scope: String,
    /// `stored_bytes`, `logical_bytes`, `blobs`, `manifests`, or `refs <digest>`.
    pub counter: String,
    pub counted: i64,
    pub actual: i64,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "scope {:?}: {} counted {}, actual {}",
            self.scope, self.counter, self.counted, self.actual
        )
    }
}

/// The quotas' reads and writes. Every method is one transaction.
#[async_trait]
pub trait QuotaStore: Send + Sync + 'static {
    /// Every quota.
    async fn quota_limits(&self) -> Result<Vec<QuotaLimit>>;
    /// Sets (or replaces) a quota.
    async fn set_quota_limit(&self, limit: &QuotaLimit) -> Result<()>;
    /// Removes a quota; false if there was none.
    async fn delete_quota_limit(&self, scope: &str) -> Result<bool>;
    /// Makes the configuration's quotas the `config` rows: replaces those, removes
    /// `config` rows no longer configured, and leaves every `api` row alone.
    async fn seed_quota_limits(&self, limits: &[QuotaLimit]) -> Result<()>;
    /// A scope's counters (zeros for a scope nothing counts in yet).
    async fn scope_usage(&self, scope: &str) -> Result<ScopeUsage>;
    /// Checks `reservation` against `limits` (each a scope the repository counts in,
    /// with its quota) and records it if every scope has room: the scope's stored bytes
    /// plus the other live reservations in it plus `reservation.bytes` at most the
    /// quota. A reservation only grows: a smaller total keeps the larger one.
    async fn reserve(
        &self,
        reservation: &Reservation,
        limits: &[(String, u64)],
    ) -> Result<QuotaOutcome>;
    /// Removes a reservation (a mount's, once linked).
    async fn release(&self, id: &str) -> Result<()>;
    /// [`QuotaStore::reserve`]'s check alone, as a read (nothing recorded, nothing
    /// locked): whether `reservation.bytes` fit in every scope now, besides the live
    /// reservations other than `reservation.id`'s.
    async fn check_room(
        &self,
        reservation: &Reservation,
        limits: &[(String, u64)],
    ) -> Result<RoomCheck>;
    /// `BlobIndex::commit_blob`, charged in the same transaction: first, holding the
    /// scopes as [`QuotaStore::reserve`] does, the blob must fit in every scope of
    /// `charge.limits` that does not hold it yet (stored bytes + the other live
    /// reservations + its size at most the quota; the push's own reservation —
    /// `charge.reservation`, else `upload_id`'s — does not count); if one has no room,
    /// nothing is written and the answer is [`ChargedCommit::Refused`]. Otherwise the
    /// commit as `commit_blob`, and `charge.reservation` removed.
    async fn commit_blob_charged(
        &self,
        repo: &RepoName,
        blob: &BlobRecord,
        upload_id: Option<&str>,
        events: &[EventRecord],
        charge: &QuotaCharge,
    ) -> Result<ChargedCommit>;
    /// Whether adding the blobs `digests` that the scope does not hold yet keeps each
    /// of `limits` (stored bytes only: a manifest reserves nothing).
    async fn check_blobs(
        &self,
        repo: &RepoName,
        digests: &[crate::types::Digest],
        limits: &[(String, u64)],
    ) -> Result<QuotaOutcome>;
    /// Folds the counting triggers' appended changes into the per-scope rows
    /// (PostgreSQL; nothing to do on SQLite, whose writer updates them in place).
    async fn compact(&self) -> Result<()>;
    /// Recomputes every counter from the rows; returns what differed, and with `fix`
    /// sets the counters to the recomputed figures in the same transaction.
    async fn recompute(&self, fix: bool) -> Result<Vec<Drift>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_outermost_first() {
        let r = RepoName::parse("a/b/c").unwrap();
        assert_eq!(scopes_of(&r), vec!["a/", "a/b/", "a/b/c"]);
        assert_eq!(namespace_of(&r), "a/");
        let r = RepoName::parse("alpine").unwrap();
        assert_eq!(scopes_of(&r), vec!["alpine"]);
        assert_eq!(namespace_of(&r), "alpine");
    }
}
