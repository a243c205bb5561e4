//! Governance as code through the CLI, against a real `meshplane serve`: a `deny` policy
//! refuses an apply (exit 1, every violation listed, nothing written), a `warn` policy lets it
//! through with its warnings in the answer and on the resource, a new policy marks the
//! resources applied before it, a Rego error is refused with its line, a policy that reaches
//! past its domain needs a platform admin, and `policy eval` answers without a server.

use std::path::Path;
use std::process::{Command, Output};

use crate::{serve, stdout, token_for};

fn as_(token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshplane"))
        .env("MESHPLANE_TOKEN", token)
        .args(args)
        .output()
        .expect("run meshplane")
}

/// Makes `name` an admin of `domain` and returns a token of it.
fn domain_admin(admin: &str, url: &str, name: &str, domain: &str) -> String {
    let put = as_(admin, &["principal", "put", name, "--domain-admin", domain, "--server", url]);
    assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));
    stdout(&as_(admin, &["token", "create", "--principal", name, "--server", url])).trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn contract(id: &str, team: bool) -> String {
    let team = if team { "team:\n  name: sales-team\n" } else { "" };
    format!(
        "apiVersion: v3.1.0\nkind: DataContract\nid: {id}\nversion: 1.0.0\nstatus: active\ndomain: sales\n{team}\
         schema:\n  - name: t\n    properties:\n      - {{ name: id, logicalType: string }}\n"
    )
}

/// A policy over every domain's contracts: each must name its team.
fn team_policy(enforcement: &str, domains: &str) -> String {
    format!(
        "apiVersion: meshplane/v1\nkind: Policy\nid: team-present\nversion: 1.0.0\ndomain: platform\n\
         scope:\n  domains: {domains}\n  kinds: [DataContract]\nenforcement: {enforcement}\nrego: |\n\
         \x20 package meshplane.team\n\
         \x20 violations contains {{\"msg\": sprintf(\"contract %s names no team\", [input.after.id]), \"path\": \"team\"}} if {{\n\
         \x20   not input.after.team\n\
         \x20 }}\n"
    )
}

fn conditions(url: &str, token: &str, name: &str) -> Vec<serde_json::Value> {
    let got = as_(token, &["get", "contracts", name, "--server", url, "-o", "json"]);
    let body: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap_or_default();
    body["reconciled"]["conditions"].as_array().cloned().unwrap_or_default()
}

/// Waits until `name`'s `PolicyCompliant` condition has `status`, and returns it.
fn compliance(url: &str, token: &str, name: &str, status: &str) -> serde_json::Value {
    for _ in 0..300 {
        let found = conditions(url, token, name).into_iter().find(|c| c["type"] == "PolicyCompliant");
        if let Some(c) = found.filter(|c| c["status"] == status) {
            return c;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{name} never had PolicyCompliant={status}: {:?}", conditions(url, token, name));
}

#[test]
fn policies_deny_warn_and_mark_what_was_applied_before_them() {
    let s = serve();
    let admin = token_for(&s.url).unwrap();
    let url = s.url.as_str();
    let dir = s.cwd.join("governance");
    std::fs::create_dir_all(&dir).unwrap();

    // Applied before any policy: it names no team.
    let early = write(&dir, "early.yaml", &contract("early", false));
    assert_eq!(as_(&admin, &["apply", "--server", url, "-f", &early]).status.code(), Some(0));

    // A Rego error is refused with its line in the document, by the CLI before sending and by
    // the server.
    let broken = team_policy("deny", "['*']").replace("not input.after.team", "not input.after.team ==");
    let broken = write(&dir, "broken.yaml", &broken);
    let refused = as_(&admin, &["apply", "--server", url, "-f", &broken]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("rego-invalid"), "{}", stderr(&refused));
    assert!(stderr(&refused).contains(":13:3"), "the module's line 3 is the document's line 13: {}", stderr(&refused));

    // The API refuses it the same way, with the place in `details`.
    let api = |body: String| {
        let client = reqwest::blocking::Client::new();
        let answer = client.post(format!("{url}/api/v1/apply")).bearer_auth(&admin).body(body).send().unwrap();
        (answer.status().as_u16(), answer.json::<serde_json::Value>().unwrap())
    };
    let (status, body) = api(std::fs::read_to_string(&broken).unwrap());
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid-document")), "{body}");
    let problem = &body["details"][0]["details"][0];
    assert_eq!((problem["code"].as_str(), problem["line"].as_u64()), (Some("rego-invalid"), Some(13)), "{body}");

    // A domain admin may not apply a policy over every domain.
    let dana = domain_admin(&admin, url, "dana", "platform");
    let deny = write(&dir, "deny.yaml", &team_policy("deny", "['*']"));
    let forbidden = as_(&dana, &["apply", "--server", url, "-f", &deny]);
    assert_eq!(forbidden.status.code(), Some(1));
    assert!(stderr(&forbidden).contains("whose scope reaches past its own domain"), "{}", stderr(&forbidden));
    // Nor, on a platform that keeps policies to platform admins (the default), its own domain's.
    let own = write(&dir, "own.yaml", &team_policy("deny", "[platform]").replace("id: team-present", "id: own-team"));
    let kept = as_(&dana, &["apply", "--server", url, "-f", &own]);
    assert_eq!(kept.status.code(), Some(1));
    assert!(stderr(&kept).contains("this platform lets only platform admins write policies"), "{}", stderr(&kept));

    let applied = as_(&admin, &["apply", "--server", url, "-f", &deny, "--wait"]);
    assert_eq!(applied.status.code(), Some(0), "{}{}", stdout(&applied), stderr(&applied));
    assert!(stdout(&applied).contains("Policy team-present: Ready"), "{}", stdout(&applied));

    // The contract applied before the policy is marked, not changed.
    let marked = compliance(url, &admin, "early@v1", "False");
    assert_eq!(marked["reason"], "Violation");
    assert!(
        marked["message"]
            .as_str()
            .unwrap()
            .contains("team-present (deny, rule team-present): contract early names no team")
    );

    // A new contract without a team is refused, with another, all or nothing.
    let both = write(&dir, "both.yaml", &format!("{}---\n{}", contract("teamed", true), contract("bare", false)));
    let denied = as_(&admin, &["apply", "--server", url, "-f", &both]);
    assert_eq!(denied.status.code(), Some(1), "{}", stdout(&denied));
    let err = stderr(&denied);
    assert!(err.contains("policy-denied") && err.contains("contract bare names no team"), "{err}");
    assert!(err.contains("document: 2") && err.contains("path: team"), "{err}");
    let (status, body) = api(contract("bare", false));
    assert_eq!((status, body["code"].as_str()), (403, Some("policy-denied")), "{body}");
    assert_eq!(body["details"][0]["policy"], "team-present");
    let listed = stdout(&as_(&admin, &["get", "contracts", "--server", url]));
    assert!(!listed.contains("teamed@v1") && !listed.contains("bare@v1"), "nothing was written: {listed}");

    // Fixing the early contract clears its mark.
    let fixed = write(&dir, "early.yaml", &contract("early", true).replace("1.0.0", "1.0.1"));
    assert_eq!(as_(&admin, &["apply", "--server", url, "-f", &fixed]).status.code(), Some(0));
    assert_eq!(compliance(url, &admin, "early@v1", "True")["reason"], "Compliant");

    // As a warning, the same rule lets the change through and says so.
    let warn = write(&dir, "warn.yaml", &team_policy("warn", "['*']").replace("1.0.0", "1.1.0"));
    assert_eq!(as_(&admin, &["apply", "--server", url, "-f", &warn]).status.code(), Some(0));
    let bare = write(&dir, "bare.yaml", &contract("bare", false));
    let through = as_(&admin, &["apply", "--server", url, "-f", &bare]);
    assert_eq!(through.status.code(), Some(0), "{}", stderr(&through));
    let out = stdout(&through);
    assert!(out.contains("DataContract bare@v1 1.0.0 generation 1: created"), "{out}");
    assert!(
        out.contains("warning: policy team-present (rule team-present) at `team`: contract bare names no team"),
        "{out}"
    );
    assert_eq!(compliance(url, &admin, "bare@v1", "False")["reason"], "Warning");
    let policies = stdout(&as_(&admin, &["get", "policies", "--server", url]));
    assert!(policies.lines().any(|l| l.starts_with("team-present") && l.contains("True")), "{policies}");

    // A dry run asks the policies too: the warnings are shown, nothing is written.
    let other = write(&dir, "other.yaml", &contract("dry", false));
    let dry = as_(&admin, &["apply", "--server", url, "-f", &other, "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains("created (dry run)") && stdout(&dry).contains("contract dry names no team"),
        "{}",
        stdout(&dry)
    );
    assert!(!stdout(&as_(&admin, &["get", "contracts", "--server", url])).contains("dry@v1"));

    // A policy on deletes: an active contract is not deleted; the refusal changes nothing.
    let keep = "apiVersion: meshplane/v1\nkind: Policy\nid: keep-active\nversion: 1.0.0\ndomain: platform\n\
                scope:\n  domains: ['*']\nactions: [delete]\nenforcement: deny\nrego: |\n\
                \x20 package meshplane.keep\n\
                \x20 violations contains \"active contracts are deprecated first, not deleted\" if input.before.status == \"active\"\n";
    assert_eq!(as_(&admin, &["apply", "--server", url, "-f", &write(&dir, "keep.yaml", keep)]).status.code(), Some(0));
    let delete = as_(&admin, &["delete", "contracts", "bare@v1", "--server", url]);
    assert_eq!(delete.status.code(), Some(1), "{}", stdout(&delete));
    assert!(
        stderr(&delete).contains("policy-denied") && stderr(&delete).contains("deprecated first"),
        "{}",
        stderr(&delete)
    );
    let still = as_(&admin, &["get", "contracts", "bare@v1", "--server", url, "-o", "json"]);
    let body: serde_json::Value = serde_json::from_slice(&still.stdout).unwrap();
    assert!(body["name"] == "bare@v1" && body.get("deletionRequested").is_none(), "{body}");
}

#[test]
fn policy_eval_answers_without_a_server() {
    let dir = std::env::temp_dir().join(format!("mp-policy-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = write(&dir, "p.yaml", &team_policy("deny", "[sales]"));
    let bare = write(&dir, "bare.yaml", &contract("bare", false));
    let teamed = write(&dir, "teamed.yaml", &contract("teamed", true));
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_meshplane")).args(args).output().unwrap();

    let denied = run(&["policy", "eval", &policy, "-f", &bare]);
    assert_eq!(denied.status.code(), Some(1));
    assert_eq!(stdout(&denied), "deny team-present (rule team-present) at `team`: contract bare names no team\n");
    assert!(
        stderr(&denied).contains("defaulted as null (what only a server knows): before, caller"),
        "{}",
        stderr(&denied)
    );
    let passed = run(&["policy", "eval", &policy, "-f", &teamed]);
    assert_eq!((passed.status.code(), stdout(&passed)), (Some(0), "team-present: pass\n".to_string()));

    let json =
        run(&["policy", "eval", &policy, "-f", &bare, "-o", "json", "--input", r#"{"caller": {"name": "ana"}}"#]);
    let body: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!((body["verdict"].as_str(), body["denied"].as_bool()), (Some("violated"), Some(true)));
    assert_eq!(body["input"]["caller"]["name"], "ana");
    assert_eq!(body["input"]["name"], "bare@v1");

    // A policy on access, asked about a contract with the request given.
    let access = write(&dir, "access.yaml", REPORTS);
    let request = r#"{"request": {"access": "read", "purpose": "weekly report"}}"#;
    let asked = run(&["policy", "eval", &access, "-f", &teamed, "--action", "access-request", "--input", request]);
    assert_eq!(asked.status.code(), Some(0), "{}", stderr(&asked));
    let expected = "reports: pass\nreports: approves the request without a human decision\nreports: the grant lasts at most 7 days\n";
    assert_eq!(stdout(&asked), expected);
    let noted = stderr(&asked);
    assert!(
        noted.contains("defaulted as null (what only a server knows): consumer, product, port, decision, caller"),
        "{noted}"
    );
    let none = r#"{"request": {"access": "read", "purpose": "none"}}"#;
    let refused = run(&["policy", "eval", &access, "-f", &teamed, "--action", "access-request", "--input", none]);
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    assert!(
        stdout(&refused).starts_with("deny reports (rule reports): say what the access is for\n"),
        "{}",
        stdout(&refused)
    );

    // The default pack, written out, passes its own tests; a test that does not hold fails.
    let pack = dir.join("pack");
    assert_eq!(run(&["policy", "pack", "--out", pack.to_str().unwrap()]).status.code(), Some(0));
    let tested = run(&["policy", "test", pack.to_str().unwrap()]);
    assert_eq!(tested.status.code(), Some(0), "{}", stdout(&tested));
    assert!(stdout(&tested).ends_with(" passed, 0 failed\n"), "{}", stdout(&tested));
    let tests = pack.join("pack_test.rego");
    let text = std::fs::read_to_string(&tests).unwrap();
    std::fs::write(
        &tests,
        text.replace("count(pack.sla_latency.violations) == 1", "count(pack.sla_latency.violations) == 3"),
    )
    .unwrap();
    let failed = run(&["policy", "test", pack.to_str().unwrap()]);
    assert_eq!(failed.status.code(), Some(1));
    let line = stdout(&failed).lines().find(|l| l.starts_with("FAIL")).unwrap_or_default().to_string();
    assert!(line.contains("pack_test.rego:49 data.meshplane.pack_test.test_sla_latency"), "{}", stdout(&failed));
}

#[test]
fn the_default_pack_is_in_force_when_the_platform_chooses_it() {
    let dir = std::env::temp_dir().join(format!("mp-pack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = write(
        &dir,
        "bad-platform.yaml",
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\npolicies:\n  pack: strict\n",
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_meshplane"))
        .args(["serve", "--platform", &bad, "--database-url", &format!("sqlite://{}", dir.join("x.db").display())])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("5:") && stderr(&refused).contains("strict"), "{}", stderr(&refused));

    let platform = write(
        &dir,
        "platform.yaml",
        "apiVersion: meshplane/v1\nkind: Platform\nenvironment: dev\npolicies:\n  pack: deny\n  domainPolicies: true\n",
    );
    let db = dir.join("pack.db");
    let s = crate::serve_with(&format!("sqlite://{}", db.display()), &["--platform", &platform]);
    let admin = token_for(&s.url).unwrap();
    let docs = s.cwd.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let bare = write(&docs, "bare.yaml", &contract("bare", false));
    let denied = as_(&admin, &["apply", "--server", &s.url, "-f", &bare]);
    assert_eq!(denied.status.code(), Some(1), "{}", stdout(&denied));
    let err = stderr(&denied);
    assert!(
        err.contains("policy: default-pack/owner-present") && err.contains("DataContract bare names no owning team"),
        "{err}"
    );
    // Active, it also needs an SLA and quality rules; a draft with a team passes.
    let err =
        stderr(&as_(&admin, &["apply", "--server", &s.url, "-f", &write(&docs, "t.yaml", &contract("teamed", true))]));
    assert!(err.contains("declares no latency SLA") && err.contains("has no quality rule"), "{err}");
    let draft = write(&docs, "teamed.yaml", &contract("teamed", true).replace("status: active", "status: draft"));
    let applied = as_(&admin, &["apply", "--server", &s.url, "-f", &draft]);
    assert_eq!(applied.status.code(), Some(0), "a draft with a team passes the pack: {}", stderr(&applied));

    // With `domainPolicies: true`, a domain admin writes its own domain's policies.
    let ana = domain_admin(&admin, &s.url, "ana", "sales");
    let sales = team_policy("warn", "[sales]").replace("domain: platform", "domain: sales");
    let own = as_(&ana, &["apply", "--server", &s.url, "-f", &write(&docs, "sales-policy.yaml", &sales)]);
    assert_eq!(own.status.code(), Some(0), "{}", stderr(&own));
}

/// `data.meshplane`: the mesh's domains and teams for every policy, its principals only for a
/// policy over several domains (a platform admin's, who may list them anyway).
#[test]
fn policies_read_the_mesh_as_data_and_only_platform_policies_see_principals() {
    let s = serve();
    let admin = token_for(&s.url).unwrap();
    let url = s.url.as_str();
    let dir = s.cwd.join("data-policies");
    std::fs::create_dir_all(&dir).unwrap();
    domain_admin(&admin, url, "ana", "sales");
    let policy = |id: &str, domains: &str, rule: &str| {
        format!(
            "apiVersion: meshplane/v1\nkind: Policy\nid: {id}\nversion: 1.0.0\ndomain: sales\nscope:\n  domains: {domains}\n\
             enforcement: warn\nrego: |\n  package meshplane.{}\n  {rule}\n",
            id.replace('-', "_")
        )
    };
    let counts = "violations contains sprintf(\"%d principals, %d domains\", [count(object.get(data.meshplane, \"principals\", [])), count(data.meshplane.domains)]) if input.after";
    let both = format!("{}---\n{}", policy("platform-wide", "['*']", counts), policy("sales-only", "[sales]", counts));
    let both = write(&dir, "policies.yaml", &both);
    assert_eq!(as_(&admin, &["apply", "--server", url, "-f", &both]).status.code(), Some(0));
    let applied = as_(&admin, &["apply", "--server", url, "-f", &write(&dir, "c.yaml", &contract("counted", true))]);
    let out = stdout(&applied);
    // The store's principals: the bootstrap admin and ana; the domains: platform's and sales's.
    assert!(out.contains("warning: policy platform-wide (rule platform-wide): 2 principals, 1 domains"), "{out}");
    assert!(out.contains("warning: policy sales-only (rule sales-only): 0 principals, 1 domains"), "{out}");
}

/// A platform admin exempts one resource from a policy, with a reason, until a time; once
/// that time passes the exemption stops applying by itself, and the resource is marked.
#[test]
fn an_exemption_applies_until_it_expires() {
    let s = serve();
    let admin = token_for(&s.url).unwrap();
    let url = s.url.as_str();
    let dir = s.cwd.join("exemptions");
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(
        as_(&admin, &["apply", "--server", url, "-f", &write(&dir, "p.yaml", &team_policy("deny", "['*']"))])
            .status
            .code(),
        Some(0)
    );
    let exemption = |id: &str, seconds: u64| {
        let until = std::time::SystemTime::now() + std::time::Duration::from_secs(seconds);
        format!(
            "apiVersion: meshplane/v1\nkind: PolicyExemption\nid: {id}\nversion: 1.0.0\ndomain: platform\npolicy: team-present\n\
             resources: [DataContract/legacy@v1]\nreason: the legacy team is being reorganised\nexpires: {}\n",
            humantime::format_rfc3339_seconds(until)
        )
    };
    let dana = domain_admin(&admin, url, "dana", "platform");
    let short = write(&dir, "e.yaml", &exemption("legacy-team", 8));
    let refused = as_(&dana, &["apply", "--server", url, "-f", &short]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("only platform admins exempt from policies"), "{}", stderr(&refused));
    assert_eq!(as_(&admin, &["apply", "--server", url, "-f", &short]).status.code(), Some(0));

    let legacy = write(&dir, "legacy.yaml", &contract("legacy", false));
    let applied = as_(&admin, &["apply", "--server", url, "-f", &legacy]);
    assert_eq!(applied.status.code(), Some(0), "exempt: {}", stderr(&applied));
    let other = as_(&admin, &["apply", "--server", url, "-f", &write(&dir, "o.yaml", &contract("other", false))]);
    assert_eq!(other.status.code(), Some(1), "only the named resource is exempt");
    assert_eq!(compliance(url, &admin, "legacy@v1", "True")["reason"], "Compliant");
    // When it expires, nothing is applied: the reconciler looks again by itself.
    let marked = compliance(url, &admin, "legacy@v1", "False");
    assert!(marked["message"].as_str().unwrap().contains("contract legacy names no team"), "{marked}");
    let got = as_(&admin, &["get", "exemptions", "legacy-team", "--server", url, "-o", "json"]);
    let body: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    let ready = body["reconciled"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").cloned();
    assert_eq!(ready.map(|c| c["reason"].clone()), Some(serde_json::json!("Expired")), "{body}");
}

/// A policy on access requests: reports are approved without a human, every grant lasts a
/// week at most, and a request must say what it is for.
const REPORTS: &str = "apiVersion: meshplane/v1\nkind: Policy\nid: reports\nversion: 2.0.0\ndomain: platform\n\
                       scope: { domains: ['*'] }\nactions: [access-request]\nenforcement: deny\nrego: |\n\
                       \x20 package meshplane.reports\n\
                       \x20 approve if contains(input.request.purpose, \"report\")\n\
                       \x20 max_days := 7\n\
                       \x20 violations contains \"say what the access is for\" if input.request.purpose == \"none\"\n";

#[test]
fn access_requests_show_what_the_policies_on_access_decided() {
    let s = serve();
    let admin = token_for(&s.url).unwrap();
    let url = s.url.as_str();
    let dir = s.cwd.join("access-policies");
    std::fs::create_dir_all(&dir).unwrap();
    let product = "apiVersion: v1.0.0\nkind: DataProduct\nid: shop\nstatus: active\ndomain: sales\nversion: 1.0.0\n\
                   team:\n  name: sales-team\noutputPorts:\n  - { name: orders, contractId: orders, version: 1.0.0 }\n";
    let docs = format!("{}---\n{product}---\n{REPORTS}", contract("orders", true));
    let file = write(&dir, "mesh.yaml", &docs);
    let applied = as_(&admin, &["apply", "--server", url, "-f", &file]);
    assert_eq!(applied.status.code(), Some(0), "{}", stderr(&applied));
    let put = as_(&admin, &["principal", "put", "carol", "--server", url]);
    assert_eq!(put.status.code(), Some(0), "{}", stderr(&put));
    let carol = stdout(&as_(&admin, &["token", "create", "--principal", "carol", "--server", url])).trim().to_string();

    let ask =
        |purpose: &str| as_(&carol, &["access", "request", "shop", "orders", "--purpose", purpose, "--server", url]);
    let granted = ask("weekly report");
    assert_eq!(granted.status.code(), Some(0), "{}", stderr(&granted));
    let table = stdout(&granted);
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(row.contains("active") && row.contains("shop/orders"), "{table}");
    assert!(
        table.contains("  policy reports@2.0.0 (approve): approves the request without a human decision"),
        "{table}"
    );
    assert!(table.contains("  policy reports@2.0.0 (cap): the grant lasts at most 7 days"), "{table}");

    let pending = stdout(&ask("ad hoc analysis"));
    assert!(pending.lines().nth(1).is_some_and(|l| l.contains("pending") && l.contains("sales-team")), "{pending}");

    let denied = ask("none");
    assert_eq!(denied.status.code(), Some(1));
    let why = stderr(&denied);
    assert!(why.contains("error[policy-denied]: policy `reports` denies access request"), "{why}");
    assert!(why.contains("recorded as rejected") && why.contains("say what the access is for"), "{why}");
    let rejected = stdout(&as_(&carol, &["access", "list", "--state", "rejected", "--server", url]));
    assert_eq!(rejected.lines().count(), 2, "{rejected}");
}

/// A module whose one step takes without end (comparing two values of 2^40 shared parts,
/// built in 80 cheap steps) when `trigger` holds.
fn bomb(trigger: &str) -> String {
    let mut rego = String::from("package meshplane.bomb\na0 := [\"x\"]\nb0 := [\"x\"]\n");
    for i in 1..=40 {
        rego.push_str(&format!("a{i} := [a{p}, a{p}]\nb{i} := [b{p}, b{p}]\n", p = i - 1));
    }
    rego.push_str(&format!("violations contains \"never\" if {{ {trigger}; a40 == b40 }}\n"));
    let indented: String = rego.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "apiVersion: meshplane/v1\nkind: Policy\nid: bomb\nversion: 1.0.0\ndomain: platform\n\
         scope: {{ domains: ['*'], kinds: [DataContract] }}\nenforcement: warn\nrego: |\n{indented}"
    )
}

/// The attack the time budget cannot stop (one step of the evaluation that never ends): the
/// server evaluates in a policy worker, stops it at the budget and a second, counts it as a
/// denial, and goes on serving.
#[test]
fn a_policy_whose_one_step_never_ends_is_stopped_in_its_worker_and_denies() {
    let s = serve();
    let admin = token_for(&s.url).unwrap();
    let url = s.url.as_str();
    let dir = s.cwd.join("bomb");
    std::fs::create_dir_all(&dir).unwrap();

    // Unconditional: its trial on an empty input never ends either, so it is refused, by the
    // CLI before sending (in a worker of its own) and by the server.
    let always = bomb("true");
    let path = write(&dir, "always.yaml", &always);
    let stopped = "ran past its budget of 50 ms, and its worker was stopped";
    let refused = as_(&admin, &["apply", "--server", url, "-f", &path]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains(stopped), "{}", stderr(&refused));
    let client = reqwest::blocking::Client::new();
    let answer = client.post(format!("{url}/api/v1/apply")).bearer_auth(&admin).body(always.clone()).send().unwrap();
    let status = answer.status().as_u16();
    let body: serde_json::Value = answer.json().unwrap();
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid-document")), "{body}");
    assert!(body.to_string().contains(stopped), "{body}");

    // A module whose parsing takes time exponential in its nesting (10 comprehensions deep, in
    // a rule's body, the deepest the nesting limit lets through) is parsed only in a worker,
    // which is stopped. One such expression parses in about the budget on a fast machine; the
    // body holds 32 of them, so that the parse takes far longer than the budget on any.
    let mut nest = String::from("[1,1,1]");
    for _ in 0..10 {
        nest = format!("{{a | {nest} : 1}}");
    }
    let body = vec![format!("x == {nest}"); 32].join("; ");
    let slow_parse = always.replace("true; a40 == b40", &body);
    assert!(slow_parse.contains("x == {a |"), "{slow_parse}");
    let slow_parse = slow_parse.replace("package meshplane.bomb\n", "package meshplane.bomb\n  x := 1\n");
    let answer = client.post(format!("{url}/api/v1/apply")).bearer_auth(&admin).body(slow_parse).send().unwrap();
    let body: serde_json::Value = answer.json().unwrap();
    assert_eq!(body["code"], "invalid-document", "{body}");
    assert!(body.to_string().contains(stopped), "{body}");

    // Set off by one document: applied, then that document's apply is denied — warn or not —
    // while the policies asked before and after it answer for themselves.
    let said = |id: &str, message: &str| {
        format!(
            "apiVersion: meshplane/v1\nkind: Policy\nid: {id}\nversion: 1.0.0\ndomain: platform\n\
             scope: {{ domains: ['*'] }}\nenforcement: deny\nrego: |\n  package meshplane.{id}\n  \
             violations contains \"{message}\" if input.after.id == \"victim\"\n"
        )
    };
    let neighbours = format!("{}---\n{}", said("afore", "asked before"), said("later", "asked after"));
    let neighbours = write(&dir, "neighbours.yaml", &neighbours);
    assert_eq!(as_(&admin, &["apply", "--server", url, "-f", &neighbours]).status.code(), Some(0));
    let armed = write(&dir, "armed.yaml", &bomb("input.after.id == \"victim\""));
    let applied = as_(&admin, &["apply", "--server", url, "-f", &armed]);
    assert_eq!(applied.status.code(), Some(0), "{}", stderr(&applied));
    let victim = write(&dir, "victim.yaml", &contract("victim", true));
    let denied = as_(&admin, &["apply", "--server", url, "-f", &victim]);
    assert_eq!(denied.status.code(), Some(1), "{}", stderr(&denied));
    let why = stderr(&denied);
    assert!(why.contains("error[policy-denied]") && why.contains("its worker was stopped"), "{why}");
    let answer = client.post(format!("{url}/api/v1/apply")).bearer_auth(&admin).body(contract("victim", true)).send();
    let body: serde_json::Value = answer.unwrap().json().unwrap();
    let each: Vec<(&str, &str)> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["policy"].as_str().unwrap(), d["message"].as_str().unwrap()))
        .collect();
    // The bomb went off a moment ago (the apply above): it counts as a denial without running.
    let stopped_at = "the policy could not be evaluated, which counts as a denial: it ran past its budget of 50 ms, \
                      and its worker was stopped a moment ago; it is not run again for 60 s";
    assert_eq!(each, [("afore", "asked before"), ("bomb", stopped_at), ("later", "asked after")], "{body}");
    // For that minute the bomb denies every contract it covers; what it does not cover goes
    // through, and the server answers as before.
    let fine = write(&dir, "fine.yaml", &contract("fine", true));
    let held = as_(&admin, &["apply", "--server", url, "-f", &fine]);
    assert!(stderr(&held).contains("it is not run again for 60 s"), "{}", stderr(&held));
    let product = "apiVersion: v1.0.0\nkind: DataProduct\nid: shelf\nstatus: active\ndomain: sales\nversion: 1.0.0\n\
                   team:\n  name: sales-team\n";
    let product = write(&dir, "product.yaml", product);
    let applied = as_(&admin, &["apply", "--server", url, "-f", &product]);
    assert_eq!(applied.status.code(), Some(0), "{}", stderr(&applied));
    let listed = stdout(&as_(&admin, &["get", "products", "--server", url]));
    assert!(listed.contains("shelf"), "{listed}");
}
