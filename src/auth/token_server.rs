//! The built-in token server's grants (served at `/auth/token` by
//! `http::handlers::token`):
//!
//! - `GET ?service=&scope=…[&offline_token=true]`, Basic credentials optional (none:
//!   anonymous), as Docker's token flow does it;
//! - `POST` (form) with OAuth2 `grant_type=password` (`username`, `password`) or
//!   `grant_type=refresh_token` (`refresh_token`).
//!
//! The answer is `{"token","access_token","expires_in","issued_at"[,"refresh_token"]}`.
//! A token carries every action the policy allows the subject on each repository the
//! request names (clients reuse a pull token to push). Tokens are signed with the
//! configured key, so every instance sharing the configuration accepts them. Refresh
//! tokens are JWTs too, with the audience `<service>#refresh`, so they are never
//! accepted as access tokens.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::access_policy::AccessPolicy;
use super::htpasswd::Htpasswd;
use super::token::{Family, PublicKey, ResourceActions};
use super::{Action, AuthSetupError};
use crate::config::{TokenConfig, TokenServerConfig};

pub struct TokenServer {
    users: Arc<Htpasswd>,
    service: String,
    issuer: String,
    kid: String,
    algorithm: Algorithm,
    signing: EncodingKey,
    public: Arc<PublicKey>,
    expiration: u64,
    refresh_expiration: u64,
    policy: AccessPolicy,
}

#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<ResourceActions>,
}

#[derive(Deserialize)]
struct RefreshClaims {
    sub: String,
}

fn setup(message: impl Into<String>) -> AuthSetupError {
    AuthSetupError {
        key: "auth.tokenserver.key",
        message: message.into(),
    }
}

/// RFC 3339 UTC time for `issued_at`.
fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Loads a PEM private key: PKCS#8 P-256 (ES256), PKCS#8 or PKCS#1 RSA (RS256).
fn load_key(pem_bytes: &[u8]) -> Result<(Algorithm, EncodingKey, PublicKey), String> {
    use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let block = pem::parse(pem_bytes).map_err(|e| format!("not PEM: {e}"))?;
    let der = block.contents();
    let rng = ring::rand::SystemRandom::new();
    match block.tag() {
        "PRIVATE KEY" => {
            if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            {
                let public = PublicKey::ec(Family::P256, pair.public_key().as_ref())?;
                return Ok((Algorithm::ES256, EncodingKey::from_ec_der(der), public));
            }
            let pair = RsaKeyPair::from_pkcs8(der)
                .map_err(|e| format!("neither a P-256 nor an RSA PKCS#8 key: {e}"))?;
            let public = rsa_public(pair.public_key().as_ref())?;
            let signing = EncodingKey::from_rsa_pem(pem_bytes).map_err(|e| e.to_string())?;
            Ok((Algorithm::RS256, signing, public))
        }
        "RSA PRIVATE KEY" => {
            let pair = RsaKeyPair::from_der(der).map_err(|e| format!("bad RSA key: {e}"))?;
            let public = rsa_public(pair.public_key().as_ref())?;
            Ok((Algorithm::RS256, EncodingKey::from_rsa_der(der), public))
        }
        other => Err(format!(
            "a {other:?} PEM block; expected a PKCS#8 \"PRIVATE KEY\" (P-256 or RSA) or an \"RSA PRIVATE KEY\""
        )),
    }
}

/// A PKCS#1 RSAPublicKey (DER) as a [`PublicKey`].
fn rsa_public(der: &[u8]) -> Result<PublicKey, String> {
    use x509_parser::prelude::FromDer as _;
    let (_, key) = x509_parser::public_key::RSAPublicKey::from_der(der)
        .map_err(|_| "malformed RSA public key".to_string())?;
    Ok(PublicKey::rsa(key.modulus, key.exponent))
}

/// One requested scope, `type:name:actions` (`type` may carry a `(class)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub kind: String,
    pub name: String,
}

pub fn parse_scope(s: &str) -> Option<Scope> {
    let (kind, rest) = s.split_once(':')?;
    let (name, _actions) = rest.rsplit_once(':')?;
    let kind = kind.split('(').next().unwrap_or(kind);
    (!name.is_empty()).then(|| Scope {
        kind: kind.to_string(),
        name: name.to_string(),
    })
}

/// A token response.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub access_token: String,
    pub expires_in: u64,
    pub issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl TokenServer {
    pub fn new(
        config: &TokenServerConfig,
        token: &TokenConfig,
        users: Arc<Htpasswd>,
    ) -> Result<TokenServer, AuthSetupError> {
        let bytes =
            std::fs::read(&config.key).map_err(|e| setup(format!("{}: {e}", config.key)))?;
        let (algorithm, signing, public) =
            load_key(&bytes).map_err(|e| setup(format!("{}: {e}", config.key)))?;
        let kid = config
            .kid
            .clone()
            .unwrap_or_else(|| public.thumbprint.clone());
        Ok(TokenServer {
            users,
            service: token.service.clone(),
            issuer: token.issuer.clone(),
            kid,
            algorithm,
            signing,
            public: Arc::new(public),
            expiration: config.expiration,
            refresh_expiration: config.refreshexpiration,
            policy: AccessPolicy::from_config(config),
        })
    }

    /// The (kid, key) the registry must trust for this server's tokens.
    pub fn public_key(&self) -> (String, Arc<PublicKey>) {
        (self.kid.clone(), self.public.clone())
    }

    fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signing)
    }

    /// May `subject` (`None`: anonymous) pull `repository` under the access policy?
    pub fn may_pull(&self, subject: Option<&str>, repository: &str) -> bool {
        self.policy
            .repository_actions(subject, repository)
            .contains(&Action::Pull)
    }

    /// What `subject` may do on the requested scopes.
    pub fn access(&self, subject: Option<&str>, scopes: &[Scope]) -> Vec<ResourceActions> {
        let mut out: Vec<ResourceActions> = Vec::new();
        for scope in scopes {
            if out
                .iter()
                .any(|a| a.kind == scope.kind && a.name == scope.name)
            {
                continue;
            }
            let actions: Vec<String> = match scope.kind.as_str() {
                "repository" => {
                    let allowed: BTreeSet<Action> =
                        self.policy.repository_actions(subject, &scope.name);
                    allowed.iter().map(|a| a.as_str().to_string()).collect()
                }
                "registry" if scope.name == "catalog" && self.policy.catalog(subject) => {
                    vec!["*".into()]
                }
                "registry" if scope.name == "quota" && self.policy.quotas(subject) => {
                    vec!["read".into(), "write".into()]
                }
                _ => Vec::new(),
            };
            if !actions.is_empty() {
                out.push(ResourceActions {
                    kind: scope.kind.clone(),
                    name: scope.name.clone(),
                    actions,
                });
            }
        }
        out
    }

    /// Issues an access token (and a refresh token if asked and authenticated).
    pub fn issue(
        &self,
        subject: Option<&str>,
        scopes: &[Scope],
        refresh: bool,
    ) -> Result<TokenResponse, jsonwebtoken::errors::Error> {
        let now = now();
        let claims = AccessClaims {
            iss: &self.issuer,
            sub: subject.unwrap_or(""),
            aud: &self.service,
            exp: now + self.expiration,
            nbf: now.saturating_sub(1),
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access: self.access(subject, scopes),
        };
        let token = self.sign(&claims)?;
        let refresh_token = match (refresh, subject) {
            (true, Some(user)) => {
                let aud = format!("{}#refresh", self.service);
                Some(self.sign(&AccessClaims {
                    iss: &self.issuer,
                    sub: user,
                    aud: &aud,
                    exp: now + self.refresh_expiration,
                    nbf: now.saturating_sub(1),
                    iat: now,
                    jti: uuid::Uuid::new_v4().simple().to_string(),
                    access: Vec::new(),
                })?)
            }
            _ => None,
        };
        Ok(TokenResponse {
            access_token: token.clone(),
            token,
            expires_in: self.expiration,
            issued_at: rfc3339(now),
            refresh_token,
        })
    }

    /// The user a refresh token was issued to, if it is valid and the user still exists.
    fn refresh_subject(&self, token: &str) -> Option<String> {
        let mut validation = Validation::new(self.algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[format!("{}#refresh", self.service)]);
        validation.leeway = 5;
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.kid.as_deref() != Some(self.kid.as_str()) || header.alg != self.algorithm {
            return None;
        }
        let data =
            jsonwebtoken::decode::<RefreshClaims>(token, &self.public_key_decoding(), &validation)
                .ok()?;
        let user = data.claims.sub;
        self.users.has_user(&user).then_some(user)
    }

    fn public_key_decoding(&self) -> jsonwebtoken::DecodingKey {
        self.public.decoding_key().clone()
    }

    /// Answers a token request: checks the service and the grant's credentials, then
    /// issues a token with what the policy allows the subject on the scopes asked for.
    pub async fn grant(
        self: &Arc<Self>,
        request: TokenRequest,
    ) -> Result<TokenResponse, TokenRequestError> {
        if request
            .service
            .as_deref()
            .is_some_and(|s| s != self.service)
        {
            return Err(TokenRequestError::UnknownService);
        }
        let (subject, refresh) = match request.grant {
            TokenGrant::Anonymous => (None, false),
            TokenGrant::Basic { password, .. } if super::htpasswd::password_too_long(&password) => {
                return Err(TokenRequestError::PasswordTooLong);
            }
            TokenGrant::Basic {
                user,
                password,
                offline,
            } => match self.verify(user, password).await {
                Some(user) => (Some(user), offline),
                None => return Err(TokenRequestError::BadCredentials),
            },
            TokenGrant::Password { password, .. }
                if super::htpasswd::password_too_long(&password) =>
            {
                return Err(TokenRequestError::InvalidGrant(super::TOO_LONG));
            }
            TokenGrant::Password {
                user,
                password,
                offline,
            } => match self.verify(user, password).await {
                Some(user) => (Some(user), offline),
                None => {
                    return Err(TokenRequestError::InvalidGrant(
                        "invalid username or password",
                    ))
                }
            },
            TokenGrant::Refresh { token } => match self.refresh_subject(&token) {
                Some(user) => (Some(user), true),
                None => return Err(TokenRequestError::InvalidGrant("invalid refresh token")),
            },
        };
        Ok(self.issue(subject.as_deref(), &request.scopes, refresh)?)
    }

    /// The user if the password is theirs (bcrypt, off the async workers).
    async fn verify(self: &Arc<Self>, user: String, password: String) -> Option<String> {
        if super::htpasswd::password_too_long(&password) {
            return None;
        }
        let server = self.clone();
        tokio::task::spawn_blocking(move || server.users.verify(&user, &password).then_some(user))
            .await
            .ok()
            .flatten()
    }
}

/// What a token request asks for, parsed from the HTTP request by the HTTP layer.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// `service=`: must be this registry's when given.
    pub service: Option<String>,
    pub scopes: Vec<Scope>,
    pub grant: TokenGrant,
}

/// How the caller authenticates.
#[derive(Debug, Clone)]
pub enum TokenGrant {
    /// `GET` without credentials.
    Anonymous,
    /// `GET` with Basic credentials; `offline`: `offline_token=true`.
    Basic {
        user: String,
        password: String,
        offline: bool,
    },
    /// OAuth2 `grant_type=password`; `offline`: `access_type=offline`.
    Password {
        user: String,
        password: String,
        offline: bool,
    },
    /// OAuth2 `grant_type=refresh_token`.
    Refresh { token: String },
}

/// Why no token was issued.
#[derive(Debug, thiserror::Error)]
pub enum TokenRequestError {
    /// `service=` names another registry.
    #[error("unknown service")]
    UnknownService,
    /// Basic credentials (Docker's token flow) that do not verify.
    #[error("invalid username or password")]
    BadCredentials,
    /// Basic credentials with a password bcrypt cannot check in full.
    #[error("{}", super::TOO_LONG)]
    PasswordTooLong,
    /// A malformed request (OAuth2 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// An OAuth2 grant whose credentials do not verify (`invalid_grant`).
    #[error("{0}")]
    InvalidGrant(&'static str),
    #[error("grant_type must be password or refresh_token")]
    UnsupportedGrant,
    #[error("cannot sign a token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_times() {
        assert_eq!(
            parse_scope("repository:team-a/app:pull,push"),
            Some(Scope {
                kind: "repository".into(),
                name: "team-a/app".into()
            })
        );
        assert_eq!(
            parse_scope("repository(plugin):x:pull").map(|s| s.kind),
            Some("repository".into())
        );
        assert_eq!(
            parse_scope("registry:catalog:*").map(|s| s.name),
            Some("catalog".into())
        );
        assert_eq!(parse_scope("nonsense"), None);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }
}
