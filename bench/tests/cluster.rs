//! `sluice-bench cluster`, in small: a webinar of six viewers on one node
//! and over a local three-node cluster (a private redis-server) must
//! deliver every packet once, and each node must receive each stream once
//! (counted from the nodes' own metrics), the publisher's node sending one
//! copy per other node and nothing else extra.

use std::path::{Path, PathBuf};

use sluice_bench::cluster;
use sluice_bench::engine::EngineOptions;
use sluice_bench::scenario::Scenario;
use sluice_bench::targets::SluiceOptions;

/// The sluice binary: `SLUICE_BIN`, else the one cargo built next to this
/// test (as bench/tests/smoke.rs finds it).
fn sluice_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>")
        .join("sluice");
    if !binary.is_file() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "sluice", "--bin", "sluice"])
            .current_dir(&workspace)
            .status()
            .expect("run cargo build for the sluice binary");
        assert!(
            status.success(),
            "cargo build -p sluice --bin sluice failed"
        );
    }
    binary
}

const WEBINAR: &str = r#"
name = "webinar-6"
description = "1 publisher (audio + video) to 6 receive-only viewers"
meetings = 1
publishers = 1
subscribers = 6
e2ee_share = 0.0
profile = "AEAD_AES_256_GCM"
seconds = 2
ramp_seconds = 0.5

[audio]
per_publisher = 1
interval_ms = 20
min_bytes = 100
max_bytes = 200

[video]
per_publisher = 1
bitrate_kbps = 300
fps = 15
packet_bytes = 1000
"#;

#[test]
fn a_cascaded_webinar_reaches_each_node_once() {
    let file =
        std::env::temp_dir().join(format!("sluice-bench-cluster-{}.toml", std::process::id()));
    std::fs::write(&file, WEBINAR).expect("write the scenario");
    let scenario = Scenario::load(&file).expect("the scenario parses");
    let _ = std::fs::remove_file(&file);
    let sluice = SluiceOptions {
        binary: sluice_binary(),
        relay_cores: Vec::new(),
        workers: 1,
        io: "auto".into(),
        cluster: None,
    };
    // Every delivery verified: the latency counts below are per delivery.
    let verify_all = EngineOptions {
        verify_every: 1,
        ..EngineOptions::default()
    };
    let report = cluster::run(&scenario, &sluice, &verify_all, 3, &mut |_, _, _, _| {})
        .expect("both sides ran");
    for side in [&report.alone, &report.cluster] {
        assert!(side.published > 0, "{side:?}");
        assert_eq!(
            side.delivered,
            side.published * 6,
            "{} lost packets",
            side.target
        );
        assert_eq!(side.duplicated, 0, "{} duplicated packets", side.target);
    }
    let nodes = &report.cluster.per_node;
    assert_eq!(nodes.len(), 3);
    // In: each stream once per node (plus a latching report or two).
    for node in nodes {
        assert!(
            (1.0..1.05).contains(&node.in_per_published),
            "node {} received {:.3} packets per packet published",
            node.node,
            node.in_per_published
        );
    }
    // Out: n0 serves its 2 viewers and sends one copy to each other node;
    // n1 and n2 serve their 2 viewers each and send no copy on (split
    // horizon).
    let out: Vec<f64> = nodes.iter().map(|n| n.out_per_published).collect();
    for (got, want) in out.iter().zip([4.0, 2.0, 2.0]) {
        assert!(
            (got - want).abs() < 0.02,
            "packets out per published: {out:?}"
        );
    }
    let hop = report.cluster.hop_latency_ns.expect("hop latency measured");
    let local = report
        .cluster
        .local_latency_ns
        .expect("local latency measured");
    assert_eq!(hop.count, report.cluster.delivered * 4 / 6);
    assert_eq!(local.count, report.cluster.delivered * 2 / 6);
}
