//! The pull-through cache's test bench: real registries on loopback as upstreams
//! (`wharf serve` processes, and Debian's `docker-registry` 2.8.2 with token auth), a
//! small HTTP proxy in front of each that counts the requests it forwards and can
//! throttle bodies, answer 429 or be cut, and mirrors (`wharf serve` with `proxy:`)
//! pointed at it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::SizedStream;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::Digest as _;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Deterministic pseudo-random bytes (xorshift64*).
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

/// A scratch directory (kept with `KEEP_TMP=1`).
pub fn scratch() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("wharf-proxy-test-")
        .tempdir()
        .expect("tempdir");
    if std::env::var("KEEP_TMP").as_deref() == Ok("1") {
        eprintln!("scratch directory: {}", dir.path().display());
    }
    dir
}

/// A server process, killed when dropped.
pub struct Proc {
    child: Option<Child>,
    pub url: String,
    pub addr: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- {} ({}) log tail:\n{}",
                self.addr,
                self.log.display(),
                self.log_tail()
            );
        }
        self.kill();
    }
}

async fn wait_ready(proc: &mut Proc) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{}/v2/", proc.url)).send().await {
            if r.status() == 200 || r.status() == 401 {
                return;
            }
        }
        if let Some(c) = proc.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("{} exited with {status}:\n{}", proc.addr, proc.log_tail());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} did not answer /v2/:\n{}", proc.addr, proc.log_tail());
}

/// `wharf serve` with `config` (YAML without `http.addr`) in `dir`.
pub async fn start_wharf(dir: &Path, name: &str, config: &str) -> Proc {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let file = dir.join(format!("{name}.yml"));
    std::fs::write(
        &file,
        format!("version: 0.1\nhttp:\n  addr: {addr}\n{config}"),
    )
    .unwrap();
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["serve", "--config"])
        .arg(&file)
        .env(
            "RUST_LOG",
            std::env::var("WHARF_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("NO_COLOR", "1")
        .env_remove("REGISTRY_AUTH_FILE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn wharf");
    let mut proc = Proc {
        child: Some(child),
        url: format!("http://{addr}"),
        addr,
        log,
    };
    wait_ready(&mut proc).await;
    proc
}

/// Storage and SQLite under `dir/name`.
pub fn local_storage(dir: &Path, name: &str) -> String {
    let root = dir.join(name);
    format!(
        "storage:\n  filesystem:\n    rootdirectory: {}\ndatabase:\n  url: sqlite://{}/wharf.db\n",
        root.join("blobs").display(),
        root.display()
    )
}

pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

/// Debian's `docker-registry` (the CNCF registry 2.8.2) with `auth` (YAML, indented
/// at the top level).
pub async fn start_docker_registry(dir: &Path, name: &str, auth: &str) -> Proc {
    assert!(
        Path::new(DOCKER_REGISTRY).exists(),
        "no {DOCKER_REGISTRY}: install Debian's docker-registry (scripts/install-tools)"
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("config.yml");
    std::fs::write(
        &file,
        format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
            root.join("data").display()
        ),
    )
    .unwrap();
    let log = root.join("registry.log");
    let child = Command::new(DOCKER_REGISTRY)
        .arg("serve")
        .arg(&file)
        .stdout(std::fs::File::create(root.join("stdout.log")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn docker-registry");
    let mut proc = Proc {
        child: Some(child),
        url: format!("http://{addr}"),
        addr,
        log,
    };
    wait_ready(&mut proc).await;
    proc
}

// ---- the counting, throttling proxy -------------------------------------------

/// What the proxy does with requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    /// Every request answered `429 Too Many Requests`.
    TooMany,
    /// Every request answered `503`.
    Down,
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The request's `Range` header, if any.
    pub range: Option<String>,
}

struct ProxyState {
    target: String,
    /// Bytes per second of response bodies (0: unlimited).
    rate: u64,
    mode: Mutex<Mode>,
    /// The next blob body forwarded is cut (the connection broken) after this many
    /// bytes; once.
    cut: Mutex<Option<u64>>,
    log: Mutex<Vec<Logged>>,
    client: reqwest::Client,
}

/// An HTTP proxy in front of one upstream that logs every request.
pub struct CountingProxy {
    pub url: String,
    state: Arc<ProxyState>,
    handle: ServerHandle,
}

impl CountingProxy {
    pub fn start(target: &str, rate: u64) -> CountingProxy {
        let state = Arc::new(ProxyState {
            target: target.trim_end_matches('/').to_string(),
            rate,
            mode: Mutex::new(Mode::Forward),
            cut: Mutex::new(None),
            log: Mutex::new(Vec::new()),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        let s = state.clone();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let data = web::Data::from(s);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .default_service(web::to(forward))
                })
                .workers(2)
                .listen(listener)
                .unwrap()
                .run();
                let _ = tx.send(server.handle());
                let _ = server.await;
            })
        });
        let handle = rx.recv().unwrap();
        CountingProxy {
            url: format!("http://{addr}"),
            state,
            handle,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Breaks the connection of the next blob `GET` after `bytes` of its body.
    pub fn cut_next_blob_after(&self, bytes: u64) {
        *self.state.cut.lock().unwrap() = Some(bytes);
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.state.log.lock().unwrap().clear();
    }

    /// Requests with `method` whose path contains `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path.contains(part))
            .count()
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        let h = self.handle.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(h.stop(false));
        });
    }
}

async fn forward(req: HttpRequest, state: web::Data<ProxyState>) -> HttpResponse {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let method = req.method().to_string();
    let mode = *state.mode.lock().unwrap();
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let record = |status: u16| {
        state.log.lock().unwrap().push(Logged {
            method: method.clone(),
            path: path.clone(),
            status,
            range: range.clone(),
        });
    };
    match mode {
        Mode::TooMany => {
            record(429);
            return HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", "7"))
                .json(json!({"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}));
        }
        Mode::Down => {
            record(503);
            return HttpResponse::ServiceUnavailable().finish();
        }
        Mode::Forward => {}
    }
    let m = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
    let mut out = state.client.request(m, format!("{}{path}", state.target));
    for (name, value) in req.headers() {
        if name != "host" && name != "connection" {
            out = out.header(name.as_str(), value.as_bytes());
        }
    }
    let resp = match out.send().await {
        Ok(r) => r,
        Err(_) => {
            record(502);
            return HttpResponse::BadGateway().finish();
        }
    };
    let status = resp.status().as_u16();
    record(status);
    let mut builder = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
    for (name, value) in resp.headers() {
        let n = name.as_str();
        if !matches!(n, "content-length" | "transfer-encoding" | "connection") {
            builder.append_header((n, value.as_bytes()));
        }
    }
    let length = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if req.method() == "HEAD" {
        return builder.body(SizedStream::new(
            length.unwrap_or(0),
            futures_util::stream::empty::<Result<Bytes, std::io::Error>>(),
        ));
    }
    let rate = state.rate;
    let cut = if req.method() == "GET" && path.contains("/blobs/") && status < 300 {
        state.cut.lock().unwrap().take()
    } else {
        None
    };
    let started = Instant::now();
    let mut sent = 0u64;
    let body = resp.bytes_stream().then(move |piece| {
        let mut piece = piece.map_err(std::io::Error::other);
        if let Ok(b) = &piece {
            if let Some(limit) = cut.filter(|&limit| sent + b.len() as u64 > limit) {
                // Sends the bytes up to the limit, then breaks the connection.
                piece = if sent < limit {
                    Ok(b.slice(..(limit - sent) as usize))
                } else {
                    Err(std::io::Error::other("cut by the test"))
                };
            }
        }
        if let Ok(b) = &piece {
            sent += b.len() as u64;
        }
        let due = (rate > 0).then(|| Duration::from_secs_f64(sent as f64 / rate as f64));
        async move {
            if let Some(due) = due {
                let elapsed = started.elapsed();
                if due > elapsed {
                    tokio::time::sleep(due - elapsed).await;
                }
            }
            piece
        }
    });
    match length {
        Some(n) => builder.body(SizedStream::new(n, body)),
        None => builder.streaming(body),
    }
}

// ---- images -----------------------------------------------------------------

/// An OCI image: its config, layers and manifest.
pub struct Image {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub digest: String,
}

impl Image {
    pub fn new(seed: u64, layer_sizes: &[usize]) -> Image {
        let layers: Vec<Vec<u8>> = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| pseudo_random(n, seed * 1000 + i as u64))
            .collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "seed": seed,
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| sha256(l)).collect::<Vec<_>>()},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(&config), "size": config.len()},
            "layers": layers.iter().map(|l| json!({
                "mediaType": OCI_LAYER, "digest": sha256(l), "size": l.len()
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        let digest = sha256(&manifest);
        Image {
            config,
            layers,
            manifest,
            digest,
        }
    }

    pub fn blobs(&self) -> Vec<&[u8]> {
        std::iter::once(self.config.as_slice())
            .chain(self.layers.iter().map(Vec::as_slice))
            .collect()
    }
}

/// `token`: a bearer token, or a whole `Basic …` header value.
fn with_auth(r: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(t) if t.starts_with("Basic ") => r.header("authorization", t),
        Some(t) => r.bearer_auth(t),
        None => r,
    }
}

/// Pushes a blob (POST, then PUT with the bytes), unless it is there.
pub async fn push_blob(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &[u8],
    token: Option<&str>,
) {
    let digest = sha256(data);
    let head = with_auth(
        client.head(format!("{base}/v2/{repo}/blobs/{digest}")),
        token,
    )
    .send()
    .await
    .unwrap();
    if head.status() == 200 {
        return;
    }
    let r = with_auth(
        client.post(format!("{base}/v2/{repo}/blobs/uploads/")),
        token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        202,
        "POST upload to {base}/{repo}: {:?}",
        r.text().await
    );
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = with_auth(client.put(format!("{location}{sep}digest={digest}")), token)
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "PUT blob to {base}/{repo}: {:?}",
        r.text().await
    );
}

/// Pushes an image (its blobs, then its manifest under `tag`).
pub async fn push_image(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    image: &Image,
    token: Option<&str>,
) {
    for blob in image.blobs() {
        push_blob(client, base, repo, blob, token).await;
    }
    let r = with_auth(
        client.put(format!("{base}/v2/{repo}/manifests/{tag}")),
        token,
    )
    .header("content-type", OCI_MANIFEST)
    .body(image.manifest.clone())
    .send()
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        201,
        "PUT manifest to {base}/{repo}: {:?}",
        r.text().await
    );
}

/// GETs a manifest: (status, digest header, body).
pub async fn get_manifest(client: &reqwest::Client, url: &str) -> (u16, String, Vec<u8>) {
    let r = client
        .get(url)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let digest = r
        .headers()
        .get("docker-content-digest")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, digest, r.bytes().await.unwrap().to_vec())
}

/// GETs a blob and returns (status, sha256 of the body, length).
pub async fn get_blob_hashed(
    client: &reqwest::Client,
    url: &str,
    range: Option<&str>,
) -> (u16, String, u64) {
    let mut req = client.get(url);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let mut hasher = sha2::Sha256::new();
    let mut len = 0u64;
    let mut stream = r.bytes_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.unwrap();
        len += piece.len() as u64;
        hasher.update(&piece);
    }
    (
        status,
        format!("sha256:{}", hex::encode(hasher.finalize())),
        len,
    )
}

/// Pulls the image `reference` of `repo` through `base` as a client does: the
/// manifest, then every blob it names, each checked against its digest.
pub async fn pull_image(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    reference: &str,
) -> String {
    let (status, digest, body) =
        get_manifest(client, &format!("{base}/v2/{repo}/manifests/{reference}")).await;
    assert_eq!(
        status,
        200,
        "manifest {repo}:{reference} through {base}: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(digest, sha256(&body), "manifest digest header");
    let m: Value = serde_json::from_slice(&body).unwrap();
    let mut descriptors = vec![m["config"].clone()];
    descriptors.extend(m["layers"].as_array().unwrap().iter().cloned());
    for d in descriptors {
        let want = d["digest"].as_str().unwrap();
        let (status, got, len) =
            get_blob_hashed(client, &format!("{base}/v2/{repo}/blobs/{want}"), None).await;
        assert_eq!(status, 200, "blob {want} of {repo} through {base}");
        assert_eq!(got, want, "blob bytes through {base}");
        assert_eq!(len, d["size"].as_u64().unwrap());
    }
    digest
}

/// A Prometheus counter's value summed over the series whose labels contain `labels`.
pub async fn metric(client: &reqwest::Client, base: &str, name: &str, labels: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
