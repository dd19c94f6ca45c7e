//! Reading range partition bounds as the catalogs state them: PostgreSQL's
//! `FOR VALUES FROM (...) TO (...)` and MariaDB's `VALUES LESS THAN`, over
//! the column itself or `TO_DAYS` / `UNIX_TIMESTAMP` of it. A bound that
//! cannot be read exactly is `None`, and a partition with one is never
//! dropped: only bounds that prove every row is due let a partition go.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::schema::ColumnKind;
use crate::step::Moment;

/// What a PostgreSQL partition's bound expression says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PgBound {
    Default,
    /// `FROM (a) TO (b)`: `None` for MINVALUE / MAXVALUE or a value that
    /// could not be read.
    Range(Option<Moment>, Option<Moment>),
    /// Anything else (list or hash bounds, several columns).
    Unreadable,
}

/// Reads `pg_get_expr(relpartbound, oid)` for a range partition on one
/// column of `kind` (sessions run in UTC and ISO date style).
pub(crate) fn pg_bound(expr: &str, kind: ColumnKind) -> PgBound {
    if expr == "DEFAULT" {
        return PgBound::Default;
    }
    let Some(rest) = expr.strip_prefix("FOR VALUES FROM (") else {
        return PgBound::Unreadable;
    };
    let Some((from, to)) = rest.split_once(") TO (") else {
        return PgBound::Unreadable;
    };
    let Some(to) = to.strip_suffix(')') else {
        return PgBound::Unreadable;
    };
    PgBound::Range(pg_value(from, kind), pg_value(to, kind))
}

/// One bound value: a quoted literal, or MINVALUE / MAXVALUE (`None`).
fn pg_value(text: &str, kind: ColumnKind) -> Option<Moment> {
    let inner = text.strip_prefix('\'')?.strip_suffix('\'')?;
    if inner.contains('\'') {
        return None;
    }
    literal(inner, kind)
}

/// A date or timestamp literal in ISO form, as a value of a column of `kind`.
pub(crate) fn literal(text: &str, kind: ColumnKind) -> Option<Moment> {
    match kind {
        ColumnKind::Date => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .map(Moment::Date),
        ColumnKind::Timestamp => timestamp(text).map(Moment::Timestamp),
        ColumnKind::TimestampTz => DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
            .ok()
            .map(|at| Moment::Instant(at.to_utc()))
            // MariaDB's TIMESTAMP literals are in the session's zone: UTC.
            .or_else(|| timestamp(text).map(|at| Moment::Instant(at.and_utc()))),
        _ => None,
    }
}

fn timestamp(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(chrono::NaiveTime::MIN))
        })
}

/// How a MariaDB table's range partitioning reads the event column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MariaForm {
    /// `RANGE COLUMNS(event)`: bounds are values of the column.
    Columns,
    /// `RANGE (TO_DAYS(event))`: bounds are day numbers.
    ToDays,
    /// `RANGE (UNIX_TIMESTAMP(event))` on a TIMESTAMP: bounds are seconds.
    UnixTimestamp,
}

/// Whether `method` and `expression` (from `information_schema.PARTITIONS`)
/// partition by range on `column` of `kind` alone, and how.
pub(crate) fn maria_form(
    method: &str,
    expression: &str,
    column: &str,
    kind: ColumnKind,
) -> Option<MariaForm> {
    // Quoted as the session's sql_mode has it: ANSI_QUOTES or not.
    let backticked = format!("`{}`", column.replace('`', "``"));
    let ansi = format!("\"{}\"", column.replace('"', "\"\""));
    let is_column = |text: &str| text == backticked || text == ansi || text == column;
    match method {
        "RANGE COLUMNS" if is_column(expression) => Some(MariaForm::Columns),
        "RANGE" => {
            let lower = expression.to_ascii_lowercase();
            let argument = |name: &str| {
                lower
                    .strip_prefix(name)
                    .and_then(|r| r.strip_suffix(')'))
                    .map(|_| &expression[name.len()..expression.len() - 1])
            };
            if let Some(arg) = argument("to_days(")
                && is_column(arg)
                && matches!(kind, ColumnKind::Date | ColumnKind::Timestamp)
            {
                return Some(MariaForm::ToDays);
            }
            match argument("unix_timestamp(") {
                Some(arg) if is_column(arg) && kind == ColumnKind::TimestampTz => {
                    Some(MariaForm::UnixTimestamp)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// A `VALUES LESS THAN` description as the first event value a partition
/// does not hold; `None` for MAXVALUE or a value that cannot be read.
pub(crate) fn maria_bound(form: MariaForm, description: &str, kind: ColumnKind) -> Option<Moment> {
    match form {
        MariaForm::Columns => {
            let inner = description.strip_prefix('\'')?.strip_suffix('\'')?;
            literal(inner, kind)
        }
        MariaForm::ToDays => {
            // TO_DAYS('0001-01-01') is 366; chrono counts that day as 1.
            let days: i32 = description.parse().ok()?;
            let day = NaiveDate::from_num_days_from_ce_opt(days.checked_sub(365)?)?;
            Some(match kind {
                ColumnKind::Date => Moment::Date(day),
                _ => Moment::Timestamp(day.and_time(chrono::NaiveTime::MIN)),
            })
        }
        MariaForm::UnixTimestamp => {
            let seconds: i64 = description.parse().ok()?;
            DateTime::from_timestamp(seconds, 0).map(Moment::Instant)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn postgres_bounds() {
        assert_eq!(
            pg_bound(
                "FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')",
                ColumnKind::Date
            ),
            PgBound::Range(
                Some(Moment::Date(date(2026, 1, 1))),
                Some(Moment::Date(date(2026, 2, 1)))
            )
        );
        assert_eq!(
            pg_bound(
                "FOR VALUES FROM (MINVALUE) TO ('2026-02-01 00:00:00')",
                ColumnKind::Timestamp
            ),
            PgBound::Range(
                None,
                Some(Moment::Timestamp(
                    date(2026, 2, 1).and_hms_opt(0, 0, 0).unwrap()
                ))
            )
        );
        assert_eq!(
            pg_bound(
                "FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-01-31 23:00:00+00')",
                ColumnKind::TimestampTz
            ),
            PgBound::Range(
                Some(Moment::Instant(
                    date(2026, 1, 1).and_hms_opt(0, 0, 0).unwrap().and_utc()
                )),
                Some(Moment::Instant(
                    date(2026, 1, 31).and_hms_opt(23, 0, 0).unwrap().and_utc()
                ))
            )
        );
        assert_eq!(pg_bound("DEFAULT", ColumnKind::Date), PgBound::Default);
        assert_eq!(
            pg_bound("FOR VALUES IN ('a')", ColumnKind::Date),
            PgBound::Unreadable
        );
        // 'infinity' is no date chrono reads: unbounded, so never dropped.
        assert_eq!(
            pg_bound(
                "FOR VALUES FROM ('-infinity') TO ('2026-02-01')",
                ColumnKind::Date
            ),
            PgBound::Range(None, Some(Moment::Date(date(2026, 2, 1))))
        );
    }

    #[test]
    fn mariadb_forms_and_bounds() {
        let form = |method, expr| maria_form(method, expr, "at", ColumnKind::Timestamp);
        assert_eq!(form("RANGE COLUMNS", "`at`"), Some(MariaForm::Columns));
        assert_eq!(form("RANGE", "to_days(`at`)"), Some(MariaForm::ToDays));
        assert_eq!(form("RANGE", "TO_DAYS(`at`)"), Some(MariaForm::ToDays));
        assert_eq!(form("RANGE", "to_days(\"at\")"), Some(MariaForm::ToDays));
        assert_eq!(form("RANGE COLUMNS", "\"at\""), Some(MariaForm::Columns));
        assert_eq!(form("RANGE", "to_days(`other`)"), None);
        assert_eq!(form("RANGE", "year(`at`)"), None);
        assert_eq!(form("LIST", "`at`"), None);
        // UNIX_TIMESTAMP takes only TIMESTAMP columns (instants).
        assert_eq!(form("RANGE", "unix_timestamp(`at`)"), None);
        assert_eq!(
            maria_form(
                "RANGE",
                "unix_timestamp(`at`)",
                "at",
                ColumnKind::TimestampTz
            ),
            Some(MariaForm::UnixTimestamp)
        );
        // SELECT TO_DAYS('2026-02-01') = 740013.
        assert_eq!(
            maria_bound(MariaForm::ToDays, "740013", ColumnKind::Date),
            Some(Moment::Date(date(2026, 2, 1)))
        );
        assert_eq!(
            maria_bound(MariaForm::Columns, "'2026-02-01'", ColumnKind::Date),
            Some(Moment::Date(date(2026, 2, 1)))
        );
        assert_eq!(
            maria_bound(MariaForm::Columns, "MAXVALUE", ColumnKind::Date),
            None
        );
        assert_eq!(
            maria_bound(
                MariaForm::UnixTimestamp,
                "1769904000",
                ColumnKind::TimestampTz
            ),
            Some(Moment::Instant(
                date(2026, 2, 1).and_hms_opt(0, 0, 0).unwrap().and_utc()
            ))
        );
    }
}
