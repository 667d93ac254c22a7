//! Running commands: each echoed before it runs, failures as sentences.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether children are told to print no colour (see [`plain_output`]).
static PLAIN: AtomicBool = AtomicBool::new(false);

/// From now on every command runs with `CARGO_TERM_COLOR=never`.
pub(crate) fn plain_output() {
    PLAIN.store(true, Ordering::Relaxed);
}

/// One line on stderr saying what xtask does now.
pub(crate) fn say(what: &str) {
    eprintln!("==> {what}");
}

fn describe(argv: &[&str]) -> String {
    argv.join(" ")
}

fn command(argv: &[&str]) -> Command {
    let mut command = Command::new(argv[0]);
    command.args(&argv[1..]);
    if PLAIN.load(Ordering::Relaxed) {
        command.env("CARGO_TERM_COLOR", "never");
    }
    command
}

/// Runs `argv` in the current directory, inheriting stdio.
pub(crate) fn run(argv: &[&str]) -> Result<(), String> {
    run_in(None, argv, &[])
}

/// [`run`] with extra environment variables.
pub(crate) fn run_env(argv: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    run_in(None, argv, env)
}

/// Runs `argv` in `dir` (the current directory when `None`) with `env`.
pub(crate) fn run_in(
    dir: Option<&Path>,
    argv: &[&str],
    env: &[(&str, &str)],
) -> Result<(), String> {
    let mut cmd = command(argv);
    cmd.stdin(Stdio::null());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    let shown = match dir {
        Some(dir) => format!("(cd {} && {})", dir.display(), describe(argv)),
        None => describe(argv),
    };
    eprintln!("    $ {shown}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

/// Runs `argv` and returns its stdout; an error (with stderr) if it fails.
pub(crate) fn output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether `program` is on PATH.
pub(crate) fn found(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// The workspace root (xtask lives one level below it).
pub(crate) fn root() -> &'static Path {
    // CARGO_MANIFEST_DIR is xtask/; its parent always exists.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
}

/// Where cargo puts build outputs.
pub(crate) fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), std::path::PathBuf::from)
}
