//! What the metrics say of every contract and product, read in one pass: its domain, whether
//! it is Ready, whether its latest contract test run failed, and how many of its SLA checks
//! pass; and how many grants are in
//! force by how they are enforced. Read at each scrape of `/metrics`, from the reading
//! connections, so the numbers are the store's, whichever replica is asked.

use serde::Deserialize;
use sqlx::Row;

use super::Store;
use crate::error::Error;
use crate::resource::Kind;

/// One resource as the metrics see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub kind: Kind,
    pub name: String,
    pub domain: String,
    /// Its `Ready` condition; `None` before its first reconcile.
    pub ready: Option<bool>,
    /// Whether its latest test run failed; `None` when it was never tested.
    pub last_test_failed: Option<bool>,
    /// Of its SLA checks (latency, retention) as of their latest runs: how many pass, of how
    /// many; `None` when none was measured.
    pub sla: Option<(i64, i64)>,
}

/// Only the part of a stored condition the metrics need.
#[derive(Deserialize)]
struct ConditionType {
    #[serde(rename = "type")]
    kind: String,
    status: String,
}

impl Store {
    /// Every contract and product, with its readiness and its latest test's verdict.
    pub async fn health(&self) -> Result<Vec<Health>, Error> {
        let rows = sqlx::query(
            "SELECT r.kind, r.name, r.domain, s.conditions, \
                (SELECT t.failed FROM test_runs t WHERE t.kind = r.kind AND t.name = r.name \
                 ORDER BY t.seq DESC LIMIT 1) AS failed, \
                (SELECT COUNT(*) FROM check_states c WHERE c.kind = r.kind AND c.name = r.name \
                 AND c.category = 'sla' AND c.outcome = 'pass') AS sla_passing, \
                (SELECT COUNT(*) FROM check_states c WHERE c.kind = r.kind AND c.name = r.name \
                 AND c.category = 'sla' AND c.outcome <> 'error') AS sla_measured \
             FROM resources r LEFT JOIN statuses s ON s.kind = r.kind AND s.name = r.name \
             WHERE r.kind IN ($1, $2) ORDER BY r.kind, r.name",
        )
        .bind(Kind::DataContract.as_str())
        .bind(Kind::DataProduct.as_str())
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                let conditions: Option<String> = row.try_get("conditions")?;
                let ready = match conditions {
                    None => None,
                    Some(text) => {
                        let conditions: Vec<ConditionType> =
                            serde_json::from_str(&text).map_err(|e| Error::Store(e.to_string()))?;
                        conditions.iter().find(|c| c.kind == "Ready").map(|c| c.status == "True")
                    }
                };
                let failed: Option<i64> = row.try_get("failed")?;
                let (passing, measured): (i64, i64) = (row.try_get("sla_passing")?, row.try_get("sla_measured")?);
                Ok(Health {
                    kind: Kind::parse(&kind).ok_or_else(|| Error::Store(format!("unknown kind `{kind}`")))?,
                    name: row.try_get("name")?,
                    domain: row.try_get("domain")?,
                    ready,
                    last_test_failed: failed.map(|f| f != 0),
                    sla: (measured > 0).then_some((passing, measured)),
                })
            })
            .collect()
    }

    /// How many grants are in force (active), by how they are enforced (`enforced`,
    /// `advisory`, `unsupported`; `pending` before the reconciler recorded it).
    pub async fn active_grants(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows = sqlx::query(
            "SELECT COALESCE(enforcement, 'pending') AS enforcement, COUNT(*) AS n FROM access \
             WHERE state = 'active' GROUP BY COALESCE(enforcement, 'pending') ORDER BY 1",
        )
        .fetch_all(&self.reads)
        .await?;
        rows.iter().map(|row| Ok((row.try_get("enforcement")?, row.try_get("n")?))).collect()
    }
}
