//! [`SessionTable`]: which transcodes run. One per (source stream,
//! [`RenditionSpec`]), shared by every receiver of that spec; started with
//! its first receiver, stopped `linger` after its last left (a receiver
//! that comes back within it finds it running), at most `max_sessions` at
//! once. A receiver beyond the limit is refused, counted, and gets the
//! original stream. Sans-IO: fed `now`, it says what to start and stop;
//! the transcoder participant does the work.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::prefs::RenditionSpec;
use crate::rtp::Ssrc;

/// The identity of one transcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// The source stream.
    pub source: u32,
    /// The rendition, as an index into the table's spec list.
    spec: usize,
}

/// What [`SessionTable::subscribe`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// Start this transcode (the receiver is its first); `evicted`, when
    /// set, is an idle one stopped to make room.
    Start {
        /// The new session.
        key: SessionKey,
        /// An idle session to stop first.
        evicted: Option<SessionKey>,
    },
    /// The transcode runs already; the receiver joins it.
    Join(SessionKey),
    /// `max_sessions` transcodes run, none idle: forward the original.
    Refused,
}

#[derive(Debug)]
struct Session {
    receivers: BTreeSet<u64>,
    idle_since: Option<Instant>,
}

/// The running transcodes of a node.
#[derive(Debug)]
pub struct SessionTable {
    max_sessions: usize,
    linger: Duration,
    specs: Vec<RenditionSpec>,
    sessions: BTreeMap<SessionKey, Session>,
    refusals: u64,
}

impl SessionTable {
    /// A table allowing `max_sessions` transcodes, each kept `linger`
    /// after its last receiver.
    #[must_use]
    pub const fn new(max_sessions: usize, linger: Duration) -> Self {
        Self {
            max_sessions,
            linger,
            specs: Vec::new(),
            sessions: BTreeMap::new(),
            refusals: 0,
        }
    }

    fn key(&mut self, source: Ssrc, spec: RenditionSpec) -> SessionKey {
        let index = match self.specs.iter().position(|s| *s == spec) {
            Some(i) => i,
            None => {
                self.specs.push(spec);
                self.specs.len() - 1
            }
        };
        SessionKey {
            source: source.0,
            spec: index,
        }
    }

    /// The spec a session makes.
    #[must_use]
    pub fn spec(&self, key: SessionKey) -> Option<RenditionSpec> {
        self.specs.get(key.spec).copied()
    }

    /// `receiver` needs `spec` of `source`.
    pub fn subscribe(&mut self, source: Ssrc, spec: RenditionSpec, receiver: u64) -> Subscription {
        let key = self.key(source, spec);
        if let Some(session) = self.sessions.get_mut(&key) {
            session.receivers.insert(receiver);
            session.idle_since = None;
            return Subscription::Join(key);
        }
        let mut evicted = None;
        if self.sessions.len() >= self.max_sessions {
            // Make room from the session idle the longest, if any.
            let idle = self
                .sessions
                .iter()
                .filter_map(|(k, s)| s.idle_since.map(|at| (at, *k)))
                .min();
            match idle {
                Some((_, k)) => {
                    self.sessions.remove(&k);
                    evicted = Some(k);
                }
                None => {
                    self.refusals += 1;
                    return Subscription::Refused;
                }
            }
        }
        self.sessions.insert(
            key,
            Session {
                receivers: BTreeSet::from([receiver]),
                idle_since: None,
            },
        );
        Subscription::Start { key, evicted }
    }

    /// `receiver` no longer needs the session (it left, or changed its
    /// preferences); the session idles from `now` when it was the last.
    pub fn unsubscribe(&mut self, now: Instant, key: SessionKey, receiver: u64) {
        if let Some(session) = self.sessions.get_mut(&key) {
            session.receivers.remove(&receiver);
            if session.receivers.is_empty() && session.idle_since.is_none() {
                session.idle_since = Some(now);
            }
        }
    }

    /// The source stream ended: its sessions stop at once.
    pub fn source_gone(&mut self, source: Ssrc) -> Vec<SessionKey> {
        let gone: Vec<SessionKey> = self
            .sessions
            .keys()
            .filter(|k| k.source == source.0)
            .copied()
            .collect();
        for k in &gone {
            self.sessions.remove(k);
        }
        gone
    }

    /// The next idle session whose linger ran out by `now`, removed.
    pub fn poll_stop(&mut self, now: Instant) -> Option<SessionKey> {
        let key = self
            .sessions
            .iter()
            .find(|(_, s)| s.idle_since.is_some_and(|at| now >= at + self.linger))
            .map(|(k, _)| *k)?;
        self.sessions.remove(&key);
        Some(key)
    }

    /// When the next idle session is due to stop.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions
            .values()
            .filter_map(|s| s.idle_since)
            .min()
            .map(|at| at + self.linger)
    }

    /// The receivers of a session.
    pub fn receivers(&self, key: SessionKey) -> impl Iterator<Item = u64> + '_ {
        self.sessions
            .get(&key)
            .into_iter()
            .flat_map(|s| s.receivers.iter().copied())
    }

    /// Sessions running (idle ones included: they hold an encoder).
    #[must_use]
    pub fn active(&self) -> usize {
        self.sessions.len()
    }

    /// Receivers refused because `max_sessions` were running.
    #[must_use]
    pub const fn refusals(&self) -> u64 {
        self.refusals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::PayloadType;
    use crate::video::VideoCodec;

    fn spec(h: u32) -> RenditionSpec {
        RenditionSpec {
            codec: VideoCodec::Vp8,
            payload_type: PayloadType::new(96).unwrap(),
            max_height: Some(h),
            max_kbps: 800,
        }
    }

    #[test]
    fn one_transcode_per_source_and_spec_shared_by_its_receivers() {
        let mut t = SessionTable::new(4, Duration::from_secs(5));
        let Subscription::Start { key, evicted: None } = t.subscribe(Ssrc(1), spec(360), 10) else {
            panic!("first receiver starts it");
        };
        assert_eq!(t.subscribe(Ssrc(1), spec(360), 11), Subscription::Join(key));
        assert_eq!(t.receivers(key).collect::<Vec<_>>(), [10, 11]);
        // Another spec or another source is another transcode.
        assert!(matches!(
            t.subscribe(Ssrc(1), spec(180), 12),
            Subscription::Start { .. }
        ));
        assert!(matches!(
            t.subscribe(Ssrc(2), spec(360), 10),
            Subscription::Start { .. }
        ));
        assert_eq!(t.active(), 3);
        assert_eq!(t.spec(key), Some(spec(360)));
    }

    #[test]
    fn the_last_receiver_leaving_stops_it_after_the_linger() {
        let t0 = Instant::now();
        let linger = Duration::from_secs(5);
        let mut t = SessionTable::new(4, linger);
        let Subscription::Start { key, .. } = t.subscribe(Ssrc(1), spec(360), 10) else {
            panic!()
        };
        t.subscribe(Ssrc(1), spec(360), 11);
        t.unsubscribe(t0 + Duration::from_secs(1), key, 10);
        assert_eq!(t.poll_timeout(), None, "a receiver is left");
        let left = t0 + Duration::from_secs(2);
        t.unsubscribe(left, key, 11);
        assert_eq!(t.poll_timeout(), Some(left + linger));
        assert_eq!(t.poll_stop(left + Duration::from_secs(4)), None);
        // Back within the linger: the same session, no restart.
        assert_eq!(t.subscribe(Ssrc(1), spec(360), 12), Subscription::Join(key));
        t.unsubscribe(left + Duration::from_secs(4), key, 12);
        assert_eq!(t.poll_stop(left + Duration::from_secs(8)), None);
        assert_eq!(t.poll_stop(left + Duration::from_secs(9)), Some(key));
        assert_eq!(t.active(), 0);
    }

    #[test]
    fn beyond_max_sessions_receivers_are_refused_and_counted() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(2, Duration::from_secs(5));
        t.subscribe(Ssrc(1), spec(360), 1);
        let Subscription::Start { key: second, .. } = t.subscribe(Ssrc(2), spec(360), 1) else {
            panic!()
        };
        assert_eq!(t.subscribe(Ssrc(3), spec(360), 1), Subscription::Refused);
        assert_eq!(t.subscribe(Ssrc(3), spec(180), 2), Subscription::Refused);
        assert_eq!(t.refusals(), 2);
        // Joining a running one is never refused.
        assert!(matches!(
            t.subscribe(Ssrc(1), spec(360), 9),
            Subscription::Join(_)
        ));
        // An idle session makes room.
        t.unsubscribe(t0, second, 1);
        match t.subscribe(Ssrc(3), spec(360), 1) {
            Subscription::Start { evicted, .. } => assert_eq!(evicted, Some(second)),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.active(), 2);
        assert_eq!(t.source_gone(Ssrc(1)).len(), 1);
        assert_eq!(t.active(), 1);
    }
}
