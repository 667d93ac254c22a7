//! Cluster mode on loopback: private redis-server instances and `sluice
//! run` processes joined to them (tests/cluster_support).

mod cluster_support;
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cluster_support::{Node, Redis, eventually};
use serde_json::Value;
use support::http;

/// The ids `GET /v1/cluster/nodes` on `api` lists (`None` on an error).
fn node_ids(api: SocketAddr) -> Option<Vec<String>> {
    let response = http(api, "GET", "/v1/cluster/nodes", None, None);
    (response.status == 200).then(|| {
        response.json()["nodes"]
            .as_array()
            .expect("a nodes array")
            .iter()
            .map(|n| n["id"].as_str().expect("an id").to_owned())
            .collect()
    })
}

/// Waits until the node at `api` lists exactly `ids`, in order.
fn await_listed(api: SocketAddr, ids: &[&str]) {
    eventually(Duration::from_secs(5), "the nodes listed", || {
        (node_ids(api)? == ids).then_some(())
    });
}

fn nodes(api: SocketAddr) -> Vec<Value> {
    let response = http(api, "GET", "/v1/cluster/nodes", None, None);
    assert_eq!(response.status, 200, "{}", response.text);
    response.json()["nodes"].as_array().expect("nodes").clone()
}

const TTL: Duration = Duration::from_secs(2);

#[test]
fn nodes_list_each_other_and_sigterm_deregisters_at_once() {
    let redis = Redis::start();
    let a = Node::start(&redis.url(), "a", "");
    let b = Node::start(&redis.url(), "b", "");
    for api in [a.api, b.api] {
        await_listed(api, &["a", "b"]);
    }
    let listed = nodes(a.api);
    assert_eq!(listed[0]["api"], a.api.to_string());
    assert_eq!(listed[0]["media"], a.media.to_string());
    assert_eq!(listed[0]["self"], true);
    assert_eq!(listed[1]["self"], false);
    assert_eq!(listed[1]["load"]["legs"], 0);
    assert_eq!(listed[1]["load"]["max_legs"], 5000);
    // The busiest worker's share, and the policy's limit on it.
    assert!(
        listed[1]["load"]["busy_ppm"]
            .as_u64()
            .is_some_and(|b| b <= 1_000_000)
    );
    assert!(
        listed[1]["load"]["max_busy_ppm"]
            .as_u64()
            .is_some_and(|b| b > 0)
    );

    // SIGTERM: gone from the list at once, not after the TTL.
    let stopped = Instant::now();
    b.terminate();
    assert_eq!(node_ids(a.api).expect("a answers"), ["a"]);
    assert!(stopped.elapsed() < TTL, "deregistration waited for the TTL");
    assert_eq!(
        redis.command(&["EXISTS", "sluice:node:b"]).as_deref(),
        Some(":0")
    );
}

#[test]
fn a_killed_node_is_gone_within_the_ttl() {
    let redis = Redis::start();
    let a = Node::start(&redis.url(), "a", "");
    let b = Node::start(&redis.url(), "b", "");
    await_listed(a.api, &["a", "b"]);
    let killed = Instant::now();
    b.kill();
    eventually(
        TTL + Duration::from_secs(1),
        "b dropped within the TTL",
        || (node_ids(a.api)? == ["a"]).then_some(()),
    );
    assert!(killed.elapsed() <= TTL + Duration::from_millis(500));
}

#[test]
fn nodes_register_again_after_redis_restarts() {
    let redis = Redis::start();
    let a = Node::start(&redis.url(), "a", "");
    await_listed(a.api, &["a"]);
    let port = redis.kill();
    let down = http(a.api, "GET", "/v1/cluster/nodes", None, None);
    assert_eq!(down.status, 503, "{}", down.text);
    assert_eq!(down.error_code(), "cluster_unavailable");
    // Liveness does not depend on Redis.
    assert_eq!(http(a.api, "GET", "/healthz", None, None).status, 200);
    let _redis = Redis::start_on(port);
    eventually(Duration::from_secs(5), "a registered again", || {
        (node_ids(a.api)? == ["a"]).then_some(())
    });
}

fn link(redis: &Redis, node: &str) -> sluice::cluster::ClusterLink {
    sluice::cluster::ClusterLink::new(sluice::config::ClusterSettings {
        redis: redis.url(),
        node_id: node.to_owned(),
        advertise_api: "127.0.0.1:1".parse().expect("addr"),
        advertise_media: "127.0.0.1:1".parse().expect("addr"),
        heartbeat: Duration::from_millis(200),
        ttl: TTL,
    })
    .expect("a link")
}

#[test]
fn two_nodes_taking_seats_at_once_never_pass_the_limit() {
    use sluice::cluster::{MeetingBook, MeetingRecord, RosterEntry, SeatRefusal};
    let redis = Redis::start();
    let first = link(&redis, "a");
    let record = MeetingRecord {
        id: "race".to_owned(),
        mode: sluice::relay::MeetingMode::Standard,
        owner: "ops".to_owned(),
        verified: false,
        passcode_hash: None,
        locked: false,
        home: "a".to_owned(),
        participants: 0,
        roster: Default::default(),
    };
    assert!(MeetingBook::new(&first).create(&record).expect("create"));
    assert!(!MeetingBook::new(&first).create(&record).expect("taken"));
    const LIMIT: usize = 10;
    let results: Vec<(usize, usize)> = std::thread::scope(|scope| {
        let runs: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|node| {
                let redis = &redis;
                scope.spawn(move || {
                    let link = link(redis, node);
                    let book = MeetingBook::new(&link);
                    let (mut seated, mut full) = (0, 0);
                    for i in 0..50 {
                        let entry = RosterEntry {
                            name: format!("{node}{i}"),
                            role: "attendee".to_owned(),
                            source: "api".to_owned(),
                            node: node.to_owned(),
                        };
                        match book.take_seat("race", &format!("{node}-{i}"), &entry, LIMIT) {
                            Ok(Ok(())) => seated += 1,
                            Ok(Err(SeatRefusal::Full)) => full += 1,
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    (seated, full)
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("no panic"))
            .collect()
    });
    let seated: usize = results.iter().map(|r| r.0).sum();
    let full: usize = results.iter().map(|r| r.1).sum();
    assert_eq!((seated, full), (LIMIT, 100 - LIMIT), "{results:?}");
    let stored = MeetingBook::new(&first)
        .get("race")
        .expect("get")
        .expect("exists");
    assert_eq!(stored.participants, LIMIT as u64);
    assert_eq!(stored.roster.len(), LIMIT);
    // Leaving frees a seat; the lock closes it again, atomically too.
    let (pid, _) = stored.roster.iter().next().expect("one");
    assert!(
        MeetingBook::new(&first)
            .leave("race", pid)
            .expect("leave")
            .is_some()
    );
    assert!(
        MeetingBook::new(&first)
            .leave("race", pid)
            .expect("again")
            .is_none()
    );
    assert!(
        MeetingBook::new(&first)
            .set_locked("race", true)
            .expect("lock")
    );
    let entry = RosterEntry {
        name: "late".to_owned(),
        role: "attendee".to_owned(),
        source: "api".to_owned(),
        node: "a".to_owned(),
    };
    let book = MeetingBook::new(&first);
    assert_eq!(
        book.take_seat("race", "late", &entry, LIMIT).expect("seat"),
        Err(SeatRefusal::Locked)
    );
    book.set_locked("race", false).expect("unlock");
    assert_eq!(
        book.take_seat("race", "late", &entry, LIMIT).expect("seat"),
        Ok(())
    );
    assert!(book.delete("race").expect("delete").is_some());
    assert_eq!(
        redis
            .command(&[
                "EXISTS",
                "sluice:meeting:race",
                "sluice:meeting:race:roster"
            ])
            .as_deref(),
        Some(":0")
    );
    assert_eq!(
        book.take_seat("race", "x", &entry, LIMIT).expect("seat"),
        Err(SeatRefusal::Missing)
    );
}

fn post(api: SocketAddr, path: &str, body: &Value) -> support::Response {
    http(api, "POST", path, Some(body), None)
}

fn create(api: SocketAddr, body: &Value) -> String {
    let created = post(api, "/v1/meetings", body);
    assert_eq!(created.status, 201, "{}", created.text);
    created.json()["id"].as_str().expect("id").to_owned()
}

fn standard() -> Value {
    serde_json::json!({"mode": "standard", "owner": {"account": "ops", "verified": true}})
}

/// Admits `name` into `meeting` through `api` (optionally pinned to `node`).
fn join(api: SocketAddr, meeting: &str, name: &str, node: Option<&str>) -> Value {
    let mut body = serde_json::json!({"name": name});
    if let Some(node) = node {
        body["node"] = node.into();
    }
    let joined = post(api, &format!("/v1/meetings/{meeting}/participants"), &body);
    assert_eq!(joined.status, 201, "{}", joined.text);
    joined.json()
}

/// The legs node `id` publishes, as `api` lists it.
fn legs_of(api: SocketAddr, id: &str) -> Option<u64> {
    nodes(api)
        .iter()
        .find(|n| n["id"] == id)
        .and_then(|n| n["load"]["legs"].as_u64())
}

/// Waits until every node in `expect` publishes that many legs.
fn await_legs(api: SocketAddr, expect: &[(&str, u64)]) {
    eventually(Duration::from_secs(5), "published loads", || {
        expect
            .iter()
            .all(|(id, legs)| legs_of(api, id) == Some(*legs))
            .then_some(())
    });
}

#[test]
fn any_node_answers_for_any_meeting_and_legs_live_where_placed() {
    let redis = Redis::start();
    let a = Node::start(&redis.url(), "a", "");
    let b = Node::start(&redis.url(), "b", "");
    await_listed(a.api, &["a", "b"]);
    let mut body = standard();
    body["id"] = "standup".into();
    body["passcode"] = "4711".into();
    let id = create(a.api, &body);
    let through_a = http(a.api, "GET", &format!("/v1/meetings/{id}"), None, None);
    let through_b = http(b.api, "GET", &format!("/v1/meetings/{id}"), None, None);
    assert_eq!(through_b.status, 200, "{}", through_b.text);
    assert_eq!(through_a.json(), through_b.json());
    assert_eq!(
        through_b.json()["node"],
        "a",
        "both empty: the smaller id wins"
    );
    // The passcode is stored hashed, never as written.
    let stored = redis
        .command(&["HGET", "sluice:meeting:standup", "passcode"])
        .expect("reply");
    assert!(!stored.contains("4711"));
    let taken = post(b.api, "/v1/meetings", &body);
    assert_eq!(
        (taken.status, taken.error_code().as_str()),
        (409, "meeting_exists")
    );

    // The passcode is checked by whichever node takes the request.
    let wrong = post(
        b.api,
        &format!("/v1/meetings/{id}/participants"),
        &serde_json::json!({"name": "x", "passcode": "0000"}),
    );
    assert_eq!(
        (wrong.status, wrong.error_code().as_str()),
        (403, "wrong_passcode")
    );
    let pinned = |api, name, node: &str| {
        let body = serde_json::json!({"name": name, "passcode": "4711", "node": node});
        let joined = post(api, &format!("/v1/meetings/{id}/participants"), &body);
        assert_eq!(joined.status, 201, "{}", joined.text);
        joined.json()
    };
    // Asked of B, pinned to A: forwarded, and the answer names A's media.
    let on_a = pinned(b.api, "alice", "a");
    assert_eq!(on_a["node"], "a");
    assert_eq!(on_a["media"]["address"], a.media.to_string());
    let on_b = pinned(a.api, "bob", "b");
    assert_eq!(on_b["node"], "b");
    assert_eq!(on_b["media"]["address"], b.media.to_string());
    await_legs(a.api, &[("a", 1), ("b", 1)]);
    let roster = http(b.api, "GET", &format!("/v1/meetings/{id}"), None, None).json();
    assert_eq!(roster["participants"], 2);
    let hosts: Vec<&str> = roster["roster"]
        .as_array()
        .expect("roster")
        .iter()
        .map(|p| p["node"].as_str().expect("node"))
        .collect();
    assert_eq!(hosts.len(), 2);
    assert!(hosts.contains(&"a") && hosts.contains(&"b"), "{hosts:?}");

    // A stream published through A for bob lands on B (forwarded).
    let bob = on_b["id"].as_str().expect("id");
    let stream = post(
        a.api,
        &format!("/v1/meetings/{id}/participants/{bob}/streams"),
        &serde_json::json!({"ssrc": 7, "kind": "audio", "codec": "opus", "payload_type": 111}),
    );
    assert_eq!(stream.status, 201, "{}", stream.text);
    let metrics = http(b.api, "GET", "/metrics", None, None).text;
    assert!(
        support::metric(&metrics, "sluice_streams{mode=\"standard\"}") >= 1.0,
        "{metrics}"
    );
    // Every node's roster shows it, once B's heartbeat published it.
    eventually(Duration::from_secs(5), "bob's stream in the roster", || {
        let shown = http(a.api, "GET", &format!("/v1/meetings/{id}"), None, None).json();
        let bob_view = shown["roster"]
            .as_array()?
            .iter()
            .find(|p| p["id"] == bob)?
            .clone();
        (bob_view["streams"][0]["ssrc"] == 7).then_some(())
    });

    // Removing alice through B removes her leg on A.
    let alice = on_a["id"].as_str().expect("id");
    let removed = http(
        b.api,
        "DELETE",
        &format!("/v1/meetings/{id}/participants/{alice}"),
        None,
        None,
    );
    assert_eq!(removed.status, 204, "{}", removed.text);
    await_legs(b.api, &[("a", 0), ("b", 1)]);
    // Locking through B holds on A.
    let locked = post(
        b.api,
        &format!("/v1/meetings/{id}/lock"),
        &serde_json::json!({"locked": true}),
    );
    assert_eq!(locked.status, 200, "{}", locked.text);
    let refused = post(
        a.api,
        &format!("/v1/meetings/{id}/participants"),
        &serde_json::json!({"name": "late", "passcode": "4711"}),
    );
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (403, "meeting_locked")
    );
    // Deleting through A drops B's leg and leaves nothing in Redis.
    let deleted = http(a.api, "DELETE", &format!("/v1/meetings/{id}"), None, None);
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    await_legs(a.api, &[("a", 0), ("b", 0)]);
    assert_eq!(
        http(b.api, "GET", &format!("/v1/meetings/{id}"), None, None).status,
        404
    );
    assert_eq!(
        redis
            .command(&[
                "EXISTS",
                "sluice:meeting:standup",
                "sluice:meeting:standup:roster"
            ])
            .as_deref(),
        Some(":0")
    );
}

#[test]
fn placement_spreads_meetings_and_a_full_node_sends_legs_to_the_next() {
    let redis = Redis::start();
    let a = Node::start(&redis.url(), "a", "max_participants_per_node = 10");
    let b = Node::start(&redis.url(), "b", "max_participants_per_node = 10");
    let c = Node::start(&redis.url(), "c", "max_participants_per_node = 10");
    await_listed(a.api, &["a", "b", "c"]);
    let apis = [a.api, b.api, c.api];
    let mut homes = std::collections::BTreeMap::<String, u64>::new();
    for i in 0..20 {
        let api = apis[i % 3];
        let id = create(api, &standard());
        let joined = join(api, &id, "p", None);
        let home = joined["node"].as_str().expect("node").to_owned();
        *homes.entry(home).or_default() += 1;
        // The next placement sees this leg once the heartbeat carries it.
        let expected: Vec<(&str, u64)> = homes.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        await_legs(a.api, &expected);
    }
    let spread: Vec<u64> = homes.values().copied().collect();
    assert_eq!(spread, [7, 7, 6], "{homes:?}");

    // c is the least loaded (6 of 10 legs), so a new meeting is placed
    // there; its participants follow it until c is full, then the next
    // goes to the next best node (a and b tie at 7: a by id) and the
    // meeting spans both.
    let full_id = {
        let mut body = standard();
        body["id"] = "big".into();
        let created = post(b.api, "/v1/meetings", &body);
        assert_eq!(created.json()["node"], "c", "{}", created.text);
        "big"
    };
    let mut placed = Vec::new();
    for i in 0..5 {
        let joined = join(b.api, full_id, &format!("p{i}"), None);
        placed.push(joined["node"].as_str().expect("node").to_owned());
        let c_legs = 6 + u64::try_from(placed.iter().filter(|n| *n == "c").count()).expect("small");
        await_legs(a.api, &[("c", c_legs)]);
    }
    assert_eq!(placed, ["c", "c", "c", "c", "a"]);
    // Pinning a leg to the full node is refused, never silently rerouted.
    let refused = post(
        a.api,
        &format!("/v1/meetings/{full_id}/participants"),
        &serde_json::json!({"name": "late", "node": "c"}),
    );
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (503, "no_node_available")
    );
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .expect("message")
            .contains("\"c\"")
    );
}

/// Publishes an audio stream `ssrc` for participant `pid`.
fn publish(api: SocketAddr, meeting: &str, pid: &str, ssrc: u32) {
    let stream = post(
        api,
        &format!("/v1/meetings/{meeting}/participants/{pid}/streams"),
        &serde_json::json!({"ssrc": ssrc, "kind": "audio", "codec": "opus", "payload_type": 111}),
    );
    assert_eq!(stream.status, 201, "{}", stream.text);
}

/// `from` sends `count` packets of `ssrc`; `to` must get each once, with
/// the payload intact.
fn assert_relayed(
    from: &mut support::Endpoint,
    to: &mut support::Endpoint,
    ssrc: u32,
    first_seq: u16,
    count: u16,
) {
    to.drain();
    for seq in first_seq..first_seq + count {
        from.send_rtp(ssrc, seq, format!("frame {seq}").as_bytes());
    }
    let got = to.receive(usize::from(count), Duration::from_secs(3));
    let mut payloads: Vec<String> = got
        .into_iter()
        .filter(|d| !support::is_rtcp(d))
        .map(|mut d| {
            let len = d.len();
            let n = to
                .recv
                .unprotect_rtp(&mut d, len)
                .expect("authentic SRTP from the relay");
            String::from_utf8_lossy(&d[12..n]).into_owned()
        })
        .collect();
    payloads.sort();
    let mut want: Vec<String> = (first_seq..first_seq + count)
        .map(|s| format!("frame {s}"))
        .collect();
    want.sort();
    assert_eq!(payloads, want);
}

/// Two participants on `api`'s node, each publishing, both latched.
fn talking_pair(
    api: SocketAddr,
    meeting: &str,
    node: &str,
) -> (support::Endpoint, support::Endpoint) {
    let mut one = support::Endpoint::from_admission(&join(api, meeting, "one", Some(node)));
    let mut two = support::Endpoint::from_admission(&join(api, meeting, "two", Some(node)));
    publish(api, meeting, &one.id.clone(), 1001);
    publish(api, meeting, &two.id.clone(), 1002);
    // Latch both legs with a first packet each.
    one.send_rtp(1001, 1, b"hello");
    two.send_rtp(1002, 1, b"hello");
    std::thread::sleep(Duration::from_millis(100));
    one.drain();
    two.drain();
    (one, two)
}

#[test]
fn a_killed_node_leaves_the_survivors_talking_and_its_meeting_rehomed() {
    let redis = Redis::start();
    let a = Node::start(&redis.url(), "a", "");
    let b = Node::start(&redis.url(), "b", "");
    await_listed(b.api, &["a", "b"]);
    let id = create(b.api, &standard());
    assert_eq!(
        http(b.api, "GET", &format!("/v1/meetings/{id}"), None, None).json()["node"],
        "a"
    );
    let (mut one, mut two) = talking_pair(b.api, &id, "b");
    let on_a = join(b.api, &id, "doomed", Some("a"));
    assert_eq!(on_a["node"], "a");
    assert_relayed(&mut one, &mut two, 1001, 10, 20);

    a.kill();
    eventually(
        TTL + Duration::from_secs(1),
        "a dropped within the TTL",
        || (node_ids(b.api)? == ["b"]).then_some(()),
    );
    // The survivors keep talking.
    assert_relayed(&mut one, &mut two, 1001, 100, 20);
    assert_relayed(&mut two, &mut one, 1002, 200, 20);
    // The dead node's participant is gone from the roster ...
    let shown = http(b.api, "GET", &format!("/v1/meetings/{id}"), None, None).json();
    assert_eq!(shown["participants"], 2, "{shown}");
    // ... and a newcomer is placed on a live node, which now homes it.
    let newcomer = join(b.api, &id, "new", None);
    assert_eq!(newcomer["node"], "b");
    assert_eq!(newcomer["media"]["address"], b.media.to_string());
    let shown = http(b.api, "GET", &format!("/v1/meetings/{id}"), None, None).json();
    assert_eq!(shown["node"], "b", "{shown}");
    // Asking for the dead node by name says it is gone.
    let pinned = post(
        b.api,
        &format!("/v1/meetings/{id}/participants"),
        &serde_json::json!({"name": "x", "node": "a"}),
    );
    assert_eq!(
        (pinned.status, pinned.error_code().as_str()),
        (503, "no_node_available")
    );
    // Nothing lives forever: the meeting's keys carry a TTL.
    let pttl: i64 = redis
        .command(&["PTTL", &format!("sluice:meeting:{id}")])
        .and_then(|r| r.trim_start_matches(':').parse().ok())
        .expect("a PTTL reply");
    assert!((1..=60_000).contains(&pttl), "{pttl}");
    let node_key = redis.command(&["EXISTS", "sluice:node:a"]);
    assert_eq!(node_key.as_deref(), Some(":0"));
}

#[test]
fn a_redis_restart_stops_changes_never_media_and_everything_resumes() {
    let redis = Redis::start();
    let a = Node::start(&redis.url(), "a", "");
    let b = Node::start(&redis.url(), "b", "");
    await_listed(a.api, &["a", "b"]);
    let mut body = standard();
    body["id"] = "steady".into();
    body["passcode"] = "2468".into();
    let id = create(a.api, &body);
    let joined = |name: &str| {
        let body = serde_json::json!({"name": name, "passcode": "2468", "node": "a"});
        let answer = post(b.api, &format!("/v1/meetings/{id}/participants"), &body);
        assert_eq!(answer.status, 201, "{}", answer.text);
        support::Endpoint::from_admission(&answer.json())
    };
    let (mut one, mut two) = (joined("one"), joined("two"));
    publish(a.api, &id, &one.id.clone(), 1001);
    publish(a.api, &id, &two.id.clone(), 1002);
    one.send_rtp(1001, 1, b"hello");
    two.send_rtp(1002, 1, b"hello");
    std::thread::sleep(Duration::from_millis(100));
    assert_relayed(&mut one, &mut two, 1001, 10, 10);

    let port = redis.kill();
    // Media never waits on Redis.
    assert_relayed(&mut one, &mut two, 1001, 100, 30);
    assert_relayed(&mut two, &mut one, 1002, 200, 30);
    // Every change is refused at once, with the code that says why.
    let refusals = [
        post(a.api, "/v1/meetings", &standard()),
        post(
            b.api,
            &format!("/v1/meetings/{id}/participants"),
            &serde_json::json!({"name": "x"}),
        ),
        post(
            a.api,
            &format!("/v1/meetings/{id}/lock"),
            &serde_json::json!({"locked": true}),
        ),
        http(b.api, "DELETE", &format!("/v1/meetings/{id}"), None, None),
    ];
    for refused in refusals {
        assert_eq!(
            (refused.status, refused.error_code().as_str()),
            (503, "cluster_unavailable"),
            "{}",
            refused.text
        );
    }
    assert_relayed(&mut one, &mut two, 1001, 300, 10);

    // Redis comes back empty: the nodes register again and put the
    // meeting back (facts, passcode hash and roster), and changes resume.
    let redis = Redis::start_on(port);
    eventually(Duration::from_secs(5), "both registered again", || {
        (node_ids(b.api)? == ["a", "b"]).then_some(())
    });
    let shown = eventually(Duration::from_secs(5), "the meeting put back", || {
        let r = http(b.api, "GET", &format!("/v1/meetings/{id}"), None, None);
        (r.status == 200).then(|| r.json())
    });
    assert_eq!(shown["participants"], 2, "{shown}");
    let stored = redis
        .command(&["HGET", "sluice:meeting:steady", "passcode"])
        .expect("reply");
    assert!(
        stored.starts_with("$") && !stored.contains("2468"),
        "{stored}"
    );
    let wrong = post(
        b.api,
        &format!("/v1/meetings/{id}/participants"),
        &serde_json::json!({"name": "x", "passcode": "1"}),
    );
    assert_eq!(wrong.error_code(), "wrong_passcode");
    let mut three = {
        let body = serde_json::json!({"name": "three", "passcode": "2468"});
        let answer = post(b.api, &format!("/v1/meetings/{id}/participants"), &body);
        assert_eq!(answer.status, 201, "{}", answer.text);
        assert_eq!(answer.json()["node"], "a", "the meeting's node, put back");
        support::Endpoint::from_admission(&answer.json())
    };
    publish(b.api, &id, &three.id.clone(), 1003);
    three.send_rtp(1003, 1, b"latch");
    std::thread::sleep(Duration::from_millis(100));
    assert_relayed(&mut one, &mut three, 1001, 400, 10);
    let created = post(b.api, "/v1/meetings", &standard());
    assert_eq!(created.status, 201, "{}", created.text);
}

#[test]
fn two_nodes_admitting_at_once_hold_the_meeting_limit() {
    let redis = Redis::start();
    let limit = "max_participants_per_meeting = 5";
    let a = Node::start(&redis.url(), "a", limit);
    let b = Node::start(&redis.url(), "b", limit);
    await_listed(a.api, &["a", "b"]);
    let id = create(a.api, &standard());
    // Each node admits onto itself, ten requests each, all at once.
    let answers: Vec<(u16, String)> = std::thread::scope(|scope| {
        let runs: Vec<_> = [(a.api, "a"), (b.api, "b")]
            .into_iter()
            .flat_map(|(api, node)| {
                let id = &id;
                (0..10).map(move |i| {
                    scope.spawn(move || {
                        let body = serde_json::json!({"name": format!("{node}{i}"), "node": node});
                        let r = post(api, &format!("/v1/meetings/{id}/participants"), &body);
                        let code = if r.status == 201 {
                            String::new()
                        } else {
                            r.error_code()
                        };
                        (r.status, code)
                    })
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("no panic"))
            .collect()
    });
    let admitted = answers.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(admitted, 5, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, c)| *s == 201 || (*s == 409 && c == "meeting_full")),
        "{answers:?}"
    );
    let shown = http(b.api, "GET", &format!("/v1/meetings/{id}"), None, None).json();
    assert_eq!(shown["participants"], 5);
    assert_eq!(shown["roster"].as_array().expect("roster").len(), 5);
    // The refused legs were taken down again: the nodes host five in all.
    eventually(Duration::from_secs(5), "loads add up to the seats", || {
        let total: u64 = ["a", "b"].iter().filter_map(|n| legs_of(a.api, n)).sum();
        (total == 5).then_some(())
    });
}

/// Runs one SIPp call of `scenario` to `sip` for `service`, `call_ms` long.
fn sipp(
    sip: SocketAddr,
    scenario: &str,
    service: &str,
    rtp_port: u16,
    call_ms: u64,
) -> std::process::Child {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(scenario);
    std::process::Command::new("sipp")
        .arg(sip.to_string())
        .args(["-sf", file.to_str().expect("utf-8 path")])
        .args(["-s", service])
        .args(["-key", "cport", &rtp_port.to_string()])
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-m", "1", "-l", "1", "-nostdin"])
        .args(["-d", &call_ms.to_string()])
        .args(["-timeout", "40s", "-timeout_error"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp runs (Debian's sip-tester)")
}

#[test]
fn a_call_to_any_node_joins_the_meeting_wherever_it_is_placed() {
    let redis = Redis::start();
    let a = Node::start(&redis.url(), "a", "");
    let b = Node::start_with(&redis.url(), "b", "", true);
    await_listed(a.api, &["a", "b"]);
    let mut body = standard();
    body["id"] = "5551000".into();
    create(a.api, &body);
    let mut e2ee =
        serde_json::json!({"mode": "e2ee", "owner": {"account": "ops", "verified": true}});
    e2ee["id"] = "5551001".into();
    create(a.api, &e2ee);
    assert_eq!(
        http(a.api, "GET", "/v1/meetings/5551000", None, None).json()["node"],
        "a"
    );
    let sip = b.sip.expect("b runs SIP");
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").expect("phone RTP");
    let port = phone.local_addr().expect("addr").port();
    // The meeting lives on a; the call reaches b: the caller's bridge leg
    // is admitted on b, its seat in the meeting's roster for every node.
    let mut call = sipp(sip, "join.xml", "5551000", port, 3000);
    let shown = eventually(Duration::from_secs(5), "the caller in the roster", || {
        let r = http(a.api, "GET", "/v1/meetings/5551000", None, None).json();
        (r["participants"] == 1).then_some(r)
    });
    assert_eq!(shown["roster"][0]["node"], "b", "{shown}");
    assert_eq!(shown["roster"][0]["source"], "dial-in", "{shown}");
    assert!(call.wait().expect("sipp ends").success(), "the call failed");
    eventually(
        Duration::from_secs(5),
        "the caller's seat given back",
        || {
            let r = http(a.api, "GET", "/v1/meetings/5551000", None, None).json();
            (r["participants"] == 0).then_some(())
        },
    );
    // The policy is the cluster's too: an E2EE meeting elsewhere refuses.
    let mut refused = sipp(sip, "refused.xml", "5551001", port, 0);
    assert!(
        refused.wait().expect("sipp ends").success(),
        "no SIP refusal"
    );
    assert_eq!(
        http(a.api, "GET", "/v1/meetings/5551001", None, None).json()["participants"],
        0
    );
}

/// An endpoint admitted into `meeting` on `node` (through `api`), publishing
/// `ssrc` and latched by a first packet.
fn speaker(api: SocketAddr, meeting: &str, node: &str, ssrc: u32) -> support::Endpoint {
    let mut endpoint =
        support::Endpoint::from_admission(&join(api, meeting, &format!("s{ssrc}"), Some(node)));
    publish(api, meeting, &endpoint.id.clone(), ssrc);
    endpoint.send_rtp(ssrc, 1, b"latch");
    endpoint
}

/// Sends from `from` until `to` hears it (the cascade forms on a heartbeat).
fn await_path(from: &mut support::Endpoint, to: &support::Endpoint, ssrc: u32, first_seq: u16) {
    let mut seq = first_seq;
    eventually(Duration::from_secs(5), "the cascade to carry media", || {
        from.send_rtp(ssrc, seq, b"probe");
        seq += 1;
        (!to.receive(1, Duration::from_millis(100)).is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(100));
    to.drain();
}

fn cascade_between_two_nodes(mode: &str) {
    let redis = Redis::start();
    let a = Node::start(&redis.url(), "a", "");
    let b = Node::start(&redis.url(), "b", "");
    await_listed(a.api, &["a", "b"]);
    let id = create(
        a.api,
        &serde_json::json!({"mode": mode, "owner": {"account": "ops", "verified": true}}),
    );
    let mut on_a = speaker(a.api, &id, "a", 2001);
    let mut on_b = speaker(b.api, &id, "b", 2002);
    let mut third = speaker(b.api, &id, "b", 2003);
    await_path(&mut on_a, &on_b, 2001, 2);
    await_path(&mut on_b, &on_a, 2002, 2);
    third.drain();
    on_b.drain();
    // A to B: each packet once, payload byte for byte (in an E2EE meeting
    // the payload is ciphertext the relays never read).
    assert_relayed(&mut on_a, &mut on_b, 2001, 100, 30);
    third.drain();
    // B to A, and a third on B hears both the other node and its own.
    assert_relayed(&mut on_b, &mut on_a, 2002, 200, 30);
    third.drain();
    assert_relayed(&mut on_a, &mut third, 2001, 300, 30);
    assert_relayed(&mut on_b, &mut third, 2002, 400, 30);
    // Nothing arrives twice.
    on_a.drain();
    on_b.drain();
    assert_relayed(&mut third, &mut on_a, 2003, 500, 20);
    assert!(on_a.drain().is_empty(), "a duplicate reached A");
    // RTCP feedback crosses back: a PLI, a NACK and a FIR on B for A's
    // stream each reach A's publisher (through the relay legs), once.
    let mut pli = vec![0x81, 206, 0, 2];
    pli.extend(2002u32.to_be_bytes());
    pli.extend(2001u32.to_be_bytes());
    let mut nack = vec![0x81, 205, 0, 3];
    nack.extend(2002u32.to_be_bytes());
    nack.extend(2001u32.to_be_bytes());
    nack.extend([0, 120, 0, 1]); // PID 120, BLP: 121 too
    let mut fir = vec![0x84, 206, 0, 4];
    fir.extend(2002u32.to_be_bytes());
    fir.extend(0u32.to_be_bytes()); // RFC 5104 §4.3.1: media SSRC unused
    fir.extend(2001u32.to_be_bytes());
    fir.extend([7, 0, 0, 0]); // command sequence number 7
    for (what, feedback) in [("PLI", &pli), ("NACK", &nack), ("FIR", &fir)] {
        on_b.send_rtcp(feedback);
        let got = on_a.receive(1, Duration::from_secs(2));
        let mut fb = got
            .into_iter()
            .find(|d| support::is_rtcp(d))
            .unwrap_or_else(|| panic!("the {what} reached A's publisher"));
        let len = fb.len();
        let n = on_a
            .recv
            .unprotect_rtcp(&mut fb, len)
            .expect("authentic SRTCP from A");
        assert_eq!(
            &fb[..n],
            &feedback[..],
            "the {what} as B's participant sent it"
        );
        assert!(on_a.drain().is_empty(), "the {what} arrived twice");
    }
    // Once no leg of the meeting is left on B, the relay legs go.
    for p in [&on_b, &third] {
        let r = http(
            a.api,
            "DELETE",
            &format!("/v1/meetings/{id}/participants/{}", p.id),
            None,
            None,
        );
        assert_eq!(r.status, 204, "{}", r.text);
    }
    await_legs(a.api, &[("a", 1), ("b", 0)]);
    // A stops sending to B: nothing more reaches B, authentic or not.
    let received = |api| {
        let text = http(api, "GET", "/metrics", None, None).text;
        support::metric(
            &text,
            &format!("sluice_packets_in_total{{mode=\"{mode}\"}}"),
        ) + support::metric(
            &text,
            "sluice_packets_dropped_total{reason=\"unknown_ssrc\"}",
        )
    };
    let mut seq = 600;
    eventually(Duration::from_secs(5), "A's relay leg to B gone", || {
        let before = received(b.api);
        for _ in 0..5 {
            on_a.send_rtp(2001, seq, b"after");
            seq += 1;
        }
        std::thread::sleep(Duration::from_millis(150));
        (received(b.api) == before).then_some(())
    });
}

#[test]
fn legs_on_two_nodes_hear_each_other_once_through_the_cascade() {
    cascade_between_two_nodes("standard");
}

#[test]
fn an_e2ee_meeting_cascades_its_ciphertext_untouched() {
    cascade_between_two_nodes("e2ee");
}

#[test]
fn three_nodes_receive_each_stream_once_split_horizon() {
    let redis = Redis::start();
    let a = Node::start(&redis.url(), "a", "");
    let b = Node::start(&redis.url(), "b", "");
    let c = Node::start(&redis.url(), "c", "");
    await_listed(a.api, &["a", "b", "c"]);
    let id = create(a.api, &standard());
    let mut on_a = speaker(a.api, &id, "a", 3001);
    let mut on_b = speaker(b.api, &id, "b", 3002);
    let mut on_c = speaker(c.api, &id, "c", 3003);
    await_path(&mut on_a, &on_b, 3001, 2);
    await_path(&mut on_a, &on_c, 3001, 1000);
    await_path(&mut on_b, &on_c, 3002, 2);
    await_path(&mut on_c, &on_a, 3003, 2);
    on_a.drain();
    on_b.drain();
    on_c.drain();
    let inbound = |api| {
        let text = http(api, "GET", "/metrics", None, None).text;
        (
            support::metric(&text, "sluice_packets_in_total{mode=\"standard\"}"),
            support::metric(
                &text,
                "sluice_packets_dropped_total{reason=\"auth_failed\"}",
            ) + support::metric(&text, "sluice_packets_dropped_total{reason=\"replayed\"}"),
        )
    };
    let before: Vec<(f64, f64)> = [a.api, b.api, c.api].into_iter().map(inbound).collect();
    // 30 packets from A: B and C each get them once, straight from A.
    for seq in 2000..2030 {
        on_a.send_rtp(3001, seq, b"from a");
    }
    assert_eq!(on_b.receive(30, Duration::from_secs(3)).len(), 30);
    assert_eq!(on_c.receive(30, Duration::from_secs(3)).len(), 30);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        on_b.drain().is_empty() && on_c.drain().is_empty(),
        "a duplicate arrived"
    );
    let after: Vec<(f64, f64)> = [a.api, b.api, c.api].into_iter().map(inbound).collect();
    // Each node received the stream once: A from its speaker, B and C from
    // A's relay legs; neither forwarded it on (nothing failed or replayed).
    for (node, (was, now)) in ["a", "b", "c"].iter().zip(before.iter().zip(&after)) {
        assert_eq!(
            now.0 - was.0,
            30.0,
            "node {node} received {} packets",
            now.0 - was.0
        );
        assert_eq!(now.1, was.1, "node {node} dropped copies");
    }
}

/// `GET /v1/meetings` through `api`: the ids on each page of `query`'s
/// listing (`limit` a page), following `next` to the end.
fn listed_ids(api: SocketAddr, query: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after = String::new();
    loop {
        let path = format!("/v1/meetings?{query}{after}");
        let page = http(api, "GET", &path, None, None);
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        let page = page.json();
        pages.push(
            page["meetings"]
                .as_array()
                .expect("meetings")
                .iter()
                .map(|m| m["id"].as_str().expect("id").to_owned())
                .collect(),
        );
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return pages,
        }
        assert!(pages.len() < 20, "the listing never ends");
    }
}

#[test]
fn every_node_lists_the_clusters_meetings_paginated_and_filtered() {
    let redis = Redis::start();
    let a = Node::start(&redis.url(), "a", "");
    let b = Node::start(&redis.url(), "b", "");
    await_listed(a.api, &["a", "b"]);
    // Five meetings, created through either node, placed on either.
    for (id, mode, api) in [
        ("m1", "standard", a.api),
        ("m2", "e2ee", b.api),
        ("m3", "standard", b.api),
        ("m4", "e2ee", a.api),
        ("m5", "standard", a.api),
    ] {
        let body = serde_json::json!({"id": id, "mode": mode,
            "owner": {"account": "ops", "verified": true}});
        create(api, &body);
    }
    let homes: Vec<Value> = ["m1", "m2"]
        .iter()
        .map(|id| {
            http(a.api, "GET", &format!("/v1/meetings/{id}"), None, None).json()["node"].clone()
        })
        .collect();
    for api in [a.api, b.api] {
        assert_eq!(
            listed_ids(api, "limit=2"),
            [vec!["m1", "m2"], vec!["m3", "m4"], vec!["m5"]]
        );
        assert_eq!(listed_ids(api, "mode=e2ee"), [vec!["m2", "m4"]]);
        assert_eq!(
            listed_ids(api, "mode=standard&limit=1"),
            [vec!["m1"], vec!["m3"], vec!["m5"]]
        );
    }
    // Whole pages are the same through both nodes, facts and home included.
    let page_a = http(a.api, "GET", "/v1/meetings", None, None).json();
    assert_eq!(
        page_a,
        http(b.api, "GET", "/v1/meetings", None, None).json()
    );
    assert_eq!(page_a["meetings"][0]["node"], homes[0]);
    assert_eq!(page_a["meetings"][1]["node"], homes[1]);
    assert_eq!(page_a["meetings"][1]["mode"], "e2ee");
    assert!(page_a.get("next").is_none());
    // A participant counts wherever its leg is.
    join(b.api, "m3", "guest", Some("b"));
    let page = http(a.api, "GET", "/v1/meetings?after=m2&limit=1", None, None).json();
    assert_eq!(page["meetings"][0]["id"], "m3");
    assert_eq!(page["meetings"][0]["participants"], 1);
    assert_eq!(page["next"], "m3");
    // Deleted through one node: gone from every node's list; a meeting
    // that expired in Redis is pruned from the index when met.
    let deleted = http(b.api, "DELETE", "/v1/meetings/m1", None, None);
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    redis.command(&["DEL", "sluice:meeting:m5"]).expect("DEL");
    assert_eq!(listed_ids(a.api, ""), [vec!["m2", "m3", "m4"]]);
    assert_eq!(listed_ids(b.api, "limit=3"), [vec!["m2", "m3", "m4"]]);
    assert_eq!(
        redis.command(&["ZCARD", "sluice:meetings"]).as_deref(),
        Some(":3")
    );
    // The bad query is refused as standalone refuses it.
    let bad = http(a.api, "GET", "/v1/meetings?limit=0", None, None);
    assert_eq!(
        (bad.status, bad.error_code().as_str()),
        (400, "invalid_request")
    );
}

/// Sends from `from` every 2 ms until `to` hears it; how long that took
/// (at most `within`, else the test fails).
fn time_to_cross(
    from: &mut support::Endpoint,
    to: &support::Endpoint,
    ssrc: u32,
    seq: &mut u16,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        from.send_rtp(ssrc, *seq, b"first");
        *seq += 1;
        if !to.receive(1, Duration::from_millis(2)).is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "nothing crossed within {within:?}"
        );
    }
}

/// With a 2 s heartbeat, the cascade forms when a meeting starts spanning
/// a pair (a notice through Redis, not the next beat) and goes when it
/// stops spanning it.
#[test]
fn the_cascade_forms_and_goes_at_once_not_at_the_next_heartbeat() {
    const BEAT: Duration = Duration::from_secs(2);
    const PROMPT: Duration = Duration::from_millis(400);
    let redis = Redis::start();
    let a = Node::start_beating(&redis.url(), "a", "", false, (2000, 4));
    let b = Node::start_beating(&redis.url(), "b", "", false, (2000, 4));
    await_listed(a.api, &["a", "b"]);
    let id = create(a.api, &standard());
    let mut on_a = speaker(a.api, &id, "a", 5001);
    let mut seq = 10;
    // B's first leg: from its admission to the first packet of A's
    // speaker on it (both relay legs formed, B's stream known to A).
    let started = Instant::now();
    let mut on_b = speaker(b.api, &id, "b", 5002);
    time_to_cross(&mut on_a, &on_b, 5001, &mut seq, BEAT);
    let a_to_b = started.elapsed();
    // B's speaker reaches A as soon as it is published.
    let mut back = 10;
    let b_to_a = time_to_cross(&mut on_b, &on_a, 5002, &mut back, BEAT);
    eprintln!(
        "first packet across the cascade: A to B {a_to_b:?} after B's join, B to A {b_to_a:?}"
    );
    assert!(
        a_to_b < PROMPT,
        "A to B took {a_to_b:?}: the cascade waited for a heartbeat"
    );
    assert!(b_to_a < PROMPT, "B to A took {b_to_a:?}");
    // B's leg goes: A stops sending to B at once (B counts what arrives,
    // authentic or not).
    let arrived = |api| {
        let text = http(api, "GET", "/metrics", None, None).text;
        support::metric(&text, "sluice_packets_in_total{mode=\"standard\"}")
            + support::metric(
                &text,
                "sluice_packets_dropped_total{reason=\"unknown_ssrc\"}",
            )
    };
    let gone = http(
        a.api,
        "DELETE",
        &format!("/v1/meetings/{id}/participants/{}", on_b.id),
        None,
        None,
    );
    assert_eq!(gone.status, 204, "{}", gone.text);
    let left = Instant::now();
    let mut quiet_since = None;
    let torn_down = loop {
        let before = arrived(b.api);
        for _ in 0..5 {
            on_a.send_rtp(5001, seq, b"after");
            seq += 1;
        }
        std::thread::sleep(Duration::from_millis(30));
        if arrived(b.api) == before {
            // Quiet for 100 ms in a row: the relay leg is gone.
            let since = *quiet_since.get_or_insert(left.elapsed());
            if left.elapsed() - since > Duration::from_millis(100) {
                break since;
            }
        } else {
            quiet_since = None;
        }
        assert!(left.elapsed() < BEAT * 2, "A kept sending to B");
    };
    eprintln!("relay leg A to B gone {torn_down:?} after B's last leg left");
    assert!(torn_down < PROMPT, "teardown took {torn_down:?}");
}
