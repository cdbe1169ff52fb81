//! A request's trace, decided when it arrives (installed only when traces are
//! exported): the caller's W3C `traceparent`/`tracestate` and the sampler decide
//! (`telemetry::decision`). A sampled request's decision goes into its extensions for
//! its root span (`spans`); an unsampled request builds no OpenTelemetry span, and its
//! handler and response body run with its trace context carried alongside, so calls it
//! makes (S3, an upstream registry, a webhook's stored `traceparent`) still carry the
//! caller's trace id, with the flag `00`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderName;
use actix_web::middleware::Next;
use actix_web::HttpMessage as _;
use bytes::Bytes;
use opentelemetry::trace::SpanContext;

use crate::telemetry::decision::{self, RequestTrace};

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// A header's value (by a name made once: a `&str` name is parsed on every lookup).
fn header<'a>(req: &'a ServiceRequest, name: &HeaderName) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub async fn carry<B: MessageBody + Unpin + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<Carried<B>>, actix_web::Error> {
    match decision::decide(header(&req, &TRACEPARENT), header(&req, &TRACESTATE)) {
        RequestTrace::Sampled(root) => {
            req.extensions_mut().insert(root);
            let res = next.call(req).await?;
            Ok(res.map_body(|_, body| Carried { body, cx: None }))
        }
        RequestTrace::Unsampled(cx) => {
            // The root span is made in `call`, the handler runs in the future's polls.
            let call = decision::with_unsampled(&cx, || next.call(req));
            let res = decision::Carry::new(cx.clone(), call).await?;
            Ok(res.map_body(|_, body| Carried { body, cx: Some(cx) }))
        }
    }
}

/// A response body polled as part of its unsampled request, if it is one.
pub struct Carried<B> {
    body: B,
    cx: Option<Arc<SpanContext>>,
}

impl<B: MessageBody + Unpin> MessageBody for Carried<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        match &this.cx {
            Some(trace) => {
                decision::with_unsampled(trace, || Pin::new(&mut this.body).poll_next(cx))
            }
            None => Pin::new(&mut this.body).poll_next(cx),
        }
    }
}
