//! Running beside production, on every engine: a run stops after the batch
//! in flight when `--max-duration` passes, does not start while the stop
//! file exists or outside its window, says why (last line, audit row, exit
//! 11), and the next run finishes what is left.

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
        assert_eq!(code(&run), 11, "{}", text(&run));
        assert_contains(&text(&run), "rule logs: not run, the stop file");
        assert_eq!(db.number(count).await, ROWS);
        std::fs::remove_file(&stop).unwrap();

        // --max-duration stops after the batch in flight; what was done
        // is committed and audited, and the finish row says why it stopped.
        let run = project.glemsel(&["run", "--max-duration", "2s"]);
        assert_eq!(code(&run), 11, "{}", text(&run));
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
        let plan = project.glemsel(&["plan"]);
        assert_contains(
            &text(&plan),
            &format!("  runs      only within {closed} Europe/Copenhagen\n"),
        );

        let run = project.glemsel(&["run"]);
        assert_eq!(code(&run), 11, "{}", text(&run));
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
        assert_eq!(code(&run), 11, "{}", text(&run));
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
        "engine = \"sqlite\"\npath = \"db.sqlite\"\nwindow = \"1-5\"\nmax_load = 5",
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
    assert_contains(&out, "store db: an sqlite store has no server whose load");
    assert_contains(
        &out,
        "rule logs: window \"05:00-05:00\" starts where it ends",
    );
    assert!(!project.path().join("db.sqlite").exists());

    // Replicas need a max_lag, a max_lag needs replicas, and each replica
    // says where it is exactly once.
    let project = Project::new(
        "postgres",
        "db",
        "postgresql://nowhere/db",
        "[stores.other]\nengine = \"postgres\"\nurl_env = \"OTHER_URL\"\nmax_lag = \"5s\"\n",
    );
    let config = std::fs::read_to_string(project.config()).unwrap();
    std::fs::write(
        project.config(),
        format!("{config}[[stores.db.replicas]]\nurl_env = \"REPLICA_URL\"\nurl_file = \"replica.url\"\n[[stores.db.replicas]]\nurl_env = \"SECOND_REPLICA_URL\"\n"),
    )
    .unwrap();
    project.rules("logs.toml", &logs_rule(1000, ""));
    let check = project.glemsel(&["check", "--offline"]);
    assert_eq!(code(&check), 3, "{}", text(&check));
    let out = text(&check);
    assert_contains(&out, "store db: a replica needs exactly one of url_env");
    assert_contains(&out, "store db: replicas are watched for max_lag; set it");
    assert_contains(&out, "store other: max_lag needs replicas to watch");
}

every_engine! {
    /// `pause_ms` spaces the batches out: five batches, four pauses.
    async fn pause_ms_spaces_batches_out(kind) {
        let Some(db) = logs_db(kind, "pause").await else {
            return;
        };
        let project = Project::for_db(&db, "db", "");
        project.rules("logs.toml", &logs_rule(600, "pause_ms = 400"));
        let plan = project.glemsel(&["plan"]);
        assert_contains(&text(&plan), "  runs      400 ms apart\n");
        let started = std::time::Instant::now();
        let run = project.glemsel(&["run"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        assert!(started.elapsed() >= std::time::Duration::from_millis(1600), "{:?}", started.elapsed());
        assert_eq!(db.number("SELECT count(*) FROM logs").await, 0);
        assert_eq!(db.number("SELECT count(*) FROM glemsel_audit WHERE event = 'batch'").await, 5);
        db.drop().await;
    }
}

/// `n` sessions on `db`'s server, each running a statement for `seconds`.
async fn busy_sessions(db: &TestDb, n: usize, seconds: u32) -> Vec<tokio::task::JoinHandle<()>> {
    let mut sessions = Vec::new();
    for _ in 0..n {
        let (kind, url) = (db.kind, db.url.clone());
        sessions.push(tokio::spawn(async move {
            match kind {
                Kind::Postgres => {
                    let client = common::connect(&url).await;
                    let _ = client
                        .batch_execute(&format!("SELECT pg_sleep({seconds})"))
                        .await;
                }
                Kind::Mariadb => {
                    use mysql_async::prelude::Queryable;
                    let mut conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
                    let _ = conn.query_drop(format!("SELECT SLEEP({seconds})")).await;
                    let _ = conn.disconnect().await;
                }
                Kind::Sqlite => unreachable!("servers only"),
            }
        }));
    }
    // Until they are all running.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    sessions
}

/// Runs glemsel off the test's runtime, so the busy sessions go on.
async fn run_beside(project: &Project, args: &[&str]) -> std::process::Output {
    let (dir, args): (std::path::PathBuf, Vec<String>) = (
        project.path().into(),
        args.iter().map(|a| a.to_string()).collect(),
    );
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_glemsel"))
            .args(&args)
            .current_dir(dir)
            .env_remove("GLEMSEL_CONFIG")
            .env("GLEMSEL_LOG", "glemsel=info")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Above a store's `max_load` batches wait, between transactions, and go
/// on once the load falls; a load that stays high past `max_pause_ms`
/// stops the run cleanly, the rest due next run.
async fn max_load_pauses_then_goes_on_or_stops(kind: Kind) {
    let Some(db) = logs_db(kind, "load").await else {
        return;
    };
    // Other tests may share the server: 20 busy sessions are far above
    // what they make, and a limit of 15 far above their share.
    let project = Project::for_db(&db, "db", "max_pause_ms = 2000");
    let config = std::fs::read_to_string(project.config()).unwrap();
    std::fs::write(project.config(), format!("{config}max_load = 15\n")).unwrap();
    project.rules("logs.toml", &logs_rule(1000, ""));
    let count = "SELECT count(*) FROM logs";

    // Busy for 12 s, past max_pause: the run stops before its first batch.
    let busy = busy_sessions(&db, 20, 12).await;
    let run = run_beside(&project, &["run"]).await;
    assert_eq!(code(&run), 11, "{}", text(&run));
    let out = text(&run);
    assert_contains(&out, "pausing between batches");
    let last = out.lines().rfind(|l| l.starts_with("rule logs:")).unwrap();
    assert_contains(last, "stopped because the load of store db (");
    assert_contains(
        last,
        "stayed above max_load = 15 after a pause of 2 seconds, the longest max_pause_ms allows; the rest is due next run",
    );
    assert_eq!(db.number(count).await, ROWS);
    let finish = db
        .column("SELECT detail FROM glemsel_audit WHERE event = 'run_finish'")
        .await;
    assert_contains(
        finish[0].as_deref().unwrap(),
        "\"halted\":\"the load of store db (",
    );

    // With time to wait, the run waits for the load to fall, then finishes.
    std::fs::write(
        project.config(),
        format!(
            "{}max_load = 15\n",
            config.replace("max_pause_ms = 2000", "max_pause_ms = 60000")
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let run = {
        let project_dir = project.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_glemsel"))
                .arg("run")
                .current_dir(project_dir)
                .env_remove("GLEMSEL_CONFIG")
                .env("GLEMSEL_LOG", "glemsel=info")
                .output()
                .unwrap()
        })
    };
    if kind == Kind::Postgres {
        // While it waits, glemsel holds no transaction open.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let sessions = db
            .column("SELECT state FROM pg_stat_activity WHERE application_name = 'glemsel' AND datname = current_database()")
            .await;
        assert!(!sessions.is_empty(), "glemsel is connected while it waits");
        assert!(
            sessions.iter().all(|s| s.as_deref() == Some("idle")),
            "{sessions:?}"
        );
    }
    let run = run.await.unwrap();
    assert_eq!(code(&run), 0, "{}", text(&run));
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(3),
        "did not wait: {:?}",
        started.elapsed()
    );
    assert_contains(
        &text(&run),
        "load and lag within their limits again; going on",
    );
    assert_eq!(db.number(count).await, 0);
    assert_eq!(
        db.number("SELECT sum(rows_affected) FROM glemsel_audit WHERE event = 'batch'")
            .await,
        ROWS
    );
    for session in busy {
        session.await.unwrap();
    }
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_load_pauses_then_goes_on_or_stops_postgres() {
    max_load_pauses_then_goes_on_or_stops(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_load_pauses_then_goes_on_or_stops_mariadb() {
    max_load_pauses_then_goes_on_or_stops(Kind::Mariadb).await;
}

/// On PostgreSQL a role without pg_monitor sees no state of other roles'
/// sessions: its count of the load would be too low, so it is not taken,
/// and the run waits, then stops, saying what to grant.
#[tokio::test]
async fn a_load_this_role_cannot_see_is_not_believed() {
    let Some(db) = logs_db(Kind::Postgres, "loadrole").await else {
        return;
    };
    let role = format!("{}_r", db.name);
    db.exec(&format!(
        "CREATE ROLE \"{role}\" LOGIN PASSWORD 'pw'; GRANT SELECT, DELETE ON logs TO \"{role}\"; GRANT CREATE ON SCHEMA public TO \"{role}\";"
    ))
    .await;
    let url = db.url.replacen("postgres@", &format!("{role}:pw@"), 1);
    let project = Project::new("postgres", "db", &url, "max_pause_ms = 1000");
    let config = std::fs::read_to_string(project.config()).unwrap();
    std::fs::write(project.config(), format!("{config}max_load = 1000\n")).unwrap();
    project.rules("logs.toml", &logs_rule(1000, ""));
    let run = project.glemsel(&["run"]);
    assert_eq!(code(&run), 11, "{}", text(&run));
    assert_contains(
        &text(&run),
        "stopped because the load of store db could not be read (this role may not see other roles' sessions; grant it pg_monitor)",
    );
    assert_eq!(db.number("SELECT count(*) FROM logs").await, ROWS);
    db.exec(&format!("GRANT pg_monitor TO \"{role}\"")).await;
    let run = project.glemsel(&["run"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    assert_eq!(db.number("SELECT count(*) FROM logs").await, 0);
    db.exec(&format!("DROP OWNED BY \"{role}\"")).await;
    let admin = std::env::var("GLEMSEL_TEST_PG_URL").unwrap();
    db.drop().await;
    common::connect(&admin)
        .await
        .batch_execute(&format!("DROP ROLE \"{role}\""))
        .await
        .unwrap();
}

/// The README's production setup loads as written: its ```toml production
/// blocks, the config and its rules.
#[test]
fn the_readme_production_setup_loads() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```toml production\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 2, "the config and the rules");
    let project = Project::with_store("unused", "engine = \"sqlite\"\npath = \"x\"", "");
    std::fs::write(project.config(), blocks[0]).unwrap();
    std::fs::write(project.path().join("db-ca.pem"), "").unwrap();
    std::fs::write(project.path().join("rules").join("logs.toml"), blocks[1]).unwrap();
    let policy = project.policy();
    let shop = &policy.stores["shop"];
    assert_eq!(shop.max_load, Some(40));
    assert_eq!(shop.max_lag, Some(std::time::Duration::from_secs(5)));
    assert_eq!(shop.replicas.len(), 1);
    assert_eq!(policy.settings.pause_ms, 100);
    let rule = &policy.rules[0];
    assert_eq!(
        rule.window.as_ref().unwrap().to_string(),
        "01:00-05:00 Europe/Copenhagen"
    );
}

every_engine! {
    /// `grants` names what the load and lag limits read: pg_monitor on
    /// PostgreSQL, SLAVE MONITOR (the replicas' status) on MariaDB.
    async fn grants_name_what_the_limits_read(kind) {
        if kind == Kind::Sqlite {
            return;
        }
        let Some(db) = logs_db(kind, "limitgrants").await else {
            return;
        };
        let project = Project::for_db(&db, "db", "");
        project.rules("logs.toml", &logs_rule(1000, ""));
        let plain = text(&project.glemsel(&["grants"]));
        let config = std::fs::read_to_string(project.config()).unwrap();
        std::fs::write(
            project.config(),
            format!("{config}max_load = 40\nmax_lag = \"5s\"\n[[stores.db.replicas]]\nurl_env = \"REPLICA_URL\"\n"),
        )
        .unwrap();
        let grants = project.glemsel(&["grants"]);
        assert_eq!(code(&grants), 0, "{}", text(&grants));
        let (wanted, rule) = match kind {
            Kind::Postgres => ("GRANT pg_monitor TO \"glemsel\";", "pg_monitor"),
            _ => ("GRANT SLAVE MONITOR ON *.* TO 'glemsel'@'%';", "SLAVE MONITOR"),
        };
        assert_contains(&text(&grants), wanted);
        assert!(!plain.contains(rule), "{plain}");
        db.drop().await;
    }
}
