//! Shared test helpers: a fresh database per test on the servers `tests/run`
//! starts, and a temporary project folder (config, rules, key) in which the
//! real `glemsel` binary runs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::NoTls;

/// The test key. Tests grep output for it to prove it never leaks.
pub const KEY: &str = "k3y-for-tests-0123456789abcdef-0123456789";

/// The server URL `tests/run` exported, or `None` to skip. Under CI a
/// missing server fails the test instead.
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "CI=true but {var} is not set: run the suite with tests/run, which starts the servers"
            )
        }
        _ => {
            eprintln!("skipping: {var} is not set (tests/run starts the servers)");
            None
        }
    }
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

/// A database of its own for one test, on the PostgreSQL test server.
pub struct PgDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl PgDb {
    pub async fn create(prefix: &str) -> Option<PgDb> {
        let admin_url = server_url("GLEMSEL_TEST_PG_URL")?;
        let name = unique_name(prefix);
        let admin = connect(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        let base = admin_url.rsplit_once('/').expect("URL with a database").0;
        Some(PgDb {
            url: format!("{base}/{name}"),
            name,
            admin_url,
        })
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// The URL with a password added, to prove it never appears in output
    /// (the test server trusts loopback, so any password works).
    pub fn url_with_password(&self, password: &str) -> String {
        self.url
            .replacen("postgres@", &format!("postgres:{password}@"), 1)
    }

    pub async fn drop(self) {
        let admin = connect(&self.admin_url).await;
        let _ = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await;
    }
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
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(format!("{store_name}.url")), url).unwrap();
        std::fs::write(dir.path().join("hmac-key"), KEY).unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        let config = format!(
            "timezone = \"Europe/Copenhagen\"\nfinancial_year_end = \"06-30\"\nkey_file = \"hmac-key\"\n{extra_config}\n\
             [stores.{store_name}]\nengine = \"{engine}\"\nurl_file = \"{store_name}.url\"\n"
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

    /// Runs the real binary in the project folder.
    pub fn glemsel(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_glemsel"))
            .args(args)
            .current_dir(self.path())
            .env_remove("GLEMSEL_CONFIG")
            .env("GLEMSEL_LOG", "glemsel=debug,info")
            .output()
            .expect("run glemsel")
    }
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
