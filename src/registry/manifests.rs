//! Manifests, tags, the catalog and the referrers API.

use serde_json::{json, Value};

use super::manifest_format::{self, ValidManifest};
use super::{Page, Registry, RegistryError, Result};
use crate::metadata::{NewManifest, PutManifestOutcome};
use crate::types::digest::Digest;
use crate::types::name::{Reference, RepoName, Tag};
use crate::types::{EventAction, ManifestRecord, RequestContext, TargetKind};

/// What a manifest push produced.
#[derive(Debug, Clone)]
pub struct PushedManifest {
    pub digest: Digest,
    /// The subject's digest, echoed in `OCI-Subject`.
    pub subject: Option<Digest>,
    /// Every tag that now points at it (the reference's and the `?tag=` ones).
    pub tags: Vec<Tag>,
}

/// The referrers of a subject, as an OCI image index.
#[derive(Debug, Clone)]
pub struct Referrers {
    pub index: Value,
    pub filtered_by_artifact_type: bool,
}

impl Registry {
    /// Validates and stores a manifest, pointing at it the tag `reference` names (if it
    /// is one) and every tag of `extra_tags` (the draft spec's `?tag=`), all or none.
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, reference = %reference))]
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        extra_tags: &[Tag],
        content_type: Option<&str>,
        body: Vec<u8>,
        ctx: &RequestContext,
    ) -> Result<PushedManifest> {
        self.require_writable()?;
        let algorithm = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => crate::types::digest::Algorithm::Sha256,
        };
        let mut valid: ValidManifest = manifest_format::validate(&body, content_type, algorithm)?;
        self.check_foreign_urls(&valid.foreign_urls)?;
        if let Reference::Digest(expected) = reference {
            if expected != &valid.digest {
                return Err(RegistryError::DigestMismatch {
                    expected: expected.clone(),
                    actual: valid.digest,
                });
            }
        }
        // The annotations column, and the parsed annotations freed at once: with a
        // large manifest they are most of it, and the store's write must not find a
        // second parsed copy still held here (issue 12: memory per push).
        let annotations = valid.annotations.take().map(|a| a.to_string());
        let (blobs, manifests) = valid.required_digests();
        let new = NewManifest {
            record: ManifestRecord {
                digest: valid.digest.clone(),
                media_type: valid.media_type.clone(),
                payload: body,
                subject: valid.subject.clone(),
                artifact_type: valid.artifact_type.clone(),
                annotations,
            },
            blobs,
            manifests,
            require_blobs: !self.options.sparse_manifests,
            require_manifests: !(self.options.sparse_manifests || self.options.sparse_indexes),
            tags: tags_of(reference, extra_tags),
        };
        // One push event per tag (a push by digest: one without a tag), as a push by
        // each tag would have given.
        let events: Vec<_> = if new.tags.is_empty() {
            vec![None]
        } else {
            new.tags.iter().map(|t| Some(t.as_str())).collect()
        }
        .into_iter()
        .flat_map(|tag| {
            let r = &new.record;
            let target = self.manifest_target(&r.media_type, &r.digest, &r.payload, tag);
            self.event(ctx, EventAction::Push, repo, target)
        })
        .collect();
        // Refused when the blobs it references that the scope lacks would take a quota over.
        self.check_manifest_quota(repo, &new.blobs).await?;
        crate::clock::race_point("manifest.before_put", repo.as_str()).await;
        match self
            .meta
            .manifests
            .put_manifest(repo, &new, &events)
            .await?
        {
            PutManifestOutcome::Stored => Ok(PushedManifest {
                digest: valid.digest,
                subject: valid.subject,
                tags: new.tags,
            }),
            PutManifestOutcome::MissingChild(d) => {
                if self.meta.gc.is_tombstoned(&d).await.unwrap_or(false) {
                    super::gc::metrics::tombstone_hit("manifest_put");
                }
                Err(RegistryError::ManifestBlobUnknown(d))
            }
        }
    }

    /// `validation.manifests.urls`: every URL of a non-distributable layer matches an
    /// `allow` pattern (when there are any) and no `deny` pattern.
    pub(super) fn check_foreign_urls(&self, urls: &[String]) -> Result<()> {
        let (allow, deny) = (&self.options.url_allow, &self.options.url_deny);
        for url in urls {
            let allowed = allow.is_empty() || allow.iter().any(|r| r.is_match(url));
            if !allowed || deny.iter().any(|r| r.is_match(url)) {
                return Err(RegistryError::ManifestInvalid(
                    manifest_format::ManifestError::Invalid(format!(
                        "layer URL {url:?} is not allowed on this registry \
                         (validation.manifests.urls)"
                    )),
                ));
            }
        }
        Ok(())
    }

    /// A manifest by tag or digest, recorded as pulled ([`Registry::record_pull`]).
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        ctx: &RequestContext,
    ) -> Result<ManifestRecord> {
        let m = self.find_manifest(repo, reference).await?;
        self.record_pull(repo, reference, &m, ctx);
        Ok(m)
    }

    /// A manifest by tag or digest, not yet recorded as pulled: for a caller that may
    /// still refuse to serve it (a trust policy), then calls [`Registry::record_pull`].
    pub async fn find_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<ManifestRecord> {
        self.mirror_refresh(repo, reference).await?;
        let found = match reference {
            Reference::Tag(t) => self.meta.manifests.manifest_by_tag(repo, t).await?,
            Reference::Digest(d) => self.meta.manifests.manifest_by_digest(repo, d).await?,
        };
        found.ok_or_else(|| RegistryError::ManifestUnknown(reference.to_string()))
    }

    /// Records a served manifest as pulled: its last pull (retention's
    /// `keeppulledwithin`, written in batches, see gc::access), the pull-through
    /// cache's statistics, and a pull event when some endpoint wants them.
    pub fn record_pull(
        &self,
        repo: &RepoName,
        reference: &Reference,
        m: &ManifestRecord,
        ctx: &RequestContext,
    ) {
        self.access.manifest_pulled(repo, &m.digest);
        self.mirror_pulled(repo, &m.digest, true);
        if self.pulls.is_some() {
            let tag = match reference {
                Reference::Tag(t) => Some(t.as_str()),
                Reference::Digest(_) => None,
            };
            let target = self.manifest_target(&m.media_type, &m.digest, &m.payload, tag);
            self.pulled(ctx, repo, target);
        }
    }

    /// Deletes a manifest (by digest, with the tags pointing at it) or just a tag.
    #[tracing::instrument(level = "debug", skip_all, fields(repo = %repo, reference = %reference))]
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        ctx: &RequestContext,
    ) -> Result<()> {
        self.require_delete()?;
        use super::events::deleted_target;
        let deleted = match reference {
            Reference::Tag(t) => {
                let target = deleted_target(TargetKind::Tag, None, Some(t.as_str()));
                let events = self.event(ctx, EventAction::Delete, repo, target);
                self.meta.manifests.delete_tag(repo, t, &events).await?
            }
            Reference::Digest(d) => {
                let target = deleted_target(TargetKind::Manifest, Some(d), None);
                let events = self.event(ctx, EventAction::Delete, repo, target);
                self.meta
                    .manifests
                    .delete_manifest(repo, d, &events)
                    .await?
            }
        };
        if deleted {
            Ok(())
        } else {
            Err(RegistryError::ManifestUnknown(reference.to_string()))
        }
    }

    pub async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: Option<u32>,
    ) -> Result<Page> {
        let limit = self.page_size(n);
        let tags = self
            .meta
            .manifests
            .list_tags(repo, last, limit.saturating_add(1))
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(repo.to_string()))?;
        Ok(Page::from_fetched(tags, limit))
    }

    pub async fn catalog(&self, last: Option<&str>, n: Option<u32>) -> Result<Page> {
        self.catalog_where(last, n, |_| true).await
    }

    /// A page of the repositories `shows` accepts, after `last`. The store is read in
    /// batches until the page is full; at most `CATALOG_SCAN` names are read per request,
    /// and a page cut short by that carries the last name read as its `next_last` (the
    /// client follows the link; no repository is skipped or repeated).
    pub async fn catalog_where(
        &self,
        last: Option<&str>,
        n: Option<u32>,
        shows: impl Fn(&str) -> bool,
    ) -> Result<Page> {
        const CATALOG_SCAN: usize = 10_000;
        let limit = self.page_size(n);
        let batch = limit.saturating_add(1).max(100);
        let mut kept = Vec::new();
        let mut cursor = last.map(str::to_string);
        let mut scanned = 0;
        loop {
            let names = self
                .meta
                .repositories
                .list_repositories(cursor.as_deref(), batch)
                .await?;
            let exhausted = names.len() < batch as usize;
            scanned += names.len();
            for name in names {
                if kept.len() > limit as usize {
                    break;
                }
                cursor = Some(name.clone());
                if shows(&name) {
                    kept.push(name);
                }
            }
            if kept.len() > limit as usize || exhausted {
                return Ok(Page::from_fetched(kept, limit));
            }
            if scanned >= CATALOG_SCAN {
                // Cut short: the page (maybe empty) ends where the scan stopped.
                return Ok(Page {
                    items: kept,
                    next_last: cursor,
                });
            }
        }
    }

    /// The manifests whose subject is `subject`, optionally of one artifact type.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Referrers> {
        let rows = self
            .meta
            .manifests
            .referrers(repo, subject, artifact_type)
            .await?;
        let manifests: Vec<Value> = rows
            .into_iter()
            .map(|r| {
                let mut d = json!({
                    "mediaType": r.media_type,
                    "digest": r.digest.to_string(),
                    "size": r.size,
                });
                if let Some(a) = r.artifact_type {
                    d["artifactType"] = Value::String(a);
                }
                if let Some(a) = r
                    .annotations
                    .and_then(|a| serde_json::from_str::<Value>(&a).ok())
                {
                    d["annotations"] = a;
                }
                d
            })
            .collect();
        Ok(Referrers {
            index: json!({
                "schemaVersion": 2,
                "mediaType": manifest_format::OCI_INDEX,
                "manifests": manifests,
            }),
            filtered_by_artifact_type: artifact_type.is_some(),
        })
    }
}

/// The reference's tag (if it is one) and the extra tags, each once, in order.
fn tags_of(reference: &Reference, extra: &[Tag]) -> Vec<Tag> {
    let mut tags: Vec<Tag> = Vec::with_capacity(extra.len() + 1);
    let own = match reference {
        Reference::Tag(t) => Some(t),
        Reference::Digest(_) => None,
    };
    for tag in own.into_iter().chain(extra) {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    tags
}
