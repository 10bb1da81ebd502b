//! Headroom on the local disk: new events are refused once free space falls under a reserve,
//! so checkpoints, retention, deletes and the gateway's own bookkeeping can still write, and
//! a full disk is a clear, bounded state instead of failing flushes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sluice_tenancy::error::ApiError;

/// How often free space is looked at.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Free space of the data directory's filesystem against a reserve. Without a local
/// directory (an object store) nothing is refused.
pub struct DiskGuard {
    path: Option<PathBuf>,
    reserve: u64,
    free: AtomicU64,
}

impl DiskGuard {
    /// `path`: the local data directory, if the log is there; `reserve`: bytes kept free.
    pub fn new(path: Option<PathBuf>, reserve: u64) -> Arc<DiskGuard> {
        let guard = Arc::new(DiskGuard {
            free: AtomicU64::new(path.as_deref().map_or(u64::MAX, free_bytes)),
            path,
            reserve,
        });
        if guard.path.is_some() {
            let weak = Arc::downgrade(&guard);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SAMPLE_EVERY);
                loop {
                    tick.tick().await;
                    let Some(g) = weak.upgrade() else { return };
                    if let Some(p) = &g.path {
                        g.free.store(free_bytes(p), Ordering::Relaxed);
                    }
                }
            });
        }
        guard
    }

    /// Free bytes as last sampled (`None` without a local directory).
    pub fn free(&self) -> Option<u64> {
        self.path
            .as_ref()
            .map(|_| self.free.load(Ordering::Relaxed))
    }

    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Refuse new events while free space is under the reserve: 507 with error_code 50701.
    pub fn check(&self) -> Result<(), ApiError> {
        match self.free() {
            Some(free) if free < self.reserve => Err(ApiError::new(
                http::StatusCode::INSUFFICIENT_STORAGE,
                50701,
                format!(
                    "the data disk has {free} bytes free, under the reserve of {} \
                     (disk.reserve_bytes): new events are refused until space returns",
                    self.reserve
                ),
            )
            .retry_after(30)),
            _ => Ok(()),
        }
    }
}

/// Bytes an unprivileged writer may still use on `path`'s filesystem; `u64::MAX` when it
/// cannot be read (a guard that cannot see never refuses).
fn free_bytes(path: &Path) -> u64 {
    match rustix::fs::statvfs(path) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "reading free disk space");
            u64::MAX
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_under_the_reserve_only_on_a_local_disk() {
        let dir = tempfile::tempdir().unwrap();
        let roomy = DiskGuard::new(Some(dir.path().to_owned()), 1);
        assert!(roomy.free().unwrap() > 1);
        assert!(roomy.check().is_ok());
        let starved = DiskGuard::new(Some(dir.path().to_owned()), u64::MAX);
        let e = starved.check().unwrap_err();
        assert_eq!((e.status.as_u16(), e.error_code), (507, 50701));
        let remote = DiskGuard::new(None, u64::MAX);
        assert_eq!(remote.free(), None);
        assert!(remote.check().is_ok());
    }
}
