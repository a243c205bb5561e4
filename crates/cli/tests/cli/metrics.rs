//! `/metrics` end to end: what a server counts and what the store says, as `promtool` and a
//! real Prometheus (Debian's `prometheus`, which `test.sh` installs) read them; the shipped
//! alerting rules and dashboard name only series the server exports.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::paths::apply_visits;
use crate::{free_port, post_apply, repo, serve, serve_with, stdout, token_for};

/// The exposition as a signed-in caller reads it on the API port.
fn scrape(url: &str) -> String {
    let res = reqwest::blocking::Client::new()
        .get(format!("{url}/metrics"))
        .bearer_auth(token_for(url).unwrap())
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let kind = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    res.text().unwrap()
}

/// The value of the sample `series` (name and labels exactly as exposed), if it is there.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `promtool check metrics` on `text`: its findings, if any.
fn promtool_findings(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; test.sh installs it)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { said } else { format!("exit {:?}: {said}", out.status.code()) }
}

/// Every `meshplane_...` family a file names (histogram and counter sample suffixes taken off).
fn families_named(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("meshplane_") {
        let name: String =
            text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
        let family = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        names.insert(family.to_string());
    }
    names
}

#[test]
fn metrics_count_requests_reconciles_and_test_runs_and_pass_promtool() {
    let s = serve();
    apply_visits(&s);

    // Nobody reads them without signing in.
    let anonymous = reqwest::blocking::get(format!("{}/metrics", s.url)).unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    let before = scrape(&s.url);
    assert_eq!(
        sample(&before, r#"meshplane_resource_ready{kind="DataContract",domain="web",name="visits@v1"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&before, r#"meshplane_contract_quality{domain="web",contract="visits@v1",verdict="untested"}"#),
        Some(1.0)
    );
    let ok = r#"meshplane_reconciles_total{kind="DataContract",outcome="ok"}"#;
    assert!(sample(&before, ok).is_some_and(|n| n >= 1.0), "{before}");

    // Two rows where the contract wants three: the run fails, and the metrics say so.
    std::fs::write(s.cwd.join("data/visits/part-0.csv"), "id\n1\n2\n").unwrap();
    let client = reqwest::blocking::Client::new();
    let run = |expect_failed: bool| {
        let res = client
            .post(format!("{}/api/v1/contracts/visits@v1/tests", s.url))
            .bearer_auth(token_for(&s.url).unwrap())
            .send()
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let run: serde_json::Value = res.json().unwrap();
        assert_eq!(run["failed"].as_bool(), Some(expect_failed), "{run}");
    };
    run(true);
    let failing = scrape(&s.url);
    let quality = |verdict: &str| {
        format!(r#"meshplane_contract_quality{{domain="web",contract="visits@v1",verdict="{verdict}"}}"#)
    };
    assert_eq!(sample(&failing, &quality("failing")), Some(1.0), "{failing}");
    assert_eq!(sample(&failing, &quality("untested")), None, "one verdict at a time");
    assert_eq!(sample(&failing, r#"meshplane_test_run_duration_seconds_count{outcome="failed"}"#), Some(1.0));
    assert_eq!(sample(&failing, r#"meshplane_test_checks_total{verdict="fail"}"#), Some(1.0), "{failing}");
    let tests_route = r#"meshplane_http_request_duration_seconds_count{method="POST",route="/api/v1/{kind}/{name}/tests",status="200"}"#;
    assert_eq!(sample(&failing, tests_route), Some(1.0), "{failing}");
    // A path the API does not have is counted under what stands for a route, never the path.
    let _ = client.get(format!("{}/no-such-thing/{}", s.url, "x".repeat(20))).send().unwrap();
    // Nor does a made-up method become a label: anyone could send endless new ones.
    for made_up in ["MADEUPA", "MADEUPB"] {
        let method = reqwest::Method::from_bytes(made_up.as_bytes()).unwrap();
        let _ = client.request(method, format!("{}/api/v1/contracts", s.url)).send().unwrap();
    }
    let unknown = scrape(&s.url);
    assert!(!unknown.contains("MADEUP"), "a sent method became a label");
    assert!(unknown.contains(r#"method="other""#), "{unknown}");
    assert!(
        sample(
            &unknown,
            r#"meshplane_http_request_duration_seconds_count{method="GET",route="(no route)",status="404"}"#
        )
        .is_some()
    );
    assert!(!unknown.contains("no-such-thing"), "a sent path became a label");

    // The data fixed: the next run passes and the verdict follows.
    std::fs::write(s.cwd.join("data/visits/part-0.csv"), "id\n1\n2\n3\n").unwrap();
    run(false);
    let passing = scrape(&s.url);
    assert_eq!(sample(&passing, &quality("passing")), Some(1.0), "{passing}");
    assert_eq!(sample(&passing, &quality("failing")), None);
    assert_eq!(sample(&passing, r#"meshplane_test_run_duration_seconds_count{outcome="passed"}"#), Some(1.0));

    // Label values are store keys (letters, digits, `-_.:`): a name made to end a label and
    // start a series of its own is refused before it could be exported.
    let hostile = "apiVersion: v3.1.0\nkind: DataContract\nid: evil\nversion: 1.0.0\n\
                   status: active\ndomain: \"we\\\"b\\nfake_series{a=\\\"b\\\"} 2\"\n";
    assert_eq!(post_apply(&s.url, hostile), Some(422), "{hostile}");
    let passing = scrape(&s.url);
    assert!(!passing.contains("fake_series"), "{passing}");

    // The exposition is what Prometheus's own linter accepts, every line ended.
    assert!(passing.ends_with('\n'), "the last line is not ended");
    let findings = promtool_findings(&passing);
    assert!(findings.trim().is_empty(), "promtool check metrics: {findings}\n{passing}");

    // The shipped rules load, and they and the dashboard name only families the server exports.
    let rules = repo().join("deploy/prometheus/meshplane-rules.yaml");
    let checked = Command::new("promtool").arg("check").arg("rules").arg(&rules).output().unwrap();
    assert!(checked.status.success(), "{}{}", stdout(&checked), String::from_utf8_lossy(&checked.stderr));
    let exported: BTreeSet<String> = passing
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(|name| name.strip_suffix("_total").unwrap_or(name).to_string())
        .collect();
    for file in [rules, repo().join("deploy/grafana/meshplane-dashboard.json")] {
        for family in families_named(&file) {
            let family = family.strip_suffix("_total").unwrap_or(&family).to_string();
            assert!(
                exported.contains(&family),
                "{} names `{family}`, which the server does not export",
                file.display()
            );
        }
    }
}

/// Prometheus's answer to an instant query: each series' labels and value.
fn query(prometheus: &str, promql: &str) -> Vec<(serde_json::Value, f64)> {
    let Ok(res) =
        reqwest::blocking::Client::new().get(format!("{prometheus}/api/v1/query")).query(&[("query", promql)]).send()
    else {
        return Vec::new();
    };
    let Ok(answer) = res.json::<serde_json::Value>() else { return Vec::new() };
    let results = answer["data"]["result"].as_array().cloned().unwrap_or_default();
    results
        .into_iter()
        .map(|r| (r["metric"].clone(), r["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)))
        .collect()
}

/// A Prometheus server on a free port, scraping `targets` every second; killed when dropped.
struct Prometheus {
    child: std::process::Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Prometheus {
    fn start(targets: &[String]) -> Prometheus {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("mpcli-prometheus-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
        let config = format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nscrape_configs:\n  - job_name: meshplane\n    static_configs:\n      - targets: [{list}]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian's prometheus package; test.sh installs it)");
        Prometheus { child, url: format!("http://127.0.0.1:{port}"), dir }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn prometheus_scrapes_two_replicas_and_sees_each_resource_once() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let place = runtime.block_on(meshplane_core::testing::postgres());
    let addresses: Vec<String> = (0..2).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let first = serve_with(&place.url, &["--metrics-listen", &addresses[0]]);
    let _second = serve_with(&place.url, &["--metrics-listen", &addresses[1]]);
    let contracts = 30;
    let mut body: Vec<String> = (0..contracts)
        .map(|i| {
            format!(
                "apiVersion: v3.1.0\nkind: DataContract\nid: c{i}\nversion: 1.0.0\nstatus: active\ndomain: d{}\n",
                i % 3
            )
        })
        .collect();
    body.push(
        "apiVersion: v1.0.0\nkind: DataProduct\nid: p0\nversion: 1.0.0\nstatus: active\ndomain: d0\n\
         outputPorts:\n  - { name: out, version: 1.0.0, contractId: c0 }\n"
            .to_string(),
    );
    assert_eq!(post_apply(&first.url, &body.join("---\n")), Some(200));

    // The metrics address answers without a token.
    let direct = reqwest::blocking::get(format!("http://{}/metrics", addresses[0])).unwrap();
    assert_eq!(direct.status().as_u16(), 200);

    let prometheus = Prometheus::start(&addresses);
    let resources = (contracts + 1) as f64;
    let deadline = Instant::now() + Duration::from_secs(90);
    let total = |promql: &str| query(&prometheus.url, promql).first().map(|(_, v)| *v);
    loop {
        // Both replicas scraped; every resource exported exactly once between them, and Ready;
        // both replicas' reconciles counted.
        let up = total(r#"count(up{job="meshplane"} == 1)"#);
        let exported = total("count(meshplane_resource_ready)");
        let ready = total("sum(meshplane_resource_ready)");
        let replicas = total("min(meshplane_replicas)");
        let reconciled = total(r#"sum(meshplane_reconciles_total{outcome="ok"})"#);
        let products = total(r#"count(meshplane_resource_ready{kind="DataProduct",domain="d0",name="p0"})"#);
        if up == Some(2.0)
            && exported == Some(resources)
            && ready == Some(resources)
            && replicas == Some(2.0)
            && reconciled.is_some_and(|n| n >= resources)
            && products == Some(1.0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw it all: up {up:?}, exported {exported:?}, ready {ready:?}, replicas {replicas:?}, \
             reconciled {reconciled:?}, p0 {products:?} (want {resources} resources)\n{}",
            std::fs::read_to_string(prometheus.dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Each replica exports its own share: neither exports them all.
    let by_instance = query(&prometheus.url, "count by (instance) (meshplane_resource_ready)");
    assert_eq!(by_instance.len(), 2, "{by_instance:?}");
    assert!(by_instance.iter().all(|(_, n)| *n < resources), "{by_instance:?}");
    let places: BTreeSet<String> =
        query(&prometheus.url, "meshplane_replica_place").iter().map(|(_, v)| v.to_string()).collect();
    assert_eq!(places, BTreeSet::from(["0".to_string(), "1".to_string()]));
}
