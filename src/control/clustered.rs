//! The control API in cluster mode (DESIGN.md, "Cluster"): the same
//! endpoints, answered from the meetings in Redis ([`MeetingBook`]) so
//! every node answers the same, with each leg created on the node that
//! placement picks for it.
//!
//! A request that must act on another node (a leg placed there, a stream
//! or a removal of a leg hosted there) is forwarded to that node's API
//! with this node's token (the nodes of a rack share one), carrying an
//! explicit `node`, and its answer is passed back unchanged. The policy is
//! decided once: the static rules (`policy::check_admit`) on the node that
//! takes the request, the lock and the limit atomically in Redis (a Lua
//! script) on the node that creates the leg.
//!
//! Redis commands here run on the control thread, each bounded by the
//! link's timeouts; when Redis is away every change answers 503
//! `cluster_unavailable` and forwarding goes on untouched.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};

use super::registry::{NewMeeting, NewParticipant, NewStream};
use super::{ApiError, ControlState, api};
use crate::cluster::{
    ClusterLink, MeetingBook, MeetingRecord, NodeRecord, RosterEntry, SeatRefusal, passcode,
    place_meeting, place_participant,
};
use crate::policy::{self, Admission, MeetingFacts, Refusal};
use crate::srtp::MasterKey;

/// How long a forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

fn meeting_view(record: &MeetingRecord) -> Value {
    json!({
        "id": record.id,
        "mode": record.mode.name(),
        "owner": { "account": record.owner, "verified": record.verified },
        "locked": record.locked,
        "participants": record.participants,
        "node": record.home,
    })
}

fn fresh_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 8];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::Internal("the system random generator failed".to_owned()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `POST /v1/meetings`: placed on the least-loaded live node with room.
pub(crate) fn create_meeting(
    state: &ControlState,
    link: &ClusterLink,
    new: &NewMeeting,
) -> Result<Response, ApiError> {
    let (policy, meetings) = {
        let registry = state.registry();
        (registry.policy(), registry.meeting_count())
    };
    // max_meetings bounds this node's own copies; the cluster's Redis holds
    // the rest (placement spreads them by load).
    policy::check_create(&policy, new.mode, new.owner.verified, meetings)?;
    let nodes = link.live_nodes()?;
    let home = place_meeting(&nodes).map_err(crate::cluster::ClusterError::from)?;
    let passcode_hash =
        match &new.passcode {
            Some(p) => Some(passcode::hash(p, &SystemRandom::new()).ok_or_else(|| {
                ApiError::Internal("the system random generator failed".to_owned())
            })?),
            None => None,
        };
    let given = new.id.is_some();
    let book = MeetingBook::new(link);
    // A generated id that happens to be taken is drawn again.
    for _ in 0..4 {
        let id = match &new.id {
            Some(id) => id.clone(),
            None => fresh_id()?,
        };
        let record = MeetingRecord {
            id: id.clone(),
            mode: new.mode,
            owner: new.owner.account.clone(),
            verified: new.owner.verified,
            passcode_hash: passcode_hash.clone(),
            locked: false,
            home: home.id.clone(),
            participants: 0,
            roster: Default::default(),
        };
        if book.create(&record)? {
            if record.home == link.settings().node_id {
                link.remember(&record);
            }
            let mut response = (StatusCode::CREATED, Json(meeting_view(&record))).into_response();
            if let Ok(location) = format!("/v1/meetings/{id}").parse() {
                response.headers_mut().insert(header::LOCATION, location);
            }
            return Ok(response);
        }
        if given {
            return Err(ApiError::MeetingExists(id));
        }
    }
    Err(ApiError::Internal(
        "no free meeting id after four random draws".to_owned(),
    ))
}

fn record_of(link: &ClusterLink, id: &str) -> Result<MeetingRecord, ApiError> {
    MeetingBook::new(link)
        .get(id)?
        .ok_or_else(|| ApiError::MeetingNotFound(id.to_owned()))
}

/// Gives back the seats of participants whose node stopped heartbeating:
/// they are gone (their clients must rejoin); the record as it is now.
fn forget_the_dead(
    link: &ClusterLink,
    record: MeetingRecord,
    nodes: &[NodeRecord],
) -> Result<MeetingRecord, ApiError> {
    let dead: Vec<&String> = record
        .roster
        .iter()
        .filter(|(_, e)| !nodes.iter().any(|n| n.id == e.node))
        .map(|(pid, _)| pid)
        .collect();
    if dead.is_empty() {
        return Ok(record);
    }
    let book = MeetingBook::new(link);
    for pid in dead {
        book.leave(&record.id, pid)?;
    }
    record_of(link, &record.id)
}

/// `GET /v1/meetings/{id}`: the facts and the roster, where every leg is.
pub(crate) fn show_meeting(link: &ClusterLink, id: &str) -> Result<Response, ApiError> {
    let nodes = link.live_nodes()?;
    let record = forget_the_dead(link, record_of(link, id)?, &nodes)?;
    let streams = MeetingBook::new(link).streams(id)?;
    let mut view = meeting_view(&record);
    view["roster"] = record
        .roster
        .iter()
        .map(|(pid, e)| {
            // Streams as their node last published them (each heartbeat).
            let streams: Vec<Value> = streams
                .iter()
                .filter(|(_, s)| s.participant == *pid)
                .map(|(ssrc, s)| {
                    json!({ "ssrc": ssrc, "kind": s.kind, "codec": s.codec,
                            "payload_type": s.payload_type })
                })
                .collect();
            json!({ "id": pid, "name": e.name, "role": e.role, "source": e.source,
                    "node": e.node, "streams": streams })
        })
        .collect();
    Ok(Json(view).into_response())
}

/// `GET /v1/meetings`: the cluster's meetings from Redis, so every node
/// lists the same, paginated and filtered as the standalone listing.
pub(crate) fn list_meetings(
    link: &ClusterLink,
    mode: Option<crate::relay::MeetingMode>,
    limit: usize,
    after: Option<&str>,
) -> Result<Response, ApiError> {
    let (records, more) =
        MeetingBook::new(link).page(after, limit, |r| mode.is_none_or(|m| r.mode == m))?;
    let meetings: Vec<Value> = records.iter().map(meeting_view).collect();
    let mut page = json!({ "meetings": meetings });
    if more && let Some(last) = records.last() {
        page["next"] = json!(last.id);
    }
    Ok(Json(page).into_response())
}

/// `POST /v1/meetings/{id}/lock`.
pub(crate) fn set_lock(link: &ClusterLink, id: &str, locked: bool) -> Result<Response, ApiError> {
    if !MeetingBook::new(link).set_locked(id, locked)? {
        return Err(ApiError::MeetingNotFound(id.to_owned()));
    }
    let record = record_of(link, id)?;
    link.refresh(&record);
    Ok(Json(meeting_view(&record)).into_response())
}

/// `DELETE /v1/meetings/{id}`: out of Redis first (no node admits into it
/// from then on), then every node hosting a leg drops its copy.
pub(crate) async fn delete_meeting(
    state: &ControlState,
    link: &ClusterLink,
    id: &str,
) -> Result<StatusCode, ApiError> {
    let record = MeetingBook::new(link)
        .delete(id)?
        .ok_or_else(|| ApiError::MeetingNotFound(id.to_owned()))?;
    let me = &link.settings().node_id;
    link.forget(id);
    let mut hosts: Vec<&str> = record.roster.values().map(|e| e.node.as_str()).collect();
    hosts.push(&record.home);
    hosts.sort_unstable();
    hosts.dedup();
    // Our own copy, even without legs (nothing to do if there is none).
    let _ = state.registry().delete_meeting(id);
    let nodes = link.live_nodes().unwrap_or_default();
    for host in hosts.into_iter().filter(|h| h != me) {
        let Some(node) = nodes.iter().find(|n| n.id == host) else {
            continue; // dead: its legs died with it
        };
        let path = format!("/v1/cluster/local/meetings/{id}");
        match forward(state, node, Method::DELETE, &path, None).await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => tracing::warn!(
                node = %host, status = %response.status(),
                "a node refused to drop its copy of deleted meeting {id}"
            ),
            Err(e) => {
                tracing::warn!(node = %host, "could not reach a node to drop meeting {id}: {e:?}");
            }
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/cluster/local/meetings/{id}` (node to node): drops this
/// node's copy of a meeting already gone from Redis.
pub(crate) async fn drop_local_meeting(
    axum::extract::State(state): axum::extract::State<ControlState>,
    super::extract::ApiPath(id): super::extract::ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if state.cluster().is_none() {
        return Err(ApiError::NotClustered);
    }
    if let Some(link) = state.cluster() {
        link.forget(&id);
    }
    let _ = state.registry().delete_meeting(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// A leg created on this node, its seat taken.
#[derive(Debug)]
pub(crate) struct Seated {
    pub(crate) id: String,
    pub(crate) media: SocketAddr,
    pub(crate) rtcp_ssrc: u32,
    pub(crate) client_to_relay: MasterKey,
    pub(crate) relay_to_client: MasterKey,
}

/// The static policy for `new`, then the node its leg goes to; the
/// meeting as it is now (re-homed if its home died), and the limit.
fn decide(
    state: &ControlState,
    link: &ClusterLink,
    meeting_id: &str,
    new: &NewParticipant,
    hint: Option<&str>,
) -> Result<(MeetingRecord, NodeRecord, usize), ApiError> {
    let record = record_of(link, meeting_id)?;
    let policy = state.registry().policy();
    // Mode rules and the lock (capacity is Redis's, when the seat is taken).
    let facts = MeetingFacts {
        mode: record.mode,
        locked: record.locked,
        passcode: None,
        participants: 0,
    };
    let who = Admission {
        role: new.role,
        passcode: new.passcode.as_deref(),
        source: new.source,
        transcoding: new.receive.is_some(),
    };
    policy::check_admit(&policy, &facts, &who, 0)?;
    if let Some(hash) = &record.passcode_hash {
        match &new.passcode {
            Some(given) if passcode::verify(given, hash) => {}
            _ => return Err(Refusal::WrongPasscode.into()),
        }
    }
    let nodes = link.live_nodes()?;
    let mut record = forget_the_dead(link, record, &nodes)?;
    let target = place_participant(&nodes, Some(&record.home), hint)
        .map_err(crate::cluster::ClusterError::from)?
        .clone();
    if !nodes.iter().any(|n| n.id == record.home) {
        // The home died: the meeting moves to where this leg goes.
        MeetingBook::new(link).rehome(&record.id, &record.home, &target.id)?;
        record = record_of(link, meeting_id)?;
    }
    Ok((record, target, policy.max_participants_per_meeting))
}

/// `POST /v1/meetings/{id}/participants`: the static policy here, then
/// the leg on the node placement picks (here, or forwarded there).
pub(crate) async fn add_participant(
    state: &ControlState,
    link: &ClusterLink,
    meeting_id: &str,
    new: NewParticipant,
    hint: Option<String>,
) -> Result<Response, ApiError> {
    let (record, target, max) = decide(state, link, meeting_id, &new, hint.as_deref())?;
    if target.id != link.settings().node_id {
        let mut body = json!({
            "name": new.name,
            "role": new.role.name(),
            "source": new.source.name(),
            "srtp_profile": new.profile.name(),
            "node": target.id,
        });
        if let Some(passcode) = &new.passcode {
            body["passcode"] = json!(passcode);
        }
        if let Some(key) = &new.client_to_relay {
            body["client_to_relay"] = json!(BASE64.encode(key.as_bytes()));
        }
        if let Some(ssrc) = new.rtcp_ssrc {
            body["rtcp_ssrc"] = json!(ssrc);
        }
        if let Some(prefs) = &new.receive {
            body["receive"] = super::api::receive_view(prefs);
        }
        let path = format!("/v1/meetings/{meeting_id}/participants");
        return forward(state, &target, Method::POST, &path, Some(&body)).await;
    }
    let (role, profile) = (new.role, new.profile);
    let seated = seat_here(state, link, &record, &target, new, max)?;
    let body = json!({
        "id": seated.id,
        "role": role.name(),
        "node": target.id,
        "media": {
            "address": seated.media.to_string(),
            "srtp_profile": profile.name(),
            "client_to_relay": BASE64.encode(seated.client_to_relay.as_bytes()),
            "relay_to_client": BASE64.encode(seated.relay_to_client.as_bytes()),
            "rtcp_ssrc": seated.rtcp_ssrc,
        },
    });
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(location) = format!("/v1/meetings/{}/participants/{}", record.id, seated.id).parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Dial-in: admits `new` (a caller's bridge leg) on this node, the node
/// whose SIP port the call reached, whatever node homes the meeting.
pub(crate) fn admit_on_this_node(
    state: &ControlState,
    link: &ClusterLink,
    meeting_id: &str,
    new: NewParticipant,
) -> Result<Seated, ApiError> {
    let me = link.settings().node_id.clone();
    let (record, target, max) = decide(state, link, meeting_id, &new, Some(&me))?;
    seat_here(state, link, &record, &target, new, max)
}

/// Creates the leg on this node and takes its seat in Redis; a refused
/// seat removes the leg again (it never carried media: its keys were not
/// handed out yet).
fn seat_here(
    state: &ControlState,
    link: &ClusterLink,
    record: &MeetingRecord,
    me: &NodeRecord,
    new: NewParticipant,
    max: usize,
) -> Result<Seated, ApiError> {
    let (role, source, name) = (new.role, new.source, new.name.clone());
    link.remember(record);
    let (pid, rtcp_ssrc, client_to_relay, relay_to_client) = {
        let mut registry = state.registry();
        registry.mirror_meeting(&record.id, record.mode, &record.owner, record.verified);
        let participant = registry.admit(
            &record.id,
            NewParticipant {
                passcode: None,
                ..new
            },
        )?;
        (
            participant.id.clone(),
            participant.rtcp_ssrc,
            participant.leg.client_to_relay.clone(),
            participant.leg.relay_to_client.clone(),
        )
    };
    let entry = RosterEntry {
        name,
        role: role.name().to_owned(),
        source: source.name().to_owned(),
        node: me.id.clone(),
    };
    let seat = MeetingBook::new(link).take_seat(&record.id, &pid, &entry, max);
    let refusal = match seat {
        Ok(Ok(())) => None,
        Ok(Err(SeatRefusal::Full)) => Some(Refusal::MeetingFull { limit: max }.into()),
        Ok(Err(SeatRefusal::Locked)) => Some(Refusal::MeetingLocked.into()),
        Ok(Err(SeatRefusal::Missing)) => Some(ApiError::MeetingNotFound(record.id.clone())),
        Err(e) => Some(ApiError::from(e)),
    };
    if let Some(error) = refusal {
        let _ = state.registry().remove_participant(&record.id, &pid);
        return Err(error);
    }
    state.cascade_changed(&record.id);
    Ok(Seated {
        id: pid,
        media: me.media,
        rtcp_ssrc,
        client_to_relay,
        relay_to_client,
    })
}

/// Dial-in: the caller leaves (seat back, leg down); a no-op when gone.
pub(crate) fn leave_here(state: &ControlState, link: &ClusterLink, meeting_id: &str, pid: &str) {
    if let Err(e) = MeetingBook::new(link).leave(meeting_id, pid) {
        tracing::warn!("a caller's seat in {meeting_id} stays taken until its TTL: {e}");
    }
    let _ = state.registry().remove_participant(meeting_id, pid);
    state.cascade_changed(meeting_id);
}

/// Dial-in: what a caller must know before being asked anything.
pub(crate) fn lookup(
    link: &ClusterLink,
    meeting_id: &str,
) -> Result<(crate::relay::MeetingMode, bool), ApiError> {
    let record = record_of(link, meeting_id)?;
    Ok((record.mode, record.passcode_hash.is_some()))
}

/// Where participant `pid` of `meeting_id` is hosted.
fn host_of(link: &ClusterLink, meeting_id: &str, pid: &str) -> Result<String, ApiError> {
    let record = record_of(link, meeting_id)?;
    record
        .roster
        .get(pid)
        .map(|e| e.node.clone())
        .ok_or_else(|| ApiError::ParticipantNotFound(pid.to_owned()))
}

/// `DELETE /v1/meetings/{id}/participants/{pid}`: on the hosting node
/// (forwarded there); a dead host's participant just gives its seat back.
pub(crate) async fn delete_participant(
    state: &ControlState,
    link: &ClusterLink,
    meeting_id: &str,
    pid: &str,
) -> Result<StatusCode, ApiError> {
    let host = host_of(link, meeting_id, pid)?;
    if host != link.settings().node_id {
        let nodes = link.live_nodes()?;
        if let Some(node) = nodes.iter().find(|n| n.id == host) {
            let path = format!("/v1/meetings/{meeting_id}/participants/{pid}");
            let response = forward(state, node, Method::DELETE, &path, None).await?;
            return match response.status() {
                StatusCode::NO_CONTENT => Ok(StatusCode::NO_CONTENT),
                _ => Err(ApiError::Internal(format!(
                    "node {host} answered {} to removing the participant",
                    response.status()
                ))),
            };
        }
    }
    MeetingBook::new(link).leave(meeting_id, pid)?;
    let _ = state.registry().remove_participant(meeting_id, pid);
    state.cascade_changed(meeting_id);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST .../streams` for a participant hosted on another node: forwarded
/// there (`None`: hosted here, publish locally).
pub(crate) async fn stream_elsewhere(
    state: &ControlState,
    link: &ClusterLink,
    meeting_id: &str,
    pid: &str,
    new: &NewStream,
) -> Result<Option<Response>, ApiError> {
    let host = host_of(link, meeting_id, pid)?;
    if host == link.settings().node_id {
        return Ok(None);
    }
    let nodes = link.live_nodes()?;
    let node = nodes.iter().find(|n| n.id == host).ok_or_else(|| {
        ApiError::NoNodeAvailable(format!(
            "node {host} that hosted the participant is gone; the participant must rejoin"
        ))
    })?;
    let body = json!({
        "ssrc": new.ssrc,
        "kind": api::kind_name(new.kind),
        "codec": new.codec,
        "payload_type": new.payload_type,
    });
    let path = format!("/v1/meetings/{meeting_id}/participants/{pid}/streams");
    forward(state, node, Method::POST, &path, Some(&body))
        .await
        .map(Some)
}

/// Sends one request to `node`'s API and hands its answer back as is.
async fn forward(
    state: &ControlState,
    node: &NodeRecord,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Response, ApiError> {
    let unreachable =
        |why: String| ApiError::NoNodeAvailable(format!("node {} at {} {why}", node.id, node.api));
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", node.api))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = state.token() {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Body::from(body.map(Value::to_string).unwrap_or_default()))
        .map_err(|e| ApiError::Internal(format!("cannot build a forwarded request: {e}")))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let answer = tokio::time::timeout(FORWARD_TIMEOUT, async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let (parts, incoming) = response.into_parts();
        let bytes = incoming
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((parts, bytes))
    })
    .await
    .map_err(|_| unreachable(format!("did not answer within {FORWARD_TIMEOUT:?}")))?
    .map_err(|e| unreachable(format!("could not be reached ({e})")))?;
    let (parts, bytes) = answer;
    // The other node's error was counted there; mark its code so `finish`
    // counts it here too and leaves the body alone.
    let code = (!parts.status.is_success())
        .then(|| serde_json::from_slice::<Value>(&bytes).ok())
        .flatten()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .and_then(|c| ApiError::CODES.iter().find(|k| **k == c).copied());
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = parts.status;
    for name in [header::CONTENT_TYPE, header::LOCATION] {
        if let Some(value) = parts.headers.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    if let Some(code) = code {
        response
            .extensions_mut()
            .insert(super::error::ErrorCode(code));
    }
    Ok(response)
}
