//! Observability: the tracing subscriber (text or JSON logs) and the Prometheus metrics
//! every layer records into, served at `/metrics`.

pub mod access_line;
pub mod calls;
pub mod decision;
pub mod log_writer;
pub mod otlp;
pub mod request_id;
pub mod sampling;

use std::io::IsTerminal;
use std::sync::OnceLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tracing_subscriber::EnvFilter;

/// All of Wharf's metrics.
pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    /// Requests whose handler has not answered yet (what a graceful stop waits for).
    pub http_in_flight: IntGauge,
    pub upload_bytes: IntCounter,
    pub download_bytes: IntCounter,
    pub blobs_committed: IntCounter,
    pub manifests_pushed: IntCounter,
    pub blob_compose: IntCounterVec,
    pub uploads_purged: IntCounter,
}

fn build() -> Metrics {
    let registry =
        Registry::new_custom(Some("wharf".into()), None).expect("static metrics registry");
    let http_requests = IntCounterVec::new(
        Opts::new(
            "http_requests_total",
            "HTTP requests by route, method and status",
        ),
        &["route", "method", "status"],
    )
    .expect("static metric");
    let http_duration = HistogramVec::new(
        HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
        ]),
        &["route", "method"],
    )
    .expect("static metric");
    let http_in_flight = IntGauge::new(
        "http_requests_in_flight",
        "Requests being handled (streamed response bodies not included)",
    )
    .expect("static metric");
    let upload_bytes =
        IntCounter::new("upload_bytes_total", "Blob bytes received").expect("static metric");
    let download_bytes =
        IntCounter::new("download_bytes_total", "Blob bytes served").expect("static metric");
    let blobs_committed =
        IntCounter::new("blobs_committed_total", "Blob uploads committed").expect("static metric");
    let manifests_pushed =
        IntCounter::new("manifests_pushed_total", "Manifests stored").expect("static metric");
    let blob_compose = IntCounterVec::new(
        Opts::new(
            "blob_compose_total",
            "Uploads of several chunks made into one blob object, by backend and method \
             (server_copy inside the store, stream_copy through Wharf)",
        ),
        &["backend", "method"],
    )
    .expect("static metric");
    let uploads_purged = IntCounter::new(
        "uploads_purged_total",
        "Stale upload sessions purged (storage.maintenance.uploadpurging)",
    )
    .expect("static metric");
    for m in [
        Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(http_duration.clone()),
        Box::new(http_in_flight.clone()),
        Box::new(upload_bytes.clone()),
        Box::new(download_bytes.clone()),
        Box::new(blobs_committed.clone()),
        Box::new(manifests_pushed.clone()),
        Box::new(blob_compose.clone()),
        Box::new(uploads_purged.clone()),
    ] {
        registry.register(m).expect("metric names are unique");
    }
    Metrics {
        registry,
        http_requests,
        http_duration,
        http_in_flight,
        upload_bytes,
        download_bytes,
        blobs_committed,
        manifests_pushed,
        blob_compose,
        uploads_purged,
    }
}

/// A counter family registered with the process's metrics on its first use (for
/// modules that keep their own, in a `OnceLock`): a registration failure is logged,
/// never fatal.
pub fn lazy_counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric");
    if let Err(e) = metrics().registry.register(Box::new(c.clone())) {
        tracing::warn!(error = %e, metric = name, "metric not registered");
    }
    c
}

/// A gauge family registered like [`lazy_counter_vec`].
pub fn lazy_gauge_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::IntGaugeVec {
    let g = prometheus::IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric");
    if let Err(e) = metrics().registry.register(Box::new(g.clone())) {
        tracing::warn!(error = %e, metric = name, "metric not registered");
    }
    g
}

/// A histogram family registered like [`lazy_counter_vec`], with `buckets` (seconds).
pub fn lazy_histogram_vec(
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("static metric");
    if let Err(e) = metrics().registry.register(Box::new(h.clone())) {
        tracing::warn!(error = %e, metric = name, "metric not registered");
    }
    h
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(build)
}

/// The metrics in Prometheus' text format.
pub fn render() -> String {
    let mut out = Vec::new();
    let families = metrics().registry.gather();
    if TextEncoder::new().encode(&families, &mut out).is_err() {
        return String::new();
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Installs the global tracing subscriber, writing to stderr. With `background` (a
/// server: one access log line per request), lines go to a shared buffer that a thread
/// of their own writes out in batches (`log_writer`: every 50 ms or 256 KiB), so a
/// request neither waits for a `write` to stderr nor wakes a thread; none is dropped
/// (past 8 MiB waiting, the writer waits instead), and the returned guard, dropped at
/// exit, writes what is left. Without it (commands that print and exit), lines are written at
/// once. `RUST_LOG` overrides
/// `level`. Colours only when stderr is a terminal (never into a file or a pipe),
/// `NO_COLOR` is unset and no `fields` are added. `fields` (`log.fields`) are added to
/// every line: `key=value` at the end of a text line, members of a JSON line. With
/// `access_log`, the access log's lines (target `wharf::access`) are written whatever
/// the level.
pub fn init_tracing(
    level: &str,
    json: bool,
    fields: Vec<(String, serde_json::Value)>,
    access_log: bool,
    background: bool,
) -> Option<log_writer::Guard> {
    // actix_http's dispatcher logs every malformed request at ERROR — clients probing
    // HTTPS on a plain-HTTP port (skopeo with --tls-verify=false) — though the error
    // is the client's, not the server's.
    let default_directives = format!(
        "{},sqlx=warn,actix_server=warn,actix_http::h1::dispatcher=off,h2=warn,hyper=warn,wharf::access={}",
        level,
        if access_log { "info" } else { "off" }
    );
    let log_filter = || {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&default_directives))
    };
    let filter = log_filter();
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && fields.is_empty();
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    type Base = tracing_subscriber::Registry;
    let (writer, guard) = match background
        .then(|| log_writer::BatchedLog::start(std::io::stderr()))
        .transpose()
    {
        Ok(Some((writer, guard))) => (LogWriter::Batched(writer), Some(guard)),
        Ok(None) => (LogWriter::Stderr, None),
        Err(e) => {
            eprintln!("log: cannot start the writing thread ({e}); writing to stderr directly");
            (LogWriter::Stderr, None)
        }
    };
    let extra = ExtraFields::new(fields);
    // The access log's lines written straight into the writing thread's batch when
    // nothing could make the subscriber write them otherwise (`access_line`).
    if let LogWriter::Batched(log) = &writer {
        if access_log && !json && !colour && std::env::var_os("RUST_LOG").is_none() {
            let text = extra.as_ref().map(|e| e.text.clone()).unwrap_or_default();
            access_line::write_directly(log.clone(), text);
        }
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(colour);
    // The text format, with the access log's lines written directly (`access_line`).
    let text = || access_line::Fast {
        inner: tracing_subscriber::fmt::format(),
        timer: tracing_subscriber::fmt::time::SystemTime,
    };
    let mut layers: Vec<Box<dyn tracing_subscriber::Layer<Base> + Send + Sync>> =
        vec![match (json, extra) {
            (true, Some(extra)) => fmt
                .event_format(extra.wrap(tracing_subscriber::fmt::format().json(), true))
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .with_filter(filter)
                .boxed(),
            (true, None) => fmt.json().with_filter(filter).boxed(),
            (false, Some(extra)) => fmt
                .event_format(extra.wrap(text(), false))
                .with_filter(filter)
                .boxed(),
            (false, None) => fmt.event_format(text()).with_filter(filter).boxed(),
        }];
    let mut gate = None;
    let (otel, otel_note) = otlp::layer::<Base>();
    if let Some(otel) = otel {
        // Its own filter: the core's spans (DEBUG) belong in a trace even when the log
        // shows INFO only.
        let spans = EnvFilter::try_from_env("OTEL_SPAN_FILTER")
            .unwrap_or_else(|_| EnvFilter::new("info,wharf=debug,sqlx=warn"));
        // And only inside sampled traces (an unsampled one is its root span alone, an
        // unsampled request nothing).
        use tracing_subscriber::filter::FilterExt as _;
        // (`SampledOnly` first: inside an unsampled request it says no at once.)
        layers.push(otel.with_filter(sampling::SampledOnly.and(spans)).boxed());
        gate = Some(log_filter());
    }
    let directives = std::env::var("RUST_LOG").unwrap_or_default();
    let _ = tracing_subscriber::registry()
        .with(sampling::Gated::new(layers, gate, &directives))
        .try_init();
    if let Some(note) = otel_note {
        tracing::info!("{note}");
    }
    guard
}

/// Where log lines go: the writing thread's batches, or stderr at once.
enum LogWriter {
    Batched(log_writer::BatchedLog),
    Stderr,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer =
        tracing_subscriber::fmt::writer::EitherWriter<log_writer::LineWriter<'a>, std::io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        use tracing_subscriber::fmt::writer::EitherWriter;
        match self {
            LogWriter::Batched(w) => EitherWriter::A(w.make_writer()),
            LogWriter::Stderr => EitherWriter::B(std::io::stderr()),
        }
    }
}

/// `log.fields`, rendered once for each format.
struct ExtraFields {
    /// ` key=value key2=value2`
    text: String,
    /// `"key":value,"key2":value2,`
    json: String,
}

impl ExtraFields {
    fn new(fields: Vec<(String, serde_json::Value)>) -> Option<ExtraFields> {
        if fields.is_empty() {
            return None;
        }
        let mut text = String::new();
        let mut json = String::new();
        for (k, v) in fields {
            let shown = match &v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            text.push_str(&format!(" {k}={shown}"));
            json.push_str(&format!(
                "{}:{},",
                serde_json::Value::String(k),
                serde_json::to_string(&v).unwrap_or_else(|_| "null".into())
            ));
        }
        Some(ExtraFields { text, json })
    }

    fn wrap<F>(self, inner: F, json: bool) -> WithFields<F> {
        WithFields {
            inner,
            extra: if json { self.json } else { self.text },
            json,
        }
    }
}

/// An event formatter that adds fixed fields to what `inner` writes.
struct WithFields<F> {
    inner: F,
    extra: String,
    json: bool,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithFields<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.inner.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        let had_newline = line.ends_with('\n');
        let body = line.trim_end_matches('\n');
        match (self.json, body.strip_prefix('{')) {
            (true, Some(rest)) => write!(writer, "{{{}{rest}", self.extra)?,
            _ => write!(writer, "{body}{}", self.extra)?,
        }
        if had_newline {
            writeln!(writer)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_fields_render_for_text_and_json() {
        let extra = ExtraFields::new(vec![
            ("service".into(), serde_json::json!("registry")),
            ("shard".into(), serde_json::json!(3)),
        ])
        .unwrap();
        assert_eq!(extra.text, " service=registry shard=3");
        let line = format!("{{{}\"msg\":\"x\"}}", extra.json);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["service"], "registry");
        assert_eq!(v["shard"], 3);
        assert!(ExtraFields::new(Vec::new()).is_none());
    }
}
