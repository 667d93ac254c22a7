//! The voice menu's prompts: speech made once with espeak-ng (see
//! `prompts/generate.sh`), stored as raw G.711 mu-law at 8 kHz and built
//! into the binary, so a packaged daemon needs no data files.

/// One of the menu's sentences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prompt {
    /// "Welcome. Please enter the meeting number, followed by the pound key."
    Welcome,
    /// "Please enter the meeting passcode, followed by the pound key."
    Passcode,
    /// "That meeting number was not found. Please try again."
    UnknownMeeting,
    /// "That passcode is not correct. Please try again."
    WrongPasscode,
    /// "This meeting is end to end encrypted and cannot be joined by phone. Goodbye."
    E2ee,
    /// "You are joining the meeting now."
    Joining,
    /// "Sorry, that did not work. Goodbye."
    Goodbye,
    /// "This meeting cannot take more callers right now. Goodbye."
    Unavailable,
}

impl Prompt {
    /// The sentence as mu-law samples, 8 kHz.
    pub(crate) fn mu_law(self) -> &'static [u8] {
        match self {
            Self::Welcome => include_bytes!("../../prompts/welcome.ul"),
            Self::Passcode => include_bytes!("../../prompts/passcode.ul"),
            Self::UnknownMeeting => include_bytes!("../../prompts/unknown-meeting.ul"),
            Self::WrongPasscode => include_bytes!("../../prompts/wrong-passcode.ul"),
            Self::E2ee => include_bytes!("../../prompts/e2ee.ul"),
            Self::Joining => include_bytes!("../../prompts/joining.ul"),
            Self::Goodbye => include_bytes!("../../prompts/goodbye.ul"),
            Self::Unavailable => include_bytes!("../../prompts/unavailable.ul"),
        }
    }
}

/// A prompt being played, 20 ms (160 samples) per tick.
#[derive(Debug, Clone)]
pub(crate) struct Playback {
    prompt: Prompt,
    at: usize,
}

/// Samples per 20 ms at 8 kHz.
pub(crate) const FRAME: usize = 160;

impl Playback {
    pub(crate) fn new(prompt: Prompt) -> Self {
        Self { prompt, at: 0 }
    }

    /// The next 20 ms of mu-law into `out` (mu-law silence after the end);
    /// false once the prompt is over.
    pub(crate) fn next_frame(&mut self, out: &mut [u8; FRAME]) -> bool {
        let samples = self.prompt.mu_law();
        let rest = samples.get(self.at..).unwrap_or_default();
        let n = rest.len().min(FRAME);
        out[..n].copy_from_slice(&rest[..n]);
        out[n..].fill(MU_LAW_SILENCE);
        self.at += n;
        n > 0
    }
}

/// The mu-law code word for 0.
pub(crate) const MU_LAW_SILENCE: u8 = 0xFF;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prompt_is_speech_of_a_few_seconds() {
        for prompt in [
            Prompt::Welcome,
            Prompt::Passcode,
            Prompt::UnknownMeeting,
            Prompt::WrongPasscode,
            Prompt::E2ee,
            Prompt::Joining,
            Prompt::Goodbye,
            Prompt::Unavailable,
        ] {
            let samples = prompt.mu_law();
            let secs = samples.len() as f64 / 8000.0;
            assert!((1.0..8.0).contains(&secs), "{prompt:?}: {secs} s");
            // Speech, not silence: most code words are far from 0.
            let loud = samples.iter().filter(|&&b| (b & 0x7F) < 0x60).count();
            assert!(loud * 5 > samples.len(), "{prompt:?} is mostly silence");
        }
    }

    #[test]
    fn playback_runs_in_frames_then_ends_with_silence() {
        let mut p = Playback::new(Prompt::Joining);
        let total = Prompt::Joining.mu_law().len();
        let mut frame = [0u8; FRAME];
        let mut frames = 0;
        while p.next_frame(&mut frame) {
            frames += 1;
        }
        assert_eq!(frames, total.div_ceil(FRAME));
        assert!(frame.iter().all(|&b| b == MU_LAW_SILENCE));
    }
}
