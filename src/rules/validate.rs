//! One rule, validated into a [`Rule`]: names, event, related tables,
//! retention and timing, action and columns, limits. Every check pushes a
//! diagnostic and carries on.

use std::collections::{BTreeMap, HashMap};

use std::cell::RefCell;

use chrono::{NaiveDate, TimeDelta};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::raw::{RawAfter, RawRelated, RawRule};
use super::source::Source;
use super::{
    Action, Cascade, Category, Combine, EventRef, EventSpec, HoldTable, Join, Location, Related,
    Rule, RuleLocations, StoreConfig, TableRef, Timing, check_identifier,
};
use crate::limits::OperatingWindow;
use crate::period::{
    Calendar, Period, PeriodKind, Retention, RoundUp, Side, Unit, describe_duration,
};
use crate::pseudonym::ColumnAction;
use crate::schedule::Schedule;

use super::parse::{
    Diagnosed, MAX_BATCH_MS, MAX_BATCH_SIZE, MAX_PAUSE_MS, bounded, is_simple_name, parse_date,
    parse_schedule, parse_span, parse_table, parse_window, parse_year_end,
};

/// Cascades delete children before their parent row; an action that
/// keeps the row has none to delete.
const CASCADE_NEEDS_DELETE: &str = "[[rule.cascade]] applies to action = \"delete\"; pseudonymising or anonymising keeps rows, so their children stay";

/// What `schedule = "manual"` says: the daemon never runs the rule.
const MANUAL: &str = "manual";

pub(super) fn is_rule_id(id: &str) -> bool {
    is_simple_name(id.replace('.', "_").as_str())
}

pub(super) struct RuleContext<'a> {
    pub(super) stores: &'a BTreeMap<String, StoreConfig>,
    pub(super) categories: &'a BTreeMap<String, Category>,
    pub(super) financial_year_end: Option<u32>,
    pub(super) calendar: Option<&'a Calendar>,
    pub(super) default_batch_size: u64,
    pub(super) default_batch_ms: u64,
    pub(super) default_pause_ms: u64,
    /// The zone schedules are read in.
    pub(super) timezone: Tz,
    pub(super) default_schedule: Option<&'a Schedule>,
    pub(super) default_lead: Option<TimeDelta>,
    /// Each schedule's longest gap, computed once per load.
    pub(super) gaps: RefCell<HashMap<String, Option<TimeDelta>>>,
}

/// One rule against the config: every problem is reported, and the rule
/// is returned only when it had none.
pub(super) fn validate_rule(
    source: &Source,
    raw: &RawRule,
    ctx: &RuleContext<'_>,
    diags: &mut Diagnosed,
) -> Option<Rule> {
    let errors_before = diags.0.len();
    let loc = |span: std::ops::Range<usize>| source.span_location(Some(span));
    let id = raw.id.get_ref().clone();
    let rule = Some(id.as_str());
    let rule_at = loc(raw.id.span());
    check_names(source, raw, ctx, &rule_at, diags);
    let store_config = ctx.stores.get(raw.store.get_ref());
    let table = parse_table(source, &raw.table, rule, diags);
    let hold = hold_column(source, raw, rule, diags);
    let [joins, hold_tables, cascades] = [
        (&raw.join, RelatedKind::Join),
        (&raw.hold_table, RelatedKind::Hold),
        (&raw.cascade, RelatedKind::Cascade),
    ]
    .map(|(entries, kind)| related_tables(source, entries.as_deref(), kind, rule, diags));
    let after_at = loc(raw.after.span());
    let event = event_spec(after_at, raw.after.get_ref(), &joins, rule, diags);
    let filter = raw
        .filter
        .as_ref()
        .map(|filter| sql_fragment(source, filter, "where", rule, diags));
    let mut column_locations = BTreeMap::new();
    let action = rule_action(
        source,
        raw,
        event.as_ref(),
        hold.as_deref(),
        &mut column_locations,
        diags,
    );
    if !cascades.is_empty() && raw.action.get_ref() != "delete" {
        diags.push(loc(raw.action.span()), rule, CASCADE_NEEDS_DELETE);
    }
    let key = walk_key(source, raw, diags);
    let empty_dates = empty_dates(source, raw, store_config, diags);
    let cadence = cadence(source, raw, ctx, store_config, diags);
    let drop_partitions = drop_partitions(source, raw, diags);
    if diags.0.len() > errors_before {
        return None;
    }
    Some(Rule {
        id,
        description: raw.description.as_ref().map(|d| d.get_ref().clone()),
        store: raw.store.get_ref().clone(),
        table: table?,
        category: raw.category.get_ref().clone(),
        event: event?,
        joins: into_joins(joins),
        retention: cadence.retention?,
        filter,
        hold,
        hold_tables: into_hold_tables(hold_tables),
        cascades: into_cascades(cascades),
        action: action?,
        key,
        empty_dates,
        max_rows: cadence.max_rows,
        vacuum_after: raw.vacuum_after.unwrap_or(false),
        batch_size: cadence.batch_size,
        batch_ms: cadence.batch_ms,
        schedule: cadence.schedule,
        manual: cadence.manual,
        window: cadence.window,
        pause_ms: cadence.pause_ms,
        drop_partitions,
        timing: cadence.timing?,
        fingerprint: fingerprint(raw),
        at: rule_locations(source, raw, rule_at, column_locations),
    })
}

/// `hold`: a column whose truth keeps a row, a valid identifier.
fn hold_column(
    source: &Source,
    raw: &RawRule,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> Option<String> {
    raw.hold.as_ref().map(|hold| {
        if let Err(err) = check_identifier(hold.get_ref()) {
            diags.push(
                source.span_location(Some(hold.span())),
                rule,
                format!("hold: {err}"),
            );
        }
        hold.get_ref().clone()
    })
}

/// `partitions`: "drop" (the default) or "rows". Dropping applies to
/// deletes only, so asking for it on another action is a mistake.
fn drop_partitions(source: &Source, raw: &RawRule, diags: &mut Diagnosed) -> bool {
    let rule = Some(raw.id.get_ref().as_str());
    let Some(choice) = &raw.partitions else {
        return raw.action.get_ref() == "delete";
    };
    let at = source.span_location(Some(choice.span()));
    match choice.get_ref().as_str() {
        "rows" => false,
        "drop" if raw.action.get_ref() == "delete" => true,
        "drop" => {
            diags.push(
                at,
                rule,
                "partitions = \"drop\" applies to action = \"delete\": pseudonymising or anonymising keeps the rows",
            );
            false
        }
        other => {
            diags.push(
                at,
                rule,
                format!("partitions must be \"drop\" or \"rows\", not {other:?}"),
            );
            false
        }
    }
}

/// When and how fast a rule acts; `None` where a part did not validate.
struct Cadence {
    retention: Option<Retention>,
    timing: Option<Timing>,
    schedule: Option<Schedule>,
    manual: bool,
    window: Option<OperatingWindow>,
    max_rows: Option<u64>,
    batch_size: u64,
    batch_ms: u64,
    pause_ms: u64,
}

/// The rule's retention, timing, schedule, window and pace, and whether
/// they fit its category's bounds.
fn cadence(
    source: &Source,
    raw: &RawRule,
    ctx: &RuleContext<'_>,
    store_config: Option<&StoreConfig>,
    diags: &mut Diagnosed,
) -> Cadence {
    let rule = Some(raw.id.get_ref().as_str());
    let retention = retention(source, raw, ctx, diags);
    let max_rows = raw
        .max_rows
        .as_ref()
        .and_then(|m| bounded(source, m, 1, u64::MAX >> 1, "max_rows", rule, diags));
    let [batch_size, batch_ms, pause_ms] = pace(source, raw, ctx, diags);
    let manual = raw.schedule.as_ref().is_some_and(|s| s.get_ref() == MANUAL);
    let schedule = raw
        .schedule
        .as_ref()
        .filter(|_| !manual)
        .and_then(|s| parse_schedule(source, s, rule, diags));
    let window = match &raw.window {
        Some(text) => parse_window(source, text, ctx.timezone, "", rule, diags),
        None => store_config.and_then(|s| s.window.clone()),
    };
    let zone = store_config.map_or(ctx.timezone, |s| s.time_zone);
    let period0 = Period0 {
        retention: retention.clone(),
        zone,
    };
    let timing = timing(source, raw, period0, schedule.as_ref(), manual, ctx, diags);
    if let (Some(category), Some(retention), Some(timing)) = (
        ctx.categories.get(raw.category.get_ref()),
        &retention,
        timing.as_ref(),
    ) {
        let at = source.span_location(Some(raw.category.span()));
        check_category_bounds(raw, category, retention, timing, zone, at, diags);
    }
    Cadence {
        retention,
        timing,
        schedule,
        manual,
        window,
        max_rows,
        batch_size,
        batch_ms,
        pause_ms,
    }
}

/// `retain` with the rule's rounding and the config's calendar. Which
/// days are working days is a deployment fact, like the financial year
/// end: never assumed.
fn retention(
    source: &Source,
    raw: &RawRule,
    ctx: &RuleContext<'_>,
    diags: &mut Diagnosed,
) -> Option<Retention> {
    let rule = Some(raw.id.get_ref().as_str());
    let at = source.span_location(Some(raw.retain.span()));
    let period = match raw.retain.get_ref().parse::<Period>() {
        Ok(period) => Some(period),
        Err(err) => {
            diags.push(at.clone(), rule, err);
            None
        }
    };
    if period.is_some_and(|p| p.unit == Unit::WorkingDays) && ctx.calendar.is_none() {
        diags.push(
            at,
            rule,
            "retain counts working days: set holidays = \"DK\" (Danish public holidays are days off) or holidays = \"none\" in glemsel.toml",
        );
    }
    let round_up = round_up(source, raw, ctx, diags);
    Some(Retention {
        period: period?,
        round_up,
        calendar: ctx.calendar.cloned().unwrap_or_default(),
    })
}

/// `batch_size`, `batch_ms` and `pause_ms`: the rule's own, within their
/// ranges, else the config's.
fn pace(source: &Source, raw: &RawRule, ctx: &RuleContext<'_>, diags: &mut Diagnosed) -> [u64; 3] {
    let rule = Some(raw.id.get_ref().as_str());
    [
        (
            &raw.batch_size,
            1,
            MAX_BATCH_SIZE,
            "batch_size",
            ctx.default_batch_size,
        ),
        (
            &raw.batch_ms,
            0,
            MAX_BATCH_MS,
            "batch_ms",
            ctx.default_batch_ms,
        ),
        (
            &raw.pause_ms,
            0,
            MAX_PAUSE_MS,
            "pause_ms",
            ctx.default_pause_ms,
        ),
    ]
    .map(|(value, min, max, what, default)| {
        value
            .as_ref()
            .and_then(|v| bounded(source, v, min, max, what, rule, diags))
            .unwrap_or(default)
    })
}

/// The rule's text, hashed: reports name the exact rule that was in
/// force.
fn fingerprint(raw: &RawRule) -> String {
    hex::encode(Sha256::digest(
        serde_json::to_vec(raw).expect("a rule serialises"),
    ))
}

/// Where the rule's parts were written, for messages about them later.
fn rule_locations(
    source: &Source,
    raw: &RawRule,
    rule: Location,
    columns: BTreeMap<String, Location>,
) -> RuleLocations {
    let loc = |span: std::ops::Range<usize>| source.span_location(Some(span));
    RuleLocations {
        rule,
        table: loc(raw.table.span()),
        after: loc(raw.after.span()),
        hold: raw.hold.as_ref().map(|h| loc(h.span())),
        filter: raw.filter.as_ref().map(|f| loc(f.span())),
        key: raw.key.as_ref().map(|k| loc(k.span())),
        columns,
    }
}

/// The rule's id, its store and its category are known names.
fn check_names(
    source: &Source,
    raw: &RawRule,
    ctx: &RuleContext<'_>,
    rule_at: &Location,
    diags: &mut Diagnosed,
) {
    let rule = Some(raw.id.get_ref().as_str());
    let loc = |span: std::ops::Range<usize>| source.span_location(Some(span));
    let id = raw.id.get_ref();
    if !is_rule_id(id) {
        diags.push(
            rule_at.clone(),
            rule,
            "rule id may hold only letters, digits, '.', '_' and '-'",
        );
    }

    let store = raw.store.get_ref();
    let store_config = ctx.stores.get(store);
    if store_config.is_none() {
        let known: Vec<&str> = ctx.stores.keys().map(String::as_str).collect();
        diags.push(
            loc(raw.store.span()),
            rule,
            format!(
                "unknown store {store:?}; glemsel.toml defines: {}",
                known.join(", ")
            ),
        );
    }
    if !ctx.categories.contains_key(raw.category.get_ref()) {
        diags.push(
            loc(raw.category.span()),
            rule,
            format!(
                "unknown category {:?}; define it in a [categories.{}] table",
                raw.category.get_ref(),
                raw.category.get_ref()
            ),
        );
    }
}

/// `round_up_to`, with the rule's or the deployment's financial year end.
fn round_up(
    source: &Source,
    raw: &RawRule,
    ctx: &RuleContext<'_>,
    diags: &mut Diagnosed,
) -> Vec<RoundUp> {
    let rule = Some(raw.id.get_ref().as_str());
    let loc = |span: std::ops::Range<usize>| source.span_location(Some(span));
    let year_end = match &raw.financial_year_end {
        Some(fye) => parse_year_end(source, fye, rule, diags),
        None => ctx.financial_year_end,
    };
    let mut round_up = Vec::new();
    if let Some(roundings) = &raw.round_up_to {
        for rounding in roundings.get_ref().items() {
            match rounding {
                "calendar_year_end" => round_up.push(RoundUp::CalendarYearEnd),
                "financial_year_end" => match year_end {
                    Some(end_month) => round_up.push(RoundUp::FinancialYearEnd { end_month }),
                    None => diags.push(
                        loc(roundings.span()),
                        rule,
                        "round_up_to = \"financial_year_end\" needs financial_year_end in glemsel.toml or in the rule",
                    ),
                },
                other => diags.push(
                    loc(roundings.span()),
                    rule,
                    format!("unknown round_up_to {other:?}; use \"calendar_year_end\" or \"financial_year_end\""),
                ),
            }
        }
    }
    round_up
}

/// `action`, with the columns a pseudonymise or anonymise rule changes.
fn rule_action(
    source: &Source,
    raw: &RawRule,
    event: Option<&EventSpec>,
    hold: Option<&str>,
    column_locations: &mut BTreeMap<String, Location>,
    diags: &mut Diagnosed,
) -> Option<Action> {
    let rule = Some(raw.id.get_ref().as_str());
    let loc = |span: std::ops::Range<usize>| source.span_location(Some(span));
    let action_name = raw.action.get_ref().as_str();
    match action_name {
        "delete" => {
            if let Some(columns) = &raw.columns {
                diags.push(
                    loc(columns.span()),
                    rule,
                    "columns apply only to action = \"pseudonymise\" or \"anonymise\"; a delete removes whole rows",
                );
            }
            Some(Action::Delete)
        }
        "pseudonymise" | "pseudonymize" | "anonymise" | "anonymize" => {
            let anonymise = action_name.starts_with("anonymi");
            let columns = column_actions(
                source,
                raw,
                ColumnRules {
                    anonymise,
                    event,
                    hold,
                },
                column_locations,
                diags,
            );
            columns.map(|columns| {
                if anonymise {
                    Action::Anonymise { columns }
                } else {
                    Action::Pseudonymise { columns }
                }
            })
        }
        other => {
            diags.push(
                loc(raw.action.span()),
                rule,
                format!(
                    "unknown action {other:?}; use \"delete\", \"pseudonymise\" or \"anonymise\""
                ),
            );
            None
        }
    }
}

/// `key`: the unique key batches walk, each column named once.
fn walk_key(source: &Source, raw: &RawRule, diags: &mut Diagnosed) -> Option<Vec<String>> {
    let rule = Some(raw.id.get_ref().as_str());
    let loc = |span: std::ops::Range<usize>| source.span_location(Some(span));
    raw.key.as_ref().map(|key| {
        if key.get_ref().is_empty() {
            diags.push(
                loc(key.span()),
                rule,
                "key is empty; name the columns of a unique key",
            );
        }
        for (i, column) in key.get_ref().iter().enumerate() {
            if let Err(err) = check_identifier(column) {
                diags.push(loc(key.span()), rule, format!("key: {err}"));
            }
            if key.get_ref()[..i].contains(column) {
                diags.push(loc(key.span()), rule, format!("key names {column:?} twice"));
            }
        }
        key.get_ref().clone()
    })
}

/// The store's empty-date sentinels and the rule's own, sorted.
fn empty_dates(
    source: &Source,
    raw: &RawRule,
    store_config: Option<&StoreConfig>,
    diags: &mut Diagnosed,
) -> Vec<NaiveDate> {
    let rule = Some(raw.id.get_ref().as_str());
    let mut empty_dates: Vec<NaiveDate> = store_config
        .map(|s| s.empty_dates.clone())
        .unwrap_or_default();
    for date in raw.empty_dates.iter().flatten() {
        if let Some(date) = parse_date(source, date, rule, diags) {
            empty_dates.push(date);
        }
    }
    empty_dates.sort();
    empty_dates.dedup();
    empty_dates
}

/// What a deadline's lead is checked against: the rule's retention (if
/// it parsed) and the zone its periods are counted in.
pub(super) struct Period0 {
    pub(super) retention: Option<Retention>,
    pub(super) zone: Tz,
}

/// A run may take this long unless the rule says otherwise: a deadline
/// acts early enough for the run after its rows come due to finish.
pub(super) const DEFAULT_MAX_DURATION: TimeDelta = TimeDelta::hours(1);

/// `kind`, `lead` and `max_duration`: whether the period is a minimum or a
/// deadline, and for a deadline how far ahead of it rows are due.
///
/// A deadline acts ahead by the longest gap between two runs of its
/// schedule plus `max_duration`, so the first run after a row comes due
/// finishes before the row's deadline. Without a schedule (a timer, or by
/// hand) the rule or the config must say `lead`; a `lead` next to a
/// schedule may be longer than the schedule needs, never shorter. A
/// period shorter than the lead cannot be met at all: refused.
pub(super) fn timing(
    source: &Source,
    raw: &RawRule,
    period: Period0,
    schedule: Option<&Schedule>,
    manual: bool,
    ctx: &RuleContext<'_>,
    diags: &mut Diagnosed,
) -> Option<Timing> {
    let rule = Some(raw.id.get_ref().as_str());
    let loc = |span: std::ops::Range<usize>| source.span_location(Some(span));
    let errors_before = diags.0.len();
    let kind = match &raw.kind {
        None => PeriodKind::Minimum,
        Some(kind) => kind.get_ref().parse().unwrap_or_else(|err| {
            diags.push(loc(kind.span()), rule, err);
            PeriodKind::Minimum
        }),
    };
    let max_duration = match &raw.max_duration {
        None => DEFAULT_MAX_DURATION,
        Some(text) => {
            parse_span(source, text, "max_duration", rule, diags).unwrap_or(DEFAULT_MAX_DURATION)
        }
    };
    let given = raw
        .lead
        .as_ref()
        .and_then(|lead| parse_span(source, lead, "lead", rule, diags));
    // A manual rule runs when someone runs it: the daemon's default
    // schedule says nothing about how often that is.
    let schedule = schedule.or(ctx.default_schedule.filter(|_| !manual));
    let gap = schedule.map(|schedule| {
        *ctx.gaps
            .borrow_mut()
            .entry(schedule.to_string())
            .or_insert_with(|| schedule.longest_gap(chrono::Utc::now(), ctx.timezone))
    });
    let timing = |lead, lead_reason, settle| Timing {
        kind,
        lead,
        lead_reason,
        max_duration,
        schedule: schedule.map(|s| (s.clone(), ctx.timezone)),
        settle,
    };
    if kind == PeriodKind::Minimum {
        let settle = minimum_settle(source, raw, gap, max_duration, ctx, diags);
        return (diags.0.len() == errors_before).then(|| timing(TimeDelta::zero(), None, settle));
    }
    let kind_at = raw
        .kind
        .as_ref()
        .map_or(loc(raw.id.span()), |k| loc(k.span()));
    let needed = lead_needed(schedule.zip(gap), max_duration, &kind_at, rule, diags)?;
    let given = match &raw.lead {
        // Parsed above; a lead that did not parse has been reported.
        Some(text) => Some((given?, format!("lead = \"{}\"", text.get_ref()))),
        None => ctx.default_lead.map(|lead| {
            (
                lead,
                format!("lead = \"{}\" in glemsel.toml", describe_duration(lead)),
            )
        }),
    };
    let settle = match (&needed, &given) {
        (Some((needed, _)), _) => Some(*needed),
        (None, given) => given.as_ref().map(|(lead, _)| *lead),
    };
    let lead_at = raw.lead.as_ref().map_or(kind_at.clone(), |l| loc(l.span()));
    let (lead, reason) = choose_lead(given, needed, lead_at, kind_at.clone(), rule, diags)?;
    if let Some(retention) = &period.retention {
        check_lead_fits(retention, period.zone, lead, &reason, kind_at, rule, diags)?;
    }
    Some(timing(lead, Some(reason), settle))
}

/// A minimum never goes early, so it takes no `lead`. How soon after
/// coming due its row is gone, for a category's deadline: the schedule's
/// gap plus `max_duration`, else the config's lead.
fn minimum_settle(
    source: &Source,
    raw: &RawRule,
    gap: Option<Option<TimeDelta>>,
    max_duration: TimeDelta,
    ctx: &RuleContext<'_>,
    diags: &mut Diagnosed,
) -> Option<TimeDelta> {
    if let Some(lead) = &raw.lead {
        diags.push(
            source.span_location(Some(lead.span())),
            Some(raw.id.get_ref().as_str()),
            "lead applies to kind = \"deadline\": a minimum never goes early",
        );
    }
    match gap {
        Some(gap) => gap.map(|gap| gap + max_duration),
        None => ctx.default_lead,
    }
}

/// The lead a deadline's schedule needs, with the reason: its longest gap
/// plus `max_duration`; none without a schedule. `None` (refused) when
/// the schedule stops running.
fn lead_needed(
    schedule_gap: Option<(&Schedule, Option<TimeDelta>)>,
    max_duration: TimeDelta,
    kind_at: &Location,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> Option<Option<(TimeDelta, String)>> {
    let Some((schedule, gap)) = schedule_gap else {
        return Some(None);
    };
    match gap {
        Some(gap) => Some(Some((
            gap + max_duration,
            format!(
                "schedule \"{schedule}\" leaves up to {} between runs, + max_duration {}",
                describe_duration(gap),
                describe_duration(max_duration)
            ),
        ))),
        None => {
            diags.push(
                kind_at.clone(),
                rule,
                format!("kind = \"deadline\": schedule \"{schedule}\" stops running within the next 400 days, so nothing would meet the deadline after it"),
            );
            None
        }
    }
}

/// The lead a deadline acts on: the one given (which may be longer than
/// the schedule needs, never shorter), else the schedule's.
fn choose_lead(
    given: Option<(TimeDelta, String)>,
    needed: Option<(TimeDelta, String)>,
    lead_at: Location,
    kind_at: Location,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> Option<(TimeDelta, String)> {
    match (given, needed) {
        (Some((lead, _)), Some((needed, why))) if lead < needed => {
            diags.push(
                lead_at,
                rule,
                format!(
                    "lead {} is shorter than the schedule needs: {why}, {} in all; a row that came due just after a run would be gone only after its deadline",
                    describe_duration(lead),
                    describe_duration(needed)
                ),
            );
            None
        }
        (Some(given), _) => Some(given),
        (None, Some(needed)) => Some(needed),
        (None, None) => {
            diags.push(
                kind_at,
                rule,
                "kind = \"deadline\" needs to know how often glemsel runs, to act early enough: set schedule (in the rule, or a default in glemsel.toml) or, for a timer or runs by hand, lead = \"<how long before the deadline rows must go>\"",
            );
            None
        }
    }
}

/// A period shorter than the lead cannot be met at all: refused.
fn check_lead_fits(
    retention: &Retention,
    zone: Tz,
    lead: TimeDelta,
    reason: &str,
    kind_at: Location,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> Option<()> {
    let shortest = retention.shortest_span(zone);
    if shortest >= lead {
        return Some(());
    }
    diags.push(
        kind_at,
        rule,
        format!(
            "kind = \"deadline\": retain \"{}\" can end {} after its event, but the rule must act {} ahead ({reason}): the schedule is too sparse to meet it; run the rule more often",
            retention.period,
            describe_duration(shortest),
            describe_duration(lead),
        ),
    );
    None
}

/// A category's minimum and deadline, one level up from a rule's own
/// `kind`: no rule of the category may let its data go before the
/// category's minimum has passed since the rule's event (counting the
/// rule's lead), nor keep it past the category's deadline (counting how
/// long after coming due a row is gone at the latest).
pub(super) fn check_category_bounds(
    raw: &RawRule,
    category: &Category,
    retention: &Retention,
    timing: &Timing,
    zone: Tz,
    at: Location,
    diags: &mut Diagnosed,
) {
    let rule = Some(raw.id.get_ref().as_str());
    let bound = |period: Period| Retention {
        period,
        round_up: Vec::new(),
        calendar: retention.calendar.clone(),
    };
    let name = &category.name;
    let moment = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M").to_string();
    if let Some(floor) = category.minimum
        && let Some(event) =
            retention.first_event_beyond(-timing.lead, Side::NotBefore, &bound(floor), zone)
    {
        diags.push(
            at.clone(),
            rule,
            format!(
                "category {name} keeps its data at least {floor} (minimum), but this rule's data could go sooner: an event at {} would be due at {}, before {}",
                moment(event),
                moment(retention.due_at(event) - timing.lead),
                moment(floor.add_to(event, &retention.calendar))
            ),
        );
    }
    let Some(ceiling) = category.deadline else {
        return;
    };
    match timing.settle {
        None => diags.push(
            at,
            rule,
            format!(
                "category {name} has its data gone within {ceiling} (deadline), but nothing says how often this rule runs: set a schedule (or lead)"
            ),
        ),
        Some(settle) => {
            if let Some(event) = retention.first_event_beyond(
                settle - timing.lead,
                Side::NotAfter,
                &bound(ceiling),
                zone,
            ) {
                diags.push(
                    at,
                    rule,
                    format!(
                        "category {name} has its data gone within {ceiling} (deadline), but this rule's could stay longer: an event at {} would be gone only by {}, after {}{}",
                        moment(event),
                        moment(retention.due_at(event) - timing.lead + settle),
                        moment(ceiling.add_to(event, &retention.calendar)),
                        if timing.kind == PeriodKind::Minimum {
                            "; should the rule be kind = \"deadline\"?"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
    }
}

/// What the columns of an in-place action may not be.
pub(super) struct ColumnRules<'a> {
    pub(super) anonymise: bool,
    pub(super) event: Option<&'a EventSpec>,
    pub(super) hold: Option<&'a str>,
}

/// `columns = { ... }` of a pseudonymise or anonymise rule, each action
/// read and checked; `None` when they are missing or empty.
pub(super) fn column_actions(
    source: &Source,
    raw: &RawRule,
    rules: ColumnRules<'_>,
    locations: &mut BTreeMap<String, Location>,
    diags: &mut Diagnosed,
) -> Option<Vec<(String, ColumnAction)>> {
    let rule = Some(raw.id.get_ref().as_str());
    let loc = |span: std::ops::Range<usize>| source.span_location(Some(span));
    let action = raw.action.get_ref();
    let columns = match &raw.columns {
        None => {
            diags.push(
                loc(raw.action.span()),
                rule,
                format!(
                    "action = {action:?} needs columns = {{ <column> = \"<action>\", ... }} with {}",
                    ColumnAction::NAMES
                ),
            );
            return None;
        }
        Some(columns) if columns.get_ref().is_empty() => {
            diags.push(
                loc(columns.span()),
                rule,
                format!("columns is empty; name at least one column to {action}"),
            );
            return None;
        }
        Some(columns) => columns,
    };
    let mut actions = Vec::new();
    for (name, text) in columns.get_ref() {
        let at = loc(text.span());
        if let Err(err) = check_identifier(name) {
            diags.push(at.clone(), rule, format!("columns: {err}"));
        }
        if rules.event.is_some_and(|e| e.uses_own(name)) {
            diags.push(at.clone(), rule, format!("column {name:?} is the event column; changing it would change when rows are due"));
        }
        if rules.hold == Some(name.as_str()) {
            diags.push(
                at.clone(),
                rule,
                format!("column {name:?} is the hold column"),
            );
        }
        locations.insert(name.clone(), at.clone());
        match ColumnAction::parse(text.get_ref()) {
            Ok(column_action) if rules.anonymise && column_action.is_keyed() => diags.push(
                at,
                rule,
                format!(
                    "column {name:?}: {} writes a keyed token, which whoever holds the key can recompute from a guessed value: pseudonymised data, still personal data, not anonymised. Use null, redact or a generalisation (year, month, ip_prefix, prefix:N), or action = \"pseudonymise\" if that is what the policy allows",
                    column_action.as_str()
                ),
            ),
            Ok(column_action) => actions.push((name.clone(), column_action)),
            Err(err) => diags.push(at, rule, err),
        }
    }
    Some(actions)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum RelatedKind {
    Join,
    Hold,
    Cascade,
}

impl RelatedKind {
    pub(super) fn key(self) -> &'static str {
        match self {
            RelatedKind::Join => "[[rule.join]]",
            RelatedKind::Hold => "[[rule.hold_table]]",
            RelatedKind::Cascade => "[[rule.cascade]]",
        }
    }
}

/// A validated related table, with the parts only some kinds take.
pub(super) struct RelatedParts {
    pub(super) name: String,
    pub(super) related: Related,
    pub(super) open: Option<String>,
    pub(super) parent: Option<TableRef>,
}

/// The declared joins, as a [`Rule`] keeps them.
fn into_joins(parts: Vec<(RelatedParts, Option<String>)>) -> Vec<Join> {
    parts
        .into_iter()
        .map(|(join, _)| Join {
            name: join.name,
            related: join.related,
            open: join.open,
        })
        .collect()
}

/// The declared hold tables with their `where`, as a [`Rule`] keeps them.
fn into_hold_tables(parts: Vec<(RelatedParts, Option<String>)>) -> Vec<HoldTable> {
    parts
        .into_iter()
        .map(|(related, filter)| HoldTable {
            name: related.name,
            related: related.related,
            filter,
        })
        .collect()
}

/// The declared cascades, as a [`Rule`] keeps them.
fn into_cascades(parts: Vec<(RelatedParts, Option<String>)>) -> Vec<Cascade> {
    parts
        .into_iter()
        .map(|(related, _)| Cascade {
            parent: related.parent,
            related: related.related,
        })
        .collect()
}

/// A `where` or `open` fragment, checked; its text is kept either way.
fn sql_fragment(
    source: &Source,
    text: &Spanned<String>,
    what: &str,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> String {
    if let Err(err) = check_sql_fragment(text.get_ref()) {
        diags.push(
            source.span_location(Some(text.span())),
            rule,
            format!("{what}: {err}"),
        );
    }
    text.get_ref().clone()
}

/// Validates `[[rule.join]]`, `[[rule.hold_table]]` or `[[rule.cascade]]`
/// entries; returns them with their `where` (hold tables) or `open` (joins).
pub(super) fn related_tables(
    source: &Source,
    raw: Option<&[RawRelated]>,
    kind: RelatedKind,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> Vec<(RelatedParts, Option<String>)> {
    let mut out: Vec<(RelatedParts, Option<String>)> = Vec::new();
    for entry in raw.unwrap_or_default() {
        let at = source.span_location(Some(entry.table.span()));
        let errors_before = diags.0.len();
        let Some(table) = parse_table(source, &entry.table, rule, diags) else {
            continue;
        };
        let name = entry.name.clone().unwrap_or_else(|| table.name.clone());
        let what = format!("{} {}", kind.key(), entry.table.get_ref());
        check_keys_of_kind(entry, kind, &what, &at, rule, diags);
        check_on(entry, &what, &at, rule, diags);
        let mut fragment = |text: &Option<Spanned<String>>, key: &str| {
            let what = format!("{what}: {key}");
            text.as_ref()
                .map(|text| sql_fragment(source, text, &what, rule, diags))
        };
        let open = fragment(&entry.open, "open");
        let filter = fragment(&entry.filter, "where");
        // A parent given to another kind is refused above, once.
        let parent = entry
            .parent
            .as_ref()
            .filter(|_| kind == RelatedKind::Cascade)
            .and_then(|parent| cascade_parent(parent, &out, &what, &at, rule, diags));
        if out.iter().any(|(r, _)| r.name == name) {
            diags.push(
                at.clone(),
                rule,
                format!("{what}: {name:?} is declared twice; give one a different name"),
            );
        }
        if diags.0.len() > errors_before {
            continue;
        }
        let on = entry
            .on
            .iter()
            .map(|(t, o)| (t.clone(), o.clone()))
            .collect();
        let related = Related { table, on, at };
        let parts = RelatedParts {
            name,
            related,
            open,
            parent,
        };
        out.push((parts, filter));
    }
    out
}

/// `name` and `open` belong to joins, `where` to hold tables, `parent` to
/// cascades; given to another kind, each is refused.
fn check_keys_of_kind(
    entry: &RawRelated,
    kind: RelatedKind,
    what: &str,
    at: &Location,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) {
    let given = [
        ("name", entry.name.is_some(), RelatedKind::Join),
        ("open", entry.open.is_some(), RelatedKind::Join),
        ("where", entry.filter.is_some(), RelatedKind::Hold),
        ("parent", entry.parent.is_some(), RelatedKind::Cascade),
    ];
    for (key, present, owner) in given {
        if present && kind != owner {
            diags.push(
                at.clone(),
                rule,
                format!("{what}: {key} applies only to {}", owner.key()),
            );
        }
    }
}

/// `on`: at least one pair of columns, each a valid identifier.
fn check_on(
    entry: &RawRelated,
    what: &str,
    at: &Location,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) {
    if entry.on.is_empty() {
        diags.push(
            at.clone(),
            rule,
            format!("{what}: on is empty; write on = {{ their_column = \"our_column\" }}"),
        );
    }
    for (theirs, ours) in &entry.on {
        for column in [theirs, ours] {
            if let Err(err) = check_identifier(column) {
                diags.push(at.clone(), rule, format!("{what}: on: {err}"));
            }
        }
    }
}

/// A cascade's `parent`: one of the cascade tables declared before this
/// one.
fn cascade_parent(
    parent: &str,
    earlier: &[(RelatedParts, Option<String>)],
    what: &str,
    at: &Location,
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> Option<TableRef> {
    match parent.parse::<TableRef>() {
        Ok(parent) if earlier.iter().any(|(r, _)| r.related.table == parent) => Some(parent),
        _ => {
            diags.push(
                at.clone(),
                rule,
                format!(
                    "{what}: parent {parent:?} must be a cascade table declared before this one"
                ),
            );
            None
        }
    }
}

/// `after` with its sources resolved against the declared joins.
pub(super) fn event_spec(
    at: Location,
    raw: &RawAfter,
    joins: &[(RelatedParts, Option<String>)],
    rule: Option<&str>,
    diags: &mut Diagnosed,
) -> Option<EventSpec> {
    let (names, combine) = match raw {
        RawAfter::One(name) => (std::slice::from_ref(name), Combine::Latest),
        RawAfter::Latest(latest) => (latest.latest.as_slice(), Combine::Latest),
        RawAfter::Earliest(earliest) => (earliest.earliest.as_slice(), Combine::Earliest),
    };
    if names.is_empty() {
        diags.push(at, rule, "after: name at least one column");
        return None;
    }
    let mut sources = Vec::new();
    for name in names {
        let source = match name.split_once('.') {
            Some((join, column)) if joins.iter().any(|(j, _)| j.name == join) => EventRef {
                join: Some(join.to_string()),
                column: column.to_string(),
            },
            _ => EventRef {
                join: None,
                column: name.clone(),
            },
        };
        if let Err(err) = check_identifier(&source.column) {
            diags.push(at.clone(), rule, format!("after: {err}"));
            return None;
        }
        if sources.contains(&source) {
            diags.push(at.clone(), rule, format!("after: {name:?} is named twice"));
            return None;
        }
        sources.push(source);
    }
    Some(EventSpec { sources, combine })
}

/// A `where` condition is trusted SQL from the rule file, but it is pasted
/// inside a statement, so refuse what could end it, comment out the rest,
/// or hide a quote from this scan: dollar quoting (`$$`), backslash
/// escapes (`E'\''`, MySQL's `'\''`), comments, and brackets, which SQLite
/// reads as a quoted name (`[a']`) and the servers as a subscript, so a
/// quote inside them would be a quote to one engine and not to another.
pub fn check_sql_fragment(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("empty condition".into());
    }
    if text.contains('\\') {
        return Err("backslashes are not allowed; double a quote to escape it ('it''s')".into());
    }
    let mut depth = 0i32;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' => loop {
                match chars.next() {
                    Some(q) if q == c => {
                        if chars.peek() == Some(&c) {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    Some(_) => {}
                    None => return Err(format!("unterminated {c} quote")),
                }
            },
            '[' => loop {
                match chars.next() {
                    Some(']') => break,
                    Some(inside)
                        if inside.is_alphanumeric() || matches!(inside, '_' | ' ' | '.' | ':') => {}
                    Some(inside) => {
                        return Err(format!(
                            "{inside:?} inside [ ] is not allowed: brackets may hold a name or a number only (SQLite reads [..] as a quoted name)"
                        ));
                    }
                    None => return Err("unterminated [".into()),
                }
            },
            ']' => return Err("unbalanced ']'".into()),
            ';' => return Err("';' is not allowed: one condition, not a statement".into()),
            '$' => return Err("'$' outside a quoted name is not allowed (dollar quoting)".into()),
            '-' if chars.peek() == Some(&'-') => {
                return Err("comments ('--') are not allowed".into());
            }
            '/' if chars.peek() == Some(&'*') => {
                return Err("comments ('/*') are not allowed".into());
            }
            '#' => return Err("'#' starts a comment in MySQL and is not allowed".into()),
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')'".into());
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_fragments() {
        assert!(check_sql_fragment("status = 'closed' AND (a > 1 OR b)").is_ok());
        assert!(check_sql_fragment("name = 'it''s; fine -- really'").is_ok());
        assert!(check_sql_fragment("a = 1; DROP TABLE x").is_err());
        assert!(check_sql_fragment("a = 1 -- rest").is_err());
        assert!(check_sql_fragment("a = 1) OR (1 = 1").is_err());
        assert!(check_sql_fragment("(a = 1").is_err());
        assert!(check_sql_fragment("a = 'open").is_err());
        assert!(check_sql_fragment("  ").is_err());
        // Quotes hidden from the scan by dollar quoting or backslashes.
        assert!(check_sql_fragment("status = $$'$$ OR TRUE) OR (TRUE OR $$'$$ = ''").is_err());
        assert!(check_sql_fragment("status = E'\\'' OR TRUE) OR ('").is_err());
        assert!(check_sql_fragment("name = 'a\\' OR 1=1) OR ('x'").is_err());
        // SQLite's bracket quoting hides a quote from every other reader.
        assert!(
            check_sql_fragment("CAST(1 AS [a']) = 1) OR (1 = 1 OR CAST(1 AS [b']) = 1").is_err()
        );
        assert!(check_sql_fragment("[a)] = 1").is_err());
        assert!(check_sql_fragment("x = 1]").is_err());
        assert!(check_sql_fragment("[Blocked] = 0 AND tags[1] = 'x'").is_ok());
        // Every comment form is refused (on MySQL `#` comments out the
        // rest of the statement, the due condition with it); the same
        // characters as arithmetic are fine.
        for comment in [
            "a = 1 -- rest",
            "a = 1 /* rest */",
            "a = 1 # rest",
            "a = 1#",
        ] {
            assert!(
                check_sql_fragment(comment).unwrap_err().contains("comment"),
                "{comment}"
            );
        }
        for arithmetic in [
            "a - 1 > 0",
            "a -1 = -b",
            "a / 2 > 1",
            "a /2 = b/ 3",
            "a = '#1'",
        ] {
            assert!(check_sql_fragment(arithmetic).is_ok(), "{arithmetic}");
        }
        // A NAV name with '$' inside quotes is fine.
        assert!(check_sql_fragment("\"CRONUS$Blocked\" = 0 AND `a$b` = 1").is_ok());
    }
}
