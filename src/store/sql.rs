//! The statements every store runs, written once over a small [`Dialect`].
//!
//! Fragments are appended in text order and bind their values as they go,
//! so positional placeholders (`?`) always line up with their values.
//! Identifiers come only from validated rules and the catalog, and are
//! quoted by the dialect; every value is a bound parameter.

use crate::audit::{AuditEvent, AuditRecord};
use crate::plan::{ColumnChange, Moment, Step, StepAction};
use crate::pseudonym::{ColumnAction, LIKE_ESCAPE, PadBlocks, TokenShape};
use crate::rules::TableRef;
use crate::store::{Column, ColumnKind, Key, KeyValue, Window};

/// A value bound to a statement.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Bytes(Vec<u8>),
    Moment(Moment),
    /// A key value, compared with (and converted to) the key column's type.
    Key(KeyValue, Column),
}

/// What differs between SQL dialects in the statements glemsel writes.
pub(crate) trait Dialect: Sync {
    /// Quotes one identifier.
    fn quote(&self, ident: &str) -> String;

    /// The placeholder text for the `index`-th (1-based) parameter.
    fn placeholder(&self, index: usize, param: &Param) -> String;

    /// A table name, schema-qualified when the rule qualified it.
    fn table(&self, table: &TableRef) -> String {
        match &table.schema {
            Some(schema) => format!("{}.{}", self.quote(schema), self.quote(&table.name)),
            None => self.quote(&table.name),
        }
    }

    /// Whether a row comparison `(a, b) > (x, y)` is index-friendly here.
    fn row_values(&self) -> bool {
        false
    }

    /// An expression that is true for event values no calendar can use
    /// (PostgreSQL's infinities, MySQL's zero dates), beyond NULL and the
    /// configured empty dates.
    fn invalid_event(&self, _column_sql: &str, _column: &Column) -> Option<String> {
        None
    }

    /// How an event value (column or bound) is compared: SQLite keeps
    /// dates as text, so there both sides go through `julianday`.
    fn event_value(&self, sql: &str) -> String {
        sql.to_string()
    }

    /// The left side of the LIKE that recognises tokens. It must compare
    /// exactly (case and accents), whatever the column's collation.
    fn like_subject(&self, column_sql: &str) -> String {
        column_sql.to_string()
    }

    /// True when a row is under a hold. NULL counts as held: when nobody
    /// knows whether a dispute is open, the row must stay.
    fn held(&self, column_sql: &str, column: &Column) -> String {
        match column.kind {
            ColumnKind::Boolean => format!("COALESCE({column_sql}, TRUE)"),
            _ => format!("(COALESCE({column_sql}, 1) <> 0)"),
        }
    }

    /// A branch of the CASE that writes a column. MySQL needs both
    /// branches in one character set; assignment converts back.
    fn case_branch(&self, sql: &str) -> String {
        sql.to_string()
    }

    /// How a key column is selected so it can be bound back later.
    fn key_select(&self, column_sql: &str, _column: &Column) -> String {
        column_sql.to_string()
    }

    /// The HMAC token of `value_sql` in `shape`, computed in the database
    /// from the key's pad blocks.
    fn token(
        &self,
        query: &mut Query<'_>,
        value_sql: &str,
        shape: &TokenShape,
        blocks: &PadBlocks,
    ) -> String;
}

/// A statement under construction.
pub(crate) struct Query<'d> {
    dialect: &'d dyn Dialect,
    pub sql: String,
    pub params: Vec<Param>,
}

impl<'d> Query<'d> {
    pub fn new(dialect: &'d dyn Dialect) -> Self {
        Self {
            dialect,
            sql: String::new(),
            params: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.sql.push_str(text);
        self
    }

    /// Binds a value and returns its placeholder text (not yet pushed).
    pub fn bind(&mut self, param: Param) -> String {
        self.params.push(param);
        self.dialect
            .placeholder(self.params.len(), self.params.last().expect("just pushed"))
    }

    /// Binds a value and pushes its placeholder.
    pub fn push_bind(&mut self, param: Param) -> &mut Self {
        let placeholder = self.bind(param);
        self.push(&placeholder)
    }

    fn quote(&self, ident: &str) -> String {
        self.dialect.quote(ident)
    }
}

/// Pushes `WHERE` before the first condition and `AND` before the others.
struct Conditions {
    first: bool,
}

impl Conditions {
    fn new() -> Self {
        Self { first: true }
    }

    fn next(&mut self, q: &mut Query<'_>) {
        q.push(if self.first { " WHERE " } else { " AND " });
        self.first = false;
    }
}

fn push_undated(q: &mut Query<'_>, step: &Step) {
    let column = q.quote(&step.due.event.name);
    q.push("(").push(&column).push(" IS NULL OR ");
    push_unusable_values(q, step, &column);
    q.push(")");
}

/// Pushes `<event> <op> <moment>`, both sides as the dialect compares events.
fn push_event_compare(q: &mut Query<'_>, column: &str, op: &str, moment: Moment) {
    let event = q.dialect.event_value(column);
    let placeholder = q.bind(Param::Moment(moment));
    let bound = q.dialect.event_value(&placeholder);
    q.push(&event).push(op).push(&bound);
}

/// Alternatives joined by OR, for a non-NULL event: before the floor, in an
/// empty-date range, or invalid.
fn push_unusable_values(q: &mut Query<'_>, step: &Step, column: &str) {
    push_event_compare(q, column, " < ", step.due.floor);
    for (from, to) in &step.due.empty_ranges {
        q.push(" OR (");
        push_event_compare(q, column, " >= ", *from);
        q.push(" AND ");
        push_event_compare(q, column, " < ", *to);
        q.push(")");
    }
    if let Some(invalid) = q.dialect.invalid_event(column, &step.due.event) {
        q.push(" OR ").push(&invalid);
    }
}

/// Due: a usable event before the bound.
fn push_due(q: &mut Query<'_>, step: &Step) {
    let column = q.quote(&step.due.event.name);
    q.push("(");
    push_event_compare(q, &column, " < ", step.due.bound);
    q.push(" AND NOT (");
    push_unusable_values(q, step, &column);
    q.push("))");
}

fn push_scope(q: &mut Query<'_>, step: &Step) {
    match &step.filter {
        Some(filter) => q.push("(").push(filter).push(")"),
        None => q.push("1 = 1"),
    };
}

fn push_held(q: &mut Query<'_>, hold: &Column) {
    let held = q.dialect.held(&q.quote(&hold.name), hold);
    q.push(&held);
}

/// Whether a column still needs its change (so a re-run changes nothing).
fn push_column_pending(q: &mut Query<'_>, change: &ColumnChange) {
    let column = q.quote(&change.column.name);
    q.push("(").push(&column).push(" IS NOT NULL");
    match change.action {
        ColumnAction::Hmac | ColumnAction::HmacEmail => {
            let pattern = change.done_pattern().expect("token actions have a pattern");
            let subject = q.dialect.like_subject(&column);
            q.push(" AND ").push(&subject).push(" NOT LIKE ");
            q.push_bind(Param::Text(pattern));
            q.push(" ESCAPE ");
            q.push_bind(Param::Text(LIKE_ESCAPE.into()));
        }
        ColumnAction::Redact => {
            let redacted = change.redacted.clone().expect("redact has its text");
            q.push(" AND ").push(&column).push(" <> ");
            q.push_bind(Param::Text(redacted));
        }
        ColumnAction::Null => {}
    }
    q.push(")");
}

/// Whether any of a pseudonymising step's columns still needs its change.
fn push_pending(q: &mut Query<'_>, columns: &[ColumnChange]) {
    q.push("(");
    for (i, change) in columns.iter().enumerate() {
        if i > 0 {
            q.push(" OR ");
        }
        push_column_pending(q, change);
    }
    q.push(")");
}

/// One condition of a row class.
#[derive(Clone, Copy)]
enum Part {
    /// The rule's `where`.
    Scope,
    /// A usable event before the bound.
    Due,
    /// No usable event.
    Undated,
    /// Under a hold (`true`) or not (`false`).
    Held(bool),
    /// Still needs pseudonymising (`true`) or is done (`false`).
    Pending(bool),
}

/// The rows changed: in scope, due, not held, not yet done.
const TARGET: &[Part] = &[
    Part::Scope,
    Part::Due,
    Part::Held(false),
    Part::Pending(true),
];
/// The rows kept only by a hold.
const HELD: &[Part] = &[
    Part::Scope,
    Part::Due,
    Part::Held(true),
    Part::Pending(true),
];
const UNDATED: &[Part] = &[Part::Scope, Part::Undated];
const DONE: &[Part] = &[Part::Scope, Part::Due, Part::Pending(false)];

/// Pushes a row class as one parenthesised conjunction. Every count and
/// every batch statement is built here, so a dry run and a run cannot
/// disagree about which rows a rule touches.
fn push_rows(q: &mut Query<'_>, step: &Step, parts: &[Part]) {
    let columns = match &step.action {
        StepAction::Pseudonymise { columns } => Some(columns.as_slice()),
        StepAction::Delete => None,
    };
    // A class that cannot hold any row on this step.
    let impossible = parts.iter().any(|part| match part {
        Part::Held(true) => step.hold.is_none(),
        Part::Pending(false) => columns.is_none(),
        _ => false,
    });
    if impossible {
        q.push("(1 = 0)");
        return;
    }
    q.push("(");
    let mut first = true;
    for part in parts {
        let mut and = |q: &mut Query<'_>| {
            if !first {
                q.push(" AND ");
            }
            first = false;
        };
        match (part, &step.hold, columns) {
            (Part::Scope, ..) => {
                and(q);
                push_scope(q, step);
            }
            (Part::Due, ..) => {
                and(q);
                push_due(q, step);
            }
            (Part::Undated, ..) => {
                and(q);
                push_undated(q, step);
            }
            (Part::Held(held), Some(hold), _) => {
                and(q);
                q.push(if *held { "" } else { "NOT " });
                push_held(q, hold);
            }
            (Part::Pending(pending), _, Some(columns)) => {
                and(q);
                q.push(if *pending { "" } else { "NOT " });
                push_pending(q, columns);
            }
            // No hold column: nothing is held. A delete: every row is pending.
            (Part::Held(_), None, _) | (Part::Pending(_), _, None) => {}
        }
    }
    q.push(")");
}

fn key_columns(q: &Query<'_>, step: &Step) -> Vec<String> {
    step.key.iter().map(|c| q.quote(&c.name)).collect()
}

/// `key > after` (`upper = false`) or `key <= through` (`upper = true`).
fn push_key_compare(q: &mut Query<'_>, step: &Step, key: &Key, upper: bool) {
    let columns = key_columns(q, step);
    let (strict, last) = if upper {
        (" < ", " <= ")
    } else {
        (" > ", " > ")
    };
    if columns.len() == 1 || q.dialect.row_values() {
        let wrap = columns.len() > 1;
        q.push(if wrap { "(" } else { "" });
        q.push(&columns.join(", "));
        q.push(if wrap { ")" } else { "" })
            .push(last)
            .push(if wrap { "(" } else { "" });
        for (i, value) in key.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.push_bind(Param::Key(value.clone(), step.key[i].clone()));
        }
        q.push(if wrap { ")" } else { "" });
        return;
    }
    // (a, b) > (x, y)  ≡  a > x OR (a = x AND b > y), which every optimiser
    // turns into index ranges.
    q.push("(");
    for i in 0..columns.len() {
        if i > 0 {
            q.push(" OR ");
        }
        q.push("(");
        for j in 0..i {
            q.push(&columns[j]).push(" = ");
            q.push_bind(Param::Key(key[j].clone(), step.key[j].clone()));
            q.push(" AND ");
        }
        let op = if i + 1 == columns.len() { last } else { strict };
        q.push(&columns[i]).push(op);
        q.push_bind(Param::Key(key[i].clone(), step.key[i].clone()));
        q.push(")");
    }
    q.push(")");
}

fn push_window(q: &mut Query<'_>, step: &Step, window: &Window, conditions: &mut Conditions) {
    if let Some(after) = &window.after {
        conditions.next(q);
        push_key_compare(q, step, after, false);
    }
    if let Some(through) = &window.through {
        conditions.next(q);
        push_key_compare(q, step, through, true);
    }
}

/// The dry-run counts: rows, due, held, undated, done, in one scan.
pub(crate) fn count<'d>(dialect: &'d dyn Dialect, step: &Step) -> Query<'d> {
    let mut q = Query::new(dialect);
    q.push("SELECT COUNT(*)");
    for class in [TARGET, HELD, UNDATED, DONE] {
        q.push(", COUNT(CASE WHEN ");
        push_rows(&mut q, step, class);
        q.push(" THEN 1 END)");
    }
    let table = dialect.table(&step.table);
    q.push(" FROM ").push(&table);
    q
}

/// The key `rows` rows past `after`: the upper end of the next window.
pub(crate) fn window_end<'d>(
    dialect: &'d dyn Dialect,
    step: &Step,
    after: Option<&Key>,
    rows: u64,
) -> Query<'d> {
    let mut q = Query::new(dialect);
    let selected: Vec<String> = step
        .key
        .iter()
        .map(|c| dialect.key_select(&dialect.quote(&c.name), c))
        .collect();
    let table = dialect.table(&step.table);
    q.push("SELECT ")
        .push(&selected.join(", "))
        .push(" FROM ")
        .push(&table);
    let mut conditions = Conditions::new();
    push_window(
        &mut q,
        step,
        &Window {
            after: after.cloned(),
            through: None,
        },
        &mut conditions,
    );
    let order = key_columns(&q, step).join(", ");
    q.push(" ORDER BY ").push(&order).push(" LIMIT 1 OFFSET ");
    q.push_bind(Param::Int(rows.saturating_sub(1) as i64));
    q
}

/// The batch statement: delete or pseudonymise the target rows in a window.
pub(crate) fn mutate<'d>(
    dialect: &'d dyn Dialect,
    step: &Step,
    window: &Window,
    blocks: Option<&PadBlocks>,
) -> Query<'d> {
    let mut q = Query::new(dialect);
    let table = dialect.table(&step.table);
    match &step.action {
        StepAction::Delete => {
            q.push("DELETE FROM ").push(&table);
        }
        StepAction::Pseudonymise { columns } => {
            q.push("UPDATE ").push(&table).push(" SET ");
            for (i, change) in columns.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                let column = q.quote(&change.column.name);
                q.push(&column).push(" = ");
                if change.action == ColumnAction::Null {
                    q.push("NULL");
                    continue;
                }
                // Only values still pending change: NULL stays NULL, and a
                // token is never hashed again.
                q.push("CASE WHEN ");
                push_column_pending(&mut q, change);
                q.push(" THEN ");
                let value = match &change.token {
                    Some(shape) => {
                        let blocks = blocks.expect("a pseudonymising step needs the key");
                        dialect.token(&mut q, &column, shape, blocks)
                    }
                    None => q.bind(Param::Text(
                        change.redacted.clone().expect("redact has its text"),
                    )),
                };
                let (value, unchanged) =
                    (dialect.case_branch(&value), dialect.case_branch(&column));
                q.push(&value).push(" ELSE ").push(&unchanged).push(" END");
            }
        }
    }
    let mut conditions = Conditions::new();
    push_window(&mut q, step, window, &mut conditions);
    conditions.next(&mut q);
    push_rows(&mut q, step, TARGET);
    q
}

/// The audit table's columns, in the order every store reads and writes them.
pub(crate) const AUDIT_COLUMNS: [&str; 20] = [
    "seq",
    "run_id",
    "event",
    "rule_id",
    "store",
    "table_name",
    "action",
    "rows_affected",
    "key_from",
    "key_to",
    "as_of",
    "cutoff",
    "rule_hash",
    "key_id",
    "at",
    "host",
    "version",
    "detail",
    "prev_hash",
    "row_hash",
];

pub(crate) fn audit_insert<'d>(
    dialect: &'d dyn Dialect,
    audit_table: &TableRef,
    record: &AuditRecord,
) -> Query<'d> {
    let mut q = Query::new(dialect);
    let e = &record.entry;
    let columns: Vec<String> = AUDIT_COLUMNS.iter().map(|c| dialect.quote(c)).collect();
    let table = dialect.table(audit_table);
    q.push("INSERT INTO ")
        .push(&table)
        .push(" (")
        .push(&columns.join(", "))
        .push(") VALUES (");
    let values = [
        Param::Int(record.seq),
        Param::Text(e.run_id.clone()),
        Param::Text(e.event.as_str().into()),
        Param::Text(e.rule_id.clone()),
        Param::Text(e.store.clone()),
        Param::Text(e.table_name.clone()),
        Param::Text(e.action.clone()),
        Param::Int(e.rows),
        Param::OptText(e.key_from.clone()),
        Param::OptText(e.key_to.clone()),
        Param::Moment(Moment::Instant(e.as_of)),
        Param::Text(e.cutoff.clone()),
        Param::Text(e.rule_hash.clone()),
        Param::OptText(e.key_id.clone()),
        Param::Moment(Moment::Instant(e.at)),
        Param::Text(e.host.clone()),
        Param::Text(e.version.clone()),
        Param::Text(e.detail.clone()),
        Param::Text(record.prev_hash.clone()),
        Param::Text(record.row_hash.clone()),
    ];
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push_bind(value);
    }
    q.push(")");
    q
}

/// Audit rows after a sequence number, in chain order.
pub(crate) fn audit_select<'d>(
    dialect: &'d dyn Dialect,
    audit_table: &TableRef,
    after_seq: i64,
    limit: u32,
) -> Query<'d> {
    let mut q = Query::new(dialect);
    let columns: Vec<String> = AUDIT_COLUMNS.iter().map(|c| dialect.quote(c)).collect();
    let table = dialect.table(audit_table);
    let seq = dialect.quote("seq");
    q.push("SELECT ")
        .push(&columns.join(", "))
        .push(" FROM ")
        .push(&table);
    q.push(" WHERE ").push(&seq).push(" > ");
    q.push_bind(Param::Int(after_seq));
    q.push(" ORDER BY ").push(&seq).push(" LIMIT ");
    q.push_bind(Param::Int(i64::from(limit)));
    q
}

/// When a rule's last run finished, in any status.
pub(crate) fn audit_last_run<'d>(
    dialect: &'d dyn Dialect,
    audit_table: &TableRef,
    rule_id: &str,
) -> Query<'d> {
    let mut q = Query::new(dialect);
    let table = dialect.table(audit_table);
    let (at, seq) = (dialect.quote("at"), dialect.quote("seq"));
    let (rule, event) = (dialect.quote("rule_id"), dialect.quote("event"));
    q.push("SELECT ").push(&at).push(" FROM ").push(&table);
    q.push(" WHERE ").push(&rule).push(" = ");
    q.push_bind(Param::Text(rule_id.into()));
    q.push(" AND ").push(&event).push(" = ");
    q.push_bind(Param::Text(AuditEvent::RunFinish.as_str().into()));
    q.push(" ORDER BY ").push(&seq).push(" DESC LIMIT 1");
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{DueCondition, StepAction};
    use crate::rules::Engine;

    /// A dialect with `?` placeholders, to check text order against binds.
    struct Positional;

    impl Dialect for Positional {
        fn quote(&self, ident: &str) -> String {
            format!("\"{}\"", ident.replace('"', "\"\""))
        }
        fn placeholder(&self, _index: usize, _param: &Param) -> String {
            "?".into()
        }
        fn token(
            &self,
            q: &mut Query<'_>,
            value_sql: &str,
            _shape: &TokenShape,
            _blocks: &PadBlocks,
        ) -> String {
            let key = q.bind(Param::Text("k".into()));
            format!("tok({key}, {value_sql})")
        }
    }

    fn column(name: &str, kind: ColumnKind) -> Column {
        Column {
            name: name.into(),
            data_type: "t".into(),
            kind,
            nullable: true,
            max_chars: Some(80),
        }
    }

    fn step(action: StepAction) -> Step {
        Step {
            rule_id: "r".into(),
            description: None,
            store: "s".into(),
            engine: Engine::Postgres,
            table: "CRONUS International Ltd_$Customer".parse().unwrap(),
            category: "c".into(),
            retention: "1 year".into(),
            as_of: "2026-01-01T00:00:00Z".parse().unwrap(),
            due: DueCondition {
                event: column("Last Date Modified", ColumnKind::Timestamp),
                bound: Moment::Date("2025-01-01".parse().unwrap()),
                empty_ranges: vec![(
                    Moment::Date("1980-01-01".parse().unwrap()),
                    Moment::Date("1980-01-02".parse().unwrap()),
                )],
                floor: Moment::Date("1900-01-01".parse().unwrap()),
            },
            filter: Some("\"Blocked\" = 0".into()),
            hold: Some(column("Hold", ColumnKind::Boolean)),
            key: vec![
                column("No_", ColumnKind::Text),
                column("Company", ColumnKind::Text),
            ],
            action,
            max_rows: None,
            batch_size: 100,
            rule_fingerprint: "f".into(),
        }
    }

    fn placeholders(q: &Query<'_>) -> usize {
        q.sql.matches('?').count()
    }

    #[test]
    fn delete_binds_in_text_order() {
        let step = step(StepAction::Delete);
        let window = Window {
            after: Some(vec![
                KeyValue::Text("C1".into()),
                KeyValue::Text("A".into()),
            ]),
            through: Some(vec![
                KeyValue::Text("C9".into()),
                KeyValue::Text("B".into()),
            ]),
        };
        let q = mutate(&Positional, &step, &window, None);
        assert_eq!(
            q.sql,
            "DELETE FROM \"CRONUS International Ltd_$Customer\" WHERE \
             ((\"No_\" > ?) OR (\"No_\" = ? AND \"Company\" > ?)) AND \
             ((\"No_\" < ?) OR (\"No_\" = ? AND \"Company\" <= ?)) AND \
             ((\"Blocked\" = 0) AND \
             (\"Last Date Modified\" < ? AND NOT (\"Last Date Modified\" < ? OR (\"Last Date Modified\" >= ? AND \"Last Date Modified\" < ?))) AND \
             NOT COALESCE(\"Hold\", TRUE))"
        );
        assert_eq!(placeholders(&q), q.params.len());
        let keys: Vec<String> = q
            .params
            .iter()
            .filter_map(|p| match p {
                Param::Key(KeyValue::Text(t), _) => Some(t.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(keys, ["C1", "C1", "A", "C9", "C9", "B"]);
        assert!(
            matches!(q.params[6], Param::Moment(Moment::Date(d)) if d.to_string() == "2025-01-01")
        );
    }

    #[test]
    fn update_guards_each_column_and_count_matches() {
        let change = |name: &str, action| ColumnChange {
            column: column(name, ColumnKind::Text),
            action,
            token: TokenShape::for_column(action, Some(80)),
            redacted: (action == ColumnAction::Redact).then(|| "[redacted]".to_string()),
        };
        let step = step(StepAction::Pseudonymise {
            columns: vec![
                change("E-Mail", ColumnAction::HmacEmail),
                change("Phone No_", ColumnAction::Null),
            ],
        });
        let blocks = crate::pseudonym::HmacKey::from_bytes(vec![1; 32]).pad_blocks();
        let q = mutate(&Positional, &step, &Window::default(), Some(&blocks));
        assert!(q.sql.starts_with(
            "UPDATE \"CRONUS International Ltd_$Customer\" SET \"E-Mail\" = CASE WHEN (\"E-Mail\" IS NOT NULL AND \"E-Mail\" NOT LIKE ? ESCAPE ?) THEN tok(?, \"E-Mail\") ELSE \"E-Mail\" END, \"Phone No_\" = NULL WHERE"
        ), "{}", q.sql);
        assert!(q.sql.ends_with("AND ((\"E-Mail\" IS NOT NULL AND \"E-Mail\" NOT LIKE ? ESCAPE ?) OR (\"Phone No_\" IS NOT NULL)))"), "{}", q.sql);
        assert_eq!(placeholders(&q), q.params.len());
        let count = count(&Positional, &step);
        assert_eq!(placeholders(&count), count.params.len());
        // What the dry run counts as due is, to the letter, what the batch changes.
        let counted_due = count
            .sql
            .split("COUNT(CASE WHEN ")
            .nth(1)
            .unwrap()
            .split(" THEN 1 END)")
            .next()
            .unwrap();
        assert!(
            q.sql.ends_with(&format!(" WHERE {counted_due}")),
            "{counted_due}\n{}",
            q.sql
        );
        assert!(count.sql.contains("COUNT(CASE WHEN ((\"Blocked\" = 0) AND (\"Last Date Modified\" IS NULL OR \"Last Date Modified\" < ? OR (\"Last Date Modified\" >= ? AND \"Last Date Modified\" < ?))) THEN 1 END)"), "{}", count.sql);
    }

    #[test]
    fn window_end_walks_from_the_last_key() {
        let step = step(StepAction::Delete);
        let q = window_end(
            &Positional,
            &step,
            Some(&vec![
                KeyValue::Text("C1".into()),
                KeyValue::Text("A".into()),
            ]),
            500,
        );
        assert!(
            q.sql
                .ends_with("ORDER BY \"No_\", \"Company\" LIMIT 1 OFFSET ?"),
            "{}",
            q.sql
        );
        assert!(matches!(q.params.last(), Some(Param::Int(499))));
        assert_eq!(placeholders(&q), q.params.len());
    }
}
