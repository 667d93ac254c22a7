//! Browsers through sluice: Debian's Chromium (headless, fake camera and
//! microphone) publishes over WHIP and views over WHEP, ICE-lite and
//! DTLS-SRTP on the media port. Each test runs the relay and the browser
//! in a network namespace of its own with only `lo` (Chromium gathers
//! loopback candidates with `--allow-loopback-in-peer-connection`), so
//! nothing leaves the namespace the test made. The scenarios are
//! `tests/browser/webrtc.mjs`.
//!
//! Chromium and `tests/browser/node_modules` (`npm ci --prefix
//! tests/browser`, which `cargo xtask test` runs) are needed: without them
//! the tests say so and pass, except under `CI`, where they fail.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::{RunningDaemon, loopback_config};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Whether Chromium, node and the driver are here; panics under `CI`.
fn browser_ready() -> bool {
    let chromium = Path::new("/usr/bin/chromium").exists();
    let driver = browser_dir().join("node_modules/playwright-core").exists();
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if chromium && driver && node {
        return true;
    }
    let missing = format!(
        "chromium at /usr/bin/chromium: {chromium}, node: {node}, \
         tests/browser/node_modules: {driver} (run `npm ci --prefix tests/browser`)"
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "the browser tests need {missing}"
    );
    eprintln!("skipping the browser test: {missing}");
    false
}

/// Runs `f` on a thread moved into a new network namespace with `lo` up;
/// processes it starts (the relay, node, Chromium) live there too.
fn in_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("unshare(CLONE_NEWNET): the browser tests run as root");
                let up = Command::new("ip")
                    .args(["link", "set", "lo", "up"])
                    .status()
                    .expect("run ip");
                assert!(up.success(), "ip link set lo up failed");
                f()
            })
            .join()
            .expect("the namespaced thread panicked")
    })
}

/// Runs a scenario of `webrtc.mjs` against the relay at `api`; panics
/// with its output unless it passed within 90 s.
fn scenario(name: &str, api: std::net::SocketAddr) -> String {
    let mut child = Command::new("node")
        .arg(browser_dir().join("webrtc.mjs"))
        .arg(name)
        .arg(format!("http://{api}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("node output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "scenario {name} failed:\n{text}");
    text
}

fn run(name: &str) {
    if !browser_ready() {
        return;
    }
    in_netns(|| {
        let daemon = RunningDaemon::start(
            &format!("webrtc-{name}"),
            &loopback_config(""),
            &[("SLUICE_LOG", "info")],
        );
        let outcome = std::panic::catch_unwind(|| scenario(name, daemon.api));
        let (_, log) = daemon.stop();
        match outcome {
            Ok(text) => eprintln!("{text}"),
            Err(e) => {
                eprintln!("relay log:\n{log}");
                std::panic::resume_unwind(e);
            }
        }
    });
}

#[test]
fn a_browser_publishes_over_whip_and_another_views_over_whep() {
    run("publish-view");
}
