//! The standing of every check: for each contract, server and check, its latest verdict
//! (`pass`, `fail`, `warn`, `error`) and since when it holds, kept with each test run in the
//! run's transaction. Alerts read what is failing now from here in one query, instead of
//! walking the runs (which scheduled runs split by schedule, and object runs by object).
//!
//! A run says which checks it covered ([`Covered`]): a check the covered part no longer holds
//! (a rule taken out of the contract) leaves the standing. The run itself is a check too,
//! [`RUN_CHECK`] (per schedule): `error` while the last run could not happen (unreachable
//! data, a limit), `pass` once one did.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value as Any;
use sqlx::{AnyConnection, Row};

use super::Store;
use crate::error::Error;
use crate::resource::Kind;

/// The key of the check that the run happened at all.
pub const RUN_CHECK: &str = "run";

/// Which of a contract's checks on a server a run covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Covered<'a> {
    /// Every check (a run on demand of the whole contract).
    Every,
    /// The checks of one schedule (a scheduled run).
    Schedule(&'a str),
    /// Only the checks in the run (one object's, or none: a run that could not happen).
    InRun,
}

/// Where a check of a contract on a server stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Standing {
    /// The contract's name (`ID@vMAJOR`), its id and its domain.
    pub contract: String,
    pub contract_id: String,
    pub domain: String,
    pub server: String,
    pub key: String,
    /// `schema`, `quality` or `sla` (none for the run check).
    pub category: Option<String>,
    /// `pass`, `fail`, `warn` or `error`.
    pub outcome: String,
    /// The rule's ODCS `severity`, as the contract gives it.
    pub severity: Option<String>,
    pub rule_id: Option<String>,
    pub description: String,
    /// Since when the outcome holds.
    pub since: String,
    /// The run that said so last.
    pub run: i64,
}

/// One check of a run's report, as the standing keeps it.
struct Verdict {
    key: String,
    schedule: Option<String>,
    category: Option<String>,
    outcome: String,
    severity: Option<String>,
    rule_id: Option<String>,
    description: String,
}

/// The verdicts of a report: each check's (the last one of a key the report repeats), and
/// the run's own, which is kept per schedule (`run`, or `run SCHEDULE` for a scheduled run:
/// one schedule's runs failing is not undone by another's passing).
fn verdicts(report: &Any) -> Vec<Verdict> {
    let text = |c: &Any, field: &str| c.get(field).and_then(Any::as_str).map(str::to_string);
    let schedule_of = |c: &Any, pointer: &str| c.pointer(pointer).and_then(Any::as_str).map(|s| s.trim().to_string());
    let checks = report.get("results").and_then(Any::as_array).into_iter().flatten();
    let mut out: Vec<Verdict> = checks
        .filter_map(|c| {
            Some(Verdict {
                key: text(c, "key")?,
                schedule: schedule_of(c, "/schedule"),
                category: text(c, "category"),
                outcome: text(c, "outcome")?,
                severity: text(c, "severity"),
                rule_id: text(c, "ruleId"),
                description: text(c, "description").unwrap_or_default(),
            })
        })
        .filter(|v| v.outcome != "skipped")
        .collect();
    let mut seen = HashSet::new();
    out.reverse();
    out.retain(|v| seen.insert(v.key.clone()));
    out.reverse();
    let error = report.pointer("/error/message").and_then(Any::as_str);
    let schedule = schedule_of(report, "/trigger/schedule");
    out.push(Verdict {
        key: schedule.as_ref().map_or_else(|| RUN_CHECK.into(), |s| format!("{RUN_CHECK} {s}")),
        schedule,
        category: None,
        outcome: if error.is_some() { "error" } else { "pass" }.into(),
        severity: None,
        rule_id: None,
        description: error
            .map_or_else(|| "the contract's tests ran".into(), |e| format!("the tests could not run: {e}")),
    });
    out
}

/// What of a contract document the standing may hold: its servers' names, and the schedules
/// its rules and SLA properties give (trimmed). A row of a server or a schedule the contract no
/// longer has would otherwise stand for ever, since no run covers it again.
fn live_parts(spec: &Any) -> (HashSet<String>, HashSet<String>) {
    let servers = spec.get("servers").and_then(Any::as_array).into_iter().flatten();
    let servers = servers.filter_map(|s| s.get("server")?.as_str().map(str::to_string)).collect();
    let mut schedules = HashSet::new();
    let mut stack = vec![spec];
    while let Some(node) = stack.pop() {
        match node {
            Any::Object(fields) => {
                if let Some(schedule) = fields.get("schedule").and_then(Any::as_str) {
                    schedules.insert(schedule.trim().to_string());
                }
                stack.extend(fields.values());
            }
            Any::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    (servers, schedules)
}

impl Store {
    /// Keeps the verdicts of run `run` (at `at`) of `kind`/`name` on `server` as the checks'
    /// standing: a verdict that did not change keeps its `since`; a check the run covered but
    /// did not hold leaves the standing.
    #[expect(clippy::too_many_arguments)]
    pub(super) async fn keep_standing(
        &self,
        tx: &mut AnyConnection,
        kind: Kind,
        name: &str,
        server: &str,
        covered: Covered<'_>,
        report: &Any,
        run: i64,
        at: &str,
    ) -> Result<(), Error> {
        let rows = sqlx::query(
            "SELECT check_key, schedule, outcome, since FROM check_states WHERE kind = $1 AND name = $2 AND server = $3",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(server)
        .fetch_all(&mut *tx)
        .await?;
        self.forget_gone_parts(tx, kind, name).await?;
        let verdicts = verdicts(report);
        let in_run: HashSet<&str> = verdicts.iter().map(|v| v.key.as_str()).collect();
        let mut kept_since: HashMap<String, (String, String)> = HashMap::new();
        for row in &rows {
            let key: String = row.try_get("check_key")?;
            let schedule: Option<String> = row.try_get("schedule")?;
            let gone = match covered {
                Covered::Every => key != RUN_CHECK,
                Covered::Schedule(s) => schedule.as_deref() == Some(s.trim()),
                Covered::InRun => false,
            };
            kept_since.insert(key.clone(), (row.try_get("outcome")?, row.try_get("since")?));
            let in_run = in_run.contains(key.as_str());
            if in_run || gone {
                sqlx::query(
                    "DELETE FROM check_states WHERE kind = $1 AND name = $2 AND server = $3 AND check_key = $4",
                )
                .bind(kind.as_str())
                .bind(name)
                .bind(server)
                .bind(&key)
                .execute(&mut *tx)
                .await?;
            }
        }
        for v in verdicts {
            let since = match kept_since.remove(&v.key) {
                Some((outcome, since)) if outcome == v.outcome => since,
                _ => at.to_string(),
            };
            sqlx::query(
                "INSERT INTO check_states (kind, name, server, check_key, schedule, category, outcome, severity, \
                 rule_id, description, since, at, run) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(kind.as_str())
            .bind(name)
            .bind(server)
            .bind(&v.key)
            .bind(v.schedule)
            .bind(v.category)
            .bind(&v.outcome)
            .bind(v.severity)
            .bind(v.rule_id)
            .bind(v.description)
            .bind(since)
            .bind(at)
            .bind(run)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }

    /// Drops the standing of the servers and schedules the stored contract no longer has.
    async fn forget_gone_parts(&self, tx: &mut AnyConnection, kind: Kind, name: &str) -> Result<(), Error> {
        let spec = sqlx::query("SELECT spec FROM resources WHERE kind = $1 AND name = $2")
            .bind(kind.as_str())
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let spec: Option<String> = spec.map(|row| row.try_get(0)).transpose()?;
        let spec: Any = spec.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or(Any::Null);
        let (servers, schedules) = live_parts(&spec);
        let rows = sqlx::query("SELECT DISTINCT server, schedule FROM check_states WHERE kind = $1 AND name = $2")
            .bind(kind.as_str())
            .bind(name)
            .fetch_all(&mut *tx)
            .await?;
        for row in rows {
            let (server, schedule): (String, Option<String>) = (row.try_get(0)?, row.try_get(1)?);
            if !servers.contains(&server) {
                sqlx::query("DELETE FROM check_states WHERE kind = $1 AND name = $2 AND server = $3")
                    .bind(kind.as_str())
                    .bind(name)
                    .bind(&server)
                    .execute(&mut *tx)
                    .await?;
            } else if let Some(schedule) = schedule.filter(|s| !schedules.contains(s)) {
                sqlx::query("DELETE FROM check_states WHERE kind = $1 AND name = $2 AND server = $3 AND schedule = $4")
                    .bind(kind.as_str())
                    .bind(name)
                    .bind(&server)
                    .bind(&schedule)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// Every check of a stored contract that does not pass now, by contract, server and key.
    pub async fn failing_checks(&self) -> Result<Vec<Standing>, Error> {
        self.standings("c.outcome <> 'pass'", None).await
    }

    /// The standing of every check of contract `name`, by server and key (none: never tested).
    pub async fn standing_of(&self, name: &str) -> Result<Vec<Standing>, Error> {
        self.standings("c.kind = 'DataContract' AND c.name = $1", Some(name)).await
    }

    async fn standings(&self, condition: &str, name: Option<&str>) -> Result<Vec<Standing>, Error> {
        let sql = format!(
            "SELECT c.name, r.id, r.domain, c.server, c.check_key, c.category, c.outcome, c.severity, c.rule_id, c.description, \
                c.since, c.run \
             FROM check_states c JOIN resources r ON r.kind = c.kind AND r.name = c.name \
             WHERE {condition} ORDER BY c.name, c.server, c.check_key"
        );
        let query = sqlx::query(&sql);
        let query = match name {
            Some(name) => query.bind(name),
            None => query,
        };
        let rows = query.fetch_all(&self.reads).await?;
        rows.iter()
            .map(|row| {
                Ok(Standing {
                    contract: row.try_get("name")?,
                    contract_id: row.try_get("id")?,
                    domain: row.try_get("domain")?,
                    server: row.try_get("server")?,
                    key: row.try_get("check_key")?,
                    category: row.try_get("category")?,
                    outcome: row.try_get("outcome")?,
                    severity: row.try_get("severity")?,
                    rule_id: row.try_get("rule_id")?,
                    description: row.try_get("description")?,
                    since: row.try_get("since")?,
                    run: row.try_get("run")?,
                })
            })
            .collect()
    }
}
