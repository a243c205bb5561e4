//! Standard output for the commands: once its reader has gone (`meshplane test x.yaml | head`),
//! what is left to print is dropped, so the command still ends with its own exit status (a
//! failing test stays a failure under `set -o pipefail`).

use std::io::{ErrorKind, StdoutLock, Write};

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
