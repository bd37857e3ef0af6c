//! The embedded migrations of each backend. Both trees have the same file
//! names; a test checks this list against the directories.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::Backend;

/// (file name, SQL) of each migration, oldest first. A file is named as
/// sqlx names them, `<version>_<description>.sql` (underscores for spaces):
/// its version and description come from its name.
type Files = &'static [(&'static str, &'static str)];

/// Both trees from one list of file names, each backend's SQL from its own
/// directory.
macro_rules! trees {
    ($($file:literal),* $(,)?) => {
        pub const POSTGRES: Files =
            &[$(($file, include_str!(concat!("../../migrations/postgres/", $file)))),*];
        pub const SQLITE: Files =
            &[$(($file, include_str!(concat!("../../migrations/sqlite/", $file)))),*];
    };
}

trees!(
    "0001_tenants_connections.sql",
    "0002_tokens.sql",
    "0003_inbox_outbox.sql",
    "0004_send_api.sql",
    "0005_console_sessions.sql",
    "0006_cache_notify.sql",
    "0007_open_conversation_index.sql",
    "0008_drop_unused_open_indexes.sql",
    "0009_lean_queue_indexes.sql",
    "0010_dedup_by_issued_time.sql",
    "0011_channel_details.sql",
    "0012_slack_installations.sql",
    "0013_user_account_tokens.sql",
    "0014_console_links.sql",
    "0015_dedup_issued_millis.sql",
    "0016_failed_messages_index.sql",
    "0017_tenant_quotas.sql",
    "0018_tenant_key_rotation.sql",
    "0019_auth_networks.sql",
    "0020_activity.sql",
    "0021_status_hook.sql",
);

/// A file name's version and description (`0010_dedup_by_issued_time.sql`:
/// 10, "dedup by issued time"); a name of another shape is a build mistake
/// the tests catch, read as version 0.
fn named(file: &str) -> (i64, String) {
    let stem = file.strip_suffix(".sql").unwrap_or(file);
    let (version, description) = stem.split_once('_').unwrap_or((stem, ""));
    (version.parse().unwrap_or(0), description.replace('_', " "))
}

fn files(backend: Backend) -> Files {
    match backend {
        Backend::Postgres => POSTGRES,
        Backend::Sqlite => SQLITE,
    }
}

/// The newest embedded migration's version.
pub fn latest(backend: Backend) -> i64 {
    let files = files(backend);
    files
        .iter()
        .map(|(file, _)| named(file).0)
        .max()
        .unwrap_or(0)
}

pub fn migrator(backend: Backend) -> Migrator {
    let migrations = files(backend)
        .iter()
        .map(|(file, sql)| {
            let (version, description) = named(file);
            Migration::new(
                version,
                Cow::Owned(description),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_files(dir: &str) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        let mut names: Vec<String> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn both_trees_match_each_other_and_the_embedded_lists() {
        let names = |files: Files| files.iter().map(|f| f.0.to_owned()).collect::<Vec<_>>();
        assert_eq!(dir_files("postgres"), dir_files("sqlite"));
        assert_eq!(dir_files("postgres"), names(POSTGRES));
        assert_eq!(dir_files("sqlite"), names(SQLITE));
        for files in [POSTGRES, SQLITE] {
            for (i, (file, _)) in files.iter().enumerate() {
                let (version, description) = named(file);
                assert_eq!(version, i as i64 + 1, "{file}: versions are consecutive");
                assert!(!description.is_empty(), "{file} names what it does");
            }
        }
        assert_eq!(latest(Backend::Sqlite), SQLITE.len() as i64);
    }

    #[test]
    fn a_file_name_gives_the_version_and_description() {
        assert_eq!(
            named("0010_dedup_by_issued_time.sql"),
            (10, "dedup by issued time".to_owned())
        );
        assert_eq!(named("0002_tokens.sql"), (2, "tokens".to_owned()));
    }
}
