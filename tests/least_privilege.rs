//! Least privilege, on PostgreSQL and MariaDB: a role given exactly what
//! `glemsel grants` prints runs every data-changing path (delete, delete
//! with cascades, pseudonymise with tokens and with fixed values, anonymise
//! in the worker and in SQL, a join, a hold column and a hold table,
//! vacuum_after) end to end, reads nothing else, and can neither change nor
//! delete audit rows. `check` says when a role has more than it needs on
//! the audit table.

mod common;

use common::{Kind, Project, TestDb, assert_contains, assert_lacks, code, server_url, text};
use mysql_async::prelude::Queryable;

fn fixture(kind: Kind) -> String {
    let boolean = match kind {
        Kind::Postgres => "BOOLEAN",
        _ => "TINYINT(1)",
    };
    format!(
        "
CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(80), email VARCHAR(120),
    phone VARCHAR(40), ended DATE, legal_hold {boolean} NOT NULL DEFAULT FALSE);
INSERT INTO customers VALUES
    (1, 'Jens Hansen', 'jens@example.invalid', '+45 11', '2019-03-01', FALSE),
    (2, 'Held Person', 'held@example.invalid', '+45 22', '2019-03-01', TRUE),
    (3, 'Disputed Person', 'disputed@example.invalid', '+45 33', '2019-03-01', FALSE),
    (4, 'Recent Order', 'recent@example.invalid', '+45 44', '2019-03-01', FALSE);
CREATE TABLE orders (id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id), delivered_at DATE);
INSERT INTO orders VALUES (1, 1, '2019-06-01'), (2, 4, '2999-01-01');
CREATE TABLE disputes (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, resolved_at DATE);
INSERT INTO disputes VALUES (1, 3, NULL);
CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR(200), written DATE);
INSERT INTO notes VALUES (1, 'called about the invoice', '2019-01-01'), (2, 'recent', '2999-01-01');
CREATE TABLE accounts (id INTEGER PRIMARY KEY, last_seen DATE);
INSERT INTO accounts VALUES (1, '2019-01-01'), (2, '2999-01-01');
CREATE TABLE tickets (id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id), subject VARCHAR(80));
INSERT INTO tickets VALUES (1, 1, 'login'), (2, 1, 'invoice'), (3, 2, 'other');
CREATE TABLE messages (id INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets (id), body VARCHAR(200));
INSERT INTO messages VALUES (1, 1, 'hello'), (2, 2, 'hi'), (3, 3, 'hey');
CREATE TABLE visits (id INTEGER PRIMARY KEY, ip VARCHAR(45), born DATE, at DATE);
INSERT INTO visits VALUES (1, '10.1.2.3', '1980-06-15', '2019-01-01'), (2, '10.9.9.9', '1990-02-02', '2999-01-01');
CREATE TABLE logs (id INTEGER PRIMARY KEY, at DATE);
INSERT INTO logs VALUES (1, '2019-01-01'), (2, '2999-01-01');
CREATE TABLE secrets (id INTEGER PRIMARY KEY, value VARCHAR(80));
INSERT INTO secrets VALUES (1, 'not for glemsel');
"
    )
}

const RULES: &str = r#"
[[rule]]
id = "customers"
store = "db"
table = "customers"
category = "test"
after = { latest = ["ended", "orders.delivered_at"] }
retain = "1 year"
hold = "legal_hold"
action = "pseudonymise"
columns = { name = "hmac", email = "hmac_email", phone = "null" }
vacuum_after = true

[[rule.join]]
table = "orders"
on = { customer_id = "id" }

[[rule.hold_table]]
table = "disputes"
on = { customer_id = "id" }
where = "resolved_at IS NULL"

[[rule]]
id = "notes"
store = "db"
table = "notes"
category = "test"
after = "written"
retain = "1 year"
action = "pseudonymise"
columns = { body = "redact" }

[[rule]]
id = "accounts"
store = "db"
table = "accounts"
category = "test"
after = "last_seen"
retain = "1 year"
action = "delete"

[[rule.cascade]]
table = "tickets"
on = { account_id = "id" }

[[rule.cascade]]
table = "messages"
on = { ticket_id = "id" }
parent = "tickets"

[[rule]]
id = "visits"
store = "db"
table = "visits"
category = "test"
after = "at"
retain = "1 year"
action = "anonymise"
columns = { ip = "ip_prefix", born = "year" }

[[rule]]
id = "logs"
store = "db"
table = "logs"
category = "test"
after = "at"
retain = "1 year"
action = "delete"
"#;

/// The statements (comments left out) `grants` must print: every table a
/// rule reads, UPDATE of the pseudonymised columns only, DELETE where a
/// rule deletes, and SELECT and INSERT on the audit table.
fn expected_grants(kind: Kind, db: &str, role: &str) -> Vec<String> {
    let (q, table, grantee): (fn(&str) -> String, String, String) = match kind {
        Kind::Postgres => (
            |s| format!("\"{s}\""),
            "\"public\".".into(),
            format!("\"{role}\""),
        ),
        _ => (
            |s| format!("`{s}`"),
            format!("`{db}`."),
            format!("'{role}'@'%'"),
        ),
    };
    let grant = |rights: &str, t: &str| format!("GRANT {rights} ON {table}{} TO {grantee};", q(t));
    let mut expected = Vec::new();
    if kind == Kind::Postgres {
        expected.push(format!("GRANT CONNECT ON DATABASE {} TO {grantee};", q(db)));
        expected.push(format!(
            "GRANT USAGE ON SCHEMA {} TO {grantee};",
            q("public")
        ));
    }
    // PostgreSQL locks rows (SELECT ... FOR UPDATE) only with an UPDATE right.
    let lock = match kind {
        Kind::Postgres => format!(", UPDATE ({})", q("id")),
        _ => String::new(),
    };
    expected.extend([
        grant(&format!("SELECT, DELETE{lock}"), "accounts"),
        grant(
            &format!(
                "SELECT, UPDATE ({}, {}, {})",
                q("email"),
                q("name"),
                q("phone")
            ),
            "customers",
        ),
        grant("SELECT", "disputes"),
        grant("SELECT, DELETE", "logs"),
        grant("SELECT, DELETE", "messages"),
        grant(&format!("SELECT, UPDATE ({})", q("body")), "notes"),
        grant("SELECT", "orders"),
        grant("SELECT, DELETE", "tickets"),
        grant(
            &format!("SELECT, UPDATE ({}, {})", q("born"), q("ip")),
            "visits",
        ),
    ]);
    expected.push(format!(
        "CREATE TABLE IF NOT EXISTS {table}{} (",
        q("glemsel_audit")
    ));
    expected.push(grant("SELECT, INSERT", "glemsel_audit"));
    expected
}

/// A session of the restricted role, to try what it must not do.
enum Session {
    Postgres(tokio_postgres::Client),
    Mariadb(mysql_async::Conn),
}

impl Session {
    async fn open(kind: Kind, url: &str) -> Session {
        match kind {
            Kind::Postgres => Session::Postgres(common::connect(url).await),
            _ => Session::Mariadb(mysql_async::Conn::from_url(url).await.expect("connect")),
        }
    }

    /// Runs `sql`; the server's error text if it refuses.
    async fn try_exec(&mut self, sql: &str) -> Result<(), String> {
        match self {
            Session::Postgres(client) => client.batch_execute(sql).await.map_err(|e| {
                e.as_db_error()
                    .map_or(e.to_string(), |db| db.message().to_string())
            }),
            Session::Mariadb(conn) => conn.query_drop(sql).await.map_err(|e| e.to_string()),
        }
    }
}

/// Creates the role (PostgreSQL) or account (MariaDB) with a password.
async fn create_role(db: &TestDb, role: &str) {
    match db.kind {
        Kind::Postgres => {
            db.exec(&format!("CREATE ROLE \"{role}\" LOGIN PASSWORD 'pw'"))
                .await
        }
        _ => {
            db.exec(&format!("CREATE USER '{role}'@'%' IDENTIFIED BY 'pw'"))
                .await
        }
    }
}

async fn drop_role(kind: Kind, role: &str) {
    match kind {
        Kind::Postgres => {
            let admin = server_url("GLEMSEL_TEST_PG_URL").unwrap();
            let _ = common::connect(&admin)
                .await
                .batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""))
                .await;
        }
        _ => {
            let admin = server_url("GLEMSEL_TEST_MYSQL_URL").unwrap();
            let mut conn = mysql_async::Conn::from_url(admin).await.unwrap();
            let _ = conn
                .query_drop(format!("DROP USER IF EXISTS '{role}'@'%'"))
                .await;
        }
    }
}

/// The test database's URL, logging in as `role` instead of the admin.
fn url_as(db: &TestDb, role: &str) -> String {
    let login = match db.kind {
        Kind::Postgres => "postgres@",
        _ => "glemsel:glemsel@",
    };
    assert!(db.url.contains(login), "{}", db.url);
    db.url.replacen(login, &format!("{role}:pw@"), 1)
}

async fn restricted_role_runs_every_path(kind: Kind) {
    let Some(db) = TestDb::create(kind, "least").await else {
        return;
    };
    let role = format!("glemsel_lp_{}_{kind:?}", std::process::id()).to_lowercase();
    db.exec(&fixture(kind)).await;
    let admin = Project::for_db(&db, "db", "");
    admin.rules("rules.toml", RULES);

    // What the DBA runs.
    let grants = admin.glemsel(&["grants", "--role", &role]);
    assert_eq!(code(&grants), 0, "{}", text(&grants));
    let script = String::from_utf8(grants.stdout).unwrap();
    let statements: Vec<&str> = script.lines().filter(|l| !l.starts_with("--")).collect();
    let expected = expected_grants(kind, &db.name, &role);
    assert_eq!(statements.len(), expected.len(), "{script}");
    for (statement, expected) in statements.iter().zip(&expected) {
        assert!(
            statement.starts_with(expected.as_str()),
            "{expected}\n in:\n{script}"
        );
    }
    create_role(&db, &role).await;
    db.exec(&script).await;

    // The role checks and runs every rule.
    let restricted = Project::new(
        if kind == Kind::Postgres {
            "postgres"
        } else {
            "mysql"
        },
        "db",
        &url_as(&db, &role),
        "",
    );
    restricted.rules("rules.toml", RULES);
    let check = restricted.glemsel(&["check"]);
    assert_eq!(code(&check), 0, "{}", text(&check));
    assert_lacks(&text(&check), "audit table");
    let plan = restricted.glemsel(&["plan"]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    let run = restricted.glemsel(&["run"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    // PostgreSQL before 17 lets no grant VACUUM a table: grants says so,
    // check warns, and the run says the old row versions stay.
    if kind == Kind::Postgres {
        assert_contains(
            &script,
            "-- vacuum_after: before PostgreSQL 17 only the table's owner may VACUUM it",
        );
        assert_contains(
            &text(&check),
            "warning: rule customers (store db): vacuum_after is set, but this role may not VACUUM customers",
        );
        assert_contains(&text(&run), "could not reclaim the old row versions");
    }

    let customers = db
        .rows("SELECT id, name, email, phone FROM customers ORDER BY id")
        .await;
    let first = &customers[0];
    assert!(
        first[1].as_deref().unwrap().starts_with("psn_"),
        "{first:?}"
    );
    assert!(
        first[2].as_deref().unwrap().ends_with("@invalid"),
        "{first:?}"
    );
    assert_eq!(first[3], None);
    for (row, name) in customers[1..]
        .iter()
        .zip(["Held Person", "Disputed Person", "Recent Order"])
    {
        assert_eq!(row[1].as_deref(), Some(name), "held or not due: {row:?}");
    }
    assert_eq!(
        db.column("SELECT body FROM notes ORDER BY id").await,
        [Some("[redacted]".to_string()), Some("recent".into())]
    );
    let ids = |table: &str| format!("SELECT id FROM {table} ORDER BY id");
    let two = vec![Some("2".to_string())];
    assert_eq!(db.column(&ids("accounts")).await, two);
    assert_eq!(db.column(&ids("tickets")).await, [Some("3".to_string())]);
    assert_eq!(db.column(&ids("messages")).await, [Some("3".to_string())]);
    assert_eq!(db.column(&ids("logs")).await, two);
    assert_eq!(
        db.rows("SELECT ip, born FROM visits ORDER BY id").await,
        [
            [
                Some(glemsel::generalise::ip_prefix("10.1.2.3", None, "-")),
                Some("1980-01-01".into())
            ],
            [Some("10.9.9.9".into()), Some("1990-02-02".into())],
        ]
    );

    // One batch per rule, each between its run's start and finish.
    let audit = db
        .rows("SELECT rule_id, event, rows_affected, detail FROM glemsel_audit ORDER BY seq")
        .await;
    for rule in ["customers", "notes", "accounts", "visits", "logs"] {
        let events: Vec<(&str, &str)> = audit
            .iter()
            .filter(|r| r[0].as_deref() == Some(rule))
            .map(|r| (r[1].as_deref().unwrap(), r[2].as_deref().unwrap()))
            .collect();
        assert_eq!(
            events,
            [("run_start", "0"), ("batch", "1"), ("run_finish", "1")],
            "{rule}: {audit:?}"
        );
    }
    let accounts_batch = audit
        .iter()
        .find(|r| r[0].as_deref() == Some("accounts") && r[1].as_deref() == Some("batch"))
        .unwrap();
    let detail = accounts_batch[3].as_deref().unwrap();
    assert!(
        detail.contains(r#"{"name":"tickets","rows":2}"#)
            && detail.contains(r#"{"name":"messages","rows":2}"#),
        "{detail}"
    );

    // What the role must not do: read other tables, rewrite the trail.
    let mut session = Session::open(kind, &url_as(&db, &role)).await;
    let denied = |result: Result<(), String>, what: &str| {
        let message = result.expect_err(what);
        assert!(
            message.contains("denied") || message.contains("must be owner"),
            "{what}: not a privilege error: {message}"
        );
    };
    denied(
        session.try_exec("SELECT * FROM secrets").await,
        "read secrets",
    );
    denied(
        session
            .try_exec("UPDATE glemsel_audit SET host = 'forged'")
            .await,
        "update audit",
    );
    denied(
        session.try_exec("DELETE FROM glemsel_audit").await,
        "delete audit",
    );
    denied(
        session.try_exec("TRUNCATE TABLE glemsel_audit").await,
        "truncate audit",
    );
    denied(
        session.try_exec("DROP TABLE glemsel_audit").await,
        "drop audit",
    );
    let verify = restricted.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}", text(&verify));
    let again = restricted.glemsel(&["run"]);
    assert_eq!(code(&again), 0, "{}", text(&again));

    // More than it needs on the audit table is reported, not refused.
    db.exec(&match kind {
        Kind::Postgres => format!("GRANT UPDATE (host) ON glemsel_audit TO \"{role}\""),
        _ => format!("GRANT UPDATE (host) ON glemsel_audit TO '{role}'@'%'"),
    })
    .await;
    let check = restricted.glemsel(&["check"]);
    assert_eq!(code(&check), 0, "{}", text(&check));
    assert_contains(
        &text(&check),
        "warning: store db: on the audit table glemsel_audit the role needs only SELECT and INSERT, but it may UPDATE rows:",
    );
    // The admin that set all this up has far more.
    let check = admin.glemsel(&["check"]);
    assert_eq!(code(&check), 0, "{}", text(&check));
    let expected = match kind {
        Kind::Postgres => {
            "but it is a superuser (no privilege binds it), owns the table (an owner may grant itself any right, or drop it), may UPDATE rows, may DELETE rows, may TRUNCATE the table:"
        }
        _ => {
            "but it may UPDATE rows, may DELETE rows, may DROP or TRUNCATE the table, may ALTER the table:"
        }
    };
    assert_contains(&text(&check), expected);

    drop(session);
    db.drop().await;
    drop_role(kind, &role).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_role_with_the_printed_grants() {
    restricted_role_runs_every_path(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_account_with_the_printed_grants() {
    restricted_role_runs_every_path(Kind::Mariadb).await;
}
