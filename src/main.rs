//! The `sluice` command: the relay appliance's single binary.
//!
//! `sluice run` starts the relay (data plane + control API), tells systemd
//! when it is ready (Type=notify, with watchdog pings), and on SIGTERM or
//! SIGINT stops accepting API calls, drains the workers and exits 0.
//! Errors reach the operator as one sentence and a non-zero exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use sluice::config::Config;
use sluice::daemon::Daemon;

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
    /// io_uring, the AES-GCM backend that would be used, GPUs seen, and
    /// which video encoders open (and why the others do not).
    Hw {
        /// A TOML config file whose `[transcode] encoders` sets the order.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(config.as_ref()),
        Command::CheckConfig { file } => {
            load(Some(&file)).map(|_| println!("{}: ok", file.display()))
        }
        Command::Hw { config } => load(config.as_ref()).map(|config| {
            print!("{}", hw::report(&config.transcode.encoder_order()));
        }),
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

fn run(config: Option<&PathBuf>) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = load(config)?;

    // Block the stop signals before any thread starts, so every thread
    // inherits the mask and the signals queue on our signalfd instead.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .map_err(|e| format!("cannot block signals: {e}"))?;
    let signal_fd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("cannot open a signalfd: {e}"))?;

    let daemon = Daemon::start(&config).map_err(|e| e.to_string())?;
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

/// Waits up to `timeout` for a queued stop signal.
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
