//! `glemsel daemon`: every rule on its cron schedule, as a systemd service.
//!
//! Start-up loads and validates the config and rules and checks every rule
//! against its live table; only then does it tell systemd READY=1. Each
//! rule has a task of its own that sleeps until its next run, connects,
//! runs and disconnects, so one store being down never holds up another.
//! A run never overlaps a run of the same rule: in this process a lock per
//! rule id spans reloads, across hosts the database lock in `run_step` does.
//! SIGHUP reloads (a reload that fails validation keeps the old rules);
//! SIGTERM stops every run after its batch in flight.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use sd_notify::NotifyState;
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinSet;

use crate::audit;
use crate::commands::{self, step_for};
use crate::execute::{self, Refusal, RunContext, Shutdown, StepError, Trigger};
use crate::exit::Exit;
use crate::metrics;
use crate::period::PeriodKind;
use crate::rules::{self, Policy, Rule, StoreConfig};
use crate::schedule::Schedule;
use crate::step::Step;
use crate::store::{self, Store};

/// The longest wait between connection attempts to a store that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Sleeps are cut into pieces this long, so a changed wall clock is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// What tells the daemon to stop or reload.
#[derive(Clone, Default)]
pub struct Signals {
    pub shutdown: Shutdown,
    pub reload: Arc<Notify>,
}

/// One notice to systemd, owned so it can cross to the notifier thread.
enum Notice {
    Ready,
    Reloading,
    Stopping,
    Watchdog,
    Status(String),
}

impl Notice {
    /// A STATUS= notice; the protocol is one line per field.
    fn status(text: &str) -> Notice {
        Notice::Status(text.replace('\n', " "))
    }

    fn state(&self) -> NotifyState<'_> {
        match self {
            Notice::Ready => NotifyState::Ready,
            Notice::Reloading => NotifyState::Reloading,
            Notice::Stopping => NotifyState::Stopping,
            Notice::Watchdog => NotifyState::Watchdog,
            Notice::Status(text) => NotifyState::Status(text),
        }
    }
}

/// How many messages may wait for the notifier thread; past that, new ones
/// are dropped.
const NOTICE_QUEUE: usize = 64;

/// Sends notices to systemd (sd_notify(3), through the sd-notify crate) as
/// one message; without NOTIFY_SOCKET, nothing. The crate's send blocks
/// while the socket's queue is full, so a thread of its own sends, in
/// order, and the caller never waits: a service manager that stops reading
/// must not stall the runtime. When that thread is behind, the message is
/// dropped, as a non-blocking send would drop it.
fn notify(notices: Vec<Notice>) {
    static SENDER: OnceLock<Option<SyncSender<Vec<Notice>>>> = OnceLock::new();
    let sender = SENDER.get_or_init(|| {
        std::env::var_os("NOTIFY_SOCKET")?;
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<Notice>>(NOTICE_QUEUE);
        let spawned = std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || {
                for notices in receiver {
                    let states: Vec<NotifyState<'_>> = notices.iter().map(Notice::state).collect();
                    if let Err(err) = sd_notify::notify(&states) {
                        tracing::debug!(error = %err, "could not notify systemd");
                    }
                }
            });
        match spawned {
            Ok(_) => Some(sender),
            Err(err) => {
                tracing::warn!(error = %err, "cannot start the thread that notifies systemd");
                None
            }
        }
    });
    if let Some(sender) = sender
        && sender.try_send(notices).is_err()
    {
        tracing::debug!("systemd is not reading notices; one was dropped");
    }
}

fn status(text: &str) {
    notify(vec![Notice::status(text)]);
}

/// The watchdog interval systemd asked for, per sd_watchdog_enabled(3):
/// WATCHDOG_USEC is set and not zero, and WATCHDOG_PID, if set, is this
/// process.
fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|interval| !interval.is_zero())
}

/// Pings systemd's watchdog at half its interval, if it asked for pings.
fn start_watchdog() {
    if let Some(interval) = watchdog_interval() {
        let every = (interval / 2).max(Duration::from_millis(10));
        tracing::info!(every_ms = every.as_millis() as u64, "watchdog enabled");
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                notify(vec![Notice::Watchdog]);
            }
        });
    }
}

/// The schedule a rule runs on: its own, or the config's default; none
/// for a manual rule.
fn schedule_of<'p>(policy: &'p Policy, rule: &'p Rule) -> Option<&'p Schedule> {
    if rule.manual {
        return None;
    }
    rule.schedule.as_ref().or(policy.settings.schedule.as_ref())
}

/// How many rules the daemon runs: those with a schedule.
fn scheduled(policy: &Policy) -> usize {
    policy
        .rules
        .iter()
        .filter(|r| schedule_of(policy, r).is_some())
        .count()
}

/// Loads the policy and checks it as start-up and reload must: files,
/// schedules, the key, and every rule against the stores that answer.
async fn load_checked(config: &Path) -> Result<Policy, Exit> {
    let policy = rules::load(config).map_err(|diagnostics| {
        for diagnostic in &diagnostics.0 {
            tracing::error!("{diagnostic}");
        }
        Exit::Invalid
    })?;
    for rule in &policy.rules {
        if rule.manual {
            tracing::info!(rule = %rule.id, "schedule = \"manual\": the daemon does not run it; `glemsel run --rule {}` does", rule.id);
        } else if schedule_of(&policy, rule).is_none() {
            tracing::warn!(
                rule = %rule.id,
                "{}: no schedule, and no default in {}: the daemon does not run it; set one, or schedule = \"manual\" to say it runs by hand",
                rule.at.rule,
                config.display()
            );
        }
    }
    commands::load_key(&policy).map_err(|err| {
        tracing::error!("{err}");
        Exit::Invalid
    })?;
    let mut problems = 0;
    for (name, store_config) in &policy.stores {
        let rules: Vec<&Rule> = policy.rules.iter().filter(|r| &r.store == name).collect();
        if rules.is_empty() {
            continue;
        }
        let mut store = match store::connect(
            store_config,
            store::SessionLimits::of(&policy.settings),
        )
        .await
        {
            Ok(store) => store,
            Err(err) => {
                // One store down must not keep the others from running; its
                // rules are checked again before each of their runs.
                tracing::error!(store = %name, error = %err, "store unreachable; its rules are checked before each run");
                continue;
            }
        };
        for rule in rules {
            match step_for(store.as_mut(), store_config, rule, commands::now()).await {
                Ok(Ok(_)) => {}
                Ok(Err(found)) => {
                    for diagnostic in found {
                        tracing::error!("{diagnostic}");
                        problems += 1;
                    }
                }
                Err(err) => {
                    tracing::error!(store = %name, error = %err, "cannot check rules against this store now")
                }
            }
        }
    }
    if problems > 0 {
        return Err(Exit::Schema);
    }
    Ok(policy)
}

/// One lock per rule id, kept across reloads, so an old rule's run and a
/// new one's never overlap.
#[derive(Clone, Default)]
struct RuleLocks(Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>>);

impl RuleLocks {
    fn of(&self, rule: &str) -> Arc<Mutex<()>> {
        let mut locks = self.0.lock().expect("not poisoned");
        locks.entry(rule.to_string()).or_default().clone()
    }
}

/// The rule tasks of one loaded policy.
struct Generation {
    retire: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Generation {
    /// Starts a task per rule. `catch_up`: at start-up only; a reload must
    /// not take a run in flight (no finish row yet) for a missed one.
    fn start(policy: Arc<Policy>, shutdown: &Shutdown, locks: &RuleLocks, catch_up: bool) -> Self {
        let (retire, retired) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for index in 0..policy.rules.len() {
            // Manual and unscheduled rules are left to `glemsel run`.
            if schedule_of(&policy, &policy.rules[index]).is_none() {
                continue;
            }
            let lock = locks.of(&policy.rules[index].id);
            tasks.spawn(rule_task(
                policy.clone(),
                index,
                shutdown.clone(),
                retired.clone(),
                lock,
                catch_up,
            ));
        }
        if !policy.subjects.is_empty() {
            tasks.spawn(erasure_task(
                policy.clone(),
                shutdown.clone(),
                retired.clone(),
            ));
        }
        Self { retire, tasks }
    }

    /// Tasks stop before their next run; a run in flight finishes.
    fn retire(self) -> tokio::task::JoinHandle<()> {
        self.retire.send_replace(true);
        let mut tasks = self.tasks;
        tokio::spawn(async move { while tasks.join_next().await.is_some() {} })
    }

    async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

fn running_status(count: usize) -> String {
    format!(
        "running {count} rule{} on their schedules",
        if count == 1 { "" } else { "s" }
    )
}

/// Runs the daemon until SIGTERM.
pub async fn run(config: PathBuf, signals: Signals) -> Exit {
    status("loading and checking rules");
    let policy = tokio::select! {
        loaded = load_checked(&config) => match loaded {
            Ok(policy) => policy,
            Err(exit) => return exit,
        },
        () = signals.shutdown.requested() => return Exit::Ok,
    };
    if let Some(addr) = policy.settings.metrics_listen {
        if let Err(err) = metrics::serve(addr) {
            tracing::error!(%addr, error = %err, "cannot serve metrics");
            return Exit::Error;
        }
        tracing::info!(%addr, "serving metrics at /metrics");
    }
    start_watchdog();
    let locks = RuleLocks::default();
    let mut ready = running_status(scheduled(&policy));
    tracing::info!(rules = scheduled(&policy), "ready");
    let mut current = Generation::start(Arc::new(policy), &signals.shutdown, &locks, true);
    let mut retired: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    notify(vec![Notice::Ready, Notice::status(&ready)]);
    let exit = loop {
        tokio::select! {
            () = signals.shutdown.requested() => break Exit::Ok,
            // A rule task only ends on a stop; one that ends otherwise has
            // panicked, and its rule would silently never run again.
            Some(ended) = current.tasks.join_next(), if !current.tasks.is_empty() => {
                if let Err(err) = ended {
                    tracing::error!(error = %err, "a rule's task failed; stopping so the service restarts");
                    break Exit::Error;
                }
            }
            () = signals.reload.notified() => {
                notify(vec![Notice::Reloading, Notice::status("reloading rules")]);
                tracing::info!(config = %config.display(), "reloading");
                let loaded = tokio::select! {
                    loaded = load_checked(&config) => loaded,
                    () = signals.shutdown.requested() => break Exit::Ok,
                };
                match loaded {
                    Ok(policy) => {
                        ready = running_status(scheduled(&policy));
                        tracing::info!(rules = scheduled(&policy), "reloaded");
                        let fresh = Generation::start(Arc::new(policy), &signals.shutdown, &locks, false);
                        retired.retain(|handle| !handle.is_finished());
                        retired.push(std::mem::replace(&mut current, fresh).retire());
                    }
                    Err(_) => tracing::error!("the new rules did not pass their checks; the previous rules keep running"),
                }
                notify(vec![Notice::Ready, Notice::status(&ready)]);
            }
        }
    };
    notify(vec![
        Notice::Stopping,
        Notice::status("stopping after the batches in flight"),
    ]);
    tracing::info!("stopping after the batches in flight");
    signals.shutdown.request();
    current.join().await;
    for handle in retired {
        let _ = handle.await;
    }
    tracing::info!("stopped");
    exit
}

/// Carries out open erasure requests on the config's schedule, and keeps
/// the gauge of overdue requests current (at start and after each run).
async fn erasure_task(policy: Arc<Policy>, shutdown: Shutdown, mut retired: watch::Receiver<bool>) {
    let zone = policy.settings.timezone;
    let overdue = async |policy: &Policy| match crate::erase::commands::overdue(policy).await {
        Ok(count) => {
            metrics::erasure_overdue(count);
            if count > 0 {
                tracing::warn!(overdue = count, "erasure requests are past their deadline");
            }
        }
        Err(err) => tracing::error!(error = %err, "cannot read the erasure ledger"),
    };
    overdue(&policy).await;
    let Some(schedule) = policy.settings.schedule.as_ref() else {
        tracing::warn!("erasure requests are not run by the daemon: glemsel.toml has no schedule");
        return;
    };
    let mut next = schedule.next_after(Utc::now(), zone);
    while let Some(at) = next {
        if !sleep_until(at, &shutdown, &mut retired).await {
            return;
        }
        match crate::erase::commands::run(&policy, crate::erase::Mode::Open).await {
            Ok(report) => {
                for r in &report.requests {
                    tracing::info!(request = %r.request, found = r.found, changed = r.changed, status = r.status.as_str(), "erasure request run");
                }
                for refusal in &report.refused {
                    tracing::warn!(reason = %refusal, "erasure request refused");
                }
            }
            Err(err) => tracing::error!(error = %err, "erasure requests could not be run"),
        }
        overdue(&policy).await;
        next = schedule.next_after(Utc::now().max(at), zone);
    }
}

/// Resolves when the task should stop: shutdown, or its generation retired.
async fn stop_requested(shutdown: &Shutdown, retired: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = shutdown.requested() => {}
        _ = retired.wait_for(|retired| *retired) => {}
    }
}

/// Sleeps until `at`; `false` when told to stop first.
async fn sleep_until(
    at: DateTime<Utc>,
    shutdown: &Shutdown,
    retired: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        if shutdown.is_requested() || *retired.borrow() {
            return false;
        }
        let left = (at - Utc::now()).to_std().unwrap_or_default();
        if left.is_zero() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(left.min(MAX_SLEEP)) => {}
            () = stop_requested(shutdown, retired) => return false,
        }
    }
}

/// Connects, retrying with capped exponential backoff and jitter until
/// `give_up` (the rule's next run) or a stop.
async fn connect_with_retry(
    config: &StoreConfig,
    policy: &Policy,
    shutdown: &Shutdown,
    retired: &mut watch::Receiver<bool>,
    give_up: Option<DateTime<Utc>>,
) -> Option<Box<dyn Store>> {
    let mut backoff = Duration::from_secs(1);
    loop {
        let attempt = tokio::select! {
            attempt = store::connect(config, store::SessionLimits::of(&policy.settings)) => attempt,
            () = stop_requested(shutdown, retired) => return None,
        };
        match attempt {
            Ok(store) => return Some(store),
            Err(err) => {
                let jitter = rand::rng().random_range(0.75..1.25);
                let wait = backoff.mul_f64(jitter);
                if give_up.is_some_and(|at| Utc::now() + wait >= at) {
                    tracing::error!(store = %config.name, error = %err, "store unreachable; giving up until the next run");
                    return None;
                }
                tracing::warn!(store = %config.name, error = %err, retry_in_ms = wait.as_millis() as u64, "store unreachable; retrying");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop_requested(shutdown, retired) => return None,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Whether a scheduled run was missed while nothing ran this rule.
async fn missed_a_run(
    policy: &Policy,
    rule: &Rule,
    schedule: &Schedule,
    shutdown: &Shutdown,
    retired: &mut watch::Receiver<bool>,
) -> bool {
    let config = &policy.stores[&rule.store];
    let give_up = schedule.next_after(Utc::now(), policy.settings.timezone);
    let Some(mut store) = connect_with_retry(config, policy, shutdown, retired, give_up).await
    else {
        return false;
    };
    let last = match store.ensure_audit_table().await {
        Ok(()) => store.audit_last_run(&rule.id).await,
        Err(err) => Err(err),
    };
    match last {
        Ok(Some(last)) => schedule.missed_since(last, Utc::now(), policy.settings.timezone),
        Ok(None) => false,
        Err(err) => {
            tracing::warn!(rule = %rule.id, error = %err, "cannot read when the rule last ran");
            false
        }
    }
}

async fn rule_task(
    policy: Arc<Policy>,
    index: usize,
    shutdown: Shutdown,
    mut retired: watch::Receiver<bool>,
    lock: Arc<Mutex<()>>,
    catch_up: bool,
) {
    let rule = &policy.rules[index];
    let zone = policy.settings.timezone;
    let schedule = schedule_of(&policy, rule).expect("only scheduled rules have a task");
    let mut trigger = Trigger::Schedule;
    let mut next = schedule.next_after(Utc::now(), zone);
    if catch_up && missed_a_run(&policy, rule, schedule, &shutdown, &mut retired).await {
        tracing::info!(rule = %rule.id, "a scheduled run was missed; running it now");
        trigger = Trigger::CatchUp;
        next = Some(Utc::now());
    }
    loop {
        let Some(at) = next else {
            tracing::warn!(rule = %rule.id, %schedule, "the schedule has no further runs");
            return;
        };
        tracing::debug!(rule = %rule.id, at = %at, "next run");
        if !sleep_until(at, &shutdown, &mut retired).await {
            return;
        }
        if let Some(window) = &rule.window {
            // A run due outside its window waits for the window to open;
            // runs missed meanwhile are that one run.
            let opens = window.next_open(Utc::now());
            if opens > Utc::now() {
                tracing::info!(rule = %rule.id, %window, opens = %opens, "outside the rule's window; the run waits for it to open");
                if !sleep_until(opens, &shutdown, &mut retired).await {
                    return;
                }
            }
        }
        {
            let _running = lock.lock().await;
            if shutdown.is_requested() || *retired.borrow() {
                return;
            }
            let give_up = schedule.next_after(at, zone);
            run_once(&policy, rule, trigger, &shutdown, &mut retired, give_up).await;
        }
        trigger = Trigger::Schedule;
        next = schedule.next_after(Utc::now().max(at), zone);
    }
}

/// A deadline rule acts `max_duration` ahead for its run to finish in; a
/// run that took longer may have finished after a deadline.
fn warn_if_overlong(rule: &Rule, seconds: f64) {
    let max = rule.timing.max_duration;
    if seconds <= max.num_seconds() as f64 {
        return;
    }
    let max_duration = crate::period::describe_duration(max);
    match rule.timing.kind {
        PeriodKind::Deadline => {
            tracing::warn!(rule = %rule.id, seconds, %max_duration, "the run took longer than max_duration, so rows may have gone after their deadline; raise max_duration (the lead grows with it)")
        }
        PeriodKind::Minimum => {
            tracing::info!(rule = %rule.id, seconds, %max_duration, "the run took longer than max_duration")
        }
    }
}

/// Runs a checked step and logs how it ended. Returns why it failed when
/// the audit trail should say so: a skipped or stopped run is no failure.
async fn run_step(
    store: &mut dyn Store,
    rule: &Rule,
    step: &Step,
    ctx: &RunContext<'_>,
) -> Option<String> {
    match execute::run_step(store, step, ctx).await {
        Ok(report) => {
            tracing::info!(rule = %rule.id, rows = report.rows_changed, status = ?report.status, trigger = ?ctx.trigger, "run done");
            warn_if_overlong(rule, report.seconds);
            None
        }
        Err(StepError::Refused(Refusal::LockHeld { .. })) => {
            tracing::info!(rule = %rule.id, "another worker holds this rule's lock; this run is skipped");
            None
        }
        Err(StepError::Refused(Refusal::Stopped { .. })) => {
            tracing::info!(rule = %rule.id, "stopped before the run began");
            None
        }
        Err(StepError::Refused(refusal @ Refusal::Halted { .. })) => {
            tracing::info!(rule = %rule.id, "{refusal}");
            None
        }
        Err(err) => {
            tracing::error!(rule = %rule.id, error = %err, "the run did not complete");
            Some(err.audit_code())
        }
    }
}

/// One run of a rule: connect, check, run, disconnect. Until its first
/// audit row a stop (or a reload) abandons it; after that it stops after
/// the batch in flight. Failures are logged, counted, and recorded in the
/// store's audit trail when it can be reached.
async fn run_once(
    policy: &Policy,
    rule: &Rule,
    trigger: Trigger,
    shutdown: &Shutdown,
    retired: &mut watch::Receiver<bool>,
    give_up: Option<DateTime<Utc>>,
) {
    status(&format!("running rule {}", rule.id));
    let config = &policy.stores[&rule.store];
    let Some(mut store) = connect_with_retry(config, policy, shutdown, retired, give_up).await
    else {
        metrics::run_failed(&rule.id);
        return;
    };
    let store = store.as_mut();
    let hmac_key = commands::load_key(policy);
    let audit_key = commands::load_audit_key(policy);
    let ctx = RunContext {
        run_id: commands::new_run_id(),
        audit_key: audit_key.as_ref().ok().and_then(Option::as_ref),
        audit_checkpoints: policy.settings.audit_checkpoints.as_deref(),
        max_clock_skew: policy.settings.max_clock_skew,
        key: hmac_key.as_ref().ok().and_then(Option::as_ref),
        host: audit::host_name(),
        shutdown: shutdown.clone(),
        trigger,
        plan: None,
        progress: None,
        limits: crate::operate::Limits::of(&policy.settings, None),
    };
    let failure = match (&hmac_key, &audit_key) {
        (Err(err), _) | (_, Err(err)) => {
            tracing::error!(rule = %rule.id, error = %err, "cannot load a key; the run is skipped");
            metrics::run_failed(&rule.id);
            Some("a key could not be loaded; see the log".to_string())
        }
        (Ok(_), Ok(_)) => {
            let checked = tokio::select! {
                checked = step_for(store, config, rule, commands::now()) => checked,
                () = stop_requested(shutdown, retired) => return,
            };
            match checked {
                Err(err) => {
                    tracing::error!(rule = %rule.id, error = %err, "cannot check the rule; the next run tries again");
                    metrics::run_failed(&rule.id);
                    Some(err.audit_code())
                }
                Ok(Err(problems)) => {
                    for problem in &problems {
                        tracing::error!("{problem}");
                    }
                    metrics::run_failed(&rule.id);
                    Some("the rule no longer matches its table; see the log".to_string())
                }
                Ok(Ok(step)) => run_step(store, rule, &step, &ctx).await,
            }
        }
    };
    if let Some(reason) = failure
        && let Err(err) = execute::record_failure(store, rule, &ctx, &reason).await
    {
        tracing::warn!(rule = %rule.id, error = %err, "could not record the failure in the audit trail");
    }
    audit::publish_head(
        store,
        policy.settings.audit_checkpoints.as_deref(),
        audit::FileStart::ByRun(&ctx.run_id),
    )
    .await;
    status("waiting for the next scheduled run");
}
