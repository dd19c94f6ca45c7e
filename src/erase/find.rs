//! Finding a request's rows: each declared table is read once (its key and
//! the columns that may hold an identifier), every value is hashed here
//! under the key and compared with the requests' hashes. The key and the
//! identifiers never reach a server; the server sees a plain SELECT.

use std::collections::HashMap;

use serde::Serialize;

use super::{EraseError, Request, normalise};
use crate::pseudonym::{ColumnAction, HmacKey, TokenShape, redacted_text};
use crate::rules::{Action, Policy, Subject, SubjectTable, TableRef};
use crate::store::{Column, ColumnKind, Key, KeyValue, Store, TableSchema};

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
    /// Per cascade table, how many of its rows go with the rows deleted
    /// (counted by the run; the dry run names the tables).
    pub cascades: Vec<String>,
    #[serde(skip)]
    pub rows: Vec<FoundRow>,
    #[serde(skip)]
    pub(crate) plan: TablePlan,
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
}

/// A request's findings, table by table.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub request: String,
    pub tables: Vec<TableFinding>,
}

impl Found {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.found).sum()
    }
}

/// Finds the rows of every request in `requests`.
pub async fn find(
    policy: &Policy,
    stores: &mut crate::commands::Stores<'_>,
    key: &HmacKey,
    requests: &[&Request],
) -> Result<Vec<Found>, EraseError> {
    // Under another key the hash matches nobody, and the request would
    // count as done: after a key rotation, refuse instead.
    if let Some(request) = requests.iter().find(|r| r.key_id != key.id()) {
        return Err(EraseError::Usage(format!(
            "erasure request {} was recorded under pseudonymisation key {}, not the configured key {}: its identifier can only be found with that key; configure it for the erasure runs until every request recorded under it is done",
            request.id,
            request.key_id,
            key.id()
        )));
    }
    let mut found: Vec<Found> = requests
        .iter()
        .map(|r| Found {
            request: r.id.clone(),
            tables: Vec::new(),
        })
        .collect();
    for subject in &policy.subjects {
        // (identifier, hash) → indexes of the requests naming it.
        let mut wanted: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, request) in requests.iter().enumerate() {
            if request.subject == subject.kind {
                wanted
                    .entry((request.identifier.clone(), request.hash.clone()))
                    .or_default()
                    .push(i);
            }
        }
        if wanted.is_empty() {
            continue;
        }
        // Each table is read once; its rows' identifiers hashed once.
        let mut tables = Vec::new();
        for table in &subject.tables {
            let store = stores.get(&table.store).await.map_err(EraseError::from)?;
            let plan = table_plan(store, subject, table).await?;
            let rows: Vec<(FoundRow, Vec<(String, String)>)> = read_rows(store, table, &plan)
                .await?
                .into_iter()
                .map(|(row, matched)| {
                    let hashed = matched
                        .into_iter()
                        .map(|(identifier, value)| {
                            let hash = super::subject_hash(key, &identifier, &value);
                            (identifier, hash)
                        })
                        .collect();
                    (row, hashed)
                })
                .collect();
            tables.push((table, plan, rows));
        }
        // A followed identifier found in a row of the person names the
        // person too (their customer number in their customer row): until
        // nothing new is learnt.
        loop {
            let mut learnt = Vec::new();
            for (_, _, rows) in &tables {
                for (_, hashed) in rows {
                    let hits = hits(&wanted, hashed);
                    for (identifier, hash) in hashed {
                        if !subject.follow.contains(identifier) {
                            continue;
                        }
                        for &i in &hits {
                            let entry = (identifier.clone(), hash.clone());
                            if !wanted.get(&entry).is_some_and(|w| w.contains(&i)) {
                                learnt.push((entry, i));
                            }
                        }
                    }
                }
            }
            if learnt.is_empty() {
                break;
            }
            for (entry, i) in learnt {
                let indexes = wanted.entry(entry).or_default();
                if !indexes.contains(&i) {
                    indexes.push(i);
                }
            }
        }
        for (table, plan, rows) in tables {
            let mut per_request: Vec<Vec<FoundRow>> = vec![Vec::new(); requests.len()];
            for (row, hashed) in rows {
                for i in hits(&wanted, &hashed) {
                    per_request[i].push(row.clone());
                }
            }
            for (i, rows) in per_request.into_iter().enumerate() {
                if !rows.is_empty() {
                    found[i].tables.push(finding(table, &plan, rows));
                }
            }
        }
    }
    Ok(found)
}

/// The requests a row belongs to, by its hashed identifiers.
fn hits(wanted: &HashMap<(String, String), Vec<usize>>, hashed: &[(String, String)]) -> Vec<usize> {
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

fn finding(table: &SubjectTable, plan: &TablePlan, rows: Vec<FoundRow>) -> TableFinding {
    let held = rows.iter().filter(|r| r.held).count() as u64;
    let already = rows
        .iter()
        .filter(|r| !r.held && !plan.columns.is_empty() && row_done(plan, r))
        .count() as u64;
    TableFinding {
        store: table.store.clone(),
        table: table.table.to_string(),
        action: table.action.as_str(),
        found: rows.len() as u64,
        change: rows.len() as u64 - held - already,
        already,
        held,
        kept_by: table.kept_by.clone(),
        cascades: table
            .cascades
            .iter()
            .map(|c| c.related.table.to_string())
            .collect(),
        rows,
        plan: plan.clone(),
    }
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

/// Resolves a subject table's columns against the live schema.
pub(crate) async fn table_plan(
    store: &mut dyn Store,
    subject: &Subject,
    table: &SubjectTable,
) -> Result<TablePlan, EraseError> {
    let what = format!(
        "{}: subject {}: table {}",
        table.at, subject.kind, table.table
    );
    let schema = describe(store, &table.table, &what).await?;
    let key_names = match schema.primary_key.as_slice() {
        [] => schema.unique_keys.first().cloned().ok_or_else(|| {
            EraseError::Schema(format!(
                "{what}: no primary key or unique key to change rows by"
            ))
        })?,
        key => key.to_vec(),
    };
    let key = key_names
        .iter()
        .map(|k| column_of(&schema, k, &what))
        .collect::<Result<Vec<_>, _>>()?;
    let mut columns = Vec::new();
    for (name, action) in table.action.columns().unwrap_or_default() {
        let column = column_of(&schema, name, &what)?;
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
    for (_, column) in &table.matches {
        column_of(&schema, column, &what)?;
    }
    if let Some(hold) = &table.hold {
        column_of(&schema, hold, &what)?;
    }
    let mut cascades = Vec::new();
    for cascade in &table.cascades {
        let child = describe(store, &cascade.related.table, &what).await?;
        let mut theirs = Vec::new();
        let mut ours = Vec::new();
        for (their, our) in &cascade.related.on {
            theirs.push(column_of(&child, their, &what)?);
            ours.push(column_of(&schema, our, &what)?);
        }
        cascades.push((cascade.related.table.clone(), theirs, ours));
    }
    if matches!(table.action, Action::Delete) {
        // A foreign key that is not a declared cascade would widen or block the delete.
        // A table of the subject declared before this one, whose rows
        // are deleted first, is not widened or blocking either.
        let earlier: Vec<&TableRef> = subject
            .tables
            .iter()
            .take_while(|t| !std::ptr::eq(*t, table))
            .filter(|t| matches!(t.action, Action::Delete))
            .map(|t| &t.table)
            .collect();
        for fk in &schema.referenced_by {
            let declared = table
                .cascades
                .iter()
                .any(|c| c.related.table.name == fk.table.name)
                || earlier.iter().any(|t| t.name == fk.table.name);
            if fk.table != schema.table && !declared {
                return Err(EraseError::Schema(format!(
                    "{what}: {} has a foreign key into this table ({}); declare it as a [[subject.table.cascade]]",
                    fk.table,
                    fk.on_delete.as_sql()
                )));
            }
        }
    }
    Ok(TablePlan {
        table: schema.table.clone(),
        key,
        columns,
        cascades,
    })
}

/// Every row of the table: the found-row parts, and each (identifier, value) it holds.
async fn read_rows(
    store: &mut dyn Store,
    table: &SubjectTable,
    plan: &TablePlan,
) -> Result<Vec<(FoundRow, Vec<(String, String)>)>, EraseError> {
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
    let ours: Vec<&Column> = plan.cascades.iter().flat_map(|(_, _, ours)| ours).collect();
    read.extend(ours.iter().map(|c| (*c).clone()));
    let rows = store.erasure_read(&plan.table, &plan.key, &read).await?;
    Ok(rows
        .into_iter()
        .map(|(key, values)| {
            let mut values = values.into_iter();
            let matched: Vec<(String, String)> = table
                .matches
                .iter()
                .filter_map(|(identifier, _)| {
                    let value = values.next().flatten()?;
                    (!normalise(&value).is_empty()).then(|| (identifier.clone(), value))
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
        })
        .collect())
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
