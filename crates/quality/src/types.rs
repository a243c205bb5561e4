//! Whether a column's actual type fits what the contract declares.
//!
//! `logicalType` is compared by family (an int32 column is an `integer`, a decimal a
//! `number`). `physicalType`, when given, must name the actual type; it is read through an
//! allow-list of type names per store, and a name outside it is reported, never guessed.
//! Text formats (CSV, NDJSON) carry no types: their columns are inferred, so a declared string
//! accepts any inferred type, and a declared date or timestamp accepts text that parses.

use datafusion::arrow::datatypes::{DataType, TimeUnit};

/// The verdict of a type check: compatible or not, and the actual type as the store names it.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeFit {
    pub fits: bool,
    pub actual: String,
    pub reason: Option<String>,
}

/// The logical type families of ODCS.
fn arrow_family(t: &DataType) -> &'static str {
    use DataType::*;
    match t {
        Utf8 | LargeUtf8 | Utf8View => "string",
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => "integer",
        Float16 | Float32 | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => "number",
        Boolean => "boolean",
        Date32 | Date64 => "date",
        Timestamp(..) => "timestamp",
        Time32(_) | Time64(_) => "time",
        List(_) | LargeList(_) | FixedSizeList(..) | ListView(_) | LargeListView(_) => "array",
        Struct(_) | Map(..) => "object",
        Dictionary(_, value) => arrow_family(value),
        _ => "other",
    }
}

/// Whether an Arrow column of type `actual` fits `logical`/`physical`. `inferred` is true for
/// text formats, whose types were guessed from the values.
pub fn arrow_fit(actual: &DataType, logical: Option<&str>, physical: Option<&str>, inferred: bool) -> TypeFit {
    let family = arrow_family(actual);
    let name = actual.to_string();
    let fail = |reason: String| TypeFit { fits: false, actual: name.clone(), reason: Some(reason) };
    if let Some(physical) = physical.filter(|_| !inferred) {
        return match arrow_physical(physical) {
            Some(expected) if expected(actual) => TypeFit { fits: true, actual: name.clone(), reason: None },
            Some(_) => fail(format!("physicalType {physical} expected, the column is {name}")),
            None => fail(format!("physicalType `{physical}` is not a type meshplane knows for files")),
        };
    }
    let Some(logical) = logical else { return TypeFit { fits: true, actual: name, reason: None } };
    let fits = match (logical, family) {
        (l, f) if l == f => true,
        ("number", "integer") => true,
        ("integer", "number") => matches!(actual, DataType::Decimal128(_, 0) | DataType::Decimal256(_, 0)),
        ("timestamp", "date") | ("date", "timestamp") => inferred,
        ("string", _) => inferred,
        ("date" | "timestamp" | "time", "string") => inferred,
        _ => false,
    };
    if fits {
        TypeFit { fits, actual: name, reason: None }
    } else {
        fail(format!("logicalType {logical} expected, the column is {name} ({family})"))
    }
}

type Matcher = fn(&DataType) -> bool;

/// A test of an Arrow type.
type TypeTest = Box<dyn Fn(&DataType) -> bool>;

/// The allow-list of physical type names for files, matched against Arrow types.
fn arrow_physical(physical: &str) -> Option<TypeTest> {
    use DataType::*;
    let p = physical.trim().to_ascii_lowercase();
    if let Some(args) =
        p.strip_prefix("decimal(").or_else(|| p.strip_prefix("numeric(")).and_then(|r| r.strip_suffix(')'))
    {
        let (precision, scale) = args.split_once(',').unwrap_or((args, "0"));
        let (precision, scale): (u8, i8) = (precision.trim().parse().ok()?, scale.trim().parse().ok()?);
        return Some(Box::new(move |t| match t {
            Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) | Decimal256(p, s) => *p == precision && *s == scale,
            _ => false,
        }));
    }
    let m: Matcher = match p.as_str() {
        "string" | "varchar" | "text" | "utf8" | "char" => |t| matches!(t, Utf8 | LargeUtf8 | Utf8View),
        "tinyint" | "int8" | "byte" => |t| matches!(t, Int8),
        "smallint" | "int16" | "short" => |t| matches!(t, Int16),
        "int" | "integer" | "int32" => |t| matches!(t, Int32),
        "bigint" | "int64" | "long" => |t| matches!(t, Int64),
        "float" | "float32" | "real" => |t| matches!(t, Float32),
        "double" | "float64" | "double precision" => |t| matches!(t, Float64),
        "decimal" | "numeric" => |t| matches!(t, Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..)),
        "boolean" | "bool" => |t| matches!(t, Boolean),
        "date" => |t| matches!(t, Date32 | Date64),
        "timestamp" | "timestamp without time zone" | "timestamp_ntz" => |t| matches!(t, Timestamp(_, None)),
        "timestamptz" | "timestamp with time zone" | "timestamp_ltz" => |t| matches!(t, Timestamp(_, Some(_))),
        "time" => |t| matches!(t, Time32(_) | Time64(_)),
        _ => return None,
    };
    Some(Box::new(m))
}

/// Microseconds per unit of an Arrow timestamp.
pub fn micros_per(unit: &TimeUnit) -> (i64, i64) {
    match unit {
        TimeUnit::Second => (1_000_000, 1),
        TimeUnit::Millisecond => (1_000, 1),
        TimeUnit::Microsecond => (1, 1),
        TimeUnit::Nanosecond => (1, 1_000),
    }
}

/// The ODCS family of a PostgreSQL type, by its `format_type` name.
fn postgres_family(t: &str) -> &'static str {
    let base = t.split('(').next().unwrap_or(t).trim();
    if base.ends_with("[]") {
        return "array";
    }
    match base {
        "text" | "character varying" | "character" | "varchar" | "char" | "name" | "citext" | "uuid" => "string",
        "smallint" | "integer" | "bigint" => "integer",
        "numeric" | "real" | "double precision" | "decimal" => "number",
        "boolean" => "boolean",
        "date" => "date",
        "timestamp without time zone" | "timestamp with time zone" => "timestamp",
        "time without time zone" | "time with time zone" => "time",
        "json" | "jsonb" => "object",
        _ => "other",
    }
}

/// Canonical PostgreSQL spellings of the physical type names a contract may use.
fn postgres_alias(t: &str) -> String {
    let t = t.trim().to_ascii_lowercase();
    let (base, args) = match t.split_once('(') {
        Some((b, a)) => (b.trim().to_string(), format!("({}", a.replace(' ', ""))),
        None => (t.clone(), String::new()),
    };
    let base = match base.as_str() {
        "int" | "int4" | "integer" => "integer",
        "int2" | "smallint" => "smallint",
        "int8" | "bigint" => "bigint",
        "float4" | "real" => "real",
        "float8" | "double precision" | "double" => "double precision",
        "decimal" | "numeric" => "numeric",
        "bool" | "boolean" => "boolean",
        "varchar" | "character varying" => "character varying",
        "char" | "character" | "bpchar" => "character",
        "timestamp" | "timestamp without time zone" => "timestamp without time zone",
        "timestamptz" | "timestamp with time zone" => "timestamp with time zone",
        "time" | "time without time zone" => "time without time zone",
        "timetz" | "time with time zone" => "time with time zone",
        other => other,
    }
    .to_string();
    format!("{base}{args}")
}

/// Whether a PostgreSQL column of `actual` (as `format_type` prints it) fits the contract.
pub fn postgres_fit(actual: &str, logical: Option<&str>, physical: Option<&str>) -> TypeFit {
    let family = postgres_family(actual);
    let fail = |reason: String| TypeFit { fits: false, actual: actual.to_string(), reason: Some(reason) };
    if let Some(physical) = physical {
        let (want, have) = (postgres_alias(physical), postgres_alias(actual));
        // `numeric` without arguments accepts any precision; `varchar` any length.
        let fits = want == have || (!want.contains('(') && have.split('(').next() == Some(want.as_str()));
        return if fits {
            TypeFit { fits, actual: actual.to_string(), reason: None }
        } else {
            fail(format!("physicalType {physical} expected, the column is {actual}"))
        };
    }
    let Some(logical) = logical else { return TypeFit { fits: true, actual: actual.to_string(), reason: None } };
    let fits = logical == family || (logical == "number" && family == "integer");
    if fits {
        TypeFit { fits, actual: actual.to_string(), reason: None }
    } else {
        fail(format!("logicalType {logical} expected, the column is {actual} ({family})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_families() {
        assert!(arrow_fit(&DataType::Int32, Some("integer"), None, false).fits);
        assert!(arrow_fit(&DataType::Int32, Some("number"), None, false).fits);
        assert!(!arrow_fit(&DataType::Utf8View, Some("integer"), None, false).fits);
        assert!(arrow_fit(&DataType::Int64, Some("string"), None, true).fits, "CSV digits are valid strings");
        assert!(!arrow_fit(&DataType::Int64, Some("string"), None, false).fits);
        assert!(arrow_fit(&DataType::Decimal128(12, 2), None, Some("decimal(12, 2)"), false).fits);
        assert!(!arrow_fit(&DataType::Decimal128(12, 3), None, Some("decimal(12,2)"), false).fits);
        let unknown = arrow_fit(&DataType::Int64, None, Some("hugeint"), false);
        assert!(!unknown.fits && unknown.reason.unwrap().contains("hugeint"));
    }

    #[test]
    fn postgres_names() {
        assert!(postgres_fit("integer", None, Some("int4")).fits);
        assert!(postgres_fit("numeric(12,2)", None, Some("NUMERIC(12, 2)")).fits);
        assert!(postgres_fit("numeric(12,2)", None, Some("numeric")).fits);
        assert!(!postgres_fit("numeric(12,2)", None, Some("numeric(10,2)")).fits);
        assert!(postgres_fit("timestamp with time zone", Some("timestamp"), None).fits);
        assert!(!postgres_fit("text", Some("integer"), None).fits);
    }
}
