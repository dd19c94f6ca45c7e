//! Prometheus metrics of runs and batches, and the endpoint that serves
//! them (OpenMetrics text, on a loopback address, from a thread of its own).
//!
//! Recording is always on and costs an atomic add; serving is optional.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::outcome::{Status, StepReport};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PauseLabels {
    rule: String,
    /// `pause_ms` (the duty cycle), `load` (above max_load) or `lag` (a
    /// replica behind max_lag).
    reason: String,
}

type SecondsHistogram = Family<RuleLabels, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    rows_deleted: Family<RuleLabels, Counter>,
    rows_pseudonymised: Family<RuleLabels, Counter>,
    rows_anonymised: Family<RuleLabels, Counter>,
    rows_held: Family<RuleLabels, Gauge>,
    runs: Family<RuleLabels, Counter>,
    failures: Family<RuleLabels, Counter>,
    last_success: Family<RuleLabels, Gauge<f64, AtomicU64>>,
    batch_seconds: SecondsHistogram,
    pause_seconds: Family<PauseLabels, Counter<f64, AtomicU64>>,
    pausing: Family<RuleLabels, Gauge>,
    erasure_overdue: Gauge,
}

fn batch_histogram() -> Histogram {
    // 5 ms to about 10 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("glemsel");
    let metrics = Metrics {
        registry: Registry::default(),
        rows_deleted: Family::default(),
        rows_pseudonymised: Family::default(),
        rows_anonymised: Family::default(),
        rows_held: Family::default(),
        runs: Family::default(),
        failures: Family::default(),
        last_success: Family::default(),
        batch_seconds: Family::new_with_constructor(batch_histogram),
        pause_seconds: Family::default(),
        pausing: Family::default(),
        erasure_overdue: Gauge::default(),
    };
    registry.register(
        "rows_deleted",
        "Rows deleted, per rule",
        metrics.rows_deleted.clone(),
    );
    registry.register(
        "rows_pseudonymised",
        "Rows pseudonymised, per rule",
        metrics.rows_pseudonymised.clone(),
    );
    registry.register(
        "rows_anonymised",
        "Rows anonymised, per rule",
        metrics.rows_anonymised.clone(),
    );
    registry.register(
        "rows_held",
        "Rows due but kept under a hold at the last run, per rule",
        metrics.rows_held.clone(),
    );
    registry.register("runs", "Runs started, per rule", metrics.runs.clone());
    registry.register(
        "run_failures",
        "Runs that failed or could not start, per rule",
        metrics.failures.clone(),
    );
    registry.register(
        "last_success_timestamp_seconds",
        "When the last completed run of each rule finished (Unix time)",
        metrics.last_success.clone(),
    );
    registry.register(
        "batch_duration_seconds",
        "How long a batch transaction took, per rule",
        metrics.batch_seconds.clone(),
    );
    registry.register(
        "pause_seconds",
        "Seconds runs paused between batches, per rule and reason (pause_ms, load, lag)",
        metrics.pause_seconds.clone(),
    );
    registry.register(
        "pausing",
        "1 while a run of the rule waits for its store's load or a replica's lag to fall",
        metrics.pausing.clone(),
    );
    registry.register(
        "erasure_requests_overdue",
        "Erasure requests still open after their deadline, at the last look",
        metrics.erasure_overdue.clone(),
    );
    Metrics {
        registry,
        ..metrics
    }
});

fn labels(rule: &str) -> RuleLabels {
    RuleLabels {
        rule: rule.to_string(),
    }
}

/// A batch committed.
pub fn batch_committed(rule: &str, seconds: f64) {
    METRICS
        .batch_seconds
        .get_or_create(&labels(rule))
        .observe(seconds);
}

/// A run paused between batches for `seconds`; `reason` is `pause_ms`,
/// `load` or `lag`.
pub fn paused(rule: &str, reason: &str, seconds: f64) {
    let labels = PauseLabels {
        rule: rule.to_string(),
        reason: reason.to_string(),
    };
    METRICS.pause_seconds.get_or_create(&labels).inc_by(seconds);
}

/// A run of `rule` began or ended waiting for its store's load or a
/// replica's lag to fall.
pub fn pausing(rule: &str, waiting: bool) {
    METRICS
        .pausing
        .get_or_create(&labels(rule))
        .set(i64::from(waiting));
}

/// A run ended (in any status) and says what it did.
pub fn run_ended(report: &StepReport) {
    let rule = labels(&report.rule_id);
    METRICS.runs.get_or_create(&rule).inc();
    let changed = match report.action {
        "delete" => &METRICS.rows_deleted,
        "anonymise" => &METRICS.rows_anonymised,
        _ => &METRICS.rows_pseudonymised,
    };
    changed.get_or_create(&rule).inc_by(report.rows_changed);
    // A rule without holds keeps nothing, and is not counted before its run.
    let held = report.counted.as_ref().map_or(0, |c| c.held);
    METRICS.rows_held.get_or_create(&rule).set(held as i64);
    match report.status {
        Status::Completed => {
            let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
            METRICS.last_success.get_or_create(&rule).set(now);
        }
        Status::Failed | Status::Refused => {
            METRICS.failures.get_or_create(&rule).inc();
        }
        Status::Stopped | Status::Partial => {}
    }
}

/// A run could not start, or failed before it could report.
pub fn run_failed(rule: &str) {
    METRICS.failures.get_or_create(&labels(rule)).inc();
}

/// How many erasure requests are overdue now.
pub fn erasure_overdue(requests: u64) {
    METRICS.erasure_overdue.set(requests as i64);
}

/// The metrics in OpenMetrics text form.
pub fn render() -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &METRICS.registry)
        .expect("writing to a String cannot fail");
    text
}

/// Serves `/metrics` on `addr` from a thread of its own.
pub fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let content_type = tiny_http::Header::from_bytes(
                "Content-Type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .expect("a valid header");
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    tiny_http::Response::from_string(render()).with_header(content_type.clone())
                } else {
                    tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
                };
                if let Err(err) = request.respond(response) {
                    tracing::debug!(error = %err, "a metrics scrape went away");
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pauses are visible: seconds paused per reason, and whether a run
    /// is waiting for its store's load now.
    #[test]
    fn pauses_are_exported() {
        paused("metrics-pause", "load", 1.5);
        pausing("metrics-pause", true);
        let text = render();
        assert!(
            text.contains(
                "glemsel_pause_seconds_total{rule=\"metrics-pause\",reason=\"load\"} 1.5"
            ),
            "{text}"
        );
        assert!(
            text.contains("glemsel_pausing{rule=\"metrics-pause\"} 1"),
            "{text}"
        );
    }
}
