//! One output flag for every command (`-o table|json|yaml`, `junit` for `test`, before or
//! after the subcommand), errors in the machine formats on standard error, and what
//! `--server` (the registry) and `--contract-server` (a contract's server) accept.

use super::{meshplane, meshplane_in, serve, stdout};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_output_flag_goes_before_or_after_the_subcommand() {
    let after = meshplane(&["lint", "bad/orders.odcs.yaml", "-o", "json"]);
    let before = meshplane(&["-o", "json", "lint", "bad/orders.odcs.yaml"]);
    assert_eq!(after.status.code(), Some(1));
    assert_eq!(before.status.code(), Some(1));
    assert_eq!(stdout(&before), stdout(&after));
    let report: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    assert!(report["summary"]["errors"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn human_is_the_old_name_of_table_and_yaml_holds_what_json_holds() {
    let table = meshplane(&["lint", "bad/orders.odcs.yaml"]);
    let human = meshplane(&["lint", "-o", "human", "bad/orders.odcs.yaml"]);
    assert_eq!(stdout(&human), stdout(&table));
    assert!(stdout(&table).contains("error["), "{}", stdout(&table));
    let json = meshplane(&["diff", "diff/v1.odcs.yaml", "diff/v1.1.odcs.yaml", "-o", "json"]);
    let yaml = meshplane(&["diff", "diff/v1.odcs.yaml", "diff/v1.1.odcs.yaml", "-o", "yaml"]);
    assert_eq!(json.status.code(), yaml.status.code());
    let from_json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let from_yaml = meshplane_spec::tree::parse(&stdout(&yaml)).unwrap().documents[0].to_json();
    assert_eq!(from_yaml, from_json);
    assert!(from_json["changes"].as_array().is_some_and(|c| !c.is_empty()), "{from_json}");
}

#[test]
fn junit_is_refused_outside_test_with_what_the_command_prints() {
    let out = meshplane(&["lint", "-o", "junit", "mesh/sales"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`-o junit` is for `meshplane test`; `meshplane lint` prints table, json or yaml"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    // Every command but `test`, the registry's too, before anything is sent.
    let out = meshplane(&["-o", "junit", "get", "contracts", "--server", "http://127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`meshplane get` prints table, json or yaml"), "{}", stderr(&out));
}

#[test]
fn in_json_mode_errors_are_json_on_stderr_with_code_message_and_details() {
    let s = serve();
    let missing = meshplane(&["-o", "json", "get", "contracts", "nothing@v1", "--server", &s.url]);
    assert_eq!(missing.status.code(), Some(1));
    let error: serde_json::Value = serde_json::from_str(stderr(&missing).trim()).unwrap();
    assert_eq!(error["code"], "not-found", "{error}");
    assert!(error["message"].as_str().unwrap().contains("nothing@v1"), "{error}");
    assert!(error.as_object().unwrap().contains_key("details"), "{error}");
    assert!(missing.stdout.is_empty());
    // A failure of the client itself has the same shape.
    let down = meshplane(&["get", "contracts", "-o", "json", "--server", "http://127.0.0.1:9"]);
    assert_eq!(down.status.code(), Some(2));
    let error: serde_json::Value = serde_json::from_str(stderr(&down).trim()).unwrap();
    assert_eq!(error["code"], "client-error", "{error}");
    assert!(error["message"].as_str().unwrap().contains("cannot reach the meshplane server"), "{error}");
    // For people, the same refusal is a line.
    let table = meshplane(&["get", "contracts", "nothing@v1", "--server", &s.url]);
    assert!(stderr(&table).starts_with("error[not-found]: "), "{}", stderr(&table));
}

#[test]
fn a_server_url_ending_in_the_api_path_is_understood_and_one_without_a_scheme_gets_a_hint() {
    let s = serve();
    for url in [s.url.clone(), format!("{}/", s.url), format!("{}/api/v1", s.url), format!("{}/api/v1/", s.url)] {
        let token = super::token_for(&s.url).unwrap();
        let out = meshplane(&["get", "contracts", "--server", &url, "--token", &token]);
        assert_eq!(out.status.code(), Some(0), "{url}: {}", stderr(&out));
    }
    let bare = s.url.trim_start_matches("http://").to_string();
    let cases = [
        (bare.clone(), format!("--server `{bare}` has no scheme: did you mean http://{bare}?")),
        ("ftp://127.0.0.1:21".to_string(), "is not http or https".to_string()),
        (format!("{}?x=1", s.url), "has a query or a fragment".to_string()),
    ];
    for (url, message) in cases {
        let out = meshplane(&["get", "contracts", "--server", &url]);
        assert_eq!(out.status.code(), Some(2), "{url}");
        assert!(stderr(&out).contains(&message), "{url}: {}", stderr(&out));
    }
    // Credentials in the URL are refused without being repeated.
    let out = meshplane(&["get", "contracts", "--server", "http://admin:hunter2@127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--server carries credentials"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
}

#[test]
fn test_takes_the_contract_server_as_contract_server_and_the_old_spelling_with_a_warning() {
    let new = meshplane(&["test", "test/two-servers.odcs.yaml", "--contract-server", "b"]);
    assert!(stderr(&new).contains("of type snowflake"), "{}", stderr(&new));
    assert!(!stderr(&new).contains("warning"), "{}", stderr(&new));
    let old = meshplane(&["test", "test/two-servers.odcs.yaml", "--server", "b"]);
    assert_eq!(old.status.code(), new.status.code());
    assert!(stderr(&old).contains("warning: `meshplane test --server` is now --contract-server"), "{}", stderr(&old));
    assert!(stderr(&old).contains("of type snowflake"), "{}", stderr(&old));
}

#[test]
fn a_contract_asked_for_by_its_id_alone_is_answered_with_the_names_it_has() {
    let s = serve();
    let applied = meshplane(&["apply", "--server", &s.url, "-f", "mesh/sales/orders.odcs.yaml"]);
    assert_eq!(applied.status.code(), Some(0), "{}", stderr(&applied));
    for asked in ["orders", "orders@v7"] {
        let out = meshplane(&["get", "contracts", asked, "--server", &s.url]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains(&format!("DataContract `{asked}` not found; did you mean orders@v1?")),
            "{}",
            stderr(&out)
        );
    }
    let out = meshplane(&["get", "contracts", "orders", "-o", "json", "--server", &s.url]);
    let error: serde_json::Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(error["details"]["didYouMean"], serde_json::json!(["orders@v1"]), "{error}");
    // Nothing near: no guess.
    let out = meshplane(&["get", "contracts", "invoices", "--server", &s.url]);
    assert!(!stderr(&out).contains("did you mean"), "{}", stderr(&out));
}

#[test]
fn lint_of_a_directory_lists_what_it_skipped_and_why() {
    let out = meshplane(&["lint", "skipped"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for (file, why) in [
        (
            "skipped/datacontract.yaml",
            "this is a Data Contract Specification 1.1.0 document (datacontract-cli's first format), not ODCS",
        ),
        ("skipped/deploy.yaml", "`kind: Deployment` is neither DataContract nor DataProduct"),
        ("skipped/workflow.yaml", "no `kind: DataContract` or `kind: DataProduct`"),
        ("skipped/broken.yaml", "not valid YAML or JSON"),
    ] {
        assert!(text.contains(&format!("note: skipped {file}: {why}")), "{file}: {text}");
    }
    assert!(text.contains("0 file(s) checked"), "{text}");
    let json = meshplane(&["lint", "skipped", "-o", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["summary"]["skipped"], 4, "{report}");
    assert!(report["skipped"][0]["reason"].is_string(), "{report}");
    // Named on the command line, the same file is an error that says what it is.
    let named = meshplane(&["lint", "skipped/datacontract.yaml"]);
    assert_eq!(named.status.code(), Some(1));
    assert!(stdout(&named).contains("error[data-contract-specification]"), "{}", stdout(&named));
    assert!(stdout(&named).contains("datacontract export --format odcs"), "{}", stdout(&named));
}

#[test]
fn completions_are_printed_for_each_shell_and_bash_loads_them() {
    let bash = meshplane(&["completions", "bash"]);
    assert_eq!(bash.status.code(), Some(0));
    let script = stdout(&bash);
    assert!(script.contains("apply") && script.contains("--contract-server"), "{script}");
    let loaded = std::process::Command::new("bash")
        .args(["-c", "source /dev/stdin; complete -p meshplane"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("meshplane"), "{loaded:?}");
    for (shell, mark) in [("zsh", "#compdef meshplane"), ("fish", "complete -c meshplane")] {
        let out = meshplane(&["completions", shell]);
        assert!(stdout(&out).contains(mark), "{shell}: {}", stdout(&out));
    }
    assert_eq!(meshplane(&["completions", "tcsh"]).status.code(), Some(2));
}

/// The sales fixtures with `orders` 1.0.0 changed to 1.1.0 with an optional property more
/// and the product's description added, in a directory of their own.
fn changed_sales() -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("mpcli-changed-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::create_dir_all(&dir).unwrap();
    let contract = "apiVersion: v3.2.0\nkind: DataContract\nid: orders\nversion: 1.1.0\nstatus: active\ndomain: sales\n\
                    schema:\n  - name: orders\n    properties:\n      - name: id\n        logicalType: string\n        required: true\n\
                    \x20     - name: total\n        logicalType: number\n";
    std::fs::write(dir.join("orders.odcs.yaml"), contract).unwrap();
    let product = std::fs::read_to_string(super::fixtures().join("mesh/sales/product.yaml")).unwrap();
    let product = product.replacen("version: 1.0.0\nstatus", "version: 1.1.0\nstatus", 1);
    std::fs::write(dir.join("product.odps.yaml"), format!("{product}description:\n  purpose: Orders, daily\n"))
        .unwrap();
    dir
}

#[test]
fn diff_against_the_registry_apply_dry_run_and_history_show_say_what_changes_and_what_was() {
    let s = serve();
    let applied =
        meshplane(&["apply", "--server", &s.url, "-f", "mesh/sales/orders.odcs.yaml", "-f", "mesh/sales/product.yaml"]);
    assert_eq!(applied.status.code(), Some(0), "{}", stderr(&applied));
    let dir = changed_sales();
    let contract = dir.join("orders.odcs.yaml").display().to_string();
    let diffed = meshplane(&["diff", "-f", &contract, "--server", &s.url]);
    let text = stdout(&diffed);
    assert_eq!(diffed.status.code(), Some(0), "a minor bump for an added property: {text}");
    assert!(text.contains("orders@v1 (stored) →"), "{text}");
    assert!(text.contains("contract `orders`: 1.0.0 → 1.1.0"), "{text}");
    assert!(text.contains("ok       property-added") && text.contains("properties[total]"), "{text}");
    let json = meshplane(&["diff", "-f", &contract, "--server", &s.url, "-o", "json"]);
    let reports: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(reports[0]["stored"], "orders@v1", "{reports}");
    assert_eq!(reports[0]["report"]["changes"].as_array().unwrap().len(), 2, "{reports}");

    let dry = meshplane(&["apply", "--server", &s.url, "-f", &dir.display().to_string(), "--dry-run"]);
    let text = stdout(&dry);
    assert_eq!(dry.status.code(), Some(0), "{text}{}", stderr(&dry));
    assert!(text.contains("orders@v1:\ncontract `orders`: 1.0.0 → 1.1.0"), "{text}");
    let product = &text[text.find("sales-orders:\n").expect("the product's changes")..];
    assert!(product.contains("\n  ~ version: \"1.0.0\" → \"1.1.0\"\n"), "{text}");
    assert!(product.contains("\n  + description: {\"purpose\":\"Orders, daily\"}\n"), "{text}");

    let shown = meshplane(&["history", "contracts", "orders@v1", "--show", "1", "--server", &s.url]);
    assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
    let document = meshplane_spec::tree::parse(&stdout(&shown)).unwrap().documents[0].to_json();
    assert_eq!(document["version"], "1.0.0", "{document}");
    assert_eq!(document["schema"][0]["properties"][0]["name"], "id", "{document}");
    let none = meshplane(&["history", "contracts", "orders@v1", "--show", "9", "--server", &s.url]);
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr(&none).contains("has no generation 9 (it has: 1)"), "{}", stderr(&none));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_duration_check_reads_in_durations_in_the_table_and_in_seconds_for_machines() {
    let dir = std::env::temp_dir().join(format!("mpcli-durations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("events.csv"), "id,at\n1,2020-01-01T00:00:00Z\n2,2020-06-01T00:00:00Z\n").unwrap();
    let contract = "apiVersion: v3.2.0\nkind: DataContract\nid: events\nversion: 1.0.0\nstatus: active\n\
                    servers:\n  - { server: local, type: local, path: events.csv, format: csv }\n\
                    schema:\n  - name: events\n    properties:\n      - { name: id, logicalType: integer }\n\
                    \x20     - { name: at, logicalType: timestamp }\n\
                    slaProperties:\n  - { property: retention, value: 36, unit: h, element: events.at }\n";
    std::fs::write(dir.join("events.odcs.yaml"), contract).unwrap();
    let out = meshplane_in(&dir, &["test", "events.odcs.yaml"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "the oldest row is years old: {text}{}", stderr(&out));
    let line = text.lines().find(|l| l.contains("events.at.retention")).expect("the retention check");
    assert!(line.contains("years") && line.contains("(expected < 1day 12h)"), "{line}");
    let json = meshplane_in(&dir, &["test", "events.odcs.yaml", "-o", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let check = report["results"].as_array().unwrap().iter().find(|r| r["key"] == "events.at.retention").unwrap();
    assert!(check["value"].as_f64().unwrap() > 86_400.0 * 365.0, "{check}");
    let _ = std::fs::remove_dir_all(dir);
}
