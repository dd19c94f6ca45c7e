//! The retention report in Markdown (for a wiki or a ticket) and CSV (one
//! row per rule, for a spreadsheet), and what every format shares.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{local, thousands};
use crate::coverage::Disposition;
use crate::review::{Review, RuleReview};

/// A moment in the report's zone, to the minute.
pub fn local_time(at: DateTime<Utc>, tz: &str) -> String {
    match tz.parse::<chrono_tz::Tz>() {
        Ok(zone) => at.with_timezone(&zone).format("%Y-%m-%d %H:%M").to_string(),
        Err(_) => local(at, tz),
    }
}

/// Rows becoming due per month, over every rule.
pub fn months_total(review: &Review) -> Vec<u64> {
    let mut totals = vec![0; review.months.len()];
    for counts in review.rules.iter().filter_map(|r| r.forecast.as_ref()) {
        for (total, n) in totals.iter_mut().zip(counts) {
            *total += n;
        }
    }
    totals
}

/// How many rules have overdue rows.
pub fn overdue_rules(review: &Review) -> usize {
    review.rules.iter().filter(|r| r.overdue.is_some()).count()
}

/// How many personal-looking columns no rule covers.
pub fn uncovered(review: &Review) -> usize {
    review
        .stores
        .iter()
        .filter_map(|s| s.coverage.as_ref())
        .flatten()
        .filter(|f| f.is_uncovered())
        .count()
}

/// `|` and line breaks would end a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Eight levels of a bar, for a forecast at a glance.
fn sparkline(counts: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    counts
        .iter()
        .map(|&n| {
            if n == 0 {
                ' '
            } else {
                BARS[((n * 7) / max).min(7) as usize]
            }
        })
        .collect()
}

/// The report in Markdown.
pub fn markdown(review: &Review) -> String {
    let tz = &review.timezone;
    let mut out = String::new();
    let _ = writeln!(out, "# Retention report\n");
    let _ = writeln!(
        out,
        "As of {} ({tz}), generated {} by glemsel {} from `{}`.  \nPolicy fingerprint `{}`.\n",
        local_time(review.as_of, tz),
        local_time(review.generated_at, tz),
        review.version,
        review.config_file,
        review.policy_fingerprint
    );
    schedule_section(&mut out, review);
    forecast_section(&mut out, review);
    status_section(&mut out, review);
    audit_section(&mut out, review);
    coverage_section(&mut out, review);
    erasure_section(&mut out, review);
    out
}

/// Section 1: what is kept, for how long, and what then happens to it.
fn schedule_section(out: &mut String, review: &Review) {
    let _ = writeln!(out, "## 1. Retention schedule\n");
    let _ = writeln!(
        out,
        "| Category | Legal basis | Where | Kept for | Then | Rule | Source |\n|---|---|---|---|---|---|---|"
    );
    for rule in &review.rules {
        let then = if rule.columns.is_empty() {
            "deleted".to_string()
        } else {
            format!(
                "pseudonymised: {}",
                rule.columns
                    .iter()
                    .map(|t| format!("{} → {}", t.column, t.action))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut kept = rule.period.clone();
        if let Some(condition) = &rule.condition {
            let _ = write!(kept, "; rows where {condition}");
        }
        for hold in &rule.holds {
            let _ = write!(kept, "; kept while held: {hold}");
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} ({}), `{}` | {} | {} | `{}` | {} |",
            cell(&match &rule.category_description {
                Some(d) => format!("{}: {d}", rule.category),
                None => rule.category.clone(),
            }),
            cell(rule.legal_basis.as_deref().unwrap_or("not stated")),
            cell(&rule.store),
            rule.engine,
            cell(&rule.table),
            cell(&kept),
            cell(&then),
            rule.id,
            cell(&rule.source)
        );
    }
}

/// Section 2: rows becoming due per month, per rule.
fn forecast_section(out: &mut String, review: &Review) {
    let _ = writeln!(out, "\n## 2. Forecast: rows becoming due per month\n");
    let _ = write!(out, "| Rule |");
    for month in &review.months {
        let _ = write!(out, " {} |", month.label);
    }
    let _ = writeln!(out, " Total | |");
    let _ = writeln!(out, "|---|{}---:|---|", "---:|".repeat(review.months.len()));
    for rule in &review.rules {
        let _ = write!(out, "| `{}` |", rule.id);
        match &rule.forecast {
            Some(counts) => {
                for n in counts {
                    let _ = write!(out, " {} |", thousands(*n));
                }
                let _ = writeln!(
                    out,
                    " {} | `{}` |",
                    thousands(counts.iter().sum()),
                    sparkline(counts)
                );
            }
            None => {
                let _ = writeln!(out, "{} – | |", " – |".repeat(review.months.len()));
            }
        }
    }
}

/// Section 3: the last run and what is due now, per rule.
fn status_section(out: &mut String, review: &Review) {
    let tz = &review.timezone;
    let _ = writeln!(out, "\n## 3. Status\n");
    let _ = writeln!(
        out,
        "| Rule | Last run | Rows changed | Held then | Due now | Held now | No usable date | Overdue |\n|---|---|---:|---:|---:|---:|---:|---|"
    );
    for rule in &review.rules {
        let last = match &rule.last_run {
            Some(run) => format!("{} ({})", local_time(run.at, tz), run.status),
            None => "no run yet".into(),
        };
        let (changed, held_then) =
            rule.last_run
                .as_ref()
                .map_or(("–".into(), "–".into()), |r| {
                    (
                        thousands(r.rows_changed.max(0) as u64),
                        r.rows_held.map_or("–".into(), thousands),
                    )
                });
        let counts = rule
            .counts
            .as_ref()
            .map_or(["–".to_string(), "–".into(), "–".into()], |c| {
                [thousands(c.due), thousands(c.held), thousands(c.undated)]
            });
        let overdue = match (&rule.problem, &rule.overdue) {
            (Some(problem), _) => format!("**{}**", cell(problem)),
            (None, Some(o)) => format!(
                "**{} rows** due since before {}",
                thousands(o.rows),
                local_time(o.since, tz)
            ),
            (None, None) => "no".into(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {last} | {changed} | {held_then} | {} | {} | {} | {overdue} |",
            rule.id, counts[0], counts[1], counts[2]
        );
    }
}

/// The state of each store's audit chain.
fn audit_section(out: &mut String, review: &Review) {
    let _ = writeln!(out, "\n### Audit trail\n");
    for store in &review.stores {
        let verdict = match (&store.chain, &store.problem) {
            (Some(c), _) => match &c.broken {
                Some(b) => format!("**BROKEN**: {b}"),
                None => format!(
                    "intact, {} rows, {} checkpoints matched, head seq {} `{}`",
                    thousands(c.rows),
                    c.checkpoints,
                    c.head_seq.unwrap_or(0),
                    c.head_hash.as_deref().unwrap_or("")
                ),
            },
            (None, Some(p)) => format!("**not available**: {p}"),
            (None, None) => "no audit trail yet".into(),
        };
        let _ = writeln!(out, "- store {} ({}): {verdict}", store.name, store.engine);
    }
}

/// Section 4: personal-looking columns and what becomes of each.
fn coverage_section(out: &mut String, review: &Review) {
    let _ = writeln!(out, "\n## 4. Coverage\n");
    let _ = writeln!(
        out,
        "| Store | Table | Column | Type | Looks like | What becomes of it |\n|---|---|---|---|---|---|"
    );
    for finding in review
        .stores
        .iter()
        .filter_map(|s| s.coverage.as_ref())
        .flatten()
    {
        let what = match &finding.disposition {
            Disposition::Covered { rules } => format!("covered by {}", rules.join(", ")),
            Disposition::Allowed { reason, at } => format!("reviewed: {reason} ({at})"),
            Disposition::Uncovered { why } => format!("**not covered**: {why}"),
        };
        let _ = writeln!(
            out,
            "| {} | `{}` | `{}` | {} | {} | {} |",
            finding.store,
            cell(&finding.table),
            cell(&finding.column),
            cell(&finding.data_type),
            finding.looks_like,
            cell(&what)
        );
    }
}

/// Section 5: erasure requests, by id, with their batches.
fn erasure_section(out: &mut String, review: &Review) {
    if review.erasure.is_empty() && review.erasure_problem.is_none() {
        return;
    }
    let tz = &review.timezone;
    let _ = writeln!(out, "\n## 5. Erasure requests\n");
    if let Some(problem) = &review.erasure_problem {
        let _ = writeln!(out, "**not available**: {}", cell(problem));
    }
    for request in &review.erasure {
        let _ = writeln!(
            out,
            "- {} ({} by {}): received {}, deadline {}, {}{}",
            request.id,
            request.subject,
            request.identifier,
            request.received,
            request.deadline,
            request.status,
            if request.overdue { ", **overdue**" } else { "" }
        );
        for batch in &request.batches {
            let _ = writeln!(
                out,
                "  - {}.{}: {} {} rows on {} (audit seq {})",
                batch.store,
                cell(&batch.table),
                batch.action,
                thousands(batch.rows),
                local_time(batch.at, tz),
                batch.seq
            );
        }
    }
}

/// One CSV field, quoted when it must be.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Writes one CSV record.
pub fn csv_row(out: &mut String, fields: &[String]) {
    let line: Vec<String> = fields.iter().map(|f| field(f)).collect();
    out.push_str(&line.join(","));
    out.push_str("\r\n");
}

/// The CSV's fixed columns, one per field of [`csv_fields`]; the
/// forecast's months follow.
const CSV_COLUMNS: [&str; 23] = [
    "rule_id",
    "category",
    "category_description",
    "legal_basis",
    "store",
    "engine",
    "table",
    "action",
    "columns",
    "period",
    "condition",
    "holds",
    "source",
    "fingerprint",
    "last_run_at",
    "last_run_status",
    "last_run_rows",
    "last_run_held",
    "due_now",
    "held_now",
    "undated_now",
    "overdue_rows",
    "problem",
];

/// The report as CSV: one row per rule, the schedule, the status and the
/// forecast (one column per month).
pub fn csv(review: &Review) -> String {
    let mut out = String::new();
    let mut header: Vec<String> = CSV_COLUMNS.iter().map(|s| s.to_string()).collect();
    header.extend(review.months.iter().map(|m| format!("due_{}", m.label)));
    csv_row(&mut out, &header);
    for rule in &review.rules {
        let mut row = Vec::from(csv_fields(rule));
        match &rule.forecast {
            Some(counts) => row.extend(counts.iter().map(|n| n.to_string())),
            None => row.extend(review.months.iter().map(|_| String::new())),
        }
        csv_row(&mut out, &row);
    }
    out
}

/// One rule's fixed fields, in the order of [`CSV_COLUMNS`].
fn csv_fields(rule: &RuleReview) -> [String; CSV_COLUMNS.len()] {
    let opt = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
    let columns: Vec<String> = rule
        .columns
        .iter()
        .map(|t| format!("{}={}", t.column, t.action))
        .collect();
    let last_run = rule.last_run.as_ref();
    [
        rule.id.clone(),
        rule.category.clone(),
        rule.category_description.clone().unwrap_or_default(),
        rule.legal_basis.clone().unwrap_or_default(),
        rule.store.clone(),
        rule.engine.clone(),
        rule.table.clone(),
        rule.action.clone(),
        columns.join("; "),
        rule.period.clone(),
        rule.condition.clone().unwrap_or_default(),
        rule.holds.join("; "),
        rule.source.clone(),
        rule.fingerprint.clone(),
        last_run
            .map(|r| crate::audit::format_time(&r.at))
            .unwrap_or_default(),
        last_run.map(|r| r.status.clone()).unwrap_or_default(),
        last_run
            .map(|r| r.rows_changed.to_string())
            .unwrap_or_default(),
        opt(last_run.and_then(|r| r.rows_held)),
        opt(rule.counts.as_ref().map(|c| c.due)),
        opt(rule.counts.as_ref().map(|c| c.held)),
        opt(rule.counts.as_ref().map(|c| c.undated)),
        opt(rule.overdue.as_ref().map(|o| o.rows)),
        rule.problem.clone().unwrap_or_default(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_and_sparklines() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a, b"), "\"a, b\"");
        assert_eq!(field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(sparkline(&[0, 1, 7]), " ▂█");
        assert_eq!(sparkline(&[1, 100]), "▁█");
    }
}
