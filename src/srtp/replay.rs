//! Replay protection: a sliding window over packet indices (RFC 3711
//! §3.3.2), shared by SRTP (48-bit index) and SRTCP (31-bit index).
//!
//! The window is 128 packets wide (the RFC's minimum is 64): one `u128`
//! bitmap anchored at the highest index seen. Checking is separate from
//! accepting because an index may only enter the window once the packet
//! carrying it has authenticated; a forged packet must not move it.

/// Why an index is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// This index was already accepted.
    Duplicate,
    /// The index is further behind the highest one than the window reaches.
    TooOld,
}

/// A 128-packet replay window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReplayWindow {
    /// Highest index accepted, or `None` before the first packet.
    top: Option<u64>,
    /// Bit `n` set: index `top - n` was accepted.
    seen: u128,
}

impl ReplayWindow {
    /// How many indices behind the highest one are still tracked.
    pub(crate) const WIDTH: u64 = 128;

    /// A window that counts every index up to `top` as accepted: a
    /// stream taken up where an earlier session left it.
    pub(crate) fn spent_through(top: u64) -> Self {
        Self {
            top: Some(top),
            seen: u128::MAX,
        }
    }

    /// The highest index accepted so far.
    pub(crate) fn top(&self) -> Option<u64> {
        self.top
    }

    /// Whether `index` could be accepted now.
    pub(crate) fn check(&self, index: u64) -> Result<(), Replay> {
        let Some(top) = self.top else { return Ok(()) };
        if index > top {
            return Ok(());
        }
        let behind = top - index;
        if behind >= Self::WIDTH {
            Err(Replay::TooOld)
        } else if self.seen & (1u128 << behind) != 0 {
            Err(Replay::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Counts every index up to `index`, and up to the window's top, as
    /// used (never lowering the window): what a sender does when it takes
    /// over an SSRC whose indices below `index` someone else may have used
    /// under the key.
    pub(crate) fn close_up_to(&mut self, index: u64) {
        self.top = Some(self.top.map_or(index, |top| top.max(index)));
        self.seen = u128::MAX;
    }

    /// Records `index` (which must have passed [`Self::check`]).
    pub(crate) fn accept(&mut self, index: u64) {
        match self.top {
            None => {
                self.top = Some(index);
                self.seen = 1;
            }
            Some(top) if index > top => {
                let ahead = index - top;
                self.seen = if ahead >= Self::WIDTH {
                    0
                } else {
                    self.seen << ahead
                };
                self.seen |= 1;
                self.top = Some(index);
            }
            Some(top) => {
                let behind = top - index;
                if behind < Self::WIDTH {
                    self.seen |= 1u128 << behind;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(w: &mut ReplayWindow, index: u64) -> Result<(), Replay> {
        w.check(index)?;
        w.accept(index);
        Ok(())
    }

    #[test]
    fn in_order_out_of_order_and_duplicates() {
        let mut w = ReplayWindow::default();
        assert_eq!(accepted(&mut w, 1000), Ok(()));
        assert_eq!(accepted(&mut w, 1000), Err(Replay::Duplicate));
        assert_eq!(accepted(&mut w, 1002), Ok(()));
        assert_eq!(accepted(&mut w, 1001), Ok(()), "late but inside the window");
        assert_eq!(accepted(&mut w, 1001), Err(Replay::Duplicate));
        assert_eq!(w.top(), Some(1002));
    }

    #[test]
    fn the_window_is_128_wide() {
        let mut w = ReplayWindow::default();
        accepted(&mut w, 500).unwrap();
        assert_eq!(w.check(500 - 127), Ok(()), "127 behind is tracked");
        assert_eq!(w.check(500 - 128), Err(Replay::TooOld));
        // A jump of more than the width forgets everything behind.
        accepted(&mut w, 10_000).unwrap();
        assert_eq!(w.check(500), Err(Replay::TooOld));
        assert_eq!(w.check(10_000 - 1), Ok(()));
    }

    #[test]
    fn a_jump_of_exactly_the_width_keeps_no_stale_bits() {
        let mut w = ReplayWindow::default();
        accepted(&mut w, 0).unwrap();
        accepted(&mut w, 128).unwrap();
        assert_eq!(w.check(1), Ok(()));
        accepted(&mut w, 129).unwrap();
        assert_eq!(w.check(128), Err(Replay::Duplicate));
        assert_eq!(w.check(2), Ok(()));
    }

    #[test]
    fn checking_alone_never_moves_the_window() {
        let mut w = ReplayWindow::default();
        accepted(&mut w, 7).unwrap();
        assert_eq!(w.check(1 << 40), Ok(()));
        assert_eq!(w.top(), Some(7));
        assert_eq!(w.check(6), Ok(()));
    }
}
