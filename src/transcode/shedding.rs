//! [`Shedding`]: a transcode past its CPU stays current instead of
//! working through its backlog. Fed each source frame as the jitter buffer
//! completes it, with `now` and when the packet that completed it arrived
//! (the kernel's receive timestamp: a packet that waited in the socket
//! buffer while the thread was busy is as old as its wait), it says
//! whether to encode it, to decode it only (it is late: later frames still
//! need it as a reference, but nobody needs it on screen now), or to drop
//! everything until the next key frame and ask the publisher for one (far
//! behind, and skipping the encodes has not caught up within a second:
//! even decoding alone is too much).
//!
//! A one-off stall (an encoder opening, another task holding the core) is
//! ridden out by skipping encodes, never by a resync: a publisher that
//! does not answer key frame requests would leave the rendition dark
//! until its next scheduled key frame. Lateness is measured from arrival,
//! never against the publisher's RTP clock, so a publisher sending in
//! bursts, drifting or restarting its timestamps is never taken for a
//! transcode falling behind.

use std::time::{Duration, Instant};

/// A frame handled this long after its arrival is not encoded (three
/// frame times at 30 fps: what a receiver's playout buffer would not ride
/// out).
pub const SKIP_BEHIND: Duration = Duration::from_millis(100);
/// A frame this far behind, after frames have been late for
/// [`RESYNC_AFTER`], makes the transcode drop input until the next key
/// frame (at most once per [`RESYNC_INTERVAL`]).
pub const RESYNC_BEHIND: Duration = Duration::from_millis(500);
/// How long skipping encodes gets to catch up before a resync.
pub const RESYNC_AFTER: Duration = Duration::from_secs(1);
/// At most one resync (and so one key frame request) per this long:
/// frames far behind in between are decoded only.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(1);

/// What to do with one source frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFate {
    /// On time: decode, scale, encode.
    Encode,
    /// Late: decode it (the next frames refer to it), do not encode it.
    DecodeOnly,
    /// Far behind: drop it and every frame until the next key frame, and
    /// ask the publisher for one.
    Resync,
}

/// The shedding decision of one transcode.
#[derive(Debug, Default)]
pub struct Shedding {
    /// The last resync.
    resynced: Option<Instant>,
    /// Since when every frame has been late (none on time since).
    late_since: Option<Instant>,
}

impl Shedding {
    /// A source frame, completed by a packet that arrived at `arrived`,
    /// is about to be decoded at `now`; `keyframe` when it starts a GOP
    /// (it is never dropped: it is what a resync waits for).
    pub fn handle_frame(&mut self, now: Instant, arrived: Instant, keyframe: bool) -> FrameFate {
        let behind = now.saturating_duration_since(arrived);
        if behind <= SKIP_BEHIND {
            self.late_since = None;
            return FrameFate::Encode;
        }
        let late_since = *self.late_since.get_or_insert(now);
        let may_resync = now >= late_since + RESYNC_AFTER
            && self.resynced.is_none_or(|at| now >= at + RESYNC_INTERVAL);
        if behind > RESYNC_BEHIND && !keyframe && may_resync {
            self.resynced = Some(now);
            FrameFate::Resync
        } else {
            FrameFate::DecodeOnly
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_nanos(33_333_333);

    /// Frame n arrives at `t0 + n frame times` and is handled `wait(n)`
    /// later; a key frame every `keyframe_every`.
    fn run(frames: u32, keyframe_every: u32, wait: impl Fn(u32) -> Duration) -> Vec<FrameFate> {
        let t0 = Instant::now();
        let mut s = Shedding::default();
        (0..frames)
            .map(|n| {
                let arrived = t0 + FRAME * n;
                s.handle_frame(arrived + wait(n), arrived, n % keyframe_every == 0)
            })
            .collect()
    }

    #[test]
    fn a_transcode_that_keeps_up_encodes_every_frame() {
        // Handled 5 to 95 ms after arrival: nothing is late.
        let fates = run(300, 30, |n| {
            Duration::from_millis(5 + u64::from(n * 7) % 91)
        });
        assert!(fates.iter().all(|f| *f == FrameFate::Encode), "{fates:?}");
    }

    #[test]
    fn late_frames_are_decoded_only_and_sustained_far_late_ones_resync_to_a_key_frame() {
        // Stalls: frames 100..110 handled 150 ms late, 200..205 700 ms
        // late (both recover), 230..290 700 ms late (it does not).
        let fates = run(320, 30, |n| match n {
            100..110 => Duration::from_millis(150),
            200..205 | 230..290 => Duration::from_millis(700),
            _ => Duration::from_millis(5),
        });
        let resyncs: Vec<usize> = (0..fates.len())
            .filter(|&n| fates[n] == FrameFate::Resync)
            .collect();
        assert!(fates[..100].iter().all(|f| *f == FrameFate::Encode));
        assert!(fates[100..110].iter().all(|f| *f == FrameFate::DecodeOnly));
        assert!(fates[110..200].iter().all(|f| *f == FrameFate::Encode));
        // A short stall is ridden out by skipping encodes.
        assert!(fates[200..205].iter().all(|f| *f == FrameFate::DecodeOnly));
        // Late for a second: a resync (not at a key frame), then at most
        // one a second.
        assert_eq!(resyncs, [261], "{fates:?}");
        assert!(fates[290..].iter().all(|f| *f == FrameFate::Encode));
        // A key frame is never dropped, only not encoded.
        let key_late = run(100, 30, |n| {
            Duration::from_millis(if n >= 50 { 900 } else { 0 })
        });
        assert_eq!(key_late[90], FrameFate::DecodeOnly);
        assert_eq!(key_late[81], FrameFate::Resync);
    }

    #[test]
    fn a_growing_backlog_is_shed_from_three_frame_times_behind() {
        // Past capacity: each frame handled 5 ms later than the last.
        let fates = run(200, 30, |n| Duration::from_millis(5 * u64::from(n)));
        let first_skip = fates.iter().position(|f| *f != FrameFate::Encode).unwrap();
        assert_eq!(first_skip, 21, "{fates:?}"); // 105 ms > 100 ms
        let first_resync = fates.iter().position(|f| *f == FrameFate::Resync).unwrap();
        assert_eq!(first_resync, 101, "{fates:?}"); // 505 ms, late 2.7 s
    }
}
