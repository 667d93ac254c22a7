//! Digest authentication of the trunk's INVITEs (RFC 3261 §22.4 with the
//! SHA-256 algorithm of RFC 7616 §3.4, as RFC 8760 brings it to SIP).
//!
//! The nonce is stateless: `<seconds>.<HMAC-SHA-256(secret, seconds)>`,
//! so a challenge costs the UAS no memory (a flood of unauthenticated
//! INVITEs gets 401s and leaves nothing behind). A nonce is good for
//! [`NONCE_LIFETIME`]; an older one is answered with `stale=true`.
//! `qop=auth` is offered and required; `auth-int` is not offered.
//!
//! Written here rather than taken from a crate: the SIP digest crates on
//! crates.io are unmaintained or MD5-only; this is two hashes and a
//! parameter list over `ring`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use ring::digest::{SHA256, digest};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::policy::secrets_equal;

/// How long a nonce we issued is accepted.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// Trunk accounts: user name → password, from a file of `user:password`
/// lines (`#` comments and blank lines skipped).
pub struct Credentials {
    users: HashMap<String, Zeroizing<String>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads the file (at most 1 MiB); the error says which line is wrong.
    pub fn load(path: &Path) -> Result<Self, String> {
        use std::io::Read as _;
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut text = Zeroizing::new(String::new());
        file.take(crate::config::MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        if text.len() as u64 > crate::config::MAX_FILE_BYTES {
            return Err("the file is larger than 1 MiB".to_owned());
        }
        Self::parse(&text)
    }

    /// Parses `user:password` lines.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, password)) = line.split_once(':') else {
                return Err(format!("line {} has no ':'", n + 1));
            };
            let user_ok = !user.is_empty()
                && user.len() <= 64
                && user
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
            if !user_ok {
                return Err(format!(
                    "line {}: the user name must be 1 to 64 letters, digits, '-', '_', '.' or '+'",
                    n + 1
                ));
            }
            if password.is_empty() {
                return Err(format!("line {}: the password is empty", n + 1));
            }
            users.insert(user.to_owned(), Zeroizing::new(password.to_owned()));
        }
        if users.is_empty() {
            return Err("it holds no user:password line".to_owned());
        }
        Ok(Self { users })
    }

    fn password(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(|p| p.as_str())
    }
}

/// What [`DigestAuth::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Good credentials for a fresh nonce of ours.
    Valid,
    /// Good credentials for a nonce too old: challenge with `stale=true`.
    Stale,
    /// No credentials, or wrong ones.
    Invalid,
}

/// The issuer and checker of challenges.
pub(crate) struct DigestAuth {
    key: hmac::Key,
    epoch: Option<Instant>,
}

impl std::fmt::Debug for DigestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestAuth").finish_non_exhaustive()
    }
}

impl DigestAuth {
    /// A checker with a fresh random nonce key (`seed` for tests).
    pub(crate) fn new(seed: Option<[u8; 32]>) -> Self {
        let mut secret = [0u8; 32];
        match seed {
            Some(s) => secret = s,
            None => {
                // A failing system RNG leaves the key all zero: nonces are
                // then forgeable, never accepted without the password.
                let _ = SystemRandom::new().fill(&mut secret);
            }
        }
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            epoch: None,
        }
    }

    fn seconds(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        now.saturating_duration_since(epoch).as_secs()
    }

    fn nonce_at(&self, secs: u64) -> String {
        let tag = hmac::sign(&self.key, &secs.to_be_bytes());
        format!("{secs:x}.{}", hex(&tag.as_ref()[..16]))
    }

    /// The `WWW-Authenticate` value of a 401.
    pub(crate) fn challenge(&mut self, now: Instant, realm: &str, stale: bool) -> String {
        let secs = self.seconds(now);
        let mut value = format!(
            "Digest realm=\"{realm}\", nonce=\"{}\", algorithm=SHA-256, qop=\"auth\"",
            self.nonce_at(secs)
        );
        if stale {
            value.push_str(", stale=true");
        }
        value
    }

    /// Checks an `Authorization` header value of a `method` request.
    pub(crate) fn verify(
        &mut self,
        now: Instant,
        realm: &str,
        credentials: &Credentials,
        method: &str,
        authorization: Option<&str>,
    ) -> Verdict {
        let Some(value) = authorization else {
            return Verdict::Invalid;
        };
        let Some(params) = DigestParams::parse(value) else {
            return Verdict::Invalid;
        };
        let algorithm_ok = params
            .get("algorithm")
            .is_some_and(|a| a.eq_ignore_ascii_case("SHA-256"));
        let (Some(user), Some(nonce), Some(uri), Some(response), Some(nc), Some(cnonce)) = (
            params.get("username"),
            params.get("nonce"),
            params.get("uri"),
            params.get("response"),
            params.get("nc"),
            params.get("cnonce"),
        ) else {
            return Verdict::Invalid;
        };
        if !algorithm_ok || params.get("realm") != Some(realm) || params.get("qop") != Some("auth")
        {
            return Verdict::Invalid;
        }
        let Some(issued) = nonce
            .split_once('.')
            .and_then(|(s, _)| u64::from_str_radix(s, 16).ok())
        else {
            return Verdict::Invalid;
        };
        if !secrets_equal(nonce, &self.nonce_at(issued)) {
            return Verdict::Invalid;
        }
        let Some(password) = credentials.password(user) else {
            return Verdict::Invalid;
        };
        let ha1 = sha256_hex(&format!("{user}:{realm}:{password}"));
        let ha2 = sha256_hex(&format!("{method}:{uri}"));
        let expected = sha256_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        if !secrets_equal(&response.to_ascii_lowercase(), &expected) {
            return Verdict::Invalid;
        }
        let age = self.seconds(now).saturating_sub(issued);
        if age > NONCE_LIFETIME.as_secs() {
            Verdict::Stale
        } else {
            Verdict::Valid
        }
    }
}

/// The `name=value` list of a `Digest ...` credentials value.
pub(crate) struct DigestParams<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> DigestParams<'a> {
    pub(crate) fn parse(value: &'a str) -> Option<Self> {
        let (scheme, rest) = value.trim().split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut pairs = Vec::new();
        let mut rest = rest.trim_start();
        while !rest.is_empty() {
            if pairs.len() >= 32 {
                return None;
            }
            let (name, after) = rest.split_once('=')?;
            let name = name.trim();
            let after = after.trim_start();
            let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim(), &after[end..])
            };
            pairs.push((name, val));
            rest = remaining.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
        Some(Self { pairs })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

fn sha256_hex(text: &str) -> String {
    hex(digest(&SHA256, text.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The `Authorization` value a trunk would send: the client side of the
/// exchange, for tests (unit and integration).
#[doc(hidden)]
pub fn client_authorization(
    challenge: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> Option<String> {
    let params = DigestParams::parse(challenge)?;
    let realm = params.get("realm")?;
    let nonce = params.get("nonce")?;
    let (nc, cnonce) = ("00000001", "0a4f113b");
    let ha1 = sha256_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = sha256_hex(&format!("{method}:{uri}"));
    let response = sha256_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    Some(format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=SHA-256, qop=auth, nc={nc}, cnonce=\"{cnonce}\""
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::parse("# trunk\npbx:s3cret\n\nsbc:other:colon\n").unwrap()
    }

    #[test]
    fn credential_files_are_checked_line_by_line() {
        let c = creds();
        assert_eq!(c.password("pbx"), Some("s3cret"));
        assert_eq!(c.password("sbc"), Some("other:colon"));
        assert!(Credentials::parse("").unwrap_err().contains("no user"));
        assert!(
            Credentials::parse("a:b\nnocolon\n")
                .unwrap_err()
                .contains("line 2")
        );
        assert!(
            Credentials::parse("a b:c\n")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(Credentials::parse("a:\n").unwrap_err().contains("empty"));
    }

    #[test]
    fn the_rfc_7616_sha256_example_response_is_reproduced() {
        // RFC 7616 §3.9.1, SHA-256 (HTTP GET; the formula is the same).
        let ha1 = sha256_hex("Mufasa:http-auth@example.org:Circle of Life");
        let ha2 = sha256_hex("GET:/dir/index.html");
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let response = sha256_hex(&format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
        assert_eq!(
            response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn a_client_answering_our_challenge_is_valid_until_the_nonce_is_stale() {
        let mut auth = DigestAuth::new(Some([7; 32]));
        let c = creds();
        let t0 = Instant::now();
        let challenge = auth.challenge(t0, "sluice", false);
        assert!(challenge.contains("algorithm=SHA-256"), "{challenge}");
        let uri = "sip:5550001@127.0.0.1";
        let good = client_authorization(&challenge, "pbx", "s3cret", "INVITE", uri).unwrap();
        let check = |auth: &mut DigestAuth, at, value: Option<&str>| {
            auth.verify(at, "sluice", &c, "INVITE", value)
        };
        assert_eq!(check(&mut auth, t0, Some(&good)), Verdict::Valid);
        assert_eq!(check(&mut auth, t0, None), Verdict::Invalid);
        let wrong = client_authorization(&challenge, "pbx", "guess", "INVITE", uri).unwrap();
        assert_eq!(check(&mut auth, t0, Some(&wrong)), Verdict::Invalid);
        let nobody = client_authorization(&challenge, "eve", "s3cret", "INVITE", uri).unwrap();
        assert_eq!(check(&mut auth, t0, Some(&nobody)), Verdict::Invalid);
        // Another method does not reuse the INVITE's response.
        assert_eq!(
            auth.verify(t0, "sluice", &c, "BYE", Some(&good)),
            Verdict::Invalid
        );
        // A nonce we never issued.
        let forged = good.replace("nonce=\"0.", "nonce=\"1.");
        assert_eq!(check(&mut auth, t0, Some(&forged)), Verdict::Invalid);
        // MD5 is refused.
        let md5 = good.replace("SHA-256", "MD5");
        assert_eq!(check(&mut auth, t0, Some(&md5)), Verdict::Invalid);
        let late = t0 + NONCE_LIFETIME + Duration::from_secs(2);
        assert_eq!(check(&mut auth, late, Some(&good)), Verdict::Stale);
        assert!(auth.challenge(late, "sluice", true).ends_with("stale=true"));
    }

    #[test]
    fn junk_credentials_never_panic() {
        let mut auth = DigestAuth::new(Some([1; 32]));
        let c = creds();
        for junk in [
            "",
            "Digest",
            "Digest ",
            "Digest a",
            "Digest a=\"",
            "Digest nonce=\"zz.1\", username=pbx",
            "Basic abc",
            "Digest username=\"pbx\", nonce=\"ffffffffffffffffff.0\"",
        ] {
            assert_eq!(
                auth.verify(Instant::now(), "sluice", &c, "INVITE", Some(junk)),
                Verdict::Invalid,
                "{junk}"
            );
        }
    }
}
