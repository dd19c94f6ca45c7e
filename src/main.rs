//! The `glemsel` command line: parses what the user typed, sets up logging
//! and signals, calls the library's commands and turns their outcome into
//! output and an exit code (see `exit.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};

use glemsel::commands::{self, CommandError};
use glemsel::execute::Shutdown;
use glemsel::exit::Exit;
use glemsel::report;
use glemsel::rules::{self, Policy};

mod erase_cli;
mod manual;

#[derive(Parser)]
#[command(
    name = "glemsel",
    version = glemsel::VERSION,
    about = "Enforces privacy-policy retention rules inside the databases where personal data lives",
    long_about = "Enforces privacy-policy retention rules inside the databases where personal data lives.\n\n\
        glemsel.toml names the stores (PostgreSQL, MySQL/MariaDB, SQLite), the time zone and the \
        rule files; each rule says which table, which event column its period counts from, how \
        long, and whether due rows are deleted or pseudonymised. plan shows what is due and \
        changes nothing; run changes exactly those rows, in small batches, each with a row in \
        a hash-chained audit trail; daemon runs every rule on its schedule under systemd.",
    after_help = exit_codes_help()
)]
struct Cli {
    /// The deployment config (stores, time zone, key file).
    #[arg(
        long,
        short,
        global = true,
        env = "GLEMSEL_CONFIG",
        default_value = "glemsel.toml"
    )]
    config: PathBuf,
    /// Log lines as human-readable text or as JSON (logs go to stderr).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// More log detail (-v: debug, -vv: trace). GLEMSEL_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Html,
    Md,
    Csv,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Validate config and rule files, then each rule against its live table.
    Check {
        /// Only the files; do not connect to any database.
        #[arg(long, conflicts_with = "coverage")]
        offline: bool,
        /// Exit 5 when there are warnings (copies that survive a run, a role
        /// that could rewrite the audit trail), for CI.
        #[arg(long)]
        deny_warnings: bool,
        /// Also list every column that looks like personal data and what
        /// becomes of it; exit 9 when a rule covers none of them.
        #[arg(long)]
        coverage: bool,
    },
    /// The retention report for the DPO and the auditor: schedule, 12-month
    /// forecast, status, coverage and the audit chains. Changes nothing.
    Report {
        /// The moment "now" stands for (default: the clock).
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
        format: ReportFormat,
        /// Write the report here instead of to standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Dry run: what a run would change now (or at --as-of). Changes nothing.
    Plan {
        /// Only this rule (repeatable).
        #[arg(long = "rule", value_name = "ID")]
        rules: Vec<String>,
        /// The moment "now" stands for: 2026-12-01, 2026-12-01T02:30 (config time zone) or RFC 3339.
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
        /// Text for people, JSON for programs.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Exit 5 when there are warnings (copies that survive a run), for CI.
        #[arg(long)]
        deny_warnings: bool,
        /// Also write the plan to FILE for approval: as-of, rule and schema
        /// fingerprints, counts. `run --plan FILE` runs exactly it.
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
    },
    /// Delete or pseudonymise the due rows, in batches, with an audit row per batch.
    Run {
        /// Only this rule (repeatable).
        #[arg(long = "rule", value_name = "ID", conflicts_with = "plan")]
        rules: Vec<String>,
        /// The moment "now" stands for; never later than the clock.
        #[arg(long, value_name = "TIME", conflicts_with = "plan")]
        as_of: Option<String>,
        /// Text for people, JSON for programs.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Run an approved plan (from `plan --save`): its rules at its as-of,
        /// refused (exit 5) if a rule or a table changed or more rows are due.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
        /// How many more due rows than planned a plan's run accepts, in percent.
        #[arg(long, value_name = "PERCENT", default_value = "0%", requires = "plan")]
        max_drift: String,
        /// Stop after the batch in flight once this long has passed ("30m",
        /// "2h", "1h30m"); the rest is due next run (exit 11).
        #[arg(long, value_name = "DURATION")]
        max_duration: Option<String>,
    },
    /// Run every rule on its schedule, as a systemd service (Type=notify).
    /// SIGHUP reloads the config and rules; SIGTERM stops after the batches in flight.
    Daemon,
    /// The demo: an SQLite database with eight years of synthetic data, planned, run and verified.
    Demo {
        /// Where to put it (created, or a previous demo replaced).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print the GRANT statements the rules need, per store, for the role
    /// glemsel connects as: nothing more, and no UPDATE or DELETE on the audit table.
    Grants {
        /// Only this store (repeatable).
        #[arg(long = "store", value_name = "NAME")]
        stores: Vec<String>,
        /// The role (PostgreSQL) or account (MySQL: user@host, host % when left out) to grant to.
        #[arg(long, value_name = "NAME", default_value = "glemsel")]
        role: String,
    },
    /// Work with the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Erasure on request: record a request, show its dry run, carry it out.
    Erase {
        #[command(subcommand)]
        command: erase_cli::EraseCommand,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TrailFormat {
    Text,
    Json,
    Csv,
}

// `glemsel generate`, for packaging: the man pages and completions. Parsed
// on its own, before `Cli`, so that what it writes does not offer it.
#[derive(Parser)]
#[command(
    name = "glemsel-generate",
    bin_name = "glemsel generate",
    about = "Write glemsel's man pages or shell completions (for packaging)"
)]
struct Generate {
    #[command(subcommand)]
    what: GenerateCommand,
}

#[derive(Subcommand)]
enum GenerateCommand {
    /// Write glemsel.1 and a page per subcommand into DIR.
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print the completion script of SHELL.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// The trail for auditors: runs with their rules, rows deleted,
    /// pseudonymised and held, the cutoff, the rule's fingerprint and the
    /// approved plan, oldest first. Read page by page.
    Show {
        /// Only this rule (repeatable).
        #[arg(long = "rule", value_name = "ID")]
        rules: Vec<String>,
        /// Only rows written at or after this time.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only rows written before this time.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only this run.
        #[arg(long = "run", value_name = "ID")]
        run: Option<String>,
        /// Only this store (repeatable).
        #[arg(long = "store", value_name = "NAME")]
        stores: Vec<String>,
        #[arg(long, value_enum, default_value_t = TrailFormat::Text)]
        format: TrailFormat,
        /// Audit rows read per page (tests use small pages).
        #[arg(long, hide = true, default_value_t = glemsel::trail::PAGE_ROWS)]
        page_rows: u32,
    },
    /// Recompute each store's hash chain (and compare with the checkpoint file).
    Verify {
        /// Only this store (repeatable).
        #[arg(long = "store", value_name = "NAME")]
        stores: Vec<String>,
        /// Text for people, JSON for programs.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Start a new segment of each store's chain: keyed under the configured
    /// audit key (how an unkeyed trail becomes keyed), or after a break that
    /// has been looked into. The segment row records the reason and what
    /// the chain's tail looked like.
    Segment {
        /// Only this store (repeatable).
        #[arg(long = "store", value_name = "NAME")]
        stores: Vec<String>,
        /// Why, in words an auditor will read.
        #[arg(long)]
        reason: String,
    },
}

fn exit_codes_help() -> String {
    let mut text = String::from("Exit codes:\n");
    for (code, meaning) in Exit::TABLE {
        text.push_str(&format!("  {code}  {meaning}\n"));
    }
    text
}

fn init_logging(
    format: LogFormat,
    verbose: u8,
    quiet: bool,
    bars: Option<&glemsel::progress::Bars>,
) {
    use tracing_subscriber::prelude::*;
    // Only glemsel's own events get more verbose; library internals stay at
    // warn, as they may describe statements and their parameters.
    let default = match verbose {
        0 if quiet => "warn",
        0 => "glemsel=info,warn",
        1 => "glemsel=debug,warn",
        _ => "glemsel=trace,warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GLEMSEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let registry = tracing_subscriber::registry().with(filter);
    // Under systemd, stderr is the journal: write to it natively, with fields.
    if matches!(format, LogFormat::Text)
        && stderr_is_the_journal()
        && let Ok(journald) = tracing_journald::layer()
    {
        registry
            .with(journald.with_syslog_identifier("glemsel".into()))
            .init();
        return;
    }
    // Colour only for a terminal; files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // While progress bars are drawn, log lines lift them out of the way.
    if let (Some(bars), LogFormat::Text) = (bars, format) {
        let stderr = tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(bars.log_writer());
        registry.with(stderr).init();
        return;
    }
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => registry.with(stderr).init(),
        LogFormat::Json => registry.with(stderr.json()).init(),
    }
}

/// Whether stderr is the journal, as systemd documents: JOURNAL_STREAM
/// holds the device and inode of the stream it connected. A shell started
/// from a service inherits the variable, but not the stream.
fn stderr_is_the_journal() -> bool {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(meta) => dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino()),
        Err(_) => false,
    }
}

fn load_policy(config: &Path) -> Result<Policy, Exit> {
    rules::load(config).map_err(|diagnostics| {
        for diagnostic in &diagnostics.0 {
            eprintln!("{diagnostic}");
        }
        eprintln!(
            "{} problem{} found; no database was touched",
            diagnostics.0.len(),
            if diagnostics.0.len() == 1 { "" } else { "s" }
        );
        Exit::Invalid
    })
}

fn fail(err: CommandError) -> Exit {
    match &err {
        CommandError::Invalid(d) | CommandError::Schema(d) => {
            for diagnostic in &d.0 {
                eprintln!("{diagnostic}");
            }
            eprintln!(
                "{} problem{} found; nothing was changed",
                d.0.len(),
                if d.0.len() == 1 { "" } else { "s" }
            );
        }
        other => eprintln!("error: {other}"),
    }
    err.exit()
}

fn as_of(policy: &Policy, text: Option<&str>) -> Result<DateTime<Utc>, Exit> {
    match text {
        None => Ok(commands::now()),
        Some(text) => commands::parse_as_of(text, policy.settings.timezone).map_err(|err| {
            eprintln!("error: --as-of: {err}");
            Exit::Usage
        }),
    }
}

/// Writes to standard output. A reader that went away (`glemsel plan |
/// head -1`) only means nobody reads the rest: the command still ends with
/// its own exit code, quietly, as ripgrep does.
fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && err.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: cannot write to standard output: {err}");
    }
}

/// `--deny-warnings` makes warnings (copies that survive a run, a role that
/// could rewrite the audit trail) fail CI.
fn warnings_exit(deny: bool, warnings: &[String]) -> Exit {
    if deny && !warnings.is_empty() {
        Exit::Refused
    } else {
        Exit::Ok
    }
}

fn print_json<T: serde::Serialize>(value: &T) {
    let mut text = serde_json::to_string_pretty(value).expect("reports serialise");
    text.push('\n');
    emit(&text);
}

/// Asks the run to stop after the batch in flight on Ctrl-C or SIGTERM.
fn stop_on_signals(shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::warn!("stop requested: finishing the batch in flight, then stopping");
        shutdown.request();
    });
}

/// SIGTERM and Ctrl-C stop the daemon; SIGHUP reloads it. The handlers
/// are registered before this returns, so an early SIGHUP cannot kill it.
fn handle_daemon_signals(signals: glemsel::daemon::Signals) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = interrupt.recv() => signals.shutdown.request(),
                _ = terminate.recv() => signals.shutdown.request(),
                _ = hangup.recv() => {
                    signals.reload.notify_one();
                    continue;
                }
            }
            tracing::info!("stop requested: finishing the batches in flight");
        }
    });
    Ok(())
}

/// `glemsel generate`: the manual or a completion script.
fn generate(what: &GenerateCommand) -> Exit {
    match what {
        GenerateCommand::Man { dir } => match manual::write_man_pages(Cli::command(), dir) {
            Ok(pages) => {
                for page in pages {
                    emit(&format!("{}\n", page.display()));
                }
                Exit::Ok
            }
            Err(err) => {
                eprintln!(
                    "error: cannot write the man pages into {}: {err}",
                    dir.display()
                );
                Exit::Error
            }
        },
        GenerateCommand::Completion { shell } => {
            let mut script = Vec::new();
            manual::write_completion(Cli::command(), *shell, &mut script);
            emit(&String::from_utf8_lossy(&script));
            Exit::Ok
        }
    }
}

async fn dispatch(cli: Cli, bars: Option<&glemsel::progress::Bars>) -> Exit {
    // The daemon loads (and reloads) the config itself.
    if let Command::Daemon = &cli.command {
        return daemon(cli.config.clone()).await;
    }
    // The demo writes its own config, so it needs none.
    if let Command::Demo { dir } = &cli.command {
        return demo(dir.clone()).await;
    }
    let policy = match load_policy(&cli.config) {
        Ok(policy) => policy,
        Err(exit) => return exit,
    };
    match cli.command {
        Command::Report {
            as_of: at,
            format,
            output,
        } => report(&policy, at, format, output).await,
        Command::Check {
            offline,
            coverage,
            deny_warnings,
        } => check(&cli.config, &policy, offline, coverage, deny_warnings).await,
        Command::Plan {
            rules,
            as_of: at,
            format,
            deny_warnings,
            save,
        } => plan(&policy, &rules, at, format, deny_warnings, save).await,
        Command::Run {
            rules,
            as_of: at,
            format,
            plan,
            max_drift,
            max_duration,
        } => match run_limits(&policy, max_duration.as_deref()) {
            Ok(limits) => run(&policy, &rules, at, format, plan, &max_drift, bars, limits).await,
            Err(exit) => exit,
        },
        Command::Grants { stores, role } => grants(&policy, &stores, &role).await,
        Command::Erase { command } => erase_cli::dispatch(&policy, command).await,
        Command::Demo { .. } | Command::Daemon => {
            unreachable!("handled before the config is loaded")
        }
        Command::Audit { command } => audit(&policy, command).await,
    }
}

/// `glemsel run --max-duration`, on top of the config's limits.
fn run_limits(
    policy: &Policy,
    max_duration: Option<&str>,
) -> Result<glemsel::operate::Limits, Exit> {
    let max_duration = match max_duration
        .map(glemsel::limits::parse_max_duration)
        .transpose()
    {
        Ok(max_duration) => max_duration,
        Err(err) => {
            eprintln!("error: --max-duration: {err}");
            return Err(Exit::Usage);
        }
    };
    Ok(glemsel::operate::Limits::of(&policy.settings, max_duration))
}

/// `glemsel grants`: prints the GRANT statements the rules need, per store.
async fn grants(policy: &Policy, stores: &[String], role: &str) -> Exit {
    match commands::grants(policy, stores, role).await {
        Ok(grants) => {
            emit(&report::grants_text(&grants, role));
            Exit::Ok
        }
        Err(err) => fail(err),
    }
}

/// `glemsel audit show | verify | segment`.
async fn audit(policy: &Policy, command: AuditCommand) -> Exit {
    match command {
        AuditCommand::Show {
            rules,
            since,
            until,
            run,
            stores,
            format,
            page_rows,
        } => audit_show_command(policy, rules, since, until, run, stores, format, page_rows).await,
        AuditCommand::Verify { stores, format } => audit_verify(policy, &stores, format).await,
        AuditCommand::Segment { stores, reason } => {
            match commands::audit_segment(policy, &stores, &reason).await {
                Ok(lines) => {
                    for line in lines {
                        emit(&format!("{line}\n"));
                    }
                    Exit::Ok
                }
                Err(err) => fail(err),
            }
        }
    }
}

/// `glemsel daemon`: loads (and reloads) the config itself.
async fn daemon(config: PathBuf) -> Exit {
    let signals = glemsel::daemon::Signals::default();
    if let Err(err) = handle_daemon_signals(signals.clone()) {
        eprintln!("error: cannot listen for signals: {err}");
        return Exit::Error;
    }
    glemsel::daemon::run(config, signals).await
}

/// `glemsel demo`.
async fn demo(dir: Option<PathBuf>) -> Exit {
    let dir = dir.unwrap_or_else(glemsel::demo::default_dir);
    match glemsel::demo::run(&dir).await {
        Ok((text, exit)) => {
            emit(&text);
            exit
        }
        Err(err) => {
            eprintln!("error: {err}");
            Exit::Error
        }
    }
}

/// `glemsel audit verify`.
async fn audit_verify(policy: &Policy, stores: &[String], format: Format) -> Exit {
    match commands::audit_verify(policy, stores).await {
        Ok(verdicts) => {
            match format {
                Format::Text => emit(&report::verify_text(&verdicts)),
                Format::Json => print_json(&verdicts),
            }
            if verdicts.iter().any(|v| v.broken.is_some()) {
                Exit::Tampered
            } else {
                Exit::Ok
            }
        }
        Err(err) => fail(err),
    }
}

/// `glemsel report`.
async fn report(
    policy: &Policy,
    at: Option<String>,
    format: ReportFormat,
    output: Option<PathBuf>,
) -> Exit {
    let at = match as_of(policy, at.as_deref()) {
        Ok(at) => at,
        Err(exit) => return exit,
    };
    let review = glemsel::review::gather(policy, at).await;
    let text = match format {
        ReportFormat::Html => report::html::render(&review),
        ReportFormat::Md => report::review::markdown(&review),
        ReportFormat::Csv => report::review::csv(&review),
        ReportFormat::Json => {
            serde_json::to_string_pretty(&review).expect("reports serialise") + "\n"
        }
    };
    let written = match &output {
        Some(path) => std::fs::write(path, &text).map_err(|err| {
            eprintln!("error: cannot write {}: {err}", path.display());
            Exit::Error
        }),
        None => {
            emit(&text);
            Ok(())
        }
    };
    if let Err(exit) = written {
        return exit;
    }
    for problem in review_problems(&review) {
        eprintln!("warning: {problem}");
    }
    if review.has_problems() {
        Exit::Error
    } else {
        Exit::Ok
    }
}

/// `glemsel check`.
async fn check(
    config: &Path,
    policy: &Policy,
    offline: bool,
    coverage: bool,
    deny_warnings: bool,
) -> Exit {
    let files = policy.rule_files.len();
    emit(&format!(
        "{}: {} rule{} in {files} file{}, {} store{}: files are valid\n",
        config.display(),
        policy.rules.len(),
        if policy.rules.len() == 1 { "" } else { "s" },
        if files == 1 { "" } else { "s" },
        policy.stores.len(),
        if policy.stores.len() == 1 { "" } else { "s" },
    ));
    if offline {
        return Exit::Ok;
    }
    let mut checked_warnings = match commands::check(policy).await {
        Ok(checked) => {
            for line in checked.lines.iter().chain(&checked.warnings) {
                emit(&format!("{line}\n"));
            }
            checked.warnings
        }
        Err(err) => return fail(err),
    };
    match erase_cli::check(policy).await {
        Ok(warnings) => checked_warnings.extend(warnings),
        Err(exit) => return exit,
    }
    let warned = warnings_exit(deny_warnings, &checked_warnings);
    if !coverage {
        return warned;
    }
    match glemsel::review::coverage(policy).await {
        Ok(findings) => {
            emit(&report::coverage_text(&findings));
            if findings.iter().any(|f| f.is_uncovered()) {
                Exit::Uncovered
            } else {
                warned
            }
        }
        Err(err) => fail(err),
    }
}

/// `glemsel plan`.
async fn plan(
    policy: &Policy,
    rules: &[String],
    at: Option<String>,
    format: Format,
    deny_warnings: bool,
    save: Option<PathBuf>,
) -> Exit {
    let at = match as_of(policy, at.as_deref()) {
        Ok(at) => at,
        Err(exit) => return exit,
    };
    let (report, file) = match &save {
        None => match commands::plan(policy, rules, at).await {
            Ok(report) => (report, None),
            Err(err) => return fail(err),
        },
        Some(_) => match glemsel::approval::save(policy, rules, at).await {
            Ok((report, file)) => (report, Some(file)),
            Err(err) => return fail(err),
        },
    };
    if let (Some(path), Some(file)) = (&save, &file) {
        let mut text = serde_json::to_string_pretty(file).expect("plans serialise");
        text.push('\n');
        if let Err(err) = std::fs::write(path, &text) {
            eprintln!("error: cannot write {}: {err}", path.display());
            return Exit::Error;
        }
        use sha2::Digest as _;
        eprintln!(
            "plan saved to {} (sha256 {}); `glemsel run --plan {}` runs exactly it",
            path.display(),
            hex::encode(sha2::Sha256::digest(text.as_bytes())),
            path.display()
        );
    }
    match format {
        Format::Text => emit(&report::plan_text(&report)),
        Format::Json => print_json(&report),
    }
    warnings_exit(deny_warnings, &report.warnings)
}

/// `glemsel run`.
#[allow(clippy::too_many_arguments)] // what `run` was given, passed on as is
async fn run(
    policy: &Policy,
    rules: &[String],
    at: Option<String>,
    format: Format,
    plan: Option<PathBuf>,
    max_drift: &str,
    bars: Option<&glemsel::progress::Bars>,
    limits: glemsel::operate::Limits,
) -> Exit {
    let shutdown = Shutdown::default();
    stop_on_signals(shutdown.clone());
    let outcomes = match plan {
        Some(path) => {
            let drift = match glemsel::approval::parse_drift(max_drift) {
                Ok(drift) => drift,
                Err(err) => {
                    eprintln!("error: --max-drift: {err}");
                    return Exit::Usage;
                }
            };
            let progress = bars.map(|b| b as &dyn glemsel::execute::Progress);
            glemsel::approval::run(policy, &path, drift, shutdown, progress, limits).await
        }
        None => {
            let at = match as_of(policy, at.as_deref()) {
                Ok(at) => at,
                Err(exit) => return exit,
            };
            let options = commands::RunOptions {
                progress: bars.map(|b| b as &dyn glemsel::execute::Progress),
                limits,
                ..commands::RunOptions::default()
            };
            commands::run(policy, rules, at, shutdown, &options).await
        }
    };
    if let Some(bars) = bars {
        bars.finish();
    }
    match outcomes {
        Ok(outcomes) => {
            match format {
                Format::Text => emit(&report::run_text(&outcomes)),
                Format::Json => print_json(&report::run_json(&outcomes)),
            }
            commands::run_exit(&outcomes)
        }
        Err(err) => fail(err),
    }
}

/// `glemsel audit show`.
#[allow(clippy::too_many_arguments)]
async fn audit_show_command(
    policy: &Policy,
    rules: Vec<String>,
    since: Option<String>,
    until: Option<String>,
    run: Option<String>,
    stores: Vec<String>,
    format: TrailFormat,
    page_rows: u32,
) -> Exit {
    let mut times = Vec::new();
    for (flag, text) in [("--since", &since), ("--until", &until)] {
        match text
            .as_deref()
            .map(|t| commands::parse_as_of(t, policy.settings.timezone))
        {
            None => times.push(None),
            Some(Ok(at)) => times.push(Some(at)),
            Some(Err(err)) => {
                eprintln!("error: {flag}: {err}");
                return Exit::Usage;
            }
        }
    }
    let options = glemsel::trail::ShowOptions {
        stores,
        filter: glemsel::audit::AuditFilter {
            rules,
            run_id: run,
            events: Vec::new(),
            since: times[0],
            until: times[1],
        },
        page_rows,
    };
    audit_show(policy, &options, format).await
}

/// Streams `audit show` to stdout as the trail is read.
async fn audit_show(
    policy: &Policy,
    options: &glemsel::trail::ShowOptions,
    format: TrailFormat,
) -> Exit {
    let tz = policy.settings.timezone.name().to_string();
    let mut count = 0usize;
    let mut last_run = String::new();
    match format {
        TrailFormat::Json => emit("["),
        TrailFormat::Csv => {
            let mut header = String::new();
            let names: Vec<String> = report::trail::CSV_HEADER
                .iter()
                .map(|s| s.to_string())
                .collect();
            report::review::csv_row(&mut header, &names);
            emit(&header);
        }
        TrailFormat::Text => {}
    }
    let mut write = |run: glemsel::trail::RuleRun| {
        match format {
            TrailFormat::Json => {
                let json = serde_json::to_string_pretty(&run).expect("runs serialise");
                emit(&format!("{}\n{json}", if count == 0 { "" } else { "," }));
            }
            TrailFormat::Csv => emit(&report::trail::csv_line(&run)),
            TrailFormat::Text => {
                let key = format!("{}\t{}", run.store, run.run_id);
                emit(&report::trail::text(&run, key != last_run, &tz));
                last_run = key;
            }
        }
        count += 1;
    };
    let result = glemsel::trail::show(policy, options, &mut write).await;
    match format {
        TrailFormat::Json => emit("\n]\n"),
        TrailFormat::Text if count == 0 && result.is_ok() => {
            emit("no runs in the audit trail match\n")
        }
        _ => {}
    }
    match result {
        Ok(()) => Exit::Ok,
        Err(err) => fail(err),
    }
}

/// What the report could not gather, for stderr.
fn review_problems(review: &glemsel::review::Review) -> Vec<String> {
    let stores = review
        .stores
        .iter()
        .filter_map(|s| s.problem.as_ref().map(|p| format!("store {}: {p}", s.name)));
    let rules = review
        .rules
        .iter()
        .filter_map(|r| r.problem.as_ref().map(|p| format!("rule {}: {p}", r.id)));
    stores.chain(rules).collect()
}

fn main() -> ExitCode {
    // mysql_async keeps up to 128 spare packet buffers (each up to 4 MiB)
    // in a process-wide pool, read from this variable when the pool is
    // first used; 16 is plenty for one connection per store and keeps peak
    // memory flat. An operator's own setting wins.
    if std::env::var_os("MYSQL_ASYNC_BUFFER_POOL_CAP").is_none() {
        // SAFETY: set_var is unsound only while another thread reads or
        // writes the environment; this is the first statement of main, before
        // logging, progress bars or the tokio runtime start any thread.
        unsafe { std::env::set_var("MYSQL_ASYNC_BUFFER_POOL_CAP", "16") };
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "generate")
    {
        let Generate { what } = Generate::parse_from(std::env::args_os().skip(1));
        return ExitCode::from(generate(&what).code());
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let args: Vec<String> = std::env::args_os()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            match erase_cli::scrubbed_parse_error(&args, &err) {
                Some(message) => {
                    eprintln!("{message}");
                    return ExitCode::from(Exit::Usage.code());
                }
                None => err.exit(),
            }
        }
    };
    // The demo prints its own account of each step.
    let quiet = matches!(cli.command, Command::Demo { .. });
    // Progress bars only for a person watching a run: text output, and a
    // terminal on stderr (not the daemon, not JSON, not a file or pipe).
    let interactive = matches!(
        cli.command,
        Command::Run {
            format: Format::Text,
            ..
        }
    ) && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && !stderr_is_the_journal();
    let bars = interactive.then(glemsel::progress::Bars::new);
    init_logging(cli.log_format, cli.verbose, quiet, bars.as_ref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(Exit::Error.code());
        }
    };
    let exit = runtime.block_on(dispatch(cli, bars.as_ref()));
    ExitCode::from(exit.code())
}
