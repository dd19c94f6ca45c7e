//! The deployment config (`glemsel.toml`): settings, the calendar, the
//! stores with their connections and TLS, and the coverage allow-list.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::NaiveDate;
use chrono_tz::Tz;
use toml::Spanned;

use super::raw::{RawConfig, RawStore};
use super::source::Source;
use super::{Connection, Engine, Location, SecretSource, Settings, StoreConfig, TableRef, Tls};
use crate::period::{Calendar, Holidays};

use super::parse::{
    Diagnosed, MAX_BATCH_MS, MAX_BATCH_SIZE, MAX_PAUSE_MS, bounded, is_simple_name, parse_date,
    parse_schedule, parse_span, parse_table, parse_tz, parse_window, parse_year_end, resolve,
};

pub(super) const DEFAULT_BATCH_SIZE: u64 = 10_000;

/// Short enough that an application waiting on a row lock barely notices,
/// long enough that commits are a small share of the work.
pub(super) const DEFAULT_BATCH_MS: u64 = 100;

pub(super) const DEFAULT_LOCK_TIMEOUT_MS: u64 = 2_000;

/// Fifteen minutes: a count of a large table may take minutes, but no
/// statement of glemsel's should hold a snapshot for hours.
pub(super) const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 900_000;

/// Five minutes: NTP keeps healthy clocks within milliseconds.
pub(super) const DEFAULT_MAX_CLOCK_SKEW_MS: u64 = 300_000;

/// Half an hour: a load that stays high that long will not fall in time
/// for this run; the next one finds the rest.
const DEFAULT_MAX_PAUSE_MS: u64 = 1_800_000;

pub(super) fn settings(
    source: &Source,
    raw: &RawConfig,
    base: &Path,
    diags: &mut Diagnosed,
) -> (Settings, Option<u32>) {
    let timezone = timezone(source, raw, diags);
    let financial_year_end = raw
        .financial_year_end
        .as_ref()
        .and_then(|fye| parse_year_end(source, fye, None, diags));
    let [
        batch_size,
        batch_ms,
        lock_timeout_ms,
        statement_timeout_ms,
        copies_max_log_days,
        max_clock_skew_ms,
        pause_ms,
        max_pause_ms,
    ] = numbers(source, raw, diags);
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
        pause_ms,
        max_pause: Duration::from_millis(max_pause_ms),
        coverage_allow: Vec::new(),
        erasure_store: raw.erasure_store.as_ref().map(|s| s.get_ref().clone()),
        erasure_ledger: raw
            .erasure_ledger
            .as_ref()
            .map(|l| resolve(base, l.get_ref())),
    };
    // The audit table default is read per store; validate the global one here.
    if let Some(table) = &raw.audit_table {
        parse_table(source, table, None, diags);
    }
    (settings, financial_year_end)
}

/// The config's zone; a missing one is reported and UTC stands in, so the
/// rest of the file is still checked.
fn timezone(source: &Source, raw: &RawConfig, diags: &mut Diagnosed) -> Tz {
    match &raw.timezone {
        Some(tz) => parse_tz(source, tz, None, diags),
        None => {
            diags.push(
                Location::file_start(&source.path),
                None,
                "timezone is missing; set it, for example timezone = \"Europe/Copenhagen\"",
            );
            Tz::UTC
        }
    }
}

/// The config's bounded numbers, in the order `settings` destructures
/// them: each within its range, or its default when unset.
fn numbers(source: &Source, raw: &RawConfig, diags: &mut Diagnosed) -> [u64; 8] {
    [
        (
            &raw.batch_size,
            1,
            MAX_BATCH_SIZE,
            "batch_size",
            DEFAULT_BATCH_SIZE,
        ),
        (&raw.batch_ms, 0, MAX_BATCH_MS, "batch_ms", DEFAULT_BATCH_MS),
        (
            &raw.lock_timeout_ms,
            1,
            600_000,
            "lock_timeout_ms",
            DEFAULT_LOCK_TIMEOUT_MS,
        ),
        (
            &raw.statement_timeout_ms,
            1_000,
            86_400_000,
            "statement_timeout_ms",
            DEFAULT_STATEMENT_TIMEOUT_MS,
        ),
        (
            &raw.copies_max_log_days,
            0,
            36_500,
            "copies_max_log_days",
            30,
        ),
        (
            &raw.max_clock_skew_ms,
            0,
            86_400_000,
            "max_clock_skew_ms",
            DEFAULT_MAX_CLOCK_SKEW_MS,
        ),
        (&raw.pause_ms, 0, MAX_PAUSE_MS, "pause_ms", 0),
        (
            &raw.max_pause_ms,
            1_000,
            86_400_000,
            "max_pause_ms",
            DEFAULT_MAX_PAUSE_MS,
        ),
    ]
    .map(|(value, min, max, what, default)| {
        value
            .as_ref()
            .and_then(|v| bounded(source, v, min, max, what, None, diags))
            .unwrap_or(default)
    })
}

/// `holidays` and `closing_days`: which days are working days. Unset when
/// neither is given; closing days alone need `holidays` to say whose
/// public holidays (if any) come on top.
pub(super) fn calendar(
    source: &Source,
    raw: &RawConfig,
    diags: &mut Diagnosed,
) -> Option<Calendar> {
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

pub(super) fn stores(
    source: &Source,
    raw: BTreeMap<String, Spanned<RawStore>>,
    base: &Path,
    settings: &Settings,
    default_audit: &str,
    diags: &mut Diagnosed,
) -> BTreeMap<String, StoreConfig> {
    if raw.is_empty() {
        diags.push(
            Location::file_start(&source.path),
            None,
            "no stores are defined; add a [stores.<name>] table",
        );
    }
    raw.into_iter()
        .filter_map(|(name, spanned)| {
            store(source, name, spanned, base, settings, default_audit, diags)
        })
        .map(|store| (store.name.clone(), store))
        .collect()
}

/// One `[stores.<name>]`. Every problem in it is reported; the store is
/// kept only when its engine, connection and audit table are known.
fn store(
    source: &Source,
    name: String,
    spanned: Spanned<RawStore>,
    base: &Path,
    settings: &Settings,
    default_audit: &str,
    diags: &mut Diagnosed,
) -> Option<StoreConfig> {
    let at = source.span_location(Some(spanned.span()));
    let store = spanned.into_inner();
    if !is_simple_name(&name) {
        diags.push(
            at.clone(),
            None,
            format!("store name {name:?} may hold only letters, digits, '_' and '-'"),
        );
    }
    let engine = store_engine(source, &name, &store, diags);
    let connection = store_connection(source, &name, engine, &store, base, &at, diags);
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
        let what = format!("store {name}: max_load");
        bounded(source, m, 1, 100_000, &what, None, diags)
    });
    let max_lag = store_max_lag(source, &name, &store, diags);
    let replica_connections: Vec<Connection> = store
        .replicas
        .iter()
        .flatten()
        .filter_map(|replica| replica_connection(source, &name, replica, base, diags))
        .collect();
    check_load_limits(source, &name, engine, &store, &at, diags);
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
    let (engine, connection, audit_table) = (engine?, connection?, audit_table?);
    let mut primary = StoreConfig {
        name,
        engine,
        connection,
        audit_table,
        time_zone,
        empty_dates,
        tls,
        window,
        max_load,
        replicas: Vec::new(),
        max_lag,
        location: at,
    };
    primary.replicas = replicas_of(&primary, replica_connections);
    Some(primary)
}

/// A replica is reached as its store is, but at its own URL; its name
/// says whose it is, never where it is.
fn replicas_of(primary: &StoreConfig, connections: Vec<Connection>) -> Vec<StoreConfig> {
    connections
        .into_iter()
        .enumerate()
        .map(|(index, connection)| StoreConfig {
            name: format!("{} replica {}", primary.name, index + 1),
            engine: primary.engine,
            connection,
            audit_table: primary.audit_table.clone(),
            time_zone: primary.time_zone,
            empty_dates: Vec::new(),
            tls: primary.tls.clone(),
            window: None,
            max_load: None,
            replicas: Vec::new(),
            max_lag: None,
            location: primary.location.clone(),
        })
        .collect()
}

/// A store's `engine`, under any of the names its users call it.
fn store_engine(
    source: &Source,
    name: &str,
    store: &RawStore,
    diags: &mut Diagnosed,
) -> Option<Engine> {
    match store.engine.get_ref().as_str() {
        "postgres" | "postgresql" => Some(Engine::Postgres),
        "mysql" | "mariadb" => Some(Engine::Mysql),
        "sqlite" => Some(Engine::Sqlite),
        other => {
            diags.push(
                source.span_location(Some(store.engine.span())),
                None,
                format!("store {name}: unknown engine {other:?}; use postgres, mysql or sqlite"),
            );
            None
        }
    }
}

/// Where a store is: a file for SQLite; for a server exactly one of
/// url_env, url_file or url_credential, never an inline url, which would
/// put a password in the config.
fn store_connection(
    source: &Source,
    name: &str,
    engine: Option<Engine>,
    store: &RawStore,
    base: &Path,
    at: &Location,
    diags: &mut Diagnosed,
) -> Option<Connection> {
    if let Some(url) = &store.url {
        diags.push(
            source.span_location(Some(url.span())),
            None,
            format!("store {name}: an inline url would put a password in the config; use url_env or url_file"),
        );
    }
    let has_url_secret = store.url_file.is_some() || store.url_credential.is_some();
    match (engine, &store.url_env, has_url_secret, &store.path) {
        (Some(Engine::Sqlite), None, false, Some(path)) => {
            Some(Connection::Path(resolve(base, path.get_ref())))
        }
        (Some(Engine::Sqlite), _, _, _) => {
            diags.push(
                at.clone(),
                None,
                format!("store {name}: an sqlite store takes path = \"<file>\" and nothing else"),
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
                    // Not repeated: a URL written here by mistake carries a password.
                    format!(
                        "store {name}: url_env takes an environment variable's name (letters, digits, _), not the URL itself"
                    ),
                );
                None
            }
        }
        (Some(_), None, true, None) => secret_source(
            source,
            &format!("store {name}: url"),
            &store.url_file,
            &store.url_credential,
            base,
            diags,
        )
        .map(Connection::Url),
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
    }
}

/// A store's `max_lag`: how far behind its replicas may fall.
fn store_max_lag(
    source: &Source,
    name: &str,
    store: &RawStore,
    diags: &mut Diagnosed,
) -> Option<Duration> {
    let lag = store.max_lag.as_ref()?;
    match crate::limits::parse_max_duration(lag.get_ref()) {
        Ok(lag) => Some(lag),
        Err(err) => {
            diags.push(
                source.span_location(Some(lag.span())),
                None,
                format!("store {name}: max_lag: {err}"),
            );
            None
        }
    }
}

/// `replicas`, `max_lag` and `max_load` only make sense together and on a
/// server: replicas are watched for lag, and SQLite has neither.
fn check_load_limits(
    source: &Source,
    name: &str,
    engine: Option<Engine>,
    store: &RawStore,
    at: &Location,
    diags: &mut Diagnosed,
) {
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

/// A store's `tls` and `ca_file`. `verify-full` needs the CA; a CA file
/// with any other mode is refused, since nothing would check it; SQLite
/// has no connection to protect.
pub(super) fn store_tls(
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
pub(super) fn coverage_allow(
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
pub(super) fn secret_source(
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
                // Not repeated: a URL or a key written here by mistake is a secret.
                format!(
                    "{what}: a credential is a file name in $CREDENTIALS_DIRECTORY (letters, digits, ., _ and -)"
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

/// Metrics are for the machine itself; a reverse proxy can publish them.
pub(super) fn parse_loopback(
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

pub(super) fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
