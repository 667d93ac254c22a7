//! The read side an operator uses: `GET /v1/meetings` (paginated, filtered
//! by mode) and `GET /v1/meetings/{id}/participants/{pid}` (a participant's
//! latch, streams and live counters). `sluice ctl` is built on these.
//!
//! Pagination is by cursor, not offset: meetings are kept in id order, a
//! page ends with `next` (the last id on it) when more follow, and the next
//! page is `?after=<next>`. A meeting created or deleted between two pages
//! neither repeats nor shifts the others, which an offset cannot promise.
//! In cluster mode the listing is the cluster's, read from Redis (see
//! `clustered::list_meetings`), the same through every node.
//! Nothing here ever shows a key.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::api::{MeetingView, StreamView, WireMode};
use super::registry::Participant;
use super::{ApiError, ControlState};
use crate::control::extract::ApiPath;
use crate::relay::MeetingMode;

/// Page size when `limit` is absent.
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// The largest page a client may ask for.
pub(crate) const MAX_LIMIT: usize = 1000;

/// Query parameters; a rejection is a JSON `invalid_request` naming the
/// parameter (an unknown one included, so a typo never silently lists all).
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

fn query_rejection(rejection: &QueryRejection) -> ApiError {
    use std::error::Error as _;
    let detail = rejection
        .source()
        .map_or_else(|| rejection.body_text(), ToString::to_string);
    ApiError::InvalidRequest(format!("invalid query: {detail}"))
}

/// `GET /v1/meetings` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListMeetings {
    mode: Option<WireMode>,
    limit: Option<usize>,
    after: Option<String>,
}

/// One page of meetings.
#[derive(Debug, Serialize)]
struct MeetingPage<'a> {
    meetings: Vec<MeetingView<'a>>,
    /// The cursor for the next page (`?after=`), absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<&'a str>,
}

/// `GET /v1/meetings?mode=&limit=&after=`.
pub(crate) async fn list_meetings(
    State(state): State<ControlState>,
    ApiQuery(query): ApiQuery<ListMeetings>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!(
            "limit must be 1 to {MAX_LIMIT}, not {limit}"
        )));
    }
    let mode = query.mode.map(MeetingMode::from);
    if let Some(link) = state.cluster() {
        return super::clustered::list_meetings(link, mode, limit, query.after.as_deref());
    }
    let registry = state.registry();
    let mut matching = registry
        .meetings_after(query.after.as_deref())
        .filter(|m| mode.is_none_or(|mode| m.mode == mode));
    let meetings: Vec<MeetingView<'_>> =
        matching.by_ref().take(limit).map(MeetingView::of).collect();
    let next = match matching.next() {
        Some(_) => meetings.last().map(|m| m.id),
        None => None,
    };
    Ok(Json(MeetingPage { meetings, next }).into_response())
}

/// `GET /v1/meetings/{id}/participants/{pid}`.
pub(crate) async fn show_participant(
    State(state): State<ControlState>,
    ApiPath((meeting_id, participant_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let registry = state.registry();
    let meeting = registry.meeting(&meeting_id)?;
    let participant = meeting
        .participants
        .iter()
        .find(|p| p.id == participant_id)
        .ok_or_else(|| ApiError::ParticipantNotFound(participant_id.clone()))?;
    Ok(Json(participant_detail(&meeting.id, participant)).into_response())
}

/// A participant as an operator inspects it: never its keys.
fn participant_detail(meeting: &str, p: &Participant) -> Value {
    let leg = &p.leg;
    let streams: Vec<Value> = p
        .streams
        .iter()
        .map(|s| {
            let mut view = json!(StreamView::of(s));
            // The highest SRTP index (RFC 3711 §3.3.1: ROC·2^16 + SEQ)
            // accepted on any worker; 0 until the first packet.
            view["highest_srtp_index"] = json!(s.route.highest_index.load(Ordering::Relaxed));
            view
        })
        .collect();
    let latched = leg.latch.get();
    json!({
        "id": p.id,
        "meeting": meeting,
        "name": p.name,
        "role": p.role.name(),
        "source": p.source.name(),
        "srtp_profile": leg.client_to_relay.profile().name(),
        "latch": {
            "latched": latched.is_some(),
            "address": latched.map(|a| a.to_string()),
        },
        "streams": streams,
        "counters": {
            // Stored as index + 1, 0 meaning none yet (relay::latching).
            "srtcp_highest_index_received":
                leg.highest_srtcp_index.load(Ordering::Relaxed).checked_sub(1),
            "srtcp_packets_sent": leg.next_srtcp_index.load(Ordering::Relaxed),
        },
    })
}

/// Adds this module's operations and schemas to the OpenAPI document.
pub(crate) fn describe(doc: &mut Value, unauthorized: &Value, no_participant: &Value) {
    let bad = json!({ "description": "A query parameter is invalid; the message names it \
        (codes: invalid_request)", "content": { "application/json": { "schema": {
        "$ref": "#/components/schemas/Error" } } } });
    doc["paths"]["/v1/meetings"]["get"] = json!({
        "summary": "List meetings in id order, one page at a time",
        "parameters": [
            { "name": "mode", "in": "query", "required": false,
              "schema": { "type": "string", "enum": ["e2ee", "standard"] },
              "description": "Only meetings of this mode" },
            { "name": "limit", "in": "query", "required": false,
              "schema": { "type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                          "default": DEFAULT_LIMIT } },
            { "name": "after", "in": "query", "required": false,
              "schema": { "type": "string" },
              "description": "The previous page's next: list the meetings after this id" }
        ],
        "responses": {
            "200": { "description": "A page", "content": { "application/json": { "schema": {
                "$ref": "#/components/schemas/MeetingPage" } } } },
            "400": bad,
            "401": unauthorized
        }
    });
    doc["paths"]["/v1/meetings/{id}/participants/{pid}"]["get"] = json!({
        "summary": "A participant: its latch, streams and counters (never keys)",
        "responses": {
            "200": { "description": "The participant", "content": { "application/json": {
                "schema": { "$ref": "#/components/schemas/ParticipantDetail" } } } },
            "401": unauthorized,
            "404": no_participant
        }
    });
    let schemas = &mut doc["components"]["schemas"];
    schemas["MeetingPage"] = json!({
        "type": "object", "required": ["meetings"],
        "properties": {
            "meetings": { "type": "array", "items": { "$ref": "#/components/schemas/Meeting" } },
            "next": { "type": "string",
                "description": "Present when more meetings follow: pass it as ?after=" }
        }
    });
    schemas["ParticipantDetail"] = json!({
        "type": "object",
        "required": ["id", "meeting", "name", "role", "source", "srtp_profile", "latch",
                     "streams", "counters"],
        "properties": {
            "id": { "type": "string" },
            "meeting": { "type": "string" },
            "name": { "type": "string" },
            "role": { "type": "string", "enum": ["host", "attendee", "observer"] },
            "source": { "type": "string", "enum": ["api", "dial-in"] },
            "srtp_profile": { "type": "string" },
            "latch": { "type": "object", "required": ["latched", "address"], "properties": {
                "latched": { "type": "boolean",
                    "description": "Whether an authenticated packet fixed the address" },
                "address": { "type": "string", "nullable": true }
            } },
            "streams": { "type": "array", "items": { "allOf": [
                { "$ref": "#/components/schemas/Stream" },
                { "type": "object", "properties": { "highest_srtp_index": {
                    "type": "integer", "description": "ROC·65536 + SEQ of the newest packet \
                    accepted; 0 before the first" } } }
            ] } },
            "counters": { "type": "object", "properties": {
                "srtcp_highest_index_received": { "type": "integer", "nullable": true },
                "srtcp_packets_sent": { "type": "integer" }
            } }
        }
    });
}
