//! A small table with known defects, written as Parquet, CSV, NDJSON and into PostgreSQL.
//!
//! 1,000 rows; row `i` has:
//! - `id` = i, except row 999 which repeats id 998 (one duplicated key over two rows);
//! - `code` = `C-<id:04>`, `bad` when i % 100 == 5 (10 rows), null when i % 250 == 7 (4 rows);
//! - `status` from a, b, c; `zzz` when i % 200 == 3 (5 rows);
//! - `amount` = i × 1.5 (decimal(10,2)); -1 when i % 100 == 50 (10 rows);
//! - `qty` = i % 10 + 1; 0 when i % 125 == 0 (8 rows);
//! - `email` = `u<i>@x.io`; `n/a` when i % 50 == 1 (20 rows); null when i % 333 == 2 (3 rows);
//! - `ts` = 2026-01-01T00:00:00Z minus i minutes (the newest is row 0).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::parquet::arrow::ArrowWriter;

pub const ROWS: usize = 1000;
/// 2026-01-01T00:00:00Z.
pub const NEWEST_MICROS: i64 = 1_767_225_600_000_000;

pub struct Row {
    pub id: i64,
    pub code: Option<String>,
    pub status: String,
    pub cents: i64,
    pub qty: i32,
    pub email: Option<String>,
    pub ts_micros: i64,
}

pub fn rows() -> Vec<Row> {
    (0..ROWS as i64)
        .map(|i| {
            let id = if i == 999 { 998 } else { i };
            Row {
                id,
                code: match i {
                    _ if i % 250 == 7 => None,
                    _ if i % 100 == 5 => Some("bad".into()),
                    _ => Some(format!("C-{id:04}")),
                },
                status: if i % 200 == 3 { "zzz".into() } else { ["a", "b", "c"][(i % 3) as usize].into() },
                cents: if i % 100 == 50 { -100 } else { i * 150 },
                qty: if i % 125 == 0 { 0 } else { (i % 10 + 1) as i32 },
                email: match i {
                    _ if i % 333 == 2 => None,
                    _ if i % 50 == 1 => Some("n/a".into()),
                    _ => Some(format!("u{i}@x.io")),
                },
                ts_micros: NEWEST_MICROS - i * 60_000_000,
            }
        })
        .collect()
}

fn iso(micros: i64) -> String {
    let secs = micros / 1_000_000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn amount(cents: i64) -> String {
    format!("{}{}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() / 100, cents.abs() % 100)
}

pub fn batch(rows: &[Row]) -> RecordBatch {
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.id)))),
        ("code", Arc::new(StringArray::from_iter(rows.iter().map(|r| r.code.clone())))),
        ("status", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.status.clone())))),
        (
            "amount",
            Arc::new(
                Decimal128Array::from_iter_values(rows.iter().map(|r| i128::from(r.cents)))
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ),
        ("qty", Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.qty)))),
        ("email", Arc::new(StringArray::from_iter(rows.iter().map(|r| r.email.clone())))),
        (
            "ts",
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.ts_micros)).with_timezone("UTC"),
            ),
        ),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

pub fn write_parquet(path: &Path, rows: &[Row]) {
    write_batch(path, &batch(rows));
}

/// One batch as a Parquet file (one row group up to a million rows).
pub fn write_batch(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

pub fn write_csv(path: &Path, rows: &[Row]) {
    let mut text = String::from("id,code,status,amount,qty,email,ts\n");
    for r in rows {
        let _ = writeln!(
            text,
            "{},{},{},{},{},{},{}",
            r.id,
            r.code.as_deref().unwrap_or(""),
            r.status,
            amount(r.cents),
            r.qty,
            r.email.as_deref().unwrap_or(""),
            iso(r.ts_micros)
        );
    }
    std::fs::write(path, text).unwrap();
}

pub fn write_ndjson(path: &Path, rows: &[Row]) {
    let mut text = String::new();
    for r in rows {
        let line = serde_json::json!({
            "id": r.id, "code": r.code, "status": r.status, "amount": r.cents as f64 / 100.0,
            "qty": r.qty, "email": r.email, "ts": iso(r.ts_micros),
        });
        let _ = writeln!(text, "{line}");
    }
    std::fs::write(path, text).unwrap();
}

/// The SQL that creates and fills `table` in PostgreSQL.
pub fn postgres_sql(table: &str, rows: &[Row]) -> String {
    let lit = |s: &Option<String>| s.as_ref().map_or("NULL".to_string(), |s| format!("'{}'", s.replace('\'', "''")));
    let mut sql = format!(
        "CREATE TABLE {table} (id bigint NOT NULL, code text, status text NOT NULL, amount numeric(10,2), \
         qty integer, email text, ts timestamptz NOT NULL);\nINSERT INTO {table} VALUES\n"
    );
    let values: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "({}, {}, '{}', {}, {}, {}, '{}')",
                r.id,
                lit(&r.code),
                r.status,
                amount(r.cents),
                r.qty,
                lit(&r.email),
                iso(r.ts_micros)
            )
        })
        .collect();
    sql.push_str(&values.join(",\n"));
    sql.push(';');
    sql
}

#[test]
fn iso_dates() {
    assert_eq!(iso(NEWEST_MICROS), "2026-01-01T00:00:00Z");
    assert_eq!(iso(NEWEST_MICROS - 60_000_000), "2025-12-31T23:59:00Z");
    assert_eq!(iso(0), "1970-01-01T00:00:00Z");
}
