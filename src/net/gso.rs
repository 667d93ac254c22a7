//! UDP generic segmentation offload (GSO, `UDP_SEGMENT`): one `sendmsg`
//! carries a run of datagrams to one destination, all of one size but the
//! last (which may be shorter), and the kernel cuts it into datagrams once,
//! below the socket layer. A video frame fanned out to its receivers is
//! exactly that: several MTU-sized packets to each receiver per turn.
//!
//! The relay core commits a turn's transmits in the order it produced
//! them, which for a fan-out interleaves receivers (packet 1 to every
//! receiver, then packet 2 to every receiver, ...). [`SendPlan`] groups
//! them by (destination, source address) in O(n), keeping the order of
//! each group (hence of every stream, which goes to one destination) and
//! emitting groups in the order of their first datagram, then cuts each
//! group into runs GSO can take. Its arrays are reused every turn: no
//! allocation once they have grown to the largest batch.
//!
//! Facts taken from the kernel (`udp_send_skb`, `Documentation/networking/
//! segmentation-offloads.rst`) and from reading quinn-udp: a run has at
//! most [`MAX_SEGMENTS`] segments (`UDP_MAX_SEGMENTS`, 64 before Linux
//! 6.9); its payload must fit one IP datagram (64 KiB); `getsockopt
//! (UDP_SEGMENT)` fails with `ENOPROTOOPT` on a kernel without UDP GSO;
//! and a send fails with `EIO` when the outgoing device cannot checksum
//! segments, `EINVAL` when a segment does not fit the route's MTU.

use std::net::{IpAddr, SocketAddr};

use crate::relay::Transmits;

/// Most segments per GSO send (the kernel's `UDP_MAX_SEGMENTS` on every
/// kernel that has UDP GSO; 6.9 raised it to 128).
pub(crate) const MAX_SEGMENTS: usize = 64;

/// Most payload bytes per GSO send: under the 65 535 an IP datagram holds,
/// minus the IPv6 and UDP headers, with room to spare.
pub(crate) const MAX_BYTES: usize = 64_000;

/// Marks the end of a group's list.
const NONE: u32 = u32::MAX;

/// Whether this kernel offers UDP GSO on `socket` (a read of the
/// option, which changes nothing).
pub(crate) fn supported(socket: &std::net::UdpSocket) -> bool {
    nix::sys::socket::getsockopt(socket, nix::sys::socket::sockopt::UdpGsoSegment).is_ok()
}

/// Whether a datagram of `len` bytes may follow `count` datagrams
/// (`bytes` in all) in a run of `segment`-byte segments: `None` if not,
/// `Some(true)` if only as the run's last (it is shorter), `Some(false)`
/// if more may follow it. A zero-length datagram is never part of a run
/// (0 means "no segmentation" to the kernel): it goes alone.
pub(crate) fn extends_run(segment: usize, count: usize, bytes: usize, len: usize) -> Option<bool> {
    let fits = segment > 0
        && len > 0
        && len <= segment
        && count < MAX_SEGMENTS
        && bytes + len <= MAX_BYTES;
    fits.then_some(len < segment)
}

/// One message of a send batch: the datagrams at `first..first + count`
/// of [`SendPlan::order`], every one `segment` bytes but the last, which
/// may be shorter. `count == 1`: a plain datagram, no `UDP_SEGMENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) first: u32,
    pub(crate) count: u32,
    pub(crate) segment: u16,
}

/// A group being collected: its key and its list through `next`.
#[derive(Debug, Clone, Copy)]
struct Group {
    dest: SocketAddr,
    src: Option<IpAddr>,
    head: u32,
    tail: u32,
}

/// A turn's transmits as runs, reused every turn.
#[derive(Debug, Default)]
pub(crate) struct SendPlan {
    /// Transmit indices in the order they are sent.
    order: Vec<u32>,
    runs: Vec<Run>,
    /// Open-addressing table: group index + 1, 0 = empty.
    table: Vec<u32>,
    groups: Vec<Group>,
    /// Per transmit, the next one of its group.
    next: Vec<u32>,
}

impl SendPlan {
    /// A plan with room for `capacity` transmits before it grows.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            order: Vec::with_capacity(capacity),
            runs: Vec::with_capacity(capacity),
            table: Vec::with_capacity(table_size(capacity)),
            groups: Vec::with_capacity(capacity),
            next: Vec::with_capacity(capacity),
        }
    }

    /// Plans `out`: with `gso`, grouped and cut into runs; without, one
    /// run per datagram in commit order.
    pub(crate) fn plan(&mut self, out: &Transmits, gso: bool) {
        self.order.clear();
        self.runs.clear();
        let n = out.len();
        if !gso || n < 2 {
            for i in 0..n {
                self.order.push(i as u32);
                self.runs.push(Run {
                    first: i as u32,
                    count: 1,
                    segment: 0,
                });
            }
            return;
        }
        self.group(out);
        for g in 0..self.groups.len() {
            let mut at = self.groups[g].head;
            while at != NONE {
                at = self.cut_run(out, at);
            }
        }
    }

    /// Links every transmit into the list of its (destination, source).
    fn group(&mut self, out: &Transmits) {
        let n = out.len();
        let size = table_size(n);
        let mask = size - 1;
        self.table.clear();
        self.table.resize(size, 0);
        self.groups.clear();
        self.next.clear();
        self.next.resize(n, NONE);
        for (i, t) in out.iter().enumerate() {
            let i = i as u32;
            let mut slot = (hash(t.dest, t.src) as usize) & mask;
            loop {
                match self.table[slot] {
                    0 => {
                        self.groups.push(Group {
                            dest: t.dest,
                            src: t.src,
                            head: i,
                            tail: i,
                        });
                        self.table[slot] = self.groups.len() as u32;
                        break;
                    }
                    g => {
                        let group = &mut self.groups[g as usize - 1];
                        if group.dest == t.dest && group.src == t.src {
                            self.next[group.tail as usize] = i;
                            group.tail = i;
                            break;
                        }
                        slot = (slot + 1) & mask;
                    }
                }
            }
        }
    }

    /// Appends the run starting at transmit `at` (following its group's
    /// list) and returns the transmit after it.
    fn cut_run(&mut self, out: &Transmits, at: u32) -> u32 {
        let len = |i: u32| out.get(i as usize).map_or(0, |t| t.data.len());
        let segment = len(at);
        let first = self.order.len() as u32;
        self.order.push(at);
        let (mut count, mut bytes) = (1, segment);
        let mut j = self.next[at as usize];
        while j != NONE {
            let l = len(j);
            let Some(last) = extends_run(segment, count, bytes, l) else {
                break;
            };
            self.order.push(j);
            count += 1;
            bytes += l;
            j = self.next[j as usize];
            if last {
                break;
            }
        }
        self.runs.push(Run {
            first,
            count: count as u32,
            segment: if count > 1 { segment as u16 } else { 0 },
        });
        j
    }

    /// The runs, in send order.
    pub(crate) fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// The transmit indices of `run`, in order.
    pub(crate) fn datagrams(&self, run: Run) -> &[u32] {
        &self.order[run.first as usize..(run.first + run.count) as usize]
    }
}

/// A power of two at least twice `n` (load ≤ 1/2), at least 16.
fn table_size(n: usize) -> usize {
    (2 * n).max(16).next_power_of_two()
}

/// A cheap mix of a (destination, source) pair (Fibonacci hashing of the
/// folded bits; the table only needs them spread).
fn hash(dest: SocketAddr, src: Option<IpAddr>) -> u64 {
    fn fold(ip: IpAddr) -> u64 {
        match ip {
            IpAddr::V4(v4) => u64::from(u32::from(v4)),
            IpAddr::V6(v6) => {
                let b = u128::from(v6);
                (b as u64) ^ ((b >> 64) as u64).rotate_left(29)
            }
        }
    }
    let mut h = fold(dest.ip()).rotate_left(16) ^ u64::from(dest.port());
    if let Some(src) = src {
        h ^= fold(src).rotate_left(40);
    }
    h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::{MeetingMode, Path};

    fn commit(out: &mut Transmits, len: usize, tag: u8, to: Path) {
        let slot = out.slot();
        slot[..len].fill(tag);
        out.commit(len, to, MeetingMode::E2ee);
    }

    fn dest(port: u16) -> Path {
        SocketAddr::from(([127, 0, 0, 1], port)).into()
    }

    /// The plan as (destination port, segment, datagram indices) per run.
    fn runs(plan: &SendPlan, out: &Transmits) -> Vec<(u16, u16, Vec<u32>)> {
        plan.runs()
            .iter()
            .map(|&r| {
                let d = plan.datagrams(r);
                (
                    out.get(d[0] as usize).unwrap().dest.port(),
                    r.segment,
                    d.to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn a_fanned_out_frame_becomes_one_run_per_receiver_in_stream_order() {
        // Three packets of a frame (1200, 1200, 700 bytes), each to three
        // receivers, committed packet by packet as the fan-out does.
        let mut out = Transmits::default();
        for (k, len) in [1200, 1200, 700].into_iter().enumerate() {
            for port in [1, 2, 3] {
                commit(&mut out, len, k as u8, dest(port));
            }
        }
        let mut plan = SendPlan::default();
        plan.plan(&out, true);
        assert_eq!(
            runs(&plan, &out),
            vec![
                (1, 1200, vec![0, 3, 6]),
                (2, 1200, vec![1, 4, 7]),
                (3, 1200, vec![2, 5, 8]),
            ]
        );
        // Without GSO: commit order, one datagram per message.
        plan.plan(&out, false);
        assert_eq!(plan.runs().len(), 9);
        assert!(plan.runs().iter().all(|r| r.count == 1 && r.segment == 0));
        assert_eq!(plan.order, (0..9).collect::<Vec<_>>());
    }

    #[test]
    fn a_longer_datagram_starts_a_new_run_and_a_shorter_one_ends_it() {
        let mut out = Transmits::default();
        for len in [100, 100, 50, 100, 200, 200, 0, 7] {
            commit(&mut out, len, 1, dest(9));
        }
        let mut plan = SendPlan::default();
        plan.plan(&out, true);
        assert_eq!(
            runs(&plan, &out),
            vec![
                (9, 100, vec![0, 1, 2]),
                (9, 0, vec![3]),
                (9, 200, vec![4, 5]),
                (9, 0, vec![6]),
                (9, 0, vec![7]),
            ]
        );
    }

    #[test]
    fn the_source_address_is_part_of_the_key() {
        let to = SocketAddr::from(([127, 0, 0, 1], 5));
        let a = Path::new(to, Some("127.0.0.2".parse().unwrap()));
        let b = Path::new(to, Some("127.0.0.3".parse().unwrap()));
        let mut out = Transmits::default();
        for p in [a, b, a, b] {
            commit(&mut out, 10, 0, p);
        }
        let mut plan = SendPlan::default();
        plan.plan(&out, true);
        let got: Vec<_> = plan
            .runs()
            .iter()
            .map(|&r| plan.datagrams(r).to_vec())
            .collect();
        assert_eq!(got, vec![vec![0, 2], vec![1, 3]]);
    }

    #[test]
    fn runs_respect_the_segment_and_byte_limits() {
        let mut out = Transmits::default();
        for _ in 0..150 {
            commit(&mut out, 100, 0, dest(1));
        }
        for _ in 0..60 {
            commit(&mut out, 1400, 0, dest(2));
        }
        let mut plan = SendPlan::default();
        plan.plan(&out, true);
        let counts: Vec<_> = plan.runs().iter().map(|r| r.count).collect();
        let per_big = (MAX_BYTES / 1400) as u32;
        assert_eq!(counts, vec![64, 64, 22, per_big, 60 - per_big]);
        // Every datagram exactly once, each group in commit order.
        let mut seen = plan.order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..210).collect::<Vec<_>>());
        assert!(plan.order.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn many_destinations_and_reuse_keep_every_datagram_in_group_order() {
        let mut plan = SendPlan::with_capacity(4);
        for round in 0..3u16 {
            let mut out = Transmits::default();
            // 500 destinations, IPv4 and IPv6, interleaved, 3 each.
            for k in 0..3 {
                for d in 0..500u16 {
                    let ip: IpAddr = if d % 2 == 0 {
                        [10, 0, (d >> 8) as u8, d as u8].into()
                    } else {
                        format!("2001:db8::{d:x}").parse().unwrap()
                    };
                    let to = SocketAddr::new(ip, 1000 + round);
                    commit(&mut out, 300, k, to.into());
                }
            }
            plan.plan(&out, true);
            assert_eq!(plan.runs().len(), 500);
            for &r in plan.runs() {
                let d = plan.datagrams(r);
                assert_eq!(d.len(), 3);
                assert_eq!((d[1] - d[0], d[2] - d[1]), (500, 500));
            }
        }
    }
}
