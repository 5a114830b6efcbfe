//! The CA folder's lock: one `cert` command that writes at a time.
//!
//! `cert issue`, `cert revoke` and `cert crl` each read `issued.toml`, change it and write it
//! back, with the CRL made from it. Two at once would both start from the same record, and the
//! second to write would drop the first one's change: a revocation lost from the record, or a
//! `crl.pem` that does not list it. So each holds an exclusive advisory lock (`flock`) on the
//! file [`LOCK`](super::LOCK) in the folder from before it reads the record until its last file
//! is written. Another waits for it, up to a bound, then fails naming the file. The operating
//! system releases the lock when the process ends, however it ends, so a crashed command leaves
//! no stale lock; the file itself stays, empty. Readers (`cert list`, the broker reading
//! `crl.pem`) need no lock: every file is replaced whole by a rename.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::AdminError;

use super::files::file_error;
use super::LOCK;

/// How often a waiting command tries the lock again.
const RETRY: Duration = Duration::from_millis(25);

/// The exclusive lock on a CA folder, held until dropped.
#[derive(Debug)]
pub struct FolderLock {
    /// Open for as long as the lock is held: closing it releases the lock.
    _file: File,
    path: PathBuf,
}

impl FolderLock {
    /// Takes the lock of the CA folder `dir`, waiting up to `wait` while another process holds
    /// it; then [`AdminError::CaLocked`].
    pub fn acquire(dir: &Path, wait: Duration) -> Result<Self, AdminError> {
        let path = dir.join(LOCK);
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o644);
        }
        let file = options.open(&path).map_err(|e| file_error(&path, e))?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { _file: file, path }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(file_error(&path, e)),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(AdminError::CaLocked { path, waited: wait });
            }
            std::thread::sleep(RETRY.min(deadline - now));
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
