//! Contract tests on the schedules contracts give (ODCS `schedule` with `scheduler: cron` on
//! quality rules and SLA properties): one job per contract and schedule, whose run tests only
//! that schedule's checks, in one scan per object, on every server of the contract in the
//! platform's environment.
//!
//! A job runs once per firing across all replicas: it is taken under its lease in the store,
//! and the store keeps the firing each job last completed, so a firing missed while no replica
//! ran (or by a replica that died mid-run) is run once when the job is next looked at — the
//! latest missed firing only, not each one. A contract's schedule counts from when its current
//! version was applied. Reports are kept with the contract's test history, marked
//! `trigger: {by: schedule, schedule, due}`; a server that cannot be tested gets a failed
//! run with the reason.

use std::collections::BTreeMap;

use meshplane_core::block::Blocks;
use meshplane_core::cron::Cron;
use meshplane_core::store::{SCHEDULE, Store, epoch_ms};
use meshplane_quality::plan::schedules;
use serde_json::{Value as Any, json};

use crate::checks::{self, Ask};
use crate::reconciler::{Settings, renewing};

/// When a job's lease is held by another replica, or the store failed, look again after this.
const RETRY_MS: i64 = 5_000;

/// One contract's tests on one schedule.
#[derive(Clone, Debug)]
pub struct Job {
    /// `tests/CONTRACT/SCHEDULE`: the key of its lease and of its last completed firing.
    pub name: String,
    pub contract: String,
    pub schedule: String,
    cron: Cron,
    /// Firings count from here (when the contract's current version was applied).
    since_ms: i64,
}

/// Every job, by contract, and when each is next due.
#[derive(Default)]
pub struct Jobs {
    by_contract: BTreeMap<String, Vec<Job>>,
    due: BTreeMap<String, i64>,
}

impl Jobs {
    /// The contract `name` is now `spec` (or gone: `None`), as applied at `applied_ms`.
    /// Schedules that do not parse are left out; the linter reports them.
    pub fn set(&mut self, name: &str, spec: Option<&Any>, applied_ms: i64) {
        for job in self.by_contract.remove(name).unwrap_or_default() {
            self.due.remove(&job.name);
        }
        let Some(meshplane_spec::Document::Contract(contract)) = spec.and_then(meshplane_spec::decode_json) else {
            return;
        };
        let jobs: Vec<Job> = schedules(&contract)
            .into_iter()
            .filter_map(|schedule| {
                let cron = Cron::parse(&schedule).ok()?;
                let job = format!("tests/{name}/{schedule}");
                Some(Job { name: job, contract: name.to_string(), schedule, cron, since_ms: applied_ms })
            })
            .collect();
        for job in &jobs {
            if let Some(due) = job.cron.next_after(applied_ms) {
                self.due.insert(job.name.clone(), due);
            }
        }
        if !jobs.is_empty() {
            self.by_contract.insert(name.to_string(), jobs);
        }
    }

    /// Up to `limit` jobs due at `now_ms` whose contract `mine` says this replica runs; each
    /// is taken out of the schedule until [`Jobs::done`] puts it back.
    pub fn take_due(&mut self, now_ms: i64, limit: usize, mine: impl Fn(&str) -> bool) -> Vec<Job> {
        let due = |job: &&Job| self.due.get(&job.name).is_some_and(|due| *due <= now_ms) && mine(&job.contract);
        let taken: Vec<Job> = self.by_contract.values().flatten().filter(due).take(limit).cloned().collect();
        for job in &taken {
            self.due.remove(&job.name);
        }
        taken
    }

    /// The job's run ended; it is next due at `next_ms` (if it still exists).
    pub fn done(&mut self, job: &Job, next_ms: Option<i64>) {
        let exists = self.by_contract.get(&job.contract).is_some_and(|jobs| jobs.iter().any(|j| j.name == job.name));
        if let (true, Some(next)) = (exists, next_ms) {
            self.due.insert(job.name.clone(), next);
        }
    }
}

/// When a contract's current version was applied, for a record's `updated_at`.
pub fn applied_ms(updated_at: &str) -> i64 {
    epoch_ms(updated_at).unwrap_or(0)
}

/// Runs `job` if a firing is due and no other replica has run it; returns when it is next due.
/// Only the contract's servers of the platform's environment are tested, where their blocks
/// say, in `sandbox`.
pub async fn run(store: &Store, blocks: &Blocks, job: &Job, owner: &str, settings: &Settings) -> Option<i64> {
    let (clock, lease_ms) = (&*settings.clock, settings.lease_ms);
    let now = clock.now_ms();
    let token = match store.acquire_lease(SCHEDULE, &job.name, owner, lease_ms).await {
        Ok(Some(token)) => token,
        _ => return Some(now + RETRY_MS),
    };
    let next = match store.schedule_done(&job.name).await {
        Err(_) => Some(now + RETRY_MS),
        Ok(done) => {
            let from = done.max(job.since_ms);
            match job.cron.latest(from, now) {
                // Another replica ran this firing already.
                None => job.cron.next_after(from.max(now)),
                Some(due) => {
                    let work = test_every_server(store, blocks, settings, job, due);
                    let completed = renewing(store, SCHEDULE, &job.name, (owner, token), lease_ms, work).await;
                    match completed {
                        Some(()) if store.complete_schedule(&job.name, due, (owner, token)).await.is_ok() => {
                            job.cron.next_after(due)
                        }
                        _ => Some(clock.now_ms() + RETRY_MS),
                    }
                }
            }
        }
    };
    let _ = store.release_lease(SCHEDULE, &job.name, owner, token).await;
    next
}

/// Tests the job's checks on every server of its contract in the platform's environment,
/// keeping one report per server (a run that could not happen is kept as a failed one).
async fn test_every_server(store: &Store, blocks: &Blocks, settings: &Settings, job: &Job, due: i64) {
    let Ok((contract, _)) = checks::stored_contract(store, &job.contract).await else { return };
    let trigger = json!({ "by": "schedule", "schedule": job.schedule, "due": due });
    let environment = blocks.environment.as_deref();
    let ours = |s: &&meshplane_spec::model::server::Server| {
        environment.is_none_or(|env| s.environment.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(env)))
    };
    for server in contract.servers.as_deref().unwrap_or_default().iter().filter(ours) {
        let ask = Ask {
            server: Some(server.server.as_str()),
            object: None,
            samples: 0,
            schedule: Some(job.schedule.clone()),
            trigger: trigger.clone(),
        };
        if let Err(e) = checks::run(store, blocks, settings, &job.contract, ask).await {
            let _ = checks::record_failure(store, &job.contract, &server.server, &e, trigger.clone()).await;
        }
    }
}
