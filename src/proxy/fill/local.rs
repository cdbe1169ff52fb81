//! [`Fills`]: which fills this instance is claiming or running, so that its other
//! requests for the same digest wait for them rather than race for the lease.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::types::Digest;

/// The fills this instance knows of: a local entry exists while a request here is
/// claiming or running a fill, so other requests here wait for it instead of racing
/// for the lease, and are woken by its progress.
#[derive(Default, Clone)]
pub(in crate::proxy) struct Fills {
    local: Arc<Mutex<HashMap<Digest, watch::Sender<u64>>>>,
}

/// The local entry of a fill; removed (waking its followers) when dropped.
pub(super) struct LocalGuard {
    fills: Fills,
    digest: Digest,
    pub(super) progress: watch::Sender<u64>,
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        if let Ok(mut local) = self.fills.local.lock() {
            local.remove(&self.digest);
        }
        self.progress.send_modify(|p| *p = p.wrapping_add(1));
    }
}

impl Fills {
    /// A new local entry for `digest`, unless there is one.
    pub(super) fn begin(&self, digest: &Digest) -> Option<LocalGuard> {
        let mut local = self.local.lock().ok()?;
        if local.contains_key(digest) {
            return None;
        }
        let (tx, _) = watch::channel(0);
        local.insert(digest.clone(), tx.clone());
        Some(LocalGuard {
            fills: self.clone(),
            digest: digest.clone(),
            progress: tx,
        })
    }

    /// Progress notifications of the local fill of `digest`, if there is one.
    pub(super) fn subscribe(&self, digest: &Digest) -> Option<watch::Receiver<u64>> {
        let local = self.local.lock().ok()?;
        local.get(digest).map(|tx| tx.subscribe())
    }
}
