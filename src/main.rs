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

use clap::{Args, Parser, Subcommand};
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
    /// io_uring, the AES-GCM backend that would be used, GPUs seen, the
    /// OpenCL devices and the GPU crossover calibration, and which video
    /// encoders open (and why the others do not).
    Hw {
        /// Calibrate the GPU crossover even on a CPU OpenCL driver (pocl),
        /// which `gpu = "auto"` never uses.
        #[arg(long)]
        calibrate: bool,
        /// A TOML config file whose `[transcode] encoders` sets the order.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Inspect and steer a running relay over its control API.
    Ctl(CtlArgs),
    /// Create a meeting on a running relay and print two join links for
    /// the meeting page: open each in a browser tab of its own.
    Demo {
        /// An end-to-end encrypted meeting: the links carry a fresh key.
        #[arg(long)]
        e2ee: bool,
        /// The control API's address.
        #[arg(long, env = "SLUICE_API", default_value = "http://127.0.0.1:7480")]
        api: String,
        /// A file holding the API token (else the SLUICE_API_TOKEN variable).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct CtlArgs {
    /// The control API's address.
    #[arg(
        long,
        env = "SLUICE_API",
        default_value = "http://127.0.0.1:7480",
        global = true
    )]
    api: String,
    /// A file holding the API token (else the SLUICE_API_TOKEN variable).
    #[arg(long, value_name = "FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// List meetings (every page).
    List {
        /// Only meetings of this mode.
        #[arg(long, value_parser = ["e2ee", "standard"])]
        mode: Option<String>,
    },
    /// Show a meeting and its roster, or one participant's latch,
    /// streams and counters.
    Show {
        /// The meeting id.
        meeting: String,
        /// A participant id.
        participant: Option<String>,
    },
    /// Lock a meeting: nobody else is admitted.
    Lock {
        /// The meeting id.
        meeting: String,
    },
    /// Unlock a meeting.
    Unlock {
        /// The meeting id.
        meeting: String,
    },
    /// Remove a participant; its media stops at once.
    Kick {
        /// The meeting id.
        meeting: String,
        /// The participant id.
        participant: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(config.as_ref()),
        Command::CheckConfig { file } => {
            load(Some(&file)).map(|_| println!("{}: ok", file.display()))
        }
        Command::Hw { calibrate, config } => load(config.as_ref()).map(|config| {
            print!(
                "{}",
                hw::report(calibrate, &config.transcode.encoder_order())
            );
        }),
        Command::Ctl(args) => ctl(&args).map(|out| print!("{out}")),
        Command::Demo {
            e2ee,
            api,
            token_file,
        } => demo(e2ee, &api, token_file.as_ref()).map(|out| print!("{out}")),
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

/// `sluice demo`: the meeting and its join links, as text.
fn demo(e2ee: bool, api: &str, token_file: Option<&PathBuf>) -> Result<String, String> {
    use sluice::ctl;
    let api = ctl::ApiClient::new(api, api_token(token_file)?).map_err(|e| e.to_string())?;
    let made = ctl::demo::create(&api, e2ee).map_err(|e| format!("demo: {e}"))?;
    Ok(ctl::demo::render(&made, &api))
}

/// The API token from `--token-file`, else `SLUICE_API_TOKEN`.
fn api_token(token_file: Option<&PathBuf>) -> Result<Option<String>, String> {
    Ok(match token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
            Some(text.trim().to_owned()).filter(|t| !t.is_empty())
        }
        None => std::env::var("SLUICE_API_TOKEN")
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
    })
}

/// Runs one `sluice ctl` command; the text to print.
fn ctl(args: &CtlArgs) -> Result<String, String> {
    use sluice::ctl;
    let token = api_token(args.token_file.as_ref())?;
    let api = ctl::ApiClient::new(&args.api, token).map_err(|e| e.to_string())?;
    let json = args.json;
    let result = match &args.command {
        CtlCommand::List { mode } => ctl::list(&api, mode.as_deref(), json),
        CtlCommand::Show {
            meeting,
            participant: None,
        } => ctl::show_meeting(&api, meeting, json),
        CtlCommand::Show {
            meeting,
            participant: Some(participant),
        } => ctl::show_participant(&api, meeting, participant, json),
        CtlCommand::Lock { meeting } => ctl::lock(&api, meeting, true, json),
        CtlCommand::Unlock { meeting } => ctl::lock(&api, meeting, false, json),
        CtlCommand::Kick {
            meeting,
            participant,
        } => ctl::kick(&api, meeting, participant, json),
    };
    result.map_err(|e| format!("ctl: {e}"))
}

fn run(path: Option<&PathBuf>) -> Result<(), String> {
    let config = load(path)?;
    let log_level = sluice::logging::init(&config.log).map_err(|e| e.to_string())?;

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
    // One line for the operator (and the journal): where it listens. A
    // log shipper reading JSON gets it as an event like any other line.
    match config.log.format {
        sluice::config::LogFormat::Text => eprintln!("{}", daemon.banner()),
        sluice::config::LogFormat::Json => tracing::info!("{}", daemon.banner()),
    }
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
                    if let Err(e) = sluice::logging::set_level(&log_level, &config.log) {
                        tracing::error!("the log level stays: {e}");
                    }
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
