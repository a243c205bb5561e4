//! Contract SQL rules that only count the object's rows under a condition,
//! `SELECT COUNT(*) FROM {object} [WHERE condition]`, measured inside the object's scan.
//!
//! Such a rule is the commonest custom check, and run on its own it reads and decodes its
//! columns a second time. Its plan is recognised here (after DataFusion has planned it with
//! the same read-only options as any contract SQL), and its condition is evaluated on each
//! batch of the one scan. Anything else a rule may say (joins, grouping, other tables,
//! subqueries, limits, `COUNT(DISTINCT ...)`) keeps the ordinary read-only SQL path.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::DFSchema;
use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::PhysicalExpr;
use datafusion::prelude::SessionContext;

/// The condition of a rule that counts `table`'s rows: `Some(None)` counts every row,
/// `Some(Some(condition))` the rows where it holds; `None` when the plan is anything else.
pub fn condition(plan: &LogicalPlan, table: &str) -> Option<Option<Expr>> {
    let LogicalPlan::Projection(projection) = plan else { return None };
    let [output] = projection.expr.as_slice() else { return None };
    if !matches!(output.clone().unalias(), Expr::Column(_)) {
        return None;
    }
    let LogicalPlan::Aggregate(aggregate) = projection.input.as_ref() else { return None };
    let [count] = aggregate.aggr_expr.as_slice() else { return None };
    if !aggregate.group_expr.is_empty() || !counts_rows(count) {
        return None;
    }
    let (condition, scan) = match aggregate.input.as_ref() {
        LogicalPlan::Filter(filter) => (Some(filter.predicate.clone()), filter.input.as_ref()),
        other => (None, other),
    };
    let LogicalPlan::TableScan(scan) = scan else { return None };
    let reads_only_table =
        scan.table_name.table() == table && scan.table_name.schema().is_none() && scan.filters.is_empty();
    if !reads_only_table || scan.fetch.is_some() {
        return None;
    }
    if condition.as_ref().is_some_and(reaches_beyond_row) {
        return None;
    }
    Some(condition)
}

/// Whether an aggregate is `COUNT(*)` or `COUNT(<non-null literal>)`, unfiltered and not distinct.
fn counts_rows(aggregate: &Expr) -> bool {
    let Expr::AggregateFunction(f) = aggregate.clone().unalias_nested().data else { return false };
    let p = &f.params;
    f.func.name() == "count"
        && !p.distinct
        && p.filter.is_none()
        && matches!(p.args.as_slice(), [Expr::Literal(v, _)] if !v.is_null())
}

/// Whether a condition looks beyond the row it is evaluated on (a subquery, a placeholder).
fn reaches_beyond_row(condition: &Expr) -> bool {
    condition
        .exists(|e| {
            Ok(matches!(
                e,
                Expr::ScalarSubquery(_)
                    | Expr::Exists(_)
                    | Expr::InSubquery(_)
                    | Expr::SetComparison(_)
                    | Expr::OuterReferenceColumn(..)
                    | Expr::Placeholder(_)
            ))
        })
        .unwrap_or(true)
}

/// The columns a condition reads.
pub fn columns(condition: &Option<Expr>) -> Vec<String> {
    condition.iter().flat_map(|c| c.column_refs()).map(|c| c.name.clone()).collect()
}

/// A row count under a condition, in progress for one partition of a scan.
pub struct CountedKernel {
    condition: Option<Arc<dyn PhysicalExpr>>,
    pub count: u64,
}

impl CountedKernel {
    /// The kernel of `condition` over batches of `schema` (the scan's projection of `table`).
    pub fn new(
        ctx: &SessionContext,
        table: &str,
        schema: &Schema,
        condition: Option<Expr>,
    ) -> Result<CountedKernel, String> {
        let condition = match condition {
            None => None,
            Some(c) => {
                let df_schema = DFSchema::try_from_qualified_schema(table, schema).map_err(|e| e.to_string())?;
                Some(ctx.create_physical_expr(c, &df_schema).map_err(|e| e.to_string())?)
            }
        };
        Ok(CountedKernel { condition, count: 0 })
    }

    /// An empty twin for another partition.
    pub fn fork(&self) -> CountedKernel {
        CountedKernel { condition: self.condition.clone(), count: 0 }
    }

    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let Some(condition) = &self.condition else {
            self.count += batch.num_rows() as u64;
            return Ok(());
        };
        let holds =
            condition.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())).map_err(|e| e.to_string())?;
        if holds.data_type() != &DataType::Boolean {
            return Err(format!("the condition is {}, not a boolean", holds.data_type()));
        }
        // Rows where the condition is null are not counted, as in SQL.
        self.count += holds.as_boolean().true_count() as u64;
        Ok(())
    }
}
