//! `middleware.storage`: distribution's storage middleware list. Wharf implements
//! `cloudfront` (blob pulls redirected to CloudFront signed URLs), with distribution's
//! option names; what the options do is in `crate::redirect`.

use std::path::PathBuf;

use serde::Deserialize;

use super::duration::ConfigDuration;
use super::ConfigError;

/// `middleware`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiddlewareConfig {
    #[serde(default)]
    pub storage: Vec<StorageMiddleware>,
}

/// One entry of `middleware.storage`: `{name: cloudfront, options: {…}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "name", content = "options", deny_unknown_fields)]
pub enum StorageMiddleware {
    #[serde(rename = "cloudfront")]
    CloudFront(CloudFrontOptions),
}

/// Which clients get the plain S3 URL instead of CloudFront's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFilteredBy {
    /// Everyone gets CloudFront.
    #[default]
    None,
    /// Clients inside any AWS range get S3.
    Aws,
    /// Clients inside the AWS ranges of `awsregion` get S3.
    AwsRegion,
}

/// `middleware.storage[].options` of `cloudfront`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudFrontOptions {
    /// `https://dxxxx.cloudfront.net[/path]`; the object's key is appended.
    pub baseurl: String,
    /// Path of the CloudFront key pair's private key (PEM, PKCS#1 or PKCS#8).
    pub privatekey: PathBuf,
    /// The CloudFront public key's ID (`Key-Pair-Id`).
    pub keypairid: String,
    /// How long a signed URL is valid (default 20 minutes).
    #[serde(default = "default_duration")]
    pub duration: ConfigDuration,
    #[serde(default)]
    pub ipfilteredby: IpFilteredBy,
    /// Comma-separated AWS regions for `ipfilteredby: awsregion`.
    #[serde(default)]
    pub awsregion: Option<String>,
    /// AWS's `ip-ranges.json`, read from this local path (Wharf does not download it).
    #[serde(default)]
    pub iprangesfile: Option<PathBuf>,
    /// How often the ranges file is re-read (default 12 hours).
    #[serde(default = "default_update")]
    pub updatefrequency: ConfigDuration,
}

fn default_duration() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(20 * 60))
}

fn default_update() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(12 * 3600))
}

impl CloudFrontOptions {
    /// The regions of `awsregion`, trimmed.
    pub fn regions(&self) -> Vec<String> {
        self.awsregion
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect()
    }
}

impl MiddlewareConfig {
    /// The `cloudfront` entry and its index, if there is one.
    pub fn cloudfront(&self) -> Option<(usize, &CloudFrontOptions)> {
        // Only one kind of middleware exists so far; this becomes a filter with more.
        self.storage
            .iter()
            .enumerate()
            .map(|(i, m)| match m {
                StorageMiddleware::CloudFront(o) => (i, o),
            })
            .next()
    }

    pub(super) fn validate(&self, storage_is_s3: bool) -> Result<(), ConfigError> {
        if self.storage.len() > 1 {
            return Err(ConfigError::key(
                "middleware.storage",
                "at most one storage middleware (cloudfront) is supported",
            ));
        }
        let Some((i, o)) = self.cloudfront() else {
            return Ok(());
        };
        let key = |k: &str| format!("middleware.storage[{i}].{k}");
        if !storage_is_s3 {
            return Err(ConfigError::key(
                key("name"),
                "the cloudfront middleware needs storage.s3",
            ));
        }
        match url::Url::parse(&o.baseurl) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {}
            _ => {
                return Err(ConfigError::key(
                    key("options.baseurl"),
                    format!("{:?} is not an http(s) URL without a query", o.baseurl),
                ))
            }
        }
        if o.keypairid.trim().is_empty() {
            return Err(ConfigError::key(
                key("options.keypairid"),
                "must not be empty",
            ));
        }
        for (name, d) in [
            ("duration", o.duration),
            ("updatefrequency", o.updatefrequency),
        ] {
            if d.0.is_zero() {
                return Err(ConfigError::key(
                    key(&format!("options.{name}")),
                    "must be more than 0",
                ));
            }
        }
        if o.ipfilteredby != IpFilteredBy::None && o.iprangesfile.is_none() {
            return Err(ConfigError::key(
                key("options.iprangesfile"),
                "needed when ipfilteredby is aws or awsregion (the path of AWS's ip-ranges.json)",
            ));
        }
        if o.ipfilteredby == IpFilteredBy::AwsRegion && o.regions().is_empty() {
            return Err(ConfigError::key(
                key("options.awsregion"),
                "needed when ipfilteredby is awsregion (comma-separated regions)",
            ));
        }
        Ok(())
    }
}
