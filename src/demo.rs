//! `glemsel demo`: the main job on the embedded store, on a fresh machine.
//!
//! Writes an SQLite database modelled on the seed policies (a webshop, a
//! support portal, access logs, a NAV-style customer table) with eight
//! years of synthetic rows, a config, a random key and the rule files
//! shipped in `rules/demo/`; then plans, runs and verifies, like an
//! operator would, and ends with the retention report a DPO would read. Nothing in the data is real: generated names,
//! `example.invalid` addresses and documentation IP ranges.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, Transaction, params};

use crate::commands::{self, CommandError, StepOutcome};
use crate::execute::Shutdown;
use crate::exit::Exit;
use crate::report;

/// The rule files of the demo, as shipped in `rules/demo/`.
const RULE_FILES: [(&str, &str); 4] = [
    ("webshop.toml", include_str!("../rules/demo/webshop.toml")),
    ("support.toml", include_str!("../rules/demo/support.toml")),
    ("logs.toml", include_str!("../rules/demo/logs.toml")),
    ("nav.toml", include_str!("../rules/demo/nav.toml")),
];

/// Marks a folder as the demo's own, so a re-run may replace it.
const MARKER: &str = ".glemsel-demo";
const DATABASE: &str = "demo.sqlite";
/// The retention report the demo ends with.
const REPORT: &str = "report.html";

const CONFIG: &str = r#"# Written by `glemsel demo`.
timezone = "Europe/Copenhagen"
financial_year_end = "06-30"
key_file = "hmac-key"
audit_key_file = "audit-key"
rules = "rules"
audit_checkpoints = "audit-heads.tsv"

[stores.demo]
engine = "sqlite"
path = "demo.sqlite"
"#;

/// The tables the demo fills, for the before/after summary.
const TABLES: [&str; 7] = [
    "customers",
    "orders",
    "support_accounts",
    "support_tickets",
    "access_log",
    "cookie_consents",
    "CRONUS International Ltd_$Customer",
];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0} exists and is not a glemsel demo folder; choose another --dir")]
    NotOurs(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("demo database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Command(#[from] CommandError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Prepares `dir`: creates it, or clears a previous demo in it.
fn prepare_dir(dir: &Path) -> Result<(), DemoError> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(io(dir))?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            return Err(DemoError::NotOurs(dir.to_path_buf()));
        }
        for name in [
            DATABASE,
            "audit-heads.tsv",
            "glemsel.toml",
            "hmac-key",
            "audit-key",
            REPORT,
        ] {
            let path = dir.join(name);
            if path.exists() {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        let rules = dir.join("rules");
        if rules.exists() {
            std::fs::remove_dir_all(&rules).map_err(io(&rules))?;
        }
    }
    std::fs::create_dir_all(dir.join("rules")).map_err(io(dir))?;
    std::fs::write(dir.join(MARKER), "").map_err(io(dir))?;
    Ok(())
}

fn write_files(dir: &Path) -> Result<(), DemoError> {
    let write = |name: &str, text: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(&path))
    };
    write("glemsel.toml", CONFIG.as_bytes())?;
    // Two keys: one pseudonymises, the other keys the audit chain.
    for name in ["hmac-key", "audit-key"] {
        write(
            name,
            format!("{}\n", hex::encode(rand::random::<[u8; 32]>())).as_bytes(),
        )?;
    }
    for (name, text) in RULE_FILES {
        write(&format!("rules/{name}"), text.as_bytes())?;
    }
    Ok(())
}

/// Random moments over the last eight years, as SQLite text.
struct Clock {
    now: DateTime<Utc>,
    rng: StdRng,
}

impl Clock {
    fn within_years(&mut self, years: i64) -> NaiveDateTime {
        let seconds = self.rng.random_range(0..years * 365 * 24 * 3600);
        (self.now - TimeDelta::seconds(seconds)).naive_utc()
    }

    fn after(&mut self, start: NaiveDateTime) -> NaiveDateTime {
        let span = (self.now.naive_utc() - start).num_seconds().max(1);
        start + TimeDelta::seconds(self.rng.random_range(0..span))
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.random_range(0..100) < percent
    }
}

fn timestamp(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn date(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%d").to_string()
}

const SCHEMA: &str = r#"
CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(80), email VARCHAR(120), phone VARCHAR(30),
    address VARCHAR(120), status VARCHAR(10) NOT NULL, created_at DATETIME NOT NULL, contract_ended DATE,
    legal_hold BOOLEAN NOT NULL DEFAULT 0);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, placed_at DATETIME NOT NULL,
    completed BOOLEAN NOT NULL, amount INTEGER NOT NULL, invoice_no VARCHAR(20) NOT NULL);
CREATE TABLE support_accounts (id INTEGER PRIMARY KEY, email VARCHAR(120) NOT NULL, name VARCHAR(80),
    company VARCHAR(80), last_login DATE);
CREATE TABLE support_tickets (id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL, subject VARCHAR(200),
    body TEXT, answered_at DATETIME);
CREATE TABLE access_log (id INTEGER PRIMARY KEY, ip VARCHAR(45) NOT NULL, path VARCHAR(200), at DATETIME NOT NULL);
CREATE TABLE cookie_consents (id INTEGER PRIMARY KEY, ip VARCHAR(45) NOT NULL, consented_at DATETIME NOT NULL);
CREATE TABLE "CRONUS International Ltd_$Customer" ("No_" VARCHAR(20) NOT NULL, "Company" VARCHAR(30) NOT NULL,
    "Name" VARCHAR(50) NOT NULL, "E-Mail" VARCHAR(80) NOT NULL, "Phone No_" VARCHAR(30),
    "Last Date Modified" DATETIME NOT NULL, PRIMARY KEY ("No_", "Company"));
"#;

/// Creates and fills the demo database as of `now`; returns the number of
/// rows. The same `now` gives the same rows (the generator is seeded), which
/// is how `tests/demo.rs` knows exactly what a run must leave.
pub fn fill_database(path: &Path, now: DateTime<Utc>) -> Result<u64, DemoError> {
    let mut conn = Connection::open(path)?;
    conn.execute_batch(SCHEMA)?;
    let mut clock = Clock {
        now,
        rng: StdRng::seed_from_u64(2026),
    };
    let tx = conn.transaction()?;
    // The order matters: every table draws from the same seeded generator.
    let (mut rows, customers) = fill_customers(&tx, &mut clock)?;
    rows += fill_orders(&tx, &mut clock, &customers)?;
    rows += fill_support_accounts(&tx, &mut clock)?;
    rows += fill_support_tickets(&tx, &mut clock)?;
    rows += fill_access_log(&tx, &mut clock)?;
    rows += fill_cookie_consents(&tx, &mut clock)?;
    rows += fill_nav_customers(&tx, &mut clock)?;
    tx.commit()?;
    Ok(rows)
}

/// The CRM: customers and prospects, some with ended contracts, a few on legal hold. Returns the customers with their creation time.
fn fill_customers(
    tx: &Transaction<'_>,
    clock: &mut Clock,
) -> Result<(u64, Vec<(u32, NaiveDateTime)>), DemoError> {
    let mut rows = 0u64;
    let mut customer = tx.prepare(
        "INSERT INTO customers (id, name, email, phone, address, status, created_at, contract_ended, legal_hold) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut customers = Vec::new();
    for id in 1..=1500u32 {
        let created = clock.within_years(8);
        let is_customer = clock.chance(70);
        let ended = (is_customer && clock.chance(60)).then(|| date(clock.after(created)));
        customer.execute(params![
            id,
            format!("Kunde {id:04}"),
            format!("kunde{id:04}@example.invalid"),
            format!("+45 0000 {id:04}"),
            format!("Eksempelvej {}, 0000 Demoby", id % 200 + 1),
            if is_customer { "customer" } else { "prospect" },
            timestamp(created),
            ended,
            clock.chance(2),
        ])?;
        if is_customer {
            customers.push((id, created));
        }
        rows += 1;
    }
    Ok((rows, customers))
}

/// Webshop orders of those customers, with invoice numbers.
fn fill_orders(
    tx: &Transaction<'_>,
    clock: &mut Clock,
    customers: &[(u32, NaiveDateTime)],
) -> Result<u64, DemoError> {
    let mut rows = 0u64;
    let mut order = tx.prepare(
        "INSERT INTO orders (id, customer_id, placed_at, completed, amount, invoice_no) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for id in 1..=2500u32 {
        let (customer_id, created) = customers[clock.rng.random_range(0..customers.len())];
        order.execute(params![
            id,
            customer_id,
            timestamp(clock.after(created)),
            !clock.chance(5),
            clock.rng.random_range(100..20_000),
            format!("F-{id:06}"),
        ])?;
        rows += 1;
    }
    Ok(rows)
}

/// Support accounts, some never logged in.
fn fill_support_accounts(tx: &Transaction<'_>, clock: &mut Clock) -> Result<u64, DemoError> {
    let mut rows = 0u64;
    let mut account = tx.prepare(
        "INSERT INTO support_accounts (id, email, name, company, last_login) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for id in 1..=400u32 {
        let last_login = (!clock.chance(5)).then(|| date(clock.within_years(8)));
        account.execute(params![
            id,
            format!("bruger{id:03}@example.invalid"),
            format!("Bruger {id:03}"),
            format!("Firma {}", id % 60 + 1),
            last_login,
        ])?;
        rows += 1;
    }
    Ok(rows)
}

/// Support tickets, some never answered.
fn fill_support_tickets(tx: &Transaction<'_>, clock: &mut Clock) -> Result<u64, DemoError> {
    let mut rows = 0u64;
    let mut ticket = tx.prepare(
        "INSERT INTO support_tickets (id, account_id, subject, body, answered_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for id in 1..=1200u32 {
        let answered = (!clock.chance(10)).then(|| timestamp(clock.within_years(8)));
        ticket.execute(params![
            id,
            clock.rng.random_range(1..=400),
            format!("Sag {id}"),
            "Synthetic support request.",
            answered,
        ])?;
        rows += 1;
    }
    Ok(rows)
}

/// Web server access log entries.
fn fill_access_log(tx: &Transaction<'_>, clock: &mut Clock) -> Result<u64, DemoError> {
    let mut rows = 0u64;
    let mut log =
        tx.prepare("INSERT INTO access_log (id, ip, path, at) VALUES (?1, ?2, ?3, ?4)")?;
    for id in 1..=3000u32 {
        log.execute(params![
            id,
            format!("192.0.2.{}", id % 254 + 1),
            format!("/support/sag/{}", id % 1200 + 1),
            timestamp(clock.within_years(3)),
        ])?;
        rows += 1;
    }
    Ok(rows)
}

/// Cookie consents by IP address.
fn fill_cookie_consents(tx: &Transaction<'_>, clock: &mut Clock) -> Result<u64, DemoError> {
    let mut rows = 0u64;
    let mut consent =
        tx.prepare("INSERT INTO cookie_consents (id, ip, consented_at) VALUES (?1, ?2, ?3)")?;
    for id in 1..=800u32 {
        consent.execute(params![
            id,
            format!("198.51.100.{}", id % 254 + 1),
            timestamp(clock.within_years(3))
        ])?;
        rows += 1;
    }
    Ok(rows)
}

/// A Dynamics NAV-style customer table, with its blank 1753 dates.
fn fill_nav_customers(tx: &Transaction<'_>, clock: &mut Clock) -> Result<u64, DemoError> {
    let mut rows = 0u64;
    let mut nav = tx.prepare(
        "INSERT INTO \"CRONUS International Ltd_$Customer\" \
         (\"No_\", \"Company\", \"Name\", \"E-Mail\", \"Phone No_\", \"Last Date Modified\") VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for n in 1..=300u32 {
        // NAV writes 1753-01-01 where a date is blank.
        let modified = if clock.chance(5) {
            "1753-01-01 00:00:00".to_string()
        } else {
            timestamp(clock.within_years(8))
        };
        nav.execute(params![
            format!("C{n:05}"),
            if n % 3 == 0 { "ACME" } else { "CRONUS" },
            format!("NAV Kunde {n:03}"),
            format!("nav{n:03}@example.invalid"),
            format!("+45 1111 {n:04}"),
            modified,
        ])?;
        rows += 1;
    }
    Ok(rows)
}

fn table_counts(path: &Path) -> Result<Vec<u64>, DemoError> {
    let conn = Connection::open(path)?;
    TABLES
        .iter()
        .map(|table| {
            let sql = format!("SELECT count(*) FROM \"{}\"", table.replace('"', "\"\""));
            Ok(conn.query_row(&sql, [], |row| row.get::<_, i64>(0))? as u64)
        })
        .collect()
}

/// Runs the demo in `dir`; returns what it has to say and how it ended.
pub async fn run(dir: &Path) -> Result<(String, Exit), DemoError> {
    let mut out = String::new();
    prepare_dir(dir)?;
    write_files(dir)?;
    let database = dir.join(DATABASE);
    let now = commands::now();
    let rows = fill_database(&database, now)?;
    let _ = writeln!(out, "glemsel demo in {}", dir.display());
    let _ = writeln!(
        out,
        "  wrote {DATABASE}: {} synthetic rows in {} tables, spread over eight years (generated names, example.invalid addresses)",
        report::thousands(rows),
        TABLES.len()
    );
    let _ = writeln!(
        out,
        "  wrote glemsel.toml, a random hmac-key, and rules/ (the rule set shipped in rules/demo)"
    );

    let policy = crate::rules::load(&dir.join("glemsel.toml")).map_err(CommandError::Invalid)?;
    let _ = writeln!(out, "\n== 1. the dry run: what is due now ==\n");
    let plan = commands::plan(&policy, &[], now).await?;
    out.push_str(&report::plan_text(&plan));

    let before = table_counts(&database)?;
    let _ = writeln!(out, "\n== 2. the run ==\n");
    let outcomes = commands::run(
        &policy,
        &[],
        now,
        Shutdown::default(),
        &commands::RunOptions::default(),
    )
    .await?;
    out.push_str(&report::run_text(&outcomes));

    let after = table_counts(&database)?;
    let _ = writeln!(out, "\n== 3. what changed ==\n");
    what_changed(&mut out, &before, &after, &outcomes);

    let _ = writeln!(out, "\n== 4. the audit trail ==\n");
    let verdicts = commands::audit_verify(&policy, &[]).await?;
    out.push_str(&report::verify_text(&verdicts));
    write_report(&mut out, dir, &policy).await?;
    let _ = writeln!(
        out,
        "\nNext: cd {} and try `glemsel plan --save plan.json`, `glemsel run --plan plan.json`,\n`glemsel audit show`, `glemsel audit verify` or `glemsel report --format md`",
        dir.display()
    );
    let exit = if verdicts.iter().any(|v| v.broken.is_some()) {
        Exit::Tampered
    } else {
        commands::run_exit(&outcomes)
    };
    if exit != Exit::Ok {
        let _ = writeln!(
            out,
            "\nThe demo did not finish cleanly; see the messages above."
        );
    }
    Ok((out, exit))
}

/// Chapter 3 of the demo: each table's rows before and after the run,
/// and how many were pseudonymised rather than deleted.
fn what_changed(out: &mut String, before: &[u64], after: &[u64], outcomes: &[StepOutcome]) {
    let _ = writeln!(out, "  {:<36} {:>8} {:>8}", "table", "before", "after");
    for ((table, before), after) in TABLES.iter().zip(before).zip(after) {
        let _ = writeln!(
            out,
            "  {table:<36} {:>8} {:>8}",
            report::thousands(*before),
            report::thousands(*after)
        );
    }
    let pseudonymised: u64 = outcomes
        .iter()
        .filter_map(|o| match o {
            StepOutcome::Done(r) if r.action == "pseudonymise" => Some(r.rows_changed),
            _ => None,
        })
        .sum();
    let _ = writeln!(
        out,
        "  {} rows were pseudonymised in place (their keys and bookkeeping columns stay)",
        report::thousands(pseudonymised)
    );
}

/// Chapter 5 of the demo: the retention report, written beside the
/// database.
async fn write_report(
    out: &mut String,
    dir: &Path,
    policy: &crate::rules::Policy,
) -> Result<(), DemoError> {
    let review = crate::review::gather(policy, commands::now()).await;
    let report_path = dir.join(REPORT);
    std::fs::write(&report_path, report::html::render(&review)).map_err(io(&report_path))?;
    let _ = writeln!(out, "\n== 5. the retention report ==\n");
    let _ = writeln!(
        out,
        "  {}: the retention schedule, a 12-month forecast, each rule's last run and the audit chain,\n  one self-contained file for the DPO and the auditor; open it in a browser, or print it",
        report_path.display()
    );
    Ok(())
}

/// The default demo folder: `glemsel-demo` under the current directory.
pub fn default_dir() -> PathBuf {
    PathBuf::from("glemsel-demo")
}
