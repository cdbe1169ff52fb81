//! `middleware.storage`: distribution's storage middleware list. Wharf implements
//! `cloudfront` (blob pulls redirected to CloudFront signed URLs), with distribution's
//! option names; what the options do is in `crate::redirect`.

use std::path::PathBuf;

use serde::Deserialize;

use super::duration::ConfigDuration;
use super::ConfigError;

/// `middleware`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiddlewareConfig {
    #[serde(default)]
    pub storage: Vec<StorageMiddleware>,
}

/// One entry of `middleware.storage`: `{name: cloudfront, options: {…}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "name", content = "options", deny_unknown_fields)]
pub enum StorageMiddleware {
    #[serde(rename = "cloudfront")]
    CloudFront(CloudFrontOptions),
}

/// Which clients get the plain S3 URL instead of CloudFront's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFilteredBy {
    /// Everyone gets CloudFront.
    #[default]
    None,
    /// Clients inside any AWS range get S3.
    Aws,
    /// Clients inside the AWS ranges of `awsregion` get S3.
    AwsRegion,
}

/// `middleware.storage[].options` of `cloudfront`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudFrontOptions {
    /// `https://dxxxx.cloudfront.net[/path]`; the object's key is appended.
    pub baseurl: String,
    /// Path of the CloudFront key pair's private key (PEM, PKCS#1 or PKCS#8).
    pub privatekey: PathBuf,
    /// The CloudFront public key's ID (`Key-Pair-Id`).
    pub keypairid: String,
    /// How long a signed URL is valid (default 20 minutes).
    #[serde(default = "default_duration")]
    pub duration: ConfigDuration,
    #[serde(default)]
    pub ipfilteredby: IpFilteredBy,
    /// Comma-separated AWS regions for `ipfilteredby: awsregion`.
    #[serde(default)]
    pub awsregion: Option<String>,
    /// AWS's `ip-ranges.json`, read from this local path.
    #[serde(default)]
    pub iprangesfile: Option<PathBuf>,
    /// AWS's `ip-ranges.json`, downloaded from this URL (distribution's key), in the
    /// background: until the first download, no client counts as inside AWS.
    #[serde(default)]
    pub iprangesurl: Option<String>,
    /// How often the ranges file is re-read (default 12 hours).
    #[serde(default = "default_update")]
    pub updatefrequency: ConfigDuration,
}

fn default_duration() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(20 * 60))
}

fn default_update() -> ConfigDuration {
    ConfigDuration(std::time::Duration::from_secs(12 * 3600))
}

impl CloudFrontOptions {
    /// The regions of `awsregion`, trimmed.
    pub fn regions(&self) -> Vec<String> {
        self.awsregion
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect()
    }
}

impl MiddlewareConfig {
    /// The `cloudfront` entry and its index, if there is one.
    pub fn cloudfront(&self) -> Option<(usize, &CloudFrontOptions)> {
        // Only one kind of middleware exists so far; this becomes a filter with more.
        self.storage
            .iter()
            .enumerate()
            .map(|(i, m)| match m {
                StorageMiddleware::CloudFront(o) => (i, o),
            })
            .next()
    }

    pub(super) fn validate(&self, storage_is_s3: bool) -> Result<(), ConfigError> {
        if self.storage.len() > 1 {
            return Err(ConfigError::key(
                "middleware.storage",
                "at most one storage middleware (cloudfront) is supported",
            ));
        }
        let Some((i, o)) = self.cloudfront() else {
            return Ok(());
        };
        let key = |k: &str| format!("middleware.storage[{i}].{k}");
        if !storage_is_s3 {
            return Err(ConfigError::key(
                key("name"),
                "the cloudfront middleware needs storage.s3",
            ));
        }
        match url::Url::parse(&o.baseurl) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {}
            _ => {
                return Err(ConfigError::key(
                    key("options.baseurl"),
                    format!("{:?} is not an http(s) URL without a query", o.baseurl),
                ))
            }
        }
        if o.keypairid.trim().is_empty() {
            return Err(ConfigError::key(
                key("options.keypairid"),
                "must not be empty",
            ));
        }
        for (name, d) in [
            ("duration", o.duration),
            ("updatefrequency", o.updatefrequency),
        ] {
            if d.0.is_zero() {
                return Err(ConfigError::key(
                    key(&format!("options.{name}")),
                    "must be more than 0",
                ));
            }
        }
        if o.iprangesfile.is_some() && o.iprangesurl.is_some() {
            return Err(ConfigError::key(
                key("options.iprangesurl"),
                "give iprangesfile or iprangesurl, not both",
            ));
        }
        if let Some(url) = &o.iprangesurl {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::key(
                    key("options.iprangesurl"),
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        if o.ipfilteredby != IpFilteredBy::None
            && o.iprangesfile.is_none()
            && o.iprangesurl.is_none()
        {
            return Err(ConfigError::key(
                key("options.iprangesfile"),
                "needed when ipfilteredby is aws or awsregion (the path of AWS's ip-ranges.json; or iprangesurl to download it)",
            ));
        }
        if o.ipfilteredby == IpFilteredBy::AwsRegion && o.regions().is_empty() {
            return Err(ConfigError::key(
                key("options.awsregion"),
                "needed when ipfilteredby is awsregion (comma-separated regions)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, IpFilteredBy, StorageMiddleware};

    fn load(yaml: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
        let mut tree: serde_norway::Value = serde_norway::from_str(yaml).unwrap();
        if tree.is_null() {
            tree = serde_norway::Value::Mapping(Default::default());
        }
        super::super::env::apply_overrides(
            &mut tree,
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .map_err(|e| e.to_string())?;
        Config::from_tree(tree).map_err(|e| e.to_string())
    }

    const S3: &str = "storage:\n  s3:\n    bucket: b\n";

    fn cloudfront(options: &str) -> String {
        format!("{S3}middleware:\n  storage:\n    - name: cloudfront\n      options:\n{options}")
    }

    #[test]
    fn redirect_keys_and_defaults() {
        let c = load("", &[]).unwrap();
        assert!(!c.storage.redirect.disable);
        assert_eq!(c.storage.redirect.expiry.0.as_secs(), 1200);
        assert!(c.http.trusted_proxies().unwrap().is_empty());
        let c = load(
            "storage:\n  redirect:\n    expiry: 5m\nhttp:\n  trustedproxies: [10.0.0.0/8, '::1']\n",
            &[("REGISTRY_STORAGE_REDIRECT_DISABLE", "true")],
        )
        .unwrap();
        assert!(c.storage.redirect.disable);
        assert_eq!(c.storage.redirect.expiry.0.as_secs(), 300);
        assert_eq!(c.http.trusted_proxies().unwrap().len(), 2);
        let c = load(
            "",
            &[
                ("REGISTRY_STORAGE_REDIRECT_EXPIRY", "1h"),
                ("REGISTRY_HTTP_TRUSTEDPROXIES", "[192.0.2.0/24]"),
            ],
        )
        .unwrap();
        assert_eq!(c.storage.redirect.expiry.0.as_secs(), 3600);
        assert_eq!(
            c.http.trusted_proxies().unwrap()[0].to_string(),
            "192.0.2.0/24"
        );
    }

    #[test]
    fn cloudfront_with_distribution_options() {
        let c = load(
            &cloudfront(
                "        baseurl: https://d111111abcdef8.cloudfront.net/\n        privatekey: /etc/wharf/cf.pem\n        keypairid: K2JCJMDEHXQW5F\n        duration: 3000s\n        ipfilteredby: awsregion\n        awsregion: us-east-1, use-east-2\n        iprangesfile: /etc/wharf/ip-ranges.json\n        updatefrequency: 12h\n",
            ),
            &[],
        )
        .unwrap();
        let (i, o) = c.middleware.cloudfront().unwrap();
        assert_eq!(i, 0);
        assert_eq!(o.duration.0.as_secs(), 3000);
        assert_eq!(o.updatefrequency.0.as_secs(), 43200);
        assert_eq!(o.ipfilteredby, IpFilteredBy::AwsRegion);
        assert_eq!(o.regions(), ["us-east-1", "use-east-2"]);
        // Defaults: 20 minutes, no filter, 12 hours.
        let c = load(
            &cloudfront("        baseurl: https://d1.cloudfront.net\n        privatekey: /k.pem\n        keypairid: K1\n"),
            &[],
        )
        .unwrap();
        let StorageMiddleware::CloudFront(o) = &c.middleware.storage[0];
        assert_eq!(o.duration.0.as_secs(), 1200);
        assert_eq!(o.ipfilteredby, IpFilteredBy::None);
        // The whole list from the environment, as YAML.
        let c = load(
            S3,
            &[(
                "REGISTRY_MIDDLEWARE_STORAGE",
                "[{name: cloudfront, options: {baseurl: 'https://d1.cloudfront.net', privatekey: /k.pem, keypairid: K1, duration: 60s}}]",
            )],
        )
        .unwrap();
        assert_eq!(
            c.middleware.cloudfront().unwrap().1.duration.0.as_secs(),
            60
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let base = "        baseurl: https://d1.cloudfront.net\n        privatekey: /k.pem\n        keypairid: K1\n";
        let cases: Vec<(String, &str)> = vec![
            ("storage:\n  redirect:\n    expiry: soon\n".into(), "storage.redirect.expiry"),
            ("storage:\n  redirect:\n    expiry: 0s\n".into(), "storage.redirect.expiry"),
            ("storage:\n  redirect:\n    expiry: 8days\n".into(), "storage.redirect.expiry"),
            ("storage:\n  redirect:\n    expire: 5m\n".into(), "expire"),
            ("http:\n  trustedproxies: [10.0.0.0/33]\n".into(), "http.trustedproxies[0]"),
            (cloudfront(&format!("{base}        duration: 20\n")), "middleware.storage[0].options.duration"),
            (cloudfront(&format!("{base}        duration: x\n")), "middleware.storage[0].options.duration"),
            (cloudfront(&format!("{base}        ipfilteredby: gcp\n")), "middleware.storage[0].options.ipfilteredby"),
            (cloudfront(&format!("{base}        ipfilteredby: aws\n")), "middleware.storage[0].options.iprangesfile"),
            (
                cloudfront(&format!("{base}        ipfilteredby: awsregion\n        iprangesfile: /r.json\n")),
                "middleware.storage[0].options.awsregion",
            ),
            (
                cloudfront(&format!("{base}        ipfilteredby: aws\n        iprangesfile: /r.json\n        iprangesurl: https://ip-ranges.amazonaws.com/ip-ranges.json\n")),
                "middleware.storage[0].options.iprangesurl",
            ),
            (
                cloudfront(&format!("{base}        ipfilteredby: aws\n        iprangesurl: ip-ranges.json\n")),
                "middleware.storage[0].options.iprangesurl",
            ),
            (cloudfront(&format!("{base}        colour: blue\n")), "colour"),
            (cloudfront("        privatekey: /k.pem\n        keypairid: K1\n"), "baseurl"),
            (
                cloudfront("        baseurl: d1.cloudfront.net\n        privatekey: /k.pem\n        keypairid: K1\n"),
                "middleware.storage[0].options.baseurl",
            ),
            (
                "middleware:\n  storage:\n    - name: cloudfront\n      options: {baseurl: 'https://d1', privatekey: /k, keypairid: K}\n".into(),
                "middleware.storage[0].name",
            ),
        ];
        for (yaml, key) in cases {
            let e = load(&yaml, &[]).unwrap_err();
            assert!(e.contains(key), "{yaml:?}: {e}");
            assert!(!e.contains("untagged"), "{e}");
        }
    }
}
