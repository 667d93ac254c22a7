//! The figures of one load against one target, as the reports print them,
//! and the tally that adds them up from what senders and receivers saw.

use serde::Serialize;

use crate::histogram::{Histogram, Percentiles};
use crate::procstat::ProcessFigures;
use crate::scenario::Scenario;
use crate::stats::StreamReception;

/// One stream, summed over its receivers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamFigures {
    /// Run-wide stream id.
    pub stream: u32,
    /// Its SSRC.
    pub ssrc: u32,
    /// `audio` or `video`.
    pub kind: &'static str,
    /// The meeting it belongs to.
    pub meeting: u64,
    /// Packets the publisher sent.
    pub sent: u64,
    /// Participants that should have received it.
    pub receivers: u64,
    /// Distinct packets received, over all receivers.
    pub received: u64,
    /// sent × receivers − received.
    pub lost: u64,
    /// Duplicates seen by the bench's own sequence check.
    pub duplicated: u64,
    /// Packets that arrived after a later one.
    pub reordered: u64,
    /// Highest RFC 3550 jitter of any receiver, ms.
    pub jitter_ms_max: f64,
    /// Mean RFC 3550 jitter over receivers, ms.
    pub jitter_ms_mean: f64,
}

impl StreamFigures {
    /// Adds one receiver's view of the stream.
    pub fn add_receiver(&mut self, got: &StreamReception, sent: u64) {
        let jitter = got.jitter_ns / 1e6;
        self.jitter_ms_mean =
            (self.jitter_ms_mean * self.receivers as f64 + jitter) / (self.receivers + 1) as f64;
        self.jitter_ms_max = self.jitter_ms_max.max(jitter);
        self.receivers += 1;
        self.received += got.received;
        self.lost += got.lost(sent);
        self.duplicated += got.duplicated;
        self.reordered += got.reordered;
    }
}

/// Every figure of one load against one target.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// Target name.
    pub target: String,
    /// What ran, in the target's words.
    pub describe: String,
    /// Scenario name.
    pub scenario: String,
    /// Meetings.
    pub meetings: u64,
    /// Participants.
    pub participants: u64,
    /// Streams published.
    pub published_streams: u64,
    /// Streams the relay sends out (offered load).
    pub offered_streams: u64,
    /// Seconds of steady load (after the ramp).
    pub seconds: f64,
    /// Packets published.
    pub sent: u64,
    /// Packet deliveries expected (each published packet × its receivers).
    pub expected: u64,
    /// Distinct packets delivered and checked.
    pub received: u64,
    /// Expected − received.
    pub lost: u64,
    /// lost / expected.
    pub loss_ratio: f64,
    /// Packets delivered more than once (sequence check + SRTP replay window).
    pub duplicated: u64,
    /// Packets delivered after a later packet of their stream.
    pub reordered: u64,
    /// Verified packets that failed SRTP or E2EE authentication, or whose
    /// sealed payload header disagreed with their clear RTP header.
    pub decrypt_failures: u64,
    /// Deliveries authenticated and decrypted (the sample; all of them
    /// with `--verify-all`). Latency and jitter come from these.
    pub verified: u64,
    /// Packets from unknown sources or not of this run.
    pub foreign: u64,
    /// Datagrams the generator could not send or protect.
    pub send_failures: u64,
    /// Packets the generator sent more than 1 ms late.
    pub late_sends: u64,
    /// The generator's `sendmmsg` calls.
    pub send_calls: u64,
    /// Whether the generator sent video frames as UDP GSO messages.
    pub gso: bool,
    /// Worst generator lateness, µs.
    pub worst_late_us: f64,
    /// One-way latency through the target, ns.
    pub latency_ns: Percentiles,
    /// Cluster targets: the one-way latency of the receivers behind a
    /// relay-to-relay hop (on another node than the publisher), ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hop_latency_ns: Option<Percentiles>,
    /// Cluster targets: the one-way latency of the receivers on the
    /// publisher's node, ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_latency_ns: Option<Percentiles>,
    /// Mean RFC 3550 jitter over streams and receivers, ms.
    pub jitter_ms_mean: f64,
    /// Highest RFC 3550 jitter of any stream at any receiver, ms.
    pub jitter_ms_max: f64,
    /// Packets delivered per second in the steady window.
    pub relayed_pps: f64,
    /// Gbit/s delivered (SRTP datagrams, without UDP/IP headers) in the steady window.
    pub relayed_gbps: f64,
    /// The relay process (none for the ceiling).
    pub relay: Option<ProcessFigures>,
    /// The generator process (this one).
    pub generator: ProcessFigures,
    /// Per stream.
    pub streams: Vec<StreamFigures>,
}

impl Measurement {
    /// Whether the load passed the capacity criteria: loss at most
    /// `max_loss` and p99 latency at most `max_p99_ns`.
    pub fn passes(&self, max_loss: f64, max_p99_ns: u64) -> bool {
        self.loss_ratio <= max_loss
            && self.latency_ns.p99 <= max_p99_ns
            && self.decrypt_failures == 0
    }

    /// Whether the generator fell behind its own schedule (more than 1 %
    /// of packets sent over 1 ms late): the figures then say as much about
    /// the generator's box as about the target.
    pub fn generator_bound(&self) -> bool {
        self.late_sends * 100 > self.sent
    }

    /// Whether any packet was lost, duplicated, failed to decrypt or
    /// could not be sent: what the smoke refuses.
    pub fn flawless(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.decrypt_failures == 0
            && self.send_failures == 0
            && self.received > 0
    }
}

/// Adds up a load's figures.
#[derive(Debug)]
pub struct Tally {
    target: String,
    describe: String,
    scenario: String,
    meetings: u64,
    participants: u64,
    published: u64,
    offered: u64,
    seconds: f64,
    pub(crate) send_failures: u64,
    pub(crate) late_sends: u64,
    pub(crate) send_calls: u64,
    pub(crate) gso: bool,
    pub(crate) worst_late_ns: u64,
    pub(crate) decrypt_failures: u64,
    pub(crate) verified: u64,
    pub(crate) duplicated: u64,
    pub(crate) foreign: u64,
    pub(crate) steady_packets: u64,
    pub(crate) steady_bytes: u64,
    pub(crate) latency: Histogram,
    /// The part of `latency` that crossed a relay-to-relay hop.
    pub(crate) hop_latency: Histogram,
    /// The rest of `latency`: receivers on the publisher's node.
    pub(crate) local_latency: Histogram,
    streams: Vec<StreamFigures>,
}

impl Tally {
    /// An empty tally for `scenario` against `target`.
    pub fn new(scenario: &Scenario, target: &str, describe: String) -> Self {
        Self {
            target: target.into(),
            describe,
            scenario: scenario.name.clone(),
            meetings: scenario.meetings.into(),
            participants: u64::from(scenario.meetings)
                * u64::from(scenario.participants_per_meeting()),
            published: scenario.published_streams(),
            offered: scenario.relayed_streams(),
            seconds: scenario.seconds,
            send_failures: 0,
            late_sends: 0,
            send_calls: 0,
            gso: true,
            worst_late_ns: 0,
            decrypt_failures: 0,
            verified: 0,
            duplicated: 0,
            foreign: 0,
            steady_packets: 0,
            steady_bytes: 0,
            latency: Histogram::default(),
            hop_latency: Histogram::default(),
            local_latency: Histogram::default(),
            streams: Vec::new(),
        }
    }

    /// A row for stream `id`, to fill with [`StreamFigures::add_receiver`].
    pub fn stream_row(&self, id: u32, sent: u64) -> StreamFigures {
        StreamFigures {
            stream: id,
            sent,
            ..StreamFigures::default()
        }
    }

    /// Adds a finished stream row.
    pub fn add_stream(&mut self, row: StreamFigures) {
        self.streams.push(row);
    }

    /// The figures.
    pub fn finish(self, relay: Option<ProcessFigures>, generator: ProcessFigures) -> Measurement {
        let sum = |f: fn(&StreamFigures) -> u64| self.streams.iter().map(f).sum::<u64>();
        let expected = self
            .streams
            .iter()
            .map(|s| s.sent * s.receivers)
            .sum::<u64>();
        let received = sum(|s| s.received);
        let lost = sum(|s| s.lost);
        let receivers = sum(|s| s.receivers);
        let jitter_sum: f64 = self
            .streams
            .iter()
            .map(|s| s.jitter_ms_mean * s.receivers as f64)
            .sum();
        Measurement {
            target: self.target,
            describe: self.describe,
            scenario: self.scenario,
            meetings: self.meetings,
            participants: self.participants,
            published_streams: self.published,
            offered_streams: self.offered,
            seconds: self.seconds,
            sent: sum(|s| s.sent),
            expected,
            received,
            lost,
            loss_ratio: if expected == 0 {
                0.0
            } else {
                lost as f64 / expected as f64
            },
            duplicated: self.duplicated + sum(|s| s.duplicated),
            reordered: sum(|s| s.reordered),
            decrypt_failures: self.decrypt_failures,
            verified: self.verified,
            foreign: self.foreign,
            send_failures: self.send_failures,
            late_sends: self.late_sends,
            send_calls: self.send_calls,
            gso: self.gso,
            worst_late_us: self.worst_late_ns as f64 / 1e3,
            latency_ns: self.latency.percentiles(),
            hop_latency_ns: (self.hop_latency.count() > 0).then(|| self.hop_latency.percentiles()),
            local_latency_ns: (self.hop_latency.count() > 0)
                .then(|| self.local_latency.percentiles()),
            jitter_ms_mean: if receivers == 0 {
                0.0
            } else {
                jitter_sum / receivers as f64
            },
            jitter_ms_max: self
                .streams
                .iter()
                .map(|s| s.jitter_ms_max)
                .fold(0.0, f64::max),
            relayed_pps: self.steady_packets as f64 / self.seconds,
            relayed_gbps: self.steady_bytes as f64 * 8.0 / self.seconds / 1e9,
            relay,
            generator,
            streams: self.streams,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::PayloadHeader;

    #[test]
    fn tally_sums_loss_over_receivers() {
        let scenario = Scenario::smoke();
        let mut tally = Tally::new(&scenario, "t", "test".into());
        let mut hist = Histogram::default();
        let mut full = StreamReception::default();
        let mut half = StreamReception::default();
        for seq in 0..10 {
            let h = PayloadHeader {
                stream: 0,
                sequence: seq,
                sent_ns: 0,
            };
            full.handle_packet(&h, 100, 1000, &mut hist);
            if seq % 2 == 0 {
                half.handle_packet(&h, 100, 1000, &mut hist);
            }
        }
        let mut row = tally.stream_row(0, 10);
        row.add_receiver(&full, 10);
        row.add_receiver(&half, 10);
        tally.add_stream(row);
        tally.latency = hist;
        let m = tally.finish(None, ProcessFigures::default());
        assert_eq!((m.sent, m.expected, m.received, m.lost), (10, 20, 15, 5));
        assert!((m.loss_ratio - 0.25).abs() < 1e-12);
        assert!(!m.flawless());
        assert!(!m.passes(0.001, 20_000_000));
        assert_eq!(m.latency_ns.p50, 1000);
    }
}
