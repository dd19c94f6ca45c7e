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

use chrono::{DateTime, NaiveTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;

use crate::execute::Shutdown;
use crate::metrics;
use crate::plan::Step;
use crate::store::{SessionLimits, Store, StoreError};

/// When a rule may run: `"01:00-05:00"`, wall-clock time in a zone. A
/// window whose end is earlier than its start crosses midnight
/// (`"22:00-04:00"`). The start is inside, the end is not.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatingWindow {
    start: NaiveTime,
    end: NaiveTime,
    zone: Tz,
}

impl fmt::Debug for OperatingWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OperatingWindow({self})")
    }
}

impl fmt::Display for OperatingWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{} {}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M"),
            self.zone.name()
        )
    }
}

impl serde::Serialize for OperatingWindow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl OperatingWindow {
    /// Reads `"HH:MM-HH:MM"` in `zone`.
    pub fn parse(text: &str, zone: Tz) -> Result<Self, String> {
        let wrong = || {
            format!(
                "window {text:?}: write it as \"HH:MM-HH:MM\" in the config's timezone, e.g. \"01:00-05:00\" (\"22:00-04:00\" crosses midnight)"
            )
        };
        let (start, end) = text.split_once('-').ok_or_else(wrong)?;
        let time =
            |part: &str| NaiveTime::parse_from_str(part.trim(), "%H:%M").map_err(|_| wrong());
        let (start, end) = (time(start)?, time(end)?);
        if start == end {
            return Err(format!(
                "window {text:?} starts where it ends; leave window out to run at any time"
            ));
        }
        Ok(Self { start, end, zone })
    }

    /// Whether the window is open at `at`.
    pub fn is_open_at(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.zone).time();
        // Minutes matter, seconds do not: "05:00" closes at 05:00:00.
        let local = local.with_nanosecond(0).unwrap_or(local);
        if self.start < self.end {
            self.start <= local && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }

    /// The first instant from `after` on at which the window is open.
    pub fn next_open(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        if self.is_open_at(after) {
            return after;
        }
        let today = after.with_timezone(&self.zone).date_naive();
        // A start that falls into a daylight-saving gap opens when the
        // clocks jump past it; three days always hold the next opening.
        (0..3)
            .filter_map(|days| today.checked_add_signed(TimeDelta::days(days)))
            .map(|day| crate::schedule::instant(day.and_time(self.start), self.zone))
            .find(|&at| at > after)
            .unwrap_or(after + TimeDelta::days(1))
    }
}

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

/// Reads a length of time as `--max-duration` takes it: `"30m"`, `"2h"`,
/// `"1h30m"`, `"90s"`, or as rule files write it, `"30 minutes"`.
pub fn parse_max_duration(text: &str) -> Result<Duration, String> {
    let compact = || -> Option<u64> {
        let mut seconds = 0u64;
        let mut number = String::new();
        for c in text.trim().chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return None,
            };
            seconds = seconds.checked_add(number.parse::<u64>().ok()?.checked_mul(unit)?)?;
            number.clear();
        }
        number.is_empty().then_some(seconds)
    };
    let seconds = match compact() {
        Some(seconds) => seconds,
        None => crate::period::parse_duration(text)
            .map_err(|_| {
                format!("{text:?} is not a length of time; write e.g. \"30m\", \"2h\", \"1h30m\" or \"90s\"")
            })?
            .num_seconds()
            .max(0) as u64,
    };
    if seconds == 0 {
        return Err(format!("{text:?} leaves no time to run"));
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(zone: Tz, text: &str) -> DateTime<Utc> {
        let local = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap();
        crate::schedule::instant(local, zone)
    }

    #[test]
    fn a_window_is_open_from_its_start_to_just_before_its_end() {
        let zone: Tz = "Europe/Copenhagen".parse().unwrap();
        let window = OperatingWindow::parse("01:00-05:00", zone).unwrap();
        assert!(!window.is_open_at(at(zone, "2026-03-10 00:59:59")));
        assert!(window.is_open_at(at(zone, "2026-03-10 01:00:00")));
        assert!(window.is_open_at(at(zone, "2026-03-10 04:59:59")));
        assert!(!window.is_open_at(at(zone, "2026-03-10 05:00:00")));
        assert_eq!(window.to_string(), "01:00-05:00 Europe/Copenhagen");
    }

    #[test]
    fn a_window_may_cross_midnight() {
        let zone = Tz::UTC;
        let window = OperatingWindow::parse("22:00-04:00", zone).unwrap();
        assert!(window.is_open_at(at(zone, "2026-03-10 23:30:00")));
        assert!(window.is_open_at(at(zone, "2026-03-11 03:59:00")));
        assert!(!window.is_open_at(at(zone, "2026-03-11 04:00:00")));
        assert!(!window.is_open_at(at(zone, "2026-03-11 12:00:00")));
        assert_eq!(
            window.next_open(at(zone, "2026-03-11 12:00:00")),
            at(zone, "2026-03-11 22:00:00")
        );
        let open = at(zone, "2026-03-11 23:00:00");
        assert_eq!(window.next_open(open), open);
    }

    #[test]
    fn the_next_opening_is_tomorrow_once_today_is_past() {
        let zone: Tz = "Europe/Copenhagen".parse().unwrap();
        let window = OperatingWindow::parse("01:00-05:00", zone).unwrap();
        assert_eq!(
            window.next_open(at(zone, "2026-03-10 06:00:00")),
            at(zone, "2026-03-11 01:00:00")
        );
        // On the spring change day 02:30 does not exist: the window opens
        // when the clocks jump to 03:00.
        let gap = OperatingWindow::parse("02:30-04:00", zone).unwrap();
        let opens = gap.next_open(at(zone, "2026-03-28 12:00:00"));
        assert_eq!(opens, at(zone, "2026-03-29 03:00:00"));
        assert!(gap.is_open_at(opens));
    }

    #[test]
    fn malformed_windows_are_refused() {
        for text in [
            "1-5",
            "01:00",
            "01:00-01:00",
            "25:00-03:00",
            "01:00 to 05:00",
        ] {
            assert!(OperatingWindow::parse(text, Tz::UTC).is_err(), "{text}");
        }
    }

    #[test]
    fn max_durations_read_as_people_write_them() {
        assert_eq!(parse_max_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_max_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_max_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_max_duration("2 hours"), Ok(Duration::from_secs(7200)));
        assert!(parse_max_duration("0m").is_err());
        assert!(parse_max_duration("soon").is_err());
        assert!(parse_max_duration("5x").is_err());
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
