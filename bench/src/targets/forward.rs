//! `forward`: plain forwarding, the baseline a relay's CPU per packet is
//! measured against. A separate process (`sluice-bench forward-relay`,
//! started by this target) runs sluice's own data plane (the same
//! io_uring or `recvmmsg`/`sendmmsg` workers, batches and socket set-up)
//! with a handler that copies each datagram to the other participants of
//! its sender's meeting: no SRTP, no header rewrite, no latching. Each
//! meeting's legs share one SRTP key, protected by the publishers and
//! checked by the receivers, so the load and its checks are the same as
//! for a relay; only the relay's own work differs. Its CPU, from
//! `/proc/PID`, is what moving the packets through the kernel and the
//! data plane costs.
//!
//! The parent sends the forwarding table over the child's stdin, one line
//! per participant (`SOURCE DEST DEST …`), then `sync`, which the child
//! answers once the table is in place; the child exits when stdin closes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ring::rand::{SecureRandom, SystemRandom};
use sluice::metrics::{MetricsHub, WorkerCounters};
use sluice::net::{DataPlane, DataPlaneOptions, IoMode, PacketHandler};
use sluice::relay::{MeetingMode, RoutingSnapshot, Transmits, empty_cell};
use sluice::srtp::{MasterKey, SrtpProfile};

use crate::target::{LegPlan, MeetingSpec, Path, Target, TargetError};

/// The forwarding table the child's handlers read: destinations by
/// source, and a version that moves on every change.
#[derive(Debug, Default)]
struct Table {
    version: AtomicU64,
    routes: Mutex<HashMap<SocketAddr, Vec<SocketAddr>>>,
}

/// A worker's handler: a private copy of the table, refreshed only when
/// its version moved (one relaxed load per datagram otherwise).
struct Plain {
    table: Arc<Table>,
    routes: HashMap<SocketAddr, Vec<SocketAddr>>,
    version: u64,
    counters: Arc<WorkerCounters>,
}

impl PacketHandler for Plain {
    fn handle_datagram(
        &mut self,
        _snapshot: &RoutingSnapshot,
        from: sluice::relay::Path,
        packet: &mut [u8],
        len: usize,
        out: &mut Transmits,
    ) {
        let version = self.table.version.load(Ordering::Acquire);
        if version != self.version {
            if let Ok(routes) = self.table.routes.lock() {
                self.routes.clone_from(&routes);
            }
            self.version = version;
        }
        self.counters.received(MeetingMode::E2ee, len);
        let Some(dests) = self.routes.get(&from.remote) else {
            return;
        };
        for &dest in dests {
            let slot = out.slot();
            slot[..len].copy_from_slice(&packet[..len]);
            out.commit(
                len,
                sluice::relay::Path::new(dest, from.local),
                MeetingMode::E2ee,
            );
        }
    }
}

/// The child's side: serves plain forwarding on 127.0.0.1 until stdin
/// closes. Prints `forward relay on ADDR (BACKEND, N workers)` first.
pub fn serve(workers: usize, io: &str) -> Result<(), String> {
    let io: IoMode = io.parse().map_err(|e| format!("{e}"))?;
    let table = Arc::new(Table::default());
    let metrics = MetricsHub::new("none");
    let opts = DataPlaneOptions {
        workers,
        io,
        pin_cores: false,
        ..DataPlaneOptions::new(SocketAddr::from(([127, 0, 0, 1], 0)))
    };
    let shared = Arc::clone(&table);
    let plane = DataPlane::start(&opts, empty_cell(), &metrics, move |_, counters| Plain {
        table: Arc::clone(&shared),
        routes: HashMap::new(),
        version: 0,
        counters,
    })
    .map_err(|e| e.to_string())?;
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "forward relay on {} ({}, {} workers)",
        plane.local_addr(),
        plane.io_backend().name(),
        plane.workers()
    )
    .and_then(|()| stdout.flush())
    .map_err(|e| e.to_string())?;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line == "sync" {
            writeln!(stdout, "synced")
                .and_then(|()| stdout.flush())
                .map_err(|e| e.to_string())?;
            continue;
        }
        let mut addrs = line.split_whitespace().map(str::parse::<SocketAddr>);
        let Some(Ok(source)) = addrs.next() else {
            return Err(format!("not a forwarding line: {line:?}"));
        };
        let dests = addrs
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{line:?}: {e}"))?;
        table
            .routes
            .lock()
            .map_err(|_| "the forwarding table was poisoned".to_owned())?
            .insert(source, dests);
        table.version.fetch_add(1, Ordering::Release);
    }
    plane.shutdown();
    Ok(())
}

/// The plain forwarding process, as a target.
#[derive(Debug)]
pub struct Forward {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
    banner: String,
    profile: SrtpProfile,
    random: SystemRandom,
}

fn start_error(reason: String) -> TargetError {
    TargetError::Start {
        target: "forward",
        reason,
    }
}

/// This program's binary (`sluice-bench`), also from a test binary
/// that links the library: next to it or one directory up.
fn bench_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("no path to this program: {e}"))?;
    if exe.file_name().is_some_and(|n| n == "sluice-bench") {
        return Ok(exe);
    }
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("sluice-bench"))
        .find(|p| p.is_file())
        .ok_or_else(|| "no sluice-bench binary next to this program; build it with `cargo build --release -p sluice-bench`".into())
}

impl Forward {
    /// Starts the forwarding process with `workers` data-plane workers
    /// (0: one per allowed core) on backend `io`, pinned to `cores`.
    pub fn start(
        profile: SrtpProfile,
        workers: usize,
        io: &str,
        cores: &[usize],
    ) -> Result<Self, TargetError> {
        let binary = bench_binary().map_err(start_error)?;
        let setpriv = std::path::Path::new("/usr/bin/setpriv");
        let mut command = if setpriv.is_file() {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(&binary);
            c
        } else {
            Command::new(&binary)
        };
        let workers = match (workers, cores.len()) {
            (0, 0) => 0,
            (0, n) => n,
            (n, _) => n,
        };
        let mut child = command
            .args([
                "forward-relay",
                "--workers",
                &workers.to_string(),
                "--io",
                io,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| start_error(format!("cannot run {}: {e}", binary.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(start_error("its stdin/stdout were not piped".into()));
        };
        let mut stdout = BufReader::new(stdout);
        let mut banner = String::new();
        let addr = stdout
            .read_line(&mut banner)
            .ok()
            .and_then(|_| banner.split("forward relay on ").nth(1))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(start_error(format!("no banner; it said {banner:?}")));
        };
        if !cores.is_empty() {
            crate::pin::pin_process(child.id(), cores).map_err(start_error)?;
        }
        Ok(Self {
            child,
            stdin,
            stdout,
            addr,
            banner: banner.trim().to_owned(),
            profile,
            random: SystemRandom::new(),
        })
    }
}

impl Target for Forward {
    fn name(&self) -> &'static str {
        "forward"
    }

    fn describe(&self) -> String {
        format!(
            "plain forwarding through sluice's data plane, no crypto in the relay ({}); {} end to end",
            self.banner, self.profile
        )
    }

    fn admit(
        &mut self,
        meeting: &MeetingSpec,
        participants: &[SocketAddr],
    ) -> Result<Vec<LegPlan>, TargetError> {
        let fail = |reason: String| TargetError::Admit {
            target: "forward",
            meeting: meeting.index,
            reason,
        };
        let mut material = vec![0u8; self.profile.key_material_len()];
        self.random
            .fill(&mut material)
            .map_err(|_| fail("the system random source failed".into()))?;
        let key = MasterKey::new(self.profile, &material).map_err(|e| fail(e.to_string()))?;
        let mut lines = String::new();
        for (i, me) in participants.iter().enumerate() {
            lines.push_str(&me.to_string());
            for (j, other) in participants.iter().enumerate() {
                if i != j {
                    lines.push(' ');
                    lines.push_str(&other.to_string());
                }
            }
            lines.push('\n');
        }
        lines.push_str("sync\n");
        let mut answer = String::new();
        self.stdin
            .write_all(lines.as_bytes())
            .and_then(|()| self.stdin.flush())
            .and_then(|()| self.stdout.read_line(&mut answer))
            .map_err(|e| fail(format!("the forwarding process: {e}")))?;
        if answer.trim() != "synced" {
            return Err(fail(format!("the forwarding process answered {answer:?}")));
        }
        let path = Path {
            relay: self.addr,
            key: Some(key),
        };
        Ok(participants
            .iter()
            .map(|_| LegPlan {
                sends: vec![path.clone()],
                receives: vec![path.clone()],
                rtcp_ssrc: None,
                behind_hop: false,
            })
            .collect())
    }

    fn pid(&self) -> Option<u32> {
        Some(self.child.id())
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
