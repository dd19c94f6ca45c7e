//! Running beside production, on every engine: a run stops after the batch
//! in flight when `--max-duration` passes, does not start while the stop
//! file exists or outside its window, says why (last line, audit row, exit
//! 10), and the next run finishes what is left.

#[macro_use]
mod common;

use chrono::{Timelike, Utc};
use common::{Kind, Project, TestDb, assert_contains, code, text};

const ROWS: i64 = 3000;

/// `logs` with `ROWS` rows, every one due.
async fn logs_db(kind: Kind, prefix: &str) -> Option<TestDb> {
    let db = TestDb::create(kind, prefix).await?;
    let values: Vec<String> = (1..=ROWS)
        .map(|id| format!("({id}, '2019-01-01')"))
        .collect();
    db.exec(&format!(
        "CREATE TABLE logs (id INTEGER PRIMARY KEY, at DATE NOT NULL);
         INSERT INTO logs (id, at) VALUES {};",
        values.join(", ")
    ))
    .await;
    Some(db)
}

/// A delete rule of `batch_size` rows per batch; `extra` adds keys.
fn logs_rule(batch_size: u32, extra: &str) -> String {
    format!(
        "[[rule]]\nid = \"logs\"\nstore = \"db\"\ntable = \"logs\"\ncategory = \"test\"\nafter = \"at\"\nretain = \"1 year\"\naction = \"delete\"\nbatch_size = {batch_size}\nbatch_ms = 0\n{extra}\n"
    )
}

/// "HH:MM" in the project's zone, `minutes` from now.
fn local_time(minutes: i64) -> String {
    let at = (Utc::now() + chrono::Duration::minutes(minutes))
        .with_timezone(&chrono_tz::Europe::Copenhagen);
    format!("{:02}:{:02}", at.hour(), at.minute())
}

every_engine! {
    async fn limits_stop_a_run_between_batches_and_the_next_run_finishes(kind) {
        let Some(db) = logs_db(kind, "limits").await else {
            return;
        };
        let project = Project::for_db(&db, "db", "stop_file = \"stop\"");
        // One row per batch, so that the run takes longer than its limit.
        project.rules("logs.toml", &logs_rule(1, ""));
        let count = "SELECT count(*) FROM logs";
        let audited = "SELECT sum(rows_affected) FROM glemsel_audit WHERE event = 'batch'";

        // The stop file keeps a run from starting at all.
        let stop = project.path().join("stop");
        std::fs::write(&stop, "").unwrap();
        let run = project.glemsel(&["run"]);
        assert_eq!(code(&run), 10, "{}", text(&run));
        assert_contains(&text(&run), "rule logs: not run, the stop file");
        assert_eq!(db.number(count).await, ROWS);
        std::fs::remove_file(&stop).unwrap();

        // --max-duration stops after the batch in flight; what was done
        // is committed and audited, and the finish row says why it stopped.
        let run = project.glemsel(&["run", "--max-duration", "2s"]);
        assert_eq!(code(&run), 10, "{}", text(&run));
        let out = text(&run);
        let last = out.lines().rfind(|l| l.starts_with("rule logs:")).unwrap();
        assert_contains(
            last,
            "stopped because --max-duration 2 seconds has passed; the rest is due next run",
        );
        let remaining = db.number(count).await;
        assert!(0 < remaining && remaining < ROWS, "{remaining} rows left");
        assert_eq!(db.number(audited).await, ROWS - remaining);
        let finish = db
            .column("SELECT detail FROM glemsel_audit WHERE event = 'run_finish'")
            .await;
        assert_eq!(finish.len(), 1, "{finish:?}");
        let finish = finish[0].as_deref().unwrap();
        assert_contains(finish, "\"status\":\"stopped\"");
        assert_contains(finish, "\"halted\":\"--max-duration 2 seconds has passed\"");

        // The next run, unhurried, finishes the rest.
        project.rules("logs.toml", &logs_rule(1000, ""));
        let run = project.glemsel(&["run"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        assert_eq!(db.number(count).await, 0);
        assert_eq!(db.number(audited).await, ROWS);
        db.drop().await;
    }
}

every_engine! {
    async fn a_rule_runs_only_inside_its_window(kind) {
        let Some(db) = logs_db(kind, "window").await else {
            return;
        };
        let count = "SELECT count(*) FROM logs";
        // Opens in three hours, closes an hour later.
        let closed = format!("{}-{}", local_time(180), local_time(240));
        let project = Project::for_db(&db, "db", "");
        project.rules("logs.toml", &logs_rule(1000, &format!("window = \"{closed}\"")));
        let plan = project.glemsel(&["plan", "--format", "json"]);
        assert_eq!(code(&plan), 0, "{}", text(&plan));
        assert_contains(&text(&plan), &format!("\"window\": \"{closed} Europe/Copenhagen\""));

        let run = project.glemsel(&["run"]);
        assert_eq!(code(&run), 10, "{}", text(&run));
        assert_contains(
            &text(&run),
            &format!("rule logs: not run, its window {closed} Europe/Copenhagen is closed"),
        );
        assert_eq!(db.number(count).await, ROWS);

        // The store's window applies to a rule without one.
        let config = std::fs::read_to_string(project.config()).unwrap();
        std::fs::write(project.config(), format!("{config}window = \"{closed}\"\n")).unwrap();
        project.rules("logs.toml", &logs_rule(1000, ""));
        let run = project.glemsel(&["run"]);
        assert_eq!(code(&run), 10, "{}", text(&run));
        assert_eq!(db.number(count).await, ROWS);

        // The rule's own window wins: open since two minutes ago, across
        // midnight, until a minute before that.
        let open = format!("{}-{}", local_time(-2), local_time(-3));
        project.rules("logs.toml", &logs_rule(1000, &format!("window = \"{open}\"")));
        let run = project.glemsel(&["run"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        assert_eq!(db.number(count).await, 0);
        db.drop().await;
    }
}

/// A malformed window is refused with its file, line and rule, for a rule
/// and for a store, before any database is touched.
#[test]
fn a_malformed_window_is_refused_where_it_is_written() {
    let project = Project::with_store(
        "db",
        "engine = \"sqlite\"\npath = \"db.sqlite\"\nwindow = \"1-5\"",
        "",
    );
    project.rules("logs.toml", &logs_rule(1000, "window = \"05:00-05:00\""));
    let check = project.glemsel(&["check", "--offline"]);
    assert_eq!(code(&check), 3, "{}", text(&check));
    let out = text(&check);
    assert_contains(&out, "glemsel.toml:8:10:");
    assert_contains(
        &out,
        "store db: window \"1-5\": write it as \"HH:MM-HH:MM\"",
    );
    assert_contains(&out, "rules/logs.toml:14:10:");
    assert_contains(
        &out,
        "rule logs: window \"05:00-05:00\" starts where it ends",
    );
    assert!(!project.path().join("db.sqlite").exists());
}
