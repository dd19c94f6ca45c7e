//! The retention report as one self-contained HTML file: no scripts, no
//! fonts, no style sheets or images from elsewhere; the chart is inline
//! SVG. It opens offline, and prints on A4 landscape with each table's
//! header repeated on every page.

use std::fmt::Write as _;

use super::review::{local_time, months_total, overdue_rules, uncovered};
use super::thousands;
use crate::coverage::Disposition;
use crate::review::{Review, RuleReview};

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Ten colours that stay apart on screen and on paper (Tableau 10); past
/// ten rules, lines are dashed as well.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#79706e",
];
const DASHES: [&str; 3] = ["", "6 3", "2 3"];

const STYLE: &str = r#"
:root { color-scheme: light; --ink: #1d2430; --muted: #5b6573; --line: #d9dee5; --bad: #b3261e; --good: #1e6b3a; --warn: #8a5a00; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink); margin: 0 auto; max-width: 1280px; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 6px; padding-bottom: 4px; border-bottom: 2px solid var(--ink); break-after: avoid; }
h3 { font-size: 15px; margin: 18px 0 6px; break-after: avoid; }
p { margin: 4px 0 10px; }
.lede, .note { color: var(--muted); }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 12px 0; font-size: 13px; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace; font-size: 12px; }
.summary { display: grid; grid-template-columns: repeat(5, 1fr); gap: 12px; margin: 20px 0 8px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; }
.card .n { font-size: 24px; font-weight: 600; display: block; }
.card .what { color: var(--muted); font-size: 12px; }
.card.bad { border-color: var(--bad); } .card.bad .n { color: var(--bad); }
.card.good .n { color: var(--good); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 13px; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px; border-bottom: 1px solid var(--line); }
th { font-size: 12px; color: var(--muted); font-weight: 600; border-bottom: 1px solid var(--ink); }
thead { display: table-header-group; }
tr { break-inside: avoid; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.small { font-size: 12px; color: var(--muted); }
.tag { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 12px; border: 1px solid var(--line); }
.bad { color: var(--bad); } .good { color: var(--good); } .warn { color: var(--warn); }
.tag.bad { border-color: var(--bad); } .tag.good { border-color: var(--good); } .tag.warn { border-color: var(--warn); }
ul.plain { list-style: none; padding: 0; margin: 0; }
ul.legend { list-style: none; padding: 0; margin: 4px 0 10px; display: flex; flex-wrap: wrap; gap: 4px 18px; font-size: 12px; }
ul.legend svg { vertical-align: middle; margin-right: 4px; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #5b6573; }
footer { margin-top: 36px; font-size: 12px; color: var(--muted); border-top: 1px solid var(--line); padding-top: 8px; }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { padding: 0; max-width: none; font-size: 11px; }
  table { font-size: 10.5px; }
  h2 { margin-top: 18px; }
  section.page { break-before: page; }
  svg.chart { height: 70mm; }
  tfoot { display: table-row-group; }
  #forecast td:first-child, #status td:first-child { white-space: nowrap; }
  .summary { grid-template-columns: repeat(5, 1fr); }
}
"#;

/// The report as one HTML document.
pub fn render(review: &Review) -> String {
    let mut out = String::new();
    let tz = &review.timezone;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"glemsel {}\">\n\
         <title>Retention report as of {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&review.version),
        esc(&local_time(review.as_of, tz)),
    );
    header(&mut out, review);
    schedule(&mut out, review);
    forecast(&mut out, review);
    status(&mut out, review);
    coverage(&mut out, review);
    erasure(&mut out, review);
    let _ = write!(
        out,
        "<footer>Written by glemsel {} on {}. The counts are those a run at the as-of moment would change, \
         from the same statements a run uses. To check this report's chain heads later: \
         <code>glemsel audit verify</code>, then compare each store's row at the seq above with the hash above. \
         The report holds counts and rule text, never row values.</footer>\n</body>\n</html>\n",
        esc(&review.version),
        esc(&local_time(review.generated_at, tz)),
    );
    out
}

fn header(out: &mut String, review: &Review) {
    let tz = &review.timezone;
    let _ = write!(
        out,
        "<header>\n<h1>Retention report</h1>\n<p class=\"lede\">What the retention rules keep and for how long, \
         what becomes due over the next twelve months, what the runs have done, and whether the audit trail is intact. \
         Prepared for the data-protection officer and the auditor.</p>\n<dl class=\"meta\">\
         <dt>As of</dt><dd>{}</dd><dt>Generated</dt><dd>{}</dd><dt>Time zone</dt><dd>{}</dd>\
         <dt>Configuration</dt><dd><code>{}</code></dd><dt>Policy fingerprint</dt><dd><code>{}</code> \
         <span class=\"small\">(SHA-256 of every rule's id and fingerprint)</span></dd>\
         <dt>glemsel</dt><dd>{}</dd></dl>\n</header>\n",
        esc(&local_time(review.as_of, tz)),
        esc(&local_time(review.generated_at, tz)),
        esc(tz),
        esc(&review.config_file),
        esc(&review.policy_fingerprint),
        esc(&review.version),
    );
    let due: u64 = review
        .rules
        .iter()
        .filter_map(|r| r.counts.as_ref())
        .map(|c| c.due)
        .sum();
    let overdue = overdue_rules(review);
    let uncovered = uncovered(review);
    let chains: Vec<_> = review
        .stores
        .iter()
        .filter_map(|s| s.chain.as_ref())
        .collect();
    let broken = chains.iter().filter(|c| c.broken.is_some()).count();
    let card = |out: &mut String, class: &str, n: String, what: &str| {
        let _ = write!(
            out,
            "<div class=\"card {class}\"><span class=\"n\">{}</span><span class=\"what\">{}</span></div>",
            esc(&n),
            esc(what)
        );
    };
    out.push_str("<section class=\"summary\" id=\"summary\">");
    card(out, "", review.rules.len().to_string(), "rules in force");
    card(out, "", thousands(due), "rows due now");
    card(
        out,
        if overdue > 0 { "bad" } else { "good" },
        overdue.to_string(),
        "rules with overdue rows",
    );
    card(
        out,
        if uncovered > 0 { "bad" } else { "good" },
        uncovered.to_string(),
        "personal-looking columns no rule covers",
    );
    let (class, text) = if broken > 0 {
        ("bad", format!("{broken} broken"))
    } else {
        ("good", format!("{} intact", chains.len()))
    };
    card(out, class, text, "audit chains");
    out.push_str("</section>\n");
}

fn schedule(out: &mut String, review: &Review) {
    out.push_str(
        "<section id=\"schedule-section\">\n<h2>1. Retention schedule</h2>\n<p class=\"note\">The record of processing \
         as the rules enforce it: per category of personal data its legal basis, where it is kept, how long, \
         and what happens then. Each line is one rule; its source line and fingerprint identify the text that was in force.</p>\n\
         <table id=\"schedule\"><thead><tr><th>Category and legal basis</th><th>Where</th><th>Kept for</th>\
         <th>Then</th><th>Rule</th></tr></thead>\n<tbody>\n",
    );
    for rule in &review.rules {
        let _ = write!(
            out,
            "<tr data-rule=\"{}\"><td><strong>{}</strong>{}<br><span class=\"small\">Legal basis: {}</span></td>",
            esc(&rule.id),
            esc(&rule.category),
            rule.category_description
                .as_ref()
                .map(|d| format!("<br>{}", esc(d)))
                .unwrap_or_default(),
            esc(rule.legal_basis.as_deref().unwrap_or("not stated")),
        );
        let _ = write!(
            out,
            "<td>store {} ({})<br>table <code>{}</code>{}</td>",
            esc(&rule.store),
            esc(&rule.engine),
            esc(&rule.table),
            if rule.cascades.is_empty() {
                String::new()
            } else {
                format!(
                    "<br><span class=\"small\">with its rows in {}</span>",
                    rule.cascades
                        .iter()
                        .map(|c| format!("<code>{}</code>", esc(c)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        let _ = write!(out, "<td>{}", esc(&rule.period));
        if let Some(condition) = &rule.condition {
            let _ = write!(
                out,
                "<br><span class=\"small\">rows where <code>{}</code></span>",
                esc(condition)
            );
        }
        for hold in &rule.holds {
            let _ = write!(
                out,
                "<br><span class=\"small\">kept while held: {}</span>",
                esc(hold)
            );
        }
        if let Some(description) = &rule.description {
            let _ = write!(out, "<br><span class=\"small\">{}</span>", esc(description));
        }
        out.push_str("</td><td>");
        action_cell(out, rule);
        let _ = writeln!(
            out,
            "</td><td><code>{}</code><br><span class=\"small mono\">{}</span><br>\
             <span class=\"small mono\" title=\"SHA-256 of the rule\">{}…</span>{}</td></tr>",
            esc(&rule.id),
            esc(&rule.source),
            esc(&rule.fingerprint[..rule.fingerprint.len().min(16)]),
            rule.schedule
                .as_ref()
                .map(|s| format!(
                    "<br><span class=\"small\">runs <code>{}</code></span>",
                    esc(s)
                ))
                .unwrap_or_default(),
        );
    }
    out.push_str("</tbody></table>\n</section>\n");
}

fn action_cell(out: &mut String, rule: &RuleReview) {
    if rule.columns.is_empty() {
        out.push_str("<strong>deleted</strong>");
        return;
    }
    out.push_str("<strong>pseudonymised</strong><ul class=\"plain small\">");
    for treatment in &rule.columns {
        let _ = write!(
            out,
            "<li><code>{}</code> → {}</li>",
            esc(&treatment.column),
            esc(&treatment.action)
        );
    }
    out.push_str("</ul>");
}

/// A round step for about five grid lines up to `max`.
fn nice_step(max: u64) -> u64 {
    let rough = (max as f64 / 5.0).max(1.0);
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude);
    step.max(1.0) as u64
}

/// The chart: one line per rule, one point per month.
/// A series' colour and its stroke-dasharray attribute: colours repeat with a
/// different dash once the palette runs out, so no two series look alike.
fn series_style(index: usize) -> (&'static str, String) {
    let colour = PALETTE[index % PALETTE.len()];
    let dash = DASHES[(index / PALETTE.len()) % DASHES.len()];
    let dash = if dash.is_empty() {
        String::new()
    } else {
        format!(" stroke-dasharray=\"{dash}\"")
    };
    (colour, dash)
}

fn chart(out: &mut String, review: &Review) {
    let (width, height) = (960.0, 320.0);
    let (left, right, top, bottom) = (56.0, 16.0, 14.0, 34.0);
    let series: Vec<(&RuleReview, &Vec<u64>)> = review
        .rules
        .iter()
        .filter_map(|r| r.forecast.as_ref().map(|f| (r, f)))
        .collect();
    let max = series
        .iter()
        .flat_map(|(_, f)| f.iter().copied())
        .max()
        .unwrap_or(0);
    let step = nice_step(max);
    let top_value = (max.div_ceil(step).max(1) * step) as f64;
    let months = review.months.len().max(1);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let x = |i: usize| left + plot_w * (i as f64 + 0.5) / months as f64;
    let y = |v: u64| top + plot_h * (1.0 - v as f64 / top_value);
    let _ = writeln!(
        out,
        "<svg id=\"forecast-chart\" class=\"chart\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
         aria-label=\"Rows becoming due per rule per month\">"
    );
    let mut value = 0;
    while value as f64 <= top_value {
        let _ = writeln!(
            out,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e3e7ec\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            width - right,
            left - 6.0,
            y(value) + 4.0,
            thousands(value),
            y = y(value),
        );
        value += step;
    }
    for (i, month) in review.months.iter().enumerate() {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x(i),
            height - bottom + 18.0,
            esc(&month.label)
        );
    }
    for (index, (rule, counts)) in series.iter().enumerate() {
        let (colour, dash) = series_style(index);
        let points: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(
            out,
            "<g class=\"series\" data-rule=\"{}\"><polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{} points=\"{}\"/>",
            esc(&rule.id),
            dash,
            points.join(" ")
        );
        for (i, v) in counts.iter().enumerate() {
            let _ = write!(
                out,
                "<circle class=\"point\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{}, {}: {} rows</title></circle>",
                x(i),
                y(*v),
                esc(&rule.id),
                esc(review.months.get(i).map_or("", |m| m.label.as_str())),
                thousands(*v)
            );
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    legend(out, &series);
}

/// The chart's legend: one line sample per rule, styled as its series.
fn legend(out: &mut String, series: &[(&RuleReview, &Vec<u64>)]) {
    out.push_str("<ul class=\"legend\">");
    for (index, (rule, _)) in series.iter().enumerate() {
        let (colour, dash) = series_style(index);
        let _ = write!(
            out,
            "<li><svg width=\"22\" height=\"10\" aria-hidden=\"true\"><line x1=\"1\" x2=\"21\" y1=\"5\" y2=\"5\" stroke=\"{colour}\" stroke-width=\"3\"{}/></svg>{}</li>",
            dash,
            esc(&rule.id)
        );
    }
    out.push_str("</ul>\n");
}

fn forecast(out: &mut String, review: &Review) {
    out.push_str(
        "<section id=\"forecast-section\" class=\"page\">\n<h2>2. Forecast</h2>\n<p class=\"note\">Rows that become due \
         in each of the next twelve months if nothing else changes: rows already due are not counted here (see Status), \
         rows under a hold or already pseudonymised are left out, and rows added later are not foreseen. \
         The first month runs from the as-of moment to its end.</p>\n",
    );
    chart(out, review);
    out.push_str("<table id=\"forecast\"><thead><tr><th>Rule</th>");
    for month in &review.months {
        let _ = write!(out, "<th class=\"num\">{}</th>", esc(&month.label));
    }
    out.push_str("<th class=\"num\">Total</th></tr></thead>\n<tbody>\n");
    for rule in &review.rules {
        let _ = write!(
            out,
            "<tr data-rule=\"{}\"><td><code>{}</code></td>",
            esc(&rule.id),
            esc(&rule.id)
        );
        match &rule.forecast {
            Some(counts) => {
                for n in counts {
                    let _ = write!(out, "<td class=\"num\">{}</td>", thousands(*n));
                }
                let _ = write!(
                    out,
                    "<td class=\"num\"><strong>{}</strong></td>",
                    thousands(counts.iter().sum())
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<td colspan=\"{}\" class=\"small\">not available</td>",
                    review.months.len() + 1
                );
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody><tfoot><tr><th>All rules</th>");
    let totals = months_total(review);
    for n in &totals {
        let _ = write!(out, "<th class=\"num\">{}</th>", thousands(*n));
    }
    let _ = write!(
        out,
        "<th class=\"num\">{}</th></tr></tfoot></table>\n</section>\n",
        thousands(totals.iter().sum())
    );
}

fn status(out: &mut String, review: &Review) {
    let tz = &review.timezone;
    out.push_str(
        "<section id=\"status-section\" class=\"page\">\n<h2>3. Status</h2>\n<p class=\"note\">Each rule's last run as its \
         store's audit trail records it, and what is due at the as-of moment. A rule is overdue when rows that were \
         already due at its last scheduled run (a day ago, for a rule without a schedule) are still there.</p>\n\
         <table id=\"status\"><thead><tr><th>Rule</th><th>Last run</th><th class=\"num\">Rows changed</th>\
         <th class=\"num\">Held then</th><th class=\"num\">Due now</th><th class=\"num\">Held now</th>\
         <th class=\"num\">No usable date</th><th>Overdue</th></tr></thead>\n<tbody>\n",
    );
    for rule in &review.rules {
        let _ = write!(
            out,
            "<tr data-rule=\"{}\"><td><code>{}</code></td>",
            esc(&rule.id),
            esc(&rule.id)
        );
        match &rule.last_run {
            Some(run) => {
                let class = if run.status == "completed" {
                    "good"
                } else {
                    "warn"
                };
                let _ = write!(
                    out,
                    "<td>{} <span class=\"tag {class}\">{}</span><br><span class=\"small mono\">run {}…{}</span></td>\
                     <td class=\"num\">{}</td><td class=\"num\">{}</td>",
                    esc(&local_time(run.at, tz)),
                    esc(&run.status),
                    esc(&run.run_id[..run.run_id.len().min(12)]),
                    run.plan
                        .as_ref()
                        .map(|p| format!(", plan {}…", esc(&p[..p.len().min(12)])))
                        .unwrap_or_default(),
                    thousands(run.rows_changed.max(0) as u64),
                    run.rows_held
                        .map(thousands)
                        .unwrap_or_else(|| "–".to_string()),
                );
            }
            None => out.push_str(
                "<td class=\"small\">no run in the audit trail</td><td class=\"num\">–</td><td class=\"num\">–</td>",
            ),
        }
        match &rule.counts {
            Some(c) => {
                let _ = write!(
                    out,
                    "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
                    thousands(c.due),
                    thousands(c.held),
                    thousands(c.undated)
                );
            }
            None => out.push_str(
                "<td class=\"num\">–</td><td class=\"num\">–</td><td class=\"num\">–</td>",
            ),
        }
        match (&rule.overdue, &rule.problem) {
            (_, Some(problem)) => {
                let _ = write!(out, "<td class=\"bad\">{}</td>", esc(problem));
            }
            (Some(overdue), None) => {
                let _ = write!(
                    out,
                    "<td class=\"bad\"><strong>{} rows</strong> due since before {}</td>",
                    thousands(overdue.rows),
                    esc(&local_time(overdue.since, tz))
                );
            }
            (None, None) => out.push_str("<td class=\"good\">no</td>"),
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
    chains(out, review);
    out.push_str("</section>\n");
}

/// Each store's audit chain: intact or where it breaks, and its head.
fn chains(out: &mut String, review: &Review) {
    out.push_str("<h3>Audit trail</h3>\n<table id=\"chains\"><thead><tr><th>Store</th>\
         <th>Verdict</th><th class=\"num\">Rows</th><th class=\"num\">Checkpoints matched</th><th>Chain head</th></tr></thead><tbody>\n");
    for store in &review.stores {
        let _ = write!(
            out,
            "<tr><td>{} <span class=\"small\">({})</span></td>",
            esc(&store.name),
            esc(&store.engine)
        );
        match (&store.chain, &store.problem) {
            (Some(chain), _) => {
                let verdict = match &chain.broken {
                    Some(broken) => format!("<span class=\"bad\"><strong>BROKEN</strong>: {}</span>", esc(broken)),
                    None => "<span class=\"good\">intact</span>".to_string(),
                };
                let _ = writeln!(
                    out,
                    "<td>{verdict}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"mono small\">{}</td></tr>",
                    thousands(chain.rows),
                    chain.checkpoints,
                    match (chain.head_seq, &chain.head_hash) {
                        (Some(seq), Some(hash)) => format!("seq {seq}, {}", esc(hash)),
                        _ => "empty".to_string(),
                    }
                );
            }
            (None, Some(problem)) => {
                let _ = writeln!(out, "<td colspan=\"4\" class=\"bad\">{}</td></tr>", esc(problem));
            }
            (None, None) => out.push_str("<td colspan=\"4\" class=\"small\">no audit trail yet: no run has written to this store</td></tr>\n"),
        }
    }
    out.push_str("</tbody></table>\n");
}

/// Erasure requests by id: status and each table's batch. Never the
/// person: the identifier's name only.
fn erasure(out: &mut String, review: &Review) {
    if review.erasure.is_empty() && review.erasure_problem.is_none() {
        return;
    }
    let tz = &review.timezone;
    out.push_str(
        "<section id=\"erasure-section\" class=\"page\">\n<h2>5. Erasure requests</h2>\n<p class=\"note\">Each request by \
         its id, where it stands, and what its runs changed, from the audit trail.</p>\n\
         <table id=\"erasure\"><thead><tr><th>Request</th><th>Subject</th><th>Received</th><th>Deadline</th>\
         <th>Status</th><th>Changes</th></tr></thead>\n<tbody>\n",
    );
    if let Some(problem) = &review.erasure_problem {
        let _ = writeln!(
            out,
            "<tr><td colspan=\"6\" class=\"bad\">{}</td></tr>",
            esc(problem)
        );
    }
    for request in &review.erasure {
        let changes: Vec<String> = request
            .batches
            .iter()
            .map(|b| {
                format!(
                    "{}.{}: {} {} rows on {} (seq {})",
                    esc(&b.store),
                    esc(&b.table),
                    esc(&b.action),
                    thousands(b.rows),
                    esc(&local_time(b.at, tz)),
                    b.seq
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "<tr data-request=\"{}\"><td><code>{}</code></td><td>{} by {}</td><td>{}</td><td>{}</td><td class=\"{}\">{}{}</td><td class=\"small\">{}</td></tr>",
            esc(&request.id),
            esc(&request.id),
            esc(&request.subject),
            esc(&request.identifier),
            request.received,
            request.deadline,
            if request.overdue { "bad" } else { "good" },
            esc(&request.status),
            if request.overdue { " (overdue)" } else { "" },
            changes.join("<br>")
        );
    }
    out.push_str("</tbody></table>\n</section>\n");
}

fn coverage(out: &mut String, review: &Review) {
    out.push_str(
        "<section id=\"coverage-section\" class=\"page\">\n<h2>4. Coverage</h2>\n<p class=\"note\">Columns whose name or type \
         suggests personal data (e-mail, phone, name, address, IP address, identity numbers, dates of birth and more: the \
         list is in glemsel's README), and what becomes of each. A column is covered when a rule deletes its rows or \
         pseudonymises it; reviewed columns are on the configuration's allow-list with a reason. The hints are a heuristic: \
         a person decides.</p>\n",
    );
    for store in &review.stores {
        let _ = writeln!(
            out,
            "<h3>Store {} <span class=\"small\">({})</span></h3>",
            esc(&store.name),
            esc(&store.engine)
        );
        let Some(findings) = &store.coverage else {
            let _ = writeln!(
                out,
                "<p class=\"bad\">Not available: {}</p>",
                esc(store
                    .problem
                    .as_deref()
                    .unwrap_or("the store could not be read"))
            );
            continue;
        };
        if findings.is_empty() {
            out.push_str("<p>No column looks like personal data.</p>\n");
            continue;
        }
        let _ = writeln!(
            out,
            "<table class=\"coverage\" data-store=\"{}\"><thead><tr><th>Table</th><th>Column</th><th>Type</th>\
             <th>Looks like</th><th>What becomes of it</th></tr></thead><tbody>",
            esc(&store.name)
        );
        for finding in findings {
            let what = match &finding.disposition {
                Disposition::Covered { rules } => format!(
                    "<span class=\"good\">covered</span> by {}",
                    rules
                        .iter()
                        .map(|r| format!("<code>{}</code>", esc(r)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Disposition::Allowed { reason, at } => format!(
                    "<span class=\"warn\">reviewed</span>: {} <span class=\"small mono\">({})</span>",
                    esc(reason),
                    esc(at)
                ),
                Disposition::Uncovered { why } => format!(
                    "<span class=\"bad\"><strong>not covered</strong></span>: {}",
                    esc(why)
                ),
            };
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td class=\"small mono\">{}</td><td>{}</td><td>{what}</td></tr>",
                esc(&finding.table),
                esc(&finding.column),
                esc(&finding.data_type),
                esc(finding.looks_like),
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_steps() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(nice_step(0), 1);
        assert_eq!(nice_step(7), 2);
        assert_eq!(nice_step(130), 50);
        assert_eq!(nice_step(1_000), 200);
    }
}
