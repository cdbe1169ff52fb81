//! `storage.s3`, `storage.azure`, `storage.gcs`: the cloud object stores, with
//! distribution's keys. Values that are secrets never show in `Debug` output.
//!
//! Environment overrides are read as YAML scalars, so `REGISTRY_STORAGE_S3_BUCKET=2024`
//! arrives as a number: every string key here also takes a number or a boolean, and an
//! empty string counts as absent (distribution's sample files write `accesskey: ""`).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_norway::Value;

use super::ConfigError;

/// The smallest part S3 (and GCS's XML multipart API) accepts, but for the last one.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// The largest part S3 accepts.
const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// distribution's default `chunksize` for S3.
const DEFAULT_S3_CHUNKSIZE: u64 = 10 * 1024 * 1024;
/// The part size for GCS and Azure blocks.
const DEFAULT_CHUNKSIZE: u64 = 8 * 1024 * 1024;

/// A configuration value that must not be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        text(d)?
            .map(Secret)
            .ok_or_else(|| D::Error::custom("expected a non-empty string"))
    }
}

/// A string written as any YAML scalar; `None` for null or "".
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(D::Error::custom("expected a string")),
    }
}

fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(text(d)?.map(Secret))
}

/// A byte count written as a number or a string of digits.
fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| D::Error::custom("expected a byte count")),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{s:?} is not a byte count"))),
        Some(_) => Err(D::Error::custom("expected a byte count")),
    }
}

fn yes() -> bool {
    true
}

fn required(section: &str, key: &str, value: &Option<String>) -> Result<(), ConfigError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(()),
        _ => Err(ConfigError::key(
            format!("storage.{section}.{key}"),
            "is required",
        )),
    }
}

fn check_part_size(key: &str, size: u64) -> Result<(), ConfigError> {
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size) {
        return Err(ConfigError::key(
            key,
            format!("{size} is not between {MIN_PART_SIZE} (5 MiB) and {MAX_PART_SIZE} (5 GiB)"),
        ));
    }
    Ok(())
}

fn check_endpoint(key: &str, url: &str) -> Result<(), ConfigError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        return Err(ConfigError::key(
            key,
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
    Ok(())
}

/// `storage.s3`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    #[serde(default, deserialize_with = "text")]
    pub bucket: Option<String>,
    /// Defaults to `us-east-1` (also what S3-compatible servers expect).
    #[serde(default, deserialize_with = "text")]
    pub region: Option<String>,
    /// An S3-compatible endpoint (`https://host:port`, or `host:port` with `secure`).
    #[serde(default, deserialize_with = "text")]
    pub regionendpoint: Option<String>,
    /// With `secretkey`; when both are absent, the default AWS credential chain
    /// (`AWS_*` environment, web identity, container or instance credentials).
    #[serde(default, deserialize_with = "text")]
    pub accesskey: Option<String>,
    #[serde(default, deserialize_with = "opt_secret")]
    pub secretkey: Option<Secret>,
    #[serde(default, deserialize_with = "opt_secret")]
    pub sessiontoken: Option<Secret>,
    /// Path-style requests (`endpoint/bucket/key`), as MinIO and most emulators need.
    #[serde(default)]
    pub forcepathstyle: bool,
    #[serde(default, deserialize_with = "text")]
    pub rootdirectory: Option<String>,
    /// Multipart part size in bytes (5 MiB to 5 GiB; default 10 MiB).
    #[serde(default, deserialize_with = "bytes")]
    pub chunksize: Option<u64>,
    /// `STANDARD`, `REDUCED_REDUNDANCY`, `STANDARD_IA`, …; `NONE` sends no class.
    #[serde(default, deserialize_with = "text")]
    pub storageclass: Option<String>,
    /// Server-side encryption: SSE-KMS with `keyid`, else SSE-S3 (AES256).
    #[serde(default)]
    pub encrypt: bool,
    #[serde(default, deserialize_with = "text")]
    pub keyid: Option<String>,
    /// `https` (true) or `http` for a `regionendpoint` written without a scheme.
    #[serde(default = "yes")]
    pub secure: bool,
    /// Accept any TLS certificate from the endpoint.
    #[serde(default)]
    pub skipverify: bool,
    /// Accepted for compatibility with distribution's files; Wharf always signs with
    /// SigV4 and copies chunks its own way.
    #[serde(default)]
    pub v4auth: Option<Value>,
    #[serde(default)]
    pub multipartcopychunksize: Option<Value>,
    #[serde(default)]
    pub multipartcopymaxconcurrency: Option<Value>,
    #[serde(default)]
    pub multipartcopythresholdsize: Option<Value>,
    #[serde(default)]
    pub loglevel: Option<Value>,
    /// distribution's S3 Transfer Acceleration switch: only `false` (the default).
    #[serde(default)]
    pub accelerate: bool,
    /// distribution's dual-stack endpoint switch: only `false` (the default).
    #[serde(default)]
    pub usedualstack: bool,
    /// distribution's canned ACL for new objects: only `private` (the default; the
    /// bucket's own policy decides).
    #[serde(default, deserialize_with = "text")]
    pub objectacl: Option<String>,
}

/// S3 storage classes distribution accepts.
const STORAGE_CLASSES: [&str; 8] = [
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "OUTPOSTS",
    "GLACIER_IR",
    "NONE",
];

impl S3Config {
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or("us-east-1")
    }

    pub fn chunksize(&self) -> u64 {
        self.chunksize.unwrap_or(DEFAULT_S3_CHUNKSIZE)
    }

    /// The endpoint URL with its scheme, if one is configured.
    pub fn endpoint(&self) -> Option<String> {
        let e = self.regionendpoint.as_deref()?.trim_end_matches('/');
        if e.contains("://") {
            Some(e.to_string())
        } else if self.secure {
            Some(format!("https://{e}"))
        } else {
            Some(format!("http://{e}"))
        }
    }

    /// The storage class to send, if any.
    pub fn storage_class(&self) -> Option<String> {
        let class = self.storageclass.as_deref()?.to_ascii_uppercase();
        (class != "NONE").then_some(class)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        required("s3", "bucket", &self.bucket)?;
        if let Some(endpoint) = self.endpoint() {
            check_endpoint("storage.s3.regionendpoint", &endpoint)?;
        }
        match (&self.accesskey, &self.secretkey) {
            (Some(_), None) => {
                return Err(ConfigError::key(
                    "storage.s3.secretkey",
                    "is required with accesskey",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::key(
                    "storage.s3.accesskey",
                    "is required with secretkey",
                ))
            }
            _ => {}
        }
        check_part_size("storage.s3.chunksize", self.chunksize())?;
        if let Some(class) = &self.storageclass {
            if !STORAGE_CLASSES.contains(&class.to_ascii_uppercase().as_str()) {
                return Err(ConfigError::key(
                    "storage.s3.storageclass",
                    format!("{class:?} is not one of {}", STORAGE_CLASSES.join(", ")),
                ));
            }
        }
        if self.accelerate {
            return Err(ConfigError::key(
                "storage.s3.accelerate",
                "true is not supported (Transfer Acceleration endpoints are not used); \
                 remove it or set false",
            ));
        }
        if self.usedualstack {
            return Err(ConfigError::key(
                "storage.s3.usedualstack",
                "true is not supported; name the dual-stack endpoint in regionendpoint \
                 (https://s3.dualstack.<region>.amazonaws.com) instead",
            ));
        }
        if let Some(acl) = &self.objectacl {
            if !acl.eq_ignore_ascii_case("private") {
                return Err(ConfigError::key(
                    "storage.s3.objectacl",
                    format!("{acl:?} is not supported: objects are written private (the bucket's policy decides access)"),
                ));
            }
        }
        if self.keyid.is_some() && !self.encrypt {
            return Err(ConfigError::key(
                "storage.s3.keyid",
                "is only used with encrypt: true",
            ));
        }
        if self.v4auth.as_ref().and_then(Value::as_bool) == Some(false) {
            return Err(ConfigError::key(
                "storage.s3.v4auth",
                "only SigV4 is supported (set true or leave it out)",
            ));
        }
        Ok(())
    }
}

/// `storage.azure`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    #[serde(default, deserialize_with = "text")]
    pub accountname: Option<String>,
    /// The shared key; when absent, managed identity (or the `AZURE_*` environment:
    /// workload identity, a client secret).
    #[serde(default, deserialize_with = "opt_secret")]
    pub accountkey: Option<Secret>,
    #[serde(default, deserialize_with = "text")]
    pub container: Option<String>,
    /// The cloud's domain: `core.windows.net` (default), `core.chinacloudapi.cn`, ….
    #[serde(default, deserialize_with = "text")]
    pub realm: Option<String>,
    /// The account's blob service URL, overriding `realm`: for Azurite,
    /// `http://127.0.0.1:10000/devstoreaccount1`. (distribution v3 calls it `serviceurl`.)
    #[serde(default, alias = "serviceurl", deserialize_with = "text")]
    pub endpoint: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub rootdirectory: Option<String>,
    /// Block size in bytes for large uploads (default 8 MiB).
    #[serde(default, deserialize_with = "bytes")]
    pub chunksize: Option<u64>,
}

impl AzureConfig {
    pub fn chunksize(&self) -> u64 {
        self.chunksize.unwrap_or(DEFAULT_CHUNKSIZE)
    }

    /// The blob service URL of the account.
    pub fn endpoint(&self) -> String {
        match &self.endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!(
                "https://{}.blob.{}",
                self.accountname.as_deref().unwrap_or_default(),
                self.realm.as_deref().unwrap_or("core.windows.net")
            ),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        required("azure", "accountname", &self.accountname)?;
        required("azure", "container", &self.container)?;
        if let Some(endpoint) = &self.endpoint {
            check_endpoint("storage.azure.endpoint", endpoint)?;
        }
        if let Some(key) = &self.accountkey {
            use base64::Engine as _;
            if base64::engine::general_purpose::STANDARD
                .decode(&key.0)
                .is_err()
            {
                return Err(ConfigError::key(
                    "storage.azure.accountkey",
                    "is not base64 (the key as the Azure portal shows it)",
                ));
            }
        }
        check_part_size("storage.azure.chunksize", self.chunksize())
    }
}

/// `storage.gcs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsConfig {
    #[serde(default, deserialize_with = "text")]
    pub bucket: Option<String>,
    /// A service account key file (JSON).
    #[serde(default, deserialize_with = "text")]
    pub keyfile: Option<String>,
    /// The service account key inline, as a map (`type`, `private_key`, `client_email`, …).
    /// With neither, application default credentials or the instance's service account.
    #[serde(default)]
    pub credentials: Option<GcsCredentials>,
    #[serde(default, deserialize_with = "text")]
    pub rootdirectory: Option<String>,
    /// Multipart part size in bytes (5 MiB to 5 GiB; default 8 MiB).
    #[serde(default, deserialize_with = "bytes")]
    pub chunksize: Option<u64>,
    /// Another GCS endpoint (an emulator such as fake-gcs-server). Without credentials,
    /// requests to it are unauthenticated.
    #[serde(default, deserialize_with = "text")]
    pub endpoint: Option<String>,
}

/// Inline service account credentials; never shown in `Debug` output.
#[derive(Clone, Deserialize)]
pub struct GcsCredentials(pub serde_norway::Mapping);

impl std::fmt::Debug for GcsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GcsCredentials(***)")
    }
}

impl GcsConfig {
    pub fn chunksize(&self) -> u64 {
        self.chunksize.unwrap_or(DEFAULT_CHUNKSIZE)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        required("gcs", "bucket", &self.bucket)?;
        if self.keyfile.is_some() && self.credentials.is_some() {
            return Err(ConfigError::key(
                "storage.gcs.credentials",
                "give keyfile or credentials, not both",
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            check_endpoint("storage.gcs.endpoint", endpoint)?;
        }
        check_part_size("storage.gcs.chunksize", self.chunksize())
    }
}
