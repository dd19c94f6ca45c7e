//! What glemsel says about itself: `--version` names the commit it was
//! built from, and the audit trail records the same; the man pages and the
//! shell completions, written by the hidden `glemsel generate`, say what
//! `--help` says.

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
    // A packager's GLEMSEL_COMMIT wins over git (see build.rs).
    let given = std::env::var("GLEMSEL_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty());
    match given.or_else(head_commit) {
        Some(head) => assert_eq!(commit, head.trim(), "built from {head}"),
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

/// The subcommands `--help` lists (without `help`), and the long options
/// `glemsel <args> --help` lists.
fn commands_in_help(args: &[&str]) -> Vec<String> {
    let out = glemsel(Path::new("."), &[args, &["--help"]].concat());
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    let Some(section) = help.split("Commands:\n").nth(1) else {
        return Vec::new();
    };
    section
        .lines()
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect()
}

fn options_in_help(args: &[&str]) -> Vec<String> {
    let out = glemsel(Path::new("."), &[args, &["--help"]].concat());
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    let mut options: Vec<String> = help
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(|word| word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .map(String::from)
        .collect();
    options.sort();
    options.dedup();
    options
}

/// Every command path: `[]`, `["plan"]`, `["audit", "verify"]`, ...
fn command_paths() -> Vec<Vec<String>> {
    let mut paths = vec![Vec::<String>::new()];
    let mut i = 0;
    while i < paths.len() {
        let args: Vec<&str> = paths[i].iter().map(String::as_str).collect();
        for sub in commands_in_help(&args) {
            let mut path = paths[i].clone();
            path.push(sub);
            paths.push(path);
        }
        i += 1;
    }
    paths
}

#[test]
fn the_man_pages_say_what_help_says() {
    let tmp = tempfile::tempdir().unwrap();
    let out = glemsel(tmp.path(), &["generate", "man", "man"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let paths = command_paths();
    assert!(paths.len() >= 8, "{paths:?}");
    for path in &paths {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let name = [&["glemsel"][..], &args].concat().join("-");
        let page = std::fs::read_to_string(tmp.path().join(format!("man/{name}.1")))
            .unwrap_or_else(|e| panic!("{name}.1: {e}"))
            .replace("\\-", "-");
        let options = options_in_help(&args);
        assert!(options.contains(&"--help".to_string()), "{options:?}");
        for option in options {
            assert!(page.contains(&option), "{name}.1 lacks {option}");
        }
        for sub in commands_in_help(&args) {
            assert!(
                page.contains(&format!("{name}-{sub}(1)")),
                "{name}.1 lacks {sub}"
            );
        }
    }
    // The main page: every exit code, and the hidden subcommand nowhere.
    let main = std::fs::read_to_string(tmp.path().join("man/glemsel.1"))
        .unwrap()
        .replace("\\-", "-")
        .replace("\\*(Aq", "'");
    for (code, meaning) in glemsel::exit::Exit::TABLE {
        assert!(
            main.contains(&format!("\\fB{code}\\fR\n{meaning}\n")),
            "exit {code}"
        );
    }
    assert!(!main.contains("generate"));
    let written = std::fs::read_dir(tmp.path().join("man")).unwrap().count();
    assert_eq!(written, paths.len(), "one page per command, no more");
}

#[test]
fn the_completions_know_every_command_and_option() {
    let paths = command_paths();
    for shell in ["bash", "zsh", "fish"] {
        let out = glemsel(Path::new("."), &["generate", "completion", shell]);
        assert_eq!(code(&out), 0, "{}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        for path in &paths {
            let args: Vec<&str> = path.iter().map(String::as_str).collect();
            if let Some(last) = path.last() {
                assert!(script.contains(last.as_str()), "{shell}: {last}");
            }
            for option in options_in_help(&args) {
                // fish names options without their dashes (`-l as-of`).
                let bare = option.trim_start_matches('-');
                assert!(
                    script.contains(&option)
                        || (shell == "fish" && script.contains(&format!("-l {bare}"))),
                    "{shell}: {path:?} {option}"
                );
            }
        }
        assert!(
            !script.contains("generate"),
            "{shell} offers the hidden subcommand"
        );
    }
    let unknown = glemsel(Path::new("."), &["generate", "completion", "tcsh"]);
    assert_eq!(code(&unknown), 2, "{}", text(&unknown));
}
