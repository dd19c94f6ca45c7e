//! What glemsel must do alike on every engine, each test one body run as a
//! test of its own on PostgreSQL, MariaDB and SQLite (`every_engine!`):
//! every data-changing path checked row by row with its audit rows, the
//! tokens against the reference, tampering with the trail, schema
//! mismatches, invalid files, guards, secrets and the seed vectors at their
//! boundaries. `tests/engines.rs` compares whole outcomes across engines;
//! what only one engine has lives in `tests/postgres.rs` and
//! `tests/mariadb.rs`.

#[macro_use]
mod common;

use std::collections::BTreeMap;

use common::{
    KEY, Kind, Project, TestDb, assert_contains, assert_lacks, code, contacts_rule, text, texts,
};
use glemsel::pseudonym::{ColumnAction, HmacKey, TokenShape};

const CUSTOMERS: &str = "
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name VARCHAR(80),
    email VARCHAR(120),
    phone VARCHAR(40),
    note VARCHAR(200),
    status VARCHAR(20) NOT NULL,
    contract_ended DATE,
    legal_hold BOOLEAN NOT NULL DEFAULT FALSE
);
INSERT INTO customers (id, name, email, phone, note, status, contract_ended, legal_hold) VALUES
    (1, 'Jens Hansen',   'jens@example.invalid',  '+45 11', 'VIP',  'closed', '2019-03-01', FALSE),
    (2, 'Søren Æbelø',   'soren@example.invalid', '+45 22', NULL,   'closed', '2019-06-30', FALSE),
    (3, 'Held Person',   'held@example.invalid',  '+45 33', 'x',    'closed', '2019-01-01', TRUE),
    (4, 'No Date',       'nodate@example.invalid','+45 44', 'y',    'closed', NULL,         FALSE),
    (5, 'Still Active',  'active@example.invalid','+45 55', 'z',    'active', '2019-01-01', FALSE),
    (6, 'Recent',        'recent@example.invalid','+45 66', NULL,   'closed', '2023-07-01', FALSE),
    (7, NULL,            NULL,                    NULL,     NULL,   'closed', '2020-06-30', FALSE);
";

/// A fresh database of `kind` holding `schema`, or `None` to skip.
async fn setup(kind: Kind, prefix: &str, schema: &str) -> Option<TestDb> {
    let db = TestDb::create(kind, prefix).await?;
    db.exec(schema).await;
    Some(db)
}

/// The ids left in `customers`, in order.
async fn customer_ids(db: &TestDb) -> Vec<Option<String>> {
    db.column("SELECT id FROM customers ORDER BY id").await
}

/// (event, rows_affected) of every audit row, in chain order.
async fn audit_rows(db: &TestDb) -> Vec<(String, i64)> {
    db.rows("SELECT event, rows_affected FROM glemsel_audit ORDER BY seq")
        .await
        .into_iter()
        .map(|r| {
            (
                r[0].clone().unwrap(),
                r[1].as_deref().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// A query's second column by its first (an integer id).
async fn by_id(db: &TestDb, sql: &str) -> BTreeMap<i64, Option<String>> {
    db.rows(sql)
        .await
        .into_iter()
        .map(|r| (r[0].as_deref().unwrap().parse().unwrap(), r[1].clone()))
        .collect()
}

fn token(action: ColumnAction, max_len: Option<usize>, value: &str) -> String {
    let key = HmacKey::from_bytes(KEY.as_bytes().to_vec());
    TokenShape::for_column(action, max_len)
        .unwrap()
        .token(&key, value)
}

every_engine! {
    async fn delete_removes_exactly_the_due_rows_and_audits_them(kind) {
        let Some(db) = setup(kind, "delete", CUSTOMERS).await else {
            return;
        };
        let project = Project::for_db(&db, "shop", "");
        project.rules("shop.toml", &contacts_rule("action = \"delete\""));

        let plan = project.glemsel(&["plan", "--as-of", "2026-11-22"]);
        assert_eq!(code(&plan), 0, "{}", text(&plan));
        let plan_text = text(&plan);
        assert_contains(
            &plan_text,
            "rows      3 due, 1 held, 1 with no usable date, 7 in the table",
        );
        assert_contains(&plan_text, "due when  contract_ended < 2023-07-01");
        // A dry run changes nothing and writes no audit table.
        assert_eq!(customer_ids(&db).await, texts(&[1, 2, 3, 4, 5, 6, 7]));
        assert!(!db.has_audit_table().await);

        let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        assert_contains(&text(&run), "deleted 3 rows");
        // 1, 2 and 7 are due; 3 is held, 4 has no date, 5 is out of scope, 6 is recent.
        assert_eq!(customer_ids(&db).await, texts(&[3, 4, 5, 6]));

        let audit = audit_rows(&db).await;
        assert_eq!(audit.first().unwrap().0, "run_start");
        assert_eq!(audit.last().unwrap(), &("run_finish".to_string(), 3));
        let batch_sum: i64 = audit
            .iter()
            .filter(|(e, _)| e == "batch")
            .map(|(_, n)| n)
            .sum();
        assert_eq!(batch_sum, 3);
        let finish = db
            .rows(
                "SELECT rule_id, table_name, action, cutoff, detail FROM glemsel_audit WHERE event = 'run_finish'",
            )
            .await;
        assert_eq!(finish.len(), 1, "{finish:?}");
        let finish: Vec<String> = finish[0].iter().map(|v| v.clone().unwrap()).collect();
        assert_eq!(
            finish[..4],
            [
                "customers-after-contract",
                "customers",
                "delete",
                "contract_ended < 2023-07-01"
            ]
        );
        assert_contains(&finish[4], "\"held\":1");

        // A second run finds nothing due and changes nothing.
        let again = project.glemsel(&["run", "--as-of", "2026-11-22"]);
        assert_eq!(code(&again), 0, "{}", text(&again));
        assert_eq!(customer_ids(&db).await, texts(&[3, 4, 5, 6]));
        assert_eq!(
            audit_rows(&db).await.last().unwrap(),
            &("run_finish".to_string(), 0)
        );

        let verify = project.glemsel(&["audit", "verify"]);
        assert_eq!(code(&verify), 0, "{}", text(&verify));
        db.drop().await;
    }
}

every_engine! {
    async fn pseudonymise_changes_only_the_named_columns_of_due_rows_once(kind) {
        let Some(db) = setup(kind, "pseudonymise", CUSTOMERS).await else {
            return;
        };
        let project = Project::for_db(&db, "shop", "");
        project.rules(
            "shop.toml",
            &contacts_rule(
                "action = \"pseudonymise\"\ncolumns = { name = \"hmac\", email = \"hmac_email\", phone = \"null\", note = \"redact\" }",
            ),
        );
        let everything = "SELECT id, name, email, phone, note, status, contract_ended FROM customers ORDER BY id";
        let before = db.rows(everything).await;

        let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
        assert_eq!(code(&run), 0, "{}", text(&run));

        let names = by_id(&db, "SELECT id, name FROM customers").await;
        let emails = by_id(&db, "SELECT id, email FROM customers").await;
        let phones = by_id(&db, "SELECT id, phone FROM customers").await;
        let notes = by_id(&db, "SELECT id, note FROM customers").await;
        // Due: 1, 2 and 7. Each column as its action says, computed by Rust's reference.
        assert_eq!(
            names[&1],
            Some(token(ColumnAction::Hmac, Some(80), "Jens Hansen"))
        );
        assert_eq!(
            names[&2],
            Some(token(ColumnAction::Hmac, Some(80), "Søren Æbelø"))
        );
        assert_eq!(
            emails[&1],
            Some(token(
                ColumnAction::HmacEmail,
                Some(120),
                "jens@example.invalid"
            ))
        );
        assert!(emails[&1].as_ref().unwrap().ends_with("@invalid"));
        assert_eq!(
            emails[&2],
            Some(token(
                ColumnAction::HmacEmail,
                Some(120),
                "soren@example.invalid"
            ))
        );
        assert_eq!((phones[&1].clone(), phones[&2].clone()), (None, None));
        assert_eq!(notes[&1].as_deref(), Some("[redacted]"));
        assert_eq!(notes[&2], None, "NULL stays NULL");
        assert_eq!((names[&7].clone(), emails[&7].clone()), (None, None));
        // Held, undated, out-of-scope and recent rows are untouched, every column.
        let after = db.rows(everything).await;
        assert_eq!(after.len(), 7);
        for id in [3, 4, 5, 6] {
            assert_eq!(after[id - 1], before[id - 1], "row {id}");
            assert!(phones[&(id as i64)].is_some(), "row {id}");
        }

        let audit = audit_rows(&db).await;
        // Row 7 holds nothing but NULLs in the named columns: nothing to change.
        let changed: i64 = audit
            .iter()
            .filter(|(e, _)| e == "batch")
            .map(|(_, n)| n)
            .sum();
        assert_eq!(changed, 2);
        let key_ids = db
            .column("SELECT key_id FROM glemsel_audit WHERE event = 'batch'")
            .await;
        assert_eq!(
            key_ids,
            [Some(HmacKey::from_bytes(KEY.as_bytes().to_vec()).id().to_string())]
        );

        // Re-running changes nothing: tokens are not hashed again.
        let names_after_first = names.clone();
        let again = project.glemsel(&["run", "--as-of", "2026-11-22"]);
        assert_eq!(code(&again), 0, "{}", text(&again));
        assert_contains(&text(&again), "pseudonymised 0 rows");
        assert_eq!(
            by_id(&db, "SELECT id, name FROM customers").await,
            names_after_first
        );
        let plan = project.glemsel(&["plan", "--as-of", "2026-11-22"]);
        assert_contains(
            &text(&plan),
            "0 due, 1 held, 1 with no usable date, 3 already pseudonymised",
        );
        db.drop().await;
    }
}

every_engine! {
    /// Tokens written by glemsel equal the Rust reference on hard inputs,
    /// whole and cut to a column's length.
    async fn tokens_equal_the_rust_reference(kind) {
        let schema = "CREATE TABLE samples (id INTEGER PRIMARY KEY, whole TEXT, cut VARCHAR(24), mail VARCHAR(40), at DATE NOT NULL)";
        let Some(db) = setup(kind, "tokens", schema).await else {
            return;
        };
        let long = "æøå-10kB-".repeat(1200);
        let values = [
            "",
            "a",
            "Jens Hansen",
            "Søren Æbelø",
            "😀 emoji 👍🏽",
            "tab\tand\nnewline",
            "quote ' and \"",
            &long,
        ];
        let literal = |value: &str| format!("'{}'", value.replace('\'', "''"));
        for (i, value) in values.iter().enumerate() {
            let cut: String = value.chars().take(24).collect();
            let mail: String = value.chars().take(40).collect();
            db.exec(&format!(
                "INSERT INTO samples (id, whole, cut, mail, at) VALUES ({i}, {}, {}, {}, '2000-01-01')",
                literal(value),
                literal(&cut),
                literal(&mail)
            ))
            .await;
        }
        let project = Project::for_db(&db, "db", "");
        project.rules(
            "t.toml",
            r#"
[[rule]]
id = "tokens"
store = "db"
table = "samples"
category = "test"
after = "at"
retain = "1 year"
action = "pseudonymise"
columns = { whole = "hmac", cut = "hmac", mail = "hmac_email" }
"#,
        );
        let run = project.glemsel(&["run"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        let whole = by_id(&db, "SELECT id, whole FROM samples").await;
        let cut = by_id(&db, "SELECT id, cut FROM samples").await;
        let mail = by_id(&db, "SELECT id, mail FROM samples").await;
        for (i, value) in values.iter().enumerate() {
            let i = i as i64;
            let cut_value: String = value.chars().take(24).collect();
            let mail_value: String = value.chars().take(40).collect();
            assert_eq!(
                whole[&i].as_deref(),
                Some(token(ColumnAction::Hmac, None, value).as_str()),
                "whole {value:.20}"
            );
            assert_eq!(
                cut[&i].as_deref(),
                Some(token(ColumnAction::Hmac, Some(24), &cut_value).as_str()),
                "cut {value:.20}"
            );
            assert_eq!(cut[&i].as_ref().unwrap().len(), 24);
            assert_eq!(
                mail[&i].as_deref(),
                Some(token(ColumnAction::HmacEmail, Some(40), &mail_value).as_str())
            );
        }
        db.drop().await;
    }
}

/// Runs `audit verify`, which must exit `expected` and say `says`.
fn verify_says(project: &Project, expected: i32, says: &str) {
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), expected, "{}", text(&verify));
    assert_contains(&text(&verify), says);
}

every_engine! {
    async fn audit_verify_finds_edited_deleted_and_reordered_rows(kind) {
        let Some(db) = setup(kind, "tamper", CUSTOMERS).await else {
            return;
        };
        let project = Project::for_db(&db, "shop", "audit_checkpoints = \"heads.tsv\"");
        project.rules(
            "shop.toml",
            &contacts_rule("action = \"delete\"\nbatch_size = 1\nbatch_ms = 0")
                .replace("status = 'closed'", "status <> 'x'"),
        );
        let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        // Due: 1, 2, 5 and 7, in batches of one: the start, four batches, the finish.
        let rows = db.number("SELECT count(*) FROM glemsel_audit").await;
        assert_eq!(rows, 6);
        assert!(
            std::fs::read_to_string(project.path().join("heads.tsv"))
                .unwrap()
                .starts_with("shop\t")
        );
        verify_says(
            &project,
            0,
            &format!("audit chain intact, {rows} rows, 1 checkpoints matched"),
        );

        // Edited: a batch claims fewer rows than it deleted.
        db.exec("UPDATE glemsel_audit SET rows_affected = 0 WHERE seq = 3")
            .await;
        verify_says(
            &project,
            6,
            "row seq 3: its content does not match its row_hash",
        );
        db.exec("UPDATE glemsel_audit SET rows_affected = 1 WHERE seq = 3")
            .await;
        assert_eq!(code(&project.glemsel(&["audit", "verify"])), 0);

        // Reordered: two rows swap places.
        let swap = "UPDATE glemsel_audit SET seq = -1 WHERE seq = 2; UPDATE glemsel_audit SET seq = 2 WHERE seq = 3; \
                    UPDATE glemsel_audit SET seq = 3 WHERE seq = -1";
        db.exec(swap).await;
        verify_says(&project, 6, "row seq 2: prev_hash does not match");
        db.exec(swap).await;
        assert_eq!(code(&project.glemsel(&["audit", "verify"])), 0);

        // Deleted: a row in the middle, then the tail (found by the checkpoint).
        db.exec("CREATE TABLE saved AS SELECT * FROM glemsel_audit")
            .await;
        db.exec("DELETE FROM glemsel_audit WHERE seq = 2").await;
        verify_says(&project, 6, "row seq 3: expected seq 2");
        db.exec(&format!(
            "DELETE FROM glemsel_audit; INSERT INTO glemsel_audit SELECT * FROM saved WHERE seq < {rows}"
        ))
        .await;
        verify_says(&project, 6, "rows were cut from its end");

        // The whole chain back, but the checkpoint file gone: a rewritten
        // chain would go unnoticed without it, so that is a break too.
        db.exec("DELETE FROM glemsel_audit; INSERT INTO glemsel_audit SELECT * FROM saved")
            .await;
        verify_says(
            &project,
            0,
            &format!("audit chain intact, {rows} rows, 1 checkpoints matched"),
        );
        std::fs::remove_file(project.path().join("heads.tsv")).unwrap();
        verify_says(
            &project,
            6,
            "the checkpoint file is configured but missing, while the chain has rows; it was removed",
        );
        // A run refuses too, rather than start a new file that would vouch
        // for whatever the chain holds now; it changes nothing.
        let customers = db.number("SELECT count(*) FROM customers").await;
        let later = project.glemsel(&["run"]);
        assert_eq!(code(&later), 6, "{}", text(&later));
        assert_contains(&text(&later), "the checkpoint file is configured but missing");
        assert!(!project.path().join("heads.tsv").exists());
        assert_eq!(db.number("SELECT count(*) FROM customers").await, customers);
        assert_eq!(db.number("SELECT count(*) FROM glemsel_audit").await, rows);
        // The operator records why, which starts a new file; runs go on.
        let segment = project.glemsel(&["audit", "segment", "--reason", "checkpoint file restored from nowhere"]);
        assert_eq!(code(&segment), 0, "{}", text(&segment));
        assert!(project.path().join("heads.tsv").exists());
        let later = project.glemsel(&["run"]);
        assert_eq!(code(&later), 0, "{}", text(&later));
        // The refused run, the segment, this run's start and finish.
        assert!(db.number("SELECT count(*) FROM glemsel_audit").await >= rows + 3);
        verify_says(&project, 0, "audit chain intact");
        db.drop().await;
    }
}

/// How `check` names the type of a `VARCHAR(80)` column on each engine.
fn varchar_80(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => "character varying(80)",
        Kind::Mariadb => "varchar(80)",
        Kind::Sqlite => "VARCHAR(80)",
    }
}

every_engine! {
    async fn schema_mismatches_fail_check_and_run_before_anything_is_written(kind) {
        let Some(db) = setup(kind, "schema", CUSTOMERS).await else {
            return;
        };
        let project = Project::for_db(&db, "shop", "");
        project.rules(
            "shop.toml",
            &(contacts_rule("action = \"delete\"")
                .replace("after = \"contract_ended\"", "after = \"contract_end\"")
                + r#"
[[rule]]
id = "second"
store = "shop"
table = "customers"
category = "test"
after = "name"
retain = "1 year"
action = "pseudonymise"
columns = { id = "hmac", phone = "null", nope = "redact" }
"#),
        );
        let offline = project.glemsel(&["check", "--offline"]);
        assert_eq!(code(&offline), 0, "{}", text(&offline));

        project.check_refuses(&[
            "rules/shop.toml:10:9: rule customers-after-contract: after: customers has no column \"contract_end\"",
            &format!(
                "rule second: after: column \"name\" of customers is {}, not a date or timestamp",
                varchar_80(kind)
            ),
            "rule second: columns: \"id\" is part of the key of customers",
            "rule second: columns: customers has no column \"nope\"",
            "4 problems found; nothing was changed",
        ]);
        // A run with one bad rule runs none, not even the good ones.
        let good = contacts_rule("action = \"delete\"");
        project.rules("shop.toml", &format!("{good}\n[[rule]]\nid = \"bad\"\nstore = \"shop\"\ntable = \"nowhere\"\ncategory = \"test\"\nafter = \"x\"\nretain = \"1 day\"\naction = \"delete\"\n"));
        let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
        assert_eq!(code(&run), 4, "{}", text(&run));
        assert_contains(&text(&run), "table nowhere does not exist in store shop");
        assert_eq!(customer_ids(&db).await, texts(&[1, 2, 3, 4, 5, 6, 7]));
        assert!(!db.has_audit_table().await);

        // A `where` the database cannot compile is a check error too.
        project.rules(
            "shop.toml",
            &good.replace("status = 'closed'", "statu = 'closed'"),
        );
        project.check_refuses(&[
            "rules/shop.toml:13:9: rule customers-after-contract: the count statement does not compile",
        ]);
        assert_eq!(customer_ids(&db).await, texts(&[1, 2, 3, 4, 5, 6, 7]));
        db.drop().await;
    }
}

/// How `check` names the type of an `INTEGER` column on each engine.
fn integer_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => "integer",
        Kind::Mariadb => "int(11)",
        Kind::Sqlite => "INTEGER",
    }
}

every_engine! {
    async fn check_refuses_columns_a_token_or_text_does_not_fit(kind) {
        // A token cut to fewer than 16 hex digits would make different
        // people share one pseudonym; a number cannot hold text at all.
        let Some(db) = setup(
            kind,
            "fit",
            "CREATE TABLE people (
                id INTEGER PRIMARY KEY,
                ended DATE,
                n INTEGER,
                code19 VARCHAR(19),
                code20 VARCHAR(20),
                mail27 VARCHAR(27),
                mail28 VARCHAR(28),
                r VARCHAR(1)
            );
            INSERT INTO people (id, ended, n, code19, code20, mail27, mail28, r) VALUES
                (1, '2019-01-01', 7, 'abc', 'abc', 'a@b', 'a@b', 'x');",
        )
        .await
        else {
            return;
        };
        let project = Project::for_db(&db, "shop", "");
        let rule = |id: &str, columns: &str| {
            format!(
                "[[rule]]\nid = \"{id}\"\nstore = \"shop\"\ntable = \"people\"\ncategory = \"test\"\nafter = \"ended\"\nretain = \"1 year\"\naction = \"pseudonymise\"\ncolumns = {{ {columns} }}\n"
            )
        };
        project.rules(
            "shop.toml",
            &[
                rule("int-hmac", "n = \"hmac\""),
                rule("int-redact", "n = \"redact\""),
                rule("short-hmac", "code19 = \"hmac\""),
                rule("short-mail", "mail27 = \"hmac_email\""),
            ]
            .concat(),
        );
        let int = integer_type(kind);
        project.check_refuses(&[
            &format!("rule int-hmac: columns: \"n\" is {int}; hmac needs a text column"),
            &format!("rule int-redact: columns: \"n\" is {int}; redact needs a text column"),
            "rule short-hmac: columns: \"code19\" holds at most 19 characters; hmac needs at least 20",
            "rule short-mail: columns: \"mail27\" holds at most 27 characters; hmac_email needs at least 28",
            "4 problems found; nothing was changed",
        ]);
        // One character more, and each fits; null fits a number, redact one character.
        project.rules(
            "shop.toml",
            &[
                rule("fits-hmac", "code20 = \"hmac\", n = \"null\""),
                rule("fits-mail", "mail28 = \"hmac_email\", r = \"redact\""),
            ]
            .concat(),
        );
        let check = project.glemsel(&["check"]);
        assert_eq!(code(&check), 0, "{}", text(&check));
        let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        let row = db
            .rows("SELECT n, code20, mail28, r FROM people")
            .await;
        assert_eq!(
            row,
            vec![vec![
                None,
                Some(token(ColumnAction::Hmac, Some(20), "abc")),
                Some(token(ColumnAction::HmacEmail, Some(28), "a@b")),
                Some("[".to_string()),
            ]]
        );
        db.drop().await;
    }
}

every_engine! {
    async fn invalid_files_touch_no_database(kind) {
        let Some(db) = setup(kind, "invalid", CUSTOMERS).await else {
            return;
        };
        let project = Project::for_db(&db, "shop", "");
        project.rules(
            "shop.toml",
            &contacts_rule("action = \"delete\"\nmax_row = 1"),
        );
        for args in [&["check", "--offline"][..], &["check"], &["plan"], &["run"]] {
            let out = project.glemsel(args);
            assert_eq!(code(&out), 3, "{args:?}: {}", text(&out));
            assert_contains(
                &text(&out),
                "rules/shop.toml:16:1: rule customers-after-contract: unknown field `max_row`",
            );
            assert_contains(&text(&out), "no database was touched");
        }
        assert_eq!(customer_ids(&db).await, texts(&[1, 2, 3, 4, 5, 6, 7]));
        assert!(!db.has_audit_table().await);
        db.drop().await;
    }
}

every_engine! {
    async fn guards_refuse_before_writing(kind) {
        let Some(db) = setup(kind, "guards", CUSTOMERS).await else {
            return;
        };
        let project = Project::for_db(&db, "shop", "");
        project.rules(
            "shop.toml",
            &contacts_rule("action = \"delete\"\nmax_rows = 2"),
        );
        let plan = project.glemsel(&["plan", "--as-of", "2026-11-22"]);
        assert_contains(
            &text(&plan),
            "guard     max_rows 2: 3 rows are due, more than max_rows = 2: a run would refuse",
        );
        let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
        assert_eq!(code(&run), 5, "{}", text(&run));
        assert_contains(
            &text(&run),
            "3 rows are due, more than max_rows = 2; nothing was changed",
        );
        assert_eq!(customer_ids(&db).await, texts(&[1, 2, 3, 4, 5, 6, 7]));
        assert!(!db.has_audit_table().await);

        // Nothing goes before its time.
        project.rules("shop.toml", &contacts_rule("action = \"delete\""));
        let future = (chrono::Utc::now() + chrono::TimeDelta::days(2))
            .format("%Y-%m-%d")
            .to_string();
        let run = project.glemsel(&["run", "--as-of", &future]);
        assert_eq!(code(&run), 5, "{}", text(&run));
        assert_contains(&text(&run), "is later than the clock");
        assert_eq!(customer_ids(&db).await, texts(&[1, 2, 3, 4, 5, 6, 7]));
        // A plan may look ahead.
        assert_eq!(code(&project.glemsel(&["plan", "--as-of", &future])), 0);
        db.drop().await;
    }
}

/// A trigger that lifts every legal hold (empties `disputes`) when the run
/// writes to the trail: holds lifted while a run is under way. (On the
/// audit table, as MariaDB lets no trigger change a table the statement
/// that fired it reads.)
fn lift_holds_on_audit(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => {
            "CREATE FUNCTION lift_holds() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN DELETE FROM disputes; RETURN NULL; END $$;
             CREATE TRIGGER lift_holds AFTER INSERT ON glemsel_audit
             FOR EACH STATEMENT EXECUTE FUNCTION lift_holds()"
        }
        Kind::Mariadb => {
            "CREATE TRIGGER lift_holds AFTER INSERT ON glemsel_audit FOR EACH ROW DELETE FROM disputes"
        }
        Kind::Sqlite => {
            "CREATE TRIGGER lift_holds AFTER INSERT ON glemsel_audit BEGIN DELETE FROM disputes; END"
        }
    }
}

every_engine! {
    async fn max_rows_passed_mid_run_rolls_the_batch_back(kind) {
        // Three rows are due when the run counts (4, 5 and 6 are held);
        // then the holds are lifted, so the second batch would pass max_rows.
        let Some(db) = setup(
            kind,
            "maxmid",
            "CREATE TABLE logs (id INTEGER PRIMARY KEY, at DATE);
             CREATE TABLE disputes (log_id INTEGER);
             INSERT INTO logs VALUES (1, '2015-01-01'), (2, '2015-01-02'), (3, '2015-01-03'),
                 (4, '2015-01-04'), (5, '2015-01-05'), (6, '2015-01-06'), (7, '2030-01-01');
             INSERT INTO disputes VALUES (4), (5), (6);",
        )
        .await
        else {
            return;
        };
        let project = Project::for_db(&db, "db", "");
        project.rules(
            "logs.toml",
            "[[rule]]\nid = \"logs\"\nstore = \"db\"\ntable = \"logs\"\ncategory = \"test\"\nafter = \"at\"\nretain = \"1 year\"\naction = \"delete\"\nmax_rows = 3\nbatch_size = 2\nbatch_ms = 0\n\n[[rule.hold_table]]\ntable = \"disputes\"\non = { log_id = \"id\" }\n",
        );
        // A run with nothing due yet makes the trail, for the trigger.
        let early = project.glemsel(&["run", "--as-of", "2015-06-01"]);
        assert_eq!(code(&early), 0, "{}", text(&early));
        db.exec(lift_holds_on_audit(kind)).await;
        let run = project.glemsel(&["run", "--as-of", "2026-06-01"]);
        assert_eq!(code(&run), 5, "{}", text(&run));
        assert_contains(
            &text(&run),
            "rule logs: the run reached max_rows = 3; the batch that would pass it was rolled back",
        );
        // 1 and 2 went in the first batch; 3 and 4 came back with the second.
        let ids = db.column("SELECT id FROM logs ORDER BY id").await;
        assert_eq!(ids, texts(&[3, 4, 5, 6, 7]));
        let audit = db
            .rows("SELECT event, rows_affected, key_from, key_to FROM glemsel_audit ORDER BY seq")
            .await;
        let row = |event: &str, rows: &str, from: Option<&str>, to: Option<&str>| {
            vec![
                Some(event.to_string()),
                Some(rows.to_string()),
                from.map(str::to_string),
                to.map(str::to_string),
            ]
        };
        assert_eq!(
            audit,
            [
                row("run_start", "0", None, None),
                row("run_finish", "0", None, None),
                row("run_start", "0", None, None),
                // The walk starts just before the first due row, 1.
                row("batch", "2", Some("[0]"), Some("[2]")),
                row("run_finish", "2", None, None),
            ]
        );
        let verify = project.glemsel(&["audit", "verify"]);
        assert_eq!(code(&verify), 0, "{}", text(&verify));
        db.drop().await;
    }
}

const PASSWORD: &str = "Pa55w0rd-must-not-leak";

/// A project whose store connects with [`PASSWORD`] (SQLite has none), and
/// the URL of a server that refuses the connection, with the password too
/// (for SQLite, a file that is not there).
async fn project_with_password(db: &TestDb) -> (Project, String) {
    match db.kind {
        Kind::Postgres => (
            Project::new("postgres", "shop", &db.pg_url_with_password(PASSWORD), ""),
            format!("postgresql://postgres:{PASSWORD}@127.0.0.1:1/nowhere"),
        ),
        Kind::Mariadb => {
            // A user of its own, whose password is the secret.
            let user = format!("{}_u", db.name);
            db.exec(&format!(
                "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';
                 GRANT ALL ON `{}`.* TO '{user}'@'127.0.0.1'",
                db.name
            ))
            .await;
            let (_, host_and_db) = db.url.split_once('@').unwrap();
            let url = format!("mysql://{user}:{PASSWORD}@{host_and_db}");
            (
                Project::new("mysql", "shop", &url, ""),
                format!("mysql://{user}:{PASSWORD}@127.0.0.1:1/nowhere"),
            )
        }
        Kind::Sqlite => {
            let project = Project::for_db(db, "shop", "");
            (project, format!("{}.missing", db.url))
        }
    }
}

every_engine! {
    async fn secrets_never_reach_output_or_the_audit_trail(kind) {
        let Some(db) = setup(kind, "secrets", CUSTOMERS).await else {
            return;
        };
        let (project, refusing) = project_with_password(&db).await;
        project.rules(
            "shop.toml",
            &contacts_rule(
                "action = \"pseudonymise\"\ncolumns = { name = \"hmac\", email = \"hmac_email\" }",
            ),
        );
        let mut everything = String::new();
        for args in [
            &["check", "-vv"][..],
            &["plan", "-vv", "--as-of", "2026-11-22", "--format", "json"],
            &["run", "-vv", "--as-of", "2026-11-22", "--format", "json"],
            &["--log-format", "json", "audit", "verify", "-vv"],
        ] {
            // Every log level of every crate on: nothing may print key material.
            let out = project.glemsel_with_env(args, &[("GLEMSEL_LOG", "trace")]);
            assert_eq!(code(&out), 0, "{args:?}: {}", text(&out));
            everything.push_str(&text(&out));
        }
        // The run did its work: rows 1 and 2 carry tokens.
        assert_eq!(
            db.column("SELECT name FROM customers WHERE id <= 2 ORDER BY id").await,
            [
                Some(token(ColumnAction::Hmac, Some(80), "Jens Hansen")),
                Some(token(ColumnAction::Hmac, Some(80), "Søren Æbelø"))
            ]
        );
        // A server that refuses the connection (for SQLite, a missing file).
        match kind {
            Kind::Sqlite => {
                let config = std::fs::read_to_string(project.config())
                    .unwrap()
                    .replace(&format!("{:?}", db.url), &format!("{refusing:?}"));
                std::fs::write(project.config(), config).unwrap();
            }
            _ => std::fs::write(project.path().join("shop.url"), refusing).unwrap(),
        }
        let refused = project.glemsel(&["plan", "-vv"]);
        assert_eq!(code(&refused), 1, "{}", text(&refused));
        assert_contains(&text(&refused), "store shop: cannot connect");
        everything.push_str(&text(&refused));
        let trail = db.audit_text().await;
        everything.push_str(&trail);
        assert_contains(&everything, "customers-after-contract");
        // The key, and the pad blocks HMAC derives from it, as hex and as
        // the byte lists a debug print would show.
        let (inner, outer) = common::key_pad_blocks();
        let block_texts = [
            hex::encode(&inner),
            hex::encode(&outer),
            format!("{:?}", &inner[..8])
                .trim_end_matches(']')
                .to_string(),
            format!("{:?}", &outer[..8])
                .trim_end_matches(']')
                .to_string(),
        ];
        for secret in [PASSWORD, KEY]
            .iter()
            .copied()
            .chain(block_texts.iter().map(String::as_str))
        {
            assert_lacks(&everything, secret);
        }
        // Nor the personal data the rule pseudonymised.
        assert_lacks(&trail, "Jens");
        assert_lacks(&trail, "jens@");
        if kind == Kind::Mariadb {
            db.exec(&format!("DROP USER '{}_u'@'127.0.0.1'", db.name))
                .await;
        }
        db.drop().await;
    }
}

every_engine! {
    /// The seed policies' own date vectors, at a real database, the day
    /// before and the day the data becomes due.
    async fn seed_vectors_at_their_boundaries(kind) {
        let schema = "
            CREATE TABLE agreements (id INTEGER PRIMARY KEY, ended DATE);
            INSERT INTO agreements (id, ended) VALUES (1, '2017-05-15');
            CREATE TABLE invoices (id INTEGER PRIMARY KEY, invoice_date DATE);
            INSERT INTO invoices (id, invoice_date) VALUES (1, '2019-08-10');
        ";
        let Some(db) = setup(kind, "vectors", schema).await else {
            return;
        };
        let project = Project::for_db(&db, "db", "");
        project.rules(
            "vectors.toml",
            r#"
[[rule]]
id = "jma-agreements"
store = "db"
table = "agreements"
category = "test"
after = "ended"
retain = "5 years"
round_up_to = "financial_year_end"
action = "delete"

[[rule]]
id = "jetpak-invoices"
store = "db"
table = "invoices"
category = "test"
after = "invoice_date"
retain = "7 years"
round_up_to = "calendar_year_end"
action = "delete"
"#,
        );
        for (rule, day_before, day_of) in [
            ("jma-agreements", "2022-06-30", "2022-07-01"),
            ("jetpak-invoices", "2026-12-31", "2027-01-01"),
        ] {
            for (as_of, due) in [
                (day_before, 0),
                (&format!("{day_before}T23:59:59"), 0),
                (day_of, 1),
            ] {
                let plan =
                    project.glemsel(&["plan", "--rule", rule, "--format", "json", "--as-of", as_of]);
                let json: serde_json::Value = serde_json::from_slice(&plan.stdout)
                    .unwrap_or_else(|_| panic!("{}", text(&plan)));
                assert_eq!(
                    json["steps"][0]["counts"]["due"], due,
                    "{rule} as of {as_of}"
                );
            }
        }
        db.drop().await;
    }
}

every_engine! {
    /// `describe` reads a table's keys alike on every engine: a composite
    /// primary key in key order, a unique key only where its columns are
    /// NOT NULL, every unique column, and a composite foreign key pointing
    /// here as one key, with its ON DELETE action.
    async fn describe_reads_keys_and_composite_foreign_keys(kind) {
        let Some(db) = setup(
            kind,
            "describe_keys",
            "CREATE TABLE parents (a INTEGER NOT NULL, b INTEGER NOT NULL, code VARCHAR(40) NOT NULL,
                 label VARCHAR(40), PRIMARY KEY (a, b), UNIQUE (code), UNIQUE (label));
             CREATE TABLE children (id INTEGER PRIMARY KEY, pa INTEGER, pb INTEGER,
                 FOREIGN KEY (pa, pb) REFERENCES parents (a, b) ON DELETE CASCADE);",
        )
        .await
        else {
            return;
        };
        let project = Project::for_db(&db, "db", "");
        let policy = project.policy();
        let mut store = glemsel::store::connect(
            &policy.stores["db"],
            glemsel::store::SessionLimits::of(&policy.settings),
        )
        .await
        .unwrap();
        let parents = store.describe(&"parents".parse().unwrap()).await.unwrap().unwrap();
        let names = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(parents.primary_key, names(&["a", "b"]));
        assert_eq!(parents.unique_keys, vec![names(&["code"])]);
        assert_eq!(parents.unique_columns, names(&["a", "b", "code", "label"]));
        assert_eq!(parents.referenced_by.len(), 1, "{:?}", parents.referenced_by);
        let fk = &parents.referenced_by[0];
        assert_eq!(fk.table.name, "children");
        assert_eq!(fk.columns, names(&["pa", "pb"]));
        assert_eq!(fk.references, names(&["a", "b"]));
        assert_eq!(fk.on_delete, glemsel::store::OnDelete::Cascade);
        let children = store.describe(&"children".parse().unwrap()).await.unwrap().unwrap();
        assert_eq!(children.foreign_key_columns, names(&["pa", "pb"]));
        assert!(children.referenced_by.is_empty());
        assert!(store.describe(&"absent".parse().unwrap()).await.unwrap().is_none());
        // A foreign key that names no columns points at the primary key;
        // MariaDB wants them named.
        if kind != Kind::Mariadb {
            db.exec(
                "CREATE TABLE tags (id INTEGER PRIMARY KEY, pa INTEGER, pb INTEGER,
                     FOREIGN KEY (pa, pb) REFERENCES parents ON DELETE SET NULL);",
            )
            .await;
            let parents = store.describe(&"parents".parse().unwrap()).await.unwrap().unwrap();
            let tags = &parents.referenced_by[1];
            assert_eq!(tags.table.name, "tags");
            assert_eq!(tags.columns, names(&["pa", "pb"]));
            assert_eq!(tags.references, names(&["a", "b"]));
            assert_eq!(tags.on_delete, glemsel::store::OnDelete::SetNull);
        }
        drop(store);
        db.drop().await;
    }
}

every_engine! {
    /// A table keyed by two columns, walked two rows at a time: every
    /// window ends inside a tenant or between two, and each comparison of
    /// the composite key (a row value on PostgreSQL, spelled out
    /// elsewhere) must neither skip a due row at a window's edge nor take
    /// one that is not due.
    async fn composite_keys_walk_every_due_row_and_no_other(kind) {
        let Some(db) = setup(
            kind,
            "composite",
            "CREATE TABLE visits (tenant INTEGER NOT NULL, id INTEGER NOT NULL, at DATE NOT NULL,
                 PRIMARY KEY (tenant, id));
             INSERT INTO visits (tenant, id, at) VALUES
                 (1, 1, '2020-01-01'), (1, 2, '2026-06-01'), (1, 3, '2020-01-01'),
                 (1, 10, '2020-01-01'), (2, 1, '2026-06-01'), (2, 2, '2020-01-01'),
                 (2, 3, '2020-01-01'), (3, 1, '2020-01-01'), (3, 2, '2026-06-01'),
                 (3, 3, '2025-11-01'), (3, 4, '2025-11-02'), (10, 1, '2020-01-01');",
        )
        .await
        else {
            return;
        };
        let project = Project::for_db(&db, "db", "");
        project.rules(
            "visits.toml",
            "[[rule]]\nid = \"visits\"\nstore = \"db\"\ntable = \"visits\"\ncategory = \"test\"\n\
             after = \"at\"\nretain = \"1 year\"\naction = \"delete\"\nbatch_size = 2\nbatch_ms = 0\n",
        );
        let run = project.glemsel(&["run", "--as-of", "2026-11-01"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        // Due: a year old at the as-of, 2025-11-01 itself too; kept: the
        // 2026 rows and the day after.
        let left: Vec<Vec<Option<String>>> = db
            .rows("SELECT tenant, id FROM visits ORDER BY tenant, id")
            .await;
        let pair = |t: i64, i: i64| vec![Some(t.to_string()), Some(i.to_string())];
        assert_eq!(left, [pair(1, 2), pair(2, 1), pair(3, 2), pair(3, 4)]);
        let audit = audit_rows(&db).await;
        let batches: Vec<i64> = audit
            .iter()
            .filter(|(e, _)| e == "batch")
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(batches.iter().sum::<i64>(), 8, "{audit:?}");
        assert!(batches.iter().all(|n| *n <= 2), "{audit:?}");
        assert_eq!(audit.last().unwrap(), &("run_finish".to_string(), 8));
        db.drop().await;
    }
}
