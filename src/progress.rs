//! Progress bars for interactive runs: one bar per rule, rows done of rows
//! due, the rate and the time left. Only `glemsel run` with text output on
//! a terminal gets them; the daemon, JSON output and a stderr that is a
//! file or pipe never do (`main` decides, and passes none there).

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::execute::{Progress, Status, StepReport};

/// The bars of one run, drawn on stderr.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Bars {
    pub fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }

    /// Where log lines go while bars are drawn: through
    /// [`MultiProgress::suspend`], so a line never tears a bar.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter(self.multi.clone())
    }

    /// After the last rule: the bars stay on the screen, and what follows
    /// starts on a line of its own.
    pub fn finish(&self) {
        // Finished bars are not drawn again; the cursor is still on the last one.
        if self.bars.lock().is_ok_and(|bars| !bars.is_empty()) {
            eprintln!();
        }
    }

    fn bar(&self, rule: &str) -> Option<ProgressBar> {
        self.bars.lock().ok()?.get(rule).cloned()
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(
                    w,
                    "{} rows/s",
                    crate::report::thousands(state.per_sec() as u64)
                );
            },
        )
        .progress_chars("=> ")
}

impl Progress for Bars {
    fn begin(&self, rule: &str, due: Option<u64>) {
        let bar = match due {
            Some(due) => ProgressBar::new(due).with_style(style(
                "{prefix} [{bar:30}] {human_pos}/{human_len} rows  {rate}  {eta} left  {msg}",
            )),
            None => ProgressBar::new_spinner()
                .with_style(style("{prefix} {spinner} {human_pos} rows  {rate}  {msg}")),
        };
        bar.set_prefix(rule.to_string());
        let bar = self.multi.add(bar);
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(rule.to_string(), bar);
        }
    }

    fn advance(&self, rule: &str, rows: u64) {
        if let Some(bar) = self.bar(rule) {
            bar.inc(rows);
        }
    }

    fn end(&self, rule: &str, report: &StepReport) {
        if let Some(bar) = self.bar(rule) {
            let status = match report.status {
                Status::Completed => "done",
                Status::Stopped => "stopped",
                Status::Partial => "partial",
                Status::Refused => "refused",
                Status::Failed => "failed",
            };
            bar.finish_with_message(status);
        }
    }
}

/// Writes log lines to stderr with the bars lifted out of the way.
#[derive(Clone)]
pub struct LogWriter(MultiProgress);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
