//! What an import did (or, in a dry run, would do): counts per kind and outcome, and
//! the problems found (each one line naming the repository and the object).

use serde::Serialize;

/// At most this many problems are kept for the report (the counts are exact).
const MAX_PROBLEMS: usize = 1000;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub dry_run: bool,
    /// The store and root read (`filesystem:/srv/registry`, `s3:bucket/root`).
    pub source: String,
    /// Blob `data` objects found under `blobs/`.
    pub blobs_in_store: u64,
    /// Repositories imported by this run (in a dry run: that would be).
    pub repositories: u64,
    /// Repositories a previous run had finished (checkpoints), left alone.
    pub repositories_resumed: u64,
    /// Repositories whose name Wharf refuses.
    pub repositories_invalid: u64,
    /// Repositories with nothing to import (only unfinished uploads): not created.
    pub repositories_empty: u64,
    pub tags: u64,
    /// Tags whose manifest's revision link is gone (the manifest was deleted).
    pub tags_deleted: u64,
    /// Tags whose name Wharf refuses, or whose `current/link` is not a digest.
    pub tags_invalid: u64,
    pub manifests: u64,
    /// Manifests a tag pointed at whose revision link is gone (deleted): skipped.
    pub manifests_deleted: u64,
    /// Manifests that fail validation (schema 1, bad JSON, missing children…).
    pub manifests_invalid: u64,
    /// Repository → blob links recorded.
    pub blob_links: u64,
    /// Blob records created (the rest were known already).
    pub blobs_new: u64,
    /// Unfinished uploads under `_uploads`, ignored.
    pub uploads_ignored: u64,
    /// Revision and layer links whose blob has no `data` object.
    pub dangling_links: u64,
    /// Keys that are not distribution's layout.
    pub unknown_keys: u64,
    /// One line per problem (the first 1000).
    pub problems: Vec<String>,
}

impl Summary {
    pub fn problem(&mut self, line: String) {
        tracing::warn!("{line}");
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(line);
        }
    }

    /// Adds a repository's counts (and problems) to the total.
    pub fn merge(&mut self, other: Summary) {
        self.repositories += other.repositories;
        self.repositories_invalid += other.repositories_invalid;
        self.repositories_empty += other.repositories_empty;
        self.tags += other.tags;
        self.tags_deleted += other.tags_deleted;
        self.tags_invalid += other.tags_invalid;
        self.manifests += other.manifests;
        self.manifests_deleted += other.manifests_deleted;
        self.manifests_invalid += other.manifests_invalid;
        self.blob_links += other.blob_links;
        self.blobs_new += other.blobs_new;
        self.uploads_ignored += other.uploads_ignored;
        self.dangling_links += other.dangling_links;
        self.unknown_keys += other.unknown_keys;
        let room = MAX_PROBLEMS.saturating_sub(self.problems.len());
        self.problems.extend(other.problems.into_iter().take(room));
    }

    /// Counts everything in the import's metrics.
    pub fn record_metrics(&self) {
        use super::metrics::count;
        let done = if self.dry_run {
            "would_import"
        } else {
            "imported"
        };
        count("repository", done, self.repositories);
        count("repository", "resumed", self.repositories_resumed);
        count("repository", "invalid", self.repositories_invalid);
        count("repository", "empty", self.repositories_empty);
        count("tag", done, self.tags);
        count("tag", "skipped_deleted", self.tags_deleted);
        count("tag", "invalid", self.tags_invalid);
        count("manifest", done, self.manifests);
        count("manifest", "skipped_deleted", self.manifests_deleted);
        count("manifest", "invalid", self.manifests_invalid);
        count("blob_link", done, self.blob_links);
        count("blob_link", "dangling", self.dangling_links);
        count("upload", "ignored", self.uploads_ignored);
    }

    /// The human summary, one line per kind.
    pub fn lines(&self) -> Vec<String> {
        let verb = if self.dry_run {
            "would import"
        } else {
            "imported"
        };
        let mut out = vec![
            format!(
                "{}source {}: {} blob objects (none copied)",
                if self.dry_run {
                    "dry run, nothing written; "
                } else {
                    ""
                },
                self.source,
                self.blobs_in_store
            ),
            format!(
                "repositories: {verb} {}, already imported {}, invalid names {}, empty {}",
                self.repositories,
                self.repositories_resumed,
                self.repositories_invalid,
                self.repositories_empty
            ),
            format!(
                "tags: {verb} {}, skipped {} deleted, invalid {}",
                self.tags, self.tags_deleted, self.tags_invalid
            ),
            format!(
                "manifests: {verb} {}, skipped {} deleted, invalid {}",
                self.manifests, self.manifests_deleted, self.manifests_invalid
            ),
            format!(
                "blobs: {verb} {} links, {} new blob records",
                self.blob_links, self.blobs_new
            ),
            format!(
                "skipped: {} unfinished uploads ignored, {} dangling links, {} unknown keys",
                self.uploads_ignored, self.dangling_links, self.unknown_keys
            ),
        ];
        out.extend(self.problems.iter().map(|p| format!("problem: {p}")));
        out
    }
}
