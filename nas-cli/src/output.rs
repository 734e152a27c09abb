//! Printing results as text or JSON, honouring `--json` and `--quiet`.

use serde_json::Value;
use std::io::Write;

/// How results are printed: results go to stdout (text, or one JSON document with `--json`);
/// notes go to stderr unless `--quiet`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Out {
    /// Machine-readable output: exactly one JSON document on stdout.
    pub json: bool,
    /// Suppress notes on stderr.
    pub quiet: bool,
}

impl Out {
    /// Prints the result: `value` as pretty JSON with `--json`, otherwise `text` (a trailing newline
    /// is added when missing).
    pub fn result(&self, text: &str, value: &Value) -> std::io::Result<()> {
        let stdout = std::io::stdout();
        let mut w = stdout.lock();
        if self.json {
            serde_json::to_writer_pretty(&mut w, value)?;
            writeln!(w)?;
        } else if !text.is_empty() {
            w.write_all(text.as_bytes())?;
            if !text.ends_with('\n') {
                writeln!(w)?;
            }
        }
        w.flush()
    }

    /// A note for people (stderr), silent with `--quiet` or `--json`.
    pub fn note(&self, text: &str) {
        if !self.quiet && !self.json {
            eprintln!("{text}");
        }
    }
}
