//! A database that crashes in the middle of a run: the run exits 1, every
//! committed batch has its audit row and no audit row lacks its change, the
//! chain is intact, and the next run finishes the work exactly.
//!
//! The servers are crashed by the scripts `tests/servers.sh` writes
//! (PostgreSQL: an immediate stop, MariaDB: SIGKILL) and started again. One
//! test in its own file, so no other test runs against a server it stops.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Kind, Project, TestDb, code, server_url, text};

const ROWS: usize = 120_000;
const DUE: usize = 90_000;

async fn count(db: &TestDb, sql: &str) -> u64 {
    db.column(sql).await[0]
        .as_deref()
        .unwrap_or("0")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_database_that_crashes_mid_run_loses_nothing_and_the_next_run_finishes() {
    for (kind, crash) in [
        (Kind::Postgres, "GLEMSEL_TEST_PG_CRASH"),
        (Kind::Mariadb, "GLEMSEL_TEST_MYSQL_CRASH"),
    ] {
        let Some(crash) = server_url(crash) else {
            return;
        };
        let Some(db) = TestDb::create(kind, "crash").await else {
            return;
        };
        db.exec("CREATE TABLE logs (id INTEGER PRIMARY KEY, at DATE)")
            .await;
        for chunk in (0..ROWS).collect::<Vec<_>>().chunks(10_000) {
            let values: Vec<String> = chunk
                .iter()
                .map(|i| {
                    let at = if *i < DUE { "2015-01-01" } else { "2026-01-01" };
                    format!("({i}, '{at}')")
                })
                .collect();
            db.exec(&format!("INSERT INTO logs VALUES {}", values.join(", ")))
                .await;
        }
        let project = Project::for_db(&db, "db", "");
        project.rules(
            "logs.toml",
            "[[rule]]\nid = \"logs\"\nstore = \"db\"\ntable = \"logs\"\ncategory = \"test\"\nafter = \"at\"\nretain = \"1 year\"\naction = \"delete\"\nbatch_size = 50\nbatch_ms = 0\n",
        );
        let run = project.spawn(&["run", "--as-of", "2026-06-01"]);
        // Once some batches have committed (not after a fixed time: a fast
        // machine finishes first), crash the server.
        for _ in 0..1_000 {
            if count(&db, "SELECT COUNT(*) FROM logs").await <= (ROWS - 500) as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let crashed = Command::new(&crash).output().unwrap();
        assert!(crashed.status.success(), "{kind:?}: {}", text(&crashed));
        let run = run.wait_with_output().unwrap();
        assert_eq!(code(&run), 1, "{kind:?}: the run must fail: {}", text(&run));

        // Every change that committed has its audit row, and no more.
        let left = count(&db, "SELECT COUNT(*) FROM logs").await;
        let deleted = ROWS as u64 - left;
        let audited = count(
            &db,
            "SELECT COALESCE(SUM(rows_affected), 0) FROM glemsel_audit WHERE event = 'batch'",
        )
        .await;
        assert!(
            deleted > 0 && deleted < DUE as u64,
            "{kind:?}: crashed too late ({deleted})"
        );
        assert_eq!(deleted, audited, "{kind:?}");
        let verify = project.glemsel(&["audit", "verify"]);
        assert_eq!(code(&verify), 0, "{kind:?}: {}", text(&verify));

        // The next run finishes exactly: all due rows, nothing else.
        let again = project.glemsel(&["run", "--as-of", "2026-06-01"]);
        assert_eq!(code(&again), 0, "{kind:?}: {}", text(&again));
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM logs").await,
            (ROWS - DUE) as u64,
            "{kind:?}"
        );
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM logs WHERE at < '2020-01-01'").await,
            0,
            "{kind:?}"
        );
        assert_eq!(
            count(
                &db,
                "SELECT COALESCE(SUM(rows_affected), 0) FROM glemsel_audit WHERE event = 'batch'"
            )
            .await,
            DUE as u64,
            "{kind:?}"
        );
        let verify = project.glemsel(&["audit", "verify"]);
        assert_eq!(code(&verify), 0, "{kind:?}: {}", text(&verify));
        db.drop().await;
    }
}
