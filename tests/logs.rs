//! The daemon's log as an operator's file or log shipper receives it:
//! no ANSI escape off a terminal, one JSON object per line with
//! `[log] format = "json"`, and never a key or token in any line, even at
//! trace level while participants are admitted, send SRTP and are refused.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use support::daemon::{RunningDaemon, loopback_config};
use support::{Endpoint, http};

const TOKEN: &str = "tok-9d1c4e7a52b8f603";

/// Drives the daemon through everything that handles a secret, and returns
/// every secret it saw, in each written form.
fn exercise(daemon: &RunningDaemon) -> Vec<String> {
    let api = daemon.api;
    let mut secrets = vec![TOKEN.to_owned()];
    let post =
        |path: &str, body: Value, token: Option<&str>| http(api, "POST", path, Some(&body), token);
    let created = post(
        "/v1/meetings",
        json!({"id": "secret-test", "mode": "e2ee", "passcode": "pass-4417",
               "owner": {"account": "alice", "verified": true}}),
        Some(TOKEN),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    secrets.push("pass-4417".to_owned());
    // A client-chosen key, and two relay-chosen ones.
    let chosen = [0x5au8; 44];
    let mut admissions = Vec::new();
    for (name, key) in [("ann", Some(BASE64.encode(chosen))), ("bob", None)] {
        let mut body = json!({"name": name, "passcode": "pass-4417"});
        if let Some(key) = key {
            body["client_to_relay"] = json!(key);
        }
        let answer = post("/v1/meetings/secret-test/participants", body, Some(TOKEN));
        assert_eq!(answer.status, 201, "{}", answer.text);
        admissions.push(answer.json());
    }
    for (i, admission) in admissions.iter().enumerate() {
        let pid = admission["id"].as_str().unwrap();
        let stream = post(
            &format!("/v1/meetings/secret-test/participants/{pid}/streams"),
            json!({"ssrc": 7000 + i, "kind": "audio", "codec": "opus", "payload_type": 111}),
            Some(TOKEN),
        );
        assert_eq!(stream.status, 201, "{}", stream.text);
        for field in ["client_to_relay", "relay_to_client"] {
            let text = admission["media"][field].as_str().unwrap();
            let bytes = BASE64.decode(text).unwrap();
            secrets.push(text.to_owned());
            secrets.push(hex::encode(&bytes));
            secrets.push(format!("{:?}", &bytes[..16]));
            // The master key alone, too (the first 32 bytes for AES-256).
            secrets.push(BASE64.encode(&bytes[..32]));
        }
    }
    // Media both ways, a forged packet, a refused token, a wrong passcode.
    let mut ann = Endpoint::from_admission(&admissions[0]);
    let bob = Endpoint::from_admission(&admissions[1]);
    for seq in 0..5 {
        ann.send_rtp(7000, seq, b"media");
    }
    let mut forged = support::rtp(7000, 99, b"forged");
    forged.extend_from_slice(&[0u8; 16]);
    ann.send_raw(&forged);
    let _ = bob.receive(5, std::time::Duration::from_secs(2));
    let wrong_token = "wrong-token-0b5e11";
    secrets.push(wrong_token.to_owned());
    let refused = http(api, "GET", "/v1/meetings", None, Some(wrong_token));
    assert_eq!(refused.status, 401);
    let wrong_pass = post(
        "/v1/meetings/secret-test/participants",
        json!({"name": "eve", "passcode": "guess-8812"}),
        Some(TOKEN),
    );
    assert_eq!(wrong_pass.error_code(), "wrong_passcode");
    secrets.push("guess-8812".to_owned());
    let deleted = http(api, "DELETE", "/v1/meetings/secret-test", None, Some(TOKEN));
    assert_eq!(deleted.status, 204);
    secrets
}

#[track_caller]
fn assert_no_secret(log: &str, secrets: &[String]) {
    for secret in secrets {
        for (n, line) in log.lines().enumerate() {
            assert!(
                !line.contains(secret.as_str()),
                "line {} of the log holds the secret {secret:?}: {line}",
                n + 1
            );
        }
    }
}

#[test]
fn trace_logs_in_text_carry_no_colour_and_no_secret() {
    let daemon = RunningDaemon::start(
        "logs-text",
        &loopback_config(""),
        &[("SLUICE_API_TOKEN", TOKEN), ("SLUICE_LOG", "trace")],
    );
    let secrets = exercise(&daemon);
    let (status, log) = daemon.stop();
    assert!(status.success(), "{status}");
    // Trace level did log the requests (the test would prove nothing on
    // an empty log).
    assert!(log.lines().count() > 10, "{log}");
    assert!(log.contains("TRACE"), "{log}");
    assert!(!log.contains('\x1b'), "an ANSI escape in a piped log");
    assert_no_secret(&log, &secrets);
}

#[test]
fn json_logs_are_one_object_per_line_and_carry_no_secret() {
    let daemon = RunningDaemon::start(
        "logs-json",
        &loopback_config("[log]\nformat = \"json\"\nlevel = \"trace\"\n"),
        &[("SLUICE_API_TOKEN", TOKEN)],
    );
    let secrets = exercise(&daemon);
    let (status, log) = daemon.stop();
    assert!(status.success(), "{status}");
    let mut levels = std::collections::BTreeSet::new();
    for line in log.lines() {
        let event: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            event["timestamp"].is_string() && event["target"].is_string(),
            "{line}"
        );
        levels.insert(event["level"].as_str().unwrap().to_owned());
    }
    assert!(
        levels.contains("TRACE") && levels.contains("INFO"),
        "{levels:?}"
    );
    assert!(!log.contains('\x1b'));
    assert_no_secret(&log, &secrets);
}
