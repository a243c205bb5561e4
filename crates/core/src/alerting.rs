//! Alerts: what fails now, said to an alert receiver (Alertmanager) as a set of alerts that
//! the server's alert loop keeps in step with the store. Unlike the notification sinks, which
//! deliver each event once, an alerter is told the state: every alert that fires is posted
//! again while it fires (so that the receiver does not resolve it on its own), and one that
//! stopped firing is posted once more with its end.
//!
//! An alert comes from a failing check's standing ([`Standing`]): its labels say where (domain,
//! product, contract, server, check) and how bad (the rule's severity); nothing measured from
//! the data is a label, so the label sets stay as few as the checks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::block::{BlockFuture, BlockResult};
use crate::notify::Filter;
use crate::store::checks::{RUN_CHECK, Standing};

/// An alert's labels: its identity at the receiver.
pub type Labels = BTreeMap<String, String>;

/// The label every alert of an alerter carries, with the alerter's name; with
/// [`ENVIRONMENT_LABEL`] it finds what the alerter posted among the receiver's alerts (two
/// installations, dev and prod, may share one Alertmanager and name their alerters alike).
pub const ALERTER_LABEL: &str = "meshplane_alerter";

/// The label with the platform's environment (platform.yaml's `environment`).
pub const ENVIRONMENT_LABEL: &str = "environment";

/// One alert, as the Alertmanager v2 API takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    /// Set once the alert no longer fires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
}

/// Where alerts go.
pub trait Alerter: Send + Sync {
    /// The block's name, unique on the platform (it names the alerter's lease).
    fn name(&self) -> &str;

    /// The platform's environment, which every alert of the alerter carries.
    fn environment(&self) -> &str;

    /// Which contracts' alerts the alerter takes (by domain, product and contract).
    fn filter(&self) -> &Filter;

    /// How often the alerts that fire are posted again: less than the receiver's resolve
    /// timeout (half of it, as Alertmanager's clients do).
    fn repost_every(&self) -> Duration;

    /// Posts alerts (firing, or with their end).
    fn post<'a>(&'a self, alerts: &'a [Alert]) -> BlockFuture<'a, BlockResult<()>>;

    /// The labels of the alerts the receiver holds as firing that this alerter posted: after
    /// a restart or a handover, what may need its end posted.
    fn firing(&self) -> BlockFuture<'_, BlockResult<Vec<Labels>>>;
}

/// Label values come from documents: each is cut to this many characters.
const MAX_LABEL: usize = 200;

/// A contract failing more checks than this on one server gets one alert for them all, so
/// that one contract cannot flood the receiver (and the people it pages).
pub const MAX_ALERTS_PER_SERVER: usize = 20;

/// The alerts for what fails now: one per failing check (past [`MAX_ALERTS_PER_SERVER`] of a
/// contract on a server, one `MeshplaneContractChecksFailing` for them), labelled with the
/// products that offer the check's contract (`products_of` the contract's id and domain).
/// Checks outside the alerter's filter are left out.
pub fn alerts_for(
    alerter: &dyn Alerter,
    failing: &[Standing],
    products_of: impl Fn(&str, &str) -> Vec<String>,
) -> Vec<Alert> {
    let filter = alerter.filter();
    let mut by_server: BTreeMap<(&str, &str), Vec<Alert>> = BTreeMap::new();
    for f in failing {
        let products = products_of(&f.contract_id, &f.domain);
        let takes = (filter.domains.is_empty() || filter.domains.contains(&f.domain))
            && (filter.contracts.is_empty() || filter.contracts.contains(&f.contract))
            && (filter.products.is_empty() || products.iter().any(|p| filter.products.contains(p)));
        if takes {
            by_server.entry((&f.contract, &f.server)).or_default().push(alert(alerter, f, &products));
        }
    }
    by_server
        .into_values()
        .flat_map(|alerts| if alerts.len() > MAX_ALERTS_PER_SERVER { vec![summed(alerts)] } else { alerts })
        .collect()
}

/// One alert for a contract's many failing checks on a server: the most severe severity, the
/// earliest start, the count and the first checks.
fn summed(alerts: Vec<Alert>) -> Alert {
    let rank = |a: &Alert| SEVERITIES.iter().position(|s| *s == a.labels["severity"]).unwrap_or(SEVERITIES.len());
    let worst = alerts.iter().min_by_key(|a| rank(a)).map(|a| a.labels["severity"].clone()).unwrap_or_default();
    let starts_at = alerts.iter().map(|a| a.starts_at.clone()).min().unwrap_or_default();
    let checks: Vec<&str> = alerts.iter().take(10).map(|a| a.labels["check"].as_str()).collect();
    let mut labels = alerts[0].labels.clone();
    labels.remove("check");
    labels.insert("alertname".into(), "MeshplaneContractChecksFailing".into());
    labels.insert("severity".into(), worst);
    let summary = format!("{}: {} checks fail on server `{}`", labels["contract"], alerts.len(), labels["server"]);
    let description = format!("among them: {}", checks.join(", "));
    let annotations = BTreeMap::from([("summary".into(), summary), ("description".into(), cut(&description, 1_000))]);
    Alert { labels, annotations, starts_at, ends_at: None }
}

/// The severities a rule may give (ODCS leaves them open; these are the usual words): any
/// other becomes the outcome's, `warning` or `error`.
const SEVERITIES: [&str; 9] = ["critical", "high", "error", "major", "medium", "warning", "minor", "low", "info"];

fn alert(alerter: &dyn Alerter, f: &Standing, products: &[String]) -> Alert {
    let name = match (is_run_check(&f.key), f.category.as_deref()) {
        (true, _) => "MeshplaneContractTestsCannotRun",
        (_, Some("sla")) => "MeshplaneContractSlaBreached",
        _ => "MeshplaneContractCheckFailing",
    };
    let given = f.severity.as_deref().map(|s| s.trim().to_ascii_lowercase());
    let severity = match (given.as_deref(), f.outcome.as_str()) {
        (Some(given), _) if SEVERITIES.contains(&given) => given.to_string(),
        (_, "warn") => "warning".into(),
        _ => "error".into(),
    };
    let mut labels = Labels::new();
    for (label, value) in [
        ("alertname", name),
        (ALERTER_LABEL, alerter.name()),
        (ENVIRONMENT_LABEL, alerter.environment()),
        ("domain", &f.domain),
        ("contract", &f.contract),
        ("server", &f.server),
        ("check", &f.key),
        ("severity", &severity),
    ] {
        labels.insert(label.into(), cut(&plain(value), MAX_LABEL));
    }
    if !products.is_empty() {
        labels.insert("product".into(), cut(&plain(&products.join(",")), MAX_LABEL));
    }
    let mut annotations = BTreeMap::new();
    let verdict = match f.outcome.as_str() {
        "warn" => "warns",
        "error" => "could not be measured",
        _ => "fails",
    };
    let summary = format!("{}: check `{}` {verdict} on server `{}`", f.contract, f.key, f.server);
    annotations.insert("summary".into(), cut(&plain(&summary), 1_000));
    annotations.insert("description".into(), cut(&plain(&f.description), 1_000));
    annotations.insert("run".into(), f.run.to_string());
    if let Some(rule) = &f.rule_id {
        annotations.insert("rule".into(), cut(&plain(rule), MAX_LABEL));
    }
    Alert { labels, annotations, starts_at: f.since.clone(), ends_at: None }
}

/// What the alerter posts in one round: every alert that fires, and the end of each that
/// fired (`before`) and fires no more.
pub fn round(firing: &[Alert], before: &BTreeSet<Labels>, now: &str) -> Vec<Alert> {
    let now_firing: BTreeSet<&Labels> = firing.iter().map(|a| &a.labels).collect();
    let ended = before.iter().filter(|labels| !now_firing.contains(labels)).map(|labels| Alert {
        labels: labels.clone(),
        annotations: BTreeMap::new(),
        starts_at: now.to_string(),
        ends_at: Some(now.to_string()),
    });
    firing.iter().cloned().chain(ended).collect()
}

/// Whether a standing's key is that of a run (the run check, per schedule), not a check's.
fn is_run_check(key: &str) -> bool {
    key == RUN_CHECK || key.strip_prefix(RUN_CHECK).is_some_and(|rest| rest.starts_with(' '))
}

/// Document text as it may reach the people an alert pages (Alertmanager's Slack and e-mail
/// templates render it): no control characters, and none of `<>&|` (markup, and Slack's
/// links and mentions, which need `<`); each becomes `_`.
fn plain(text: &str) -> String {
    text.chars().map(|c| if c.is_control() || "<>&|".contains(c) { '_' } else { c }).collect()
}

fn cut(text: &str, at: usize) -> String {
    match text.char_indices().nth(at) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An alerter named `am` on environment `dev` that takes what `0` takes.
    struct Taking(Filter);

    impl Alerter for Taking {
        fn name(&self) -> &str {
            "am"
        }

        fn environment(&self) -> &str {
            "dev"
        }

        fn filter(&self) -> &Filter {
            &self.0
        }

        fn repost_every(&self) -> Duration {
            Duration::from_secs(150)
        }

        fn post<'a>(&'a self, _: &'a [Alert]) -> BlockFuture<'a, BlockResult<()>> {
            Box::pin(async { Ok(()) })
        }

        fn firing(&self) -> BlockFuture<'_, BlockResult<Vec<Labels>>> {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    fn every() -> Taking {
        Taking(Filter::default())
    }

    fn standing(contract: &str, key: &str, outcome: &str, severity: Option<&str>) -> Standing {
        Standing {
            contract: format!("{contract}@v1"),
            contract_id: contract.into(),
            domain: "sales".into(),
            server: "prod".into(),
            key: key.into(),
            category: (key == "orders.latency").then(|| "sla".into()),
            outcome: outcome.into(),
            severity: severity.map(str::to_string),
            rule_id: None,
            description: "no <!channel> nulls".into(),
            since: "2026-12-07T10:00:00.000000Z".into(),
            run: 7,
        }
    }

    #[test]
    fn an_alert_carries_where_and_how_bad_and_nothing_measured() {
        let found = alerts_for(
            &every(),
            &[
                standing("orders", "orders.id.nullValues", "fail", Some(" Critical ")),
                standing("orders", "run", "error", None),
                standing("orders", "orders.latency", "fail", Some("<b>page everyone</b>")),
                standing("orders", "run 0 * * * *", "error", Some("low")),
                standing("orders", "orders.<@U123>|x.nullValues", "warn", None),
            ],
            |id, domain| if (id, domain) == ("orders", "sales") { vec!["shop".into()] } else { vec![] },
        );
        let labels: Vec<Vec<(&str, &str)>> =
            found.iter().map(|a| a.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()).collect();
        assert_eq!(
            labels[0],
            [
                ("alertname", "MeshplaneContractCheckFailing"),
                ("check", "orders.id.nullValues"),
                ("contract", "orders@v1"),
                ("domain", "sales"),
                (ENVIRONMENT_LABEL, "dev"),
                (ALERTER_LABEL, "am"),
                ("product", "shop"),
                ("server", "prod"),
                ("severity", "critical"),
            ]
        );
        assert_eq!(found[0].starts_at, "2026-12-07T10:00:00.000000Z");
        assert_eq!(found[0].annotations["summary"], "orders@v1: check `orders.id.nullValues` fails on server `prod`");
        assert_eq!(found[0].annotations["description"], "no _!channel_ nulls", "no markup or mention reaches a page");
        assert_eq!(
            (found[1].labels["alertname"].as_str(), found[1].labels["severity"].as_str()),
            ("MeshplaneContractTestsCannotRun", "error")
        );
        let sla = (found[2].labels["alertname"].as_str(), found[2].labels["severity"].as_str());
        assert_eq!(sla, ("MeshplaneContractSlaBreached", "error"), "a severity no one routes on is the outcome's");
        assert_eq!(found[3].labels["alertname"], "MeshplaneContractTestsCannotRun", "a schedule's run check");
        assert_eq!(found[3].labels["severity"], "low");
        assert_eq!(found[4].labels["check"], "orders._@U123__x.nullValues");
        assert_eq!(found[4].labels["severity"], "warning");
    }

    #[test]
    fn the_filter_picks_by_domain_contract_and_product() {
        let all = [standing("orders", "a", "warn", None), standing("returns", "b", "fail", None)];
        let products = |id: &str, _: &str| if id == "orders" { vec!["shop".to_string()] } else { vec![] };
        let by_product = Taking(Filter { products: vec!["shop".into()], ..Filter::default() });
        let picked = alerts_for(&by_product, &all, products);
        assert_eq!(picked.iter().map(|a| a.labels["check"].as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(picked[0].labels["severity"], "warning");
        let by_contract = Taking(Filter { contracts: vec!["returns@v1".into()], ..Filter::default() });
        assert_eq!(alerts_for(&by_contract, &all, products)[0].labels["check"], "b");
        let elsewhere = Taking(Filter { domains: vec!["finance".into()], ..Filter::default() });
        assert!(alerts_for(&elsewhere, &all, products).is_empty());
    }

    #[test]
    fn a_round_posts_what_fires_and_ends_what_fired_before() {
        let firing = alerts_for(&every(), &[standing("orders", "a", "fail", None)], |_, _| vec![]);
        let mut gone = firing[0].labels.clone();
        gone.insert("check".into(), "b".into());
        let before: BTreeSet<Labels> = [firing[0].labels.clone(), gone.clone()].into();
        let posted = round(&firing, &before, "2026-12-07T11:00:00Z");
        assert_eq!(posted.len(), 2);
        assert_eq!(posted[0], firing[0]);
        assert_eq!((&posted[1].labels, posted[1].ends_at.as_deref()), (&gone, Some("2026-12-07T11:00:00Z")));
    }

    #[test]
    fn a_contract_failing_many_checks_on_a_server_gets_one_alert_for_them() {
        let many: Vec<Standing> = (0..=MAX_ALERTS_PER_SERVER)
            .map(|i| standing("orders", &format!("c{i:02}"), "fail", Some(if i == 7 { "critical" } else { "low" })))
            .collect();
        let few = [standing("returns", "r", "fail", None)];
        let found = alerts_for(&every(), &[many, few.to_vec()].concat(), |_, _| vec![]);
        assert_eq!(found.len(), 2, "{found:#?}");
        let summed = &found[0];
        assert_eq!(summed.labels["alertname"], "MeshplaneContractChecksFailing");
        assert_eq!(summed.labels["severity"], "critical", "the worst of them");
        assert!(!summed.labels.contains_key("check"));
        assert_eq!(
            summed.annotations["summary"],
            format!("orders@v1: {} checks fail on server `prod`", MAX_ALERTS_PER_SERVER + 1)
        );
        assert_eq!(found[1].labels["check"], "r", "another contract's checks stand apart");
    }

    #[test]
    fn long_label_values_are_cut() {
        let long = "x".repeat(500);
        let found = alerts_for(&every(), &[standing("orders", &long, "fail", None)], |_, _| vec![]);
        assert_eq!(found[0].labels["check"].chars().count(), MAX_LABEL + 1);
    }
}
