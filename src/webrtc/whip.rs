//! The protocol half of the WHIP (RFC 9725) and WHEP endpoints, without
//! the HTTP server: the checks every POST goes through (bearer token,
//! content type, the offer) with the status and JSON error code each
//! failure answers, fresh ICE credentials, the answer, and the CORS
//! headers. The router in `control/` calls these and writes the response.

use std::net::SocketAddr;

use ring::rand::{SecureRandom, SystemRandom};
use sluice_webrtc::identity::DtlsIdentity;
use sluice_webrtc::sdp::{AnswerParams, Offer, Purpose, SdpError, SlotSsrc, build_answer};
use sluice_webrtc::session::SessionParams;
use subtle::ConstantTimeEq;

/// The CORS headers of every WHIP/WHEP response, OPTIONS included
/// (RFC 9725 §4.2: the Location, ETag and Link headers must be readable by
/// a page on another origin).
pub const CORS_HEADERS: [(&str, &str); 4] = [
    ("access-control-allow-origin", "*"),
    (
        "access-control-allow-methods",
        "GET, POST, PATCH, DELETE, OPTIONS",
    ),
    (
        "access-control-allow-headers",
        "Authorization, Content-Type, If-Match",
    ),
    ("access-control-expose-headers", "Location, ETag, Link"),
];

/// Why a WHIP/WHEP request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhipError {
    /// No `Authorization: Bearer …` header.
    #[error("send the participant's WebRTC token as `Authorization: Bearer <token>`")]
    MissingToken,
    /// A token, but not this participant's.
    #[error("the bearer token is not valid for this endpoint")]
    BadToken,
    /// Not `application/sdp`.
    #[error("the offer must be sent as Content-Type: application/sdp, not {got:?}")]
    WrongContentType {
        /// What the request said.
        got: String,
    },
    /// Unreadable SDP (400) or an offer sluice does not take (422).
    #[error(transparent)]
    Offer(#[from] SdpError),
}

impl WhipError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingToken | Self::BadToken => 401,
            Self::WrongContentType { .. } => 415,
            Self::Offer(SdpError::Malformed(_)) => 400,
            Self::Offer(SdpError::Unacceptable(_)) => 422,
        }
    }

    /// The JSON error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::BadToken => "invalid_token",
            Self::WrongContentType { .. } => "unsupported_media_type",
            Self::Offer(SdpError::Malformed(_)) => "malformed_sdp",
            Self::Offer(SdpError::Unacceptable(_)) => "unacceptable_offer",
        }
    }
}

/// Checks `Authorization` against the participant's token, in constant time.
pub fn check_bearer(authorization: Option<&str>, token: &str) -> Result<(), WhipError> {
    let value = authorization.ok_or(WhipError::MissingToken)?.trim();
    let (scheme, given) = value.split_once(' ').ok_or(WhipError::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(WhipError::MissingToken);
    }
    let given = given.trim().as_bytes();
    if given.len() == token.len() && bool::from(given.ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(WhipError::BadToken)
    }
}

/// Checks that the body is declared `application/sdp` (parameters allowed).
pub fn check_content_type(content_type: Option<&str>) -> Result<(), WhipError> {
    let value = content_type.unwrap_or("");
    let media_type = value.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("application/sdp") {
        Ok(())
    } else {
        Err(WhipError::WrongContentType {
            got: value.to_owned(),
        })
    }
}

/// ICE credentials the relay picks for one session (RFC 8839 §5.4:
/// ufrag ≥ 24 bits and pwd ≥ 128 bits of randomness, ice-chars only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    /// 8 ice-chars: 48 bits.
    pub ufrag: String,
    /// 24 ice-chars: 144 bits.
    pub pwd: String,
}

/// The randomness failed (no system RNG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RngFailed;

impl IceCredentials {
    /// Fresh credentials from the system RNG.
    pub fn random(rng: &SystemRandom) -> Result<Self, RngFailed> {
        const ICE_CHARS: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes).map_err(|_| RngFailed)?;
        // 64 symbols: each byte's low six bits pick one without bias.
        let text: String = bytes
            .iter()
            .map(|b| char::from(ICE_CHARS[usize::from(b & 63)]))
            .collect();
        Ok(Self {
            ufrag: text[..8].to_owned(),
            pwd: text[8..].to_owned(),
        })
    }
}

/// What a valid POST yields: the session to create and the answer to send.
#[derive(Debug)]
pub struct Accepted {
    /// The offer as read.
    pub offer: Offer,
    /// The session's parameters (our credentials, the browser's).
    pub session: SessionParams,
    /// The SDP answer (201 body, `Content-Type: application/sdp`).
    pub answer: String,
}

/// Runs every check of a WHIP (`Purpose::Publish`) or WHEP POST and
/// writes the answer. `slots` gives each WHEP slot's SSRC by mid.
#[allow(clippy::too_many_arguments)] // each is one fact of the request or of the port
pub fn accept_offer(
    authorization: Option<&str>,
    content_type: Option<&str>,
    body: &str,
    token: &str,
    purpose: Purpose,
    identity: &DtlsIdentity,
    candidates: &[SocketAddr],
    credentials: IceCredentials,
    slots: &[SlotSsrc],
    session_id: u64,
) -> Result<Accepted, WhipError> {
    check_bearer(authorization, token)?;
    check_content_type(content_type)?;
    let offer = Offer::parse(body, purpose)?;
    let answer = build_answer(
        &offer,
        purpose,
        &AnswerParams {
            ice_ufrag: &credentials.ufrag,
            ice_pwd: &credentials.pwd,
            fingerprint: identity.fingerprint(),
            candidates,
            session_id,
            slots,
        },
    );
    let session = SessionParams {
        local_ufrag: credentials.ufrag,
        local_pwd: credentials.pwd,
        remote_ufrag: offer.ice_ufrag.clone(),
        remote_fingerprint: offer.fingerprint.clone(),
    };
    Ok(Accepted {
        offer,
        session,
        answer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "tok_3f9a8c";

    fn offer(fingerprint: &str) -> String {
        format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
             a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
             a=fingerprint:{fingerprint}\r\na=setup:actpass\r\na=mid:0\r\na=sendonly\r\n\
             a=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
        )
    }

    fn post(auth: Option<&str>, ctype: Option<&str>, body: &str) -> Result<Accepted, WhipError> {
        let id = DtlsIdentity::generate().unwrap();
        let creds = IceCredentials::random(&SystemRandom::new()).unwrap();
        accept_offer(
            auth,
            ctype,
            body,
            TOKEN,
            Purpose::Publish,
            &id,
            &["127.0.0.1:40000".parse().unwrap()],
            creds,
            &[],
            7,
        )
    }

    #[test]
    fn a_good_post_is_answered_and_yields_the_session_parameters() {
        let browser = DtlsIdentity::generate().unwrap();
        let fp = browser.fingerprint().to_string();
        let ok = post(
            Some("Bearer tok_3f9a8c"),
            Some("application/sdp"),
            &offer(&fp),
        )
        .unwrap();
        assert_eq!(ok.session.remote_ufrag, "abcd");
        assert_eq!(&ok.session.remote_fingerprint, browser.fingerprint());
        assert!(
            ok.answer
                .contains(&format!("a=ice-ufrag:{}\r\n", ok.session.local_ufrag))
        );
        assert!(
            ok.answer
                .contains(&format!("a=ice-pwd:{}\r\n", ok.session.local_pwd))
        );
        assert!(ok.answer.contains("a=recvonly\r\n"));
    }

    #[test]
    fn every_refusal_has_its_status_and_code() {
        let browser = DtlsIdentity::generate().unwrap();
        let good = offer(&browser.fingerprint().to_string());
        // (Authorization, Content-Type, body, status, code)
        type Case<'a> = (Option<&'a str>, Option<&'a str>, String, u16, &'a str);
        let cases: [Case<'_>; 8] = [
            (
                None,
                Some("application/sdp"),
                good.clone(),
                401,
                "missing_token",
            ),
            (
                Some("Basic dG9rOg=="),
                Some("application/sdp"),
                good.clone(),
                401,
                "missing_token",
            ),
            (
                Some("Bearer tok_3f9a8d"),
                Some("application/sdp"),
                good.clone(),
                401,
                "invalid_token",
            ),
            (
                Some("Bearer tok"),
                Some("application/sdp"),
                good.clone(),
                401,
                "invalid_token",
            ),
            (
                Some("Bearer tok_3f9a8c"),
                Some("application/json"),
                good.clone(),
                415,
                "unsupported_media_type",
            ),
            (
                Some("Bearer tok_3f9a8c"),
                None,
                good.clone(),
                415,
                "unsupported_media_type",
            ),
            (
                Some("Bearer tok_3f9a8c"),
                Some("application/sdp"),
                "v=0\r\nnonsense".into(),
                400,
                "malformed_sdp",
            ),
            (
                Some("Bearer tok_3f9a8c"),
                Some("application/sdp"),
                good.replace("a=group:BUNDLE 0\r\n", ""),
                422,
                "unacceptable_offer",
            ),
        ];
        for (auth, ctype, body, status, code) in cases {
            let err = post(auth, ctype, &body).unwrap_err();
            assert_eq!(
                (err.status(), err.code()),
                (status, code),
                "{auth:?} {ctype:?}: {err}"
            );
            assert!(!err.to_string().is_empty());
        }
        // Case and parameters of the content type do not matter.
        check_content_type(Some("Application/SDP; charset=utf-8")).unwrap();
        check_bearer(Some("bearer  tok_3f9a8c "), TOKEN).unwrap();
    }

    #[test]
    fn ice_credentials_are_random_ice_chars_of_rfc_8839_length() {
        let rng = SystemRandom::new();
        let a = IceCredentials::random(&rng).unwrap();
        let b = IceCredentials::random(&rng).unwrap();
        assert_ne!(a, b);
        for c in [&a, &b] {
            assert_eq!((c.ufrag.len(), c.pwd.len()), (8, 24));
            assert!(
                c.ufrag
                    .bytes()
                    .chain(c.pwd.bytes())
                    .all(|x| x.is_ascii_alphanumeric() || x == b'+' || x == b'/')
            );
        }
    }

    #[test]
    fn cors_exposes_location_etag_and_link() {
        let expose = CORS_HEADERS
            .iter()
            .find(|(k, _)| *k == "access-control-expose-headers")
            .unwrap();
        assert_eq!(expose.1, "Location, ETag, Link");
    }
}
