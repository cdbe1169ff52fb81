//! The workload: what each scenario sends, what it checks, and what it measures.
//!
//! Every scenario has an untimed setup (digests computed up front, the blob or image it reads
//! pushed if it is not there yet) and a timed part bracketed by the [`Monitor`] marks. Responses
//! are checked (status, lengths, headers, and the bytes of a sample of ranged reads); a request
//! that fails the check counts as an error and is not part of the rate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, RANGE};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::client::{with_digest, Conn, ReqBody, Small, Target};
use crate::data::{sha256_of, Pattern, Picker};
use crate::monitor::Monitor;
use crate::stats::{nanos, summarize, Summary};

/// Scenario names in the order they run.
pub const ALL: &[&str] = &[
    "push",
    "chunked",
    "pull",
    "range",
    "small",
    "manifest-get",
    "manifest-head",
    "blob-head",
    "ping",
];

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";
const OCTET: &str = "application/octet-stream";

/// Stream numbers of the generated blobs (see [`Pattern::new`]).
const STREAM_PUSH: u64 = 1;
const STREAM_CHUNKED: u64 = 2;
const STREAM_LAYER: u64 = 3;
const STREAM_SMALL: u64 = 1_000_000;

/// Workload parameters (from the command line).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub size_mib: u64,
    pub chunk_mib: u64,
    pub range_requests: usize,
    pub range_kib: u64,
    pub range_concurrency: usize,
    pub range_verify_every: usize,
    pub small_count: usize,
    pub small_kib: u64,
    pub small_concurrency: usize,
    pub requests: usize,
    pub concurrency: usize,
    pub duration_secs: Option<f64>,
    pub seed: u64,
    pub repo_prefix: String,
}

impl Params {
    fn size(&self) -> u64 {
        self.size_mib << 20
    }

    fn size_label(&self) -> String {
        if self.size_mib.is_multiple_of(1024) {
            format!("{} GiB", self.size_mib / 1024)
        } else {
            format!("{} MiB", self.size_mib)
        }
    }

    fn repo(&self, leaf: &str) -> String {
        format!("{}/{leaf}", self.repo_prefix)
    }

    fn load_plan(&self) -> String {
        match self.duration_secs {
            Some(d) => format!("{d} s"),
            None => format!("{}", self.requests),
        }
    }

    pub fn title(&self, name: &str) -> String {
        let size = self.size_label();
        match name {
            "push" => format!("{size} push, one PUT"),
            "chunked" => format!("{size} push, {} MiB PATCHes", self.chunk_mib),
            "pull" => format!("{size} pull"),
            "range" => format!(
                "{} KiB ranged GETs ×{}, c{}",
                self.range_kib, self.range_requests, self.range_concurrency
            ),
            "small" => format!(
                "{} KiB blob pushes ×{}, c{}",
                self.small_kib, self.small_count, self.small_concurrency
            ),
            "manifest-get" => format!(
                "manifest GET by tag ×{}, c{}",
                self.load_plan(),
                self.concurrency
            ),
            "manifest-head" => format!(
                "manifest HEAD by tag ×{}, c{}",
                self.load_plan(),
                self.concurrency
            ),
            "blob-head" => format!("blob HEAD ×{}, c{}", self.load_plan(), self.concurrency),
            "ping" => format!("GET /v2/ ×{}, c{}", self.load_plan(), self.concurrency),
            other => other.to_string(),
        }
    }
}

/// One scenario's outcome, as printed and as written to the JSON report.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub name: String,
    pub title: String,
    pub ok: bool,
    pub error: Option<String>,
    /// `MB/s` (10^6 bytes per second), `req/s` or `blobs/s`.
    pub unit: String,
    pub value: f64,
    pub bytes: u64,
    pub requests: u64,
    pub errors: u64,
    pub secs: f64,
    pub latency: Option<Summary>,
    pub peak_rss_kib: Option<u64>,
    pub server_cpu_s: Option<f64>,
    pub client_cpu_s: Option<f64>,
    /// Share of the machine's CPU (0–1) that other processes used meanwhile.
    #[serde(default)]
    pub others_share: Option<f64>,
    pub notes: Vec<String>,
}

/// What the timed part of a scenario returns.
#[derive(Default)]
struct Measured {
    unit: &'static str,
    value: f64,
    bytes: u64,
    requests: u64,
    errors: u64,
    secs: f64,
    latency: Option<Summary>,
    notes: Vec<String>,
}

struct BigBlob {
    repo: String,
    pattern: Pattern,
    size: u64,
    digest: String,
}

struct Image {
    repo: String,
    manifest_len: u64,
    manifest_digest: String,
    layer_digest: String,
    layer_len: u64,
}

pub struct Bench {
    target: Arc<Target>,
    params: Params,
    monitor: Monitor,
    digests: Vec<(u64, String)>,
    big: Option<BigBlob>,
    image: Option<Image>,
}

impl Bench {
    pub fn new(target: Arc<Target>, params: Params, monitor: Monitor) -> Self {
        Bench {
            target,
            params,
            monitor,
            digests: Vec::new(),
            big: None,
            image: None,
        }
    }

    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// `GET /v2/`: the server is up and speaks the API without auth.
    pub async fn check_api(&self) -> Result<Vec<String>> {
        let mut conn = Conn::open(Arc::clone(&self.target)).await?;
        let req = self
            .target
            .request(Method::GET, "/v2/")
            .body(ReqBody::Empty)?;
        let resp = Small::read(conn.send(req).await?).await?;
        let resp = resp.expect(
            StatusCode::OK,
            "GET /v2/ (the bench needs anonymous access)",
        )?;
        let mut info = Vec::new();
        if let Some(v) = resp.header("docker-distribution-api-version") {
            info.push(format!("Docker-Distribution-API-Version: {v}"));
        }
        Ok(info)
    }

    pub async fn run(&mut self, name: &str) -> ScenarioResult {
        let mut result = ScenarioResult {
            name: name.to_string(),
            title: self.params.title(name),
            ..ScenarioResult::default()
        };
        if let Err(e) = self.prepare(name).await {
            result.error = Some(format!("setup: {e:#}"));
            return result;
        }
        let mark = self.monitor.begin();
        let measured = match name {
            "push" => self.push().await,
            "chunked" => self.chunked().await,
            "pull" => self.pull().await,
            "range" => self.range().await,
            "small" => self.small().await,
            "manifest-get" | "manifest-head" | "blob-head" | "ping" => self.image_load(name).await,
            other => Err(anyhow!("unknown scenario {other:?}")),
        };
        let usage = self.monitor.end(mark);
        result.peak_rss_kib = usage.peak_rss_kib;
        result.server_cpu_s = usage.server_cpu_s;
        result.client_cpu_s = usage.client_cpu_s;
        result.others_share = usage.others_share;
        match measured {
            Ok(m) => {
                result.ok = m.requests > m.errors;
                if !result.ok {
                    result.error = Some("every request failed".into());
                }
                result.unit = m.unit.to_string();
                result.value = m.value;
                result.bytes = m.bytes;
                result.requests = m.requests;
                result.errors = m.errors;
                result.secs = m.secs;
                result.latency = m.latency;
                result.notes = m.notes;
            }
            Err(e) => result.error = Some(format!("{e:#}")),
        }
        if usage.server_gone {
            result.ok = false;
            result.notes.push("server process exited".into());
        }
        if result.ok && name == "pull" {
            match self.verify_pull().await {
                Ok(note) => result.notes.push(note),
                Err(e) => {
                    result.ok = false;
                    result.error = Some(format!("verification pass: {e:#}"));
                }
            }
        }
        result
    }

    async fn prepare(&mut self, name: &str) -> Result<()> {
        match name {
            "push" => {
                self.digest_of(STREAM_PUSH).await?;
            }
            "chunked" => {
                self.digest_of(STREAM_CHUNKED).await?;
            }
            "pull" | "range" => self.ensure_big().await?,
            "manifest-get" | "manifest-head" | "blob-head" => self.ensure_image().await?,
            _ => {}
        }
        Ok(())
    }

    /// Digest of a big stream, computed once (untimed) by a first pass over the same bytes.
    async fn digest_of(&mut self, stream: u64) -> Result<String> {
        if let Some((_, d)) = self.digests.iter().find(|(s, _)| *s == stream) {
            return Ok(d.clone());
        }
        let pattern = Pattern::new(self.params.seed, stream);
        let size = self.params.size();
        let digest = tokio::task::spawn_blocking(move || pattern.sha256(size)).await?;
        self.digests.push((stream, digest.clone()));
        Ok(digest)
    }

    /// The blob `pull` and `range` read: the one `push` wrote, pushed now if it is missing.
    async fn ensure_big(&mut self) -> Result<()> {
        if self.big.is_some() {
            return Ok(());
        }
        let digest = self.digest_of(STREAM_PUSH).await?;
        let repo = self.params.repo("big");
        let pattern = Pattern::new(self.params.seed, STREAM_PUSH);
        let size = self.params.size();
        let mut conn = Conn::open(Arc::clone(&self.target)).await?;
        let path = format!("/v2/{repo}/blobs/{digest}");
        let req = self
            .target
            .request(Method::HEAD, &path)
            .body(ReqBody::Empty)?;
        let head = Small::read(conn.send(req).await?).await?;
        let present = head.status == StatusCode::OK
            && head.header("content-length") == Some(size.to_string().as_str());
        if !present {
            eprintln!("  (setup: pushing the {size}-byte blob that pull/range read)");
            push_blob(
                &mut conn,
                &repo,
                ReqBody::generated(pattern, 0, size),
                &digest,
            )
            .await?;
        }
        self.big = Some(BigBlob {
            repo,
            pattern,
            size,
            digest,
        });
        Ok(())
    }

    /// A config blob, one layer and an OCI image manifest tagged `latest`.
    async fn ensure_image(&mut self) -> Result<()> {
        if self.image.is_some() {
            return Ok(());
        }
        let repo = self.params.repo("image");
        let mut conn = Conn::open(Arc::clone(&self.target)).await?;
        let layer = Pattern::new(self.params.seed, STREAM_LAYER).bytes(0, 256 * 1024);
        let layer_digest = sha256_of(&layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }))?;
        let config_digest = sha256_of(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer.len()}],
            "annotations": {"org.opencontainers.image.title": "wharf-bench"},
        }))?;
        let manifest_digest = sha256_of(&manifest);
        let layer_len = layer.len() as u64;
        let manifest_len = manifest.len() as u64;
        push_blob(&mut conn, &repo, ReqBody::full(layer), &layer_digest).await?;
        push_blob(
            &mut conn,
            &repo,
            ReqBody::full(Bytes::from(config)),
            &config_digest,
        )
        .await?;
        let req = self
            .target
            .request(Method::PUT, &format!("/v2/{repo}/manifests/latest"))
            .header(CONTENT_TYPE, OCI_MANIFEST)
            .body(ReqBody::full(Bytes::from(manifest)))?;
        let resp = Small::read(conn.send(req).await?).await?;
        let resp = resp.expect(StatusCode::CREATED, "PUT manifest")?;
        if let Some(d) = resp.header("docker-content-digest") {
            if d != manifest_digest {
                bail!(
                    "PUT manifest: Docker-Content-Digest {d} but the payload is {manifest_digest}"
                );
            }
        }
        self.image = Some(Image {
            repo,
            manifest_len,
            manifest_digest,
            layer_digest,
            layer_len,
        });
        Ok(())
    }

    async fn push(&mut self) -> Result<Measured> {
        let digest = self.digest_of(STREAM_PUSH).await?;
        let repo = self.params.repo("big");
        let pattern = Pattern::new(self.params.seed, STREAM_PUSH);
        let size = self.params.size();
        let mut conn = Conn::open(Arc::clone(&self.target)).await?;
        let t0 = Instant::now();
        push_blob(
            &mut conn,
            &repo,
            ReqBody::generated(pattern, 0, size),
            &digest,
        )
        .await?;
        let secs = t0.elapsed().as_secs_f64();
        self.big = Some(BigBlob {
            repo,
            pattern,
            size,
            digest,
        });
        Ok(throughput(size, secs, 2))
    }

    async fn chunked(&mut self) -> Result<Measured> {
        let digest = self.digest_of(STREAM_CHUNKED).await?;
        let repo = self.params.repo("chunked");
        let pattern = Pattern::new(self.params.seed, STREAM_CHUNKED);
        let size = self.params.size();
        let chunk = (self.params.chunk_mib << 20).max(1);
        let mut conn = Conn::open(Arc::clone(&self.target)).await?;
        let t0 = Instant::now();
        let mut location = start_upload(&mut conn, &repo).await?;
        let mut offset = 0u64;
        let mut requests = 2u64;
        while offset < size {
            let n = chunk.min(size - offset);
            let last = offset + n - 1;
            let req = conn
                .target()
                .request(Method::PATCH, &location)
                .header(CONTENT_TYPE, OCTET)
                .header("content-range", format!("{offset}-{last}"))
                .body(ReqBody::generated(pattern, offset, n))?;
            let resp = Small::read(conn.send(req).await?).await?;
            let resp = resp.expect(StatusCode::ACCEPTED, &format!("PATCH {offset}-{last}"))?;
            if let Some(range) = resp.header("range") {
                if range != format!("0-{last}") {
                    bail!("PATCH {offset}-{last}: server reports Range {range}");
                }
            }
            location = resp.location()?;
            offset += n;
            requests += 1;
        }
        let req = conn
            .target()
            .request(Method::PUT, &with_digest(&location, &digest))
            .body(ReqBody::Empty)?;
        let resp = Small::read(conn.send(req).await?).await?;
        resp.expect(StatusCode::CREATED, "closing PUT")?;
        let secs = t0.elapsed().as_secs_f64();
        Ok(throughput(size, secs, requests))
    }

    async fn pull(&mut self) -> Result<Measured> {
        let big = self
            .big
            .as_ref()
            .ok_or_else(|| anyhow!("no blob to pull"))?;
        let path = format!("/v2/{}/blobs/{}", big.repo, big.digest);
        let mut conn = Conn::open(Arc::clone(&self.target)).await?;
        let t0 = Instant::now();
        let got = get_blob(&mut conn, &path, |_| {}).await?;
        let secs = t0.elapsed().as_secs_f64();
        if got != big.size {
            bail!("GET blob: {got} bytes, expected {}", big.size);
        }
        let mut m = throughput(got, secs, 1);
        m.notes.push("timed pass counts bytes only".into());
        Ok(m)
    }

    /// Second, untimed GET of the pulled blob that hashes what it receives.
    async fn verify_pull(&mut self) -> Result<String> {
        let big = self.big.as_ref().ok_or_else(|| anyhow!("no blob"))?;
        let path = format!("/v2/{}/blobs/{}", big.repo, big.digest);
        let mut conn = Conn::open(Arc::clone(&self.target)).await?;
        let mut hasher = Sha256::new();
        let t0 = Instant::now();
        let got = get_blob(&mut conn, &path, |b| hasher.update(b)).await?;
        let secs = t0.elapsed().as_secs_f64();
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        if got != big.size || digest != big.digest {
            bail!(
                "pulled {got} bytes with {digest}, expected {} with {}",
                big.size,
                big.digest
            );
        }
        Ok(format!(
            "sha256 verified by a second pull ({:.0} MB/s while hashing)",
            got as f64 / secs / 1e6
        ))
    }

    async fn range(&mut self) -> Result<Measured> {
        let big = self
            .big
            .as_ref()
            .ok_or_else(|| anyhow!("no blob to read"))?;
        let len = (self.params.range_kib << 10).clamp(1, big.size);
        let mut picker = Picker::new(self.params.seed ^ 0x7261_6e67);
        let starts: Vec<u64> = (0..self.params.range_requests.max(1))
            .map(|_| picker.below(big.size - len + 1))
            .collect();
        let op = Op::Range {
            path: format!("/v2/{}/blobs/{}", big.repo, big.digest),
            starts: Arc::new(starts),
            len,
            total: big.size,
            pattern: big.pattern,
            verify_every: self.params.range_verify_every,
        };
        let out = run_load(
            &self.target,
            op,
            self.params.range_concurrency,
            Some(self.params.range_requests),
            None,
        )
        .await?;
        let mut m = out.measured("req/s");
        m.bytes = out.ok * len;
        m.notes.push(format!(
            "{:.0} MB/s; bytes checked on 1 in {}",
            m.bytes as f64 / m.secs / 1e6,
            self.params.range_verify_every.max(1)
        ));
        Ok(m)
    }

    async fn small(&mut self) -> Result<Measured> {
        let len = (self.params.small_kib << 10) as usize;
        let seed = self.params.seed;
        let count = self.params.small_count;
        let blobs = tokio::task::spawn_blocking(move || {
            (0..count)
                .map(|i| {
                    let data = Pattern::new(seed, STREAM_SMALL + i as u64).bytes(0, len);
                    let digest = sha256_of(&data);
                    (data, digest)
                })
                .collect::<Vec<_>>()
        })
        .await?;
        let op = Op::SmallPush {
            repo: self.params.repo("small"),
            blobs: Arc::new(blobs),
        };
        let out = run_load(
            &self.target,
            op,
            self.params.small_concurrency,
            Some(count),
            None,
        )
        .await?;
        let mut m = out.measured("blobs/s");
        m.bytes = out.ok * len as u64;
        m.notes.push("each: POST + PUT ?digest=".into());
        Ok(m)
    }

    /// The fixed-count (or fixed-duration) loads on 64 connections: the small image's manifest
    /// and layer, or the API root.
    async fn image_load(&mut self, name: &str) -> Result<Measured> {
        let op = if name == "ping" {
            Op::Ping
        } else {
            self.image_op(name)?
        };
        let duration = self.params.duration_secs.map(Duration::from_secs_f64);
        let total = match duration {
            Some(_) => None,
            None => Some(self.params.requests),
        };
        let out = run_load(&self.target, op, self.params.concurrency, total, duration).await?;
        Ok(out.measured("req/s"))
    }

    fn image_op(&self, name: &str) -> Result<Op> {
        let img = self.image.as_ref().ok_or_else(|| anyhow!("no image"))?;
        let manifest_path = format!("/v2/{}/manifests/latest", img.repo);
        Ok(match name {
            "manifest-get" => Op::ManifestGet {
                path: manifest_path,
                len: img.manifest_len,
            },
            "manifest-head" => Op::ManifestHead {
                path: manifest_path,
                digest: img.manifest_digest.clone(),
            },
            _ => Op::BlobHead {
                path: format!("/v2/{}/blobs/{}", img.repo, img.layer_digest),
                len: img.layer_len,
            },
        })
    }
}

fn throughput(bytes: u64, secs: f64, requests: u64) -> Measured {
    Measured {
        unit: "MB/s",
        value: bytes as f64 / secs / 1e6,
        bytes,
        requests,
        secs,
        ..Measured::default()
    }
}

/// `POST /v2/<repo>/blobs/uploads/` → the upload's location.
async fn start_upload(conn: &mut Conn, repo: &str) -> Result<String> {
    let req = conn
        .target()
        .request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .body(ReqBody::Empty)?;
    let resp = Small::read(conn.send(req).await?).await?;
    resp.expect(StatusCode::ACCEPTED, "POST upload")?.location()
}

/// A monolithic push: POST, then PUT `?digest=` with the whole body.
async fn push_blob(conn: &mut Conn, repo: &str, body: ReqBody, digest: &str) -> Result<()> {
    let location = start_upload(conn, repo).await?;
    let req = conn
        .target()
        .request(Method::PUT, &with_digest(&location, digest))
        .header(CONTENT_TYPE, OCTET)
        .body(body)?;
    let resp = Small::read(conn.send(req).await?).await?;
    resp.expect(StatusCode::CREATED, "PUT blob")?;
    Ok(())
}

/// Streams a blob GET to its end, handing each frame to `sink`; returns the byte count.
/// Redirects are not followed: a 3xx is reported as an error naming where it pointed.
async fn get_blob(conn: &mut Conn, path: &str, mut sink: impl FnMut(&[u8])) -> Result<u64> {
    let req = conn
        .target()
        .request(Method::GET, path)
        .body(ReqBody::Empty)?;
    let resp = conn.send(req).await?;
    let status = resp.status();
    if status != StatusCode::OK {
        let small = Small::read(resp).await?;
        if status.is_redirection() {
            bail!(
                "GET blob answered {status} → {} (redirect not followed)",
                small.header("location").unwrap_or("?")
            );
        }
        small.expect(StatusCode::OK, "GET blob")?;
        bail!("GET blob: unexpected {status}");
    }
    let mut body = resp.into_body();
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading blob body")?;
        if let Some(data) = frame.data_ref() {
            sink(data);
            got += data.len() as u64;
        }
    }
    Ok(got)
}

/// One kind of request in a concurrent load.
enum Op {
    Range {
        path: String,
        starts: Arc<Vec<u64>>,
        len: u64,
        total: u64,
        pattern: Pattern,
        verify_every: usize,
    },
    SmallPush {
        repo: String,
        blobs: Arc<Vec<(Bytes, String)>>,
    },
    ManifestGet {
        path: String,
        len: u64,
    },
    ManifestHead {
        path: String,
        digest: String,
    },
    BlobHead {
        path: String,
        len: u64,
    },
    Ping,
}

impl Op {
    async fn run(&self, conn: &mut Conn, i: usize) -> Result<()> {
        match self {
            Op::Range {
                path,
                starts,
                len,
                total,
                pattern,
                verify_every,
            } => {
                let start = starts[i % starts.len()];
                let last = start + len - 1;
                let req = conn
                    .target()
                    .request(Method::GET, path)
                    .header(RANGE, format!("bytes={start}-{last}"))
                    .body(ReqBody::Empty)?;
                let resp = conn.send(req).await?;
                let status = resp.status();
                if status != StatusCode::PARTIAL_CONTENT {
                    let small = Small::read(resp).await?;
                    if status.is_redirection() {
                        bail!("ranged GET answered {status} (redirect not followed)");
                    }
                    small.expect(StatusCode::PARTIAL_CONTENT, "ranged GET")?;
                    bail!("ranged GET: {status}");
                }
                let want_range = format!("bytes {start}-{last}/{total}");
                let content_range = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if content_range != want_range {
                    bail!("Content-Range {content_range:?}, expected {want_range:?}");
                }
                let verify = *verify_every > 0 && i.is_multiple_of(*verify_every);
                let mut expected = Vec::new();
                let mut body = resp.into_body();
                let mut got = 0u64;
                while let Some(frame) = body.frame().await {
                    let frame = frame.context("reading ranged body")?;
                    if let Some(data) = frame.data_ref() {
                        if verify && got + data.len() as u64 <= *len {
                            expected.resize(data.len(), 0);
                            pattern.fill(start + got, &mut expected);
                            if expected[..] != data[..] {
                                bail!(
                                    "ranged GET {start}-{last}: wrong bytes near {}",
                                    start + got
                                );
                            }
                        }
                        got += data.len() as u64;
                    }
                }
                if got != *len {
                    bail!("ranged GET {start}-{last}: {got} bytes");
                }
                Ok(())
            }
            Op::SmallPush { repo, blobs } => {
                let (data, digest) = &blobs[i % blobs.len()];
                push_blob(conn, repo, ReqBody::full(data.clone()), digest).await
            }
            Op::ManifestGet { path, len } => {
                let req = conn
                    .target()
                    .request(Method::GET, path)
                    .header(ACCEPT, MANIFEST_ACCEPT)
                    .body(ReqBody::Empty)?;
                let resp = Small::read(conn.send(req).await?).await?;
                let resp = resp.expect(StatusCode::OK, "GET manifest")?;
                if resp.body.len() as u64 != *len {
                    bail!("GET manifest: {} bytes, expected {len}", resp.body.len());
                }
                Ok(())
            }
            Op::ManifestHead { path, digest } => {
                let req = conn
                    .target()
                    .request(Method::HEAD, path)
                    .header(ACCEPT, MANIFEST_ACCEPT)
                    .body(ReqBody::Empty)?;
                let resp = Small::read(conn.send(req).await?).await?;
                let resp = resp.expect(StatusCode::OK, "HEAD manifest")?;
                match resp.header("docker-content-digest") {
                    Some(d) if d == digest => Ok(()),
                    other => bail!("HEAD manifest: Docker-Content-Digest {other:?}"),
                }
            }
            Op::BlobHead { path, len } => {
                let req = conn
                    .target()
                    .request(Method::HEAD, path)
                    .body(ReqBody::Empty)?;
                let resp = Small::read(conn.send(req).await?).await?;
                let resp = resp.expect(StatusCode::OK, "HEAD blob")?;
                let want = len.to_string();
                match resp
                    .headers
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                {
                    Some(l) if l == want => Ok(()),
                    other => bail!("HEAD blob: Content-Length {other:?}, expected {want}"),
                }
            }
            Op::Ping => {
                let req = conn
                    .target()
                    .request(Method::GET, "/v2/")
                    .body(ReqBody::Empty)?;
                let resp = Small::read(conn.send(req).await?).await?;
                resp.expect(StatusCode::OK, "GET /v2/")?;
                Ok(())
            }
        }
    }
}

struct LoadOutcome {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    secs: f64,
    latencies: Vec<u64>,
    reopened: u64,
}

impl LoadOutcome {
    fn measured(&self, unit: &'static str) -> Measured {
        let mut notes = Vec::new();
        if self.errors > 0 {
            notes.push(format!(
                "{} errors, first: {}",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        if self.reopened > 0 {
            notes.push(format!("{} connections reopened", self.reopened));
        }
        Measured {
            unit,
            value: self.ok as f64 / self.secs,
            requests: self.ok + self.errors,
            errors: self.errors,
            secs: self.secs,
            latency: summarize(self.latencies.clone()),
            notes,
            ..Measured::default()
        }
    }
}

/// Give up on a worker after this many failures in a row (a dead server fails fast).
const MAX_CONSECUTIVE_ERRORS: u32 = 50;

/// Runs `op` on `concurrency` connections, opened before the clock starts, until `total`
/// operations have been issued or `duration` has passed. Latencies of successful operations.
async fn run_load(
    target: &Arc<Target>,
    op: Op,
    concurrency: usize,
    total: Option<usize>,
    duration: Option<Duration>,
) -> Result<LoadOutcome> {
    let concurrency = concurrency.max(1);
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        conns.push(Conn::open(Arc::clone(target)).await?);
    }
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let deadline = duration.map(|d| t0 + d);
    let mut workers = Vec::with_capacity(concurrency);
    for mut conn in conns {
        let op = Arc::clone(&op);
        let next = Arc::clone(&next);
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut in_a_row = 0u32;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if total.is_some_and(|t| i >= t) || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let start = Instant::now();
                match op.run(&mut conn, i).await {
                    Ok(()) => {
                        lat.push(nanos(start.elapsed()));
                        in_a_row = 0;
                    }
                    Err(e) => {
                        errors += 1;
                        in_a_row += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                        if in_a_row >= MAX_CONSECUTIVE_ERRORS {
                            break;
                        }
                    }
                }
            }
            (lat, errors, first_error, conn.reopened)
        }));
    }
    let mut out = LoadOutcome {
        ok: 0,
        errors: 0,
        first_error: None,
        secs: 0.0,
        latencies: Vec::new(),
        reopened: 0,
    };
    for w in workers {
        let (lat, errors, first_error, reopened) = w.await.context("load worker panicked")?;
        out.ok += lat.len() as u64;
        out.latencies.extend(lat);
        out.errors += errors;
        out.reopened += reopened;
        if out.first_error.is_none() {
            out.first_error = first_error;
        }
    }
    out.secs = t0.elapsed().as_secs_f64();
    Ok(out)
}
