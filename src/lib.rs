//! glemsel: makes privacy-policy retention promises true inside the
//! databases where personal data lives.

/// The version and the commit it was built from (`0.1.0 (ab9a4e2)`), as
/// `--version` prints it and the audit trail's `version` column records it.
/// The commit is "unknown" in a build from outside a git checkout (see
/// `build.rs`).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("GLEMSEL_COMMIT"), ")");

pub mod approval;
pub mod audit;
pub mod audit_record;
pub mod commands;
pub mod coverage;
pub mod daemon;
pub mod demo;
pub mod erase;
pub mod execute;
pub mod exit;
pub mod generalise;
pub mod limits;
pub mod metrics;
pub mod operate;
pub mod outcome;
pub mod partition;
pub mod period;
pub mod plan;
pub mod progress;
pub mod pseudonym;
pub mod report;
pub mod review;
pub mod rules;
pub mod schedule;
pub mod schema;
pub mod step;
pub mod store;
pub mod trail;
pub mod walk;
