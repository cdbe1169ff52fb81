//! The `wharf` command as a user meets it: real processes of the built binary, their
//! exit status and what they print. Bare `wharf` and `--help`; `log.*` values checked;
//! stray `REGISTRY_*` variables ignored with a warning; the start-up lines; a busy port
//! refused before anything is created; one process per SQLite database; what SIGTERM
//! says and that it lets a request in progress finish.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

mod import;

const WAIT: Duration = Duration::from_secs(30);

/// `wharf` with a clean environment for the settings it reads: no `REGISTRY_*`,
/// `WHARF_CONFIG`, `RUST_LOG` or `NO_COLOR` from the test's own environment.
fn wharf() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wharf"));
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") {
            c.env_remove(k);
        }
    }
    c.env_remove("WHARF_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("run wharf")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `GET path` over plain HTTP/1.0: the status and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(conn, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
    let mut response = String::new();
    conn.read_to_string(&mut response).expect("response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A configuration with everything under `dir` and the given extra YAML.
fn config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let path = dir.join(format!("config-{port}.yml"));
    std::fs::write(
        &path,
        format!(
            "version: 0.1\nhttp:\n  addr: 127.0.0.1:{port}\n  draintimeout: 2s\nstorage:\n  filesystem:\n    rootdirectory: {root}\ndatabase:\n  url: sqlite://{root}/wharf.db\n{extra}",
            root = dir.join("data").display()
        ),
    )
    .expect("write config");
    path
}

/// A `wharf serve` whose stderr is collected line by line as it comes.
struct Serve {
    child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    port: u16,
}

impl Serve {
    fn start(mut command: Command, port: u16) -> Serve {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wharf serve");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("  wharf: {line}");
                sink.0.lock().unwrap().push(line);
                sink.1.notify_all();
            }
        });
        Serve { child, lines, port }
    }

    fn with_config(config: &Path, port: u16) -> Serve {
        let mut c = wharf();
        c.arg("serve").arg("--config").arg(config);
        Serve::start(c, port)
    }

    /// Waits for a line containing `needle`; panics with everything printed so far.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let (lock, cond) = &*self.lines;
        let mut lines = lock.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no line with {needle:?} within {WAIT:?}; got:\n{}",
                lines.join("\n")
            );
            lines = cond.wait_timeout(lines, left).unwrap().0;
        }
    }

    fn output(&self) -> String {
        self.lines.0.lock().unwrap().join("\n")
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill");
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "wharf did not exit; output:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn bare_wharf_prints_help_and_exits_2_and_help_goes_to_stdout() {
    let out = run(&mut wharf());
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("Usage:") && err.contains("serve"),
        "help expected on stderr: {err}"
    );
    let out = run(wharf().arg("--help"));
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(
        help.contains("Usage:") && help.contains("check-config"),
        "{help}"
    );
    let out = run(wharf().arg("--version"));
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_log_values_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (yaml, key, value) in [
        ("log:\n  level: loud\n", "log.level", "loud"),
        ("log:\n  formatter: xml\n", "log.formatter", "xml"),
    ] {
        let path = config(dir.path(), 1, yaml);
        let out = run(wharf().arg("check-config").arg("--config").arg(&path));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml:?}: {err}");
        assert!(err.contains(key) && err.contains(value), "{yaml:?}: {err}");
        // `serve` refuses it too, before creating anything.
        let out = run(wharf().arg("serve").arg("--config").arg(&path));
        assert_eq!(out.status.code(), Some(2), "{yaml:?}");
        assert!(!dir.path().join("data").exists());
    }
    let path = config(
        dir.path(),
        1,
        "log:\n  level: WARN\n  formatter: logstash\n  accesslog:\n    disabled: true\n",
    );
    let out = run(wharf().arg("check-config").arg("--config").arg(&path));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn a_stray_registry_variable_is_ignored_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), 1, "");
    let out = run(wharf()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .env("REGISTRY_URL", "http://x")
        .env("REGISTRY_HTTP_NOPE", "1"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("WARN"), "{err}");
    assert!(
        err.contains("ignoring REGISTRY_URL: `url` is not a configuration key"),
        "{err}"
    );
    assert!(err.contains("ignoring REGISTRY_HTTP_NOPE"), "{err}");
    assert!(!err.contains("http://x"), "values are not shown: {err}");
    // An unknown key in the file stays fatal.
    let path = config(dir.path(), 1, "url: http://x\n");
    let out = run(wharf().arg("check-config").arg("--config").arg(&path));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("url"));
}

#[test]
fn start_up_says_what_it_runs_on_and_sigterm_says_how_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = config(dir.path(), port, "");
    let mut c = wharf();
    c.arg("serve")
        .arg("--config")
        .arg(&path)
        .env("REGISTRY_URL", "http://ci.example");
    let mut s = Serve::start(c, port);
    s.wait_for("ready");
    let root = dir.path().join("data");
    for needle in [
        format!("wharf {} starting", env!("CARGO_PKG_VERSION")),
        format!("listening on http://127.0.0.1:{port}"),
        format!("blob storage: filesystem, {}", root.display()),
        format!("metadata: sqlite, {}", root.join("wharf.db").display()),
        "cache: none".to_string(),
        "auth: none".to_string(),
        "notifications: none".to_string(),
        "ignoring REGISTRY_URL".to_string(),
    ] {
        s.wait_for(&needle);
    }
    let out = s.output();
    assert!(!out.contains('\x1b'), "no colours into a pipe:\n{out}");
    // Start-up order: listening before the stores are opened.
    let at = |needle: &str| out.find(needle).unwrap();
    assert!(at("listening on") < at("metadata: sqlite"), "{out}");

    assert_eq!(get(port, "/v2/").0, 200);

    s.signal(libc::SIGTERM);
    s.wait_for("SIGTERM received: stopping");
    s.wait_for("drained in");
    let status = s.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(s.output().lines().last().unwrap().contains("stopped"));
}

#[test]
fn sigterm_lets_a_request_in_progress_finish() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = config(dir.path(), port, "");
    let mut s = Serve::with_config(&path, port);
    s.wait_for("ready");
    let url = s.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let location = rt.block_on(async {
        let r = client
            .post(format!("{url}/v2/drain/test/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        r.headers()["location"].to_str().unwrap().to_string()
    });

    // A PATCH whose body arrives in two parts; SIGTERM in between.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|part| (part, rx))
    });
    let patch = rt.spawn(
        client
            .patch(format!("{url}{location}"))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", "2000")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tx.blocking_send(Ok(vec![b'a'; 1000])).unwrap();
    // Wait until the server is handling it (the metrics GET counts itself too).
    let deadline = Instant::now() + WAIT;
    loop {
        let busy = get(port, "/metrics")
            .1
            .lines()
            .find_map(|l| l.strip_prefix("wharf_http_requests_in_flight "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if busy >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the PATCH never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    s.signal(libc::SIGTERM);
    s.wait_for("draining 1 request(s) in progress");
    std::thread::sleep(Duration::from_millis(500));
    tx.blocking_send(Ok(vec![b'b'; 1000])).unwrap();
    drop(tx);
    let status = rt.block_on(patch).unwrap().map(|r| r.status().as_u16());
    assert_eq!(status.ok(), Some(202), "{}", s.output());
    s.wait_for("drained in");
    assert!(s.wait_exit().success());
}

#[test]
fn a_busy_port_is_refused_once_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let path = config(dir.path(), port, "");
    let out = run(wharf().arg("serve").arg("--config").arg(&path));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.matches("cannot listen on").count(),
        1,
        "the error once:\n{err}"
    );
    assert!(err.contains("REGISTRY_HTTP_ADDR"), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing created before listening"
    );
}

#[test]
fn a_second_process_on_one_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (port, other) = (free_port(), free_port());
    let first_config = config(dir.path(), port, "");
    let mut first = Serve::with_config(&first_config, port);
    first.wait_for("ready");
    let pid = first.child.id();

    // The same database, another port: refused, naming the holder and PostgreSQL.
    let second_config = config(dir.path(), other, "");
    let out = run(wharf().arg("serve").arg("--config").arg(&second_config));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("process {pid}")), "{err}");
    assert!(err.contains("wharf.db.lock"), "{err}");
    assert!(err.contains("PostgreSQL"), "{err}");
    assert_eq!(err.matches("is in use by").count(), 1, "{err}");
    // `migrate` too: it would change the schema under the running server.
    let out = run(wharf().arg("migrate").arg("--config").arg(&second_config));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("process {pid}")));
    // The first is unaffected.
    assert_eq!(get(port, "/v2/").0, 200);

    // Once it is gone, even killed, the database is free again.
    first.signal(libc::SIGKILL);
    first.wait_exit();
    let mut second = Serve::with_config(&second_config, other);
    second.wait_for("ready");
    second.signal(libc::SIGTERM);
    assert!(second.wait_exit().success());
}

/// `wharf quota recompute`: exit 0 when the counters are right; a counter set wrong
/// behind the database's back is printed, exit 3, and fixed (`--check` only reports).
#[test]
fn quota_recompute_reports_and_fixes_drift() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), free_port(), "");
    let out = run(wharf().args(["migrate", "--config"]).arg(&cfg));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let db = format!("sqlite://{}/data/wharf.db", dir.path().display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
        for sql in [
            "INSERT INTO repositories (name, created_at) VALUES ('cli/app', 0)",
            "INSERT INTO blobs (digest, size, storage_key, created_at) VALUES ('sha256:00', 5, 'k', 0)",
            "INSERT INTO repository_blobs (repository_id, digest, created_at) SELECT id, 'sha256:00', 0 FROM repositories",
            "UPDATE quota_usage SET stored_bytes = 999 WHERE scope = 'cli/'",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
    });
    let recompute = |extra: &[&str]| {
        run(wharf()
            .args(["quota", "recompute"])
            .args(extra)
            .arg("--config")
            .arg(&cfg))
    };
    for _ in 0..2 {
        let out = recompute(&["--check"]);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "scope \"cli/\": stored_bytes counted 999, actual 5\n"
        );
    }
    let out = recompute(&[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("1 quota counters were wrong; fixed"));
    let out = recompute(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert!(text(&out.stderr).contains("quota counters are right"));
}
