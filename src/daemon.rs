//! The running relay: the packet workers (data plane) and the control API,
//! wired to one routing snapshot and one metrics hub. `sluice run` is this
//! plus signal handling and systemd notification (in the binary); the
//! integration tests start it in-process the same way.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::cluster::{ClusterError, ClusterLink, Membership};
use crate::config::{Config, ConfigError, CryptoChoice, CryptoConfig, GpuChoice, IoChoice};
use crate::control::{ControlError, ControlOptions, ControlServer};
use crate::crypto::calibrate::{SWEEP, calibrate};
use crate::crypto::gpu::{GpuOffload, GpuPolicy, process_engine};
use crate::crypto::{AeadBackend, AnyGcm, BackendKind};
use crate::dialin::{DialIn, DialInError, DialInOptions};
use crate::metrics::MetricsHub;
use crate::net::{DataPlane, DataPlaneOptions, IoBackend, IoMode, NetError, PacketHandler};
use crate::relay::{Path, RelayWorker, RoutingSnapshot, Transmits, empty_cell};
use crate::transcode::{EncoderKind, EncoderProbe, TranscodeService};
use crate::webrtc::port::{PortInbox, WebrtcDemux, WebrtcPort};
use crate::webrtc::proto::identity::DtlsIdentity;

/// Receive batch size per worker loop turn.
const RECV_BATCH: usize = 32;
/// Socket buffers asked for (the kernel caps them at net.core.*mem_max).
const SOCKET_BUFFER: usize = 4 << 20;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The media sockets or workers could not start.
    #[error("media plane: {0}")]
    Net(#[from] NetError),
    /// The control API could not start.
    #[error("control API: {0}")]
    Control(#[from] ControlError),
    /// SIP dial-in could not start.
    #[error("SIP dial-in: {0}")]
    DialIn(#[from] DialInError),
    /// Dial-out (`[sip.trunk]`) could not start.
    #[error(transparent)]
    DialOut(#[from] crate::dialout::DialOutError),
    /// The video transcoding threads could not start.
    #[error(
        "cannot start the video transcoding threads: {0} (set [transcode] enabled = false to run without)"
    )]
    Transcode(std::io::Error),
    /// Cluster mode could not start.
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
    /// `[crypto] gpu = "always"` and no OpenCL device could be used.
    #[error(
        "[crypto] gpu = \"always\" but {0}; install the GPU's OpenCL driver (or pocl-opencl-icd), or set gpu = \"auto\""
    )]
    Gpu(sluice_gpu::GpuError),
}

/// Builds the AES-GCM backend `[crypto]` asks for: the CPU backend, plus a
/// GPU offload when `gpu` allows one and a device is there (calibrated
/// first under `auto`). Returns it with a few words on the GPU for the
/// banner.
fn crypto_backend(config: &CryptoConfig) -> Result<(AnyGcm, String), DaemonError> {
    let kind = match config.backend {
        // ring is the default because it measured fastest (bench/README.md).
        CryptoChoice::Auto => BackendKind::default(),
        CryptoChoice::Ring => BackendKind::Ring,
        CryptoChoice::AesGcm => BackendKind::RustCrypto,
    };
    match config.gpu {
        GpuChoice::Off => Ok((AnyGcm::new(kind), "gpu off".to_owned())),
        GpuChoice::Always => {
            let engine = process_engine(true).map_err(DaemonError::Gpu)?;
            let note = format!("gpu always on {}", engine.device().name);
            tracing::info!(device = %engine.device().describe(), "GPU offload: every batch");
            let offload = GpuOffload::new(engine, GpuPolicy::Always, None);
            Ok((AnyGcm::with_gpu(kind, Arc::new(offload)), note))
        }
        GpuChoice::Auto => match process_engine(false) {
            Err(why) => {
                tracing::info!("GPU offload off: {why}");
                Ok((AnyGcm::new(kind), "no gpu".to_owned()))
            }
            Ok(engine) => match calibrate(&engine, &SWEEP, 3) {
                Err(why) => {
                    tracing::warn!(device = %engine.device().describe(), "GPU offload off: calibration failed: {why}");
                    Ok((AnyGcm::new(kind), "gpu failed calibration".to_owned()))
                }
                Ok(calibration) => {
                    let note = match calibration.crossover {
                        Some(n) => format!("gpu {} from {n} receivers", engine.device().name),
                        None => format!("gpu {} never faster: unused", engine.device().name),
                    };
                    tracing::info!(
                        device = %engine.device().describe(),
                        crossover = ?calibration.crossover,
                        "GPU calibration (seal time per batch of {}-byte packets):\n{}",
                        calibration.payload,
                        calibration.table()
                    );
                    let offload = GpuOffload::new(engine, GpuPolicy::Auto, Some(calibration));
                    Ok((AnyGcm::with_gpu(kind, Arc::new(offload)), note))
                }
            },
        },
    }
}

/// What [`Daemon::reload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// What took effect (`[policy] max_meetings`, `[control] API token`).
    pub applied: Vec<&'static str>,
    /// What changed but needs a restart (the running value stays).
    pub restart: Vec<&'static str>,
}

/// A started relay.
#[derive(Debug)]
pub struct Daemon {
    /// The config in force (run-time keys as last reloaded).
    config: Config,
    video_encoders: Vec<EncoderKind>,
    membership: Option<Membership>,
    dialin: Option<DialIn>,
    /// SIP dial-out, when `[sip.trunk]` is configured.
    dialout: Option<crate::dialout::DialOut>,
    /// The media port's WebRTC handshake thread (browsers), when it runs.
    webrtc: Option<WebrtcPort>,
    transcode: Option<TranscodeService>,
    data: DataPlane,
    control: ControlServer,
    metrics: Arc<MetricsHub>,
    crypto: BackendKind,
    gpu: String,
    media_address: SocketAddr,
}

impl<B: AeadBackend> PacketHandler for RelayWorker<B> {
    fn handle_datagram(
        &mut self,
        snapshot: &RoutingSnapshot,
        from: Path,
        packet: &mut [u8],
        len: usize,
        out: &mut Transmits,
    ) {
        Self::handle_datagram(self, snapshot, from, packet, len, out);
    }

    fn has_deferred(&self) -> bool {
        Self::has_deferred(self)
    }

    fn poll_deferred(&mut self, block: bool, out: &mut Transmits) -> bool {
        Self::poll_deferred(self, block, out)
    }
}

impl Daemon {
    /// Binds the media port and the control API and starts every worker.
    pub fn start(config: &Config) -> Result<Self, DaemonError> {
        let token = config.api_token()?;
        // Checked when the config was parsed; read again now (the files
        // may have changed since).
        let webrtc_identity = config.webrtc.identity()?;
        let cluster = config
            .cluster_settings()?
            .map(ClusterLink::new)
            .transpose()?
            .map(Arc::new);
        let (backend, gpu) = crypto_backend(&config.crypto)?;
        let crypto = backend.kind();
        let metrics = Arc::new(MetricsHub::new(match backend.gpu() {
            Some(offload) if offload.policy() == GpuPolicy::Always => "gpu",
            _ => backend.name(),
        }));
        let cell = empty_cell();

        let options = DataPlaneOptions {
            listen: config.media.listen,
            workers: config.media.workers,
            io: match config.media.io {
                IoChoice::Auto => IoMode::Auto,
                IoChoice::IoUring => IoMode::IoUring,
                IoChoice::Recvmmsg => IoMode::Mmsg,
            },
            pin_cores: config.media.pin_cores,
            recv_batch: RECV_BATCH,
            socket_buffer_bytes: SOCKET_BUFFER,
            gso: config.media.gso,
            multishot: config.media.multishot,
            fixed_files: config.media.fixed_files,
            worker_class: config.media.worker_class,
        };
        let crypto_metrics = Arc::clone(metrics.crypto());
        // STUN and DTLS leave the workers' batches for the handshake thread.
        let inbox = PortInbox::new(Arc::clone(metrics.webrtc()));
        let queue = inbox.queue().clone();
        // Each worker's SRTP index journal outlives the worker: one made
        // again after a panic takes its streams up from it.
        let journals = crate::srtp::IndexJournals::default();
        let mut data = DataPlane::start(
            &options,
            Arc::clone(&cell),
            &metrics,
            move |index, counters| {
                WebrtcDemux::new(
                    RelayWorker::new(backend.for_worker(&crypto_metrics), counters)
                        .with_journal(journals.for_worker(index))
                        .with_unrouted(Box::new(queue.unrouted_sink())),
                    queue.clone(),
                )
            },
        )?;
        let advertised_ip = config
            .media
            .advertise
            .unwrap_or_else(|| data.local_addr().ip());
        let media_address = SocketAddr::new(advertised_ip, data.local_addr().port());

        let control = ControlServer::start(
            ControlOptions {
                listen: config.control.listen,
                token,
                media_address,
                policy: config.policy,
                limits: config.control.edge_limits(),
                cluster: cluster.clone(),
                audio_level_extension: config.sip.audio_level_extension,
                background: config.media.background,
            },
            cell,
            Arc::clone(&metrics),
        );
        let control = match control {
            Ok(control) => control,
            Err(e) => {
                data.shutdown();
                return Err(e.into());
            }
        };
        let webrtc = start_webrtc(
            inbox,
            webrtc_identity,
            &mut data,
            &control,
            media_address,
            config.media.background,
        );
        // Encoders are probed once, at start, in the operator's order.
        let video_encoders = if config.transcode.enabled {
            EncoderProbe::run_and_log(&config.transcode.encoder_order())
                .usable()
                .collect()
        } else {
            Vec::new()
        };
        let transcode = if config.transcode.enabled {
            let desk = control.desk();
            let started = TranscodeService::start(
                config.transcode.threads,
                crypto,
                metrics.transcode(),
                move |now| desk.transcode_tick(now),
            );
            match started {
                Ok(service) => {
                    control
                        .desk()
                        .attach_transcodes(crate::control::Transcodes::new(
                            config.transcode.max_sessions,
                            std::time::Duration::from_secs(config.transcode.linger_secs),
                            service.sender(),
                            video_encoders.clone(),
                            Arc::clone(metrics.transcode()),
                        ));
                    Some(service)
                }
                Err(e) => {
                    control.shutdown();
                    data.shutdown();
                    return Err(DaemonError::Transcode(e));
                }
            }
        } else {
            None
        };
        let membership = match &cluster {
            Some(link) => {
                let settings = link.settings();
                let bound = |advertised: SocketAddr, actual: SocketAddr| match advertised.port() {
                    0 => SocketAddr::new(advertised.ip(), actual.port()),
                    _ => advertised,
                };
                let api = bound(settings.advertise_api, control.local_addr());
                let media = bound(settings.advertise_media, media_address);
                let state = control.state().clone();
                let load = Box::new(move || state.node_load());
                match Membership::start(Arc::clone(link), api, media, load) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        control.shutdown();
                        data.shutdown();
                        return Err(e.into());
                    }
                }
            }
            None => None,
        };
        let dialin = if config.sip.enabled {
            let options = DialInOptions {
                config: config.sip.clone(),
                relay: data.local_addr(),
                backend: crypto,
                background: config.media.background,
            };
            match DialIn::start(&options, control.desk(), Arc::clone(metrics.dialin())) {
                Ok(dialin) => Some(dialin),
                Err(e) => {
                    control.shutdown();
                    data.shutdown();
                    return Err(e.into());
                }
            }
        } else {
            None
        };
        let dialout = match &config.sip.trunk {
            Some(trunk) => {
                let options = crate::dialout::DialOutOptions {
                    sip: config.sip.clone(),
                    trunk: trunk.clone(),
                    relay: data.local_addr(),
                    backend: crypto,
                    background: config.media.background,
                };
                match crate::dialout::DialOut::start(
                    &options,
                    control.desk(),
                    Arc::clone(metrics.dialout()),
                ) {
                    Ok((dialout, handle)) => {
                        control.state().attach_dial_out(handle);
                        Some(dialout)
                    }
                    Err(e) => {
                        drop(dialin);
                        control.shutdown();
                        data.shutdown();
                        return Err(e.into());
                    }
                }
            }
            None => None,
        };
        Ok(Self {
            config: config.clone(),
            video_encoders,
            membership,
            dialin,
            dialout,
            webrtc,
            transcode,
            data,
            control,
            metrics,
            crypto,
            gpu,
            media_address,
        })
    }

    /// Applies what `new` changes that can change at run time (see
    /// [`crate::reload`]); `new` must have passed [`Config::load`]'s
    /// checks. Either everything it takes applies or, on an error (the
    /// token file or the SIP credentials cannot be read), nothing does.
    pub fn reload(&mut self, new: &Config) -> Result<ReloadReport, DaemonError> {
        let plan = crate::reload::plan(&self.config, new);
        let token = plan.running.api_token()?;
        if let Some(dialin) = &self.dialin {
            dialin.reload(&plan.running.sip)?;
        }
        let mut applied = plan.applied;
        let changed = self.control.reload(token, plan.running.policy);
        applied.extend(changed.into_iter().filter(|c| c.contains("token")));
        self.config = plan.running;
        Ok(ReloadReport {
            applied,
            restart: plan.restart,
        })
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The video encoders that opened at start, in `[transcode] encoders`
    /// order (empty when transcoding is disabled or none opened).
    pub fn video_encoders(&self) -> &[EncoderKind] {
        &self.video_encoders
    }

    /// Where the control API listens.
    pub fn control_addr(&self) -> SocketAddr {
        self.control.local_addr()
    }

    /// Where SIP dial-in listens, when enabled.
    pub fn sip_addr(&self) -> Option<SocketAddr> {
        self.dialin.as_ref().map(DialIn::local_addr)
    }

    /// The dial-out SIP socket's address, when `[sip.trunk]` is set.
    pub fn dialout_addr(&self) -> Option<SocketAddr> {
        self.dialout
            .as_ref()
            .map(crate::dialout::DialOut::local_addr)
    }

    /// Where SIP over TCP and over TLS listen, when they do.
    pub fn sip_stream_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        self.dialin
            .as_ref()
            .map_or((None, None), |d| (d.tcp_addr(), d.tls_addr()))
    }

    /// The media address participants are told to send to.
    pub fn media_addr(&self) -> SocketAddr {
        self.media_address
    }

    /// Whether the cluster heartbeat reaches Redis (`None`: alone).
    pub fn cluster_up(&self) -> Option<bool> {
        self.membership.as_ref().map(Membership::is_up)
    }

    /// The I/O backend the workers run on.
    pub fn io_backend(&self) -> IoBackend {
        self.data.io_backend()
    }

    /// How many packet workers run.
    pub fn workers(&self) -> usize {
        self.data.workers()
    }

    /// The AES-GCM backend in use.
    pub fn crypto_backend(&self) -> BackendKind {
        self.crypto
    }

    /// The metrics hub (for in-process inspection).
    pub fn metrics(&self) -> &MetricsHub {
        &self.metrics
    }

    /// One line for the log and the operator: where everything listens.
    pub fn banner(&self) -> String {
        format!(
            "sluice {}: control API on http://{}, media on {} ({}, {} workers, crypto {}, {}), {}",
            env!("CARGO_PKG_VERSION"),
            self.control_addr(),
            self.media_addr(),
            self.io_backend().name(),
            self.workers(),
            self.crypto.name(),
            self.gpu,
            match self.sip_addr() {
                Some(addr) => format!("SIP dial-in on udp {addr}"),
                None => "SIP dial-in off".to_owned(),
            }
        )
    }

    /// Stops accepting API requests, then drains and joins the workers.
    pub fn shutdown(self) {
        // Leave the cluster first, so no node places anything here now.
        if let Some(membership) = self.membership {
            membership.shutdown();
        }
        // Callers first: their BYEs go out while the relay still runs.
        if let Some(dialout) = self.dialout {
            dialout.shutdown();
        }
        if let Some(dialin) = self.dialin {
            dialin.shutdown();
        }
        if let Some(transcode) = self.transcode {
            transcode.shutdown();
        }
        self.control.shutdown();
        if let Some(webrtc) = self.webrtc {
            webrtc.shutdown();
        }
        self.data.shutdown();
    }
}

/// Starts the WebRTC handshake thread on the media port and hands the
/// WHIP/WHEP endpoints its queue. Browsers are then admitted; without
/// it (no certificate, no socket) they are refused with 503 and one log
/// line says why, while every SDES participant is served as before.
fn start_webrtc(
    inbox: PortInbox,
    configured: Option<DtlsIdentity>,
    data: &mut DataPlane,
    control: &ControlServer,
    media_address: SocketAddr,
    background: crate::net::priority::Background,
) -> Option<WebrtcPort> {
    use crate::control::{RegistrySink, WebrtcEdge};
    use crate::webrtc::proto::dtls::DtlsConfig;

    let identity = match configured.map_or_else(DtlsIdentity::generate, Ok) {
        Ok(identity) => Arc::new(identity),
        Err(e) => {
            tracing::warn!("WebRTC off: cannot make the DTLS certificate: {e}");
            return None;
        }
    };
    let Some(socket) = data.take_send_socket() else {
        tracing::warn!("WebRTC off: cannot clone a media socket for the handshake thread");
        return None;
    };
    let queue = inbox.queue().clone();
    let sink = RegistrySink(control.state().clone());
    match WebrtcPort::start(
        inbox,
        socket,
        Arc::clone(&identity),
        DtlsConfig::new(),
        sink,
        background,
    ) {
        Ok(port) => {
            control.state().attach_webrtc(WebrtcEdge {
                queue,
                identity,
                candidates: vec![media_address],
            });
            Some(port)
        }
        Err(e) => {
            tracing::warn!("WebRTC off: cannot start the handshake thread: {e}");
            None
        }
    }
}
