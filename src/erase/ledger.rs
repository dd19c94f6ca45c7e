//! The erasure ledger: every request and every change of its status, as
//! rows of the ledger store's audit chain (append-only and hash-chained,
//! verified and checkpointed like every run's rows) and as lines of a file
//! outside the database, so that a restore of that store cannot take a
//! request back. Reading merges both. No entry holds an identifier, only
//! its keyed hash.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use super::EraseError;
use crate::audit::{self, AuditCursor, AuditEntry, AuditEvent, AuditFilter};
use crate::period::Calendar;
use crate::pseudonym::HmacKey;
use crate::rules::Subject;
use crate::store::Store;

/// A request as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// `erasure-0001`, in the order requests were recorded.
    pub id: String,
    /// The subject kind (`[[subject]] kind`).
    pub subject: String,
    /// Which identifier the request gave (`email`), not its value.
    pub identifier: String,
    /// HMAC of the identifier's value under the pseudonymisation key.
    pub hash: String,
    /// The id of the key that hash was made with, so a rotation shows.
    pub key_id: String,
    pub received: NaiveDate,
    /// The last day the request may take.
    pub deadline: NaiveDate,
    /// Free text the operator controls: a case number, never the person.
    pub reference: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    Open,
    /// A run's intent, written before it changes anything: what it is
    /// about to do and what will remain. Still the latest status after a
    /// crash, so the next run knows what the crashed one may have changed.
    Running,
    /// Done except for rows a statutory minimum or a hold keeps.
    PartlyDone,
    Done,
}

impl StatusKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusKind::Open => "open",
            StatusKind::Running => "interrupted",
            StatusKind::PartlyDone => "partly done",
            StatusKind::Done => "done",
        }
    }
}

/// Rows an erasure could not finish yet, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remaining {
    pub store: String,
    pub table: String,
    pub rows: u64,
    /// `kept by rule invoices-5y until its minimum ends`, `held`.
    pub why: String,
    /// Rows kept under a minimum: their keys as keyed hashes (a key may be
    /// an e-mail address), so a later run can tell when the minimum rule
    /// has deleted them, even once they no longer match the identifier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

/// What a run is about to change in one table (a [`StatusKind::Running`]
/// entry lists them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intended {
    pub store: String,
    pub table: String,
    pub action: String,
    pub rows: u64,
}

/// A change of a request's status (or a replay that found rows again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub request: String,
    pub status: StatusKind,
    /// Only in a `running` entry: the changes the run is about to make.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intended: Vec<Intended>,
    /// Rows found for the request by the run that wrote this.
    pub found: u64,
    /// Rows changed by that run.
    pub changed: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remaining: Vec<Remaining>,
    /// Written by `erase replay` (rows came back after a restore).
    #[serde(default)]
    pub replay: bool,
    /// The rows the request took when it was first carried out, per table,
    /// by keyed hashes of their keys: later runs and replays act on these
    /// rows only, so a new row that matches the identifier (the address
    /// registered again, a number given to someone new) is left alone.
    /// `None` in entries written before rows were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<RecordedRows>>,
    /// Identifiers learnt by following (the customer number found in the
    /// person's row), as keyed hashes: a later run finds the other tables'
    /// rows by them even when the row that taught them is gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learnt: Vec<Learnt>,
    pub at: DateTime<Utc>,
}

/// One table's rows of a request, by outcome, as keyed hashes of their
/// keys (HMAC under the pseudonymisation key; a key may be an e-mail
/// address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRows {
    pub store: String,
    pub table: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
}

impl RecordedRows {
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.changed.iter().chain(&self.kept).chain(&self.held)
    }
}

/// An identifier learnt by following: its name and keyed hash, as a
/// request's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learnt {
    pub identifier: String,
    pub hash: String,
}

/// One line of the ledger (and the `detail` of its audit row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Entry {
    Request(Request),
    Status(Status),
}

/// The ledger as read: every request, and each one's latest status.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub requests: Vec<Request>,
    pub statuses: BTreeMap<String, Status>,
    /// Requests the file holds and the database's ledger does not (it was
    /// restored from before them).
    pub only_in_file: Vec<String>,
}

impl Ledger {
    /// Reads the ledger store's erasure rows and the ledger file, and merges them.
    pub async fn load(store: &mut dyn Store, file: &Path) -> Result<Ledger, EraseError> {
        let mut from_db = Vec::new();
        let filter = AuditFilter {
            events: vec![AuditEvent::ErasureRequest, AuditEvent::ErasureStatus],
            ..AuditFilter::default()
        };
        let mut cursor = AuditCursor::After(0);
        loop {
            let page = store.audit_search(&filter, cursor, 1000).await?;
            let Some(last) = page.last() else { break };
            cursor = AuditCursor::After(last.seq);
            for record in &page {
                let entry: Entry = serde_json::from_str(&record.entry.detail).map_err(|err| {
                    EraseError::Schema(format!(
                        "audit row {} of store {} is not a ledger entry: {err}",
                        record.seq,
                        store.name()
                    ))
                })?;
                from_db.push(entry);
            }
        }
        let from_file = read_file(file)?;
        Ok(Ledger::merge(from_db, from_file))
    }

    fn merge(from_db: Vec<Entry>, from_file: Vec<Entry>) -> Ledger {
        let mut ledger = Ledger::default();
        let in_db: Vec<String> = from_db
            .iter()
            .filter_map(|e| match e {
                Entry::Request(r) => Some(r.id.clone()),
                Entry::Status(_) => None,
            })
            .collect();
        for entry in from_db.into_iter().chain(from_file) {
            match entry {
                Entry::Request(request) => {
                    if !ledger.requests.iter().any(|r| r.id == request.id) {
                        if !in_db.contains(&request.id) {
                            ledger.only_in_file.push(request.id.clone());
                        }
                        ledger.requests.push(request);
                    }
                }
                Entry::Status(status) => {
                    let newer = ledger
                        .statuses
                        .get(&status.request)
                        .is_none_or(|s| s.at < status.at);
                    if newer {
                        ledger.statuses.insert(status.request.clone(), status);
                    }
                }
            }
        }
        ledger.requests.sort_by(|a, b| a.id.cmp(&b.id));
        ledger
    }

    pub fn status_of(&self, id: &str) -> StatusKind {
        self.statuses.get(id).map_or(StatusKind::Open, |s| s.status)
    }

    pub fn request(&self, id: &str) -> Option<&Request> {
        self.requests.iter().find(|r| r.id == id)
    }

    /// The id the next request gets.
    pub fn next_id(&self) -> String {
        let highest = self
            .requests
            .iter()
            .filter_map(|r| r.id.strip_prefix("erasure-")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        format!("erasure-{:04}", highest + 1)
    }
}

/// The last day a request received on `received` may take.
pub fn deadline(subject: &Subject, received: NaiveDate, calendar: Option<&Calendar>) -> NaiveDate {
    let start = received.and_time(NaiveTime::MIN);
    let fallback = Calendar::new(crate::period::Holidays::None, Vec::new());
    subject
        .deadline
        .add_to(start, calendar.unwrap_or(&fallback))
        .date()
}

/// Records an entry: first in the file (so a failing database loses
/// nothing), then in the ledger store's chain.
pub async fn append(
    store: &mut dyn Store,
    file: &Path,
    entry: &Entry,
    audit_key: Option<&HmacKey>,
    run_id: &str,
) -> Result<(), EraseError> {
    let detail = serde_json::to_string(entry).expect("ledger entries serialise");
    append_line(file, &detail)?;
    append_to_store(store, entry, detail, audit_key, run_id).await
}

/// Records an entry in the ledger store's chain only: a request the file
/// holds and a restored database lost.
pub async fn restore(
    store: &mut dyn Store,
    entry: &Entry,
    audit_key: Option<&HmacKey>,
    run_id: &str,
) -> Result<(), EraseError> {
    let detail = serde_json::to_string(entry).expect("ledger entries serialise");
    append_to_store(store, entry, detail, audit_key, run_id).await
}

async fn append_to_store(
    store: &mut dyn Store,
    entry: &Entry,
    detail: String,
    audit_key: Option<&HmacKey>,
    run_id: &str,
) -> Result<(), EraseError> {
    let (event, request, rows, key_id) = match entry {
        Entry::Request(r) => (
            AuditEvent::ErasureRequest,
            r.id.clone(),
            0,
            Some(r.key_id.clone()),
        ),
        Entry::Status(s) => (
            AuditEvent::ErasureStatus,
            s.request.clone(),
            s.changed as i64,
            None,
        ),
    };
    let now = audit::now();
    let row = AuditEntry {
        run_id: run_id.to_string(),
        event,
        rule_id: request,
        store: store.name().to_string(),
        table_name: String::new(),
        action: event.as_str().to_string(),
        rows,
        key_from: None,
        key_to: None,
        as_of: now,
        cutoff: String::new(),
        rule_hash: String::new(),
        key_id,
        at: now,
        host: audit::host_name(),
        version: crate::VERSION.into(),
        detail,
    };
    store.ensure_audit_table().await?;
    crate::execute::append_alone(store, row, audit_key).await?;
    Ok(())
}

fn file_error(file: &Path, err: impl std::fmt::Display) -> EraseError {
    EraseError::LedgerFile {
        path: file.display().to_string(),
        message: err.to_string(),
    }
}

/// What the ledger file holds: its entries, and a torn last line if a
/// crash cut an append short.
#[derive(Debug)]
struct Scanned {
    entries: Vec<Entry>,
    /// Bytes up to the end of the last complete entry.
    good_len: usize,
    /// The last entry is complete but lacks its newline.
    missing_newline: bool,
    /// The torn last line: its number and text.
    torn: Option<(usize, String)>,
}

/// Reads the file's lines as entries. Only the last line may be torn (an
/// append the crash cut short): it is reported and left out. A line that
/// cannot be read anywhere else is an error naming the file and line.
fn scan(file: &Path, text: &str) -> Result<Scanned, EraseError> {
    let mut scanned = Scanned {
        entries: Vec::new(),
        good_len: 0,
        missing_newline: false,
        torn: None,
    };
    let mut start = 0;
    let mut number = 0;
    while start < text.len() {
        number += 1;
        let (line, end, last) = match text[start..].find('\n') {
            Some(at) => (
                &text[start..start + at],
                start + at + 1,
                start + at + 1 == text.len(),
            ),
            None => (&text[start..], text.len(), true),
        };
        if !line.trim().is_empty() {
            match serde_json::from_str(line) {
                Ok(entry) => scanned.entries.push(entry),
                Err(_) if last => {
                    scanned.torn = Some((number, line.to_string()));
                    break;
                }
                Err(err) => return Err(file_error(file, format!("line {number}: {err}"))),
            }
        }
        scanned.good_len = end;
        scanned.missing_newline = !text[..end].ends_with('\n');
        start = end;
    }
    if let Some((line, _)) = &scanned.torn {
        tracing::warn!(
            file = %file.display(),
            line,
            "the erasure ledger file ends in an incomplete line (an append cut short by a crash); it is ignored, and set aside by the next append"
        );
    }
    Ok(scanned)
}

fn read_text(file: &Path) -> Result<Option<String>, EraseError> {
    match std::fs::read(file) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(file_error(file, err)),
    }
}

/// Appends one line in one write. A torn last line is first moved to
/// `<file>.torn` (kept, for whoever looks into the crash) and cut off, so
/// the file reads whole again. An add and a run may append at once (they
/// hold different erasure locks): the file's own lock, held for the
/// append, keeps one's cut from taking the other's line.
fn append_line(file: &Path, line: &str) -> Result<(), EraseError> {
    let _appending = lock_for_append(file)?;
    let mut prefix = "";
    if let Some(text) = read_text(file)? {
        let scanned = scan(file, &text)?;
        if let Some((number, torn)) = &scanned.torn {
            let aside = torn_copy(file);
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&aside)
                .map_err(|e| file_error(&aside, e))?;
            out.write_all(format!("{torn}\n").as_bytes())
                .and_then(|()| out.sync_all())
                .map_err(|e| file_error(&aside, e))?;
            let cut = std::fs::OpenOptions::new()
                .write(true)
                .open(file)
                .map_err(|e| file_error(file, e))?;
            cut.set_len(scanned.good_len as u64)
                .and_then(|()| cut.sync_all())
                .map_err(|e| file_error(file, e))?;
            tracing::warn!(
                file = %file.display(),
                line = number,
                copy = %aside.display(),
                "cut the incomplete last line off the erasure ledger file; a copy is kept"
            );
        }
        if scanned.missing_newline {
            prefix = "\n";
        }
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| file_error(file, e))?;
    // One write: two processes appending at once never interleave a line.
    out.write_all(format!("{prefix}{line}\n").as_bytes())
        .map_err(|e| file_error(file, e))?;
    out.sync_all().map_err(|e| file_error(file, e))
}

/// The ledger file, created if missing and locked against other
/// appenders on this host; they hold it for one append, so a wait longer
/// than [`APPEND_WAIT`] means one hangs.
fn lock_for_append(file: &Path) -> Result<std::fs::File, EraseError> {
    let handle = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| file_error(file, e))?;
    let until = std::time::Instant::now() + APPEND_WAIT;
    loop {
        match handle.try_lock() {
            Ok(()) => return Ok(handle),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(file_error(
                    file,
                    "another process has held it for an append for 30 seconds",
                ));
            }
            Err(std::fs::TryLockError::Error(err)) => return Err(file_error(file, err)),
        }
    }
}

const APPEND_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where a torn last line of the ledger file is kept.
pub fn torn_copy(file: &Path) -> std::path::PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".torn");
    name.into()
}

/// The file's entries; none when it does not exist yet.
fn read_file(file: &Path) -> Result<Vec<Entry>, EraseError> {
    match read_text(file)? {
        Some(text) => Ok(scan(file, &text)?.entries),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str) -> Request {
        Request {
            id: id.into(),
            subject: "customer".into(),
            identifier: "email".into(),
            hash: "ab".repeat(32),
            key_id: "k".into(),
            received: NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
            deadline: NaiveDate::from_ymd_opt(2026, 12, 20).unwrap(),
            reference: None,
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn the_file_brings_back_what_a_restore_took() {
        let done = Status {
            request: "erasure-0002".into(),
            status: StatusKind::Done,
            intended: Vec::new(),
            found: 3,
            changed: 3,
            remaining: Vec::new(),
            replay: false,
            rows: None,
            learnt: Vec::new(),
            at: Utc::now(),
        };
        let db = vec![Entry::Request(request("erasure-0001"))];
        let file = vec![
            Entry::Request(request("erasure-0001")),
            Entry::Request(request("erasure-0002")),
            Entry::Status(done),
        ];
        let ledger = Ledger::merge(db, file);
        assert_eq!(ledger.requests.len(), 2);
        assert_eq!(ledger.only_in_file, ["erasure-0002"]);
        assert_eq!(ledger.status_of("erasure-0002"), StatusKind::Done);
        assert_eq!(ledger.status_of("erasure-0001"), StatusKind::Open);
        assert_eq!(ledger.next_id(), "erasure-0003");
    }

    #[test]
    fn only_the_last_line_may_be_torn() {
        let file = Path::new("ledger.jsonl");
        let line = serde_json::to_string(&Entry::Request(request("erasure-0001"))).unwrap();
        let whole = format!("{line}\n{line}\n");
        let scanned = scan(file, &format!("{whole}{{\"entry\":\"req")).unwrap();
        assert_eq!(scanned.entries.len(), 2);
        assert_eq!(scanned.good_len, whole.len());
        assert_eq!(scanned.torn.as_ref().map(|t| t.0), Some(3));
        assert!(!scanned.missing_newline);
        // Complete but for its newline: read, and the newline added later.
        let scanned = scan(file, &format!("{line}\n{line}")).unwrap();
        assert_eq!(scanned.entries.len(), 2);
        assert!(scanned.missing_newline && scanned.torn.is_none());
        // A bad line before the last is refused, naming file and line.
        let err = scan(file, &format!("{line}\nnot json\n{line}\n")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("erasure ledger file ledger.jsonl: line 2: "),
            "{err}"
        );
    }
}
