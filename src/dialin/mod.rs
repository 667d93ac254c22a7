//! Telephone dial-in (DESIGN.md, "Dial-in"): a SIP user agent server on
//! UDP, TCP and TLS (`stream.rs`) that bridges phone callers into standard meetings.
//!
//! Three parts, each on its own threads:
//! - `signalling.rs`: the SIP socket and the sans-IO [`crate::sip::Uas`];
//!   it decides per INVITE: refuse (E2EE meetings: `403` with a `Reason`;
//!   unknown meeting `404`; bad offer `488`; full `503`), or answer with an
//!   SDP answer and hand the call to a media pool thread;
//! - `reoffer.rs`: what a re-INVITE changes in a call that is up (hold,
//!   address, SDES keys, codec, rtcp-mux), decided sans-IO and applied on
//!   the call's pool thread; dial-out's far-end re-INVITEs go through it
//!   too (`outbound.rs`);
//! - `pool.rs`: media pool threads that own the calls' sockets and tick
//!   every call each 20 ms on a steady clock;
//! - `call.rs`: one call's state machine: the voice menu (speech prompts
//!   from `prompts.rs`, RFC 4733 digits), admission through the control
//!   plane's [`MeetingDesk`] (the same policy as the API), and the
//!   transcoding between the caller's G.711 and the meeting's Opus: a
//!   [`crate::media::CallerUplink`] per call and a
//!   [`crate::media::MeetingMix`] per meeting and pool thread.
//!
//! Towards its meeting a call is an ordinary participant: the bridge sends
//! and receives SRTP (AEAD_AES_256_GCM) on a loopback UDP socket to the
//! relay's media port, so the packet workers forward the caller like any
//! other leg and never decode anything themselves.

mod call;
pub(crate) mod outbound;
mod pool;
mod prompts;
mod receive_leg;
mod rekey;
mod reoffer;
mod rtcp;
mod signalling;
mod stream;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::SipConfig;
use crate::control::MeetingDesk;
use crate::crypto::BackendKind;
use crate::metrics::DialInCounters;
use crate::sip::{Credentials, SipLimits, Uas, UasConfig};

use call::CallSettings;
use pool::PoolThread;
use signalling::{Signalling, SignallingSettings, SipReload};
use stream::{StreamLimits, Streams};

pub use rtcp::{CallQuality, CallerRtcp, REPORT_INTERVAL};
pub use signalling::E2EE_REASON;
pub(crate) use stream::server_tls;

/// The SIP socket's receive buffer asked for.
const SIP_RECV_BUFFER: usize = 4 << 20;

/// Why dial-in could not start.
#[derive(Debug, thiserror::Error)]
pub enum DialInError {
    /// The SIP port cannot be bound.
    #[error(
        "cannot listen for SIP on {addr}: {source} (change [sip] listen, or set [sip] enabled = false)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `[sip] listen_tls` cannot be served with the certificate and key.
    #[error("cannot serve SIP over TLS: {0}; fix [sip] tls_cert and tls_key")]
    Tls(String),
    /// A thread could not be started.
    #[error("cannot start a dial-in thread: {0}")]
    Thread(std::io::Error),
    /// `[sip] auth_file` cannot be used.
    #[error("cannot use the SIP credentials in {path} ({reason}); fix [sip] auth_file")]
    Credentials {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

/// The UAS limits `[sip]` asks for (the credentials file read now).
fn limits(config: &SipConfig) -> Result<SipLimits, DialInError> {
    let credentials = match &config.auth_file {
        Some(path) => Some(Arc::new(Credentials::load(path).map_err(|reason| {
            DialInError::Credentials {
                path: path.clone(),
                reason,
            }
        })?)),
        None => None,
    };
    Ok(SipLimits {
        allow: config.allow.clone(),
        invite_rate: config.invite_rate,
        invite_burst: config.invite_burst,
        max_pending_per_source: config.max_pending_per_source,
        credentials,
        realm: config.auth_realm.clone(),
    })
}

/// The connection limits `[sip]` asks for.
fn stream_limits(config: &SipConfig) -> StreamLimits {
    StreamLimits {
        max_connections: config.max_connections,
        per_source: config.max_connections_per_source,
        idle: Duration::from_secs(config.connection_idle_secs),
    }
}

/// Binds a TCP listener for SIP.
fn listen_stream(addr: SocketAddr) -> Result<TcpListener, DialInError> {
    TcpListener::bind(addr).map_err(|source| DialInError::Bind { addr, source })
}

/// What dial-in needs from the rest of the daemon.
#[derive(Debug, Clone)]
pub struct DialInOptions {
    /// The `[sip]` section.
    pub config: SipConfig,
    /// Where the relay's packet workers listen (the bridges send there).
    pub relay: SocketAddr,
    /// The AES-GCM backend for the calls' SRTP.
    pub backend: BackendKind,
    /// The signalling thread's scheduling class (the media pool threads
    /// keep normal priority).
    pub background: crate::net::priority::Background,
}

/// The running dial-in service.
#[derive(Debug)]
pub struct DialIn {
    local_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    reload: std::sync::mpsc::Sender<SipReload>,
    stop: Arc<AtomicBool>,
    signalling: Option<JoinHandle<()>>,
    pools: Vec<JoinHandle<()>>,
}

impl DialIn {
    /// Binds the SIP socket and starts the signalling and media pool threads.
    pub fn start(
        options: &DialInOptions,
        desk: MeetingDesk,
        counters: Arc<DialInCounters>,
    ) -> Result<Self, DialInError> {
        let config = &options.config;
        let bind_error = |source| DialInError::Bind {
            addr: config.listen,
            source,
        };
        let socket = UdpSocket::bind(config.listen).map_err(bind_error)?;
        // A deep receive buffer rides out a burst (a flood among it) so a
        // trunk's INVITE is not dropped by the kernel before the rate
        // limits see it; the kernel caps it at net.core.rmem_max.
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(SIP_RECV_BUFFER);
        let local_addr = socket.local_addr().map_err(bind_error)?;
        // The SIP thread polls the socket with the TCP and TLS ones.
        socket.set_nonblocking(true).map_err(bind_error)?;
        let tcp = config.listen_tcp.map(listen_stream).transpose()?;
        let tls = match config.listen_tls {
            Some(addr) => {
                let server = server_tls(config.tls_cert.as_deref(), config.tls_key.as_deref())
                    .map_err(DialInError::Tls)?;
                Some((listen_stream(addr)?, server))
            }
            None => None,
        };
        let local_of = |l: &TcpListener| l.local_addr().ok();
        let tcp_addr = tcp.as_ref().and_then(local_of);
        let tls_addr = tls.as_ref().and_then(|(l, _)| local_of(l));
        let streams = Streams::new(tcp, tls, stream_limits(config)).map_err(bind_error)?;
        let settings = Arc::new(CallSettings {
            desk,
            counters,
            backend: options.backend,
            media_timeout: Duration::from_secs(config.media_timeout_secs),
            digit_timeout: Duration::from_secs(config.digit_timeout_secs),
            attempts: config.attempts,
            opus_bitrate: config.opus_bitrate,
            opus_complexity: config.opus_complexity,
            audio_level_extension: config.audio_level_extension,
            silence_suppression: config.silence_suppression,
        });
        let threads = match config.media_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let (events_tx, events) = std::sync::mpsc::channel();
        let mut senders = Vec::with_capacity(threads);
        let mut pools = Vec::with_capacity(threads);
        for n in 0..threads {
            let pool = PoolThread::start(n, Arc::clone(&settings), events_tx.clone())
                .map_err(DialInError::Thread)?;
            senders.push(pool.commands);
            pools.push(pool.thread);
        }
        let uas = Uas::new(UasConfig {
            local: local_addr,
            tcp: tcp_addr,
            tls: tls_addr,
            user_agent: format!("sluice/{}", env!("CARGO_PKG_VERSION")),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
        });
        let mut uas = uas;
        uas.set_limits(limits(config)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (reload, reloads) = std::sync::mpsc::channel();
        let signalling = Signalling::new(
            (socket, streams),
            uas,
            SignallingSettings {
                ivr_user: config.ivr_user.clone(),
                media_ip: config.media_ip(),
                relay: options.relay,
                max_calls: config.max_calls,
                answer_delay: Duration::from_millis(config.answer_delay_ms),
                tls_require_srtp: config.tls_require_srtp,
            },
            settings,
            senders,
            events,
            (Arc::clone(&stop), reloads),
        );
        let background = options.background;
        let signalling = std::thread::Builder::new()
            .name("sluice-sip".to_owned())
            .spawn(move || {
                background.enter("SIP signalling");
                signalling.run();
            })
            .map_err(DialInError::Thread)?;
        tracing::info!(
            %local_addr,
            tcp = ?tcp_addr,
            tls = ?tls_addr,
            media_threads = threads,
            "SIP dial-in listening"
        );
        if !local_addr.ip().is_loopback() && config.allow.iter().all(|net| net.addr().is_loopback())
        {
            tracing::warn!(
                "SIP listens on {local_addr} but [sip] allow takes loopback only: requests \
                 from your trunk are dropped until allow names its addresses"
            );
        }
        Ok(Self {
            local_addr,
            tcp_addr,
            tls_addr,
            reload,
            stop,
            signalling: Some(signalling),
            pools,
        })
    }

    /// Where SIP listens (the chosen port when it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where SIP over TCP listens, if it does.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Where SIP over TLS listens, if it does.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Applies what a config reload may change at run time: the allow
    /// list, rates, per-source shares, credentials, `max_calls` and the
    /// answer delay. Calls in progress are untouched.
    pub fn reload(&self, config: &SipConfig) -> Result<(), DialInError> {
        let update = SipReload {
            limits: limits(config)?,
            max_calls: config.max_calls,
            answer_delay: Duration::from_millis(config.answer_delay_ms),
            streams: stream_limits(config),
        };
        // The receiver lives as long as the signalling thread.
        let _ = self.reload.send(update);
        Ok(())
    }

    /// Hangs up every call (BYE), then stops the threads.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.signalling.take()
            && thread.join().is_err()
        {
            tracing::error!("the SIP thread panicked");
        }
        // The signalling thread held the pools' command senders: they are
        // gone now, so each pool thread closes its calls and ends.
        for pool in self.pools.drain(..) {
            if pool.join().is_err() {
                tracing::error!("a media pool thread panicked");
            }
        }
    }
}

impl Drop for DialIn {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
