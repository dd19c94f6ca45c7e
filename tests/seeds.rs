//! Every promise of the five seed policies, as the shipped rule sets in
//! `rules/` enforce it, on PostgreSQL, MariaDB and SQLite: the day before the data
//! becomes due nothing happens; on the day it does, the data goes (or is
//! anonymised) as promised, and the audit trail names the rule.
//!
//! A minimum (`kind = "minimum"`: bookkeeping, nothing goes early) is run
//! at 00:00 on the day before and on the day its period ends. A deadline
//! (`kind = "deadline"`) must be gone *before* its day: with the daemon's
//! daily 02:30 schedule glemsel acts 26 hours ahead (25 hours between two
//! runs across the autumn change, + an hour for the run), so it is run at
//! the moment its rows come due, 26 hours before 00:00 on the deadline's
//! day, and a second before that.
//!
//! `run` refuses an `--as-of` later than the clock, so a boundary still
//! ahead is proven by `plan` instead ([`Ahead`]): the dry run counts with
//! the very predicate a run changes rows by.

mod common;

use std::path::PathBuf;

use common::{Kind, Project, TestDb, assert_contains, code, text};

/// A seed's rule set and the fixture of its system.
struct Seed {
    /// The folder in `rules/` and in `tests/fixtures/`.
    dir: &'static str,
    /// The store its rules name.
    store: &'static str,
}

/// One promise at its boundary.
struct Case {
    rule: &'static str,
    /// The deployment's `financial_year_end` in `glemsel.toml`.
    year_end: &'static str,
    /// The day before the period ends, and the day it ends (for a
    /// deadline, the day by which the data must be gone).
    day_before: &'static str,
    day_of: &'static str,
    checks: &'static [Check],
}

/// The defaults of a [`Case`]: a financial year to 30 June, as in the
/// shipped example config.
const CASE: Case = Case {
    rule: "",
    year_end: JUNE,
    day_before: "",
    day_of: "",
    checks: &[],
};

const JUNE: &str = "06-30";
const CALENDAR_YEAR: &str = "12-31";

/// A boundary the clock has not reached yet: the dry run counts `due.0`
/// rows due the day before and `due.1` on the day.
struct Ahead {
    rule: &'static str,
    year_end: &'static str,
    day_before: &'static str,
    day_of: &'static str,
    due: (u64, u64),
}

/// A query returning one value (NULL reads "NULL"), and that value after
/// the run on the day before and after the run on the day of.
struct Check {
    sql: &'static str,
    before: &'static str,
    after: &'static str,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn value(db: &TestDb, sql: &str) -> String {
    db.rows(sql)
        .await
        .first()
        .and_then(|row| row.first().cloned())
        .map(|v| v.unwrap_or_else(|| "NULL".into()))
        .unwrap_or_else(|| "no row".into())
}

/// The deployment facts the seed sets need beyond the test config: the
/// daemon's schedule (deadlines act ahead of it) and the Danish holidays
/// (ITJ counts working days).
const DEPLOYMENT: &str = "schedule = \"0 30 2 * * *\"\nholidays = \"DK\"";

/// How far ahead of its deadline a deadline rule acts on [`DEPLOYMENT`]'s
/// schedule: the longest gap between two daily 02:30 runs in Copenhagen
/// (25 hours, when the clocks go back), plus the default `max_duration`.
const LEAD_HOURS: i64 = 26;

/// A project for `db` with the seed's rule files and the deployment's
/// financial year end.
fn project(db: &TestDb, seed: &Seed, rule_files: &[PathBuf], year_end: &str) -> Project {
    let project = Project::for_db(db, seed.store, DEPLOYMENT);
    for path in rule_files {
        std::fs::copy(
            path,
            project.path().join("rules").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    let config = std::fs::read_to_string(project.config()).unwrap();
    let default = format!("financial_year_end = \"{JUNE}\"");
    assert_contains(&config, &default);
    let config = config.replace(&default, &format!("financial_year_end = \"{year_end}\""));
    // The erasure ledger, for the sets that declare subjects.
    let config = format!(
        "erasure_store = \"{}\"\nerasure_ledger = \"ledger.jsonl\"\n{config}",
        seed.store
    );
    std::fs::write(project.config(), config).unwrap();
    project
}

/// The dry run of `rule` at `as_of`, as JSON.
fn plan(project: &Project, rule: &str, as_of: &str) -> serde_json::Value {
    let plan = project.glemsel(&["plan", "--rule", rule, "--as-of", as_of, "--format", "json"]);
    assert_eq!(code(&plan), 0, "plan {rule} {as_of}: {}", text(&plan));
    let report: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    report["steps"][0].clone()
}

/// How many rows the dry run counts as due for `rule` at `as_of`.
fn due_in_plan(project: &Project, rule: &str, as_of: &str) -> u64 {
    let step = plan(project, rule, as_of);
    step["counts"]["due"]
        .as_u64()
        .unwrap_or_else(|| panic!("no due count in {step}"))
}

/// The as-of times a case runs at: for a minimum, 00:00 (Copenhagen) on
/// the day before and on the day; for a deadline, the lead before 00:00 on
/// the deadline's day, and a second earlier.
fn run_times(case: &Case, deadline: bool) -> (String, String) {
    if !deadline {
        return (case.day_before.to_string(), case.day_of.to_string());
    }
    let zone: chrono_tz::Tz = "Europe/Copenhagen".parse().unwrap();
    let day: chrono::NaiveDate = case.day_of.parse().unwrap();
    let due = glemsel::period::local_to_instant(day.and_time(chrono::NaiveTime::MIN), zone)
        - chrono::TimeDelta::hours(LEAD_HOURS);
    let before = due - chrono::TimeDelta::seconds(1);
    let rfc3339 =
        |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    (rfc3339(before), rfc3339(due))
}

async fn check_seed(seed: &Seed, cases: &[Case], ahead: &[Ahead]) {
    let rule_files: Vec<PathBuf> = std::fs::read_dir(repo().join("rules").join(seed.dir))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    // Every promise is proven: no rule of the set goes without a case; and
    // every rule says which kind of period it has.
    let mut deadlines = Vec::new();
    for path in &rule_files {
        let file: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
        let rules = file
            .get("rule")
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap_or_default();
        for rule in rules {
            let id = rule["id"].as_str().unwrap();
            match rule.get("kind").and_then(|k| k.as_str()) {
                Some("deadline") => deadlines.push(id.to_string()),
                Some("minimum") => {}
                other => panic!("{}: rule {id} says kind = {other:?}", path.display()),
            }
            assert!(
                cases.iter().any(|case| case.rule == id),
                "{}: rule {id} has no boundary case",
                path.display()
            );
        }
    }
    // A case the clock has not reached cannot be run; it belongs in `ahead`.
    let today = chrono::Utc::now().date_naive().to_string();
    for case in cases {
        assert!(
            case.day_of <= today.as_str(),
            "{} {}: {} is after today; run refuses it, so write it as an Ahead case",
            seed.dir,
            case.rule,
            case.day_of
        );
    }
    let fixtures = repo().join("tests/fixtures").join(seed.dir);
    let data = std::fs::read_to_string(fixtures.join("data.sql")).unwrap();
    for kind in [Kind::Postgres, Kind::Mariadb, Kind::Sqlite] {
        let schema_file = match kind {
            Kind::Postgres => "postgres.sql",
            Kind::Mariadb => "mariadb.sql",
            // Plain SQL with named indexes, which SQLite reads as well.
            Kind::Sqlite => "postgres.sql",
        };
        let schema = std::fs::read_to_string(fixtures.join(schema_file)).unwrap();
        for case in cases {
            let Some(db) = TestDb::create(kind, "seed").await else {
                continue;
            };
            db.exec(&schema).await;
            db.exec(&data).await;
            let project = project(&db, seed, &rule_files, case.year_end);
            let what = format!(
                "{} {} (year end {}) on {kind:?}",
                seed.dir, case.rule, case.year_end
            );
            let check = project.glemsel(&["check"]);
            assert_eq!(
                code(&check),
                0,
                "{what}: the rule set does not fit its fixture:\n{}",
                text(&check)
            );
            let deadline = deadlines.iter().any(|d| d == case.rule);
            let timing = plan(&project, case.rule, case.day_of)["timing"].clone();
            assert_eq!(
                timing["lead_seconds"],
                if deadline { LEAD_HOURS * 3600 } else { 0 },
                "{what}: {timing}"
            );
            let (day_before, day_of) = run_times(case, deadline);
            let (day_before, day_of) = (day_before.as_str(), day_of.as_str());

            let before = project.glemsel(&["run", "--rule", case.rule, "--as-of", day_before]);
            assert_eq!(code(&before), 0, "{what} {day_before}: {}", text(&before));
            for check in case.checks {
                assert_eq!(
                    value(&db, check.sql).await,
                    check.before,
                    "{what}, as of {day_before}: {}",
                    check.sql
                );
            }
            let batches = format!(
                "SELECT count(*) FROM glemsel_audit WHERE rule_id = '{}' AND event = 'batch'",
                case.rule
            );
            let batches_before = value(&db, &batches).await;
            let on = project.glemsel(&["run", "--rule", case.rule, "--as-of", day_of]);
            assert_eq!(code(&on), 0, "{what} {day_of}: {}", text(&on));
            for check in case.checks {
                assert_eq!(
                    value(&db, check.sql).await,
                    check.after,
                    "{what}, as of {day_of}: {}",
                    check.sql
                );
            }
            assert_ne!(
                value(&db, &batches).await,
                batches_before,
                "{what}: no batch row names the rule"
            );
            let verify = project.glemsel(&["audit", "verify"]);
            assert_eq!(code(&verify), 0, "{what}: {}", text(&verify));
            db.drop().await;
        }
        for case in ahead {
            // The dry run counts at 00:00; a deadline would need the lead.
            assert!(
                !deadlines.iter().any(|d| d == case.rule),
                "{}: write the deadline {} as a Case",
                seed.dir,
                case.rule
            );
            let Some(db) = TestDb::create(kind, "seed").await else {
                continue;
            };
            db.exec(&schema).await;
            db.exec(&data).await;
            let project = project(&db, seed, &rule_files, case.year_end);
            let what = format!(
                "{} {} (year end {}) on {kind:?}, planned",
                seed.dir, case.rule, case.year_end
            );
            assert_eq!(
                (
                    due_in_plan(&project, case.rule, case.day_before),
                    due_in_plan(&project, case.rule, case.day_of)
                ),
                case.due,
                "{what}: rows due as of {} and as of {}",
                case.day_before,
                case.day_of
            );
            db.drop().await;
        }
    }
}

#[tokio::test]
async fn itj_consult() {
    let seed = Seed {
        dir: "003-itj-consult",
        store: "itj",
    };
    check_seed(
        &seed,
        &[
            // The bookkeeping act: 5 years from the end of the financial
            // year the purchase concerns, never 5 years from the day.
            Case {
                rule: "itj-purchases",
                year_end: CALENDAR_YEAR,
                // Completed 2020-03-10: the financial year ends 2020-12-31.
                day_before: "2025-12-31",
                day_of: "2026-01-01",
                checks: &[
                    Check {
                        sql: "SELECT count(*) FROM purchases WHERE id = 5",
                        before: "1",
                        after: "0",
                    },
                    // Completed 2021-03-10: a year later.
                    Check {
                        sql: "SELECT count(*) FROM purchases WHERE id = 1",
                        before: "1",
                        after: "1",
                    },
                    // A subscription that still runs keeps its purchase.
                    Check {
                        sql: "SELECT count(*) FROM purchases WHERE id = 4",
                        before: "1",
                        after: "1",
                    },
                ],
            },
            Case {
                rule: "itj-purchases",
                year_end: JUNE,
                // Completed 2021-03-10: the financial year ends 2021-06-30.
                day_before: "2026-06-30",
                day_of: "2026-07-01",
                checks: &[
                    Check {
                        sql: "SELECT count(*) FROM purchases WHERE id = 1",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM purchases WHERE id = 4",
                        before: "1",
                        after: "1",
                    },
                ],
            },
            Case {
                rule: "itj-unfinished-purchases",
                day_before: "2026-09-30",
                day_of: "2026-10-01",
                checks: &[
                    Check {
                        sql: "SELECT count(*) FROM purchases WHERE id = 2",
                        before: "1",
                        after: "0",
                    },
                    // Entered the same day but completed: another rule's business.
                    Check {
                        sql: "SELECT count(*) FROM purchases WHERE id = 3",
                        before: "1",
                        after: "1",
                    },
                ],
                ..CASE
            },
            Case {
                rule: "itj-support-requests",
                day_before: "2026-06-14",
                day_of: "2026-06-15",
                checks: &[
                    Check {
                        sql: "SELECT count(*) FROM support_tickets WHERE id = 11",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM ticket_messages WHERE ticket_id = 11",
                        before: "2",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM support_tickets WHERE id = 12",
                        before: "1",
                        after: "1",
                    },
                    Check {
                        sql: "SELECT count(*) FROM support_accounts WHERE id = 42",
                        before: "1",
                        after: "1",
                    },
                ],
                ..CASE
            },
            // Never answered: counted from the last message, as if answered then.
            Case {
                rule: "itj-stale-tickets",
                day_before: "2026-02-28",
                day_of: "2026-03-01",
                checks: &[
                    Check {
                        sql: "SELECT count(*) FROM support_tickets WHERE id = 32",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM ticket_messages WHERE ticket_id = 32",
                        before: "1",
                        after: "0",
                    },
                    // The account is another rule's business.
                    Check {
                        sql: "SELECT count(*) FROM support_accounts WHERE id = 22",
                        before: "1",
                        after: "1",
                    },
                    // Opened the same day, but its last message came 2024-09-10.
                    Check {
                        sql: "SELECT count(*) FROM support_tickets WHERE id = 34",
                        before: "1",
                        after: "1",
                    },
                    // Answered: the answer counts (itj-support-requests).
                    Check {
                        sql: "SELECT count(*) FROM support_tickets WHERE id = 31",
                        before: "1",
                        after: "1",
                    },
                ],
                ..CASE
            },
            Case {
                rule: "itj-support-accounts",
                day_before: "2026-02-28",
                day_of: "2026-03-01",
                checks: &[
                    // Last used 2024-03-01 (its last ticket), so unused for 2 years on 2026-03-01.
                    Check {
                        sql: "SELECT count(*) FROM support_accounts WHERE id = 21",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM support_tickets WHERE account_id = 21",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM ticket_messages WHERE ticket_id = 31",
                        before: "1",
                        after: "0",
                    },
                    // Same dates, and its ticket was never answered: a stale
                    // ticket does not keep an account in use for ever.
                    Check {
                        sql: "SELECT count(*) FROM support_accounts WHERE id = 22",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM support_tickets WHERE id = 32",
                        before: "1",
                        after: "0",
                    },
                    // A ticket opened 2024-06-01: used three months later.
                    Check {
                        sql: "SELECT count(*) FROM support_accounts WHERE id = 23",
                        before: "1",
                        after: "1",
                    },
                ],
                ..CASE
            },
            // Withdrawn on Monday 2026-05-04: "within 3 working days" ends
            // on Thursday 2026-05-07 at 00:00.
            Case {
                rule: "itj-consent-withdrawn",
                day_before: "2026-05-06",
                day_of: "2026-05-07",
                checks: &[
                    Check {
                        sql: "SELECT count(*) FROM support_accounts WHERE id = 41",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM support_tickets WHERE account_id = 41",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM ticket_messages WHERE ticket_id = 33",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM support_accounts WHERE id = 42",
                        before: "1",
                        after: "1",
                    },
                ],
                ..CASE
            },
            Case {
                rule: "itj-access-logs",
                day_before: "2026-08-19",
                day_of: "2026-08-20",
                checks: &[
                    Check {
                        sql: "SELECT count(*) FROM access_log WHERE id = 51",
                        before: "1",
                        after: "0",
                    },
                    // One second younger: due one second later.
                    Check {
                        sql: "SELECT count(*) FROM access_log WHERE id = 52",
                        before: "1",
                        after: "1",
                    },
                ],
                ..CASE
            },
        ],
        &[
            // Completed 2021-03-10, a calendar financial year: 2027-01-01.
            Ahead {
                rule: "itj-purchases",
                year_end: CALENDAR_YEAR,
                day_before: "2026-12-31",
                day_of: "2027-01-01",
                due: (1, 2),
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn jetpak() {
    let seed = Seed {
        dir: "002-jetpak",
        store: "jetpak",
    };
    check_seed(
        &seed,
        &[
            Case {
                rule: "jetpak-contract-administration",
                // Customer 1's last order was delivered and paid on 2023-02-14.
                day_before: "2026-02-13",
                day_of: "2026-02-14",
                checks: &[
                    // Anonymised: no token a key could re-identify.
                    Check { sql: "SELECT name FROM customers WHERE id = 1", before: "Kunde Et", after: "[redacted]" },
                    Check { sql: "SELECT COALESCE(email, 'NULL') FROM customers WHERE id = 1", before: "kunde1@example.invalid", after: "NULL" },
                    Check { sql: "SELECT COALESCE(personal_id, 'NULL') FROM customers WHERE id = 1", before: "010101-0001", after: "NULL" },
                    Check { sql: "SELECT COALESCE(address, 'NULL') FROM customers WHERE id = 1", before: "Eksempelvej 1", after: "NULL" },
                    Check { sql: "SELECT COALESCE(username, 'NULL') FROM customers WHERE id = 1", before: "kunde1", after: "NULL" },
                    // Bookkeeping stays: the invoices keep their numbers and amounts (in
                    // cents, which every engine prints alike).
                    Check {
                        sql: "SELECT CONCAT(invoice_no, '/', CAST(amount * 100 AS INTEGER)) FROM invoices WHERE id = 1001",
                        before: "J-1001/125000",
                        after: "J-1001/125000",
                    },
                    // The same dates, but a dispute is open: held.
                    Check { sql: "SELECT email FROM customers WHERE id = 2", before: "kunde2@example.invalid", after: "kunde2@example.invalid" },
                    // The same dates, but an order is not paid: the contract runs.
                    Check { sql: "SELECT email FROM customers WHERE id = 3", before: "kunde3@example.invalid", after: "kunde3@example.invalid" },
                    // An active agreement keeps the customer.
                    Check { sql: "SELECT email FROM customers WHERE id = 4", before: "firma4@example.invalid", after: "firma4@example.invalid" },
                    // Each run reports what the hold kept: nothing the day before,
                    // customer 2 on the day.
                    Check {
                        sql: "SELECT CASE WHEN detail LIKE '%\"held_by\":[{\"name\":\"disputes\",\"rows\":1}]%' THEN 'kept 1' \
                              WHEN detail LIKE '%\"held_by\":[{\"name\":\"disputes\",\"rows\":0}]%' THEN 'kept 0' ELSE detail END \
                              FROM glemsel_audit WHERE event = 'run_finish' ORDER BY seq DESC LIMIT 1",
                        before: "kept 0",
                        after: "kept 1",
                    },
                ],
                ..CASE
            },
            Case {
                rule: "jetpak-marketing-customers",
                day_before: "2026-02-13",
                day_of: "2026-02-14",
                checks: &[
                    Check { sql: "SELECT COALESCE(marketing_interests, 'NULL') FROM customers WHERE id = 1", before: "pakker", after: "NULL" },
                    // A dispute holds contract data, not marketing data.
                    Check { sql: "SELECT COALESCE(marketing_interests, 'NULL') FROM customers WHERE id = 2", before: "pakker", after: "NULL" },
                    // An order not yet paid: the contract period runs.
                    Check { sql: "SELECT COALESCE(marketing_interests, 'NULL') FROM customers WHERE id = 3", before: "pakker", after: "pakker" },
                ],
                ..CASE
            },
            Case {
                rule: "jetpak-marketing-prospects",
                day_before: "2026-03-31",
                day_of: "2026-04-01",
                checks: &[
                    Check { sql: "SELECT count(*) FROM marketing_contacts WHERE id = 201", before: "1", after: "0" },
                    // Collected the same day, but became a customer: the customer rules apply.
                    Check { sql: "SELECT count(*) FROM marketing_contacts WHERE id = 202", before: "1", after: "1" },
                ],
                ..CASE
            },
            Case {
                rule: "jetpak-marketing-converted",
                // Prospect 202 became customer 1, whose contract period ended 2023-02-14.
                day_before: "2026-02-13",
                day_of: "2026-02-14",
                checks: &[
                    Check { sql: "SELECT count(*) FROM marketing_contacts WHERE id = 202", before: "1", after: "0" },
                    // Customer 2's dispute holds its contract data, not this.
                    Check { sql: "SELECT count(*) FROM marketing_contacts WHERE id = 204", before: "1", after: "0" },
                    // Customer 3 has an order not yet paid: the contract runs.
                    Check { sql: "SELECT count(*) FROM marketing_contacts WHERE id = 205", before: "1", after: "1" },
                    // Not a customer: not this rule's row.
                    Check { sql: "SELECT count(*) FROM marketing_contacts WHERE id = 203", before: "1", after: "1" },
                ],
                ..CASE
            },
            Case {
                rule: "jetpak-marketing-objections",
                day_before: "2026-06-09",
                day_of: "2026-06-10",
                checks: &[Check { sql: "SELECT count(*) FROM marketing_contacts WHERE id = 203", before: "1", after: "0" }],
                ..CASE
            },
            Case {
                rule: "jetpak-business-development",
                day_before: "2026-01-19",
                day_of: "2026-01-20",
                checks: &[
                    // Anonymised: the network stays for the statistics, the history goes.
                    Check { sql: "SELECT COALESCE(ip, 'NULL') FROM web_sessions WHERE id = 301", before: "192.0.2.1", after: "192.0.2.0" },
                    Check { sql: "SELECT COALESCE(browsing_history, 'NULL') FROM web_sessions WHERE id = 301", before: "/track,/prices", after: "NULL" },
                    // The customer's agreement is active: kept.
                    Check { sql: "SELECT COALESCE(ip, 'NULL') FROM web_sessions WHERE id = 302", before: "192.0.2.4", after: "192.0.2.4" },
                ],
                ..CASE
            },
            Case {
                rule: "jetpak-orders",
                year_end: JUNE,
                // Paid 2017-08-10: the financial year ends 2018-06-30, in the
                // calendar year 2018; 7 years from its end.
                day_before: "2025-12-31",
                day_of: "2026-01-01",
                checks: &[
                    Check { sql: "SELECT count(*) FROM orders WHERE id = 103", before: "1", after: "0" },
                    Check { sql: "SELECT count(*) FROM orders WHERE id = 102", before: "1", after: "1" },
                    // Customer 2's dispute holds its orders.
                    Check { sql: "SELECT count(*) FROM orders WHERE id = 203", before: "1", after: "1" },
                    // Never paid: the contract period runs.
                    Check { sql: "SELECT count(*) FROM orders WHERE id = 303", before: "1", after: "1" },
                ],
            },
            // 7 years from the end of the calendar year in which the
            // financial year ends.
            Case {
                rule: "jetpak-bookkeeping",
                year_end: JUNE,
                // Invoiced 2017-08-10: the financial year ends 2018-06-30,
                // in the calendar year 2018.
                day_before: "2025-12-31",
                day_of: "2026-01-01",
                checks: &[
                    Check { sql: "SELECT count(*) FROM invoices WHERE id = 1003", before: "1", after: "0" },
                    // Invoiced 2018-08-10: the financial year ends 2019-06-30.
                    Check { sql: "SELECT count(*) FROM invoices WHERE id = 1002", before: "1", after: "1" },
                    // Customer 2's dispute holds its invoice.
                    Check { sql: "SELECT count(*) FROM invoices WHERE id = 2001", before: "1", after: "1" },
                ],
            },
            Case {
                rule: "jetpak-bookkeeping",
                year_end: CALENDAR_YEAR,
                // Invoiced in 2018: 7 years from the end of 2018.
                day_before: "2025-12-31",
                day_of: "2026-01-01",
                checks: &[
                    Check { sql: "SELECT count(*) FROM invoices WHERE id = 1002", before: "1", after: "0" },
                    Check { sql: "SELECT count(*) FROM invoices WHERE id = 1004", before: "1", after: "1" },
                    Check { sql: "SELECT count(*) FROM invoices WHERE id = 2001", before: "1", after: "1" },
                    Check { sql: "SELECT count(*) FROM invoices WHERE id = 1001", before: "1", after: "1" },
                ],
            },
        ],
        &[
            // The policy's vector: invoice 2019-08-10, financial year =
            // calendar year: may go after 2026-12-31 (1003 and 1002 are
            // due already; 2001 is held).
            Ahead {
                rule: "jetpak-bookkeeping",
                year_end: CALENDAR_YEAR,
                day_before: "2026-12-31",
                day_of: "2027-01-01",
                due: (2, 3),
            },
            // With the year to 30 June: 2018-08-10 on 2027-01-01 and
            // 2019-08-10 on 2028-01-01.
            Ahead {
                rule: "jetpak-bookkeeping",
                year_end: JUNE,
                day_before: "2026-12-31",
                day_of: "2027-01-01",
                due: (1, 2),
            },
            Ahead {
                rule: "jetpak-bookkeeping",
                year_end: JUNE,
                day_before: "2027-12-31",
                day_of: "2028-01-01",
                due: (2, 3),
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn jma_on_nav() {
    let seed = Seed {
        dir: "004-jma",
        store: "jma",
    };
    check_seed(
        &seed,
        &[
            // "5 years from the end of the financial year the material
            // concerns": the agreement's end, and every ledger entry and
            // invoice of the customer.
            Case {
                rule: "jma-customers",
                // Agreement ended 2017-07-01: the financial year 2017/18.
                day_before: "2023-06-30",
                day_of: "2023-07-01",
                checks: &[
                    Check {
                        sql: "SELECT \"E-Mail\" \
                              FROM \"CRONUS International Ltd_$Customer\" WHERE \"No_\" = 'C00050'",
                        before: "kunde50@example.invalid",
                        after: "[redacted]",
                    },
                    // Ended in May 2017, but invoiced until 2020-07-01.
                    Check {
                        sql: "SELECT \"E-Mail\" \
                              FROM \"CRONUS International Ltd_$Customer\" WHERE \"No_\" = 'C00010'",
                        before: "kunde10@example.invalid",
                        after: "kunde10@example.invalid",
                    },
                ],
                ..CASE
            },
            Case {
                rule: "jma-customers",
                // A one-off buyer: no agreement end date (1753-01-01), last
                // invoiced 2019-03-01, in the year to 2019-06-30.
                day_before: "2024-06-30",
                day_of: "2024-07-01",
                checks: &[
                    Check {
                        sql: "SELECT \"E-Mail\" \
                              FROM \"CRONUS International Ltd_$Customer\" WHERE \"No_\" = 'C00040'",
                        before: "kunde40@example.invalid",
                        after: "[redacted]",
                    },
                    Check {
                        sql: "SELECT \"E-Mail\" \
                              FROM \"CRONUS International Ltd_$Customer\" WHERE \"No_\" = 'C00010'",
                        before: "kunde10@example.invalid",
                        after: "kunde10@example.invalid",
                    },
                ],
                ..CASE
            },
            Case {
                rule: "jma-customers",
                // The agreement ended in May 2017 (the policy's vector: kept
                // until at least 2022-06-30), but the last invoice was posted
                // 2020-07-01, in the year to 2021-06-30.
                day_before: "2026-06-30",
                day_of: "2026-07-01",
                checks: &[
                    Check {
                        sql: "SELECT \"E-Mail\" \
                              FROM \"CRONUS International Ltd_$Customer\" WHERE \"No_\" = 'C00010'",
                        before: "kunde10@example.invalid",
                        after: "[redacted]",
                    },
                    Check {
                        sql: "SELECT \"Comment\" FROM \"CRONUS International Ltd_$Customer\" WHERE \"No_\" = 'C00010'",
                        before: "Good customer",
                        after: "[redacted]",
                    },
                    // An open ledger entry: not yet paid, kept.
                    Check {
                        sql: "SELECT \"E-Mail\" FROM \"CRONUS International Ltd_$Customer\" WHERE \"No_\" = 'C00020'",
                        before: "kunde20@example.invalid",
                        after: "kunde20@example.invalid",
                    },
                    // No date at all (a blank end date, nothing posted): no
                    // usable date, never due; blank never reads as old.
                    Check {
                        sql: "SELECT \"E-Mail\" FROM \"CRONUS International Ltd_$Customer\" WHERE \"No_\" = 'C00030'",
                        before: "kunde30@example.invalid",
                        after: "kunde30@example.invalid",
                    },
                ],
                ..CASE
            },
            Case {
                rule: "jma-invoices",
                // Posted 2020-03-15, in the financial year ending 2020-06-30.
                day_before: "2025-06-30",
                day_of: "2025-07-01",
                checks: &[
                    Check {
                        sql: "SELECT \"Bill-to Name\" \
                              FROM \"CRONUS International Ltd_$Sales Invoice Header\" WHERE \"No_\" = 'SI-1001'",
                        before: "Kunde Ti",
                        after: "[redacted]",
                    },
                    Check {
                        sql: "SELECT \"Sell-to Contact\" \
                              FROM \"CRONUS International Ltd_$Sales Invoice Header\" WHERE \"No_\" = 'SI-1001'",
                        before: "Anne Ti",
                        after: "[redacted]",
                    },
                    // The bookkeeping stays: number and amount.
                    Check {
                        sql: "SELECT CONCAT(\"No_\", '/', CAST(\"Amount\" * 100 AS INTEGER)) FROM \"CRONUS International Ltd_$Sales Invoice Header\" WHERE \"No_\" = 'SI-1001'",
                        before: "SI-1001/125000",
                        after: "SI-1001/125000",
                    },
                    // Posted on 2020-07-01: the next financial year, a year later.
                    Check {
                        sql: "SELECT \"Bill-to Name\" FROM \"CRONUS International Ltd_$Sales Invoice Header\" WHERE \"No_\" = 'SI-1003'",
                        before: "Kunde Ti",
                        after: "Kunde Ti",
                    },
                ],
                ..CASE
            },
            Case {
                rule: "jma-credit-memos",
                // Posted 2018-09-01, in the financial year to 2019-06-30.
                day_before: "2024-06-30",
                day_of: "2024-07-01",
                checks: &[
                    Check {
                        sql: "SELECT \"Bill-to Name\" \
                              FROM \"CRONUS International Ltd_$Sales Cr_Memo Header\" WHERE \"No_\" = 'CM-1001'",
                        before: "Kunde Ti",
                        after: "[redacted]",
                    },
                    Check {
                        sql: "SELECT \"Sell-to Contact\" \
                              FROM \"CRONUS International Ltd_$Sales Cr_Memo Header\" WHERE \"No_\" = 'CM-1001'",
                        before: "Anne Ti",
                        after: "[redacted]",
                    },
                    Check {
                        sql: "SELECT CONCAT(\"No_\", '/', CAST(\"Amount\" * 100 AS INTEGER)) FROM \"CRONUS International Ltd_$Sales Cr_Memo Header\" WHERE \"No_\" = 'CM-1001'",
                        before: "CM-1001/20000",
                        after: "CM-1001/20000",
                    },
                    // Posted 2019-07-01: the next financial year.
                    Check {
                        sql: "SELECT \"Bill-to Name\" \
                              FROM \"CRONUS International Ltd_$Sales Cr_Memo Header\" WHERE \"No_\" = 'CM-1002'",
                        before: "Kunde Ti",
                        after: "Kunde Ti",
                    },
                ],
                ..CASE
            },
            Case {
                rule: "jma-contacts",
                // Named by no customer or document; last changed 2019-03-01.
                day_before: "2024-06-30",
                day_of: "2024-07-01",
                checks: &[
                    Check {
                        sql: "SELECT \"E-Mail\" \
                              FROM \"CRONUS International Ltd_$Contact\" WHERE \"No_\" = 'CT0002'",
                        before: "jens@example.invalid",
                        after: "[redacted]",
                    },
                    Check {
                        sql: "SELECT \"Job Title\" FROM \"CRONUS International Ltd_$Contact\" WHERE \"No_\" = 'CT0002'",
                        before: "IT-chef",
                        after: "[redacted]",
                    },
                    // C00010's primary contact, named on its invoices until 2020-07-01.
                    Check {
                        sql: "SELECT \"E-Mail\" \
                              FROM \"CRONUS International Ltd_$Contact\" WHERE \"No_\" = 'CT0001'",
                        before: "anne@example.invalid",
                        after: "anne@example.invalid",
                    },
                ],
                ..CASE
            },
            Case {
                rule: "jma-contacts",
                // The last invoice naming CT0001 was posted 2020-07-01.
                day_before: "2026-06-30",
                day_of: "2026-07-01",
                checks: &[Check {
                    sql: "SELECT \"E-Mail\" \
                              FROM \"CRONUS International Ltd_$Contact\" WHERE \"No_\" = 'CT0001'",
                    before: "anne@example.invalid",
                    after: "[redacted]",
                }],
                ..CASE
            },
            Case {
                rule: "jma-comment-lines",
                // C00040's comment has a blank date; the customer's last
                // invoice was posted 2019-03-01.
                day_before: "2024-06-30",
                day_of: "2024-07-01",
                checks: &[
                    Check {
                        sql: "SELECT count(*) FROM \"CRONUS International Ltd_$Comment Line\" WHERE \"Table Name\" = 1 AND \"No_\" = 'C00040'",
                        before: "1",
                        after: "0",
                    },
                    // C00010 was invoiced until 2020-07-01.
                    Check {
                        sql: "SELECT count(*) FROM \"CRONUS International Ltd_$Comment Line\" WHERE \"Table Name\" = 1 AND \"No_\" = 'C00010'",
                        before: "1",
                        after: "1",
                    },
                    // C00020 has an open ledger entry.
                    Check {
                        sql: "SELECT count(*) FROM \"CRONUS International Ltd_$Comment Line\" WHERE \"Table Name\" = 1 AND \"No_\" = 'C00020'",
                        before: "1",
                        after: "1",
                    },
                    // A comment on an item is not about a customer.
                    Check {
                        sql: "SELECT count(*) FROM \"CRONUS International Ltd_$Comment Line\" WHERE \"Table Name\" = 3 AND \"No_\" = 'ITEM-1'",
                        before: "1",
                        after: "1",
                    },
                ],
                ..CASE
            },
        ],
        &[],
    )
    .await;
}

#[tokio::test]
async fn web_agency() {
    let seed = Seed {
        dir: "001-web-agency",
        store: "agency",
    };
    check_seed(
        &seed,
        &[
            Case {
                rule: "agency-client-contacts",
                day_before: "2026-03-31",
                day_of: "2026-04-01",
                checks: &[
                    Check {
                        sql: "SELECT email FROM clients WHERE id = 1",
                        before: "klient1@example.invalid",
                        after: "[redacted]",
                    },
                    Check {
                        sql: "SELECT COALESCE(phone, 'NULL') FROM clients WHERE id = 1",
                        before: "+45 0000 0001",
                        after: "NULL",
                    },
                    Check {
                        sql: "SELECT COALESCE(company_name, 'NULL') FROM clients WHERE id = 1",
                        before: "Firma Et ApS",
                        after: "NULL",
                    },
                    Check {
                        sql: "SELECT COALESCE(cvr, 'NULL') FROM clients WHERE id = 1",
                        before: "00000001",
                        after: "NULL",
                    },
                    // Never ordered: 36 months after it was registered.
                    Check {
                        sql: "SELECT COALESCE(company_name, 'NULL') FROM clients WHERE id = 3",
                        before: "Klient Tre Design",
                        after: "NULL",
                    },
                    Check {
                        sql: "SELECT COALESCE(cvr, 'NULL') FROM clients WHERE id = 3",
                        before: "00000003",
                        after: "NULL",
                    },
                    Check {
                        sql: "SELECT cvr FROM clients WHERE id = 4",
                        before: "00000004",
                        after: "00000004",
                    },
                    // Its invoices stay, with their numbers and amounts.
                    Check {
                        sql: "SELECT CONCAT(invoice_no, '/', CAST(amount * 100 AS INTEGER)) FROM invoices WHERE id = 12",
                        before: "F-2023-012/420000",
                        after: "F-2023-012/420000",
                    },
                    Check {
                        sql: "SELECT email FROM clients WHERE id = 2",
                        before: "klient2@example.invalid",
                        after: "klient2@example.invalid",
                    },
                ],
                ..CASE
            },
            // 5 years from the end of the financial year the invoice
            // concerns, with the deployment's year end.
            Case {
                rule: "agency-bookkeeping",
                year_end: CALENDAR_YEAR,
                day_before: "2025-12-31",
                day_of: "2026-01-01",
                checks: &[
                    Check {
                        sql: "SELECT count(*) FROM invoices WHERE id = 14",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM invoices WHERE id = 13",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM invoices WHERE id = 11",
                        before: "1",
                        after: "0",
                    },
                    // 2021-01-01 belongs to the next year.
                    Check {
                        sql: "SELECT count(*) FROM invoices WHERE id = 22",
                        before: "1",
                        after: "1",
                    },
                    Check {
                        sql: "SELECT count(*) FROM invoices WHERE id = 21",
                        before: "1",
                        after: "1",
                    },
                ],
            },
            Case {
                rule: "agency-bookkeeping",
                year_end: JUNE,
                // 2020-09-01 to 2021-06-30 is the financial year 2020/21.
                day_before: "2026-06-30",
                day_of: "2026-07-01",
                checks: &[
                    Check {
                        sql: "SELECT count(*) FROM invoices WHERE id = 13",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM invoices WHERE id = 14",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM invoices WHERE id = 22",
                        before: "1",
                        after: "0",
                    },
                    // 2020-05-05: the year that ended 2020-06-30, due a year ago.
                    Check {
                        sql: "SELECT count(*) FROM invoices WHERE id = 11",
                        before: "0",
                        after: "0",
                    },
                    // 2021-07-01: the next financial year.
                    Check {
                        sql: "SELECT count(*) FROM invoices WHERE id = 23",
                        before: "1",
                        after: "1",
                    },
                ],
            },
            Case {
                rule: "agency-analytics",
                day_before: "2026-09-14",
                day_of: "2026-09-15",
                checks: &[
                    Check {
                        sql: "SELECT count(*) FROM analytics_events WHERE id = 31",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM analytics_events WHERE id = 32",
                        before: "1",
                        after: "1",
                    },
                ],
                ..CASE
            },
            Case {
                rule: "agency-cookie-consents",
                day_before: "2026-09-30",
                day_of: "2026-10-01",
                checks: &[
                    Check {
                        sql: "SELECT count(*) FROM cookie_consents WHERE id = 41",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM cookie_consents WHERE id = 42",
                        before: "1",
                        after: "1",
                    },
                ],
                ..CASE
            },
            Case {
                rule: "agency-contact-form-erasure",
                day_before: "2026-02-01",
                day_of: "2026-02-02",
                checks: &[
                    Check {
                        sql: "SELECT count(*) FROM contact_form_submissions WHERE id = 51",
                        before: "1",
                        after: "0",
                    },
                    Check {
                        sql: "SELECT count(*) FROM contact_form_submissions WHERE id = 52",
                        before: "1",
                        after: "1",
                    },
                ],
                ..CASE
            },
        ],
        &[
            // Calendar year: 2020-12-31 went on 2026-01-01 (with 11 and
            // 13); the three invoices of 2021 come due on 2027-01-01.
            Ahead {
                rule: "agency-bookkeeping",
                year_end: CALENDAR_YEAR,
                day_before: "2026-12-31",
                day_of: "2027-01-01",
                due: (3, 6),
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn just_apps() {
    let seed = Seed {
        dir: "000-just-apps",
        store: "justapps",
    };
    check_seed(
        &seed,
        &[
            Case {
                rule: "justapps-erasure-requests",
                day_before: "2026-03-02",
                day_of: "2026-03-03",
                checks: &[
                    Check { sql: "SELECT count(*) FROM contacts WHERE id = 1", before: "1", after: "0" },
                    Check { sql: "SELECT count(*) FROM email_tracking WHERE contact_id = 1", before: "1", after: "0" },
                    Check { sql: "SELECT count(*) FROM form_submissions WHERE contact_id = 1", before: "1", after: "0" },
                    Check { sql: "SELECT count(*) FROM event_registrations WHERE contact_id = 1", before: "1", after: "0" },
                    Check { sql: "SELECT count(*) FROM contacts WHERE id = 2", before: "1", after: "1" },
                    // Asked the same day, but a legal claim or a contract needs
                    // the data: held, with its tracking.
                    Check { sql: "SELECT count(*) FROM contacts WHERE id = 6", before: "1", after: "1" },
                    Check { sql: "SELECT count(*) FROM email_tracking WHERE contact_id = 6", before: "1", after: "1" },
                    Check {
                        sql: "SELECT CASE WHEN detail LIKE '%\"held_by\":[{\"name\":\"legal_hold\",\"rows\":1}]%' THEN 'kept 1' \
                              WHEN detail LIKE '%\"held_by\":[{\"name\":\"legal_hold\",\"rows\":0}]%' THEN 'kept 0' ELSE detail END \
                              FROM glemsel_audit WHERE event = 'run_finish' ORDER BY seq DESC LIMIT 1",
                        before: "kept 0",
                        after: "kept 1",
                    },
                ],
                ..CASE
            },
            Case {
                rule: "justapps-opt-out-tracking",
                day_before: "2026-04-03",
                day_of: "2026-04-04",
                checks: &[
                    Check { sql: "SELECT count(*) FROM email_tracking WHERE contact_id = 2", before: "2", after: "0" },
                    // The opted-out contact itself stays: the opt-out is remembered.
                    Check { sql: "SELECT count(*) FROM contacts WHERE id = 2", before: "1", after: "1" },
                    Check { sql: "SELECT count(*) FROM email_tracking WHERE contact_id = 5", before: "3", after: "3" },
                ],
                ..CASE
            },
            // Tracking of contacts who never opt out.
            Case {
                rule: "justapps-email-tracking",
                day_before: "2026-05-04",
                day_of: "2026-05-05",
                checks: &[
                    Check { sql: "SELECT count(*) FROM email_tracking WHERE id = 52", before: "1", after: "0" },
                    Check { sql: "SELECT count(*) FROM email_tracking WHERE id = 53", before: "1", after: "1" },
                    Check { sql: "SELECT count(*) FROM contacts WHERE id = 5", before: "1", after: "1" },
                ],
                ..CASE
            },
            // A form sent by someone who is no contact: visitor data.
            Case {
                rule: "justapps-visitor-forms",
                day_before: "2026-07-06",
                day_of: "2026-07-07",
                checks: &[
                    Check { sql: "SELECT count(*) FROM form_submissions WHERE id = 71", before: "1", after: "0" },
                    Check { sql: "SELECT count(*) FROM form_submissions WHERE id = 72", before: "1", after: "1" },
                    // A customer's form, older still: the contact's rule.
                    Check { sql: "SELECT count(*) FROM form_submissions WHERE id = 81", before: "1", after: "1" },
                ],
                ..CASE
            },
            // A customer's form: interaction history, with the contact.
            Case {
                rule: "justapps-contact-forms",
                // Contact 4's last interaction was 2021-08-08.
                day_before: "2026-08-07",
                day_of: "2026-08-08",
                checks: &[
                    Check { sql: "SELECT count(*) FROM form_submissions WHERE id = 81", before: "1", after: "0" },
                    // Sent earlier still, but contact 5 was in touch in 2024.
                    Check { sql: "SELECT count(*) FROM form_submissions WHERE id = 82", before: "1", after: "1" },
                    // A visitor's form is the visitor rule's.
                    Check { sql: "SELECT count(*) FROM form_submissions WHERE id = 71", before: "1", after: "1" },
                ],
                ..CASE
            },
            Case {
                rule: "justapps-leads",
                // Last interaction 2024-05-05: 24 months later.
                day_before: "2026-05-04",
                day_of: "2026-05-05",
                checks: &[
                    Check { sql: "SELECT count(*) FROM contacts WHERE id = 3", before: "1", after: "0" },
                    Check { sql: "SELECT count(*) FROM form_submissions WHERE contact_id = 3", before: "1", after: "0" },
                    // The same dates, but a customer: not a lead.
                    Check { sql: "SELECT count(*) FROM contacts WHERE id = 5", before: "1", after: "1" },
                ],
                ..CASE
            },
            Case {
                rule: "justapps-event-registrations",
                day_before: "2026-06-05",
                day_of: "2026-06-06",
                checks: &[
                    Check { sql: "SELECT count(*) FROM event_registrations WHERE id = 41", before: "1", after: "0" },
                    Check { sql: "SELECT count(*) FROM event_registrations WHERE id = 42", before: "1", after: "1" },
                ],
                ..CASE
            },
            Case {
                rule: "justapps-web-visits",
                day_before: "2026-07-06",
                day_of: "2026-07-07",
                checks: &[
                    Check { sql: "SELECT count(*) FROM web_visits WHERE id = 61", before: "1", after: "0" },
                    Check { sql: "SELECT count(*) FROM web_visits WHERE id = 62", before: "1", after: "1" },
                ],
                ..CASE
            },
            Case {
                rule: "justapps-customer-contacts",
                day_before: "2026-08-07",
                day_of: "2026-08-08",
                checks: &[
                    Check { sql: "SELECT name FROM contacts WHERE id = 4", before: "Kunde Fire", after: "[redacted]" },
                    Check {
                        sql: "SELECT COALESCE(email, 'NULL') FROM contacts WHERE id = 4",
                        before: "kunde4@example.invalid",
                        after: "NULL",
                    },
                    Check { sql: "SELECT COALESCE(job_title, 'NULL') FROM contacts WHERE id = 4", before: "Direktør", after: "NULL" },
                    Check { sql: "SELECT email FROM contacts WHERE id = 5", before: "kunde5@example.invalid", after: "kunde5@example.invalid" },
                ],
                ..CASE
            },
        ],
        &[],
    )
    .await;
}

/// ITJ's erasure on request (10.5), end to end on both servers: the
/// account found by e-mail goes with its tickets and their messages, the
/// deadline is 3 working days, and purchases (contract, bookkeeping act)
/// stay; a buyer's request matches nothing and is recorded.
#[tokio::test]
async fn itj_consult_erasure() {
    let seed = Seed {
        dir: "003-itj-consult",
        store: "itj",
    };
    let rule_files: Vec<PathBuf> = std::fs::read_dir(repo().join("rules").join(seed.dir))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    let fixtures = repo().join("tests/fixtures").join(seed.dir);
    let data = std::fs::read_to_string(fixtures.join("data.sql")).unwrap();
    for (kind, schema_file) in [
        (Kind::Postgres, "postgres.sql"),
        (Kind::Mariadb, "mariadb.sql"),
    ] {
        let Some(db) = TestDb::create(kind, "seed").await else {
            continue;
        };
        db.exec(&std::fs::read_to_string(fixtures.join(schema_file)).unwrap())
            .await;
        db.exec(&data).await;
        let project = project(&db, &seed, &rule_files, JUNE);
        // Friday 20 November 2026: Monday, Tuesday, Wednesday.
        let add = project.glemsel(&[
            "erase",
            "add",
            "--subject",
            "email=konto42@example.invalid",
            "--received",
            "2026-11-20",
        ]);
        assert_eq!(code(&add), 0, "{kind:?}: {}", text(&add));
        assert_contains(&text(&add), "deadline 2026-11-25");
        let add = project.glemsel(&[
            "erase",
            "add",
            "--subject",
            "email=anne@example.invalid",
            "--received",
            "2026-11-20",
        ]);
        assert_eq!(code(&add), 0, "{kind:?}: {}", text(&add));
        let plan = project.glemsel(&["erase", "plan"]);
        let out = text(&plan);
        assert_eq!(code(&plan), 0, "{kind:?}: {out}");
        assert_contains(
            &out,
            "itj.support_tickets: 3 found; 3 deleted; also deletes 4 rows of ticket_messages",
        );
        assert_contains(&out, "itj.support_accounts: 1 found; 1 deleted");
        // Anne only bought something: the contract keeps that.
        assert_contains(&out, "matches no row in any declared table");
        let purchases = "SELECT * FROM purchases ORDER BY id";
        let purchases_before = db.rows(purchases).await;
        let run = project.glemsel(&["erase", "run"]);
        assert_eq!(code(&run), 0, "{kind:?}: {}", text(&run));
        assert_contains(
            &text(&run),
            "erasure-0001: 4 rows found, 4 changed, 4 related rows deleted; done",
        );
        let ids = |sql: &'static str| {
            let db = &db;
            async move {
                db.column(sql)
                    .await
                    .into_iter()
                    .map(Option::unwrap)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            ids("SELECT id FROM support_accounts ORDER BY id").await,
            ["21", "22", "23", "41"]
        );
        assert_eq!(
            ids("SELECT id FROM support_tickets ORDER BY id").await,
            ["31", "32", "33", "35"]
        );
        assert_eq!(
            ids("SELECT id FROM ticket_messages ORDER BY id").await,
            ["311", "321", "331"]
        );
        assert_eq!(
            db.rows(purchases).await,
            purchases_before,
            "purchases are untouched"
        );
        db.drop().await;
    }
}

/// Every seed set's `[[subject]]` fits its fixture on both servers: a
/// request for one of its people is planned and run, and changes exactly
/// what the plan said.
#[tokio::test]
async fn seed_subjects_fit_their_fixtures() {
    struct Request {
        seed: Seed,
        email: &'static str,
        plan: &'static [&'static str],
        run: &'static str,
        /// Counts the person's data still there: must be 0.
        gone: &'static str,
        /// The request's batch rows: table, action, rows.
        audit: &'static [(&'static str, &'static str, &'static str)],
    }
    let requests = [
        Request {
            seed: Seed {
                dir: "000-just-apps",
                store: "justapps",
            },
            email: "emne1@example.invalid",
            plan: &[
                "justapps.contacts: 1 found; 1 deleted; also deletes 1 rows of email_tracking; also deletes 1 rows of form_submissions; also deletes 1 rows of event_registrations",
            ],
            run: "erasure-0001: 1 rows found, 1 changed, 3 related rows deleted; done",
            gone: "SELECT count(*) FROM contacts WHERE id = 1",
            audit: &[("contacts", "delete", "1")],
        },
        Request {
            seed: Seed {
                dir: "000-just-apps",
                store: "justapps",
            },
            email: "kunde6@example.invalid",
            plan: &["justapps.contacts: 1 found; 1 kept under a hold"],
            run: "erasure-0001: 1 rows found, 0 changed; partly done",
            gone: "SELECT count(*) - 1 FROM contacts WHERE id = 6",
            audit: &[],
        },
        Request {
            seed: Seed {
                dir: "002-jetpak",
                store: "jetpak",
            },
            email: "emne1@example.invalid",
            plan: &["jetpak.marketing_contacts: 1 found; 1 deleted"],
            run: "erasure-0001: 1 rows found, 1 changed; done",
            gone: "SELECT count(*) FROM marketing_contacts WHERE id = 201",
            audit: &[("marketing_contacts", "delete", "1")],
        },
        // A client whose invoices stay for the bookkeeping period: the
        // client row stays too, its contact data redacted or NULL.
        Request {
            seed: Seed {
                dir: "001-web-agency",
                store: "agency",
            },
            email: "klient2@example.invalid",
            plan: &["agency.clients: 1 found; 1 anonymised"],
            run: "erasure-0001: 1 rows found, 1 changed; done",
            gone: "SELECT count(*) FROM clients WHERE id = 2 AND NOT (name = '[redacted]' AND email = '[redacted]' \
                   AND phone IS NULL AND address IS NULL AND company_name IS NULL AND cvr IS NULL AND billing_address IS NULL) \
                   OR (SELECT count(*) FROM invoices WHERE client_id = 2) <> 3",
            audit: &[("clients", "anonymise", "1")],
        },
        // A NAV customer: the card stays (its ledger entries and posted
        // documents point at it), its personal data redacted.
        Request {
            seed: Seed {
                dir: "004-jma",
                store: "jma",
            },
            email: "kunde20@example.invalid",
            plan: &["jma.CRONUS International Ltd_$Customer: 1 found; 1 anonymised"],
            run: "erasure-0001: 1 rows found, 1 changed; done",
            gone: "SELECT count(*) FROM \"CRONUS International Ltd_$Customer\" WHERE \"No_\" = 'C00020' \
                   AND NOT (\"Name\" = '[redacted]' AND \"E-Mail\" = '[redacted]' AND \"Phone No_\" = '[redacted]' \
                   AND \"Address\" = '[redacted]' AND \"Contact\" = '[redacted]')",
            audit: &[("CRONUS International Ltd_$Customer", "anonymise", "1")],
        },
    ];
    for request in &requests {
        let seed = &request.seed;
        let rule_files: Vec<PathBuf> = std::fs::read_dir(repo().join("rules").join(seed.dir))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "toml"))
            .collect();
        let fixtures = repo().join("tests/fixtures").join(seed.dir);
        for (kind, schema) in [
            (Kind::Postgres, "postgres.sql"),
            (Kind::Mariadb, "mariadb.sql"),
        ] {
            let Some(db) = TestDb::create(kind, "seed").await else {
                continue;
            };
            db.exec(&std::fs::read_to_string(fixtures.join(schema)).unwrap())
                .await;
            db.exec(&std::fs::read_to_string(fixtures.join("data.sql")).unwrap())
                .await;
            let project = project(&db, seed, &rule_files, JUNE);
            let subject = format!("email={}", request.email);
            let add = project.glemsel(&["erase", "add", "--subject", &subject]);
            assert_eq!(code(&add), 0, "{} {kind:?}: {}", seed.dir, text(&add));
            let plan = project.glemsel(&["erase", "plan"]);
            assert_eq!(code(&plan), 0, "{} {kind:?}: {}", seed.dir, text(&plan));
            for line in request.plan {
                assert_contains(&text(&plan), line);
            }
            let run = project.glemsel(&["erase", "run"]);
            assert_eq!(code(&run), 0, "{} {kind:?}: {}", seed.dir, text(&run));
            assert_contains(&text(&run), request.run);
            assert_eq!(
                db.number(request.gone).await,
                0,
                "{} {kind:?}: {}",
                seed.dir,
                request.gone
            );
            let batches: Vec<Vec<Option<String>>> = request
                .audit
                .iter()
                .map(|(table, action, rows)| {
                    vec![
                        Some(table.to_string()),
                        Some(action.to_string()),
                        Some(rows.to_string()),
                    ]
                })
                .collect();
            assert_eq!(
                db.rows("SELECT table_name, action, rows_affected FROM glemsel_audit WHERE event = 'batch' AND rule_id = 'erasure-0001' ORDER BY seq").await,
                batches,
                "{} {kind:?}",
                seed.dir
            );
            db.drop().await;
        }
    }
}
