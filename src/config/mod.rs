//! Configuration: one YAML file whose keys follow distribution's `config.yml` where the
//! concept is the same, every key overridable by a `REGISTRY_…` environment variable
//! (`REGISTRY_HTTP_ADDR` → `http.addr`). Unknown keys and bad values are refused at
//! start-up with a message naming the key. With no file at all, the embedded default:
//! 127.0.0.1:5000, filesystem blobs and SQLite metadata under `./wharf-data`.

use std::path::Path;

use serde::Deserialize;

mod auth;
mod cache;
mod cloud;
mod database;
mod duration;
mod env;
mod gc;
mod health;
mod http;
mod log;
mod maintenance;
mod middleware;
mod notifications;
mod proxy;
mod quotas;
mod storage;
mod trust;
mod validation;

pub use auth::{AccessRule, AuthConfig, HtpasswdConfig, TokenConfig, TokenServerConfig};
pub use cache::{CacheConfig, CacheKind, RedisConfig, RedisTlsConfig};
pub use cloud::{AzureConfig, GcsConfig, GcsCredentials, S3Config, Secret};
pub use database::{BreakerConfig, DatabaseConfig};
pub use duration::ConfigDuration;
pub use env::IgnoredVariable;
pub use gc::{GcConfig, OrphanSweepConfig, RetentionPolicyConfig};
pub use health::{FileCheck, HealthConfig, HttpCheck, StorageDriverCheck, TcpCheck};
pub use http::{DebugConfig, Http2Config, HttpConfig, MinimumTls, PrometheusConfig, TlsConfig};
pub use log::{AccessLogConfig, LogConfig, LogFormatter, LogLevel};
/// `health`'s defaults (distribution's): 10 s between checks, 1 s timeouts.
pub mod health_defaults {
    pub use super::health::{interval, timeout};
}
pub use maintenance::{MaintenanceConfig, ReadOnlyConfig, UploadPurgingConfig};
pub use middleware::{CloudFrontOptions, IpFilteredBy, MiddlewareConfig, StorageMiddleware};
pub use notifications::{
    EndpointConfig, EventFormat, EventsConfig, IgnoreConfig, NotificationsConfig, EVENTS_V1,
    EVENTS_V2,
};
pub use proxy::{ByteSize, Password, ProxyConfig, Upstream, UpstreamConfig};
pub use quotas::QuotasConfig;
pub use storage::{StorageConfig, StorageDriver};
pub use trust::{IdentityCheck, TrustAction, TrustConfig, TrustKeys, TrustPolicyConfig};
pub use validation::ValidationConfig;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file is not valid YAML: {0}")]
    Yaml(String),
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

impl ConfigError {
    pub fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Accepted for compatibility with distribution's files (`0.1`).
    #[serde(default)]
    pub version: Option<serde_norway::Value>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    /// The shared cache's server(s), for `storage.cache.blobdescriptor: redis`.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    #[serde(default)]
    pub middleware: MiddlewareConfig,
    #[serde(default)]
    pub validation: ValidationConfig,
    /// Retention policies (a Wharf key), applied by the garbage collector.
    #[serde(default)]
    pub retention: Vec<RetentionPolicyConfig>,
    /// `REGISTRY_*` variables that named no key and were ignored (not a key of the
    /// file: filled in by [`Config::load`]).
    #[serde(skip)]
    pub ignored_variables: Vec<IgnoredVariable>,
    /// Webhook endpoints for registry events.
    #[serde(default)]
    pub notifications: NotificationsConfig,
    /// The pull-through cache (`proxy`).
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// distribution's health checks.
    #[serde(default)]
    pub health: HealthConfig,
    /// Storage quotas (a Wharf key).
    #[serde(default)]
    pub quotas: QuotasConfig,
    /// Trust policies: signatures required to pull by tag (`trust`).
    #[serde(default)]
    pub trust: TrustConfig,
}

impl Config {
    /// Loads `path` (or nothing), applies `REGISTRY_*` overrides from `vars`, validates.
    pub fn load(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut tree = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                let value: serde_norway::Value =
                    serde_norway::from_str(&text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
                if value.is_null() {
                    serde_norway::Value::Mapping(Default::default())
                } else {
                    value
                }
            }
            None => serde_norway::Value::Mapping(Default::default()),
        };
        let ignored_variables = env::apply_overrides(&mut tree, vars)?;
        let mut config = Self::from_tree(tree)?;
        config.ignored_variables = ignored_variables;
        Ok(config)
    }

    /// Deserializes and validates a YAML tree.
    pub fn from_tree(tree: serde_norway::Value) -> Result<Config, ConfigError> {
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            // serde names the unknown field itself; keep the path to its parent.
            ConfigError::key(
                if path == "." {
                    "(top level)".into()
                } else {
                    path
                },
                message,
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate()?;
        self.storage.validate()?;
        self.storage.gc.validate(self.storage.delete.enabled)?;
        gc::validate_retention(&self.retention, self.storage.delete.enabled)?;
        cache::validate(&self.storage.cache, self.redis.as_ref())?;
        self.auth.validate()?;
        self.trust.validate()?;
        self.validation.validate()?;
        self.notifications.validate()?;
        self.middleware.validate(self.storage.s3.is_some())?;
        self.proxy.validate()?;
        self.health.validate()?;
        self.quotas.validate()?;
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            return Err(ConfigError::key(
                "database.url",
                format!("{url:?} is neither sqlite:… nor postgres://…"),
            ));
        }
        if self.database.maxconnections == 0 {
            return Err(ConfigError::key(
                "database.maxconnections",
                "must be at least 1",
            ));
        }
        database::validate(self.database.acquiretimeout, &self.database.breaker)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yml");
        std::fs::write(&path, yaml).unwrap();
        Config::load(
            Some(&path),
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn embedded_default() {
        let c = Config::load(None, Vec::new()).unwrap();
        assert_eq!(c.http.addr, "127.0.0.1:5000");
        assert!(matches!(
            c.storage.driver(),
            StorageDriver::Filesystem { .. }
        ));
        assert!(c.storage.delete.enabled);
        assert_eq!(c.database.url, "sqlite://./wharf-data/wharf.db");
    }

    #[test]
    fn distribution_style_file_and_env_overrides() {
        let c = load(
            "version: 0.1\nhttp:\n  addr: :5001\nstorage:\n  filesystem:\n    rootdirectory: /tmp/x\n  delete:\n    enabled: false\n",
            &[("REGISTRY_HTTP_ADDR", "127.0.0.1:6000"), ("REGISTRY_STORAGE_DELETE_ENABLED", "true")],
        )
        .unwrap();
        assert_eq!(c.http.addr, "127.0.0.1:6000");
        assert!(c.storage.delete.enabled);
        match c.storage.driver() {
            StorageDriver::Filesystem { rootdirectory } => assert_eq!(rootdirectory, "/tmp/x"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn container_client_variables_are_not_registry_keys() {
        // podman/skopeo/buildah's credentials file; must not stop start-up.
        let c = load("", &[("REGISTRY_AUTH_FILE", "/run/containers/auth.json")]).unwrap();
        assert_eq!(c.http.addr, "127.0.0.1:5000");
        assert_eq!(c.ignored_variables.len(), 1);
        assert_eq!(c.ignored_variables[0].name, "REGISTRY_AUTH_FILE");
    }

    #[test]
    fn variables_that_name_no_key_are_ignored_and_reported() {
        let c = load(
            "http:\n  addr: 127.0.0.1:5001\n",
            &[
                ("REGISTRY_URL", "http://x"),
                ("REGISTRY_HTTP_NOPE", "1"),
                ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIR", "/x"),
                ("REGISTRY_HTTP_ADDR", "127.0.0.1:6000"),
                ("REGISTRY_LOG_FIELDS_SERVICE", "registry"),
                ("REGISTRY_HTTP_HEADERS_X-TEAM", "[a]"),
            ],
        )
        .unwrap();
        assert_eq!(c.http.addr, "127.0.0.1:6000");
        assert!(c.http.headers.contains_key("x-team"));
        let ignored: Vec<(&str, &str)> = c
            .ignored_variables
            .iter()
            .map(|v| (v.name.as_str(), v.reason.as_str()))
            .collect();
        assert_eq!(
            ignored,
            [
                (
                    "REGISTRY_HTTP_NOPE",
                    "`http.nope` is not a configuration key"
                ),
                (
                    "REGISTRY_STORAGE_FILESYSTEM_ROOTDIR",
                    "`storage.filesystem.rootdir` is not a configuration key"
                ),
                ("REGISTRY_URL", "`url` is not a configuration key"),
            ]
        );
        // A variable naming a real key with a bad value is refused, as in the file.
        let e = load("", &[("REGISTRY_HTTP_ADDR", "nonsense")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.addr"), "{e}");
        let e = load("", &[("REGISTRY_LOG_LEVEL", "loud")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.level") && e.contains("loud"), "{e}");
        // A value that is a section with an unknown key is a bad value, not a stray name.
        let e = load("", &[("REGISTRY_HTTP", "{adr: x}")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("adr"), "{e}");
        // Unknown keys in the file stay fatal.
        let e = load("url: http://x\n", &[]).unwrap_err().to_string();
        assert!(e.contains("url"), "{e}");
    }

    #[test]
    fn log_keys_are_checked() {
        let c = Config::load(None, Vec::new()).unwrap();
        assert_eq!(c.log.level, LogLevel::Info);
        assert_eq!(c.log.formatter, LogFormatter::Text);
        let c = load(
            "log:\n  level: DEBUG\n  formatter: logstash\n  fields:\n    service: registry\n  accesslog:\n    disabled: true\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.log.level, LogLevel::Debug);
        assert!(c.log.formatter.is_json());
        assert!(c.log.accesslog.disabled);
        for level in ["error", "warn", "info", "debug", "trace"] {
            let c = load(&format!("log:\n  level: {level}\n"), &[]).unwrap();
            assert_eq!(c.log.level.as_str(), level);
        }
        for (yaml, key, word) in [
            ("log:\n  level: loud\n", "log.level", "loud"),
            ("log:\n  level: warning\n", "log.level", "warning"),
            ("log:\n  level: 3\n", "log.level", "integer"),
            ("log:\n  formatter: xml\n", "log.formatter", "xml"),
            ("log:\n  fields: [a]\n", "log.fields", "sequence"),
            (
                "log:\n  accesslog:\n    disabled: sometimes\n",
                "log.accesslog.disabled",
                "sometimes",
            ),
            (
                "log:\n  accesslog:\n    formatter: json\n",
                "log.accesslog",
                "formatter",
            ),
            ("log:\n  output: stderr\n", "log", "output"),
        ] {
            let e = load(yaml, &[]).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(word), "{yaml:?}: {e}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = load("http:\n  adr: x\n", &[]).unwrap_err().to_string();
        assert!(e.contains("http") && e.contains("adr"), "{e}");
        let e = load("http:\n  addr: nonsense\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.addr"), "{e}");
        let e = load("storage:\n  delete:\n    enabled: maybe\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("storage.delete.enabled"), "{e}");
        let e = load("storage:\n  filesystem: {}\n  inmemory: {}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("storage"), "{e}");
        let e = load("database:\n  url: mysql://x\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("database.url"), "{e}");
        assert!(matches!(load("http: [", &[]), Err(ConfigError::Yaml(_))));
    }

    #[test]
    fn maintenance_keys() {
        let c = Config::load(None, Vec::new()).unwrap();
        let p = &c.storage.maintenance.uploadpurging;
        assert!(p.enabled && !p.dryrun);
        assert_eq!(p.age.0.as_secs(), 168 * 3600);
        assert_eq!(p.interval.0.as_secs(), 24 * 3600);
        assert!(!c.storage.maintenance.readonly.enabled);

        let c = load(
            "storage:\n  maintenance:\n    uploadpurging:\n      enabled: true\n      age: 72h\n      interval: 30m\n      dryrun: true\n    readonly:\n      enabled: true\n",
            &[("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED", "false")],
        )
        .unwrap();
        let p = &c.storage.maintenance.uploadpurging;
        assert!(!p.enabled && p.dryrun);
        assert_eq!(p.age.0.as_secs(), 72 * 3600);
        assert_eq!(p.interval.0.as_secs(), 1800);
        assert!(c.storage.maintenance.readonly.enabled);

        for (yaml, key) in [
            (
                "uploadpurging:\n  age: soon\n",
                "storage.maintenance.uploadpurging.age",
            ),
            (
                "uploadpurging:\n  age: 0s\n",
                "storage.maintenance.uploadpurging.age",
            ),
            (
                "uploadpurging:\n  interval: 0s\n",
                "storage.maintenance.uploadpurging.interval",
            ),
            (
                "uploadpurging:\n  enabled: perhaps\n",
                "storage.maintenance.uploadpurging.enabled",
            ),
            (
                "readonly:\n  enabled: 2\n",
                "storage.maintenance.readonly.enabled",
            ),
        ] {
            let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
            let e = load(&format!("storage:\n  maintenance:\n{indented}"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{yaml:?}: {e}");
        }
        let e = load("storage:\n  maintenance:\n    purging: {}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("purging"), "{e}");
    }

    #[test]
    fn s3_with_distribution_keys() {
        let c = load(
            "storage:\n  s3:\n    bucket: layers\n    region: eu-west-1\n    regionendpoint: minio:9000\n    secure: false\n    accesskey: AKIA\n    secretkey: hush\n    forcepathstyle: true\n    rootdirectory: /registry\n    chunksize: 5242880\n    storageclass: standard_ia\n    encrypt: true\n    keyid: arn:aws:kms:k\n    v4auth: true\n",
            &[],
        )
        .unwrap();
        let StorageDriver::S3(s3) = c.storage.driver() else {
            panic!("not s3")
        };
        assert_eq!(s3.bucket.as_deref(), Some("layers"));
        assert_eq!(s3.region(), "eu-west-1");
        assert_eq!(s3.endpoint().as_deref(), Some("http://minio:9000"));
        assert!(s3.forcepathstyle && s3.encrypt);
        assert_eq!(s3.chunksize(), 5 * 1024 * 1024);
        assert_eq!(s3.storage_class().as_deref(), Some("STANDARD_IA"));
        assert_eq!(s3.rootdirectory.as_deref(), Some("/registry"));
        let shown = format!("{s3:?}");
        assert!(!shown.contains("hush"), "secret in Debug output: {shown}");
    }

    #[test]
    fn s3_from_the_environment_alone() {
        let c = load(
            "",
            &[
                ("REGISTRY_STORAGE_S3_BUCKET", "2024"),
                (
                    "REGISTRY_STORAGE_S3_REGIONENDPOINT",
                    "http://127.0.0.1:9000",
                ),
                ("REGISTRY_STORAGE_S3_ACCESSKEY", "12345"),
                ("REGISTRY_STORAGE_S3_SECRETKEY", "true"),
                ("REGISTRY_STORAGE_S3_CHUNKSIZE", "6000000"),
            ],
        )
        .unwrap();
        let StorageDriver::S3(s3) = c.storage.driver() else {
            panic!("not s3")
        };
        assert_eq!(s3.bucket.as_deref(), Some("2024"));
        assert_eq!(s3.accesskey.as_deref(), Some("12345"));
        assert_eq!(s3.secretkey, Some(Secret("true".into())));
        assert_eq!(s3.region(), "us-east-1");
        assert_eq!(s3.chunksize(), 6_000_000);
        assert_eq!(s3.endpoint().as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s3.secure);
    }

    #[test]
    fn registry_storage_chooses_the_driver() {
        let c = load(
            "storage:\n  filesystem:\n    rootdirectory: /x\n  delete:\n    enabled: false\n",
            &[
                ("REGISTRY_STORAGE", "azure"),
                ("REGISTRY_STORAGE_AZURE_ACCOUNTNAME", "acct"),
                ("REGISTRY_STORAGE_AZURE_CONTAINER", "blobs"),
            ],
        )
        .unwrap();
        assert!(!c.storage.delete.enabled);
        let StorageDriver::Azure(az) = c.storage.driver() else {
            panic!("not azure")
        };
        assert_eq!(az.endpoint(), "https://acct.blob.core.windows.net");
        let e = load("", &[("REGISTRY_STORAGE", "ftp")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("REGISTRY_STORAGE") && e.contains("ftp"), "{e}");
    }

    #[test]
    fn azure_and_gcs() {
        let c = load(
            "storage:\n  azure:\n    accountname: devstoreaccount1\n    accountkey: Zm9vYmFy\n    container: wharf\n    endpoint: http://127.0.0.1:10000/devstoreaccount1/\n",
            &[],
        )
        .unwrap();
        let StorageDriver::Azure(az) = c.storage.driver() else {
            panic!("not azure")
        };
        assert_eq!(az.endpoint(), "http://127.0.0.1:10000/devstoreaccount1");
        assert!(!format!("{az:?}").contains("Zm9vYmFy"));

        let c = load(
            "storage:\n  gcs:\n    bucket: b\n    credentials:\n      type: service_account\n      private_key: sekrit\n    endpoint: http://127.0.0.1:4443\n",
            &[],
        )
        .unwrap();
        let StorageDriver::Gcs(gcs) = c.storage.driver() else {
            panic!("not gcs")
        };
        assert_eq!(gcs.endpoint.as_deref(), Some("http://127.0.0.1:4443"));
        assert!(!format!("{gcs:?}").contains("sekrit"));
    }

    #[test]
    fn cloud_errors_name_the_key() {
        let cases: [(&str, &str); 12] = [
            ("storage:\n  s3:\n    region: x\n", "storage.s3.bucket"),
            ("storage:\n  s3:\n    bucket: b\n    bukket: c\n", "bukket"),
            (
                "storage:\n  s3:\n    bucket: b\n    accesskey: a\n",
                "storage.s3.secretkey",
            ),
            (
                "storage:\n  s3:\n    bucket: b\n    chunksize: 1000\n",
                "storage.s3.chunksize",
            ),
            (
                "storage:\n  s3:\n    bucket: b\n    chunksize: [1]\n",
                "storage.s3.chunksize",
            ),
            (
                "storage:\n  s3:\n    bucket: b\n    storageclass: COLD\n",
                "storage.s3.storageclass",
            ),
            (
                "storage:\n  s3:\n    bucket: b\n    keyid: k\n",
                "storage.s3.keyid",
            ),
            (
                "storage:\n  s3:\n    bucket: b\n    regionendpoint: ftp://x.example\n",
                "storage.s3.regionendpoint",
            ),
            (
                "storage:\n  azure:\n    accountname: a\n",
                "storage.azure.container",
            ),
            (
                "storage:\n  azure:\n    accountname: a\n    container: c\n    accountkey: '%%%'\n",
                "storage.azure.accountkey",
            ),
            (
                "storage:\n  gcs:\n    bucket: b\n    keyfile: /k.json\n    credentials: {type: x}\n",
                "storage.gcs.credentials",
            ),
            ("storage:\n  gcs:\n    bucket: b\n  s3:\n    bucket: b\n", "s3 and gcs"),
        ];
        for (yaml, key) in cases {
            let e = load(yaml, &[]).unwrap_err().to_string();
            assert!(e.contains(key), "{yaml:?}: {e}");
        }
    }
}
