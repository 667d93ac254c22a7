//! [`SilenceGate`]: silence suppression for a caller's uplink, in the
//! manner of Opus DTX (RFC 7587 §3.1.3, RFC 6716 §2.1.9).
//!
//! A phone caller in a meeting mostly listens. Once the caller's frames
//! have been quieter than a threshold for longer than a hangover, the
//! uplink stops encoding and sends nothing, except one frame every
//! keep-alive interval (libopus's own DTX sends one every 400 ms); the
//! first loud frame sends again at once. The gate only decides; the
//! uplink acts, and whoever writes RTP advances the timestamp over the
//! ticks not sent while the sequence number does not move, so receivers
//! see DTX and not loss (RFC 7587 §3.1.3), and marks the first packet of
//! a talkspurt (RFC 3551 §4.1).

/// When the gate closes. [`SilenceSuppression::DIAL_IN`] is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SilenceSuppression {
    /// Frames quieter than this (a larger -dBov, RFC 6464 scale) count as
    /// silence.
    pub threshold_dbov: u8,
    /// Quiet 20 ms ticks still sent before the gate closes.
    pub hangover_ticks: u32,
    /// While closed, one frame is sent every this many ticks.
    pub keepalive_ticks: u32,
}

impl SilenceSuppression {
    /// Quieter than -55 dBov for over 200 ms closes the gate; a keep-alive
    /// frame every 400 ms. G.711 idle noise sits near -70 dBov and speech
    /// well above -40, so the threshold leaves room on both sides.
    pub const DIAL_IN: Self = Self {
        threshold_dbov: 55,
        hangover_ticks: 10,
        keepalive_ticks: 20,
    };
}

impl Default for SilenceSuppression {
    fn default() -> Self {
        Self::DIAL_IN
    }
}

/// What to do with one tick's frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Encode and send it.
    Send {
        /// The first frame after suppressed ticks, sent because of voice:
        /// the start of a talkspurt.
        talkspurt: bool,
    },
    /// Suppressed, but encode and send it to keep the stream alive.
    KeepAlive,
    /// Send nothing.
    Suppress,
}

/// The silence suppression state of one uplink.
#[derive(Debug, Clone)]
pub struct SilenceGate {
    settings: SilenceSuppression,
    /// Consecutive quiet ticks.
    quiet: u32,
    /// Ticks since the gate closed (0: open).
    closed: u32,
}

impl SilenceGate {
    /// An open gate.
    #[must_use]
    pub const fn new(settings: SilenceSuppression) -> Self {
        Self {
            settings,
            quiet: 0,
            closed: 0,
        }
    }

    /// Whether the last decision suppressed or kept alive.
    #[must_use]
    pub const fn is_closed(&self) -> bool {
        self.closed > 0
    }

    /// Decides one tick from the frame's level (-dBov).
    pub fn decide(&mut self, level_dbov: u8) -> Gate {
        if level_dbov <= self.settings.threshold_dbov {
            let talkspurt = self.closed > 0;
            self.quiet = 0;
            self.closed = 0;
            return Gate::Send { talkspurt };
        }
        self.quiet = self.quiet.saturating_add(1);
        if self.quiet <= self.settings.hangover_ticks {
            return Gate::Send { talkspurt: false };
        }
        self.closed = self.closed.saturating_add(1);
        if self
            .closed
            .is_multiple_of(self.settings.keepalive_ticks.max(1))
        {
            Gate::KeepAlive
        } else {
            Gate::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hangover_then_keepalives_then_voice_at_once() {
        let mut gate = SilenceGate::new(SilenceSuppression::DIAL_IN);
        assert_eq!(gate.decide(20), Gate::Send { talkspurt: false });
        // 200 ms of silence still go out.
        for _ in 0..10 {
            assert_eq!(gate.decide(127), Gate::Send { talkspurt: false });
        }
        assert!(!gate.is_closed());
        let mut sent = Vec::new();
        for tick in 1..=60 {
            match gate.decide(70) {
                Gate::KeepAlive => sent.push(tick),
                Gate::Suppress => {}
                Gate::Send { .. } => panic!("sent quiet tick {tick}"),
            }
        }
        // One every 400 ms.
        assert_eq!(sent, [20, 40, 60]);
        assert!(gate.is_closed());
        // -55 dBov is not quieter than the threshold: voice.
        assert_eq!(gate.decide(55), Gate::Send { talkspurt: true });
        assert_eq!(gate.decide(30), Gate::Send { talkspurt: false });
        assert!(!gate.is_closed());
        // A short pause stays within the hangover.
        for _ in 0..5 {
            assert_eq!(gate.decide(127), Gate::Send { talkspurt: false });
        }
        assert_eq!(gate.decide(10), Gate::Send { talkspurt: false });
    }
}
