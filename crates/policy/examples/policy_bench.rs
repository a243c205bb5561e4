//! What policy evaluation adds to an apply: 100 policies (the default pack's seven rules in
//! variants, each with its own package and scope) asked about each of 12,000 documents shaped
//! like `bench/registry.py`'s (10,000 contracts and 2,000 products in 20 domains), one document
//! per apply as the server asks them: the input converted once, then every covering policy
//! evaluated. Prints the time per document (p50, p99, max) and per evaluation.
//!
//! Run: `cargo run --release -p meshplane-policy --example policy_bench` (bench/policies.sh).

use std::time::{Duration, Instant};

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

fn main() {
    let policies = policies();
    let compiled: Vec<_> = policies.iter().map(|p| (p, compile(p).expect("a bench policy compiles"))).collect();
    let documents: Vec<(&str, Any)> = (0..10_000)
        .map(|i| ("DataContract", contract(i)))
        .chain((0..2_000).map(|i| ("DataProduct", product(i))))
        .collect();
    let (mut per_document, mut evaluations, mut violations) = (Vec::with_capacity(documents.len()), 0usize, 0usize);
    let mut per_rule: std::collections::BTreeMap<String, (Duration, usize)> = Default::default();
    for (kind, doc) in &documents {
        let domain = doc["domain"].as_str().unwrap();
        let started = Instant::now();
        let input = Input::new(&json!({
            "action": "apply", "kind": kind, "name": doc["id"], "domain": domain, "owners": [],
            "before": null, "after": doc, "diff": null, "caller": {"name": "bench", "groups": [], "platformAdmin": true, "domains": []}
        }));
        for (policy, module) in &compiled {
            if policy.covers(kind, domain) {
                evaluations += 1;
                let one = Instant::now();
                let verdict = module.evaluate(&input, None, DEFAULT_BUDGET);
                let rule = policy.id.rsplit_once('-').map_or(policy.id.as_str(), |(r, _)| r).to_string();
                let spent = per_rule.entry(rule).or_default();
                (spent.0, spent.1) = (spent.0 + one.elapsed(), spent.1 + 1);
                match verdict {
                    Verdict::Pass => {}
                    Verdict::Violated(v) => violations += v.len(),
                    Verdict::Failed(why) => panic!("{}: {why}", policy.id),
                }
            }
        }
        per_document.push(started.elapsed());
    }
    per_document.sort();
    let at = |q: f64| per_document[((per_document.len() as f64 * q) as usize).min(per_document.len() - 1)];
    let total: Duration = per_document.iter().sum();
    println!(
        "policies {}  documents {}  evaluations {evaluations}  violations {violations}",
        policies.len(),
        documents.len()
    );
    println!(
        "per document: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms;  per evaluation: {:.1} µs;  all: {:.2} s",
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        per_document.last().unwrap().as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e6 / evaluations as f64,
        total.as_secs_f64()
    );
    for (rule, (spent, n)) in per_rule {
        println!("  {rule}: {:.1} µs per evaluation ({n})", spent.as_secs_f64() * 1e6 / n as f64);
    }
}
