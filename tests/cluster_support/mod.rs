//! Cluster test rig: a private `redis-server` on a free loopback port
//! (`--save '' --appendonly no`, nothing on disk) and `sluice run` child
//! processes joined to it, each on its own ports. Everything is killed
//! on drop, so a failed test leaves no process behind.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// A free loopback TCP port (bound and released; good enough on a test box).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A private redis-server.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts on `port` (a restart reuses the old one).
    pub fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install redis-server)");
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One command in RESP; the first reply line (`None` when unreachable).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        Some(line.trim_end().to_owned())
    }

    /// Kills it (SIGKILL): everything it held is gone.
    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `sluice run` process in the cluster.
pub struct Node {
    child: Child,
    pub id: String,
    pub api: SocketAddr,
    pub media: SocketAddr,
    /// The SIP port, when the node runs dial-in.
    pub sip: Option<SocketAddr>,
    config: PathBuf,
}

impl Node {
    /// Starts node `id` on fresh ports, joined to `redis_url`, with extra
    /// TOML `policy` lines (may be empty), and waits for its banner.
    pub fn start(redis_url: &str, id: &str, policy: &str) -> Self {
        Self::start_with(redis_url, id, policy, false)
    }

    /// [`Node::start`], with SIP dial-in on a free port when `sip`.
    pub fn start_with(redis_url: &str, id: &str, policy: &str, sip: bool) -> Self {
        Self::start_beating(redis_url, id, policy, sip, (200, 2))
    }

    /// [`Node::start_with`], with its heartbeat period (ms) and TTL (s).
    pub fn start_beating(
        redis_url: &str,
        id: &str,
        policy: &str,
        sip: bool,
        (heartbeat_ms, ttl_secs): (u64, u64),
    ) -> Self {
        let sip_section = if sip {
            "[sip]\nlisten = \"127.0.0.1:0\"\nmedia_threads = 1\n"
        } else {
            "[sip]\nenabled = false\n"
        };
        let dir = std::env::temp_dir().join(format!("sluice-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // Tests run in parallel: the Redis URL keeps their files apart.
        let tag: String = redis_url.chars().filter(char::is_ascii_digit).collect();
        let config = dir.join(format!("{tag}-{id}.toml"));
        let text = format!(
            "[control]\nlisten = \"127.0.0.1:0\"\n\n[media]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\
             pin_cores = false\n\n{sip_section}\n[policy]\n{policy}\n\n[cluster]\n\
             redis = \"{redis_url}\"\nnode_id = \"{id}\"\nheartbeat_ms = {heartbeat_ms}\nttl_secs = {ttl_secs}\n"
        );
        std::fs::write(&config, text).expect("write config");
        let mut child = Command::new(SLUICE)
            .args(["run", "--config"])
            .arg(&config)
            .env("SLUICE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice");
        let stderr = child.stderr.take().expect("stderr piped");
        let mut lines = BufReader::new(stderr).lines();
        let banner = lines
            .by_ref()
            .take(50)
            .map_while(Result::ok)
            .find(|line| line.contains("control API on"))
            .unwrap_or_else(|| panic!("node {id} printed no banner"));
        // Keep draining, so the pipe never fills and blocks the node.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        let after = |marker: &str| -> SocketAddr {
            let rest = &banner[banner.find(marker).expect("banner field") + marker.len()..];
            let end = rest.find([' ', ',']).unwrap_or(rest.len());
            rest[..end].parse().expect("an address in the banner")
        };
        Self {
            child,
            id: id.to_owned(),
            api: after("control API on http://"),
            media: after("media on "),
            sip: sip.then(|| after("SIP dial-in on udp ")),
            config,
        }
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"))
    }

    /// SIGTERM, then waits (up to 10 s) for a clean exit.
    pub fn terminate(mut self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "node {} exited with {status}", self.id);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} ignored SIGTERM",
                self.id
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the node dies without a word.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Polls `probe` every 50 ms until it returns `Some`, or panics after
/// `within` naming `what`.
pub fn eventually<T>(within: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
