//! Authentication and authorization, decided once per request before dispatch.
//!
//! The HTTP layer says what a request [`Need`]s from its parsed endpoint and method
//! (pull, push, delete on a repository; `registry:catalog:*`; or only being
//! authenticated for `GET /v2/`). The [`Authorizer`] checks the request's credentials against the
//! configured mechanism — none, `htpasswd` (Basic; any valid user may do everything) or
//! `token` (JWT bearer; the token's `access` claim decides) — and answers with a
//! [`Grant`] or an [`AuthError`] (the HTTP layer answers it with the spec's 401
//! `UNAUTHORIZED` and its `WWW-Authenticate` challenge).
//!
//! - `htpasswd.rs`: the users file (bcrypt), re-read when it changes.
//! - `token.rs`: bearer token validation (keys from a JWK set, a certificate bundle, or
//!   the built-in token server's own key).
//! - `access_policy.rs`: the built-in token server's access rules.
//! - `catalog.rs`: which repositories a caller sees in the catalog (those it may pull).
//! - `token_server.rs`: the built-in token server's grants (Docker token flow and OAuth2
//!   password/refresh); `http::handlers::token` serves it at `/auth/token`.
//! - `x5c.rs`: certificate chains in token headers, verified up to `rootcertbundle`.
//!
//! Passwords and tokens are never logged. Nothing here knows HTTP: this module imports
//! only `config`, `telemetry` and `types`.

use std::sync::Arc;

use base64::Engine as _;

use crate::config::AuthConfig;

pub mod access_policy;
mod catalog;
pub mod htpasswd;

/// What a client sending a password bcrypt cannot check in full is told.
pub const TOO_LONG: &str =
    "passwords longer than 72 bytes are refused: bcrypt would check only their first 72";
pub mod token;
pub mod token_server;
pub mod x5c;

pub use catalog::CatalogView;
use htpasswd::Htpasswd;
use token::{Claims, TokenError, TokenValidator};

/// A repository action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// What one request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Any authenticated caller (`GET /v2/`).
    Authenticated,
    /// `action` on repository `name`.
    Repository { name: String, action: Action },
    /// `registry:catalog:*`.
    Catalog,
    /// The quota admin API: `registry:quota:read` (`GET`), `registry:quota:write`
    /// (`PUT`, `DELETE`); `registry:quota:*` grants both.
    Quotas { write: bool },
}

impl Need {
    /// The scope a client should ask the token server for.
    pub fn scope(&self) -> Option<String> {
        match self {
            Need::Authenticated => None,
            // Clients that push also pull (and docker asks for both).
            Need::Repository {
                name,
                action: Action::Push,
            } => Some(format!("repository:{name}:pull,push")),
            Need::Repository { name, action } => {
                Some(format!("repository:{name}:{}", action.as_str()))
            }
            Need::Catalog => Some("registry:catalog:*".into()),
            Need::Quotas { write: false } => Some("registry:quota:read".into()),
            Need::Quotas { write: true } => Some("registry:quota:write".into()),
        }
    }
}

/// What an authorized request may do, beyond what it needed (e.g. the source of a mount).
#[derive(Debug, Clone)]
pub enum Grant {
    /// No authentication configured, or an htpasswd user: everything.
    Everything,
    /// A bearer token's claims.
    Token(Arc<Claims>),
}

impl Grant {
    pub fn allows(&self, repository: &str, action: Action) -> bool {
        match self {
            Grant::Everything => true,
            Grant::Token(claims) => claims.allows_repository(repository, action),
        }
    }

    /// True for grants not limited to named repositories (mounts without `from`).
    pub fn is_everything(&self) -> bool {
        matches!(self, Grant::Everything)
    }
}

/// Marker put in a request's extensions when it asks for a cross-repository mount whose
/// source it may not pull: the upload handler then opens an ordinary session.
#[derive(Debug, Clone, Copy)]
pub struct MountDenied;

/// Why the configured authentication cannot start.
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct AuthSetupError {
    pub key: &'static str,
    pub message: String,
}

enum Mode {
    Open,
    Htpasswd { realm: String, users: Arc<Htpasswd> },
    Token(Arc<TokenValidator>),
}

/// Decides, per request, from the configured mechanism.
pub struct Authorizer {
    mode: Mode,
    token_server: Option<Arc<token_server::TokenServer>>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            Mode::Open => "none",
            Mode::Htpasswd { .. } => "htpasswd",
            Mode::Token(_) => "token",
        };
        f.debug_struct("Authorizer").field("mode", &mode).finish()
    }
}

/// Credentials from an `Authorization` header.
enum Credentials<'a> {
    None,
    Basic { user: String, password: String },
    Bearer(&'a str),
    Malformed,
}

fn credentials(header: Option<&str>) -> Credentials<'_> {
    let Some(value) = header else {
        return Credentials::None;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        basic(rest).map_or(Credentials::Malformed, |(user, password)| {
            Credentials::Basic { user, password }
        })
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Credentials::Bearer(rest)
    } else {
        Credentials::Malformed
    }
}

/// Decodes the payload of a Basic `Authorization` header.
pub fn basic(b64: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No, malformed or insufficient credentials: the client should authenticate as
    /// `challenge` (a `WWW-Authenticate` value) says and try again.
    #[error("{message}")]
    Unauthorized { message: String, challenge: String },
}

/// An [`AuthError::Unauthorized`] with its challenge.
pub fn unauthorized(message: impl Into<String>, challenge: String) -> AuthError {
    AuthError::Unauthorized {
        message: message.into(),
        challenge,
    }
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Authorizer {
    /// No authentication: every request is allowed.
    pub fn open() -> Authorizer {
        Authorizer {
            mode: Mode::Open,
            token_server: None,
        }
    }

    /// Builds the configured mechanism, reading its files now so mistakes stop start-up.
    pub fn from_config(config: &AuthConfig) -> Result<Authorizer, AuthSetupError> {
        let users = match &config.htpasswd {
            Some(h) => Some(Arc::new(Htpasswd::open(&h.path).map_err(|e| {
                AuthSetupError {
                    key: "auth.htpasswd.path",
                    message: format!("{}: {e}", h.path),
                }
            })?)),
            None => None,
        };
        let token_server = match (&config.tokenserver, &config.token, &users) {
            (Some(server), Some(token), Some(users)) => Some(Arc::new(
                token_server::TokenServer::new(server, token, users.clone())?,
            )),
            _ => None,
        };
        let mode = match (&config.token, &config.htpasswd, users) {
            (Some(token), _, _) => Mode::Token(Arc::new(TokenValidator::from_config(
                token,
                token_server.as_ref().map(|s| s.public_key()),
            )?)),
            (None, Some(h), Some(users)) => Mode::Htpasswd {
                realm: h.realm.clone(),
                users,
            },
            _ => Mode::Open,
        };
        Ok(Authorizer { mode, token_server })
    }

    pub fn is_open(&self) -> bool {
        matches!(self.mode, Mode::Open)
    }

    /// The built-in token server, when configured.
    pub fn token_server(&self) -> Option<&Arc<token_server::TokenServer>> {
        self.token_server.as_ref()
    }

    /// Checks the request's `Authorization` header against what it needs.
    pub async fn authorize(&self, need: &Need, header: Option<&str>) -> Result<Grant, AuthError> {
        let (mechanism, (result, outcome)) = match &self.mode {
            Mode::Open => return Ok(Grant::Everything),
            Mode::Htpasswd { realm, users } => {
                ("htpasswd", Self::basic(realm, users, header).await)
            }
            Mode::Token(validator) => ("token", Self::bearer(validator, need, header)),
        };
        decisions().with_label_values(&[mechanism, outcome]).inc();
        result
    }

    async fn basic(realm: &str, users: &Arc<Htpasswd>, header: Option<&str>) -> Decision {
        let challenge = format!("Basic realm=\"{}\"", quote(realm));
        let Credentials::Basic { user, password } = credentials(header) else {
            return (
                Err(unauthorized("authentication required", challenge)),
                "no_credentials",
            );
        };
        if htpasswd::password_too_long(&password) {
            return (Err(unauthorized(TOO_LONG, challenge)), "password_too_long");
        }
        let users = users.clone();
        // bcrypt is deliberately slow: off the async workers.
        let ok = tokio::task::spawn_blocking(move || users.verify(&user, &password))
            .await
            .unwrap_or(false);
        if ok {
            (Ok(Grant::Everything), "granted")
        } else {
            (
                Err(unauthorized("invalid username or password", challenge)),
                "invalid_credentials",
            )
        }
    }

    fn bearer(validator: &TokenValidator, need: &Need, header: Option<&str>) -> Decision {
        let token = match credentials(header) {
            Credentials::Bearer(token) => token,
            Credentials::None | Credentials::Basic { .. } => {
                return (
                    Err(validator.challenge(need, None, "authentication required")),
                    "no_credentials",
                )
            }
            Credentials::Malformed => {
                return (
                    Err(validator.challenge(
                        need,
                        Some("invalid_request"),
                        "malformed Authorization header",
                    )),
                    "invalid_request",
                )
            }
        };
        let claims = match validator.validate(token) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(reason = %e, "bearer token refused");
                let message = match e {
                    TokenError::Malformed(_) => "malformed token",
                    _ => "invalid token",
                };
                return (
                    Err(validator.challenge(need, Some("invalid_token"), message)),
                    "invalid_token",
                );
            }
        };
        let allowed = match need {
            Need::Authenticated => true,
            Need::Repository { name, action } => claims.allows_repository(name, *action),
            Need::Catalog => claims.allows_catalog(),
            Need::Quotas { write } => claims.allows_quotas(*write),
        };
        if allowed {
            (Ok(Grant::Token(Arc::new(claims))), "granted")
        } else {
            (
                Err(validator.challenge(
                    need,
                    Some("insufficient_scope"),
                    "the token does not grant this access",
                )),
                "insufficient_scope",
            )
        }
    }
}

/// A decision and its `outcome` label.
type Decision = (Result<Grant, AuthError>, &'static str);

/// `wharf_auth_decisions_total{mechanism, outcome}`, registered with the process's
/// metrics on first use. Outcomes: granted, no_credentials, invalid_credentials,
/// invalid_request, invalid_token, insufficient_scope.
fn decisions() -> &'static prometheus::IntCounterVec {
    static DECISIONS: std::sync::OnceLock<prometheus::IntCounterVec> = std::sync::OnceLock::new();
    DECISIONS.get_or_init(|| {
        crate::telemetry::lazy_counter_vec(
            "auth_decisions_total",
            "Authorization decisions by mechanism and outcome",
            &["mechanism", "outcome"],
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_authorization_headers() {
        assert!(matches!(
            credentials(Some("Basic YWxpY2U6cDpx")),
            Credentials::Basic { user, password } if user == "alice" && password == "p:q"
        ));
        assert!(matches!(
            credentials(Some("bearer abc")),
            Credentials::Bearer("abc")
        ));
        assert!(matches!(
            credentials(Some("Basic !!")),
            Credentials::Malformed
        ));
        assert!(matches!(
            credentials(Some("Digest x")),
            Credentials::Malformed
        ));
        assert!(matches!(credentials(None), Credentials::None));
    }
}
