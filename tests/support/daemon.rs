//! The `sluice` binary as a child process on free loopback ports, its
//! stderr captured, for tests of what an operator sees (ctl, logs).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// A config with every port chosen by the kernel, on 127.0.0.1.
pub fn loopback_config(extra: &str) -> String {
    format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n[media]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n\
         pin_cores = false\n[sip]\nlisten = \"127.0.0.1:0\"\nmedia_threads = 1\n{extra}"
    )
}

/// A running daemon; killed on drop if the test did not stop it.
pub struct RunningDaemon {
    child: Child,
    pub api: SocketAddr,
    pub media: SocketAddr,
    /// The SIP dial-in UDP address, when `[sip]` is on.
    pub sip: Option<SocketAddr>,
    pub dir: std::path::PathBuf,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl RunningDaemon {
    /// Starts `sluice run --config <config>` with `env`, and waits (10 s at
    /// most) for its banner.
    pub fn start(name: &str, config: &str, env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("sluice.toml");
        std::fs::write(&path, config).expect("write config");
        let mut command = Command::new(SLUICE);
        command
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env_remove("SLUICE_API_TOKEN")
            .env_remove("SLUICE_LOG")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn sluice");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut daemon = Self {
            child,
            api: "0.0.0.0:0".parse().unwrap(),
            media: "0.0.0.0:0".parse().unwrap(),
            sip: None,
            dir,
            log,
            reader: Some(reader),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = daemon.log();
            if let Some(banner) = text.lines().find(|l| l.contains("control API on http://")) {
                let after = |marker: &str| -> SocketAddr {
                    let rest = &banner[banner.find(marker).expect(marker) + marker.len()..];
                    // Up to what cannot be in an address: the banner is
                    // text or a JSON string (then a quote ends it).
                    let end = rest
                        .find(|c: char| {
                            !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
                        })
                        .unwrap_or(rest.len());
                    rest[..end].parse().expect("an address in the banner")
                };
                daemon.api = after("control API on http://");
                daemon.media = after("media on ");
                daemon.sip = banner
                    .contains("SIP dial-in on udp ")
                    .then(|| after("SIP dial-in on udp "));
                return daemon;
            }
            if let Some(status) = daemon.child.try_wait().expect("wait") {
                panic!("sluice exited with {status} before its banner:\n{text}");
            }
            assert!(Instant::now() < deadline, "no banner within 10 s:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything written to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, then waits (10 s at most); the exit status and the whole log.
    pub fn stop(mut self) -> (ExitStatus, String) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits")),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("send SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "sluice did not stop within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stderr reader");
        }
        (status, self.log())
    }
}

impl Drop for RunningDaemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
