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
