//! Minimums and deadlines on PostgreSQL, MariaDB and SQLite. The same
//! period, "30 days", read both ways, with the daemon's daily 02:30
//! schedule in Copenhagen:
//!
//! * a deadline ("deleted no later than 30 days after it was entered")
//!   acts 26 hours ahead (25 hours between two runs when the clocks go
//!   back, + an hour for the run), so the 02:30 run the day before the
//!   deadline takes the row and it is gone before the deadline;
//! * a minimum ("kept 30 days") never goes a second early: the row goes at
//!   the first run after its period.

mod common;

use common::{ALL, Kind, Project, TestDb, code, text};

fn fixture(kind: Kind) -> String {
    let (timestamp, engine) = match kind {
        Kind::Postgres => ("TIMESTAMP", ""),
        Kind::Mariadb => ("DATETIME(6)", " ENGINE=InnoDB"),
        Kind::Sqlite => ("DATETIME", ""),
    };
    format!(
        "
CREATE TABLE purchases (id INTEGER PRIMARY KEY, entered_at {timestamp} NOT NULL){engine};
CREATE TABLE ledger (id INTEGER PRIMARY KEY, posted_at {timestamp} NOT NULL){engine};
INSERT INTO purchases (id, entered_at) VALUES (1, '2026-09-01 00:00:00'), (2, '2026-09-01 00:00:01');
INSERT INTO ledger (id, posted_at) VALUES (1, '2026-09-01 00:00:00'), (2, '2026-09-01 00:00:01');
"
    )
}

const RULES: &str = r#"
[[rule]]
id = "unfinished-purchases"
description = "Deleted no later than 30 days after it was entered"
store = "db"
table = "purchases"
category = "test"
after = "entered_at"
retain = "30 days"
kind = "deadline"
action = "delete"

[[rule]]
id = "ledger"
description = "Kept 30 days"
store = "db"
table = "ledger"
category = "test"
after = "posted_at"
retain = "30 days"
kind = "minimum"
action = "delete"
"#;

const SCHEDULE: &str = "schedule = \"0 30 2 * * *\"";

async fn ids(db: &TestDb, table: &str) -> Vec<String> {
    db.column(&format!("SELECT id FROM {table} ORDER BY id"))
        .await
        .into_iter()
        .map(|id| id.unwrap())
        .collect()
}

fn run(project: &Project, kind: Kind, rule: &str, as_of: &str) {
    let run = project.glemsel(&["run", "--rule", rule, "--as-of", as_of]);
    assert_eq!(code(&run), 0, "{kind:?} {rule} {as_of}: {}", text(&run));
}

#[tokio::test]
async fn a_deadline_goes_a_run_early_and_a_minimum_never_does() {
    for kind in ALL {
        let Some(db) = TestDb::create(kind, "deadlines").await else {
            continue;
        };
        db.exec(&fixture(kind)).await;
        let project = Project::for_db(&db, "db", SCHEDULE);
        project.rules("rules.toml", RULES);
        let check = project.glemsel(&["check"]);
        assert_eq!(code(&check), 0, "{kind:?}: {}", text(&check));

        // The deadline is 2026-10-01 00:00. The 02:30 run two days before
        // takes nothing; a row comes due 26 hours before its deadline, to
        // the second; the 02:30 run the day before takes what is left.
        for rule in ["unfinished-purchases", "ledger"] {
            run(&project, kind, rule, "2026-09-29T02:30");
        }
        assert_eq!(ids(&db, "purchases").await, ["1", "2"], "{kind:?}");
        run(
            &project,
            kind,
            "unfinished-purchases",
            "2026-09-29T21:59:59",
        );
        assert_eq!(ids(&db, "purchases").await, ["1", "2"], "{kind:?}");
        run(&project, kind, "unfinished-purchases", "2026-09-29T22:00");
        assert_eq!(ids(&db, "purchases").await, ["2"], "{kind:?}");

        // The plan says how far ahead the deadline acts and when the rows
        // due now are gone by: the next 02:30 run, + max_duration.
        let plan = project.glemsel(&[
            "plan",
            "--rule",
            "unfinished-purchases",
            "--as-of",
            "2026-09-30T02:30",
        ]);
        let plan = text(&plan);
        assert!(
            plan.contains("kind      deadline: rows go 26 hours before the end of their period (schedule \"0 30 2 * * *\" leaves up to 25 hours between runs, + max_duration 1 hour)"),
            "{kind:?}: {plan}"
        );
        assert!(
            plan.contains("gone by   2026-09-30 03:30:00 Europe/Copenhagen: the next scheduled run, + max_duration 1 hour"),
            "{kind:?}: {plan}"
        );
        assert!(plan.contains("rows      1 due"), "{kind:?}: {plan}");
        let json = project.glemsel(&[
            "plan",
            "--rule",
            "unfinished-purchases",
            "--as-of",
            "2026-09-30T02:30",
            "--format",
            "json",
        ]);
        let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        let timing = &json["steps"][0]["timing"];
        assert_eq!(timing["kind"], "deadline", "{timing}");
        assert_eq!(timing["lead_seconds"], 26 * 3600, "{timing}");
        assert_eq!(timing["next_run"], "2026-09-30T00:30:00Z", "{timing}");
        assert_eq!(timing["gone_by"], "2026-09-30T01:30:00Z", "{timing}");

        for rule in ["unfinished-purchases", "ledger"] {
            run(&project, kind, rule, "2026-09-30T02:30");
        }
        // Gone a day before the deadline; the minimum's rows all stay.
        assert!(ids(&db, "purchases").await.is_empty(), "{kind:?}");
        assert_eq!(ids(&db, "ledger").await, ["1", "2"], "{kind:?}");

        // The minimum: not a second early, and due to the microsecond.
        let minimum = project.glemsel(&["plan", "--rule", "ledger", "--as-of", "2026-09-30"]);
        assert!(
            text(&minimum).contains("kind      minimum: nothing goes before the end of its period"),
            "{kind:?}: {}",
            text(&minimum)
        );
        run(&project, kind, "ledger", "2026-09-30T23:59:59");
        assert_eq!(ids(&db, "ledger").await, ["1", "2"], "{kind:?}");
        run(&project, kind, "ledger", "2026-10-01T00:00");
        assert_eq!(ids(&db, "ledger").await, ["2"], "{kind:?}");
        run(&project, kind, "ledger", "2026-10-01T02:30");
        assert!(ids(&db, "ledger").await.is_empty(), "{kind:?}");
        db.drop().await;
    }
}

/// A deadline the schedule cannot meet is refused by `check`, before any
/// database is touched: weekly runs and "within 3 days" (which lasts 71
/// hours across the spring change).
#[test]
fn check_refuses_a_schedule_too_sparse_for_a_deadline() {
    let project = Project::with_store(
        "db",
        "engine = \"postgres\"\nurl_env = \"UNUSED\"",
        "schedule = \"0 30 2 * * MON\"",
    );
    project.rules(
        "r.toml",
        "[[rule]]\nid = \"r\"\nstore = \"db\"\ntable = \"t\"\ncategory = \"test\"\nafter = \"at\"\nretain = \"3 days\"\nkind = \"deadline\"\naction = \"delete\"\n",
    );
    let check = project.glemsel(&["check", "--offline"]);
    assert_eq!(code(&check), 3, "{}", text(&check));
    assert!(
        text(&check).contains("rule r: kind = \"deadline\": retain \"3 days\" can end 2 days 23 hours after its event, but the rule must act 7 days 2 hours ahead (schedule \"0 30 2 * * MON\" leaves up to 7 days 1 hour between runs, + max_duration 1 hour): the schedule is too sparse to meet it"),
        "{}",
        text(&check)
    );
}
