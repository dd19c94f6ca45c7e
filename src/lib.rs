//! glemsel: makes privacy-policy retention promises true inside the
//! databases where personal data lives.

pub mod approval;
pub mod audit;
pub mod commands;
pub mod coverage;
pub mod daemon;
pub mod demo;
pub mod execute;
pub mod exit;
pub mod metrics;
pub mod period;
pub mod plan;
pub mod progress;
pub mod pseudonym;
pub mod report;
pub mod review;
pub mod rules;
pub mod schedule;
pub mod store;
pub mod trail;
pub mod walk;
