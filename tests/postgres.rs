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
    assert_eq!(row.get::<_, String>(1), "public.customers");
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
