//! The rtpengine child process: found, started in the foreground on
//! loopback, waited for until its ng port answers, killed and reaped on
//! drop.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::NAME;
use super::bencode::Value;
use super::ng::NgClient;
use super::ports::PortRange;
use crate::target::TargetError;

/// Environment variable naming another rtpengine binary.
pub(super) const BINARY_ENV: &str = "SLUICE_BENCH_RTPENGINE";

/// How long one ng request waits before it is sent again.
pub(super) const REQUEST_WAIT: Duration = Duration::from_secs(2);

/// How long rtpengine gets to answer its first `ping`.
const STARTUP: Duration = Duration::from_secs(10);

/// A running rtpengine.
#[derive(Debug)]
pub(super) struct Process {
    child: Child,
    ng_addr: SocketAddr,
    /// Held while rtpengine runs, so no other instance shares its ports.
    _ports: PortRange,
    version: String,
    command_line: String,
    log: PathBuf,
}

impl Process {
    /// Starts rtpengine with `slots` slots of media ports (see
    /// [`PortRange`]) and waits until it answers `ping`.
    pub(super) fn spawn(slots: u16) -> Result<Self, TargetError> {
        let binary = std::env::var_os(BINARY_ENV).unwrap_or_else(|| "rtpengine".into());
        let version = version(&binary)?;
        let ports = PortRange::reserve(slots)
            .map_err(|e| start_error(format!("no loopback port range: {e}")))?;
        let ng_addr = SocketAddr::from(([127, 0, 0, 1], ports.ng_port()));
        let (port_min, port_max) = ports.media();
        let log = std::env::temp_dir().join(format!(
            "sluice-bench-rtpengine-{}-{}.log",
            std::process::id(),
            ng_addr.port()
        ));
        let log_file = File::create(&log)
            .map_err(|e| start_error(format!("cannot create {}: {e}", log.display())))?;
        let args = [
            // Not /etc/rtpengine/rtpengine.conf: its kernel table, HTTP
            // and CLI ports and recording must not apply.
            "--config-file=none".to_owned(),
            "--table=-1".to_owned(),
            "--foreground".to_owned(),
            "--log-stderr".to_owned(),
            "--log-level=4".to_owned(),
            "--interface=127.0.0.1".to_owned(),
            format!("--listen-ng={ng_addr}"),
            format!("--port-min={port_min}"),
            format!("--port-max={port_max}"),
            // Meetings may be admitted well before their media starts;
            // the default (60 s) would end such calls early.
            "--timeout=3600".to_owned(),
        ];
        let command_line = format!("{} {}", binary.to_string_lossy(), args.join(" "));
        let child = Command::new(&binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| start_error(format!("cannot run {command_line}: {e}")))?;
        let mut process = Self {
            child,
            ng_addr,
            _ports: ports,
            version,
            command_line,
            log,
        };
        process.await_ping()?;
        Ok(process)
    }

    /// The ng control address.
    pub(super) fn ng_addr(&self) -> SocketAddr {
        self.ng_addr
    }

    /// The version rtpengine reports.
    pub(super) fn version(&self) -> &str {
        &self.version
    }

    /// The command line it runs with.
    pub(super) fn command_line(&self) -> &str {
        &self.command_line
    }

    /// Its process id.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn await_ping(&mut self) -> Result<(), TargetError> {
        let mut ng = NgClient::new(self.ng_addr, Duration::from_millis(100), 1)
            .map_err(|e| start_error(format!("no UDP socket for the ng protocol: {e}")))?;
        let ping = Value::dict([("command", Value::str("ping"))]);
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(start_error(format!(
                    "it exited with {status} ({}); its log: {}",
                    self.command_line,
                    self.log_tail()
                )));
            }
            match ng.request("ping", &ping) {
                Ok(_) => return Ok(()),
                Err(_) if Instant::now() < deadline => {}
                Err(e) => {
                    return Err(start_error(format!(
                        "its ng port {} did not answer ping within {STARTUP:?} ({e}); its log: {}",
                        self.ng_addr,
                        self.log_tail()
                    )));
                }
            }
        }
    }

    /// The last lines of rtpengine's stderr, for error messages.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let len = f.metadata().map_or(0, |m| m.len());
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(1000)));
            let _ = f.read_to_string(&mut text);
        }
        let text = text.trim();
        if text.is_empty() {
            "empty".to_owned()
        } else {
            text.replace('\n', " | ")
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGKILL: userspace mode holds no kernel or firewall state that a
        // clean shutdown would have to undo.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn start_error(reason: String) -> TargetError {
    TargetError::Start {
        target: NAME,
        reason,
    }
}

/// `rtpengine --version`, which also tells whether it is installed.
fn version(binary: &std::ffi::OsStr) -> Result<String, TargetError> {
    let out = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => start_error(format!(
                "{} is not installed: install the Debian package rtpengine-daemon \
                 (or set {BINARY_ENV} to its path)",
                binary.to_string_lossy()
            )),
            _ => start_error(format!("cannot run {}: {e}", binary.to_string_lossy())),
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(parse_version(&text)
        .unwrap_or("(unknown version)")
        .to_owned())
}

/// The version in `Version: 10.5.3.5-1+deb12u1`.
fn parse_version(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_line() {
        assert_eq!(
            parse_version("Version: 10.5.3.5-1+deb12u1\n"),
            Some("10.5.3.5-1+deb12u1")
        );
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn a_missing_binary_says_which_package_to_install() {
        let err = version(std::ffi::OsStr::new("/nonexistent/rtpengine")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("install the Debian package rtpengine-daemon"),
            "{text}"
        );
    }
}
