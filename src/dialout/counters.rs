//! Dial-out's counters: calls in progress and calls by outcome, written by
//! the dial-out thread with relaxed atomic adds and rendered with the rest
//! of `/metrics` (whether or not a trunk is configured).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sip::DialOutcome;

/// `sluice_dialout_active_calls` and `sluice_dialout_calls_total{outcome}`.
#[derive(Debug, Default)]
pub struct DialOutCounters {
    active: AtomicU64,
    outcomes: [AtomicU64; DialOutcome::ALL.len()],
}

impl DialOutCounters {
    /// A call was placed.
    pub fn started(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// A call [`Self::started`] counted ended with `outcome`.
    pub fn ended(&self, outcome: DialOutcome) {
        // Saturating: a mismatched end never wraps the gauge.
        let _ = self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
        if let Some(slot) = DialOutcome::ALL.iter().position(|o| *o == outcome) {
            self.outcomes[slot].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls in progress.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Calls that ended with `outcome`.
    pub fn count(&self, outcome: DialOutcome) -> u64 {
        DialOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .map_or(0, |slot| self.outcomes[slot].load(Ordering::Relaxed))
    }

    /// The Prometheus text of these counters.
    pub fn render(&self) -> String {
        let mut out = format!(
            "# HELP sluice_dialout_active_calls Dial-out calls in progress (dialing, ringing \
             or answered).\n# TYPE sluice_dialout_active_calls gauge\n\
             sluice_dialout_active_calls {}\n\
             # HELP sluice_dialout_calls_total Dial-out calls by outcome.\n\
             # TYPE sluice_dialout_calls_total counter\n",
            self.active()
        );
        for outcome in DialOutcome::ALL {
            let _ = writeln!(
                out,
                "sluice_dialout_calls_total{{outcome=\"{}\"}} {}",
                outcome.name(),
                self.count(outcome)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_the_gauge_render() {
        let c = DialOutCounters::default();
        c.started();
        c.started();
        c.ended(DialOutcome::Busy);
        let text = c.render();
        assert!(text.contains("sluice_dialout_active_calls 1\n"), "{text}");
        assert!(text.contains("sluice_dialout_calls_total{outcome=\"busy\"} 1\n"));
        assert!(text.contains("sluice_dialout_calls_total{outcome=\"no_answer\"} 0\n"));
        c.ended(DialOutcome::Answered);
        c.ended(DialOutcome::Answered);
        assert_eq!(c.active(), 0);
    }
}
