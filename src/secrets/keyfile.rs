//! The master-key list, as kept in `BOTGATE_MASTER_KEY` (comma separated) or a
//! key file (one key per line, `#` comments). The first key is the current
//! one, which seals; the others still open values sealed before a rotation.

use std::io::Write as _;
use std::path::Path;

use secrecy::ExposeSecret;

use super::{KeyParseError, KeyRing, MasterKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyListError {
    #[error("no master key in {0}")]
    Empty(String),
    #[error("key {index} in {source_name}: {error}")]
    Key {
        source_name: String,
        index: usize,
        error: KeyParseError,
    },
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: std::io::Error },
}

/// Parses a key list; `source_name` says where it came from, for errors.
pub fn parse_key_list(text: &str, source_name: &str) -> Result<KeyRing, KeyListError> {
    let mut keys = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .enumerate()
        .map(|(index, line)| {
            MasterKey::parse(line).map_err(|error| KeyListError::Key {
                source_name: source_name.to_owned(),
                index: index + 1,
                error,
            })
        });
    let current = keys
        .next()
        .ok_or_else(|| KeyListError::Empty(source_name.to_owned()))??;
    let older = keys.collect::<Result<Vec<_>, _>>()?;
    Ok(KeyRing::new(current, older))
}

pub fn read_key_file(path: &Path) -> Result<KeyRing, KeyListError> {
    let text = std::fs::read_to_string(path).map_err(|error| KeyListError::Read {
        path: path.display().to_string(),
        error,
    })?;
    parse_key_list(&text, &path.display().to_string())
}

/// Writes the keys (current first) atomically, readable by the owner only.
pub fn write_key_file(path: &Path, keys: &[&MasterKey]) -> Result<(), KeyListError> {
    let err = |error| KeyListError::Write {
        path: path.display().to_string(),
        error,
    };
    let mut text =
        String::from("# botgate master keys: the first seals, all open. Keep this file secret.\n");
    for key in keys {
        text.push_str(key.to_base64().expose_secret());
        text.push('\n');
    }
    let text = zeroize::Zeroizing::new(text);
    write_private_file(path, text.as_bytes()).map_err(err)
}

/// Writes a file atomically (temporary file + rename) with mode 0600.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_keeps_order_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        write_key_file(&path, &[&a, &b]).unwrap();
        let ring = read_key_file(&path).unwrap();
        assert_eq!(ring.key_ids().collect::<Vec<_>>(), [a.id(), b.id()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn env_list_and_errors_name_the_source() {
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        let list = format!(
            "{}, {}",
            a.to_base64().expose_secret(),
            b.to_base64().expose_secret()
        );
        let ring = parse_key_list(&list, "BOTGATE_MASTER_KEY").unwrap();
        assert_eq!(ring.current().id(), a.id());
        let err = parse_key_list("abc", "BOTGATE_MASTER_KEY")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("BOTGATE_MASTER_KEY") && err.contains("key 1"),
            "{err}"
        );
        assert!(matches!(
            parse_key_list(" # x\n", "f"),
            Err(KeyListError::Empty(_))
        ));
    }
}
