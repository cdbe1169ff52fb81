//! A request's view of a fill: the bytes from the fill's direct channel while it keeps
//! up, then from what the upload session has committed in the store, then from the
//! committed blob; a follower whose fill's owner died takes the fill over.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::local::Fills;
use super::{take_over_with, wait, LEASE};
use crate::blobs::{BlobError, ByteStream};
use crate::clock::now_ms;
use crate::proxy::upstream::UpstreamClient;
use crate::registry::Registry;
use crate::types::{ChunkRecord, Digest, RepoName};

/// A follower that sees no new byte for this long gives up.
const STALL: Duration = Duration::from_secs(120);

/// What a follower needs to take over a fill whose owner died.
pub(super) struct Takeover {
    pub(super) instance: String,
    pub(super) upstream: Arc<UpstreamClient>,
    pub(super) fills: Fills,
    pub(super) last_try: Instant,
}

/// A request's view of a fill: the direct channel while it has one, then the store.
pub(super) struct FillReader {
    pub(super) registry: Registry,
    pub(super) repo: RepoName,
    pub(super) digest: Digest,
    pub(super) upload_id: String,
    /// Next byte to send, and the end of what is sent.
    pub(super) pos: u64,
    pub(super) end: u64,
    pub(super) direct: Option<mpsc::Receiver<(u64, Bytes)>>,
    pub(super) current: Option<ByteStream>,
    pub(super) progress: Option<watch::Receiver<u64>>,
    pub(super) last_byte: Instant,
    pub(super) takeover: Option<Takeover>,
}

impl FillReader {
    pub(super) fn into_stream(self) -> ByteStream {
        futures_util::stream::unfold(self, |mut r| async move {
            r.next_piece().await.map(|item| (item, r))
        })
        .boxed()
    }

    async fn next_piece(&mut self) -> Option<std::result::Result<Bytes, BlobError>> {
        loop {
            if self.pos >= self.end {
                return None;
            }
            if let Some(current) = &mut self.current {
                match current.next().await {
                    Some(Ok(b)) => {
                        let keep = (self.end - self.pos).min(b.len() as u64) as usize;
                        let b = b.slice(..keep);
                        self.pos += b.len() as u64;
                        self.last_byte = Instant::now();
                        return Some(Ok(b));
                    }
                    Some(Err(e)) => return Some(Err(e)),
                    None => {
                        self.current = None;
                        continue;
                    }
                }
            }
            if let Some(rx) = &mut self.direct {
                match rx.recv().await {
                    Some((at, bytes)) => {
                        let piece_end = at + bytes.len() as u64;
                        if at > self.pos {
                            // A gap (cannot happen while connected): read the store.
                            self.direct = None;
                        } else if piece_end > self.pos {
                            let from = (self.pos - at) as usize;
                            let to = (piece_end.min(self.end) - at) as usize;
                            let piece = bytes.slice(from..to);
                            self.pos += piece.len() as u64;
                            self.last_byte = Instant::now();
                            return Some(Ok(piece));
                        }
                        continue;
                    }
                    None => {
                        self.direct = None;
                        continue;
                    }
                }
            }
            match self.read_store().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Some(Err(e)),
            }
            if self.last_byte.elapsed() > STALL {
                return Some(Err(BlobError::Unavailable(
                    format!("the fill of {} made no progress for {STALL:?}", self.digest).into(),
                )));
            }
            wait(self.progress.as_mut()).await;
        }
    }

    /// Opens the next readable bytes from the store; false if there are none yet.
    async fn read_store(&mut self) -> std::result::Result<bool, BlobError> {
        let meta = self.registry.metadata().clone();
        let backend = self.registry.blob_backend().clone();
        let session = meta
            .uploads
            .get_upload(&self.upload_id)
            .await
            .map_err(store)?;
        if let Some(session) = session {
            if session.offset > self.pos {
                let upto = session.offset.min(self.end);
                let Some((key, range)) =
                    chunk_range(&session.chunks, self.pos, upto, backend.writes_in_place())
                else {
                    return Err(BlobError::Unavailable(
                        "a fill's chunk list does not cover its offset".into(),
                    ));
                };
                self.current = Some(backend.get(&key, Some(range)).await?);
                return Ok(true);
            }
            self.maybe_take_over().await;
            return Ok(false);
        }
        if let Some(blob) = meta.blobs.any_blob(&self.digest).await.map_err(store)? {
            if meta
                .blobs
                .repo_blob(&self.repo, &self.digest)
                .await
                .map_err(store)?
                .is_none()
            {
                let _ = meta.blobs.link_blob(&self.repo, &self.digest, &[]).await;
            }
            self.current = Some(
                backend
                    .get(&blob.storage_key, Some(self.pos..self.end))
                    .await?,
            );
            return Ok(true);
        }
        match meta.mirror.fill(&self.digest).await.map_err(store)? {
            // Restarted in another session (an owner took over without one).
            Some(f) if f.upload_id != self.upload_id => {
                self.upload_id = f.upload_id;
                Ok(false)
            }
            _ => Err(BlobError::Unavailable(
                format!("the fill of {} from the upstream failed", self.digest).into(),
            )),
        }
    }

    /// Takes the fill over if its owner has stopped renewing its lease.
    async fn maybe_take_over(&mut self) {
        let Some(t) = &mut self.takeover else {
            return;
        };
        if t.last_try.elapsed() < LEASE / 2 {
            return;
        }
        t.last_try = Instant::now();
        let meta = self.registry.metadata();
        if let Ok(Some(f)) = meta.mirror.fill(&self.digest).await {
            if f.expires_at < now_ms() {
                take_over_with(&t.instance, &t.upstream, &t.fills, &self.registry, &f).await;
                if self.progress.is_none() {
                    self.progress = t.fills.subscribe(&self.digest);
                }
            }
        }
    }
}

fn store(e: crate::metadata::MetadataError) -> BlobError {
    BlobError::Unavailable(Box::new(e))
}

/// Where bytes `pos..upto` of an upload start: the chunk holding `pos`, and the range
/// to read from its object (absolute offsets when every chunk is written into one
/// object, relative to the chunk otherwise).
fn chunk_range(
    chunks: &[ChunkRecord],
    pos: u64,
    upto: u64,
    in_place: bool,
) -> Option<(String, Range<u64>)> {
    let c = chunks
        .iter()
        .find(|c| c.offset <= pos && pos < c.offset + c.len)?;
    let end = upto.min(c.offset + c.len);
    if in_place {
        Some((c.key.clone(), pos..end))
    } else {
        Some((c.key.clone(), pos - c.offset..end - c.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ranges() {
        let chunks = vec![
            ChunkRecord {
                key: "a".into(),
                offset: 0,
                len: 10,
            },
            ChunkRecord {
                key: "b".into(),
                offset: 10,
                len: 5,
            },
        ];
        assert_eq!(
            chunk_range(&chunks, 3, 15, false),
            Some(("a".into(), 3..10))
        );
        assert_eq!(
            chunk_range(&chunks, 12, 14, false),
            Some(("b".into(), 2..4))
        );
        assert_eq!(
            chunk_range(&chunks, 12, 14, true),
            Some(("b".into(), 12..14))
        );
        assert_eq!(chunk_range(&chunks, 15, 20, false), None);
    }
}
