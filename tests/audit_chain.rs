//! The keyed audit chain, on every engine: a trail keyed under an audit key
//! of its own cannot be rewritten by whoever can write to the table; a run
//! checks the chain's tail before appending and never appends to a broken
//! chain; an unkeyed trail becomes keyed only by an explicit, recorded
//! segment; `audit verify` without the key still checks the structure.

mod common;

use common::{ALL, Kind, Project, TestDb, code, text};

/// A key of its own for the chain (never the pseudonymisation key).
const AUDIT_KEY: &str = "audit-key-for-tests-0123456789abcdef-0123";

const RULE: &str = "[[rule]]\nid = \"logs\"\nstore = \"db\"\ntable = \"logs\"\ncategory = \"test\"\nafter = \"at\"\nretain = \"1 year\"\naction = \"delete\"\nbatch_size = 2\nbatch_ms = 0\n";

async fn fixture(kind: Kind, name: &str) -> Option<TestDb> {
    let db = TestDb::create(kind, name).await?;
    db.exec(
        "CREATE TABLE logs (id INTEGER PRIMARY KEY, at DATE);
         INSERT INTO logs VALUES (1, '2015-01-01'), (2, '2015-01-02'), (3, '2015-01-03'), (4, '2026-01-01');",
    )
    .await;
    Some(db)
}

fn keyed_project(db: &TestDb) -> Project {
    let project = Project::for_db(db, "db", "audit_key_file = \"audit-key\"");
    std::fs::write(project.path().join("audit-key"), AUDIT_KEY).unwrap();
    project.rules("logs.toml", RULE);
    project
}

fn events(rows: &[Vec<Option<String>>]) -> Vec<String> {
    rows.iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

/// Rewrites the last row as someone with write access but without the
/// audit key would: new content, and its SHA-256 recomputed.
async fn forge_last_row(db: &TestDb, project: &Project) {
    let policy = project.policy();
    let mut store = glemsel::store::connect(
        &policy.stores["db"],
        glemsel::store::SessionLimits::of(&policy.settings),
    )
    .await
    .unwrap();
    let records = store.audit_records(i64::MIN, 10_000).await.unwrap();
    let mut last = records.last().unwrap().clone();
    last.entry.rows = 0;
    let forged = glemsel::audit::row_hash(last.seq, &last.prev_hash, &last.entry, None);
    db.exec(&format!(
        "UPDATE glemsel_audit SET rows_affected = 0, row_hash = '{forged}' WHERE seq = {}",
        last.seq
    ))
    .await;
}

#[tokio::test]
async fn a_keyed_trail_cannot_be_rewritten_without_its_key() {
    for kind in ALL {
        let Some(db) = fixture(kind, "keyed_trail").await else {
            return;
        };
        let project = keyed_project(&db);
        let run = project.glemsel(&["run", "--as-of", "2026-06-01"]);
        assert_eq!(code(&run), 0, "{kind:?}: {}", text(&run));
        let trail = db
            .rows("SELECT event, detail FROM glemsel_audit ORDER BY seq")
            .await;
        // A new trail begins with its keyed segment.
        assert_eq!(
            events(&trail),
            ["segment", "run_start", "batch", "batch", "run_finish"],
            "{kind:?}"
        );
        let segment = trail[0][1].clone().unwrap();
        assert!(segment.contains("\"chain\":\"hmac-sha256\""), "{segment}");
        assert!(segment.contains("\"found\":\"empty\""), "{segment}");
        // Keyed rows are not plain SHA-256.
        let policy = project.policy();
        let mut store = glemsel::store::connect(
            &policy.stores["db"],
            glemsel::store::SessionLimits::of(&policy.settings),
        )
        .await
        .unwrap();
        let records = store.audit_records(i64::MIN, 100).await.unwrap();
        for record in &records {
            let plain =
                glemsel::audit::row_hash(record.seq, &record.prev_hash, &record.entry, None);
            assert_ne!(
                plain, record.row_hash,
                "{kind:?}: row {} is not keyed",
                record.seq
            );
        }
        let verify = project.glemsel(&["audit", "verify"]);
        assert_eq!(code(&verify), 0, "{kind:?}: {}", text(&verify));
        assert!(
            text(&verify)
                .contains("audit chain intact, 5 rows, 0 checkpoints matched, 1 segments\n"),
            "{kind:?}: {}",
            text(&verify)
        );

        // Without the key: the structure is checked, the rest is said.
        let keyless = Project::for_db(&db, "db", "");
        keyless.rules("logs.toml", RULE);
        let verify = keyless.glemsel(&["audit", "verify"]);
        assert_eq!(code(&verify), 0, "{kind:?}: {}", text(&verify));
        assert!(
            text(&verify).contains("5 keyed rows not authenticated"),
            "{kind:?}: {}",
            text(&verify)
        );
        // ... and a run refuses to append unkeyed rows to a keyed trail.
        db.exec("INSERT INTO logs VALUES (5, '2015-02-01')").await;
        let run = keyless.glemsel(&["run", "--as-of", "2026-06-01"]);
        assert_eq!(code(&run), 5, "{kind:?}: {}", text(&run));
        assert!(text(&run).contains("is keyed"), "{kind:?}: {}", text(&run));
        assert_eq!(
            db.column("SELECT COUNT(*) FROM logs").await,
            [Some("2".into())]
        );

        // A rewrite with a recomputed SHA-256 is found, and no run appends.
        forge_last_row(&db, &project).await;
        let verify = project.glemsel(&["audit", "verify"]);
        assert_eq!(code(&verify), 6, "{kind:?}: {}", text(&verify));
        assert!(
            text(&verify).contains("row seq 5: its content does not match its row_hash"),
            "{kind:?}: {}",
            text(&verify)
        );
        let run = project.glemsel(&["run", "--as-of", "2026-06-01"]);
        assert_eq!(code(&run), 6, "{kind:?}: {}", text(&run));
        assert!(
            text(&run).contains("the audit trail of store db is broken"),
            "{kind:?}: {}",
            text(&run)
        );
        assert_eq!(
            db.column("SELECT COUNT(*) FROM logs").await,
            [Some("2".into())]
        );
        assert_eq!(
            db.column("SELECT COUNT(*) FROM glemsel_audit").await,
            [Some("5".into())],
            "{kind:?}: nothing appended to the broken chain"
        );

        // Someone looks into it and starts a new segment on purpose; it
        // records what it found, and runs go on. Verify still reports the
        // break before it.
        let segment = project.glemsel(&[
            "audit",
            "segment",
            "--reason",
            "row 5 edited; restored from the journal",
        ]);
        assert_eq!(code(&segment), 0, "{kind:?}: {}", text(&segment));
        let run = project.glemsel(&["run", "--as-of", "2026-06-01"]);
        assert_eq!(code(&run), 0, "{kind:?}: {}", text(&run));
        assert_eq!(
            db.column("SELECT COUNT(*) FROM logs").await,
            [Some("1".into())]
        );
        let detail = db
            .column("SELECT detail FROM glemsel_audit WHERE seq = 6")
            .await;
        let detail = detail[0].clone().unwrap();
        assert!(detail.contains("row 5 edited"), "{detail}");
        assert!(detail.contains("\"found\":\"broken: row seq 5"), "{detail}");
        let verify = project.glemsel(&["audit", "verify"]);
        assert_eq!(code(&verify), 6, "{kind:?}: {}", text(&verify));
        db.drop().await;
    }
}

#[tokio::test]
async fn an_unkeyed_trail_is_keyed_only_on_purpose() {
    for kind in ALL {
        let Some(db) = fixture(kind, "unkeyed_trail").await else {
            return;
        };
        // Yesterday's deployment, without an audit key.
        let unkeyed = Project::for_db(&db, "db", "");
        unkeyed.rules("logs.toml", RULE);
        let run = unkeyed.glemsel(&["run", "--as-of", "2026-06-01"]);
        assert_eq!(code(&run), 0, "{kind:?}: {}", text(&run));
        // Today's, with one: no silent switch.
        db.exec("INSERT INTO logs VALUES (5, '2015-02-01')").await;
        let keyed = keyed_project(&db);
        let run = keyed.glemsel(&["run", "--as-of", "2026-06-01"]);
        assert_eq!(code(&run), 5, "{kind:?}: {}", text(&run));
        assert!(
            text(&run).contains("is not keyed"),
            "{kind:?}: {}",
            text(&run)
        );
        assert_eq!(
            db.column("SELECT COUNT(*) FROM logs").await,
            [Some("2".into())]
        );
        let segment = keyed.glemsel(&["audit", "segment", "--reason", "audit key introduced"]);
        assert_eq!(code(&segment), 0, "{kind:?}: {}", text(&segment));
        assert!(
            text(&segment).contains("store db: segment started at seq 5 (keyed under audit key"),
            "{kind:?}: {}",
            text(&segment)
        );
        let run = keyed.glemsel(&["run", "--as-of", "2026-06-01"]);
        assert_eq!(code(&run), 0, "{kind:?}: {}", text(&run));
        assert_eq!(
            db.column("SELECT COUNT(*) FROM logs").await,
            [Some("1".into())]
        );
        let verify = keyed.glemsel(&["audit", "verify"]);
        assert_eq!(code(&verify), 0, "{kind:?}: {}", text(&verify));
        assert!(
            text(&verify)
                .contains("audit chain intact, 8 rows, 0 checkpoints matched, 1 segments\n"),
            "{kind:?}: {}",
            text(&verify)
        );
        db.drop().await;
    }
}
