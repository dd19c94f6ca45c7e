//! Shared test helpers: a fresh database per test on the servers `tests/run`
//! starts, and a temporary project folder (config, rules, key) in which the
//! real `glemsel` binary runs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use mysql_async::prelude::Queryable;
use tokio_postgres::NoTls;

/// The test key. Tests grep output for it to prove it never leaks.
pub const KEY: &str = "k3y-for-tests-0123456789abcdef-0123456789";

/// HMAC's two padded key blocks for [`KEY`]: `(key XOR 0x36, key XOR 0x5c)`,
/// zero-padded to 64 bytes. Anyone who sees one of them has the key, so
/// leak tests search for them, and the benchmark's in-database baseline
/// (which glemsel itself never does) hashes with them.
#[allow(dead_code)]
pub fn key_pad_blocks() -> (Vec<u8>, Vec<u8>) {
    let mut padded = [0u8; 64];
    padded[..KEY.len()].copy_from_slice(KEY.as_bytes());
    (
        padded.iter().map(|b| b ^ 0x36).collect(),
        padded.iter().map(|b| b ^ 0x5c).collect(),
    )
}

/// Set to `1` to let tests skip what needs a server or a tool that
/// `tests/run` provides. Without it a missing one fails the test, so that a
/// green run means the tests ran; under `CI=true` nothing is ever skipped.
pub const SKIP_VAR: &str = "GLEMSEL_TEST_SKIP_SERVERS";

/// Something a test needs (`what`, e.g. "GLEMSEL_TEST_PG_URL is not set") is
/// missing: fails the test, unless [`SKIP_VAR`] asks to skip, in which case
/// it prints which test was skipped and why, and the caller returns.
#[track_caller]
pub fn missing(what: &str) {
    let asked = std::env::var(SKIP_VAR).as_deref() == Ok("1");
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    if ci {
        panic!("{test}: {what}, and CI=true never skips: run the suite with tests/run");
    }
    if !asked {
        panic!(
            "{test}: {what}: run the suite with tests/run, which provides it, \
             or set {SKIP_VAR}=1 to skip the tests that need it"
        );
    }
    // Straight to stderr, past the test harness's capture, so every skip
    // shows in the run's output.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {what} ({SKIP_VAR}=1)");
}

/// The server URL (or file) `tests/run` exported in `var`, or `None` when
/// it is missing and [`SKIP_VAR`] asks to skip (see [`missing`]).
#[track_caller]
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            missing(&format!("{var} is not set"));
            None
        }
    }
}

/// Asserts that `text` contains `needle`, printing the whole text if not.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(
        text.contains(needle),
        "missing {needle:?} in:\n{text}\n(end of text)"
    );
}

/// Asserts that `text` does not contain `needle`, printing the whole text if
/// it does.
#[track_caller]
pub fn assert_lacks(text: &str, needle: &str) {
    assert!(
        !text.contains(needle),
        "unexpected {needle:?} in:\n{text}\n(end of text)"
    );
}

/// Values as a query returns them: each as text, none NULL.
pub fn texts<T: std::fmt::Display>(values: &[T]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_name(prefix: &str) -> String {
    format!(
        "glemsel_{}_{}_{}",
        prefix,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to test database: {e}"));
    tokio::spawn(connection);
    client
}

/// A temporary project: `glemsel.toml`, `rules/`, the key, and the binary.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// A project with one store named `store_name` whose URL is read from a file.
    pub fn new(engine: &str, store_name: &str, url: &str, extra_config: &str) -> Project {
        let project = Project::with_store(
            store_name,
            &format!("engine = \"{engine}\"\nurl_file = \"{store_name}.url\""),
            extra_config,
        );
        std::fs::write(project.path().join(format!("{store_name}.url")), url).unwrap();
        project
    }

    /// A project whose one store is the test database `db`.
    pub fn for_db(db: &TestDb, store_name: &str, extra_config: &str) -> Project {
        match db.kind {
            Kind::Sqlite => Project::with_store(
                store_name,
                &format!("engine = \"sqlite\"\npath = {:?}", db.url),
                extra_config,
            ),
            Kind::Postgres => Project::new("postgres", store_name, &db.url, extra_config),
            Kind::Mariadb => Project::new("mysql", store_name, &db.url, extra_config),
        }
    }

    /// A project with one store, `[stores.<store_name>]` holding `store_body`.
    pub fn with_store(store_name: &str, store_body: &str, extra_config: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("hmac-key"), KEY).unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        let config = format!(
            "timezone = \"Europe/Copenhagen\"\nfinancial_year_end = \"06-30\"\nkey_file = \"hmac-key\"\n{extra_config}\n\
             [stores.{store_name}]\n{store_body}\n"
        );
        std::fs::write(dir.path().join("glemsel.toml"), config).unwrap();
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("glemsel.toml")
    }

    /// Writes `rules/<name>` with a `test` category and the given rules.
    pub fn rules(&self, name: &str, rules: &str) -> &Self {
        let text = format!("[categories.test]\ndescription = \"test data\"\n\n{rules}");
        std::fs::write(self.path().join("rules").join(name), text).unwrap();
        self
    }

    pub fn policy(&self) -> glemsel::rules::Policy {
        glemsel::rules::load(&self.config()).unwrap_or_else(|d| panic!("{d}"))
    }

    /// Runs `glemsel check`, which must refuse the rules (exit 4) and say
    /// each of `expected`.
    pub fn check_refuses(&self, expected: &[&str]) {
        let check = self.glemsel(&["check"]);
        let out = text(&check);
        assert_eq!(code(&check), 4, "{out}");
        for expected in expected {
            assert_contains(&out, expected);
        }
    }

    /// Runs the real binary in the project folder.
    pub fn glemsel(&self, args: &[&str]) -> Output {
        self.glemsel_with_env(args, &[("GLEMSEL_LOG", "glemsel=debug,info")])
    }

    /// Starts the real binary, its output piped, for a test that acts
    /// while it runs.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_glemsel"))
            .args(args)
            .current_dir(self.path())
            .env_remove("GLEMSEL_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start glemsel")
    }

    /// Runs the real binary with extra environment variables.
    pub fn glemsel_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_glemsel"))
            .args(args)
            .current_dir(self.path())
            .env_remove("GLEMSEL_CONFIG")
            .envs(env.iter().copied())
            .output()
            .expect("run glemsel")
    }
}

/// Runs a database tool, which must succeed.
fn tool(command: &mut Command, name: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {name} (Debian's client package): {e}"));
    assert!(out.status.success(), "{name}: {}", text(&out));
}

/// A MariaDB client tool logged in as `url` says
/// (`mysql://user:password@host:port/database`; the password goes in the
/// environment, not the command line), and the database's name.
fn mariadb_tool(program: &str, url: &str) -> (Command, String) {
    let rest = url.strip_prefix("mysql://").expect("a mysql:// URL");
    let (login, place) = rest.rsplit_once('@').expect("user and host");
    let (user, password) = login.split_once(':').unwrap_or((login, ""));
    let (host_port, database) = place.split_once('/').expect("a database");
    let (host, port) = host_port.split_once(':').unwrap_or((host_port, "3306"));
    let mut command = Command::new(program);
    command
        .args([
            "--protocol=tcp",
            "--host",
            host,
            "--port",
            port,
            "--user",
            user,
        ])
        .env("MYSQL_PWD", password);
    (command, database.split('?').next().unwrap().to_string())
}

/// Stdout and stderr of a finished command, for assertions and messages.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn code(output: &Output) -> i32 {
    output.status.code().expect("exited")
}

/// A MariaDB session for test SQL: identifiers may be double-quoted, as
/// in PostgreSQL, so one statement serves both (backticks still work).
async fn mariadb_session(url: &str) -> mysql_async::Conn {
    let mut conn = mysql_async::Conn::from_url(url)
        .await
        .expect("connect to MariaDB");
    conn.query_drop("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')")
        .await
        .unwrap();
    conn
}

/// The engines the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Mariadb,
    Sqlite,
}

pub const ALL: [Kind; 3] = [Kind::Postgres, Kind::Mariadb, Kind::Sqlite];

/// A database of its own for one test, on any engine. `url` is the
/// connection URL, or for SQLite the file's path.
pub struct TestDb {
    pub kind: Kind,
    pub name: String,
    pub url: String,
    admin_url: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn create(kind: Kind, prefix: &str) -> Option<TestDb> {
        let name = unique_name(prefix);
        match kind {
            Kind::Postgres => {
                let admin_url = server_url("GLEMSEL_TEST_PG_URL")?;
                connect(&admin_url)
                    .await
                    .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create test database");
                let base = admin_url.rsplit_once('/').expect("URL with a database").0;
                Some(TestDb {
                    kind,
                    url: format!("{base}/{name}"),
                    name,
                    admin_url: Some(admin_url),
                    _dir: None,
                })
            }
            Kind::Mariadb => {
                let admin_url = server_url("GLEMSEL_TEST_MYSQL_URL")?;
                let mut admin = mysql_async::Conn::from_url(&admin_url)
                    .await
                    .expect("connect to MariaDB");
                admin
                    .query_drop(format!(
                        "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
                    ))
                    .await
                    .expect("create test database");
                let _ = admin.disconnect().await;
                Some(TestDb {
                    kind,
                    url: format!("{}{name}", admin_url.trim_end_matches(|c| c != '/')),
                    name,
                    admin_url: Some(admin_url),
                    _dir: None,
                })
            }
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join(format!("{name}.sqlite"));
                rusqlite::Connection::open(&path).expect("create SQLite file");
                Some(TestDb {
                    kind,
                    name,
                    url: path.display().to_string(),
                    admin_url: None,
                    _dir: Some(dir),
                })
            }
        }
    }

    /// Runs statements (separated by `;`).
    pub async fn exec(&self, sql: &str) {
        match self.kind {
            Kind::Postgres => connect(&self.url)
                .await
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{e}\n{sql}")),
            Kind::Mariadb => {
                let mut conn = mariadb_session(&self.url).await;
                conn.query_drop(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{e}\n{sql}"));
                let _ = conn.disconnect().await;
            }
            Kind::Sqlite => rusqlite::Connection::open(&self.url)
                .unwrap()
                .execute_batch(sql)
                .unwrap_or_else(|e| panic!("{e}\n{sql}")),
        }
    }

    /// Every row of a query, every value as text (NULL as `None`).
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match self.kind {
            Kind::Postgres => connect(&self.url)
                .await
                .simple_query(sql)
                .await
                .unwrap_or_else(|e| panic!("{e}\n{sql}"))
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect(),
            Kind::Mariadb => {
                let mut conn = mariadb_session(&self.url).await;
                let rows: Vec<mysql_async::Row> = conn
                    .query(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{e}\n{sql}"));
                let _ = conn.disconnect().await;
                rows.into_iter()
                    .map(|row| {
                        row.unwrap()
                            .into_iter()
                            .map(|v| match v {
                                mysql_async::Value::NULL => None,
                                mysql_async::Value::Bytes(b) => {
                                    Some(String::from_utf8_lossy(&b).into_owned())
                                }
                                other => Some(other.as_sql(true).trim_matches('\'').to_string()),
                            })
                            .collect()
                    })
                    .collect()
            }
            Kind::Sqlite => {
                let conn = rusqlite::Connection::open(&self.url).unwrap();
                let mut statement = conn.prepare(sql).unwrap_or_else(|e| panic!("{e}\n{sql}"));
                let width = statement.column_count();
                statement
                    .query_map([], |row| {
                        (0..width)
                            .map(|i| {
                                row.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                                    rusqlite::types::Value::Null => None,
                                    rusqlite::types::Value::Integer(i) => Some(i.to_string()),
                                    rusqlite::types::Value::Real(r) => Some(r.to_string()),
                                    rusqlite::types::Value::Text(t) => Some(t),
                                    rusqlite::types::Value::Blob(b) => Some(format!("{b:?}")),
                                })
                            })
                            .collect()
                    })
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
        }
    }

    /// The first column of every row, as text.
    pub async fn column(&self, sql: &str) -> Vec<Option<String>> {
        self.rows(sql)
            .await
            .into_iter()
            .map(|mut r| r.remove(0))
            .collect()
    }

    /// The number a query returns (its first row and column).
    pub async fn number(&self, sql: &str) -> i64 {
        let column = self.column(sql).await;
        let value = column.first().cloned().flatten();
        value
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("not a number: {value:?}\n{sql}"))
    }

    /// Whether glemsel created its audit table here.
    pub async fn has_audit_table(&self) -> bool {
        let sql = match self.kind {
            Kind::Postgres => "SELECT count(*) FROM pg_tables WHERE tablename = 'glemsel_audit'",
            Kind::Mariadb => {
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = 'glemsel_audit'"
            }
            Kind::Sqlite => {
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'glemsel_audit'"
            }
        };
        self.number(sql).await > 0
    }

    /// Every value of the audit trail as one text, to search for what must
    /// never be in it.
    pub async fn audit_text(&self) -> String {
        self.rows("SELECT * FROM glemsel_audit ORDER BY seq")
            .await
            .into_iter()
            .flatten()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A connection of its own to this PostgreSQL database, for tests that
    /// hold a lock or a transaction open.
    pub async fn pg_client(&self) -> tokio_postgres::Client {
        assert_eq!(self.kind, Kind::Postgres, "pg_client is for PostgreSQL");
        connect(&self.url).await
    }

    /// A session of its own on this MariaDB database, for tests that hold
    /// a lock or a transaction open.
    pub async fn mariadb_session(&self) -> mysql_async::Conn {
        assert_eq!(self.kind, Kind::Mariadb, "mariadb_session is for MariaDB");
        mariadb_session(&self.url).await
    }

    /// The PostgreSQL URL with a password added, to prove it never appears
    /// in output (the test server trusts loopback, so any password works).
    pub fn pg_url_with_password(&self, password: &str) -> String {
        assert_eq!(self.kind, Kind::Postgres, "the URL is PostgreSQL's");
        self.url
            .replacen("postgres@", &format!("postgres:{password}@"), 1)
    }

    /// A backup of the whole database as its engine's tools take one:
    /// `pg_dump` and `mariadb-dump` from Debian (plain SQL), for SQLite a
    /// copy of the file, written into `dir`.
    pub fn dump(&self, dir: &Path) -> PathBuf {
        let file = dir.join(format!("{}.dump", self.name));
        match self.kind {
            Kind::Postgres => tool(
                Command::new("pg_dump")
                    .args(["--no-owner", "-f"])
                    .arg(&file)
                    .arg(&self.url),
                "pg_dump",
            ),
            Kind::Mariadb => {
                let (mut dump, database) = mariadb_tool("mariadb-dump", &self.url);
                let out = dump
                    .args(["--single-transaction", "--skip-comments", "--result-file"])
                    .arg(&file)
                    .arg(database)
                    .output()
                    .expect("run mariadb-dump");
                assert!(out.status.success(), "mariadb-dump: {}", text(&out));
            }
            Kind::Sqlite => {
                std::fs::copy(&self.url, &file).expect("copy the SQLite file");
            }
        }
        file
    }

    /// Restores a [`TestDb::dump`]: the database is dropped and created
    /// empty, then the dump is loaded with `psql` or the `mariadb` client
    /// (for SQLite the copy replaces the file).
    pub async fn restore(&self, dump: &Path) {
        match (self.kind, &self.admin_url) {
            (Kind::Postgres, Some(admin)) => {
                let admin = connect(admin).await;
                for sql in [
                    "DROP DATABASE \"{}\" WITH (FORCE)",
                    "CREATE DATABASE \"{}\"",
                ] {
                    admin
                        .batch_execute(&sql.replace("{}", &self.name))
                        .await
                        .expect("recreate the test database");
                }
                tool(
                    Command::new("psql")
                        .args(["-q", "-v", "ON_ERROR_STOP=1", "-f"])
                        .arg(dump)
                        .arg(&self.url),
                    "psql",
                );
            }
            (Kind::Mariadb, Some(admin)) => {
                let mut conn = mysql_async::Conn::from_url(admin)
                    .await
                    .expect("connect to MariaDB");
                conn.query_drop(format!(
                    "DROP DATABASE `{0}`; CREATE DATABASE `{0}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
                    self.name
                ))
                .await
                .expect("recreate the test database");
                let _ = conn.disconnect().await;
                let (mut client, database) = mariadb_tool("mariadb", &self.url);
                let out = client
                    .arg(database)
                    .stdin(std::fs::File::open(dump).unwrap())
                    .output()
                    .expect("run mariadb");
                assert!(out.status.success(), "mariadb: {}", text(&out));
            }
            _ => {
                // The journal of the database as it was must not be
                // applied to the copy.
                for journal in ["-wal", "-shm", "-journal"] {
                    let _ = std::fs::remove_file(format!("{}{journal}", self.url));
                }
                std::fs::copy(dump, &self.url).expect("copy the SQLite file back");
            }
        }
    }

    pub async fn drop(self) {
        match (self.kind, &self.admin_url) {
            (Kind::Postgres, Some(admin)) => {
                let _ = connect(admin)
                    .await
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                        self.name
                    ))
                    .await;
            }
            (Kind::Mariadb, Some(admin)) => {
                if let Ok(mut conn) = mysql_async::Conn::from_url(admin).await {
                    let _ = conn
                        .query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name))
                        .await;
                    let _ = conn.disconnect().await;
                }
            }
            _ => {}
        }
    }
}

/// One test body run as a test of its own on each engine, as ripgrep's
/// `tests/macros.rs` runs one body per variant: the tests are named
/// `<name>::postgres`, `<name>::mariadb` and `<name>::sqlite`.
///
/// ```ignore
/// every_engine! {
///     /// What the test proves.
///     async fn guards_refuse(kind) {
///         let Some(db) = TestDb::create(kind, "guards").await else { return };
///         ...
///     }
/// }
/// ```
#[allow(unused_macros)]
macro_rules! every_engine {
    ($(#[doc = $doc:expr])* async fn $name:ident($kind:ident) $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($kind: $crate::common::Kind) $body

            #[tokio::test]
            async fn postgres() {
                body($crate::common::Kind::Postgres).await
            }

            #[tokio::test]
            async fn mariadb() {
                body($crate::common::Kind::Mariadb).await
            }

            #[tokio::test]
            async fn sqlite() {
                body($crate::common::Kind::Sqlite).await
            }
        }
    };
}

/// On 2026-11-22, customers whose contract ended before 1 July 2023 are due:
/// 36 months from the end of the financial year (30 June) it ended in.
pub fn contacts_rule(action: &str) -> String {
    format!(
        r#"
[[rule]]
id = "customers-after-contract"
store = "shop"
table = "customers"
category = "test"
after = "contract_ended"
retain = "36 months"
round_up_to = "financial_year_end"
where = "status = 'closed'"
hold = "legal_hold"
{action}
"#
    )
}
