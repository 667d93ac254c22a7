//! [`TranscodeCounters`]: what the transcoder participant and the
//! registry's transcode decisions count, rendered into `/metrics` by the
//! metrics hub. Labels are enums ([`EncoderKind`], [`Refusal`]), bounded.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::profile::EncoderKind;
use super::rendition::RenditionStats;

/// Why a receiver that needed a rendition got the original stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `[transcode] max_sessions` transcodes were running, none idle.
    MaxSessions,
    /// No encoder for the codec it asked for opened at start (or
    /// transcoding is disabled).
    NoEncoder,
}

impl Refusal {
    /// Every reason, in label order.
    pub const ALL: [Self; 2] = [Self::MaxSessions, Self::NoEncoder];

    /// The metric label.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::MaxSessions => "max-sessions",
            Self::NoEncoder => "no-encoder",
        }
    }
}

/// Counters of every transcode on the node; cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct TranscodeCounters {
    active: [AtomicU64; EncoderKind::ALL.len()],
    refusals: [AtomicU64; Refusal::ALL.len()],
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    frames_dropped: AtomicU64,
    frames_late: AtomicU64,
    decode_ns: AtomicU64,
    encode_ns: AtomicU64,
    keyframes_sent: AtomicU64,
    keyframe_requests_absorbed: AtomicU64,
    upstream_keyframe_requests: AtomicU64,
    started: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn slot(kind: EncoderKind) -> usize {
    EncoderKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

impl TranscodeCounters {
    /// A transcode encoding with `kind` started.
    pub fn started(&self, kind: EncoderKind) {
        bump(&self.active[slot(kind)], 1);
        bump(&self.started, 1);
    }

    /// A transcode that [`Self::started`] counted stopped.
    pub fn stopped(&self, kind: EncoderKind) {
        // Saturating: a mismatched stop never wraps the gauge.
        let _ = self.active[slot(kind)].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            Some(n.saturating_sub(1))
        });
    }

    /// A receiver got the original stream instead of a rendition.
    pub fn refused(&self, why: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == why) {
            bump(&self.refusals[i], 1);
        }
    }

    /// Adds what a rendition did since `before` (its stats then) up to `now`.
    pub fn add(&self, before: &RenditionStats, now: &RenditionStats) {
        let d = |a: u64, b: u64| b.saturating_sub(a);
        bump(&self.frames_in, d(before.frames_in, now.frames_in));
        bump(&self.frames_out, d(before.frames_out, now.frames_out));
        bump(
            &self.frames_dropped,
            d(before.frames_dropped, now.frames_dropped),
        );
        bump(&self.frames_late, d(before.frames_late, now.frames_late));
        bump(&self.decode_ns, d(before.decode_ns, now.decode_ns));
        bump(&self.encode_ns, d(before.encode_ns, now.encode_ns));
        bump(
            &self.keyframes_sent,
            d(before.keyframes_sent, now.keyframes_sent),
        );
        bump(
            &self.keyframe_requests_absorbed,
            d(
                before.keyframe_requests_absorbed,
                now.keyframe_requests_absorbed,
            ),
        );
        bump(
            &self.upstream_keyframe_requests,
            d(
                before.upstream_keyframe_requests,
                now.upstream_keyframe_requests,
            ),
        );
    }

    /// Transcodes running now, all encoders.
    pub fn active(&self) -> u64 {
        self.active.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }

    /// Transcodes started since start-up.
    pub fn started_total(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Refusals for `why` so far.
    pub fn refusals(&self, why: Refusal) -> u64 {
        Refusal::ALL
            .iter()
            .position(|r| *r == why)
            .map_or(0, |i| self.refusals[i].load(Ordering::Relaxed))
    }

    /// The Prometheus text of these counters.
    pub fn render(&self) -> String {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::from(
            "# HELP sluice_transcode_active Video transcodes running, by encoder.\n\
             # TYPE sluice_transcode_active gauge\n",
        );
        for (kind, n) in EncoderKind::ALL.iter().zip(&self.active) {
            let _ = writeln!(
                out,
                "sluice_transcode_active{{encoder=\"{}\"}} {}",
                kind.name(),
                load(n)
            );
        }
        out.push_str(
            "# HELP sluice_transcode_refusals_total Receivers given the original stream instead of a rendition, by reason.\n\
             # TYPE sluice_transcode_refusals_total counter\n",
        );
        for (why, n) in Refusal::ALL.iter().zip(&self.refusals) {
            let _ = writeln!(
                out,
                "sluice_transcode_refusals_total{{reason=\"{}\"}} {}",
                why.name(),
                load(n)
            );
        }
        let frames_in = load(&self.frames_in);
        let frames_out = load(&self.frames_out);
        let secs = |ns: u64| ns as f64 / 1e9;
        let _ = write!(
            out,
            "# HELP sluice_transcode_started_total Video transcodes started.\n\
             # TYPE sluice_transcode_started_total counter\n\
             sluice_transcode_started_total {}\n\
             # HELP sluice_transcode_frames_total Video frames by stage: in (source frames completed), out (encoded), dropped (lost, undecodable, or shed far behind until a key frame), late (decoded but not encoded: already late).\n\
             # TYPE sluice_transcode_frames_total counter\n\
             sluice_transcode_frames_total{{stage=\"in\"}} {frames_in}\n\
             sluice_transcode_frames_total{{stage=\"out\"}} {frames_out}\n\
             sluice_transcode_frames_total{{stage=\"dropped\"}} {}\n\
             sluice_transcode_frames_total{{stage=\"late\"}} {}\n\
             # HELP sluice_transcode_decode_seconds Decode time per source frame.\n\
             # TYPE sluice_transcode_decode_seconds summary\n\
             sluice_transcode_decode_seconds_sum {}\n\
             sluice_transcode_decode_seconds_count {frames_in}\n\
             # HELP sluice_transcode_encode_seconds Scale and encode time per encoded frame.\n\
             # TYPE sluice_transcode_encode_seconds summary\n\
             sluice_transcode_encode_seconds_sum {}\n\
             sluice_transcode_encode_seconds_count {frames_out}\n\
             # HELP sluice_transcode_keyframes_sent_total Key frames the renditions sent.\n\
             # TYPE sluice_transcode_keyframes_sent_total counter\n\
             sluice_transcode_keyframes_sent_total {}\n\
             # HELP sluice_transcode_keyframe_requests_absorbed_total Receivers' PLI/FIR answered by a key frame already due (rate limit), never sent upstream.\n\
             # TYPE sluice_transcode_keyframe_requests_absorbed_total counter\n\
             sluice_transcode_keyframe_requests_absorbed_total {}\n\
             # HELP sluice_transcode_upstream_keyframe_requests_total Key frames the transcoders asked publishers for (start, unrepairable loss).\n\
             # TYPE sluice_transcode_upstream_keyframe_requests_total counter\n\
             sluice_transcode_upstream_keyframe_requests_total {}\n",
            load(&self.started),
            load(&self.frames_dropped),
            load(&self.frames_late),
            secs(load(&self.decode_ns)),
            secs(load(&self.encode_ns)),
            load(&self.keyframes_sent),
            load(&self.keyframe_requests_absorbed),
            load(&self.upstream_keyframe_requests),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_add_up_and_the_gauge_never_wraps() {
        let c = TranscodeCounters::default();
        c.started(EncoderKind::Libvpx);
        c.stopped(EncoderKind::Libvpx);
        c.stopped(EncoderKind::Libvpx);
        assert_eq!(c.active(), 0);
        let a = RenditionStats::default();
        let b = RenditionStats {
            frames_in: 10,
            frames_out: 9,
            frames_late: 1,
            keyframes_sent: 1,
            ..a
        };
        c.add(&a, &b);
        c.add(&b, &b);
        c.refused(Refusal::MaxSessions);
        let text = c.render();
        assert!(text.contains("sluice_transcode_frames_total{stage=\"in\"} 10\n"));
        assert!(text.contains("sluice_transcode_encode_seconds_count 9\n"));
        assert!(text.contains("sluice_transcode_frames_total{stage=\"late\"} 1\n"));
        assert!(text.contains("sluice_transcode_keyframes_sent_total 1\n"));
        assert!(text.contains("sluice_transcode_refusals_total{reason=\"max-sessions\"} 1\n"));
        assert!(text.contains("sluice_transcode_active{encoder=\"libvpx\"} 0\n"));
        assert_eq!(c.started_total(), 1);
    }
}
