//! Tones: a Goertzel detector for one frequency and a phase-continuous
//! sine generator (prompts, tests, the benchmark).

/// The power of `freq` in `samples` by the Goertzel algorithm, scaled so
/// that a sine at `freq` of amplitude `a` (as a fraction of full scale,
/// 32768) gives `a²`: a full-scale sine ≈ 1.0, a -6 dBFS one ≈ 0.25. Tones
/// off `freq` by more than `rate / samples.len()` give far less. Empty
/// input gives 0.
#[must_use]
pub fn goertzel_power(samples: &[i16], rate: u32, freq: f32) -> f32 {
    if samples.is_empty() || rate == 0 {
        return 0.0;
    }
    let w = 2.0 * core::f64::consts::PI * f64::from(freq) / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s = f64::from(x) / 32768.0 + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let mag2 = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let n = samples.len() as f64;
    (4.0 * mag2 / (n * n)) as f32
}

/// A sine generator that continues its phase from one `fill` to the next.
#[derive(Debug, Clone)]
pub struct Sine {
    step: f64,
    phase: f64,
    amplitude: f32,
}

impl Sine {
    /// A sine of `freq` Hz sampled at `rate` Hz, peak `amplitude` (in
    /// sample units, clamped to 32767).
    #[must_use]
    pub fn new(freq: f32, rate: u32, amplitude: f32) -> Self {
        Self {
            step: 2.0 * core::f64::consts::PI * f64::from(freq) / f64::from(rate.max(1)),
            phase: 0.0,
            amplitude: amplitude.clamp(0.0, 32767.0),
        }
    }

    /// Writes the next `out.len()` samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        let a = f64::from(self.amplitude);
        for o in out {
            *o = (a * self.phase.sin()).round() as i16;
            self.phase += self.step;
        }
        self.phase %= 2.0 * core::f64::consts::PI;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_1khz_and_not_440() {
        let mut sine = Sine::new(1000.0, 8000, 32767.0);
        let mut pcm = [0i16; 160];
        sine.fill(&mut pcm);
        let at = goertzel_power(&pcm, 8000, 1000.0);
        let off = goertzel_power(&pcm, 8000, 440.0);
        assert!((at - 1.0).abs() < 0.01, "1 kHz power {at}");
        assert!(off < 0.01, "440 Hz power {off}");
        assert_eq!(goertzel_power(&[], 8000, 1000.0), 0.0);
    }

    #[test]
    fn scale_is_amplitude_squared() {
        let mut sine = Sine::new(440.0, 48_000, 16384.0);
        let mut pcm = [0i16; 960];
        sine.fill(&mut pcm);
        let p = goertzel_power(&pcm, 48_000, 440.0);
        assert!((p - 0.25).abs() < 0.02, "power {p}");
    }

    #[test]
    fn sine_is_phase_continuous() {
        let mut one = Sine::new(700.0, 8000, 10_000.0);
        let mut whole = [0i16; 320];
        one.fill(&mut whole);
        let mut two = Sine::new(700.0, 8000, 10_000.0);
        let mut halves = [0i16; 320];
        two.fill(&mut halves[..113]);
        two.fill(&mut halves[113..]);
        for (a, b) in whole.iter().zip(&halves) {
            assert!((a - b).abs() <= 1, "{a} vs {b}");
        }
    }
}
