//! Exit codes, in one place. The README lists them; scripts and systemd
//! units rely on them.

/// The process exit codes of `glemsel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Everything asked for was done.
    Ok = 0,
    /// A database or I/O error. Batches committed before it stand, each
    /// with its audit row; the rest stays due for the next run.
    Error = 1,
    /// The command line was wrong.
    Usage = 2,
    /// Config or rule files are invalid (or the key file is). No database was touched.
    Invalid = 3,
    /// Rules do not match the live schema. Nothing was changed.
    Schema = 4,
    /// A guard refused a rule (max_rows, the clock, an as-of in the future).
    /// Nothing was changed by that rule.
    Refused = 5,
    /// `audit verify` found a broken chain.
    Tampered = 6,
    /// Stopped early by a signal, or some batches stayed locked; what was
    /// done is committed and audited, the rest is due next run.
    Incomplete = 7,
    /// Another worker holds a rule's lock, so that rule was skipped.
    LockHeld = 8,
    /// `check --coverage` found columns that look like personal data and
    /// that no rule deletes or pseudonymises (and no allow-list entry names).
    Uncovered = 9,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// What a table of exit codes says, for `--help` and the README.
    pub const TABLE: &'static [(u8, &'static str)] = &[
        (0, "success"),
        (
            1,
            "database or I/O error (committed batches stand, each audited)",
        ),
        (2, "usage error"),
        (3, "invalid config, rules or key file; no database touched"),
        (4, "rules do not match the live schema; nothing changed"),
        (
            5,
            "refused by a guard (max_rows, clock, --as-of in the future)",
        ),
        (6, "audit chain broken"),
        (
            7,
            "stopped early (signal) or batches left locked; rest due next run",
        ),
        (8, "another worker holds a rule's lock; rule skipped"),
        (
            9,
            "check --coverage: personal-looking columns no rule covers",
        ),
    ];
}
