//! sqlx's errors turned into [`MetadataError`]s, classified once for both engines:
//! what a retry may cure (lost connections, timeouts, a busy database), what a race
//! between transactions produced (retried by the PostgreSQL store), and the rest.

use super::MetadataError;

/// SQLSTATEs of a database that cannot be reached: connection exceptions (class 08),
/// too many connections, shutting down or starting up. These are what the circuit
/// breaker counts.
fn is_unreachable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "53300" | "57P01" | "57P02" | "57P03")
}

/// SQLSTATEs (PostgreSQL) and result codes (SQLite) of a database that is up but cannot
/// answer now: statement/lock timeouts; SQLite's BUSY and LOCKED (and their extended
/// codes).
fn is_unavailable(code: &str) -> bool {
    matches!(code, "57014" | "55P03" | "5" | "6" | "517" | "262")
}

/// SQLSTATEs of a race a fresh attempt resolves: serialization failure, deadlock, and
/// unique or foreign-key violations (a row another transaction inserted or deleted
/// between our check and our write).
fn is_race(code: &str) -> bool {
    matches!(code, "40001" | "40P01" | "23505" | "23503")
}

impl From<sqlx::Error> for MetadataError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        let code = match &e {
            E::PoolTimedOut => return MetadataError::PoolTimedOut(e.to_string()),
            E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => {
                return MetadataError::Unreachable(e.to_string())
            }
            E::Database(db) => db.code().map(|c| c.into_owned()),
            _ => None,
        };
        match code.as_deref() {
            Some(c) if is_unreachable(c) => MetadataError::Unreachable(e.to_string()),
            Some(c) if is_unavailable(c) => MetadataError::Unavailable(e.to_string()),
            Some(c) if is_race(c) => MetadataError::Conflict(Box::new(e)),
            _ => MetadataError::Database(Box::new(e)),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for MetadataError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        MetadataError::Migrate(Box::new(e))
    }
}
