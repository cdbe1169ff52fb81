//! "Secrets and tokens never appear in logs": every wharf event and span (trace level,
//! the most a deployment can turn on) is captured while passwords, Basic headers,
//! access and refresh tokens go through htpasswd, the token server and the bearer check.
//! The capture is process-wide, so other tests' logs are in it too; only this test's
//! unique secrets are looked for.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c = Capture::default();
        let writer = c.clone();
        tracing_subscriber::fmt()
            .with_env_filter("wharf=trace,tracing_actix_web=trace")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init()
            .expect("no other subscriber in this test binary");
        c
    })
}

#[tokio::test]
async fn secrets_and_tokens_never_appear_in_logs() {
    let log = capture();
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("htpasswd");
    let password = "pw-5f1c0a9e-secret";
    htpasswd(&users, &[("carol", password)]);
    let key = ec_key(dir.path(), "signing").pem;
    let s = Server::start(json!({
        "htpasswd": { "realm": "users", "path": users },
        "token": { "realm": REALM, "service": SERVICE, "issuer": ISSUER },
        "tokenserver": { "key": key },
    }))
    .await;

    let scope = "repository%3Aa%2Fb%3Apull%2Cpush";
    let r = s
        .send(
            Method::GET,
            &format!("/auth/token?service={SERVICE}&scope={scope}&offline_token=true"),
            Auth::Basic("carol", password),
        )
        .await;
    assert_eq!(r.status, 200);
    let access = r.json()["token"].as_str().unwrap().to_string();
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        s.push_blob("a/b", b"l", Auth::Bearer(&access)).await.status,
        201
    );
    // Refused credentials and tokens are where a careless log line would print them.
    let wrong = "pw-wrong-77aa31";
    let r = s
        .send(
            Method::GET,
            &format!("/auth/token?service={SERVICE}"),
            Auth::Basic("carol", wrong),
        )
        .await;
    assert_eq!(r.status, 401);
    let tampered = format!("{access}x");
    let r = s
        .send(Method::GET, "/v2/a/b/tags/list", Auth::Bearer(&tampered))
        .await;
    r.assert_unauthorized();
    let r = s
        .send(Method::GET, "/v2/c/d/tags/list", Auth::Bearer(&access))
        .await;
    r.assert_unauthorized();
    let body = serde_urlencoded::to_string([
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("service", SERVICE),
    ])
    .unwrap();
    let r = s
        .client
        .post(format!("{}/auth/token", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(s);

    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("bearer token refused"),
        "the capture works (the refused token was logged as an event)"
    );
    let basic = |p: &str| base64::engine::general_purpose::STANDARD.encode(format!("carol:{p}"));
    let signature = |t: &str| t.rsplit('.').next().unwrap().to_string();
    for (what, secret) in [
        ("password", password.to_string()),
        ("wrong password", wrong.to_string()),
        ("Basic header", basic(password)),
        ("wrong Basic header", basic(wrong)),
        ("access token signature", signature(&access)),
        ("refresh token signature", signature(&refresh)),
    ] {
        assert!(!text.contains(&secret), "the {what} is in the logs");
    }
}
