//! Randomized differential test: random tables (integer, text and composite
//! keys with gaps; date and wall-clock timestamp events with NULLs, empty-
//! date sentinels, month ends and times around the DST changes), random
//! holds, `where` conditions, periods and as-of times. On each engine,
//! `plan`'s counts and the rows `run` changes must equal what the reference
//! model below, written independently of glemsel's own code, says is due.
//!
//! Seeded, so a failure reproduces: `GLEMSEL_DIFF_SEED` (default below) and
//! `GLEMSEL_DIFF_CASES` (default 200 per engine) change the run; a failure
//! names its seed and case.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Europe::Copenhagen;
use common::{KEY, Kind, Project, TestDb, code, text};
use glemsel::pseudonym::{ColumnAction, HmacKey, TokenShape};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DEFAULT_SEED: u64 = 20_261_130;
const DEFAULT_CASES: usize = 200;
/// Dates that mean "no date" in every generated rule.
const EMPTY_DATE: &str = "2000-01-01";

#[derive(Debug, Clone, Copy, PartialEq)]
enum KeyShape {
    Integer,
    Text,
    Composite,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Days,
    Weeks,
    Months,
    Years,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rounding {
    None,
    Calendar,
    /// A financial year ending 30 June (the test config's).
    June,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scope {
    All,
    GroupA,
    NotBOrLarge,
    Between,
}

impl Scope {
    fn sql(self) -> Option<&'static str> {
        match self {
            Scope::All => None,
            Scope::GroupA => Some("grp = 'a'"),
            Scope::NotBOrLarge => Some("(grp <> 'b' OR n > 5)"),
            Scope::Between => Some("n BETWEEN 3 AND 7"),
        }
    }

    fn holds(self, row: &Row) -> bool {
        match self {
            Scope::All => true,
            Scope::GroupA => row.grp == "a",
            Scope::NotBOrLarge => row.grp != "b" || row.n > 5,
            Scope::Between => (3..=7).contains(&row.n),
        }
    }
}

#[derive(Debug, Clone)]
struct Row {
    key: (String, i64),
    name: String,
    grp: &'static str,
    n: i64,
    event: Option<NaiveDateTime>,
    hold: Option<bool>,
}

#[derive(Debug, Clone)]
struct Case {
    key: KeyShape,
    timestamp: bool,
    amount: u32,
    unit: Unit,
    rounding: Rounding,
    scope: Scope,
    pseudonymise: bool,
    with_hold: bool,
    batch_size: u64,
    /// 0: fixed-size windows; otherwise windows grow and batches are
    /// limited in the rows they change (the limited statement forms).
    batch_ms: u64,
    as_of: DateTime<Utc>,
    rows: Vec<Row>,
}

// --- The reference model -----------------------------------------------------

/// The first day of the month after `month` of `year`.
fn month_after(year: i32, month: u32) -> NaiveDate {
    if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1).unwrap()
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1).unwrap()
    }
}

/// Months later, same day and time; a day the target month lacks means the
/// month's end, i.e. the first instant of the month after.
fn months_later(at: NaiveDateTime, months: u32) -> NaiveDateTime {
    let mut year = at.year();
    let mut month = at.month() + months % 12;
    year += (months / 12) as i32;
    if month > 12 {
        month -= 12;
        year += 1;
    }
    match NaiveDate::from_ymd_opt(year, month, at.day()) {
        Some(date) => date.and_time(at.time()),
        None => month_after(year, month).and_time(NaiveTime::MIN),
    }
}

/// The first instant after the year (ending with `end_month`) holding `at`.
fn year_end_after(at: NaiveDateTime, end_month: u32) -> NaiveDateTime {
    let this_year = month_after(at.year(), end_month);
    let boundary = if at.date() < this_year {
        this_year
    } else {
        month_after(at.year() + 1, end_month)
    };
    boundary.and_time(NaiveTime::MIN)
}

fn due_at(case: &Case, event: NaiveDateTime) -> NaiveDateTime {
    let start = match case.rounding {
        Rounding::None => event,
        Rounding::Calendar => year_end_after(event, 12),
        Rounding::June => year_end_after(event, 6),
    };
    match case.unit {
        Unit::Days => start + Days::new(u64::from(case.amount)),
        Unit::Weeks => start + Days::new(7 * u64::from(case.amount)),
        Unit::Months => months_later(start, case.amount),
        Unit::Years => months_later(start, 12 * case.amount),
    }
}

#[derive(Debug, Default, PartialEq)]
struct Expected {
    due: u64,
    held: u64,
    undated: u64,
    done: u64,
}

/// Which rows the rule changes, and the dry run's counts.
fn reference(case: &Case, shape: &TokenShape) -> (Expected, Vec<bool>) {
    let now = case.as_of.with_timezone(&Copenhagen).naive_local();
    let empty: NaiveDate = EMPTY_DATE.parse().unwrap();
    let floor = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap();
    let mut expected = Expected::default();
    let mut changed = Vec::new();
    for row in &case.rows {
        let in_scope = case.scope.holds(row);
        let dated = row.event.filter(|e| e.date() != empty && e.date() >= floor);
        let due = in_scope && dated.is_some_and(|e| due_at(case, e) <= now);
        let held = case.with_hold && row.hold != Some(false);
        let done = case.pseudonymise && shape.is_token(&row.name);
        if in_scope && dated.is_none() {
            expected.undated += 1;
        }
        if due && done {
            expected.done += 1;
        }
        if due && !done && held {
            expected.held += 1;
        }
        let change = due && !done && !held;
        expected.due += u64::from(change);
        changed.push(change);
    }
    (expected, changed)
}

// --- The generator -------------------------------------------------------------

fn random_event(rng: &mut StdRng, case_now: NaiveDateTime, case: &Case) -> Option<NaiveDateTime> {
    let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
    let at = match rng.random_range(0..10) {
        0 => return None,
        1 => date(2000, 1, 1)
            .and_hms_opt(rng.random_range(0..24), 0, 0)
            .unwrap(),
        2 => {
            // A month's end.
            let (m, d) =
                [(1, 31), (2, 28), (3, 31), (6, 30), (8, 31), (12, 31)][rng.random_range(0..6)];
            date(rng.random_range(2012..2026), m, d).and_time(NaiveTime::MIN)
        }
        3 => date(2020, 2, 29)
            .and_hms_opt(rng.random_range(0..24), 30, 0)
            .unwrap(),
        4 => {
            // Around the DST changes in Copenhagen (wall clock).
            let day = [
                date(2024, 3, 31),
                date(2024, 10, 27),
                date(2025, 3, 30),
                date(2025, 10, 26),
            ][rng.random_range(0..4)];
            day.and_hms_opt(rng.random_range(1..4), rng.random_range(0..60), 0)
                .unwrap()
        }
        5 | 6 => {
            // Near this case's boundary: now minus about the period.
            let span = match case.unit {
                Unit::Days => i64::from(case.amount),
                Unit::Weeks => 7 * i64::from(case.amount),
                Unit::Months => 30 * i64::from(case.amount),
                Unit::Years => 365 * i64::from(case.amount),
            };
            case_now - chrono::TimeDelta::days(span)
                + chrono::TimeDelta::seconds(rng.random_range(-3 * 86_400..3 * 86_400))
        }
        _ => {
            let start = date(2012, 1, 1).and_time(NaiveTime::MIN);
            start + chrono::TimeDelta::seconds(rng.random_range(0..15 * 365 * 86_400))
        }
    };
    let at = if case.timestamp {
        at + chrono::TimeDelta::microseconds(
            rng.random_range(0..2) * rng.random_range(0..1_000_000),
        )
    } else {
        at.date().and_time(NaiveTime::MIN)
    };
    Some(at)
}

fn generate(rng: &mut StdRng, key: &HmacKey, shape: &TokenShape) -> Case {
    let as_of = match rng.random_range(0..4) {
        // Just after a DST change, in UTC.
        0 => Utc
            .with_ymd_and_hms(2025, 3, 30, 1, rng.random_range(0..60), 0)
            .unwrap(),
        1 => Utc
            .with_ymd_and_hms(2025, 10, 26, rng.random_range(0..3), 30, 0)
            .unwrap(),
        _ => {
            let start = Utc.with_ymd_and_hms(2016, 1, 1, 0, 0, 0).unwrap();
            start + chrono::TimeDelta::seconds(rng.random_range(0..10 * 365 * 86_400))
        }
    };
    let unit = [Unit::Days, Unit::Weeks, Unit::Months, Unit::Years][rng.random_range(0..4)];
    let amount = match unit {
        Unit::Days => rng.random_range(0..60),
        Unit::Weeks => rng.random_range(0..12),
        Unit::Months => rng.random_range(0..40),
        Unit::Years => rng.random_range(0..7),
    };
    let mut case = Case {
        key: [KeyShape::Integer, KeyShape::Text, KeyShape::Composite][rng.random_range(0..3)],
        timestamp: rng.random_bool(0.5),
        amount,
        unit,
        rounding: [Rounding::None, Rounding::Calendar, Rounding::June][rng.random_range(0..3)],
        scope: [
            Scope::All,
            Scope::GroupA,
            Scope::NotBOrLarge,
            Scope::Between,
        ][rng.random_range(0..4)],
        pseudonymise: rng.random_bool(0.4),
        with_hold: rng.random_bool(0.5),
        batch_size: rng.random_range(1..25),
        batch_ms: [0, 5_000][rng.random_range(0..2)],
        as_of,
        rows: Vec::new(),
    };
    let case_now = as_of.with_timezone(&Copenhagen).naive_local();
    let count = rng.random_range(0..40);
    let mut id = 0i64;
    for i in 0..count {
        id += rng.random_range(1..50);
        let text_key: String = (0..rng.random_range(1..6))
            .map(|_| (b'a' + rng.random_range(0..26u8)) as char)
            .collect::<String>()
            + &i.to_string();
        let plain = format!("Person {i} Æø");
        let name = if rng.random_range(0..6) == 0 {
            shape.token(key, &plain)
        } else {
            plain
        };
        case.rows.push(Row {
            key: (text_key, id),
            name,
            grp: ["a", "b", "c"][rng.random_range(0..3)],
            n: rng.random_range(0..10),
            event: random_event(rng, case_now, &case),
            hold: [None, Some(true), Some(false), Some(false)][rng.random_range(0..4)],
        });
    }
    case
}

// --- Running a case ------------------------------------------------------------

fn sql_text(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn fixture(kind: Kind, table: &str, case: &Case) -> String {
    let event_type = match (kind, case.timestamp) {
        (_, false) => "DATE",
        (Kind::Postgres, true) => "TIMESTAMP",
        (Kind::Mariadb, true) => "DATETIME(6)",
        (Kind::Sqlite, true) => "DATETIME",
    };
    let key_columns = match case.key {
        KeyShape::Integer => "k1 INTEGER NOT NULL, PRIMARY KEY (k1)",
        KeyShape::Text => "k0 VARCHAR(20) NOT NULL, PRIMARY KEY (k0)",
        KeyShape::Composite => "k0 VARCHAR(20) NOT NULL, k1 INTEGER NOT NULL, PRIMARY KEY (k0, k1)",
    };
    let mut sql = format!(
        "CREATE TABLE {table} (name VARCHAR(80), grp VARCHAR(5) NOT NULL, n INTEGER NOT NULL, ev {event_type}, hold BOOLEAN, {key_columns});\n"
    );
    for row in &case.rows {
        let event = match row.event {
            None => "NULL".to_string(),
            Some(at) if case.timestamp => sql_text(&at.format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
            Some(at) => sql_text(&at.format("%Y-%m-%d").to_string()),
        };
        let hold = match row.hold {
            None => "NULL",
            Some(true) => "TRUE",
            Some(false) => "FALSE",
        };
        let key = match case.key {
            KeyShape::Integer => format!("{}", row.key.1),
            KeyShape::Text => sql_text(&row.key.0),
            KeyShape::Composite => format!("{}, {}", sql_text(&row.key.0), row.key.1),
        };
        let key_names = match case.key {
            KeyShape::Integer => "k1",
            KeyShape::Text => "k0",
            KeyShape::Composite => "k0, k1",
        };
        sql.push_str(&format!(
            "INSERT INTO {table} (name, grp, n, ev, hold, {key_names}) VALUES ({}, '{}', {}, {event}, {hold}, {key});\n",
            sql_text(&row.name),
            row.grp,
            row.n
        ));
    }
    sql
}

fn rule(table: &str, case: &Case) -> String {
    let unit = match case.unit {
        Unit::Days => "days",
        Unit::Weeks => "weeks",
        Unit::Months => "months",
        Unit::Years => "years",
    };
    let mut rule = format!(
        "[[rule]]\nid = \"{table}\"\nstore = \"db\"\ntable = \"{table}\"\ncategory = \"test\"\nafter = \"ev\"\nretain = \"{} {unit}\"\nempty_dates = [\"{EMPTY_DATE}\"]\nbatch_size = {}\nbatch_ms = {}\n",
        case.amount, case.batch_size, case.batch_ms
    );
    match case.rounding {
        Rounding::None => {}
        Rounding::Calendar => rule.push_str("round_up_to = \"calendar_year_end\"\n"),
        Rounding::June => rule.push_str("round_up_to = \"financial_year_end\"\n"),
    }
    if let Some(scope) = case.scope.sql() {
        rule.push_str(&format!("where = {scope:?}\n"));
    }
    if case.with_hold {
        rule.push_str("hold = \"hold\"\n");
    }
    if case.pseudonymise {
        rule.push_str("action = \"pseudonymise\"\ncolumns = { name = \"hmac\" }\n");
    } else {
        rule.push_str("action = \"delete\"\n");
    }
    rule
}

async fn run_case(
    kind: Kind,
    db: &TestDb,
    project: &Project,
    index: usize,
    case: &Case,
    key: &HmacKey,
    shape: &TokenShape,
) -> Result<(), String> {
    let table = format!("t{index}");
    db.exec(&fixture(kind, &table, case)).await;
    project.rules("rules.toml", &rule(&table, case));
    let as_of = case.as_of.to_rfc3339();
    let (expected, changed) = reference(case, shape);

    let plan = project.glemsel(&["plan", "--format", "json", "--as-of", &as_of]);
    if code(&plan) != 0 {
        return Err(format!("plan failed: {}", text(&plan)));
    }
    let plan: serde_json::Value =
        serde_json::from_slice(&plan.stdout).map_err(|e| e.to_string())?;
    let counts = &plan["steps"][0]["counts"];
    let planned = Expected {
        due: counts["due"].as_u64().unwrap_or(u64::MAX),
        held: counts["held"].as_u64().unwrap_or(u64::MAX),
        undated: counts["undated"].as_u64().unwrap_or(u64::MAX),
        done: counts["done"].as_u64().unwrap_or(u64::MAX),
    };
    if planned != expected {
        return Err(format!(
            "plan counted {planned:?}, the reference {expected:?}"
        ));
    }
    let run = project.glemsel(&["run", "--as-of", &as_of]);
    if code(&run) != 0 {
        return Err(format!("run failed: {}", text(&run)));
    }
    let order = match case.key {
        KeyShape::Integer => "k1",
        KeyShape::Text => "k0",
        KeyShape::Composite => "k0, k1",
    };
    let key_select = match case.key {
        KeyShape::Integer => "CAST(k1 AS CHAR(20))",
        KeyShape::Text => "k0",
        KeyShape::Composite => "CONCAT(k0, '/', CAST(k1 AS CHAR(20)))",
    };
    let key_select = if kind == Kind::Sqlite {
        key_select
            .replace("CONCAT(k0, '/', CAST(k1 AS CHAR(20)))", "k0 || '/' || k1")
            .replace("CAST(k1 AS CHAR(20))", "CAST(k1 AS TEXT)")
    } else if kind == Kind::Postgres {
        key_select.replace("CHAR(20)", "TEXT")
    } else {
        key_select.to_string()
    };
    let after: BTreeMap<String, Option<String>> = db
        .rows(&format!(
            "SELECT {key_select}, name FROM {table} ORDER BY {order}"
        ))
        .await
        .into_iter()
        .map(|row| (row[0].clone().unwrap_or_default(), row[1].clone()))
        .collect();
    let mut want: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (row, change) in case.rows.iter().zip(&changed) {
        let id = match case.key {
            KeyShape::Integer => row.key.1.to_string(),
            KeyShape::Text => row.key.0.clone(),
            KeyShape::Composite => format!("{}/{}", row.key.0, row.key.1),
        };
        match (change, case.pseudonymise) {
            (true, false) => {}
            (true, true) => {
                want.insert(id, Some(shape.token(key, &row.name)));
            }
            (false, _) => {
                want.insert(id, Some(row.name.clone()));
            }
        }
    }
    if after != want {
        let wrong: Vec<String> = want
            .iter()
            .filter(|(k, v)| after.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}: want {v:?}, have {:?}", after.get(k)))
            .chain(
                after
                    .keys()
                    .filter(|k| !want.contains_key(*k))
                    .map(|k| format!("{k}: should be gone")),
            )
            .take(5)
            .collect();
        return Err(format!(
            "the run changed other rows than the reference: {wrong:?}"
        ));
    }
    db.exec(&format!("DROP TABLE {table}")).await;
    Ok(())
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn differential(kind: Kind) {
    let Some(db) = TestDb::create(kind, "differential").await else {
        return;
    };
    let seed = env_number("GLEMSEL_DIFF_SEED", DEFAULT_SEED);
    let cases = env_number("GLEMSEL_DIFF_CASES", DEFAULT_CASES as u64) as usize;
    let key = HmacKey::from_bytes(KEY.as_bytes().to_vec());
    let shape = TokenShape::for_column(ColumnAction::Hmac, Some(80)).unwrap();
    let project = Project::for_db(&db, "db", "");
    let mut rng = StdRng::seed_from_u64(seed ^ kind as u64);
    for index in 0..cases {
        let case = generate(&mut rng, &key, &shape);
        if let Err(problem) = run_case(kind, &db, &project, index, &case, &key, &shape).await {
            panic!(
                "{kind:?}, seed {seed}, case {index}: {problem}\nrule:\n{}\nas of {}\ncase: {case:#?}",
                rule(&format!("t{index}"), &case),
                case.as_of
            );
        }
    }
    eprintln!("{kind:?}: {cases} random cases agreed with the reference (seed {seed})");
    db.drop().await;
}

#[tokio::test]
async fn postgres_agrees_with_the_reference() {
    differential(Kind::Postgres).await;
}

#[tokio::test]
async fn mariadb_agrees_with_the_reference() {
    differential(Kind::Mariadb).await;
}

#[tokio::test]
async fn sqlite_agrees_with_the_reference() {
    differential(Kind::Sqlite).await;
}
