//! Steering by SSRC: a classic BPF program on the media port's
//! `SO_REUSEPORT` group (`SO_ATTACH_REUSEPORT_CBPF`) that picks the worker
//! for each RTP/RTCP datagram from its SSRC, so a stream always reaches
//! the same worker whatever address it comes from (DESIGN.md,
//! "Shared-nothing workers"; issue #12, item 3).
//!
//! Why: a worker owns a stream's SRTP state (rollover counter, replay
//! window, the outbound index state toward every receiver). With the
//! kernel's 4-tuple hash, a publisher whose NAT rebinds after its
//! sequence numbers wrapped reached another worker, whose first guess of
//! the rollover counter (0) fails to authenticate, and which could not
//! have protected toward the receivers without reusing indices the first
//! worker used (`relay/worker.rs`, "Rebinding"). Steering keeps the
//! stream on its owner. Of the three ways the issue names, it is the one
//! that costs the relay nothing per packet (a dozen BPF instructions in
//! the kernel's socket lookup, which picked a socket by hash anyway), has
//! no shared state and no hand-off queue, and needs no privilege: the
//! kernel lets any process attach classic BPF to its own reuse-port group.
//!
//! The program (run on the UDP payload; an index at or past the group's
//! size makes the kernel fall back to its 4-tuple hash):
//! - fewer than 12 bytes, or not RTP version 2 (STUN 0–3, DTLS 20–63,
//!   RFC 7983): the hash. The handshake thread takes those from any
//!   worker.
//! - RTCP (second byte 192–223, RFC 5761 §4): the sender SSRC at bytes
//!   4..8, which SRTCP leaves in the clear (RFC 3711 §3.4): a publisher's
//!   reports go with its stream, a receiver's with its `rtcp_ssrc`.
//! - RTP: the SSRC at bytes 8..12, clear in SRTP (RFC 3711 §3.1).
//!
//! `SSRC mod workers` spreads random SSRCs (RFC 3550 §8) evenly. Index `i`
//! of the group is the `i`th socket bound, which is worker `i`'s; a
//! worker restarted after a panic keeps its socket and so its place.
//! Where the kernel refuses the program, the group keeps the 4-tuple hash
//! and the relay says so once: streams then continue across a rebinding
//! only before their first sequence wrap (fail-closed, as before).

use std::net::UdpSocket;

use nix::sys::socket::{setsockopt, sockopt};

// Classic BPF encodings (linux/filter.h, linux/bpf_common.h).
const LD: u16 = 0x00;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const W: u16 = 0x00;
const B: u16 = 0x10;
const ABS: u16 = 0x20;
const LEN: u16 = 0x80;
const K: u16 = 0x00;
const A: u16 = 0x10;
const AND: u16 = 0x50;
const MOD: u16 = 0x90;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGE: u16 = 0x30;

/// Returned for "no choice": the kernel's 4-tuple hash decides.
const FALLBACK: u32 = u32::MAX;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) code: u16,
    pub(crate) jt: u8,
    pub(crate) jf: u8,
    pub(crate) k: u32,
}

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

/// The steering program for a group of `workers` sockets (at least 1).
pub(crate) fn program(workers: u32) -> [Insn; 14] {
    // Jump offsets count from the next instruction.
    [
        /* 0 */ insn(LD | W | LEN, 0, 0, 0),
        /* 1 */ insn(JMP | JGE | K, 0, 11, 12), // short: 13
        /* 2 */ insn(LD | B | ABS, 0, 0, 0),
        /* 3 */ insn(ALU | AND | K, 0, 0, 0xc0),
        /* 4 */ insn(JMP | JEQ | K, 0, 8, 0x80), // not v2: 13
        /* 5 */ insn(LD | B | ABS, 0, 0, 1),
        /* 6 */ insn(JMP | JGE | K, 0, 3, 192), // RTP: 10
        /* 7 */ insn(JMP | JGE | K, 2, 0, 224), // RTP: 10, RTCP: 8
        /* 8 */ insn(LD | W | ABS, 0, 0, 4),
        /* 9 */ insn(JMP | JA, 0, 0, 1), // 11
        /* 10 */ insn(LD | W | ABS, 0, 0, 8),
        /* 11 */ insn(ALU | MOD | K, 0, 0, workers),
        /* 12 */ insn(RET | A, 0, 0, 0),
        /* 13 */ insn(RET | K, 0, 0, FALLBACK),
    ]
}

/// The worker the program sends `payload` to among `workers`, or `None`
/// for the kernel's hash: what the kernel computes, for the relay's
/// own reasoning and tests.
#[cfg(test)]
pub(crate) fn worker_for(payload: &[u8], workers: u32) -> Option<u32> {
    let word = |at: usize| {
        payload
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    if payload.len() < 12 || payload[0] & 0xc0 != 0x80 || workers == 0 {
        return None;
    }
    let ssrc = if (192..224).contains(&payload[1]) {
        word(4)
    } else {
        word(8)
    }?;
    Some(ssrc % workers)
}

/// Attaches the steering program to the group `socket` belongs to (any
/// member will do). A group of one needs none. (Public for the
/// `steer_cost` benchmark only.)
pub fn attach(socket: &UdpSocket, workers: usize) -> std::io::Result<()> {
    let Ok(workers @ 2..) = u32::try_from(workers) else {
        return Ok(());
    };
    let mut filter = program(workers).map(|i| libc::sock_filter {
        code: i.code,
        jt: i.jt,
        jf: i.jf,
        k: i.k,
    });
    let prog = libc::sock_fprog {
        // 14 instructions: fits.
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // The kernel copies the program during the call.
    setsockopt(socket, sockopt::AttachReusePortCbpf, &prog).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` over `packet` as the kernel's classic BPF interpreter
    /// does for the instructions the program uses (an out-of-bounds load
    /// ends it with 0).
    fn run(prog: &[Insn], packet: &[u8]) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                c if c == LD | W | LEN => a = packet.len() as u32,
                c if c == LD | B | ABS => match packet.get(i.k as usize) {
                    Some(&b) => a = u32::from(b),
                    None => return 0,
                },
                c if c == LD | W | ABS => match packet.get(i.k as usize..i.k as usize + 4) {
                    Some(b) => a = u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                    None => return 0,
                },
                c if c == ALU | AND | K => a &= i.k,
                c if c == ALU | MOD | K => a %= i.k,
                c if c == JMP | JA => pc += i.k as usize,
                c if c == JMP | JEQ | K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                c if c == JMP | JGE | K => pc += usize::from(if a >= i.k { i.jt } else { i.jf }),
                c if c == RET | A => return a,
                c if c == RET | K => return i.k,
                other => panic!("instruction {other:#x} not modelled"),
            }
        }
    }

    fn rtp(marker_pt: u8, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, marker_pt, 0, 1, 0, 0, 0, 9];
        p.extend(ssrc.to_be_bytes());
        p.extend([0xaa; 20]);
        p
    }

    fn rtcp(pt: u8, sender: u32) -> Vec<u8> {
        let mut p = vec![0x81, pt, 0, 7];
        p.extend(sender.to_be_bytes());
        p.extend([0xbb; 24]);
        p
    }

    #[test]
    fn rtp_goes_by_its_ssrc_rtcp_by_its_sender_ssrc() {
        for workers in [2u32, 3, 16] {
            let prog = program(workers);
            for ssrc in [0, 1, 7, 0x0bad_cafe, u32::MAX] {
                // Every payload type, marker or not, outside RTCP's range.
                for second in (0..=255u8).filter(|b| !(192..224).contains(b)) {
                    let p = rtp(second, ssrc);
                    assert_eq!(run(&prog, &p), ssrc % workers);
                    assert_eq!(worker_for(&p, workers), Some(ssrc % workers));
                }
                for pt in 192..224u8 {
                    let p = rtcp(pt, ssrc);
                    assert_eq!(run(&prog, &p), ssrc % workers);
                    assert_eq!(worker_for(&p, workers), Some(ssrc % workers));
                }
            }
        }
    }

    #[test]
    fn what_is_not_rtp_is_left_to_the_hash() {
        let prog = program(4);
        let stun = [
            0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6,
        ];
        let dtls = [22u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];
        let short = [0x80, 111, 0, 1, 0, 0, 0, 9, 1, 2, 3];
        for p in [&stun[..], &dtls, &short, &[], &[0xc0; 40]] {
            assert_eq!(run(&prog, p), FALLBACK, "{p:?}");
            assert_eq!(worker_for(p, 4), None, "{p:?}");
        }
    }

    #[test]
    fn the_program_never_reads_past_the_packet() {
        // An out-of-bounds load would end the program with 0: steering
        // to worker 0 instead of the hash. Every length up to a header.
        let prog = program(3);
        let full = rtp(96, 5);
        for len in 0..full.len() {
            let want = if len < 12 { FALLBACK } else { 5 % 3 };
            assert_eq!(run(&prog, &full[..len]), want, "length {len}");
        }
    }

    #[test]
    fn the_kernel_takes_the_program() {
        use std::time::Duration;
        let (sockets, local) =
            super::super::socket::bind_group("127.0.0.1:0".parse().unwrap(), 2, 0).unwrap();
        attach(&sockets[0], 2).expect("SO_ATTACH_REUSEPORT_CBPF");
        // Which socket gets each SSRC is the program's choice.
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for ssrc in [10u32, 11, 12, 13] {
            client.send_to(&rtp(96, ssrc), local).unwrap();
            let owner = &sockets[(ssrc % 2) as usize];
            owner
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut buf = [0u8; 64];
            let (n, _) = owner.recv_from(&mut buf).expect("steered to its owner");
            assert_eq!(&buf[8..12], &ssrc.to_be_bytes());
            assert_eq!(n, 32);
        }
    }
}
