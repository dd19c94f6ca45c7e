//! The statements every store runs, written once over a small [`Dialect`].
//!
//! Fragments are appended in text order and bind their values as they go,
//! so positional placeholders (`?`) always line up with their values.
//! Identifiers come only from validated rules and the catalog, and are
//! quoted by the dialect; every value is a bound parameter.

use super::audit_table::{self, AuditType};
use crate::audit_record::{AuditCursor, AuditEvent, AuditFilter, AuditRecord};
use crate::generalise::DatePart;
use crate::pseudonym::{ColumnAction, TokenShape};
use crate::rules::Combine;
use crate::rules::TableRef;
use crate::step::{ColumnChange, EventSource, Hold, Moment, RelatedStep, Step, StepAction};
use crate::store::{Column, ColumnKind, Key, KeyEnd, KeyValue, Window};

/// A value bound to a statement.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    /// A list of texts, bound as one array (PostgreSQL only).
    TextList(Vec<Option<String>>),
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

    /// A date expression as a timestamp, to be compared with timestamps.
    fn to_timestamp(&self, sql: &str) -> String {
        format!("CAST({sql} AS TIMESTAMP)")
    }

    /// An event value (as [`Dialect::event_value`] gives it, of `kind`) as
    /// text the worker reads back ([`crate::store::erasure::event_of`]):
    /// `YYYY-MM-DD HH:MM:SS.ffffff` (an instant in UTC), or microseconds
    /// since 1970 where events are compared as such.
    fn event_text(&self, sql: &str, kind: ColumnKind) -> String;

    /// The function taking the latest (or earliest) of several values.
    fn greatest(&self, combine: Combine) -> &'static str {
        match combine {
            Combine::Latest => "GREATEST",
            Combine::Earliest => "LEAST",
        }
    }

    /// Appended to a SELECT to lock the rows it finds until the transaction
    /// ends; `None` where a transaction locks the whole database anyway.
    fn for_update(&self) -> Option<&'static str> {
        Some(" FOR UPDATE")
    }

    /// True when the value in `column_sql` is exactly a token of `shape`
    /// (compared by character, case-sensitively, whatever the collation).
    fn is_token(&self, q: &mut Query<'_>, column_sql: &str, shape: &TokenShape) -> String;

    /// A column's value as the text the worker hashes (or reads an IP
    /// address from).
    fn value_text(&self, column_sql: &str) -> String {
        column_sql.to_string()
    }

    /// True when the value in `column_sql` is exactly what `ip_prefix`
    /// writes for it (an IP prefix, or the redacted text): the same answer
    /// as [`crate::generalise::is_ip_prefix_done`] on the text the worker
    /// reads ([`Dialect::value_text`]).
    fn is_ip_prefix(&self, q: &mut Query<'_>, column_sql: &str, change: &ColumnChange) -> String;

    /// A date or timestamp column truncated to the first instant of its
    /// year or month, in the column's own type.
    fn truncated(&self, column_sql: &str, column: &Column, part: DatePart) -> String;

    /// The length of a text value in characters.
    fn char_length(&self, sql: &str) -> String {
        format!("CHAR_LENGTH({sql})")
    }

    /// The first `length_sql` characters of a text value.
    fn text_prefix(&self, sql: &str, length_sql: &str) -> String {
        format!("LEFT({sql}, {length_sql})")
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

    /// A derived table `glemsel_v` holding `rows` (each row: its key, then
    /// its tokens), its columns named `glemsel_k{i}` then `glemsel_t{i}`.
    /// By default [`portable_rows_source`].
    fn rows_source(&self, q: &mut Query<'_>, step: &Step, rows: &[TokenRow]) -> String {
        portable_rows_source(q, step, rows)
    }

    /// The most rows one [`Dialect::rows_source`] holds (beyond what
    /// [`Dialect::max_params`] allows).
    fn max_source_rows(&self) -> usize {
        usize::MAX
    }

    /// A key value of `glemsel_v`, as compared with the key column.
    fn source_key(&self, source_sql: &str, _column: &Column) -> String {
        source_sql.to_string()
    }

    /// `UPDATE t SET .. FROM source WHERE ..` (true) or, as MySQL writes
    /// it, `UPDATE t JOIN source ON .. SET .. WHERE ..` (false).
    fn update_from(&self) -> bool {
        true
    }

    /// The most parameters one statement may bind.
    fn max_params(&self) -> usize;

    /// The SQL type of an audit column.
    fn audit_type(&self, kind: AuditType) -> String;

    /// What follows the audit table's column list in its CREATE TABLE.
    fn audit_table_options(&self) -> &'static str {
        ""
    }

    /// How a single statement is limited to the first rows of its window.
    fn limit_form(&self) -> LimitForm {
        LimitForm::KeyIn
    }
}

/// [`Dialect::rows_source`]'s portable form: one SELECT per row, joined
/// by UNION ALL.
pub(crate) fn portable_rows_source(q: &mut Query<'_>, step: &Step, rows: &[TokenRow]) -> String {
    let key = &step.key;
    let mut sql = String::from("(");
    for (r, row) in rows.iter().enumerate() {
        sql.push_str(if r == 0 {
            "SELECT "
        } else {
            " UNION ALL SELECT "
        });
        let mut cells = Vec::new();
        for (i, value) in row.key.iter().enumerate() {
            let placeholder = q.bind(Param::Key(value.clone(), key[i].clone()));
            cells.push(if r == 0 {
                format!("{placeholder} AS glemsel_k{i}")
            } else {
                placeholder
            });
        }
        for (i, token) in row.tokens.iter().enumerate() {
            let placeholder = q.bind(Param::OptText(token.clone()));
            cells.push(if r == 0 {
                format!("{placeholder} AS glemsel_t{i}")
            } else {
                placeholder
            });
        }
        sql.push_str(&cells.join(", "));
    }
    sql.push_str(") AS glemsel_v");
    sql
}

/// How a delete or update is made to change at most `n` rows, the first
/// in key order, in one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitForm {
    /// `... WHERE <cond> ORDER BY <key> LIMIT n` (MySQL's single-table form).
    OrderByLimit,
    /// `... WHERE ctid = ANY(ARRAY(SELECT ctid ... LIMIT n)) AND <cond>`:
    /// PostgreSQL finds the rows by a TID scan, not a join.
    Ctid,
    /// `... WHERE (<key>) IN (SELECT <key> ... LIMIT n) AND <cond>`.
    KeyIn,
}

/// One row of a pseudonymising batch: its key, and per token column the
/// token the worker computed (`None`: the value stays as it is).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TokenRow {
    pub key: Key,
    pub tokens: Vec<Option<String>>,
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

/// The step's table as correlated subqueries refer to it.
fn main_name(q: &Query<'_>, step: &Step) -> String {
    q.quote(&step.table.name)
}

/// `alias.their = main.our AND ...`: a related row belongs to the main row.
fn push_related_match(q: &mut Query<'_>, alias: &str, related: &RelatedStep, main: &str) {
    for (i, (theirs, ours)) in related.on.iter().enumerate() {
        if i > 0 {
            q.push(" AND ");
        }
        let (theirs, ours) = (q.quote(theirs), q.quote(ours));
        q.push(alias)
            .push(".")
            .push(&theirs)
            .push(" = ")
            .push(main)
            .push(".")
            .push(&ours);
    }
}

/// Pushes `<event> <op> <moment>`, both sides as the dialect compares events.
fn push_event_compare(q: &mut Query<'_>, column: &str, op: &str, moment: Moment) {
    let event = q.dialect.event_value(column);
    let placeholder = q.bind(Param::Moment(moment));
    let bound = q.dialect.event_value(&placeholder);
    q.push(&event).push(op).push(&bound);
}

/// Alternatives joined by OR, for a non-NULL event value in `column`:
/// before the floor, in an empty-date range, or invalid.
fn push_unusable_values(q: &mut Query<'_>, step: &Step, column: &str, kind: &Column) {
    push_event_compare(q, column, " < ", step.due.floor);
    for (from, to) in &step.due.empty_ranges {
        q.push(" OR (");
        push_event_compare(q, column, " >= ", *from);
        q.push(" AND ");
        push_event_compare(q, column, " < ", *to);
        q.push(")");
    }
    if let Some(invalid) = q.dialect.invalid_event(column, kind) {
        q.push(" OR ").push(&invalid);
    }
}

/// One event time, as the dialect compares them, or NULL when absent or
/// unusable (so it takes no part in the latest or earliest).
fn push_clean_value(q: &mut Query<'_>, step: &Step, column_sql: &str, column: &Column) {
    let typed = if column.kind == ColumnKind::Date && step.due.event.kind != ColumnKind::Date {
        q.dialect.to_timestamp(column_sql)
    } else {
        column_sql.to_string()
    };
    q.push("CASE WHEN ").push(column_sql).push(" IS NULL OR ");
    push_unusable_values(q, step, column_sql, column);
    let value = q.dialect.event_value(&typed);
    q.push(" THEN NULL ELSE ").push(&value).push(" END");
}

/// One source's value: a cleaned column, or a joined table's latest or
/// earliest cleaned value over the related rows.
fn push_source(q: &mut Query<'_>, step: &Step, source: &EventSource) {
    match source {
        EventSource::Own(column) => {
            let column_sql = q.quote(&column.name);
            push_clean_value(q, step, &column_sql, column);
        }
        EventSource::Joined { join, column } => {
            let related = &step.joins[*join].related;
            let alias = format!("j{join}");
            let (column_sql, table, main) = (
                format!("{alias}.{}", q.quote(&column.name)),
                q.dialect.table(&related.table),
                main_name(q, step),
            );
            q.push("(SELECT ")
                .push(aggregate(step.due.event.combine))
                .push("(");
            push_clean_value(q, step, &column_sql, column);
            q.push(") FROM ")
                .push(&table)
                .push(" ")
                .push(&alias)
                .push(" WHERE ");
            push_related_match(q, &alias, related, &main);
            q.push(")");
        }
    }
}

fn aggregate(combine: Combine) -> &'static str {
    match combine {
        Combine::Latest => "MAX",
        Combine::Earliest => "MIN",
    }
}

/// The row's event value when it is made of several sources (or a joined
/// one): the latest or earliest of those that are present, NULL if none.
/// MySQL's GREATEST is NULL when any argument is, so absent values stand in
/// as a sentinel beyond any date and are turned back into NULL.
fn push_event(q: &mut Query<'_>, step: &Step) {
    let sources = &step.due.event.sources;
    if let [source] = sources.as_slice() {
        push_source(q, step, source);
        return;
    }
    let combine = step.due.event.combine;
    let sentinel = match (combine, step.due.event.kind) {
        (Combine::Latest, kind) => moment_of(kind, "1000-01-01"),
        (Combine::Earliest, kind) => moment_of(kind, "9999-12-31"),
    };
    // Each placeholder is bound where it is pushed: positional dialects
    // (`?`) take values in text order.
    let push_sentinel = |q: &mut Query<'_>| {
        let placeholder = q.bind(Param::Moment(sentinel));
        let sentinel = q.dialect.event_value(&placeholder);
        q.push(&sentinel);
    };
    let greatest = q.dialect.greatest(combine);
    q.push("NULLIF(").push(greatest).push("(");
    for (i, source) in sources.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push("COALESCE(");
        push_source(q, step, source);
        q.push(", ");
        push_sentinel(q);
        q.push(")");
    }
    q.push("), ");
    push_sentinel(q);
    q.push(")");
}

fn moment_of(kind: ColumnKind, date: &str) -> Moment {
    let date: chrono::NaiveDate = date.parse().expect("a date");
    match kind {
        ColumnKind::Date => Moment::Date(date),
        ColumnKind::TimestampTz => Moment::Instant(date.and_time(chrono::NaiveTime::MIN).and_utc()),
        _ => Moment::Timestamp(date.and_time(chrono::NaiveTime::MIN)),
    }
}

fn push_undated(q: &mut Query<'_>, step: &Step) {
    match step.due.event.single() {
        Some(column) => {
            let column_sql = q.quote(&column.name);
            q.push("(").push(&column_sql).push(" IS NULL OR ");
            push_unusable_values(q, step, &column_sql, column);
            q.push(")");
        }
        None => {
            q.push("(");
            push_event(q, step);
            q.push(" IS NULL)");
        }
    }
}

/// Due: a usable event before the bound, and no open related row.
fn push_due(q: &mut Query<'_>, step: &Step) {
    q.push("(");
    match step.due.event.single() {
        // One column of the table itself: compared directly, so an index
        // on it serves the condition.
        Some(column) => {
            let column_sql = q.quote(&column.name);
            push_event_compare(q, &column_sql, " < ", step.due.bound);
            q.push(" AND NOT (");
            push_unusable_values(q, step, &column_sql, column);
            q.push(")");
        }
        None => {
            push_event(q, step);
            q.push(" < ");
            let placeholder = q.bind(Param::Moment(step.due.bound));
            let bound = q.dialect.event_value(&placeholder);
            q.push(&bound);
        }
    }
    push_none_open(q, step);
    q.push(")");
}

/// ` AND NOT EXISTS (...)` per join with an open condition: a related row
/// still open keeps the row from being due.
fn push_none_open(q: &mut Query<'_>, step: &Step) {
    for (index, join) in step.joins.iter().enumerate() {
        if let Some(open) = &join.open {
            let alias = format!("j{index}");
            let (table, main) = (q.dialect.table(&join.related.table), main_name(q, step));
            q.push(" AND NOT EXISTS (SELECT 1 FROM ")
                .push(&table)
                .push(" ")
                .push(&alias)
                .push(" WHERE ");
            push_related_match(q, &alias, &join.related, &main);
            q.push(" AND (").push(open).push("))");
        }
    }
}

/// True when one hold keeps the row: its flag is true or NULL, or the row
/// is listed in its table.
fn push_hold(q: &mut Query<'_>, step: &Step, index: usize) {
    match &step.holds[index] {
        Hold::Column(column) => {
            let held = q.dialect.held(&q.quote(&column.name), column);
            q.push(&held);
        }
        Hold::Table {
            related, filter, ..
        } => {
            let alias = format!("h{index}");
            let (table, main) = (q.dialect.table(&related.table), main_name(q, step));
            q.push("EXISTS (SELECT 1 FROM ")
                .push(&table)
                .push(" ")
                .push(&alias)
                .push(" WHERE ");
            push_related_match(q, &alias, related, &main);
            if let Some(filter) = filter {
                q.push(" AND (").push(filter).push(")");
            }
            q.push(")");
        }
    }
}

/// True when any hold keeps the row.
fn push_held(q: &mut Query<'_>, step: &Step) {
    q.push("(");
    for index in 0..step.holds.len() {
        if index > 0 {
            q.push(" OR ");
        }
        push_hold(q, step, index);
    }
    q.push(")");
}

fn push_scope(q: &mut Query<'_>, step: &Step) {
    match &step.filter {
        Some(filter) => q.push("(").push(filter).push(")"),
        None => q.push("1 = 1"),
    };
}

/// Whether a column still needs its change (so a re-run changes nothing).
/// NULL never does: NULL identifies nobody.
fn push_column_pending(q: &mut Query<'_>, change: &ColumnChange) {
    let column = q.quote(&change.column.name);
    let dialect = q.dialect;
    q.push("(").push(&column).push(" IS NOT NULL");
    match change.action {
        ColumnAction::Hmac | ColumnAction::HmacEmail => {
            let shape = change.token.as_ref().expect("token actions have a shape");
            let is_token = dialect.is_token(q, &column, shape);
            q.push(" AND NOT ").push(&is_token);
        }
        ColumnAction::Redact => {
            let redacted = change.redacted.clone().expect("redact has its text");
            q.push(" AND ").push(&column).push(" <> ");
            q.push_bind(Param::Text(redacted));
        }
        ColumnAction::Null => {}
        ColumnAction::IpPrefix => {
            let done = dialect.is_ip_prefix(q, &column, change);
            q.push(" AND NOT ").push(&done);
        }
        // A value that is no date to glemsel (an infinity, a zero date,
        // SQLite text that is no date) has nothing to keep: it stays.
        ColumnAction::Truncate(part) => {
            if let Some(invalid) = dialect.invalid_event(&column, &change.column) {
                q.push(" AND NOT ").push(&invalid);
            }
            let truncated = dialect.truncated(&column, &change.column, part);
            let (value, truncated) = (
                dialect.event_value(&column),
                dialect.event_value(&truncated),
            );
            q.push(" AND ").push(&value).push(" <> ").push(&truncated);
        }
        ColumnAction::Prefix(length) => {
            let length_sql = dialect.char_length(&column);
            q.push(" AND ").push(&length_sql).push(" > ");
            q.push_bind(Param::Int(i64::from(length)));
        }
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
    /// A usable event before the bound, no open related row.
    Due,
    /// No usable event.
    Undated,
    /// Under any hold (`true`) or none (`false`).
    Held(bool),
    /// Under this one hold.
    HeldBy(usize),
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
    let columns = step.action.columns();
    // A class that cannot hold any row on this step.
    let impossible = parts.iter().any(|part| match part {
        Part::Held(true) => step.holds.is_empty(),
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
        let skip = match part {
            // No holds: nothing is held. A delete: every row is pending.
            Part::Held(false) => step.holds.is_empty(),
            Part::Pending(true) => columns.is_none(),
            _ => false,
        };
        if skip {
            continue;
        }
        if !first {
            q.push(" AND ");
        }
        first = false;
        match part {
            Part::Scope => push_scope(q, step),
            Part::Due => push_due(q, step),
            Part::Undated => push_undated(q, step),
            Part::Held(held) => {
                q.push(if *held { "" } else { "NOT " });
                push_held(q, step);
            }
            Part::HeldBy(index) => push_hold(q, step, *index),
            Part::Pending(pending) => {
                q.push(if *pending { "" } else { "NOT " });
                push_pending(q, columns.expect("a pseudonymising step"));
            }
        }
    }
    q.push(")");
}

fn key_columns(q: &Query<'_>, step: &Step) -> Vec<String> {
    quoted(q, &step.key)
}

fn quoted(q: &Query<'_>, columns: &[Column]) -> Vec<String> {
    columns.iter().map(|c| q.quote(&c.name)).collect()
}

/// `key > after` (`upper = false`) or `key <= through` (`upper = true`),
/// over the key columns `key_columns`.
pub(crate) fn push_key_compare(q: &mut Query<'_>, key_columns: &[Column], key: &Key, upper: bool) {
    let columns = quoted(q, key_columns);
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
            q.push_bind(Param::Key(value.clone(), key_columns[i].clone()));
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
            q.push_bind(Param::Key(key[j].clone(), key_columns[j].clone()));
            q.push(" AND ");
        }
        let op = if i + 1 == columns.len() { last } else { strict };
        q.push(&columns[i]).push(op);
        q.push_bind(Param::Key(key[i].clone(), key_columns[i].clone()));
        q.push(")");
    }
    q.push(")");
}

fn push_window(q: &mut Query<'_>, step: &Step, window: &Window, conditions: &mut Conditions) {
    if let Some(after) = &window.after {
        conditions.next(q);
        push_key_compare(q, &step.key, after, false);
    }
    if let Some(through) = &window.through {
        conditions.next(q);
        push_key_compare(q, &step.key, through, true);
    }
}

/// The condition of every statement that reads or changes a batch's rows:
/// the window's bounds (when given), then the rows a batch changes, each
/// after `WHERE` or `AND` (`first`: the statement has no condition yet).
fn push_target_condition(q: &mut Query<'_>, step: &Step, window: Option<&Window>, first: bool) {
    let mut conditions = Conditions { first };
    if let Some(window) = window {
        push_window(q, step, window, &mut conditions);
    }
    conditions.next(q);
    push_rows(q, step, TARGET);
}

/// The dry-run counts: one scan for rows, due, held, undated, done and
/// what each hold keeps; then one count per cascade table.
pub(crate) struct CountStatements<'d> {
    pub main: Query<'d>,
    pub cascades: Vec<Query<'d>>,
}

pub(crate) fn count<'d>(dialect: &'d dyn Dialect, step: &Step) -> CountStatements<'d> {
    let mut q = Query::new(dialect);
    q.push("SELECT COUNT(*)");
    let per_hold: Vec<[Part; 4]> = (0..step.holds.len())
        .map(|i| [Part::Scope, Part::Due, Part::HeldBy(i), Part::Pending(true)])
        .collect();
    let classes = [TARGET, HELD, UNDATED, DONE]
        .into_iter()
        .chain(per_hold.iter().map(|p| p.as_slice()));
    for class in classes {
        q.push(", COUNT(CASE WHEN ");
        push_rows(&mut q, step, class);
        q.push(" THEN 1 END)");
    }
    let table = dialect.table(&step.table);
    q.push(" FROM ").push(&table);
    let cascades = (0..step.cascades.len())
        .map(|index| {
            let mut q = Query::new(dialect);
            let table = dialect.table(&step.cascades[index].related.table);
            q.push("SELECT COUNT(*) FROM ").push(&table).push(" WHERE ");
            push_cascade_match(&mut q, step, index, None);
            q
        })
        .collect();
    CountStatements { main: q, cascades }
}

/// The forecast: of the rows a run at the last of `bounds` would change,
/// how many a run at each bound would change (ascending bounds, so the
/// counts are cumulative). One statement per rule: the event is computed
/// once per row in a derived table and compared with every bound, and the
/// rows are those of [`TARGET`] with the last bound, so each count is, to
/// the letter, what a run at that bound changes.
pub(crate) fn forecast<'d>(dialect: &'d dyn Dialect, step: &Step, bounds: &[Moment]) -> Query<'d> {
    let mut horizon = step.clone();
    if let Some(last) = bounds.last() {
        horizon.due.bound = *last;
    }
    let mut q = Query::new(dialect);
    q.push("SELECT ");
    for (i, bound) in bounds.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        let placeholder = q.bind(Param::Moment(*bound));
        let bound = dialect.event_value(&placeholder);
        q.push("COUNT(CASE WHEN glemsel_e < ")
            .push(&bound)
            .push(" THEN 1 END)");
    }
    q.push(" FROM (SELECT ");
    match horizon.due.event.single() {
        Some(column) => {
            let value = dialect.event_value(&dialect.quote(&column.name));
            q.push(&value);
        }
        None => push_event(&mut q, &horizon),
    }
    let table = dialect.table(&step.table);
    q.push(" AS glemsel_e FROM ").push(&table).push(" WHERE ");
    push_rows(&mut q, &horizon, TARGET);
    q.push(") glemsel_f");
    q
}

/// Of the rows with `keys` (of `key_columns`), the latest event the step's
/// due condition will reach, as [`Dialect::event_text`] gives it, and how
/// many of them it cannot date: no usable event, outside the rule's
/// `where`, a related row still open, or under a hold. The event is the
/// one the due condition compares ([`push_event`]), so the date derived
/// from it is the one the rule acts on.
pub(crate) fn kept_events<'d>(
    dialect: &'d dyn Dialect,
    step: &Step,
    key_columns: &[Column],
    keys: &[Key],
) -> Query<'d> {
    let mut q = Query::new(dialect);
    let latest = dialect.event_text("MAX(glemsel_e)", step.due.event.kind);
    let undated = dialect.value_text("COUNT(*) - COUNT(glemsel_e)");
    q.push("SELECT ")
        .push(&latest)
        .push(", ")
        .push(&undated)
        .push(" FROM (SELECT CASE WHEN ");
    push_scope(&mut q, step);
    push_none_open(&mut q, step);
    if !step.holds.is_empty() {
        q.push(" AND NOT ");
        push_held(&mut q, step);
    }
    q.push(" THEN ");
    push_event(&mut q, step);
    let table = dialect.table(&step.table);
    q.push(" END AS glemsel_e FROM ")
        .push(&table)
        .push(" WHERE ");
    push_in_values(&mut q, key_columns, keys);
    q.push(") glemsel_k");
    q
}

/// `(child columns) IN (SELECT parent columns ...)`: the rows of cascade
/// `index` whose parents are due now (in `window`, when given).
fn push_cascade_match(q: &mut Query<'_>, step: &Step, index: usize, window: Option<&Window>) {
    let cascade = &step.cascades[index];
    let (children, parents): (Vec<String>, Vec<String>) = cascade
        .related
        .on
        .iter()
        .map(|(child, parent)| (q.quote(child), q.quote(parent)))
        .unzip();
    q.push(&tuple(&children))
        .push(" IN (SELECT ")
        .push(&parents.join(", "))
        .push(" FROM ");
    match cascade.parent {
        None => {
            let table = q.dialect.table(&step.table);
            q.push(&table);
            push_target_condition(q, step, window, true);
        }
        Some(parent) => {
            let table = q.dialect.table(&step.cascades[parent].related.table);
            q.push(&table).push(" WHERE ");
            push_cascade_match(q, step, parent, window);
        }
    }
    q.push(")");
}

fn tuple(columns: &[String]) -> String {
    match columns {
        [one] => one.clone(),
        many => format!("({})", many.join(", ")),
    }
}

/// The key `rows` rows past `after`: the upper end of the next window.
pub(crate) fn window_end<'d>(
    dialect: &'d dyn Dialect,
    step: &Step,
    after: Option<&Key>,
    rows: u64,
) -> Query<'d> {
    let mut q = key_lookup(dialect, step, after, "", false);
    q.push(" LIMIT 1 OFFSET ");
    q.push_bind(Param::Int(rows.saturating_sub(1) as i64));
    q
}

/// The rows in `window`, for the planner to estimate (`EXPLAIN` + this).
pub(crate) fn window_rows<'d>(dialect: &'d dyn Dialect, step: &Step, window: &Window) -> Query<'d> {
    let mut q = Query::new(dialect);
    q.push("EXPLAIN SELECT 1 FROM ")
        .push(&dialect.table(&step.table));
    let mut conditions = Conditions::new();
    push_window(&mut q, step, window, &mut conditions);
    q
}

/// The last key of the table: where a walk along an integer key ends.
pub(crate) fn last_key<'d>(dialect: &'d dyn Dialect, step: &Step) -> Query<'d> {
    let mut q = key_lookup(dialect, step, None, " DESC", false);
    q.push(" LIMIT 1");
    q
}

/// The first or last key of the rows a batch would change: before the
/// first and past the last a walk finds nothing to do. Read along the key
/// from that end, it stops at the first due row, so it costs what the
/// windows there would have cost to find them empty, in one statement, and
/// outside any batch's transaction.
pub(crate) fn due_key<'d>(dialect: &'d dyn Dialect, step: &Step, end: KeyEnd) -> Query<'d> {
    let direction = match end {
        KeyEnd::First => "",
        KeyEnd::Last => " DESC",
    };
    let mut q = key_lookup(dialect, step, None, direction, true);
    q.push(" LIMIT 1");
    q
}

/// The walk key of the rows past `after` (only those a batch would change,
/// if `due`), in key order (`direction`).
fn key_lookup<'d>(
    dialect: &'d dyn Dialect,
    step: &Step,
    after: Option<&Key>,
    direction: &str,
    due: bool,
) -> Query<'d> {
    let mut q = Query::new(dialect);
    let selected = aliased(
        step.key
            .iter()
            .map(|c| dialect.key_select(&dialect.quote(&c.name), c)),
    );
    let table = dialect.table(&step.table);
    q.push("SELECT ")
        .push(&selected.join(", "))
        .push(" FROM ")
        .push(&table);
    let window = Window {
        after: after.cloned(),
        through: None,
    };
    if due {
        push_target_condition(&mut q, step, Some(&window), true);
    } else {
        push_window(&mut q, step, &window, &mut Conditions::new());
    }
    let order: Vec<String> = key_columns(&q, step)
        .into_iter()
        .map(|column| column + direction)
        .collect();
    q.push(" ORDER BY ").push(&order.join(", "));
    q
}

/// What a store runs, in one transaction, to change a batch.
pub(crate) enum BatchStatements<'d> {
    /// One statement, with the whole condition inside it.
    Single(Query<'d>),
    /// One statement, with the whole condition inside it, that returns the
    /// rows its limit picked and the rows it changed. Where a row that
    /// changed meanwhile is left alone though still due (PostgreSQL finds
    /// the picked rows by `ctid`, and an updated row has a new one), the
    /// rows changed cannot tell whether the limit was reached.
    Counted(Query<'d>),
    /// A delete with cascades. Deleting children first can change whether
    /// their parent is due (its last ticket is its event), so the decision
    /// is taken once: this reads the window's target rows (locking them
    /// where the dialect can), and [`captured_deletes`] then deletes their
    /// children and them by key. Locked, the parents cannot change between.
    Captured {
        capture: Query<'d>,
        columns: Vec<Column>,
    },
    /// A pseudonymisation with tokens, or an anonymisation with IP
    /// prefixes: this reads the window's target rows (key, then the text of
    /// each column the worker computes), locking them where the dialect
    /// can; the worker computes the tokens and prefixes and
    /// [`token_writes`] writes them back by key. The HMAC key never reaches
    /// the server.
    Tokens {
        read: Query<'d>,
        columns: Vec<Column>,
    },
}

/// How many captured parents one set of deletes covers.
const CAPTURE_CHUNK: usize = 500;

/// The statements of one batch. With `limit`, the batch changes at most
/// that many rows: the first due ones of the window, in key order.
pub(crate) fn batch<'d>(
    dialect: &'d dyn Dialect,
    step: &Step,
    window: &Window,
    limit: Option<u64>,
) -> BatchStatements<'d> {
    if let Some(changes) = worker_changes(step) {
        let mut columns = step.key.clone();
        columns.extend(changes.iter().map(|c| c.column.clone()));
        let selected = aliased(
            step.key
                .iter()
                .map(|c| dialect.key_select(&dialect.quote(&c.name), c))
                .chain(
                    changes
                        .iter()
                        .map(|c| dialect.value_text(&dialect.quote(&c.column.name))),
                ),
        );
        let read = target_select(dialect, step, window, &selected, limit);
        return BatchStatements::Tokens { read, columns };
    }
    if step.cascades.is_empty() {
        if let Some(limit) = limit
            && dialect.limit_form() == LimitForm::Ctid
        {
            return BatchStatements::Counted(counted_statement(dialect, step, window, limit));
        }
        return BatchStatements::Single(main_statement(dialect, step, window, limit));
    }
    let columns = capture_columns(step);
    let selected = aliased(
        columns
            .iter()
            .map(|c| dialect.key_select(&dialect.quote(&c.name), c)),
    );
    BatchStatements::Captured {
        capture: target_select(dialect, step, window, &selected, limit),
        columns,
    }
}

/// A select list whose items are named apart from the table's columns:
/// `ORDER BY "id"` must sort the column, not the text the select list turns
/// it into (PostgreSQL names `"id"::text` `id`, and sorts '10000' before
/// '9999').
fn aliased(items: impl Iterator<Item = String>) -> Vec<String> {
    items
        .enumerate()
        .map(|(i, item)| format!("{item} AS glemsel_c{i}"))
        .collect()
}

/// `SELECT <selected> FROM <table> WHERE <window> AND <target>`, the
/// first `limit` in key order if given, locking the rows it finds where the
/// dialect can.
fn target_select<'d>(
    dialect: &'d dyn Dialect,
    step: &Step,
    window: &Window,
    selected: &[String],
    limit: Option<u64>,
) -> Query<'d> {
    let mut q = Query::new(dialect);
    push_target_select(&mut q, step, window, selected, limit);
    if let Some(for_update) = dialect.for_update() {
        q.push(for_update);
    }
    q
}

fn push_target_select(
    q: &mut Query<'_>,
    step: &Step,
    window: &Window,
    selected: &[String],
    limit: Option<u64>,
) {
    let table = q.dialect.table(&step.table);
    q.push("SELECT ")
        .push(&selected.join(", "))
        .push(" FROM ")
        .push(&table);
    push_target_condition(q, step, Some(window), true);
    if let Some(limit) = limit {
        push_order_limit(q, step, limit);
    }
}

/// ` ORDER BY <key> LIMIT n`.
fn push_order_limit(q: &mut Query<'_>, step: &Step, limit: u64) {
    let order = key_columns(q, step).join(", ");
    q.push(" ORDER BY ").push(&order).push(" LIMIT ");
    q.push_bind(Param::Int(limit as i64));
}

/// The column changes whose new values the worker computes (tokens, IP
/// prefixes), in the order [`TokenRow::tokens`] holds them; `None` when
/// the step has none.
pub(crate) fn worker_changes(step: &Step) -> Option<Vec<&ColumnChange>> {
    let changes: Vec<&ColumnChange> = step
        .action
        .columns()?
        .iter()
        .filter(|c| c.action.in_worker())
        .collect();
    (!changes.is_empty()).then_some(changes)
}

/// The statements that write a batch's tokens back by key. Each still
/// carries the window, the due condition, the holds and "still pending",
/// so a row that stopped being due since it was read is left alone. One
/// statement unless the dialect's parameter limit splits the rows.
pub(crate) fn token_writes<'d>(
    dialect: &'d dyn Dialect,
    step: &Step,
    window: &Window,
    rows: &[TokenRow],
) -> Vec<Query<'d>> {
    let Some(changes) = worker_changes(step) else {
        return Vec::new();
    };
    let per_row = step.key.len() + changes.len();
    // Room for the condition's own parameters.
    let rows_per_statement = (dialect.max_params().saturating_sub(1_000) / per_row)
        .min(dialect.max_source_rows())
        .max(1);
    rows.chunks(rows_per_statement)
        .map(|chunk| token_write(dialect, step, window, chunk))
        .collect()
}

fn token_write<'d>(
    dialect: &'d dyn Dialect,
    step: &Step,
    window: &Window,
    rows: &[TokenRow],
) -> Query<'d> {
    let mut q = Query::new(dialect);
    let table = dialect.table(&step.table);
    let join: Vec<String> = step
        .key
        .iter()
        .enumerate()
        .map(|(i, column)| {
            format!(
                "{} = {}",
                dialect.quote(&column.name),
                dialect.source_key(&format!("glemsel_v.glemsel_k{i}"), column)
            )
        })
        .collect();
    let join = join.join(" AND ");
    q.push("UPDATE ").push(&table);
    let source;
    if dialect.update_from() {
        q.push(" SET ");
        push_assignments(&mut q, step, true);
        source = dialect.rows_source(&mut q, step, rows);
        q.push(" FROM ").push(&source).push(" WHERE ").push(&join);
    } else {
        source = dialect.rows_source(&mut q, step, rows);
        q.push(" JOIN ").push(&source).push(" ON ").push(&join);
        q.push(" SET ");
        push_assignments(&mut q, step, true);
        q.push(" WHERE 1 = 1");
    }
    push_target_condition(&mut q, step, Some(window), false);
    q
}

/// What a capture reads: the walk key, then the other parent columns the
/// top-level cascades point at.
fn capture_columns(step: &Step) -> Vec<Column> {
    let mut columns = step.key.clone();
    for cascade in step.cascades.iter().filter(|c| c.parent.is_none()) {
        for column in &cascade.parent_columns {
            if !columns.iter().any(|c| c.name == column.name) {
                columns.push(column.clone());
            }
        }
    }
    columns
}

/// The deletes for captured parent rows (values in [`capture_columns`]
/// order): per chunk of parents, their cascades deepest first, then them.
/// Each statement says which cascade it counts for (`None`: the step's table).
pub(crate) fn captured_deletes<'d>(
    dialect: &'d dyn Dialect,
    step: &Step,
    captured: &[Key],
) -> Vec<(Option<usize>, Query<'d>)> {
    let columns = capture_columns(step);
    let position = |name: &str| {
        columns
            .iter()
            .position(|c| c.name == name)
            .expect("captured")
    };
    let mut statements = Vec::new();
    for chunk in captured.chunks(CAPTURE_CHUNK) {
        // Children are declared after their parents: reversed, the deepest go first.
        for index in (0..step.cascades.len()).rev() {
            let mut q = Query::new(dialect);
            let table = dialect.table(&step.cascades[index].related.table);
            q.push("DELETE FROM ").push(&table).push(" WHERE ");
            push_captured_match(&mut q, step, index, chunk, &position);
            statements.push((Some(index), q));
        }
        let mut q = Query::new(dialect);
        let table = dialect.table(&step.table);
        q.push("DELETE FROM ").push(&table).push(" WHERE ");
        let key_values: Vec<Key> = chunk
            .iter()
            .map(|row| row[..step.key.len()].to_vec())
            .collect();
        push_in_values(&mut q, &step.key, &key_values);
        statements.push((None, q));
    }
    statements
}

/// The rows of cascade `index` whose parents are among the captured ones.
fn push_captured_match(
    q: &mut Query<'_>,
    step: &Step,
    index: usize,
    chunk: &[Key],
    position: &dyn Fn(&str) -> usize,
) {
    let cascade = &step.cascades[index];
    match cascade.parent {
        None => {
            let children: Vec<Column> = cascade
                .related
                .on
                .iter()
                .zip(&cascade.parent_columns)
                .map(|((child, _), parent)| Column {
                    name: child.clone(),
                    ..parent.clone()
                })
                .collect();
            let mut values: Vec<Key> = chunk
                .iter()
                .map(|row| {
                    cascade
                        .parent_columns
                        .iter()
                        .map(|c| row[position(&c.name)].clone())
                        .collect()
                })
                .collect();
            values.dedup();
            push_in_values(q, &children, &values);
        }
        Some(parent) => {
            let (children, parents): (Vec<String>, Vec<String>) = cascade
                .related
                .on
                .iter()
                .map(|(child, parent)| (q.quote(child), q.quote(parent)))
                .unzip();
            let table = q.dialect.table(&step.cascades[parent].related.table);
            q.push(&tuple(&children))
                .push(" IN (SELECT ")
                .push(&parents.join(", "))
                .push(" FROM ");
            q.push(&table).push(" WHERE ");
            push_captured_match(q, step, parent, chunk, position);
            q.push(")");
        }
    }
}

/// `col IN (?, ...)`, or for several columns `((a = ? AND b = ?) OR ...)`,
/// which every engine reads. `columns` type the bound values.
pub(crate) fn push_in_values(q: &mut Query<'_>, columns: &[Column], values: &[Key]) {
    if let [column] = columns {
        let name = q.quote(&column.name);
        q.push(&name).push(" IN (");
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.push_bind(Param::Key(value[0].clone(), column.clone()));
        }
        q.push(")");
        return;
    }
    q.push("(");
    for (i, value) in values.iter().enumerate() {
        q.push(if i > 0 { " OR (" } else { "(" });
        for (j, column) in columns.iter().enumerate() {
            if j > 0 {
                q.push(" AND ");
            }
            let name = q.quote(&column.name);
            q.push(&name).push(" = ");
            q.push_bind(Param::Key(value[j].clone(), column.clone()));
        }
        q.push(")");
    }
    q.push(")");
}

/// The statement that deletes or pseudonymises the target rows in a window
/// (a pseudonymisation here writes no tokens: those go by [`token_writes`]).
fn main_statement<'d>(
    dialect: &'d dyn Dialect,
    step: &Step,
    window: &Window,
    limit: Option<u64>,
) -> Query<'d> {
    let mut q = Query::new(dialect);
    let table = dialect.table(&step.table);
    match &step.action {
        StepAction::Delete => {
            q.push("DELETE FROM ").push(&table);
        }
        StepAction::Pseudonymise { .. } | StepAction::Anonymise { .. } => {
            q.push("UPDATE ").push(&table).push(" SET ");
            push_assignments(&mut q, step, false);
        }
    }
    let form = limit.map(|limit| (limit, dialect.limit_form()));
    match form {
        Some((limit, LimitForm::Ctid)) => {
            q.push(" WHERE ctid = ANY(ARRAY(");
            push_target_select(&mut q, step, window, &["ctid".to_string()], Some(limit));
            q.push("))");
        }
        Some((limit, LimitForm::KeyIn)) => {
            let key = key_columns(&q, step);
            q.push(" WHERE ").push(&tuple(&key)).push(" IN (");
            push_target_select(&mut q, step, window, &key, Some(limit));
            q.push(")");
        }
        None | Some((_, LimitForm::OrderByLimit)) => {}
    }
    // The whole condition stays in the statement itself, limited or not.
    let first = !matches!(form, Some((_, LimitForm::Ctid | LimitForm::KeyIn)));
    push_target_condition(&mut q, step, Some(window), first);
    if let Some((limit, LimitForm::OrderByLimit)) = form {
        push_order_limit(&mut q, step, limit);
    }
    q
}

/// [`main_statement`] limited by `ctid`, counting: `WITH picked AS (the
/// first rows' ctids), changed AS (the statement on those RETURNING 1)
/// SELECT both counts`.
fn counted_statement<'d>(
    dialect: &'d dyn Dialect,
    step: &Step,
    window: &Window,
    limit: u64,
) -> Query<'d> {
    let mut q = Query::new(dialect);
    q.push("WITH glemsel_p AS MATERIALIZED (");
    push_target_select(&mut q, step, window, &["ctid".to_string()], Some(limit));
    q.push("), glemsel_c AS (");
    let table = dialect.table(&step.table);
    match &step.action {
        StepAction::Delete => {
            q.push("DELETE FROM ").push(&table);
        }
        StepAction::Pseudonymise { .. } | StepAction::Anonymise { .. } => {
            q.push("UPDATE ").push(&table).push(" SET ");
            push_assignments(&mut q, step, false);
        }
    }
    q.push(" WHERE ctid = ANY(ARRAY(SELECT ctid FROM glemsel_p))");
    // The whole condition stays in the statement itself.
    push_target_condition(&mut q, step, Some(window), false);
    q.push(
        " RETURNING 1) SELECT (SELECT COUNT(*) FROM glemsel_p), (SELECT COUNT(*) FROM glemsel_c)",
    );
    q
}

/// `col = value, ...` of a pseudonymising or anonymising step. Columns
/// the worker computes take `glemsel_v`'s value (`from_source`); only
/// values still pending change: NULL stays NULL, a token is never hashed
/// again, a truncated date is not truncated again.
fn push_assignments(q: &mut Query<'_>, step: &Step, from_source: bool) {
    let Some(columns) = step.action.columns() else {
        return;
    };
    let dialect = q.dialect;
    let mut token_index = 0;
    for (i, change) in columns.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        let column = q.quote(&change.column.name);
        q.push(&column).push(" = ");
        match change.action {
            ColumnAction::Null => {
                q.push("NULL");
            }
            ColumnAction::Hmac | ColumnAction::HmacEmail | ColumnAction::IpPrefix => {
                assert!(
                    from_source,
                    "worker values are written from the worker's rows"
                );
                // The worker sends NULL for a value that stays as it is.
                let token = format!("glemsel_v.glemsel_t{token_index}");
                token_index += 1;
                let (token, unchanged) =
                    (dialect.case_branch(&token), dialect.case_branch(&column));
                q.push("COALESCE(")
                    .push(&token)
                    .push(", ")
                    .push(&unchanged)
                    .push(")");
            }
            ColumnAction::Redact => {
                q.push("CASE WHEN ");
                push_column_pending(q, change);
                q.push(" THEN ");
                let value = q.bind(Param::Text(
                    change.redacted.clone().expect("redact has its text"),
                ));
                let (value, unchanged) =
                    (dialect.case_branch(&value), dialect.case_branch(&column));
                q.push(&value).push(" ELSE ").push(&unchanged).push(" END");
            }
            ColumnAction::Prefix(length) => {
                q.push("CASE WHEN ");
                push_column_pending(q, change);
                q.push(" THEN ");
                let length = q.bind(Param::Int(i64::from(length)));
                let value = dialect.text_prefix(&column, &length);
                let (value, unchanged) =
                    (dialect.case_branch(&value), dialect.case_branch(&column));
                q.push(&value).push(" ELSE ").push(&unchanged).push(" END");
            }
            // Dates stay dates: no character set to convert.
            ColumnAction::Truncate(part) => {
                q.push("CASE WHEN ");
                push_column_pending(q, change);
                let truncated = dialect.truncated(&column, &change.column, part);
                q.push(" THEN ")
                    .push(&truncated)
                    .push(" ELSE ")
                    .push(&column)
                    .push(" END");
            }
        }
    }
}

/// Every statement a step can run, with a probe window and a zero key:
/// `check` compiles them all without running any.
pub(crate) fn statements_to_prepare<'d>(
    dialect: &'d dyn Dialect,
    step: &Step,
) -> Vec<(&'static str, Query<'d>)> {
    let probe: Key = step
        .key
        .iter()
        .map(|_| KeyValue::Text(String::new()))
        .collect();
    let window = Window {
        after: Some(probe.clone()),
        through: Some(probe),
    };
    let counts = count(dialect, step);
    let mut statements = vec![("count", counts.main)];
    statements.extend(counts.cascades.into_iter().map(|q| ("cascade count", q)));
    statements.push((
        "window",
        window_end(dialect, step, window.after.as_ref(), 1),
    ));
    match batch(dialect, step, &window, None) {
        BatchStatements::Single(q) | BatchStatements::Counted(q) => statements.push(("batch", q)),
        BatchStatements::Tokens { read, columns } => {
            statements.push(("read", read));
            let probe = TokenRow {
                key: step
                    .key
                    .iter()
                    .map(|_| KeyValue::Text(String::new()))
                    .collect(),
                tokens: vec![None; columns.len() - step.key.len()],
            };
            for q in token_writes(dialect, step, &window, &[probe]) {
                statements.push(("batch", q));
            }
        }
        BatchStatements::Captured { capture, columns } => {
            statements.push(("capture", capture));
            let probe: Key = columns
                .iter()
                .map(|_| KeyValue::Text(String::new()))
                .collect();
            let deletes = captured_deletes(dialect, step, &[probe]);
            statements.extend(deletes.into_iter().map(|(_, q)| ("cascade", q)));
        }
    }
    statements
}

pub(crate) fn audit_insert<'d>(
    dialect: &'d dyn Dialect,
    audit_table: &TableRef,
    record: &AuditRecord,
) -> Query<'d> {
    let mut q = Query::new(dialect);
    let columns: Vec<String> = audit_table::COLUMNS
        .iter()
        .map(|c| dialect.quote(c.name))
        .collect();
    let table = dialect.table(audit_table);
    q.push("INSERT INTO ")
        .push(&table)
        .push(" (")
        .push(&columns.join(", "))
        .push(") VALUES (");
    for (i, column) in audit_table::COLUMNS.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push_bind((column.value)(record));
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
    audit_search(
        dialect,
        audit_table,
        &AuditFilter::default(),
        AuditCursor::After(after_seq),
        limit,
    )
}

/// Audit rows matching `filter`, one page from `cursor`: ascending after a
/// sequence number, or descending before one.
pub(crate) fn audit_search<'d>(
    dialect: &'d dyn Dialect,
    audit_table: &TableRef,
    filter: &AuditFilter,
    cursor: AuditCursor,
    limit: u32,
) -> Query<'d> {
    let mut q = Query::new(dialect);
    let columns: Vec<String> = audit_table::names()
        .iter()
        .map(|c| dialect.quote(c))
        .collect();
    let table = dialect.table(audit_table);
    let seq = dialect.quote("seq");
    q.push("SELECT ")
        .push(&columns.join(", "))
        .push(" FROM ")
        .push(&table);
    let (op, from, order) = match cursor {
        AuditCursor::After(seq) => (" > ", seq, ""),
        AuditCursor::Before(seq) => (" < ", seq, " DESC"),
    };
    q.push(" WHERE ").push(&seq).push(op);
    q.push_bind(Param::Int(from));
    let any_of = |q: &mut Query<'_>, column: &str, values: Vec<String>| {
        if values.is_empty() {
            return;
        }
        let column = q.quote(column);
        q.push(" AND ").push(&column).push(" IN (");
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.push_bind(Param::Text(value));
        }
        q.push(")");
    };
    any_of(&mut q, "rule_id", filter.rules.clone());
    any_of(&mut q, "run_id", filter.run_id.iter().cloned().collect());
    any_of(
        &mut q,
        "event",
        filter
            .events
            .iter()
            .map(|e| e.as_str().to_string())
            .collect(),
    );
    let at = dialect.quote("at");
    if let Some(since) = filter.since {
        q.push(" AND ").push(&at).push(" >= ");
        q.push_bind(Param::Moment(Moment::Instant(since)));
    }
    if let Some(until) = filter.until {
        q.push(" AND ").push(&at).push(" < ");
        q.push_bind(Param::Moment(Moment::Instant(until)));
    }
    q.push(" ORDER BY ").push(&seq).push(order).push(" LIMIT ");
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
pub(crate) mod tests {
    use super::*;
    use crate::rules::Engine;
    use crate::step::{DueCondition, Event, StepAction};

    /// A dialect with `?` placeholders, to check text order against binds.
    struct Positional;

    impl Dialect for Positional {
        fn quote(&self, ident: &str) -> String {
            format!("\"{}\"", ident.replace('"', "\"\""))
        }
        fn placeholder(&self, _index: usize, _param: &Param) -> String {
            "?".into()
        }
        fn is_token(&self, q: &mut Query<'_>, column_sql: &str, shape: &TokenShape) -> String {
            let pattern = q.bind(Param::Text(shape.regex()));
            format!("({column_sql} ~ {pattern})")
        }
        fn is_ip_prefix(
            &self,
            q: &mut Query<'_>,
            column_sql: &str,
            change: &ColumnChange,
        ) -> String {
            let redacted = change.redacted.clone().unwrap();
            let pattern = q.bind(Param::Text(crate::generalise::ip_prefix_regex(
                &redacted, "$",
            )));
            format!("({column_sql} ~ {pattern})")
        }
        fn truncated(&self, column_sql: &str, _column: &Column, part: DatePart) -> String {
            format!("date_trunc('{}', {column_sql})", part.as_str())
        }
        fn event_text(&self, sql: &str, _kind: ColumnKind) -> String {
            sql.to_string()
        }
        fn max_params(&self) -> usize {
            1_010
        }
        fn audit_type(&self, _kind: AuditType) -> String {
            "text".into()
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

    pub(crate) fn step(action: StepAction) -> Step {
        Step {
            rule_id: "r".into(),
            description: None,
            store: "s".into(),
            engine: Engine::Postgres,
            table: "CRONUS International Ltd_$Customer".parse().unwrap(),
            category: "c".into(),
            retention: "1 year".into(),
            as_of: "2026-01-01T00:00:00Z".parse().unwrap(),
            timing: crate::step::StepTiming {
                kind: crate::period::PeriodKind::Minimum,
                lead_seconds: 0,
                lead_reason: None,
                acts_as_of: "2026-01-01T00:00:00Z".parse().unwrap(),
                max_duration_seconds: 3600,
                schedule: None,
                next_run: None,
                gone_by: None,
            },
            due: DueCondition {
                event: Event {
                    kind: ColumnKind::Timestamp,
                    sources: vec![EventSource::Own(column(
                        "Last Date Modified",
                        ColumnKind::Timestamp,
                    ))],
                    combine: Combine::Latest,
                },
                bound: Moment::Date("2025-01-01".parse().unwrap()),
                empty_ranges: vec![(
                    Moment::Date("1980-01-01".parse().unwrap()),
                    Moment::Date("1980-01-02".parse().unwrap()),
                )],
                floor: Moment::Date("1900-01-01".parse().unwrap()),
            },
            filter: Some("\"Blocked\" = 0".into()),
            joins: vec![],
            holds: vec![Hold::Column(column("Hold", ColumnKind::Boolean))],
            cascades: vec![],
            key: vec![
                column("No_", ColumnKind::Text),
                column("Company", ColumnKind::Text),
            ],
            action,
            max_rows: None,
            vacuum_after: false,
            batch_size: 100,
            batch_ms: 0,
            window: None,
            pause_ms: 0,
            max_load: None,
            max_lag: None,
            replicas: Vec::new(),
            rows_only: None,
            rule_fingerprint: "f".into(),
        }
    }

    fn single(batch: BatchStatements<'_>) -> Query<'_> {
        match batch {
            BatchStatements::Single(q) => q,
            _ => panic!("one statement expected"),
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
        let q = single(batch(&Positional, &step, &window, None));
        assert_eq!(
            q.sql,
            "DELETE FROM \"CRONUS International Ltd_$Customer\" WHERE \
             ((\"No_\" > ?) OR (\"No_\" = ? AND \"Company\" > ?)) AND \
             ((\"No_\" < ?) OR (\"No_\" = ? AND \"Company\" <= ?)) AND \
             ((\"Blocked\" = 0) AND \
             (\"Last Date Modified\" < ? AND NOT (\"Last Date Modified\" < ? OR (\"Last Date Modified\" >= ? AND \"Last Date Modified\" < ?))) AND \
             NOT (COALESCE(\"Hold\", TRUE)))"
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

    /// PostgreSQL names `"id"::text` `id`: a select list that turned the key
    /// into text under its own name would make `ORDER BY "id"` sort the
    /// text, and a limited batch take '10000' before '9999' and the walk go
    /// on after the wrong row.
    #[test]
    fn limited_reads_sort_by_the_key_not_its_text() {
        let dialect = &crate::store::postgres::Postgres;
        let mut step = step(StepAction::Pseudonymise {
            columns: vec![ColumnChange {
                column: column("E-Mail", ColumnKind::Text),
                action: ColumnAction::HmacEmail,
                token: TokenShape::for_column(ColumnAction::HmacEmail, Some(80)),
                redacted: None,
            }],
        });
        step.key = vec![column("id", ColumnKind::Integer)];
        let BatchStatements::Tokens { read, .. } =
            batch(dialect, &step, &Window::default(), Some(5))
        else {
            panic!("a token step reads, then writes");
        };
        let select_list = &read.sql[..read.sql.find(" FROM ").unwrap()];
        assert!(
            select_list.contains("AS glemsel_c0") && select_list.contains("AS glemsel_c1"),
            "{}",
            read.sql
        );
        assert!(!select_list.contains("AS \"id\"") && !select_list.contains("AS id"));
        assert!(read.sql.contains(" ORDER BY \"id\" LIMIT "), "{}", read.sql);
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
        let window = Window::default();
        let BatchStatements::Tokens { read, columns } = batch(&Positional, &step, &window, None)
        else {
            panic!("a token step reads, then writes");
        };
        assert_eq!(
            columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["No_", "Company", "E-Mail"]
        );
        assert!(read.sql.starts_with(
            "SELECT \"No_\" AS glemsel_c0, \"Company\" AS glemsel_c1, \"E-Mail\" AS glemsel_c2 FROM \"CRONUS International Ltd_$Customer\" WHERE"
        ), "{}", read.sql);
        assert!(read.sql.ends_with(" FOR UPDATE"), "{}", read.sql);
        let rows: Vec<TokenRow> = (0..7)
            .map(|i| TokenRow {
                key: vec![KeyValue::Text(format!("C{i}")), KeyValue::Text("A".into())],
                tokens: vec![Some(format!("psn_{i}"))],
            })
            .collect();
        let writes = token_writes(&Positional, &step, &window, &rows);
        // Ten parameters of room, three per row: rows split 3 + 3 + 1.
        assert_eq!(writes.len(), 3);
        let q = &writes[0];
        assert!(q.sql.starts_with(
            "UPDATE \"CRONUS International Ltd_$Customer\" SET \"E-Mail\" = COALESCE(glemsel_v.glemsel_t0, \"E-Mail\"), \"Phone No_\" = NULL FROM (SELECT ? AS glemsel_k0, ? AS glemsel_k1, ? AS glemsel_t0 UNION ALL SELECT ?, ?, ? UNION ALL SELECT ?, ?, ?) AS glemsel_v WHERE \"No_\" = glemsel_v.glemsel_k0 AND \"Company\" = glemsel_v.glemsel_k1 AND"
        ), "{}", q.sql);
        assert!(q.sql.ends_with("AND ((\"E-Mail\" IS NOT NULL AND NOT (\"E-Mail\" ~ ?)) OR (\"Phone No_\" IS NOT NULL)))"), "{}", q.sql);
        assert_eq!(placeholders(q), q.params.len());
        assert!(matches!(&q.params[2], Param::OptText(Some(t)) if t == "psn_0"));
        let count = count(&Positional, &step).main;
        assert_eq!(placeholders(&count), count.params.len());
        // What the dry run counts as due is, to the letter, what the batch
        // reads and what its writes re-check.
        let counted_due = count
            .sql
            .split("COUNT(CASE WHEN ")
            .nth(1)
            .unwrap()
            .split(" THEN 1 END)")
            .next()
            .unwrap();
        assert!(
            read.sql
                .ends_with(&format!(" WHERE {counted_due} FOR UPDATE")),
            "{counted_due}\n{}",
            read.sql
        );
        for q in &writes {
            assert!(
                q.sql.ends_with(&format!(" AND {counted_due}")),
                "{counted_due}\n{}",
                q.sql
            );
        }
        assert!(count.sql.contains("COUNT(CASE WHEN ((\"Blocked\" = 0) AND (\"Last Date Modified\" IS NULL OR \"Last Date Modified\" < ? OR (\"Last Date Modified\" >= ? AND \"Last Date Modified\" < ?))) THEN 1 END)"), "{}", count.sql);
    }

    #[test]
    fn anonymise_generalises_in_sql_and_prefixes_ips_in_the_worker() {
        let change = |name: &str, kind, action| ColumnChange {
            column: column(name, kind),
            action,
            token: TokenShape::for_column(action, Some(80)),
            redacted: matches!(action, ColumnAction::Redact | ColumnAction::IpPrefix)
                .then(|| "[redacted]".to_string()),
        };
        let in_sql = vec![
            change("Phone No_", ColumnKind::Text, ColumnAction::Null),
            change("Name", ColumnKind::Text, ColumnAction::Redact),
            change(
                "Born",
                ColumnKind::Date,
                ColumnAction::Truncate(DatePart::Year),
            ),
            change("Post Code", ColumnKind::Text, ColumnAction::Prefix(2)),
        ];
        let step_sql = step(StepAction::Anonymise {
            columns: in_sql.clone(),
        });
        let q = single(batch(&Positional, &step_sql, &Window::default(), None));
        assert!(q.sql.starts_with(
            "UPDATE \"CRONUS International Ltd_$Customer\" SET \"Phone No_\" = NULL, \
             \"Name\" = CASE WHEN (\"Name\" IS NOT NULL AND \"Name\" <> ?) THEN ? ELSE \"Name\" END, \
             \"Born\" = CASE WHEN (\"Born\" IS NOT NULL AND \"Born\" <> date_trunc('year', \"Born\")) THEN date_trunc('year', \"Born\") ELSE \"Born\" END, \
             \"Post Code\" = CASE WHEN (\"Post Code\" IS NOT NULL AND CHAR_LENGTH(\"Post Code\") > ?) THEN LEFT(\"Post Code\", ?) ELSE \"Post Code\" END WHERE"
        ), "{}", q.sql);
        assert!(q.sql.ends_with(
            " OR (\"Born\" IS NOT NULL AND \"Born\" <> date_trunc('year', \"Born\")) OR (\"Post Code\" IS NOT NULL AND CHAR_LENGTH(\"Post Code\") > ?)))"
        ), "{}", q.sql);
        assert_eq!(placeholders(&q), q.params.len());
        assert!(matches!(q.params[2], Param::Int(2)) && matches!(q.params[3], Param::Int(2)));

        // An IP prefix is computed in the worker: read, then write back by key.
        let mut columns = in_sql;
        columns.push(change("IP", ColumnKind::Text, ColumnAction::IpPrefix));
        let step_ip = step(StepAction::Anonymise { columns });
        let window = Window::default();
        let BatchStatements::Tokens { read, columns } = batch(&Positional, &step_ip, &window, None)
        else {
            panic!("IP prefixes are read, then written");
        };
        assert_eq!(
            columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["No_", "Company", "IP"]
        );
        let rows = vec![TokenRow {
            key: vec![KeyValue::Text("C1".into()), KeyValue::Text("A".into())],
            tokens: vec![Some("192.0.2.0".into())],
        }];
        let writes = token_writes(&Positional, &step_ip, &window, &rows);
        let write = &writes[0];
        assert!(
            write
                .sql
                .contains("\"IP\" = COALESCE(glemsel_v.glemsel_t0, \"IP\")"),
            "{}",
            write.sql
        );
        assert_eq!(placeholders(write), write.params.len());
        let count = count(&Positional, &step_ip).main;
        assert_eq!(placeholders(&count), count.params.len());
        let counted_due = count
            .sql
            .split("COUNT(CASE WHEN ")
            .nth(1)
            .unwrap()
            .split(" THEN 1 END)")
            .next()
            .unwrap();
        assert!(
            counted_due.contains("(\"IP\" IS NOT NULL AND NOT (\"IP\" ~ ?))"),
            "{counted_due}"
        );
        assert!(
            read.sql
                .ends_with(&format!(" WHERE {counted_due} FOR UPDATE")),
            "{}",
            read.sql
        );
        assert!(
            write.sql.ends_with(&format!(" AND {counted_due}")),
            "{}",
            write.sql
        );
        assert_eq!(step_ip.action.as_str(), "anonymise");
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

    /// With several event sources, a joined one, an open condition, a hold
    /// table and two levels of cascades, every statement still binds exactly
    /// one value per placeholder, in text order.
    #[test]
    fn composite_steps_bind_every_placeholder_once() {
        let related = |table: &str, on: (&str, &str)| RelatedStep {
            table: table.parse().unwrap(),
            on: vec![(on.0.into(), on.1.into())],
        };
        let mut step = step(StepAction::Delete);
        step.due.event = Event {
            kind: ColumnKind::Timestamp,
            sources: vec![
                EventSource::Own(column("Last Date Modified", ColumnKind::Timestamp)),
                EventSource::Joined {
                    join: 0,
                    column: column("created_at", ColumnKind::Date),
                },
            ],
            combine: Combine::Latest,
        };
        step.joins = vec![crate::step::JoinStep {
            name: "tickets".into(),
            related: related("tickets", ("customer_no", "No_")),
            open: Some("answered_at IS NULL".into()),
        }];
        step.holds.push(Hold::Table {
            name: "disputes".into(),
            related: related("disputes", ("customer_no", "No_")),
            filter: Some("resolved_at IS NULL".into()),
        });
        step.cascades = vec![
            crate::step::CascadeStep {
                related: related("tickets", ("customer_no", "No_")),
                parent_columns: vec![column("No_", ColumnKind::Text)],
                parent: None,
            },
            crate::step::CascadeStep {
                related: related("messages", ("ticket_id", "id")),
                parent_columns: vec![column("id", ColumnKind::Integer)],
                parent: Some(0),
            },
        ];
        let counts = count(&Positional, &step);
        assert_eq!(counts.cascades.len(), 2);
        let captured = vec![
            vec![KeyValue::Text("C1".into()), KeyValue::Text("A".into())],
            vec![KeyValue::Text("C2".into()), KeyValue::Text("A".into())],
        ];
        let BatchStatements::Captured { capture, columns } =
            batch(&Positional, &step, &Window::default(), None)
        else {
            panic!("cascades capture first");
        };
        assert_eq!(
            columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["No_", "Company"]
        );
        let deletes = captured_deletes(&Positional, &step, &captured);
        assert_eq!(
            deletes.iter().map(|(index, _)| *index).collect::<Vec<_>>(),
            [Some(1), Some(0), None]
        );
        let statements = std::iter::once(&counts.main)
            .chain(&counts.cascades)
            .chain(std::iter::once(&capture))
            .chain(deletes.iter().map(|(_, q)| q));
        for q in statements {
            assert_eq!(placeholders(q), q.params.len(), "{}", q.sql);
        }
        assert!(
            capture.sql.contains("NULLIF(GREATEST(COALESCE(CASE WHEN"),
            "{}",
            capture.sql
        );
        assert!(capture.sql.contains("NOT EXISTS (SELECT 1 FROM \"tickets\" j0 WHERE j0.\"customer_no\" = \"CRONUS International Ltd_$Customer\".\"No_\" AND (answered_at IS NULL))"), "{}", capture.sql);
        assert!(deletes[0].1.sql.starts_with("DELETE FROM \"messages\" WHERE \"ticket_id\" IN (SELECT \"id\" FROM \"tickets\" WHERE \"customer_no\" IN (?, ?))"), "{}", deletes[0].1.sql);
    }

    fn text(value: &str) -> KeyValue {
        KeyValue::Text(value.into())
    }

    /// Where several of a thing go into one statement, each separator
    /// stands between them: holds, the columns a related table matches
    /// on, keys in an IN list, the bounds of a forecast, the rules an
    /// audit search names.
    #[test]
    fn lists_join_with_their_separators() {
        let mut step = step(StepAction::Delete);
        step.holds.push(Hold::Table {
            name: "disputes".into(),
            related: RelatedStep {
                table: "disputes".parse().unwrap(),
                on: vec![
                    ("customer_no".into(), "No_".into()),
                    ("company".into(), "Company".into()),
                ],
            },
            filter: None,
        });
        let q = single(batch(&Positional, &step, &Window::default(), None));
        assert!(
            q.sql.ends_with(
                "NOT (COALESCE(\"Hold\", TRUE) OR EXISTS (SELECT 1 FROM \"disputes\" h1 WHERE \
                 h1.\"customer_no\" = \"CRONUS International Ltd_$Customer\".\"No_\" AND \
                 h1.\"company\" = \"CRONUS International Ltd_$Customer\".\"Company\")))"
            ),
            "{}",
            q.sql
        );

        // The events kept for erasure: one key column, then two.
        let id = column("id", ColumnKind::Integer);
        let ids = [1, 2, 3].map(|i| vec![KeyValue::Int(i)]);
        let q = kept_events(&Positional, &step, &[id], &ids);
        assert!(
            q.sql.ends_with(" WHERE \"id\" IN (?, ?, ?)) glemsel_k"),
            "{}",
            q.sql
        );
        assert!(
            q.sql
                .contains(" AND NOT (COALESCE(\"Hold\", TRUE) OR EXISTS"),
            "{}",
            q.sql
        );
        assert_eq!(placeholders(&q), q.params.len());
        let pairs = [vec![text("C1"), text("A")], vec![text("C2"), text("B")]];
        let q = kept_events(&Positional, &step, &step.key, &pairs);
        assert!(
            q.sql.ends_with(
                " WHERE ((\"No_\" = ? AND \"Company\" = ?) OR (\"No_\" = ? AND \"Company\" = ?))) glemsel_k"
            ),
            "{}",
            q.sql
        );
        // Without holds, nothing is said of them.
        step.holds.clear();
        let q = kept_events(&Positional, &step, &step.key, &pairs);
        assert!(!q.sql.contains("NOT"), "{}", q.sql);
        assert!(
            q.sql
                .contains("CASE WHEN (\"Blocked\" = 0) THEN CASE WHEN "),
            "{}",
            q.sql
        );

        let bounds =
            ["2024-01-01", "2025-01-01", "2026-01-01"].map(|d| Moment::Date(d.parse().unwrap()));
        let q = forecast(&Positional, &step, &bounds);
        assert!(
            q.sql.starts_with(
                "SELECT COUNT(CASE WHEN glemsel_e < ? THEN 1 END), \
                 COUNT(CASE WHEN glemsel_e < ? THEN 1 END), \
                 COUNT(CASE WHEN glemsel_e < ? THEN 1 END) FROM (SELECT "
            ),
            "{}",
            q.sql
        );
        assert_eq!(placeholders(&q), q.params.len());

        let filter = AuditFilter {
            rules: vec!["a".into(), "b".into()],
            ..AuditFilter::default()
        };
        let table = "glemsel_audit".parse().unwrap();
        let q = audit_search(&Positional, &table, &filter, AuditCursor::After(7), 50);
        assert!(
            q.sql
                .contains(" WHERE \"seq\" > ? AND \"rule_id\" IN (?, ?)"),
            "{}",
            q.sql
        );
        assert_eq!(placeholders(&q), q.params.len());
    }

    /// PostgreSQL compares a composite key as one row value (an index
    /// range); a one-column key needs no parentheses.
    #[test]
    fn postgres_compares_composite_keys_as_row_values() {
        let dialect = &crate::store::postgres::Postgres;
        let mut step = step(StepAction::Delete);
        let window = Window {
            after: Some(vec![text("C1"), text("A")]),
            through: Some(vec![text("C9"), text("B")]),
        };
        let q = single(batch(dialect, &step, &window, None));
        assert!(
            q.sql.starts_with(
                "DELETE FROM \"CRONUS International Ltd_$Customer\" WHERE \
                 (\"No_\", \"Company\") > (CAST($1::text AS t), CAST($2::text AS t)) AND \
                 (\"No_\", \"Company\") <= (CAST($3::text AS t), CAST($4::text AS t)) AND "
            ),
            "{}",
            q.sql
        );
        step.key.truncate(1);
        let window = Window {
            after: Some(vec![text("C1")]),
            through: None,
        };
        let q = single(batch(dialect, &step, &window, None));
        assert!(
            q.sql.starts_with(
                "DELETE FROM \"CRONUS International Ltd_$Customer\" WHERE \"No_\" > CAST($1::text AS t) AND "
            ),
            "{}",
            q.sql
        );
    }

    /// Several event sources: each cleaned, a date among timestamps cast
    /// to one, and absent values standing in as a sentinel of the event's
    /// own type (the earliest date for the latest, the last for the
    /// earliest); a joined source takes the latest or earliest of its rows.
    #[test]
    fn several_event_sources() {
        let born = column("Born", ColumnKind::Date);
        let mut step = step(StepAction::Delete);
        step.due.event.sources.push(EventSource::Own(born.clone()));
        let q = count(&Positional, &step).main;
        assert!(
            q.sql
                .contains("THEN NULL ELSE CAST(\"Born\" AS TIMESTAMP) END"),
            "{}",
            q.sql
        );
        assert!(
            q.sql.contains("THEN NULL ELSE \"Last Date Modified\" END"),
            "{}",
            q.sql
        );
        let sentinels = |q: &Query<'_>| -> Vec<Moment> {
            let mut found: Vec<Moment> = q
                .params
                .iter()
                .filter_map(|p| match p {
                    Param::Moment(m)
                        if m.to_string().starts_with("1000-01-01")
                            || m.to_string().starts_with("9999-12-31") =>
                    {
                        Some(*m)
                    }
                    _ => None,
                })
                .collect();
            found.dedup();
            found
        };
        let midnight = |d: &str| {
            d.parse::<chrono::NaiveDate>()
                .unwrap()
                .and_time(chrono::NaiveTime::MIN)
        };
        assert_eq!(sentinels(&q), [Moment::Timestamp(midnight("1000-01-01"))]);

        // A date event of dates: nothing cast, date sentinels.
        step.due.event.kind = ColumnKind::Date;
        step.due.event.sources = vec![
            EventSource::Own(column("Closed", ColumnKind::Date)),
            EventSource::Own(born.clone()),
        ];
        let q = count(&Positional, &step).main;
        assert!(!q.sql.contains("CAST("), "{}", q.sql);
        assert_eq!(sentinels(&q), [Moment::Date("1000-01-01".parse().unwrap())]);
        // Instants, the earliest: the last day as an instant, and a
        // joined source's earliest row.
        step.due.event.kind = ColumnKind::TimestampTz;
        step.due.event.combine = Combine::Earliest;
        step.due.event.sources = vec![
            EventSource::Own(column("Closed", ColumnKind::TimestampTz)),
            EventSource::Joined {
                join: 0,
                column: column("sent_at", ColumnKind::TimestampTz),
            },
        ];
        step.joins = vec![crate::step::JoinStep {
            name: "mails".into(),
            related: RelatedStep {
                table: "mails".parse().unwrap(),
                on: vec![("customer_no".into(), "No_".into())],
            },
            open: None,
        }];
        let q = count(&Positional, &step).main;
        assert!(q.sql.contains("NULLIF(LEAST(COALESCE("), "{}", q.sql);
        assert!(
            q.sql
                .contains("(SELECT MIN(CASE WHEN j0.\"sent_at\" IS NULL"),
            "{}",
            q.sql
        );
        assert_eq!(
            sentinels(&q),
            [Moment::Instant(midnight("9999-12-31").and_utc())]
        );
        step.due.event.combine = Combine::Latest;
        let q = count(&Positional, &step).main;
        assert!(
            q.sql
                .contains("(SELECT MAX(CASE WHEN j0.\"sent_at\" IS NULL"),
            "{}",
            q.sql
        );
    }

    /// A capture reads the walk key, then each other column a top-level
    /// cascade points at, once.
    #[test]
    fn captures_read_the_key_and_what_cascades_point_at() {
        let mut step = step(StepAction::Delete);
        let cascade = |parent_column: &str, parent| crate::step::CascadeStep {
            related: RelatedStep {
                table: "notes".parse().unwrap(),
                on: vec![("x".into(), parent_column.into())],
            },
            parent_columns: vec![column(parent_column, ColumnKind::Text)],
            parent,
        };
        step.cascades = vec![
            cascade("No_", None),
            cascade("E-Mail", None),
            cascade("E-Mail", None),
            cascade("Deep", Some(0)),
        ];
        let names: Vec<String> = capture_columns(&step).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["No_", "Company", "E-Mail"]);
    }
}
