//! Operating beside a production database: whether a run may start, or go
//! on with its next batch, and if not, why.
//!
//! The batch loop asks [`Limits::before_batch`] before every batch: the
//! stop file, `--max-duration` and the rule's window may end the run; its
//! pause, the server's load and its replicas' lag make it wait. All of it
//! between transactions, never inside one, so stopping or waiting loses
//! nothing and leaves no transaction open. What a halted run did not
//! reach stays due for the next.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

use crate::limits::OperatingWindow;
use crate::metrics;
use crate::plan::Step;
use crate::store::{SessionLimits, Store, StoreError};

/// Why a run stopped before its rows were all done, or did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    /// The rule's (or its store's) window is closed.
    WindowClosed(OperatingWindow),
    /// `run --max-duration` has passed since the run began.
    MaxDuration(Duration),
    /// The configured stop file exists.
    StopFile(PathBuf),
    /// A limit kept the run waiting longer than `max_pause_ms`.
    PausedTooLong { reason: String, max_pause: Duration },
}

impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Halt::WindowClosed(window) => write!(f, "its window {window} is closed"),
            Halt::MaxDuration(limit) => write!(
                f,
                "--max-duration {} has passed",
                crate::period::describe_duration(TimeDelta::seconds(limit.as_secs() as i64))
            ),
            Halt::StopFile(path) => write!(f, "the stop file {} exists", path.display()),
            Halt::PausedTooLong { reason, max_pause } => write!(
                f,
                "{reason} after a pause of {}, the longest max_pause_ms allows",
                crate::period::describe_duration(TimeDelta::seconds(max_pause.as_secs() as i64))
            ),
        }
    }
}

/// The first wait for a store's load to fall; each next one doubles.
const FIRST_WAIT: Duration = Duration::from_millis(250);
/// The longest single wait between two looks at a store's load or lag.
const RECHECK: Duration = Duration::from_secs(5);
/// A wait for the load this long is logged as a warning (once per wait).
const LONG_PAUSE: Duration = Duration::from_secs(60);
/// How long a run waits for a limit unless the config says otherwise.
const DEFAULT_MAX_PAUSE: Duration = Duration::from_secs(1800);

/// What every step of one invocation is held to, besides its own window,
/// pause and load limit.
#[derive(Clone)]
pub struct Limits {
    started: Instant,
    max_duration: Option<Duration>,
    stop_file: Option<PathBuf>,
    max_pause: Duration,
    sessions: Option<SessionLimits>,
    /// Open connections to replicas, by their store's name: kept between
    /// batches, dropped when one fails and opened again at the next look.
    replicas: Arc<tokio::sync::Mutex<HashMap<String, Box<dyn Store>>>>,
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limits")
            .field("max_duration", &self.max_duration)
            .field("stop_file", &self.stop_file)
            .field("max_pause", &self.max_pause)
            .finish_non_exhaustive()
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(None, None)
    }
}

impl Limits {
    /// Limits counted from now.
    pub fn new(max_duration: Option<Duration>, stop_file: Option<PathBuf>) -> Self {
        Self {
            started: Instant::now(),
            max_duration,
            stop_file,
            max_pause: DEFAULT_MAX_PAUSE,
            sessions: None,
            replicas: Arc::default(),
        }
    }

    /// The config's limits (the stop file, `max_pause_ms`), and
    /// `--max-duration` if given, counted from now.
    pub fn of(settings: &crate::rules::Settings, max_duration: Option<Duration>) -> Self {
        Self {
            max_pause: settings.max_pause,
            sessions: Some(SessionLimits::of(settings)),
            ..Self::new(max_duration, settings.stop_file.clone())
        }
    }

    /// Waits as the limits ask before the next batch of `step`: its
    /// `pause_ms` (not before the first), then for as long as the store's
    /// load is above `max_load`, or a replica is behind more than
    /// `max_lag`, or either cannot be read; at most `max_pause_ms`. Called
    /// between transactions only. `Some` when the step must stop instead, and why;
    /// a stop request cuts a pause short (the caller checks for it).
    pub async fn before_batch(
        &self,
        store: &mut dyn Store,
        step: &Step,
        shutdown: &Shutdown,
        first: bool,
    ) -> Option<Halt> {
        let halt = || self.halt(step.window.as_ref(), Utc::now());
        if let Some(halt) = halt() {
            return Some(halt);
        }
        if !first && step.pause_ms > 0 {
            let pause = Duration::from_millis(step.pause_ms);
            if !sleep(pause, shutdown).await {
                return None;
            }
            metrics::paused(&step.rule_id, "pause_ms", pause.as_secs_f64());
            if let Some(halt) = halt() {
                return Some(halt);
            }
        }
        if step.max_load.is_none() && step.max_lag.is_none() {
            return None;
        }
        let started = Instant::now();
        let mut wait = FIRST_WAIT;
        let mut warned = false;
        // A load or lag that cannot be read is not a low one: the batch waits.
        while let Some((what, reason)) = self.busy(store, step, shutdown).await {
            let waited = started.elapsed();
            if waited >= self.max_pause {
                metrics::pausing(&step.rule_id, false);
                return Some(Halt::PausedTooLong {
                    reason,
                    max_pause: self.max_pause,
                });
            }
            if wait == FIRST_WAIT {
                tracing::info!(rule = %step.rule_id, store = %step.store, %reason, "pausing between batches");
                metrics::pausing(&step.rule_id, true);
            } else if waited >= LONG_PAUSE && !warned {
                warned = true;
                tracing::warn!(rule = %step.rule_id, store = %step.store, %reason, seconds = waited.as_secs(), "a long pause between batches; the run waits up to max_pause_ms, then stops and leaves the rest for the next run");
            }
            let slept = wait.min(self.max_pause.saturating_sub(waited));
            let went_on = sleep(slept, shutdown).await;
            metrics::paused(&step.rule_id, what, slept.as_secs_f64());
            if !went_on {
                metrics::pausing(&step.rule_id, false);
                return None;
            }
            if let Some(halt) = halt() {
                metrics::pausing(&step.rule_id, false);
                return Some(halt);
            }
            wait = (wait * 2).min(RECHECK);
        }
        if wait > FIRST_WAIT && !shutdown.is_requested() {
            metrics::pausing(&step.rule_id, false);
            tracing::info!(rule = %step.rule_id, seconds = started.elapsed().as_secs_f64(), "load and lag within their limits again; going on");
        }
        None
    }

    /// Why the next batch must wait, if it must: `load` or `lag` (for the
    /// metrics) and a sentence for the log and the trail. Holds no values
    /// and no URLs: a replica is named by its number.
    async fn busy(
        &self,
        store: &mut dyn Store,
        step: &Step,
        shutdown: &Shutdown,
    ) -> Option<(&'static str, String)> {
        if let Some(max_load) = step.max_load {
            match store.load().await {
                Ok(Some(load)) if load > max_load => {
                    return Some((
                        "load",
                        format!(
                            "the load of store {} ({load} statements running) stayed above max_load = {max_load}",
                            step.store
                        ),
                    ));
                }
                Ok(_) => {}
                Err(err) => {
                    return Some((
                        "load",
                        format!(
                            "the load of store {} could not be read ({})",
                            step.store,
                            why(&err)
                        ),
                    ));
                }
            }
        }
        let max_lag = step.max_lag?;
        let mut open = self.replicas.lock().await;
        for replica in &step.replicas {
            let lag = match open.get_mut(&replica.name) {
                Some(connection) => connection.replica_lag().await,
                None => match self.sessions {
                    // A replica that does not answer must not hold up a stop.
                    Some(sessions) => match tokio::select! {
                        connected = crate::store::connect(replica, sessions) => connected,
                        () = shutdown.requested() => return None,
                    } {
                        Ok(mut connection) => {
                            let lag = connection.replica_lag().await;
                            open.insert(replica.name.clone(), connection);
                            lag
                        }
                        Err(err) => Err(err),
                    },
                    None => Ok(None),
                },
            };
            let reason = match lag {
                Ok(Some(lag)) if lag <= max_lag => continue,
                Ok(Some(lag)) => format!(
                    "{} is {:.1} s behind, more than max_lag = {:.1} s",
                    replica.name,
                    lag.as_secs_f64(),
                    max_lag.as_secs_f64()
                ),
                Ok(None) => format!(
                    "{} cannot say how far behind it is (replication is not running there)",
                    replica.name
                ),
                Err(err) => {
                    open.remove(&replica.name);
                    format!("{} cannot be reached ({})", replica.name, why(&err))
                }
            };
            return Some(("lag", reason));
        }
        None
    }

    /// Why a step under `window` may not start or go on at `now`; `None`
    /// when it may.
    pub fn halt(&self, window: Option<&OperatingWindow>, now: DateTime<Utc>) -> Option<Halt> {
        if let Some(path) = &self.stop_file
            && path.exists()
        {
            return Some(Halt::StopFile(path.clone()));
        }
        if let Some(limit) = self.max_duration
            && self.started.elapsed() >= limit
        {
            return Some(Halt::MaxDuration(limit));
        }
        match window {
            Some(window) if !window.is_open_at(now) => Some(Halt::WindowClosed(window.clone())),
            _ => None,
        }
    }
}

/// A failed look at a limit, for the log and the trail: glemsel's own
/// words for a refusal, the short code of a driver's error.
fn why(err: &StoreError) -> String {
    match err {
        StoreError::Config { message, .. } => message.clone(),
        other => other.audit_code(),
    }
}

/// Sleeps for `span`; `false` when a stop was requested first.
async fn sleep(span: Duration, shutdown: &Shutdown) -> bool {
    tokio::select! {
        () = tokio::time::sleep(span) => true,
        () = shutdown.requested() => false,
    }
}

/// A request to stop, shared by signal handlers and every running step.
#[derive(Clone, Debug)]
pub struct Shutdown {
    sender: watch::Sender<bool>,
    receiver: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (sender, receiver) = watch::channel(false);
        Self { sender, receiver }
    }
}

impl Shutdown {
    pub fn request(&self) {
        self.sender.send_replace(true);
    }

    pub fn is_requested(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Resolves once a stop has been requested.
    pub async fn requested(&self) {
        let mut receiver = self.receiver.clone();
        let _ = receiver.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    fn at(zone: Tz, text: &str) -> DateTime<Utc> {
        let local = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap();
        crate::schedule::instant(local, zone)
    }

    #[test]
    fn the_stop_file_halts_first_then_the_duration_then_the_window() {
        let dir = std::env::temp_dir().join(format!("glemsel-stop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stop = dir.join("stop");
        let _ = std::fs::remove_file(&stop);
        let window = OperatingWindow::parse("01:00-02:00", Tz::UTC).unwrap();
        let closed = at(Tz::UTC, "2026-03-10 12:00:00");
        let open = at(Tz::UTC, "2026-03-10 01:30:00");
        let limits = Limits::new(Some(Duration::from_secs(3600)), Some(stop.clone()));
        assert_eq!(limits.halt(Some(&window), open), None);
        assert_eq!(
            limits.halt(Some(&window), closed),
            Some(Halt::WindowClosed(window.clone()))
        );
        std::fs::write(&stop, "").unwrap();
        assert_eq!(limits.halt(None, open), Some(Halt::StopFile(stop.clone())));
        std::fs::remove_file(&stop).unwrap();
        let spent = Limits::new(Some(Duration::ZERO), None);
        assert_eq!(
            spent.halt(None, open),
            Some(Halt::MaxDuration(Duration::ZERO))
        );
    }
}
