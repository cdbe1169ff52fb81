//! The access log's text line, written without tracing-subscriber's general formatter
//! and, when it can be, without tracing at all.
//!
//! One access log line (`wharf::access`) per request went through the text formatter's
//! general path: styles asked for every field name (also without colours), the message
//! escaped one character at a time, every value through `Debug`. That was ~20,000
//! instructions a request — as much as serving a small manifest's lookup. [`Fast`]
//! writes the same bytes for the access log's events (text format, no colours, no span
//! around it), and hands every other event to the formatter it wraps: the line is the
//! format `log.formatter: text` documents, unchanged (a test compares the two).
//!
//! Even so, the event itself — dispatch, the filters of every layer, the field
//! visitors, the formatter's thread-local buffer — cost ~10,000 instructions a request
//! (callgrind, `scripts/bench-observability-instructions`). So when nothing can change
//! the line (text format, no colours, the log written by `log_writer`'s thread, the
//! filter the default one, no span current), [`emit`] writes it straight into the log
//! writer's batch: the same bytes (a test compares them with the general formatter's),
//! the timestamp's date and time formatted once a second per thread. Otherwise it is a
//! `tracing` event as before.

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The access log's target.
const TARGET: &str = "wharf::access";

/// `inner` (tracing's full text format with `timer`), the access log's lines written
/// directly.
pub struct Fast<F, T> {
    pub inner: F,
    pub timer: T,
}

impl<S, N, F, T> FormatEvent<S, N> for Fast<F, T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if meta.target() != TARGET
            || *meta.level() != tracing::Level::INFO
            || writer.has_ansi_escapes()
            || ctx.event_scope().is_some()
        {
            return self.inner.format_event(ctx, writer, event);
        }
        // As `Format<Full, T>` writes it: time, level (padded to 5), target, fields.
        if self.timer.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        writer.write_str("  INFO ")?;
        writer.write_str(TARGET)?;
        writer.write_str(": ")?;
        let mut fields = Fields {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// Writes fields as tracing's `DefaultVisitor` does: the message first as it comes
/// (escaped), then `name=value` with `Debug`, separated by spaces.
struct Fields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"))
        } else {
            self.record_debug(field, &value)
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        if self.first {
            self.first = false;
        } else if let Err(e) = self.writer.write_char(' ') {
            self.result = Err(e);
            return;
        }
        let name = field.name();
        self.result = match name {
            "message" => write!(Escaping(&mut *self.writer), "{value:?}"),
            name => {
                let name = name.strip_prefix("r#").unwrap_or(name);
                write!(self.writer, "{name}={value:?}")
            }
        };
    }
}

/// Escapes what tracing-subscriber escapes in a message (terminal control characters),
/// writing runs of other characters at once.
struct Escaping<W>(W);

impl<W: fmt::Write> fmt::Write for Escaping<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Nothing to escape (each escaped character is one of these bytes, or starts
        // with 0xC2: U+0080–U+009F): all at once.
        // (A fold, not `any`: without an early exit the compiler can test many bytes
        // at once.)
        if !s.bytes().fold(false, |found, b| {
            found | matches!(b, 0x1b | 0x07 | 0x08 | 0x0c | 0x7f | 0xc2)
        }) {
            return self.0.write_str(s);
        }
        let mut start = 0;
        for (i, ch) in s.char_indices() {
            let escaped = matches!(ch, '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f')
                || (0x80..=0x9f).contains(&(ch as u32));
            if escaped {
                self.0.write_str(&s[start..i])?;
                match ch {
                    '\x1b' => self.0.write_str("\\x1b")?,
                    '\x07' => self.0.write_str("\\x07")?,
                    '\x08' => self.0.write_str("\\x08")?,
                    '\x0c' => self.0.write_str("\\x0c")?,
                    '\x7f' => self.0.write_str("\\x7f")?,
                    c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
                }
                start = i + ch.len_utf8();
            }
        }
        self.0.write_str(&s[start..])
    }
}

/// What an access log line says.
#[derive(Debug, Clone, Copy)]
pub struct AccessFields<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub duration_ms: f64,
    pub user_agent: &'a str,
    pub client: Option<IpAddr>,
    pub request_id: &'a str,
}

/// Where [`emit`] writes lines itself, if it may: the log's writing thread, and
/// `log.fields` as the text format appends them.
struct Direct {
    log: super::log_writer::BatchedLog,
    extra: String,
}

static DIRECT: OnceLock<Direct> = OnceLock::new();

/// Lets [`emit`] write the access log's lines into `log` itself (`telemetry::init_tracing`
/// calls it when the line cannot differ from the subscriber's: text, no colours, the
/// default filter); `extra` is `log.fields` as the text format appends them.
pub(super) fn write_directly(log: super::log_writer::BatchedLog, extra: String) {
    let _ = DIRECT.set(Direct { log, extra });
}

/// Writes the access log line of `f`: straight into the log writer's batch when
/// [`write_directly`] allowed it and no span is current (tracing's formatter would
/// name it), else as a `tracing` event (target `wharf::access`).
pub fn emit(f: &AccessFields<'_>) {
    if !emit_directly(f) {
        event(f);
    }
}

fn emit_directly(f: &AccessFields<'_>) -> bool {
    let Some(direct) = DIRECT.get() else {
        return false;
    };
    if tracing::dispatcher::get_default(|d| d.current_span().id().is_some()) {
        return false;
    }
    thread_local! {
        static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    }
    LINE.try_with(|line| {
        let Ok(mut line) = line.try_borrow_mut() else {
            return false;
        };
        line.clear();
        timestamp(&mut line, SystemTime::now());
        text_line(&mut line, f, &direct.extra);
        direct.log.append(line.as_bytes());
        if line.capacity() > 64 * 1024 {
            *line = String::new();
        }
        true
    })
    .unwrap_or(false)
}

/// The access log line as a `tracing` event.
fn event(f: &AccessFields<'_>) {
    tracing::info!(
        target: "wharf::access",
        method = %f.method,
        path = %f.path,
        status = f.status,
        bytes = f.bytes,
        duration_ms = f.duration_ms,
        user_agent = %f.user_agent,
        client = %OrEmpty(f.client),
        request_id = %f.request_id,
        "{} {} {}",
        f.method,
        f.path,
        f.status
    );
}

/// An optional value shown as itself, or as nothing.
struct OrEmpty<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for OrEmpty<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => Ok(()),
        }
    }
}

/// The line after its timestamp, as [`Fast`] (and tracing's text format) writes the
/// event of [`event`], then `extra` and the newline.
fn text_line(out: &mut String, f: &AccessFields<'_>, extra: &str) {
    out.push_str("  INFO wharf::access: ");
    // The message, "{method} {path} {status}", escaped (escaping works per character).
    let _ = Escaping(&mut *out).write_str(f.method);
    out.push(' ');
    let _ = Escaping(&mut *out).write_str(f.path);
    out.push(' ');
    push_u64(out, f.status.into());
    out.push_str(" method=");
    out.push_str(f.method);
    out.push_str(" path=");
    out.push_str(f.path);
    out.push_str(" status=");
    push_u64(out, f.status.into());
    out.push_str(" bytes=");
    push_u64(out, f.bytes);
    out.push_str(" duration_ms=");
    let _ = write!(out, "{:?}", f.duration_ms);
    out.push_str(" user_agent=");
    out.push_str(f.user_agent);
    out.push_str(" client=");
    match f.client {
        Some(IpAddr::V4(ip)) => {
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, octet.into());
            }
        }
        Some(ip) => {
            let _ = write!(out, "{ip}");
        }
        None => {}
    }
    out.push_str(" request_id=");
    out.push_str(f.request_id);
    out.push_str(extra);
    out.push('\n');
}

/// `n` in decimal, as `Display` writes it.
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for d in &digits[at..] {
        out.push(char::from(*d));
    }
}

/// The last second a timestamp can show with four digits of year (9999-12-31T23:59:59).
const LAST_SECOND: u64 = 253_402_300_799;

/// `now` as tracing-subscriber's `SystemTime` timer writes it (`2026-11-30T06:34:15.123456Z`,
/// UTC): the date and time up to the seconds formatted once a second (per thread), then
/// the microseconds.
fn timestamp(out: &mut String, now: SystemTime) {
    thread_local! {
        /// The second last formatted on this thread, and its `YYYY-MM-DDTHH:MM:SS.`.
        static SECOND: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
    }
    let since = match now.duration_since(UNIX_EPOCH) {
        Ok(d) if d.as_secs() <= LAST_SECOND => d,
        // Before 1970 or after 9999: tracing's own timer (it reads the clock itself).
        _ => {
            use tracing_subscriber::fmt::time::FormatTime as _;
            let _ = tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(out));
            return;
        }
    };
    let secs = since.as_secs();
    let (cached, mut prefix) = SECOND.get();
    if cached != secs {
        // `YYYY-MM-DDTHH:MM:SSZ`: the same digits; the `Z` becomes the point.
        let text =
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string();
        let Some(head) = text.as_bytes().get(..19) else {
            return;
        };
        prefix[..19].copy_from_slice(head);
        prefix[19] = b'.';
        SECOND.set((secs, prefix));
    }
    out.push_str(std::str::from_utf8(&prefix).unwrap_or_default());
    let micros = since.subsec_micros();
    for place in [100_000, 10_000, 1_000, 100, 10, 1] {
        out.push(char::from(b'0' + (micros / place % 10) as u8));
    }
    out.push('Z');
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::FormatTime;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::Fast;

    #[derive(Clone, Copy)]
    struct Fixed;

    impl FormatTime for Fixed {
        fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
            w.write_str("2026-11-30T06:34:15.123456Z")
        }
    }

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Events like the access log's (and others), written by `fast` or not.
    fn written(fast: bool) -> String {
        let lines = Lines::default();
        let out = lines.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || out.clone());
        let format = tracing_subscriber::fmt::format().with_timer(Fixed);
        let events = || {
            for (path, agent) in [
                ("/v2/a/b/manifests/v1", "ab/2.3"),
                ("/v2/odd\x1b[31m\u{85}é\x7f/x", "curl \x1b[2J \"q\""),
                ("", ""),
            ] {
                let client: Option<std::net::IpAddr> = Some([127, 0, 0, 1].into());
                tracing::info!(
                    target: "wharf::access",
                    method = %"GET",
                    path = %path,
                    status = 200u16,
                    bytes = 4096u64,
                    duration_ms = 0.25f64,
                    user_agent = %agent,
                    client = %client.map(|c| c.to_string()).unwrap_or_default(),
                    request_id = %"a1b2",
                    "{} {} {}",
                    "GET",
                    path,
                    200
                );
                tracing::info!(target: "wharf::access", duration_ms = 3.0f64, "whole {}", 1);
            }
            tracing::info!(target: "wharf::other", n = 1, "not the access log");
            let _s = tracing::info_span!("HTTP request", id = 7).entered();
            tracing::info!(target: "wharf::access", status = 500u16, "inside a span");
        };
        if fast {
            let layer = layer.event_format(Fast {
                inner: format,
                timer: Fixed,
            });
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), events);
        } else {
            let layer = layer.event_format(format);
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), events);
        }
        let bytes = lines.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// Access lines of every shape: plain, with what the message escapes, IPv6, no
    /// client, an empty path and agent, durations `Debug` writes in several ways.
    fn access_lines() -> Vec<super::AccessFields<'static>> {
        let plain = super::AccessFields {
            method: "GET",
            path: "/v2/a/b/manifests/v1",
            status: 200,
            bytes: 4096,
            duration_ms: 0.25,
            user_agent: "ab/2.3",
            client: Some([127, 0, 0, 1].into()),
            request_id: "0b6a2f1e-5c3d-4e8f-9a7b-000000000001",
        };
        vec![
            plain,
            super::AccessFields {
                method: "PATCH",
                path: "/v2/odd\x1b[31m\u{85}é\x7f\x07\x08\x0c/x",
                status: 404,
                bytes: 0,
                duration_ms: 1.0,
                user_agent: "curl \x1b[2J \"q\"",
                client: Some("2001:db8::1".parse().unwrap()),
                ..plain
            },
            super::AccessFields {
                method: "HEAD",
                path: "",
                status: 500,
                bytes: u64::MAX,
                duration_ms: 123_456_789.123_456_78,
                user_agent: "",
                client: None,
                request_id: "",
            },
            super::AccessFields {
                duration_ms: 0.000_012_3,
                client: Some([10, 0, 200, 255].into()),
                ..plain
            },
            super::AccessFields {
                duration_ms: 1e21,
                client: Some("::ffff:10.1.2.3".parse().unwrap()),
                ..plain
            },
        ]
    }

    /// The lines tracing's general text formatter writes for `lines` (with the fixed
    /// time), `log.fields` added as `telemetry::init_tracing` adds them.
    fn general(
        lines: &[super::AccessFields<'_>],
        fields: Vec<(String, serde_json::Value)>,
    ) -> String {
        let out = Lines::default();
        let sink = out.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || sink.clone());
        let format = tracing_subscriber::fmt::format().with_timer(Fixed);
        let events = || {
            for l in lines {
                super::event(l);
            }
        };
        match crate::telemetry::ExtraFields::new(fields) {
            Some(extra) => {
                let layer = layer.event_format(extra.wrap(format, false));
                tracing::subscriber::with_default(
                    tracing_subscriber::registry().with(layer),
                    events,
                );
            }
            None => {
                let layer = layer.event_format(format);
                tracing::subscriber::with_default(
                    tracing_subscriber::registry().with(layer),
                    events,
                );
            }
        }
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_direct_line_is_the_general_formatters_byte_for_byte() {
        let lines = access_lines();
        for (fields, extra) in [
            (vec![], ""),
            (
                vec![
                    ("service".to_string(), serde_json::json!("registry")),
                    ("shard".to_string(), serde_json::json!(3)),
                ],
                " service=registry shard=3",
            ),
        ] {
            let general = general(&lines, fields);
            assert_eq!(general.lines().count(), lines.len(), "{general}");
            assert!(general.contains("\\x1b[31m"), "{general}");
            let mut direct = String::new();
            for l in &lines {
                direct.push_str("2026-11-30T06:34:15.123456Z");
                super::text_line(&mut direct, l, extra);
            }
            assert_eq!(direct, general);
        }
    }

    #[test]
    fn the_cached_timestamp_is_the_timers_and_rolls_over() {
        use std::time::{Duration, SystemTime, UNIX_EPOCH};
        let at = |secs: u64, micros: u32| {
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros.into())
        };
        // 2026-11-30T06:34:15
        let t = 1_796_020_455;
        let instants = [
            at(t, 0),
            at(t, 999_999),
            at(t + 1, 0), // the next second: formatted anew
            at(t + 1, 7),
            at(t, 123_456),             // back to an earlier second
            at(1_798_761_599, 999_999), // 2026-12-31T23:59:59.999999
            at(1_798_761_600, 1),       // 2027-01-01
            at(1_835_395_200, 42),      // 2028-02-29
            at(0, 0),
            at(super::LAST_SECOND, 999_999),
            at(t, 5) + Duration::from_nanos(999), // nanoseconds are cut, not rounded
        ];
        for instant in instants {
            let mut ours = String::new();
            super::timestamp(&mut ours, instant);
            assert_eq!(ours, humantime::format_rfc3339_micros(instant).to_string());
        }
        // Tracing's own timer writes the same shape (it reads the clock itself).
        let mut theirs = String::new();
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut theirs))
            .unwrap();
        let mut ours = String::new();
        super::timestamp(&mut ours, SystemTime::now());
        let shape = |s: &str| {
            s.chars()
                .map(|c| if c.is_ascii_digit() { '0' } else { c })
                .collect::<String>()
        };
        assert_eq!(shape(&ours), shape(&theirs));
        assert_eq!(shape(&ours), "0000-00-00T00:00:00.000000Z");
    }

    #[test]
    fn the_access_line_is_the_general_formatters_byte_for_byte() {
        let general = written(false);
        let fast = written(true);
        assert_eq!(general.lines().count(), 8, "{general}");
        assert!(general.contains("\\x1b[31m"), "{general}");
        assert_eq!(fast, general);
    }
}
