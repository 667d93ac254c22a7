//! The client side of SIP digest authentication, for dial-out: answering a
//! trunk's `401 WWW-Authenticate` or `407 Proxy-Authenticate` challenge
//! (RFC 3261 §22.2 and §22.3, RFC 2617 §3.2.2 with MD5, RFC 7616 §3.4 with
//! SHA-256 as RFC 8760 brings it to SIP).
//!
//! `qop=auth` is used when the challenge offers it (with our `cnonce` and
//! the nonce count the caller keeps); a challenge without `qop` gets the
//! RFC 2069 response. `auth-int` and the `-sess` algorithms are refused:
//! trunks do not ask for them. Where a response carries several
//! challenges, SHA-256 is preferred over MD5 (RFC 8760 §2.4).
//!
//! Written here rather than taken from a crate for the same reason as
//! `digest.rs` (the SIP digest crates are unmaintained or MD5-only); the
//! hashes themselves come from `md-5` and `ring`.

use std::fmt::Write as _;

use md5::{Digest as _, Md5};
use ring::digest::{SHA256, digest};

use super::digest::DigestParams;

/// A digest algorithm a trunk may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// RFC 2617 (the default when `algorithm` is absent).
    Md5,
    /// RFC 7616 / RFC 8760.
    Sha256,
}

impl Algorithm {
    fn parse(name: Option<&str>) -> Option<Self> {
        match name {
            None => Some(Self::Md5),
            Some(n) if n.eq_ignore_ascii_case("MD5") => Some(Self::Md5),
            Some(n) if n.eq_ignore_ascii_case("SHA-256") => Some(Self::Sha256),
            Some(_) => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }

    fn hex(self, text: &str) -> String {
        match self {
            Self::Md5 => hex(&Md5::digest(text.as_bytes())),
            Self::Sha256 => hex(digest(&SHA256, text.as_bytes()).as_ref()),
        }
    }
}

/// A challenge we can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) realm: String,
    pub(crate) nonce: String,
    pub(crate) opaque: Option<String>,
    pub(crate) algorithm: Algorithm,
    /// The challenge offered `qop=auth`.
    pub(crate) qop_auth: bool,
    /// `stale=true`: the nonce expired, the password was right.
    pub(crate) stale: bool,
}

impl Challenge {
    /// Reads one `WWW-Authenticate` / `Proxy-Authenticate` value; `None`
    /// for another scheme, a missing realm or nonce, or an algorithm or
    /// qop we do not implement.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let params = DigestParams::parse(value)?;
        let algorithm = Algorithm::parse(params.get("algorithm"))?;
        let qop_auth = match params.get("qop") {
            None => false,
            Some(list) => {
                let auth = list
                    .split(',')
                    .any(|q| q.trim().eq_ignore_ascii_case("auth"));
                if !auth {
                    // Only auth-int offered: we cannot answer it.
                    return None;
                }
                true
            }
        };
        Some(Self {
            realm: params.get("realm")?.to_owned(),
            nonce: params.get("nonce")?.to_owned(),
            opaque: params.get("opaque").map(str::to_owned),
            algorithm,
            qop_auth,
            stale: params
                .get("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The best of several challenges: SHA-256 before MD5.
    pub(crate) fn pick<'a>(values: impl Iterator<Item = &'a str>) -> Option<Self> {
        let mut best: Option<Self> = None;
        for c in values.filter_map(Self::parse) {
            let better = match &best {
                None => true,
                Some(b) => b.algorithm == Algorithm::Md5 && c.algorithm == Algorithm::Sha256,
            };
            if better {
                best = Some(c);
            }
        }
        best
    }

    /// The `Authorization` / `Proxy-Authorization` value for a `method`
    /// request to `uri`, as the `nc`-th use of this nonce with `cnonce`.
    pub(crate) fn answer(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let alg = self.algorithm;
        let ha1 = alg.hex(&format!("{user}:{}:{password}", self.realm));
        let ha2 = alg.hex(&format!("{method}:{uri}"));
        let nc = format!("{nc:08x}");
        let response = if self.qop_auth {
            alg.hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            alg.hex(&format!("{ha1}:{}:{ha2}", self.nonce))
        };
        let mut out = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", \
             response=\"{response}\", algorithm={}",
            quoted(user),
            quoted(&self.realm),
            quoted(&self.nonce),
            quoted(uri),
            alg.name()
        );
        if self.qop_auth {
            let _ = write!(out, ", qop=auth, nc={nc}, cnonce=\"{}\"", quoted(cnonce));
        }
        if let Some(opaque) = &self.opaque {
            let _ = write!(out, ", opaque=\"{}\"", quoted(opaque));
        }
        out
    }
}

/// A value as it may sit between quotes (no quote, backslash or line end
/// from a hostile challenge reaches our header).
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '"' | '\\' | '\r' | '\n'))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_2617_md5_example_is_reproduced() {
        // RFC 2617 §3.5.
        let c = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert!(c.qop_auth);
        let value = c.answer(
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert!(
            value.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{value}"
        );
        assert!(value.contains("nc=00000001"), "{value}");
        assert!(value.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
    }

    #[test]
    fn the_rfc_7616_sha256_example_is_reproduced() {
        // RFC 7616 §3.9.1.
        let c = Challenge::parse(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
             algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        let value = c.answer(
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            1,
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        );
        assert!(
            value.contains(
                "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""
            ),
            "{value}"
        );
        assert!(value.contains("algorithm=SHA-256"));
    }

    #[test]
    fn our_own_uas_accepts_what_the_client_writes() {
        // The dial-in side's verifier (digest.rs) checks SHA-256 + qop=auth.
        let mut auth = super::super::digest::DigestAuth::new(Some([3; 32]));
        let now = std::time::Instant::now();
        let challenge = auth.challenge(now, "sluice", false);
        let c = Challenge::parse(&challenge).unwrap();
        let value = c.answer("pbx", "s3cret", "INVITE", "sip:1@h", 1, "abc");
        let creds = super::super::Credentials::parse("pbx:s3cret\n").unwrap();
        assert_eq!(
            auth.verify(now, "sluice", &creds, "INVITE", Some(&value)),
            super::super::digest::Verdict::Valid
        );
    }

    #[test]
    fn sha256_is_preferred_and_unknown_challenges_are_skipped() {
        let md5 = "Digest realm=\"r\", nonce=\"n1\", qop=\"auth\"";
        let sha = "Digest realm=\"r\", nonce=\"n2\", algorithm=SHA-256, qop=\"auth\"";
        let best = Challenge::pick([md5, sha].into_iter()).unwrap();
        assert_eq!(best.algorithm, Algorithm::Sha256);
        let best = Challenge::pick([sha, md5].into_iter()).unwrap();
        assert_eq!(best.nonce, "n2");
        // RFC 2069 (no qop): response = H(HA1:nonce:HA2).
        let old = Challenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
        assert!(
            !old.answer("u", "p", "INVITE", "sip:x", 1, "c")
                .contains("qop")
        );
        for junk in [
            "Basic realm=\"r\"",
            "Digest nonce=\"n\"",
            "Digest realm=\"r\"",
            "Digest realm=\"r\", nonce=\"n\", algorithm=MD5-sess",
            "Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"",
            "",
        ] {
            assert!(Challenge::parse(junk).is_none(), "{junk}");
        }
        assert!(Challenge::pick(["Basic x"].into_iter()).is_none());
        let stale = Challenge::parse("Digest realm=\"r\", nonce=\"n\", stale=TRUE").unwrap();
        assert!(stale.stale);
        // A hostile realm cannot break out of its quotes.
        let evil = Challenge::parse("Digest realm=\"a\\\", nonce=\"n\"");
        if let Some(evil) = evil {
            let v = evil.answer("u", "p", "INVITE", "sip:x", 1, "c");
            assert!(!v.contains('\\') && !v.contains('\r'));
        }
    }
}
