//! distribution's `log` section: `fields` on every line, the access log and its
//! `disabled`, the request id (a trusted proxy's `X-Request-Id`, else a new one) echoed
//! in the response.

use crate::support::{config, free_port, Serve};

/// `curl` with `args`: the response headers.
fn curl_headers(args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

#[test]
fn json_access_log_with_fields_and_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // 127.0.0.1 is a trusted proxy: its X-Request-Id is kept.
    let http = format!("  addr: 127.0.0.1:{port}\n  trustedproxies: [127.0.0.1]\n");
    let log = "log:\n  level: info\n  formatter: json\n  fields:\n    service: registry\n    environment: staging\n";
    let serve = Serve::start(&config(dir.path(), &http, log));
    let url = format!("http://127.0.0.1:{port}/v2/");
    let headers = curl_headers(&[
        "-H",
        "X-Request-Id: from-the-proxy-1",
        "-A",
        "probe/1.0",
        &url,
    ]);
    assert_eq!(header(&headers, "x-request-id"), Some("from-the-proxy-1"));
    let line = serve.wait_for("from-the-proxy-1");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["target"], "wharf::access", "{line}");
    let f = &v["fields"];
    assert_eq!(f["method"], "GET");
    assert_eq!(f["path"], "/v2/");
    assert_eq!(f["status"], 200);
    assert_eq!(f["bytes"], 2, "{line}");
    assert_eq!(f["user_agent"], "probe/1.0");
    assert!(f["duration_ms"].as_f64().unwrap() >= 0.0);
    // The fields are on every line, start-up's included.
    assert_eq!(v["service"], "registry");
    assert_eq!(v["environment"], "staging");
    for l in serve.lines() {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["service"], "registry", "{l}");
    }
    // Without a header: a new id, echoed, and in the log line.
    let headers = curl_headers(&[&format!("http://127.0.0.1:{port}/v2/nothing/manifests/x")]);
    let id = header(&headers, "x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 36, "{id}");
    let line = serve.wait_for(&id);
    assert!(line.contains("\"status\":404"), "{line}");
}

#[test]
fn untrusted_clients_get_their_own_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let http = format!("  addr: 127.0.0.1:{port}\n");
    let serve = Serve::start(&config(dir.path(), &http, ""));
    let headers = curl_headers(&[
        "-H",
        "X-Request-Id: forged",
        &format!("http://127.0.0.1:{port}/v2/"),
    ]);
    let id = header(&headers, "x-request-id").unwrap();
    assert_ne!(id, "forged");
    // Text lines: the access line, with the id.
    let line = serve.wait_for(id);
    assert!(line.contains("GET /v2/ 200"), "{line}");
    assert!(line.contains("bytes=2"), "{line}");
}

#[test]
fn text_fields_and_disabled_access_log() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let http = format!("  addr: 127.0.0.1:{port}\n");
    let log = "log:\n  fields:\n    service: registry\n  accesslog:\n    disabled: true\n";
    let serve = Serve::start(&config(dir.path(), &http, log));
    let headers = curl_headers(&[&format!("http://127.0.0.1:{port}/v2/")]);
    let id = header(&headers, "x-request-id").unwrap().to_string();
    // A line after the request, to know the access line would have been written.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        serve.lines().iter().all(|l| !l.contains(&id)),
        "access line written though disabled"
    );
    assert!(serve
        .wait_for("ready: serving")
        .ends_with(" service=registry"));
}
