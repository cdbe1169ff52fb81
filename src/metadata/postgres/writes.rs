//! The PostgreSQL store's multi-statement writes, each one READ COMMITTED transaction
//! of shared statements (`queries`) and the locking reads only PostgreSQL has. One
//! call is one attempt; `retry` (in `mod.rs`) runs it again when it loses a race.
//!
//! Why row locks and not SERIALIZABLE for `put_manifest`: the only thing a manifest put
//! reads and depends on is "these children are in the repository". Locking exactly
//! those rows (`SELECT … FOR SHARE`) makes a concurrent unlink of a child (or delete of
//! a child manifest) wait until the put has committed, or — if the unlink went first —
//! the put sees the row gone and answers `MissingChild` cleanly. SERIALIZABLE would
//! give the same guarantee with predicate locks on every table the transaction reads,
//! aborting unrelated pushes to the same repository on page-level conflicts under load
//! and forcing every write to be retried; shared row locks never conflict with each
//! other, so concurrent pushes that share layers do not wait on each other at all.
//!
//! Garbage collection (`gc`, and the argument in `registry::gc`) relies on the same
//! locks: its review of a blob locks the blob's row and links `FOR UPDATE` before it
//! re-checks references, so a put holding a link `FOR SHARE` is seen, and a put that
//! comes later finds the link gone. `commit_blob` and `link_blob` first touch the
//! blob's pending review, which waits for a GC transaction that has claimed it.

use std::collections::HashSet;

use sqlx::{PgPool, Postgres, Transaction};

use super::{gc_sql, queries};
use crate::metadata::{BlobCommit, MetadataError, NewManifest, PutManifestOutcome, Result};
use crate::types::{BlobRecord, Digest, EventRecord, RepoName, Tag};

/// Writes a change's events to the outbox, as the transaction's last statements, if
/// it changed something (see `metadata::events` on the order, and `event_horizon`).
async fn append_events_if(
    tx: &mut Transaction<'static, Postgres>,
    changed: bool,
    events: &[EventRecord],
) -> Result<()> {
    if changed && !events.is_empty() {
        super::events::queries::append_events(tx, events).await?;
    }
    Ok(())
}

/// A transaction at READ COMMITTED, asked for explicitly so a server-wide default
/// cannot change it.
pub(super) async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
    Ok(pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await?)
}

/// The first of `required` (in its order) that is not among `present`.
fn first_missing(required: &[Digest], present: Vec<String>) -> Option<Digest> {
    let present: HashSet<String> = present.into_iter().collect();
    required
        .iter()
        .find(|d| !present.contains(&d.to_string()))
        .cloned()
}

/// Closes the upload session (if any), records the blob and links it. Two commits of
/// the same digest: the second INSERT waits for the first transaction, then does
/// nothing; the read-back (a new statement) sees the record the first one stored.
/// Exactly one caller gets `stored_new`.
pub(super) async fn commit_blob(
    pool: &PgPool,
    repo: &RepoName,
    blob: &BlobRecord,
    upload_id: Option<&str>,
    events: &[EventRecord],
) -> Result<BlobCommit> {
    let mut tx = begin(pool).await?;
    let commit = commit_blob_tx(&mut tx, repo, blob, upload_id, events).await?;
    tx.commit().await?;
    Ok(commit)
}

/// `commit_blob`'s statements in `tx`, not committed.
async fn commit_blob_tx(
    tx: &mut Transaction<'static, Postgres>,
    repo: &RepoName,
    blob: &BlobRecord,
    upload_id: Option<&str>,
    events: &[EventRecord],
) -> Result<BlobCommit> {
    commit_blob_linking(tx, repo, blob, upload_id, events, None).await
}

/// `commit_blob`'s statements in `tx`, not committed. A charged commit (`charge`)
/// links and charges in one statement ([`super::quota::link_charged`]).
pub(super) async fn commit_blob_linking(
    tx: &mut Transaction<'static, Postgres>,
    repo: &RepoName,
    blob: &BlobRecord,
    upload_id: Option<&str>,
    events: &[EventRecord],
    charge: Option<&super::quota::LinkCharge<'_>>,
) -> Result<BlobCommit> {
    // First: wait for a GC pass deciding this digest's fate, and push its review back.
    gc_sql::touch_blob(tx, &blob.digest).await?;
    if let Some(id) = upload_id {
        if !queries::close_upload(&mut **tx, id).await? {
            return Err(MetadataError::UploadGone);
        }
    }
    let repo_id = queries::ensure_repository(tx, repo.as_str()).await?;
    let inserted = queries::insert_blob(&mut **tx, blob).await?;
    let stored = if inserted {
        blob.clone()
    } else {
        queries::blob(&mut **tx, &blob.digest)
            .await?
            .ok_or_else(|| MetadataError::Corrupt(format!("blob {} vanished", blob.digest)))?
    };
    crate::clock::race_point("commit_blob.existing_read", &blob.digest.to_string()).await;
    // The link's foreign key locks the blob's row (KEY SHARE): had GC deleted it since
    // the read above, this fails and the whole commit is retried.
    // Whether the link is new matters to the statements themselves only (an existing
    // link charges nothing): the commit is the same either way.
    match charge {
        Some(charge) => {
            super::quota::link_charged(tx, repo_id, &stored, charge).await?;
            append_events_if(tx, true, events).await?;
        }
        None => link_with_events(tx, repo_id, &blob.digest, events).await?,
    }
    Ok(BlobCommit {
        blob: stored,
        stored_new: inserted,
    })
}

/// Links an existing blob into `repo`; false if no such blob. Blob records are never
/// deleted while linked; the link's foreign key checks it again at insert time.
pub(super) async fn link_blob(
    pool: &PgPool,
    repo: &RepoName,
    digest: &Digest,
    events: &[EventRecord],
) -> Result<bool> {
    let mut tx = begin(pool).await?;
    gc_sql::touch_blob(&mut tx, digest).await?;
    if queries::blob(&mut *tx, digest).await?.is_none() {
        return Ok(false);
    }
    let repo_id = queries::ensure_repository(&mut tx, repo.as_str()).await?;
    link_with_events(&mut tx, repo_id, digest, events).await?;
    tx.commit().await?;
    Ok(true)
}

/// Links a blob into a repository, then writes the change's events: a push's or
/// mount's one event in the link's own statement (the usual case with notifications
/// on), else the link and then the events as the transaction's last statements.
async fn link_with_events(
    tx: &mut Transaction<'static, Postgres>,
    repo_id: i64,
    digest: &Digest,
    events: &[EventRecord],
) -> Result<()> {
    match events {
        [event] => super::events::queries::link_with_event(tx, repo_id, digest, event).await,
        _ => {
            queries::link(&mut **tx, repo_id, digest).await?;
            append_events_if(tx, true, events).await
        }
    }
}

/// Removes a blob's link, with its events.
pub(super) async fn unlink_blob(
    pool: &PgPool,
    repo: &RepoName,
    digest: &Digest,
    events: &[EventRecord],
) -> Result<bool> {
    let mut tx = begin(pool).await?;
    // First the blob's review row (queued now, as the unlink's trigger would), so the
    // locks come in a GC review's order: review row, then link. The other way round —
    // the link's row locked by the DELETE, then its trigger waiting for a review that
    // has claimed the row and waits for the link `FOR UPDATE` — is a deadlock.
    sqlx::query(
        "SELECT gc_queue_blob($1) WHERE EXISTS (SELECT 1 FROM repository_blobs rb
             JOIN repositories r ON r.id = rb.repository_id
             WHERE rb.digest = $1 AND r.name = $2)",
    )
    .bind(digest.to_string())
    .bind(repo.as_str())
    .execute(&mut *tx)
    .await?;
    let done = queries::unlink(&mut *tx, repo, digest).await?;
    append_events_if(&mut tx, done, events).await?;
    tx.commit().await?;
    Ok(done)
}

/// Deletes a manifest (its tags and references cascade), with its events.
pub(super) async fn delete_manifest(
    pool: &PgPool,
    repo: &RepoName,
    digest: &Digest,
    events: &[EventRecord],
) -> Result<bool> {
    let mut tx = begin(pool).await?;
    // GC's lock order (`gc::queue_blob_reviews_of`): the manifest's row, then the
    // reviews of its blobs in digest order, then the delete.
    if let Some(repo_id) = queries::repository_id(&mut *tx, repo.as_str()).await? {
        let present: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2 FOR UPDATE",
        )
        .bind(repo_id)
        .bind(digest.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if present.is_some() {
            super::gc::queue_blob_reviews_of(&mut tx, &[(repo_id, digest.to_string())]).await?;
        }
    }
    let done = queries::delete_manifest(&mut *tx, repo, digest).await?;
    append_events_if(&mut tx, done, events).await?;
    tx.commit().await?;
    Ok(done)
}

/// Deletes a tag, with its events.
pub(super) async fn delete_tag(
    pool: &PgPool,
    repo: &RepoName,
    tag: &Tag,
    events: &[EventRecord],
) -> Result<bool> {
    let mut tx = begin(pool).await?;
    let done = queries::delete_tag(&mut *tx, repo, tag).await?;
    append_events_if(&mut tx, done, events).await?;
    tx.commit().await?;
    Ok(done)
}

/// Of `required`, the first not present among `table`'s rows of the repository,
/// locking the rows that are (`FOR SHARE`, in digest order, the same order in every
/// transaction). `table` is always a literal of this file.
async fn lock_children(
    tx: &mut Transaction<'static, Postgres>,
    table: &'static str,
    repo_id: i64,
    required: &[Digest],
) -> Result<Option<Digest>> {
    if required.is_empty() {
        return Ok(None);
    }
    let wanted: Vec<String> = required.iter().map(Digest::to_string).collect();
    let present: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT digest FROM {table}
         WHERE repository_id = $1 AND digest = ANY($2)
         ORDER BY digest FOR SHARE"
    ))
    .bind(repo_id)
    .bind(&wanted)
    .fetch_all(&mut **tx)
    .await?;
    Ok(first_missing(required, present))
}

/// Stores a manifest, its references and its tags, or nothing (a missing child).
pub(super) async fn put_manifest(
    pool: &PgPool,
    repo: &RepoName,
    m: &NewManifest,
    events: &[EventRecord],
) -> Result<PutManifestOutcome> {
    let mut tx = begin(pool).await?;
    let has_children = !(m.blobs.is_empty() && m.manifests.is_empty());
    // A refused put writes nothing, not even the repository: a repository that does
    // not exist yet holds no children.
    let repo_id = match queries::repository_id(&mut *tx, repo.as_str()).await? {
        Some(id) => id,
        None => {
            let first = (m.blobs.iter().filter(|_| m.require_blobs))
                .chain(m.manifests.iter().filter(|_| m.require_manifests))
                .next();
            if let Some(d) = first {
                return Ok(PutManifestOutcome::MissingChild(d.clone()));
            }
            queries::ensure_repository(&mut tx, repo.as_str()).await?
        }
    };

    // The children must be in the repository when this commits: lock the rows that
    // say so. An unlink that got there first has already removed its row and we answer
    // MissingChild; one that comes later waits for our commit. See the module doc.
    let checks = [
        ("repository_blobs", m.require_blobs, &m.blobs),
        ("manifests", m.require_manifests, &m.manifests),
    ];
    for (table, _, required) in checks.into_iter().filter(|(_, on, _)| *on) {
        if let Some(missing) = lock_children(&mut tx, table, repo_id, required).await? {
            return Ok(PutManifestOutcome::MissingChild(missing));
        }
    }
    crate::clock::race_point("put_manifest.children_locked", repo.as_str()).await;

    let now = crate::clock::now_ms();
    let r = &m.record;
    // The same manifest pushed twice at once: the second insert waits, then does
    // nothing. If a delete of this manifest commits between this insert and the tag
    // upserts below, a tag's foreign key fails and the whole put is retried.
    let inserted = queries::insert_manifest(&mut *tx, repo_id, r, now).await?;
    if inserted && has_children {
        let (children, is_manifest): (Vec<String>, Vec<bool>) = m
            .blobs
            .iter()
            .map(|d| (d.to_string(), false))
            .chain(m.manifests.iter().map(|d| (d.to_string(), true)))
            .unzip();
        sqlx::query(
            "INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, child_is_manifest)
             SELECT $1, $2, c.digest, c.is_manifest FROM UNNEST($3::TEXT[], $4::BOOLEAN[]) AS c (digest, is_manifest)
             ON CONFLICT DO NOTHING",
        )
        .bind(repo_id)
        .bind(r.digest.to_string())
        .bind(&children)
        .bind(&is_manifest)
        .execute(&mut *tx)
        .await?;
    }
    match (m.tags.as_slice(), events) {
        // A push by tag with notifications on: the tag and its event in one statement.
        ([tag], [event]) if event.repository == repo.as_str() => {
            super::events::queries::upsert_tag_with_event(
                &mut tx, repo_id, tag, &r.digest, now, event,
            )
            .await?;
        }
        _ => {
            for tag in &m.tags {
                queries::upsert_tag(&mut *tx, repo_id, tag, &r.digest, now).await?;
            }
            append_events_if(&mut tx, true, events).await?;
        }
    }
    tx.commit().await?;
    Ok(PutManifestOutcome::Stored)
}
