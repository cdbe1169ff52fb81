//! A webhook receiver for the notification tests: a real HTTP server on a free port
//! (actix-web in a thread of its own) that records every request it gets — headers,
//! body, the status it answered — and answers as told: 200, an error status, an error
//! to a share of the requests, or after a delay (a hang). It can be stopped and
//! started again on the same port (a receiver that is down: connection refused).

#![allow(dead_code)] // Each test binary uses part of it.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Ok,
    /// Always this status.
    Fail(u16),
    /// 500 to about this share of requests (0.0–1.0), 200 to the rest.
    Flaky(f64),
    /// Waits this long, then 200.
    Hang(Duration),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub content_type: String,
    pub signature: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub status: u16,
    /// When it arrived, Unix seconds.
    pub arrived: u64,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Whether `X-Wharf-Signature` verifies with `secret` as a receiver checks it (the
    /// README's recipe, written here without Wharf's code): `t=<unix
    /// seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`, with `t` within 5
    /// minutes of the arrival.
    pub fn signature_verifies(&self, secret: &[u8]) -> bool {
        let Some(header) = &self.signature else {
            return false;
        };
        let parts: std::collections::HashMap<&str, &str> = header
            .split(',')
            .filter_map(|p| p.split_once('='))
            .collect();
        let (Some(t), Some(v1)) = (parts.get("t"), parts.get("v1")) else {
            return false;
        };
        let Ok(t_secs) = t.parse::<u64>() else {
            return false;
        };
        let Ok(mac) = hex::decode(v1) else {
            return false;
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(&self.body);
        ring::hmac::verify(&key, &signed, &mac).is_ok() && self.arrived.abs_diff(t_secs) <= 300
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Shared {
    mode: Mutex<Mode>,
    log: Mutex<Vec<Received>>,
    counter: Mutex<u64>,
}

pub struct Receiver {
    pub port: u16,
    pub url: String,
    shared: Arc<Shared>,
    server: Mutex<Option<(ServerHandle, std::thread::JoinHandle<()>)>>,
}

async fn hook(req: HttpRequest, body: web::Bytes, shared: web::Data<Arc<Shared>>) -> HttpResponse {
    let mode = *shared.mode.lock().unwrap();
    let status = match mode {
        Mode::Ok => 200,
        Mode::Fail(s) => s,
        Mode::Flaky(share) => {
            // A fixed pseudo-random sequence: reproducible shares.
            let mut n = shared.counter.lock().unwrap();
            *n = n
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if ((*n >> 33) as f64 / (1u64 << 31) as f64) < share {
                500
            } else {
                200
            }
        }
        Mode::Hang(d) => {
            tokio::time::sleep(d).await;
            200
        }
    };
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    shared.log.lock().unwrap().push(Received {
        content_type: find("content-type").unwrap_or_default(),
        signature: find("x-wharf-signature"),
        headers: headers.clone(),
        body: body.to_vec(),
        status,
        arrived: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    });
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

impl Receiver {
    pub fn start(mode: Mode) -> Receiver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = Receiver {
            port,
            url: format!("http://127.0.0.1:{port}/hook"),
            shared: Arc::new(Shared {
                mode: Mutex::new(mode),
                log: Mutex::new(Vec::new()),
                counter: Mutex::new(7),
            }),
            server: Mutex::new(None),
        };
        r.up();
        r
    }

    /// Starts answering (again) on the same port.
    pub fn up(&self) {
        let mut slot = self.server.lock().unwrap();
        if slot.is_some() {
            return;
        }
        let listener = (0..100)
            .find_map(|_| {
                TcpListener::bind(("127.0.0.1", self.port))
                    .ok()
                    .or_else(|| {
                        std::thread::sleep(Duration::from_millis(50));
                        None
                    })
            })
            .expect("the receiver's port is free again");
        let shared = self.shared.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(web::Data::new(shared.clone()))
                        .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                        .default_service(web::to(hook))
                })
                .workers(2)
                .shutdown_timeout(0)
                .listen(listener)
                .unwrap()
                .run();
                tx.send(server.handle()).unwrap();
                let _ = server.await;
            })
        });
        let handle = rx.recv().unwrap();
        *slot = Some((handle, thread));
    }

    /// Stops answering: connections are refused until [`Receiver::up`].
    pub fn down(&self) {
        let taken = self.server.lock().unwrap().take();
        if let Some((handle, thread)) = taken {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            std::thread::spawn(move || rt.block_on(handle.stop(false)))
                .join()
                .unwrap();
            let _ = thread.join();
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    pub fn requests(&self) -> Vec<Received> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The events of the requests answered with a 2xx, in arrival order (distribution
    /// envelopes; CloudEvents are returned as they came).
    pub fn delivered(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for r in self.requests().iter().filter(|r| r.status < 300) {
            let v = r.json();
            match v.get("events").and_then(|e| e.as_array()) {
                Some(list) => out.extend(list.iter().cloned()),
                None => match v {
                    serde_json::Value::Array(list) => out.extend(list),
                    other => out.push(other),
                },
            }
        }
        out
    }

    /// Waits until `done(delivered events)` holds, up to `limit`.
    pub async fn wait_for(
        &self,
        limit: Duration,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let start = std::time::Instant::now();
        loop {
            let events = self.delivered();
            if done(&events) {
                return events;
            }
            assert!(
                start.elapsed() < limit,
                "receiver: condition not met within {limit:?}; {} events delivered so far",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}
