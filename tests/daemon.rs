//! `glemsel daemon` as systemd runs it: real processes, a notify socket of
//! the test's own, signals, two daemons on one database, a store that is
//! down, and the metrics endpoint.

mod common;

use std::io::Read as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{KEY, Kind, Project, TestDb, assert_contains, assert_lacks, code, text};

/// A running daemon: its process, the notices it sent, and its log file.
struct Daemon {
    child: Child,
    notices: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    log: PathBuf,
}

impl Daemon {
    fn start(project: &Project, name: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(project, name, env, true)
    }

    /// Starts a daemon; `read` false leaves its notify socket unread, as a
    /// stalled service manager would.
    fn start_with(project: &Project, name: &str, env: &[(&str, &str)], read: bool) -> Daemon {
        let socket_path = project.path().join(format!("{name}.notify"));
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        // Like systemd, keep reading: a full queue would make the daemon
        // drop notices (it never blocks on them; see
        // `a_notify_socket_nobody_reads_never_stalls_the_daemon`).
        let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let collected = notices.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while read && let Ok(n) = socket.recv(&mut buf) {
                collected
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            if !read {
                // Keep the socket open, and full, until the test ends.
                std::thread::sleep(Duration::from_secs(600));
            }
        });
        let log = project.path().join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_glemsel"))
            .arg("daemon")
            .current_dir(project.path())
            .env_remove("GLEMSEL_CONFIG")
            .env("GLEMSEL_LOG", "glemsel=debug")
            .env("NOTIFY_SOCKET", &socket_path)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child,
            notices,
            log,
        }
    }

    fn log(&self) -> String {
        let mut text = String::new();
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    /// Waits for a notice containing `wanted` that arrived after the
    /// notices already seen through earlier waits; returns it.
    fn wait_notice(&mut self, wanted: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            {
                let mut notices = self.notices.lock().unwrap();
                if let Some(at) = notices.iter().position(|n| n.contains(wanted)) {
                    let notice = notices[at].clone();
                    notices.drain(..=at);
                    return notice;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "no {wanted:?} within {within:?}; have {:?}\nlog:\n{}",
                    self.notices.lock().unwrap(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_log(&self, wanted: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.log().contains(wanted) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no {wanted:?} in the log within {within:?}:\n{}",
            self.log()
        );
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its code.
    fn exit_code(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("exited");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("did not exit within {within:?}:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not happen within {within:?}");
}

fn sqlite_count(path: &Path, sql: &str) -> i64 {
    let db = rusqlite::Connection::open(path).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.query_row(sql, [], |row| row.get(0)).unwrap()
}

fn logs_rule(id: &str, store: &str, schedule: &str) -> String {
    format!(
        "[[rule]]\nid = \"{id}\"\nstore = \"{store}\"\ntable = \"logs\"\ncategory = \"test\"\nafter = \"at\"\nretain = \"1 year\"\naction = \"delete\"\nschedule = \"{schedule}\"\n\n"
    )
}

/// A project whose one store is the SQLite database at `path`.
fn sqlite_project(store: &str, path: &Path, settings: &str) -> Project {
    Project::with_store(
        store,
        &format!(
            "engine = \"sqlite\"\npath = {:?}",
            path.display().to_string()
        ),
        settings,
    )
}

#[test]
fn notify_protocol_schedules_reload_and_stop() {
    let db = tempfile::tempdir().unwrap();
    let path = db.path().join("d.sqlite");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TABLE logs (id INTEGER PRIMARY KEY, at DATETIME NOT NULL);
             INSERT INTO logs (at) VALUES ('2020-01-01 00:00:00'), ('2020-01-02 00:00:00'), ('2099-01-01 00:00:00');",
        )
        .unwrap();
    let project = sqlite_project("d", &path, "audit_checkpoints = \"heads.tsv\"");
    project.rules("logs.toml", &logs_rule("logs", "d", "* * * * * *"));
    let mut daemon = Daemon::start(&project, "d", &[("WATCHDOG_USEC", "400000")]);

    let ready = daemon.wait_notice("READY=1", Duration::from_secs(20));
    assert_contains(&ready, "STATUS=running 1 rule on their schedules");
    daemon.wait_notice("WATCHDOG=1", Duration::from_secs(2));
    wait_until(Duration::from_secs(10), "the scheduled run", || {
        sqlite_count(&path, "SELECT count(*) FROM logs") == 1
    });
    daemon.wait_notice("STATUS=running rule logs", Duration::from_secs(5));

    // New due rows go at the next run.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("INSERT INTO logs (at) VALUES ('2021-01-01')", [])
        .unwrap();
    wait_until(Duration::from_secs(10), "the next run", || {
        sqlite_count(&path, "SELECT count(*) FROM logs") == 1
    });

    // A reload that fails its checks keeps the old rules running.
    project.rules("logs.toml", &logs_rule("logs", "nowhere", "* * * * * *"));
    daemon.signal("-HUP");
    daemon.wait_notice("RELOADING=1", Duration::from_secs(5));
    daemon.wait_notice("READY=1", Duration::from_secs(10));
    daemon.wait_log("the previous rules keep running", Duration::from_secs(5));
    assert_contains(&daemon.log(), "unknown store \"nowhere\"");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("INSERT INTO logs (at) VALUES ('2021-01-02')", [])
        .unwrap();
    wait_until(Duration::from_secs(10), "a run under the old rules", || {
        sqlite_count(&path, "SELECT count(*) FROM logs") == 1
    });

    // A good reload takes over.
    project.rules("logs.toml", &logs_rule("logs-renamed", "d", "* * * * * *"));
    daemon.signal("-HUP");
    daemon.wait_log("reloaded", Duration::from_secs(10));
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("INSERT INTO logs (at) VALUES ('2021-01-03')", [])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sqlite_count(
        &path,
        "SELECT count(*) FROM glemsel_audit WHERE rule_id = 'logs-renamed' AND event = 'batch'",
    ) != 1
    {
        assert!(
            Instant::now() < deadline,
            "no run under the new rules:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    daemon.signal("-TERM");
    daemon.wait_notice("STOPPING=1", Duration::from_secs(5));
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), 0);
    assert_eq!(
        sqlite_count(
            &path,
            "SELECT count(*) FROM glemsel_audit WHERE event = 'run_start' AND detail LIKE '%\"trigger\":\"schedule\"%'"
        ),
        sqlite_count(
            &path,
            "SELECT count(*) FROM glemsel_audit WHERE event = 'run_start'"
        )
    );
    // The daemon publishes each run's chain head, which verify checks.
    let heads = std::fs::read_to_string(project.path().join("heads.tsv")).unwrap();
    assert!(heads.lines().count() >= 3, "{heads}");
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}", text(&verify));
    assert_lacks(&text(&verify), " 0 checkpoints matched");
}

/// A service manager that stops reading its notify socket must not stall
/// the daemon: once the socket's queue is full, notices are dropped, and
/// runs and SIGTERM go on as before.
#[test]
fn a_notify_socket_nobody_reads_never_stalls_the_daemon() {
    let db = tempfile::tempdir().unwrap();
    let path = db.path().join("s.sqlite");
    let add_due_row = || {
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS logs (id INTEGER PRIMARY KEY, at DATETIME NOT NULL);
                 INSERT INTO logs (at) VALUES ('2020-01-01 00:00:00');",
            )
            .unwrap();
    };
    add_due_row();
    let project = sqlite_project("s", &path, "");
    project.rules("logs.toml", &logs_rule("logs", "s", "* * * * * *"));
    // A watchdog ping every 5 ms fills the unread socket within seconds.
    let mut daemon = Daemon::start_with(&project, "s", &[("WATCHDOG_USEC", "10000")], false);
    wait_until(Duration::from_secs(20), "the first run", || {
        sqlite_count(&path, "SELECT count(*) FROM logs") == 0
    });
    daemon.wait_log("watchdog enabled", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(5));
    add_due_row();
    wait_until(
        Duration::from_secs(10),
        "a run after the socket filled",
        || sqlite_count(&path, "SELECT count(*) FROM logs") == 0,
    );
    daemon.signal("-TERM");
    assert_eq!(
        daemon.exit_code(Duration::from_secs(10)),
        0,
        "{}",
        daemon.log()
    );
}

/// Appends a finished run of `rule` that ended `days` ago to the trail.
async fn past_run(db: &TestDb, rule: &str, days: i64) {
    use glemsel::audit::{AuditEntry, AuditEvent};
    let url_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(url_file.path(), &db.url).unwrap();
    let config = glemsel::rules::StoreConfig {
        name: "db".into(),
        engine: glemsel::rules::Engine::Postgres,
        connection: glemsel::rules::Connection::Url(glemsel::rules::SecretSource::File(
            url_file.path().into(),
        )),
        audit_table: "glemsel_audit".parse().unwrap(),
        time_zone: chrono_tz::UTC,
        empty_dates: vec![],
        tls: glemsel::rules::Tls::Disable,
        window: None,
        max_load: None,
        replicas: vec![],
        max_lag: None,
        location: glemsel::rules::Location::file_start(Path::new("test")),
    };
    let mut store = glemsel::store::connect(
        &config,
        glemsel::store::SessionLimits {
            lock_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(60),
        },
    )
    .await
    .unwrap();
    store.ensure_audit_table().await.unwrap();
    let at = chrono::Utc::now() - chrono::TimeDelta::days(days);
    store.begin().await.unwrap();
    glemsel::audit::append(
        store.as_mut(),
        AuditEntry {
            run_id: "earlier".into(),
            event: AuditEvent::RunFinish,
            rule_id: rule.into(),
            store: "db".into(),
            table_name: "logs".into(),
            action: "delete".into(),
            rows: 0,
            key_from: None,
            key_to: None,
            as_of: at,
            cutoff: String::new(),
            rule_hash: String::new(),
            key_id: None,
            at,
            host: "earlier".into(),
            version: "0".into(),
            detail: "{}".into(),
        },
        None,
    )
    .await
    .unwrap();
    store.commit().await.unwrap();
}

/// A run missed while the daemon was down runs once at start-up, recorded
/// as a catch-up; secrets come from systemd credentials and stay out of the log.
#[tokio::test]
async fn a_missed_run_is_caught_up_at_start() {
    const PASSWORD: &str = "daemon-Pa55w0rd-secret";
    let Some(db) = TestDb::create(Kind::Postgres, "catchup").await else {
        return;
    };
    db.exec(
        "CREATE TABLE logs (id int PRIMARY KEY, at timestamptz NOT NULL);
         INSERT INTO logs VALUES (1, '2020-01-01'), (2, '2020-01-02');
         CREATE TABLE other_logs (id int PRIMARY KEY, at timestamptz NOT NULL);
         INSERT INTO other_logs VALUES (1, '2020-01-01');",
    )
    .await;
    past_run(&db, "logs", 3).await;
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(
        credentials.path().join("db-url"),
        db.pg_url_with_password(PASSWORD),
    )
    .unwrap();
    std::fs::write(credentials.path().join("hmac-key"), KEY).unwrap();
    let project = Project::with_store(
        "db",
        "engine = \"postgres\"\nurl_credential = \"db-url\"",
        "",
    );
    let config = std::fs::read_to_string(project.config())
        .unwrap()
        .replace("key_file = \"hmac-key\"", "key_credential = \"hmac-key\"");
    std::fs::write(project.config(), config).unwrap();
    // Daily at 02:30: last run three days ago, so one was missed. The other
    // rule never ran: nothing to catch up, it waits for its schedule.
    project.rules(
        "logs.toml",
        &(logs_rule("logs", "db", "0 30 2 * * *")
            + &logs_rule("other", "db", "0 30 2 * * *")
                .replace("table = \"logs\"", "table = \"other_logs\"")),
    );
    let credentials_dir = credentials.path().display().to_string();
    let mut daemon = Daemon::start(
        &project,
        "d",
        &[("CREDENTIALS_DIRECTORY", &credentials_dir)],
    );
    daemon.wait_notice("READY=1", Duration::from_secs(20));
    daemon.wait_log(
        "a scheduled run was missed; running it now",
        Duration::from_secs(10),
    );
    let started = Instant::now();
    loop {
        let left = db.number("SELECT count(*) FROM logs").await;
        if left == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the catch-up run did not delete"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let detail = db
        .column("SELECT detail FROM glemsel_audit WHERE event = 'run_start' AND rule_id = 'logs'")
        .await;
    assert_eq!(detail.len(), 1, "{detail:?}");
    assert_contains(detail[0].as_deref().unwrap(), "\"trigger\":\"catch-up\"");
    // A reload must not take the finished catch-up for a missed run again.
    daemon.signal("-HUP");
    daemon.wait_log("reloaded", Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let runs = db
        .number("SELECT count(*) FROM glemsel_audit WHERE event = 'run_start' AND rule_id = 'logs'")
        .await;
    assert_eq!(runs, 1, "one catch-up, no more");
    let host = db
        .column("SELECT host FROM glemsel_audit WHERE event = 'run_start'")
        .await;
    assert_eq!(host, [Some(glemsel::audit::host_name())]);
    let host = host[0].clone().unwrap();
    assert_ne!(host, "unknown");
    let other = db.number("SELECT count(*) FROM other_logs").await;
    assert_eq!(other, 1, "a rule that never ran waits for its schedule");
    daemon.signal("-TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), 0);
    let log = daemon.log();
    for secret in [PASSWORD, KEY] {
        assert_lacks(&log, secret);
    }
    db.drop().await;
}

/// Two daemons on one database, as an HA pair: a rule's runs never overlap.
#[tokio::test]
async fn two_daemons_never_run_a_rule_at_once() {
    let Some(db) = TestDb::create(Kind::Postgres, "ha").await else {
        return;
    };
    db.exec(
        "CREATE TABLE logs (id int PRIMARY KEY, at timestamptz NOT NULL);
         INSERT INTO logs SELECT n, timestamptz '2020-01-01' + n * interval '1 minute' FROM generate_series(1, 4000) AS n;",
    )
    .await;
    let project = Project::for_db(&db, "db", "");
    project.rules(
        "logs.toml",
        &logs_rule("logs", "db", "* * * * * *")
            .replace("action = \"delete\"", "action = \"delete\"\nbatch_size = 3"),
    );
    let mut first = Daemon::start(&project, "first", &[]);
    let mut second = Daemon::start(&project, "second", &[]);
    first.wait_notice("READY=1", Duration::from_secs(20));
    second.wait_notice("READY=1", Duration::from_secs(20));
    let lock_held = "another worker holds this rule's lock; this run is skipped";
    wait_until(
        Duration::from_secs(60),
        "one daemon skipping for the other",
        || first.log().contains(lock_held) || second.log().contains(lock_held),
    );
    let started = Instant::now();
    while db.column("SELECT count(*) FROM logs").await != [Some("0".to_string())] {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the due rows were not deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A few more scheduled runs, which find nothing left.
    let finished = "SELECT count(*) FROM glemsel_audit WHERE event = 'run_finish'";
    while db.column(finished).await[0]
        .as_deref()
        .unwrap()
        .parse::<i64>()
        .unwrap()
        < 4
    {
        assert!(started.elapsed() < Duration::from_secs(150), "too few runs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    first.signal("-TERM");
    second.signal("-TERM");
    assert_eq!(first.exit_code(Duration::from_secs(10)), 0);
    assert_eq!(second.exit_code(Duration::from_secs(10)), 0);

    // Every run's span, start to finish, never overlaps another's.
    let runs = db
        .rows(
            "SELECT s.run_id, s.seq, f.seq FROM glemsel_audit s JOIN glemsel_audit f \
             ON f.run_id = s.run_id AND f.event = 'run_finish' WHERE s.event = 'run_start' ORDER BY s.seq",
        )
        .await;
    assert!(runs.len() >= 2, "{runs:?}");
    for pair in runs.windows(2) {
        let (finish, next_start): (i64, i64) = (
            pair[0][2].as_ref().unwrap().parse().unwrap(),
            pair[1][1].as_ref().unwrap().parse().unwrap(),
        );
        assert!(finish < next_start, "runs overlap: {pair:?}");
    }
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}", text(&verify));
    db.drop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(port: u16) -> String {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// One store down does not stop the others; metrics tell which is which.
#[test]
fn a_store_that_is_down_does_not_stop_the_others() {
    let db = tempfile::tempdir().unwrap();
    let path = db.path().join("up.sqlite");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE logs (id INTEGER PRIMARY KEY, at DATETIME NOT NULL); INSERT INTO logs (at) VALUES ('2020-01-01');")
        .unwrap();
    let port = free_port();
    let project = sqlite_project(
        "up",
        &path,
        &format!("metrics_listen = \"127.0.0.1:{port}\""),
    );
    let down_url = project.path().join("down.url");
    std::fs::write(&down_url, "postgresql://glemsel:secret@127.0.0.1:1/nowhere").unwrap();
    let config = std::fs::read_to_string(project.config()).unwrap()
        + "\n[stores.down]\nengine = \"postgres\"\nurl_file = \"down.url\"\n";
    std::fs::write(project.config(), config).unwrap();
    project.rules(
        "logs.toml",
        &(logs_rule("up-logs", "up", "* * * * * *")
            + &logs_rule("down-logs", "down", "*/2 * * * * *")),
    );
    let mut daemon = Daemon::start(&project, "d", &[]);
    daemon.wait_notice("READY=1", Duration::from_secs(20));
    wait_until(Duration::from_secs(10), "the reachable store's run", || {
        sqlite_count(&path, "SELECT count(*) FROM logs") == 0
    });
    daemon.wait_log("store unreachable; retrying", Duration::from_secs(10));
    // The down store's run gives up when its next run comes, and counts as failed.
    wait_until(
        Duration::from_secs(20),
        "a failed run of the down store",
        || scrape(port).contains("glemsel_run_failures_total{rule=\"down-logs\"}"),
    );
    let metrics = scrape(port);
    for expected in [
        "glemsel_rows_deleted_total{rule=\"up-logs\"} 1",
        "glemsel_runs_total{rule=\"up-logs\"}",
        "glemsel_run_failures_total{rule=\"down-logs\"}",
        "glemsel_last_success_timestamp_seconds{rule=\"up-logs\"}",
        "glemsel_batch_duration_seconds_count{rule=\"up-logs\"} 1",
        "glemsel_rows_held{rule=\"up-logs\"} 0",
    ] {
        assert_contains(&metrics, expected);
    }
    assert_lacks(&daemon.log(), "secret");
    daemon.signal("-TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), 0);
}

/// `--log-format json`: every line on stderr is one JSON object.
#[test]
fn json_logs_are_one_object_per_line() {
    let db = tempfile::tempdir().unwrap();
    let path = db.path().join("j.sqlite");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE logs (id INTEGER PRIMARY KEY, at DATETIME NOT NULL); INSERT INTO logs (at) VALUES ('2020-01-01');")
        .unwrap();
    let project = sqlite_project("j", &path, "");
    project.rules("logs.toml", &logs_rule("logs", "j", "* * * * * *"));
    let output = project.glemsel_with_env(&["--log-format", "json", "run"], &[]);
    assert_eq!(code(&output), 0, "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 3, "{stderr}");
    for line in lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            event["level"].is_string() && event["fields"]["message"].is_string(),
            "{line}"
        );
    }
}

/// SIGTERM in the middle of a run: the batch in flight commits with its
/// audit row, the run is recorded as stopped, and the daemon exits 0 at once.
#[tokio::test]
async fn sigterm_mid_run_drains_and_exits_zero() {
    let Some(db) = TestDb::create(Kind::Postgres, "drain").await else {
        return;
    };
    db.exec(
        "CREATE TABLE logs (id int PRIMARY KEY, at timestamptz NOT NULL);
         INSERT INTO logs SELECT n, timestamptz '2020-01-01' + n * interval '1 minute' FROM generate_series(1, 20000) AS n;",
    )
    .await;
    let project = Project::for_db(&db, "db", "");
    project.rules(
        "logs.toml",
        &logs_rule("logs", "db", "* * * * * *").replace(
            "action = \"delete\"",
            "action = \"delete\"\nbatch_size = 2\nbatch_ms = 0",
        ),
    );
    let mut daemon = Daemon::start(&project, "d", &[]);
    daemon.wait_notice("READY=1", Duration::from_secs(20));
    wait_until(Duration::from_secs(30), "20 committed batches", || {
        daemon.log().matches("batch committed").count() >= 20
    });
    daemon.signal("-TERM");
    let stopping = Instant::now();
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), 0);
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "took {:?}",
        stopping.elapsed()
    );
    let left: i64 = db.column("SELECT count(*) FROM logs").await[0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(left > 0, "stopped before the end");
    let audited: i64 = db
        .column("SELECT sum(rows_affected) FROM glemsel_audit WHERE event = 'batch'")
        .await[0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        audited,
        20000 - left,
        "every deleted row is in a committed batch's audit row"
    );
    let finish = db
        .column("SELECT detail FROM glemsel_audit WHERE event = 'run_finish'")
        .await;
    assert_eq!(finish.len(), 1, "{finish:?}");
    assert_contains(finish[0].as_deref().unwrap(), "\"status\":\"stopped\"");
    db.drop().await;
}

/// The host's wall clock jumps (NTP stepping it, a VM restored), while the
/// monotonic clock runs on as it does then: the daemon notices within a
/// sleep slice, runs the rule whose time the jump passed once, as of the
/// new time, and a jump back does not run it again.
#[test]
fn a_wall_clock_jump_runs_the_passed_schedule_once() {
    use chrono::{Days, NaiveTime, TimeDelta, TimeZone as _, Utc};
    use chrono_tz::Europe::Copenhagen;

    let now = Utc::now();
    let local = now.with_timezone(&Copenhagen);
    let three = |date: chrono::NaiveDate| {
        Copenhagen
            .from_local_datetime(&date.and_time(NaiveTime::from_hms_opt(3, 0, 0).unwrap()))
            .earliest()
            .unwrap()
    };
    let mut next = three(local.date_naive());
    if next <= local + TimeDelta::minutes(2) {
        next = three(local.date_naive() + Days::new(1));
    }
    // Jump to a minute past the next 03:00.
    let jump = (next.with_timezone(&Utc) - now) + TimeDelta::minutes(1);
    let wall = |at: chrono::DateTime<Utc>| {
        at.with_timezone(&Copenhagen)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    // Due a year after: 1 always, 2 only on the clock after the jump, 3 never.
    let after_jump_only = wall(now + jump / 2 - TimeDelta::days(365));
    let db = tempfile::tempdir().unwrap();
    let path = db.path().join("d.sqlite");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE logs (id INTEGER PRIMARY KEY, at DATETIME NOT NULL);
             INSERT INTO logs VALUES (1, '2020-01-01 00:00:00'), (2, '{after_jump_only}'), (3, '2099-01-01 00:00:00');"
        ))
        .unwrap();
    let project = sqlite_project("d", &path, "");
    project.rules("logs.toml", &logs_rule("logs", "d", "0 0 3 * * *"));
    let offset = project.path().join("clock-offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let offset_path = offset.display().to_string();
    let mut daemon = Daemon::start(
        &project,
        "d",
        &[
            (
                "LD_PRELOAD",
                "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
            ),
            ("FAKETIME_TIMESTAMP_FILE", &offset_path),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    daemon.wait_notice("READY=1", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(sqlite_count(&path, "SELECT count(*) FROM logs"), 3);

    std::fs::write(&offset, format!("+{}\n", jump.num_seconds())).unwrap();
    // A sleep slice (30 s) at most, and the run.
    wait_until(Duration::from_secs(45), "the run the jump passed", || {
        sqlite_count(
            &path,
            "SELECT count(*) FROM glemsel_audit WHERE event = 'run_finish'",
        ) == 1
    });
    let ids: Vec<i64> = {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mut stmt = conn.prepare("SELECT id FROM logs ORDER BY id").unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(ids, [3], "{}", daemon.log());

    // Back to the real time: the run already done is not run again.
    std::fs::write(&offset, "+0\n").unwrap();
    std::thread::sleep(Duration::from_secs(35));
    assert_eq!(
        sqlite_count(
            &path,
            "SELECT count(*) FROM glemsel_audit WHERE event = 'run_start'"
        ),
        1,
        "{}",
        daemon.log()
    );
    daemon.signal("-TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), 0);
}

/// Which rules the daemon runs: not a manual one, not one without a
/// schedule (it starts with them, where it used to refuse), not one
/// outside its window, and none while the stop file exists.
#[test]
fn manual_unscheduled_and_closed_window_rules_are_left_alone() {
    let db = tempfile::tempdir().unwrap();
    let path = db.path().join("d.sqlite");
    let tables = ["every", "manual", "unscheduled", "closed"];
    let schema: String = tables
        .iter()
        .map(|t| format!("CREATE TABLE {t} (id INTEGER PRIMARY KEY, at DATETIME NOT NULL); INSERT INTO {t} (at) VALUES ('2020-01-01 00:00:00');"))
        .collect();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(&schema)
        .unwrap();
    let project = sqlite_project("d", &path, "stop_file = \"stop\"");
    // Opens in three hours (Copenhagen is at most two ahead of UTC).
    let hour = |ahead| (chrono::Utc::now() + chrono::Duration::hours(ahead)).format("%H:00");
    let window = format!("{}-{}", hour(5), hour(6));
    let on = |table: &str, schedule: &str| {
        logs_rule(table, "d", schedule).replace("table = \"logs\"", &format!("table = \"{table}\""))
    };
    let rules = [
        on("every", "* * * * * *"),
        on("manual", "manual"),
        on("unscheduled", "none").replace("schedule = \"none\"\n", ""),
        on("closed", "* * * * * *").replace(
            "action = \"delete\"",
            &format!("action = \"delete\"\nwindow = \"{window}\""),
        ),
    ];
    project.rules("logs.toml", &rules.concat());
    let mut daemon = Daemon::start(&project, "d", &[]);
    let ready = daemon.wait_notice("READY=1", Duration::from_secs(20));
    assert_contains(&ready, "STATUS=running 2 rules on their schedules");
    wait_until(Duration::from_secs(10), "the scheduled run", || {
        sqlite_count(&path, "SELECT count(*) FROM every") == 0
    });
    daemon.wait_log(
        "outside the rule's window; the run waits for it to open",
        Duration::from_secs(5),
    );
    let log = daemon.log();
    assert_contains(&log, "schedule = \"manual\": the daemon does not run it");
    assert_contains(&log, "no schedule, and no default");
    // A few more seconds of runs leave the three alone.
    std::thread::sleep(Duration::from_secs(2));
    for table in ["manual", "unscheduled", "closed"] {
        assert_eq!(
            sqlite_count(&path, &format!("SELECT count(*) FROM {table}")),
            1,
            "{table}"
        );
    }

    // While the stop file exists, no run starts; without it, they go on.
    std::fs::write(project.path().join("stop"), "").unwrap();
    daemon.wait_log("not run, the stop file", Duration::from_secs(5));
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("INSERT INTO every (at) VALUES ('2021-01-01')", [])
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sqlite_count(&path, "SELECT count(*) FROM every"), 1);
    std::fs::remove_file(project.path().join("stop")).unwrap();
    wait_until(
        Duration::from_secs(10),
        "a run after the stop file went",
        || sqlite_count(&path, "SELECT count(*) FROM every") == 0,
    );
    daemon.signal("-TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), 0);
}

/// The daemon exports how many erasure requests are overdue, and carries
/// out open requests on its schedule (after which none is).
#[test]
fn the_daemon_runs_erasure_requests_and_gauges_the_overdue() {
    let db = tempfile::tempdir().unwrap();
    let path = db.path().join("shop.sqlite");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT); INSERT INTO customers VALUES (1, 'jens@example.invalid'), (2, 'karen@example.invalid');")
        .unwrap();
    let port = free_port();
    let config = |schedule: &str| {
        format!(
            "metrics_listen = \"127.0.0.1:{port}\"\nschedule = \"{schedule}\"\nerasure_store = \"shop\"\nerasure_ledger = \"ledger.jsonl\""
        )
    };
    let store = format!(
        "engine = \"sqlite\"\npath = {:?}",
        path.display().to_string()
    );
    // A schedule that does not come round during the test: nothing runs.
    let project = Project::with_store("shop", &store, &config("0 0 3 1 1 *"));
    project.rules(
        "subjects.toml",
        "[[subject]]\nkind = \"customer\"\nidentifiers = [\"email\"]\ndeadline = \"1 month\"\n\n[[subject.table]]\nstore = \"shop\"\ntable = \"customers\"\nmatch = { email = \"email\" }\naction = \"delete\"\n",
    );
    let add = project.glemsel(&[
        "erase",
        "add",
        "--subject",
        "email=jens@example.invalid",
        "--received",
        "2026-01-05",
    ]);
    assert_eq!(code(&add), 0, "{}", text(&add));
    let mut daemon = Daemon::start(&project, "d", &[]);
    daemon.wait_notice("READY=1", Duration::from_secs(20));
    wait_until(Duration::from_secs(10), "the overdue gauge", || {
        scrape(port).contains("glemsel_erasure_requests_overdue 1")
    });
    daemon.signal("-TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), 0);

    let with_store = Project::with_store("shop", &store, &config("* * * * * *"));
    std::fs::copy(with_store.config(), project.config()).unwrap();
    let mut daemon = Daemon::start(&project, "e", &[]);
    daemon.wait_notice("READY=1", Duration::from_secs(20));
    wait_until(Duration::from_secs(20), "the request's run", || {
        sqlite_count(&path, "SELECT count(*) FROM customers") == 1
    });
    wait_until(Duration::from_secs(10), "no overdue request", || {
        scrape(port).contains("glemsel_erasure_requests_overdue 0")
    });
    assert_eq!(
        sqlite_count(&path, "SELECT count(*) FROM customers WHERE id = 2"),
        1
    );
    assert_lacks(&daemon.log(), "jens");
    daemon.signal("-TERM");
    assert_eq!(daemon.exit_code(Duration::from_secs(10)), 0);
}
