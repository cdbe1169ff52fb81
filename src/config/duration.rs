//! Durations written as distribution writes them (Go's `time.ParseDuration` forms that
//! people use: `3000s`, `20m`, `12h`, `1h30m`).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A configured duration; deserializes from a string such as `"20m"` or `"3000s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    pub fn parse(text: &str) -> Result<Self, String> {
        humantime::parse_duration(text.trim())
            .map(ConfigDuration)
            .map_err(|e| format!("{text:?} is not a duration such as \"20m\" or \"3000s\": {e}"))
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(serde_norway::Number),
        }
        match Raw::deserialize(d)? {
            Raw::Text(text) => ConfigDuration::parse(&text).map_err(serde::de::Error::custom),
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "{n} has no unit: write a duration such as \"{n}s\" or \"20m\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_durations() {
        let p = |s| ConfigDuration::parse(s).map(|d| d.0.as_secs());
        assert_eq!(p("3000s"), Ok(3000));
        assert_eq!(p("20m"), Ok(1200));
        assert_eq!(p("12h"), Ok(43200));
        assert_eq!(p("1h30m"), Ok(5400));
        assert!(p("soon").is_err());
        assert!(p("").is_err());
    }
}
