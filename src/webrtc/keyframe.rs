//! Keyframe requests the relay itself sends: when a WHEP video slot
//! takes a new publisher, the viewer's decoder needs a keyframe of that
//! stream before it can show anything (DESIGN.md, "WebRTC"), so the
//! relay sends the publisher a PLI (RFC 4585 §6.3.1) at once instead of
//! waiting for the browser to notice and ask.
//!
//! The PLI is SRTCP under the publisher leg's relay→client key, with an
//! index drawn from the leg's shared counter (as the packet workers draw
//! theirs), so no index is used twice under that key.

use std::sync::Arc;

use crate::crypto::AnyGcm;
use crate::relay::{LegRoute, Path};
use crate::rtp::Ssrc;
use crate::rtp::rtcp::PliBuilder;
use crate::srtp::SrtpSession;

/// Ask the publisher on `leg` for a keyframe of its stream `media_ssrc`.
#[derive(Debug, Clone)]
pub struct KeyframeRequest {
    /// The publisher's leg.
    pub leg: Arc<LegRoute>,
    /// The publisher's video SSRC.
    pub media_ssrc: u32,
    /// The sender SSRC of the PLI: the slot's, one the relay chose.
    pub sender_ssrc: u32,
}

impl KeyframeRequest {
    /// Writes the protected PLI into `buf`; with where it goes. `None`
    /// when the leg has no RTCP address yet or the key is unusable.
    pub fn write(&self, buf: &mut [u8]) -> Option<(usize, Path)> {
        let dest = self.leg.latch.rtcp_path()?;
        let len = PliBuilder {
            sender_ssrc: Ssrc(self.sender_ssrc),
            media_ssrc: Ssrc(self.media_ssrc),
        }
        .write(buf)
        .ok()?;
        let mut session = SrtpSession::new(AnyGcm::default(), &self.leg.relay_to_client).ok()?;
        let len = session
            .protect_rtcp_at(buf, len, self.leg.take_srtcp_index())
            .ok()?;
        Some((len, dest))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, AtomicU64};

    use super::*;
    use crate::relay::{LegId, MeetingIdx, MeetingMode};
    use crate::rtp::rtcp::{RtcpCompound, RtcpPacket};
    use crate::srtp::{MasterKey, SrtpProfile};

    #[test]
    fn the_pli_is_srtcp_the_publisher_can_open_with_fresh_indices() {
        let key = MasterKey::new(SrtpProfile::AeadAes128Gcm, &[7; 28]).unwrap();
        let leg = Arc::new(LegRoute {
            id: LegId(1),
            meeting: MeetingIdx(1),
            mode: MeetingMode::Standard,
            client_to_relay: key.clone(),
            relay_to_client: key.clone(),
            latch: Arc::default(),
            next_srtcp_index: Arc::new(AtomicU32::new(0)),
            highest_srtcp_index: Arc::new(AtomicU64::new(0)),
        });
        let request = KeyframeRequest {
            leg: Arc::clone(&leg),
            media_ssrc: 0xAB,
            sender_ssrc: 0xCD,
        };
        let mut buf = [0u8; 128];
        assert!(request.write(&mut buf).is_none(), "no address yet");
        let addr = "127.0.0.1:5004".parse().unwrap();
        leg.latch.set(addr);
        let mut publisher = SrtpSession::new(AnyGcm::default(), &key).unwrap();
        for _ in 0..2 {
            let (len, dest) = request.write(&mut buf).unwrap();
            assert_eq!(dest.remote, addr);
            let n = publisher.unprotect_rtcp(&mut buf, len).unwrap();
            let packet = RtcpCompound::new(&buf[..n]).next().unwrap().unwrap();
            let RtcpPacket::Pli(pli) = packet else {
                panic!("{packet:?}")
            };
            assert_eq!((pli.sender_ssrc().0, pli.media_ssrc().0), (0xCD, 0xAB));
        }
        assert_eq!(leg.take_srtcp_index(), 2, "one index per PLI");
    }

    /// A sink whose slot decisions report two switches and one PLI, once.
    struct Slots(std::sync::Mutex<Option<KeyframeRequest>>);

    impl crate::webrtc::port::LegSink for Slots {
        fn established(
            &self,
            _: crate::webrtc::port::SessionId,
            _: &sluice_webrtc::keying::LegKeying,
            _: std::net::SocketAddr,
        ) -> bool {
            false
        }
        fn moved(&self, _: crate::webrtc::port::SessionId, _: std::net::SocketAddr) {}
        fn ended(&self, _: crate::webrtc::port::SessionId, _: crate::webrtc::port::EndReason) {}
        fn tick_slots(&self, _: std::time::Instant, keyframes: &mut Vec<KeyframeRequest>) -> u64 {
            match self.0.lock().unwrap().take() {
                Some(request) => {
                    keyframes.push(request);
                    2
                }
                None => 0,
            }
        }
    }

    /// The media port's thread runs the slot decisions on its own: it
    /// counts the switches (the metric) and sends the PLI from the media
    /// socket to the publisher, which opens it.
    #[test]
    fn the_port_thread_counts_slot_switches_and_sends_the_pli() {
        use crate::webrtc::port::{PortInbox, WebrtcPort};
        use sluice_webrtc::counters::WebRtcCounters;
        use std::net::UdpSocket;
        use std::time::Duration;

        let publisher = UdpSocket::bind("127.0.0.1:0").unwrap();
        publisher
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let key = MasterKey::new(SrtpProfile::AeadAes256Gcm, &[3; 44]).unwrap();
        let leg = Arc::new(LegRoute {
            id: LegId(1),
            meeting: MeetingIdx(1),
            mode: MeetingMode::E2ee,
            client_to_relay: key.clone(),
            relay_to_client: key.clone(),
            latch: Arc::default(),
            next_srtcp_index: Arc::new(AtomicU32::new(0)),
            highest_srtcp_index: Arc::new(AtomicU64::new(0)),
        });
        leg.latch.set(publisher.local_addr().unwrap());
        let request = KeyframeRequest {
            leg,
            media_ssrc: 0xB2,
            sender_ssrc: 0x51,
        };
        let counters = Arc::new(WebRtcCounters::default());
        let port = WebrtcPort::start(
            PortInbox::new(Arc::clone(&counters)),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            Arc::new(sluice_webrtc::identity::DtlsIdentity::generate().unwrap()),
            sluice_webrtc::dtls::DtlsConfig::new(),
            Slots(std::sync::Mutex::new(Some(request))),
            crate::net::priority::Background::Normal,
        )
        .unwrap();
        let mut buf = [0u8; 256];
        let (len, _) = publisher.recv_from(&mut buf).expect("the PLI arrives");
        let mut session = SrtpSession::new(AnyGcm::default(), &key).unwrap();
        let n = session.unprotect_rtcp(&mut buf, len).unwrap();
        let packet = RtcpCompound::new(&buf[..n]).next().unwrap().unwrap();
        assert!(
            matches!(packet, RtcpPacket::Pli(p) if p.media_ssrc().0 == 0xB2),
            "{packet:?}"
        );
        assert_eq!(counters.snapshot().slot_switches, 2);
        port.shutdown();
    }
}
