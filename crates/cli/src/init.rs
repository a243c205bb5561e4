//! `meshplane init contract|product`: a valid, commented document to start from, on standard
//! output or in a new file (`--out`, never over an existing one).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use meshplane_spec::lint;

use crate::files::read_contract;

/// What to scaffold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// An ODCS data contract.
    Contract,
    /// An ODPS data product.
    Product,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  meshplane init contract --id orders --domain sales --out orders.odcs.yaml\n  \
                        meshplane init product --from orders.odcs.yaml --out orders.odps.yaml")]
pub struct Args {
    /// contract or product.
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
    /// For a product: the contract its output port provides (its id and domain are taken).
    #[arg(long, value_name = "CONTRACT")]
    from: Option<PathBuf>,
    /// Write the document to this new file instead of standard output.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let from = match (&args.from, args.what) {
        (Some(_), What::Contract) => {
            bail!("--from takes the contract a product provides; a contract cannot be made from another document yet")
        }
        (Some(path), What::Product) => match read_contract(path, "making a product of it")? {
            Some(contract) => Some(contract),
            None => return Ok(ExitCode::from(2)),
        },
        (None, _) => None,
    };
    let default_id = match (&from, args.what) {
        (Some(c), _) => format!("{}-product", c.id),
        (None, What::Contract) => "my-contract".into(),
        (None, What::Product) => "my-product".into(),
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
    let template = match args.what {
        What::Contract => include_str!("templates/contract.odcs.yaml"),
        What::Product => include_str!("templates/product.odps.yaml"),
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
