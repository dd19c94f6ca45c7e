//! When and for how long a rule may run, as the files write it: operating
//! windows (`"01:00-05:00"` in a zone) and lengths of time (`"30m"`,
//! `"5s"`). Data only; `operate` enforces them between batches.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;

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
}
