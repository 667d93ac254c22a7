//! The `sluice` command: the relay appliance's single binary.
//!
//! `sluice run` starts the relay (data plane + control API), tells systemd
//! when it is ready (Type=notify, with watchdog pings), and on SIGTERM or
//! SIGINT stops accepting API calls, drains the workers and exits 0. On
//! SIGHUP (`systemctl reload sluice`) it reads its config file again: a
//! file that fails `check-config` is refused with the same message and the
//! running config stays; otherwise what can change at run time does (see
//! `sluice::reload`) and the log says what changed and what needs a
//! restart. No signal but SIGTERM and SIGINT stops it.
//! Errors reach the operator as one sentence and a non-zero exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use sluice::config::Config;
use sluice::daemon::Daemon;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

mod hw;

/// sluice: a media relay for RTP/SRTP meetings, with E2EE pass-through.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay. Without --config, the embedded default config: control
    /// API on 127.0.0.1:7480, media on 127.0.0.1:40000, one worker per core.
    Run {
        /// A TOML config file (see systemd/sluice.toml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a config file: names the bad key, its line and the fix.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
    /// Report what this machine offers sluice: CPU crypto instructions,
    /// io_uring, the AES-GCM backend that would be used, GPUs seen.
    Hw,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(config.as_ref()),
        Command::CheckConfig { file } => {
            load(Some(&file)).map(|_| println!("{}: ok", file.display()))
        }
        Command::Hw => {
            print!("{}", hw::report());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sluice: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<&PathBuf>) -> Result<Config, String> {
    match path {
        None => Ok(Config::default_embedded()),
        Some(path) => Config::load(path).map_err(|e| e.to_string()),
    }
}

/// The log filter: `SLUICE_LOG` when set, else `[log] level`.
fn log_filter(config: &Config) -> EnvFilter {
    EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| {
        // check-config validated the level; "info" is only a fallback.
        EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| EnvFilter::new("info"))
    })
}

fn run(path: Option<&PathBuf>) -> Result<(), String> {
    let config = load(path)?;
    let (filter, log_level) = tracing_subscriber::reload::Layer::new(log_filter(&config));
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();

    // Block the signals we handle before any thread starts, so every
    // thread inherits the mask and they queue on our signalfd instead
    // (SIGHUP's default action would kill the process).
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGHUP);
    signals
        .thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;
    let signal_fd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("cannot open a signalfd: {e}"))?;

    let mut daemon = Daemon::start(&config).map_err(|e| e.to_string())?;
    // One plain line for the operator (and the journal): where it listens.
    eprintln!("{}", daemon.banner());
    notify(&[sd_notify::NotifyState::Ready]);

    let mut watchdog_usec = 0u64;
    let ping = if sd_notify::watchdog_enabled(false, &mut watchdog_usec) {
        Duration::from_micros(watchdog_usec / 2)
    } else {
        Duration::from_secs(3600)
    };
    loop {
        match wait_for_signal(&signal_fd, ping) {
            Some(Signal::SIGHUP) => {
                // systemd wants the reload's start time with RELOADING=1.
                match sd_notify::NotifyState::monotonic_usec_now() {
                    Ok(now) => notify(&[sd_notify::NotifyState::Reloading, now]),
                    Err(_) => notify(&[sd_notify::NotifyState::Reloading]),
                }
                reload(&mut daemon, path, |config| {
                    let _ = log_level.reload(log_filter(config));
                });
                notify(&[sd_notify::NotifyState::Ready]);
            }
            Some(signal) => {
                tracing::info!("{signal} received: draining and stopping");
                break;
            }
            None => notify(&[sd_notify::NotifyState::Watchdog]),
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    daemon.shutdown();
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: reads the config again and applies what can change now.
fn reload(daemon: &mut Daemon, path: Option<&PathBuf>, set_log: impl FnOnce(&Config)) {
    tracing::info!("SIGHUP received: reloading the config");
    let new = match load(path) {
        Ok(new) => new,
        Err(message) => {
            tracing::error!("reload refused, the running config stays: {message}");
            return;
        }
    };
    match daemon.reload(&new) {
        Ok(report) => {
            set_log(daemon.config());
            let applied = if report.applied.is_empty() {
                "nothing".to_owned()
            } else {
                report.applied.join(", ")
            };
            if report.restart.is_empty() {
                tracing::info!("config reloaded: changed {applied}");
            } else {
                tracing::warn!(
                    "config reloaded: changed {applied}; needs a restart to change: {}",
                    report.restart.join(", ")
                );
            }
        }
        Err(e) => tracing::error!("reload refused, the running config stays: {e}"),
    }
}

/// Waits up to `timeout` for a queued signal.
fn wait_for_signal(fd: &SignalFd, timeout: Duration) -> Option<Signal> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(millis)) {
        Ok(n) if n > 0 => match fd.read_signal() {
            Ok(Some(info)) => Signal::try_from(info.ssi_signo as i32).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// Tells systemd (when it started us with Type=notify) how we are doing.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
