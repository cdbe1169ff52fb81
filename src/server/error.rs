//! Why the server could not start: one error for every start-up step (configuration,
//! stores, listeners, runtime), each saying what failed and, for a port, what to do.

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error("metadata store: {0}")]
    Metadata(#[from] crate::metadata::MetadataError),
    #[error("metadata cache: {0}")]
    Cache(#[from] crate::cache::CacheError),
    #[error("blob storage at {path}: {source}")]
    Storage {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    #[error("pull-through cache: {0}")]
    Proxy(String),
    #[error("trust: {0}")]
    Trust(String),
    #[error("cannot listen on {addr}: {source}{}", listen_hint(.source))]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// What to do about a port that cannot be bound.
fn listen_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another process has it: stop it, or choose another address with http.addr \
             or REGISTRY_HTTP_ADDR)"
        }
        std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
        _ => "",
    }
}
