//! The `sluice-bench` command line: `run` one scenario against several
//! targets side by side, search a target's `capacity`, `smoke`-test the
//! relay at a tiny load (CI), or measure `dialin` transcoding capacity.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sluice_bench::capacity::{self, MAX_LOSS, MAX_P99_NS, SearchEvent, SearchOptions};
use sluice_bench::engine::{self, EngineOptions, Progress};
use sluice_bench::measure::Measurement;
use sluice_bench::progress::StepLog;
use sluice_bench::report::{Report, TargetReport, markdown};
use sluice_bench::scenario::Scenario;
use sluice_bench::targets::{self, TargetOptions};

#[derive(Debug, Parser)]
#[command(
    name = "sluice-bench",
    version,
    about = "Capacity benchmark for the sluice media relay"
)]
struct Cli {
    /// No progress on stderr (the report still goes to stdout and --out).
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one scenario against each target in turn and compares them.
    Run {
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Grows the load step by step until loss > 0.1 % or p99 > 20 ms;
    /// reports the largest passing load per target.
    Capacity {
        #[command(flatten)]
        load: LoadArgs,
        /// Stop before offering more relayed streams than this.
        #[arg(long, default_value_t = 20_000)]
        max_streams: u64,
        /// Meetings added each step (default: the scenario's meetings).
        #[arg(long)]
        step: Option<u32>,
        /// Meetings at the first step (default: the step).
        #[arg(long)]
        start: Option<u32>,
        /// Bisection steps between the last passing and the first failing
        /// step.
        #[arg(long, default_value_t = 2)]
        refine: u32,
    },
    /// A few seconds of a tiny fixed load against the ceiling and sluice;
    /// fails if any packet is lost, duplicated or fails to decrypt.
    Smoke {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Dial-in transcoding capacity: concurrent G.711 <-> Opus calls per
    /// core before 20 ms frames are late, sluice's call bridge (3-speaker
    /// mix) next to rtpengine transcoding PCMU <-> Opus.
    Dialin(DialinArgs),
    /// The scenario on one sluice node, then cascaded over a local cluster
    /// of --nodes nodes on a private redis-server (publishers on node n0,
    /// receivers spread evenly): each node's packets per packet published,
    /// relay CPU per delivered packet, and the latency a cascade hop adds.
    /// --targets is not used.
    Cluster {
        #[command(flatten)]
        load: LoadArgs,
        /// Cluster nodes (at least 2).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
    },
    /// Video transcoding capacity: concurrent real-time 720p30 -> 360p
    /// transcodes per core before frames are late, sluice's transcoder
    /// participant (daemon, SRTP legs, media threads) next to one ffmpeg
    /// CLI process per stream with the same encoder settings.
    Transcode(TranscodeArgs),
    /// The `forward` target's process: plain forwarding through sluice's
    /// data plane, table on stdin (started by the bench, not by hand).
    #[command(hide = true)]
    ForwardRelay {
        /// Data-plane workers (0: one per allowed core).
        #[arg(long, default_value_t = 0)]
        workers: usize,
        /// auto, io_uring or recvmmsg.
        #[arg(long, default_value = "auto")]
        io: String,
    },
}

#[derive(Debug, Args)]
struct DialinArgs {
    /// Targets, comma-separated: sluice, rtpengine.
    #[arg(long, value_delimiter = ',', default_value = "sluice,rtpengine")]
    targets: Vec<String>,
    /// Seconds of real-time load per step.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// rtpengine only: seconds of traffic before each step's window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Pin sluice's bridge thread and rtpengine to the last half of the
    /// cores, the rtpengine load generator to the first half.
    #[arg(long)]
    cpu_pin: bool,
    /// Calls at the first step (each further step doubles).
    #[arg(long, default_value_t = 50)]
    start: usize,
    /// Run exactly this many calls once per target, no search.
    #[arg(long)]
    calls: Option<usize>,
    /// Never run more calls than this.
    #[arg(long, default_value_t = 4096)]
    max_calls: usize,
    /// Bisection steps after the first failing step.
    #[arg(long, default_value_t = 4)]
    refine: u32,
    /// sluice: Opus bitrate towards the meeting, bit/s (default: the
    /// bridge's dial-in setting).
    #[arg(long, default_value_t = sluice::media::OpusSettings::DIAL_IN.bitrate_bps)]
    opus_bitrate: u32,
    /// sluice: libopus complexity towards the meeting, 0-10 (default: the
    /// bridge's dial-in setting).
    #[arg(long, default_value_t = sluice::media::OpusSettings::DIAL_IN.complexity)]
    opus_complexity: u8,
    /// sluice: dial-in calls per meeting, sharing its mix (1: every call
    /// alone in its meeting, the worst case).
    #[arg(long, default_value_t = 1)]
    callers_per_meeting: usize,
    /// sluice: of each meeting's callers, how many talk all the time (the
    /// rest listen, their uplink suppressed); at least 1.
    #[arg(long, default_value_t = 1)]
    talking_per_meeting: usize,
    /// sluice: one receive leg per call, each decrypting its own copy of
    /// every meeting packet (the bridge before #17 item 4), instead of
    /// one per meeting and media thread.
    #[arg(long)]
    leg_per_call: bool,
    /// Where summary.md and report.json go.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct TranscodeArgs {
    /// Targets, comma-separated: sluice, ffmpeg.
    #[arg(long, value_delimiter = ',', default_value = "sluice,ffmpeg")]
    targets: Vec<String>,
    /// Cases, comma-separated: h264 (libx264), vp8 (libvpx).
    #[arg(long, value_delimiter = ',', default_value = "h264,vp8")]
    codecs: Vec<String>,
    /// Seconds of measured window per step.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds before each step's window (transcodes start, first key
    /// frame).
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// A frame is late when it comes more than this many ms after the
    /// stream's best frame.
    #[arg(long, default_value_t = sluice_bench::transcode::LATE_MS)]
    late_ms: f64,
    /// Pin the daemon and the ffmpeg processes to the last half of the
    /// cores, the bench's publishers and receivers to the first half.
    #[arg(long)]
    cpu_pin: bool,
    /// sluice: `[transcode] threads` (0: the daemon's default, a thread per
    /// transcode; N: N shared threads).
    #[arg(long, default_value_t = 0)]
    transcode_threads: usize,
    /// ffmpeg: what each process reads and writes: srtp (the bench's SRTP
    /// publisher through an SDP file, SRTP out: the same transcode as
    /// sluice's) or file (the clip's file with -re, plain RTP out).
    #[arg(long, default_value = "srtp")]
    ffmpeg_input: String,
    /// Streams at the first step (each further step doubles).
    #[arg(long, default_value_t = 1)]
    start: usize,
    /// Run exactly this many streams once per target, no search.
    #[arg(long)]
    streams: Option<usize>,
    /// Instead of searching: run these stream counts (comma-separated,
    /// ascending), every target at each before the next, so the targets
    /// see the same moment of a shared box; the largest passing is the
    /// largest N that passed (another process can make a step late, never
    /// on time).
    #[arg(long, value_delimiter = ',', conflicts_with = "streams")]
    sweep: Option<Vec<usize>>,
    /// Never run more streams than this.
    #[arg(long, default_value_t = 64)]
    max_streams: usize,
    /// Bisection steps after the first failing step.
    #[arg(long, default_value_t = 3)]
    refine: u32,
    /// The sluice binary (default: $SLUICE_BIN, else next to this program,
    /// else target/{release,debug}/sluice).
    #[arg(long)]
    sluice: Option<PathBuf>,
    /// Where summary.md and report.json go.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// Scenario file (see bench/scenarios/).
    #[arg(long)]
    scenario: PathBuf,
    /// Targets, comma-separated, in report order.
    #[arg(long, value_delimiter = ',', default_value = "ceiling,sluice")]
    targets: Vec<String>,
    /// Seconds of load after the ramp (overrides the scenario).
    #[arg(long)]
    seconds: Option<f64>,
    /// Meetings (overrides the scenario).
    #[arg(long)]
    meetings: Option<u32>,
    /// Share of E2EE meetings, 0..=1 (overrides the scenario).
    #[arg(long)]
    e2ee_share: Option<f64>,
    /// SRTP profile, e.g. AEAD_AES_128_GCM (overrides the scenario).
    #[arg(long)]
    profile: Option<String>,
    /// Ramp seconds (overrides the scenario).
    #[arg(long)]
    ramp: Option<f64>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// Pin the generator to the first half of the cores and the relay to
    /// the rest.
    #[arg(long)]
    cpu_pin: bool,
    /// Where summary.md, report.json and latency.svg go.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The sluice binary (default: $SLUICE_BIN, else next to this program,
    /// else target/{release,debug}/sluice).
    #[arg(long)]
    sluice: Option<PathBuf>,
    /// Relay packet workers (0: one per relay core).
    #[arg(long, default_value_t = 0)]
    relay_workers: usize,
    /// Relay packet I/O: auto, io_uring or recvmmsg.
    #[arg(long, default_value = "auto")]
    relay_io: String,
    /// Generator sender threads.
    #[arg(long, default_value_t = 1)]
    sender_threads: usize,
    /// Generator receiver threads.
    #[arg(long, default_value_t = 1)]
    receiver_threads: usize,
    /// Authenticate and decrypt 1 delivery in N (latency and jitter come
    /// from these); every delivery is counted from its clear RTP header.
    /// Default 16; `smoke` verifies every delivery.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    verify_sample: Option<u32>,
    /// Authenticate and decrypt every delivery (correctness runs).
    #[arg(long, conflicts_with = "verify_sample")]
    verify_all: bool,
    /// Send each packet as its own datagram (no UDP GSO for video frames).
    #[arg(long)]
    no_gso: bool,
    /// Do not let the generator's sockets take GRO trains (UDP_GRO).
    #[arg(long)]
    no_gro: bool,
}

impl LoadArgs {
    fn scenario(&self) -> Result<Scenario, String> {
        let mut s = Scenario::load(&self.scenario).map_err(|e| e.to_string())?;
        if let Some(v) = self.seconds {
            s.seconds = v;
        }
        if let Some(v) = self.meetings {
            s.meetings = v;
        }
        if let Some(v) = self.e2ee_share {
            s.e2ee_share = v;
        }
        if let Some(v) = &self.profile {
            s.profile.clone_from(v);
        }
        if let Some(v) = self.ramp {
            s.ramp_seconds = v;
        }
        s.check().map_err(|e| e.to_string())?;
        Ok(s)
    }
}

impl CommonArgs {
    /// 1 delivery in how many to verify, `default` unless asked.
    fn verify_every(&self, default: u32) -> u32 {
        if self.verify_all {
            1
        } else {
            self.verify_sample.unwrap_or(default)
        }
    }

    fn options(&self) -> (TargetOptions, EngineOptions) {
        let (generator_cores, relay_cores) = if self.cpu_pin {
            sluice_bench::pin::split_cores()
        } else {
            (Vec::new(), Vec::new())
        };
        (
            TargetOptions {
                sluice_binary: self.sluice.clone(),
                relay_cores,
                relay_workers: self.relay_workers,
                relay_io: self.relay_io.clone(),
            },
            EngineOptions {
                sender_threads: self.sender_threads,
                receiver_threads: self.receiver_threads,
                generator_cores,
                verify_every: self.verify_every(engine::DEFAULT_VERIFY_EVERY),
                gso: !self.no_gso,
                gro: !self.no_gro,
                ..EngineOptions::default()
            },
        )
    }
}

fn counters(counters: &Progress) -> String {
    use std::sync::atomic::Ordering;
    format!(
        "sent {}, received {}",
        counters.sent.load(Ordering::Relaxed),
        counters.received.load(Ordering::Relaxed)
    )
}

/// The figures a step's verdict rests on, for its progress line.
fn figures(m: &Measurement) -> String {
    format!(
        "loss {:.3} %, p99 {:.2} ms, {:.0} pps relayed",
        m.loss_ratio * 100.0,
        m.latency_ns.p99 as f64 / 1e6,
        m.relayed_pps
    )
}

/// A first guess of one step's wall time: ramp, load, set-up and drain.
fn step_guess(scenario: &Scenario) -> Duration {
    Duration::from_secs_f64(scenario.ramp_seconds + scenario.seconds + 2.0)
}

/// Runs `scenario` once against each target; `judge` says whether a
/// target's measurement passed (for the progress lines).
fn run_targets(
    mode: &str,
    scenario: &Scenario,
    names: &[String],
    common: &CommonArgs,
    quiet: bool,
    judge: fn(&Measurement) -> bool,
) -> Vec<TargetReport> {
    let (target_options, mut engine_options) = common.options();
    if mode == "smoke" {
        // The smoke is a correctness run: every delivery is decrypted.
        engine_options.verify_every = common.verify_every(1);
    }
    let profile = scenario
        .srtp_profile()
        .unwrap_or(sluice::srtp::SrtpProfile::AeadAes256Gcm);
    let mut log = StepLog::new(mode, names.len(), true, step_guess(scenario), quiet);
    let reports = names
        .iter()
        .map(|name| {
            let load = format!("{} relayed streams on {name}", scenario.relayed_streams());
            log.start(&load);
            let failed = |note: String| TargetReport {
                name: name.clone(),
                describe: "did not run".into(),
                points: Vec::new(),
                largest_passing: None,
                note: Some(note),
            };
            let mut target = match targets::open(name, profile, &target_options) {
                Ok(t) => t,
                Err(e) => {
                    log.finish(&load, false, &format!("did not start: {e}"));
                    return failed(e.to_string());
                }
            };
            let result = engine::run(&mut *target, scenario, &engine_options, &mut |e, t, c| {
                log.tick(e, t, &counters(c));
            });
            match result {
                Ok(m) => {
                    log.finish(&load, judge(&m), &figures(&m));
                    TargetReport {
                        name: name.clone(),
                        describe: m.describe.clone(),
                        points: vec![m],
                        largest_passing: None,
                        note: None,
                    }
                }
                Err(e) => {
                    log.finish(&load, false, &format!("failed: {e}"));
                    failed(e.to_string())
                }
            }
        })
        .collect();
    log.end("every target ran; the report follows");
    reports
}

fn finish(report: &Report, out: &std::path::Path) -> Result<(), String> {
    print!("{}", markdown(report));
    report.write(out)?;
    println!(
        "\nWrote {}/summary.md, report.json, latency.svg and report.html.",
        out.display()
    );
    Ok(())
}

fn default_out(mode: &str, scenario: &str) -> PathBuf {
    PathBuf::from("sluice-bench-results").join(format!("{mode}-{scenario}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command, cli.quiet) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sluice-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, quiet: bool) -> Result<(), String> {
    match command {
        Command::Run { load } => {
            let scenario = load.scenario()?;
            let reports = run_targets("run", &scenario, &load.targets, &load.common, quiet, |m| {
                m.passes(MAX_LOSS, MAX_P99_NS)
            });
            let failed: Vec<String> = reports
                .iter()
                .filter(|t| t.points.is_empty())
                .map(|t| format!("{}: {}", t.name, t.note.clone().unwrap_or_default()))
                .collect();
            let out = load
                .common
                .out
                .unwrap_or_else(|| default_out("run", &scenario.name));
            finish(&Report::new("run", scenario, reports), &out)?;
            if failed.is_empty() {
                Ok(())
            } else {
                Err(format!("some targets did not run: {}", failed.join("; ")))
            }
        }
        Command::Capacity {
            load,
            max_streams,
            step,
            start,
            refine,
        } => {
            let scenario = load.scenario()?;
            let (target_options, engine_options) = load.common.options();
            let profile = scenario.srtp_profile()?;
            let step = step.unwrap_or(scenario.meetings);
            let search = SearchOptions {
                start_meetings: start.unwrap_or(step),
                step_meetings: step,
                max_streams,
                refine,
            };
            let mut reports = Vec::new();
            for name in &load.targets {
                let mut log = StepLog::new(
                    &format!("capacity {name}"),
                    capacity::most_steps(&scenario, search),
                    false,
                    step_guess(&scenario),
                    quiet,
                );
                let mut load_now = String::new();
                let result = capacity::search(
                    &mut || targets::open(name, profile, &target_options),
                    &scenario,
                    search,
                    &engine_options,
                    &mut |event| match event {
                        SearchEvent::Started { streams, at_most } => {
                            load_now = format!("{streams} relayed streams");
                            log.at_most(at_most);
                            log.start(&load_now);
                        }
                        SearchEvent::Tick {
                            elapsed,
                            total,
                            counters: c,
                        } => log.tick(elapsed, total, &counters(c)),
                        SearchEvent::Finished {
                            measurement,
                            passed,
                        } => log.finish(&load_now, passed, &figures(measurement)),
                    },
                );
                match &result {
                    Ok(s) => log.end(&s.stopped),
                    Err(e) => log.end(&format!("stopped: {e}")),
                }
                reports.push(match result {
                    Ok(s) => TargetReport {
                        name: name.clone(),
                        describe: s
                            .points
                            .first()
                            .map_or_else(String::new, |m| m.describe.clone()),
                        points: s.points,
                        largest_passing: s.largest_passing,
                        note: Some(s.stopped),
                    },
                    Err(e) => TargetReport {
                        name: name.clone(),
                        describe: "did not run".into(),
                        points: Vec::new(),
                        largest_passing: None,
                        note: Some(e.to_string()),
                    },
                });
            }
            let out = load
                .common
                .out
                .unwrap_or_else(|| default_out("capacity", &scenario.name));
            finish(&Report::new("capacity", scenario, reports), &out)
        }
        Command::Smoke { common } => smoke(&common, quiet),
        Command::Dialin(args) => dialin(&args, quiet),
        Command::Transcode(args) => transcode(&args, quiet),
        Command::Cluster { load, nodes } => cluster(&load, nodes, quiet),
        Command::ForwardRelay { workers, io } => {
            sluice_bench::targets::forward::serve(workers, &io)
        }
    }
}

/// `cluster`: one node, then `nodes`, the same load (see
/// `sluice_bench::cluster`).
fn cluster(load: &LoadArgs, nodes: usize, quiet: bool) -> Result<(), String> {
    let scenario = load.scenario()?;
    let (target_options, engine_options) = load.common.options();
    let binary = match target_options.sluice_binary {
        Some(path) => path,
        None => targets::sluice::find_binary()?,
    };
    let sluice = targets::SluiceOptions {
        binary,
        relay_cores: target_options.relay_cores,
        workers: target_options.relay_workers,
        io: target_options.relay_io,
        cluster: None,
    };
    let mut log = StepLog::new("cluster", 2, true, step_guess(&scenario), quiet);
    let mut side_now = String::new();
    let report = sluice_bench::cluster::run(
        &scenario,
        &sluice,
        &engine_options,
        nodes,
        &mut |side, elapsed, total, c| {
            if side != side_now {
                if !side_now.is_empty() {
                    log.finish(&side_now, true, "measured");
                }
                side_now = side.to_owned();
                log.start(&side_now);
            }
            log.tick(elapsed, total, &counters(c));
        },
    );
    match &report {
        Ok(_) => {
            log.finish(&side_now, true, "measured");
            log.end("done");
        }
        Err(e) => log.end(&format!("stopped: {e}")),
    }
    let report = report?;
    let text = sluice_bench::cluster::markdown(&report);
    print!("{text}");
    let out = load
        .common
        .out
        .clone()
        .unwrap_or_else(|| default_out("cluster", &scenario.name));
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(out.join("summary.md"), text)
        .and_then(|()| std::fs::write(out.join("report.json"), json))
        .map_err(|e| format!("cannot write into {}: {e}", out.display()))?;
    println!("\nWrote {}/summary.md and report.json.", out.display());
    Ok(())
}

/// `dialin`: each target's capacity search (or one fixed load), then the
/// report.
fn dialin(args: &DialinArgs, quiet: bool) -> Result<(), String> {
    use sluice_bench::dialin::report::{DialinReport, Outcome, markdown};
    use sluice_bench::dialin::{self, SearchOptions, rtpengine, sluice as bridge};

    for t in &args.targets {
        if !dialin::TARGETS.contains(&t.as_str()) {
            return Err(format!(
                "no dial-in target called {t:?}; known: {}",
                dialin::TARGETS.join(", ")
            ));
        }
    }
    let (generator_cores, relay_cores) = if args.cpu_pin {
        sluice_bench::pin::split_cores()
    } else {
        (Vec::new(), Vec::new())
    };
    let search = match args.calls {
        Some(n) => SearchOptions {
            start: n,
            max: n,
            refine: 0,
        },
        None => SearchOptions {
            start: args.start,
            max: args.max_calls,
            refine: args.refine,
        },
    };
    let bridge_settings = bridge::BridgeSettings {
        opus_bitrate: args.opus_bitrate,
        opus_complexity: args.opus_complexity,
        seconds: args.seconds,
        callers_per_meeting: args.callers_per_meeting,
        talking_per_meeting: args.talking_per_meeting,
        leg_per_call: args.leg_per_call,
    };
    let engine_settings = rtpengine::EngineSettings {
        seconds: args.seconds,
        warmup_seconds: args.warmup,
        engine_cores: relay_cores.clone(),
        generator_cores,
    };
    let mut report = DialinReport {
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        search,
        sluice_settings: bridge_settings,
        rtpengine_settings: engine_settings.clone(),
        sluice: None,
        rtpengine: None,
    };
    if args.targets.iter().any(|t| t == "sluice") {
        let core = relay_cores.first().copied();
        // One thread owns the bridges, as one media-pool thread would.
        let searched = std::thread::spawn(move || {
            let mut log = StepLog::new(
                "dialin sluice",
                dialin::most_steps(search),
                search.refine == 0 && search.start >= search.max,
                Duration::from_secs_f64(bridge_settings.seconds + 1.0),
                quiet,
            );
            let searched = dialin::search(
                search,
                |n| {
                    let load = format!("{n} calls for {} s", bridge_settings.seconds);
                    log.start(&load);
                    let run = bridge::run(n, bridge_settings, core);
                    match &run {
                        Ok(run) => log.finish(
                            &load,
                            run.passes(),
                            &format!(
                                "{} of {} rounds late, round p99 {:.2} ms, CPU {:.0} % ({:.0} calls per busy core); slowest {}",
                                run.late_rounds,
                                run.rounds,
                                run.round_p99_us as f64 / 1000.0,
                                run.cpu_pct,
                                run.calls_per_busy_core,
                                run.slowest.first().map_or(String::new(), |r| format!(
                                    "{:.1} ms wall / {:.1} ms CPU, {} preempted, {} faults",
                                    r.wall_us as f64 / 1000.0,
                                    r.cpu_us as f64 / 1000.0,
                                    r.involuntary_switches,
                                    r.minor_faults
                                ))
                            ),
                        ),
                        Err(e) => log.finish(&load, false, &format!("failed: {e}")),
                    }
                    run
                },
                bridge::BridgeRun::passes,
            );
            match &searched {
                Ok(s) => log.end(&s.stopped),
                Err(e) => log.end(&format!("stopped: {e}")),
            }
            searched
        })
        .join()
        .map_err(|_| "the sluice bridge thread panicked".to_owned())?;
        report.sluice = Some(match searched {
            Ok(s) => Outcome::Searched(s),
            Err(e) => Outcome::Failed(e.to_string()),
        });
    }
    if args.targets.iter().any(|t| t == "rtpengine") {
        let mut log = StepLog::new(
            "dialin rtpengine",
            dialin::most_steps(search),
            search.refine == 0 && search.start >= search.max,
            Duration::from_secs_f64(engine_settings.seconds + engine_settings.warmup_seconds + 2.0),
            quiet,
        );
        let searched = dialin::search(
            search,
            |n| {
                let load = format!(
                    "{n} calls for {} s after {} s warm-up",
                    engine_settings.seconds, engine_settings.warmup_seconds
                );
                log.start(&load);
                let run = rtpengine::run(n, &engine_settings);
                match &run {
                    Ok(run) => log.finish(
                        &load,
                        run.passes(),
                        &format!(
                            "CPU {:.0} %, loss {:.3} % / {:.3} %, backlog growth {:.2} / {:.2}, at close {:.2} / {:.2} frames, generator late {:.2} %",
                            run.cpu_pct,
                            run.to_meeting.loss_pct,
                            run.to_caller.loss_pct,
                            run.to_meeting.backlog_growth_frames,
                            run.to_caller.backlog_growth_frames,
                            run.to_meeting.backlog_frames,
                            run.to_caller.backlog_frames,
                            run.generator_late_pct
                        ),
                    ),
                    Err(e) => log.finish(&load, false, &format!("failed: {e}")),
                }
                run
            },
            rtpengine::EngineRun::passes,
        );
        match &searched {
            Ok(s) => log.end(&s.stopped),
            Err(e) => log.end(&format!("stopped: {e}")),
        }
        report.rtpengine = Some(match searched {
            Ok(s) => Outcome::Searched(s),
            Err(e) => Outcome::Failed(e.to_string()),
        });
    }
    print!("{}", markdown(&report));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("sluice-bench-results").join("dialin"));
    report.write(&out)?;
    println!(
        "\nWrote {}/summary.md, report.json and report.html.",
        out.display()
    );
    Ok(())
}

/// The CI smoke: any loss, duplicate or decrypt failure at a tiny load is
/// a bug, not a capacity limit.
fn smoke(common: &CommonArgs, quiet: bool) -> Result<(), String> {
    let scenario = Scenario::smoke();
    let names = ["ceiling".to_owned(), "sluice".to_owned()];
    let reports = run_targets(
        "smoke",
        &scenario,
        &names,
        common,
        quiet,
        Measurement::flawless,
    );
    let mut problems = Vec::new();
    for t in &reports {
        match t.points.first() {
            None => problems.push(format!(
                "{} did not run: {}",
                t.name,
                t.note.clone().unwrap_or_default()
            )),
            Some(m) if !m.flawless() => problems.push(format!(
                "{} lost {} of {} packets, duplicated {}, {} failed to decrypt, {} could not be sent",
                t.name, m.lost, m.expected, m.duplicated, m.decrypt_failures, m.send_failures
            )),
            Some(_) => {}
        }
    }
    let out = common.out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sluice-bench-smoke-{}", std::process::id()))
    });
    finish(&Report::new("smoke", scenario, reports), &out)?;
    std::thread::sleep(Duration::from_millis(10));
    if problems.is_empty() {
        println!("smoke passed: every packet arrived once and decrypted, on every target.");
        Ok(())
    } else {
        Err(format!(
            "smoke failed at a load far below capacity: {}",
            problems.join("; ")
        ))
    }
}

/// `transcode`: per case, each target's capacity search (or one fixed
/// load), then the report.
fn transcode(args: &TranscodeArgs, quiet: bool) -> Result<(), String> {
    use sluice_bench::dialin::{self, SearchOptions};
    use sluice_bench::transcode::{
        self as tc, Case, CaseReport, Outcome, StepSettings, TranscodeReport,
    };

    for t in &args.targets {
        if !tc::TARGETS.contains(&t.as_str()) {
            return Err(format!(
                "no transcode target called {t:?}; known: {}",
                tc::TARGETS.join(", ")
            ));
        }
    }
    let cases = args
        .codecs
        .iter()
        .map(|c| {
            Case::from_name(c)
                .ok_or_else(|| format!("no transcode case called {c:?}; use h264, vp8 or both"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let in_range = args.seconds > 0.0
        && args.seconds <= 600.0
        && (0.0..=60.0).contains(&args.warmup)
        && args.late_ms > 0.0;
    if !in_range {
        return Err(
            "use --seconds above 0 and at most 600, --warmup from 0 to 60 and --late-ms above 0"
                .into(),
        );
    }
    if args.streams == Some(0) || args.start == 0 {
        return Err("use --streams and --start of at least 1".into());
    }
    if let Some(sweep) = &args.sweep
        && (sweep.is_empty() || sweep.contains(&0) || !sweep.is_sorted() || sweep.len() > 32)
    {
        return Err("use --sweep with 1 to 32 stream counts, ascending, each at least 1".into());
    }
    if args.targets.iter().any(|t| t == "ffmpeg") {
        for (tool, arg) in [("ffmpeg", "-version"), ("setpriv", "--version")]
            .into_iter()
            .chain(args.cpu_pin.then_some(("taskset", "--version")))
        {
            let ran = std::process::Command::new(tool)
                .arg(arg)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            if !ran.is_ok_and(|s| s.success()) {
                return Err(format!(
                    "the ffmpeg target needs `{tool}` on PATH; install it (Debian: ffmpeg, util-linux) or pass --targets sluice"
                ));
            }
        }
    }
    let ffmpeg_input = tc::ffmpeg::FfmpegInput::from_name(&args.ffmpeg_input).ok_or_else(|| {
        format!(
            "no ffmpeg input called {:?}; use srtp or file",
            args.ffmpeg_input
        )
    })?;
    let (generator_cores, transcode_cores) = if args.cpu_pin {
        sluice_bench::pin::split_cores()
    } else {
        (Vec::new(), Vec::new())
    };
    let settings = StepSettings {
        seconds: args.seconds,
        warmup: args.warmup,
        late_ms: args.late_ms,
        transcode_cores,
        generator_cores,
        threads: args.transcode_threads,
        ffmpeg_input,
        sluice_binary: args.sluice.clone(),
    };
    let search = match args.streams {
        Some(n) => SearchOptions {
            start: n,
            max: n,
            refine: 0,
        },
        None => SearchOptions {
            start: args.start,
            max: args.max_streams,
            refine: args.refine,
        },
    };
    let mut report = TranscodeReport {
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        load_average: tc::load_average(),
        settings: settings.clone(),
        cases: Vec::new(),
    };
    let step_guess = Duration::from_secs_f64(args.seconds + args.warmup + 3.0);
    for case in cases {
        let clip = tc::clip::make(case, settings.clip_frames()).map_err(|e| e.to_string())?;
        let mut entry = CaseReport {
            case,
            sluice: None,
            ffmpeg: None,
        };
        if let Some(sweep) = &args.sweep {
            let mut log = StepLog::new(
                &format!("transcode {} sweep", case.name()),
                sweep.len() * args.targets.len(),
                true,
                step_guess,
                quiet,
            );
            let mut points: [Vec<tc::StepRun>; 2] = [Vec::new(), Vec::new()];
            let mut failures: [Option<String>; 2] = [None, None];
            for &n in sweep {
                for (i, target) in TARGETS_ORDER.iter().enumerate() {
                    if !args.targets.iter().any(|t| t == target) || failures[i].is_some() {
                        continue;
                    }
                    let load = format!("{n} streams on {target} for {} s", settings.seconds);
                    log.start(&load);
                    let run = if *target == "sluice" {
                        tc::sluice::run(case, n, &clip, &settings)
                    } else {
                        tc::ffmpeg::run(case, n, &clip, &settings)
                    };
                    match run {
                        Ok(r) => {
                            log.finish(&load, r.passes(), &r.line());
                            points[i].push(r);
                        }
                        Err(e) => {
                            log.finish(&load, false, &format!("failed: {e}"));
                            failures[i] = Some(e.to_string());
                        }
                    }
                }
            }
            log.end("the sweep is done");
            let [sluice_points, ffmpeg_points] = points;
            let [sluice_failed, ffmpeg_failed] = failures;
            let outcome = |points: Vec<tc::StepRun>, failed: Option<String>, target: &str| {
                if !args.targets.iter().any(|t| t == target) {
                    return None;
                }
                Some(match failed {
                    Some(e) if points.is_empty() => Outcome::Failed(e),
                    _ => Outcome::Searched(tc::swept(points)),
                })
            };
            entry.sluice = outcome(sluice_points, sluice_failed, "sluice");
            entry.ffmpeg = outcome(ffmpeg_points, ffmpeg_failed, "ffmpeg");
            report.cases.push(entry);
            continue;
        }
        for target in TARGETS_ORDER {
            if !args.targets.iter().any(|t| t == target) {
                continue;
            }
            let mut log = StepLog::new(
                &format!("transcode {} {target}", case.name()),
                dialin::most_steps(search),
                search.refine == 0 && search.start >= search.max,
                step_guess,
                quiet,
            );
            let searched = dialin::search(
                search,
                |n| {
                    let load = format!("{n} streams for {} s", settings.seconds);
                    log.start(&load);
                    let run = if target == "sluice" {
                        tc::sluice::run(case, n, &clip, &settings)
                    } else {
                        tc::ffmpeg::run(case, n, &clip, &settings)
                    };
                    match &run {
                        Ok(r) => log.finish(&load, r.passes(), &r.line()),
                        Err(e) => log.finish(&load, false, &format!("failed: {e}")),
                    }
                    run
                },
                tc::StepRun::passes,
            );
            let outcome = match searched {
                Ok(mut s) => {
                    s.stopped = s.stopped.replace("calls", "streams");
                    log.end(&s.stopped);
                    Outcome::Searched(s)
                }
                Err(e) => {
                    log.end(&format!("stopped: {e}"));
                    Outcome::Failed(e.to_string())
                }
            };
            if target == "sluice" {
                entry.sluice = Some(outcome);
            } else {
                entry.ffmpeg = Some(outcome);
            }
        }
        report.cases.push(entry);
    }
    let text = tc::markdown(&report);
    print!("{text}");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("sluice-bench-results").join("transcode"));
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(out.join("summary.md"), text)
        .and_then(|()| std::fs::write(out.join("report.json"), json))
        .map_err(|e| format!("cannot write into {}: {e}", out.display()))?;
    println!("\nWrote {}/summary.md and report.json.", out.display());
    let failed: Vec<String> = report
        .cases
        .iter()
        .flat_map(|c| [("sluice", &c.sluice), ("ffmpeg", &c.ffmpeg)].map(|(n, o)| (c.case, n, o)))
        .filter_map(|(case, n, o)| match o {
            Some(Outcome::Failed(e)) => Some(format!("{} {n}: {e}", case.name())),
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "some transcode runs could not be made: {}",
            failed.join("; ")
        ))
    }
}

/// `transcode`'s targets in the order they run.
const TARGETS_ORDER: [&str; 2] = ["sluice", "ffmpeg"];
