//! The backends under test, each built the way `wharf serve` builds it, and a view of
//! what each has stored (its objects, listed from outside the backend) so that the cases
//! can check that nothing is left behind.
//!
//! Every test gets a fresh location: a temporary directory (filesystem), a new store
//! (in-memory), or a `rootdirectory` of its own in the emulator's shared bucket (S3,
//! Azure, GCS), emptied when the test ends.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStore;
use serde_json::{json, Value};
use wharf::blobs::{BlobBackend, BlobError};
use wharf::types::ChunkRecord;

/// Azurite's well-known development account (public, documented by Microsoft).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Chunks are handed to a chunk writer in pieces of this size, as a request body arrives.
const PIECE: usize = 256 * 1024;

/// A backend kind, named as the test modules are (`s3::ranged_reads`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Filesystem,
    InMemory,
    S3,
    Azure,
    Gcs,
}

impl Kind {
    pub fn from_module(name: &str) -> Kind {
        match name {
            "filesystem" => Kind::Filesystem,
            "inmemory" => Kind::InMemory,
            "s3" => Kind::S3,
            "azure" => Kind::Azure,
            "gcs" => Kind::Gcs,
            other => panic!("no backend kind {other:?}"),
        }
    }

    fn module(self) -> &'static str {
        match self {
            Kind::Filesystem => "filesystem",
            Kind::InMemory => "inmemory",
            Kind::S3 => "s3",
            Kind::Azure => "azure",
            Kind::Gcs => "gcs",
        }
    }
}

/// An emulator's setting from the environment; without it the test fails, saying how
/// to provide it (or how to leave these tests out).
fn need(kind: Kind, var: &str) -> String {
    let (emulator, start) = match kind {
        Kind::S3 => ("moto", "start_s3"),
        Kind::Azure => ("Azurite", "start_azurite"),
        Kind::Gcs => ("fake-gcs-server", "start_fake_gcs"),
        Kind::Filesystem | Kind::InMemory => unreachable!("no emulator"),
    };
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "the {m} blob contract tests need {var}: the address of {emulator}, which \
                 scripts/test starts (by hand: source scripts/lib/services.sh && services_init \
                 && {start}, in the shell that runs cargo); to run without them: \
                 cargo nextest run -E 'not (binary(blobs) and test(/^{m}::/))'",
                m = kind.module()
            )
        })
}

/// A backend through the server's own constructor (`wharf::server::blob_backend`).
fn from_storage_section(storage: Value) -> Arc<dyn BlobBackend> {
    let tree = json!({ "storage": storage });
    let config = wharf::config::Config::from_tree(serde_norway::to_value(tree).expect("YAML"))
        .unwrap_or_else(|e| panic!("test storage configuration: {e}"));
    wharf::server::blob_backend(&config).unwrap_or_else(|e| panic!("blob backend: {e}"))
}

/// Where a subject's objects are, seen from outside its backend.
enum Location {
    Filesystem {
        dir: tempfile::TempDir,
    },
    /// The same store the backend writes to.
    InMemory {
        store: Arc<object_store::memory::InMemory>,
    },
    /// S3 and Azure: a client of its own on the emulator's bucket, and the test's prefix.
    Bucket {
        store: Arc<dyn ObjectStore>,
        prefix: String,
    },
    /// fake-gcs-server, through its JSON API.
    Gcs {
        base: String,
        bucket: String,
        prefix: String,
    },
}

/// One backend under test, in a location of the test's own.
pub struct Subject {
    pub kind: Kind,
    pub backend: Arc<dyn BlobBackend>,
    location: Location,
    http: reqwest::Client,
}

impl Subject {
    pub async fn new(kind: Kind) -> Subject {
        // Some S3 clients fail to start when this names a missing file.
        if matches!(kind, Kind::S3) {
            static UNSET: std::sync::Once = std::sync::Once::new();
            UNSET.call_once(|| std::env::remove_var("AWS_CA_BUNDLE"));
        }
        let prefix = format!("contract-{}", uuid::Uuid::new_v4().simple());
        let (backend, location) = match kind {
            Kind::Filesystem => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let root = dir.path().join("blobs").display().to_string();
                let backend =
                    from_storage_section(json!({ "filesystem": { "rootdirectory": root } }));
                (backend, Location::Filesystem { dir })
            }
            Kind::InMemory => {
                // What `blob_backend` builds for `storage.inmemory`, keeping a handle on
                // the store so that its objects can be listed.
                let store = Arc::new(object_store::memory::InMemory::new());
                let backend: Arc<dyn BlobBackend> = Arc::new(
                    wharf::blobs::object::ObjectBackend::new("inmemory", store.clone(), ""),
                );
                (backend, Location::InMemory { store })
            }
            Kind::S3 => {
                let (endpoint, bucket) = s3_settings();
                let backend = from_storage_section(s3_section(&endpoint, &bucket, &prefix));
                let store = s3_client(&endpoint, &bucket);
                (backend, Location::Bucket { store, prefix })
            }
            Kind::Azure => {
                let (endpoint, container) = azure_settings();
                let backend = from_storage_section(azure_section(&endpoint, &container, &prefix));
                let store = azure_client(&endpoint, &container);
                (backend, Location::Bucket { store, prefix })
            }
            Kind::Gcs => {
                let (base, bucket) = gcs_settings();
                let backend = from_storage_section(gcs_section(&base, &bucket, &prefix));
                (
                    backend,
                    Location::Gcs {
                        base,
                        bucket,
                        prefix,
                    },
                )
            }
        };
        Subject {
            kind,
            backend,
            location,
            http: reqwest::Client::new(),
        }
    }

    /// The same kind of backend pointed at a location that does not exist: a bucket
    /// (container) never created, or a filesystem root removed after start-up. `None`
    /// for the in-memory store, which has no location.
    pub async fn at_a_missing_location(&self) -> Option<Arc<dyn BlobBackend>> {
        let missing = format!(
            "wharf-missing-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        Some(match &self.location {
            Location::InMemory { .. } => return None,
            Location::Filesystem { dir } => {
                let root = dir.path().join("gone");
                let backend = from_storage_section(
                    json!({ "filesystem": { "rootdirectory": root.display().to_string() } }),
                );
                std::fs::remove_dir_all(&root).expect("remove the root");
                backend
            }
            Location::Bucket { .. } if self.kind == Kind::S3 => {
                let (endpoint, _) = s3_settings();
                from_storage_section(s3_section(&endpoint, &missing, "x"))
            }
            Location::Bucket { .. } => {
                let (endpoint, _) = azure_settings();
                from_storage_section(azure_section(&endpoint, &missing, "x"))
            }
            Location::Gcs { base, .. } => from_storage_section(gcs_section(base, &missing, "x")),
        })
    }

    /// True where blob GETs can be redirected to a presigned URL of the store.
    pub fn presigns(&self) -> bool {
        matches!(self.kind, Kind::S3 | Kind::Azure)
    }

    /// Writes `data` as the chunk of upload `key` at `offset`, as a PATCH does (in
    /// pieces, through a chunk writer), and returns where it is.
    pub async fn write_chunk(&self, key: &str, offset: u64, data: &[u8]) -> ChunkRecord {
        if let Location::Gcs { .. } = &self.location {
            let nonce = &uuid::Uuid::new_v4().simple().to_string()[..12];
            let chunk_key = format!("{key}.{offset}.{nonce}");
            self.gcs_upload(&chunk_key, data.to_vec()).await;
            return ChunkRecord {
                key: chunk_key,
                offset,
                len: data.len() as u64,
            };
        }
        let mut writer = self
            .backend
            .chunk_writer(key, offset)
            .await
            .expect("chunk writer");
        for piece in data.chunks(PIECE) {
            writer
                .write(Bytes::copy_from_slice(piece))
                .await
                .expect("write a piece of the chunk");
        }
        let finished = writer.finish().await.expect("finish the chunk");
        let chunk = finished.chunk.expect("a chunk was written");
        assert_eq!((chunk.offset, chunk.len), (offset, data.len() as u64));
        chunk
    }

    /// Writes `parts` one after the other as the chunks of upload `key`, and returns
    /// the chunk list as the registry keeps it (consecutive pieces of one file merged).
    pub async fn write_chunks(&self, key: &str, parts: &[&[u8]]) -> Vec<ChunkRecord> {
        let mut chunks = Vec::new();
        let mut offset = 0;
        for part in parts {
            let chunk = self.write_chunk(key, offset, part).await;
            wharf::types::records::push_chunk(&mut chunks, chunk);
            offset += part.len() as u64;
        }
        chunks
    }

    /// Writes `data` at `key` under the backend's root from outside it, as another
    /// registry sharing the store (distribution's layout, for `wharf import`) would.
    pub async fn put_outside(&self, key: &str, data: &[u8]) {
        match &self.location {
            Location::Filesystem { dir } => {
                let path = dir.path().join("blobs").join(key);
                std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
                std::fs::write(&path, data).expect("write the object");
            }
            Location::InMemory { store } => {
                store
                    .put(&Path::from(key), Bytes::copy_from_slice(data).into())
                    .await
                    .expect("put the object");
            }
            Location::Bucket { store, prefix } => {
                store
                    .put(
                        &Path::from(format!("{prefix}/{key}")),
                        Bytes::copy_from_slice(data).into(),
                    )
                    .await
                    .expect("put the object");
            }
            Location::Gcs {
                base,
                bucket,
                prefix,
            } => {
                let r = self
                    .http
                    .post(format!("{base}/upload/storage/v1/b/{bucket}/o"))
                    .query(&[
                        ("uploadType", "media".to_string()),
                        ("name", format!("{prefix}/{key}")),
                    ])
                    .body(data.to_vec())
                    .send()
                    .await
                    .expect("upload to the GCS emulator");
                assert!(r.status().is_success(), "upload: {}", r.status());
            }
        }
    }

    /// Every object the backend holds, by storage key, sorted.
    pub async fn objects(&self) -> Vec<String> {
        let mut keys = match &self.location {
            Location::Filesystem { dir } => {
                let root = dir.path().join("blobs");
                let mut files = Vec::new();
                walk(&root, &root, &mut files);
                files
            }
            Location::InMemory { store } => list(store.as_ref(), None, "").await,
            Location::Bucket { store, prefix } => {
                list(store.as_ref(), Some(&Path::from(prefix.as_str())), prefix).await
            }
            Location::Gcs {
                base,
                bucket,
                prefix,
            } => {
                let r = self
                    .http
                    .get(format!("{base}/storage/v1/b/{bucket}/o"))
                    .query(&[("prefix", format!("{prefix}/"))])
                    .send()
                    .await
                    .expect("list the GCS bucket");
                assert!(r.status().is_success(), "listing: {}", r.status());
                let body: Value = r.json().await.expect("a JSON listing");
                body["items"]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|i| i["name"].as_str())
                            .map(|n| {
                                n.strip_prefix(&format!("{prefix}/"))
                                    .unwrap_or(n)
                                    .to_string()
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            }
        };
        keys.sort();
        keys
    }

    /// Deletes what the test left in the emulator's shared bucket.
    pub async fn clean_up(self) {
        match &self.location {
            Location::Bucket { store, prefix } => {
                let keys: Vec<Path> = store
                    .list(Some(&Path::from(prefix.as_str())))
                    .map_ok(|m| m.location)
                    .try_collect()
                    .await
                    .unwrap_or_default();
                for key in keys {
                    store.delete(&key).await.ok();
                }
            }
            Location::Gcs {
                base,
                bucket,
                prefix,
            } => {
                for key in self.objects().await {
                    let name = format!("{prefix}/{key}");
                    self.http
                        .delete(format!(
                            "{base}/storage/v1/b/{bucket}/o/{}",
                            encode_segment(&name)
                        ))
                        .send()
                        .await
                        .ok();
                }
            }
            Location::Filesystem { .. } | Location::InMemory { .. } => {}
        }
    }

    /// Uploads an object through fake-gcs-server's JSON API (a media upload).
    async fn gcs_upload(&self, key: &str, data: Vec<u8>) {
        let Location::Gcs {
            base,
            bucket,
            prefix,
        } = &self.location
        else {
            unreachable!("GCS only")
        };
        let r = self
            .http
            .post(format!("{base}/upload/storage/v1/b/{bucket}/o"))
            .query(&[
                ("uploadType", "media".to_string()),
                ("name", format!("{prefix}/{key}")),
            ])
            .header("Content-Type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .expect("upload to fake-gcs-server");
        assert!(r.status().is_success(), "uploading {key}: {}", r.status());
    }
}

/// Files under `dir`, as paths relative to `root`.
fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read a blob directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).expect("under the root");
            out.push(rel.display().to_string());
        }
    }
}

/// The objects under `prefix` in `store`, with `strip` and a `/` removed from the front.
async fn list(store: &dyn ObjectStore, prefix: Option<&Path>, strip: &str) -> Vec<String> {
    let metas: Vec<_> = store
        .list(prefix)
        .try_collect()
        .await
        .expect("list the store");
    metas
        .into_iter()
        .map(|m| {
            let key = m.location.to_string();
            match key.strip_prefix(strip) {
                Some(rest) if !strip.is_empty() => rest.trim_start_matches('/').to_string(),
                _ => key,
            }
        })
        .collect()
}

fn encode_segment(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn s3_settings() -> (String, String) {
    (
        need(Kind::S3, "WHARF_TEST_S3_ENDPOINT"),
        need(Kind::S3, "WHARF_TEST_S3_BUCKET"),
    )
}

fn azure_settings() -> (String, String) {
    (
        need(Kind::Azure, "WHARF_TEST_AZURE_ENDPOINT"),
        need(Kind::Azure, "WHARF_TEST_AZURE_CONTAINER"),
    )
}

/// fake-gcs-server's address and bucket (`start_fake_gcs`).
fn gcs_settings() -> (String, String) {
    let base = need(Kind::Gcs, "WHARF_TEST_GCS_JSON_ENDPOINT");
    let bucket = need(Kind::Gcs, "WHARF_TEST_GCS_BUCKET");
    (base.trim_end_matches('/').to_string(), bucket)
}

fn s3_section(endpoint: &str, bucket: &str, prefix: &str) -> Value {
    json!({ "s3": {
        "bucket": bucket,
        "region": "us-east-1",
        "regionendpoint": endpoint,
        "forcepathstyle": true,
        "accesskey": "test",
        "secretkey": "test",
        "rootdirectory": prefix,
        // S3's smallest part: writes of more than 5 MiB go through multipart uploads.
        "chunksize": 5 * 1024 * 1024,
    }})
}

fn azure_section(endpoint: &str, container: &str, prefix: &str) -> Value {
    json!({ "azure": {
        "accountname": AZURITE_ACCOUNT,
        "accountkey": AZURITE_KEY,
        "container": container,
        "endpoint": endpoint,
        "rootdirectory": prefix,
    }})
}

fn gcs_section(base: &str, bucket: &str, prefix: &str) -> Value {
    json!({ "gcs": { "bucket": bucket, "endpoint": base, "rootdirectory": prefix } })
}

fn s3_client(endpoint: &str, bucket: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .expect("an S3 client"),
    )
}

fn azure_client(endpoint: &str, container: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        object_store::azure::MicrosoftAzureBuilder::new()
            .with_account(AZURITE_ACCOUNT)
            .with_access_key(AZURITE_KEY)
            .with_container_name(container)
            .with_endpoint(endpoint.to_string())
            .with_allow_http(true)
            .build()
            .expect("an Azure client"),
    )
}

/// Reads `range` (or all) of `key`: the bytes, or the error (at the start or mid-stream).
pub async fn read(
    backend: &dyn BlobBackend,
    key: &str,
    range: Option<std::ops::Range<u64>>,
) -> Result<Vec<u8>, BlobError> {
    let mut stream = backend.get(key, range).await?;
    let mut out = Vec::new();
    while let Some(piece) = stream.next().await {
        out.extend_from_slice(&piece?);
    }
    Ok(out)
}

/// Like [`read`], the bytes expected to be there.
pub async fn read_ok(backend: &dyn BlobBackend, key: &str) -> Vec<u8> {
    read(backend, key, None)
        .await
        .unwrap_or_else(|e| panic!("reading {key}: {e:?}"))
}

/// Deterministic pseudo-random bytes (xorshift64*), so a misplaced piece shows.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// How long presigned URLs stay valid in the tests.
pub const PRESIGN_EXPIRY: Duration = Duration::from_secs(300);
