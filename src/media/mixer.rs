//! [`Mixer`]: the loudest-speakers mix a dial-in caller hears. Each tick
//! the at most [`MAX_SPEAKERS`] loudest streams (lowest -dBov) are chosen,
//! and their frames summed in 32 bits and clamped to 16.
//!
//! Selection and summing are separate steps so that a caller can decode
//! only the streams that were chosen; [`Mixer::mix`] does both for frames
//! already decoded. [`Mixer::select_with_runner_up`] also names the next
//! loudest stream, which a speaker's own mix needs: a caller who is one of
//! the three hears the other two and the runner-up, never itself (N-1).

use arrayvec::ArrayVec;

use super::FRAME_48K;
use super::level::SILENCE_DBOV;

/// The most streams mixed into one frame.
pub const MAX_SPEAKERS: usize = 3;
/// The speakers and the runner-up: what a meeting's mixes can need.
pub const MAX_RANKED: usize = MAX_SPEAKERS + 1;

/// How much louder (in dB) a new stream must be than one mixed last tick
/// to take its place, so that two speakers of about the same level do not
/// swap in and out every 20 ms.
pub const DEFAULT_HYSTERESIS_DB: u8 = 2;

/// Picks and sums the loudest speakers, tick by tick.
#[derive(Debug, Clone)]
pub struct Mixer {
    hysteresis_db: u8,
    /// The speakers, loudest first, then the runner-up when asked for.
    selected: ArrayVec<u32, MAX_RANKED>,
    out: Box<[i16; FRAME_48K]>,
}

impl Default for Mixer {
    fn default() -> Self {
        Self::new()
    }
}

impl Mixer {
    /// A mixer with [`DEFAULT_HYSTERESIS_DB`].
    #[must_use]
    pub fn new() -> Self {
        Self::with_hysteresis(DEFAULT_HYSTERESIS_DB)
    }

    /// A mixer where a stream mixed last tick counts `hysteresis_db` louder
    /// than its level when ranked (0: rank by level alone).
    #[must_use]
    pub fn with_hysteresis(hysteresis_db: u8) -> Self {
        Self {
            hysteresis_db,
            selected: ArrayVec::new(),
            out: Box::new([0; FRAME_48K]),
        }
    }

    /// The speakers chosen by the last selection or [`Self::mix`], loudest
    /// first (at most [`MAX_SPEAKERS`]).
    #[must_use]
    pub fn selected(&self) -> &[u32] {
        &self.selected[..self.selected.len().min(MAX_SPEAKERS)]
    }

    /// The stream ranked just after the speakers by the last
    /// [`Self::select_with_runner_up`], if there was one.
    #[must_use]
    pub fn runner_up(&self) -> Option<u32> {
        self.selected.get(MAX_SPEAKERS).copied()
    }

    /// Chooses this tick's speakers from `(ssrc, level_dbov)` candidates:
    /// the at most three loudest, silent ones (127) never. Ties go to the
    /// stream listed first. Returns the chosen ssrcs, loudest first.
    pub fn select(&mut self, candidates: impl IntoIterator<Item = (u32, u8)>) -> &[u32] {
        self.rank(candidates, MAX_SPEAKERS);
        &self.selected
    }

    /// [`Self::select`], and the next loudest stream after the speakers
    /// (ranked the same way, never silent) appended as a fourth entry.
    /// Hysteresis favours last tick's speakers only, not its runner-up.
    pub fn select_with_runner_up(
        &mut self,
        candidates: impl IntoIterator<Item = (u32, u8)>,
    ) -> &[u32] {
        self.rank(candidates, MAX_RANKED);
        &self.selected
    }

    fn rank(&mut self, candidates: impl IntoIterator<Item = (u32, u8)>, keep: usize) {
        // (rank, ssrc), best (lowest) rank first.
        let mut best: ArrayVec<(u8, u32), MAX_RANKED> = ArrayVec::new();
        let speakers = self.selected.len().min(MAX_SPEAKERS);
        for (ssrc, level) in candidates {
            if level >= SILENCE_DBOV {
                continue;
            }
            let rank = if self.selected[..speakers].contains(&ssrc) {
                level.saturating_sub(self.hysteresis_db)
            } else {
                level
            };
            let at = best
                .iter()
                .position(|&(r, _)| rank < r)
                .unwrap_or(best.len());
            if at < keep {
                if best.len() == keep {
                    best.pop();
                }
                best.insert(at, (rank, ssrc));
            }
        }
        self.selected = best.iter().map(|&(_, ssrc)| ssrc).collect();
    }

    /// Sums `frames` with saturation (32-bit accumulate, clamp to 16
    /// bits); silence for none.
    pub fn sum(&mut self, frames: &[&[i16; FRAME_48K]]) -> &[i16; FRAME_48K] {
        saturating_sum(frames, &mut self.out);
        &self.out
    }

    /// Selects the loudest of `candidates` (ssrc, level, frame) and sums
    /// their frames.
    pub fn mix(&mut self, candidates: &[(u32, u8, &[i16; FRAME_48K])]) -> &[i16; FRAME_48K] {
        self.select(candidates.iter().map(|&(ssrc, level, _)| (ssrc, level)));
        let frames: ArrayVec<&[i16; FRAME_48K], MAX_SPEAKERS> = self
            .selected
            .iter()
            .filter_map(|s| candidates.iter().find(|c| c.0 == *s).map(|c| c.2))
            .collect();
        self.sum(&frames)
    }
}

/// Sums `frames` of any one length into `out` with saturation (32-bit
/// accumulate, clamp to 16 bits); silence for none.
pub(super) fn saturating_sum<const N: usize>(frames: &[&[i16; N]], out: &mut [i16; N]) {
    match frames {
        [] => out.fill(0),
        [one] => out.copy_from_slice(&one[..]),
        [first, rest @ ..] => {
            let mut acc = [0i32; N];
            for (a, &s) in acc.iter_mut().zip(first.iter()) {
                *a = i32::from(s);
            }
            for frame in rest {
                for (a, &s) in acc.iter_mut().zip(frame.iter()) {
                    *a += i32::from(s);
                }
            }
            for (o, &a) in out.iter_mut().zip(&acc) {
                *o = a.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_three_loudest_of_five() {
        // Each speaker's frame is a constant so the sum shows who was mixed.
        let frames: Vec<[i16; FRAME_48K]> = [1i16, 10, 100, 1000, 10000]
            .iter()
            .map(|&v| [v; FRAME_48K])
            .collect();
        let levels = [40u8, 12, 60, 25, 30];
        let candidates: Vec<_> = (0..5)
            .map(|i| (i as u32 + 100, levels[i], &frames[i]))
            .collect();
        let mut mixer = Mixer::with_hysteresis(0);
        let out = *mixer.mix(&candidates);
        // Loudest: ssrc 101 (12), 103 (25), 104 (30).
        assert_eq!(mixer.selected(), &[101, 103, 104]);
        assert!(out.iter().all(|&s| s == 10 + 1000 + 10000));
    }

    #[test]
    fn silent_streams_are_never_mixed() {
        let mut mixer = Mixer::new();
        assert_eq!(mixer.select([(1, 127), (2, 127), (3, 90)]), &[3]);
        assert!(mixer.select([]).is_empty());
        assert!(mixer.sum(&[]).iter().all(|&s| s == 0));
    }

    #[test]
    fn sum_saturates() {
        let loud = [30_000i16; FRAME_48K];
        let neg = [-30_000i16; FRAME_48K];
        let mut mixer = Mixer::new();
        assert!(
            mixer
                .sum(&[&loud, &loud, &loud])
                .iter()
                .all(|&s| s == i16::MAX)
        );
        assert!(mixer.sum(&[&neg, &neg]).iter().all(|&s| s == i16::MIN));
        assert!(mixer.sum(&[&loud, &neg]).iter().all(|&s| s == 0));
    }

    #[test]
    fn hysteresis_keeps_a_speaker_against_a_slightly_louder_one() {
        let mut mixer = Mixer::with_hysteresis(2);
        mixer.select([(1, 20), (2, 21), (3, 22)]);
        // 4 is 1 dB louder than 3: not enough to replace it.
        assert_eq!(
            mixer.select([(1, 20), (2, 21), (3, 22), (4, 21)]),
            &[1, 2, 3]
        );
        // 3 dB louder is.
        assert_eq!(
            mixer.select([(1, 20), (2, 21), (3, 22), (4, 19)]),
            &[1, 2, 4]
        );
    }

    #[test]
    fn runner_up_follows_the_speakers_without_hysteresis() {
        let mut mixer = Mixer::with_hysteresis(2);
        let five = [(1, 30), (2, 20), (3, 127), (4, 25), (5, 40), (6, 35)];
        assert_eq!(mixer.select_with_runner_up(five), &[2, 4, 1, 6]);
        assert_eq!(mixer.selected(), &[2, 4, 1]);
        assert_eq!(mixer.runner_up(), Some(6));
        // 6 was runner-up, not a speaker: no bonus against 5 at 1 dB less.
        assert_eq!(
            mixer.select_with_runner_up([(1, 30), (2, 20), (4, 25), (5, 34), (6, 35)]),
            &[2, 4, 1, 5]
        );
        // Two streams: no runner-up.
        assert_eq!(mixer.select_with_runner_up([(7, 10), (8, 11)]), &[7, 8]);
        assert_eq!(mixer.runner_up(), None);
        // A plain select forgets the runner-up.
        mixer.select_with_runner_up([(1, 1), (2, 2), (4, 4), (5, 5)]);
        assert_eq!(mixer.select([(1, 1), (2, 2), (4, 4), (5, 5)]), &[1, 2, 4]);
        assert_eq!(mixer.runner_up(), None);
    }
}
