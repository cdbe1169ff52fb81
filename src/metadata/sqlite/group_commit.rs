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

use futures_util::future::BoxFuture;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Executor};
use tokio::sync::{mpsc, oneshot};

use super::outbox;
use crate::metadata::{MetadataError, Result};

/// Most jobs in one transaction.
const MAX_BATCH: usize = 128;

/// A job's result, delivered once the batch's commit outcome is known.
type Deliver = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// A write job: runs its statements on the writer connection, says whether they
/// succeeded, and hands back how to deliver its result.
type Job =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Deliver)> + Send>;

/// Handle for submitting write jobs.
#[derive(Clone)]
pub struct GroupCommitter {
    jobs: mpsc::UnboundedSender<Job>,
}

impl GroupCommitter {
    /// Opens the writer connection and starts its thread.
    pub async fn start(options: SqliteConnectOptions) -> Result<Self> {
        let conn = SqliteConnection::connect_with(&options).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(rt) => rt.block_on(run(conn, options, rx)),
                    Err(e) => tracing::error!(error = %e, "sqlite writer could not start"),
                }
            })
            .map_err(|e| MetadataError::Database(Box::new(e)))?;
        Ok(GroupCommitter { jobs: tx })
    }

    /// Runs `f` in a write transaction (possibly shared with other jobs) and returns its
    /// result once committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
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
            .send(job)
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
) {
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
            let savepoint = conn.execute("SAVEPOINT job").await;
            let staged = outbox::mark();
            let (ok, deliver) = job(&mut conn).await;
            let end = if ok && savepoint.is_ok() {
                conn.execute("RELEASE job").await
            } else {
                outbox::discard_after(staged);
                conn.execute("ROLLBACK TO job; RELEASE job").await
            };
            if let Err(e) = end {
                tracing::error!(error = %e, "sqlite writer: savepoint failed");
            }
            deliveries.push(deliver);
        }
        // The events the batch's jobs staged, in its transaction (see `outbox`); if
        // they cannot be written, nothing of the batch is committed.
        let commit = match outbox::end_batch(&mut conn).await {
            Ok(_) => conn
                .execute("COMMIT")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => {
                outbox::abandon_batch();
                Err(format!("writing the batch's events: {e}"))
            }
        };
        if let Err(e) = &commit {
            tracing::error!(error = %e, "sqlite writer: COMMIT failed");
            let _ = conn.execute("ROLLBACK").await;
        }
        for deliver in deliveries {
            deliver(commit.clone());
        }
    }
}
