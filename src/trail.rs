//! The audit trail for auditors: `glemsel audit show` lists runs with their
//! rules (rows deleted, pseudonymised and held, the cutoff, the rule's
//! fingerprint, the approved plan), read page by page so that a trail of
//! any length streams through in bounded memory.
//!
//! Only the run_start and run_finish rows are read: a rule's run is complete
//! when its finish row arrives, and is written out then. A run with a start
//! and no finish (the process died) is summed from its batch rows at the
//! end. `audit verify` remains the integrity check; `show` trusts nothing
//! it has not read, and says when a rule has changed since a run.
//!
//! Erasure on request writes no run start or finish: its rows (each
//! request, each change of its status, each table's batch) follow a store's
//! rule runs, one entry each, under the request's id.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::audit::{AuditCursor, AuditEvent, AuditFilter, AuditRecord};
use crate::commands::{CommandError, Stores};
use crate::rules::Policy;
use crate::store::{Store, StoreError};

/// Audit rows read per page.
pub const PAGE_ROWS: u32 = 5_000;

/// One rule's part in one run.
#[derive(Debug, Clone, Serialize)]
pub struct RuleRun {
    pub store: String,
    pub run_id: String,
    pub rule_id: String,
    pub table: String,
    pub action: String,
    pub started: Option<DateTime<Utc>>,
    pub finished: Option<DateTime<Utc>>,
    /// completed, stopped, partial, refused, failed; `unfinished` when the
    /// trail has a start and no finish.
    pub status: String,
    pub trigger: Option<String>,
    pub rows_deleted: u64,
    pub rows_pseudonymised: u64,
    /// Due rows kept by a hold, when the run counted them.
    pub rows_held: Option<u64>,
    /// Rows deleted with them, per cascade table.
    pub cascaded: BTreeMap<String, u64>,
    pub batches: Option<u64>,
    pub as_of: DateTime<Utc>,
    pub cutoff: String,
    pub rule_fingerprint: String,
    /// `current`, `changed since` or `no longer in the rules`.
    pub rule_now: &'static str,
    /// The approved plan file's SHA-256, when the run followed one.
    pub plan: Option<String>,
    pub key_id: Option<String>,
    pub host: String,
    pub version: String,
    pub error: Option<String>,
    /// The audit rows that tell it: first and last seq, and the last row's hash.
    pub first_seq: i64,
    pub last_seq: i64,
    pub last_row_hash: String,
}

/// What `audit show` looks at.
#[derive(Debug, Clone, Default)]
pub struct ShowOptions {
    /// Stores to read; every store when empty.
    pub stores: Vec<String>,
    pub filter: AuditFilter,
    pub page_rows: u32,
}

fn detail(record: &AuditRecord) -> serde_json::Value {
    serde_json::from_str(&record.entry.detail).unwrap_or_default()
}

fn rule_now(policy: &Policy, rule: &str, fingerprint: &str) -> &'static str {
    match policy.rule(rule) {
        Some(rule) if rule.fingerprint == fingerprint => "current",
        Some(_) => "changed since",
        None => "no longer in the rules",
    }
}

/// The rows each cascade table lost, as a detail's `cascaded` lists them.
fn cascaded_counts(detail: &serde_json::Value) -> BTreeMap<String, u64> {
    detail["cascaded"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|c| Some((c["name"].as_str()?.to_string(), c["rows"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A rule's run from its start row (if read) and its finish row.
fn from_rows(policy: &Policy, start: Option<&AuditRecord>, finish: &AuditRecord) -> RuleRun {
    let end = detail(finish);
    let e = &finish.entry;
    let rows = e.rows.max(0) as u64;
    let cascaded = cascaded_counts(&end);
    let started = start.map(|s| s.entry.at).or_else(|| {
        end["seconds"]
            .as_f64()
            .map(|s| e.at - chrono::TimeDelta::milliseconds((s * 1000.0) as i64))
    });
    RuleRun {
        store: e.store.clone(),
        run_id: e.run_id.clone(),
        rule_id: e.rule_id.clone(),
        table: e.table_name.clone(),
        action: e.action.clone(),
        started,
        finished: Some(e.at),
        status: end["status"].as_str().unwrap_or("unknown").to_string(),
        trigger: end["trigger"].as_str().map(str::to_string),
        rows_deleted: if e.action == "delete" { rows } else { 0 },
        rows_pseudonymised: if e.action == "delete" { 0 } else { rows },
        rows_held: end["counted"]["held"].as_u64(),
        cascaded,
        batches: end["batches"].as_u64(),
        as_of: e.as_of,
        cutoff: e.cutoff.clone(),
        rule_fingerprint: e.rule_hash.clone(),
        rule_now: rule_now(policy, &e.rule_id, &e.rule_hash),
        plan: end["plan"].as_str().map(str::to_string),
        key_id: e.key_id.clone(),
        host: e.host.clone(),
        version: e.version.clone(),
        error: end["error"].as_str().map(str::to_string),
        first_seq: start.map_or(finish.seq, |s| s.seq),
        last_seq: finish.seq,
        last_row_hash: finish.row_hash.clone(),
    }
}

/// A run with a start and no finish: what its batch rows say it did.
async fn unfinished(
    store: &mut dyn Store,
    policy: &Policy,
    start: &AuditRecord,
    page_rows: u32,
) -> Result<RuleRun, StoreError> {
    // A finish past the window's end still finishes the run.
    let finish = AuditFilter {
        rules: vec![start.entry.rule_id.clone()],
        run_id: Some(start.entry.run_id.clone()),
        events: vec![AuditEvent::RunFinish],
        ..AuditFilter::default()
    };
    if let Some(finish) = store
        .audit_search(&finish, AuditCursor::After(start.seq), 1)
        .await?
        .first()
    {
        return Ok(from_rows(policy, Some(start), finish));
    }
    let filter = AuditFilter {
        events: vec![AuditEvent::Batch],
        ..finish
    };
    let (mut rows, mut batches, mut last) = (0u64, 0u64, start.clone());
    let mut cursor = start.seq;
    loop {
        let page = store
            .audit_search(&filter, AuditCursor::After(cursor), page_rows)
            .await?;
        for record in &page {
            rows += record.entry.rows.max(0) as u64;
            batches += 1;
            last = record.clone();
        }
        match page.last() {
            Some(record) if page.len() == page_rows as usize => cursor = record.seq,
            _ => break,
        }
    }
    let begun = detail(start);
    let e = &start.entry;
    Ok(RuleRun {
        store: e.store.clone(),
        run_id: e.run_id.clone(),
        rule_id: e.rule_id.clone(),
        table: e.table_name.clone(),
        action: e.action.clone(),
        started: Some(e.at),
        finished: None,
        status: "unfinished".into(),
        trigger: begun["trigger"].as_str().map(str::to_string),
        rows_deleted: if e.action == "delete" { rows } else { 0 },
        rows_pseudonymised: if e.action == "delete" { 0 } else { rows },
        rows_held: begun["counted"]["held"].as_u64(),
        cascaded: BTreeMap::new(),
        batches: Some(batches),
        as_of: e.as_of,
        cutoff: e.cutoff.clone(),
        rule_fingerprint: e.rule_hash.clone(),
        rule_now: rule_now(policy, &e.rule_id, &e.rule_hash),
        plan: begun["plan"].as_str().map(str::to_string),
        key_id: e.key_id.clone(),
        host: e.host.clone(),
        version: e.version.clone(),
        error: Some("the trail has no finish row: the run ended without one (the process died or lost its connection)".into()),
        first_seq: start.seq,
        last_seq: last.seq,
        last_row_hash: last.row_hash,
    })
}

/// One store's rule runs, oldest first, each handed to `emit` as soon as
/// it is complete.
async fn show_store(
    store: &mut dyn Store,
    policy: &Policy,
    options: &ShowOptions,
    emit: &mut dyn FnMut(RuleRun),
) -> Result<(), StoreError> {
    let page_rows = options.page_rows.max(1);
    let filter = AuditFilter {
        events: vec![AuditEvent::RunStart, AuditEvent::RunFinish],
        ..options.filter.clone()
    };
    let mut open: BTreeMap<(String, String), AuditRecord> = BTreeMap::new();
    let mut cursor = i64::MIN;
    loop {
        let page = match store
            .audit_search(&filter, AuditCursor::After(cursor), page_rows)
            .await
        {
            Ok(page) => page,
            // No audit table: nothing has run here yet.
            Err(err) if err.kind() == Some(crate::store::QueryErrorKind::Compile) => {
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        for record in &page {
            let key = (record.entry.run_id.clone(), record.entry.rule_id.clone());
            match record.entry.event {
                AuditEvent::RunStart => {
                    open.insert(key, record.clone());
                }
                AuditEvent::RunFinish => {
                    let start = open.remove(&key);
                    emit(from_rows(policy, start.as_ref(), record));
                }
                AuditEvent::Batch
                | AuditEvent::Segment
                | AuditEvent::ErasureRequest
                | AuditEvent::ErasureStatus => {}
            }
        }
        match page.last() {
            Some(record) if page.len() == page_rows as usize => cursor = record.seq,
            _ => break,
        }
    }
    let mut left: Vec<AuditRecord> = open.into_values().collect();
    left.sort_by_key(|r| r.seq);
    for start in &left {
        emit(unfinished(store, policy, start, page_rows).await?);
    }
    Ok(())
}

/// The audit row of an erasure as `audit show` lists it: a request, a
/// change of its status, or one table's batch (these have no run start or
/// finish). Its rule is the request's id; nothing names the person.
fn erasure_row(record: &AuditRecord) -> RuleRun {
    let e = &record.entry;
    let d = detail(record);
    let rows = e.rows.max(0) as u64;
    let (action, status, cutoff) = match e.event {
        AuditEvent::ErasureRequest => (
            "erasure request".to_string(),
            "recorded".to_string(),
            format!(
                "received {}, deadline {}",
                d["received"].as_str().unwrap_or("?"),
                d["deadline"].as_str().unwrap_or("?")
            ),
        ),
        AuditEvent::ErasureStatus => (
            "erasure status".to_string(),
            erasure_status(&d),
            erasure_outcome(&d),
        ),
        _ => (e.action.clone(), "completed".to_string(), e.cutoff.clone()),
    };
    let cascaded = cascaded_counts(&d);
    let batch = e.event == AuditEvent::Batch;
    RuleRun {
        store: e.store.clone(),
        run_id: e.run_id.clone(),
        rule_id: e.rule_id.clone(),
        table: e.table_name.clone(),
        action,
        started: None,
        finished: Some(e.at),
        status,
        trigger: None,
        rows_deleted: if batch && e.action == "delete" {
            rows
        } else {
            0
        },
        rows_pseudonymised: if batch && e.action != "delete" {
            rows
        } else {
            0
        },
        rows_held: None,
        cascaded,
        batches: batch.then_some(1),
        as_of: e.as_of,
        cutoff,
        rule_fingerprint: String::new(),
        rule_now: "erasure",
        plan: None,
        key_id: e.key_id.clone(),
        host: e.host.clone(),
        version: e.version.clone(),
        error: None,
        first_seq: record.seq,
        last_seq: record.seq,
        last_row_hash: record.row_hash.clone(),
    }
}

/// An erasure status entry's status, as `audit show` words it.
fn erasure_status(d: &serde_json::Value) -> String {
    let status = match d["status"].as_str().unwrap_or("unknown") {
        "partly_done" => "partly done",
        "running" => "running (intent)",
        other => other,
    };
    let replay = if d["replay"].as_bool() == Some(true) {
        ", replay"
    } else {
        ""
    };
    format!("{status}{replay}")
}

/// What an erasure status entry found and changed, and what remains.
fn erasure_outcome(d: &serde_json::Value) -> String {
    let remaining: Vec<String> = d["remaining"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{} rows in {}.{}",
                r["rows"].as_u64().unwrap_or(0),
                r["store"].as_str().unwrap_or("?"),
                r["table"].as_str().unwrap_or("?")
            )
        })
        .collect();
    format!(
        "{} rows found, {} changed{}",
        d["found"].as_u64().unwrap_or(0),
        d["changed"].as_u64().unwrap_or(0),
        if remaining.is_empty() {
            String::new()
        } else {
            format!("; remaining {}", remaining.join(", "))
        }
    )
}

/// Whether a batch row is an erasure's (its cutoff names the request).
fn erasure_batch(record: &AuditRecord) -> bool {
    record.entry.event == AuditEvent::Batch && record.entry.cutoff.starts_with("erasure request ")
}

/// Every audit row matching `filter`, from the start.
async fn all_rows(
    store: &mut dyn Store,
    filter: &AuditFilter,
    page_rows: u32,
) -> Result<Vec<AuditRecord>, StoreError> {
    let mut rows = Vec::new();
    let mut cursor = i64::MIN;
    loop {
        let page = store
            .audit_search(filter, AuditCursor::After(cursor), page_rows)
            .await?;
        let full = page.len() == page_rows as usize;
        if let Some(last) = page.last() {
            cursor = last.seq;
        }
        rows.extend(page);
        if !full {
            return Ok(rows);
        }
    }
}

/// The batch rows of the erasure `requests` (by id) that `filter` selects.
pub async fn erasure_batches(
    store: &mut dyn Store,
    filter: &AuditFilter,
    mut requests: Vec<String>,
    page_rows: u32,
) -> Result<Vec<AuditRecord>, StoreError> {
    requests.sort();
    requests.dedup();
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let batches = AuditFilter {
        events: vec![AuditEvent::Batch],
        rules: requests,
        ..filter.clone()
    };
    Ok(all_rows(store, &batches, page_rows)
        .await?
        .into_iter()
        .filter(erasure_batch)
        .collect())
}

/// One store's erasure rows, oldest first: its requests and their status
/// changes, then (found by the requests' ids) their batches.
async fn show_erasures(
    store: &mut dyn Store,
    options: &ShowOptions,
    emit: &mut dyn FnMut(RuleRun),
) -> Result<(), StoreError> {
    let page_rows = options.page_rows.max(1);
    let ledger = AuditFilter {
        events: vec![AuditEvent::ErasureRequest, AuditEvent::ErasureStatus],
        ..options.filter.clone()
    };
    let mut rows = match all_rows(store, &ledger, page_rows).await {
        Ok(rows) => rows,
        Err(err) if err.kind() == Some(crate::store::QueryErrorKind::Compile) => return Ok(()),
        Err(err) => return Err(err),
    };
    let requests: Vec<String> = rows.iter().map(|r| r.entry.rule_id.clone()).collect();
    rows.extend(erasure_batches(store, &options.filter, requests, page_rows).await?);
    rows.sort_by_key(|r| r.seq);
    for record in &rows {
        emit(erasure_row(record));
    }
    Ok(())
}

/// `audit show`: every selected store's rule runs, store by store.
pub async fn show(
    policy: &Policy,
    options: &ShowOptions,
    emit: &mut dyn FnMut(RuleRun),
) -> Result<(), CommandError> {
    let names: Vec<String> = if options.stores.is_empty() {
        policy.stores.keys().cloned().collect()
    } else {
        options.stores.clone()
    };
    let mut stores = Stores::new(policy);
    for name in names {
        let store = stores.get(&name).await?;
        show_store(store, policy, options, emit).await?;
        show_erasures(store, options, emit).await?;
    }
    Ok(())
}
