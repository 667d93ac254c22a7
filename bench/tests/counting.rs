//! The engine's counting against a relay that misbehaves on purpose, on
//! loopback: a forwarder that drops, duplicates, swaps and corrupts chosen
//! packets by their RTP sequence number. Loss, duplicates and reordering
//! come out exact from the clear headers whether every delivery is
//! verified or only a sample; corrupted packets show as decrypt failures
//! (all of them with `verify_every = 1`, the sampled ones otherwise), so a
//! sampled-verification failure is reported and fails the run.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sluice::srtp::MasterKey;
use sluice_bench::engine::{self, EngineOptions};
use sluice_bench::measure::Measurement;
use sluice_bench::scenario::{AudioMix, Scenario};
use sluice_bench::target::{LegPlan, MeetingSpec, Path, Target, TargetError};

/// What the forwarder does to a packet, by its RTP sequence number.
fn fate(seq: u16) -> Fate {
    match seq % 50 {
        7 => Fate::Drop,
        13 => Fate::Twice,
        20 => Fate::Hold,
        30 | 40 => Fate::Corrupt,
        _ => Fate::Pass,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Pass,
    Drop,
    Twice,
    Hold,
    Corrupt,
}

type Routes = Arc<Mutex<HashMap<SocketAddr, Vec<SocketAddr>>>>;

/// A forwarder on one loopback socket: each source's packets go to the
/// other participants of its meeting, impaired by [`fate`].
struct Mangler {
    addr: SocketAddr,
    routes: Routes,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Mangler {
    fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let routes: Routes = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (Arc::clone(&routes), Arc::clone(&stop));
        let thread = std::thread::spawn(move || forward(&socket, &r, &s));
        Self {
            addr,
            routes,
            stop,
            thread: Some(thread),
        }
    }
}

fn forward(socket: &UdpSocket, routes: &Routes, stop: &AtomicBool) {
    let mut buf = [0u8; 2048];
    // A held packet per source, sent after that source's next one.
    let mut held: HashMap<SocketAddr, Vec<u8>> = HashMap::new();
    let send = |bytes: &[u8], from: SocketAddr| {
        let dests = routes.lock().expect("routes").get(&from).cloned();
        for dest in dests.unwrap_or_default() {
            let _ = socket.send_to(bytes, dest);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            // Idle: whatever is held goes now (in order, as nothing
            // followed it).
            for (from, bytes) in held.drain() {
                send(&bytes, from);
            }
            continue;
        };
        let packet = &mut buf[..n];
        let rtp = n >= 12 && !(192..=223).contains(&packet[1]);
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        match if rtp { fate(seq) } else { Fate::Pass } {
            Fate::Pass => send(packet, from),
            Fate::Drop => {}
            Fate::Twice => {
                send(packet, from);
                send(packet, from);
            }
            Fate::Hold => {
                held.insert(from, packet.to_vec());
                continue;
            }
            Fate::Corrupt => {
                packet[n - 1] ^= 0x5a;
                send(packet, from);
            }
        }
        if let Some(bytes) = held.remove(&from) {
            send(&bytes, from);
        }
    }
}

impl Drop for Mangler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Target for Mangler {
    fn name(&self) -> &'static str {
        "mangler"
    }

    fn describe(&self) -> String {
        "a forwarder that drops, duplicates, swaps and corrupts packets".into()
    }

    fn admit(
        &mut self,
        meeting: &MeetingSpec,
        participants: &[SocketAddr],
    ) -> Result<Vec<LegPlan>, TargetError> {
        // One key for the meeting: every leg sends and receives under it
        // (distinct SSRCs keep the GCM nonces apart).
        let material: Vec<u8> = (0..meeting.profile.key_material_len())
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(meeting.index as u8))
            .collect();
        let key = MasterKey::new(meeting.profile, &material).expect("key");
        let mut routes = self.routes.lock().expect("routes");
        for (i, &me) in participants.iter().enumerate() {
            let others = participants
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| *a)
                .collect();
            routes.insert(me, others);
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
        None
    }
}

fn scenario() -> Scenario {
    Scenario {
        name: "counting".into(),
        meetings: 1,
        publishers: 2,
        subscribers: 1,
        // One meeting E2EE, so the sample opens that layer too.
        e2ee_share: 1.0,
        seconds: 2.0,
        ramp_seconds: 0.1,
        audio: AudioMix {
            per_publisher: 1,
            interval_ms: 5,
            min_bytes: 160,
            max_bytes: 160,
        },
        ..Scenario::default()
    }
}

/// Per stream, (dropped, doubled, swapped, corrupted) packets of the
/// `sent` it sent, each times its receivers.
fn impaired(m: &Measurement) -> (u64, u64, u64, u64) {
    let mut sums = (0, 0, 0, 0);
    for s in &m.streams {
        for seq in 0..s.sent {
            let r = s.receivers;
            match fate(seq as u16) {
                Fate::Drop => sums.0 += r,
                Fate::Twice => sums.1 += r,
                // A held last packet goes out alone, in order.
                Fate::Hold if seq + 1 < s.sent => sums.2 += r,
                Fate::Corrupt => sums.3 += r,
                _ => {}
            }
        }
    }
    sums
}

fn run(verify_every: u32) -> Measurement {
    let mut target = Mangler::start();
    let options = EngineOptions {
        verify_every,
        drain: Duration::from_millis(300),
        ..EngineOptions::default()
    };
    engine::run(&mut target, &scenario(), &options, &mut |_, _, _| {}).expect("runs")
}

#[test]
fn every_delivery_verified_counts_each_impairment_exactly() {
    let m = run(1);
    let (dropped, doubled, swapped, corrupted) = impaired(&m);
    assert!(m.sent >= 600, "{}", m.sent);
    assert!(dropped > 0 && doubled > 0 && swapped > 0 && corrupted > 0);
    assert_eq!(m.lost, dropped + corrupted, "{m:?}");
    assert_eq!(m.duplicated, doubled);
    assert_eq!(m.reordered, swapped);
    assert_eq!(m.decrypt_failures, corrupted);
    // Every delivery was verified: the distinct ones, the duplicates the
    // SRTP window refused and the corrupted ones.
    assert_eq!(m.verified, m.received + doubled + corrupted);
    assert!(!m.flawless());
}

#[test]
fn a_sample_still_counts_loss_and_order_exactly_and_reports_failures() {
    let m = run(4);
    let (dropped, doubled, swapped, corrupted) = impaired(&m);
    assert_eq!(m.duplicated, doubled, "{m:?}");
    assert_eq!(m.reordered, swapped);
    // A corrupted packet counts as lost only where the sample caught it;
    // elsewhere its clear header counted it as delivered.
    assert!(
        m.decrypt_failures > 0 && m.decrypt_failures < corrupted,
        "{} of {corrupted}",
        m.decrypt_failures
    );
    assert_eq!(m.lost, dropped + m.decrypt_failures);
    assert!(m.verified > 0 && m.verified < m.received, "{}", m.verified);
    assert!(!m.passes(0.5, u64::MAX), "a decrypt failure fails the step");
    assert!(m.latency_ns.p50 > 0, "latency comes from the sample");
}
