//! Running `wharf serve` with a configuration, reading what it prints, and a test PKI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

const WAIT: Duration = Duration::from_secs(30);

/// `wharf` without the test's own `REGISTRY_*`, `RUST_LOG` or `WHARF_CONFIG`.
pub fn wharf() -> Command {
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

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A configuration under `dir`: `http` (the section's body, indented two spaces) and
/// any other top-level YAML.
pub fn config(dir: &Path, http: &str, extra: &str) -> PathBuf {
    let path = dir.join("config.yml");
    let root = dir.join("data");
    std::fs::write(
        &path,
        format!(
            "version: 0.1\nhttp:\n{http}\nstorage:\n  filesystem:\n    rootdirectory: {root}\ndatabase:\n  url: sqlite://{root}/wharf.db\n{extra}",
            root = root.display()
        ),
    )
    .unwrap();
    path
}

/// `wharf check-config` on `config`: whether it passed, and what it printed.
pub fn check_config(config: &Path) -> (bool, String) {
    let out = wharf()
        .arg("check-config")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A `wharf serve`, its stderr collected line by line; killed when dropped.
pub struct Serve {
    child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Serve {
    /// Starts `wharf serve --config config` and waits for "ready".
    pub fn start(config: &Path) -> Serve {
        Serve::start_env(config, &[])
    }

    /// [`Serve::start`] with environment variables (`OTEL_*`) set.
    pub fn start_env(config: &Path, env: &[(&str, &str)]) -> Serve {
        let mut command = wharf();
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
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
        let serve = Serve { child, lines };
        serve.wait_for("ready: serving");
        serve
    }

    /// Waits for a line containing `needle`; panics with everything printed so far.
    pub fn wait_for(&self, needle: &str) -> String {
        self.wait_for_within(needle, WAIT)
    }

    /// [`Serve::wait_for`], waiting at most `wait`.
    pub fn wait_for_within(&self, needle: &str, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        let (lock, cond) = &*self.lines;
        let mut lines = lock.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no line with {needle:?} within {wait:?}; got:\n{}",
                lines.join("\n")
            );
            lines = cond.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (libc's number) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill({signal})");
    }

    /// Waits for the process to exit (at most a minute past `WAIT`).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT * 3;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "wharf did not exit; printed:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A certificate authority made by rcgen.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses) with common name `cn`,
    /// signed by this CA: (certificate PEM, key PEM).
    pub fn issue(&self, names: &[&str], cn: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes this CA and a server certificate for localhost and 127.0.0.1 into
    /// `dir` as `ca.pem`, `server.pem` and `server.key`.
    pub fn write_server(&self, dir: &Path, cn: &str) {
        let (cert, key) = self.issue(&["localhost", "127.0.0.1"], cn);
        std::fs::write(dir.join("ca.pem"), self.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), cert).unwrap();
        std::fs::write(dir.join("server.key"), key).unwrap();
    }
}

/// The `http` section body for HTTPS on `port` with `dir`'s server files, plus `more`
/// (lines indented four spaces, inside `tls`).
pub fn tls_http(dir: &Path, port: u16, more: &str) -> String {
    format!(
        "  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {}\n    key: {}\n{more}",
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    )
}

/// A reqwest client trusting `ca_pem` only.
pub fn client(ca_pem: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
}
