//! The smoke, end to end: `sluice-bench smoke` against the real sluice
//! binary must pass, and the engine must notice when packets do not
//! decrypt (a target that hands out the wrong keys).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use sluice::srtp::{MasterKey, SrtpProfile};
use sluice_bench::engine::{self, EngineOptions};
use sluice_bench::scenario::Scenario;
use sluice_bench::target::{LegPlan, MeetingSpec, Target, TargetError};
use sluice_bench::targets::Ceiling;

/// The sluice binary: `SLUICE_BIN`, else the one cargo built next to this
/// test, else built now. Never skipped.
fn sluice_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(path);
    }
    // This test runs from <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>");
    let binary = profile_dir.join("sluice");
    if !binary.is_file() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "sluice", "--bin", "sluice"])
            .current_dir(&workspace)
            .status()
            .expect("run cargo build for the sluice binary");
        assert!(
            status.success(),
            "cargo build -p sluice --bin sluice failed"
        );
    }
    assert!(binary.is_file(), "no sluice binary at {}", binary.display());
    binary
}

#[test]
fn smoke_passes_against_the_real_relay() {
    let out = std::env::temp_dir().join(format!("sluice-bench-smoke-test-{}", std::process::id()));
    let result = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .arg("smoke")
        .arg("--sluice")
        .arg(sluice_binary())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run sluice-bench smoke");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "smoke failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("smoke passed"), "{stdout}");
    assert!(stdout.contains("| sluice/ceiling |"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report.json"))
            .expect("JSON");
    assert_eq!(json["targets"][1]["name"], "sluice");
    assert_eq!(json["targets"][1]["points"][0]["lost"], 0);
    assert!(
        json["targets"][1]["points"][0]["relay"]["rss_max_bytes"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    let svg = std::fs::read_to_string(out.join("latency.svg")).expect("latency.svg");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(100)]);
    let _ = std::fs::remove_dir_all(out);
}

/// The ceiling, but every receiver gets a key no sender uses.
#[derive(Debug)]
struct WrongKeys(Ceiling);

impl Target for WrongKeys {
    fn name(&self) -> &'static str {
        "wrong-keys"
    }

    fn describe(&self) -> String {
        "the ceiling with wrong receive keys".into()
    }

    fn admit(
        &mut self,
        meeting: &MeetingSpec,
        participants: &[SocketAddr],
    ) -> Result<Vec<LegPlan>, TargetError> {
        let mut plans = self.0.admit(meeting, participants)?;
        let wrong = MasterKey::new(
            meeting.profile,
            &vec![0x42; meeting.profile.key_material_len()],
        )
        .expect("key");
        for plan in &mut plans {
            for path in &mut plan.receives {
                path.key = Some(wrong.clone());
            }
        }
        Ok(plans)
    }

    fn pid(&self) -> Option<u32> {
        None
    }
}

#[test]
fn wrong_keys_show_as_decrypt_failures_and_loss() {
    let scenario = Scenario {
        seconds: 0.5,
        ramp_seconds: 0.1,
        meetings: 1,
        ..Scenario::smoke()
    };
    let mut target = WrongKeys(Ceiling::new(SrtpProfile::AeadAes256Gcm));
    let all = EngineOptions {
        verify_every: 1,
        ..EngineOptions::default()
    };
    let m = engine::run(&mut target, &scenario, &all, &mut |_, _, _| {}).expect("runs");
    assert!(m.sent > 0);
    assert_eq!(m.received, 0);
    assert_eq!(m.lost, m.expected);
    assert!(m.decrypt_failures > 0);
    assert!(!m.flawless());
    // Verifying a sample, the clear headers count the rest as delivered,
    // but every sampled packet fails, and that fails the run.
    let mut target = WrongKeys(Ceiling::new(SrtpProfile::AeadAes256Gcm));
    let m = engine::run(
        &mut target,
        &scenario,
        &EngineOptions::default(),
        &mut |_, _, _| {},
    )
    .expect("runs");
    assert!(m.decrypt_failures > 0);
    assert_eq!(m.verified, m.decrypt_failures, "every verified one failed");
    assert_eq!(m.lost, m.decrypt_failures);
    assert!(!m.flawless());
    assert!(!m.passes(1.0, u64::MAX));
}

/// The plain forwarding baseline (`forward`, sluice's data plane with no
/// crypto, in its own process) relays the smoke load whole, and its
/// process is sampled like a relay's.
#[test]
fn plain_forwarding_relays_everything_in_its_own_process() {
    let scenario = Scenario {
        seconds: 1.0,
        ramp_seconds: 0.2,
        ..Scenario::smoke()
    };
    for io in ["recvmmsg", "auto"] {
        let mut target =
            sluice_bench::targets::forward::Forward::start(SrtpProfile::AeadAes256Gcm, 1, io, &[])
                .expect("the forward target starts");
        assert!(target.pid().is_some());
        let all = EngineOptions {
            verify_every: 1,
            ..EngineOptions::default()
        };
        let m = engine::run(&mut target, &scenario, &all, &mut |_, _, _| {}).expect("runs");
        assert!(
            m.flawless(),
            "{io}: lost {} of {}, duplicated {}, {} decrypt failures",
            m.lost,
            m.expected,
            m.duplicated,
            m.decrypt_failures
        );
        assert_eq!(m.verified, m.received);
        let relay = m.relay.expect("the forwarding process was sampled");
        assert!(relay.rss_max_bytes > 0);
    }
}
