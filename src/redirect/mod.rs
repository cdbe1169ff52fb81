//! Blob pulls redirected away from the registry: this module owns the decision "which
//! URL does this client get", and nothing about HTTP.
//!
//! Unless `storage.redirect.disable` is set, a blob on a cloud store is handed out as a
//! presigned URL of that store (S3, GCS, Azure SAS; valid `storage.redirect.expiry`,
//! 20 minutes by default), which honours `Range` itself. With the `cloudfront` storage
//! middleware, clients get a CloudFront signed URL instead, except those whose address
//! lies in the configured AWS ranges (`ipfilteredby`), who get the S3 URL: in-region
//! traffic to S3 costs nothing, CloudFront's does. The client's address comes from the
//! HTTP layer (`http::client_addr`). Backends that cannot presign (filesystem, in-memory, a GCS
//! emulator) stream, and so does any blob whose URL cannot be made (logged, counted).

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use prometheus::{IntCounter, IntCounterVec, Opts};
use url::Url;

use crate::blobs::BlobBackend;
use crate::config::{Config, ConfigError, IpFilteredBy};

pub mod cloudfront;
pub mod ip_ranges;

use cloudfront::CloudFrontSigner;
use ip_ranges::AwsRanges;

/// Where a redirect points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectTarget {
    /// The object store's own presigned URL.
    Presigned,
    /// A CloudFront signed URL.
    CloudFront,
}

impl RedirectTarget {
    pub fn label(self) -> &'static str {
        match self {
            RedirectTarget::Presigned => "presigned",
            RedirectTarget::CloudFront => "cloudfront",
        }
    }
}

/// A URL the client is sent to for the blob's bytes.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub url: Url,
    pub target: RedirectTarget,
}

/// The CloudFront middleware: its signer and which clients bypass it.
struct CloudFront {
    signer: CloudFrontSigner,
    /// Clients in these ranges get the S3 URL (`ipfilteredby: aws|awsregion`).
    bypass: Option<Arc<AwsRanges>>,
}

/// Decides the redirect for each blob GET.
pub struct Redirector {
    expiry: Duration,
    cloudfront: Option<CloudFront>,
}

impl std::fmt::Debug for Redirector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redirector")
            .field("expiry", &self.expiry)
            .field("cloudfront", &self.cloudfront.as_ref().map(|c| &c.signer))
            .finish()
    }
}

impl Redirector {
    /// The redirector the configuration asks for (`None` if redirects are disabled).
    /// Reads the CloudFront private key and the AWS ranges file, and starts re-reading
    /// the latter every `updatefrequency` (given a Tokio runtime).
    pub fn from_config(config: &Config) -> Result<Option<Redirector>, ConfigError> {
        metrics(); // registered at start-up, so they are scraped (as 0) before any pull
        let cloudfront_config = config.middleware.cloudfront();
        if config.storage.redirect.disable {
            if cloudfront_config.is_some() {
                tracing::warn!(
                    "storage.redirect.disable is set: the cloudfront middleware is not used"
                );
            }
            return Ok(None);
        }
        let key_error = |key: String, message: String| ConfigError::Key { key, message };
        let cloudfront = match cloudfront_config {
            None => None,
            Some((i, o)) => {
                let key = |k: &str| format!("middleware.storage[{i}].options.{k}");
                let private = cloudfront::read_private_key(&o.privatekey)
                    .map_err(|e| key_error(key("privatekey"), e))?;
                let base =
                    Url::parse(&o.baseurl).map_err(|e| key_error(key("baseurl"), e.to_string()))?;
                let signer =
                    CloudFrontSigner::new(base, private, o.keypairid.clone(), o.duration.0);
                let regions = if o.ipfilteredby == IpFilteredBy::AwsRegion {
                    o.regions()
                } else {
                    Vec::new()
                };
                let bypass = match (o.ipfilteredby, &o.iprangesfile, &o.iprangesurl) {
                    (IpFilteredBy::None, _, _) | (_, None, None) => None,
                    (_, Some(path), _) => {
                        let ranges = AwsRanges::load(path, regions)
                            .map_err(|e| key_error(key("iprangesfile"), e))?;
                        ranges.spawn_reloader(o.updatefrequency.0);
                        Some(ranges)
                    }
                    (_, None, Some(url)) => {
                        let ranges = AwsRanges::download(url, regions);
                        ranges.spawn_reloader(o.updatefrequency.0);
                        Some(ranges)
                    }
                };
                Some(CloudFront { signer, bypass })
            }
        };
        Ok(Some(Redirector {
            expiry: config.storage.redirect.expiry.0,
            cloudfront,
        }))
    }

    /// A redirector with only presigned URLs (tests, tools).
    pub fn presigned(expiry: Duration) -> Redirector {
        Redirector {
            expiry,
            cloudfront: None,
        }
    }

    /// The redirect for the object `key` of `backend`, or `None` to stream it.
    /// `suffix_range`: the client asked for `Range: bytes=-n`, which Azure Blob
    /// Storage does not honour (S3 and GCS do), so such requests to Azure stream.
    #[tracing::instrument(level = "debug", skip_all, fields(backend = backend.name()))]
    pub async fn redirect(
        &self,
        backend: &dyn BlobBackend,
        key: &str,
        suffix_range: bool,
        client: Option<IpAddr>,
    ) -> Option<Redirect> {
        if suffix_range && backend.name() == "azure" {
            return None;
        }
        if let Some(cf) = &self.cloudfront {
            let bypass = match (&cf.bypass, client) {
                (Some(ranges), Some(ip)) => ranges.contains(ip),
                _ => false,
            };
            if !bypass {
                if let Some(path) = backend.object_path(key) {
                    match cf.signer.sign(&path, SystemTime::now()) {
                        Ok(url) => return Some(self.counted(url, RedirectTarget::CloudFront)),
                        Err(e) => {
                            metrics().failures.inc();
                            tracing::warn!(error = %e, "cannot sign a CloudFront URL; trying the store's");
                        }
                    }
                }
            }
        }
        match backend.presigned_get(key, self.expiry).await {
            Ok(Some(url)) => Some(self.counted(url, RedirectTarget::Presigned)),
            Ok(None) => None,
            Err(e) => {
                metrics().failures.inc();
                tracing::warn!(error = %e, "cannot presign a blob URL; streaming the blob");
                None
            }
        }
    }

    fn counted(&self, url: Url, target: RedirectTarget) -> Redirect {
        metrics()
            .redirects
            .with_label_values(&[target.label()])
            .inc();
        Redirect { url, target }
    }
}

/// The redirect metrics, registered with the rest of Wharf's.
pub(crate) struct RedirectMetrics {
    /// `wharf_blob_redirects_total{target=presigned|cloudfront}`.
    pub redirects: IntCounterVec,
    /// `wharf_blob_redirect_failures_total`: URLs that could not be made (streamed).
    pub failures: IntCounter,
    /// `wharf_aws_ip_ranges_reloads_total{result=ok|error}`.
    pub ip_range_reloads: IntCounterVec,
}

pub(crate) fn metrics() -> &'static RedirectMetrics {
    static METRICS: OnceLock<RedirectMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let redirects = IntCounterVec::new(
            Opts::new(
                "blob_redirects_total",
                "Blob GETs answered with a redirect, by target",
            ),
            &["target"],
        )
        .expect("static metric");
        for t in [RedirectTarget::Presigned, RedirectTarget::CloudFront] {
            redirects.with_label_values(&[t.label()]);
        }
        let failures = IntCounter::new(
            "blob_redirect_failures_total",
            "Blob redirects that could not be signed (the blob was streamed)",
        )
        .expect("static metric");
        let ip_range_reloads = IntCounterVec::new(
            Opts::new(
                "aws_ip_ranges_reloads_total",
                "Re-reads of the AWS IP ranges file",
            ),
            &["result"],
        )
        .expect("static metric");
        let registry = &crate::telemetry::metrics().registry;
        for m in [
            Box::new(redirects.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(ip_range_reloads.clone()),
        ] {
            if let Err(e) = registry.register(m) {
                tracing::warn!(error = %e, "redirect metrics not registered");
            }
        }
        RedirectMetrics {
            redirects,
            failures,
            ip_range_reloads,
        }
    })
}

#[cfg(test)]
mod tests;
