//! glemsel against a real PostgreSQL server: every data-changing path is
//! checked row by row afterwards, together with the audit rows describing it.

mod common;

use std::collections::BTreeMap;

use common::{KEY, PgDb, Project, code, text};
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

/// On 2026-11-22, customers whose contract ended before 1 July 2023 are due:
/// 36 months from the end of the financial year (30 June) it ended in.
fn contacts_rule(action: &str) -> String {
    format!(
        r#"
[[rule]]
id = "customers-after-contract"
store = "shop"
table = "customers"
category = "test"
after = "contract_ended"
retain = "36 months"
round_up_to = "financial_year_end"
where = "status = 'closed'"
hold = "legal_hold"
{action}
"#
    )
}

async fn setup(prefix: &str, schema: &str) -> Option<(PgDb, tokio_postgres::Client)> {
    let db = PgDb::create(prefix).await?;
    let client = db.client().await;
    client.batch_execute(schema).await.expect("fixture");
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

/// (event, rows_affected) of every audit row, in chain order.
async fn audit_rows(client: &tokio_postgres::Client) -> Vec<(String, i64)> {
    client
        .query(
            "SELECT event, rows_affected FROM glemsel_audit ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn delete_removes_exactly_the_due_rows_and_audits_them() {
    let Some((db, client)) = setup("delete", CUSTOMERS).await else {
        return;
    };
    let project = Project::new("postgres", "shop", &db.url, "");
    project.rules("shop.toml", &contacts_rule("action = \"delete\""));

    let plan = project.glemsel(&["plan", "--as-of", "2026-11-22"]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    let plan_text = text(&plan);
    assert!(
        plan_text.contains("rows      3 due, 1 held, 1 with no usable date, 7 in the table"),
        "{plan_text}"
    );
    assert!(
        plan_text.contains("due when  contract_ended < 2023-07-01"),
        "{plan_text}"
    );
    // A dry run changes nothing and writes no audit table.
    assert_eq!(
        ids(&client, "SELECT id FROM customers ORDER BY id").await,
        [1, 2, 3, 4, 5, 6, 7]
    );

    let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    assert!(text(&run).contains("deleted 3 rows"), "{}", text(&run));
    // 1, 2 and 7 are due; 3 is held, 4 has no date, 5 is out of scope, 6 is recent.
    assert_eq!(
        ids(&client, "SELECT id FROM customers ORDER BY id").await,
        [3, 4, 5, 6]
    );

    let audit = audit_rows(&client).await;
    assert_eq!(audit.first().unwrap().0, "run_start");
    assert_eq!(audit.last().unwrap(), &("run_finish".to_string(), 3));
    let batch_sum: i64 = audit
        .iter()
        .filter(|(e, _)| e == "batch")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(batch_sum, 3);
    let row = client
        .query_one(
            "SELECT rule_id, table_name, action, cutoff, detail FROM glemsel_audit WHERE event = 'run_finish'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "customers-after-contract");
    assert_eq!(row.get::<_, String>(1), "customers");
    assert_eq!(row.get::<_, String>(2), "delete");
    assert_eq!(row.get::<_, String>(3), "contract_ended < 2023-07-01");
    assert!(
        row.get::<_, String>(4).contains("\"held\":1"),
        "{}",
        row.get::<_, String>(4)
    );

    // A second run finds nothing due and changes nothing.
    let again = project.glemsel(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    assert_eq!(
        ids(&client, "SELECT id FROM customers ORDER BY id").await,
        [3, 4, 5, 6]
    );
    assert_eq!(
        audit_rows(&client).await.last().unwrap(),
        &("run_finish".to_string(), 0)
    );

    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}", text(&verify));
    db.drop().await;
}

/// The value a column holds, or NULL.
async fn column(client: &tokio_postgres::Client, sql: &str) -> BTreeMap<i64, Option<String>> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn token(action: ColumnAction, max_len: Option<usize>, value: &str) -> String {
    let key = HmacKey::from_bytes(KEY.as_bytes().to_vec());
    TokenShape::for_column(action, max_len)
        .unwrap()
        .token(&key, value)
}

#[tokio::test]
async fn pseudonymise_changes_only_the_named_columns_of_due_rows_once() {
    let Some((db, client)) = setup("pseudonymise", CUSTOMERS).await else {
        return;
    };
    let project = Project::new("postgres", "shop", &db.url, "");
    project.rules(
        "shop.toml",
        &contacts_rule(
            "action = \"pseudonymise\"\ncolumns = { name = \"hmac\", email = \"hmac_email\", phone = \"null\", note = \"redact\" }",
        ),
    );
    let before = column(
        &client,
        "SELECT id, name || '|' || coalesce(email, '') FROM customers",
    )
    .await;

    let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(code(&run), 0, "{}", text(&run));

    let names = column(&client, "SELECT id, name FROM customers ORDER BY id").await;
    let emails = column(&client, "SELECT id, email FROM customers ORDER BY id").await;
    let phones = column(&client, "SELECT id, phone FROM customers ORDER BY id").await;
    let notes = column(&client, "SELECT id, note FROM customers ORDER BY id").await;
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
    assert_eq!((phones[&1].clone(), phones[&2].clone()), (None, None));
    assert_eq!(notes[&1].as_deref(), Some("[redacted]"));
    assert_eq!(notes[&2], None, "NULL stays NULL");
    assert_eq!((names[&7].clone(), emails[&7].clone()), (None, None));
    // Held, undated, out-of-scope and recent rows are untouched.
    let after = column(
        &client,
        "SELECT id, name || '|' || coalesce(email, '') FROM customers",
    )
    .await;
    for id in [3, 4, 5, 6] {
        assert_eq!(after[&id], before[&id], "row {id}");
        assert!(phones[&id].is_some(), "row {id}");
    }

    let audit = audit_rows(&client).await;
    // Row 7 holds nothing but NULLs in the named columns: nothing to change.
    let changed: i64 = audit
        .iter()
        .filter(|(e, _)| e == "batch")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(changed, 2);
    let key_id: Option<String> = client
        .query_one(
            "SELECT key_id FROM glemsel_audit WHERE event = 'batch'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        key_id.as_deref(),
        Some(HmacKey::from_bytes(KEY.as_bytes().to_vec()).id())
    );

    // Re-running changes nothing: tokens are not hashed again.
    let names_after_first = names.clone();
    let again = project.glemsel(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    assert!(
        text(&again).contains("pseudonymised 0 rows"),
        "{}",
        text(&again)
    );
    assert_eq!(
        column(&client, "SELECT id, name FROM customers").await,
        names_after_first
    );
    let plan = project.glemsel(&["plan", "--as-of", "2026-11-22"]);
    assert!(
        text(&plan).contains("0 due, 1 held, 1 with no usable date, 3 already pseudonymised"),
        "{}",
        text(&plan)
    );
    db.drop().await;
}

/// HMAC-SHA256 computed by PostgreSQL's built-in sha256 equals the Rust
/// reference on hard inputs, whole and cut to a column's length.
#[tokio::test]
async fn sql_tokens_equal_the_rust_reference() {
    let schema = "CREATE TABLE samples (id int PRIMARY KEY, whole text, cut varchar(24), mail varchar(40), at date NOT NULL)";
    let Some((db, client)) = setup("tokens", schema).await else {
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
    for (i, value) in values.iter().enumerate() {
        client
            .execute(
                "INSERT INTO samples VALUES ($1, $2, left($2, 24), left($2, 40), '2000-01-01')",
                &[&(i as i32), value],
            )
            .await
            .unwrap();
    }
    let project = Project::new("postgres", "db", &db.url, "");
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
    let whole = column(&client, "SELECT id::int8, whole FROM samples").await;
    let cut = column(&client, "SELECT id::int8, cut FROM samples").await;
    let mail = column(&client, "SELECT id::int8, mail FROM samples").await;
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

async fn audit_table_exists(client: &tokio_postgres::Client) -> bool {
    client
        .query_one("SELECT to_regclass('glemsel_audit') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn audit_verify_finds_edited_deleted_and_reordered_rows() {
    let Some((db, client)) = setup("tamper", CUSTOMERS).await else {
        return;
    };
    let project = Project::new(
        "postgres",
        "shop",
        &db.url,
        "audit_checkpoints = \"heads.tsv\"",
    );
    project.rules(
        "shop.toml",
        &contacts_rule("action = \"delete\"\nbatch_size = 1\nbatch_ms = 0")
            .replace("status = 'closed'", "status <> 'x'"),
    );
    let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    let rows: i64 = client
        .query_one("SELECT count(*) FROM glemsel_audit", &[])
        .await
        .unwrap()
        .get(0);
    assert!(rows >= 5, "start, several batches, finish: {rows}");
    assert!(
        std::fs::read_to_string(project.path().join("heads.tsv"))
            .unwrap()
            .starts_with("shop\t")
    );
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}", text(&verify));
    assert!(
        text(&verify).contains(&format!(
            "audit chain intact, {rows} rows, 1 checkpoints matched"
        )),
        "{}",
        text(&verify)
    );

    // Edited: a batch claims fewer rows than it deleted.
    client
        .batch_execute("UPDATE glemsel_audit SET rows_affected = 0 WHERE seq = 3")
        .await
        .unwrap();
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 6, "{}", text(&verify));
    assert!(
        text(&verify).contains("row seq 3: its content does not match its row_hash"),
        "{}",
        text(&verify)
    );
    client
        .batch_execute("UPDATE glemsel_audit SET rows_affected = 1 WHERE seq = 3")
        .await
        .unwrap();
    assert_eq!(code(&project.glemsel(&["audit", "verify"])), 0);

    // Reordered: two rows swap places.
    client
        .batch_execute(
            "UPDATE glemsel_audit SET seq = -1 WHERE seq = 2; UPDATE glemsel_audit SET seq = 2 WHERE seq = 3; \
             UPDATE glemsel_audit SET seq = 3 WHERE seq = -1",
        )
        .await
        .unwrap();
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 6, "{}", text(&verify));
    assert!(
        text(&verify).contains("row seq 2: prev_hash does not match"),
        "{}",
        text(&verify)
    );
    client
        .batch_execute(
            "UPDATE glemsel_audit SET seq = -1 WHERE seq = 2; UPDATE glemsel_audit SET seq = 2 WHERE seq = 3; \
             UPDATE glemsel_audit SET seq = 3 WHERE seq = -1",
        )
        .await
        .unwrap();
    assert_eq!(code(&project.glemsel(&["audit", "verify"])), 0);

    // Deleted: a row in the middle, then the tail (found by the checkpoint).
    client
        .batch_execute("CREATE TABLE saved AS SELECT * FROM glemsel_audit")
        .await
        .unwrap();
    client
        .batch_execute("DELETE FROM glemsel_audit WHERE seq = 2")
        .await
        .unwrap();
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 6, "{}", text(&verify));
    assert!(
        text(&verify).contains("row seq 3: expected seq 2"),
        "{}",
        text(&verify)
    );
    client
        .batch_execute(&format!("DELETE FROM glemsel_audit; INSERT INTO glemsel_audit SELECT * FROM saved WHERE seq < {rows}"))
        .await
        .unwrap();
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 6, "{}", text(&verify));
    assert!(
        text(&verify).contains("rows were cut from its end"),
        "{}",
        text(&verify)
    );
    db.drop().await;
}

#[tokio::test]
async fn schema_mismatches_fail_check_and_run_before_anything_is_written() {
    let Some((db, client)) = setup("schema", CUSTOMERS).await else {
        return;
    };
    let project = Project::new("postgres", "shop", &db.url, "");
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
        "rule second: after: column \"name\" of customers is character varying(80), not a date or timestamp",
        "rule second: columns: \"id\" is part of the key of customers",
        "rule second: columns: customers has no column \"nope\"",
        "4 problems found; nothing was changed",
    ]);
    // A run with one bad rule runs none, not even the good ones.
    let good = contacts_rule("action = \"delete\"");
    project.rules("shop.toml", &format!("{good}\n[[rule]]\nid = \"bad\"\nstore = \"shop\"\ntable = \"nowhere\"\ncategory = \"test\"\nafter = \"x\"\nretain = \"1 day\"\naction = \"delete\"\n"));
    let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(code(&run), 4, "{}", text(&run));
    assert!(
        text(&run).contains("table nowhere does not exist in store shop"),
        "{}",
        text(&run)
    );
    assert_eq!(
        ids(&client, "SELECT id FROM customers ORDER BY id").await,
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert!(!audit_table_exists(&client).await);

    // A `where` the database cannot compile is a check error too.
    project.rules(
        "shop.toml",
        &good.replace("status = 'closed'", "statu = 'closed'"),
    );
    project.check_refuses(&[
        "rules/shop.toml:13:9: rule customers-after-contract: the count statement does not compile",
    ]);
    db.drop().await;
}

#[tokio::test]
async fn invalid_files_touch_no_database() {
    let Some((db, client)) = setup("invalid", CUSTOMERS).await else {
        return;
    };
    let project = Project::new("postgres", "shop", &db.url, "");
    project.rules(
        "shop.toml",
        &contacts_rule("action = \"delete\"\nmax_row = 1"),
    );
    for args in [&["check", "--offline"][..], &["check"], &["plan"], &["run"]] {
        let out = project.glemsel(args);
        assert_eq!(code(&out), 3, "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains(
                "rules/shop.toml:16:1: rule customers-after-contract: unknown field `max_row`"
            ),
            "{}",
            text(&out)
        );
        assert!(
            text(&out).contains("no database was touched"),
            "{}",
            text(&out)
        );
    }
    assert_eq!(
        ids(&client, "SELECT id FROM customers ORDER BY id").await,
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert!(!audit_table_exists(&client).await);
    db.drop().await;
}

#[tokio::test]
async fn guards_refuse_before_writing() {
    let Some((db, client)) = setup("guards", CUSTOMERS).await else {
        return;
    };
    let project = Project::new("postgres", "shop", &db.url, "");
    project.rules(
        "shop.toml",
        &contacts_rule("action = \"delete\"\nmax_rows = 2"),
    );
    let plan = project.glemsel(&["plan", "--as-of", "2026-11-22"]);
    assert!(
        text(&plan).contains(
            "guard     max_rows 2: 3 rows are due, more than max_rows = 2: a run would refuse"
        ),
        "{}",
        text(&plan)
    );
    let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(code(&run), 5, "{}", text(&run));
    assert!(
        text(&run).contains("3 rows are due, more than max_rows = 2; nothing was changed"),
        "{}",
        text(&run)
    );
    assert_eq!(
        ids(&client, "SELECT id FROM customers ORDER BY id").await,
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert!(!audit_table_exists(&client).await);

    // Nothing goes before its time.
    project.rules("shop.toml", &contacts_rule("action = \"delete\""));
    let future = (chrono::Utc::now() + chrono::TimeDelta::days(2))
        .format("%Y-%m-%d")
        .to_string();
    let run = project.glemsel(&["run", "--as-of", &future]);
    assert_eq!(code(&run), 5, "{}", text(&run));
    assert!(
        text(&run).contains("is later than the clock"),
        "{}",
        text(&run)
    );
    assert_eq!(
        ids(&client, "SELECT id FROM customers ORDER BY id").await,
        [1, 2, 3, 4, 5, 6, 7]
    );
    // A plan may look ahead.
    assert_eq!(code(&project.glemsel(&["plan", "--as-of", &future])), 0);
    db.drop().await;
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
    assert!(
        text(&check).contains("walks (No_, Company)"),
        "{}",
        text(&check)
    );

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
    assert!(!trail.contains("C000"), "{trail}");
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

/// The seed policies' own date vectors, at a real database, the day before
/// and the day the data becomes due.
#[tokio::test]
async fn seed_vectors_at_their_boundaries() {
    let schema = "
        CREATE TABLE agreements (id int PRIMARY KEY, ended date);
        INSERT INTO agreements VALUES (1, '2017-05-15');
        CREATE TABLE invoices (id int PRIMARY KEY, invoice_date date);
        INSERT INTO invoices VALUES (1, '2019-08-10');
    ";
    let Some((db, _client)) = setup("vectors", schema).await else {
        return;
    };
    let project = Project::new("postgres", "db", &db.url, "");
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
            let json: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
            assert_eq!(
                json["steps"][0]["counts"]["due"], due,
                "{rule} as of {as_of}"
            );
        }
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
    let other = db.client().await;
    other
        .batch_execute(&rule_lock_sql(
            "pg_advisory_lock",
            "customers-after-contract",
        ))
        .await
        .unwrap();
    let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(code(&run), 8, "{}", text(&run));
    assert!(
        text(&run).contains("another worker holds its lock"),
        "{}",
        text(&run)
    );
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
    assert!(text(&output).contains("stopped early"), "{}", text(&output));

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
    assert!(
        finish
            .get::<_, String>(1)
            .contains("\"status\":\"stopped\"")
    );
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
    let blocker = db.client().await;
    blocker
        .batch_execute("BEGIN; SELECT * FROM customers WHERE id = 2 FOR UPDATE")
        .await
        .unwrap();
    let run = project.glemsel(&["run", "--as-of", "2026-11-22"]);
    assert_eq!(code(&run), 7, "{}", text(&run));
    assert!(text(&run).contains("partial"), "{}", text(&run));
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
async fn secrets_never_reach_output_or_the_audit_trail() {
    const PASSWORD: &str = "Pa55w0rd-must-not-leak";
    let Some((db, client)) = setup("secrets", CUSTOMERS).await else {
        return;
    };
    let project = Project::new("postgres", "shop", &db.url_with_password(PASSWORD), "");
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
    // A server that refuses the connection.
    std::fs::write(
        project.path().join("shop.url"),
        format!("postgresql://postgres:{PASSWORD}@127.0.0.1:1/nowhere"),
    )
    .unwrap();
    let refused = project.glemsel(&["plan", "-vv"]);
    assert_eq!(code(&refused), 1, "{}", text(&refused));
    assert!(
        text(&refused).contains("store shop: cannot connect"),
        "{}",
        text(&refused)
    );
    everything.push_str(&text(&refused));
    let trail: String = client
        .query_one("SELECT string_agg(a::text, ' ') FROM glemsel_audit a", &[])
        .await
        .unwrap()
        .get(0);
    everything.push_str(&trail);
    assert!(
        everything.contains("customers-after-contract"),
        "the outputs were captured"
    );
    // The key, and what SQL receives instead of it: the pad blocks, as hex
    // and as the byte lists a debug print would show.
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
        assert!(!everything.contains(secret), "{secret} leaked");
    }
    // Nor the personal data the rule pseudonymised.
    assert!(
        !trail.contains("Jens") && !trail.contains("jens@"),
        "{trail}"
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
