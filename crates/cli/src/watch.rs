//! Following the server as it reconciles: `apply --wait` (until every applied resource is
//! Ready or failed for good) and `get -w` (each listed resource again whenever it changes).
//! Both read the change feed from where it was before they looked, and fetch a resource again
//! only when the feed names it, so waiting on many resources costs the server little.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use meshplane_core::resource::Kind;
use serde_json::{Value as Any, json};

use crate::output::Format;
use crate::readiness::{self, Readiness};
use crate::remote::{Answer, GetArgs, Server, call, refused, resource_row, resources_header, text};

/// How often the change feed is read while nothing happens.
const POLL: Duration = Duration::from_millis(250);

/// Where the change feed is now (the `watchFrom` of a one-item listing of `kind`): following
/// it from here misses no change made after.
pub fn position(server: &Server, kind: &str) -> Result<i64> {
    match call(server, |c, base| c.get(format!("{base}/api/v1/{kind}")).query(&[("limit", "1")]))? {
        Answer::Ok(page) => page["watchFrom"].as_i64().ok_or_else(|| {
            anyhow!("the server does not say where its change feed is (watchFrom): it is older than this CLI")
        }),
        Answer::Refused(body) => {
            Err(anyhow!("cannot read the server's change feed: {}", body["message"].as_str().unwrap_or("refused")))
        }
    }
}

/// A resource as the change feed names it: (kind, name).
type Named = (String, String);

/// The resources the changes after `from` name, and where the feed is after them; or the
/// server's refusal.
fn changed(server: &Server, from: i64) -> Result<Result<(BTreeSet<Named>, i64), Any>> {
    let query = [("after", from.to_string()), ("limit", "1000".to_string())];
    let changes = match call(server, |c, base| c.get(format!("{base}/api/v1/events")).query(&query))? {
        Answer::Ok(changes) => changes,
        Answer::Refused(body) => return Ok(Err(body)),
    };
    let changes = changes.as_array().map(Vec::as_slice).unwrap_or_default();
    let last = changes.last().and_then(|c| c["seq"].as_i64()).unwrap_or(from);
    let named = changes.iter().map(|c| (text(&c["kind"]), text(&c["name"]))).collect();
    Ok(Ok((named, last)))
}

/// A resource as the server has it now; `None` when it is gone.
fn fetch(server: &Server, kind: &str, name: &str) -> Result<Result<Option<Any>, Any>> {
    Ok(match call(server, |c, base| c.get(format!("{base}/api/v1/{kind}/{name}")))? {
        Answer::Ok(resource) => Ok(Some(resource)),
        Answer::Refused(body) if body["code"] == "not-found" => Ok(None),
        Answer::Refused(body) => Err(body),
    })
}

/// One applied resource being waited for.
struct Awaited {
    kind: String,
    name: String,
    readiness: Readiness,
}

impl Awaited {
    /// How it ended up; `timed_out` when the wait ran out on it.
    fn line(&self, timed_out: Option<Duration>) -> String {
        let who = format!("{} {}", self.kind, self.name);
        let after = timed_out.map(|t| format!("after {}", humantime::format_duration(t)));
        match &self.readiness {
            Readiness::Ready => format!("{who}: Ready"),
            Readiness::Pending => format!("{who}: not reconciled {}", after.as_deref().unwrap_or("yet")),
            Readiness::NotReady(c) => {
                let when = if c.for_good { "for good".to_string() } else { after.unwrap_or_else(|| "yet".into()) };
                format!("{who}: not Ready ({when}): {} {}: {}", c.condition, c.reason, c.message)
            }
        }
    }

    fn settled(&self) -> bool {
        match &self.readiness {
            Readiness::Ready => true,
            Readiness::NotReady(cause) => cause.for_good,
            Readiness::Pending => false,
        }
    }

    /// Waiting only for its output ports' contracts.
    fn waits_for_contracts(&self) -> bool {
        matches!(&self.readiness, Readiness::NotReady(c) if c.reason == "ContractsNotReady")
    }

    fn to_json(&self) -> Any {
        let (ready, cause) = match &self.readiness {
            Readiness::Ready => (json!(true), Any::Null),
            Readiness::Pending => (json!(false), Any::Null),
            Readiness::NotReady(c) => (
                json!(false),
                json!({ "type": c.condition, "reason": c.reason, "message": c.message, "forGood": c.for_good }),
            ),
        };
        json!({ "kind": self.kind, "name": self.name, "ready": ready, "condition": cause })
    }
}

/// After an apply (`applied`, its answer; `from`, the feed's position before it): prints what
/// it did, then waits until every resource it created, changed or left unchanged is Ready or
/// failed for good, or `timeout` passed. Exit 1 unless all are Ready. A product that waits
/// only for its contracts stops being waited for once one of them failed for good.
pub fn applied(
    server: &Server,
    applied: &Any,
    mut from: i64,
    timeout: Duration,
    lines: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<ExitCode> {
    let table = server.output == Format::Table;
    let mut out = crate::output::stdout();
    if table {
        lines(&mut out)?;
        out.flush()?;
    }
    let items = applied["applied"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut awaited: BTreeMap<Named, Awaited> = BTreeMap::new();
    // What a prune is deleting is not waited for.
    for item in items.iter().filter(|i| i["outcome"] != "deleting") {
        let (kind, name) = (text(&item["kind"]), text(&item["name"]));
        awaited.insert((kind.clone(), name.clone()), Awaited { kind, name, readiness: Readiness::Pending });
    }
    let deadline = Instant::now() + timeout;
    // Every resource is read once; after that, only when the feed names it.
    let mut stale: BTreeSet<Named> = awaited.keys().cloned().collect();
    loop {
        for key in std::mem::take(&mut stale) {
            let Some(waiting) = awaited.get_mut(&key) else { continue };
            if waiting.settled() {
                continue;
            }
            match fetch(server, &key.0, &key.1)? {
                Ok(Some(resource)) => waiting.readiness = readiness::of(&resource),
                Ok(None) => {
                    let gone = readiness::Cause {
                        condition: "Ready".into(),
                        reason: "Deleted".into(),
                        message: "it was deleted while waiting".into(),
                        for_good: true,
                    };
                    waiting.readiness = Readiness::NotReady(gone);
                }
                Err(body) => return refused(&body, server.output),
            }
            if table && waiting.settled() {
                writeln!(out, "{}", waiting.line(None))?;
                out.flush()?;
            }
        }
        let failed = awaited.values().any(|a| a.settled() && a.readiness != Readiness::Ready);
        let open: Vec<&Awaited> = awaited.values().filter(|a| !a.settled()).collect();
        let done = open.is_empty() || (failed && open.iter().all(|a| a.waits_for_contracts()));
        let timed_out = Instant::now() >= deadline;
        if done || timed_out {
            let ok = awaited.values().all(|a| a.readiness == Readiness::Ready);
            if table {
                for a in open {
                    writeln!(out, "{}", a.line((timed_out && !done).then_some(timeout)))?;
                }
            } else {
                let waited: Vec<Any> = awaited.values().map(Awaited::to_json).collect();
                let mut body = applied.clone();
                body["waited"] = Any::Array(waited);
                crate::remote::print(server.output, &body, |_| Ok(()))?;
            }
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        match changed(server, from)? {
            Ok((named, last)) => {
                stale.extend(named.into_iter().filter(|k| awaited.contains_key(k)));
                if last == from {
                    std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
                }
                from = last;
            }
            Err(body) => return refused(&body, server.output),
        }
    }
}

/// `get -w`: prints `found` (rows, or JSON lines with `-o json`), then each resource of the
/// kind (of the name, when one was given; matching the filters) again whenever the feed after
/// `from` names it, until interrupted.
pub fn resources(args: &GetArgs, found: &[Any], mut from: i64) -> Result<ExitCode> {
    let kind = Kind::parse(&args.kind).ok_or_else(|| anyhow!("`{}` is not a kind (contracts, products)", args.kind))?;
    let mut out = crate::output::stdout();
    let json = args.server.output != Format::Table;
    let show = |out: &mut dyn Write, resource: &Any| -> std::io::Result<()> {
        if json { writeln!(out, "{resource}") } else { resource_row(resource, out) }
    };
    if !json {
        resources_header(&mut out)?;
    }
    for resource in found {
        show(&mut out, resource)?;
    }
    out.flush()?;
    let matches = |r: &Any| {
        let is = |field: &str, wanted: &Option<String>| wanted.as_ref().is_none_or(|w| r[field] == w.as_str());
        let tagged =
            args.tag.as_ref().is_none_or(|t| r["tags"].as_array().is_some_and(|tags| tags.iter().any(|x| x == t)));
        is("domain", &args.domain) && is("status", &args.status) && tagged
    };
    loop {
        let (named, last) = match changed(&args.server, from)? {
            Ok(found) => found,
            Err(body) => return refused(&body, args.server.output),
        };
        let ours = named
            .into_iter()
            .filter(|(k, n)| k == kind.as_str() && args.name.as_ref().is_none_or(|wanted| wanted == n));
        for (_, name) in ours {
            match fetch(&args.server, kind.as_str(), &name)? {
                Ok(Some(resource)) if matches(&resource) => show(&mut out, &resource)?,
                Ok(Some(_)) => {}
                Ok(None) if json => {
                    writeln!(out, "{}", json!({ "kind": kind.as_str(), "name": name, "deleted": true }))?
                }
                Ok(None) => writeln!(out, "{name:<32} (deleted)")?,
                Err(body) => return refused(&body, args.server.output),
            }
        }
        out.flush()?;
        if last == from {
            std::thread::sleep(POLL);
        }
        from = last;
    }
}
