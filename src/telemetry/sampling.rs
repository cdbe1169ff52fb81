//! Head sampling for the exported traces: the decision is taken once per trace, at its
//! root — a request's when it arrives (`decision`: its `traceparent`'s sampled flag and
//! `OTEL_TRACES_SAMPLER`), any other root span's (a webhook delivery, a background job)
//! when it gets its first child — and an unsampled trace builds no OpenTelemetry span
//! below its root; an unsampled request builds none at all.
//!
//! `tracing-opentelemetry` builds an OpenTelemetry span (builder, attributes, timings)
//! for every `tracing` span its layer sees and asks the sampler only when the span
//! closes; at a 1 % sampler, 99 % of that work was thrown away. [`SampledOnly`], a
//! per-layer filter on the export layer, lets a span or event through only inside a
//! sampled trace: nothing while an unsampled request is polled (`decision`), and below
//! a root span only when the root's trace is sampled. Outgoing calls get their
//! `traceparent` from [`current_context`]: the nearest exported span's context, or the
//! unsampled request's (its trace id, flag 0).

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
        // Inside an unsampled request, nothing (not even its root span) is exported.
        if super::decision::in_unsampled() {
            return false;
        }
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

/// The subscriber's layers, with a gate: while an unsampled request is polled, a span or
/// event the log would not show is not made at all.
///
/// With per-layer filters, tracing-subscriber's registry makes every span some filter
/// may want (a callsite of `Interest::sometimes`) even when each filter then says no
/// (its "any filter enabled" test counts the 64 possible filters, not the ones in use):
/// without this gate, an unsampled request still made its root span and one per store
/// call in the registry — entered and left on every poll, through both layers — only
/// for no layer to see them. A layer's own `enabled` saying no disables a span for the
/// whole subscriber. `log` is a copy of the log layer's filter: what the log shows is
/// still made. Everything else is the inner layers' (their interest included: a layer
/// of its own beside them would turn every callsite their filters refuse into a
/// "sometimes", asked on each use).
pub struct Gated<L> {
    inner: L,
    log: Option<tracing_subscriber::EnvFilter>,
}

impl<L> Gated<L> {
    /// `log` built from the same directives as the log layer's filter (None: no gate,
    /// as when traces are not exported). No gate either when the directives filter by
    /// span fields (`[span{field=…}]`): a copy of the filter never sees the spans
    /// entered, so it could not tell.
    pub fn new(inner: L, log: Option<tracing_subscriber::EnvFilter>, directives: &str) -> Gated<L> {
        let log = log.filter(|_| !directives.contains('['));
        Gated { inner, log }
    }
}

impl<S, L> tracing_subscriber::Layer<S> for Gated<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: tracing_subscriber::Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(meta)
    }

    fn enabled(&self, meta: &Metadata<'_>, cx: Context<'_, S>) -> bool {
        if let Some(log) = &self.log {
            if super::decision::in_unsampled() && !log.enabled(meta, cx.clone()) {
                return false;
            }
        }
        self.inner.enabled(meta, cx)
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        cx: Context<'_, S>,
    ) {
        self.inner.on_new_span(attrs, id, cx);
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.inner.max_level_hint()
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        cx: Context<'_, S>,
    ) {
        self.inner.on_record(id, values, cx);
    }

    fn on_follows_from(
        &self,
        span: &tracing::span::Id,
        follows: &tracing::span::Id,
        cx: Context<'_, S>,
    ) {
        self.inner.on_follows_from(span, follows, cx);
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, cx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, cx)
    }

    fn on_event(&self, event: &tracing::Event<'_>, cx: Context<'_, S>) {
        self.inner.on_event(event, cx);
    }

    fn on_enter(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        self.inner.on_enter(id, cx);
    }

    fn on_exit(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        self.inner.on_exit(id, cx);
    }

    fn on_close(&self, id: tracing::span::Id, cx: Context<'_, S>) {
        self.inner.on_close(id, cx);
    }

    fn on_id_change(&self, old: &tracing::span::Id, new: &tracing::span::Id, cx: Context<'_, S>) {
        self.inner.on_id_change(old, new, cx);
    }

    // SAFETY: forwarded as is: the inner layers answer for the types they hold
    // (tracing-subscriber finds their per-layer filters this way).
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: as above.
        unsafe { self.inner.downcast_raw(id) }
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

/// Starts a sampled request's root `span` (just made, not entered yet) with the
/// decision taken on its arrival: the caller's context as its parent, the trace id and
/// sampling result the decision was taken with (so the SDK takes no other).
pub fn start_sampled(span: &tracing::Span, root: super::decision::SampledRoot) {
    span.with_subscriber(move |(id, dispatch)| {
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return;
        };
        let Some(span) = registry.span(id) else {
            return;
        };
        let mut ext = span.extensions_mut();
        let Some(data) = ext.get_mut::<OtelData>() else {
            return;
        };
        if let Some(parent) = root.parent {
            data.parent_cx = parent;
        }
        data.builder.trace_id = Some(root.trace_id);
        data.builder.sampling_result = Some(root.result);
        ext.insert(Sampled(true));
    });
}

/// The OpenTelemetry context of the current span, for an outgoing call's
/// `traceparent`: inside an unsampled request, its context (the caller's trace id,
/// flag 0); else the nearest span the export layer has (inside an unsampled trace that
/// is not a request's, its root: same trace id, flag 0). Empty when export is off.
pub fn current_context() -> opentelemetry::Context {
    let Some(tracer) = TRACER.get() else {
        return opentelemetry::Context::new();
    };
    if let Some(unsampled) = super::decision::unsampled() {
        return opentelemetry::Context::new().with_remote_span_context((*unsampled).clone());
    }
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

    use super::{current_context, set_tracer, start_sampled, Gated, SampledOnly};
    use crate::telemetry::decision::{decide, with_unsampled, RequestTrace};

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
        // No log: inside an unsampled request, nothing is made.
        let subscriber = tracing_subscriber::registry().with(Gated::new(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(SampledOnly),
            Some(tracing_subscriber::EnvFilter::new("off")),
            "",
        ));
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

            // Requests decided on arrival (`decision`, as `http::trace_context` does).
            // Unsampled: not even the root is built; an outgoing call carries the
            // request's context (the caller's trace id, a span id of Wharf's, flag 0).
            let tp = format!("00-{TRACE}-00f067aa0ba902b7-00");
            let RequestTrace::Unsampled(arrival) = decide(Some(&tp), None) else {
                panic!("the caller said not sampled");
            };
            let (made, cx) = with_unsampled(&arrival, || {
                let root = tracing::info_span!("HTTP request", otel.kind = "server");
                assert!(root.is_disabled(), "no span for an unsampled request");
                request(None)
            });
            assert!(!made);
            assert_eq!(cx.trace_id().to_string(), TRACE);
            assert_eq!(cx.span_id(), arrival.span_id());
            assert!(!cx.is_sampled());
            assert!(kept.0.lock().unwrap().is_empty());

            // Sampled: the root is started with the decision and the caller as parent;
            // the tree is exported in the caller's trace.
            let tp = format!("00-{TRACE}-00f067aa0ba902b7-01");
            let RequestTrace::Sampled(arrival) = decide(Some(&tp), None) else {
                panic!("the caller said sampled");
            };
            let root = tracing::info_span!("HTTP request", otel.kind = "server");
            start_sampled(&root, arrival);
            let cx = root.in_scope(|| {
                let _store = tracing::info_span!("store call", op = "get").entered();
                assert!(super::tests::built());
                current_context().span().span_context().clone()
            });
            drop(root);
            assert_eq!(cx.trace_id().to_string(), TRACE);
            assert!(cx.is_sampled());
            let sampled = std::mem::take(&mut *kept.0.lock().unwrap());
            assert_eq!(sampled.len(), 2, "{sampled:?}");
            let root = sampled.iter().find(|s| s.name == "HTTP request").unwrap();
            assert_eq!(root.parent_span_id.to_string(), "00f067aa0ba902b7");
            assert_eq!(root.span_context.trace_id().to_string(), TRACE);
        });
    }
}
