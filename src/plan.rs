//! Policy + live schema → Plan: one [`Step`] per rule, with everything a
//! run needs already decided (the due bound, the walk key, token shapes).
//!
//! The dry-run report and the run are built from the same Step, and the
//! stores derive both the counts and the batch statements from it, so what
//! `plan` shows is what `run` touches.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;

use crate::period::Retention;
use crate::pseudonym::{ColumnAction, TokenShape, redacted_text};
use crate::rules::{Action, Diagnostic, Location, Related, Rule, StoreConfig, TableRef};
use std::collections::BTreeMap;

use crate::schema::{Column, ColumnKind, ForeignKey, TableSchema};

pub use crate::period::local_to_instant;
pub use crate::step::{
    CascadeStep, ColumnChange, DueCondition, Event, EventSource, Hold, JoinStep, Moment,
    RelatedStep, Step, StepAction, StepTiming,
};

/// The live tables a step needs, by name as the rule writes them.
pub type Schemas = BTreeMap<TableRef, TableSchema>;

/// Every table a rule reads or changes, with where the rule names it.
pub fn tables_of(rule: &Rule) -> Vec<(&TableRef, &Location)> {
    let mut tables = vec![(&rule.table, &rule.at.table)];
    tables.extend(rule.joins.iter().map(|j| (&j.related.table, &j.related.at)));
    tables.extend(
        rule.hold_tables
            .iter()
            .map(|h| (&h.related.table, &h.related.at)),
    );
    tables.extend(
        rule.cascades
            .iter()
            .map(|c| (&c.related.table, &c.related.at)),
    );
    tables
}

/// Problems found while building one step.
struct Problems<'r> {
    rule: &'r Rule,
    found: Vec<Diagnostic>,
}

impl Problems<'_> {
    fn push(&mut self, at: &Location, message: String) {
        self.found
            .push(Diagnostic::new(at.clone(), Some(&self.rule.id), message));
    }
}

/// A related table's `on` pairs, checked against both tables.
fn related_step(
    what: &str,
    related: &Related,
    theirs: &TableSchema,
    ours: (&TableRef, &TableSchema),
    problems: &mut Problems<'_>,
) -> Option<RelatedStep> {
    let before = problems.found.len();
    for (their, our) in &related.on {
        if theirs.column(their).is_none() {
            problems.push(
                &related.at,
                format!("{what} {}: it has no column {their:?}", related.table),
            );
        }
        if ours.1.column(our).is_none() {
            problems.push(
                &related.at,
                format!("{what} {}: {} has no column {our:?}", related.table, ours.0),
            );
        }
    }
    (problems.found.len() == before).then(|| RelatedStep {
        table: related.table.clone(),
        on: related.on.clone(),
    })
}

/// Whether `columns` identify at most one row of the table: they include
/// its primary key or one of its unique keys of NOT NULL columns.
pub(crate) fn is_unique(schema: &TableSchema, columns: &[&String]) -> bool {
    std::iter::once(&schema.primary_key)
        .chain(&schema.unique_keys)
        .any(|unique| !unique.is_empty() && unique.iter().all(|c| columns.contains(&c)))
}

/// Whether a table, as the catalog resolved it, is one glemsel writes
/// itself (the store's audit trail). Compared without regard to case, and
/// by name alone where the audit table's schema is not given: refusing a
/// look-alike is cheap, deleting the trail is not.
fn is_owned(store: &StoreConfig, resolved: &TableRef) -> bool {
    let audit = &store.audit_table;
    resolved.name.eq_ignore_ascii_case(&audit.name)
        && match (&audit.schema, &resolved.schema) {
            (Some(ours), Some(theirs)) => ours.eq_ignore_ascii_case(theirs),
            _ => true,
        }
}

/// No rule changes, reads or holds on glemsel's own tables.
fn refuse_owned_tables(
    rule: &Rule,
    store: &StoreConfig,
    schemas: &Schemas,
    problems: &mut Problems<'_>,
) {
    let used = std::iter::once(("table", &rule.table, &rule.at.table))
        .chain(
            rule.joins
                .iter()
                .map(|j| ("join", &j.related.table, &j.related.at)),
        )
        .chain(
            rule.hold_tables
                .iter()
                .map(|h| ("hold_table", &h.related.table, &h.related.at)),
        )
        .chain(
            rule.cascades
                .iter()
                .map(|c| ("cascade", &c.related.table, &c.related.at)),
        );
    for (what, table, at) in used {
        if is_owned(store, &schemas[table].table) {
            problems.push(
                at,
                format!(
                    "{what} {table} is the audit trail of store {}; no rule may touch glemsel's own tables",
                    store.name
                ),
            );
        }
    }
}

/// The type a bound is expressed in for these sources: a date, a wall-clock
/// timestamp (dates then count from midnight), or an instant. Instants do
/// not mix with the others: which zone a wall-clock time is in is not known.
fn event_kind(sources: &[EventSource]) -> Result<ColumnKind, String> {
    let kinds: Vec<ColumnKind> = sources.iter().map(|s| s.column().kind).collect();
    if kinds.iter().all(|k| *k == ColumnKind::Date) {
        Ok(ColumnKind::Date)
    } else if kinds.iter().all(|k| *k == ColumnKind::TimestampTz) {
        Ok(ColumnKind::TimestampTz)
    } else if kinds.contains(&ColumnKind::TimestampTz) {
        Err("after mixes timestamps with a time zone and without; give them in one kind".into())
    } else {
        Ok(ColumnKind::Timestamp)
    }
}

/// Builds a rule's step against its live tables. Every mismatch between
/// the rule and the schema is reported, located at the rule's line.
pub fn build_step(
    rule: &Rule,
    store: &StoreConfig,
    schemas: &Schemas,
    as_of: DateTime<Utc>,
) -> Result<Step, Vec<Diagnostic>> {
    let mut problems = Problems {
        rule,
        found: Vec::new(),
    };
    // Messages name tables as the rule does, not as the catalog resolved them.
    let table = &rule.table;
    let schema = &schemas[table];
    let column = |name: &str| schema.column(name);
    refuse_owned_tables(rule, store, schemas, &mut problems);

    let joins = join_steps(rule, schemas, &mut problems);
    let (sources, kind) = event_sources(rule, schemas, &mut problems);
    let holds = hold_steps(rule, schemas, &mut problems);
    let key_names = walk_key(rule, schema, &mut problems);
    let key: Vec<Column> = key_names
        .iter()
        .flatten()
        .filter_map(|name| column(name).cloned())
        .collect();

    let (action, cascades) = step_action(rule, schemas, &key, &mut problems);

    let joins: Option<Vec<JoinStep>> = joins.into_iter().collect();
    let (Some(kind), Some(action), Some(_), Some(joins)) = (kind, action, key_names, joins) else {
        return Err(problems.found);
    };
    if !problems.found.is_empty() {
        return Err(problems.found);
    }
    let event = Event {
        sources,
        combine: rule.event.combine,
        kind,
    };
    let timing = StepTiming::of(&rule.timing, as_of);
    // A deadline is due a lead ahead: the bound a run uses is the one of
    // `as_of + lead`. A minimum's lead is zero: it never goes early.
    let due = due_condition(
        &rule.retention,
        event,
        &rule.empty_dates,
        store.time_zone,
        timing.acts_as_of,
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
        timing,
        due,
        filter: rule.filter.clone(),
        joins,
        holds,
        cascades,
        key,
        action,
        max_rows: rule.max_rows,
        vacuum_after: rule.vacuum_after,
        batch_size: rule.batch_size,
        batch_ms: rule.batch_ms,
        window: rule.window.clone(),
        pause_ms: rule.pause_ms,
        max_load: store.max_load,
        max_lag: store.max_lag,
        replicas: store.replicas.clone(),
        rows_only: rows_only(rule, schema),
        rule_fingerprint: rule.fingerprint.clone(),
    })
}

/// Why the rule's expired partitions may not be dropped whole, if so:
/// only a delete whose due condition is the event column alone, with
/// nothing that keeps rows and no other table affected, may drop rows
/// without looking at each.
fn rows_only(rule: &Rule, schema: &TableSchema) -> Option<String> {
    let reason = if !matches!(rule.action, Action::Delete) {
        "the rule does not delete"
    } else if !rule.drop_partitions {
        "the rule says partitions = \"rows\""
    } else if rule.hold.is_some() || !rule.hold_tables.is_empty() {
        "the rule has a hold"
    } else if rule.filter.is_some() {
        "the rule has a where condition"
    } else if !rule.joins.is_empty() || rule.event.sources.len() != 1 {
        "the rule's event is not one column of the table"
    } else if !rule.cascades.is_empty() {
        "the rule has cascades"
    } else if !schema.referenced_by.is_empty() {
        "foreign keys reference the table"
    } else {
        return None;
    };
    Some(reason.to_string())
}

/// What the step does to its rows, and for a delete the cascades it
/// takes along.
fn step_action(
    rule: &Rule,
    schemas: &Schemas,
    key: &[Column],
    problems: &mut Problems<'_>,
) -> (Option<StepAction>, Vec<CascadeStep>) {
    let schema = &schemas[&rule.table];
    match &rule.action {
        Action::Delete => (
            Some(StepAction::Delete),
            cascade_steps(rule, schemas, problems),
        ),
        Action::Pseudonymise { columns } => {
            let columns = column_changes(columns, schema, key, rule, problems);
            (Some(StepAction::Pseudonymise { columns }), Vec::new())
        }
        Action::Anonymise { columns } => {
            let columns = column_changes(columns, schema, key, rule, problems);
            (Some(StepAction::Anonymise { columns }), Vec::new())
        }
    }
}

/// The rule's joins; `None` for one whose related table does not fit.
fn join_steps(
    rule: &Rule,
    schemas: &Schemas,
    problems: &mut Problems<'_>,
) -> Vec<Option<JoinStep>> {
    let table = &rule.table;
    let schema = &schemas[table];
    rule.joins
        .iter()
        .map(|join| {
            let related = related_step(
                "join",
                &join.related,
                &schemas[&join.related.table],
                (table, schema),
                problems,
            )?;
            Some(JoinStep {
                name: join.name.clone(),
                related,
                open: join.open.clone(),
            })
        })
        .collect()
}

/// The event's columns, and the kind they share (`None` when they share none).
fn event_sources(
    rule: &Rule,
    schemas: &Schemas,
    problems: &mut Problems<'_>,
) -> (Vec<EventSource>, Option<ColumnKind>) {
    let table = &rule.table;
    let schema = &schemas[table];
    let mut sources = Vec::new();
    for source in &rule.event.sources {
        let (column, owner) = match &source.join {
            None => (schema.column(&source.column), table),
            Some(name) => {
                let index = rule
                    .joins
                    .iter()
                    .position(|j| &j.name == name)
                    .expect("validated");
                let owner = &rule.joins[index].related.table;
                (schemas[owner].column(&source.column), owner)
            }
        };
        match column {
            Some(c) if c.kind.is_temporal() => sources.push(match &source.join {
                None => EventSource::Own(c.clone()),
                Some(name) => EventSource::Joined {
                    join: rule
                        .joins
                        .iter()
                        .position(|j| &j.name == name)
                        .expect("validated"),
                    column: c.clone(),
                },
            }),
            Some(c) => problems.push(
                &rule.at.after,
                format!(
                    "after: column {:?} of {owner} is {}, not a date or timestamp",
                    c.name, c.data_type
                ),
            ),
            None => problems.push(
                &rule.at.after,
                format!("after: {owner} has no column {:?}", source.column),
            ),
        }
    }
    let kind = match event_kind(&sources) {
        Ok(kind) => Some(kind),
        Err(err) => {
            problems.push(&rule.at.after, err);
            None
        }
    };
    (sources, kind)
}

/// The hold column and hold tables that keep due rows.
fn hold_steps(rule: &Rule, schemas: &Schemas, problems: &mut Problems<'_>) -> Vec<Hold> {
    let table = &rule.table;
    let schema = &schemas[table];
    let column = |name: &str| schema.column(name);
    let mut holds = Vec::new();
    if let Some(name) = &rule.hold {
        let at = rule.at.hold.as_ref().unwrap_or(&rule.at.rule);
        match column(name) {
            Some(c) if matches!(c.kind, ColumnKind::Boolean | ColumnKind::Integer) => {
                holds.push(Hold::Column(c.clone()))
            }
            Some(c) => problems.push(
                at,
                format!(
                    "hold: column {name:?} of {table} is {}, not a boolean",
                    c.data_type
                ),
            ),
            None => problems.push(at, format!("hold: {table} has no column {name:?}")),
        }
    }
    for hold in &rule.hold_tables {
        if let Some(related) = related_step(
            "hold_table",
            &hold.related,
            &schemas[&hold.related.table],
            (table, schema),
            problems,
        ) {
            holds.push(Hold::Table {
                name: hold.name.clone(),
                related,
                filter: hold.filter.clone(),
            });
        }
    }
    holds
}

/// The names of the unique key batches walk: the rule's `key`, in index
/// order, or the primary key; `None` when there is none to walk.
fn walk_key(rule: &Rule, schema: &TableSchema, problems: &mut Problems<'_>) -> Option<Vec<String>> {
    let table = &rule.table;
    let column = |name: &str| schema.column(name);
    match &rule.key {
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
                problems.push(at, format!("key: {table} has no column {missing:?}"));
                None
            } else if is_unique {
                Some(key.clone())
            } else if let Some(index_order) = reordered {
                problems.push(
                    at,
                    format!(
                        "key: name the columns in the index's order: [{}]",
                        quoted_list(index_order)
                    ),
                );
                None
            } else {
                problems.push(
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
            problems.push(
                &rule.at.table,
                format!(
                    "{table} has no primary key; batches need a unique key to walk: name one with key = [\"<column>\", ...]"
                ),
            );
            None
        }
        None => Some(schema.primary_key.clone()),
    }
}

/// What a delete also deletes, parents before children are walked; the
/// foreign keys are checked once every cascade fits.
fn cascade_steps(rule: &Rule, schemas: &Schemas, problems: &mut Problems<'_>) -> Vec<CascadeStep> {
    let table = &rule.table;
    let mut cascades = Vec::new();
    for cascade in &rule.cascades {
        let parent = cascade.parent.as_ref().map(|p| {
            rule.cascades
                .iter()
                .position(|c| &c.related.table == p)
                .expect("validated")
        });
        let parent_table = cascade.parent.as_ref().unwrap_or(table);
        if let Some(related) = related_step(
            "cascade",
            &cascade.related,
            &schemas[&cascade.related.table],
            (parent_table, &schemas[parent_table]),
            problems,
        ) {
            let parent_schema = &schemas[parent_table];
            let ours: Vec<&String> = related.on.iter().map(|(_, ours)| ours).collect();
            if !is_unique(parent_schema, &ours) {
                problems.push(
                    &cascade.related.at,
                    format!(
                        "cascade {}: ({}) is not the primary key or a unique key of NOT NULL columns of {parent_table}; rows that are not due may share the value, and their {} rows would be deleted too. Cascade on a unique key",
                        cascade.related.table,
                        ours.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "),
                        cascade.related.table,
                    ),
                );
            }
            let parent_columns = related
                .on
                .iter()
                .filter_map(|(_, ours)| parent_schema.column(ours).cloned())
                .collect();
            cascades.push(CascadeStep {
                related,
                parent_columns,
                parent,
            });
        }
    }
    if cascades.len() == rule.cascades.len() {
        check_foreign_keys(rule, schemas, &cascades, problems);
    }
    cascades
}

/// The column changes of a pseudonymising or anonymising rule, each
/// checked against its column.
fn column_changes(
    columns: &[(String, ColumnAction)],
    schema: &TableSchema,
    key: &[Column],
    rule: &Rule,
    problems: &mut Problems<'_>,
) -> Vec<ColumnChange> {
    let table = &rule.table;
    let mut changes = Vec::new();
    for (name, action) in columns {
        let at = rule.at.columns.get(name).unwrap_or(&rule.at.rule);
        let Some(c) = schema.column(name) else {
            problems.push(at, format!("columns: {table} has no column {name:?}"));
            continue;
        };
        let anonymise = matches!(rule.action, Action::Anonymise { .. });
        if let Some(problem) = column_problem(name, *action, c, schema, key, table, anonymise) {
            problems.push(at, problem);
            continue;
        }
        let redacted = matches!(action, ColumnAction::Redact | ColumnAction::IpPrefix)
            .then(|| redacted_text(c.max_chars));
        changes.push(ColumnChange {
            column: c.clone(),
            action: *action,
            token: TokenShape::for_column(*action, c.max_chars),
            redacted,
        });
    }
    changes
}

/// Why `action` cannot be done to column `c`, if it cannot. The checks
/// run in this order and the first problem found is the one reported.
fn column_problem(
    name: &str,
    action: ColumnAction,
    c: &Column,
    schema: &TableSchema,
    key: &[Column],
    table: &TableRef,
    anonymise: bool,
) -> Option<String> {
    if key.iter().any(|k| k.name == name) || schema.primary_key.iter().any(|k| k == name) {
        return Some(format!(
            "columns: {name:?} is part of the key of {table}; keys are never changed"
        ));
    }
    type_problem(name, action, c)
        .or_else(|| constraint_problem(name, action, schema, table, anonymise))
        .or_else(|| value_problem(name, action, c, anonymise))
}

/// Whether the column's type takes the action: truncating needs a date
/// or a wall-clock timestamp, text actions need text.
fn type_problem(name: &str, action: ColumnAction, c: &Column) -> Option<String> {
    if let ColumnAction::Truncate(part) = action
        && c.kind != ColumnKind::Date
        && c.kind != ColumnKind::Timestamp
    {
        Some(match c.kind {
            ColumnKind::TimestampTz => format!(
                "columns: {name:?} is {}, an instant: which {} it falls in depends on the zone it is read in, so {} takes a date or a timestamp without time zone. Use null",
                c.data_type,
                part.as_str(),
                part.as_str()
            ),
            _ => format!(
                "columns: {name:?} is {}; {} needs a date or a timestamp",
                c.data_type,
                part.as_str()
            ),
        })
    } else if action.needs_text() && c.kind != ColumnKind::Text {
        Some(format!(
            "columns: {name:?} is {}; {} needs a text column",
            c.data_type,
            action.as_str()
        ))
    } else {
        None
    }
}

/// Whether the table's constraints let the column change: nothing may
/// reference it, a unique one must keep distinct values distinct, and a
/// foreign key column may only be emptied.
fn constraint_problem(
    name: &str,
    action: ColumnAction,
    schema: &TableSchema,
    table: &TableRef,
    anonymise: bool,
) -> Option<String> {
    let spreads = !matches!(
        action,
        ColumnAction::Hmac | ColumnAction::HmacEmail | ColumnAction::Null
    );
    if let Some(fk) = schema
        .referenced_by
        .iter()
        .find(|fk| fk.references.iter().any(|r| r == name))
    {
        Some(format!(
            "columns: {name:?} is referenced by {} ({}); it cannot change",
            fk.table,
            fk.columns.join(", ")
        ))
    } else if spreads && schema.unique_columns.iter().any(|u| u == name) {
        Some(format!(
            "columns: {name:?} is in a unique index of {table}; {}, so the second row would fail. Use {}null",
            if action == ColumnAction::Redact {
                "redact writes the same text into every row".to_string()
            } else {
                format!("{action} can give many rows the same value")
            },
            if anonymise {
                ""
            } else {
                "hmac (distinct values stay distinct) or "
            }
        ))
    } else if action != ColumnAction::Null && schema.foreign_key_columns.iter().any(|f| f == name) {
        Some(format!(
            "columns: {name:?} is a foreign key of {table}: a new value would point at no row of the table it references. Use null, or change the referenced table"
        ))
    } else {
        None
    }
}

/// Whether the new value fits the column: NULL only where allowed, a
/// prefix shorter than the column, a column long enough for what the
/// action writes.
fn value_problem(name: &str, action: ColumnAction, c: &Column, anonymise: bool) -> Option<String> {
    if action == ColumnAction::Null && !c.nullable {
        Some(format!(
            "columns: {name:?} is NOT NULL, so it cannot be set to null; use redact{}",
            if anonymise { "" } else { " or hmac" }
        ))
    } else if let ColumnAction::Prefix(n) = action
        && c.max_chars.is_some_and(|max| max <= usize::from(n))
    {
        Some(format!(
            "columns: {name:?} holds at most {} characters, so prefix:{n} would keep every value whole",
            c.max_chars.unwrap_or_default()
        ))
    } else {
        c.max_chars
            .filter(|max| *max < action.min_length())
            .map(|max| {
                format!(
                    "columns: {name:?} holds at most {max} characters; {} needs at least {}",
                    action.as_str(),
                    action.min_length()
                )
            })
    }
}

/// A delete must not be widened or blocked by a foreign key the rule does
/// not know of: every foreign key into a table it deletes from must be one
/// of its cascades (which delete the children first).
fn check_foreign_keys(
    rule: &Rule,
    schemas: &Schemas,
    cascades: &[CascadeStep],
    problems: &mut Problems<'_>,
) {
    let resolved = |table: &TableRef| &schemas[table].table;
    let deleted: Vec<(Option<usize>, &TableRef)> = std::iter::once((None, &rule.table))
        .chain(
            rule.cascades
                .iter()
                .enumerate()
                .map(|(i, c)| (Some(i), &c.related.table)),
        )
        .collect();
    for (index, table) in deleted {
        for fk in &schemas[table].referenced_by {
            let pairs = |fk: &ForeignKey| {
                let mut pairs: Vec<(String, String)> = fk
                    .columns
                    .iter()
                    .cloned()
                    .zip(fk.references.iter().cloned())
                    .collect();
                pairs.sort();
                pairs
            };
            let covered = cascades.iter().any(|cascade| {
                let mut on = cascade.related.on.clone();
                on.sort();
                cascade.parent == index
                    && resolved(&cascade.related.table) == &fk.table
                    && on == pairs(fk)
            });
            if covered {
                continue;
            }
            let effect = if fk.table == *resolved(table) {
                "refers to its own table, which a batch cannot order; pseudonymise instead"
                    .to_string()
            } else if fk.on_delete.widens() {
                format!(
                    "would also change rows there without counting or auditing them; declare it: [[rule.cascade]] table = {:?}, on = {{ {} }}",
                    fk.table.to_string(),
                    on_text(fk)
                )
            } else {
                format!(
                    "would block deleting every row that still has rows there; declare it as a [[rule.cascade]] (on = {{ {} }}), delete those rows by a rule of their own first, or pseudonymise instead",
                    on_text(fk)
                )
            };
            problems.push(
                &rule.at.table,
                format!(
                    "{} ({}) references {table} {}: deleting here {effect}",
                    fk.table,
                    fk.columns.join(", "),
                    fk.on_delete.as_sql()
                ),
            );
        }
    }
}

fn on_text(fk: &ForeignKey) -> String {
    fk.columns
        .iter()
        .zip(&fk.references)
        .map(|(c, r)| format!("{c} = {r:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Events before this are placeholders, not dates: NAV's 1753-01-01,
/// .NET's 0001-01-01, SQL Server's 1900-01-01 minus a day. Never due.
pub const EARLIEST_USABLE_DATE: NaiveDate = NaiveDate::from_ymd_opt(1900, 1, 1).expect("a date");

/// How far a time zone's offset can be from UTC: a date written into a
/// timestamptz column in any zone lies within this of its UTC day.
const MAX_ZONE_OFFSET: chrono::TimeDelta = chrono::TimeDelta::hours(14);

/// The first event value (in the type of an event of `kind`) that a run
/// at `as_of` does not find due: the bound of the due condition. Forecasts
/// ask it for later moments.
pub fn due_bound(
    retention: &Retention,
    kind: ColumnKind,
    zone: Tz,
    as_of: DateTime<Utc>,
) -> Moment {
    let now = as_of.with_timezone(&zone).naive_local();
    Moment::for_column(kind, retention.first_not_due(now), zone)
}

fn due_condition(
    retention: &Retention,
    event: Event,
    empty_dates: &[NaiveDate],
    zone: Tz,
    as_of: DateTime<Utc>,
) -> DueCondition {
    let bound = due_bound(retention, event.kind, zone, as_of);
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
    use crate::period::PeriodKind;
    use crate::rules::{Combine, Timing};

    fn event(column: Column) -> Event {
        Event {
            kind: column.kind,
            sources: vec![EventSource::Own(column)],
            combine: Combine::Latest,
        }
    }

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
            calendar: Default::default(),
        };
        let zone: Tz = "Europe/Copenhagen".parse().unwrap();
        // 2022-06-30 22:30 UTC is already 1 July 00:30 in Copenhagen.
        let as_of = "2022-06-30T22:30:00Z".parse().unwrap();
        let date = due_condition(
            &retention,
            event(column("d", ColumnKind::Date, true, None)),
            &[],
            zone,
            as_of,
        );
        assert_eq!(date.bound, Moment::Date("2017-07-01".parse().unwrap()));
        let naive = due_condition(
            &retention,
            event(column("t", ColumnKind::Timestamp, true, None)),
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
            event(column("t", ColumnKind::TimestampTz, true, None)),
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
            event(column("d", ColumnKind::Date, true, None)),
            &[],
            zone,
            "2022-06-30T21:30:00Z".parse().unwrap(),
        );
        assert_eq!(earlier.bound, Moment::Date("2016-07-01".parse().unwrap()));
    }

    fn timing(kind: PeriodKind, lead_hours: i64) -> Timing {
        Timing {
            kind,
            lead: chrono::TimeDelta::hours(lead_hours),
            lead_reason: None,
            max_duration: chrono::TimeDelta::hours(1),
            schedule: Some((
                "0 30 2 * * *".parse().unwrap(),
                "Europe/Copenhagen".parse().unwrap(),
            )),
            settle: Some(chrono::TimeDelta::hours(26)),
        }
    }

    /// A deadline's bound is the one of `as_of + lead`; a minimum's is the
    /// one of `as_of`. A purchase entered on 2026-09-01 with "no later than
    /// 30 days" must be gone before 2026-10-01 00:00: a daily 02:30 run
    /// (26 hours of lead) takes it on 30 September, a minimum on 1 October.
    #[test]
    fn deadlines_act_a_lead_ahead_and_minimums_never_do() {
        let thirty = Retention {
            period: "30 days".parse().unwrap(),
            round_up: vec![],
            calendar: Default::default(),
        };
        let zone: Tz = "Europe/Copenhagen".parse().unwrap();
        let entered: NaiveDate = "2026-09-01".parse().unwrap();
        let due_at = |kind, as_of: &str| {
            let as_of: DateTime<Utc> = as_of.parse().unwrap();
            let lead = if kind == PeriodKind::Deadline { 26 } else { 0 };
            let step_timing = StepTiming::of(&timing(kind, lead), as_of);
            let due = due_condition(
                &thirty,
                event(column("entered", ColumnKind::Date, true, None)),
                &[],
                zone,
                step_timing.acts_as_of,
            );
            let Moment::Date(bound) = due.bound else {
                panic!()
            };
            entered < bound
        };
        // 30 September, 02:30 Copenhagen: the deadline run takes it.
        assert!(due_at(PeriodKind::Deadline, "2026-09-30T00:30:00Z"));
        // The run the night before does not: 26 hours are not yet left.
        assert!(!due_at(PeriodKind::Deadline, "2026-09-29T00:30:00Z"));
        // A minimum waits for the end of the period, to the minute.
        assert!(!due_at(PeriodKind::Minimum, "2026-09-30T21:59:59Z"));
        assert!(due_at(PeriodKind::Minimum, "2026-09-30T22:00:00Z"));
    }

    #[test]
    fn the_latest_moment_rows_go() {
        let as_of: DateTime<Utc> = "2026-09-29T12:00:00Z".parse().unwrap();
        let deadline = StepTiming::of(&timing(PeriodKind::Deadline, 26), as_of);
        assert_eq!(deadline.lead_seconds, 26 * 3600);
        assert_eq!(deadline.acts_as_of, as_of + chrono::TimeDelta::hours(26));
        // The next 02:30 in Copenhagen (CEST), plus an hour for the run.
        assert_eq!(
            deadline.next_run,
            Some("2026-09-30T00:30:00Z".parse().unwrap())
        );
        assert_eq!(
            deadline.gone_by,
            Some("2026-09-30T01:30:00Z".parse().unwrap())
        );
        let minimum = StepTiming::of(&timing(PeriodKind::Minimum, 0), as_of);
        assert_eq!(minimum.acts_as_of, as_of);
        assert_eq!(minimum.gone_by, deadline.gone_by);
        // At a run's own time, that run is the next.
        let at_run = StepTiming::of(
            &timing(PeriodKind::Minimum, 0),
            "2026-09-30T00:30:00Z".parse().unwrap(),
        );
        assert_eq!(at_run.next_run, deadline.next_run);
        // Without a schedule nobody knows when the next run comes.
        let unscheduled = Timing {
            schedule: None,
            ..timing(PeriodKind::Deadline, 24)
        };
        assert_eq!(StepTiming::of(&unscheduled, as_of).gone_by, None);
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
