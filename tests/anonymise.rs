//! `action = "anonymise"` on PostgreSQL, MariaDB and SQLite, one body for
//! all three: every column action it has (null, redact, year, month,
//! ip_prefix, prefix:N, a foreign key to NULL) changes exactly the due
//! rows, the same way on every engine; a second run changes nothing and
//! the dry run then counts nothing due; the audit trail says `anonymise`.
//! And the SQL that tells a finished IP prefix (or token) from one still to
//! write agrees with the worker's own check, value for value.

mod common;

use common::{ALL, Kind, Project, TestDb, code, text};
use glemsel::generalise::{ip_prefix, is_ip_prefix_done};
use glemsel::pseudonym::{ColumnAction, HmacKey, TokenShape};

fn fixture(kind: Kind) -> String {
    let (timestamp, engine) = match kind {
        Kind::Postgres => ("TIMESTAMP", ""),
        Kind::Mariadb => ("DATETIME(6)", " ENGINE=InnoDB"),
        Kind::Sqlite => ("DATETIME", ""),
    };
    format!(
        "
CREATE TABLE owners (id INTEGER PRIMARY KEY, name VARCHAR(80)){engine};
INSERT INTO owners (id, name) VALUES (1, 'Firma ApS');
CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    name VARCHAR(80) NOT NULL,
    email VARCHAR(120),
    born DATE,
    seen {timestamp},
    ip VARCHAR(45),
    zip VARCHAR(10),
    owner_id INTEGER,
    left_at DATE,
    legal_hold BOOLEAN NOT NULL DEFAULT FALSE,
    FOREIGN KEY (owner_id) REFERENCES owners (id)
){engine};
INSERT INTO people (id, name, email, born, seen, ip, zip, owner_id, left_at, legal_hold) VALUES
    (1, 'Jens Hansen', 'jens@example.invalid', '1980-05-17', '2024-03-15 13:45:10', '192.0.2.17', '8000', 1, '2024-01-01', FALSE),
    (2, 'Søren Æbelø', NULL, NULL, NULL, '2001:DB8:1:2::5', '2100', NULL, '2024-06-30', FALSE),
    (3, 'Held Person', 'held@example.invalid', '1975-02-03', '2024-03-15 13:45:10', '198.51.100.9', '5000', 1, '2024-01-01', TRUE),
    (4, 'Still Here', 'here@example.invalid', '1990-07-08', '2026-01-02 03:04:05', '198.51.100.10', '6000', 1, '2026-01-01', FALSE),
    (5, 'No Date', 'nodate@example.invalid', '1991-01-02', NULL, '198.51.100.11', '7000', 1, NULL, FALSE),
    (6, 'Not An Address', 'x@example.invalid', '1999-12-31', '2025-01-31 23:59:59.5', 'unknown', 'DK-8000', NULL, '2020-01-01', FALSE),
    (7, '[redacted]', NULL, '1970-01-01', '2024-02-01 00:00:00', '10.0.0.0', '90', NULL, '2020-01-01', FALSE),
    (8, 'Mapped', NULL, '2000-02-29', '2024-12-31 23:59:59', '::ffff:203.0.113.9', '1', NULL, '2020-01-01', FALSE);
CREATE TABLE people_in_sql (
    id INTEGER PRIMARY KEY,
    name VARCHAR(80) NOT NULL,
    born DATE,
    seen {timestamp},
    zip VARCHAR(10),
    left_at DATE,
    legal_hold BOOLEAN NOT NULL DEFAULT FALSE
){engine};
INSERT INTO people_in_sql (id, name, born, seen, zip, left_at, legal_hold)
    SELECT id, name, born, seen, zip, left_at, legal_hold FROM people;
"
    )
}

const RULES: &str = r#"
[[rule]]
id = "people-anonymised"
store = "db"
table = "people"
category = "test"
after = "left_at"
retain = "1 year"
hold = "legal_hold"
action = "anonymise"
columns = { name = "redact", email = "null", born = "year", seen = "month", ip = "ip_prefix", zip = "prefix:2", owner_id = "null" }
batch_size = 2
batch_ms = 0

# Every column computed in SQL: one statement per batch, no worker values.
[[rule]]
id = "people-in-sql"
store = "db"
table = "people_in_sql"
category = "test"
after = "left_at"
retain = "1 year"
hold = "legal_hold"
action = "anonymise"
columns = { name = "redact", born = "year", seen = "month", zip = "prefix:2" }
batch_size = 2
batch_ms = 0
"#;

/// A timestamp as `YYYY-MM-DD HH:MM:SS`, however the engine wrote it
/// (MariaDB's client drops a midnight's time, SQLite keeps what it was given).
fn timestamp(value: &Option<String>) -> Option<String> {
    value.as_ref().map(|v| {
        let v = v.replace('T', " ");
        let v = if v.len() == 10 { v + " 00:00:00" } else { v };
        v[..19].to_string()
    })
}

/// Everything that must be the same on every engine.
#[derive(Debug, PartialEq)]
struct Outcome {
    plan: serde_json::Value,
    people: Vec<Vec<Option<String>>>,
    people_in_sql: Vec<Vec<Option<String>>>,
    audit: Vec<Vec<Option<String>>>,
    plan_after: serde_json::Value,
    second_run_batches: usize,
}

async fn outcome(kind: Kind) -> Option<Outcome> {
    let db = TestDb::create(kind, "anonymise").await?;
    db.exec(&fixture(kind)).await;
    let project = Project::for_db(&db, "db", "");
    project.rules("rules.toml", RULES);
    let as_of = "2026-11-01";
    let counts = |plan: &std::process::Output| -> serde_json::Value {
        assert_eq!(code(plan), 0, "{kind:?}: {}", text(plan));
        let json: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
        json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| step["counts"].clone())
            .collect::<Vec<_>>()
            .into()
    };
    let check = project.glemsel(&["check"]);
    assert_eq!(code(&check), 0, "{kind:?}: {}", text(&check));
    let plan = project.glemsel(&["plan", "--format", "json", "--as-of", as_of]);
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(json["steps"][0]["action"], "anonymise", "{json}");
    assert_eq!(
        json["steps"][0]["columns"][6]["action"], "prefix:2",
        "{json}"
    );
    let plan_text = project.glemsel(&["plan", "--as-of", as_of]);
    assert!(
        text(&plan_text).contains("action    anonymise name → redact, email → null, born → year, seen → month, ip → ip_prefix, zip → prefix:2, owner_id → null")
            || text(&plan_text).contains("anonymise born → year"),
        "{kind:?}: {}",
        text(&plan_text)
    );
    assert!(
        text(&plan_text).contains("1 already anonymised"),
        "{}",
        text(&plan_text)
    );

    let run = project.glemsel(&["run", "--as-of", as_of]);
    assert_eq!(code(&run), 0, "{kind:?}: {}", text(&run));
    assert!(
        text(&run).contains("anonymised 4 rows in table people "),
        "{kind:?}: {}",
        text(&run)
    );
    assert!(
        text(&run).contains("anonymised 4 rows in table people_in_sql"),
        "{kind:?}: {}",
        text(&run)
    );
    let people = db
        .rows("SELECT id, name, email, born, seen, ip, zip, owner_id FROM people ORDER BY id")
        .await
        .into_iter()
        .map(|mut row| {
            row[3] = timestamp(&row[3]).map(|t| t[..10].to_string());
            row[4] = timestamp(&row[4]);
            row
        })
        .collect();
    let people_in_sql = db
        .rows("SELECT id, name, born, seen, zip FROM people_in_sql ORDER BY id")
        .await
        .into_iter()
        .map(|mut row| {
            row[2] = timestamp(&row[2]).map(|t| t[..10].to_string());
            row[3] = timestamp(&row[3]);
            row
        })
        .collect();
    let batches = "SELECT count(*) FROM glemsel_audit WHERE event = 'batch'";
    let batches_before = db.column(batches).await;
    let again = project.glemsel(&["run", "--as-of", as_of]);
    assert_eq!(code(&again), 0, "{kind:?}: {}", text(&again));
    assert_eq!(
        text(&again).matches("anonymised 0 rows").count(),
        2,
        "{kind:?}: {}",
        text(&again)
    );
    let batches_after = db.column(batches).await;
    let plan_after = project.glemsel(&["plan", "--format", "json", "--as-of", as_of]);
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{kind:?}: {}", text(&verify));
    let outcome = Outcome {
        plan: counts(&plan),
        people,
        people_in_sql,
        audit: db
            .rows(
                "SELECT event, rule_id, table_name, action, rows_affected, key_id \
                 FROM glemsel_audit ORDER BY seq",
            )
            .await,
        plan_after: counts(&plan_after),
        second_run_batches: batches_after[0]
            .as_deref()
            .unwrap()
            .parse::<usize>()
            .unwrap()
            - batches_before[0]
                .as_deref()
                .unwrap()
                .parse::<usize>()
                .unwrap(),
    };
    db.drop().await;
    Some(outcome)
}

#[tokio::test]
async fn anonymise_does_the_same_on_every_engine() {
    let mut outcomes = Vec::new();
    for kind in ALL {
        if let Some(outcome) = outcome(kind).await {
            outcomes.push((kind, outcome));
        }
    }
    if outcomes.is_empty() {
        return;
    }
    let (_, first) = &outcomes[0];
    // As of 2026-11-01 rows that left before 2025-11-01 are due: 1, 2, 6,
    // 8; 3 is held, 4 not due, 5 undated, 7 anonymised already.
    assert_eq!(first.plan[0]["due"], 4, "{}", first.plan);
    assert_eq!(first.plan[0]["held"], 1);
    assert_eq!(first.plan[0]["undated"], 1);
    assert_eq!(first.plan[0]["done"], 1);
    assert_eq!(
        first.plan[1], first.plan[0],
        "the same rows, the same counts"
    );
    let row = |values: [Option<&str>; 8]| values.map(|v| v.map(str::to_string)).to_vec();
    assert_eq!(
        first.people,
        [
            row([
                Some("1"),
                Some("[redacted]"),
                None,
                Some("1980-01-01"),
                Some("2024-03-01 00:00:00"),
                Some("192.0.2.0"),
                Some("80"),
                None
            ]),
            row([
                Some("2"),
                Some("[redacted]"),
                None,
                None,
                None,
                Some("2001:db8:1::"),
                Some("21"),
                None
            ]),
            row([
                Some("3"),
                Some("Held Person"),
                Some("held@example.invalid"),
                Some("1975-02-03"),
                Some("2024-03-15 13:45:10"),
                Some("198.51.100.9"),
                Some("5000"),
                Some("1")
            ]),
            row([
                Some("4"),
                Some("Still Here"),
                Some("here@example.invalid"),
                Some("1990-07-08"),
                Some("2026-01-02 03:04:05"),
                Some("198.51.100.10"),
                Some("6000"),
                Some("1")
            ]),
            row([
                Some("5"),
                Some("No Date"),
                Some("nodate@example.invalid"),
                Some("1991-01-02"),
                None,
                Some("198.51.100.11"),
                Some("7000"),
                Some("1")
            ]),
            // Text that is no IP address becomes the redacted text.
            row([
                Some("6"),
                Some("[redacted]"),
                None,
                Some("1999-01-01"),
                Some("2025-01-01 00:00:00"),
                Some("[redacted]"),
                Some("DK"),
                None
            ]),
            row([
                Some("7"),
                Some("[redacted]"),
                None,
                Some("1970-01-01"),
                Some("2024-02-01 00:00:00"),
                Some("10.0.0.0"),
                Some("90"),
                None
            ]),
            // An IPv4 address seen through IPv6 keeps its /24; a value
            // shorter than the prefix stays.
            row([
                Some("8"),
                Some("[redacted]"),
                None,
                Some("2000-01-01"),
                Some("2024-12-01 00:00:00"),
                Some("::ffff:203.0.113.0"),
                Some("1"),
                None
            ]),
        ]
    );
    // The rule computed in SQL alone writes the same values.
    let same: Vec<Vec<Option<String>>> = first
        .people
        .iter()
        .map(|row| {
            vec![
                row[0].clone(),
                row[1].clone(),
                row[3].clone(),
                row[4].clone(),
                row[6].clone(),
            ]
        })
        .collect();
    assert_eq!(first.people_in_sql, same);
    // Idempotent: the second run wrote no batch, and nothing is due.
    assert_eq!(first.second_run_batches, 0);
    assert_eq!(first.plan_after[0]["due"], 0, "{}", first.plan_after);
    assert_eq!(first.plan_after[1]["due"], 0, "{}", first.plan_after);
    assert_eq!(first.plan_after[0]["done"], 5, "{}", first.plan_after);
    assert_eq!(first.plan_after[1]["done"], 5, "{}", first.plan_after);
    assert_eq!(first.plan_after[0]["held"], 1);
    // The trail says anonymise, counts the rows, and names no key: none was used.
    let batches: Vec<&Vec<Option<String>>> = first
        .audit
        .iter()
        .filter(|r| r[0].as_deref() == Some("batch"))
        .collect();
    assert!(!batches.is_empty(), "{:?}", first.audit);
    let rows: u64 = batches
        .iter()
        .map(|r| r[4].as_deref().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(rows, 8, "{:?}", first.audit);
    for audit_row in &first.audit {
        assert_eq!(
            audit_row[3].as_deref(),
            Some("anonymise"),
            "{:?}",
            first.audit
        );
        assert_eq!(audit_row[5], None, "{:?}", first.audit);
    }

    for (kind, outcome) in &outcomes[1..] {
        assert_eq!(outcome, first, "{kind:?} differs from {:?}", outcomes[0].0);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        assert_eq!(outcomes.len(), 3, "every engine must run under CI");
    }
}

/// The values the engines' done check is compared with the worker's on:
/// edge cases, then random addresses, their prefixes and near misses.
fn ip_corpus() -> Vec<String> {
    const R: &str = "[redacted]";
    let mut values: Vec<String> = glemsel::generalise::IP_EDGE_CASES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..150 {
        let bits = (u128::from(next()) << 64) | u128::from(next());
        let zeros = u128::from(next() as u16) * 0x0001_0001_0001_0001_0001_0001_0001_0001;
        for v6 in [
            std::net::Ipv6Addr::from(bits),
            std::net::Ipv6Addr::from(bits & zeros),
        ] {
            let prefix = ip_prefix(&v6.to_string(), None, R);
            values.push(v6.to_string());
            values.push(prefix.replace("::", ":0::"));
            values.push(prefix.to_uppercase());
            values.push(prefix);
        }
        let v4 = std::net::Ipv4Addr::from(next() as u32);
        values.push(ip_prefix(&v4.to_string(), None, R));
        values.push(v4.to_string());
    }
    values.sort();
    values.dedup();
    values
}

/// Exact agreement, value for value: after one run every value must be
/// one the worker calls done (so the SQL never called a value done that
/// the worker would still change), and the dry run must then count
/// nothing due (so the SQL calls done every value the worker does).
#[tokio::test]
async fn the_ip_prefix_done_check_agrees_with_the_worker_on_every_engine() {
    let corpus = ip_corpus();
    for kind in ALL {
        let Some(db) = TestDb::create(kind, "ipdone").await else {
            continue;
        };
        let engine = if kind == Kind::Mariadb {
            " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        } else {
            ""
        };
        let values: Vec<String> = corpus
            .iter()
            .enumerate()
            .map(|(i, v)| format!("({i}, '{v}', '2020-01-01')"))
            .collect();
        db.exec(&format!(
            "CREATE TABLE ips (id INTEGER PRIMARY KEY, ip VARCHAR(64), at DATE){engine};
             INSERT INTO ips (id, ip, at) VALUES {};",
            values.join(", ")
        ))
        .await;
        let project = Project::for_db(&db, "db", "");
        project.rules(
            "ips.toml",
            "[[rule]]\nid = \"ips\"\nstore = \"db\"\ntable = \"ips\"\ncategory = \"test\"\nafter = \"at\"\nretain = \"0 days\"\naction = \"anonymise\"\ncolumns = { ip = \"ip_prefix\" }\n",
        );
        let expected_due = corpus
            .iter()
            .filter(|v| !is_ip_prefix_done(v, Some(64), "[redacted]"))
            .count();
        let plan = project.glemsel(&["plan", "--format", "json", "--as-of", "2026-01-01"]);
        assert_eq!(code(&plan), 0, "{kind:?}: {}", text(&plan));
        let json: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
        assert_eq!(
            json["steps"][0]["counts"]["due"], expected_due,
            "{kind:?}: {json}"
        );
        let run = project.glemsel(&["run", "--as-of", "2026-01-01"]);
        assert_eq!(code(&run), 0, "{kind:?}: {}", text(&run));
        let after = db.rows("SELECT id, ip FROM ips ORDER BY id").await;
        assert_eq!(after.len(), corpus.len());
        for row in &after {
            let id: usize = row[0].as_deref().unwrap().parse().unwrap();
            let value = row[1].as_deref().unwrap();
            assert_eq!(
                value,
                ip_prefix(&corpus[id], Some(64), "[redacted]"),
                "{kind:?}: {:?}",
                corpus[id]
            );
            assert!(
                is_ip_prefix_done(value, Some(64), "[redacted]"),
                "{kind:?}: {value:?}"
            );
        }
        let plan = project.glemsel(&["plan", "--format", "json", "--as-of", "2026-01-01"]);
        let json: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
        assert_eq!(json["steps"][0]["counts"]["due"], 0, "{kind:?}: {json}");
        assert_eq!(
            json["steps"][0]["counts"]["done"],
            corpus.len(),
            "{kind:?}: {json}"
        );
        db.drop().await;
    }
}

/// `check` refuses a keyed token in an anonymising rule, and says why.
#[test]
fn check_refuses_hmac_in_anonymise() {
    let project = Project::with_store("db", "engine = \"postgres\"\nurl_env = \"UNUSED\"", "");
    project.rules(
        "r.toml",
        "[[rule]]\nid = \"r\"\nstore = \"db\"\ntable = \"t\"\ncategory = \"test\"\nafter = \"at\"\nretain = \"1 year\"\naction = \"anonymise\"\ncolumns = { name = \"hmac\" }\n",
    );
    let check = project.glemsel(&["check", "--offline"]);
    assert_eq!(code(&check), 3, "{}", text(&check));
    assert!(
        text(&check).contains("rule r: column \"name\": hmac writes a keyed token, which whoever holds the key can recompute from a guessed value: pseudonymised data, still personal data, not anonymised"),
        "{}",
        text(&check)
    );
}

/// A token followed by a newline is no token to the worker, so it must be
/// none to the SQL either (MariaDB's `$` matched before a final newline).
#[tokio::test]
async fn a_token_and_a_newline_is_no_token_on_any_engine() {
    let key = HmacKey::from_bytes(common::KEY.as_bytes().to_vec());
    let shape = TokenShape::for_column(ColumnAction::Hmac, Some(80)).unwrap();
    let token = shape.token(&key, "Jens");
    for kind in ALL {
        let Some(db) = TestDb::create(kind, "newline").await else {
            continue;
        };
        db.exec(&format!(
            "CREATE TABLE people (id INTEGER PRIMARY KEY, name VARCHAR(80), created DATE);
             INSERT INTO people VALUES (1, '{token}\n', '2015-01-01'), (2, '{token}', '2015-01-01');"
        ))
        .await;
        let project = Project::for_db(&db, "db", "");
        project.rules(
            "people.toml",
            "[[rule]]\nid = \"people\"\nstore = \"db\"\ntable = \"people\"\ncategory = \"test\"\nafter = \"created\"\nretain = \"1 year\"\naction = \"pseudonymise\"\ncolumns = { name = \"hmac\" }\n",
        );
        let run = project.glemsel(&["run", "--as-of", "2026-01-01"]);
        assert_eq!(code(&run), 0, "{kind:?}: {}", text(&run));
        let names = db.column("SELECT name FROM people ORDER BY id").await;
        assert_eq!(
            names,
            [
                Some(shape.token(&key, &format!("{token}\n"))),
                Some(token.clone())
            ],
            "{kind:?}"
        );
        let plan = project.glemsel(&["plan", "--format", "json", "--as-of", "2026-01-01"]);
        let json: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
        assert_eq!(json["steps"][0]["counts"]["due"], 0, "{kind:?}: {json}");
        db.drop().await;
    }
}
