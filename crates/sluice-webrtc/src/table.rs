//! Every pending WebRTC session of one media port, and which one a STUN
//! or DTLS datagram belongs to: a check by the ufrag its USERNAME is
//! addressed to, DTLS by the address a check of that session validated.
//! Sans-IO; the handshake thread owns one, fed by the packet workers
//! through a bounded queue (the workers never run a handshake).
//!
//! Drive: [`SessionTable::handle_datagram`] returns the session touched,
//! [`SessionTable::handle_timeout`] lists those whose timer fired; drain
//! each through [`SessionTable::get_mut`] (`poll_transmit`, `poll_event`)
//! and [`SessionTable::remove`] the ones that failed or became legs.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::Instant;

use crate::demux::PacketClass;
use crate::ice::{StunDrop, addressed_ufrag};
use crate::session::{Session, SessionDrop};

/// Why a datagram matched no session, or its session dropped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableDrop {
    /// A check addressed to no session's ufrag, or unparseable STUN.
    UnknownUfrag,
    /// DTLS from an address no session validated.
    UnknownAddress,
    /// The session refused it.
    Session(SessionDrop),
}

/// The table is full: refuse the new session (answer the WHIP/WHEP POST
/// with 503) rather than let half-open handshakes grow without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{max} WebRTC handshakes are already pending")]
pub struct TableFull {
    /// The limit.
    pub max: usize,
}

/// A session under the same ufrag is already pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// See [`TableFull`].
    #[error(transparent)]
    Full(#[from] TableFull),
    /// Ufrags are chosen by the relay, randomly; a clash is a caller bug.
    #[error("a pending session already uses this ufrag")]
    UfragInUse,
}

/// Pending sessions keyed by `K` (whatever the owner calls them).
#[derive(Debug)]
pub struct SessionTable<K> {
    sessions: HashMap<K, Session>,
    by_ufrag: HashMap<String, K>,
    by_addr: HashMap<SocketAddr, K>,
    max: usize,
}

impl<K: Copy + Eq + Hash> SessionTable<K> {
    /// A table of at most `max` pending sessions.
    pub fn new(max: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            max,
        }
    }

    /// How many sessions are pending.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Adds a session (its answer has just been sent).
    pub fn insert(&mut self, key: K, session: Session) -> Result<(), InsertError> {
        if self.by_ufrag.contains_key(session.local_ufrag()) {
            return Err(InsertError::UfragInUse);
        }
        if self.sessions.len() >= self.max && !self.sessions.contains_key(&key) {
            return Err(TableFull { max: self.max }.into());
        }
        if let Some(old) = self.sessions.remove(&key) {
            self.forget(key, &old);
        }
        self.by_ufrag.insert(session.local_ufrag().to_owned(), key);
        self.sessions.insert(key, session);
        Ok(())
    }

    /// Removes a session (failed, established, or its participant deleted).
    pub fn remove(&mut self, key: K) -> Option<Session> {
        let session = self.sessions.remove(&key)?;
        self.forget(key, &session);
        Some(session)
    }

    /// The session under `key`, to drain its transmits and events.
    pub fn get_mut(&mut self, key: K) -> Option<&mut Session> {
        self.sessions.get_mut(&key)
    }

    /// Routes one STUN or DTLS datagram from `from` to its session.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<K, TableDrop> {
        let key = match PacketClass::of(datagram) {
            PacketClass::Stun => {
                let ufrag = addressed_ufrag(datagram).ok_or(TableDrop::UnknownUfrag)?;
                let ufrag = std::str::from_utf8(ufrag).map_err(|_| TableDrop::UnknownUfrag)?;
                *self.by_ufrag.get(ufrag).ok_or(TableDrop::UnknownUfrag)?
            }
            PacketClass::Dtls => *self.by_addr.get(&from).ok_or(TableDrop::UnknownAddress)?,
            PacketClass::Rtp | PacketClass::Other => {
                return Err(TableDrop::Session(SessionDrop::NotHandshake));
            }
        };
        let session = self.sessions.get_mut(&key).ok_or(TableDrop::UnknownUfrag)?;
        session
            .handle_datagram(now, from, datagram)
            .map_err(TableDrop::Session)?;
        if PacketClass::of(datagram) == PacketClass::Stun {
            // An authenticated check: DTLS from this address is this
            // session's (the last session to validate it wins).
            self.by_addr.insert(from, key);
        }
        Ok(key)
    }

    /// Runs every session whose timer is due; pushes their keys to `due`.
    pub fn handle_timeout(&mut self, now: Instant, due: &mut Vec<K>) {
        for (key, session) in &mut self.sessions {
            if session.poll_timeout().is_some_and(|t| t <= now) {
                session.handle_timeout(now);
                due.push(*key);
            }
        }
    }

    /// The earliest timer of any session.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions
            .values()
            .filter_map(Session::poll_timeout)
            .min()
    }

    fn forget(&mut self, key: K, session: &Session) {
        self.by_ufrag.remove(session.local_ufrag());
        self.by_addr.retain(|_, k| *k != key);
    }
}

impl From<StunDrop> for TableDrop {
    fn from(d: StunDrop) -> Self {
        Self::Session(SessionDrop::Stun(d))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::client::{DtlsClient, write_check};
    use crate::dtls::{DtlsConfig, HANDSHAKE_TIMEOUT};
    use crate::identity::DtlsIdentity;
    use crate::session::{MAX_TRANSMIT, SessionEvent, SessionParams};

    const PWD: &str = "relaypasswordrelaypassword";

    fn session(
        config: &DtlsConfig,
        relay: &DtlsIdentity,
        ufrag: &str,
        browser: &DtlsIdentity,
        now: Instant,
    ) -> Session {
        Session::new(
            config,
            relay,
            SessionParams {
                local_ufrag: ufrag.into(),
                local_pwd: PWD.into(),
                remote_ufrag: "brws".into(),
                remote_fingerprint: browser.fingerprint().clone(),
            },
            now,
        )
    }

    fn check(ufrag: &str, pwd: &str) -> Vec<u8> {
        let mut out = vec![0u8; 256];
        let len = write_check(&mut out, [5; 12], ufrag, "brws", pwd, true).unwrap();
        out.truncate(len);
        out
    }

    #[test]
    fn checks_route_by_ufrag_and_dtls_by_the_address_they_validated() {
        let t0 = Instant::now();
        let config = DtlsConfig::new();
        let relay = DtlsIdentity::generate().unwrap();
        let browser = DtlsIdentity::generate().unwrap();
        let mut table = SessionTable::new(8);
        table
            .insert(1u32, session(&config, &relay, "ufragone", &browser, t0))
            .unwrap();
        table
            .insert(2u32, session(&config, &relay, "ufragtwo", &browser, t0))
            .unwrap();
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:6001".parse().unwrap(),
            "127.0.0.1:6002".parse().unwrap(),
        );

        let mut client = DtlsClient::new(&browser, t0);
        client.handle_timeout(t0);
        let hello = client.poll_transmits().remove(0);
        assert_eq!(
            table.handle_datagram(t0, a, &hello),
            Err(TableDrop::UnknownAddress)
        );
        assert_eq!(
            table.handle_datagram(t0, a, &check("nobody", PWD)),
            Err(TableDrop::UnknownUfrag)
        );
        assert_eq!(
            table.handle_datagram(t0, a, &check("ufragtwo", "wrongwrongwrongwrongwrong")),
            Err(StunDrop::BadIntegrity.into())
        );
        assert_eq!(
            table.handle_datagram(t0, a, &hello),
            Err(TableDrop::UnknownAddress),
            "a forged check maps nothing"
        );

        assert_eq!(table.handle_datagram(t0, a, &check("ufragtwo", PWD)), Ok(2));
        assert_eq!(table.handle_datagram(t0, b, &check("ufragone", PWD)), Ok(1));
        assert_eq!(table.handle_datagram(t0, a, &hello), Ok(2));
        let mut buf = [0u8; MAX_TRANSMIT];
        let s2 = table.get_mut(2).unwrap();
        let mut dests = Vec::new();
        while let Some(t) = s2.poll_transmit(&mut buf) {
            dests.push(t.to);
        }
        assert!(
            dests.iter().all(|d| *d == a) && dests.len() >= 2,
            "{dests:?}"
        );
        assert_eq!(
            table
                .get_mut(1)
                .unwrap()
                .poll_transmit(&mut buf)
                .map(|t| t.to),
            Some(b),
            "its STUN answer"
        );

        // Removing a session forgets its ufrag and addresses.
        assert!(table.remove(2).is_some());
        assert_eq!(
            table.handle_datagram(t0, a, &hello),
            Err(TableDrop::UnknownAddress)
        );
        assert_eq!(
            table.handle_datagram(t0, a, &check("ufragtwo", PWD)),
            Err(TableDrop::UnknownUfrag)
        );
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn the_table_is_bounded_and_stalled_handshakes_come_due() {
        let t0 = Instant::now();
        let config = DtlsConfig::new();
        let relay = DtlsIdentity::generate().unwrap();
        let browser = DtlsIdentity::generate().unwrap();
        let mut table = SessionTable::new(2);
        table
            .insert(1u32, session(&config, &relay, "ufragone", &browser, t0))
            .unwrap();
        assert_eq!(
            table.insert(3u32, session(&config, &relay, "ufragone", &browser, t0)),
            Err(InsertError::UfragInUse)
        );
        table
            .insert(2u32, session(&config, &relay, "ufragtwo", &browser, t0))
            .unwrap();
        assert_eq!(
            table.insert(3u32, session(&config, &relay, "ufragthree", &browser, t0)),
            Err(InsertError::Full(TableFull { max: 2 }))
        );
        assert_eq!(table.poll_timeout(), Some(t0 + HANDSHAKE_TIMEOUT));
        let mut due = Vec::new();
        table.handle_timeout(t0 + HANDSHAKE_TIMEOUT - Duration::from_millis(1), &mut due);
        assert!(due.is_empty());
        table.handle_timeout(t0 + HANDSHAKE_TIMEOUT, &mut due);
        due.sort_unstable();
        assert_eq!(due, [1, 2]);
        for key in due {
            let event = table.get_mut(key).unwrap().poll_event();
            assert!(matches!(event, Some(SessionEvent::Failed(_))), "{event:?}");
            table.remove(key);
        }
        assert!(table.is_empty());
        assert_eq!(table.poll_timeout(), None);
    }
}
