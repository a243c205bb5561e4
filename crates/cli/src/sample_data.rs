//! `meshplane init data --from CONTRACT`: sample rows the contract accepts
//! ([`meshplane_quality::samples`]), written where its server's `path` says (relative to the
//! working directory, as `meshplane test` and the server read it) or to `--out`, as one new
//! file per schema object in the server's format. Nothing existing is overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use meshplane_quality::files::Format as FileFormat;
use meshplane_quality::plan::compile;
use meshplane_quality::samples;
use meshplane_quality::target;
use serde::Serialize;

use crate::files::read_contract;
use crate::init::Args;
use crate::output::{self, Format};

/// What was written for one object.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Written {
    object: String,
    rows: usize,
    path: String,
    format: &'static str,
    /// Checks the rows were not made for (the contract's SQL rules).
    not_considered: Vec<String>,
}

pub fn run(args: &Args, format: Format) -> Result<ExitCode> {
    let Some(path) = &args.from else {
        bail!("`meshplane init data` needs the contract: --from CONTRACT");
    };
    let Some(contract) = read_contract(path, "making data for it")? else {
        return Ok(ExitCode::from(2));
    };
    let server = target::pick_server(&contract, args.contract_server.as_deref()).map_err(|e| anyhow!("{e}"))?;
    let plan = compile(&contract, args.object.as_deref());
    if plan.objects.is_empty() {
        match &args.object {
            Some(name) => bail!("the contract has no schema object `{name}`"),
            None => bail!("the contract has no schema object to make rows for"),
        }
    }
    let several = plan.objects.len() > 1;
    let places: Vec<(String, PathBuf, FileFormat)> = match &args.out {
        Some(out) => {
            let declared = server.format.as_deref().and_then(FileFormat::parse);
            plan.objects
                .iter()
                .map(|o| {
                    let format = (!several)
                        .then(|| out.extension().and_then(|e| FileFormat::parse(&e.to_string_lossy())))
                        .flatten()
                        .or(declared)
                        .unwrap_or(FileFormat::Parquet);
                    let file = if several { out.join(format!("{}.{}", o.table, format.name())) } else { out.clone() };
                    (o.table.clone(), file, format)
                })
                .collect()
        }
        None => server_files(server, &plan)?,
    };
    let delimiter = target::delimiter(server).map_err(|e| anyhow!("{e}"))?;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let mut made = Vec::new();
    for object in &plan.objects {
        let sample = samples::generate(object, args.rows, now_ms).map_err(|e| anyhow!("{}: {e}", object.name))?;
        made.push(sample);
    }
    // Every object's rows are made before any file is written: an error leaves nothing behind.
    for (_, file, _) in &places {
        if file.exists() {
            bail!("{} exists: an existing file is never overwritten (remove it, or give --out)", file.display());
        }
    }
    let mut written = Vec::new();
    for ((table, file, file_format), sample) in places.iter().zip(&made) {
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        samples::write(&sample.batch, *file_format, file, delimiter).map_err(|e| anyhow!("{e}"))?;
        written.push(Written {
            object: table.clone(),
            rows: sample.batch.num_rows(),
            path: file.display().to_string(),
            format: file_format.name(),
            not_considered: sample.not_considered.clone(),
        });
    }
    let mut out = output::stdout();
    if format == Format::Table {
        for w in &written {
            writeln!(out, "wrote {} rows of {} to {} ({})", w.rows, w.object, w.path, w.format)?;
            if !w.not_considered.is_empty() {
                eprintln!(
                    "note: the rows of {} were not made for {} (SQL rules are not read): run `meshplane test` to see",
                    w.object,
                    w.not_considered.join(", ")
                );
            }
        }
    } else {
        output::structured(&mut out, format, &written)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The file each object's rows go to on a `local` server: the server's file, or a new
/// `sample.<format>` in its directory.
fn server_files(
    server: &meshplane_spec::model::server::Server,
    plan: &meshplane_quality::plan::Plan,
) -> Result<Vec<(String, PathBuf, FileFormat)>> {
    if server.kind != "local" {
        bail!(
            "server `{}` is of type {}: `meshplane init data` writes local files; give --out to write them elsewhere",
            server.server,
            server.kind
        );
    }
    let located = target::file_locations(server, plan, Path::new("")).map_err(|e| anyhow!("{e}"))?;
    located
        .into_iter()
        .map(|(table, location)| {
            let path = location.path;
            if path.contains(['*', '?', '[']) {
                bail!("server `{}`'s path {path} is a glob: name the file with --out", server.server);
            }
            let named = Path::new(&path);
            let is_file = !path.ends_with('/')
                && !named.is_dir()
                && named.extension().and_then(|e| FileFormat::parse(&e.to_string_lossy())) == Some(location.format);
            let file =
                if is_file { named.to_path_buf() } else { named.join(format!("sample.{}", location.format.name())) };
            Ok((table, file, location.format))
        })
        .collect()
}
