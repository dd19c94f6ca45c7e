//! Expired partitions dropped whole, on real PostgreSQL (declarative
//! partitioning) and MariaDB (RANGE COLUMNS and RANGE over TO_DAYS): a log
//! partitioned by month with four months wholly due, one straddling the
//! bound, later ones and a catch-all. The due partitions go whole, each
//! with an audit row counting its rows; the rest is purged row by row;
//! rows that are not due stay byte for byte; a rule that looks at more
//! than the event (a hold, a `where`) or says `partitions = "rows"` purges
//! row by row; the dry run changes nothing.

#[macro_use]
mod common;

use common::{Kind, Project, TestDb, assert_contains, assert_lacks, code, text};

/// The run's moment: with 30 days kept, rows logged before 2026-05-17 are
/// due, so January to April are wholly due and May straddles the bound.
const AS_OF: &str = "2026-06-15";
const MONTHS: u32 = 7;

/// How MariaDB partitions the log: by the column, or by its day number.
#[derive(Clone, Copy)]
enum MariaForm {
    Columns,
    ToDays,
}

/// `access_log`, partitioned by month of `logged_on`, four rows a month
/// from January to July 2026, a row from December 2025 and one from
/// September 2026: PostgreSQL's DEFAULT partition and MariaDB's first and
/// MAXVALUE partitions take those two. (A key both engines let a
/// partitioned table have includes the event column, so it is NOT NULL;
/// where NULL events would go is never dropped, see `src/partition.rs`.)
fn schema(kind: Kind, form: MariaForm) -> String {
    let mut sql = String::new();
    match kind {
        Kind::Postgres => {
            sql.push_str(
                "CREATE TABLE access_log (id INTEGER NOT NULL, logged_on DATE NOT NULL, path VARCHAR(80), \
                 PRIMARY KEY (id, logged_on)) PARTITION BY RANGE (logged_on);\n\
                 CREATE TABLE log_default PARTITION OF access_log DEFAULT;\n",
            );
            for m in 1..=MONTHS {
                sql.push_str(&format!(
                    "CREATE TABLE log_2026_{m:02} PARTITION OF access_log FOR VALUES FROM ('2026-{m:02}-01') TO ('{}');\n",
                    month_start(m + 1)
                ));
            }
        }
        Kind::Mariadb => {
            let bound = |date: &str| match form {
                MariaForm::Columns => format!("'{date}'"),
                MariaForm::ToDays => format!("TO_DAYS('{date}')"),
            };
            let by = match form {
                MariaForm::Columns => "RANGE COLUMNS (logged_on)",
                MariaForm::ToDays => "RANGE (TO_DAYS(logged_on))",
            };
            let mut parts = vec![format!(
                "PARTITION p_old VALUES LESS THAN ({})",
                bound("2026-01-01")
            )];
            for m in 1..=MONTHS {
                parts.push(format!(
                    "PARTITION p2026_{m:02} VALUES LESS THAN ({})",
                    bound(&month_start(m + 1))
                ));
            }
            parts.push("PARTITION p_max VALUES LESS THAN (MAXVALUE)".into());
            sql.push_str(&format!(
                "CREATE TABLE access_log (id INTEGER NOT NULL, logged_on DATE NOT NULL, path VARCHAR(80), \
                 PRIMARY KEY (id, logged_on)) PARTITION BY {by} ({});\n",
                parts.join(", ")
            ));
        }
        Kind::Sqlite => unreachable!("SQLite has no partitions"),
    }
    let mut rows = Vec::new();
    let mut id = 0;
    for m in 1..=MONTHS {
        for day in [1, 10, 20, 28] {
            id += 1;
            rows.push(format!("({id}, '2026-{m:02}-{day:02}', '/page/{id}?q=é')"));
        }
    }
    rows.push("(100, '2025-12-15', '/old')".into());
    rows.push("(101, '2026-09-01', '/future')".into());
    sql.push_str(&format!(
        "INSERT INTO access_log (id, logged_on, path) VALUES {};",
        rows.join(", ")
    ));
    sql
}

fn month_start(m: u32) -> String {
    if m > 12 {
        format!("2027-{:02}-01", m - 12)
    } else {
        format!("2026-{m:02}-01")
    }
}

fn rule(extra: &str) -> String {
    format!(
        r#"
[[rule]]
id = "access-log-30d"
store = "logs"
table = "access_log"
category = "test"
after = "logged_on"
retain = "30 days"
action = "delete"
{extra}
"#
    )
}

/// Every row, every column as text, in id order.
async fn dump(db: &TestDb) -> Vec<Vec<Option<String>>> {
    db.rows("SELECT id, CAST(logged_on AS CHAR(10)), path FROM access_log ORDER BY id")
        .await
}

/// The partitions the log has now, by name.
async fn partitions(db: &TestDb) -> Vec<String> {
    let sql = match db.kind {
        Kind::Postgres => {
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'access_log'::regclass ORDER BY 1"
        }
        _ => {
            "SELECT PARTITION_NAME FROM information_schema.PARTITIONS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'access_log' ORDER BY 1"
        }
    };
    db.column(sql).await.into_iter().flatten().collect()
}

/// The name of month `m`'s partition.
fn month(kind: Kind, m: u32) -> String {
    match kind {
        Kind::Postgres => format!("log_2026_{m:02}"),
        _ => format!("p2026_{m:02}"),
    }
}

/// How reports name month `m`'s partition: schema-qualified where it is a
/// table of its own.
fn shown(kind: Kind, m: u32) -> String {
    match kind {
        Kind::Postgres => format!("public.{}", month(kind, m)),
        _ => month(kind, m),
    }
}

/// Whether a dumped row is due at [`AS_OF`]: logged before 2026-05-17.
fn is_due(row: &[Option<String>]) -> bool {
    row[1].as_deref().is_some_and(|d| d < "2026-05-17")
}

async fn drops_the_wholly_due_partitions(kind: Kind, form: MariaForm) {
    let Some(db) = TestDb::create(kind, "partitions").await else {
        return;
    };
    db.exec(&schema(kind, form)).await;
    let project = Project::for_db(&db, "logs", "");
    project.rules("logs.toml", &rule(""));
    let before = dump(&db).await;
    let partitions_before = partitions(&db).await;

    let check = project.glemsel(&["check"]);
    assert_eq!(code(&check), 0, "{}", text(&check));
    assert_contains(&text(&check), "is partitioned by range on its event");

    // The dry run says what goes whole, and changes nothing.
    let plan = project.glemsel(&["plan", "--as-of", AS_OF]);
    let plan_text = text(&plan);
    assert_eq!(code(&plan), 0, "{plan_text}");
    for m in 1..=4 {
        assert_contains(
            &plan_text,
            &format!(
                "drops partition {} (4 rows, range 2026-{m:02}-01 up to {})",
                shown(kind, m),
                month_start(m + 1)
            ),
        );
    }
    assert_contains(
        &plan_text,
        &format!("{} (it straddles the due bound)", shown(kind, 5)),
    );
    assert_lacks(&plan_text, &format!("drops partition {}", shown(kind, 5)));
    assert_contains(&plan_text, "rows      19 due");
    let json = project.glemsel(&["plan", "--as-of", AS_OF, "--format", "json"]);
    assert_eq!(code(&json), 0, "{}", text(&json));
    assert_contains(&text(&json), "\"drop\": true");
    assert!(!db.has_audit_table().await);
    // The retention report (HTML) says it too.
    let report = project.glemsel(&["report", "--as-of", AS_OF]);
    assert_eq!(code(&report), 0, "{}", text(&report));
    assert_contains(
        &text(&report),
        &format!(
            "drops partition <code>{}</code> (4 rows, range 2026-01-01 up to 2026-02-01)",
            shown(kind, 1)
        ),
    );
    assert_eq!(dump(&db).await, before);
    assert_eq!(partitions(&db).await, partitions_before);

    let run = project.glemsel(&["run", "--as-of", AS_OF]);
    let run_text = text(&run);
    assert_eq!(code(&run), 0, "{run_text}");
    assert_contains(&run_text, "deleted 19 rows");
    assert_contains(&run_text, "4 partitions dropped whole");

    // Exactly the due rows are gone; the rest are as they were.
    let expected: Vec<_> = before.iter().filter(|r| !is_due(r)).cloned().collect();
    assert_eq!(dump(&db).await, expected);
    assert_eq!(expected.len(), 30 - 19);
    // The expired partitions are gone; the straddling one and later stay.
    let now = partitions(&db).await;
    for m in 1..=4 {
        assert!(!now.contains(&month(kind, m)), "{now:?}");
    }
    for m in 5..=MONTHS {
        assert!(now.contains(&month(kind, m)), "{now:?}");
    }
    assert_eq!(now.len(), partitions_before.len() - 4);

    // One audit row per partition, naming it and counting its rows; the
    // straddling partition's and the catch-all's rows in batches.
    let batches = db
        .rows("SELECT rows_affected, detail FROM glemsel_audit WHERE event = 'batch' ORDER BY seq")
        .await;
    let whole: Vec<_> = batches
        .iter()
        .filter(|r| r[1].as_deref().unwrap().contains("\"dropped\":\"whole\""))
        .collect();
    assert_eq!(whole.len(), 4, "{batches:?}");
    for (m, row) in (1..=4).zip(&whole) {
        assert_eq!(row[0].as_deref(), Some("4"));
        assert_contains(row[1].as_deref().unwrap(), &month(kind, m));
    }
    let total: i64 = batches
        .iter()
        .map(|r| r[0].as_deref().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, 19);
    let finish = db
        .rows("SELECT rows_affected FROM glemsel_audit WHERE event = 'run_finish'")
        .await;
    assert_eq!(finish, vec![vec![Some("19".to_string())]]);
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}", text(&verify));

    // Nothing more is due: a second run drops and deletes nothing.
    let again = project.glemsel(&["run", "--as-of", AS_OF]);
    assert_eq!(code(&again), 0, "{}", text(&again));
    assert_contains(&text(&again), "deleted 0 rows");
    assert_eq!(dump(&db).await, expected);

    // A row the application writes later with a date in a dropped
    // partition's range goes elsewhere (PostgreSQL: the DEFAULT
    // partition; MariaDB: the next partition), and the batches take it.
    db.exec("INSERT INTO access_log (id, logged_on, path) VALUES (200, '2026-01-15', '/late')")
        .await;
    let late = project.glemsel(&["run", "--as-of", AS_OF]);
    assert_eq!(code(&late), 0, "{}", text(&late));
    assert_contains(&text(&late), "deleted 1 rows");
    assert_lacks(&text(&late), "dropped whole");
    assert_eq!(dump(&db).await, expected);
    assert_eq!(partitions(&db).await, now);
    let late_rows = db
        .column(
            "SELECT rows_affected FROM glemsel_audit WHERE event = 'batch' AND run_id = \
             (SELECT run_id FROM glemsel_audit ORDER BY seq DESC LIMIT 1)",
        )
        .await;
    assert_eq!(late_rows, vec![Some("1".to_string())]);
    db.drop().await;
}

#[tokio::test]
async fn postgres_drops_the_wholly_due_partitions() {
    drops_the_wholly_due_partitions(Kind::Postgres, MariaForm::Columns).await;
}

#[tokio::test]
async fn mariadb_drops_the_wholly_due_range_columns_partitions() {
    drops_the_wholly_due_partitions(Kind::Mariadb, MariaForm::Columns).await;
}

#[tokio::test]
async fn mariadb_drops_the_wholly_due_to_days_partitions() {
    drops_the_wholly_due_partitions(Kind::Mariadb, MariaForm::ToDays).await;
}

/// A rule that looks at more than the event, or says so, purges row by
/// row: every partition stays, and exactly its due rows go.
async fn purges_row_by_row(kind: Kind, extra: &str, says: &str) {
    let Some(db) = TestDb::create(kind, "partrows").await else {
        return;
    };
    db.exec(&schema(kind, MariaForm::Columns)).await;
    db.exec("ALTER TABLE access_log ADD COLUMN kept BOOLEAN NOT NULL DEFAULT FALSE")
        .await;
    db.exec("UPDATE access_log SET kept = TRUE WHERE id = 2")
        .await;
    let project = Project::for_db(&db, "logs", "");
    project.rules("logs.toml", &rule(extra));
    let before = dump(&db).await;
    let partitions_before = partitions(&db).await;

    let check = project.glemsel(&["check"]);
    assert_eq!(code(&check), 0, "{}", text(&check));
    assert_contains(
        &text(&check),
        &format!("is partitioned; it is purged row by row because {says}"),
    );
    let plan = project.glemsel(&["plan", "--as-of", AS_OF]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    assert_contains(
        &text(&plan),
        &format!("partitions purged row by row: {says}"),
    );
    assert_lacks(&text(&plan), "drops partition");

    let run = project.glemsel(&["run", "--as-of", AS_OF]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    assert_lacks(&text(&run), "dropped whole");
    assert_eq!(partitions(&db).await, partitions_before);
    let held = extra.contains("hold");
    let expected: Vec<_> = before
        .iter()
        .filter(|r| !is_due(r) || (held && r[0].as_deref() == Some("2")))
        .cloned()
        .collect();
    assert_eq!(dump(&db).await, expected);
    let audit = db.audit_text().await;
    assert_lacks(&audit, "\"dropped\":\"whole\"");
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}", text(&verify));
    db.drop().await;
}

#[tokio::test]
async fn postgres_rule_with_a_hold_purges_row_by_row() {
    purges_row_by_row(Kind::Postgres, "hold = \"kept\"", "the rule has a hold").await;
}

#[tokio::test]
async fn postgres_rule_with_a_where_purges_row_by_row() {
    purges_row_by_row(
        Kind::Postgres,
        "where = \"path <> ''\"",
        "the rule has a where condition",
    )
    .await;
}

#[tokio::test]
async fn mariadb_rule_with_a_hold_purges_row_by_row() {
    purges_row_by_row(Kind::Mariadb, "hold = \"kept\"", "the rule has a hold").await;
}

#[tokio::test]
async fn mariadb_rule_saying_rows_purges_row_by_row() {
    purges_row_by_row(
        Kind::Mariadb,
        "partitions = \"rows\"",
        "the rule says partitions = \"rows\"",
    )
    .await;
}

/// A table the application keeps busy is left for the next run: the drop
/// waits at most `lock_timeout_ms` (three times), changes nothing, and the
/// run says it is partial. Once the table is free, the next run drops.
async fn busy_table_is_left_for_next_run(kind: Kind) {
    let Some(db) = TestDb::create(kind, "partbusy").await else {
        return;
    };
    db.exec(&schema(kind, MariaForm::Columns)).await;
    let project = Project::for_db(&db, "logs", "lock_timeout_ms = 200");
    project.rules("logs.toml", &rule(""));
    let before = dump(&db).await;
    let partitions_before = partitions(&db).await;

    // An open transaction that has read the table holds a lock a drop
    // must wait for (PostgreSQL: ACCESS SHARE; MariaDB: a metadata lock).
    let reader = "SELECT count(*) FROM access_log";
    let release: Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> =
        match kind {
            Kind::Postgres => {
                let client = db.pg_client().await;
                client.batch_execute("BEGIN").await.unwrap();
                client.batch_execute(reader).await.unwrap();
                Box::new(move || {
                    Box::pin(async move { client.batch_execute("ROLLBACK").await.unwrap() })
                })
            }
            _ => {
                use mysql_async::prelude::Queryable;
                let mut conn = mysql_async::Conn::from_url(db.url.as_str()).await.unwrap();
                conn.query_drop("START TRANSACTION").await.unwrap();
                conn.query_drop(reader).await.unwrap();
                Box::new(move || {
                    Box::pin(async move {
                        conn.query_drop("ROLLBACK").await.unwrap();
                        conn.disconnect().await.unwrap();
                    })
                })
            }
        };
    let run = project.glemsel(&["run", "--as-of", AS_OF]);
    let run_text = text(&run);
    assert_eq!(code(&run), 7, "{run_text}");
    assert_contains(&run_text, "partial");
    assert_contains(&run_text, "the partition was not dropped");
    assert_eq!(dump(&db).await, before);
    assert_eq!(partitions(&db).await, partitions_before);
    release().await;
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}", text(&verify));

    let run = project.glemsel(&["run", "--as-of", AS_OF]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    assert_contains(&text(&run), "4 partitions dropped whole");
    let expected: Vec<_> = before.iter().filter(|r| !is_due(r)).cloned().collect();
    assert_eq!(dump(&db).await, expected);
    db.drop().await;
}

#[tokio::test]
async fn postgres_busy_table_is_left_for_next_run() {
    busy_table_is_left_for_next_run(Kind::Postgres).await;
}

#[tokio::test]
async fn mariadb_busy_table_is_left_for_next_run() {
    busy_table_is_left_for_next_run(Kind::Mariadb).await;
}

/// A session of the test's own that holds a lock while it is open.
enum Holder {
    Postgres(tokio_postgres::Client),
    Mariadb(mysql_async::Conn),
}

impl Holder {
    /// Opens a session and runs `sql` in it, in a transaction (PostgreSQL)
    /// or as it stands (MariaDB: `START TRANSACTION` or `LOCK TABLES` in it).
    async fn hold(db: &TestDb, sql: &str) -> Holder {
        match db.kind {
            Kind::Postgres => {
                let client = db.pg_client().await;
                client
                    .batch_execute(&format!("BEGIN; {sql}"))
                    .await
                    .unwrap();
                Holder::Postgres(client)
            }
            _ => {
                use mysql_async::prelude::Queryable;
                let mut conn = db.mariadb_session().await;
                conn.query_drop(sql).await.unwrap();
                Holder::Mariadb(conn)
            }
        }
    }

    async fn release(self) {
        match self {
            Holder::Postgres(client) => client.batch_execute("ROLLBACK").await.unwrap(),
            Holder::Mariadb(mut conn) => {
                use mysql_async::prelude::Queryable;
                conn.query_drop("ROLLBACK").await.unwrap();
                conn.query_drop("UNLOCK TABLES").await.unwrap();
                conn.disconnect().await.unwrap();
            }
        }
    }
}

/// Waits until `sql` counts something: a session waiting for a lock.
async fn wait_for(db: &TestDb, sql: &str, what: &str) {
    for _ in 0..600 {
        if db.number(sql).await > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the run never got to {what}");
}

/// A statement of glemsel's waiting for a lock on `table` (PostgreSQL) or
/// one running whose text has `like` (MariaDB: waiting, as its lock is
/// held), in this test's database: the other tests' runs share the server.
fn waiting_sql(kind: Kind, table: &str, like: &str) -> String {
    match kind {
        Kind::Postgres => format!(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '{table}'::regclass \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        _ => format!(
            "SELECT count(*) FROM information_schema.processlist \
             WHERE id <> CONNECTION_ID() AND db = DATABASE() \
             AND state LIKE 'Waiting%' AND info LIKE '{like}'"
        ),
    }
}

/// The tables that hold a partition taken out of the log and not dropped.
async fn held_tables(db: &TestDb) -> Vec<String> {
    let sql = match db.kind {
        Kind::Postgres => {
            "SELECT c.relname FROM pg_class c JOIN pg_description d ON d.objoid = c.oid \
             WHERE c.relkind = 'r' AND NOT c.relispartition AND d.description LIKE 'glemsel:%' ORDER BY 1"
        }
        _ => {
            "SELECT TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'glemsel\\_held\\_%' ORDER BY 1"
        }
    };
    db.column(sql).await.into_iter().flatten().collect()
}

/// Where a run is killed: after the first partition was taken out of the
/// table and before its count was audited; or (MariaDB, where the audit
/// row is written before the drop, which commits by itself) after the
/// audit row and before the drop.
#[derive(Clone, Copy, PartialEq)]
enum KilledAt {
    BeforeAudit,
    BeforeDrop,
}

/// A run killed between taking a partition out and dropping it leaves its
/// rows in a table of their own, marked; the next run finds it, counts
/// and audits it (unless its row is written already) and drops it, and
/// every due row is gone with its audit row, no row counted twice.
async fn killed_run_is_finished_by_the_next(kind: Kind, killed_at: KilledAt) {
    let Some(db) = TestDb::create(kind, "partkill").await else {
        return;
    };
    db.exec(&schema(kind, MariaForm::Columns)).await;
    let project = Project::for_db(&db, "logs", "lock_timeout_ms = 60000");
    project.rules("logs.toml", &rule(""));
    let before = dump(&db).await;
    let partitions_before = partitions(&db).await;
    // The audit table exists before the run, to be locked: a run at a
    // moment when nothing is due creates it.
    let early = project.glemsel(&["run", "--as-of", "2026-01-01"]);
    assert_eq!(code(&early), 0, "{}", text(&early));
    assert_eq!(dump(&db).await, before);

    // A reader keeps the run waiting to take out the first partition.
    let reader = Holder::hold(
        &db,
        match kind {
            Kind::Postgres => "SELECT count(*) FROM access_log",
            _ => "START TRANSACTION; SELECT COUNT(*) FROM access_log",
        },
    )
    .await;
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_glemsel"))
        .args(["run", "--as-of", AS_OF])
        .current_dir(project.path())
        .env_remove("GLEMSEL_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        &db,
        &waiting_sql(kind, "access_log", "%CONVERT PARTITION%"),
        "the take-out",
    )
    .await;
    // Then the audit table is locked, and the reader lets go: the run
    // takes the partition out and waits to audit its count.
    let audit = Holder::hold(
        &db,
        match kind {
            Kind::Postgres => "LOCK TABLE glemsel_audit IN ACCESS EXCLUSIVE MODE",
            _ => "LOCK TABLES glemsel_audit WRITE",
        },
    )
    .await;
    reader.release().await;
    wait_for(
        &db,
        &waiting_sql(kind, "glemsel_audit", "%glemsel_audit%"),
        "the audit row",
    )
    .await;
    let mut audit = Some(audit);
    let mut held_reader = None;
    if killed_at == KilledAt::BeforeDrop {
        // A reader of the held table keeps the drop waiting; the audit
        // row is let through.
        let held = held_tables(&db).await;
        assert_eq!(held.len(), 1, "{held:?}");
        held_reader = Some(
            Holder::hold(
                &db,
                &format!("START TRANSACTION; SELECT COUNT(*) FROM {}", held[0]),
            )
            .await,
        );
        audit.take().unwrap().release().await;
        wait_for(
            &db,
            &waiting_sql(kind, "", "DROP TABLE%glemsel\\_held\\_%"),
            "the drop",
        )
        .await;
    }
    run.kill().unwrap();
    let killed = run.wait_with_output().unwrap();
    if killed_at == KilledAt::BeforeDrop {
        // A statement goes on after its client dies; a crash ends it.
        let drop = db
            .number(
                "SELECT id FROM information_schema.processlist \
                 WHERE db = DATABASE() AND info LIKE 'DROP TABLE%glemsel\\_held\\_%'",
            )
            .await;
        db.exec(&format!("KILL {drop}")).await;
        // KILL only flags the session: were the drop's lock let go before
        // the session has ended, the drop could still go through.
        let gone =
            format!("SELECT count(*) = 0 FROM information_schema.processlist WHERE id = {drop}");
        wait_for(&db, &gone, "the drop's end").await;
    }
    for holder in [audit, held_reader].into_iter().flatten() {
        holder.release().await;
    }

    // January is out of the table, its four rows held in a table of
    // their own; nothing else changed.
    let held = held_tables(&db).await;
    assert_eq!(held.len(), 1, "{held:?}\n{}", text(&killed));
    assert_eq!(
        db.number(&format!("SELECT count(*) FROM {}", held[0]))
            .await,
        4
    );
    assert!(!partitions(&db).await.contains(&month(kind, 1)));
    assert_eq!(partitions(&db).await.len(), partitions_before.len() - 1);
    let january = |r: &Vec<Option<String>>| {
        r[1].as_deref()
            .is_some_and(|d| ("2026-01-01".."2026-02-01").contains(&d))
    };
    let left: Vec<_> = before.iter().filter(|r| !january(r)).cloned().collect();
    assert_eq!(dump(&db).await, left);
    let dropped_rows = "SELECT COALESCE(SUM(rows_affected), 0) FROM glemsel_audit \
                        WHERE event = 'batch' AND detail LIKE '%\"dropped\":\"whole\"%'";
    let audited = if killed_at == KilledAt::BeforeDrop {
        4
    } else {
        0
    };
    assert_eq!(db.number(dropped_rows).await, audited);
    if kind == Kind::Mariadb {
        // The intent row, written before the take-out, names the table.
        let intent = db
            .column(
                "SELECT detail FROM glemsel_audit WHERE detail LIKE '%\"intent\"%' ORDER BY seq",
            )
            .await;
        assert_eq!(intent.len(), 1, "{intent:?}");
        assert_contains(intent[0].as_deref().unwrap(), &held[0]);
        assert_contains(intent[0].as_deref().unwrap(), "p2026_01");
    }

    // The dry run says so, and changes nothing.
    let plan = project.glemsel(&["plan", "--as-of", AS_OF]);
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    assert_contains(
        &text(&plan),
        &format!(
            "partition held: {} was taken out by an interrupted run and is in ",
            shown(kind, 1)
        ),
    );
    assert_contains(
        &text(&plan),
        if killed_at == KilledAt::BeforeDrop {
            "its rows are audited, a run drops it"
        } else {
            "a run counts, audits and drops it first"
        },
    );
    assert_eq!(dump(&db).await, left);
    assert_eq!(held_tables(&db).await, held);

    // The next run (once the killed run's session is gone) finishes it.
    let mut again = project.glemsel(&["run", "--as-of", AS_OF]);
    for _ in 0..100 {
        if code(&again) != 8 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        again = project.glemsel(&["run", "--as-of", AS_OF]);
    }
    let again_text = text(&again);
    assert_eq!(code(&again), 0, "{again_text}");
    assert_contains(&again_text, "4 partitions dropped whole");
    assert_contains(&again_text, &format!("deleted {} rows", 19 - audited));
    assert_eq!(held_tables(&db).await, Vec::<String>::new());
    let expected: Vec<_> = before.iter().filter(|r| !is_due(r)).cloned().collect();
    assert_eq!(dump(&db).await, expected);
    // Every due row counted once: four rows per month dropped whole.
    assert_eq!(db.number(dropped_rows).await, 16);
    let batches = "SELECT COALESCE(SUM(rows_affected), 0) FROM glemsel_audit WHERE event = 'batch'";
    assert_eq!(db.number(batches).await, 19);
    let january_rows = db
        .column(&format!(
            "SELECT rows_affected FROM glemsel_audit WHERE detail LIKE '%{}%' \
             AND detail LIKE '%\"dropped\":\"whole\"%' ORDER BY seq",
            month(kind, 1)
        ))
        .await;
    assert_eq!(january_rows, vec![Some("4".to_string())]);
    if killed_at == KilledAt::BeforeAudit {
        assert_contains(
            &db.audit_text().await,
            "\"finished\":\"taken out by an interrupted run\"",
        );
    }
    let verify = project.glemsel(&["audit", "verify"]);
    assert_eq!(code(&verify), 0, "{}", text(&verify));
    db.drop().await;
}

#[tokio::test]
async fn postgres_run_killed_after_detaching_is_finished_by_the_next() {
    killed_run_is_finished_by_the_next(Kind::Postgres, KilledAt::BeforeAudit).await;
}

#[tokio::test]
async fn mariadb_run_killed_after_converting_is_finished_by_the_next() {
    killed_run_is_finished_by_the_next(Kind::Mariadb, KilledAt::BeforeAudit).await;
}

#[tokio::test]
async fn mariadb_run_killed_after_auditing_is_finished_by_the_next() {
    killed_run_is_finished_by_the_next(Kind::Mariadb, KilledAt::BeforeDrop).await;
}

/// A MariaDB role that may alter and drop the table but not create the
/// table a partition's rows are held in purges row by row: `check` says
/// why, every partition stays, and exactly the due rows go.
#[tokio::test]
async fn mariadb_role_that_may_not_create_the_held_table_purges_row_by_row() {
    let Some(db) = TestDb::create(Kind::Mariadb, "partrights").await else {
        return;
    };
    db.exec(&schema(Kind::Mariadb, MariaForm::Columns)).await;
    let owner = Project::for_db(&db, "logs", "");
    owner.rules("logs.toml", &rule(""));
    // The audit table, made by a run at a moment when nothing is due.
    let early = owner.glemsel(&["run", "--as-of", "2026-01-01"]);
    assert_eq!(code(&early), 0, "{}", text(&early));
    let before = dump(&db).await;
    let partitions_before = partitions(&db).await;
    let user = format!("{}_u", db.name);
    let name = &db.name;
    db.exec(&format!(
        "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'x'; \
         GRANT SELECT, INSERT, DELETE, ALTER, DROP ON `{name}`.access_log TO '{user}'@'127.0.0.1'; \
         GRANT SELECT, INSERT ON `{name}`.glemsel_audit TO '{user}'@'127.0.0.1'"
    ))
    .await;
    let at = db.url.find('@').unwrap();
    let url = format!("mysql://{user}:x{}", &db.url[at..]);
    let project = Project::new("mariadb", "logs", &url, "");
    project.rules("logs.toml", &rule(""));

    let check = project.glemsel(&["check"]);
    assert_contains(
        &text(&check),
        "it is purged row by row because this role may not drop its partitions",
    );
    let run = project.glemsel(&["run", "--as-of", AS_OF]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    assert_contains(&text(&run), "deleted 19 rows");
    assert_lacks(&text(&run), "dropped whole");
    assert_eq!(partitions(&db).await, partitions_before);
    let expected: Vec<_> = before.iter().filter(|r| !is_due(r)).cloned().collect();
    assert_eq!(dump(&db).await, expected);
    assert_eq!(held_tables(&db).await, Vec::<String>::new());
    let batches = "SELECT COALESCE(SUM(rows_affected), 0) FROM glemsel_audit WHERE event = 'batch'";
    assert_eq!(db.number(batches).await, 19);
    assert_lacks(&db.audit_text().await, "\"intent\"");
    db.exec(&format!("DROP USER '{user}'@'127.0.0.1'")).await;
    db.drop().await;
}
