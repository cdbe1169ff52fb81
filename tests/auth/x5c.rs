//! Tokens whose key comes from an `x5c` certificate chain in the header, checked up to
//! `rootcertbundle`. Certificates are made at test time with rcgen.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

const PATH: &str = "/v2/a/b/tags/list";

fn params(cn: &str, ca: bool) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2099, 1, 1);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
    }
    p
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

type Ca = CertifiedIssuer<'static, KeyPair>;

fn root(cn: &str) -> Ca {
    CertifiedIssuer::self_signed(params(cn, true), p256()).unwrap()
}

fn intermediate(cn: &str, by: &Ca) -> Ca {
    CertifiedIssuer::signed_by(params(cn, true), p256(), by).unwrap()
}

/// A leaf certificate (DER) for a fresh key, and the key.
fn leaf(p: CertificateParams, by: &Ca, key: KeyPair) -> (Vec<u8>, KeyPair) {
    let cert = p.signed_by(&key, by).unwrap();
    (cert.der().to_vec(), key)
}

fn b64(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(der)
}

fn token(alg: Algorithm, key: &KeyPair, x5c: Vec<String>, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.x5c = Some(x5c);
    header.kid = kid.map(str::to_string);
    let pkcs8 = key.serialize_der();
    let signing = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_der(&pkcs8),
        _ => EncodingKey::from_ec_der(&pkcs8),
    };
    jsonwebtoken::encode(&header, &claims(repo_access("a/b", &["pull"])), &signing).unwrap()
}

/// A token with a hand-written header (for `x5c` values jsonwebtoken would not write).
fn raw_header_token(header: Value, key: &KeyPair) -> String {
    let enc = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let signing_input = format!(
        "{}.{}",
        enc(&header),
        enc(&claims(repo_access("a/b", &["pull"])))
    );
    let sig = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &EncodingKey::from_ec_der(&key.serialize_der()),
        Algorithm::ES256,
    )
    .unwrap();
    format!("{signing_input}.{sig}")
}

struct Setup {
    server: Server,
    root: Ca,
    inter: Ca,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let other = root("unrelated");
        let root = root("wharf test root");
        let inter = intermediate("wharf test intermediate", &root);
        // The bundle holds another root too, as real bundles do.
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(&bundle, format!("{}{}", other.pem(), root.pem())).unwrap();
        let server = Server::start(json!({ "token": {
            "realm": REALM, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": bundle,
        }}))
        .await;
        Setup {
            server,
            root,
            inter,
            _dir: dir,
        }
    }

    async fn status(&self, token: &str) -> u16 {
        self.server
            .send(Method::GET, PATH, Auth::Bearer(token))
            .await
            .status
    }

    async fn assert_refused(&self, what: &str, token: &str) {
        let r = self
            .server
            .send(Method::GET, PATH, Auth::Bearer(token))
            .await;
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(r.json()["errors"][0]["code"], "UNAUTHORIZED", "{what}");
        assert!(
            r.challenge().contains("error=\"invalid_token\""),
            "{what}: {}",
            r.challenge()
        );
    }
}

#[tokio::test]
async fn chains_that_end_in_the_bundle_are_accepted() {
    let t = Setup::new().await;
    let (leaf_der, key) = leaf(params("token signer", false), &t.inter, p256());
    let chain = vec![b64(&leaf_der), b64(t.inter.der())];
    // 404: authorized, the repository does not exist.
    let ok = token(Algorithm::ES256, &key, chain.clone(), None);
    assert_eq!(t.status(&ok).await, 404);
    // The root itself may end the chain; `kid` does not matter once there is an x5c.
    let mut with_root = chain.clone();
    with_root.push(b64(t.root.der()));
    let ok = token(Algorithm::ES256, &key, with_root, Some("not-a-known-kid"));
    assert_eq!(t.status(&ok).await, 404);
    // A leaf issued by the root directly, with an Ed25519 key.
    let ed = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let (ed_der, ed) = leaf(params("ed signer", false), &t.root, ed);
    let ok = token(Algorithm::EdDSA, &ed, vec![b64(&ed_der)], None);
    assert_eq!(t.status(&ok).await, 404);
}

#[tokio::test]
async fn bad_chains_are_invalid_token() {
    let t = Setup::new().await;
    let (leaf_der, key) = leaf(params("token signer", false), &t.inter, p256());
    let good = vec![b64(&leaf_der), b64(t.inter.der())];

    let foreign_root = root("wharf test root"); // same name, another key
    let foreign_inter = intermediate("wharf test intermediate", &foreign_root);
    let (foreign_leaf, foreign_key) = leaf(params("token signer", false), &foreign_inter, p256());
    t.assert_refused(
        "chain to a foreign root",
        &token(
            Algorithm::ES256,
            &foreign_key,
            vec![b64(&foreign_leaf), b64(foreign_inter.der())],
            None,
        ),
    )
    .await;
    t.assert_refused(
        "foreign root appended",
        &token(
            Algorithm::ES256,
            &foreign_key,
            vec![
                b64(&foreign_leaf),
                b64(foreign_inter.der()),
                b64(foreign_root.der()),
            ],
            None,
        ),
    )
    .await;

    let mut expired = params("token signer", false);
    expired.not_before = date_time_ymd(2020, 1, 1);
    expired.not_after = date_time_ymd(2021, 1, 1);
    let (expired_der, expired_key) = leaf(expired, &t.inter, p256());
    t.assert_refused(
        "expired leaf",
        &token(
            Algorithm::ES256,
            &expired_key,
            vec![b64(&expired_der), b64(t.inter.der())],
            None,
        ),
    )
    .await;
    let mut future = params("token signer", false);
    future.not_before = date_time_ymd(2098, 1, 1);
    let (future_der, future_key) = leaf(future, &t.inter, p256());
    t.assert_refused(
        "leaf not yet valid",
        &token(
            Algorithm::ES256,
            &future_key,
            vec![b64(&future_der), b64(t.inter.der())],
            None,
        ),
    )
    .await;

    t.assert_refused(
        "broken order",
        &token(
            Algorithm::ES256,
            &key,
            vec![b64(t.inter.der()), b64(&leaf_der)],
            None,
        ),
    )
    .await;
    t.assert_refused(
        "missing intermediate",
        &token(Algorithm::ES256, &key, vec![b64(&leaf_der)], None),
    )
    .await;
    t.assert_refused(
        "signed by another key than the leaf's",
        &token(Algorithm::ES256, &p256(), good.clone(), None),
    )
    .await;

    // A leaf issued by a certificate that is not a CA.
    let mut p = params("not a ca", false);
    p.is_ca = IsCa::ExplicitNoCa;
    let not_ca = CertifiedIssuer::signed_by(p, p256(), &t.inter).unwrap();
    let (under_der, under_key) = leaf(params("under", false), &not_ca, p256());
    t.assert_refused(
        "issued by a certificate that is not a CA",
        &token(
            Algorithm::ES256,
            &under_key,
            vec![b64(&under_der), b64(not_ca.der()), b64(t.inter.der())],
            None,
        ),
    )
    .await;

    for (what, x5c) in [
        ("empty x5c", json!([])),
        ("not base64", json!(["!!!"])),
        ("base64 but not DER", json!(["AAAA"])),
        (
            "truncated certificate",
            json!([b64(&leaf_der[..leaf_der.len() / 2])]),
        ),
        ("x5c not a list", json!(5)),
        ("x5c items not strings", json!([1, 2])),
        ("too long", json!(vec![good[0].clone(); 20])),
    ] {
        let tok = raw_header_token(json!({ "alg": "ES256", "typ": "JWT", "x5c": x5c }), &key);
        t.assert_refused(what, &tok).await;
    }
}

#[tokio::test]
async fn x5c_needs_a_rootcertbundle() {
    let dir = tempfile::tempdir().unwrap();
    let ec = ec_key(dir.path(), "k1");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({ "keys": [ec.jwk] }).to_string()).unwrap();
    let server = Server::start(json!({ "token": {
        "realm": REALM, "service": SERVICE, "issuer": ISSUER, "jwks": jwks,
    }}))
    .await;
    let ca = root("root");
    let (der, key) = leaf(params("signer", false), &ca, p256());
    let tok = token(
        Algorithm::ES256,
        &key,
        vec![b64(&der), b64(ca.der())],
        Some("k1"),
    );
    let r = server.send(Method::GET, PATH, Auth::Bearer(&tok)).await;
    r.assert_unauthorized();
    assert!(r.challenge().contains("error=\"invalid_token\""));
}
