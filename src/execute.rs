//! Runs a [`Step`]: guards first, then batches along the walk key, each
//! batch one transaction holding its change and its audit row.
//!
//! Invariants: the due condition is inside each mutating statement (never
//! "select ids, then delete by id"); no batch re-reads what earlier batches
//! passed; a stop request ends the run after the batch in flight; a crash
//! loses at most that batch, and the next run simply finds the rest due.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::audit::{self, AuditEntry, AuditEvent, Tail};
use crate::metrics;
use crate::operate::Limits;
pub use crate::operate::Shutdown;
pub use crate::outcome::{Status, StepReport, Trigger};
use crate::partition;
use crate::plan::{Step, StepAction};
use crate::pseudonym::HmacKey;
use crate::store::{Changed, Counts, Key, KeyEnd, KeyValue, Store, StoreError, Window};
use crate::walk::Walk;

/// How often a batch that met a row lock is tried before it is skipped.
const LOCK_ATTEMPTS: u32 = 3;

/// Hears how a run goes, batch by batch: a terminal's progress bars. The
/// daemon and programs reading JSON pass none.
pub trait Progress: Send + Sync {
    /// A rule's batches begin; `due` is what its count found, if it counted.
    fn begin(&self, rule: &str, due: Option<u64>);
    /// A batch of the rule committed, changing `rows` rows.
    fn advance(&self, rule: &str, rows: u64);
    /// The rule's batches are over.
    fn end(&self, rule: &str, report: &StepReport);
}

/// What every step of one invocation shares.
pub struct RunContext<'a> {
    pub run_id: String,
    /// The audit chain's key; `None` keeps an unkeyed chain.
    pub audit_key: Option<&'a HmacKey>,
    /// The checkpoint file, whose heads the chain's tail is checked against.
    pub audit_checkpoints: Option<&'a std::path::Path>,
    /// How far this host's clock and a database server's may differ.
    pub max_clock_skew: Duration,
    pub key: Option<&'a HmacKey>,
    pub host: String,
    pub shutdown: Shutdown,
    pub trigger: Trigger,
    /// SHA-256 of the approved plan file the run follows, if any: recorded
    /// in every audit row of the run.
    pub plan: Option<String>,
    /// Where progress goes; with it, every rule is counted first so that
    /// progress can say how much is left.
    pub progress: Option<&'a dyn Progress>,
    /// When runs stop short (the stop file, `--max-duration`), besides each
    /// step's window.
    pub limits: Limits,
}

/// Why a step did not run at all. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "rule {rule}: {due} rows are due, more than max_rows = {max_rows}; nothing was changed"
    )]
    MaxRows {
        rule: String,
        due: u64,
        max_rows: u64,
    },
    #[error(
        "rule {rule}: this host's clock ({now}) is {skew} {direction} the clock of store {store}'s server ({server}), more than max_clock_skew_ms allows; one of them is wrong (check NTP on both) and nothing was changed"
    )]
    ClockSkew {
        rule: String,
        store: String,
        now: DateTime<Utc>,
        server: DateTime<Utc>,
        skew: String,
        direction: &'static str,
    },
    #[error(
        "rule {rule}: the audit trail of store {store} is broken ({reason}); nothing was changed. Find out what happened, then `glemsel audit segment --store {store} --reason ...` starts a new segment after the break"
    )]
    BrokenTrail {
        rule: String,
        store: String,
        reason: String,
    },
    #[error(
        "rule {rule}: the audit trail of store {store} is not keyed, and an audit key is configured; `glemsel audit segment --store {store} --reason ...` starts a keyed segment (on purpose, recorded, never silently)"
    )]
    TrailNotKeyed { rule: String, store: String },
    #[error(
        "rule {rule}: the audit trail of store {store} is keyed (or its last rows were edited), and no audit key is configured; set audit_key_file or audit_key_credential"
    )]
    TrailKeyed { rule: String, store: String },
    #[error(
        "rule {rule}: store {store} must not be written through: {reasons}; nothing was changed"
    )]
    Unsafe {
        rule: String,
        store: String,
        reasons: String,
    },
    #[error(
        "rule {rule}: the run reached max_rows = {max_rows}; the batch that would pass it was rolled back"
    )]
    MaxRowsReached { rule: String, max_rows: u64 },
    #[error("rule {rule}: a stop was requested before the run began")]
    Stopped { rule: String },
    #[error("rule {rule}: not run, {reason}; its rows stay due for the next run")]
    Halted { rule: String, reason: String },
    #[error("rule {rule}: another worker holds its lock; skipped")]
    LockHeld { rule: String },
    #[error("rule {rule}: pseudonymising needs the HMAC key, and none was loaded")]
    NoKey { rule: String },
}

/// A step that did not finish as planned.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StepError {
    /// A short, data-free description for the audit trail.
    pub fn audit_code(&self) -> String {
        match self {
            StepError::Refused(refusal) => refusal.to_string(),
            StepError::Store(err) => err.audit_code(),
        }
    }

    /// Whether the lock to a row was not had in time.
    fn is_lock_timeout(&self) -> bool {
        matches!(self, StepError::Store(err) if err.is_lock_timeout())
    }
}

/// A window bound for the audit trail. Integer keys carry no personal
/// data and are written as they are; other keys (an e-mail, a customer
/// number) only as keyed hashes, or not at all when no key is loaded.
fn key_json(key: &Option<Key>, hmac: Option<&HmacKey>) -> Option<String> {
    let values: Vec<serde_json::Value> = key
        .as_ref()?
        .iter()
        .map(|value| match value {
            KeyValue::Int(i) => Some(serde_json::json!(i)),
            KeyValue::UInt(u) => Some(serde_json::json!(u)),
            KeyValue::Text(text) => {
                hmac.map(|k| serde_json::json!(format!("hmac:{}", k.audit_hash(text))))
            }
        })
        .collect::<Option<_>>()?;
    Some(serde_json::Value::Array(values).to_string())
}

/// The textual due condition, as recorded in the trail.
pub fn cutoff_text(step: &Step) -> String {
    format!(
        "{} < {}",
        step.due.event.describe(&step.joins),
        step.due.bound
    )
}

/// Checks the audit chain's last rows before anything is appended: a run
/// never appends to a broken chain, and never switches a chain between
/// keyed and unkeyed by itself. A new trail with an audit key starts with
/// a keyed segment row.
async fn check_trail(
    store: &mut dyn Store,
    step: &Step,
    ctx: &RunContext<'_>,
) -> Result<(), StepError> {
    let checkpoints = audit::checkpoints_of(ctx.audit_checkpoints, &step.store).map_err(|err| {
        StoreError::Config {
            store: step.store.clone(),
            message: format!("cannot read the audit checkpoint file: {err}"),
        }
    })?;
    let (rule, store_name) = (step.rule_id.clone(), step.store.clone());
    match audit::check_tail(store, checkpoints.as_deref(), &ctx.run_id, ctx.audit_key).await? {
        Err(brk) => Err(Refusal::BrokenTrail {
            rule,
            store: store_name,
            reason: brk.to_string(),
        }
        .into()),
        Ok(Tail::Empty) => {
            if let Some(key) = ctx.audit_key {
                let segment = segment_row(
                    &ctx.run_id,
                    &ctx.host,
                    &step.store,
                    Some(key),
                    "a new trail",
                    "empty",
                );
                append_alone(store, segment, Some(key)).await?;
            }
            Ok(())
        }
        Ok(Tail::Unkeyed) if ctx.audit_key.is_some() => Err(Refusal::TrailNotKeyed {
            rule,
            store: store_name,
        }
        .into()),
        Ok(Tail::Keyed { .. }) if ctx.audit_key.is_none() => Err(Refusal::TrailKeyed {
            rule,
            store: store_name,
        }
        .into()),
        Ok(_) => Ok(()),
    }
}

/// A segment row of `store`'s chain: keyed under `key`, or unkeyed, with
/// the operator's reason and what the chain looked like (`found`).
pub fn segment_row(
    run_id: &str,
    host: &str,
    store: &str,
    key: Option<&HmacKey>,
    reason: &str,
    found: &str,
) -> AuditEntry {
    let detail = audit::SegmentDetail {
        chain: if key.is_some() {
            audit::KEYED
        } else {
            audit::UNKEYED
        }
        .to_string(),
        audit_key_id: key.map(|k| k.id().to_string()),
        reason: reason.to_string(),
        found: found.to_string(),
    };
    let now = audit::now();
    AuditEntry {
        run_id: run_id.to_string(),
        event: AuditEvent::Segment,
        rule_id: String::new(),
        store: store.to_string(),
        table_name: String::new(),
        action: "segment".into(),
        rows: 0,
        key_from: None,
        key_to: None,
        as_of: now,
        cutoff: String::new(),
        rule_hash: String::new(),
        key_id: None,
        at: now,
        host: host.to_string(),
        version: crate::VERSION.into(),
        detail: serde_json::to_string(&detail).expect("segment details serialise"),
    }
}

/// Refuses when this host's clock and the database server's differ by more
/// than `tolerance`, in either direction: a clock ahead deletes early, and
/// one behind writes a trail out of order.
async fn check_clocks(
    store: &mut dyn Store,
    step: &Step,
    tolerance: Duration,
) -> Result<(), StepError> {
    let Some(server) = store.server_time().await? else {
        return Ok(());
    };
    let now = Utc::now();
    let skew = now - server;
    if skew.abs().to_std().unwrap_or(Duration::MAX) <= tolerance {
        return Ok(());
    }
    Err(Refusal::ClockSkew {
        rule: step.rule_id.clone(),
        store: step.store.clone(),
        now,
        server,
        skew: format!("{} s", skew.num_seconds().abs()),
        direction: if skew > chrono::TimeDelta::zero() {
            "ahead of"
        } else {
            "behind"
        },
    }
    .into())
}

/// Runs one step against its store.
pub async fn run_step(
    store: &mut dyn Store,
    step: &Step,
    ctx: &RunContext<'_>,
) -> Result<StepReport, StepError> {
    let key = match (&step.action, ctx.key) {
        (StepAction::Pseudonymise { .. }, None) => {
            return Err(Refusal::NoKey {
                rule: step.rule_id.clone(),
            }
            .into());
        }
        (StepAction::Pseudonymise { .. }, Some(key)) => Some(key),
        (StepAction::Delete | StepAction::Anonymise { .. }, _) => None,
    };
    if let Some(halt) = ctx.limits.halt(step.window.as_ref(), Utc::now()) {
        return Err(Refusal::Halted {
            rule: step.rule_id.clone(),
            reason: halt.to_string(),
        }
        .into());
    }
    if !store.try_lock(&step.rule_id).await? {
        return Err(Refusal::LockHeld {
            rule: step.rule_id.clone(),
        }
        .into());
    }
    let result = run_locked(store, step, ctx, key).await;
    if let Err(err) = store.unlock(&step.rule_id).await {
        tracing::warn!(rule = %step.rule_id, error = %err, "could not release the rule lock; it ends with the connection");
    }
    match &result {
        Ok(report) => metrics::run_ended(report),
        // Another worker is running the rule, or it may not run now: a
        // skip, not a failure.
        Err(StepError::Refused(Refusal::LockHeld { .. } | Refusal::Halted { .. })) => {}
        Err(_) => metrics::run_failed(&step.rule_id),
    }
    result
}

async fn run_locked(
    store: &mut dyn Store,
    step: &Step,
    ctx: &RunContext<'_>,
    key: Option<&HmacKey>,
) -> Result<StepReport, StepError> {
    let counted = guards(store, step, ctx).await?;
    let started = Instant::now();
    let entries = Entries { step, ctx, key };
    let mut start_detail = serde_json::json!({ "counted": counted, "trigger": ctx.trigger });
    if let Some(plan) = &ctx.plan {
        start_detail["plan"] = serde_json::json!(plan);
    }
    let start_detail = start_detail.to_string();
    append_alone(
        store,
        entries.entry(AuditEvent::RunStart, 0, None, start_detail),
        ctx.audit_key,
    )
    .await?;
    tracing::info!(rule = %step.rule_id, store = %step.store, table = %step.table, due = counted.as_ref().map(|c| c.due), held = counted.as_ref().map(|c| c.held), "run started");
    if let Some(progress) = ctx.progress {
        progress.begin(&step.rule_id, counted.as_ref().map(|c| c.due));
    }
    let mut report = new_report(step, ctx, counted);
    let failure = match drop_partitions(store, step, &entries, &mut report).await {
        Err(err) => Some(err),
        Ok(false) => None,
        Ok(true) => match Walk::start(store, step).await {
            Ok(walk) => walk_windows(store, step, &entries, walk, &mut report)
                .await
                .err(),
            Err(err) => Some(err.into()),
        },
    };
    finish_run(store, step, &entries, report, failure, started).await
}

/// The checks before anything is written: the connection may be written
/// through, the clocks agree, the due rows are within `max_rows`, the trail
/// is intact. Returns the counts when a guard or the progress needed them.
async fn guards(
    store: &mut dyn Store,
    step: &Step,
    ctx: &RunContext<'_>,
) -> Result<Option<Counts>, StepError> {
    let reasons = store.refusals().await?;
    if !reasons.is_empty() {
        return Err(Refusal::Unsafe {
            rule: step.rule_id.clone(),
            store: step.store.clone(),
            reasons: reasons.join("; "),
        }
        .into());
    }
    check_clocks(store, step, ctx.max_clock_skew).await?;
    // Counting scans the table, which costs about as much as the run: only
    // what a guard checks or the trail reports (what holds kept) is counted.
    let counted = if step.max_rows.is_some() || !step.holds.is_empty() || ctx.progress.is_some() {
        // A stop must not wait for the scan.
        Some(tokio::select! {
            counted = store.count(step) => counted?,
            () = ctx.shutdown.requested() => return Err(Refusal::Stopped { rule: step.rule_id.clone() }.into()),
        })
    } else {
        None
    };
    if let (Some(max_rows), Some(counted)) = (step.max_rows, &counted)
        && counted.due > max_rows
    {
        return Err(Refusal::MaxRows {
            rule: step.rule_id.clone(),
            due: counted.due,
            max_rows,
        }
        .into());
    }
    store.ensure_audit_table().await?;
    check_trail(store, step, ctx).await?;
    if let Some(newest) = store.audit_head().await? {
        // A trail from the future means a clock was ahead once. The clocks
        // agree now (checked above), so that run must not block every run
        // until real time catches up; it is worth a look, not a refusal.
        let now = Utc::now();
        if now + ctx.max_clock_skew < newest.at {
            tracing::warn!(rule = %step.rule_id, store = %step.store, newest = %newest.at, now = %now, "the newest audit row is later than the clock: an earlier run had a clock that was ahead");
        }
    }
    Ok(counted)
}

/// The audit entries of one step's run.
struct Entries<'s, 'c> {
    step: &'s Step,
    ctx: &'s RunContext<'c>,
    key: Option<&'s HmacKey>,
}

impl Entries<'_, '_> {
    fn entry(
        &self,
        event: AuditEvent,
        rows: u64,
        window: Option<&Window>,
        detail: String,
    ) -> AuditEntry {
        let (step, ctx, key) = (self.step, self.ctx, self.key);
        AuditEntry {
            run_id: ctx.run_id.clone(),
            event,
            rule_id: step.rule_id.clone(),
            store: step.store.clone(),
            table_name: step.table.to_string(),
            action: step.action.as_str().into(),
            rows: rows as i64,
            key_from: window.and_then(|w| key_json(&w.after, ctx.key)),
            key_to: window.and_then(|w| key_json(&w.through, ctx.key)),
            as_of: step.as_of,
            cutoff: cutoff_text(step),
            rule_hash: step.rule_fingerprint.clone(),
            key_id: key.map(|k| k.id().to_string()),
            at: audit::now(),
            host: ctx.host.clone(),
            version: crate::VERSION.into(),
            detail,
        }
    }
}

/// A report of nothing done yet.
fn new_report(step: &Step, ctx: &RunContext<'_>, counted: Option<Counts>) -> StepReport {
    StepReport {
        rule_id: step.rule_id.clone(),
        trigger: ctx.trigger,
        store: step.store.clone(),
        table: step.table.to_string(),
        action: step.action.as_str(),
        status: Status::Completed,
        counted,
        rows_changed: 0,
        partitions_dropped: 0,
        cascaded: Changed::none(step).cascaded,
        batches: 0,
        windows: 0,
        windows_skipped: 0,
        longest_batch_ms: 0,
        batch_seconds: 0.0,
        seconds: 0.0,
        error: None,
        halted: None,
        vacuumed: None,
        plan: ctx.plan.clone(),
    }
}

/// Drops the partitions whose whole range is due, one short step each,
/// before the walk purges the rest row by row. Each waits for the same
/// window, load, lag and stop checks as a batch. Whether the walk should
/// follow: not when no due row is left, nor after a stop, a limit, or a
/// partition left for next run (the table was busy, or it changed):
/// purging its rows one by one instead would be the long, bloating work
/// dropping it avoids.
async fn drop_partitions(
    store: &mut dyn Store,
    step: &Step,
    entries: &Entries<'_, '_>,
    report: &mut StepReport,
) -> Result<bool, StepError> {
    let Some(survey) = partition::survey(store, step, false).await? else {
        return Ok(true);
    };
    // Partitions an interrupted run took out of the table and did not
    // drop: their rows are in tables of their own, out of the batches'
    // reach, so they are finished first.
    let held = &survey.held;
    if let Some(reason) = &survey.row_by_row {
        for held in held {
            tracing::warn!(rule = %step.rule_id, partition = %held.partition, held = %held.held, reason = %reason, "a partition an interrupted run took out of the table is held, not dropped: it is no longer dropped whole; put it back or drop it by hand");
        }
        tracing::info!(rule = %step.rule_id, table = %step.table, reason = %reason, "partitioned table purged row by row");
        return Ok(true);
    }
    let ctx = entries.ctx;
    let work = held
        .iter()
        .map(Work::Held)
        .chain(survey.to_drop().map(|v| Work::Partition(&v.partition)));
    for work in work {
        let first = report.partitions_dropped == 0;
        let halted = ctx
            .limits
            .before_batch(store, step, &ctx.shutdown, first)
            .await;
        if ctx.shutdown.is_requested() || halted.is_some() {
            report.status = Status::Stopped;
            report.halted = halted.map(|halt| halt.to_string());
            return Ok(false);
        }
        // A held partition whose rows an earlier run audited writes no
        // audit row now: no batch.
        let audits = !matches!(work, Work::Held(held) if held.audited);
        let (name, dropped) = match work {
            Work::Held(held) => {
                let started = Instant::now();
                let entry = partition_entry(entries, started);
                let rows = partition::finish_held(
                    store,
                    held,
                    &entry,
                    partition::Stage::Recovered,
                    ctx.audit_key,
                )
                .await?;
                note_batch_time(report, started);
                tracing::info!(rule = %step.rule_id, partition = %held.partition, held = %held.held, rows, "a partition an interrupted run took out is dropped");
                (held.partition.clone(), Some(rows))
            }
            Work::Partition(partition) => (
                partition.name.to_string(),
                drop_partition(store, step, entries, partition, report).await?,
            ),
        };
        let Some(rows) = dropped else {
            tracing::warn!(rule = %step.rule_id, partition = %name, "the partition was not dropped (the table stayed busy, or the partition changed); it is due next run, and this run stops here");
            report.status = Status::Partial;
            return Ok(false);
        };
        report.rows_changed += rows;
        report.batches += u64::from(audits);
        report.partitions_dropped += 1;
        if let Some(progress) = ctx.progress {
            progress.advance(&step.rule_id, rows);
        }
        tracing::info!(rule = %step.rule_id, partition = %name, rows, "partition dropped whole");
    }
    // With the expired partitions gone, the rows left to purge are few or
    // none; one lookup (pruned to the partitions that can hold due rows)
    // spares a walk through the months that are not due.
    if report.partitions_dropped > 0 && store.due_key(step, KeyEnd::Last).await?.is_none() {
        return Ok(false);
    }
    Ok(true)
}

/// A partition to drop whole: one an interrupted run left held, or one
/// whose whole range is due.
enum Work<'a> {
    Held(&'a crate::store::HeldPartition),
    Partition(&'a crate::store::RangePartition),
}

/// The audit rows of a partition dropped whole: `batch` rows naming it
/// and its bounds; the intent row counts nothing, the drop's its rows.
fn partition_entry<'a>(
    entries: &'a Entries<'_, '_>,
    started: Instant,
) -> impl Fn(partition::Record<'_>) -> AuditEntry + Sync + 'a {
    move |record: partition::Record<'_>| {
        let held = record.held;
        let mut detail = serde_json::json!({
            "partition": held.partition,
            "bounds": held.bounds,
        });
        if held.held.to_string() != held.partition {
            detail["held"] = serde_json::json!(held.held.name);
        }
        match record.stage {
            partition::Stage::Intent => {
                detail["intent"] = serde_json::json!("take out, count and drop whole");
            }
            partition::Stage::Dropped | partition::Stage::Recovered => {
                detail["dropped"] = serde_json::json!("whole");
                detail["ms"] = serde_json::json!(started.elapsed().as_millis() as u64);
            }
        }
        if record.stage == partition::Stage::Recovered {
            detail["finished"] = serde_json::json!("taken out by an interrupted run");
        }
        if let Some(plan) = &entries.ctx.plan {
            detail["plan"] = serde_json::json!(plan);
        }
        entries.entry(AuditEvent::Batch, record.rows, None, detail.to_string())
    }
}

fn note_batch_time(report: &mut StepReport, started: Instant) {
    report.longest_batch_ms = report
        .longest_batch_ms
        .max(started.elapsed().as_millis() as u64);
    report.batch_seconds += started.elapsed().as_secs_f64();
}

/// Drops one partition with its audit rows, tried again while the table
/// is busy; `None` when it stayed busy (or the partition changed).
async fn drop_partition(
    store: &mut dyn Store,
    step: &Step,
    entries: &Entries<'_, '_>,
    partition: &crate::store::RangePartition,
    report: &mut StepReport,
) -> Result<Option<u64>, StepError> {
    let ctx = entries.ctx;
    let mut attempt = 1;
    loop {
        let started = Instant::now();
        let entry = partition_entry(entries, started);
        let dropped =
            partition::drop_with_audit(store, step, partition, &entry, ctx.audit_key, attempt > 1)
                .await;
        note_batch_time(report, started);
        match dropped {
            Err(err) if err.is_lock_timeout() && attempt < LOCK_ATTEMPTS => {
                tracing::info!(rule = %step.rule_id, partition = %partition.name, attempt, "the table is busy; trying the partition again");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(err) if err.is_lock_timeout() => return Ok(None),
            Err(err) => return Err(err.into()),
            Ok(rows) => return Ok(rows),
        }
    }
}

/// Walks the step's table window by window until the walk ends, a stop is
/// asked for or a batch fails.
async fn walk_windows(
    store: &mut dyn Store,
    step: &Step,
    entries: &Entries<'_, '_>,
    mut walk: Walk,
    report: &mut StepReport,
) -> Result<(), StepError> {
    let ctx = entries.ctx;
    let mut after: Option<Key> = None;
    loop {
        let first = report.windows == 0 && report.windows_skipped == 0;
        let halted = ctx
            .limits
            .before_batch(store, step, &ctx.shutdown, first)
            .await;
        if ctx.shutdown.is_requested() {
            report.status = Status::Stopped;
            return Ok(());
        }
        if let Some(halt) = halted {
            tracing::info!(rule = %step.rule_id, reason = %halt, "stopping after the last committed batch; the rest is due next run");
            report.status = Status::Stopped;
            report.halted = Some(halt.to_string());
            return Ok(());
        }
        if let Some(skipped_to) = walk.skip(after.as_ref()) {
            after = Some(skipped_to);
        }
        let through = match walk.window_end(store, step, after.as_ref()).await {
            Ok(through) => through,
            Err(err) => return Err(err.into()),
        };
        let window = Window {
            after: after.clone(),
            through: through.clone(),
        };
        let next = match run_window(store, step, entries, &mut walk, &window, report).await {
            Ok(next) => next,
            Err(err) => return Err(err),
        };
        if let Next::Within(resume_after) = next {
            // Due rows may remain in this window: the next, smaller window
            // starts after the last row this batch took, or, where that is
            // not known, the same window is run again (the rows this batch
            // changed are no longer due, so nothing is changed twice).
            match resume_after {
                Some(resume_after) => after = Some(resume_after),
                None => walk.unfinished(through),
            }
            continue;
        }
        if through.is_none() {
            return Ok(());
        }
        if through == after {
            // A key that does not survive the round trip would loop forever.
            return Err(StepError::Store(StoreError::invalid(
                &step.store,
                "window",
                "the walk along the key made no progress".into(),
            )));
        }
        after = through;
    }
}

/// Where the walk goes on after one window's batch.
enum Next {
    /// After the window.
    AfterWindow,
    /// Within it: the batch stopped at its limit, so due rows may remain.
    /// It took every due row up to the key, when known.
    Within(Option<Key>),
}

/// One window's batch, tried again while it meets row locks; a window that
/// stays locked is skipped (its rows stay due).
async fn run_window(
    store: &mut dyn Store,
    step: &Step,
    entries: &Entries<'_, '_>,
    walk: &mut Walk,
    window: &Window,
    report: &mut StepReport,
) -> Result<Next, StepError> {
    let ctx = entries.ctx;
    let limit = walk.limit();
    let mut attempt = 1;
    loop {
        let batch_started = Instant::now();
        let changed_so_far = report.rows_changed;
        // Until the commit: what is left of the batch's time is the commit's.
        let mut before_commit = Duration::ZERO;
        let outcome = match store.begin().await {
            Err(err) => Err(StepError::Store(err)),
            Ok(()) => {
                let result = batch(
                    store,
                    step,
                    entries,
                    window,
                    limit,
                    changed_so_far,
                    batch_started,
                )
                .await;
                before_commit = batch_started.elapsed();
                finish_transaction(store, result).await
            }
        };
        let batch_ms = batch_started.elapsed().as_millis() as u64;
        report.longest_batch_ms = report.longest_batch_ms.max(batch_ms);
        report.batch_seconds += batch_started.elapsed().as_secs_f64();
        match outcome {
            Ok(changed) => {
                let rows = changed.rows;
                report.windows += 1;
                report.rows_changed += rows;
                report.batches += u64::from(rows > 0);
                for (total, batch) in report.cascaded.iter_mut().zip(&changed.cascaded) {
                    total.rows += batch.rows;
                }
                // A limited batch that changed nothing would repeat forever.
                let limited = changed.limited && rows > 0;
                walk.record(batch_started.elapsed(), rows, limited);
                if let (Some(progress), true) = (ctx.progress, rows > 0) {
                    progress.advance(&step.rule_id, rows);
                }
                if rows > 0 {
                    metrics::batch_committed(&step.rule_id, batch_started.elapsed().as_secs_f64());
                }
                let elapsed = batch_started.elapsed();
                tracing::debug!(rule = %step.rule_id, rows, limit, ms = elapsed.as_millis() as u64, commit_ms = (elapsed - before_commit).as_millis() as u64, "batch committed");
                return Ok(if limited {
                    Next::Within(changed.resume_after)
                } else {
                    Next::AfterWindow
                });
            }
            Err(err) if err.is_lock_timeout() && attempt < LOCK_ATTEMPTS => {
                tracing::info!(rule = %step.rule_id, attempt, "batch met a row lock; trying again");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(err) if err.is_lock_timeout() => {
                tracing::warn!(rule = %step.rule_id, "a batch window stayed locked; its rows stay due for the next run");
                report.windows += 1;
                report.windows_skipped += 1;
                report.status = Status::Partial;
                return Ok(Next::AfterWindow);
            }
            Err(err) => return Err(err),
        }
    }
}

/// One batch inside the transaction the caller opened: the change, the
/// `max_rows` guard, and the batch's audit row.
async fn batch(
    store: &mut dyn Store,
    step: &Step,
    entries: &Entries<'_, '_>,
    window: &Window,
    limit: Option<u64>,
    changed_so_far: u64,
    batch_started: Instant,
) -> Result<Changed, StepError> {
    let ctx = entries.ctx;
    let changed = store.mutate(step, window, entries.key, limit).await?;
    if let Some(max_rows) = step.max_rows
        && changed_so_far + changed.rows > max_rows
    {
        return Err(Refusal::MaxRowsReached {
            rule: step.rule_id.clone(),
            max_rows,
        }
        .into());
    }
    // Every change has its audit row: cascaded rows too.
    if changed.rows > 0 || changed.cascaded.iter().any(|c| c.rows > 0) {
        let mut detail = serde_json::json!({
            "ms": batch_started.elapsed().as_millis() as u64,
            "cascaded": changed.cascaded,
        });
        if let Some(plan) = &ctx.plan {
            detail["plan"] = serde_json::json!(plan);
        }
        let batch = entries.entry(
            AuditEvent::Batch,
            changed.rows,
            Some(window),
            detail.to_string(),
        );
        audit::append(store, batch, ctx.audit_key).await?;
    }
    Ok(changed)
}

/// After the last batch: the status, VACUUM when asked, the run_finish
/// audit row. Committed batches stand whatever failed; the report says
/// what they did.
async fn finish_run(
    store: &mut dyn Store,
    step: &Step,
    entries: &Entries<'_, '_>,
    mut report: StepReport,
    failure: Option<StepError>,
    started: Instant,
) -> Result<StepReport, StepError> {
    let ctx = entries.ctx;
    if let Some(err) = &failure {
        report.status = match err {
            StepError::Refused(Refusal::MaxRowsReached { .. }) => Status::Refused,
            _ => Status::Failed,
        };
        report.error = Some(err.audit_code());
    }
    if step.vacuum_after && report.rows_changed > 0 {
        // Outside any transaction, after the last batch committed.
        let vacuumed = store.vacuum(&step.table).await;
        if let Err(err) = &vacuumed {
            tracing::warn!(rule = %step.rule_id, table = %step.table, error = %err, "could not reclaim the old row versions; run VACUUM on the table");
        }
        report.vacuumed = Some(vacuumed.is_ok());
    }
    report.seconds = started.elapsed().as_secs_f64();
    if let Some(progress) = ctx.progress {
        progress.end(&step.rule_id, &report);
    }
    let finish_detail = serde_json::to_string(&report).expect("reports serialise");
    let finish = append_alone(
        store,
        entries.entry(
            AuditEvent::RunFinish,
            report.rows_changed,
            None,
            finish_detail,
        ),
        ctx.audit_key,
    )
    .await;
    match (failure, finish) {
        // Committed batches stand; the report says what they did.
        (Some(err), finish) => {
            tracing::error!(rule = %step.rule_id, rows = report.rows_changed, error = %err, "run failed");
            if let Err(finish) = finish {
                tracing::warn!(rule = %step.rule_id, error = %finish, "could not record the failed run in the audit trail");
            }
            Ok(report)
        }
        // The batches committed; only the finish row is missing.
        (None, Err(err)) => {
            tracing::error!(rule = %step.rule_id, error = %err, "could not record the end of the run in the audit trail");
            report.status = Status::Failed;
            report.error = Some(err.audit_code());
            Ok(report)
        }
        (None, Ok(_)) => {
            tracing::info!(rule = %step.rule_id, rows = report.rows_changed, batches = report.batches, status = ?report.status, "run finished");
            Ok(report)
        }
    }
}

/// Records, in the trail, a run of `rule` that could not start (its table
/// no longer matches it, say). `reason` must hold no row values.
pub async fn record_failure(
    store: &mut dyn Store,
    rule: &crate::rules::Rule,
    ctx: &RunContext<'_>,
    reason: &str,
) -> Result<(), StoreError> {
    store.ensure_audit_table().await?;
    let detail =
        serde_json::json!({ "status": Status::Failed, "trigger": ctx.trigger, "error": reason });
    let entry = AuditEntry {
        run_id: ctx.run_id.clone(),
        event: AuditEvent::RunFinish,
        rule_id: rule.id.clone(),
        store: rule.store.clone(),
        table_name: rule.table.to_string(),
        action: rule.action.as_str().into(),
        rows: 0,
        key_from: None,
        key_to: None,
        as_of: audit::now(),
        cutoff: String::new(),
        rule_hash: rule.fingerprint.clone(),
        key_id: None,
        at: audit::now(),
        host: ctx.host.clone(),
        version: crate::VERSION.into(),
        detail: detail.to_string(),
    };
    // Only onto a chain that is intact and hashed the way this run would.
    // A file that cannot be read is checked as empty: this row records a
    // failure, and losing it would hide that.
    let checkpoints =
        audit::checkpoints_of(ctx.audit_checkpoints, &rule.store).unwrap_or(Some(Vec::new()));
    match audit::check_tail(store, checkpoints.as_deref(), &ctx.run_id, ctx.audit_key).await? {
        Ok(Tail::Empty | Tail::Unkeyed) if ctx.audit_key.is_none() => {}
        Ok(Tail::Keyed { verified: true }) => {}
        Ok(Tail::Empty) => {
            let key = ctx.audit_key;
            let segment = segment_row(
                &ctx.run_id,
                &ctx.host,
                &rule.store,
                key,
                "a new trail",
                "empty",
            );
            append_alone(store, segment, key).await?;
        }
        _ => {
            tracing::warn!(rule = %rule.id, store = %rule.store, "the audit trail is broken or hashed another way; the failure is not recorded there");
            return Ok(());
        }
    }
    append_alone(store, entry, ctx.audit_key).await.map(|_| ())
}

/// Appends one audit row, keyed under `key` if given, in a transaction of
/// its own.
pub async fn append_alone(
    store: &mut dyn Store,
    entry: AuditEntry,
    key: Option<&HmacKey>,
) -> Result<audit::AuditRecord, StoreError> {
    store.begin().await?;
    let result = audit::append(store, entry, key).await;
    finish_transaction(store, result).await
}

/// Ends the transaction `result` was produced in: commit it on success,
/// roll it back on error.
async fn finish_transaction<T, E: From<StoreError>>(
    store: &mut dyn Store,
    result: Result<T, E>,
) -> Result<T, E> {
    match result {
        Ok(value) => {
            store.commit().await?;
            Ok(value)
        }
        Err(err) => {
            if let Err(rollback) = store.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed; the connection will be dropped");
            }
            Err(err)
        }
    }
}
