//! Draws the library's progress with indicatif on stderr, only on a terminal and when not quiet.
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use qcyn::progress::Reporter;

/// Progress bars on stderr.
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    visible: bool,
    quiet: bool,
}

impl Bars {
    pub fn new(quiet: bool) -> Self {
        Bars {
            bar: Mutex::new(None),
            visible: !quiet && std::io::stderr().is_terminal(),
            quiet,
        }
    }
}

impl Reporter for Bars {
    fn start(&self, phase: &str, total: Option<u64>) {
        if !self.visible {
            return;
        }
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {rate} eta {eta}")
                    .expect("valid template")
                    .with_key(
                        "rate",
                        |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = write!(w, "{:.1}/s", s.per_sec());
                        },
                    )
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        bar.set_message(phase.to_string());
        *self.bar.lock().expect("lock") = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = self.bar.lock().expect("lock").as_ref() {
            bar.inc(n);
        }
    }

    fn status(&self, text: &str) {
        if let Some(bar) = self.bar.lock().expect("lock").as_ref() {
            bar.set_message(text.to_string());
        }
    }

    fn message(&self, text: &str) {
        if self.quiet {
            return;
        }
        match self.bar.lock().expect("lock").as_ref() {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().expect("lock").take() {
            bar.finish_and_clear();
        }
    }
}
