//! The value parsers the deployment config and the rules share (tables,
//! dates, spans, schedules, bounded numbers, time zones) and the list of
//! diagnostics every check pushes to.

use std::path::{Path, PathBuf};

use chrono::{Datelike as _, NaiveDate, TimeDelta};
use chrono_tz::Tz;
use toml::Spanned;

use super::source::Source;
use super::{Diagnostic, Diagnostics, Location, TableRef};
use crate::limits::OperatingWindow;
use crate::period::parse_duration;
use crate::schedule::Schedule;

pub(super) const MAX_BATCH_SIZE: u64 = 1_000_000;

pub(super) const MAX_BATCH_MS: u64 = 60_000;

#[derive(Default)]
pub(super) struct Diagnosed(pub(super) Vec<Diagnostic>);

impl Diagnosed {
    pub(super) fn push(
        &mut self,
        location: Location,
        rule: Option<&str>,
        message: impl Into<String>,
    ) {
        self.0.push(Diagnostic::new(location, rule, message));
    }

    pub(super) fn finish(mut self) -> Diagnostics {
        self.0.sort();
        self.0.dedup();
        Diagnostics(self.0)
    }
}

pub(super) fn resolve(base: &Path, path: &str) -> PathBuf {
    base.join(path)
}

/// An operating window, read in the config's zone; `what` names its owner
/// in the message (a store; a rule's id is given apart).
pub(super) fn parse_window(
    source: &Source,
    text: &Spanned<String>,
    zone: Tz,
    what: &str,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> Option<OperatingWindow> {
    match OperatingWindow::parse(text.get_ref(), zone) {
        Ok(window) => Some(window),
        Err(err) => {
            diags.push(
                source.span_location(Some(text.span())),
                rule,
                format!("{what}{err}"),
            );
            None
        }
    }
}

/// A pause between batches longer than ten minutes is a schedule, not a pace.
pub(super) const MAX_PAUSE_MS: u64 = 600_000;

pub(super) fn parse_schedule(
    source: &Source,
    text: &Spanned<String>,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> Option<Schedule> {
    match text.get_ref().parse() {
        Ok(schedule) => Some(schedule),
        Err(err) => {
            diags.push(source.span_location(Some(text.span())), rule, err);
            None
        }
    }
}

pub(super) fn is_simple_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(super) fn parse_tz(
    source: &Source,
    tz: &Spanned<String>,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> Tz {
    tz.get_ref().parse().unwrap_or_else(|_| {
        diags.push(
            source.span_location(Some(tz.span())),
            rule,
            format!(
                "unknown time zone {:?}; use an IANA name such as \"Europe/Copenhagen\"",
                tz.get_ref()
            ),
        );
        Tz::UTC
    })
}

/// A financial year end, "MM-DD", which must be the last day of its month.
pub(super) fn parse_year_end(
    source: &Source,
    text: &Spanned<String>,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> Option<u32> {
    let parsed = text.get_ref().split_once('-').and_then(|(m, d)| {
        let (month, day) = (m.parse::<u32>().ok()?, d.parse::<u32>().ok()?);
        // 2001 is not a leap year; 02-29 is also accepted for February.
        let next = if month == 12 {
            NaiveDate::from_ymd_opt(2002, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(2001, month + 1, 1)
        }?;
        let last = next.pred_opt()?;
        (day == last.day() || (month == 2 && day == 29)).then_some(month)
    });
    if parsed.is_none() {
        diags.push(
            source.span_location(Some(text.span())),
            rule,
            format!(
                "financial_year_end {:?} must be \"MM-DD\" and the last day of a month, for example \"06-30\"",
                text.get_ref()
            ),
        );
    }
    parsed
}

pub(super) fn parse_date(
    source: &Source,
    text: &Spanned<String>,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> Option<NaiveDate> {
    match NaiveDate::parse_from_str(text.get_ref(), "%Y-%m-%d") {
        Ok(date) => Some(date),
        Err(_) => {
            diags.push(
                source.span_location(Some(text.span())),
                rule,
                format!("{:?} is not a date; write \"YYYY-MM-DD\"", text.get_ref()),
            );
            None
        }
    }
}

pub(super) fn parse_table(
    source: &Source,
    text: &Spanned<String>,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> Option<TableRef> {
    match text.get_ref().parse() {
        Ok(table) => Some(table),
        Err(err) => {
            diags.push(source.span_location(Some(text.span())), rule, err);
            None
        }
    }
}

pub(super) fn bounded(
    source: &Source,
    value: &Spanned<i64>,
    min: u64,
    max: u64,
    what: &str,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> Option<u64> {
    match u64::try_from(*value.get_ref()) {
        Ok(v) if (min..=max).contains(&v) => Some(v),
        _ => {
            diags.push(
                source.span_location(Some(value.span())),
                rule,
                format!("{what} must be between {min} and {max}"),
            );
            None
        }
    }
}

/// A length of time (`lead`, `max_duration`): more than nothing, at most
/// a year.
pub(super) fn parse_span(
    source: &Source,
    text: &Spanned<String>,
    what: &str,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> Option<TimeDelta> {
    match parse_duration(text.get_ref()) {
        Ok(span) if span > TimeDelta::zero() && span <= TimeDelta::days(366) => Some(span),
        Ok(_) => {
            diags.push(
                source.span_location(Some(text.span())),
                rule,
                format!("{what} must be more than nothing and at most a year"),
            );
            None
        }
        Err(err) => {
            diags.push(
                source.span_location(Some(text.span())),
                rule,
                format!("{what}: {err}"),
            );
            None
        }
    }
}
