//! `glemsel demo`, the README's first command, run as a user would: the
//! real binary, a fresh folder, no server.

mod common;

use std::process::Command;

use common::{code, text};

fn glemsel(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_glemsel"))
        .args(args)
        .current_dir(dir)
        .env_remove("GLEMSEL_CONFIG")
        .env_remove("GLEMSEL_LOG")
        .output()
        .expect("run glemsel")
}

fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |row| row.get(0))
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
}

#[test]
fn the_demo_plans_runs_and_verifies_on_a_fresh_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = glemsel(tmp.path(), &["demo", "--dir", "d"]);
    assert_eq!(code(&demo), 0, "{}", text(&demo));
    let out = String::from_utf8_lossy(&demo.stdout);
    for expected in [
        "== 1. the dry run",
        "rule nav-customers",
        "== 2. the run",
        "== 3. what changed",
        "audit chain intact",
    ] {
        assert!(out.contains(expected), "missing {expected:?}:\n{out}");
    }
    assert!(
        demo.stderr.is_empty(),
        "the demo is quiet on stderr: {}",
        String::from_utf8_lossy(&demo.stderr)
    );

    let dir = tmp.path().join("d");
    let db = rusqlite::Connection::open(dir.join("demo.sqlite")).unwrap();
    // SQLite's clock is UTC; the rules count in Copenhagen, at most two hours off.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM access_log WHERE at < datetime('now', '-1 year', '-3 hours')"
        ),
        0
    );
    assert!(count(&db, "SELECT count(*) FROM access_log") > 0);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM support_tickets WHERE answered_at < datetime('now', '-2 years', '-3 hours')"
        ),
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM customers WHERE status = 'customer' AND legal_hold = 0 \
             AND contract_ended < date('now', '-37 months') AND name NOT LIKE 'psn!_%' ESCAPE '!'"
        ),
        0
    );
    assert!(
        count(
            &db,
            "SELECT count(*) FROM customers WHERE email LIKE '%@invalid' AND phone IS NULL AND address = '[redacted]'"
        ) > 0
    );
    // Held customers and NAV's blank dates keep their data.
    assert!(
        count(
            &db,
            "SELECT count(*) FROM customers WHERE legal_hold = 1 AND name LIKE 'Kunde %'"
        ) > 0
    );
    assert!(
        count(
            &db,
            "SELECT count(*) FROM \"CRONUS International Ltd_$Customer\" WHERE \"Last Date Modified\" LIKE '1753-%' AND \"Name\" LIKE 'NAV Kunde%'"
        ) > 0
    );
    // Nothing that looks like a real address was ever written.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM customers WHERE email NOT LIKE '%.invalid' AND email NOT LIKE '%@invalid'"
        ),
        0
    );

    // The folder is a working deployment: nothing is due any more, the chain holds.
    let plan = glemsel(&dir, &["plan"]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    assert!(
        text(&plan).contains("total: 0 rows due in 9 rules"),
        "{}",
        text(&plan)
    );
    let verify = glemsel(&dir, &["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}", text(&verify));

    // Cutoffs read as people say them; JSON keeps the exact bound.
    let at = "2025-11-30T21:56:06";
    let plan = glemsel(&dir, &["plan", "--as-of", at, "--rule", "access-logs"]);
    assert!(
        text(&plan).contains("  due when  at <= 2024-11-30 21:56:06\n"),
        "{}",
        text(&plan)
    );
    let json = glemsel(&dir, &["plan", "--as-of", at, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let bounds: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["rule_id"] == "access-logs")
        .map(|s| s["due"]["bound"].as_str().unwrap())
        .collect();
    assert_eq!(bounds, ["2024-11-30T21:56:06.000001"]);

    // A second demo replaces the first; a folder that is not a demo is left alone.
    let again = glemsel(tmp.path(), &["demo", "--dir", "d"]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    std::fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let refused = glemsel(tmp.path(), &["demo", "--dir", "."]);
    assert_eq!(code(&refused), 1, "{}", text(&refused));
    assert!(
        text(&refused).contains("is not a glemsel demo folder"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("precious.txt")).unwrap(),
        "keep me"
    );
}
