//! The UAS's timers (RFC 3261 §17 Table 4, §13.3.1.4): one ordered set of
//! deadlines keyed by what they belong to, so the next wake-up is the first
//! entry and a rescheduled timer replaces its old deadline exactly.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use super::CallId;

/// What a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    /// A server transaction: Timer G (INVITE response retransmit).
    ServerRetransmit(u64),
    /// A server transaction's end: Timer H, I, J, or L (RFC 6026).
    ServerExpire(u64),
    /// Our BYE: Timer E (retransmit).
    ClientRetransmit(u64),
    /// Our BYE: Timer F (give up).
    ClientExpire(u64),
    /// A call's 2xx retransmission (§13.3.1.4).
    Retransmit2xx(CallId),
    /// A call's 2xx went unacknowledged for 64*T1.
    AckTimeout(CallId),
}

/// Deadlines, at most one per key.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    order: BTreeSet<(Instant, TimerKey)>,
    by_key: HashMap<TimerKey, Instant>,
}

impl Timers {
    pub(crate) fn set(&mut self, key: TimerKey, at: Instant) {
        if let Some(old) = self.by_key.insert(key, at) {
            self.order.remove(&(old, key));
        }
        self.order.insert((at, key));
    }

    pub(crate) fn clear(&mut self, key: TimerKey) {
        if let Some(old) = self.by_key.remove(&key) {
            self.order.remove(&(old, key));
        }
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.order.first().map(|(at, _)| *at)
    }

    /// Removes and returns one timer due at `now`, earliest first.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<TimerKey> {
        let &(at, key) = self.order.first()?;
        if at > now {
            return None;
        }
        self.order.remove(&(at, key));
        self.by_key.remove(&key);
        Some(key)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn reschedule_replaces_and_pop_is_ordered() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.set(TimerKey::ServerExpire(1), t0 + Duration::from_secs(5));
        t.set(TimerKey::ServerRetransmit(1), t0 + Duration::from_secs(1));
        t.set(TimerKey::ServerRetransmit(1), t0 + Duration::from_secs(2));
        assert_eq!(t.len(), 2);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(t.pop_due(t0 + Duration::from_secs(1)), None);
        assert_eq!(
            t.pop_due(t0 + Duration::from_secs(9)),
            Some(TimerKey::ServerRetransmit(1))
        );
        t.clear(TimerKey::ServerExpire(1));
        assert_eq!(t.next(), None);
        assert_eq!(t.len(), 0);
    }
}
