//! What only PostgreSQL has, against a real server: every temporal type
//! (infinities too), the NAV table with its composite text key, foreign
//! keys across schemas, placeholder dates, advisory and row locks, and
//! SIGTERM in the middle of a run. What every engine must do alike is in
//! `tests/every_engine.rs`.

mod common;

use common::{
    KEY, Kind, Project, TestDb, assert_contains, assert_lacks, code, contacts_rule, text,
};
use glemsel::pseudonym::{ColumnAction, HmacKey, TokenShape};

const CUSTOMERS: &str = "
CREATE TABLE customers (
    id bigint PRIMARY KEY,
    name varchar(80),
    email varchar(120),
    phone text,
    note text,
    status text NOT NULL,
    contract_ended date,
    legal_hold boolean NOT NULL DEFAULT false
);
INSERT INTO customers VALUES
    (1, 'Jens Hansen',   'jens@example.invalid',  '+45 11', 'VIP',  'closed', '2019-03-01', false),
    (2, 'Søren Æbelø',   'soren@example.invalid', '+45 22', NULL,   'closed', '2019-06-30', false),
    (3, 'Held Person',   'held@example.invalid',  '+45 33', 'x',    'closed', '2019-01-01', true),
    (4, 'No Date',       'nodate@example.invalid','+45 44', 'y',    'closed', NULL,         false),
    (5, 'Still Active',  'active@example.invalid','+45 55', 'z',    'active', '2019-01-01', false),
    (6, 'Recent',        'recent@example.invalid','+45 66', NULL,   'closed', '2023-07-01', false),
    (7, NULL,            NULL,                    NULL,     NULL,   'closed', '2020-06-30', false);
";

/// A fresh PostgreSQL database holding `schema` and a connection to it, or
/// `None` to skip.
async fn setup(prefix: &str, schema: &str) -> Option<(TestDb, tokio_postgres::Client)> {
    let db = TestDb::create(Kind::Postgres, prefix).await?;
    db.exec(schema).await;
    let client = db.pg_client().await;
    Some((db, client))
}

async fn ids(client: &tokio_postgres::Client, sql: &str) -> Vec<i64> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn token(action: ColumnAction, max_len: Option<usize>, value: &str) -> String {
    let key = HmacKey::from_bytes(KEY.as_bytes().to_vec());
    TokenShape::for_column(action, max_len)
        .unwrap()
        .token(&key, value)
}

const NAV: &str = r#"
CREATE TABLE "CRONUS International Ltd_$Customer" (
    "No_" varchar(20) NOT NULL,
    "Company" varchar(30) NOT NULL,
    "Name" varchar(50) NOT NULL,
    "E-Mail" varchar(80) NOT NULL,
    "Phone No_" varchar(30),
    "Last Date Modified" timestamp NOT NULL,
    "Blocked" integer NOT NULL DEFAULT 0,
    PRIMARY KEY ("No_", "Company")
);
INSERT INTO "CRONUS International Ltd_$Customer"
SELECT 'C' || lpad(n::text, 5, '0'), c, 'Kunde ' || n, 'kunde' || n || '@example.invalid', '+45 ' || n,
       CASE WHEN n % 10 = 0 THEN timestamp '1753-01-01 00:00:00'
            WHEN n % 3 = 0 THEN timestamp '2025-06-01 12:00:00'
            ELSE timestamp '2015-01-01 00:00:00' + n * interval '1 day' END,
       CASE WHEN n % 7 = 0 THEN 1 ELSE 0 END
FROM generate_series(1, 60) AS n, (VALUES ('CRONUS'), ('ACME')) AS companies(c);
"#;

const NAV_RULE: &str = r#"
[[rule]]
id = "nav-customers"
store = "nav"
table = "CRONUS International Ltd_$Customer"
category = "test"
after = "Last Date Modified"
retain = "5 years"
round_up_to = "financial_year_end"
where = '"Blocked" = 0'
empty_dates = ["1753-01-01"]
batch_size = 7
batch_ms = 0
"#;

/// Which of the 60 generated customers a run on 2026-11-22 must change:
/// not blank-dated (n % 10), not recent (n % 3), not blocked (n % 7).
fn nav_due(n: i64) -> bool {
    n % 10 != 0 && n % 3 != 0 && n % 7 != 0
}

#[tokio::test]
async fn nav_table_with_composite_key_spaces_and_empty_dates() {
    let Some((db, client)) = setup("nav", NAV).await else {
        return;
    };
    let project = Project::new("postgres", "nav", &db.url, "");
    project.rules("nav.toml", &format!("{NAV_RULE}action = \"delete\"\n"));
    let check = project.glemsel(&["check"]);
    assert_eq!(code(&check), 0, "{}", text(&check));
    assert_contains(&text(&check), "walks (No_, Company)");

    let due: Vec<i64> = (1..=60).filter(|n| nav_due(*n)).collect();
    let plan = project.glemsel(&["plan", "--format", "json", "--as-of", "2026-11-22"]);
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan JSON");
    assert_eq!(json["steps"][0]["counts"]["due"], due.len() as u64 * 2);
    assert_eq!(
        json["steps"][0]["counts"]["undated"],
        6 * 2,
        "n = 10, 20, .., 60 in both companies"
    );

    let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    let left: Vec<(String, String)> = client
        .query(
            r#"SELECT "No_", "Company" FROM "CRONUS International Ltd_$Customer" ORDER BY 1, 2"#,
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected: Vec<(String, String)> = (1..=60)
        .filter(|n| !nav_due(*n))
        .flat_map(|n| {
            [
                (format!("C{n:05}"), "ACME".to_string()),
                (format!("C{n:05}"), "CRONUS".to_string()),
            ]
        })
        .collect();
    assert_eq!(left, expected);

    // Windows follow each other without gaps or overlaps along the key.
    let windows: Vec<(Option<String>, Option<String>, i64)> = client
        .query("SELECT key_from, key_to, rows_affected FROM glemsel_audit WHERE event = 'batch' ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(windows.len() > 3, "{windows:?}");
    assert_eq!(
        windows.iter().map(|w| w.2).sum::<i64>(),
        due.len() as i64 * 2
    );
    assert!(windows.iter().all(|w| w.2 <= 7));
    assert_eq!(windows[0].0, None);
    // The 7th key in order: C00001 ACME, C00001 CRONUS, .., C00004 ACME. Text
    // keys such as customer numbers reach the trail only as keyed hashes.
    let key = HmacKey::from_bytes(KEY.as_bytes().to_vec());
    let first_end = format!(
        "[\"hmac:{}\",\"hmac:{}\"]",
        key.audit_hash("C00004"),
        key.audit_hash("ACME")
    );
    assert_eq!(windows[0].1.as_deref(), Some(first_end.as_str()));
    assert_eq!(
        windows[1].0.as_deref(),
        Some(first_end.as_str()),
        "the next window starts where this ended"
    );
    let trail: String = client
        .query_one("SELECT string_agg(a::text, ' ') FROM glemsel_audit a", &[])
        .await
        .unwrap()
        .get(0);
    assert_lacks(&trail, "C000");
    db.drop().await;
}

#[tokio::test]
async fn nav_columns_with_spaces_are_pseudonymised() {
    let Some((db, client)) = setup("navpsn", NAV).await else {
        return;
    };
    let project = Project::new("postgres", "nav", &db.url, "");
    project.rules(
        "nav.toml",
        &format!("{NAV_RULE}action = \"pseudonymise\"\ncolumns = {{ \"Name\" = \"hmac\", \"E-Mail\" = \"hmac_email\", \"Phone No_\" = \"null\" }}\n"),
    );
    let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    for row in client
        .query(r#"SELECT "No_", "Company", "Name", "E-Mail", "Phone No_" FROM "CRONUS International Ltd_$Customer""#, &[])
        .await
        .unwrap()
    {
        let no: String = row.get(0);
        let n: i64 = no[1..].parse().unwrap();
        let (name, mail, phone): (String, String, Option<String>) = (row.get(2), row.get(3), row.get(4));
        if nav_due(n) {
            assert_eq!(name, token(ColumnAction::Hmac, Some(50), &format!("Kunde {n}")));
            assert_eq!(mail, token(ColumnAction::HmacEmail, Some(80), &format!("kunde{n}@example.invalid")));
            assert_eq!(phone, None);
        } else {
            assert_eq!(name, format!("Kunde {n}"));
            assert_eq!(phone, Some(format!("+45 {n}")));
        }
    }
    db.drop().await;
}

#[tokio::test]
async fn event_columns_of_every_temporal_type() {
    let schema = "
        CREATE TABLE events (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz);
        INSERT INTO events VALUES
            (1, '2024-11-21', '2024-11-21 23:59:59', '2024-11-21 22:59:59+00'),
            (2, '2024-11-22', '2024-11-22 00:00:00', '2024-11-21 23:00:00+00'),
            (3, '2024-11-23', '2024-11-22 00:00:01', '2024-11-21 23:00:01+00'),
            (4, '-infinity', '-infinity', '-infinity'),
            (5, 'infinity', 'infinity', 'infinity'),
            (6, NULL, NULL, NULL);
    ";
    let Some((db, _client)) = setup("types", schema).await else {
        return;
    };
    let project = Project::new("postgres", "db", &db.url, "");
    let rules: String = ["d", "ts", "tz"]
        .iter()
        .map(|column| {
            format!(
                "[[rule]]\nid = \"by-{column}\"\nstore = \"db\"\ntable = \"events\"\ncategory = \"test\"\nafter = \"{column}\"\nretain = \"2 years\"\naction = \"delete\"\n\n"
            )
        })
        .collect();
    project.rules("events.toml", &rules);
    // Midnight 22 November 2026 in Copenhagen = 2026-11-21T23:00Z.
    let plan = project.glemsel(&["plan", "--format", "json", "--as-of", "2026-11-22"]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    for step in json["steps"].as_array().unwrap() {
        let rule = step["rule_id"].as_str().unwrap();
        // Rows 1 and 2 are due; infinities and NULL are never due.
        assert_eq!(step["counts"]["due"], 2, "{rule}: {step}");
        assert_eq!(step["counts"]["undated"], 3, "{rule}");
    }
    db.drop().await;
}

/// The advisory lock id glemsel takes for a rule, computed in SQL.
fn rule_lock_sql(function: &str, rule: &str) -> String {
    format!(
        "SELECT {function}(('x' || substr(encode(sha256('glemsel:rule:{rule}'::bytea), 'hex'), 1, 16))::bit(64)::bigint)"
    )
}

#[tokio::test]
async fn a_rule_locked_by_another_worker_is_skipped() {
    let Some((db, client)) = setup("locked", CUSTOMERS).await else {
        return;
    };
    let project = Project::new("postgres", "shop", &db.url, "");
    project.rules("shop.toml", &contacts_rule("action = \"delete\""));
    let other = db.pg_client().await;
    other
        .batch_execute(&rule_lock_sql(
            "pg_advisory_lock",
            "customers-after-contract",
        ))
        .await
        .unwrap();
    let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(code(&run), 8, "{}", text(&run));
    assert_contains(&text(&run), "another worker holds its lock");
    assert_eq!(
        ids(&client, "SELECT id FROM customers ORDER BY id").await,
        [1, 2, 3, 4, 5, 6, 7]
    );
    other
        .batch_execute(&rule_lock_sql(
            "pg_advisory_unlock",
            "customers-after-contract",
        ))
        .await
        .unwrap();
    let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    assert_eq!(
        ids(&client, "SELECT id FROM customers ORDER BY id").await,
        [3, 4, 5, 6]
    );
    db.drop().await;
}

#[tokio::test]
async fn sigterm_stops_after_the_batch_in_flight() {
    let schema = "
        CREATE TABLE logs (id int PRIMARY KEY, ip text, at timestamptz NOT NULL);
        INSERT INTO logs SELECT n, '10.0.0.' || (n % 250), timestamptz '2020-01-01' + n * interval '1 minute'
        FROM generate_series(1, 20000) AS n;
    ";
    let Some((db, client)) = setup("sigterm", schema).await else {
        return;
    };
    let project = Project::new("postgres", "db", &db.url, "");
    project.rules(
        "logs.toml",
        "[[rule]]\nid = \"access-logs\"\nstore = \"db\"\ntable = \"logs\"\ncategory = \"test\"\nafter = \"at\"\nretain = \"1 year\"\naction = \"delete\"\nbatch_size = 2\nbatch_ms = 0\n",
    );
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_glemsel"))
        .arg("run")
        .current_dir(project.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until batches are being committed, then ask it to stop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let batches: i64 = match client
            .query_one(
                "SELECT count(*) FROM glemsel_audit WHERE event = 'batch'",
                &[],
            )
            .await
        {
            Ok(row) => row.get(0),
            Err(_) => 0,
        };
        if batches >= 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no batches committed in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    assert_eq!(code(&output), 7, "{}", text(&output));
    assert_contains(&text(&output), "stopped early");

    let left: i64 = client
        .query_one("SELECT count(*) FROM logs", &[])
        .await
        .unwrap()
        .get(0);
    assert!(left > 0, "stopped before the end");
    let batch_rows: i64 = client
        .query_one(
            "SELECT sum(rows_affected)::int8 FROM glemsel_audit WHERE event = 'batch'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Every deleted row is in a committed batch's audit row, and vice versa.
    assert_eq!(batch_rows, 20000 - left);
    let finish = client
        .query_one(
            "SELECT rows_affected, detail FROM glemsel_audit WHERE event = 'run_finish'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(finish.get::<_, i64>(0), batch_rows);
    assert_contains(&finish.get::<_, String>(1), "\"status\":\"stopped\"");
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}", text(&verify));
    db.drop().await;
}

#[tokio::test]
async fn a_locked_window_is_retried_then_left_for_the_next_run() {
    let Some((db, client)) = setup("rowlock", CUSTOMERS).await else {
        return;
    };
    let project = Project::new("postgres", "shop", &db.url, "lock_timeout_ms = 100");
    project.rules(
        "shop.toml",
        &contacts_rule("action = \"delete\"\nbatch_size = 1\nbatch_ms = 0"),
    );
    let blocker = db.pg_client().await;
    blocker
        .batch_execute("BEGIN; SELECT * FROM customers WHERE id = 2 FOR UPDATE")
        .await
        .unwrap();
    let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(code(&run), 7, "{}", text(&run));
    assert_contains(&text(&run), "partial");
    assert_eq!(
        ids(&client, "SELECT id FROM customers ORDER BY id").await,
        [2, 3, 4, 5, 6]
    );
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    assert_eq!(
        ids(&client, "SELECT id FROM customers ORDER BY id").await,
        [3, 4, 5, 6]
    );
    db.drop().await;
}

#[tokio::test]
async fn foreign_keys_that_would_widen_or_block_a_delete_fail_check() {
    let schema = "
        CREATE TABLE accounts (id int PRIMARY KEY, email text UNIQUE, last_login date, on_hold boolean);
        CREATE TABLE tickets (id int PRIMARY KEY, account_id int REFERENCES accounts ON DELETE CASCADE);
        CREATE TABLE invoices (id int PRIMARY KEY, account_id int REFERENCES accounts ON DELETE RESTRICT);
        CREATE TABLE mails (id int PRIMARY KEY, address text REFERENCES accounts (email) ON UPDATE CASCADE);
        INSERT INTO accounts VALUES (1, 'a@example.invalid', '2015-01-01', NULL), (2, 'b@example.invalid', '2015-01-01', false);
        INSERT INTO tickets VALUES (1, 1);
    ";
    let Some((db, client)) = setup("fks", schema).await else {
        return;
    };
    let project = Project::new("postgres", "db", &db.url, "");
    let accounts = |action: &str| {
        format!(
            "[[rule]]\nid = \"accounts\"\nstore = \"db\"\ntable = \"accounts\"\ncategory = \"test\"\nafter = \"last_login\"\nretain = \"2 years\"\nhold = \"on_hold\"\n{action}\n"
        )
    };
    project.rules("a.toml", &accounts("action = \"delete\""));
    project.check_refuses(&[
        "public.tickets (account_id) references accounts ON DELETE CASCADE: deleting here would also change rows there without counting or auditing them",
        "public.invoices (account_id) references accounts ON DELETE RESTRICT: deleting here would block deleting every row that still has rows there",
        "public.mails (address) references accounts ON DELETE NO ACTION",
    ]);
    let run = project.glemsel(&["run", "--as-of", "2026-11-01"]);
    assert_eq!(code(&run), 4, "{}", text(&run));
    assert_eq!(ids(&client, "SELECT id::int8 FROM tickets").await, [1]);

    // Pseudonymising keeps the rows, so the keys are no obstacle, except a
    // column another table points at.
    project.rules(
        "a.toml",
        &accounts("action = \"pseudonymise\"\ncolumns = { email = \"hmac_email\" }"),
    );
    project.check_refuses(&[
        "columns: \"email\" is referenced by public.mails (address); it cannot change",
    ]);

    // A NULL hold counts as held: nobody knows the dispute is over.
    client
        .batch_execute("ALTER TABLE accounts ADD COLUMN note text; DROP TABLE mails")
        .await
        .unwrap();
    project.rules(
        "a.toml",
        &accounts("action = \"pseudonymise\"\ncolumns = { note = \"null\" }"),
    );
    let plan = project.glemsel(&["plan", "--format", "json", "--as-of", "2026-11-01"]);
    let json: serde_json::Value =
        serde_json::from_slice(&plan.stdout).unwrap_or_else(|_| panic!("{}", text(&plan)));
    assert_eq!(
        json["steps"][0]["counts"]["held"], 0,
        "note is NULL already: nothing pending"
    );
    client
        .batch_execute("UPDATE accounts SET note = 'n'")
        .await
        .unwrap();
    let plan = project.glemsel(&["plan", "--format", "json", "--as-of", "2026-11-01"]);
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(json["steps"][0]["counts"]["held"], 1, "{json}");
    assert_eq!(json["steps"][0]["counts"]["due"], 1, "{json}");
    db.drop().await;
}

#[tokio::test]
async fn placeholder_dates_before_1900_are_never_due() {
    let schema = "
        CREATE TABLE t (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz);
        INSERT INTO t VALUES
            (1, '0001-01-01', '0001-01-01 00:00', '0001-01-01 00:00+00'),
            (2, '1753-01-01', '1753-01-01 00:00', '1753-01-01 00:00+00'),
            (3, '1899-12-31', '1899-12-31 23:59:59', '1899-12-31 12:00+00'),
            (4, '1900-01-02', '1900-01-02 00:00', '1900-01-02 00:00+00');
        CREATE TABLE pairs (a int NOT NULL, b int NOT NULL, at date, UNIQUE (a, b));
    ";
    let Some((db, _client)) = setup("floor", schema).await else {
        return;
    };
    let project = Project::new("postgres", "db", &db.url, "");
    let rules: String = ["d", "ts", "tz"]
        .iter()
        .map(|c| format!("[[rule]]\nid = \"{c}\"\nstore = \"db\"\ntable = \"t\"\ncategory = \"test\"\nafter = \"{c}\"\nretain = \"1 year\"\naction = \"delete\"\n\n"))
        .collect();
    project.rules("t.toml", &rules);
    let plan = project.glemsel(&["plan", "--format", "json", "--as-of", "2026-11-01"]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    for step in json["steps"].as_array().unwrap() {
        assert_eq!(step["counts"]["due"], 1, "{step}");
        assert_eq!(step["counts"]["undated"], 3, "{step}");
    }
    // A unique key named out of its index's order is refused: each window
    // would need a sort instead of an index range.
    project.rules(
        "t.toml",
        "[[rule]]\nid = \"pairs\"\nstore = \"db\"\ntable = \"pairs\"\ncategory = \"test\"\nafter = \"at\"\nretain = \"1 year\"\nkey = [\"b\", \"a\"]\naction = \"delete\"\n",
    );
    project.check_refuses(&["key: name the columns in the index's order: [\"a\", \"b\"]"]);
    db.drop().await;
}

/// A batch that stops at its limit goes on in the same window even when
/// fewer rows changed than its limit picked (a row picked by `ctid` that
/// changed meanwhile is left alone: here a trigger keeps one row). The
/// window is large, grown over rows that are not due, and the due rows
/// after them are more than one batch may change: none of them is left.
#[tokio::test]
async fn a_limited_batch_that_changed_fewer_rows_than_it_picked_goes_on() {
    let Some((db, client)) = setup(
        "limit_kept",
        "CREATE TABLE events (id BIGINT PRIMARY KEY, at TIMESTAMP NOT NULL);
         INSERT INTO events SELECT n, CASE WHEN n > 15000 THEN TIMESTAMP '2020-01-01'
             ELSE TIMESTAMP '2026-10-01' END FROM generate_series(1, 20000) n;
         ANALYZE events;
         CREATE FUNCTION keep_one() RETURNS trigger LANGUAGE plpgsql AS
             'BEGIN IF OLD.id = 15001 THEN RETURN NULL; END IF; RETURN OLD; END';
         CREATE TRIGGER keep_one BEFORE DELETE ON events FOR EACH ROW EXECUTE FUNCTION keep_one();",
    )
    .await
    else {
        return;
    };
    let project = Project::for_db(&db, "db", "");
    project.rules(
        "events.toml",
        "[[rule]]\nid = \"events\"\nstore = \"db\"\ntable = \"events\"\ncategory = \"test\"\n\
         after = \"at\"\nretain = \"1 year\"\naction = \"delete\"\nbatch_size = 100\nbatch_ms = 100\n",
    );
    let run = project.glemsel(&["run", "--as-of", "2026-11-01", "--format", "json"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["rules"][0]["rows_changed"], 4999, "{report}");
    // Every due row is gone but the one the trigger keeps.
    assert_eq!(
        ids(
            &client,
            "SELECT id FROM events WHERE at < '2025-01-01' ORDER BY id"
        )
        .await,
        [15001]
    );
    let count: i64 = client
        .query_one("SELECT COUNT(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 15001);
    let audited: i64 = client
        .query_one(
            "SELECT SUM(rows_affected)::bigint FROM glemsel_audit WHERE rule_id = 'events' AND event = 'batch'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 4999, "the audit rows count every deleted row");
    db.drop().await;
}
