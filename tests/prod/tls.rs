//! `http.tls`: HTTPS, mutual TLS, `minimumtls`, rotation, HTTP/2, skopeo over HTTPS,
//! and the values refused.

use std::time::Duration;

use crate::support::{check_config, client, config, free_port, tls_http, wharf, Ca, Serve};

/// The DER of the certificate the server presented on a new connection.
async fn served_certificate(ca_pem: &str, url: &str) -> Vec<u8> {
    let c = client(ca_pem).tls_info(true).build().unwrap();
    let resp = c.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn https_with_a_generated_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wharf test CA");
    ca.write_server(dir.path(), "wharf");
    let port = free_port();
    let serve = Serve::start(&config(dir.path(), &tls_http(dir.path(), port, ""), ""));
    assert!(serve
        .wait_for("listening on")
        .contains(&format!("https://127.0.0.1:{port}")));
    let url = format!("https://127.0.0.1:{port}/v2/");
    let resp = client(&ca.pem())
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    // Also by name.
    let resp = client(&ca.pem())
        .build()
        .unwrap()
        .get(format!("https://localhost:{port}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A client that does not trust the CA refuses the server.
    let other = Ca::new("another CA");
    let err = client(&other.pem()).build().unwrap().get(&url).send().await;
    assert!(err.is_err(), "{err:?}");
    // Plain HTTP on the HTTPS port gets no registry answer.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/v2/")).await;
    assert!(plain.map_or(true, |r| r.status() != 200));
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate_from_clientcas() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("server CA");
    ca.write_server(dir.path(), "wharf");
    let clients = Ca::new("client CA");
    std::fs::write(dir.path().join("clients.pem"), clients.pem()).unwrap();
    let port = free_port();
    let more = format!(
        "    clientcas:\n      - {}\n",
        dir.path().join("clients.pem").display()
    );
    let _serve = Serve::start(&config(dir.path(), &tls_http(dir.path(), port, &more), ""));
    let url = format!("https://127.0.0.1:{port}/v2/");

    // No certificate: the handshake fails.
    let none = client(&ca.pem()).build().unwrap().get(&url).send().await;
    assert!(none.is_err(), "{none:?}");
    // A certificate from another CA: refused too.
    let stranger = Ca::new("stranger CA");
    let (cert, key) = stranger.issue(&["client"], "mallory");
    let identity = reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap();
    let wrong = client(&ca.pem())
        .identity(identity)
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await;
    assert!(wrong.is_err(), "{wrong:?}");
    // A certificate from clientcas: served.
    let (cert, key) = clients.issue(&["client"], "alice");
    let identity = reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap();
    let resp = client(&ca.pem())
        .identity(identity)
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn minimumtls_tls13_refuses_tls12() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wharf test CA");
    ca.write_server(dir.path(), "wharf");
    let port = free_port();
    let _serve = Serve::start(&config(
        dir.path(),
        &tls_http(dir.path(), port, "    minimumtls: tls1.3\n"),
        "",
    ));
    let url = format!("https://127.0.0.1:{port}/v2/");
    let tls12 = client(&ca.pem())
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await;
    assert!(tls12.is_err(), "TLS 1.2 was accepted: {tls12:?}");
    let tls13 = client(&ca.pem())
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(tls13.status(), 200);
}

#[tokio::test]
async fn default_minimum_accepts_tls12_and_ciphersuites_limit_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wharf test CA");
    ca.write_server(dir.path(), "wharf");
    let port = free_port();
    // rcgen's keys are ECDSA P-256: of TLS 1.2, only this ECDSA suite stays.
    let more = "    ciphersuites:\n      - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\n";
    let _serve = Serve::start(&config(dir.path(), &tls_http(dir.path(), port, more), ""));
    std::fs::write(dir.path().join("ca-only.pem"), ca.pem()).unwrap();
    let curl = |ciphers: &str| {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--tls-max",
                "1.2",
            ])
            .arg("--ciphers")
            .arg(ciphers)
            .arg("--cacert")
            .arg(dir.path().join("ca-only.pem"))
            .arg(format!("https://127.0.0.1:{port}/v2/"))
            .output()
            .unwrap()
    };
    let ok = curl("ECDHE-ECDSA-AES256-GCM-SHA384");
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "200", "{ok:?}");
    let refused = curl("ECDHE-ECDSA-AES128-GCM-SHA256");
    assert!(!refused.status.success(), "{refused:?}");
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wharf test CA");
    ca.write_server(dir.path(), "first");
    let port = free_port();
    let serve = Serve::start(&config(dir.path(), &tls_http(dir.path(), port, ""), ""));
    let url = format!("https://127.0.0.1:{port}/v2/");
    let first = served_certificate(&ca.pem(), &url).await;

    // Rotate: new files, as cert-manager or certbot would write them.
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"], "second");
    let tmp = dir.path().join("new.pem");
    std::fs::write(&tmp, &cert).unwrap();
    std::fs::write(dir.path().join("server.key.new"), &key).unwrap();
    std::fs::rename(
        dir.path().join("server.key.new"),
        dir.path().join("server.key"),
    )
    .unwrap();
    std::fs::rename(&tmp, dir.path().join("server.pem")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The first handshake after the change may still see the old pair if the files
    // were looked at within the last second; the next one sees the new.
    let mut served = served_certificate(&ca.pem(), &url).await;
    if served == first {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        served = served_certificate(&ca.pem(), &url).await;
    }
    assert_ne!(served, first, "the old certificate is still served");
    let expected = rustls_pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    assert_eq!(served, expected.to_vec());
    serve.wait_for("TLS certificate changed on disk: serving the new one");

    // A broken file is not served: the current pair stays.
    std::fs::write(dir.path().join("server.key"), "not a key").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = served_certificate(&ca.pem(), &url).await;
    let again = served_certificate(&ca.pem(), &url).await;
    assert_eq!(again, expected.to_vec());
    serve.wait_for("does not load");
}

use rustls_pki_types::pem::PemObject as _;

/// The HTTP version curl negotiated with the server.
fn curl_http_version(dir: &std::path::Path, port: u16) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--http2", "-o", "/dev/null", "-w", "%{http_version}"])
        .arg("--cacert")
        .arg(dir.join("ca.pem"))
        .arg(format!("https://localhost:{port}/v2/"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn http2_over_tls_unless_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wharf test CA");
    ca.write_server(dir.path(), "wharf");
    let port = free_port();
    let serve = Serve::start(&config(dir.path(), &tls_http(dir.path(), port, ""), ""));
    assert_eq!(curl_http_version(dir.path(), port), "2");
    drop(serve);

    let port = free_port();
    let http = format!(
        "{}  http2:\n    disabled: true\n",
        tls_http(dir.path(), port, "")
    );
    let _serve = Serve::start(&config(dir.path(), &http, ""));
    assert_eq!(curl_http_version(dir.path(), port), "1.1");
}

#[test]
fn refused_tls_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "    letsencrypt:\n      cachefile: /var/lib/le\n      email: a@example.com\n",
            "http.tls.letsencrypt",
            "ACME",
        ),
        ("    minimumtls: tls1.0\n", "http.tls.minimumtls", "tls1.0"),
        ("    minimumtls: ssl3\n", "http.tls.minimumtls", "ssl3"),
        (
            "    ciphersuites:\n      - TLS_RSA_WITH_RC4_128_SHA\n",
            "http.tls.ciphersuites[0]",
            "TLS_RSA_WITH_RC4_128_SHA",
        ),
    ];
    for (more, key, word) in cases {
        let cfg = config(dir.path(), &tls_http(dir.path(), 5000, more), "");
        let (ok, out) = check_config(&cfg);
        assert!(!ok, "accepted: {more}");
        assert!(out.contains(key) && out.contains(word), "{key}: {out}");
    }
    let cfg = config(
        dir.path(),
        "  addr: 127.0.0.1:5000\n  tls:\n    key: /k.pem\n",
        "",
    );
    let (ok, out) = check_config(&cfg);
    assert!(!ok && out.contains("http.tls.certificate"), "{out}");

    // Files that are not there, or a key that is not the certificate's, stop start-up
    // naming the key.
    let ca = Ca::new("wharf test CA");
    ca.write_server(dir.path(), "wharf");
    // `wharf serve` with `cert` and `key` (files in `dir`) stops, naming `named`.
    let refused_at_start = |cert: &str, key: &str, named: &str| {
        let http = format!(
            "  addr: 127.0.0.1:{}\n  tls:\n    certificate: {}\n    key: {}\n",
            free_port(),
            dir.path().join(cert).display(),
            dir.path().join(key).display()
        );
        let out = wharf()
            .arg("serve")
            .arg("--config")
            .arg(config(dir.path(), &http, ""))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && text.contains(named), "{text}");
    };
    refused_at_start("nope.pem", "server.key", "http.tls.certificate");
    let (_, other_key) = ca.issue(&["localhost"], "other");
    std::fs::write(dir.path().join("other.key"), other_key).unwrap();
    refused_at_start("server.pem", "other.key", "http.tls.key");
}

/// skopeo pushes an image over HTTPS trusting the CA through `--dest-cert-dir` (no
/// `--tls-verify=false`), and reads it back.
#[test]
fn skopeo_over_https_with_the_ca() {
    if std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skopeo not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wharf test CA");
    ca.write_server(dir.path(), "wharf");
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), ca.pem()).unwrap();
    let port = free_port();
    let _serve = Serve::start(&config(dir.path(), &tls_http(dir.path(), port, ""), ""));

    // A one-layer image in skopeo's `dir:` layout.
    let image = dir.path().join("image");
    std::fs::create_dir(&image).unwrap();
    let sha = |b: &[u8]| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(b))
    };
    let config_blob =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = b"not really a tarball, but bytes".to_vec();
    std::fs::write(image.join(sha(config_blob)), config_blob).unwrap();
    std::fs::write(image.join(sha(&layer)), &layer).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", sha(config_blob)), "size": config_blob.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{}", sha(&layer)), "size": layer.len()}],
    });
    std::fs::write(image.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(image.join("version"), "Directory Transport Version: 1.1\n").unwrap();

    let dest = format!("docker://localhost:{port}/tls/image:v1");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--dest-cert-dir"])
        .arg(&certs)
        .arg(format!("dir:{}", image.display()))
        .arg(&dest)
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy: {out:?}");
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(&certs)
        .arg(&dest)
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect: {out:?}");
    // skopeo may compress the layer on the way (a new digest); the config is as it was.
    assert!(String::from_utf8_lossy(&out.stdout).contains(&sha(config_blob)));
    // Without the CA, skopeo refuses the server.
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(&dest)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// `http.limits.connectionsperclient` on the HTTP/1.1-only TLS listener
/// (`http.http2.disabled`): a third connection from the address gets `429`, `Retry-After`
/// and `Connection: close`; a closed one frees its place.
#[tokio::test]
async fn connections_per_client_on_the_http1_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wharf test CA");
    ca.write_server(dir.path(), "wharf");
    let port = free_port();
    let http = format!(
        "{}  http2:\n    disabled: true\n  limits:\n    connectionsperclient: 2\n",
        tls_http(dir.path(), port, "")
    );
    let _serve = Serve::start(&config(dir.path(), &http, ""));
    let url = format!("https://127.0.0.1:{port}/v2/");
    // Each client keeps its connection open (idle in its pool) after its answer.
    let connect = || client(&ca.pem()).http1_only().build().unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        let c = connect();
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), reqwest::Version::HTTP_11);
        held.push(c);
    }
    let r = connect().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["connection"], "close");
    let body = r.text().await.unwrap();
    assert!(body.contains("\"code\":\"TOOMANYREQUESTS\""), "{body}");
    assert!(body.contains("connectionsperclient"), "{body}");
    // One client goes: its connection closes, and a new one is served (once the server
    // has seen the close).
    drop(held.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = connect().get(&url).send().await.unwrap().status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 429);
        assert!(
            std::time::Instant::now() < deadline,
            "the place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
