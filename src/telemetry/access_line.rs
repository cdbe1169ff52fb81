//! The access log's text line, written without tracing-subscriber's general formatter.
//!
//! One access log line (`wharf::access`) per request went through the text formatter's
//! general path: styles asked for every field name (also without colours), the message
//! escaped one character at a time, every value through `Debug`. That was ~20,000
//! instructions a request — as much as serving a small manifest's lookup. [`Fast`]
//! writes the same bytes for the access log's events (text format, no colours, no span
//! around it), and hands every other event to the formatter it wraps: the line is the
//! format `log.formatter: text` documents, unchanged (a test compares the two).

use std::fmt::{self, Write as _};

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
            "message" => write!(Escaping(self.writer), "{value:?}"),
            name => {
                let name = name.strip_prefix("r#").unwrap_or(name);
                write!(self.writer, "{name}={value:?}")
            }
        };
    }
}

/// Escapes what tracing-subscriber escapes in a message (terminal control characters),
/// writing runs of other characters at once.
struct Escaping<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Nothing to escape (each escaped character is one of these bytes, or starts
        // with 0xC2: U+0080–U+009F): all at once.
        if !s
            .bytes()
            .any(|b| matches!(b, 0x1b | 0x07 | 0x08 | 0x0c | 0x7f | 0xc2))
        {
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

    #[test]
    fn the_access_line_is_the_general_formatters_byte_for_byte() {
        let general = written(false);
        let fast = written(true);
        assert_eq!(general.lines().count(), 8, "{general}");
        assert!(general.contains("\\x1b[31m"), "{general}");
        assert_eq!(fast, general);
    }
}
