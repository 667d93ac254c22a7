//! The WHIP (RFC 9725) and WHEP endpoints of browser participants, and
//! the registry's side of the media port's handshake thread.
//!
//! A participant admitted with `"transport": "webrtc"` gets a random token
//! and two paths under its own resource:
//! - `POST …/participants/{pid}/whip` (publish) and `…/whep` (receive),
//!   `Authorization: Bearer <token>`, `Content-Type: application/sdp`:
//!   201, the SDP answer, `Location: …/participants/{pid}/webrtc/{sid}`;
//! - `DELETE {Location}` ends the session (its leg leaves the data plane
//!   at once), `PATCH {Location}` takes a trickle fragment (204: the
//!   ICE-lite answer already holds every candidate), `OPTIONS` on any of
//!   them answers CORS.
//!
//! The meeting's lock holds here too, not only at admission: a browser
//! admitted before the meeting was locked, none of whose sessions has
//! finished a handshake yet, is refused 403 `meeting_locked` on WHIP and
//! WHEP (the page says the meeting is locked and offers Try again); one
//! that has joined the media keeps opening sessions (its WHEP after its
//! WHIP, a reconnect). `Registry::browser_locked_out` has the rule.
//!
//! These paths are authorised by the participant's token, not the API's
//! (a browser never holds the integrator's token): `auth.rs` lets them
//! through to the checks here. Every refusal is the API's JSON error
//! shape, with the CORS headers, so a page on another origin can read it.
//!
//! The checks and the answer are `crate::webrtc::whip`'s; the handshake
//! runs on the media port's thread (`crate::webrtc::port`), which reports
//! back through [`RegistrySink`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::json;
use sluice_webrtc::identity::DtlsIdentity;
use sluice_webrtc::keying::LegKeying;
use sluice_webrtc::sdp::{
    AnswerParams, CodecName, MediaKind as SdpKind, Offer, Purpose, SlotSsrc, build_answer,
};

use super::ControlState;
use super::error::ErrorCode;
use super::extract::ApiPath;
use super::registry::{NewStream, SlotRequest};
use crate::relay::MediaKind;
use crate::transcode::VideoPrefs;
use crate::webrtc::BrowserLegKeys;
use crate::webrtc::keyframe::KeyframeRequest;
use crate::webrtc::learn::PublishedLine;
use crate::webrtc::port::{EndReason, LegSink, PortInput, PortQueue, SessionId};
use crate::webrtc::whip::{CORS_HEADERS, IceCredentials, WhipError, accept_offer, check_bearer};

/// Most receive slots of each kind one WHEP offer may ask for.
pub(crate) const MAX_SLOTS: usize = 8;

/// What the WHIP/WHEP endpoints need of the media port.
#[derive(Debug, Clone)]
pub struct WebrtcEdge {
    /// The handshake thread's queue.
    pub queue: PortQueue,
    /// The relay's DTLS certificate (its fingerprint goes in every answer).
    pub identity: Arc<DtlsIdentity>,
    /// The media port's addresses: the answer's host candidates.
    pub candidates: Vec<SocketAddr>,
}

/// The paths under `/v1/meetings/{id}/participants/{pid}/` served here.
pub(crate) fn is_browser_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/v1/meetings/") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    matches!(
        parts.as_slice(),
        [_, "participants", _, "whip" | "whep"] | [_, "participants", _, "webrtc", _]
    )
}

/// The path of a participant's WHIP or WHEP endpoint.
pub(crate) fn endpoint(meeting: &str, participant: &str, which: &str) -> String {
    format!("/v1/meetings/{meeting}/participants/{participant}/{which}")
}

/// A refusal of a browser endpoint: the JSON error shape, the CORS headers.
#[derive(Debug)]
pub(crate) enum BrowserError {
    Whip(WhipError),
    /// The meeting is locked and this participant has not joined its
    /// media yet (`Registry::browser_locked_out`).
    Locked,
    NoSession,
    TooManySessions,
    IceRestart,
    Unavailable,
    Internal,
}

impl BrowserError {
    /// Every code a browser endpoint answers with (the OpenAPI `Error`
    /// schema lists them beside [`super::ApiError::CODES`]).
    pub(crate) const CODES: [&'static str; 10] = [
        "missing_token",
        "invalid_token",
        "unsupported_media_type",
        "malformed_sdp",
        "unacceptable_offer",
        "meeting_locked",
        "session_not_found",
        "too_many_sessions",
        "webrtc_unavailable",
        "internal",
    ];

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::Whip(e) => (
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
                e.code(),
                e.to_string(),
            ),
            Self::Locked => (
                StatusCode::FORBIDDEN,
                "meeting_locked",
                "the meeting is locked: the host has to unlock it before this participant can join"
                    .to_owned(),
            ),
            Self::NoSession => (
                StatusCode::NOT_FOUND,
                "session_not_found",
                "no such WebRTC session for this participant".to_owned(),
            ),
            Self::TooManySessions => (
                StatusCode::CONFLICT,
                "too_many_sessions",
                format!(
                    "this participant holds {} WebRTC sessions already; DELETE one first",
                    super::registry::MAX_BROWSER_SESSIONS
                ),
            ),
            Self::IceRestart => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unacceptable_offer",
                "an ICE restart (a new a=ice-ufrag) is not supported: DELETE the session and POST a new offer".to_owned(),
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "webrtc_unavailable",
                "WebRTC is not running on this node's media port".to_owned(),
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the system random generator failed".to_owned(),
            ),
        }
    }
}

impl IntoResponse for BrowserError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let body = json!({ "error": { "code": code, "message": message } });
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        with_cors(&mut response);
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}

impl From<WhipError> for BrowserError {
    fn from(e: WhipError) -> Self {
        Self::Whip(e)
    }
}

fn with_cors(response: &mut Response) {
    for (name, value) in CORS_HEADERS {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The participant's token; an unknown meeting or participant is a bad
/// token too, so an uninvited browser learns nothing.
fn token_of(state: &ControlState, meeting: &str, participant: &str) -> Result<String, WhipError> {
    state
        .registry()
        .browser_token(meeting, participant)
        .ok()
        .flatten()
        .map(str::to_owned)
        .ok_or(WhipError::BadToken)
}

/// `POST …/participants/{pid}/whip`.
pub(crate) async fn whip(
    State(state): State<ControlState>,
    ApiPath((meeting, participant)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BrowserError> {
    post_offer(
        &state,
        &meeting,
        &participant,
        &headers,
        &body,
        Purpose::Publish,
    )
}

/// `POST …/participants/{pid}/whep`.
pub(crate) async fn whep(
    State(state): State<ControlState>,
    ApiPath((meeting, participant)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BrowserError> {
    let purpose = Purpose::Receive {
        max_audio: MAX_SLOTS,
        max_video: MAX_SLOTS,
    };
    post_offer(&state, &meeting, &participant, &headers, &body, purpose)
}

fn post_offer(
    state: &ControlState,
    meeting: &str,
    participant: &str,
    headers: &HeaderMap,
    body: &[u8],
    purpose: Purpose,
) -> Result<Response, BrowserError> {
    let authorization = header_str(headers, header::AUTHORIZATION);
    if authorization.is_none() {
        return Err(WhipError::MissingToken.into());
    }
    let token = token_of(state, meeting, participant)?;
    check_bearer(authorization, &token)?;
    if state.registry().browser_locked_out(meeting, participant) {
        return Err(BrowserError::Locked);
    }
    let edge = state.webrtc().ok_or(BrowserError::Unavailable)?;
    let text = std::str::from_utf8(body).map_err(|_| {
        WhipError::Offer(sluice_webrtc::sdp::SdpError::Malformed(
            "the body is not UTF-8".to_owned(),
        ))
    });
    let rng = SystemRandom::new();
    let credentials = IceCredentials::random(&rng).map_err(|_| BrowserError::Internal)?;
    let mut id_bytes = [0u8; 8];
    rng.fill(&mut id_bytes)
        .map_err(|_| BrowserError::Internal)?;
    let id = u64::from_be_bytes(id_bytes);
    let accepted = accept_offer(
        authorization,
        header_str(headers, header::CONTENT_TYPE),
        // The content type is checked before the body is read.
        text.as_deref().unwrap_or(""),
        &token,
        purpose,
        &edge.identity,
        &edge.candidates,
        credentials,
        &[],
        id,
    );
    let accepted = match (accepted, text) {
        (Err(e @ WhipError::WrongContentType { .. }), _) => return Err(e.into()),
        (_, Err(e)) => return Err(e.into()),
        (result, Ok(_)) => result?,
    };
    let (offered, lines, requests) = match purpose {
        Purpose::Publish => (
            offered_streams(&accepted.offer),
            published_lines(&accepted.offer),
            Vec::new(),
        ),
        Purpose::Receive { .. } => (Vec::new(), Vec::new(), slot_requests(&accepted.offer)),
    };
    let mids: Vec<String> = requests.iter().map(|r| r.mid.clone()).collect();
    let opened = {
        let mut registry = state.registry();
        // Again under the same guard as the opening: a lock set while
        // the offer was read counts.
        if registry.browser_locked_out(meeting, participant) {
            return Err(BrowserError::Locked);
        }
        registry.open_browser_session(meeting, participant, id, offered, lines, requests)
    };
    let slot_ssrcs = match opened {
        Ok(Some(ssrcs)) => ssrcs,
        Ok(None) => return Err(BrowserError::TooManySessions),
        Err(_) => return Err(WhipError::BadToken.into()),
    };
    if matches!(purpose, Purpose::Publish)
        && let Some(ext) = accepted
            .offer
            .media
            .iter()
            .filter(|m| !m.rejected && m.kind == SdpKind::Audio)
            .find_map(|m| m.audio_level_extension)
    {
        // The loudest-speaker choice reads this publisher's levels there.
        state.registry().set_browser_level_extension(id, ext);
    }
    if let (Purpose::Receive { .. }, Some(prefs)) = (purpose, viewer_codecs(&accepted.offer)) {
        state.registry().set_viewer_codecs(id, prefs);
    }
    let mut accepted = accepted;
    if !mids.is_empty() {
        // WHEP: the answer declares each slot's SSRC.
        let slots: Vec<SlotSsrc> = mids
            .into_iter()
            .zip(slot_ssrcs)
            .map(|(mid, ssrc)| SlotSsrc { mid, ssrc })
            .collect();
        accepted.answer = build_answer(
            &accepted.offer,
            purpose,
            &AnswerParams {
                ice_ufrag: &accepted.session.local_ufrag,
                ice_pwd: &accepted.session.local_pwd,
                fingerprint: edge.identity.fingerprint(),
                candidates: &edge.candidates,
                session_id: id,
                slots: &slots,
            },
        );
    }
    // Queued before the answer leaves: the browser's first check finds
    // the session.
    if !edge.queue.command(PortInput::Open {
        id,
        params: Box::new(accepted.session),
    }) {
        state.registry().end_browser_session(id);
        return Err(BrowserError::Unavailable);
    }
    let location = format!("{}/{id:016x}", endpoint(meeting, participant, "webrtc"));
    let mut response = (StatusCode::CREATED, accepted.answer).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{id:016x}\"")) {
        h.insert(header::ETAG, v);
    }
    with_cors(&mut response);
    Ok(response)
}

/// The slots a WHEP offer asks for: its accepted audio and video m-lines.
fn slot_requests(offer: &Offer) -> Vec<SlotRequest> {
    offer
        .media
        .iter()
        .filter(|m| !m.rejected && m.codec.is_some())
        .filter_map(|m| {
            let kind = match m.kind {
                SdpKind::Audio => MediaKind::Audio,
                SdpKind::Video => MediaKind::Video,
                SdpKind::Other => return None,
            };
            Some(SlotRequest {
                kind,
                mid: m.mid.clone(),
                mid_ext: m.mid_extension.unwrap_or(0),
            })
        })
        .collect()
}

/// What a WHEP offer's video m-lines take, as receive preferences: each
/// codec chosen for an accepted m-line (the answer's), with the payload
/// type the offer gave it (DESIGN.md, "Transcoding"). `None` without
/// video, or when two m-lines number codecs in a way preferences cannot
/// hold (one codec under two numbers, two codecs under one).
fn viewer_codecs(offer: &Offer) -> Option<VideoPrefs> {
    let mut codecs: Vec<(String, u16)> = Vec::new();
    for m in offer.media.iter().filter(|m| !m.rejected) {
        let (Some(codec), SdpKind::Video) = (&m.codec, m.kind) else {
            continue;
        };
        let name = match codec.name {
            CodecName::Vp8 => "VP8",
            CodecName::H264 => "H264",
            CodecName::Opus => continue,
        };
        let entry = (name.to_owned(), u16::from(codec.payload_type));
        if !codecs.contains(&entry) {
            codecs.push(entry);
        }
    }
    if codecs.is_empty() {
        return None;
    }
    VideoPrefs::new(&codecs, None, None).ok()
}

/// The accepted audio and video m-lines of a WHIP offer, with the
/// relay's kind and codec name of each.
fn sending_lines(
    offer: &Offer,
) -> impl Iterator<
    Item = (
        &sluice_webrtc::sdp::OfferedMedia,
        MediaKind,
        &'static str,
        u8,
    ),
> {
    offer.media.iter().filter(|m| !m.rejected).filter_map(|m| {
        let codec = m.codec.as_ref()?;
        let kind = match m.kind {
            SdpKind::Audio => MediaKind::Audio,
            SdpKind::Video => MediaKind::Video,
            SdpKind::Other => return None,
        };
        let name = match codec.name {
            CodecName::Opus => "opus",
            CodecName::Vp8 => "VP8",
            CodecName::H264 => "H264",
        };
        Some((m, kind, name, codec.payload_type))
    })
}

/// A WHIP offer's m-lines, for streams learnt from their first packets;
/// one that announced its SSRC with `a=ssrc` is taken already.
fn published_lines(offer: &Offer) -> Vec<PublishedLine> {
    sending_lines(offer)
        .map(|(m, kind, codec, payload_type)| PublishedLine {
            mid: m.mid.clone(),
            mid_ext: m.mid_extension.unwrap_or(0),
            kind,
            codec,
            payload_type,
            taken: !m.ssrcs.is_empty(),
        })
        .collect()
}

/// The streams a WHIP offer declares with `a=ssrc`, by m-line, each with
/// its m-line's MID extension id.
fn offered_streams(offer: &Offer) -> Vec<(NewStream, u8)> {
    let mut streams = Vec::new();
    for (m, kind, name, payload_type) in sending_lines(offer) {
        for &ssrc in &m.ssrcs {
            let stream = NewStream {
                ssrc,
                kind,
                codec: name.to_owned(),
                payload_type,
            };
            streams.push((stream, m.mid_extension.unwrap_or(0)));
        }
    }
    streams
}

fn session_id(text: &str) -> Option<u64> {
    (text.len() == 16)
        .then(|| u64::from_str_radix(text, 16).ok())
        .flatten()
}

/// Checks the token of a request on session `sid`; the session's id.
fn check_session(
    state: &ControlState,
    meeting: &str,
    participant: &str,
    sid: &str,
    headers: &HeaderMap,
) -> Result<u64, BrowserError> {
    let authorization = header_str(headers, header::AUTHORIZATION);
    if authorization.is_none() {
        return Err(WhipError::MissingToken.into());
    }
    let token = token_of(state, meeting, participant)?;
    check_bearer(authorization, &token)?;
    let id = session_id(sid).ok_or(BrowserError::NoSession)?;
    if !state
        .registry()
        .browser_session_of(meeting, participant, id)
    {
        return Err(BrowserError::NoSession);
    }
    Ok(id)
}

/// `DELETE …/participants/{pid}/webrtc/{sid}`: the session's leg stops now.
pub(crate) async fn delete_session(
    State(state): State<ControlState>,
    ApiPath((meeting, participant, sid)): ApiPath<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, BrowserError> {
    let id = check_session(&state, &meeting, &participant, &sid, &headers)?;
    state.registry().end_browser_session(id);
    if let Some(edge) = state.webrtc() {
        edge.queue.command(PortInput::Close(id));
    }
    let mut response = StatusCode::OK.into_response();
    with_cors(&mut response);
    Ok(response)
}

/// `GET …/participants/{pid}/webrtc/{sid}`: who fills each receive slot
/// of a WHEP session now, in its offer's m-line order, so the page can
/// put names on its tiles: `{"slots":[{"mid","kind","participant_id",
/// "display_name"}]}` (the last two `null` for an empty slot; the name is
/// the one the participant was admitted with). A WHIP session has none.
pub(crate) async fn get_session(
    State(state): State<ControlState>,
    ApiPath((meeting, participant, sid)): ApiPath<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, BrowserError> {
    let id = check_session(&state, &meeting, &participant, &sid, &headers)?;
    let slots = state
        .registry()
        .browser_slots(&meeting, &participant, id)
        .ok_or(BrowserError::NoSession)?;
    let slots: Vec<_> = slots
        .into_iter()
        .map(|slot| {
            let kind = match slot.kind {
                MediaKind::Audio => "audio",
                MediaKind::Video => "video",
            };
            let (pid, name) = slot.participant.unzip();
            json!({ "mid": slot.mid, "kind": kind, "participant_id": pid, "display_name": name })
        })
        .collect();
    let mut response = (StatusCode::OK, axum::Json(json!({ "slots": slots }))).into_response();
    with_cors(&mut response);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `PATCH …/participants/{pid}/webrtc/{sid}`: a trickle fragment (RFC 9725
/// §4.3). ICE-lite: the answer held every candidate, the browser's own
/// are learnt from its checks, so a fragment changes nothing: 204. An
/// ICE restart (a new ufrag) is not supported: 422.
pub(crate) async fn patch_session(
    State(state): State<ControlState>,
    ApiPath((meeting, participant, sid)): ApiPath<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BrowserError> {
    check_session(&state, &meeting, &participant, &sid, &headers)?;
    let content_type = header_str(&headers, header::CONTENT_TYPE).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/trickle-ice-sdpfrag") {
        return Err(WhipError::WrongContentType {
            got: content_type.to_owned(),
        }
        .into());
    }
    let text = String::from_utf8_lossy(&body);
    if text.lines().any(|l| l.trim().starts_with("a=ice-ufrag:")) {
        return Err(BrowserError::IceRestart);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    with_cors(&mut response);
    Ok(response)
}

/// `OPTIONS` on every browser path: CORS preflight (RFC 9725 §4.2).
pub(crate) async fn options() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    with_cors(&mut response);
    response
}

/// Ends the media-port sessions of `ids` (their participant or meeting is
/// being removed).
pub(crate) fn close_sessions(state: &ControlState, ids: Vec<u64>) {
    if let Some(edge) = state.webrtc() {
        for id in ids {
            edge.queue.command(PortInput::Close(id));
        }
    }
}

/// The handshake thread's outcomes, applied to the registry.
#[derive(Debug)]
pub struct RegistrySink(pub ControlState);

impl LegSink for RegistrySink {
    fn established(&self, id: SessionId, keys: &LegKeying, addr: SocketAddr) -> bool {
        let Ok(keys) = BrowserLegKeys::from_keying(keys) else {
            return false;
        };
        self.0.registry().browser_leg_established_later(
            id,
            keys.client_to_relay,
            keys.relay_to_client,
            addr,
        )
    }

    fn publish(&self) {
        self.0.registry().publish_pending();
    }

    fn moved(&self, id: SessionId, addr: SocketAddr) {
        self.0.registry().browser_leg_moved(id, addr);
    }

    fn ended(&self, id: SessionId, why: EndReason) {
        if self.0.registry().end_browser_session(id) {
            tracing::info!(session = %format!("{id:016x}"), ?why, "WebRTC session ended");
        }
    }

    fn tick_slots(&self, now: Instant, keyframes: &mut Vec<KeyframeRequest>) -> u64 {
        let tick = self.0.registry().tick_slots(now);
        keyframes.extend(tick.keyframes);
        tick.switches
    }

    fn unrouted(&self, from: SocketAddr, datagram: &[u8]) {
        match self.0.registry().browser_learn(from, datagram) {
            Ok(ssrc) => tracing::info!(ssrc, %from, "WHIP stream learnt from its first packets"),
            Err(why) => tracing::debug!(%from, %why, "unknown SSRC from a browser, not learnt"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_browser_error_code_is_listed() {
        use crate::webrtc::proto::sdp::SdpError;
        let all = [
            BrowserError::Whip(WhipError::MissingToken),
            BrowserError::Whip(WhipError::BadToken),
            BrowserError::Whip(WhipError::WrongContentType { got: String::new() }),
            BrowserError::Whip(WhipError::Offer(SdpError::Malformed(String::new()))),
            BrowserError::Whip(WhipError::Offer(SdpError::Unacceptable(
                crate::webrtc::proto::sdp::Unacceptable::NoBundle,
            ))),
            BrowserError::Locked,
            BrowserError::NoSession,
            BrowserError::TooManySessions,
            BrowserError::IceRestart,
            BrowserError::Unavailable,
            BrowserError::Internal,
        ];
        for e in &all {
            let (_, code, _) = e.parts();
            assert!(BrowserError::CODES.contains(&code), "{code}");
        }
    }

    #[test]
    fn browser_paths_are_recognised_and_nothing_else() {
        for yes in [
            "/v1/meetings/m/participants/p/whip",
            "/v1/meetings/m/participants/p/whep",
            "/v1/meetings/m/participants/p/webrtc/00000000000000ff",
        ] {
            assert!(is_browser_path(yes), "{yes}");
        }
        for no in [
            "/v1/meetings/m/participants/p",
            "/v1/meetings/m/participants/p/streams",
            "/v1/meetings/m/participants/p/whip/x",
            "/v1/meetings",
            "/v1/meetings/m/participants/p/webrtc",
        ] {
            assert!(!is_browser_path(no), "{no}");
        }
    }

    #[test]
    fn session_ids_are_sixteen_hex_digits() {
        assert_eq!(session_id("00000000000000ff"), Some(255));
        assert_eq!(session_id("ff"), None);
        assert_eq!(session_id("zz000000000000ff"), None);
    }
}
