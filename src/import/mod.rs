//! `wharf import`: adopts a CNCF distribution registry's storage in place. It reads
//! distribution's layout (`layout`) from the configured blob store — the same
//! filesystem directory or bucket, under the same `rootdirectory` — and records its
//! repositories, blob links, manifests and tags in the metadata store through the core
//! (`Registry::adopt_blob`, `Registry::adopt_manifest`: validated as a push is). Blob
//! records keep distribution's keys (`docker/registry/v2/blobs/sha256/…/data`), which
//! every backend reads relative to its root as it reads its own `blobs/…` keys: no blob
//! is copied, and `wharf serve` on the same store then serves both.
//!
//! Per repository: blob links first, then manifests (retried while a child is still
//! missing, so indexes follow their children), each with the tags whose `current/link`
//! names it; then a checkpoint (`metadata::import`). An interrupted import resumes after
//! the repositories it finished; a repository it was in the middle of is done again,
//! which changes nothing already recorded. A dry run reads and validates everything and
//! writes nothing. Skipped and reported: tags and manifests deleted in distribution
//! (revision link gone), unfinished uploads (`_uploads`), links whose blob has no data,
//! keys that are not distribution's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use tracing::Instrument;

use crate::blobs::{BlobBackend, BlobError};
use crate::metadata::MetadataError;
use crate::registry::adopt::Adopted;
use crate::registry::manifest_format::{self, ChildKind};
use crate::registry::{Registry, RegistryError};
use crate::types::digest::Digest;
use crate::types::name::{RepoName, Tag};

pub mod layout;
mod metrics;
mod progress;
mod report;

pub use metrics::exposition as metrics_text;
pub use report::Summary;

use layout::{RepoLayout, BLOBS, REPOSITORIES};

/// A manifest larger than this is refused, as on a push (`manifest_format`).
const MAX_MANIFEST: u64 = 4 * 1024 * 1024;
/// A tag's `current/link` holds one digest.
const MAX_LINK: u64 = 1024;
/// Links and manifests read (and blob links recorded) at once within a repository.
const READS_AT_ONCE: usize = 8;

/// How to run an import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Read and validate everything; write nothing (checkpoints included).
    pub dry_run: bool,
    /// Repositories imported at once.
    pub jobs: usize,
    /// Forget this source's checkpoints first: every repository is read again.
    pub restart: bool,
    /// Stop (as if interrupted) once this many repositories are done: for tests of
    /// resuming.
    pub stop_after: Option<u64>,
    /// Show progress (a bar on a terminal, plain lines otherwise).
    pub progress: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            dry_run: false,
            jobs: 8,
            restart: false,
            stop_after: None,
            progress: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading the store: {0}")]
    Storage(#[from] BlobError),
    #[error("{0}")]
    Registry(#[from] RegistryError),
    #[error("metadata store: {0}")]
    Metadata(#[from] MetadataError),
    #[error(
        "stopped after {0} repositories as asked (--stop-after); run the import again \
         to resume"
    )]
    Stopped(u64, Box<Summary>),
}

/// Imports the layout under the blob store's root. `source` names the store for the
/// checkpoints (see [`source_name`]).
pub async fn run(
    registry: &Registry,
    source: &str,
    options: &ImportOptions,
) -> Result<Summary, ImportError> {
    let span = tracing::info_span!("import", source, dry_run = options.dry_run);
    run_inner(registry, source, options).instrument(span).await
}

async fn run_inner(
    registry: &Registry,
    source: &str,
    options: &ImportOptions,
) -> Result<Summary, ImportError> {
    let store = registry.blob_backend().clone();
    let checkpoints = registry.metadata().imports.clone();
    if options.restart && !options.dry_run {
        let n = checkpoints.forget_imports(source).await?;
        tracing::info!(checkpoints = n, "import restarted: checkpoints forgotten");
    }
    let done: HashSet<String> = checkpoints
        .imported_repositories(source)
        .await?
        .into_iter()
        .collect();
    let blobs = Arc::new(
        list_blobs(store.as_ref())
            .instrument(tracing::info_span!("import.list_blobs"))
            .await?,
    );
    let (repos, strays) = list_repositories(store.as_ref())
        .instrument(tracing::info_span!("import.list_repositories"))
        .await?;
    let mut summary = Summary {
        dry_run: options.dry_run,
        source: source.to_string(),
        blobs_in_store: blobs.len() as u64,
        ..Summary::default()
    };
    for key in strays {
        summary.unknown_keys += 1;
        summary.problem(format!("{key}: not distribution's layout, ignored"));
    }
    tracing::info!(
        repositories = repos.len(),
        blobs = blobs.len(),
        resumed = done.len(),
        "import: store listed"
    );
    let todo: Vec<(String, RepoLayout)> = repos
        .into_iter()
        .filter(|(name, _)| {
            let skip = done.contains(name);
            if skip {
                summary.repositories_resumed += 1;
            }
            !skip
        })
        .collect();
    let mut progress = progress::Progress::new(todo.len() as u64, options.progress);
    let dry_run = options.dry_run;
    let mut results = futures_util::stream::iter(todo)
        .map(|(name, layout)| {
            let blobs = blobs.clone();
            let checkpoints = checkpoints.clone();
            async move {
                let span = tracing::info_span!("import.repository", repo = %name);
                let report = import_repository(registry, &name, &layout, &blobs, dry_run)
                    .instrument(span)
                    .await?;
                if !dry_run {
                    checkpoints
                        .mark_imported(source, &name, crate::clock::now_ms())
                        .await?;
                }
                Ok::<_, ImportError>(report)
            }
        })
        .buffer_unordered(options.jobs.max(1));
    let mut finished = 0u64;
    while let Some(report) = results.try_next().await? {
        finished += 1;
        progress.repository_done(report.manifests);
        summary.merge(report);
        if options.stop_after.is_some_and(|n| finished >= n) {
            drop(results);
            progress.finish();
            summary.record_metrics();
            return Err(ImportError::Stopped(finished, Box::new(summary)));
        }
    }
    progress.finish();
    summary.record_metrics();
    tracing::info!(
        repositories = summary.repositories,
        tags = summary.tags,
        manifests = summary.manifests,
        blob_links = summary.blob_links,
        skipped_tags = summary.tags_deleted,
        skipped_manifests = summary.manifests_deleted,
        invalid_manifests = summary.manifests_invalid,
        uploads_ignored = summary.uploads_ignored,
        dangling = summary.dangling_links,
        "import finished"
    );
    Ok(summary)
}

/// Every blob `data` object: digest → size.
async fn list_blobs(store: &dyn BlobBackend) -> Result<HashMap<Digest, u64>, ImportError> {
    let mut out = HashMap::new();
    let mut listing = store.list(BLOBS).await?;
    while let Some(object) = listing.try_next().await? {
        if let Some(digest) = layout::parse_blob_key(&object.key) {
            out.insert(digest, object.size);
        }
    }
    Ok(out)
}

/// Every repository's layout, by name; and the keys under `repositories/` that belong
/// to none.
async fn list_repositories(
    store: &dyn BlobBackend,
) -> Result<(BTreeMap<String, RepoLayout>, Vec<String>), ImportError> {
    let mut repos: BTreeMap<String, RepoLayout> = BTreeMap::new();
    let mut strays = Vec::new();
    let mut listing = store.list(REPOSITORIES).await?;
    while let Some(object) = listing.try_next().await? {
        match layout::parse_repository_key(&object.key) {
            Some((name, entry)) => repos.entry(name).or_default().add(&object.key, entry),
            None => strays.push(object.key),
        }
    }
    Ok((repos, strays))
}

/// Reads a whole small object (a link, a manifest), refusing one over `limit` bytes.
async fn read_small(
    store: &dyn BlobBackend,
    key: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, ImportError> {
    let mut stream = match store.get(key, None).await {
        Ok(s) => s,
        Err(BlobError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(BlobError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        out.extend_from_slice(&chunk);
        if out.len() as u64 > limit {
            break;
        }
    }
    Ok(Some(out))
}

/// A manifest waiting to be adopted.
struct Pending {
    digest: Digest,
    body: Vec<u8>,
    tags: Vec<Tag>,
}

/// Imports one repository (or, in a dry run, checks what would be imported).
async fn import_repository(
    registry: &Registry,
    name: &str,
    layout: &RepoLayout,
    blobs: &HashMap<Digest, u64>,
    dry_run: bool,
) -> Result<Summary, ImportError> {
    let store = registry.blob_backend().clone();
    let mut report = Summary::default();
    let repo = match RepoName::parse(name) {
        Ok(r) => r,
        Err(e) => {
            report.repositories_invalid += 1;
            report.problem(format!("repository {name:?}: {e}; skipped"));
            return Ok(report);
        }
    };
    report.uploads_ignored = layout.uploads.len() as u64;
    if layout.layers.is_empty() && layout.revisions.is_empty() && layout.tags.is_empty() {
        report.repositories_empty = 1;
        return Ok(report);
    }
    report.repositories = 1;
    report.manifests_deleted = layout.deleted_manifests() as u64;
    for key in &layout.unknown {
        report.unknown_keys += 1;
        report.problem(format!("{key}: not distribution's layout, ignored"));
    }

    // Blob links (several at once: each is its own transaction).
    let mut linked: HashSet<Digest> = HashSet::new();
    let mut present = Vec::new();
    for digest in &layout.layers {
        match blobs.get(digest) {
            Some(&size) => present.push((digest, size)),
            None => {
                report.dangling_links += 1;
                report.problem(format!(
                    "{name}: layer link {digest} has no blob data; not linked"
                ));
            }
        }
    }
    let repo_ref = &repo;
    let adopted: Vec<bool> = futures_util::stream::iter(present.iter())
        .map(|&(digest, size)| async move {
            if dry_run {
                return Ok(false);
            }
            let key = layout::blob_data_key(digest);
            registry.adopt_blob(repo_ref, digest, size, &key).await
        })
        .buffered(READS_AT_ONCE)
        .try_collect()
        .await?;
    report.blobs_new += adopted.iter().filter(|new| **new).count() as u64;
    report.blob_links += present.len() as u64;
    linked.extend(present.iter().map(|(d, _)| (*d).clone()));

    // Tags, by the manifest they name.
    let mut tags_of: BTreeMap<Digest, Vec<Tag>> = BTreeMap::new();
    let links: Vec<Option<Vec<u8>>> = futures_util::stream::iter(layout.tags.values())
        .map(|key| read_small(store.as_ref(), key, MAX_LINK))
        .buffered(READS_AT_ONCE)
        .try_collect()
        .await?;
    for ((tag, key), link) in layout.tags.iter().zip(links) {
        let Ok(tag) = Tag::parse(tag) else {
            report.tags_invalid += 1;
            report.problem(format!("{name}: tag {tag:?} is not a valid tag; skipped"));
            continue;
        };
        let digest = link
            .as_deref()
            .and_then(|l| std::str::from_utf8(l).ok())
            .and_then(|l| l.trim().parse::<Digest>().ok());
        match digest {
            Some(d) if layout.revisions.contains(&d) => tags_of.entry(d).or_default().push(tag),
            Some(d) => {
                report.tags_deleted += 1;
                tracing::info!(repo = name, tag = %tag, digest = %d, "tag of a deleted manifest skipped");
            }
            None => {
                report.tags_invalid += 1;
                report.problem(format!(
                    "{name}: tag {tag}'s link {key} does not hold a digest; skipped"
                ));
            }
        }
    }

    // Manifests, retried while a child is missing (indexes after their children).
    let bodies: Vec<Option<Vec<u8>>> = futures_util::stream::iter(layout.revisions.iter())
        .map(|digest| {
            let store = store.clone();
            async move {
                match blobs.get(digest) {
                    Some(&size) if size <= MAX_MANIFEST => {
                        let key = layout::blob_data_key(digest);
                        read_small(store.as_ref(), &key, MAX_MANIFEST).await
                    }
                    _ => Ok(None),
                }
            }
        })
        .buffered(READS_AT_ONCE)
        .try_collect()
        .await?;
    let mut pending = Vec::new();
    for (digest, body) in layout.revisions.iter().zip(bodies) {
        let Some(&size) = blobs.get(digest) else {
            report.dangling_links += 1;
            report.problem(format!(
                "{name}: revision link {digest} has no blob data; manifest skipped"
            ));
            report.tags_invalid += tags_of.get(digest).map_or(0, |t| t.len() as u64);
            continue;
        };
        let Some(body) = body.filter(|b| b.len() as u64 <= MAX_MANIFEST) else {
            report.manifests_invalid += 1;
            report.problem(format!(
                "{name}@{digest}: manifest of {size} bytes is missing or too large; skipped"
            ));
            continue;
        };
        pending.push(Pending {
            digest: digest.clone(),
            body,
            tags: tags_of.remove(digest).unwrap_or_default(),
        });
    }
    let mut stored: HashSet<Digest> = HashSet::new();
    loop {
        let before = pending.len();
        let mut missing = Vec::new();
        for p in std::mem::take(&mut pending) {
            let outcome = if dry_run {
                check(&p, &linked, &stored)
            } else {
                adopt(registry, &repo, &p).await?
            };
            match outcome {
                Ok(()) => {
                    report.manifests += 1;
                    report.tags += p.tags.len() as u64;
                    stored.insert(p.digest);
                }
                Err(Problem::Missing(child)) => missing.push((p, child)),
                Err(Problem::Invalid(why)) => {
                    report.manifests_invalid += 1;
                    report.tags_invalid += p.tags.len() as u64;
                    report.problem(format!("{name}@{}: {why}; skipped", p.digest));
                }
            }
        }
        if missing.is_empty() {
            break;
        }
        if missing.len() == before {
            for (p, child) in missing {
                report.manifests_invalid += 1;
                report.tags_invalid += p.tags.len() as u64;
                report.problem(format!(
                    "{name}@{}: references {child}, which is not in the repository; skipped",
                    p.digest
                ));
            }
            break;
        }
        pending = missing.into_iter().map(|(p, _)| p).collect();
    }
    Ok(report)
}

/// Why a manifest was not (or would not be) adopted.
enum Problem {
    Missing(Digest),
    Invalid(String),
}

/// Adopts one manifest; `Err` only for failures of the stores (the import stops).
async fn adopt(
    registry: &Registry,
    repo: &RepoName,
    p: &Pending,
) -> Result<Result<(), Problem>, ImportError> {
    match registry
        .adopt_manifest(repo, &p.digest, p.body.clone(), &p.tags)
        .await
    {
        Ok(Adopted::Stored) => Ok(Ok(())),
        Ok(Adopted::MissingChild(d)) => Ok(Err(Problem::Missing(d))),
        Err(
            e @ (RegistryError::ManifestInvalid(_)
            | RegistryError::DigestMismatch { .. }
            | RegistryError::Digest(_)),
        ) => Ok(Err(Problem::Invalid(e.to_string()))),
        Err(e) => Err(e.into()),
    }
}

/// A dry run's stand-in for [`adopt`]: the push's validation, with the repository's
/// content as the import would have recorded it so far.
fn check(p: &Pending, linked: &HashSet<Digest>, stored: &HashSet<Digest>) -> Result<(), Problem> {
    let valid = manifest_format::validate(&p.body, None, p.digest.algorithm())
        .map_err(|e| Problem::Invalid(e.to_string()))?;
    if valid.digest != p.digest {
        return Err(Problem::Invalid(format!(
            "content digest {} does not match its link",
            valid.digest
        )));
    }
    let missing = valid.required.iter().find(|c| match c.kind {
        ChildKind::Blob => !linked.contains(&c.digest),
        ChildKind::Manifest => !stored.contains(&c.digest),
    });
    match missing {
        Some(c) => Err(Problem::Missing(c.digest.clone())),
        None => Ok(()),
    }
}

/// The name checkpoints are kept under: the store's driver and where its root is.
pub fn source_name(config: &crate::config::Config) -> String {
    use crate::config::StorageDriver;
    let root = |r: &Option<String>| r.as_deref().unwrap_or("").trim_matches('/').to_string();
    match config.storage.driver() {
        StorageDriver::Filesystem { rootdirectory } => {
            let path = std::path::Path::new(&rootdirectory);
            let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            format!("filesystem:{}", abs.display())
        }
        StorageDriver::InMemory => "inmemory:".to_string(),
        StorageDriver::S3(s3) => format!("s3:{}/{}", root(&s3.bucket), root(&s3.rootdirectory)),
        StorageDriver::Azure(a) => {
            format!("azure:{}/{}", root(&a.container), root(&a.rootdirectory))
        }
        StorageDriver::Gcs(g) => format!("gcs:{}/{}", root(&g.bucket), root(&g.rootdirectory)),
    }
}
