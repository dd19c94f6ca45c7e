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
use crate::rules::Subject;
use crate::store::StoreError;

pub use find::{Failure, Found, TableFinding, find};
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
    /// Another add held its lock for longer than an add waits.
    #[error(
        "another erase add has been recording a request for two minutes and has not finished; nothing was recorded: try again, and if this recurs look for a glemsel process that hangs"
    )]
    AddLocked,
    #[error("{0}")]
    Schema(String),
    /// A table of a request failed: which one, never a value.
    #[error("store {store}, table {table}: {source}")]
    Table {
        store: String,
        table: String,
        source: Box<EraseError>,
    },
}

/// The keyed hash a ledger records for an identifier: HMAC-SHA256 under
/// the pseudonymisation key, over a text of its own (so it never equals a
/// token written into a table), the identifier's name and its value as the
/// subject compares it (trimmed, NFC, in lower case unless declared
/// `exact`: `Jens@Example.invalid ` is the same person).
pub fn subject_hash(key: &HmacKey, subject: &Subject, identifier: &str, value: &str) -> String {
    key.hmac_hex(&format!(
        "glemsel erasure\n{identifier}\n{}",
        subject.normalise_of(identifier).apply(value)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Normalise;

    fn subject(normalise: Vec<(String, Normalise)>) -> Subject {
        Subject {
            kind: "customer".into(),
            description: None,
            identifiers: vec!["email".into(), "customer_no".into()],
            deadline: "1 month".parse().unwrap(),
            follow: Vec::new(),
            normalise,
            tables: Vec::new(),
            at: crate::rules::Location::file_start(std::path::Path::new("rules/shop.toml")),
        }
    }

    #[test]
    fn the_hash_ignores_case_blanks_and_composition_and_is_keyed() {
        let key = HmacKey::from_bytes(vec![7; 32]);
        let other = HmacKey::from_bytes(vec![8; 32]);
        let s = subject(Vec::new());
        let a = subject_hash(&key, &s, "email", "Jens@Example.invalid ");
        assert_eq!(a, subject_hash(&key, &s, "email", "jens@example.invalid"));
        assert_ne!(a, subject_hash(&other, &s, "email", "jens@example.invalid"));
        assert_ne!(
            a,
            subject_hash(&key, &s, "customer_no", "jens@example.invalid")
        );
        assert!(!a.contains("jens"));
        // Not the token a pseudonymising rule writes for the same value.
        assert_ne!(a, key.hmac_hex("jens@example.invalid"));
        // "Søren Æbelø" with a composed and a decomposed é, any case.
        let composed = subject_hash(&key, &s, "email", "s\u{e9}ren@example.invalid");
        assert_eq!(
            composed,
            subject_hash(&key, &s, "email", "S\u{65}\u{301}REN@example.invalid")
        );
    }

    #[test]
    fn an_exact_identifier_keeps_its_case() {
        let key = HmacKey::from_bytes(vec![7; 32]);
        let s = subject(vec![("customer_no".into(), Normalise::Exact)]);
        let upper = subject_hash(&key, &s, "customer_no", " AB12");
        assert_eq!(upper, subject_hash(&key, &s, "customer_no", "AB12"));
        assert_ne!(upper, subject_hash(&key, &s, "customer_no", "ab12"));
        assert_eq!(
            subject_hash(&key, &s, "customer_no", "\u{c9}1"),
            subject_hash(&key, &s, "customer_no", "E\u{301}1")
        );
        // The other identifiers still compare in lower case.
        assert_eq!(
            subject_hash(&key, &s, "email", "A@x.invalid"),
            subject_hash(&key, &s, "email", "a@x.invalid")
        );
    }
}
