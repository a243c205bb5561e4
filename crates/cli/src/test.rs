//! `meshplane test CONTRACT`: runs the contract's checks on the data of one of its servers,
//! with no meshplane server needed; exits 1 when a check fails or cannot run.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use meshplane_quality::plan::Unit;
use meshplane_quality::run::{Options, Outcome};
use meshplane_quality::target::{self, Report};

use crate::files::read_contract;
use crate::output::Format;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  meshplane test orders.odcs.yaml\n  meshplane test orders.odcs.yaml --contract-server prod -o junit > results.xml"
)]
pub struct Args {
    /// The ODCS contract to test.
    contract: PathBuf,
    /// The contract's server (a `server` of its `servers`) whose data is tested; needed when
    /// the contract has several.
    #[arg(long = "contract-server", value_name = "SERVER")]
    contract_server: Option<String>,
    /// The old name of --contract-server (`--server` is the registry in every other command).
    #[arg(long = "server", hide = true, conflicts_with = "contract_server")]
    server: Option<String>,
    /// Test one schema object only.
    #[arg(long)]
    object: Option<String>,
    /// The output format (`-o`, given to the whole command): table, json, yaml or junit.
    #[arg(skip)]
    pub(crate) output: Format,
    /// Keep up to N offending values of each failed check.
    #[arg(long, default_value_t = 0, value_name = "N")]
    samples: usize,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let Some(contract) = read_contract(&args.contract, "testing")? else {
        return Ok(ExitCode::from(2));
    };
    if args.server.is_some() {
        eprintln!("warning: `meshplane test --server` is now --contract-server (--server names the registry)");
    }
    let chosen = args.contract_server.as_deref().or(args.server.as_deref());
    let server = match target::pick_server(&contract, chosen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    // A relative path is read from the working directory, as `meshplane serve` reads it from
    // its own (docs/test.md, "Relative paths").
    let base = PathBuf::new();
    let options = Options::now(args.samples);
    let done = Arc::new(AtomicBool::new(false));
    let progress = std::io::stderr().is_terminal().then(|| {
        let (rows, done) = (options.progress.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                let n = rows.load(Ordering::Relaxed);
                if n > 0 && !done.load(Ordering::Relaxed) {
                    eprint!("\rscanned {n} rows");
                }
            }
            eprint!("\r\x1b[K");
        })
    });
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let report = runtime.block_on(target::test(&contract, server, args.object.as_deref(), &base, &options));
    done.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.join();
    }
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut out = crate::output::stdout();
    match args.output {
        Format::Table => table(&mut out, &report)?,
        Format::Junit => junit(&mut out, &report)?,
        machine => crate::output::structured(&mut out, machine, &report)?,
    }
    Ok(if report.failed() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

fn measured(r: &meshplane_quality::run::CheckResult) -> String {
    match (r.value, r.count) {
        (Some(v), _) if r.unit == Unit::Seconds => duration(v),
        (Some(v), Some(c)) => format!("{}% ({} rows)", number(v), number(c)),
        (Some(v), None) => number(v),
        (None, _) => "-".into(),
    }
}

/// A number of seconds as people read it, to the second (`1day 2h 5s`).
fn duration(seconds: f64) -> String {
    let whole = Duration::from_secs(seconds.max(0.0).round() as u64);
    if whole.is_zero() { "0s".into() } else { humantime::format_duration(whole).to_string() }
}

/// The threshold as the table shows it: a duration check's numbers as durations.
fn expected(r: &meshplane_quality::run::CheckResult) -> String {
    if r.unit != Unit::Seconds {
        return r.threshold.clone();
    }
    let words = r.threshold.split(' ').map(|w| w.parse::<f64>().map_or_else(|_| w.to_string(), duration));
    words.collect::<Vec<_>>().join(" ")
}

fn table(out: &mut impl Write, report: &Report) -> Result<()> {
    writeln!(
        out,
        "contract {} {} on server {} ({})",
        report.contract, report.version, report.server, report.server_type
    )?;
    let width = report.results.iter().map(|r| r.key.len()).max().unwrap_or(0).min(60);
    for r in &report.results {
        let label = match r.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Warn => "warn",
            Outcome::Error => "ERROR",
            Outcome::Skipped => "skip",
        };
        let expected = if r.threshold.is_empty() { String::new() } else { format!(" (expected {})", expected(r)) };
        let id = r.rule_id.as_deref().map(|id| format!(" [{id}]")).unwrap_or_default();
        writeln!(out, "{label:<5} {:<width$} {}{expected}{id}", r.key, measured(r))?;
        if let Some(d) = &r.detail
            && r.outcome != Outcome::Pass
        {
            writeln!(out, "      {d}")?;
        }
        if !r.samples.is_empty() {
            writeln!(out, "      samples: {}", r.samples.join(" | "))?;
        }
    }
    let s = &report.summary;
    writeln!(
        out,
        "{} passed, {} failed, {} warned, {} errors, {} skipped",
        s.pass, s.fail, s.warn, s.error, s.skipped
    )?;
    Ok(())
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn junit(out: &mut impl Write, report: &Report) -> Result<()> {
    let s = &report.summary;
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuite name="{}" tests="{}" failures="{}" errors="{}" skipped="{}">"#,
        xml(&format!("{} {}", report.contract, report.version)),
        report.results.len(),
        s.fail,
        s.error,
        s.skipped
    )?;
    for r in &report.results {
        let class = xml(r.object.as_deref().unwrap_or(&report.contract));
        write!(out, r#"  <testcase classname="{class}" name="{}""#, xml(&r.key))?;
        let message = || {
            let detail = r.detail.as_deref().map(|d| format!("; {d}")).unwrap_or_default();
            xml(&format!("measured {}, expected {}{detail}", measured(r), r.threshold))
        };
        match r.outcome {
            Outcome::Pass => writeln!(out, "/>")?,
            Outcome::Fail => writeln!(out, ">\n    <failure message=\"{}\"/>\n  </testcase>", message())?,
            Outcome::Warn => writeln!(out, ">\n    <system-out>warning: {}</system-out>\n  </testcase>", message())?,
            Outcome::Error => writeln!(
                out,
                ">\n    <error message=\"{}\"/>\n  </testcase>",
                xml(r.detail.as_deref().unwrap_or("error"))
            )?,
            Outcome::Skipped => writeln!(
                out,
                ">\n    <skipped message=\"{}\"/>\n  </testcase>",
                xml(r.detail.as_deref().unwrap_or("not executed"))
            )?,
        }
    }
    writeln!(out, "</testsuite>")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(86_400.0), "1day");
        assert_eq!(duration(5_400.4), "1h 30m");
        assert_eq!(duration(0.2), "0s");
        assert_eq!(duration(-3.0), "0s");
    }
}
