//! AWS's published address ranges (`ip-ranges.json`), read from a local file
//! (`iprangesfile`) or downloaded (`iprangesurl`, distribution's key) and re-read on a
//! timer: which clients are "inside AWS" (or inside some AWS regions) for the
//! CloudFront middleware's `ipfilteredby`. A download happens in the background (the
//! first one at start-up): until it succeeds no client counts as inside AWS, so every
//! client is sent to CloudFront.
//!
//! The file's format: `{"prefixes": [{"ip_prefix": "3.5.140.0/22", "region":
//! "ap-northeast-2", …}], "ipv6_prefixes": [{"ipv6_prefix": "…", "region": …}]}`.
//! A few thousand prefixes are searched linearly per redirected request: microseconds,
//! far below the request's database lookup, so no prefix trie is worth its code.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

#[derive(Deserialize)]
struct RangesFile {
    #[serde(default)]
    prefixes: Vec<V4Prefix>,
    #[serde(default)]
    ipv6_prefixes: Vec<V6Prefix>,
}

#[derive(Deserialize)]
struct V4Prefix {
    ip_prefix: String,
    #[serde(default)]
    region: String,
}

#[derive(Deserialize)]
struct V6Prefix {
    ipv6_prefix: String,
    #[serde(default)]
    region: String,
}

/// Parses `ip-ranges.json`, keeping the prefixes of `regions` (all if empty).
pub fn parse(text: &str, regions: &[String]) -> Result<Vec<IpNet>, String> {
    let file: RangesFile =
        serde_json::from_str(text).map_err(|e| format!("not AWS's ip-ranges.json: {e}"))?;
    let wanted = |region: &str| regions.is_empty() || regions.iter().any(|r| r == region);
    let v4 = file
        .prefixes
        .iter()
        .filter(|p| wanted(&p.region))
        .map(|p| &p.ip_prefix);
    let v6 = file
        .ipv6_prefixes
        .iter()
        .filter(|p| wanted(&p.region))
        .map(|p| &p.ipv6_prefix);
    v4.chain(v6)
        .map(|p| {
            p.parse::<IpNet>()
                .map_err(|_| format!("{p:?} is not a CIDR prefix"))
        })
        .collect()
}

/// Where the ranges come from.
#[derive(Clone)]
enum Source {
    File(PathBuf),
    Url(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Url(u) => f.write_str(u),
        }
    }
}

/// How long a download of `ip-ranges.json` may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// The ranges in force, shared with the reloading task.
pub struct AwsRanges {
    source: Source,
    regions: Vec<String>,
    nets: RwLock<Arc<Vec<IpNet>>>,
}

impl AwsRanges {
    /// Reads `path` now; a missing or bad file is an error (start-up fails).
    pub fn load(path: &Path, regions: Vec<String>) -> Result<Arc<Self>, String> {
        let nets = read(path, &regions)?;
        tracing::info!(path = %path.display(), prefixes = nets.len(), "AWS IP ranges loaded");
        Ok(Arc::new(AwsRanges {
            source: Source::File(path.to_path_buf()),
            regions,
            nets: RwLock::new(Arc::new(nets)),
        }))
    }

    /// Ranges downloaded from `url` by [`AwsRanges::spawn_reloader`] (at once, then on
    /// its timer); empty until the first download succeeds.
    pub fn download(url: &str, regions: Vec<String>) -> Arc<Self> {
        Arc::new(AwsRanges {
            source: Source::Url(url.to_string()),
            regions,
            nets: RwLock::new(Arc::new(Vec::new())),
        })
    }

    /// True if `ip` lies in one of the ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let nets = self.nets.read().map(|n| n.clone()).unwrap_or_default();
        let ip = ip.to_canonical();
        nets.iter().any(|n| n.contains(&ip))
    }

    pub fn len(&self) -> usize {
        self.nets.read().map(|n| n.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-reads the file (downloads the URL); a missing or bad one is logged and the
    /// ranges stay as they were.
    pub async fn reload(&self) -> bool {
        let read = match &self.source {
            Source::File(path) => {
                let (path, regions) = (path.clone(), self.regions.clone());
                tokio::task::spawn_blocking(move || read(&path, &regions))
                    .await
                    .unwrap_or_else(|e| Err(format!("reading task failed: {e}")))
            }
            Source::Url(url) => download(url, &self.regions).await,
        };
        let ok = match read {
            Ok(nets) => {
                tracing::debug!(source = %self.source, prefixes = nets.len(), "AWS IP ranges reloaded");
                if let Ok(mut current) = self.nets.write() {
                    *current = Arc::new(nets);
                }
                true
            }
            Err(e) => {
                tracing::warn!(source = %self.source, error = %e, "AWS IP ranges not reloaded; keeping the previous ones");
                false
            }
        };
        super::metrics()
            .ip_range_reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
        ok
    }

    /// Re-reads the file every `every` while the ranges are in use (the task ends when
    /// the last holder drops them). Needs a Tokio runtime; without one, nothing reloads.
    pub fn spawn_reloader(self: &Arc<Self>, every: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        // A download starts at once: nothing was read at start-up.
        let mut wait = match self.source {
            Source::Url(_) => Duration::ZERO,
            Source::File(_) => every,
        };
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(wait).await;
                wait = every;
                let Some(ranges) = weak.upgrade() else { return };
                ranges.reload().await;
            }
        });
    }
}

async fn download(url: &str, regions: &[String]) -> Result<Vec<IpNet>, String> {
    let client = reqwest::Client::builder()
        .timeout(DOWNLOAD_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("{url}: {e}"))?;
    let text = response.text().await.map_err(|e| format!("{url}: {e}"))?;
    parse(&text, regions).map_err(|e| format!("{url}: {e}"))
}

fn read(path: &Path, regions: &[String]) -> Result<Vec<IpNet>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text, regions).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SAMPLE: &str = r#"{
      "syncToken": "1",
      "createDate": "2024-01-01-00-00-00",
      "prefixes": [
        {"ip_prefix": "3.5.140.0/22", "region": "ap-northeast-2", "service": "AMAZON", "network_border_group": "ap-northeast-2"},
        {"ip_prefix": "52.94.0.0/22", "region": "us-east-1", "service": "S3", "network_border_group": "us-east-1"}
      ],
      "ipv6_prefixes": [
        {"ipv6_prefix": "2600:1f18::/33", "region": "us-east-1", "service": "EC2", "network_border_group": "us-east-1"}
      ]
    }"#;

    #[test]
    fn parses_v4_and_v6_with_region_filter() {
        let all = parse(SAMPLE, &[]).unwrap();
        assert_eq!(all.len(), 3);
        let east = parse(SAMPLE, &["us-east-1".into()]).unwrap();
        assert_eq!(east.len(), 2);
        assert!(east
            .iter()
            .any(|n| n.contains(&"52.94.1.2".parse::<IpAddr>().unwrap())));
        assert!(!east
            .iter()
            .any(|n| n.contains(&"3.5.140.1".parse::<IpAddr>().unwrap())));
        assert!(parse("{\"prefixes\": [{\"ip_prefix\": \"nope\"}]}", &[]).is_err());
        assert!(parse("not json", &[]).is_err());
    }

    /// `iprangesurl`: empty until downloaded, then the ranges; a failed download keeps
    /// them. The server is a loopback socket answering SAMPLE once, then 500.
    #[tokio::test]
    async fn downloaded_ranges_arrive_and_a_failed_download_keeps_them() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/ip-ranges.json", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let body = if status.starts_with("200") {
                    SAMPLE
                } else {
                    ""
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let ranges = AwsRanges::download(&url, vec!["us-east-1".into()]);
        assert!(ranges.is_empty());
        assert!(!ranges.contains("52.94.1.2".parse().unwrap()));
        assert!(ranges.reload().await);
        assert_eq!(ranges.len(), 2);
        assert!(ranges.contains("52.94.1.2".parse().unwrap()));
        assert!(!ranges.reload().await, "a 500 is a failed download");
        assert_eq!(ranges.len(), 2);
    }

    #[tokio::test]
    async fn bad_reload_keeps_previous_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ip-ranges.json");
        std::fs::write(&path, SAMPLE).unwrap();
        let ranges = AwsRanges::load(&path, vec![]).unwrap();
        let inside: IpAddr = "3.5.141.7".parse().unwrap();
        assert!(ranges.contains(inside));
        // An IPv4-mapped IPv6 address is the IPv4 address.
        assert!(ranges.contains("::ffff:3.5.141.7".parse().unwrap()));
        std::fs::write(&path, "{ truncated").unwrap();
        assert!(!ranges.reload().await);
        assert!(ranges.contains(inside));
        std::fs::remove_file(&path).unwrap();
        assert!(!ranges.reload().await);
        assert_eq!(ranges.len(), 3);
        std::fs::write(
            &path,
            r#"{"prefixes": [{"ip_prefix": "10.0.0.0/8", "region": "x"}]}"#,
        )
        .unwrap();
        assert!(ranges.reload().await);
        assert!(!ranges.contains(inside));
        assert!(ranges.contains("10.1.2.3".parse().unwrap()));
        assert!(AwsRanges::load(&dir.path().join("missing.json"), vec![]).is_err());
    }
}
