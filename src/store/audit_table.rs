//! The audit table, declared once: its columns with their logical types and
//! how each is filled from a record. Every dialect derives its CREATE TABLE,
//! its insert and its reads from [`COLUMNS`], and every engine decodes rows
//! by column name through [`AuditRow`], so adding a column is one edit here
//! (plus the record field it stores).

use chrono::{DateTime, Utc};

use super::sql::{Dialect, Param, Query};
use crate::audit_record::{AuditEntry, AuditEvent, AuditRecord, ChainLink};
use crate::rules::TableRef;
use crate::step::Moment;

/// What an audit column holds; each dialect names the SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuditType {
    /// The chain's sequence number, the primary key.
    Seq,
    /// A signed 64-bit count.
    Count,
    /// Text of at most this many characters (`None`: unbounded).
    Text(Option<u16>),
    /// An entry's JSON detail: as long as the entry needs (an erasure
    /// status lists every row a request took, ~19 bytes each).
    Document,
    /// A hex SHA-256 or HMAC: 64 characters.
    Hash,
    /// An instant, to the microsecond.
    Instant,
}

/// One column of the audit table.
pub(crate) struct AuditColumn {
    pub name: &'static str,
    pub kind: AuditType,
    pub nullable: bool,
    /// The value an insert binds for a record.
    pub value: fn(&AuditRecord) -> Param,
}

const fn column(
    name: &'static str,
    kind: AuditType,
    value: fn(&AuditRecord) -> Param,
) -> AuditColumn {
    AuditColumn {
        name,
        kind,
        nullable: false,
        value,
    }
}

impl AuditColumn {
    const fn nullable(self) -> AuditColumn {
        AuditColumn {
            nullable: true,
            ..self
        }
    }
}

fn text(value: &str) -> Param {
    Param::Text(value.to_string())
}

fn instant(at: DateTime<Utc>) -> Param {
    Param::Moment(Moment::Instant(at))
}

use AuditType::{Count, Document, Hash, Instant, Seq, Text};

/// The audit table's columns, in the order tables have always been created
/// with (existing tables keep working: same names, types and order).
pub(crate) const COLUMNS: [AuditColumn; 20] = [
    column("seq", Seq, |r| Param::Int(r.seq)),
    column("run_id", Text(Some(64)), |r| text(&r.entry.run_id)),
    column("event", Text(Some(16)), |r| text(r.entry.event.as_str())),
    column("rule_id", Text(Some(128)), |r| text(&r.entry.rule_id)),
    column("store", Text(Some(128)), |r| text(&r.entry.store)),
    column("table_name", Text(Some(300)), |r| text(&r.entry.table_name)),
    column("action", Text(Some(16)), |r| text(&r.entry.action)),
    column("rows_affected", Count, |r| Param::Int(r.entry.rows)),
    column("key_from", Text(None), |r| {
        Param::OptText(r.entry.key_from.clone())
    })
    .nullable(),
    column("key_to", Text(None), |r| {
        Param::OptText(r.entry.key_to.clone())
    })
    .nullable(),
    column("as_of", Instant, |r| instant(r.entry.as_of)),
    column("cutoff", Text(None), |r| text(&r.entry.cutoff)),
    column("rule_hash", Hash, |r| text(&r.entry.rule_hash)),
    column("key_id", Text(Some(32)), |r| {
        Param::OptText(r.entry.key_id.clone())
    })
    .nullable(),
    column("at", Instant, |r| instant(r.entry.at)),
    column("host", Text(Some(255)), |r| text(&r.entry.host)),
    column("version", Text(Some(32)), |r| text(&r.entry.version)),
    column("detail", Document, |r| text(&r.entry.detail)),
    column("prev_hash", Hash, |r| text(&r.prev_hash)),
    column("row_hash", Hash, |r| text(&r.row_hash)),
];

/// Every column's name, in table order: what a full read selects.
pub(crate) fn names() -> [&'static str; 20] {
    COLUMNS.map(|c| c.name)
}

/// The columns the chain's head is read from.
pub(crate) const HEAD_COLUMNS: [&str; 3] = ["seq", "row_hash", "at"];

/// The audit table's definition (`table` quoted): what a run creates when
/// it is missing, and what `glemsel grants` gives the DBA to create.
pub(crate) fn create_table(dialect: &dyn Dialect, table: &str) -> String {
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|c| {
            let constraint = match (c.kind, c.nullable) {
                (Seq, _) => " NOT NULL PRIMARY KEY",
                (_, false) => " NOT NULL",
                (_, true) => "",
            };
            format!("{} {}{constraint}", c.name, dialect.audit_type(c.kind))
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {table} ({}){}",
        columns.join(", "),
        dialect.audit_table_options()
    )
}

/// The newest row of the chain.
pub(crate) fn head<'d>(dialect: &'d dyn Dialect, audit_table: &TableRef) -> Query<'d> {
    let mut q = Query::new(dialect);
    let columns: Vec<String> = HEAD_COLUMNS.iter().map(|c| dialect.quote(c)).collect();
    let (table, seq) = (dialect.table(audit_table), dialect.quote("seq"));
    q.push("SELECT ")
        .push(&columns.join(", "))
        .push(" FROM ")
        .push(&table)
        .push(" ORDER BY ")
        .push(&seq)
        .push(" DESC LIMIT 1");
    q
}

/// One row of an audit read, whose values each engine reads by column name.
pub(crate) trait AuditRow {
    fn int(&self, column: &str) -> Result<i64, String>;
    fn text(&self, column: &str) -> Result<String, String>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, String>;
    fn instant(&self, column: &str) -> Result<DateTime<Utc>, String>;
}

/// A row whose values came without names, named by the columns its query
/// selected (in order).
pub(crate) struct Named<'r, V> {
    pub columns: &'r [&'static str],
    pub values: &'r [V],
}

impl<V> Named<'_, V> {
    pub fn get(&self, column: &str) -> Result<&V, String> {
        self.columns
            .iter()
            .position(|c| *c == column)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| format!("no column {column}"))
    }
}

/// A full audit row.
pub(crate) fn record(row: &impl AuditRow) -> Result<AuditRecord, String> {
    let event = row.text("event")?;
    Ok(AuditRecord {
        seq: row.int("seq")?,
        entry: AuditEntry {
            run_id: row.text("run_id")?,
            event: AuditEvent::parse(&event)
                .ok_or_else(|| format!("unknown audit event {event:?}"))?,
            rule_id: row.text("rule_id")?,
            store: row.text("store")?,
            table_name: row.text("table_name")?,
            action: row.text("action")?,
            rows: row.int("rows_affected")?,
            key_from: row.opt_text("key_from")?,
            key_to: row.opt_text("key_to")?,
            as_of: row.instant("as_of")?,
            cutoff: row.text("cutoff")?,
            rule_hash: row.text("rule_hash")?,
            key_id: row.opt_text("key_id")?,
            at: row.instant("at")?,
            host: row.text("host")?,
            version: row.text("version")?,
            detail: row.text("detail")?,
        },
        prev_hash: row.text("prev_hash")?,
        row_hash: row.text("row_hash")?,
    })
}

/// Audit rows as a full read (every column, in table order) selects them,
/// for engines whose rows come without names.
pub(crate) fn records<V>(rows: &[Vec<V>]) -> Result<Vec<AuditRecord>, String>
where
    for<'r> Named<'r, V>: AuditRow,
{
    let columns = names();
    rows.iter()
        .map(|values| {
            record(&Named {
                columns: &columns,
                values,
            })
        })
        .collect()
}

/// The chain's head, from a row of [`head`].
pub(crate) fn link(row: &impl AuditRow) -> Result<ChainLink, String> {
    Ok(ChainLink {
        seq: row.int("seq")?,
        row_hash: row.text("row_hash")?,
        at: row.instant("at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{mysql::MYSQL, postgres::Postgres, sqlite::Sqlite};

    /// The tables earlier versions created, so existing databases keep
    /// working: only `NOT NULL` on the primary key is now written out, and
    /// MySQL's `detail` is MEDIUMTEXT (TEXT stops at 64 KiB).
    #[test]
    fn each_dialect_creates_the_table_earlier_versions_created() {
        assert_eq!(
            create_table(&Postgres, "\"audit\""),
            "CREATE TABLE IF NOT EXISTS \"audit\" (\
             seq bigint NOT NULL PRIMARY KEY, run_id text NOT NULL, event text NOT NULL, rule_id text NOT NULL, \
             store text NOT NULL, table_name text NOT NULL, action text NOT NULL, rows_affected bigint NOT NULL, \
             key_from text, key_to text, as_of timestamptz NOT NULL, cutoff text NOT NULL, rule_hash text NOT NULL, \
             key_id text, at timestamptz NOT NULL, host text NOT NULL, version text NOT NULL, detail text NOT NULL, \
             prev_hash text NOT NULL, row_hash text NOT NULL)"
        );
        assert_eq!(
            create_table(&MYSQL, "`audit`"),
            "CREATE TABLE IF NOT EXISTS `audit` (\
             seq BIGINT NOT NULL PRIMARY KEY, run_id VARCHAR(64) NOT NULL, event VARCHAR(16) NOT NULL, \
             rule_id VARCHAR(128) NOT NULL, store VARCHAR(128) NOT NULL, table_name VARCHAR(300) NOT NULL, \
             action VARCHAR(16) NOT NULL, rows_affected BIGINT NOT NULL, key_from TEXT, key_to TEXT, \
             as_of DATETIME(6) NOT NULL, cutoff TEXT NOT NULL, rule_hash CHAR(64) NOT NULL, key_id VARCHAR(32), \
             at DATETIME(6) NOT NULL, host VARCHAR(255) NOT NULL, version VARCHAR(32) NOT NULL, detail MEDIUMTEXT NOT NULL, \
             prev_hash CHAR(64) NOT NULL, row_hash CHAR(64) NOT NULL\
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        );
        assert_eq!(
            create_table(&Sqlite, "\"audit\""),
            "CREATE TABLE IF NOT EXISTS \"audit\" (\
             seq INTEGER NOT NULL PRIMARY KEY, run_id TEXT NOT NULL, event TEXT NOT NULL, rule_id TEXT NOT NULL, \
             store TEXT NOT NULL, table_name TEXT NOT NULL, action TEXT NOT NULL, rows_affected INTEGER NOT NULL, \
             key_from TEXT, key_to TEXT, as_of TEXT NOT NULL, cutoff TEXT NOT NULL, rule_hash TEXT NOT NULL, \
             key_id TEXT, at TEXT NOT NULL, host TEXT NOT NULL, version TEXT NOT NULL, detail TEXT NOT NULL, \
             prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL)"
        );
    }

    #[test]
    fn a_named_row_reads_by_name_whatever_the_order() {
        let row = Named {
            columns: &["at", "seq"],
            values: &[1, 2],
        };
        assert_eq!(row.get("seq"), Ok(&2));
        assert_eq!(row.get("at"), Ok(&1));
        assert!(row.get("host").is_err());
    }
}
