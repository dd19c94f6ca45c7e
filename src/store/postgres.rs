//! PostgreSQL, through tokio-postgres.
//!
//! Every placeholder carries an explicit cast, so the parameter types the
//! server infers are exactly the Rust types bound. Key values travel as
//! text and are cast back to the key column's type, which works for any
//! key type the catalog can name. HMAC uses the built-in `sha256`
//! (PostgreSQL 11+), so no extension is needed.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::audit_table::{self, AuditRow, AuditType};
use super::flow::{Sql, Statements};
use super::partitions::{PgBound, pg_bound};
use super::sql::{self, Dialect, LimitForm, Param, Query, TokenRow};
use super::{
    CatalogTable, Column, ColumnKind, ForeignKey, KeyValue, OnDelete, QueryErrorKind,
    SessionLimits, Store, StoreError, TableSchema, Window, connection_url, group_catalog,
    primary_and_unique_keys,
};
use super::{HeldPartition, Partitioning, RangePartition};
use super::{grants, tls};
use crate::audit_record::{AuditCursor, AuditFilter, AuditRecord, ChainLink};
use crate::generalise::{DatePart, ip_prefix_regex};
use crate::pseudonym::TokenShape;
use crate::rules::{Engine, StoreConfig, TableRef};
use crate::step::{ColumnChange, Moment, Step};

/// The PostgreSQL dialect.
pub(crate) struct Postgres;

impl Dialect for Postgres {
    fn quote(&self, ident: &str) -> String {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }

    fn placeholder(&self, index: usize, param: &Param) -> String {
        match param {
            Param::Text(_) | Param::OptText(_) => format!("${index}::text"),
            Param::Int(_) => format!("${index}::int8"),
            Param::TextList(_) => format!("${index}::text[]"),
            Param::Moment(Moment::Date(_)) => format!("${index}::date"),
            Param::Moment(Moment::Timestamp(_)) => format!("${index}::timestamp"),
            Param::Moment(Moment::Instant(_)) => format!("${index}::timestamptz"),
            Param::Key(_, column) => format!("CAST(${index}::text AS {})", column.data_type),
        }
    }

    fn row_values(&self) -> bool {
        true
    }

    fn invalid_event(&self, column_sql: &str, _column: &Column) -> Option<String> {
        Some(format!("NOT isfinite({column_sql})"))
    }

    fn key_select(&self, column_sql: &str, _column: &Column) -> String {
        format!("{column_sql}::text")
    }

    /// `text` drops a `char(n)` column's padding, so a token stored in a
    /// wider column is still recognised. The length, then a pattern without
    /// a bounded repetition: the same test, several times faster.
    fn is_token(&self, q: &mut Query<'_>, column_sql: &str, shape: &TokenShape) -> String {
        let pattern = q.bind(Param::Text(shape.regex_any_length()));
        let length = q.bind(Param::Int(shape.char_len() as i64));
        format!(
            "(char_length(CAST({column_sql} AS text)) = {length} AND CAST({column_sql} AS text) ~ {pattern})"
        )
    }

    fn value_text(&self, column_sql: &str) -> String {
        format!("CAST({column_sql} AS text)")
    }

    fn event_text(&self, sql: &str, kind: ColumnKind) -> String {
        let sql = match kind {
            ColumnKind::TimestampTz => format!("({sql}) AT TIME ZONE 'UTC'"),
            _ => sql.to_string(),
        };
        format!("to_char({sql}, 'YYYY-MM-DD HH24:MI:SS.US')")
    }

    fn is_ip_prefix(&self, q: &mut Query<'_>, column_sql: &str, change: &ColumnChange) -> String {
        let redacted = change.redacted.as_deref().expect("ip_prefix has its text");
        let pattern = q.bind(Param::Text(ip_prefix_regex(redacted, "$")));
        format!("(CAST({column_sql} AS text) ~ {pattern})")
    }

    fn truncated(&self, column_sql: &str, column: &Column, part: DatePart) -> String {
        let truncated = format!("date_trunc('{}', {column_sql})", part.as_str());
        match column.kind {
            ColumnKind::Date => format!("CAST({truncated} AS date)"),
            _ => truncated,
        }
    }

    fn char_length(&self, sql: &str) -> String {
        format!("char_length(CAST({sql} AS text))")
    }

    /// `left` takes an int4; the length is bound as an int8.
    fn text_prefix(&self, sql: &str, length_sql: &str) -> String {
        format!("left(CAST({sql} AS text), CAST({length_sql} AS integer))")
    }

    /// One array per column: any number of rows in four parameters.
    fn rows_source(&self, q: &mut Query<'_>, step: &Step, rows: &[TokenRow]) -> String {
        let key = &step.key;
        let mut arrays = Vec::new();
        let mut names = Vec::new();
        for i in 0..key.len() {
            let values = rows.iter().map(|r| Some(r.key[i].to_string())).collect();
            arrays.push(q.bind(Param::TextList(values)));
            names.push(format!("glemsel_k{i}"));
        }
        let tokens = rows.first().map_or(0, |r| r.tokens.len());
        for i in 0..tokens {
            let values = rows.iter().map(|r| r.tokens[i].clone()).collect();
            arrays.push(q.bind(Param::TextList(values)));
            names.push(format!("glemsel_t{i}"));
        }
        format!(
            "unnest({}) AS glemsel_v({})",
            arrays.join(", "),
            names.join(", ")
        )
    }

    fn source_key(&self, source_sql: &str, column: &Column) -> String {
        format!("CAST({source_sql} AS {})", column.data_type)
    }

    fn max_params(&self) -> usize {
        u16::MAX as usize
    }

    fn audit_type(&self, kind: AuditType) -> String {
        match kind {
            AuditType::Seq | AuditType::Count => "bigint",
            AuditType::Text(_) | AuditType::Document | AuditType::Hash => "text",
            AuditType::Instant => "timestamptz",
        }
        .into()
    }

    fn limit_form(&self) -> LimitForm {
        LimitForm::Ctid
    }
}

/// glemsel never waits inside a transaction for anything but its own
/// statements; a session idle in one that long has lost its worker.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(60);

/// One connection to a PostgreSQL database.
pub struct PostgresStore {
    name: String,
    client: tokio_postgres::Client,
    audit_table: TableRef,
}

type BoxedParam = Box<dyn ToSql + Sync + Send>;

fn to_sql(param: &Param) -> BoxedParam {
    match param {
        Param::Text(t) => Box::new(t.clone()),
        Param::OptText(t) => Box::new(t.clone()),
        Param::Int(i) => Box::new(*i),
        Param::TextList(list) => Box::new(list.clone()),
        Param::Moment(Moment::Date(d)) => Box::new(*d),
        Param::Moment(Moment::Timestamp(t)) => Box::new(*t),
        Param::Moment(Moment::Instant(i)) => Box::new(*i),
        Param::Key(value, _) => Box::new(value.to_string()),
    }
}

/// A 64-bit lock id for a name, shared by every host that uses the name.
fn lock_id(namespace: &str, name: &str) -> i64 {
    let digest = Sha256::digest(format!("glemsel:{namespace}:{name}"));
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Connects as the store's `tls` says: the URL's own `sslmode` is
/// overridden, except that a URL asking for TLS on a store set to
/// `disable` is refused rather than quietly sent in the clear.
async fn open(
    config: &StoreConfig,
    pg: &mut tokio_postgres::Config,
) -> Result<tokio_postgres::Client, StoreError> {
    let failed = |message: String| StoreError::Connect {
        store: config.name.clone(),
        message,
    };
    let Some(tls) = tls::client_config(config)? else {
        if pg.get_ssl_mode() == SslMode::Require {
            return Err(StoreError::Config {
                store: config.name.clone(),
                message: "the URL asks for sslmode=require, but the store has tls = \"disable\"; set tls = \"require\" or \"verify-full\"".into(),
            });
        }
        let (client, connection) = pg
            .connect(NoTls)
            .await
            .map_err(|err| failed(describe_error(&err)))?;
        spawn_connection(config, connection);
        return Ok(client);
    };
    pg.ssl_mode(SslMode::Require);
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
    match pg.connect(connector).await {
        Ok((client, connection)) => {
            spawn_connection(config, connection);
            Ok(client)
        }
        Err(err) => {
            // tokio-postgres names this case only in its message.
            let text = describe_error(&err);
            Err(failed(if text.contains("server does not support TLS") {
                tls::not_offered(config)
            } else {
                tls::explain(config, &err).unwrap_or(text)
            }))
        }
    }
}

/// Drives a connection until it closes; a failure is logged.
fn spawn_connection<S, T>(config: &StoreConfig, connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let store_name = config.name.clone();
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(store = %store_name, error = %describe_error(&err), "connection closed");
        }
    });
}

impl PostgresStore {
    pub async fn connect(config: &StoreConfig, limits: SessionLimits) -> Result<Self, StoreError> {
        let url = connection_url(config)?;
        let mut pg: tokio_postgres::Config = url.parse().map_err(|_| StoreError::Config {
            store: config.name.clone(),
            message: "the connection string is not a valid PostgreSQL URL or key=value string"
                .into(),
        })?;
        pg.application_name("glemsel");
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(10));
        }
        // A peer that vanished mid-query is noticed instead of waited on.
        pg.keepalives(true).keepalives_idle(Duration::from_secs(60));
        let client = open(config, &mut pg).await?;
        let store = Self {
            name: config.name.clone(),
            client,
            audit_table: config.audit_table.clone(),
        };
        // Sessions run in UTC so timestamptz values read and bound mean the
        // same instants everywhere; a batch that meets a row lock gives up
        // quickly instead of stalling the application; no statement, and no
        // transaction left open by a stuck worker, holds a snapshot (and so
        // VACUUM) back for hours.
        let setup = format!(
            "SET TIME ZONE 'UTC'; SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'; \
             SET idle_in_transaction_session_timeout = '{}ms'",
            limits.lock_timeout.as_millis(),
            limits.statement_timeout.as_millis(),
            IDLE_IN_TRANSACTION.as_millis()
        );
        store
            .client
            .batch_execute(&setup)
            .await
            .map_err(|e| store.error("session setup", e))?;
        // Bound parameters hold row keys and tokens (never the HMAC key, which
        // stays in the worker). Keep them out of the server log where this
        // role may say so (superusers); elsewhere nothing secret is lost.
        if let Err(err) = store
            .client
            .batch_execute(
                "SET log_parameter_max_length = 0; SET log_parameter_max_length_on_error = 0",
            )
            .await
        {
            tracing::debug!(store = %store.name, error = %describe_error(&err), "cannot turn off parameter logging for this session");
        }
        Ok(store)
    }

    fn error(&self, context: &str, err: tokio_postgres::Error) -> StoreError {
        let code = err.code().map(|c| c.code().to_string());
        StoreError::Query {
            store: self.name.clone(),
            context: context.to_string(),
            kind: match code.as_deref() {
                // Class 42: syntax error or access rule violation.
                Some(c) if c.starts_with("42") => QueryErrorKind::Compile,
                Some("55P03") | Some("40P01") => QueryErrorKind::LockTimeout,
                _ => QueryErrorKind::Other,
            },
            code,
            message: describe_error(&err),
        }
    }

    /// A result the code cannot read.
    fn invalid(&self, context: &str, message: String) -> StoreError {
        StoreError::invalid(&self.name, context, message)
    }

    async fn query(&self, context: &str, q: &Query<'_>) -> Result<Vec<Row>, StoreError> {
        let boxed: Vec<BoxedParam> = q.params.iter().map(to_sql).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = boxed
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        self.client
            .query(&q.sql, &refs)
            .await
            .map_err(|e| self.error(context, e))
    }

    async fn execute(&self, context: &str, q: &Query<'_>) -> Result<u64, StoreError> {
        let boxed: Vec<BoxedParam> = q.params.iter().map(to_sql).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = boxed
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        self.client
            .execute(&q.sql, &refs)
            .await
            .map_err(|e| self.error(context, e))
    }

    async fn simple(&self, context: &str, sql: &str) -> Result<(), StoreError> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| self.error(context, e))
    }
}

/// The message of an error without its DETAIL, which can quote row values.
/// The server's error, as logs and reports may show it. A message can quote
/// a row's value (`invalid input syntax for type integer: "jens@..."`), so
/// it is given only for classes whose messages name things, not values:
/// 42 (a rule that does not compile), 25 and 40 (transaction state), 53
/// (resources), 55 and 57 (locks, timeouts, shutdown). Other errors give
/// their SQLSTATE and the names of the table, column and constraint.
fn describe_error(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            if ["42", "25", "40", "53", "55", "57"].contains(&&code[..2]) {
                return format!("{}: {} (SQLSTATE {code})", db.severity(), db.message());
            }
            let names: Vec<String> = [
                ("table", db.table()),
                ("column", db.column()),
                ("constraint", db.constraint()),
                ("type", db.datatype()),
            ]
            .into_iter()
            .filter_map(|(what, name)| name.map(|n| format!("{what} {n}")))
            .collect();
            let names = if names.is_empty() {
                String::new()
            } else {
                format!(" ({})", names.join(", "))
            };
            format!(
                "{}: SQLSTATE {code}{names}; the server's message is withheld because it can quote row values",
                db.severity()
            )
        }
        None => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(inner) = source {
                text = format!("{text}: {inner}");
                source = inner.source();
            }
            text
        }
    }
}

fn column_kind(base_type: &str) -> ColumnKind {
    match base_type {
        "text" | "varchar" | "bpchar" | "citext" => ColumnKind::Text,
        "date" => ColumnKind::Date,
        "timestamp" => ColumnKind::Timestamp,
        "timestamptz" => ColumnKind::TimestampTz,
        "bool" => ColumnKind::Boolean,
        "int2" | "int4" | "int8" => ColumnKind::Integer,
        _ => ColumnKind::Other,
    }
}

/// A key read as text (see `key_select`). Integer keys are typed, so key
/// ranges in the audit trail read the same as on the other engines.
fn values_of(row: &Row, columns: &[Column]) -> Result<Vec<Option<KeyValue>>, String> {
    columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let Some(text) = get::<Option<String>>(row, i)? else {
                return Ok(None);
            };
            Ok(Some(match (column.kind, text.parse::<i64>()) {
                (ColumnKind::Integer, Ok(n)) => KeyValue::Int(n),
                _ => KeyValue::Text(text),
            }))
        })
        .collect()
}

/// Reads one value; a type the code did not expect is an error, not a panic.
fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, String> {
    row.try_get(index)
        .map_err(|err| format!("column {index}: {err}"))
}

impl AuditRow for Row {
    fn int(&self, column: &str) -> Result<i64, String> {
        get_named(self, column)
    }
    fn text(&self, column: &str) -> Result<String, String> {
        get_named(self, column)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, String> {
        get_named(self, column)
    }
    fn instant(&self, column: &str) -> Result<DateTime<Utc>, String> {
        get_named(self, column)
    }
}

/// Reads one value by column name, as [`get`] does by position.
fn get_named<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    column: &str,
) -> Result<T, String> {
    row.try_get(column)
        .map_err(|err| format!("column {column}: {err}"))
}

/// The parts of [`Store::describe`], one catalog query each.
impl PostgresStore {
    /// A domain's column is described by its base type, so a varchar
    /// domain still has a length.
    async fn describe_columns(&self, oid: u32) -> Result<Vec<Column>, StoreError> {
        Ok(self
            .client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), b.typname::text, a.attnotnull, \
                 CASE WHEN b.typname IN ('varchar', 'bpchar') AND m.typmod > 4 THEN m.typmod - 4 END \
                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                 JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END \
                 CROSS JOIN LATERAL (SELECT CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod) m \
                 WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&oid],
            )
            .await
            .map_err(|e| self.error("describe columns", e))?
            .iter()
            .map(|row| Column {
                name: row.get(0),
                data_type: row.get(1),
                kind: column_kind(row.get(2)),
                nullable: !row.get::<_, bool>(3),
                max_chars: row.get::<_, Option<i32>>(4).map(|n| n as usize),
            })
            .collect())
    }

    /// The primary key and the other unique keys; partial and expression
    /// indexes key no walk.
    async fn describe_keys(
        &self,
        oid: u32,
        columns: &[Column],
    ) -> Result<(Vec<String>, Vec<Vec<String>>), StoreError> {
        let keys = self
            .client
            .query(
                "SELECT i.indisprimary, array_agg(a.attname::text ORDER BY k.ord) \
                 FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                 WHERE i.indrelid = $1::oid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL \
                 GROUP BY i.indexrelid, i.indisprimary ORDER BY i.indisprimary DESC, i.indexrelid",
                &[&oid],
            )
            .await
            .map_err(|e| self.error("describe keys", e))?;
        let indexes = keys.iter().map(|row| (row.get(0), row.get(1)));
        Ok(primary_and_unique_keys(columns, indexes))
    }

    /// The foreign keys in other tables (or this one) that point here.
    async fn describe_referenced_by(&self, oid: u32) -> Result<Vec<ForeignKey>, StoreError> {
        Ok(self
            .client
            .query(
                "SELECT n.nspname::text, c.relname::text, con.confdeltype::text, \
                 ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o) \
                       JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o), \
                 ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o) \
                       JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o) \
                 FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE con.contype = 'f' AND con.confrelid = $1::oid ORDER BY 1, 2, con.conname",
                &[&oid],
            )
            .await
            .map_err(|e| self.error("describe foreign keys", e))?
            .iter()
            .map(|row| ForeignKey {
                table: TableRef::new(Some(&row.get::<_, String>(0)), &row.get::<_, String>(1)),
                on_delete: match row.get::<_, String>(2).as_str() {
                    "c" => OnDelete::Cascade,
                    "n" => OnDelete::SetNull,
                    "d" => OnDelete::SetDefault,
                    "r" => OnDelete::Restrict,
                    _ => OnDelete::NoAction,
                },
                columns: row.get(3),
                references: row.get(4),
            })
            .collect())
    }

    /// The names a query about table `oid` returns, one a row.
    async fn column_names(
        &self,
        context: &str,
        query: &str,
        oid: u32,
    ) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client
            .query(query, &[&oid])
            .await
            .map_err(|e| self.error(context, e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

#[async_trait]
impl Statements for PostgresStore {
    fn dialect(&self) -> &'static dyn Dialect {
        &Postgres
    }

    async fn compile(&mut self, context: &str, q: &Query<'_>) -> Result<(), StoreError> {
        self.client
            .prepare(&q.sql)
            .await
            .map(|_| ())
            .map_err(|e| self.error(context, e))
    }

    async fn affected(&mut self, context: &str, q: &Query<'_>) -> Result<u64, StoreError> {
        self.execute(context, q).await
    }

    async fn numbers(&mut self, context: &str, q: &Query<'_>) -> Result<Vec<u64>, StoreError> {
        let rows = self.query(context, q).await?;
        let row = rows
            .first()
            .ok_or_else(|| self.invalid(context, "no row".into()))?;
        (0..row.len())
            .map(|i| get::<i64>(row, i).map(|n| n as u64))
            .collect::<Result<Vec<u64>, String>>()
            .map_err(|m| self.invalid(context, m))
    }

    async fn values(
        &mut self,
        context: &str,
        q: &Query<'_>,
        columns: &[Column],
    ) -> Result<Vec<Vec<Option<KeyValue>>>, StoreError> {
        self.query(context, q)
            .await?
            .iter()
            .map(|row| values_of(row, columns))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|m| self.invalid(context, m))
    }

    fn store_name(&self) -> &str {
        &self.name
    }

    async fn read_only(&mut self, on: bool) -> Result<(), StoreError> {
        match on {
            true => self.simple("read-only", "BEGIN READ ONLY").await,
            false => self.simple("read-only", "ROLLBACK").await,
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn sql(&mut self) -> Sql<'_> {
        Sql(self)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    async fn describe(&mut self, table: &TableRef) -> Result<Option<TableSchema>, StoreError> {
        let found = self
            .client
            .query_opt(
                "SELECT c.oid, n.nspname::text, c.relname::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relname = $1::text AND c.relkind IN ('r', 'p') \
                 AND (($2::text IS NULL AND pg_table_is_visible(c.oid)) OR n.nspname = $2::text)",
                &[&table.name, &table.schema],
            )
            .await
            .map_err(|e| self.error("describe table", e))?;
        let Some(found) = found else {
            return Ok(None);
        };
        let oid: u32 = found.get(0);
        let columns = self.describe_columns(oid).await?;
        let (primary_key, unique_keys) = self.describe_keys(oid, &columns).await?;
        let referenced_by = self.describe_referenced_by(oid).await?;
        let unique_columns = self
            .column_names(
                "describe unique indexes",
                "SELECT DISTINCT a.attname::text FROM pg_index i \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[]) \
                 WHERE i.indrelid = $1::oid AND i.indisunique ORDER BY 1",
                oid,
            )
            .await?;
        let foreign_key_columns = self
            .column_names(
                "describe foreign keys",
                "SELECT DISTINCT a.attname::text FROM pg_constraint con \
                 JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = ANY(con.conkey) \
                 WHERE con.contype = 'f' AND con.conrelid = $1::oid ORDER BY 1",
                oid,
            )
            .await?;
        Ok(Some(TableSchema {
            table: TableRef::new(Some(&found.get::<_, String>(1)), &found.get::<_, String>(2)),
            columns,
            primary_key,
            unique_keys,
            referenced_by,
            unique_columns,
            foreign_key_columns,
        }))
    }

    async fn catalog(&mut self) -> Result<Vec<CatalogTable>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
                 AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
                 ORDER BY 1, 2, a.attnum",
                &[],
            )
            .await
            .map_err(|e| self.error("catalog", e))?;
        Ok(group_catalog(rows.iter().map(|row| {
            (
                Some(row.get::<_, String>(0)),
                row.get(1),
                row.get(2),
                row.get(3),
            )
        })))
    }

    async fn estimate_rows(
        &mut self,
        step: &Step,
        window: &Window,
    ) -> Result<Option<u64>, StoreError> {
        let plan = self
            .query("estimate", &sql::window_rows(&Postgres, step, window))
            .await?;
        // The top node's line: `Index Only Scan using ... (cost=... rows=N width=...)`.
        let top: String = plan
            .first()
            .map(|row| get(row, 0))
            .transpose()
            .map_err(|m| self.invalid("estimate", m))?
            .unwrap_or_default();
        let rows = top
            .split("rows=")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse().ok());
        match rows {
            Some(rows) => Ok(Some(rows)),
            None => Err(self.invalid("estimate", format!("no row estimate in {top:?}"))),
        }
    }

    async fn refusals(&mut self) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        let first = self
            .client
            .query_one("SELECT pg_is_in_recovery(), pg_backend_pid()", &[])
            .await
            .map_err(|e| self.error("server role", e))?;
        if first.get::<_, bool>(0) {
            found.push(
                "the server is a read-only replica (pg_is_in_recovery() is true); point the store at the primary"
                    .to_string(),
            );
        }
        let second = self
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(|e| self.error("server role", e))?;
        if first.get::<_, i32>(1) != second.get::<_, i32>(0) {
            found.push(
                "two transactions ran in different server sessions, so a transaction-pooling proxy sits in between; glemsel's per-rule locks are session locks: connect directly or through session pooling"
                    .to_string(),
            );
        }
        Ok(found)
    }

    async fn copies(
        &mut self,
        table: &TableRef,
        _max_log_days: u64,
    ) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        let qualified = Postgres.table(table);
        let row = self
            .client
            .query_one(
                "SELECT current_setting('archive_mode'), \
                 (SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical'), \
                 ARRAY(SELECT pubname::text FROM pg_publication_tables p \
                       WHERE format('%I.%I', p.schemaname, p.tablename)::regclass = $1::text::regclass ORDER BY 1), \
                 ARRAY(SELECT tgname::text FROM pg_trigger WHERE tgrelid = $1::text::regclass AND NOT tgisinternal ORDER BY 1)",
                &[&qualified],
            )
            .await
            .map_err(|e| self.error("copies", e))?;
        let archive: String = row.get(0);
        if archive != "off" {
            found.push(format!(
                "archive_mode = {archive}: the WAL archive keeps the old row versions for as long as archives are kept; expire archived WAL (and base backups) within the retention you promise"
            ));
        }
        let slots: i64 = row.get(1);
        if slots > 0 {
            found.push(format!(
                "{slots} logical replication slot(s): their consumers receive the rows as they were changed and keep what they keep; make sure they forget them too"
            ));
        }
        let publications: Vec<String> = row.get(2);
        if !publications.is_empty() {
            found.push(format!(
                "{table} is published ({}): subscribers receive the changes; run the same rules there",
                publications.join(", ")
            ));
        }
        let triggers: Vec<String> = row.get(3);
        if !triggers.is_empty() {
            found.push(format!(
                "triggers on {table} ({}) may copy the rows elsewhere before they change; check where they write",
                triggers.join(", ")
            ));
        }
        Ok(found)
    }

    async fn vacuum(&mut self, table: &TableRef) -> Result<(), StoreError> {
        // A role that may not VACUUM the table gets a warning from the
        // server, not an error: asked first, so the run does not report
        // old row versions reclaimed that are still there.
        if !self.may_vacuum(table).await? {
            return Err(StoreError::Query {
                store: self.name.clone(),
                context: "vacuum".into(),
                code: Some("42501".into()),
                message: format!(
                    "the role may not VACUUM {table}: PostgreSQL lets only the table's owner (from 17, also a role granted MAINTAIN)"
                ),
                kind: QueryErrorKind::Other,
            });
        }
        let sql = format!("VACUUM {}", Postgres.table(table));
        self.simple("vacuum", &sql).await
    }

    async fn may_vacuum(&mut self, table: &TableRef) -> Result<bool, StoreError> {
        // CASE keeps has_table_privilege(..., 'MAINTAIN') from servers
        // before 17, which do not know the privilege.
        let row = self
            .client
            .query_opt(
                "SELECT pg_has_role(c.relowner, 'USAGE') OR CASE \
                 WHEN current_setting('server_version_num')::int >= 170000 \
                 THEN has_table_privilege(c.oid, 'MAINTAIN') ELSE false END \
                 FROM pg_class c WHERE c.oid = to_regclass($1::text)",
                &[&Postgres.table(table)],
            )
            .await
            .map_err(|e| self.error("vacuum privilege", e))?;
        Ok(row.is_some_and(|row| row.get(0)))
    }

    fn keeps_old_versions(&self) -> bool {
        true
    }

    async fn range_partitions(
        &mut self,
        table: &TableRef,
        event: &Column,
    ) -> Result<Partitioning, StoreError> {
        let name = Postgres.table(table);
        // partattrs[0] is 0 for an expression, whose attname is NULL.
        let key = self
            .client
            .query_opt(
                "SELECT p.partstrat::text, p.partnatts::int, a.attname::text, pg_get_partkeydef(p.partrelid) \
                 FROM pg_partitioned_table p LEFT JOIN pg_attribute a \
                 ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] \
                 WHERE p.partrelid = to_regclass($1::text)",
                &[&name],
            )
            .await
            .map_err(|e| self.error("partitions", e))?;
        let Some(key) = key else {
            return Ok(Partitioning::None);
        };
        let (strategy, columns, column): (String, i32, Option<String>) =
            (key.get(0), key.get(1), key.get(2));
        if strategy != "r" || columns != 1 || column.as_deref() != Some(event.name.as_str()) {
            return Ok(Partitioning::Other(key.get(3)));
        }
        let rows = self
            .client
            .query(
                "SELECT n.nspname::text, c.relname::text, c.relkind = 'r', pg_get_expr(c.relpartbound, c.oid) \
                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE i.inhparent = to_regclass($1::text) ORDER BY 1, 2",
                &[&name],
            )
            .await
            .map_err(|e| self.error("partitions", e))?;
        let partitions = rows
            .iter()
            .map(|row| {
                let bounds: String = row.get(3);
                let (from, to, default) = match pg_bound(&bounds, event.kind) {
                    PgBound::Default => (None, None, true),
                    PgBound::Range(from, to) => (from, to, false),
                    PgBound::Unreadable => (None, None, false),
                };
                RangePartition {
                    name: TableRef::new(Some(row.get(0)), row.get(1)),
                    bounds,
                    from,
                    to,
                    default,
                    nested: !row.get::<_, bool>(2),
                }
            })
            .collect();
        Ok(Partitioning::Range(partitions))
    }

    async fn may_drop_partitions(&mut self, table: &TableRef) -> Result<bool, StoreError> {
        // DETACH needs the parent's owner, DROP the partition's.
        let row = self
            .client
            .query_one(
                "SELECT coalesce(bool_and(pg_has_role(c.relowner, 'USAGE')), false) FROM pg_class c \
                 WHERE c.oid = to_regclass($1::text) \
                 OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass($1::text))",
                &[&Postgres.table(table)],
            )
            .await
            .map_err(|e| self.error("partition privilege", e))?;
        Ok(row.get(0))
    }

    async fn count_partition(
        &mut self,
        _table: &TableRef,
        partition: &RangePartition,
    ) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM {}", Postgres.table(&partition.name));
        let row = self
            .client
            .query_one(&sql, &[])
            .await
            .map_err(|e| self.error("partition count", e))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn take_out_partition(
        &mut self,
        table: &TableRef,
        partition: &RangePartition,
        held: &TableRef,
    ) -> Result<Option<HeldPartition>, StoreError> {
        let parent = Postgres.table(table);
        let child = Postgres.table(&partition.name);
        // The parent first, as every query of the application locks it:
        // no deadlock, and no writer slips a row in between. lock_timeout
        // bounds the wait; a busy table is left for next run. The lock is
        // held for the catalog change only: the count comes after, on the
        // detached table, which no query of the application reaches.
        self.simple(
            "partition lock",
            &format!("LOCK TABLE {parent} IN ACCESS EXCLUSIVE MODE"),
        )
        .await?;
        let found = self
            .client
            .query_opt(
                "SELECT pg_get_expr(c.relpartbound, c.oid), to_regclass($1::text)::oid::int8 FROM pg_inherits i \
                 JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = to_regclass($1::text) AND c.oid = to_regclass($2::text)",
                &[&parent, &child],
            )
            .await
            .map_err(|e| self.error("partition bounds", e))?;
        let Some(found) = found.filter(|row| row.get::<_, String>(0) == partition.bounds) else {
            return Ok(None);
        };
        // The mark tells the next run what the table is, should this one
        // stop before the drop; it commits with the detach.
        let mark = HeldMark {
            parent: found.get(1),
            partition: partition.name.to_string(),
            bounds: partition.bounds.clone(),
        };
        self.simple(
            "partition detach",
            &format!(
                "ALTER TABLE {parent} DETACH PARTITION {child}; COMMENT ON TABLE {} IS {}",
                Postgres.table(held),
                escaped_literal(&mark.comment())
            ),
        )
        .await?;
        Ok(Some(HeldPartition {
            held: held.clone(),
            partition: mark.partition,
            bounds: mark.bounds,
            audited: false,
        }))
    }

    async fn count_held(&mut self, held: &TableRef) -> Result<u64, StoreError> {
        let name = Postgres.table(held);
        self.simple(
            "held partition lock",
            &format!("LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE"),
        )
        .await?;
        let row = self
            .client
            .query_one(&format!("SELECT count(*) FROM {name}"), &[])
            .await
            .map_err(|e| self.error("held partition count", e))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn drop_held(&mut self, held: &TableRef) -> Result<(), StoreError> {
        self.simple(
            "held partition drop",
            &format!("DROP TABLE {}", Postgres.table(held)),
        )
        .await
    }

    async fn held_partitions(
        &mut self,
        table: &TableRef,
        _audited: &str,
    ) -> Result<Vec<HeldPartition>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT n.nspname::text, c.relname::text, d.description, to_regclass($1::text)::oid::int8 \
                 FROM pg_description d JOIN pg_class c ON c.oid = d.objoid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE d.classoid = 'pg_class'::regclass AND d.objsubid = 0 AND c.relkind = 'r' \
                 AND NOT c.relispartition AND d.description LIKE $2 ORDER BY 1, 2",
                &[&Postgres.table(table), &format!("{}%", HeldMark::PREFIX)],
            )
            .await
            .map_err(|e| self.error("held partitions", e))?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let mark = HeldMark::read(&row.get::<_, String>(2))?;
                (Some(mark.parent) == row.get::<_, Option<i64>>(3)).then(|| HeldPartition {
                    held: TableRef::new(Some(row.get(0)), row.get(1)),
                    partition: mark.partition,
                    bounds: mark.bounds,
                    audited: false,
                })
            })
            .collect())
    }

    async fn server_time(&mut self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self
            .client
            .query_one("SELECT clock_timestamp()", &[])
            .await
            .map_err(|e| self.error("server clock", e))?;
        Ok(Some(row.get(0)))
    }

    async fn load(&mut self) -> Result<Option<u64>, StoreError> {
        // Every glemsel session says so in application_name: other workers
        // pause by the same limit, and must not hold each other up.
        // Without pg_read_all_stats (pg_monitor) other roles' sessions show
        // no state: the count would be too low, and must not be believed.
        let row = self
            .client
            .query_one(
                "SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
                        (SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name <> 'glemsel')",
                &[],
            )
            .await
            .map_err(|e| self.error("server load", e))?;
        if !row.get::<_, bool>(0) {
            return Err(StoreError::Config {
                store: self.name.clone(),
                message: "this role may not see other roles' sessions; grant it pg_monitor".into(),
            });
        }
        Ok(Some(row.get::<_, i64>(1).max(0) as u64))
    }

    async fn replica_lag(&mut self) -> Result<Option<Duration>, StoreError> {
        // An idle primary sends nothing to replay, so the time since the
        // last replayed transaction is no lag when all that came was
        // replayed; a receiver that is not streaming cannot tell.
        let row = self
            .client
            .query_one(
                "SELECT pg_is_in_recovery() AND coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false),
                        CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                             ELSE extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 END",
                &[],
            )
            .await
            .map_err(|e| self.error("replica lag", e))?;
        let streaming: bool = row.get(0);
        let lag: Option<f64> = row.get(1);
        Ok(lag
            .filter(|_| streaming)
            .map(|lag| Duration::from_secs_f64(lag.max(0.0))))
    }

    async fn tls_version(&mut self) -> Result<Option<String>, StoreError> {
        let row = self
            .client
            .query_opt(
                "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl",
                &[],
            )
            .await
            .map_err(|e| self.error("TLS version", e))?;
        Ok(row.and_then(|row| row.get(0)))
    }

    async fn audit_overreach(&mut self) -> Result<Vec<String>, StoreError> {
        let row = self
            .client
            .query_opt(
                "SELECT has_any_column_privilege(c.oid, 'UPDATE'), has_table_privilege(c.oid, 'DELETE'), \
                 has_table_privilege(c.oid, 'TRUNCATE'), pg_has_role(c.relowner, 'MEMBER'), \
                 (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) \
                 FROM pg_class c WHERE c.oid = to_regclass($1::text)",
                &[&Postgres.table(&self.audit_table)],
            )
            .await
            .map_err(|e| self.error("audit privileges", e))?;
        let Some(row) = row else {
            return Ok(Vec::new());
        };
        let found = [
            (4, "is a superuser (no privilege binds it)"),
            (
                3,
                "owns the table (an owner may grant itself any right, or drop it)",
            ),
            (0, "may UPDATE rows"),
            (1, "may DELETE rows"),
            (2, "may TRUNCATE the table"),
        ];
        Ok(found
            .into_iter()
            .filter(|(column, _)| row.get::<_, Option<bool>>(*column) == Some(true))
            .map(|(_, what)| what.to_string())
            .collect())
    }

    async fn grants(
        &mut self,
        needs: &grants::Needs,
        role: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut resolved = std::collections::BTreeMap::new();
        for table in needs.tables.keys() {
            let schema = self.describe(table).await?;
            resolved.insert(table.clone(), schema.map_or(table.clone(), |s| s.table));
        }
        let needs = needs.resolved(|table| resolved[table].clone());
        let names = self
            .client
            .query_one(
                "SELECT current_database()::text, current_schema()::text, \
                 current_setting('server_version_num')::int",
                &[],
            )
            .await
            .map_err(|e| self.error("grants", e))?;
        let (database, schema): (String, Option<String>) = (names.get(0), names.get(1));
        let version: i32 = names.get(2);
        let audit_table = self.audit_table.clone();
        let audit = match self.describe(&audit_table).await? {
            Some(found) => found.table,
            None => TableRef {
                schema: audit_table.schema.clone().or(schema),
                name: audit_table.name.clone(),
            },
        };
        let syntax = grants::GrantSyntax {
            dialect: &Postgres,
            grantee: Postgres.quote(role),
            lock_needs_update: true,
            vacuum: if version >= 170000 {
                grants::VacuumRight::Grant("MAINTAIN")
            } else {
                grants::VacuumRight::OwnerOnly
            },
        };
        let mut lines = vec![
            format!(
                "-- Run as the tables' owner or a superuser, in database {database}. The role must exist:"
            ),
            format!("--   CREATE ROLE {} LOGIN PASSWORD '...';", syntax.grantee),
            "-- Advisory locks, session settings and the catalogs need no grant.".to_string(),
            format!(
                "GRANT CONNECT ON DATABASE {} TO {};",
                Postgres.quote(&database),
                syntax.grantee
            ),
        ];
        let schemas: std::collections::BTreeSet<&String> = needs
            .tables
            .keys()
            .chain([&audit])
            .filter_map(|t| t.schema.as_ref())
            .collect();
        if needs.watches_load || needs.watches_lag {
            lines.push("-- max_load and max_lag: other roles' sessions and the replicas' WAL receivers are".into());
            lines.push("-- visible only to pg_monitor; roles are the cluster's, so the replicas have it too.".into());
            lines.push(format!("GRANT pg_monitor TO {};", syntax.grantee));
        }
        for schema in schemas {
            lines.push(format!(
                "GRANT USAGE ON SCHEMA {} TO {};",
                Postgres.quote(schema),
                syntax.grantee
            ));
        }
        lines.extend(syntax.table_grants(&needs));
        lines.extend(syntax.audit_grants(
            &audit,
            &audit_table::create_table(&Postgres, &Postgres.table(&audit)),
        ));
        Ok(Some(lines))
    }

    async fn begin(&mut self) -> Result<(), StoreError> {
        self.simple("begin", "BEGIN").await
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        self.simple("commit", "COMMIT").await
    }

    async fn rollback(&mut self) -> Result<(), StoreError> {
        self.simple("rollback", "ROLLBACK").await
    }

    async fn ensure_audit_table(&mut self) -> Result<(), StoreError> {
        let table = Postgres.table(&self.audit_table);
        let exists: bool = self
            .client
            .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&table])
            .await
            .map_err(|e| self.error("audit table", e))?
            .get(0);
        if exists {
            return Ok(());
        }
        self.simple(
            "create audit table",
            &audit_table::create_table(&Postgres, &table),
        )
        .await
    }

    async fn audit_head(&mut self) -> Result<Option<ChainLink>, StoreError> {
        let q = audit_table::head(&Postgres, &self.audit_table);
        let rows = self.query("audit head", &q).await?;
        rows.first()
            .map(audit_table::link)
            .transpose()
            .map_err(|m| self.invalid("audit head", m))
    }

    async fn audit_tail(&mut self) -> Result<Option<ChainLink>, StoreError> {
        // A transaction-scoped advisory lock serialises appenders (other
        // rules, other hosts) until this transaction ends; it needs no
        // privilege beyond INSERT and SELECT on the audit table. Its id is
        // the table's oid, so every spelling of the name shares it.
        self.client
            .execute(
                "SELECT pg_advisory_xact_lock((x'676c656d'::int8 << 32) | to_regclass($1::text)::oid::int8)",
                &[&Postgres.table(&self.audit_table)],
            )
            .await
            .map_err(|e| self.error("audit lock", e))?;
        self.audit_head().await
    }

    async fn audit_insert(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
        let q = sql::audit_insert(&Postgres, &self.audit_table, record);
        self.execute("audit insert", &q).await.map(|_| ())
    }

    async fn audit_last_run(&mut self, rule_id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let q = sql::audit_last_run(&Postgres, &self.audit_table, rule_id);
        let rows = self.query("audit last run", &q).await?;
        rows.first()
            .map(|row| get::<DateTime<Utc>>(row, 0))
            .transpose()
            .map_err(|m| self.invalid("audit last run", m))
    }

    async fn audit_records(
        &mut self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let q = sql::audit_select(&Postgres, &self.audit_table, after_seq, limit);
        self.query("audit read", &q)
            .await?
            .iter()
            .map(|row| audit_table::record(row).map_err(|m| self.invalid("audit read", m)))
            .collect()
    }

    async fn audit_search(
        &mut self,
        filter: &AuditFilter,
        cursor: AuditCursor,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let q = sql::audit_search(&Postgres, &self.audit_table, filter, cursor, limit);
        self.query("audit search", &q)
            .await?
            .iter()
            .map(|row| audit_table::record(row).map_err(|m| self.invalid("audit search", m)))
            .collect()
    }

    async fn try_lock(&mut self, name: &str) -> Result<bool, StoreError> {
        let row = self
            .client
            .query_one(
                "SELECT pg_try_advisory_lock($1::int8)",
                &[&lock_id("rule", name)],
            )
            .await
            .map_err(|e| self.error("rule lock", e))?;
        Ok(row.get(0))
    }

    async fn unlock(&mut self, name: &str) -> Result<(), StoreError> {
        self.client
            .execute(
                "SELECT pg_advisory_unlock($1::int8)",
                &[&lock_id("rule", name)],
            )
            .await
            .map_err(|e| self.error("rule unlock", e))
            .map(|_| ())
    }
}

/// The comment a detached partition carries until it is dropped: which
/// table it came from (by oid, so no spelling of the name misleads), its
/// name and its bounds, for the audit row of the run that finishes it.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct HeldMark {
    parent: i64,
    partition: String,
    bounds: String,
}

impl HeldMark {
    const PREFIX: &'static str = "glemsel: detached to be dropped whole; ";

    fn comment(&self) -> String {
        format!(
            "{}{}",
            Self::PREFIX,
            serde_json::to_string(self).expect("plain data")
        )
    }

    fn read(comment: &str) -> Option<HeldMark> {
        serde_json::from_str(comment.strip_prefix(Self::PREFIX)?).ok()
    }
}

/// `text` as an escape string literal, for statements that take no
/// parameters (COMMENT ON).
fn escaped_literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_mark_reads_back_and_nothing_else_does() {
        let mark = HeldMark {
            parent: 16384,
            partition: "public.log_2026_01".into(),
            bounds: "FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')".into(),
        };
        assert_eq!(HeldMark::read(&mark.comment()), Some(mark));
        assert_eq!(HeldMark::read("the January log"), None);
        assert_eq!(
            HeldMark::read(&format!("{}not json", HeldMark::PREFIX)),
            None
        );
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(escaped_literal(r"it's a \ test"), r"E'it''s a \\ test'");
    }
}
