//! The HMAC key never reaches a database server, in any form: not in
//! PostgreSQL's statement log (every statement logged, with parameters, for
//! a role that is no superuser and so cannot turn parameter logging off),
//! not in MariaDB's binary log (MIXED, statement text annotated), general
//! log or slow log. `tests/servers.sh` starts the servers with those logs on
//! and says where they are.

mod common;

use std::path::PathBuf;

use common::{KEY, Kind, Project, TestDb, code, server_url, text};
use glemsel::pseudonym::{ColumnAction, HmacKey, TokenShape};

const PEOPLE: &str = "
CREATE TABLE people (id INTEGER PRIMARY KEY, name VARCHAR(80), email VARCHAR(120), created DATE);
INSERT INTO people (id, name, email, created) VALUES
    (1, 'Jens Hansen', 'jens@example.invalid', '2015-01-01'),
    (2, 'Søren Æbelø', 'soren@example.invalid', '2015-02-01'),
    (3, 'Recent Person', 'recent@example.invalid', '2026-01-01');
";

const RULE: &str = r#"
[[rule]]
id = "people"
store = "db"
table = "people"
category = "test"
after = "created"
retain = "5 years"
action = "pseudonymise"
columns = { name = "hmac", email = "hmac_email" }
"#;

/// Every form in which the key could leak: as text, as hex, and HMAC's two
/// padded key blocks (either gives the key) raw and as hex.
fn needles() -> Vec<(String, Vec<u8>)> {
    let (inner, outer) = common::key_pad_blocks();
    let mut needles = vec![("the key".to_string(), KEY.as_bytes().to_vec())];
    for (name, bytes) in [
        ("the key", KEY.as_bytes().to_vec()),
        ("the inner pad block", inner.clone()),
        ("the outer pad block", outer.clone()),
    ] {
        needles.push((format!("{name} as hex"), hex::encode(&bytes).into_bytes()));
        needles.push((
            format!("{name} as HEX"),
            hex::encode_upper(&bytes).into_bytes(),
        ));
    }
    // The key's own bytes make up most of each block; 24 of them are enough.
    needles.push(("the inner pad block".into(), inner[..24].to_vec()));
    needles.push(("the outer pad block".into(), outer[..24].to_vec()));
    needles
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// How long each log file is now, so only what a test adds is searched (the
/// benchmark's in-database baseline, run on the same servers, hashes with
/// the pad blocks on purpose).
fn log_lengths(files: &[PathBuf]) -> Vec<(PathBuf, u64)> {
    files
        .iter()
        .map(|f| (f.clone(), std::fs::metadata(f).map_or(0, |m| m.len())))
        .collect()
}

/// What was appended to the logs since `before`, new files included.
fn logged_since(kind: Kind, before: &[(PathBuf, u64)]) -> Vec<u8> {
    let mut logged = Vec::new();
    for file in log_files(kind).unwrap_or_default() {
        let start = before
            .iter()
            .find(|(f, _)| *f == file)
            .map_or(0, |(_, len)| *len as usize);
        let bytes = std::fs::read(&file).unwrap_or_default();
        logged.extend_from_slice(bytes.get(start..).unwrap_or_default());
    }
    logged
}

/// The server's log files, from the variable `tests/servers.sh` exports.
fn log_files(kind: Kind) -> Option<Vec<PathBuf>> {
    match kind {
        Kind::Postgres => server_url("GLEMSEL_TEST_PG_LOG").map(|file| vec![PathBuf::from(file)]),
        Kind::Mariadb => server_url("GLEMSEL_TEST_MYSQL_LOGS").map(|dir| {
            std::fs::read_dir(dir)
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .filter(|path| {
                    let name = path.file_name().unwrap().to_string_lossy();
                    name.starts_with("binlog.0") || name.ends_with(".log")
                })
                .collect()
        }),
        Kind::Sqlite => Some(Vec::new()),
    }
}

/// A PostgreSQL database owned by a role that is no superuser, with every
/// statement of that database logged with its parameters.
async fn logged_postgres_project(db: &TestDb) -> Project {
    let role = format!("{}_app", db.name);
    db.exec(&format!(
        "CREATE ROLE \"{role}\" LOGIN PASSWORD 'app-password' NOSUPERUSER;
         GRANT ALL ON SCHEMA public TO \"{role}\";
         ALTER TABLE people OWNER TO \"{role}\";
         ALTER DATABASE \"{db}\" SET log_min_duration_statement = 0;
         ALTER DATABASE \"{db}\" SET log_statement = 'all';
         ALTER DATABASE \"{db}\" SET log_parameter_max_length = -1;
         ALTER DATABASE \"{db}\" SET log_parameter_max_length_on_error = -1;",
        db = db.name
    ))
    .await;
    let url = db
        .url
        .replacen("postgres@", &format!("{role}:app-password@"), 1);
    Project::new("postgres", "db", &url, "")
}

#[tokio::test]
async fn the_key_never_reaches_a_server_log() {
    for kind in [Kind::Postgres, Kind::Mariadb] {
        let Some(files) = log_files(kind) else {
            return;
        };
        let Some(db) = TestDb::create(kind, "secrets").await else {
            return;
        };
        db.exec(PEOPLE).await;
        let before = log_lengths(&files);
        let project = match kind {
            Kind::Postgres => logged_postgres_project(&db).await,
            _ => Project::for_db(&db, "db", ""),
        };
        project.rules("people.toml", RULE);
        for args in [
            &["check"][..],
            &["plan", "--as-of", "2025-06-01T00:00:00Z"],
            &["run", "--as-of", "2025-06-01T00:00:00Z"],
        ] {
            let out = project.glemsel(args);
            assert_eq!(code(&out), 0, "{kind:?} {args:?}: {}", text(&out));
        }
        // The run did its work: two rows hold the reference tokens.
        let key = HmacKey::from_bytes(KEY.as_bytes().to_vec());
        let name = TokenShape::for_column(ColumnAction::Hmac, Some(80)).unwrap();
        let email = TokenShape::for_column(ColumnAction::HmacEmail, Some(120)).unwrap();
        assert_eq!(
            db.rows("SELECT name, email FROM people ORDER BY id").await,
            vec![
                vec![
                    Some(name.token(&key, "Jens Hansen")),
                    Some(email.token(&key, "jens@example.invalid"))
                ],
                vec![
                    Some(name.token(&key, "Søren Æbelø")),
                    Some(email.token(&key, "soren@example.invalid"))
                ],
                vec![
                    Some("Recent Person".into()),
                    Some("recent@example.invalid".into())
                ],
            ],
            "{kind:?}"
        );
        // Give the servers a moment to write their logs out.
        if kind == Kind::Mariadb {
            db.exec("FLUSH BINARY LOGS").await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let logged = logged_since(kind, &before);
        // The logs are on and saw glemsel's writes (or this proves nothing).
        let written = name.token(&key, "Jens Hansen");
        assert!(
            contains(&logged, written.as_bytes()),
            "{kind:?}: the server logs {files:?} do not show glemsel's statements"
        );
        for (what, needle) in needles() {
            assert!(
                !contains(&logged, &needle),
                "{kind:?}: {what} is in the server's logs {files:?}"
            );
        }
        db.drop().await;
    }
}

/// Server errors can quote a row's value (PostgreSQL's `invalid input
/// syntax for type integer: "..."`, MariaDB's `Duplicate entry '...'`):
/// output and the audit trail carry the error code and names, never it.
#[tokio::test]
async fn errors_never_quote_row_values() {
    let key = HmacKey::from_bytes(KEY.as_bytes().to_vec());
    let email = TokenShape::for_column(ColumnAction::HmacEmail, Some(120)).unwrap();
    let existing = email.token(&key, "jens@example.invalid");
    for kind in [Kind::Postgres, Kind::Mariadb] {
        let Some(db) = TestDb::create(kind, "error_values").await else {
            return;
        };
        db.exec(&format!(
            "CREATE TABLE people (id INTEGER PRIMARY KEY, name VARCHAR(80), email VARCHAR(120) UNIQUE, created DATE);
             INSERT INTO people VALUES (1, 'Jens Hansen', 'jens@example.invalid', '2015-01-01'),
                                       (2, 'Ole Olsen', '{existing}', '2026-01-01');"
        ))
        .await;
        let project = Project::for_db(&db, "db", "");
        let (rules, expected_code) = match kind {
            // A data exception at the dry run: the value is in the message.
            Kind::Postgres => (
                "[[rule]]\nid = \"people\"\nstore = \"db\"\ntable = \"people\"\ncategory = \"test\"\nafter = \"created\"\nretain = \"1 year\"\nwhere = \"CAST(name AS integer) > 0\"\naction = \"delete\"\n",
                "22P02",
            ),
            // A duplicate key in a batch: the new value is in the message.
            _ => (
                "[[rule]]\nid = \"people\"\nstore = \"db\"\ntable = \"people\"\ncategory = \"test\"\nafter = \"created\"\nretain = \"1 year\"\naction = \"pseudonymise\"\ncolumns = { email = \"hmac_email\" }\n",
                "1062",
            ),
        };
        project.rules("people.toml", rules);
        let args: &[&str] = match kind {
            Kind::Postgres => &["plan", "--as-of", "2025-06-01"],
            _ => &["run", "--as-of", "2025-06-01"],
        };
        let out = project.glemsel_with_env(args, &[("GLEMSEL_LOG", "trace")]);
        let shown = text(&out);
        assert_eq!(code(&out), 1, "{kind:?}: {shown}");
        assert!(shown.contains(expected_code), "{kind:?}: {shown}");
        // A dry run writes no trail; a run records its failure there.
        let trail: Vec<String> = match kind {
            Kind::Postgres => Vec::new(),
            _ => db
                .rows("SELECT detail FROM glemsel_audit")
                .await
                .into_iter()
                .flatten()
                .flatten()
                .collect(),
        };
        if kind == Kind::Mariadb {
            assert!(
                trail.iter().any(|d| d.contains(expected_code)),
                "the failure is recorded: {trail:?}"
            );
        }
        for value in ["Jens Hansen", "jens@example.invalid", existing.as_str()] {
            assert!(!shown.contains(value), "{kind:?}: {value} in {shown}");
            assert!(
                !trail.iter().any(|d| d.contains(value)),
                "{kind:?}: {value} in {trail:?}"
            );
        }
        db.drop().await;
    }
}

/// Where plaintext of the rows a rule changes survives the run is named by
/// `check` and `plan`, rule by rule, with what to do; `--deny-warnings`
/// makes it fail CI. (The test servers keep MariaDB's binary log without
/// expiry and its general and slow logs on.)
#[tokio::test]
async fn copies_that_survive_a_run_are_named() {
    for kind in [Kind::Postgres, Kind::Mariadb, Kind::Sqlite] {
        let Some(db) = TestDb::create(kind, "copies").await else {
            return;
        };
        db.exec(PEOPLE).await;
        db.exec("CREATE TABLE people_log (id INTEGER, name VARCHAR(80))")
            .await;
        db.exec(match kind {
            Kind::Postgres => {
                "CREATE FUNCTION keep_copy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO people_log VALUES (OLD.id, OLD.name); RETURN NEW; END $$;
                 CREATE TRIGGER people_copy BEFORE UPDATE ON people FOR EACH ROW EXECUTE FUNCTION keep_copy();
                 CREATE PUBLICATION people_pub FOR TABLE people;"
            }
            Kind::Mariadb => {
                "CREATE TRIGGER people_copy BEFORE UPDATE ON people FOR EACH ROW INSERT INTO people_log VALUES (OLD.id, OLD.name)"
            }
            Kind::Sqlite => {
                "CREATE TRIGGER people_copy BEFORE UPDATE ON people BEGIN INSERT INTO people_log VALUES (OLD.id, OLD.name); END"
            }
        })
        .await;
        // Debian's MariaDB expires binary logs after 10 days; a promise of
        // 5 makes that worth a warning.
        let project = Project::for_db(&db, "db", "copies_max_log_days = 5");
        project.rules("people.toml", RULE);
        let check = project.glemsel(&["check"]);
        assert_eq!(code(&check), 0, "{kind:?}: {}", text(&check));
        let shown = text(&check);
        assert!(
            shown.contains("warning: rule people (store db): triggers on people (people_copy) may copy the rows elsewhere"),
            "{kind:?}: {shown}"
        );
        match kind {
            Kind::Postgres => {
                assert!(
                    shown.contains("people is published (people_pub)"),
                    "{shown}"
                );
                assert!(shown.contains("set vacuum_after = true"), "{shown}");
            }
            Kind::Mariadb => {
                assert!(shown.contains("the binary log (binlog_row_image = FULL) keeps the changed rows' old values for "), "{shown}");
                assert!(shown.contains("the general query log is on"), "{shown}");
                assert!(shown.contains("the slow query log is on"), "{shown}");
            }
            Kind::Sqlite => {}
        }
        let denied = project.glemsel(&["check", "--deny-warnings"]);
        assert_eq!(code(&denied), 5, "{kind:?}: {}", text(&denied));
        let plan = project.glemsel(&[
            "plan",
            "--format",
            "json",
            "--as-of",
            "2025-06-01",
            "--deny-warnings",
        ]);
        assert_eq!(code(&plan), 5, "{kind:?}: {}", text(&plan));
        let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
        assert!(
            plan["warnings"].as_array().is_some_and(|w| w
                .iter()
                .any(|w| w.as_str().unwrap().contains("people_copy"))),
            "{kind:?}: {plan}"
        );
        db.drop().await;
    }
}

/// `vacuum_after` reclaims the old row versions a pseudonymisation leaves
/// in PostgreSQL's pages, and the run says it did.
#[tokio::test]
async fn vacuum_after_reclaims_old_row_versions() {
    let Some(db) = TestDb::create(Kind::Postgres, "vacuum").await else {
        return;
    };
    db.exec(PEOPLE).await;
    let project = Project::for_db(&db, "db", "");
    project.rules("people.toml", &format!("{RULE}vacuum_after = true\n"));
    let check = project.glemsel(&["check"]);
    assert!(!text(&check).contains("vacuum_after"), "{}", text(&check));
    let run = project.glemsel(&["run", "--as-of", "2025-06-01", "--format", "json"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["rules"][0]["vacuumed"], true, "{report}");
    // No dead row versions (with the plaintext) are left in its pages...
    db.exec("CREATE EXTENSION IF NOT EXISTS pgstattuple").await;
    let dead = "SELECT dead_tuple_count FROM pgstattuple('people')";
    assert_eq!(db.column(dead).await, [Some("0".into())]);
    // ... as an update without it would leave them.
    db.exec("UPDATE people SET name = 'Other' WHERE id = 3")
        .await;
    assert_eq!(db.column(dead).await, [Some("1".into())]);
}
