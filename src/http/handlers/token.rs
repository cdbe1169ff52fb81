//! `/auth/token`: the built-in token server over HTTP. Parses the request into an
//! [`auth::token_server::TokenRequest`], lets the token server decide, and answers in
//! the token flow's JSON (`GET`, Docker's flow) or OAuth2's (`POST`).
//!
//! [`auth::token_server::TokenRequest`]: crate::auth::token_server::TokenRequest

use actix_web::http::header::{AUTHORIZATION, CACHE_CONTROL, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::auth::token_server::{
    parse_scope, Scope, TokenGrant, TokenRequest, TokenRequestError, TokenResponse,
};
use crate::http::error::{ApiError, ErrorCode};
use crate::http::headers::{self, param};
use crate::http::AppState;

fn oauth_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(json!({ "error": error, "error_description": description }))
}

fn ok(response: TokenResponse) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(response)
}

/// The answer to a refused request. `GET` (Docker's token flow) answers bad
/// credentials with the registry's own 401 and a Basic challenge; everything else is
/// OAuth2's error JSON.
fn refused(e: TokenRequestError) -> HttpResponse {
    use TokenRequestError as E;
    match e {
        E::UnknownService => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string())
        }
        E::BadCredentials | E::PasswordTooLong => {
            use actix_web::ResponseError as _;
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                e.to_string(),
            )
            .with_header(WWW_AUTHENTICATE, "Basic realm=\"token\"")
            .error_response()
        }
        E::InvalidRequest(m) => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", m),
        E::InvalidGrant(m) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_grant", m),
        E::UnsupportedGrant => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &e.to_string(),
        ),
        E::Signing(cause) => {
            tracing::error!(error = %cause, "cannot sign a token");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "cannot issue a token",
            )
        }
    }
}

fn not_configured() -> HttpResponse {
    use actix_web::ResponseError as _;
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::Unsupported,
        "no token server is configured",
    )
    .error_response()
}

fn scopes(pairs: &[(String, String)]) -> Vec<Scope> {
    pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter_map(parse_scope)
        .collect()
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
    let outcome = match response.status().as_u16() {
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
    counted("GET", grant, get_token(&req, &state).await)
}

async fn get_token(req: &HttpRequest, state: &AppState) -> HttpResponse {
    let Some(server) = state.auth.token_server().cloned() else {
        return not_configured();
    };
    let pairs = headers::query(req.query_string()).unwrap_or_default();
    let offline = param(&pairs, "offline_token") == Some("true");
    let grant = match req.headers().get(AUTHORIZATION) {
        None => TokenGrant::Anonymous,
        Some(value) => {
            let credentials = value
                .to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
                .and_then(|(_, b64)| crate::auth::basic(b64));
            match credentials {
                Some((user, password)) => TokenGrant::Basic {
                    user,
                    password,
                    offline,
                },
                None => return refused(TokenRequestError::BadCredentials),
            }
        }
    };
    let request = TokenRequest {
        service: param(&pairs, "service").map(str::to_string),
        scopes: scopes(&pairs),
        grant,
    };
    server.grant(request).await.map_or_else(refused, ok)
}

/// The `grant` label of a `POST`.
fn post_grant_label(pairs: &[(String, String)]) -> &'static str {
    match param(pairs, "grant_type") {
        Some("password") => "password",
        Some("refresh_token") => "refresh_token",
        _ => "other",
    }
}

/// `POST /auth/token`: OAuth2 password and refresh_token grants (form-encoded).
pub async fn post(body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let pairs = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body);
    let grant = pairs.as_deref().map_or("other", post_grant_label);
    counted("POST", grant, post_token(pairs.ok(), &state).await)
}

async fn post_token(pairs: Option<Vec<(String, String)>>, state: &AppState) -> HttpResponse {
    let Some(server) = state.auth.token_server().cloned() else {
        return not_configured();
    };
    let Some(pairs) = pairs else {
        return refused(TokenRequestError::InvalidRequest("malformed form"));
    };
    let text = |name| param(&pairs, name).map(str::to_string);
    let grant = match param(&pairs, "grant_type") {
        Some("password") => match (text("username"), text("password")) {
            (Some(user), Some(password)) => TokenGrant::Password {
                user,
                password,
                offline: param(&pairs, "access_type") == Some("offline"),
            },
            _ => {
                return refused(TokenRequestError::InvalidRequest(
                    "username and password required",
                ))
            }
        },
        Some("refresh_token") => match text("refresh_token") {
            Some(token) => TokenGrant::Refresh { token },
            None => return refused(TokenRequestError::InvalidRequest("refresh_token required")),
        },
        _ => return refused(TokenRequestError::UnsupportedGrant),
    };
    let request = TokenRequest {
        service: text("service"),
        scopes: scopes(&pairs),
        grant,
    };
    server.grant(request).await.map_or_else(refused, ok)
}
