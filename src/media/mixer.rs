//! [`Mixer`]: the loudest-speakers mix a dial-in caller hears. Each tick
//! the at most [`MAX_SPEAKERS`] loudest streams (lowest -dBov) are chosen,
//! and their frames summed in 32 bits and clamped to 16.
//!
//! Selection and summing are separate steps so that a caller can decode
//! only the streams that were chosen; [`Mixer::mix`] does both for frames
//! already decoded.

use arrayvec::ArrayVec;

use super::FRAME_48K;
use super::level::SILENCE_DBOV;

/// The most streams mixed into one frame.
pub const MAX_SPEAKERS: usize = 3;

/// How much louder (in dB) a new stream must be than one mixed last tick
/// to take its place, so that two speakers of about the same level do not
/// swap in and out every 20 ms.
pub const DEFAULT_HYSTERESIS_DB: u8 = 2;

/// Picks and sums the loudest speakers, tick by tick.
#[derive(Debug, Clone)]
pub struct Mixer {
    hysteresis_db: u8,
    selected: ArrayVec<u32, MAX_SPEAKERS>,
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

    /// The streams chosen by the last [`Self::select`] or [`Self::mix`].
    #[must_use]
    pub fn selected(&self) -> &[u32] {
        &self.selected
    }

    /// Chooses this tick's speakers from `(ssrc, level_dbov)` candidates:
    /// the at most three loudest, silent ones (127) never. Ties go to the
    /// stream listed first. Returns the chosen ssrcs, loudest first.
    pub fn select(&mut self, candidates: impl IntoIterator<Item = (u32, u8)>) -> &[u32] {
        // (rank, ssrc), best (lowest) rank first.
        let mut best: ArrayVec<(u8, u32), MAX_SPEAKERS> = ArrayVec::new();
        for (ssrc, level) in candidates {
            if level >= SILENCE_DBOV {
                continue;
            }
            let rank = if self.selected.contains(&ssrc) {
                level.saturating_sub(self.hysteresis_db)
            } else {
                level
            };
            let at = best
                .iter()
                .position(|&(r, _)| rank < r)
                .unwrap_or(best.len());
            if at < MAX_SPEAKERS {
                if best.is_full() {
                    best.pop();
                }
                best.insert(at, (rank, ssrc));
            }
        }
        self.selected = best.iter().map(|&(_, ssrc)| ssrc).collect();
        &self.selected
    }

    /// Sums `frames` with saturation (32-bit accumulate, clamp to 16
    /// bits); silence for none.
    pub fn sum(&mut self, frames: &[&[i16; FRAME_48K]]) -> &[i16; FRAME_48K] {
        match frames {
            [] => self.out.fill(0),
            [one] => self.out.copy_from_slice(&one[..]),
            [first, rest @ ..] => {
                let mut acc = [0i32; FRAME_48K];
                for (a, &s) in acc.iter_mut().zip(first.iter()) {
                    *a = i32::from(s);
                }
                for frame in rest {
                    for (a, &s) in acc.iter_mut().zip(frame.iter()) {
                        *a += i32::from(s);
                    }
                }
                for (o, &a) in self.out.iter_mut().zip(&acc) {
                    *o = a.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
                }
            }
        }
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
}
