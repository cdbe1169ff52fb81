//! A lean HTTP/1.1 client on hyper's connection-level API.
//!
//! Each [`Conn`] owns exactly one keep-alive TCP connection (reopened if the server closes it), so
//! "64 concurrent connections" means 64 sockets and no pool lock between them. Request bodies are
//! a [`ReqBody`] with an exact size hint, so hyper sends `Content-Length` (never chunked encoding),
//! including for the 1 GiB bodies that are generated frame by frame while being sent.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http::header::{HeaderMap, HOST, LOCATION};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::data::Pattern;

/// Size of the frames a generated body is cut into (fits in L2, so generating then sending
/// a frame does not go through memory twice).
const GEN_FRAME: usize = 256 * 1024;

/// Where the server is: `host:port` to connect to and to send as `Host`.
#[derive(Debug)]
pub struct Target {
    authority: String,
    connect_to: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("bad --url {url:?}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("--url must be a plain http:// URL (got {url:?})");
        }
        if !matches!(uri.path(), "" | "/") {
            bail!("--url must have no path (got {url:?})");
        }
        let auth = uri
            .authority()
            .ok_or_else(|| anyhow!("--url needs a host (got {url:?})"))?;
        let connect_to = match auth.port_u16() {
            Some(_) => auth.as_str().to_string(),
            None => format!("{}:80", auth.host()),
        };
        Ok(Target {
            authority: auth.as_str().to_string(),
            connect_to,
        })
    }

    /// A request builder for `path_and_query` (origin form) with `Host` set.
    pub fn request(&self, method: Method, path_and_query: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(HOST, &self.authority)
    }
}

/// A request body: nothing, one buffer, or a generated stream of known length.
pub enum ReqBody {
    Empty,
    Full(Option<Bytes>),
    Generated {
        pattern: Pattern,
        pos: u64,
        end: u64,
    },
}

impl ReqBody {
    pub fn full(b: Bytes) -> Self {
        ReqBody::Full(Some(b))
    }

    /// Bytes `start..start+len` of `pattern`.
    pub fn generated(pattern: Pattern, start: u64, len: u64) -> Self {
        ReqBody::Generated {
            pattern,
            pos: start,
            end: start + len,
        }
    }

    fn remaining(&self) -> u64 {
        match self {
            ReqBody::Empty => 0,
            ReqBody::Full(b) => b.as_ref().map_or(0, |b| b.len() as u64),
            ReqBody::Generated { pos, end, .. } => end - pos,
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.get_mut() {
            ReqBody::Empty => None,
            ReqBody::Full(b) => b.take().map(Frame::data),
            ReqBody::Generated { pattern, pos, end } => {
                if *pos >= *end {
                    None
                } else {
                    let n = (*end - *pos).min(GEN_FRAME as u64) as usize;
                    let chunk = pattern.bytes(*pos, n);
                    *pos += n as u64;
                    Some(Frame::data(chunk))
                }
            }
        };
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining())
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    target: Arc<Target>,
    tx: Option<SendRequest<ReqBody>>,
    /// How many times the connection had to be reopened after the server closed it.
    pub reopened: u64,
}

impl Conn {
    pub async fn open(target: Arc<Target>) -> Result<Self> {
        let tx = handshake(&target).await?;
        Ok(Conn {
            target,
            tx: Some(tx),
            reopened: 0,
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub async fn send(&mut self, req: Request<ReqBody>) -> Result<Response<Incoming>> {
        let usable = match self.tx.as_mut() {
            Some(tx) => tx.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            self.tx = None;
            self.tx = Some(handshake(&self.target).await?);
            self.reopened += 1;
        }
        let Some(tx) = self.tx.as_mut() else {
            bail!("no connection");
        };
        match tx.send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(e) => {
                self.tx = None;
                Err(anyhow!(e).context("HTTP request failed"))
            }
        }
    }
}

async fn handshake(target: &Target) -> Result<SendRequest<ReqBody>> {
    let tcp = TcpStream::connect(&target.connect_to)
        .await
        .with_context(|| format!("connect to {}", target.connect_to))?;
    tcp.set_nodelay(true)?;
    let (tx, conn) = http1::Builder::new()
        .handshake(TokioIo::new(tcp))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        // Ends when the server closes or the SendRequest is dropped; errors surface on send.
        let _ = conn.await;
    });
    Ok(tx)
}

/// A response read to its end: status, headers and (small) body.
pub struct Small {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Small {
    pub async fn read(resp: Response<Incoming>) -> Result<Self> {
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .context("reading response body")?
            .to_bytes();
        Ok(Small {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Fails unless the status is `want`, quoting the start of the body.
    pub fn expect(self, want: StatusCode, what: &str) -> Result<Self> {
        if self.status != want {
            bail!(
                "{what}: expected {want}, got {}{}",
                self.status,
                snippet(&self.body)
            );
        }
        Ok(self)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Location` header as an origin-form path (an absolute URL is cut to its path+query).
    pub fn location(&self) -> Result<String> {
        let loc = self
            .headers
            .get(LOCATION)
            .ok_or_else(|| anyhow!("response has no Location header"))?
            .to_str()
            .context("Location header is not ASCII")?;
        location_path(loc)
    }
}

/// `Location` → path and query to request on the same connection.
pub fn location_path(loc: &str) -> Result<String> {
    if loc.starts_with('/') {
        return Ok(loc.to_string());
    }
    let uri: Uri = loc
        .parse()
        .with_context(|| format!("bad Location {loc:?}"))?;
    uri.path_and_query()
        .map(|pq| pq.as_str().to_string())
        .ok_or_else(|| anyhow!("Location {loc:?} has no path"))
}

/// Appends `digest=<digest>` to an upload location that may already carry a query.
pub fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// `: <first 200 chars of body>` for error messages, or nothing for an empty body.
pub fn snippet(body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    format!(": {}", text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            location_path("http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=y").unwrap(),
            "/v2/a/blobs/uploads/x?_state=y"
        );
        assert_eq!(
            location_path("/v2/a/blobs/uploads/x").unwrap(),
            "/v2/a/blobs/uploads/x"
        );
        assert_eq!(with_digest("/u/x", "sha256:ab"), "/u/x?digest=sha256:ab");
        assert_eq!(
            with_digest("/u/x?_state=y", "sha256:ab"),
            "/u/x?_state=y&digest=sha256:ab"
        );
    }

    #[test]
    fn targets() {
        assert!(Target::parse("https://x:1").is_err());
        assert!(Target::parse("http://x:1/v2").is_err());
        let t = Target::parse("http://127.0.0.1:5000").unwrap();
        assert_eq!(t.connect_to, "127.0.0.1:5000");
        let t = Target::parse("http://localhost/").unwrap();
        assert_eq!(t.connect_to, "localhost:80");
    }

    #[test]
    fn generated_body_has_exact_size() {
        let b = ReqBody::generated(Pattern::new(1, 1), 10, 1_000_000);
        assert_eq!(b.size_hint().exact(), Some(1_000_000));
        assert_eq!(ReqBody::Empty.size_hint().exact(), Some(0));
    }
}
