//! The redirect decision: CloudFront URLs checked with the public key
//! by `openssl` (independently of the signing code), the AWS-range bypass.
use base64::Engine as _;

use super::*;

fn q_hash(url: &Url) -> String {
    url.query_pairs()
        .find(|(k, _)| k == "Hash-Algorithm")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Runs `openssl` with `args`; true if it succeeded.
fn openssl(args: &[&str]) -> bool {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command (the independent signature check)");
    out.status.success()
}

struct Setup {
    _dir: tempfile::TempDir,
    public_pem: std::path::PathBuf,
    config: Config,
}

/// A configuration with S3 (never contacted: presigning is offline), the CloudFront
/// middleware with an `openssl`-made key, and AWS ranges for us-east-1 bypassing it.
fn setup(pkcs1: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cf.pem");
    let public_pem = dir.path().join("cf.pub.pem");
    let key_s = key.to_str().unwrap();
    let mut gen = vec!["genrsa", "-out", key_s];
    if pkcs1 {
        gen.push("-traditional");
    }
    gen.push("2048");
    assert!(openssl(&gen));
    let header = std::fs::read_to_string(&key).unwrap();
    assert_eq!(
        header.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        pkcs1,
        "{header:.40}"
    );
    assert!(openssl(&[
        "rsa",
        "-in",
        key_s,
        "-pubout",
        "-out",
        public_pem.to_str().unwrap()
    ]));
    let ranges = dir.path().join("ip-ranges.json");
    std::fs::write(
        &ranges,
        r#"{"prefixes": [
            {"ip_prefix": "3.5.140.0/22", "region": "ap-northeast-2", "service": "AMAZON"},
            {"ip_prefix": "52.94.0.0/22", "region": "us-east-1", "service": "AMAZON"}],
            "ipv6_prefixes": [{"ipv6_prefix": "2600:1f18::/33", "region": "us-east-1"}]}"#,
    )
    .unwrap();
    let yaml = format!(
        "http:\n  trustedproxies: [10.0.0.0/8, 192.0.2.1]\n\
         storage:\n  s3:\n    bucket: layers\n    regionendpoint: http://127.0.0.1:1\n    accesskey: AKIDEXAMPLE\n    secretkey: hush\n    rootdirectory: /root\n\
         middleware:\n  storage:\n    - name: cloudfront\n      options:\n        baseurl: https://d111111abcdef8.cloudfront.net/cdn/\n        privatekey: {key_s}\n        keypairid: K2JCJMDEHXQW5F\n        duration: 3000s\n        ipfilteredby: awsregion\n        awsregion: us-east-1, eu-west-1\n        iprangesfile: {}\n        updatefrequency: 12h\n",
        ranges.display()
    );
    let config = Config::from_tree(serde_norway::from_str(&yaml).unwrap()).unwrap();
    Setup {
        _dir: dir,
        public_pem,
        config,
    }
}

fn s3_backend(config: &Config) -> crate::blobs::object::ObjectBackend {
    match config.storage.driver() {
        crate::config::StorageDriver::S3(s3) => crate::blobs::cloud::s3(&s3).unwrap(),
        other => panic!("{other:?}"),
    }
}

/// Checks a CloudFront URL's signature with the public key through `openssl`: the
/// policy is rebuilt here from the URL, and the signature decoded from CloudFront's
/// base64 here, not by the signing code.
fn verify_cloudfront(url: &Url, public_pem: &std::path::Path, tamper: bool) -> bool {
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    let mut expires: u64 = q["Expires"].parse().unwrap();
    if tamper {
        expires += 1;
    }
    let mut resource = url.clone();
    resource.set_query(None);
    let policy = format!(
        "{{\"Statement\":[{{\"Resource\":\"{resource}\",\"Condition\":{{\"DateLessThan\":{{\"AWS:EpochTime\":{expires}}}}}}}]}}"
    );
    let standard: String = q["Signature"]
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '=',
            '~' => '/',
            c => c,
        })
        .collect();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(standard)
        .expect("Signature is base64 after undoing CloudFront's substitutions");
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = (dir.path().join("policy"), dir.path().join("sig"));
    std::fs::write(&p, policy).unwrap();
    std::fs::write(&s, signature).unwrap();
    openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        public_pem.to_str().unwrap(),
        "-signature",
        s.to_str().unwrap(),
        p.to_str().unwrap(),
    ])
}

#[tokio::test]
async fn cloudfront_urls_verify_and_aws_clients_get_s3() {
    for pkcs1 in [false, true] {
        let s = setup(pkcs1);
        let backend = s3_backend(&s.config);
        let r = Redirector::from_config(&s.config).unwrap().unwrap();
        let clients =
            crate::http::client_addr::ClientAddr::new(s.config.http.trusted_proxies().unwrap());
        let ip = |a: &str| Some(a.parse::<IpAddr>().unwrap());
        let go = |client: Option<IpAddr>| {
            let (r, backend) = (&r, &backend);
            async move {
                r.redirect(backend, "blobs/abc.0.1f", false, client)
                    .await
                    .unwrap()
            }
        };

        // A client outside AWS: CloudFront, signed for 3000 s.
        let before = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let cf = go(clients.client_ip(ip("203.0.113.9"), [])).await;
        assert_eq!(cf.target, RedirectTarget::CloudFront);
        let url = cf.url;
        assert_eq!(url.scheme(), "https");
        assert_eq!(url.host_str(), Some("d111111abcdef8.cloudfront.net"));
        assert_eq!(url.path(), "/cdn/root/blobs/abc.0.1f");
        let names: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        assert_eq!(
            names,
            ["Expires", "Signature", "Key-Pair-Id", "Hash-Algorithm"]
        );
        assert_eq!(q_hash(&url), "SHA256");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["Key-Pair-Id"], "K2JCJMDEHXQW5F");
        let expires: u64 = q["Expires"].parse().unwrap();
        assert!(
            (before + 3000..before + 3060).contains(&expires),
            "{expires} vs {before}"
        );
        assert!(
            !q["Signature"].contains(['+', '=', '/']),
            "not CloudFront's base64: {}",
            q["Signature"]
        );
        assert!(
            verify_cloudfront(&url, &s.public_pem, false),
            "signature does not verify: {url}"
        );
        assert!(
            !verify_cloudfront(&url, &s.public_pem, true),
            "a changed policy verified"
        );

        // Inside us-east-1's ranges (IPv4 and IPv6): the S3 presigned URL, 20 minutes.
        for inside in ["52.94.1.2", "2600:1f18::9"] {
            let s3 = go(clients.client_ip(ip(inside), [])).await;
            assert_eq!(s3.target, RedirectTarget::Presigned, "{inside}");
            assert_eq!(s3.url.host_str(), Some("127.0.0.1"));
            assert_eq!(s3.url.path(), "/layers/root/blobs/abc.0.1f");
            let q: std::collections::HashMap<_, _> = s3.url.query_pairs().into_owned().collect();
            assert_eq!(q["X-Amz-Expires"], "1200");
            assert!(q.contains_key("X-Amz-Signature"));
        }
        // AWS, but not a configured region: CloudFront.
        let other = go(clients.client_ip(ip("3.5.140.1"), [])).await;
        assert_eq!(other.target, RedirectTarget::CloudFront);

        // X-Forwarded-For from an untrusted peer is ignored; from a trusted proxy, believed.
        let forged = go(clients.client_ip(ip("203.0.113.9"), ["52.94.1.2"])).await;
        assert_eq!(forged.target, RedirectTarget::CloudFront);
        let proxied = go(clients.client_ip(ip("10.0.0.5"), ["198.51.100.1, 52.94.1.2"])).await;
        assert_eq!(proxied.target, RedirectTarget::Presigned);
        let proxied = go(clients.client_ip(ip("192.0.2.1"), ["52.94.1.2, 10.3.3.3"])).await;
        assert_eq!(proxied.target, RedirectTarget::Presigned);
    }
}

#[test]
fn bad_key_or_ranges_file_names_the_key() {
    let s = setup(false);
    let mut c = s.config.clone();
    let crate::config::StorageMiddleware::CloudFront(o) = &mut c.middleware.storage[0];
    o.privatekey = s.public_pem.clone(); // a public key is no private key
    let e = Redirector::from_config(&c).unwrap_err().to_string();
    assert!(
        e.contains("middleware.storage[0].options.privatekey"),
        "{e}"
    );
    let mut c = s.config.clone();
    let crate::config::StorageMiddleware::CloudFront(o) = &mut c.middleware.storage[0];
    o.iprangesfile = Some(s.public_pem.clone());
    let e = Redirector::from_config(&c).unwrap_err().to_string();
    assert!(
        e.contains("middleware.storage[0].options.iprangesfile"),
        "{e}"
    );
    // storage.redirect.disable wins over the middleware.
    let mut c = s.config.clone();
    c.storage.redirect.disable = true;
    assert!(Redirector::from_config(&c).unwrap().is_none());
}
