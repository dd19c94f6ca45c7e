//! The audit trail's rows: what an entry records, a stored record with its
//! chain hashes, and how a search selects them. Data only, below the stores
//! that read and write them and the chain logic in `audit`.

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;

/// What an audit row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    RunStart,
    Batch,
    RunFinish,
    /// Starts a stretch of the chain hashed one way (keyed or not).
    Segment,
    /// An erasure request entered the ledger (no identifier, only its keyed hash).
    ErasureRequest,
    /// An erasure request's status changed, or it was replayed.
    ErasureStatus,
}

impl AuditEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::RunStart => "run_start",
            AuditEvent::Batch => "batch",
            AuditEvent::RunFinish => "run_finish",
            AuditEvent::Segment => "segment",
            AuditEvent::ErasureRequest => "erasure_request",
            AuditEvent::ErasureStatus => "erasure_status",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            AuditEvent::RunStart,
            AuditEvent::Batch,
            AuditEvent::RunFinish,
            AuditEvent::Segment,
            AuditEvent::ErasureRequest,
            AuditEvent::ErasureStatus,
        ]
        .into_iter()
        .find(|e| e.as_str() == text)
    }
}

/// The content of one audit row, before it is chained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub run_id: String,
    pub event: AuditEvent,
    pub rule_id: String,
    pub store: String,
    pub table_name: String,
    pub action: String,
    /// Rows changed by this batch (or, on run_finish, by the whole run).
    pub rows: i64,
    /// The batch's key window: after `key_from` (exclusive) through `key_to`, as JSON.
    pub key_from: Option<String>,
    pub key_to: Option<String>,
    /// The moment the run stood for (`--as-of`, or the clock).
    #[serde(serialize_with = "micros")]
    pub as_of: DateTime<Utc>,
    /// The due condition's bound, e.g. `contract_ended_at < 2023-07-01`.
    pub cutoff: String,
    /// SHA-256 of the rule as written.
    pub rule_hash: String,
    /// Id of the pseudonymisation key, when the rule uses one.
    pub key_id: Option<String>,
    #[serde(serialize_with = "micros")]
    pub at: DateTime<Utc>,
    pub host: String,
    pub version: String,
    /// JSON: status, counts and error codes of a run.
    pub detail: String,
}

fn micros<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(at))
}

/// The canonical text of a timestamp in the chain: UTC, microseconds.
pub fn format_time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Timestamps are stored at microsecond precision; truncating before
/// hashing makes the stored row hash the same as the written one.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub row_hash: String,
}

/// Which audit rows a search returns; an empty list matches every value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub rules: Vec<String>,
    pub run_id: Option<String>,
    pub events: Vec<AuditEvent>,
    /// Rows written at or after this moment.
    pub since: Option<DateTime<Utc>>,
    /// Rows written before this moment.
    pub until: Option<DateTime<Utc>>,
}

/// Where a page of a search starts: ascending after a sequence number, or
/// descending (newest first) before one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditCursor {
    After(i64),
    Before(i64),
}

/// The end of a chain: what the next row links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    pub seq: i64,
    pub row_hash: String,
    pub at: DateTime<Utc>,
}
