//! What glemsel says about itself: `--version` names the commit it was
//! built from, and the audit trail records the same.

mod common;

use std::path::Path;
use std::process::Command;

use common::{code, text};

fn glemsel(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_glemsel"))
        .args(args)
        .current_dir(dir)
        .env_remove("GLEMSEL_CONFIG")
        .env_remove("GLEMSEL_LOG")
        .output()
        .expect("run glemsel")
}

/// `git rev-parse --short HEAD` of this checkout, if it is one.
fn head_commit() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[test]
fn the_version_names_the_commit_and_the_audit_trail_records_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = glemsel(tmp.path(), &["--version"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let version = line
        .strip_prefix("glemsel ")
        .unwrap_or_else(|| panic!("{line:?}"));
    let commit = version
        .strip_prefix(concat!(env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not `version (commit)`: {line:?}"));
    match head_commit() {
        Some(head) => assert_eq!(commit, head, "built from {head}"),
        None => assert!(
            commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{commit:?}"
        ),
    }

    // The demo's run writes audit rows; each carries the same version.
    let demo = glemsel(tmp.path(), &["demo", "--dir", "d"]);
    assert_eq!(code(&demo), 0, "{}", text(&demo));
    let db = rusqlite::Connection::open(tmp.path().join("d/demo.sqlite")).unwrap();
    let versions: Vec<String> = db
        .prepare("SELECT DISTINCT version FROM glemsel_audit")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, [version]);
}
