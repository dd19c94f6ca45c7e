//! Retention arithmetic: when an event becomes due, and its inverse, the
//! first event instant that is not yet due at a given "now".
//!
//! All arithmetic is on wall-clock time in one time zone (the caller turns
//! instants into local times first), so "36 months" means the same calendar
//! date three years on, whatever daylight-saving did in between.
//!
//! The due function is monotone (a later event is never due earlier), which
//! makes the set of due events a prefix: `event < bound`. That lets the SQL
//! compare the raw event column with one bound parameter, so it stays
//! index-friendly and identical in `plan` and `run`.
//!
//! Working days come from a [`Calendar`]: Monday to Friday, less the public
//! holidays of a country (Denmark's are built in) and the deployment's own
//! closing days.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;

/// The unit a retention period counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Days,
    /// Monday to Friday, less the [`Calendar`]'s holidays and closing days.
    WorkingDays,
    Weeks,
    Months,
    Years,
}

/// A retention period such as "36 months" or "3 working days".
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Period {
    pub amount: u32,
    pub unit: Unit,
}

/// The longest period a rule may state; longer is almost certainly a typo.
const MAX_YEARS: u32 = 200;

impl FromStr for Period {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut words = text.split_whitespace();
        let amount = words.next().ok_or_else(|| {
            "empty period; write for example \"36 months\" or \"3 working days\"".to_string()
        })?;
        let amount: u32 = amount
            .parse()
            .map_err(|_| format!("period {text:?} must start with a whole number"))?;
        let unit_words: Vec<&str> = words.collect();
        let unit = match unit_words.join(" ").to_ascii_lowercase().as_str() {
            "day" | "days" => Unit::Days,
            "working day" | "working days" => Unit::WorkingDays,
            "week" | "weeks" => Unit::Weeks,
            "month" | "months" => Unit::Months,
            "year" | "years" => Unit::Years,
            other => {
                return Err(format!(
                    "unknown unit {other:?} in period {text:?}; use days, working days, weeks, months or years"
                ));
            }
        };
        let period = Period { amount, unit };
        if period.approx_days() > i64::from(MAX_YEARS) * 366 {
            return Err(format!("period {text:?} is longer than {MAX_YEARS} years"));
        }
        Ok(period)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (one, many) = match self.unit {
            Unit::Days => ("day", "days"),
            Unit::WorkingDays => ("working day", "working days"),
            Unit::Weeks => ("week", "weeks"),
            Unit::Months => ("month", "months"),
            Unit::Years => ("year", "years"),
        };
        let unit = if self.amount == 1 { one } else { many };
        write!(f, "{} {unit}", self.amount)
    }
}

impl Period {
    /// The period's length in days at most, for search brackets; for working
    /// days only without holidays or closing days (the search widens then).
    fn approx_days(&self) -> i64 {
        let n = i64::from(self.amount);
        match self.unit {
            Unit::Days => n,
            Unit::WorkingDays => n / 5 * 7 + 7,
            Unit::Weeks => n * 7,
            Unit::Months => n * 31,
            Unit::Years => n * 366,
        }
    }

    /// Adds the period to a wall-clock time.
    ///
    /// Months and years keep the day of the month; when the target month is
    /// shorter (31 January + 1 month, 29 February + 12 months) the result is
    /// the end of the target month, i.e. the first instant of the next month.
    /// That is never earlier than the usual clamp to the last day, and keeps
    /// the function monotone in the time of day.
    ///
    /// Working days: an event on a day that is not a working day counts from
    /// the next working day's 00:00.
    pub fn add_to(&self, at: NaiveDateTime, calendar: &Calendar) -> NaiveDateTime {
        match self.unit {
            Unit::Days => at + Days::new(u64::from(self.amount)),
            Unit::Weeks => at + Days::new(7 * u64::from(self.amount)),
            Unit::Months => add_months(at, self.amount),
            Unit::Years => add_months(at, self.amount * 12),
            Unit::WorkingDays => calendar.add_working_days(at, self.amount),
        }
    }
}

fn add_months(at: NaiveDateTime, months: u32) -> NaiveDateTime {
    let index = at.year() as i64 * 12 + i64::from(at.month0()) + i64::from(months);
    let (year, month0) = (index.div_euclid(12) as i32, index.rem_euclid(12) as u32);
    match NaiveDate::from_ymd_opt(year, month0 + 1, at.day()) {
        Some(date) => date.and_time(at.time()),
        None => first_of_next_month(year, month0 + 1).and_time(NaiveTime::MIN),
    }
}

fn first_of_next_month(year: i32, month: u32) -> NaiveDate {
    let (year, month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1).expect("first of a month exists")
}

/// Whose public holidays are not working days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Holidays {
    /// Only Saturdays, Sundays and the closing days are off.
    #[default]
    None,
    /// Denmark's public holidays (helligdage), as [`danish_holidays`] lists them.
    Denmark,
}

impl FromStr for Holidays {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "DK" => Ok(Holidays::Denmark),
            "none" => Ok(Holidays::None),
            other => Err(format!(
                "holidays {other:?} is not known; use \"DK\" (Danish public holidays) or \"none\" (only weekends and closing_days)"
            )),
        }
    }
}

/// Which days are working days: Monday to Friday, less public holidays and
/// the deployment's closing days (for example 24 December).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Calendar {
    pub holidays: Holidays,
    /// Further days off, sorted and without repeats.
    pub closing_days: Vec<NaiveDate>,
}

impl Calendar {
    pub fn new(holidays: Holidays, mut closing_days: Vec<NaiveDate>) -> Self {
        closing_days.sort();
        closing_days.dedup();
        Calendar {
            holidays,
            closing_days,
        }
    }

    /// Why `date` is not a working day, or `None` when it is one.
    pub fn day_off(&self, date: NaiveDate) -> Option<&'static str> {
        if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
            return Some("weekend");
        }
        if self.closing_days.binary_search(&date).is_ok() {
            return Some("closing day");
        }
        match self.holidays {
            Holidays::None => None,
            Holidays::Denmark => danish_holiday(date),
        }
    }

    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        self.day_off(date).is_none()
    }

    fn next_working_day(&self, date: NaiveDate) -> NaiveDate {
        let mut date = date + Days::new(1);
        while !self.is_working_day(date) {
            date = date + Days::new(1);
        }
        date
    }

    /// `amount` working days after `at`, at the same time of day. An event
    /// on a day off counts from the next working day's 00:00.
    pub fn add_working_days(&self, at: NaiveDateTime, amount: u32) -> NaiveDateTime {
        let (mut date, mut time) = (at.date(), at.time());
        if !self.is_working_day(date) {
            date = self.next_working_day(date);
            time = NaiveTime::MIN;
        }
        for _ in 0..amount {
            date = self.next_working_day(date);
        }
        date.and_time(time)
    }
}

impl fmt::Display for Calendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Monday to Friday")?;
        match (self.holidays, self.closing_days.len()) {
            (Holidays::None, 0) => Ok(()),
            (Holidays::None, n) => write!(f, ", less {n} closing day{}", plural(n)),
            (Holidays::Denmark, 0) => write!(f, ", less Danish public holidays"),
            (Holidays::Denmark, n) => write!(
                f,
                ", less Danish public holidays and {n} closing day{}",
                plural(n)
            ),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Easter Sunday of a Gregorian year (the anonymous Gregorian algorithm,
/// Meeus/Jones/Butcher).
pub fn easter_sunday(year: i32) -> NaiveDate {
    let (a, b, c) = (
        year.rem_euclid(19),
        year.div_euclid(100),
        year.rem_euclid(100),
    );
    let (d, e) = (b / 4, b % 4);
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let (i, k) = (c / 4, c % 4);
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).expect("Easter is a date")
}

/// The last year with Great Prayer Day (store bededag) as a public holiday;
/// the Folketing abolished it from 2024.
const LAST_GREAT_PRAYER_DAY: i32 = 2023;

/// The moveable feasts: days after Easter Sunday, name, last year kept.
const MOVEABLE_FEASTS: [(i64, &str, i32); 8] = [
    (-3, "Maundy Thursday", i32::MAX),
    (-2, "Good Friday", i32::MAX),
    (0, "Easter Sunday", i32::MAX),
    (1, "Easter Monday", i32::MAX),
    (26, "Great Prayer Day", LAST_GREAT_PRAYER_DAY),
    (39, "Ascension Day", i32::MAX),
    (49, "Whit Sunday", i32::MAX),
    (50, "Whit Monday", i32::MAX),
];

const FIXED_FEASTS: [(u32, u32, &str); 3] = [
    (1, 1, "New Year's Day"),
    (12, 25, "Christmas Day"),
    (12, 26, "Boxing Day"),
];

/// The Danish public holiday on `date`, if any. Christmas Eve, New Year's
/// Eve and Constitution Day (5 June) are customary days off, not public
/// holidays: a deployment that closes on them lists them in `closing_days`.
pub fn danish_holiday(date: NaiveDate) -> Option<&'static str> {
    if let Some((_, _, name)) = FIXED_FEASTS
        .iter()
        .find(|(month, day, _)| (date.month(), date.day()) == (*month, *day))
    {
        return Some(name);
    }
    let offset = (date - easter_sunday(date.year())).num_days();
    MOVEABLE_FEASTS
        .iter()
        .find(|(days, _, last_year)| *days == offset && date.year() <= *last_year)
        .map(|(_, name, _)| *name)
}

/// Every Danish public holiday of `year`, in date order.
pub fn danish_holidays(year: i32) -> Vec<(NaiveDate, &'static str)> {
    let mut days: Vec<(NaiveDate, &'static str)> = (1..=366)
        .filter_map(|ordinal| NaiveDate::from_yo_opt(year, ordinal))
        .filter_map(|date| danish_holiday(date).map(|name| (date, name)))
        .collect();
    days.sort();
    days
}

/// Where a period starts counting: at the event itself, or at the end of
/// the (financial or calendar) year that contains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "to")]
pub enum RoundUp {
    CalendarYearEnd,
    /// A financial year that ends on the last day of `end_month` (1–12).
    FinancialYearEnd {
        end_month: u32,
    },
}

impl RoundUp {
    /// The last day of the year that contains `date`.
    pub fn last_day(&self, date: NaiveDate) -> NaiveDate {
        let end_month = match self {
            RoundUp::CalendarYearEnd => 12,
            RoundUp::FinancialYearEnd { end_month } => *end_month,
        };
        let mut after = first_of_next_month(date.year(), end_month);
        if date >= after {
            after = first_of_next_month(date.year() + 1, end_month);
        }
        after - Days::new(1)
    }

    /// The first instant after the year that contains `at`.
    pub fn apply(&self, at: NaiveDateTime) -> NaiveDateTime {
        (self.last_day(at.date()) + Days::new(1)).and_time(NaiveTime::MIN)
    }
}

impl RoundUp {
    /// Which year it is: "calendar year" or "financial year (06-30)".
    fn year(&self) -> String {
        match self {
            RoundUp::CalendarYearEnd => "calendar year".into(),
            RoundUp::FinancialYearEnd { end_month } => {
                let last = first_of_next_month(2001, *end_month) - Days::new(1);
                format!("financial year ({:02}-{:02})", end_month, last.day())
            }
        }
    }
}

impl fmt::Display for RoundUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "end of the {}", self.year())
    }
}

/// A full retention: round the event up (in order), then add the period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Retention {
    pub period: Period,
    /// Each rounding takes the last day of the year that contains the
    /// previous one's last day: `[financial_year_end, calendar_year_end]`
    /// is "the end of the calendar year in which the financial year ends".
    pub round_up: Vec<RoundUp>,
    /// Which days are working days (for periods in working days).
    pub calendar: Calendar,
}

impl Retention {
    /// Where the period starts counting: the event itself, or the first
    /// instant after the last year end the roundings reach.
    ///
    /// A chain works on year-end *days*, not on the instant after them:
    /// the financial year 2019 (ending 31 December) ends in the calendar
    /// year 2019, although the instant after it lies in 2020.
    pub fn start(&self, event: NaiveDateTime) -> NaiveDateTime {
        match self.round_up.split_first() {
            None => event,
            Some((first, rest)) => {
                let last = rest
                    .iter()
                    .fold(first.last_day(event.date()), |day, rounding| {
                        rounding.last_day(day)
                    });
                (last + Days::new(1)).and_time(NaiveTime::MIN)
            }
        }
    }

    /// The first wall-clock instant at which an event at `event` is due.
    pub fn due_at(&self, event: NaiveDateTime) -> NaiveDateTime {
        self.period.add_to(self.start(event), &self.calendar)
    }

    /// Whether an event at `event` is due at `now`.
    pub fn is_due(&self, event: NaiveDateTime, now: NaiveDateTime) -> bool {
        self.due_at(event) <= now
    }

    /// The first event instant that is not yet due at `now`: every event
    /// strictly before it is due, and no event at or after it is.
    ///
    /// Found by bisection over microseconds, which is exact because
    /// [`Retention::due_at`] is monotone.
    pub fn first_not_due(&self, now: NaiveDateTime) -> NaiveDateTime {
        let mut slack_days = self.period.approx_days() + 2 * 366 * self.round_up.len() as i64 + 2;
        // Holidays and closing days stretch working days beyond the guess.
        while !self.is_due(now - TimeDelta::days(slack_days), now) {
            slack_days *= 2;
        }
        let micros = |at: NaiveDateTime| at.and_utc().timestamp_micros();
        let from_micros = |us: i64| {
            chrono::DateTime::from_timestamp_micros(us)
                .expect("within chrono's range")
                .naive_utc()
        };
        // Invariant: `due` is due and `not_due` is not (due_at(x) >= x > now).
        let mut due = micros(now - TimeDelta::days(slack_days));
        let mut not_due = micros(now) + 1;
        while not_due - due > 1 {
            let mid = due + (not_due - due) / 2;
            if self.is_due(from_micros(mid), now) {
                due = mid;
            } else {
                not_due = mid;
            }
        }
        from_micros(not_due)
    }

    /// Like [`Retention::first_not_due`], for columns that hold dates: the
    /// first date that is not yet due, reading a date as its midnight.
    pub fn first_date_not_due(&self, now: NaiveDateTime) -> NaiveDate {
        let bound = self.first_not_due(now);
        if bound.time() == NaiveTime::MIN {
            bound.date()
        } else {
            bound.date() + Days::new(1)
        }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.period)?;
        if self.period.unit == Unit::WorkingDays {
            write!(f, " ({})", self.calendar)?;
        }
        // "from the end of the calendar year in which the financial year
        // (06-30) ends": the last rounding is said first.
        let mut roundings = self.round_up.iter().rev();
        if let Some(last) = roundings.next() {
            write!(f, " from the {last}")?;
        }
        for rounding in roundings {
            write!(f, " in which the {} ends", rounding.year())?;
        }
        Ok(())
    }
}

/// Which kind of promise a rule's period is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    /// Nothing goes before the period has passed: a statutory duty such as
    /// bookkeeping ("kept 5 years"). Rows are due at the end of the period
    /// and go at the first run after it. The default.
    #[default]
    Minimum,
    /// Everything is gone before the period has passed: "at most", "up
    /// to", "no later than", "within". Rows are due a lead time before the
    /// end of the period, so the run that takes them finishes before it.
    Deadline,
}

impl FromStr for PeriodKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "minimum" => Ok(PeriodKind::Minimum),
            "deadline" => Ok(PeriodKind::Deadline),
            other => Err(format!(
                "kind {other:?} is not known; use \"minimum\" (nothing goes before the period ends) or \"deadline\" (everything is gone before it ends)"
            )),
        }
    }
}

/// A length of time such as `lead = "1 day"` or `max_duration = "2 hours"`:
/// a whole number of minutes, hours, days (24 hours) or weeks.
pub fn parse_duration(text: &str) -> Result<TimeDelta, String> {
    let mut words = text.split_whitespace();
    let amount: i64 = words
        .next()
        .and_then(|n| n.parse().ok())
        .filter(|n| (0..=100_000).contains(n))
        .ok_or_else(|| {
            format!("{text:?} must start with a whole number, e.g. \"1 hour\" or \"2 days\"")
        })?;
    let unit: Vec<&str> = words.collect();
    let minutes = match unit.join(" ").to_ascii_lowercase().as_str() {
        "minute" | "minutes" => 1,
        "hour" | "hours" => 60,
        "day" | "days" => 24 * 60,
        "week" | "weeks" => 7 * 24 * 60,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use minutes, hours, days or weeks"
            ));
        }
    };
    Ok(TimeDelta::minutes(amount * minutes))
}

/// A length of time as people say it: `1 day 2 hours`, `25 hours 30 minutes`.
/// Days are named only from 48 hours on, so a daily schedule's longest gap
/// reads `25 hours`.
pub fn describe_duration(span: TimeDelta) -> String {
    let seconds = span.num_seconds().max(0);
    let (days, rest) = if seconds >= 2 * 86_400 {
        (seconds / 86_400, seconds % 86_400)
    } else {
        (0, seconds)
    };
    let parts = [
        (days, "day"),
        (rest / 3_600, "hour"),
        (rest % 3_600 / 60, "minute"),
        (rest % 60, "second"),
    ];
    let words: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    if words.is_empty() {
        "0 minutes".into()
    } else {
        words.join(" ")
    }
}

/// The instant a wall-clock time names. Of an ambiguous time (autumn) the
/// earlier; a time that does not exist (spring) is moved back until it does,
/// so a bound never moves later than the wall clock says.
pub fn local_to_instant(local: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    let mut probe = local;
    loop {
        if let Some(at) = zone.from_local_datetime(&probe).earliest() {
            return at.with_timezone(&Utc);
        }
        probe -= TimeDelta::minutes(1);
    }
}

/// The years events are sampled from to judge a period as a whole
/// ([`Retention::shortest_span`], [`Retention::first_event_beyond`]): leap
/// years, both kinds of February, and every daylight-saving change in them.
const SAMPLE_YEARS: std::ops::RangeInclusive<i32> = 2024..=2031;

/// Every day of [`SAMPLE_YEARS`] at 00:00, 12:00 and its last microsecond.
fn sample_events() -> impl Iterator<Item = NaiveDateTime> {
    let times = [
        NaiveTime::MIN,
        NaiveTime::from_hms_opt(12, 0, 0).expect("noon"),
        NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).expect("a time"),
    ];
    let first = NaiveDate::from_yo_opt(*SAMPLE_YEARS.start(), 1).expect("a date");
    let last = NaiveDate::from_yo_opt(*SAMPLE_YEARS.end() + 1, 1).expect("a date");
    first
        .iter_days()
        .take_while(move |day| *day < last)
        .flat_map(move |day| times.map(|time| day.and_time(time)))
}

/// Which side of another period's end a rule's moment must stay on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Not before it: a floor (a category's minimum).
    NotBefore,
    /// Not after it: a ceiling (a category's deadline).
    NotAfter,
}

impl Retention {
    /// The shortest real time from an event to its due moment, over
    /// events on every day of several years (wall-clock times in `zone`).
    /// A deadline rule's lead must fit in it, or rows would be due before
    /// their event happened and still go too late.
    pub fn shortest_span(&self, zone: Tz) -> TimeDelta {
        sample_events()
            .map(|event| local_to_instant(self.due_at(event), zone) - local_to_instant(event, zone))
            .min()
            .expect("some days")
    }

    /// The first sampled event at which this period's due moment, moved by
    /// `shift`, falls on the wrong `side` of `bound`'s, counted from the
    /// same event; `None` when it never does. A category's minimum is a
    /// floor no rule of it may go before (`shift` = minus the rule's
    /// lead); its deadline a ceiling no rule may stay past (`shift` = how
    /// long after its due moment a row is gone at the latest).
    pub fn first_event_beyond(
        &self,
        shift: TimeDelta,
        side: Side,
        bound: &Retention,
        zone: Tz,
    ) -> Option<NaiveDateTime> {
        sample_events().find(|event| {
            let ours = local_to_instant(self.due_at(*event), zone) + shift;
            let theirs = local_to_instant(bound.due_at(*event), zone);
            match side {
                Side::NotBefore => ours < theirs,
                Side::NotAfter => ours > theirs,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn at(text: &str) -> NaiveDateTime {
        if text.len() == 10 {
            date(text).and_time(NaiveTime::MIN)
        } else {
            text.parse().unwrap()
        }
    }

    fn retention(period: &str, round_up: &[RoundUp]) -> Retention {
        Retention {
            period: period.parse().unwrap(),
            round_up: round_up.to_vec(),
            calendar: Calendar::default(),
        }
    }

    fn working_days(period: &str, calendar: Calendar) -> Retention {
        Retention {
            calendar,
            ..retention(period, &[])
        }
    }

    fn danish() -> Calendar {
        Calendar::new(Holidays::Denmark, vec![])
    }

    const FY_JUNE: RoundUp = RoundUp::FinancialYearEnd { end_month: 6 };

    #[test]
    fn parses_periods() {
        assert_eq!(
            "36 months".parse::<Period>().unwrap(),
            Period {
                amount: 36,
                unit: Unit::Months
            }
        );
        assert_eq!(
            "3 Working Days".parse::<Period>().unwrap(),
            Period {
                amount: 3,
                unit: Unit::WorkingDays
            }
        );
        assert_eq!("1 year".parse::<Period>().unwrap().unit, Unit::Years);
        assert_eq!("0 days".parse::<Period>().unwrap().amount, 0);
        assert!("36".parse::<Period>().is_err());
        assert!("three months".parse::<Period>().is_err());
        assert!("2 fortnights".parse::<Period>().is_err());
        assert!("-1 days".parse::<Period>().is_err());
        assert!("500 years".parse::<Period>().is_err());
        assert_eq!(
            "3 working days".parse::<Period>().unwrap().to_string(),
            "3 working days"
        );
        assert_eq!("1 years".parse::<Period>().unwrap().to_string(), "1 year");
    }

    /// JMA: agreement ended in May 2017; kept 5 years from the end of the
    /// financial year (30 June) → kept until 2022-06-30, due after it.
    #[test]
    fn jma_financial_year_vector() {
        let rule = retention("5 years", &[FY_JUNE]);
        let ended = at("2017-05-15");
        assert_eq!(rule.due_at(ended), at("2022-07-01"));
        assert!(!rule.is_due(ended, at("2022-06-30")));
        assert!(!rule.is_due(ended, at("2022-06-30T23:59:59.999999")));
        assert!(rule.is_due(ended, at("2022-07-01")));
        // An agreement that ended on the last day of the financial year.
        assert_eq!(rule.due_at(at("2017-06-30T18:00:00")), at("2022-07-01"));
        // One day later belongs to the next financial year.
        assert_eq!(rule.due_at(at("2017-07-01")), at("2023-07-01"));
    }

    /// Jetpak: invoice 2019-08-10, 7 years from the end of the calendar year
    /// → may go after 2026-12-31.
    #[test]
    fn jetpak_calendar_year_vector() {
        let rule = retention("7 years", &[RoundUp::CalendarYearEnd]);
        let invoice = at("2019-08-10");
        assert!(!rule.is_due(invoice, at("2026-12-31")));
        assert!(!rule.is_due(invoice, at("2026-12-31T23:59:59")));
        assert!(rule.is_due(invoice, at("2027-01-01")));
        assert_eq!(
            rule.first_date_not_due(at("2026-12-31T12:00:00")),
            date("2019-01-01")
        );
        assert_eq!(
            rule.first_date_not_due(at("2027-01-01T00:00:00")),
            date("2020-01-01")
        );
    }

    /// Financial year ending 30 June, then the end of the calendar year in
    /// which that financial year ends (Jetpak, Swedish bookkeeping).
    #[test]
    fn chained_rounding() {
        let rule = retention("7 years", &[FY_JUNE, RoundUp::CalendarYearEnd]);
        assert_eq!(rule.due_at(at("2019-08-10")), at("2028-01-01"));
        assert_eq!(rule.due_at(at("2019-06-10")), at("2027-01-01"));
        assert_eq!(rule.due_at(at("2019-06-30T23:59:59")), at("2027-01-01"));
        assert_eq!(rule.due_at(at("2019-07-01")), at("2028-01-01"));
        assert_eq!(
            rule.to_string(),
            "7 years from the end of the calendar year in which the financial year (06-30) ends"
        );
    }

    /// Jetpak's rule with a financial year that is the calendar year: the
    /// financial year 2019 ends on 2019-12-31, in the calendar year 2019,
    /// so the policy's own vector holds (not a year later, which rounding
    /// the instant after the financial year would give).
    #[test]
    fn chained_rounding_with_a_calendar_financial_year() {
        let december = RoundUp::FinancialYearEnd { end_month: 12 };
        let rule = retention("7 years", &[december, RoundUp::CalendarYearEnd]);
        assert_eq!(rule.due_at(at("2019-08-10")), at("2027-01-01"));
        assert_eq!(rule.due_at(at("2019-12-31T23:59:59")), at("2027-01-01"));
        assert_eq!(rule.due_at(at("2020-01-01")), at("2028-01-01"));
        assert!(!rule.is_due(at("2019-08-10"), at("2026-12-31T23:59:59.999999")));
        assert_eq!(
            rule.first_date_not_due(at("2027-01-01")),
            date("2020-01-01")
        );
        // The same with the financial year rounding alone.
        let plain = retention("7 years", &[december]);
        assert_eq!(plain.due_at(at("2019-08-10")), at("2027-01-01"));
    }

    #[test]
    fn month_end_clamping() {
        let year = retention("12 months", &[]);
        // 2021 has no 29 February: kept through the end of February.
        assert_eq!(year.due_at(at("2020-02-29")), at("2021-03-01"));
        assert!(!year.is_due(at("2020-02-29"), at("2021-02-28T23:59:59")));
        assert!(year.is_due(at("2020-02-29"), at("2021-03-01")));
        assert_eq!(
            year.due_at(at("2020-02-28T10:00:00")),
            at("2021-02-28T10:00:00")
        );
        let month = retention("1 month", &[]);
        assert_eq!(month.due_at(at("2021-01-31T08:00:00")), at("2021-03-01"));
        assert_eq!(
            month.due_at(at("2021-01-28T23:00:00")),
            at("2021-02-28T23:00:00")
        );
        assert_eq!(month.due_at(at("2021-12-15")), at("2022-01-15"));
        assert_eq!(
            retention("2 years", &[]).due_at(at("2024-02-29")),
            at("2026-03-01")
        );
        assert_eq!(
            retention("4 years", &[]).due_at(at("2024-02-29")),
            at("2028-02-29")
        );
    }

    #[test]
    fn day_before_and_day_of_each_boundary() {
        let cases = [
            ("30 days", "2026-01-01T09:30:00", "2026-01-31T09:30:00"),
            ("1 year", "2025-03-10T14:22:00", "2026-03-10T14:22:00"),
            ("2 weeks", "2026-05-01", "2026-05-15"),
            ("26 months", "2024-01-15", "2026-03-15"),
            ("0 days", "2026-05-01T12:00:00", "2026-05-01T12:00:00"),
        ];
        for (period, event, due) in cases {
            let rule = retention(period, &[]);
            let (event, due) = (at(event), at(due));
            assert_eq!(rule.due_at(event), due, "{period}");
            assert!(
                !rule.is_due(event, due - TimeDelta::days(1)),
                "{period}: day before"
            );
            assert!(
                !rule.is_due(event, due - TimeDelta::microseconds(1)),
                "{period}"
            );
            assert!(rule.is_due(event, due), "{period}: the day of");
        }
    }

    #[test]
    fn working_days_skip_weekends() {
        let rule = retention("3 working days", &[]);
        // Friday 10:00 → Monday, Tuesday, Wednesday 10:00.
        assert_eq!(
            rule.due_at(at("2026-11-20T10:00:00")),
            at("2026-11-25T10:00:00")
        );
        // Saturday counts from Monday 00:00 → Thursday 00:00.
        assert_eq!(rule.due_at(at("2026-11-21T23:00:00")), at("2026-11-26"));
        assert_eq!(rule.due_at(at("2026-11-22T01:00:00")), at("2026-11-26"));
        // Monday → Thursday.
        assert_eq!(
            rule.due_at(at("2026-11-23T08:00:00")),
            at("2026-11-26T08:00:00")
        );
        assert_eq!(
            retention("10 working days", &[]).due_at(at("2026-11-23T08:00:00")),
            at("2026-12-07T08:00:00")
        );
        assert_eq!(
            retention("0 working days", &[]).due_at(at("2026-11-22T08:00:00")),
            at("2026-11-23")
        );
    }

    #[test]
    fn kinds_and_durations_parse() {
        assert_eq!("minimum".parse::<PeriodKind>(), Ok(PeriodKind::Minimum));
        assert_eq!("deadline".parse::<PeriodKind>(), Ok(PeriodKind::Deadline));
        assert!(
            "maximum"
                .parse::<PeriodKind>()
                .unwrap_err()
                .contains("use \"minimum\"")
        );
        assert_eq!(PeriodKind::default(), PeriodKind::Minimum);
        assert_eq!(parse_duration("90 minutes"), Ok(TimeDelta::minutes(90)));
        assert_eq!(parse_duration("1 hour"), Ok(TimeDelta::hours(1)));
        assert_eq!(parse_duration("2 Days"), Ok(TimeDelta::days(2)));
        assert_eq!(parse_duration("1 week"), Ok(TimeDelta::days(7)));
        assert!(
            parse_duration("1 month")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("soon").is_err());
        assert_eq!(describe_duration(TimeDelta::hours(25)), "25 hours");
        assert_eq!(describe_duration(TimeDelta::hours(26)), "26 hours");
        assert_eq!(
            describe_duration(TimeDelta::hours(170) + TimeDelta::minutes(1)),
            "7 days 2 hours 1 minute"
        );
        assert_eq!(describe_duration(TimeDelta::zero()), "0 minutes");
    }

    /// The shortest real time a period can last: what a deadline's lead
    /// must fit in.
    /// Every day of the sample years, three times each, and nothing else.
    #[test]
    fn sample_events_cover_the_sample_years_exactly() {
        let events: Vec<NaiveDateTime> = sample_events().collect();
        let days = (*SAMPLE_YEARS.start()..=*SAMPLE_YEARS.end())
            .map(|year| {
                if NaiveDate::from_yo_opt(year, 366).is_some() {
                    366
                } else {
                    365
                }
            })
            .sum::<usize>();
        assert_eq!(events.len(), days * 3);
        assert_eq!(events.first(), Some(&at("2024-01-01T00:00:00")));
        assert_eq!(events.last(), Some(&at("2031-12-31T23:59:59.999999")));
    }

    #[test]
    fn shortest_spans() {
        let zone: Tz = "Europe/Copenhagen".parse().unwrap();
        let span = |rule: Retention| rule.shortest_span(zone);
        // 30 days across the spring change last 30 days less an hour.
        assert_eq!(
            span(retention("30 days", &[])),
            TimeDelta::days(30) - TimeDelta::hours(1)
        );
        assert_eq!(
            retention("30 days", &[]).shortest_span(Tz::UTC),
            TimeDelta::days(30)
        );
        // A month from 28 February.
        assert_eq!(
            retention("1 month", &[]).shortest_span(Tz::UTC),
            TimeDelta::days(28)
        );
        // Three working days from a Monday.
        assert_eq!(
            working_days("3 working days", danish()).shortest_span(zone),
            TimeDelta::days(3)
        );
        assert_eq!(span(retention("0 days", &[])), TimeDelta::zero());
        // Rounding up only lengthens: a year from the end of the year.
        assert!(span(retention("1 year", &[RoundUp::CalendarYearEnd])) >= TimeDelta::days(365));
    }

    /// A floor and a ceiling, one level up: the first event a rule's
    /// period breaks them at.
    #[test]
    fn floors_and_ceilings() {
        let zone: Tz = "Europe/Copenhagen".parse().unwrap();
        let five = retention("5 years", &[]);
        let from_year_end = retention("5 years", &[FY_JUNE]);
        let three = retention("3 years", &[]);
        // 5 years from the end of the financial year never goes before 5 years.
        assert_eq!(
            from_year_end.first_event_beyond(TimeDelta::zero(), Side::NotBefore, &five, zone),
            None
        );
        // 3 years does, at once.
        assert_eq!(
            three.first_event_beyond(TimeDelta::zero(), Side::NotBefore, &five, zone),
            Some(at("2024-01-01"))
        );
        // A deadline of 36 months acting 26 hours ahead stays within 36
        // months; a minimum of 36 months gone 26 hours after its end does not.
        let months = retention("36 months", &[]);
        let lead = TimeDelta::hours(26);
        assert_eq!(
            months.first_event_beyond(-lead + lead, Side::NotAfter, &months, zone),
            None
        );
        assert_eq!(
            months.first_event_beyond(lead, Side::NotAfter, &months, zone),
            Some(at("2024-01-01"))
        );
        // 12 months is within a ceiling of 36.
        assert_eq!(
            retention("12 months", &[]).first_event_beyond(lead, Side::NotAfter, &months, zone),
            None
        );
    }

    /// A deadline's rows are due a lead before the end of their period:
    /// the bound of `now + lead`. Every row due then is gone by the run
    /// after it, within the lead.
    #[test]
    fn a_lead_moves_the_bound_not_the_period() {
        let thirty = retention("30 days", &[]);
        let lead = TimeDelta::hours(26);
        let now = at("2026-09-30T02:30:00");
        // Entered 2026-09-01 00:00: deadline 2026-10-01 00:00.
        let entered = at("2026-09-01");
        assert!(!thirty.is_due(entered, now));
        assert!(entered < thirty.first_not_due(now + lead));
        // Due from 2026-09-29 22:00, 26 hours before its deadline, and not before.
        let acts = thirty.due_at(entered) - lead;
        assert_eq!(acts, at("2026-09-29T22:00:00"));
        assert!(entered < thirty.first_not_due(acts + lead));
        assert!(entered >= thirty.first_not_due(acts + lead - TimeDelta::microseconds(1)));
    }

    #[test]
    fn easter() {
        for (year, easter) in [
            (1818, "1818-03-22"),
            (1943, "1943-04-25"),
            (2000, "2000-04-23"),
            (2019, "2019-04-21"),
            (2023, "2023-04-09"),
            (2024, "2024-03-31"),
            (2025, "2025-04-20"),
            (2026, "2026-04-05"),
            (2038, "2038-04-25"),
            (2285, "2285-03-22"),
            // Golden number 0: the epact's sum is below 15 before it wraps.
            (1995, "1995-04-16"),
            (2014, "2014-04-20"),
            (2033, "2033-04-17"),
            // The years the correction `m` moves Easter back a week.
            (1954, "1954-04-18"),
            (1981, "1981-04-19"),
            (2049, "2049-04-18"),
            (2076, "2076-04-19"),
            // Early April: the month and the day come from one sum; a
            // wrong month there would still be a valid March date.
            (1994, "1994-04-03"),
            (1999, "1999-04-04"),
            (2010, "2010-04-04"),
        ] {
            assert_eq!(easter_sunday(year), date(easter), "{year}");
        }
    }

    #[test]
    fn danish_public_holidays() {
        let list = |year| {
            danish_holidays(year)
                .into_iter()
                .map(|(day, name)| format!("{day} {name}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            list(2026),
            [
                "2026-01-01 New Year's Day",
                "2026-04-02 Maundy Thursday",
                "2026-04-03 Good Friday",
                "2026-04-05 Easter Sunday",
                "2026-04-06 Easter Monday",
                "2026-05-14 Ascension Day",
                "2026-05-24 Whit Sunday",
                "2026-05-25 Whit Monday",
                "2026-12-25 Christmas Day",
                "2026-12-26 Boxing Day",
            ]
        );
        // Great Prayer Day, the fourth Friday after Easter, until 2023.
        assert_eq!(
            list(2023),
            [
                "2023-01-01 New Year's Day",
                "2023-04-06 Maundy Thursday",
                "2023-04-07 Good Friday",
                "2023-04-09 Easter Sunday",
                "2023-04-10 Easter Monday",
                "2023-05-05 Great Prayer Day",
                "2023-05-18 Ascension Day",
                "2023-05-28 Whit Sunday",
                "2023-05-29 Whit Monday",
                "2023-12-25 Christmas Day",
                "2023-12-26 Boxing Day",
            ]
        );
        // Abolished from 2024: 26 April 2024 is an ordinary Friday.
        assert_eq!(danish_holiday(date("2024-04-26")), None);
        assert_eq!(danish_holidays(2024).len(), 10);
        // Customary days off are not public holidays.
        for day in ["2026-12-24", "2026-12-31", "2026-06-05"] {
            assert_eq!(danish_holiday(date(day)), None, "{day}");
        }
    }

    /// ITJ: "within 3 working days" of a withdrawal on Tuesday 2026-05-12
    /// ends on Monday 2026-05-18, because Thursday 14 May is Ascension Day.
    #[test]
    fn working_days_skip_danish_holidays() {
        let three = working_days("3 working days", danish());
        assert_eq!(
            three.due_at(at("2026-05-12T10:00:00")),
            at("2026-05-18T10:00:00")
        );
        assert_eq!(three.due_at(at("2026-05-12")), at("2026-05-18"));
        // Without a holiday calendar the deadline is three days earlier.
        assert_eq!(
            retention("3 working days", &[]).due_at(at("2026-05-12")),
            at("2026-05-15")
        );
        // Easter 2026: Maundy Thursday to Easter Monday are off.
        let one = working_days("1 working day", danish());
        assert_eq!(
            one.due_at(at("2026-04-01T10:00:00")),
            at("2026-04-07T10:00:00")
        );
        // An event on a holiday counts from the next working day's 00:00.
        assert_eq!(
            working_days("0 working days", danish()).due_at(at("2026-05-14T10:00:00")),
            at("2026-05-15")
        );
        assert_eq!(
            working_days("2 working days", danish()).due_at(at("2026-05-14T10:00:00")),
            at("2026-05-19")
        );
        // Whitsun: Friday 22 May + 1 working day skips Whit Monday.
        assert_eq!(
            one.due_at(at("2026-05-22T09:00:00")),
            at("2026-05-26T09:00:00")
        );
        // Great Prayer Day 2023 was off; its date in 2024 was not.
        assert_eq!(
            one.due_at(at("2023-05-04T09:00:00")),
            at("2023-05-08T09:00:00")
        );
        assert_eq!(
            one.due_at(at("2024-04-25T09:00:00")),
            at("2024-04-26T09:00:00")
        );
        // Christmas and New Year.
        assert_eq!(
            one.due_at(at("2026-12-24T09:00:00")),
            at("2026-12-28T09:00:00")
        );
        assert_eq!(
            one.due_at(at("2026-12-31T09:00:00")),
            at("2027-01-04T09:00:00")
        );
    }

    #[test]
    fn closing_days_are_not_working_days() {
        let closed = Calendar::new(
            Holidays::Denmark,
            vec![date("2026-12-31"), date("2026-12-24"), date("2026-12-24")],
        );
        assert_eq!(
            closed.closing_days,
            [date("2026-12-24"), date("2026-12-31")]
        );
        let one = working_days("1 working day", closed.clone());
        // Wednesday 23 December: 24 closed, 25 and 26 holidays, 27 Sunday.
        assert_eq!(
            one.due_at(at("2026-12-23T09:00:00")),
            at("2026-12-28T09:00:00")
        );
        // 30 December: 31 closed, 1 January a holiday, then the weekend.
        assert_eq!(
            one.due_at(at("2026-12-30T09:00:00")),
            at("2027-01-04T09:00:00")
        );
        // Closing days without public holidays.
        let only_closing = Calendar::new(Holidays::None, vec![date("2026-05-13")]);
        assert_eq!(
            working_days("3 working days", only_closing.clone()).due_at(at("2026-05-12")),
            at("2026-05-18")
        );
        assert_eq!(closed.day_off(date("2026-12-24")), Some("closing day"));
        assert_eq!(closed.day_off(date("2026-12-25")), Some("Christmas Day"));
        assert_eq!(closed.day_off(date("2026-12-27")), Some("weekend"));
        assert_eq!(closed.day_off(date("2026-12-28")), None);
        assert_eq!(
            working_days("3 working days", closed).to_string(),
            "3 working days (Monday to Friday, less Danish public holidays and 2 closing days)"
        );
        assert_eq!(
            working_days("3 working days", only_closing).to_string(),
            "3 working days (Monday to Friday, less 1 closing day)"
        );
        assert_eq!(
            retention("3 working days", &[]).to_string(),
            "3 working days (Monday to Friday)"
        );
    }

    #[test]
    fn holidays_parse() {
        assert_eq!("DK".parse::<Holidays>(), Ok(Holidays::Denmark));
        assert_eq!("none".parse::<Holidays>(), Ok(Holidays::None));
        assert!("SE".parse::<Holidays>().is_err());
        assert!("dk".parse::<Holidays>().is_err());
    }

    /// The bound stays exact across holidays, long closures and the
    /// bracket the search has to widen for them.
    #[test]
    fn first_not_due_is_exact_across_holidays() {
        let closure: Vec<NaiveDate> = (0..40).map(|i| date("2026-07-01") + Days::new(i)).collect();
        let rules = [
            working_days("3 working days", danish()),
            working_days("10 working days", Calendar::new(Holidays::Denmark, closure)),
            working_days("0 working days", danish()),
        ];
        let mut now = at("2026-03-28T06:10:00");
        while now < at("2027-01-10") {
            for rule in &rules {
                let bound = rule.first_not_due(now);
                assert!(!rule.is_due(bound, now), "{rule} at {now}: bound {bound}");
                let before = bound - TimeDelta::microseconds(1);
                assert!(rule.is_due(before, now), "{rule} at {now}: {before}");
            }
            now += TimeDelta::hours(17) + TimeDelta::minutes(31);
        }
    }

    #[test]
    fn round_up_is_the_first_instant_after_the_year() {
        assert_eq!(
            RoundUp::CalendarYearEnd.apply(at("2019-01-01")),
            at("2020-01-01")
        );
        assert_eq!(
            RoundUp::CalendarYearEnd.apply(at("2019-12-31T23:59:59")),
            at("2020-01-01")
        );
        assert_eq!(FY_JUNE.apply(at("2017-06-30T23:59:59")), at("2017-07-01"));
        assert_eq!(FY_JUNE.apply(at("2017-07-01")), at("2018-07-01"));
        let feb = RoundUp::FinancialYearEnd { end_month: 2 };
        assert_eq!(feb.apply(at("2024-02-29T12:00:00")), at("2024-03-01"));
        assert_eq!(feb.to_string(), "end of the financial year (02-28)");
        assert_eq!(FY_JUNE.to_string(), "end of the financial year (06-30)");
    }

    /// The bound must split events exactly: everything before it is due,
    /// nothing at or after it is, for many "now"s and every kind of period.
    #[test]
    fn first_not_due_is_exact() {
        let rules = [
            retention("36 months", &[]),
            retention("1 month", &[]),
            retention("12 months", &[]),
            retention("5 years", &[FY_JUNE]),
            retention("7 years", &[RoundUp::CalendarYearEnd]),
            retention("7 years", &[FY_JUNE, RoundUp::CalendarYearEnd]),
            retention("3 working days", &[]),
            retention("5 working days", &[]),
            retention("6 working days", &[]),
            retention("23 working days", &[]),
            retention("1 week", &[]),
            retention("6 weeks", &[]),
            retention("2 weeks", &[RoundUp::CalendarYearEnd]),
            retention("30 days", &[]),
            retention("0 days", &[]),
        ];
        let mut now = at("2026-02-26T13:45:10.250000");
        for _ in 0..40 {
            for rule in &rules {
                let bound = rule.first_not_due(now);
                assert!(
                    !rule.is_due(bound, now),
                    "{rule} at {now}: bound {bound} due"
                );
                let before = bound - TimeDelta::microseconds(1);
                assert!(
                    rule.is_due(before, now),
                    "{rule} at {now}: {before} not due"
                );
                let date_bound = rule.first_date_not_due(now);
                let midnight = date_bound.and_time(NaiveTime::MIN);
                assert!(!rule.is_due(midnight, now), "{rule} at {now}: {date_bound}");
                let day_before = (date_bound - Days::new(1)).and_time(NaiveTime::MIN);
                assert!(
                    rule.is_due(day_before, now),
                    "{rule} at {now}: {date_bound}"
                );
            }
            now += TimeDelta::hours(19) + TimeDelta::minutes(7);
        }
    }

    /// `approx_days` is where the search for the bound starts: at least the
    /// period's real length (without holidays), or the search has to widen.
    #[test]
    fn approx_days_covers_the_period() {
        for (text, days) in [
            ("0 days", 0),
            ("9 days", 9),
            ("1 week", 7),
            ("6 weeks", 42),
            ("4 working days", 7),
            ("5 working days", 14),
            ("12 working days", 21),
            ("2 months", 62),
            ("3 years", 1098),
        ] {
            let period: Period = text.parse().unwrap();
            assert_eq!(period.approx_days(), days, "{text}");
            let calendar = Calendar::default();
            let mut event = at("2026-01-01T09:30:00");
            while event < at("2027-01-01") {
                let length = period.add_to(event, &calendar) - event;
                assert!(length <= TimeDelta::days(days), "{text} from {event}");
                event += TimeDelta::hours(31);
            }
        }
        // The longest period allowed, and one day more.
        assert!(format!("{MAX_YEARS} years").parse::<Period>().is_ok());
        assert!(
            format!("{} days", MAX_YEARS * 366)
                .parse::<Period>()
                .is_ok()
        );
        assert!(
            format!("{} days", MAX_YEARS * 366 + 1)
                .parse::<Period>()
                .is_err()
        );
        assert!(
            format!("{} years", MAX_YEARS + 1)
                .parse::<Period>()
                .is_err()
        );
    }

    /// The first due moment of each seed vector, as a wall-clock time in
    /// Copenhagen (00:00): nothing under the bookkeeping acts goes before.
    #[test]
    fn seed_vectors() {
        let calendar = RoundUp::CalendarYearEnd;
        let december = RoundUp::FinancialYearEnd { end_month: 12 };
        let cases: [(&str, Retention, &str, &str); 9] = [
            // ITJ: 5 years after completion under the bookkeeping act,
            // from the end of the (calendar) financial year.
            (
                "ITJ purchase",
                retention("5 years", &[december]),
                "2021-03-10",
                "2027-01-01",
            ),
            (
                "agency, calendar year",
                retention("5 years", &[december]),
                "2020-12-31",
                "2026-01-01",
            ),
            (
                "agency, calendar year",
                retention("5 years", &[december]),
                "2021-01-01",
                "2027-01-01",
            ),
            (
                "agency, year to 30 June",
                retention("5 years", &[FY_JUNE]),
                "2020-09-01",
                "2026-07-01",
            ),
            (
                "Jetpak, calendar year",
                retention("7 years", &[december, calendar]),
                "2019-08-10",
                "2027-01-01",
            ),
            (
                "Jetpak, year to 30 June",
                retention("7 years", &[FY_JUNE, calendar]),
                "2019-08-10",
                "2028-01-01",
            ),
            (
                "Jetpak, year to 30 June",
                retention("7 years", &[FY_JUNE, calendar]),
                "2018-08-10",
                "2027-01-01",
            ),
            (
                "JMA agreement",
                retention("5 years", &[FY_JUNE]),
                "2017-07-01",
                "2023-07-01",
            ),
            (
                "JMA invoice",
                retention("5 years", &[FY_JUNE]),
                "2020-03-15",
                "2025-07-01",
            ),
        ];
        for (what, rule, event, due) in cases {
            let (event, due) = (at(event), at(due));
            assert_eq!(rule.due_at(event), due, "{what}: {event}");
            assert!(
                !rule.is_due(event, due - TimeDelta::microseconds(1)),
                "{what}: {event}"
            );
            assert!(rule.is_due(event, due), "{what}: {event}");
        }
    }

    #[test]
    fn date_bounds_for_the_vectors() {
        let jma = retention("5 years", &[FY_JUNE]);
        assert_eq!(
            jma.first_date_not_due(at("2022-06-30T23:00:00")),
            date("2016-07-01")
        );
        assert_eq!(jma.first_date_not_due(at("2022-07-01")), date("2017-07-01"));
        assert_eq!(
            jma.first_date_not_due(at("2022-07-01T00:00:00.000001")),
            date("2017-07-01")
        );
        // At the start of the day of 2022-07-01 everything up to FY 2016/17 is due.
        assert!(jma.is_due(at("2017-06-30"), at("2022-07-01")));
        let thirty = retention("30 days", &[]);
        // Entered 2026-01-01 (a date) is due on 2026-01-31.
        assert_eq!(
            thirty.first_date_not_due(at("2026-01-31")),
            date("2026-01-02")
        );
        assert_eq!(
            thirty.first_date_not_due(at("2026-01-30T23:59:59")),
            date("2026-01-01")
        );
    }
}
