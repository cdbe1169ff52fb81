//! An Apache htpasswd users file (`user:$2y$…`, bcrypt only, as distribution), re-read
//! whenever its modification time changes. A verified password is remembered (as a
//! SHA-256 of password and hash, never the password) until the file changes, so clients
//! that send Basic credentials with every request pay for bcrypt once.
//!
//! bcrypt reads only the first 72 bytes of a password, so a longer one would be
//! accepted by its prefix: passwords over [`MAX_PASSWORD_BYTES`] are refused before any
//! check (as Go's bcrypt refuses them), whoever the user.
//!
//! An unknown user costs a bcrypt check too, at a cost the file's users have: each name
//! is mapped, by a hash keyed with a secret of this process, to the cost of one user of
//! the file (so costs are drawn as often as users have them) and checked against a dummy
//! hash of that cost. The time of a refusal then tells a name's cost, never whether the
//! name exists: with users at costs 5 and 12, unknown names answer as fast as one or
//! the other, and the same name always the same.

use std::collections::{BTreeMap, HashMap, HashSet};
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
    /// Each user's cost, sorted: an unknown name is checked at one of them.
    costs: Vec<u32>,
    /// A hash of a random password at each cost in the file, checked for unknown users.
    dummies: BTreeMap<u32, String>,
}

/// The longest password bcrypt reads in full. Longer ones are refused, not truncated.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// True for a password bcrypt would check only by its first 72 bytes.
pub fn password_too_long(password: &str) -> bool {
    password.len() > MAX_PASSWORD_BYTES
}

/// The cost of a bcrypt hash (`$2y$NN$…`).
fn cost(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

/// htpasswd -B's default cost, for a file without users.
const DEFAULT_COST: u32 = 5;

/// Each user's cost (sorted; htpasswd -B's default for a file without users) and a
/// dummy hash at each distinct one.
fn dummy_hashes(users: &HashMap<String, String>) -> (Vec<u32>, BTreeMap<u32, String>) {
    let mut costs: Vec<u32> = users
        .values()
        .filter_map(|h| cost(h))
        .filter(|c| (4..=31).contains(c))
        .collect();
    if costs.is_empty() {
        costs.push(DEFAULT_COST);
    }
    costs.sort_unstable();
    let mut dummies = BTreeMap::new();
    for &c in &costs {
        dummies.entry(c).or_insert_with(|| {
            let password = uuid::Uuid::new_v4().to_string();
            bcrypt::hash(password, c).unwrap_or_default()
        });
    }
    (costs, dummies)
}

/// This process's key for mapping unknown names to costs (random, never shown).
fn name_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut h = Sha256::new();
        h.update(uuid::Uuid::new_v4().as_bytes());
        h.update(uuid::Uuid::new_v4().as_bytes());
        h.finalize().into()
    })
}

/// The cost an unknown `user` is checked at: one user's cost of `costs`, chosen by a
/// keyed hash of the name (the same name, the same cost).
fn cost_for_unknown(user: &str, costs: &[u32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name_key());
    h.update(user.as_bytes());
    let d: [u8; 32] = h.finalize().into();
    let mut n = [0u8; 8];
    n.copy_from_slice(&d[..8]);
    let i = (u64::from_le_bytes(n) % costs.len().max(1) as u64) as usize;
    costs.get(i).copied().unwrap_or(DEFAULT_COST)
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
        let (costs, dummies) = dummy_hashes(&users);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.mtime = Some(mtime);
        state.users = users;
        state.costs = costs;
        state.dummies = dummies;
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

    /// Checks a user's password. Blocking (bcrypt): call from a blocking thread. A
    /// password over [`MAX_PASSWORD_BYTES`] never verifies (callers refuse it first,
    /// saying why).
    pub fn verify(&self, user: &str, password: &str) -> bool {
        if password_too_long(password) {
            return false;
        }
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
                None => {
                    let c = cost_for_unknown(user, &state.costs);
                    let dummy = state.dummies.get(&c).cloned().unwrap_or_default();
                    (dummy, false)
                }
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

    /// The cost an unknown name is checked at, through the dummy it is checked against.
    fn unknown_cost(h: &Htpasswd, user: &str) -> u32 {
        let state = h.state.lock().unwrap();
        let c = cost_for_unknown(user, &state.costs);
        cost(&state.dummies[&c]).unwrap()
    }

    #[test]
    fn unknown_users_cost_a_bcrypt_check_at_a_cost_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let hash = bcrypt::hash("s3cret", 6).unwrap();
        let low = bcrypt::hash("x", 4).unwrap();
        std::fs::write(&path, format!("alice:{hash}\nbob:{low}\n")).unwrap();
        let h = Htpasswd::open(&path).unwrap();
        // One dummy per distinct cost, each at its cost.
        let costs: Vec<u32> = {
            let state = h.state.lock().unwrap();
            state.dummies.values().map(|d| cost(d).unwrap()).collect()
        };
        assert_eq!(costs, vec![4, 6]);
        // Every name is checked at a cost the file's users have, the same one each time,
        // and both costs are used (64 names: all alike with probability 2^-63).
        let mut seen = HashSet::new();
        for i in 0..64 {
            let name = format!("user{i}");
            let c = unknown_cost(&h, &name);
            assert!(c == 4 || c == 6, "{name}: {c}");
            assert_eq!(unknown_cost(&h, &name), c);
            seen.insert(c);
        }
        assert_eq!(seen.len(), 2, "unknown names use every cost of the file");
        assert!(!h.verify("nobody", "s3cret"));
        assert!(!h.verify("nobody", ""));
        assert_eq!(h.bcrypt_runs.load(Ordering::Relaxed), 2);
        assert!(!h.verify("alice", "wrong"));
        assert_eq!(h.bcrypt_runs.load(Ordering::Relaxed), 3);
        // An empty file still has a dummy (htpasswd -B's default cost).
        std::fs::write(&path, "").unwrap();
        let h = Htpasswd::open(&path).unwrap();
        assert_eq!(unknown_cost(&h, "nobody"), DEFAULT_COST);
        assert!(!h.verify("nobody", "x"));
        assert_eq!(h.bcrypt_runs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn passwords_over_72_bytes_are_refused_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let exactly_72 = "p".repeat(72);
        let long = format!("{exactly_72}-and-a-tail");
        // A hash made by a truncating tool (htpasswd, this crate's hash) of the long one.
        let hash = bcrypt::hash(&long, 4).unwrap();
        let hash72 = bcrypt::hash(&exactly_72, 4).unwrap();
        std::fs::write(&path, format!("alice:{hash}\nbob:{hash72}\n")).unwrap();
        let h = Htpasswd::open(&path).unwrap();
        assert!(password_too_long(&long) && !password_too_long(&exactly_72));
        // Neither the password nor another with the same first 72 bytes gets in.
        assert!(!h.verify("alice", &long));
        assert!(!h.verify("alice", &format!("{exactly_72}-another-tail")));
        assert_eq!(
            h.bcrypt_runs.load(Ordering::Relaxed),
            0,
            "refused before bcrypt"
        );
        // 72 bytes are all read by bcrypt: accepted, and a 71-byte prefix is not.
        assert!(h.verify("bob", &exactly_72));
        assert!(!h.verify("bob", &"p".repeat(71)));
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
