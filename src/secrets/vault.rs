//! The key ring in use by a running process, and where it came from.
//!
//! When a value turns up sealed under a key this process does not know, and
//! the keys come from a file, the file is read again: that is how a running
//! server picks up the new key written by `botgate keys rotate` without a
//! restart.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::keyfile::{read_key_file, KeyListError};
use super::{Aad, KeyRing, OpenError, Sealed};

#[derive(Debug, Clone)]
pub enum KeySource {
    /// `BOTGATE_MASTER_KEY`: fixed for the life of the process.
    Setting,
    /// A key file (`BOTGATE_MASTER_KEY_FILE` or the generated `data/master.key`).
    File(PathBuf),
}

pub struct Vault {
    ring: RwLock<Arc<KeyRing>>,
    source: KeySource,
    /// Modification time of the key file when it was last read.
    loaded: Mutex<Option<SystemTime>>,
    /// When [`Vault::seal_bytes`] last looked at the key file (Unix ms).
    checked_at: AtomicI64,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("ring", &self.ring())
            .field("source", &self.source)
            .finish()
    }
}

impl Vault {
    pub fn new(ring: KeyRing, source: KeySource) -> Self {
        let loaded = match &source {
            KeySource::File(path) => modified(path),
            KeySource::Setting => None,
        };
        Self {
            ring: RwLock::new(Arc::new(ring)),
            source,
            loaded: Mutex::new(loaded),
            checked_at: AtomicI64::new(0),
        }
    }

    pub fn ring(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(ring) => Arc::clone(&ring),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// Seals under the current key. A key file changed since it was read (by
    /// `botgate keys rotate`) is read again first, so new values go under the
    /// new key.
    pub fn seal(&self, plaintext: &SecretString, aad: Aad<'_>) -> Sealed {
        use secrecy::ExposeSecret as _;
        self.reload_if_changed();
        self.ring().seal(plaintext.expose_secret().as_bytes(), aad)
    }

    /// [`Vault::seal`] for the hot path (message bodies, one per callback):
    /// the key file is looked at (a `stat`) at most once a second, so a
    /// rotation reaches new bodies within a second (`botgate keys rotate`
    /// waits longer than that before re-sealing them).
    pub fn seal_bytes(&self, plaintext: &[u8], aad: Aad<'_>) -> Sealed {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let last = self.checked_at.load(Ordering::Relaxed);
        if now - last >= 1000
            && self
                .checked_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.reload_if_changed();
        }
        self.ring().seal(plaintext, aad)
    }

    /// Reads a key file again if it changed since it was read.
    fn reload_if_changed(&self) {
        if let KeySource::File(path) = &self.source {
            let changed = self
                .loaded
                .lock()
                .map(|t| *t != modified(path))
                .unwrap_or(false);
            if changed {
                if let Err(e) = self.reload() {
                    tracing::error!(error.message = %e, "cannot reload the master key file; sealing with the keys in memory");
                }
            }
        }
    }

    pub fn open(&self, sealed: &Sealed, aad: Aad<'_>) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        match self.ring().open(sealed, aad) {
            Err(OpenError::UnknownKey(_)) if self.reload().is_ok() => self.ring().open(sealed, aad),
            other => other,
        }
    }

    pub fn open_str(&self, sealed: &Sealed, aad: Aad<'_>) -> Result<SecretString, OpenError> {
        let bytes = self.open(sealed, aad)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| OpenError::Malformed)?;
        Ok(SecretString::from(text.to_owned()))
    }

    /// Re-reads a key file. A no-op success for keys from settings.
    pub fn reload(&self) -> Result<(), KeyListError> {
        let KeySource::File(path) = &self.source else {
            return Ok(());
        };
        let mtime = modified(path);
        let ring = read_key_file(path)?;
        if let Ok(mut loaded) = self.loaded.lock() {
            *loaded = mtime;
        }
        tracing::info!(keys = ?ring, "reloaded the master key file");
        match self.ring.write() {
            Ok(mut guard) => *guard = Arc::new(ring),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(ring),
        }
        Ok(())
    }
}
