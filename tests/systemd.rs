//! The shipped systemd units: `systemd-analyze verify` accepts them (the
//! man page they name included), and their exposure score stays at 2.0 or
//! below.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::assert_lacks;

const UNITS: [&str; 3] = [
    "glemsel.service",
    "glemsel-run.service",
    "glemsel-run.timer",
];

/// `systemd-analyze`, or `None` to skip (see `common::missing`).
fn analyze() -> Option<PathBuf> {
    let found = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        common::missing("systemd-analyze is not installed");
    }
    found
}

/// The units, with ExecStart pointing at the binary under test, and the
/// man pages their Documentation= names in `man/`.
fn units() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let man = Command::new(env!("CARGO_BIN_EXE_glemsel"))
        .args(["generate", "man"])
        .arg(dir.path().join("man/man1"))
        .output()
        .unwrap();
    assert!(man.status.success(), "{man:?}");
    for unit in UNITS {
        let text = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("systemd")
                .join(unit),
        )
        .unwrap();
        let text = text.replace("/usr/bin/glemsel", env!("CARGO_BIN_EXE_glemsel"));
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    dir
}

#[test]
fn the_units_verify() {
    let Some(analyze) = analyze() else { return };
    let dir = units();
    // verify runs `man` for each Documentation=man: page.
    let output = Command::new(analyze)
        .arg("verify")
        .args(UNITS)
        .env("MANPATH", dir.path().join("man"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // No warnings about our units.
    assert_lacks(&stderr, "glemsel");
}

#[test]
fn the_services_are_hardened() {
    let Some(analyze) = analyze() else { return };
    let dir = units();
    for service in ["glemsel.service", "glemsel-run.service"] {
        let output = Command::new(&analyze)
            .args(["security", "--offline=true", service])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let score: f64 = text
            .lines()
            .find_map(|line| line.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|score| score.parse().ok())
            .unwrap_or_else(|| panic!("no exposure score:\n{text}"));
        assert!(score <= 2.0, "{service}: exposure {score}\n{text}");
    }
}
