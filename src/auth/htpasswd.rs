//! An Apache htpasswd users file (`user:$2y$…`, bcrypt only, as distribution), re-read
//! whenever its modification time changes. A verified password is remembered (as a
//! SHA-256 of password and hash, never the password) until the file changes, so clients
//! that send Basic credentials with every request pay for bcrypt once. An unknown user
//! costs a bcrypt check too (against a dummy hash of the file's cost), so the response
//! time does not tell whether a user exists.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

pub struct Htpasswd {
    path: PathBuf,
    state: Mutex<State>,
    /// bcrypt checks run (real and dummy), for tests.
    bcrypt_runs: AtomicU64,
}

#[derive(Default)]
struct State {
    mtime: Option<SystemTime>,
    users: HashMap<String, String>,
    verified: HashSet<[u8; 32]>,
    /// A hash of a random password at the highest cost in the file, checked for unknown
    /// users.
    dummy: String,
}

/// The cost of a bcrypt hash (`$2y$NN$…`).
fn cost(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

/// htpasswd -B's default cost, for a file without users.
const DEFAULT_COST: u32 = 5;

fn dummy_hash(users: &HashMap<String, String>) -> String {
    let cost = users
        .values()
        .filter_map(|h| cost(h))
        .filter(|c| (4..=31).contains(c))
        .max()
        .unwrap_or(DEFAULT_COST);
    let password = uuid::Uuid::new_v4().to_string();
    bcrypt::hash(password, cost)
        .or_else(|_| bcrypt::hash("wharf", DEFAULT_COST))
        .unwrap_or_default()
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("path", &self.path)
            .finish()
    }
}

fn parse(text: &str, path: &std::path::Path) -> HashMap<String, String> {
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, hash)) if hash.starts_with("$2") => {
                users.insert(user.to_string(), hash.to_string());
            }
            _ => tracing::warn!(
                path = %path.display(),
                line = n + 1,
                "htpasswd entry ignored: only bcrypt (`htpasswd -B`) entries are supported"
            ),
        }
    }
    users
}

fn fingerprint(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [user, password, hash] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

impl Htpasswd {
    /// Opens (and reads) the file; a missing or unreadable file is an error at start-up.
    pub fn open(path: impl Into<PathBuf>) -> std::io::Result<Htpasswd> {
        let h = Htpasswd {
            path: path.into(),
            state: Mutex::new(State::default()),
            bcrypt_runs: AtomicU64::new(0),
        };
        h.refresh()?;
        Ok(h)
    }

    /// Re-reads the file if its mtime changed. Errors keep the previous users.
    fn refresh(&self) -> std::io::Result<()> {
        let mtime = std::fs::metadata(&self.path)?.modified()?;
        {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.mtime == Some(mtime) {
                return Ok(());
            }
        }
        let text = std::fs::read_to_string(&self.path)?;
        let users = parse(&text, &self.path);
        let dummy = dummy_hash(&users);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.mtime = Some(mtime);
        state.users = users;
        state.dummy = dummy;
        state.verified.clear();
        tracing::info!(path = %self.path.display(), users = state.users.len(), "htpasswd loaded");
        Ok(())
    }

    /// True if `user` is in the file (for refresh tokens).
    pub fn has_user(&self, user: &str) -> bool {
        if let Err(e) = self.refresh() {
            tracing::warn!(path = %self.path.display(), error = %e, "htpasswd unreadable; using the previous contents");
        }
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.users.contains_key(user)
    }

    /// Checks a user's password. Blocking (bcrypt): call from a blocking thread.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        if let Err(e) = self.refresh() {
            tracing::warn!(path = %self.path.display(), error = %e, "htpasswd unreadable; using the previous contents");
        }
        let (hash, known) = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match state.users.get(user) {
                Some(hash) => {
                    if state.verified.contains(&fingerprint(user, password, hash)) {
                        return true;
                    }
                    (hash.clone(), true)
                }
                None => (state.dummy.clone(), false),
            }
        };
        self.bcrypt_runs.fetch_add(1, Ordering::Relaxed);
        let ok = bcrypt::verify(password, &hash).unwrap_or(false) && known;
        if ok {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.users.get(user) == Some(&hash) {
                state.verified.insert(fingerprint(user, password, &hash));
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_users_cost_a_bcrypt_check_at_the_file_cost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let hash = bcrypt::hash("s3cret", 6).unwrap();
        let low = bcrypt::hash("x", 4).unwrap();
        std::fs::write(&path, format!("alice:{hash}\nbob:{low}\n")).unwrap();
        let h = Htpasswd::open(&path).unwrap();
        assert_eq!(cost(&h.state.lock().unwrap().dummy), Some(6));
        assert!(!h.verify("nobody", "s3cret"));
        assert!(!h.verify("nobody", ""));
        assert_eq!(h.bcrypt_runs.load(Ordering::Relaxed), 2);
        assert!(!h.verify("alice", "wrong"));
        assert_eq!(h.bcrypt_runs.load(Ordering::Relaxed), 3);
        // An empty file still has a dummy (htpasswd -B's default cost).
        std::fs::write(&path, "").unwrap();
        let h = Htpasswd::open(&path).unwrap();
        assert_eq!(cost(&h.state.lock().unwrap().dummy), Some(DEFAULT_COST));
        assert!(!h.verify("nobody", "x"));
        assert_eq!(h.bcrypt_runs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn bcrypt_users_and_reload_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        std::fs::write(&path, format!("# users\nalice:{hash}\nbob:{{SHA}}xyz\n\n")).unwrap();
        let h = Htpasswd::open(&path).unwrap();
        assert!(h.verify("alice", "s3cret"));
        assert!(h.verify("alice", "s3cret"), "cached");
        assert!(!h.verify("alice", "wrong"));
        assert!(!h.verify("bob", "xyz"), "non-bcrypt entries are ignored");
        assert!(!h.verify("carol", "s3cret"));
        let hash2 = bcrypt::hash("other", 4).unwrap();
        std::fs::write(&path, format!("carol:{hash2}\n")).unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(!h.verify("alice", "s3cret"), "removed user, cache dropped");
        assert!(h.verify("carol", "other"));
        assert!(h.has_user("carol") && !h.has_user("alice"));
    }
}
