//! The built-in token server, `/auth/token`:
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
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::header::{AUTHORIZATION, CACHE_CONTROL, WWW_AUTHENTICATE};
use actix_web::{web, HttpRequest, HttpResponse};
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::htpasswd::Htpasswd;
use super::policy::Policy;
use super::token::{Family, PublicKey, ResourceActions};
use super::{Action, AuthSetupError};
use crate::config::{TokenConfig, TokenServerConfig};
use crate::http::AppState;

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
    policy: Policy,
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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 UTC time for `issued_at`.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
            policy: Policy::from_config(config),
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

    /// Requests naming another service get no token from us.
    fn check_service(&self, service: Option<&str>) -> Result<(), Box<HttpResponse>> {
        match service {
            Some(s) if s != self.service => Err(Box::new(oauth_error(
                actix_web::http::StatusCode::BAD_REQUEST,
                "invalid_request",
                "unknown service",
            ))),
            _ => Ok(()),
        }
    }
}

fn oauth_error(
    status: actix_web::http::StatusCode,
    error: &str,
    description: &str,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(json!({ "error": error, "error_description": description }))
}

fn ok(response: TokenResponse) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(response)
}

fn server_error(e: jsonwebtoken::errors::Error) -> HttpResponse {
    tracing::error!(error = %e, "cannot sign a token");
    oauth_error(
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "cannot issue a token",
    )
}

fn not_configured() -> HttpResponse {
    HttpResponse::NotFound().json(json!({
        "errors": [{ "code": "UNSUPPORTED", "message": "no token server is configured", "detail": null }]
    }))
}

fn scopes<'a>(pairs: impl Iterator<Item = &'a (String, String)>) -> Vec<Scope> {
    pairs
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter_map(parse_scope)
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn verify(server: &Arc<TokenServer>, user: String, password: String) -> bool {
    let server = server.clone();
    web::block(move || server.users.verify(&user, &password))
        .await
        .unwrap_or(false)
}

/// `wharf_token_requests_total{method, grant, outcome}`, registered with the process's
/// metrics on first use: what the built-in token server was asked (`GET` with `basic`
/// credentials or `anonymous`; `POST` with the `password`, `refresh_token` or an
/// `other` grant) and what it answered (`issued`, `refused` for bad credentials,
/// `bad_request`, `not_configured`, `error`).
fn token_requests() -> &'static prometheus::IntCounterVec {
    static REQUESTS: std::sync::OnceLock<prometheus::IntCounterVec> = std::sync::OnceLock::new();
    REQUESTS.get_or_init(|| {
        crate::telemetry::lazy_counter_vec(
            "token_requests_total",
            "Token server requests by method, grant and outcome",
            &["method", "grant", "outcome"],
        )
    })
}

/// Counts one answer of the token server and hands it on.
fn counted(method: &str, grant: &str, response: HttpResponse) -> HttpResponse {
    let status = response.status();
    let outcome = match status.as_u16() {
        200 => "issued",
        401 => "refused",
        404 => "not_configured",
        400..=499 => "bad_request",
        _ => "error",
    };
    token_requests()
        .with_label_values(&[method, grant, outcome])
        .inc();
    tracing::debug!(method, grant, outcome, "token request");
    response
}

/// `GET /auth/token`: Docker's token flow.
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let grant = if req.headers().contains_key(AUTHORIZATION) {
        "basic"
    } else {
        "anonymous"
    };
    counted("GET", grant, get_token(req, state).await)
}

async fn get_token(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(server) = state.auth.token_server().cloned() else {
        return not_configured();
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    if let Err(r) = server.check_service(param(&pairs, "service")) {
        return *r;
    }
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let subject = match header {
        None => None,
        Some(value) => {
            let creds = value
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
                .and_then(|(_, b64)| super::basic(b64));
            let verified = match creds {
                Some((user, password)) => verify(&server, user.clone(), password)
                    .await
                    .then_some(user),
                None => None,
            };
            match verified {
                Some(user) => Some(user),
                None => {
                    return HttpResponse::Unauthorized()
                        .insert_header((WWW_AUTHENTICATE, "Basic realm=\"token\""))
                        .json(json!({ "errors": [{ "code": "UNAUTHORIZED",
                            "message": "invalid username or password", "detail": null }] }))
                }
            }
        }
    };
    let refresh = param(&pairs, "offline_token") == Some("true");
    match server.issue(subject.as_deref(), &scopes(pairs.iter()), refresh) {
        Ok(r) => ok(r),
        Err(e) => server_error(e),
    }
}

/// `POST /auth/token`: OAuth2 password and refresh_token grants (form-encoded).
pub async fn post(body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let grant = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .ok()
        .and_then(|pairs| match param(&pairs, "grant_type") {
            Some("password") => Some("password"),
            Some("refresh_token") => Some("refresh_token"),
            _ => None,
        })
        .unwrap_or("other");
    counted("POST", grant, post_token(body, state).await)
}

async fn post_token(body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Some(server) = state.auth.token_server().cloned() else {
        return not_configured();
    };
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "malformed form");
    };
    if let Err(r) = server.check_service(param(&pairs, "service")) {
        return *r;
    }
    let scopes = scopes(pairs.iter());
    let (user, refresh) = match param(&pairs, "grant_type") {
        Some("password") => {
            let (Some(user), Some(password)) =
                (param(&pairs, "username"), param(&pairs, "password"))
            else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "username and password required",
                );
            };
            if !verify(&server, user.to_string(), password.to_string()).await {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_grant",
                    "invalid username or password",
                );
            }
            (
                user.to_string(),
                param(&pairs, "access_type") == Some("offline"),
            )
        }
        Some("refresh_token") => {
            let Some(token) = param(&pairs, "refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token required",
                );
            };
            match server.refresh_subject(token) {
                Some(user) => (user, true),
                None => {
                    return oauth_error(
                        StatusCode::UNAUTHORIZED,
                        "invalid_grant",
                        "invalid refresh token",
                    )
                }
            }
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be password or refresh_token",
            )
        }
    };
    match server.issue(Some(&user), &scopes, refresh) {
        Ok(r) => ok(r),
        Err(e) => server_error(e),
    }
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
