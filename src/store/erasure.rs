//! The statements erasure on request runs: read a table's keys and the
//! columns that may hold an identifier, a batch at a time in key order
//! (hashed in the worker, never compared in the database), count and
//! delete rows by key or by related columns, and overwrite columns of one
//! row by key. Values are always bound.

use super::flow::Statements;
use super::sql::{Dialect, Param, Query, kept_events, push_in_values, push_key_compare};
use super::{Column, ColumnKind, Key, KeyValue, StoreError};
use crate::rules::TableRef;
use crate::step::Step;

/// One row as erasure reads it: its key, then the text of each column asked for.
pub type ReadRow = (Key, Vec<Option<String>>);

/// The first `limit` rows in key order with a key after `after` (from
/// the first row when `None`): each one's key and the text of `columns`
/// (NULL as `None`).
pub(crate) async fn read(
    store: &mut dyn Statements,
    table: &TableRef,
    key: &[Column],
    columns: &[Column],
    after: Option<&Key>,
    limit: u64,
) -> Result<Vec<ReadRow>, StoreError> {
    let dialect = store.dialect();
    let mut q = Query::new(dialect);
    // Each expression gets a name of its own: PostgreSQL resolves ORDER BY
    // "id" to an output column of that name first, and `"id"::text` keeps
    // the name, so the pages would follow the text order (10 before 9)
    // while the next page starts after the last key as a number.
    let mut select: Vec<String> = key
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let value = dialect.key_select(&dialect.quote(&c.name), c);
            format!("{value} AS glemsel_k{i}")
        })
        .collect();
    select.extend(columns.iter().enumerate().map(|(i, c)| {
        let value = dialect.value_text(&dialect.quote(&c.name));
        format!("{value} AS glemsel_v{i}")
    }));
    q.push("SELECT ")
        .push(&select.join(", "))
        .push(" FROM ")
        .push(&dialect.table(table));
    if let Some(after) = after {
        q.push(" WHERE ");
        push_key_compare(&mut q, key, after, false);
    }
    let order: Vec<String> = key.iter().map(|c| dialect.quote(&c.name)).collect();
    q.push(" ORDER BY ").push(&order.join(", ")).push(" LIMIT ");
    q.push_bind(Param::Int(limit as i64));
    let mut typed: Vec<Column> = key.to_vec();
    typed.extend(columns.iter().map(|c| Column {
        kind: ColumnKind::Text,
        ..c.clone()
    }));
    let rows = store.values("erasure read", &q, &typed).await?;
    rows.into_iter()
        .map(|mut row| {
            let values = row.split_off(key.len());
            let key = row.into_iter().collect::<Option<Key>>().ok_or_else(|| {
                StoreError::invalid(
                    store.store_name(),
                    "erasure read",
                    "a key value is NULL".into(),
                )
            })?;
            Ok((
                key,
                values
                    .into_iter()
                    .map(|v| v.map(|v| v.to_string()))
                    .collect(),
            ))
        })
        .collect()
}

/// Of the rows with keys `keys`, those still there and not under a hold
/// (`hold`, re-checked now: a hold may have been placed since the rows
/// were read), locked until the transaction ends where the engine locks
/// rows (`FOR UPDATE`), so their hold cannot change before they and the
/// rows their cascades take are deleted. Their keys, as read.
pub(crate) async fn lock(
    store: &mut dyn Statements,
    table: &TableRef,
    key: &[Column],
    hold: Option<&Column>,
    keys: &[Key],
) -> Result<Vec<Key>, StoreError> {
    let dialect = store.dialect();
    let select: Vec<String> = key
        .iter()
        .map(|c| dialect.key_select(&dialect.quote(&c.name), c))
        .collect();
    let head = format!("SELECT {} FROM ", select.join(", "));
    let mut locked = Vec::new();
    for mut q in matching(dialect, &head, table, key, keys) {
        push_not_held(dialect, &mut q, hold);
        if let Some(for_update) = dialect.for_update() {
            q.push(for_update);
        }
        locked.extend(store.keys("erasure lock", &q, key).await?);
    }
    Ok(locked)
}

/// ` AND NOT <held>`, the hold condition rule runs use, when the table
/// has a hold column erasure can test in the database.
fn push_not_held(dialect: &dyn Dialect, q: &mut Query<'_>, hold: Option<&Column>) {
    if let Some(column) = hold.filter(|c| checkable_hold(c)) {
        let held = dialect.held(&dialect.quote(&column.name), column);
        q.push(" AND NOT ").push(&held);
    }
}

/// Hold columns the database tests as rule runs do (a flag or a number);
/// another kind is tested in the worker only, when the rows are read.
pub(crate) fn checkable_hold(column: &Column) -> bool {
    matches!(column.kind, ColumnKind::Boolean | ColumnKind::Integer)
}

/// How many rows have `columns` equal to one of `values`, counted in the
/// chunks [`delete`] deletes them in.
pub(crate) async fn count(
    store: &mut dyn Statements,
    table: &TableRef,
    columns: &[Column],
    values: &[Key],
) -> Result<u64, StoreError> {
    let mut counted = 0;
    for q in matching(
        store.dialect(),
        "SELECT COUNT(*) FROM ",
        table,
        columns,
        values,
    ) {
        counted += store
            .numbers("erasure count", &q)
            .await?
            .first()
            .copied()
            .unwrap_or_default();
    }
    Ok(counted)
}

/// Deletes the rows whose `columns` equal one of `values`, in chunks the
/// engine's parameter limit allows; how many went.
pub(crate) async fn delete(
    store: &mut dyn Statements,
    table: &TableRef,
    columns: &[Column],
    values: &[Key],
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for q in matching(store.dialect(), "DELETE FROM ", table, columns, values) {
        deleted += store.affected("erasure delete", &q).await?;
    }
    Ok(deleted)
}

/// `<head><table> WHERE <columns> IN (<values>)`, one statement per chunk
/// of values the engine's parameter limit allows.
fn matching<'d>(
    dialect: &'d dyn Dialect,
    head: &str,
    table: &TableRef,
    columns: &[Column],
    values: &[Key],
) -> Vec<Query<'d>> {
    let chunk = (dialect.max_params() / columns.len().max(1)).max(1);
    values
        .chunks(chunk)
        .map(|values| {
            let mut q = Query::new(dialect);
            q.push(head).push(&dialect.table(table)).push(" WHERE ");
            push_in_values(&mut q, columns, values);
            q
        })
        .collect()
}

/// Sets `columns` of the row with `key` to the values given (NULL as `None`).
pub(crate) async fn update(
    store: &mut dyn Statements,
    table: &TableRef,
    key_columns: &[Column],
    hold: Option<&Column>,
    key: &Key,
    columns: &[(String, Option<String>)],
) -> Result<u64, StoreError> {
    let dialect = store.dialect();
    let mut q = Query::new(dialect);
    q.push("UPDATE ").push(&dialect.table(table)).push(" SET ");
    for (i, (column, value)) in columns.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push(&dialect.quote(column)).push(" = ");
        q.push_bind(Param::OptText(value.clone()));
    }
    q.push(" WHERE ");
    push_in_values(&mut q, key_columns, std::slice::from_ref(key));
    push_not_held(dialect, &mut q, hold);
    store.affected("erasure update", &q).await
}

/// A key value as the text erasure compares it by.
pub fn key_text(key: &Key) -> String {
    key.iter()
        .map(KeyValue::to_string)
        .collect::<Vec<_>>()
        .join("\u{1f}")
}

/// Of the rows with keys `keys`, the latest event the step's due condition
/// will reach (as the engine returns it, for [`event_of`]), and how many
/// of them it cannot date; in chunks the parameter limit allows.
pub(crate) async fn kept(
    store: &mut dyn Statements,
    step: &Step,
    key: &[Column],
    keys: &[Key],
) -> Result<(Option<chrono::NaiveDateTime>, u64), StoreError> {
    let dialect = store.dialect();
    let chunk = (dialect.max_params() / key.len().max(1)).max(1);
    let text = Column {
        name: String::new(),
        data_type: String::new(),
        kind: ColumnKind::Text,
        nullable: true,
        max_chars: None,
    };
    let (mut latest, mut undated) = (None, 0);
    for keys in keys.chunks(chunk) {
        let q = kept_events(dialect, step, key, keys);
        let rows = store
            .values("erasure kept", &q, &[text.clone(), text.clone()])
            .await?;
        let Some(row) = rows.into_iter().next() else {
            continue;
        };
        let mut row = row.into_iter();
        let (event, count) = (row.next().flatten(), row.next().flatten());
        let bad = |what: &str| StoreError::invalid(store.store_name(), "erasure kept", what.into());
        if let Some(event) = event {
            let at = event_of(&event.to_string())
                .ok_or_else(|| bad("an event time that cannot be read"))?;
            latest = latest.max(Some(at));
        }
        if let Some(count) = count {
            undated += count
                .to_string()
                .parse::<u64>()
                .map_err(|_| bad("a count that cannot be read"))?;
        }
    }
    Ok((latest, undated))
}

/// An event read back as [`Dialect::event_text`] gives it.
pub(crate) fn event_of(text: &str) -> Option<chrono::NaiveDateTime> {
    if let Ok(micros) = text.parse::<i64>() {
        return chrono::DateTime::from_timestamp_micros(micros).map(|at| at.naive_utc());
    }
    chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f").ok()
}
