//! `sluice-bench cluster --nodes N`: the same load on one sluice node and
//! then on a local cluster of N nodes (a private Redis, publishers on
//! node `n0`, receivers spread evenly, see [`crate::targets::cluster`]),
//! in one run, so the figures compare like with like:
//!
//! - each node's authenticated packets in and packets out over the load,
//!   from its `/metrics`, per packet published: each node should receive
//!   each stream once (1.00) and `n0` send each packet once more per
//!   other node (the inter-node copies);
//! - relay CPU (every node's utime + stime, from `/proc`) per delivered
//!   packet, cluster against one node;
//! - the one-way latency of the receivers behind a cascade hop against
//!   those on the publisher's node, in the same run: the added latency of
//!   a hop.

use std::net::SocketAddr;

use serde::Serialize;

use crate::engine::{self, EngineOptions, Progress};
use crate::histogram::Percentiles;
use crate::http;
use crate::measure::Measurement;
use crate::procstat::{TICKS_PER_SECOND, cpu_ticks};
use crate::scenario::Scenario;
use crate::target::Target;
use crate::targets::{Sluice, SluiceCluster, SluiceOptions};

/// One node's packets over the load.
#[derive(Debug, Clone, Serialize)]
pub struct NodeFigures {
    /// Its id (`n0`, ...; `alone` for the single node).
    pub node: String,
    /// Authenticated packets received.
    pub packets_in: u64,
    /// Packets sent.
    pub packets_out: u64,
    /// `packets_in` per packet published: 1.00 when each stream arrives
    /// once.
    pub in_per_published: f64,
    /// `packets_out` per packet published.
    pub out_per_published: f64,
}

/// One side of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// `sluice` (one node) or `cluster`.
    pub target: String,
    /// Nodes.
    pub nodes: usize,
    /// Packets published.
    pub published: u64,
    /// Distinct packets delivered to receivers.
    pub delivered: u64,
    /// Lost deliveries / expected.
    pub loss_ratio: f64,
    /// Deliveries that arrived twice.
    pub duplicated: u64,
    /// Relay CPU over the load, seconds (every node together).
    pub relay_cpu_seconds: f64,
    /// Relay CPU per delivered packet, µs.
    pub cpu_us_per_delivered: f64,
    /// One-way latency of every delivery, ns.
    pub latency_ns: Percentiles,
    /// Receivers on the publisher's node only (cluster), ns.
    pub local_latency_ns: Option<Percentiles>,
    /// Receivers behind one cascade hop (cluster), ns.
    pub hop_latency_ns: Option<Percentiles>,
    /// Per node.
    pub per_node: Vec<NodeFigures>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// Scenario name.
    pub scenario: String,
    /// Cluster nodes.
    pub nodes: usize,
    /// One node.
    pub alone: Side,
    /// The cluster.
    pub cluster: Side,
    /// Cluster CPU per delivered packet / one node's.
    pub cpu_per_delivered_ratio: f64,
    /// p99 behind a hop minus p99 on the publisher's node, µs.
    pub hop_added_p99_us: f64,
}

/// Authenticated packets in and packets sent, both modes, of `api`'s node.
fn packet_counts(api: SocketAddr) -> Result<(u64, u64), String> {
    let text = http::request(api, "GET", "/metrics", None)
        .map_err(|e| format!("cannot read {api}/metrics: {e}"))?
        .text;
    let sum = |name: &str| {
        ["standard", "e2ee"]
            .iter()
            .map(|mode| http::metric(&text, &format!("{name}{{mode=\"{mode}\"}}")))
            .sum::<f64>() as u64
    };
    Ok((
        sum("sluice_packets_in_total"),
        sum("sluice_packets_out_total"),
    ))
}

fn cpu_of(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| cpu_ticks(&pid.to_string()))
        .sum()
}

/// Runs `scenario` against `target` (nodes `apis`, processes `pids`)
/// with the counters read before and after.
fn measure_side(
    target: &mut dyn Target,
    names: &[String],
    apis: &[SocketAddr],
    pids: &[u32],
    scenario: &Scenario,
    options: &EngineOptions,
    progress: &mut dyn FnMut(f64, f64, &Progress),
) -> Result<Side, String> {
    let before: Vec<(u64, u64)> = apis
        .iter()
        .map(|a| packet_counts(*a))
        .collect::<Result<_, _>>()?;
    let cpu_before = cpu_of(pids);
    let m: Measurement =
        engine::run(target, scenario, options, progress).map_err(|e| e.to_string())?;
    let cpu_after = cpu_of(pids);
    let after: Vec<(u64, u64)> = apis
        .iter()
        .map(|a| packet_counts(*a))
        .collect::<Result<_, _>>()?;
    let per = |n: u64| {
        if m.sent == 0 {
            0.0
        } else {
            n as f64 / m.sent as f64
        }
    };
    let per_node = names
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(node, (b, a))| {
            let (packets_in, packets_out) = (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1));
            NodeFigures {
                node: node.clone(),
                packets_in,
                packets_out,
                in_per_published: per(packets_in),
                out_per_published: per(packets_out),
            }
        })
        .collect();
    let relay_cpu_seconds = cpu_after.saturating_sub(cpu_before) as f64 / TICKS_PER_SECOND;
    Ok(Side {
        target: m.target.clone(),
        nodes: apis.len(),
        published: m.sent,
        delivered: m.received,
        loss_ratio: m.loss_ratio,
        duplicated: m.duplicated,
        relay_cpu_seconds,
        cpu_us_per_delivered: if m.received == 0 {
            0.0
        } else {
            relay_cpu_seconds * 1e6 / m.received as f64
        },
        latency_ns: m.latency_ns,
        local_latency_ns: m.local_latency_ns,
        hop_latency_ns: m.hop_latency_ns,
        per_node,
    })
}

/// One node, then `nodes` nodes, under the same `scenario`.
pub fn run(
    scenario: &Scenario,
    sluice: &SluiceOptions,
    engine_options: &EngineOptions,
    nodes: usize,
    progress: &mut dyn FnMut(&str, f64, f64, &Progress),
) -> Result<ClusterReport, String> {
    let alone = {
        let mut one = Sluice::start(sluice).map_err(|e| e.to_string())?;
        let (apis, pids) = (vec![one.api()], one.pid().into_iter().collect::<Vec<_>>());
        measure_side(
            &mut one,
            &["alone".to_owned()],
            &apis,
            &pids,
            scenario,
            engine_options,
            &mut |e, t, p| progress("sluice", e, t, p),
        )?
    };
    let cluster = {
        let mut many = SluiceCluster::start(sluice, nodes).map_err(|e| e.to_string())?;
        let (apis, pids) = (many.apis(), many.pids());
        let names: Vec<String> = (0..nodes).map(crate::targets::cluster::node_id).collect();
        measure_side(
            &mut many,
            &names,
            &apis,
            &pids,
            scenario,
            engine_options,
            &mut |e, t, p| progress("cluster", e, t, p),
        )?
    };
    let ratio = if alone.cpu_us_per_delivered > 0.0 {
        cluster.cpu_us_per_delivered / alone.cpu_us_per_delivered
    } else {
        0.0
    };
    let hop_added_p99_us = match (&cluster.hop_latency_ns, &cluster.local_latency_ns) {
        (Some(hop), Some(local)) => (hop.p99 as f64 - local.p99 as f64) / 1e3,
        _ => 0.0,
    };
    Ok(ClusterReport {
        scenario: scenario.name.clone(),
        nodes,
        alone,
        cluster,
        cpu_per_delivered_ratio: ratio,
        hop_added_p99_us,
    })
}

fn ms(p: Option<&Percentiles>, f: fn(&Percentiles) -> u64) -> String {
    p.map_or_else(|| "–".to_owned(), |p| format!("{:.3}", f(p) as f64 / 1e6))
}

/// The report as Markdown.
pub fn markdown(report: &ClusterReport) -> String {
    let mut out = format!(
        "# {} on one node and cascaded over {} nodes\n\n\
         | | nodes | published | delivered | loss | dup | relay CPU s | CPU µs / delivered | p50 ms | p99 ms | p50 local / behind a hop ms | p99 local / behind a hop ms |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        report.scenario, report.nodes
    );
    for side in [&report.alone, &report.cluster] {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.4} % | {} | {:.2} | {:.3} | {:.3} | {:.3} | {} / {} | {} / {} |\n",
            side.target,
            side.nodes,
            side.published,
            side.delivered,
            side.loss_ratio * 100.0,
            side.duplicated,
            side.relay_cpu_seconds,
            side.cpu_us_per_delivered,
            side.latency_ns.p50 as f64 / 1e6,
            side.latency_ns.p99 as f64 / 1e6,
            ms(side.local_latency_ns.as_ref(), |p| p.p50),
            ms(side.hop_latency_ns.as_ref(), |p| p.p50),
            ms(side.local_latency_ns.as_ref(), |p| p.p99),
            ms(side.hop_latency_ns.as_ref(), |p| p.p99),
        ));
    }
    out.push_str(
        "\nPackets per packet published, per node (in: authenticated packets received; \
         out: packets sent):\n\n| node | in | out | in / published | out / published |\n|---|---|---|---|---|\n",
    );
    for side in [&report.alone, &report.cluster] {
        for n in &side.per_node {
            out.push_str(&format!(
                "| {} | {} | {} | {:.3} | {:.3} |\n",
                n.node, n.packets_in, n.packets_out, n.in_per_published, n.out_per_published
            ));
        }
    }
    out.push_str(&format!(
        "\nCluster CPU per delivered packet / one node's: {:.2}. Added p99 one-way latency of a cascade hop: {:.0} µs.\n",
        report.cpu_per_delivered_ratio, report.hop_added_p99_us
    ));
    out
}
