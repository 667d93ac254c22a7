//! Meeting passcodes as the cluster stores them: PBKDF2-HMAC-SHA256
//! (ring) with a random salt, written `pbkdf2-sha256$<iterations>$<salt>$<hash>`
//! (base64). Redis never holds a passcode itself; verification is
//! constant-time (`ring::pbkdf2::verify`).

use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

/// Iterations: passcodes are short, so the hash must be slow to guess by
/// the table, yet one admission must stay well under a millisecond's
/// budget times a hundred (about 5 ms on this box).
const ITERATIONS: u32 = 20_000;

/// Hashes `passcode` with a fresh salt; `None` when the RNG fails.
pub fn hash(passcode: &str, rng: &SystemRandom) -> Option<String> {
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).ok()?;
    let mut out = [0u8; 32];
    let iterations = NonZeroU32::new(ITERATIONS)?;
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        passcode.as_bytes(),
        &mut out,
    );
    Some(format!(
        "pbkdf2-sha256${ITERATIONS}${}${}",
        B64.encode(salt),
        B64.encode(out)
    ))
}

/// Whether `given` is the passcode `stored` was made from (false for a
/// malformed `stored`).
pub fn verify(given: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(iterations), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Some(iterations), Ok(salt), Ok(hash)) = (
        iterations.parse().ok().and_then(NonZeroU32::new),
        B64.decode(salt),
        B64.decode(hash),
    ) else {
        return false;
    };
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        given.as_bytes(),
        &hash,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_passcode_only_and_hides_it() {
        let rng = SystemRandom::new();
        let stored = hash("4711", &rng).unwrap();
        assert!(!stored.contains("4711"));
        assert!(verify("4711", &stored));
        assert!(!verify("4712", &stored));
        assert!(!verify("", &stored));
        // Salted: the same passcode hashes differently each time.
        assert_ne!(stored, hash("4711", &rng).unwrap());
        assert!(!verify("4711", "plain-4711"));
        assert!(!verify("4711", "pbkdf2-sha256$0$AA$AA"));
    }
}
