//! The start-up lines that say what the server runs on: blob storage, metadata
//! database (its URL without the password), cache, auth and notifications.

use crate::config::{Config, StorageDriver};

/// `storage` for the start-up line: the backend and where its bytes live.
pub(super) fn describe_storage(config: &Config) -> (&'static str, String) {
    match config.storage.driver() {
        StorageDriver::Filesystem { rootdirectory } => {
            let shown = std::path::absolute(&rootdirectory)
                .map(|p| p.display().to_string())
                .unwrap_or(rootdirectory);
            ("filesystem", shown)
        }
        StorageDriver::InMemory => ("inmemory", "this process's memory (lost on exit)".into()),
        StorageDriver::S3(s3) => {
            let mut at = format!(
                "bucket {} in {}",
                s3.bucket.as_deref().unwrap_or("?"),
                s3.region()
            );
            if let Some(endpoint) = s3.endpoint() {
                at.push_str(&format!(" at {endpoint}"));
            }
            if let Some(root) = &s3.rootdirectory {
                at.push_str(&format!(", under {root}"));
            }
            ("s3", at)
        }
        StorageDriver::Azure(az) => {
            let mut at = format!(
                "container {} at {}",
                az.container.as_deref().unwrap_or("?"),
                az.endpoint()
            );
            if let Some(root) = &az.rootdirectory {
                at.push_str(&format!(", under {root}"));
            }
            ("azure", at)
        }
        StorageDriver::Gcs(gcs) => {
            let mut at = format!("bucket {}", gcs.bucket.as_deref().unwrap_or("?"));
            if let Some(endpoint) = &gcs.endpoint {
                at.push_str(&format!(" at {endpoint}"));
            }
            if let Some(root) = &gcs.rootdirectory {
                at.push_str(&format!(", under {root}"));
            }
            ("gcs", at)
        }
    }
}

/// `database` for the start-up line: the engine and the URL without its password.
pub(super) fn describe_database(config: &Config) -> (&'static str, String) {
    let url = &config.database.url;
    if url.starts_with("sqlite:") {
        let path = crate::metadata::sqlite_path(url).unwrap_or_else(|| url.clone().into());
        let shown = std::path::absolute(&path).unwrap_or(path);
        (
            "sqlite",
            format!("{} (one instance per file)", shown.display()),
        )
    } else {
        ("postgres", redact(url))
    }
}

/// `storage.cache` for the start-up line.
pub(super) fn describe_cache(config: &Config) -> String {
    let cache = &config.storage.cache;
    let ttl = humantime::format_duration(cache.ttl);
    match cache.blobdescriptor {
        None => "none".into(),
        Some(crate::config::CacheKind::Inmemory) => {
            format!("in this process, entries live at most {ttl}")
        }
        Some(crate::config::CacheKind::Redis) => {
            let addrs = config
                .redis
                .as_ref()
                .map(|r| {
                    let mut a = r.addrs.clone();
                    a.extend(r.addr.clone());
                    a.join(", ")
                })
                .unwrap_or_default();
            format!("redis at {addrs}, entries live at most {ttl}")
        }
    }
}

/// `notifications` for the start-up line: each enabled endpoint, by name and URL.
pub(super) fn describe_notifications(config: &Config) -> String {
    let endpoints: Vec<String> = config
        .notifications
        .enabled()
        .map(|e| format!("{} ({})", e.name, e.url))
        .collect();
    if endpoints.is_empty() {
        "none".into()
    } else {
        format!("{} endpoint(s): {}", endpoints.len(), endpoints.join(", "))
    }
}

/// `auth` for the start-up line.
pub(super) fn describe_auth(config: &Config) -> String {
    let auth = &config.auth;
    match (&auth.token, &auth.htpasswd) {
        (Some(token), _) => {
            let mut s = format!(
                "token (realm {}, service {}, issuer {})",
                token.realm, token.service, token.issuer
            );
            if let (Some(_), Some(h)) = (&auth.tokenserver, &auth.htpasswd) {
                s.push_str(&format!(
                    "; built-in token server at /auth/token, users from {}",
                    h.path
                ));
            }
            s
        }
        (None, Some(h)) => format!("htpasswd (Basic), users from {}", h.path),
        (None, None) => "none: anyone who can reach the port has full access".into(),
    }
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
