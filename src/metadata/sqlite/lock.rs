//! One process per SQLite database: an exclusive, non-blocking lock on `<database>.lock`
//! (`flock` through std's `File::try_lock`), taken before the database is opened and
//! held while the store is. The kernel releases it when the process ends, however it
//! ends, so a crash leaves nothing to clean up; the file itself stays (removing it could
//! let two processes lock two different files of the same name). The holder writes its
//! pid into the file, so the process refused can say who has the database.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::metadata::{MetadataError, Result};

pub struct DatabaseLock {
    _file: File,
}

/// `<database>.lock`, beside the database.
fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl DatabaseLock {
    pub fn acquire(database: &Path) -> Result<DatabaseLock> {
        let path = lock_path(database);
        let io_error = |e: std::io::Error| {
            MetadataError::Database(format!("lock file {}: {e}", path.display()).into())
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let holder = match pid.trim().parse::<u32>() {
                    Ok(pid) => format!("process {pid}"),
                    Err(_) => "another process".to_string(),
                };
                return Err(MetadataError::InUse {
                    database: database.display().to_string(),
                    lock: path.display().to_string(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_error(e)),
        }
        file.set_len(0).map_err(io_error)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io_error)?;
        Ok(DatabaseLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holder_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("wharf.db");
        let first = DatabaseLock::acquire(&db).unwrap();
        let pid = std::fs::read_to_string(dir.path().join("wharf.db.lock")).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        // Another open file description conflicts, in this process as in another.
        let e = DatabaseLock::acquire(&db)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains(&format!("process {}", std::process::id()))
                && e.contains("wharf.db.lock")
                && e.contains("PostgreSQL"),
            "{e}"
        );
        drop(first);
        let _again = DatabaseLock::acquire(&db).unwrap();
    }
}
