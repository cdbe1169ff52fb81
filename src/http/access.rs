//! The request id and the access log.
//!
//! Every request gets an id: the `X-Request-Id` a trusted proxy (`http.trustedproxies`)
//! sent, else a new UUID-shaped id (`telemetry::request_id`: unique without a random
//! draw per request). It is in the request's extensions ([`RequestId`]: events name
//! it), on its span, and echoed in the response's `X-Request-Id`.
//!
//! Unless `log.accesslog.disabled`, one line per request (target `wharf::access`) when
//! its response has been sent — the body included, so `bytes` and `duration_ms` are what
//! went over the wire, also for a streamed blob or a client that went away.

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, USER_AGENT};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use bytes::Bytes;

use super::{AppState, RequestId};
use crate::telemetry::access_line::AccessFields;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Whether the access log is written (`!log.accesslog.disabled`), as app data.
#[derive(Debug, Clone, Copy)]
pub struct AccessLog(pub bool);

/// The id of `req`: a trusted proxy's `X-Request-Id` (printable, at most 200 bytes),
/// else a new UUID-shaped id (`telemetry::request_id`).
fn request_id(req: &ServiceRequest) -> String {
    let from_proxy = req
        .app_data::<web::Data<AppState>>()
        .zip(req.peer_addr())
        .is_some_and(|(state, peer)| state.clients.is_trusted(peer.ip().to_canonical()));
    from_proxy
        .then(|| req.headers().get(&X_REQUEST_ID))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map_or_else(crate::telemetry::request_id::new, str::to_string)
}

pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    tracing::Span::current().record("request_id", id.as_str());
    req.extensions_mut().insert(RequestId(id.clone()));
    let echoed = HeaderValue::from_str(&id).ok();
    let enabled = req.app_data::<AccessLog>().is_none_or(|a| a.0);
    // What the line needs, kept cheaply: the method and user agent are shared, not
    // copied; the path is the one copy.
    let line = enabled.then(|| Line {
        method: req.method().clone(),
        path: req.path().to_string(),
        user_agent: req.headers().get(USER_AGENT).cloned(),
        // `ClientAddr::of`, with the header's name made once (the header is read only
        // when the peer is a trusted proxy).
        client: req.app_data::<web::Data<AppState>>().and_then(|s| {
            let forwarded = req
                .headers()
                .get_all(&X_FORWARDED_FOR)
                .filter_map(|v| v.to_str().ok());
            s.clients
                .client_ip(req.peer_addr().map(|a| a.ip()), forwarded)
        }),
        request_id: id,
        status: 0,
        started,
    });
    let mut res = next.call(req).await?;
    if let Some(v) = echoed {
        res.headers_mut().insert(X_REQUEST_ID, v);
    }
    let status = res.status().as_u16();
    Ok(res.map_body(move |_, body| Counted {
        body: body.boxed(),
        bytes: 0,
        line: line.map(|l| Line { status, ..l }),
    }))
}

/// What the access log line says, written when the body is done (or dropped).
struct Line {
    method: Method,
    path: String,
    user_agent: Option<HeaderValue>,
    client: Option<IpAddr>,
    request_id: String,
    status: u16,
    started: Instant,
}

/// A response body that counts its bytes and writes the access log line at its end.
struct Counted {
    body: BoxBody,
    bytes: u64,
    line: Option<Line>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(l) = self.line.take() {
            crate::telemetry::access_line::emit(&AccessFields {
                method: l.method.as_str(),
                path: &l.path,
                status: l.status,
                bytes: self.bytes,
                duration_ms: l.started.elapsed().as_secs_f64() * 1000.0,
                user_agent: l
                    .user_agent
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
                client: l.client,
                request_id: &l.request_id,
            });
        }
    }
}

impl MessageBody for Counted {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.body).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &poll {
            this.bytes += chunk.len() as u64;
        }
        poll
    }
}
