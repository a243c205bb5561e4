//! `platform.yaml`: which environment this platform is, and its building blocks, each tagged
//! by `type` with the configuration of that type.
//!
//! ```yaml
//! apiVersion: meshplane/v1
//! kind: Platform
//! environment: dev
//! blocks:
//!   - name: warehouse
//!     type: postgres
//!     host: 127.0.0.1
//!     port: 5432
//!     database: analytics
//!     user: meshplane
//!     password: { env: WAREHOUSE_PASSWORD }
//!   - name: lake
//!     type: lake
//!     root: ./data
//! policies:                              # optional: the default pack, off unless chosen
//!   pack: warn                           # off | warn | deny
//!   budgetMs: 50                         # one policy's evaluation, past which it denies
//!   domainPolicies: false                # domain admins may write their domain's policies
//! oidc:                                  # optional: accept the identity provider's JWTs
//!   issuer: https://idp.example.com/realms/data
//!   audience: meshplane
//!   claim: preferred_username            # names the principal (the default)
//!   jwks: { url: https://idp.example.com/realms/data/protocol/openid-connect/certs }
//! ```
//!
//! Reading checks everything that can be checked without I/O and reports every problem at
//! once, each with its line and column; nothing is built from a configuration with a problem.
//! Secrets are references (`{ env: NAME }`, `{ file: PATH }`), or inline text; they are
//! resolved only when a block is built and are never printed.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use meshplane_spec::tree::{Node, Pos, Value, parse};
use serde::{Deserialize, Serialize};

use crate::registry::{BlockType, Registry};

/// A whole platform.
#[derive(Clone, Debug, Serialize)]
pub struct Platform {
    /// Only contracts' servers of this environment are bound to blocks.
    pub environment: String,
    pub blocks: Vec<BlockConfig>,
    /// The identity provider whose JWTs the API accepts besides its own tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcConfig>,
    /// How policies are evaluated, and whether the default pack is in force.
    pub policies: PoliciesConfig,
}

/// `policies:`: the default pack (off unless chosen, then every rule `warn` or `deny`) and
/// how long one policy's evaluation may take before it counts as a denial.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoliciesConfig {
    #[serde(default)]
    pub pack: Pack,
    #[serde(default = "default_budget_ms")]
    pub budget_ms: u64,
    /// Domain admins may write their own domain's policies (off: only platform admins write
    /// policies). A policy is code the server runs in its own process, and the time budget
    /// cannot stop every step: turn it on only where domain admins are trusted that far.
    #[serde(default)]
    pub domain_policies: bool,
}

impl Default for PoliciesConfig {
    fn default() -> Self {
        PoliciesConfig { pack: Pack::Off, budget_ms: default_budget_ms(), domain_policies: false }
    }
}

fn default_budget_ms() -> u64 {
    meshplane_policy::DEFAULT_BUDGET.as_millis() as u64
}

/// Whether the default policy pack is in force, and as what.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pack {
    #[default]
    Off,
    Warn,
    Deny,
}

/// OIDC: which JWTs the API accepts, and which claim names the principal.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcConfig {
    /// The `iss` the tokens must carry.
    pub issuer: String,
    /// The `aud` the tokens must carry.
    pub audience: String,
    /// The claim whose value is the principal's name. By default a token stands for the
    /// principal recorded with its account (`iss` and `sub`); name a claim only when the
    /// provider does not let users change it (many let users edit `preferred_username` and
    /// `email`).
    #[serde(default)]
    pub claim: Option<String>,
    /// Where the provider's signing keys (a JWKS document) are read from, at start.
    pub jwks: Jwks,
    /// The longest an API token made by a caller signed in with a JWT lasts, in days.
    #[serde(default = "default_token_days")]
    pub max_token_days: u32,
}

fn default_token_days() -> u32 {
    30
}

/// A JWKS document in a file, or at a URL.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Jwks {
    File(PathBuf),
    Url(String),
}

/// One block: its name, where it was declared, its `type:` and that type's configuration.
#[derive(Clone, Debug)]
pub struct BlockConfig {
    pub name: String,
    pub at: Pos,
    pub type_name: String,
    pub config: Arc<dyn BlockType>,
}

impl BlockConfig {
    /// The configuration as its own type, when it is of type `T`.
    pub fn typed<T: 'static>(&self) -> Option<&T> {
        self.config.as_any().downcast_ref()
    }
}

impl Serialize for BlockConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut described = serde_json::Map::new();
        described.insert("name".into(), self.name.clone().into());
        described.insert("type".into(), self.type_name.clone().into());
        if let serde_json::Value::Object(fields) = self.config.describe() {
            described.extend(fields);
        }
        described.serialize(s)
    }
}

/// What a port's data becomes when its contract or product is deleted or pruned, or the port
/// moves: `retain` (the default) leaves it in place, reported as orphaned, until an explicit
/// purge; `delete` drops what the block created for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

/// A PostgreSQL server whose schemas hold output ports.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresConfig {
    pub host: String,
    #[serde(default = "default_pg_port")]
    pub port: u16,
    pub database: String,
    pub user: String,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Take away privileges on meshplane's port objects that no grant explains (by default
    /// they are only reported as drift).
    #[serde(default)]
    pub revoke_unexplained: bool,
    /// How connections to the server are protected (the block's and every test run's).
    #[serde(default)]
    pub tls: PgTls,
}

/// TLS to a PostgreSQL server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PgTls {
    pub mode: TlsMode,
    /// The CA certificate (PEM) that verifies the server; the system's roots when absent.
    #[serde(default)]
    pub root_cert: Option<PathBuf>,
}

/// Whether connections are encrypted and the server verified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Not encrypted (a server on the same host, or a test).
    #[default]
    Disable,
    /// Encrypted, the server's certificate verified and its name checked against `host`.
    VerifyFull,
}

fn default_pg_port() -> u16 {
    5432
}

/// A root on the local filesystem or an S3-compatible store whose prefixes hold output ports.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LakeConfig {
    /// A local directory, or `s3://bucket[/prefix]`.
    pub root: String,
    /// The S3 endpoint (for S3-compatible stores other than AWS).
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

impl LakeConfig {
    /// The bucket and prefix of an S3 root; `None` for a local one.
    pub fn s3(&self) -> Option<(&str, &str)> {
        let rest = self.root.strip_prefix("s3://")?;
        Some(rest.split_once('/').unwrap_or((rest, "")))
    }

    /// The directory of a local root.
    pub fn local(&self) -> Option<PathBuf> {
        self.s3().is_none().then(|| PathBuf::from(self.root.strip_prefix("file://").unwrap_or(&self.root)))
    }
}

/// A block that runs as its own service, reached over the remote block protocol
/// (docs/block-protocol.openapi.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpConfig {
    /// Where the block listens: `http://host:port` or `https://...`.
    pub url: String,
    /// Sent as `Authorization: Bearer ...` with every call; the block verifies it.
    pub credential: Secret,
    /// The ODCS server types this block takes (`kafka`, `custom`, ...).
    pub server_types: Vec<String>,
}

/// A secret: a reference to an environment variable or a file, or (discouraged) inline text.
/// Never printed: its `Debug` and serialized forms show only the reference.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    Env { env: String },
    File { file: PathBuf },
    Inline(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Env { env } => write!(f, "env:{env}"),
            Secret::File { file } => write!(f, "file:{}", file.display()),
            Secret::Inline(_) => f.write_str("***"),
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{self:?}"))
    }
}

impl Secret {
    /// The secret's value, read from where it is; the error names the reference, not the value.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            Secret::Env { env } => std::env::var(env).map_err(|_| format!("the environment variable {env} is not set")),
            Secret::File { file } => std::fs::read_to_string(file)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read the secret file {}: {e}", file.display())),
            Secret::Inline(value) => Ok(value.clone()),
        }
    }
}

/// One problem of a platform file, where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub at: Pos,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.at.line, self.at.col, self.message)
    }
}

/// Every problem of a platform file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(Problem::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl Platform {
    /// The platform with no file: environment `dev`, one lake block on `./data`.
    pub fn embedded() -> Platform {
        let lake = LakeConfig {
            root: "./data".into(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            deletion_policy: DeletionPolicy::Retain,
        };
        Platform {
            environment: "dev".into(),
            blocks: vec![BlockConfig {
                name: "lake".into(),
                at: Pos::default(),
                type_name: "lake".into(),
                config: Arc::new(lake),
            }],
            oidc: None,
            policies: PoliciesConfig::default(),
        }
    }

    /// Reads a platform file of the built-in block types, or every problem it has.
    pub fn from_yaml(text: &str) -> Result<Platform, Problems> {
        Platform::read(text, &Registry::builtin())
    }

    /// Reads a platform file whose blocks are of the types `registry` knows, or every problem
    /// it has.
    pub fn read(text: &str, registry: &Registry) -> Result<Platform, Problems> {
        let parsed = parse(text).map_err(|e| Problems(vec![Problem { at: e.span.start, message: e.message }]))?;
        let mut problems = Vec::new();
        let Some(root) = parsed.documents.first().filter(|_| parsed.documents.len() == 1) else {
            let message = "platform.yaml holds exactly one document".to_string();
            return Err(Problems(vec![Problem { at: Pos { line: 1, col: 1 }, message }]));
        };
        for dup in &parsed.duplicate_keys {
            problems.push(Problem { at: dup.again.start, message: format!("`{}` is given twice", dup.key) });
        }
        let mut read = Reader { problems: &mut problems, registry };
        let platform = read.platform(root);
        match platform {
            Some(p) if problems.is_empty() => Ok(p),
            _ => Err(Problems(problems)),
        }
    }
}

/// Walks the tree, collecting problems.
struct Reader<'p> {
    problems: &'p mut Vec<Problem>,
    registry: &'p Registry,
}

impl Reader<'_> {
    fn problem(&mut self, at: Pos, message: impl Into<String>) {
        self.problems.push(Problem { at, message: message.into() });
    }

    fn text(&mut self, node: &Node, key: &str) -> Option<String> {
        match node.get(key) {
            None => {
                self.problem(node.span.start, format!("`{key}` is missing"));
                None
            }
            Some(Node { value: Value::Str(s), .. }) if !s.trim().is_empty() => Some(s.clone()),
            Some(other) => {
                self.problem(other.span.start, format!("`{key}` must be a non-empty string"));
                None
            }
        }
    }

    fn platform(&mut self, root: &Node) -> Option<Platform> {
        let Some(entries) = root.entries() else {
            self.problem(root.span.start, "platform.yaml must be a mapping");
            return None;
        };
        for entry in entries {
            if !["apiVersion", "kind", "environment", "blocks", "oidc", "policies"].contains(&entry.key.as_str()) {
                let message = format!(
                    "unknown field `{}`; expected apiVersion, kind, environment, blocks, oidc, policies",
                    entry.key
                );
                self.problem(entry.key_span.start, message);
            }
        }
        let api = self.text(root, "apiVersion");
        if let Some(api) = api.filter(|a| a != "meshplane/v1") {
            self.problem(
                root.get("apiVersion").map_or(root.span.start, |n| n.span.start),
                format!("apiVersion `{api}` is not meshplane/v1"),
            );
        }
        if let Some(kind) = self.text(root, "kind").filter(|k| k != "Platform") {
            self.problem(
                root.get("kind").map_or(root.span.start, |n| n.span.start),
                format!("kind `{kind}` is not Platform"),
            );
        }
        let environment = self.text(root, "environment");
        let mut blocks = Vec::new();
        match root.get("blocks").map(|n| (n, &n.value)) {
            None => {}
            Some((_, Value::Seq(items))) => {
                let mut names = BTreeSet::new();
                for item in items {
                    if let Some(block) = self.block(item) {
                        if !names.insert(block.name.clone()) {
                            self.problem(block.at, format!("two blocks are named `{}`", block.name));
                        }
                        blocks.push(block);
                    }
                }
            }
            Some((node, _)) => self.problem(node.span.start, "`blocks` must be a list"),
        }
        let oidc = root.get("oidc").and_then(|node| self.oidc(node));
        let policies = match root.get("policies") {
            None => PoliciesConfig::default(),
            Some(node) if node.entries().is_none() => {
                self.problem(node.span.start, "`policies` must be a mapping (pack, budgetMs, domainPolicies)");
                PoliciesConfig::default()
            }
            Some(node) => {
                let read: Option<PoliciesConfig> = self.config(node, serde_json::from_value(node.to_json()));
                if let Some(config) = read.as_ref().filter(|c| !(1..=10_000).contains(&c.budget_ms)) {
                    let at = node.get("budgetMs").map_or(node.span.start, |n| n.span.start);
                    self.problem(at, format!("`policies.budgetMs` must be 1 to 10000, not {}", config.budget_ms));
                }
                read.unwrap_or_default()
            }
        };
        Some(Platform { environment: environment?, blocks, oidc, policies })
    }

    fn oidc(&mut self, node: &Node) -> Option<OidcConfig> {
        if node.entries().is_none() {
            self.problem(node.span.start, "`oidc` must be a mapping (issuer, audience, claim, jwks)");
            return None;
        }
        let oidc: OidcConfig = self.config(node, serde_json::from_value(node.to_json()))?;
        let at = |key: &str| node.get(key).map_or(node.span.start, |n| n.span.start);
        let claim = oidc.claim.clone().unwrap_or_else(|| "sub".into());
        for (key, value) in [("issuer", &oidc.issuer), ("audience", &oidc.audience), ("claim", &claim)] {
            if value.trim().is_empty() {
                self.problem(at(key), format!("`oidc.{key}` must not be empty"));
            }
        }
        if let Jwks::Url(url) = &oidc.jwks
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            self.problem(at("jwks"), format!("`oidc.jwks.url` must be http:// or https://, not `{url}`"));
        }
        Some(oidc)
    }

    fn block(&mut self, node: &Node) -> Option<BlockConfig> {
        let Some(entries) = node.entries() else {
            self.problem(node.span.start, "a block must be a mapping");
            return None;
        };
        let name = self.text(node, "name");
        if let Some(bad) =
            name.as_ref().filter(|n| !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            self.problem(
                node.get("name").map_or(node.span.start, |n| n.span.start),
                format!("block name `{bad}` may hold only letters, digits, - and _"),
            );
        }
        let kind = self.text(node, "type")?;
        let rest = serde_json::Value::Object(
            entries
                .iter()
                .filter(|e| e.key != "name" && e.key != "type")
                .map(|e| (e.key.clone(), e.value.to_json()))
                .collect(),
        );
        let config = match self.registry.read(&kind, rest) {
            Some(read) => self.config(node, read)?,
            None => {
                let at = node.get("type").map_or(node.span.start, |n| n.span.start);
                let types = self.registry.names();
                self.problem(at, format!("unknown block type `{kind}`; the types are {types}"));
                return None;
            }
        };
        for (key, message) in config.problems() {
            self.problem(node.get(key).map_or(node.span.start, |n| n.span.start), message);
        }
        Some(BlockConfig { name: name?, at: node.span.start, type_name: kind, config })
    }

    /// A type's configuration as read; a problem points at the field it names, when it names one.
    fn config<T>(&mut self, node: &Node, read: Result<T, serde_json::Error>) -> Option<T> {
        match read {
            Ok(config) => Some(config),
            Err(e) => {
                let message = e.to_string();
                let named = message.split('`').nth(1).and_then(|field| {
                    node.entries()?.iter().find(|entry| entry.key == field).map(|entry| entry.key_span.start)
                });
                self.problem(named.unwrap_or(node.span.start), message);
                None
            }
        }
    }
}
