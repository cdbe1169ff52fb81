//! `http.net: unix`, `http.prefix`, `http.host` and the values refused.

use crate::support::{check_config, config, free_port, Serve};

fn curl(args: &[&str]) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = text.lines().last().unwrap_or_default().to_string();
    (code, text)
}

#[test]
fn unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("wharf.sock");
    let http = format!("  net: unix\n  addr: {}\n", socket.display());
    let serve = Serve::start(&config(dir.path(), &http, ""));
    assert!(serve.wait_for("listening on").contains("unix:"));
    let (code, _) = curl(&[
        "--unix-socket",
        socket.to_str().unwrap(),
        "http://localhost/v2/",
    ]);
    assert_eq!(code, "200");
    // A socket left behind by a stopped process is replaced at the next start.
    drop(serve);
    let _serve = Serve::start(&config(dir.path(), &http, ""));
    let (code, _) = curl(&[
        "--unix-socket",
        socket.to_str().unwrap(),
        "http://localhost/v2/",
    ]);
    assert_eq!(code, "200");
}

#[test]
fn prefix_and_host_make_location_urls() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let http = format!(
        "  addr: 127.0.0.1:{port}\n  prefix: /registry/\n  host: https://registry.example.com\n"
    );
    let _serve = Serve::start(&config(dir.path(), &http, ""));
    let base = format!("http://127.0.0.1:{port}");
    let (code, _) = curl(&[&format!("{base}/registry/v2/")]);
    assert_eq!(code, "200");
    let (code, headers) = curl(&[
        "-X",
        "POST",
        &format!("{base}/registry/v2/team/app/blobs/uploads/"),
    ]);
    assert_eq!(code, "202", "{headers}");
    let location = headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or(l.strip_prefix("Location: "))
        })
        .unwrap()
        .trim();
    assert!(
        location.starts_with("https://registry.example.com/registry/v2/team/app/blobs/uploads/"),
        "{location}"
    );
}

#[test]
fn prefix_alone_keeps_locations_relative() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let http = format!("  addr: 127.0.0.1:{port}\n  prefix: /r/\n");
    let _serve = Serve::start(&config(dir.path(), &http, ""));
    let (code, headers) = curl(&[
        "-X",
        "POST",
        &format!("http://127.0.0.1:{port}/r/v2/a/blobs/uploads/"),
    ]);
    assert_eq!(code, "202", "{headers}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("location: /r/v2/a/blobs/uploads/"),
        "{headers}"
    );
}

#[test]
fn refused_http_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    for (http, key) in [
        ("  net: udp\n", "http.net"),
        ("  host: registry.example.com\n", "http.host"),
        ("  prefix: registry\n", "http.prefix"),
        ("  draintimeout: 30\n", "http.draintimeout"),
        ("  http2:\n    disabled: maybe\n", "http.http2.disabled"),
    ] {
        let (ok, out) = check_config(&config(dir.path(), http, ""));
        assert!(!ok, "accepted: {http}");
        assert!(out.contains(key), "{key}: {out}");
    }
}

/// `http.limits.connectionsperclient` does not apply on a unix socket (no peer address
/// to count by): with a limit of 1, three connections held open at once are all served.
#[test]
fn connections_per_client_do_not_apply_on_a_unix_socket() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("wharf.sock");
    let http = format!(
        "  net: unix\n  addr: {}\n  limits:\n    connectionsperclient: 1\n",
        socket.display()
    );
    let serve = Serve::start(&config(dir.path(), &http, ""));
    serve.wait_for("listening on");
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut status = String::new();
        BufReader::new(&conn).read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        held.push(conn);
    }
}
