//! A [`Step`]: everything one rule's run needs, decided before any row is
//! touched, and its parts. Data only: the planner builds steps; the stores,
//! the walk and the run read them.

use std::fmt;

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;

use crate::generalise::ip_prefix;
use crate::period::{PeriodKind, local_to_instant};
use crate::pseudonym::{ColumnAction, HmacKey, TokenShape};
use crate::rules::{Combine, Engine, TableRef, Timing};
use crate::schema::{Column, ColumnKind};

/// A point in time in the type of the event column it is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Moment {
    Date(NaiveDate),
    /// Wall-clock time in the store's zone.
    Timestamp(NaiveDateTime),
    Instant(DateTime<Utc>),
}

impl fmt::Display for Moment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Moment::Date(d) => write!(f, "{d}"),
            Moment::Timestamp(t) => write!(f, "{}", t.format("%Y-%m-%d %H:%M:%S%.f")),
            Moment::Instant(i) => write!(f, "{}", i.format("%Y-%m-%dT%H:%M:%S%.fZ")),
        }
    }
}

impl Moment {
    /// `local` (wall-clock in `zone`) in the type a column of `kind` holds.
    pub(crate) fn for_column(kind: ColumnKind, local: NaiveDateTime, zone: Tz) -> Moment {
        match kind {
            ColumnKind::Date => Moment::Date(if local.time() == NaiveTime::MIN {
                local.date()
            } else {
                local.date() + Days::new(1)
            }),
            ColumnKind::TimestampTz => Moment::Instant(local_to_instant(local, zone)),
            _ => Moment::Timestamp(local),
        }
    }
}

/// Rows of another table that belong to each row of a step's table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RelatedStep {
    pub table: TableRef,
    /// `(their column, our column)` pairs.
    pub on: Vec<(String, String)>,
}

/// A joined table whose rows lend event times, or keep rows from being due.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JoinStep {
    pub name: String,
    pub related: RelatedStep,
    /// A related row matching this keeps the step's row from being due.
    pub open: Option<String>,
}

/// One event time of a row.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// A column of the step's table.
    Own(Column),
    /// A column of a joined table, aggregated over the related rows.
    Joined { join: usize, column: Column },
}

impl EventSource {
    pub fn column(&self) -> &Column {
        match self {
            EventSource::Own(column) | EventSource::Joined { column, .. } => column,
        }
    }
}

/// The event a row is judged by: one time, or the latest or earliest of
/// several (a time that is NULL or unusable does not take part).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    pub sources: Vec<EventSource>,
    pub combine: Combine,
    /// The type bounds are expressed in.
    pub kind: ColumnKind,
}

impl Event {
    /// The one column of the step's own table, when that is all there is
    /// (the SQL then compares it directly, which an index can serve).
    pub fn single(&self) -> Option<&Column> {
        match self.sources.as_slice() {
            [EventSource::Own(column)] => Some(column),
            _ => None,
        }
    }

    /// How reports name it: `contract_ended`, or `latest of (a, orders.b)`.
    pub fn describe(&self, joins: &[JoinStep]) -> String {
        let names: Vec<String> = self
            .sources
            .iter()
            .map(|source| match source {
                EventSource::Own(column) => column.name.clone(),
                EventSource::Joined { join, column } => {
                    format!("{}.{}", joins[*join].name, column.name)
                }
            })
            .collect();
        match names.as_slice() {
            [one] => one.clone(),
            _ => {
                let word = match self.combine {
                    Combine::Latest => "latest",
                    Combine::Earliest => "earliest",
                };
                format!("{word} of ({})", names.join(", "))
            }
        }
    }
}

/// When rows are due: `event < bound`, unless the event is unusable.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DueCondition {
    pub event: Event,
    /// The first event time that is not due yet.
    pub bound: Moment,
    /// Half-open ranges `[from, to)` of values that mean "no date".
    pub empty_ranges: Vec<(Moment, Moment)>,
    /// Events before this are placeholders, never due (see [`EARLIEST_USABLE_DATE`]).
    pub floor: Moment,
}

/// What keeps a due row: a flag column, or a listing in another table.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hold {
    Column(Column),
    Table {
        name: String,
        related: RelatedStep,
        filter: Option<String>,
    },
}

impl Hold {
    pub fn name(&self) -> &str {
        match self {
            Hold::Column(column) => &column.name,
            Hold::Table { name, .. } => name,
        }
    }
}

/// A table whose rows are deleted with their parents, children first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CascadeStep {
    /// `on` pairs are `(child column, parent column)`.
    pub related: RelatedStep,
    /// The parent's columns of `on`, in its order, with their types.
    pub parent_columns: Vec<Column>,
    /// Index of the cascade this hangs off; `None` for the step's table.
    pub parent: Option<usize>,
}

/// One column change of a pseudonymising or anonymising step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColumnChange {
    pub column: Column,
    pub action: ColumnAction,
    #[serde(skip)]
    pub token: Option<TokenShape>,
    /// What `redact` writes, and what `ip_prefix` writes for a value that
    /// is no IP address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redacted: Option<String>,
}

impl ColumnChange {
    /// The value the worker writes for `value`, or `None` when it is done
    /// already (a token, an IP prefix). `key` is needed for tokens only.
    pub fn worker_value(&self, key: Option<&HmacKey>, value: &str) -> Option<String> {
        match (&self.token, self.action) {
            (Some(shape), _) => {
                let key = key.expect("a token needs the key");
                (!shape.is_token(value)).then(|| shape.token(key, value))
            }
            (None, ColumnAction::IpPrefix) => {
                let redacted = self.redacted.as_deref().expect("ip_prefix has its text");
                let prefix = ip_prefix(value, self.column.max_chars, redacted);
                (prefix != value).then_some(prefix)
            }
            (None, other) => unreachable!("{other} is computed in SQL"),
        }
    }

    /// The most characters [`ColumnChange::worker_value`] can return: a
    /// token's length, or the longer of an IP prefix (at most 45
    /// characters, an IPv6 address's longest text) and the redacted text.
    pub fn longest_worker_value(&self) -> usize {
        match (&self.token, self.action) {
            (Some(shape), _) => shape.char_len(),
            (None, ColumnAction::IpPrefix) => self
                .redacted
                .as_deref()
                .map_or(0, |r| r.chars().count())
                .max(45),
            (None, other) => unreachable!("{other} is computed in SQL"),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum StepAction {
    Delete,
    Pseudonymise {
        columns: Vec<ColumnChange>,
    },
    /// Like pseudonymise, with no keyed tokens (check refuses them).
    Anonymise {
        columns: Vec<ColumnChange>,
    },
}

impl StepAction {
    pub fn is_delete(&self) -> bool {
        matches!(self, StepAction::Delete)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            StepAction::Delete => "delete",
            StepAction::Pseudonymise { .. } => "pseudonymise",
            StepAction::Anonymise { .. } => "anonymise",
        }
    }

    /// The column changes of an in-place action; `None` for a delete.
    pub fn columns(&self) -> Option<&[ColumnChange]> {
        match self {
            StepAction::Delete => None,
            StepAction::Pseudonymise { columns } | StepAction::Anonymise { columns } => {
                Some(columns)
            }
        }
    }
}

/// When a step's rows go, for the report: the kind of the period, how far
/// ahead of a deadline the step acts, and the latest moment the rows due
/// now will be gone.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepTiming {
    pub kind: PeriodKind,
    /// How long before the end of its period a row is due: 0 for a minimum.
    pub lead_seconds: i64,
    /// How the lead was arrived at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead_reason: Option<String>,
    /// The moment the due bound is computed for: `as_of` plus the lead.
    pub acts_as_of: DateTime<Utc>,
    pub max_duration_seconds: i64,
    /// The rule's schedule (its own or the config's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The first scheduled run at or after `as_of`.
    pub next_run: Option<DateTime<Utc>>,
    /// The latest moment the rows due now are gone: the next scheduled run
    /// plus `max_duration`. `None` without a schedule (they go when glemsel
    /// is run).
    pub gone_by: Option<DateTime<Utc>>,
}

impl StepTiming {
    pub(crate) fn of(timing: &Timing, as_of: DateTime<Utc>) -> StepTiming {
        let next_run = timing.schedule.as_ref().and_then(|(schedule, zone)| {
            schedule.next_after(as_of - chrono::TimeDelta::milliseconds(1), *zone)
        });
        StepTiming {
            kind: timing.kind,
            lead_seconds: timing.lead.num_seconds(),
            lead_reason: timing.lead_reason.clone(),
            acts_as_of: as_of + timing.lead,
            max_duration_seconds: timing.max_duration.num_seconds(),
            schedule: timing.schedule.as_ref().map(|(s, _)| s.to_string()),
            next_run,
            gone_by: next_run.map(|at| at + timing.max_duration),
        }
    }
}

/// Everything one rule's run needs, decided before any row is touched.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub rule_id: String,
    pub description: Option<String>,
    pub store: String,
    pub engine: Engine,
    pub table: TableRef,
    pub category: String,
    pub retention: String,
    pub as_of: DateTime<Utc>,
    /// Minimum or deadline; for a deadline, `due` is computed a lead ahead.
    pub timing: StepTiming,
    pub due: DueCondition,
    /// The rule's extra condition (trusted SQL).
    #[serde(rename = "where")]
    pub filter: Option<String>,
    pub joins: Vec<JoinStep>,
    pub holds: Vec<Hold>,
    pub cascades: Vec<CascadeStep>,
    /// The unique key batches walk, in order.
    pub key: Vec<Column>,
    #[serde(flatten)]
    pub action: StepAction,
    pub max_rows: Option<u64>,
    /// Reclaim old row versions after a run that changed rows.
    pub vacuum_after: bool,
    /// The first batch's size; later batches adapt to `batch_ms`.
    pub batch_size: u64,
    /// How long one batch should take; 0 keeps every batch at `batch_size` rows.
    pub batch_ms: u64,
    /// When the rule may run; a run stops after the batch in flight when
    /// it closes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<crate::limits::OperatingWindow>,
    /// A pause between batches, in milliseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub pause_ms: u64,
    /// Above this load on the store's server, batches wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_load: Option<u64>,
    /// Above this lag on any of `replicas`, batches wait.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "seconds")]
    pub max_lag: Option<std::time::Duration>,
    /// The store's replicas; where they are is not for reports.
    #[serde(skip)]
    pub replicas: Vec<crate::rules::StoreConfig>,
    /// Why partitions whose whole range is due may not be dropped whole
    /// (the rule has a hold, says `partitions = "rows"`, ...); `None` when
    /// they may, should the table be partitioned by range on the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_only: Option<String>,
    pub rule_fingerprint: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A length of time as seconds, for reports.
fn seconds<S: serde::Serializer>(
    span: &Option<std::time::Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match span {
        Some(span) => serializer.serialize_f64(span.as_secs_f64()),
        None => serializer.serialize_none(),
    }
}
