//! Video transcoding in the running daemon (started in-process on
//! 127.0.0.1): encoders probed at start in `[transcode] encoders` order,
//! and `receive` refused in E2EE meetings over the real HTTP API.

mod support;

use serde_json::json;
use sluice::config::Config;
use sluice::daemon::Daemon;
use sluice::transcode::EncoderKind;
use support::http;

fn start(transcode: &str) -> Daemon {
    let text = format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n\n[media]\nlisten = \"127.0.0.1:0\"\nworkers = 1\npin_cores = false\n\n[sip]\nenabled = false\n\n[transcode]\n{transcode}\n"
    );
    let config = Config::parse(&text, "test.toml").expect("test config parses");
    Daemon::start(&config).expect("daemon starts")
}

#[test]
fn encoders_are_probed_at_start_in_the_configured_order() {
    let daemon = start("encoders = [\"h264_nvenc\", \"libvpx\", \"libx264\"]");
    // The software encoders always open; NVENC only on a box with one
    // (this test machine has none, so it is left out when it cannot open).
    let got = daemon.video_encoders().to_vec();
    assert!(
        got.ends_with(&[EncoderKind::Libvpx, EncoderKind::Libx264]),
        "{got:?}"
    );
    daemon.shutdown();
    let off = start("enabled = false");
    assert!(off.video_encoders().is_empty());
    off.shutdown();
}

#[test]
fn receive_is_refused_in_e2ee_meetings_over_http() {
    let daemon = start("");
    let api = daemon.control_addr();
    let owner = json!({"account": "a", "verified": true});
    let e2ee = http(
        api,
        "POST",
        "/v1/meetings",
        Some(&json!({"id": "e", "mode": "e2ee", "owner": owner})),
        None,
    );
    assert_eq!(e2ee.status, 201);
    let receive =
        json!({"video": {"codecs": [{"name": "VP8", "payload_type": 96}], "max_height": 360}});
    let refused = http(
        api,
        "POST",
        "/v1/meetings/e/participants",
        Some(&json!({"name": "thin", "receive": receive})),
        None,
    );
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["error"]["code"], "e2ee_forbids_transcoding");
    let std = http(
        api,
        "POST",
        "/v1/meetings",
        Some(&json!({"id": "s", "mode": "standard", "owner": owner})),
        None,
    );
    assert_eq!(std.status, 201);
    let ok = http(
        api,
        "POST",
        "/v1/meetings/s/participants",
        Some(&json!({"name": "thin", "receive": receive})),
        None,
    );
    assert_eq!(ok.status, 201);
    let metrics = http(api, "GET", "/metrics", None, None);
    assert!(
        metrics
            .text
            .contains("sluice_api_refusals_total{code=\"e2ee_forbids_transcoding\"} 1"),
        "{}",
        metrics.text
    );
    daemon.shutdown();
}
