//! Test harness for authentication: a real Wharf server started in-process on a free
//! port (as tests/api does), with the `auth` section each test gives, and helpers that
//! make users files and keys at test time (ring for P-256/Ed25519, the openssl CLI for
//! RSA keys and certificates). No private key is stored in the repository.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use base64::Engine as _;
use reqwest::Method;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use sha2::Digest as _;

pub const SERVICE: &str = "wharf-test";
pub const ISSUER: &str = "test-issuer";
pub const REALM: &str = "https://auth.example.test/token";

pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn challenge(&self) -> &str {
        self.header("www-authenticate").unwrap_or("")
    }
    /// Asserts a 401 `UNAUTHORIZED` with the spec's error body.
    pub fn assert_unauthorized(&self) {
        assert_eq!(self.status, 401, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.json()["errors"][0]["code"], "UNAUTHORIZED");
    }
}

impl Server {
    pub async fn start(auth: Value) -> Server {
        Self::try_start(auth).await.expect("server starts")
    }

    pub async fn try_start(auth: Value) -> Result<Server, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = json!({
            "storage": { "filesystem": { "rootdirectory": dir.path().join("blobs") } },
            "database": { "url": format!("sqlite://{}", dir.path().join("wharf.db").display()) },
            "auth": auth,
        });
        let tree = serde_norway::to_value(tree).expect("yaml");
        let config = wharf::config::Config::from_tree(tree).map_err(|e| e.to_string())?;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let registry = match wharf::server::registry(&config).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                match wharf::server::http_server(registry, &config, listener) {
                    Ok(server) => {
                        let _ = tx.send(Ok(server.handle()));
                        let _ = server.await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            })
        });
        let handle = rx.await.map_err(|e| e.to_string())??;
        Ok(Server {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            handle,
            thread: Some(thread),
            _dir: dir,
        })
    }

    pub async fn send(&self, method: Method, path: &str, auth: Auth<'_>) -> Resp {
        self.send_body(method, path, auth, Vec::new()).await
    }

    pub async fn send_body(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Vec<u8>,
    ) -> Resp {
        let mut rb = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .body(body);
        rb = match auth {
            Auth::None => rb,
            Auth::Basic(u, p) => rb.basic_auth(u, Some(p)),
            Auth::Bearer(t) => rb.bearer_auth(t),
        };
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.expect("body").to_vec();
        assert!(
            status < 500,
            "server error {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Pushes a blob in one request (`POST ?digest=`).
    pub async fn push_blob(&self, repo: &str, data: &[u8], auth: Auth<'_>) -> Resp {
        let digest = sha256(data);
        self.send_body(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            auth,
            data.to_vec(),
        )
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        std::mem::drop(handle.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// A bcrypt (cost 4: fast in tests) htpasswd file.
pub fn htpasswd(path: &Path, users: &[(&str, &str)]) {
    let text: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap()))
        .collect();
    std::fs::write(path, text).unwrap();
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A fresh P-256 key: PKCS#8 DER, PEM file path, and its public JWK (with `kid`).
pub struct EcKey {
    pub pkcs8: Vec<u8>,
    pub pem: PathBuf,
    pub jwk: Value,
}

pub fn ec_key(dir: &Path, kid: &str) -> EcKey {
    let rng = ring::rand::SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid,
        "x": b64url(&point[1..33]), "y": b64url(&point[33..65]),
    });
    let pem_path = dir.join(format!("{kid}.pem"));
    std::fs::write(
        &pem_path,
        pem::encode(&pem::Pem::new("PRIVATE KEY", doc.as_ref().to_vec())),
    )
    .unwrap();
    EcKey {
        pkcs8: doc.as_ref().to_vec(),
        pem: pem_path,
        jwk,
    }
}

/// A fresh Ed25519 key: PKCS#8 DER and its public JWK.
pub fn ed_key(kid: &str) -> (Vec<u8>, Value) {
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64url(pair.public_key().as_ref()) });
    (doc.as_ref().to_vec(), jwk)
}

/// A fresh RSA key and self-signed certificate (openssl CLI): (key PEM path, cert PEM path).
pub fn rsa_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=wharf-test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl CLI")
        .success();
    assert!(ok, "openssl req failed");
    (key, cert)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Standard claims for a token valid now, with `access`.
pub fn claims(access: Value) -> Value {
    json!({
        "iss": ISSUER, "sub": "tester", "aud": SERVICE,
        "exp": now() + 300, "nbf": now() - 5, "iat": now() - 5,
        "access": access,
    })
}

pub fn repo_access(name: &str, actions: &[&str]) -> Value {
    json!([{ "type": "repository", "name": name, "actions": actions }])
}

pub fn sign(
    alg: jsonwebtoken::Algorithm,
    kid: Option<&str>,
    key: &jsonwebtoken::EncodingKey,
    claims: &Value,
) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}
