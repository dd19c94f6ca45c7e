//! Reading `glemsel.toml` and the rule files, and validating them into a
//! [`Policy`]. Every check pushes a diagnostic and carries on, so one run
//! of `glemsel check --offline` shows every problem at once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::cell::RefCell;
use std::rc::Rc;

use chrono::{Datelike as _, NaiveDate, TimeDelta};
use chrono_tz::Tz;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::raw::{RawAfter, RawCategory, RawConfig, RawRelated, RawRule, RawStore};
use super::source::Source;
use super::{
    Action, Cascade, Category, Combine, Connection, Diagnostic, Diagnostics, Engine, EventRef,
    EventSpec, HoldTable, Join, Location, Policy, Related, Rule, RuleLocations, SecretSource,
    Settings, StoreConfig, TableRef, Timing, Tls, check_identifier,
};
use crate::operate::OperatingWindow;
use crate::period::{
    Calendar, Holidays, Period, PeriodKind, Retention, RoundUp, Side, Unit, describe_duration,
    parse_duration,
};
use crate::pseudonym::ColumnAction;
use crate::schedule::Schedule;

const DEFAULT_BATCH_SIZE: u64 = 10_000;
const MAX_BATCH_SIZE: u64 = 1_000_000;
/// Short enough that an application waiting on a row lock barely notices,
/// long enough that commits are a small share of the work.
const DEFAULT_BATCH_MS: u64 = 100;
const MAX_BATCH_MS: u64 = 60_000;
const DEFAULT_LOCK_TIMEOUT_MS: u64 = 2_000;
/// Fifteen minutes: a count of a large table may take minutes, but no
/// statement of glemsel's should hold a snapshot for hours.
const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 900_000;
/// Five minutes: NTP keeps healthy clocks within milliseconds.
const DEFAULT_MAX_CLOCK_SKEW_MS: u64 = 300_000;
const DEFAULT_AUDIT_TABLE: &str = "glemsel_audit";
/// A pause between batches longer than ten minutes is a schedule, not a pace.
const MAX_PAUSE_MS: u64 = 600_000;
/// Half an hour: a load that stays high that long will not fall in time
/// for this run; the next one finds the rest.
const DEFAULT_MAX_PAUSE_MS: u64 = 1_800_000;

/// Loads and validates `config_file` and the rule files it names.
pub fn load(config_file: &Path) -> Result<Policy, Diagnostics> {
    let mut diags = Diagnosed::default();
    let base = config_file.parent().unwrap_or(Path::new("")).to_path_buf();
    let source = match read_source(config_file) {
        Ok(source) => source,
        Err(diag) => return Err(Diagnostics(vec![diag])),
    };
    let mut raw: RawConfig = match toml::from_str(&source.text) {
        Ok(raw) => raw,
        Err(err) => {
            diags.push(source.span_location(err.span()), None, err.message());
            return Err(diags.finish());
        }
    };
    let rule_paths = rule_paths(&source, &raw, &base, &mut diags);
    let (settings, financial_year_end) = settings(&source, &raw, &base, &mut diags);
    let default_audit = raw
        .audit_table
        .as_ref()
        .map_or(DEFAULT_AUDIT_TABLE, |a| a.get_ref().as_str())
        .to_string();
    let stores = stores(
        &source,
        std::mem::take(&mut raw.stores),
        &base,
        &settings,
        &default_audit,
        &mut diags,
    );

    let mut settings = settings;
    settings.coverage_allow = coverage_allow(&source, raw.coverage, &stores, &mut diags);

    let mut categories = BTreeMap::new();
    let mut category_at: HashMap<String, Location> = HashMap::new();
    let mut raw_rules = Vec::new();
    let mut rule_files = Vec::new();
    for path in rule_paths {
        match read_source(&path) {
            Ok(rule_source) => {
                parse_rule_file(
                    &Rc::new(rule_source),
                    &mut categories,
                    &mut category_at,
                    &mut raw_rules,
                    &mut diags,
                );
                rule_files.push(path);
            }
            Err(diag) => diags.0.push(diag),
        }
    }

    let context = RuleContext {
        stores: &stores,
        categories: &categories,
        financial_year_end,
        calendar: settings.calendar.as_ref(),
        default_batch_size: settings.batch_size,
        default_batch_ms: settings.batch_ms,
        default_pause_ms: settings.pause_ms,
        timezone: settings.timezone,
        default_schedule: settings.schedule.as_ref(),
        default_lead: settings.lead,
        gaps: RefCell::new(HashMap::new()),
    };
    let mut rules: Vec<Rule> = Vec::new();
    let mut seen: HashMap<String, Location> = HashMap::new();
    for (rule_source, raw) in &raw_rules {
        if let Some(rule) = validate_rule(rule_source, raw, &context, &mut diags) {
            if let Some(first) = seen.get(&rule.id) {
                diags.push(
                    rule.at.rule.clone(),
                    Some(&rule.id),
                    format!("duplicate rule id; first defined at {first}"),
                );
                continue;
            }
            seen.insert(rule.id.clone(), rule.at.rule.clone());
            rules.push(rule);
        }
    }
    if rules.iter().any(Rule::needs_key) && settings.key.is_none() {
        diags.push(
            Location::file_start(&source.path),
            None,
            "no key: some rules pseudonymise; set key_file (a path) or key_credential (a systemd credential)",
        );
    }
    if !diags.0.is_empty() {
        return Err(diags.finish());
    }
    Ok(Policy {
        settings,
        stores,
        categories,
        rules,
        rule_files,
    })
}

#[derive(Default)]
struct Diagnosed(Vec<Diagnostic>);

impl Diagnosed {
    fn push(&mut self, location: Location, rule: Option<&str>, message: impl Into<String>) {
        self.0.push(Diagnostic::new(location, rule, message));
    }

    fn finish(mut self) -> Diagnostics {
        self.0.sort();
        self.0.dedup();
        Diagnostics(self.0)
    }
}

fn read_source(path: &Path) -> Result<Source, Diagnostic> {
    std::fs::read_to_string(path)
        .map(|text| Source::new(path.to_path_buf(), text))
        .map_err(|err| {
            Diagnostic::new(
                Location::file_start(path),
                None,
                format!("cannot read: {err}"),
            )
        })
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    base.join(path)
}

fn rule_paths(
    source: &Source,
    raw: &RawConfig,
    base: &Path,
    diags: &mut Diagnosed,
) -> Vec<PathBuf> {
    let (entries, at) = match &raw.rules {
        Some(rules) => (
            rules.get_ref().items(),
            source.span_location(Some(rules.span())),
        ),
        None => (vec!["rules"], Location::file_start(&source.path)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = resolve(base, entry);
        if path.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(dir) => {
                    let mut files: Vec<PathBuf> = dir
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
                        .collect();
                    files.sort();
                    paths.extend(files);
                }
                Err(err) => diags.push(
                    at.clone(),
                    None,
                    format!("cannot read rule directory {}: {err}", path.display()),
                ),
            }
        } else if path.is_file() {
            paths.push(path);
        } else {
            diags.push(
                at.clone(),
                None,
                format!("rule path {} does not exist", path.display()),
            );
        }
    }
    paths
}

fn settings(
    source: &Source,
    raw: &RawConfig,
    base: &Path,
    diags: &mut Diagnosed,
) -> (Settings, Option<u32>) {
    let timezone = match &raw.timezone {
        Some(tz) => parse_tz(source, tz, None, diags),
        None => {
            diags.push(
                Location::file_start(&source.path),
                None,
                "timezone is missing; set it, for example timezone = \"Europe/Copenhagen\"",
            );
            Tz::UTC
        }
    };
    let financial_year_end = raw
        .financial_year_end
        .as_ref()
        .and_then(|fye| parse_year_end(source, fye, None, diags));
    let batch_size = raw
        .batch_size
        .as_ref()
        .and_then(|b| bounded(source, b, 1, MAX_BATCH_SIZE, "batch_size", None, diags))
        .unwrap_or(DEFAULT_BATCH_SIZE);
    let batch_ms = raw
        .batch_ms
        .as_ref()
        .and_then(|b| bounded(source, b, 0, MAX_BATCH_MS, "batch_ms", None, diags))
        .unwrap_or(DEFAULT_BATCH_MS);
    let lock_timeout_ms = raw
        .lock_timeout_ms
        .as_ref()
        .and_then(|b| bounded(source, b, 1, 600_000, "lock_timeout_ms", None, diags))
        .unwrap_or(DEFAULT_LOCK_TIMEOUT_MS);
    let statement_timeout_ms = raw
        .statement_timeout_ms
        .as_ref()
        .and_then(|b| {
            bounded(
                source,
                b,
                1_000,
                86_400_000,
                "statement_timeout_ms",
                None,
                diags,
            )
        })
        .unwrap_or(DEFAULT_STATEMENT_TIMEOUT_MS);
    let copies_max_log_days = raw
        .copies_max_log_days
        .as_ref()
        .and_then(|b| bounded(source, b, 0, 36_500, "copies_max_log_days", None, diags))
        .unwrap_or(30);
    let max_clock_skew_ms = raw
        .max_clock_skew_ms
        .as_ref()
        .and_then(|b| bounded(source, b, 0, 86_400_000, "max_clock_skew_ms", None, diags))
        .unwrap_or(DEFAULT_MAX_CLOCK_SKEW_MS);
    let settings = Settings {
        config_file: source.path.clone(),
        timezone,
        calendar: calendar(source, raw, diags),
        key: secret_source(
            source,
            "key",
            &raw.key_file,
            &raw.key_credential,
            base,
            diags,
        ),
        audit_key: secret_source(
            source,
            "audit_key",
            &raw.audit_key_file,
            &raw.audit_key_credential,
            base,
            diags,
        ),
        schedule: raw
            .schedule
            .as_ref()
            .and_then(|s| parse_schedule(source, s, None, diags)),
        lead: raw
            .lead
            .as_ref()
            .and_then(|l| parse_span(source, l, "lead", None, diags)),
        metrics_listen: raw
            .metrics_listen
            .as_ref()
            .and_then(|m| parse_loopback(source, m, diags)),
        audit_checkpoints: raw
            .audit_checkpoints
            .as_ref()
            .map(|a| resolve(base, a.get_ref())),
        batch_size,
        batch_ms,
        lock_timeout: Duration::from_millis(lock_timeout_ms),
        max_clock_skew: Duration::from_millis(max_clock_skew_ms),
        statement_timeout: Duration::from_millis(statement_timeout_ms),
        copies_max_log_days,
        stop_file: raw.stop_file.as_ref().map(|f| resolve(base, f.get_ref())),
        pause_ms: raw
            .pause_ms
            .as_ref()
            .and_then(|p| bounded(source, p, 0, MAX_PAUSE_MS, "pause_ms", None, diags))
            .unwrap_or(0),
        max_pause: Duration::from_millis(
            raw.max_pause_ms
                .as_ref()
                .and_then(|p| bounded(source, p, 1_000, 86_400_000, "max_pause_ms", None, diags))
                .unwrap_or(DEFAULT_MAX_PAUSE_MS),
        ),
        coverage_allow: Vec::new(),
    };
    // The audit table default is read per store; validate the global one here.
    if let Some(table) = &raw.audit_table {
        parse_table(source, table, None, diags);
    }
    (settings, financial_year_end)
}

/// `holidays` and `closing_days`: which days are working days. Unset when
/// neither is given; closing days alone need `holidays` to say whose
/// public holidays (if any) come on top.
fn calendar(source: &Source, raw: &RawConfig, diags: &mut Diagnosed) -> Option<Calendar> {
    let closing_days: Vec<NaiveDate> = raw
        .closing_days
        .iter()
        .flatten()
        .filter_map(|d| parse_date(source, d, None, diags))
        .collect();
    let holidays = match &raw.holidays {
        Some(text) => match text.get_ref().parse::<Holidays>() {
            Ok(holidays) => holidays,
            Err(err) => {
                diags.push(source.span_location(Some(text.span())), None, err);
                Holidays::None
            }
        },
        None if raw.closing_days.is_some() => {
            diags.push(
                Location::file_start(&source.path),
                None,
                "closing_days needs holidays = \"DK\" or \"none\": say whose public holidays are days off too",
            );
            Holidays::None
        }
        None => return None,
    };
    Some(Calendar::new(holidays, closing_days))
}

fn stores(
    source: &Source,
    raw: BTreeMap<String, Spanned<RawStore>>,
    base: &Path,
    settings: &Settings,
    default_audit: &str,
    diags: &mut Diagnosed,
) -> BTreeMap<String, StoreConfig> {
    let mut stores = BTreeMap::new();
    if raw.is_empty() {
        diags.push(
            Location::file_start(&source.path),
            None,
            "no stores are defined; add a [stores.<name>] table",
        );
    }
    for (name, spanned) in raw {
        let at = source.span_location(Some(spanned.span()));
        let store = spanned.into_inner();
        if !is_simple_name(&name) {
            diags.push(
                at.clone(),
                None,
                format!("store name {name:?} may hold only letters, digits, '_' and '-'"),
            );
        }
        let engine = match store.engine.get_ref().as_str() {
            "postgres" | "postgresql" => Some(Engine::Postgres),
            "mysql" | "mariadb" => Some(Engine::Mysql),
            "sqlite" => Some(Engine::Sqlite),
            other => {
                diags.push(
                    source.span_location(Some(store.engine.span())),
                    None,
                    format!(
                        "store {name}: unknown engine {other:?}; use postgres, mysql or sqlite"
                    ),
                );
                None
            }
        };
        if let Some(url) = &store.url {
            diags.push(
                source.span_location(Some(url.span())),
                None,
                format!("store {name}: an inline url would put a password in the config; use url_env or url_file"),
            );
        }
        let url_secret = |diags: &mut Diagnosed| {
            secret_source(
                source,
                &format!("store {name}: url"),
                &store.url_file,
                &store.url_credential,
                base,
                diags,
            )
        };
        let has_url_secret = store.url_file.is_some() || store.url_credential.is_some();
        let connection = match (engine, &store.url_env, has_url_secret, &store.path) {
            (Some(Engine::Sqlite), None, false, Some(path)) => {
                Some(Connection::Path(resolve(base, path.get_ref())))
            }
            (Some(Engine::Sqlite), _, _, _) => {
                diags.push(
                    at.clone(),
                    None,
                    format!(
                        "store {name}: an sqlite store takes path = \"<file>\" and nothing else"
                    ),
                );
                None
            }
            (Some(_), Some(env), false, None) => {
                if is_env_name(env.get_ref()) {
                    Some(Connection::UrlEnv(env.get_ref().clone()))
                } else {
                    diags.push(
                        source.span_location(Some(env.span())),
                        None,
                        format!(
                            "store {name}: {:?} is not an environment variable name",
                            env.get_ref()
                        ),
                    );
                    None
                }
            }
            (Some(_), None, true, None) => url_secret(diags).map(Connection::Url),
            (Some(engine), _, _, _) => {
                diags.push(
                    at.clone(),
                    None,
                    format!(
                        "store {name}: a {engine} store needs exactly one of url_env, url_file or url_credential"
                    ),
                );
                None
            }
            (None, ..) => None,
        };
        let time_zone = store
            .time_zone
            .as_ref()
            .map_or(settings.timezone, |tz| parse_tz(source, tz, None, diags));
        let audit_table = match &store.audit_table {
            Some(table) => parse_table(source, table, None, diags),
            None => default_audit.parse().ok(),
        };
        let empty_dates = store
            .empty_dates
            .iter()
            .flatten()
            .filter_map(|d| parse_date(source, d, None, diags))
            .collect();
        // A bad `tls` is reported; the store stays known, so its rules are
        // not reported as naming an unknown store as well.
        let tls = store_tls(source, &name, engine, &store, base, diags).unwrap_or_default();
        let max_load = store.max_load.as_ref().and_then(|m| {
            bounded(
                source,
                m,
                1,
                100_000,
                &format!("store {name}: max_load"),
                None,
                diags,
            )
        });
        let max_lag =
            store.max_lag.as_ref().and_then(|m| {
                match crate::operate::parse_max_duration(m.get_ref()) {
                    Ok(lag) => Some(lag),
                    Err(err) => {
                        diags.push(
                            source.span_location(Some(m.span())),
                            None,
                            format!("store {name}: max_lag: {err}"),
                        );
                        None
                    }
                }
            });
        let replica_connections: Vec<Connection> = store
            .replicas
            .iter()
            .flatten()
            .filter_map(|replica| replica_connection(source, &name, replica, base, diags))
            .collect();
        match (&store.replicas, &store.max_lag, engine) {
            (Some(_), _, Some(Engine::Sqlite)) | (_, Some(_), Some(Engine::Sqlite)) => diags.push(
                at.clone(),
                None,
                format!("store {name}: an sqlite store has no replicas to watch"),
            ),
            _ if store.max_load.is_some() && engine == Some(Engine::Sqlite) => diags.push(
                at.clone(),
                None,
                format!("store {name}: an sqlite store has no server whose load max_load could limit"),
            ),
            (Some(replicas), None, _) if !replicas.is_empty() => diags.push(
                at.clone(),
                None,
                format!("store {name}: replicas are watched for max_lag; set it, e.g. max_lag = \"5s\""),
            ),
            (None, Some(lag), _) => diags.push(
                source.span_location(Some(lag.span())),
                None,
                format!("store {name}: max_lag needs replicas to watch: [[stores.{name}.replicas]] with url_env, url_file or url_credential"),
            ),
            _ => {}
        }
        let window = store.window.as_ref().and_then(|w| {
            parse_window(
                source,
                w,
                settings.timezone,
                &format!("store {name}: "),
                None,
                diags,
            )
        });
        if let (Some(engine), Some(connection), Some(audit_table)) =
            (engine, connection, audit_table)
        {
            // A replica is reached as its store is, but at its own URL; its
            // name says whose it is, never where it is.
            let replicas = replica_connections
                .into_iter()
                .enumerate()
                .map(|(index, connection)| StoreConfig {
                    name: format!("{name} replica {}", index + 1),
                    engine,
                    connection,
                    audit_table: audit_table.clone(),
                    time_zone,
                    empty_dates: Vec::new(),
                    tls: tls.clone(),
                    window: None,
                    max_load: None,
                    replicas: Vec::new(),
                    max_lag: None,
                    location: at.clone(),
                })
                .collect();
            stores.insert(
                name.clone(),
                StoreConfig {
                    name,
                    engine,
                    connection,
                    audit_table,
                    time_zone,
                    empty_dates,
                    tls,
                    window,
                    max_load,
                    replicas,
                    max_lag,
                    location: at,
                },
            );
        }
    }
    stores
}

/// A store's `tls` and `ca_file`. `verify-full` needs the CA; a CA file
/// with any other mode is refused, since nothing would check it; SQLite
/// has no connection to protect.
fn store_tls(
    source: &Source,
    name: &str,
    engine: Option<Engine>,
    store: &RawStore,
    base: &Path,
    diags: &mut Diagnosed,
) -> Option<Tls> {
    let at = |spanned: &Spanned<String>| source.span_location(Some(spanned.span()));
    if engine == Some(Engine::Sqlite) {
        for given in [&store.tls, &store.ca_file].into_iter().flatten() {
            diags.push(
                at(given),
                None,
                format!(
                    "store {name}: an sqlite store is a local file; it takes no tls or ca_file"
                ),
            );
        }
        return Some(Tls::Disable);
    }
    let mode = store
        .tls
        .as_ref()
        .map_or("disable", |t| t.get_ref().as_str());
    let ca_file = store.ca_file.as_ref();
    match (mode, ca_file) {
        ("disable", None) => Some(Tls::Disable),
        ("require", None) => Some(Tls::Require),
        ("verify-full", Some(file)) => Some(Tls::VerifyFull {
            ca_file: resolve(base, file.get_ref()),
        }),
        ("verify-full", None) => {
            diags.push(
                at(store.tls.as_ref().expect("given")),
                None,
                format!(
                    "store {name}: tls = \"verify-full\" needs ca_file, the CA certificate (PEM) that signed the server's certificate"
                ),
            );
            None
        }
        ("disable" | "require", Some(file)) => {
            diags.push(
                at(file),
                None,
                format!(
                    "store {name}: ca_file is used only with tls = \"verify-full\"; with {mode:?} no certificate is checked"
                ),
            );
            None
        }
        (other, _) => {
            diags.push(
                at(store.tls.as_ref().expect("given")),
                None,
                format!(
                    "store {name}: tls must be \"disable\", \"require\" or \"verify-full\", not {other:?}"
                ),
            );
            None
        }
    }
}

/// `[[coverage.allow]]`: each entry names a known store (if any), a table,
/// and why its columns need no rule.
fn coverage_allow(
    source: &Source,
    raw: Option<super::raw::RawCoverage>,
    stores: &BTreeMap<String, StoreConfig>,
    diags: &mut Diagnosed,
) -> Vec<super::CoverageAllow> {
    let mut allowed = Vec::new();
    for entry in raw.map(|c| c.allow).unwrap_or_default() {
        let at = source.span_location(Some(entry.span()));
        let entry = entry.into_inner();
        if let Some(store) = &entry.store
            && !stores.contains_key(store)
        {
            diags.push(
                at.clone(),
                None,
                format!("coverage.allow: no store named {store:?}"),
            );
        }
        if entry.reason.trim().is_empty() {
            diags.push(
                at.clone(),
                None,
                "coverage.allow: say why the columns need no rule (reason = \"...\"); an auditor will ask",
            );
        }
        match entry.table.parse::<TableRef>() {
            Ok(table) => allowed.push(super::CoverageAllow {
                store: entry.store,
                table,
                columns: entry.columns.unwrap_or_default(),
                reason: entry.reason,
                at,
            }),
            Err(err) => diags.push(at, None, format!("coverage.allow: {err}")),
        }
    }
    allowed
}

/// A secret given as a file path or as a systemd credential name: one of them.
fn secret_source(
    source: &Source,
    what: &str,
    file: &Option<Spanned<String>>,
    credential: &Option<Spanned<String>>,
    base: &Path,
    diags: &mut Diagnosed,
) -> Option<SecretSource> {
    match (file, credential) {
        (Some(file), None) => Some(SecretSource::File(resolve(base, file.get_ref()))),
        (None, Some(name)) if is_simple_name(&name.get_ref().replace('.', "_")) => {
            Some(SecretSource::Credential(name.get_ref().clone()))
        }
        (None, Some(name)) => {
            diags.push(
                source.span_location(Some(name.span())),
                None,
                format!(
                    "{what}: a credential is a file name in $CREDENTIALS_DIRECTORY, not {:?}",
                    name.get_ref()
                ),
            );
            None
        }
        (Some(_), Some(name)) => {
            diags.push(
                source.span_location(Some(name.span())),
                None,
                format!("{what}: give a file or a credential, not both"),
            );
            None
        }
        (None, None) => None,
    }
}

/// Where a replica is: exactly one of url_env, url_file, url_credential.
fn replica_connection(
    source: &Source,
    store: &str,
    replica: &Spanned<super::raw::RawReplica>,
    base: &Path,
    diags: &mut Diagnosed,
) -> Option<Connection> {
    let at = source.span_location(Some(replica.span()));
    let replica = replica.get_ref();
    let has_secret = replica.url_file.is_some() || replica.url_credential.is_some();
    match (&replica.url_env, has_secret) {
        (Some(env), false) if is_env_name(env.get_ref()) => {
            Some(Connection::UrlEnv(env.get_ref().clone()))
        }
        (None, true) => secret_source(
            source,
            &format!("store {store}: replica url"),
            &replica.url_file,
            &replica.url_credential,
            base,
            diags,
        )
        .map(Connection::Url),
        _ => {
            diags.push(
                at,
                None,
                format!("store {store}: a replica needs exactly one of url_env (an environment variable's name), url_file or url_credential"),
            );
            None
        }
    }
}

/// An operating window, read in the config's zone; `what` names its owner
/// in the message (a store; a rule's id is given apart).
fn parse_window(
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

/// What `schedule = "manual"` says: the daemon never runs the rule.
const MANUAL: &str = "manual";

fn parse_schedule(
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

/// Metrics are for the machine itself; a reverse proxy can publish them.
fn parse_loopback(
    source: &Source,
    text: &Spanned<String>,
    diags: &mut Diagnosed,
) -> Option<std::net::SocketAddr> {
    match text.get_ref().parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_loopback() => Some(addr),
        _ => {
            diags.push(
                source.span_location(Some(text.span())),
                None,
                format!(
                    "metrics_listen {:?} must be a loopback address with a port, e.g. \"127.0.0.1:9187\"",
                    text.get_ref()
                ),
            );
            None
        }
    }
}

fn is_simple_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_rule_id(id: &str) -> bool {
    is_simple_name(id.replace('.', "_").as_str())
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_tz(
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
fn parse_year_end(
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

fn parse_date(
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

fn parse_table(
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

fn bounded(
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

type RawRules = Vec<(Rc<Source>, RawRule)>;

fn parse_rule_file(
    source: &Rc<Source>,
    categories: &mut BTreeMap<String, Category>,
    category_at: &mut HashMap<String, Location>,
    rules: &mut RawRules,
    diags: &mut Diagnosed,
) {
    let root = match DeTable::parse(&source.text) {
        Ok(root) => root.into_inner(),
        Err(err) => {
            diags.push(source.span_location(err.span()), None, err.message());
            return;
        }
    };
    for (key, value) in root.iter() {
        let at = source.span_location(Some(key.span()));
        match key.get_ref().as_ref() {
            "categories" => {
                let Some(table) = value.get_ref().as_table() else {
                    diags.push(at, None, "categories must be a table: [categories.<name>]");
                    continue;
                };
                for (name, body) in table.iter() {
                    let name_at = source.span_location(Some(name.span()));
                    let name = name.get_ref().to_string();
                    match RawCategory::deserialize(ValueDeserializer::from(body.clone())) {
                        Ok(raw) => {
                            if !is_simple_name(&name) {
                                diags.push(name_at.clone(), None, format!("category name {name:?} may hold only letters, digits, '_' and '-'"));
                            }
                            if let Some(first) = category_at.get(&name) {
                                diags.push(name_at, None, format!("category {name} is defined twice; first at {first}"));
                                continue;
                            }
                            category_at.insert(name.clone(), name_at);
                            let mut bound = |text: &Option<Spanned<String>>, what: &str| {
                                text.as_ref().and_then(|text| match text.get_ref().parse::<Period>() {
                                    Ok(period) => Some(period),
                                    Err(err) => {
                                        diags.push(source.span_location(Some(text.span())), None, format!("category {name}: {what}: {err}"));
                                        None
                                    }
                                })
                            };
                            let minimum = bound(&raw.minimum, "minimum");
                            let deadline = bound(&raw.deadline, "deadline");
                            categories.insert(
                                name.clone(),
                                Category {
                                    name,
                                    description: raw.description,
                                    legal_basis: raw.legal_basis,
                                    minimum,
                                    deadline,
                                },
                            );
                        }
                        Err(err) => diags.push(source.span_location(err.span()), None, format!("category {name}: {}", err.message())),
                    }
                }
            }
            "rule" => {
                let DeValue::Array(items) = value.get_ref() else {
                    diags.push(at, None, "rules are an array of tables: write [[rule]]");
                    continue;
                };
                for item in items.iter() {
                    let id = item
                        .get_ref()
                        .as_table()
                        .and_then(|t| t.get("id"))
                        .and_then(|id| id.get_ref().as_str())
                        .map(str::to_string);
                    match RawRule::deserialize(ValueDeserializer::from(item.clone())) {
                        Ok(raw) => rules.push((source.clone(), raw)),
                        Err(err) => diags.push(source.span_location(err.span().or(Some(item.span()))), id.as_deref(), err.message()),
                    }
                }
            }
            other => diags.push(
                at,
                None,
                format!("unknown key {other:?}; a rule file holds [categories.<name>] and [[rule]] tables"),
            ),
        }
    }
}

struct RuleContext<'a> {
    stores: &'a BTreeMap<String, StoreConfig>,
    categories: &'a BTreeMap<String, Category>,
    financial_year_end: Option<u32>,
    calendar: Option<&'a Calendar>,
    default_batch_size: u64,
    default_batch_ms: u64,
    default_pause_ms: u64,
    /// The zone schedules are read in.
    timezone: Tz,
    default_schedule: Option<&'a Schedule>,
    default_lead: Option<TimeDelta>,
    /// Each schedule's longest gap, computed once per load.
    gaps: RefCell<HashMap<String, Option<TimeDelta>>>,
}

fn validate_rule(
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
    if !is_rule_id(&id) {
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
    let table = parse_table(source, &raw.table, rule, diags);
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
    let mut column_name = |name: &Spanned<String>, what: &str| {
        if let Err(err) = check_identifier(name.get_ref()) {
            diags.push(loc(name.span()), rule, format!("{what}: {err}"));
        }
        name.get_ref().clone()
    };
    let hold = raw.hold.as_ref().map(|h| column_name(h, "hold"));
    let joins = related_tables(source, raw.join.as_deref(), RelatedKind::Join, rule, diags);
    let event = event_spec(
        loc(raw.after.span()),
        raw.after.get_ref(),
        &joins,
        rule,
        diags,
    );
    let hold_tables = related_tables(
        source,
        raw.hold_table.as_deref(),
        RelatedKind::Hold,
        rule,
        diags,
    );
    let cascades = related_tables(
        source,
        raw.cascade.as_deref(),
        RelatedKind::Cascade,
        rule,
        diags,
    );

    let period = match raw.retain.get_ref().parse::<Period>() {
        Ok(period) => Some(period),
        Err(err) => {
            diags.push(loc(raw.retain.span()), rule, err);
            None
        }
    };
    // Which days are working days is a deployment fact, like the
    // financial year end: never assumed.
    if period.is_some_and(|p| p.unit == Unit::WorkingDays) && ctx.calendar.is_none() {
        diags.push(
            loc(raw.retain.span()),
            rule,
            "retain counts working days: set holidays = \"DK\" (Danish public holidays are days off) or holidays = \"none\" in glemsel.toml",
        );
    }
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

    let filter = raw.filter.as_ref().map(|filter| {
        if let Err(err) = check_sql_fragment(filter.get_ref()) {
            diags.push(loc(filter.span()), rule, format!("where: {err}"));
        }
        filter.get_ref().clone()
    });

    let mut column_locations = BTreeMap::new();
    let action_name = raw.action.get_ref().as_str();
    let action = match action_name {
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
                    event: event.as_ref(),
                    hold: hold.as_deref(),
                },
                &mut column_locations,
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
    };

    let key = raw.key.as_ref().map(|key| {
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
    });
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
    let max_rows = raw
        .max_rows
        .as_ref()
        .and_then(|m| bounded(source, m, 1, u64::MAX >> 1, "max_rows", rule, diags));
    let batch_size = raw
        .batch_size
        .as_ref()
        .and_then(|b| bounded(source, b, 1, MAX_BATCH_SIZE, "batch_size", rule, diags))
        .unwrap_or(ctx.default_batch_size);
    let batch_ms = raw
        .batch_ms
        .as_ref()
        .and_then(|b| bounded(source, b, 0, MAX_BATCH_MS, "batch_ms", rule, diags))
        .unwrap_or(ctx.default_batch_ms);

    let manual = raw.schedule.as_ref().is_some_and(|s| s.get_ref() == MANUAL);
    let schedule = raw
        .schedule
        .as_ref()
        .filter(|_| !manual)
        .and_then(|s| parse_schedule(source, s, rule, diags));
    let pause_ms = raw
        .pause_ms
        .as_ref()
        .and_then(|p| bounded(source, p, 0, MAX_PAUSE_MS, "pause_ms", rule, diags))
        .unwrap_or(ctx.default_pause_ms);
    let window = match &raw.window {
        Some(text) => parse_window(source, text, ctx.timezone, "", rule, diags),
        None => store_config.and_then(|s| s.window.clone()),
    };
    let zone = store_config.map_or(ctx.timezone, |s| s.time_zone);
    let timing = timing(
        source,
        raw,
        Period0 {
            retention: period.map(|period| Retention {
                period,
                round_up: round_up.clone(),
                calendar: ctx.calendar.cloned().unwrap_or_default(),
            }),
            zone,
        },
        schedule.as_ref(),
        manual,
        ctx,
        diags,
    );
    if let (Some(category), Some(period), Some(timing)) = (
        ctx.categories.get(raw.category.get_ref()),
        period,
        timing.as_ref(),
    ) {
        let retention = Retention {
            period,
            round_up: round_up.clone(),
            calendar: ctx.calendar.cloned().unwrap_or_default(),
        };
        check_category_bounds(
            raw,
            category,
            &retention,
            timing,
            zone,
            loc(raw.category.span()),
            diags,
        );
    }
    if !cascades.is_empty() && raw.action.get_ref() != "delete" {
        diags.push(
            loc(raw.action.span()),
            rule,
            "[[rule.cascade]] applies to action = \"delete\"; pseudonymising or anonymising keeps rows, so their children stay",
        );
    }
    if diags.0.len() > errors_before {
        return None;
    }
    let fingerprint = hex::encode(Sha256::digest(
        serde_json::to_vec(raw).expect("a rule serialises"),
    ));
    Some(Rule {
        id,
        description: raw.description.as_ref().map(|d| d.get_ref().clone()),
        store: store.clone(),
        table: table?,
        category: raw.category.get_ref().clone(),
        event: event?,
        joins: joins
            .into_iter()
            .map(|(join, _)| Join {
                name: join.name,
                related: join.related,
                open: join.open,
            })
            .collect(),
        retention: Retention {
            period: period?,
            round_up,
            calendar: ctx.calendar.cloned().unwrap_or_default(),
        },
        filter,
        hold,
        hold_tables: hold_tables
            .into_iter()
            .map(|(related, filter)| HoldTable {
                name: related.name,
                related: related.related,
                filter,
            })
            .collect(),
        cascades: cascades
            .into_iter()
            .map(|(related, _)| Cascade {
                parent: related.parent,
                related: related.related,
            })
            .collect(),
        action: action?,
        key,
        empty_dates,
        max_rows,
        vacuum_after: raw.vacuum_after.unwrap_or(false),
        batch_size,
        batch_ms,
        schedule,
        manual,
        window,
        pause_ms,
        timing: timing?,
        fingerprint,
        at: RuleLocations {
            rule: rule_at,
            table: loc(raw.table.span()),
            after: loc(raw.after.span()),
            hold: raw.hold.as_ref().map(|h| loc(h.span())),
            filter: raw.filter.as_ref().map(|f| loc(f.span())),
            key: raw.key.as_ref().map(|k| loc(k.span())),
            columns: column_locations,
        },
    })
}

/// What a deadline's lead is checked against: the rule's retention (if
/// it parsed) and the zone its periods are counted in.
struct Period0 {
    retention: Option<Retention>,
    zone: Tz,
}

/// A run may take this long unless the rule says otherwise: a deadline
/// acts early enough for the run after its rows come due to finish.
const DEFAULT_MAX_DURATION: TimeDelta = TimeDelta::hours(1);

/// `kind`, `lead` and `max_duration`: whether the period is a minimum or a
/// deadline, and for a deadline how far ahead of it rows are due.
///
/// A deadline acts ahead by the longest gap between two runs of its
/// schedule plus `max_duration`, so the first run after a row comes due
/// finishes before the row's deadline. Without a schedule (a timer, or by
/// hand) the rule or the config must say `lead`; a `lead` next to a
/// schedule may be longer than the schedule needs, never shorter. A
/// period shorter than the lead cannot be met at all: refused.
fn timing(
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
    let kind_at = raw
        .kind
        .as_ref()
        .map_or(loc(raw.id.span()), |k| loc(k.span()));
    if kind == PeriodKind::Minimum {
        if let Some(lead) = &raw.lead {
            diags.push(
                loc(lead.span()),
                rule,
                "lead applies to kind = \"deadline\": a minimum never goes early",
            );
        }
        // How soon after coming due a minimum's row is gone, for a
        // category's deadline: the schedule's, else the config's lead.
        let settle = match gap {
            Some(gap) => gap.map(|gap| gap + max_duration),
            None => ctx.default_lead,
        };
        return (diags.0.len() == errors_before).then(|| timing(TimeDelta::zero(), None, settle));
    }
    let needed = match (schedule, gap) {
        (None, _) | (_, None) => None,
        (Some(schedule), Some(gap)) => match gap {
            Some(gap) => Some((
                gap + max_duration,
                format!(
                    "schedule \"{schedule}\" leaves up to {} between runs, + max_duration {}",
                    describe_duration(gap),
                    describe_duration(max_duration)
                ),
            )),
            None => {
                diags.push(
                        kind_at.clone(),
                        rule,
                        format!("kind = \"deadline\": schedule \"{schedule}\" stops running within the next 400 days, so nothing would meet the deadline after it"),
                    );
                return None;
            }
        },
    };
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
    let (lead, reason) = match (given, needed) {
        (Some((lead, _)), Some((needed, why))) if lead < needed => {
            diags.push(
                raw.lead.as_ref().map_or(kind_at.clone(), |l| loc(l.span())),
                rule,
                format!(
                    "lead {} is shorter than the schedule needs: {why}, {} in all; a row that came due just after a run would be gone only after its deadline",
                    describe_duration(lead),
                    describe_duration(needed)
                ),
            );
            return None;
        }
        (Some(given), _) => given,
        (None, Some(needed)) => needed,
        (None, None) => {
            diags.push(
                kind_at,
                rule,
                "kind = \"deadline\" needs to know how often glemsel runs, to act early enough: set schedule (in the rule, or a default in glemsel.toml) or, for a timer or runs by hand, lead = \"<how long before the deadline rows must go>\"",
            );
            return None;
        }
    };
    if let Some(retention) = &period.retention {
        let shortest = retention.shortest_span(period.zone);
        if shortest < lead {
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
            return None;
        }
    }
    Some(timing(lead, Some(reason), settle))
}

/// A category's minimum and deadline, one level up from a rule's own
/// `kind`: no rule of the category may let its data go before the
/// category's minimum has passed since the rule's event (counting the
/// rule's lead), nor keep it past the category's deadline (counting how
/// long after coming due a row is gone at the latest).
fn check_category_bounds(
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

/// A length of time (`lead`, `max_duration`): more than nothing, at most
/// a year.
fn parse_span(
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

/// What the columns of an in-place action may not be.
struct ColumnRules<'a> {
    anonymise: bool,
    event: Option<&'a EventSpec>,
    hold: Option<&'a str>,
}

/// `columns = { ... }` of a pseudonymise or anonymise rule, each action
/// read and checked; `None` when they are missing or empty.
fn column_actions(
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
enum RelatedKind {
    Join,
    Hold,
    Cascade,
}

impl RelatedKind {
    fn key(self) -> &'static str {
        match self {
            RelatedKind::Join => "[[rule.join]]",
            RelatedKind::Hold => "[[rule.hold_table]]",
            RelatedKind::Cascade => "[[rule.cascade]]",
        }
    }
}

/// A validated related table, with the parts only some kinds take.
struct RelatedParts {
    name: String,
    related: Related,
    open: Option<String>,
    parent: Option<TableRef>,
}

/// Validates `[[rule.join]]`, `[[rule.hold_table]]` or `[[rule.cascade]]`
/// entries; returns them with their `where` (hold tables) or `open` (joins).
fn related_tables(
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
        if kind != RelatedKind::Join && entry.name.is_some() {
            diags.push(
                at.clone(),
                rule,
                format!("{what}: name applies only to [[rule.join]]"),
            );
        }
        if kind != RelatedKind::Join && entry.open.is_some() {
            diags.push(
                at.clone(),
                rule,
                format!("{what}: open applies only to [[rule.join]]"),
            );
        }
        if kind != RelatedKind::Hold && entry.filter.is_some() {
            diags.push(
                at.clone(),
                rule,
                format!("{what}: where applies only to [[rule.hold_table]]"),
            );
        }
        if kind != RelatedKind::Cascade && entry.parent.is_some() {
            diags.push(
                at.clone(),
                rule,
                format!("{what}: parent applies only to [[rule.cascade]]"),
            );
        }
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
        let mut fragment = |text: &Option<Spanned<String>>, key: &str| {
            text.as_ref().map(|text| {
                if let Err(err) = check_sql_fragment(text.get_ref()) {
                    diags.push(
                        source.span_location(Some(text.span())),
                        rule,
                        format!("{what}: {key}: {err}"),
                    );
                }
                text.get_ref().clone()
            })
        };
        let open = fragment(&entry.open, "open");
        let filter = fragment(&entry.filter, "where");
        let parent = match &entry.parent {
            None => None,
            Some(parent) => match parent.parse::<TableRef>() {
                Ok(parent) if out.iter().any(|(r, _)| r.related.table == parent) => Some(parent),
                _ => {
                    diags.push(
                        at.clone(),
                        rule,
                        format!("{what}: parent {parent:?} must be a cascade table declared before this one"),
                    );
                    None
                }
            },
        };
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
        out.push((
            RelatedParts {
                name,
                related: Related {
                    table,
                    on: entry
                        .on
                        .iter()
                        .map(|(t, o)| (t.clone(), o.clone()))
                        .collect(),
                    at,
                },
                open,
                parent,
            },
            filter,
        ));
    }
    out
}

/// `after` with its sources resolved against the declared joins.
fn event_spec(
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

    struct Files(tempfile::TempDir);

    impl Files {
        fn new(config: &str, rules: &[(&str, &str)]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("glemsel.toml"), config).unwrap();
            std::fs::create_dir(dir.path().join("rules")).unwrap();
            for (name, text) in rules {
                std::fs::write(dir.path().join("rules").join(name), text).unwrap();
            }
            Files(dir)
        }

        fn load(&self) -> Result<Policy, Diagnostics> {
            load(&self.0.path().join("glemsel.toml"))
        }

        fn errors(&self) -> Vec<String> {
            let dir = format!("{}/", self.0.path().display());
            self.load()
                .expect_err("expected errors")
                .0
                .iter()
                .map(|d| d.to_string().replace(&dir, ""))
                .collect()
        }
    }

    const CONFIG: &str = r#"
timezone = "Europe/Copenhagen"
financial_year_end = "06-30"
key_file = "hmac-key"

[stores.crm]
engine = "postgres"
url_env = "CRM_DATABASE_URL"
empty_dates = ["1753-01-01"]
"#;

    const CATEGORY: &str = r#"
[categories.customer_contact]
description = "Name, address, phone, e-mail of customers"
legal_basis = "contract"
"#;

    fn rule(body: &str) -> String {
        format!("{CATEGORY}\n[[rule]]\n{body}")
    }

    const GOOD_RULE: &str = r#"id = "crm-contacts"
store = "crm"
table = "public.contacts"
category = "customer_contact"
after = "contract_ended_at"
retain = "36 months"
round_up_to = "financial_year_end"
where = "status = 'closed'"
hold = "legal_hold"
action = "pseudonymise"
columns = { email = "hmac_email", name = "hmac", phone = "null", note = "redact" }
max_rows = 500000
"#;

    #[test]
    fn loads_a_valid_policy() {
        let files = Files::new(CONFIG, &[("crm.toml", &rule(GOOD_RULE))]);
        let policy = files.load().unwrap();
        assert_eq!(policy.rules.len(), 1);
        let rule = &policy.rules[0];
        assert_eq!(rule.table, TableRef::new(Some("public"), "contacts"));
        assert_eq!(
            rule.retention.to_string(),
            "36 months from the end of the financial year (06-30)"
        );
        assert_eq!(
            rule.empty_dates,
            vec![NaiveDate::from_ymd_opt(1753, 1, 1).unwrap()]
        );
        assert_eq!(rule.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(rule.at.rule.line, 7);
        let Action::Pseudonymise { columns } = &rule.action else {
            panic!()
        };
        assert_eq!(columns.len(), 4);
        assert_eq!(policy.stores["crm"].audit_table.name, "glemsel_audit");
        assert_eq!(
            policy.settings.key.as_ref().unwrap(),
            &SecretSource::File(files.0.path().join("hmac-key"))
        );
    }

    #[test]
    fn the_fingerprint_ignores_layout_but_not_meaning() {
        let a = Files::new(CONFIG, &[("crm.toml", &rule(GOOD_RULE))])
            .load()
            .unwrap();
        let relaid = GOOD_RULE.replace("max_rows = 500000", "# a comment\nmax_rows   =   500000");
        let b = Files::new(CONFIG, &[("crm.toml", &rule(&relaid))])
            .load()
            .unwrap();
        let changed = GOOD_RULE.replace("36 months", "37 months");
        let c = Files::new(CONFIG, &[("crm.toml", &rule(&changed))])
            .load()
            .unwrap();
        assert_eq!(a.rules[0].fingerprint, b.rules[0].fingerprint);
        assert_ne!(a.rules[0].fingerprint, c.rules[0].fingerprint);
    }

    #[test]
    fn collects_every_error_with_location_and_rule() {
        let second = r#"
[[rule]]
id = "bad-two"
store = "nowhere"
table = "a.b.c"
category = "customer_contact"
after = "created"
retain = "12 fortnights"
action = "delete"
columns = { x = "hmac" }
"#;
        let text = rule(&GOOD_RULE.replace("\"hmac_email\"", "\"md5\"")) + second;
        let errors = Files::new(CONFIG, &[("crm.toml", &text)]).errors();
        assert_eq!(
            errors,
            vec![
                "rules/crm.toml:17:21: rule crm-contacts: unknown column action \"md5\"; use hmac, hmac_email, null, redact, year, month, ip_prefix or prefix:N",
                "rules/crm.toml:22:9: rule bad-two: unknown store \"nowhere\"; glemsel.toml defines: crm",
                "rules/crm.toml:23:9: rule bad-two: table \"a.b.c\" has more than two parts; write schema.table, quoting a part that holds a dot",
                "rules/crm.toml:26:10: rule bad-two: unknown unit \"fortnights\" in period \"12 fortnights\"; use days, working days, weeks, months or years",
                "rules/crm.toml:28:11: rule bad-two: columns apply only to action = \"pseudonymise\" or \"anonymise\"; a delete removes whole rows",
            ]
        );
    }

    #[test]
    fn unknown_keys_are_errors_and_other_rules_still_checked() {
        let text = rule(&GOOD_RULE.replace("max_rows", "max_row"))
            + "\n[[rule]]\nid = \"second\"\nstore = \"crm\"\n";
        let errors = Files::new(CONFIG, &[("crm.toml", &text)]).errors();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0]
                .starts_with("rules/crm.toml:18:1: rule crm-contacts: unknown field `max_row`"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("rule second: missing field"),
            "{errors:?}"
        );
    }

    #[test]
    fn config_errors() {
        let config = r#"
financial_year_end = "06-15"
batch_size = 0

[stores.crm]
engine = "oracle"
url = "postgres://user:secret@db/crm"
"#;
        let errors = Files::new(config, &[]).errors();
        let joined = errors.join("\n");
        assert!(joined.contains("timezone is missing"), "{joined}");
        assert!(
            joined.contains("glemsel.toml:2:22: financial_year_end \"06-15\" must be"),
            "{joined}"
        );
        assert!(
            joined.contains("glemsel.toml:3:14: batch_size must be between 1 and 1000000"),
            "{joined}"
        );
        assert!(joined.contains("unknown engine \"oracle\""), "{joined}");
        assert!(
            joined.contains("an inline url would put a password in the config"),
            "{joined}"
        );
        assert!(
            !joined.contains("secret"),
            "the password must not be echoed: {joined}"
        );
    }

    #[test]
    fn tls_settings() {
        let with = |store: &str| {
            CONFIG.replace(
                "url_env = \"CRM_DATABASE_URL\"",
                &format!("url_env = \"CRM_DATABASE_URL\"\n{store}"),
            )
        };
        let files = Files::new(
            &with("tls = \"verify-full\"\nca_file = \"certs/ca.pem\""),
            &[],
        );
        let policy = files.load().unwrap();
        assert_eq!(
            policy.stores["crm"].tls,
            Tls::VerifyFull {
                ca_file: files.0.path().join("certs/ca.pem")
            }
        );
        let plain = Files::new(CONFIG, &[]).load().unwrap();
        assert_eq!(plain.stores["crm"].tls, Tls::Disable, "today's default");
        for (store, expected) in [
            (
                "tls = \"verify-full\"",
                "glemsel.toml:9:7: store crm: tls = \"verify-full\" needs ca_file",
            ),
            (
                "tls = \"require\"\nca_file = \"ca.pem\"",
                "glemsel.toml:10:11: store crm: ca_file is used only with tls = \"verify-full\"",
            ),
            (
                "tls = \"verify-ca\"",
                "glemsel.toml:9:7: store crm: tls must be \"disable\", \"require\" or \"verify-full\", not \"verify-ca\"",
            ),
        ] {
            let errors = Files::new(&with(store), &[]).errors();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].starts_with(expected), "{errors:?}");
        }
        let sqlite = "[stores.local]\nengine = \"sqlite\"\npath = \"x.db\"\ntls = \"require\"\n";
        let errors = Files::new(&format!("{CONFIG}{sqlite}"), &[]).errors();
        assert!(
            errors[0].ends_with(
                "store local: an sqlite store is a local file; it takes no tls or ca_file"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn duplicate_ids_and_missing_key_file() {
        let config = CONFIG.replace("key_file = \"hmac-key\"\n", "");
        let text = rule(GOOD_RULE) + "\n[[rule]]\n" + GOOD_RULE;
        let errors = Files::new(&config, &[("crm.toml", &text)]).errors();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("no key: some rules pseudonymise")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.starts_with("rules/crm.toml:21:6: rule crm-contacts: duplicate rule id; first defined at rules/crm.toml:7:6")), "{errors:?}");
    }

    #[test]
    fn financial_rounding_needs_a_year_end() {
        let config = CONFIG.replace("financial_year_end = \"06-30\"\n", "");
        let errors = Files::new(&config, &[("crm.toml", &rule(GOOD_RULE))]).errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("needs financial_year_end"), "{errors:?}");
        let with_rule_end =
            GOOD_RULE.replace("round_up_to", "financial_year_end = \"12-31\"\nround_up_to");
        let policy = Files::new(&config, &[("crm.toml", &rule(&with_rule_end))])
            .load()
            .unwrap();
        assert_eq!(
            policy.rules[0].retention.round_up,
            vec![RoundUp::FinancialYearEnd { end_month: 12 }]
        );
    }

    /// "The end of the calendar year in which the financial year ends":
    /// a list, applied in order, with the deployment's year end.
    #[test]
    fn chained_rounding_with_the_deployments_year_end() {
        let chained = GOOD_RULE.replace(
            "round_up_to = \"financial_year_end\"",
            "round_up_to = [\"financial_year_end\", \"calendar_year_end\"]",
        );
        let at = |text: &str| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .unwrap()
                .and_time(chrono::NaiveTime::MIN)
        };
        for (year_end, due) in [("06-30", "2028-01-01"), ("12-31", "2027-01-01")] {
            let config = CONFIG.replace("06-30", year_end);
            let policy = Files::new(&config, &[("crm.toml", &rule(&chained))])
                .load()
                .unwrap();
            let retention = &policy.rules[0].retention;
            assert_eq!(retention.round_up.len(), 2);
            assert_eq!(retention.round_up[1], RoundUp::CalendarYearEnd);
            let seven_years = Retention {
                period: "7 years".parse().unwrap(),
                ..retention.clone()
            };
            assert_eq!(seven_years.due_at(at("2019-08-10")), at(due), "{year_end}");
        }
    }

    #[test]
    fn holidays_and_closing_days() {
        let working = GOOD_RULE.replace("36 months", "3 working days");
        let config = CONFIG.replace(
            "key_file",
            "holidays = \"DK\"\nclosing_days = [\"2026-12-31\", \"2026-12-24\"]\nkey_file",
        );
        let policy = Files::new(&config, &[("crm.toml", &rule(&working))])
            .load()
            .unwrap();
        let calendar = &policy.rules[0].retention.calendar;
        assert_eq!(calendar.holidays, Holidays::Denmark);
        assert_eq!(
            calendar.closing_days,
            [
                NaiveDate::from_ymd_opt(2026, 12, 24).unwrap(),
                NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
            ]
        );
        assert_eq!(policy.settings.calendar.as_ref(), Some(calendar));
        // "none": weekends only, stated.
        let none = CONFIG.replace("key_file", "holidays = \"none\"\nkey_file");
        let policy = Files::new(&none, &[("crm.toml", &rule(&working))])
            .load()
            .unwrap();
        assert_eq!(policy.rules[0].retention.calendar, Calendar::default());
    }

    #[test]
    fn holiday_errors() {
        let working = GOOD_RULE.replace("36 months", "3 working days");
        // A rule counting working days needs the config to say which days.
        let errors = Files::new(CONFIG, &[("crm.toml", &rule(&working))]).errors();
        assert_eq!(
            errors,
            [
                "rules/crm.toml:12:10: rule crm-contacts: retain counts working days: set holidays = \"DK\" (Danish public holidays are days off) or holidays = \"none\" in glemsel.toml"
            ]
        );
        // Rules in months need nothing.
        assert!(
            Files::new(CONFIG, &[("crm.toml", &rule(GOOD_RULE))])
                .load()
                .is_ok()
        );
        let config = CONFIG.replace(
            "key_file",
            "holidays = \"SE\"\nclosing_days = [\"2026-12-24\", \"24-12-2026\"]\nkey_file",
        );
        let errors = Files::new(&config, &[("crm.toml", &rule(GOOD_RULE))]).errors();
        assert_eq!(
            errors,
            [
                "glemsel.toml:4:12: holidays \"SE\" is not known; use \"DK\" (Danish public holidays) or \"none\" (only weekends and closing_days)",
                "glemsel.toml:5:31: \"24-12-2026\" is not a date; write \"YYYY-MM-DD\"",
            ]
        );
        let config = CONFIG.replace("key_file", "closing_days = [\"2026-12-24\"]\nkey_file");
        let errors = Files::new(&config, &[("crm.toml", &rule(GOOD_RULE))]).errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("glemsel.toml:1:1: closing_days needs holidays"),
            "{errors:?}"
        );
    }

    #[test]
    fn anonymise_refuses_keyed_tokens() {
        let anonymise = GOOD_RULE
            .replace("action = \"pseudonymise\"", "action = \"anonymise\"")
            .replace(
                "columns = { email = \"hmac_email\", name = \"hmac\", phone = \"null\", note = \"redact\" }",
                "columns = { email = \"hmac_email\", name = \"redact\", phone = \"null\", born = \"year\", ip = \"ip_prefix\", zip = \"prefix:2\" }",
            );
        let errors = Files::new(CONFIG, &[("crm.toml", &rule(&anonymise))]).errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("rules/crm.toml:17:21: rule crm-contacts: column \"email\": hmac_email writes a keyed token, which whoever holds the key can recompute from a guessed value: pseudonymised data"),
            "{errors:?}"
        );
        let fixed = anonymise.replace("email = \"hmac_email\"", "email = \"null\"");
        let policy = Files::new(CONFIG, &[("crm.toml", &rule(&fixed))])
            .load()
            .unwrap();
        let loaded = &policy.rules[0];
        assert_eq!(loaded.action.as_str(), "anonymise");
        assert!(!loaded.needs_key());
        assert_eq!(
            loaded
                .action
                .columns()
                .unwrap()
                .iter()
                .map(|(c, a)| format!("{c}={a}"))
                .collect::<Vec<_>>(),
            [
                "born=year",
                "email=null",
                "ip=ip_prefix",
                "name=redact",
                "phone=null",
                "zip=prefix:2"
            ]
        );
        // Anonymising rules alone need no key.
        let no_key = CONFIG.replace("key_file = \"hmac-key\"\n", "");
        assert!(
            Files::new(&no_key, &[("crm.toml", &rule(&fixed))])
                .load()
                .is_ok()
        );
        let bad = fixed.replace("\"prefix:2\"", "\"prefix:0\"");
        let errors = Files::new(CONFIG, &[("crm.toml", &rule(&bad))]).errors();
        assert!(
            errors[0].contains("prefix:N keeps the first N characters"),
            "{errors:?}"
        );
    }

    const DAILY: &str = "schedule = \"0 30 2 * * *\"\n";

    /// The test config with more top-level keys.
    fn config_with(extra: &str) -> String {
        CONFIG.replace("key_file", &format!("{extra}key_file"))
    }

    fn deadline(period: &str, extra: &str) -> String {
        rule(&GOOD_RULE.replace(
            "retain = \"36 months\"",
            &format!("retain = \"{period}\"\nkind = \"deadline\"\n{extra}"),
        ))
    }

    #[test]
    fn a_minimum_never_goes_early() {
        let policy = Files::new(&config_with(DAILY), &[("crm.toml", &rule(GOOD_RULE))])
            .load()
            .unwrap();
        let timing = &policy.rules[0].timing;
        assert_eq!(timing.kind, PeriodKind::Minimum);
        assert_eq!(timing.lead, TimeDelta::zero());
        assert_eq!(timing.max_duration, TimeDelta::hours(1));
        // A lead on a minimum is a mistake, said so.
        let text = rule(&GOOD_RULE.replace("retain", "lead = \"1 day\"\nretain"));
        let errors = Files::new(CONFIG, &[("crm.toml", &text)]).errors();
        assert_eq!(
            errors,
            [
                "rules/crm.toml:12:8: rule crm-contacts: lead applies to kind = \"deadline\": a minimum never goes early"
            ]
        );
    }

    /// The config's schedule: daily at 02:30 in Copenhagen, 25 hours apart
    /// at most (the autumn change), plus the default hour for the run.
    #[test]
    fn a_deadline_acts_a_schedule_gap_ahead() {
        let config = config_with(DAILY);
        let policy = Files::new(&config, &[("crm.toml", &deadline("30 days", ""))])
            .load()
            .unwrap();
        let timing = &policy.rules[0].timing;
        assert_eq!(timing.kind, PeriodKind::Deadline);
        assert_eq!(timing.lead, TimeDelta::hours(26));
        assert_eq!(
            timing.lead_reason.as_deref(),
            Some(
                "schedule \"0 30 2 * * *\" leaves up to 25 hours between runs, + max_duration 1 hour"
            )
        );
        // The rule's own schedule and max_duration count instead.
        let own = deadline(
            "30 days",
            "schedule = \"0 0 */6 * * *\"\nmax_duration = \"30 minutes\"\n",
        );
        let policy = Files::new(&config, &[("crm.toml", &own)]).load().unwrap();
        assert_eq!(
            policy.rules[0].timing.lead,
            TimeDelta::hours(7) + TimeDelta::minutes(30)
        );
        // A longer lead than the schedule needs is allowed; a shorter one is not.
        let longer = deadline("30 days", "lead = \"2 days\"\n");
        let policy = Files::new(&config, &[("crm.toml", &longer)])
            .load()
            .unwrap();
        assert_eq!(policy.rules[0].timing.lead, TimeDelta::days(2));
        let shorter = deadline("30 days", "lead = \"1 day\"\n");
        let errors = Files::new(&config, &[("crm.toml", &shorter)]).errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("lead 24 hours is shorter than the schedule needs: schedule \"0 30 2 * * *\" leaves up to 25 hours between runs, + max_duration 1 hour, 26 hours in all"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_deadline_without_a_schedule_needs_a_lead() {
        let errors = Files::new(CONFIG, &[("crm.toml", &deadline("30 days", ""))]).errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("rules/crm.toml:13:8: rule crm-contacts: kind = \"deadline\" needs to know how often glemsel runs"),
            "{errors:?}"
        );
        // A timer's lead, in the rule or in glemsel.toml.
        let policy = Files::new(
            CONFIG,
            &[("crm.toml", &deadline("30 days", "lead = \"1 day\"\n"))],
        )
        .load()
        .unwrap();
        assert_eq!(policy.rules[0].timing.lead, TimeDelta::days(1));
        let config = config_with("lead = \"2 days\"\n");
        let policy = Files::new(&config, &[("crm.toml", &deadline("30 days", ""))])
            .load()
            .unwrap();
        assert_eq!(policy.rules[0].timing.lead, TimeDelta::days(2));
        assert_eq!(
            policy.rules[0].timing.lead_reason.as_deref(),
            Some("lead = \"2 days\" in glemsel.toml")
        );
    }

    #[test]
    fn check_refuses_a_schedule_too_sparse_for_the_deadline() {
        let config = CONFIG.replace("key_file", "holidays = \"DK\"\nkey_file");
        // Weekly runs cannot keep "within 3 working days".
        let weekly = deadline("3 working days", "schedule = \"0 30 2 * * MON\"\n");
        let errors = Files::new(&config, &[("crm.toml", &weekly)]).errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("kind = \"deadline\": retain \"3 working days\" can end 3 days after its event, but the rule must act 7 days 2 hours ahead"),
            "{errors:?}"
        );
        assert!(
            errors[0].contains("the schedule is too sparse to meet it"),
            "{errors:?}"
        );
        // Daily runs can.
        let daily = deadline("3 working days", DAILY);
        assert!(Files::new(&config, &[("crm.toml", &daily)]).load().is_ok());
        // Nothing meets a deadline of no time at all.
        let errors = Files::new(
            &config_with(DAILY),
            &[("crm.toml", &deadline("0 days", ""))],
        )
        .errors();
        assert!(
            errors[0].contains("can end 0 minutes after its event"),
            "{errors:?}"
        );
        // A schedule that stops cannot keep a deadline either.
        let ending = deadline("30 days", "schedule = \"0 30 2 * * * 2026\"\n");
        let errors = Files::new(CONFIG, &[("crm.toml", &ending)]).errors();
        assert!(errors[0].contains("stops running"), "{errors:?}");
        let errors = Files::new(
            CONFIG,
            &[(
                "crm.toml",
                &rule(&GOOD_RULE.replace("retain", "kind = \"maximum\"\nretain")),
            )],
        )
        .errors();
        assert!(
            errors[0].contains("kind \"maximum\" is not known"),
            "{errors:?}"
        );
    }

    /// A category's minimum and deadline bound every rule of it: the same
    /// kinds of promise, one level up.
    #[test]
    fn categories_have_floors_and_ceilings() {
        let config = config_with(DAILY);
        let category = |bounds: &str| {
            CATEGORY.replace(
                "legal_basis = \"contract\"",
                &format!("legal_basis = \"contract\"\n{bounds}"),
            )
        };
        let file = |bounds: &str, body: &str| format!("{}\n[[rule]]\n{body}", category(bounds));
        // 36 months from the end of the financial year never goes before
        // 36 months, and a deadline of 36 months stays within them.
        let fine = file("minimum = \"36 months\"", GOOD_RULE);
        assert!(Files::new(&config, &[("crm.toml", &fine)]).load().is_ok());
        let fine = file(
            "deadline = \"36 months\"",
            &GOOD_RULE.replace(
                "retain = \"36 months\"\nround_up_to = \"financial_year_end\"",
                "retain = \"36 months\"\nkind = \"deadline\"",
            ),
        );
        assert!(Files::new(&config, &[("crm.toml", &fine)]).load().is_ok());
        // A rule shorter than the category's floor is refused...
        let short = file(
            "minimum = \"5 years\"",
            &GOOD_RULE.replace("round_up_to = \"financial_year_end\"\n", ""),
        );
        let errors = Files::new(&config, &[("crm.toml", &short)]).errors();
        assert_eq!(
            errors,
            [
                "rules/crm.toml:11:12: rule crm-contacts: category customer_contact keeps its data at least 5 years (minimum), but this rule's data could go sooner: an event at 2024-01-01 00:00 would be due at 2027-01-01 00:00, before 2029-01-01 00:00"
            ]
        );
        // ...and so is a minimum that reaches the ceiling only at a run
        // after it: it should be a deadline.
        let late = file(
            "deadline = \"36 months\"",
            &GOOD_RULE.replace("round_up_to = \"financial_year_end\"\n", ""),
        );
        let errors = Files::new(&config, &[("crm.toml", &late)]).errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("category customer_contact has its data gone within 36 months (deadline), but this rule's could stay longer: an event at 2024-01-01 00:00 would be gone only by 2027-01-02 02:00, after 2027-01-01 00:00; should the rule be kind = \"deadline\"?"),
            "{errors:?}"
        );
        // Without a schedule nobody knows when a minimum's rows go.
        let errors = Files::new(CONFIG, &[("crm.toml", &late)]).errors();
        assert!(
            errors[0].contains("nothing says how often this rule runs"),
            "{errors:?}"
        );
        let errors = Files::new(
            CONFIG,
            &[("crm.toml", &file("minimum = \"soon\"", GOOD_RULE))],
        )
        .errors();
        assert!(
            errors[0].contains(
                "category customer_contact: minimum: period \"soon\" must start with a whole number"
            ),
            "{errors:?}"
        );
    }

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
        // A NAV name with '$' inside quotes is fine.
        assert!(check_sql_fragment("\"CRONUS$Blocked\" = 0 AND `a$b` = 1").is_ok());
    }
}
