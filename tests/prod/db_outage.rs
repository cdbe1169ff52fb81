//! A PostgreSQL outage fails fast: `database.acquiretimeout` and the circuit breaker
//! (`database.breaker`). The test runs a PostgreSQL cluster of its own (initdb and
//! pg_ctl from `/usr/lib/postgresql/15/bin`, as the `postgres` user when run as root),
//! stops it under a running `wharf serve`, and starts it again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{free_port, Serve};

const BINDIR: &str = "/usr/lib/postgresql/15/bin";

/// A throwaway PostgreSQL cluster; stopped (immediately) when dropped.
struct Postgres {
    data: PathBuf,
    port: u16,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `BINDIR/tool args…`, as `postgres` when we are root (PostgreSQL refuses root).
fn pg(tool: &str, args: &[&str]) -> bool {
    let bin = format!("{BINDIR}/{tool}");
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &bin]);
        c
    } else {
        Command::new(&bin)
    };
    let out = cmd
        .args(args)
        .current_dir("/")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {bin} ({e}): scripts/install-tools installs postgresql-15")
        });
    if !out.status.success() {
        eprintln!(
            "{tool} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

impl Postgres {
    fn init(dir: &Path) -> Postgres {
        let data = dir.join("pg");
        std::fs::create_dir_all(&data).unwrap();
        if is_root() {
            // The temporary directory is private: let `postgres` through to its own.
            let mut p = Some(dir);
            while let Some(d) = p {
                if d == Path::new("/") {
                    break;
                }
                let _ = Command::new("chmod").arg("o+x").arg(d).status();
                p = d.parent();
            }
            assert!(Command::new("chown")
                .arg("postgres:")
                .arg(&data)
                .status()
                .unwrap()
                .success());
        }
        let d = data.to_str().unwrap();
        assert!(
            pg(
                "initdb",
                &["-D", d, "-U", "postgres", "-E", "UTF8", "--auth=trust"]
            ),
            "initdb failed"
        );
        let port = free_port();
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{d}'\nfsync = off\n"
        );
        let mut text = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        text.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), text).unwrap();
        let pg = Postgres { data, port };
        pg.start();
        pg
    }

    fn start(&self) {
        let log = self.data.join("postgres.log");
        assert!(
            pg(
                "pg_ctl",
                &[
                    "start",
                    "-D",
                    self.data.to_str().unwrap(),
                    "-l",
                    log.to_str().unwrap(),
                    "-w",
                    "-t",
                    "60"
                ]
            ),
            "pg_ctl start failed"
        );
    }

    fn stop(&self) {
        assert!(
            pg(
                "pg_ctl",
                &[
                    "stop",
                    "-D",
                    self.data.to_str().unwrap(),
                    "-m",
                    "fast",
                    "-w"
                ]
            ),
            "pg_ctl stop failed"
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        pg(
            "pg_ctl",
            &["stop", "-D", self.data.to_str().unwrap(), "-m", "immediate"],
        );
    }
}

/// The value of the metric line starting with `name` (0 when absent).
fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn postgres_down_answers_503_at_once_and_service_returns() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::init(dir.path());
    let port = free_port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nhttp:\n  addr: 127.0.0.1:{port}\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n\
             database:\n  url: {url}\n  maxconnections: 4\n  acquiretimeout: 1s\n  breaker:\n    failures: 3\n    openfor: 2s\n",
            root = dir.path().join("blobs").display(),
            url = pg.url()
        ),
    )
    .unwrap();
    let serve = Serve::start(&config);
    let public = format!("http://127.0.0.1:{port}");
    let metrics_url = format!("{public}/metrics");
    let client = reqwest::Client::new();
    let manifest = format!("{public}/v2/library/app/manifests/latest");
    // Up: the database answers (the repository does not exist).
    assert_eq!(client.get(&manifest).send().await.unwrap().status(), 404);

    pg.stop();
    // 8 clients × 50 requests while it is down: every one answered 503 UNAVAILABLE
    // with Retry-After. Each waiting out even the 1 s acquire timeout would take
    // 50 s per client; the breaker answers the requests it refuses at once.
    let clients = (0..8).map(|_| {
        let client = client.clone();
        let manifest = manifest.clone();
        tokio::spawn(async move {
            let mut answered = 0;
            for _ in 0..50 {
                let resp = client.get(&manifest).send().await.unwrap();
                assert_eq!(resp.status(), 503);
                let retry: u64 = resp.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=2).contains(&retry), "Retry-After: {retry}");
                let body: serde_json::Value = resp.json().await.unwrap();
                assert_eq!(body["errors"][0]["code"], "UNAVAILABLE", "{body}");
                answered += 1;
            }
            answered
        })
    });
    let mut answered = 0;
    for c in clients {
        answered += c.await.unwrap();
    }
    assert_eq!(answered, 400);
    let metrics = client
        .get(&metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric(&metrics, "wharf_database_breaker_state") >= 1.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "wharf_database_breaker_transitions_total{to=\"open\"}"
        ) >= 1.0
    );
    // Most of the 400 were refused by the breaker without trying the database (the
    // others tripped it or were its probes, each waiting the acquire timeout).
    let rejected = metric(&metrics, "wharf_database_breaker_rejected_total");
    assert!(rejected >= 300.0, "rejected {rejected}\n{metrics}");
    assert_eq!(
        client
            .get(format!("{public}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    serve.wait_for("database breaker open");

    // Back: after the open interval a probe reaches it and the breaker closes.
    pg.start();
    let mut status = 0;
    for _ in 0..120 {
        status = client
            .get(&manifest)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, 404, "service did not return after PostgreSQL did");
    serve.wait_for("database breaker closed");
    let metrics = client
        .get(&metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&metrics, "wharf_database_breaker_state"), 0.0);
    assert!(
        metric(
            &metrics,
            "wharf_database_breaker_transitions_total{to=\"closed\"}"
        ) >= 1.0
    );
    assert_eq!(
        client
            .get(format!("{public}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
