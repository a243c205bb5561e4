use meshplane_spec::{Document, load};
use serde_json::json;

use super::*;

fn policy(rego: &str) -> Policy {
    let indented: String = rego.lines().map(|l| format!("  {l}\n")).collect();
    let text = format!(
        "apiVersion: meshplane/v1\nkind: Policy\nid: owner-present\nversion: 1.0.0\ndomain: platform\n\
         enforcement: deny\nrego: |\n{indented}"
    );
    let loaded = load(&text).documents.remove(0);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let Some(Document::Policy(policy)) = loaded.document else { panic!("not a policy") };
    *policy
}

const OWNER: &str = r#"package meshplane.owner

violations contains {"msg": "the contract names no team", "path": "team"} if {
  not input.after.team
}
"#;

#[test]
fn a_violation_names_its_rule_message_and_path() {
    let compiled = compile(&policy(OWNER)).unwrap();
    let verdict = compiled.evaluate(&Input::new(&json!({"after": {"id": "orders"}})), None, DEFAULT_BUDGET);
    let expected = Violation {
        rule: "owner-present".into(),
        message: "the contract names no team".into(),
        path: Some("team".into()),
    };
    assert_eq!(verdict, Verdict::Violated(vec![expected]));
    let fine = compiled.evaluate(
        &Input::new(&json!({"after": {"id": "orders", "team": {"name": "sales"}}})),
        None,
        DEFAULT_BUDGET,
    );
    assert_eq!(fine, Verdict::Pass);
}

#[test]
fn a_syntax_error_is_reported_at_its_line_in_the_document() {
    let problems =
        compile(&policy("package meshplane.x\n\nviolations contains msg if {\n  msg := \n}\n")).err().unwrap();
    // The module starts on line 8 of the document (after `rego: |` on line 7).
    assert_eq!(problems[0].code, Code::RegoInvalid);
    assert_eq!(problems[0].span.start.line, 11, "{problems:?}");
    assert!(problems[0].message.starts_with("Rego line 4, column 7: expecting"), "{problems:?}");
}

#[test]
fn unsafe_variables_recursion_and_a_missing_rule_are_refused() {
    // What only running finds is found by the trial (a server runs it in a policy worker).
    let unsafe_module = policy("package meshplane.x\nviolations contains msg if {\n  msg := y\n}\n");
    assert!(compile(&unsafe_module).is_ok(), "preparing runs nothing of the module");
    let unsafe_var = check(&unsafe_module, &worker::Runner::InProcess).err().unwrap();
    assert!(unsafe_var[0].message.contains("var y is unsafe"), "{unsafe_var:?}");
    assert_eq!(unsafe_var[0].span.start.line, 10);
    let recursion =
        check(&policy("package meshplane.x\na if b\nb if a\nviolations contains 1 if a\n"), &worker::Runner::InProcess)
            .err()
            .unwrap();
    assert!(recursion[0].message.contains("recursion"), "{recursion:?}");
    let silent = compile(&policy("package meshplane.x\nallow := true\n")).err().unwrap();
    assert!(silent[0].message.contains("no `violations` rule"), "{silent:?}");
}

/// A policy's author may be hostile: a built-in that reads the server's environment or makes
/// a value of any size in one step (past the budget's reach) is refused at compile time.
#[test]
fn built_ins_outside_the_allow_list_are_refused_with_their_line() {
    for (call, refused) in [
        ("opa.runtime()", "`opa.runtime` is not a built-in"),
        ("numbers.range(1, 100000000000)", "`numbers.range` is not a built-in"),
        ("replace(input.a, \"a\", \"aaaaaaaa\")", "`replace` is not a built-in"),
        ("net.lookup_ip_addr(\"example.com\")", "`net.lookup_ip_addr` is not a built-in"),
        ("sprintf(\"%0900000000d\", [1])", "`sprintf` needs a literal format"),
        ("sprintf(input.format, [1])", "`sprintf` needs a literal format"),
        ("nosuch(1)", "`nosuch` is not a built-in"),
        ("strings.count(input.a, \"\")", "`strings.count` is not a built-in"),
        ("json.marshal(input)", "`json.marshal` is not a built-in"),
        ("count(1, 300000000) with count as numbers.range", "`with` may replace only `input` in a policy, not `count`"),
    ] {
        let rego = format!("package meshplane.x\n\nviolations contains x if {{\n  x := {call}\n}}\n");
        let problems = compile(&policy(&rego)).err().unwrap_or_else(|| panic!("{call} was compiled"));
        assert!(problems[0].message.contains(refused), "{call}: {problems:?}");
        assert_eq!(problems[0].span.start.line, 11, "{call}: {problems:?}");
    }
    // A module too deep for its syntax tree to be read is refused, not let through unchecked.
    let deep = format!(
        "package meshplane.x\npad := {}1{}\nviolations contains numbers.range(1, 9)\n",
        "[".repeat(200),
        "]".repeat(200)
    );
    let problems = compile(&policy(&deep)).err().expect("a module too deep to check");
    assert!(problems[0].message.contains("nests brackets more than 12 deep"), "{problems:?}");
    let quoted =
        format!("package meshplane.x\n# {}\nviolations contains \"{}\" if input.a\n", "[".repeat(50), "{".repeat(50));
    assert!(compile(&policy(&quoted)).is_ok(), "brackets in comments and strings do not count");
    let big = format!("package meshplane.x\nviolations contains 1 if false\n{}", "# padding\n".repeat(2000));
    assert!(compile(&policy(&big)).err().unwrap()[0].message.contains("more than the 16384"));
    let own = "package meshplane.x\nlabel(n) := sprintf(\"%s!\", [n])\nviolations contains label(input.a) if input.a\n";
    assert!(compile(&policy(own)).is_ok(), "a policy's own functions and a plain sprintf are fine");
}

#[test]
fn an_evaluation_past_its_budget_fails_closed() {
    let rego = "package meshplane.x\nviolations contains x if {\n  some a in input.n\n  some b in input.n\n  some c in input.n\n  x := a + b + c\n  x < 0\n}\n";
    let compiled = compile(&policy(rego)).unwrap();
    let input = json!({"n": (0..1000).collect::<Vec<_>>()});
    let verdict = compiled.evaluate(&Input::new(&input), None, Duration::from_millis(20));
    assert_eq!(verdict, Verdict::Failed("it ran past its budget of 20 ms".into()));
    assert_eq!(compiled.evaluate(&Input::new(&json!({"n": [1, 2]})), None, DEFAULT_BUDGET), Verdict::Pass);
}

#[test]
fn messages_may_be_plain_strings_and_rules_named_by_the_policy() {
    let rego = "package meshplane.x\nviolations contains \"plain\" if input.a\nviolations contains {\"rule\": \"named\", \"msg\": \"m\"} if input.a\n";
    let Verdict::Violated(mut found) =
        compile(&policy(rego)).unwrap().evaluate(&Input::new(&json!({"a": true})), None, DEFAULT_BUDGET)
    else {
        panic!("no violation")
    };
    found.sort_by(|a, b| a.rule.cmp(&b.rule));
    assert_eq!(found[0], Violation { rule: "named".into(), message: "m".into(), path: None });
    assert_eq!(found[1], Violation { rule: "owner-present".into(), message: "plain".into(), path: None });
}

#[test]
fn unit_tests_run_against_the_policy_with_their_places() {
    let document = policy(OWNER);
    let tests = "package meshplane.owner\n\n\
                 test_a_team_passes if {\n  count(violations) == 0 with input as {\"after\": {\"team\": {\"name\": \"t\"}}}\n}\n\n\
                 test_no_team_fails if {\n  count(violations) == 1 with input as {\"after\": {}}\n}\n\n\
                 test_wrong if {\n  count(violations) == 5 with input as {\"after\": {}}\n}\n";
    let sources = [
        Source { file: "owner.yaml".into(), text: document.rego.clone(), first_line: document.rego_line() },
        Source { file: "owner_test.rego".into(), text: tests.into(), first_line: 1 },
    ];
    let outcomes = run_tests(&sources, DEFAULT_BUDGET).unwrap();
    let summary: Vec<(&str, u32, bool)> =
        outcomes.iter().map(|t| (t.name.rsplit('.').next().unwrap(), t.line, t.passed)).collect();
    assert_eq!(summary, [("test_a_team_passes", 3, true), ("test_no_team_fails", 7, true), ("test_wrong", 11, false)]);
    assert!(outcomes.iter().all(|t| t.file == "owner_test.rego"));
    assert!(outcomes[2].failure.as_deref().unwrap().starts_with("undefined"), "{outcomes:?}");

    let broken = [Source { file: "bad_test.rego".into(), text: "package x\n\ntest_a if {\n".into(), first_line: 1 }];
    let problems = run_tests(&broken, DEFAULT_BUDGET).unwrap_err();
    assert!(problems[0].starts_with("bad_test.rego:"), "{problems:?}");
    // A policy document's module is placed at its line in the document.
    let in_document = [Source { file: "p.yaml".into(), text: "package x\n\nwhat is this\n".into(), first_line: 8 }];
    let problems = run_tests(&in_document, DEFAULT_BUDGET).unwrap_err();
    assert!(problems[0].starts_with("p.yaml:10:"), "{problems:?}");
}

#[test]
fn the_default_pack_compiles_and_passes_its_own_tests() {
    let policies = pack("deny");
    assert_eq!(policies.len(), PACK.iter().filter(|(n, _)| n.ends_with(".yaml")).count());
    let mut sources = Vec::new();
    for policy in &policies {
        assert_eq!(policy.enforcement, "deny");
        assert!(compile(policy).is_ok(), "{} does not compile: {:?}", policy.id, compile(policy).err());
        sources.push(Source { file: policy.id.clone(), text: policy.rego.clone(), first_line: policy.rego_line() });
    }
    let (_, tests) = PACK.iter().find(|(n, _)| n.ends_with(".rego")).unwrap();
    sources.push(Source { file: "pack_test.rego".into(), text: tests.to_string(), first_line: 1 });
    let outcomes = run_tests(&sources, DEFAULT_BUDGET).unwrap();
    assert!(outcomes.len() >= policies.len(), "a test per rule at least: {outcomes:?}");
    let failed: Vec<_> = outcomes.iter().filter(|t| !t.passed).collect();
    assert!(failed.is_empty(), "{failed:?}");
}

/// A value built of shared parts is small in memory and huge written out: the answer is read
/// item by item, never serialized.
#[test]
fn an_answer_of_shared_parts_is_not_written_out() {
    let mut rego = String::from("package meshplane.x\na0 := [\"x\"]\n");
    for i in 1..=40 {
        rego.push_str(&format!("a{i} := [a{}, a{}]\n", i - 1, i - 1));
    }
    rego.push_str("violations contains a40 if input.go\n");
    let verdict = compile(&policy(&rego)).unwrap().evaluate(&Input::new(&json!({"go": true})), None, DEFAULT_BUDGET);
    let Verdict::Violated(found) = verdict else { panic!("{verdict:?}") };
    assert_eq!(found[0].message, "a violation that is neither a message nor an object with `msg`");
}

fn access_policy(rego: &str) -> Policy {
    Policy { actions: Some(vec!["access-request".into()]), ..policy(rego) }
}

const ACCESS: &str = r#"package meshplane.access

pii if { some p in input.properties; p.classification == "pii" }

approve if { not pii; input.request.access == "read" }
approvers contains "dpo" if pii
max_days := 30 if pii
max_days := 365 if not pii
violations contains "a purpose of at least 10 characters" if { pii; count(input.request.purpose) < 10 }
"#;

#[test]
fn a_policy_on_access_approves_requires_approvers_and_caps() {
    let compiled = compile(&access_policy(ACCESS)).unwrap();
    let ask = |classification: &str, purpose: &str| {
        let input = json!({
            "request": { "access": "read", "purpose": purpose },
            "properties": [{ "name": "email", "classification": classification }],
        });
        compiled.decide(&Input::new(&input), None, DEFAULT_BUDGET)
    };
    let (verdict, plain) = ask("public", "reporting");
    assert_eq!(verdict, Verdict::Pass);
    assert_eq!(plain, AccessAnswer { approve: true, approvers: vec![], max_days: Some(365.0) });
    let (verdict, pii) = ask("pii", "monthly close of the books");
    assert_eq!(verdict, Verdict::Pass);
    assert_eq!(pii, AccessAnswer { approve: false, approvers: vec!["dpo".into()], max_days: Some(30.0) });
    let (verdict, _) = ask("pii", "x");
    assert!(matches!(verdict, Verdict::Violated(ref v) if v[0].message.contains("purpose")), "{verdict:?}");
}

#[test]
fn an_access_answer_of_the_wrong_shape_fails_closed() {
    for (rego, expected) in [
        ("approve := \"yes\"", "`approve` must be true or false"),
        ("approvers := {1, 2}", "`approvers` must hold names"),
        ("max_days := 0", "`max_days` must be a number of days above 0"),
        ("max_days := \"30\"", "`max_days` must be a number of days above 0"),
        ("max_days := 3000000", "at most 36500"),
        ("max_days := input.days", ""),
    ] {
        let compiled = compile(&access_policy(&format!("package meshplane.x\n{rego}\n"))).unwrap();
        let (verdict, answer) = compiled.decide(&Input::new(&json!({"days": -1})), None, DEFAULT_BUDGET);
        let Verdict::Failed(why) = verdict else { panic!("{rego}: {verdict:?}") };
        assert!(why.contains(if expected.is_empty() { "above 0" } else { expected }), "{rego}: {why}");
        assert_eq!(answer, AccessAnswer::default(), "a failed evaluation answers nothing");
    }
    // Two values for one cap are an error (of the module or of the evaluation), never one of them.
    match compile(&access_policy("package meshplane.x\nmax_days := 30\nmax_days := 90 if true\n")) {
        Err(problems) => assert_eq!(problems[0].code, Code::RegoInvalid),
        Ok(compiled) => {
            let (verdict, _) = compiled.decide(&Input::new(&json!({})), None, DEFAULT_BUDGET);
            assert!(matches!(verdict, Verdict::Failed(_)), "{verdict:?}");
        }
    }
}

#[test]
fn access_rules_belong_to_policies_on_access() {
    let stray =
        compile(&policy("package meshplane.x\nviolations contains 1 if false\napprove := true\n")).err().unwrap();
    assert!(stray[0].message.contains("`approve` answers only policies on access"), "{stray:?}");
    let silent = compile(&access_policy("package meshplane.x\nallow := true\n")).err().unwrap();
    assert!(silent[0].message.contains("none of the rules a policy on access answers through"), "{silent:?}");
    let cap_only = compile(&access_policy("package meshplane.x\nmax_days := 7\n")).unwrap();
    assert_eq!(cap_only.evaluate(&Input::new(&json!({})), None, DEFAULT_BUDGET), Verdict::Pass);
}

/// Compiling runs nothing of a module, whatever its rules are named: a module whose one step
/// never ends (comparing two values of 2^40 shared parts) compiles at once.
#[test]
fn compiling_runs_no_rule_of_the_module() {
    let mut rego = String::from("package meshplane.bomb\na0 := [\"x\"]\nb0 := [\"x\"]\n");
    for i in 1..=40 {
        rego.push_str(&format!("a{i} := [a{p}, a{p}]\nb{i} := [b{p}, b{p}]\n", p = i - 1));
    }
    for name in ["violations contains 1 if", "meshplane_prepare_only if", "prepare if", "x if"] {
        rego.push_str(&format!("{name} a40 == b40\n"));
    }
    assert!(compile(&policy(&rego)).is_ok());
}

#[test]
fn a_failure_message_is_cut_to_the_length_of_a_message() {
    // One step makes an error whose text is megabytes long: what is reported is bounded.
    let mut rego = String::from("package meshplane.x\na0 := [\"x\"]\n");
    for i in 1..=16 {
        rego.push_str(&format!("a{i} := [a{p}, a{p}]\n", p = i - 1));
    }
    rego.push_str("violations contains x if { x := union({{1}, a16}) }\n");
    let compiled = compile(&policy(&rego)).unwrap();
    let Verdict::Failed(why) = compiled.evaluate(&Input::new(&json!({})), None, DEFAULT_BUDGET) else { panic!() };
    assert!(why.chars().count() <= MAX_MESSAGE_CHARS, "{} characters", why.chars().count());
}

/// regorus's parser recurses once per unary minus sign, without a limit, and takes time
/// quadratic in their number (5,000 take seconds, and overflow a thread's stack): a run of
/// them is refused before it is parsed, and parsing runs on a deep stack anyway.
#[test]
fn a_chain_of_unary_operators_is_refused_before_parsing() {
    let chain = "-\n".repeat(5_000);
    let rego = format!("package meshplane.x\nviolations contains 1 if {{ input.action; x := {chain}1; x }}\n");
    let problems = compile(&policy(&rego)).err().unwrap();
    assert!(problems[0].message.contains("minus signs in a row"), "{problems:?}");
    // Tests are scanned the same way before they are parsed.
    let source = Source { file: "t.rego".into(), text: rego.clone(), first_line: 1 };
    let refused = run_tests(&[source], DEFAULT_BUDGET).err().unwrap();
    assert!(refused[0].starts_with("t.rego:1: ") && refused[0].contains("minus signs"), "{refused:?}");
    // A comment between them is space to the lexer, and to the scan.
    let commented = rego.replace("-\n", "-#\n");
    assert!(prescan(&policy(&commented)).is_err(), "comments do not hide a run");
    let fine = "package meshplane.x\nviolations contains 1 if { x := 3 - -1; x > 0 }\n";
    assert!(compile(&policy(fine)).is_ok(), "a subtraction of a negative number is fine");
}
