//! OpenTelemetry trace export over OTLP/HTTP (protobuf), or gRPC with
//! `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` (tonic), configured the standard way:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns it on;
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` are read by the SDK; `OTEL_SDK_DISABLED=true` turns it off.
//! Off by default. Spans are batched and sent from the SDK's own thread, so a collector
//! that is slow or down never holds a request. W3C `traceparent` on a request becomes
//! its root span's parent (see `http::trace_context`). Sampling is decided once per
//! trace, at its root — a request's when it arrives (`decision`) —, and an unsampled
//! trace's inner spans are not built (`sampling`), nor an unsampled request's root.

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
/// The runtime the gRPC exporter's connection runs on (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`).
static GRPC_RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// Whether export is configured (an endpoint set and the SDK not disabled).
pub fn enabled() -> bool {
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled
        && (env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The tracing layer that exports spans, when configured; what it was told is
/// returned as a line for the start-up log (the subscriber is not installed yet).
pub fn layer<S>() -> (Option<impl Layer<S>>, Option<String>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if !enabled() {
        return (None, None);
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    let grpc = protocol == "grpc";
    let mut note = None;
    if !grpc && !protocol.is_empty() && protocol != "http/protobuf" {
        note = Some(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: exporting with http/protobuf (point the endpoint at the collector's OTLP/HTTP port, 4318)"
        ));
    }
    let exporter = if grpc {
        // tonic's channel lives on a Tokio runtime of its own (one thread), kept for
        // the process's life; the SDK's batch thread exports through it.
        let rt = match GRPC_RUNTIME.get() {
            Some(rt) => rt,
            None => match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("wharf-otlp-grpc")
                .enable_all()
                .build()
            {
                Ok(rt) => GRPC_RUNTIME.get_or_init(|| rt),
                Err(e) => return (None, Some(format!("OpenTelemetry export off: {e}"))),
            },
        };
        let _in_runtime = rt.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
    } else {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
    };
    let exporter = match exporter {
        Ok(e) => e,
        Err(e) => return (None, Some(format!("OpenTelemetry export off: {e}"))),
    };
    // The sampler the SDK would read from the environment, kept for the decisions taken
    // when requests arrive (`decision`).
    let sampler = super::decision::sampler_from_env();
    super::decision::set_sampler(sampler.clone());
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("wharf");
    super::sampling::set_tracer(tracer.clone());
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    opentelemetry::global::set_tracer_provider(provider.clone());
    let _ = PROVIDER.set(provider);
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .unwrap_or_default();
    let line = format!(
        "traces: exported over OTLP/{} to {endpoint}",
        if grpc { "gRPC" } else { "HTTP" }
    );
    let note = Some(match note {
        Some(n) => format!("{line}; {n}"),
        None => line,
    });
    (
        // Every request's root span reaches this layer, sampled or not (the sampling
        // decision is taken on it): busy/idle timings would read the clock on each poll
        // of the request's futures, and thread attributes allocate the thread's name per
        // span. Neither is worth that on every request.
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_tracked_inactivity(false)
                .with_threads(false),
        ),
        note,
    )
}

/// Sends the spans still batched (at exit).
pub fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.force_flush();
        let _ = p.shutdown();
    }
}

/// Whether traces are exported (the layer is installed).
pub fn exporting() -> bool {
    PROVIDER.get().is_some()
}

/// Writes the current span's trace context (`traceparent`, and `tracestate` if any)
/// into an outgoing request's headers, so the callee joins the trace: webhook
/// deliveries, the pull-through cache's upstream requests, S3/Azure/GCS calls. Nothing
/// when export is off.
pub fn inject(headers: &mut http::HeaderMap) {
    if PROVIDER.get().is_none() {
        return;
    }
    let cx = super::sampling::current_context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

/// The current span's `traceparent`, to store with work done later (an event's
/// delivery); None when export is off.
pub fn traceparent() -> Option<String> {
    let mut headers = http::HeaderMap::new();
    inject(&mut headers);
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Makes `span` a child of a stored `traceparent` (see [`traceparent`]). `span` must be
/// created outside any unsampled trace (as a root): inside one, the export layer never
/// sees it (`sampling`), and it stays in that trace.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if PROVIDER.get().is_none() || traceparent.is_empty() {
        return;
    }
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let mut headers = http::HeaderMap::new();
    let Ok(value) = http::HeaderValue::from_str(traceparent) else {
        return;
    };
    headers.insert("traceparent", value);
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HttpHeaders(&headers)));
    span.set_parent(cx);
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl opentelemetry::propagation::Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HttpHeaders<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
