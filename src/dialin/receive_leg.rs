//! [`ReceiveLeg`]: how the calls of one meeting on one media pool thread
//! hear the meeting. A participant of the meeting like any other (DESIGN.md,
//! "Media services are participants"): an SRTP leg with keys of its own
//! ([`MeetingDesk::admit_mixer`](crate::control::MeetingDesk::admit_mixer)),
//! in the meeting's fan-out set, publishing nothing, while each call's own
//! leg only publishes its caller. The relay therefore protects every
//! meeting packet once for the thread and the thread decrypts it once,
//! however many of the meeting's calls it runs; the packet then feeds each
//! of the meeting's mixes on the thread (one per codec rate), which leave
//! each caller's own stream, arriving here like any other, out of what
//! that caller hears (by SSRC).
//!
//! Sans-IO: the pool feeds it each datagram from the leg's socket
//! ([`ReceiveLeg::handle_datagram`]) and sends what
//! [`ReceiveLeg::poll_report`] writes: an empty SRTCP receiver report
//! under the leg's `rtcp_ssrc` at once and every second after, which
//! latches the leg at the relay before any media flows and keeps it
//! latched (RFC 3550 §6.4.2; the relay finds the leg by that SSRC).

use std::time::{Duration, Instant};

use crate::control::MixerLeg;
use crate::crypto::AnyGcm;
use crate::media::level;
use crate::rtp::rtcp::ReceiverReportBuilder;
use crate::rtp::{RtpPacket, Ssrc};
use crate::srtp::{SrtpError, SrtpSession};

use super::call::{MAX_DATAGRAM, VOICE_DBOV};

/// How often the leg reports (and so stays latched).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Room the SRTCP trailer (tag and index) needs after a report.
const SRTCP_ROOM: usize = 64;

/// One meeting packet, decrypted, for the mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Heard<'a> {
    pub(crate) ssrc: u32,
    pub(crate) seq: u16,
    pub(crate) payload: &'a [u8],
    /// What the mix ranks it by ([`speaking_level`]).
    pub(crate) level: Option<u8>,
}

/// A pool thread's receive leg into one meeting.
pub(crate) struct ReceiveLeg {
    seat: MixerLeg,
    from_relay: SrtpSession<AnyGcm>,
    to_relay: SrtpSession<AnyGcm>,
    next_report: Option<Instant>,
    extension_id: u8,
}

impl std::fmt::Debug for ReceiveLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiveLeg")
            .field("meeting", &self.seat.meeting)
            .field("rtcp_ssrc", &self.seat.rtcp_ssrc)
            .finish_non_exhaustive()
    }
}

impl ReceiveLeg {
    /// The leg the desk admitted, reading the RFC 6464 level from
    /// one-byte extension `extension_id`.
    pub(crate) fn new(
        seat: MixerLeg,
        backend: &AnyGcm,
        extension_id: u8,
    ) -> Result<Self, SrtpError> {
        Ok(Self {
            from_relay: SrtpSession::new(backend.clone(), &seat.relay_to_client)?,
            to_relay: SrtpSession::new(backend.clone(), &seat.client_to_relay)?,
            seat,
            next_report: None,
            extension_id,
        })
    }

    /// What the desk admitted (to leave with).
    pub(crate) fn seat(&self) -> &MixerLeg {
        &self.seat
    }

    /// A datagram from the relay: the audio packet in it, when it is one
    /// that authenticates. RTCP is not needed here; a stream `is_audio`
    /// does not name (video, or unknown) is dropped before decryption.
    pub(crate) fn handle_datagram<'b>(
        &mut self,
        buf: &'b mut [u8],
        len: usize,
        is_audio: impl Fn(u32) -> bool,
    ) -> Option<Heard<'b>> {
        let head = buf.get(..len)?;
        // RTCP: payload types 200-206 in the second byte.
        if head.len() < 12 || (200..=206).contains(&head[1]) {
            return None;
        }
        let ssrc = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        if !is_audio(ssrc) {
            return None;
        }
        let len = self.from_relay.unprotect_rtp(buf, len).ok()?;
        let packet = RtpPacket::parse(buf.get(..len)?).ok()?;
        let level = speaking_level(level::audio_level_and_voice(&packet, self.extension_id));
        let header = packet.header();
        Some(Heard {
            ssrc: header.ssrc().0,
            seq: header.sequence().0,
            payload: packet.payload(),
            level,
        })
    }

    /// The SRTCP receiver report to send now, if one is due (the first at
    /// once), written into `buf`; its length.
    pub(crate) fn poll_report(
        &mut self,
        now: Instant,
        buf: &mut [u8; MAX_DATAGRAM],
    ) -> Option<usize> {
        if self.next_report.is_some_and(|at| now < at) {
            return None;
        }
        self.next_report = Some(now + REPORT_INTERVAL);
        let report = ReceiverReportBuilder {
            ssrc: Ssrc(self.seat.rtcp_ssrc),
            report_blocks: &[],
        };
        let len = report.write(&mut buf[..MAX_DATAGRAM - SRTCP_ROOM]).ok()?;
        self.to_relay.protect_rtcp(buf, len).ok()
    }
}

/// The level a meeting packet is ranked by: its RFC 6464 level, or
/// silence when its sender's voice activity flag says nobody speaks and the
/// level is below the voice threshold (room noise, a muted microphone's
/// hiss), so the mix never decodes it. A sender without voice detection
/// sends V = 0 throughout; its speech, louder than the threshold, is still
/// heard.
fn speaking_level(level: Option<(u8, bool)>) -> Option<u8> {
    match level {
        Some((dbov, false)) if dbov >= VOICE_DBOV => Some(level::SILENCE_DBOV),
        other => other.map(|(dbov, _)| dbov),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{PayloadType, RtpBuilder, SeqNum};
    use crate::srtp::{MasterKey, SrtpProfile};

    fn key(byte: u8) -> MasterKey {
        MasterKey::new(SrtpProfile::AeadAes256Gcm, &[byte; 44]).unwrap()
    }

    fn leg() -> ReceiveLeg {
        let seat = MixerLeg::for_tests("m", 0xabcd, key(1), key(2));
        ReceiveLeg::new(seat, &AnyGcm::default(), 1).unwrap()
    }

    /// A packet as the relay sends it to the leg (relay → client key).
    fn from_relay(relay: &mut SrtpSession<AnyGcm>, ssrc: u32, seq: u16, level: u8) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let ext = [level];
        let len = RtpBuilder::new(PayloadType::new(111).unwrap(), SeqNum(seq), 960, Ssrc(ssrc))
            .one_byte_extensions(&[(1, &ext[..])])
            .write(&[0xfc, 1, 2, 3], &mut buf)
            .unwrap();
        let len = relay.protect_rtp(&mut buf, len).unwrap();
        buf.truncate(len);
        buf
    }

    #[test]
    fn audio_packets_are_decrypted_once_with_their_level_and_the_rest_dropped() {
        let mut leg = leg();
        let mut relay = SrtpSession::new(AnyGcm::default(), &key(2)).unwrap();
        let audio = |ssrc: u32| ssrc != 0x7777;
        let mut p = from_relay(&mut relay, 0x1111, 5, 0x80 | 30);
        let len = p.len();
        let heard = leg.handle_datagram(&mut p, len, audio).unwrap();
        assert_eq!(
            heard,
            Heard {
                ssrc: 0x1111,
                seq: 5,
                payload: &[0xfc, 1, 2, 3],
                level: Some(30),
            }
        );
        // Quiet and flagged without voice: ranked as silence.
        let mut p = from_relay(&mut relay, 0x2222, 9, 90);
        let len = p.len();
        let heard = leg.handle_datagram(&mut p, len, audio).unwrap();
        assert_eq!(heard.level, Some(level::SILENCE_DBOV));
        // Video (not audio): dropped before decryption, so even a packet
        // that would not authenticate costs nothing.
        let mut p = from_relay(&mut relay, 0x7777, 1, 30);
        let len = p.len();
        assert_eq!(leg.handle_datagram(&mut p, len, audio), None);
        // A forged packet does not authenticate.
        let mut p = from_relay(&mut relay, 0x1111, 6, 30);
        let len = p.len();
        p[len - 1] ^= 1;
        assert_eq!(leg.handle_datagram(&mut p, len, audio), None);
        // RTCP is not for the mix.
        let mut rr = [0x80, 201, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(leg.handle_datagram(&mut rr, 8, audio), None);
    }

    #[test]
    fn reports_latch_at_once_then_every_second_under_the_rtcp_ssrc() {
        let mut leg = leg();
        let mut relay = SrtpSession::new(AnyGcm::default(), &key(1)).unwrap();
        let start = Instant::now();
        let mut buf = [0u8; MAX_DATAGRAM];
        let len = leg.poll_report(start, &mut buf).expect("the first at once");
        let plain = relay.unprotect_rtcp(&mut buf, len).expect("authentic");
        assert_eq!(buf[1], 201, "a receiver report");
        assert_eq!(u32::from_be_bytes(buf[4..8].try_into().unwrap()), 0xabcd);
        assert_eq!(plain, 8, "no report blocks");
        assert_eq!(
            leg.poll_report(start + Duration::from_millis(999), &mut buf),
            None
        );
        assert!(leg.poll_report(start + REPORT_INTERVAL, &mut buf).is_some());
    }

    #[test]
    fn quiet_packets_without_voice_are_not_speakers() {
        // Voice flagged: ranked by its level, however quiet.
        assert_eq!(speaking_level(Some((70, true))), Some(70));
        // No voice flag but speech-loud (a sender without VAD): heard.
        assert_eq!(speaking_level(Some((20, false))), Some(20));
        // No voice and quiet: silence, never decoded.
        assert_eq!(speaking_level(Some((VOICE_DBOV, false))), Some(127));
        assert_eq!(speaking_level(Some((90, false))), Some(127));
        // No level at all: the mix measures it by decoding.
        assert_eq!(speaking_level(None), None);
    }
}
