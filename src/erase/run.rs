//! Carrying out requests: per table, one transaction that deletes the
//! request's rows (children of declared cascades first) or overwrites their
//! columns, and appends the audit row naming the request, never the person.
//! Then the request's status goes to the ledger when it changed.

use serde::Serialize;

use super::find::{Failure, FoundRow, TableFinding, TablePlan, key_hash, new_value, row_done};
use super::ledger::{
    self, Entry, Intended, Ledger, RecordedRows, Remaining, Request, Status, StatusKind,
};
use super::{EraseError, Found};
use crate::audit::{self, AuditEntry, AuditEvent};
use crate::pseudonym::HmacKey;
use crate::rules::Policy;
use crate::store::erasure::key_text;
use crate::store::{Key, NamedCount, Store, StoreError};

/// Which requests a run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Requests not done yet.
    Open,
    /// Every request, done ones too: after a restore brought rows back.
    Replay,
}

/// What a run did for one request.
#[derive(Debug, Clone, Serialize)]
pub struct RequestOutcome {
    pub request: String,
    pub found: u64,
    pub changed: u64,
    pub cascaded: u64,
    pub status: StatusKind,
    pub remaining: Vec<Remaining>,
    /// No run looked for this request before.
    pub first: bool,
    /// Per table, matching rows not part of the request when it was
    /// carried out: left alone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_alone: Vec<NamedCount>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub replay: bool,
    pub requests: Vec<RequestOutcome>,
    /// Requests refused, and why: not run, their status unchanged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
    /// Requests that failed (a store or table error): not carried out, or
    /// not completely; the others were.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<Failure>,
}

/// Where the ledger is and the keys a run uses.
pub struct Context<'a> {
    pub policy: &'a Policy,
    pub key: &'a HmacKey,
    pub audit_key: Option<&'a HmacKey>,
    pub run_id: &'a str,
}

/// Runs the requests `mode` selects.
pub async fn run(
    ctx: &Context<'_>,
    stores: &mut crate::commands::Stores<'_>,
    ledger: &Ledger,
    mode: Mode,
) -> Result<RunReport, EraseError> {
    let selected: Vec<&Request> = ledger
        .requests
        .iter()
        .filter(|r| mode == Mode::Replay || ledger.status_of(&r.id) != StatusKind::Done)
        .collect();
    let found = super::find(ctx.policy, stores, ctx.key, ledger, &selected).await?;
    let mut outcomes = Vec::new();
    let mut refused = Vec::new();
    let mut failed = Vec::new();
    for found in found {
        if !found.refused.is_empty() {
            refused.extend(found.refused);
            continue;
        }
        if let Some(failure) = found.failed {
            failed.push(failure);
            continue;
        }
        // One request's failure (a table's error) leaves the others to run.
        match run_request(ctx, stores, ledger, &found, mode).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(err) => failed.push(Failure::new(&found.request, &err)),
        }
    }
    Ok(RunReport {
        run_id: ctx.run_id.to_string(),
        replay: mode == Mode::Replay,
        requests: outcomes,
        refused,
        failed,
    })
}

async fn run_request(
    ctx: &Context<'_>,
    stores: &mut crate::commands::Stores<'_>,
    ledger: &Ledger,
    found: &Found,
    mode: Mode,
) -> Result<RequestOutcome, EraseError> {
    let mut previous = ledger.statuses.get(&found.request).cloned();
    let first = previous.is_none();
    let rows = recorded(ctx, found);
    // Intent first: a crash after some tables committed leaves this as
    // the latest status, and the next run takes from it the rows kept
    // under a minimum that no longer match the identifier, and the rows
    // the request takes.
    let intended = intended(found);
    if !intended.is_empty() {
        let intent = Status {
            request: found.request.clone(),
            status: StatusKind::Running,
            intended,
            found: found.rows(),
            changed: 0,
            remaining: carried(remaining(ctx, found), previous.as_ref()),
            replay: mode == Mode::Replay,
            rows: Some(rows.clone()),
            learnt: found.learnt.clone(),
            at: after(previous.as_ref()),
        };
        append_status(ctx, stores, intent.clone()).await?;
        previous = Some(intent);
    }
    let mut outcome = erase_request(ctx, stores, found, mode).await?;
    outcome.first = first;
    if let Some(previous) = &previous {
        still_kept(ctx, stores, previous, &mut outcome).await?;
    }
    date_kept(ctx, stores, found, &mut outcome).await?;
    record_status(ctx, stores, previous.as_ref(), &outcome, found, rows, mode).await?;
    Ok(outcome)
}

/// The rows a request takes, by table and outcome: those recorded when it
/// was first carried out, or else (its first run) the rows found now.
fn recorded(ctx: &Context<'_>, found: &Found) -> Vec<RecordedRows> {
    if let Some(rows) = &found.recorded {
        return rows.clone();
    }
    found
        .tables
        .iter()
        .map(|t| {
            let mut rows = RecordedRows {
                store: t.store.clone(),
                table: t.table.clone(),
                changed: Vec::new(),
                kept: Vec::new(),
                held: Vec::new(),
            };
            for row in &t.rows {
                let hash = key_hash(ctx.key, &row.key);
                match (row.held, t.kept_by.is_some()) {
                    (true, _) => rows.held.push(hash),
                    (false, true) => rows.kept.push(hash),
                    (false, false) => rows.changed.push(hash),
                }
            }
            rows
        })
        .collect()
}

async fn erase_request(
    ctx: &Context<'_>,
    stores: &mut crate::commands::Stores<'_>,
    found: &Found,
    mode: Mode,
) -> Result<RequestOutcome, EraseError> {
    let mut outcome = RequestOutcome {
        request: found.request.clone(),
        found: found.rows(),
        changed: 0,
        cascaded: 0,
        status: StatusKind::Done,
        remaining: Vec::new(),
        first: true,
        left_alone: found.left_alone.clone(),
    };
    let mut held_now = Vec::new();
    for table in &found.tables {
        let (changed, cascaded) = async {
            let store = stores.get(&table.store).await.map_err(EraseError::from)?;
            erase_table(ctx, store, &found.request, table, mode).await
        }
        .await
        .map_err(|err| EraseError::Table {
            store: table.store.clone(),
            table: table.table.clone(),
            source: Box::new(err),
        })?;
        outcome.changed += changed;
        outcome.cascaded += cascaded;
        let skipped = to_change(table).len() as u64 - changed.min(to_change(table).len() as u64);
        if skipped > 0 {
            held_now.push(Remaining {
                store: table.store.clone(),
                table: table.table.clone(),
                rows: skipped,
                why: "held (a hold placed during the run); erased when the hold lifts".into(),
                keys: Vec::new(),
            });
        }
    }
    outcome.remaining = remaining(ctx, found);
    outcome.remaining.extend(held_now);
    if !outcome.remaining.is_empty() {
        outcome.status = StatusKind::PartlyDone;
    }
    Ok(outcome)
}

/// The rows of a table this run changes: not held, and not already done.
fn to_change(table: &TableFinding) -> Vec<&FoundRow> {
    let plan = &table.plan;
    table
        .rows
        .iter()
        .filter(|r| !r.held && (plan.columns.is_empty() || !row_done(plan, r)))
        .collect()
}

/// Per table, what the run is about to change.
fn intended(found: &Found) -> Vec<Intended> {
    found
        .tables
        .iter()
        .map(|t| Intended {
            store: t.store.clone(),
            table: t.table.clone(),
            action: t.action.to_string(),
            rows: to_change(t).len() as u64,
        })
        .filter(|i| i.rows > 0)
        .collect()
}

/// The rows of the request that stay once the run is done: held rows, and
/// rows kept under a minimum (by hashed keys).
fn remaining(ctx: &Context<'_>, found: &Found) -> Vec<Remaining> {
    let mut remaining = Vec::new();
    for table in &found.tables {
        if table.held > 0 {
            remaining.push(Remaining {
                store: table.store.clone(),
                table: table.table.clone(),
                rows: table.held,
                why: "held (a legal hold); erased when the hold lifts".into(),
                keys: Vec::new(),
            });
        }
        if let Some(rule) = &table.kept_by {
            let keys: Vec<String> = table
                .rows
                .iter()
                .filter(|r| !r.held)
                .map(|r| key_hash(ctx.key, &r.key))
                .collect();
            remaining.push(kept(table.store.clone(), table.table.clone(), rule, keys));
        }
    }
    remaining
}

/// `now` plus the rows an earlier status kept under a minimum by key: an
/// intent must not forget them.
fn carried(mut now: Vec<Remaining>, previous: Option<&Status>) -> Vec<Remaining> {
    for earlier in previous
        .into_iter()
        .flat_map(|p| &p.remaining)
        .filter(|r| !r.keys.is_empty())
    {
        match now
            .iter_mut()
            .find(|r| r.store == earlier.store && r.table == earlier.table && !r.keys.is_empty())
        {
            Some(same) => merge_keys(same, &earlier.keys),
            None => now.push(earlier.clone()),
        }
    }
    now
}

fn merge_keys(into: &mut Remaining, keys: &[String]) {
    for key in keys {
        if !into.keys.contains(key) {
            into.keys.push(key.clone());
        }
    }
    into.rows = into.keys.len() as u64;
}

/// A status time after `previous`'s, so the latest entry wins the merge
/// even within one microsecond.
fn after(previous: Option<&Status>) -> chrono::DateTime<chrono::Utc> {
    let now = audit::now();
    match previous {
        Some(p) if p.at >= now => p.at + chrono::Duration::microseconds(1),
        _ => now,
    }
}

fn kept(store: String, table: String, rule: &str, keys: Vec<String>) -> Remaining {
    Remaining {
        store,
        table,
        rows: keys.len() as u64,
        why: kept_why(rule, None, 0),
        keys,
    }
}

/// Why rows kept under a minimum remain, with the last day the rule keeps
/// them when it can date them all.
fn kept_why(rule: &str, until: Option<chrono::NaiveDate>, undated: u64) -> String {
    match (until, undated) {
        (Some(date), 0) => {
            format!("kept until {date} under the minimum of rule {rule}, which deletes them then")
        }
        (Some(date), undated) => format!(
            "kept under the minimum of rule {rule}, which deletes them when it ends: until {date}, {undated} of them with no date yet"
        ),
        (None, 0) => {
            format!("kept under the minimum of rule {rule}, which deletes them when it ends")
        }
        (None, undated) => format!(
            "kept under the minimum of rule {rule}, which deletes them when it ends; {undated} of them with no date yet"
        ),
    }
}

/// Dates the rows that remain under a minimum, once every run's rows are
/// in (those found now and those earlier runs left): their keys are the
/// found rows' where the hashes match, else read again from the table.
async fn date_kept(
    ctx: &Context<'_>,
    stores: &mut crate::commands::Stores<'_>,
    found: &Found,
    outcome: &mut RequestOutcome,
) -> Result<(), EraseError> {
    for remaining in outcome.remaining.iter_mut().filter(|r| !r.keys.is_empty()) {
        let place = ctx.policy.subject_tables().find(|(_, t)| {
            t.store == remaining.store
                && t.table.to_string() == remaining.table
                && t.kept_by.is_some()
        });
        let Some((subject, table)) = place else {
            continue;
        };
        let rule = table.kept_by.as_deref().expect("kept tables only");
        let wanted: std::collections::HashSet<&String> = remaining.keys.iter().collect();
        let mut keys: Vec<crate::store::Key> = found
            .tables
            .iter()
            .filter(|t| t.store == remaining.store && t.table == remaining.table)
            .flat_map(|t| &t.rows)
            .filter(|r| wanted.contains(&key_hash(ctx.key, &r.key)))
            .map(|r| r.key.clone())
            .collect();
        let store = stores.get(&table.store).await.map_err(EraseError::from)?;
        let plan = super::find::table_plan(store, subject, table).await?;
        if keys.len() < wanted.len() {
            // Rows that no longer match the identifier: found by their hash.
            keys.clear();
            super::find::each_key(store, &plan, |key| {
                if wanted.contains(&key_hash(ctx.key, key)) {
                    keys.push(key.clone());
                }
            })
            .await?;
        }
        let (until, undated) =
            super::find::kept_until(ctx.policy, store, rule, &plan, &keys).await?;
        remaining.why = kept_why(rule, until, undated);
    }
    Ok(())
}

/// Rows an earlier run left under a minimum that no longer match the
/// identifier (their identifier column was overwritten): still there until
/// the minimum rule deletes them, found by their hashed keys.
async fn still_kept(
    ctx: &Context<'_>,
    stores: &mut crate::commands::Stores<'_>,
    previous: &Status,
    outcome: &mut RequestOutcome,
) -> Result<(), EraseError> {
    for earlier in previous.remaining.iter().filter(|r| !r.keys.is_empty()) {
        let place = ctx
            .policy
            .subject_tables()
            .find(|(_, t)| t.store == earlier.store && t.table.to_string() == earlier.table);
        let Some((subject, table)) = place else {
            continue;
        };
        let store = stores.get(&table.store).await.map_err(EraseError::from)?;
        let plan = super::find::table_plan(store, subject, table).await?;
        let recorded: std::collections::HashSet<&String> = earlier.keys.iter().collect();
        let mut keys = Vec::new();
        super::find::each_key(store, &plan, |key| {
            let hash = key_hash(ctx.key, key);
            if recorded.contains(&hash) {
                keys.push(hash);
            }
        })
        .await?;
        let now_kept = outcome
            .remaining
            .iter_mut()
            .find(|r| r.store == earlier.store && r.table == earlier.table && !r.keys.is_empty());
        match now_kept {
            Some(now) => merge_keys(now, &keys),
            None if !keys.is_empty() => {
                let rule = table.kept_by.as_deref().unwrap_or("?");
                outcome.remaining.push(kept(
                    earlier.store.clone(),
                    earlier.table.clone(),
                    rule,
                    keys,
                ));
            }
            None => {}
        }
    }
    outcome.status = match outcome.remaining.is_empty() {
        true => StatusKind::Done,
        false => StatusKind::PartlyDone,
    };
    Ok(())
}

/// One table's rows for one request, in one transaction with its audit
/// row; `(rows changed, cascaded rows deleted)`.
async fn erase_table(
    ctx: &Context<'_>,
    store: &mut dyn Store,
    request: &str,
    table: &TableFinding,
    mode: Mode,
) -> Result<(u64, u64), EraseError> {
    let plan = &table.plan;
    let rows = to_change(table);
    if rows.is_empty() {
        return Ok((0, 0));
    }
    store.ensure_audit_table().await?;
    store.begin().await?;
    let result = async {
        let (changed, cascaded) = match plan.columns.is_empty() {
            true => delete_rows(store, plan, &rows).await?,
            false => (
                overwrite_rows(ctx.key, store, plan, &rows).await?,
                Vec::new(),
            ),
        };
        let entry = batch_row(ctx, store.name(), request, table, changed, &cascaded, mode);
        audit::append(store, entry, ctx.audit_key).await?;
        Ok::<_, StoreError>((changed, cascaded.iter().map(|c| c.rows).sum()))
    }
    .await;
    match result {
        Ok(counts) => {
            store.commit().await?;
            Ok(counts)
        }
        Err(err) => {
            if let Err(rollback) = store.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed");
            }
            Err(err.into())
        }
    }
}

async fn delete_rows(
    store: &mut dyn Store,
    plan: &TablePlan,
    rows: &[&FoundRow],
) -> Result<(u64, Vec<NamedCount>), StoreError> {
    // The rows still not held, locked: a hold placed since they were read
    // keeps the row, and the rows its cascades would take.
    let keys: Vec<Key> = rows.iter().map(|r| r.key.clone()).collect();
    let free: std::collections::HashSet<String> = store
        .erasure_lock(&plan.table, &plan.key, plan.hold.as_ref(), &keys)
        .await?
        .iter()
        .map(key_text)
        .collect();
    let rows: Vec<&FoundRow> = rows
        .iter()
        .copied()
        .filter(|r| free.contains(&key_text(&r.key)))
        .collect();
    let mut cascaded = Vec::new();
    for (i, (child, theirs, _)) in plan.cascades.iter().enumerate() {
        let mut values: Vec<Key> = rows.iter().filter_map(|r| r.related[i].clone()).collect();
        values.dedup();
        let deleted = match values.is_empty() {
            true => 0,
            false => store.erasure_delete(child, theirs, &values).await?,
        };
        cascaded.push(NamedCount {
            name: child.to_string(),
            rows: deleted,
        });
    }
    let keys: Vec<Key> = rows.iter().map(|r| r.key.clone()).collect();
    let deleted = store.erasure_delete(&plan.table, &plan.key, &keys).await?;
    Ok((deleted, cascaded))
}

async fn overwrite_rows(
    key: &HmacKey,
    store: &mut dyn Store,
    plan: &TablePlan,
    rows: &[&FoundRow],
) -> Result<u64, StoreError> {
    let mut changed = 0;
    for row in rows {
        let values: Vec<(String, Option<String>)> = plan
            .columns
            .iter()
            .zip(&row.values)
            .map(|((column, action), value)| {
                (
                    column.name.clone(),
                    new_value(column, *action, value.as_deref(), key),
                )
            })
            .collect();
        changed += store
            .erasure_update(
                &plan.table,
                &plan.key,
                plan.hold.as_ref(),
                &row.key,
                &values,
            )
            .await?;
    }
    Ok(changed)
}

/// The audit row of one table's erasure: the request's id, counts, the
/// key's id; no key values (a key may be an e-mail address) and no
/// identifier.
fn batch_row(
    ctx: &Context<'_>,
    store: &str,
    request: &str,
    table: &TableFinding,
    rows: u64,
    cascaded: &[NamedCount],
    mode: Mode,
) -> AuditEntry {
    let now = audit::now();
    let detail = serde_json::json!({
        "erasure": request,
        "replay": mode == Mode::Replay,
        "cascaded": cascaded,
    });
    AuditEntry {
        run_id: ctx.run_id.to_string(),
        event: AuditEvent::Batch,
        rule_id: request.to_string(),
        store: store.to_string(),
        table_name: table.table.clone(),
        action: table.action.to_string(),
        rows: rows as i64,
        key_from: None,
        key_to: None,
        as_of: now,
        cutoff: format!("erasure request {request}"),
        rule_hash: String::new(),
        key_id: (table.action == "pseudonymise").then(|| ctx.key.id().to_string()),
        at: now,
        host: audit::host_name(),
        version: crate::VERSION.into(),
        detail: detail.to_string(),
    }
}

/// Writes the request's status to the ledger when it changed (always
/// after an intent), and always on a replay (which the trail must show).
async fn record_status(
    ctx: &Context<'_>,
    stores: &mut crate::commands::Stores<'_>,
    previous: Option<&Status>,
    outcome: &RequestOutcome,
    found: &Found,
    rows: Vec<RecordedRows>,
    mode: Mode,
) -> Result<(), EraseError> {
    let same = previous.is_some_and(|p| {
        p.status == outcome.status
            && p.remaining == outcome.remaining
            && p.rows.as_ref() == Some(&rows)
            && p.learnt == found.learnt
    });
    if same && mode == Mode::Open {
        return Ok(());
    }
    let status = Status {
        request: outcome.request.clone(),
        status: outcome.status,
        intended: Vec::new(),
        found: outcome.found,
        changed: outcome.changed,
        remaining: outcome.remaining.clone(),
        replay: mode == Mode::Replay,
        rows: Some(rows),
        learnt: found.learnt.clone(),
        at: after(previous),
    };
    append_status(ctx, stores, status).await
}

async fn append_status(
    ctx: &Context<'_>,
    stores: &mut crate::commands::Stores<'_>,
    status: Status,
) -> Result<(), EraseError> {
    let (name, file) = ledger_place(ctx.policy)?;
    let store = stores.get(name).await.map_err(EraseError::from)?;
    ledger::append(
        store,
        file,
        &Entry::Status(status),
        ctx.audit_key,
        ctx.run_id,
    )
    .await
}

/// The ledger store's name and the ledger file (validation made sure both
/// are set when there are subjects).
pub fn ledger_place(policy: &Policy) -> Result<(&str, &std::path::Path), EraseError> {
    match (&policy.settings.erasure_store, &policy.settings.erasure_ledger) {
        (Some(store), Some(file)) => Ok((store, file)),
        _ => Err(EraseError::Usage(
            "no erasure ledger: declare [[subject]] in the rules and set erasure_store and erasure_ledger in glemsel.toml".into(),
        )),
    }
}
