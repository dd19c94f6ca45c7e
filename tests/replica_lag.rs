//! Replica lag, against real replicas that tests/servers.sh starts on
//! loopback (a PostgreSQL streaming replica, a MariaDB replica): a purge
//! with a small `max_lag` keeps the lag within it and finishes; a replica
//! that is down pauses the run, which finishes once it is back. In a file
//! of its own: it stops the replicas.

mod common;

use std::time::{Duration, Instant};

use common::{Kind, Project, TestDb, assert_contains, assert_lacks, code, text};
use mysql_async::prelude::Queryable;

const ROWS: i64 = 3000;

/// Runs `glemsel run` off the test's runtime, so the lag sampler goes on.
async fn run_beside(project: &Project) -> std::process::Output {
    let dir = project.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_glemsel"))
            .arg("run")
            .current_dir(dir)
            .env_remove("GLEMSEL_CONFIG")
            .env("GLEMSEL_LOG", "glemsel=info")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// The replica's lag as the replica itself reports it, in seconds; `None`
/// while it cannot say.
async fn measured_lag(kind: Kind, replica_url: &str) -> Option<f64> {
    match kind {
        Kind::Postgres => {
            // Until the replica has replayed CREATE DATABASE, there is none.
            let (client, connection) = tokio_postgres::connect(replica_url, tokio_postgres::NoTls)
                .await
                .ok()?;
            tokio::spawn(connection);
            let row = client
                .query_one(
                    "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                            ELSE extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 END",
                    &[],
                )
                .await
                .ok()?;
            row.get(0)
        }
        Kind::Mariadb => {
            let mut conn = mysql_async::Conn::from_url(replica_url).await.ok()?;
            let row: Option<mysql_async::Row> = conn.query_first("SHOW SLAVE STATUS").await.ok()?;
            let _ = conn.disconnect().await;
            row?.get::<Option<u64>, _>("Seconds_Behind_Master")?
                .map(|s| s as f64)
        }
        Kind::Sqlite => unreachable!("servers only"),
    }
}

/// `glemsel.toml`'s store gains the replica and `max_lag`.
fn watch_replica(project: &Project, replica_url: &str, max_lag: &str) {
    std::fs::write(project.path().join("replica.url"), replica_url).unwrap();
    let config = std::fs::read_to_string(project.config()).unwrap();
    std::fs::write(
        project.config(),
        format!(
            "{config}max_lag = \"{max_lag}\"\n[[stores.db.replicas]]\nurl_file = \"replica.url\"\n"
        ),
    )
    .unwrap();
}

async fn lag_is_watched(kind: Kind) {
    let (primary_var, replica_var, ctl_var) = match kind {
        Kind::Postgres => (
            "GLEMSEL_TEST_PG_PLAIN_URL",
            "GLEMSEL_TEST_PG_REPLICA_URL",
            "GLEMSEL_TEST_PG_REPLICA_CTL",
        ),
        _ => (
            "GLEMSEL_TEST_MYSQL_URL",
            "GLEMSEL_TEST_MYSQL_REPLICA_URL",
            "GLEMSEL_TEST_MYSQL_REPLICA_CTL",
        ),
    };
    let (Some(replica), Some(ctl)) = (common::server_url(replica_var), common::server_url(ctl_var))
    else {
        return;
    };
    // The PostgreSQL replica follows the plain server: a database there.
    let (db_url, name, pg_admin, test_db) = match kind {
        Kind::Postgres => {
            let Some(admin) = common::server_url(primary_var) else {
                return;
            };
            let name = format!("lag_{:08x}", rand::random::<u32>());
            common::connect(&admin)
                .await
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let base = admin.rsplit_once('/').unwrap().0.to_string();
            (format!("{base}/{name}"), name, Some(admin), None)
        }
        _ => {
            let Some(db) = TestDb::create(kind, "lag").await else {
                return;
            };
            (db.url.clone(), db.name.clone(), None, Some(db))
        }
    };
    let replica_url = match kind {
        Kind::Postgres => format!("{}/{name}", replica.rsplit_once('/').unwrap().0),
        _ => format!("{replica}{name}"),
    };
    let fill = |first: i64| {
        let values: Vec<String> = (first..first + ROWS)
            .map(|id| format!("({id}, '2019-01-01')"))
            .collect();
        format!("INSERT INTO logs (id, at) VALUES {};", values.join(", "))
    };
    let exec = |sql: String| {
        let (kind, url) = (kind, db_url.clone());
        async move {
            match kind {
                Kind::Postgres => common::connect(&url)
                    .await
                    .batch_execute(&sql)
                    .await
                    .unwrap(),
                _ => {
                    let mut conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
                    conn.query_drop(sql).await.unwrap();
                    let _ = conn.disconnect().await;
                }
            }
        }
    };
    let count = |url: String| async move {
        match kind {
            Kind::Postgres => {
                let n: i64 = common::connect(&url)
                    .await
                    .query_one("SELECT count(*) FROM logs", &[])
                    .await
                    .unwrap()
                    .get(0);
                n
            }
            _ => {
                let mut conn = mysql_async::Conn::from_url(url.as_str()).await.unwrap();
                let n: Option<i64> = conn.query_first("SELECT count(*) FROM logs").await.unwrap();
                let _ = conn.disconnect().await;
                n.unwrap()
            }
        }
    };
    exec("CREATE TABLE logs (id INTEGER PRIMARY KEY, at DATE NOT NULL)".into()).await;
    exec(fill(1)).await;
    let engine = if kind == Kind::Postgres {
        "postgres"
    } else {
        "mysql"
    };
    let project = Project::new(engine, "db", &db_url, "max_pause_ms = 120000");
    watch_replica(&project, &replica_url, "1s");
    project.rules(
        "logs.toml",
        "[[rule]]\nid = \"logs\"\nstore = \"db\"\ntable = \"logs\"\ncategory = \"test\"\nafter = \"at\"\nretain = \"1 year\"\naction = \"delete\"\nbatch_size = 100\nbatch_ms = 0\n",
    );

    // A purge that watches the replica: the lag stays within max_lag
    // plus one batch, and the run finishes.
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (sampling, replica_url) = (sampling.clone(), replica_url.clone());
        tokio::spawn(async move {
            let mut worst: f64 = 0.0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(lag) = measured_lag(kind, &replica_url).await {
                    worst = worst.max(lag);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            worst
        })
    };
    let run = run_beside(&project).await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let worst = sampler.await.unwrap();
    assert_eq!(code(&run), 0, "{}", text(&run));
    assert_eq!(count(db_url.clone()).await, 0);
    assert!(worst <= 2.0, "the replica fell {worst} s behind");
    assert_lacks(&text(&run), &replica_url);
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(replica_url.clone()).await != 0 {
        assert!(Instant::now() < deadline, "the replica never caught up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A replica that is down pauses the run before its next batch; once it
    // is back, the run finishes.
    exec(fill(ROWS + 1)).await;
    let stopped = std::process::Command::new(&ctl)
        .arg("stop")
        .status()
        .unwrap();
    assert!(stopped.success());
    let run = tokio::spawn({
        let project_dir = project.path().to_path_buf();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_glemsel"))
                    .arg("run")
                    .current_dir(project_dir)
                    .env_remove("GLEMSEL_CONFIG")
                    .env("GLEMSEL_LOG", "glemsel=info")
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = count(db_url.clone()).await;
    let started = std::process::Command::new(&ctl)
        .arg("start")
        .status()
        .unwrap();
    assert!(started.success());
    assert_eq!(
        during, ROWS,
        "a batch went through while the replica was down"
    );
    let run = run.await.unwrap();
    let out = text(&run);
    assert_eq!(code(&run), 0, "{out}");
    assert_contains(&out, "pausing between batches");
    assert_contains(&out, "db replica 1 cannot be reached");
    assert_lacks(&out, &replica_url);
    assert_eq!(count(db_url.clone()).await, 0);
    if let Some(admin) = pg_admin {
        common::connect(&admin)
            .await
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await
            .unwrap();
    }
    if let Some(db) = test_db {
        db.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replica_lag_is_watched() {
    lag_is_watched(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_replica_lag_is_watched() {
    lag_is_watched(Kind::Mariadb).await;
}
