//! The store's error: what a caller can act on (a conflict, a busy
//! database), everything else opaque; and the classification of sqlx's
//! errors into it.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; the string names what already exists.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database is overloaded or locked; the caller may retry soon.
    #[error("the database is busy")]
    Busy,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Every sqlx error the store meets is classified, so `?` on a query is
/// enough.
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        classify(error)
    }
}

pub(crate) fn classify(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::PoolTimedOut => StoreError::Busy,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLite BUSY/LOCKED (5, 6 and extended codes), Postgres lock timeouts.
            let busy = matches!(
                code.as_ref(),
                "5" | "6" | "261" | "262" | "517" | "55P03" | "57014"
            );
            if busy {
                StoreError::Busy
            } else {
                StoreError::Other(anyhow::Error::new(error).context("database error"))
            }
        }
        _ => StoreError::Other(anyhow::Error::new(error).context("database error")),
    }
}

pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
