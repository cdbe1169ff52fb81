//! Configurations written as distribution's documentation and example files write
//! them (the same sections and keys), with only `database` added and paths and ports
//! pointed at the test's directory: `check-config` accepts each, and `serve` starts
//! those that need no outside service.

use crate::support::{check_config, free_port, Ca, Serve};

/// `yaml` with `{dir}` and `{port}` filled in, plus `database`, written to a file.
fn sample(dir: &std::path::Path, name: &str, yaml: &str, port: u16) -> std::path::PathBuf {
    let text = yaml
        .replace("{dir}", &dir.display().to_string())
        .replace("{port}", &port.to_string())
        .replace("{debug}", &free_port().to_string());
    let path = dir.join(format!("{name}.yml"));
    std::fs::write(
        &path,
        format!(
            "{text}database:\n  url: sqlite://{}/{name}.db\n",
            dir.display()
        ),
    )
    .unwrap();
    path
}

const FILESYSTEM: &str = "version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: {dir}/data
  tag:
    concurrencylimit: 8
http:
  addr: 127.0.0.1:{port}
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: basic-realm
    path: {dir}/htpasswd
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

const DEVELOPMENT: &str = "version: 0.1
log:
  level: debug
  fields:
    service: registry
    environment: development
storage:
    delete:
      enabled: true
    cache:
        blobdescriptor: inmemory
    filesystem:
        rootdirectory: {dir}/data
    maintenance:
        uploadpurging:
            enabled: false
    tag:
      concurrencylimit: 8
http:
    addr: 127.0.0.1:{port}
    debug:
        addr: 127.0.0.1:{debug}
        prometheus:
            enabled: true
            path: /metrics
    headers:
        X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

const TLS: &str = "version: 0.1
log:
  accesslog:
    disabled: false
  level: info
  formatter: json
  fields:
    service: registry
    environment: staging
storage:
  filesystem:
    rootdirectory: {dir}/data
  delete:
    enabled: true
  redirect:
    disable: false
http:
  addr: 127.0.0.1:{port}
  prefix: /my/nested/registry/
  host: https://myregistryaddress.org:5000
  secret: asecretforlocaldevelopment
  relativeurls: false
  draintimeout: 60s
  tls:
    certificate: {dir}/server.pem
    key: {dir}/server.key
    clientcas:
      - {dir}/ca.pem
    minimumtls: tls1.2
    ciphersuites:
      - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
      - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
  debug:
    addr: 127.0.0.1:{debug}
    prometheus:
      enabled: true
      path: /metrics
  headers:
    X-Content-Type-Options: [nosniff]
  http2:
    disabled: false
  h2c:
    enabled: false
";

const TOKEN: &str = "version: 0.1
storage:
  filesystem:
    rootdirectory: {dir}/data
http:
  addr: 127.0.0.1:{port}
auth:
  token:
    realm: https://auth.example.com/token
    service: registry.example.com
    issuer: auth-server
    rootcertbundle: {dir}/ca.pem
";

/// Redis, notifications and a pull-through cache: started against a throwaway
/// `redis-server` in its own test (the address is the only change).
const CACHE_NOTIFICATIONS_PROXY: &str = "version: 0.1
log:
  level: debug
  fields:
    service: registry
    environment: development
storage:
    cache:
        blobdescriptor: redis
    filesystem:
        rootdirectory: {dir}/data
    maintenance:
        uploadpurging:
            enabled: false
http:
    addr: 127.0.0.1:{port}
    secret: asecretforlocaldevelopment
    debug:
        addr: localhost:{debug}
    headers:
        X-Content-Type-Options: [nosniff]
redis:
  addr: localhost:6379
  pool:
    maxidle: 16
    maxactive: 64
    idletimeout: 300s
  dialtimeout: 10ms
  readtimeout: 10ms
  writetimeout: 10ms
notifications:
    events:
        includereferences: true
    endpoints:
        - name: local-8082
          url: http://localhost:5003/callback
          headers:
             Authorization: [Bearer an-example-token]
          timeout: 1s
          threshold: 10
          backoff: 1s
          disabled: true
proxy:
  remoteurl: https://registry-1.docker.io
  username: username
  password: password
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
  file:
    - file: /path/to/checked/file
      interval: 10s
  http:
    - uri: http://server.to.check/must/return/200
      headers:
        Authorization: [Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==]
      statuscode: 200
      timeout: 3s
      interval: 10s
      threshold: 3
  tcp:
    - addr: redis-server.domain.com:6379
      timeout: 3s
      interval: 10s
      threshold: 3
";

/// distribution's "Native basic auth" deployment (htpasswd, which it requires with TLS).
const HTPASSWD: &str = "version: 0.1
storage:
  filesystem:
    rootdirectory: {dir}/data
http:
  addr: 127.0.0.1:{port}
  tls:
    certificate: {dir}/server.pem
    key: {dir}/server.key
auth:
  htpasswd:
    realm: Registry Realm
    path: {dir}/htpasswd
";

/// S3 with every key of distribution's `storage.s3` reference and CloudFront in front
/// (its `middleware.storage` example): checked, not started (the bucket is the
/// example's, on no server).
const S3_CLOUDFRONT: &str = "version: 0.1
storage:
  s3:
    accesskey: awsaccesskey
    secretkey: awssecretkey
    region: us-west-1
    regionendpoint: http://myobjects.local
    forcepathstyle: true
    accelerate: false
    bucket: bucketname
    encrypt: true
    keyid: mykeyid
    secure: true
    v4auth: true
    chunksize: 5242880
    multipartcopychunksize: 33554432
    multipartcopymaxconcurrency: 100
    multipartcopythresholdsize: 33554432
    rootdirectory: /s3/object/name/prefix
    usedualstack: false
    objectacl: private
    storageclass: STANDARD
    loglevel: debug
  redirect:
    disable: false
http:
  addr: 127.0.0.1:{port}
middleware:
  storage:
    - name: cloudfront
      options:
        baseurl: https://my.cloudfronted.domain.com/
        privatekey: {dir}/cloudfront.pem
        keypairid: cloudfrontkeypairid
        duration: 3000s
        ipfilteredby: awsregion
        awsregion: us-east-1, use-east-2
        updatefrequency: 12h
        iprangesurl: https://ip-ranges.amazonaws.com/ip-ranges.json
";

#[tokio::test]
async fn the_htpasswd_sample_asks_for_basic_auth_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("htpasswd sample CA");
    ca.write_server(dir.path(), "wharf");
    let hash = bcrypt::hash("secret", 4).unwrap();
    std::fs::write(dir.path().join("htpasswd"), format!("alice:{hash}\n")).unwrap();
    let port = free_port();
    let path = sample(dir.path(), "htpasswd", HTPASSWD, port);
    let (ok, out) = check_config(&path);
    assert!(ok, "{out}");
    let _serve = Serve::start(&path);
    let client = crate::support::client(&ca.pem()).build().unwrap();
    let url = format!("https://localhost:{port}/v2/");
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"Registry Realm\""
    );
    let r = client
        .get(&url)
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(&url)
        .basic_auth("alice", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn the_s3_cloudfront_sample_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let key = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(dir.path().join("cloudfront.pem"))
        .arg("2048")
        .output()
        .expect("openssl");
    assert!(key.status.success(), "{key:?}");
    let path = sample(dir.path(), "s3-cloudfront", S3_CLOUDFRONT, free_port());
    let (ok, out) = check_config(&path);
    assert!(ok, "{out}");
}

#[test]
fn distribution_sample_configurations_start_with_only_database_added() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("samples CA");
    ca.write_server(dir.path(), "wharf");
    let hash = bcrypt::hash("secret", 4).unwrap();
    std::fs::write(dir.path().join("htpasswd"), format!("alice:{hash}\n")).unwrap();
    for (name, yaml, starts) in [
        ("filesystem", FILESYSTEM, true),
        ("development", DEVELOPMENT, true),
        ("tls", TLS, true),
        ("token", TOKEN, true),
    ] {
        let port = free_port();
        let path = sample(dir.path(), name, yaml, port);
        let (ok, out) = check_config(&path);
        assert!(ok, "{name}: {out}");
        if starts {
            let serve = Serve::start(&path);
            drop(serve);
        }
    }
}

/// distribution's Redis + notifications + proxy example, with Redis's address pointed at
/// a real `redis-server`: it starts and serves `/v2/`.
#[tokio::test]
async fn the_redis_notifications_proxy_sample_starts_with_redis() {
    let redis = crate::redis_server::RedisServer::start("the redis sample test");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = CACHE_NOTIFICATIONS_PROXY.replace("localhost:6379", &redis.addr());
    let path = sample(dir.path(), "cache-notifications-proxy", &yaml, port);
    let (ok, out) = check_config(&path);
    assert!(ok, "{out}");
    let _serve = Serve::start(&path);
    let r = reqwest::get(format!("http://127.0.0.1:{port}/v2/"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
}
