//! The `sluice` binary itself, as an operator runs it: `sluice run` with
//! the embedded default config answers the control API on 127.0.0.1:7480
//! and SIP on 127.0.0.1:5060, and stops cleanly (exit 0) on SIGTERM; `sluice check-config` names the
//! bad line; `sluice hw` reports the box.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::http;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// Kills the child if the test fails before it stops on its own, so a
/// failed run never leaves a relay holding the default ports.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn run_with_the_default_config_serves_the_api_and_stops_on_sigterm() {
    let mut child = Running(
        Command::new(SLUICE)
            .arg("run")
            .env("SLUICE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice"),
    );
    let stderr = child.0.stderr.take().expect("stderr piped");
    let mut lines = BufReader::new(stderr).lines();
    // The banner is the first line that says where the API is; warnings
    // (e.g. about socket buffer limits) may come before it.
    let banner = lines
        .by_ref()
        .take(20)
        .map_while(Result::ok)
        .find(|line| line.contains("control API on"))
        .expect("a banner line naming the control API");
    assert!(
        banner.contains("control API on http://127.0.0.1:7480"),
        "{banner}"
    );
    assert!(banner.contains("media on 127.0.0.1:40000"), "{banner}");
    assert!(
        banner.contains("SIP dial-in on udp 127.0.0.1:5060"),
        "{banner}"
    );

    let api: SocketAddr = "127.0.0.1:7480".parse().expect("address");
    let health = http(api, "GET", "/healthz", None, None);
    assert_eq!(health.status, 200, "{}", health.text);
    let created = http(
        api,
        "POST",
        "/v1/meetings",
        Some(&json!({"mode": "standard", "owner": {"account": "ops", "verified": false}})),
        None,
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let openapi = http(api, "GET", "/v1/openapi.json", None, None);
    assert_eq!(openapi.status, 200);
    assert!(openapi.json()["paths"]["/v1/meetings"].is_object());

    // SIP answers an SBC's keep-alive probe on the default port.
    let sip = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sip.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let local = sip.local_addr().expect("addr");
    let probe = format!(
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-probe\r\n\
         From: <sip:sbc@{local}>;tag=1\r\nTo: <sip:127.0.0.1:5060>\r\nCall-ID: probe\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sip.send_to(probe.as_bytes(), "127.0.0.1:5060")
        .expect("send OPTIONS");
    let mut buf = [0u8; 2048];
    let (n, _) = sip.recv_from(&mut buf).expect("an answer to OPTIONS");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).expect("pid fits")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("send SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "sluice did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "sluice exited with {status} after SIGTERM"
    );
}

#[test]
fn check_config_names_the_line_and_the_fix() {
    let dir = std::env::temp_dir().join(format!("sluice-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[media]\nlisten = \"127.0.0.1:40000\"\nworker = 4\n").expect("write");
    let out = Command::new(SLUICE)
        .arg("check-config")
        .arg(&bad)
        .output()
        .expect("run check-config");
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains(":3:"),
        "the line number is named: {message}"
    );
    assert!(
        message.contains("worker"),
        "the bad key is named: {message}"
    );
    assert!(message.contains("workers"), "the fix is named: {message}");

    let good = dir.join("good.toml");
    std::fs::write(&good, "[media]\nworkers = 2\n").expect("write");
    let out = Command::new(SLUICE)
        .arg("check-config")
        .arg(&good)
        .output()
        .expect("run check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn hw_reports_crypto_and_io() {
    let out = Command::new(SLUICE).arg("hw").output().expect("run hw");
    assert!(out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    for field in [
        "cpu crypto:",
        "crypto backend:",
        "packet I/O:",
        "gpus:",
        "opencl:",
        "gpu offload:",
    ] {
        assert!(report.contains(field), "missing {field} in\n{report}");
    }
}
