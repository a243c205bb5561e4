//! A contract's SQL for PostgreSQL, read before it is sent: one query (a `SELECT`, with its
//! common table expressions and subqueries), over the contract's own tables only, calling
//! only functions of an allow-list of aggregates and scalar functions, casting only to plain
//! types. Everything else — another schema's table, a catalog, a table function, a function
//! such as `set_config`, `query_to_xml`, `pg_read_file`, `pg_sleep` or `pg_advisory_lock`, a
//! locking clause — is refused with what it is, before any connection is used.
//!
//! This is the second line, not the boundary: the boundary is the login the query runs as,
//! which may read the port's relations and nothing else (see the PostgreSQL block), so the
//! sandbox holds even against SQL this reader would wrongly let through.
//!
//! ```
//! use meshplane_quality::guard::check;
//!
//! let tables = vec!["orders".to_string()];
//! assert!(check("SELECT count(*) FROM orders WHERE amount < 0", &tables, "sales_v1").is_ok());
//! let refused = check("SELECT count(*) FROM finance.ledger", &tables, "sales_v1").unwrap_err();
//! assert!(refused.contains("finance.ledger"), "{refused}");
//! ```

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{DataType, Expr, Ident, ObjectName, Query, SetExpr, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// The functions a contract's SQL may call (lower case, unqualified).
const FUNCTIONS: &[&str] = &[
    // aggregates
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "bool_and",
    "bool_or",
    "every",
    "string_agg",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "corr",
    "covar_pop",
    "covar_samp",
    // window functions
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    // numbers
    "abs",
    "ceil",
    "ceiling",
    "floor",
    "round",
    "trunc",
    "sign",
    "sqrt",
    "cbrt",
    "power",
    "pow",
    "mod",
    "exp",
    "ln",
    "log",
    "log10",
    "greatest",
    "least",
    "width_bucket",
    // conditionals
    "coalesce",
    "nullif",
    // text
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "bit_length",
    "lower",
    "upper",
    "initcap",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "substring",
    "substr",
    "position",
    "strpos",
    "replace",
    "concat",
    "concat_ws",
    "left",
    "right",
    "lpad",
    "rpad",
    "split_part",
    "regexp_replace",
    "regexp_like",
    "regexp_count",
    "starts_with",
    "reverse",
    "md5",
    "translate",
    "ascii",
    "chr",
    // dates and times
    "now",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "date_trunc",
    "date_part",
    "date_bin",
    "age",
    "make_date",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_number",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "isfinite",
    // arrays and JSON values
    "cardinality",
    "array_length",
    "json_array_length",
    "jsonb_array_length",
    "json_typeof",
    "jsonb_typeof",
];

/// Whether a cast may go to `t`: plain types only (no `regclass` and the like, no domains).
fn plain_type(t: &DataType) -> bool {
    use DataType::*;
    matches!(
        t,
        Int(_)
            | Integer(_)
            | BigInt(_)
            | SmallInt(_)
            | Int2(_)
            | Int4(_)
            | Int8(_)
            | TinyInt(_)
            | Numeric(_)
            | Decimal(_)
            | Dec(_)
            | Real
            | Double(_)
            | DoublePrecision
            | Float(_)
            | Float4
            | Float8
            | Boolean
            | Bool
            | Text
            | Varchar(_)
            | CharacterVarying(_)
            | Char(_)
            | Character(_)
            | String(_)
            | Date
            | Time(..)
            | Timestamp(..)
            | Interval { .. }
            | Uuid
            | JSON
            | JSONB
    )
}

/// Refuses SQL that is not one query over `tables` (unqualified, or qualified with
/// `schema`) calling only allowed functions.
pub fn check(sql: &str, tables: &[String], schema: &str) -> Result<(), String> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| format!("meshplane cannot read this SQL, so it does not run it: {e}"))?;
    let [Statement::Query(query)] = statements.as_slice() else {
        return Err("a contract's SQL is one query (SELECT ...), nothing else".into());
    };
    let mut reader = Reader { tables, schema, ctes: BTreeSet::new() };
    reader.ctes_of(query);
    match query.visit(&mut reader) {
        ControlFlow::Break(refused) => Err(refused),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Reader<'a> {
    tables: &'a [String],
    schema: &'a str,
    /// The names of common table expressions anywhere in the query.
    ctes: BTreeSet<String>,
}

/// An identifier as PostgreSQL resolves it: unquoted names fold to lower case.
fn folded(ident: &Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() }
}

fn parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0.iter().map(|p| p.as_ident().map(folded)).collect()
}

impl Reader<'_> {
    fn ctes_of(&mut self, query: &Query) {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(folded(&cte.alias.name));
                self.ctes_of(&cte.query);
            }
        }
        if let SetExpr::Query(inner) = query.body.as_ref() {
            self.ctes_of(inner);
        }
    }

    fn relation_allowed(&self, name: &ObjectName) -> bool {
        match parts(name).as_deref() {
            Some([cte]) if self.ctes.contains(cte) => true,
            // Unqualified, a `pg_` name is the catalog's (it is searched first).
            Some([table]) => self.tables.contains(table) && !table.starts_with("pg_"),
            Some([schema, table]) => schema == self.schema && self.tables.contains(table),
            _ => false,
        }
    }
}

/// `name` in `schema`.
fn qualified(schema: &str, name: &ObjectName) -> ObjectName {
    let mut parts = vec![sqlparser::ast::ObjectNamePart::Identifier(Ident::with_quote('"', schema))];
    parts.extend(name.0.iter().cloned());
    ObjectName(parts)
}

/// Whether a query's body is, or combines, `TABLE name` (whose name no visitor sees).
fn names_a_table(body: &SetExpr) -> bool {
    match body {
        SetExpr::Table(_) => true,
        SetExpr::SetOperation { left, right, .. } => names_a_table(left) || names_a_table(right),
        _ => false,
    }
}

impl Visitor for Reader<'_> {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        if !query.locks.is_empty() {
            return ControlFlow::Break("a contract's SQL reads: it takes no locks (FOR UPDATE, FOR SHARE)".into());
        }
        if let SetExpr::Select(select) = query.body.as_ref()
            && select.into.is_some()
        {
            return ControlFlow::Break("a contract's SQL reads: SELECT ... INTO writes a table".into());
        }
        if names_a_table(&query.body) {
            return ControlFlow::Break("write `SELECT * FROM name` rather than `TABLE name`".into());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<String> {
        match factor {
            TableFactor::Table { name, args: None, .. } if self.relation_allowed(name) => ControlFlow::Continue(()),
            TableFactor::Table { name, args: None, .. }
                if name.0.len() == 1 && self.relation_allowed(&qualified(self.schema, name)) =>
            {
                ControlFlow::Break(format!(
                    "write `{}.{name}`: unqualified, a `pg_` name is the catalog's, not the contract's table",
                    self.schema
                ))
            }
            TableFactor::Table { name, .. } => ControlFlow::Break(format!(
                "`{name}` is not one of the contract's own tables ({}); a contract's SQL reads those only",
                self.tables.join(", ")
            )),
            TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => ControlFlow::Continue(()),
            other => ControlFlow::Break(format!("`{other}` is not a table of the contract; only those are read")),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
        match expr {
            Expr::Function(function) => {
                let name = parts(&function.name).unwrap_or_default();
                match name.as_slice() {
                    [one] if FUNCTIONS.contains(&one.as_str()) => ControlFlow::Continue(()),
                    _ => ControlFlow::Break(format!(
                        "function `{}` is not one a contract's SQL may call (the allowed functions are aggregates, \
                         window functions and the usual number, text and date functions; see docs/test.md)",
                        function.name
                    )),
                }
            }
            Expr::Cast { data_type, .. } | Expr::TypedString(sqlparser::ast::TypedString { data_type, .. })
                if !plain_type(data_type) =>
            {
                ControlFlow::Break(format!("a contract's SQL casts to plain types only, not `{data_type}`"))
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    fn tables() -> Vec<String> {
        vec!["orders".into(), "Line Items".into(), "pg_roles".into()]
    }

    #[test]
    fn queries_over_the_contracts_tables_with_usual_functions_pass() {
        for sql in [
            "SELECT count(*) FROM orders WHERE amount < 0",
            "SELECT COUNT(DISTINCT customer_id) FROM \"orders\"",
            "SELECT count(*) FROM \"sales_v1\".\"orders\" o JOIN \"Line Items\" l ON l.order_id = o.id",
            "SELECT count(*) FROM sales_v1.pg_roles",
            "WITH late AS (SELECT * FROM orders WHERE placed_at < now() - interval '2 days') SELECT count(*) FROM late",
            "SELECT max(extract(epoch FROM placed_at)) FROM orders",
            "SELECT count(*) FROM orders WHERE lower(trim(email)) NOT LIKE '%@%' AND amount::numeric(10,2) > 0",
            "SELECT avg(amount) FILTER (WHERE status = 'paid') FROM orders",
            "SELECT count(*) FROM (SELECT id, row_number() OVER (PARTITION BY id) AS n FROM orders) d WHERE n > 1",
            "SELECT CASE WHEN count(*) > 0 THEN 1 ELSE 0 END FROM orders WHERE date_trunc('day', placed_at) = current_date",
        ] {
            assert_eq!(check(sql, &tables(), "sales_v1"), Ok(()), "{sql}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_what_it_is() {
        for (sql, what) in [
            ("SELECT count(*) FROM finance.ledger", "`finance.ledger` is not one of the contract's own tables"),
            ("SELECT count(*) FROM pg_authid", "`pg_authid` is not one of the contract's own tables"),
            ("SELECT count(*) FROM pg_catalog.pg_roles", "is not one of the contract's own tables"),
            ("SELECT count(*) FROM (TABLE pg_catalog.pg_roles) r", "rather than `TABLE name`"),
            ("SELECT 1 FROM orders UNION ALL TABLE finance.ledger", "rather than `TABLE name`"),
            ("SELECT count(*) FROM pg_roles", "write `sales_v1.pg_roles`: unqualified, a `pg_` name is the catalog's"),
            ("SELECT count(*) FROM ORDERS2", "`ORDERS2` is not one of"),
            ("SELECT count(*) FROM \"Orders\"", "is not one of the contract's own tables"),
            ("SELECT set_config('role', 'postgres', true)", "function `set_config`"),
            ("SELECT length(query_to_xml('select 1', true, false, '')::text)", "function `query_to_xml`"),
            ("SELECT length(pg_read_file('/etc/passwd'))", "function `pg_read_file`"),
            ("SELECT count(*) FROM orders WHERE pg_sleep(100) IS NULL", "function `pg_sleep`"),
            ("SELECT pg_advisory_lock(7074611)", "function `pg_advisory_lock`"),
            ("SELECT pg_catalog.count(*) FROM orders", "function `pg_catalog.count`"),
            ("SELECT count(*) FROM generate_series(1, 10)", "is not one of the contract's own tables"),
            ("SELECT 'pg_authid'::regclass::oid", "casts to plain types only"),
            ("SELECT count(*) FROM orders FOR UPDATE", "takes no locks"),
            ("SELECT * INTO copied FROM orders", "SELECT ... INTO writes"),
            ("DELETE FROM orders", "one query (SELECT ...)"),
            ("SELECT 1; SELECT 2", "one query (SELECT ...)"),
            ("SELECT count(* FROM orders", "meshplane cannot read this SQL"),
        ] {
            let refused = check(sql, &tables(), "sales_v1").unwrap_err();
            assert!(refused.contains(what), "{sql}: {refused}");
        }
    }
}
