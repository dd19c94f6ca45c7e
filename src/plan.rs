//! Policy + live schema → Plan: one [`Step`] per rule, with everything a
//! run needs already decided (the due bound, the walk key, token shapes).
//!
//! The dry-run report and the run are built from the same Step, and the
//! stores derive both the counts and the batch statements from it, so what
//! `plan` shows is what `run` touches.

use std::fmt;

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::period::Retention;
use crate::pseudonym::{ColumnAction, TokenShape, redacted_text};
use crate::rules::{Action, Diagnostic, Engine, Location, Rule, StoreConfig, TableRef};
use crate::store::{Column, ColumnKind, TableSchema};

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
    fn for_column(kind: ColumnKind, local: NaiveDateTime, zone: Tz) -> Moment {
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

/// The instant a wall-clock time names. Of an ambiguous time (autumn) the
/// earlier; a time that does not exist (spring) is moved back until it does,
/// so a bound never moves later than the wall clock says.
pub fn local_to_instant(local: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    let mut probe = local;
    loop {
        if let Some(at) = zone.from_local_datetime(&probe).earliest() {
            return at.with_timezone(&Utc);
        }
        probe -= chrono::TimeDelta::minutes(1);
    }
}

/// When rows are due: `event < bound`, unless the event is unusable.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DueCondition {
    pub event: Column,
    /// The first event time that is not due yet.
    pub bound: Moment,
    /// Half-open ranges `[from, to)` of values that mean "no date".
    pub empty_ranges: Vec<(Moment, Moment)>,
    /// Events before this are placeholders, never due (see [`EARLIEST_USABLE_DATE`]).
    pub floor: Moment,
}

/// One column change of a pseudonymising step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColumnChange {
    pub column: Column,
    pub action: ColumnAction,
    #[serde(skip)]
    pub token: Option<TokenShape>,
    /// What `redact` writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redacted: Option<String>,
}

impl ColumnChange {
    /// A LIKE pattern matching values already in their final form.
    pub fn done_pattern(&self) -> Option<String> {
        self.token.as_ref().map(TokenShape::like_pattern)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum StepAction {
    Delete,
    Pseudonymise { columns: Vec<ColumnChange> },
}

impl StepAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            StepAction::Delete => "delete",
            StepAction::Pseudonymise { .. } => "pseudonymise",
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
    pub due: DueCondition,
    /// The rule's extra condition (trusted SQL).
    #[serde(rename = "where")]
    pub filter: Option<String>,
    pub hold: Option<Column>,
    /// The unique key batches walk, in order.
    pub key: Vec<Column>,
    #[serde(flatten)]
    pub action: StepAction,
    pub max_rows: Option<u64>,
    pub batch_size: u64,
    pub rule_fingerprint: String,
}

/// Builds a rule's step against its live table. Every mismatch between the
/// rule and the schema is reported, located at the rule's line.
pub fn build_step(
    rule: &Rule,
    store: &StoreConfig,
    schema: &TableSchema,
    as_of: DateTime<Utc>,
) -> Result<Step, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut problem = |at: &Location, message: String| {
        problems.push(Diagnostic::new(at.clone(), Some(&rule.id), message));
    };
    // Messages name the table as the rule does, not as the catalog resolved it.
    let table = &rule.table;
    let column = |name: &str| schema.column(name);

    let event = match column(&rule.event) {
        Some(c) if c.kind.is_temporal() => Some(c.clone()),
        Some(c) => {
            problem(
                &rule.at.after,
                format!(
                    "after: column {:?} of {table} is {}, not a date or timestamp",
                    c.name, c.data_type
                ),
            );
            None
        }
        None => {
            problem(
                &rule.at.after,
                format!("after: {table} has no column {:?}", rule.event),
            );
            None
        }
    };

    let hold = rule.hold.as_ref().and_then(|name| {
        let at = rule.at.hold.as_ref().unwrap_or(&rule.at.rule);
        match column(name) {
            Some(c) if matches!(c.kind, ColumnKind::Boolean | ColumnKind::Integer) => {
                Some(c.clone())
            }
            Some(c) => {
                problem(
                    at,
                    format!(
                        "hold: column {name:?} of {table} is {}, not a boolean",
                        c.data_type
                    ),
                );
                None
            }
            None => {
                problem(at, format!("hold: {table} has no column {name:?}"));
                None
            }
        }
    });

    let key_names: Option<Vec<String>> = match &rule.key {
        Some(key) => {
            let at = rule.at.key.as_ref().unwrap_or(&rule.at.rule);
            // In index order, so each window is an index range, not a sort.
            let is_unique = std::iter::once(&schema.primary_key)
                .chain(&schema.unique_keys)
                .any(|unique| unique == key);
            let reordered = std::iter::once(&schema.primary_key)
                .chain(&schema.unique_keys)
                .find(|unique| {
                    let (mut a, mut b) = ((*unique).clone(), key.clone());
                    a.sort();
                    b.sort();
                    a == b
                });
            if let Some(missing) = key.iter().find(|k| column(k).is_none()) {
                problem(at, format!("key: {table} has no column {missing:?}"));
                None
            } else if is_unique {
                Some(key.clone())
            } else if let Some(index_order) = reordered {
                problem(
                    at,
                    format!(
                        "key: name the columns in the index's order: [{}]",
                        quoted_list(index_order)
                    ),
                );
                None
            } else {
                problem(
                    at,
                    format!(
                        "key: ({}) is not the primary key or a unique key of NOT NULL columns of {table}",
                        key.join(", ")
                    ),
                );
                None
            }
        }
        None if schema.primary_key.is_empty() => {
            problem(
                &rule.at.table,
                format!(
                    "{table} has no primary key; batches need a unique key to walk: name one with key = [\"<column>\", ...]"
                ),
            );
            None
        }
        None => Some(schema.primary_key.clone()),
    };
    let key: Vec<Column> = key_names
        .iter()
        .flatten()
        .filter_map(|name| column(name).cloned())
        .collect();

    let action = match &rule.action {
        Action::Delete => {
            // The database must not delete or change rows the rule did not
            // count, nor fail every run on rows it cannot delete.
            for fk in &schema.referenced_by {
                let effect = if fk.on_delete.widens() {
                    "would also change rows there without counting or auditing them"
                } else {
                    "would block deleting every row that still has rows there"
                };
                problem(
                    &rule.at.table,
                    format!(
                        "{} ({}) references {table} {}: deleting here {effect}; delete or pseudonymise that table's rows by a rule of their own first, or pseudonymise here instead",
                        fk.table,
                        fk.columns.join(", "),
                        fk.on_delete.as_sql()
                    ),
                );
            }
            Some(StepAction::Delete)
        }
        Action::Pseudonymise { columns } => {
            let mut changes = Vec::new();
            for (name, action) in columns {
                let at = rule.at.columns.get(name).unwrap_or(&rule.at.rule);
                let Some(c) = column(name) else {
                    problem(at, format!("columns: {table} has no column {name:?}"));
                    continue;
                };
                if key.iter().any(|k| k.name == *name) || schema.primary_key.contains(name) {
                    problem(
                        at,
                        format!(
                            "columns: {name:?} is part of the key of {table}; keys are never changed"
                        ),
                    );
                    continue;
                }
                if action.needs_text() && c.kind != ColumnKind::Text {
                    problem(
                        at,
                        format!(
                            "columns: {name:?} is {}; {} needs a text column",
                            c.data_type,
                            action.as_str()
                        ),
                    );
                    continue;
                }
                if let Some(fk) = schema
                    .referenced_by
                    .iter()
                    .find(|fk| fk.references.contains(name))
                {
                    problem(
                        at,
                        format!(
                            "columns: {name:?} is referenced by {} ({}); it cannot change",
                            fk.table,
                            fk.columns.join(", ")
                        ),
                    );
                    continue;
                }
                if *action == ColumnAction::Null && !c.nullable {
                    problem(
                        at,
                        format!(
                            "columns: {name:?} is NOT NULL, so it cannot be set to null; use redact or hmac"
                        ),
                    );
                    continue;
                }
                if let Some(max) = c.max_chars
                    && max < action.min_length()
                {
                    problem(
                        at,
                        format!(
                            "columns: {name:?} holds at most {max} characters; {} needs at least {}",
                            action.as_str(),
                            action.min_length()
                        ),
                    );
                    continue;
                }
                changes.push(ColumnChange {
                    column: c.clone(),
                    action: *action,
                    token: TokenShape::for_column(*action, c.max_chars),
                    redacted: (*action == ColumnAction::Redact).then(|| redacted_text(c.max_chars)),
                });
            }
            Some(StepAction::Pseudonymise { columns: changes })
        }
    };

    let (Some(event), Some(action), Some(_)) = (event, action, key_names) else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let due = due_condition(
        &rule.retention,
        event,
        &rule.empty_dates,
        store.time_zone,
        as_of,
    );
    Ok(Step {
        rule_id: rule.id.clone(),
        description: rule.description.clone(),
        store: store.name.clone(),
        engine: store.engine,
        table: rule.table.clone(),
        category: rule.category.clone(),
        retention: rule.retention.to_string(),
        as_of,
        due,
        filter: rule.filter.clone(),
        hold,
        key,
        action,
        max_rows: rule.max_rows,
        batch_size: rule.batch_size,
        rule_fingerprint: rule.fingerprint.clone(),
    })
}

/// Events before this are placeholders, not dates: NAV's 1753-01-01,
/// .NET's 0001-01-01, SQL Server's 1900-01-01 minus a day. Never due.
pub const EARLIEST_USABLE_DATE: NaiveDate = NaiveDate::from_ymd_opt(1900, 1, 1).expect("a date");

/// How far a time zone's offset can be from UTC: a date written into a
/// timestamptz column in any zone lies within this of its UTC day.
const MAX_ZONE_OFFSET: chrono::TimeDelta = chrono::TimeDelta::hours(14);

fn due_condition(
    retention: &Retention,
    event: Column,
    empty_dates: &[NaiveDate],
    zone: Tz,
    as_of: DateTime<Utc>,
) -> DueCondition {
    let now = as_of.with_timezone(&zone).naive_local();
    let bound = Moment::for_column(event.kind, retention.first_not_due(now), zone);
    let kind = event.kind;
    let midnight = |date: NaiveDate| date.and_time(NaiveTime::MIN);
    let day = |date: &NaiveDate| match kind {
        // An empty date in an instant column: the whole day, in any zone.
        ColumnKind::TimestampTz => (
            Moment::Instant(midnight(*date).and_utc() - MAX_ZONE_OFFSET),
            Moment::Instant(midnight(*date + Days::new(1)).and_utc() + MAX_ZONE_OFFSET),
        ),
        kind => (
            Moment::for_column(kind, midnight(*date), zone),
            Moment::for_column(kind, midnight(*date + Days::new(1)), zone),
        ),
    };
    let floor = match kind {
        ColumnKind::TimestampTz => {
            Moment::Instant(midnight(EARLIEST_USABLE_DATE).and_utc() + MAX_ZONE_OFFSET)
        }
        kind => Moment::for_column(kind, midnight(EARLIEST_USABLE_DATE), zone),
    };
    DueCondition {
        event,
        bound,
        empty_ranges: empty_dates
            .iter()
            .filter(|d| **d >= EARLIEST_USABLE_DATE)
            .map(day)
            .collect(),
        floor,
    }
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, kind: ColumnKind, nullable: bool, max_chars: Option<usize>) -> Column {
        Column {
            name: name.into(),
            data_type: format!("{kind:?}").to_lowercase(),
            kind,
            nullable,
            max_chars,
        }
    }

    #[test]
    fn bounds_follow_the_column_type_and_zone() {
        let retention = Retention {
            period: "5 years".parse().unwrap(),
            round_up: vec![crate::period::RoundUp::FinancialYearEnd { end_month: 6 }],
        };
        let zone: Tz = "Europe/Copenhagen".parse().unwrap();
        // 2022-06-30 22:30 UTC is already 1 July 00:30 in Copenhagen.
        let as_of = "2022-06-30T22:30:00Z".parse().unwrap();
        let date = due_condition(
            &retention,
            column("d", ColumnKind::Date, true, None),
            &[],
            zone,
            as_of,
        );
        assert_eq!(date.bound, Moment::Date("2017-07-01".parse().unwrap()));
        let naive = due_condition(
            &retention,
            column("t", ColumnKind::Timestamp, true, None),
            &[],
            zone,
            as_of,
        );
        assert_eq!(
            naive.bound,
            Moment::Timestamp("2017-07-01T00:00:00".parse().unwrap())
        );
        let instant = due_condition(
            &retention,
            column("t", ColumnKind::TimestampTz, true, None),
            &[],
            zone,
            as_of,
        );
        assert_eq!(
            instant.bound,
            Moment::Instant("2017-06-30T22:00:00Z".parse().unwrap())
        );
        // An hour earlier it is still 30 June in Copenhagen: one year less is due.
        let earlier = due_condition(
            &retention,
            column("d", ColumnKind::Date, true, None),
            &[],
            zone,
            "2022-06-30T21:30:00Z".parse().unwrap(),
        );
        assert_eq!(earlier.bound, Moment::Date("2016-07-01".parse().unwrap()));
    }

    #[test]
    fn nonexistent_local_times_move_back() {
        let zone: Tz = "Europe/Copenhagen".parse().unwrap();
        // 2026-03-29 02:30 does not exist in Copenhagen (clocks jump 02:00 → 03:00).
        let at = local_to_instant("2026-03-29T02:30:00".parse().unwrap(), zone);
        // The last wall-clock minute before the gap is 01:59 CET = 00:59 UTC.
        assert_eq!(at, "2026-03-29T00:59:00Z".parse::<DateTime<Utc>>().unwrap());
        // 2026-10-25 02:30 happens twice: the earlier one counts.
        let at = local_to_instant("2026-10-25T02:30:00".parse().unwrap(), zone);
        assert_eq!(at, "2026-10-25T00:30:00Z".parse::<DateTime<Utc>>().unwrap());
    }
}
