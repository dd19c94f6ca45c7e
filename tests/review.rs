//! `glemsel report` and `check --coverage` on every engine, as a DPO uses
//! them: the forecast must be, month by month, what `plan` at each month's
//! end counts; rules with rows waiting past their schedule are overdue
//! until a run takes them; a column added by a migration and covered by no
//! rule fails `check --coverage` until a rule or the allow-list covers it.

mod common;

use common::{ALL, Kind, Project, TestDb, code, text};

fn fixture(kind: Kind) -> String {
    let timestamp = match kind {
        Kind::Postgres => "TIMESTAMP",
        Kind::Mariadb => "DATETIME(6)",
        Kind::Sqlite => "DATETIME",
    };
    let mut sql = format!(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, name VARCHAR(80), email VARCHAR(120), phone VARCHAR(40), \
         note VARCHAR(200), status VARCHAR(20) NOT NULL, ended DATE, legal_hold BOOLEAN NOT NULL DEFAULT FALSE);\n\
         CREATE TABLE visits (id INTEGER PRIMARY KEY, ip VARCHAR(45), at {timestamp});\n\
         CREATE TABLE leads (id INTEGER PRIMARY KEY, email VARCHAR(120), created DATE);\n"
    );
    let day = |n: i64| {
        (chrono::NaiveDate::from_ymd_opt(2022, 1, 1).unwrap() + chrono::Days::new(n as u64))
            .to_string()
    };
    for i in 1..=150i64 {
        let ended = if i % 23 == 0 {
            "NULL".to_string()
        } else {
            format!("'{}'", day(i * 9))
        };
        sql.push_str(&format!(
            "INSERT INTO people (id, name, email, phone, note, status, ended, legal_hold) VALUES \
             ({i}, 'Person {i}', 'p{i}@example.invalid', '+45 {i}', 'note {i}', '{}', {ended}, {});\n",
            if i % 5 == 0 { "active" } else { "closed" },
            if i % 17 == 0 { "TRUE" } else { "FALSE" },
        ));
    }
    for i in 1..=200i64 {
        let at = chrono::NaiveDate::from_ymd_opt(2024, 12, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            + chrono::TimeDelta::hours(i * 43);
        let at = if i % 31 == 0 {
            "NULL".to_string()
        } else {
            format!("'{}'", at.format("%Y-%m-%d %H:%M:%S"))
        };
        sql.push_str(&format!(
            "INSERT INTO visits (id, ip, at) VALUES ({i}, '192.0.2.{}', {at});\n",
            i % 250
        ));
    }
    for i in 1..=40i64 {
        sql.push_str(&format!(
            "INSERT INTO leads (id, email, created) VALUES ({i}, 'lead{i}@example.invalid', '{}');\n",
            day(1000 + i * 11)
        ));
    }
    sql
}

const RULES: &str = r#"
[categories.customer]
description = "Name, e-mail, phone and notes of customers"
legal_basis = "contract"

[[rule]]
id = "people-after-contract"
store = "db"
table = "people"
category = "customer"
after = "ended"
retain = "36 months"
round_up_to = "financial_year_end"
where = "status = 'closed'"
hold = "legal_hold"
action = "pseudonymise"
columns = { name = "hmac", email = "hmac_email", phone = "null", note = "redact" }

[[rule]]
id = "visits"
store = "db"
table = "visits"
category = "test"
after = "at"
retain = "1 year"
action = "delete"

[[rule]]
id = "leads"
store = "db"
table = "leads"
category = "test"
after = "created"
retain = "6 months"
action = "delete"
"#;

const AS_OF: &str = "2026-03-15T10:00";

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| panic!("{err}: {}", text(output)))
}

fn report(project: &Project) -> serde_json::Value {
    let report = project.glemsel(&["report", "--format", "json", "--as-of", AS_OF]);
    assert_eq!(code(&report), 0, "{}", text(&report));
    json(&report)
}

fn rule<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no rule {id} in {report}"))
}

async fn forecast_and_status(kind: Kind) {
    let Some(db) = TestDb::create(kind, "review").await else {
        return;
    };
    db.exec(&fixture(kind)).await;
    let project = Project::for_db(&db, "db", "");
    project.rules("rules.toml", RULES);

    let before = report(&project);
    let months = before["months"].as_array().unwrap();
    assert_eq!(months.len(), 12);
    assert_eq!(months[0]["label"], "2026-03");
    assert_eq!(months[11]["label"], "2027-02");
    // The schedule says what the rule files say.
    let people = rule(&before, "people-after-contract");
    assert_eq!(people["legal_basis"], "contract");
    assert_eq!(
        people["period"],
        "36 months from the end of the financial year (06-30) of ended"
    );
    assert!(
        people["source"]
            .as_str()
            .unwrap()
            .ends_with("rules.toml:10"),
        "{people}"
    );

    // Month by month, the forecast is what plan counts at the month's end.
    let ids = ["people-after-contract", "visits", "leads"];
    let mut cumulative: Vec<u64> = ids
        .iter()
        .map(|id| rule(&before, id)["counts"]["due"].as_u64().unwrap())
        .collect();
    for (k, month) in months.iter().enumerate() {
        let until: chrono::DateTime<chrono::Utc> =
            month["until"].as_str().unwrap().parse().unwrap();
        let last = (until - chrono::TimeDelta::microseconds(1))
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let plan = project.glemsel(&["plan", "--format", "json", "--as-of", &last]);
        assert_eq!(code(&plan), 0, "{}", text(&plan));
        let plan = json(&plan);
        for (i, id) in ids.iter().enumerate() {
            cumulative[i] += rule(&before, id)["forecast"][k].as_u64().unwrap();
            let step = plan["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["rule_id"] == *id)
                .unwrap();
            assert_eq!(
                step["counts"]["due"].as_u64().unwrap(),
                cumulative[i],
                "{kind:?}: rule {id}, due by the end of {}",
                month["label"]
            );
        }
    }
    // The forecast is not empty, and the financial year rounds to July.
    let forecast = |id: &str| -> Vec<u64> {
        rule(&before, id)["forecast"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect()
    };
    assert!(
        forecast("visits").iter().filter(|n| **n > 0).count() >= 8,
        "{:?}",
        forecast("visits")
    );
    let people = forecast("people-after-contract");
    assert!(people[4] > 0, "{people:?}");
    assert_eq!(
        people.iter().sum::<u64>(),
        people[4],
        "{kind:?}: only July: {people:?}"
    );

    // Rows due for longer than a day without a schedule are overdue, until a run.
    let overdue = rule(&before, "visits")["overdue"]["rows"].as_u64().unwrap();
    assert!(overdue > 0);
    assert!(rule(&before, "visits")["last_run"].is_null());
    let due = rule(&before, "visits")["counts"]["due"].as_u64().unwrap();
    let run = project.glemsel(&["run", "--as-of", AS_OF]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    let after = report(&project);
    let visits = rule(&after, "visits");
    assert!(visits["overdue"].is_null(), "{visits}");
    assert_eq!(visits["last_run"]["status"], "completed");
    assert_eq!(visits["last_run"]["rows_changed"].as_u64(), Some(due));
    assert_eq!(visits["counts"]["due"], 0);
    // The held rows the run kept are in its last run, and in the counts now.
    let people = rule(&after, "people-after-contract");
    assert!(
        people["last_run"]["rows_held"].as_u64().unwrap() > 0,
        "{people}"
    );
    assert_eq!(people["last_run"]["rows_held"], people["counts"]["held"]);
    let chain = &after["stores"][0]["chain"];
    assert!(chain["broken"].is_null(), "{chain}");
    assert!(chain["head_seq"].as_i64().unwrap() >= 9, "{chain}");

    // The other formats carry the same facts.
    let md = project.glemsel(&["report", "--format", "md", "--as-of", AS_OF]);
    assert_eq!(code(&md), 0, "{}", text(&md));
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(
        md.contains("| `visits` | 2026-03-15 10:00 |") || md.contains("| `visits` |"),
        "{md}"
    );
    assert!(md.contains("## 2. Forecast"), "{md}");
    let csv = project.glemsel(&["report", "--format", "csv", "--as-of", AS_OF]);
    let csv = String::from_utf8_lossy(&csv.stdout).to_string();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(
        lines[0].starts_with("rule_id,category,") && lines[0].ends_with("due_2027-02"),
        "{csv}"
    );
    assert!(
        lines[1].starts_with("people-after-contract,customer,"),
        "{csv}"
    );
    db.drop().await;
}

#[tokio::test]
async fn the_forecast_is_what_plan_counts_at_each_month_end_on_every_engine() {
    for kind in ALL {
        forecast_and_status(kind).await;
    }
}

async fn coverage(kind: Kind) {
    let Some(db) = TestDb::create(kind, "coverage").await else {
        return;
    };
    db.exec(&fixture(kind)).await;
    let project = Project::for_db(&db, "db", "");
    project.rules("rules.toml", RULES);
    let check = project.glemsel(&["check", "--coverage"]);
    assert_eq!(code(&check), 0, "{kind:?}: {}", text(&check));
    assert!(
        text(&check).contains("coverage: 6 columns look like personal data: 6 covered by rules, 0 reviewed (allow-list), 0 not covered"),
        "{kind:?}: {}",
        text(&check)
    );

    // A migration adds a second phone number, which the rule does not know.
    db.exec("ALTER TABLE people ADD COLUMN phone2 VARCHAR(40)")
        .await;
    db.exec("CREATE TABLE newsletter (id INTEGER PRIMARY KEY, mail VARCHAR(120), signed_up DATE)")
        .await;
    let check = project.glemsel(&["check", "--coverage"]);
    let out = text(&check);
    assert_eq!(code(&check), 9, "{kind:?}: {out}");
    assert!(
        out.contains("people.phone2 (") && out.contains("looks like phone number and is not covered: rule people-after-contract pseudonymises the rows and leaves this column as it is"),
        "{kind:?}: {out}"
    );
    assert!(
        out.contains("newsletter.mail (")
            && out.contains("no rule deletes or pseudonymises anything in this table"),
        "{kind:?}: {out}"
    );
    let report = report(&project);
    assert_eq!(report["rules"].as_array().unwrap().len(), 3);
    let findings = report["stores"][0]["coverage"].as_array().unwrap();
    let uncovered: Vec<&str> = findings
        .iter()
        .filter(|f| f["status"] == "uncovered")
        .map(|f| f["column"].as_str().unwrap())
        .collect();
    assert_eq!(uncovered, ["mail", "phone2"], "{kind:?}");

    // Reviewed: on the allow-list with a reason, it passes, and says so.
    let config = std::fs::read_to_string(project.config()).unwrap();
    std::fs::write(
        project.config(),
        format!(
            "{config}\n[[coverage.allow]]\ntable = \"people\"\ncolumns = [\"phone2\"]\nreason = \"the switchboard's extension, no person's\"\n\n\
             [[coverage.allow]]\nstore = \"db\"\ntable = \"newsletter\"\nreason = \"emptied by the mail provider's own 30-day retention\"\n"
        ),
    )
    .unwrap();
    let check = project.glemsel(&["check", "--coverage"]);
    assert_eq!(code(&check), 0, "{kind:?}: {}", text(&check));
    assert!(
        text(&check).contains("2 reviewed (allow-list), 0 not covered"),
        "{}",
        text(&check)
    );
    let report = self::report(&project);
    let phone2 = report["stores"][0]["coverage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["column"] == "phone2")
        .unwrap()
        .clone();
    assert_eq!(phone2["status"], "allowed");
    assert_eq!(phone2["reason"], "the switchboard's extension, no person's");
    assert!(
        phone2["at"].as_str().unwrap().contains("glemsel.toml:"),
        "{phone2}"
    );

    // An allow-list entry without a reason is refused with the config.
    std::fs::write(
        project.config(),
        format!("{config}\n[[coverage.allow]]\ntable = \"people\"\nreason = \" \"\n"),
    )
    .unwrap();
    let check = project.glemsel(&["check", "--offline"]);
    assert_eq!(code(&check), 3, "{}", text(&check));
    assert!(
        text(&check).contains("coverage.allow: say why"),
        "{}",
        text(&check)
    );
    db.drop().await;
}

#[tokio::test]
async fn check_coverage_catches_a_new_personal_column_on_every_engine() {
    for kind in ALL {
        coverage(kind).await;
    }
}
