//! `http.tls`: HTTPS with rustls — the certificate and key files, client CAs (mutual
//! TLS), the minimum version and the cipher suites, named as Go names them.

use serde::Deserialize;

use crate::config::ConfigError;

/// `http.tls`: HTTPS with rustls.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file: the server's certificate, then its chain.
    #[serde(default)]
    pub certificate: Option<String>,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key: Option<String>,
    /// PEM files of the CAs whose client certificates are required (mutual TLS).
    #[serde(default)]
    pub clientcas: Vec<String>,
    /// `tls1.2` (the default) or `tls1.3`; rustls has no TLS 1.0 or 1.1.
    #[serde(default)]
    pub minimumtls: Option<String>,
    /// Cipher suites by their IANA (Go) names; TLS 1.3 suites stay all enabled when
    /// none is named, as in Go.
    #[serde(default)]
    pub ciphersuites: Vec<String>,
    /// ACME: refused (Wharf obtains no certificates).
    #[serde(default)]
    pub letsencrypt: Option<serde_norway::Value>,
}

/// `http.tls.minimumtls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinimumTls {
    Tls12,
    Tls13,
}

impl TlsConfig {
    pub fn minimum(&self) -> Result<MinimumTls, ConfigError> {
        match self
            .minimumtls
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("tls1.2") => Ok(MinimumTls::Tls12),
            Some("tls1.3") => Ok(MinimumTls::Tls13),
            Some(v @ ("tls1.0" | "tls1.1")) => Err(ConfigError::key(
                "http.tls.minimumtls",
                format!(
                    "{v} is not supported (rustls speaks TLS 1.2 and 1.3): use tls1.2 or tls1.3"
                ),
            )),
            Some(v) => Err(ConfigError::key(
                "http.tls.minimumtls",
                format!("{v:?} is not a TLS version (tls1.2 or tls1.3)"),
            )),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.letsencrypt.is_some() {
            return Err(ConfigError::key(
                "http.tls.letsencrypt",
                "Wharf does not obtain certificates (no ACME): get one with certbot, \
                 cert-manager or your load balancer and name its files in \
                 http.tls.certificate and http.tls.key",
            ));
        }
        for key in ["certificate", "key"] {
            let v = if key == "key" {
                &self.key
            } else {
                &self.certificate
            };
            if v.as_deref().is_none_or(|v| v.trim().is_empty()) {
                return Err(ConfigError::key(
                    format!("http.tls.{key}"),
                    "required with http.tls (a PEM file)",
                ));
            }
        }
        self.minimum()?;
        self.cipher_suites()?;
        Ok(())
    }

    /// The enabled cipher suites (rustls' ring provider's, in its order of preference):
    /// those named in `ciphersuites` for the TLS versions they name, every suite of a
    /// version none is named for, only TLS 1.3's with `minimumtls: tls1.3`.
    pub fn cipher_suites(&self) -> Result<Vec<rustls::SupportedCipherSuite>, ConfigError> {
        let all = rustls::crypto::ring::ALL_CIPHER_SUITES;
        let mut named = Vec::new();
        for (i, name) in self.ciphersuites.iter().enumerate() {
            let wanted = go_suite_name(name);
            let Some(suite) = all
                .iter()
                .find(|s| go_suite_name(&format!("{:?}", s.suite())) == wanted)
            else {
                let known: Vec<String> = all.iter().map(|s| format!("{:?}", s.suite())).collect();
                return Err(ConfigError::key(
                    format!("http.tls.ciphersuites[{i}]"),
                    format!(
                        "{name:?} is not a cipher suite rustls offers (it has {})",
                        known.join(", ")
                    ),
                ));
            };
            named.push(*suite);
        }
        let is13 =
            |s: &rustls::SupportedCipherSuite| matches!(s, rustls::SupportedCipherSuite::Tls13(_));
        let named13 = named.iter().any(is13);
        let named12 = named.iter().any(|s| !is13(s));
        let mut suites: Vec<_> = all
            .iter()
            .filter(|s| {
                if is13(s) {
                    !named13 || named.contains(s)
                } else {
                    !named12 || named.contains(s)
                }
            })
            .copied()
            .collect();
        if self.minimum()? == MinimumTls::Tls13 {
            suites.retain(is13);
            if named12 && !named13 {
                return Err(ConfigError::key(
                    "http.tls.ciphersuites",
                    "names only TLS 1.2 suites, but http.tls.minimumtls is tls1.3",
                ));
            }
        }
        Ok(suites)
    }
}

/// A cipher suite's name as Go (and so distribution's files) writes it: rustls'
/// `TLS13_AES_128_GCM_SHA256` is Go's `TLS_AES_128_GCM_SHA256`, and Go's ChaCha20 names
/// may omit the `_SHA256`.
fn go_suite_name(name: &str) -> String {
    let n = name.trim().to_ascii_uppercase();
    let n = n
        .strip_prefix("TLS13_")
        .map_or(n.clone(), |r| format!("TLS_{r}"));
    n.strip_suffix("_POLY1305_SHA256")
        .map_or(n.clone(), |r| format!("{r}_POLY1305"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(yaml: &str) -> TlsConfig {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn go_cipher_suite_names_match_rustls() {
        assert_eq!(
            go_suite_name("TLS13_AES_128_GCM_SHA256"),
            go_suite_name("TLS_AES_128_GCM_SHA256")
        );
        assert_eq!(
            go_suite_name("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
            go_suite_name("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305")
        );
        // Only the named TLS 1.2 suite, and every TLS 1.3 one.
        let suites = tls("ciphersuites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]")
            .cipher_suites()
            .unwrap();
        let tls12: Vec<_> = suites
            .iter()
            .filter(|s| matches!(s, rustls::SupportedCipherSuite::Tls12(_)))
            .collect();
        assert_eq!(tls12.len(), 1);
        assert_eq!(suites.len(), 1 + 3);
        // minimumtls: tls1.3 drops TLS 1.2's, and refuses a list of TLS 1.2 suites only.
        let only13 = tls("minimumtls: tls1.3").cipher_suites().unwrap();
        assert!(only13
            .iter()
            .all(|s| matches!(s, rustls::SupportedCipherSuite::Tls13(_))));
        let e = tls("minimumtls: tls1.3\nciphersuites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]")
            .cipher_suites()
            .unwrap_err();
        assert!(e.to_string().contains("http.tls.ciphersuites"), "{e}");
        let e = tls("ciphersuites: [TLS_RSA_WITH_AES_128_CBC_SHA]")
            .cipher_suites()
            .unwrap_err();
        assert!(e.to_string().contains("http.tls.ciphersuites[0]"), "{e}");
    }
}
