//! Command output on stdout. `println!` panics when stdout is closed
//! (`blindpass audit verify … | head`), which would also stop a command
//! half-way through its work (a wallet still to save, say). Output goes
//! through [`write`] instead: the first failed write is remembered, later
//! output is dropped, and the command runs to its end; `main` then reports
//! any failure other than a reader that went away.

use std::fmt;
use std::io::{self, Write as _};
use std::sync::OnceLock;

static FAILED: OnceLock<io::ErrorKind> = OnceLock::new();

/// Writes to stdout, with a newline if `newline`; after a failure, nothing.
pub fn write(args: fmt::Arguments<'_>, newline: bool) {
    if FAILED.get().is_some() {
        return;
    }
    let mut stdout = io::stdout().lock();
    let written = stdout.write_fmt(args).and_then(|()| {
        if newline {
            stdout.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if let Err(e) = written {
        let _ = FAILED.set(e.kind());
    }
}

/// How the first failed write failed, if one did.
pub fn failure() -> Option<io::ErrorKind> {
    FAILED.get().copied()
}
