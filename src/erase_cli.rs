//! `glemsel erase ...`: what the user typed, turned into the library's
//! erasure commands, their output and an exit code.

use std::io::BufRead as _;

use chrono::NaiveDate;
use clap::Subcommand;

use glemsel::erase::commands as erase;
use glemsel::erase::{EraseError, Failure, Mode};
use glemsel::exit::Exit;
use glemsel::rules::Policy;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum EraseCommand {
    /// Record a request. The identifier is hashed under the key at once
    /// and never stored: `--subject email` alone reads the value from
    /// standard input (one line), so it stays out of the shell's history.
    Add {
        /// IDENTIFIER=VALUE, e.g. email=jens@example.invalid; or IDENTIFIER
        /// alone to read the value from standard input.
        #[arg(long, value_name = "IDENTIFIER[=VALUE]")]
        subject: String,
        /// The day the request was received (default: today).
        #[arg(long, value_name = "YYYY-MM-DD")]
        received: Option<NaiveDate>,
        /// Free text: a case number, never the person's name.
        #[arg(long, value_name = "TEXT")]
        reference: Option<String>,
    },
    /// The dry run: per request, store and table, the rows found and what
    /// happens to them. Changes nothing.
    Plan {
        /// Only this request (default: every request not done).
        request: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Carry out every open request, audited, and record each one's status.
    Run {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Every request with its deadline and status; exit 10 when one is overdue.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// After a restore: erase again every request's rows that came back.
    Replay {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

pub async fn dispatch(policy: &Policy, command: EraseCommand) -> Exit {
    match command {
        EraseCommand::Add {
            subject,
            received,
            reference,
        } => {
            let (identifier, value) = match subject.split_once('=') {
                Some((identifier, value)) => (identifier.to_string(), value.to_string()),
                // A value typed without its name must not be echoed by
                // the prompt or the error that follows.
                None if policy.subject_of(&subject).is_none() => {
                    return fail(erase::unknown_identifier(policy));
                }
                None => match read_value(&subject) {
                    Ok(value) => (subject.clone(), value),
                    Err(exit) => return exit,
                },
            };
            match erase::add(policy, &identifier, &value, received, reference).await {
                Ok(request) => {
                    println!(
                        "{}: {} by {}, received {}, deadline {}",
                        request.id,
                        request.subject,
                        request.identifier,
                        request.received,
                        request.deadline
                    );
                    Exit::Ok
                }
                Err(err) => fail(err),
            }
        }
        EraseCommand::Plan { request, format } => {
            match erase::plan(policy, request.as_deref()).await {
                Ok(planned) => {
                    match format {
                        Format::Text => print!("{}", erase::plan_text(&planned)),
                        Format::Json => println!(
                            "{}",
                            serde_json::to_string_pretty(&planned).expect("plans serialise")
                        ),
                    }
                    let failed: Vec<&Failure> = planned
                        .iter()
                        .filter_map(|p| p.found.failed.as_ref())
                        .collect();
                    outcome_exit(&failed, planned.iter().any(|p| !p.found.refused.is_empty()))
                }
                Err(err) => fail(err),
            }
        }
        EraseCommand::Run { format } => run(policy, Mode::Open, format).await,
        EraseCommand::Replay { format } => run(policy, Mode::Replay, format).await,
        EraseCommand::Status { format } => match erase::status(policy).await {
            Ok(rows) => {
                match format {
                    Format::Text => print!("{}", erase::status_text(&rows)),
                    Format::Json => println!(
                        "{}",
                        serde_json::to_string_pretty(&rows).expect("rows serialise")
                    ),
                }
                if rows.iter().any(|r| r.overdue) {
                    Exit::Overdue
                } else {
                    Exit::Ok
                }
            }
            Err(err) => fail(err),
        },
    }
}

/// `check`'s part for subjects: their tables against the live schema.
/// `Err(Exit::Schema)` when one does not fit; else the warnings.
pub async fn check(policy: &Policy) -> Result<Vec<String>, Exit> {
    if policy.subjects.is_empty() {
        return Ok(Vec::new());
    }
    let checked = erase::check(policy).await;
    for problem in &checked.problems {
        eprintln!("{problem}");
    }
    for warning in &checked.warnings {
        println!("{warning}");
    }
    let problems = &checked.problems;
    if problems.is_empty() {
        println!(
            "{} erasure subject{}: tables match",
            policy.subjects.len(),
            if policy.subjects.len() == 1 { "" } else { "s" }
        );
        Ok(checked.warnings)
    } else {
        eprintln!(
            "{} problem{} found; nothing was changed",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        Err(Exit::Schema)
    }
}

async fn run(policy: &Policy, mode: Mode, format: Format) -> Exit {
    match erase::run(policy, mode).await {
        Ok(report) => {
            match format {
                Format::Text => print!("{}", erase::run_text(&report)),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("reports serialise")
                ),
            }
            let failed: Vec<&Failure> = report.failed.iter().collect();
            outcome_exit(&failed, !report.refused.is_empty())
        }
        Err(err) => fail(err),
    }
}

/// The exit code once every request had its turn: a failed one (1, or 4
/// when only the rules did not fit tables) before a refused one (5). The
/// failures go to standard error as well, for whoever reads the JSON.
fn outcome_exit(failed: &[&Failure], refused: bool) -> Exit {
    for failure in failed {
        eprintln!("error: {}", failure.message);
    }
    match (failed.is_empty(), failed.iter().all(|f| f.schema), refused) {
        (false, false, _) => Exit::Error,
        (false, true, _) => Exit::Schema,
        (true, _, true) => Exit::Refused,
        (true, _, false) => Exit::Ok,
    }
}

/// A command line clap cannot read, for `erase add`: its message would
/// quote what was typed (`--subject email jens@example.invalid` has a
/// stray argument, the person's address), so only the kind of mistake and
/// the usage are printed. `None` for every other command.
pub fn scrubbed_parse_error(args: &[String], err: &clap::Error) -> Option<String> {
    use clap::error::ErrorKind;
    let erase_add = args.windows(2).any(|w| w[0] == "erase" && w[1] == "add");
    let shown = matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    (erase_add && !shown).then(|| {
        format!(
            "error: glemsel erase add: {}; what was typed is not repeated here, since it may hold the person's identifier\n\nUsage: glemsel erase add --subject IDENTIFIER[=VALUE] [--received YYYY-MM-DD] [--reference TEXT]\n(--subject IDENTIFIER alone reads the value from standard input)",
            err.kind()
        )
    })
}

/// The identifier's value from standard input: one line, so it never
/// appears in the command line, the shell's history or `ps`.
fn read_value(identifier: &str) -> Result<String, Exit> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprint!("{identifier}: ");
    }
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(_) if !line.trim().is_empty() => Ok(line.trim_end_matches(['\n', '\r']).to_string()),
        Ok(_) => {
            eprintln!(
                "error: no {identifier} on standard input; give --subject {identifier}=VALUE or pipe the value in"
            );
            Err(Exit::Usage)
        }
        Err(err) => {
            eprintln!("error: cannot read standard input: {err}");
            Err(Exit::Error)
        }
    }
}

fn fail(err: EraseError) -> Exit {
    eprintln!("error: {err}");
    exit_of(err)
}

fn exit_of(err: EraseError) -> Exit {
    match err {
        EraseError::Table { source, .. } => exit_of(*source),
        EraseError::Store(_) | EraseError::LedgerFile { .. } => Exit::Error,
        EraseError::Usage(_) => Exit::Usage,
        EraseError::Schema(_) => Exit::Schema,
        EraseError::Command(err) => err.exit(),
        EraseError::Locked | EraseError::AddLocked => Exit::LockHeld,
    }
}
