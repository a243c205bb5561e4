//! The declared side of the PostgreSQL block: a contract's schema objects as tables (or
//! views) with columns, types from the allow-list, and keys.

use meshplane_spec::model::odcs::{Property, SchemaObject};

use super::identifier;

/// One declared column.
pub(super) struct Column {
    pub(super) name: String,
    /// The type as PostgreSQL's `format_type` writes it (from the allow-list only).
    pub(super) sql_type: String,
    pub(super) not_null: bool,
    pub(super) unique: bool,
    pub(super) comment: Option<String>,
}

/// One declared table, or view over `source` (`schema.table`).
pub(super) struct Object {
    pub(super) name: String,
    pub(super) source: Option<(String, String)>,
    pub(super) columns: Vec<Column>,
    pub(super) primary_key: Vec<String>,
    pub(super) comment: Option<String>,
}

impl Object {
    pub(super) fn of(object: &SchemaObject) -> Result<Object, String> {
        let (name, source) = match object.physical_name.as_deref().and_then(|p| p.split_once('.')) {
            Some((schema, table)) => (object.name.clone(), Some((schema.to_string(), table.to_string()))),
            None => (object.physical_name.clone().unwrap_or_else(|| object.name.clone()), None),
        };
        identifier(&name)?;
        let mut keyed: Vec<(i64, String)> = Vec::new();
        let mut columns = Vec::new();
        for p in object.properties() {
            let column = p.physical_name.clone().unwrap_or_else(|| p.name.clone());
            identifier(&column)?;
            let primary = p.primary_key == Some(true);
            if primary {
                keyed.push((p.primary_key_position.unwrap_or(i64::MAX), column.clone()));
            }
            columns.push(Column {
                sql_type: sql_type(p).map_err(|e| format!("{}.{}: {e}", object.name, p.name))?,
                not_null: primary || p.required == Some(true),
                unique: p.unique == Some(true) && !primary,
                comment: p.description.clone(),
                name: column,
            });
        }
        keyed.sort();
        Ok(Object {
            name,
            source,
            columns,
            primary_key: keyed.into_iter().map(|(_, c)| c).collect(),
            comment: object.description.clone(),
        })
    }
}

/// The PostgreSQL types meshplane creates from a `physicalType`, by spelling; each maps to
/// how `format_type` writes it. A length or precision in parentheses is kept.
pub(super) const PHYSICAL: &[(&str, &str)] = &[
    ("smallint", "smallint"),
    ("int2", "smallint"),
    ("integer", "integer"),
    ("int", "integer"),
    ("int4", "integer"),
    ("bigint", "bigint"),
    ("int8", "bigint"),
    ("real", "real"),
    ("float4", "real"),
    ("double precision", "double precision"),
    ("float8", "double precision"),
    ("numeric", "numeric"),
    ("decimal", "numeric"),
    ("boolean", "boolean"),
    ("bool", "boolean"),
    ("text", "text"),
    ("varchar", "character varying"),
    ("character varying", "character varying"),
    ("char", "character"),
    ("character", "character"),
    ("date", "date"),
    ("time", "time without time zone"),
    ("timestamp", "timestamp without time zone"),
    ("timestamp without time zone", "timestamp without time zone"),
    ("timestamptz", "timestamp with time zone"),
    ("timestamp with time zone", "timestamp with time zone"),
    ("uuid", "uuid"),
    ("json", "json"),
    ("jsonb", "jsonb"),
    ("bytea", "bytea"),
];

/// The column type of a property, as `format_type` writes it.
pub(super) fn sql_type(p: &Property) -> Result<String, String> {
    if let Some(physical) = &p.physical_type {
        let text = physical.trim().to_ascii_lowercase().split_whitespace().collect::<Vec<_>>().join(" ");
        let (base, args) = match text.split_once('(') {
            Some((base, rest)) => (base.trim(), Some(rest.strip_suffix(')').unwrap_or("x"))),
            None => (text.as_str(), None),
        };
        let allowed: Vec<&str> = PHYSICAL.iter().map(|(spelling, _)| *spelling).collect();
        let unknown =
            || format!("physicalType `{physical}` is not one meshplane creates in PostgreSQL ({})", allowed.join(", "));
        let canonical = PHYSICAL.iter().find(|(spelling, _)| *spelling == base).map(|(_, c)| *c).ok_or_else(unknown)?;
        return match args {
            None => Ok(canonical.to_string()),
            Some(args) => {
                let numbers: Vec<u32> = args
                    .split(',')
                    .map(|a| a.trim().parse::<u32>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| unknown())?;
                match (canonical, numbers.as_slice()) {
                    ("numeric", [p]) => Ok(format!("numeric({p},0)")),
                    ("numeric", [p, s]) => Ok(format!("numeric({p},{s})")),
                    ("character varying" | "character", [n]) => Ok(format!("{canonical}({n})")),
                    _ => Err(unknown()),
                }
            }
        };
    }
    Ok(match p.logical_type.as_deref().unwrap_or("string") {
        "integer" => "bigint",
        "number" => "numeric",
        "boolean" => "boolean",
        "date" => "date",
        "timestamp" => "timestamp with time zone",
        "time" => "time without time zone",
        "object" | "array" => "jsonb",
        _ => "text",
    }
    .to_string())
}
