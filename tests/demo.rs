//! `glemsel demo`, the README's first command, run as a user would: the
//! real binary, a fresh folder, no server.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use chrono::{DateTime, Datelike as _, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use common::{assert_contains, code, text};
use glemsel::pseudonym::{ColumnAction, HmacKey, TokenShape};
use rusqlite::types::Value;

fn glemsel(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_glemsel"))
        .args(args)
        .current_dir(dir)
        .env_remove("GLEMSEL_CONFIG")
        .env_remove("GLEMSEL_LOG")
        .output()
        .expect("run glemsel")
}

fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |row| row.get(0))
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
}

#[test]
fn the_demo_plans_runs_and_verifies_on_a_fresh_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = glemsel(tmp.path(), &["demo", "--dir", "d"]);
    assert_eq!(code(&demo), 0, "{}", text(&demo));
    let out = String::from_utf8_lossy(&demo.stdout);
    for expected in [
        "== 1. the dry run",
        "rule nav-customers",
        "== 2. the run",
        "== 3. what changed",
        "audit chain intact",
        "== 5. the retention report",
        "report.html: the retention schedule, a 12-month forecast",
    ] {
        assert_contains(&out, expected);
    }
    assert!(
        demo.stderr.is_empty(),
        "the demo is quiet on stderr: {}",
        String::from_utf8_lossy(&demo.stderr)
    );

    let dir = tmp.path().join("d");
    let report = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(report.starts_with("<!DOCTYPE html>") && report.contains("<table id=\"schedule\">"));
    let db = rusqlite::Connection::open(dir.join("demo.sqlite")).unwrap();
    // SQLite's clock is UTC; the rules count in Copenhagen, at most two hours off.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM access_log WHERE at < datetime('now', '-1 year', '-3 hours')"
        ),
        0
    );
    assert!(count(&db, "SELECT count(*) FROM access_log") > 0);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM support_tickets WHERE answered_at < datetime('now', '-2 years', '-3 hours')"
        ),
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM customers WHERE status = 'customer' AND legal_hold = 0 \
             AND contract_ended < date('now', '-37 months') AND name NOT LIKE 'psn!_%' ESCAPE '!'"
        ),
        0
    );
    assert!(
        count(
            &db,
            "SELECT count(*) FROM customers WHERE email LIKE '%@invalid' AND phone IS NULL AND address = '[redacted]'"
        ) > 0
    );
    // Held customers and NAV's blank dates keep their data.
    assert!(
        count(
            &db,
            "SELECT count(*) FROM customers WHERE legal_hold = 1 AND name LIKE 'Kunde %'"
        ) > 0
    );
    assert!(
        count(
            &db,
            "SELECT count(*) FROM \"CRONUS International Ltd_$Customer\" WHERE \"Last Date Modified\" LIKE '1753-%' AND \"Name\" LIKE 'NAV Kunde%'"
        ) > 0
    );
    // Nothing that looks like a real address was ever written.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM customers WHERE email NOT LIKE '%.invalid' AND email NOT LIKE '%@invalid'"
        ),
        0
    );

    // Row for row, exactly what the rules say (see `expected_tables`).
    let actual = tables(&db);
    let expected = expected_tables(&dir);
    for (table, rows) in &expected {
        assert_eq!(rows.len(), actual[table].len(), "rows left in {table}");
        for (want, got) in rows.iter().zip(&actual[table]) {
            assert_eq!(got, want, "{table}");
        }
    }
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );

    // The folder is a working deployment: nothing is due any more, the chain holds.
    let plan = glemsel(&dir, &["plan"]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    assert_contains(&text(&plan), "total: 0 rows due in 9 rules");
    let verify = glemsel(&dir, &["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}", text(&verify));

    // Cutoffs read as people say them; JSON keeps the exact bound.
    let at = "2025-11-30T21:56:06";
    let plan = glemsel(&dir, &["plan", "--as-of", at, "--rule", "access-logs"]);
    assert!(
        text(&plan).contains("  due when  at <= 2024-11-30 21:56:06\n"),
        "{}",
        text(&plan)
    );
    let json = glemsel(&dir, &["plan", "--as-of", at, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let bounds: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["rule_id"] == "access-logs")
        .map(|s| s["due"]["bound"].as_str().unwrap())
        .collect();
    assert_eq!(bounds, ["2024-11-30T21:56:06.000001"]);

    // A second demo replaces the first; a folder that is not a demo is left alone.
    let again = glemsel(tmp.path(), &["demo", "--dir", "d"]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    std::fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let refused = glemsel(tmp.path(), &["demo", "--dir", "."]);
    assert_eq!(code(&refused), 1, "{}", text(&refused));
    assert_contains(&text(&refused), "is not a glemsel demo folder");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("precious.txt")).unwrap(),
        "keep me"
    );
}

/// The demo's tables (not the audit trail), each row by column name, in key
/// order.
type Tables = BTreeMap<String, Vec<BTreeMap<String, Value>>>;

const TABLES: [(&str, &str); 7] = [
    ("customers", "id"),
    ("orders", "id"),
    ("support_accounts", "id"),
    ("support_tickets", "id"),
    ("access_log", "id"),
    ("cookie_consents", "id"),
    ("CRONUS International Ltd_$Customer", "\"No_\", \"Company\""),
];

fn tables(db: &rusqlite::Connection) -> Tables {
    TABLES
        .iter()
        .map(|(table, order)| {
            let mut statement = db
                .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY {order}"))
                .unwrap();
            let names: Vec<String> = statement.column_names().map(|n| n.to_string()).collect();
            let rows = statement
                .query_map([], |row| {
                    names
                        .iter()
                        .enumerate()
                        .map(|(i, name)| Ok((name.clone(), row.get::<_, Value>(i)?)))
                        .collect()
                })
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            (table.to_string(), rows)
        })
        .collect()
}

/// The first instant after the financial year (to 30 June) holding `at`.
fn financial_year_end(at: NaiveDateTime) -> NaiveDateTime {
    let year = if (at.month(), at.day()) <= (6, 30) {
        at.year()
    } else {
        at.year() + 1
    };
    NaiveDate::from_ymd_opt(year, 7, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
}

/// `at` plus `months`, keeping the day of the month; where the target month
/// is too short, the first of the month after, at midnight.
fn add_months(at: NaiveDateTime, months: i32) -> NaiveDateTime {
    let month0 = at.year() * 12 + at.month0() as i32 + months;
    let (year, month) = (month0.div_euclid(12), month0.rem_euclid(12) as u32 + 1);
    match NaiveDate::from_ymd_opt(year, month, at.day()) {
        Some(date) => date.and_time(at.time()),
        None => NaiveDate::from_ymd_opt(year + (month / 12) as i32, month % 12 + 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap(),
    }
}

/// A rule's period, as the demo's rules say it.
#[derive(Clone, Copy)]
enum Period {
    Days(i64),
    Months(i32),
    /// Months from the end of the financial year the event falls in.
    MonthsFromYearEnd(i32),
}

/// Whether an event (a date or timestamp, as SQLite holds it, in
/// Copenhagen's wall clock) is due at `now` (the same wall clock). NULL and
/// NAV's blank date 1753-01-01 never are.
fn due(event: &Value, period: Period, now: NaiveDateTime) -> bool {
    let Value::Text(text) = event else {
        assert_eq!(event, &Value::Null);
        return false;
    };
    let at = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap_or_else(|_| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
    });
    if at.year() < 1900 {
        return false;
    }
    let deadline = match period {
        Period::Days(days) => at + TimeDelta::days(days),
        Period::Months(months) => add_months(at, months),
        Period::MonthsFromYearEnd(months) => add_months(financial_year_end(at), months),
    };
    deadline <= now
}

/// What the demo's tables must hold after its run, computed from the same
/// generated data (`glemsel::demo::fill_database` at the run's `as_of`)
/// by reading `rules/demo/` independently of glemsel's planner.
fn expected_tables(dir: &std::path::Path) -> Tables {
    let db = rusqlite::Connection::open(dir.join("demo.sqlite")).unwrap();
    let as_of: String = db
        .query_row(
            "SELECT as_of FROM glemsel_audit WHERE event = 'run_start' ORDER BY seq LIMIT 1",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let now: DateTime<Utc> = as_of.parse().unwrap();
    let local = now
        .with_timezone(&chrono_tz::Europe::Copenhagen)
        .naive_local();
    let fresh = tempfile::tempdir().unwrap();
    let before = fresh.path().join("before.sqlite");
    glemsel::demo::fill_database(&before, now).unwrap();
    let mut tables = tables(&rusqlite::Connection::open(&before).unwrap());

    let key = HmacKey::from_file(&dir.join("hmac-key")).unwrap();
    let token = |action, len, value: &Value| match value {
        Value::Text(text) => Value::Text(
            TokenShape::for_column(action, Some(len))
                .unwrap()
                .token(&key, text),
        ),
        other => panic!("not text: {other:?}"),
    };
    let text = |row: &BTreeMap<String, Value>, column: &str| match &row[column] {
        Value::Text(text) => text.clone(),
        other => panic!("{column}: {other:?}"),
    };
    let flag = |row: &BTreeMap<String, Value>, column: &str| row[column] == Value::Integer(1);
    let is_due =
        |row: &BTreeMap<String, Value>, column: &str, period| due(&row[column], period, local);

    // Deletes: the row goes when its rule's period has passed.
    let keep =
        |table: &str, tables: &mut Tables, gone: &dyn Fn(&BTreeMap<String, Value>) -> bool| {
            tables.get_mut(table).unwrap().retain(|row| !gone(row));
        };
    keep("customers", &mut tables, &|row| {
        text(row, "status") == "prospect"
            && !flag(row, "legal_hold")
            && is_due(row, "created_at", Period::Months(12))
    });
    keep("orders", &mut tables, &|row| {
        if flag(row, "completed") {
            is_due(row, "placed_at", Period::MonthsFromYearEnd(60))
        } else {
            is_due(row, "placed_at", Period::Days(30))
        }
    });
    keep("support_accounts", &mut tables, &|row| {
        is_due(row, "last_login", Period::Months(24))
    });
    keep("support_tickets", &mut tables, &|row| {
        is_due(row, "answered_at", Period::Months(24))
    });
    keep("access_log", &mut tables, &|row| {
        is_due(row, "at", Period::Months(12))
    });
    keep("cookie_consents", &mut tables, &|row| {
        is_due(row, "consented_at", Period::Months(12))
    });

    // Pseudonymisation: the row stays, the named columns change.
    for row in tables.get_mut("customers").unwrap() {
        if text(row, "status") == "customer"
            && !flag(row, "legal_hold")
            && is_due(row, "contract_ended", Period::Months(36))
        {
            row.insert("name".into(), token(ColumnAction::Hmac, 80, &row["name"]));
            row.insert(
                "email".into(),
                token(ColumnAction::HmacEmail, 120, &row["email"]),
            );
            row.insert("phone".into(), Value::Null);
            row.insert("address".into(), Value::Text("[redacted]".into()));
        }
    }
    for row in tables
        .get_mut("CRONUS International Ltd_$Customer")
        .unwrap()
    {
        if is_due(row, "Last Date Modified", Period::MonthsFromYearEnd(60)) {
            row.insert("Name".into(), token(ColumnAction::Hmac, 50, &row["Name"]));
            row.insert(
                "E-Mail".into(),
                token(ColumnAction::HmacEmail, 80, &row["E-Mail"]),
            );
            row.insert("Phone No_".into(), Value::Null);
        }
    }
    tables
}
