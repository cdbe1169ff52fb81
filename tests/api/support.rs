//! Test harness: a real Wharf server started in-process on a free port, with a fresh
//! temporary directory for blobs and SQLite, and small helpers to talk to it.
//!
//! `WHARF_TEST_METADATA` chooses the metadata store: `sqlite` (the default, a file in
//! the server's directory) or `postgres`: a database of the server's own
//! (`wharf_api_<random>`, created on the server `WHARF_TEST_POSTGRES_URL` names and
//! dropped when the test server stops), so the same suite runs on both engines.
//!
//! `WHARF_TEST_STORAGE` chooses the blob storage: `filesystem` (the default), `inmemory`,
//! or a cloud emulator that `scripts/lib/services.sh` started: `s3` (moto; with
//! `WHARF_TEST_S3_ENDPOINT` and `WHARF_TEST_S3_BUCKET`), `azure` (Azurite;
//! `WHARF_TEST_AZURE_ENDPOINT`, `WHARF_TEST_AZURE_CONTAINER`) or `gcs` (fake-gcs-server;
//! `WHARF_TEST_GCS_ENDPOINT`, `WHARF_TEST_GCS_BUCKET`). Each server then keeps its
//! objects under its own `rootdirectory` in the shared bucket, so tests never collide.
//!
//! Every request made through [`TestRegistry::send`] is checked for what must hold of
//! *every* response: the `Docker-Distribution-API-Version: registry/2.0` header, never a
//! 5xx, and on every 4xx (except to `HEAD`) the spec's JSON error body. A blob `GET`
//! that a cloud store's registry answers with a `307` is followed to the store, as a
//! client does (`follow_blob_redirect`), so the blob tests check what clients receive.

use std::net::TcpListener;
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};
use sha2::Digest as _;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The error codes the OCI distribution spec defines.
pub const SPEC_CODES: [&str; 14] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

/// The two codes of OpenShift's signature API extension (`/extensions/v2/…`), which
/// containers/image knows; only that extension answers them.
pub const EXTENSION_CODES: [&str; 2] = ["SIGNATURE_INVALID", "SIGNATURE_EXISTS"];

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)))
}

/// Deterministic pseudo-random bytes (xorshift64*), so blobs are not trivially compressible
/// or repetitive and a misplaced chunk changes the digest.
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

/// Options for a test server.
#[derive(Clone, Debug)]
pub struct Options {
    pub delete_enabled: bool,
    /// `storage.redirect.disable`: blob GETs on a cloud store stream instead of `307`.
    pub redirect_disable: bool,
    /// `storage.maintenance` (upload purging, read-only mode).
    pub maintenance: Option<Value>,
    /// `storage.gc` (garbage collection; its workers are not started: tests drive
    /// `TestRegistry::registry`).
    pub gc: Option<Value>,
    /// More top-level configuration sections (`http`, `middleware`).
    pub extra: Option<Value>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            delete_enabled: true,
            redirect_disable: false,
            maintenance: None,
            gc: None,
            extra: None,
        }
    }
}

/// A fresh directory for one server's blobs and database: under `WHARF_TEST_TMPDIR` if
/// set, else `/dev/shm` where it exists (creating and removing the 256 blob directories
/// and syncing files is far slower on a disk, and durability is not what these tests
/// check), else the system's temporary directory.
fn scratch_dir() -> tempfile::TempDir {
    let base = std::env::var_os("WHARF_TEST_TMPDIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let shm = std::path::Path::new("/dev/shm");
            shm.is_dir().then(|| shm.to_path_buf())
        });
    let made = match &base {
        Some(b) => tempfile::Builder::new().prefix("wharf-api-").tempdir_in(b),
        None => tempfile::Builder::new().prefix("wharf-api-").tempdir(),
    };
    match made {
        Ok(d) => d,
        // /dev/shm present but not writable: fall back to the default location.
        Err(_) if std::env::var_os("WHARF_TEST_TMPDIR").is_none() => {
            tempfile::tempdir().expect("tempdir")
        }
        Err(e) => panic!("cannot create a directory under WHARF_TEST_TMPDIR: {e}"),
    }
}

/// The blob storage the tests run on (`WHARF_TEST_STORAGE`; `filesystem` by default).
pub fn storage_kind() -> String {
    std::env::var("WHARF_TEST_STORAGE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "filesystem".into())
}

/// A variable a cloud storage test run needs.
pub fn need(var: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "WHARF_TEST_STORAGE={} needs {var} (scripts/test starts the emulator and sets it)",
                storage_kind()
            )
        })
}

/// The `storage` section for one test server.
pub fn storage_section(fs_root: &str) -> Value {
    static UNSET: std::sync::Once = std::sync::Once::new();
    let kind = storage_kind();
    if kind != "filesystem" {
        // Some S3 clients fail to start when this names a missing file.
        UNSET.call_once(|| std::env::remove_var("AWS_CA_BUNDLE"));
    }
    // Each server's objects under a prefix of their own in the shared bucket.
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    match kind.as_str() {
        "filesystem" => json!({ "filesystem": { "rootdirectory": fs_root } }),
        "inmemory" => json!({ "inmemory": {} }),
        "s3" => json!({ "s3": {
            "bucket": need("WHARF_TEST_S3_BUCKET"),
            "region": "us-east-1",
            "regionendpoint": need("WHARF_TEST_S3_ENDPOINT"),
            "forcepathstyle": true,
            "accesskey": "test",
            "secretkey": "test",
            "rootdirectory": prefix,
        }}),
        "azure" => json!({ "azure": {
            "accountname": "devstoreaccount1",
            "accountkey": AZURITE_KEY,
            "container": need("WHARF_TEST_AZURE_CONTAINER"),
            "endpoint": need("WHARF_TEST_AZURE_ENDPOINT"),
            "rootdirectory": prefix,
        }}),
        "gcs" => json!({ "gcs": {
            "bucket": need("WHARF_TEST_GCS_BUCKET"),
            "endpoint": need("WHARF_TEST_GCS_ENDPOINT"),
            "rootdirectory": prefix,
        }}),
        other => panic!("WHARF_TEST_STORAGE={other:?}: use filesystem, inmemory, s3, azure or gcs"),
    }
}

/// The metadata store the tests run on (`WHARF_TEST_METADATA`; `sqlite` by default).
pub fn metadata_kind() -> String {
    std::env::var("WHARF_TEST_METADATA")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sqlite".into())
}

/// One test server's metadata database.
enum TestDatabase {
    /// A file in the server's scratch directory, removed with it.
    Sqlite(String),
    /// A database of its own on a PostgreSQL server, dropped with this value.
    Postgres { server_url: String, name: String },
}

impl TestDatabase {
    async fn create(dir: &tempfile::TempDir) -> TestDatabase {
        match metadata_kind().as_str() {
            "sqlite" => TestDatabase::Sqlite(format!(
                "sqlite://{}",
                dir.path().join("wharf.db").display()
            )),
            "postgres" => {
                use sqlx::Connection as _;
                let server_url = std::env::var("WHARF_TEST_POSTGRES_URL")
                    .ok()
                    .filter(|v| !v.is_empty())
                    .expect(
                        "WHARF_TEST_METADATA=postgres needs WHARF_TEST_POSTGRES_URL \
                         (scripts/test starts a throwaway cluster and sets it)",
                    );
                let name = format!("wharf_api_{}", uuid::Uuid::new_v4().simple());
                let mut admin = sqlx::PgConnection::connect(&server_url)
                    .await
                    .unwrap_or_else(|e| panic!("WHARF_TEST_POSTGRES_URL: cannot connect: {e}"));
                sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .expect("create the test server's database");
                let _ = admin.close().await;
                TestDatabase::Postgres { server_url, name }
            }
            other => panic!("WHARF_TEST_METADATA={other:?}: use sqlite or postgres"),
        }
    }

    /// `database.url` for the server.
    fn url(&self) -> String {
        match self {
            TestDatabase::Sqlite(url) => url.clone(),
            TestDatabase::Postgres { server_url, name } => {
                crate::postgres_url::with_database(server_url, name)
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let TestDatabase::Postgres { server_url, name } = self else {
            return;
        };
        let (server_url, sql) = (
            server_url.clone(),
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        // Drop may run inside the test's runtime: a thread of its own with its own
        // runtime does the asynchronous work, and is waited for.
        let dropped = std::thread::spawn(move || {
            use sqlx::Connection as _;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut admin = sqlx::PgConnection::connect(&server_url).await?;
                sqlx::raw_sql(&sql).execute(&mut admin).await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop a test database: {dropped:?}");
        }
    }
}

/// Azurite's well-known development account key (public, documented by Microsoft).
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A Wharf server on 127.0.0.1:<free port>, stopped (and its data removed) on drop.
pub struct TestRegistry {
    pub base: String,
    pub client: reqwest::Client,
    /// The server's registry core (for tests that drive garbage collection).
    pub registry: wharf::registry::Registry,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
    // Dropped after the server has stopped (fields drop after `Drop::drop`).
    _database: TestDatabase,
}

impl TestRegistry {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let dir = scratch_dir();
        let root = dir.path().join("blobs");
        let database = TestDatabase::create(&dir).await;
        let mut storage = storage_section(&root.display().to_string());
        storage["delete"] = json!({ "enabled": options.delete_enabled });
        storage["redirect"] = json!({ "disable": options.redirect_disable });
        if let Some(maintenance) = options.maintenance {
            storage["maintenance"] = maintenance;
        }
        if let Some(gc) = options.gc {
            storage["gc"] = gc;
        }
        let mut tree = json!({
            "storage": storage,
            "database": { "url": database.url() },
        });
        if let Some(Value::Object(extra)) = options.extra {
            for (k, v) in extra {
                tree[k] = v;
            }
        }
        let tree = serde_norway::to_value(tree).expect("test config as YAML");
        let config = wharf::config::Config::from_tree(tree).expect("test config");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("wharf-{}", addr.port()))
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let registry = match wharf::server::registry(&config).await {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = tx.send(Err(format!("registry: {e}")));
                            return;
                        }
                    };
                    // As `wharf serve` does: upload purging, if configured.
                    wharf::maintenance::spawn(registry.clone(), &config);
                    let core = registry.clone();
                    if let Err(e) = wharf::server::spawn_notifications(&registry, &config).await {
                        panic!("notifications: {e}");
                    }
                    let server = match wharf::server::http_server(registry, &config, listener) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.send(Err(format!("http server: {e}")));
                            return;
                        }
                    };
                    let _ = tx.send(Ok((server.handle(), core)));
                    let _ = server.await;
                })
            })
            .expect("spawn server thread");
        let (handle, registry) = rx
            .await
            .expect("server thread ended before starting")
            .unwrap_or_else(|e| panic!("cannot start the test registry: {e}"));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client");
        TestRegistry {
            base: format!("http://{addr}"),
            client,
            registry,
            handle,
            thread: Some(thread),
            _dir: dir,
            _database: database,
        }
    }

    /// `path` (starting with `/`) or an absolute URL, as a URL on this server.
    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            assert!(
                path_or_url.starts_with('/'),
                "relative reference {path_or_url:?} is not an absolute path"
            );
            format!("{}{}", self.base, path_or_url)
        }
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Sends and reads the whole response, checking what every response must satisfy.
    pub async fn send(&self, rb: RequestBuilder) -> Resp {
        let request = rb.build().expect("request builds");
        let what = format!("{} {}", request.method(), request.url());
        let is_head = request.method() == Method::HEAD;
        // `/v2/<name>/blobs/<digest>` (an upload's path ends in `/blobs/uploads/<id>`).
        let is_blob_get = request.method() == Method::GET && {
            let segments: Vec<&str> = request.url().path().rsplit('/').take(2).collect();
            matches!(segments.as_slice(), [digest, "blobs"] if digest.contains(':'))
        };
        let range = request.headers().get("Range").cloned();
        let response = self
            .client
            .execute(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: request failed: {e:?}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e:?}"));
        let resp = Resp {
            what,
            status,
            headers,
            body,
            redirected_to: None,
        };
        if is_blob_get && status == 307 {
            return self.follow_blob_redirect(resp, range).await;
        }
        assert!(
            status < 500,
            "{}: server error {status}: {}",
            resp.what,
            resp.text()
        );
        assert_eq!(
            resp.header("Docker-Distribution-API-Version"),
            Some("registry/2.0"),
            "{}: missing Docker-Distribution-API-Version (status {status})",
            resp.what
        );
        if is_head {
            assert!(
                resp.body.is_empty(),
                "{}: HEAD response has a body",
                resp.what
            );
        } else if status >= 400 {
            resp.error_code();
        }
        resp
    }

    /// A blob GET answered with a redirect (cloud stores, `storage.redirect`): checks
    /// the registry's part of it, then does what a client does, `GET`s the `Location`
    /// (with the same `Range`) from the store, and returns the store's answer with the
    /// registry's `Docker-Content-Digest` and API version headers added, so blob tests
    /// check the bytes and headers a client ends up with on every storage.
    async fn follow_blob_redirect(&self, redirect: Resp, range: Option<HeaderValue>) -> Resp {
        assert_eq!(
            redirect.header("Docker-Distribution-API-Version"),
            Some("registry/2.0"),
            "{}: redirect lacks the API version header",
            redirect.what
        );
        let digest = redirect.must_header("Docker-Content-Digest").to_string();
        let location = redirect.must_header("Location").to_string();
        assert!(
            location.starts_with("http://") || location.starts_with("https://"),
            "{}: redirect to a relative Location {location:?}",
            redirect.what
        );
        assert!(
            redirect.body.is_empty(),
            "{}: redirect with a body",
            redirect.what
        );
        let mut rb = self.client.get(&location);
        if let Some(range) = range {
            rb = rb.header("Range", range);
        }
        let what = format!("{} → GET {location}", redirect.what);
        let response = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: request failed: {e:?}"));
        let status = response.status().as_u16();
        let mut headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e:?}"));
        assert!(
            status == 200 || status == 206,
            "{what}: the store answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        headers.insert(
            "Docker-Content-Digest",
            HeaderValue::from_str(&digest).expect("digest header"),
        );
        headers.insert(
            "Docker-Distribution-API-Version",
            HeaderValue::from_static("registry/2.0"),
        );
        Resp {
            what,
            status,
            headers,
            body,
            redirected_to: Some(location),
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.req(Method::GET, path)).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.send(self.req(Method::HEAD, path)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.req(Method::DELETE, path)).await
    }

    /// Pushes a blob with a single `POST ?digest=`; returns its sha256 digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let r = self
            .send(
                self.req(
                    Method::POST,
                    &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                )
                .header("Content-Type", "application/octet-stream")
                .body(data.to_vec()),
            )
            .await;
        r.expect_status(201);
        digest
    }

    /// Opens an upload session; returns the `Location` to continue it at.
    pub async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .send(self.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/")))
            .await;
        r.expect_status(202);
        r.must_header("Location").to_string()
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with `content_type` (if any).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Resp {
        let mut rb = self
            .req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .body(body.to_vec());
        if let Some(ct) = content_type {
            rb = rb.header("Content-Type", ct);
        }
        self.send(rb).await
    }

    /// Pushes a manifest and expects 201; returns its sha256 digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        content_type: &str,
        body: &[u8],
    ) -> String {
        let r = self
            .put_manifest(repo, reference, Some(content_type), body)
            .await;
        r.expect_status(201);
        let digest = sha256(body);
        assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
        digest
    }

    /// Pushes a config and `layers` blobs and an OCI image manifest over them by
    /// `reference`; returns `(manifest bytes, manifest digest)`.
    pub async fn push_image(&self, repo: &str, reference: &str, seed: u64) -> (Vec<u8>, String) {
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}");
        let layer = pseudo_random(1000 + seed as usize, seed);
        self.push_blob(repo, config.as_bytes()).await;
        self.push_blob(repo, &layer).await;
        let manifest = image_manifest(config.as_bytes(), &[&layer], None);
        let digest = self
            .push_manifest(repo, reference, OCI_MANIFEST, &manifest)
            .await;
        (manifest, digest)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        // The stop command is sent when `stop` is called; its future only reports completion.
        drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A descriptor JSON object.
pub fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({ "mediaType": media_type, "digest": sha256(data), "size": data.len() })
}

/// An OCI image manifest over a config and layers (bytes given, digests computed).
pub fn image_manifest(config: &[u8], layers: &[&[u8]], extra: Option<Value>) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": layers.iter().map(|l| descriptor(OCI_LAYER, l)).collect::<Vec<_>>(),
    });
    if let Some(Value::Object(extra)) = extra {
        for (k, v) in extra {
            m[k] = v;
        }
    }
    serde_json::to_vec(&m).expect("manifest json")
}

/// An OCI image index over manifests given as `(bytes, media type)`.
pub fn index_manifest(children: &[(&[u8], &str)], extra: Option<Value>) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|(b, t)| {
            let mut d = descriptor(t, b);
            d["platform"] = json!({"architecture": "amd64", "os": "linux"});
            d
        }).collect::<Vec<_>>(),
    });
    if let Some(Value::Object(extra)) = extra {
        for (k, v) in extra {
            m[k] = v;
        }
    }
    serde_json::to_vec(&m).expect("index json")
}

/// A response read in full.
pub struct Resp {
    pub what: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The store URL a blob GET was redirected to and followed (see `send`).
    pub redirected_to: Option<String>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| {
            v.to_str()
                .unwrap_or_else(|_| panic!("{}: header {name} is not ASCII", self.what))
        })
    }

    pub fn must_header(&self, name: &str) -> &str {
        self.header(name).unwrap_or_else(|| {
            panic!(
                "{}: response {} lacks the {name} header; headers: {:?}",
                self.what, self.status, self.headers
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {:?}", self.what, self.text()))
    }

    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "{}: expected {status}, got {}: {}",
            self.what,
            self.status,
            self.text()
        );
        self
    }

    /// Checks the spec's error body `{"errors":[{"code":…,"message":…}]}` and returns
    /// the first code.
    pub fn error_code(&self) -> String {
        let ct = self.header("Content-Type").unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "{}: error {} has Content-Type {ct:?}, not JSON: {:?}",
            self.what,
            self.status,
            self.text()
        );
        let v = self.json();
        let errors = v["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: error body has no errors array: {v}", self.what));
        assert!(!errors.is_empty(), "{}: empty errors array", self.what);
        for e in errors {
            let code = e["code"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: error without a string code: {v}", self.what));
            assert!(
                SPEC_CODES.contains(&code)
                    || (self.what.contains("/extensions/v2/") && EXTENSION_CODES.contains(&code)),
                "{}: error code {code:?} is not one of the spec's",
                self.what
            );
            assert!(
                e["message"].is_string(),
                "{}: error without a string message: {v}",
                self.what
            );
        }
        errors[0]["code"].as_str().unwrap_or_default().to_string()
    }

    /// Expects an error response with `status` and spec error `code`.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect_status(status);
        assert_eq!(
            self.error_code(),
            code,
            "{}: wrong error code: {}",
            self.what,
            self.text()
        );
        self
    }

    /// Expects a 4xx with the spec's JSON error body (any code of the spec's list).
    #[track_caller]
    pub fn expect_client_error(&self) -> String {
        assert!(
            (400..500).contains(&self.status),
            "{}: expected a 4xx, got {}: {}",
            self.what,
            self.status,
            self.text()
        );
        self.error_code()
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("Content-Length").map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{}: bad Content-Length {v:?}", self.what))
        })
    }
}
