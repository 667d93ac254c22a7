//! sluice as a target: the daemon binary started on 127.0.0.1 with free
//! ports and a generated config, driven through its control API, stopped
//! (SIGTERM, then SIGKILL) when the target is dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sluice::srtp::{MasterKey, SrtpProfile};

use crate::http;
use crate::target::{LegPlan, MeetingSpec, Path, StreamKind, Target, TargetError};

/// How to start sluice.
#[derive(Debug, Clone)]
pub struct SluiceOptions {
    /// The `sluice` binary.
    pub binary: PathBuf,
    /// Cores its threads are pinned to (empty: not pinned).
    pub relay_cores: Vec<usize>,
    /// Packet workers (0: one per relay core, or per core).
    pub workers: usize,
    /// Packet I/O backend: `auto`, `io_uring` or `recvmmsg`.
    pub io: String,
    /// Cluster mode: (Redis URL, node id) to join; `None` alone.
    pub cluster: Option<(String, String)>,
}

/// A running sluice daemon.
#[derive(Debug)]
pub struct Sluice {
    child: Child,
    api: SocketAddr,
    media: SocketAddr,
    banner: String,
    dir: PathBuf,
}

fn start_error(reason: String) -> TargetError {
    TargetError::Start {
        target: "sluice",
        reason,
    }
}

/// Finds the sluice binary: `SLUICE_BIN`, else next to this program (or
/// its parent, for test binaries in `deps/`), else the workspace's
/// `target/{release,debug}`.
pub fn find_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("SLUICE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            candidates.push(dir.join("sluice"));
        }
    }
    let workspace = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    for profile in ["release", "debug"] {
        candidates.push(target.join(profile).join("sluice"));
    }
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
                "no sluice binary found (looked at {}); build it with `cargo build --release -p sluice` or pass --sluice PATH",
                candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            )
        })
}

/// The config the benchmark runs sluice with: loopback, free ports, no
/// participant limits that a benchmark would hit, every E2EE owner allowed.
fn config(workers: usize, io: &str, cluster: Option<&(String, String)>) -> String {
    let cluster = cluster.map_or_else(String::new, |(redis, node)| {
        format!("\n[cluster]\nredis = \"{redis}\"\nnode_id = \"{node}\"\nheartbeat_ms = 500\nttl_secs = 5\n")
    });
    format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n\n[media]\nlisten = \"127.0.0.1:0\"\nworkers = {workers}\nio = \"{io}\"\npin_cores = false\n\n\
         [policy]\ne2ee = \"all\"\nmax_participants_per_meeting = 100000\nmax_participants_per_node = 1000000\nmax_meetings = 1000000\n\n\
         [sip]\nenabled = false\n{cluster}"
    )
}

/// Reads `control API on http://ADDR, media on ADDR` out of the banner.
fn parse_banner(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let api = line
        .split("control API on http://")
        .nth(1)?
        .split([',', ' '])
        .next()?;
    let media = line.split("media on ").nth(1)?.split([',', ' ']).next()?;
    Some((api.parse().ok()?, media.parse().ok()?))
}

impl Sluice {
    /// Starts the daemon and waits (10 s at most) for its banner.
    pub fn start(options: &SluiceOptions) -> Result<Self, TargetError> {
        Self::start_with(options, "")
    }

    /// [`Self::start`] with `extra` appended to the generated config (whole
    /// sections, e.g. `[transcode]`).
    pub fn start_with(options: &SluiceOptions, extra: &str) -> Result<Self, TargetError> {
        let dir =
            std::env::temp_dir().join(format!("sluice-bench-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| start_error(format!("cannot create {}: {e}", dir.display())))?;
        let config_path = dir.join("sluice.toml");
        let workers = match (options.workers, options.relay_cores.len()) {
            (0, 0) => 0,
            (0, cores) => cores,
            (n, _) => n,
        };
        std::fs::write(
            &config_path,
            config(workers, &options.io, options.cluster.as_ref()) + extra,
        )
        .map_err(|e| start_error(format!("cannot write {}: {e}", config_path.display())))?;
        // Under setpriv (util-linux), the kernel kills the relay if this
        // thread dies first (Ctrl-C, a panic), so no run leaves a stray
        // relay behind. setpriv execs the relay: the PID is the relay's.
        let setpriv = FsPath::new("/usr/bin/setpriv");
        let mut command = if setpriv.is_file() {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(&options.binary);
            c
        } else {
            Command::new(&options.binary)
        };
        let mut child = command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env("SLUICE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| start_error(format!("cannot run {}: {e}", options.binary.display())))?;
        // A thread keeps reading stderr for the daemon's whole life, so a
        // chatty relay never blocks on a full pipe; it hands over the banner.
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            return Err(start_error("its stderr was not piped".into()));
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut told = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !told {
                    if let Some(addrs) = parse_banner(&line) {
                        told = true;
                        let _ = tx.send(Ok((addrs, line)));
                    } else {
                        let _ = tx.send(Err(line));
                    }
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut said = Vec::new();
        let (api, media, banner) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(((api, media), line))) => break (api, media, line),
                Ok(Err(line)) => said.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(start_error(format!(
                        "no banner within 10 s; it said: {}",
                        if said.is_empty() {
                            "nothing".into()
                        } else {
                            said.join(" | ")
                        }
                    )));
                }
            }
        };
        let target = Self {
            child,
            api,
            media,
            banner,
            dir,
        };
        if !options.relay_cores.is_empty() {
            crate::pin::pin_process(target.child.id(), &options.relay_cores)
                .map_err(start_error)?;
        }
        Ok(target)
    }

    fn post(&self, meeting: usize, path: &str, body: &Value) -> Result<Value, TargetError> {
        let fail = |reason: String| TargetError::Admit {
            target: "sluice",
            meeting,
            reason,
        };
        let response = http::request(self.api, "POST", path, Some(body)).map_err(fail)?;
        if response.status != 201 {
            return Err(fail(format!(
                "{path} answered {}: {}",
                response.status, response.text
            )));
        }
        Ok(response.json())
    }

    /// The control API's address.
    pub fn api(&self) -> SocketAddr {
        self.api
    }

    /// The media address participants send to.
    pub fn media(&self) -> SocketAddr {
        self.media
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn key(media: &Value, field: &str, profile: SrtpProfile) -> Option<MasterKey> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(media[field].as_str()?)
        .ok()?;
    MasterKey::new(profile, &bytes).ok()
}

impl Target for Sluice {
    fn name(&self) -> &'static str {
        "sluice"
    }

    fn describe(&self) -> String {
        self.banner.trim().to_owned()
    }

    fn admit(
        &mut self,
        meeting: &MeetingSpec,
        participants: &[SocketAddr],
    ) -> Result<Vec<LegPlan>, TargetError> {
        let index = meeting.index;
        let id = format!("bench-{index}");
        let mode = if meeting.e2ee { "e2ee" } else { "standard" };
        self.post(
            index,
            "/v1/meetings",
            &json!({"id": id, "mode": mode, "owner": {"account": "sluice-bench", "verified": true}}),
        )?;
        let mut plans = Vec::with_capacity(participants.len());
        for who in 0..participants.len() {
            let body = self.post(
                index,
                &format!("/v1/meetings/{id}/participants"),
                &json!({"name": format!("p{who}"), "srtp_profile": meeting.profile.name()}),
            )?;
            let media = &body["media"];
            let bad = |what: &str| TargetError::Admit {
                target: "sluice",
                meeting: index,
                reason: format!("the participant answer has no usable {what}: {body}"),
            };
            let pid = body["id"].as_str().ok_or_else(|| bad("id"))?.to_owned();
            let relay: SocketAddr = media["address"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| bad("media.address"))?;
            let send = key(media, "client_to_relay", meeting.profile)
                .ok_or_else(|| bad("client_to_relay key"))?;
            let receive = key(media, "relay_to_client", meeting.profile)
                .ok_or_else(|| bad("relay_to_client key"))?;
            // The SSRC a receive-only participant must report under: its
            // first SRTCP packet latches it with one lookup.
            let rtcp_ssrc = media["rtcp_ssrc"]
                .as_u64()
                .and_then(|s| u32::try_from(s).ok())
                .ok_or_else(|| bad("media.rtcp_ssrc"))?;
            for stream in meeting.publishers.get(who).into_iter().flatten() {
                let (kind, codec) = match stream.kind {
                    StreamKind::Audio => ("audio", "opus"),
                    StreamKind::Video => ("video", "vp8"),
                };
                self.post(
                    index,
                    &format!("/v1/meetings/{id}/participants/{pid}/streams"),
                    &json!({"ssrc": stream.ssrc, "kind": kind, "codec": codec, "payload_type": stream.payload_type}),
                )?;
            }
            plans.push(LegPlan {
                rtcp_ssrc: Some(rtcp_ssrc),
                behind_hop: false,
                sends: vec![Path {
                    relay,
                    key: Some(send),
                }],
                receives: vec![Path {
                    relay,
                    key: Some(receive),
                }],
            });
        }
        Ok(plans)
    }

    fn pid(&self) -> Option<u32> {
        Some(self.child.id())
    }

    fn latched(&mut self) -> Option<usize> {
        let response = http::request(self.api, "GET", "/metrics", None).ok()?;
        Some(http::metric(&response.text, "sluice_latches_total") as usize)
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_addresses() {
        let line = "sluice 0.1.0: control API on http://127.0.0.1:39411, media on 127.0.0.1:51000 (io_uring, 2 workers, crypto ring)";
        let (api, media) = parse_banner(line).expect("parses");
        assert_eq!(api, "127.0.0.1:39411".parse().expect("addr"));
        assert_eq!(media, "127.0.0.1:51000".parse().expect("addr"));
        assert_eq!(parse_banner("warning: small socket buffers"), None);
    }

    #[test]
    fn generated_config_is_one_sluice_accepts() {
        for io in ["auto", "io_uring", "recvmmsg"] {
            let text = config(2, io, None);
            sluice::config::Config::parse(&text, "bench.toml")
                .expect("sluice accepts the bench config");
        }
    }
}
