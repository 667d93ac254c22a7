//! The rtpengine target: a private `rtpengine` process (Debian's
//! `rtpengine-daemon`) on 127.0.0.1, in userspace (`--table=-1`, no kernel
//! module, no iptables, no redis, no config file), driven over its ng
//! control protocol.
//!
//! rtpengine in offer/answer mode bridges pairs; it has no 1→N fan-out. So
//! [`Rtpengine::admit`] makes one call per (publisher, receiver) pair, where
//! the receivers are every other participant: an `offer` carrying the
//! publisher's SDP, an `answer` carrying the receiver's. Each side keeps one
//! SDES key (RFC 4568) of its own for everything it sends. Whether the
//! profile works over SDES is found out at start by trying it; if not, the
//! target runs plain RTP and says so in [`Target::describe`].
//!
//! Re-encryption, not passthrough: rtpengine 10.5 copies the offerer's
//! crypto lines, keys included, into the offer it writes for the callee,
//! and when both legs then agree on one suite and key it forwards SRTP
//! without touching it (daemon/call.c `__generate_crypto`, and the
//! `must_recrypt` test in media_socket.c). sluice decrypts and re-encrypts
//! every packet, so to measure rtpengine doing the same work the publisher
//! offers its suite twice: tag 1 with its own key, tag 2 with a fresh key
//! per call, and the receiver accepts tag 2. The legs' keys then differ
//! and rtpengine decrypts with the first and encrypts with the second.
//!
//! Module map: [`bencode`] (the encoding), [`ng`] (framing, replies, the
//! blocking UDP client), [`sdp`] (writing offers/answers and reading
//! rtpengine's rewrites).

pub mod bencode;
pub mod ng;
mod ports;
mod process;
pub mod sdp;

use std::net::SocketAddr;

use ring::rand::{SecureRandom, SystemRandom};
use sluice::srtp::{MasterKey, SrtpProfile};

use self::bencode::Value;
use self::ng::{NgClient, NgError};
use self::process::Process;
use self::sdp::{Crypto, Direction, MediaDescription, RelayedMedia, SdpError};
use crate::target::{LegPlan, MeetingSpec, Path, StreamKind, Target, TargetError};

const NAME: &str = "rtpengine";

/// The tag of the publisher's second crypto line, the one the receiver
/// accepts (see the module documentation).
const RELAY_TAG: u32 = 2;

/// Why one call could not be set up.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error(transparent)]
    Ng(#[from] NgError),
    #[error("reading rtpengine's SDP: {0}")]
    Sdp(#[from] SdpError),
    #[error("{0}")]
    Keys(&'static str),
}

/// A running rtpengine and what it was started for. Dropping it kills and
/// reaps the process.
#[derive(Debug)]
pub struct Rtpengine {
    process: Process,
    ng: NgClient,
    profile: SrtpProfile,
    /// Whether `profile` goes over SDES (else plain RTP).
    sdes: bool,
    rng: SystemRandom,
}

impl Rtpengine {
    /// Starts rtpengine on free loopback ports and waits (a few seconds at
    /// most) until its ng port answers `ping`, then tries `profile` over
    /// SDES once to learn whether the run can be encrypted. It gets
    /// [`Self::DEFAULT_MEDIA_PORTS`] media ports.
    pub fn start(profile: SrtpProfile) -> Result<Self, TargetError> {
        Self::start_with_ports(profile, Self::DEFAULT_MEDIA_PORTS)
    }

    /// Media ports [`Self::start`] reserves: 4 per call (RTP and RTCP on
    /// both sides), so about 2048 calls.
    pub const DEFAULT_MEDIA_PORTS: u16 = 8192;

    /// As [`Self::start`], with at least `media_ports` media ports (a
    /// multiple of 512 is reserved; instances running side by side never
    /// share one).
    pub fn start_with_ports(profile: SrtpProfile, media_ports: u16) -> Result<Self, TargetError> {
        let Daemon { process, ng } = Daemon::start(media_ports)?;
        let mut engine = Self {
            process,
            ng,
            profile,
            sdes: false,
            rng: SystemRandom::new(),
        };
        engine.sdes = engine.probe_sdes().map_err(|e| TargetError::Start {
            target: NAME,
            reason: format!("the trial offer failed: {e}"),
        })?;
        Ok(engine)
    }

    /// The rtpengine version, as it reports it.
    pub fn version(&self) -> &str {
        self.process.version()
    }

    /// The command line rtpengine runs with.
    pub fn command_line(&self) -> &str {
        self.process.command_line()
    }

    /// Whether media is SRTP with SDES keys (`false`: plain RTP).
    pub fn sdes(&self) -> bool {
        self.sdes
    }

    /// Offers `profile` from a dummy endpoint, as [`Self::bridge`] does,
    /// and looks for it in the SDP rtpengine writes for the callee;
    /// deletes the call again.
    fn probe_sdes(&mut self) -> Result<bool, CallError> {
        let (key, relay_key) = (self.fresh_key()?, self.fresh_key()?);
        let sdp = MediaDescription {
            addr: SocketAddr::from(([127, 0, 0, 1], 9)),
            formats: &[(111, StreamKind::Audio)],
            direction: Direction::SendOnly,
            cryptos: &[
                Crypto { tag: 1, key: &key },
                Crypto {
                    tag: RELAY_TAG,
                    key: &relay_key,
                },
            ],
        }
        .write();
        let call_id = "sluice-bench-sdes-probe";
        let reply = match self.ng.request("offer", &offer(call_id, &sdp, true)) {
            Ok(reply) => reply,
            // A suite it does not know may be refused outright.
            Err(NgError::Refused { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let offered = reply_sdp(&reply).map(|m| {
            m.crypto_tagged(RELAY_TAG)
                .is_some_and(|c| c.suite == self.profile.name())
        });
        self.ng.request("delete", &delete(call_id))?;
        offered
    }

    fn fresh_key(&self) -> Result<MasterKey, CallError> {
        let mut material = vec![0u8; self.profile.key_material_len()];
        self.rng
            .fill(&mut material)
            .map_err(|_| CallError::Keys("the system random source failed"))?;
        // Cannot fail: the length is the profile's own key_material_len.
        MasterKey::new(self.profile, &material).map_err(|_| CallError::Keys("bad key length"))
    }

    /// One call: the publisher at `from` offers, the receiver at `to`
    /// answers. Returns (publisher's path, receiver's path).
    fn bridge(&mut self, call: &CallSpec<'_>) -> Result<(Path, Path), CallError> {
        let relay_key = match call.from_key {
            Some(_) => Some(self.fresh_key()?),
            None => None,
        };
        let offered: Vec<Crypto<'_>> = call
            .from_key
            .into_iter()
            .map(|key| Crypto { tag: 1, key })
            .chain(relay_key.iter().map(|key| Crypto {
                tag: RELAY_TAG,
                key,
            }))
            .collect();
        let offer_sdp = MediaDescription {
            addr: call.from,
            formats: call.formats,
            direction: Direction::SendOnly,
            cryptos: &offered,
        }
        .write();
        let reply = self
            .ng
            .request("offer", &offer(&call.id, &offer_sdp, self.sdes))?;
        // What rtpengine offers the receiver: its port and its key.
        let callee_side = reply_sdp(&reply)?;
        let towards_receiver = match relay_key {
            Some(_) => {
                let line = callee_side
                    .crypto_tagged(RELAY_TAG)
                    .filter(|c| c.suite == self.profile.name())
                    .ok_or(CallError::Keys("rtpengine dropped the second crypto line"))?;
                Some(
                    MasterKey::new(self.profile, &line.key)
                        .map_err(|_| CallError::Keys("rtpengine's key has the wrong length"))?,
                )
            }
            None => None,
        };
        let accepted: Vec<Crypto<'_>> = call
            .to_key
            .into_iter()
            .map(|key| Crypto {
                tag: RELAY_TAG,
                key,
            })
            .collect();
        let answer_sdp = MediaDescription {
            addr: call.to,
            formats: call.formats,
            direction: Direction::RecvOnly,
            cryptos: &accepted,
        }
        .write();
        let reply = self.ng.request("answer", &answer(&call.id, &answer_sdp))?;
        // What rtpengine answers the publisher: where to send, and which
        // of its two keys to send with (the first, its own).
        let caller_side = reply_sdp(&reply)?;
        if call.from_key.is_some() && caller_side.crypto_tagged(1).is_none() {
            return Err(CallError::Keys(
                "rtpengine did not accept the publisher's own key (tag 1)",
            ));
        }
        Ok((
            Path {
                relay: caller_side.addr,
                key: call.from_key.cloned(),
            },
            Path {
                relay: callee_side.addr,
                key: towards_receiver,
            },
        ))
    }
}

/// A bare private rtpengine and an ng client for it, for callers that
/// write their own offers and answers (the dial-in transcoding benchmark,
/// [`crate::dialin`]). Started as [`Rtpengine`] is; dropping it kills and
/// reaps the process.
#[derive(Debug)]
pub struct Daemon {
    process: Process,
    ng: NgClient,
}

impl Daemon {
    /// Starts rtpengine in userspace on loopback with at least
    /// `media_ports` media ports, and waits until it answers `ping`.
    pub fn start(media_ports: u16) -> Result<Self, TargetError> {
        let process = Process::spawn(media_ports.div_ceil(ports::SLOT))?;
        let ng = NgClient::new(process.ng_addr(), process::REQUEST_WAIT, 3).map_err(|e| {
            TargetError::Start {
                target: NAME,
                reason: format!("cannot open a UDP socket for the ng protocol: {e}"),
            }
        })?;
        Ok(Self { process, ng })
    }

    /// Sends one ng request (a dictionary whose `"command"` is `command`)
    /// and returns the reply's dictionary.
    pub fn request(&mut self, command: &str, request: &Value) -> Result<Value, NgError> {
        self.ng.request(command, request)
    }

    /// The rtpengine version, as it reports it.
    pub fn version(&self) -> &str {
        self.process.version()
    }

    /// The command line rtpengine runs with.
    pub fn command_line(&self) -> &str {
        self.process.command_line()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// One (publisher, receiver) pair to bridge.
struct CallSpec<'a> {
    id: String,
    from: SocketAddr,
    to: SocketAddr,
    formats: &'a [(u8, StreamKind)],
    from_key: Option<&'a MasterKey>,
    to_key: Option<&'a MasterKey>,
}

impl Target for Rtpengine {
    fn name(&self) -> &'static str {
        NAME
    }

    fn describe(&self) -> String {
        if self.sdes {
            format!(
                "rtpengine {} userspace, SDES {} (re-encrypted per leg)",
                self.version(),
                self.profile
            )
        } else {
            format!(
                "rtpengine {} userspace, plain RTP (rtpengine cannot do {} over SDES)",
                self.version(),
                self.profile
            )
        }
    }

    fn admit(
        &mut self,
        meeting: &MeetingSpec,
        participants: &[SocketAddr],
    ) -> Result<Vec<LegPlan>, TargetError> {
        let refuse = |reason: String| TargetError::Admit {
            target: NAME,
            meeting: meeting.index,
            reason,
        };
        if participants.len() != meeting.participants() {
            return Err(refuse(format!(
                "{} addresses for {} participants",
                participants.len(),
                meeting.participants()
            )));
        }
        if meeting.profile != self.profile {
            return Err(refuse(format!(
                "the meeting wants {}, this rtpengine was started for {}",
                meeting.profile, self.profile
            )));
        }
        let keys = participants
            .iter()
            .map(|_| self.sdes.then(|| self.fresh_key()).transpose())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refuse(e.to_string()))?;
        let mut plans = vec![LegPlan::default(); participants.len()];
        let mut calls = Vec::new();
        for (p, streams) in meeting.publishers.iter().enumerate() {
            let formats: Vec<(u8, StreamKind)> =
                streams.iter().map(|s| (s.payload_type, s.kind)).collect();
            if formats.is_empty() {
                continue;
            }
            for r in (0..participants.len()).filter(|&r| r != p) {
                let call = CallSpec {
                    id: format!("sluice-bench-{}-{p}-{r}", meeting.index),
                    from: participants[p],
                    to: participants[r],
                    formats: &formats,
                    from_key: keys[p].as_ref(),
                    to_key: keys[r].as_ref(),
                };
                calls.push(call.id.clone());
                match self.bridge(&call) {
                    Ok((send, receive)) => {
                        plans[p].sends.push(send);
                        plans[r].receives.push(receive);
                    }
                    Err(e) => {
                        // Best effort: leave no half-admitted meeting behind.
                        for id in &calls {
                            let _ = self.ng.request("delete", &delete(id));
                        }
                        return Err(refuse(format!("call {}: {e}", call.id)));
                    }
                }
            }
        }
        Ok(plans)
    }

    fn pid(&self) -> Option<u32> {
        Some(self.process.pid())
    }
}

/// The `offer` request: SDP from the publisher, tag `pub`.
fn offer(call_id: &str, sdp: &str, sdes: bool) -> Value {
    let proto = if sdes { "RTP/SAVP" } else { "RTP/AVP" };
    Value::dict([
        ("command", Value::str("offer")),
        ("call-id", Value::str(call_id)),
        ("from-tag", Value::str("pub")),
        ("sdp", Value::str(sdp)),
        ("transport-protocol", Value::str(proto)),
        ("ICE", Value::str("remove")),
        // SDES only: without this rtpengine also offers DTLS-SRTP.
        ("DTLS", Value::str("off")),
        (
            "replace",
            Value::str_list(&["origin", "session-connection"]),
        ),
    ])
}

/// The `answer` request: SDP from the receiver, tag `rcv`.
fn answer(call_id: &str, sdp: &str) -> Value {
    Value::dict([
        ("command", Value::str("answer")),
        ("call-id", Value::str(call_id)),
        ("from-tag", Value::str("pub")),
        ("to-tag", Value::str("rcv")),
        ("sdp", Value::str(sdp)),
        ("ICE", Value::str("remove")),
        ("DTLS", Value::str("off")),
        (
            "replace",
            Value::str_list(&["origin", "session-connection"]),
        ),
    ])
}

/// The `delete` request for a whole call.
fn delete(call_id: &str) -> Value {
    Value::dict([
        ("command", Value::str("delete")),
        ("call-id", Value::str(call_id)),
    ])
}

/// The rewritten SDP in an offer or answer reply.
fn reply_sdp(reply: &Value) -> Result<RelayedMedia, CallError> {
    let sdp = reply
        .field("sdp")
        .and_then(Value::as_str)
        .ok_or(NgError::Malformed("reply has no \"sdp\""))?;
    Ok(RelayedMedia::parse(sdp)?)
}
