//! `plan --save` and `run --plan` on every engine, as a DPO and an operator
//! use them: an unchanged plan runs, and its hash is in every audit row of
//! the run; an added rule, a changed period, a column added to a target
//! table and a due count above the plan each refuse (exit 5) with the
//! difference named and nothing changed. `audit show` then lets an auditor
//! match the run to the plan.

mod common;

use common::{ALL, Kind, Project, TestDb, code, text};
use sha2::Digest as _;

const AS_OF: &str = "2026-06-01";

fn fixture(kind: Kind) -> String {
    let _ = kind;
    "CREATE TABLE people (id INTEGER PRIMARY KEY, name VARCHAR(80), email VARCHAR(120), created DATE, legal_hold BOOLEAN NOT NULL DEFAULT FALSE);
     INSERT INTO people (id, name, email, created, legal_hold) VALUES
        (1, 'Ann', 'ann@example.invalid', '2020-01-10', FALSE),
        (2, 'Bo', 'bo@example.invalid', '2021-08-01', FALSE),
        (3, 'Cy', 'cy@example.invalid', '2021-02-01', TRUE),
        (4, 'Di', 'di@example.invalid', '2025-12-01', FALSE),
        (5, 'Ed', 'ed@example.invalid', NULL, FALSE);
     CREATE TABLE logs (id INTEGER PRIMARY KEY, ip VARCHAR(45), at DATE);
     INSERT INTO logs (id, ip, at) VALUES (1, '192.0.2.1', '2024-01-01'), (2, '192.0.2.2', '2026-05-01');"
        .to_string()
}

fn rules(people_retain: &str) -> String {
    format!(
        r#"
[[rule]]
id = "people"
store = "db"
table = "people"
category = "test"
after = "created"
retain = "{people_retain}"
hold = "legal_hold"
action = "pseudonymise"
columns = {{ name = "hmac", email = "hmac_email" }}

[[rule]]
id = "logs"
store = "db"
table = "logs"
category = "test"
after = "at"
retain = "1 year"
action = "delete"
"#
    )
}

/// What a refused run must leave exactly as it was.
async fn state(
    db: &TestDb,
) -> (
    Vec<Vec<Option<String>>>,
    Vec<Option<String>>,
    Vec<Option<String>>,
) {
    (
        db.rows("SELECT id, name, email FROM people ORDER BY id")
            .await,
        db.column("SELECT id FROM logs ORDER BY id").await,
        db.column("SELECT COUNT(*) FROM glemsel_audit").await,
    )
}

fn refuses(project: &Project, plan: &str, expected: &[&str]) {
    let run = project.glemsel(&["run", "--plan", plan]);
    let out = text(&run);
    assert_eq!(code(&run), 5, "{out}");
    assert!(
        out.contains("no longer matches; nothing was changed"),
        "{out}"
    );
    for expected in expected {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

async fn approved_plans(kind: Kind) {
    let Some(db) = TestDb::create(kind, "plans").await else {
        return;
    };
    db.exec(&fixture(kind)).await;
    let project = Project::for_db(&db, "db", "");
    project.rules("rules.toml", &rules("5 years"));
    // An audit table exists, so "nothing changed" can count its rows.
    let warm = project.glemsel(&["run", "--as-of", "2000-01-01"]);
    assert_eq!(code(&warm), 0, "{}", text(&warm));

    let saved = project.glemsel(&["plan", "--as-of", AS_OF, "--save", "plan.json"]);
    assert_eq!(code(&saved), 0, "{kind:?}: {}", text(&saved));
    let bytes = std::fs::read(project.path().join("plan.json")).unwrap();
    let hash = hex::encode(sha2::Sha256::digest(&bytes));
    assert!(
        text(&saved).contains(&format!("sha256 {hash}")),
        "{}",
        text(&saved)
    );
    let plan: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(plan["format"], "glemsel-plan/1");
    assert_eq!(plan["rules"][0]["counts"]["due"], 1, "{plan}");
    assert_eq!(plan["rules"][1]["counts"]["due"], 1, "{plan}");
    assert_eq!(
        plan["rules"][0]["tables"][0]["columns"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // Each difference refuses the whole run, names itself, changes nothing.
    let untouched = state(&db).await;
    let extra = "[[rule]]\nid = \"extra\"\nstore = \"db\"\ntable = \"logs\"\ncategory = \"test\"\nafter = \"at\"\nretain = \"3 years\"\naction = \"delete\"\n";
    std::fs::write(project.path().join("rules/extra.toml"), extra).unwrap();
    refuses(
        &project,
        "plan.json",
        &["rule extra was added since the plan was made (rules/extra.toml:2)"],
    );
    std::fs::remove_file(project.path().join("rules/extra.toml")).unwrap();
    assert_eq!(state(&db).await, untouched);

    project.rules("rules.toml", &rules("4 years"));
    refuses(
        &project,
        "plan.json",
        &["rule people changed since the plan was made"],
    );
    project.rules("rules.toml", &rules("5 years"));
    assert_eq!(state(&db).await, untouched);

    db.exec("ALTER TABLE people ADD COLUMN phone2 VARCHAR(40)")
        .await;
    refuses(
        &project,
        "plan.json",
        &["rule people: table people: column phone2 (", ") was added"],
    );
    assert_eq!(state(&db).await, untouched);
    db.exec("ALTER TABLE people DROP COLUMN phone2").await;

    db.exec("INSERT INTO logs (id, ip, at) VALUES (3, '192.0.2.3', '2023-05-05')")
        .await;
    refuses(
        &project,
        "plan.json",
        &["rule logs: 2 rows are due, more than the 1 the plan approved"],
    );
    assert_eq!(state(&db).await.0, untouched.0);
    assert_eq!(state(&db).await.2, untouched.2);
    // A drift allowance lets a reviewed growth through; here it is removed again.
    db.exec("DELETE FROM logs WHERE id = 3").await;

    // Unchanged, the plan runs: exactly its rules at its as-of.
    let run = project.glemsel(&["run", "--plan", "plan.json", "--format", "json"]);
    assert_eq!(code(&run), 0, "{kind:?}: {}", text(&run));
    let after = state(&db).await;
    assert_eq!(after.1, [Some("2".to_string())], "{kind:?}");
    assert!(
        after.0[0][1].as_deref().unwrap().starts_with("psn_"),
        "{after:?}"
    );
    assert_eq!(
        after.0[1][1].as_deref(),
        Some("Bo"),
        "due after the plan's as-of"
    );
    // Every audit row of the run carries the plan's hash.
    let details = db
        .column("SELECT detail FROM glemsel_audit WHERE run_id = (SELECT run_id FROM glemsel_audit ORDER BY seq DESC LIMIT 1) ORDER BY seq")
        .await;
    assert!(details.len() >= 6, "{details:?}");
    for detail in &details {
        assert!(
            detail
                .as_deref()
                .unwrap()
                .contains(&format!("\"plan\":\"{hash}\"")),
            "{detail:?}"
        );
    }
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}", text(&verify));

    // The auditor matches the run to the plan.
    let show = project.glemsel(&["audit", "show", "--format", "json", "--rule", "logs"]);
    assert_eq!(code(&show), 0, "{}", text(&show));
    let runs: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs[0]["plan"].is_null());
    assert_eq!(runs[1]["plan"], hash.as_str());
    assert_eq!(runs[1]["rows_deleted"], 1);
    assert_eq!(runs[1]["rule_now"], "current");
    assert_eq!(runs[1]["cutoff"], "at < 2025-06-02");
    let run_id = runs[1]["run_id"].as_str().unwrap().to_string();
    let text_show = project.glemsel(&["audit", "show", "--run", &run_id]);
    let shown = text(&text_show);
    assert!(
        shown.contains(&format!("approved plan sha256 {hash}")),
        "{shown}"
    );
    assert!(
        shown.contains("rule people: pseudonymised 1 rows of people, 1 held; completed"),
        "{shown}"
    );
    assert!(
        shown.contains("rule logs: deleted 1 rows of logs, 0 held; completed"),
        "{shown}"
    );
    // Small pages give the same answer as one large one, in CSV too.
    let small = project.glemsel(&["audit", "show", "--format", "csv", "--page-rows", "1"]);
    let large = project.glemsel(&["audit", "show", "--format", "csv"]);
    assert_eq!(small.stdout, large.stdout);
    let csv = String::from_utf8_lossy(&large.stdout).to_string();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.starts_with("store,run_id,rule_id,"), "{csv}");
    let none = project.glemsel(&["audit", "show", "--since", "2099-01-01"]);
    assert!(
        text(&none).contains("no runs in the audit trail match"),
        "{}",
        text(&none)
    );
    let until = project.glemsel(&["audit", "show", "--until", "2000-01-01", "--format", "json"]);
    assert_eq!(String::from_utf8_lossy(&until.stdout).trim(), "[\n]");

    // A plan runs once in effect: its rows are done, so it finds fewer (none), which is allowed.
    let again = project.glemsel(&["run", "--plan", "plan.json"]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    // A rule whose due count grew runs with a drift allowance, capped at it.
    db.exec("INSERT INTO logs (id, ip, at) VALUES (4, '192.0.2.4', '2023-05-05'), (5, '192.0.2.5', '2023-05-06')").await;
    refuses(
        &project,
        "plan.json",
        &["rule logs: 2 rows are due, more than the 1 the plan approved"],
    );
    let drift = project.glemsel(&["run", "--plan", "plan.json", "--max-drift", "100%"]);
    assert_eq!(code(&drift), 0, "{}", text(&drift));
    assert_eq!(state(&db).await.1, [Some("2".to_string())]);
    db.drop().await;
}

#[tokio::test]
async fn an_approved_plan_runs_unchanged_and_refuses_every_difference_on_every_engine() {
    for kind in ALL {
        approved_plans(kind).await;
    }
}
