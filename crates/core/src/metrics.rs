//! Prometheus/OpenMetrics text for fleets of machines, rendered from a [`Status`]
//! with `prometheus-client`. The metrics are a pure function of the latest status,
//! built at scrape time, so there is no second copy of the engine's state to keep
//! in step, and a target that disappears stops being exported at once.

use crate::model::Severity;
use crate::status::{Status, TargetState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignatureLabels {
    target: String,
    signature: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    target: String,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    target: String,
    rule: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Renders `status` as OpenMetrics text.
pub fn render(status: &Status) -> String {
    let mut registry = Registry::with_prefix("leakwatch");
    let up = Family::<TargetLabels, Gauge>::default();
    let fds = Family::<KindLabels, Gauge>::default();
    let total = Family::<TargetLabels, Gauge>::default();
    let limit = Family::<TargetLabels, Gauge>::default();
    let rss = Family::<TargetLabels, Gauge>::default();
    let slope = Family::<TargetLabels, FloatGauge>::default();
    let eta = Family::<TargetLabels, FloatGauge>::default();
    let rule = Family::<RuleLabels, Gauge>::default();
    let severity = Family::<TargetLabels, Gauge>::default();
    let restarts = Family::<TargetLabels, Gauge>::default();
    let signature = Family::<SignatureLabels, Gauge>::default();
    for target in &status.targets {
        for found in &target.signatures {
            let labels =
                SignatureLabels { target: target.name.clone(), signature: found.name().into() };
            signature.get_or_create(&labels).set(1);
        }
        let labels = TargetLabels { target: target.name.clone() };
        // A target whose pidfile could not be read is neither up nor down: no
        // sample, so the "down" alert (`leakwatch_target_up == 0`) does not
        // fire on what the engine itself does not take for down.
        if !matches!(target.state, TargetState::Unknown(_)) {
            up.get_or_create(&labels).set(i64::from(target.state == TargetState::Up));
        }
        severity.get_or_create(&labels).set(severity_value(target.severity));
        if let Some(sample) = &target.sample {
            total.get_or_create(&labels).set(saturating(sample.total));
            for (kind, count) in &sample.kinds {
                let labels = KindLabels { target: target.name.clone(), kind: kind.name().into() };
                fds.get_or_create(&labels).set(saturating(*count));
            }
            if let Some(bytes) = sample.rss_bytes {
                rss.get_or_create(&labels).set(saturating(bytes));
            }
        }
        if let Some(soft) = target.limit.and_then(|l| l.soft) {
            limit.get_or_create(&labels).set(saturating(soft));
        }
        if let Some(per_hour) = target.slope_per_hour {
            slope.get_or_create(&labels).set(per_hour);
        }
        if let Some(seconds) = target.eta_seconds {
            eta.get_or_create(&labels).set(seconds);
        }
        for state in &target.rules {
            let labels = RuleLabels { target: target.name.clone(), rule: state.metric.clone() };
            rule.get_or_create(&labels).set(severity_value(state.severity));
        }
    }
    for state in &status.orphan_rules {
        let target = crate::model::Subject::Orphans.to_string();
        let labels = RuleLabels { target, rule: state.metric.clone() };
        rule.get_or_create(&labels).set(severity_value(state.severity));
    }
    for (target, count) in &status.restarts {
        restarts.get_or_create(&TargetLabels { target: target.clone() }).set(saturating(*count));
    }
    let orphans = Gauge::<i64>::default();
    orphans.set(saturating(status.orphans.len() as u64));
    let orphan_rss = Gauge::<i64>::default();
    orphan_rss.set(saturating(status.orphans.iter().map(|t| t.total_rss_bytes).sum()));
    let own_rss = Gauge::<i64>::default();
    own_rss.set(saturating(status.own.rss_bytes.unwrap_or(0)));
    let own_fds = Gauge::<i64>::default();
    own_fds.set(saturating(status.own.fds.unwrap_or(0)));

    registry.register("target_up", "1 when the target's process is found", up);
    registry.register("fds", "Open descriptors by canonical kind", fds);
    registry.register("fd_count", "All open descriptors", total);
    registry.register("fd_limit", "Soft descriptor limit", limit);
    registry.register("rss_bytes", "Resident memory of the target", rss);
    registry.register("fd_slope_per_hour", "Leak slope (Theil-Sen), descriptors per hour", slope);
    registry.register("fd_eta_seconds", "Projected seconds until the limit", eta);
    registry.register("rule_state", "Rule state: 0 ok, 1 warning, 2 critical", rule);
    registry.register("target_severity", "Worst rule state of the target", severity);
    registry.register("restarts", "Restarts Leakwatch performed", restarts);
    registry.register(
        "leak_signature_info",
        "1 for each leak signature the target's surviving descriptors match",
        signature,
    );
    registry.register("orphan_trees", "Orphaned process trees", orphans);
    registry.register("orphan_rss_bytes", "Resident memory held by orphan trees", orphan_rss);
    registry.register("own_rss_bytes", "Leakwatch's own resident memory", own_rss);
    registry.register("own_fds", "Leakwatch's own open descriptors", own_fds);

    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

fn severity_value(severity: Severity) -> i64 {
    match severity {
        Severity::Ok => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

fn saturating(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Serves `/metrics` (GET and HEAD, any query string) on `listener` from the
/// latest status until the task is dropped, with [`crate::http`]'s server and
/// its [`Limits::METRICS`](crate::http::Limits::METRICS).
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: tokio::sync::watch::Receiver<std::sync::Arc<Status>>,
) {
    crate::http::serve(listener, crate::http::Limits::METRICS, handler(status)).await;
}

/// The routes of the metrics endpoint, for any listener: `/metrics` (and `/`)
/// answer GET and HEAD; other paths 404, other methods 405.
pub fn handler(
    status: tokio::sync::watch::Receiver<std::sync::Arc<Status>>,
) -> crate::http::Handler {
    use hyper::{Method, StatusCode, header};
    std::sync::Arc::new(move |request| {
        let response = match (request.method(), request.uri().path()) {
            (&Method::GET | &Method::HEAD, "/metrics" | "/") => {
                let snapshot = status.borrow().clone();
                let mut response = hyper::Response::new(crate::http::full(render(&snapshot)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                response
            }
            (_, "/metrics" | "/") => {
                let mut response =
                    crate::http::text(StatusCode::METHOD_NOT_ALLOWED, "use GET or HEAD\n");
                response
                    .headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
                response
            }
            _ => crate::http::text(StatusCode::NOT_FOUND, "try /metrics\n"),
        };
        Box::pin(async move { response })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Sample;
    use crate::status::TargetStatus;
    use leakwatch_probe::FdKind;
    use std::collections::BTreeMap;

    fn target(name: &str) -> TargetStatus {
        let mut kinds = BTreeMap::new();
        kinds.insert(FdKind::Kqueue, 812);
        kinds.insert(FdKind::Unix, 40);
        TargetStatus {
            target: Some(name.to_owned()),
            sample: Some(Sample {
                at: 0,
                total: 852,
                kinds,
                limit: Some(1024),
                rss_bytes: Some(1 << 20),
                cpu_seconds: None,
                threads: None,
                descendants: 0,
            }),
            slope_per_hour: Some(96.0),
            eta_seconds: Some(9600.0),
            severity: Severity::Warning,
            rules: vec![crate::status::RuleStatus {
                metric: "kqueue".to_owned(),
                severity: Severity::Warning,
                value: Some(812.0),
            }],
            diagnosis: Some("event loops leaking: kqueue ×812".to_owned()),
            signatures: vec![crate::diagnose::Signature::EventLoopsNotClosed],
            reading: crate::status::Reading::Measured,
            ..TargetStatus::unsampled(name, "port 4321", TargetState::Up)
        }
    }

    #[test]
    fn renders_kinds_slope_eta_and_rule_states() {
        let mut status = Status { targets: vec![target("copilot")], ..Status::default() };
        status.restarts.insert("copilot".into(), 2);
        let text = render(&status);
        for line in [
            "leakwatch_fds{target=\"copilot\",kind=\"kqueue\"} 812",
            "leakwatch_fd_count{target=\"copilot\"} 852",
            "leakwatch_fd_slope_per_hour{target=\"copilot\"} 96.0",
            "leakwatch_fd_eta_seconds{target=\"copilot\"} 9600.0",
            "leakwatch_rule_state{target=\"copilot\",rule=\"kqueue\"} 1",
            "leakwatch_target_up{target=\"copilot\"} 1",
            "leakwatch_restarts{target=\"copilot\"} 2",
            "leakwatch_leak_signature_info{target=\"copilot\",signature=\"event_loops_not_closed\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    /// Regression (issue 10): a timed-out pidfile read is `unknown`, never down,
    /// yet the metrics said `target_up 0`, so the packaged "down" alert fired.
    #[test]
    fn an_unknown_target_is_neither_up_nor_down_in_the_metrics() {
        let mut unknown = target("stuck");
        unknown.state = TargetState::Unknown("pidfile read timed out".into());
        let mut down = target("gone");
        down.state = TargetState::Down("not running".into());
        let status = Status { targets: vec![unknown, down], ..Status::default() };
        let text = render(&status);
        assert!(!text.contains("leakwatch_target_up{target=\"stuck\"}"), "{text}");
        assert!(text.contains("leakwatch_target_up{target=\"gone\"} 0"), "{text}");
    }

    #[test]
    fn renders_orphan_totals_from_the_status() {
        use crate::orphans::{OrphanReason, OrphanTree};
        use leakwatch_probe::{ProcessId, StartTime};
        let tree = |pid: u32, rss: u64| OrphanTree {
            root: ProcessId { pid, start_time: StartTime(1) },
            reason: OrphanReason::LeaderGone,
            original_parent: None,
            label: "uvx x (uv → python)".into(),
            members: Vec::new(),
            total_rss_bytes: rss,
            total_fds: 3,
            age: std::time::Duration::from_secs(60),
            idle_for: None,
            watched: Vec::new(),
        };
        let status = Status {
            orphans: vec![tree(10, 1000), tree(20, 24)],
            orphan_rules: vec![crate::status::RuleStatus {
                metric: "orphans.count".into(),
                severity: Severity::Warning,
                value: Some(2.0),
            }],
            ..Status::default()
        };
        let text = render(&status);
        for line in [
            "leakwatch_orphan_trees 2",
            "leakwatch_orphan_rss_bytes 1024",
            "leakwatch_rule_state{target=\"orphans\",rule=\"orphans.count\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let status = Status { targets: vec![target("web")], ..Status::default() };
        let (_tx, rx) = tokio::sync::watch::channel(std::sync::Arc::new(status));
        let server = tokio::spawn(serve(listener, rx));
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("leakwatch_fds{target=\"web\",kind=\"unix\"} 40"));
        server.abort();
    }

    /// One request on a fresh connection, the whole response as text.
    async fn exchange(address: std::net::SocketAddr, request: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut response = Vec::new();
        let read = stream.read_to_end(&mut response);
        tokio::time::timeout(std::time::Duration::from_secs(30), read).await.unwrap().unwrap();
        String::from_utf8_lossy(&response).into_owned()
    }

    async fn metrics_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let status = Status { targets: vec![target("web")], ..Status::default() };
        let (tx, rx) = tokio::sync::watch::channel(std::sync::Arc::new(status));
        // The sender must outlive the server for `borrow` to see the status.
        let server = tokio::spawn(async move {
            let _tx = tx;
            serve(listener, rx).await;
        });
        (address, server)
    }

    #[tokio::test]
    async fn metrics_answers_head_without_a_body() {
        let (address, server) = metrics_server().await;
        let response =
            exchange(address, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("openmetrics-text"), "{response}");
        assert!(!response.contains("leakwatch_fds"), "HEAD sent a body:\n{response}");
        server.abort();
    }

    #[tokio::test]
    async fn metrics_ignores_a_query_string() {
        let (address, server) = metrics_server().await;
        let request = b"GET /metrics?target=web&x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let response = exchange(address, request).await;
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("leakwatch_fds{target=\"web\",kind=\"unix\"} 40"));
        server.abort();
    }

    #[tokio::test]
    async fn metrics_answers_garbage_with_400_and_unknown_paths_with_404() {
        let (address, server) = metrics_server().await;
        let response = exchange(address, b"\x00\x01garbage \xff\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 400"), "{response:?}");
        let response =
            exchange(address, b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");
        let response = exchange(
            address,
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 405"), "{response}");
        // Still serving after all that.
        let response =
            exchange(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        server.abort();
    }

    /// The example alert rules and dashboard under packaging/ must use only
    /// metrics this renderer exports: a renamed metric would silently stop an alert.
    #[test]
    fn packaged_rules_and_dashboard_use_exported_metrics() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging");
        let mut status = Status { targets: vec![target("copilot")], ..Status::default() };
        status.restarts.insert("copilot".into(), 1);
        status.targets[0].limit = Some(leakwatch_probe::FdLimit {
            soft: Some(1024),
            hard: None,
            source: leakwatch_probe::LimitSource::ProcLimits,
        });
        let exported = render(&status);
        for file in ["prometheus/leakwatch.rules.yml", "grafana/leakwatch.json"] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            let mut used: Vec<&str> = text
                .match_indices("leakwatch_")
                .map(|(at, _)| {
                    let rest = &text[at..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    &rest[..end]
                })
                .collect();
            used.sort_unstable();
            used.dedup();
            assert!(!used.is_empty(), "{file} uses no metric");
            for name in used {
                assert!(
                    exported.contains(&format!("\n{name}{{"))
                        || exported.contains(&format!("\n{name} ")),
                    "{file} uses {name}, which is not exported:\n{exported}"
                );
            }
        }
    }
}
