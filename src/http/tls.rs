//! HTTPS (`http.tls`): the rustls server configuration — versions, cipher suites,
//! client certificates — and a certificate resolver that re-reads the certificate and
//! key when their files change, so a rotated certificate is served without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, MinimumTls, TlsConfig};

/// How often, at most, a handshake looks at the files' modification times.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Builds the server's TLS configuration from `http.tls` (the files are read now: a
/// missing or bad file stops start-up naming its key). `http2`: offer `h2` in ALPN.
pub fn server_config(tls: &TlsConfig, http2: bool) -> Result<ServerConfig, ConfigError> {
    let provider = Arc::new(CryptoProvider {
        cipher_suites: tls.cipher_suites()?,
        ..rustls::crypto::ring::default_provider()
    });
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.minimum()? {
        MinimumTls::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinimumTls::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ConfigError::key("http.tls.ciphersuites", e.to_string()))?;
    let builder = if tls.clientcas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for (i, path) in tls.clientcas.iter().enumerate() {
            let key = format!("http.tls.clientcas[{i}]");
            for cert in read_certs(Path::new(path)).map_err(|e| ConfigError::key(&key, e))? {
                roots
                    .add(cert)
                    .map_err(|e| ConfigError::key(&key, format!("{path}: {e}")))?;
            }
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| ConfigError::key("http.tls.clientcas", e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    };
    let resolver = ReloadingCert::open(
        tls.certificate.as_deref().unwrap_or_default(),
        tls.key.as_deref().unwrap_or_default(),
        provider,
    )?;
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    // actix puts "h2" (when offered) and "http/1.1" before these itself.
    config.alpn_protocols = if http2 {
        Vec::new()
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// The certificate chain in a PEM file.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The modification time and length of a file, to notice a change.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Serves the certificate and key of two files, re-read when either changes. A
/// change that does not load (a half-written file, a key that does not match) is
/// logged and the previous pair is served until the files change again.
#[derive(Debug)]
pub struct ReloadingCert {
    certificate: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    current: Arc<CertifiedKey>,
    stamps: (Stamp, Stamp),
    checked: Instant,
}

impl ReloadingCert {
    /// Loads the pair (errors name `http.tls.certificate` or `http.tls.key`).
    pub fn open(
        certificate: &str,
        key: &str,
        provider: Arc<CryptoProvider>,
    ) -> Result<ReloadingCert, ConfigError> {
        let certificate = PathBuf::from(certificate);
        let key = PathBuf::from(key);
        let stamps = (stamp(&certificate), stamp(&key));
        let current = load(&certificate, &key, &provider)?;
        Ok(ReloadingCert {
            certificate,
            key,
            provider,
            state: Mutex::new(State {
                current: Arc::new(current),
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The pair to serve, re-read first if the files changed since the last look.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= CHECK_EVERY {
            state.checked = Instant::now();
            let stamps = (stamp(&self.certificate), stamp(&self.key));
            if stamps != state.stamps {
                state.stamps = stamps;
                let _span = tracing::info_span!("tls.reload").entered();
                match load(&self.certificate, &self.key, &self.provider) {
                    Ok(pair) => {
                        state.current = Arc::new(pair);
                        reloads().with_label_values(&["loaded"]).inc();
                        tracing::info!(
                            certificate = %self.certificate.display(),
                            "TLS certificate changed on disk: serving the new one"
                        );
                    }
                    Err(e) => {
                        reloads().with_label_values(&["failed"]).inc();
                        tracing::warn!(
                            "TLS certificate changed on disk but does not load ({e}): \
                             serving the previous one"
                        );
                    }
                }
            }
        }
        state.current.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn load(
    certificate: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, ConfigError> {
    let certs = read_certs(certificate).map_err(|e| ConfigError::key("http.tls.certificate", e))?;
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ConfigError::key("http.tls.key", format!("{}: {e}", key.display())))?;
    CertifiedKey::from_der(certs, private, provider).map_err(|e| {
        ConfigError::key(
            "http.tls.key",
            format!("{}: {e} (is it the certificate's key?)", key.display()),
        )
    })
}

/// `wharf_tls_certificate_reloads_total{result}`.
fn reloads() -> &'static prometheus::IntCounterVec {
    static C: OnceLock<prometheus::IntCounterVec> = OnceLock::new();
    C.get_or_init(|| {
        crate::telemetry::lazy_counter_vec(
            "tls_certificate_reloads_total",
            "Certificate files re-read after they changed, by result (loaded, failed)",
            &["result"],
        )
    })
}
