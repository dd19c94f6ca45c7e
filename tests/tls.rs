//! Encrypted connections on PostgreSQL and MariaDB. `tests/servers.sh`
//! starts both with a certificate for localhost and 127.0.0.1 from a
//! throwaway CA, also listening on 127.0.0.2 (which the certificate does
//! not name), and a second server of each without TLS. `verify-full`
//! connects and the server sees the session encrypted; a CA that did not
//! sign the certificate, or a host name it does not carry, is refused with
//! a clear error; `require` accepts any certificate but never a server
//! without TLS. No error shows the URL's password.

mod common;

use common::{Kind, Project, TestDb, code, server_url, text};

/// A password that must never appear in output. PostgreSQL's test server
/// trusts loopback, so any password logs in; where TLS fails, no server
/// ever sees it.
const PASSWORD: &str = "tls-test-pw-7f3a9c";

fn engine(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => "postgres",
        _ => "mysql",
    }
}

/// A project whose store connects to `url` with `tls` settings, with one
/// delete rule on table `t`.
fn project(kind: Kind, url: &str, tls: &str) -> Project {
    let project = Project::with_store(
        "db",
        &format!(
            "engine = \"{}\"\nurl_file = \"db.url\"\n{tls}",
            engine(kind)
        ),
        "",
    );
    std::fs::write(project.path().join("db.url"), url).unwrap();
    project.rules(
        "rules.toml",
        r#"
[[rule]]
id = "old-rows"
store = "db"
table = "t"
category = "test"
after = "d"
retain = "1 year"
action = "delete"
"#,
    );
    project
}

fn verify_full(ca: &str) -> String {
    format!("tls = \"verify-full\"\nca_file = {ca:?}")
}

/// `url` with the password set and the host replaced.
fn url_with(kind: Kind, url: &str, host: &str) -> String {
    let url = match kind {
        Kind::Postgres => url.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1),
        _ => url.to_string(),
    };
    url.replacen("127.0.0.1", host, 1)
}

/// `glemsel check` fails to connect and says `expected`, without the password.
fn refused(project: &Project, expected: &str) {
    let check = project.glemsel(&["check"]);
    let out = text(&check);
    assert_eq!(code(&check), 1, "{out}");
    assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    assert!(!out.contains(PASSWORD), "the password leaked:\n{out}");
}

async fn connections(kind: Kind) {
    let Some(db) = TestDb::create(kind, "tls").await else {
        return;
    };
    let (Some(ca), Some(other_ca), Some(unnamed)) = (
        server_url("GLEMSEL_TEST_CA_FILE"),
        server_url("GLEMSEL_TEST_OTHER_CA_FILE"),
        server_url("GLEMSEL_TEST_UNNAMED_HOST"),
    ) else {
        return;
    };
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, d DATE); INSERT INTO t VALUES (1, '2019-01-01'), (2, '2999-01-01')")
        .await;

    // verify-full: by IP address and by name, as the certificate has both.
    for host in ["127.0.0.1", "localhost"] {
        let good = project(kind, &url_with(kind, &db.url, host), &verify_full(&ca));
        let check = good.glemsel(&["check"]);
        let out = text(&check);
        assert_eq!(code(&check), 0, "{out}");
        assert!(
            out.contains("store db: connection encrypted (TLSv1.")
                && out.contains(&format!("certificate and host name verified against {ca}")),
            "{out}"
        );
    }
    // The data-changing path runs over it as over a plain connection.
    let good = project(
        kind,
        &url_with(kind, &db.url, "127.0.0.1"),
        &verify_full(&ca),
    );
    // grants too, with every log on, and never the password.
    let grants = good.glemsel_with_env(&["grants", "-vv"], &[("GLEMSEL_LOG", "trace")]);
    let out = text(&grants);
    assert_eq!(code(&grants), 0, "{out}");
    assert!(out.contains("GRANT SELECT, DELETE ON "), "{out}");
    assert!(!out.contains(PASSWORD), "the password leaked:\n{out}");
    let run = good.glemsel(&["run"]);
    assert_eq!(code(&run), 0, "{}", text(&run));
    assert_eq!(db.column("SELECT id FROM t").await, [Some("2".to_string())]);

    // A CA that did not sign the server's certificate.
    refused(
        &project(
            kind,
            &url_with(kind, &db.url, "127.0.0.1"),
            &verify_full(&other_ca),
        ),
        &format!(
            "store db: cannot connect: TLS: the server's certificate is not signed by the CA in ca_file {other_ca}"
        ),
    );
    // The same server, reached by an address its certificate does not name.
    refused(
        &project(kind, &url_with(kind, &db.url, &unnamed), &verify_full(&ca)),
        "cannot connect: TLS: the server's certificate does not name the host connected to",
    );
    // require: encrypted, with no CA and whatever the name.
    let require = project(
        kind,
        &url_with(kind, &db.url, &unnamed),
        "tls = \"require\"",
    );
    let check = require.glemsel(&["check"]);
    assert_eq!(code(&check), 0, "{}", text(&check));
    assert!(
        text(&check).contains("connection encrypted (TLSv1.")
            && text(&check).contains("certificate not verified (tls = \"require\")"),
        "{}",
        text(&check)
    );
    // ... but never a server without TLS.
    let plain_var = match kind {
        Kind::Postgres => "GLEMSEL_TEST_PG_PLAIN_URL",
        _ => "GLEMSEL_TEST_MYSQL_PLAIN_URL",
    };
    let Some(plain) = server_url(plain_var) else {
        return;
    };
    let plain = url_with(kind, &plain, "127.0.0.1");
    refused(
        &project(kind, &plain, "tls = \"require\""),
        "store db: cannot connect: the server does not offer TLS, and the store asks for tls = \"require\"",
    );
    refused(
        &project(kind, &plain, &verify_full(&ca)),
        "the server does not offer TLS, and the store asks for tls = \"verify-full\"",
    );
    // disable (the default) is today's plain connection, and says so.
    let check = project(kind, &url_with(kind, &db.url, "127.0.0.1"), "").glemsel(&["check"]);
    assert_eq!(code(&check), 0, "{}", text(&check));
    assert!(
        text(&check).contains("store db: connection not encrypted (tls = \"disable\")"),
        "{}",
        text(&check)
    );
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_connections() {
    connections(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_connections() {
    connections(Kind::Mariadb).await;
}

/// A URL that asks for TLS of its own is not quietly obeyed or ignored
/// when the store says `disable`; nothing is sent.
#[test]
fn a_url_asking_for_tls_on_a_store_without_it_is_refused() {
    let cases = [
        (
            Kind::Postgres,
            format!("postgresql://postgres:{PASSWORD}@127.0.0.1:1/db?sslmode=require"),
            "the URL asks for sslmode=require, but the store has tls = \"disable\"",
        ),
        (
            Kind::Mariadb,
            format!("mysql://glemsel:{PASSWORD}@127.0.0.1:1/db?require_ssl=true"),
            "the URL asks for require_ssl, but the store has tls = \"disable\"",
        ),
    ];
    for (kind, url, expected) in cases {
        refused(&project(kind, &url, ""), expected);
    }
    // mysql_async would leave a socket unencrypted without a word.
    refused(
        &project(
            Kind::Mariadb,
            &format!("mysql://glemsel:{PASSWORD}@127.0.0.1:1/db?socket=/tmp/none.sock"),
            "tls = \"require\"",
        ),
        "the URL names a Unix socket, which TLS does not cover",
    );
}
