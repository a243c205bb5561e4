//! The CLI as a client of `meshplane serve`: apply, delete, get, history, events, lineage,
//! blocks, orphans, purge.
//!
//! The server is `--server URL`, or `MESHPLANE_SERVER`, or the context's (see [`crate::config`]),
//! or http://127.0.0.1:8080; the token `--token`, or `MESHPLANE_TOKEN`, or the context's. Documents
//! are linted here first, so problems point at the user's files and lines; the server checks
//! again. Exit codes: 0 done, 1 the server refused (its `{code, message, details}` printed), 2
//! usage, files or an unreachable server.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use meshplane_spec::render;
use serde_json::Value as Any;

use crate::files;
use crate::output::Format;
use crate::yaml::to_yaml;

#[derive(clap::Args)]
pub struct Server {
    /// The meshplane server (the registry): its base URL, e.g. https://meshplane.example.com
    /// (a trailing /api/v1 is understood).
    /// Default: the context's server, else http://127.0.0.1:8080.
    #[arg(long = "server", env = "MESHPLANE_SERVER", global = true)]
    url: Option<String>,
    /// The output format (`-o`, given to the whole command).
    #[arg(skip)]
    pub(crate) output: Format,
    /// The API token to authenticate with (`meshplane bootstrap` prints the first one);
    /// default: the context's.
    #[arg(long = "token", env = "MESHPLANE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// The context (`meshplane config`) whose server and token to use, instead of the
    /// current one.
    #[arg(long, env = "MESHPLANE_CONTEXT", global = true)]
    context: Option<String>,
    /// How long to wait for the server to answer a call, in seconds (connecting: at most 5).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    request_timeout: u64,
}

impl Server {
    /// The server's base URL: `--server` as given, where a trailing `/api/v1` (where the API's
    /// paths start) or `/` is understood and any other path is kept (a server behind a proxy
    /// under a prefix); refused with a hint when it has no http(s) scheme, or carries a
    /// query, a fragment or credentials (never echoed).
    pub(crate) fn base(&self) -> Result<String> {
        match &self.url {
            Some(url) => Self::check_url(url),
            None => match crate::config::load()?.context(self.context.as_deref())? {
                Some(context) => Self::check_url(&context.server),
                None => Self::check_url("http://127.0.0.1:8080"),
            },
        }
    }

    /// The token to send: `--token` (or `MESHPLANE_TOKEN`; empty is none), else the
    /// context's — its environment variable's, or the one `meshplane login` kept (refreshed
    /// when it is about to expire). A context's token goes only to the context's own server:
    /// never to another one `--server` names.
    fn bearer(&self) -> Result<Option<String>> {
        if let Some(token) = self.token.as_deref() {
            return Ok(Some(token.to_string()).filter(|t| !t.is_empty()));
        }
        let config = crate::config::load()?;
        let Some(context) = config.context(self.context.as_deref())? else { return Ok(None) };
        let own = Self::check_url(&context.server)?;
        if let Some(url) = &self.url
            && Self::check_url(url)? != own
        {
            return Ok(None);
        }
        if context.token_env.is_some() || context.login.is_some() {
            crate::login::check_issuer(&own).map_err(|_| {
                anyhow!("context {}: its token would travel to {own} in the clear; use https", context.name)
            })?;
        }
        match (&context.token_env, &context.login) {
            (Some(var), _) => Ok(std::env::var(var).ok().filter(|t| !t.is_empty())),
            (None, Some(login)) => crate::login::token(context, login).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// A registry URL as `--server` takes it (see [`Server::base`]).
    pub(crate) fn check_url(url: &str) -> Result<String> {
        let given = url.trim();
        let hint = "--server is the registry's base URL, e.g. http://127.0.0.1:8080";
        if given.contains('@') {
            bail!("--server carries credentials: pass the token with --token or MESHPLANE_TOKEN instead");
        }
        if !given.contains("://") {
            bail!("--server `{given}` has no scheme: did you mean http://{given}? ({hint})");
        }
        let url = reqwest::Url::parse(given).map_err(|e| anyhow!("--server `{given}` is not a URL ({e}); {hint}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("--server `{given}` is not http or https; {hint}");
        }
        if url.query().is_some() || url.fragment().is_some() {
            bail!("--server `{given}` has a query or a fragment; {hint}");
        }
        let path = url.path().trim_end_matches('/');
        let path = path.strip_suffix("/api/v1").unwrap_or(path);
        Ok(format!("{}{path}", url.origin().ascii_serialization()))
    }
}

/// How long a connection to the server may take to open.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  meshplane apply -f examples/mesh --dry-run\n  meshplane apply -f orders.odcs.yaml -f orders.odps.yaml --wait=2m"
)]
pub struct ApplyArgs {
    /// Files or directories of contracts and products (directories are searched recursively).
    #[arg(short = 'f', long = "file", required = true)]
    files: Vec<PathBuf>,
    /// Show what would change; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also delete every resource of the applied documents' domains that the files do not
    /// hold: the files are the whole desired state of those domains.
    #[arg(long)]
    prune: bool,
    /// Then wait until every applied resource is Ready, or failed for good, for at most this
    /// long (`90s`, `5m`; 5 minutes when no time is given); exit 1 if one is not Ready,
    /// printing the condition that holds it back.
    #[arg(long, num_args = 0..=1, default_missing_value = "5m", value_name = "TIMEOUT", value_parser = humantime::parse_duration)]
    wait: Option<std::time::Duration>,
    #[command(flatten)]
    pub(crate) server: Server,
}

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  meshplane delete products finance-forecast --dry-run\n  meshplane delete contracts orders@v1"
)]
pub struct DeleteArgs {
    /// contracts or products.
    kind: String,
    /// The resource (`id@vMAJOR` for a contract, `id` for a product).
    name: String,
    /// Show what would be deleted; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    pub(crate) server: Server,
}

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  meshplane get contracts --domain sales\n  meshplane get products finance-revenue -o yaml\n  meshplane get contracts -w"
)]
pub struct GetArgs {
    /// contracts, products or policies.
    pub(crate) kind: String,
    /// One resource (`id@vMAJOR` for a contract, `id` for a product); all when left out.
    pub(crate) name: Option<String>,
    /// Only resources of this domain.
    #[arg(long)]
    pub(crate) domain: Option<String>,
    /// Only resources whose document has this `status` (draft, active, deprecated, ...).
    #[arg(long)]
    pub(crate) status: Option<String>,
    /// Only resources with this tag.
    #[arg(long)]
    pub(crate) tag: Option<String>,
    /// Page size (1 to 1000).
    #[arg(long)]
    pub(crate) limit: Option<u32>,
    /// Start after this key (the `next` a previous page printed).
    #[arg(long)]
    pub(crate) after: Option<String>,
    /// After the listing, print each resource again whenever it changes (its document or
    /// its readiness), until interrupted; with `-o json`, one JSON object per line.
    #[arg(short = 'w', long)]
    pub(crate) watch: bool,
    #[command(flatten)]
    pub(crate) server: Server,
}

#[derive(clap::Args)]
#[command(after_help = "Example:\n  meshplane describe contracts orders@v2")]
pub struct DescribeArgs {
    #[command(flatten)]
    resource: Resource,
    #[command(flatten)]
    pub(crate) server: Server,
}

/// One stored resource, as commands name it.
#[derive(clap::Args)]
struct Resource {
    /// contracts or products.
    kind: String,
    /// The resource (`id@vMAJOR` for a contract, `id` for a product).
    name: String,
}

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  meshplane history contracts orders@v2\n  meshplane history contracts orders@v2 --show 3 > orders-gen3.odcs.yaml"
)]
pub struct HistoryArgs {
    #[command(flatten)]
    resource: Resource,
    /// Print the document as it was at this generation (YAML; `-o json` for JSON) instead of
    /// the list of changes.
    #[arg(long, value_name = "GENERATION")]
    show: Option<i64>,
    #[command(flatten)]
    pub(crate) server: Server,
}

#[derive(clap::Args)]
#[command(after_help = "Example:\n  meshplane events --after 120 --limit 50 -o json")]
pub struct EventsArgs {
    /// Only changes after this sequence number.
    #[arg(long, default_value_t = 0)]
    after: i64,
    /// At most this many changes.
    #[arg(long, default_value_t = 100)]
    limit: i64,
    #[command(flatten)]
    pub(crate) server: Server,
}

#[derive(clap::Args)]
#[command(after_help = "Example:\n  meshplane blocks -o yaml")]
pub struct BlocksArgs {
    #[command(flatten)]
    pub(crate) server: Server,
}

#[derive(clap::Args)]
#[command(after_help = "Example:\n  meshplane orphans --all")]
pub struct OrphansArgs {
    /// Also those already purged.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    pub(crate) server: Server,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  meshplane purge --dry-run\n  meshplane purge --id 3")]
pub struct PurgeArgs {
    /// Only this orphan (its id in `meshplane orphans`); every purgeable one otherwise.
    #[arg(long)]
    id: Option<i64>,
    /// Say what would be purged; remove nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    pub(crate) server: Server,
}

#[derive(clap::Args)]
#[command(after_help = "Example:\n  meshplane lineage finance-revenue")]
pub struct LineageArgs {
    /// The data product (its id).
    product: String,
    #[command(flatten)]
    pub(crate) server: Server,
}

/// The server's answer: a body, or its refusal.
pub(crate) enum Answer {
    Ok(Any),
    Refused(Any),
}

pub(crate) fn call(
    server: &Server,
    request: impl FnOnce(&reqwest::Client, &str) -> reqwest::RequestBuilder,
) -> Result<Answer> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let base = server.base()?;
    let base = base.as_str();
    let token = server.bearer()?;
    runtime.block_on(async {
        let timeout = std::time::Duration::from_secs(server.request_timeout);
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .build()
            .context("cannot make the HTTP client")?;
        let mut builder = request(&client, base);
        if let Some(token) = &token {
            builder = builder.bearer_auth(token);
        }
        let res = builder.send().await.map_err(|e| {
            if e.is_timeout() {
                let waited = if e.is_connect() { CONNECT_TIMEOUT.min(timeout).as_secs() } else { timeout.as_secs() };
                anyhow!("the meshplane server at {base} did not answer within {waited} s (--request-timeout)")
            } else if e.is_connect() {
                // The innermost cause says it (connection refused, no such host); the layers
                // above it only repeat the URL.
                let mut cause: &dyn std::error::Error = &e;
                while let Some(inner) = cause.source() {
                    cause = inner;
                }
                anyhow!("cannot reach the meshplane server at {base}: {cause}; is `meshplane serve` running there? (--server or MESHPLANE_SERVER)")
            } else {
                anyhow::Error::new(e).context(format!("cannot reach the meshplane server at {base}"))
            }
        })?;
        let ok = res.status().is_success();
        let status = res.status();
        let mut body: Any =
            res.json().await.with_context(|| format!("the server at {base} answered {status} without JSON"))?;
        if status == reqwest::StatusCode::UNAUTHORIZED && token.is_none() {
            // What to do is the client's to say: the server only knows nothing was sent.
            body["message"] = NO_TOKEN.into();
        }
        Ok(if ok { Answer::Ok(body) } else { Answer::Refused(body) })
    })
}

/// Every item of a list the server answers a page at a time (`after` and `limit`): pages are
/// read until one is not full; `cursor` is the field of an item that the next page starts
/// after.
pub(crate) fn call_all(server: &Server, path: &str, query: &[(&str, String)], cursor: &str) -> Result<Answer> {
    const PAGE: usize = 1000;
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q: Vec<(&str, String)> = query.to_vec();
        q.push(("limit", PAGE.to_string()));
        if let Some(after) = &after {
            q.push(("after", after.clone()));
        }
        let items = match call(server, |c, base| c.get(format!("{base}{path}")).query(&q))? {
            Answer::Ok(Any::Array(items)) => items,
            Answer::Ok(other) => return Ok(Answer::Ok(other)),
            refused => return Ok(refused),
        };
        let full = items.len() >= PAGE;
        after = items.last().map(|item| text(&item[cursor]));
        all.extend(items);
        if !full {
            return Ok(Answer::Ok(Any::Array(all)));
        }
    }
}

/// The message of a refusal for want of a token, when none was sent.
const NO_TOKEN: &str = "no token: set MESHPLANE_TOKEN or pass --token (the first admin token comes from meshplane \
                        bootstrap), or sign in with meshplane login";

pub(crate) fn refused(body: &Any, format: Format) -> Result<ExitCode> {
    if format != Format::Table {
        crate::output::error(
            format,
            body["code"].as_str().unwrap_or("?"),
            body["message"].as_str().unwrap_or("refused"),
            &body["details"],
        );
        return Ok(ExitCode::from(1));
    }
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "error[{}]: {}",
        body["code"].as_str().unwrap_or("?"),
        body["message"].as_str().unwrap_or("refused")
    )?;
    if !body["details"].is_null() {
        write!(err, "{}", to_yaml(&body["details"]))?;
    }
    Ok(ExitCode::from(1))
}

pub(crate) fn print(
    output: Format,
    value: &Any,
    table: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<ExitCode> {
    let mut out = crate::output::stdout();
    match output {
        Format::Table => table(&mut out)?,
        machine => crate::output::structured(&mut out, machine, value)?,
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn answer(
    a: Answer,
    output: Format,
    table: impl FnOnce(&Any, &mut dyn Write) -> std::io::Result<()>,
) -> Result<ExitCode> {
    match a {
        Answer::Ok(body) => print(output, &body, |out| table(&body, out)),
        Answer::Refused(body) => refused(&body, output),
    }
}

pub fn apply(args: &ApplyArgs) -> Result<ExitCode> {
    let mut texts = Vec::new();
    let mut documents = Vec::new();
    let mut broken = false;
    for found in files::collect(&args.files)? {
        let text =
            std::fs::read_to_string(&found.path).with_context(|| format!("cannot read {}", found.path.display()))?;
        let linted = crate::files::lint_text(found.path.display().to_string(), text.clone());
        if !found.explicit && !linted.documents.iter().any(|d| d.document.is_some()) {
            continue;
        }
        for d in linted.diagnostics.iter().filter(|d| d.is_error()) {
            eprint!("{}", render::human(&linted.path, &linted.text, d));
            broken = true;
        }
        texts.push(text);
        documents.extend(linted.documents.into_iter().filter_map(|d| d.document));
    }
    if broken {
        eprintln!("error: fix the errors above before applying; nothing was sent");
        return Ok(ExitCode::from(2));
    }
    if texts.is_empty() {
        bail!("no contract or product found in {:?}", args.files);
    }
    let body = texts.join("\n---\n");
    let query = [("dryRun", args.dry_run), ("prune", args.prune)];
    // Where the change feed is before the apply: waiting follows it from there.
    let from = match args.wait {
        Some(_) if !args.dry_run => Some(crate::watch::position(&args.server, "contracts")?),
        _ => None,
    };
    let a = call(&args.server, |c, base| c.post(format!("{base}/api/v1/apply")).query(&query).body(body))?;
    if let (Some(timeout), Some(from), Answer::Ok(applied)) = (args.wait, from, &a) {
        return crate::watch::applied(&args.server, applied, from, timeout, |out| applied_lines(applied, false, out));
    }
    let changes = match &a {
        Answer::Ok(body) if args.dry_run && args.server.output == Format::Table => {
            crate::diff::dry_run_changes(&args.server, body, &documents)?
        }
        _ => Vec::new(),
    };
    let dry_run = args.dry_run;
    answer(a, args.server.output, |body, out| {
        applied_lines(body, dry_run, out)?;
        // Printed after the lines (kept as they are for scripts), each document's changes.
        for (name, lines) in &changes {
            write!(out, "{name}:\n{lines}")?;
        }
        Ok(())
    })
}

/// What an apply did, one line per document.
fn applied_lines(body: &Any, dry_run: bool, out: &mut dyn Write) -> std::io::Result<()> {
    for item in body["applied"].as_array().into_iter().flatten() {
        let outcome = item["outcome"].as_str().unwrap_or("?");
        let outcome = if dry_run { format!("{outcome} (dry run)") } else { outcome.to_string() };
        // An unchanged resource comes with its status: when it is failing, why (not while it
        // only waits, for its contracts say).
        let why = match crate::readiness::of(item) {
            crate::readiness::Readiness::NotReady(c) if c.for_good || c.reason.ends_with("Failed") => {
                format!("; not Ready: {} {}: {}", c.condition, c.reason, c.message)
            }
            _ => String::new(),
        };
        writeln!(
            out,
            "{} {} {} generation {}: {outcome}{why}",
            item["kind"].as_str().unwrap_or("?"),
            item["name"].as_str().unwrap_or("?"),
            item["version"].as_str().unwrap_or(""),
            item["generation"]
        )?;
        for warning in item["warnings"].as_array().into_iter().flatten() {
            let at = warning["path"].as_str().map_or(String::new(), |p| format!(" at `{p}`"));
            writeln!(
                out,
                "  warning: policy {} (rule {}){at}: {}",
                text(&warning["policy"]),
                text(&warning["rule"]),
                text(&warning["message"])
            )?;
        }
    }
    Ok(())
}

/// Asks for a resource's deletion; the server removes it once its blocks have cleaned up.
pub fn delete(args: &DeleteArgs) -> Result<ExitCode> {
    let (kind, name) = (&args.kind, &args.name);
    let query = [("dryRun", args.dry_run)];
    let a = call(&args.server, |c, base| c.delete(format!("{base}/api/v1/{kind}/{name}")).query(&query))?;
    answer(a, args.server.output, |r, out| {
        let waiting: Vec<String> = r["finalizers"].as_array().into_iter().flatten().map(text).collect();
        let when = if waiting.is_empty() {
            "it goes at its next reconcile".to_string()
        } else {
            format!("it goes once these have cleaned up: {}", waiting.join(", "))
        };
        let dry = if args.dry_run { " (dry run: nothing changed)" } else { "" };
        writeln!(out, "{} {}: deletion requested{dry}; {when}", text(&r["kind"]), text(&r["name"]))
    })
}

/// A time for a table: RFC 3339 to the second (`2026-12-07T00:39:09Z`); the API's answers
/// keep their fractions.
pub(crate) fn when(v: &Any) -> String {
    let full = text(v);
    match (full.find('.'), full.find('T')) {
        (Some(dot), Some(t)) if dot > t => {
            let digits = full[dot + 1..].bytes().take_while(u8::is_ascii_digit).count();
            format!("{}{}", &full[..dot], &full[dot + 1 + digits..])
        }
        _ => full,
    }
}

pub(crate) fn text(v: &Any) -> String {
    match v {
        Any::String(s) => s.clone(),
        Any::Null => "-".into(),
        other => other.to_string(),
    }
}

pub fn get(args: &GetArgs) -> Result<ExitCode> {
    let kind = &args.kind;
    let (a, from) = if let Some(name) = &args.name {
        // Read before the resource, so that a watch misses none of its changes.
        let from = if args.watch { Some(crate::watch::position(&args.server, kind)?) } else { None };
        (call(&args.server, |c, base| c.get(format!("{base}/api/v1/{kind}/{name}")))?, from)
    } else {
        let limit = args.limit.map(|l| l.to_string());
        let filters = [
            ("domain", &args.domain),
            ("status", &args.status),
            ("tag", &args.tag),
            ("after", &args.after),
            ("limit", &limit),
        ];
        let query: Vec<(&str, &str)> = filters.iter().filter_map(|(k, v)| v.as_deref().map(|v| (*k, v))).collect();
        let a = call(&args.server, |c, base| c.get(format!("{base}/api/v1/{kind}")).query(&query))?;
        let from = match &a {
            Answer::Ok(page) if args.watch => page["watchFrom"].as_i64(),
            _ => None,
        };
        (a, from)
    };
    let output = args.server.output;
    let code = match (&a, from) {
        // Watched: the rows (or JSON lines) that each change prints again.
        (Answer::Ok(found), Some(from)) => {
            let found = if args.name.is_some() { vec![found.clone()] } else { items(found).to_vec() };
            return crate::watch::resources(args, &found, from);
        }
        _ if args.name.is_some() => answer(a, output, record_table)?,
        _ => answer(a, output, |page, out| {
            resources_header(out)?;
            for r in items(page) {
                resource_row(r, out)?;
            }
            if let Some(next) = page["next"].as_str() {
                writeln!(out, "(more: the next page starts after {next})")?;
            }
            Ok(())
        })?,
    };
    Ok(code)
}

fn items(page: &Any) -> &[Any] {
    page["items"].as_array().map(Vec::as_slice).unwrap_or_default()
}

pub(crate) fn resources_header(out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<32} {:<10} {:<10} {:<16} {:<7} {:<22} GEN",
        "NAME", "VERSION", "STATUS", "DOMAIN", "READY", "REASON"
    )
}

/// One resource's row: what it is and whether it is Ready (and if not, why).
pub(crate) fn resource_row(r: &Any, out: &mut dyn Write) -> std::io::Result<()> {
    let readiness = crate::readiness::of(r);
    let (ready, reason) = readiness.columns();
    writeln!(
        out,
        "{:<32} {:<10} {:<10} {:<16} {ready:<7} {reason:<22} {}",
        text(&r["name"]),
        text(&r["version"]),
        text(&r["status"]),
        text(&r["domain"]),
        r["generation"]
    )
}

/// A resource's identity, owner, generation and readiness; its deletion when one was asked for.
fn record_table(r: &Any, out: &mut dyn Write) -> std::io::Result<()> {
    for key in ["kind", "name", "version", "status", "domain", "team", "tags", "generation"] {
        writeln!(out, "{key:<11} {}", text(&r[key]))?;
    }
    for key in ["createdAt", "updatedAt"] {
        writeln!(out, "{key:<11} {}", when(&r[key]))?;
    }
    let ready = match crate::readiness::of(r) {
        crate::readiness::Readiness::Pending => "Unknown (not reconciled at this generation yet)".to_string(),
        crate::readiness::Readiness::Ready => "True".to_string(),
        crate::readiness::Readiness::NotReady(c) => format!("False ({} {}: {})", c.condition, c.reason, c.message),
    };
    writeln!(out, "{:<11} {ready}", "ready")?;
    if !r["deletionRequested"].is_null() {
        writeln!(
            out,
            "{:<11} {} (waiting for: {})",
            "deleting",
            text(&r["deletionRequested"]),
            text(&r["finalizers"])
        )?;
    }
    Ok(())
}

pub(crate) fn changes_table(changes: &Any, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{:<6} {:<20} {:<8} {:<34} {:<10} {:<4} ACTOR", "SEQ", "AT", "ACTION", "RESOURCE", "VERSION", "GEN")?;
    for c in changes.as_array().into_iter().flatten() {
        let resource = format!("{}/{}", text(&c["kind"]), text(&c["name"]));
        writeln!(
            out,
            "{:<6} {:<20} {:<8} {resource:<34} {:<10} {:<4} {}",
            text(&c["seq"]),
            when(&c["at"]),
            text(&c["action"]),
            text(&c["version"]),
            text(&c["generation"]),
            text(&c["actor"])
        )?;
    }
    Ok(())
}

pub fn history(args: &HistoryArgs) -> Result<ExitCode> {
    let (kind, name) = (&args.resource.kind, &args.resource.name);
    let a = call_all(&args.server, &format!("/api/v1/{kind}/{name}/history"), &[], "seq")?;
    let Some(generation) = args.show else {
        return answer(a, args.server.output, changes_table);
    };
    let changes = match a {
        Answer::Ok(changes) => changes,
        Answer::Refused(body) => return refused(&body, args.server.output),
    };
    let all = changes.as_array().map(Vec::as_slice).unwrap_or_default();
    let at = all.iter().rev().find(|c| c["generation"] == generation && !c["after"].is_null());
    let Some(change) = at else {
        let known: Vec<String> = all.iter().filter(|c| !c["after"].is_null()).map(|c| text(&c["generation"])).collect();
        bail!("{kind} {name} has no generation {generation} (it has: {})", known.join(", "));
    };
    let mut out = crate::output::stdout();
    match args.server.output {
        Format::Json => crate::output::structured(&mut out, Format::Json, &change["after"])?,
        _ => write!(out, "{}", to_yaml(&change["after"]))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// One resource: what it is and holds, its conditions, its latest test results and every
/// change it went through.
pub fn describe(args: &DescribeArgs) -> Result<ExitCode> {
    let (kind, name) = (&args.resource.kind, &args.resource.name);
    let record = match call(&args.server, |c, base| c.get(format!("{base}/api/v1/{kind}/{name}")))? {
        Answer::Ok(r) => r,
        Answer::Refused(body) => return refused(&body, args.server.output),
    };
    let changes = match call_all(&args.server, &format!("/api/v1/{kind}/{name}/history"), &[], "seq")? {
        Answer::Ok(c) => c,
        Answer::Refused(body) => return refused(&body, args.server.output),
    };
    // A contract's own latest runs; a product's answer holds those of its contracts.
    let tests = if record["kind"] == "DataContract" {
        match call(&args.server, |c, base| c.get(format!("{base}/api/v1/{kind}/{name}/tests")).query(&[("limit", 5)]))?
        {
            Answer::Ok(runs) => runs,
            Answer::Refused(body) => return refused(&body, args.server.output),
        }
    } else {
        Any::Null
    };
    let both = serde_json::json!({ "resource": record, "tests": tests, "history": changes });
    print(args.server.output, &both, |out| {
        record_table(&record, out)?;
        let spec = &record["spec"];
        for (label, field) in [("objects", "schema"), ("inputPorts", "inputPorts"), ("outputPorts", "outputPorts")] {
            let names: Vec<String> = spec[field].as_array().into_iter().flatten().map(|o| text(&o["name"])).collect();
            if !names.is_empty() {
                writeln!(out, "{label:<11} {}", names.join(", "))?;
            }
        }
        writeln!(out, "\nconditions:")?;
        conditions_table(&record["reconciled"], out)?;
        writeln!(out, "\ntests:")?;
        if record["kind"] == "DataContract" {
            runs_table(tests.as_array().map(Vec::as_slice).unwrap_or_default(), None, out)?;
        } else {
            let latest = record["latestTests"].as_array().map(Vec::as_slice).unwrap_or_default();
            let runs: Vec<(String, Any)> = latest.iter().map(|t| (text(&t["contract"]), t["run"].clone())).collect();
            let (contracts, runs): (Vec<String>, Vec<Any>) = runs.into_iter().unzip();
            runs_table(&runs, Some(&contracts), out)?;
        }
        writeln!(out, "\nhistory:")?;
        changes_table(&changes, out)
    })
}

/// The conditions the reconcilers last wrote, one per line, the message last.
fn conditions_table(reconciled: &Any, out: &mut dyn Write) -> std::io::Result<()> {
    let conditions = reconciled["conditions"].as_array().map(Vec::as_slice).unwrap_or_default();
    if conditions.is_empty() {
        return writeln!(out, "  (not reconciled yet)");
    }
    writeln!(out, "  {:<18} {:<7} {:<22} {:<4} {:<20} MESSAGE", "TYPE", "STATUS", "REASON", "GEN", "SINCE")?;
    for c in conditions {
        writeln!(
            out,
            "  {:<18} {:<7} {:<22} {:<4} {:<20} {}",
            text(&c["type"]),
            text(&c["status"]),
            text(&c["reason"]),
            text(&c["observedGeneration"]),
            when(&c["lastTransitionTime"]),
            text(&c["message"])
        )?;
    }
    Ok(())
}

/// Test runs: when, on which server, the verdict and the summary's counts; `contracts` names
/// the contract of each run (a product's), or the runs are the described contract's.
fn runs_table(runs: &[Any], contracts: Option<&[String]>, out: &mut dyn Write) -> std::io::Result<()> {
    if runs.is_empty() {
        return writeln!(out, "  (none)");
    }
    let first = contracts.map_or(String::new(), |_| format!("{:<24} ", "CONTRACT"));
    writeln!(out, "  {first}{:<28} {:<12} {:<7} SUMMARY", "AT", "SERVER", "VERDICT")?;
    for (i, run) in runs.iter().enumerate() {
        let contract = contracts.map_or(String::new(), |c| format!("{:<24} ", c.get(i).map_or("-", String::as_str)));
        if run.is_null() {
            writeln!(out, "  {contract}(never tested)")?;
            continue;
        }
        let verdict = if run["failed"] == true { "failed" } else { "passed" };
        // A product's answer carries the summary; a contract's runs, their whole report.
        let summary = if run["summary"].is_null() { &run["report"]["summary"] } else { &run["summary"] };
        let counts: Vec<String> = summary
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v.is_number())
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(
            out,
            "  {contract}{:<20} {:<12} {verdict:<7} {}",
            when(&run["at"]),
            text(&run["server"]),
            counts.join(", ")
        )?;
    }
    Ok(())
}

pub fn events(args: &EventsArgs) -> Result<ExitCode> {
    let a = call(&args.server, |c, base| {
        c.get(format!("{base}/api/v1/events")).query(&[("after", args.after), ("limit", args.limit)])
    })?;
    answer(a, args.server.output, changes_table)
}

/// The platform's blocks with their health.
pub fn blocks(args: &BlocksArgs) -> Result<ExitCode> {
    let a = call(&args.server, |c, base| c.get(format!("{base}/api/v1/blocks")))?;
    answer(a, args.server.output, |blocks, out| {
        writeln!(out, "{:<20} {:<10} HEALTH", "NAME", "TYPE")?;
        for b in blocks.as_array().into_iter().flatten() {
            writeln!(out, "{:<20} {:<10} {}", text(&b["name"]), text(&b["type"]), text(&b["health"]))?;
        }
        Ok(())
    })
}

/// What blocks left in place when resources went.
pub fn orphans(args: &OrphansArgs) -> Result<ExitCode> {
    let a = call_all(&args.server, "/api/v1/orphans", &[("all", args.all.to_string())], "id")?;
    answer(a, args.server.output, |orphans, out| {
        writeln!(out, "{:<5} {:<12} {:<28} NOTE", "ID", "BLOCK", "FROM")?;
        for o in orphans.as_array().into_iter().flatten() {
            let from = format!("{}/{}", text(&o["kind"]), text(&o["name"]));
            let purged =
                o["purgedAt"].as_str().map(|_| format!(" (purged {})", when(&o["purgedAt"]))).unwrap_or_default();
            writeln!(out, "{:<5} {:<12} {from:<28} {}{purged}", text(&o["id"]), text(&o["block"]), text(&o["note"]))?;
        }
        Ok(())
    })
}

/// Removes orphans, data and all; exit 1 when one could not be purged.
pub fn purge(args: &PurgeArgs) -> Result<ExitCode> {
    let mut query = vec![("dryRun", args.dry_run.to_string())];
    if let Some(id) = args.id {
        query.push(("id", id.to_string()));
    }
    let a = call(&args.server, |c, base| c.post(format!("{base}/api/v1/orphans/purge")).query(&query))?;
    let failed =
        matches!(&a, Answer::Ok(list) if list.as_array().into_iter().flatten().any(|r| r["outcome"] == "failed"));
    let code = answer(a, args.server.output, |results, out| {
        if results.as_array().is_none_or(Vec::is_empty) {
            writeln!(out, "nothing to purge")?;
        }
        for r in results.as_array().into_iter().flatten() {
            let reason = r["reason"].as_str().map(|why| format!(": {why}")).unwrap_or_default();
            writeln!(out, "{} {} {}: {}{reason}", r["id"], text(&r["block"]), text(&r["note"]), text(&r["outcome"]))?;
        }
        Ok(())
    })?;
    Ok(if failed { ExitCode::from(1) } else { code })
}

pub fn lineage(args: &LineageArgs) -> Result<ExitCode> {
    let product = &args.product;
    let a = call(&args.server, |c, base| c.get(format!("{base}/api/v1/lineage/{product}")))?;
    answer(a, args.server.output, |l, out| {
        for (label, key) in [("upstream", "upstream"), ("downstream", "downstream")] {
            writeln!(out, "{label}:")?;
            for p in l[key].as_array().into_iter().flatten() {
                let via: Vec<String> = p["via"].as_array().into_iter().flatten().map(text).collect();
                writeln!(out, "  {} (via {}, from {})", text(&p["product"]), via.join(", "), text(&p["from"]))?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::when;

    #[test]
    fn a_table_shows_times_to_the_second() {
        assert_eq!(when(&json!("2026-12-07T00:39:09.099337Z")), "2026-12-07T00:39:09Z");
        assert_eq!(when(&json!("2026-12-07T00:39:09.5+01:00")), "2026-12-07T00:39:09+01:00");
        assert_eq!(when(&json!("2026-12-07T00:39:09Z")), "2026-12-07T00:39:09Z");
        assert_eq!(when(&json!(null)), "-");
        assert_eq!(when(&json!("v1.2")), "v1.2", "not a time: as it is");
    }
}
