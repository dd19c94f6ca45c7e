//! Finding a request's rows: each declared table is read a batch at a time
//! in key order (its key and the columns that may hold an identifier),
//! every value is hashed here under the key and compared with the
//! requests' hashes. The key and the identifiers never reach a server; the
//! server sees plain SELECTs. Following an identifier reads the tables
//! authoritative for it once more per round, and refuses what could be
//! another person's; the planned deletes are held to the foreign keys.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::ledger::{Learnt, Ledger, RecordedRows};
use super::references::{SubjectTables, check_kept, check_references};
use super::{EraseError, Request};
use crate::pseudonym::{ColumnAction, HmacKey, TokenShape, redacted_text};
use crate::rules::{Action, Policy, Subject, SubjectTable, TableRef};
use crate::store::erasure::key_text;
use crate::store::{Column, ColumnKind, Key, KeyValue, NamedCount, Store, TableSchema};

/// A row found for a request.
#[derive(Debug, Clone)]
pub struct FoundRow {
    pub key: Key,
    /// The current text of each column the table's action overwrites.
    pub values: Vec<Option<String>>,
    /// Per cascade, the values of our columns it matches on (`None` when
    /// one is NULL: no child row can match it).
    pub related: Vec<Option<Key>>,
    pub held: bool,
}

/// What a request's erasure does in one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableFinding {
    pub store: String,
    pub table: String,
    /// `delete`, `pseudonymise` or `anonymise`.
    pub action: &'static str,
    /// Rows of the subject found in the table.
    pub found: u64,
    /// Rows the action would change now.
    pub change: u64,
    /// Rows overwritten before (nothing left to change in place).
    pub already: u64,
    /// Rows under a hold: kept, retried when the hold lifts.
    pub held: u64,
    /// The minimum rule that keeps the rows (and deletes them when it ends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_by: Option<String>,
    /// The last day the minimum keeps the latest of them: the rule deletes
    /// them all by its next run after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_until: Option<chrono::NaiveDate>,
    /// Of the rows kept, how many the rule cannot date yet (no usable
    /// event, outside its `where`, a related row still open, or held).
    #[serde(skip_serializing_if = "is_zero")]
    pub kept_undated: u64,
    /// Per cascade table, how many of its rows go with the rows deleted.
    pub cascades: Vec<NamedCount>,
    #[serde(skip)]
    pub rows: Vec<FoundRow>,
    #[serde(skip)]
    pub(crate) plan: TablePlan,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The resolved columns a table's erasure reads and writes.
#[derive(Debug, Clone)]
pub(crate) struct TablePlan {
    pub table: TableRef,
    pub key: Vec<Column>,
    /// The columns the action overwrites, with what it writes.
    pub columns: Vec<(Column, ColumnAction)>,
    /// Per cascade: its table, its matching columns (theirs), and the
    /// columns of ours they equal.
    pub cascades: Vec<(TableRef, Vec<Column>, Vec<Column>)>,
    /// The hold column, re-checked by the statements that change rows.
    pub hold: Option<Column>,
}

/// A request's findings, table by table.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub request: String,
    pub tables: Vec<TableFinding>,
    /// Why the request is refused (its rows may be another person's too):
    /// nothing of it is changed until the data or the rules are corrected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
    /// Per table, rows that match the request's identifiers but were not
    /// among the rows it took when it was carried out: left alone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_alone: Vec<NamedCount>,
    /// Why the request's rows could not be found (a store or a table
    /// failed): nothing of it is changed; other requests go on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<Failure>,
    /// The identifiers learnt by following, earlier runs' included.
    #[serde(skip)]
    pub learnt: Vec<Learnt>,
    /// The rows recorded when the request was first carried out (`None`:
    /// this run is its first, and records what it takes).
    #[serde(skip)]
    pub recorded: Option<Vec<RecordedRows>>,
}

/// A request that failed: the message names the request, the store and
/// the table, never a value; `schema` when the rules do not fit a table.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub message: String,
    pub schema: bool,
}

impl Failure {
    pub fn new(request: &str, err: &EraseError) -> Failure {
        Failure {
            message: format!("erasure request {request}: {err}"),
            schema: matches!(err, EraseError::Schema(_)),
        }
    }
}

/// A row's key as a ledger records it: a keyed hash.
pub(crate) fn key_hash(key: &HmacKey, row: &Key) -> String {
    key.audit_hash(&key_text(row))
}

/// Per request with recorded rows: (store, table) → their hashed keys.
type Restrict = Vec<Option<HashMap<(String, String), HashSet<String>>>>;

/// Splits the requests a row matches into those that take it and those
/// that leave it alone (recorded rows exist, and this row is not one).
fn admit(
    restrict: &Restrict,
    key: &HmacKey,
    place: &(String, String),
    row: &Key,
    hits: Vec<usize>,
) -> (Vec<usize>, Vec<usize>) {
    if hits.iter().all(|&i| restrict[i].is_none()) {
        return (hits, Vec::new());
    }
    let hash = key_hash(key, row);
    hits.into_iter().partition(|&i| {
        restrict[i]
            .as_ref()
            .is_none_or(|tables| tables.get(place).is_some_and(|keys| keys.contains(&hash)))
    })
}

impl Found {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.found).sum()
    }
}

/// Rows read per statement while hashing a table's identifiers: the
/// worker holds one batch, and the rows found, never the whole table.
const READ_BATCH: u64 = 1000;

/// `(identifier, hash)` → indexes of the requests it names.
type Wanted = HashMap<(String, String), Vec<usize>>;

/// Finds the rows of every request in `requests`. A request whose
/// followed identifiers could take in another person's rows is refused:
/// no rows found, and [`Found::refused`] says why. A request carried out
/// before finds only the rows it took then ([`Found::left_alone`] counts
/// the others), by its own and its learnt identifiers. A subject whose
/// tables cannot be read fails its requests ([`Found::failed`]), not the
/// others.
pub async fn find(
    policy: &Policy,
    stores: &mut crate::commands::Stores<'_>,
    key: &HmacKey,
    ledger: &Ledger,
    requests: &[&Request],
) -> Result<Vec<Found>, EraseError> {
    let mut found: Vec<Found> = requests
        .iter()
        .map(|r| {
            let prior = ledger.statuses.get(&r.id).filter(|s| s.rows.is_some());
            Found {
                request: r.id.clone(),
                tables: Vec::new(),
                refused: other_key(key, r).into_iter().collect(),
                left_alone: Vec::new(),
                failed: None,
                learnt: prior.map(|p| p.learnt.clone()).unwrap_or_default(),
                recorded: prior.and_then(|p| p.rows.clone()),
            }
        })
        .collect();
    let restrict: Restrict = found
        .iter()
        .map(|f| {
            f.recorded.as_ref().map(|tables| {
                tables
                    .iter()
                    .map(|t| {
                        let keys = t.keys().cloned().collect();
                        ((t.store.clone(), t.table.clone()), keys)
                    })
                    .collect()
            })
        })
        .collect();
    for subject in &policy.subjects {
        let mut wanted = seeds(subject, requests, &found);
        if wanted.is_empty() {
            continue;
        }
        let mut partial = found.clone();
        let result = find_subject(
            policy,
            stores,
            key,
            subject,
            &mut wanted,
            &restrict,
            requests,
            &mut partial,
        )
        .await;
        match result {
            Ok(()) => found = partial,
            Err(err) => {
                for (i, request) in requests.iter().enumerate() {
                    if request.subject == subject.kind && found[i].refused.is_empty() {
                        found[i].failed = Some(Failure::new(&request.id, &err));
                    }
                }
            }
        }
    }
    Ok(found)
}

#[allow(clippy::too_many_arguments)]
async fn find_subject(
    policy: &Policy,
    stores: &mut crate::commands::Stores<'_>,
    key: &HmacKey,
    subject: &Subject,
    wanted: &mut Wanted,
    restrict: &Restrict,
    requests: &[&Request],
    found: &mut [Found],
) -> Result<(), EraseError> {
    let mut plans = Vec::new();
    for table in &subject.tables {
        let store = stores.get(&table.store).await.map_err(EraseError::from)?;
        plans.push(checked_plan(store, policy, subject, table).await?);
    }
    let mut learning = follow(stores, key, subject, &plans, wanted, restrict).await?;
    let read = std::mem::take(&mut learning.rows);
    collect(
        policy, stores, key, subject, &plans, wanted, restrict, read, found,
    )
    .await?;
    for (entry, i) in &learning.learnt {
        let learnt = Learnt {
            identifier: entry.0.clone(),
            hash: entry.1.clone(),
        };
        if !found[*i].learnt.contains(&learnt) {
            found[*i].learnt.push(learnt);
        }
    }
    for (i, refusal) in learning.refusals(subject, requests) {
        found[i].tables.clear();
        found[i].left_alone.clear();
        found[i].refused.push(refusal);
    }
    Ok(())
}

/// Under another key the hash matches nobody, and the request would count
/// as done: after a key rotation, refuse it instead (and only it).
fn other_key(key: &HmacKey, request: &Request) -> Option<String> {
    (request.key_id != key.id()).then(|| format!(
        "erasure request {} was recorded under pseudonymisation key {}, not the configured key {}: its identifier can only be found with that key; configure it for the erasure runs until every request recorded under it is done",
        request.id,
        request.key_id,
        key.id()
    ))
}

/// The identifiers the subject's requests give, and those earlier runs
/// learnt for them; not a refused request's.
fn seeds(subject: &Subject, requests: &[&Request], found: &[Found]) -> Wanted {
    let mut wanted = Wanted::new();
    for (i, request) in requests.iter().enumerate() {
        if request.subject != subject.kind || !found[i].refused.is_empty() {
            continue;
        }
        let learnt = found[i]
            .learnt
            .iter()
            .map(|l| (l.identifier.clone(), l.hash.clone()));
        for entry in
            std::iter::once((request.identifier.clone(), request.hash.clone())).chain(learnt)
        {
            let indexes = wanted.entry(entry).or_default();
            if !indexes.contains(&i) {
                indexes.push(i);
            }
        }
    }
    wanted
}

/// What following saw in the authoritative tables, for the refusals.
#[derive(Default)]
struct Learning {
    /// Per learnt (identifier, hash): its authoritative table's index and
    /// how many of that table's rows hold it.
    holders: HashMap<(String, String), (usize, u64)>,
    /// Per (request, followed identifier): its authoritative table's index
    /// and the keys of the rows of the request there.
    sources: HashMap<(usize, String), (usize, HashSet<String>)>,
    /// (entry, request): identifiers learnt, not given.
    learnt: Vec<((String, String), usize)>,
    /// Per authoritative table, each request's rows, and how many it left
    /// alone, as the last pass (which learnt nothing new) found them.
    rows: HashMap<usize, (Vec<Vec<FoundRow>>, Vec<u64>)>,
}

/// A followed identifier found in the person's row of the table
/// authoritative for it names the person too (their customer number in
/// their customer row): adds it to `wanted`, until nothing new is learnt.
/// Each pass reads the authoritative tables again, a batch at a time.
async fn follow(
    stores: &mut crate::commands::Stores<'_>,
    key: &HmacKey,
    subject: &Subject,
    plans: &[TablePlan],
    wanted: &mut Wanted,
    restrict: &Restrict,
) -> Result<Learning, EraseError> {
    let requests = restrict.len();
    let mut learnt = Vec::new();
    loop {
        let mut learning = Learning::default();
        let mut new = Vec::new();
        for (t, (table, plan)) in subject.tables.iter().zip(plans).enumerate() {
            if table.authoritative.is_empty() {
                continue;
            }
            let store = stores.get(&table.store).await.map_err(EraseError::from)?;
            let wanted = &*wanted;
            let mut per_request: Vec<Vec<FoundRow>> = vec![Vec::new(); requests];
            let mut left = vec![0; requests];
            let place = (table.store.clone(), table.table.to_string());
            scan(store, subject, table, plan, key, |row, hashed| {
                let (hits, alone) = admit(restrict, key, &place, &row.key, hits(wanted, &hashed));
                for i in alone {
                    left[i] += 1;
                }
                for &i in &hits {
                    per_request[i].push(row.clone());
                }
                let followed: Vec<(String, String)> = hashed
                    .into_iter()
                    .filter(|(identifier, _)| table.authoritative.contains(identifier))
                    .collect();
                for entry in followed.iter().filter(|e| wanted.contains_key(*e)) {
                    learning.holders.entry(entry.clone()).or_insert((t, 0)).1 += 1;
                }
                for &i in &hits {
                    // Every row of the request here is a person, whether
                    // or not it holds a value to follow: a second one with
                    // the followed column NULL is still someone else.
                    for identifier in &table.authoritative {
                        learning
                            .sources
                            .entry((i, identifier.clone()))
                            .or_insert((t, HashSet::new()))
                            .1
                            .insert(key_text(&row.key));
                    }
                    for entry in &followed {
                        if !wanted.get(entry).is_some_and(|w| w.contains(&i)) {
                            new.push((entry.clone(), i));
                        }
                    }
                }
            })
            .await?;
            learning.rows.insert(t, (per_request, left));
        }
        if new.is_empty() {
            learning.learnt = learnt;
            return Ok(learning);
        }
        for (entry, i) in new {
            let indexes = wanted.entry(entry.clone()).or_default();
            if !indexes.contains(&i) {
                indexes.push(i);
                learnt.push((entry, i));
            }
        }
    }
}

impl Learning {
    /// Why following may take in another person, per request: a learnt
    /// value that several authoritative rows hold, or a request whose
    /// identifiers match several authoritative rows (several people). The
    /// messages name the request, the subject and the table, never a value.
    fn refusals(&self, subject: &Subject, requests: &[&Request]) -> Vec<(usize, String)> {
        let mut refusals = Vec::new();
        let place = |t: usize| {
            let table = &subject.tables[t];
            format!("{}.{}", table.store, table.table)
        };
        let mut sources: Vec<(usize, &str, usize, usize)> = self
            .sources
            .iter()
            .filter(|(_, (_, rows))| rows.len() > 1)
            .map(|((i, identifier), (t, rows))| (*i, identifier.as_str(), *t, rows.len()))
            .collect();
        sources.sort_unstable();
        for (i, identifier, t, rows) in sources {
            refusals.push((i, format!(
                "erasure request {} (subject {}): refused, none of its rows changed: its identifiers match {rows} rows of {}, the table authoritative for {identifier}, so more than one person; following {identifier} would take in all of them. Check those rows and correct them, or erase by hand",
                requests[i].id, subject.kind, place(t)
            )));
        }
        let mut shared: Vec<(usize, &str, usize, u64)> = self
            .learnt
            .iter()
            .filter_map(|(entry, i)| {
                let (t, holders) = self.holders.get(entry)?;
                (*holders > 1).then_some((*i, entry.0.as_str(), *t, *holders))
            })
            .collect();
        shared.sort_unstable();
        shared.dedup();
        for (i, identifier, t, holders) in shared {
            refusals.push((i, format!(
                "erasure request {} (subject {}): refused, none of its rows changed: the {identifier} learnt from its row of {} is held by {holders} rows there, so it is not one person's; following it would take in all of them. Check those rows and correct them, or erase by hand",
                requests[i].id, subject.kind, place(t)
            )));
        }
        refusals
    }
}

#[allow(clippy::too_many_arguments)]
/// Each table's rows of each request, with the rows a cascade would take.
/// The authoritative tables' rows are those `follow` read last (`read`);
/// the other tables are read here.
async fn collect(
    policy: &Policy,
    stores: &mut crate::commands::Stores<'_>,
    key: &HmacKey,
    subject: &Subject,
    plans: &[TablePlan],
    wanted: &Wanted,
    restrict: &Restrict,
    mut read: HashMap<usize, (Vec<Vec<FoundRow>>, Vec<u64>)>,
    found: &mut [Found],
) -> Result<(), EraseError> {
    for (t, (table, plan)) in subject.tables.iter().zip(plans).enumerate() {
        let store = stores.get(&table.store).await.map_err(EraseError::from)?;
        let place = (table.store.clone(), table.table.to_string());
        let (per_request, left) = match read.remove(&t) {
            Some(rows) => rows,
            None => {
                let mut per_request: Vec<Vec<FoundRow>> = vec![Vec::new(); found.len()];
                let mut left = vec![0; found.len()];
                scan(store, subject, table, plan, key, |row, hashed| {
                    let (hits, alone) =
                        admit(restrict, key, &place, &row.key, hits(wanted, &hashed));
                    for i in alone {
                        left[i] += 1;
                    }
                    for i in hits {
                        per_request[i].push(row.clone());
                    }
                })
                .await?;
                (per_request, left)
            }
        };
        for (i, rows) in left.into_iter().enumerate() {
            if rows > 0 {
                found[i].left_alone.push(NamedCount {
                    name: format!("{}.{}", table.store, table.table),
                    rows,
                });
            }
        }
        for (i, rows) in per_request.into_iter().enumerate() {
            if !rows.is_empty() {
                found[i]
                    .tables
                    .push(finding(policy, store, table, plan, rows).await?);
            }
        }
    }
    Ok(())
}

/// The requests a row belongs to, by its hashed identifiers.
fn hits(wanted: &Wanted, hashed: &[(String, String)]) -> Vec<usize> {
    let mut hits: Vec<usize> = hashed
        .iter()
        .filter_map(|entry| wanted.get(entry))
        .flatten()
        .copied()
        .collect();
    hits.sort_unstable();
    hits.dedup();
    hits
}

async fn finding(
    policy: &Policy,
    store: &mut dyn Store,
    table: &SubjectTable,
    plan: &TablePlan,
    rows: Vec<FoundRow>,
) -> Result<TableFinding, EraseError> {
    let (kept_until, kept_undated) = match &table.kept_by {
        Some(rule) => {
            let keys: Vec<Key> = rows.iter().map(|r| r.key.clone()).collect();
            kept_until(policy, store, rule, plan, &keys).await?
        }
        None => (None, 0),
    };
    let held = rows.iter().filter(|r| r.held).count() as u64;
    let already = rows
        .iter()
        .filter(|r| !r.held && !plan.columns.is_empty() && row_done(plan, r))
        .count() as u64;
    Ok(TableFinding {
        store: table.store.clone(),
        table: table.table.to_string(),
        action: table.action.as_str(),
        found: rows.len() as u64,
        change: rows.len() as u64 - held - already,
        already,
        held,
        kept_by: table.kept_by.clone(),
        kept_until,
        kept_undated,
        cascades: cascade_counts(store, plan, &rows).await?,
        rows,
        plan: plan.clone(),
    })
}

/// Of rows kept under the minimum of `rule_id`, the last day the rule
/// keeps the latest of them, and how many it cannot date yet. The event is
/// read by the rule's own due condition and the period added as the rule
/// adds it (round-ups included), so the date is the one the rule acts on.
pub(crate) async fn kept_until(
    policy: &Policy,
    store: &mut dyn Store,
    rule_id: &str,
    plan: &TablePlan,
    keys: &[Key],
) -> Result<(Option<chrono::NaiveDate>, u64), EraseError> {
    let rule = policy
        .rule(rule_id)
        .ok_or_else(|| EraseError::Schema(format!("kept_by: no rule {rule_id:?}")))?;
    let config = &policy.stores[&rule.store];
    let step = crate::commands::step_for(store, config, rule, chrono::Utc::now())
        .await?
        .map_err(|found| {
            let found: Vec<String> = found.iter().map(ToString::to_string).collect();
            EraseError::Schema(found.join("; "))
        })?;
    if keys.is_empty() {
        return Ok((None, 0));
    }
    let (latest, undated) = store.erasure_kept(&step, &plan.key, keys).await?;
    let until = latest.map(|event| {
        // An instant is read in UTC; the rule counts in the store's zone.
        let local = match step.due.event.kind {
            ColumnKind::TimestampTz => event
                .and_utc()
                .with_timezone(&config.time_zone)
                .naive_local(),
            _ => event,
        };
        let due = rule.retention.due_at(local);
        (due - chrono::TimeDelta::microseconds(1)).date()
    });
    Ok((until, undated))
}

/// Per cascade table, the rows that go with the rows deleted now (held
/// rows stay, and so do theirs), counted as the run deletes them.
async fn cascade_counts(
    store: &mut dyn Store,
    plan: &TablePlan,
    rows: &[FoundRow],
) -> Result<Vec<NamedCount>, EraseError> {
    let mut counts = Vec::new();
    for (i, (child, theirs, _)) in plan.cascades.iter().enumerate() {
        let mut seen = HashSet::new();
        let values: Vec<Key> = rows
            .iter()
            .filter(|r| !r.held)
            .filter_map(|r| r.related[i].clone())
            .filter(|v| seen.insert(key_text(v)))
            .collect();
        let rows = match values.is_empty() {
            true => 0,
            false => store.erasure_count(child, theirs, &values).await?,
        };
        counts.push(NamedCount {
            name: child.to_string(),
            rows,
        });
    }
    Ok(counts)
}

/// Whether every column of the row already holds what the action writes.
pub(crate) fn row_done(plan: &TablePlan, row: &FoundRow) -> bool {
    plan.columns
        .iter()
        .zip(&row.values)
        .all(|((column, action), value)| value_done(column, *action, value.as_deref()))
}

pub(crate) fn value_done(column: &Column, action: ColumnAction, value: Option<&str>) -> bool {
    let Some(value) = value else { return true };
    match action {
        ColumnAction::Redact => value == redacted_text(column.max_chars),
        ColumnAction::Hmac | ColumnAction::HmacEmail => {
            TokenShape::for_column(action, column.max_chars).is_some_and(|s| s.is_token(value))
        }
        _ => false,
    }
}

/// The new value of one column, or `None` for NULL.
pub(crate) fn new_value(
    column: &Column,
    action: ColumnAction,
    value: Option<&str>,
    key: &HmacKey,
) -> Option<String> {
    let value = value?;
    match action {
        ColumnAction::Redact => Some(redacted_text(column.max_chars)),
        ColumnAction::Hmac | ColumnAction::HmacEmail => {
            TokenShape::for_column(action, column.max_chars).map(|shape| shape.token(key, value))
        }
        _ => None,
    }
}

fn column_of(schema: &TableSchema, name: &str, what: &str) -> Result<Column, EraseError> {
    schema.column(name).cloned().ok_or_else(|| {
        EraseError::Schema(format!("{what}: no column {name:?} in {}", schema.table))
    })
}

async fn describe(
    store: &mut dyn Store,
    table: &TableRef,
    what: &str,
) -> Result<TableSchema, EraseError> {
    store.describe(table).await?.ok_or_else(|| {
        EraseError::Schema(format!(
            "{what}: table {table} does not exist in store {}",
            store.name()
        ))
    })
}

/// The start of every message about a subject table: its file and line.
fn declared_at(subject: &Subject, table: &SubjectTable) -> String {
    format!(
        "{}: subject {}: table {}",
        table.at, subject.kind, table.table
    )
}

/// A subject table's plan, held to what the rules and the subject's other
/// tables keep (compared as the store resolves the tables): what `check`
/// and every plan use before anything is changed.
pub(crate) async fn checked_plan(
    store: &mut dyn Store,
    policy: &Policy,
    subject: &Subject,
    table: &SubjectTable,
) -> Result<TablePlan, EraseError> {
    let plan = table_plan(store, subject, table).await?;
    let what = declared_at(subject, table);
    check_kept(store, policy, table, &plan.table, &what).await?;
    Ok(plan)
}

/// Resolves a subject table's columns against the live schema.
pub(crate) async fn table_plan(
    store: &mut dyn Store,
    subject: &Subject,
    table: &SubjectTable,
) -> Result<TablePlan, EraseError> {
    let what = declared_at(subject, table);
    let schema = describe(store, &table.table, &what).await?;
    let key = key_of(&schema, table, &what)?;
    let columns = overwritten_columns(&schema, table, &what)?;
    for (_, column) in &table.matches {
        column_of(&schema, column, &what)?;
    }
    let hold = match &table.hold {
        Some(hold) => Some(column_of(&schema, hold, &what)?),
        None => None,
    };
    let mut cascades = Vec::new();
    let mut children = Vec::new();
    for cascade in &table.cascades {
        let child = describe(store, &cascade.related.table, &what).await?;
        let mut theirs = Vec::new();
        let mut ours = Vec::new();
        for (their, our) in &cascade.related.on {
            theirs.push(column_of(&child, their, &what)?);
            ours.push(column_of(&schema, our, &what)?);
        }
        let on: Vec<&String> = cascade.related.on.iter().map(|(_, our)| our).collect();
        if !crate::plan::is_unique(&schema, &on) {
            return Err(EraseError::Schema(format!(
                "{what}: cascade {}: ({}) is not the primary key or a unique key of NOT NULL columns of {}; another person's row may share the value, and their rows of {} would be deleted too. Cascade on a unique key",
                cascade.related.table,
                on.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "),
                schema.table,
                cascade.related.table,
            )));
        }
        cascades.push((cascade.related.table.clone(), theirs, ours));
        children.push((child, cascade.related.on.clone()));
    }
    if matches!(table.action, Action::Delete) {
        let others = SubjectTables::resolve(store, subject, table, &schema, &children).await?;
        check_references(&schema, &children, &others, &what)?;
    }
    Ok(TablePlan {
        table: schema.table.clone(),
        key,
        columns,
        cascades,
        hold,
    })
}

/// The key rows are changed by: the primary key, or else the first unique
/// key of NOT NULL columns; one without identifier columns when there is
/// one, since its values are bound into the statements (a server that
/// logs parameters would log them).
fn key_of(
    schema: &TableSchema,
    table: &SubjectTable,
    what: &str,
) -> Result<Vec<Column>, EraseError> {
    let candidates: Vec<&Vec<String>> = std::iter::once(&schema.primary_key)
        .filter(|k| !k.is_empty())
        .chain(&schema.unique_keys)
        .collect();
    let names = candidates
        .iter()
        .find(|k| !k.iter().any(|c| is_identifier_column(table, c)))
        .or(candidates.first())
        .ok_or_else(|| {
            EraseError::Schema(format!(
                "{what}: no primary key or unique key to change rows by"
            ))
        })?;
    names.iter().map(|k| column_of(schema, k, what)).collect()
}

fn is_identifier_column(table: &SubjectTable, column: &str) -> bool {
    table.matches.iter().any(|(_, c)| c == column)
}

/// `check`'s warning when the key rows are changed by, or a column a
/// cascade matches on, holds an identifier: its values are bound
/// parameters of the erasure statements, which a server that logs
/// parameters writes to its log.
pub(crate) fn identifier_warnings(
    subject: &Subject,
    table: &SubjectTable,
    plan: &TablePlan,
) -> Vec<String> {
    let cascade_columns = plan.cascades.iter().flat_map(|(_, _, ours)| ours);
    let mut seen = HashSet::new();
    let columns: Vec<&str> = plan
        .key
        .iter()
        .chain(cascade_columns)
        .map(|c| c.name.as_str())
        .filter(|c| is_identifier_column(table, c) && seen.insert(*c))
        .collect();
    columns
        .into_iter()
        .map(|column| format!(
            "warning: {}: subject {}: table {}: column {column:?} holds an identifier and is the key rows are changed by (or a cascade matches on): its values are bound parameters of the erasure statements, so a server that logs statement parameters (log_statement, log_min_duration_statement, the general log) writes them to its log; give the table a unique key without identifiers, or keep parameter logging off for glemsel's role",
            table.at, subject.kind, table.table
        ))
        .collect()
}

/// The columns the action overwrites, each able to take what it writes.
fn overwritten_columns(
    schema: &TableSchema,
    table: &SubjectTable,
    what: &str,
) -> Result<Vec<(Column, ColumnAction)>, EraseError> {
    let mut columns = Vec::new();
    for (name, action) in table.action.columns().unwrap_or_default() {
        let column = column_of(schema, name, what)?;
        if (action.needs_text() || action.is_keyed()) && column.kind != ColumnKind::Text {
            return Err(EraseError::Schema(format!(
                "{what}: column {name:?} is not text; {} needs a text column",
                action.as_str()
            )));
        }
        if TokenShape::for_column(*action, column.max_chars).is_none() && action.is_keyed() {
            return Err(EraseError::Schema(format!(
                "{what}: column {name:?} is too short for a token"
            )));
        }
        if *action == ColumnAction::Null && !column.nullable {
            return Err(EraseError::Schema(format!(
                "{what}: column {name:?} is NOT NULL; null cannot be written"
            )));
        }
        columns.push((column, *action));
    }
    Ok(columns)
}

/// Reads the table a batch at a time in key order and hands each row,
/// with its identifiers hashed under `key`, to `visit`.
async fn scan(
    store: &mut dyn Store,
    subject: &Subject,
    table: &SubjectTable,
    plan: &TablePlan,
    key: &HmacKey,
    mut visit: impl FnMut(FoundRow, Vec<(String, String)>),
) -> Result<(), EraseError> {
    let read = read_columns(table, plan);
    let mut after: Option<Key> = None;
    loop {
        let rows = store
            .erasure_read(&plan.table, &plan.key, &read, after.as_ref(), READ_BATCH)
            .await?;
        let more = rows.len() as u64 == READ_BATCH;
        after = rows.last().map(|(key, _)| key.clone());
        for (row_key, values) in rows {
            let (row, matched) = found_row(subject, table, plan, row_key, values);
            let hashed = matched
                .into_iter()
                .map(|(identifier, value)| {
                    let hash = super::subject_hash(key, subject, &identifier, &value);
                    (identifier, hash)
                })
                .collect();
            visit(row, hashed);
        }
        if !more {
            return Ok(());
        }
    }
}

/// Calls `visit` with the key of every row of the planned table, a batch
/// at a time in key order.
pub(crate) async fn each_key(
    store: &mut dyn Store,
    plan: &TablePlan,
    mut visit: impl FnMut(&Key),
) -> Result<(), EraseError> {
    let mut after: Option<Key> = None;
    loop {
        let rows = store
            .erasure_read(&plan.table, &plan.key, &[], after.as_ref(), READ_BATCH)
            .await?;
        rows.iter().for_each(|(key, _)| visit(key));
        if (rows.len() as u64) < READ_BATCH {
            return Ok(());
        }
        after = rows.into_iter().last().map(|(key, _)| key);
    }
}

/// The columns read besides the key: the identifier columns, the columns
/// the action overwrites, the hold column, the columns cascades match.
fn read_columns(table: &SubjectTable, plan: &TablePlan) -> Vec<Column> {
    let schema_column = |name: &str| {
        plan.key
            .iter()
            .chain(plan.columns.iter().map(|(c, _)| c))
            .chain(plan.cascades.iter().flat_map(|(_, _, ours)| ours))
            .find(|c| c.name == name)
            .cloned()
            .unwrap_or_else(|| Column {
                name: name.to_string(),
                data_type: String::new(),
                kind: ColumnKind::Text,
                nullable: true,
                max_chars: None,
            })
    };
    let mut read: Vec<Column> = table
        .matches
        .iter()
        .map(|(_, c)| schema_column(c))
        .collect();
    read.extend(plan.columns.iter().map(|(c, _)| c.clone()));
    read.extend(table.hold.iter().map(|h| schema_column(h)));
    read.extend(plan.cascades.iter().flat_map(|(_, _, ours)| ours).cloned());
    read
}

/// One row as read (in [`read_columns`]' order): the found-row parts, and
/// each (identifier, value) it holds.
fn found_row(
    subject: &Subject,
    table: &SubjectTable,
    plan: &TablePlan,
    key: Key,
    values: Vec<Option<String>>,
) -> (FoundRow, Vec<(String, String)>) {
    let mut values = values.into_iter();
    let matched: Vec<(String, String)> = table
        .matches
        .iter()
        .filter_map(|(identifier, _)| {
            let value = values.next().flatten()?;
            let compared = subject.normalise_of(identifier).apply(&value);
            (!compared.is_empty()).then(|| (identifier.clone(), value))
        })
        .collect();
    let current: Vec<Option<String>> = values.by_ref().take(plan.columns.len()).collect();
    let held = match table.hold {
        Some(_) => is_held(values.next().flatten().as_deref()),
        None => false,
    };
    let related = plan
        .cascades
        .iter()
        .map(|(_, _, ours)| {
            ours.iter()
                .map(|column| values.next().flatten().map(|text| typed(column, text)))
                // Every column is read before a NULL makes it `None`: the
                // next cascade's values follow.
                .collect::<Vec<_>>()
                .into_iter()
                .collect::<Option<Key>>()
        })
        .collect();
    (
        FoundRow {
            key,
            values: current,
            related,
            held,
        },
        matched,
    )
}

/// A hold column's text: NULL counts as held, as it does for rules.
fn is_held(text: Option<&str>) -> bool {
    !matches!(
        text.map(|t| t.trim().to_ascii_lowercase()).as_deref(),
        Some("false" | "f" | "0")
    )
}

/// A value read as text, typed as the column it is compared with.
fn typed(column: &Column, text: String) -> KeyValue {
    match (column.kind, text.parse::<i64>()) {
        (ColumnKind::Integer, Ok(n)) => KeyValue::Int(n),
        _ => KeyValue::Text(text),
    }
}
