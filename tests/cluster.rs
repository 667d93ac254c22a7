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
        eventually(Duration::from_secs(5), "both nodes listed", || {
            (node_ids(api)? == ["a", "b"]).then_some(())
        });
    }
    let listed = nodes(a.api);
    assert_eq!(listed[0]["api"], a.api.to_string());
    assert_eq!(listed[0]["media"], a.media.to_string());
    assert_eq!(listed[0]["self"], true);
    assert_eq!(listed[1]["self"], false);
    assert_eq!(listed[1]["load"]["legs"], 0);
    assert_eq!(listed[1]["load"]["max_legs"], 5000);

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
    eventually(Duration::from_secs(5), "both nodes listed", || {
        (node_ids(a.api)? == ["a", "b"]).then_some(())
    });
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
    eventually(Duration::from_secs(5), "a listed", || {
        (node_ids(a.api)? == ["a"]).then_some(())
    });
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
