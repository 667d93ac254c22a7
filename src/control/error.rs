//! API errors and their one wire form: `{"error":{"code","message"}}` with
//! a fitting status. Codes are stable; messages are for people.
//!
//! Every error response carries its code in an [`ErrorCode`] response
//! extension, so one middleware ([`finish`]) counts it in the metrics and
//! turns any response axum produced on its own (an empty 405, say) into
//! the same JSON shape.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ControlState;
use crate::policy::Refusal;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Malformed JSON, an unknown field, a wrong type or a bad value; the
    /// message names the field.
    InvalidRequest(String),
    /// The body exceeds the size limit.
    BodyTooLarge,
    /// A key is not base64 or has the wrong length for its profile.
    InvalidKey(String),
    /// An SRTP profile sluice does not speak.
    InvalidSrtpProfile(String),
    /// No meeting has this id.
    MeetingNotFound(String),
    /// The meeting has no participant with this id.
    ParticipantNotFound(String),
    /// No such route.
    NotFound,
    /// The route exists, the method does not.
    MethodNotAllowed,
    /// A meeting with this id exists.
    MeetingExists(String),
    /// Some stream on this node already uses the SSRC.
    DuplicateSsrc(u32),
    /// `receive` lists a codec twice, or two codecs on one payload type
    /// (a request the schema cannot rule out, so a conflict, not a 400).
    ConflictingReceive(String),
    /// The admission policy said no.
    Refused(Refusal),
    /// The bearer token is missing or wrong.
    Unauthorized,
    /// A bug or an exhausted resource (the system RNG failed).
    Internal(String),
    /// Cluster mode: the cluster's Redis is unreachable, so no change can
    /// be decided; the message says what failed. Media keeps flowing.
    ClusterUnavailable(String),
    /// A cluster endpoint was asked of a node without `[cluster]`.
    NotClustered,
    /// A participant named a `node` on a node without `[cluster]`: a
    /// valid request this node's configuration cannot honour (409, the
    /// same code as [`Self::NotClustered`]).
    NodeHintAlone,
    /// Cluster mode: no live node can take the meeting or the leg.
    NoNodeAvailable(String),
    /// Dial-out into an E2EE meeting: the phone network carries plain
    /// audio, so the relay would have to hold the media key.
    E2eeForbidsDialOut,
    /// Dial-out asked of a node without `[sip.trunk]`.
    DialOutNotConfigured,
    /// The meeting has no dial-out call with this id.
    CallNotFound(String),
    /// Dial-out cannot take a call now (its `max_calls`, or its thread
    /// is gone); the message says which.
    DialOutUnavailable(String),
}

impl ApiError {
    /// Every code any endpoint can answer with.
    pub const CODES: [&'static str; 36] = [
        "invalid_request",
        "invalid_key",
        "invalid_srtp_profile",
        "meeting_not_found",
        "participant_not_found",
        "not_found",
        "method_not_allowed",
        "meeting_exists",
        "duplicate_ssrc",
        "conflicting_receive",
        "unauthorized",
        "internal",
        "e2ee_requires_verified_owner",
        "e2ee_disabled",
        "meeting_locked",
        "wrong_passcode",
        "e2ee_forbids_observers",
        "e2ee_forbids_dial_in",
        "e2ee_forbids_transcoding",
        "meeting_full",
        "node_full",
        "node_overloaded",
        "body_too_large",
        "too_many_meetings",
        "uri_too_long",
        "headers_too_large",
        "request_timeout",
        "too_many_connections",
        "bad_request",
        "cluster_unavailable",
        "not_clustered",
        "no_node_available",
        "e2ee_forbids_dial_out",
        "dial_out_not_configured",
        "call_not_found",
        "dial_out_unavailable",
    ];

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::BodyTooLarge => "body_too_large",
            Self::InvalidKey(_) => "invalid_key",
            Self::InvalidSrtpProfile(_) => "invalid_srtp_profile",
            Self::MeetingNotFound(_) => "meeting_not_found",
            Self::ParticipantNotFound(_) => "participant_not_found",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::MeetingExists(_) => "meeting_exists",
            Self::DuplicateSsrc(_) => "duplicate_ssrc",
            Self::ConflictingReceive(_) => "conflicting_receive",
            Self::Refused(refusal) => refusal.code(),
            Self::Unauthorized => "unauthorized",
            Self::Internal(_) => "internal",
            Self::ClusterUnavailable(_) => "cluster_unavailable",
            Self::NotClustered | Self::NodeHintAlone => "not_clustered",
            Self::NoNodeAvailable(_) => "no_node_available",
            Self::E2eeForbidsDialOut => "e2ee_forbids_dial_out",
            Self::DialOutNotConfigured => "dial_out_not_configured",
            Self::CallNotFound(_) => "call_not_found",
            Self::DialOutUnavailable(_) => "dial_out_unavailable",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) | Self::InvalidKey(_) | Self::InvalidSrtpProfile(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MeetingNotFound(_) | Self::ParticipantNotFound(_) | Self::NotFound => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::MeetingExists(_) | Self::DuplicateSsrc(_) | Self::ConflictingReceive(_) => {
                StatusCode::CONFLICT
            }
            Self::Refused(Refusal::MeetingFull { .. }) => StatusCode::CONFLICT,
            Self::Refused(
                Refusal::NodeFull { .. }
                | Refusal::TooManyMeetings { .. }
                | Refusal::NodeOverloaded { .. },
            ) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Refused(_) => StatusCode::FORBIDDEN,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ClusterUnavailable(_) | Self::NoNodeAvailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::NotClustered => StatusCode::NOT_FOUND,
            Self::NodeHintAlone => StatusCode::CONFLICT,
            Self::E2eeForbidsDialOut => StatusCode::FORBIDDEN,
            Self::DialOutNotConfigured => StatusCode::CONFLICT,
            Self::CallNotFound(_) => StatusCode::NOT_FOUND,
            Self::DialOutUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A sentence for the person reading the client's logs.
    pub fn message(&self) -> String {
        match self {
            Self::InvalidRequest(m) | Self::InvalidKey(m) | Self::Internal(m) => m.clone(),
            Self::ClusterUnavailable(m) => {
                format!("{m}; changes are refused until it is back, media keeps flowing, retry")
            }
            Self::NotClustered => {
                "this node runs alone: add a [cluster] section to its config to join a cluster"
                    .to_owned()
            }
            Self::NodeHintAlone => {
                "node: this node runs alone, so a participant cannot be sent to another node; \
                 leave node out, or add a [cluster] section to the config"
                    .to_owned()
            }
            Self::NoNodeAvailable(m) => format!("{m}; add capacity or retry later"),
            Self::BodyTooLarge => "the request body is too large".to_owned(),
            Self::InvalidSrtpProfile(name) => format!(
                "unknown srtp_profile {name:?}: use AEAD_AES_256_GCM, AEAD_AES_128_GCM, \
                 AES_CM_128_HMAC_SHA1_80 or AES_CM_128_HMAC_SHA1_32"
            ),
            Self::MeetingNotFound(id) => format!("no meeting has the id {}", IdPrefix(id)),
            Self::ParticipantNotFound(id) => {
                format!(
                    "the meeting has no participant with the id {}",
                    IdPrefix(id)
                )
            }
            Self::NotFound => "no such endpoint; see /v1/openapi.json".to_owned(),
            Self::MethodNotAllowed => {
                "this endpoint does not take that method; see /v1/openapi.json".to_owned()
            }
            Self::MeetingExists(id) => format!("a meeting with the id {} exists", IdPrefix(id)),
            Self::ConflictingReceive(what) => {
                format!(
                    "receive.video.codecs: {what}; list each codec once, on its own payload type"
                )
            }
            Self::DuplicateSsrc(ssrc) => {
                format!(
                    "SSRC {ssrc} is already in use on this node (a published stream or another \
                     participant's rtcp_ssrc); choose another"
                )
            }
            Self::Refused(refusal) => refusal.message(),
            Self::Unauthorized => {
                "send the API token as \"Authorization: Bearer <token>\"".to_owned()
            }
            Self::E2eeForbidsDialOut => {
                "end-to-end encrypted meetings cannot call phones: the phone network carries \
                 plain audio; use a standard meeting"
                    .to_owned()
            }
            Self::DialOutNotConfigured => {
                "this node has no SIP trunk for dial-out: add a [sip.trunk] section to its \
                 config"
                    .to_owned()
            }
            Self::CallNotFound(id) => {
                format!("the meeting has no call with the id {}", IdPrefix(id))
            }
            Self::DialOutUnavailable(m) => format!("{m}; retry later"),
        }
    }

    /// The error a bare status stands for, for responses axum made itself.
    fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::BodyTooLarge,
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            s if s.is_client_error() => Self::InvalidRequest(format!("request refused ({s})")),
            s => Self::Internal(format!("the control API failed ({s})")),
        }
    }
}

/// The most characters of a client's id an error message quotes.
const QUOTED_ID_CHARS: usize = 16;

/// An id as an error message quotes it: at most [`QUOTED_ID_CHARS`]
/// characters, escaped, and `…` when cut, so a 64 KB path never comes back.
struct IdPrefix<'a>(&'a str);

impl std::fmt::Display for IdPrefix<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut chars = self.0.chars();
        let head: String = chars.by_ref().take(QUOTED_ID_CHARS).collect();
        let more = if chars.next().is_some() { "…" } else { "" };
        write!(f, "{:?}{more}", head)
    }
}

impl From<crate::cluster::ClusterError> for ApiError {
    fn from(e: crate::cluster::ClusterError) -> Self {
        use crate::cluster::ClusterError;
        match e {
            ClusterError::Unavailable { .. } => Self::ClusterUnavailable(e.to_string()),
            ClusterError::Corrupt { .. } => Self::Internal(e.to_string()),
            ClusterError::Placement(p) => Self::NoNodeAvailable(p.to_string()),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
}

/// `Retry-After` of a `node_overloaded` answer, in seconds.
pub(crate) const RETRY_AFTER_SECS: &str = "5";

/// The code of an error response, for [`finish`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorCode(pub(crate) &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code(), "message": self.message() } });
        let mut response = (self.status(), Json(body)).into_response();
        if self == Self::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Self::Refused(Refusal::NodeOverloaded { .. }) = self {
            // Load is measured over 100 ms windows; a few seconds let a
            // burst pass without a retry storm.
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response.extensions_mut().insert(ErrorCode(self.code()));
        response
    }
}

/// Outermost middleware: counts every error response by code and gives
/// any error axum produced by itself the JSON shape (keeping its headers,
/// such as `Allow` on a 405).
pub(crate) async fn finish(
    State(state): State<ControlState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        state.metrics().refused(code);
        return response;
    }
    let status = response.status();
    if !status.is_client_error() && !status.is_server_error() {
        return response;
    }
    let error = ApiError::from_status(status);
    state.metrics().refused(error.code());
    let (mut parts, _) = response.into_parts();
    let (json_parts, body) = error.into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(json_parts.headers);
    parts.status = json_parts.status;
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_messages_quote_a_short_prefix_of_the_id() {
        let long = "a".repeat(60_000);
        let m = ApiError::MeetingNotFound(long).message();
        assert_eq!(m, format!("no meeting has the id {:?}…", "a".repeat(16)));
        let m = ApiError::ParticipantNotFound("p-1".into()).message();
        assert!(m.ends_with("\"p-1\""), "{m}");
        let m = ApiError::MeetingNotFound("\u{1b}[2J".into()).message();
        assert!(!m.contains('\u{1b}'), "{m}");
    }

    #[test]
    fn every_error_has_a_listed_code_and_a_fitting_status() {
        let all = [
            (ApiError::InvalidRequest("x".into()), 400),
            (ApiError::BodyTooLarge, 413),
            (ApiError::InvalidKey("x".into()), 400),
            (ApiError::InvalidSrtpProfile("x".into()), 400),
            (ApiError::MeetingNotFound("x".into()), 404),
            (ApiError::ParticipantNotFound("x".into()), 404),
            (ApiError::NotFound, 404),
            (ApiError::MethodNotAllowed, 405),
            (ApiError::MeetingExists("x".into()), 409),
            (ApiError::DuplicateSsrc(1), 409),
            (ApiError::ConflictingReceive("x".into()), 409),
            (ApiError::Unauthorized, 401),
            (ApiError::Internal("x".into()), 500),
            (Refusal::E2eeRequiresVerifiedOwner.into(), 403),
            (Refusal::E2eeDisabled.into(), 403),
            (Refusal::MeetingLocked.into(), 403),
            (Refusal::WrongPasscode.into(), 403),
            (Refusal::E2eeForbidsObservers.into(), 403),
            (Refusal::E2eeForbidsDialIn.into(), 403),
            (Refusal::E2eeForbidsTranscoding.into(), 403),
            (Refusal::MeetingFull { limit: 1 }.into(), 409),
            (Refusal::NodeFull { limit: 1 }.into(), 503),
            (Refusal::TooManyMeetings { limit: 1 }.into(), 503),
            (
                Refusal::NodeOverloaded {
                    busy_percent: 97,
                    limit_percent: 85,
                }
                .into(),
                503,
            ),
            (ApiError::ClusterUnavailable("x".into()), 503),
            (ApiError::NotClustered, 404),
            (ApiError::NodeHintAlone, 409),
            (ApiError::NoNodeAvailable("x".into()), 503),
            (ApiError::E2eeForbidsDialOut, 403),
            (ApiError::DialOutNotConfigured, 409),
            (ApiError::CallNotFound("x".into()), 404),
            (ApiError::DialOutUnavailable("x".into()), 503),
        ];
        // The edge's own errors (414, 431, 408, 503, 400 before routing)
        // are written in `edge.rs`, not through this enum.
        // NodeHintAlone shares not_clustered with NotClustered.
        assert_eq!(all.len() + 5, ApiError::CODES.len() + 1);
        for (error, status) in all {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert!(ApiError::CODES.contains(&error.code()), "{error:?}");
            assert!(!error.message().is_empty());
        }
    }
}
