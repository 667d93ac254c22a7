//! `cargo xtask ci`: every gate, as one flat list ([`STEPS`]) run in order.
//!
//! To add a gate, add one line to [`STEPS`]: a cargo command, any command
//! (a script such as `.ci/some-check.sh` is `Cmd(&["bash", ".ci/some-check.sh"])`)
//! or a function here. A system package it needs goes in
//! `packages::APT`, a cargo tool in [`TOOLS`].

use std::time::Instant;

use crate::packages::{self, Stage};
use crate::{deb, sh};

/// What a step does.
#[derive(Debug)]
pub(crate) enum Action {
    /// A command line, run in the workspace root.
    Cmd(&'static [&'static str]),
    /// A command line, run in a folder of the workspace.
    In(&'static str, &'static [&'static str]),
    /// Rust code in this crate.
    Fn(fn() -> Result<(), String>),
}

/// One gate.
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) name: &'static str,
    pub(crate) what: &'static str,
    pub(crate) action: Action,
}

const fn step(name: &'static str, what: &'static str, action: Action) -> Step {
    Step { name, what, action }
}

use Action::{Cmd, Fn, In};

/// Every CI gate, in order.
pub(crate) const STEPS: &[Step] = &[
    step(
        "fmt",
        "formatting (rustfmt)",
        Cmd(&["cargo", "fmt", "--all", "--check"]),
    ),
    step(
        "fuzz-fmt",
        "formatting of fuzz/",
        In("fuzz", &["cargo", "fmt", "--check"]),
    ),
    step(
        "clippy",
        "clippy, warnings denied",
        Cmd(&[
            "cargo",
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    ),
    step("docs", "rustdoc, warnings denied", Fn(docs)),
    step(
        "opencl",
        "the OpenCL devices the GPU tests run on",
        Cmd(&["clinfo", "-l"]),
    ),
    step("tests", "the whole suite (cargo xtask test)", Fn(tests)),
    step(
        "schemathesis",
        "schemathesis over /v1/openapi.json (bounded examples and time)",
        Cmd(&["bash", ".ci/schemathesis.sh"]),
    ),
    step(
        "log-format",
        "log format tests",
        Cmd(&["cargo", "test", "--test", "logs"]),
    ),
    step(
        "ctl",
        "sluice ctl against a running daemon",
        Cmd(&["cargo", "test", "--test", "ctl"]),
    ),
    step(
        "metric-names",
        "every metric the dashboard and alerts use is exported",
        Cmd(&["cargo", "test", "--test", "contrib"]),
    ),
    step(
        "promtool",
        "Prometheus alert rules (promtool check rules)",
        Cmd(&[
            "promtool",
            "check",
            "rules",
            "contrib/prometheus/alerts.yml",
        ]),
    ),
    step(
        "systemd-unit",
        "the unit (systemd-analyze verify)",
        Fn(verify_unit),
    ),
    step(
        "benches",
        "benchmarks in smoke form (each runs once)",
        Cmd(&["cargo", "test", "--workspace", "--benches"]),
    ),
    step(
        "bench-progress",
        "sluice-bench shows its progress on stderr",
        Cmd(&[
            "cargo",
            "test",
            "--package",
            "sluice-bench",
            "--test",
            "progress",
        ]),
    ),
    step(
        "deb",
        "Debian package: build, lintian, install into a root",
        Fn(deb_all),
    ),
    step(
        "fuzz",
        "fuzz targets: build, then a short bounded run each",
        Fn(fuzz),
    ),
];

/// Cargo subcommands the steps use: (binary, crate).
const TOOLS: &[(&str, &str)] = &[("cargo-fuzz", "cargo-fuzz"), ("cargo-deb", "cargo-deb")];

/// Runs the steps `args` select (all by default).
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut only: Option<Vec<String>> = None;
    let mut skip: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let list = |v: Option<&String>| -> Result<Vec<String>, String> {
            let v = v.ok_or(format!("{arg} needs a comma-separated list of steps"))?;
            Ok(v.split(',').map(str::to_owned).collect())
        };
        match arg.as_str() {
            "--list" => {
                for s in STEPS {
                    println!("{:<15} {}", s.name, s.what);
                }
                return Ok(());
            }
            "--only" => only = Some(list(it.next())?),
            "--skip" => skip = list(it.next())?,
            other => {
                return Err(format!(
                    "ci: unknown option {other:?}; see cargo xtask --help"
                ));
            }
        }
    }
    for name in only.iter().flatten().chain(&skip) {
        if !STEPS.iter().any(|s| s.name == name) {
            return Err(format!(
                "ci: there is no step {name:?}; cargo xtask ci --list names them"
            ));
        }
    }
    let chosen: Vec<&Step> = STEPS
        .iter()
        .filter(|s| only.as_ref().is_none_or(|o| o.iter().any(|n| n == s.name)))
        .filter(|s| !skip.iter().any(|n| n == s.name))
        .collect();

    // CI logs are files: no colour from any cargo run below.
    sh::plain_output();
    sh::say("system packages and cargo tools");
    packages::ensure(Stage::Ci)?;
    for (binary, krate) in TOOLS {
        packages::ensure_cargo_tool(binary, krate)?;
    }
    let started = Instant::now();
    for (i, s) in chosen.iter().enumerate() {
        sh::say(&format!(
            "[{}/{}] {}: {}",
            i + 1,
            chosen.len(),
            s.name,
            s.what
        ));
        let t = Instant::now();
        let result = match &s.action {
            Cmd(argv) => sh::run(argv),
            In(dir, argv) => sh::run_in(Some(&sh::root().join(dir)), argv, &[]),
            Fn(f) => f(),
        };
        result.map_err(|e| format!("CI step {} failed: {e}", s.name))?;
        eprintln!("    {} passed in {:.0?}", s.name, t.elapsed());
    }
    sh::say(&format!(
        "CI passed ({} steps in {:.0?})",
        chosen.len(),
        started.elapsed()
    ));
    Ok(())
}

fn docs() -> Result<(), String> {
    sh::run_env(
        &["cargo", "doc", "--workspace", "--no-deps", "--quiet"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )
}

fn tests() -> Result<(), String> {
    crate::test(&[])
}

/// The shipped unit, verified against the binary just built (its
/// ExecStart must exist).
fn verify_unit() -> Result<(), String> {
    let binary = sh::target_dir().join("debug/sluice");
    if !binary.is_file() {
        sh::run(&["cargo", "build", "--package", "sluice", "--bin", "sluice"])?;
    }
    let unit = std::fs::read_to_string(sh::root().join("systemd/sluice.service"))
        .map_err(|e| format!("systemd/sluice.service: {e}"))?;
    let dir = sh::target_dir().join("unit-verify");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("sluice.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/sluice", &binary.to_string_lossy()),
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    sh::run(&[
        "systemd-analyze",
        "verify",
        "--man=no",
        &path.to_string_lossy(),
    ])
}

fn deb_all() -> Result<(), String> {
    let deb = deb::build()?;
    deb::lint(&deb)?;
    deb::install_check(&deb)
}

/// cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable
/// toolchain accept them. Each target runs from its committed seed corpus
/// for FUZZ_SECONDS (20 by default).
fn fuzz() -> Result<(), String> {
    let dir = sh::root().join("fuzz");
    let bootstrap = [("RUSTC_BOOTSTRAP", "1")];
    sh::run_in(Some(&dir), &["cargo", "fuzz", "build", "--dev"], &bootstrap)?;
    let seconds = std::env::var("FUZZ_SECONDS").unwrap_or_else(|_| "20".to_owned());
    let max_time = format!("-max_total_time={seconds}");
    let listed = std::process::Command::new("cargo")
        .args(["fuzz", "list"])
        .current_dir(&dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .output()
        .map_err(|e| format!("cargo fuzz list: {e}"))?;
    let targets = String::from_utf8_lossy(&listed.stdout).into_owned();
    if !listed.status.success() || targets.trim().is_empty() {
        return Err("cargo fuzz list named no target".to_owned());
    }
    for target in targets.split_whitespace() {
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        sh::run_in(
            Some(&dir),
            &[
                "cargo",
                "fuzz",
                "run",
                "--dev",
                target,
                "--",
                &max_time,
                "-rss_limit_mb=2048",
            ],
            &bootstrap,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_have_unique_names_and_cover_every_gate() {
        let mut names: Vec<&str> = STEPS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), STEPS.len());
        for gate in [
            "fmt",
            "fuzz-fmt",
            "clippy",
            "docs",
            "tests",
            "systemd-unit",
            "benches",
            "fuzz",
            "deb",
            "promtool",
            "metric-names",
            "ctl",
            "bench-progress",
            "log-format",
        ] {
            assert!(names.contains(&gate), "no {gate} step");
        }
    }
}
