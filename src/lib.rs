//! glemsel: makes privacy-policy retention promises true inside the
//! databases where personal data lives.

pub mod audit;
pub mod commands;
pub mod daemon;
pub mod demo;
pub mod execute;
pub mod exit;
pub mod generalise;
pub mod metrics;
pub mod period;
pub mod plan;
pub mod pseudonym;
pub mod report;
pub mod rules;
pub mod schedule;
pub mod store;
pub mod walk;
