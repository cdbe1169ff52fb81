use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn basic_challenge_check_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    htpasswd(&path, &[("alice", "wonderland")]);
    let s = Server::start(json!({ "htpasswd": { "realm": "test-realm", "path": path } })).await;

    for auth in [
        Auth::None,
        Auth::Basic("alice", "wrong"),
        Auth::Basic("nobody", "wonderland"),
        Auth::Bearer("x"),
    ] {
        let r = s.send(Method::GET, "/v2/", auth).await;
        r.assert_unauthorized();
        assert_eq!(r.challenge(), "Basic realm=\"test-realm\"");
    }
    let r = s.send(Method::GET, "/v2/a/b/tags/list", Auth::None).await;
    r.assert_unauthorized();

    let ok = Auth::Basic("alice", "wonderland");
    assert_eq!(s.send(Method::GET, "/v2/", ok).await.status, 200);
    assert_eq!(s.push_blob("a/b", b"layer", ok).await.status, 201);
    let digest = sha256(b"layer");
    assert_eq!(
        s.send(Method::GET, &format!("/v2/a/b/blobs/{digest}"), ok)
            .await
            .status,
        200
    );
    assert_eq!(s.send(Method::GET, "/v2/_catalog", ok).await.status, 200);
    // Operational endpoints stay open.
    assert_eq!(
        s.send(Method::GET, "/healthz", Auth::None).await.status,
        200
    );

    // A new user appears when the file changes.
    htpasswd(&path, &[("alice", "wonderland"), ("bob", "builder")]);
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(10);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_eq!(
        s.send(Method::GET, "/v2/", Auth::Basic("bob", "builder"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn missing_users_file_stops_start_up() {
    let err = Server::try_start(json!({ "htpasswd": { "path": "/nonexistent/htpasswd" } }))
        .await
        .err()
        .expect("refused");
    assert!(err.contains("auth.htpasswd.path"), "{err}");
}

/// bcrypt reads 72 bytes: a longer password is refused with a message saying so, not
/// accepted by its prefix (the file's hash was made by a tool that truncates).
#[tokio::test]
async fn passwords_over_72_bytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("htpasswd");
    let prefix = "p".repeat(72);
    let long = format!("{prefix}-tail");
    htpasswd(&path, &[("alice", long.as_str()), ("bob", prefix.as_str())]);
    let s = Server::start(json!({ "htpasswd": { "realm": "r", "path": path } })).await;
    for password in [long.clone(), format!("{prefix}-other-tail")] {
        let r = s
            .send(Method::GET, "/v2/", Auth::Basic("alice", &password))
            .await;
        r.assert_unauthorized();
        let message = r.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains("72 bytes"), "{message}");
    }
    // 72 bytes exactly are read in full: accepted.
    assert_eq!(
        s.send(Method::GET, "/v2/", Auth::Basic("bob", &prefix))
            .await
            .status,
        200
    );
}
