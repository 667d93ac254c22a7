//! `POST /v1/meetings/{id}/dial`, `GET|DELETE /v1/meetings/{id}/calls/{cid}`:
//! calling a phone out of a meeting through the `[sip.trunk]`
//! (`crate::dialout` does the calling). Described in the OpenAPI
//! document by [`describe`].

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{ID_PATTERN, is_id};
use super::extract::{ApiJson, ApiPath};
use super::{ApiError, ControlState};
use crate::config::is_sip_uri;
use crate::dialout::{CallView, DialOutHandle, DialRequest};

/// The body of `POST /v1/meetings/{id}/dial`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DialBody {
    to: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    caller_id_name: Option<String>,
}

/// What `is_sip_uri` takes, for the OpenAPI document: `sip:` or `sips:`,
/// then printable ASCII without `"`, `<`, `>` or `\`, in non-empty parts
/// between `@`s.
const SIP_URI_PATTERN: &str = r"^[sS][iI][pP][sS]?:[!#-;=?A-\[\]-~]+(@[!#-;=?A-\[\]-~]+)*$";

/// The longest caller name sent in From.
const MAX_NAME: usize = 64;

fn handle(state: &ControlState) -> Result<&DialOutHandle, ApiError> {
    state.dial_out().ok_or(ApiError::DialOutNotConfigured)
}

fn check_ids(meeting: &str, call: Option<&str>) -> Result<(), ApiError> {
    for (what, id) in [("the meeting id", Some(meeting)), ("the call id", call)] {
        if let Some(id) = id
            && !is_id(id)
        {
            return Err(ApiError::InvalidRequest(format!(
                "{what} must match {ID_PATTERN}"
            )));
        }
    }
    Ok(())
}

fn answer(status: StatusCode, view: &CallView) -> Response {
    let mut response = (status, axum::Json(view)).into_response();
    if status == StatusCode::CREATED
        && let Ok(location) = format!("/v1/meetings/{}/calls/{}", view.meeting, view.id).parse()
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// `POST /v1/meetings/{id}/dial`.
pub(crate) async fn dial(
    State(state): State<ControlState>,
    ApiPath(meeting): ApiPath<String>,
    ApiJson(body): ApiJson<DialBody>,
) -> Result<Response, ApiError> {
    check_ids(&meeting, None)?;
    if !is_sip_uri(&body.to) {
        return Err(ApiError::InvalidRequest(format!(
            "to: {:?} is not a SIP URI; use e.g. \"sip:+15551234@trunk.example.org\"",
            body.to
        )));
    }
    if let Some(from) = &body.from
        && !is_sip_uri(from)
    {
        return Err(ApiError::InvalidRequest(format!(
            "from: {from:?} is not a SIP URI; use e.g. \"sip:meetings@example.org\""
        )));
    }
    if let Some(name) = &body.caller_id_name {
        let bad = name.trim().is_empty()
            || name.chars().count() > MAX_NAME
            || name
                .chars()
                .any(|c| c.is_control() || c == '"' || c == '\\');
        if bad {
            return Err(ApiError::InvalidRequest(format!(
                "caller_id_name must be 1 to {MAX_NAME} characters, without quotes, \
                 backslashes or control characters"
            )));
        }
    }
    let handle = handle(&state)?;
    let view = handle
        .dial(DialRequest {
            meeting,
            to: body.to,
            from: body.from,
            caller_id_name: body.caller_id_name,
        })
        .await?;
    Ok(answer(StatusCode::CREATED, &view))
}

/// `GET /v1/meetings/{id}/calls/{cid}`.
pub(crate) async fn show_call(
    State(state): State<ControlState>,
    ApiPath((meeting, call)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    check_ids(&meeting, Some(&call))?;
    let view = handle(&state)?.show(meeting, call).await?;
    Ok(answer(StatusCode::OK, &view))
}

/// `DELETE /v1/meetings/{id}/calls/{cid}`: CANCEL before the answer, BYE
/// after; 202, since the far end's answer comes later.
pub(crate) async fn hangup_call(
    State(state): State<ControlState>,
    ApiPath((meeting, call)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    check_ids(&meeting, Some(&call))?;
    let view = handle(&state)?.hangup(meeting, call).await?;
    Ok(answer(StatusCode::ACCEPTED, &view))
}

/// Adds the dial-out paths and schemas to the OpenAPI document.
pub(crate) fn describe(doc: &mut Value, bad: &Value, unauthorized: &Value) {
    let error = |description: &str, codes: &[&str]| {
        json!({
            "description": format!("{description} (codes: {})", codes.join(", ")),
            "content": { "application/json": { "schema": {
                "$ref": "#/components/schemas/Error" } } }
        })
    };
    let id = |name: &str, description: &str| {
        json!({ "name": name, "in": "path", "required": true, "description": description,
                "schema": { "type": "string", "minLength": 1, "maxLength": 64,
                            "pattern": ID_PATTERN } })
    };
    let not_configured = error("This node has no [sip.trunk]", &["dial_out_not_configured"]);
    let unavailable = error(
        "Dial-out is at its max_calls or not running",
        &["dial_out_unavailable"],
    );
    let call = json!({ "description": "The call", "content": { "application/json": {
        "schema": { "$ref": "#/components/schemas/Call" } } } });
    doc["paths"]["/v1/meetings/{id}/dial"] = json!({
        "parameters": [id("id", "The meeting id")],
        "post": {
            "operationId": "dialOut",
            "summary": "Call a phone through the SIP trunk and bridge it into the meeting",
            "requestBody": { "required": true, "content": { "application/json": { "schema": {
                "$ref": "#/components/schemas/Dial" } } } },
            "responses": {
                "201": { "description": "Dialing; Location names the call",
                         "content": { "application/json": { "schema": {
                             "$ref": "#/components/schemas/Call" } } },
                         "links": {
                             "showCall": { "operationId": "showCall", "parameters": {
                                 "id": "$request.path.id", "cid": "$response.body#/id" } },
                             "hangupCall": { "operationId": "hangupCall", "parameters": {
                                 "id": "$request.path.id", "cid": "$response.body#/id" } } } },
                "400": bad,
                "401": unauthorized,
                "403": error("The meeting refuses the phone", &[
                    "e2ee_forbids_dial_out", "meeting_locked", "wrong_passcode"]),
                "404": error("No such meeting", &["meeting_not_found"]),
                "409": error("No trunk, or the meeting is full", &[
                    "dial_out_not_configured", "meeting_full", "duplicate_ssrc"]),
                "503": error("Dial-out or the node cannot take the call now", &[
                    "dial_out_unavailable", "node_full", "node_overloaded",
                    "no_node_available", "cluster_unavailable"])
            }
        }
    });
    let call_paths = json!({
        "parameters": [id("id", "The meeting id"), id("cid", "The call id")],
        "get": {
            "operationId": "showCall",
            "summary": "A dial-out call: its state, and once ended its outcome",
            "responses": {
                "200": call,
                "400": bad,
                "401": unauthorized,
                "404": error("No such call in this meeting", &["call_not_found"]),
                "409": not_configured,
                "503": unavailable
            }
        },
        "delete": {
            "operationId": "hangupCall",
            "summary": "Hang up: CANCEL before the answer, BYE after",
            "responses": {
                "202": { "description": "Hanging up; the call as it stands",
                         "content": { "application/json": { "schema": {
                             "$ref": "#/components/schemas/Call" } } } },
                "400": bad,
                "401": unauthorized,
                "404": error("No such call in this meeting", &["call_not_found"]),
                "409": not_configured,
                "503": unavailable
            }
        }
    });
    doc["paths"]["/v1/meetings/{id}/calls/{cid}"] = call_paths;
    let schemas = &mut doc["components"]["schemas"];
    let uri = json!({ "type": "string", "minLength": 5, "maxLength": 256,
        "pattern": SIP_URI_PATTERN });
    schemas["Dial"] = json!({
        "type": "object", "required": ["to"], "additionalProperties": false,
        "properties": {
            "to": uri,
            "from": { "allOf": [uri], "nullable": true,
                "description": "The From URI; the trunk's from, or sip:<meeting>@<this node>" },
            "caller_id_name": { "type": "string", "minLength": 1, "maxLength": MAX_NAME,
                "nullable": true, "pattern": "^[^\"\\\\\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\"\\\\\\u0000-\\u001f\\u007f-\\u009f][^\"\\\\\\u0000-\\u001f\\u007f-\\u009f]*$" }
        }
    });
    schemas["Call"] = json!({
        "type": "object",
        "required": ["id", "meeting", "participant", "to", "from", "state"],
        "properties": {
            "id": { "type": "string" },
            "meeting": { "type": "string" },
            "participant": { "type": "string",
                "description": "The phone's participant id in the meeting" },
            "to": { "type": "string" },
            "from": { "type": "string" },
            "state": { "type": "string",
                "enum": ["dialing", "ringing", "early_media", "answered", "ended"] },
            "outcome": { "type": "string",
                "enum": ["answered", "busy", "no_answer", "failed", "cancelled"] },
            "sip_status": { "type": "integer", "minimum": 100, "maximum": 699 },
            "reason": { "type": "string",
                "description": "Why a failed call failed on sluice's side: the trunk unreachable, its TLS certificate not trusted, its SDP answer unusable" }
        }
    });
}
