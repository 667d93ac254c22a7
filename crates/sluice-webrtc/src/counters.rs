//! The WebRTC counters a media port keeps: STUN drops by reason,
//! handshakes by outcome, consent expiries, slot switches. Atomics the
//! handshake thread and the slot routers bump; the daemon's metrics edge
//! reads [`WebRtcCounters::snapshot`] on scrape and names them for
//! Prometheus. Labels are the bounded enums' `label()`s.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::dtls::DtlsFailure;
use crate::ice::StunDrop;
use crate::session::SessionDrop;
use crate::table::TableDrop;

/// Every handshake outcome, for `sluice_webrtc_handshakes_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeOutcome {
    /// Keys released to a leg.
    Established,
    /// Ended without keys.
    Failed(DtlsFailure),
}

impl HandshakeOutcome {
    /// Every outcome, in metric order.
    pub const ALL: [Self; 7] = [
        Self::Established,
        Self::Failed(DtlsFailure::Timeout),
        Self::Failed(DtlsFailure::FingerprintMismatch),
        Self::Failed(DtlsFailure::Incomplete),
        Self::Failed(DtlsFailure::Keying),
        Self::Failed(DtlsFailure::Protocol),
        Self::Failed(DtlsFailure::Closed),
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Established => "established",
            Self::Failed(why) => why.label(),
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// Why the media port's WebRTC side dropped a datagram, for
/// `sluice_webrtc_drops_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebRtcDrop {
    /// A STUN check failed (see [`StunDrop`]).
    Stun(StunDrop),
    /// A check addressed to no pending session.
    UnknownUfrag,
    /// DTLS from an address no check validated.
    UnknownAddress,
    /// DTLS after its session's handshake ended.
    DtlsAfterEnd,
    /// The handshake thread's queue was full (a storm of handshakes):
    /// the worker dropped the datagram rather than wait.
    QueueFull,
}

impl WebRtcDrop {
    /// Every reason, in metric order.
    pub const ALL: [Self; 11] = [
        Self::Stun(StunDrop::Malformed),
        Self::Stun(StunDrop::NotBindingRequest),
        Self::Stun(StunDrop::NoFingerprint),
        Self::Stun(StunDrop::UnknownUsername),
        Self::Stun(StunDrop::NoIntegrity),
        Self::Stun(StunDrop::BadIntegrity),
        Self::Stun(StunDrop::BufferTooSmall),
        Self::UnknownUfrag,
        Self::UnknownAddress,
        Self::DtlsAfterEnd,
        Self::QueueFull,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Stun(d) => d.label(),
            Self::UnknownUfrag => "unknown_ufrag",
            Self::UnknownAddress => "unknown_address",
            Self::DtlsAfterEnd => "dtls_after_end",
            Self::QueueFull => "queue_full",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|d| *d == self).unwrap_or(0)
    }

    /// The counted reason of a table drop; `None` for RTP, which is the
    /// data plane's and not a WebRTC drop.
    pub fn of(drop: TableDrop) -> Option<Self> {
        Some(match drop {
            TableDrop::UnknownUfrag => Self::UnknownUfrag,
            TableDrop::UnknownAddress | TableDrop::Session(SessionDrop::DtlsUnvalidated) => {
                Self::UnknownAddress
            }
            TableDrop::Session(SessionDrop::Stun(d)) => Self::Stun(d),
            TableDrop::Session(SessionDrop::DtlsAfterEnd) => Self::DtlsAfterEnd,
            TableDrop::Session(SessionDrop::NotHandshake) => return None,
        })
    }
}

/// The counters.
#[derive(Debug, Default)]
pub struct WebRtcCounters {
    drops: [AtomicU64; WebRtcDrop::ALL.len()],
    handshakes: [AtomicU64; HandshakeOutcome::ALL.len()],
    consent_expiries: AtomicU64,
    slot_switches: AtomicU64,
}

/// A copy of the counters at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcSnapshot {
    /// Drops, by reason, in [`WebRtcDrop::ALL`] order.
    pub drops: Vec<(WebRtcDrop, u64)>,
    /// Handshakes, by outcome, in [`HandshakeOutcome::ALL`] order.
    pub handshakes: Vec<(HandshakeOutcome, u64)>,
    /// Legs that lost consent (RFC 7675).
    pub consent_expiries: u64,
    /// Receive-slot switches.
    pub slot_switches: u64,
}

impl WebRtcCounters {
    /// Counts a dropped datagram.
    pub fn dropped(&self, why: WebRtcDrop) {
        self.drops[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a finished handshake.
    pub fn handshake(&self, outcome: HandshakeOutcome) {
        self.handshakes[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a consent expiry.
    pub fn consent_expired(&self) {
        self.consent_expiries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a slot switch.
    pub fn slot_switched(&self) {
        self.slot_switches.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> WebRtcSnapshot {
        WebRtcSnapshot {
            drops: WebRtcDrop::ALL
                .iter()
                .map(|d| (*d, self.drops[d.index()].load(Ordering::Relaxed)))
                .collect(),
            handshakes: HandshakeOutcome::ALL
                .iter()
                .map(|o| (*o, self.handshakes[o.index()].load(Ordering::Relaxed)))
                .collect(),
            consent_expiries: self.consent_expiries.load(Ordering::Relaxed),
            slot_switches: self.slot_switches.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn labels_are_distinct_and_every_enum_value_has_its_own_counter() {
        let drops: HashSet<&str> = WebRtcDrop::ALL.iter().map(|d| d.label()).collect();
        assert_eq!(drops.len(), WebRtcDrop::ALL.len());
        let outcomes: HashSet<&str> = HandshakeOutcome::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(outcomes.len(), HandshakeOutcome::ALL.len());
        for (i, d) in WebRtcDrop::ALL.iter().enumerate() {
            assert_eq!(d.index(), i);
        }
        for (i, o) in HandshakeOutcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
    }

    #[test]
    fn counts_land_under_their_label() {
        let c = WebRtcCounters::default();
        c.dropped(WebRtcDrop::Stun(StunDrop::BadIntegrity));
        c.dropped(WebRtcDrop::Stun(StunDrop::BadIntegrity));
        c.dropped(WebRtcDrop::of(TableDrop::UnknownAddress).unwrap());
        c.handshake(HandshakeOutcome::Established);
        c.handshake(HandshakeOutcome::Failed(DtlsFailure::Timeout));
        c.consent_expired();
        c.slot_switched();
        c.slot_switched();
        let s = c.snapshot();
        let drops: Vec<(&str, u64)> = s
            .drops
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(d, n)| (d.label(), *n))
            .collect();
        assert_eq!(drops, [("bad_integrity", 2), ("unknown_address", 1)]);
        let hs: Vec<(&str, u64)> = s
            .handshakes
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(o, n)| (o.label(), *n))
            .collect();
        assert_eq!(hs, [("established", 1), ("timeout", 1)]);
        assert_eq!((s.consent_expiries, s.slot_switches), (1, 2));
        assert_eq!(
            WebRtcDrop::of(TableDrop::Session(SessionDrop::NotHandshake)),
            None
        );
    }
}
