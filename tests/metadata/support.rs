//! Fresh stores for the suite: a SQLite file in a temporary directory, or a PostgreSQL
//! database of its own (`wharf_test_<random>`, created on the server that
//! `WHARF_TEST_POSTGRES_URL` names and dropped afterwards, also when the test fails),
//! and small builders for the records the tests store.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;
use sqlx::{Connection as _, PgConnection};

use crate::postgres_url::with_database;
use wharf::metadata::{BlobCommit, Metadata, NewManifest, PutManifestOutcome};
use wharf::types::digest::{Algorithm, Digest};
use wharf::types::name::{RepoName, Tag};
use wharf::types::{BlobRecord, ChunkRecord, ManifestRecord, UploadRecord};

pub type Store = Metadata;

pub const POSTGRES_ENV: &str = "WHARF_TEST_POSTGRES_URL";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Pool size the stores are opened with: fewer connections than the 16 racing tasks,
/// so the races also exercise waiting for a connection.
const POOL_SIZE: u32 = 8;

/// How the stores are opened: [`POOL_SIZE`] connections, and a wait for one far longer
/// than the production default (2 s). Sixteen racers queue on one row through eight
/// connections; on a loaded machine (the suite runs tests in parallel on two cores)
/// that queue took over 2 s, and a race test is about outcomes, not about latency.
fn options() -> wharf::metadata::StoreOptions {
    wharf::metadata::StoreOptions {
        pool_size: POOL_SIZE,
        acquire_timeout: std::time::Duration::from_secs(60),
        ..wharf::metadata::StoreOptions::default()
    }
}

/// Runs `case` on a fresh SQLite store.
pub async fn run_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/wharf.db", dir.path().display());
    let store = wharf::metadata::open_with(&url, &options())
        .await
        .expect("open sqlite store");
    case(store).await;
}

/// `WHARF_TEST_POSTGRES_URL`; the test fails without it, saying how to provide it.
pub fn postgres_server_url(test: &str) -> String {
    std::env::var(POSTGRES_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{test} needs {POSTGRES_ENV}, a PostgreSQL server's URL such as \
                 postgres://postgres@127.0.0.1:5432/postgres (scripts/test starts a throwaway \
                 server and sets it; by hand: source scripts/lib/services.sh && services_init \
                 && start_postgres, in the shell that runs cargo); to run without it: \
                 cargo nextest run -E 'not (test(/^postgres::/) or binary(multi))'"
            )
        })
}

/// A PostgreSQL database of the test's own, dropped when the test is over.
pub struct TestDatabase {
    server_url: String,
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// Creates the database; the test fails when no server is set.
    pub async fn create(test: &str) -> TestDatabase {
        let server_url = postgres_server_url(test);
        let name = format!("wharf_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server_url)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={server_url}: cannot connect: {e}"));
        // A non-C collation, as managed services default to, so that ordering bugs
        // (`ORDER BY name` without byte order) show; plain if ICU is not built in.
        let icu = format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' \
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
        );
        if sqlx::raw_sql(&icu).execute(&mut admin).await.is_err() {
            sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .expect("create test database");
        }
        let _ = admin.close().await;
        let url = with_database(&server_url, &name);
        TestDatabase {
            server_url,
            name,
            url,
        }
    }

    pub async fn drop_database(self) {
        match PgConnection::connect(&self.server_url).await {
            Ok(mut admin) => {
                let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
                if let Err(e) = sqlx::raw_sql(&sql).execute(&mut admin).await {
                    eprintln!("could not drop test database {}: {e}", self.name);
                }
                let _ = admin.close().await;
            }
            Err(e) => eprintln!("could not drop test database {}: {e}", self.name),
        }
    }
}

/// Runs `case` with a fresh PostgreSQL database's URL; fails without a server.
pub async fn run_postgres_url<F, Fut>(test: &str, case: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TestDatabase::create(test).await;
    let outcome = AssertUnwindSafe(case(db.url.clone())).catch_unwind().await;
    db.drop_database().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `case` on a fresh PostgreSQL store; fails without a server.
pub async fn run_postgres<F, Fut>(test: &str, case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    run_postgres_url(test, |url| async move {
        let store = wharf::metadata::open_with(&url, &options())
            .await
            .expect("open postgres store");
        case(store).await;
    })
    .await;
}

// ---- builders ------------------------------------------------------------------

pub fn repo(name: &str) -> RepoName {
    RepoName::parse(name).expect("valid repository name")
}

pub fn tag(name: &str) -> Tag {
    Tag::parse(name).expect("valid tag")
}

pub fn digest_of(data: &[u8]) -> Digest {
    Algorithm::Sha256.digest_of(data)
}

/// A blob record for `content` stored under `key`.
pub fn blob(content: &str, key: &str) -> BlobRecord {
    BlobRecord {
        digest: digest_of(content.as_bytes()),
        size: content.len() as u64,
        storage_key: key.to_string(),
    }
}

pub fn upload(id: &str, repository: &str, updated_at: i64) -> UploadRecord {
    UploadRecord {
        id: id.to_string(),
        repository: repo(repository),
        offset: 0,
        storage_key: format!("uploads/{id}"),
        chunks: Vec::new(),
        hash_state: vec![1, 2, 3, 0, 255],
        created_at: updated_at,
        updated_at,
    }
}

pub fn chunk(key: &str, offset: u64, len: u64) -> ChunkRecord {
    ChunkRecord {
        key: key.to_string(),
        offset,
        len,
    }
}

/// A manifest record of `payload` (no subject, artifact type or annotations).
fn record(media_type: &str, payload: String) -> ManifestRecord {
    ManifestRecord {
        digest: digest_of(payload.as_bytes()),
        media_type: media_type.to_string(),
        payload: payload.into_bytes(),
        subject: None,
        artifact_type: None,
        annotations: None,
    }
}

/// An image manifest whose payload is unique to `seed`, requiring `blobs`.
pub fn manifest(seed: &str, blobs: &[&BlobRecord], tag_name: Option<&str>) -> NewManifest {
    let layers: Vec<String> = blobs.iter().map(|b| b.digest.to_string()).collect();
    let payload = format!(r#"{{"schemaVersion":2,"seed":"{seed}","layers":{layers:?}}}"#);
    NewManifest {
        record: record(OCI_MANIFEST, payload),
        blobs: blobs.iter().map(|b| b.digest.clone()).collect(),
        manifests: Vec::new(),
        require_blobs: true,
        require_manifests: true,
        tags: tag_name.map(tag).into_iter().collect(),
    }
}

/// An index whose payload is unique to `seed`, requiring the manifests `children`.
pub fn index(seed: &str, children: &[&Digest], tag_name: Option<&str>) -> NewManifest {
    let list: Vec<String> = children.iter().map(|d| d.to_string()).collect();
    let payload = format!(r#"{{"schemaVersion":2,"seed":"{seed}","manifests":{list:?}}}"#);
    NewManifest {
        record: record(OCI_INDEX, payload),
        blobs: Vec::new(),
        manifests: children.iter().map(|d| (*d).clone()).collect(),
        require_blobs: true,
        require_manifests: true,
        tags: tag_name.map(tag).into_iter().collect(),
    }
}

/// A referrer of `subject` (no children), with an optional artifact type.
pub fn referrer(seed: &str, subject: &Digest, artifact_type: Option<&str>) -> NewManifest {
    let mut m = manifest(seed, &[], None);
    let payload = format!(
        r#"{{"schemaVersion":2,"seed":"{seed}","subject":"{subject}","artifactType":{artifact_type:?}}}"#
    );
    m.record.digest = digest_of(payload.as_bytes());
    m.record.payload = payload.into_bytes();
    m.record.subject = Some(subject.clone());
    m.record.artifact_type = artifact_type.map(str::to_string);
    m.record.annotations = Some(format!(r#"{{"seed":"{seed}"}}"#));
    m
}

// Store calls the cases repeat, with no upload and no events; each unwraps.

/// Commits `b` to `r`.
pub async fn commit(store: &Store, r: &RepoName, b: &BlobRecord) -> BlobCommit {
    store.blobs.commit_blob(r, b, None, &[]).await.unwrap()
}

/// Stores `m` in `r`.
pub async fn put(store: &Store, r: &RepoName, m: &NewManifest) -> PutManifestOutcome {
    store.manifests.put_manifest(r, m, &[]).await.unwrap()
}

/// Deletes manifest `d` of `r`; whether it was there.
pub async fn delete(store: &Store, r: &RepoName, d: &Digest) -> bool {
    store.manifests.delete_manifest(r, d, &[]).await.unwrap()
}

/// The manifest `r` tags `name`, if any.
pub async fn tagged(store: &Store, r: &RepoName, name: &str) -> Option<ManifestRecord> {
    store
        .manifests
        .manifest_by_tag(r, &tag(name))
        .await
        .unwrap()
}

/// One garbage-collection review of every manifest, then every blob, due now.
pub async fn collect(store: &Store) {
    store.gc.review_manifests(-1000, 100).await.unwrap();
    store.gc.review_blobs(-1000, 100).await.unwrap();
}
