//! SQL building and running shared by every table: statement texts that
//! recur (chunks and lists padded to powers of two, so that each
//! connection's prepared statements are reused), and the one way to run a
//! query and decode its rows ([`Store::fetch_optional`],
//! [`Store::fetch_all`]).

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::Row;

use super::error::{classify, StoreResult};
use super::{Backend, Store};
use crate::domain::ids::{ConnectionId, PublicId, TenantId};

/// A query with its parameters bound, ready to run.
pub(crate) type Query<'q> = sqlx::query::Query<'q, sqlx::Any, AnyArguments<'q>>;

/// A record read from a row (declared by [`record!`], or by hand where a
/// column needs more than `try_get`).
pub trait FromRow: Sized {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error>;
}

impl Store {
    /// Runs `query` on the pool for at most one row and decodes it.
    pub(crate) async fn fetch_optional<T: FromRow>(
        &self,
        query: Query<'_>,
    ) -> StoreResult<Option<T>> {
        let row = query.fetch_optional(&self.pool).await?;
        decode_one(row.as_ref())
    }

    /// Runs a `SELECT COUNT(*) AS n …` on the pool: the count.
    pub(crate) async fn count(&self, query: Query<'_>) -> StoreResult<i64> {
        let row = query.fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }

    /// Runs `query` on the pool for at most one row: its first column, an
    /// integer (a key, a time), or `None` without a row.
    pub(crate) async fn fetch_i64(&self, query: Query<'_>) -> StoreResult<Option<i64>> {
        let row = query.fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?)
    }

    /// Runs `query` on the pool: every row's first column, an integer (the
    /// `seq`s of rows a claim may take).
    pub(crate) async fn fetch_i64s(&self, query: Query<'_>) -> StoreResult<Vec<i64>> {
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?)
    }

    /// Runs `query` on the pool and decodes every row.
    pub(crate) async fn fetch_all<T: FromRow>(&self, query: Query<'_>) -> StoreResult<Vec<T>> {
        let rows = query.fetch_all(&self.pool).await?;
        decode_all(&rows)
    }
}

/// A record read from one table: the struct, `$columns` (its fields'
/// names in order, for a `SELECT`) and `from_row`, from one list of fields,
/// so that the columns read and the fields filled cannot drift apart.
macro_rules! record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident, columns $columns:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        pub(crate) const $columns: &str =
            $crate::store::sql::without_last_comma(concat!($(stringify!($field), ", "),*));

        impl $crate::store::sql::FromRow for $name {
            fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                Ok(Self {
                    $( $field: row.try_get(stringify!($field))?, )*
                })
            }
        }
    };
}
pub(crate) use record;

/// `"a, b, "` without its last `", "`: a column list of [`record!`].
pub(crate) const fn without_last_comma(list: &'static str) -> &'static str {
    let (head, _) = list.as_bytes().split_at(list.len() - 2);
    match std::str::from_utf8(head) {
        Ok(head) => head,
        Err(_) => panic!("a column list is ASCII"),
    }
}

/// Ids read back from the database are ids the store wrote: they decode
/// from text, without the checks an id from outside gets.
macro_rules! decode_from_text {
    ($($id:ty),*) => {$(
        impl sqlx::Type<sqlx::Any> for $id {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <String as sqlx::Type<sqlx::Any>>::type_info()
            }

            fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Any>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Any> for $id {
            fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                <String as sqlx::Decode<'r, sqlx::Any>>::decode(value).map(<$id>::from_trusted)
            }
        }
    )*};
}
decode_from_text!(ConnectionId, PublicId, TenantId);

/// The most rows one multi-row statement writes.
const MAX_CHUNK: usize = 64;

/// Rows of a multi-row statement in chunks whose sizes are powers of two, at
/// most [`MAX_CHUNK`], in order (13 rows: 8, 4, 1). Each size is one
/// statement text, so the prepared statements each connection keeps (100 at
/// most) recur instead of churning with every batch size; and SQLite's cost
/// per statement, which grows with the square of its parameters (it finds
/// each by scanning their names), stays bounded.
pub(crate) fn pow2_chunks<T>(rows: &[T]) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let size = MAX_CHUNK.min(1 << rest.len().ilog2());
        let (chunk, tail) = rest.split_at(size);
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

impl Store {
    /// Rows of a multi-row statement in chunks of at most [`MAX_CHUNK`], in
    /// order. On PostgreSQL, a chunk of each size is one round trip and each
    /// text a prepared statement its connection keeps (room for 500). On
    /// SQLite, in this process, a statement is no round trip, but the
    /// connection keeps 100 at most: power-of-two chunks ([`pow2_chunks`]).
    pub(crate) fn chunks<'r, T>(&self, rows: &'r [T]) -> Vec<&'r [T]> {
        match self.backend {
            Backend::Postgres => rows.chunks(MAX_CHUNK).collect(),
            Backend::Sqlite => pow2_chunks(rows),
        }
    }
}

/// `values` padded to the next power of two by repeating the last, for an
/// `IN (…)` list whose statement text should recur (see [`pow2_chunks`]).
pub(crate) fn padded<T: Clone>(values: &[T]) -> Vec<T> {
    let n = values.len().max(1).next_power_of_two();
    match values.last() {
        Some(last) => values
            .iter()
            .cloned()
            .chain(std::iter::repeat(last.clone()))
            .take(n)
            .collect(),
        None => Vec::new(),
    }
}

/// The `VALUES` rows of a multi-row insert: `shape` is one row with `{1}` …
/// `{9}` for its parameters, numbered on as `$first`, `$first + 1` … across
/// `rows` rows of `width` parameters each.
pub(crate) fn values_rows(first: usize, rows: usize, width: usize, shape: &str) -> String {
    (0..rows)
        .map(|k| {
            (1..=width).fold(shape.to_owned(), |row, i| {
                row.replace(
                    &format!("{{{i}}}"),
                    &format!("${}", first - 1 + k * width + i),
                )
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Row numbers for `seq IN (…)`, as the parameters `$first`, `$first + 1`,
/// …: as many as the next power of two (the last number repeated), so that a
/// statement's text — and the prepared statement each connection keeps for
/// it — recurs from batch to batch, instead of being parsed and planned anew
/// for every batch with its numbers written in.
pub(crate) struct SeqParams {
    pub(crate) sql: String,
    values: Vec<i64>,
}

pub(crate) fn seq_params(seqs: &[i64], first: usize) -> SeqParams {
    let values = padded(seqs);
    let sql = placeholders(first, values.len());
    SeqParams { sql, values }
}

/// `n` parameters from `$first` on, as a list: `$4, $5, $6`.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|k| format!("${k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SeqParams {
    /// Binds the numbers (after the statement's other parameters).
    pub(crate) fn bind<'q>(self, query: Query<'q>) -> Query<'q> {
        self.values.into_iter().fold(query, |q, v| q.bind(v))
    }
}

/// Decodes an optional row, classifying a failure.
pub(crate) fn decode_one<T: FromRow>(row: Option<&AnyRow>) -> StoreResult<Option<T>> {
    row.map(T::from_row).transpose().map_err(classify)
}

/// Decodes every row, classifying the first failure.
pub(crate) fn decode_all<T: FromRow>(rows: &[AnyRow]) -> StoreResult<Vec<T>> {
    rows.iter()
        .map(T::from_row)
        .collect::<Result<_, _>>()
        .map_err(classify)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_record_lists_its_columns_in_order() {
        assert_eq!(super::without_last_comma("a, b, "), "a, b");
        assert_eq!(
            crate::store::tenants::TENANT_COLUMNS,
            "id, name, api_key_hash, engine_kind, engine_url, fallback_text, max_open_rows, \
             max_callbacks_per_second, status_url, created_at, updated_at"
        );
    }

    use super::{padded, placeholders, pow2_chunks, values_rows};

    #[test]
    fn rows_go_in_power_of_two_chunks_in_order() {
        let rows: Vec<usize> = (0..200).collect();
        let chunks = pow2_chunks(&rows);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [64, 64, 64, 8]);
        assert_eq!(chunks.concat(), rows, "every row once, in order");
        let sizes: Vec<usize> = pow2_chunks(&rows[..13]).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [8, 4, 1]);
        assert!(pow2_chunks::<usize>(&[]).is_empty());
    }

    #[test]
    fn lists_are_padded_with_their_last_value() {
        assert_eq!(padded(&[1, 2, 3]), [1, 2, 3, 3]);
        assert_eq!(padded(&[7]), [7]);
        assert_eq!(padded(&[1, 2, 3, 4]), [1, 2, 3, 4]);
        assert!(padded::<i64>(&[]).is_empty());
    }

    #[test]
    fn placeholders_number_from_first() {
        assert_eq!(placeholders(4, 3), "$4, $5, $6");
    }

    #[test]
    fn values_rows_number_parameters_from_first() {
        assert_eq!(
            values_rows(2, 2, 3, "({1}, {2}, {3}, {3})"),
            "($2, $3, $4, $4), ($5, $6, $7, $7)"
        );
    }
}
