//! Rendering for people (text) and programs (JSON): the dry-run report a
//! data-protection officer reads before anything is deleted, run summaries
//! and audit verdicts; the retention report (`html`, `review`) and the
//! audit trail for auditors. Reports hold counts and conditions, never row
//! values.

pub mod html;
pub mod review;
pub mod trail;

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Timelike as _, Utc};
use chrono_tz::Tz;

use crate::commands::{PlanReport, PlannedStep, StepOutcome, StoreGrants, Verdict};
use crate::execute::Status;
use crate::period::{PeriodKind, describe_duration};
use crate::plan::{Hold, Moment, RelatedStep, Step, StepAction};

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn local(at: DateTime<Utc>, tz: &str) -> String {
    match tz.parse::<Tz>() {
        Ok(zone) => format!(
            "{} {tz}",
            at.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S")
        ),
        Err(_) => at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }
}

/// A due bound as people say it: `< 2023-07-01`, `<= 2025-11-30 21:56:06`.
///
/// The bound is the first event time that is not due. A period counted
/// from "now" (to the second) puts it a microsecond past a whole second,
/// and `< 2025-11-30 21:56:06.000001` makes a reader stop; the same
/// condition reads `<= 2025-11-30 21:56:06`. Other bounds keep `<`, with a
/// fraction only when they have one. An instant (timestamptz) is shown on
/// the report's clock, with its zone's abbreviation. JSON and the audit
/// trail keep the exact bound.
pub fn bound_text(bound: &Moment, timezone: &str) -> String {
    const SECONDS: &str = "%Y-%m-%d %H:%M:%S";
    let micro = TimeDelta::microseconds(1);
    // (operator, the time to show, whether it has a fraction to show)
    let pick = |nanos: u32, nanos_before: u32| match (nanos, nanos_before) {
        (0, _) => ("<", false, false),
        (_, 0) => ("<=", true, false),
        _ => ("<", false, true),
    };
    match bound {
        Moment::Date(date) => format!("< {date}"),
        Moment::Timestamp(at) => {
            let (op, before, fraction) = pick(at.nanosecond(), (*at - micro).nanosecond());
            let at = if before { *at - micro } else { *at };
            let shown = at.format(if fraction {
                "%Y-%m-%d %H:%M:%S%.6f"
            } else {
                SECONDS
            });
            format!("{op} {shown}")
        }
        Moment::Instant(at) => {
            let (op, before, fraction) = pick(at.nanosecond(), (*at - micro).nanosecond());
            let at = if before { *at - micro } else { *at };
            let zone: Tz = timezone.parse().unwrap_or(Tz::UTC);
            let format = if fraction {
                "%Y-%m-%d %H:%M:%S%.6f %Z"
            } else {
                "%Y-%m-%d %H:%M:%S %Z"
            };
            format!("{op} {}", at.with_timezone(&zone).format(format))
        }
    }
}

fn action_text(step: &Step) -> String {
    match &step.action {
        StepAction::Delete => "delete rows".into(),
        StepAction::Pseudonymise { columns } | StepAction::Anonymise { columns } => {
            let parts: Vec<String> = columns
                .iter()
                .map(|c| format!("{} → {}", c.column.name, c.action))
                .collect();
            format!("{} {}", step.action.as_str(), parts.join(", "))
        }
    }
}

/// Minimum or deadline, and for a deadline how far ahead it acts.
fn kind_text(step: &Step) -> String {
    let timing = &step.timing;
    match timing.kind {
        PeriodKind::Minimum => "minimum: nothing goes before the end of its period".into(),
        PeriodKind::Deadline => format!(
            "deadline: rows go {} before the end of their period ({})",
            describe_duration(TimeDelta::seconds(timing.lead_seconds)),
            timing.lead_reason.as_deref().unwrap_or("lead")
        ),
    }
}

/// The latest moment the rows due now are gone.
fn gone_by_text(step: &Step, tz: &str) -> String {
    let timing = &step.timing;
    match timing.gone_by {
        Some(at) => format!(
            "{}: the next scheduled run, + max_duration {}",
            local(at, tz),
            describe_duration(TimeDelta::seconds(timing.max_duration_seconds))
        ),
        None => "the next time glemsel runs the rule (it has no schedule)".into(),
    }
}

/// `orders.customer_id = id`, for the `on` of a related table.
fn related_text(related: &RelatedStep) -> String {
    related
        .on
        .iter()
        .map(|(theirs, ours)| format!("{}.{theirs} = {ours}", related.table.name))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The dry-run report as text.
pub fn plan_text(report: &PlanReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "glemsel plan: as of {}",
        local(report.as_of, &report.timezone)
    );
    let _ = writeln!(
        out,
        "Nothing has been changed. A run with the same --as-of changes exactly the rows counted as due."
    );
    let mut total = 0;
    for planned in &report.steps {
        total += planned.counts.due;
        step_text(&mut out, planned, &report.timezone);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "total: {} rows due in {} rule{}",
        thousands(total),
        report.steps.len(),
        if report.steps.len() == 1 { "" } else { "s" }
    );
    for warning in &report.warnings {
        let _ = writeln!(out, "{warning}");
    }
    out
}

/// One rule of the plan: what it is, what it is related to, and its counts.
fn step_text(out: &mut String, planned: &PlannedStep, timezone: &str) {
    let step = &planned.step;
    let _ = writeln!(out);
    let _ = writeln!(out, "rule {}", step.rule_id);
    if let Some(description) = &step.description {
        let _ = writeln!(out, "  {description}");
    }
    let _ = writeln!(
        out,
        "  store     {} ({}), table {}",
        step.store, step.engine, step.table
    );
    let _ = writeln!(out, "  category  {}", step.category);
    if let Some(basis) = &planned.legal_basis {
        let _ = writeln!(out, "  basis     {basis}");
    }
    let _ = writeln!(out, "  action    {}", action_text(step));
    let _ = writeln!(
        out,
        "  retain    {} after {}",
        step.retention,
        step.due.event.describe(&step.joins)
    );
    let _ = writeln!(out, "  kind      {}", kind_text(step));
    let _ = writeln!(
        out,
        "  due when  {} {}",
        step.due.event.describe(&step.joins),
        bound_text(&step.due.bound, timezone)
    );
    let _ = writeln!(out, "  gone by   {}", gone_by_text(step, timezone));
    if let Some(pace) = pace_text(step) {
        let _ = writeln!(out, "  runs      {pace}");
    }
    if let Some(filter) = &step.filter {
        let _ = writeln!(out, "  where     {filter}");
    }
    related_rows_text(out, planned);
    partitions_text(out, planned);
    counts_text(out, planned);
}

/// A partitioned table: each partition a run drops whole, with its rows
/// and range; or why it is purged row by row.
fn partitions_text(out: &mut String, planned: &PlannedStep) {
    let Some(survey) = &planned.partitions else {
        return;
    };
    for held in &survey.held {
        let _ = writeln!(
            out,
            "  partition held: {} was taken out by an interrupted run and is in {}; {}",
            held.partition,
            held.held,
            if survey.row_by_row.is_some() {
                "it is not dropped while the table is purged row by row"
            } else if held.audited {
                "its rows are audited, a run drops it"
            } else {
                "a run counts, audits and drops it first"
            }
        );
    }
    if let Some(reason) = &survey.row_by_row {
        let _ = writeln!(out, "  partitions purged row by row: {reason}");
        return;
    }
    for verdict in survey.to_drop() {
        let p = &verdict.partition;
        let _ = writeln!(
            out,
            "  partition drops partition {} ({} rows, range {})",
            p.name,
            thousands(verdict.rows.unwrap_or_default()),
            p.range_text()
        );
    }
    let kept: Vec<String> = survey
        .partitions
        .iter()
        .filter_map(|v| {
            let why = v.kept_because.as_ref()?;
            Some(format!("{} ({why})", v.partition.name))
        })
        .collect();
    if !kept.is_empty() {
        let _ = writeln!(out, "  partition row by row: {}", kept.join("; "));
    }
}

/// The joins, holds and cascades of one rule, with what each keeps or takes now.
fn related_rows_text(out: &mut String, planned: &PlannedStep) {
    let step = &planned.step;
    let c = &planned.counts;
    for join in &step.joins {
        let _ = write!(
            out,
            "  join      {} ({})",
            join.name,
            related_text(&join.related)
        );
        match &join.open {
            Some(open) => {
                let _ = writeln!(
                    out,
                    "; a related row where {open} keeps a row from being due"
                );
            }
            None => out.push('\n'),
        }
    }
    for (hold, held) in step.holds.iter().zip(&c.held_by) {
        let kept = thousands(held.rows);
        let _ = match hold {
            Hold::Column(column) => writeln!(
                out,
                "  hold      rows where {} is true or NULL are kept: {kept} now",
                column.name
            ),
            Hold::Table {
                name,
                related,
                filter,
            } => writeln!(
                out,
                "  hold      rows listed in {name} ({}){}: {kept} now",
                related_text(related),
                filter
                    .as_ref()
                    .map(|f| format!(" where {f}"))
                    .unwrap_or_default()
            ),
        };
    }
    for (cascade, cascaded) in step.cascades.iter().zip(&c.cascaded) {
        let _ = writeln!(
            out,
            "  cascade   also deletes {} rows of {} ({}), first",
            thousands(cascaded.rows),
            cascade.related.table,
            related_text(&cascade.related)
        );
    }
}

/// The rule's counts and its max_rows guard.
fn counts_text(out: &mut String, planned: &PlannedStep) {
    let step = &planned.step;
    let c = &planned.counts;
    let mut rows = format!(
        "  rows      {} due, {} held, {} with no usable date",
        thousands(c.due),
        thousands(c.held),
        thousands(c.undated)
    );
    if step.action.columns().is_some() {
        let done = if step.action.as_str() == "anonymise" {
            "anonymised"
        } else {
            "pseudonymised"
        };
        let _ = write!(rows, ", {} already {done}", thousands(c.done));
    }
    let _ = writeln!(out, "{rows}, {} in the table", thousands(c.rows));
    if let Some(max) = step.max_rows {
        let verdict = planned.refusal.as_deref().unwrap_or("within the limit");
        let _ = writeln!(out, "  guard     max_rows {}: {verdict}", thousands(max));
    }
}

/// A run's outcome as text.
pub fn run_text(outcomes: &[StepOutcome]) -> String {
    let mut out = String::new();
    for outcome in outcomes {
        match outcome {
            StepOutcome::Done(r) => {
                let halted;
                let status = match r.status {
                    Status::Completed => "completed",
                    Status::Stopped if r.halted.is_some() => {
                        halted = format!(
                            "stopped because {}; the rest is due next run",
                            r.halted.as_deref().unwrap_or_default()
                        );
                        &halted
                    }
                    Status::Stopped => "stopped early; the rest is due next run",
                    Status::Partial => "partial; locked windows or partitions are due next run",
                    Status::Refused => "stopped at max_rows; nothing past it was changed",
                    Status::Failed => "failed",
                };
                let _ = writeln!(
                    out,
                    "rule {}: {} {} rows in table {} of store {} ({} batch{}, {:.1} s): {status}",
                    r.rule_id,
                    match r.action {
                        "delete" => "deleted",
                        "anonymise" => "anonymised",
                        _ => "pseudonymised",
                    },
                    thousands(r.rows_changed),
                    r.table,
                    r.store,
                    r.batches,
                    if r.batches == 1 { "" } else { "es" },
                    r.seconds
                );
                if r.partitions_dropped > 0 {
                    let plural = if r.partitions_dropped == 1 { "" } else { "s" };
                    let _ = writeln!(
                        out,
                        "  {} partition{plural} dropped whole (each with its audit row)",
                        r.partitions_dropped
                    );
                }
                if let Some(held) = r.counted.as_ref().map(|c| c.held).filter(|&h| h > 0) {
                    let rows = if held == 1 { "row" } else { "rows" };
                    let _ = writeln!(out, "  {} due {rows} kept under a hold", thousands(held));
                }
            }
            StepOutcome::NotRun { rule } => {
                let _ = writeln!(out, "rule {rule}: not run; a stop was requested");
            }
            StepOutcome::Failed { rule, error } => {
                let _ = writeln!(out, "rule {rule}: {error}");
            }
        }
    }
    out
}

/// When and how gently a step runs: its window, pause and load limit.
fn pace_text(step: &Step) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(window) = &step.window {
        parts.push(format!("only within {window}"));
    }
    if step.pause_ms > 0 {
        parts.push(format!("{} ms apart", step.pause_ms));
    }
    if let Some(max_load) = step.max_load {
        parts.push(format!(
            "waiting while store {} runs more than {max_load} statements",
            step.store
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// A run's outcome for programs.
pub fn run_json(outcomes: &[StepOutcome]) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|outcome| match outcome {
            StepOutcome::Done(report) => serde_json::to_value(report).expect("reports serialise"),
            StepOutcome::NotRun { rule } => {
                serde_json::json!({ "rule_id": rule, "status": "not_run" })
            }
            StepOutcome::Failed { rule, error } => serde_json::json!({
                "rule_id": rule,
                "status": "not_run",
                "error": error.to_string(),
            }),
        })
        .collect();
    serde_json::json!({ "exit": crate::commands::run_exit(outcomes).code(), "rules": rules })
}

/// `audit verify`'s verdicts as text.
pub fn verify_text(verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    for v in verdicts {
        match &v.broken {
            None => {
                let _ = writeln!(
                    out,
                    "store {}: audit chain intact, {} rows, {} checkpoints matched{}{}",
                    v.store,
                    thousands(v.rows),
                    v.checkpoints,
                    match v.segments {
                        0 => String::new(),
                        n => format!(", {n} segments"),
                    },
                    match v.unauthenticated {
                        0 => String::new(),
                        n => format!(
                            "; {} keyed rows not authenticated: give the audit key (audit_key_file) to check them",
                            thousands(n)
                        ),
                    }
                );
            }
            Some(broken) => {
                let _ = writeln!(out, "store {}: audit chain BROKEN: {broken}", v.store);
            }
        }
    }
    out
}

/// `check --coverage`: each personal-looking column that no rule covers,
/// then a tally. Covered and reviewed columns are counted, not listed.
pub fn coverage_text(findings: &[crate::coverage::Finding]) -> String {
    use crate::coverage::Disposition;
    let mut out = String::new();
    let (mut covered, mut allowed, mut uncovered) = (0, 0, 0);
    for finding in findings {
        match &finding.disposition {
            Disposition::Covered { .. } => covered += 1,
            Disposition::Allowed { .. } => allowed += 1,
            Disposition::Uncovered { why } => {
                uncovered += 1;
                let _ = writeln!(
                    out,
                    "store {}: {}.{} ({}) looks like {} and is not covered: {why}",
                    finding.store,
                    finding.table,
                    finding.column,
                    finding.data_type,
                    finding.looks_like
                );
            }
        }
    }
    if uncovered > 0 {
        let _ = writeln!(
            out,
            "add each column to a rule (columns = {{ ... }}, or a delete rule for its table), or, once reviewed, to [[coverage.allow]] in the config with a reason"
        );
    }
    let _ = writeln!(
        out,
        "coverage: {} column{} look{} like personal data: {covered} covered by rules, {allowed} reviewed (allow-list), {uncovered} not covered",
        findings.len(),
        if findings.len() == 1 { "" } else { "s" },
        if findings.len() == 1 { "s" } else { "" },
    );
    out
}

/// `glemsel grants` as a script a DBA can read and run, store by store.
pub fn grants_text(grants: &[StoreGrants], role: &str) -> String {
    let mut out = String::new();
    for (i, store) in grants.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "-- store {} ({}): what role {role} needs, and nothing more",
            store.store, store.engine
        );
        match &store.statements {
            Some(lines) => {
                for line in lines {
                    let _ = writeln!(out, "{line}");
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "-- an SQLite file has no roles: its file permissions decide who may read and change it"
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn bounds_read_as_people_say_them() {
        let zone = "Europe/Copenhagen";
        let timestamp = |s: &str| Moment::Timestamp(s.parse().unwrap());
        let instant = |s: &str| Moment::Instant(s.parse().unwrap());
        assert_eq!(
            bound_text(&Moment::Date("2023-07-01".parse().unwrap()), zone),
            "< 2023-07-01"
        );
        // "Now" to the second, as plan and run take it: the last due second.
        assert_eq!(
            bound_text(&timestamp("2025-11-30T21:56:06.000001"), zone),
            "<= 2025-11-30 21:56:06"
        );
        assert_eq!(
            bound_text(&timestamp("2020-07-01T00:00:00"), zone),
            "< 2020-07-01 00:00:00"
        );
        // A fraction of its own (an --as-of with one) is shown exactly.
        assert_eq!(
            bound_text(&timestamp("2025-11-30T21:56:06.250001"), zone),
            "< 2025-11-30 21:56:06.250001"
        );
        // Instants on the report's clock, winter and summer.
        assert_eq!(
            bound_text(&instant("2025-11-30T20:56:06.000001Z"), zone),
            "<= 2025-11-30 21:56:06 CET"
        );
        assert_eq!(
            bound_text(&instant("2017-06-30T22:00:00Z"), zone),
            "< 2017-07-01 00:00:00 CEST"
        );
        // The autumn hour that happens twice is told apart by its zone.
        assert_eq!(
            bound_text(&instant("2026-10-25T00:30:00Z"), zone),
            "< 2026-10-25 02:30:00 CEST"
        );
        assert_eq!(
            bound_text(&instant("2026-10-25T01:30:00Z"), zone),
            "< 2026-10-25 02:30:00 CET"
        );
    }
}
