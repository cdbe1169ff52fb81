//! Filesystem blob backend (`storage.filesystem`), the embedded default.
//!
//! An upload writes straight into the file that becomes its blob (`blobs/<xx>/<id>`):
//! every PATCH continues the same file at its offset, so assembling is a truncate and an
//! fsync — never a copy or a rename. Each write and read runs on a blocking thread with a
//! large buffer, one at a time, so a thread is held only while the disk works, never while
//! a client is slow to send or to read; data is `fdatasync`ed (and a new file's directory `fsync`ed) before a chunk
//! counts as stored. An exclusive, non-blocking file lock (`File::try_lock`: `flock` on
//! Linux), taken before anything is changed and held until the caller has recorded the
//! chunk, keeps two requests from writing one upload.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::FileExt;
#[cfg(target_os = "linux")]
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::{BlobBackend, BlobError, ByteStream, ChunkWriter, FinishedChunk, Result};
use crate::types::ChunkRecord;

/// Read size when streaming a blob out: also what a client that stops reading holds.
const READ_BUFFER: usize = 256 * 1024;
/// Incoming bytes are gathered to this size before each write.
const WRITE_BUFFER: usize = 1024 * 1024;

pub struct FsBackend {
    root: PathBuf,
}

impl FsBackend {
    /// Opens (creating) the root and its 256 blob directories.
    pub fn open(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        for i in 0..=255u8 {
            std::fs::create_dir_all(root.join("blobs").join(format!("{i:02x}")))?;
        }
        Ok(FsBackend { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        // Keys are ours, but refuse anything that could leave the root.
        if key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(BlobError::Io(std::io::Error::new(
                ErrorKind::InvalidInput,
                format!("invalid storage key {key:?}"),
            )));
        }
        Ok(self.root.join(key))
    }
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn lock_exclusive(file: &File) -> Result<()> {
    // flock(LOCK_EX | LOCK_NB) on Linux: per open file, released when the file is closed.
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(BlobError::Busy),
        Err(TryLockError::Error(e)) => Err(e.into()),
    }
}

fn not_found(key: &str) -> impl Fn(std::io::Error) -> BlobError + '_ {
    move |e| {
        if e.kind() == ErrorKind::NotFound {
            BlobError::NotFound(key.to_string())
        } else {
            BlobError::Io(e)
        }
    }
}

/// The open upload file (holding its lock) and where writing stands. It moves to a
/// blocking thread for each write and comes back, so no thread waits on the client.
struct FileState {
    file: File,
    path: PathBuf,
    created: bool,
    position: u64,
    writeback_from: u64,
    truncated: bool,
}

impl FileState {
    /// Drops what an interrupted request wrote past the recorded offset; only once, before
    /// the first change, after the caller has confirmed the offset under the lock.
    fn truncate_once(&mut self) -> std::io::Result<()> {
        if !self.truncated {
            if self.file.metadata()?.len() > self.position {
                self.file.set_len(self.position)?;
            }
            self.truncated = true;
        }
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.truncate_once()?;
        self.file.write_all_at(data, self.position)?;
        self.position += data.len() as u64;
        write_behind(&self.file, &mut self.writeback_from, self.position);
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.truncate_once()?;
        self.file.sync_data()?;
        if self.created {
            sync_dir(&self.path)?;
        }
        Ok(())
    }
}

type WriteTask = tokio::task::JoinHandle<(FileState, std::io::Result<()>)>;

fn join_error(e: tokio::task::JoinError) -> BlobError {
    BlobError::Io(std::io::Error::other(e.to_string()))
}

/// Writes an upload's chunk: incoming bytes are gathered into large buffers, each written
/// on a blocking thread while the next one is received (one write in flight at most).
/// Between writes the file waits here, not on a thread: a client that stops sending
/// holds a connection and a buffer, never a thread.
struct FsChunkWriter {
    key: String,
    offset: u64,
    written: u64,
    buffer: BytesMut,
    state: Option<FileState>,
    pending: Option<WriteTask>,
}

impl FsChunkWriter {
    /// Waits for the write in flight, if any, and takes the file back.
    async fn reclaim(&mut self) -> Result<FileState> {
        if let Some(task) = self.pending.take() {
            let (state, result) = task.await.map_err(join_error)?;
            // On an error the file is dropped here, releasing the lock.
            result?;
            self.state = Some(state);
        }
        self.state
            .take()
            .ok_or_else(|| BlobError::Io(std::io::Error::other("blob writer stopped")))
    }

    async fn flush(&mut self, data: Bytes) -> Result<()> {
        let mut state = self.reclaim().await?;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let result = state.write(&data);
            (state, result)
        }));
        Ok(())
    }
}

#[async_trait]
impl ChunkWriter for FsChunkWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.written += data.len() as u64;
        if self.buffer.is_empty() && data.len() >= WRITE_BUFFER {
            return self.flush(data).await;
        }
        self.buffer.extend_from_slice(&data);
        if self.buffer.len() >= WRITE_BUFFER {
            let full = self.buffer.split().freeze();
            self.flush(full).await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<FinishedChunk> {
        if !self.buffer.is_empty() {
            let rest = self.buffer.split().freeze();
            self.flush(rest).await?;
        }
        let mut state = self.reclaim().await?;
        let file = tokio::task::spawn_blocking(move || state.sync().map(|()| state.file))
            .await
            .map_err(join_error)??;
        Ok(FinishedChunk {
            chunk: (self.written > 0).then(|| ChunkRecord {
                key: self.key.clone(),
                offset: self.offset,
                len: self.written,
            }),
            hold: Some(Box::new(file) as Box<dyn Send + Sync>),
        })
    }

    async fn abort(mut self: Box<Self>) {
        // Nothing is synced; the bytes past the session's offset are truncated by the
        // next writer or at assembly. The write in flight ends first, then dropping the
        // file releases the lock.
        let _ = self.reclaim().await;
    }
}

/// Write-behind window: every this many bytes, writeback of the window is started, and
/// the window before it is waited for. The final fdatasync then finds little left to do,
/// so disk writes overlap with receiving instead of following it.
const WRITEBACK_WINDOW: u64 = 8 * 1024 * 1024;

/// Starts (and bounds) writeback of what has been written so far (Linux `sync_file_range`;
/// elsewhere a no-op, leaving all the work to the final sync).
fn write_behind(file: &File, started_at: &mut u64, position: u64) {
    while position - *started_at >= WRITEBACK_WINDOW {
        let start = *started_at;
        #[cfg(target_os = "linux")]
        // SAFETY: plain syscalls on an owned, open descriptor; failures only lose the hint.
        unsafe {
            let fd = file.as_raw_fd();
            libc::sync_file_range(
                fd,
                start as i64,
                WRITEBACK_WINDOW as i64,
                libc::SYNC_FILE_RANGE_WRITE,
            );
            if start >= WRITEBACK_WINDOW {
                libc::sync_file_range(
                    fd,
                    (start - WRITEBACK_WINDOW) as i64,
                    WRITEBACK_WINDOW as i64,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                );
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = file;
        *started_at = start + WRITEBACK_WINDOW;
    }
}

#[async_trait]
impl BlobBackend for FsBackend {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn new_storage_key(&self, upload_id: &str) -> String {
        let prefix: String = upload_id
            .chars()
            .filter(|c| c.is_ascii_hexdigit())
            .take(2)
            .collect();
        format!("blobs/{prefix:0<2}/{upload_id}")
    }

    fn min_chunk_len(&self) -> u64 {
        1
    }

    fn writes_in_place(&self) -> bool {
        true
    }

    async fn chunk_writer(&self, storage_key: &str, offset: u64) -> Result<Box<dyn ChunkWriter>> {
        let path = self.path(storage_key)?;
        let key = storage_key.to_string();
        let (file, created) = tokio::task::spawn_blocking({
            let path = path.clone();
            move || -> Result<(File, bool)> {
                let created = !path.exists();
                let file = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(false)
                    .open(&path)?;
                lock_exclusive(&file)?;
                let len = file.metadata()?.len();
                if len < offset {
                    return Err(BlobError::Io(std::io::Error::other(format!(
                        "upload file is {len} bytes, shorter than the recorded offset {offset}"
                    ))));
                }
                Ok((file, created))
            }
        })
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e.to_string())))??;
        Ok(Box::new(FsChunkWriter {
            key,
            offset,
            written: 0,
            buffer: BytesMut::with_capacity(WRITE_BUFFER),
            state: Some(FileState {
                file,
                path,
                created,
                position: offset,
                writeback_from: offset,
                truncated: false,
            }),
            pending: None,
        }))
    }

    async fn assemble(
        &self,
        storage_key: &str,
        chunks: &[ChunkRecord],
        total: u64,
    ) -> Result<String> {
        if let Some(other) = chunks.iter().find(|c| c.key != storage_key) {
            return Err(BlobError::Io(std::io::Error::other(format!(
                "filesystem upload has a chunk outside its file: {:?}",
                other.key
            ))));
        }
        let path = self.path(storage_key)?;
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let created = !path.exists();
            let file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(&path)?;
            let len = file.metadata()?.len();
            if len < total {
                return Err(std::io::Error::other(format!(
                    "upload file is {len} bytes, expected {total}"
                )));
            }
            if len > total {
                file.set_len(total)?;
                file.sync_data()?;
            }
            if created {
                file.sync_data()?;
                sync_dir(&path)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e.to_string())))??;
        Ok(storage_key.to_string())
    }

    /// Each piece is read on a blocking thread when the response asks for it: a client
    /// that stops reading holds at most one piece, never a thread.
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream> {
        let path = self.path(key)?;
        let (file, start, end) = tokio::task::spawn_blocking(move || {
            let mut file = File::open(path)?;
            let (start, end) = match range {
                Some(r) => (r.start, r.end),
                None => (0, file.metadata()?.len()),
            };
            file.seek(SeekFrom::Start(start))?;
            Ok::<_, std::io::Error>((file, start, end))
        })
        .await
        .map_err(join_error)?
        .map_err(not_found(key))?;
        let pieces = futures_util::stream::try_unfold(
            (Some(file), end.saturating_sub(start)),
            |(file, remaining)| async move {
                let Some(mut file) = file.filter(|_| remaining > 0) else {
                    return Ok(None);
                };
                let want = remaining.min(READ_BUFFER as u64);
                let (file, read) = tokio::task::spawn_blocking(move || {
                    // read_to_end through Take fills spare capacity without zeroing it.
                    let mut buf = Vec::with_capacity(want as usize);
                    let read = (&mut file).take(want).read_to_end(&mut buf).map(|_| buf);
                    (file, read)
                })
                .await
                .map_err(join_error)?;
                let buf = read?;
                if buf.is_empty() {
                    return Err(BlobError::Io(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "blob file is shorter than recorded",
                    )));
                }
                let remaining = remaining - buf.len() as u64;
                Ok(Some((Bytes::from(buf), (Some(file), remaining))))
            },
        );
        Ok(Box::pin(pieces))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Walks the directories under `prefix` on a blocking thread, sending what it finds.
    async fn list(&self, prefix: &str) -> Result<super::ObjectStream> {
        let start = self.path(prefix.trim_end_matches('/'))?;
        let root = self.root.clone();
        let (tx, rx) = mpsc::channel::<Result<super::ListedObject>>(256);
        tokio::task::spawn_blocking(move || {
            let mut dirs = vec![start];
            while let Some(dir) = dirs.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e.into()));
                        return;
                    }
                };
                for entry in entries {
                    let found = entry.and_then(|e| Ok((e.path(), e.metadata()?)));
                    let (path, meta) = match found {
                        Ok(f) => f,
                        Err(e) if e.kind() == ErrorKind::NotFound => continue,
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e.into()));
                            return;
                        }
                    };
                    if meta.is_dir() {
                        dirs.push(path);
                        continue;
                    }
                    let Ok(rel) = path.strip_prefix(&root) else {
                        continue;
                    };
                    let key: Vec<String> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    let modified_ms = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_millis() as i64);
                    let listed = super::ListedObject {
                        key: key.join("/"),
                        size: meta.len(),
                        modified_ms,
                    };
                    if tx.blocking_send(Ok(listed)).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(tokio_stream_from(rx)))
    }

    /// The root directory is there and is a directory.
    async fn check(&self) -> Result<()> {
        let meta = tokio::fs::metadata(&self.root).await?;
        if meta.is_dir() {
            Ok(())
        } else {
            Err(BlobError::Io(std::io::Error::new(
                ErrorKind::NotADirectory,
                format!("{} is not a directory", self.root.display()),
            )))
        }
    }
}

/// Adapts a receiver into a stream (what `tokio_stream::wrappers::ReceiverStream` does,
/// without the extra dependency).
fn tokio_stream_from<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}
