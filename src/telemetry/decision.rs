//! A request's trace sampling decision, taken when it arrives, before any span is made:
//! the caller's `traceparent` (its trace id and sampled flag) and `OTEL_TRACES_SAMPLER`
//! decide, with the same sampler the exporting SDK is given, so the decision is the one
//! the SDK would take.
//!
//! A sampled request gets its root span as before ([`super::sampling::start_sampled`]
//! hands the decision and the trace id to the span's OpenTelemetry data). An unsampled
//! one — 99 % of them at a 1 % sampler — gets no OpenTelemetry span at all: its trace
//! context (the caller's trace id or a new one, a span id of Wharf's, the flag `00`,
//! the caller's `tracestate`) is carried in a thread-local while the request's future
//! and body are polled ([`with_unsampled`], [`Carry`]); the export layer's filter lets
//! nothing through while it is set, and an outgoing call's `traceparent` is made from
//! it ([`unsampled`]).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    SamplingDecision, SamplingResult, SpanContext, SpanKind, TraceContextExt as _, TraceFlags,
    TraceId,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator, Sampler, ShouldSample as _};

static SAMPLER: OnceLock<Sampler> = OnceLock::new();

/// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` read as the SDK reads them
/// (`opentelemetry_sdk`'s `Config::default`, which also warns about bad values): the
/// sampler is given to the SDK and kept here, so a request's decision at its arrival
/// and the SDK's agree.
pub(super) fn sampler_from_env() -> Sampler {
    let arg = std::env::var("OTEL_TRACES_SAMPLER_ARG").ok();
    let ratio = || {
        arg.as_deref()
            .and_then(|r| r.parse::<f64>().ok())
            .unwrap_or(1.0)
    };
    let parent_based = |s: Sampler| Sampler::ParentBased(Box::new(s));
    match std::env::var("OTEL_TRACES_SAMPLER").ok().as_deref() {
        Some("always_on") => Sampler::AlwaysOn,
        Some("always_off") => Sampler::AlwaysOff,
        Some("traceidratio") => Sampler::TraceIdRatioBased(ratio()),
        Some("parentbased_always_off") => parent_based(Sampler::AlwaysOff),
        Some("parentbased_traceidratio") => parent_based(Sampler::TraceIdRatioBased(ratio())),
        // parentbased_always_on, the default; the SDK's fallback for the ones it lacks
        // (jaeger_remote, xray) and for unknown names.
        _ => parent_based(Sampler::AlwaysOn),
    }
}

/// Keeps the exporting SDK's sampler for the decisions at arrival.
pub(super) fn set_sampler(sampler: Sampler) {
    let _ = SAMPLER.set(sampler);
}

/// A sampled request's root: what its span is started with.
#[derive(Debug, Clone)]
pub struct SampledRoot {
    /// The caller's context (`traceparent`), if any.
    pub(super) parent: Option<opentelemetry::Context>,
    /// The trace id the decision was taken on (the caller's, or new).
    pub(super) trace_id: TraceId,
    pub(super) result: SamplingResult,
}

/// What a request's trace is.
#[derive(Debug, Clone)]
pub enum RequestTrace {
    /// Exported: a root span is built, with this decision.
    Sampled(SampledRoot),
    /// Not exported: no span is built; outgoing calls carry this context.
    Unsampled(Arc<SpanContext>),
}

/// `traceparent` and `tracestate` as the propagator's carrier.
struct Carrier<'a> {
    traceparent: &'a str,
    tracestate: Option<&'a str>,
}

impl opentelemetry::propagation::Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.traceparent),
            "tracestate" => self.tracestate,
            _ => None,
        }
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// The decision for a request with these headers (an invalid `traceparent` is none).
pub fn decide(traceparent: Option<&str>, tracestate: Option<&str>) -> RequestTrace {
    let parent = traceparent
        .map(|traceparent| {
            TraceContextPropagator::new().extract(&Carrier {
                traceparent,
                tracestate,
            })
        })
        .filter(|cx| cx.has_active_span());
    let ids = RandomIdGenerator::default();
    let trace_id = match &parent {
        Some(cx) => cx.span().span_context().trace_id(),
        None => ids.new_trace_id(),
    };
    let default;
    let sampler = match SAMPLER.get() {
        Some(s) => s,
        None => {
            default = Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
            &default
        }
    };
    let result = sampler.should_sample(
        parent.as_ref(),
        trace_id,
        "HTTP request",
        &SpanKind::Server,
        &[],
        &[],
    );
    if matches!(result.decision, SamplingDecision::RecordAndSample) {
        RequestTrace::Sampled(SampledRoot {
            parent,
            trace_id,
            result,
        })
    } else {
        RequestTrace::Unsampled(Arc::new(SpanContext::new(
            trace_id,
            ids.new_span_id(),
            TraceFlags::default(),
            false,
            result.trace_state,
        )))
    }
}

thread_local! {
    /// The unsampled request being polled on this thread, if any.
    static UNSAMPLED: RefCell<Option<Arc<SpanContext>>> = const { RefCell::new(None) };
}

/// Runs `f` as part of the unsampled request `cx` (what was there before is restored
/// after, even if `f` panics).
pub fn with_unsampled<R>(cx: &Arc<SpanContext>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<SpanContext>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            let _ = UNSAMPLED.try_with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = UNSAMPLED.with(|c| c.replace(Some(cx.clone())));
    let _restore = Restore(previous);
    f()
}

/// Whether an unsampled request is being polled on this thread.
pub fn in_unsampled() -> bool {
    UNSAMPLED.with(|c| c.borrow().is_some())
}

/// The trace context of the unsampled request being polled on this thread.
pub fn unsampled() -> Option<Arc<SpanContext>> {
    UNSAMPLED.with(|c| c.borrow().clone())
}

/// A future polled as part of an unsampled request ([`with_unsampled`] around each poll).
pub struct Carry<F> {
    cx: Arc<SpanContext>,
    inner: F,
}

impl<F> Carry<F> {
    pub fn new(cx: Arc<SpanContext>, inner: F) -> Carry<F> {
        Carry { cx, inner }
    }
}

impl<F: Future + Unpin> Future for Carry<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        with_unsampled(&this.cx, || Pin::new(&mut this.inner).poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn the_caller_decides_under_the_default_parent_based_sampler() {
        // No sampler set: ParentBased(AlwaysOn), the SDK's default.
        let tp = format!("00-{TRACE}-00f067aa0ba902b7-00");
        let RequestTrace::Unsampled(cx) = decide(Some(&tp), Some("vendor=x")) else {
            panic!("the caller said not sampled");
        };
        assert_eq!(cx.trace_id().to_string(), TRACE);
        assert!(!cx.is_sampled());
        assert_ne!(cx.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(cx.trace_state().header(), "vendor=x");

        let tp = format!("00-{TRACE}-00f067aa0ba902b7-01");
        let RequestTrace::Sampled(root) = decide(Some(&tp), None) else {
            panic!("the caller said sampled");
        };
        assert_eq!(root.trace_id.to_string(), TRACE);
        assert!(root.parent.is_some());

        // No caller (or a malformed traceparent): AlwaysOn, a new trace.
        for tp in [None, Some("garbage")] {
            let RequestTrace::Sampled(root) = decide(tp, None) else {
                panic!("always on");
            };
            assert!(root.parent.is_none());
            assert_ne!(root.trace_id, TraceId::INVALID);
        }
    }

    #[test]
    fn the_thread_local_is_set_while_polling_only() {
        let cx = Arc::new(SpanContext::empty_context());
        assert!(!in_unsampled());
        let inside = with_unsampled(&cx, || {
            let nested = with_unsampled(&cx, in_unsampled);
            nested && unsampled().is_some()
        });
        assert!(inside);
        assert!(!in_unsampled());
        let polled = futures_util::FutureExt::now_or_never(Carry::new(
            cx,
            std::future::ready(()).map_ready_in_unsampled(),
        ));
        assert_eq!(polled, Some(true));
        assert!(!in_unsampled());
    }

    /// A ready future that says whether it was polled inside an unsampled request.
    trait InUnsampled {
        fn map_ready_in_unsampled(self) -> std::pin::Pin<Box<dyn Future<Output = bool>>>;
    }

    impl<F: Future<Output = ()> + 'static> InUnsampled for F {
        fn map_ready_in_unsampled(self) -> std::pin::Pin<Box<dyn Future<Output = bool>>> {
            Box::pin(async move {
                self.await;
                in_unsampled()
            })
        }
    }
}
