//! The [`Store`] trait: the small set of primitives every database offers
//! (describe a table, count, find a batch window, change one batch, append
//! to the audit chain, take a lock). Planning, executing and auditing are
//! written once on top of it; dialect SQL lives only in this folder, built
//! in `sql`, and the statement sequences the SQL stores share (counts,
//! windows, one batch) are in `flow`.

pub(crate) mod audit_table;
pub mod erasure;
pub(crate) mod flow;
pub mod grants;
pub mod mysql;
pub(crate) mod partitions;
pub mod postgres;
pub(crate) mod sql;
pub mod sqlite;
pub(crate) mod tls;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::audit_record::{AuditCursor, AuditFilter, AuditRecord, ChainLink};
use crate::pseudonym::HmacKey;
use crate::rules::{Connection, Engine, StoreConfig, TableRef};
pub use crate::schema::{Column, ColumnKind, ForeignKey, OnDelete, TableSchema};
use crate::step::{Moment, Step};

/// One value of a key column, carried between batches and into the audit trail.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum KeyValue {
    Int(i64),
    /// An unsigned key beyond i64 (MySQL BIGINT UNSIGNED).
    UInt(u64),
    Text(String),
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Int(i) => write!(f, "{i}"),
            KeyValue::UInt(u) => write!(f, "{u}"),
            KeyValue::Text(t) => write!(f, "{t}"),
        }
    }
}

/// A full key (one value per key column).
pub type Key = Vec<KeyValue>;

/// A batch window over the walk key: `after < key <= through`.
/// `None` means unbounded on that side.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub after: Option<Key>,
    pub through: Option<Key>,
}

/// A number of rows, named by what it counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NamedCount {
    pub name: String,
    pub rows: u64,
}

/// What a dry run reports and a run's guards check.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Rows in the table.
    pub rows: u64,
    /// Rows the rule would change now.
    pub due: u64,
    /// Rows that are due but under a hold, so kept.
    pub held: u64,
    /// Rows in scope with no usable event date (NULL or an empty-date sentinel): never due.
    pub undated: u64,
    /// Rows that are due but already pseudonymised.
    pub done: u64,
    /// Per hold: the due rows it keeps (a row may be kept by several).
    pub held_by: Vec<NamedCount>,
    /// Per cascade table: the rows deleting the due rows would also delete.
    pub cascaded: Vec<NamedCount>,
}

impl Counts {
    /// The counts from the count statements' numbers: rows, due, held,
    /// undated, done, then one per hold; and one per cascade table.
    pub(crate) fn assemble(step: &Step, numbers: &[u64], cascaded: &[u64]) -> Counts {
        let number = |i: usize| numbers.get(i).copied().unwrap_or_default();
        Counts {
            rows: number(0),
            due: number(1),
            held: number(2),
            undated: number(3),
            done: number(4),
            held_by: step
                .holds
                .iter()
                .enumerate()
                .map(|(i, hold)| NamedCount {
                    name: hold.name().to_string(),
                    rows: number(5 + i),
                })
                .collect(),
            cascaded: cascade_counts(step, cascaded),
        }
    }
}

/// Numbers per cascade table, named by the table.
fn cascade_counts(step: &Step, rows: &[u64]) -> Vec<NamedCount> {
    step.cascades
        .iter()
        .zip(rows)
        .map(|(cascade, rows)| NamedCount {
            name: cascade.related.table.to_string(),
            rows: *rows,
        })
        .collect()
}

/// Which end of the rows a batch would change [`Store::due_key`] finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEnd {
    First,
    Last,
}

/// What one batch changed: rows of the step's table, and per cascade table.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Changed {
    pub rows: u64,
    pub cascaded: Vec<NamedCount>,
    /// The batch stopped at its limit: due rows may remain in its window.
    #[serde(skip)]
    pub limited: bool,
    /// Of a batch that stopped at its limit, the last key it took, when
    /// known: it took the due rows in key order, so none remain up to
    /// there and the walk goes on after it, not over the rows just done.
    #[serde(skip)]
    pub resume_after: Option<Key>,
}

impl Changed {
    /// Nothing changed yet: no rows, and a zero per cascade table.
    pub(crate) fn none(step: &Step) -> Changed {
        Changed {
            rows: 0,
            cascaded: cascade_counts(step, &vec![0; step.cascades.len()]),
            limited: false,
            resume_after: None,
        }
    }

    /// Counts rows changed by one statement, whose target is a cascade
    /// table (by index) or, with `None`, the step's own table.
    pub(crate) fn add(&mut self, target: Option<usize>, rows: u64) {
        match target {
            Some(index) => self.cascaded[index].rows += rows,
            None => self.rows += rows,
        }
    }
}

/// What kind of failure a query met, as far as glemsel acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryErrorKind {
    /// The statement does not compile against the schema (a bad `where`,
    /// a column that went away): the rule needs fixing.
    Compile,
    /// A lock was not had in time (or a deadlock was broken): try later.
    LockTimeout,
    Other,
}

/// Why a store operation failed. Never holds a connection string or key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {store}: {message}")]
    Config { store: String, message: String },
    #[error("store {store}: cannot connect: {message}")]
    Connect { store: String, message: String },
    #[error("store {store}: {context}: {message}")]
    Query {
        store: String,
        context: String,
        /// The database's error code (SQLSTATE or native), safe to record.
        code: Option<String>,
        message: String,
        kind: QueryErrorKind,
    },
}

impl StoreError {
    /// A result glemsel cannot read.
    pub(crate) fn invalid(store: &str, context: &str, message: String) -> StoreError {
        StoreError::Query {
            store: store.to_string(),
            context: context.to_string(),
            code: None,
            message,
            kind: QueryErrorKind::Other,
        }
    }

    pub fn kind(&self) -> Option<QueryErrorKind> {
        match self {
            StoreError::Query { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// A row lock could not be had in time; the batch may be retried later.
    pub fn is_lock_timeout(&self) -> bool {
        self.kind() == Some(QueryErrorKind::LockTimeout)
    }

    /// A short, data-free description for the audit trail.
    pub fn audit_code(&self) -> String {
        match self {
            StoreError::Config { .. } => "config".into(),
            StoreError::Connect { .. } => "connect".into(),
            StoreError::Query { code, context, .. } => {
                format!("{context}: {}", code.as_deref().unwrap_or("error"))
            }
        }
    }
}

/// One column as the catalog lists it, for the coverage review.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CatalogColumn {
    pub name: String,
    /// The type as the database spells it.
    pub data_type: String,
}

/// A base table and its columns, as the catalog lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogTable {
    /// Schema-qualified where the engine has schemas.
    pub table: TableRef,
    pub columns: Vec<CatalogColumn>,
}

/// Groups catalog rows `(schema, table, column, type)`, sorted by table,
/// into tables.
pub(crate) fn group_catalog(
    rows: impl IntoIterator<Item = (Option<String>, String, String, String)>,
) -> Vec<CatalogTable> {
    let columns = rows.into_iter().map(|(schema, table, name, data_type)| {
        let table = TableRef::new(schema.as_deref(), &table);
        (table, CatalogColumn { name, data_type })
    });
    group_runs(columns)
        .into_iter()
        .map(|(table, columns)| CatalogTable { table, columns })
        .collect()
}

/// Consecutive rows with equal keys as one group each, in order: the
/// columns of one index or one foreign key come as one row each.
pub(crate) fn group_runs<K: PartialEq, V>(
    rows: impl IntoIterator<Item = (K, V)>,
) -> Vec<(K, Vec<V>)> {
    let mut groups: Vec<(K, Vec<V>)> = Vec::new();
    for (key, value) in rows {
        match groups.last_mut() {
            Some((last, values)) if *last == key => values.push(value),
            _ => groups.push((key, vec![value])),
        }
    }
    groups
}

/// A table's primary key and its other unique keys, from its unique
/// indexes `(is primary, columns)`. A unique index keys the walk only when
/// none of its columns may be NULL.
pub(crate) fn primary_and_unique_keys(
    columns: &[Column],
    indexes: impl IntoIterator<Item = (bool, Vec<String>)>,
) -> (Vec<String>, Vec<Vec<String>>) {
    let mut primary_key = Vec::new();
    let mut unique_keys = Vec::new();
    for (primary, names) in indexes {
        if primary {
            primary_key = names;
        } else if all_not_null(columns, &names) {
            unique_keys.push(names);
        }
    }
    (primary_key, unique_keys)
}

/// Whether each of `names` is a NOT NULL column.
pub(crate) fn all_not_null(columns: &[Column], names: &[String]) -> bool {
    names
        .iter()
        .all(|n| columns.iter().any(|c| &c.name == n && !c.nullable))
}

/// One partition of a table partitioned by range on a rule's event column.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RangePartition {
    /// Its name: a table of its own, schema-qualified, on PostgreSQL; a
    /// partition of the table (no schema) on MariaDB.
    pub name: TableRef,
    /// Its bounds as the catalog says them.
    pub bounds: String,
    /// The first event value it holds; `None` when it is unbounded below
    /// (MINVALUE, MariaDB's first partition, which also takes NULL) or its
    /// bound could not be read.
    pub from: Option<Moment>,
    /// The first event value it does not hold; `None` when unbounded
    /// (MAXVALUE) or unreadable.
    pub to: Option<Moment>,
    /// PostgreSQL's DEFAULT partition: whatever no other takes, NULL too.
    pub default: bool,
    /// Itself partitioned, or not a plain table.
    pub nested: bool,
}

impl RangePartition {
    /// Its range as reports say it: `2026-01-01 up to 2026-02-01`, or the
    /// catalog's words when a bound is open or unread.
    pub fn range_text(&self) -> String {
        match (&self.from, &self.to) {
            (Some(from), Some(to)) => format!("{from} up to {to}"),
            _ => self.bounds.clone(),
        }
    }
}

/// A partition taken out of its table and not yet dropped: its rows are in
/// a table of their own that no insert into the table reaches.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HeldPartition {
    /// The table holding its rows.
    pub held: TableRef,
    /// The partition's name and bounds, as its audit rows give them.
    pub partition: String,
    pub bounds: String,
    /// Its audit row, with the count, is written: only the drop is left
    /// (MariaDB writes it before the drop, which commits by itself).
    pub audited: bool,
}

/// How a table is partitioned, as far as dropping whole partitions goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Partitioning {
    /// Not partitioned (SQLite has no partitions).
    None,
    /// Partitioned, but not by range on the event column alone: how, as
    /// the catalog says it.
    Other(String),
    /// By range on the event column.
    Range(Vec<RangePartition>),
}

/// The primitives glemsel needs from a database. One connection each;
/// transactions are connection state (`begin` … `commit`).
#[async_trait]
pub trait Store: Send {
    fn name(&self) -> &str;
    fn engine(&self) -> Engine;

    /// Columns, types and keys of a table; `None` when it does not exist.
    async fn describe(&mut self, table: &TableRef) -> Result<Option<TableSchema>, StoreError>;

    /// The statement primitives (compile, execute, read) the default
    /// methods below run the shared sequences of `flow` on.
    fn sql(&mut self) -> flow::Sql<'_>;

    /// Compiles the step's statements without running them, so a bad
    /// `where` or hold is reported by `check`, not halfway through a run.
    async fn prepare(&mut self, step: &Step) -> Result<(), StoreError> {
        flow::prepare(self.sql().0, step).await
    }

    /// The dry-run counts, from the same predicate the batches use.
    async fn count(&mut self, step: &Step) -> Result<Counts, StoreError> {
        flow::count(self.sql().0, step).await
    }

    /// The forecast: how many rows a run at each of `bounds` (ascending due
    /// bounds of the step's event) would change, from one statement built
    /// by the same predicate builder as the counts and batches.
    async fn forecast(&mut self, step: &Step, bounds: &[Moment]) -> Result<Vec<u64>, StoreError> {
        flow::forecast(self.sql().0, step, bounds).await
    }

    /// Every base table of the database the store connects to (every user
    /// schema on PostgreSQL), with its columns, in catalog order.
    async fn catalog(&mut self) -> Result<Vec<CatalogTable>, StoreError>;

    /// The key `rows` rows after `after` along the walk key, or `None` when
    /// fewer rows remain (the last window is open-ended).
    async fn window_end(
        &mut self,
        step: &Step,
        after: Option<&Key>,
        rows: u64,
    ) -> Result<Option<Key>, StoreError> {
        flow::window_end(self.sql().0, step, after, rows).await
    }

    /// The last key along the walk key; `None` when the table is empty.
    async fn last_key(&mut self, step: &Step) -> Result<Option<Key>, StoreError> {
        flow::last_key(self.sql().0, step).await
    }

    /// The first or last key among the rows a batch would change now;
    /// `None` when no row is due.
    async fn due_key(&mut self, step: &Step, end: KeyEnd) -> Result<Option<Key>, StoreError> {
        flow::due_key(self.sql().0, step, end).await
    }

    /// The planner's estimate of the rows in `window` (all of them, due or
    /// not), or `None` where the engine gives none.
    async fn estimate_rows(
        &mut self,
        _step: &Step,
        _window: &Window,
    ) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// Why this connection must not be written through, each reason with
    /// what to do about it: a read-only replica, a binary log that cannot
    /// record the batches, a transaction-pooling proxy. Empty when none.
    async fn refusals(&mut self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// Where plaintext of rows a rule changes in `table` survives the run,
    /// each with what to do about it: server logs and archives that keep
    /// old row values, triggers that may copy rows elsewhere. Backups are
    /// not visible from here. `max_log_days` is how long a log may keep
    /// them before it is worth a warning.
    async fn copies(
        &mut self,
        _table: &TableRef,
        _max_log_days: u64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// Reclaims the old versions of rows a run changed, so their plaintext
    /// does not stay in the table's pages (PostgreSQL's VACUUM). Engines
    /// that purge or zero old versions themselves do nothing.
    async fn vacuum(&mut self, _table: &TableRef) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether this role may [`Store::vacuum`] the table: PostgreSQL lets
    /// only its owner (from 17, also a role granted MAINTAIN). True where
    /// there is nothing to reclaim.
    async fn may_vacuum(&mut self, _table: &TableRef) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Whether old row versions outlive a change until something reclaims
    /// them (PostgreSQL's MVCC), so a rule should say `vacuum_after`.
    fn keeps_old_versions(&self) -> bool {
        false
    }

    /// The database server's clock, or `None` where there is no server
    /// (SQLite shares this host's clock).
    async fn server_time(&mut self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(None)
    }

    /// How busy the server is, to pause between batches above a store's
    /// `max_load`: statements running now other than glemsel's own.
    /// `None` where there is no server (SQLite).
    async fn load(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// How far this server, a replica, is behind its primary: `None` when
    /// it cannot tell (replication is not running, or it is no replica).
    async fn replica_lag(&mut self) -> Result<Option<std::time::Duration>, StoreError> {
        Ok(None)
    }

    /// The TLS version of this connection as the server reports it;
    /// `None` when it is not encrypted (or there is none: SQLite).
    async fn tls_version(&mut self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    /// What the connected role may do to the audit table beyond the SELECT
    /// and INSERT it needs ("may UPDATE rows", "owns the table ..."); empty
    /// when nothing, or where there are no roles (SQLite).
    async fn audit_overreach(&mut self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// The statements a DBA runs so that `role` may do what `needs` lists
    /// and read and append to the audit table, and nothing more; `None`
    /// where the engine has no privileges (SQLite: the file's permissions).
    async fn grants(
        &mut self,
        _needs: &grants::Needs,
        _role: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        Ok(None)
    }

    /// How `table` is partitioned; its partitions when by range on the
    /// event column `event` alone (a plain column, or on MariaDB
    /// `TO_DAYS(event)`, `UNIX_TIMESTAMP(event)`).
    async fn range_partitions(
        &mut self,
        _table: &TableRef,
        _event: &Column,
    ) -> Result<Partitioning, StoreError> {
        Ok(Partitioning::None)
    }

    /// Whether this role may drop partitions of `table` (PostgreSQL: owns
    /// it and its partitions; MariaDB: ALTER and DROP on it).
    async fn may_drop_partitions(&mut self, _table: &TableRef) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// The exact number of rows in one partition.
    async fn count_partition(
        &mut self,
        table: &TableRef,
        _partition: &RangePartition,
    ) -> Result<u64, StoreError> {
        Err(StoreError::invalid(
            self.name(),
            "partition count",
            format!("{table} has no partitions here"),
        ))
    }

    /// The table a partition's rows are held in between being taken out
    /// of `table` and dropped: on PostgreSQL the detached partition itself;
    /// on MariaDB a table `glemsel_held_<hash>` beside it.
    fn held_table(&self, _table: &TableRef, partition: &RangePartition) -> TableRef {
        partition.name.clone()
    }

    /// Takes one partition out of `table`, its rows intact in `held`,
    /// where no insert into the table reaches them: locks the table
    /// (waiting at most the lock timeout), makes sure the partition is
    /// still there with `partition.bounds`, then detaches it, marking it
    /// for the next run should this one stop before the drop (PostgreSQL,
    /// inside the caller's transaction), or converts it to the table
    /// `held` (MariaDB, atomic, committing by itself). `None` when the
    /// partition changed or went meanwhile (then nothing changed).
    async fn take_out_partition(
        &mut self,
        table: &TableRef,
        _partition: &RangePartition,
        _held: &TableRef,
    ) -> Result<Option<HeldPartition>, StoreError> {
        Err(StoreError::invalid(
            self.name(),
            "partition take-out",
            format!("{table} has no partitions here"),
        ))
    }

    /// The exact number of rows in a held partition, which no insert
    /// reaches any more; on PostgreSQL it is locked first, inside the
    /// caller's transaction, so that the drop removes what was counted.
    async fn count_held(&mut self, held: &TableRef) -> Result<u64, StoreError> {
        Err(StoreError::invalid(
            self.name(),
            "held partition count",
            format!("{held} is no held partition here"),
        ))
    }

    /// Drops a held partition (inside the caller's transaction where DDL
    /// is transactional).
    async fn drop_held(&mut self, held: &TableRef) -> Result<(), StoreError> {
        Err(StoreError::invalid(
            self.name(),
            "held partition drop",
            format!("{held} is no held partition here"),
        ))
    }

    /// The partitions of `table` an earlier run took out and did not drop
    /// (it was stopped or crashed in between); `audited` names the table
    /// as the rule's audit rows do.
    async fn held_partitions(
        &mut self,
        _table: &TableRef,
        _audited: &str,
    ) -> Result<Vec<HeldPartition>, StoreError> {
        Ok(Vec::new())
    }

    /// Whether taking out and dropping a partition commit by themselves
    /// (MariaDB: DDL is not transactional), so its audit rows go in
    /// transactions of their own: an intent before it is taken out, and
    /// its count before the drop.
    fn partition_ddl_commits(&self) -> bool {
        false
    }

    async fn begin(&mut self) -> Result<(), StoreError>;
    async fn commit(&mut self) -> Result<(), StoreError>;
    async fn rollback(&mut self) -> Result<(), StoreError>;

    /// Deletes or pseudonymises the due rows in `window` (and, for a delete
    /// with cascades, their children first); returns how many of each.
    /// Tokens are computed with `key` in this process, never in the database.
    /// With `limit`, at most that many rows of the step's table change, the
    /// first due ones in key order, and [`Changed::limited`] says whether
    /// the limit was reached.
    async fn mutate(
        &mut self,
        step: &Step,
        window: &Window,
        key: Option<&HmacKey>,
        limit: Option<u64>,
    ) -> Result<Changed, StoreError> {
        flow::mutate(self.sql().0, step, window, key, limit).await
    }

    /// The next `limit` rows' keys (`key` columns, in key order, after
    /// `after`) and the text of `columns`, for erasure to hash in the worker.
    async fn erasure_read(
        &mut self,
        table: &TableRef,
        key: &[Column],
        columns: &[Column],
        after: Option<&Key>,
        limit: u64,
    ) -> Result<Vec<erasure::ReadRow>, StoreError> {
        erasure::read(self.sql().0, table, key, columns, after, limit).await
    }

    /// How many rows have `columns` equal to one of `values`.
    async fn erasure_count(
        &mut self,
        table: &TableRef,
        columns: &[Column],
        values: &[Key],
    ) -> Result<u64, StoreError> {
        erasure::count(self.sql().0, table, columns, values).await
    }

    /// Of the rows with keys `keys`, the latest event the step's due
    /// condition will reach, and how many of them it cannot date.
    async fn erasure_kept(
        &mut self,
        step: &Step,
        key: &[Column],
        keys: &[Key],
    ) -> Result<(Option<chrono::NaiveDateTime>, u64), StoreError> {
        erasure::kept(self.sql().0, step, key, keys).await
    }

    /// Deletes the rows whose `columns` equal one of `values`.
    async fn erasure_delete(
        &mut self,
        table: &TableRef,
        columns: &[Column],
        values: &[Key],
    ) -> Result<u64, StoreError> {
        erasure::delete(self.sql().0, table, columns, values).await
    }

    /// Overwrites `columns` of the row with `key`, unless it is held now.
    async fn erasure_update(
        &mut self,
        table: &TableRef,
        key_columns: &[Column],
        hold: Option<&Column>,
        key: &Key,
        columns: &[(String, Option<String>)],
    ) -> Result<u64, StoreError> {
        erasure::update(self.sql().0, table, key_columns, hold, key, columns).await
    }

    /// Of `keys`, the rows there and not held now, locked for the delete.
    async fn erasure_lock(
        &mut self,
        table: &TableRef,
        key_columns: &[Column],
        hold: Option<&Column>,
        keys: &[Key],
    ) -> Result<Vec<Key>, StoreError> {
        erasure::lock(self.sql().0, table, key_columns, hold, keys).await
    }

    /// Creates the audit table if it is missing.
    async fn ensure_audit_table(&mut self) -> Result<(), StoreError>;
    /// The newest row of the audit chain, read without locking anything.
    async fn audit_head(&mut self) -> Result<Option<ChainLink>, StoreError>;
    /// The newest row of the audit chain, for appending: call it inside the
    /// transaction that appends. Other appenders (other rules, other hosts)
    /// wait until that transaction ends, so the chain stays linear.
    async fn audit_tail(&mut self) -> Result<Option<ChainLink>, StoreError>;
    async fn audit_insert(&mut self, record: &AuditRecord) -> Result<(), StoreError>;
    /// When the rule's last run finished (the daemon's catch-up reads it).
    async fn audit_last_run(&mut self, rule_id: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Audit rows with `seq > after_seq`, in order, at most `limit`.
    async fn audit_records(
        &mut self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// Audit rows matching `filter`, at most `limit`, from `cursor` on.
    async fn audit_search(
        &mut self,
        filter: &AuditFilter,
        cursor: AuditCursor,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// Takes the cross-host lock for `name` if it is free; held by this
    /// connection until [`Store::unlock`] or disconnect.
    async fn try_lock(&mut self, name: &str) -> Result<bool, StoreError>;
    async fn unlock(&mut self, name: &str) -> Result<(), StoreError>;
}

/// Reads a store's connection string from where the config says it is.
pub(crate) fn connection_url(config: &StoreConfig) -> Result<String, StoreError> {
    let error = |message: String| StoreError::Config {
        store: config.name.clone(),
        message,
    };
    match &config.connection {
        Connection::UrlEnv(var) => {
            std::env::var(var).map_err(|_| error(format!("environment variable {var} is not set")))
        }
        Connection::Url(secret) => {
            let path = secret.path().map_err(error)?;
            std::fs::read_to_string(&path)
                .map(|url| url.trim().to_string())
                .map_err(|err| error(format!("cannot read {}: {err}", path.display())))
        }
        Connection::Path(path) => Ok(path.display().to_string()),
    }
}

/// What a session may wait for and how long it may run.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// How long a statement waits for a row lock before it gives up.
    pub lock_timeout: std::time::Duration,
    /// How long one statement may run before the server cancels it.
    pub statement_timeout: std::time::Duration,
}

impl SessionLimits {
    pub fn of(settings: &crate::rules::Settings) -> SessionLimits {
        SessionLimits {
            lock_timeout: settings.lock_timeout,
            statement_timeout: settings.statement_timeout,
        }
    }
}

/// How long opening a connection may take, handshake and login included.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Opens a connection to a configured store.
pub async fn connect(
    config: &StoreConfig,
    limits: SessionLimits,
) -> Result<Box<dyn Store>, StoreError> {
    let opening = async {
        Ok::<Box<dyn Store>, StoreError>(match config.engine {
            Engine::Postgres => Box::new(postgres::PostgresStore::connect(config, limits).await?),
            Engine::Mysql => Box::new(mysql::MysqlStore::connect(config, limits).await?),
            Engine::Sqlite => Box::new(sqlite::SqliteStore::open(config, limits)?),
        })
    };
    // A firewall that drops packets would otherwise hold a connect for minutes.
    tokio::time::timeout(CONNECT_TIMEOUT, opening)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Connect {
                store: config.name.clone(),
                message: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            })
        })
}
