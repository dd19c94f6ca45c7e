//! Build script: records the commit glemsel is built from, so `--version`
//! and the audit trail's `version` column name it (`0.1.0 (ab9a4e2)`).
//!
//! The commit comes from `GLEMSEL_COMMIT` when a packager sets it (a build
//! from a source tarball has no `.git`), else from `git rev-parse --short
//! HEAD`, else it is "unknown". The script never fails the build. It reruns
//! only when HEAD moves (a commit, a checkout), so builds stay incremental.
//! A tree with uncommitted changes still names its last commit.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-env-changed=GLEMSEL_COMMIT");
    let commit = std::env::var("GLEMSEL_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .map(|c| c.trim().to_string())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=GLEMSEL_COMMIT={commit}");
}

/// The short commit id of HEAD, and the files whose change means HEAD moved.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git").args(args).output().ok()?;
        if !output.status.success() {
            return None;
        }
        let text = String::from_utf8(output.stdout).ok()?;
        Some(text.trim().to_string()).filter(|t| !t.is_empty())
    };
    // Only this crate's own repository: a source tarball unpacked inside
    // another one (a packaging repository) must not take its commit.
    let top = std::fs::canonicalize(git(&["rev-parse", "--show-toplevel"])?).ok()?;
    let manifest = std::fs::canonicalize(std::env::var_os("CARGO_MANIFEST_DIR")?).ok()?;
    if top != manifest {
        return None;
    }
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    // A worktree keeps HEAD in its own git dir and branches in the common one.
    let git_dir = PathBuf::from(git(&["rev-parse", "--absolute-git-dir"])?);
    let common_dir = git(&["rev-parse", "--git-common-dir"])
        .map(|dir| absolute(&dir))
        .unwrap_or_else(|| git_dir.clone());
    watch(&git_dir.join("HEAD"));
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        // A branch: its loose ref, or (packed until the next commit) the
        // folder that commit will write it into, and packed-refs.
        let loose = common_dir.join(&reference);
        if loose.exists() {
            watch(&loose);
        } else if let Some(folder) = loose.parent() {
            watch(folder);
        }
        watch(&common_dir.join("packed-refs"));
    }
    Some(commit)
}

/// `git rev-parse --git-common-dir` may answer relative to this folder.
fn absolute(dir: &str) -> PathBuf {
    let path = PathBuf::from(dir);
    if path.is_absolute() {
        return path;
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(&path))
        .unwrap_or(path)
}

/// Cargo reruns a script on every build while a watched path is missing,
/// so only paths that exist are watched.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo::rerun-if-changed={}", path.display());
    }
}
