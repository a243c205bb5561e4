//! The CLI of access management, as a client of `meshplane serve`: access requests and
//! grants, API tokens, principals, and the audit log. Every command authenticates with
//! `--token` or `MESHPLANE_TOKEN`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value as Any, json};

use crate::remote::{Server, answer, call, call_all, text, when};

#[derive(clap::Args)]
pub struct AccessArgs {
    #[command(subcommand)]
    command: AccessCommand,
    #[command(flatten)]
    pub(crate) server: Server,
}

#[derive(Subcommand)]
enum AccessCommand {
    /// Ask for access to a product's output port.
    #[command(
        after_help = "Example:\n  meshplane access request sales-orders orders --role analyst --purpose \"weekly report\""
    )]
    Request {
        /// The data product (its id).
        product: String,
        /// The output port of the product to read.
        output_port: String,
        /// Why the access is needed.
        #[arg(long)]
        purpose: String,
        /// The ODCS role asked for (its `access` and approvers apply); read access without one.
        #[arg(long)]
        role: Option<String>,
        /// When the grant ends by itself (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Who is to read: a group you belong to (default: you).
        #[arg(long = "for")]
        consumer: Option<String>,
        /// The contract (`id@vMAJOR`) when the port's contract has several majors.
        #[arg(long)]
        contract: Option<String>,
    },
    /// Approve a request at the level awaited.
    #[command(after_help = "Example:\n  meshplane access approve 12 --comment ok")]
    Approve {
        /// The request's id (`meshplane access list`).
        id: i64,
        /// Why, kept in the request's history and the audit log.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject a pending request.
    #[command(after_help = "Example:\n  meshplane access reject 12 --comment \"use the aggregated port\"")]
    Reject {
        /// The request's id (`meshplane access list`).
        id: i64,
        /// Why, kept in the request's history and the audit log.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Revoke an active grant.
    #[command(after_help = "Example:\n  meshplane access revoke 12 --comment \"project ended\"")]
    Revoke {
        /// The grant's id (`meshplane access list`).
        id: i64,
        /// Why, kept in the request's history and the audit log.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Requests and grants you may see.
    #[command(after_help = "Example:\n  meshplane access list --state pending")]
    List {
        /// pending, active, rejected, revoked or expired.
        #[arg(long)]
        state: Option<String>,
        /// Only requests for this product's ports.
        #[arg(long)]
        product: Option<String>,
        /// Only requests of this consumer (a principal).
        #[arg(long)]
        consumer: Option<String>,
    },
}

/// The rows of an answer: a list's items, or the one object.
fn rows(value: &Any) -> Vec<Any> {
    match value {
        Any::Array(items) => items.clone(),
        one => vec![one.clone()],
    }
}

/// The approvers a pending request awaits: its first level, then its second (when it has
/// one), then those a policy requires.
fn awaited(r: &Any) -> String {
    if r["state"] != "pending" {
        return "-".into();
    }
    let approved = |level: u64| {
        r["decisions"].as_array().into_iter().flatten().any(|d| d["level"] == level && d["approved"] == true)
    };
    let list = |names: &Any| names.as_array().cloned().unwrap_or_default();
    let policies = list(&r["approvers"]["policy"]);
    let levels = [list(&r["approvers"]["first"]), list(&r["approvers"]["second"])]
        .into_iter()
        .chain(policies.iter().map(|p| list(&p["names"])));
    let awaited = levels.zip(1u64..).find(|(names, level)| (*level == 1 || !names.is_empty()) && !approved(*level));
    awaited.map_or_else(String::new, |(names, _)| names.iter().map(text).collect::<Vec<_>>().join(","))
}

fn requests_table(value: &Any, out: &mut dyn Write) -> std::io::Result<()> {
    let list = rows(value);
    writeln!(
        out,
        "{:<5} {:<9} {:<24} {:<16} {:<6} {:<11} {:<20} ENFORCEMENT",
        "ID", "STATE", "PORT", "CONSUMER", "ACCESS", "AWAITS", "UNTIL"
    )?;
    for r in &list {
        let port = format!("{}/{}", text(&r["product"]), text(&r["port"]));
        let until = r["until"].as_str().map_or("-".to_string(), |u| u.chars().take(19).collect());
        writeln!(
            out,
            "{:<5} {:<9} {port:<24} {:<16} {:<6} {:<11} {until:<20} {}",
            text(&r["id"]),
            text(&r["state"]),
            text(&r["consumer"]),
            text(&r["access"]),
            awaited(r),
            text(&r["enforcement"])
        )?;
    }
    // One request: what the policies said about it, under its line.
    if value.is_object() {
        for a in value["policy"]["answers"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  policy {}@{} ({}): {}",
                text(&a["policy"]),
                text(&a["version"]),
                text(&a["effect"]),
                text(&a["message"])
            )?;
        }
    }
    Ok(())
}

pub fn access(args: &AccessArgs) -> Result<ExitCode> {
    let s = &args.server;
    let decide = |id: i64, verb: &str, comment: &str| {
        call(s, |c, base| c.post(format!("{base}/api/v1/access/{id}/{verb}")).json(&json!({ "comment": comment })))
    };
    let a = match &args.command {
        AccessCommand::Request { product, output_port, purpose, role, until, consumer, contract } => {
            let body = json!({ "product": product, "outputPort": output_port, "purpose": purpose, "role": role,
                               "until": until, "consumer": consumer, "contract": contract });
            let body = Any::Object(
                body.as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            );
            call(s, |c, base| c.post(format!("{base}/api/v1/access")).json(&body))?
        }
        AccessCommand::Approve { id, comment } => decide(*id, "approve", comment)?,
        AccessCommand::Reject { id, comment } => decide(*id, "reject", comment)?,
        AccessCommand::Revoke { id, comment } => decide(*id, "revoke", comment)?,
        AccessCommand::List { state, product, consumer } => {
            let query: Vec<(&str, String)> = [("state", state), ("product", product), ("consumer", consumer)]
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.clone()?)))
                .collect();
            call_all(s, "/api/v1/access", &query, "id")?
        }
    };
    answer(a, s.output, requests_table)
}

#[derive(clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    #[command(flatten)]
    pub(crate) server: Server,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; its text is printed once and never again.
    #[command(
        after_help = "Example:\n  CAROL=$(meshplane token create --principal carol --expires 2027-01-01T00:00:00Z)"
    )]
    Create {
        /// Whose token (platform admins only; default: yours).
        #[arg(long)]
        principal: Option<String>,
        /// What the token is for, shown in `token list`.
        #[arg(long, default_value = "")]
        description: String,
        /// When it stops working (RFC 3339).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Your tokens (everyone's, for platform admins), without their secrets.
    #[command(after_help = "Example:\n  meshplane token list --principal carol")]
    List {
        /// Only this principal's tokens.
        #[arg(long)]
        principal: Option<String>,
    },
    /// Revoke a token by its id.
    #[command(after_help = "Example:\n  meshplane token revoke tok_3f2a")]
    Revoke {
        /// The token's id (`meshplane token list`), not its text.
        id: String,
    },
}

fn tokens_table(value: &Any, out: &mut dyn Write) -> std::io::Result<()> {
    if let Some(token) = value["token"].as_str() {
        // Only the token on standard output, so that `TOKEN=$(meshplane token create ...)` works.
        writeln!(out, "{token}")?;
        return writeln!(std::io::stderr(), "(shown only now: keep it somewhere safe; meshplane stores only its hash)");
    }
    let list = rows(value);
    writeln!(out, "{:<14} {:<16} {:<20} {:<20} DESCRIPTION", "ID", "PRINCIPAL", "EXPIRES", "REVOKED")?;
    for t in &list {
        writeln!(
            out,
            "{:<14} {:<16} {:<20} {:<20} {}",
            text(&t["id"]),
            text(&t["principal"]),
            when(&t["expiresAt"]),
            when(&t["revokedAt"]),
            text(&t["description"])
        )?;
    }
    Ok(())
}

pub fn token(args: &TokenArgs) -> Result<ExitCode> {
    let s = &args.server;
    let a = match &args.command {
        TokenCommand::Create { principal, description, expires } => {
            let mut body = json!({ "description": description });
            if let Some(p) = principal {
                body["principal"] = json!(p);
            }
            if let Some(e) = expires {
                body["expiresAt"] = json!(e);
            }
            call(s, |c, base| c.post(format!("{base}/api/v1/tokens")).json(&body))?
        }
        TokenCommand::List { principal } => {
            let query: Vec<(&str, String)> = principal.iter().map(|p| ("principal", p.clone())).collect();
            call_all(s, "/api/v1/tokens", &query, "id")?
        }
        TokenCommand::Revoke { id } => call(s, |c, base| c.delete(format!("{base}/api/v1/tokens/{id}")))?,
    };
    answer(a, s.output, tokens_table)
}

#[derive(clap::Args)]
pub struct PrincipalArgs {
    #[command(subcommand)]
    command: PrincipalCommand,
    #[command(flatten)]
    pub(crate) server: Server,
}

#[derive(Subcommand)]
enum PrincipalCommand {
    /// Create or replace a user, group or service account (platform admins).
    #[command(after_help = "Example:\n  meshplane principal put carol --database-role carol --group analysts")]
    Put {
        /// The principal's name (a username, group or service account name).
        name: String,
        /// user, group or service.
        #[arg(long, default_value = "user")]
        kind: String,
        /// A group it belongs to (repeat for several).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// The role it logs in as in the databases (what grants are given to).
        #[arg(long)]
        database_role: Option<String>,
        /// It administers the whole platform (every domain, principals, purge).
        #[arg(long)]
        platform_admin: bool,
        /// A domain it administers (repeat for several).
        #[arg(long = "domain-admin")]
        domains: Vec<String>,
        /// The identity provider's account it signs in as with a JWT: the tokens' `sub`.
        #[arg(long)]
        oidc_subject: Option<String>,
        /// The provider of that account (a token's `iss`); the platform's provider by default.
        #[arg(long, requires = "oidc_subject")]
        oidc_issuer: Option<String>,
    },
    /// Every principal.
    #[command(after_help = "Example:\n  meshplane principal list -o yaml")]
    List,
    /// Create (or give a new password to) a service account's login role in a block's store;
    /// the password is printed once.
    #[command(after_help = "Example:\n  meshplane principal login etl-bot --block warehouse")]
    Login {
        /// The service account.
        name: String,
        /// The block whose store gets the login (a PostgreSQL block).
        #[arg(long)]
        block: String,
    },
}

fn principals_table(value: &Any, out: &mut dyn Write) -> std::io::Result<()> {
    let list = rows(value);
    writeln!(out, "{:<20} {:<8} {:<16} {:<20} ADMIN OF", "NAME", "KIND", "DATABASE ROLE", "GROUPS")?;
    for p in &list {
        let groups: Vec<String> = p["groups"].as_array().into_iter().flatten().map(text).collect();
        let mut admin: Vec<String> = p["domains"].as_array().into_iter().flatten().map(text).collect();
        if p["platformAdmin"] == true {
            admin.insert(0, "platform".into());
        }
        writeln!(
            out,
            "{:<20} {:<8} {:<16} {:<20} {}",
            text(&p["name"]),
            text(&p["kind"]),
            text(&p["databaseRole"]),
            groups.join(","),
            admin.join(",")
        )?;
    }
    Ok(())
}

pub fn principal(args: &PrincipalArgs) -> Result<ExitCode> {
    let s = &args.server;
    let a = match &args.command {
        PrincipalCommand::Put {
            name,
            kind,
            groups,
            database_role,
            platform_admin,
            domains,
            oidc_subject,
            oidc_issuer,
        } => {
            let mut body =
                json!({ "kind": kind, "groups": groups, "platformAdmin": platform_admin, "domains": domains });
            if let Some(role) = database_role {
                body["databaseRole"] = json!(role);
            }
            if let Some(subject) = oidc_subject {
                body["oidc"] = json!({ "subject": subject, "issuer": oidc_issuer });
            }
            call(s, |c, base| c.put(format!("{base}/api/v1/principals/{name}")).json(&body))?
        }
        PrincipalCommand::List => call_all(s, "/api/v1/principals", &[], "name")?,
        PrincipalCommand::Login { name, block } => {
            let a =
                call(s, |c, base| c.post(format!("{base}/api/v1/principals/{name}/login")).query(&[("block", block)]))?;
            return answer(a, s.output, |login, out| {
                writeln!(out, "role      {}", text(&login["role"]))?;
                writeln!(out, "password  {}", text(&login["password"]))?;
                writeln!(out, "(shown only now: meshplane does not keep the password)")
            });
        }
    };
    answer(a, s.output, principals_table)
}

#[derive(clap::Args)]
#[command(after_help = "Example:\n  meshplane whoami -o json")]
pub struct WhoAmIArgs {
    #[command(flatten)]
    pub(crate) server: Server,
}

/// The principal the token stands for.
pub fn whoami(args: &WhoAmIArgs) -> Result<ExitCode> {
    let a = call(&args.server, |c, base| c.get(format!("{base}/api/v1/whoami")))?;
    answer(a, args.server.output, principals_table)
}

#[derive(clap::Args)]
#[command(after_help = "Example:\n  meshplane audit --kind AccessRequest --since 2026-12-01T00:00:00Z")]
pub struct AuditArgs {
    /// Only this actor's changes and decisions.
    #[arg(long)]
    actor: Option<String>,
    /// Only this kind (DataContract, DataProduct, AccessRequest, Token, Principal).
    #[arg(long)]
    kind: Option<String>,
    /// Only this resource (or request id, token id, principal).
    #[arg(long)]
    name: Option<String>,
    /// Only this action (created, updated, deleted, requested, approved, rejected, revoked, expired, ...).
    #[arg(long)]
    action: Option<String>,
    /// At or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Before this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// After this sequence number.
    #[arg(long, default_value_t = 0)]
    after: i64,
    /// At most this many entries.
    #[arg(long, default_value_t = 100)]
    limit: i64,
    #[command(flatten)]
    pub(crate) server: Server,
}

pub fn audit(args: &AuditArgs) -> Result<ExitCode> {
    let mut query: Vec<(&str, String)> = vec![("after", args.after.to_string()), ("limit", args.limit.to_string())];
    let filters = [
        ("actor", &args.actor),
        ("kind", &args.kind),
        ("name", &args.name),
        ("action", &args.action),
        ("since", &args.since),
        ("until", &args.until),
    ];
    query.extend(filters.into_iter().filter_map(|(k, v)| Some((k, v.clone()?))));
    let a = call(&args.server, |c, base| c.get(format!("{base}/api/v1/audit")).query(&query))?;
    answer(a, args.server.output, |changes, out| {
        writeln!(out, "{:<6} {:<20} {:<14} {:<24} {:<22} WHAT", "SEQ", "AT", "ACTOR", "FROM", "ACTION")?;
        for c in changes.as_array().into_iter().flatten() {
            writeln!(
                out,
                "{:<6} {:<20} {:<14} {:<24} {:<22} {}/{}",
                text(&c["seq"]),
                when(&c["at"]),
                text(&c["actor"]),
                text(&c["origin"]),
                text(&c["action"]),
                text(&c["kind"]),
                text(&c["name"])
            )?;
        }
        Ok(())
    })
}
