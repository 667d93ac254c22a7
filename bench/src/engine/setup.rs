//! Before the load: sockets for every participant, admission through the
//! target, and latching (an SRTCP receiver report from everyone, resent
//! until the relay has latched them all).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use sluice::crypto::AnyGcm;
use sluice::rtp::Ssrc;
use sluice::rtp::rtcp::ReceiverReportBuilder;
use sluice::srtp::SrtpSession;
use socket2::{Domain, Protocol, Socket, Type};

use super::EngineError;
use crate::scenario::Scenario;
use crate::target::{LegPlan, StreamSpec, Target};

/// One participant of the run, before its threads take it over.
#[derive(Debug)]
pub(super) struct Participant {
    pub(super) meeting: usize,
    pub(super) socket: Arc<UdpSocket>,
    pub(super) plan: LegPlan,
    pub(super) e2ee: Option<[u8; 16]>,
    /// (run-wide stream id, spec)
    pub(super) streams: Vec<(u32, StreamSpec)>,
}

pub(super) fn setup(what: &str) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |e| EngineError::Setup(format!("{what}: {e}"))
}

/// A non-blocking loopback UDP socket with large buffers, so bursts of
/// video frames are not dropped by the generator's own kernel queues.
fn endpoint_socket(gro: bool) -> Result<UdpSocket, EngineError> {
    let socket =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(setup("socket"))?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(1 << 20);
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .map_err(setup("bind 127.0.0.1:0"))?;
    socket
        .set_nonblocking(true)
        .map_err(setup("non-blocking"))?;
    if gro {
        // Best effort: without it the kernel splits GSO trains itself.
        super::batch::enable_gro(&socket);
    }
    Ok(socket.into())
}

/// One published stream of the run, by run-wide stream id.
#[derive(Debug, Clone, Copy)]
pub(super) struct Published {
    /// Index of the publishing participant.
    pub(super) publisher: u32,
    pub(super) spec: StreamSpec,
}

/// Admits every meeting of `scenario` through `target`; returns the
/// participants and, per run-wide stream id, its publisher's index and spec.
pub(super) fn admit_all(
    target: &mut dyn Target,
    scenario: &Scenario,
    gro: bool,
) -> Result<(Vec<Participant>, Vec<Published>), EngineError> {
    let random = SystemRandom::new();
    let mut participants = Vec::new();
    let mut stream_ids = Vec::new();
    for meeting in scenario.meetings() {
        let sockets = (0..meeting.participants())
            .map(|_| endpoint_socket(gro).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let addrs = sockets
            .iter()
            .map(|s| s.local_addr())
            .collect::<Result<Vec<_>, _>>()
            .map_err(setup("local address"))?;
        let plans = target.admit(&meeting, &addrs)?;
        if plans.len() != addrs.len() {
            return Err(EngineError::Setup(format!(
                "{} returned {} plans for {} participants",
                target.name(),
                plans.len(),
                addrs.len()
            )));
        }
        let e2ee = if meeting.e2ee {
            let mut key = [0u8; 16];
            random
                .fill(&mut key)
                .map_err(|_| EngineError::Setup("the system random source failed".into()))?;
            Some(key)
        } else {
            None
        };
        for (i, (socket, plan)) in sockets.into_iter().zip(plans).enumerate() {
            let streams = meeting
                .publishers
                .get(i)
                .into_iter()
                .flatten()
                .map(|spec| {
                    let id = stream_ids.len() as u32;
                    stream_ids.push(Published {
                        publisher: participants.len() as u32,
                        spec: *spec,
                    });
                    (id, *spec)
                })
                .collect();
            participants.push(Participant {
                meeting: meeting.index,
                socket,
                plan,
                e2ee,
                streams,
            });
        }
    }
    Ok((participants, stream_ids))
}

/// Sends each participant's SRTCP receiver report until the target says
/// all are latched (targets without latching return at once).
pub(super) fn latch_all(
    target: &mut dyn Target,
    participants: &[Participant],
) -> Result<(), EngineError> {
    let wanted = participants.len();
    if target.latched().is_none() {
        return Ok(());
    }
    let mut sessions = Vec::new();
    for p in participants {
        let mut mine = Vec::new();
        for path in &p.plan.sends {
            if let Some(key) = &path.key {
                let session = SrtpSession::new(AnyGcm::default(), key)
                    .map_err(|e| EngineError::Setup(format!("latching key: {e}")))?;
                mine.push((session, path.relay));
            }
        }
        sessions.push(mine);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 128];
    loop {
        for (i, (p, mine)) in participants.iter().zip(&mut sessions).enumerate() {
            // A publisher reports under its first stream's SSRC, which the
            // relay knows; a subscriber under the SSRC the target gave it
            // (sluice's `rtcp_ssrc`), else one of its own.
            let ssrc = match (p.streams.first(), p.plan.rtcp_ssrc) {
                (Some((_, s)), _) => s.ssrc,
                (None, Some(ssrc)) => ssrc,
                (None, None) => 0x5200_0000 + i as u32,
            };
            for (session, relay) in mine.iter_mut() {
                let report = ReceiverReportBuilder {
                    ssrc: Ssrc(ssrc),
                    report_blocks: &[],
                };
                let Ok(len) = report.write(&mut buf) else {
                    continue;
                };
                if let Ok(n) = session.protect_rtcp(&mut buf, len) {
                    let _ = p.socket.send_to(&buf[..n], *relay);
                }
            }
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(300) {
            let latched = target.latched().unwrap_or(wanted);
            if latched >= wanted {
                // Drain what the reports caused (forwarded RTCP).
                std::thread::sleep(Duration::from_millis(50));
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(EngineError::Latching {
                    target: target.name(),
                    latched,
                    wanted,
                    seconds: 20,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
