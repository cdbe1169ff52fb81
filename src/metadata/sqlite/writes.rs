//! The SQLite store's multi-statement writes, each one job for the group committer
//! (see `group_commit`): shared statements on the writer connection, committed with
//! their batch. There is one writer, so nothing here races another write.

use sqlx::SqliteConnection;

use super::group_commit::{GroupCommitter, JobKind};
use super::outbox::{self, Row};
use super::{gc_sql, queries};
use crate::metadata::{BlobCommit, MetadataError, NewManifest, PutManifestOutcome, Result};
use crate::types::{BlobRecord, Digest, EventRecord, RepoName};

/// Writes a change's events to the outbox, in its job's transaction, if it changed
/// something (staged for the end of the group-commit batch: `outbox`).
pub(super) async fn append_events_if(
    conn: &mut SqliteConnection,
    changed: bool,
    events: &[EventRecord],
) -> Result<()> {
    if changed {
        outbox::append(conn, events).await?;
    }
    Ok(())
}

/// The first referenced child that is not in the repository `repo_id`.
async fn first_missing_child(
    conn: &mut SqliteConnection,
    repo_id: i64,
    m: &NewManifest,
) -> Result<Option<Digest>> {
    const BLOB: &str = "SELECT 1 FROM repository_blobs WHERE repository_id = $1 AND digest = $2";
    const MANIFEST: &str = "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2";
    let blobs = m.blobs.iter().filter(|_| m.require_blobs);
    let manifests = m.manifests.iter().filter(|_| m.require_manifests);
    let children = blobs
        .map(|d| (d, BLOB))
        .chain(manifests.map(|d| (d, MANIFEST)));
    for (digest, sql) in children {
        let present: Option<i64> = sqlx::query_scalar(sql)
            .bind(repo_id)
            .bind(digest.to_string())
            .fetch_optional(&mut *conn)
            .await?;
        if present.is_none() {
            return Ok(Some(digest.clone()));
        }
    }
    Ok(None)
}

async fn put_manifest_job(
    conn: &mut SqliteConnection,
    repo: &RepoName,
    m: &NewManifest,
    events: Vec<Row>,
) -> Result<PutManifestOutcome> {
    // Children are checked before the repository is created, so a refused manifest
    // leaves no trace (not even a new, empty repository).
    let repo_id = match queries::repository_id(&mut *conn, repo.as_str()).await? {
        Some(id) => id,
        None => {
            let first = (m.blobs.iter().filter(|_| m.require_blobs))
                .chain(m.manifests.iter().filter(|_| m.require_manifests))
                .next();
            if let Some(d) = first {
                return Ok(PutManifestOutcome::MissingChild(d.clone()));
            }
            queries::ensure_repository(conn, repo.as_str()).await?
        }
    };
    if let Some(missing) = first_missing_child(conn, repo_id, m).await? {
        return Ok(PutManifestOutcome::MissingChild(missing));
    }
    let now = crate::clock::now_ms();
    let r = &m.record;
    if queries::insert_manifest(&mut *conn, repo_id, r, now).await? {
        let children = m
            .blobs
            .iter()
            .map(|d| (d, false))
            .chain(m.manifests.iter().map(|d| (d, true)));
        for (child, is_manifest) in children {
            sqlx::query(
                "INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, child_is_manifest)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(repo_id)
            .bind(r.digest.to_string())
            .bind(child.to_string())
            .bind(is_manifest)
            .execute(&mut *conn)
            .await?;
        }
    }
    for tag in &m.tags {
        queries::upsert_tag(&mut *conn, repo_id, tag, &r.digest, now).await?;
    }
    outbox::append_rows(conn, events).await?;
    Ok(PutManifestOutcome::Stored)
}

/// Closes the upload session (if any), records the blob and links it, in one job.
pub(super) async fn commit_blob(
    writer: &GroupCommitter,
    repo: &RepoName,
    blob: &BlobRecord,
    upload_id: Option<&str>,
    events: &[EventRecord],
) -> Result<BlobCommit> {
    let (repo, blob, upload_id) = (repo.clone(), blob.clone(), upload_id.map(str::to_string));
    let rows = outbox::encode_rows(events)?;
    writer
        .write_as(JobKind::Blob, move |conn| {
            Box::pin(async move {
                commit_blob_rows(conn, &repo, &blob, upload_id.as_deref(), rows).await
            })
        })
        .await
}

/// `commit_blob`'s statements, on the writer connection (a charged commit runs them
/// after its quota check, in the same job).
pub(super) async fn commit_blob_job(
    conn: &mut SqliteConnection,
    repo: &RepoName,
    blob: &BlobRecord,
    upload_id: Option<&str>,
    events: &[EventRecord],
) -> Result<BlobCommit> {
    let rows = outbox::encode_rows(events)?;
    commit_blob_rows(conn, repo, blob, upload_id, rows).await
}

/// [`commit_blob_job`] with its events encoded beforehand.
async fn commit_blob_rows(
    conn: &mut SqliteConnection,
    repo: &RepoName,
    blob: &BlobRecord,
    upload_id: Option<&str>,
    events: Vec<Row>,
) -> Result<BlobCommit> {
    // Pushes back a pending review of the digest (one writer: no GC pass can be
    // half-way through it).
    gc_sql::touch_blob(conn, &blob.digest).await?;
    if let Some(id) = upload_id {
        if !queries::close_upload(&mut *conn, id).await? {
            return Err(MetadataError::UploadGone);
        }
    }
    let repo_id = queries::ensure_repository(conn, repo.as_str()).await?;
    let inserted = queries::insert_blob(&mut *conn, blob).await?;
    let stored = if inserted {
        blob.clone()
    } else {
        queries::blob(&mut *conn, &blob.digest)
            .await?
            .ok_or_else(|| MetadataError::Corrupt(format!("blob {} vanished", blob.digest)))?
    };
    queries::link(&mut *conn, repo_id, &blob.digest).await?;
    outbox::append_rows(conn, events).await?;
    Ok(BlobCommit {
        blob: stored,
        stored_new: inserted,
    })
}

/// Links an existing blob into `repo`; false if no such blob.
pub(super) async fn link_blob(
    writer: &GroupCommitter,
    repo: &RepoName,
    digest: &Digest,
    events: &[EventRecord],
) -> Result<bool> {
    let (repo, digest) = (repo.clone(), digest.clone());
    let rows = outbox::encode_rows(events)?;
    writer
        .write_as(JobKind::Blob, move |conn| {
            Box::pin(async move {
                gc_sql::touch_blob(conn, &digest).await?;
                if queries::blob(&mut *conn, &digest).await?.is_none() {
                    return Ok(false);
                }
                let repo_id = queries::ensure_repository(conn, repo.as_str()).await?;
                queries::link(&mut *conn, repo_id, &digest).await?;
                outbox::append_rows(conn, rows).await?;
                Ok(true)
            })
        })
        .await
}

/// Stores a manifest, its references and its tags, or nothing (a missing child).
pub(super) async fn put_manifest(
    writer: &GroupCommitter,
    repo: &RepoName,
    m: &NewManifest,
    events: &[EventRecord],
) -> Result<PutManifestOutcome> {
    let (repo, m) = (repo.clone(), m.clone());
    let rows = outbox::encode_rows(events)?;
    writer
        .write_as(JobKind::Manifest, move |conn| {
            Box::pin(async move { put_manifest_job(conn, &repo, &m, rows).await })
        })
        .await
}
