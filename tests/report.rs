//! The retention report as a person sees it: the demo's HTML report opened
//! in headless Chromium, offline, with a screenshot and the rendered DOM
//! checked (one schedule row and one chart series of twelve points per
//! rule, and no request leaves the page). Also the progress bars of an
//! interactive run, under a pseudo-terminal, and their absence elsewhere.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{code, text};

fn glemsel(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_glemsel"))
        .args(args)
        .current_dir(dir)
        .env_remove("GLEMSEL_CONFIG")
        .env_remove("GLEMSEL_LOG")
        .output()
        .expect("run glemsel")
}

/// Debian's chromium, or `None` to skip (tests/run installs it; under CI a
/// missing browser fails instead).
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true but chromium is missing: tests/run installs it"
        );
        eprintln!("skipping: chromium is not installed (tests/run installs it)");
    }
    found
}

/// Every request the page itself made, from Chromium's network log: the
/// browser's own background requests have no origin, the page's have its
/// (opaque, for a file) origin.
fn page_requests(net_log: &Path) -> Vec<String> {
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(net_log).expect("a network log")).unwrap();
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].clone();
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == start_job)
        .filter(|e| e["params"]["initiator"] != "not an origin")
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_string))
        .filter(|url| !url.starts_with("file:") && !url.starts_with("data:"))
        .collect()
}

/// Renders `page` headless: its DOM as the browser built it, a screenshot,
/// and the page's own requests. Nothing can leave the machine: every host
/// resolves to nothing and every request goes to a closed local port.
fn render(browser: &Path, page: &Path, work: &Path) -> (String, PathBuf, Vec<String>) {
    let shot = work.join("report.png");
    let net_log = work.join("net-log.json");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",
            "--window-size=1280,2200",
        ])
        .arg(format!(
            "--user-data-dir={}",
            work.join("profile").display()
        ))
        .arg(format!("--log-net-log={}", net_log.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "{}", text(&out));
    (
        String::from_utf8(out.stdout).unwrap(),
        shot,
        page_requests(&net_log),
    )
}

/// The part of `dom` from the element opening with `start` to `end`.
fn section<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let from = dom
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in the DOM"));
    let rest = &dom[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// Width and height from a PNG's header.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG", "not a PNG");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn the_demo_report_renders_offline_in_a_browser() {
    let Some(browser) = chromium() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let demo = glemsel(tmp.path(), &["demo", "--dir", "d"]);
    assert_eq!(code(&demo), 0, "{}", text(&demo));
    let page = tmp.path().join("d").join("report.html");
    assert!(
        String::from_utf8_lossy(&demo.stdout).contains(&format!(
            "{}:",
            Path::new("d").join("report.html").display()
        )),
        "the demo prints the report's path: {}",
        text(&demo)
    );
    let policy = glemsel::rules::load(&tmp.path().join("d").join("glemsel.toml")).unwrap();
    let ids: Vec<&str> = policy.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 9);

    // Self-contained as written: nothing to fetch, nothing to run.
    let html = std::fs::read_to_string(&page).unwrap();
    for banned in [
        "<script", "<link", "<img", "@import", "url(", "src=", "http:", "https:",
    ] {
        assert!(!html.contains(banned), "the report holds {banned:?}");
    }

    // The check can fail: a page that fetches an image is caught.
    let control = tmp.path().join("control");
    std::fs::create_dir(&control).unwrap();
    std::fs::write(
        control.join("page.html"),
        "<!DOCTYPE html><p>x<img src=\"http://example.invalid/pixel.png\">",
    )
    .unwrap();
    let (_, _, fetched) = render(&browser, &control.join("page.html"), &control);
    assert_eq!(fetched, ["http://example.invalid/pixel.png"]);

    let (dom, shot, requests) = render(&browser, &page, tmp.path());
    assert!(requests.is_empty(), "the page made requests: {requests:?}");

    // The schedule: one row per rule, in the rules' order.
    let schedule = section(&dom, "<table id=\"schedule\"", "</table>");
    let rows: Vec<&str> = schedule
        .split("<tr data-rule=\"")
        .skip(1)
        .map(|row| &row[..row.find('"').unwrap()])
        .collect();
    assert_eq!(rows, ids);
    assert!(
        schedule.contains("Legal basis: legitimate interest (security)"),
        "{schedule}"
    );
    assert!(
        schedule
            .contains("5 years from the end of the financial year (06-30) of Last Date Modified")
    );

    // The chart: one series per rule, each a line and a point per month.
    let chart = section(&dom, "<svg id=\"forecast-chart\"", "</svg>");
    let series: Vec<&str> = chart.split("<g class=\"series\"").skip(1).collect();
    assert_eq!(series.len(), ids.len());
    for (series, id) in series.iter().zip(&ids) {
        assert!(
            series.starts_with(&format!(" data-rule=\"{id}\"")),
            "{series}"
        );
        assert_eq!(
            series.matches("<circle class=\"point\"").count(),
            12,
            "{series}"
        );
        let points = series.split("points=\"").nth(1).unwrap();
        let points = &points[..points.find('"').unwrap()];
        assert_eq!(points.split_whitespace().count(), 12, "{points}");
    }
    // The status after the demo's run: every rule ran, the chain is intact.
    let status = section(&dom, "<table id=\"status\"", "</table>");
    assert_eq!(status.matches("<tr data-rule=").count(), ids.len());
    assert_eq!(status.matches(">completed<").count(), ids.len(), "{status}");
    assert!(section(&dom, "<table id=\"chains\"", "</table>").contains(">intact<"));
    assert!(dom.contains("<section id=\"coverage-section\""));

    // The screenshot is the page, drawn.
    let (width, height) = png_size(&shot);
    assert_eq!((width, height), (1280, 2200));
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 50_000,
        "an empty page?"
    );
    // Kept for a person to look at (the README's picture comes from here).
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-demo.png");
    std::fs::copy(&shot, &keep).unwrap();
    eprintln!("screenshot: {}", keep.display());
}

/// Runs `command` under a pseudo-terminal (util-linux `script`), as a
/// person at a terminal would; stdout and stderr both go to it.
fn in_terminal(dir: &Path, command: &str) -> String {
    let out = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .current_dir(dir)
        .env_remove("GLEMSEL_CONFIG")
        .env_remove("GLEMSEL_LOG")
        .env("TERM", "xterm")
        .env("COLUMNS", "160")
        .output()
        .expect("run script");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn progress_bars_only_for_a_person_at_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipping: script (util-linux) is missing");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let demo = glemsel(tmp.path(), &["demo", "--dir", "d"]);
    assert_eq!(code(&demo), 0, "{}", text(&demo));
    let dir = tmp.path().join("d");
    let db = rusqlite::Connection::open(dir.join("demo.sqlite")).unwrap();
    let more_due = "INSERT INTO access_log (ip, path, at) SELECT ip, path, datetime(at, '-3 years') FROM access_log";
    db.execute(more_due, []).unwrap();
    let due: i64 = db
        .query_row(
            "SELECT count(*) FROM access_log WHERE at < datetime('now', '-13 months')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(due > 1_000);

    let bin = env!("CARGO_BIN_EXE_glemsel");
    let screen = in_terminal(&dir, &format!("{bin} run --rule access-logs"));
    let last_bar = screen
        .split(['\r', '\n'])
        .rfind(|line| line.contains("access-logs ["))
        .unwrap_or_else(|| panic!("no progress bar on the terminal:\n{screen}"));
    assert!(
        last_bar.contains(&format!(
            "{}/{} rows",
            glemsel::report::thousands(due as u64),
            glemsel::report::thousands(due as u64)
        )),
        "{last_bar}"
    );
    assert!(
        last_bar.contains("rows/s") && last_bar.contains("left") && last_bar.contains("done"),
        "{last_bar}"
    );
    assert!(screen.contains("rule access-logs: deleted"), "{screen}");

    // JSON output, a pipe, or a file: no bars.
    db.execute(more_due, []).unwrap();
    let json = in_terminal(&dir, &format!("{bin} run --rule access-logs --format json"));
    assert!(!json.contains("rows/s"), "{json}");
    assert!(json.contains("\"rows_changed\""), "{json}");
    db.execute(more_due, []).unwrap();
    let piped = glemsel(&dir, &["run", "--rule", "access-logs"]);
    assert_eq!(code(&piped), 0, "{}", text(&piped));
    assert!(!text(&piped).contains("rows/s"), "{}", text(&piped));
}
