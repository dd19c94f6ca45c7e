//! The commands: check, plan, run and audit verify, over a [`Policy`] and
//! its stores. Each validates every selected rule against its live schema
//! before anything runs, so one bad rule means nothing is changed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::audit::{self, ChainBreak};
use crate::execute::{self, RunContext, Shutdown, StepError, StepReport};
use crate::exit::Exit;
use crate::plan::{self, Step};
use crate::pseudonym::{HmacKey, KeyError};
use crate::rules::{Diagnostic, Diagnostics, Policy, Rule, StoreConfig};
use crate::store::{self, Counts, QueryErrorKind, Store, StoreError};

/// Why a command could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error("{0}")]
    Schema(Diagnostics),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the HMAC key: {0}")]
    KeySource(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no rule with id {0:?}")]
    UnknownRule(String),
    #[error("no store named {0:?}")]
    UnknownStore(String),
    #[error("{}", .0.join("\n"))]
    Unsafe(Vec<String>),
    #[error("{0}")]
    PlanFile(String),
    #[error(
        "the approved plan {plan} no longer matches; nothing was changed:\n{}\nmake a new plan (glemsel plan --save) and have it approved",
        differences.iter().map(|d| format!("  - {d}")).collect::<Vec<_>>().join("\n")
    )]
    PlanRefused {
        plan: String,
        differences: Vec<String>,
    },
    #[error("--as-of {as_of} is later than the clock ({now}); a run never acts before its time")]
    AsOfInFuture {
        as_of: DateTime<Utc>,
        now: DateTime<Utc>,
    },
}

impl CommandError {
    pub fn exit(&self) -> Exit {
        match self {
            CommandError::Invalid(_)
            | CommandError::Key(_)
            | CommandError::KeySource(_)
            | CommandError::PlanFile(_) => Exit::Invalid,
            CommandError::Schema(_) => Exit::Schema,
            CommandError::Store(_) => Exit::Error,
            CommandError::UnknownRule(_) | CommandError::UnknownStore(_) => Exit::Usage,
            CommandError::AsOfInFuture { .. }
            | CommandError::Unsafe(_)
            | CommandError::PlanRefused { .. } => Exit::Refused,
        }
    }
}

/// Open connections, one per store, made as rules need them.
pub struct Stores<'p> {
    policy: &'p Policy,
    open: BTreeMap<String, Box<dyn Store>>,
}

impl<'p> Stores<'p> {
    pub fn new(policy: &'p Policy) -> Self {
        Self {
            policy,
            open: BTreeMap::new(),
        }
    }

    /// Drops a connection; the next use opens a new one.
    pub fn forget(&mut self, name: &str) {
        self.open.remove(name);
    }

    pub async fn get(&mut self, name: &str) -> Result<&mut dyn Store, CommandError> {
        if !self.open.contains_key(name) {
            let config = self
                .policy
                .stores
                .get(name)
                .ok_or_else(|| CommandError::UnknownStore(name.to_string()))?;
            let store =
                store::connect(config, store::SessionLimits::of(&self.policy.settings)).await?;
            self.open.insert(name.to_string(), store);
        }
        Ok(self.open.get_mut(name).expect("just opened").as_mut())
    }
}

/// The rules a command works on: the named ones, or all.
pub fn select<'p>(policy: &'p Policy, ids: &[String]) -> Result<Vec<&'p Rule>, CommandError> {
    if ids.is_empty() {
        return Ok(policy.rules.iter().collect());
    }
    ids.iter()
        .map(|id| {
            policy
                .rule(id)
                .ok_or_else(|| CommandError::UnknownRule(id.clone()))
        })
        .collect()
}

/// Builds and compiles the steps of `rules` against their live schemas.
/// Every mismatch of every rule is collected before reporting.
pub async fn build_steps(
    stores: &mut Stores<'_>,
    rules: &[&Rule],
    as_of: DateTime<Utc>,
) -> Result<Vec<Step>, CommandError> {
    let mut steps = Vec::new();
    let mut problems: Vec<Diagnostic> = Vec::new();
    for rule in rules {
        let config = &stores.policy.stores[&rule.store];
        let store = stores.get(&rule.store).await?;
        match step_for(store, config, rule, as_of).await? {
            Ok(step) => steps.push(step),
            Err(found) => problems.extend(found),
        }
    }
    if problems.is_empty() {
        Ok(steps)
    } else {
        problems.sort();
        Err(CommandError::Schema(Diagnostics(problems)))
    }
}

/// One rule's step against its live table, compiled. The outer error is
/// the connection's; the inner one lists what is wrong with the rule.
pub async fn step_for(
    store: &mut dyn Store,
    config: &StoreConfig,
    rule: &Rule,
    as_of: DateTime<Utc>,
) -> Result<Result<Step, Vec<Diagnostic>>, StoreError> {
    let mut schemas = plan::Schemas::new();
    let mut missing = Vec::new();
    for (table, at) in plan::tables_of(rule) {
        if schemas.contains_key(table) {
            continue;
        }
        match store.describe(table).await? {
            Some(schema) => {
                schemas.insert(table.clone(), schema);
            }
            None => missing.push(Diagnostic::new(
                at.clone(),
                Some(&rule.id),
                format!("table {table} does not exist in store {}", rule.store),
            )),
        }
    }
    if !missing.is_empty() {
        return Ok(Err(missing));
    }
    let step = match plan::build_step(rule, config, &schemas, as_of) {
        Ok(step) => step,
        Err(found) => return Ok(Err(found)),
    };
    match store.prepare(&step).await {
        Ok(()) => Ok(Ok(step)),
        // Only a statement that does not compile is the rule's fault; a lock
        // timeout or a dropped connection is the store's, and says so.
        Err(StoreError::Query {
            message,
            context,
            kind: QueryErrorKind::Compile,
            ..
        }) => {
            let at = rule.at.filter.as_ref().unwrap_or(&rule.at.rule).clone();
            Ok(Err(vec![Diagnostic::new(
                at,
                Some(&rule.id),
                format!("the {context} statement does not compile: {message}"),
            )]))
        }
        Err(err) => Err(err),
    }
}

/// Loads the HMAC key when one is configured. A run also uses it to hash
/// non-integer keys in the audit trail, so it is loaded for deletes too.
pub fn load_key(policy: &Policy) -> Result<Option<HmacKey>, CommandError> {
    load_secret_key(policy.settings.key.as_ref())
}

/// The audit chain's key, when one is configured.
pub fn load_audit_key(policy: &Policy) -> Result<Option<HmacKey>, CommandError> {
    load_secret_key(policy.settings.audit_key.as_ref())
}

fn load_secret_key(
    source: Option<&crate::rules::SecretSource>,
) -> Result<Option<HmacKey>, CommandError> {
    let Some(source) = source else {
        return Ok(None);
    };
    let path = source.path().map_err(CommandError::KeySource)?;
    Ok(Some(HmacKey::from_file(&path)?))
}

/// One rule in a dry-run report.
#[derive(Debug, serde::Serialize)]
pub struct PlannedStep {
    #[serde(flatten)]
    pub step: Step,
    /// The legal basis of the rule's category, as the rule files state it.
    pub legal_basis: Option<String>,
    pub counts: Counts,
    /// Why a run would refuse this rule, if it would.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// For a partitioned table: which partitions a run drops whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<crate::partition::Survey>,
}

/// The dry-run report.
#[derive(Debug, serde::Serialize)]
pub struct PlanReport {
    pub as_of: DateTime<Utc>,
    pub timezone: String,
    pub steps: Vec<PlannedStep>,
    /// Where plaintext of the rows the run changes would survive it.
    pub warnings: Vec<String>,
}

pub async fn plan(
    policy: &Policy,
    rule_ids: &[String],
    as_of: DateTime<Utc>,
) -> Result<PlanReport, CommandError> {
    let rules = select(policy, rule_ids)?;
    let mut stores = Stores::new(policy);
    let steps = build_steps(&mut stores, &rules, as_of).await?;
    let mut planned = Vec::new();
    for step in steps {
        let store = stores.get(&step.store).await?;
        let counts = store.count(&step).await?;
        let partitions = crate::partition::survey(store, &step, true).await?;
        let refusal = step.max_rows.filter(|max| counts.due > *max).map(|max| {
            format!(
                "{} rows are due, more than max_rows = {max}: a run would refuse",
                counts.due
            )
        });
        let legal_basis = policy
            .categories
            .get(&step.category)
            .and_then(|c| c.legal_basis.clone());
        planned.push(PlannedStep {
            step,
            legal_basis,
            counts,
            refusal,
            partitions,
        });
    }
    let steps: Vec<Step> = planned.iter().map(|p| p.step.clone()).collect();
    let warnings = copy_warnings(&mut stores, &steps, policy.settings.copies_max_log_days).await?;
    Ok(PlanReport {
        as_of,
        timezone: policy.settings.timezone.name().to_string(),
        steps: planned,
        warnings,
    })
}

/// What happened to one rule in a run.
#[derive(Debug)]
pub enum StepOutcome {
    Done(StepReport),
    /// A stop was requested before the rule's turn came.
    NotRun {
        rule: String,
    },
    Failed {
        rule: String,
        error: StepError,
    },
}

impl StepOutcome {
    pub fn exit(&self) -> Exit {
        use execute::{Refusal, Status};
        match self {
            StepOutcome::Done(report) => match report.status {
                Status::Completed => Exit::Ok,
                Status::Stopped if report.halted.is_some() => Exit::Halted,
                Status::Stopped | Status::Partial => Exit::Incomplete,
                Status::Refused => Exit::Refused,
                Status::Failed => Exit::Error,
            },
            StepOutcome::NotRun { .. } => Exit::Incomplete,
            StepOutcome::Failed { error, .. } => match error {
                StepError::Refused(Refusal::LockHeld { .. }) => Exit::LockHeld,
                StepError::Refused(Refusal::Stopped { .. }) => Exit::Incomplete,
                StepError::Refused(Refusal::Halted { .. }) => Exit::Halted,
                StepError::Refused(Refusal::BrokenTrail { .. }) => Exit::Tampered,
                StepError::Refused(_) => Exit::Refused,
                StepError::Store(_) => Exit::Error,
            },
        }
    }
}

/// The most serious outcome decides the exit code.
pub fn run_exit(outcomes: &[StepOutcome]) -> Exit {
    let rank = |exit: Exit| match exit {
        Exit::Tampered => 7,
        Exit::Error => 6,
        Exit::Refused => 5,
        Exit::Incomplete => 4,
        Exit::Halted => 3,
        Exit::LockHeld => 2,
        _ => 1,
    };
    outcomes
        .iter()
        .map(StepOutcome::exit)
        .max_by_key(|e| rank(*e))
        .unwrap_or(Exit::Ok)
}

/// How a run goes beyond its rules and moment.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// The approved plan's hash, recorded in every audit row of the run.
    pub plan: Option<String>,
    /// Per rule, the most rows the run may change (from an approved plan):
    /// enforced as `max_rows` is, before the first batch and by every batch.
    pub ceilings: BTreeMap<String, u64>,
    /// Where progress goes, if anywhere.
    pub progress: Option<&'a dyn execute::Progress>,
    /// The stop file and `--max-duration`.
    pub limits: crate::operate::Limits,
}

/// Runs the selected rules. `as_of` must not be later than the clock.
pub async fn run(
    policy: &Policy,
    rule_ids: &[String],
    as_of: DateTime<Utc>,
    shutdown: Shutdown,
    options: &RunOptions<'_>,
) -> Result<Vec<StepOutcome>, CommandError> {
    let now = Utc::now();
    if as_of > now {
        return Err(CommandError::AsOfInFuture { as_of, now });
    }
    let rules = select(policy, rule_ids)?;
    let mut stores = Stores::new(policy);
    let mut steps = build_steps(&mut stores, &rules, as_of).await?;
    for step in &mut steps {
        if let Some(ceiling) = options.ceilings.get(&step.rule_id) {
            step.max_rows = Some(step.max_rows.map_or(*ceiling, |max| max.min(*ceiling)));
        }
    }
    let hmac_key = load_key(policy)?;
    let audit_key = load_audit_key(policy)?;
    let ctx = RunContext {
        run_id: new_run_id(),
        audit_key: audit_key.as_ref(),
        audit_checkpoints: policy.settings.audit_checkpoints.as_deref(),
        max_clock_skew: policy.settings.max_clock_skew,
        key: hmac_key.as_ref(),
        host: audit::host_name(),
        shutdown,
        trigger: execute::Trigger::Command,
        plan: options.plan.clone(),
        progress: options.progress,
        limits: options.limits.clone(),
    };
    tracing::info!(run_id = %ctx.run_id, rules = steps.len(), as_of = %as_of, "run begins");
    let mut outcomes = Vec::new();
    for step in &steps {
        if ctx.shutdown.is_requested() {
            outcomes.push(StepOutcome::NotRun {
                rule: step.rule_id.clone(),
            });
            continue;
        }
        let store = stores.get(&step.store).await?;
        let outcome = match execute::run_step(store, step, &ctx).await {
            Ok(report) => {
                // A failed connection may be mid-transaction: the next rule
                // on this store gets a fresh one.
                if report.status == execute::Status::Failed {
                    stores.forget(&step.store);
                }
                StepOutcome::Done(report)
            }
            Err(error) => {
                tracing::error!(rule = %step.rule_id, error = %error, "rule did not complete");
                StepOutcome::Failed {
                    rule: step.rule_id.clone(),
                    error,
                }
            }
        };
        outcomes.push(outcome);
    }
    publish_chain_heads(policy, &mut stores, &steps, &ctx.run_id).await;
    Ok(outcomes)
}

/// Logs each touched store's chain head, and appends it to the checkpoint
/// file if one is configured, so a rewritten or cut chain can be found.
async fn publish_chain_heads(
    policy: &Policy,
    stores: &mut Stores<'_>,
    steps: &[Step],
    run_id: &str,
) {
    let mut names: Vec<&str> = steps.iter().map(|s| s.store.as_str()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let Ok(store) = stores.get(name).await else {
            continue;
        };
        audit::publish_head(
            store,
            policy.settings.audit_checkpoints.as_deref(),
            audit::FileStart::ByRun(run_id),
        )
        .await;
    }
}

/// A fresh run id: 128 random bits, in hex.
pub fn new_run_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// One store's verdict from `audit verify`.
#[derive(Debug, serde::Serialize)]
pub struct Verdict {
    pub store: String,
    pub rows: u64,
    pub checkpoints: usize,
    /// Keyed rows whose hashes were not checked: no audit key was given.
    pub unauthenticated: u64,
    /// Segment rows: where the chain was keyed, or restarted after a break.
    pub segments: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
}

pub async fn audit_verify(
    policy: &Policy,
    store_names: &[String],
) -> Result<Vec<Verdict>, CommandError> {
    let names: Vec<String> = if store_names.is_empty() {
        policy.stores.keys().cloned().collect()
    } else {
        store_names.to_vec()
    };
    let mut stores = Stores::new(policy);
    let audit_key = load_audit_key(policy)?;
    let mut verdicts = Vec::new();
    for name in names {
        let checkpoints = match &policy.settings.audit_checkpoints {
            Some(path) => {
                audit::read_checkpoints(path, &name).map_err(|err| StoreError::Config {
                    store: name.clone(),
                    message: format!("cannot read the checkpoint file {}: {err}", path.display()),
                })?
            }
            None => Some(Vec::new()),
        };
        let checkpoint_count = checkpoints.as_ref().map_or(0, Vec::len);
        let store = stores.get(&name).await?;
        let result: Result<audit::Verified, ChainBreak> =
            audit::verify(store, checkpoints, audit_key.as_ref()).await?;
        verdicts.push(match result {
            Ok(verified) => Verdict {
                store: name,
                rows: verified.rows,
                checkpoints: checkpoint_count,
                unauthenticated: verified.unauthenticated,
                segments: verified.segments,
                broken: None,
            },
            Err(brk) => Verdict {
                store: name,
                rows: 0,
                checkpoints: checkpoint_count,
                unauthenticated: 0,
                segments: 0,
                broken: Some(brk.to_string()),
            },
        });
    }
    Ok(verdicts)
}

/// Starts a new segment of each store's chain: keyed under the configured
/// audit key (or unkeyed without one), after whatever its tail shows, which
/// the segment row records. The explicit way to key an unkeyed trail, and
/// to go on after a break someone has looked into.
pub async fn audit_segment(
    policy: &Policy,
    store_names: &[String],
    reason: &str,
) -> Result<Vec<String>, CommandError> {
    let names: Vec<String> = if store_names.is_empty() {
        policy.stores.keys().cloned().collect()
    } else {
        store_names.to_vec()
    };
    let audit_key = load_audit_key(policy)?;
    let mut stores = Stores::new(policy);
    let mut lines = Vec::new();
    let run_id = new_run_id();
    let host = audit::host_name();
    for name in names {
        let checkpoints =
            audit::checkpoints_of(policy.settings.audit_checkpoints.as_deref(), &name).map_err(
                |err| StoreError::Config {
                    store: name.clone(),
                    message: format!("cannot read the checkpoint file: {err}"),
                },
            )?;
        let store = stores.get(&name).await?;
        store.ensure_audit_table().await?;
        // Whether the last rows are intact, as far as this key can tell.
        let found =
            match audit::check_tail(store, checkpoints.as_deref(), &run_id, audit_key.as_ref())
                .await?
            {
                Ok(audit::Tail::Empty) => "empty".to_string(),
                Ok(_) => "intact".to_string(),
                Err(brk) => format!("broken: {brk}"),
            };
        let entry = execute::segment_row(&run_id, &host, &name, audit_key.as_ref(), reason, &found);
        let record = execute::append_alone(store, entry, audit_key.as_ref()).await?;
        audit::publish_head(
            store,
            policy.settings.audit_checkpoints.as_deref(),
            audit::FileStart::ByOperator,
        )
        .await;
        lines.push(format!(
            "store {name}: segment started at seq {} ({}; the chain was {found})",
            record.seq,
            match &audit_key {
                Some(key) => format!("keyed under audit key {}", key.id()),
                None => "unkeyed".to_string(),
            }
        ));
    }
    Ok(lines)
}

/// Where plaintext of the rows each step changes survives the run: server
/// logs and archives, triggers, old row versions. One line per finding,
/// naming the rule and the setting.
pub async fn copy_warnings(
    stores: &mut Stores<'_>,
    steps: &[Step],
    max_log_days: u64,
) -> Result<Vec<String>, CommandError> {
    let mut warnings = Vec::new();
    for step in steps {
        let store = stores.get(&step.store).await?;
        let mut found = store.copies(&step.table, max_log_days).await?;
        if store.keeps_old_versions() && !step.vacuum_after && !step.action.is_delete() {
            found.push(format!(
                "old versions of the rows it changes stay in the pages of {} until VACUUM reclaims them; set vacuum_after = true",
                step.table
            ));
        }
        if step.vacuum_after && !store.may_vacuum(&step.table).await? {
            found.push(format!(
                "vacuum_after is set, but this role may not VACUUM {}: only the table's owner may (PostgreSQL 17 and later: a role granted MAINTAIN); the old row versions stay until the owner vacuums it",
                step.table
            ));
        }
        warnings.extend(
            found
                .into_iter()
                .map(|f| format!("warning: rule {} (store {}): {f}", step.rule_id, step.store)),
        );
    }
    Ok(warnings)
}

/// `check` against the databases: every rule's step builds and compiles,
/// and the key file loads if a rule needs it. One line per rule.
pub async fn check(policy: &Policy) -> Result<Checked, CommandError> {
    let rules = select(policy, &[])?;
    let mut stores = Stores::new(policy);
    let steps = build_steps(&mut stores, &rules, Utc::now()).await?;
    let hmac_key = load_key(policy)?;
    let mut unsafe_stores = Vec::new();
    let mut used: Vec<&str> = steps.iter().map(|s| s.store.as_str()).collect();
    used.sort_unstable();
    used.dedup();
    for &name in &used {
        for reason in stores.get(name).await?.refusals().await? {
            unsafe_stores.push(format!("store {name}: a run would refuse: {reason}"));
        }
    }
    if !unsafe_stores.is_empty() {
        return Err(CommandError::Unsafe(unsafe_stores));
    }
    let mut warnings =
        copy_warnings(&mut stores, &steps, policy.settings.copies_max_log_days).await?;
    let mut store_lines = Vec::new();
    for name in used {
        let config = &policy.stores[name];
        let (line, warning) = store_security(config, stores.get(name).await?).await?;
        store_lines.extend(line);
        warnings.extend(warning);
    }
    let mut lines: Vec<String> = steps
        .iter()
        .map(|step| {
            let walk_key: Vec<&str> = step.key.iter().map(|c| c.name.as_str()).collect();
            format!(
                "rule {}: ok: {}.{}, event {}, walks ({})",
                step.rule_id,
                step.store,
                step.table,
                step.due.event.describe(&step.joins),
                walk_key.join(", ")
            )
        })
        .collect();
    lines.extend(store_lines);
    for step in &steps {
        let store = stores.get(&step.store).await?;
        let (line, warning) = partition_lines(store, step).await?;
        lines.extend(line);
        warnings.extend(warning);
    }
    if let Some(hmac_key) = hmac_key {
        lines.push(format!("HMAC key loaded, id {}", hmac_key.id()));
    }
    Ok(Checked { lines, warnings })
}

/// What `check` says of a rule's partitioned table: which partitions a
/// run would drop whole now, or that it purges row by row and why; a
/// warning when only the role's privileges keep it from dropping them.
async fn partition_lines(
    store: &mut dyn Store,
    step: &Step,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let Some(survey) = crate::partition::survey(store, step, false).await? else {
        return Ok((None, None));
    };
    let rule = &step.rule_id;
    let table = &step.table;
    if let Some(reason) = &survey.row_by_row {
        let line = format!(
            "rule {rule}: {table} is partitioned; it is purged row by row because {reason}"
        );
        // Partitioned by range on the event, and only the role's rights
        // keep the partitions from going whole.
        let warning = (step.rows_only.is_none() && !survey.partitions.is_empty()).then(|| format!("warning: rule {rule} (store {}): {reason}; expired partitions of {table} are purged row by row (set partitions = \"rows\" to say that is meant)", step.store));
        return Ok((Some(line), warning));
    }
    let names: Vec<String> = survey
        .to_drop()
        .map(|v| v.partition.name.to_string())
        .collect();
    let line = if names.is_empty() {
        format!(
            "rule {rule}: {table} is partitioned by range on its event; no partition is wholly due now, so it is purged row by row"
        )
    } else {
        format!(
            "rule {rule}: {table} is partitioned by range on its event; a run now drops {} whole ({}), the rest row by row",
            names.len(),
            names.join(", ")
        )
    };
    Ok((Some(line), None))
}

/// What `check` found: a line per rule (and the key), and the warnings.
pub struct Checked {
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
}

/// What `check` says of a store's connection and its role: a line saying
/// whether the server sees the session encrypted, and a warning when the
/// role could change or delete audit rows.
async fn store_security(
    config: &StoreConfig,
    store: &mut dyn Store,
) -> Result<(Option<String>, Option<String>), StoreError> {
    use crate::rules::{Engine, Tls};
    let name = &config.name;
    let mut line = None;
    if config.engine != Engine::Sqlite {
        let version = store.tls_version().await?;
        line = Some(match (&config.tls, version) {
            (Tls::VerifyFull { ca_file }, Some(version)) => format!(
                "store {name}: connection encrypted ({version}); certificate and host name verified against {}",
                ca_file.display()
            ),
            (Tls::Require, Some(version)) => format!(
                "store {name}: connection encrypted ({version}); certificate not verified (tls = \"require\")"
            ),
            (Tls::Disable, Some(version)) => {
                format!("store {name}: connection encrypted ({version})")
            }
            (tls, None) => format!(
                "store {name}: connection not encrypted (tls = \"{}\"); use tls = \"verify-full\" beyond loopback",
                tls.as_str()
            ),
        });
    }
    let overreach = store.audit_overreach().await?;
    let warning = (!overreach.is_empty()).then(|| {
        format!(
            "warning: store {name}: on the audit table {} the role needs only SELECT and INSERT, but it {}: it could rewrite the trail it writes; `glemsel grants` prints what it needs",
            config.audit_table,
            overreach.join(", ")
        )
    });
    Ok((line, warning))
}

/// One store's part of `glemsel grants`.
#[derive(Debug, serde::Serialize)]
pub struct StoreGrants {
    pub store: String,
    pub engine: crate::rules::Engine,
    /// The statements, with comments; `None` where the engine has no
    /// privileges (SQLite).
    pub statements: Option<Vec<String>>,
}

/// The grants each selected store's rules need (all stores when none is
/// named), for `role`: the rules are checked against the live schema first,
/// as `check` does, so the grants name real tables and columns.
pub async fn grants(
    policy: &Policy,
    store_names: &[String],
    role: &str,
) -> Result<Vec<StoreGrants>, CommandError> {
    let names: Vec<String> = if store_names.is_empty() {
        policy.stores.keys().cloned().collect()
    } else {
        store_names.to_vec()
    };
    let rules: Vec<&Rule> = policy
        .rules
        .iter()
        .filter(|rule| names.contains(&rule.store))
        .collect();
    let mut stores = Stores::new(policy);
    let steps = build_steps(&mut stores, &rules, Utc::now()).await?;
    let mut found = Vec::new();
    for name in names {
        let config = policy
            .stores
            .get(&name)
            .ok_or_else(|| CommandError::UnknownStore(name.clone()))?;
        let needs = store::grants::Needs::of(steps.iter().filter(|s| s.store == name));
        let statements = stores.get(&name).await?.grants(&needs, role).await?;
        found.push(StoreGrants {
            store: name,
            engine: config.engine,
            statements,
        });
    }
    Ok(found)
}

/// "Now" for a plan or run without `--as-of`: the clock, to the second, so
/// cutoffs in reports and the audit trail read cleanly.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound as _;
    Utc::now().trunc_subsecs(0)
}

/// Reads `--as-of`: RFC 3339, or a date or date-time in the config's zone.
pub fn parse_as_of(text: &str, zone: chrono_tz::Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(local) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(plan::local_to_instant(local, zone));
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(plan::local_to_instant(
            date.and_time(chrono::NaiveTime::MIN),
            zone,
        ));
    }
    Err(format!(
        "{text:?} is not a time; write 2026-12-01, 2026-12-01T02:30 ({zone}) or 2026-12-01T01:30:00Z"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_forms() {
        let zone: chrono_tz::Tz = "Europe/Copenhagen".parse().unwrap();
        let utc = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            parse_as_of("2026-12-01", zone),
            Ok(utc("2026-11-30T23:00:00Z"))
        );
        assert_eq!(
            parse_as_of("2026-07-01T02:30", zone),
            Ok(utc("2026-07-01T00:30:00Z"))
        );
        assert_eq!(
            parse_as_of("2026-07-01T02:30:00+02:00", zone),
            Ok(utc("2026-07-01T00:30:00Z"))
        );
        assert_eq!(
            parse_as_of("2026-07-01T00:30:00Z", zone),
            Ok(utc("2026-07-01T00:30:00Z"))
        );
        assert!(parse_as_of("next tuesday", zone).is_err());
    }
}
