//! The CLI's own configuration, like kubectl's: named **contexts**, each a registry (server)
//! and where its token comes from — an environment variable, or `meshplane login` with an
//! OpenID provider — and the current one. `meshplane config` edits it.
//!
//! The file is `$MESHPLANE_CONFIG`, else `$XDG_CONFIG_HOME/meshplane/config.yaml`, else
//! `~/.config/meshplane/config.yaml`; it holds no secret. Tokens `meshplane login` obtains are
//! kept beside it, one file per context under `tokens/`, readable by the user alone (0600, in
//! a 0700 directory). A context is chosen by `--context`, else `MESHPLANE_CONTEXT`, else the
//! current one; `--server` and `--token` (or their variables) still win over what it says.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::output::{self, Format};

/// The configuration file's contents.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: Vec<Context>,
}

/// One registry and how to authenticate to it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Context {
    pub name: String,
    pub server: String,
    /// The token is the value of this environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// The token comes from `meshplane login` with this OpenID provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
}

/// An OpenID provider that signs users in with the device authorization grant.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Login {
    pub issuer: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// Where the configuration file is.
pub fn path() -> Result<PathBuf> {
    if let Some(file) = std::env::var_os("MESHPLANE_CONFIG").filter(|f| !f.is_empty()) {
        return Ok(PathBuf::from(file));
    }
    let dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").ok_or_else(|| anyhow!("neither XDG_CONFIG_HOME nor HOME is set"))?)
                .join(".config")
        }
    };
    Ok(dir.join("meshplane/config.yaml"))
}

/// Where `meshplane login` keeps the token of `context` (whose name is a file name).
pub fn token_path(context: &str) -> Result<PathBuf> {
    check_name(context)?;
    let config = path()?;
    Ok(config.parent().unwrap_or(Path::new(".")).join("tokens").join(format!("{context}.json")))
}

/// Reads the configuration; none when there is no file.
pub fn load() -> Result<Config> {
    let file = path()?;
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let parsed = meshplane_spec::tree::parse(&text)
        .map_err(|e| anyhow!("{}:{}:{}: {}", file.display(), e.span.start.line, e.span.start.col, e.message))?;
    let Some(root) = parsed.documents.first() else { return Ok(Config::default()) };
    let config: Config = serde_json::from_value(root.to_json()).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    for context in &config.contexts {
        check_name(&context.name).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    }
    Ok(config)
}

/// Writes `contents` to a new file beside `file` and moves it over `file`, readable by the
/// user alone: a reader never sees half of it; the staged file is new, never a link someone
/// left there. With `guard_dir` (a directory of secrets), the directory is made 0700 and
/// must be the user's own: another's could swap the file.
pub fn write_private(file: &Path, contents: &[u8], guard_dir: bool) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let staged =
        dir.join(format!(".{}.{}", file.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_file(&staged);
    let write = || -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staged)
            .with_context(|| format!("cannot write {}", staged.display()))?;
        if guard_dir {
            if std::fs::metadata(dir)?.uid() != f.metadata()?.uid() {
                bail!("{} is not yours: a file of yours kept there could be swapped", dir.display());
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot make {} private", dir.display()))?;
        }
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&staged, file).with_context(|| format!("cannot write {}", file.display()))
    };
    let written = write();
    if written.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    written
}

fn save(config: &Config) -> Result<()> {
    let text = crate::yaml::to_yaml(&serde_json::to_value(config)?);
    write_private(&path()?, text.as_bytes(), false)
}

/// A context's name, which is also a file name: letters, digits, `-`, `_` and `.`, not
/// starting with a dot.
fn check_name(name: &str) -> Result<()> {
    let fine = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !fine {
        bail!("context `{name}`: use letters, digits, `-`, `_` and `.` only, not starting with `.`");
    }
    Ok(())
}

impl Config {
    /// The context a command uses: `chosen` (`--context` or `MESHPLANE_CONTEXT`), else the
    /// current one; none when neither is set.
    pub fn context(&self, chosen: Option<&str>) -> Result<Option<&Context>> {
        let Some(name) = chosen.filter(|n| !n.is_empty()).or(self.current_context.as_deref()) else {
            return Ok(None);
        };
        self.contexts.iter().find(|c| c.name == name).map(Some).ok_or_else(|| {
            let known: Vec<&str> = self.contexts.iter().map(|c| c.name.as_str()).collect();
            let known = if known.is_empty() {
                "there are none".to_string()
            } else {
                format!("there are: {}", known.join(", "))
            };
            anyhow!("no context `{name}` ({known}); see meshplane config get-contexts")
        })
    }
}

#[derive(clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
    #[arg(skip)]
    pub(crate) output: Format,
}

#[derive(clap::Subcommand)]
enum ConfigCommand {
    /// Add a context, or change one (only what is given changes).
    #[command(after_help = "Examples:\n  meshplane config set-context prod --server https://meshplane.example.com \
                            --issuer https://idp.example.com --client-id meshplane-cli --use\n  \
                            meshplane config set-context ci --server http://127.0.0.1:8080 --token-env CI_MESHPLANE_TOKEN")]
    SetContext {
        /// The context's name (letters, digits, `-`, `_`, `.`).
        name: String,
        /// The registry's base URL.
        #[arg(long)]
        server: Option<String>,
        /// Take the token from this environment variable.
        #[arg(long, value_name = "VAR", conflicts_with_all = ["issuer", "client_id"])]
        token_env: Option<String>,
        /// Sign in with this OpenID provider (`meshplane login`): its issuer URL.
        #[arg(long, requires = "client_id")]
        issuer: Option<String>,
        /// The client id meshplane has at the provider (a public client that may use the
        /// device authorization grant).
        #[arg(long, requires = "issuer")]
        client_id: Option<String>,
        /// The scopes to ask for (default: openid offline_access).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Make it the current context too.
        #[arg(long = "use")]
        use_it: bool,
    },
    /// Make a context the current one.
    #[command(after_help = "Example:\n  meshplane config use-context prod")]
    UseContext {
        /// The context's name.
        name: String,
    },
    /// List the contexts; the current one is marked.
    #[command(after_help = "Example:\n  meshplane config get-contexts -o yaml")]
    GetContexts,
    /// Print the current context's name.
    #[command(after_help = "Example:\n  meshplane config current-context")]
    CurrentContext,
    /// Remove a context, and the token `meshplane login` kept for it.
    #[command(after_help = "Example:\n  meshplane config delete-context old")]
    DeleteContext {
        /// The context's name.
        name: String,
    },
}

pub fn run(args: &ConfigArgs) -> Result<ExitCode> {
    let mut config = load()?;
    let mut out = output::stdout();
    match &args.command {
        ConfigCommand::SetContext { name, server, token_env, issuer, client_id, scopes, use_it } => {
            check_name(name)?;
            let at = config.contexts.iter().position(|c| &c.name == name);
            let mut context = match at {
                Some(i) => config.contexts[i].clone(),
                None => Context {
                    name: name.clone(),
                    server: server.clone().ok_or_else(|| anyhow!("a new context needs --server"))?,
                    token_env: None,
                    login: None,
                },
            };
            if let Some(server) = server {
                context.server = server.clone();
            }
            if let Some(var) = token_env {
                context.token_env = Some(var.clone());
                context.login = None;
            }
            if let (Some(issuer), Some(client_id)) = (issuer, client_id) {
                crate::login::check_issuer(issuer)?;
                crate::login::check_issuer(&context.server).map_err(|_| {
                    anyhow!(
                        "--server {}: a signed-in token goes over https only (http on a loopback address)",
                        context.server
                    )
                })?;
                context.login =
                    Some(Login { issuer: issuer.clone(), client_id: client_id.clone(), scopes: scopes.clone() });
                context.token_env = None;
            }
            // The server must be one `--server` would take.
            crate::remote::Server::check_url(&context.server)?;
            match at {
                Some(i) => config.contexts[i] = context,
                None => config.contexts.push(context),
            }
            if *use_it {
                config.current_context = Some(name.clone());
            }
            save(&config)?;
            let what = if at.is_some() { "changed" } else { "added" };
            let current = if *use_it { "; it is the current context" } else { "" };
            eprintln!("context {name} {what} in {}{current}", path()?.display());
        }
        ConfigCommand::UseContext { name } => {
            config.context(Some(name))?;
            config.current_context = Some(name.clone());
            save(&config)?;
            eprintln!("the current context is {name}");
        }
        ConfigCommand::CurrentContext => match &config.current_context {
            Some(name) => writeln!(out, "{name}")?,
            None => bail!("no current context: meshplane config use-context NAME"),
        },
        ConfigCommand::GetContexts => {
            if args.output != Format::Table {
                return output::structured(&mut out, args.output, &config).map(|()| ExitCode::SUCCESS);
            }
            writeln!(out, "{:<8}{:<20}{:<40}TOKEN", "CURRENT", "NAME", "SERVER")?;
            for c in &config.contexts {
                let current = if config.current_context.as_deref() == Some(&c.name) { "*" } else { "" };
                let token = match (&c.token_env, &c.login) {
                    (Some(var), _) => format!("env {var}"),
                    (None, Some(login)) => format!("login {}", login.issuer),
                    (None, None) => "-".into(),
                };
                writeln!(out, "{current:<8}{:<20}{:<40}{token}", c.name, c.server)?;
            }
        }
        ConfigCommand::DeleteContext { name } => {
            config.context(Some(name))?;
            config.contexts.retain(|c| &c.name != name);
            if config.current_context.as_deref() == Some(name) {
                config.current_context = None;
            }
            save(&config)?;
            let token = token_path(name)?;
            if token.exists() {
                std::fs::remove_file(&token).with_context(|| format!("cannot remove {}", token.display()))?;
            }
            eprintln!("context {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}
