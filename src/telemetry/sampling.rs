//! Head sampling for the exported traces: the decision is taken once, for the trace's
//! root span (a request's, honouring its `traceparent`'s sampled flag and
//! `OTEL_TRACES_SAMPLER`), and an unsampled trace costs one OpenTelemetry span, not
//! one per `tracing` span.
//!
//! `tracing-opentelemetry` builds an OpenTelemetry span (builder, attributes, timings)
//! for every `tracing` span its layer sees and asks the sampler only when the span
//! closes; at a 1 % sampler, 99 % of that work was thrown away. [`SampledOnly`], a
//! per-layer filter on the export layer, lets a span or event through only when the
//! span it is created in belongs to a sampled trace: the children of an unsampled
//! root (the core's spans, one per store call) are never seen by the export layer.
//! The root itself is kept: its OpenTelemetry context (trace id, span id, sampled
//! flag 0) is what [`current_context`] hands to outgoing calls, so a webhook, an
//! upstream registry or S3 still get the caller's trace id with the flag cleared.

use std::sync::OnceLock;

use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::trace::SdkTracer;
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_opentelemetry::{OtelData, PreSampledTracer as _};
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// The tracer the export layer builds spans with (sampling decisions are its sampler's).
pub(super) fn set_tracer(tracer: SdkTracer) {
    let _ = TRACER.set(tracer);
}

/// A span's trace sampling decision, kept in its extensions once taken.
#[derive(Debug, Clone, Copy)]
struct Sampled(bool);

/// The per-layer filter of the export layer: spans and events inside an unsampled
/// trace are not exported, so they are not built either.
pub struct SampledOnly;

impl<S> Filter<S> for SampledOnly
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        // The current span as the export layer sees it: the nearest one it was let
        // through for (the children of an unsampled root never are, so below an
        // unsampled root this is the root).
        match cx.lookup_current() {
            Some(parent) => sampled(&parent),
            // A root span (its sampling is decided when it gets its first child or its
            // context is asked for); an event outside any span is not exported.
            None => meta.is_span(),
        }
    }

    fn callsite_enabled(&self, _meta: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
}

/// Whether `span`'s trace is sampled: taken from its OpenTelemetry data the first time
/// (the same pre-sampling `tracing-opentelemetry` does when a span's context is asked
/// for, so the decision is the one the span is exported, or not, with).
fn sampled<S>(span: &SpanRef<'_, S>) -> bool
where
    S: for<'a> LookupSpan<'a>,
{
    if let Some(Sampled(s)) = span.extensions().get::<Sampled>() {
        return *s;
    }
    let Some(tracer) = TRACER.get() else {
        return true;
    };
    // A span below another exported one belongs to a sampled trace (the children of
    // an unsampled root are not exported); every standard sampler decides a child as
    // its parent (parent-based) or by the trace id (the same for the whole trace).
    if span.parent().is_some() {
        return true;
    }
    let mut ext = span.extensions_mut();
    let Some(data) = ext.get_mut::<OtelData>() else {
        return true;
    };
    let decision = tracer
        .sampled_context(data)
        .span()
        .span_context()
        .is_sampled();
    ext.insert(Sampled(decision));
    decision
}

/// The OpenTelemetry context of the current span, for an outgoing call's
/// `traceparent`: the nearest span the export layer has (inside an unsampled trace,
/// its root: same trace id, sampled flag 0). Empty when export is off.
pub fn current_context() -> opentelemetry::Context {
    let Some(tracer) = TRACER.get() else {
        return opentelemetry::Context::new();
    };
    let mut cx = None;
    tracing::Span::current().with_subscriber(|(id, dispatch)| {
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return;
        };
        let Some(span) = registry.span(id) else {
            return;
        };
        for s in span.scope() {
            if let Some(data) = s.extensions_mut().get_mut::<OtelData>() {
                cx = Some(tracer.sampled_context(data));
                return;
            }
        }
    });
    cx.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
    use tracing_opentelemetry::{OpenTelemetrySpanExt as _, OtelData};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::registry::LookupSpan as _;
    use tracing_subscriber::Layer as _;

    use super::{current_context, set_tracer, SampledOnly};

    /// Keeps what is exported.
    #[derive(Debug, Clone, Default)]
    struct Kept(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Kept {
        async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn parent(flags: &str) -> opentelemetry::Context {
        let headers = HashMap::from([(
            "traceparent".to_string(),
            format!("00-{TRACE}-00f067aa0ba902b7-{flags}"),
        )]);
        TraceContextPropagator::new().extract(&headers)
    }

    /// Whether the current span has OpenTelemetry data (was built by the export layer).
    fn built() -> bool {
        let mut built = false;
        tracing::Span::current().with_subscriber(|(id, dispatch)| {
            let registry = dispatch
                .downcast_ref::<tracing_subscriber::Registry>()
                .unwrap();
            built = registry
                .span(id)
                .unwrap()
                .extensions()
                .get::<OtelData>()
                .is_some();
        });
        built
    }

    /// A request: a root span (child of `parent` when given) with a span inside and one
    /// inside that (a store call), and an event; what the innermost span sees: whether
    /// it was built, and the context an outgoing call would carry.
    fn request(
        parent: Option<opentelemetry::Context>,
    ) -> (bool, opentelemetry::trace::SpanContext) {
        let root = tracing::info_span!("HTTP request", otel.kind = "server");
        if let Some(cx) = parent {
            root.set_parent(cx);
        }
        let _r = root.enter();
        let _core = tracing::info_span!("core").entered();
        let _store = tracing::info_span!("store call", op = "get").entered();
        tracing::info!("inside");
        (built(), current_context().span().span_context().clone())
    }

    #[test]
    fn only_sampled_traces_are_built_and_unsampled_ones_still_propagate() {
        // Parent-based; a new trace is never sampled (ratio 0).
        let kept = Kept::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                0.0,
            ))))
            .with_simple_exporter(kept.clone())
            .build();
        let tracer = provider.tracer("test");
        set_tracer(tracer.clone());
        let subscriber = tracing_subscriber::registry().with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(SampledOnly),
        );
        tracing::subscriber::with_default(subscriber, || {
            // A sampled caller: the whole tree is built and exported, one trace.
            let (built, cx) = request(Some(parent("01")));
            assert!(built, "a store call in a sampled trace is built");
            assert_eq!(cx.trace_id().to_string(), TRACE);
            assert!(cx.is_sampled());
            let sampled = std::mem::take(&mut *kept.0.lock().unwrap());
            let mut names: Vec<&str> = sampled.iter().map(|s| s.name.as_ref()).collect();
            names.sort_unstable();
            assert_eq!(names, ["HTTP request", "core", "store call"]);
            assert!(sampled
                .iter()
                .all(|s| s.span_context.trace_id().to_string() == TRACE));
            let root = sampled.iter().find(|s| s.name == "HTTP request").unwrap();
            assert_eq!(root.parent_span_id.to_string(), "00f067aa0ba902b7");
            assert_eq!(root.events.len(), 0);
            let store = sampled.iter().find(|s| s.name == "store call").unwrap();
            assert_eq!(store.events.len(), 1, "the event is on the span it was in");

            // An unsampled caller: nothing exported, nothing below the root built; an
            // outgoing call still carries the trace id, from the root's span, flag 0.
            let (built, cx) = request(Some(parent("00")));
            assert!(!built, "a store call in an unsampled trace is not built");
            assert_eq!(cx.trace_id().to_string(), TRACE);
            assert!(!cx.is_sampled());
            assert!(cx.span_id() != opentelemetry::trace::SpanId::INVALID);
            assert_ne!(cx.span_id().to_string(), "00f067aa0ba902b7");
            assert!(
                kept.0.lock().unwrap().is_empty(),
                "{:?}",
                kept.0.lock().unwrap()
            );

            // No caller, the sampler says no: the same, with a trace id of its own.
            let (built, cx) = request(None);
            assert!(!built);
            assert!(cx.is_valid());
            assert_ne!(cx.trace_id().to_string(), TRACE);
            assert!(!cx.is_sampled());
            assert!(kept.0.lock().unwrap().is_empty());
        });
    }
}
