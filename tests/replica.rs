//! A server that must not be written: glemsel refuses it before anything
//! changes. In a file of its own: it sets server-wide settings
//! (`read_only`, `binlog_format`) that would make other tests' runs refuse
//! too, were they running at the same time.

mod common;

use common::{Kind, Project, TestDb, code, text};

/// A replica, or a binary log in STATEMENT format that this role cannot
/// change, is named by `check` and refused by `run` before anything changes.
#[tokio::test]
async fn servers_that_must_not_be_written_refuse() {
    let Some(db) = TestDb::create(Kind::Mariadb, "replica").await else {
        return;
    };
    db.exec(
        "CREATE TABLE logs (id INTEGER PRIMARY KEY, at DATE);
         INSERT INTO logs VALUES (1, '2015-01-01');",
    )
    .await;
    let rule = "[[rule]]\nid = \"logs\"\nstore = \"db\"\ntable = \"logs\"\ncategory = \"test\"\nafter = \"at\"\nretain = \"1 year\"\naction = \"delete\"\n";
    let project = Project::for_db(&db, "db", "");
    project.rules("logs.toml", rule);
    // The test role may still write (it has every privilege); glemsel
    // refuses because the server says it is a replica.
    db.exec("SET GLOBAL read_only = 1").await;
    let check = project.glemsel(&["check"]);
    let run = project.glemsel(&["run", "--as-of", "2026-06-01"]);
    db.exec("SET GLOBAL read_only = 0").await;
    assert_eq!(code(&check), 5, "{}", text(&check));
    assert!(
        text(&check).contains("store db: a run would refuse: the server is read-only"),
        "{}",
        text(&check)
    );
    assert_eq!(code(&run), 5, "{}", text(&run));
    assert_eq!(
        db.column("SELECT COUNT(*) FROM logs").await,
        [Some("1".into())]
    );

    // A role without BINLOG ADMIN cannot switch its session to ROW.
    let user = format!("{}_app", db.name);
    db.exec(&format!(
        "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'app-password';
         GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON `{}`.* TO '{user}'@'127.0.0.1';",
        db.name
    ))
    .await;
    let url = db
        .url
        .replacen("glemsel:glemsel@", &format!("{user}:app-password@"), 1);
    let limited = Project::new("mysql", "db", &url, "");
    limited.rules("logs.toml", rule);
    db.exec("SET GLOBAL binlog_format = 'STATEMENT'").await;
    let check = limited.glemsel(&["check"]);
    db.exec("SET GLOBAL binlog_format = 'MIXED'").await;
    db.exec(&format!("DROP USER '{user}'@'127.0.0.1'")).await;
    assert_eq!(code(&check), 5, "{}", text(&check));
    assert!(
        text(&check).contains("the binary log is in STATEMENT format"),
        "{}",
        text(&check)
    );
    db.drop().await;
}
