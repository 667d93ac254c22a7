//! Counters the packet workers keep, and the Prometheus text the control
//! API serves at `/metrics`.
//!
//! Each worker owns one [`WorkerCounters`] and bumps it with relaxed atomic
//! adds on memory no other thread writes: no lock and no shared cache line
//! per packet. A scrape sums the workers into a fresh registry at the edge
//! ([`MetricsHub::render`]). Labels are enums with a handful of values;
//! nothing is labelled per meeting or per participant.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::crypto::CryptoMetrics;
use crate::relay::MeetingMode;

/// Upper bounds (seconds) of the in-relay latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025,
];

/// Why the data plane dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// SRTP/SRTCP authentication failed (forged, corrupted, wrong key).
    AuthFailed,
    /// Replayed, or older than the replay window.
    Replayed,
    /// No stream or leg is known for the SSRC.
    UnknownSsrc,
    /// Not parseable as RTP or RTCP.
    Malformed,
    /// The receiver has no latched address yet.
    NotLatched,
    /// The SRTP index this copy would be sealed under may not be used: a
    /// WHEP slot's index already claimed by another worker, an index a
    /// restarted worker skipped past (its journal's reservation), or a
    /// key whose indices are used up.
    IndexRefused,
    /// The kernel refused the send (after GSO runs were retried datagram
    /// by datagram).
    SendFailed,
    /// Any other refusal (stream table full, a packet too large for the
    /// relay's buffers, packets in flight when a worker restarted).
    Other,
}

impl Drop {
    /// Every reason, in label order.
    pub const ALL: [Self; 8] = [
        Self::AuthFailed,
        Self::Replayed,
        Self::UnknownSsrc,
        Self::Malformed,
        Self::NotLatched,
        Self::IndexRefused,
        Self::SendFailed,
        Self::Other,
    ];

    /// The `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            Self::AuthFailed => "auth_failed",
            Self::Replayed => "replayed",
            Self::UnknownSsrc => "unknown_ssrc",
            Self::Malformed => "malformed",
            Self::NotLatched => "not_latched",
            Self::IndexRefused => "index_refused",
            Self::SendFailed => "send_failed",
            Self::Other => "other",
        }
    }
}

fn mode_slot(mode: MeetingMode) -> usize {
    match mode {
        MeetingMode::E2ee => 0,
        MeetingMode::Standard => 1,
    }
}

const MODES: [MeetingMode; 2] = [MeetingMode::E2ee, MeetingMode::Standard];

/// One worker's counters. Written by that worker only.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    packets_in: [AtomicU64; 2],
    bytes_in: [AtomicU64; 2],
    packets_out: [AtomicU64; 2],
    bytes_out: [AtomicU64; 2],
    drops: [AtomicU64; Drop::ALL.len()],
    latches: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_ns: AtomicU64,
    busy_ns: AtomicU64,
    /// Times the worker's loop panicked and was restarted.
    restarts: AtomicU64,
    /// Busy share of the last measuring window, in millionths.
    busy_ppm: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl WorkerCounters {
    /// An authenticated packet of `bytes` came in from a leg of a `mode` meeting.
    pub fn received(&self, mode: MeetingMode, bytes: usize) {
        bump(&self.packets_in[mode_slot(mode)], 1);
        bump(&self.bytes_in[mode_slot(mode)], bytes as u64);
    }

    /// A packet of `bytes` was handed to the socket for a `mode` meeting.
    pub fn sent(&self, mode: MeetingMode, bytes: usize) {
        bump(&self.packets_out[mode_slot(mode)], 1);
        bump(&self.bytes_out[mode_slot(mode)], bytes as u64);
    }

    /// A packet was dropped.
    pub fn dropped(&self, why: Drop) {
        let slot = Drop::ALL
            .iter()
            .position(|d| *d == why)
            .unwrap_or(Drop::ALL.len() - 1);
        bump(&self.drops[slot], 1);
    }

    /// A leg's address was latched or moved.
    pub fn latched(&self) {
        bump(&self.latches, 1);
    }

    /// One sampled receive-to-send latency, in nanoseconds.
    pub fn latency_sample(&self, nanos: u64) {
        let secs = nanos as f64 / 1e9;
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        bump(&self.latency_buckets[slot], 1);
        bump(&self.latency_sum_ns, nanos);
    }

    /// The worker spent `nanos` handling one batch (from its first
    /// receive to its send): summed, this is the worker's busy time, and
    /// its rate the share of one core the worker uses.
    pub fn add_busy(&self, nanos: u64) {
        bump(&self.busy_ns, nanos);
    }

    /// The worker's loop panicked and was restarted with fresh state.
    pub fn restarted(&self) {
        bump(&self.restarts, 1);
    }

    /// How often the worker's loop was restarted after a panic.
    pub fn restarts(&self) -> u64 {
        Self::read(&self.restarts)
    }

    /// Records the share of the last window the worker spent handling
    /// packets rather than waiting for them (0 to 1).
    pub fn set_busy(&self, fraction: f64) {
        let ppm = (fraction.clamp(0.0, 1.0) * 1e6) as u64;
        self.busy_ppm.store(ppm, Ordering::Relaxed);
    }

    /// The busy share of the worker's last window (0 to 1).
    pub fn busy(&self) -> f64 {
        Self::read(&self.busy_ppm) as f64 / 1e6
    }

    fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The counters now, for tests and debugging (scrapes go through
    /// [`MetricsHub::render`]).
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            packets_in: self.packets_in.each_ref().map(Self::read),
            bytes_in: self.bytes_in.each_ref().map(Self::read),
            drops: self.drops.each_ref().map(Self::read),
            latches: Self::read(&self.latches),
        }
    }
}

/// A copy of one worker's receive-side counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Authenticated packets received, by mode (`[e2ee, standard]`).
    pub packets_in: [u64; 2],
    /// Their bytes, by mode.
    pub bytes_in: [u64; 2],
    /// Drops, in [`Drop::ALL`] order.
    pub drops: [u64; Drop::ALL.len()],
    /// Latches set or moved.
    pub latches: u64,
}

impl CounterSnapshot {
    /// Packets dropped for `why`.
    pub fn dropped(&self, why: Drop) -> u64 {
        Drop::ALL
            .iter()
            .position(|d| *d == why)
            .and_then(|slot| self.drops.get(slot))
            .copied()
            .unwrap_or(0)
    }

    /// Authenticated packets received from `mode` meetings.
    pub fn received(&self, mode: MeetingMode) -> u64 {
        self.packets_in[mode_slot(mode)]
    }
}

/// Numbers the control plane knows at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct ControlGauges {
    /// Meetings by mode (`[e2ee, standard]`).
    pub meetings: [u64; 2],
    /// Legs (participants) by mode.
    pub legs: [u64; 2],
    /// Published streams by mode.
    pub streams: [u64; 2],
}

impl ControlGauges {
    /// Adds one to `field[mode]`.
    pub fn count(field: &mut [u64; 2], mode: MeetingMode) {
        field[mode_slot(mode)] += 1;
    }
}

/// Upper bounds (seconds) of the dial-in transcode-time histogram: the
/// work for one call's 20 ms frame, both directions.
pub const TRANSCODE_BUCKETS: [f64; 10] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.02,
];

/// How a dial-in call ended up, for `sluice_dialin_calls_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The caller joined a meeting.
    Joined,
    /// The meeting is end-to-end encrypted: phones cannot join.
    RefusedE2ee,
    /// The passcode (PIN) was wrong too often.
    BadPin,
    /// Anything else: unknown meeting, locked or full meeting, no media,
    /// cancelled, bad offer.
    Failed,
}

impl CallOutcome {
    /// Every outcome, in label order.
    pub const ALL: [Self; 4] = [Self::Joined, Self::RefusedE2ee, Self::BadPin, Self::Failed];

    /// The `outcome` label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::RefusedE2ee => "refused-e2ee",
            Self::BadPin => "bad-pin",
            Self::Failed => "failed",
        }
    }
}

/// Why the SIP edge turned a request away before it became a call, for
/// `sluice_sip_edge_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipEdge {
    /// From a source outside `[sip] allow`; dropped unanswered.
    NotAllowed,
    /// Over its source's INVITE rate; dropped unanswered.
    RateLimited,
    /// Over its source's share of unconfirmed calls; 503.
    PendingLimited,
    /// Challenged for digest credentials; 401.
    AuthChallenged,
    /// Refused (404, 403, 503) without keeping state.
    Stateless,
    /// A TCP/TLS connection closed at accept (not allowed, or over the
    /// total or per-source connection cap).
    ConnectionRefused,
    /// A TCP/TLS connection closed for idling (or a handshake too slow).
    ConnectionIdle,
    /// A TCP/TLS connection closed for a framing error, a failed TLS
    /// handshake or a peer that does not read.
    ConnectionMisbehaving,
}

impl SipEdge {
    /// Every reason, in label order.
    pub const ALL: [Self; 8] = [
        Self::NotAllowed,
        Self::RateLimited,
        Self::PendingLimited,
        Self::AuthChallenged,
        Self::Stateless,
        Self::ConnectionRefused,
        Self::ConnectionIdle,
        Self::ConnectionMisbehaving,
    ];

    /// The `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotAllowed => "not-allowed",
            Self::RateLimited => "rate-limited",
            Self::PendingLimited => "pending-limited",
            Self::AuthChallenged => "auth-challenged",
            Self::Stateless => "stateless-refusal",
            Self::ConnectionRefused => "connection-refused",
            Self::ConnectionIdle => "connection-idle",
            Self::ConnectionMisbehaving => "connection-misbehaving",
        }
    }
}

/// The SIP dial-in side's counters, written by the signalling thread and
/// the media pool threads with relaxed atomic adds.
#[derive(Debug, Default)]
pub struct DialInCounters {
    active_calls: AtomicU64,
    outcomes: [AtomicU64; 4],
    sip_malformed: AtomicU64,
    sip_edge: [AtomicU64; SipEdge::ALL.len()],
    late_frames: AtomicU64,
    transcode_buckets: [AtomicU64; TRANSCODE_BUCKETS.len() + 1],
    transcode_sum_ns: AtomicU64,
    /// RTCP reports to and from callers: [sent, received].
    rtcp_reports: [AtomicU64; 2],
    /// Receive legs open now, one per meeting and media pool thread.
    mixer_legs: AtomicU64,
}

impl DialInCounters {
    /// The bridge sent a caller an RTCP report (SR or RR).
    pub fn rtcp_report_sent(&self) {
        bump(&self.rtcp_reports[0], 1);
    }

    /// A caller's RTCP report (SR or RR) was read.
    pub fn rtcp_report_received(&self) {
        bump(&self.rtcp_reports[1], 1);
    }

    /// A pool thread opened a receive leg into a meeting (its first call
    /// of the meeting).
    pub fn mixer_leg_opened(&self) {
        bump(&self.mixer_legs, 1);
    }

    /// A receive leg that [`Self::mixer_leg_opened`] counted is closed.
    pub fn mixer_leg_closed(&self) {
        // Saturating, as `call_ended`.
        let _ = self
            .mixer_legs
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// Receive legs open now.
    pub fn mixer_legs(&self) -> u64 {
        self.mixer_legs.load(Ordering::Relaxed)
    }

    /// A call was set up (answered or still ringing).
    pub fn call_started(&self) {
        bump(&self.active_calls, 1);
    }

    /// A call that [`Self::call_started`] counted is gone.
    pub fn call_ended(&self) {
        // Saturating: a mismatched end never wraps the gauge.
        let _ = self
            .active_calls
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// A call reached `outcome` (each call counts once).
    pub fn outcome(&self, outcome: CallOutcome) {
        let slot = CallOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(CallOutcome::ALL.len() - 1);
        bump(&self.outcomes[slot], 1);
    }

    /// A SIP datagram that does not parse was dropped.
    pub fn sip_malformed(&self, n: u64) {
        bump(&self.sip_malformed, n);
    }

    /// `n` SIP requests turned away at the edge for `why`.
    pub fn sip_edge(&self, why: SipEdge, n: u64) {
        if let Some(slot) = SipEdge::ALL.iter().position(|w| *w == why) {
            bump(&self.sip_edge[slot], n);
        }
    }

    /// SIP requests turned away for `why` so far.
    pub fn sip_edge_count(&self, why: SipEdge) -> u64 {
        SipEdge::ALL
            .iter()
            .position(|w| *w == why)
            .map_or(0, |slot| self.sip_edge[slot].load(Ordering::Relaxed))
    }

    /// A 20 ms media tick ran after its slot, or was dropped.
    pub fn late_frame(&self) {
        bump(&self.late_frames, 1);
    }

    /// The time one call's 20 ms frame took to transcode, both directions:
    /// its own uplink and G.711 frame, plus its even share of the meeting
    /// mix it shares with the meeting's other calls on its thread.
    pub fn transcode_sample(&self, nanos: u64) {
        let secs = nanos as f64 / 1e9;
        let slot = TRANSCODE_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(TRANSCODE_BUCKETS.len());
        bump(&self.transcode_buckets[slot], 1);
        bump(&self.transcode_sum_ns, nanos);
    }

    /// Calls now.
    pub fn active_calls(&self) -> u64 {
        self.active_calls.load(Ordering::Relaxed)
    }

    /// Calls that reached `outcome` so far.
    pub fn outcomes(&self, outcome: CallOutcome) -> u64 {
        CallOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .map_or(0, |slot| self.outcomes[slot].load(Ordering::Relaxed))
    }

    fn render(&self) -> String {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = format!(
            "# HELP sluice_dialin_active_calls SIP dial-in calls in progress.\n\
             # TYPE sluice_dialin_active_calls gauge\n\
             sluice_dialin_active_calls {}\n\
             # HELP sluice_dialin_calls_total Dial-in calls by outcome.\n\
             # TYPE sluice_dialin_calls_total counter\n",
            read(&self.active_calls)
        );
        for (outcome, n) in CallOutcome::ALL.iter().zip(&self.outcomes) {
            out.push_str(&format!(
                "sluice_dialin_calls_total{{outcome=\"{}\"}} {}\n",
                outcome.name(),
                read(n)
            ));
        }
        out.push_str(&format!(
            "# HELP sluice_sip_malformed_total SIP datagrams dropped because they do not parse.\n\
             # TYPE sluice_sip_malformed_total counter\n\
             sluice_sip_malformed_total {}\n\
             # HELP sluice_dialin_late_frames_total 20 ms media ticks run after their slot, or dropped.\n\
             # TYPE sluice_dialin_late_frames_total counter\n\
             sluice_dialin_late_frames_total {}\n",
            read(&self.sip_malformed),
            read(&self.late_frames)
        ));
        out.push_str(&format!(
            "# HELP sluice_dialin_rtcp_reports_total RTCP sender/receiver reports to and from callers.\n\
             # TYPE sluice_dialin_rtcp_reports_total counter\n\
             sluice_dialin_rtcp_reports_total{{direction=\"sent\"}} {}\n\
             sluice_dialin_rtcp_reports_total{{direction=\"received\"}} {}\n",
            read(&self.rtcp_reports[0]),
            read(&self.rtcp_reports[1])
        ));
        out.push_str(&format!(
            "# HELP sluice_dialin_mixer_legs Receive legs of the dial-in bridge, one per meeting and media thread.\n\
             # TYPE sluice_dialin_mixer_legs gauge\n\
             sluice_dialin_mixer_legs {}\n",
            read(&self.mixer_legs)
        ));
        out.push_str(
            "# HELP sluice_sip_edge_total SIP requests turned away before they became calls.\n\
             # TYPE sluice_sip_edge_total counter\n",
        );
        for (why, n) in SipEdge::ALL.iter().zip(&self.sip_edge) {
            out.push_str(&format!(
                "sluice_sip_edge_total{{reason=\"{}\"}} {}\n",
                why.name(),
                read(n)
            ));
        }
        let counts: Vec<u64> = self.transcode_buckets.iter().map(read).collect();
        out.push_str(&render_histogram(
            "sluice_dialin_transcode_seconds",
            "Transcode time per call per 20 ms frame (G.711 <-> Opus, and the call's share of its meeting's mix).",
            &TRANSCODE_BUCKETS,
            &counts,
            read(&self.transcode_sum_ns),
        ));
        out
    }
}

/// All workers' counters plus process-wide facts, rendered on scrape.
#[derive(Debug)]
pub struct MetricsHub {
    workers: Mutex<Vec<Arc<WorkerCounters>>>,
    refusals: Mutex<Vec<(&'static str, u64)>>,
    io_backend: Mutex<&'static str>,
    crypto_backend: &'static str,
    crypto: Arc<CryptoMetrics>,
    dialin: Arc<DialInCounters>,
    dialout: Arc<crate::dialout::DialOutCounters>,
    webrtc: Arc<sluice_webrtc::counters::WebRtcCounters>,
    transcode: Arc<crate::transcode::TranscodeCounters>,
}

impl MetricsHub {
    /// A hub for a process using `crypto_backend`.
    pub fn new(crypto_backend: &'static str) -> Self {
        Self {
            workers: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
            io_backend: Mutex::new("none"),
            crypto_backend,
            crypto: Arc::default(),
            dialin: Arc::default(),
            dialout: Arc::default(),
            webrtc: Arc::default(),
            transcode: Arc::default(),
        }
    }

    /// Registers a new worker and returns its counters.
    pub fn add_worker(&self) -> Arc<WorkerCounters> {
        let counters = Arc::new(WorkerCounters::default());
        self.lock_workers().push(Arc::clone(&counters));
        counters
    }

    /// The busy share of the busiest worker's last window (0 with no
    /// workers): what load shedding compares with `max_worker_busy`.
    pub fn busiest_worker(&self) -> f64 {
        self.lock_workers()
            .iter()
            .map(|w| w.busy())
            .fold(0.0, f64::max)
    }

    /// The crypto counters by backend, which each worker's backend
    /// registers into ([`crate::crypto::AnyGcm::for_worker`]).
    pub fn crypto(&self) -> &Arc<CryptoMetrics> {
        &self.crypto
    }

    /// The SIP dial-in counters (rendered whether or not SIP is enabled).
    pub fn dialin(&self) -> &Arc<DialInCounters> {
        &self.dialin
    }

    /// The SIP dial-out counters (rendered whether or not a trunk is set).
    pub fn dialout(&self) -> &Arc<crate::dialout::DialOutCounters> {
        &self.dialout
    }

    /// The media port's WebRTC counters (handshakes, drops, consent).
    pub fn webrtc(&self) -> &Arc<sluice_webrtc::counters::WebRtcCounters> {
        &self.webrtc
    }
    /// The video transcoding counters (rendered whether or not it is enabled).
    pub fn transcode(&self) -> &Arc<crate::transcode::TranscodeCounters> {
        &self.transcode
    }

    /// Records which I/O backend the data plane runs on (`io_uring`, `recvmmsg`).
    pub fn set_io_backend(&self, name: &'static str) {
        *self
            .io_backend
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = name;
    }

    /// Counts a control-plane refusal by its API error code.
    pub fn refused(&self, code: &'static str) {
        let mut refusals = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match refusals.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => refusals.push((code, 1)),
        }
    }

    fn lock_workers(&self) -> std::sync::MutexGuard<'_, Vec<Arc<WorkerCounters>>> {
        // A panicking scraper cannot leave the list half-written: pushes are atomic.
        self.workers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, gauges: &ControlGauges) -> String {
        match self.try_render(gauges) {
            Ok(text) => text,
            Err(e) => format!("# sluice: metrics could not be rendered: {e}\n"),
        }
    }

    fn try_render(&self, gauges: &ControlGauges) -> Result<String, prometheus::Error> {
        let registry = Registry::new_custom(Some("sluice".to_owned()), None)?;
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let packets_in = counter(
            "packets_in_total",
            "Authenticated packets received, by meeting mode.",
            &["mode"],
        )?;
        let bytes_in = counter(
            "bytes_in_total",
            "Bytes of authenticated packets received, by meeting mode.",
            &["mode"],
        )?;
        let packets_out = counter(
            "packets_out_total",
            "Packets sent, by meeting mode.",
            &["mode"],
        )?;
        let bytes_out = counter("bytes_out_total", "Bytes sent, by meeting mode.", &["mode"])?;
        let drops = counter(
            "packets_dropped_total",
            "Packets dropped, by reason.",
            &["reason"],
        )?;
        let latches = counter(
            "latches_total",
            "Leg addresses latched or moved by an authenticated packet.",
            &[],
        )?;
        let refusals = counter(
            "api_refusals_total",
            "Control API requests refused, by error code.",
            &["code"],
        )?;
        let meetings = gauge("meetings", "Active meetings, by mode.", &["mode"])?;
        let legs = gauge("legs", "Active legs (participants), by mode.", &["mode"])?;
        let streams = gauge("streams", "Published streams, by mode.", &["mode"])?;
        let io = gauge(
            "io_backend_info",
            "The data plane's I/O backend (value 1).",
            &["backend"],
        )?;
        let busy_seconds = registry_counter_f64(
            &registry,
            "worker_busy_seconds_total",
            "Time each packet worker spent handling batches (rate: share of its core).",
        )?;
        let crypto = gauge(
            "crypto_backend_info",
            "The AES-GCM backend in use (value 1).",
            &["backend"],
        )?;
        let restarts = counter(
            "worker_restarts_total",
            "Packet worker loops restarted after a panic, by worker.",
            &["worker"],
        )?;
        let busy_ratio = GaugeVec::new(
            Opts::new(
                "worker_busy_ratio",
                "Share of the last window each packet worker spent handling packets (0 to 1).",
            ),
            &["worker"],
        )?;
        registry.register(Box::new(busy_ratio.clone()))?;

        let workers = self.lock_workers().clone();
        let sum = |f: &dyn Fn(&WorkerCounters) -> &AtomicU64| -> u64 {
            workers.iter().map(|w| WorkerCounters::read(f(w))).sum()
        };
        for mode in MODES {
            let (slot, label) = (mode_slot(mode), mode.name());
            packets_in
                .with_label_values(&[label])
                .inc_by(sum(&|w| &w.packets_in[slot]));
            bytes_in
                .with_label_values(&[label])
                .inc_by(sum(&|w| &w.bytes_in[slot]));
            packets_out
                .with_label_values(&[label])
                .inc_by(sum(&|w| &w.packets_out[slot]));
            bytes_out
                .with_label_values(&[label])
                .inc_by(sum(&|w| &w.bytes_out[slot]));
            meetings
                .with_label_values(&[label])
                .set(gauges.meetings[slot] as i64);
            legs.with_label_values(&[label])
                .set(gauges.legs[slot] as i64);
            streams
                .with_label_values(&[label])
                .set(gauges.streams[slot] as i64);
        }
        for (slot, why) in Drop::ALL.iter().enumerate() {
            drops
                .with_label_values(&[why.name()])
                .inc_by(sum(&|w| &w.drops[slot]));
        }
        latches
            .with_label_values::<&str>(&[])
            .inc_by(sum(&|w| &w.latches));
        for (index, worker) in workers.iter().enumerate() {
            busy_seconds
                .with_label_values(&[&index.to_string()])
                .inc_by(WorkerCounters::read(&worker.busy_ns) as f64 / 1e9);
        }
        for (code, n) in self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            refusals.with_label_values(&[code]).inc_by(*n);
        }
        io.with_label_values(&[*self
            .io_backend
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)])
            .set(1);
        crypto.with_label_values(&[self.crypto_backend]).set(1);
        for (index, worker) in workers.iter().enumerate() {
            let label = index.to_string();
            restarts
                .with_label_values(&[label.as_str()])
                .inc_by(worker.restarts());
            busy_ratio
                .with_label_values(&[label.as_str()])
                .set(worker.busy());
        }

        let mut text = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut text)?;
        let mut out = String::from_utf8_lossy(&text).into_owned();
        out.push_str(&render_latency(&workers));
        out.push_str(&self.crypto.render());
        out.push_str(&self.dialin.render());
        out.push_str(&self.dialout.render());
        out.push_str(&crate::webrtc::render_counters(&self.webrtc.snapshot()));
        out.push_str(&self.transcode.render());
        Ok(out)
    }
}

/// A float counter labelled by `worker` (the worker's index: bounded by
/// the core count), registered in `registry`.
fn registry_counter_f64(
    registry: &Registry,
    name: &str,
    help: &str,
) -> Result<prometheus::CounterVec, prometheus::Error> {
    let c = prometheus::CounterVec::new(Opts::new(name, help), &["worker"])?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// The latency histogram in exposition format, from summed bucket counts.
fn render_latency(workers: &[Arc<WorkerCounters>]) -> String {
    let counts: Vec<u64> = (0..=LATENCY_BUCKETS.len())
        .map(|slot| {
            workers
                .iter()
                .map(|w| WorkerCounters::read(&w.latency_buckets[slot]))
                .sum()
        })
        .collect();
    let sum_ns: u64 = workers
        .iter()
        .map(|w| WorkerCounters::read(&w.latency_sum_ns))
        .sum();
    render_histogram(
        "sluice_relay_latency_seconds",
        "Sampled in-relay latency, receive to send.",
        &LATENCY_BUCKETS,
        &counts,
        sum_ns,
    )
}

/// A histogram in exposition format from per-bucket (not cumulative)
/// counts, one more than `bounds` (the last is `+Inf`), and a sum in
/// nanoseconds (the prometheus crate cannot take pre-bucketed observations).
fn render_histogram(name: &str, help: &str, bounds: &[f64], counts: &[u64], sum_ns: u64) -> String {
    let mut out = format!("# HELP {name} {help}\n# TYPE {name} histogram\n");
    let mut cumulative = 0u64;
    for (bound, n) in bounds
        .iter()
        .map(|b| b.to_string())
        .chain(["+Inf".to_owned()])
        .zip(counts)
    {
        cumulative += n;
        out.push_str(&format!("{name}_bucket{{le=\"{bound}\"}} {cumulative}\n"));
    }
    out.push_str(&format!("{name}_sum {}\n", sum_ns as f64 / 1e9));
    out.push_str(&format!("{name}_count {cumulative}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialin_counters_render_outcomes_gauge_and_histogram() {
        let hub = MetricsHub::new("ring");
        let d = hub.dialin();
        d.call_started();
        d.call_started();
        d.call_ended();
        d.call_ended();
        d.call_ended(); // one too many: the gauge stays at 0
        d.call_started();
        d.outcome(CallOutcome::Joined);
        d.outcome(CallOutcome::RefusedE2ee);
        d.outcome(CallOutcome::RefusedE2ee);
        d.sip_malformed(3);
        d.transcode_sample(30_000); // 30 us: the 50 us bucket
        d.transcode_sample(1_000_000_000); // 1 s: +Inf
        let text = hub.render(&ControlGauges::default());
        for line in [
            "sluice_dialin_active_calls 1",
            "sluice_dialin_calls_total{outcome=\"joined\"} 1",
            "sluice_dialin_calls_total{outcome=\"refused-e2ee\"} 2",
            "sluice_dialin_calls_total{outcome=\"bad-pin\"} 0",
            "sluice_sip_malformed_total 3",
            "sluice_dialin_transcode_seconds_bucket{le=\"0.000025\"} 0",
            "sluice_dialin_transcode_seconds_bucket{le=\"0.00005\"} 1",
            "sluice_dialin_transcode_seconds_bucket{le=\"0.02\"} 1",
            "sluice_dialin_transcode_seconds_bucket{le=\"+Inf\"} 2",
            "sluice_dialin_transcode_seconds_count 2",
            "sluice_dialin_transcode_seconds_sum 1.00003",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(d.outcomes(CallOutcome::RefusedE2ee), 2);
    }

    #[test]
    fn workers_are_summed_and_labels_are_bounded() {
        let hub = MetricsHub::new("ring");
        hub.set_io_backend("io_uring");
        let (a, b) = (hub.add_worker(), hub.add_worker());
        a.received(MeetingMode::E2ee, 100);
        b.received(MeetingMode::E2ee, 50);
        b.sent(MeetingMode::Standard, 10);
        a.dropped(Drop::AuthFailed);
        b.dropped(Drop::AuthFailed);
        b.dropped(Drop::UnknownSsrc);
        a.latched();
        a.latency_sample(30_000);
        b.latency_sample(2_000_000_000);
        a.add_busy(1_500_000_000);
        b.add_busy(250_000_000);
        hub.refused("wrong_passcode");
        let mut gauges = ControlGauges::default();
        ControlGauges::count(&mut gauges.meetings, MeetingMode::E2ee);
        let text = hub.render(&gauges);
        for line in [
            "sluice_packets_in_total{mode=\"e2ee\"} 2",
            "sluice_bytes_in_total{mode=\"e2ee\"} 150",
            "sluice_worker_busy_seconds_total{worker=\"0\"} 1.5",
            "sluice_worker_busy_seconds_total{worker=\"1\"} 0.25",
            "sluice_packets_out_total{mode=\"standard\"} 1",
            "sluice_packets_dropped_total{reason=\"auth_failed\"} 2",
            "sluice_packets_dropped_total{reason=\"unknown_ssrc\"} 1",
            "sluice_latches_total 1",
            "sluice_meetings{mode=\"e2ee\"} 1",
            "sluice_api_refusals_total{code=\"wrong_passcode\"} 1",
            "sluice_io_backend_info{backend=\"io_uring\"} 1",
            "sluice_crypto_backend_info{backend=\"ring\"} 1",
            "sluice_relay_latency_seconds_bucket{le=\"0.00005\"} 1",
            "sluice_relay_latency_seconds_bucket{le=\"+Inf\"} 2",
            "sluice_relay_latency_seconds_count 2",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
