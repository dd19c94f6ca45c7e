//! One test body, run against every engine: the same fixture, rules and
//! as-of must give the same plan counts, the same surviving rows, the same
//! tokens and the same audit trail on PostgreSQL, MariaDB and SQLite.

mod common;

use common::{ALL, KEY, Kind, Project, TestDb, assert_contains, code, text};
use glemsel::pseudonym::{ColumnAction, HmacKey, TokenShape};

fn fixture(kind: Kind) -> String {
    let timestamp = match kind {
        Kind::Postgres => "TIMESTAMP",
        Kind::Mariadb => "DATETIME(6)",
        Kind::Sqlite => "DATETIME",
    };
    format!(
        "
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name VARCHAR(80),
    email VARCHAR(120),
    phone VARCHAR(40),
    note VARCHAR(200),
    status VARCHAR(20) NOT NULL,
    contract_ended DATE,
    legal_hold BOOLEAN NOT NULL DEFAULT FALSE
);
INSERT INTO customers (id, name, email, phone, note, status, contract_ended, legal_hold) VALUES
    (1, 'Jens Hansen', 'jens@example.invalid', '+45 11', 'VIP', 'closed', '2019-03-01', FALSE),
    (2, 'Søren Æbelø', 'SOREN@example.invalid', '+45 22', NULL, 'closed', '2019-06-30', FALSE),
    (3, 'Held Person', 'held@example.invalid', '+45 33', 'x', 'closed', '2019-01-01', TRUE),
    (4, 'No Date', 'nodate@example.invalid', '+45 44', 'y', 'closed', NULL, FALSE),
    (5, 'Still Active', 'active@example.invalid', '+45 55', 'z', 'active', '2019-01-01', FALSE),
    (6, 'Recent', 'recent@example.invalid', '+45 66', NULL, 'closed', '2023-07-01', FALSE),
    (7, '', '', '', '', 'closed', '2020-06-30', FALSE),
    (8, '😀 emoji', 'it''s@example.invalid', NULL, 'quote \" here', 'closed', '2023-06-30', FALSE),
    (9, 'PSN_not a token', 'psn_x@invalid.example', NULL, NULL, 'closed', '2021-01-01', FALSE);
CREATE TABLE logs (id INTEGER PRIMARY KEY, ip VARCHAR(45), at {timestamp});
INSERT INTO logs (id, ip, at) VALUES
    (1, '10.0.0.1', '2025-10-31 23:59:59'),
    (2, '10.0.0.2', '2025-11-01 00:00:00'),
    (3, '10.0.0.3', '2025-11-01 00:00:01'),
    (4, '10.0.0.4', '2024-01-01 12:00:00'),
    (5, '10.0.0.5', NULL),
    (6, '10.0.0.6', '2025-12-24 18:00:00'),
        (7, '10.0.0.7', '2020-02-29 09:15:00.5'),
    (10, '10.0.0.10', '2020-01-01 00:00:00'),
    (12, '10.0.0.12', NULL);
"
    )
}

const RULES: &str = r#"
[[rule]]
id = "customers-after-contract"
store = "db"
table = "customers"
category = "test"
after = "contract_ended"
retain = "36 months"
round_up_to = "financial_year_end"
where = "status = 'closed'"
hold = "legal_hold"
action = "pseudonymise"
columns = { name = "hmac", email = "hmac_email", phone = "null", note = "redact" }
batch_size = 2
batch_ms = 0

[[rule]]
id = "access-logs"
store = "db"
table = "logs"
category = "test"
after = "at"
retain = "1 year"
action = "delete"
batch_size = 3
batch_ms = 0
"#;

/// Everything that must be the same on every engine.
#[derive(Debug, PartialEq)]
struct Outcome {
    plan: Vec<serde_json::Value>,
    customers: Vec<Vec<Option<String>>>,
    logs: Vec<Option<String>>,
    audit: Vec<Vec<Option<String>>>,
    plan_after: Vec<serde_json::Value>,
}

async fn outcome(kind: Kind) -> Option<Outcome> {
    let db = TestDb::create(kind, "engines").await?;
    db.exec(&fixture(kind)).await;
    let project = Project::for_db(&db, "db", "");
    project.rules("rules.toml", RULES);
    let as_of = "2026-11-01";
    let counts = |plan: &std::process::Output| -> Vec<serde_json::Value> {
        let json: serde_json::Value =
            serde_json::from_slice(&plan.stdout).unwrap_or_else(|_| panic!("{}", text(plan)));
        json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["counts"].clone())
            .collect()
    };
    let plan = project.glemsel(&["plan", "--format", "json", "--as-of", as_of]);
    assert_eq!(code(&plan), 0, "{kind:?}: {}", text(&plan));
    let run = project.glemsel(&["run", "--as-of", as_of]);
    assert_eq!(code(&run), 0, "{kind:?}: {}", text(&run));
    let plan_after = project.glemsel(&["plan", "--format", "json", "--as-of", as_of]);
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{kind:?}: {}", text(&verify));
    let outcome = Outcome {
        plan: counts(&plan),
        customers: db.rows("SELECT id, name, email, phone, note FROM customers ORDER BY id").await,
        logs: db.column("SELECT id FROM logs ORDER BY id").await,
        audit: db
            .rows(
                "SELECT event, rule_id, table_name, action, rows_affected, key_from, key_to, cutoff, key_id \
                 FROM glemsel_audit ORDER BY seq",
            )
            .await,
                plan_after: counts(&plan_after),
    };
    // Windows of three along the key in its own order, not as text
    // (where 10 and 12 sort before 2), the last ending at the last due row.
    let windows: Vec<Option<String>> = outcome
        .audit
        .iter()
        .filter(|row| {
            row[0].as_deref() == Some("batch") && row[1].as_deref() == Some("access-logs")
        })
        .map(|row| row[6].clone())
        .collect();
    assert_eq!(
        windows,
        [
            Some("[3]".to_string()),
            Some("[6]".into()),
            Some("[10]".into())
        ],
        "{kind:?}"
    );
    db.drop().await;
    Some(outcome)
}

#[tokio::test]
async fn every_engine_does_the_same() {
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
    let key = HmacKey::from_bytes(KEY.as_bytes().to_vec());
    let token = |action, len, value: &str| {
        Some(
            TokenShape::for_column(action, Some(len))
                .unwrap()
                .token(&key, value),
        )
    };

    // Due (as of 2026-11-01, contract ended before 2023-07-01): 1, 2, 7, 8, 9.
    assert_eq!(first.plan[0]["due"], 5, "{:?}", first.plan);
    assert_eq!(first.plan[0]["held"], 1);
    assert_eq!(first.plan[0]["undated"], 1);
    // Logs kept a full year by 2026-11-01 00:00 (Copenhagen) are due: 1, 2 (to
    // the microsecond), 4, 7 and 10; NULL (5, 12) never is.
    assert_eq!(first.plan[1]["due"], 5, "{:?}", first.plan);
    assert_eq!(
        first.logs,
        ["3", "5", "6", "12"].map(|s| Some(s.to_string()))
    );
    let row = |id: usize| &first.customers[id - 1];
    assert_eq!(row(1)[1], token(ColumnAction::Hmac, 80, "Jens Hansen"));
    assert_eq!(row(2)[1], token(ColumnAction::Hmac, 80, "Søren Æbelø"));
    assert_eq!(
        row(2)[2],
        token(ColumnAction::HmacEmail, 120, "SOREN@example.invalid")
    );
    assert_eq!(row(7)[1], token(ColumnAction::Hmac, 80, ""));
    assert_eq!(row(8)[1], token(ColumnAction::Hmac, 80, "😀 emoji"));
    assert_eq!(row(8)[4].as_deref(), Some("[redacted]"));
    // Look-alikes that are not tokens are pseudonymised all the same.
    assert_eq!(row(9)[1], token(ColumnAction::Hmac, 80, "PSN_not a token"));
    assert_eq!(
        row(9)[2],
        token(ColumnAction::HmacEmail, 120, "psn_x@invalid.example")
    );
    assert_eq!(row(3)[1].as_deref(), Some("Held Person"));
    assert_eq!(first.plan_after[0]["due"], 0);
    assert_eq!(first.plan_after[0]["done"], 5);
    // The trail row by row: each rule's start, a batch per window that
    // changed rows (customers in windows of two keys, logs of three, the
    // last up to the last due row; the first after the key before the
    // first due row), and its finish with the total.
    let customers = [
        "customers-after-contract",
        "customers",
        "pseudonymise",
        "contract_ended < 2023-07-01",
    ];
    let logs = [
        "access-logs",
        "logs",
        "delete",
        "at < 2025-11-01 00:00:00.000001",
    ];
    let audit_row =
        |rule: [&str; 4], event: &str, rows: u32, from: Option<&str>, to: Option<&str>| {
            let some = |text: &str| Some(text.to_string());
            vec![
                some(event),
                some(rule[0]),
                some(rule[1]),
                some(rule[2]),
                some(&rows.to_string()),
                from.map(str::to_string),
                to.map(str::to_string),
                some(rule[3]),
                (rule[2] == "pseudonymise").then(|| key.id().to_string()),
            ]
        };
    assert_eq!(
        first.audit,
        [
            audit_row(customers, "run_start", 0, None, None),
            audit_row(customers, "batch", 2, Some("[0]"), Some("[2]")),
            audit_row(customers, "batch", 2, Some("[6]"), Some("[8]")),
            audit_row(customers, "batch", 1, Some("[8]"), None),
            audit_row(customers, "run_finish", 5, None, None),
            audit_row(logs, "run_start", 0, None, None),
            audit_row(logs, "batch", 2, Some("[0]"), Some("[3]")),
            audit_row(logs, "batch", 1, Some("[3]"), Some("[6]")),
            audit_row(logs, "batch", 2, Some("[6]"), Some("[10]")),
            audit_row(logs, "run_finish", 5, None, None),
        ]
    );

    for (kind, outcome) in &outcomes[1..] {
        assert_eq!(outcome, first, "{kind:?} differs from {:?}", outcomes[0].0);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        assert_eq!(outcomes.len(), 3, "every engine must run under CI");
    }
}

/// Foreign keys pointing at a table that a rule deletes from are found on
/// every engine (SQLite's too, though it enforces them only when asked).
#[tokio::test]
async fn every_engine_reports_foreign_keys_into_a_deleted_table() {
    for kind in ALL {
        let Some(db) = TestDb::create(kind, "fks").await else {
            continue;
        };
        let engine_clause = if kind == Kind::Mariadb {
            " ENGINE=InnoDB"
        } else {
            ""
        };
        db.exec(&format!(
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, last_login DATE){engine_clause};
             CREATE TABLE tickets (id INTEGER PRIMARY KEY, account_id INTEGER,
                 FOREIGN KEY (account_id) REFERENCES accounts (id) ON DELETE CASCADE){engine_clause};
             CREATE TABLE invoices (id INTEGER PRIMARY KEY, account_id INTEGER,
                 FOREIGN KEY (account_id) REFERENCES accounts (id) ON DELETE RESTRICT){engine_clause};"
        ))
        .await;
        let project = Project::for_db(&db, "db", "");
        project.rules(
            "a.toml",
            "[[rule]]\nid = \"accounts\"\nstore = \"db\"\ntable = \"accounts\"\ncategory = \"test\"\nafter = \"last_login\"\nretain = \"2 years\"\naction = \"delete\"\n",
        );
        let check = project.glemsel(&["check"]);
        assert_eq!(code(&check), 4, "{kind:?}: {}", text(&check));
        // The engine heads the text a failure prints.
        let out = format!("{kind:?}:\n{}", text(&check));
        assert_contains(
            &out,
            "tickets (account_id) references accounts ON DELETE CASCADE",
        );
        assert_contains(
            &out,
            "invoices (account_id) references accounts ON DELETE RESTRICT",
        );
        db.drop().await;
    }
}

fn support_fixture(kind: Kind) -> String {
    let (timestamp, engine) = match kind {
        Kind::Postgres => ("TIMESTAMP", ""),
        Kind::Mariadb => ("DATETIME(6)", " ENGINE=InnoDB"),
        Kind::Sqlite => ("DATETIME", ""),
    };
    format!(
        "
CREATE TABLE accounts (id INTEGER PRIMARY KEY, email VARCHAR(120), last_login DATE){engine};
CREATE TABLE tickets (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, created_at {timestamp}, answered_at {timestamp},
    FOREIGN KEY (account_id) REFERENCES accounts (id) ON DELETE RESTRICT){engine};
CREATE TABLE messages (id INTEGER PRIMARY KEY, ticket_id INTEGER NOT NULL, body VARCHAR(200),
    FOREIGN KEY (ticket_id) REFERENCES tickets (id) ON DELETE CASCADE){engine};
CREATE TABLE disputes (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, resolved_at DATE){engine};
INSERT INTO accounts (id, email, last_login) VALUES
    (1, 'a1@example.invalid', '2020-01-01'),
    (2, 'a2@example.invalid', '2020-01-01'),
    (3, 'a3@example.invalid', '2026-01-01'),
    (4, 'a4@example.invalid', '2020-01-01'),
    (5, 'a5@example.invalid', '2020-01-01'),
    (6, 'a6@example.invalid', '2020-01-01'),
    (7, 'a7@example.invalid', NULL),
    (8, 'a8@example.invalid', NULL),
    (9, 'a9@example.invalid', '1753-01-01');
INSERT INTO tickets (id, account_id, created_at, answered_at) VALUES
    (11, 1, '2021-03-01 10:00:00', '2021-03-02 10:00:00'),
    (12, 1, '2021-05-01 10:00:00', '2021-05-02 10:00:00'),
    (21, 2, '2025-06-01 10:00:00', '2025-06-02 10:00:00'),
    (41, 4, '2021-01-01 10:00:00', NULL),
    (81, 8, '2021-01-01 10:00:00', '2021-01-01 11:00:00'),
    (91, 9, '2021-01-01 10:00:00', '2021-01-01 11:00:00');
INSERT INTO messages (id, ticket_id, body) VALUES
    (111, 11, 'm'), (112, 11, 'm'), (121, 12, 'm'), (211, 21, 'm'), (411, 41, 'm'), (811, 81, 'm');
INSERT INTO disputes (id, account_id, resolved_at) VALUES (1, 5, NULL), (2, 6, '2024-01-01');
"
    )
}

const SUPPORT_RULE: &str = r#"
[[rule]]
id = "support-accounts"
store = "db"
table = "accounts"
category = "test"
after = { latest = ["last_login", "tickets.created_at"] }
retain = "2 years"
action = "delete"
batch_size = 2
batch_ms = 0

[[rule.join]]
table = "tickets"
on = { account_id = "id" }
open = "answered_at IS NULL"

[[rule.hold_table]]
table = "disputes"
on = { account_id = "id" }
where = "resolved_at IS NULL"

[[rule.cascade]]
table = "tickets"
on = { account_id = "id" }

[[rule.cascade]]
table = "messages"
on = { ticket_id = "id" }
parent = "tickets"
"#;

/// Events from a related table, open related rows, a hold table, and
/// cascades down two levels, on every engine.
#[tokio::test]
async fn every_engine_joins_holds_and_cascades_alike() {
    let mut outcomes = Vec::new();
    for kind in ALL {
        let Some(db) = TestDb::create(kind, "joins").await else {
            continue;
        };
        db.exec(&support_fixture(kind)).await;
        let project = Project::for_db(&db, "db", "");
        project.rules("support.toml", SUPPORT_RULE);
        let check = project.glemsel(&["check"]);
        assert_eq!(code(&check), 0, "{kind:?}: {}", text(&check));
        let plan = project.glemsel(&["plan", "--format", "json", "--as-of", "2026-11-01"]);
        assert_eq!(code(&plan), 0, "{kind:?}: {}", text(&plan));
        let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
        let run = project.glemsel(&["run", "--as-of", "2026-11-01"]);
        assert_eq!(code(&run), 0, "{kind:?}: {}", text(&run));
        let verify = project.glemsel(&["audit", "verify"]);
        assert_eq!(code(&verify), 0, "{kind:?}: {}", text(&verify));
        outcomes.push((
            kind,
            plan["steps"][0]["counts"].clone(),
            db.column("SELECT id FROM accounts ORDER BY id").await,
            db.column("SELECT id FROM tickets ORDER BY id").await,
            db.column("SELECT id FROM messages ORDER BY id").await,
            db.rows("SELECT event, rows_affected, detail FROM glemsel_audit WHERE event <> 'run_start' ORDER BY seq")
                .await
                .into_iter()
                // Batch timings differ between engines; the rest may not.
                .map(|row| {
                    let detail: serde_json::Value = serde_json::from_str(row[2].as_deref().unwrap()).unwrap();
                    (row[0].clone(), row[1].clone(), detail["cascaded"].clone())
                })
                .collect::<Vec<_>>(),
        ));
        db.drop().await;
    }
    let Some((_, counts, accounts, tickets, messages, audit)) = outcomes.first() else {
        return;
    };
    let ids = |ids: &[&str]| ids.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
    // Due: 1 and 8 (latest activity 2021), 6 (its dispute is resolved), 9
    // (1753 is no date; its ticket is). Not due: 2 (a 2025 ticket), 3 (a
    // 2026 login), 4 (an unanswered ticket), 5 (an open dispute holds it).
    assert_eq!(counts["due"], 4, "{counts}");
    assert_eq!(counts["held"], 1, "{counts}");
    assert_eq!(counts["undated"], 1, "{counts}");
    assert_eq!(counts["held_by"][0]["name"], "disputes");
    assert_eq!(counts["held_by"][0]["rows"], 1);
    assert_eq!(
        counts["cascaded"][0]["rows"], 4,
        "tickets 11, 12, 81, 91: {counts}"
    );
    assert_eq!(
        counts["cascaded"][1]["rows"], 4,
        "messages 111, 112, 121, 811: {counts}"
    );
    assert_eq!(*accounts, ids(&["2", "3", "4", "5", "7"]));
    assert_eq!(*tickets, ids(&["21", "41"]));
    assert_eq!(*messages, ids(&["211", "411"]));
    let cascaded_tickets: u64 = audit
        .iter()
        .filter(|(event, ..)| event.as_deref() == Some("batch"))
        .map(|(_, _, cascaded)| cascaded[0]["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(cascaded_tickets, 4, "{audit:?}");
    let finish = audit.last().unwrap();
    assert_eq!(finish.1.as_deref(), Some("4"));
    assert_eq!(finish.2[1]["name"], "messages");
    assert_eq!(finish.2[1]["rows"], 4);
    for outcome in &outcomes[1..] {
        assert_eq!(&outcome.1, counts, "{:?}", outcome.0);
        assert_eq!(
            (&outcome.2, &outcome.3, &outcome.4, &outcome.5),
            (accounts, tickets, messages, audit),
            "{:?}",
            outcome.0
        );
    }
}

/// Batches sized by time: along an integer key with large gaps (and a key
/// near the top of its type) and along a text key, every due row is changed
/// exactly once, windows follow each other without overlap, and a gap costs
/// no windows of its own.
#[tokio::test]
async fn every_engine_sizes_batches_by_time_along_any_key() {
    let mut values = Vec::new();
    let ids = (1..=2000_i64)
        .chain(1_000_000..1_002_000)
        .chain([9_000_000_000_000_000_001]);
    for id in ids {
        let at = if id % 2 == 0 {
            "2020-01-01"
        } else {
            "2026-10-01"
        };
        values.push(format!("({id}, 'k{id:020}', '{at}')"));
    }
    let due = 2000;
    for kind in ALL {
        let Some(db) = TestDb::create(kind, "walk").await else {
            continue;
        };
        let date = if kind == Kind::Mariadb {
            "DATETIME"
        } else {
            "TIMESTAMP"
        };
        db.exec(&format!(
            "CREATE TABLE events (id BIGINT PRIMARY KEY, code VARCHAR(40) NOT NULL UNIQUE, at {date} NOT NULL);
             CREATE TABLE coded (id BIGINT NOT NULL, code VARCHAR(40) PRIMARY KEY, at {date} NOT NULL);
             INSERT INTO events (id, code, at) VALUES {values};
             INSERT INTO coded (id, code, at) SELECT id, code, at FROM events;",
            values = values.join(", ")
        ))
        .await;
        let project = Project::for_db(&db, "db", "");
        let rule = |id: &str, table: &str| {
            format!(
                "[[rule]]\nid = \"{id}\"\nstore = \"db\"\ntable = \"{table}\"\ncategory = \"test\"\n\
                 after = \"at\"\nretain = \"1 year\"\naction = \"delete\"\nbatch_size = 100\nbatch_ms = 1\n\n"
            )
        };
        project.rules(
            "walk.toml",
            &(rule("by-range", "events") + &rule("by-rows", "coded")),
        );
        let run = project.glemsel(&["run", "--as-of", "2026-11-01", "--format", "json"]);
        assert_eq!(code(&run), 0, "{kind:?}: {}", text(&run));
        let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        for (i, (rule, table, key)) in [("by-range", "events", "id"), ("by-rows", "coded", "code")]
            .into_iter()
            .enumerate()
        {
            // 4,000 rows in windows of at least 100 keys, and the gap of a
            // million keys crossed without walking it.
            let windows = report["rules"][i]["windows"].as_u64().unwrap();
            assert!(windows <= 60, "{kind:?} {rule}: {windows} windows");
            let left = db
                .column(&format!(
                    "SELECT COUNT(*) FROM {table} WHERE at < '2025-01-01'"
                ))
                .await;
            assert_eq!(left[0].as_deref(), Some("0"), "{kind:?} {rule}");
            let kept = db.column(&format!("SELECT COUNT(*) FROM {table}")).await;
            assert_eq!(kept[0].as_deref(), Some("2001"), "{kind:?} {rule}");
            let batches = db
                .rows(&format!(
                    "SELECT key_from, key_to, rows_affected FROM glemsel_audit \
                     WHERE rule_id = '{rule}' AND event = 'batch' ORDER BY seq"
                ))
                .await;
            let changed: u64 = batches
                .iter()
                .map(|b| b[2].as_deref().unwrap().parse::<u64>().unwrap())
                .sum();
            assert_eq!(changed, due, "{kind:?} {rule}: every row once");
            // Each window starts where the one before ended.
            for pair in batches.windows(2) {
                assert!(pair[1][0].is_some(), "{kind:?} {rule}: {pair:?}");
                if key == "id" {
                    let number = |v: &Option<String>| -> i64 {
                        v.as_deref()
                            .unwrap()
                            .trim_matches(['[', ']'])
                            .parse()
                            .unwrap()
                    };
                    assert!(
                        number(&pair[1][0]) >= number(&pair[0][1]),
                        "{kind:?}: {pair:?}"
                    );
                }
            }
        }
        db.drop().await;
    }
}

/// Along an integer key whose density changes sharply (300 keys a million
/// apart, then 100,000 consecutive ones), the dense stretch is spread over
/// several batches: each key range is checked against the planner's
/// estimate before it runs.
#[tokio::test]
async fn a_dense_stretch_of_keys_is_not_one_batch() {
    for kind in [Kind::Postgres, Kind::Mariadb] {
        let Some(db) = TestDb::create(kind, "dense").await else {
            continue;
        };
        let fill = match kind {
            Kind::Postgres => {
                "INSERT INTO events SELECT n * 1000000, '2020-01-01' FROM generate_series(1, 300) n;
                 INSERT INTO events SELECT 301000000 + n, '2020-01-01' FROM generate_series(0, 99999) n;
                 ANALYZE events;"
            }
            _ => {
                "INSERT INTO events SELECT seq * 1000000, '2020-01-01' FROM seq_1_to_300;
                 INSERT INTO events SELECT 301000000 + seq, '2020-01-01' FROM seq_0_to_99999;
                 ANALYZE TABLE events;"
            }
        };
        let date = if kind == Kind::Mariadb {
            "DATETIME"
        } else {
            "TIMESTAMP"
        };
        db.exec(&format!(
            "CREATE TABLE events (id BIGINT PRIMARY KEY, at {date} NOT NULL); {fill}"
        ))
        .await;
        let project = Project::for_db(&db, "db", "");
        project.rules(
            "dense.toml",
            "[[rule]]\nid = \"dense\"\nstore = \"db\"\ntable = \"events\"\ncategory = \"test\"\n\
             after = \"at\"\nretain = \"1 year\"\naction = \"delete\"\nbatch_size = 100\n",
        );
        let run = project.glemsel(&["run", "--as-of", "2026-11-01", "--format", "json"]);
        assert_eq!(code(&run), 0, "{kind:?}: {}", text(&run));
        let left = db.column("SELECT COUNT(*) FROM events").await;
        assert_eq!(left[0].as_deref(), Some("0"), "{kind:?}");
        let batches = db
            .rows("SELECT key_to, rows_affected FROM glemsel_audit WHERE event = 'batch' ORDER BY seq")
            .await;
        let total: u64 = batches
            .iter()
            .map(|b| b[1].as_deref().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, 100_300, "{kind:?}");
        let largest = batches
            .iter()
            .map(|b| b[1].as_deref().unwrap().parse::<u64>().unwrap())
            .max()
            .unwrap();
        // Batches grow at most twofold from one to the next, from 100 rows,
        // give or take the estimate's error.
        assert!(
            largest <= 60_000,
            "{kind:?}: a batch of {largest} rows: {batches:?}"
        );
        let dense = batches
            .iter()
            .filter(|b| b[0].as_deref().is_none_or(|k| k > "[301000000]"))
            .count();
        assert!(dense >= 4, "{kind:?}: {batches:?}");
    }
}

/// Before the first due row the walk does no work either, and a batch that
/// stops at its limit hands on after the last row it took: the rows a
/// batch already did are never walked again. The due rows are the last
/// quarter of the keys; the batches are sized by time, so the limit on the
/// rows one batch changes is met in the dense due block.
#[tokio::test]
async fn every_engine_starts_at_the_first_due_row_and_walks_each_window_once() {
    for kind in ALL {
        let Some(db) = TestDb::create(kind, "due_start").await else {
            continue;
        };
        let date = if kind == Kind::Mariadb {
            "DATETIME"
        } else {
            "TIMESTAMP"
        };
        // The due keys cross from four digits to five: a batch must take
        // them in the key's order, not its text's.
        let values: Vec<String> = (1..=12_000_i64)
            .map(|id| {
                let at = if id > 9000 {
                    "2020-01-01"
                } else {
                    "2026-10-01"
                };
                format!("({id}, 'Name {id}', '{at}')")
            })
            .collect();
        let mut schema = String::new();
        for table in ["tail_deleted", "tail_pseudonymised"] {
            schema += &format!(
                "CREATE TABLE {table} (id BIGINT PRIMARY KEY, name VARCHAR(80) NOT NULL, at {date} NOT NULL);
                 INSERT INTO {table} (id, name, at) VALUES {};",
                values.join(", ")
            );
        }
        db.exec(&schema).await;
        let project = Project::for_db(&db, "db", "");
        let rule = |table: &str, action: &str| {
            format!(
                "[[rule]]\nid = \"{table}\"\nstore = \"db\"\ntable = \"{table}\"\ncategory = \"test\"\n\
                 after = \"at\"\nretain = \"1 year\"\n{action}\nbatch_size = 5000\nbatch_ms = 5000\n\n"
            )
        };
        project.rules(
            "due_start.toml",
            &(rule("tail_deleted", "action = \"delete\"")
                + &rule(
                    "tail_pseudonymised",
                    "action = \"pseudonymise\"\ncolumns = { name = \"hmac\" }",
                )),
        );
        let run = project.glemsel(&["run", "--as-of", "2026-11-01", "--format", "json"]);
        assert_eq!(code(&run), 0, "{kind:?}: {}", text(&run));
        let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        for table in ["tail_deleted", "tail_pseudonymised"] {
            let rule = report["rules"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["rule_id"] == table)
                .unwrap();
            assert_eq!(rule["rows_changed"], 3000, "{kind:?} {table}");
            let batches = db
                .rows(&format!(
                    "SELECT key_from, rows_affected FROM glemsel_audit \
                     WHERE rule_id = '{table}' AND event = 'batch' ORDER BY seq"
                ))
                .await;
            let key_from: Vec<i64> = batches
                .iter()
                .map(|b| {
                    b[0].as_deref()
                        .unwrap_or_else(|| panic!("{kind:?} {table}: {batches:?}"))
                        .trim_matches(['[', ']'])
                        .parse()
                        .unwrap()
                })
                .collect();
            assert_eq!(key_from[0], 9000, "{kind:?} {table}: {batches:?}");
            // A limited delete in one statement does not say where it
            // stopped: the next window starts where it did (its rows are
            // gone). Tokens are read first, so their batches never overlap.
            let overlaps = |pair: &[i64]| {
                if table == "tail_pseudonymised" {
                    pair[0] >= pair[1]
                } else {
                    pair[0] > pair[1]
                }
            };
            assert!(
                !key_from.windows(2).any(overlaps),
                "{kind:?} {table}: a window walked twice: {batches:?}"
            );
            let audited: u64 = batches
                .iter()
                .map(|b| b[1].as_deref().unwrap().parse::<u64>().unwrap())
                .sum();
            assert_eq!(audited, 3000, "{kind:?} {table}");
        }
        let count = |sql: &str| {
            let db = &db;
            let sql = sql.to_string();
            async move { db.column(&sql).await[0].clone().unwrap() }
        };
        assert_eq!(count("SELECT COUNT(*) FROM tail_deleted").await, "9000");
        assert_eq!(
            count("SELECT COUNT(*) FROM tail_deleted WHERE id > 9000").await,
            "0"
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM tail_pseudonymised WHERE name LIKE 'Name %' AND id > 9000")
                .await,
            "0",
            "{kind:?}"
        );
        assert_eq!(
            count(
                "SELECT COUNT(*) FROM tail_pseudonymised WHERE name LIKE 'Name %' AND id <= 9000"
            )
            .await,
            "9000",
            "{kind:?}: the rows not due are untouched"
        );
        db.drop().await;
    }
}

/// Past the last due row the walk does no work: the due rows are the first
/// tenth of the keys, and the windows cover them and then the rows added
/// since the walk began, not the nine tenths that were never due. A table
/// with nothing due costs one window. By rows (fixed batches) and by key
/// ranges (batches sized by time) alike.
#[tokio::test]
async fn every_engine_stops_walking_after_the_last_due_row() {
    for kind in ALL {
        let Some(db) = TestDb::create(kind, "due_end").await else {
            continue;
        };
        let date = if kind == Kind::Mariadb {
            "DATETIME"
        } else {
            "TIMESTAMP"
        };
        let mut values = Vec::new();
        for id in 1..=3000_i64 {
            // Every other key among the first 300 is due.
            let at = if id <= 300 && id % 2 == 0 {
                "2020-01-01"
            } else {
                "2026-10-01"
            };
            values.push(format!("({id}, 'Name {id}', '{at}')"));
        }
        let mut schema = String::new();
        for table in ["fixed", "timed", "pseudonymised", "none_due"] {
            schema += &format!(
                "CREATE TABLE {table} (id BIGINT PRIMARY KEY, name VARCHAR(80) NOT NULL, at {date} NOT NULL);
                 INSERT INTO {table} (id, name, at) VALUES {};",
                values.join(", ")
            );
        }
        schema += "UPDATE none_due SET at = '2026-10-01';";
        db.exec(&schema).await;
        let project = Project::for_db(&db, "db", "");
        let rule = |table: &str, action: &str, batch_ms: u64| {
            format!(
                "[[rule]]\nid = \"{table}\"\nstore = \"db\"\ntable = \"{table}\"\ncategory = \"test\"\n\
                 after = \"at\"\nretain = \"1 year\"\n{action}\nbatch_size = 100\nbatch_ms = {batch_ms}\n\n"
            )
        };
        let delete = "action = \"delete\"";
        let pseudonymise = "action = \"pseudonymise\"\ncolumns = { name = \"hmac\" }";
        project.rules(
            "due_end.toml",
            &(rule("fixed", delete, 0)
                + &rule("timed", delete, 1)
                + &rule("pseudonymised", pseudonymise, 0)
                + &rule("none_due", delete, 0)),
        );
        let run = project.glemsel(&["run", "--as-of", "2026-11-01", "--format", "json"]);
        assert_eq!(code(&run), 0, "{kind:?}: {}", text(&run));
        let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        for (table, due, most_windows) in [
            // 150 due rows among 300 keys: three windows of 100 keys, and
            // the one past the table's end.
            ("fixed", 150, 4),
            // Windows of 50 to 200 rows, some repeated after a batch that
            // reached its limit; walking the whole table took 15 or more.
            ("timed", 150, 10),
            ("pseudonymised", 150, 4),
            ("none_due", 0, 1),
        ] {
            let rule = report["rules"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["rule_id"] == table)
                .unwrap_or_else(|| panic!("{kind:?}: no report of {table}"));
            assert_eq!(rule["rows_changed"], due, "{kind:?} {table}");
            let windows = rule["windows"].as_u64().unwrap();
            assert!(
                windows <= most_windows,
                "{kind:?} {table}: {windows} windows"
            );
            let audited: u64 = db
                .column(&format!(
                    "SELECT rows_affected FROM glemsel_audit WHERE rule_id = '{table}' AND event = 'batch'"
                ))
                .await
                .iter()
                .map(|v| v.as_deref().unwrap().parse::<u64>().unwrap())
                .sum();
            assert_eq!(audited, due, "{kind:?} {table}: the audit rows count them");
        }
        let count = |sql: String| {
            let db = &db;
            async move { db.column(&sql).await[0].clone().unwrap() }
        };
        for table in ["fixed", "timed"] {
            // The due rows are gone, every other row is left.
            assert_eq!(
                count(format!(
                    "SELECT COUNT(*) FROM {table} WHERE at < '2025-01-01'"
                ))
                .await,
                "0",
                "{kind:?} {table}"
            );
            assert_eq!(
                count(format!("SELECT COUNT(*) FROM {table}")).await,
                "2850",
                "{kind:?} {table}"
            );
        }
        assert_eq!(
            count("SELECT COUNT(*) FROM pseudonymised WHERE name LIKE 'psn%'".into()).await,
            "150",
            "{kind:?}"
        );
        assert_eq!(
            count(
                "SELECT COUNT(*) FROM pseudonymised WHERE at < '2025-01-01' AND name NOT LIKE 'psn%'"
                    .into()
            )
            .await,
            "0",
            "{kind:?}"
        );
        assert_eq!(count("SELECT COUNT(*) FROM none_due".into()).await, "3000");
        db.drop().await;
    }
}
