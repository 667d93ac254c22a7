//! [`SourceGuard`]: what the UAS lets in from whom, before a request costs
//! any state. Sans-IO, fed `now` like the rest of the UAS.
//!
//! - an allow-list of networks (`[sip] allow`, the trunk's addresses):
//!   datagrams from elsewhere are dropped unanswered, so the SIP port
//!   reflects nothing to a stranger;
//! - a token bucket per source IP on new INVITEs (`invite_rate`,
//!   `invite_burst`): a flood is dropped unanswered once the bucket is dry,
//!   while the other sources' buckets stay full;
//! - a per-source share of the dialog table: calls not yet confirmed by an
//!   ACK (`max_pending_per_source`). An INVITE beyond it is answered 503
//!   without state, so one source that never ACKs cannot take the table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::digest::Credentials;

/// The most source IPs whose buckets are remembered; beyond it, full
/// buckets (sources idle for a while) are forgotten first.
const MAX_SOURCES: usize = 16_384;

/// The limits the UAS applies per source (`[sip]` allow, rates, shares,
/// digest credentials). Replaceable at run time ([`super::Uas::set_limits`]).
#[derive(Debug, Clone)]
pub struct SipLimits {
    /// Networks requests are taken from; empty means none.
    pub allow: Vec<IpNet>,
    /// New INVITEs per second one source may send, on average.
    pub invite_rate: u32,
    /// New INVITEs one source may send in a burst.
    pub invite_burst: u32,
    /// Unconfirmed calls one source may hold.
    pub max_pending_per_source: usize,
    /// Trunk accounts for digest authentication; `None`: no authentication.
    pub credentials: Option<Arc<Credentials>>,
    /// The digest realm.
    pub realm: String,
}

impl SipLimits {
    /// Everyone, at any rate, up to the whole table: what a bare
    /// [`super::Uas`] starts with (tests, fuzzing).
    pub fn unlimited() -> Self {
        Self {
            allow: vec![
                IpNet::V4(ipnet::Ipv4Net::default()),
                IpNet::V6(ipnet::Ipv6Net::default()),
            ],
            invite_rate: u32::MAX,
            invite_burst: u32::MAX,
            max_pending_per_source: usize::MAX,
            credentials: None,
            realm: "sluice".to_owned(),
        }
    }
}

/// A token bucket, in thousandths of a token so integer arithmetic holds
/// fractional refills.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    milli_tokens: u64,
    last: Instant,
}

/// Per-source admission state of the UAS. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct SourceGuard {
    limits: SipLimits,
    buckets: HashMap<IpAddr, Bucket>,
    pending: HashMap<IpAddr, usize>,
}

impl SourceGuard {
    pub(crate) fn new(limits: SipLimits) -> Self {
        Self {
            limits,
            buckets: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    pub(crate) fn limits(&self) -> &SipLimits {
        &self.limits
    }

    /// New limits; buckets and pending counts carry over.
    pub(crate) fn set_limits(&mut self, limits: SipLimits) {
        self.limits = limits;
    }

    /// Whether requests from `ip` are taken at all.
    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.limits.allow.iter().any(|net| net.contains(&ip))
    }

    /// Takes one token from `ip`'s bucket; false when it is dry.
    pub(crate) fn take_invite(&mut self, now: Instant, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let cap = u64::from(self.limits.invite_burst).saturating_mul(1000);
        let rate = u64::from(self.limits.invite_rate);
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_SOURCES {
            self.forget_idle(now, cap, rate);
            if self.buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let bucket = self.buckets.entry(ip).or_insert(Bucket {
            milli_tokens: cap,
            last: now,
        });
        refill(bucket, now, cap, rate);
        if bucket.milli_tokens >= 1000 {
            bucket.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    fn forget_idle(&mut self, now: Instant, cap: u64, rate: u64) {
        self.buckets.retain(|_, bucket| {
            refill(bucket, now, cap, rate);
            bucket.milli_tokens < cap
        });
    }

    /// Whether `ip` holds its share of unconfirmed calls already.
    pub(crate) fn pending_full(&self, ip: IpAddr) -> bool {
        self.pending.get(&ip.to_canonical()).copied().unwrap_or(0)
            >= self.limits.max_pending_per_source
    }

    /// A new unconfirmed call from `ip`.
    pub(crate) fn add_pending(&mut self, ip: IpAddr) {
        *self.pending.entry(ip.to_canonical()).or_insert(0) += 1;
    }

    /// A call from `ip` was confirmed or ended.
    pub(crate) fn settle(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        if let Some(n) = self.pending.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.pending.remove(&ip);
            }
        }
    }

    /// Unconfirmed calls held for `ip` (tests).
    #[cfg(test)]
    pub(crate) fn pending_of(&self, ip: IpAddr) -> usize {
        self.pending.get(&ip).copied().unwrap_or(0)
    }
}

fn refill(bucket: &mut Bucket, now: Instant, cap: u64, rate: u64) {
    let elapsed = now.saturating_duration_since(bucket.last);
    let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    // `rate` tokens a second is `rate` thousandths a millisecond.
    bucket.milli_tokens = bucket
        .milli_tokens
        .saturating_add(ms.saturating_mul(rate))
        .min(cap);
    if elapsed >= Duration::from_millis(1) {
        bucket.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SipLimits {
        SipLimits {
            allow: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            invite_rate: 10,
            invite_burst: 3,
            max_pending_per_source: 2,
            ..SipLimits::unlimited()
        }
    }

    #[test]
    fn the_allow_list_takes_listed_networks_only() {
        let g = SourceGuard::new(limits());
        assert!(g.allows("127.0.0.9".parse().unwrap()));
        assert!(g.allows("::1".parse().unwrap()));
        // An IPv4-mapped loopback source is loopback.
        assert!(g.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!g.allows("192.0.2.1".parse().unwrap()));
        assert!(!g.allows("::2".parse().unwrap()));
        let none = SourceGuard::new(SipLimits {
            allow: vec![],
            ..limits()
        });
        assert!(!none.allows("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn each_source_has_its_own_bucket_refilled_at_the_rate() {
        let mut g = SourceGuard::new(limits());
        let t0 = Instant::now();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        assert!((0..3).all(|_| g.take_invite(t0, a)));
        assert!(!g.take_invite(t0, a), "the burst is spent");
        assert!(g.take_invite(t0, b), "another source is not affected");
        // 10 a second: one token after 100 ms, not before.
        assert!(!g.take_invite(t0 + Duration::from_millis(99), a));
        assert!(g.take_invite(t0 + Duration::from_millis(100), a));
        assert!(!g.take_invite(t0 + Duration::from_millis(100), a));
        assert!(g.take_invite(t0 + Duration::from_millis(200), a));
        assert!(!g.take_invite(t0 + Duration::from_millis(200), a));
        // Refills stop at the burst.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| g.take_invite(later, a)));
        assert!(!g.take_invite(later, a));
    }

    #[test]
    fn pending_calls_are_counted_per_source() {
        let mut g = SourceGuard::new(limits());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(!g.pending_full(a));
        g.add_pending(a);
        g.add_pending(a);
        assert!(g.pending_full(a));
        assert!(!g.pending_full("127.0.0.3".parse().unwrap()));
        g.settle(a);
        assert!(!g.pending_full(a));
        g.settle(a);
        g.settle(a);
        assert_eq!(g.pending_of(a), 0);
    }

    #[test]
    fn the_bucket_table_is_bounded() {
        let mut g = SourceGuard::new(limits());
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x7f00_0000 + i));
            assert!(g.take_invite(t0, ip));
        }
        // Every bucket is in use: a new source waits...
        assert!(!g.take_invite(t0, "10.0.0.1".parse().unwrap()));
        // ...until the others have refilled and can be forgotten.
        assert!(g.take_invite(t0 + Duration::from_secs(1), "10.0.0.1".parse().unwrap()));
        assert!(g.buckets.len() <= MAX_SOURCES);
    }
}
