//! `GET /v2/_catalog` lists only the repositories the caller may pull (issue #12).
//! Reaching it needs `registry:catalog:*`, as in distribution; with the built-in token
//! server the access policy then decides what each caller sees; pagination (`n`,
//! `last`, `Link`) counts only what is shown.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

const REPOS: [&str; 5] = [
    "private/secret",
    "public/base",
    "team-a/app",
    "team-a/db",
    "team-b/app",
];

fn policy(dir: &std::path::Path) -> Value {
    let users = dir.join("htpasswd");
    htpasswd(
        &users,
        &[("alice", "a-pass"), ("bob", "b-pass"), ("admin", "root")],
    );
    json!({
        "htpasswd": { "realm": "users", "path": users },
        "token": { "realm": REALM, "service": SERVICE, "issuer": ISSUER },
        "tokenserver": {
            "key": ec_key(dir, "signing").pem,
            "groups": { "team-a": ["alice"], "team-b": ["bob"] },
            "access": [
                { "groups": ["team-a"], "repositories": ["team-a/*"], "actions": ["*"] },
                { "groups": ["team-b"], "repositories": ["team-b/*"], "actions": ["push"] },
                { "users": ["*"], "anonymous": true, "repositories": ["public/*"], "actions": ["pull"], "catalog": true },
                { "users": ["admin"], "repositories": ["*"], "actions": ["*"] },
            ],
        },
    })
}

async fn catalog_token(s: &Server, user: Option<(&str, &str)>) -> String {
    let auth = match user {
        Some((u, p)) => Auth::Basic(u, p),
        None => Auth::None,
    };
    let r = s
        .send(
            Method::GET,
            &format!("/auth/token?service={SERVICE}&scope=registry%3Acatalog%3A%2A"),
            auth,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["token"].as_str().unwrap().to_string()
}

/// The page's body and its `Link` header.
async fn page(s: &Server, path: &str, token: &str) -> (Value, Option<String>) {
    let r = s.send(Method::GET, path, Auth::Bearer(token)).await;
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    (r.json(), r.header("link").map(str::to_string))
}

#[tokio::test]
async fn the_catalog_shows_what_the_caller_may_pull() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(policy(dir.path())).await;
    let admin = catalog_token(&s, Some(("admin", "root"))).await;
    // admin may push everywhere (the policy gives it every action on `*`).
    let push = {
        let r = s
            .send(
                Method::GET,
                &format!(
                    "/auth/token?service={SERVICE}{}",
                    REPOS
                        .iter()
                        .map(|r| format!("&scope=repository%3A{}%3Apush", r.replace('/', "%2F")))
                        .collect::<String>()
                ),
                Auth::Basic("admin", "root"),
            )
            .await;
        r.json()["token"].as_str().unwrap().to_string()
    };
    for repo in REPOS {
        assert_eq!(
            s.push_blob(repo, b"layer", Auth::Bearer(&push))
                .await
                .status,
            201
        );
    }

    // admin has the catalog scope through the `users: ['*']` rule and pulls everything.
    let (body, link) = page(&s, "/v2/_catalog", &admin).await;
    assert_eq!(body, json!({ "repositories": REPOS }));
    assert_eq!(link, None);

    let alice = catalog_token(&s, Some(("alice", "a-pass"))).await;
    let (body, link) = page(&s, "/v2/_catalog", &alice).await;
    assert_eq!(
        body,
        json!({ "repositories": ["public/base", "team-a/app", "team-a/db"] })
    );
    assert_eq!(link, None);

    // bob may push to team-b but not pull there: he sees public/base only.
    let bob = catalog_token(&s, Some(("bob", "b-pass"))).await;
    let (body, _) = page(&s, "/v2/_catalog", &bob).await;
    assert_eq!(body, json!({ "repositories": ["public/base"] }));

    let anonymous = catalog_token(&s, None).await;
    let (body, _) = page(&s, "/v2/_catalog", &anonymous).await;
    assert_eq!(body, json!({ "repositories": ["public/base"] }));

    // Pages of one for alice: the hidden private/secret and team-b/app neither fill a
    // page nor leave a link to an empty one.
    let (body, link) = page(&s, "/v2/_catalog?n=1", &alice).await;
    assert_eq!(body, json!({ "repositories": ["public/base"] }));
    assert_eq!(
        link.as_deref(),
        Some("</v2/_catalog?n=1&last=public/base>; rel=\"next\"")
    );
    let (body, link) = page(&s, "/v2/_catalog?n=1&last=public/base", &alice).await;
    assert_eq!(body, json!({ "repositories": ["team-a/app"] }));
    assert_eq!(
        link.as_deref(),
        Some("</v2/_catalog?n=1&last=team-a/app>; rel=\"next\"")
    );
    let (body, link) = page(&s, "/v2/_catalog?n=1&last=team-a/app", &alice).await;
    assert_eq!(body, json!({ "repositories": ["team-a/db"] }));
    assert_eq!(link, None);
    // `last` may name a repository the caller cannot see.
    let (body, link) = page(&s, "/v2/_catalog?n=2&last=private/secret", &alice).await;
    assert_eq!(
        body,
        json!({ "repositories": ["public/base", "team-a/app"] })
    );
    assert_eq!(
        link.as_deref(),
        Some("</v2/_catalog?n=2&last=team-a/app>; rel=\"next\"")
    );

    // Without the catalog scope: distribution's 401 insufficient_scope.
    let r = s
        .send(Method::GET, "/v2/_catalog", Auth::Bearer(&push))
        .await;
    r.assert_unauthorized();
    assert!(
        r.challenge().contains("insufficient_scope"),
        "{}",
        r.challenge()
    );
}

#[tokio::test]
async fn htpasswd_users_see_every_repository() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("htpasswd");
    htpasswd(&users, &[("alice", "a-pass")]);
    let s = Server::start(json!({ "htpasswd": { "realm": "users", "path": users } })).await;
    let alice = Auth::Basic("alice", "a-pass");
    for repo in ["b/two", "a/one"] {
        assert_eq!(s.push_blob(repo, b"layer", alice).await.status, 201);
    }
    let r = s.send(Method::GET, "/v2/_catalog", alice).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({ "repositories": ["a/one", "b/two"] }));
    s.send(Method::GET, "/v2/_catalog", Auth::None)
        .await
        .assert_unauthorized();
}
