//! The audit trail: what every run did, hash-chained so an edited, deleted
//! or reordered row is found, and checkpointed outside the database so a
//! cut tail is found too.
//!
//! A chain is keyed or not. Unkeyed rows are chained with SHA-256, which
//! anyone who can write to the table can recompute. Keyed rows are chained
//! with HMAC-SHA256 under an audit key of their own (never the
//! pseudonymisation key), so rewriting them needs that key. A `segment`
//! row starts a keyed (or unkeyed) stretch and says so; a trail changes
//! from one to the other only by such a row, written on purpose.
//!
//! Each store keeps its own chain in its own audit table; a batch's row is
//! written in the same transaction as the batch. The trail holds counts,
//! key ranges, rule fingerprints and error codes, never column values.

use std::io::Write as _;
use std::path::Path;

use chrono::SubsecRound;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::pseudonym::HmacKey;
use crate::store::{Store, StoreError};

/// The `prev_hash` of the first row of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub use crate::audit_record::{
    AuditCursor, AuditEntry, AuditEvent, AuditFilter, AuditRecord, ChainLink, format_time, now,
};

#[derive(Serialize)]
struct Hashed<'a> {
    seq: i64,
    prev_hash: &'a str,
    #[serde(flatten)]
    entry: &'a AuditEntry,
}

/// The hash of a row over its sequence number, the previous hash and every
/// field, in a fixed canonical JSON form: HMAC-SHA256 under the audit key
/// for a keyed chain, plain SHA-256 otherwise.
pub fn row_hash(seq: i64, prev_hash: &str, entry: &AuditEntry, key: Option<&HmacKey>) -> String {
    let canonical = serde_json::to_string(&Hashed {
        seq,
        prev_hash,
        entry,
    })
    .expect("audit entries serialise");
    match key {
        Some(key) => key.hmac_hex(&canonical),
        None => hex::encode(Sha256::digest(canonical)),
    }
}

/// How a segment row says its stretch of the chain is hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SegmentDetail {
    /// `hmac-sha256` or `sha256`.
    pub chain: String,
    /// The id of the audit key (not the key) for a keyed stretch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_key_id: Option<String>,
    /// Why the segment was started, in the operator's words.
    pub reason: String,
    /// What the chain looked like when it was started: `empty`, `intact`,
    /// or the break that was found.
    pub found: String,
}

pub const KEYED: &str = "hmac-sha256";
pub const UNKEYED: &str = "sha256";

impl SegmentDetail {
    fn of(record: &AuditRecord) -> Option<SegmentDetail> {
        (record.entry.event == AuditEvent::Segment)
            .then(|| serde_json::from_str(&record.entry.detail).ok())
            .flatten()
    }

    fn keyed(&self) -> bool {
        self.chain == KEYED
    }
}

/// Links an entry to the chain's tail, hashed under `key` (keyed chain) or
/// plain.
pub fn seal(tail: Option<&ChainLink>, mut entry: AuditEntry, key: Option<&HmacKey>) -> AuditRecord {
    entry.as_of = entry.as_of.trunc_subsecs(6);
    entry.at = entry.at.trunc_subsecs(6);
    let (seq, prev_hash) = match tail {
        Some(link) => (link.seq + 1, link.row_hash.clone()),
        None => (1, GENESIS.to_string()),
    };
    let row_hash = row_hash(seq, &prev_hash, &entry, key);
    AuditRecord {
        seq,
        entry,
        prev_hash,
        row_hash,
    }
}

/// Appends an entry to a store's chain, keyed under `key` if given. Call it
/// inside the transaction whose change the entry describes.
pub async fn append(
    store: &mut dyn Store,
    entry: AuditEntry,
    key: Option<&HmacKey>,
) -> Result<AuditRecord, StoreError> {
    let tail = store.audit_tail().await?;
    let record = seal(tail.as_ref(), entry, key);
    store.audit_insert(&record).await?;
    Ok(record)
}

/// Who may start a checkpoint file that is configured but missing.
#[derive(Debug, Clone, Copy)]
pub enum FileStart<'a> {
    /// A run, only if it began the chain: a run that found rows in a chain
    /// without its file was refused and must not vouch for them now.
    ByRun(&'a str),
    /// The operator, recording a segment with the reason.
    ByOperator,
}

/// Publishes a store's chain head outside the database: in the log, and
/// in the checkpoint file when one is configured. Failures are logged; the
/// run they follow stands.
pub async fn publish_head(store: &mut dyn Store, checkpoints: Option<&Path>, start: FileStart<'_>) {
    let name = store.name().to_string();
    match store.audit_head().await {
        Ok(Some(head)) => {
            tracing::info!(store = %name, seq = head.seq, row_hash = %head.row_hash, "audit chain head");
            let Some(path) = checkpoints else {
                return;
            };
            if let FileStart::ByRun(run_id) = start
                && !path.exists()
                && !began_chain(store, run_id).await.unwrap_or(false)
            {
                tracing::error!(store = %name, file = %path.display(), "the audit checkpoint file is missing while the chain has older rows; not starting a new one (`glemsel audit segment --reason` does)");
                return;
            }
            if let Err(err) = write_checkpoint(path, &name, &head) {
                tracing::error!(store = %name, file = %path.display(), error = %err, "could not write the audit checkpoint");
            }
        }
        Ok(None) => {}
        Err(err) => {
            tracing::warn!(store = %name, error = %err, "could not read the audit chain head")
        }
    }
}

/// Whether the run `run_id` wrote the chain's first row.
async fn began_chain(store: &mut dyn Store, run_id: &str) -> Result<bool, StoreError> {
    let first = store.audit_records(i64::MIN, 1).await?;
    Ok(first.first().is_some_and(|r| r.entry.run_id == run_id))
}

/// A chain head published outside the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub store: String,
    pub seq: i64,
    pub row_hash: String,
}

/// Appends a chain head to the checkpoint file (one line per head).
pub fn write_checkpoint(path: &Path, store: &str, head: &ChainLink) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(
        file,
        "{}\t{}\t{}\t{}",
        store,
        head.seq,
        head.row_hash,
        format_time(&head.at)
    )?;
    file.sync_all()
}

/// Reads the checkpoints of one store; `None` when the file does not exist.
/// A line that cannot be read is an error, not something to skip.
pub fn read_checkpoints(path: &Path, store: &str) -> std::io::Result<Option<Vec<Checkpoint>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut checkpoints = Vec::new();
    for (number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split('\t').collect();
        let parsed = match fields.as_slice() {
            [name, seq, hash, ..] if hash.len() == 64 => {
                seq.parse().ok().map(|seq| (*name, seq, *hash))
            }
            _ => None,
        };
        let Some((name, seq, hash)) = parsed else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}:{}: not a checkpoint line", path.display(), number + 1),
            ));
        };
        if name == store {
            checkpoints.push(Checkpoint {
                store: name.to_string(),
                seq,
                row_hash: hash.to_string(),
            });
        }
    }
    Ok(Some(checkpoints))
}

/// The checkpoints of `store` a run checks the chain's tail against: none
/// when no file is configured; `None` when one is configured but missing,
/// which only an empty chain may be.
pub fn checkpoints_of(
    path: Option<&Path>,
    store: &str,
) -> std::io::Result<Option<Vec<Checkpoint>>> {
    match path {
        Some(path) => read_checkpoints(path, store),
        None => Ok(Some(Vec::new())),
    }
}

/// The first place a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("row seq {seq}: expected seq {expected}; rows are missing or reordered")]
    Gap { seq: i64, expected: i64 },
    #[error(
        "row seq {seq}: prev_hash does not match the row before it; a row was removed, inserted or reordered"
    )]
    Link { seq: i64 },
    #[error("row seq {seq}: its content does not match its row_hash; the row was edited")]
    Content { seq: i64 },
    #[error("checkpoint at seq {seq}: the row there has another hash; the chain was rewritten")]
    Checkpoint { seq: i64 },
    #[error("checkpoint at seq {seq}: the chain ends at seq {last}; rows were cut from its end")]
    Truncated { seq: i64, last: i64 },
    #[error(
        "the checkpoint file is configured but missing, while the chain has rows; it was removed"
    )]
    CheckpointsMissing,
    #[error(
        "row seq {seq}: the chain is keyed from here under audit key {key_id}, not the one configured"
    )]
    OtherKey { seq: i64, key_id: String },
}

/// The state of a chain's last rows, as a run finds it before appending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// No rows yet.
    Empty,
    /// The last rows are hashed with plain SHA-256.
    Unkeyed,
    /// The last rows are keyed; `verified` is false when no audit key was
    /// given to check them with.
    Keyed { verified: bool },
}

/// Checks a chain, page by page, as its rows are read in order.
#[derive(Debug)]
pub struct ChainVerifier<'k> {
    expected_seq: i64,
    prev_hash: String,
    hashes_at_checkpoints: Vec<Checkpoint>,
    key: Option<&'k HmacKey>,
    /// Whether the rows being read are keyed (a segment row switches it).
    keyed: bool,
    pub rows: u64,
    /// Keyed rows whose hash could not be checked: no audit key was given.
    pub unauthenticated: u64,
    pub segments: u64,
}

impl<'k> ChainVerifier<'k> {
    /// Checks a chain from its first row, keyed rows with `key`.
    pub fn new(checkpoints: Vec<Checkpoint>, key: Option<&'k HmacKey>) -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS.to_string(),
            hashes_at_checkpoints: checkpoints,
            key,
            keyed: false,
            rows: 0,
            unauthenticated: 0,
            segments: 0,
        }
    }

    /// Checks a chain's last rows, from `first` on: whether they are keyed
    /// is read from `first` itself (its hash matches one way or the other).
    pub fn resume(
        first: &AuditRecord,
        checkpoints: Vec<Checkpoint>,
        key: Option<&'k HmacKey>,
    ) -> Self {
        let plain = row_hash(first.seq, &first.prev_hash, &first.entry, None) == first.row_hash;
        let keyed = match SegmentDetail::of(first) {
            Some(segment) => segment.keyed(),
            None => !plain,
        };
        Self {
            expected_seq: first.seq,
            prev_hash: first.prev_hash.clone(),
            hashes_at_checkpoints: checkpoints,
            key,
            // Before the first row, the stretch it belongs to.
            keyed,
            rows: 0,
            unauthenticated: 0,
            segments: 0,
        }
    }

    /// The state of the chain after the rows fed so far.
    pub fn tail(&self) -> Tail {
        match (self.rows, self.keyed) {
            (0, _) => Tail::Empty,
            (_, false) => Tail::Unkeyed,
            (_, true) => Tail::Keyed {
                verified: self.key.is_some(),
            },
        }
    }

    pub fn feed(&mut self, record: &AuditRecord) -> Result<(), ChainBreak> {
        if record.seq != self.expected_seq {
            return Err(ChainBreak::Gap {
                seq: record.seq,
                expected: self.expected_seq,
            });
        }
        if record.prev_hash != self.prev_hash {
            return Err(ChainBreak::Link { seq: record.seq });
        }
        if let Some(segment) = SegmentDetail::of(record) {
            self.keyed = segment.keyed();
            self.segments += 1;
            if let (true, Some(key), Some(id)) =
                (self.keyed, self.key, segment.audit_key_id.as_deref())
                && key.id() != id
            {
                return Err(ChainBreak::OtherKey {
                    seq: record.seq,
                    key_id: id.to_string(),
                });
            }
        }
        let authentic = match (self.keyed, self.key) {
            (false, _) => Some(None),
            (true, Some(key)) => Some(Some(key)),
            (true, None) => None,
        };
        match authentic {
            Some(key) => {
                if row_hash(record.seq, &record.prev_hash, &record.entry, key) != record.row_hash {
                    return Err(ChainBreak::Content { seq: record.seq });
                }
            }
            None => self.unauthenticated += 1,
        }
        if let Some(checkpoint) = self
            .hashes_at_checkpoints
            .iter()
            .find(|c| c.seq == record.seq)
            && checkpoint.row_hash != record.row_hash
        {
            return Err(ChainBreak::Checkpoint { seq: record.seq });
        }
        self.expected_seq += 1;
        self.prev_hash = record.row_hash.clone();
        self.rows += 1;
        Ok(())
    }

    /// After the last row: every checkpoint must have been reached.
    pub fn finish(&self) -> Result<(), ChainBreak> {
        let last = self.expected_seq - 1;
        match self.hashes_at_checkpoints.iter().map(|c| c.seq).max() {
            Some(seq) if seq > last => Err(ChainBreak::Truncated { seq, last }),
            _ => Ok(()),
        }
    }
}

/// What a whole chain's verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    pub rows: u64,
    /// Keyed rows not checked for want of the audit key.
    pub unauthenticated: u64,
    pub segments: u64,
}

/// Verifies a store's whole chain, reading it in pages; keyed rows are
/// checked with `key` when given. `checkpoints` is `None` when a checkpoint
/// file is configured but missing.
pub async fn verify(
    store: &mut dyn Store,
    checkpoints: Option<Vec<Checkpoint>>,
    key: Option<&HmacKey>,
) -> Result<Result<Verified, ChainBreak>, StoreError> {
    const PAGE: u32 = 5_000;
    let expected = checkpoints.is_some();
    let mut verifier = ChainVerifier::new(checkpoints.unwrap_or_default(), key);
    // From the very first row, whatever its seq: a forged seq 0 is a gap too.
    let mut after = i64::MIN;
    loop {
        let page = store.audit_records(after, PAGE).await?;
        for record in &page {
            if let Err(brk) = verifier.feed(record) {
                return Ok(Err(brk));
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = last.seq,
            _ => break,
        }
    }
    if !expected && verifier.rows > 0 {
        return Ok(Err(ChainBreak::CheckpointsMissing));
    }
    Ok(verifier.finish().map(|()| Verified {
        rows: verifier.rows,
        unauthenticated: verifier.unauthenticated,
        segments: verifier.segments,
    }))
}

/// How many of a chain's last rows a run checks before it appends.
const TAIL_ROWS: i64 = 200;

/// Checks a chain's last rows before a run appends to it: their sequence,
/// their links, their hashes (keyed ones with `key`) and any checkpoint
/// among them. A run never appends to a broken chain, nor to one whose
/// checkpoint file is configured but gone (`checkpoints` is `None`) unless
/// the run `run_id` began the chain: a new file would vouch for whatever
/// the chain holds by then.
pub async fn check_tail(
    store: &mut dyn Store,
    checkpoints: Option<&[Checkpoint]>,
    run_id: &str,
    key: Option<&HmacKey>,
) -> Result<Result<Tail, ChainBreak>, StoreError> {
    let Some(head) = store.audit_head().await? else {
        return Ok(Ok(Tail::Empty));
    };
    if checkpoints.is_none() && !began_chain(store, run_id).await? {
        return Ok(Err(ChainBreak::CheckpointsMissing));
    }
    let checkpoints = checkpoints.unwrap_or_default();
    let rows = store
        .audit_records(
            (head.seq - TAIL_ROWS).max(i64::MIN + 1),
            TAIL_ROWS as u32 + 1,
        )
        .await?;
    // From the newest segment row on, if one is among them: a segment
    // started after a break (on purpose, recorded) is where trust restarts.
    // `audit verify` still reports the break before it.
    let start = rows
        .iter()
        .rposition(|r| r.entry.event == AuditEvent::Segment)
        .unwrap_or(0);
    let rows = &rows[start..];
    let Some(first) = rows.first() else {
        return Ok(Ok(Tail::Empty));
    };
    let mut verifier = ChainVerifier::resume(first, checkpoints.to_vec(), key);
    for record in rows {
        if let Err(brk) = verifier.feed(record) {
            return Ok(Err(brk));
        }
    }
    if rows.last().map(|r| r.seq) != Some(head.seq) {
        return Ok(Err(ChainBreak::Gap {
            seq: head.seq,
            expected: verifier.expected_seq,
        }));
    }
    Ok(Ok(verifier.tail()))
}

/// This machine's name, for the audit trail. From gethostname(2), which a
/// hardened service can call where /proc/sys is hidden.
pub fn host_name() -> String {
    let name = gethostname::gethostname().to_string_lossy().into_owned();
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn entry(rows: i64) -> AuditEntry {
        AuditEntry {
            run_id: "r1".into(),
            event: AuditEvent::Batch,
            rule_id: "rule".into(),
            store: "crm".into(),
            table_name: "public.contacts".into(),
            action: "delete".into(),
            rows,
            key_from: None,
            key_to: Some("[10]".into()),
            as_of: "2026-01-01T00:00:00Z".parse().unwrap(),
            cutoff: "created < 2025-01-01".into(),
            rule_hash: "ab".into(),
            key_id: None,
            at: "2026-01-01T00:00:01.1234567Z".parse().unwrap(),
            host: "h".into(),
            version: "0.1.0".into(),
            detail: "{}".into(),
        }
    }

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut records: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let tail = records.last().map(|r| ChainLink {
                seq: r.seq,
                row_hash: r.row_hash.clone(),
                at: r.entry.at,
            });
            records.push(seal(tail.as_ref(), entry(i), None));
        }
        records
    }

    fn check(records: &[AuditRecord], checkpoints: Vec<Checkpoint>) -> Result<u64, ChainBreak> {
        let mut verifier = ChainVerifier::new(checkpoints, None);
        for r in records {
            verifier.feed(r)?;
        }
        verifier.finish().map(|()| verifier.rows)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let records = chain(4);
        assert_eq!(records[0].prev_hash, GENESIS);
        assert_eq!(
            records[0].entry.at,
            "2026-01-01T00:00:01.123456Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
        );
        assert_eq!(check(&records, vec![]), Ok(4));
    }

    #[test]
    fn tampering_is_found_at_the_first_bad_row() {
        let mut edited = chain(4);
        edited[2].entry.rows = 99;
        assert_eq!(check(&edited, vec![]), Err(ChainBreak::Content { seq: 3 }));

        let mut deleted = chain(4);
        deleted.remove(1);
        assert_eq!(
            check(&deleted, vec![]),
            Err(ChainBreak::Gap {
                seq: 3,
                expected: 2
            })
        );

        // Swapping two rows and renumbering them breaks the links.
        let mut swapped = chain(4);
        swapped.swap(1, 2);
        swapped[1].seq = 2;
        swapped[2].seq = 3;
        assert_eq!(check(&swapped, vec![]), Err(ChainBreak::Link { seq: 2 }));

        // A rewritten chain is consistent in itself but not with a checkpoint.
        let original = chain(4);
        let checkpoint = Checkpoint {
            store: "crm".into(),
            seq: 4,
            row_hash: original[3].row_hash.clone(),
        };
        let mut rewritten: Vec<AuditRecord> = Vec::new();
        for (i, r) in original.iter().enumerate() {
            let mut e = r.entry.clone();
            if i == 1 {
                e.rows = 0;
            }
            let tail = rewritten.last().map(|r| ChainLink {
                seq: r.seq,
                row_hash: r.row_hash.clone(),
                at: r.entry.at,
            });
            rewritten.push(seal(tail.as_ref(), e, None));
        }
        assert_eq!(check(&rewritten, vec![]), Ok(4));
        assert_eq!(
            check(&rewritten, vec![checkpoint.clone()]),
            Err(ChainBreak::Checkpoint { seq: 4 })
        );
        assert_eq!(
            check(&original[..3], vec![checkpoint]),
            Err(ChainBreak::Truncated { seq: 4, last: 3 })
        );
    }

    #[test]
    fn checkpoints_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads");
        let records = chain(2);
        let link = |r: &AuditRecord| ChainLink {
            seq: r.seq,
            row_hash: r.row_hash.clone(),
            at: r.entry.at,
        };
        write_checkpoint(&path, "crm", &link(&records[0])).unwrap();
        write_checkpoint(&path, "other", &link(&records[0])).unwrap();
        write_checkpoint(&path, "crm", &link(&records[1])).unwrap();
        let heads = read_checkpoints(&path, "crm").unwrap().unwrap();
        assert_eq!(heads.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(heads[1].row_hash, records[1].row_hash);
        assert!(
            read_checkpoints(&dir.path().join("none"), "crm")
                .unwrap()
                .is_none()
        );
        std::fs::write(&path, "crm\t1\tnot-a-hash\n").unwrap();
        let err = read_checkpoints(&path, "crm").unwrap_err().to_string();
        assert!(err.ends_with("heads:1: not a checkpoint line"), "{err}");
    }
}
