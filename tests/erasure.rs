//! Erasure on request, end to end through the binary on every engine: a
//! person in webshop tables, a NAV table with a composite key and quoted
//! names, and bookkeeping rows kept under a minimum. The dry run changes
//! nothing; the run changes exactly that person's rows; the ledger, the
//! ledger file and the audit trail never hold the identifier; a request
//! matching nobody is recorded; an overdue request fails `status`; and a
//! restore of a dump from before the erasure is undone by `erase replay`.

#[macro_use]
mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::{KEY, Project, TestDb, assert_contains, assert_lacks, code, text};
use glemsel::pseudonym::{ColumnAction, HmacKey, TokenShape};

const SCHEMA: &str = r#"
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name VARCHAR(80),
    email VARCHAR(120),
    customer_no VARCHAR(20)
);
INSERT INTO customers (id, name, email, customer_no) VALUES
    (1, 'Jens Hansen', 'jens@example.invalid', 'C-1'),
    (2, 'Søren Æbelø', 'soren@example.invalid', 'C-2'),
    (3, 'Karen Blixen', 'karen@example.invalid', 'C-3');
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    item VARCHAR(40)
);
INSERT INTO orders (id, customer_id, item) VALUES (10, 1, 'bike'), (11, 1, 'lamp'), (12, 2, 'tent'), (13, 3, 'book');
CREATE TABLE newsletter (
    address VARCHAR(120) PRIMARY KEY,
    since DATE
);
INSERT INTO newsletter (address, since) VALUES
    (' JENS@Example.invalid', '2024-01-01'), ('karen@example.invalid', '2024-02-02');
CREATE TABLE "CRONUS International Ltd_$Customer" (
    "No_" VARCHAR(20) NOT NULL,
    "Company" VARCHAR(30) NOT NULL,
    "Name" VARCHAR(50),
    "E-Mail" VARCHAR(80),
    PRIMARY KEY ("No_", "Company")
);
INSERT INTO "CRONUS International Ltd_$Customer" ("No_", "Company", "Name", "E-Mail") VALUES
    ('C-1', 'CRONUS', 'Jens Hansen', 'jens@example.invalid'),
    ('C-1', 'OTHER', 'Jens Hansen', NULL),
    ('C-3', 'CRONUS', 'Karen Blixen', 'karen@example.invalid');
CREATE TABLE invoices (
    no VARCHAR(20) PRIMARY KEY,
    customer_name VARCHAR(80),
    customer_email VARCHAR(120),
    amount DECIMAL(10, 2) NOT NULL,
    issued DATE NOT NULL
);
INSERT INTO invoices (no, customer_name, customer_email, amount, issued) VALUES
    ('INV-1', 'Jens Hansen', 'jens@example.invalid', 100.50, '2025-01-10'),
    ('INV-2', 'Jens Hansen', 'jens@example.invalid', 7.25, '2025-03-10'),
    ('INV-3', 'Karen Blixen', 'karen@example.invalid', 42.00, '2025-04-10');
"#;

const RULES: &str = r#"
[[rule]]
id = "invoices-bookkeeping"
store = "shop"
table = "invoices"
category = "test"
after = "issued"
retain = "5 years"
kind = "minimum"
action = "delete"

[[subject]]
kind = "customer"
identifiers = ["email", "customer_no"]
deadline = "1 month"
follow = ["customer_no"]

[[subject.table]]
store = "shop"
table = "customers"
match = { email = "email", customer_no = "customer_no" }
action = "delete"
authoritative = ["customer_no"]

[[subject.table.cascade]]
table = "orders"
on = { customer_id = "id" }

[[subject.table]]
store = "shop"
table = "newsletter"
match = { email = "address" }
action = "delete"

[[subject.table]]
store = "shop"
table = "CRONUS International Ltd_$Customer"
match = { email = "E-Mail", customer_no = "No_" }
action = "delete"

[[subject.table]]
store = "shop"
table = "invoices"
match = { email = "customer_email" }
action = "pseudonymise"
columns = { customer_name = "hmac", customer_email = "hmac_email" }
kept_by = "invoices-bookkeeping"
"#;

const TABLES: [&str; 5] = [
    "SELECT id, name, email, customer_no FROM customers ORDER BY id",
    "SELECT id, customer_id, item FROM orders ORDER BY id",
    "SELECT address, since FROM newsletter ORDER BY address",
    r#"SELECT "No_", "Company", "Name", "E-Mail" FROM "CRONUS International Ltd_$Customer" ORDER BY "No_", "Company""#,
    "SELECT no, customer_name, customer_email, amount, issued FROM invoices ORDER BY no",
];

/// Every row of every table, as text.
async fn snapshot(db: &TestDb) -> Vec<Vec<Vec<Option<String>>>> {
    let mut all = Vec::new();
    for sql in TABLES {
        all.push(db.rows(sql).await);
    }
    all
}

/// The rows of `snapshot` no identifier of `people` appears in.
fn without(
    snapshot: &[Vec<Vec<Option<String>>>],
    people: &[&str],
) -> Vec<Vec<Vec<Option<String>>>> {
    snapshot
        .iter()
        .map(|table| {
            table
                .iter()
                .filter(|row| {
                    !row.iter()
                        .flatten()
                        .any(|v| people.iter().any(|p| v.to_lowercase().contains(p)))
                })
                .cloned()
                .collect()
        })
        .collect()
}

fn token(action: ColumnAction, max: usize, value: &str) -> String {
    let key = HmacKey::from_bytes(KEY.as_bytes().to_vec());
    TokenShape::for_column(action, Some(max))
        .unwrap()
        .token(&key, value)
}

/// `glemsel erase add --subject <identifier>` with the value on standard input.
fn add_from_stdin(project: &Project, identifier: &str, value: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_glemsel"))
        .args(["erase", "add", "--subject", identifier])
        .current_dir(project.path())
        .env_remove("GLEMSEL_CONFIG")
        .env("GLEMSEL_LOG", "glemsel=debug,info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{value}").unwrap();
    child.wait_with_output().unwrap()
}

every_engine! {
    /// The whole life of two requests and one that matches nobody.
    async fn a_request_erases_exactly_its_person_and_a_replay_does_it_again(kind) {
        let Some(db) = TestDb::create(kind, "erasure").await else { return };
        db.exec(SCHEMA).await;
        let project = Project::for_db(&db, "shop", "erasure_store = \"shop\"\nerasure_ledger = \"erasure-ledger.jsonl\"\n");
        project.rules("shop.toml", RULES);
        let before = snapshot(&db).await;
        // The backup a restore later brings back: taken before any request.
        let dump = db.dump(project.path());
        let mut logs = String::new();
        let check = project.glemsel(&["check"]);
        assert_eq!(code(&check), 0, "{}", text(&check));
        assert_contains(&text(&check), "1 erasure subject: tables match");
        // The newsletter's key is the address: its values are bound into
        // the statements, which a server may log.
        assert_contains(&text(&check), "warning: rules/shop.toml:34:9: subject customer: table newsletter: column \"address\" holds an identifier");
        assert_lacks(&text(&check), "table customers: column");

        let add = project.glemsel(&["erase", "add", "--subject", "email=Jens@Example.invalid", "--received", "2026-11-20", "--reference", "case 17"]);
        logs.push_str(&text(&add));
        assert_eq!(code(&add), 0, "{}", text(&add));
        assert_contains(&text(&add), "erasure-0001: customer by email, received 2026-11-20, deadline 2026-12-20");
        let nobody = add_from_stdin(&project, "email", "nobody@example.invalid");
        logs.push_str(&text(&nobody));
        assert_eq!(code(&nobody), 0, "{}", text(&nobody));
        let unknown = project.glemsel(&["erase", "add", "--subject", "phone=123"]);
        assert_eq!(code(&unknown), 2, "{}", text(&unknown));

        let plan = project.glemsel(&["erase", "plan"]);
        let out = text(&plan);
        logs.push_str(&out);
        assert_eq!(code(&plan), 0, "{out}");
        assert_contains(&out, "shop.customers: 1 found; 1 deleted; also deletes 2 rows of orders");
        assert_contains(&out, "shop.newsletter: 1 found; 1 deleted");
        // One of Jens's NAV rows has no e-mail: his customer number, found
        // in his customer row, finds it.
        assert_contains(&out, "CRONUS International Ltd_$Customer: 2 found; 2 deleted");
        assert_contains(&out, "shop.invoices: 2 found; 2 pseudonymised; kept until 2030-03-09 under the minimum of rule invoices-bookkeeping");
        assert_contains(&out, "matches no row in any declared table");
        assert_eq!(snapshot(&db).await, before, "the dry run changed nothing");
        let json = project.glemsel(&["erase", "plan", "--format", "json"]);
        let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(
            json[0]["tables"][0]["cascades"],
            serde_json::json!([{ "name": "orders", "rows": 2 }])
        );

        // Søren's request came in September: overdue until it is run.
        let overdue = project.glemsel(&["erase", "add", "--subject", "email=soren@example.invalid", "--received", "2026-09-01"]);
        logs.push_str(&text(&overdue));
        assert_eq!(code(&overdue), 0, "{}", text(&overdue));
        let status = project.glemsel(&["erase", "status"]);
        logs.push_str(&text(&status));
        assert_eq!(code(&status), 10, "{}", text(&status));
        assert_contains(&text(&status), "OVERDUE");

        let run = project.glemsel(&["erase", "run"]);
        let out = text(&run);
        logs.push_str(&out);
        assert_eq!(code(&run), 0, "{out}");
        assert_contains(&out, "erasure-0001: 6 rows found, 6 changed, 2 related rows deleted; partly done");
        assert_contains(&out, "erasure-0002: 0 rows found, 0 changed (matches no row); done");
        assert_contains(&out, "erasure-0003: 1 rows found, 1 changed, 1 related rows deleted; done");

        let after = snapshot(&db).await;
        // Everyone else is byte-identical; the invoices stay, with their
        // numbers and amounts, and the name and address as tokens.
        let others = without(&before, &["jens", "soren", "søren"]);
        let mut expected = others.clone();
        expected[1] = before[1].iter().filter(|r| r[0].as_deref() == Some("13")).cloned().collect();
        let invoices: Vec<Vec<Option<String>>> = before[4]
            .iter()
            .map(|r| match r[1].as_deref() {
                Some("Jens Hansen") => vec![
                    r[0].clone(),
                    Some(token(ColumnAction::Hmac, 80, "Jens Hansen")),
                    Some(token(ColumnAction::HmacEmail, 120, "jens@example.invalid")),
                    r[3].clone(),
                    r[4].clone(),
                ],
                _ => r.clone(),
            })
            .collect();
        expected[4] = invoices;
        assert_eq!(after, expected);

        // The audit rows name the request, never the person.
        let batches = db.rows("SELECT rule_id, table_name, action, rows_affected FROM glemsel_audit WHERE event = 'batch' ORDER BY seq").await;
        let batches: Vec<Vec<String>> = batches.into_iter().map(|r| r.into_iter().map(Option::unwrap).collect()).collect();
        assert_eq!(batches, vec![
            vec!["erasure-0001".to_string(), "customers".into(), "delete".into(), "1".into()],
            vec!["erasure-0001".to_string(), "newsletter".into(), "delete".into(), "1".into()],
            vec!["erasure-0001".to_string(), "CRONUS International Ltd_$Customer".into(), "delete".into(), "2".into()],
            vec!["erasure-0001".to_string(), "invoices".into(), "pseudonymise".into(), "2".into()],
            vec!["erasure-0003".to_string(), "customers".into(), "delete".into(), "1".into()],
        ]);
        let verify = project.glemsel(&["audit", "verify"]);
        assert_eq!(code(&verify), 0, "{}", text(&verify));

        // `audit show` lists the erasure rows after the rule runs: each
        // request, its status changes (the intent first), its batches.
        let show = project.glemsel(&["audit", "show"]);
        let out = text(&show);
        logs.push_str(&out);
        assert_eq!(code(&show), 0, "{out}");
        for line in [
            "  erasure request erasure-0001: recorded; received 2026-11-20, deadline 2026-12-20 at ",
            "  erasure status erasure-0001: running (intent); 6 rows found, 0 changed; remaining 2 rows in shop.invoices at ",
            "  erasure request erasure-0001: deleted 1 rows of customers (and 2 of orders) at ",
            "  erasure request erasure-0001: pseudonymised 2 rows of invoices at ",
            "  erasure status erasure-0001: partly done; 6 rows found, 6 changed; remaining 2 rows in shop.invoices at ",
            "  erasure status erasure-0002: done; 0 rows found, 0 changed at ",
            "  erasure request erasure-0003: deleted 1 rows of customers (and 1 of orders) at ",
        ] {
            assert_contains(&out, line);
        }
        let json = project.glemsel(&["audit", "show", "--format", "json"]);
        let runs: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).expect("audit show --format json");
        logs.push_str(&text(&json));
        assert_eq!(runs.iter().filter(|r| r["action"] == "erasure request").count(), 3);
        assert_eq!(runs.iter().filter(|r| r["rule_now"] == "erasure" && r["batches"] == 1).count(), 5);

        // So does the retention report, in every format that has sections.
        let md = project.glemsel(&["report", "--format", "md"]);
        let out = text(&md);
        logs.push_str(&out);
        assert_contains(&out, "## 5. Erasure requests");
        assert_contains(&out, "- erasure-0001 (customer by email): received 2026-11-20, deadline 2026-12-20, partly done\n  - shop.customers: delete 1 rows on ");
        assert_contains(&out, "  - shop.invoices: pseudonymise 2 rows on ");
        assert_contains(&out, "- erasure-0002 (customer by email): received ");
        let html = project.glemsel(&["report", "--format", "html"]);
        logs.push_str(&text(&html));
        assert_contains(&text(&html), "<tr data-request=\"erasure-0003\">");
        let json = project.glemsel(&["report", "--format", "json"]);
        logs.push_str(&text(&json));
        let review: serde_json::Value = serde_json::from_slice(&json.stdout).expect("report --format json");
        let requests = review["erasure"].as_array().unwrap();
        assert_eq!(requests.len(), 3);
        assert_eq!(requests[0]["status"], "partly done");
        assert_eq!(requests[0]["batches"].as_array().unwrap().len(), 4);
        assert_eq!(requests[1]["batches"].as_array().unwrap().len(), 0);
        assert_eq!(requests[2]["batches"][0]["rows"], 1);

        let status = project.glemsel(&["erase", "status"]);
        let out = text(&status);
        logs.push_str(&out);
        assert_eq!(code(&status), 0, "{out}");
        assert_contains(&out, "partly done");

        let ledger_file = std::fs::read_to_string(project.path().join("erasure-ledger.jsonl")).unwrap();
        let audit = db.audit_text().await;
        for place in [&audit, &ledger_file, &logs] {
            for secret in ["jens", "Jens", "JENS", "soren", "nobody", "Hansen"] {
                assert_lacks(place, secret);
            }
        }
        assert_contains(&ledger_file, "case 17");

        // The invoices no longer match the address, but the request stays
        // partly done while they are there; when the bookkeeping rule has
        // deleted them (here by hand: its minimum ends in 2030), it is done.
        let statuses = "SELECT count(*) FROM glemsel_audit WHERE event = 'erasure_status'";
        let before_rerun = db.number(statuses).await;
        let again = project.glemsel(&["erase", "run"]);
        assert_eq!(code(&again), 0, "{}", text(&again));
        assert_eq!(db.number(statuses).await, before_rerun, "an unchanged status is not written again");
        assert_contains(&text(&again), "erasure-0001: 0 rows found, 0 changed; partly done");
        db.exec("DELETE FROM invoices WHERE no IN ('INV-1', 'INV-2')").await;
        let later = project.glemsel(&["erase", "run"]);
        assert_contains(&text(&later), "erasure-0001: 0 rows found, 0 changed; done");
        assert_eq!(db.number(statuses).await, before_rerun + 1);

        // A restore from before any request: the database's ledger is gone,
        // the file still has it, and a replay erases both people again.
        db.restore(&dump).await;
        assert_eq!(snapshot(&db).await, before, "the dump brought everyone back");
        assert!(!db.has_audit_table().await, "the dump is from before the first run");
        let status = project.glemsel(&["erase", "status"]);
        assert_contains(&text(&status), "only in the ledger file");
        let replay = project.glemsel(&["erase", "replay"]);
        let out = text(&replay);
        assert_eq!(code(&replay), 0, "{out}");
        assert_contains(&out, "erasure-0001 (replay): 6 rows found, 6 changed");
        assert_eq!(snapshot(&db).await, expected, "the replay erased the same rows and nobody else");
        let replays = db.number("SELECT count(*) FROM glemsel_audit WHERE event = 'erasure_status' AND detail LIKE '%\"replay\":true%' AND detail NOT LIKE '%\"status\":\"running\"%'").await;
        assert_eq!(replays, 3);
        // Each replay that changed rows wrote its intent first.
        let intents = db.number("SELECT count(*) FROM glemsel_audit WHERE event = 'erasure_status' AND detail LIKE '%\"status\":\"running\"%'").await;
        assert_eq!(intents, 2, "the replay's (the restore took the first run's)");
        // The requests are back in the database's ledger too.
        let status = project.glemsel(&["erase", "status"]);
        assert_eq!(code(&status), 0, "{}", text(&status));
        assert_lacks(&text(&status), "only in the ledger file");
        assert_eq!(
            db.number("SELECT count(*) FROM glemsel_audit WHERE event = 'erasure_request'").await,
            3
        );
        assert_lacks(&db.audit_text().await, "jens");
        db.drop().await;
    }
}

every_engine! {
    /// `check` holds subject tables to the live schema, every problem
    /// with the file and line of the table's declaration.
    async fn check_refuses_a_subject_table_that_does_not_fit(kind) {
        let Some(db) = TestDb::create(kind, "erasure_check").await else { return };
        db.exec(SCHEMA).await;
        // A declared foreign key from orders: without the cascade, a
        // delete would be blocked or widened.
        db.exec("DROP TABLE orders; CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers (id), item VARCHAR(40))").await;
        let project = Project::for_db(&db, "shop", "erasure_store = \"shop\"\nerasure_ledger = \"erasure-ledger.jsonl\"\n");
        let cascade = "[[subject.table.cascade]]\ntable = \"orders\"\non = { customer_id = \"id\" }\n";
        assert!(RULES.contains(cascade));
        let rules = RULES
            .replace("match = { email = \"address\" }", "match = { email = \"mail\" }")
            .replace(cascade, "");
        project.rules("shop.toml", &rules);
        let check = project.glemsel(&["check"]);
        let out = text(&check);
        assert_eq!(code(&check), 4, "{out}");
        assert_contains(&out, "rules/shop.toml:31:9: subject customer: table newsletter: no column \"mail\" in ");
        assert_contains(&out, "rules/shop.toml:23:9: subject customer: table customers: ");
        assert_contains(&out, "orders has a foreign key into this table");
        assert_contains(&out, "2 problems found; nothing was changed");
        db.drop().await;
    }
}

every_engine! {
    /// A row under a hold is kept and reported, and erased by the first
    /// run after the hold lifts; anonymise writes NULL and the redacted
    /// text, and a second run changes nothing.
    async fn a_hold_defers_the_erasure_until_it_lifts(kind) {
        let Some(db) = TestDb::create(kind, "erasure_hold").await else { return };
        db.exec("CREATE TABLE members (id INTEGER PRIMARY KEY, email VARCHAR(120), name VARCHAR(80), note VARCHAR(200), disputed BOOLEAN); \
                 INSERT INTO members (id, email, name, note, disputed) VALUES \
                 (1, 'jens@example.invalid', 'Jens Hansen', 'likes bikes', TRUE), \
                 (2, 'jens@example.invalid', 'Jens H.', NULL, FALSE), \
                 (3, 'karen@example.invalid', 'Karen Blixen', 'author', FALSE)").await;
        let project = Project::for_db(&db, "shop", "erasure_store = \"shop\"\nerasure_ledger = \"erasure-ledger.jsonl\"\n");
        project.rules("shop.toml", "[[subject]]\nkind = \"member\"\nidentifiers = [\"email\"]\ndeadline = \"1 month\"\n\n[[subject.table]]\nstore = \"shop\"\ntable = \"members\"\nmatch = { email = \"email\" }\naction = \"anonymise\"\ncolumns = { email = \"null\", name = \"redact\", note = \"null\" }\nhold = \"disputed\"\n");
        let members = "SELECT id, email, name, note FROM members ORDER BY id";
        let before = db.rows(members).await;
        let add = project.glemsel(&["erase", "add", "--subject", "email=jens@example.invalid"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        let plan = project.glemsel(&["erase", "plan"]);
        assert_contains(&text(&plan), "shop.members: 2 found; 1 anonymised; 1 kept under a hold");
        let run = project.glemsel(&["erase", "run"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        assert_contains(&text(&run), "erasure-0001: 2 rows found, 1 changed; partly done");
        assert_contains(&text(&run), "remains: 1 rows in shop.members, held");
        let redacted = |id: &str| vec![Some(id.to_string()), None, Some("[redacted]".to_string()), None];
        assert_eq!(db.rows(members).await, vec![before[0].clone(), redacted("2"), before[2].clone()]);

        db.exec("UPDATE members SET disputed = FALSE WHERE id = 1").await;
        let run = project.glemsel(&["erase", "run"]);
        assert_contains(&text(&run), "erasure-0001: 1 rows found, 1 changed; done");
        assert_eq!(db.rows(members).await, vec![redacted("1"), redacted("2"), before[2].clone()]);
        let again = project.glemsel(&["erase", "replay"]);
        assert_contains(&text(&again), "erasure-0001 (replay): 0 rows found, 0 changed; done");
        assert_eq!(
            db.rows("SELECT table_name, action, rows_affected FROM glemsel_audit WHERE event = 'batch' ORDER BY seq").await,
            vec![
                vec![Some("members".to_string()), Some("anonymise".to_string()), Some("1".to_string())],
                vec![Some("members".to_string()), Some("anonymise".to_string()), Some("1".to_string())],
            ]
        );

        // After a key rotation the recorded hash finds nobody: a replay
        // refuses rather than call the request done, and changes nothing.
        db.exec("UPDATE members SET email = 'jens@example.invalid' WHERE id = 1").await;
        let reappeared = db.rows(members).await;
        std::fs::write(project.path().join("hmac-key"), "another key, rotated, 32 bytes or more").unwrap();
        let replay = project.glemsel(&["erase", "replay"]);
        assert_ne!(code(&replay), 0, "{}", text(&replay));
        assert_contains(&text(&replay), "erasure request erasure-0001 was recorded under pseudonymisation key");
        assert_eq!(db.rows(members).await, reappeared);
        db.drop().await;
    }
}

/// Two erasure runs never overlap: while another worker holds the
/// erasure lock (on PostgreSQL an advisory lock), a run refuses (exit 8)
/// and changes nothing, and an add is recorded at once without it.
#[tokio::test]
async fn an_erasure_run_waits_for_another_workers() {
    let Some(db) = TestDb::create(common::Kind::Postgres, "erasure_lock").await else {
        return;
    };
    db.exec(SCHEMA).await;
    let project = Project::for_db(
        &db,
        "shop",
        "erasure_store = \"shop\"\nerasure_ledger = \"erasure-ledger.jsonl\"\n",
    );
    project.rules("shop.toml", RULES);
    let add = project.glemsel(&["erase", "add", "--subject", "email=jens@example.invalid"]);
    assert_eq!(code(&add), 0, "{}", text(&add));
    let before = snapshot(&db).await;
    let lock = |function: &str| {
        format!(
            "SELECT {function}(('x' || substr(encode(sha256('glemsel:rule:glemsel erasure'::bytea), 'hex'), 1, 16))::bit(64)::bigint)"
        )
    };
    let other = db.pg_client().await;
    other
        .batch_execute(&lock("pg_advisory_lock"))
        .await
        .unwrap();
    let run = project.glemsel(&["erase", "run"]);
    assert_eq!(code(&run), 8, "{}", text(&run));
    assert_contains(
        &text(&run),
        "another worker is running the erasure requests",
    );
    assert_eq!(snapshot(&db).await, before);
    // An add does not wait for a run, which may take hours.
    let started = std::time::Instant::now();
    let add = project.glemsel(&["erase", "add", "--subject", "email=karen@example.invalid"]);
    assert_eq!(code(&add), 0, "{}", text(&add));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the add waited"
    );
    assert_contains(&text(&add), "erasure-0002: customer by email");
    assert_eq!(
        db.number("SELECT count(*) FROM glemsel_audit WHERE event = 'erasure_request'")
            .await,
        2
    );
    assert_eq!(snapshot(&db).await, before);
    other
        .batch_execute(&lock("pg_advisory_unlock"))
        .await
        .unwrap();
    let run = project.glemsel(&["erase", "run"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    assert_ne!(snapshot(&db).await, before);
    db.drop().await;
}

/// The SCHEMA with people who share values: two walk-in customers under
/// the customer number GUEST, two customers of a firm under its one
/// address, and a NAV row of Karen's (C-3) that carries Jens's address.
const SHARED: &str = r#"
INSERT INTO customers (id, name, email, customer_no) VALUES
    (4, 'Walk-in One', 'one@example.invalid', 'GUEST'),
    (5, 'Walk-in Two', 'two@example.invalid', 'GUEST'),
    (6, 'Firm Buyer A', 'info@firm.invalid', 'C-6'),
    (7, 'Firm Buyer B', 'info@firm.invalid', 'C-7');
INSERT INTO orders (id, customer_id, item) VALUES (14, 4, 'map'), (15, 5, 'pen');
INSERT INTO "CRONUS International Ltd_$Customer" ("No_", "Company", "Name", "E-Mail") VALUES
    ('C-3', 'SHARED', 'Karen Blixen', 'jens@example.invalid'),
    ('GUEST', 'CRONUS', 'Walk-in', NULL);
"#;

every_engine! {
    /// Following learns a customer number only from the customers table
    /// (a row there is one person), so a NAV row with Jens's address and
    /// Karen's number does not take Karen in; and a learnt value several
    /// rows hold, or a request matching several people's rows, is refused
    /// by plan and run alike, naming the request and the table, never the
    /// value, with nothing changed.
    async fn follow_takes_in_nobody_who_shares_a_value(kind) {
        let Some(db) = TestDb::create(kind, "erasure_shared").await else { return };
        db.exec(SCHEMA).await;
        db.exec(SHARED).await;
        let project = Project::for_db(&db, "shop", "erasure_store = \"shop\"\nerasure_ledger = \"erasure-ledger.jsonl\"\n");
        project.rules("shop.toml", RULES);
        let before = snapshot(&db).await;
        let add = project.glemsel(&["erase", "add", "--subject", "email=jens@example.invalid"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        let run = project.glemsel(&["erase", "run"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        // Jens's customer row, his two NAV rows and the NAV row with his
        // address; not Karen's customer row, order or NAV row.
        assert_contains(&text(&run), "erasure-0001: 7 rows found, 7 changed, 2 related rows deleted");
        let after = snapshot(&db).await;
        let karen = |table: &[Vec<Option<String>>]| -> Vec<Vec<Option<String>>> {
            table.iter().filter(|r| r.iter().flatten().any(|v| v == "C-3" || v == "13")).cloned().collect()
        };
        assert_eq!(karen(&after[0]), karen(&before[0]));
        assert_eq!(karen(&after[1]), karen(&before[1]));
        assert_eq!(
            after[3].iter().filter(|r| r[0].as_deref() == Some("C-3")).count(),
            1,
            "Karen's own NAV row stays, the one with Jens's address goes: {:?}",
            after[3]
        );

        // A walk-in's number is shared; the firm's address is two people's.
        // Karen's request, made at the same time, is not held up by them.
        for subject in ["email=one@example.invalid", "email=info@firm.invalid", "email=karen@example.invalid"] {
            let add = project.glemsel(&["erase", "add", "--subject", subject]);
            assert_eq!(code(&add), 0, "{}", text(&add));
        }
        let before = snapshot(&db).await;
        let batches = "SELECT rule_id, table_name FROM glemsel_audit WHERE event = 'batch' AND rule_id <> 'erasure-0001' ORDER BY seq";
        for command in ["plan", "run"] {
            let out = project.glemsel(&["erase", command]);
            let said = text(&out);
            assert_eq!(code(&out), 5, "{said}");
            assert_contains(&said, "erasure request erasure-0002 (subject customer): refused, none of its rows changed: the customer_no learnt from its row of shop.customers is held by 2 rows there");
            assert_contains(&said, "erasure request erasure-0003 (subject customer): refused, none of its rows changed: its identifiers match 2 rows of shop.customers, the table authoritative for customer_no");
            for value in ["GUEST", "guest", "one@", "info@", "firm.invalid", "C-6", "Walk-in"] {
                assert_lacks(&said, value);
            }
        }
        let json = project.glemsel(&["erase", "plan", "--format", "json"]);
        assert_eq!(code(&json), 5, "{}", text(&json));
        let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        let refused: Vec<&serde_json::Value> = json
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p.get("refused").is_some())
            .collect();
        assert_eq!(refused.len(), 2, "{json:#}");
        assert_eq!(refused[0]["tables"], serde_json::json!([]));
        assert_contains(refused[0]["refused"][0].as_str().unwrap(), "erasure request erasure-0002 (subject customer): refused");
        // Only Karen's rows went, and only her request's batches are audited.
        let after = snapshot(&db).await;
        assert_eq!(after, without(&before, &["karen", "c-3"]).into_iter().enumerate().map(|(i, table)| match i {
            // Her order goes with her customer row; her invoice is pseudonymised.
            1 => table.into_iter().filter(|r| r[0].as_deref() != Some("13")).collect(),
            4 => after[4].clone(),
            _ => table,
        }).collect::<Vec<_>>());
        assert_eq!(
            db.rows(batches).await,
            ["customers", "newsletter", "CRONUS International Ltd_$Customer", "invoices"]
                .map(|t| vec![Some("erasure-0004".to_string()), Some(t.to_string())])
        );
        let status = project.glemsel(&["erase", "status"]);
        for (id, state) in [("erasure-0002", "open"), ("erasure-0003", "open"), ("erasure-0004", "partly done")] {
            assert!(
                text(&status).lines().any(|l| l.starts_with(id) && l.contains(state)),
                "{id} {state}: {}",
                text(&status)
            );
        }
        db.drop().await;
    }
}

every_engine! {
    /// A delete is refused, by check and by the plan, when a foreign key
    /// would carry it (ON DELETE CASCADE, SET NULL) into rows erasure must
    /// keep: a subject table that holds its rows, and a table erasure does
    /// not touch. Both tables are named, and nothing changes.
    async fn a_delete_never_reaches_rows_erasure_keeps(kind) {
        let Some(db) = TestDb::create(kind, "erasure_fk").await else { return };
        db.exec(SCHEMA).await;
        db.exec("CREATE TABLE tickets (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers (id) ON DELETE CASCADE, email VARCHAR(120), disputed BOOLEAN); \
                 INSERT INTO tickets (id, customer_id, email, disputed) VALUES (1, 1, 'jens@example.invalid', TRUE), (2, 3, 'karen@example.invalid', FALSE)").await;
        let project = Project::for_db(&db, "shop", "erasure_store = \"shop\"\nerasure_ledger = \"erasure-ledger.jsonl\"\n");
        // The tickets come first, as a table deleted before the customers.
        let customers = "[[subject.table]]\nstore = \"shop\"\ntable = \"customers\"\n";
        assert!(RULES.contains(customers));
        let tickets = "[[subject.table]]\nstore = \"shop\"\ntable = \"tickets\"\nmatch = { email = \"email\" }\naction = \"delete\"\nhold = \"disputed\"\n\n";
        project.rules("shop.toml", &RULES.replacen(customers, &format!("{tickets}{customers}"), 1));
        let check = project.glemsel(&["check"]);
        let out = text(&check);
        assert_eq!(code(&check), 4, "{out}");
        assert_contains(&out, "rules/shop.toml:30:9: subject customer: table customers: deleting rows of ");
        assert_contains(&out, "tickets through its foreign key customer_id (ON DELETE CASCADE), whose rows erasure keeps while they are held");
        let add = project.glemsel(&["erase", "add", "--subject", "email=jens@example.invalid"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        let tickets_rows = "SELECT id, customer_id, email FROM tickets ORDER BY id";
        let held = db.rows(tickets_rows).await;
        let before = snapshot(&db).await;
        for command in ["plan", "run"] {
            let out = project.glemsel(&["erase", command]);
            assert_eq!(code(&out), 4, "{}", text(&out));
            assert_contains(&text(&out), "whose rows erasure keeps while they are held");
            assert_eq!(snapshot(&db).await, before);
            assert_eq!(db.rows(tickets_rows).await, held);
        }

        // A table no subject declares, whose key would be set to NULL.
        db.exec("DROP TABLE tickets").await;
        db.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers (id) ON DELETE SET NULL, text VARCHAR(80))").await;
        project.rules("shop.toml", RULES);
        let check = project.glemsel(&["check"]);
        let out = text(&check);
        assert_eq!(code(&check), 4, "{out}");
        assert_contains(&out, "notes through its foreign key customer_id (ON DELETE SET NULL), a table erasure does not delete");

        // A declared cascade must match on the foreign key's columns, and
        // on a unique key of ours: a name may be two people's.
        db.exec("ALTER TABLE notes ADD COLUMN author_id INTEGER").await;
        let cascade = "[[subject.table.cascade]]\ntable = \"orders\"\non = { customer_id = \"id\" }\n";
        assert!(RULES.contains(cascade));
        for (on, problem) in [
            ("on = { author_id = \"id\" }", "notes (customer_id) references this table ON DELETE SET NULL, but the declared cascade into it matches on other columns: declare on = { customer_id = \"id\" }"),
            ("on = { text = \"name\" }", "cascade notes: (name) is not the primary key or a unique key of NOT NULL columns of "),
        ] {
            project.rules("shop.toml", &RULES.replace(cascade, &format!("{cascade}\n[[subject.table.cascade]]\ntable = \"notes\"\n{on}\n")));
            let check = project.glemsel(&["check"]);
            assert_eq!(code(&check), 4, "{}", text(&check));
            assert_contains(&text(&check), problem);
        }

        // The invoices, kept under a minimum: their link to the customer
        // would be set to NULL.
        project.rules("shop.toml", RULES);
        db.exec("DROP TABLE notes").await;
        db.exec("ALTER TABLE invoices ADD COLUMN customer_id INTEGER REFERENCES customers (id) ON DELETE SET NULL").await;
        let check = project.glemsel(&["check"]);
        let out = text(&check);
        assert_eq!(code(&check), 4, "{out}");
        assert_contains(&out, "invoices through its foreign key customer_id (ON DELETE SET NULL), whose rows erasure keeps under the minimum of rule invoices-bookkeeping");
        db.drop().await;
    }
}

/// The same table in another schema is another table: a foreign key ON
/// DELETE CASCADE from `archive.tickets` is not the declared subject
/// table `tickets`'s, and `check` refuses it (PostgreSQL has schemas).
#[tokio::test]
async fn a_foreign_key_from_another_schema_is_not_the_subject_tables() {
    let Some(db) = TestDb::create(common::Kind::Postgres, "erasure_schema").await else {
        return;
    };
    db.exec(SCHEMA).await;
    db.exec(
        "CREATE TABLE tickets (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers (id), email VARCHAR(120)); \
         CREATE SCHEMA archive; \
         CREATE TABLE archive.tickets (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers (id) ON DELETE CASCADE, email VARCHAR(120)); \
         INSERT INTO archive.tickets (id, customer_id, email) VALUES (1, 1, 'jens@example.invalid')",
    )
    .await;
    let project = Project::for_db(
        &db,
        "shop",
        "erasure_store = \"shop\"\nerasure_ledger = \"erasure-ledger.jsonl\"\n",
    );
    let customers = "[[subject.table]]\nstore = \"shop\"\ntable = \"customers\"\n";
    let tickets = "[[subject.table]]\nstore = \"shop\"\ntable = \"tickets\"\nmatch = { email = \"email\" }\naction = \"delete\"\n\n";
    project.rules(
        "shop.toml",
        &RULES.replacen(customers, &format!("{tickets}{customers}"), 1),
    );
    let check = project.glemsel(&["check"]);
    let out = text(&check);
    assert_eq!(code(&check), 4, "{out}");
    assert_contains(
        &out,
        "deleting rows of public.customers would change rows of archive.tickets through its foreign key customer_id (ON DELETE CASCADE), a table erasure does not delete",
    );
    assert_lacks(&out, "public.tickets");
    db.drop().await;
}

every_engine! {
    /// A table larger than a read batch, with a composite key whose
    /// batches split one customer number's rows, is read whole: the
    /// person's rows after the first batches are found, nobody else's
    /// taken. A table keyed by the e-mail address with a unique id is
    /// changed by the id, and `check` has nothing to warn of.
    async fn a_table_is_read_in_batches_and_changed_by_a_key_without_identifiers(kind) {
        let Some(db) = TestDb::create(kind, "erasure_batches").await else { return };
        db.exec(SCHEMA).await;
        // Three companies per number: 1000 rows end inside number 00333.
        for chunk in 0..6 {
            let values: Vec<String> = (chunk * 500..(chunk + 1) * 500)
                .map(|i| format!("('{:05}', '{}', 'Filler', 'filler{i}@example.invalid')", i / 3, ["A", "B", "C"][i % 3]))
                .collect();
            db.exec(&format!("INSERT INTO \"CRONUS International Ltd_$Customer\" (\"No_\", \"Company\", \"Name\", \"E-Mail\") VALUES {}", values.join(", "))).await;
        }
        // An integer key over several batches, Jens's customer row in the
        // last (a second one would be a second person: refused).
        db.exec("UPDATE customers SET id = 5000, email = 'JENS@example.invalid' WHERE id = 1; UPDATE orders SET customer_id = 5000 WHERE customer_id = 1").await;
        for chunk in 0..5 {
            let values: Vec<String> = (1000 + chunk * 500..1000 + (chunk + 1) * 500)
                .map(|i| format!("({i}, 'Filler', 'filler{i}@example.invalid', 'F-{i}')"))
                .collect();
            db.exec(&format!("INSERT INTO customers (id, name, email, customer_no) VALUES {}", values.join(", "))).await;
        }
        db.exec("CREATE TABLE subscribers (email VARCHAR(120) PRIMARY KEY, id INTEGER NOT NULL UNIQUE); \
                 INSERT INTO subscribers (email, id) VALUES ('jens@example.invalid', 1), ('karen@example.invalid', 2)").await;
        let project = Project::for_db(&db, "shop", "erasure_store = \"shop\"\nerasure_ledger = \"erasure-ledger.jsonl\"\n");
        let rules = RULES.replace(
            "[[subject.table]]\nstore = \"shop\"\ntable = \"newsletter\"\nmatch = { email = \"address\" }",
            "[[subject.table]]\nstore = \"shop\"\ntable = \"subscribers\"\nmatch = { email = \"email\" }",
        );
        assert_ne!(rules, RULES);
        project.rules("shop.toml", &rules);
        let check = project.glemsel(&["check"]);
        assert_eq!(code(&check), 0, "{}", text(&check));
        assert_lacks(&text(&check), "table subscribers: column");
        let add = project.glemsel(&["erase", "add", "--subject", "email=jens@example.invalid"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        let plan = project.glemsel(&["erase", "plan"]);
        assert_contains(&text(&plan), "shop.CRONUS International Ltd_$Customer: 2 found; 2 deleted");
        assert_contains(&text(&plan), "shop.subscribers: 1 found; 1 deleted");
        assert_contains(&text(&plan), "shop.customers: 1 found; 1 deleted; also deletes 2 rows of orders");
        let run = project.glemsel(&["erase", "run"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        let nav = "SELECT count(*) FROM \"CRONUS International Ltd_$Customer\"";
        assert_eq!(db.number(nav).await, 3000 + 1, "every filler row and Karen's stay");
        assert_eq!(db.number("SELECT count(*) FROM customers").await, 2500 + 2, "every filler customer, Søren and Karen stay");
        assert_eq!(
            db.rows("SELECT email, id FROM subscribers").await,
            vec![vec![Some("karen@example.invalid".to_string()), Some("2".to_string())]]
        );
        assert_eq!(
            db.rows("SELECT table_name, rows_affected FROM glemsel_audit WHERE event = 'batch' AND table_name IN ('subscribers', 'CRONUS International Ltd_$Customer') ORDER BY seq").await,
            vec![
                vec![Some("subscribers".to_string()), Some("1".to_string())],
                vec![Some("CRONUS International Ltd_$Customer".to_string()), Some("2".to_string())],
            ]
        );
        db.drop().await;
    }
}

const LEDGER_CONFIG: &str = "erasure_store = \"shop\"\nerasure_ledger = \"erasure-ledger.jsonl\"\n";

/// The request ids `erase status` lists.
fn listed_ids(project: &Project) -> Vec<String> {
    let status = project.glemsel(&["erase", "status"]);
    text(&status)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("erasure-"))
        .map(str::to_string)
        .collect()
}

every_engine! {
    /// Three `erase add` at the same moment: the erasure lock makes each
    /// read the ledger after the one before appended, so every request
    /// gets an id of its own and none is lost.
    async fn requests_added_at_once_get_ids_of_their_own(kind) {
        let Some(db) = TestDb::create(kind, "erasure_race").await else { return };
        db.exec(SCHEMA).await;
        let project = Project::for_db(&db, "shop", LEDGER_CONFIG);
        project.rules("shop.toml", RULES);
        const ROUNDS: usize = 12;
        let mut ids = Vec::new();
        for round in 0..ROUNDS {
            let children: Vec<_> = ["a", "b", "c"]
                .iter()
                .map(|who| {
                    project.spawn(&["erase", "add", "--subject", &format!("email={who}{round}@example.invalid")])
                })
                .collect();
            for child in children {
                let out = child.wait_with_output().unwrap();
                assert_eq!(code(&out), 0, "{}", text(&out));
                ids.push(text(&out).split(':').next().unwrap().to_string());
            }
        }
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 3 * ROUNDS, "ids given twice: {ids:?}");
        assert_eq!(listed_ids(&project), distinct);
        assert_eq!(
            db.number("SELECT count(*) FROM glemsel_audit WHERE event = 'erasure_request'").await,
            3 * ROUNDS as i64
        );
        let file = std::fs::read_to_string(project.path().join("erasure-ledger.jsonl")).unwrap();
        assert_eq!(file.lines().count(), 3 * ROUNDS);
        let verify = project.glemsel(&["audit", "verify"]);
        assert_eq!(code(&verify), 0, "{}", text(&verify));
        db.drop().await;
    }
}

every_engine! {
    /// A crash while appending to the ledger file leaves an incomplete
    /// last line: it is reported and ignored, and the next append sets it
    /// aside. A bad line anywhere else is refused, naming file and line.
    async fn a_torn_last_ledger_line_is_set_aside_and_other_damage_refused(kind) {
        let Some(db) = TestDb::create(kind, "erasure_torn").await else { return };
        db.exec(SCHEMA).await;
        let project = Project::for_db(&db, "shop", LEDGER_CONFIG);
        project.rules("shop.toml", RULES);
        let path = project.path().join("erasure-ledger.jsonl");
        let add = project.glemsel(&["erase", "add", "--subject", "email=jens@example.invalid"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        let whole = std::fs::read_to_string(&path).unwrap();
        let torn = r#"{"entry":"status","request":"erasure-0001","sta"#;
        std::fs::write(&path, format!("{whole}{torn}")).unwrap();

        let status = project.glemsel(&["erase", "status"]);
        let out = text(&status);
        assert_eq!(code(&status), 0, "{out}");
        assert_contains(&out, "incomplete line");
        assert_contains(&out, "erasure-ledger.jsonl");
        assert_contains(&out, "line=2");
        assert_eq!(listed_ids(&project), ["erasure-0001"]);

        let add = project.glemsel(&["erase", "add", "--subject", "email=karen@example.invalid"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        assert_contains(&text(&add), "erasure-0002: customer by email");
        let repaired = std::fs::read_to_string(&path).unwrap();
        assert!(repaired.starts_with(&whole), "{repaired}");
        assert_eq!(repaired.lines().count(), 2, "{repaired}");
        assert_lacks(&repaired, torn);
        let kept = std::fs::read_to_string(project.path().join("erasure-ledger.jsonl.torn")).unwrap();
        assert_eq!(kept, format!("{torn}\n"));
        let status = project.glemsel(&["erase", "status"]);
        assert_eq!(code(&status), 0, "{}", text(&status));
        assert_lacks(&text(&status), "incomplete line");
        assert_eq!(listed_ids(&project), ["erasure-0001", "erasure-0002"]);

        // Damage before the last line is not a crash's: refused, and
        // nothing is appended.
        std::fs::write(&path, repaired.replacen("{\"entry\"", "{\"entrx\"", 1)).unwrap();
        let damaged = std::fs::read_to_string(&path).unwrap();
        for args in [&["erase", "status"][..], &["erase", "add", "--subject", "email=soren@example.invalid"]] {
            let refused = project.glemsel(args);
            assert_eq!(code(&refused), 1, "{}", text(&refused));
            assert_contains(&text(&refused), "erasure ledger file erasure-ledger.jsonl: line 1: ");
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), damaged);
        assert_eq!(
            db.number("SELECT count(*) FROM glemsel_audit WHERE event = 'erasure_request'").await,
            2
        );
        db.drop().await;
    }
}

/// The invoices (kept under a minimum) first, then the customers: a crash
/// between the two leaves invoices whose identifier is overwritten.
const CRASH_RULES: &str = r#"
[[rule]]
id = "invoices-bookkeeping"
store = "shop"
table = "invoices"
category = "test"
after = "issued"
retain = "5 years"
kind = "minimum"
action = "delete"

[[subject]]
kind = "customer"
identifiers = ["email"]
deadline = "1 month"

[[subject.table]]
store = "shop"
table = "invoices"
match = { email = "customer_email" }
action = "pseudonymise"
columns = { customer_name = "hmac", customer_email = "hmac_email" }
kept_by = "invoices-bookkeeping"

[[subject.table]]
store = "shop"
table = "customers"
match = { email = "email" }
action = "delete"

[[subject.table.cascade]]
table = "orders"
on = { customer_id = "id" }
"#;

/// A session of the test's own holds a lock on Jens's customer row, so a
/// run blocks there after the invoices committed; `waiting` says when.
enum Blocker {
    Postgres(tokio_postgres::Client),
    Mariadb(mysql_async::Conn),
}

impl Blocker {
    async fn hold(db: &TestDb) -> Blocker {
        match db.kind {
            common::Kind::Postgres => {
                let client = db.pg_client().await;
                client
                    .batch_execute("BEGIN; LOCK TABLE customers IN EXCLUSIVE MODE")
                    .await
                    .unwrap();
                Blocker::Postgres(client)
            }
            _ => {
                use mysql_async::prelude::Queryable as _;
                let mut conn = db.mariadb_session().await;
                conn.query_drop("START TRANSACTION").await.unwrap();
                conn.query_drop("SELECT id FROM customers WHERE id = 1 FOR UPDATE")
                    .await
                    .unwrap();
                Blocker::Mariadb(conn)
            }
        }
    }

    /// Another session waits for this one's lock.
    async fn waiting(&mut self, db: &TestDb) -> bool {
        match self {
            Blocker::Postgres(client) => {
                let row = client
                    .query_one("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'customers'::regclass", &[])
                    .await
                    .unwrap();
                row.get::<_, i64>(0) > 0
            }
            // Other tests' sessions (other databases) are not this run.
            // Its own view of innodb_trx does not show the wait; the
            // process list does.
            Blocker::Mariadb(_) => {
                // The run locks the rows it deletes before their cascades.
                db.number("SELECT count(*) FROM information_schema.processlist WHERE (info LIKE 'DELETE FROM %customers%' OR info LIKE 'SELECT %customers% FOR UPDATE') AND info NOT LIKE '%processlist%' AND db = DATABASE()")
                    .await
                    > 0
            }
        }
    }

    async fn release(self) {
        match self {
            Blocker::Postgres(client) => client.batch_execute("ROLLBACK").await.unwrap(),
            Blocker::Mariadb(mut conn) => {
                use mysql_async::prelude::Queryable as _;
                conn.query_drop("ROLLBACK").await.unwrap();
                let _ = conn.disconnect().await;
            }
        }
    }
}

/// `erase run` again until the killed run's session has gone (it holds
/// the erasure lock until its server notices).
async fn run_after_crash(project: &Project) -> std::process::Output {
    for _ in 0..100 {
        let run = project.glemsel(&["erase", "run"]);
        if code(&run) != 8 {
            return run;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the killed run's erasure lock was never released");
}

/// A worker killed between one table's commit and the request's status:
/// its intent (written first) tells the next run which rows it left under
/// the minimum with their identifier overwritten, so the request ends
/// partly done, not done, and every change has its audit row.
#[tokio::test]
async fn a_run_killed_between_tables_is_finished_exactly_by_the_next() {
    for kind in [common::Kind::Postgres, common::Kind::Mariadb] {
        let Some(db) = TestDb::create(kind, "erasure_kill").await else {
            return;
        };
        db.exec(SCHEMA).await;
        let project = Project::for_db(
            &db,
            "shop",
            &format!("{LEDGER_CONFIG}lock_timeout_ms = 120000\n"),
        );
        project.rules("shop.toml", CRASH_RULES);
        let before = snapshot(&db).await;
        let add = project.glemsel(&["erase", "add", "--subject", "email=jens@example.invalid"]);
        assert_eq!(code(&add), 0, "{}", text(&add));

        let mut blocker = Blocker::hold(&db).await;
        let mut run = project.spawn(&["erase", "run"]);
        let mut waited = false;
        for _ in 0..600 {
            if blocker.waiting(&db).await {
                waited = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        run.kill().unwrap();
        let killed = run.wait_with_output().unwrap();
        assert!(
            waited,
            "{kind:?}: the run never reached the customers: {}",
            text(&killed)
        );
        blocker.release().await;

        // The invoices committed with their audit row; the customers not.
        let crashed = snapshot(&db).await;
        assert_eq!(crashed[0], before[0], "{kind:?}");
        assert_eq!(crashed[1], before[1], "{kind:?}");
        assert_ne!(crashed[4], before[4], "{kind:?}");
        let batches = "SELECT rule_id, table_name, action, rows_affected FROM glemsel_audit WHERE event = 'batch' ORDER BY seq";
        let row = |table: &str, action: &str, rows: &str| {
            vec![
                Some("erasure-0001".to_string()),
                Some(table.to_string()),
                Some(action.to_string()),
                Some(rows.to_string()),
            ]
        };
        assert_eq!(
            db.rows(batches).await,
            vec![row("invoices", "pseudonymise", "2")],
            "{kind:?}"
        );

        let again = run_after_crash(&project).await;
        let out = text(&again);
        assert_eq!(code(&again), 0, "{kind:?}: {out}");
        assert_contains(
            &out,
            "erasure-0001: 1 rows found, 1 changed, 2 related rows deleted; partly done",
        );
        assert_contains(
            &out,
            "remains: 2 rows in shop.invoices, kept until 2030-03-09 under the minimum of rule invoices-bookkeeping, which deletes them then",
        );
        let after = snapshot(&db).await;
        assert_eq!(after[0], without(&before, &["jens"])[0], "{kind:?}");
        assert_eq!(
            after[1],
            before[1]
                .iter()
                .filter(|r| r[1].as_deref() != Some("1"))
                .cloned()
                .collect::<Vec<_>>(),
            "{kind:?}"
        );
        assert_eq!(
            after[4], crashed[4],
            "{kind:?}: the invoices were not changed twice"
        );
        assert_eq!(
            db.rows(batches).await,
            vec![
                row("invoices", "pseudonymise", "2"),
                row("customers", "delete", "1")
            ],
            "{kind:?}"
        );
        let status = project.glemsel(&["erase", "status"]);
        assert_contains(&text(&status), "partly done");
        let verify = project.glemsel(&["audit", "verify"]);
        assert_eq!(code(&verify), 0, "{kind:?}: {}", text(&verify));

        // Still partly done while the invoices are there; done once the
        // bookkeeping rule (here by hand) has deleted them.
        let unchanged = project.glemsel(&["erase", "run"]);
        assert_contains(
            &text(&unchanged),
            "erasure-0001: 0 rows found, 0 changed; partly done",
        );
        db.exec("DELETE FROM invoices WHERE no IN ('INV-1', 'INV-2')")
            .await;
        let done = project.glemsel(&["erase", "run"]);
        assert_contains(&text(&done), "erasure-0001: 0 rows found, 0 changed; done");
        db.drop().await;
    }
}

every_engine! {
    /// A declared cascade deletes without looking at holds or minimums: a
    /// cascade into a table the subject holds (or only anonymises),
    /// written as that table is or otherwise, is refused by check, plan
    /// and run, naming the subject, both tables and where the kept table
    /// is declared, and nothing changes; without
    /// the cascade, the held row stays and its table's own declaration
    /// reports it.
    async fn a_cascade_never_takes_rows_the_subject_keeps(kind) {
        let Some(db) = TestDb::create(kind, "erasure_cascade_kept").await else { return };
        db.exec(SCHEMA).await;
        db.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, customer_id INTEGER, email VARCHAR(120), disputed BOOLEAN); \
                 INSERT INTO notes (id, customer_id, email, disputed) VALUES (1, 1, 'jens@example.invalid', TRUE), (2, 3, 'karen@example.invalid', FALSE)").await;
        let project = Project::for_db(&db, "shop", LEDGER_CONFIG);
        let cascade = "[[subject.table.cascade]]\ntable = \"orders\"\non = { customer_id = \"id\" }\n";
        assert!(RULES.contains(cascade));
        let with_cascade = |into: &str| RULES.replace(cascade, &format!("{cascade}\n[[subject.table.cascade]]\ntable = \"{into}\"\non = {{ customer_id = \"id\" }}\n"));
        let notes = "\n[[subject.table]]\nstore = \"shop\"\ntable = \"notes\"\nmatch = { email = \"email\" }\n";
        project.rules("shop.toml", RULES);
        let add = project.glemsel(&["erase", "add", "--subject", "email=jens@example.invalid"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        let notes_rows = "SELECT id, customer_id, email, disputed FROM notes ORDER BY id";
        let before_notes = db.rows(notes_rows).await;
        let before = snapshot(&db).await;
        // Written otherwise, the store resolves the cascade's table to the
        // held one (check, exit 4); written alike, the files alone tell
        // (exit 3, at the cascade's line).
        let qualified = match kind {
            common::Kind::Postgres => "public.notes".to_string(),
            common::Kind::Mariadb => format!("{}.notes", db.name),
            common::Kind::Sqlite => "main.notes".to_string(),
        };
        for (into, erasure, meaning, exit, at) in [
            (qualified.as_str(), "action = \"delete\"\nhold = \"disputed\"\n", "whose rows erasure keeps while they are held", 4, "rules/shop.toml:23:9: subject customer: table customers: cascade: "),
            ("notes", "action = \"anonymise\"\ncolumns = { email = \"null\" }\n", "whose rows erasure anonymises, not deletes", 3, "rules/shop.toml:33:9: subject customer: table customers: cascade: notes is "),
        ] {
            project.rules("shop.toml", &format!("{}{notes}{erasure}", with_cascade(into)));
            let check = project.glemsel(&["check"]);
            let out = text(&check);
            assert_eq!(code(&check), exit, "{out}");
            assert_contains(&out, at);
            assert_contains(&out, &format!("is also subject customer's table notes (declared at rules/shop.toml:58:9), {meaning}; the cascade would delete those rows without looking"));
            for command in ["plan", "run"] {
                let out = project.glemsel(&["erase", command]);
                assert_eq!(code(&out), exit, "{}", text(&out));
                assert_contains(&text(&out), meaning);
                assert_eq!(snapshot(&db).await, before);
                assert_eq!(db.rows(notes_rows).await, before_notes);
            }
        }
        // The notes erased by their own declaration: the held one stays.
        project.rules("shop.toml", &format!("{RULES}{notes}action = \"delete\"\nhold = \"disputed\"\n"));
        let run = project.glemsel(&["erase", "run"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        assert_contains(&text(&run), "remains: 1 rows in shop.notes, held");
        assert_eq!(db.rows(notes_rows).await, before_notes);
        db.drop().await;
    }
}

every_engine! {
    /// What the rules keep is compared as the store resolves the tables:
    /// a minimum rule on `public.invoices` (PostgreSQL) or
    /// `<database>.invoices` (MariaDB) keeps the subject's `invoices`, so
    /// a delete there is refused and nothing changes; `kept_by` naming
    /// that rule is the same table, and the run pseudonymises.
    async fn what_the_rules_keep_is_the_table_the_store_resolves(kind) {
        let Some(db) = TestDb::create(kind, "erasure_resolved").await else { return };
        db.exec(SCHEMA).await;
        let qualified = match kind {
            common::Kind::Postgres => "public.invoices".to_string(),
            common::Kind::Mariadb => format!("{}.invoices", db.name),
            common::Kind::Sqlite => "main.invoices".to_string(),
        };
        let project = Project::for_db(&db, "shop", LEDGER_CONFIG);
        let rule_table = "table = \"invoices\"\ncategory";
        assert!(RULES.contains(rule_table));
        // Bookkeeping has a statutory floor.
        let rules = format!("[categories.books]\ndescription = \"b\"\nminimum = \"5 years\"\n{}", RULES.replace(rule_table, &format!("table = \"{qualified}\"\ncategory")).replace("category = \"test\"", "category = \"books\""));
        let kept = "action = \"pseudonymise\"\ncolumns = { customer_name = \"hmac\", customer_email = \"hmac_email\" }\nkept_by = \"invoices-bookkeeping\"\n";
        assert!(rules.contains(kept));
        project.rules("shop.toml", &rules.replace(kept, "action = \"delete\"\n"));
        let check = project.glemsel(&["check"]);
        let out = text(&check);
        assert_eq!(code(&check), 4, "{out}");
        assert_contains(&out, "subject customer: table invoices: table ");
        assert_contains(&out, "invoices is kept for a statutory minimum (category books) by rule invoices-bookkeeping; erasure may not delete its rows before that");
        let add = project.glemsel(&["erase", "add", "--subject", "email=jens@example.invalid"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        let before = snapshot(&db).await;
        for command in ["plan", "run"] {
            let out = project.glemsel(&["erase", command]);
            assert_eq!(code(&out), 4, "{}", text(&out));
            assert_contains(&text(&out), "is kept for a statutory minimum");
            assert_eq!(snapshot(&db).await, before);
        }
        // kept_by names the rule on the same table, written otherwise.
        project.rules("shop.toml", &rules);
        let check = project.glemsel(&["check"]);
        assert_eq!(code(&check), 0, "{}", text(&check));
        let run = project.glemsel(&["erase", "run"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        let invoices = db.rows("SELECT no, customer_name, amount FROM invoices ORDER BY no").await;
        assert_eq!(invoices.len(), 3, "the invoices stay: {invoices:?}");
        assert_eq!(invoices[0][1].as_deref(), Some(token(ColumnAction::Hmac, 80, "Jens Hansen").as_str()));
        assert_eq!(invoices[2][1].as_deref(), Some("Karen Blixen"));
        db.drop().await;
    }
}

every_engine! {
    /// Two customers share an address and only one has a customer
    /// number: both rows are people of their own, so a request for the
    /// address is refused (nothing changed) as when both have numbers.
    async fn a_shared_address_is_refused_even_where_a_number_is_missing(kind) {
        let Some(db) = TestDb::create(kind, "erasure_shared_null").await else { return };
        db.exec(SCHEMA).await;
        db.exec("INSERT INTO customers (id, name, email, customer_no) VALUES (6, 'Firm Buyer A', 'info@firm.invalid', NULL), (7, 'Firm Buyer B', 'info@firm.invalid', 'C-7'); \
                 INSERT INTO orders (id, customer_id, item) VALUES (16, 6, 'desk'), (17, 7, 'chair')").await;
        let project = Project::for_db(&db, "shop", LEDGER_CONFIG);
        project.rules("shop.toml", RULES);
        let add = project.glemsel(&["erase", "add", "--subject", "email=info@firm.invalid"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        let before = snapshot(&db).await;
        for command in ["plan", "run"] {
            let out = project.glemsel(&["erase", command]);
            assert_eq!(code(&out), 5, "{}", text(&out));
            assert_contains(&text(&out), "erasure request erasure-0001 (subject customer): refused, none of its rows changed: its identifiers match 2 rows of shop.customers, the table authoritative for customer_no");
            assert_lacks(&text(&out), "info@");
            assert_eq!(snapshot(&db).await, before);
        }
        // Neither with a number: refused all the same.
        db.exec("UPDATE customers SET customer_no = NULL WHERE id = 7").await;
        let before = snapshot(&db).await;
        let run = project.glemsel(&["erase", "run"]);
        assert_eq!(code(&run), 5, "{}", text(&run));
        assert_contains(&text(&run), "its identifiers match 2 rows of shop.customers");
        assert_eq!(snapshot(&db).await, before);
        assert_eq!(db.number("SELECT count(*) FROM glemsel_audit WHERE event = 'batch'").await, 0);
        db.drop().await;
    }
}

/// A mistyped `erase add` never repeats what was typed: a value given
/// without its identifier's name, a stray argument after `--subject
/// email`, an unknown identifier and a bad date all fail (exit 2) with
/// nothing recorded, and the value appears nowhere in what glemsel says;
/// nor does an address typed where `erase plan` takes a request id.
#[tokio::test]
async fn a_mistyped_erase_add_never_repeats_the_identifier() {
    let Some(db) = TestDb::create(common::Kind::Sqlite, "erasure_typo").await else {
        return;
    };
    db.exec(SCHEMA).await;
    let project = Project::for_db(&db, "shop", LEDGER_CONFIG);
    project.rules("shop.toml", RULES);
    for args in [
        &["erase", "add", "--subject", "jens@example.invalid"][..],
        &["erase", "add", "--subject", "email", "jens@example.invalid"],
        &["erase", "add", "--subject", "mail=jens@example.invalid"],
        &["erase", "add", "jens@example.invalid"],
        &[
            "erase",
            "add",
            "--subject",
            "email=jens@example.invalid",
            "--received",
            "jens@example.invalid",
        ],
        &[
            "erase",
            "add",
            "--subject=jens@example.invalid",
            "--reference",
        ],
        // The address where a request id goes.
        &["erase", "plan", "jens@example.invalid"],
    ] {
        let out = project.glemsel(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", text(&out));
        assert_lacks(&text(&out), "jens");
        assert_lacks(&text(&out), "example.invalid");
    }
    assert_contains(
        &text(&project.glemsel(&["erase", "add", "--subject", "jens@example.invalid"])),
        "--subject names no identifier the rules declare ([\"email\", \"customer_no\"])",
    );
    assert_contains(
        &text(&project.glemsel(&["erase", "add", "jens@example.invalid"])),
        "error: glemsel erase add: unexpected argument found; what was typed is not repeated here",
    );
    assert!(!project.path().join("erasure-ledger.jsonl").exists());
    let unknown = project.glemsel(&["erase", "plan", "erasure-0042"]);
    assert_eq!(code(&unknown), 2, "{}", text(&unknown));
    assert_contains(&text(&unknown), "no erasure request \"erasure-0042\"");
    // Help is still help.
    let help = project.glemsel(&["erase", "add", "--help"]);
    assert_eq!(code(&help), 0, "{}", text(&help));
    assert_contains(&text(&help), "--subject <IDENTIFIER[=VALUE]>");
    db.drop().await;
}

every_engine! {
    /// A request and the columns are compared alike: trimmed, in Unicode
    /// NFC (an accent typed as a combining mark is the same letter) and in
    /// lower case, unless the subject declares the identifier `exact`,
    /// where case tells people apart.
    async fn identifiers_compare_in_nfc_and_case_as_declared(kind) {
        let Some(db) = TestDb::create(kind, "erasure_nfc").await else { return };
        db.exec(SCHEMA).await;
        db.exec("INSERT INTO customers (id, name, email, customer_no) VALUES (8, 'René Ørsted', 'RENÉ@example.invalid', 'AB-8'), (9, 'Other', 'other@example.invalid', 'ab-8x')").await;
        let project = Project::for_db(&db, "shop", LEDGER_CONFIG);
        let exact = RULES.replace("follow = [\"customer_no\"]\n", "follow = [\"customer_no\"]\nnormalise = { customer_no = \"exact\" }\n");
        assert_ne!(exact, RULES);
        project.rules("shop.toml", &exact);
        let check = project.glemsel(&["check"]);
        assert_eq!(code(&check), 0, "{}", text(&check));
        // Decomposed: "e" and U+0301.
        let add = add_from_stdin(&project, "email", " rene\u{301}@Example.invalid");
        assert_eq!(code(&add), 0, "{}", text(&add));
        let wrong_case = project.glemsel(&["erase", "add", "--subject", "customer_no=c-1"]);
        assert_eq!(code(&wrong_case), 0, "{}", text(&wrong_case));
        let plan = project.glemsel(&["erase", "plan"]);
        let out = text(&plan);
        assert_eq!(code(&plan), 0, "{out}");
        let (rene, c1) = out.split_once("erasure-0002").unwrap();
        assert_contains(rene, "shop.customers: 1 found; 1 deleted");
        assert_contains(c1, "matches no row in any declared table");
        let run = project.glemsel(&["erase", "run"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        let customers = db.column("SELECT id FROM customers ORDER BY id").await;
        assert_eq!(customers, common::texts(&[1, 2, 3, 9]));

        // In lower case (the default), c-1 is Jens's C-1.
        project.rules("shop.toml", RULES);
        let add = project.glemsel(&["erase", "add", "--subject", "customer_no=c-1"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        let plan = project.glemsel(&["erase", "plan", "erasure-0003"]);
        assert_contains(&text(&plan), "shop.customers: 1 found; 1 deleted");
        db.drop().await;
    }
}

every_engine! {
    /// `erase add` never waits for a run, which may take hours: with the
    /// run's lock held, an add is recorded at once (a run refuses, exit
    /// 8), and the next run erases it.
    async fn an_add_is_recorded_while_a_run_holds_its_lock(kind) {
        let Some(db) = TestDb::create(kind, "erasure_add_during_run").await else { return };
        db.exec(SCHEMA).await;
        let project = Project::for_db(&db, "shop", LEDGER_CONFIG);
        project.rules("shop.toml", RULES);
        let first = project.glemsel(&["erase", "add", "--subject", "email=jens@example.invalid"]);
        assert_eq!(code(&first), 0, "{}", text(&first));
        // A run on this host holds the file half of the run's lock.
        let run_lock = std::fs::File::create(project.path().join("erasure-ledger.jsonl.lock")).unwrap();
        run_lock.try_lock().unwrap();
        let before = snapshot(&db).await;
        let started = std::time::Instant::now();
        let add = project.glemsel(&["erase", "add", "--subject", "email=karen@example.invalid"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the add waited for the run");
        assert_contains(&text(&add), "erasure-0002: customer by email");
        let run = project.glemsel(&["erase", "run"]);
        assert_eq!(code(&run), 8, "{}", text(&run));
        assert_eq!(snapshot(&db).await, before);
        drop(run_lock);
        let run = project.glemsel(&["erase", "run"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        assert_contains(&text(&run), "erasure-0001: ");
        assert_contains(&text(&run), "erasure-0002: ");
        assert_eq!(db.column("SELECT id FROM customers ORDER BY id").await, common::texts(&[2]));
        let verify = project.glemsel(&["audit", "verify"]);
        assert_eq!(code(&verify), 0, "{}", text(&verify));
        db.drop().await;
    }
}

every_engine! {
    /// Later runs and replays take only the rows a request took when it
    /// was carried out: the address registered again afterwards (a new
    /// customer row, with consent) and a new person given the learnt
    /// customer number are left alone and reported, while a row the
    /// restore brought back is found by the learnt number even though the
    /// customer row that taught it is gone.
    async fn later_runs_take_only_the_rows_the_request_took(kind) {
        let Some(db) = TestDb::create(kind, "erasure_recorded").await else { return };
        db.exec(SCHEMA).await;
        let project = Project::for_db(&db, "shop", LEDGER_CONFIG);
        project.rules("shop.toml", RULES);
        let nav = r#"SELECT "No_", "Company", "Name", "E-Mail" FROM "CRONUS International Ltd_$Customer" ORDER BY "No_", "Company""#;
        let jens_other_nav = db.rows(nav).await.into_iter().find(|r| r[1].as_deref() == Some("OTHER")).unwrap();
        let add = project.glemsel(&["erase", "add", "--subject", "email=jens@example.invalid"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        let run = project.glemsel(&["erase", "run"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        assert_contains(&text(&run), "erasure-0001: 6 rows found, 6 changed, 2 related rows deleted; partly done");
        // The status entry records keyed hashes of the rows and of the
        // learnt number, never a value.
        let ledger_file = std::fs::read_to_string(project.path().join("erasure-ledger.jsonl")).unwrap();
        assert_contains(&ledger_file, "\"learnt\":[{\"identifier\":\"customer_no\",\"hash\":\"");
        assert_contains(&ledger_file, "\"rows\":[{\"store\":\"shop\",\"table\":\"customers\",\"changed\":[\"");
        for secret in ["jens", "C-1", "Hansen"] {
            assert_lacks(&ledger_file, secret);
        }

        // Jens registers again, with consent; the number C-1 is given to
        // someone new, who orders something.
        db.exec("INSERT INTO customers (id, name, email, customer_no) VALUES (4, 'Jens Hansen', 'jens@example.invalid', 'C-9'), (5, 'Nina New', 'nina@example.invalid', 'C-1'); \
                 INSERT INTO orders (id, customer_id, item) VALUES (14, 4, 'helmet'), (15, 5, 'kayak')").await;
        let before = snapshot(&db).await;
        let plan = project.glemsel(&["erase", "plan", "erasure-0001"]);
        assert_eq!(code(&plan), 0, "{}", text(&plan));
        assert_contains(&text(&plan), "shop.customers: 2 matching rows left alone: not part of the request when it was carried out");
        for command in ["run", "replay"] {
            let out = project.glemsel(&["erase", command]);
            assert_eq!(code(&out), 0, "{}", text(&out));
            assert_contains(&text(&out), "0 changed; partly done");
            assert_contains(&text(&out), "  shop.customers: 2 matching rows left alone: not part of the request when it was carried out");
            assert_eq!(snapshot(&db).await, before, "{command} took rows that were not the request's");
        }

        // A restore brings back one of Jens's NAV rows (the one without his
        // address) but not his customer row: the number recorded as learnt
        // finds it, and only it goes.
        db.exec(&format!(
            "INSERT INTO \"CRONUS International Ltd_$Customer\" (\"No_\", \"Company\", \"Name\", \"E-Mail\") VALUES ('{}', '{}', '{}', NULL)",
            jens_other_nav[0].as_deref().unwrap(), jens_other_nav[1].as_deref().unwrap(), jens_other_nav[2].as_deref().unwrap()
        )).await;
        let replay = project.glemsel(&["erase", "replay"]);
        assert_eq!(code(&replay), 0, "{}", text(&replay));
        assert_contains(&text(&replay), "erasure-0001 (replay): 1 rows found, 1 changed; partly done");
        assert_eq!(snapshot(&db).await, before, "the restored row went, nobody else's");
        db.drop().await;
    }
}

every_engine! {
    /// One request whose table fails, and one recorded under a retired
    /// key, do not stop the others: those are carried out, and the run
    /// names the failed request, its store and table, never a value.
    async fn a_failing_request_does_not_stop_the_others(kind) {
        let Some(db) = TestDb::create(kind, "erasure_isolated").await else { return };
        db.exec(SCHEMA).await;
        db.exec("CREATE TABLE members (id INTEGER PRIMARY KEY, email VARCHAR(120)); \
                 INSERT INTO members (id, email) VALUES (1, 'karen@example.invalid'), (2, 'other@example.invalid')").await;
        let project = Project::for_db(&db, "shop", LEDGER_CONFIG);
        let rules = format!("{RULES}\n[[subject]]\nkind = \"member\"\nidentifiers = [\"member_email\"]\ndeadline = \"1 month\"\n\n[[subject.table]]\nstore = \"shop\"\ntable = \"members\"\nmatch = {{ member_email = \"email\" }}\naction = \"delete\"\n");
        project.rules("shop.toml", &rules);
        // Recorded under a key since retired.
        std::fs::write(project.path().join("hmac-key"), "an older key, retired, 32 bytes or more").unwrap();
        let old = project.glemsel(&["erase", "add", "--subject", "email=soren@example.invalid"]);
        assert_eq!(code(&old), 0, "{}", text(&old));
        std::fs::write(project.path().join("hmac-key"), KEY).unwrap();
        for subject in ["email=karen@example.invalid", "email=jens@example.invalid"] {
            let add = project.glemsel(&["erase", "add", "--subject", subject]);
            assert_eq!(code(&add), 0, "{}", text(&add));
        }
        // erasure-0004 is Karen as a member; its table is gone.
        let add = project.glemsel(&["erase", "add", "--subject", "member_email=karen@example.invalid"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        db.exec("DROP TABLE members").await;
        let run = project.glemsel(&["erase", "run"]);
        let out = text(&run);
        assert_eq!(code(&run), 4, "{out}");
        assert_contains(&out, "erasure request erasure-0001 was recorded under pseudonymisation key");
        assert_contains(&out, "erasure-0002: 4 rows found, 4 changed, 1 related rows deleted; partly done");
        assert_contains(&out, "erasure-0003: 6 rows found, 6 changed, 2 related rows deleted; partly done");
        assert_contains(&out, "erasure request erasure-0004: ");
        assert_contains(&out, "table members does not exist in store shop");
        for value in ["karen", "soren", "jens"] {
            assert_lacks(&out, value);
        }
        assert_eq!(db.number("SELECT count(*) FROM customers").await, 1, "Søren's row stays; Karen's and Jens's went");
        let status = text(&project.glemsel(&["erase", "status"]));
        for (id, state) in [("erasure-0001", "open"), ("erasure-0002", "partly done"), ("erasure-0003", "partly done"), ("erasure-0004", "open")] {
            assert!(status.lines().any(|l| l.starts_with(id) && l.contains(state)), "{id} {state}: {status}");
        }
        db.drop().await;
    }
}

/// A hold placed between the run's read and its delete keeps the row and
/// the rows its cascade would take: the run locks the rows it deletes and
/// tests the hold again, and reports the row as held.
#[tokio::test]
async fn a_hold_placed_during_the_run_keeps_the_row_and_its_cascade() {
    for kind in [common::Kind::Postgres, common::Kind::Mariadb] {
        let Some(db) = TestDb::create(kind, "erasure_late_hold").await else {
            return;
        };
        db.exec("CREATE TABLE customers (id INTEGER PRIMARY KEY, email VARCHAR(120), disputed BOOLEAN NOT NULL); \
                 CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, item VARCHAR(40)); \
                 INSERT INTO customers (id, email, disputed) VALUES (1, 'jens@example.invalid', FALSE), (2, 'karen@example.invalid', FALSE); \
                 INSERT INTO orders (id, customer_id, item) VALUES (10, 1, 'bike'), (11, 2, 'book')").await;
        let project = Project::for_db(
            &db,
            "shop",
            &format!("{LEDGER_CONFIG}lock_timeout_ms = 120000\n"),
        );
        project.rules("shop.toml", "[[subject]]\nkind = \"customer\"\nidentifiers = [\"email\"]\ndeadline = \"1 month\"\n\n[[subject.table]]\nstore = \"shop\"\ntable = \"customers\"\nmatch = { email = \"email\" }\naction = \"delete\"\nhold = \"disputed\"\n\n[[subject.table.cascade]]\ntable = \"orders\"\non = { customer_id = \"id\" }\n");
        let add = project.glemsel(&["erase", "add", "--subject", "email=jens@example.invalid"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        let orders = "SELECT id FROM orders ORDER BY id";
        let before = db.rows(orders).await;

        // Another session places the hold and has not committed yet.
        let hold = "UPDATE customers SET disputed = TRUE WHERE id = 1";
        let blocker = match kind {
            common::Kind::Postgres => {
                let client = db.pg_client().await;
                client
                    .batch_execute(&format!("BEGIN; {hold}"))
                    .await
                    .unwrap();
                Blocker::Postgres(client)
            }
            _ => {
                use mysql_async::prelude::Queryable as _;
                let mut conn = db.mariadb_session().await;
                conn.query_drop("START TRANSACTION").await.unwrap();
                conn.query_drop(hold).await.unwrap();
                Blocker::Mariadb(conn)
            }
        };
        let run = project.spawn(&["erase", "run"]);
        let waiting = match kind {
            common::Kind::Postgres => {
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%customers%' AND datname = current_database()"
            }
            _ => {
                // The test's account sees no other session in innodb_trx
                // (that needs PROCESS), but its own in the process list.
                "SELECT count(*) FROM information_schema.processlist WHERE info LIKE 'SELECT %customers% FOR UPDATE' AND info NOT LIKE '%processlist%' AND db = DATABASE()"
            }
        };
        let mut waited = false;
        for _ in 0..600 {
            if db.number(waiting).await > 0 {
                waited = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // The hold commits while the run waits for the row.
        match blocker {
            Blocker::Postgres(client) => client.batch_execute("COMMIT").await.unwrap(),
            Blocker::Mariadb(mut conn) => {
                use mysql_async::prelude::Queryable as _;
                conn.query_drop("COMMIT").await.unwrap();
                let _ = conn.disconnect().await;
            }
        }
        let out = run.wait_with_output().unwrap();
        assert!(
            waited,
            "{kind:?}: the run never waited for the row: {}",
            text(&out)
        );
        assert_eq!(code(&out), 0, "{kind:?}: {}", text(&out));
        assert_contains(
            &text(&out),
            "erasure-0001: 1 rows found, 0 changed; partly done",
        );
        assert_contains(
            &text(&out),
            "remains: 1 rows in shop.customers, held (a hold placed during the run)",
        );
        assert_eq!(
            db.number("SELECT count(*) FROM customers").await,
            2,
            "{kind:?}: the held row stays"
        );
        assert_eq!(
            db.rows(orders).await,
            before,
            "{kind:?}: and so do its orders"
        );

        // When the hold lifts, the next run erases it.
        db.exec("UPDATE customers SET disputed = FALSE WHERE id = 1")
            .await;
        let run = project.glemsel(&["erase", "run"]);
        assert_contains(
            &text(&run),
            "erasure-0001: 1 rows found, 1 changed, 1 related rows deleted; done",
        );
        assert_eq!(db.rows(orders).await, vec![vec![Some("11".to_string())]]);
        db.drop().await;
    }
}

every_engine! {
    /// The pages of a table read in key order follow the key's own order:
    /// an integer key from 1 to 3000 (one to four digits), every third row
    /// the person's, is read whole on every engine, not in text order
    /// ("10" before "9"), which skipped rows between pages.
    async fn an_integer_key_is_paged_in_number_order(kind) {
        let Some(db) = TestDb::create(kind, "erasure_key_order").await else { return };
        db.exec("CREATE TABLE members (id INTEGER PRIMARY KEY, email VARCHAR(120))").await;
        // 4,000 of the person's rows: the status entry that records them
        // (~76 KB) is past the 64 KiB of a MariaDB TEXT column.
        for chunk in 0..12 {
            let values: Vec<String> = (chunk * 1000 + 1..=(chunk + 1) * 1000)
                .map(|i| format!("({i}, '{}')", if i % 3 == 0 { "jens@example.invalid".to_string() } else { format!("o{i}@example.invalid") }))
                .collect();
            db.exec(&format!("INSERT INTO members (id, email) VALUES {}", values.join(", "))).await;
        }
        let project = Project::for_db(&db, "shop", LEDGER_CONFIG);
        project.rules("shop.toml", "[[subject]]\nkind = \"member\"\nidentifiers = [\"email\"]\ndeadline = \"1 month\"\n\n[[subject.table]]\nstore = \"shop\"\ntable = \"members\"\nmatch = { email = \"email\" }\naction = \"delete\"\n");
        let add = project.glemsel(&["erase", "add", "--subject", "email=jens@example.invalid"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        let run = project.glemsel(&["erase", "run"]);
        assert_eq!(code(&run), 0, "{}", text(&run));
        assert_contains(&text(&run), "erasure-0001: 4000 rows found, 4000 changed; done");
        assert_eq!(db.number("SELECT count(*) FROM members").await, 8000);
        assert_eq!(db.number("SELECT count(*) FROM members WHERE email = 'jens@example.invalid'").await, 0);
        db.drop().await;
    }
}

every_engine! {
    /// A table whose statement fails fails that request only: the other
    /// request is carried out, and the run exits 1 naming the request,
    /// the store and the table, never a value.
    async fn a_table_that_fails_fails_only_its_request(kind) {
        let Some(db) = TestDb::create(kind, "erasure_table_fails").await else { return };
        db.exec(SCHEMA).await;
        // The newsletter refuses every delete; only Karen is on it.
        match kind {
            common::Kind::Postgres => db.exec("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'kept'; END $$; \
                CREATE TRIGGER no_delete BEFORE DELETE ON newsletter FOR EACH ROW EXECUTE FUNCTION refuse()").await,
            common::Kind::Mariadb => db.exec("CREATE TRIGGER no_delete BEFORE DELETE ON newsletter FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'kept'").await,
            _ => db.exec("CREATE TRIGGER no_delete BEFORE DELETE ON newsletter BEGIN SELECT RAISE(ABORT, 'kept'); END").await,
        }
        let project = Project::for_db(&db, "shop", LEDGER_CONFIG);
        project.rules("shop.toml", RULES);
        for subject in ["email=karen@example.invalid", "email=soren@example.invalid"] {
            let add = project.glemsel(&["erase", "add", "--subject", subject]);
            assert_eq!(code(&add), 0, "{}", text(&add));
        }
        let run = project.glemsel(&["erase", "run"]);
        let out = text(&run);
        assert_eq!(code(&run), 1, "{out}");
        assert_contains(&out, "failed: erasure request erasure-0001: store shop, table newsletter: ");
        assert_contains(&out, "erasure-0002: 1 rows found, 1 changed, 1 related rows deleted; done");
        for value in ["karen", "soren", "Blixen"] {
            assert_lacks(&out, value);
        }
        assert_eq!(db.number("SELECT count(*) FROM customers WHERE id = 2").await, 0, "Søren went");
        assert_eq!(db.number("SELECT count(*) FROM newsletter WHERE address = 'karen@example.invalid'").await, 1);
        let status = text(&project.glemsel(&["erase", "status"]));
        assert!(status.lines().any(|l| l.starts_with("erasure-0001") && l.contains("interrupted")), "{status}");
        assert!(status.lines().any(|l| l.starts_with("erasure-0002") && l.contains("done")), "{status}");
        db.drop().await;
    }
}

every_engine! {
    /// Rows kept under a minimum are kept until a date the plan states: the
    /// rule's event (the issue date, read by the rule's own condition) of
    /// the latest of them, rounded up to the end of its financial year,
    /// plus the period, less a day. Rows the rule cannot date yet (here,
    /// outside its `where`) are counted, never given a date.
    async fn a_plan_says_until_when_a_minimum_keeps_rows(kind) {
        let Some(db) = TestDb::create(kind, "erasure_kept_until").await else { return };
        db.exec(SCHEMA).await;
        db.exec("INSERT INTO invoices (no, customer_name, customer_email, amount, issued) VALUES \
                 ('INV-4', 'Jens Hansen', 'jens@example.invalid', 12.00, '2025-08-01')").await;
        let project = Project::for_db(&db, "shop", LEDGER_CONFIG);
        let minimum = "kind = \"minimum\"\n";
        assert!(RULES.contains(minimum));
        let rounded = RULES.replacen(minimum, &format!("{minimum}round_up_to = \"financial_year_end\"\nfinancial_year_end = \"06-30\"\n"), 1);
        project.rules("shop.toml", &rounded);
        let add = project.glemsel(&["erase", "add", "--subject", "email=jens@example.invalid", "--received", "2026-11-20"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        let before = snapshot(&db).await;
        // INV-4 (1 August 2025) is of the financial year ending 30 June
        // 2026: five years from then, the rule deletes it on 1 July 2031.
        let plan = project.glemsel(&["erase", "plan"]);
        let out = text(&plan);
        assert_eq!(code(&plan), 0, "{out}");
        assert_contains(&out, "shop.invoices: 3 found; 3 pseudonymised; kept until 2031-06-30 under the minimum of rule invoices-bookkeeping (");
        assert_contains(&out, "done by 2026-12-20, except 3 rows kept until 2031-06-30\n");
        assert_lacks(&out, "no date yet");
        let json = project.glemsel(&["erase", "plan", "--format", "json"]);
        let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        let invoices = json[0]["tables"].as_array().unwrap().iter().find(|t| t["table"] == "invoices").unwrap().clone();
        assert_eq!(invoices["kept_until"], "2031-06-30", "{invoices}");
        assert!(invoices.get("kept_undated").is_none(), "{invoices}");
        assert_eq!(snapshot(&db).await, before, "the dry run changed nothing");

        // Without the round-up: 1 August 2025 plus five years.
        project.rules("shop.toml", RULES);
        let out = text(&project.glemsel(&["erase", "plan"]));
        assert_contains(&out, "kept until 2030-07-31 under the minimum of rule invoices-bookkeeping");
        assert_contains(&out, "except 3 rows kept until 2030-07-31\n");

        // The rule deletes only invoices above 10: the one of 7.25 it never
        // dates; the latest of the others still gives the date.
        let scoped = rounded.replacen(minimum, &format!("{minimum}where = \"amount > 10\"\n"), 1);
        project.rules("shop.toml", &scoped);
        let plan = project.glemsel(&["erase", "plan"]);
        let out = text(&plan);
        assert_eq!(code(&plan), 0, "{out}");
        assert_contains(&out, "kept until 2031-06-30 under the minimum of rule invoices-bookkeeping (the row stays, the columns that name the person go now; the rule deletes it when the minimum ends); 1 rows have no date yet");
        assert_contains(&out, "done by 2026-12-20, except 3 rows kept under a minimum: until 2031-06-30, 1 of them with no date yet");
        assert_eq!(snapshot(&db).await, before);

        // The run, and a second one once the rows no longer match the
        // identifier, say the same of what remains.
        project.rules("shop.toml", &rounded);
        for _ in 0..2 {
            let run = project.glemsel(&["erase", "run"]);
            let out = text(&run);
            assert_eq!(code(&run), 0, "{out}");
            assert_contains(&out, "remains: 3 rows in shop.invoices, kept until 2031-06-30 under the minimum of rule invoices-bookkeeping, which deletes them then");
        }
        db.drop().await;
    }
}

every_engine! {
    /// The date follows the rule's event wherever it is: the latest of the
    /// issue date and the invoice's payments, read through the rule's
    /// join; an invoice with a payment still open is not dated.
    async fn a_kept_row_is_dated_by_the_rules_joined_event(kind) {
        let Some(db) = TestDb::create(kind, "erasure_kept_joined").await else { return };
        db.exec(SCHEMA).await;
        db.exec("CREATE TABLE payments (id INTEGER PRIMARY KEY, invoice_no VARCHAR(20) NOT NULL, paid DATE); \
                 INSERT INTO payments (id, invoice_no, paid) VALUES (1, 'INV-1', '2025-09-15'), (2, 'INV-1', '2025-02-01'), (3, 'INV-2', NULL), (4, 'INV-3', '2026-01-05')").await;
        let project = Project::for_db(&db, "shop", LEDGER_CONFIG);
        let after = "after = \"issued\"\n";
        assert!(RULES.contains(after));
        let joined = RULES.replacen(after, "after = { latest = [\"issued\", \"payments.paid\"] }\n", 1).replacen(
            "action = \"delete\"\n",
            "action = \"delete\"\n\n[[rule.join]]\ntable = \"payments\"\non = { invoice_no = \"no\" }\nopen = \"paid IS NULL\"\n",
            1,
        );
        project.rules("shop.toml", &joined);
        let check = project.glemsel(&["check"]);
        assert_eq!(code(&check), 0, "{}", text(&check));
        let add = project.glemsel(&["erase", "add", "--subject", "email=jens@example.invalid", "--received", "2026-11-20"]);
        assert_eq!(code(&add), 0, "{}", text(&add));
        // INV-1 was last paid on 15 September 2025; INV-2's payment is open.
        let plan = project.glemsel(&["erase", "plan"]);
        let out = text(&plan);
        assert_eq!(code(&plan), 0, "{out}");
        assert_contains(&out, "shop.invoices: 2 found; 2 pseudonymised; kept until 2030-09-14 under the minimum of rule invoices-bookkeeping (the row stays, the columns that name the person go now; the rule deletes it when the minimum ends); 1 rows have no date yet");
        let json = project.glemsel(&["erase", "plan", "--format", "json"]);
        let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        let invoices = json[0]["tables"].as_array().unwrap().iter().find(|t| t["table"] == "invoices").unwrap().clone();
        assert_eq!(invoices["kept_until"], "2030-09-14", "{invoices}");
        assert_eq!(invoices["kept_undated"], 1, "{invoices}");
        db.drop().await;
    }
}
