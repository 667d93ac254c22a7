//! The OpenAPI 3.0 description served at `/v1/openapi.json`, written by
//! hand next to the handlers it describes. Tests check that every path it
//! lists is routed and every error code is in it.

use serde_json::{Value, json};

use super::ApiError;

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

fn param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description,
            "schema": { "type": "string" } })
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
    let meeting_id = param("id", "The meeting id");
    let participant_id = param("pid", "The participant id");
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "sluice control API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Create meetings, admit participants and hand out their SRTP keys. \
                Every error is JSON {\"error\":{\"code\",\"message\"}}. Every path but /healthz \
                needs \"Authorization: Bearer <token>\" when a token is configured (401 \
                unauthorized otherwise). Unknown paths answer 404 not_found, wrong methods \
                405 method_not_allowed, oversized bodies 413 body_too_large, and failures of \
                the relay itself 500 internal."
        },
        "security": [{ "bearer": [] }],
        "paths": {
            "/v1/meetings": {
                "post": {
                    "summary": "Create a meeting",
                    "requestBody": body("CreateMeeting"),
                    "responses": {
                        "201": ok("Created; Location names the meeting", "Meeting"),
                        "400": bad,
                        "401": unauthorized,
                        "403": error("The policy refuses this owner or mode",
                            &["e2ee_requires_verified_owner", "e2ee_disabled"]),
                        "409": error("The id is taken", &["meeting_exists"])
                    }
                }
            },
            "/v1/meetings/{id}": {
                "parameters": [meeting_id],
                "get": {
                    "summary": "A meeting and its roster (never keys)",
                    "responses": {
                        "200": ok("The meeting", "MeetingDetail"),
                        "401": unauthorized,
                        "404": no_meeting
                    }
                },
                "delete": {
                    "summary": "End a meeting; its legs stop being relayed at once",
                    "responses": {
                        "204": { "description": "Ended" },
                        "401": unauthorized,
                        "404": no_meeting
                    }
                }
            },
            "/v1/meetings/{id}/lock": {
                "parameters": [meeting_id],
                "post": {
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
                    "summary": "Admit a participant and hand out its leg's keys",
                    "requestBody": body("CreateParticipant"),
                    "responses": {
                        "201": ok("Admitted; Location names the participant", "Admitted"),
                        "400": error("The body is invalid",
                            &["invalid_request", "invalid_key", "invalid_srtp_profile"]),
                        "401": unauthorized,
                        "403": error("The policy refuses this participant", &[
                            "meeting_locked", "wrong_passcode",
                            "e2ee_forbids_observers", "e2ee_forbids_dial_in"]),
                        "404": no_meeting,
                        "409": error("The meeting is full", &["meeting_full"]),
                        "503": error("The node is full, or (cluster mode) no node has room or \
                            the cluster's Redis is unreachable",
                            &["node_full", "no_node_available", "cluster_unavailable"])
                    }
                }
            },
            "/v1/meetings/{id}/participants/{pid}": {
                "parameters": [meeting_id, participant_id],
                "delete": {
                    "summary": "Remove a participant; its leg and streams stop at once",
                    "responses": {
                        "204": { "description": "Removed" },
                        "401": unauthorized,
                        "404": no_participant
                    }
                }
            },
            "/v1/meetings/{id}/participants/{pid}/streams": {
                "parameters": [meeting_id, participant_id],
                "post": {
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
    })
}

fn schemas() -> Value {
    let key = json!({ "type": "string", "format": "byte",
        "description": "Standard base64 of master key ‖ master salt (SDES style, RFC 4568 §6.1)" });
    json!({
        "Error": {
            "type": "object", "required": ["error"],
            "properties": { "error": { "type": "object", "required": ["code", "message"],
                "properties": {
                    "code": { "type": "string", "enum": ApiError::CODES },
                    "message": { "type": "string" }
                } } }
        },
        "Owner": {
            "type": "object", "required": ["account"], "additionalProperties": false,
            "properties": {
                "account": { "type": "string", "maxLength": 256 },
                "verified": { "type": "boolean", "default": false,
                    "description": "Whether the integrator verified the owner's identity" }
            }
        },
        "CreateMeeting": {
            "type": "object", "required": ["mode", "owner"], "additionalProperties": false,
            "properties": {
                "id": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$",
                    "description": "Chosen by the caller; generated when absent" },
                "mode": { "type": "string", "enum": ["e2ee", "standard"] },
                "owner": { "$ref": "#/components/schemas/Owner" },
                "passcode": { "type": "string", "maxLength": 128 }
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
                "name": { "type": "string", "maxLength": 256 },
                "role": { "type": "string", "enum": ["host", "attendee", "observer"], "default": "attendee" },
                "passcode": { "type": "string", "description": "Required when the meeting has one" },
                "node": { "type": "string", "description": "Cluster mode only: the node the leg must \
                    go to (refused with no_node_available when it is full or gone); without it the \
                    meeting's node, or the next best one when that is full. Alone: not_clustered" },
                "srtp_profile": { "type": "string", "default": "AEAD_AES_256_GCM", "enum": [
                    "AEAD_AES_256_GCM", "AEAD_AES_128_GCM",
                    "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"] },
                "source": { "type": "string", "enum": ["api", "dial-in"], "default": "api" },
                "client_to_relay": key
            }
        },
        "Admitted": {
            "type": "object", "required": ["id", "role", "media"],
            "properties": {
                "id": { "type": "string" },
                "role": { "type": "string", "enum": ["host", "attendee", "observer"] },
                "node": { "type": "string", "description": "Cluster mode only: the node hosting the leg" },
                "media": { "type": "object",
                    "required": ["address", "srtp_profile", "client_to_relay", "relay_to_client"],
                    "properties": {
                        "address": { "type": "string", "description": "ip:port to send SRTP to" },
                        "srtp_profile": { "type": "string" },
                        "client_to_relay": key,
                        "relay_to_client": key
                    } }
            }
        },
        "CreateStream": {
            "type": "object", "required": ["ssrc", "kind", "codec", "payload_type"],
            "additionalProperties": false,
            "properties": {
                "ssrc": { "type": "integer", "minimum": 0, "maximum": 4_294_967_295_u32 },
                "kind": { "type": "string", "enum": ["audio", "video"] },
                "codec": { "type": "string", "maxLength": 64 },
                "payload_type": { "type": "integer", "minimum": 0, "maximum": 127,
                    "description": "64 to 95 are refused: they collide with RTCP (RFC 5761 §4)" }
            }
        },
        "Stream": { "$ref": "#/components/schemas/CreateStream" },
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
                        "meetings": { "type": "integer" }, "max_legs": { "type": "integer" }
                    } }
                }
            } } }
        }
    })
}
