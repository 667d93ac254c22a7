//! The ICE-lite agent of one WebRTC session (RFC 8445 §2.5 lite, §7.3
//! answering checks; RFC 7675 consent freshness), sans-IO.
//!
//! The relay never sends checks: it answers the browser's Binding
//! requests whose USERNAME is `<our ufrag>:<their ufrag>` and whose
//! MESSAGE-INTEGRITY verifies under our password, and latches the 5-tuple
//! a check with USE-CANDIDATE came from (the browser is always the
//! controlling agent against a lite one). Every valid check on the
//! selected address refreshes consent; with none for
//! [`CONSENT_TIMEOUT`] the agent stops naming an address to send to
//! until the browser nominates again. A check that fails any test is a
//! [`StunDrop`]: it is answered with nothing and moves nothing.
//!
//! Drive it with [`IceLite::handle_stun`] for each STUN datagram routed to
//! the session, [`IceLite::poll_timeout`] / [`IceLite::handle_timeout`]
//! for consent, and [`IceLite::poll_event`] after each of them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::stun::{Class, METHOD_BINDING, MessageWriter, StunError, StunMessage};

/// RFC 7675 §5.1: consent is lost after 30 s without a valid check.
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a STUN datagram routed to the media port was dropped. Bounded:
/// each is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunDrop {
    /// Not a well-formed STUN message (framing, FINGERPRINT).
    Malformed,
    /// A STUN message, but not a Binding request (indications, responses).
    NotBindingRequest,
    /// No FINGERPRINT (RFC 8445 §7.2.2 requires one on every check).
    NoFingerprint,
    /// USERNAME missing or naming no session of ours.
    UnknownUsername,
    /// No MESSAGE-INTEGRITY.
    NoIntegrity,
    /// MESSAGE-INTEGRITY does not verify under the session's password.
    BadIntegrity,
    /// The response does not fit the caller's buffer.
    BufferTooSmall,
}

impl StunDrop {
    /// Every reason, for metric registration.
    pub const ALL: [Self; 7] = [
        Self::Malformed,
        Self::NotBindingRequest,
        Self::NoFingerprint,
        Self::UnknownUsername,
        Self::NoIntegrity,
        Self::BadIntegrity,
        Self::BufferTooSmall,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::NotBindingRequest => "not_binding_request",
            Self::NoFingerprint => "no_fingerprint",
            Self::UnknownUsername => "unknown_username",
            Self::NoIntegrity => "no_integrity",
            Self::BadIntegrity => "bad_integrity",
            Self::BufferTooSmall => "buffer_too_small",
        }
    }
}

impl From<StunError> for StunDrop {
    fn from(e: StunError) -> Self {
        match e {
            StunError::NoIntegrity => Self::NoIntegrity,
            StunError::BadIntegrity => Self::BadIntegrity,
            StunError::BufferTooSmall => Self::BufferTooSmall,
            StunError::BadLength
            | StunError::NotStun
            | StunError::BadAttribute
            | StunError::BadFingerprint => Self::Malformed,
        }
    }
}

/// What the agent tells its owner, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceEvent {
    /// The browser nominated this address (first time or a new one):
    /// media goes there from now on.
    Selected(SocketAddr),
    /// No valid check for [`CONSENT_TIMEOUT`]: stop sending.
    ConsentExpired,
}

/// A valid check that was answered: the response is in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    /// Length of the Binding success response written.
    pub len: usize,
}

/// The ICE-lite side of one session.
#[derive(Debug)]
pub struct IceLite {
    local_ufrag: String,
    local_pwd: String,
    remote_ufrag: String,
    selected: Option<SocketAddr>,
    last_valid: Option<Instant>,
    /// Addresses that passed a check (most recent last), bounded.
    validated: Vec<SocketAddr>,
    events: VecDeque<IceEvent>,
}

/// Most addresses one session remembers as validated (a browser has a
/// handful of candidates; the oldest is forgotten first).
const MAX_VALIDATED: usize = 8;

impl IceLite {
    /// An agent with our credentials and the browser's ufrag (from its offer).
    pub fn new(local_ufrag: String, local_pwd: String, remote_ufrag: String) -> Self {
        Self {
            local_ufrag,
            local_pwd,
            remote_ufrag,
            selected: None,
            last_valid: None,
            validated: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// Whether `addr` has passed an authenticated check: DTLS is only
    /// accepted from such an address (RFC 8445 §7.3: media and DTLS flow
    /// on validated pairs).
    pub fn is_validated(&self, addr: SocketAddr) -> bool {
        self.validated.contains(&addr)
    }

    /// Our ufrag (the first half of every check's USERNAME).
    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// Where media goes now: the nominated address while consent holds.
    pub fn selected(&self) -> Option<SocketAddr> {
        self.selected
    }

    /// Handles one STUN datagram from `from` received at `now`. A valid
    /// Binding request is answered into `out` (send `out[..len]` back to
    /// `from`); anything else is a drop reason and changes nothing.
    pub fn handle_stun(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Result<Answered, StunDrop> {
        let message = StunMessage::parse(datagram).map_err(StunDrop::from)?;
        if message.class() != Class::Request || message.method() != METHOD_BINDING {
            return Err(StunDrop::NotBindingRequest);
        }
        if !message.has_fingerprint() {
            return Err(StunDrop::NoFingerprint);
        }
        if !self.username_matches(message.username().ok_or(StunDrop::UnknownUsername)?) {
            return Err(StunDrop::UnknownUsername);
        }
        message
            .verify_integrity(self.local_pwd.as_bytes())
            .map_err(StunDrop::from)?;
        // Authenticated from here on: only now may state move.
        let len = MessageWriter::new(
            out,
            Class::Success,
            METHOD_BINDING,
            message.transaction_id(),
        )
        .xor_mapped_address(from)
        .integrity(self.local_pwd.as_bytes())
        .fingerprint()
        .finish()
        .map_err(StunDrop::from)?;
        if let Some(i) = self.validated.iter().position(|a| *a == from) {
            self.validated.remove(i);
        } else if self.validated.len() == MAX_VALIDATED {
            self.validated.remove(0);
        }
        self.validated.push(from);
        if message.use_candidate() && self.selected != Some(from) {
            self.selected = Some(from);
            self.events.push_back(IceEvent::Selected(from));
        }
        if self.selected == Some(from) {
            self.last_valid = Some(now);
        }
        Ok(Answered { len })
    }

    /// When [`IceLite::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.selected?;
        self.last_valid.map(|t| t + CONSENT_TIMEOUT)
    }

    /// Expires consent if `now` is past the deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|deadline| now >= deadline) {
            self.selected = None;
            self.last_valid = None;
            self.events.push_back(IceEvent::ConsentExpired);
        }
    }

    /// The next event, if any; drain after every `handle_*` call.
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }

    fn username_matches(&self, username: &[u8]) -> bool {
        let local = self.local_ufrag.as_bytes();
        let remote = self.remote_ufrag.as_bytes();
        username.len() == local.len() + 1 + remote.len()
            && username.starts_with(local)
            && username[local.len()] == b':'
            && username.ends_with(remote)
    }
}

/// The local ufrag a check is addressed to (USERNAME up to the colon),
/// so the media port can route a check from an unknown address to its
/// session before any state is touched.
pub fn addressed_ufrag(datagram: &[u8]) -> Option<&[u8]> {
    let message = StunMessage::parse(datagram).ok()?;
    let username = message.username()?;
    let colon = username.iter().position(|&b| b == b':')?;
    Some(&username[..colon])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::attr;

    const L_UFRAG: &str = "sluice01";
    const L_PWD: &str = "relaypasswordrelaypassword";
    const R_UFRAG: &str = "brws";

    fn agent() -> IceLite {
        IceLite::new(L_UFRAG.into(), L_PWD.into(), R_UFRAG.into())
    }

    fn check(username: &str, pwd: &str, use_candidate: bool, txid: u8) -> Vec<u8> {
        let mut out = vec![0u8; 256];
        let mut w = MessageWriter::new(&mut out, Class::Request, METHOD_BINDING, [txid; 12]);
        w.attribute(attr::USERNAME, username.as_bytes())
            .attribute(attr::PRIORITY, &0x6e00_01ffu32.to_be_bytes())
            .attribute(attr::ICE_CONTROLLING, &[7; 8]);
        if use_candidate {
            w.attribute(attr::USE_CANDIDATE, &[]);
        }
        let len = w.integrity(pwd.as_bytes()).fingerprint().finish().unwrap();
        out.truncate(len);
        out
    }

    fn good(use_candidate: bool, txid: u8) -> Vec<u8> {
        check(&format!("{L_UFRAG}:{R_UFRAG}"), L_PWD, use_candidate, txid)
    }

    const A: &str = "127.0.0.1:50000";
    const B: &str = "127.0.0.1:50001";

    #[test]
    fn a_valid_check_is_answered_with_the_mapped_address_and_integrity() {
        let now = Instant::now();
        let mut ice = agent();
        let mut out = [0u8; 256];
        let from: SocketAddr = A.parse().unwrap();
        let r = ice
            .handle_stun(now, from, &good(false, 1), &mut out)
            .unwrap();
        let resp = StunMessage::parse(&out[..r.len]).unwrap();
        assert_eq!(resp.class(), Class::Success);
        assert_eq!(resp.transaction_id(), [1; 12]);
        assert_eq!(resp.xor_mapped_address(), Some(from));
        resp.verify_integrity(L_PWD.as_bytes()).unwrap();
        assert!(resp.has_fingerprint());
        // No USE-CANDIDATE yet: nothing selected.
        assert_eq!(ice.selected(), None);
        assert_eq!(ice.poll_event(), None);
        assert!(ice.is_validated(from));
        assert!(!ice.is_validated(B.parse().unwrap()));
    }

    #[test]
    fn use_candidate_latches_and_a_new_nomination_moves_the_latch() {
        let now = Instant::now();
        let mut ice = agent();
        let mut out = [0u8; 256];
        let (a, b) = (A.parse().unwrap(), B.parse().unwrap());
        ice.handle_stun(now, a, &good(true, 1), &mut out).unwrap();
        assert_eq!(ice.selected(), Some(a));
        assert_eq!(ice.poll_event(), Some(IceEvent::Selected(a)));
        // The same nomination again is no new event.
        ice.handle_stun(now, a, &good(true, 2), &mut out).unwrap();
        assert_eq!(ice.poll_event(), None);
        ice.handle_stun(now, b, &good(true, 3), &mut out).unwrap();
        assert_eq!(ice.selected(), Some(b));
        assert_eq!(ice.poll_event(), Some(IceEvent::Selected(b)));
    }

    #[test]
    fn a_check_failing_integrity_never_moves_the_latch() {
        let now = Instant::now();
        let mut ice = agent();
        let mut out = [0u8; 256];
        let (a, b) = (A.parse().unwrap(), B.parse().unwrap());
        ice.handle_stun(now, a, &good(true, 1), &mut out).unwrap();
        ice.poll_event();
        let forged = check(&format!("{L_UFRAG}:{R_UFRAG}"), "guessed", true, 2);
        assert_eq!(
            ice.handle_stun(now, b, &forged, &mut out),
            Err(StunDrop::BadIntegrity)
        );
        assert_eq!(ice.selected(), Some(a));
        assert_eq!(ice.poll_event(), None);
        assert!(!ice.is_validated(b), "a forged check validates nothing");
        // Nor does a check altered in flight whose FINGERPRINT was redone.
        let mut tampered = good(true, 3);
        let n = tampered.len();
        tampered[n - 20] ^= 1; // inside MESSAGE-INTEGRITY's value
        let crc = crc32fast::hash(&tampered[..n - 8]) ^ 0x5354_554E;
        tampered[n - 4..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            ice.handle_stun(now, b, &tampered, &mut out),
            Err(StunDrop::BadIntegrity)
        );
        assert_eq!(ice.selected(), Some(a));
        // And a check without FINGERPRINT is refused before integrity.
        let mut bare = [0u8; 128];
        let len = MessageWriter::new(&mut bare, Class::Request, METHOD_BINDING, [4; 12])
            .attribute(attr::USERNAME, format!("{L_UFRAG}:{R_UFRAG}").as_bytes())
            .attribute(attr::USE_CANDIDATE, &[])
            .integrity(L_PWD.as_bytes())
            .finish()
            .unwrap();
        assert_eq!(
            ice.handle_stun(now, b, &bare[..len], &mut out),
            Err(StunDrop::NoFingerprint)
        );
        assert_eq!(ice.selected(), Some(a));
    }

    #[test]
    fn wrong_usernames_and_non_requests_are_dropped_with_their_reason() {
        let now = Instant::now();
        let mut ice = agent();
        let mut out = [0u8; 256];
        let a = A.parse().unwrap();
        for name in [
            "other:brws",
            "sluice01:other",
            "sluice01brws",
            "sluice01:brws:x",
        ] {
            assert_eq!(
                ice.handle_stun(now, a, &check(name, L_PWD, true, 1), &mut out),
                Err(StunDrop::UnknownUsername),
                "{name}"
            );
        }
        let mut ind = [0u8; 64];
        let len = MessageWriter::new(&mut ind, Class::Indication, METHOD_BINDING, [0; 12])
            .fingerprint()
            .finish()
            .unwrap();
        assert_eq!(
            ice.handle_stun(now, a, &ind[..len], &mut out),
            Err(StunDrop::NotBindingRequest)
        );
        assert_eq!(
            ice.handle_stun(now, a, &[0, 1, 0, 0], &mut out),
            Err(StunDrop::Malformed)
        );
        let mut small = [0u8; 40];
        assert_eq!(
            ice.handle_stun(now, a, &good(true, 1), &mut small),
            Err(StunDrop::BufferTooSmall)
        );
        assert_eq!(ice.selected(), None, "not even the last one latched");
    }

    #[test]
    fn consent_expires_30_s_after_the_last_valid_check_on_simulated_time() {
        let t0 = Instant::now();
        let mut ice = agent();
        let mut out = [0u8; 256];
        let (a, b) = (A.parse().unwrap(), B.parse().unwrap());
        assert_eq!(ice.poll_timeout(), None, "nothing to expire before a latch");
        ice.handle_stun(t0, a, &good(true, 1), &mut out).unwrap();
        ice.poll_event();
        assert_eq!(ice.poll_timeout(), Some(t0 + CONSENT_TIMEOUT));
        // Checks every 5 s keep it alive.
        for i in 1..=10u8 {
            let t = t0 + Duration::from_secs(5 * u64::from(i));
            ice.handle_timeout(t);
            ice.handle_stun(t, a, &good(false, i + 1), &mut out)
                .unwrap();
        }
        let last = t0 + Duration::from_secs(50);
        assert_eq!(ice.poll_timeout(), Some(last + CONSENT_TIMEOUT));
        // A valid check from another, un-nominated address refreshes nothing.
        ice.handle_stun(
            last + Duration::from_secs(20),
            b,
            &good(false, 99),
            &mut out,
        )
        .unwrap();
        ice.handle_timeout(last + CONSENT_TIMEOUT - Duration::from_millis(1));
        assert_eq!(ice.selected(), Some(a));
        ice.handle_timeout(last + CONSENT_TIMEOUT);
        assert_eq!(ice.selected(), None);
        assert_eq!(ice.poll_event(), Some(IceEvent::ConsentExpired));
        assert_eq!(ice.poll_timeout(), None);
        ice.handle_timeout(last + CONSENT_TIMEOUT * 2);
        assert_eq!(ice.poll_event(), None, "expires once");
        // A new nomination restores it.
        ice.handle_stun(last + CONSENT_TIMEOUT * 2, a, &good(true, 100), &mut out)
            .unwrap();
        assert_eq!(ice.poll_event(), Some(IceEvent::Selected(a)));
    }

    #[test]
    fn addressed_ufrag_reads_the_first_half_of_username() {
        assert_eq!(addressed_ufrag(&good(false, 1)), Some(L_UFRAG.as_bytes()));
        assert_eq!(addressed_ufrag(&[1, 2, 3]), None);
        assert_eq!(addressed_ufrag(&check("nocolon", L_PWD, false, 1)), None);
    }
}
