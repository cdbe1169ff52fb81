//! Holding up under slow and hostile clients: blob transfers in progress are counted
//! against `http.limits.transfers` (beyond it `429 TOOMANYREQUESTS`, and `/readyz` says
//! `saturated`), a request body that brings no byte for `http.timeouts.body` ends its
//! request with `408`, and every connection is counted and gets the socket options that
//! end a response nobody reads (`http.timeouts.send`).
//!
//! Nothing here holds a thread: a stalled body or an unread response costs a
//! connection and the buffer in flight, and the limits bound how many of those there are.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::http::header::RETRY_AFTER;
use actix_web::http::StatusCode;
use bytes::Bytes;
use futures_util::Stream;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec};

use crate::http::error::{ApiError, ErrorCode};

struct Metrics {
    transfers: IntGaugeVec,
    refused: IntCounterVec,
    stalled: IntCounterVec,
    connections: IntGauge,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        transfers: crate::telemetry::lazy_gauge_vec(
            "http_transfers_in_flight",
            "Blob uploads and downloads in progress (streamed bodies included), by direction",
            &["direction"],
        ),
        refused: crate::telemetry::lazy_counter_vec(
            "http_transfers_refused_total",
            "Requests refused with 429: blob transfers beyond http.limits.transfers \
             (upload, download), manifest bodies beyond http.limits.manifestbytes (manifest)",
            &["direction"],
        ),
        stalled: crate::telemetry::lazy_counter_vec(
            "http_body_stalled_total",
            "Requests ended because their body brought no byte for http.timeouts.body",
            &["direction"],
        ),
        connections: {
            let g = IntGauge::new("http_connections", "Open client connections")
                .expect("static metric");
            if let Err(e) = crate::telemetry::metrics()
                .registry
                .register(Box::new(g.clone()))
            {
                tracing::warn!(error = %e, "metric http_connections not registered");
            }
            g
        },
    })
}

/// Which way a transfer's bytes go (the metrics' only label).
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    Upload,
    Download,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

/// The transfer limit, the budget for buffered manifest bodies and the request body
/// timeout, shared by every worker.
#[derive(Debug)]
pub struct Transfers {
    in_flight: AtomicUsize,
    limit: usize,
    body_timeout: Duration,
    manifest_budget: Arc<tokio::sync::Semaphore>,
}

/// Bytes of the manifest budget one body holds until it is stored.
pub type BufferPermit = tokio::sync::OwnedSemaphorePermit;

impl Transfers {
    pub fn new(limit: usize, body_timeout: Duration, manifest_bytes: usize) -> Arc<Self> {
        let budget = manifest_bytes.min(tokio::sync::Semaphore::MAX_PERMITS);
        Arc::new(Transfers {
            in_flight: AtomicUsize::new(0),
            limit,
            body_timeout,
            manifest_budget: Arc::new(tokio::sync::Semaphore::new(budget)),
        })
    }

    /// Reserves `bytes` of the budget for a manifest body, or refuses with
    /// `429 TOOMANYREQUESTS` when other pushes hold it.
    pub fn buffer(&self, bytes: usize) -> Result<BufferPermit, ApiError> {
        let n = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.manifest_budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| {
                metrics().refused.with_label_values(&["manifest"]).inc();
                tracing::warn!(bytes, "manifest refused: http.limits.manifestbytes in use");
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::TooManyRequests,
                    "the registry holds as many manifest bodies as it may; retry later",
                )
                .with_header(RETRY_AFTER, "1")
            })
    }

    /// Transfers in progress.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// True when no more transfer would be taken.
    pub fn saturated(&self) -> bool {
        self.in_flight() >= self.limit
    }

    /// Counts one more transfer, or refuses it with `429 TOOMANYREQUESTS`.
    pub fn begin(self: &Arc<Self>, direction: Direction) -> Result<TransferGuard, ApiError> {
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            });
        if taken.is_err() {
            metrics()
                .refused
                .with_label_values(&[direction.label()])
                .inc();
            tracing::warn!(
                limit = self.limit,
                direction = direction.label(),
                "transfer refused: http.limits.transfers in progress"
            );
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyRequests,
                format!(
                    "the registry has {} blob transfers in progress; retry later",
                    self.limit
                ),
            )
            .with_header(RETRY_AFTER, "5"));
        }
        metrics()
            .transfers
            .with_label_values(&[direction.label()])
            .inc();
        Ok(TransferGuard {
            transfers: self.clone(),
            direction,
        })
    }

    /// Wraps a request body: no byte for `http.timeouts.body` ends it with an error.
    pub fn body<S>(&self, body: S, direction: Direction) -> (IdleBody<S>, Stalled) {
        let stalled = Stalled(Arc::new(AtomicBool::new(false)));
        let idle = IdleBody {
            inner: body,
            timeout: self.body_timeout,
            sleep: Box::pin(tokio::time::sleep(self.body_timeout)),
            stalled: stalled.clone(),
            direction,
            ended: false,
        };
        (idle, stalled)
    }
}

/// One transfer in progress; dropping it (when the body is done or the client gone)
/// counts it out.
pub struct TransferGuard {
    transfers: Arc<Transfers>,
    direction: Direction,
}

impl Drop for TransferGuard {
    fn drop(&mut self) {
        self.transfers.in_flight.fetch_sub(1, Ordering::AcqRel);
        metrics()
            .transfers
            .with_label_values(&[self.direction.label()])
            .dec();
    }
}

/// Whether an [`IdleBody`] ended for want of bytes: the handler then answers `408`
/// whatever error the core made of it.
#[derive(Debug, Clone)]
pub struct Stalled(Arc<AtomicBool>);

impl Stalled {
    pub fn happened(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `err`, or the `408` that explains it when the body stalled.
    pub fn explain(&self, err: ApiError, timeout: Duration) -> ApiError {
        if !self.happened() {
            return err;
        }
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::BlobUploadInvalid,
            format!(
                "the request body brought no bytes for {} s (http.timeouts.body); an upload \
                 keeps the offset of its last completed chunk",
                timeout.as_secs()
            ),
        )
    }
}

/// The request body stopped: no byte for the configured time.
#[derive(Debug, thiserror::Error)]
pub enum BodyError<E> {
    #[error("no request body bytes for {} s", .0.as_secs())]
    Stalled(Duration),
    #[error("{0}")]
    Read(E),
}

/// A request body whose every byte must come within the body timeout of the last.
pub struct IdleBody<S> {
    inner: S,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    stalled: Stalled,
    direction: Direction,
    ended: bool,
}

impl<S> IdleBody<S> {
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S, E> Stream for IdleBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, BodyError<E>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(data))) => {
                let deadline = tokio::time::Instant::now() + this.timeout;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(data)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Read(e)))),
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.ended = true;
                    this.stalled.0.store(true, Ordering::Relaxed);
                    metrics()
                        .stalled
                        .with_label_values(&[this.direction.label()])
                        .inc();
                    tracing::info!(
                        timeout_s = this.timeout.as_secs(),
                        "request body stalled: request ended"
                    );
                    Poll::Ready(Some(Err(BodyError::Stalled(this.timeout))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// A response body that counts as a transfer until it is done or dropped.
pub struct Guarded<S> {
    inner: S,
    _guard: TransferGuard,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, guard: TransferGuard) -> Self {
        Guarded {
            inner,
            _guard: guard,
        }
    }
}

impl<S: Stream + Unpin> Stream for Guarded<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().inner).poll_next(cx)
    }
}

/// Counts an open connection while it lives (kept in the connection's extensions).
pub struct ConnectionGuard(());

impl ConnectionGuard {
    fn new() -> Self {
        metrics().connections.inc();
        ConnectionGuard(())
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        metrics().connections.dec();
    }
}

/// `HttpServer::on_connect`: counts the connection, and sets `TCP_USER_TIMEOUT` so
/// that response bytes left unacknowledged for `send` — a client that stopped reading
/// included, once its window is closed — end the connection in the kernel.
/// With `per_client`, also counts it against `http.limits.connectionsperclient`
/// (`super::per_client`).
pub fn on_connect(
    send: Duration,
    per_client: Option<std::sync::Arc<super::per_client::PerClient>>,
) -> impl Fn(&dyn std::any::Any, &mut actix_web::dev::Extensions) + Send + Sync + Clone + 'static {
    move |conn, ext| {
        ext.insert(ConnectionGuard::new());
        if let Some(limiter) = &per_client {
            if let Some(slot) = super::per_client::peer(conn).and_then(|ip| limiter.admit(ip)) {
                ext.insert(slot);
            }
        }
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            set_user_timeout(tcp, send);
        }
    }
}

#[cfg(target_os = "linux")]
fn set_user_timeout(tcp: &actix_web::rt::net::TcpStream, timeout: Duration) {
    use std::os::unix::io::AsRawFd;
    let ms = libc::c_uint::try_from(timeout.as_millis()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: setsockopt on an open socket with a pointer to a local of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not set TCP_USER_TIMEOUT"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn set_user_timeout(_tcp: &actix_web::rt::net::TcpStream, _timeout: Duration) {}
