//! A local sluice cluster as one target (`--nodes N`): a private
//! `redis-server` on a free loopback port (`--save '' --appendonly no`,
//! nothing on disk) and N sluice daemons joined to it, node ids `n0`,
//! `n1`, ... Every meeting's publishers are pinned to `n0` and its
//! receive-only participants spread evenly over the nodes (`node` hint),
//! so the meeting is cascaded from `n0` to every other node; a receiver
//! on another node than `n0` is marked `behind_hop`, so its latency is
//! tallied apart. Everything is stopped when the target is dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::sluice::{Sluice, SluiceOptions, key};
use crate::http;
use crate::target::{LegPlan, MeetingSpec, Path, StreamKind, Target, TargetError};

fn start_error(reason: String) -> TargetError {
    TargetError::Start {
        target: "cluster",
        reason,
    }
}

/// A private redis-server, killed on drop.
#[derive(Debug)]
pub struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    /// Starts one on a free loopback port and waits (10 s) for PING.
    pub fn start() -> Result<Self, TargetError> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| start_error(format!("no free loopback port: {e}")))?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                start_error(format!(
                    "cannot run redis-server ({e}); install it with `apt-get install redis-server`"
                ))
            })?;
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis.answers() {
            if Instant::now() > deadline {
                return Err(start_error(
                    "redis-server did not answer PING within 10 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("+PONG")
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// N sluice nodes on one private Redis.
#[derive(Debug)]
pub struct SluiceCluster {
    // Dropped first: the nodes deregister while Redis still runs.
    nodes: Vec<Sluice>,
    _redis: PrivateRedis,
}

/// The node id of node `i`.
pub fn node_id(i: usize) -> String {
    format!("n{i}")
}

impl SluiceCluster {
    /// Starts Redis and `nodes` daemons (each with `options`' binary, I/O
    /// and workers), and waits (10 s) until every node lists all.
    pub fn start(options: &SluiceOptions, nodes: usize) -> Result<Self, TargetError> {
        if nodes < 2 {
            return Err(start_error(format!(
                "a cluster needs at least 2 nodes, not {nodes}; pass --nodes 2 or more"
            )));
        }
        let redis = PrivateRedis::start()?;
        let mut started = Vec::with_capacity(nodes);
        for i in 0..nodes {
            let opts = SluiceOptions {
                cluster: Some((redis.url(), node_id(i))),
                ..options.clone()
            };
            started.push(Sluice::start(&opts)?);
        }
        let cluster = Self {
            nodes: started,
            _redis: redis,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while cluster.live_nodes() != Some(nodes) {
            if Instant::now() > deadline {
                return Err(start_error(format!(
                    "the {nodes} nodes did not all register in Redis within 10 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(cluster)
    }

    fn live_nodes(&self) -> Option<usize> {
        let response = http::request(self.nodes[0].api(), "GET", "/v1/cluster/nodes", None).ok()?;
        (response.status == 200).then(|| response.json()["nodes"].as_array().map_or(0, Vec::len))
    }

    /// Every node's process id, in node order.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(Target::pid).collect()
    }

    /// Every node's control API, in node order.
    pub fn apis(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(Sluice::api).collect()
    }

    fn post(&self, meeting: usize, path: &str, body: &Value) -> Result<Value, TargetError> {
        let fail = |reason: String| TargetError::Admit {
            target: "cluster",
            meeting,
            reason,
        };
        let response =
            http::request(self.nodes[0].api(), "POST", path, Some(body)).map_err(fail)?;
        if response.status != 201 {
            return Err(fail(format!(
                "{path} answered {}: {}",
                response.status, response.text
            )));
        }
        Ok(response.json())
    }
}

impl Target for SluiceCluster {
    fn name(&self) -> &'static str {
        "cluster"
    }

    fn describe(&self) -> String {
        format!(
            "{} sluice nodes on one private Redis, cascaded relay to relay; node n0: {}",
            self.nodes.len(),
            self.nodes[0].describe()
        )
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
        let publishers = meeting.publishers.len();
        let mut plans = Vec::with_capacity(participants.len());
        for who in 0..participants.len() {
            // Publishers on n0; viewers evenly over every node.
            let node = match who.checked_sub(publishers) {
                None => 0,
                Some(viewer) => viewer % self.nodes.len(),
            };
            let body = self.post(
                index,
                &format!("/v1/meetings/{id}/participants"),
                &json!({"name": format!("p{who}"), "srtp_profile": meeting.profile.name(),
                        "node": node_id(node)}),
            )?;
            let media = &body["media"];
            let bad = |what: &str| TargetError::Admit {
                target: "cluster",
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
                behind_hop: node != 0,
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

    /// The cluster is several processes: the run samples them itself
    /// (see `crate::cluster`).
    fn pid(&self) -> Option<u32> {
        None
    }

    fn latched(&mut self) -> Option<usize> {
        let mut sum = 0;
        for node in &mut self.nodes {
            sum += node.latched()?;
        }
        Some(sum)
    }
}
