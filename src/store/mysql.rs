//! MySQL and MariaDB, through mysql_async.
//!
//! Sessions run in UTC, READ COMMITTED (so a batch's range scan takes no
//! gap locks that would stall the application's inserts), utf8mb4,
//! ANSI_QUOTES (rule fragments read as on PostgreSQL), and a short
//! `innodb_lock_wait_timeout`. HMAC is two `SHA2` calls over binary
//! strings; the column is converted to utf8mb4 first, so a latin1 column
//! yields the same token as a utf8mb4 one, as PostgreSQL and Rust do.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, DriverError, Opts, OptsBuilder, Params, Row, SslOpts, Value};
use sha2::{Digest, Sha256};

use super::audit_table::{self, AuditRow, AuditType, Named};
use super::flow::{Sql, Statements};
use super::partitions::{maria_bound, maria_form};
use super::sql::{self, Dialect, LimitForm, Param, Query, TokenRow};
use super::{
    CatalogTable, Column, ColumnKind, ForeignKey, KeyValue, OnDelete, QueryErrorKind,
    SessionLimits, Store, StoreError, TableSchema, Window, connection_url, group_catalog,
    group_runs, primary_and_unique_keys,
};
use super::{HeldPartition, Partitioning, RangePartition};
use super::{grants, tls};
use crate::audit_record::{AuditCursor, AuditFilter, AuditRecord, ChainLink};
use crate::generalise::{DatePart, ip_prefix_regex};
use crate::pseudonym::TokenShape;
use crate::rules::{Engine, StoreConfig, TableRef, Tls};
use crate::step::{ColumnChange, Moment, Step};

/// The MySQL / MariaDB dialect. The two differ here only in how a
/// pseudonymising batch's tokens are written back (see `rows_source`).
pub(crate) struct Mysql {
    mariadb: bool,
}

/// The dialect for a MySQL server, and the one used where the server does
/// not matter (quoting, table names).
pub(crate) static MYSQL: Mysql = Mysql { mariadb: false };
/// The dialect for a MariaDB server.
pub(crate) static MARIADB: Mysql = Mysql { mariadb: true };

/// The most rows one MariaDB token write holds. Writes hold a power of two
/// of rows from [`MIN_SOURCE_ROWS`] up to this, padded with rows of NULLs
/// (which join nothing), so a run prepares at most seven statement shapes,
/// each once per connection, instead of one per batch size.
const MAX_SOURCE_ROWS: usize = 1_024;
const MIN_SOURCE_ROWS: usize = 16;

impl Dialect for Mysql {
    fn quote(&self, ident: &str) -> String {
        format!("`{}`", ident.replace('`', "``"))
    }

    fn placeholder(&self, _index: usize, param: &Param) -> String {
        match param {
            Param::Key(_, column) if is_binary(column) => "UNHEX(?)".into(),
            _ => "?".into(),
        }
    }

    /// Binary keys (a UUID in BINARY(16)) travel as hex text, which any
    /// byte sequence is, and go back through UNHEX.
    fn key_select(&self, column_sql: &str, column: &Column) -> String {
        if is_binary(column) {
            format!("HEX({column_sql})")
        } else {
            column_sql.to_string()
        }
    }

    /// Zero dates (`0000-00-00`) and partial ones (`2016-07-00`) that a
    /// non-strict sql_mode let in compare as very old; they are no dates.
    fn invalid_event(&self, column_sql: &str, _column: &Column) -> Option<String> {
        Some(format!(
            "(YEAR({column_sql}) = 0 OR MONTH({column_sql}) = 0 OR DAYOFMONTH({column_sql}) = 0)"
        ))
    }

    fn to_timestamp(&self, sql: &str) -> String {
        format!("CAST({sql} AS DATETIME(6))")
    }

    fn case_branch(&self, sql: &str) -> String {
        format!("CONVERT({sql} USING utf8mb4)")
    }

    /// Most collations fold case and accents; tokens must match exactly,
    /// counted in characters (not bytes), whatever the column's charset.
    /// PCRE's `$` also matches before a final newline: the pattern ends
    /// in `\z`, the end of the text.
    fn is_token(&self, q: &mut Query<'_>, column_sql: &str, shape: &TokenShape) -> String {
        let pattern = q.bind(Param::Text(shape.regex_ending("\\z")));
        format!("(CONVERT({column_sql} USING utf8mb4) COLLATE utf8mb4_bin REGEXP {pattern})")
    }

    fn is_ip_prefix(&self, q: &mut Query<'_>, column_sql: &str, change: &ColumnChange) -> String {
        let redacted = change.redacted.as_deref().expect("ip_prefix has its text");
        let pattern = q.bind(Param::Text(ip_prefix_regex(redacted, "\\z")));
        format!("(CONVERT({column_sql} USING utf8mb4) COLLATE utf8mb4_bin REGEXP {pattern})")
    }

    /// Partial and zero dates are excluded before (`invalid_event`), so
    /// the text DATE_FORMAT writes is always a date.
    fn truncated(&self, column_sql: &str, column: &Column, part: DatePart) -> String {
        let format = match part {
            DatePart::Year => "%Y-01-01",
            DatePart::Month => "%Y-%m-01",
        };
        let target = match column.kind {
            ColumnKind::Date => "DATE",
            _ => "DATETIME(6)",
        };
        format!("CAST(DATE_FORMAT({column_sql}, '{format}') AS {target})")
    }

    /// The bytes the worker hashes are UTF-8 whatever the column's charset.
    fn value_text(&self, column_sql: &str) -> String {
        format!("CONVERT({column_sql} USING utf8mb4)")
    }

    /// The session's zone is UTC, so an instant reads as UTC.
    fn event_text(&self, sql: &str, _kind: ColumnKind) -> String {
        format!("CONVERT(DATE_FORMAT({sql}, '%Y-%m-%d %H:%i:%s.%f') USING utf8mb4)")
    }

    fn update_from(&self) -> bool {
        false
    }

    /// MariaDB (10.3+): a table value constructor after a first, empty row
    /// that names the columns and fixes their types: the key columns as
    /// the table has them (so the join uses the key's index), the tokens as
    /// wide as the longest value the worker can write. MariaDB would
    /// otherwise type a column from its first values, and a short or NULL
    /// first token would make later, longer ones too long for it. The
    /// parser takes far less time over one VALUES list than over a SELECT
    /// per row. MySQL keeps the portable form.
    fn rows_source(&self, q: &mut Query<'_>, step: &Step, rows: &[TokenRow]) -> String {
        if !self.mariadb {
            return sql::portable_rows_source(q, step, rows);
        }
        let changes = sql::worker_changes(step).expect("a step with worker values");
        let first: Vec<String> = step
            .key
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} AS glemsel_k{i}", self.quote(&c.name)))
            .chain(changes.iter().enumerate().map(|(i, c)| {
                format!(
                    "CAST(NULL AS CHAR({})) AS glemsel_t{i}",
                    c.longest_worker_value().max(1)
                )
            }))
            .collect();
        let padded = rows.len().next_power_of_two().max(MIN_SOURCE_ROWS);
        let mut values = Vec::with_capacity(padded);
        for r in 0..padded {
            let row = rows.get(r);
            let mut cells = Vec::with_capacity(first.len());
            for (i, column) in step.key.iter().enumerate() {
                cells.push(match row {
                    Some(row) => q.bind(Param::Key(row.key[i].clone(), column.clone())),
                    None => {
                        // Shaped as a real row's cell, so the text is the same.
                        let placeholder = q.bind(Param::OptText(None));
                        if is_binary(column) {
                            format!("UNHEX({placeholder})")
                        } else {
                            placeholder
                        }
                    }
                });
            }
            for i in 0..changes.len() {
                let token = row.and_then(|row| row.tokens[i].clone());
                cells.push(q.bind(Param::OptText(token)));
            }
            values.push(format!("({})", cells.join(", ")));
        }
        format!(
            "(SELECT {} FROM {} WHERE 1 = 0 UNION ALL VALUES {}) AS glemsel_v",
            first.join(", "),
            self.table(&step.table),
            values.join(", ")
        )
    }

    fn max_source_rows(&self) -> usize {
        if self.mariadb {
            MAX_SOURCE_ROWS
        } else {
            usize::MAX
        }
    }

    fn max_params(&self) -> usize {
        u16::MAX as usize
    }

    fn audit_type(&self, kind: AuditType) -> String {
        match kind {
            AuditType::Seq | AuditType::Count => "BIGINT".into(),
            AuditType::Text(Some(chars)) => format!("VARCHAR({chars})"),
            AuditType::Text(None) => "TEXT".into(),
            // TEXT holds 64 KiB, too little for a large erasure status.
            AuditType::Document => "MEDIUMTEXT".into(),
            AuditType::Hash => "CHAR(64)".into(),
            AuditType::Instant => "DATETIME(6)".into(),
        }
    }

    fn audit_table_options(&self) -> &'static str {
        // Binary collation: hashes and ids compare byte for byte.
        " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    }

    fn limit_form(&self) -> LimitForm {
        LimitForm::OrderByLimit
    }
}

/// Whether a column holds bytes rather than text.
fn is_binary(column: &Column) -> bool {
    let data_type = column.data_type.to_ascii_lowercase();
    data_type.starts_with("binary")
        || data_type.starts_with("varbinary")
        || data_type.ends_with("blob")
}

fn moment_value(moment: &Moment) -> Value {
    fn at(t: &NaiveDateTime) -> Value {
        Value::Date(
            t.year() as u16,
            t.month() as u8,
            t.day() as u8,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
            t.nanosecond() / 1000,
        )
    }
    match moment {
        Moment::Date(d) => Value::Date(d.year() as u16, d.month() as u8, d.day() as u8, 0, 0, 0, 0),
        Moment::Timestamp(t) => at(t),
        // The session runs in UTC, so TIMESTAMP columns read and compare in UTC.
        Moment::Instant(i) => at(&i.naive_utc()),
    }
}

fn to_value(param: &Param) -> Value {
    match param {
        Param::Text(t) => Value::Bytes(t.clone().into_bytes()),
        Param::OptText(t) => t
            .as_ref()
            .map_or(Value::NULL, |t| Value::Bytes(t.clone().into_bytes())),
        Param::Int(i) => Value::Int(*i),
        Param::TextList(_) => unreachable!("only PostgreSQL binds arrays"),
        Param::Moment(m) => moment_value(m),
        Param::Key(KeyValue::Int(i), _) => Value::Int(*i),
        Param::Key(KeyValue::UInt(u), _) => Value::UInt(*u),
        Param::Key(KeyValue::Text(t), _) => Value::Bytes(t.clone().into_bytes()),
    }
}

fn params(q: &Query<'_>) -> Params {
    if q.params.is_empty() {
        Params::Empty
    } else {
        Params::Positional(q.params.iter().map(to_value).collect())
    }
}

/// A lock name for GET_LOCK: at most 64 characters, the same on every host.
fn lock_name(namespace: &str, name: &str) -> String {
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    format!("glemsel:{namespace}:{}", &digest[..40])
}

fn value_text(value: &Value) -> Result<String, String> {
    match value {
        Value::Bytes(b) => {
            String::from_utf8(b.clone()).map_err(|_| "a value is not UTF-8".to_string())
        }
        Value::Int(i) => Ok(i.to_string()),
        Value::UInt(u) => Ok(u.to_string()),
        other => Err(format!("unexpected value {other:?}")),
    }
}

fn value_i64(value: &Value) -> Result<i64, String> {
    match value {
        Value::Int(i) => Ok(*i),
        Value::UInt(u) => i64::try_from(*u).map_err(|_| "number out of range".to_string()),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "not a number".to_string()),
        other => Err(format!("expected a number, got {other:?}")),
    }
}

fn value_opt_text(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::NULL => Ok(None),
        other => value_text(other).map(Some),
    }
}

fn value_utc(value: &Value) -> Result<DateTime<Utc>, String> {
    match value {
        Value::Date(y, mo, d, h, mi, s, us) => {
            NaiveDate::from_ymd_opt(i32::from(*y), u32::from(*mo), u32::from(*d))
                .and_then(|date| {
                    date.and_hms_micro_opt(u32::from(*h), u32::from(*mi), u32::from(*s), *us)
                })
                .map(|t| t.and_utc())
                .ok_or_else(|| "invalid date".to_string())
        }
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok())
            .map(|t| t.and_utc())
            .ok_or_else(|| "invalid date".to_string()),
        other => Err(format!("expected a date, got {other:?}")),
    }
}

fn key_value(value: &Value) -> Result<KeyValue, String> {
    match value {
        Value::Int(i) => Ok(KeyValue::Int(*i)),
        Value::UInt(u) => Ok(i64::try_from(*u).map_or(KeyValue::UInt(*u), KeyValue::Int)),
        Value::NULL => Err("a key value is NULL".into()),
        Value::Date(y, mo, d, h, mi, s, us) => Ok(KeyValue::Text(format!(
            "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"
        ))),
        Value::Float(f) => Ok(KeyValue::Text(f.to_string())),
        Value::Double(f) => Ok(KeyValue::Text(f.to_string())),
        other => value_text(other).map(KeyValue::Text),
    }
}

fn column_kind(data_type: &str) -> ColumnKind {
    match data_type {
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => ColumnKind::Text,
        "date" => ColumnKind::Date,
        "datetime" => ColumnKind::Timestamp,
        "timestamp" => ColumnKind::TimestampTz,
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => ColumnKind::Integer,
        _ => ColumnKind::Other,
    }
}

/// One connection to a MySQL or MariaDB database.
pub struct MysqlStore {
    name: String,
    conn: Conn,
    audit_table: TableRef,
    /// The audit append lock is a session lock: released after commit.
    holds_audit_lock: bool,
    /// The connection's database. GET_LOCK names are global to a server,
    /// so every lock name carries it: two databases with a rule of the same
    /// id must not block each other.
    database: String,
    /// [`MARIADB`] on a MariaDB server, else [`MYSQL`].
    dialect: &'static Mysql,
}

/// The TLS options for a store's `tls`, which override the URL's own
/// (`require_ssl`, ...); a URL asking for TLS on a store set to `disable`
/// is refused rather than quietly obeyed or ignored.
fn ssl_opts(config: &StoreConfig, opts: &Opts) -> Result<Option<SslOpts>, StoreError> {
    let refuse = |message: &str| StoreError::Config {
        store: config.name.clone(),
        message: message.to_string(),
    };
    if config.tls != Tls::Disable && opts.socket().is_some() {
        // mysql_async would skip TLS on a socket without a word.
        return Err(refuse(
            "the URL names a Unix socket, which TLS does not cover; connect over TCP, or use tls = \"disable\" for a local socket",
        ));
    }
    if config.tls != Tls::Disable {
        tls::install_default_provider();
    }
    let ssl = SslOpts::default();
    match &config.tls {
        Tls::Disable if opts.ssl_opts().is_some() => Err(refuse(
            "the URL asks for require_ssl, but the store has tls = \"disable\"; set tls = \"require\" or \"verify-full\"",
        )),
        Tls::Disable => Ok(None),
        Tls::Require => Ok(Some(
            ssl.with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        )),
        Tls::VerifyFull { ca_file } => {
            let pem = tls::read_ca(config, ca_file)?;
            // Only the operator's CA: a public CA's certificate for some
            // other name must not do.
            Ok(Some(
                ssl.with_root_certs(vec![pem.into()])
                    .with_disable_built_in_roots(true),
            ))
        }
    }
}

impl MysqlStore {
    pub async fn connect(config: &StoreConfig, limits: SessionLimits) -> Result<Self, StoreError> {
        let url = connection_url(config)?;
        let opts = Opts::from_url(&url).map_err(|_| StoreError::Config {
            store: config.name.clone(),
            message: "the connection string is not a valid mysql:// URL".into(),
        })?;
        let wait_seconds = limits.lock_timeout.as_millis().div_ceil(1000).max(1);
        let setup = vec![
            "SET NAMES utf8mb4".to_string(),
            // Rule fragments (`where`, `open`) are standard SQL on every
            // engine: "x" is an identifier. Without this, MySQL would read
            // "Open" = 1 as a string compared with 1: silently false.
            "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')".to_string(),
            "SET time_zone = '+00:00'".to_string(),
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".to_string(),
            format!("SET SESSION innodb_lock_wait_timeout = {wait_seconds}"),
            format!("SET SESSION lock_wait_timeout = {wait_seconds}"),
        ];
        let ssl = ssl_opts(config, &opts)?;
        let opts = OptsBuilder::from_opts(opts)
            .init(setup)
            .stmt_cache_size(64)
            .prefer_socket(false)
            .ssl_opts(ssl)
            // A peer that vanished mid-query is noticed instead of waited on.
            .tcp_keepalive(Some(Duration::from_secs(60)));
        let conn = Conn::new(opts).await.map_err(|err| StoreError::Connect {
            store: config.name.clone(),
            message: match &err {
                mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer) => {
                    tls::not_offered(config)
                }
                _ => tls::explain(config, &err).unwrap_or_else(|| describe_error(&err)),
            },
        })?;
        let mut store = Self {
            name: config.name.clone(),
            conn,
            audit_table: config.audit_table.clone(),
            holds_audit_lock: false,
            database: String::new(),
            dialect: &MYSQL,
        };
        let session: Option<(Option<String>, String)> = store
            .conn
            .query_first("SELECT DATABASE(), VERSION()")
            .await
            .map_err(|e| store.error("session setup", e))?;
        if let Some((database, version)) = session {
            store.database = database.unwrap_or_default();
            if mariadb_version(&version).is_some() {
                store.dialect = &MARIADB;
            }
        }
        store.limit_statements(limits.statement_timeout).await?;
        // Row-based logging for this session where the role may choose it
        // (READ COMMITTED batches cannot be logged as statements); where it
        // may not, `refusals` reports a STATEMENT binary log.
        let _ = store
            .conn
            .query_drop("SET SESSION binlog_format = 'ROW'")
            .await;
        Ok(store)
    }

    /// No statement runs longer than `limit`: MariaDB's max_statement_time
    /// (seconds) covers every statement; MySQL's max_execution_time
    /// (milliseconds) covers SELECTs, which is what a count is.
    async fn limit_statements(&mut self, limit: Duration) -> Result<(), StoreError> {
        let mariadb = format!("SET SESSION max_statement_time = {}", limit.as_secs_f64());
        if self.conn.query_drop(&mariadb).await.is_ok() {
            return Ok(());
        }
        let mysql = format!("SET SESSION max_execution_time = {}", limit.as_millis());
        self.simple("session setup", &mysql).await
    }

    fn error(&self, context: &str, err: mysql_async::Error) -> StoreError {
        let code = match &err {
            mysql_async::Error::Server(server) => Some(server.code),
            _ => None,
        };
        StoreError::Query {
            store: self.name.clone(),
            context: context.to_string(),
            kind: match code {
                // Lock wait timeout; deadlock (rolled back, safe to retry).
                Some(1205) | Some(1213) => QueryErrorKind::LockTimeout,
                // Syntax, unknown column or table, ambiguous column, unknown
                // function, wrong argument count.
                Some(1064) | Some(1054) | Some(1146) | Some(1052) | Some(1305) | Some(1582)
                | Some(1583) => QueryErrorKind::Compile,
                _ => QueryErrorKind::Other,
            },
            code: code.map(|c| c.to_string()),
            message: describe_error(&err),
        }
    }

    fn invalid(&self, context: &str, message: String) -> StoreError {
        StoreError::invalid(&self.name, context, message)
    }

    /// The GET_LOCK name of this database's audit append lock.
    fn audit_lock(&self) -> String {
        lock_name(
            "audit",
            &format!("{}/{}", self.database, MYSQL.table(&self.audit_table)),
        )
    }

    /// The GET_LOCK name of a rule's lock in this database.
    fn rule_lock(&self, rule: &str) -> String {
        lock_name("rule", &format!("{}/{rule}", self.database))
    }

    async fn rows(&mut self, context: &str, q: &Query<'_>) -> Result<Vec<Vec<Value>>, StoreError> {
        match self.conn.exec::<Row, _, _>(q.sql.as_str(), params(q)).await {
            Ok(rows) => Ok(rows.into_iter().map(Row::unwrap).collect()),
            Err(err) => Err(self.error(context, err)),
        }
    }

    async fn execute(&mut self, context: &str, q: &Query<'_>) -> Result<u64, StoreError> {
        match self.conn.exec_drop(q.sql.as_str(), params(q)).await {
            Ok(()) => Ok(self.conn.affected_rows()),
            Err(err) => Err(self.error(context, err)),
        }
    }

    async fn simple(&mut self, context: &str, sql: &str) -> Result<(), StoreError> {
        match self.conn.query_drop(sql).await {
            Ok(()) => Ok(()),
            Err(err) => Err(self.error(context, err)),
        }
    }

    async fn scalar(
        &mut self,
        context: &str,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Value, StoreError> {
        match self
            .conn
            .exec_first::<Row, _, _>(sql, Params::Positional(values))
            .await
        {
            Ok(Some(row)) => Ok(row.unwrap().into_iter().next().unwrap_or(Value::NULL)),
            Ok(None) => Ok(Value::NULL),
            Err(err) => Err(self.error(context, err)),
        }
    }

    /// The database holding the audit table; `None` when it does not exist.
    async fn audit_table_schema(&mut self) -> Result<Option<String>, StoreError> {
        self.conn
            .exec_first::<String, _, _>(
                "SELECT TABLE_SCHEMA FROM information_schema.TABLES \
                 WHERE CAST(TABLE_NAME AS BINARY) = CAST(? AS BINARY) \
                 AND CAST(TABLE_SCHEMA AS BINARY) = CAST(COALESCE(?, DATABASE()) AS BINARY)",
                (
                    self.audit_table.name.as_str(),
                    self.audit_table.schema.as_deref(),
                ),
            )
            .await
            .map_err(|e| self.error("audit table", e))
    }

    /// Whether `sql` (an `EXPLAIN` of a statement that would change
    /// nothing) passes the server's privilege check: the server's own
    /// answer, whatever grants, wildcards or roles gave the right.
    async fn permitted(&mut self, sql: &str) -> Result<bool, StoreError> {
        match self.conn.query_drop(sql).await {
            Ok(()) => Ok(true),
            // Command, column or database access denied.
            Err(mysql_async::Error::Server(server))
                if [1142, 1143, 1044].contains(&server.code) =>
            {
                Ok(false)
            }
            Err(err) => Err(self.error("audit privileges", err)),
        }
    }

    /// DROP and ALTER as this account's own grants give them on `table` of
    /// `schema` (neither can be probed without doing it), DROP first.
    async fn ddl_rights(
        &mut self,
        schema: &str,
        table: &str,
        context: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.conn
            .exec(
                "SELECT DISTINCT PRIVILEGE_TYPE FROM (\
                 SELECT GRANTEE, PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES \
                 UNION ALL SELECT GRANTEE, PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES \
                 WHERE ? LIKE TABLE_SCHEMA \
                 UNION ALL SELECT GRANTEE, PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?) p \
                 WHERE PRIVILEGE_TYPE IN ('DROP', 'ALTER') AND GRANTEE = (SELECT CONCAT('''', \
                 LEFT(u, LENGTH(u) - LENGTH(SUBSTRING_INDEX(u, '@', -1)) - 1), '''@''', \
                 SUBSTRING_INDEX(u, '@', -1), '''') FROM (SELECT CURRENT_USER() AS u) c) ORDER BY 1 DESC",
                (schema, schema, table),
            )
            .await
            .map_err(|e| self.error(context, e))
    }

    /// The rights among `wanted` this account's own grants give it on
    /// every table of `schema` (database-wide or global).
    async fn database_rights(
        &mut self,
        schema: &str,
        wanted: &[&str],
        context: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rights: Vec<String> = self
            .conn
            .exec(
                "SELECT DISTINCT PRIVILEGE_TYPE FROM (\
                 SELECT GRANTEE, PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES \
                 UNION ALL SELECT GRANTEE, PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES \
                 WHERE ? LIKE TABLE_SCHEMA) p \
                 WHERE GRANTEE = (SELECT CONCAT('''', \
                 LEFT(u, LENGTH(u) - LENGTH(SUBSTRING_INDEX(u, '@', -1)) - 1), '''@''', \
                 SUBSTRING_INDEX(u, '@', -1), '''') FROM (SELECT CURRENT_USER() AS u) c) ORDER BY 1",
                (schema,),
            )
            .await
            .map_err(|e| self.error(context, e))?;
        Ok(rights
            .into_iter()
            .filter(|r| wanted.contains(&r.as_str()))
            .collect())
    }

    /// The database `table` is in: its own schema, else the connection's.
    async fn schema_of(&mut self, table: &TableRef) -> Result<String, StoreError> {
        match &table.schema {
            Some(schema) => Ok(schema.clone()),
            None => self
                .conn
                .query_first::<Option<String>, _>("SELECT DATABASE()")
                .await
                .map_err(|e| self.error("partitions", e))
                .map(|db| db.flatten().unwrap_or_default()),
        }
    }

    async fn release_audit_lock(&mut self) -> Result<(), StoreError> {
        if self.holds_audit_lock {
            self.holds_audit_lock = false;
            let name = self.audit_lock();
            self.scalar(
                "audit unlock",
                "SELECT RELEASE_LOCK(?)",
                vec![Value::from(name)],
            )
            .await?;
        }
        Ok(())
    }
}

/// A server's message without anything that could quote a value.
/// Server errors whose messages name things (statements, tables, columns,
/// variables, locks), never a row's value.
const MESSAGES_WITHOUT_VALUES: &[u16] = &[
    1044, 1045, 1046, 1049, 1052, 1054, 1064, 1142, 1143, 1146, 1193, 1205, 1213, 1227, 1238, 1290,
    1305, 1317, 1582, 1583, 1665, 1792, 1969, 3024,
];

/// The server's error, as logs and reports may show it. Messages such as
/// 1062 `Duplicate entry 'jens@...'` quote row values: for any code not
/// known to be free of them, only the code and SQLSTATE are given.
fn describe_error(err: &mysql_async::Error) -> String {
    match err {
        mysql_async::Error::Server(server) if MESSAGES_WITHOUT_VALUES.contains(&server.code) => {
            format!("error {}: {}", server.code, server.message)
        }
        mysql_async::Error::Server(server) => format!(
            "error {} (SQLSTATE {}); the server's message is withheld because it can quote row values",
            server.code, server.state
        ),
        // These print the value or row they could not convert.
        mysql_async::Error::Driver(
            mysql_async::DriverError::FromValue { .. } | mysql_async::DriverError::FromRow { .. },
        ) => "a value could not be read as the expected type".to_string(),
        other => other.to_string(),
    }
}

impl AuditRow for Named<'_, Value> {
    fn int(&self, column: &str) -> Result<i64, String> {
        value_i64(self.get(column)?)
    }
    fn text(&self, column: &str) -> Result<String, String> {
        value_text(self.get(column)?)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, String> {
        value_opt_text(self.get(column)?)
    }
    fn instant(&self, column: &str) -> Result<DateTime<Utc>, String> {
        value_utc(self.get(column)?)
    }
}

/// The parts of [`Store::describe`], one catalog query each.
impl MysqlStore {
    async fn describe_columns(
        &mut self,
        schema: &str,
        name: &str,
    ) -> Result<Vec<Column>, StoreError> {
        Ok(self
            .conn
            .exec::<(String, String, String, String, Option<u64>), _, _>(
                "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IS_NULLABLE, CHARACTER_MAXIMUM_LENGTH \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (schema, name),
            )
            .await
            .map_err(|e| self.error("describe columns", e))?
            .into_iter()
            .map(|(column, column_type, data_type, nullable, max)| Column {
                name: column,
                kind: column_kind(&data_type.to_ascii_lowercase()),
                data_type: column_type,
                nullable: nullable == "YES",
                max_chars: max.map(|m| m as usize),
            })
            .collect())
    }

    /// The primary key, the other unique keys, and every column in a
    /// unique index. A prefix index is unique only on the prefix, so it is
    /// no key.
    async fn describe_keys(
        &mut self,
        schema: &str,
        name: &str,
        columns: &[Column],
    ) -> Result<(Vec<String>, Vec<Vec<String>>, Vec<String>), StoreError> {
        let index_rows = self
            .conn
            .exec::<(String, String, Option<u64>), _, _>(
                "SELECT INDEX_NAME, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                (schema, name),
            )
            .await
            .map_err(|e| self.error("describe keys", e))?;
        let mut unique_columns: Vec<String> =
            index_rows.iter().map(|(_, c, _)| c.clone()).collect();
        unique_columns.sort();
        unique_columns.dedup();
        let indexes = group_runs(
            index_rows
                .into_iter()
                .map(|(index, column, sub_part)| (index, (column, sub_part.is_some()))),
        )
        .into_iter()
        .filter(|(_, parts)| !parts.iter().any(|(_, prefix)| *prefix))
        .map(|(index, parts)| {
            let names = parts.into_iter().map(|(column, _)| column).collect();
            (index == "PRIMARY", names)
        });
        let (primary_key, unique_keys) = primary_and_unique_keys(columns, indexes);
        Ok((primary_key, unique_keys, unique_columns))
    }

    /// The foreign keys in other tables (or this one) that point here,
    /// read one column a row.
    async fn describe_referenced_by(
        &mut self,
        schema: &str,
        name: &str,
    ) -> Result<Vec<ForeignKey>, StoreError> {
        let key_rows = self
            .conn
            .exec::<(String, String, String, String, String, String), _, _>(
                "SELECT k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, r.DELETE_RULE, k.COLUMN_NAME, k.REFERENCED_COLUMN_NAME \
                 FROM information_schema.KEY_COLUMN_USAGE k JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
                 ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME \
                 WHERE k.REFERENCED_TABLE_SCHEMA = ? AND k.REFERENCED_TABLE_NAME = ? \
                 ORDER BY k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION",
                (schema, name),
            )
            .await
            .map_err(|e| self.error("describe foreign keys", e))?;
        let keyed = key_rows.into_iter().map(
            |(child_schema, child, constraint, rule, column, referenced)| {
                let id = format!("{child_schema}.{child}.{constraint}");
                (id, ((child_schema, child, rule), (column, referenced)))
            },
        );
        Ok(group_runs(keyed)
            .into_iter()
            .map(|(_, parts)| {
                let (child_schema, child, rule) = parts[0].0.clone();
                let (columns, references) = parts.into_iter().map(|(_, pair)| pair).unzip();
                ForeignKey {
                    table: TableRef::new(Some(&child_schema), &child),
                    on_delete: OnDelete::from_sql_name(&rule),
                    columns,
                    references,
                }
            })
            .collect())
    }
}

#[async_trait]
impl Statements for MysqlStore {
    fn dialect(&self) -> &'static dyn Dialect {
        self.dialect
    }

    async fn compile(&mut self, context: &str, q: &Query<'_>) -> Result<(), StoreError> {
        let statement = self
            .conn
            .prep(q.sql.as_str())
            .await
            .map_err(|e| self.error(context, e))?;
        self.conn
            .close(statement)
            .await
            .map_err(|e| self.error(context, e))
    }

    async fn affected(&mut self, context: &str, q: &Query<'_>) -> Result<u64, StoreError> {
        self.execute(context, q).await
    }

    async fn numbers(&mut self, context: &str, q: &Query<'_>) -> Result<Vec<u64>, StoreError> {
        let rows = self.rows(context, q).await?;
        let row = rows
            .first()
            .ok_or_else(|| self.invalid(context, "no row".into()))?;
        row.iter()
            .map(|v| value_i64(v).map(|n| n as u64))
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
        self.rows(context, q)
            .await?
            .iter()
            .map(|row| {
                row.iter()
                    .map(|value| match value {
                        Value::NULL => Ok(None),
                        value => key_value(value).map(Some),
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|m| self.invalid(context, m))
    }

    fn store_name(&self) -> &str {
        &self.name
    }

    async fn read_only(&mut self, on: bool) -> Result<(), StoreError> {
        match on {
            true => {
                self.simple("read-only", "START TRANSACTION READ ONLY")
                    .await
            }
            false => self.simple("read-only", "ROLLBACK").await,
        }
    }
}

#[async_trait]
impl Store for MysqlStore {
    fn sql(&mut self) -> Sql<'_> {
        Sql(self)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn engine(&self) -> Engine {
        Engine::Mysql
    }

    async fn describe(&mut self, table: &TableRef) -> Result<Option<TableSchema>, StoreError> {
        // Names compare as bytes: legacy schemas rely on exact case.
        let found = self
            .conn
            .exec_first::<(String, String), _, _>(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
                 WHERE CAST(TABLE_NAME AS BINARY) = CAST(? AS BINARY) \
                 AND CAST(TABLE_SCHEMA AS BINARY) = CAST(COALESCE(?, DATABASE()) AS BINARY) \
                 AND TABLE_TYPE = 'BASE TABLE'",
                (table.name.as_str(), table.schema.as_deref()),
            )
            .await
            .map_err(|e| self.error("describe table", e))?;
        let Some((schema, name)) = found else {
            return Ok(None);
        };
        let columns = self.describe_columns(&schema, &name).await?;
        let (primary_key, unique_keys, unique_columns) =
            self.describe_keys(&schema, &name, &columns).await?;
        let referenced_by = self.describe_referenced_by(&schema, &name).await?;
        let foreign_key_columns: Vec<String> = self
            .conn
            .exec(
                "SELECT DISTINCT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND REFERENCED_TABLE_NAME IS NOT NULL ORDER BY 1",
                (schema.as_str(), name.as_str()),
            )
            .await
            .map_err(|e| self.error("describe foreign keys", e))?;
        Ok(Some(TableSchema {
            table: TableRef::new(Some(&schema), &name),
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
            .conn
            .query::<(String, String, String, String), _>(
                "SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_TYPE \
                 FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
                 ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
                 WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' \
                 ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
            )
            .await
            .map_err(|e| self.error("catalog", e))?;
        Ok(group_catalog(rows.into_iter().map(
            |(schema, table, column, data_type)| (Some(schema), table, column, data_type),
        )))
    }

    async fn estimate_rows(
        &mut self,
        step: &Step,
        window: &Window,
    ) -> Result<Option<u64>, StoreError> {
        let q = sql::window_rows(&MYSQL, step, window);
        let plan = match self
            .conn
            .exec::<Row, _, _>(q.sql.as_str(), params(&q))
            .await
        {
            Ok(plan) => plan,
            Err(err) => return Err(self.error("estimate", err)),
        };
        // MySQL has a `partitions` column that MariaDB lacks: find `rows` by name.
        let Some(row) = plan.first() else {
            return Ok(None);
        };
        let rows = row
            .columns_ref()
            .iter()
            .position(|c| c.name_str() == "rows")
            .and_then(|i| row.as_ref(i))
            .map(value_i64);
        match rows {
            Some(Ok(rows)) => Ok(Some(rows.max(0) as u64)),
            // NULL: nothing matches (an impossible range).
            Some(Err(_)) | None => Ok(Some(0)),
        }
    }

    async fn refusals(&mut self) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        let settings: Option<(i64, i64, String)> = self
            .conn
            .query_first("SELECT @@global.read_only, @@log_bin, @@session.binlog_format")
            .await
            .map_err(|e| self.error("server role", e))?;
        let Some((read_only, log_bin, binlog_format)) = settings else {
            return Ok(found);
        };
        if read_only != 0 {
            found.push(
                "the server is read-only (@@read_only = 1), as replicas are; point the store at the primary"
                    .to_string(),
            );
        }
        if log_bin != 0 && binlog_format.eq_ignore_ascii_case("STATEMENT") {
            found.push(
                "the binary log is in STATEMENT format and this role may not switch its session to ROW; batches run READ COMMITTED, which a statement log cannot record (error 1665): set binlog_format = MIXED or ROW on the server, or grant the role BINLOG ADMIN"
                    .to_string(),
            );
        }
        Ok(found)
    }

    async fn copies(
        &mut self,
        table: &TableRef,
        max_log_days: u64,
    ) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        let settings: Option<(i64, String, i64, i64)> = self
            .conn
            .query_first("SELECT @@log_bin, @@binlog_row_image, @@general_log, @@slow_query_log")
            .await
            .map_err(|e| self.error("copies", e))?;
        let Some((log_bin, row_image, general_log, slow_log)) = settings else {
            return Ok(found);
        };
        // Seconds (MariaDB 10.6+, MySQL 8) or whole days (older servers).
        let expiry_seconds: u64 = match self
            .conn
            .query_first::<u64, _>("SELECT @@binlog_expire_logs_seconds")
            .await
        {
            Ok(Some(seconds)) => seconds,
            _ => {
                let days: Option<f64> = self
                    .conn
                    .query_first("SELECT @@expire_logs_days")
                    .await
                    .map_err(|e| self.error("copies", e))?;
                (days.unwrap_or(0.0) * 86_400.0) as u64
            }
        };
        if log_bin != 0 && !row_image.eq_ignore_ascii_case("MINIMAL") {
            let kept = match expiry_seconds {
                0 => Some("for ever (no binlog_expire_logs_seconds)".to_string()),
                s if s > max_log_days * 86_400 => Some(format!("for {} days", s / 86_400)),
                _ => None,
            };
            if let Some(kept) = kept {
                found.push(format!(
                    "the binary log (binlog_row_image = {row_image}) keeps the changed rows' old values {kept}, and so do replicas' relay logs and binlog backups: set binlog_expire_logs_seconds within the retention you promise, or binlog_row_image = MINIMAL"
                ));
            }
        }
        if general_log != 0 {
            found.push(
                "the general query log is on: it keeps every statement the application sent, with the personal data in them; turn it off or expire it"
                    .to_string(),
            );
        }
        if slow_log != 0 {
            found.push(
                "the slow query log is on: it keeps slow statements with the values in them; expire it within the retention you promise"
                    .to_string(),
            );
        }
        let schema = table.schema.clone();
        let triggers: Vec<String> = self
            .conn
            .exec(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS \
                 WHERE EVENT_OBJECT_SCHEMA = COALESCE(?, DATABASE()) AND EVENT_OBJECT_TABLE = ? ORDER BY 1",
                (schema, table.name.clone()),
            )
            .await
            .map_err(|e| self.error("copies", e))?;
        if !triggers.is_empty() {
            found.push(format!(
                "triggers on {table} ({}) may copy the rows elsewhere before they change; check where they write",
                triggers.join(", ")
            ));
        }
        Ok(found)
    }

    async fn server_time(&mut self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let micros: Option<i64> = self
            .conn
            .query_first("SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)")
            .await
            .map_err(|e| self.error("server clock", e))?;
        Ok(micros.and_then(DateTime::from_timestamp_micros))
    }

    async fn load(&mut self) -> Result<Option<u64>, StoreError> {
        let row: Option<(String, String)> = self
            .conn
            .query_first("SHOW GLOBAL STATUS LIKE 'Threads_running'")
            .await
            .map_err(|e| self.error("server load", e))?;
        let running: u64 = row.and_then(|(_, n)| n.parse().ok()).unwrap_or(0);
        // This session runs the SHOW itself.
        Ok(Some(running.saturating_sub(1)))
    }

    async fn replica_lag(&mut self) -> Result<Option<Duration>, StoreError> {
        let status: Option<Row> = self
            .conn
            .query_first("SHOW SLAVE STATUS")
            .await
            .map_err(|e| self.error("replica lag", e))?;
        // NULL while either replication thread is stopped.
        let lag = status
            .and_then(|row| row.get_opt::<Option<u64>, _>("Seconds_Behind_Master"))
            .and_then(Result::ok)
            .flatten();
        Ok(lag.map(Duration::from_secs))
    }

    async fn tls_version(&mut self) -> Result<Option<String>, StoreError> {
        let row: Option<(String, String)> = self
            .conn
            .query_first("SHOW SESSION STATUS LIKE 'Ssl_version'")
            .await
            .map_err(|e| self.error("TLS version", e))?;
        Ok(row.map(|(_, version)| version).filter(|v| !v.is_empty()))
    }

    async fn range_partitions(
        &mut self,
        table: &TableRef,
        event: &Column,
    ) -> Result<Partitioning, StoreError> {
        let schema = self.schema_of(table).await?;
        // One row per partition, or per subpartition; one row with no
        // partition name when the table is not partitioned.
        type PartitionRow = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<PartitionRow> = self
            .conn
            .exec(
                "SELECT PARTITION_NAME, PARTITION_METHOD, PARTITION_EXPRESSION, \
                 PARTITION_DESCRIPTION, SUBPARTITION_METHOD FROM information_schema.PARTITIONS \
                 WHERE CAST(TABLE_SCHEMA AS BINARY) = CAST(? AS BINARY) \
                 AND CAST(TABLE_NAME AS BINARY) = CAST(? AS BINARY) \
                 ORDER BY PARTITION_ORDINAL_POSITION, SUBPARTITION_ORDINAL_POSITION",
                (schema.as_str(), table.name.as_str()),
            )
            .await
            .map_err(|e| self.error("partitions", e))?;
        let Some((Some(_), method, expression, _, _)) = rows.first() else {
            return Ok(Partitioning::None);
        };
        let (method, expression) = (
            method.clone().unwrap_or_default(),
            expression.clone().unwrap_or_default(),
        );
        let Some(form) = maria_form(&method, &expression, &event.name, event.kind) else {
            return Ok(Partitioning::Other(format!("{method} ({expression})")));
        };
        let mut partitions: Vec<RangePartition> = Vec::new();
        for (name, _, _, description, sub) in rows {
            let name = name.unwrap_or_default();
            if partitions.last().is_some_and(|p| p.name.name == name) {
                continue;
            }
            let description = description.unwrap_or_default();
            // Each partition starts where the one before it ends; the first
            // has no lower bound, and holds NULL events too.
            let from = partitions.last().and_then(|p| p.to);
            partitions.push(RangePartition {
                name: TableRef::new(None, &name),
                to: maria_bound(form, &description, event.kind),
                bounds: format!("VALUES LESS THAN ({description})"),
                from,
                default: false,
                nested: sub.is_some(),
            });
        }
        Ok(Partitioning::Range(partitions))
    }

    async fn may_drop_partitions(&mut self, table: &TableRef) -> Result<bool, StoreError> {
        let schema = self.schema_of(table).await?;
        let rights = self
            .ddl_rights(&schema, &table.name, "partition privilege")
            .await?;
        // CONVERT PARTITION ... TO TABLE, which takes a partition out
        // atomically, came with MariaDB 10.7; MySQL has none.
        let version: Option<String> = self
            .conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| self.error("partition privilege", e))?;
        let converts = version
            .as_deref()
            .and_then(mariadb_version)
            .is_some_and(|v| v >= (10, 7));
        // The held table is created, filled, counted and dropped by
        // CONVERT PARTITION, COUNT and DROP TABLE: rights on the database.
        let held = ["CREATE", "DROP", "INSERT", "SELECT"];
        let held_rights = self
            .database_rights(&schema, &held, "partition privilege")
            .await?;
        Ok(rights.len() == 2 && held_rights.len() == held.len() && converts)
    }

    async fn count_partition(
        &mut self,
        table: &TableRef,
        partition: &RangePartition,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} PARTITION ({})",
            MYSQL.table(table),
            MYSQL.quote(&partition.name.name)
        );
        let rows: Option<u64> = self
            .conn
            .query_first(sql)
            .await
            .map_err(|e| self.error("partition count", e))?;
        Ok(rows.unwrap_or(0))
    }

    fn held_table(&self, table: &TableRef, partition: &RangePartition) -> TableRef {
        // Unique to the table and partition, and short enough for any name.
        let digest = hex::encode(Sha256::digest(
            format!("{}/{table}/{}", self.database, partition.name.name).as_bytes(),
        ));
        TableRef::new(
            table.schema.as_deref(),
            &format!("{HELD_PREFIX}{}", &digest[..16]),
        )
    }

    async fn take_out_partition(
        &mut self,
        table: &TableRef,
        partition: &RangePartition,
        held: &TableRef,
    ) -> Result<Option<HeldPartition>, StoreError> {
        let schema = self.schema_of(table).await?;
        let description: Option<Option<String>> = self
            .conn
            .exec_first(
                "SELECT PARTITION_DESCRIPTION FROM information_schema.PARTITIONS \
                 WHERE CAST(TABLE_SCHEMA AS BINARY) = CAST(? AS BINARY) \
                 AND CAST(TABLE_NAME AS BINARY) = CAST(? AS BINARY) \
                 AND CAST(PARTITION_NAME AS BINARY) = CAST(? AS BINARY)",
                (
                    schema.as_str(),
                    table.name.as_str(),
                    partition.name.name.as_str(),
                ),
            )
            .await
            .map_err(|e| self.error("partition bounds", e))?;
        let still = description
            .flatten()
            .is_some_and(|d| format!("VALUES LESS THAN ({d})") == partition.bounds);
        if !still {
            return Ok(None);
        }
        // One atomic statement (lock_wait_timeout bounds its wait for the
        // table): the partition leaves the table with its rows, and a row
        // inserted later with a date in its range goes to the next
        // partition, to be judged by the batches. Nothing can reach the
        // held table, so it is counted exactly, outside any lock.
        self.simple(
            "partition take-out",
            &format!(
                "ALTER TABLE {} CONVERT PARTITION {} TO TABLE {}",
                MYSQL.table(table),
                MYSQL.quote(&partition.name.name),
                MYSQL.table(held)
            ),
        )
        .await?;
        Ok(Some(HeldPartition {
            held: held.clone(),
            partition: partition.name.to_string(),
            bounds: partition.bounds.clone(),
            audited: false,
        }))
    }

    async fn count_held(&mut self, held: &TableRef) -> Result<u64, StoreError> {
        let rows: Option<u64> = self
            .conn
            .query_first(format!("SELECT COUNT(*) FROM {}", MYSQL.table(held)))
            .await
            .map_err(|e| self.error("held partition count", e))?;
        Ok(rows.unwrap_or(0))
    }

    async fn drop_held(&mut self, held: &TableRef) -> Result<(), StoreError> {
        self.simple(
            "held partition drop",
            &format!("DROP TABLE {}", MYSQL.table(held)),
        )
        .await
    }

    async fn held_partitions(
        &mut self,
        table: &TableRef,
        audited: &str,
    ) -> Result<Vec<HeldPartition>, StoreError> {
        let schema = self.schema_of(table).await?;
        let names: Vec<String> = self
            .conn
            .exec(
                "SELECT TABLE_NAME FROM information_schema.TABLES \
                 WHERE CAST(TABLE_SCHEMA AS BINARY) = CAST(? AS BINARY) AND TABLE_NAME LIKE ? ORDER BY 1",
                (schema.as_str(), format!("{}%", HELD_PREFIX.replace('_', "\\_"))),
            )
            .await
            .map_err(|e| self.error("held partitions", e))?;
        let mut found = Vec::new();
        for name in names {
            // Its intent row says which partition it was; its batch row,
            // if written, that only the drop is left.
            let details: Vec<String> = self
                .conn
                .exec(
                    format!(
                        "SELECT detail FROM {} WHERE event = 'batch' AND table_name = ? AND detail LIKE ? ORDER BY seq",
                        MYSQL.table(&self.audit_table)
                    ),
                    (audited, format!("%\"held\":\"{}\"%", name.replace('_', "\\_"))),
                )
                .await
                .map_err(|e| self.error("held partitions", e))?;
            let details: Vec<serde_json::Value> = details
                .iter()
                .filter_map(|d| serde_json::from_str(d).ok())
                .collect();
            // The name is the partition's: a partition of the same name
            // dropped before (names reused year after year) has rows too.
            let Some(last) = details.iter().rposition(|d| d.get("intent").is_some()) else {
                continue;
            };
            let intent = &details[last];
            let text = |key: &str| intent[key].as_str().unwrap_or_default().to_string();
            found.push(HeldPartition {
                held: TableRef::new(table.schema.as_deref(), &name),
                partition: text("partition"),
                bounds: text("bounds"),
                audited: details[last..].iter().any(|d| d.get("dropped").is_some()),
            });
        }
        Ok(found)
    }

    fn partition_ddl_commits(&self) -> bool {
        true
    }

    async fn audit_overreach(&mut self) -> Result<Vec<String>, StoreError> {
        let Some(schema) = self.audit_table_schema().await? else {
            return Ok(Vec::new());
        };
        let table = MYSQL.table(&TableRef::new(Some(&schema), &self.audit_table.name));
        let mut found = Vec::new();
        // UPDATE of any one column is enough to forge a row.
        let columns: Vec<String> = self
            .conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (schema.as_str(), self.audit_table.name.as_str()),
            )
            .await
            .map_err(|e| self.error("audit privileges", e))?;
        for column in columns {
            let column = MYSQL.quote(&column);
            let probe = format!("EXPLAIN UPDATE {table} SET {column} = {column} WHERE 1 = 0");
            if self.permitted(&probe).await? {
                found.push("may UPDATE rows".to_string());
                break;
            }
        }
        if self
            .permitted(&format!("EXPLAIN DELETE FROM {table} WHERE 1 = 0"))
            .await?
        {
            found.push("may DELETE rows".to_string());
        }
        // DROP (which TRUNCATE needs too) and ALTER cannot be probed
        // without doing them: they are read from this account's own grants.
        let audit_name = self.audit_table.name.clone();
        let rights = self
            .ddl_rights(&schema, &audit_name, "audit privileges")
            .await?;
        found.extend(rights.into_iter().map(|right| match right.as_str() {
            "DROP" => "may DROP or TRUNCATE the table".to_string(),
            other => format!("may {other} the table"),
        }));
        Ok(found)
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
        let database: Option<String> = self
            .conn
            .query_first::<Option<String>, _>("SELECT DATABASE()")
            .await
            .map_err(|e| self.error("grants", e))?
            .flatten();
        let audit = TableRef {
            schema: match self.audit_table_schema().await? {
                Some(schema) => Some(schema),
                None => self.audit_table.schema.clone().or(database),
            },
            name: self.audit_table.name.clone(),
        };
        let syntax = grants::GrantSyntax {
            dialect: &MYSQL,
            grantee: grants::mysql_account(role),
            lock_needs_update: false,
            vacuum: grants::VacuumRight::NotNeeded,
        };
        let mut lines = vec![
            "-- Run as an account that may grant these rights. The account must exist:".to_string(),
            format!("--   CREATE USER {} IDENTIFIED BY '...';", syntax.grantee),
            "-- GET_LOCK, session settings and information_schema need no grant.".to_string(),
        ];
        if needs.watches_lag {
            let version: Option<String> = self
                .conn
                .query_first("SELECT VERSION()")
                .await
                .map_err(|e| self.error("grants", e))?;
            // MariaDB 10.5 split SHOW SLAVE STATUS off REPLICATION CLIENT.
            let right = match version.as_deref().and_then(mariadb_version) {
                Some(version) if version >= (10, 5) => "SLAVE MONITOR",
                _ => "REPLICATION CLIENT",
            };
            lines.push("-- max_lag reads SHOW SLAVE STATUS on the replicas (the grant replicates to them).".into());
            lines.push(format!("GRANT {right} ON *.* TO {};", syntax.grantee));
        }
        lines.extend(syntax.table_grants(&needs));
        lines.extend(syntax.audit_grants(
            &audit,
            &audit_table::create_table(&MYSQL, &MYSQL.table(&audit)),
        ));
        Ok(Some(lines))
    }

    async fn begin(&mut self) -> Result<(), StoreError> {
        self.simple("begin", "START TRANSACTION").await
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        let committed = self.simple("commit", "COMMIT").await;
        self.release_audit_lock().await?;
        committed
    }

    async fn rollback(&mut self) -> Result<(), StoreError> {
        let rolled_back = self.simple("rollback", "ROLLBACK").await;
        self.release_audit_lock().await?;
        rolled_back
    }

    async fn ensure_audit_table(&mut self) -> Result<(), StoreError> {
        // Looked up first: CREATE TABLE IF NOT EXISTS needs the CREATE
        // right even when the table is there, and a least-privilege role
        // has none.
        if self.audit_table_schema().await?.is_some() {
            return Ok(());
        }
        let create = audit_table::create_table(&MYSQL, &MYSQL.table(&self.audit_table));
        self.simple("create audit table", &create).await
    }

    async fn audit_head(&mut self) -> Result<Option<ChainLink>, StoreError> {
        let q = audit_table::head(&MYSQL, &self.audit_table);
        let rows = self.rows("audit head", &q).await?;
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
        // Appenders on every host queue on one named lock until the append
        // commits (commit and rollback release it), so the chain stays linear.
        if !self.holds_audit_lock {
            let name = self.audit_lock();
            let got = self
                .scalar(
                    "audit lock",
                    "SELECT GET_LOCK(?, 30)",
                    vec![Value::from(name)],
                )
                .await?;
            if value_i64(&got).ok() != Some(1) {
                return Err(StoreError::Query {
                    store: self.name.clone(),
                    context: "audit lock".into(),
                    code: None,
                    message: "the audit append lock was not free within 30 s".into(),
                    kind: QueryErrorKind::LockTimeout,
                });
            }
            self.holds_audit_lock = true;
        }
        self.audit_head().await
    }

    async fn audit_insert(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
        let q = sql::audit_insert(&MYSQL, &self.audit_table, record);
        self.execute("audit insert", &q).await.map(|_| ())
    }

    async fn audit_last_run(&mut self, rule_id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let q = sql::audit_last_run(&MYSQL, &self.audit_table, rule_id);
        let rows = self.rows("audit last run", &q).await?;
        rows.first()
            .map(|row| value_utc(&row[0]))
            .transpose()
            .map_err(|m| self.invalid("audit last run", m))
    }

    async fn audit_records(
        &mut self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let q = sql::audit_select(&MYSQL, &self.audit_table, after_seq, limit);
        let rows = self.rows("audit read", &q).await?;
        audit_table::records(&rows).map_err(|m| self.invalid("audit read", m))
    }

    async fn audit_search(
        &mut self,
        filter: &AuditFilter,
        cursor: AuditCursor,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let q = sql::audit_search(&MYSQL, &self.audit_table, filter, cursor, limit);
        let rows = self.rows("audit search", &q).await?;
        audit_table::records(&rows).map_err(|m| self.invalid("audit search", m))
    }

    async fn try_lock(&mut self, name: &str) -> Result<bool, StoreError> {
        let got = self
            .scalar(
                "rule lock",
                "SELECT GET_LOCK(?, 0)",
                vec![Value::from(self.rule_lock(name))],
            )
            .await?;
        Ok(value_i64(&got).ok() == Some(1))
    }

    async fn unlock(&mut self, name: &str) -> Result<(), StoreError> {
        self.scalar(
            "rule unlock",
            "SELECT RELEASE_LOCK(?)",
            vec![Value::from(self.rule_lock(name))],
        )
        .await
        .map(|_| ())
    }
}

/// The names of the tables that hold partitions taken out and not yet
/// dropped.
const HELD_PREFIX: &str = "glemsel_held_";

/// MariaDB's major and minor version from `VERSION()` (`10.11.19-MariaDB-...`);
/// `None` for MySQL.
fn mariadb_version(version: &str) -> Option<(u32, u32)> {
    if !version.contains("MariaDB") {
        return None;
    }
    let mut parts = version.split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}
