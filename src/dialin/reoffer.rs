//! What a re-INVITE's offer (RFC 3264 §8) does to a call that is up, for
//! dial-in and dial-out alike: [`reanswer`] decides, from the call's
//! [`Session`] (our last answer and the far end's key) and the new offer,
//! the answer to send and the [`MediaUpdate`] for the call's pool thread.
//! Sans-IO: no socket, no clock; the key of ours a re-key needs comes from
//! the caller's random source.
//!
//! What a re-offer may change, and what the call does about it:
//! - the address, and hold (`sendonly`, `inactive`, `c=0.0.0.0`) and
//!   unhold: our answer's direction follows (§6.1), the call sends nothing
//!   while held;
//! - the SDES key (RFC 4568 §7.1.4, `rekey.rs`): new keys both ways;
//! - the codec: the call keeps its codec while the offer still has it
//!   ([`crate::sip::sdp::negotiate_keeping`]), else takes the offer's best
//!   of Opus, G.722, PCMU, PCMA; its decoder, encoder and mix (at the new
//!   codec's rate) are rebuilt on the pool thread (`Call::switch_codec`);
//!   a new payload type number or telephone-event is taken too;
//! - `a=rtcp-mux` (RFC 5761 §5.1.3): added, RTCP moves onto the RTP port
//!   and the RTCP socket is closed; removed, RTCP moves to a socket of its
//!   own (RTP + 1 where free, else named by `a=rtcp`), which the I/O edge
//!   binds when [`Reanswer::needs_rtcp_socket`] says so.
//!
//! What stays refused with 488: an offer without a codec or crypto suite
//! sluice takes (as for a new call), and a switch between RTP/AVP and
//! RTP/SAVP. SRTP → RTP is a downgrade a call must not take silently
//! (`[sip] tls_require_srtp` would mean nothing if a re-INVITE could undo
//! it); RTP → SRTP is rare enough in the field that a PBX that wants SRTP
//! offers it at the start, and refusing keeps every call on one security
//! setting for its life.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Instant;

use ring::rand::{SecureRandom, SystemRandom};

use crate::media::{CallerCodec, G711};
use crate::sip::sdp::{
    AnswerSpec, Codec, MediaOffer, OpusFmtp, SdpError, build_answer, negotiate, negotiate_keeping,
    parse_offer,
};
use crate::srtp::{MasterKey, SrtpError, SrtpProfile};

use super::pool::CallSlot;
use super::rekey::{KeyChange, RekeyError, key_change};

/// What the signalling side keeps of a call that is up, for its next
/// re-offer.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// Our last answer (or, dial-out, what our offer and the far end's
    /// answer settled on), its `o=` version the last one sent.
    pub(crate) answer: AnswerSpec,
    /// The far end's SDES suite and key ‖ salt (SRTP calls).
    pub(crate) caller_key: Option<(SrtpProfile, Vec<u8>)>,
}

/// What the call's pool thread applies after a re-offer.
#[derive(Debug)]
pub(crate) struct MediaUpdate {
    /// Where to send RTP and RTCP now.
    pub(crate) remote: SocketAddr,
    pub(crate) rtcp: SocketAddr,
    /// The far end holds the call.
    pub(crate) held: bool,
    /// New SDES keys (the far end's, ours).
    pub(crate) rekey: Option<(MasterKey, MasterKey)>,
    /// The codec, its payload type and telephone-event's (all as before
    /// when nothing changed: the call compares).
    pub(crate) codec: CallerCodec,
    pub(crate) payload_type: u8,
    pub(crate) telephone_event: Option<u8>,
    /// The offer's Opus fmtp (what the far end wants to receive).
    pub(crate) opus: OpusFmtp,
    /// RTCP muxed on the RTP port from now on.
    pub(crate) rtcp_mux: bool,
    /// The RTCP socket, when rtcp-mux was just removed (bound by the I/O
    /// edge; its port is in the answer).
    pub(crate) rtcp_socket: Option<UdpSocket>,
}

/// The decision: the answer and what changes.
#[derive(Debug)]
pub(crate) struct Reanswer {
    /// The session from now on (commit it once the answer is sent).
    pub(crate) session: Session,
    pub(crate) update: MediaUpdate,
    /// rtcp-mux was removed: bind an RTCP socket, put it into
    /// `update.rtcp_socket` and its port into `session.answer.rtcp_port`
    /// before the answer is written.
    pub(crate) needs_rtcp_socket: bool,
}

/// Why a re-offer is refused (488; the call goes on as it was).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReofferError {
    /// Nothing in the offer sluice could answer.
    #[error(transparent)]
    Sdp(#[from] SdpError),
    /// RTP ↔ SRTP.
    #[error(transparent)]
    Security(#[from] RekeyError),
    /// A key of ours could not be made.
    #[error("the system random generator failed")]
    Random,
    /// The offered key cannot key SRTP.
    #[error("bad SRTP key: {0}")]
    Key(#[from] SrtpError),
}

/// The bridge's codec for what SDP negotiated (`negotiate` only picks
/// these four).
pub(crate) fn caller_codec(codec: Codec) -> CallerCodec {
    match codec {
        Codec::Opus => CallerCodec::Opus,
        Codec::G722 => CallerCodec::G722,
        Codec::Pcma => CallerCodec::G711(G711::A),
        Codec::Pcmu | Codec::Other => CallerCodec::G711(G711::Mu),
    }
}

/// Decides the answer to `offer`, a re-offer in the call `session` holds.
/// `fill_key` fills a new key of ours (false: the random source failed).
pub(crate) fn reanswer(
    session: &Session,
    offer: &MediaOffer,
    fill_key: &mut dyn FnMut(&mut [u8]) -> bool,
) -> Result<Reanswer, ReofferError> {
    let negotiated = negotiate_keeping(offer, Some(session.answer.codec.codec))?;
    let current = session
        .caller_key
        .as_ref()
        .map(|(profile, key)| (*profile, &key[..]));
    let mut next = session.clone();
    let mut rekey = None;
    match (
        key_change(current, negotiated.crypto.as_ref())?,
        &negotiated.crypto,
    ) {
        (Some(KeyChange::Keep { tag }), _) => {
            if let Some((old, ..)) = &mut next.answer.crypto {
                *old = tag;
            }
        }
        (Some(KeyChange::New), Some(offered)) => {
            let mut material = vec![0u8; offered.profile.key_material_len()];
            if !fill_key(&mut material) {
                return Err(ReofferError::Random);
            }
            let theirs = MasterKey::new(offered.profile, &offered.key_material)?;
            let ours = MasterKey::new(offered.profile, &material)?;
            next.answer.crypto = Some((offered.tag, offered.profile, material));
            next.caller_key = Some((offered.profile, offered.key_material.clone()));
            rekey = Some((theirs, ours));
        }
        _ => {}
    }
    let was_muxed = session.answer.rtcp_mux;
    let answer = &mut next.answer;
    answer.codec = negotiated.codec;
    answer.telephone_event = negotiated.telephone_event;
    answer.telephone_events = negotiated.telephone_events;
    answer.telephone_event_clock = negotiated.telephone_event_clock;
    answer.direction = negotiated.direction;
    answer.rtcp_mux = negotiated.rtcp_mux;
    if negotiated.rtcp_mux {
        answer.rtcp_port = None;
    }
    // RFC 3264 §8: the same session id, the version one up.
    answer.session_version = answer.session_version.wrapping_add(1);
    let needs_rtcp_socket = was_muxed && !negotiated.rtcp_mux;
    Ok(Reanswer {
        update: MediaUpdate {
            remote: negotiated.remote,
            rtcp: negotiated.rtcp,
            held: offer.held,
            rekey,
            codec: caller_codec(negotiated.codec.codec),
            payload_type: negotiated.codec.pt,
            telephone_event: negotiated.telephone_event,
            opus: offer.opus,
            rtcp_mux: negotiated.rtcp_mux,
            rtcp_socket: None,
        },
        session: next,
        needs_rtcp_socket,
    })
}

/// Answers `offer` in the call `session` holds, for the I/O edge: binds
/// the RTCP socket a removed rtcp-mux needs, commits the new session and
/// returns the answer's SDP and the pool's update; or the status that
/// refuses the re-INVITE (488 for what [`reanswer`] refuses, 500 when no
/// socket can be bound), the call going on as it was.
pub(crate) fn answer_reoffer(
    session: &mut Session,
    offer: &MediaOffer,
    media_ip: IpAddr,
) -> Result<(String, MediaUpdate), (u16, &'static str)> {
    let rng = SystemRandom::new();
    let mut plan = reanswer(session, offer, &mut |key| rng.fill(key).is_ok()).map_err(|e| {
        tracing::info!("re-INVITE refused: {e}");
        (488, "Not Acceptable Here")
    })?;
    if plan.needs_rtcp_socket {
        let answer = &mut plan.session.answer;
        let (port, socket) = bind_rtcp(media_ip, answer.port)
            .and_then(|socket| Ok((socket.local_addr()?.port(), socket)))
            .map_err(|e| {
                tracing::warn!("re-INVITE: no RTCP socket ({e})");
                (500, "Server Internal Error")
            })?;
        answer.rtcp_port = Some(port);
        plan.update.rtcp_socket = Some(socket);
    }
    let sdp = build_answer(&plan.session.answer);
    *session = plan.session;
    Ok((sdp, plan.update))
}

/// What a dialed call's far-end re-offers are answered against: our
/// offer `ours` as sent (its address, port, key, `o=` line) and the far
/// end's answer to it (codec, telephone-event, its key, rtcp-mux). `None`
/// when either cannot be read.
pub(crate) fn dialed_session(ours: &str, answer: &MediaOffer) -> Option<Session> {
    let offered = parse_offer(ours.as_bytes()).ok()?;
    let (session_id, session_version) = origin(ours)?;
    let agreed = negotiate(answer).ok()?;
    let tag = agreed.crypto.as_ref().map(|c| c.tag);
    let crypto = offered
        .crypto
        .iter()
        .find(|c| Some(c.tag) == tag)
        .map(|c| (c.tag, c.profile, c.key_material.clone()));
    Some(Session {
        answer: AnswerSpec {
            address: offered.connection,
            port: offered.port,
            codec: agreed.codec,
            telephone_event: agreed.telephone_event,
            telephone_events: agreed.telephone_events,
            telephone_event_clock: agreed.telephone_event_clock,
            crypto,
            direction: agreed.direction,
            session_id,
            session_version,
            rtcp_mux: agreed.rtcp_mux,
            rtcp_port: offered.rtcp.map(|(port, _)| port),
        },
        caller_key: agreed.crypto.map(|c| (c.profile, c.key_material)),
    })
}

/// The session id and version of an SDP's `o=` line (RFC 4566 §5.2).
fn origin(sdp: &str) -> Option<(u64, u64)> {
    let line = sdp.lines().find_map(|l| l.strip_prefix("o="))?;
    let mut fields = line.split_ascii_whitespace().skip(1);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

impl CallSlot {
    /// Applies a re-offer's update on the call's pool thread; true when
    /// the call's mix rate changed (the pool moves it to that mix).
    pub(crate) fn reoffer(&mut self, mut update: MediaUpdate, now: Instant) -> bool {
        let socket = update.rtcp_socket.take();
        let moved = self.call.reoffer(&update, now);
        if update.rtcp_mux {
            // RFC 5761: from now on RTCP comes and goes on the RTP port.
            self.caller_rtcp = None;
        } else if let Some(socket) = socket {
            self.caller_rtcp = Some(socket);
        }
        moved
    }
}

/// Binds the caller's RTCP socket next to its RTP port `rtp_port`: RTP + 1
/// where free (RFC 3550 §11), else any port (the answer then names it with
/// `a=rtcp`, RFC 3605). Non-blocking, as the pool reads it.
pub(crate) fn bind_rtcp(ip: IpAddr, rtp_port: u16) -> std::io::Result<UdpSocket> {
    let socket = rtp_port
        .checked_add(1)
        .and_then(|next| UdpSocket::bind(SocketAddr::new(ip, next)).ok())
        .map_or_else(|| UdpSocket::bind(SocketAddr::new(ip, 0)), Ok)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::sip::sdp::{Direction, OfferedCodec};

    const SUITE: SrtpProfile = SrtpProfile::AesCm128HmacSha1_80;

    /// A call that answered PCMU (pt 0) with telephone-event 101, RTCP on
    /// RTP + 1, plain RTP or SDES with `key`.
    fn session(key: Option<u8>) -> Session {
        Session {
            answer: AnswerSpec {
                address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
                port: 30_000,
                codec: OfferedCodec {
                    pt: 0,
                    codec: Codec::Pcmu,
                },
                telephone_event: Some(101),
                telephone_events: 0xFFFF,
                telephone_event_clock: 8000,
                crypto: key.map(|_| (1, SUITE, vec![0xAA; 30])),
                direction: Direction::SendRecv,
                session_id: 77,
                session_version: 1,
                rtcp_mux: false,
                rtcp_port: Some(30_001),
            },
            caller_key: key.map(|k| (SUITE, vec![k; 30])),
        }
    }

    fn offer(m: &str, extra: &str) -> MediaOffer {
        parse_offer(
            format!(
                "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                 {m}\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n{extra}"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn inline(fill: u8) -> String {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD.encode([fill; 30]);
        format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n")
    }

    fn no_random(_: &mut [u8]) -> bool {
        panic!("no key of ours is needed here")
    }

    #[test]
    fn a_hold_keeps_codec_and_keys_and_answers_recvonly() {
        let s = session(Some(1));
        let held = offer(
            "m=audio 4000 RTP/SAVP 0 8 101",
            &(inline(1) + "a=sendonly\r\n"),
        );
        let r = reanswer(&s, &held, &mut no_random).unwrap();
        assert!(r.update.held);
        assert!(r.update.rekey.is_none());
        assert_eq!(r.update.codec, CallerCodec::G711(G711::Mu));
        assert_eq!(r.session.answer.direction, Direction::RecvOnly);
        assert_eq!(r.session.answer.crypto, s.answer.crypto);
        assert_eq!(r.session.answer.session_id, 77);
        assert_eq!(r.session.answer.session_version, 2);
        assert!(!r.needs_rtcp_socket);
        assert_eq!(r.update.remote, "10.0.0.1:4000".parse().unwrap());
        assert_eq!(r.update.rtcp, "10.0.0.1:4001".parse().unwrap());
    }

    #[test]
    fn a_new_key_gets_a_new_key_of_ours() {
        let s = session(Some(1));
        let rekeyed = offer("m=audio 4000 RTP/SAVP 0 101", &inline(2));
        let r = reanswer(&s, &rekeyed, &mut |buf| {
            buf.fill(0xBB);
            true
        })
        .unwrap();
        assert!(r.update.rekey.is_some());
        assert_eq!(r.session.caller_key, Some((SUITE, vec![2; 30])));
        assert_eq!(r.session.answer.crypto, Some((1, SUITE, vec![0xBB; 30])));
        // The random source failing refuses the re-offer; nothing changed.
        assert!(matches!(
            reanswer(&s, &rekeyed, &mut |_| false),
            Err(ReofferError::Random)
        ));
    }

    #[test]
    fn another_codec_is_switched_to_and_answered() {
        let s = session(None);
        // PCMU → PCMA: the 200 answers PCMA, the call switches law.
        let r = reanswer(&s, &offer("m=audio 4000 RTP/AVP 8 101", ""), &mut no_random).unwrap();
        assert_eq!(r.update.codec, CallerCodec::G711(G711::A));
        assert_eq!(r.update.payload_type, 8);
        assert!(build_answer(&r.session.answer).contains("m=audio 30000 RTP/AVP 8 101\r\n"));
        // G.711 → Opus (its own payload type): the call moves to 48 kHz.
        let opus = offer(
            "m=audio 4000 RTP/AVP 96 101",
            "a=rtpmap:96 opus/48000/2\r\n",
        );
        let r = reanswer(&s, &opus, &mut no_random).unwrap();
        assert_eq!(r.update.codec, CallerCodec::Opus);
        assert_eq!(r.update.payload_type, 96);
        assert_eq!(r.update.codec.rate(), 48_000);
        let sdp = build_answer(&r.session.answer);
        assert!(sdp.contains("a=rtpmap:96 opus/48000/2\r\n"), "{sdp}");
        // Still offered: kept, even next to a codec sluice prefers; a new
        // payload type number for it is taken.
        let both = offer(
            "m=audio 4000 RTP/AVP 9 100 101",
            "a=rtpmap:100 PCMU/8000\r\n",
        );
        let r = reanswer(&s, &both, &mut no_random).unwrap();
        assert_eq!(r.update.codec, CallerCodec::G711(G711::Mu));
        assert_eq!(r.update.payload_type, 100);
        // Nothing sluice takes: 488, as for a new call.
        let g729 = offer("m=audio 4000 RTP/AVP 18 101", "a=rtpmap:18 G729/8000\r\n");
        assert!(matches!(
            reanswer(&s, &g729, &mut no_random),
            Err(ReofferError::Sdp(SdpError::NoCommonCodec))
        ));
    }

    #[test]
    fn rtcp_mux_added_and_removed_moves_rtcp() {
        let s = session(None);
        let muxed = offer("m=audio 4000 RTP/AVP 0 101", "a=rtcp-mux\r\n");
        let r = reanswer(&s, &muxed, &mut no_random).unwrap();
        assert!(r.update.rtcp_mux);
        assert!(!r.needs_rtcp_socket, "the RTCP socket is closed, not bound");
        assert_eq!(r.update.rtcp, "10.0.0.1:4000".parse().unwrap());
        assert_eq!(r.session.answer.rtcp_port, None);
        assert!(build_answer(&r.session.answer).contains("a=rtcp-mux\r\n"));
        // And back: RTCP needs its own socket again, named by the answer.
        let r = reanswer(
            &r.session,
            &offer("m=audio 4000 RTP/AVP 0 101", ""),
            &mut no_random,
        )
        .unwrap();
        assert!(!r.update.rtcp_mux);
        assert!(r.needs_rtcp_socket);
        assert_eq!(r.update.rtcp, "10.0.0.1:4001".parse().unwrap());
        assert!(!build_answer(&r.session.answer).contains("rtcp-mux"));
        // Unmuxed and staying so: the socket stays, nothing to bind.
        let r = reanswer(&s, &offer("m=audio 4000 RTP/AVP 0 101", ""), &mut no_random).unwrap();
        assert!(!r.needs_rtcp_socket);
        assert_eq!(r.session.answer.rtcp_port, Some(30_001));
    }

    #[test]
    fn rtp_and_srtp_do_not_switch() {
        let plain = session(None);
        let secure = offer("m=audio 4000 RTP/SAVP 0 101", &inline(1));
        assert!(matches!(
            reanswer(&plain, &secure, &mut no_random),
            Err(ReofferError::Security(RekeyError::SecurityChanged))
        ));
        let srtp = session(Some(1));
        let downgrade = offer("m=audio 4000 RTP/AVP 0 101", "");
        assert!(matches!(
            reanswer(&srtp, &downgrade, &mut no_random),
            Err(ReofferError::Security(RekeyError::SecurityChanged))
        ));
    }

    #[test]
    fn a_dialed_call_answers_the_far_ends_reoffer_against_its_own_offer() {
        use crate::sip::sdp::{OfferSpec, make_audio_offer};
        let ours = make_audio_offer(&OfferSpec {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 40_000,
            rtcp_mux: false,
            rtcp_port: None,
            crypto: Some((1, SUITE, vec![0xAA; 30])),
            session_id: 4242,
            session_version: 1,
        });
        let answer = offer("m=audio 6000 RTP/SAVP 8 101", &inline(3));
        let mut session = dialed_session(&ours, &answer).expect("readable");
        assert_eq!(session.answer.port, 40_000);
        assert_eq!(session.answer.codec.codec, Codec::Pcma);
        assert_eq!(session.answer.crypto, Some((1, SUITE, vec![0xAA; 30])));
        assert_eq!(session.caller_key, Some((SUITE, vec![3; 30])));
        // The far end holds: same keys, recvonly, o= 4242 version 2.
        let held = offer(
            "m=audio 6000 RTP/SAVP 8 101",
            &(inline(3) + "a=sendonly\r\n"),
        );
        let (sdp, update) =
            answer_reoffer(&mut session, &held, IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        assert!(update.held && update.rekey.is_none());
        assert!(
            sdp.contains("o=sluice 4242 2 IN IP4 127.0.0.1\r\n"),
            "{sdp}"
        );
        assert!(sdp.contains("a=recvonly\r\n"));
        assert!(sdp.contains("m=audio 40000 RTP/SAVP 8 101\r\n"));
        assert_eq!(session.answer.session_version, 2, "committed");
        // Plain RTP now: refused, the session unchanged.
        let plain = offer("m=audio 6000 RTP/AVP 8 101", "");
        assert_eq!(
            answer_reoffer(&mut session, &plain, IpAddr::V4(Ipv4Addr::LOCALHOST)).err(),
            Some((488, "Not Acceptable Here"))
        );
        assert_eq!(session.answer.session_version, 2);
        // Our own SDP unreadable: no session (re-INVITEs then get 488).
        assert!(dialed_session("garbage", &answer).is_none());
    }

    #[test]
    fn the_rtcp_socket_is_bound_next_to_rtp_or_anywhere_when_taken() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let (port, taken) = (0..100)
            .find_map(|_| {
                let rtp = UdpSocket::bind((ip, 0)).ok()?;
                let port = rtp.local_addr().ok()?.port();
                let next = UdpSocket::bind((ip, port.checked_add(1)?)).ok()?;
                Some((port, (rtp, next)))
            })
            .expect("two adjacent free ports on loopback");
        // RTP + 1 is taken: any other port (the answer names it).
        let elsewhere = bind_rtcp(ip, port).unwrap();
        let got = elsewhere.local_addr().unwrap().port();
        assert!(got != port && got != port + 1, "{got}");
        let mut buf = [0u8; 4];
        assert_eq!(
            elsewhere.recv_from(&mut buf).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
        // Free again: RTP + 1.
        drop(taken.1);
        let next = bind_rtcp(ip, port).unwrap();
        assert_eq!(next.local_addr().unwrap().port(), port + 1);
    }
}
