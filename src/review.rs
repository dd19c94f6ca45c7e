//! The retention review: everything `glemsel report` shows the
//! data-protection officer and the auditor, gathered from the policy, the
//! live stores and their audit trails. Rendering is `report`'s.
//!
//! The schedule comes from the rule files alone, so it is there even when a
//! store is down; what needs a store (counts, forecast, last runs, the
//! chain, coverage) is gathered per store and per rule, and a failure is
//! written into the review instead of ending it.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::audit::{self, AuditCursor, AuditEvent, AuditFilter};
use crate::commands::{self, CommandError, Stores};
use crate::coverage::{self, Claim, Finding};
use crate::plan::{self, Moment, Step};
use crate::rules::{Action, Combine, Policy, Rule, StoreConfig, TableRef};
use crate::schedule::Schedule;
use crate::store::{Counts, Store, StoreError};

/// How many months the forecast looks ahead.
pub const FORECAST_MONTHS: usize = 12;

/// How long due rows may wait when a rule has no schedule: a day.
const UNSCHEDULED_WAIT: TimeDelta = TimeDelta::hours(24);

/// One month of the forecast.
#[derive(Debug, Clone, Serialize)]
pub struct Month {
    /// `2026-11`.
    pub label: String,
    /// From this moment (the report's as-of for the first month) ...
    pub from: DateTime<Utc>,
    /// ... up to, not including, this one: the first of the next month, 00:00 local.
    pub until: DateTime<Utc>,
}

/// What a rule does to one column.
#[derive(Debug, Clone, Serialize)]
pub struct Treatment {
    pub column: String,
    pub action: String,
}

/// A rule's last run, from its store's audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub run_id: String,
    pub at: DateTime<Utc>,
    pub status: String,
    pub rows_changed: i64,
    /// Due rows kept by a hold, when the run counted them.
    pub rows_held: Option<u64>,
    /// The approved plan's hash, when the run followed one.
    pub plan: Option<String>,
    pub seq: i64,
}

/// Due rows that a scheduled run should already have taken.
#[derive(Debug, Clone, Serialize)]
pub struct Overdue {
    pub rows: u64,
    /// Rows already due at this moment (the last scheduled run, or a day
    /// ago for a rule without a schedule) are still there.
    pub since: DateTime<Utc>,
}

/// One rule: its line in the retention schedule and its status.
#[derive(Debug, Clone, Serialize)]
pub struct RuleReview {
    pub id: String,
    pub description: Option<String>,
    pub category: String,
    pub category_description: Option<String>,
    pub legal_basis: Option<String>,
    pub store: String,
    pub engine: String,
    pub table: String,
    pub action: String,
    /// Pseudonymised columns; empty for a delete (the whole row goes).
    pub columns: Vec<Treatment>,
    /// Tables whose rows are deleted with the rule's rows.
    pub cascades: Vec<String>,
    /// The period and its clock in words.
    pub period: String,
    pub condition: Option<String>,
    pub holds: Vec<String>,
    pub schedule: Option<String>,
    /// `file:line` of the rule.
    pub source: String,
    pub fingerprint: String,
    /// Counts at the as-of; `None` when the store or table could not be read.
    pub counts: Option<Counts>,
    /// For a partitioned table: which partitions a run drops whole now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<crate::partition::Survey>,
    /// Rows becoming due in each month of [`Review::months`]: due at the
    /// month's last microsecond and not at the one before it (the as-of,
    /// for the first month). A run at that moment changes exactly the
    /// rows due now plus those of the months up to it.
    pub forecast: Option<Vec<u64>>,
    pub overdue: Option<Overdue>,
    pub last_run: Option<LastRun>,
    /// Why something above is missing.
    pub problem: Option<String>,
}

/// One store's audit chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReview {
    pub rows: u64,
    pub checkpoints: usize,
    /// The newest row when the review was made: an auditor can later check
    /// that the chain still holds this hash at this seq.
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
    pub broken: Option<String>,
}

/// One store: its chain and its coverage.
#[derive(Debug, Clone, Serialize)]
pub struct StoreReview {
    pub name: String,
    pub engine: String,
    pub chain: Option<ChainReview>,
    pub coverage: Option<Vec<Finding>>,
    pub problem: Option<String>,
}

/// One table's erasure for a request, from its audit row.
#[derive(Debug, Clone, Serialize)]
pub struct ErasureBatch {
    pub store: String,
    pub table: String,
    pub action: String,
    pub rows: u64,
    pub at: DateTime<Utc>,
    pub seq: i64,
}

/// An erasure request: where it stands and what its runs changed. The
/// identifier's name only, never its value.
#[derive(Debug, Clone, Serialize)]
pub struct ErasureReview {
    pub id: String,
    pub subject: String,
    pub identifier: String,
    pub received: chrono::NaiveDate,
    pub deadline: chrono::NaiveDate,
    pub status: String,
    pub overdue: bool,
    pub batches: Vec<ErasureBatch>,
}

/// Everything the report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub as_of: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    pub timezone: String,
    pub version: String,
    pub config_file: String,
    /// SHA-256 over every rule's id and fingerprint: which policy this is.
    pub policy_fingerprint: String,
    pub months: Vec<Month>,
    pub rules: Vec<RuleReview>,
    pub stores: Vec<StoreReview>,
    /// Erasure requests, when the rules declare subjects.
    pub erasure: Vec<ErasureReview>,
    /// Why the erasure requests could not be read.
    pub erasure_problem: Option<String>,
}

impl Review {
    /// Whether anything could not be gathered.
    pub fn has_problems(&self) -> bool {
        self.rules.iter().any(|r| r.problem.is_some())
            || self.stores.iter().any(|s| s.problem.is_some())
            || self.erasure_problem.is_some()
    }
}

/// The policy's fingerprint: its rules' ids and fingerprints, in id order.
pub fn policy_fingerprint(policy: &Policy) -> String {
    let mut rules: Vec<(&str, &str)> = policy
        .rules
        .iter()
        .map(|r| (r.id.as_str(), r.fingerprint.as_str()))
        .collect();
    rules.sort_unstable();
    let mut hasher = Sha256::new();
    for (id, fingerprint) in rules {
        hasher.update(format!("{id}\t{fingerprint}\n"));
    }
    hex::encode(hasher.finalize())
}

/// The months of the forecast: the rest of the as-of's month, then the
/// following eleven, split at local midnight on the first.
pub fn months(as_of: DateTime<Utc>, zone: Tz) -> Vec<Month> {
    let local = as_of.with_timezone(&zone).date_naive();
    let first = NaiveDate::from_ymd_opt(local.year(), local.month(), 1).expect("a first");
    let mut from = as_of;
    (1..=FORECAST_MONTHS as u32)
        .map(|k| {
            let start = first + Months::new(k - 1);
            let next = first + Months::new(k);
            let until = plan::local_to_instant(next.and_time(chrono::NaiveTime::MIN), zone);
            let month = Month {
                label: start.format("%Y-%m").to_string(),
                from,
                until,
            };
            from = until;
            month
        })
        .collect()
}

/// The period in words: "36 months from the end of the financial year
/// (06-30) of contract_ended".
pub fn period_text(rule: &Rule) -> String {
    let names: Vec<String> = rule.event.sources.iter().map(|s| s.to_string()).collect();
    let event = match names.as_slice() {
        [one] => one.clone(),
        many => format!(
            "the {} of {}",
            match rule.event.combine {
                Combine::Latest => "latest",
                Combine::Earliest => "earliest",
            },
            many.join(", ")
        ),
    };
    let joiner = if rule.retention.round_up.is_empty() {
        "after"
    } else {
        "of"
    };
    format!("{} {joiner} {event}", rule.retention)
}

/// The last scheduled run at or before `at`, looking back up to a year.
fn last_fire(schedule: &Schedule, at: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
    for days in [1, 8, 32, 367] {
        let mut probe = schedule.next_after(at - TimeDelta::days(days), zone)?;
        if probe > at {
            continue;
        }
        while let Some(next) = schedule.next_after(probe, zone) {
            if next > at {
                break;
            }
            probe = next;
        }
        return Some(probe);
    }
    None
}

/// The rule's line of the schedule, before anything is read from a store.
fn schedule_line(policy: &Policy, rule: &Rule) -> RuleReview {
    let category = policy.categories.get(&rule.category);
    let store = &policy.stores[&rule.store];
    let (columns, cascades) = match &rule.action {
        Action::Delete => (
            Vec::new(),
            rule.cascades
                .iter()
                .map(|c| c.related.table.to_string())
                .collect(),
        ),
        Action::Pseudonymise { columns } | Action::Anonymise { columns } => (
            columns
                .iter()
                .map(|(column, action)| Treatment {
                    column: column.clone(),
                    action: action.as_str().to_string(),
                })
                .collect(),
            Vec::new(),
        ),
    };
    let mut holds: Vec<String> = rule
        .hold
        .iter()
        .map(|h| format!("rows where {h} is true or NULL"))
        .collect();
    holds.extend(rule.hold_tables.iter().map(|h| {
        format!(
            "rows listed in {}{}",
            h.related.table,
            h.filter
                .as_ref()
                .map(|f| format!(" where {f}"))
                .unwrap_or_default()
        )
    }));
    RuleReview {
        id: rule.id.clone(),
        description: rule.description.clone(),
        category: rule.category.clone(),
        category_description: category.and_then(|c| c.description.clone()),
        legal_basis: category.and_then(|c| c.legal_basis.clone()),
        store: rule.store.clone(),
        engine: store.engine.to_string(),
        table: rule.table.to_string(),
        action: rule.action.as_str().to_string(),
        columns,
        cascades,
        period: period_text(rule),
        condition: rule.filter.clone(),
        holds,
        schedule: rule
            .schedule
            .as_ref()
            .or(policy.settings.schedule.as_ref())
            .map(|s| s.to_string()),
        source: format!("{}:{}", rule.at.rule.file.display(), rule.at.rule.line),
        fingerprint: rule.fingerprint.clone(),
        counts: None,
        partitions: None,
        forecast: None,
        overdue: None,
        last_run: None,
        problem: None,
    }
}

/// Counts, forecast and overdue rows of a rule whose step was built.
async fn measure(
    store: &mut dyn Store,
    policy: &Policy,
    rule: &Rule,
    step: &Step,
    months: &[Month],
    line: &mut RuleReview,
) -> Result<(), StoreError> {
    let zone = policy.stores[&rule.store].time_zone;
    let tz = policy.settings.timezone;
    let kind = step.due.event.kind;
    let waited_from = match rule.schedule.as_ref().or(policy.settings.schedule.as_ref()) {
        Some(schedule) => last_fire(schedule, step.as_of, tz),
        None => Some(step.as_of - UNSCHEDULED_WAIT),
    };
    // Bounds, ascending: overdue, now, then the end of each month.
    let mut bounds: Vec<Moment> = Vec::new();
    if let Some(at) = waited_from {
        bounds.push(plan::due_bound(&rule.retention, kind, zone, at));
    }
    bounds.push(step.due.bound);
    // A month's rows are those due by its last microsecond: a row due at
    // 00:00 on the first of July becomes due in July.
    bounds.extend(months.iter().map(|m| {
        plan::due_bound(
            &rule.retention,
            kind,
            zone,
            m.until - TimeDelta::microseconds(1),
        )
    }));
    let counts = store.count(step).await?;
    let cumulative = store.forecast(step, &bounds).await?;
    let (overdue, now, ahead) = match waited_from {
        Some(_) => (cumulative.first().copied(), cumulative[1], &cumulative[2..]),
        None => (None, cumulative[0], &cumulative[1..]),
    };
    let mut previous = now;
    line.forecast = Some(
        ahead
            .iter()
            .map(|&total| {
                let month = total.saturating_sub(previous);
                previous = total;
                month
            })
            .collect(),
    );
    if let (Some(rows), Some(since)) = (overdue, waited_from)
        && rows > 0
    {
        line.overdue = Some(Overdue { rows, since });
    }
    line.counts = Some(counts);
    line.partitions = crate::partition::survey(store, step, true).await?;
    Ok(())
}

/// The rule's last finished run: the newest in the trail, whatever the
/// as-of (which pins what is due, not what has been done).
async fn last_run(store: &mut dyn Store, rule: &str) -> Result<Option<LastRun>, StoreError> {
    let filter = AuditFilter {
        rules: vec![rule.to_string()],
        events: vec![AuditEvent::RunFinish],

        ..AuditFilter::default()
    };
    let found = store
        .audit_search(&filter, AuditCursor::Before(i64::MAX), 1)
        .await?;
    Ok(found.into_iter().next().map(|record| {
        let detail: serde_json::Value =
            serde_json::from_str(&record.entry.detail).unwrap_or_default();
        LastRun {
            run_id: record.entry.run_id,
            at: record.entry.at,
            status: detail["status"].as_str().unwrap_or("unknown").to_string(),
            rows_changed: record.entry.rows,
            rows_held: detail["counted"]["held"].as_u64(),
            plan: detail["plan"].as_str().map(str::to_string),
            seq: record.seq,
        }
    }))
}

/// Whether a store has no audit table yet: searching it fails to compile.
fn no_trail(err: &StoreError) -> bool {
    err.kind() == Some(crate::store::QueryErrorKind::Compile)
}

/// A store's audit chain, verified, with its head.
async fn chain(
    store: &mut dyn Store,
    policy: &Policy,
    name: &str,
) -> Result<Option<ChainReview>, StoreError> {
    let checkpoints = match &policy.settings.audit_checkpoints {
        Some(path) => audit::read_checkpoints(path, name).map_err(|err| StoreError::Config {
            store: name.to_string(),
            message: format!("cannot read the checkpoint file {}: {err}", path.display()),
        })?,
        None => Some(Vec::new()),
    };
    let count = checkpoints.as_ref().map_or(0, Vec::len);
    let head = match store.audit_head().await {
        Ok(head) => head,
        Err(err) if no_trail(&err) => return Ok(None),
        Err(err) => return Err(err),
    };
    // Keyed rows are authenticated when the audit key can be read here.
    let audit_key = policy
        .settings
        .audit_key
        .as_ref()
        .and_then(|source| source.path().ok())
        .and_then(|path| crate::pseudonym::HmacKey::from_file(&path).ok());
    let verdict = audit::verify(store, checkpoints, audit_key.as_ref()).await?;
    Ok(Some(ChainReview {
        rows: verdict.as_ref().map_or(0, |verified| verified.rows),
        checkpoints: count,
        head_seq: head.as_ref().map(|h| h.seq),
        head_hash: head.map(|h| h.row_hash),
        broken: verdict.err().map(|b| b.to_string()),
    }))
}

/// Whether a catalog table is the store's own audit trail.
fn is_audit_table(config: &StoreConfig, table: &TableRef) -> bool {
    let audit = &config.audit_table;
    audit.name.eq_ignore_ascii_case(&table.name)
        && match (&audit.schema, &table.schema) {
            (Some(ours), Some(theirs)) => ours.eq_ignore_ascii_case(theirs),
            _ => true,
        }
}

/// What the rules of one store claim, by table as the catalog names it.
async fn claims(
    store: &mut dyn Store,
    policy: &Policy,
    name: &str,
) -> Result<Vec<Claim>, StoreError> {
    let mut claims = Vec::new();
    for rule in policy.rules.iter().filter(|r| r.store == name) {
        let wanted: Vec<(&TableRef, Option<Vec<String>>)> = match &rule.action {
            Action::Delete => std::iter::once(&rule.table)
                .chain(rule.cascades.iter().map(|c| &c.related.table))
                .map(|table| (table, None))
                .collect(),
            Action::Pseudonymise { columns } | Action::Anonymise { columns } => vec![(
                &rule.table,
                Some(columns.iter().map(|(c, _)| c.clone()).collect()),
            )],
        };
        for (table, columns) in wanted {
            // A table that is gone claims nothing; `check` reports it.
            if let Some(schema) = store.describe(table).await? {
                claims.push(Claim {
                    rule: rule.id.clone(),
                    table: schema.table,
                    columns,
                });
            }
        }
    }
    Ok(claims)
}

/// The coverage of one store: every column that looks personal, and what
/// becomes of it.
pub async fn store_coverage(
    store: &mut dyn Store,
    policy: &Policy,
    name: &str,
) -> Result<Vec<Finding>, StoreError> {
    let config = &policy.stores[name];
    let claims = claims(store, policy, name).await?;
    let mut findings = Vec::new();
    for table in store.catalog().await? {
        if is_audit_table(config, &table.table) {
            continue;
        }
        for column in &table.columns {
            let Some(hint) = coverage::hint(&column.name, &column.data_type) else {
                continue;
            };
            findings.push(Finding {
                store: name.to_string(),
                table: table.table.to_string(),
                column: column.name.clone(),
                data_type: column.data_type.clone(),
                looks_like: hint.label,
                disposition: coverage::disposition(
                    name,
                    &table.table,
                    &column.name,
                    &claims,
                    &policy.settings.coverage_allow,
                ),
            });
        }
    }
    Ok(findings)
}

/// `check --coverage`: the coverage of every store. A store that cannot
/// be read is an error here, as in the rest of `check`.
pub async fn coverage(policy: &Policy) -> Result<Vec<Finding>, CommandError> {
    let mut stores = Stores::new(policy);
    let mut findings = Vec::new();
    for name in policy.stores.keys() {
        let store = stores.get(name).await?;
        findings.extend(store_coverage(store, policy, name).await?);
    }
    Ok(findings)
}

/// Gathers the review at `as_of`.
pub async fn gather(policy: &Policy, as_of: DateTime<Utc>) -> Review {
    let months = months(as_of, policy.settings.timezone);
    let mut rules: Vec<RuleReview> = policy
        .rules
        .iter()
        .map(|rule| schedule_line(policy, rule))
        .collect();
    let mut stores = Stores::new(policy);
    let mut store_reviews = Vec::new();
    let mut down: BTreeMap<String, String> = BTreeMap::new();
    for (name, config) in &policy.stores {
        let mut review = StoreReview {
            name: name.clone(),
            engine: config.engine.to_string(),
            chain: None,
            coverage: None,
            problem: None,
        };
        match stores.get(name).await {
            Err(err) => {
                down.insert(name.clone(), err.to_string());
                review.problem = Some(err.to_string());
            }
            Ok(store) => {
                match chain(store, policy, name).await {
                    Ok(chain) => review.chain = chain,
                    Err(err) => review.problem = Some(format!("audit trail: {err}")),
                }
                match store_coverage(store, policy, name).await {
                    Ok(found) => review.coverage = Some(found),
                    Err(err) => {
                        review.problem.get_or_insert(format!("coverage: {err}"));
                    }
                }
            }
        }
        store_reviews.push(review);
    }
    for (rule, line) in policy.rules.iter().zip(rules.iter_mut()) {
        if let Some(problem) = down.get(&rule.store) {
            line.problem = Some(problem.clone());
            continue;
        }
        if let Err(problem) = review_rule(&mut stores, policy, rule, as_of, &months, line).await {
            line.problem = Some(problem);
            stores.forget(&rule.store);
        }
    }
    let (erasure, erasure_problem) = match erasures(policy, &mut stores).await {
        Ok(erasure) => (erasure, None),
        Err(err) => (Vec::new(), Some(err.to_string())),
    };
    Review {
        erasure,
        erasure_problem,
        as_of,
        generated_at: commands::now(),
        timezone: policy.settings.timezone.name().to_string(),
        version: crate::VERSION.to_string(),
        config_file: policy.settings.config_file.display().to_string(),
        policy_fingerprint: policy_fingerprint(policy),
        months,
        rules,
        stores: store_reviews,
    }
}

/// Every erasure request with its status and, from each subject store's
/// trail, its batches.
async fn erasures(
    policy: &Policy,
    stores: &mut Stores<'_>,
) -> Result<Vec<ErasureReview>, crate::erase::EraseError> {
    if policy.subjects.is_empty() {
        return Ok(Vec::new());
    }
    let rows = crate::erase::commands::status(policy).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut names: Vec<&String> = policy.subject_tables().map(|(_, t)| &t.store).collect();
    names.sort();
    names.dedup();
    let mut batches = Vec::new();
    for name in names {
        let store = stores.get(name).await?;
        match crate::trail::erasure_batches(
            store,
            &AuditFilter::default(),
            ids.clone(),
            crate::trail::PAGE_ROWS,
        )
        .await
        {
            Ok(found) => batches.extend(found),
            Err(err) if no_trail(&err) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(rows
        .into_iter()
        .map(|r| ErasureReview {
            batches: batches
                .iter()
                .filter(|b| b.entry.rule_id == r.id)
                .map(|b| ErasureBatch {
                    store: b.entry.store.clone(),
                    table: b.entry.table_name.clone(),
                    action: b.entry.action.clone(),
                    rows: b.entry.rows.max(0) as u64,
                    at: b.entry.at,
                    seq: b.seq,
                })
                .collect(),
            id: r.id,
            subject: r.subject,
            identifier: r.identifier,
            received: r.received,
            deadline: r.deadline,
            status: r.status.as_str().to_string(),
            overdue: r.overdue,
        })
        .collect())
}

/// One rule's status: its step against the live table, counts, forecast,
/// and its last run. The error is what the report says instead.
async fn review_rule(
    stores: &mut Stores<'_>,
    policy: &Policy,
    rule: &Rule,
    as_of: DateTime<Utc>,
    months: &[Month],
    line: &mut RuleReview,
) -> Result<(), String> {
    let config = &policy.stores[&rule.store];
    let store = stores.get(&rule.store).await.map_err(|e| e.to_string())?;
    match last_run(store, &rule.id).await {
        Ok(found) => line.last_run = found,
        Err(err) if no_trail(&err) => {}
        Err(err) => return Err(err.to_string()),
    }
    let step = match commands::step_for(store, config, rule, as_of).await {
        Ok(Ok(step)) => step,
        Ok(Err(problems)) => {
            let text: Vec<String> = problems.iter().map(|d| d.message.clone()).collect();
            return Err(format!(
                "the rule does not match its table: {}",
                text.join("; ")
            ));
        }
        Err(err) => return Err(err.to_string()),
    };
    measure(store, policy, rule, &step, months, line)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_split_at_local_midnight_on_the_first() {
        let zone: Tz = "Europe/Copenhagen".parse().unwrap();
        let as_of: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().unwrap();
        let months = months(as_of, zone);
        assert_eq!(months.len(), 12);
        assert_eq!(months[0].label, "2026-11");
        assert_eq!(months[0].from, as_of);
        assert_eq!(
            months[0].until,
            "2026-11-30T23:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(months[11].label, "2027-10");
        // Summer time: 1 October 2027 starts at 22:00 UTC the day before.
        assert_eq!(
            months[10].until,
            "2027-09-30T22:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(months[1].from, months[0].until);
    }

    #[test]
    fn the_last_scheduled_run_before_a_moment() {
        let zone: Tz = "Europe/Copenhagen".parse().unwrap();
        let daily: Schedule = "0 30 2 * * *".parse().unwrap();
        let at: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().unwrap();
        assert_eq!(
            last_fire(&daily, at, zone),
            Some("2026-11-22T01:30:00Z".parse().unwrap())
        );
        let monthly: Schedule = "0 0 3 1 * *".parse().unwrap();
        assert_eq!(
            last_fire(&monthly, at, zone),
            Some("2026-11-01T02:00:00Z".parse().unwrap())
        );
    }
}
