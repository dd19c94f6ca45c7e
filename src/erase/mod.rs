//! Erasure on request: a ledger of requests with their deadlines, a dry run
//! per request, the run that erases, and its replay after a restore.
//!
//! A request names a person by an identifier (`email=...`). The identifier
//! is never stored, logged or sent to a database: it is hashed under the
//! pseudonymisation key at once ([`subject_hash`]), and rows are found by
//! reading the identifier columns of each declared table and hashing their
//! values here, in the worker. So the same search works for a request made
//! last month, and for rows a restore brought back.

pub mod commands;
pub mod find;
pub mod ledger;
mod references;
pub mod run;

use crate::pseudonym::HmacKey;
use crate::store::StoreError;

pub use find::{Found, TableFinding, find};
pub use ledger::{Ledger, Request, Status};
pub use run::{Context, Mode, RunReport, run};

/// Why an erasure command could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Opening a store, or loading a key, as the other commands do it.
    #[error(transparent)]
    Command(#[from] crate::commands::CommandError),
    #[error("erasure ledger file {path}: {message}")]
    LedgerFile { path: String, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("another worker is running the erasure requests; try again when it has finished")]
    Locked,
    #[error("{0}")]
    Schema(String),
}

/// The text an identifier is compared by: without surrounding blanks, in
/// lower case (an e-mail address typed `Jens@Example.invalid` is the same
/// person, and so is a customer number with a stray space).
pub fn normalise(value: &str) -> String {
    value.trim().to_lowercase()
}

/// The keyed hash a ledger records for an identifier: HMAC-SHA256 under
/// the pseudonymisation key, over a text of its own (so it never equals a
/// token written into a table), the identifier's name and its normalised
/// value.
pub fn subject_hash(key: &HmacKey, identifier: &str, value: &str) -> String {
    key.hmac_hex(&format!(
        "glemsel erasure\n{identifier}\n{}",
        normalise(value)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_case_and_blanks_and_is_keyed() {
        let key = HmacKey::from_bytes(vec![7; 32]);
        let other = HmacKey::from_bytes(vec![8; 32]);
        let a = subject_hash(&key, "email", "Jens@Example.invalid ");
        assert_eq!(a, subject_hash(&key, "email", "jens@example.invalid"));
        assert_ne!(a, subject_hash(&other, "email", "jens@example.invalid"));
        assert_ne!(a, subject_hash(&key, "customer_no", "jens@example.invalid"));
        assert!(!a.contains("jens"));
        // Not the token a pseudonymising rule writes for the same value.
        assert_ne!(a, key.hmac_hex("jens@example.invalid"));
    }
}
