//! Resolving the secrets that are generated when not configured, kept apart
//! from parsing the configuration:
//!
//! - master key: `BOTGATE_MASTER_KEY` (one key, or several comma-separated:
//!   the first seals, all open), else `BOTGATE_MASTER_KEY_FILE`, else
//!   `<data_dir>/master.key`, generated (mode 0600) with a warning if missing;
//! - admin token: `BOTGATE_ADMIN_TOKEN`, else the hash in
//!   `<data_dir>/admin.token`, else a new token whose hash is written there and
//!   whose plaintext is returned to be printed once.

use std::path::PathBuf;

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};

use crate::config::Settings;
use crate::secrets::hashing::{generate_token, hash_token, ADMIN_TOKEN_PREFIX};
use crate::secrets::keyfile::{parse_key_list, read_key_file, write_key_file, write_private_file};
use crate::secrets::vault::{KeySource, Vault};
use crate::secrets::{KeyRing, MasterKey};

pub fn master_key_path(settings: &Settings) -> PathBuf {
    settings.data_dir.join("master.key")
}

pub fn admin_token_path(settings: &Settings) -> PathBuf {
    settings.data_dir.join("admin.token")
}

/// The key ring and where it came from. `generated` is true when a new key
/// file was just written (worth a warning: back it up).
pub fn load_keys(settings: &Settings) -> anyhow::Result<(KeyRing, KeySource, bool)> {
    if let Some(list) = &settings.master_key {
        let ring = parse_key_list(list.expose_secret(), "BOTGATE_MASTER_KEY")?;
        return Ok((ring, KeySource::Setting, false));
    }
    if let Some(path) = &settings.master_key_file {
        let ring = read_key_file(path).context("BOTGATE_MASTER_KEY_FILE")?;
        return Ok((ring, KeySource::File(path.clone()), false));
    }
    let path = master_key_path(settings);
    if path.exists() {
        let ring = read_key_file(&path)?;
        return Ok((ring, KeySource::File(path), false));
    }
    let key = MasterKey::generate();
    write_key_file(&path, &[&key])?;
    Ok((KeyRing::new(key, []), KeySource::File(path), true))
}

pub fn vault(settings: &Settings) -> anyhow::Result<Vault> {
    let (ring, source, generated) = load_keys(settings)?;
    if generated {
        tracing::warn!(
            path = %master_key_path(settings).display(),
            "generated a new master key; fine for a laptop, but in production set \
             BOTGATE_MASTER_KEY or BOTGATE_MASTER_KEY_FILE, and back this key up: \
             without it the stored credentials cannot be read"
        );
    }
    Ok(Vault::new(ring, source))
}

/// The admin token's hash, and its plaintext when it was just generated.
pub fn admin_token(settings: &Settings) -> anyhow::Result<(String, Option<SecretString>)> {
    if let Some(token) = &settings.admin_token {
        return Ok((hash_token(token.expose_secret()), None));
    }
    let path = admin_token_path(settings);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let hash = text.trim();
        if !hash.starts_with("sha256:") || hash.len() != 7 + 64 {
            anyhow::bail!(
                "{} does not hold an admin token hash; delete it to generate a new token",
                path.display()
            );
        }
        return Ok((hash.to_owned(), None));
    }
    let token = generate_token(ADMIN_TOKEN_PREFIX);
    let hash = hash_token(token.expose_secret());
    write_private_file(&path, format!("{hash}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((hash, Some(token)))
}
