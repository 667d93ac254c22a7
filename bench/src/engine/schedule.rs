//! When each stream sends, and how big its packets are. Sans-IO: the
//! sender thread asks [`StreamSchedule::due_ns`] and, once the clock has
//! reached it, takes the burst with [`StreamSchedule::take_burst`]. Due
//! times are `start + k × period`, computed from the event count and never
//! from the time a send happened, so a late turn does not drift the rest.

use crate::payload::HEADER_LEN;
use crate::scenario::Scenario;
use crate::target::StreamKind;

/// Smallest payload the generator sends: the header, plus room for the
/// E2EE layer's nonce and tag.
pub const MIN_PAYLOAD: usize = HEADER_LEN + crate::engine::e2ee::OVERHEAD;

/// One stream's timing and sizes.
#[derive(Debug, Clone)]
pub struct StreamSchedule {
    kind: StreamKind,
    start_ns: u64,
    period_ns: u64,
    end_ns: u64,
    event: u64,
    /// Audio: payload size range. Video: frame bytes and packet size.
    a: u32,
    b: u32,
    rng: u64,
}

impl StreamSchedule {
    /// The schedule of stream `index` of `count` in `scenario`, starting
    /// at `base_ns`: streams start spread over the ramp, each at its own
    /// phase of its period, and stop `scenario.seconds` after the ramp.
    pub fn new(
        scenario: &Scenario,
        kind: StreamKind,
        index: usize,
        count: usize,
        base_ns: u64,
    ) -> Self {
        let ramp_ns = (scenario.ramp_seconds * 1e9) as u64;
        let end_ns = base_ns + ramp_ns + (scenario.seconds * 1e9) as u64;
        let mut rng = 0x9e37_79b9_7f4a_7c15 ^ (index as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let (period_ns, a, b) = match kind {
            StreamKind::Audio => (
                u64::from(scenario.audio.interval_ms) * 1_000_000,
                scenario.audio.min_bytes,
                scenario.audio.max_bytes,
            ),
            StreamKind::Video => {
                let v = &scenario.video;
                let frame = u64::from(v.bitrate_kbps) * 1000 / 8 / u64::from(v.fps);
                (
                    1_000_000_000 / u64::from(v.fps),
                    frame.max(1) as u32,
                    v.packet_bytes,
                )
            }
        };
        let ramp_at = ramp_ns * index as u64 / count.max(1) as u64;
        let phase = next(&mut rng) % period_ns.max(1);
        Self {
            kind,
            start_ns: base_ns + ramp_at + phase,
            period_ns,
            end_ns,
            event: 0,
            a,
            b,
            rng,
        }
    }

    /// When the next burst is due; `None` once the stream has ended.
    pub fn due_ns(&self) -> Option<u64> {
        let due = self.start_ns + self.event * self.period_ns;
        (due < self.end_ns).then_some(due)
    }

    /// The payload sizes of the burst now due (one for audio; a frame's
    /// packets for video, the last one carrying the RTP marker), and moves
    /// on to the next burst.
    pub fn take_burst(&mut self, sizes: &mut Vec<usize>) {
        sizes.clear();
        self.event += 1;
        match self.kind {
            StreamKind::Audio => {
                let span = u64::from(self.b - self.a) + 1;
                let size = u64::from(self.a) + next(&mut self.rng) % span;
                sizes.push((size as usize).max(MIN_PAYLOAD));
            }
            StreamKind::Video => {
                let (mut left, full) = (self.a as usize, self.b as usize);
                while left > 0 {
                    let size = left.min(full);
                    sizes.push(size.max(MIN_PAYLOAD));
                    left -= size;
                }
            }
        }
    }

    /// RTP timestamp of the burst just taken (48 kHz audio, 90 kHz video).
    pub fn rtp_timestamp(&self) -> u32 {
        let rate = match self.kind {
            StreamKind::Audio => 48_000,
            StreamKind::Video => 90_000,
        };
        (self.event.saturating_sub(1) * self.period_ns * rate / 1_000_000_000) as u32
    }
}

/// splitmix64: cheap, deterministic sizes and phases.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::VideoMix;

    #[test]
    fn audio_is_fifty_packets_a_second_of_opus_sizes() {
        let s = Scenario {
            seconds: 2.0,
            ramp_seconds: 0.0,
            ..Scenario::default()
        };
        let mut sched = StreamSchedule::new(&s, StreamKind::Audio, 0, 1, 1_000);
        let first = sched.due_ns().expect("due");
        assert!((1_000..1_000 + 20_000_000).contains(&first));
        let mut sizes = Vec::new();
        let mut packets = 0;
        while let Some(due) = sched.due_ns() {
            assert_eq!(due, first + packets * 20_000_000, "no drift");
            sched.take_burst(&mut sizes);
            assert_eq!(sizes.len(), 1);
            assert!((100..=200).contains(&sizes[0]));
            packets += 1;
        }
        assert!((99..=100).contains(&packets), "{packets}");
    }

    #[test]
    fn video_bursts_a_frame_at_thirty_fps() {
        let s = Scenario {
            seconds: 1.0,
            ramp_seconds: 0.0,
            video: VideoMix {
                per_publisher: 1,
                bitrate_kbps: 960,
                ..VideoMix::default()
            },
            ..Scenario::default()
        };
        let mut sched = StreamSchedule::new(&s, StreamKind::Video, 3, 4, 0);
        let mut sizes = Vec::new();
        let mut bytes = 0;
        let mut frames = 0;
        while sched.due_ns().is_some() {
            sched.take_burst(&mut sizes);
            // 960 kbit/s at 30 fps: 4000 B a frame, 1200+1200+1200+400.
            assert_eq!(sizes, [1200, 1200, 1200, 400]);
            bytes += sizes.iter().sum::<usize>();
            frames += 1;
        }
        assert!((29..=30).contains(&frames), "{frames}");
        assert!(bytes >= 29 * 4000);
    }

    #[test]
    fn the_ramp_spreads_starts() {
        let s = Scenario {
            ramp_seconds: 1.0,
            ..Scenario::default()
        };
        let early = StreamSchedule::new(&s, StreamKind::Audio, 0, 10, 0)
            .due_ns()
            .expect("due");
        let late = StreamSchedule::new(&s, StreamKind::Audio, 9, 10, 0)
            .due_ns()
            .expect("due");
        assert!(early < 20_000_000);
        assert!(late >= 900_000_000);
    }
}
