//! Batched datagram I/O for the generator: `sendmmsg` with UDP GSO
//! (`UDP_SEGMENT`) for a run of packets to one destination, and
//! `recvmmsg` with UDP GRO (`UDP_GRO`), split back into datagrams by the
//! `gso_size` control message. Buffers and headers are allocated once per
//! thread; nothing here allocates per packet.
//!
//! GSO needs every segment but the last to be exactly `gso_size` bytes,
//! and at most [`MAX_SEGMENTS`] segments and 64 KiB per message: a video
//! frame's packets are (all full but the last). Where the kernel refuses
//! GSO (an old kernel, a socket type without it), the sender falls back to
//! one message per packet for the rest of the run.

use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg,
    sendmmsg,
};

/// Most segments one GSO message carries (the kernel's `UDP_MAX_SEGMENTS`
/// is 64 on older kernels, 128 on newer).
pub(crate) const MAX_SEGMENTS: usize = 64;
/// Most bytes one GSO message carries (an IPv4 datagram's payload).
const MAX_GSO_BYTES: usize = 65_000;
/// Messages per `sendmmsg` / `recvmmsg` call.
pub(crate) const BATCH: usize = 32;
/// A receive slot: a whole GRO train (64 KiB), or one datagram.
pub(crate) const GRO_SLOT: usize = 65_536;
/// A receive slot without GRO.
pub(crate) const PLAIN_SLOT: usize = 2048;

/// Whether a run of packets of these lengths may go as one GSO message:
/// more than one, all but the last equal, the last no longer, and within
/// the kernel's limits.
pub(crate) fn gso_fits(lens: &[usize]) -> bool {
    let Some((&first, _)) = lens.split_first() else {
        return false;
    };
    let Some((&last, middle)) = lens.split_last() else {
        return false;
    };
    lens.len() > 1
        && lens.len() <= MAX_SEGMENTS
        && middle.iter().all(|&l| l == first)
        && last <= first
        && first <= usize::from(u16::MAX)
        && lens.iter().sum::<usize>() <= MAX_GSO_BYTES
}

/// A sender's batched socket calls.
#[derive(Debug)]
pub(crate) struct SendBatch {
    plain: MultiHeaders<SockaddrStorage>,
    with_gso: MultiHeaders<SockaddrStorage>,
    /// Cleared once the kernel refused a GSO message.
    gso: bool,
}

/// What one [`SendBatch::send`] did, in packets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Packets the kernel took.
    pub(crate) packets: u64,
    /// Packets it refused.
    pub(crate) failed: u64,
    /// Syscalls made.
    pub(crate) calls: u64,
}

impl SendBatch {
    /// Headers for up to [`BATCH`] messages per call; `gso`: try UDP GSO.
    pub(crate) fn new(gso: bool) -> Self {
        Self {
            plain: MultiHeaders::preallocate(BATCH, None),
            with_gso: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(u16))),
            gso,
        }
    }

    /// Whether GSO is still in use.
    pub(crate) fn gso(&self) -> bool {
        self.gso
    }

    /// Sends the run `packets` (one burst, in order) to every one of
    /// `dests` from `fd`: as one GSO message per destination where the run
    /// fits, else one message per packet and destination, [`BATCH`]
    /// messages per syscall.
    pub(crate) fn send(
        &mut self,
        fd: RawFd,
        packets: &[&[u8]],
        lens: &[usize],
        dests: &[SockaddrStorage],
    ) -> Sent {
        let mut sent = Sent::default();
        if packets.is_empty() || dests.is_empty() {
            return sent;
        }
        if self.gso && gso_fits(lens) {
            let segment = lens[0] as u16;
            let iov: [IoSlice<'_>; MAX_SEGMENTS] =
                std::array::from_fn(|i| IoSlice::new(packets.get(i).copied().unwrap_or(&[])));
            let run = &iov[..packets.len()];
            let mut at = 0;
            while at < dests.len() {
                let chunk = &dests[at..(at + BATCH).min(dests.len())];
                let slices: [&[IoSlice<'_>]; BATCH] = std::array::from_fn(|_| run);
                let addrs: [Option<SockaddrStorage>; BATCH] =
                    std::array::from_fn(|i| chunk.get(i).copied());
                let cmsg = [ControlMessage::UdpGsoSegments(&segment)];
                let result = sendmmsg(
                    fd,
                    &mut self.with_gso,
                    &slices[..chunk.len()],
                    &addrs[..chunk.len()],
                    cmsg,
                    MsgFlags::MSG_DONTWAIT,
                );
                sent.calls += 1;
                match result {
                    Ok(done) => {
                        let n = done.count().min(chunk.len());
                        if n == 0 {
                            sent.failed += packets.len() as u64;
                            at += 1;
                        } else {
                            sent.packets += (n * packets.len()) as u64;
                            at += n;
                        }
                    }
                    Err(Errno::EIO | Errno::EINVAL | Errno::ENOPROTOOPT | Errno::EOPNOTSUPP)
                        if sent.packets == 0 =>
                    {
                        // The kernel does not do GSO here: never again,
                        // and the rest go one message per packet.
                        self.gso = false;
                        let rest = self.send(fd, packets, lens, &dests[at..]);
                        sent.packets += rest.packets;
                        sent.failed += rest.failed;
                        sent.calls += rest.calls;
                        return sent;
                    }
                    Err(_) => {
                        sent.failed += packets.len() as u64;
                        at += 1;
                    }
                }
            }
            return sent;
        }
        // One message per (destination, packet), in packet order per
        // destination.
        let total = dests.len() * packets.len();
        let mut at = 0;
        while at < total {
            let n = (total - at).min(BATCH);
            let iov: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
                let k = at + i;
                [IoSlice::new(if i < n {
                    packets[k % packets.len()]
                } else {
                    &[]
                })]
            });
            let addrs: [Option<SockaddrStorage>; BATCH] =
                std::array::from_fn(|i| (i < n).then(|| dests[(at + i) / packets.len()]));
            let result = sendmmsg(
                fd,
                &mut self.plain,
                &iov[..n],
                &addrs[..n],
                [] as [ControlMessage<'_>; 0],
                MsgFlags::MSG_DONTWAIT,
            );
            sent.calls += 1;
            match result {
                Ok(done) => {
                    let took = done.count().min(n);
                    sent.packets += took as u64;
                    if took == 0 {
                        sent.failed += 1;
                        at += 1;
                    } else {
                        at += took;
                    }
                }
                Err(_) => {
                    sent.failed += 1;
                    at += 1;
                }
            }
        }
        sent
    }
}

/// One datagram read by [`RecvBatch::recv`]: where it lies in the slot,
/// and who sent it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Datagram {
    pub(crate) slot: usize,
    pub(crate) offset: usize,
    pub(crate) len: usize,
    pub(crate) from: Option<SocketAddr>,
}

/// A receiver's batched socket calls.
#[derive(Debug)]
pub(crate) struct RecvBatch {
    headers: MultiHeaders<SockaddrStorage>,
    slots: Vec<u8>,
    slot_len: usize,
    /// The datagrams of the last call, GRO trains split.
    datagrams: Vec<Datagram>,
}

impl RecvBatch {
    /// Room for [`BATCH`] messages per call; `gro`: slots big enough for a
    /// GRO train (turn the socket option on with [`enable_gro`]).
    pub(crate) fn new(gro: bool) -> Self {
        let slot_len = if gro { GRO_SLOT } else { PLAIN_SLOT };
        Self {
            headers: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(i32))),
            slots: vec![0; slot_len * BATCH],
            slot_len,
            datagrams: Vec::with_capacity(BATCH * MAX_SEGMENTS),
        }
    }

    /// One `recvmmsg` on `fd` (non-blocking): the datagrams it read, GRO
    /// trains split by their segment size, and how many messages came
    /// (fewer than [`BATCH`]: the socket is drained). An error reads as
    /// nothing.
    pub(crate) fn recv(&mut self, fd: RawFd) -> usize {
        self.datagrams.clear();
        let slot_len = self.slot_len;
        let mut iov: [[IoSliceMut<'_>; 1]; BATCH] = {
            let mut chunks = self.slots.chunks_exact_mut(slot_len);
            std::array::from_fn(|_| {
                // `slots` holds exactly BATCH slots (see `new`).
                [IoSliceMut::new(chunks.next().unwrap_or_default())]
            })
        };
        if self.slot_len == GRO_SLOT {
            // The kernel shrinks each header's control length to what it
            // wrote, and nix's `recvmmsg` does not restore it: headers
            // reused after a call without a GRO train would truncate the
            // next train's `gso_size`. Fresh headers per call (three small
            // allocations a batch, none per datagram) keep the room.
            self.headers = MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(i32)));
        }
        let Ok(results) = recvmmsg(
            fd,
            &mut self.headers,
            iov.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) else {
            return 0;
        };
        let mut messages = 0;
        for (slot, message) in results.enumerate() {
            messages += 1;
            let len = message.bytes.min(slot_len);
            let mut segment = len;
            match message.cmsgs() {
                Ok(cmsgs) => {
                    for cmsg in cmsgs {
                        if let ControlMessageOwned::UdpGroSegments(size) = cmsg {
                            segment = usize::try_from(size).unwrap_or(len).max(1);
                        }
                    }
                }
                // No room was left for the segment size: the datagram
                // cannot be split, so it is dropped (and shows as loss).
                Err(_) => continue,
            }
            let from = message.address.as_ref().and_then(to_socket_addr);
            let mut offset = 0;
            while offset < len {
                let n = segment.min(len - offset);
                self.datagrams.push(Datagram {
                    slot,
                    offset,
                    len: n,
                    from,
                });
                offset += n;
            }
        }
        messages
    }

    /// The datagrams of the last [`Self::recv`].
    pub(crate) fn datagrams(&self) -> &[Datagram] {
        &self.datagrams
    }

    /// The bytes of datagram `d`, to read or decrypt in place.
    pub(crate) fn bytes_mut(&mut self, d: Datagram) -> &mut [u8] {
        let start = d.slot * self.slot_len + d.offset;
        &mut self.slots[start..start + d.len]
    }
}

/// Asks the kernel to hand `fd` GRO trains whole (best effort: `false`
/// where the kernel has no UDP GRO).
pub(crate) fn enable_gro(socket: &impl std::os::fd::AsFd) -> bool {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::UdpGroSegment, &true).is_ok()
}

fn to_socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// The kernel's form of `addr`.
pub(crate) fn storage(addr: SocketAddr) -> SockaddrStorage {
    SockaddrStorage::from(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn gso_takes_a_frame_and_refuses_what_it_cannot_split() {
        assert!(gso_fits(&[1228, 1228, 1228, 278]));
        assert!(gso_fits(&[1228, 1228]));
        assert!(!gso_fits(&[1228]));
        assert!(!gso_fits(&[]));
        assert!(!gso_fits(&[1228, 278, 1228]));
        assert!(!gso_fits(&[278, 1228]));
        assert!(!gso_fits(&[1228; 60]), "over 64 KiB");
    }

    /// A frame's run through GSO arrives as its packets, in order, whether
    /// the receiving socket takes GRO trains or not.
    #[test]
    fn a_gso_run_arrives_as_its_packets_with_and_without_gro() {
        for gro in [true, false] {
            let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
            if gro {
                assert!(enable_gro(&rx), "UDP_GRO on loopback");
            }
            let packets: Vec<Vec<u8>> = (0..5u8)
                .map(|i| vec![i; if i == 4 { 300 } else { 1228 }])
                .collect();
            let slices: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
            let lens: Vec<usize> = packets.iter().map(Vec::len).collect();
            let mut batch = SendBatch::new(true);
            let dest = storage(rx.local_addr().expect("addr"));
            let sent = batch.send(tx.as_raw_fd(), &slices, &lens, &[dest, dest]);
            assert_eq!(sent.packets, 10, "{sent:?}");
            assert_eq!(sent.failed, 0);
            assert!(batch.gso(), "loopback takes GSO");
            assert_eq!(sent.calls, 1);
            let mut recv = RecvBatch::new(gro);
            let mut got = Vec::new();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while got.len() < 10 && std::time::Instant::now() < deadline {
                recv.recv(rx.as_raw_fd());
                for d in recv.datagrams().to_vec() {
                    assert_eq!(d.from, Some(tx.local_addr().expect("addr")));
                    let bytes = recv.bytes_mut(d);
                    got.push((bytes[0], bytes.len()));
                }
            }
            let want: Vec<(u8, usize)> = (0..2)
                .flat_map(|_| (0..5u8).map(|i| (i, if i == 4 { 300 } else { 1228 })))
                .collect();
            assert_eq!(got, want, "gro {gro}");
        }
    }

    /// A plain datagram first, then a GSO train: the second call must
    /// still see the train's segment size.
    #[test]
    fn a_train_after_a_plain_datagram_is_still_split() {
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert!(enable_gro(&rx));
        let dest = storage(rx.local_addr().expect("addr"));
        let mut batch = SendBatch::new(true);
        let mut recv = RecvBatch::new(true);
        let one = [9u8; 50];
        assert_eq!(
            batch.send(tx.as_raw_fd(), &[&one], &[50], &[dest]).packets,
            1
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(recv.recv(rx.as_raw_fd()), 1);
        assert_eq!(recv.datagrams().len(), 1);
        let frame = [[1u8; 1000], [2u8; 1000], [3u8; 1000]];
        let slices: Vec<&[u8]> = frame.iter().map(|p| &p[..]).collect();
        let sent = batch.send(tx.as_raw_fd(), &slices, &[1000; 3], &[dest]);
        assert_eq!(sent.packets, 3);
        std::thread::sleep(std::time::Duration::from_millis(20));
        recv.recv(rx.as_raw_fd());
        let lens: Vec<usize> = recv.datagrams().iter().map(|d| d.len).collect();
        assert_eq!(lens, [1000, 1000, 1000]);
    }

    #[test]
    fn without_gso_every_packet_is_its_own_message() {
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let packets = [[1u8; 100], [2u8; 100], [3u8; 100]];
        let slices: Vec<&[u8]> = packets.iter().map(|p| &p[..]).collect();
        let mut batch = SendBatch::new(false);
        let dests = vec![storage(rx.local_addr().expect("addr")); 20];
        let sent = batch.send(tx.as_raw_fd(), &slices, &[100; 3], &dests);
        assert_eq!(sent.packets, 60);
        assert_eq!(sent.calls, 2, "32 messages per call");
        let mut recv = RecvBatch::new(false);
        let mut n = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while n < 60 && std::time::Instant::now() < deadline {
            n += recv.recv(rx.as_raw_fd());
        }
        assert_eq!(n, 60);
    }
}
