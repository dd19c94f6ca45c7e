//! The embedded store: an SQLite file, through rusqlite (SQLite bundled).
//! For the demo and for trials; production data lives in the servers.
//!
//! SQLite keeps dates as text. Events are compared through a function
//! registered from Rust that reads ISO 8601 text ('T' or space, with or
//! without fractions) as microseconds, exactly as the servers compare, and
//! yields NULL for text that is no date (SQLite's own `julianday` keeps
//! only milliseconds). Tokens are computed in the worker, as for the
//! servers. SQLite serialises
//! writers itself, so no cross-process lock beyond the file is needed.
//! Calls block the thread briefly; batches are small.

use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};

use super::audit_table::{self, AuditRow, AuditType, Named};
use super::flow::{Sql, Statements};
use super::sql::{self, Dialect, Param, Query, TokenRow};
use super::{
    CatalogTable, Column, ColumnKind, ForeignKey, KeyValue, OnDelete, QueryErrorKind,
    SessionLimits, Store, StoreError, TableSchema, all_not_null, group_catalog, group_runs,
};
use crate::audit_record::{AuditCursor, AuditFilter, AuditRecord, ChainLink, format_time};
use crate::generalise::{DatePart, is_ip_prefix_done};
use crate::pseudonym::TokenShape;
use crate::rules::{Combine, Connection as StoreConnection, Engine, StoreConfig, TableRef};
use crate::step::{ColumnChange, Moment, Step};

/// The SQL function reading date text as microseconds since 1970, or NULL.
const MICROS_FUNCTION: &str = "glemsel_micros";
/// `glemsel_truncate(value, 'year' | 'month', with_time)`: date text
/// truncated to its year or month, as a date (`with_time` 0) or a
/// timestamp, or NULL for text that is no date.
const TRUNCATE_FUNCTION: &str = "glemsel_truncate";
/// `glemsel_ip_prefix_done(text, max_len, redacted)`: the worker's own
/// check, so the SQL and the worker cannot disagree.
const IP_PREFIX_DONE_FUNCTION: &str = "glemsel_ip_prefix_done";

/// Date text truncated to the first instant of its year or month, as
/// `YYYY-MM-DD` or (`with_time`) `YYYY-MM-DD 00:00:00`; `None` for text
/// that is no date (as [`text_micros`] reads it).
pub(crate) fn truncate_text(text: &str, part: &str, with_time: bool) -> Option<String> {
    let micros = text_micros(text)?;
    let date = chrono::DateTime::from_timestamp_micros(micros)?.date_naive();
    let month = match part {
        "year" => 1,
        "month" => chrono::Datelike::month(&date),
        _ => return None,
    };
    let first = chrono::NaiveDate::from_ymd_opt(chrono::Datelike::year(&date), month, 1)?;
    Some(if with_time {
        first.format("%Y-%m-%d 00:00:00").to_string()
    } else {
        first.format("%Y-%m-%d").to_string()
    })
}

/// Date or date-time text as microseconds since 1970 (wall clock), or
/// `None` for text that is no date (including `2016-07-00`).
pub(crate) fn text_micros(text: &str) -> Option<i64> {
    let text = text.trim().trim_end_matches('Z');
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(
            date.and_time(chrono::NaiveTime::MIN)
                .and_utc()
                .timestamp_micros(),
        );
    }
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
    .map(|at| at.and_utc().timestamp_micros())
}

/// The SQLite dialect.
pub(crate) struct Sqlite;

impl Dialect for Sqlite {
    fn quote(&self, ident: &str) -> String {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }

    fn placeholder(&self, index: usize, _param: &Param) -> String {
        format!("?{index}")
    }

    fn event_value(&self, sql: &str) -> String {
        format!("{MICROS_FUNCTION}({sql})")
    }

    /// Events are compared as microseconds; they are read back as such.
    fn event_text(&self, sql: &str, _kind: ColumnKind) -> String {
        sql.to_string()
    }

    fn invalid_event(&self, column_sql: &str, _column: &Column) -> Option<String> {
        Some(format!("{MICROS_FUNCTION}({column_sql}) IS NULL"))
    }

    /// The date reader takes dates and timestamps alike.
    fn to_timestamp(&self, sql: &str) -> String {
        sql.to_string()
    }

    fn greatest(&self, combine: Combine) -> &'static str {
        match combine {
            Combine::Latest => "max",
            Combine::Earliest => "min",
        }
    }

    /// SQLite stores what it is given: a BOOLEAN column may hold 1, 'true',
    /// 'yes' or 'x'. A hold lets a row go only when it is clearly off (0,
    /// or the text 0, false, f, no, n, in any case); NULL and anything
    /// else keep the row, as on the servers, where NULL holds too.
    fn held(&self, column_sql: &str, _column: &Column) -> String {
        format!(
            "(CASE WHEN {column_sql} IS NULL THEN 1 \
             WHEN typeof({column_sql}) IN ('integer', 'real') THEN {column_sql} <> 0 \
             WHEN lower(trim({column_sql})) IN ('0', 'false', 'f', 'no', 'n') THEN 0 \
             ELSE 1 END)"
        )
    }

    /// BEGIN IMMEDIATE already holds the database's write lock.
    fn for_update(&self) -> Option<&'static str> {
        None
    }

    /// GLOB is case-sensitive and matches the whole value, by character.
    fn is_token(&self, q: &mut Query<'_>, column_sql: &str, shape: &TokenShape) -> String {
        let pattern = q.bind(Param::Text(shape.glob()));
        format!("(CAST({column_sql} AS TEXT) GLOB {pattern})")
    }

    fn value_text(&self, column_sql: &str) -> String {
        format!("CAST({column_sql} AS TEXT)")
    }

    /// GLOB cannot say it; the worker's own check, registered, does.
    fn is_ip_prefix(&self, q: &mut Query<'_>, column_sql: &str, change: &ColumnChange) -> String {
        let max_len = change.column.max_chars.map_or(-1, |max| max as i64);
        let max_len = q.bind(Param::Int(max_len));
        let redacted = change.redacted.clone().expect("ip_prefix has its text");
        let redacted = q.bind(Param::Text(redacted));
        format!(
            "({IP_PREFIX_DONE_FUNCTION}(CAST({column_sql} AS TEXT), {max_len}, {redacted}) = 1)"
        )
    }

    fn truncated(&self, column_sql: &str, column: &Column, part: DatePart) -> String {
        let with_time = i32::from(column.kind != ColumnKind::Date);
        format!(
            "{TRUNCATE_FUNCTION}({column_sql}, '{}', {with_time})",
            part.as_str()
        )
    }

    fn char_length(&self, sql: &str) -> String {
        format!("length(CAST({sql} AS TEXT))")
    }

    fn text_prefix(&self, sql: &str, length_sql: &str) -> String {
        format!("substr(CAST({sql} AS TEXT), 1, {length_sql})")
    }

    /// A VALUES list (SQLite caps UNION ALL at 500 terms), renamed.
    fn rows_source(&self, q: &mut Query<'_>, step: &Step, rows: &[TokenRow]) -> String {
        let key = &step.key;
        let mut values = Vec::with_capacity(rows.len());
        for row in rows {
            let mut cells = Vec::new();
            for (i, value) in row.key.iter().enumerate() {
                cells.push(q.bind(Param::Key(value.clone(), key[i].clone())));
            }
            for token in &row.tokens {
                cells.push(q.bind(Param::OptText(token.clone())));
            }
            values.push(format!("({})", cells.join(", ")));
        }
        let tokens = rows.first().map_or(0, |r| r.tokens.len());
        let names: Vec<String> = (0..key.len())
            .map(|i| format!("column{} AS glemsel_k{i}", i + 1))
            .chain((0..tokens).map(|i| format!("column{} AS glemsel_t{i}", key.len() + i + 1)))
            .collect();
        format!(
            "(SELECT {} FROM (VALUES {})) AS glemsel_v",
            names.join(", "),
            values.join(", ")
        )
    }

    fn max_params(&self) -> usize {
        32_766
    }

    fn audit_type(&self, kind: AuditType) -> String {
        match kind {
            AuditType::Seq | AuditType::Count => "INTEGER",
            // Instants as RFC 3339 text with microseconds: they sort as text.
            AuditType::Text(_) | AuditType::Document | AuditType::Hash | AuditType::Instant => {
                "TEXT"
            }
        }
        .into()
    }
}

fn to_value(param: &Param) -> Value {
    match param {
        Param::Text(t) => Value::Text(t.clone()),
        Param::OptText(t) => t.clone().map_or(Value::Null, Value::Text),
        Param::Int(i) => Value::Integer(*i),
        Param::TextList(_) => unreachable!("only PostgreSQL binds arrays"),
        Param::Moment(Moment::Date(d)) => Value::Text(d.format("%Y-%m-%d").to_string()),
        Param::Moment(Moment::Timestamp(t)) => {
            Value::Text(t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
        }
        Param::Moment(Moment::Instant(i)) => Value::Text(format_time(i)),
        Param::Key(KeyValue::Int(i), _) => Value::Integer(*i),
        Param::Key(KeyValue::UInt(u), _) => Value::Text(u.to_string()),
        Param::Key(KeyValue::Text(t), _) => Value::Text(t.clone()),
    }
}

fn column_kind(declared: &str) -> ColumnKind {
    let declared = declared.to_ascii_uppercase();
    if declared == "DATE" {
        ColumnKind::Date
    } else if declared.contains("DATETIME") || declared.contains("TIMESTAMP") {
        ColumnKind::Timestamp
    } else if declared.contains("BOOL") {
        ColumnKind::Boolean
    } else if declared.contains("INT") {
        ColumnKind::Integer
    } else if ["CHAR", "CLOB", "TEXT"]
        .iter()
        .any(|t| declared.contains(t))
    {
        ColumnKind::Text
    } else {
        ColumnKind::Other
    }
}

/// `VARCHAR(80)` → 80. SQLite does not enforce it, but tokens are cut to
/// it so they equal the ones a server database writes.
fn declared_length(declared: &str) -> Option<usize> {
    let open = declared.find('(')?;
    let close = declared[open..].find(')')? + open;
    declared[open + 1..close].trim().parse().ok()
}

/// Runs a blocking SQLite call. On the daemon's multi-threaded runtime the
/// worker hands its other tasks over first, so a long count cannot stall
/// other rules, signals or the watchdog.
fn blocking<T>(call: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(call)
        }
        _ => call(),
    }
}

/// One connection to an SQLite database file.
pub struct SqliteStore {
    name: String,
    conn: Connection,
    audit_table: TableRef,
}

impl SqliteStore {
    pub fn open(config: &StoreConfig, limits: SessionLimits) -> Result<Self, StoreError> {
        let StoreConnection::Path(path) = &config.connection else {
            return Err(StoreError::Config {
                store: config.name.clone(),
                message: "an sqlite store needs path = \"<file>\"".into(),
            });
        };
        let store = Self {
            name: config.name.clone(),
            conn: Self::open_file(&config.name, path)?,
            audit_table: config.audit_table.clone(),
        };
        store
            .conn
            .busy_timeout(limits.lock_timeout)
            .map_err(|e| store.error("session setup", e))?;
        // Deleted and overwritten content is zeroed in the file, not left in
        // free pages until a VACUUM.
        store
            .conn
            .execute_batch("PRAGMA secure_delete = ON")
            .map_err(|e| store.error("session setup", e))?;
        // LIKE in rule fragments compares as on PostgreSQL: case-sensitively.
        store
            .conn
            .execute_batch("PRAGMA case_sensitive_like = ON")
            .map_err(|e| store.error("session setup", e))?;
        store
            .conn
            .create_scalar_function(
                MICROS_FUNCTION,
                1,
                FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
                |ctx| {
                    Ok(match ctx.get_raw(0) {
                        ValueRef::Text(bytes) => {
                            std::str::from_utf8(bytes).ok().and_then(text_micros)
                        }
                        _ => None,
                    })
                },
            )
            .map_err(|e| store.error("session setup", e))?;
        store
            .conn
            .create_scalar_function(
                TRUNCATE_FUNCTION,
                3,
                FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
                |ctx| {
                    let (ValueRef::Text(text), ValueRef::Text(part)) =
                        (ctx.get_raw(0), ctx.get_raw(1))
                    else {
                        return Ok(None);
                    };
                    let with_time = ctx.get::<i64>(2)? != 0;
                    Ok(std::str::from_utf8(text)
                        .ok()
                        .zip(std::str::from_utf8(part).ok())
                        .and_then(|(text, part)| truncate_text(text, part, with_time)))
                },
            )
            .map_err(|e| store.error("session setup", e))?;
        store
            .conn
            .create_scalar_function(
                IP_PREFIX_DONE_FUNCTION,
                3,
                FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
                |ctx| {
                    let text: Option<String> = ctx.get(0)?;
                    let max_len = usize::try_from(ctx.get::<i64>(1)?).ok();
                    let redacted: String = ctx.get(2)?;
                    Ok(text.map(|text| is_ip_prefix_done(&text, max_len, &redacted)))
                },
            )
            .map_err(|e| store.error("session setup", e))?;
        Ok(store)
    }

    /// Opens an existing file only: a mistyped path must not become an empty database.
    fn open_file(store: &str, path: &Path) -> Result<Connection, StoreError> {
        Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|err| StoreError::Connect {
            store: store.to_string(),
            message: format!("{}: {err}", path.display()),
        })
    }

    fn error(&self, context: &str, err: rusqlite::Error) -> StoreError {
        let code = err.sqlite_error_code();
        // rusqlite reports a statement that does not compile (no such table
        // or column, syntax) from prepare as SqlInputError, without a code.
        let compile = matches!(err, rusqlite::Error::SqlInputError { .. })
            || code == Some(rusqlite::ErrorCode::Unknown);
        StoreError::Query {
            store: self.name.clone(),
            context: context.to_string(),
            kind: match code {
                Some(rusqlite::ErrorCode::DatabaseBusy)
                | Some(rusqlite::ErrorCode::DatabaseLocked) => QueryErrorKind::LockTimeout,
                _ if compile => QueryErrorKind::Compile,
                _ => QueryErrorKind::Other,
            },
            code: code.map(|c| format!("{c:?}")),
            message: err.to_string(),
        }
    }

    fn invalid(&self, context: &str, message: String) -> StoreError {
        StoreError::invalid(&self.name, context, message)
    }

    fn rows(&self, context: &str, q: &Query<'_>) -> Result<Vec<Vec<Value>>, StoreError> {
        let run = || -> rusqlite::Result<Vec<Vec<Value>>> {
            let mut statement = self.conn.prepare_cached(&q.sql)?;
            let width = statement.column_count();
            let values: Vec<Value> = q.params.iter().map(to_value).collect();
            let mut rows = statement.query(rusqlite::params_from_iter(values))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(
                    (0..width)
                        .map(|i| row.get::<_, Value>(i))
                        .collect::<rusqlite::Result<_>>()?,
                );
            }
            Ok(out)
        };
        blocking(run).map_err(|e| self.error(context, e))
    }

    fn execute(&self, context: &str, q: &Query<'_>) -> Result<u64, StoreError> {
        let values: Vec<Value> = q.params.iter().map(to_value).collect();
        blocking(|| {
            self.conn
                .prepare_cached(&q.sql)
                .and_then(|mut statement| statement.execute(rusqlite::params_from_iter(values)))
                .map(|n| n as u64)
        })
        .map_err(|e| self.error(context, e))
    }

    fn simple(&self, context: &str, sql: &str) -> Result<(), StoreError> {
        blocking(|| self.conn.execute_batch(sql)).map_err(|e| self.error(context, e))
    }

    fn is_main(&self, table: &TableRef) -> bool {
        table.schema.as_deref().is_none_or(|s| s == "main")
    }
}

fn values_of(row: &[Value]) -> Result<Vec<Option<KeyValue>>, String> {
    row.iter()
        .map(|value| match value {
            Value::Null => Ok(None),
            Value::Integer(i) => Ok(Some(KeyValue::Int(*i))),
            Value::Text(t) => Ok(Some(KeyValue::Text(t.clone()))),
            Value::Real(r) => Ok(Some(KeyValue::Text(r.to_string()))),
            Value::Blob(_) => Err("a BLOB value cannot be walked or pseudonymised".into()),
        })
        .collect()
}

fn int(value: &Value) -> Result<i64, String> {
    match value {
        Value::Integer(i) => Ok(*i),
        other => Err(format!("expected an integer, got {other:?}")),
    }
}

fn text(value: &Value) -> Result<String, String> {
    match value {
        Value::Text(t) => Ok(t.clone()),
        Value::Integer(i) => Ok(i.to_string()),
        other => Err(format!("expected text, got {other:?}")),
    }
}

fn opt_text(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        other => text(other).map(Some),
    }
}

fn utc(value: &Value) -> Result<DateTime<Utc>, String> {
    let text = text(value)?;
    NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.fZ")
        .map(|t| t.and_utc())
        .map_err(|_| format!("{text:?} is not a timestamp"))
}

impl AuditRow for Named<'_, Value> {
    fn int(&self, column: &str) -> Result<i64, String> {
        int(self.get(column)?)
    }
    fn text(&self, column: &str) -> Result<String, String> {
        text(self.get(column)?)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, String> {
        opt_text(self.get(column)?)
    }
    fn instant(&self, column: &str) -> Result<DateTime<Utc>, String> {
        utc(self.get(column)?)
    }
}

fn describe_table(conn: &Connection, name: &str) -> rusqlite::Result<Option<TableSchema>> {
    let exists: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |row| row.get(0),
    )?;
    if exists == 0 {
        return Ok(None);
    }
    let (columns, primary_key) = describe_columns(conn, name)?;
    let (unique_keys, unique_columns) = describe_keys(conn, name, &columns, &primary_key)?;
    let referenced_by = describe_referenced_by(conn, name, &primary_key)?;
    let foreign_key_columns: Vec<String> = conn
        .prepare("SELECT DISTINCT \"from\" FROM pragma_foreign_key_list(?1) ORDER BY 1")?
        .query_map([name], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(TableSchema {
        table: TableRef::new(None, name),
        columns,
        primary_key,
        unique_keys,
        referenced_by,
        unique_columns,
        foreign_key_columns,
    }))
}

/// The table's columns, and its primary key in key order.
fn describe_columns(conn: &Connection, name: &str) -> rusqlite::Result<(Vec<Column>, Vec<String>)> {
    let mut columns = Vec::new();
    let mut primary: Vec<(i64, String)> = Vec::new();
    let mut statement =
        conn.prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid")?;
    let mut rows = statement.query([name])?;
    while let Some(row) = rows.next()? {
        let (column, declared, not_null, pk): (String, String, bool, i64) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        if pk > 0 {
            primary.push((pk, column.clone()));
        }
        columns.push(Column {
            name: column,
            kind: column_kind(&declared),
            max_chars: declared_length(&declared),
            data_type: declared,
            // A primary key column never holds NULL in practice.
            nullable: !not_null && pk == 0,
        });
    }
    primary.sort();
    let primary_key = primary.into_iter().map(|(_, column)| column).collect();
    Ok((columns, primary_key))
}

/// The unique keys besides the primary key, and every column in a unique
/// index (the primary key's among them).
fn describe_keys(
    conn: &Connection,
    name: &str,
    columns: &[Column],
    primary_key: &[String],
) -> rusqlite::Result<(Vec<Vec<String>>, Vec<String>)> {
    let mut unique_keys = Vec::new();
    let mut unique_columns = primary_key.to_vec();
    let indexes: Vec<(String, bool, String)> = conn
        .prepare("SELECT name, partial, origin FROM pragma_index_list(?1) WHERE \"unique\" = 1")?
        .query_map([name], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (index, partial, origin) in indexes {
        let names: Vec<Option<String>> = conn
            .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?
            .query_map([&index], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        unique_columns.extend(names.iter().flatten().cloned());
        // Expression indexes have unnamed parts: no key to walk.
        if let Some(names) = names.into_iter().collect::<Option<Vec<String>>>()
            && !partial
            && origin != "pk"
            && all_not_null(columns, &names)
        {
            unique_keys.push(names);
        }
    }
    unique_columns.sort();
    unique_columns.dedup();
    Ok((unique_keys, unique_columns))
}

/// One column of a foreign key, as `pragma_foreign_key_list` gives it:
/// its position in the key, the child column, the parent column (none
/// for the primary key's) and the ON DELETE action.
type ForeignKeyColumn = (i64, String, Option<String>, String);

/// The foreign keys in every table (this one too) that point here.
/// SQLite enforces foreign keys only where the application turns them
/// on; every declared one is reported, as if it were on.
fn describe_referenced_by(
    conn: &Connection,
    name: &str,
    primary_key: &[String],
) -> rusqlite::Result<Vec<ForeignKey>> {
    let mut referenced_by: Vec<ForeignKey> = Vec::new();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for child in tables {
        let rows: Vec<(i64, ForeignKeyColumn)> = conn
            .prepare(
                "SELECT id, seq, \"from\", \"to\", on_delete FROM pragma_foreign_key_list(?1) \
                 WHERE \"table\" = ?2 ORDER BY id, seq",
            )?
            .query_map([&child, name], |row| {
                Ok((
                    row.get(0)?,
                    (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?),
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (_, parts) in group_runs(rows) {
            let on_delete = OnDelete::from_sql_name(&parts[0].3);
            // A foreign key that names no target columns points at the primary key.
            let (columns, references) = parts
                .into_iter()
                .map(|(position, from, to, _)| {
                    let to = to.unwrap_or_else(|| {
                        primary_key
                            .get(position as usize)
                            .cloned()
                            .unwrap_or_default()
                    });
                    (from, to)
                })
                .unzip();
            referenced_by.push(ForeignKey {
                table: TableRef::new(None, &child),
                columns,
                references,
                on_delete,
            });
        }
    }
    Ok(referenced_by)
}

#[async_trait]
impl Statements for SqliteStore {
    fn dialect(&self) -> &'static dyn Dialect {
        &Sqlite
    }

    async fn compile(&mut self, context: &str, q: &Query<'_>) -> Result<(), StoreError> {
        self.conn
            .prepare(&q.sql)
            .map(|_| ())
            .map_err(|e| self.error(context, e))
    }

    async fn affected(&mut self, context: &str, q: &Query<'_>) -> Result<u64, StoreError> {
        self.execute(context, q)
    }

    async fn numbers(&mut self, context: &str, q: &Query<'_>) -> Result<Vec<u64>, StoreError> {
        let rows = self.rows(context, q)?;
        let row = rows
            .first()
            .ok_or_else(|| self.invalid(context, "no row".into()))?;
        row.iter()
            .map(|v| int(v).map(|n| n as u64))
            .collect::<Result<Vec<u64>, String>>()
            .map_err(|m| self.invalid(context, m))
    }

    /// Keys are read by their values' own types; `columns` is not needed.
    async fn values(
        &mut self,
        context: &str,
        q: &Query<'_>,
        _columns: &[Column],
    ) -> Result<Vec<Vec<Option<KeyValue>>>, StoreError> {
        self.rows(context, q)?
            .iter()
            .map(|row| values_of(row))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|m| self.invalid(context, m))
    }

    fn store_name(&self) -> &str {
        &self.name
    }

    /// `query_only` refuses every write to the file, functions' included.
    async fn read_only(&mut self, on: bool) -> Result<(), StoreError> {
        match on {
            true => self.simple("read-only", "BEGIN; PRAGMA query_only = ON"),
            false => self.simple("read-only", "PRAGMA query_only = OFF; ROLLBACK"),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn sql(&mut self) -> Sql<'_> {
        Sql(self)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    async fn describe(&mut self, table: &TableRef) -> Result<Option<TableSchema>, StoreError> {
        if !self.is_main(table) {
            return Ok(None);
        }
        blocking(|| describe_table(&self.conn, &table.name))
            .map_err(|e| self.error("describe table", e))
    }

    async fn catalog(&mut self) -> Result<Vec<CatalogTable>, StoreError> {
        let read = || -> rusqlite::Result<Vec<(Option<String>, String, String, String)>> {
            self.conn
                .prepare(
                    "SELECT m.name, p.name, p.type FROM sqlite_master m, pragma_table_info(m.name) p \
                     WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite!_%' ESCAPE '!' \
                     ORDER BY m.name, p.cid",
                )?
                .query_map([], |row| Ok((None, row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect()
        };
        blocking(read)
            .map(group_catalog)
            .map_err(|e| self.error("catalog", e))
    }

    async fn copies(
        &mut self,
        table: &TableRef,
        _max_log_days: u64,
    ) -> Result<Vec<String>, StoreError> {
        let triggers: Vec<String> = blocking(|| {
            self.conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1 ORDER BY name")?
                .query_map([&table.name], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(|e| self.error("copies", e))?;
        Ok(if triggers.is_empty() {
            Vec::new()
        } else {
            vec![format!(
                "triggers on {table} ({}) may copy the rows elsewhere before they change; check where they write",
                triggers.join(", ")
            )]
        })
    }

    async fn begin(&mut self) -> Result<(), StoreError> {
        // IMMEDIATE takes the write lock now, so the batch cannot deadlock
        // upgrading from a read lock, and the audit append is serialised.
        self.simple("begin", "BEGIN IMMEDIATE")
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        self.simple("commit", "COMMIT")
    }

    async fn rollback(&mut self) -> Result<(), StoreError> {
        self.simple("rollback", "ROLLBACK")
    }

    async fn ensure_audit_table(&mut self) -> Result<(), StoreError> {
        let create = audit_table::create_table(&Sqlite, &Sqlite.table(&self.audit_table));
        self.simple("create audit table", &create)
    }

    async fn audit_head(&mut self) -> Result<Option<ChainLink>, StoreError> {
        let q = audit_table::head(&Sqlite, &self.audit_table);
        let rows = self.rows("audit head", &q)?;
        rows.first()
            .map(|values| {
                audit_table::link(&Named {
                    columns: &audit_table::HEAD_COLUMNS,
                    values,
                })
            })
            .transpose()
            .map_err(|m| self.invalid("audit head", m))
    }

    async fn audit_tail(&mut self) -> Result<Option<ChainLink>, StoreError> {
        // Inside BEGIN IMMEDIATE this connection already holds the write lock.
        self.audit_head().await
    }

    async fn audit_insert(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
        let q = sql::audit_insert(&Sqlite, &self.audit_table, record);
        self.execute("audit insert", &q).map(|_| ())
    }

    async fn audit_last_run(&mut self, rule_id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let q = sql::audit_last_run(&Sqlite, &self.audit_table, rule_id);
        self.rows("audit last run", &q)?
            .first()
            .map(|row| utc(&row[0]))
            .transpose()
            .map_err(|m| self.invalid("audit last run", m))
    }

    async fn audit_records(
        &mut self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let q = sql::audit_select(&Sqlite, &self.audit_table, after_seq, limit);
        let rows = self.rows("audit read", &q)?;
        audit_table::records(&rows).map_err(|m| self.invalid("audit read", m))
    }

    async fn audit_search(
        &mut self,
        filter: &AuditFilter,
        cursor: AuditCursor,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let q = sql::audit_search(&Sqlite, &self.audit_table, filter, cursor, limit);
        let rows = self.rows("audit search", &q)?;
        audit_table::records(&rows).map_err(|m| self.invalid("audit search", m))
    }

    async fn try_lock(&mut self, _name: &str) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn unlock(&mut self, _name: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_text_reads_to_the_microsecond() {
        let at = |s: &str| text_micros(s);
        assert_eq!(at("1970-01-01"), Some(0));
        assert_eq!(at("1970-01-01 00:00:00.000001"), Some(1));
        assert_eq!(at("1970-01-01T00:00:01"), Some(1_000_000));
        assert_eq!(at("1970-01-01T00:01Z"), Some(60_000_000));
        assert_eq!(at("2016-07-00"), None);
        assert_eq!(at("0000-00-00 00:00:00"), None);
        assert_eq!(at("yesterday"), None);
        assert_eq!(declared_length("VARCHAR(80)"), Some(80));
        assert_eq!(column_kind("datetime"), ColumnKind::Timestamp);
        assert_eq!(column_kind("INTEGER"), ColumnKind::Integer);
    }
}
