//! The operator's monitoring kit: `contrib/grafana/sluice.json` and
//! `contrib/prometheus/alerts.yml`. Every metric either names is exported
//! by a running daemon, every query parses as PromQL and the alert rules
//! pass `promtool check rules` (Debian's `prometheus` package, which
//! `cargo xtask test` installs).

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::daemon::{RunningDaemon, loopback_config};
use support::http;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn contrib(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join("contrib").join(path))
        .unwrap_or_else(|e| panic!("contrib/{path}: {e}"))
}

/// Every `sluice_…` metric name in `text`.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("sluice_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

fn dashboard() -> Value {
    serde_json::from_str(&contrib("grafana/sluice.json")).expect("the dashboard is JSON")
}

/// (panel title, query) for every query of every panel.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                panel["title"].as_str().unwrap_or_default().to_owned(),
                target["expr"]
                    .as_str()
                    .expect("every target has an expr")
                    .to_owned(),
            ));
        }
    }
    out
}

fn promtool(file: &Path) -> String {
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(file)
        .output()
        .expect("promtool runs: install Debian's prometheus package (cargo xtask test does)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check rules {}: {text}",
        file.display()
    );
    text
}

#[test]
fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let daemon = RunningDaemon::start("contrib", &loopback_config(""), &[("SLUICE_LOG", "warn")]);
    // One refusal, so the refusals family has a series to show.
    let missing = http(daemon.api, "GET", "/v1/meetings/nope", None, None);
    assert_eq!(missing.status, 404);
    let metrics = http(daemon.api, "GET", "/metrics", None, None);
    assert_eq!(metrics.status, 200);
    let exported: BTreeSet<String> = metrics
        .text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect();
    let used: BTreeSet<String> = names_in(&contrib("grafana/sluice.json"))
        .into_iter()
        .chain(names_in(&contrib("prometheus/alerts.yml")))
        .collect();
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "contrib/ uses metrics sluice does not export: {unknown:?}\nexported: {exported:?}"
    );
    // What the issue asks the dashboard to show is there.
    let dashboard_names = names_in(&contrib("grafana/sluice.json"));
    for needed in [
        "sluice_packets_in_total",
        "sluice_packets_out_total",
        "sluice_packets_dropped_total",
        "sluice_legs",
        "sluice_relay_latency_seconds_bucket",
        "sluice_worker_busy_seconds_total",
        "sluice_dialin_active_calls",
        "sluice_dialin_calls_total",
        "sluice_dialin_transcode_seconds_bucket",
    ] {
        assert!(
            dashboard_names.contains(needed),
            "the dashboard lacks {needed}"
        );
    }
    let (status, _) = daemon.stop();
    assert!(status.success());
}

#[test]
fn dashboard_queries_parse_and_alert_rules_pass_promtool() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "sluice-relay");
    let titles: BTreeSet<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for title in [
        "Packets per second",
        "Drops by reason",
        "Legs",
        "In-relay latency",
        "Worker busy",
        "Dial-in calls",
        "Transcodes",
    ] {
        assert!(titles.contains(title), "no {title:?} panel in {titles:?}");
    }
    // Panel ids are unique (Grafana keys edits by them).
    let ids: Vec<i64> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().expect("panel id"))
        .collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len());

    // Each query as a recording rule, Grafana's variables filled in the
    // way Grafana would, so promtool parses every PromQL expression.
    let queries = queries(&dashboard);
    assert!(queries.len() >= 15, "{queries:?}");
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*");
            json!({ "record": format!("sluice:dashboard_query_{i}"), "expr": expr })
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("sluice-contrib-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // JSON is YAML, so promtool reads this as a rule file.
    let file = dir.join("dashboard-rules.yml");
    let doc = json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(&file, doc.to_string()).unwrap();
    let checked = promtool(&file);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{checked}"
    );
    std::fs::remove_dir_all(&dir).ok();

    let alerts_path = Path::new(ROOT).join("contrib/prometheus/alerts.yml");
    let checked = promtool(&alerts_path);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let alerts = contrib("prometheus/alerts.yml");
    for alert in [
        "SluiceAuthFailureSurge",
        "SluicePacketDrops",
        "SluiceWorkerSaturated",
        "SluiceDialInFailures",
    ] {
        assert!(alerts.contains(&format!("alert: {alert}\n")), "no {alert}");
    }
}
