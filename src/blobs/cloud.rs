//! The cloud object stores: `storage.s3`, `storage.azure` and `storage.gcs` each build
//! an `object_store` client from their configuration section (distribution's keys) and
//! wrap it in [`ObjectBackend`].
//!
//! Every client retries throttling (429, S3's `SlowDown` 503), 5xx answers and
//! connection failures with exponential backoff (see [`retry_config`]); what still fails
//! reaches the HTTP layer as an object-store error, a 503 with `Retry-After`.
//! Credentials left out of the configuration come from each cloud's usual chain
//! (environment, workload identity, instance metadata), resolved at the first request.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{Attribute, Attributes, BackoffConfig, ClientOptions, RetryConfig};

use super::azure_compose::AzureComposer;
use super::gcs_compose::{GcsComposer, DEFAULT_BASE_URL};
use super::object::ObjectBackend;
use super::s3_compose::S3Composer;
use crate::config::{AzureConfig, GcsConfig, S3Config};

/// Why a cloud client could not be built (a bad key file, an unusable endpoint).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct CloudError {
    /// The configuration section or key at fault (`storage.gcs.keyfile`).
    pub key: &'static str,
    pub message: String,
}

impl CloudError {
    fn new(key: &'static str, message: impl ToString) -> Self {
        CloudError {
            key,
            message: message.to_string(),
        }
    }
}

/// The smallest part S3 composes (and the chunk size advertised to clients).
const S3_MIN_PART: u64 = 5 * 1024 * 1024;

/// Retries for every cloud client: up to 10, within 30 s of the first try. object_store
/// draws each wait at random between 100 ms and 3× the previous one (capped at 5 s), so
/// the waits grow about 1.5× a step and 10 retries span some 20 s: long enough to ride
/// out throttling and a brief outage, short enough that the client is still waiting.
/// (With `base` 2, the default, 8 retries were over in about a second.)
pub fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 3.0,
        },
        max_retries: 10,
        retry_timeout: Duration::from_secs(30),
    }
}

/// HTTP client settings: connect within 5 s; a request (including streaming its body)
/// may take up to 15 minutes, as a large blob read by a slow client does (object_store's
/// default of 30 s would cut such reads short).
fn client_options(endpoint: Option<&str>, skipverify: bool) -> ClientOptions {
    let allow_http = endpoint.is_some_and(|e| e.starts_with("http://"));
    ClientOptions::new()
        .with_allow_http(allow_http)
        .with_allow_invalid_certificates(skipverify)
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(15 * 60))
}

fn part_size(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// `storage.s3`: Amazon S3 or an S3-compatible server (`regionendpoint`).
pub fn s3(config: &S3Config) -> Result<ObjectBackend, CloudError> {
    let bucket = config.bucket.clone().unwrap_or_default();
    let endpoint = config.endpoint();
    // Without keys in the configuration, the default credential chain: `AWS_*`
    // variables, web identity, container or instance credentials. With them, nothing
    // from the environment (an `AWS_SESSION_TOKEN` there would spoil them).
    let builder = if config.accesskey.is_some() {
        AmazonS3Builder::new()
    } else {
        AmazonS3Builder::from_env()
    };
    let path_style = match &endpoint {
        Some(endpoint) => config.forcepathstyle || !virtual_host_capable(endpoint),
        None => config.forcepathstyle,
    };
    let mut builder = builder
        .with_bucket_name(&bucket)
        .with_region(config.region())
        .with_retry(retry_config())
        .with_client_options(client_options(endpoint.as_deref(), config.skipverify))
        .with_http_connector(super::traced::Connector);
    match &endpoint {
        Some(endpoint) if config.forcepathstyle || !virtual_host_capable(endpoint) => {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        Some(endpoint) => {
            // Virtual-hosted style: object_store expects the bucket in the endpoint.
            let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
            builder = builder
                .with_endpoint(format!("{scheme}://{bucket}.{host}"))
                .with_virtual_hosted_style_request(true);
        }
        None => {
            builder = builder.with_virtual_hosted_style_request(!config.forcepathstyle);
        }
    }
    if let (Some(access), Some(secret)) = (&config.accesskey, &config.secretkey) {
        builder = builder
            .with_access_key_id(access)
            .with_secret_access_key(&secret.0);
        if let Some(token) = &config.sessiontoken {
            builder = builder.with_token(&token.0);
        }
    }
    if config.encrypt {
        builder = match &config.keyid {
            Some(key) => builder.with_sse_kms_encryption(key),
            None => {
                let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                    .parse()
                    .map_err(|e| CloudError::new("storage.s3.encrypt", e))?;
                builder.with_config(key, "AES256")
            }
        };
    }
    let store = Arc::new(
        builder
            .build()
            .map_err(|e| CloudError::new("storage.s3", e))?,
    );
    let mut attributes = Attributes::new();
    if let Some(class) = config.storage_class() {
        attributes.insert(Attribute::StorageClass, class.into());
    }
    let backend = ObjectBackend::new(
        "s3",
        store.clone(),
        config.rootdirectory.as_deref().unwrap_or_default(),
    )
    .with_signer(store.clone())
    .with_part_size(part_size(config.chunksize()))
    .with_min_chunk_len(S3_MIN_PART)
    .with_attributes(attributes);
    // The SDK's HTTPS client cannot be told to accept any certificate: with
    // `skipverify`, chunks are stream-copied.
    if config.skipverify {
        return Ok(backend);
    }
    let composer = S3Composer::new(config, store, path_style);
    Ok(backend.with_composer(Arc::new(composer)))
}

/// True unless the endpoint's host is an IP address or `localhost`, which cannot take
/// the bucket as a subdomain.
fn virtual_host_capable(endpoint: &str) -> bool {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.starts_with('[') {
        return false; // [IPv6]
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    host != "localhost" && host.parse::<std::net::Ipv4Addr>().is_err()
}

/// `storage.azure`: Azure Blob Storage (or Azurite, through `endpoint`).
pub fn azure(config: &AzureConfig) -> Result<ObjectBackend, CloudError> {
    let endpoint = config.endpoint();
    // Without `accountkey`, `AZURE_*` variables (workload identity, a client secret),
    // else the managed identity of the machine. With it, nothing from the environment
    // (a bearer token there would take precedence over the key).
    let builder = if config.accountkey.is_some() {
        MicrosoftAzureBuilder::new()
    } else {
        MicrosoftAzureBuilder::from_env()
    };
    let mut builder = builder
        .with_account(config.accountname.clone().unwrap_or_default())
        .with_container_name(config.container.clone().unwrap_or_default())
        .with_endpoint(endpoint.clone())
        .with_retry(retry_config())
        .with_client_options(client_options(Some(&endpoint), false))
        .with_http_connector(super::traced::Connector);
    if let Some(key) = &config.accountkey {
        builder = builder.with_access_key(&key.0);
    }
    let store = Arc::new(
        builder
            .build()
            .map_err(|e| CloudError::new("storage.azure", e))?,
    );
    // SAS URLs: from the account key, else a user delegation key (bearer credentials);
    // they also authorize the block copies of a server-side compose.
    Ok(ObjectBackend::new(
        "azure",
        store.clone(),
        config.rootdirectory.as_deref().unwrap_or_default(),
    )
    .with_signer(store.clone())
    .with_part_size(part_size(config.chunksize()))
    .with_composer(Arc::new(AzureComposer::new(store))))
}

/// `storage.gcs`: Google Cloud Storage (or an emulator, through `endpoint`).
pub fn gcs(config: &GcsConfig) -> Result<ObjectBackend, CloudError> {
    let endpoint = config.endpoint.as_deref().map(|e| e.trim_end_matches('/'));
    // Without a key or an endpoint, `GOOGLE_*` variables, application default
    // credentials, else the instance's service account. With one, nothing from the
    // environment (a second key there would be refused as ambiguous).
    let configured = config.keyfile.is_some() || config.credentials.is_some() || endpoint.is_some();
    let builder = if configured {
        GoogleCloudStorageBuilder::new()
    } else {
        GoogleCloudStorageBuilder::from_env()
    };
    let mut builder = builder
        .with_bucket_name(config.bucket.clone().unwrap_or_default())
        .with_retry(retry_config())
        .with_client_options(client_options(endpoint, false))
        .with_http_connector(super::traced::Connector);
    let configured_key = config.keyfile.is_some() || config.credentials.is_some();
    // A service account key as JSON, if one is configured.
    let key: Option<serde_json::Value> = match (&config.keyfile, &config.credentials) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CloudError::new("storage.gcs.keyfile", format!("{path}: {e}")))?;
            Some(serde_json::from_str(&text).map_err(|e| {
                CloudError::new("storage.gcs.keyfile", format!("{path}: not JSON: {e}"))
            })?)
        }
        (None, Some(credentials)) => Some(
            serde_json::to_value(&credentials.0)
                .map_err(|e| CloudError::new("storage.gcs.credentials", e))?,
        ),
        (None, None) => None,
    };
    // object_store takes another endpoint only from the key (`gcs_base_url`); with no
    // key, an emulator is used without authentication.
    let anonymous = key.is_none() && endpoint.is_some();
    let key = match (key, endpoint) {
        (Some(mut key), Some(endpoint)) => {
            key["gcs_base_url"] = endpoint.into();
            Some(key)
        }
        (None, Some(endpoint)) => {
            builder = builder.with_skip_signature(true);
            Some(serde_json::json!({
                "gcs_base_url": endpoint,
                "disable_oauth": true,
                "client_email": "",
                "private_key": "",
                "private_key_id": "",
            }))
        }
        (key, None) => key,
    };
    if let Some(key) = key {
        builder = builder.with_service_account_key(key.to_string());
    }
    let store = Arc::new(
        builder
            .build()
            .map_err(|e| CloudError::new("storage.gcs", e))?,
    );
    // Several chunks are joined by the JSON API's compose, with the same credentials
    // (none for an emulator without a key) at the same endpoint.
    let composer = GcsComposer::new(
        endpoint.unwrap_or(DEFAULT_BASE_URL),
        config.bucket.as_deref().unwrap_or_default(),
        (!anonymous).then(|| store.credentials().clone()),
    );
    let backend = ObjectBackend::new(
        "gcs",
        store.clone(),
        config.rootdirectory.as_deref().unwrap_or_default(),
    )
    .with_part_size(part_size(config.chunksize()))
    .with_composer(Arc::new(composer));
    // Signed URLs need a key (a service account's, or the IAM signBlob API through the
    // machine's account); an emulator without one streams instead.
    let can_sign = configured_key || endpoint.is_none();
    Ok(if can_sign {
        backend.with_signer(store)
    } else {
        backend
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosts() {
        assert!(virtual_host_capable("https://s3.example.com"));
        assert!(virtual_host_capable("http://minio.internal:9000/"));
        assert!(!virtual_host_capable("http://127.0.0.1:9000"));
        assert!(!virtual_host_capable("http://localhost:9000"));
        assert!(!virtual_host_capable("http://[::1]:9000"));
    }

    #[test]
    fn builds_without_network() {
        let s3: S3Config =
            serde_norway::from_str("bucket: b\nregionendpoint: http://127.0.0.1:1\naccesskey: a\nsecretkey: s\nstorageclass: STANDARD\n")
                .unwrap();
        let b = super::s3(&s3).unwrap();
        assert_eq!(crate::blobs::BlobBackend::min_chunk_len(&b), S3_MIN_PART);
        let az: AzureConfig = serde_norway::from_str(
            "accountname: devstoreaccount1\naccountkey: Zm9v\ncontainer: c\nendpoint: http://127.0.0.1:1/devstoreaccount1\n",
        )
        .unwrap();
        azure(&az).unwrap();
        let g: GcsConfig =
            serde_norway::from_str("bucket: b\nendpoint: http://127.0.0.1:1\n").unwrap();
        gcs(&g).unwrap();
        let g: GcsConfig =
            serde_norway::from_str("bucket: b\nkeyfile: /nonexistent/key.json\n").unwrap();
        match gcs(&g) {
            Err(e) => assert_eq!(e.key, "storage.gcs.keyfile"),
            Ok(_) => panic!("a missing key file was accepted"),
        }
    }
}
