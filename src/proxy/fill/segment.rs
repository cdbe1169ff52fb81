//! One segment of the upstream's body: what a fill appends to its upload session as
//! one chunk.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};

/// A segment (one chunk of the session) ends after this many bytes…
const SEGMENT_BYTES: u64 = 64 << 20;
/// …or after this long.
const SEGMENT_TIME: Duration = Duration::from_secs(1);

/// One segment of the upstream's body: the bytes from `skip_to` on, until the segment
/// is long enough.
pub(super) struct Segment<'a> {
    pub(super) stream: &'a mut BoxStream<'static, std::result::Result<Bytes, String>>,
    /// Offset in the blob of the stream's next byte.
    pub(super) at: &'a mut u64,
    /// Bytes before this are in the session already.
    pub(super) skip_to: u64,
    /// The blob's size: nothing beyond it is accepted.
    pub(super) limit: u64,
    pub(super) len: u64,
    pub(super) min_len: u64,
    pub(super) started: Instant,
    pub(super) error: Option<String>,
    pub(super) ended: bool,
    pub(super) done: bool,
}

impl Stream for Segment<'_> {
    type Item = std::result::Result<Bytes, String>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let long_enough = this.len >= SEGMENT_BYTES
                || (this.len >= this.min_len && this.started.elapsed() >= SEGMENT_TIME);
            if long_enough {
                this.done = true;
                return Poll::Ready(None);
            }
            let piece = match this.stream.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.ended = true;
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.error = Some(e.clone());
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(b))) => b,
            };
            let start = *this.at;
            let end = start + piece.len() as u64;
            *this.at = end;
            if end > this.limit {
                let e = "the upstream sent more bytes than the blob's length".to_string();
                this.error = Some(e.clone());
                this.done = true;
                return Poll::Ready(Some(Err(e)));
            }
            let position = this.skip_to + this.len;
            if end <= position {
                continue;
            }
            let piece = if start < position {
                piece.slice((position - start) as usize..)
            } else {
                piece
            };
            this.len += piece.len() as u64;
            return Poll::Ready(Some(Ok(piece)));
        }
    }
}
