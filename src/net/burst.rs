//! A media service's burst of datagrams to the relay on a connected
//! socket: what the transcoder uses to hand the relay a whole frame.
//!
//! Why: on the same core, every datagram that reaches a packet worker
//! asleep in io_uring wakes it, and the woken worker preempts the sender
//! at once. A frame sent one datagram at a time (or by `sendmmsg`, which
//! the kernel may preempt between datagrams) cost the worker a wake-up and
//! the encoder two context switches per packet (bench/README.md, "#11
//! round 8"). A run of equal-sized datagrams (the last may be shorter)
//! sent as one UDP GSO send (`UDP_SEGMENT`) is one skb on loopback: it is
//! split and queued at the relay's socket in one pass, so the worker wakes
//! once and reads the whole run in one turn.

use std::io::{self, IoSlice};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use arrayvec::ArrayVec;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

use super::gso::{MAX_SEGMENTS, extends_run};

/// Most datagrams in one GSO send, and in one burst.
pub const SEND_BURST: usize = MAX_SEGMENTS;

/// Sends `datagrams` on the connected `socket`, in order; returns how
/// many left. With `gso` true, each run of equal-sized datagrams (its
/// last may be shorter) goes as one `UDP_SEGMENT` send; a kernel that
/// refuses one turns `gso` off and the run goes one by one. What a full
/// send buffer refuses is lost like any packet on the way.
pub fn send_connected(socket: &UdpSocket, datagrams: &[&[u8]], gso: &mut bool) -> usize {
    let mut sent = 0;
    let mut at = 0;
    while let Some(first) = datagrams.get(at) {
        let end = if *gso { run_end(datagrams, at) } else { at + 1 };
        if end - at > 1 {
            match send_run(socket, &datagrams[at..end], first.len()) {
                Ok(()) => sent += end - at,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    // No GSO here: this run again, one by one.
                    *gso = false;
                    continue;
                }
            }
            at = end;
            continue;
        }
        if socket.send(first).is_ok() {
            sent += 1;
        }
        at += 1;
    }
    sent
}

/// Where the GSO run that starts at `start` ends (exclusive): the
/// relay's rule for runs (`gso::extends_run`).
fn run_end(datagrams: &[&[u8]], start: usize) -> usize {
    let size = datagrams[start].len();
    if size > usize::from(u16::MAX) {
        return start + 1;
    }
    let (mut end, mut bytes) = (start + 1, size);
    while let Some(next) = datagrams.get(end) {
        let Some(last) = extends_run(size, end - start, bytes, next.len()) else {
            break;
        };
        end += 1;
        bytes += next.len();
        if last {
            break;
        }
    }
    end
}

/// One GSO send of `run`, every datagram `size` bytes but the last.
fn send_run(socket: &UdpSocket, run: &[&[u8]], size: usize) -> io::Result<()> {
    let iov: ArrayVec<IoSlice<'_>, SEND_BURST> = run
        .iter()
        .take(SEND_BURST)
        .map(|d| IoSlice::new(d))
        .collect();
    let segment = u16::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let cmsgs = [ControlMessage::UdpGsoSegments(&segment)];
    sendmsg::<()>(socket.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None)
        .map(|_| ())
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::net::gso::MAX_BYTES;

    fn pair() -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        (tx, rx)
    }

    /// Sends `sizes` (each datagram numbered in its first two bytes) and
    /// checks each arrives alone, whole and in order.
    fn round_trip(sizes: &[usize], gso: &mut bool) {
        let (tx, rx) = pair();
        let payloads: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let mut p = vec![0xab; n];
                p[..2].copy_from_slice(&(i as u16).to_be_bytes());
                p
            })
            .collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        assert_eq!(send_connected(&tx, &refs, gso), sizes.len());
        let mut buf = [0u8; 2048];
        for expected in &payloads {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], expected.as_slice());
        }
        rx.set_nonblocking(true).unwrap();
        assert!(rx.recv(&mut buf).is_err(), "nothing more arrives");
    }

    #[test]
    fn a_frame_arrives_as_its_datagrams_whole_and_in_order() {
        // SPS, PPS, a run of full fragments with a short last one, another
        // frame's single packet, a run longer than one GSO send.
        let mut sizes = vec![30, 12, 1232, 1232, 1232, 700, 400];
        sizes.extend(std::iter::repeat_n(1000, SEND_BURST + 5));
        let mut gso = true;
        round_trip(&sizes, &mut gso);
        assert!(gso, "loopback takes UDP GSO");
    }

    #[test]
    fn without_gso_every_datagram_goes_alone() {
        let mut gso = false;
        round_trip(&[1232, 1232, 1232, 50], &mut gso);
        assert!(!gso);
    }

    #[test]
    fn runs_end_at_a_longer_datagram_a_shorter_one_the_limits() {
        let d = |n: usize| vec![0u8; n];
        let owned = [d(100), d(100), d(50), d(100), d(200), d(0), d(0)];
        let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        assert_eq!(run_end(&refs, 0), 3, "a shorter one ends the run, included");
        assert_eq!(run_end(&refs, 3), 4, "a longer one starts another");
        assert_eq!(run_end(&refs, 5), 6, "empty datagrams go alone");
        let big = vec![vec![0u8; 1500]; 60];
        let refs: Vec<&[u8]> = big.iter().map(Vec::as_slice).collect();
        assert_eq!(run_end(&refs, 0), MAX_BYTES / 1500, "bytes bound a run");
    }

    #[test]
    fn an_unconnected_socket_loses_the_burst_without_a_panic() {
        let lone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut gso = true;
        assert_eq!(send_connected(&lone, &[b"xy", b"xy"], &mut gso), 0);
    }
}
