//! Scenarios: the shape of a load (meetings, who publishes what, E2EE
//! share, SRTP profile, duration, ramp), read from a small TOML file and
//! adjusted by flags, then laid out as the [`MeetingSpec`]s a target admits.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sluice::srtp::SrtpProfile;

use crate::target::{MeetingSpec, StreamKind, StreamSpec};

/// Why a scenario could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown key.
    #[error("scenario {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The TOML parser's message (it names the line).
        message: String,
    },
    /// A value is out of range.
    #[error("scenario {name}: {message}")]
    Invalid {
        /// The scenario's name.
        name: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// Audio streams: Opus-sized packets at a fixed interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioMix {
    /// Audio streams each publisher sends (0: none).
    pub per_publisher: u32,
    /// Packet interval in ms (20: 50 packets per second).
    pub interval_ms: u32,
    /// Smallest payload, bytes.
    pub min_bytes: u32,
    /// Largest payload, bytes.
    pub max_bytes: u32,
}

impl Default for AudioMix {
    fn default() -> Self {
        Self {
            per_publisher: 1,
            interval_ms: 20,
            min_bytes: 100,
            max_bytes: 200,
        }
    }
}

/// Video streams: frames at a fixed rate, each sent as a burst of packets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoMix {
    /// Video streams each publisher sends (0: none).
    pub per_publisher: u32,
    /// Bitrate of one stream, kbit/s.
    pub bitrate_kbps: u32,
    /// Frames per second.
    pub fps: u32,
    /// Payload bytes of a full packet (a frame's last one is shorter).
    pub packet_bytes: u32,
}

impl Default for VideoMix {
    fn default() -> Self {
        Self {
            per_publisher: 0,
            bitrate_kbps: 1000,
            fps: 30,
            packet_bytes: 1200,
        }
    }
}

/// One load shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Short name for reports.
    pub name: String,
    /// One sentence for people.
    pub description: String,
    /// Meetings running at once.
    pub meetings: u32,
    /// Participants per meeting that publish (and receive the others).
    pub publishers: u32,
    /// Participants per meeting that only receive.
    pub subscribers: u32,
    /// Share of meetings that are E2EE, 0.0..=1.0 (spread evenly).
    pub e2ee_share: f64,
    /// SRTP profile of every leg (SDES name).
    pub profile: String,
    /// Seconds of load after the ramp.
    pub seconds: f64,
    /// Seconds over which streams start, evenly spread.
    pub ramp_seconds: f64,
    /// Audio streams.
    pub audio: AudioMix,
    /// Video streams.
    pub video: VideoMix,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "unnamed".into(),
            description: String::new(),
            meetings: 1,
            publishers: 2,
            subscribers: 0,
            e2ee_share: 0.0,
            profile: SrtpProfile::AeadAes256Gcm.name().into(),
            seconds: 10.0,
            ramp_seconds: 1.0,
            audio: AudioMix::default(),
            video: VideoMix::default(),
        }
    }
}

/// RTP payload types the generator uses.
const AUDIO_PT: u8 = 111;
const VIDEO_PT: u8 = 96;

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks scenario TOML; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let scenario: Self = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: origin.into(),
            message: e.to_string(),
        })?;
        scenario.check()?;
        Ok(scenario)
    }

    /// Checks the values make a load that can run.
    pub fn check(&self) -> Result<(), ScenarioError> {
        let bad = |message: String| {
            Err(ScenarioError::Invalid {
                name: self.name.clone(),
                message,
            })
        };
        if self.meetings == 0 || self.publishers == 0 {
            return bad("meetings and publishers must be at least 1".into());
        }
        if self.participants_per_meeting() < 2 {
            return bad(
                "a meeting needs at least 2 participants for anything to be relayed".into(),
            );
        }
        if self.streams_per_publisher() == 0 {
            return bad("set audio.per_publisher or video.per_publisher above 0".into());
        }
        if !(0.0..=1.0).contains(&self.e2ee_share) {
            return bad(format!(
                "e2ee_share {} is not within 0.0..=1.0",
                self.e2ee_share
            ));
        }
        if let Err(e) = self.srtp_profile() {
            return bad(e);
        }
        if self.seconds <= 0.0 || self.ramp_seconds < 0.0 {
            return bad("seconds must be above 0 and ramp_seconds at least 0".into());
        }
        let a = &self.audio;
        if a.per_publisher > 0
            && (a.interval_ms == 0
                || a.min_bytes > a.max_bytes
                || (a.min_bytes as usize) < crate::payload::HEADER_LEN)
        {
            return bad(format!(
                "audio needs interval_ms > 0 and {} <= min_bytes <= max_bytes",
                crate::payload::HEADER_LEN
            ));
        }
        let v = &self.video;
        if v.per_publisher > 0
            && (v.fps == 0
                || v.bitrate_kbps == 0
                || (v.packet_bytes as usize) < crate::payload::HEADER_LEN
                || v.packet_bytes > 1400)
        {
            return bad(format!(
                "video needs fps > 0, bitrate_kbps > 0 and {} <= packet_bytes <= 1400",
                crate::payload::HEADER_LEN
            ));
        }
        Ok(())
    }

    /// The SRTP profile, parsed.
    pub fn srtp_profile(&self) -> Result<SrtpProfile, String> {
        self.profile.parse().map_err(|_| {
            let names: Vec<_> = SrtpProfile::ALL.iter().map(|p| p.name()).collect();
            format!(
                "unknown SRTP profile {:?}: use one of {}",
                self.profile,
                names.join(", ")
            )
        })
    }

    /// Publishers plus subscribers.
    pub fn participants_per_meeting(&self) -> u32 {
        self.publishers + self.subscribers
    }

    /// Audio plus video streams of one publisher.
    pub fn streams_per_publisher(&self) -> u32 {
        self.audio.per_publisher + self.video.per_publisher
    }

    /// Streams published in the whole run.
    pub fn published_streams(&self) -> u64 {
        u64::from(self.meetings)
            * u64::from(self.publishers)
            * u64::from(self.streams_per_publisher())
    }

    /// Streams the relay sends out: each published stream once per other
    /// participant of its meeting. This is the "offered load" of reports.
    pub fn relayed_streams(&self) -> u64 {
        self.published_streams() * u64::from(self.participants_per_meeting() - 1)
    }

    /// Whether meeting `index` is E2EE: the share is spread evenly
    /// (0.5 makes every other meeting E2EE).
    pub fn is_e2ee(&self, index: u32) -> bool {
        let before = (f64::from(index) * self.e2ee_share).floor();
        let after = (f64::from(index + 1) * self.e2ee_share).floor();
        after > before
    }

    /// The meetings to admit, with run-wide unique SSRCs (stream `i` of
    /// the run has SSRC `0x5100_0000 + i`).
    pub fn meetings(&self) -> Vec<MeetingSpec> {
        // check() made sure the profile parses.
        let profile = self.srtp_profile().unwrap_or(SrtpProfile::AeadAes256Gcm);
        let mut next = 0u32;
        (0..self.meetings)
            .map(|m| {
                let publishers = (0..self.publishers)
                    .map(|_| {
                        let kinds = std::iter::repeat_n(
                            StreamKind::Audio,
                            self.audio.per_publisher as usize,
                        )
                        .chain(std::iter::repeat_n(
                            StreamKind::Video,
                            self.video.per_publisher as usize,
                        ));
                        kinds
                            .map(|kind| {
                                let ssrc = 0x5100_0000 + next;
                                next += 1;
                                StreamSpec {
                                    ssrc,
                                    kind,
                                    payload_type: match kind {
                                        StreamKind::Audio => AUDIO_PT,
                                        StreamKind::Video => VIDEO_PT,
                                    },
                                }
                            })
                            .collect()
                    })
                    .collect();
                MeetingSpec {
                    index: m as usize,
                    e2ee: self.is_e2ee(m),
                    profile,
                    publishers,
                    subscribers: self.subscribers as usize,
                }
            })
            .collect()
    }

    /// The tiny fixed load of `sluice-bench smoke`: two 3-person meetings
    /// (one E2EE) with audio and video, and a 1→3 webinar, for 3 seconds.
    pub fn smoke() -> Self {
        Self {
            name: "smoke".into(),
            description: "fixed small load: any loss, duplicate or decrypt failure fails".into(),
            meetings: 2,
            publishers: 3,
            subscribers: 1,
            e2ee_share: 0.5,
            seconds: 3.0,
            ramp_seconds: 0.5,
            audio: AudioMix::default(),
            video: VideoMix {
                per_publisher: 1,
                bitrate_kbps: 300,
                ..VideoMix::default()
            },
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        for name in ["small-meetings", "webinar", "call-centre"] {
            let s = Scenario::load(&dir.join(format!("{name}.toml"))).expect(name);
            assert_eq!(s.name, name);
            assert!(s.relayed_streams() > 0);
        }
    }

    #[test]
    fn parse_fills_defaults_and_lays_out_meetings() {
        let s = Scenario::parse(
            "name = \"t\"\nmeetings = 4\npublishers = 2\nsubscribers = 1\ne2ee_share = 0.5\n[video]\nper_publisher = 1\n",
            "t.toml",
        )
        .expect("parses");
        assert_eq!(s.audio, AudioMix::default());
        assert_eq!(s.video.per_publisher, 1);
        assert_eq!(s.published_streams(), 16);
        assert_eq!(s.relayed_streams(), 32);
        let meetings = s.meetings();
        assert_eq!(meetings.len(), 4);
        assert_eq!(meetings.iter().filter(|m| m.e2ee).count(), 2);
        assert_eq!(meetings[1].publishers[1][1].kind, StreamKind::Video);
        let ssrcs: std::collections::HashSet<u32> = meetings
            .iter()
            .flat_map(|m| m.publishers.iter().flatten().map(|s| s.ssrc))
            .collect();
        assert_eq!(ssrcs.len(), 16);
    }

    #[test]
    fn mistakes_are_named() {
        let unknown = Scenario::parse("meeting = 3\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("meeting"), "{unknown}");
        let profile = Scenario::parse("profile = \"ROT13\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(profile.contains("AEAD_AES_256_GCM"), "{profile}");
        let share = Scenario::parse("e2ee_share = 2.0\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(share.contains("e2ee_share"), "{share}");
        assert!(Scenario::smoke().check().is_ok());
    }

    #[test]
    fn e2ee_share_is_spread_evenly() {
        let s = Scenario {
            e2ee_share: 0.25,
            ..Scenario::default()
        };
        let e2ee: Vec<bool> = (0..8).map(|i| s.is_e2ee(i)).collect();
        assert_eq!(e2ee.iter().filter(|e| **e).count(), 2);
        let all = Scenario {
            e2ee_share: 1.0,
            ..Scenario::default()
        };
        assert!((0..5).all(|i| all.is_e2ee(i)));
    }
}
