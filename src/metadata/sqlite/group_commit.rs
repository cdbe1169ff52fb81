//! Group commit for SQLite: one writer connection on its own thread runs every write
//! transaction the store is asked for, batching those that queue up while a commit is
//! in flight into one SQLite transaction (one WAL fsync for the batch), each job inside
//! its own SAVEPOINT so that one job's failure rolls back only that job.
//!
//! SQLite has no group commit of its own and allows one writer at a time; at 32
//! concurrent pushes, one fsync per transaction would cap the registry at about a
//! thousand writes a second on this class of disk. Results are delivered only after
//! the batch's COMMIT has returned, so nothing is acknowledged before it is durable.
//! The outbox rows the batch's jobs staged go in just before that COMMIT (`outbox`).
//!
//! `wharf_sqlite_writer_job_seconds{kind}` times each job on the writer (its statements,
//! savepoint included) by what it does ([`JobKind`], a bounded label), `kind="outbox"` the
//! insert of each batch's staged outbox rows (batches with events only), and
//! `kind="commit"` each batch's COMMIT (one WAL fsync each): how many jobs of each kind
//! the writer ran, how busy they kept it, and how many commits they cost.

use futures_util::future::BoxFuture;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Executor};
use tokio::sync::{mpsc, oneshot};

use std::sync::Arc;

use super::handoff::Handoff;
use super::outbox;
use crate::metadata::{MetadataError, Result};

/// Most jobs in one transaction.
const MAX_BATCH: usize = 128;

/// What a writer job does, for the job-time histogram (a bounded label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// A manifest stored (with its tags, references and events).
    Manifest = 0,
    /// A blob committed or linked (with its events).
    Blob,
    /// A delivery worker's claim (with the completions of its previous tick).
    NotifyClaim,
    /// A delivery worker's completions or failed attempts.
    NotifyComplete,
    /// A slice of outbox pruning.
    NotifyPrune,
    /// Other outbox writes (endpoint registration, pull events, dead letters, replays).
    NotifyOther,
    /// Everything else.
    Other,
}

impl JobKind {
    const ALL: [JobKind; 7] = [
        JobKind::Manifest,
        JobKind::Blob,
        JobKind::NotifyClaim,
        JobKind::NotifyComplete,
        JobKind::NotifyPrune,
        JobKind::NotifyOther,
        JobKind::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            JobKind::Manifest => "manifest",
            JobKind::Blob => "blob",
            JobKind::NotifyClaim => "notify_claim",
            JobKind::NotifyComplete => "notify_complete",
            JobKind::NotifyPrune => "notify_prune",
            JobKind::NotifyOther => "notify_other",
            JobKind::Other => "other",
        }
    }
}

/// The job-time histogram's series: one per [`JobKind`], then the outbox inserts' and
/// the commits'.
struct JobTimes {
    kinds: Vec<prometheus::Histogram>,
    outbox: prometheus::Histogram,
    commit: prometheus::Histogram,
}

impl JobTimes {
    fn new() -> JobTimes {
        let h = crate::telemetry::lazy_histogram_vec(
            "sqlite_writer_job_seconds",
            "Time the SQLite writer spent on each job by kind, on each batch's outbox rows (kind=outbox) and on its COMMIT (kind=commit)",
            &["kind"],
            vec![
                0.000_05, 0.0001, 0.000_25, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 1.0,
            ],
        );
        JobTimes {
            kinds: JobKind::ALL
                .iter()
                .map(|k| h.with_label_values(&[k.label()]))
                .collect(),
            outbox: h.with_label_values(&["outbox"]),
            commit: h.with_label_values(&["commit"]),
        }
    }

    fn observe(&self, kind: JobKind, since: std::time::Instant) {
        if let Some(h) = self.kinds.get(kind as usize) {
            h.observe(since.elapsed().as_secs_f64());
        }
    }
}

/// A job's result, delivered once the batch's commit outcome is known.
type Deliver = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// A write job: runs its statements on the writer connection, says whether they
/// succeeded, and hands back how to deliver its result.
type Run =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Deliver)> + Send>;

/// A write job and what it does.
struct Job {
    kind: JobKind,
    run: Run,
}

/// Handle for submitting write jobs.
#[derive(Clone)]
pub struct GroupCommitter {
    jobs: mpsc::UnboundedSender<Job>,
    handoff: Arc<Handoff>,
}

impl GroupCommitter {
    /// Opens the writer connection and starts its thread.
    pub async fn start(options: SqliteConnectOptions) -> Result<Self> {
        let conn = SqliteConnection::connect_with(&options).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let handoff = Arc::new(Handoff::default());
        let published = handoff.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(rt) => rt.block_on(run(conn, options, rx, &published)),
                    Err(e) => tracing::error!(error = %e, "sqlite writer could not start"),
                }
            })
            .map_err(|e| MetadataError::Database(Box::new(e)))?;
        Ok(GroupCommitter { jobs: tx, handoff })
    }

    /// The events this writer committed, for the local delivery workers (`handoff`).
    pub fn handoff(&self) -> &Arc<Handoff> {
        &self.handoff
    }

    /// Runs `f` in a write transaction (possibly shared with other jobs) and returns its
    /// result once committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.write_as(JobKind::Other, f).await
    }

    /// [`GroupCommitter::write`], timed as a job of `kind`.
    pub async fn write_as<T, F>(&self, kind: JobKind, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel::<Result<T>>();
        let run: Run = Box::new(move |conn| {
            Box::pin(async move {
                let outcome = f(conn).await;
                let ok = outcome.is_ok();
                let deliver: Deliver = Box::new(move |commit| {
                    let result = match (outcome, commit) {
                        (Ok(v), Ok(())) => Ok(v),
                        (Ok(_), Err(e)) => {
                            Err(MetadataError::Corrupt(format!("commit failed: {e}")))
                        }
                        (Err(e), _) => Err(e),
                    };
                    let _ = reply_tx.send(result);
                });
                (ok, deliver)
            })
        });
        self.jobs
            .send(Job { kind, run })
            .map_err(|_| MetadataError::Unavailable("sqlite writer has stopped".into()))?;
        reply_rx
            .await
            .map_err(|_| MetadataError::Unavailable("sqlite writer dropped a job".into()))?
    }
}

async fn run(
    mut conn: SqliteConnection,
    options: SqliteConnectOptions,
    mut rx: mpsc::UnboundedReceiver<Job>,
    handoff: &Handoff,
) {
    let times = JobTimes::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute("BEGIN IMMEDIATE").await {
            tracing::error!(error = %e, "sqlite writer: BEGIN failed");
            // Dropping the jobs drops their reply channels: each caller gets an error.
            drop(batch);
            if let Ok(fresh) = SqliteConnection::connect_with(&options).await {
                conn = fresh;
            }
            continue;
        }
        let mut deliveries = Vec::with_capacity(batch.len());
        outbox::begin_batch();
        for job in batch {
            let started = std::time::Instant::now();
            let savepoint = conn.execute("SAVEPOINT job").await;
            let staged = outbox::mark();
            let (ok, deliver) = (job.run)(&mut conn).await;
            let end = if ok && savepoint.is_ok() {
                conn.execute("RELEASE job").await
            } else {
                outbox::discard_after(staged);
                conn.execute("ROLLBACK TO job; RELEASE job").await
            };
            if let Err(e) = end {
                tracing::error!(error = %e, "sqlite writer: savepoint failed");
            }
            times.observe(job.kind, started);
            deliveries.push(deliver);
        }
        // The events the batch's jobs staged, in its transaction (see `outbox`); if
        // they cannot be written, nothing of the batch is committed.
        let staging = std::time::Instant::now();
        let staged = outbox::end_batch(&mut conn).await;
        if matches!(&staged, Ok(Some(w)) if !w.events.is_empty()) {
            times.outbox.observe(staging.elapsed().as_secs_f64());
        }
        let committing = std::time::Instant::now();
        let (commit, written) = match staged {
            Ok(written) => (
                conn.execute("COMMIT")
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                written,
            ),
            Err(e) => {
                outbox::abandon_batch();
                (Err(format!("writing the batch's events: {e}")), None)
            }
        };
        match (&commit, written) {
            (Err(e), _) => {
                tracing::error!(error = %e, "sqlite writer: COMMIT failed");
                let _ = conn.execute("ROLLBACK").await;
            }
            // Committed: the local delivery workers may take these from memory. Before
            // the results are delivered, so a claim that follows a push finds them.
            (Ok(()), Some(w)) => handoff.publish(w.first_id, w.events),
            (Ok(()), None) => handoff.clear(),
        }
        times.commit.observe(committing.elapsed().as_secs_f64());
        for deliver in deliveries {
            deliver(commit.clone());
        }
    }
}
