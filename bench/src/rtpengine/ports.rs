//! Loopback port ranges for rtpengine instances that run side by side.
//!
//! rtpengine binds its media sockets with `SO_REUSEADDR`, so two
//! instances given overlapping `--port-min/--port-max` happily share a
//! port and each gets some of the other's packets. Ranges are therefore
//! handed out in slots of [`SLOT`] ports between [`BASE`] and [`TOP`]
//! (below Linux's default ephemeral range, 32768–60999, where the load
//! engine's sockets land): an instance owns a run of slots while it holds
//! a plain UDP socket on the first port of each. Such a socket (no
//! `SO_REUSEADDR`) makes the next reservation, in this process or any
//! other, fail on that port and move on, and rtpengine itself just skips
//! it.

use std::io;
use std::net::UdpSocket;

/// Ports per slot.
pub(super) const SLOT: u16 = 512;
/// First port of the first slot.
const BASE: u16 = 8192;
/// Last port any slot may use.
const TOP: u16 = 32767;

/// A run of slots held for one rtpengine.
#[derive(Debug)]
pub(super) struct PortRange {
    first: u16,
    slots: u16,
    /// Held for as long as the range is in use.
    _locks: Vec<UdpSocket>,
}

impl PortRange {
    /// Reserves `slots` consecutive free slots, or says why not.
    pub(super) fn reserve(slots: u16) -> io::Result<Self> {
        let total = (TOP - BASE + 1) / SLOT;
        let slots = slots.clamp(1, total + 1);
        let mut start = 0;
        while start + slots <= total {
            let mut locks = Vec::with_capacity(usize::from(slots));
            let mut taken = None;
            for i in start..start + slots {
                match UdpSocket::bind(("127.0.0.1", BASE + i * SLOT)) {
                    Ok(lock) => locks.push(lock),
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                        taken = Some(i);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            match taken {
                None => {
                    return Ok(Self {
                        first: BASE + start * SLOT,
                        slots,
                        _locks: locks,
                    });
                }
                Some(i) => start = i + 1,
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "no {slots} free slots of {SLOT} ports in {BASE}-{TOP} \
                 (other rtpengine instances hold them)"
            ),
        ))
    }

    /// The control port: the slot run's second port, which no other
    /// instance's range contains.
    pub(super) fn ng_port(&self) -> u16 {
        self.first + 1
    }

    /// The media ports, `(min, max)`, starting on an even port (RTP) after
    /// the lock and the control port.
    pub(super) fn media(&self) -> (u16, u16) {
        (self.first + 2, self.first + self.slots * SLOT - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_never_overlap_while_held() {
        let a = PortRange::reserve(2).unwrap();
        let b = PortRange::reserve(1).unwrap();
        let (a_min, a_max) = a.media();
        let (b_min, b_max) = b.media();
        assert!(
            b_min > a_max || b_max < a_min,
            "{:?} {:?}",
            a.media(),
            b.media()
        );
        assert_eq!(a_min % 2, 0);
        assert_eq!(a_max - a.ng_port() + 1, 2 * SLOT - 1);
        drop(b);
        assert!(PortRange::reserve(1).is_ok());
    }

    #[test]
    fn asking_for_more_than_there_is_fails() {
        assert!(PortRange::reserve(u16::MAX / SLOT).is_err());
    }
}
