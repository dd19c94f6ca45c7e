//! MariaDB's legacy hazards, each against a real server: zero and partial
//! dates, DATETIME vs TIMESTAMP, a NAV-style table, tables without a
//! primary key, latin1 columns, and its locks.

mod common;

use common::{KEY, Kind, Project, TestDb, assert_contains, assert_lacks, code, text};
use glemsel::pseudonym::{ColumnAction, HmacKey, TokenShape};

fn token(action: ColumnAction, max_len: usize, value: &str) -> Option<String> {
    let key = HmacKey::from_bytes(KEY.as_bytes().to_vec());
    Some(
        TokenShape::for_column(action, Some(max_len))
            .unwrap()
            .token(&key, value),
    )
}

fn strings(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

fn counts(output: &std::process::Output) -> Vec<serde_json::Value> {
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", text(output)));
    json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["counts"].clone())
        .collect()
}

fn rule(id: &str, table: &str, after: &str, retain: &str, action: &str) -> String {
    format!(
        "[[rule]]\nid = \"{id}\"\nstore = \"shop\"\ntable = \"{table}\"\ncategory = \"test\"\nafter = \"{after}\"\nretain = \"{retain}\"\n{action}\n\n"
    )
}

#[tokio::test]
async fn zero_and_partial_dates_are_never_due() {
    let Some(db) = TestDb::create(Kind::Mariadb, "zerodates").await else {
        return;
    };
    db.exec(
        "SET SESSION sql_mode = '';
         CREATE TABLE legacy (id INT PRIMARY KEY, name VARCHAR(60), created DATE, touched DATETIME, birthday DATE);
         INSERT INTO legacy VALUES
            (1, 'Old', '2015-03-01', '2015-03-01 10:00:00', '0000-00-00'),
            (2, 'Zero', '0000-00-00', '0000-00-00 00:00:00', '1980-01-01'),
            (3, 'Partial', '2016-07-00', '2016-07-00 00:00:00', '1980-01-01'),
            (4, 'Month', '2016-00-00', '2016-00-00 00:00:00', NULL),
            (5, 'Null', NULL, NULL, NULL),
            (6, 'New', '2026-01-01', '2026-01-01 00:00:00', '0000-00-00');",
    )
    .await;
    let project = Project::for_db(&db, "shop", "");
    project.rules(
        "legacy.toml",
        &(rule(
            "by-date",
            "legacy",
            "created",
            "2 years",
            "action = \"pseudonymise\"\ncolumns = { name = \"hmac\" }",
        ) + &rule(
            "by-datetime",
            "legacy",
            "touched",
            "2 years",
            "action = \"delete\"",
        )),
    );
    let plan = project.glemsel(&["plan", "--format", "json", "--as-of", "2026-11-01"]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    for step in counts(&plan) {
        assert_eq!(step["due"], 1, "{step}");
        assert_eq!(
            step["undated"], 4,
            "zero, partial, month-only and NULL: {step}"
        );
    }
    // The pseudonymising rule runs first: a row whose other column holds a
    // zero date is updated all the same.
    let run = project.glemsel(&["run", "--as-of", "2026-11-01"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    assert_eq!(
        db.column("SELECT id FROM legacy ORDER BY id").await,
        strings(&["2", "3", "4", "5", "6"])
    );
    assert_eq!(
        db.column("SELECT name FROM legacy ORDER BY id").await,
        strings(&["Zero", "Partial", "Month", "Null", "New"])
    );
    // Row 1 was pseudonymised before the delete rule removed it: both audited.
    let audit = db
        .rows("SELECT rule_id, rows_affected FROM glemsel_audit WHERE event = 'batch' ORDER BY seq")
        .await;
    assert_eq!(
        audit,
        vec![strings(&["by-date", "1"]), strings(&["by-datetime", "1"])]
    );
    db.drop().await;
}

#[tokio::test]
async fn datetime_is_wall_clock_and_timestamp_is_an_instant() {
    let Some(db) = TestDb::create(Kind::Mariadb, "timestamps").await else {
        return;
    };
    // 2025-11-01 00:00 in Copenhagen is 2025-10-31 23:00 UTC.
    db.exec(
        "SET time_zone = '+00:00';
         CREATE TABLE visits (id INT PRIMARY KEY, local_at DATETIME(6), utc_at TIMESTAMP(6) NULL);
         INSERT INTO visits VALUES
            (1, '2025-11-01 00:00:00', '2025-10-31 23:00:00'),
            (2, '2025-11-01 00:00:00.000001', '2025-10-31 23:00:00.000001');",
    )
    .await;
    let project = Project::for_db(&db, "shop", "");
    project.rules(
        "visits.toml",
        &(rule(
            "local",
            "visits",
            "local_at",
            "1 year",
            "action = \"delete\"",
        ) + &rule("utc", "visits", "utc_at", "1 year", "action = \"delete\"")),
    );
    let plan = project.glemsel(&["plan", "--format", "json", "--as-of", "2026-11-01"]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    for step in counts(&plan) {
        assert_eq!(
            step["due"], 1,
            "exactly one year old, not a microsecond less: {step}"
        );
    }
    let run = project.glemsel(&["run", "--rule", "utc", "--as-of", "2026-11-01"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    assert_eq!(db.column("SELECT id FROM visits").await, strings(&["2"]));
    db.drop().await;
}

#[tokio::test]
async fn nav_table_with_spaces_composite_key_and_1753() {
    let Some(db) = TestDb::create(Kind::Mariadb, "nav").await else {
        return;
    };
    db.exec(
        "CREATE TABLE `CRONUS International Ltd_$Customer` (
            `No_` VARCHAR(20) NOT NULL, `Company` VARCHAR(30) NOT NULL,
            `Name` VARCHAR(50) NOT NULL, `E-Mail` VARCHAR(80) NOT NULL, `Phone No_` VARCHAR(30) NULL,
            `Last Date Modified` DATETIME NOT NULL, PRIMARY KEY (`No_`, `Company`));
         INSERT INTO `CRONUS International Ltd_$Customer` VALUES
            ('C00001', 'ACME', 'Anne Æble', 'anne@example.invalid', '+45 1', '2015-02-01 00:00:00'),
            ('C00001', 'CRONUS', 'Anne Æble', 'anne@example.invalid', '+45 1', '1753-01-01 00:00:00'),
            ('C00002', 'ACME', 'Bo Ørn', 'bo@example.invalid', NULL, '2016-03-01 08:00:00'),
            ('C00002', 'CRONUS', 'Bo Ørn', 'bo@example.invalid', '+45 2', '2024-03-01 08:00:00'),
            ('C00003', 'ACME', 'Cai Ås', 'cai@example.invalid', '+45 3', '2014-12-31 23:00:00');",
    )
    .await;
    let project = Project::for_db(&db, "shop", "");
    project.rules(
        "nav.toml",
        "[[rule]]\nid = \"nav\"\nstore = \"shop\"\ntable = \"CRONUS International Ltd_$Customer\"\ncategory = \"test\"\n\
         after = \"Last Date Modified\"\nretain = \"5 years\"\nround_up_to = \"financial_year_end\"\nempty_dates = [\"1753-01-01\"]\n\
         batch_size = 1\nbatch_ms = 0\naction = \"pseudonymise\"\ncolumns = { \"Name\" = \"hmac\", \"E-Mail\" = \"hmac_email\", \"Phone No_\" = \"null\" }\n",
    );
    let check = project.glemsel(&["check"]);
    assert_eq!(code(&check), 0, "{}", text(&check));
    assert_contains(&text(&check), "walks (No_, Company)");
    let run = project.glemsel(&["run", "--as-of", "2026-11-01"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    let rows = db
        .rows("SELECT `No_`, `Company`, `Name`, `E-Mail`, `Phone No_` FROM `CRONUS International Ltd_$Customer` ORDER BY 1, 2")
        .await;
    let done = |no: &str, company: &str, name: &str, mail: &str| {
        vec![
            Some(no.into()),
            Some(company.into()),
            token(ColumnAction::Hmac, 50, name),
            token(ColumnAction::HmacEmail, 80, mail),
            None,
        ]
    };
    assert_eq!(
        rows,
        vec![
            done("C00001", "ACME", "Anne Æble", "anne@example.invalid"),
            strings(&[
                "C00001",
                "CRONUS",
                "Anne Æble",
                "anne@example.invalid",
                "+45 1"
            ]),
            done("C00002", "ACME", "Bo Ørn", "bo@example.invalid"),
            strings(&["C00002", "CRONUS", "Bo Ørn", "bo@example.invalid", "+45 2"]),
            done("C00003", "ACME", "Cai Ås", "cai@example.invalid"),
        ]
    );
    // Text keys (customer numbers) reach the audit trail only as keyed hashes.
    let key = HmacKey::from_bytes(KEY.as_bytes().to_vec());
    let hashed = |no: &str, company: &str| {
        Some(format!(
            "[\"hmac:{}\",\"hmac:{}\"]",
            key.audit_hash(no),
            key.audit_hash(company)
        ))
    };
    let windows = db
        .rows("SELECT key_from, key_to, rows_affected FROM glemsel_audit WHERE event = 'batch' ORDER BY seq")
        .await;
    assert_eq!(
        windows,
        vec![
            vec![None, hashed("C00001", "ACME"), Some("1".into())],
            vec![
                hashed("C00001", "CRONUS"),
                hashed("C00002", "ACME"),
                Some("1".into())
            ],
            vec![
                hashed("C00002", "CRONUS"),
                hashed("C00003", "ACME"),
                Some("1".into())
            ],
        ]
    );
    let trail = db
        .column("SELECT CONCAT_WS(' ', key_from, key_to, detail, cutoff) FROM glemsel_audit")
        .await;
    let trail = trail.into_iter().flatten().collect::<Vec<_>>().join("\n");
    // The keys are in the trail, hashed; the customer numbers are not.
    assert_contains(&trail, "[\"hmac:");
    assert_lacks(&trail, "C0000");
    db.drop().await;
}

#[tokio::test]
async fn a_table_without_a_primary_key_needs_a_named_unique_key() {
    let Some(db) = TestDb::create(Kind::Mariadb, "nokey").await else {
        return;
    };
    db.exec(
        "CREATE TABLE signups (code VARCHAR(12) NOT NULL, email VARCHAR(80), created DATE, UNIQUE KEY code (code));
         INSERT INTO signups VALUES ('a', 'a@example.invalid', '2015-01-01'), ('b', 'b@example.invalid', '2026-01-01');",
    )
    .await;
    let project = Project::for_db(&db, "shop", "");
    let signups = |key: &str| {
        rule(
            "signups",
            "signups",
            "created",
            "1 year",
            &format!("{key}action = \"delete\""),
        )
    };
    project.rules("signups.toml", &signups(""));
    project.check_refuses(&[
        "rule signups: signups has no primary key; batches need a unique key to walk",
    ]);
    project.rules("signups.toml", &signups("key = [\"email\"]\n"));
    project.check_refuses(&["key: (email) is not the primary key or a unique key"]);

    project.rules("signups.toml", &signups("key = [\"code\"]\n"));
    let run = project.glemsel(&["run", "--as-of", "2026-11-01"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    assert_eq!(db.column("SELECT code FROM signups").await, strings(&["b"]));
    db.drop().await;
}

#[tokio::test]
async fn latin1_and_utf8mb4_columns_give_the_same_tokens() {
    let Some(db) = TestDb::create(Kind::Mariadb, "charsets").await else {
        return;
    };
    db.exec(
        "CREATE TABLE people (id INT PRIMARY KEY,
            latin VARCHAR(60) CHARACTER SET latin1 COLLATE latin1_swedish_ci,
            utf VARCHAR(60) CHARACTER SET utf8mb4, created DATE);
         INSERT INTO people VALUES (1, 'Søren Æbelø', 'Søren Æbelø', '2015-01-01'), (2, 'Åse', 'Åse', '2015-01-01'),
            (3, '', '', '2015-01-01'), (4, 'PSN_upper', 'PSN_upper', '2015-01-01');",
    )
    .await;
    let project = Project::for_db(&db, "shop", "");
    project.rules(
        "people.toml",
        &rule(
            "people",
            "people",
            "created",
            "1 year",
            "action = \"pseudonymise\"\ncolumns = { latin = \"hmac\", utf = \"hmac\" }",
        ),
    );
    let run = project.glemsel(&["run", "--as-of", "2026-11-01"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    let rows = db.rows("SELECT latin, utf FROM people ORDER BY id").await;
    for (row, value) in rows.iter().zip(["Søren Æbelø", "Åse", "", "PSN_upper"]) {
        assert_eq!(
            row[0],
            token(ColumnAction::Hmac, 60, value),
            "latin1 {value}"
        );
        assert_eq!(row[1], row[0], "utf8mb4 {value}");
    }
    let again = project.glemsel(&["plan", "--format", "json", "--as-of", "2026-11-01"]);
    assert_eq!(counts(&again)[0]["done"], 4);
    db.drop().await;
}

/// Tokens go back through a VALUES table whose first rows may hold a
/// short key and no token at all: every later key and token, long and
/// multi-byte, must still arrive whole. Over 1,024 rows, so one batch
/// takes several writes, the last padded with rows of NULLs.
#[tokio::test]
async fn tokens_after_a_short_first_row_are_written_whole() {
    let Some(db) = TestDb::create(Kind::Mariadb, "token_widths").await else {
        return;
    };
    db.exec(
        "CREATE TABLE people (code VARCHAR(80) CHARACTER SET utf8mb4 PRIMARY KEY,
            email VARCHAR(120) CHARACTER SET utf8mb4,
            name VARCHAR(40) CHARACTER SET latin1, created DATE);",
    )
    .await;
    let already = token(ColumnAction::HmacEmail, 120, "a@b.dk").unwrap();
    // 'a' sorts first: a one-character key, an e-mail that is a token
    // already and no name, so the first row writes no token at all.
    db.exec(&format!(
        "INSERT INTO people VALUES ('a', '{already}', NULL, '2015-01-01')"
    ))
    .await;
    let mut values = Vec::new();
    for i in 0..1_100 {
        values.push(format!(
            "('ø{i:04}-{}', 'jens.{i}.{}@eksempel-på-æblegård.dk', 'Søren Æbelø {i}', '2015-01-01')",
            "å".repeat(60),
            "x".repeat(60)
        ));
    }
    db.exec(&format!("INSERT INTO people VALUES {};", values.join(", ")))
        .await;
    let project = Project::for_db(&db, "shop", "");
    project.rules(
        "people.toml",
        &format!(
            "{}batch_size = 5000\nbatch_ms = 0\n",
            rule(
                "people",
                "people",
                "created",
                "1 year",
                "action = \"pseudonymise\"\ncolumns = { email = \"hmac_email\", name = \"hmac\" }",
            )
        ),
    );
    let run = project.glemsel(&["run", "--as-of", "2026-11-01"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    let first = db
        .rows("SELECT email, name FROM people WHERE code = 'a'")
        .await;
    assert_eq!(first, vec![vec![Some(already.clone()), None]]);
    let rows = db
        .rows("SELECT code, email, name FROM people WHERE code <> 'a' ORDER BY code")
        .await;
    assert_eq!(rows.len(), 1_100);
    for (i, row) in rows.iter().enumerate() {
        let email = format!("jens.{i}.{}@eksempel-på-æblegård.dk", "x".repeat(60));
        assert_eq!(row[0], Some(format!("ø{i:04}-{}", "å".repeat(60))));
        assert_eq!(
            row[1],
            token(ColumnAction::HmacEmail, 120, &email),
            "row {i}"
        );
        assert_eq!(
            row[2],
            token(ColumnAction::Hmac, 40, &format!("Søren Æbelø {i}")),
            "row {i}"
        );
    }
    let audit = db
        .rows("SELECT SUM(rows_affected) FROM glemsel_audit WHERE event = 'batch' AND rule_id = 'people'")
        .await;
    assert_eq!(audit, vec![vec![Some("1100".to_string())]]);
    let again = project.glemsel(&["plan", "--format", "json", "--as-of", "2026-11-01"]);
    assert_eq!(counts(&again)[0]["done"], 1_101);
    db.drop().await;
}

#[tokio::test]
async fn locks_held_by_others() {
    let Some(db) = TestDb::create(Kind::Mariadb, "locks").await else {
        return;
    };
    db.exec(
        "CREATE TABLE logs (id INT PRIMARY KEY, at DATETIME NOT NULL);
         INSERT INTO logs VALUES (1, '2020-01-01'), (2, '2020-01-02'), (3, '2020-01-03'), (4, '2026-10-01');",
    )
    .await;
    let project = Project::for_db(&db, "shop", "lock_timeout_ms = 1000");
    project.rules(
        "logs.toml",
        &rule(
            "logs",
            "logs",
            "at",
            "1 year",
            "action = \"delete\"\nbatch_size = 1\nbatch_ms = 0",
        ),
    );
    let mut other = mysql_async::Conn::from_url(&db.url).await.unwrap();
    use mysql_async::prelude::Queryable;

    // Another worker runs the rule: this one skips it.
    other
        .query_drop("SELECT GET_LOCK(CONCAT('glemsel:rule:', LEFT(SHA2(CONCAT(DATABASE(), '/logs'), 256), 40)), 0)")
        .await
        .unwrap();
    let run = project.glemsel(&["run", "--as-of", "2026-11-01"]);
    assert_eq!(code(&run), 8, "{}", text(&run));
    other
        .query_drop("SELECT RELEASE_ALL_LOCKS()")
        .await
        .unwrap();

    // The application holds a due row: its window is retried, then left.
    other.query_drop("START TRANSACTION").await.unwrap();
    other
        .query_drop("SELECT * FROM logs WHERE id = 2 FOR UPDATE")
        .await
        .unwrap();
    let run = project.glemsel(&["run", "--as-of", "2026-11-01"]);
    assert_eq!(code(&run), 7, "{}", text(&run));
    // Row 2 stays; so may row 1, whose window's range scan reads row 2 to
    // find its end and waits on the same lock. Row 3 lies past it and goes.
    let left = db.column("SELECT id FROM logs ORDER BY id").await;
    assert!(
        left.contains(&Some("2".into())) && left.contains(&Some("4".into())),
        "{left:?}"
    );
    assert!(!left.contains(&Some("3".into())), "{left:?}");
    other.query_drop("ROLLBACK").await.unwrap();
    let run = project.glemsel(&["run", "--as-of", "2026-11-01"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    assert_eq!(
        db.column("SELECT id FROM logs ORDER BY id").await,
        strings(&["4"])
    );
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}", text(&verify));
    let _ = other.disconnect().await;
    db.drop().await;
}

/// A unique index on a prefix of a column (`body(10)`) is unique only on
/// the prefix: `describe` counts its column as unique, never as a key.
#[tokio::test]
async fn a_unique_prefix_index_is_no_key() {
    let Some(db) = TestDb::create(Kind::Mariadb, "prefixkey").await else {
        return;
    };
    db.exec(
        "CREATE TABLE notes (id INTEGER NOT NULL, body VARCHAR(200) NOT NULL,
             UNIQUE KEY body_start (body(10)), UNIQUE KEY by_id (id))",
    )
    .await;
    let project = Project::for_db(&db, "db", "");
    let policy = project.policy();
    let mut store = glemsel::store::connect(
        &policy.stores["db"],
        glemsel::store::SessionLimits::of(&policy.settings),
    )
    .await
    .unwrap();
    let notes = store
        .describe(&"notes".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(notes.primary_key.is_empty());
    assert_eq!(notes.unique_keys, vec![vec!["id".to_string()]]);
    assert_eq!(notes.unique_columns, ["body", "id"]);
    drop(store);
    db.drop().await;
}
