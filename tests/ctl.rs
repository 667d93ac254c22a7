//! `sluice ctl` against a running daemon (the real binary, over TCP on
//! 127.0.0.1): list, show, lock, unlock and kick, as tables and as JSON,
//! with the API token, and the sentences it exits with when something is
//! wrong.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::daemon::{RunningDaemon, SLUICE, loopback_config};
use support::{Endpoint, http};

const TOKEN: &str = "ctl-test-token-7f3a";

/// Runs `sluice ctl ARGS` against `daemon`; (exit success, stdout, stderr).
fn ctl(daemon: &RunningDaemon, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(SLUICE);
    command
        .arg("ctl")
        .arg("--api")
        .arg(format!("http://{}", daemon.api))
        .args(args)
        .env_remove("SLUICE_API")
        .env_remove("SLUICE_API_TOKEN");
    if let Some(token) = token {
        command.env("SLUICE_API_TOKEN", token);
    }
    let out = command.output().expect("run sluice ctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn ok(daemon: &RunningDaemon, args: &[&str]) -> String {
    let (success, stdout, stderr) = ctl(daemon, Some(TOKEN), args);
    assert!(success, "sluice ctl {args:?} failed: {stderr}");
    stdout
}

#[test]
fn ctl_lists_shows_locks_and_kicks_on_a_running_daemon() {
    let daemon = RunningDaemon::start(
        "ctl",
        &loopback_config(""),
        &[("SLUICE_API_TOKEN", TOKEN), ("SLUICE_LOG", "warn")],
    );
    let api = daemon.api;
    let post = |path: &str, body: Value| {
        let answer = http(api, "POST", path, Some(&body), Some(TOKEN));
        assert_eq!(answer.status, 201, "{}", answer.text);
        answer.json()
    };
    post(
        "/v1/meetings",
        json!({"id": "standup", "mode": "e2ee", "owner": {"account": "alice", "verified": true}}),
    );
    post(
        "/v1/meetings",
        json!({"id": "all-hands", "mode": "standard", "owner": {"account": "bob"}}),
    );
    let ann = post(
        "/v1/meetings/standup/participants",
        json!({"name": "ann", "role": "host"}),
    );
    let ann_id = ann["id"].as_str().unwrap().to_owned();
    post(
        &format!("/v1/meetings/standup/participants/{ann_id}/streams"),
        json!({"ssrc": 1111, "kind": "audio", "codec": "opus", "payload_type": 111}),
    );
    let bob = post("/v1/meetings/standup/participants", json!({"name": "bob"}));
    let bob_id = bob["id"].as_str().unwrap().to_owned();

    // Ann sends real SRTP: the relay latches her address.
    let mut endpoint = Endpoint::from_admission(&ann);
    let ann_addr = endpoint.socket.local_addr().unwrap();
    for seq in 0..3 {
        endpoint.send_rtp(1111, seq, b"hello");
    }

    assert_eq!(
        ok(&daemon, &["list"]),
        "ID         MODE      LOCKED  PARTICIPANTS  OWNER\n\
         all-hands  standard  no      0             bob\n\
         standup    e2ee      no      2             alice (verified)\n"
    );
    assert_eq!(
        ok(&daemon, &["list", "--mode", "e2ee"]).lines().count(),
        2,
        "header and standup"
    );
    let listed: Value = serde_json::from_str(&ok(&daemon, &["--json", "list"])).unwrap();
    assert_eq!(listed["meetings"].as_array().unwrap().len(), 2);
    assert_eq!(listed["meetings"][1]["id"], "standup");

    let shown = ok(&daemon, &["show", "standup"]);
    assert!(
        shown.starts_with(
            "meeting standup: e2ee, locked no, owner alice (verified), 2 participant(s)\n"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("PARTICIPANT       NAME  ROLE      SOURCE  STREAMS\n"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "{ann_id}  ann   host      api     1111 audio/opus\n"
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("{bob_id}  bob   attendee  api     -\n")),
        "{shown}"
    );

    // The latch happens on a worker thread: give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let detail = loop {
        let detail = ok(&daemon, &["show", "standup", &ann_id]);
        if detail.contains(&ann_addr.to_string()) || std::time::Instant::now() > deadline {
            break detail;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(detail.starts_with(&format!("participant {ann_id} (ann) in meeting standup\n")));
    assert!(
        detail.contains(&format!("latch          {ann_addr}\n")),
        "{detail}"
    );
    assert!(
        detail.contains("srtp profile   AEAD_AES_256_GCM\n"),
        "{detail}"
    );
    assert!(
        detail.contains("SSRC  KIND   CODEC  PT   HIGHEST SRTP INDEX\n"),
        "{detail}"
    );
    assert!(detail.contains("1111  audio  opus   111  2\n"), "{detail}");
    let bob_detail = ok(&daemon, &["show", "standup", &bob_id]);
    assert!(
        bob_detail.contains("latch          not latched"),
        "{bob_detail}"
    );
    let as_json: Value =
        serde_json::from_str(&ok(&daemon, &["show", "standup", &ann_id, "--json"])).unwrap();
    assert_eq!(as_json["latch"]["address"], ann_addr.to_string());
    assert_eq!(as_json["streams"][0]["highest_srtp_index"], 2);
    for key in ["client_to_relay", "relay_to_client"] {
        assert!(!detail.contains(ann["media"][key].as_str().unwrap()));
    }

    assert_eq!(
        ok(&daemon, &["lock", "standup"]),
        "meeting standup is locked: nobody else is admitted\n"
    );
    let refused = http(
        api,
        "POST",
        "/v1/meetings/standup/participants",
        Some(&json!({"name": "eve"})),
        Some(TOKEN),
    );
    assert_eq!(refused.error_code(), "meeting_locked");
    let unlocked: Value =
        serde_json::from_str(&ok(&daemon, &["--json", "unlock", "standup"])).unwrap();
    assert_eq!(unlocked["locked"], false);

    assert_eq!(
        ok(&daemon, &["kick", "standup", &bob_id]),
        format!("removed participant {bob_id} from meeting standup\n")
    );
    let after = http(api, "GET", "/v1/meetings/standup", None, Some(TOKEN)).json();
    assert_eq!(after["participants"], 1);

    // Mistakes end non-zero with a sentence that says what to fix.
    let (success, _, stderr) = ctl(&daemon, Some(TOKEN), &["kick", "standup", &bob_id]);
    assert!(!success);
    assert_eq!(
        stderr,
        format!(
            "sluice: ctl: participant_not_found: the meeting has no participant with the id \"{bob_id}\"\n"
        )
    );
    let (success, _, stderr) = ctl(&daemon, None, &["list"]);
    assert!(!success);
    assert!(
        stderr.starts_with("sluice: ctl: unauthorized: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("set SLUICE_API_TOKEN or pass --token-file"),
        "{stderr}"
    );
    let (success, _, stderr) = ctl(&daemon, Some("wrong"), &["show", "nope"]);
    assert!(!success && stderr.contains("unauthorized"), "{stderr}");

    // The token can come from a file instead.
    let token_file = daemon.dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let (success, stdout, stderr) = ctl(
        &daemon,
        None,
        &["list", "--token-file", token_file.to_str().unwrap()],
    );
    assert!(success, "{stderr}");
    assert_eq!(stdout.lines().count(), 3);

    let (status, log) = daemon.stop();
    assert!(status.success(), "{status}: {log}");
}

#[test]
fn ctl_without_a_daemon_says_where_it_looked() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(SLUICE)
        .args(["ctl", "--api", &format!("127.0.0.1:{port}"), "list"])
        .env_remove("SLUICE_API_TOKEN")
        .output()
        .expect("run sluice ctl");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "sluice: ctl: cannot reach the control API at http://127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    let out = Command::new(SLUICE)
        .args(["ctl", "--api", "https://example.invalid", "list"])
        .output()
        .expect("run sluice ctl");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("use host:port"));
}
