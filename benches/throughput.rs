//! How fast glemsel deletes and pseudonymises, against the physical limit
//! (one set-based statement doing the same work) and, on MariaDB, against
//! pt-archiver, with what a concurrent application sees meanwhile.
//!
//! `tests/bench` starts durable servers and runs this with `cargo bench`.
//! `cargo test` runs it at a tiny size (a smoke run): figures from a debug
//! build mean nothing, but every path runs and every result is checked, so
//! the benchmark cannot rot.
//!
//! Sizes: `BENCH_ROWS` (default 2,000,000; half of them due),
//! `BENCH_BIG_ROWS` (10,000,000; 1% due, scattered), `BENCH_MID_ROWS`
//! (1,000,000; for memory against size), `BENCH_LOG_ROWS` (10,000,000; a
//! log partitioned by month, six months of twelve due), `BENCH_REPEATS`
//! (3; medians). `BENCH_SECTIONS` picks sections (`dense`, `uneven`,
//! `skewed`, `sparse`, `partitioned`; all by default); `BENCH_WORK`
//! (`delete` or `pseudonymise`; both by default) picks the dense section's
//! work, so one comparison can run alone.
//! `BENCH_ENGINES` = `postgres,mariadb` by default; `BENCH_LOG` is
//! glemsel's log level (its log is printed).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Kind, Project, TestDb};
use glemsel::report::thousands;
use mysql_async::prelude::Queryable;

/// Data sets and repeats of one benchmark run.
struct Sizes {
    rows: u64,
    big: u64,
    mid: u64,
    /// The log partitioned by month.
    log: u64,
    repeats: usize,
    /// `BENCH_SECTIONS`: the sections to run; all when unset.
    sections: Option<String>,
    /// `BENCH_WORK`: the dense section's work; both when unset.
    work: Option<String>,
}

impl Sizes {
    fn from_env(full: bool) -> Sizes {
        let var = |name: &str, full_default: u64, smoke: u64| -> u64 {
            if !full {
                return smoke;
            }
            std::env::var(name)
                .ok()
                .map(|v| v.replace('_', "").parse().expect("a number"))
                .unwrap_or(full_default)
        };
        Sizes {
            rows: var("BENCH_ROWS", 2_000_000, 20_000),
            big: var("BENCH_BIG_ROWS", 10_000_000, 30_000),
            mid: var("BENCH_MID_ROWS", 1_000_000, 3_000),
            log: var("BENCH_LOG_ROWS", 10_000_000, 12_000),
            repeats: var("BENCH_REPEATS", 3, 1) as usize,
            sections: std::env::var("BENCH_SECTIONS").ok().filter(|_| full),
            work: std::env::var("BENCH_WORK").ok().filter(|_| full),
        }
    }

    /// Whether the section called `name` runs.
    fn runs(&self, name: &str) -> bool {
        self.sections
            .as_ref()
            .is_none_or(|list| list.split(',').any(|s| s.trim() == name))
    }

    /// Whether the dense section runs `way`.
    fn works(&self, way: Way) -> bool {
        let work = match way {
            Way::SetDelete | Way::Delete | Way::PtArchiver => "delete",
            Way::SetUpdate | Way::Pseudonymise => "pseudonymise",
        };
        match self.work.as_deref() {
            None => true,
            Some(w @ ("delete" | "pseudonymise")) => w == work,
            Some(other) => panic!("BENCH_WORK: {other:?} is neither delete nor pseudonymise"),
        }
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test` runs the smoke size.
    let full = std::env::args().any(|a| a == "--bench");
    FULL.set(full).expect("set once");
    let sizes = Sizes::from_env(full);
    let engines = std::env::var("BENCH_ENGINES").unwrap_or_else(|_| "postgres,mariadb".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for engine in engines.split(',') {
            let kind = match engine.trim() {
                "postgres" => Kind::Postgres,
                "mariadb" => Kind::Mariadb,
                other => panic!("BENCH_ENGINES: unknown engine {other:?}"),
            };
            let Some(db) = TestDb::create(kind, "bench").await else {
                continue;
            };
            let mut bench = Bench::new(db, full).await;
            bench.report_header(&sizes).await;
            if sizes.runs("dense") {
                bench.dense(&sizes).await;
            }
            if sizes.runs("uneven") {
                bench.uneven(&sizes).await;
            }
            if sizes.runs("skewed") {
                bench.skewed(&sizes).await;
            }
            if sizes.runs("sparse") {
                bench.sparse_and_memory(&sizes).await;
            }
            if sizes.runs("partitioned") {
                bench.partitioned(&sizes).await;
            }
            println!("machine load at the end: {}", uptime());
            bench.db.drop().await;
        }
    });
}

/// One connection for setup and reference statements.
enum Conn {
    Postgres(tokio_postgres::Client),
    Mariadb(mysql_async::Conn),
}

impl Conn {
    async fn open(db: &TestDb) -> Conn {
        match db.kind {
            Kind::Postgres => Conn::Postgres(common::connect(&db.url).await),
            _ => {
                let mut conn = mysql_async::Conn::from_url(&db.url).await.unwrap();
                conn.query_drop("SET SESSION time_zone = '+00:00'")
                    .await
                    .unwrap();
                Conn::Mariadb(conn)
            }
        }
    }

    async fn exec(&mut self, sql: &str) {
        match self {
            Conn::Postgres(client) => client
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{e}\n{sql}")),
            Conn::Mariadb(conn) => conn
                .query_drop(sql)
                .await
                .unwrap_or_else(|e| panic!("{e}\n{sql}")),
        }
    }

    async fn number(&mut self, sql: &str) -> u64 {
        match self {
            Conn::Postgres(client) => {
                let row = client
                    .query_one(sql, &[])
                    .await
                    .unwrap_or_else(|e| panic!("{e}\n{sql}"));
                row.get::<_, i64>(0) as u64
            }
            Conn::Mariadb(conn) => conn
                .query_first::<u64, _>(sql)
                .await
                .unwrap_or_else(|e| panic!("{e}\n{sql}"))
                .unwrap_or(0),
        }
    }

    async fn text(&mut self, sql: &str) -> String {
        match self {
            Conn::Postgres(client) => client.query_one(sql, &[]).await.unwrap().get(0),
            Conn::Mariadb(conn) => conn.query_first(sql).await.unwrap().unwrap(),
        }
    }
}

/// A measured run of one way of doing the work.
#[derive(Default, Clone)]
struct Sample {
    seconds: f64,
    rows: u64,
    longest_batch_ms: Option<u64>,
    /// glemsel's time in batch transactions, begin to commit.
    batch_seconds: Option<f64>,
    batches: Option<u64>,
    update_p99_ms: Option<f64>,
    /// The slowest update: a client blocked for long sends few updates, so
    /// a stall shows here before it shows in the 99th percentile.
    update_max_ms: Option<f64>,
    peak_rss_kib: Option<u64>,
}

/// The samples of one way over the repeats.
struct Line {
    name: String,
    samples: Vec<Sample>,
}

impl Line {
    fn median_seconds(&self) -> f64 {
        self.median(|s| Some(s.seconds))
            .expect("every sample is timed")
    }

    fn median(&self, get: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        let mut values: Vec<f64> = self.samples.iter().filter_map(get).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    }

    fn rows_per_second(&self) -> f64 {
        self.samples[0].rows as f64 / self.median_seconds()
    }

    /// Rows per second of batch time only, for glemsel.
    fn batch_rows_per_second(&self) -> Option<f64> {
        Some(self.samples[0].rows as f64 / self.median(|s| s.batch_seconds)?)
    }

    fn worst<T: Copy + PartialOrd>(&self, get: impl Fn(&Sample) -> Option<T>) -> Option<T> {
        self.samples
            .iter()
            .filter_map(get)
            .fold(None, |worst, v| match worst {
                Some(w) if w >= v => Some(w),
                _ => Some(v),
            })
    }
}

/// The table every measurement works on, copied fresh from `base_<n>`.
const TABLE: &str = "t";

/// Rows a `pct` percent share of ids is due in: the same ids on both engines.
fn due_condition(id: &str, pct: u32) -> String {
    format!("({id} * 2654435761) % 100 < {pct}")
}

/// Which ids of a data set are due, so the application's load touches only
/// rows that are not (except where every row is due).
#[derive(Debug, Clone, Copy)]
enum Due {
    /// A `pct` percent share, as [`due_condition`] spreads it.
    Share(u32),
    /// The ids above this one.
    After(u64),
    /// The ids up to this one.
    UpTo(u64),
    Every,
}

impl Due {
    fn is_due(self, id: u64) -> bool {
        match self {
            Due::Share(pct) => (id * 2654435761) % 100 < u64::from(pct),
            Due::After(last_not_due) => id > last_not_due,
            Due::UpTo(last_due) => id <= last_due,
            Due::Every => true,
        }
    }
}

struct Bench {
    db: TestDb,
    conn: Conn,
    project: Project,
    full: bool,
}

impl Bench {
    async fn new(db: TestDb, full: bool) -> Bench {
        let conn = Conn::open(&db).await;
        let project = Project::for_db(&db, "bench", "");
        project.rules(
            "bench.toml",
            &format!(
                r#"
[[rule]]
id = "bench-delete"
store = "bench"
table = "{TABLE}"
category = "test"
after = "created_at"
retain = "365 days"
action = "delete"

[[rule]]
id = "bench-pseudonymise"
store = "bench"
table = "{TABLE}"
category = "test"
after = "created_at"
retain = "365 days"
action = "pseudonymise"
columns = {{ name = "hmac", email = "hmac_email" }}
"#
            ),
        );
        Bench {
            db,
            conn,
            project,
            full,
        }
    }

    fn engine_name(&self) -> &'static str {
        match self.db.kind {
            Kind::Postgres => "PostgreSQL",
            _ => "MariaDB",
        }
    }

    async fn report_header(&mut self, sizes: &Sizes) {
        let version = self.conn.text("SELECT version()").await;
        let version: String = version.split(" on ").next().unwrap_or(&version).into();
        println!(
            "\n== {} ({version}), {} build, median of {}, the order of the ways alternating",
            self.engine_name(),
            if self.full { "release" } else { "smoke: debug" },
            sizes.repeats
        );
        let settings = match self.db.kind {
            Kind::Postgres => {
                self.conn
                    .text(
                        "SELECT string_agg(name || ' = ' || setting || COALESCE(' ' || unit, ''), ', ' ORDER BY name) \
                         FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', \
                         'shared_buffers', 'max_wal_size', 'wal_level')",
                    )
                    .await
            }
            _ => {
                self.conn
                    .text(
                        "SELECT CONCAT('innodb_flush_log_at_trx_commit = ', @@innodb_flush_log_at_trx_commit, \
                         ', log_bin = ', @@log_bin, ', binlog_format = ', @@binlog_format, \
                         ', sync_binlog = ', @@sync_binlog, ', innodb_buffer_pool_size = ', \
                         @@innodb_buffer_pool_size DIV 1048576, ' MiB, innodb_log_file_size = ', \
                         @@innodb_log_file_size DIV 1048576, ' MiB')",
                    )
                    .await
            }
        };
        println!("server: {settings}");
        println!("machine load at the start: {}", uptime());
    }

    /// The cache the server keeps table data in, in bytes.
    async fn cache_bytes(&mut self) -> u64 {
        match self.db.kind {
            Kind::Postgres => {
                self.conn
                    .number("SELECT (setting::bigint * 8192)::bigint FROM pg_settings WHERE name = 'shared_buffers'")
                    .await
            }
            _ => self.conn.number("SELECT @@innodb_buffer_pool_size").await,
        }
    }

    /// Says whether the server's cache holds the table the measurements
    /// work on (data and indexes), at its largest.
    async fn report_cache(&mut self) {
        let size = match self.db.kind {
            Kind::Postgres => {
                self.conn
                    .number(&format!("SELECT pg_total_relation_size('{TABLE}')::bigint"))
                    .await
            }
            _ => {
                self.conn
                    .number(&format!(
                        "SELECT CAST(data_length + index_length AS UNSIGNED) FROM information_schema.tables \
                         WHERE table_schema = DATABASE() AND table_name = '{TABLE}'"
                    ))
                    .await
            }
        };
        let cache = self.cache_bytes().await;
        println!(
            "  the table: {} MiB; the server's cache: {} MiB, {}",
            size / 1_048_576,
            cache / 1_048_576,
            if size <= cache {
                "it holds the table (warm: copied just before)"
            } else {
                "TOO SMALL to hold the table"
            }
        );
    }

    /// `base_<rows>_<pct>`: the data every copy starts from.
    async fn create_base(&mut self, rows: u64, pct: u32) -> String {
        let base = format!("base_{rows}_{pct}");
        self.create_table(&base).await;
        self.fill(&base, pct, 1, rows, "n").await;
        base
    }

    /// `rows / 100` keys a thousand apart, then `rows` consecutive ones: the
    /// key density changes a thousandfold where the dense stretch begins.
    async fn create_uneven_base(&mut self, rows: u64, pct: u32) -> (String, u64) {
        let base = format!("uneven_{rows}_{pct}");
        let sparse = rows / 100;
        self.create_table(&base).await;
        self.fill(&base, pct, 1, sparse, "n * 1000").await;
        let dense_from = sparse * 1000;
        self.fill(&base, pct, 1, rows, &format!("{dense_from} + n"))
            .await;
        (base, dense_from)
    }

    async fn create_table(&mut self, name: &str) {
        let engine = if self.db.kind == Kind::Postgres {
            ""
        } else {
            " ENGINE=InnoDB"
        };
        let timestamp = if self.db.kind == Kind::Postgres {
            "timestamp"
        } else {
            "datetime"
        };
        self.conn
            .exec(&format!(
                "DROP TABLE IF EXISTS {name};
                 CREATE TABLE {name} (id bigint PRIMARY KEY, created_at {timestamp} NOT NULL,
                   name varchar(100) NOT NULL, email varchar(200) NOT NULL, note varchar(200)){engine}"
            ))
            .await;
    }

    /// Rows with `id` = `id_of(n)` for n in `from..=to`; a `pct` share due.
    async fn fill(&mut self, table: &str, pct: u32, from: u64, to: u64, id_of: &str) {
        self.fill_where(table, &due_condition("id", pct), from, to, id_of)
            .await;
    }

    /// Rows with `id` = `id_of(n)` for n in `from..=to`; those where `due`
    /// (a condition on `id`) holds are due.
    async fn fill_where(&mut self, table: &str, due: &str, from: u64, to: u64, id_of: &str) {
        let sql = match self.db.kind {
            Kind::Postgres => format!(
                "INSERT INTO {table} SELECT id,
                   CASE WHEN {due} THEN timestamp '2015-01-01' + n * interval '1 second'
                        ELSE localtimestamp - interval '1 day' END,
                   'Name ' || id, 'user' || id || '@example.invalid', 'note ' || id
                   FROM (SELECT n, {id_of} AS id FROM generate_series({from}, {to}) n) ids"
            ),
            _ => format!(
                "INSERT INTO {table} SELECT id,
                   IF({due}, '2015-01-01' + INTERVAL n SECOND, NOW() - INTERVAL 1 DAY),
                   CONCAT('Name ', id), CONCAT('user', id, '@example.invalid'),
                   CONCAT('note ', id)
                   FROM (SELECT seq AS n, {id_of} AS id FROM seq_{from}_to_{to}) ids",
                id_of = id_of.replace('n', "seq")
            ),
        };
        self.conn.exec(&sql).await;
    }

    /// A fresh copy of `base` as the table, settled and in the cache.
    async fn fresh_table(&mut self, base: &str) {
        match self.db.kind {
            Kind::Postgres => {
                self.conn
                    .exec(&format!(
                        "DROP TABLE IF EXISTS {TABLE};
                         CREATE TABLE {TABLE} (LIKE {base} INCLUDING ALL);
                         INSERT INTO {TABLE} SELECT * FROM {base} ORDER BY id"
                    ))
                    .await;
                self.conn.exec(&format!("VACUUM (ANALYZE) {TABLE}")).await;
                self.conn.exec("CHECKPOINT").await;
            }
            _ => {
                self.conn
                    .exec(&format!(
                        "DROP TABLE IF EXISTS {TABLE};
                         CREATE TABLE {TABLE} LIKE {base};
                         INSERT INTO {TABLE} SELECT * FROM {base} ORDER BY id;
                         ANALYZE TABLE {TABLE}"
                    ))
                    .await;
                self.wait_for_purge().await;
            }
        }
        self.conn
            .number(&format!("SELECT COUNT(*) FROM {TABLE}"))
            .await;
    }

    /// InnoDB purges deleted rows in the background; a measurement that
    /// starts while it works measures the purge of the one before.
    async fn wait_for_purge(&mut self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(120) {
            let history = self
                .conn
                .number(
                    "SELECT COALESCE(MAX(count), 0) FROM information_schema.innodb_metrics \
                     WHERE name = 'trx_rseg_history_len'",
                )
                .await;
            if history < 1000 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The bound glemsel computes for `retain = "365 days"`, as SQL.
    fn bound(&self) -> &'static str {
        match self.db.kind {
            Kind::Postgres => "localtimestamp - interval '365 days'",
            _ => "NOW() - INTERVAL 365 DAY",
        }
    }

    async fn due_rows(&mut self, table: &str) -> u64 {
        let sql = format!(
            "SELECT COUNT(*) FROM {table} WHERE created_at < {}",
            self.bound()
        );
        self.conn.number(&sql).await
    }

    /// An application updating rows that are not due, one at a time, while
    /// a measurement runs.
    async fn start_load(&mut self, due: Due) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(update_loop(
            Conn::open(&self.db).await,
            self.conn
                .number(&format!("SELECT COALESCE(MAX(id), 1) FROM {TABLE}"))
                .await,
            due,
            stop.clone(),
        ));
        Load { stop, task }
    }

    async fn set_based(&mut self, sql: &str, expected: u64, due: Due) -> Sample {
        let load = self.start_load(due).await;
        let started = Instant::now();
        self.conn.exec(sql).await;
        let seconds = started.elapsed().as_secs_f64();
        let (update_p99_ms, update_max_ms) = load.stop().await;
        self.check_rows_left().await;
        Sample {
            seconds,
            rows: expected,
            update_p99_ms,
            update_max_ms,
            ..Sample::default()
        }
    }

    fn set_based_delete(&self) -> String {
        format!("DELETE FROM {TABLE} WHERE created_at < {}", self.bound())
    }

    /// The same tokens as glemsel's, computed by one UPDATE.
    fn set_based_pseudonymise(&self) -> String {
        let (inner, outer) = common::key_pad_blocks();
        let (inner, outer) = (hex::encode(inner), hex::encode(outer));
        match self.db.kind {
            Kind::Postgres => {
                let token = |col: &str, len: usize| {
                    format!(
                        "'psn_' || left(encode(sha256('\\x{outer}'::bytea || sha256('\\x{inner}'::bytea || convert_to({col}, 'UTF8'))), 'hex'), {len})"
                    )
                };
                format!(
                    "UPDATE {TABLE} SET name = {}, email = {} || '@invalid' WHERE created_at < {}",
                    token("name", 64),
                    token("email", 64),
                    self.bound()
                )
            }
            _ => {
                let token = |col: &str, len: usize| {
                    format!(
                        "CONCAT('psn_', LEFT(SHA2(CONCAT(UNHEX('{outer}'), UNHEX(SHA2(CONCAT(UNHEX('{inner}'), CONVERT({col} USING utf8mb4)), 256))), 256), {len}))"
                    )
                };
                format!(
                    "UPDATE {TABLE} SET name = {}, email = CONCAT({}, '@invalid') WHERE created_at < {}",
                    token("name", 64),
                    token("email", 64),
                    self.bound()
                )
            }
        }
    }

    /// After a delete: exactly the rows that were not due are left; after a
    /// pseudonymise: exactly the due ones carry tokens.
    async fn check_rows_left(&mut self) {
        let old = format!("created_at < {}", self.bound());
        let left = self
            .conn
            .number(&format!("SELECT COUNT(*) FROM {TABLE} WHERE {old}"))
            .await;
        let tokens = self
            .conn
            .number(&format!(
                "SELECT COUNT(*) FROM {TABLE} WHERE {old} AND name LIKE 'psn%' AND email LIKE 'psn%@invalid'"
            ))
            .await;
        assert!(
            left == 0 || tokens == left,
            "{left} due rows left, {tokens} of them pseudonymised"
        );
    }

    /// Runs `glemsel run --rule <rule>` while an application updates rows
    /// that are not due, one at a time.
    async fn glemsel(&mut self, rule: &str, expected: u64, due: Due) -> Sample {
        let load = self.start_load(due).await;
        self.glemsel_with_load(rule, expected, load).await
    }

    /// Runs `glemsel run --rule <rule>` while `load` runs.
    async fn glemsel_with_load(&mut self, rule: &str, expected: u64, load: Load) -> Sample {
        let started = Instant::now();
        // Waited for by wait4 below, which also reports its peak memory.
        #[allow(clippy::zombie_processes)]
        let mut child = Command::new(env!("CARGO_BIN_EXE_glemsel"))
            .args(["run", "--rule", rule, "--format", "json"])
            .current_dir(self.project.path())
            .env_remove("GLEMSEL_CONFIG")
            .env(
                "GLEMSEL_LOG",
                std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start glemsel");
        let pid = child.id() as libc::pid_t;
        // Drained while it runs: a full pipe would stop it.
        let drain = |pipe: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || std::io::read_to_string(pipe).unwrap())
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let (status, rss_kib) = tokio::task::spawn_blocking(move || wait_with_rusage(pid))
            .await
            .unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let (update_p99_ms, update_max_ms) = load.stop().await;
        let output = stdout.join().unwrap();
        let errors = stderr.join().unwrap();
        if std::env::var_os("BENCH_LOG").is_some() {
            eprintln!("{errors}");
        }
        assert_eq!(status, 0, "glemsel run {rule}:\n{output}\n{errors}");
        let report: serde_json::Value = serde_json::from_str(&output).unwrap();
        let rule_report = &report["rules"][0];
        assert_eq!(rule_report["status"], "completed", "{output}");
        assert_eq!(rule_report["rows_changed"], expected, "{output}");
        self.check_rows_left().await;
        let audited = self
            .conn
            .number(&format!(
                "SELECT CAST(COALESCE(SUM(rows_affected), 0) AS {}) FROM glemsel_audit \
                 WHERE rule_id = '{rule}' AND event = 'batch' AND run_id = \
                 (SELECT run_id FROM glemsel_audit WHERE rule_id = '{rule}' ORDER BY seq DESC LIMIT 1)",
                if self.db.kind == Kind::Postgres { "bigint" } else { "UNSIGNED" }
            ))
            .await;
        assert_eq!(audited, expected, "the audit rows count every changed row");
        Sample {
            seconds,
            rows: expected,
            longest_batch_ms: rule_report["longest_batch_ms"].as_u64(),
            batch_seconds: rule_report["batch_seconds"].as_f64(),
            batches: rule_report["batches"].as_u64(),
            update_p99_ms,
            update_max_ms,
            peak_rss_kib: Some(rss_kib),
        }
    }

    async fn first_token(&mut self) -> String {
        self.conn
            .text(&format!(
                "SELECT CONCAT(name, ' ', email) FROM {TABLE} WHERE created_at < {} ORDER BY id LIMIT 1",
                self.bound()
            ))
            .await
    }

    /// pt-archiver purging in bulk, as its users run it.
    async fn pt_archiver(&mut self, expected: u64, due: Due) -> Option<Sample> {
        if Command::new("pt-archiver")
            .arg("--version")
            .output()
            .is_err()
        {
            common::missing("pt-archiver is not installed (tests/run installs percona-toolkit)");
            return None;
        }
        let opts = mysql_async::Opts::from_url(&self.db.url).unwrap();
        let dsn = format!(
            "h={},P={},u={},p={},D={},t={TABLE}",
            opts.ip_or_hostname(),
            opts.tcp_port(),
            opts.user().unwrap_or_default(),
            opts.pass().unwrap_or_default(),
            self.db.name
        );
        let load = self.start_load(due).await;
        let started = Instant::now();
        let output = Command::new("pt-archiver")
            .args(["--source", &dsn, "--purge", "--where"])
            .arg(format!("created_at < {}", self.bound()))
            .args([
                "--limit",
                "1000",
                "--commit-each",
                "--bulk-delete",
                "--no-check-charset",
            ])
            .output()
            .expect("run pt-archiver");
        let seconds = started.elapsed().as_secs_f64();
        let (update_p99_ms, update_max_ms) = load.stop().await;
        assert!(
            output.status.success(),
            "pt-archiver: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.check_rows_left().await;
        Some(Sample {
            seconds,
            rows: expected,
            update_p99_ms,
            update_max_ms,
            ..Sample::default()
        })
    }

    /// Half the rows due, scattered: delete and pseudonymise, each way.
    async fn dense(&mut self, sizes: &Sizes) {
        let base = self.create_base(sizes.rows, 50).await;
        let due = sizes.rows / 2;
        let mut lines: Vec<Line> = Vec::new();
        let add = |lines: &mut Vec<Line>, name: &str, sample: Sample| match lines
            .iter_mut()
            .find(|l| l.name == name)
        {
            Some(line) => line.samples.push(sample),
            None => lines.push(Line {
                name: name.into(),
                samples: vec![sample],
            }),
        };
        let mut reference = None;
        for repeat in 0..sizes.repeats {
            // Every other repeat in the opposite order, so a machine that
            // gets busier or quieter favours no way.
            let mut ways = vec![
                Way::SetDelete,
                Way::Delete,
                Way::SetUpdate,
                Way::Pseudonymise,
            ];
            if self.db.kind == Kind::Mariadb {
                ways.insert(2, Way::PtArchiver);
            }
            ways.retain(|&way| sizes.works(way));
            if repeat % 2 == 1 {
                ways.reverse();
            }
            let ways_first = ways.first().copied();
            for way in ways {
                self.fresh_table(&base).await;
                if repeat == 0 && ways_first == Some(way) {
                    self.report_cache().await;
                }
                let sample = match way {
                    Way::SetDelete => {
                        self.set_based(&self.set_based_delete(), due, Due::Share(50))
                            .await
                    }
                    Way::Delete => self.glemsel("bench-delete", due, Due::Share(50)).await,
                    Way::PtArchiver => match self.pt_archiver(due, Due::Share(50)).await {
                        Some(sample) => sample,
                        None => continue,
                    },
                    Way::SetUpdate => {
                        self.set_based(&self.set_based_pseudonymise(), due, Due::Share(50))
                            .await
                    }
                    Way::Pseudonymise => {
                        self.glemsel("bench-pseudonymise", due, Due::Share(50))
                            .await
                    }
                };
                if matches!(way, Way::SetUpdate | Way::Pseudonymise) {
                    // Both do the same work: the same tokens.
                    let token = self.first_token().await;
                    assert_eq!(reference.get_or_insert_with(|| token.clone()), &token);
                }
                add(&mut lines, way.name(), sample);
            }
        }
        println!(
            "{} rows, {} due (50%, scattered)",
            thousands(sizes.rows),
            thousands(due)
        );
        let (delete, pseudonymise) = match self.db.kind {
            Kind::Postgres => (0.9, 0.9),
            _ => (0.85, 0.9),
        };
        print_lines(
            &lines,
            &[
                ("glemsel delete", "set-based DELETE", delete),
                (
                    "glemsel pseudonymise",
                    "set-based UPDATE (HMAC)",
                    pseudonymise,
                ),
                (
                    "glemsel delete",
                    "pt-archiver --bulk-delete --limit 1000",
                    3.0,
                ),
            ],
        );
        self.conn.exec(&format!("DROP TABLE {base}")).await;
    }

    /// Keys a thousand apart, then consecutive ones: batches sized on the
    /// sparse stretch must not carry over into the dense one.
    async fn uneven(&mut self, sizes: &Sizes) {
        let (base, dense_from) = self.create_uneven_base(sizes.mid, 50).await;
        let due = self.due_rows(&base).await;
        let mut line = Line {
            name: "glemsel delete".into(),
            samples: Vec::new(),
        };
        for _ in 0..sizes.repeats {
            self.fresh_table(&base).await;
            line.samples
                .push(self.glemsel("bench-delete", due, Due::Share(50)).await);
        }
        println!(
            "{} keys 1,000 apart, then {} consecutive keys from {}; {} due",
            thousands(sizes.mid / 100),
            thousands(sizes.mid),
            thousands(dense_from + 1),
            thousands(due)
        );
        print_lines(&[line], &[]);
        self.conn.exec(&format!("DROP TABLE {base}")).await;
    }

    /// The shapes that made long transactions: the first 80% of the keys not
    /// due and the last 20% due (windows grow over the first part), and a
    /// re-run where the first 80% is already pseudonymised. The longest
    /// transaction must stay short on both.
    async fn skewed(&mut self, sizes: &Sizes) {
        let rows = sizes.mid;
        let tail_from = rows * 4 / 5;
        let base = format!("skewed_{rows}");
        self.create_table(&base).await;
        self.fill_where(&base, &format!("id > {tail_from}"), 1, rows, "n")
            .await;
        let due = self.due_rows(&base).await;
        let mut lines = Vec::new();
        for (name, rule) in [
            ("glemsel pseudonymise, due tail", "bench-pseudonymise"),
            ("glemsel delete, due tail", "bench-delete"),
        ] {
            let mut line = Line {
                name: name.into(),
                samples: Vec::new(),
            };
            for _ in 0..sizes.repeats {
                self.fresh_table(&base).await;
                line.samples
                    .push(self.glemsel(rule, due, Due::After(tail_from)).await);
            }
            lines.push(line);
        }
        self.conn.exec(&format!("DROP TABLE {base}")).await;

        // In key order, as a table whose keys follow time is: the first
        // 20% due, the rest not. No work past the last due row.
        let head_to = rows / 5;
        let base = format!("due_head_{rows}");
        self.create_table(&base).await;
        self.fill_where(&base, &format!("id <= {head_to}"), 1, rows, "n")
            .await;
        let due = self.due_rows(&base).await;
        for (name, rule) in [
            ("glemsel pseudonymise, due head", "bench-pseudonymise"),
            ("glemsel delete, due head", "bench-delete"),
        ] {
            let mut line = Line {
                name: name.into(),
                samples: Vec::new(),
            };
            for _ in 0..sizes.repeats {
                self.fresh_table(&base).await;
                line.samples
                    .push(self.glemsel(rule, due, Due::UpTo(head_to)).await);
            }
            lines.push(line);
        }
        self.conn.exec(&format!("DROP TABLE {base}")).await;

        // Every row due, the first 80% already pseudonymised (by the
        // set-based statement, which writes the same tokens).
        let base = format!("done_prefix_{rows}");
        self.create_table(&base).await;
        self.fill_where(&base, "1 = 1", 1, rows, "n").await;
        let mut line = Line {
            name: "glemsel pseudonymise, 80% already done".into(),
            samples: Vec::new(),
        };
        for _ in 0..sizes.repeats {
            self.fresh_table(&base).await;
            let prefix = format!("{} AND id <= {tail_from}", self.set_based_pseudonymise());
            self.conn.exec(&prefix).await;
            line.samples.push(
                self.glemsel("bench-pseudonymise", rows - tail_from, Due::Every)
                    .await,
            );
        }
        lines.push(line);
        self.conn.exec(&format!("DROP TABLE {base}")).await;
        println!(
            "{} rows: the last 20% due; the first 20% due; every row due and the first 80% already pseudonymised",
            thousands(rows)
        );
        print_lines(&lines, &[]);
    }

    /// A log partitioned by month over twelve months, the first six wholly
    /// due, the seventh straddling the bound: the set-based `DELETE`
    /// against glemsel, which drops the six whole and deletes the
    /// straddling month's due rows; then the table's size, which shows the
    /// bloat each leaves (PostgreSQL: the size of every partition; MariaDB:
    /// their `data_length`).
    async fn partitioned(&mut self, sizes: &Sizes) {
        use chrono::{Datelike, Months, NaiveDate};
        let rows = sizes.log;
        let bound = chrono::Utc::now().date_naive() - chrono::Days::new(365);
        let first =
            NaiveDate::from_ymd_opt(bound.year(), bound.month(), 1).unwrap() - Months::new(6);
        let starts: Vec<NaiveDate> = (0..=12).map(|m| first + Months::new(m)).collect();
        let span = (starts[12] - starts[0]).num_seconds() as u64;
        let base = "plog_base";
        self.create_table(base).await;
        let sql = match self.db.kind {
            Kind::Postgres => format!(
                "INSERT INTO {base} SELECT n, timestamp '{first}' + (n::bigint * {span} / {rows}) * interval '1 second',
                   'Name ' || n, 'user' || n || '@example.invalid', 'note ' || n
                   FROM generate_series(1, {rows}) n"
            ),
            _ => format!(
                "INSERT INTO {base} SELECT seq, '{first}' + INTERVAL (seq * {span} DIV {rows}) SECOND,
                   CONCAT('Name ', seq), CONCAT('user', seq, '@example.invalid'), CONCAT('note ', seq)
                   FROM seq_1_to_{rows}"
            ),
        };
        self.conn.exec(&sql).await;
        // glemsel's bound is in the store's zone, this benchmark's in the
        // session's: no row within a day of it, so both count the same.
        let (day, days) = match self.db.kind {
            Kind::Postgres => ("interval '1 day'", "interval '3 days'"),
            _ => ("INTERVAL 1 DAY", "INTERVAL 3 DAY"),
        };
        let bound = self.bound();
        self.conn
            .exec(&format!(
                "UPDATE {base} SET created_at = created_at + {days} \
                 WHERE created_at >= {bound} - {day} AND created_at < {bound} + {day}"
            ))
            .await;
        let due = self.due_rows(base).await;
        // The bound moves with the day of the month the benchmark runs on:
        // the due rows of the straddling month are deleted row by row, by
        // glemsel and by the set-based DELETE alike.
        let whole = self
            .conn
            .number(&format!(
                "SELECT COUNT(*) FROM {base} WHERE created_at < '{}'",
                starts[6]
            ))
            .await;
        // Ids follow time: the application updates rows past the due ones.
        let first_not_due = due + 1;
        let mut set = Line {
            name: "set-based DELETE".into(),
            samples: Vec::new(),
        };
        let mut ours = Line {
            name: "glemsel delete (drops partitions)".into(),
            samples: Vec::new(),
        };
        let mut sizes_after = (0, 0, 0);
        for repeat in 0..sizes.repeats {
            for ours_first in [repeat % 2 == 1, repeat % 2 == 0] {
                self.fresh_partitioned_table(base, &starts).await;
                let before = self.partitioned_size().await;
                let load = self.start_load(Due::UpTo(first_not_due - 1)).await;
                if ours_first {
                    let sample = self.glemsel_with_load("bench-delete", due, load).await;
                    ours.samples.push(sample);
                    sizes_after.1 = self.partitioned_size().await;
                } else {
                    let started = Instant::now();
                    self.conn.exec(&self.set_based_delete()).await;
                    let seconds = started.elapsed().as_secs_f64();
                    let (update_p99_ms, update_max_ms) = load.stop().await;
                    self.check_rows_left().await;
                    set.samples.push(Sample {
                        seconds,
                        rows: due,
                        update_p99_ms,
                        update_max_ms,
                        ..Sample::default()
                    });
                    sizes_after.2 = self.partitioned_size().await;
                }
                sizes_after.0 = before;
            }
        }
        let partitions_left = self
            .conn
            .number(&match self.db.kind {
                Kind::Postgres => format!(
                    "SELECT count(*) FROM pg_inherits WHERE inhparent = '{TABLE}'::regclass"
                ),
                _ => format!(
                    "SELECT COUNT(*) FROM information_schema.PARTITIONS \
                     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{TABLE}'"
                ),
            })
            .await;
        self.conn.exec(&format!("DROP TABLE {base}")).await;
        println!(
            "{} rows partitioned by month over 12 months, {} due: 6 months whole ({}) and {} of the month that straddles the bound",
            thousands(rows),
            thousands(due),
            thousands(whole),
            thousands(due - whole)
        );
        print_lines(
            &[set, ours],
            &[(
                "glemsel delete (drops partitions)",
                "set-based DELETE",
                50.0,
            )],
        );
        let what = match self.db.kind {
            Kind::Postgres => "size of its partitions (pg_total_relation_size)",
            _ => "data_length of its partitions",
        };
        println!(
            "  the table's {what}: {} MiB before; {} MiB after glemsel ({} partitions left); {} MiB after the set-based DELETE",
            sizes_after.0 / 1_048_576,
            sizes_after.1 / 1_048_576,
            partitions_left,
            sizes_after.2 / 1_048_576
        );
    }

    /// The table, partitioned by month from `starts` (plus a catch-all),
    /// filled from `base`, settled and in the cache.
    async fn fresh_partitioned_table(&mut self, base: &str, starts: &[chrono::NaiveDate]) {
        let columns = "id bigint NOT NULL, created_at {ts} NOT NULL, name varchar(100) NOT NULL, \
                       email varchar(200) NOT NULL, note varchar(200), PRIMARY KEY (id, created_at)";
        match self.db.kind {
            Kind::Postgres => {
                let mut sql = format!(
                    "DROP TABLE IF EXISTS {TABLE};
                     CREATE TABLE {TABLE} ({}) PARTITION BY RANGE (created_at);
                     CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT;",
                    columns.replace("{ts}", "timestamp")
                );
                for (m, pair) in starts.windows(2).enumerate() {
                    sql.push_str(&format!(
                        "CREATE TABLE {TABLE}_{m:02} PARTITION OF {TABLE} FOR VALUES FROM ('{}') TO ('{}');",
                        pair[0], pair[1]
                    ));
                }
                sql.push_str(&format!(
                    "INSERT INTO {TABLE} SELECT * FROM {base} ORDER BY id"
                ));
                self.conn.exec(&sql).await;
                self.conn.exec(&format!("VACUUM (ANALYZE) {TABLE}")).await;
                self.conn.exec("CHECKPOINT").await;
            }
            _ => {
                let mut parts = vec![format!(
                    "PARTITION p_old VALUES LESS THAN ('{}')",
                    starts[0]
                )];
                for (m, start) in starts[1..].iter().enumerate() {
                    parts.push(format!("PARTITION p{m:02} VALUES LESS THAN ('{start}')"));
                }
                parts.push("PARTITION p_max VALUES LESS THAN (MAXVALUE)".into());
                self.conn
                    .exec(&format!(
                        "DROP TABLE IF EXISTS {TABLE};
                         CREATE TABLE {TABLE} ({}) ENGINE=InnoDB PARTITION BY RANGE COLUMNS (created_at) ({});
                         INSERT INTO {TABLE} SELECT * FROM {base} ORDER BY id;
                         ANALYZE TABLE {TABLE}",
                        columns.replace("{ts}", "datetime"),
                        parts.join(", ")
                    ))
                    .await;
                self.wait_for_purge().await;
            }
        }
    }

    /// The partitioned table's size in bytes, all partitions.
    async fn partitioned_size(&mut self) -> u64 {
        match self.db.kind {
            Kind::Postgres => {
                self.conn
                    .number(&format!(
                        "SELECT COALESCE(sum(pg_total_relation_size(inhrelid)), 0)::bigint \
                         FROM pg_inherits WHERE inhparent = '{TABLE}'::regclass"
                    ))
                    .await
            }
            _ => {
                self.conn.exec(&format!("ANALYZE TABLE {TABLE}")).await;
                self.conn
                    .number(&format!(
                        "SELECT CAST(COALESCE(SUM(DATA_LENGTH), 0) AS UNSIGNED) FROM information_schema.PARTITIONS \
                         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{TABLE}'"
                    ))
                    .await
            }
        }
    }

    /// 1% due, scattered, in a large table: the run must not read the table
    /// once per batch, and its memory must not grow with the table.
    async fn sparse_and_memory(&mut self, sizes: &Sizes) {
        let mut rss = Vec::new();
        for rows in [sizes.mid, sizes.big] {
            let base = self.create_base(rows, 1).await;
            let due = self.due_rows(&base).await;
            let mut lines = Vec::new();
            if rows == sizes.big {
                let mut set = Line {
                    name: "set-based DELETE".into(),
                    samples: Vec::new(),
                };
                let mut ours = Line {
                    name: "glemsel delete".into(),
                    samples: Vec::new(),
                };
                for repeat in 0..sizes.repeats {
                    for ours_first in [repeat % 2 == 1, repeat % 2 == 0] {
                        self.fresh_table(&base).await;
                        if repeat == 0 && !ours_first {
                            self.report_cache().await;
                        }
                        if ours_first {
                            ours.samples
                                .push(self.glemsel("bench-delete", due, Due::Share(1)).await);
                        } else {
                            set.samples.push(
                                self.set_based(&self.set_based_delete(), due, Due::Share(1))
                                    .await,
                            );
                        }
                    }
                }
                rss.push((rows, ours.worst(|s| s.peak_rss_kib).unwrap()));
                lines.push(set);
                lines.push(ours);
                println!(
                    "{} rows, {} due (1%, scattered)",
                    thousands(rows),
                    thousands(due)
                );
                // Within 1.5x of the set-based statement's time.
                print_lines(&lines, &[("glemsel delete", "set-based DELETE", 1.0 / 1.5)]);
            } else {
                self.fresh_table(&base).await;
                let sample = self.glemsel("bench-delete", due, Due::Share(1)).await;
                rss.push((rows, sample.peak_rss_kib.unwrap()));
            }
            self.conn.exec(&format!("DROP TABLE {base}")).await;
        }
        let figures: Vec<String> = rss
            .iter()
            .map(|(rows, kib)| format!("{} MiB at {} rows", mib(*kib), thousands(*rows)))
            .collect();
        // Flat: ten times the rows may not cost a tenth more memory (plus
        // a MiB for the allocator's moods).
        let flat = rss[1].1 <= rss[0].1 + rss[0].1 / 10 + 1024 && rss[1].1 <= PEAK_RSS_KIB;
        println!(
            "peak RSS of glemsel run: {} (flat and <= {} MiB: {})",
            figures.join(", "),
            PEAK_RSS_KIB / 1024,
            verdict(flat)
        );
    }
}

/// The ways the dense data set is worked on, each from a fresh table.
#[derive(Clone, Copy, PartialEq)]
enum Way {
    SetDelete,
    Delete,
    PtArchiver,
    SetUpdate,
    Pseudonymise,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::SetDelete => "set-based DELETE",
            Way::Delete => "glemsel delete",
            Way::PtArchiver => "pt-archiver --bulk-delete --limit 1000",
            Way::SetUpdate => "set-based UPDATE (HMAC)",
            Way::Pseudonymise => "glemsel pseudonymise",
        }
    }
}

/// The machine's load, as `uptime` says it: other work on the machine
/// makes every figure noisier.
fn uptime() -> String {
    Command::new("uptime")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The application's update loop, running.
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Duration>>,
}

impl Load {
    /// Stops the loop; the 99th percentile and the maximum of its update
    /// latencies, in milliseconds.
    async fn stop(self) -> (Option<f64>, Option<f64>) {
        self.stop.store(true, Ordering::Relaxed);
        let latencies = self.task.await.unwrap();
        (
            percentile(latencies.clone(), 0.99),
            percentile(latencies, 1.0),
        )
    }
}

/// Updates random rows that are not due, one per statement, until told to
/// stop; returns each statement's latency.
async fn update_loop(
    mut conn: Conn,
    last_id: u64,
    due: Due,
    stop: Arc<AtomicBool>,
) -> Vec<Duration> {
    use rand::{Rng, SeedableRng};
    let mut latencies = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(last_id);
    while !stop.load(Ordering::Relaxed) {
        let id = loop {
            let id: u64 = rng.random_range(1..=last_id);
            if !due.is_due(id) || matches!(due, Due::Every) {
                break id;
            }
        };
        let sql = format!("UPDATE {TABLE} SET note = 'touched' WHERE id = {id}");
        let started = Instant::now();
        conn.exec(&sql).await;
        latencies.push(started.elapsed());
        // An application's pace, not a second full-speed writer.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    latencies
}

fn percentile(mut values: Vec<Duration>, p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort();
    let index = ((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1;
    Some(values[index].as_secs_f64() * 1000.0)
}

/// Waits for a child and returns its exit code and peak RSS (KiB).
fn wait_with_rusage(pid: libc::pid_t) -> (i32, u64) {
    let mut status = 0;
    // SAFETY: rusage is plain data, filled by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not yet waited for.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage.ru_maxrss as u64)
}

/// Limits on every glemsel run: no transaction long enough to stall an
/// application, which meanwhile sees no stall, in little memory.
const LONGEST_TXN_MS: u64 = 200;
const UPDATE_P99_MS: f64 = 20.0;
const PEAK_RSS_KIB: u64 = 32 * 1024;

/// Set by `cargo bench`: a smoke run's figures (debug build, tiny tables)
/// say nothing about the targets.
static FULL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn verdict(met: bool) -> &'static str {
    match (FULL.get(), met) {
        (Some(true), true) => "met",
        (Some(true), false) => "MISSED",
        _ => "not judged in a smoke run",
    }
}

fn print_lines(lines: &[Line], ratios: &[(&str, &str, f64)]) {
    println!(
        "  {:<40} {:>12} {:>10} {:>10} {:>8} {:>12} {:>12} {:>12} {:>10}",
        "",
        "rows/s",
        "seconds",
        "in batches",
        "batches",
        "longest txn",
        "update p99",
        "update max",
        "peak RSS"
    );
    for line in lines {
        let optional = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "  {:<40} {:>12} {:>10.3} {:>10} {:>8} {:>12} {:>12} {:>12} {:>10}",
            line.name,
            thousands(line.rows_per_second() as u64),
            line.median_seconds(),
            optional(line.median(|s| s.batch_seconds).map(|s| format!("{s:.3}"))),
            optional(
                line.median(|s| s.batches.map(|b| b as f64))
                    .map(|b| format!("{b:.0}"))
            ),
            optional(
                line.worst(|s| s.longest_batch_ms)
                    .map(|ms| format!("{ms} ms"))
            ),
            optional(
                line.worst(|s| s.update_p99_ms)
                    .map(|ms| format!("{ms:.1} ms"))
            ),
            optional(
                line.worst(|s| s.update_max_ms)
                    .map(|ms| format!("{ms:.1} ms"))
            ),
            optional(
                line.worst(|s| s.peak_rss_kib)
                    .map(|kib| format!("{} MiB", mib(kib)))
            ),
        );
    }
    for (ours, theirs, target) in ratios {
        let find = |name: &str| lines.iter().find(|l| l.name == name);
        if let (Some(ours), Some(theirs)) = (find(ours), find(theirs)) {
            let ratio = ours.rows_per_second() / theirs.rows_per_second();
            let batches_only = ours
                .batch_rows_per_second()
                .map(|rate| format!("; batch time only {:.2}x", rate / theirs.rows_per_second()))
                .unwrap_or_default();
            println!(
                "  {} / {}: {ratio:.2}x, whole process (target {target:.2}x: {}){batches_only}",
                ours.name,
                theirs.name,
                verdict(ratio >= *target)
            );
        }
    }
    for line in lines.iter().filter(|l| l.name.starts_with("glemsel")) {
        let met = line.worst(|s| s.longest_batch_ms) <= Some(LONGEST_TXN_MS)
            && line.worst(|s| s.update_p99_ms) <= Some(UPDATE_P99_MS)
            && line.worst(|s| s.peak_rss_kib) <= Some(PEAK_RSS_KIB);
        println!(
            "  {}: longest txn <= {LONGEST_TXN_MS} ms, update p99 <= {UPDATE_P99_MS} ms, peak RSS <= {} MiB: {}",
            line.name,
            PEAK_RSS_KIB / 1024,
            verdict(met)
        );
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}
