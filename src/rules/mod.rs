//! Rule and config files → a validated [`Policy`].
//!
//! Loading reads `glemsel.toml` and every rule file it names, and collects
//! every problem before reporting, each as `file:line:col: message` naming
//! the rule. A policy with any problem is never returned, so nothing can
//! reach a database from a file that did not validate.

mod config;
mod load;
pub mod names;
mod parse;
mod raw;
mod source;
mod subjects;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{NaiveDate, TimeDelta};
use chrono_tz::Tz;

pub use load::load;
pub use names::{TableRef, check_identifier};
pub use source::Location;
pub use subjects::{
    Normalise, Subject, SubjectTable, cascade_against_rule, cascade_into_kept, erasure_against_rule,
};
pub use validate::check_sql_fragment;

use crate::limits::OperatingWindow;
use crate::period::{Calendar, Period, PeriodKind, Retention};
use crate::pseudonym::ColumnAction;
use crate::schedule::Schedule;

/// The database engines glemsel can work in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Postgres,
    Mysql,
    Sqlite,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Sqlite => "sqlite",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file holding a secret: given by path, or by systemd credential name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    /// A name in `$CREDENTIALS_DIRECTORY` (systemd's `LoadCredential=`).
    Credential(String),
}

impl SecretSource {
    /// Where the secret is now. A credential needs the service's environment.
    pub fn path(&self) -> Result<PathBuf, String> {
        match self {
            SecretSource::File(path) => Ok(path.clone()),
            SecretSource::Credential(name) => std::env::var_os("CREDENTIALS_DIRECTORY")
                .map(|dir| PathBuf::from(dir).join(name))
                .ok_or_else(|| {
                    format!("credential {name:?} needs $CREDENTIALS_DIRECTORY, which systemd sets for LoadCredential=")
                }),
        }
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(path) => write!(f, "{}", path.display()),
            SecretSource::Credential(name) => write!(f, "credential {name}"),
        }
    }
}

/// Where a store's connection string comes from. Never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// An environment variable holding the URL.
    UrlEnv(String),
    /// A file or credential holding the URL.
    Url(SecretSource),
    /// The database file of an embedded store.
    Path(PathBuf),
}

/// How a server store's connection is protected (`tls` in `[stores.<name>]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Tls {
    /// Plain TCP or a Unix socket: fine on loopback, nowhere else.
    #[default]
    Disable,
    /// Encrypted, but the server's certificate is not checked (libpq's
    /// `sslmode=require`): it stops eavesdroppers, not an impostor.
    Require,
    /// Encrypted, and the server's certificate must chain to the CA in
    /// `ca_file` and name the host connected to.
    VerifyFull { ca_file: PathBuf },
}

impl Tls {
    /// The setting as the config writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Tls::Disable => "disable",
            Tls::Require => "require",
            Tls::VerifyFull { .. } => "verify-full",
        }
    }
}

/// One database glemsel works in, from `[stores.<name>]`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub name: String,
    pub engine: Engine,
    pub connection: Connection,
    pub audit_table: TableRef,
    /// The zone that timestamps without a time zone are written in.
    pub time_zone: Tz,
    /// Dates that mean "no date" in this database (NAV writes 1753-01-01).
    pub empty_dates: Vec<NaiveDate>,
    /// Encryption of the connection (servers; always `Disable` for SQLite).
    pub tls: Tls,
    /// When the store's rules may run, unless a rule has its own window.
    pub window: Option<OperatingWindow>,
    /// Above this many statements running on the server (besides glemsel's),
    /// batches wait.
    pub max_load: Option<u64>,
    /// The store's replicas, each as a store of its own (its URL, this
    /// store's engine and TLS), whose lag is checked before each batch.
    pub replicas: Vec<StoreConfig>,
    /// Above this lag on any replica, batches wait.
    pub max_lag: Option<Duration>,
    pub location: Location,
}

/// A column (or table) the coverage review was told to leave alone:
/// `[[coverage.allow]]` in `glemsel.toml`, with the reviewer's reason.
#[derive(Debug, Clone)]
pub struct CoverageAllow {
    /// Only in this store; every store when `None`.
    pub store: Option<String>,
    /// Matches a table of this name, in this schema if one is given.
    pub table: TableRef,
    /// These columns; every column of the table when empty.
    pub columns: Vec<String>,
    pub reason: String,
    pub at: Location,
}

impl CoverageAllow {
    /// Whether this entry covers `column` of `table` (as the catalog names it) in `store`.
    pub fn matches(&self, store: &str, table: &TableRef, column: &str) -> bool {
        self.store.as_deref().is_none_or(|s| s == store)
            && self.table.name == table.name
            && self
                .table
                .schema
                .as_ref()
                .is_none_or(|schema| Some(schema) == table.schema.as_ref())
            && (self.columns.is_empty() || self.columns.iter().any(|c| c == column))
    }
}

/// Deployment-wide settings from `glemsel.toml`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_file: PathBuf,
    pub timezone: Tz,
    /// Which days are working days; `None` when the config does not say
    /// (then no rule may count working days).
    pub calendar: Option<Calendar>,
    /// The HMAC key's file.
    pub key: Option<SecretSource>,
    /// The audit chain's key, when the chain is keyed.
    pub audit_key: Option<SecretSource>,
    /// The daemon's default schedule.
    pub schedule: Option<Schedule>,
    /// A deadline rule's lead when no schedule applies.
    pub lead: Option<TimeDelta>,
    /// Where the daemon serves metrics.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// A file each run appends its audit chain heads to, outside the database.
    pub audit_checkpoints: Option<PathBuf>,
    pub batch_size: u64,
    /// How long one batch transaction should take (0: fixed-size batches).
    pub batch_ms: u64,
    pub lock_timeout: Duration,
    /// How far glemsel's clock and a database server's may differ before a
    /// run refuses.
    pub max_clock_skew: Duration,
    /// The longest one statement may run before the server cancels it.
    pub statement_timeout: Duration,
    /// How long a server log may keep old row values before `check` and
    /// `plan` warn about it.
    pub copies_max_log_days: u64,
    /// While this file exists, runs stop after the batch in flight and
    /// none start.
    pub stop_file: Option<PathBuf>,
    /// The default pause between batches.
    pub pause_ms: u64,
    /// The longest a run waits for a limit (load) before it stops.
    pub max_pause: Duration,
    /// Columns the coverage review leaves alone (`[[coverage.allow]]`).
    pub coverage_allow: Vec<CoverageAllow>,
    /// The store whose audit chain holds the erasure ledger.
    pub erasure_store: Option<String>,
    /// The file every ledger entry is also appended to.
    pub erasure_ledger: Option<PathBuf>,
}

/// A data category (`[categories.<name>]`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Category {
    pub name: String,
    pub description: Option<String>,
    pub legal_basis: Option<String>,
    /// A floor: no rule of the category lets its data go before this
    /// period has passed since the rule's event.
    pub minimum: Option<Period>,
    /// A ceiling: every rule of the category has its data gone before
    /// this period has passed since the rule's event.
    pub deadline: Option<Period>,
}

/// What a rule does to a due row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Delete,
    /// Overwrite these columns in place; the row stays.
    Pseudonymise {
        columns: Vec<(String, ColumnAction)>,
    },
    /// Overwrite these columns in place so that nobody, key or no key, can
    /// tell whom the row was about: no keyed tokens, only NULL, fixed text
    /// and generalisations. The row stays.
    Anonymise {
        columns: Vec<(String, ColumnAction)>,
    },
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::Pseudonymise { .. } => "pseudonymise",
            Action::Anonymise { .. } => "anonymise",
        }
    }

    /// The columns an in-place action changes; `None` for a delete.
    pub fn columns(&self) -> Option<&[(String, ColumnAction)]> {
        match self {
            Action::Delete => None,
            Action::Pseudonymise { columns } | Action::Anonymise { columns } => Some(columns),
        }
    }
}

/// When a rule's rows go: the kind of its period, and for a deadline how
/// far ahead of it glemsel acts.
#[derive(Debug, Clone)]
pub struct Timing {
    pub kind: PeriodKind,
    /// How long before the end of its period a row is due: zero for a
    /// minimum, which never goes early.
    pub lead: TimeDelta,
    /// How the lead was arrived at, for reports.
    pub lead_reason: Option<String>,
    /// How long a run may take: a deadline's lead leaves this margin.
    pub max_duration: TimeDelta,
    /// The schedule the rule runs on (its own, else the config's), and the
    /// zone its fields are read in.
    pub schedule: Option<(Schedule, Tz)>,
    /// How long after a row comes due it is gone at the latest: the
    /// schedule's longest gap plus `max_duration`, or without a schedule
    /// the `lead` given. `None` when nobody can say.
    pub settle: Option<TimeDelta>,
}

/// Which of several event times a row is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    Latest,
    Earliest,
}

/// One event time: a column of the rule's table, or of a joined table
/// (aggregated over the related rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    pub join: Option<String>,
    pub column: String,
}

impl fmt::Display for EventRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.join {
            Some(join) => write!(f, "{join}.{}", self.column),
            None => f.write_str(&self.column),
        }
    }
}

/// What `after` says: the event times a period counts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub sources: Vec<EventRef>,
    pub combine: Combine,
}

impl EventSpec {
    /// Whether `column` of the rule's own table is one of the sources.
    pub fn uses_own(&self, column: &str) -> bool {
        self.sources
            .iter()
            .any(|s| s.join.is_none() && s.column == column)
    }
}

/// Rows of another table that belong to each row of the rule's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Related {
    pub table: TableRef,
    /// `(their column, our column)` pairs.
    pub on: Vec<(String, String)>,
    pub at: Location,
}

/// `[[rule.join]]`: a related table `after` may take event times from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub name: String,
    pub related: Related,
    /// A related row matching this keeps the rule's row from being due.
    pub open: Option<String>,
}

/// `[[rule.hold_table]]`: rows listed in another table are held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldTable {
    pub name: String,
    pub related: Related,
    pub filter: Option<String>,
}

/// `[[rule.cascade]]`: rows of another table deleted with their parents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cascade {
    pub related: Related,
    /// The cascade table this one hangs off; `None` for the rule's table.
    pub parent: Option<TableRef>,
}

/// Where each part of a rule was written, so schema errors found later can
/// point back at the line.
#[derive(Debug, Clone)]
pub struct RuleLocations {
    pub rule: Location,
    pub table: Location,
    pub after: Location,
    pub hold: Option<Location>,
    pub filter: Option<Location>,
    pub key: Option<Location>,
    pub columns: BTreeMap<String, Location>,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: Option<String>,
    pub store: String,
    pub table: TableRef,
    pub category: String,
    /// The event times the period counts from.
    pub event: EventSpec,
    pub joins: Vec<Join>,
    pub retention: Retention,
    /// Extra SQL condition (trusted, from the rule file) a row must meet.
    pub filter: Option<String>,
    /// A boolean column: rows where it is true (or NULL) are never touched.
    pub hold: Option<String>,
    pub hold_tables: Vec<HoldTable>,
    pub cascades: Vec<Cascade>,
    pub action: Action,
    /// A unique key to walk instead of the primary key.
    pub key: Option<Vec<String>>,
    /// Dates that mean "no date", in addition to the store's.
    pub empty_dates: Vec<NaiveDate>,
    pub max_rows: Option<u64>,
    /// Reclaim old row versions after a run that changed rows.
    pub vacuum_after: bool,
    /// Rows (or, along an integer key, key values) in the first batch.
    pub batch_size: u64,
    /// How long one batch transaction should take; later batches are sized
    /// to it. 0: every batch has `batch_size` rows.
    pub batch_ms: u64,
    /// When the daemon runs the rule (else the config's default).
    pub schedule: Option<Schedule>,
    /// `schedule = "manual"`: the daemon never runs the rule.
    pub manual: bool,
    /// When the rule may run (its own, else its store's).
    pub window: Option<OperatingWindow>,
    /// The pause between batches.
    pub pause_ms: u64,
    /// Whether partitions whose whole range is due may be dropped whole
    /// (`partitions = "drop"`, the default) rather than purged row by row.
    pub drop_partitions: bool,
    /// Minimum or deadline, and how early a deadline acts.
    pub timing: Timing,
    /// SHA-256 of the rule as written (canonical form), recorded in the audit trail.
    pub fingerprint: String,
    pub at: RuleLocations,
}

impl Rule {
    /// Whether the rule writes keyed tokens (and so needs the HMAC key).
    pub fn needs_key(&self) -> bool {
        matches!(self.action, Action::Pseudonymise { .. })
    }
}

/// Everything the files say, validated.
#[derive(Debug, Clone)]
pub struct Policy {
    pub settings: Settings,
    pub stores: BTreeMap<String, StoreConfig>,
    pub categories: BTreeMap<String, Category>,
    pub rules: Vec<Rule>,
    /// The kinds of person an erasure request may name (`[[subject]]`).
    pub subjects: Vec<Subject>,
    pub rule_files: Vec<PathBuf>,
}

impl Policy {
    /// Every subject's tables, with their subject, in declaration order.
    pub fn subject_tables(&self) -> impl Iterator<Item = (&Subject, &SubjectTable)> {
        self.subjects
            .iter()
            .flat_map(|s| s.tables.iter().map(move |t| (s, t)))
    }

    /// The subject a request's identifier names.
    pub fn subject_of(&self, identifier: &str) -> Option<&Subject> {
        self.subjects.iter().find(|s| s.names(identifier))
    }

    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Whether any rule pseudonymises (and so needs the HMAC key).
    pub fn needs_key(&self) -> bool {
        self.rules.iter().any(Rule::needs_key)
    }
}

/// One problem in a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub location: Location,
    pub rule: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(location: Location, rule: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            location,
            rule: rule.map(str::to_string),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(rule) => write!(f, "{}: rule {rule}: {}", self.location, self.message),
            None => write!(f, "{}: {}", self.location, self.message),
        }
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}
