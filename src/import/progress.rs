//! Progress of an import: a bar (indicatif) when stderr is a terminal, otherwise a plain
//! line every tenth of the repositories (and at the end), for logs and CI.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    manifests: u64,
    next_line: u64,
    quiet: bool,
}

impl Progress {
    /// `total` repositories to go through; `enabled: false` prints nothing.
    pub fn new(total: u64, enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} repositories {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Progress {
            bar,
            total,
            done: 0,
            manifests: 0,
            next_line: 0,
            quiet: !enabled,
        }
    }

    /// One more repository done, with its manifests.
    pub fn repository_done(&mut self, manifests: u64) {
        self.done += 1;
        self.manifests += manifests;
        match &self.bar {
            Some(bar) => {
                bar.set_message(format!("{} manifests", self.manifests));
                bar.inc(1);
            }
            None if !self.quiet && (self.done >= self.next_line || self.done == self.total) => {
                eprintln!(
                    "wharf import: {}/{} repositories, {} manifests",
                    self.done, self.total, self.manifests
                );
                self.next_line = self.done + (self.total / 10).max(1);
            }
            None => {}
        }
    }

    /// Removes the bar (the summary follows).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
