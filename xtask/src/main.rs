//! `cargo xtask`: everything sluice needs, from a machine with only rustup
//! and cargo (the `.cargo/config.toml` alias runs this crate).
//!
//! - `cargo xtask run [-- ARGS]`: installs the build's system packages when
//!   missing, then builds and runs the daemon (embedded default config).
//! - `cargo xtask test [ARGS]`: the same for the test peers, then the whole
//!   suite (`cargo test --workspace ARGS`).
//! - `cargo xtask ci [--list] [--only A,B] [--skip A,B]`: every CI gate, in
//!   order ([`ci::STEPS`]); `.ci/run` is this.
//! - `cargo xtask deb`: the Debian package, linted and install-checked.
//! - `cargo xtask packages`: the system packages, and who needs each.
//!
//! Plain std: no dependency, so it compiles before anything is installed.

mod ci;
mod deb;
mod packages;
mod sh;

use std::process::ExitCode;

use packages::Stage;

const USAGE: &str = "usage: cargo xtask <command>

  run [-- ARGS]    install the build's system packages if missing, then build
                   and run the relay with its embedded default config
                   (ARGS go to `sluice run`, e.g. -- --config FILE)
  test [ARGS]      install the test peers too, then cargo test --workspace ARGS
  ci [--list] [--only STEP,..] [--skip STEP,..]
                   every CI gate in order (what .ci/run runs)
  deb              build target/debian/sluice_<version>-1_amd64.deb, lint it
                   and check an install into a throwaway root
  packages         list the system packages and what needs each";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = std::env::set_current_dir(sh::root()) {
        eprintln!("xtask: cannot enter the workspace root: {e}");
        return ExitCode::FAILURE;
    }
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("ci") => ci::run(&args[1..]),
        Some("deb") => deb::build().and_then(|deb| {
            deb::lint(&deb)?;
            deb::install_check(&deb)
        }),
        Some("packages") => {
            for p in packages::APT {
                println!("{:<18} {:<6} {}", p.name, format!("{:?}", p.stage), p.why);
            }
            Ok(())
        }
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
        None => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask run`.
fn run(args: &[String]) -> Result<(), String> {
    packages::ensure(Stage::Build)?;
    sh::say(
        "building and running sluice with the embedded default config (API on \
         127.0.0.1:7480; Ctrl-C stops it)",
    );
    let rest = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        _ => args,
    };
    let mut argv = vec![
        "cargo",
        "run",
        "--release",
        "--package",
        "sluice",
        "--bin",
        "sluice",
        "--",
        "run",
    ];
    argv.extend(rest.iter().map(String::as_str));
    sh::run(&argv)
}

/// `cargo xtask test`: also the `tests` step of `ci`.
fn test(args: &[String]) -> Result<(), String> {
    packages::ensure(Stage::Test)?;
    browser_driver()?;
    sh::say("running the whole test suite (cargo test --workspace --no-fail-fast)");
    // --no-fail-fast: one failing test binary must not hide the others'.
    let mut argv = vec!["cargo", "test", "--workspace", "--no-fail-fast"];
    argv.extend(args.iter().map(String::as_str));
    sh::run(&argv)
}

/// The browser tests' driver: playwright-core from npm, pinned by
/// `tests/browser/package-lock.json`, driving the system's
/// `/usr/bin/chromium` (nothing is downloaded but the npm package).
fn browser_driver() -> Result<(), String> {
    let dir = std::path::Path::new("tests/browser");
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return Ok(());
    }
    if !sh::found("npm") {
        return Err(
            "the browser tests need npm to install playwright-core: install \
                    Node.js with npm (NodeSource's nodejs package, or Debian's nodejs and npm), \
                    then run the command again"
                .to_owned(),
        );
    }
    sh::say("installing the browser tests' driver (npm ci in tests/browser)");
    sh::run(&[
        "npm",
        "ci",
        "--prefix",
        "tests/browser",
        "--no-audit",
        "--no-fund",
    ])
}
