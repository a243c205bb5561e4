//! `meshplane policy test PATH...` runs the Rego unit tests of policies; `meshplane policy
//! eval POLICY -f DOCUMENT` says what a policy says about one document. Neither needs a
//! server. `eval` builds the input the server builds for an apply (`action`, `kind`, `name`,
//! `domain`, `owners`, `before`, `after`, `caller`, `diff`); what only a server knows (the
//! stored version, the caller) is defaulted, said so on standard error, and can be given.
//! Exit codes: 0 the server would let the change through (warnings are printed), 1 it would
//! refuse it (for `test`: a test failed), 2 a file is unreadable or invalid.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use meshplane_core::resource::{Resource, owners};
use meshplane_policy::worker::{Job, Pool, Runner};
use meshplane_policy::{DEFAULT_BUDGET, Verdict};
use meshplane_spec::{Document, Loaded, render};
use serde_json::{Value as Any, json};

use crate::output::{self, Format};

#[derive(clap::Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
    /// The output format (`-o`, given to the whole command).
    #[arg(skip)]
    pub(crate) output: Format,
}

#[derive(clap::Subcommand)]
enum PolicyCommand {
    /// Evaluate a policy on one document, as the server would on its apply.
    #[command(
        after_help = "Examples:\n  meshplane policy eval owner-present.policy.yaml -f orders.odcs.yaml\n  meshplane policy eval bump.policy.yaml -f v2.odcs.yaml --before v1.odcs.yaml\n  meshplane policy eval p.yaml -f orders.odcs.yaml --input '{\"caller\": {\"name\": \"ana\", \"domains\": [\"sales\"]}}'"
    )]
    Eval(EvalArgs),
    /// Run the Rego unit tests (`test_` rules, as `opa test` does) of policy documents and
    /// `.rego` files: each test passes when it is true.
    #[command(
        after_help = "Example:\n  meshplane policy test policies/    # *.yaml policies and *_test.rego files, recursively"
    )]
    Test(TestArgs),
    /// Write the default policy pack (its policies and their tests) into a directory, to
    /// read, adapt and apply as policies of your own.
    #[command(after_help = "Example:\n  meshplane policy pack --out policies/ && meshplane policy test policies/")]
    Pack(PackArgs),
}

#[derive(clap::Args)]
struct PackArgs {
    /// The directory to write into (made when missing; files of the same names are replaced).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct TestArgs {
    /// Policy documents and `.rego` files (tests, fixtures), or directories searched for them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// The policy document (`kind: Policy`).
    policy: PathBuf,
    /// The document the change is about (a contract, product or policy).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// The version stored before the change (`input.before`); none: a new resource.
    #[arg(long)]
    before: Option<PathBuf>,
    /// The change: apply or delete (a delete has the document as `before` and no `after`), or
    /// access-request / access-decision on the contract given as the document (the request,
    /// consumer, port and decision from --input).
    #[arg(long, default_value = "apply", value_parser = ["apply", "delete", "access-request", "access-decision"])]
    action: String,
    /// Fields of the input to set instead of the defaults: a JSON object, or a file holding one.
    #[arg(long)]
    input: Option<String>,
    /// What the policy reads as `data`: a JSON object, or a file holding one.
    #[arg(long)]
    data: Option<String>,
}

pub fn run(args: &PolicyArgs) -> Result<ExitCode> {
    match &args.command {
        PolicyCommand::Eval(eval_args) => eval(eval_args, args.output),
        PolicyCommand::Test(test_args) => test(test_args, args.output),
        PolicyCommand::Pack(pack_args) => {
            std::fs::create_dir_all(&pack_args.out)
                .with_context(|| format!("cannot make {}", pack_args.out.display()))?;
            for (name, text) in meshplane_policy::PACK {
                let path = pack_args.out.join(name);
                std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Every file under `path` (itself, when it is one), in a stable order.
fn walk(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if !path.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            walk(&entry, out)?;
        } else if entry.extension().is_some_and(|e| ["rego", "yaml", "yml", "json"].iter().any(|x| e == *x)) {
            out.push(entry);
        }
    }
    Ok(())
}

fn test(args: &TestArgs, format: Format) -> Result<ExitCode> {
    let mut files = Vec::new();
    for path in &args.paths {
        walk(path, &mut files)?;
    }
    let mut sources = Vec::new();
    let mut broken = false;
    for file in &files {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        let name = file.display().to_string();
        if file.extension().is_some_and(|e| e == "rego") {
            sources.push(meshplane_policy::Source { file: name, text, first_line: 1 });
            continue;
        }
        let linted = crate::files::lint_text(name.clone(), text);
        let policies: Vec<_> = linted
            .documents
            .iter()
            .filter_map(|d| match &d.document {
                Some(Document::Policy(p)) => Some(p),
                _ => None,
            })
            .collect();
        if policies.is_empty() {
            continue;
        }
        for d in linted.diagnostics.iter().filter(|d| d.is_error()) {
            eprint!("{}", render::human(&linted.path, &linted.text, d));
            broken = true;
        }
        sources.extend(policies.into_iter().map(|p| meshplane_policy::Source {
            file: name.clone(),
            text: p.rego.clone(),
            first_line: p.rego_line(),
        }));
    }
    if broken {
        return Ok(ExitCode::from(2));
    }
    if sources.is_empty() {
        bail!("no policy document or .rego file found in {:?}", args.paths);
    }
    let outcomes = match meshplane_policy::run_tests(&sources, DEFAULT_BUDGET) {
        Ok(outcomes) => outcomes,
        Err(problems) => {
            problems.iter().for_each(|p| eprintln!("error: {p}"));
            return Ok(ExitCode::from(2));
        }
    };
    let failed = outcomes.iter().filter(|t| !t.passed).count();
    let mut out = output::stdout();
    match format {
        Format::Json | Format::Yaml => {
            let body = json!({ "passed": outcomes.len() - failed, "failed": failed, "tests": outcomes });
            output::structured(&mut out, format, &body)?;
        }
        Format::Table | Format::Junit => {
            for t in &outcomes {
                let verdict = if t.passed { "PASS" } else { "FAIL" };
                let why = t.failure.as_deref().map_or(String::new(), |f| format!(": {f}"));
                writeln!(out, "{verdict} {}:{} {}{why}", t.file, t.line, t.name)?;
            }
            writeln!(out, "{} passed, {failed} failed", outcomes.len() - failed)?;
        }
    }
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The one document of a file, read and linted (a policy's module compiled too), or its
/// problems printed.
fn read_document(path: &Path) -> Result<Option<Loaded>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let linted = crate::files::lint_text(path.display().to_string(), text);
    let errors: Vec<_> = linted.diagnostics.iter().filter(|d| d.is_error()).collect();
    for d in &errors {
        eprint!("{}", render::human(&linted.path, &linted.text, d));
    }
    let mut documents = linted.documents.into_iter().filter(|d| d.document.is_some());
    match (errors.is_empty(), documents.next(), documents.next()) {
        (false, ..) => Ok(None),
        (true, Some(document), None) => Ok(Some(document)),
        (true, None, _) => bail!("{} holds no contract, product or policy", path.display()),
        (true, Some(_), Some(_)) => bail!("{} holds several documents: give one per file", path.display()),
    }
}

/// A JSON object given inline or as a file.
fn json_object(value: &str, what: &str) -> Result<serde_json::Map<String, Any>> {
    let text = if Path::new(value).is_file() {
        std::fs::read_to_string(value).with_context(|| format!("cannot read {value}"))?
    } else {
        value.to_string()
    };
    match serde_json::from_str(&text).with_context(|| format!("{what} is not JSON"))? {
        Any::Object(map) => Ok(map),
        _ => bail!("{what} must be a JSON object"),
    }
}

/// Where the CLI runs a policy's module: in a limited child process of its own (`meshplane
/// policy-worker`), as the server does, so that a module whose one step never ends (a file
/// from someone else's pull request, say) is stopped at its budget instead of hanging `lint`.
pub fn runner() -> &'static Runner {
    static RUNNER: std::sync::OnceLock<Runner> = std::sync::OnceLock::new();
    RUNNER.get_or_init(|| {
        let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("meshplane"));
        Runner::Workers(Box::new(Pool::new(program, vec!["policy-worker".into()], 1, 512 << 20)))
    })
}

/// What `policy eval` prints: the failure, or the violations (or `pass`), then what a policy
/// on access answered besides.
fn decision_table(
    out: &mut dyn Write,
    policy: &meshplane_spec::model::policy::Policy,
    failure: Option<&str>,
    violations: &[meshplane_policy::Violation],
    answer: &meshplane_policy::AccessAnswer,
) -> std::io::Result<()> {
    if let Some(why) = failure {
        return writeln!(out, "{}: could not be evaluated, which counts as a denial: {why}", policy.id);
    }
    if violations.is_empty() {
        writeln!(out, "{}: pass", policy.id)?;
    }
    for v in violations {
        let at = v.path.as_deref().map_or(String::new(), |p| format!(" at `{p}`"));
        writeln!(out, "{} {} (rule {}){at}: {}", policy.enforcement, policy.id, v.rule, v.message)?;
    }
    if answer.approve {
        writeln!(out, "{}: approves the request without a human decision", policy.id)?;
    }
    for name in &answer.approvers {
        writeln!(out, "{}: requires approval by `{name}` as well", policy.id)?;
    }
    if let Some(days) = answer.max_days {
        writeln!(out, "{}: the grant lasts at most {days} days", policy.id)?;
    }
    Ok(())
}

fn eval(args: &EvalArgs, format: Format) -> Result<ExitCode> {
    let Some(Document::Policy(policy)) = read_document(&args.policy)?.and_then(|l| l.document) else {
        bail!("{} is not a policy (`kind: Policy`)", args.policy.display());
    };
    let Some(loaded) = read_document(&args.file)? else { return Ok(ExitCode::from(2)) };
    let before = match &args.before {
        Some(path) => match read_document(path)? {
            Some(d) => d.document,
            None => return Ok(ExitCode::from(2)),
        },
        None => None,
    };
    // The name and domain the server would key the resource by.
    let resource = Resource::from_loaded(&loaded)
        .map_err(|e| anyhow::anyhow!("{}: the server would refuse it: {e}", args.file.display()))?;
    let (name, domain, kind, document) = (resource.name, resource.domain, resource.kind.as_str(), resource.document);
    let diff = if args.action == "apply" {
        meshplane_core::governance::classify(before.as_ref(), Some(&document))
    } else {
        None
    };
    let before = before.map(serde_json::to_value).transpose()?;
    let compiled =
        meshplane_policy::check(&policy, runner()).map_err(|_| anyhow::anyhow!("the policy does not compile"))?;
    let spec = resource.spec;
    let (after, before) =
        if args.action == "delete" { (None, Some(spec.clone())) } else { (Some(spec.clone()), before) };
    let on_access = meshplane_policy::ACCESS_ACTIONS.contains(&args.action.as_str());
    let (mut input, server_knows) = if on_access {
        let input = json!({
            "action": args.action, "kind": kind, "name": name, "domain": domain, "owners": owners(&spec),
            "request": null, "consumer": null, "grants": [], "product": null, "port": null,
            "properties": meshplane_core::governance::access::properties(&spec), "contract": spec,
            "decision": null, "caller": null,
        });
        (input, &["request", "consumer", "product", "port", "decision", "caller"][..])
    } else {
        let input = json!({
            "action": args.action, "kind": kind, "name": name, "domain": domain, "owners": owners(&spec),
            "before": before, "after": after, "diff": diff, "caller": null,
        });
        (input, &["before", "caller"][..])
    };
    let given = args.input.as_deref().map(|i| json_object(i, "--input")).transpose()?.unwrap_or_default();
    let defaulted: Vec<&str> =
        server_knows.iter().copied().filter(|f| !given.contains_key(*f) && input[*f].is_null()).collect();
    if !defaulted.is_empty() {
        eprintln!("note: defaulted as null (what only a server knows): {}", defaulted.join(", "));
    }
    for (key, value) in given {
        input[key] = value;
    }
    let data = args.data.as_deref().map(|d| json_object(d, "--data")).transpose()?.map(Any::Object);
    let covered = policy.actions().contains(&args.action.as_str()) && policy.covers(kind, &domain);
    if !covered {
        eprintln!(
            "note: the policy's scope and actions do not cover a {} of {kind} in domain `{domain}`: the server would not ask it",
            args.action
        );
    }
    let asked = meshplane_policy::Input::new(&input);
    let job = Job {
        compiled: &compiled,
        input: &asked,
        data: data.as_ref(),
        budget: DEFAULT_BUDGET,
        access: on_access,
        trial: false,
    };
    let (verdict, answer) = runner().run(&[job]).remove(0);
    let denied = covered
        && (matches!(verdict, Verdict::Failed(_))
            || (policy.enforcement == "deny" && matches!(verdict, Verdict::Violated(_))));
    let mut out = output::stdout();
    let (word, violations, failure) = match &verdict {
        Verdict::Pass => ("pass", Vec::new(), None),
        Verdict::Violated(v) => ("violated", v.clone(), None),
        Verdict::Failed(why) => ("failed", Vec::new(), Some(why.clone())),
    };
    match format {
        Format::Table | Format::Junit => decision_table(&mut out, &policy, failure.as_deref(), &violations, &answer)?,
        Format::Json | Format::Yaml => {
            let mut body = json!({
                "policy": policy.id, "enforcement": policy.enforcement, "verdict": word,
                "violations": violations, "failure": failure, "covered": covered, "denied": denied, "input": input,
            });
            if on_access {
                body["approve"] = json!(answer.approve);
                body["approvers"] = json!(answer.approvers);
                body["maxDays"] = json!(answer.max_days);
            }
            output::structured(&mut out, format, &body)?;
        }
    }
    Ok(if denied { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
