//! `meshplane diff OLD NEW` (filled in with the diff engine).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::Format;

#[derive(clap::Args)]
pub struct Args {
    old: PathBuf,
    new: PathBuf,
    #[arg(short = 'o', long = "output", value_enum, default_value = "human")]
    format: Format,
}

pub fn run(_args: &Args) -> Result<ExitCode> {
    anyhow::bail!("not yet")
}
