//! `log`: the log level, the line format, fields added to every line and the access
//! log (distribution's keys, every value checked).

use std::collections::BTreeMap;

use serde::Deserialize;

/// `log`: distribution's keys, every value checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info` (the default) or `debug`, as in distribution (any case),
    /// and `trace`. `RUST_LOG`, when set, replaces it.
    #[serde(default)]
    pub level: LogLevel,
    /// `text` (the default), `json`, or `logstash` (JSON lines, as `json`).
    #[serde(default)]
    pub formatter: LogFormatter,
    /// Added to every log line (`key=value` in text, members of JSON lines).
    #[serde(default)]
    pub fields: Option<BTreeMap<String, serde_norway::Value>>,
    /// `log.accesslog`: one line per request (target `wharf::access`) unless
    /// `disabled`.
    #[serde(default)]
    pub accesslog: AccessLogConfig,
}

/// `log.accesslog`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    #[serde(default)]
    pub disabled: bool,
}

/// `log.level`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    const NAMES: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

    /// The level as a tracing filter directive.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let levels = [
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ];
        levels
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(&s))
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{s:?} is not a log level ({})",
                    Self::NAMES.join(", ")
                ))
            })
    }
}

/// `log.formatter`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormatter {
    #[default]
    Text,
    Json,
    /// distribution's logstash formatter: JSON lines with logstash's field names;
    /// Wharf writes its usual JSON lines.
    Logstash,
}

impl LogFormatter {
    /// Whether lines are JSON objects.
    pub fn is_json(self) -> bool {
        matches!(self, LogFormatter::Json | LogFormatter::Logstash)
    }
}
