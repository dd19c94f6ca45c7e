//! The `erase` commands over a policy: add a request, show its dry run,
//! run, replay, and list where every request stands; and their text.

use std::fmt::Write as _;

use chrono::{NaiveDate, Utc};
use serde::Serialize;

use super::ledger::{self, Entry, Ledger, Request, StatusKind};
use super::run::{self, Context, Mode, RunReport, ledger_place};
use super::{EraseError, Found, subject_hash};
use crate::commands::{self, Stores};
use crate::pseudonym::HmacKey;
use crate::rules::Policy;

/// The erasure locks, each held on the ledger store (across hosts;
/// PostgreSQL and MariaDB) and on a file beside the ledger file (this
/// host, and the only half SQLite has). Taken before the ledger is read,
/// so whoever holds one sees the ledger as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// One run (or replay) at a time, for as long as it takes: a second
    /// would write every status twice.
    Run,
    /// One add at a time, while it numbers its request and appends it:
    /// milliseconds. An add never waits for a run, which may take hours;
    /// a run reads the ledger once and appends statuses only, so a request
    /// recorded meanwhile waits for the next run. (A replay takes it too,
    /// while it writes requests only the file holds back to the store.)
    Add,
}

impl Lock {
    /// The lock's name on the store: the rules' kind of lock, under a name
    /// no rule id can take (rule ids have no spaces).
    fn name(self) -> &'static str {
        match self {
            Lock::Run => "glemsel erasure",
            Lock::Add => "glemsel erasure add",
        }
    }

    /// The lock file's name: the ledger file's, with this after it.
    fn suffix(self) -> &'static str {
        match self {
            Lock::Run => ".lock",
            Lock::Add => ".add.lock",
        }
    }

    fn taken(self) -> EraseError {
        match self {
            Lock::Run => EraseError::Locked,
            Lock::Add => EraseError::AddLocked,
        }
    }
}

/// How long an add waits for another add (or a replay's restore of
/// requests) to append: each takes milliseconds, so a longer wait means
/// one is stuck.
const ADD_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// An erasure lock, held.
struct Held {
    lock: Lock,
    file: std::fs::File,
}

/// Takes `which` lock; waits up to `wait` for it, then refuses.
async fn lock(
    policy: &Policy,
    stores: &mut Stores<'_>,
    which: Lock,
    wait: std::time::Duration,
) -> Result<Held, EraseError> {
    let (name, ledger_file) = ledger_place(policy)?;
    let mut path = ledger_file.as_os_str().to_owned();
    path.push(which.suffix());
    let path = std::path::PathBuf::from(path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|err| EraseError::LedgerFile {
            path: path.display().to_string(),
            message: err.to_string(),
        })?;
    let until = std::time::Instant::now() + wait;
    let pause = std::time::Duration::from_millis(50);
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < until => {
                tokio::time::sleep(pause).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(which.taken()),
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(EraseError::LedgerFile {
                    path: path.display().to_string(),
                    message: err.to_string(),
                });
            }
        }
    }
    let store = stores.get(name).await?;
    while !store.try_lock(which.name()).await? {
        if std::time::Instant::now() >= until {
            return Err(which.taken());
        }
        tokio::time::sleep(pause).await;
    }
    Ok(Held { lock: which, file })
}

/// Releases an erasure lock (the file's goes with the handle).
async fn unlock(policy: &Policy, stores: &mut Stores<'_>, held: Held) {
    if let Ok((name, _)) = ledger_place(policy)
        && let Ok(store) = stores.get(name).await
        && let Err(err) = store.unlock(held.lock.name()).await
    {
        tracing::warn!(error = %err, "could not release the erasure lock; it goes with the connection");
    }
    drop(held.file);
}

/// Today in the deployment's time zone.
pub fn today(policy: &Policy) -> NaiveDate {
    Utc::now()
        .with_timezone(&policy.settings.timezone)
        .date_naive()
}

fn key(policy: &Policy) -> Result<HmacKey, EraseError> {
    commands::load_key(policy)?.ok_or_else(|| {
        EraseError::Usage("erasure needs the key: set key_file or key_credential".into())
    })
}

fn audit_key(policy: &Policy) -> Result<Option<HmacKey>, EraseError> {
    Ok(commands::load_audit_key(policy)?)
}

/// The ledger, its audit table created when missing (a restore from
/// before glemsel's first run leaves none; the file still holds the
/// requests).
async fn open_ledger(policy: &Policy, stores: &mut Stores<'_>) -> Result<Ledger, EraseError> {
    let (name, file) = ledger_place(policy)?;
    let store = stores.get(name).await.map_err(EraseError::from)?;
    store.ensure_audit_table().await?;
    Ledger::load(store, file).await
}

/// `--subject` named no identifier of the rules. What was typed is not
/// repeated: `--subject jens@example.invalid`, a value without its name,
/// is the person's identifier, and an error reaches terminals and logs.
pub fn unknown_identifier(policy: &Policy) -> EraseError {
    let known: Vec<&str> = policy
        .subjects
        .iter()
        .flat_map(|s| s.identifiers.iter().map(String::as_str))
        .collect();
    EraseError::Usage(format!(
        "--subject names no identifier the rules declare ({known:?}); write --subject IDENTIFIER=VALUE, or --subject IDENTIFIER with the value on standard input (what was typed is not repeated here: it may be the person's identifier)"
    ))
}

/// `erase plan REQUEST` named no request. A request id is repeated; any
/// other text is not (`erase plan jens@example.invalid` is a person's
/// address typed where the id goes).
fn no_request(id: &str) -> EraseError {
    let an_id = id
        .strip_prefix("erasure-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    EraseError::Usage(match an_id {
        true => format!("no erasure request {id:?}"),
        false => "no erasure request by that id; ids look like erasure-0001 (erase status lists them; what was typed is not repeated here: it may be the person's identifier)".to_string(),
    })
}

/// Records a request for the person `value` names by `identifier`. The
/// value is hashed here and dropped; only the hash is recorded.
pub async fn add(
    policy: &Policy,
    identifier: &str,
    value: &str,
    received: Option<NaiveDate>,
    reference: Option<String>,
) -> Result<Request, EraseError> {
    let subject = policy
        .subject_of(identifier)
        .ok_or_else(|| unknown_identifier(policy))?;
    if subject.normalise_of(identifier).apply(value).is_empty() {
        return Err(EraseError::Usage(format!("the {identifier} is empty")));
    }
    let today = today(policy);
    let received = received.unwrap_or(today);
    if received > today {
        return Err(EraseError::Usage(format!(
            "--received {received} is in the future"
        )));
    }
    let key = key(policy)?;
    let audit_key = audit_key(policy)?;
    let mut stores = Stores::new(policy);
    let request = Request {
        id: String::new(),
        subject: subject.kind.clone(),
        identifier: identifier.to_string(),
        hash: subject_hash(&key, subject, identifier, value),
        key_id: key.id().to_string(),
        received,
        deadline: ledger::deadline(subject, received, policy.settings.calendar.as_ref()),
        reference,
        recorded_at: crate::audit::now(),
    };
    let held = lock(policy, &mut stores, Lock::Add, ADD_WAIT).await?;
    let added = add_locked(policy, &mut stores, request, audit_key.as_ref()).await;
    unlock(policy, &mut stores, held).await;
    added
}

/// `add` under the add lock: the next id is read and taken at once.
async fn add_locked(
    policy: &Policy,
    stores: &mut Stores<'_>,
    mut request: Request,
    audit_key: Option<&HmacKey>,
) -> Result<Request, EraseError> {
    let ledger = open_ledger(policy, stores).await?;
    request.id = ledger.next_id();
    let (name, file) = ledger_place(policy)?;
    let store = stores.get(name).await.map_err(EraseError::from)?;
    let run_id = commands::new_run_id();
    ledger::append(
        store,
        file,
        &Entry::Request(request.clone()),
        audit_key,
        &run_id,
    )
    .await?;
    crate::audit::publish_head(
        store,
        policy.settings.audit_checkpoints.as_deref(),
        crate::audit::FileStart::ByRun(&run_id),
    )
    .await;
    Ok(request)
}

/// What `check` found in the subject tables: problems (each naming the
/// file and line of the table's declaration), and warnings.
#[derive(Debug, Default)]
pub struct Checked {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Checks every subject table against its live schema (columns, key,
/// foreign keys, column types). Changes nothing.
pub async fn check(policy: &Policy) -> Checked {
    let mut stores = Stores::new(policy);
    let mut checked = Checked::default();
    for subject in &policy.subjects {
        for table in &subject.tables {
            let store = match stores.get(&table.store).await {
                Ok(store) => store,
                Err(err) => {
                    checked
                        .problems
                        .push(format!("{}: subject {}: {err}", table.at, subject.kind));
                    continue;
                }
            };
            match super::find::checked_plan(store, policy, subject, table).await {
                Ok(plan) => checked
                    .warnings
                    .extend(super::find::identifier_warnings(subject, table, &plan)),
                Err(err) => checked.problems.push(err.to_string()),
            }
        }
    }
    checked
}

/// A request's dry run.
#[derive(Debug, Serialize)]
pub struct PlannedRequest {
    pub request: Request,
    pub status: StatusKind,
    #[serde(flatten)]
    pub found: Found,
}

/// The dry run of one request, or of every request not done. Changes nothing.
pub async fn plan(
    policy: &Policy,
    request: Option<&str>,
) -> Result<Vec<PlannedRequest>, EraseError> {
    let key = key(policy)?;
    let mut stores = Stores::new(policy);
    let ledger = open_ledger(policy, &mut stores).await?;
    let selected: Vec<&Request> = match request {
        Some(id) => vec![ledger.request(id).ok_or_else(|| no_request(id))?],
        None => ledger
            .requests
            .iter()
            .filter(|r| ledger.status_of(&r.id) != StatusKind::Done)
            .collect(),
    };
    let found = super::find(policy, &mut stores, &key, &ledger, &selected).await?;
    Ok(selected
        .into_iter()
        .zip(found)
        .map(|(request, found)| PlannedRequest {
            request: request.clone(),
            status: ledger.status_of(&request.id),
            found,
        })
        .collect())
}

/// Runs the open requests, or (replay) every request again.
pub async fn run(policy: &Policy, mode: Mode) -> Result<RunReport, EraseError> {
    let key = key(policy)?;
    let audit_key = audit_key(policy)?;
    let mut stores = Stores::new(policy);
    let run_id = commands::new_run_id();
    let ctx = Context {
        policy,
        key: &key,
        audit_key: audit_key.as_ref(),
        run_id: &run_id,
    };
    let held = lock(policy, &mut stores, Lock::Run, std::time::Duration::ZERO).await?;
    let report = async {
        if mode == Mode::Replay {
            restore_requests(policy, &mut stores, audit_key.as_ref(), &run_id).await?;
        }
        let ledger = open_ledger(policy, &mut stores).await?;
        run::run(&ctx, &mut stores, &ledger, mode).await
    }
    .await;
    unlock(policy, &mut stores, held).await;
    let report = report?;
    for name in stores_touched(policy) {
        if let Ok(store) = stores.get(&name).await {
            crate::audit::publish_head(
                store,
                policy.settings.audit_checkpoints.as_deref(),
                crate::audit::FileStart::ByRun(&run_id),
            )
            .await;
        }
    }
    Ok(report)
}

/// Writes the requests only the ledger file holds back into the ledger
/// store's chain (its restore lost them), so both agree again; under the
/// add lock, so a request being added (in the file, not yet in the store)
/// is not written twice.
async fn restore_requests(
    policy: &Policy,
    stores: &mut Stores<'_>,
    audit_key: Option<&HmacKey>,
    run_id: &str,
) -> Result<(), EraseError> {
    let held = lock(policy, stores, Lock::Add, ADD_WAIT).await?;
    let restored = async {
        let ledger = open_ledger(policy, stores).await?;
        let (name, _) = ledger_place(policy)?;
        let store = stores.get(name).await?;
        for id in &ledger.only_in_file {
            let request = ledger.request(id).expect("merged from the file").clone();
            ledger::restore(store, &Entry::Request(request), audit_key, run_id).await?;
        }
        Ok(())
    }
    .await;
    unlock(policy, stores, held).await;
    restored
}

fn stores_touched(policy: &Policy) -> Vec<String> {
    let mut names: Vec<String> = policy
        .subject_tables()
        .map(|(_, t)| t.store.clone())
        .chain(policy.settings.erasure_store.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// One request in `erase status`.
#[derive(Debug, Serialize)]
pub struct StatusRow {
    pub id: String,
    pub subject: String,
    pub identifier: String,
    pub received: NaiveDate,
    pub deadline: NaiveDate,
    /// Negative when the deadline has passed.
    pub days_left: i64,
    pub status: StatusKind,
    pub overdue: bool,
    pub reference: Option<String>,
    /// Only in the file: the database's ledger was restored from before it.
    pub only_in_file: bool,
    pub remaining: Vec<ledger::Remaining>,
}

/// Where every request stands on `today`. A request is overdue when it is
/// still open after its deadline day; rows a minimum or a hold keeps do
/// not make it overdue (the law keeps them, and the ledger says so).
pub fn status_rows(ledger: &Ledger, today: NaiveDate) -> Vec<StatusRow> {
    ledger
        .requests
        .iter()
        .map(|r| {
            let status = ledger.status_of(&r.id);
            StatusRow {
                id: r.id.clone(),
                subject: r.subject.clone(),
                identifier: r.identifier.clone(),
                received: r.received,
                deadline: r.deadline,
                days_left: (r.deadline - today).num_days(),
                status,
                overdue: matches!(status, StatusKind::Open | StatusKind::Running)
                    && today > r.deadline,
                reference: r.reference.clone(),
                only_in_file: ledger.only_in_file.contains(&r.id),
                remaining: ledger
                    .statuses
                    .get(&r.id)
                    .map(|s| s.remaining.clone())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// `erase status`: every request and where it stands.
pub async fn status(policy: &Policy) -> Result<Vec<StatusRow>, EraseError> {
    let mut stores = Stores::new(policy);
    let ledger = open_ledger(policy, &mut stores).await?;
    Ok(status_rows(&ledger, today(policy)))
}

/// How many requests are overdue (the daemon's gauge).
pub async fn overdue(policy: &Policy) -> Result<u64, EraseError> {
    Ok(status(policy).await?.iter().filter(|r| r.overdue).count() as u64)
}

pub fn plan_text(planned: &[PlannedRequest]) -> String {
    let mut out = String::new();
    if planned.is_empty() {
        out.push_str("no open erasure requests\n");
    }
    for p in planned {
        let r = &p.request;
        let _ = writeln!(
            out,
            "{}  {} by {}, received {}, deadline {} ({})",
            r.id,
            r.subject,
            r.identifier,
            r.received,
            r.deadline,
            p.status.as_str()
        );
        if !p.found.refused.is_empty() {
            for refusal in &p.found.refused {
                let _ = writeln!(out, "  {refusal}");
            }
            continue;
        }
        if let Some(failure) = &p.found.failed {
            let _ = writeln!(out, "  failed: {}", failure.message);
            continue;
        }
        left_alone_text(&mut out, &p.found.left_alone);
        if p.found.tables.is_empty() && p.found.recorded.is_none() {
            let _ = writeln!(
                out,
                "  matches no row in any declared table; recorded all the same, so a restore cannot bring the person back unnoticed"
            );
        }
        // Rows kept under a minimum: how many, the latest day one is kept
        // until, and how many no date can be given for yet.
        let (mut kept_rows, mut kept_until, mut kept_undated) = (0, None, 0);
        for t in &p.found.tables {
            let verb = match t.action {
                "delete" => "deleted",
                "anonymise" => "anonymised",
                _ => "pseudonymised",
            };
            let _ = write!(out, "  {}.{}: {} found", t.store, t.table, t.found);
            if t.change > 0 {
                let _ = write!(out, "; {} {verb}", t.change);
                for cascade in &t.cascades {
                    let _ = write!(
                        out,
                        "; also deletes {} rows of {}",
                        cascade.rows, cascade.name
                    );
                }
            }
            if t.already > 0 {
                let _ = write!(out, "; {} already {verb}", t.already);
            }
            if let Some(rule) = &t.kept_by {
                kept_rows += t.found;
                kept_until = kept_until.max(t.kept_until);
                kept_undated += t.kept_undated;
                let until = match t.kept_until {
                    Some(date) => format!(" until {date}"),
                    None => String::new(),
                };
                let _ = write!(
                    out,
                    "; kept{until} under the minimum of rule {rule} (the row stays, the columns that name the person go now; the rule deletes it when the minimum ends)"
                );
                if t.kept_undated > 0 {
                    let _ = write!(out, "; {} rows have no date yet", t.kept_undated);
                }
            }
            if t.held > 0 {
                let _ = write!(out, "; {} kept under a hold", t.held);
            }
            out.push('\n');
        }
        let except = match (kept_rows, kept_until, kept_undated) {
            (0, _, _) => String::new(),
            (rows, Some(date), 0) => format!(", except {rows} rows kept until {date}"),
            (rows, Some(date), undated) => format!(
                ", except {rows} rows kept under a minimum: until {date}, {undated} of them with no date yet"
            ),
            (rows, None, _) => {
                format!(", except {rows} rows kept under a minimum, with no date yet")
            }
        };
        let _ = writeln!(out, "  done by {}{except}", r.deadline);
    }
    out
}

/// The matching rows a request carried out before leaves alone.
fn left_alone_text(out: &mut String, left_alone: &[crate::store::NamedCount]) {
    for table in left_alone {
        let _ = writeln!(
            out,
            "  {}: {} matching rows left alone: not part of the request when it was carried out",
            table.name, table.rows
        );
    }
}

pub fn run_text(report: &RunReport) -> String {
    let mut out = String::new();
    if report.requests.is_empty() && report.refused.is_empty() && report.failed.is_empty() {
        out.push_str("no open erasure requests\n");
    }
    for r in &report.requests {
        let _ = write!(
            out,
            "{}{}: {} rows found, {} changed",
            r.request,
            if report.replay { " (replay)" } else { "" },
            r.found,
            r.changed
        );
        if r.cascaded > 0 {
            let _ = write!(out, ", {} related rows deleted", r.cascaded);
        }
        if r.found == 0 && r.first {
            out.push_str(" (matches no row)");
        }
        let _ = writeln!(out, "; {}", r.status.as_str());
        for rem in &r.remaining {
            let _ = writeln!(
                out,
                "  remains: {} rows in {}.{}, {}",
                rem.rows, rem.store, rem.table, rem.why
            );
        }
        left_alone_text(&mut out, &r.left_alone);
    }
    for refusal in &report.refused {
        let _ = writeln!(out, "{refusal}");
    }
    for failure in &report.failed {
        let _ = writeln!(out, "failed: {}", failure.message);
    }
    out
}

pub fn status_text(rows: &[StatusRow]) -> String {
    let mut out = String::from(
        "request        subject    by           received    deadline    days left  status\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<14} {:<10} {:<12} {}  {}  {:>9}  {}{}{}",
            r.id,
            r.subject,
            r.identifier,
            r.received,
            r.deadline,
            r.days_left,
            r.status.as_str(),
            if r.overdue { " OVERDUE" } else { "" },
            if r.only_in_file {
                " (only in the ledger file: run erase replay)"
            } else {
                ""
            },
        );
    }
    out
}
