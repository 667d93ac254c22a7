//! [`KeyframeLimiter`]: how a rendition answers its receivers' key frame
//! requests (PLI, RFC 4585 §6.3.1; FIR, RFC 5104 §4.3.1) itself: at most
//! one key frame per interval, never passing a request upstream.
//!
//! A request within the interval after the last key frame is absorbed: a
//! receiver that missed that key frame asks again (browsers repeat PLI
//! while they cannot decode), and the next request after the interval is
//! served at once. Sans-IO: fed `now`.

use std::time::{Duration, Instant};

/// The bound: one key frame per second per rendition.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_secs(1);

/// Rate limiter for one rendition's on-demand key frames.
#[derive(Debug, Clone)]
pub struct KeyframeLimiter {
    interval: Duration,
    last: Option<Instant>,
    wanted: bool,
    absorbed: u64,
}

impl KeyframeLimiter {
    /// A limiter allowing one key frame per `interval`.
    #[must_use]
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            wanted: false,
            absorbed: 0,
        }
    }

    /// A receiver asked for a key frame at `now`.
    pub fn handle_request(&mut self, now: Instant) {
        if self.last.is_some_and(|at| now < at + self.interval) {
            self.absorbed += 1;
        } else {
            self.wanted = true;
        }
    }

    /// Whether the frame encoded at `now` must be a key frame; call once
    /// per frame.
    pub fn poll_force(&mut self, now: Instant) -> bool {
        let force = self.wanted;
        self.wanted = false;
        if force {
            self.last = Some(now);
        }
        force
    }

    /// The encoder made a key frame at `now` (forced or scheduled).
    pub fn note_keyframe(&mut self, now: Instant) {
        self.last = Some(now);
    }

    /// Requests absorbed by the rate limit.
    #[must_use]
    pub const fn absorbed(&self) -> u64 {
        self.absorbed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_requests_in_a_second_give_one_keyframe() {
        let t0 = Instant::now();
        let mut k = KeyframeLimiter::new(KEYFRAME_INTERVAL);
        let mut forced = 0;
        for i in 0..30u64 {
            let now = t0 + Duration::from_millis(33 * i);
            if i < 10 {
                k.handle_request(now);
            }
            forced += u32::from(k.poll_force(now));
        }
        assert_eq!(forced, 1);
        assert_eq!(k.absorbed(), 9);
        // After the interval a request is served at once.
        let later = t0 + Duration::from_millis(1100);
        k.handle_request(later);
        assert!(k.poll_force(later));
        assert!(!k.poll_force(later));
    }

    #[test]
    fn a_scheduled_keyframe_also_counts() {
        let t0 = Instant::now();
        let mut k = KeyframeLimiter::new(KEYFRAME_INTERVAL);
        k.note_keyframe(t0);
        k.handle_request(t0 + Duration::from_millis(500));
        assert!(!k.poll_force(t0 + Duration::from_millis(500)));
        k.handle_request(t0 + Duration::from_millis(1000));
        assert!(k.poll_force(t0 + Duration::from_millis(1000)));
    }
}
