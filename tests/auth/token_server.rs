use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

struct Setup {
    _dir: tempfile::TempDir,
    auth: Value,
}

fn setup(key_pem: Option<fn(&std::path::Path) -> std::path::PathBuf>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("htpasswd");
    htpasswd(
        &users,
        &[("alice", "a-pass"), ("bob", "b-pass"), ("admin", "root")],
    );
    let key = match key_pem {
        Some(make) => make(dir.path()),
        None => ec_key(dir.path(), "signing").pem,
    };
    let auth = json!({
        "htpasswd": { "realm": "users", "path": users },
        "token": { "realm": REALM, "service": SERVICE, "issuer": ISSUER },
        "tokenserver": {
            "key": key,
            "kid": "wharf-1",
            "groups": { "team-a": ["alice"], "team-b": ["bob"] },
            "access": [
                { "groups": ["team-a"], "repositories": ["team-a/*"], "actions": ["*"] },
                { "groups": ["team-b"], "repositories": ["team-b/*"], "actions": ["pull", "push"] },
                { "users": ["*"], "anonymous": true, "repositories": ["public/*"], "actions": ["pull"] },
                { "users": ["admin"], "repositories": ["*"], "actions": ["*"], "catalog": true },
            ],
        },
    });
    Setup { _dir: dir, auth }
}

async fn get_token(s: &Server, user: Option<(&str, &str)>, scopes: &[&str]) -> Resp {
    let mut q = format!("/auth/token?service={SERVICE}");
    for sc in scopes {
        q.push_str(&format!(
            "&scope={}",
            sc.replace('/', "%2F")
                .replace(':', "%3A")
                .replace(',', "%2C")
                .replace('*', "%2A")
        ));
    }
    let auth = match user {
        Some((u, p)) => Auth::Basic(u, p),
        None => Auth::None,
    };
    s.send(Method::GET, &q, auth).await
}

async fn token(s: &Server, user: Option<(&str, &str)>, scopes: &[&str]) -> String {
    let r = get_token(s, user, scopes).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    assert_eq!(j["token"], j["access_token"]);
    assert_eq!(j["expires_in"], 300);
    assert!(j["issued_at"].as_str().unwrap().ends_with('Z'));
    j["token"].as_str().unwrap().to_string()
}

async fn post_form(s: &Server, form: &[(&str, &str)]) -> Resp {
    let body = serde_urlencoded::to_string(form).unwrap();
    let r = s
        .client
        .post(format!("{}/auth/token", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Resp {
        status,
        headers,
        body: r.bytes().await.unwrap().to_vec(),
    }
}

#[tokio::test]
async fn teams_push_to_their_own_repositories_only() {
    let t = setup(None);
    let s = Server::start(t.auth.clone()).await;
    let alice = Some(("alice", "a-pass"));

    // A pull-scoped request still yields every action alice may take (clients reuse it to push).
    let tok = token(&s, alice, &["repository:team-a/app:pull"]).await;
    assert_eq!(
        s.push_blob("team-a/app", b"a-layer", Auth::Bearer(&tok))
            .await
            .status,
        201
    );
    let blob = format!("/v2/team-a/app/blobs/{}", sha256(b"a-layer"));
    assert_eq!(
        s.send(Method::GET, &blob, Auth::Bearer(&tok)).await.status,
        200
    );

    let tok = token(&s, alice, &["repository:team-b/app:pull,push"]).await;
    let r = s
        .push_blob("team-b/app", b"b-layer", Auth::Bearer(&tok))
        .await;
    r.assert_unauthorized();
    assert!(
        r.challenge().contains("insufficient_scope"),
        "{}",
        r.challenge()
    );

    // bob pushes to team-b but may not delete there.
    let bob = token(
        &s,
        Some(("bob", "b-pass")),
        &["repository:team-b/app:pull,push,delete"],
    )
    .await;
    assert_eq!(
        s.push_blob("team-b/app", b"b-layer", Auth::Bearer(&bob))
            .await
            .status,
        201
    );
    let r = s
        .send(
            Method::DELETE,
            &format!("/v2/team-b/app/blobs/{}", sha256(b"b-layer")),
            Auth::Bearer(&bob),
        )
        .await;
    assert!(r.challenge().contains("insufficient_scope"));

    // Catalog: admin only.
    let tok = token(&s, alice, &["registry:catalog:*"]).await;
    assert_eq!(
        s.send(Method::GET, "/v2/_catalog", Auth::Bearer(&tok))
            .await
            .status,
        401
    );
    let tok = token(&s, Some(("admin", "root")), &["registry:catalog:*"]).await;
    assert_eq!(
        s.send(Method::GET, "/v2/_catalog", Auth::Bearer(&tok))
            .await
            .status,
        200
    );

    // Bad credentials.
    for creds in [("alice", "nope"), ("mallory", "a-pass")] {
        let r = get_token(&s, Some(creds), &["repository:team-a/app:pull"]).await;
        assert_eq!(r.status, 401);
        assert!(r.header("www-authenticate").unwrap().starts_with("Basic "));
    }
    // Another service's tokens are not ours to issue.
    let r = s
        .send(Method::GET, "/auth/token?service=other", Auth::None)
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn anonymous_pulls_public_only() {
    let t = setup(None);
    let s = Server::start(t.auth.clone()).await;
    let admin = token(
        &s,
        Some(("admin", "root")),
        &["repository:public/base:push"],
    )
    .await;
    assert_eq!(
        s.push_blob("public/base", b"pub", Auth::Bearer(&admin))
            .await
            .status,
        201
    );
    assert_eq!(
        s.push_blob(
            "team-a/app",
            b"priv",
            Auth::Bearer(
                &token(&s, Some(("admin", "root")), &["repository:team-a/app:push"]).await
            )
        )
        .await
        .status,
        201
    );

    let anon = token(
        &s,
        None,
        &["repository:public/base:pull", "repository:team-a/app:pull"],
    )
    .await;
    let public_blob = format!("/v2/public/base/blobs/{}", sha256(b"pub"));
    assert_eq!(
        s.send(Method::GET, &public_blob, Auth::Bearer(&anon))
            .await
            .status,
        200
    );
    let r = s
        .push_blob("public/base", b"evil", Auth::Bearer(&anon))
        .await;
    assert!(r.challenge().contains("insufficient_scope"));
    let r = s
        .send(
            Method::GET,
            &format!("/v2/team-a/app/blobs/{}", sha256(b"priv")),
            Auth::Bearer(&anon),
        )
        .await;
    r.assert_unauthorized();
    assert!(r.challenge().contains("insufficient_scope"));
    // Without any token: the challenge names the scope to ask for.
    let r = s.send(Method::GET, &public_blob, Auth::None).await;
    assert!(r
        .challenge()
        .contains("scope=\"repository:public/base:pull\""));
}

#[tokio::test]
async fn oauth2_password_and_refresh_grants() {
    let t = setup(None);
    let s = Server::start(t.auth.clone()).await;
    let r = post_form(
        &s,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "a-pass"),
            ("service", SERVICE),
            ("scope", "repository:team-a/app:pull,push"),
            ("client_id", "test"),
            ("access_type", "offline"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    let access = j["access_token"].as_str().unwrap().to_string();
    let refresh = j["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string();
    assert_eq!(
        s.push_blob("team-a/app", b"x", Auth::Bearer(&access))
            .await
            .status,
        201
    );

    // A refresh token is not an access token.
    let r = s.send(Method::GET, "/v2/", Auth::Bearer(&refresh)).await;
    assert!(r.challenge().contains("invalid_token"));

    let r = post_form(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("service", SERVICE),
            ("scope", "repository:team-a/app:pull"),
            ("client_id", "test"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let again = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        s.push_blob("team-a/app", b"y", Auth::Bearer(&again))
            .await
            .status,
        201
    );

    let r = post_form(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &access),
            ("service", SERVICE),
        ],
    )
    .await;
    assert_eq!(r.status, 401, "an access token is not a refresh token");
    let r = post_form(
        &s,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "bad"),
            ("service", SERVICE),
        ],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_grant");
    let r = post_form(&s, &[("grant_type", "client_credentials")]).await;
    assert_eq!(r.status, 400);
    // Without offline access no refresh token is given.
    let r = post_form(
        &s,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "a-pass"),
            ("service", SERVICE),
        ],
    )
    .await;
    assert!(r.json().get("refresh_token").is_none());
}

#[tokio::test]
async fn every_instance_accepts_every_others_tokens_rs256() {
    let t = setup(Some(|dir| rsa_cert(dir, "signing-rsa").0));
    let one = Server::start(t.auth.clone()).await;
    let two = Server::start(t.auth.clone()).await;
    let tok = token(
        &one,
        Some(("alice", "a-pass")),
        &["repository:team-a/app:push"],
    )
    .await;
    let header: Value = {
        use base64::Engine as _;
        let h = tok.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        header,
        json!({ "typ": "JWT", "alg": "RS256", "kid": "wharf-1" })
    );
    assert_eq!(
        two.push_blob("team-a/app", b"z", Auth::Bearer(&tok))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn token_endpoint_absent_without_a_token_server() {
    let s = Server::start(json!(null)).await;
    assert_eq!(
        s.send(Method::GET, "/auth/token", Auth::None).await.status,
        404
    );
    // containerd POSTs first and falls back to GET on 400/401/404/405.
    let r = post_form(&s, &[("grant_type", "password")]).await;
    assert_eq!(r.status, 404);
    // And no authentication at all by default.
    assert_eq!(s.push_blob("any/repo", b"x", Auth::None).await.status, 201);
}

/// containerd's resolver: POST the OAuth2 password grant (client_id
/// `containerd-client`); on 400, 401, 404 or 405 fall back to GET with Basic.
#[tokio::test]
async fn containerd_post_then_get() {
    let t = setup(None);
    let s = Server::start(t.auth.clone()).await;
    let scope = "repository:team-a/app:pull,push";
    let form = |password: &'static str| {
        vec![
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", password),
            ("service", SERVICE),
            ("scope", scope),
            ("client_id", "containerd-client"),
        ]
    };
    let r = post_form(&s, &form("a-pass")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(r.json()["expires_in"], 300);
    assert_eq!(
        s.push_blob("team-a/app", b"c", Auth::Bearer(&access))
            .await
            .status,
        201
    );
    // Every failure is one of the statuses containerd falls back on, never a 5xx.
    let r = post_form(&s, &form("wrong")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_grant");
    for bad in [
        vec![("grant_type", "client_credentials")],
        vec![("grant_type", "password"), ("username", "alice")],
        vec![("grant_type", "refresh_token")],
        vec![("username", "alice"), ("password", "a-pass")],
        vec![("grant_type", "password"), ("service", "another-registry")],
    ] {
        let r = post_form(&s, &bad).await;
        assert_eq!(r.status, 400, "{bad:?}");
        assert!(r.json()["error"].is_string(), "{bad:?}");
    }
    let r = s
        .client
        .post(format!("{}/auth/token", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, b'%', b'z'])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "malformed form");
    for method in [Method::PUT, Method::DELETE, Method::PATCH] {
        let r = s.send(method.clone(), "/auth/token", Auth::None).await;
        assert_eq!(r.status, 405, "{method}");
    }
    // The GET fallback with the same credentials.
    let r = get_token(&s, Some(("alice", "a-pass")), &[scope]).await;
    assert_eq!(r.status, 200);
    let r = get_token(&s, Some(("alice", "wrong")), &[scope]).await;
    assert_eq!(r.status, 401);
    assert!(r.challenge().starts_with("Basic realm="));
}

/// A password over 72 bytes gets no token (GET with Basic, POST with the password grant),
/// and the answer says why.
#[tokio::test]
async fn passwords_over_72_bytes_get_no_token() {
    let t = setup(None);
    let s = Server::start(t.auth.clone()).await;
    // alice's password is "a-pass": 72 bytes of it and more would pass bcrypt by its prefix
    // only if the hash were of a 72-byte prefix; either way, refused before bcrypt.
    let long = format!("a-pass{}", "x".repeat(80));
    let r = get_token(&s, Some(("alice", &long)), &["repository:team-a/app:pull"]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["errors"][0]["code"], "UNAUTHORIZED");
    let message = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("72 bytes"), "{message}");
    let r = post_form(
        &s,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", &long),
            ("service", SERVICE),
            ("client_id", "test"),
        ],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_grant");
    let message = r.json()["error_description"].as_str().unwrap().to_string();
    assert!(message.contains("72 bytes"), "{message}");
}
