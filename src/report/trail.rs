//! `audit show` for people (text, a block per run) and for programs (CSV,
//! or a JSON array written element by element as the trail is read).

use std::fmt::Write as _;

use super::review::csv_row;
use super::{local, thousands};
use crate::trail::RuleRun;

/// The CSV header of `audit show --format csv`.
pub const CSV_HEADER: [&str; 26] = [
    "store",
    "run_id",
    "rule_id",
    "table",
    "action",
    "started",
    "finished",
    "status",
    "trigger",
    "rows_deleted",
    "rows_pseudonymised",
    "rows_held",
    "cascaded",
    "batches",
    "as_of",
    "cutoff",
    "rule_fingerprint",
    "rule_now",
    "plan",
    "key_id",
    "host",
    "version",
    "error",
    "first_seq",
    "last_seq",
    "last_row_hash",
];

/// One rule run as a CSV record.
pub fn csv_line(run: &RuleRun) -> String {
    let time = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map(|at| crate::audit::format_time(&at))
            .unwrap_or_default()
    };
    let cascaded: Vec<String> = run
        .cascaded
        .iter()
        .map(|(table, rows)| format!("{table}={rows}"))
        .collect();
    let mut out = String::new();
    csv_row(
        &mut out,
        &[
            run.store.clone(),
            run.run_id.clone(),
            run.rule_id.clone(),
            run.table.clone(),
            run.action.clone(),
            time(run.started),
            time(run.finished),
            run.status.clone(),
            run.trigger.clone().unwrap_or_default(),
            run.rows_deleted.to_string(),
            run.rows_pseudonymised.to_string(),
            run.rows_held.map(|n| n.to_string()).unwrap_or_default(),
            cascaded.join("; "),
            run.batches.map(|n| n.to_string()).unwrap_or_default(),
            crate::audit::format_time(&run.as_of),
            run.cutoff.clone(),
            run.rule_fingerprint.clone(),
            run.rule_now.to_string(),
            run.plan.clone().unwrap_or_default(),
            run.key_id.clone().unwrap_or_default(),
            run.host.clone(),
            run.version.clone(),
            run.error.clone().unwrap_or_default(),
            run.first_seq.to_string(),
            run.last_seq.to_string(),
            run.last_row_hash.clone(),
        ],
    );
    out
}

/// One rule run as text; a run's header comes before its first rule.
pub fn text(run: &RuleRun, new_run: bool, tz: &str) -> String {
    if run.rule_now == "erasure" {
        return erasure_text(run, new_run, tz);
    }
    let mut out = String::new();
    if new_run {
        let _ = writeln!(
            out,
            "run {} in store {} on {} (glemsel {}), as of {}{}",
            run.run_id,
            run.store,
            run.host,
            run.version,
            local(run.as_of, tz),
            run.plan
                .as_ref()
                .map(|p| format!(", approved plan sha256 {p}"))
                .unwrap_or_default()
        );
    }
    let (verb, rows) = if run.action == "delete" {
        ("deleted", run.rows_deleted)
    } else {
        ("pseudonymised", run.rows_pseudonymised)
    };
    let _ = write!(
        out,
        "  rule {}: {verb} {} rows of {}",
        run.rule_id,
        thousands(rows),
        run.table
    );
    for (table, n) in &run.cascaded {
        let _ = write!(out, " (and {} of {table})", thousands(*n));
    }
    if let Some(held) = run.rows_held {
        let _ = write!(out, ", {} held", thousands(held));
    }
    let _ = writeln!(
        out,
        "; {}{}",
        run.status,
        run.finished
            .map(|at| format!(" at {}", local(at, tz)))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "    due when {}; rule sha256 {} ({}); audit seq {}..{}",
        if run.cutoff.is_empty() {
            "(not computed)"
        } else {
            &run.cutoff
        },
        run.rule_fingerprint,
        run.rule_now,
        run.first_seq,
        run.last_seq
    );
    if let Some(error) = &run.error {
        let _ = writeln!(out, "    {error}");
    }
    out
}

/// An erasure row: the request's id, never the person.
fn erasure_text(run: &RuleRun, new_run: bool, tz: &str) -> String {
    let mut out = String::new();
    if new_run {
        let _ = writeln!(
            out,
            "erasure {} in store {} on {} (glemsel {})",
            run.run_id, run.store, run.host, run.version
        );
    }
    let at = run
        .finished
        .map(|at| format!(" at {}", local(at, tz)))
        .unwrap_or_default();
    match run.action.as_str() {
        "erasure request" | "erasure status" => {
            let _ = writeln!(
                out,
                "  {} {}: {}; {}{at}; audit seq {}",
                run.action, run.rule_id, run.status, run.cutoff, run.first_seq
            );
        }
        _ => {
            let (verb, rows) = if run.action == "delete" {
                ("deleted", run.rows_deleted)
            } else {
                (
                    if run.action == "anonymise" {
                        "anonymised"
                    } else {
                        "pseudonymised"
                    },
                    run.rows_pseudonymised,
                )
            };
            let _ = write!(
                out,
                "  erasure request {}: {verb} {} rows of {}",
                run.rule_id,
                thousands(rows),
                run.table
            );
            for (table, n) in &run.cascaded {
                let _ = write!(out, " (and {} of {table})", thousands(*n));
            }
            let _ = writeln!(out, "{at}; audit seq {}", run.first_seq);
        }
    }
    out
}
