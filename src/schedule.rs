//! Cron schedules (with seconds) in a time zone, across daylight saving.
//!
//! The cron crate matches fields on wall-clock time; this module decides
//! which instant a wall-clock time means. A time that happens twice (the
//! autumn hour) runs once, at its first occurrence; a time that does not
//! happen (the spring gap) runs once, when the clocks jump past it. So a
//! daily 02:30 job in Copenhagen runs exactly once on both change days.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// Runs closer together than this are stepped over by
/// [`Schedule::longest_gap`].
const GAP_STEP: TimeDelta = TimeDelta::minutes(10);

/// A validated cron expression: `sec min hour day-of-month month day-of-week [year]`.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    cron: cron::Schedule,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fields = text.split_whitespace().count();
        if !(6..=7).contains(&fields) {
            return Err(format!(
                "schedule {text:?} has {fields} fields; write seconds first: \"sec min hour day month weekday\", e.g. \"0 30 2 * * *\""
            ));
        }
        let parts: Vec<&str> = text.split_whitespace().collect();
        let (day, weekday) = (parts[3], parts[5]);
        // Cron dialects number weekdays differently (0 or 1 for Sunday; the
        // cron crate uses 1): a number could silently shift a run by a day.
        if weekday.chars().any(|c| c.is_ascii_digit()) {
            return Err(format!(
                "schedule {text:?}: write weekdays as names (MON-FRI, SUN), not numbers"
            ));
        }
        // Classic cron runs when either matches, the cron crate when both do.
        if !matches!(day, "*" | "?") && !matches!(weekday, "*" | "?") {
            return Err(format!(
                "schedule {text:?}: restrict the day of the month or the weekday, not both"
            ));
        }
        let cron =
            cron::Schedule::from_str(text).map_err(|err| format!("schedule {text:?}: {err}"))?;
        if cron.upcoming(Utc).next().is_none() {
            return Err(format!("schedule {text:?} never runs"));
        }
        Ok(Self {
            text: text.to_string(),
            cron,
        })
    }
}

/// The instant a wall-clock time stands for: the first of two, or for a
/// time inside a gap, the moment the clocks jump past it.
pub(crate) fn instant(local: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.with_timezone(&Utc),
        LocalResult::None => {
            let mut probe = local;
            loop {
                probe += TimeDelta::minutes(1);
                if let Some(at) = zone.from_local_datetime(&probe).earliest() {
                    // The first valid minute past the gap, less the seconds the
                    // probe carried over: the instant of the jump itself.
                    let seconds = probe.and_utc().timestamp().rem_euclid(60);
                    return at.with_timezone(&Utc) - TimeDelta::seconds(seconds);
                }
            }
        }
    }
}

impl Schedule {
    /// The first run strictly after `after`, with wall-clock fields read in `zone`.
    pub fn next_after(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&zone).naive_local();
        // Cron fields are matched on wall-clock time, which UTC represents without gaps.
        self.cron
            .after(&local.and_utc())
            .take(10_000)
            .map(|candidate| instant(candidate.naive_utc(), zone))
            .find(|at| *at > after)
    }

    /// The longest time between two consecutive runs, over the 400 days
    /// after `from` (every month, both daylight-saving changes), in `zone`;
    /// `None` when the runs stop within them. A deadline rule acts this
    /// much (and its `max_duration`) ahead, so the run after a row comes
    /// due still takes it before its deadline.
    ///
    /// Runs closer together than [`GAP_STEP`] are stepped over, so a
    /// schedule every second costs no more than one every ten minutes; the
    /// gap found then errs long by less than a step, never short.
    pub fn longest_gap(&self, from: DateTime<Utc>, zone: Tz) -> Option<TimeDelta> {
        let end = from + TimeDelta::days(400);
        let mut last = self.next_after(from, zone)?;
        let mut longest = TimeDelta::zero();
        while last < end {
            let next = self.next_after(last, zone)?;
            let next = if next - last < GAP_STEP {
                // The last run before `last + GAP_STEP` is at least `last`,
                // so measuring from `last` can only make the gap longer.
                self.next_after(last + GAP_STEP - TimeDelta::seconds(1), zone)?
            } else {
                next
            };
            longest = longest.max(next - last);
            last = next;
        }
        Some(longest)
    }

    /// Whether a run was due between `last` and `now` (exclusive of `last`).
    pub fn missed_since(&self, last: DateTime<Utc>, now: DateTime<Utc>, zone: Tz) -> bool {
        self.next_after(last, zone).is_some_and(|next| next <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn runs(schedule: &str, from: &str, count: usize) -> Vec<DateTime<Utc>> {
        let zone: Tz = "Europe/Copenhagen".parse().unwrap();
        let schedule: Schedule = schedule.parse().unwrap();
        let mut at = utc(from);
        let mut out = Vec::new();
        for _ in 0..count {
            at = schedule.next_after(at, zone).unwrap();
            out.push(at);
        }
        out
    }

    /// 2026-03-29: Copenhagen jumps from 02:00 CET to 03:00 CEST. A daily
    /// 02:30 job runs once that day, as the clocks jump.
    #[test]
    fn spring_forward_neither_skips_nor_doubles() {
        assert_eq!(
            runs("0 30 2 * * *", "2026-03-27T12:00:00Z", 4),
            [
                utc("2026-03-28T01:30:00Z"), // 02:30 CET
                utc("2026-03-29T01:00:00Z"), // 02:30 does not exist: at the jump, 03:00 CEST
                utc("2026-03-30T00:30:00Z"), // 02:30 CEST
                utc("2026-03-31T00:30:00Z"),
            ]
        );
        // Hourly: 02:00 and 03:00 wall-clock collapse into the one instant.
        assert_eq!(
            runs("0 0 * * * *", "2026-03-29T00:30:00Z", 3),
            [
                utc("2026-03-29T01:00:00Z"),
                utc("2026-03-29T02:00:00Z"),
                utc("2026-03-29T03:00:00Z")
            ]
        );
    }

    /// 2026-10-25: Copenhagen goes from 03:00 CEST back to 02:00 CET. A
    /// daily 02:30 job runs at the first 02:30 only.
    #[test]
    fn fall_back_neither_skips_nor_doubles() {
        assert_eq!(
            runs("0 30 2 * * *", "2026-10-23T12:00:00Z", 4),
            [
                utc("2026-10-24T00:30:00Z"), // 02:30 CEST
                utc("2026-10-25T00:30:00Z"), // the first 02:30 (CEST)
                utc("2026-10-26T01:30:00Z"), // 02:30 CET
                utc("2026-10-27T01:30:00Z"),
            ]
        );
        // Started during the repeated hour, after the first 02:30 passed.
        assert_eq!(
            runs("0 30 2 * * *", "2026-10-25T01:10:00Z", 1),
            [utc("2026-10-26T01:30:00Z")]
        );
    }

    #[test]
    fn longest_gaps() {
        let zone: Tz = "Europe/Copenhagen".parse().unwrap();
        let from = utc("2026-01-10T12:00:00Z");
        let gap = |text: &str| text.parse::<Schedule>().unwrap().longest_gap(from, zone);
        // Daily at 02:30: 25 hours when the clocks go back in October.
        assert_eq!(gap("0 30 2 * * *"), Some(TimeDelta::hours(25)));
        // In UTC a day is a day.
        let daily: Schedule = "0 30 2 * * *".parse().unwrap();
        assert_eq!(daily.longest_gap(from, Tz::UTC), Some(TimeDelta::hours(24)));
        // Weekdays only: Friday to Monday, 73 hours across the October change.
        assert_eq!(gap("0 30 2 * * MON-FRI"), Some(TimeDelta::hours(73)));
        // Every hour: an hour, two across the autumn change (02:00 and
        // 03:00 CEST, then the repeated hour is skipped... measured as run).
        assert!(gap("0 0 * * * *").unwrap() <= TimeDelta::hours(2));
        // Every second during the 02:00 hour: the rest of the day, to
        // within a step.
        let dense = gap("* * 2 * * *").unwrap();
        assert!(dense >= TimeDelta::hours(23), "{dense}");
        assert!(dense <= TimeDelta::hours(24) + GAP_STEP, "{dense}");
        // Monthly on the 31st: from 31 August... the longest wait is two
        // months without a 31st (31 July to 31 August is one; 31 October to
        // 31 December two).
        assert_eq!(gap("0 0 3 31 * *").map(|g| g.num_days()), Some(61));
        // A schedule that ends has no longest gap.
        assert_eq!(gap("0 0 3 * * * 2026"), None);
    }

    #[test]
    fn missed_runs_are_noticed() {
        let zone: Tz = "Europe/Copenhagen".parse().unwrap();
        let daily: Schedule = "0 30 2 * * *".parse().unwrap();
        assert!(daily.missed_since(
            utc("2026-11-20T01:30:05Z"),
            utc("2026-11-22T10:00:00Z"),
            zone
        ));
        assert!(!daily.missed_since(
            utc("2026-11-22T01:30:05Z"),
            utc("2026-11-22T10:00:00Z"),
            zone
        ));
    }

    #[test]
    fn schedules_need_seconds() {
        assert!(
            "30 2 * * *"
                .parse::<Schedule>()
                .unwrap_err()
                .contains("write seconds first")
        );
        assert!("0 30 25 * * *".parse::<Schedule>().is_err());
        assert!("*/5 * * * * *".parse::<Schedule>().is_ok());
        assert!(
            "0 30 2 * * 1-5"
                .parse::<Schedule>()
                .unwrap_err()
                .contains("weekdays as names")
        );
        assert!(
            "0 30 2 1 * MON"
                .parse::<Schedule>()
                .unwrap_err()
                .contains("not both")
        );
        assert!(
            "0 0 0 30 FEB * 2030"
                .parse::<Schedule>()
                .unwrap_err()
                .contains("never runs")
        );
        // MON-FRI means Monday to Friday: 2026-11-27 is a Friday, the next run a Monday.
        let zone: Tz = "Europe/Copenhagen".parse().unwrap();
        let weekdays: Schedule = "0 30 2 * * MON-FRI".parse().unwrap();
        assert_eq!(
            weekdays.next_after(utc("2026-11-27T10:00:00Z"), zone),
            Some(utc("2026-11-30T01:30:00Z"))
        );
    }
}
