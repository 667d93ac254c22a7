//! The endpoint handlers: JSON in, validation, one registry call, JSON out.
//! The shapes are documented in [`super::openapi`].

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ApiError;
use super::ControlState;
use super::clustered;
use super::extract::{ApiJson, ApiPath};
use super::registry::{Meeting, NewMeeting, NewParticipant, NewStream, Owner, Participant, Stream};
use crate::policy::{Role, Source};
use crate::relay::{MediaKind, MeetingMode};
use crate::srtp::{MasterKey, SrtpProfile};
use crate::transcode::{PrefsError, VideoPrefs};

/// The profile a participant gets when it names none.
const DEFAULT_PROFILE: SrtpProfile = SrtpProfile::AeadAes256Gcm;

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum WireMode {
    E2ee,
    Standard,
}

impl From<WireMode> for MeetingMode {
    fn from(mode: WireMode) -> Self {
        match mode {
            WireMode::E2ee => Self::E2ee,
            WireMode::Standard => Self::Standard,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireKind {
    Audio,
    Video,
}

pub(crate) fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateMeeting {
    id: Option<String>,
    mode: WireMode,
    owner: WireOwner,
    passcode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireOwner {
    account: String,
    #[serde(default)]
    verified: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetLock {
    locked: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateParticipant {
    name: String,
    #[serde(default)]
    role: Role,
    passcode: Option<String>,
    srtp_profile: Option<String>,
    #[serde(default)]
    source: Source,
    client_to_relay: Option<String>,
    rtcp_ssrc: Option<u32>,
    receive: Option<WireReceive>,
    /// Cluster mode: the node the leg must go to.
    node: Option<String>,
    /// `srtp` (SDES keys, the default) or `webrtc` (a browser: WHIP/WHEP).
    #[serde(default)]
    transport: WireTransport,
}

/// How a participant's leg is keyed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireTransport {
    /// SDES-style keys in the answer.
    #[default]
    Srtp,
    /// A browser: a token and WHIP/WHEP endpoints; keys come from DTLS.
    Webrtc,
}

/// `receive` on admission: what video the participant can take.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WireReceive {
    video: Option<WireVideoPrefs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireVideoPrefs {
    codecs: Vec<WireCodec>,
    max_height: Option<u32>,
    max_kbps: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCodec {
    name: String,
    payload_type: u16,
}

/// The `receive` preferences as the roster shows them.
pub(super) fn receive_view(prefs: &VideoPrefs) -> serde_json::Value {
    let codecs: Vec<serde_json::Value> = prefs
        .codecs
        .iter()
        .map(|c| json!({"name": c.codec.name(), "payload_type": c.payload_type.get()}))
        .collect();
    json!({"video": {"codecs": codecs, "max_height": prefs.max_height, "max_kbps": prefs.max_kbps}})
}

impl WireReceive {
    /// The checked preferences; `None` when no video preference is given.
    fn video_prefs(self) -> Result<Option<VideoPrefs>, ApiError> {
        let Some(video) = self.video else {
            return Ok(None);
        };
        let codecs: Vec<(String, u16)> = video
            .codecs
            .into_iter()
            .map(|c| (c.name, c.payload_type))
            .collect();
        VideoPrefs::new(&codecs, video.max_height, video.max_kbps)
            .map(Some)
            .map_err(|e| match e {
                PrefsError::Duplicate(what) => {
                    ApiError::ConflictingReceive(format!("{what} is listed twice"))
                }
                other => ApiError::InvalidRequest(other.to_string()),
            })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateStream {
    ssrc: u32,
    kind: WireKind,
    codec: String,
    payload_type: u8,
}

#[derive(Debug, Serialize)]
struct OwnerView<'a> {
    account: &'a str,
    verified: bool,
}

/// A meeting as `POST /v1/meetings` and the lock answer it.
#[derive(Debug, Serialize)]
pub(super) struct MeetingView<'a> {
    pub(super) id: &'a str,
    mode: &'static str,
    owner: OwnerView<'a>,
    locked: bool,
    participants: usize,
}

impl<'a> MeetingView<'a> {
    pub(super) fn of(meeting: &'a Meeting) -> Self {
        Self {
            id: &meeting.id,
            mode: meeting.mode.name(),
            owner: OwnerView {
                account: &meeting.owner.account,
                verified: meeting.owner.verified,
            },
            locked: meeting.locked,
            participants: meeting.participants.len(),
        }
    }
}

/// A meeting with its roster, as `GET /v1/meetings/{id}` answers it.
#[derive(Debug, Serialize)]
struct MeetingDetail<'a> {
    #[serde(flatten)]
    meeting: MeetingView<'a>,
    roster: Vec<ParticipantView<'a>>,
}

/// A participant without its keys.
#[derive(Debug, Serialize)]
struct ParticipantView<'a> {
    id: &'a str,
    name: &'a str,
    role: &'static str,
    source: &'static str,
    streams: Vec<StreamView<'a>>,
    /// The `receive` preferences it was admitted with.
    #[serde(skip_serializing_if = "Option::is_none")]
    receive: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub(super) struct StreamView<'a> {
    ssrc: u32,
    kind: &'static str,
    codec: &'a str,
    payload_type: u8,
}

impl<'a> StreamView<'a> {
    pub(super) fn of(stream: &'a Stream) -> Self {
        Self {
            ssrc: stream.route.ssrc,
            kind: kind_name(stream.route.kind),
            codec: &stream.codec,
            payload_type: stream.route.payload_type,
        }
    }
}

/// The id pattern of meetings and participants, as the OpenAPI spec
/// states it: 1 to 64 of A-Z a-z 0-9 `-` `_` `.`, not starting with `.`
/// (so never `.` or `..`, whatever a path decodes to).
pub(crate) const ID_PATTERN: &str = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$";

/// Whether `value` matches [`ID_PATTERN`].
pub(crate) fn is_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && !value.starts_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_id(field: &str, value: &str) -> Result<(), ApiError> {
    if is_id(value) {
        Ok(())
    } else {
        Err(ApiError::InvalidRequest(format!(
            "{field} must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' or '.', not \
             starting with '.'"
        )))
    }
}

/// Text fields: at least one non-space character, at most `max`
/// characters (not bytes: what JSON Schema's maxLength counts), no
/// control characters. The spec states the same (`text_schema`).
fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() || value.chars().count() > max || value.chars().any(char::is_control)
    {
        return Err(ApiError::InvalidRequest(format!(
            "{field} must be non-empty text of at most {max} characters without control \
             characters"
        )));
    }
    Ok(())
}

/// Path ids that cannot name anything are refused before any lookup.
fn check_path_ids(ids: &[(&str, &str)]) -> Result<(), ApiError> {
    ids.iter().try_for_each(|(field, id)| check_id(field, id))
}

fn decode_key(field: &str, profile: SrtpProfile, text: &str) -> Result<MasterKey, ApiError> {
    let bytes = BASE64
        .decode(text)
        .map_err(|e| ApiError::InvalidKey(format!("{field} is not standard base64 ({e})")))?;
    MasterKey::new(profile, &bytes).map_err(|_| {
        ApiError::InvalidKey(format!(
            "{field} must decode to {} bytes (master key and salt) for {profile}, not {}",
            profile.key_material_len(),
            bytes.len()
        ))
    })
}

/// A 201 with `body`, and a `Location` where the resource has a URL.
fn created(location: Option<String>, body: serde_json::Value) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Some(value) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `POST /v1/meetings`.
pub(crate) async fn create_meeting(
    State(state): State<ControlState>,
    ApiJson(body): ApiJson<CreateMeeting>,
) -> Result<Response, ApiError> {
    if let Some(id) = &body.id {
        check_id("id", id)?;
    }
    check_text("owner.account", &body.owner.account, 256)?;
    if let Some(passcode) = &body.passcode {
        check_text("passcode", passcode, 128)?;
    }
    let new = NewMeeting {
        id: body.id,
        mode: body.mode.into(),
        owner: Owner {
            account: body.owner.account,
            verified: body.owner.verified,
        },
        passcode: body.passcode,
    };
    if let Some(link) = state.cluster() {
        return clustered::create_meeting(&state, link, &new);
    }
    let mut registry = state.registry();
    let meeting = registry.create_meeting(new)?;
    let location = format!("/v1/meetings/{}", meeting.id);
    Ok(created(Some(location), json!(MeetingView::of(meeting))))
}

/// `GET /v1/meetings/{id}`.
pub(crate) async fn show_meeting(
    State(state): State<ControlState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    check_path_ids(&[("the meeting id", &id)])?;
    if let Some(link) = state.cluster() {
        return clustered::show_meeting(link, &id);
    }
    let registry = state.registry();
    let meeting = registry.meeting(&id)?;
    let roster = meeting
        .participants
        .iter()
        .map(|p: &Participant| ParticipantView {
            id: &p.id,
            name: &p.name,
            role: p.role.name(),
            source: p.source.name(),
            streams: p.streams.iter().map(StreamView::of).collect(),
            receive: p.receive.as_ref().map(receive_view),
        })
        .collect();
    let detail = MeetingDetail {
        meeting: MeetingView::of(meeting),
        roster,
    };
    Ok(Json(detail).into_response())
}

/// `DELETE /v1/meetings/{id}`.
pub(crate) async fn delete_meeting(
    State(state): State<ControlState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    check_path_ids(&[("the meeting id", &id)])?;
    if let Some(link) = state.cluster() {
        return clustered::delete_meeting(&state, link, &id).await;
    }
    let mut registry = state.registry();
    let sessions = registry.browser_sessions(&id, None);
    registry.delete_meeting(&id)?;
    drop(registry);
    super::webrtc::close_sessions(&state, sessions);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/meetings/{id}/lock`.
pub(crate) async fn set_lock(
    State(state): State<ControlState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SetLock>,
) -> Result<Response, ApiError> {
    check_path_ids(&[("the meeting id", &id)])?;
    if let Some(link) = state.cluster() {
        return clustered::set_lock(link, &id, body.locked);
    }
    let mut registry = state.registry();
    let meeting = registry.set_locked(&id, body.locked)?;
    Ok(Json(MeetingView::of(meeting)).into_response())
}

/// `POST /v1/meetings/{id}/participants`.
pub(crate) async fn add_participant(
    State(state): State<ControlState>,
    ApiPath(meeting_id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateParticipant>,
) -> Result<Response, ApiError> {
    check_path_ids(&[("the meeting id", &meeting_id)])?;
    check_text("name", &body.name, 256)?;
    let profile = match &body.srtp_profile {
        Some(name) => name
            .parse()
            .map_err(|_| ApiError::InvalidSrtpProfile(name.clone()))?,
        None => DEFAULT_PROFILE,
    };
    let client_to_relay = body
        .client_to_relay
        .as_deref()
        .map(|text| decode_key("client_to_relay", profile, text))
        .transpose()?;
    let receive = body
        .receive
        .map(WireReceive::video_prefs)
        .transpose()?
        .flatten();
    if let Some(node) = &body.node {
        check_id("node", node)?;
    }
    let new = NewParticipant {
        name: body.name,
        role: body.role,
        passcode: body.passcode,
        source: body.source,
        profile,
        client_to_relay,
        rtcp_ssrc: body.rtcp_ssrc,
        receive,
    };
    let webrtc = body.transport == WireTransport::Webrtc;
    if webrtc && (new.client_to_relay.is_some() || body.srtp_profile.is_some()) {
        return Err(ApiError::InvalidRequest(
            "transport \"webrtc\" takes its keys from DTLS: leave srtp_profile and \
             client_to_relay out"
                .to_owned(),
        ));
    }
    if webrtc && state.cluster().is_some() {
        return Err(ApiError::InvalidRequest(
            "transport \"webrtc\" is not available in cluster mode yet; admit the browser \
             on a node running alone"
                .to_owned(),
        ));
    }
    if let Some(link) = state.cluster() {
        return clustered::add_participant(&state, link, &meeting_id, new, body.node).await;
    }
    if body.node.is_some() {
        return Err(ApiError::NodeHintAlone);
    }
    let mut registry = state.registry();
    if webrtc {
        let id = registry.admit(&meeting_id, new)?.id.clone();
        let token = registry.seat_browser(&meeting_id, &id)?;
        let participant = registry
            .meeting(&meeting_id)?
            .participants
            .iter()
            .find(|p| p.id == id);
        let role = participant.map_or("attendee", |p| p.role.name());
        let body = json!({
            "id": id,
            "role": role,
            "webrtc": {
                "token": token,
                "whip": super::webrtc::endpoint(&meeting_id, &id, "whip"),
                "whep": super::webrtc::endpoint(&meeting_id, &id, "whep"),
            },
        });
        let location = format!("/v1/meetings/{meeting_id}/participants/{id}");
        return Ok(created(Some(location), body));
    }
    let address = registry.media_address();
    let participant = registry.admit(&meeting_id, new)?;
    let body = json!({
        "id": participant.id,
        "role": participant.role.name(),
        "media": {
            "address": address.to_string(),
            "srtp_profile": profile.name(),
            "client_to_relay": BASE64.encode(participant.leg.client_to_relay.as_bytes()),
            "relay_to_client": BASE64.encode(participant.leg.relay_to_client.as_bytes()),
            "rtcp_ssrc": participant.rtcp_ssrc,
        },
    });
    let location = format!("/v1/meetings/{meeting_id}/participants/{}", participant.id);
    Ok(created(Some(location), body))
}

/// `DELETE /v1/meetings/{id}/participants/{pid}`.
pub(crate) async fn delete_participant(
    State(state): State<ControlState>,
    ApiPath((meeting_id, participant_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    check_path_ids(&[
        ("the meeting id", &meeting_id),
        ("the participant id", &participant_id),
    ])?;
    if let Some(link) = state.cluster() {
        return clustered::delete_participant(&state, link, &meeting_id, &participant_id).await;
    }
    let mut registry = state.registry();
    let sessions = registry.browser_sessions(&meeting_id, Some(&participant_id));
    registry.remove_participant(&meeting_id, &participant_id)?;
    drop(registry);
    super::webrtc::close_sessions(&state, sessions);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/meetings/{id}/participants/{pid}/streams`.
pub(crate) async fn add_stream(
    State(state): State<ControlState>,
    ApiPath((meeting_id, participant_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<CreateStream>,
) -> Result<Response, ApiError> {
    check_path_ids(&[
        ("the meeting id", &meeting_id),
        ("the participant id", &participant_id),
    ])?;
    check_text("codec", &body.codec, 64)?;
    match body.payload_type {
        0..=63 | 96..=127 => {}
        64..=95 => {
            return Err(ApiError::InvalidRequest(
                "payload_type 64 to 95 collide with RTCP packet types when RTP and RTCP share \
                 a port (RFC 5761 §4); use 96 to 127"
                    .to_owned(),
            ));
        }
        _ => {
            return Err(ApiError::InvalidRequest(
                "payload_type must be 0 to 127".to_owned(),
            ));
        }
    }
    let kind = match body.kind {
        WireKind::Audio => MediaKind::Audio,
        WireKind::Video => MediaKind::Video,
    };
    let new = NewStream {
        ssrc: body.ssrc,
        kind,
        codec: body.codec,
        payload_type: body.payload_type,
    };
    if let Some(link) = state.cluster()
        && let Some(forwarded) =
            clustered::stream_elsewhere(&state, link, &meeting_id, &participant_id, &new).await?
    {
        return Ok(forwarded);
    }
    let mut registry = state.registry();
    let stream = registry.add_stream(&meeting_id, &participant_id, new)?;
    Ok(created(None, json!(StreamView::of(stream))))
}

/// `GET /healthz`: the control thread answers, so the process is alive.
pub(crate) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /metrics`: Prometheus text exposition.
pub(crate) async fn metrics(State(state): State<ControlState>) -> Response {
    let gauges = state.registry().gauges();
    let text = state.metrics().render(&gauges);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `GET /v1/openapi.json`.
pub(crate) async fn openapi() -> Json<serde_json::Value> {
    Json(super::openapi::document())
}

/// Any other path.
pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound
}
