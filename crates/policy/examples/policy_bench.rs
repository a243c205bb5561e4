//! What policy evaluation adds to an apply: 100 policies (the default pack's seven rules in
//! variants, each with its own package and scope) asked about each of 12,000 documents shaped
//! like `bench/registry.py`'s (10,000 contracts and 2,000 products in 20 domains), one document
//! per apply as the server asks them: the input converted once, then every covering policy
//! evaluated — in this process, then in a policy worker as a server does (one batch per
//! document over a pipe). Prints the time per document (p50, p99, max) and per evaluation.
//!
//! Run: `cargo run --release -p meshplane-policy --example policy_bench` (bench/policies.sh).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use meshplane_policy::worker::{self, Job, Pool, Runner};
use meshplane_policy::{DEFAULT_BUDGET, Input, Verdict, compile, pack};
use meshplane_spec::model::policy::Policy;
use serde_json::{Value as Any, json};

fn policies() -> Vec<Policy> {
    let base = pack("deny");
    (0..100)
        .map(|i| {
            let mut p = base[i % base.len()].clone();
            p.id = format!("{}-{i}", p.id);
            // A package of its own per variant, as separately written policies have.
            let (first, rest) = p.rego.split_once('\n').unwrap();
            p.rego = format!("{}_{i}\n{rest}", first.trim_end());
            // Half over every domain, half over one domain each.
            if i % 2 == 1
                && let Some(scope) = p.scope.as_mut()
            {
                scope.domains = Some(vec![format!("d{:02}", i % 20)]);
            }
            p
        })
        .collect()
}

fn contract(i: usize) -> Any {
    json!({
        "apiVersion": "v3.1.0", "kind": "DataContract", "id": format!("c{i:05}"), "version": "1.0.0",
        "status": "active", "domain": format!("d{:02}", i % 20), "tags": [if i.is_multiple_of(10) { "gold" } else { "silver" }],
        "schema": [{"name": format!("t{i:05}"), "properties": [
            {"name": "id", "logicalType": "string", "required": true, "unique": true},
            {"name": "amount", "logicalType": "number", "logicalTypeOptions": {"minimum": 0}},
            {"name": "created_at", "logicalType": "date"}
        ]}]
    })
}

fn product(i: usize) -> Any {
    json!({
        "apiVersion": "v1.0.0", "kind": "DataProduct", "id": format!("p{i:05}"), "version": "1.0.0",
        "status": "active", "domain": format!("d{:02}", i % 20),
        "inputPorts": [{"name": "in", "version": "1.0.0", "contractId": format!("c{:05}", (i * 5) % 10_000)}],
        "outputPorts": [{"name": "out", "version": "1.0.0", "contractId": format!("c{:05}", i)}]
    })
}

fn main() -> ExitCode {
    // This program is also its own policy worker.
    if std::env::args().nth(1).as_deref() == Some("worker") {
        return worker::serve();
    }
    let policies = policies();
    let compiled: Vec<_> = policies.iter().map(|p| (p, compile(p).expect("a bench policy compiles"))).collect();
    let documents: Vec<(&str, Any)> = (0..10_000)
        .map(|i| ("DataContract", contract(i)))
        .chain((0..2_000).map(|i| ("DataProduct", product(i))))
        .collect();
    println!("policies {}  documents {}", policies.len(), documents.len());
    let program = std::env::current_exe().expect("this program's path");
    let workers = Runner::Workers(Box::new(Pool::new(program, vec!["worker".into()], 1, 512 << 20)));
    for (place, runner) in [("in process", Runner::InProcess), ("in a policy worker", workers)] {
        let (mut per_document, mut evaluations, mut violations) = (Vec::with_capacity(documents.len()), 0, 0);
        for (kind, doc) in &documents {
            let domain = doc["domain"].as_str().unwrap();
            let started = Instant::now();
            let input = Input::new(&json!({
                "action": "apply", "kind": kind, "name": doc["id"], "domain": domain, "owners": [],
                "before": null, "after": doc, "diff": null, "caller": {"name": "bench", "groups": [], "platformAdmin": true, "domains": []}
            }));
            let jobs: Vec<Job<'_>> = compiled
                .iter()
                .filter(|(policy, _)| policy.covers(kind, domain))
                .map(|(_, module)| Job {
                    compiled: module,
                    input: &input,
                    data: None,
                    budget: DEFAULT_BUDGET,
                    access: false,
                    trial: false,
                })
                .collect();
            evaluations += jobs.len();
            for (verdict, _) in runner.run(&jobs) {
                match verdict {
                    Verdict::Pass => {}
                    Verdict::Violated(v) => violations += v.len(),
                    Verdict::Failed(why) => panic!("{why}"),
                }
            }
            per_document.push(started.elapsed());
        }
        per_document.sort();
        let at = |q: f64| per_document[((per_document.len() as f64 * q) as usize).min(per_document.len() - 1)];
        let total: Duration = per_document.iter().sum();
        println!(
            "{place}: per document p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms;  per evaluation {:.1} µs;  all {:.2} s  \
             ({evaluations} evaluations, {violations} violations)",
            at(0.50).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            per_document.last().unwrap().as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e6 / evaluations as f64,
            total.as_secs_f64()
        );
    }
    ExitCode::SUCCESS
}
