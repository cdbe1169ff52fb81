use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

struct Setup {
    server: Server,
    key: EncodingKey,
    ec: EcKey,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ec = ec_key(dir.path(), "k1");
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, json!({ "keys": [ec.jwk] }).to_string()).unwrap();
        let server = Server::start(token_section(json!({ "jwks": jwks }))).await;
        Setup {
            server,
            key: EncodingKey::from_ec_der(&ec.pkcs8),
            ec,
            _dir: dir,
        }
    }

    fn token(&self, claims: &Value) -> String {
        sign(Algorithm::ES256, Some("k1"), &self.key, claims)
    }
}

fn token_section(extra: Value) -> Value {
    let mut t = json!({ "realm": REALM, "service": SERVICE, "issuer": ISSUER });
    for (k, v) in extra.as_object().unwrap() {
        t[k] = v.clone();
    }
    json!({ "token": t })
}

fn b64url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[tokio::test]
async fn challenge_without_a_token() {
    let t = Setup::new().await;
    let r = t
        .server
        .send(Method::GET, "/v2/a/b/manifests/latest", Auth::None)
        .await;
    r.assert_unauthorized();
    assert_eq!(
        r.challenge(),
        format!("Bearer realm=\"{REALM}\",service=\"{SERVICE}\",scope=\"repository:a/b:pull\"")
    );
    let r = t
        .server
        .send(Method::POST, "/v2/a/b/blobs/uploads/", Auth::None)
        .await;
    assert!(
        r.challenge().contains("scope=\"repository:a/b:pull,push\""),
        "{}",
        r.challenge()
    );
    let r = t.server.send(Method::GET, "/v2/", Auth::None).await;
    assert_eq!(
        r.challenge(),
        format!("Bearer realm=\"{REALM}\",service=\"{SERVICE}\"")
    );
    let r = t
        .server
        .send(Method::GET, "/v2/", Auth::Basic("a", "b"))
        .await;
    r.assert_unauthorized();
}

#[tokio::test]
async fn challenge_scope_for_every_endpoint_kind() {
    let t = Setup::new().await;
    let blob = format!("/v2/a/b/blobs/{}", sha256(b"x"));
    let upload = "/v2/a/b/blobs/uploads/0f6a6c5e-1d1b-4a7e-9d0c-2f2b6f0e6d1a";
    let referrers = format!("/v2/a/b/referrers/{}", sha256(b"x"));
    let pull = "repository:a/b:pull";
    let push = "repository:a/b:pull,push";
    let delete = "repository:a/b:delete";
    let cases = [
        (Method::GET, "/v2/a/b/tags/list", pull),
        (Method::GET, "/v2/a/b/manifests/latest", pull),
        (Method::HEAD, "/v2/a/b/manifests/latest", pull),
        (Method::PUT, "/v2/a/b/manifests/latest", push),
        (Method::DELETE, "/v2/a/b/manifests/latest", delete),
        (Method::GET, blob.as_str(), pull),
        (Method::HEAD, blob.as_str(), pull),
        (Method::DELETE, blob.as_str(), delete),
        (Method::POST, "/v2/a/b/blobs/uploads/", push),
        (Method::GET, upload, push),
        (Method::PATCH, upload, push),
        (Method::PUT, upload, push),
        (Method::DELETE, upload, push),
        (Method::GET, referrers.as_str(), pull),
        (Method::GET, "/v2/_catalog", "registry:catalog:*"),
    ];
    for (method, path, scope) in cases {
        let r = t.server.send(method.clone(), path, Auth::None).await;
        if method == Method::HEAD {
            assert_eq!(r.status, 401, "HEAD {path}");
        } else {
            r.assert_unauthorized();
        }
        assert_eq!(
            r.challenge(),
            format!("Bearer realm=\"{REALM}\",service=\"{SERVICE}\",scope=\"{scope}\""),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn valid_tokens_by_scope() {
    let t = Setup::new().await;
    let s = &t.server;
    let none = t.token(&claims(json!([])));
    assert_eq!(
        s.send(Method::GET, "/v2/", Auth::Bearer(&none))
            .await
            .status,
        200
    );

    let push = t.token(&claims(repo_access("a/b", &["pull", "push"])));
    assert_eq!(
        s.push_blob("a/b", b"data", Auth::Bearer(&push))
            .await
            .status,
        201
    );
    let blob = format!("/v2/a/b/blobs/{}", sha256(b"data"));
    assert_eq!(
        s.send(Method::GET, &blob, Auth::Bearer(&push)).await.status,
        200
    );

    let pull = t.token(&claims(repo_access("a/b", &["pull"])));
    assert_eq!(
        s.send(Method::HEAD, &blob, Auth::Bearer(&pull))
            .await
            .status,
        200
    );
    for (method, path) in [
        (Method::POST, "/v2/a/b/blobs/uploads/".to_string()),
        (Method::PUT, "/v2/a/b/manifests/v1".to_string()),
        (Method::DELETE, blob.clone()),
    ] {
        let r = s.send(method.clone(), &path, Auth::Bearer(&pull)).await;
        r.assert_unauthorized();
        assert!(
            r.challenge().contains("error=\"insufficient_scope\""),
            "{method} {path}: {}",
            r.challenge()
        );
    }
    let r = s.send(Method::DELETE, &blob, Auth::Bearer(&pull)).await;
    assert!(
        r.challenge().contains("scope=\"repository:a/b:delete\""),
        "{}",
        r.challenge()
    );
    // Another repository.
    let r = s
        .send(Method::GET, "/v2/a/c/tags/list", Auth::Bearer(&pull))
        .await;
    assert!(r.challenge().contains("insufficient_scope"));
    // `*` grants everything on the repository.
    let all = t.token(&claims(repo_access("a/b", &["*"])));
    assert_eq!(
        s.send(Method::DELETE, &blob, Auth::Bearer(&all))
            .await
            .status,
        202
    );

    // Catalog needs its own scope.
    let r = s
        .send(Method::GET, "/v2/_catalog", Auth::Bearer(&push))
        .await;
    r.assert_unauthorized();
    assert!(
        r.challenge()
            .contains("scope=\"registry:catalog:*\",error=\"insufficient_scope\""),
        "{}",
        r.challenge()
    );
    let cat = t.token(&claims(
        json!([{ "type": "registry", "name": "catalog", "actions": ["*"] }]),
    ));
    assert_eq!(
        s.send(Method::GET, "/v2/_catalog", Auth::Bearer(&cat))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn every_kind_of_bad_token_is_invalid_token() {
    let t = Setup::new().await;
    let access = repo_access("a/b", &["pull"]);
    let good = claims(access.clone());
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let header_payload = |header: Value, claims: &Value| {
        format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        )
    };
    let public_pem = {
        // The public key, as an attacker would find it, used as an HMAC secret.
        std::fs::read(&t.ec.pem).unwrap()
    };
    let other = ec_key(t._dir.path(), "other");
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.",
                header_payload(json!({"alg":"none","typ":"JWT","kid":"k1"}), &good)
            ),
        ),
        (
            "HS256 with the public key as secret",
            sign(
                Algorithm::HS256,
                Some("k1"),
                &EncodingKey::from_secret(&public_pem),
                &good,
            ),
        ),
        (
            "HS256 with the JWK as secret",
            sign(
                Algorithm::HS256,
                Some("k1"),
                &EncodingKey::from_secret(t.ec.jwk.to_string().as_bytes()),
                &good,
            ),
        ),
        (
            "unknown kid",
            sign(Algorithm::ES256, Some("nope"), &t.key, &good),
        ),
        ("no kid", sign(Algorithm::ES256, None, &t.key, &good)),
        (
            "signed by an untrusted key under a trusted kid",
            sign(
                Algorithm::ES256,
                Some("k1"),
                &EncodingKey::from_ec_der(&other.pkcs8),
                &good,
            ),
        ),
        ("expired", t.token(&with("exp", json!(now() - 600)))),
        ("not yet valid", t.token(&with("nbf", json!(now() + 600)))),
        (
            "no exp",
            t.token(&{
                let mut c = good.clone();
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
        ),
        (
            "wrong audience",
            t.token(&with("aud", json!("another-registry"))),
        ),
        ("wrong issuer", t.token(&with("iss", json!("evil")))),
        ("malformed", "not.a.token".to_string()),
        ("garbage", "%%%".to_string()),
        ("tampered payload", {
            let tok = t.token(&good);
            let parts: Vec<&str> = tok.split('.').collect();
            let evil = repo_access("a/b", &["*"]);
            format!(
                "{}.{}.{}",
                parts[0],
                b64url(claims(evil).to_string().as_bytes()),
                parts[2]
            )
        }),
    ];
    for (what, token) in cases {
        let r = t
            .server
            .send(Method::GET, "/v2/a/b/tags/list", Auth::Bearer(&token))
            .await;
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(r.json()["errors"][0]["code"], "UNAUTHORIZED", "{what}");
        assert!(
            r.challenge().contains("error=\"invalid_token\""),
            "{what}: {}",
            r.challenge()
        );
        assert!(r.challenge().starts_with("Bearer realm="), "{what}");
    }
    // Audience given as a list containing the service is fine.
    let ok = t.token(&with("aud", json!(["x", SERVICE])));
    assert_eq!(
        t.server
            .send(Method::GET, "/v2/", Auth::Bearer(&ok))
            .await
            .status,
        200
    );
    // Within the leeway.
    let ok = t.token(&with("exp", json!(now() - 5)));
    assert_eq!(
        t.server
            .send(Method::GET, "/v2/", Auth::Bearer(&ok))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn cross_repository_mount_needs_pull_on_from() {
    let t = Setup::new().await;
    let s = &t.server;
    let src = t.token(&claims(repo_access("team/src", &["pull", "push"])));
    assert_eq!(
        s.push_blob("team/src", b"shared layer", Auth::Bearer(&src))
            .await
            .status,
        201
    );
    let digest = sha256(b"shared layer");
    let mount = format!("/v2/team/dst/blobs/uploads/?mount={digest}&from=team/src");

    let push_only = t.token(&claims(repo_access("team/dst", &["pull", "push"])));
    let r = s.send(Method::POST, &mount, Auth::Bearer(&push_only)).await;
    assert_eq!(r.status, 202, "no pull on `from`: an ordinary session");
    assert!(r
        .header("location")
        .unwrap()
        .contains("/v2/team/dst/blobs/uploads/"));
    // Without `from` a token-limited caller gets a session too.
    let r = s
        .send(
            Method::POST,
            &format!("/v2/team/dst/blobs/uploads/?mount={digest}"),
            Auth::Bearer(&push_only),
        )
        .await;
    assert_eq!(r.status, 202);

    let both = t.token(&claims(json!([
        { "type": "repository", "name": "team/dst", "actions": ["pull", "push"] },
        { "type": "repository", "name": "team/src", "actions": ["pull"] },
    ])));
    let r = s.send(Method::POST, &mount, Auth::Bearer(&both)).await;
    assert_eq!(r.status, 201, "mounted");
}

#[tokio::test]
async fn keys_from_a_certificate_bundle_and_eddsa_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let (key_pem, cert_pem) = rsa_cert(dir.path(), "root");
    let (ed_pkcs8, ed_jwk) = ed_key("ed");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({ "keys": [ed_jwk] }).to_string()).unwrap();
    let s = Server::start(token_section(
        json!({ "rootcertbundle": cert_pem, "jwks": jwks }),
    ))
    .await;

    let cert = pem::parse(std::fs::read(&cert_pem).unwrap()).unwrap();
    let spki = wharf::auth::token::certificate_spki(cert.contents()).unwrap();
    let libtrust = wharf::auth::token::libtrust_key_id(spki);
    let thumbprint = wharf::auth::token::PublicKey::from_spki(spki)
        .unwrap()
        .thumbprint;
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(&key_pem).unwrap()).unwrap();
    let c = claims(repo_access("a/b", &["pull"]));
    for kid in [libtrust.as_str(), thumbprint.as_str()] {
        for alg in [Algorithm::RS256, Algorithm::PS256] {
            let tok = sign(alg, Some(kid), &rsa, &c);
            let r = s
                .send(Method::GET, "/v2/a/b/tags/list", Auth::Bearer(&tok))
                .await;
            assert_eq!(r.status, 404, "{alg:?} kid {kid}: {}", r.challenge());
        }
    }
    // An RSA key under an ES256 header is refused.
    let tok = sign(Algorithm::RS256, Some(&libtrust), &rsa, &c);
    let mut parts: Vec<String> = tok.split('.').map(str::to_string).collect();
    parts[0] = b64url(json!({"alg":"ES256","kid":libtrust}).to_string().as_bytes());
    let r = s
        .send(
            Method::GET,
            "/v2/a/b/tags/list",
            Auth::Bearer(&parts.join(".")),
        )
        .await;
    assert!(r.challenge().contains("invalid_token"));

    let ed = sign(
        Algorithm::EdDSA,
        Some("ed"),
        &EncodingKey::from_ed_der(&ed_pkcs8),
        &c,
    );
    assert_eq!(
        s.send(Method::GET, "/v2/a/b/tags/list", Auth::Bearer(&ed))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn signing_algorithms_restrict() {
    let dir = tempfile::tempdir().unwrap();
    let ec = ec_key(dir.path(), "k1");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({ "keys": [ec.jwk] }).to_string()).unwrap();
    let s = Server::start(token_section(
        json!({ "jwks": jwks, "signingalgorithms": ["RS256"] }),
    ))
    .await;
    let tok = sign(
        Algorithm::ES256,
        Some("k1"),
        &EncodingKey::from_ec_der(&ec.pkcs8),
        &claims(json!([])),
    );
    let r = s.send(Method::GET, "/v2/", Auth::Bearer(&tok)).await;
    assert!(r.challenge().contains("invalid_token"));
    let err = Server::try_start(token_section(
        json!({ "jwks": jwks, "signingalgorithms": ["HS256"] }),
    ))
    .await
    .err()
    .expect("HS256 refused");
    assert!(err.contains("auth.token.signingalgorithms"), "{err}");
}

/// `wharf_auth_decisions_total{mechanism, outcome}` on `/metrics`. The counters are the
/// process's, shared with the tests running alongside: they only ever grow.
#[tokio::test]
async fn decisions_are_counted() {
    let t = Setup::new().await;
    let count = |outcome: &'static str| {
        let s = &t.server;
        async move {
            let r = s.send(Method::GET, "/metrics", Auth::None).await;
            assert_eq!(r.status, 200);
            let text = String::from_utf8(r.body).unwrap();
            let prefix =
                format!("wharf_auth_decisions_total{{mechanism=\"token\",outcome=\"{outcome}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .map_or(0, |v| v.trim().parse::<u64>().unwrap())
        }
    };
    let before = (count("invalid_token").await, count("granted").await);
    let bad = t
        .server
        .send(Method::GET, "/v2/", Auth::Bearer("x.y.z"))
        .await;
    bad.assert_unauthorized();
    let good = t.token(&claims(json!([])));
    assert_eq!(
        t.server
            .send(Method::GET, "/v2/", Auth::Bearer(&good))
            .await
            .status,
        200
    );
    assert!(count("invalid_token").await > before.0);
    assert!(count("granted").await > before.1);
}
