//! The embedded migrations of each backend. Both trees have the same file
//! names; a test checks this list against the directories.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::Backend;

/// (version, description, file name, SQL) of each migration, oldest first.
type Files = &'static [(i64, &'static str, &'static str, &'static str)];

/// Both trees from one list: the same versions, descriptions and file
/// names, each backend's SQL from its own directory.
macro_rules! trees {
    ($(($v:literal, $desc:literal, $file:literal)),* $(,)?) => {
        pub const POSTGRES: Files =
            &[$(($v, $desc, $file, include_str!(concat!("../../migrations/postgres/", $file)))),*];
        pub const SQLITE: Files =
            &[$(($v, $desc, $file, include_str!(concat!("../../migrations/sqlite/", $file)))),*];
    };
}

trees!(
    (1, "tenants connections", "0001_tenants_connections.sql"),
    (2, "tokens", "0002_tokens.sql"),
    (3, "inbox outbox", "0003_inbox_outbox.sql"),
    (4, "send api", "0004_send_api.sql"),
    (5, "console sessions", "0005_console_sessions.sql"),
    (6, "cache notify", "0006_cache_notify.sql"),
    (
        7,
        "open conversation index",
        "0007_open_conversation_index.sql"
    ),
    (
        8,
        "drop unused open indexes",
        "0008_drop_unused_open_indexes.sql"
    ),
    (9, "lean queue indexes", "0009_lean_queue_indexes.sql"),
    (10, "dedup by issued time", "0010_dedup_by_issued_time.sql"),
    (11, "channel details", "0011_channel_details.sql"),
    (12, "slack installations", "0012_slack_installations.sql"),
    (13, "user account tokens", "0013_user_account_tokens.sql"),
    (14, "console links", "0014_console_links.sql"),
    (15, "dedup issued millis", "0015_dedup_issued_millis.sql"),
    (
        16,
        "failed messages index",
        "0016_failed_messages_index.sql"
    ),
    (17, "tenant quotas", "0017_tenant_quotas.sql"),
);

/// The newest embedded migration's version.
pub fn latest(backend: Backend) -> i64 {
    let files = match backend {
        Backend::Postgres => POSTGRES,
        Backend::Sqlite => SQLITE,
    };
    files.iter().map(|f| f.0).max().unwrap_or(0)
}

pub fn migrator(backend: Backend) -> Migrator {
    let files = match backend {
        Backend::Postgres => POSTGRES,
        Backend::Sqlite => SQLITE,
    };
    let migrations = files
        .iter()
        .map(|(version, desc, _, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*desc),
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
        let names = |files: Files| files.iter().map(|f| f.2.to_owned()).collect::<Vec<_>>();
        assert_eq!(dir_files("postgres"), dir_files("sqlite"));
        assert_eq!(dir_files("postgres"), names(POSTGRES));
        assert_eq!(dir_files("sqlite"), names(SQLITE));
        for files in [POSTGRES, SQLITE] {
            for (i, (version, ..)) in files.iter().enumerate() {
                assert_eq!(*version, i as i64 + 1, "versions are consecutive");
            }
        }
    }
}
