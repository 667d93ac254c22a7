//! The OpenAPI 3.0 description served at `/v1/openapi.json`, written by
//! hand next to the handlers it describes. Tests check that every path it
//! lists is routed and every error code is in it.

use serde_json::{Value, json};

use super::ApiError;
use super::api::ID_PATTERN;
use super::edge::{MAX_HEAD, MAX_URI};

/// Text the handlers take (`check_text`): 1 to `max` characters, at least
/// one not white space, none a control character (Unicode Cc).
fn text(max: usize) -> Value {
    const NOT_CONTROL: &str = "[^\\u0000-\\u001f\\u007f-\\u009f]";
    json!({
        "type": "string", "minLength": 1, "maxLength": max,
        "pattern": format!("^{NOT_CONTROL}*[^\\s\\u0000-\\u001f\\u007f-\\u009f]{NOT_CONTROL}*$"),
    })
}

/// `schema`, also taking null (which the server reads as absent).
fn nullable(mut schema: Value) -> Value {
    schema["nullable"] = json!(true);
    schema
}

/// An id as the server takes it.
fn id_schema() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": 64, "pattern": ID_PATTERN })
}

/// An error response whose `code` is one of `codes`.
fn error(description: &str, codes: &[&str]) -> Value {
    json!({
        "description": format!("{description} (codes: {})", codes.join(", ")),
        "content": { "application/json": { "schema": {
            "allOf": [
                { "$ref": "#/components/schemas/Error" },
                { "type": "object", "properties": { "error": { "type": "object",
                    "properties": { "code": { "type": "string", "enum": codes } } } } }
            ]
        } } }
    })
}

/// Every error code the API answers with: the control API's and the
/// browser endpoints' (WHIP/WHEP), each once.
fn error_codes() -> Vec<&'static str> {
    let mut codes = ApiError::CODES.to_vec();
    for code in super::webrtc::BrowserError::CODES {
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

fn body(schema: &str) -> Value {
    json!({
        "required": true,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

fn ok(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

/// `response` with OpenAPI links to the operations that take what it
/// returns (so a stateful client can follow them).
fn with_links(mut response: Value, links: &[(&str, &[(&str, &str)])]) -> Value {
    let mut all = serde_json::Map::new();
    for (operation, parameters) in links {
        let parameters: serde_json::Map<String, Value> = parameters
            .iter()
            .map(|(name, from)| ((*name).to_owned(), json!(from)))
            .collect();
        all.insert(
            (*operation).to_owned(),
            json!({ "operationId": operation, "parameters": parameters }),
        );
    }
    response["links"] = Value::Object(all);
    response
}

fn param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description,
            "schema": id_schema() })
}

/// The document.
pub(crate) fn document() -> Value {
    let bad = error(
        "The body or a parameter is invalid; the message names the field",
        &["invalid_request"],
    );
    let unauthorized = error("The bearer token is missing or wrong", &["unauthorized"]);
    let no_meeting = error("No such meeting", &["meeting_not_found"]);
    let no_participant = error(
        "No such meeting or participant",
        &["meeting_not_found", "participant_not_found"],
    );
    let bad_id = error(
        "An id in the path does not match the id pattern",
        &["invalid_request"],
    );
    let meeting_id = param("id", "The meeting id");
    let participant_id = param("pid", "The participant id");
    let description = format!(
        "Create meetings, admit participants and hand out their SRTP keys. Every error is \
         JSON {{\"error\":{{\"code\",\"message\"}}}}. Every path but /healthz needs \
         \"Authorization: Bearer <token>\" when a token is configured (401 unauthorized \
         otherwise). Unknown paths answer 404 not_found, wrong methods 405 \
         method_not_allowed, oversized bodies 413 body_too_large, and failures of the relay \
         itself 500 internal. The TCP edge answers by itself, in the same shape: a request \
         target over {MAX_URI} bytes 414 uri_too_long, a head over {MAX_HEAD} bytes or 64 \
         fields 431 headers_too_large, a head not sent within [control] header_timeout_secs \
         408 request_timeout, a request line that is not HTTP/1.1 400 bad_request, too many \
         open connections 503 too_many_connections. Every answer carries Cache-Control: \
         no-store."
    );
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "sluice control API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": description
        },
        "security": [{ "bearer": [] }],
        "paths": {
            "/v1/meetings": {
                "post": {
                    "operationId": "createMeeting",
                    "summary": "Create a meeting",
                    "requestBody": body("CreateMeeting"),
                    "responses": {
                        "201": with_links(ok("Created; Location names the meeting", "Meeting"), &[
                            ("showMeeting", &[("id", "$response.body#/id")]),
                            ("lockMeeting", &[("id", "$response.body#/id")]),
                            ("addParticipant", &[("id", "$response.body#/id")]),
                            ("deleteMeeting", &[("id", "$response.body#/id")]),
                        ]),
                        "400": bad,
                        "401": unauthorized,
                        "403": error("The policy refuses this owner or mode",
                            &["e2ee_requires_verified_owner", "e2ee_disabled"]),
                        "409": error("The id is taken", &["meeting_exists"]),
                        "503": error("The node holds [policy] max_meetings", &["too_many_meetings"])
                    }
                }
            },
            "/v1/meetings/{id}": {
                "parameters": [meeting_id],
                "get": {
                    "operationId": "showMeeting",
                    "summary": "A meeting and its roster (never keys)",
                    "responses": {
                        "200": ok("The meeting", "MeetingDetail"),
                        "400": bad_id,
                        "401": unauthorized,
                        "404": no_meeting
                    }
                },
                "delete": {
                    "operationId": "deleteMeeting",
                    "summary": "End a meeting; its legs stop being relayed at once",
                    "responses": {
                        "204": { "description": "Ended" },
                        "400": bad_id,
                        "401": unauthorized,
                        "404": no_meeting
                    }
                }
            },
            "/v1/meetings/{id}/lock": {
                "parameters": [meeting_id],
                "post": {
                    "operationId": "lockMeeting",
                    "summary": "Lock or unlock a meeting (a locked meeting admits nobody)",
                    "requestBody": body("SetLock"),
                    "responses": {
                        "200": ok("The meeting", "Meeting"),
                        "400": bad,
                        "401": unauthorized,
                        "404": no_meeting
                    }
                }
            },
            "/v1/meetings/{id}/participants": {
                "parameters": [meeting_id],
                "post": {
                    "operationId": "addParticipant",
                    "summary": "Admit a participant and hand out its leg's keys",
                    "requestBody": body("CreateParticipant"),
                    "responses": {
                        "201": with_links(ok("Admitted; Location names the participant", "Admitted"), &[
                            ("addStream", &[("id", "$request.path.id"), ("pid", "$response.body#/id")]),
                            ("removeParticipant", &[("id", "$request.path.id"), ("pid", "$response.body#/id")]),
                        ]),
                        "400": error("The body is invalid",
                            &["invalid_request", "invalid_key", "invalid_srtp_profile"]),
                        "401": unauthorized,
                        "403": error("The policy refuses this participant", &[
                            "meeting_locked", "wrong_passcode",
                            "e2ee_forbids_observers", "e2ee_forbids_dial_in",
                            "e2ee_forbids_transcoding"]),
                        "404": no_meeting,
                        "409": error("The meeting is full, rtcp_ssrc is in use, receive \
                            lists a codec or a payload type twice, or node is named on a node \
                            that runs alone",
                            &["meeting_full", "duplicate_ssrc", "conflicting_receive", "not_clustered"]),
                        "503": error("The node is full, its busiest packet worker is above \
                            max_worker_busy (then with Retry-After), or (cluster mode) no node has \
                            room or the cluster's Redis is unreachable",
                            &["node_full", "node_overloaded", "no_node_available", "cluster_unavailable"])
                    }
                }
            },
            "/v1/meetings/{id}/participants/{pid}": {
                "parameters": [meeting_id, participant_id],
                "delete": {
                    "operationId": "removeParticipant",
                    "summary": "Remove a participant; its leg and streams stop at once",
                    "responses": {
                        "204": { "description": "Removed" },
                        "400": bad_id,
                        "401": unauthorized,
                        "404": no_participant
                    }
                }
            },
            "/v1/meetings/{id}/participants/{pid}/streams": {
                "parameters": [meeting_id, participant_id],
                "post": {
                    "operationId": "addStream",
                    "summary": "Publish a stream (one SSRC) from a participant",
                    "requestBody": body("CreateStream"),
                    "responses": {
                        "201": ok("Published", "Stream"),
                        "400": bad,
                        "401": unauthorized,
                        "404": no_participant,
                        "409": error("The SSRC is in use on this node", &["duplicate_ssrc"])
                    }
                }
            },
            "/v1/meetings/{id}/participants/{pid}/webrtc/{sid}": {
                "parameters": [meeting_id, participant_id,
                    { "name": "sid", "in": "path", "required": true,
                      "description": "The WebRTC session (the last part of a WHIP/WHEP Location)",
                      "schema": { "type": "string", "pattern": "^[0-9a-f]{16}$" } }],
                "get": {
                    "operationId": "getWebrtcSession",
                    "summary": "Who fills each receive slot of a WHEP session now",
                    "description": "Authorised by the participant's own token (the admission \
                        answer's webrtc.token), not the API's. The slots are in the WHEP offer's \
                        m-line order; a WHIP session has none. participant_id and display_name \
                        (the name the participant was admitted with) are null for a slot nobody \
                        fills. The other methods of this path (DELETE, PATCH, OPTIONS) are \
                        WHIP/WHEP's (RFC 9725).",
                    "responses": {
                        "200": { "description": "The slots", "content": { "application/json": {
                            "schema": { "type": "object", "required": ["slots"], "properties": {
                                "slots": { "type": "array", "items": { "type": "object",
                                    "required": ["mid", "kind", "participant_id", "display_name"],
                                    "properties": {
                                        "mid": { "type": "string" },
                                        "kind": { "type": "string", "enum": ["audio", "video"] },
                                        "participant_id": { "type": "string", "nullable": true },
                                        "display_name": { "type": "string", "nullable": true }
                                    } } } } } } } },
                        "400": bad_id,
                        "401": error("The participant's token is missing or wrong (or there is \
                            no such meeting or participant; unauthorized: a path the API token guards)",
                            &["missing_token", "invalid_token", "unauthorized"]),
                        "404": error("The participant holds no such session", &["session_not_found"])
                    }
                }
            },
            "/v1/cluster/nodes": {
                "get": {
                    "summary": "Cluster mode: the live nodes and their published load",
                    "responses": {
                        "200": ok("The live nodes, sorted by id", "ClusterNodes"),
                        "401": unauthorized,
                        "404": error("This node runs alone", &["not_clustered"]),
                        "503": error("The cluster's Redis is unreachable", &["cluster_unavailable"])
                    }
                }
            },
            "/v1/cluster/local/meetings/{id}": {
                "parameters": [meeting_id],
                "delete": {
                    "summary": "Node to node: drop this node's copy of a meeting deleted from the cluster",
                    "responses": {
                        "204": { "description": "Dropped (or there was none)" },
                        "401": unauthorized,
                        "404": error("This node runs alone", &["not_clustered"])
                    }
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness; never needs a token",
                    "security": [],
                    "responses": { "200": ok("Alive", "Health") }
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": { "description": "Text exposition format 0.0.4",
                                 "content": { "text/plain": { "schema": { "type": "string" } } } },
                        "401": unauthorized
                    }
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": { "description": "OpenAPI 3.0",
                                 "content": { "application/json": { "schema": { "type": "object" } } } },
                        "401": unauthorized
                    }
                }
            }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas()
        }
    });
    super::listing::describe(&mut doc, &unauthorized, &no_participant);
    super::dialout::describe(&mut doc, &bad, &unauthorized);
    doc
}

fn schemas() -> Value {
    let key = json!({ "type": "string", "format": "byte",
        "description": "Standard base64 of master key ‖ master salt (SDES style, RFC 4568 §6.1)" });
    let receive = receive_schema();
    json!({
        "Error": {
            "type": "object", "required": ["error"],
            "properties": { "error": { "type": "object", "required": ["code", "message"],
                "properties": {
                    "code": { "type": "string", "enum": error_codes() },
                    "message": { "type": "string" }
                } } }
        },
        "Owner": {
            "type": "object", "required": ["account"], "additionalProperties": false,
            "properties": {
                "account": text(256),
                "verified": { "type": "boolean", "default": false,
                    "description": "Whether the integrator verified the owner's identity" }
            }
        },
        "CreateMeeting": {
            "type": "object", "required": ["mode", "owner"], "additionalProperties": false,
            "properties": {
                "id": { "type": "string", "minLength": 1, "maxLength": 64, "pattern": ID_PATTERN,
                    "nullable": true,
                    "description": "Chosen by the caller; generated when absent or null" },
                "mode": { "type": "string", "enum": ["e2ee", "standard"] },
                "owner": { "$ref": "#/components/schemas/Owner" },
                "passcode": nullable(text(128))
            }
        },
        "Meeting": {
            "type": "object", "required": ["id", "mode", "owner", "locked", "participants"],
            "properties": {
                "id": { "type": "string" },
                "mode": { "type": "string", "enum": ["e2ee", "standard"] },
                "owner": { "$ref": "#/components/schemas/Owner" },
                "locked": { "type": "boolean" },
                "participants": { "type": "integer", "description": "How many are admitted" },
                "node": { "type": "string", "description": "Cluster mode only: the node the meeting is placed on" }
            }
        },
        "MeetingDetail": {
            "allOf": [
                { "$ref": "#/components/schemas/Meeting" },
                { "type": "object", "required": ["roster"], "properties": {
                    "roster": { "type": "array", "items": { "$ref": "#/components/schemas/Participant" } }
                } }
            ]
        },
        "Participant": {
            "type": "object", "required": ["id", "name", "role", "source", "streams"],
            "properties": {
                "id": { "type": "string" },
                "name": { "type": "string" },
                "role": { "type": "string", "enum": ["host", "attendee", "observer"] },
                "source": { "type": "string", "enum": ["api", "dial-in"] },
                "streams": { "type": "array", "items": { "$ref": "#/components/schemas/Stream" } },
                "node": { "type": "string", "description": "Cluster mode only: the node hosting the \
                    leg (streams as that node last published them, within a heartbeat)" }
            }
        },
        "SetLock": {
            "type": "object", "required": ["locked"], "additionalProperties": false,
            "properties": { "locked": { "type": "boolean" } }
        },
        "CreateParticipant": {
            "type": "object", "required": ["name"], "additionalProperties": false,
            "properties": {
                "name": text(256),
                "role": { "type": "string", "enum": ["host", "attendee", "observer"], "default": "attendee" },
                "passcode": { "type": "string", "nullable": true,
                    "description": "Required when the meeting has one" },
                "node": nullable({
                    let mut node = id_schema();
                    node["description"] = json!("Cluster mode only: the node the leg must \
                        go to (refused with no_node_available when it is full or gone); without it the \
                        meeting's node, or the next best one when that is full. Alone: 409 not_clustered");
                    node
                }),
                "srtp_profile": { "type": "string", "nullable": true, "default": "AEAD_AES_256_GCM", "enum": [
                    "AEAD_AES_256_GCM", "AEAD_AES_128_GCM",
                    "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", null] },
                "source": { "type": "string", "enum": ["api", "dial-in"], "default": "api" },
                "client_to_relay": nullable(key.clone()),
                "rtcp_ssrc": nullable(json!({ "type": "integer", "minimum": 0, "maximum": 4_294_967_295_u32,
                    "description": "The SSRC the participant puts in the sender field of its RTCP; \
                        unique on the node (409 duplicate_ssrc otherwise). The relay picks one when absent." })),
                "receive": nullable(receive),
                "transport": { "type": "string", "enum": ["srtp", "webrtc"], "default": "srtp",
                    "description": "srtp: the answer hands out SDES-style keys (media). webrtc: a \
                        browser; the answer hands out webrtc {token, whip, whep} instead and the keys \
                        come from DTLS-SRTP (srtp_profile and client_to_relay are then refused). \
                        Standalone nodes only (cluster mode: 400 invalid_request)." }
            },
            "description": "client_to_relay, when given, is the key for srtp_profile: 44 bytes \
                for AEAD_AES_256_GCM (the default), 28 for AEAD_AES_128_GCM, 30 for the \
                AES_CM profiles.",
            "oneOf": [
                { "properties": {
                    "transport": { "enum": ["srtp"] },
                    "srtp_profile": { "enum": ["AEAD_AES_256_GCM", null] },
                    "client_to_relay": { "pattern": "^[A-Za-z0-9+/]{58}[AEIMQUYcgkosw048]=$" } } },
                { "required": ["srtp_profile"], "properties": {
                    "transport": { "enum": ["srtp"] },
                    "srtp_profile": { "enum": ["AEAD_AES_128_GCM"] },
                    "client_to_relay": { "pattern": "^[A-Za-z0-9+/]{37}[AQgw]==$" } } },
                { "required": ["srtp_profile"], "properties": {
                    "transport": { "enum": ["srtp"] },
                    "srtp_profile": { "enum": ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"] },
                    "client_to_relay": { "pattern": "^[A-Za-z0-9+/]{40}$" } } },
                { "required": ["transport"], "properties": {
                    "transport": { "enum": ["webrtc"] },
                    "srtp_profile": { "enum": [null] },
                    "client_to_relay": { "enum": [null] } } }
            ]
        },
        "Admitted": {
            "type": "object", "required": ["id", "role"],
            "description": "media for transport srtp, webrtc for transport webrtc",
            "properties": {
                "webrtc": { "type": "object", "required": ["token", "whip", "whep"],
                    "description": "A browser's way in: POST an SDP offer (Content-Type: \
                        application/sdp, Authorization: Bearer <token>) to whip to publish (RFC 9725) \
                        or to whep to receive; 201 with the answer and a Location to DELETE (end) or \
                        PATCH (trickle, 204). Refusals: 401 missing_token/invalid_token, 415 \
                        unsupported_media_type, 400 malformed_sdp, 422 unacceptable_offer, 409 \
                        too_many_sessions, 503 webrtc_unavailable. Deleting the participant ends its \
                        sessions at once.",
                    "properties": {
                        "token": { "type": "string", "description": "64 hex digits, this participant's only" },
                        "whip": { "type": "string", "description": "Path on this API's origin" },
                        "whep": { "type": "string", "description": "Path on this API's origin" }
                    } },
                "id": { "type": "string" },
                "role": { "type": "string", "enum": ["host", "attendee", "observer"] },
                "node": { "type": "string", "description": "Cluster mode only: the node hosting the leg" },
                "media": { "type": "object",
                    "required": ["address", "srtp_profile", "client_to_relay", "relay_to_client", "rtcp_ssrc"],
                    "properties": {
                        "address": { "type": "string", "description": "ip:port to send SRTP to" },
                        "srtp_profile": { "type": "string" },
                        "client_to_relay": key,
                        "relay_to_client": key,
                        "rtcp_ssrc": { "type": "integer", "description": "The requested rtcp_ssrc, or the one \
                            the relay chose: the participant must use it as its RTCP sender SSRC. A \
                            receive-only participant latches with its first SRTCP packet carrying it." }
                    } }
            }
        },
        "CreateStream": {
            "type": "object", "required": ["ssrc", "kind", "codec", "payload_type"],
            "additionalProperties": false,
            "properties": {
                "ssrc": { "type": "integer", "minimum": 0, "maximum": 4_294_967_295_u32 },
                "kind": { "type": "string", "enum": ["audio", "video"] },
                "codec": text(64),
                "payload_type": { "type": "integer",
                    "anyOf": [ { "minimum": 0, "maximum": 63 }, { "minimum": 96, "maximum": 127 } ],
                    "description": "64 to 95 are refused: they collide with RTCP (RFC 5761 §4)" }
            }
        },
        "Stream": {
            "type": "object", "required": ["ssrc", "kind", "codec", "payload_type"],
            "description": "A published stream as the relay reports it (CreateStream's fields, \
                and what a view adds, such as highest_srtp_index)",
            "properties": {
                "ssrc": { "type": "integer", "minimum": 0, "maximum": 4_294_967_295_u32 },
                "kind": { "type": "string", "enum": ["audio", "video"] },
                "codec": { "type": "string" },
                "payload_type": { "type": "integer", "minimum": 0, "maximum": 127 }
            }
        },
        "Health": {
            "type": "object", "properties": { "status": { "type": "string", "enum": ["ok"] } }
        },
        "ClusterNodes": {
            "type": "object", "required": ["nodes"],
            "properties": { "nodes": { "type": "array", "items": {
                "type": "object", "required": ["id", "api", "media", "load", "self"],
                "properties": {
                    "id": { "type": "string" },
                    "api": { "type": "string", "description": "host:port of its control API" },
                    "media": { "type": "string", "description": "host:port of its media port" },
                    "self": { "type": "boolean", "description": "whether this is the answering node" },
                    "load": { "type": "object", "properties": {
                        "legs": { "type": "integer" }, "streams": { "type": "integer" },
                        "meetings": { "type": "integer" }, "max_legs": { "type": "integer" },
                        "busy_ppm": { "type": "integer", "description":
                            "how busy its busiest packet worker is, in millionths" },
                        "max_busy_ppm": { "type": "integer", "description":
                            "the busy share past which it takes no new legs, in millionths" }
                    } }
                }
            } } }
        }
    })
}

/// `receive` on admission (its own function: one `json!` this deep would
/// pass the macro's recursion limit).
fn receive_schema() -> Value {
    json!({
        "type": "object", "additionalProperties": false,
        "description": "Standard meetings only (E2EE: e2ee_forbids_transcoding). Video streams this participant cannot take as published reach it as a rendition.",
        "properties": {
            "video": {
                "type": "object", "required": ["codecs"], "additionalProperties": false,
                "nullable": true,
                "properties": {
                    "codecs": { "type": "array", "minItems": 1, "maxItems": 2, "items": {
                        "type": "object", "required": ["name", "payload_type"],
                        "additionalProperties": false,
                        "properties": {
                            "name": { "type": "string", "pattern": "^([Vv][Pp]8|[Hh]264)$",
                                "description": "VP8 or H264, in any case; each at most once" },
                            "payload_type": { "type": "integer", "minimum": 0, "maximum": 127 }
                        }
                    } },
                    "max_height": { "type": "integer", "minimum": 90, "maximum": 4320, "nullable": true },
                    "max_kbps": { "type": "integer", "minimum": 50, "maximum": 50000, "nullable": true }
                }
            }
        }
    })
}
