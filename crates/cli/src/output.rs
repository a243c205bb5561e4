//! What the commands print and where: the one output format every command takes (`-o`,
//! before or after the subcommand), errors as JSON on standard error when that format is
//! JSON, and standard output that, once its reader has gone (`meshplane test x.yaml | head`),
//! drops what is left to print, so the command still ends with its own exit status (a failing
//! test stays a failure under `set -o pipefail`).

use std::io::{ErrorKind, StdoutLock, Write};

use serde_json::Value as Any;

/// How a command prints its result (`-o`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people (`human` is the old name, still understood).
    #[default]
    #[value(alias = "human")]
    Table,
    /// For machines: JSON.
    Json,
    /// For machines and people: YAML.
    Yaml,
    /// JUnit XML, for CI systems (`meshplane test` only).
    Junit,
}

/// `value` in a machine format (`json`, pretty-printed, or `yaml`).
pub(crate) fn structured(out: &mut dyn Write, format: Format, value: &impl serde::Serialize) -> anyhow::Result<()> {
    match format {
        Format::Yaml => write!(out, "{}", crate::yaml::to_yaml(&serde_json::to_value(value)?))?,
        _ => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
    }
    Ok(())
}

/// An error of the command on standard error: `error: ...` for people, the API's `{code,
/// message, details}` for machines (`-o json` and `-o yaml`).
pub(crate) fn error(format: Format, code: &str, message: &str, details: &Any) {
    let mut err = std::io::stderr().lock();
    let body = serde_json::json!({ "code": code, "message": message, "details": details });
    let _ = match format {
        Format::Json => writeln!(err, "{body}"),
        Format::Yaml => write!(err, "{}", crate::yaml::to_yaml(&body)),
        Format::Table | Format::Junit => writeln!(err, "error: {message}"),
    };
}

/// Standard output that stops writing, without an error, when the pipe closes.
pub(crate) struct Stdout {
    inner: StdoutLock<'static>,
    closed: bool,
}

pub(crate) fn stdout() -> Stdout {
    Stdout { inner: std::io::stdout().lock(), closed: false }
}

impl Stdout {
    fn unless_closed(
        &mut self,
        write: impl FnOnce(&mut StdoutLock<'static>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match write(&mut self.inner) {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.unless_closed(|out| out.write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.unless_closed(|out| out.flush())
    }
}
