//! Router-level tests (no sockets: `tower::ServiceExt::oneshot`), checking
//! both the HTTP answers and the routing snapshot they publish; and one
//! test of the real server over TCP.

use std::io::{Read, Write};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::metrics::MetricsHub;
use crate::policy::E2eePolicy;
use crate::relay::{LegId, MediaKind, MeetingIdx, MeetingMode, empty_cell};
use crate::srtp::SrtpProfile;

const MEDIA: &str = "192.0.2.10:40000";

struct Harness {
    app: Router,
    cell: SnapshotCell,
    metrics: Arc<MetricsHub>,
    token: Option<&'static str>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<none>")
    }

    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("<none>")
    }

    #[track_caller]
    fn expect(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status.as_u16(), self.code()),
            (status, code),
            "{}",
            self.text
        );
    }
}

fn policy() -> Policy {
    Policy {
        e2ee: E2eePolicy::VerifiedOnly,
        max_participants_per_meeting: 4,
        max_participants_per_node: 6,
        max_meetings: 1000,
        ..Policy::default()
    }
}

fn harness_with(policy: Policy, token: Option<&'static str>) -> Harness {
    let cell = empty_cell();
    let opts = ControlOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_owned),
        media_address: MEDIA.parse().unwrap(),
        policy,
        limits: Default::default(),
        cluster: None,
        audio_level_extension: 1,
        background: crate::net::priority::Background::Normal,
    };
    let metrics = Arc::new(MetricsHub::new("ring"));
    let app = router(ControlState::new(
        &opts,
        Arc::clone(&cell),
        Arc::clone(&metrics),
    ));
    Harness {
        app,
        cell,
        metrics,
        token,
    }
}

fn harness() -> Harness {
    harness_with(policy(), None)
}

impl Harness {
    async fn raw(
        &self,
        method: Method,
        uri: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
        token: Option<&str>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            // Every error, whoever produced it, is the one JSON shape.
            assert!(
                body["error"]["code"].is_string() && body["error"]["message"].is_string(),
                "{status} is not a JSON error: {text:?}"
            );
            assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        }
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Answer {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.raw(method, uri, bytes, Some("application/json"), self.token)
            .await
    }

    async fn post(&self, uri: &str, body: Value) -> Answer {
        self.call(Method::POST, uri, Some(body)).await
    }

    async fn get(&self, uri: &str) -> Answer {
        self.call(Method::GET, uri, None).await
    }

    async fn delete(&self, uri: &str) -> Answer {
        self.call(Method::DELETE, uri, None).await
    }

    async fn meeting(&self, id: &str, mode: &str) -> Answer {
        self.post(
            "/v1/meetings",
            json!({"id": id, "mode": mode, "owner": {"account": "alice", "verified": true}}),
        )
        .await
    }

    async fn join(&self, meeting: &str, body: Value) -> Answer {
        self.post(&format!("/v1/meetings/{meeting}/participants"), body)
            .await
    }

    /// Admits an attendee and returns its id.
    async fn attendee(&self, meeting: &str) -> String {
        let answer = self.join(meeting, json!({"name": "bob"})).await;
        answer.expect(201, "<none>");
        answer.body["id"].as_str().unwrap().to_owned()
    }

    async fn stream(&self, meeting: &str, pid: &str, ssrc: u32) -> Answer {
        self.post(
            &format!("/v1/meetings/{meeting}/participants/{pid}/streams"),
            json!({"ssrc": ssrc, "kind": "audio", "codec": "opus", "payload_type": 111}),
        )
        .await
    }

    fn snapshot(&self) -> Arc<crate::relay::RoutingSnapshot> {
        self.cell.load_full()
    }
}

#[tokio::test]
async fn meetings_are_created_in_both_modes_and_published() {
    let h = harness();
    assert_eq!(h.snapshot().generation, 0);
    let e2ee = h.meeting("board", "e2ee").await;
    e2ee.expect(201, "<none>");
    assert_eq!(
        e2ee.body,
        json!({"id": "board", "mode": "e2ee", "owner": {"account": "alice", "verified": true},
               "locked": false, "participants": 0})
    );
    assert_eq!(e2ee.headers[header::LOCATION], "/v1/meetings/board");
    let standard = h
        .post(
            "/v1/meetings",
            json!({"mode": "standard", "owner": {"account": "carol"}}),
        )
        .await;
    standard.expect(201, "<none>");
    let id = standard.body["id"].as_str().unwrap();
    assert_eq!(id.len(), 16, "generated ids are 16 hex digits");
    assert_eq!(standard.body["owner"]["verified"], false);
    assert_eq!(standard.body["mode"], "standard");

    let snapshot = h.snapshot();
    assert_eq!(snapshot.generation, 2);
    assert_eq!(snapshot.meetings.len(), 2);
    assert!(snapshot.meetings.values().all(|m| m.is_empty()));
}

#[tokio::test]
async fn admission_hands_out_keys_the_snapshot_uses() {
    let h = harness();
    h.meeting("m", "standard").await;
    let mine: Vec<u8> = (0..44).collect();
    let a = h
        .join(
            "m",
            json!({"name": "ann", "role": "host", "client_to_relay": BASE64.encode(&mine)}),
        )
        .await;
    a.expect(201, "<none>");
    assert_eq!(a.body["role"], "host");
    let media = &a.body["media"];
    assert_eq!(media["address"], MEDIA);
    assert_eq!(media["srtp_profile"], "AEAD_AES_256_GCM");
    assert_eq!(media["client_to_relay"], BASE64.encode(&mine));
    let b = h
        .join(
            "m",
            json!({"name": "ben", "srtp_profile": "AES_CM_128_HMAC_SHA1_80"}),
        )
        .await;
    b.expect(201, "<none>");
    assert_eq!(b.body["role"], "attendee");

    let snapshot = h.snapshot();
    let legs = &snapshot.meetings[&MeetingIdx(0)];
    assert_eq!(**legs, vec![LegId(0), LegId(1)], "admission order");
    for (answer, leg, len) in [(&a, LegId(0), 44), (&b, LegId(1), 30)] {
        let route = &snapshot.legs[&leg];
        assert_eq!(route.meeting, MeetingIdx(0));
        assert_eq!(route.mode, MeetingMode::Standard);
        let media = &answer.body["media"];
        for (key, field) in [
            (&route.client_to_relay, "client_to_relay"),
            (&route.relay_to_client, "relay_to_client"),
        ] {
            let decoded = BASE64.decode(media[field].as_str().unwrap()).unwrap();
            assert_eq!(decoded.len(), len);
            assert_eq!(key.as_bytes(), &decoded[..], "{field}");
        }
        assert_ne!(media["client_to_relay"], media["relay_to_client"]);
    }
    assert_eq!(
        snapshot.legs[&LegId(1)].client_to_relay.profile(),
        SrtpProfile::AesCm128HmacSha1_80
    );
    // The roster shows people, never keys.
    let got = h.get("/v1/meetings/m").await;
    got.expect(200, "<none>");
    assert_eq!(got.body["participants"], 2);
    assert_eq!(got.body["roster"][0]["name"], "ann");
    assert_eq!(got.body["roster"][1]["role"], "attendee");
    assert_eq!(got.body["roster"][1]["source"], "api");
    for answer in [&a, &b] {
        for field in ["client_to_relay", "relay_to_client"] {
            let key = answer.body["media"][field].as_str().unwrap();
            assert!(!got.text.contains(key), "GET leaks {field}");
        }
    }
}

#[tokio::test]
async fn streams_are_published_and_ssrcs_are_unique_per_node() {
    let h = harness();
    h.meeting("m1", "e2ee").await;
    h.meeting("m2", "standard").await;
    let p = h.attendee("m1").await;
    let q = h.attendee("m2").await;
    let s = h.stream("m1", &p, 0xdead_beef).await;
    s.expect(201, "<none>");
    assert_eq!(
        s.body,
        json!({"ssrc": 0xdead_beef_u32, "kind": "audio", "codec": "opus", "payload_type": 111})
    );
    let video = h
        .post(
            &format!("/v1/meetings/m1/participants/{p}/streams"),
            json!({"ssrc": 7, "kind": "video", "codec": "VP8", "payload_type": 96}),
        )
        .await;
    video.expect(201, "<none>");
    let snapshot = h.snapshot();
    let route = &snapshot.streams[&0xdead_beef];
    assert_eq!(
        (route.leg, route.kind, route.payload_type),
        (LegId(0), MediaKind::Audio, 111)
    );
    assert_eq!(snapshot.streams[&7].kind, MediaKind::Video);
    // The same SSRC from another participant of another meeting: refused.
    h.stream("m2", &q, 0xdead_beef)
        .await
        .expect(409, "duplicate_ssrc");
    h.stream("m1", &p, 7).await.expect(409, "duplicate_ssrc");
    let got = h.get("/v1/meetings/m1").await;
    assert_eq!(got.body["roster"][0]["streams"][1]["codec"], "VP8");
}

/// `rtcp_ssrc` (DESIGN.md, "Control API"): echoed when asked for, chosen
/// by the relay otherwise, published for one-lookup latching, and unique
/// on the node against streams and other legs' RTCP SSRCs.
#[tokio::test]
async fn rtcp_ssrc_is_echoed_or_assigned_and_unique_per_node() {
    let h = harness();
    h.meeting("m1", "standard").await;
    h.meeting("m2", "standard").await;
    let asked = h
        .join(
            "m1",
            json!({"name": "viewer", "rtcp_ssrc": 0x5200_0001_u32}),
        )
        .await;
    asked.expect(201, "<none>");
    assert_eq!(asked.body["media"]["rtcp_ssrc"], 0x5200_0001_u32);
    let chosen = h.join("m1", json!({"name": "other"})).await;
    chosen.expect(201, "<none>");
    let chosen_ssrc = chosen.body["media"]["rtcp_ssrc"].as_u64().unwrap() as u32;
    assert_ne!(chosen_ssrc, 0);
    assert_ne!(chosen_ssrc, 0x5200_0001);
    let snapshot = h.snapshot();
    assert_eq!(snapshot.rtcp_ssrcs[&0x5200_0001], LegId(0));
    assert_eq!(snapshot.rtcp_ssrcs[&chosen_ssrc], LegId(1));
    assert_eq!(snapshot.rtcp_sender(0x5200_0001), Some(LegId(0)));

    // Another leg may neither report nor publish under it, in any meeting.
    h.join(
        "m2",
        json!({"name": "copycat", "rtcp_ssrc": 0x5200_0001_u32}),
    )
    .await
    .expect(409, "duplicate_ssrc");
    let q = h.attendee("m2").await;
    h.stream("m2", &q, 0x5200_0001)
        .await
        .expect(409, "duplicate_ssrc");
    // Nor report under a published stream's SSRC...
    h.stream("m2", &q, 77).await.expect(201, "<none>");
    let clash = h.join("m1", json!({"name": "x", "rtcp_ssrc": 77})).await;
    clash.expect(409, "duplicate_ssrc");
    assert!(clash.message().contains("77"), "{}", clash.message());
    // ...but a leg may publish under its own RTCP SSRC.
    let p = asked.body["id"].as_str().unwrap().to_owned();
    h.stream("m1", &p, 0x5200_0001).await.expect(201, "<none>");
    // Bad values are refused with the field named.
    let bad = h.join("m1", json!({"name": "y", "rtcp_ssrc": -1})).await;
    bad.expect(400, "invalid_request");
    assert!(bad.message().contains("rtcp_ssrc"), "{}", bad.message());

    // A departed participant's SSRC is free again and leaves the snapshot.
    h.delete(&format!("/v1/meetings/m1/participants/{p}"))
        .await
        .expect(204, "<none>");
    assert!(!h.snapshot().rtcp_ssrcs.contains_key(&0x5200_0001));
    h.join("m2", json!({"name": "again", "rtcp_ssrc": 0x5200_0001_u32}))
        .await
        .expect(201, "<none>");
}

/// Load shedding: above `max_worker_busy` on its busiest worker the node
/// refuses new participants with 503 `node_overloaded` and Retry-After;
/// a lasting obstacle still wins; below the limit admission works again.
#[tokio::test]
async fn an_overloaded_node_sheds_new_participants() {
    let h = harness();
    h.meeting("m", "standard").await;
    let quiet = h.metrics.add_worker();
    let busy = h.metrics.add_worker();
    quiet.set_busy(0.10);
    busy.set_busy(0.84);
    h.attendee("m").await;
    busy.set_busy(0.97);
    let refused = h.join("m", json!({"name": "late"})).await;
    refused.expect(503, "node_overloaded");
    assert_eq!(refused.headers[header::RETRY_AFTER], "5");
    assert!(refused.message().contains("97%"), "{}", refused.message());
    assert!(refused.message().contains("85%"), "{}", refused.message());
    // Those already in are untouched: nothing left the snapshot.
    assert_eq!(h.snapshot().legs.len(), 1);
    // A lasting obstacle is the better answer.
    h.post("/v1/meetings/m/lock", json!({"locked": true}))
        .await
        .expect(200, "<none>");
    h.join("m", json!({"name": "late"}))
        .await
        .expect(403, "meeting_locked");
    h.post("/v1/meetings/m/lock", json!({"locked": false}))
        .await
        .expect(200, "<none>");
    // The refusal is counted like any other.
    let text = h.get("/metrics").await.text;
    assert!(
        text.contains("sluice_api_refusals_total{code=\"node_overloaded\"} 1"),
        "{text}"
    );
    busy.set_busy(0.5);
    h.attendee("m").await;
}

#[tokio::test]
async fn live_state_survives_republication() {
    let h = harness();
    h.meeting("m", "standard").await;
    let p = h.attendee("m").await;
    h.stream("m", &p, 1).await;
    let before = h.snapshot();
    let leg = Arc::clone(&before.legs[&LegId(0)]);
    let stream = Arc::clone(&before.streams[&1]);
    // A worker latches the leg and advances counters on the old snapshot.
    leg.latch.set("198.51.100.1:5000".parse().unwrap());
    leg.take_srtcp_index();
    stream
        .highest_index
        .store(42, std::sync::atomic::Ordering::Relaxed);

    h.meeting("other", "standard").await;
    h.attendee("m").await;
    h.post("/v1/meetings/m/lock", json!({"locked": true})).await;
    let after = h.snapshot();
    assert!(after.generation > before.generation);
    assert_eq!(
        after.generation,
        before.generation + 2,
        "one per republication"
    );
    let carried = &after.legs[&LegId(0)];
    assert!(Arc::ptr_eq(carried, &leg));
    assert!(Arc::ptr_eq(&carried.latch, &leg.latch));
    assert!(Arc::ptr_eq(
        &carried.next_srtcp_index,
        &leg.next_srtcp_index
    ));
    assert!(Arc::ptr_eq(
        &carried.highest_srtcp_index,
        &leg.highest_srtcp_index
    ));
    assert!(Arc::ptr_eq(&after.streams[&1], &stream));
    assert!(Arc::ptr_eq(
        &after.streams[&1].highest_index,
        &stream.highest_index
    ));
    assert_eq!(
        carried.latch.get(),
        Some("198.51.100.1:5000".parse().unwrap())
    );
    assert_eq!(carried.take_srtcp_index(), 1);
}

#[tokio::test]
async fn deleting_stops_legs_and_streams_at_once() {
    let h = harness();
    h.meeting("m", "standard").await;
    let p = h.attendee("m").await;
    let q = h.attendee("m").await;
    h.stream("m", &p, 10).await;
    h.stream("m", &q, 11).await;
    let generation = h.snapshot().generation;

    assert_eq!(
        h.delete(&format!("/v1/meetings/m/participants/{p}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let snapshot = h.snapshot();
    assert_eq!(snapshot.generation, generation + 1);
    assert!(!snapshot.legs.contains_key(&LegId(0)));
    assert!(!snapshot.streams.contains_key(&10));
    assert_eq!(*snapshot.meetings[&MeetingIdx(0)], vec![LegId(1)]);
    h.delete(&format!("/v1/meetings/m/participants/{p}"))
        .await
        .expect(404, "participant_not_found");
    // The SSRC is free again.
    h.stream("m", &q, 10).await.expect(201, "<none>");

    assert_eq!(
        h.delete("/v1/meetings/m").await.status,
        StatusCode::NO_CONTENT
    );
    let snapshot = h.snapshot();
    assert!(snapshot.legs.is_empty() && snapshot.streams.is_empty());
    assert!(snapshot.meetings.is_empty());
    h.get("/v1/meetings/m")
        .await
        .expect(404, "meeting_not_found");
    h.delete("/v1/meetings/m")
        .await
        .expect(404, "meeting_not_found");
    // The id can be used again; SSRCs of the old meeting are free.
    h.meeting("m", "standard").await.expect(201, "<none>");
    let r = h.attendee("m").await;
    h.stream("m", &r, 11).await.expect(201, "<none>");
}

#[tokio::test]
async fn the_lock_refuses_admission_until_lifted() {
    let h = harness();
    h.meeting("m", "standard").await;
    let locked = h.post("/v1/meetings/m/lock", json!({"locked": true})).await;
    locked.expect(200, "<none>");
    assert_eq!(locked.body["locked"], true);
    let refused = h.join("m", json!({"name": "late", "role": "host"})).await;
    refused.expect(403, "meeting_locked");
    assert!(h.snapshot().legs.is_empty());
    h.post("/v1/meetings/m/lock", json!({"locked": false}))
        .await
        .expect(200, "<none>");
    h.attendee("m").await;
    assert_eq!(h.get("/v1/meetings/m").await.body["locked"], false);
    h.post("/v1/meetings/x/lock", json!({"locked": true}))
        .await
        .expect(404, "meeting_not_found");
}

#[tokio::test]
async fn policy_refusals_have_their_codes_and_statuses() {
    let h = harness();
    let unverified = json!({"mode": "e2ee", "owner": {"account": "eve", "verified": false}});
    h.post("/v1/meetings", unverified)
        .await
        .expect(403, "e2ee_requires_verified_owner");
    let disabled = harness_with(
        Policy {
            e2ee: E2eePolicy::Disabled,
            ..policy()
        },
        None,
    );
    disabled
        .meeting("x", "e2ee")
        .await
        .expect(403, "e2ee_disabled");
    assert!(disabled.snapshot().meetings.is_empty());

    h.meeting("e", "e2ee").await;
    h.join("e", json!({"name": "o", "role": "observer"}))
        .await
        .expect(403, "e2ee_forbids_observers");
    h.join("e", json!({"name": "phone", "source": "dial-in"}))
        .await
        .expect(403, "e2ee_forbids_dial_in");

    h.post(
        "/v1/meetings",
        json!({"id": "p", "mode": "standard", "owner": {"account": "a"}, "passcode": "4711"}),
    )
    .await
    .expect(201, "<none>");
    h.join("p", json!({"name": "n"}))
        .await
        .expect(403, "wrong_passcode");
    h.join("p", json!({"name": "n", "passcode": "4712"}))
        .await
        .expect(403, "wrong_passcode");
    h.join(
        "p",
        json!({"name": "n", "passcode": "4711", "source": "dial-in"}),
    )
    .await
    .expect(201, "<none>");
    h.join(
        "p",
        json!({"name": "o", "passcode": "4711", "role": "observer"}),
    )
    .await
    .expect(201, "<none>");

    // Four per meeting, six per node.
    h.meeting("full", "standard").await;
    for _ in 0..4 {
        h.attendee("full").await;
    }
    let full = h.join("full", json!({"name": "fifth"})).await;
    full.expect(409, "meeting_full");
    assert!(full.message().contains('4'), "{}", full.message());
    h.join("e", json!({"name": "x"}))
        .await
        .expect(503, "node_full");
    assert_eq!(h.snapshot().legs.len(), 6);
}

#[tokio::test]
async fn bad_input_is_a_json_error_naming_the_field() {
    let h = harness();
    h.meeting("m", "standard").await;
    let p = h.attendee("m").await;

    let raw = |body: &'static str| {
        h.raw(
            Method::POST,
            "/v1/meetings",
            body.as_bytes().to_vec(),
            Some("application/json"),
            None,
        )
    };
    let syntax = raw("{\"mode\": ").await;
    syntax.expect(400, "invalid_request");
    assert!(
        syntax.message().contains("not valid JSON"),
        "{}",
        syntax.text
    );
    let unknown = raw(r#"{"mode":"e2ee","owner":{"account":"a"},"colour":"red"}"#).await;
    unknown.expect(400, "invalid_request");
    assert!(unknown.message().contains("colour"), "{}", unknown.text);
    let wrong_type = raw(r#"{"mode":"e2ee","owner":{"account":"a","verified":"yes"}}"#).await;
    wrong_type.expect(400, "invalid_request");
    assert!(
        wrong_type.message().contains("owner.verified"),
        "{}",
        wrong_type.text
    );
    let bad_mode = raw(r#"{"mode":"secret","owner":{"account":"a"}}"#).await;
    bad_mode.expect(400, "invalid_request");
    assert!(bad_mode.message().contains("mode"), "{}", bad_mode.text);
    let missing = raw(r#"{"mode":"standard"}"#).await;
    assert!(missing.message().contains("owner"), "{}", missing.text);
    let no_type = h
        .raw(Method::POST, "/v1/meetings", b"{}".to_vec(), None, None)
        .await;
    no_type.expect(400, "invalid_request");
    assert!(no_type.message().contains("Content-Type"));
    let bad_id = h
        .post(
            "/v1/meetings",
            json!({"id": "a/b", "mode": "standard", "owner": {"account": "a"}}),
        )
        .await;
    bad_id.expect(400, "invalid_request");
    assert!(bad_id.message().starts_with("id "));
    h.post(
        "/v1/meetings",
        json!({"mode": "standard", "owner": {"account": " "}}),
    )
    .await
    .expect(400, "invalid_request");
    h.meeting("m", "e2ee").await.expect(409, "meeting_exists");

    // Participants: keys, profiles, names.
    let bad_b64 = h
        .join("m", json!({"name": "n", "client_to_relay": "@@@"}))
        .await;
    bad_b64.expect(400, "invalid_key");
    assert!(bad_b64.message().contains("client_to_relay"));
    let short = BASE64.encode([0u8; 30]);
    let wrong_len = h
        .join("m", json!({"name": "n", "client_to_relay": short}))
        .await;
    wrong_len.expect(400, "invalid_key");
    assert!(
        wrong_len.message().contains("44 bytes"),
        "{}",
        wrong_len.text
    );
    let profile = h
        .join("m", json!({"name": "n", "srtp_profile": "NULL_CIPHER"}))
        .await;
    profile.expect(400, "invalid_srtp_profile");
    assert!(profile.message().contains("NULL_CIPHER"));
    h.join("m", json!({"name": "n", "role": "king"}))
        .await
        .expect(400, "invalid_request");
    h.join("m", json!({"name": "n", "source": "pigeon"}))
        .await
        .expect(400, "invalid_request");
    h.join("m", json!({"role": "host"}))
        .await
        .expect(400, "invalid_request");
    h.join("nope", json!({"name": "n"}))
        .await
        .expect(404, "meeting_not_found");

    // Streams.
    let streams = format!("/v1/meetings/m/participants/{p}/streams");
    let big = h
        .post(
            &streams,
            json!({"ssrc": 4_294_967_296_u64, "kind": "audio", "codec": "opus", "payload_type": 111}),
        )
        .await;
    big.expect(400, "invalid_request");
    assert!(big.message().contains("ssrc"), "{}", big.text);
    for pt in [72, 128] {
        h.post(
            &streams,
            json!({"ssrc": 1, "kind": "audio", "codec": "opus", "payload_type": pt}),
        )
        .await
        .expect(400, "invalid_request");
    }
    h.post(
        &streams,
        json!({"ssrc": 1, "kind": "smell", "codec": "opus", "payload_type": 111}),
    )
    .await
    .expect(400, "invalid_request");
    h.stream("m", "ghost", 1)
        .await
        .expect(404, "participant_not_found");
    h.stream("nope", &p, 1)
        .await
        .expect(404, "meeting_not_found");
    h.post("/v1/meetings/m/lock", json!({"locked": "yes"}))
        .await
        .expect(400, "invalid_request");

    // Routing.
    h.get("/v2/meetings").await.expect(404, "not_found");
    h.get("/").await.expect(404, "not_found");
    let wrong = h.call(Method::PUT, "/v1/meetings/m", None).await;
    wrong.expect(405, "method_not_allowed");
    assert!(wrong.headers.contains_key(header::ALLOW));
    h.call(Method::DELETE, "/v1/meetings", None)
        .await
        .expect(405, "method_not_allowed");
    h.call(Method::POST, "/healthz", None)
        .await
        .expect(405, "method_not_allowed");

    // Too large a body.
    let huge = vec![b' '; 3 << 20];
    h.raw(
        Method::POST,
        "/v1/meetings",
        huge,
        Some("application/json"),
        None,
    )
    .await
    .expect(413, "body_too_large");

    // Nothing above changed the routing beyond the one participant.
    assert_eq!(h.snapshot().legs.len(), 1);
}

#[tokio::test]
async fn the_token_guards_everything_but_healthz() {
    let h = harness_with(policy(), Some("s3cret"));
    let no_token = |method: Method, uri: &'static str| {
        h.raw(method, uri, Vec::new(), Some("application/json"), None)
    };
    let missing = no_token(Method::GET, "/v1/meetings/m").await;
    missing.expect(401, "unauthorized");
    assert_eq!(missing.headers[header::WWW_AUTHENTICATE], "Bearer");
    no_token(Method::GET, "/metrics")
        .await
        .expect(401, "unauthorized");
    no_token(Method::GET, "/v1/openapi.json")
        .await
        .expect(401, "unauthorized");
    no_token(Method::GET, "/nowhere")
        .await
        .expect(401, "unauthorized");
    let wrong = h
        .raw(
            Method::POST,
            "/v1/meetings",
            b"{}".to_vec(),
            Some("application/json"),
            Some("s3cre"),
        )
        .await;
    wrong.expect(401, "unauthorized");
    assert_eq!(
        no_token(Method::GET, "/healthz").await.status,
        StatusCode::OK
    );

    h.meeting("m", "standard").await.expect(201, "<none>");
    let lower = Request::builder()
        .uri("/v1/meetings/m")
        .header(header::AUTHORIZATION, "bearer s3cret")
        .body(Body::empty())
        .unwrap();
    let response = h.app.clone().oneshot(lower).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let basic = Request::builder()
        .uri("/v1/meetings/m")
        .header(header::AUTHORIZATION, "Basic czNjcmV0")
        .body(Body::empty())
        .unwrap();
    let response = h.app.clone().oneshot(basic).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn health_and_metrics_report_the_registry_and_refusals() {
    let h = harness();
    let health = h.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, json!({"status": "ok"}));

    h.meeting("e", "e2ee").await;
    h.meeting("s", "standard").await;
    let p = h.attendee("e").await;
    h.attendee("s").await;
    h.attendee("s").await;
    h.stream("e", &p, 5).await;
    h.join("e", json!({"name": "o", "role": "observer"})).await;
    h.join("e", json!({"name": "o", "role": "observer"})).await;
    h.get("/v1/meetings/none").await;

    let metrics = h.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert_eq!(
        metrics.headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4"
    );
    for line in [
        "sluice_meetings{mode=\"e2ee\"} 1",
        "sluice_meetings{mode=\"standard\"} 1",
        "sluice_legs{mode=\"e2ee\"} 1",
        "sluice_legs{mode=\"standard\"} 2",
        "sluice_streams{mode=\"e2ee\"} 1",
        "sluice_streams{mode=\"standard\"} 0",
        "sluice_api_refusals_total{code=\"e2ee_forbids_observers\"} 2",
        "sluice_api_refusals_total{code=\"meeting_not_found\"} 1",
    ] {
        assert!(metrics.text.contains(line), "missing {line:?}");
    }
}

#[tokio::test]
async fn openapi_describes_every_route_and_code() {
    let h = harness();
    let doc = h.get("/v1/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"], "3.0.3");
    let paths = doc.body["paths"].as_object().unwrap();
    let mut listed: Vec<&str> = paths.keys().map(String::as_str).collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            "/healthz",
            "/metrics",
            "/v1/cluster/local/meetings/{id}",
            "/v1/cluster/nodes",
            "/v1/meetings",
            "/v1/meetings/{id}",
            "/v1/meetings/{id}/calls/{cid}",
            "/v1/meetings/{id}/dial",
            "/v1/meetings/{id}/lock",
            "/v1/meetings/{id}/participants",
            "/v1/meetings/{id}/participants/{pid}",
            "/v1/meetings/{id}/participants/{pid}/streams",
            "/v1/meetings/{id}/participants/{pid}/webrtc/{sid}",
            "/v1/openapi.json",
        ]
    );
    let mut operations = 0;
    for (path, item) in paths {
        let uri = path
            .replace("{id}", "x")
            .replace("{pid}", "y")
            .replace("{cid}", "z");
        for (method, _) in item.as_object().unwrap() {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue; // "parameters"
            }
            let method: Method = method.to_uppercase().parse().unwrap();
            operations += 1;
            let answer = h.call(method.clone(), &uri, Some(json!({}))).await;
            assert!(
                answer.code() != "not_found" && answer.code() != "method_not_allowed",
                "{method} {path} is documented but not routed: {}",
                answer.text
            );
        }
    }
    assert_eq!(operations, 18);
    for code in ApiError::CODES {
        assert!(
            doc.text.contains(&format!("\"{code}\"")),
            "{code} undocumented"
        );
    }
}

#[test]
fn the_server_answers_over_tcp_and_shuts_down() {
    let opts = ControlOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: Some("t".to_owned()),
        media_address: MEDIA.parse().unwrap(),
        policy: policy(),
        limits: Default::default(),
        cluster: None,
        audio_level_extension: 1,
        background: crate::net::priority::Background::Normal,
    };
    let server =
        ControlServer::start(opts, empty_cell(), Arc::new(MetricsHub::new("ring"))).unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("{\"status\":\"ok\"}"), "{response}");

    // An idle keep-alive connection does not hold the shutdown up.
    let _idle = std::net::TcpStream::connect(addr).unwrap();
    let started = std::time::Instant::now();
    server.shutdown();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening"
    );
}

#[tokio::test]
async fn the_dial_in_desk_admits_through_the_policy_and_publishes_the_callers_stream() {
    let cell = empty_cell();
    let opts = ControlOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: None,
        media_address: MEDIA.parse().unwrap(),
        policy: policy(),
        limits: Default::default(),
        cluster: None,
        audio_level_extension: 1,
        background: crate::net::priority::Background::Normal,
    };
    let metrics = Arc::new(MetricsHub::new("ring"));
    let state = ControlState::new(&opts, Arc::clone(&cell), Arc::clone(&metrics));
    let h = Harness {
        app: router(state.clone()),
        cell: Arc::clone(&cell),
        metrics: Arc::clone(&metrics),
        token: None,
    };
    let desk = MeetingDesk::new(state);
    h.post(
        "/v1/meetings",
        json!({"id": "4242", "mode": "standard", "owner": {"account": "a", "verified": false}, "passcode": "99"}),
    )
    .await
    .expect(201, "<none>");
    h.post(
        "/v1/meetings",
        json!({"id": "7777", "mode": "e2ee", "owner": {"account": "a", "verified": true}}),
    )
    .await
    .expect(201, "<none>");

    assert!(matches!(
        desk.lookup("nope"),
        Err(DeskError::MeetingNotFound(_))
    ));
    let standard = desk.lookup("4242").unwrap();
    assert_eq!(
        (standard.mode, standard.needs_passcode),
        (MeetingMode::Standard, true)
    );
    assert_eq!(desk.lookup("7777").unwrap().mode, MeetingMode::E2ee);

    let refused = desk.admit_caller("7777", "phone", None, 5).unwrap_err();
    assert!(matches!(
        refused,
        DeskError::Refused(crate::policy::Refusal::E2eeForbidsDialIn)
    ));
    let refused = desk
        .admit_caller("4242", "phone", Some("98"), 5)
        .unwrap_err();
    assert!(matches!(
        refused,
        DeskError::Refused(crate::policy::Refusal::WrongPasscode)
    ));
    assert!(cell.load().streams.is_empty(), "refusals publish nothing");

    let leg = desk.admit_caller("4242", "phone", Some("99"), 5).unwrap();
    assert_eq!(leg.media_address, MEDIA.parse().unwrap());
    assert_eq!(leg.client_to_relay.profile(), SrtpProfile::AeadAes256Gcm);
    assert_eq!(desk.stream_kind(5), Some(MediaKind::Audio));
    assert_eq!(cell.load().streams[&5].payload_type, DIAL_IN_OPUS_PT);
    assert!(desk.is_present(&leg));
    // A duplicate SSRC undoes the admission.
    assert!(matches!(
        desk.admit_caller("4242", "phone 2", Some("99"), 5),
        Err(DeskError::DuplicateSsrc(5))
    ));
    assert_eq!(h.get("/v1/meetings/4242").await.body["participants"], 1);

    desk.leave(&leg);
    assert!(!desk.is_present(&leg));
    assert_eq!(desk.stream_kind(5), None);
    let text = metrics.render(&Default::default());
    assert!(
        text.contains("sluice_api_refusals_total{code=\"e2ee_forbids_dial_in\"} 1"),
        "{text}"
    );
}

/// `GET /v1/meetings` and `GET /v1/meetings/{id}/participants/{pid}`
/// (control/listing.rs).
mod listing {
    use super::*;

    fn ids(answer: &Answer) -> Vec<String> {
        answer.body["meetings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn meetings_are_listed_in_id_order_page_by_page_and_by_mode() {
        let h = harness();
        let empty = h.get("/v1/meetings").await;
        empty.expect(200, "<none>");
        assert_eq!(empty.body, json!({"meetings": []}));
        for (id, mode) in [
            ("c", "e2ee"),
            ("a", "standard"),
            ("e", "standard"),
            ("b", "e2ee"),
        ] {
            h.meeting(id, mode).await.expect(201, "<none>");
        }
        h.attendee("a").await;

        let all = h.get("/v1/meetings").await;
        assert_eq!(ids(&all), ["a", "b", "c", "e"]);
        assert!(all.body.get("next").is_none(), "one page holds them all");
        assert_eq!(
            all.body["meetings"][0],
            json!({"id": "a", "mode": "standard", "locked": false, "participants": 1,
                   "owner": {"account": "alice", "verified": true}})
        );

        let first = h.get("/v1/meetings?limit=2").await;
        assert_eq!(ids(&first), ["a", "b"]);
        assert_eq!(first.body["next"], "b");
        // A meeting created between pages lands where its id sorts.
        h.meeting("bb", "standard").await.expect(201, "<none>");
        let second = h.get("/v1/meetings?limit=2&after=b").await;
        assert_eq!(ids(&second), ["bb", "c"]);
        assert_eq!(second.body["next"], "c");
        let last = h.get("/v1/meetings?limit=2&after=c").await;
        assert_eq!(ids(&last), ["e"]);
        assert!(last.body.get("next").is_none());

        let e2ee = h.get("/v1/meetings?mode=e2ee").await;
        assert_eq!(ids(&e2ee), ["b", "c"]);
        let standard = h.get("/v1/meetings?mode=standard&limit=1").await;
        assert_eq!(ids(&standard), ["a"]);
        assert_eq!(standard.body["next"], "a");
        let rest = h.get("/v1/meetings?mode=standard&after=a").await;
        assert_eq!(ids(&rest), ["bb", "e"]);
        // A page that ends exactly at the last match has no next.
        let exact = h.get("/v1/meetings?mode=e2ee&limit=2").await;
        assert!(exact.body.get("next").is_none(), "{}", exact.text);
    }

    #[tokio::test]
    async fn bad_list_queries_name_the_parameter() {
        let h = harness();
        for (query, needle) in [
            ("limit=0", "limit must be 1 to 1000"),
            ("limit=1001", "limit must be 1 to 1000"),
            ("limit=ten", "limit"),
            ("mode=video", "mode"),
            ("moed=e2ee", "moed"),
        ] {
            let answer = h.get(&format!("/v1/meetings?{query}")).await;
            answer.expect(400, "invalid_request");
            assert!(
                answer.message().contains(needle),
                "{query}: {}",
                answer.text
            );
        }
    }

    #[tokio::test]
    async fn a_participant_shows_its_latch_streams_and_counters_but_no_key() {
        let h = harness();
        h.meeting("m", "e2ee").await.expect(201, "<none>");
        let admitted = h.join("m", json!({"name": "ann", "role": "host"})).await;
        admitted.expect(201, "<none>");
        let pid = admitted.body["id"].as_str().unwrap().to_owned();
        h.stream("m", &pid, 4242).await.expect(201, "<none>");
        let uri = format!("/v1/meetings/m/participants/{pid}");

        let before = h.get(&uri).await;
        before.expect(200, "<none>");
        assert_eq!(
            before.body,
            json!({
                "id": pid, "meeting": "m", "name": "ann", "role": "host", "source": "api",
                "srtp_profile": "AEAD_AES_256_GCM",
                "latch": {"latched": false, "address": null},
                "streams": [{"ssrc": 4242, "kind": "audio", "codec": "opus",
                             "payload_type": 111, "highest_srtp_index": 0}],
                "counters": {"srtcp_highest_index_received": null, "srtcp_packets_sent": 0},
            })
        );
        for key in ["client_to_relay", "relay_to_client"] {
            let secret = admitted.body["media"][key].as_str().unwrap();
            assert!(!before.text.contains(secret), "{key} leaked");
        }

        // What the workers record shows up live: the latch, indices.
        let snapshot = h.snapshot();
        let leg = snapshot.legs.values().next().unwrap();
        leg.latch.set("198.51.100.7:5004".parse().unwrap());
        leg.take_srtcp_index();
        leg.highest_srtcp_index
            .store(8, std::sync::atomic::Ordering::Relaxed);
        snapshot.streams[&4242]
            .highest_index
            .store(70_000, std::sync::atomic::Ordering::Relaxed);
        let after = h.get(&uri).await;
        assert_eq!(
            after.body["latch"],
            json!({"latched": true, "address": "198.51.100.7:5004"})
        );
        assert_eq!(after.body["streams"][0]["highest_srtp_index"], 70_000);
        assert_eq!(
            after.body["counters"],
            json!({"srtcp_highest_index_received": 7, "srtcp_packets_sent": 1})
        );

        h.get("/v1/meetings/m/participants/nobody")
            .await
            .expect(404, "participant_not_found");
        h.get(&format!("/v1/meetings/x/participants/{pid}"))
            .await
            .expect(404, "meeting_not_found");
    }
}

#[tokio::test]
async fn receive_preferences_are_checked_and_refused_in_e2ee_meetings() {
    let h = harness();
    h.meeting("s", "standard").await;
    let vp8_360 =
        json!({"video": {"codecs": [{"name": "VP8", "payload_type": 96}], "max_height": 360}});
    h.join("s", json!({"name": "thin", "receive": vp8_360}))
        .await
        .expect(201, "<none>");
    let h264 = json!({"video": {"codecs": [{"name": "H264", "payload_type": 102}]}});
    h.join("s", json!({"name": "room", "receive": h264}))
        .await
        .expect(201, "<none>");
    // No video preference: takes everything as published.
    h.join("s", json!({"name": "plain", "receive": {}}))
        .await
        .expect(201, "<none>");
    let roster = h.get("/v1/meetings/s").await.body;
    let shown: Vec<&Value> = roster["roster"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["receive"])
        .collect();
    assert_eq!(shown[0]["video"]["codecs"][0]["name"], "VP8");
    assert_eq!(shown[0]["video"]["max_height"], 360);
    assert_eq!(shown[1]["video"]["codecs"][0]["payload_type"], 102);
    assert!(shown[2].is_null(), "{roster}");

    // A codec or a payload type listed twice is a conflict the schema
    // cannot rule out: 409, saying what to fix.
    for twice in [
        json!({"video": {"codecs": [{"name": "VP8", "payload_type": 96}, {"name": "vp8", "payload_type": 97}]}}),
        json!({"video": {"codecs": [{"name": "VP8", "payload_type": 96}, {"name": "H264", "payload_type": 96}]}}),
    ] {
        let answer = h
            .join("s", json!({"name": "twice", "receive": twice}))
            .await;
        answer.expect(409, "conflicting_receive");
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("list each codec once"), "{message}");
    }

    for (bad, says) in [
        (json!({"video": {"codecs": []}}), "at least one codec"),
        (
            json!({"video": {"codecs": [{"name": "AV1", "payload_type": 96}]}}),
            "\"AV1\"",
        ),
        (
            json!({"video": {"codecs": [{"name": "VP8", "payload_type": 200}]}}),
            "payload_type 200",
        ),
        (
            json!({"video": {"codecs": [{"name": "VP8", "payload_type": 96}], "max_height": 8}}),
            "max_height = 8",
        ),
        (
            json!({"video": {"codecs": [{"name": "VP8"}]}}),
            "payload_type",
        ),
        (json!({"video": {"codec": "VP8"}}), "codec"),
    ] {
        let answer = h.join("s", json!({"name": "x", "receive": bad})).await;
        answer.expect(400, "invalid_request");
        let message = answer.body["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(says), "{message}");
    }

    h.meeting("e", "e2ee").await;
    let answer = h
        .join("e", json!({"name": "thin", "receive": vp8_360}))
        .await;
    answer.expect(403, "e2ee_forbids_transcoding");
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("SFrame"), "{message}");
    // Without receive the same participant is welcome.
    h.join("e", json!({"name": "thin"}))
        .await
        .expect(201, "<none>");
}

#[tokio::test]
async fn a_node_alone_says_so_on_the_cluster_endpoint() {
    let h = harness();
    let answer = h.get("/v1/cluster/nodes").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body["error"]["code"], "not_clustered");
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[cluster]")
    );
    // A leg pinned to a node makes no sense alone: said so, nothing admitted.
    h.meeting("m", "standard").await;
    let answer = h.join("m", json!({"name": "bob", "node": "b"})).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert_eq!(answer.body["error"]["code"], "not_clustered");
    assert!(h.snapshot().legs.is_empty());
}
