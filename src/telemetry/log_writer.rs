//! The server's log writer: lines are appended to a shared buffer and a thread of its
//! own writes the buffer out in batches, every [`FLUSH_EVERY`] or as soon as
//! [`SOON`] bytes wait.
//!
//! Hand-written because `tracing-appender`'s non-blocking writer, the usual choice,
//! hands each line to its thread through a channel and wakes that thread for it: at
//! 20,000 requests a second, one access-log line each, the wake-ups (a futex call on
//! both sides) cost more CPU than formatting the line (`scripts/bench-observability`
//! with 100,000 requests a run: the access log took 0.83 of the rate without it).
//! Here a request's thread only copies its line under a mutex held for that copy; the
//! writing thread is woken only when a batch is due.
//!
//! Nothing is dropped: past [`MOST`] bytes waiting (the disk or the pipe cannot keep
//! up), a request's thread waits until the writing thread has taken the batch, so
//! memory stays bounded. [`Guard`] writes what is left when it drops (the process's
//! end); a crash loses at most the last [`FLUSH_EVERY`] of lines.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long a line may wait before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Bytes waiting that make the writing thread write at once.
pub const SOON: usize = 256 * 1024;
/// Bytes waiting past which a request's thread waits for the writing thread.
pub const MOST: usize = 8 * 1024 * 1024;

struct State {
    buffer: Vec<u8>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The writing thread waits on it for a batch to be due (or the end).
    due: Condvar,
    /// Request threads wait on it while the buffer is past [`MOST`].
    taken: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves bytes, not a broken invariant.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `MakeWriter` of the log layer (cheap to clone: one `Arc`).
#[derive(Clone)]
pub struct BatchedLog {
    shared: Arc<Shared>,
}

/// Ends the writing thread when dropped, after it has written every line.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BatchedLog {
    /// Starts the writing thread, which writes to `out`. `None` if the thread cannot
    /// be started.
    pub fn start(out: impl Write + Send + 'static) -> std::io::Result<(BatchedLog, Guard)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buffer: Vec::with_capacity(SOON),
                closed: false,
            }),
            due: Condvar::new(),
            taken: Condvar::new(),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("wharf-log".into())
            .spawn(move || write_batches(&for_thread, out))?;
        Ok((
            BatchedLog {
                shared: shared.clone(),
            },
            Guard {
                shared,
                thread: Some(thread),
            },
        ))
    }
}

/// The writing thread: takes the buffer when a batch is due and writes it.
fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut spare = Vec::with_capacity(SOON);
    loop {
        let closed;
        {
            let state = shared.lock();
            let (mut state, _) = shared
                .due
                .wait_timeout_while(state, FLUSH_EVERY, |s| s.buffer.len() < SOON && !s.closed)
                .unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut state.buffer, &mut spare);
            closed = state.closed;
        }
        shared.taken.notify_all();
        if !spare.is_empty() {
            // Nowhere to report a failed write of the log itself: the lines are lost,
            // the server goes on.
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
            if spare.capacity() > MOST {
                spare.shrink_to(SOON);
            }
        }
        if closed && shared.lock().buffer.is_empty() {
            return;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.due.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One event's writer: its bytes go to the shared buffer.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl BatchedLog {
    /// Appends `bytes` (whole lines) to the batch: what a [`LineWriter`] does, for
    /// lines written without tracing's machinery (`access_line::direct`).
    pub fn append(&self, bytes: &[u8]) {
        self.shared.append(bytes);
    }
}

impl Shared {
    fn append(&self, bytes: &[u8]) {
        let mut state = self.lock();
        while state.buffer.len() >= MOST && !state.closed {
            self.due.notify_one();
            state = self.taken.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        let before = state.buffer.len();
        state.buffer.extend_from_slice(bytes);
        let after = state.buffer.len();
        drop(state);
        // Woken once, when the buffer crosses the mark, not for every line.
        if before < SOON && after >= SOON {
            self.due.notify_one();
        }
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.shared.append(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedLog {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter as _;

    /// A `Write` into a shared vector, to read what the thread wrote.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_by_the_end() {
        let sink = Sink::default();
        let (log, guard) = BatchedLog::start(sink.clone()).unwrap();
        let mut expected = Vec::new();
        // Past MOST, so request threads wait for the writing thread at least once.
        for i in 0..200_000 {
            let line = format!("line {i} {}\n", "x".repeat(40));
            log.make_writer().write_all(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
        }
        drop(guard);
        assert_eq!(*sink.0.lock().unwrap(), expected);
    }

    #[test]
    fn a_line_is_written_without_more_lines_or_the_end() {
        let sink = Sink::default();
        let (log, _guard) = BatchedLog::start(sink.clone()).unwrap();
        log.make_writer().write_all(b"one line\n").unwrap();
        // FLUSH_EVERY is 50 ms: wait up to 5 s for the thread's timed batch.
        for _ in 0..500 {
            if !sink.0.lock().unwrap().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(*sink.0.lock().unwrap(), b"one line\n");
    }

    #[test]
    fn lines_from_many_threads_are_whole() {
        let sink = Sink::default();
        let (log, guard) = BatchedLog::start(sink.clone()).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let log = log.clone();
                s.spawn(move || {
                    for i in 0..10_000 {
                        let line = format!("t{t} {i}\n");
                        log.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let mut last = [-1i64; 4];
        let mut count = 0;
        for line in text.lines() {
            let (t, i) = line.split_once(' ').unwrap();
            let t: usize = t[1..].parse().unwrap();
            let i: i64 = i.parse().unwrap();
            // Each thread's lines in its order, none torn.
            assert_eq!(i, last[t] + 1);
            last[t] = i;
            count += 1;
        }
        assert_eq!(count, 40_000);
    }
}
