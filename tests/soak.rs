//! Item 7 of #12: a bounded soak. The relay (in-process, both workers)
//! relays a four-party audio meeting at 50 packets per second per
//! participant, while every 2 s a fifth participant joins, publishes,
//! sends and leaves (snapshot churn: worker state made and pruned). It
//! checks that the resident set stays flat after a warm-up, that no
//! worker panicked, and that the meeting kept flowing.
//!
//! 60 s by default (CI); `SLUICE_SOAK_SECS=1800 cargo test --release
//! --test soak -- --nocapture` is the 30-minute form (bench/README.md,
//! not in CI). `SLUICE_SOAK_IO` picks the backend (default `auto`).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::config::Config;
use sluice::daemon::Daemon;
use support::{Endpoint, http};

const PARTIES: usize = 4;
const TICK: Duration = Duration::from_millis(20);

fn post(api: SocketAddr, path: &str, body: &Value) -> Value {
    let r = http(api, "POST", path, Some(body), None);
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

fn join(api: SocketAddr, id: &str, name: &str, ssrc: u32) -> Endpoint {
    let body = post(
        api,
        &format!("/v1/meetings/{id}/participants"),
        &json!({"name": name}),
    );
    let who = Endpoint::from_admission(&body);
    post(
        api,
        &format!("/v1/meetings/{id}/participants/{}/streams", who.id),
        &json!({"ssrc": ssrc, "kind": "audio", "codec": "opus", "payload_type": 111}),
    );
    who.socket.set_nonblocking(true).expect("nonblocking");
    who
}

/// Resident set of this process (the relay runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// The sum of every sample of `name` (all label sets).
fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Reads whatever waits on `who`'s socket; returns how many datagrams.
fn drain(who: &Endpoint) -> u64 {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while who.socket.recv(&mut buf).is_ok() {
        n += 1;
    }
    n
}

#[test]
fn rss_stays_flat_and_no_worker_panics() {
    let secs: u64 = std::env::var("SLUICE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let io = std::env::var("SLUICE_SOAK_IO").unwrap_or_else(|_| "auto".to_owned());
    let text = format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n\n[media]\nlisten = \"127.0.0.1:0\"\nworkers = 2\nio = \"{io}\"\npin_cores = false\n\n[sip]\nenabled = false\n"
    );
    let daemon = Daemon::start(&Config::parse(&text, "test.toml").expect("config")).expect("start");
    let api = daemon.control_addr();
    let owner = json!({"mode": "e2ee", "owner": {"account": "alice", "verified": true}});
    let id = post(api, "/v1/meetings", &owner)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut people: Vec<Endpoint> = (0..PARTIES)
        .map(|i| join(api, &id, &format!("p{i}"), 0x100 + i as u32))
        .collect();

    let total = Duration::from_secs(secs);
    // The first fifth (at least 10 s) warms up: allocators, arenas and
    // maps reach their working size.
    let warm = (total / 5).max(Duration::from_secs(10)).min(total);
    let start = Instant::now();
    let mut next_tick = start;
    let mut next_churn = start;
    let mut next_sample = start + warm;
    let (mut seq, mut churned, mut sent) = (0u16, 0u32, 0u64);
    let mut received = [0u64; PARTIES];
    let mut baseline: Option<u64> = None;
    let mut peak = 0;
    while start.elapsed() < total {
        for (i, who) in people.iter_mut().enumerate() {
            who.send_rtp(0x100 + i as u32, seq, &[i as u8; 120]);
            received[i] += drain(who);
        }
        sent += 1;
        seq = seq.wrapping_add(1);
        if Instant::now() >= next_churn {
            let mut guest = join(api, &id, &format!("guest{churned}"), 0x1000 + churned);
            for s in 0..3 {
                guest.send_rtp(0x1000 + churned, s, b"hello");
            }
            let r = http(
                api,
                "DELETE",
                &format!("/v1/meetings/{id}/participants/{}", guest.id),
                None,
                None,
            );
            assert!(r.status == 200 || r.status == 204, "{}", r.text);
            churned += 1;
            next_churn += Duration::from_secs(2);
        }
        if Instant::now() >= next_sample {
            let rss = rss_kib();
            baseline.get_or_insert(rss);
            peak = peak.max(rss);
            next_sample += Duration::from_secs(1);
        }
        next_tick += TICK;
        if let Some(wait) = next_tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    for (i, who) in people.iter().enumerate() {
        received[i] += drain(who);
    }
    let metrics = http(api, "GET", "/metrics", None, None).text;
    let restarts = sum(&metrics, "sluice_worker_restarts_total");
    let baseline = baseline.unwrap_or_else(rss_kib);
    let growth = peak.saturating_sub(baseline);
    let summary = format!(
        "{secs} s on {io}: {sent} ticks, {churned} guests, received {received:?}, RSS {baseline} KiB \
         after warm-up, peak {peak} KiB (+{growth} KiB), {restarts} restarts"
    );
    eprintln!("soak: {summary}");
    assert_eq!(restarts, 0.0, "{summary}");
    // Flat: within 4 MiB or 5 % of the warm set, whichever is larger (the
    // test's own HTTP and JSON come and go in the same process).
    assert!(growth <= (4 << 10).max(baseline / 20), "{summary}");
    // The meeting flowed: each got (nearly) every other party's packets.
    let expected = sent * (PARTIES as u64 - 1);
    for (i, got) in received.iter().enumerate() {
        assert!(
            *got >= expected * 9 / 10,
            "participant {i} got {got} of {expected}: {summary}"
        );
    }
    daemon.shutdown();
}
