//! `sluice-bench` talks while it runs: each mode prints, on stderr and as
//! it happens, a line per step (k of n, the offered load, the last step's
//! verdict, the time left) and a line per finished step; `--quiet` prints
//! none; every report folder holds a `report.html` with its plot inline.
//! Runs against the loopback ceiling and the in-process dial-in bridge, so
//! it needs no relay process.

use std::path::{Path, PathBuf};
use std::process::Command;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sluice-bench-progress-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A scenario of 1-meeting steps with 2 relayed streams each, briefly.
fn tiny_scenario(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        "name = \"tiny\"\nmeetings = 1\npublishers = 2\nsubscribers = 0\nseconds = 0.4\n\
         ramp_seconds = 0.1\n",
    )
    .expect("write scenario");
    path
}

fn bench(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-bench"))
        .args(args)
        .output()
        .expect("run sluice-bench");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "sluice-bench {args:?} failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

fn html(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("report.html")).expect("report.html beside summary.md")
}

#[test]
fn capacity_reports_every_step_as_it_goes() {
    let dir = temp("capacity");
    let scenario = tiny_scenario(&dir);
    let out = dir.join("out");
    let (stdout, stderr) = bench(&[
        "capacity",
        "--scenario",
        scenario.to_str().unwrap(),
        "--targets",
        "ceiling",
        "--max-streams",
        "6",
        "--out",
        out.to_str().unwrap(),
    ]);
    let lines: Vec<&str> = stderr.lines().collect();
    // 1, 2, 3 meetings fit under 6 streams, plus 2 bisections at most;
    // before any step ran, each is guessed at ramp + load + 2 s = 2.5 s.
    assert!(
        lines.contains(
            &"capacity ceiling: step 1 of at most 5: offering 2 relayed streams; about 12s left"
        ),
        "{stderr}"
    );
    let started: Vec<&&str> = lines.iter().filter(|l| l.contains(": offering ")).collect();
    assert_eq!(started.len(), 3, "{stderr}");
    assert!(
        started[1].starts_with(
            "capacity ceiling: step 2 of at most 5: offering 4 relayed streams; \
             last step pass at 2 relayed streams; about "
        ),
        "{stderr}"
    );
    let finished: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("relayed streams: pass (loss "))
        .collect();
    assert_eq!(finished.len(), 3, "{stderr}");
    assert!(
        finished[2].starts_with(
            "capacity ceiling: step 3 of at most 5: 6 relayed streams: pass (loss 0.000 %"
        ),
        "{stderr}"
    );
    assert!(
        lines.iter().any(
            |l| l.starts_with("capacity ceiling: done after 3 step(s) in ")
                && l.contains("above --max-streams 6")
        ),
        "{stderr}"
    );
    // Progress is stderr only; the report is stdout.
    assert!(!stdout.contains("step 1 of"), "{stdout}");
    assert!(stdout.contains("report.html"), "{stdout}");
    let page = html(&out);
    assert!(
        page.contains("<svg") && page.contains("ceiling p99"),
        "the plot is inline"
    );
    assert!(page.contains("<table>"), "the summary's tables are there");
    assert!(
        !page.contains("<script") && !page.contains("src="),
        "nothing is loaded"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn run_counts_targets_as_steps_and_quiet_says_nothing() {
    let dir = temp("run");
    let scenario = tiny_scenario(&dir);
    let out = dir.join("out");
    let args = [
        "run",
        "--scenario",
        scenario.to_str().unwrap(),
        "--targets",
        "ceiling",
        "--out",
        out.to_str().unwrap(),
    ];
    let (_, stderr) = bench(&args);
    assert!(
        stderr.contains("run: step 1 of 1: offering 2 relayed streams on ceiling; about "),
        "{stderr}"
    );
    assert!(
        stderr.contains("run: step 1 of 1: 2 relayed streams on ceiling: pass ("),
        "{stderr}"
    );
    assert!(html(&out).contains("<svg"));

    let mut quiet = vec!["--quiet"];
    quiet.extend_from_slice(&args);
    let (stdout, stderr) = bench(&quiet);
    assert_eq!(stderr, "", "--quiet writes nothing to stderr");
    assert!(
        stdout.contains("# sluice-bench run: tiny"),
        "the report still comes: {stdout}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn dialin_steps_talk_too() {
    let dir = temp("dialin");
    let (_, stderr) = bench(&[
        "dialin",
        "--targets",
        "sluice",
        "--calls",
        "2",
        "--seconds",
        "0.5",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(
        stderr.contains("dialin sluice: step 1 of 1: offering 2 calls for 0.5 s; about "),
        "{stderr}"
    );
    assert!(
        stderr.contains("dialin sluice: step 1 of 1: 2 calls for 0.5 s: pass ("),
        "{stderr}"
    );
    let page = html(&dir);
    assert!(page.contains("<polyline"), "the CPU plot is inline: {page}");
    std::fs::remove_dir_all(&dir).ok();
}
