//! `meshplane init contract|product`: a valid, commented document to start from, on standard
//! output or in a new file (`--out`, never over an existing one); `meshplane init data`:
//! sample rows a contract accepts, written into its port ([`crate::sample_data`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use meshplane_spec::lint;

use crate::files::read_contract;
use crate::output::Format;

/// What to scaffold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// An ODCS data contract.
    Contract,
    /// An ODPS data product.
    Product,
    /// Sample rows that the contract given with --from accepts, in its server's files.
    Data,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  meshplane init contract --id orders --domain sales --out orders.odcs.yaml\n  \
                        meshplane init product --from orders.odcs.yaml --out orders.odps.yaml\n  \
                        meshplane init data --from orders.odcs.yaml --rows 1000")]
pub struct Args {
    /// contract, product, or data (sample rows for the contract given with --from).
    what: What,
    /// Its id (default `my-contract` or `my-product`; from --from, `<contract id>-product`).
    #[arg(long)]
    id: Option<String>,
    /// The domain that owns it (default `my-domain`; from --from, the contract's).
    #[arg(long)]
    domain: Option<String>,
    /// The owner's username (default: $USER).
    #[arg(long)]
    owner: Option<String>,
    /// For a product: the contract its output port provides (its id and domain are taken);
    /// for data: the contract the rows are for.
    #[arg(long, value_name = "CONTRACT")]
    pub(crate) from: Option<PathBuf>,
    /// Write the document to this new file instead of standard output; for data, the file
    /// (one object) or directory (several) instead of the server's path.
    #[arg(long, value_name = "PATH")]
    pub(crate) out: Option<PathBuf>,
    /// For data: how many rows per object (default 100, or the fewest the row count rule
    /// accepts).
    #[arg(long, value_name = "N")]
    pub(crate) rows: Option<usize>,
    /// For data: only this schema object.
    #[arg(long, value_name = "NAME")]
    pub(crate) object: Option<String>,
    /// For data: the contract's server whose files are written (needed when it has several).
    #[arg(long, value_name = "NAME")]
    pub(crate) contract_server: Option<String>,
}

pub fn run(args: &Args, format: Format) -> Result<ExitCode> {
    if args.what == What::Data {
        return crate::sample_data::run(args, format);
    }
    if args.rows.is_some() || args.object.is_some() || args.contract_server.is_some() {
        bail!("--rows, --object and --contract-server are for `meshplane init data`");
    }
    let product = args.what == What::Product;
    let from = match (&args.from, product) {
        (Some(_), false) => {
            bail!("--from takes the contract a product provides; a contract cannot be made from another document yet")
        }
        (Some(path), true) => match read_contract(path, "making a product of it")? {
            Some(contract) => Some(contract),
            None => return Ok(ExitCode::from(2)),
        },
        (None, _) => None,
    };
    let default_id = match (&from, product) {
        (Some(c), _) => format!("{}-product", c.id),
        (None, false) => "my-contract".into(),
        (None, true) => "my-product".into(),
    };
    let id = args.id.clone().unwrap_or(default_id);
    let domain = args.domain.clone().or_else(|| from.as_ref().and_then(|c| c.domain.clone()));
    let domain = domain.unwrap_or_else(|| "my-domain".into());
    let owner = args.owner.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "me".into());
    for (flag, value) in [("--id", &id), ("--domain", &domain), ("--owner", &owner)] {
        if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            bail!("{flag} `{value}`: use letters, digits, `-`, `_` and `.` only");
        }
    }
    let file = args.out.as_ref().map_or("FILE".to_string(), |p| p.display().to_string());
    let contract_id = from.as_ref().map_or("my-contract".to_string(), |c| c.id.clone());
    let template = if product {
        include_str!("templates/product.odps.yaml")
    } else {
        include_str!("templates/contract.odcs.yaml")
    };
    let text = template
        .replace("{file}", &file)
        .replace("{id}", &id)
        .replace("{domain}", &domain)
        .replace("{owner}", &owner)
        .replace("{object}", &id.replace(['-', '.'], "_"))
        .replace("{port}", &contract_id)
        .replace("{contract}", &contract_id);
    // What is made must lint clean, whatever the values given.
    let linted = lint::lint_text(file.clone(), text.clone());
    if let Some(d) = linted.diagnostics.iter().find(|d| d.is_error()) {
        bail!("the document made from these values does not lint: {}", d.message);
    }
    match &args.out {
        None => crate::output::stdout().write_all(text.as_bytes())?,
        Some(path) => {
            let mut f =
                std::fs::OpenOptions::new().write(true).create_new(true).open(path).with_context(|| {
                    format!("cannot create {} (an existing file is never overwritten)", path.display())
                })?;
            f.write_all(text.as_bytes())?;
            eprintln!("wrote {}: check it with `meshplane lint {}`", path.display(), path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
