//! What an executor offers the runner: the columns of an object, one scan that measures a
//! list of measures, and a contract's SQL run read-only.
//!
//! Executors are compiled in (files, PostgreSQL) and used through generics; the trait is the
//! seam where a store plugs in its own way of measuring.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use datafusion::arrow::datatypes::DataType;

use crate::kernel::Measured;
use crate::plan::Measure;
use crate::types::{TypeFit, arrow_fit, postgres_fit};

/// A column's type as its store reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnKind {
    /// An Arrow type; `inferred` for text formats, whose types were guessed from the values.
    Arrow { data_type: DataType, inferred: bool },
    /// A PostgreSQL type as `format_type` prints it.
    Postgres(String),
}

impl ColumnKind {
    pub fn fit(&self, logical: Option<&str>, physical: Option<&str>) -> TypeFit {
        match self {
            ColumnKind::Arrow { data_type, inferred } => arrow_fit(data_type, logical, physical, *inferred),
            ColumnKind::Postgres(t) => postgres_fit(t, logical, physical),
        }
    }

    /// Whether the store holds the column as text although the contract may declare another
    /// type: the values are then parsed to measure the type check.
    pub fn is_inferred_text(&self) -> bool {
        matches!(
            self,
            ColumnKind::Arrow { data_type: DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, inferred: true }
        )
    }
}

/// What the runner asks of a scan besides the measures.
pub struct Ask<'a> {
    /// How many offending values to keep per check.
    pub samples: usize,
    /// The clock, for ages: microseconds since the epoch.
    pub now_micros: i64,
    /// Rows read so far, for progress output.
    pub progress: &'a Arc<AtomicU64>,
}

/// One scan of an object: its rows and one result per measure asked.
pub struct Scan {
    pub rows: u64,
    pub results: Vec<Result<Measured, String>>,
}

/// A store the checks run on.
pub trait Source {
    /// The object's columns, or `None` when it does not exist.
    fn columns(&mut self, table: &str) -> impl Future<Output = Result<Option<Vec<(String, ColumnKind)>>, String>>;

    /// Measures everything in one pass; a result per measure, in order.
    fn scan(&mut self, table: &str, measures: &[Measure], ask: &Ask<'_>) -> impl Future<Output = Result<Scan, String>>;

    /// Whether the scan of `table` measures a contract SQL rule (`query`, substituted) as a
    /// [`Measure::Sql`], instead of [`Source::sql`] running it on its own.
    fn scans_sql(&mut self, _table: &str, _query: &str) -> impl Future<Output = bool> {
        async { false }
    }

    /// Runs a contract's SQL read-only and returns the first column of its first row.
    fn sql(&mut self, query: &str) -> impl Future<Output = Result<f64, String>>;

    /// An identifier quoted for this store's SQL.
    fn quote(&self, identifier: &str) -> String;
}
