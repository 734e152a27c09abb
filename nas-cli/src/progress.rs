//! Progress display on stderr: indicatif bars on a terminal, plain lines otherwise, nothing with
//! `--quiet` or `--json`.

use crate::output::Out;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Progress bars (stderr is a terminal, no `--quiet`/`--json`).
    Bars,
    /// One line per finished unit of work (stderr is a file or pipe).
    Lines,
    /// Nothing (`--quiet` or `--json`).
    Silent,
}

impl Mode {
    /// The mode for this invocation.
    pub fn for_output(out: &Out) -> Mode {
        if out.quiet || out.json {
            Mode::Silent
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }
}

/// A group of progress bars (possibly hidden) plus a line printer that does not garble them.
pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
}

impl Progress {
    /// Bars drawn on stderr in [`Mode::Bars`], hidden otherwise.
    pub fn new(mode: Mode) -> Progress {
        let target = if mode == Mode::Bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            mode,
            multi: MultiProgress::with_draw_target(target),
        }
    }

    /// A new bar of `len` steps labelled `prefix`, below the existing ones.
    pub fn bar(&self, prefix: &str, len: u64) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{prefix:>8} [{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let pb = self.multi.add(ProgressBar::new(len));
        pb.set_style(style);
        pb.set_prefix(prefix.to_string());
        pb
    }

    /// A spinner labelled `prefix` showing the elapsed time, for work without a known length.
    pub fn spinner(&self, prefix: &str) -> ProgressBar {
        let style = ProgressStyle::with_template("{prefix:>8} {spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let pb = self.multi.add(ProgressBar::new_spinner());
        pb.set_style(style);
        pb.set_prefix(prefix.to_string());
        if self.mode == Mode::Bars {
            pb.enable_steady_tick(std::time::Duration::from_millis(200));
        }
        pb
    }

    /// Prints a line on stderr: above the bars in [`Mode::Bars`], plainly in [`Mode::Lines`],
    /// not at all in [`Mode::Silent`].
    pub fn line(&self, text: &str) {
        match self.mode {
            Mode::Bars => {
                if self.multi.println(text).is_err() {
                    eprintln!("{text}");
                }
            }
            Mode::Lines => eprintln!("{text}"),
            Mode::Silent => {}
        }
    }
}
