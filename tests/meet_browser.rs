//! The meeting page (`/meet`) in headless Chromium (Debian's
//! /usr/bin/chromium, driven by playwright-core from tests/browser/):
//! each test runs one driver script in `tests/browser/` inside a network
//! namespace of its own that has only `lo` (`unshare --net`), where the
//! driver starts this build's `sluice` binary on kernel-chosen ports.
//!
//! What is missing (chromium, node, tests/browser/node_modules, the
//! right to unshare) makes a test say so and pass, except when `CI` is
//! set: then it fails, naming what to install (`cargo xtask test`
//! installs all of it).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Says why the browser tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    if !Path::new("/usr/bin/chromium").exists() {
        return Some("/usr/bin/chromium is missing: apt-get install chromium".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("`node` cannot run: apt-get install nodejs".into());
    }
    if !Path::new(ROOT)
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        return Some("tests/browser/node_modules is missing: npm ci --prefix tests/browser".into());
    }
    let unshare = Command::new("unshare")
        .args(["--net", "--fork", "true"])
        .status();
    if !unshare.is_ok_and(|s| s.success()) {
        return Some("`unshare --net` is refused (the browser tests run as root)".into());
    }
    None
}

/// Runs `tests/browser/<script>` in a fresh lo-only namespace; panics with
/// its output unless it passes.
fn run_driver(script: &str) {
    run_driver_with(script, &[]);
}

fn run_driver_with(script: &str, env: &[(&str, &std::ffi::OsStr)]) {
    if let Some(why) = missing() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the browser test cannot run: {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let started = std::time::Instant::now();
    let output = Command::new("timeout")
        .args([
            "--kill-after=5",
            "150",
            "unshare",
            "--net",
            "--fork",
            "bash",
            "-c",
        ])
        .arg(format!(
            "ip link set lo up && exec node tests/browser/{script}"
        ))
        .current_dir(ROOT)
        .env("SLUICE_BIN", SLUICE)
        .envs(env.iter().copied())
        .output()
        .expect("run the driver");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().any(|l| l == "PASSED"),
        "{script} failed ({}) after {:?}:\n{stdout}\n{stderr}",
        output.status,
        started.elapsed()
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(started.elapsed() < Duration::from_secs(150));
}

/// Same key: decoded video at the encoded frame rate with the camera's
/// colours, decoded audio; wrong key: every frame dropped, nothing
/// decoded; the sender's hook: only the codec bytes leave in clear.
#[test]
fn e2ee_transform_in_chromium_decodes_with_the_key_and_drops_everything_without_it() {
    run_driver("meet-e2ee.mjs");
}

/// Through this build's relay, with the real page and join links: a
/// standard meeting (each decodes the other's video and audio, mute and
/// leave work, the screenshot in docs/meet.png is taken), then an E2EE
/// meeting (same key decodes; what the viewer receives is the sender's
/// sealed frame byte for byte and never plaintext; a wrong key decodes
/// nothing and the page says so while the two with the key still decode
/// each other; a new key in the fragment rotates without a rejoin).
#[test]
fn meeting_page_through_sluice_standard_and_e2ee() {
    let shot = Path::new(ROOT).join("docs/meet.png");
    run_driver_with("meet-relay.mjs", &[("MEET_SCREENSHOT", shot.as_os_str())]);
}

/// The page's sentences: an incomplete link, a token the relay refuses, a
/// meeting locked after admission (with Try again, which joins once it is
/// unlocked), a camera the browser denies (with Try again), and the relay
/// going away while joined (the page says it reconnects).
#[test]
fn meeting_page_tells_a_person_what_went_wrong() {
    run_driver("meet-errors.mjs");
}
