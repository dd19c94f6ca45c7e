//! What a step's run did ([`StepReport`]) and how it ended ([`Status`]):
//! written by `execute`, read by `metrics`, the reports and the daemon,
//! so neither of those needs the other.

use serde::Serialize;

use crate::store::{Counts, NamedCount};

/// What started a run; the audit trail records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// `glemsel run`.
    Command,
    /// The daemon, on the rule's schedule.
    Schedule,
    /// The daemon at start-up, for a run missed while it was down.
    CatchUp,
}

/// How a step's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every due row was changed (or none were due).
    Completed,
    /// Stopped by a signal, or at a limit (`halted` says which), after a
    /// committed batch; the rest is still due.
    Stopped,
    /// Some windows stayed locked by others; their rows are still due.
    Partial,
    /// The run reached max_rows; the batch that would pass it was rolled back.
    Refused,
    /// A database error ended the run; committed batches stand.
    Failed,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a step's run did; also what its run_finish audit row records.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub rule_id: String,
    pub trigger: Trigger,
    pub store: String,
    pub table: String,
    pub action: &'static str,
    pub status: Status,
    /// The dry-run counts taken before the batches; only rules with
    /// `max_rows` or a hold are counted (it costs a scan of the table).
    pub counted: Option<Counts>,
    pub rows_changed: u64,
    /// Partitions dropped whole (their rows are in `rows_changed`; each
    /// has its audit row, naming it).
    #[serde(skip_serializing_if = "is_zero")]
    pub partitions_dropped: u32,
    /// Rows deleted with them, per cascade table.
    pub cascaded: Vec<NamedCount>,
    pub batches: u64,
    /// Windows walked, with or without due rows in them.
    pub windows: u64,
    pub windows_skipped: u64,
    /// The longest batch transaction, from its begin to its commit or
    /// rollback.
    pub longest_batch_ms: u64,
    /// The time spent in batch transactions, begin to commit, of `seconds`.
    pub batch_seconds: f64,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why a stopped run stopped, when a limit stopped it (its window
    /// closed, `--max-duration` passed, the stop file appeared).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
    /// Whether the old row versions were reclaimed after the run
    /// (`vacuum_after`); absent when not asked for or nothing changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vacuumed: Option<bool>,
    /// The approved plan's hash, when the run followed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}
