//! Exit codes, in one place. Scripts and systemd units rely on them. Each
//! code's meaning is written once, below: it is the variant's doc, the row
//! of [`Exit::TABLE`] that `--help` prints, and the README's table, which a
//! test (`tests/reference_files.rs`) compares with it.

/// Declares [`Exit`] and derives [`Exit::TABLE`] from the same lines, so
/// the table covers every variant by construction.
macro_rules! exit_codes {
    ($($name:ident = $code:literal: $meaning:literal $(, $(#[doc = $more:literal])+)?;)+) => {
        /// The process exit codes of `glemsel`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub enum Exit {
            $(
                #[doc = concat!(stringify!($code), ": ", $meaning, ".")]
                $($(#[doc = $more])+)?
                $name = $code,
            )+
        }

        impl Exit {
            /// Every exit code, in order.
            pub const ALL: &'static [Exit] = &[$(Exit::$name),+];

            /// Each code and what it means, for `--help` and the README.
            pub const TABLE: &'static [(u8, &'static str)] = &[$(($code, $meaning)),+];
        }
    };
}

exit_codes! {
    Ok = 0: "success";
    Error = 1: "database or I/O error (batches committed before it stand, each audited)",
        /// The rest stays due for the next run.
    ;
    Usage = 2: "usage error";
    Invalid = 3: "invalid config, rules or key file; no database touched";
    Schema = 4: "rules do not match the live schema; nothing changed";
    Refused = 5: "refused by a guard (max_rows, the clock, --as-of in the future)",
        /// Nothing was changed by that rule.
    ;
    Tampered = 6: "audit chain broken";
    Incomplete = 7: "stopped early (a signal) or batches left locked; the rest is due next run",
        /// What was done is committed and audited.
    ;
    LockHeld = 8: "another worker holds a rule's lock; that rule was skipped (or the erasure lock: erase run and replay at once, erase add after waiting two minutes for another add)";
    Uncovered = 9: "check --coverage: a column that looks like personal data is covered by no rule and not on the allow-list",
        /// No rule deletes or pseudonymises them, and no allow-list entry names them.
    ;
    Overdue = 10: "erase status: an erasure request is still open after its deadline";
    Halted = 11: "stopped at a limit (a rule's window closed, --max-duration passed, the stop file appeared); the rest is due next run",
        /// What was done is committed and audited; the run_finish row says why it stopped.
    ;
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// What this code means: its row of [`Exit::TABLE`].
    pub fn meaning(self) -> &'static str {
        Exit::TABLE
            .iter()
            .find(|(code, _)| *code == self.code())
            .map(|(_, meaning)| *meaning)
            .expect("every variant has a row")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table lists every variant once, by its own code, in order.
    #[test]
    fn the_table_is_the_enum() {
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        let rows: Vec<u8> = Exit::TABLE.iter().map(|(code, _)| *code).collect();
        assert_eq!(codes, rows);
        assert_eq!(codes, (0..=11).collect::<Vec<u8>>());
        assert_eq!(Exit::Refused.meaning(), Exit::TABLE[5].1);
    }
}
