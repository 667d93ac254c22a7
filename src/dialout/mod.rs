//! Telephone dial-out (DESIGN.md, "Dial-out"): `POST
//! /v1/meetings/{id}/dial` calls a phone through the `[sip.trunk]` and,
//! once it answers (or sends early media), bridges it into the meeting
//! exactly as a dial-in caller is bridged.
//!
//! Two parts:
//! - `thread.rs`: the dial-out thread. It owns a SIP socket of its own
//!   (its address is the Via and Contact of our requests, so the trunk's
//!   responses and in-dialog requests come back to it), the sans-IO
//!   [`crate::sip::Uac`], and the calls' records the API reads; it admits
//!   the phone through the same [`MeetingDesk`] as dial-in;
//! - the bridge's media path, reached through `dialin::outbound`: one pool
//!   thread of its own runs the answered calls' G.711 ↔ Opus and their
//!   SRTP leg to the relay, never a packet worker.
//!
//! The control API talks to the thread through a [`DialOutHandle`]:
//! commands over a channel, each answered on a oneshot.

mod counters;
mod tcp;
mod thread;
mod tls;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::config::{SipConfig, TrunkConfig, TrunkSrtp};
use crate::control::{ApiError, MeetingDesk};
use crate::crypto::BackendKind;
use crate::dialin::outbound::{CallSettings, PoolThread};
use crate::metrics::DialInCounters;

pub use counters::DialOutCounters;
pub use tls::TrunkTls;

/// Why dial-out could not start.
#[derive(Debug, thiserror::Error)]
pub enum DialOutError {
    /// The trunk's address or credentials became unusable since the
    /// config was checked.
    #[error("{0}; fix [sip.trunk]")]
    Trunk(String),
    /// The dial-out SIP socket cannot be bound.
    #[error(
        "cannot bind the dial-out SIP socket on {addr}: {source} (set [sip] media_ip to an address of this host)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start a dial-out thread: {0}")]
    Thread(std::io::Error),
}

/// What dial-out needs from the rest of the daemon.
#[derive(Debug, Clone)]
pub struct DialOutOptions {
    /// The `[sip]` section (media settings, `media_ip`).
    pub sip: SipConfig,
    /// `[sip.trunk]`.
    pub trunk: TrunkConfig,
    /// Where the relay's packet workers listen.
    pub relay: SocketAddr,
    /// The AES-GCM backend for the calls' SRTP.
    pub backend: BackendKind,
    /// The signalling thread's scheduling class (its media pool thread
    /// keeps normal priority).
    pub background: crate::net::priority::Background,
}

/// Where an outbound call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// The INVITE is out.
    Dialing,
    /// 180 (or a 183 without SDP).
    Ringing,
    /// A 18x with SDP: the far end's audio is bridged before the answer.
    EarlyMedia,
    /// 200 OK: the phone is in the meeting.
    Answered,
    /// Over; `outcome` says how.
    Ended,
}

/// An outbound call as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallView {
    /// The call's id (in the meeting's `calls/{cid}`).
    pub id: String,
    /// The meeting.
    pub meeting: String,
    /// The participant id the phone has in the meeting.
    pub participant: String,
    /// The number dialled.
    pub to: String,
    /// The From URI sent.
    pub from: String,
    /// Where the call is.
    pub state: CallState,
    /// Once ended: `answered`, `busy`, `no_answer`, `failed` or `cancelled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    /// The last SIP status the trunk answered the INVITE with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_status: Option<u16>,
    /// Why a `failed` call failed on our side (the trunk unreachable, its
    /// TLS certificate not trusted, its SDP answer unusable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A dial request, checked by the API.
#[derive(Debug, Clone)]
pub struct DialRequest {
    /// The meeting.
    pub meeting: String,
    /// The SIP URI to call.
    pub to: String,
    /// The From URI, or the trunk's default.
    pub from: Option<String>,
    /// The From display name.
    pub caller_id_name: Option<String>,
}

type Reply = tokio::sync::oneshot::Sender<Result<CallView, ApiError>>;

/// What the API asks the dial-out thread.
#[derive(Debug)]
pub(crate) enum Command {
    Dial(DialRequest, Reply),
    Show {
        meeting: String,
        id: String,
        reply: Reply,
    },
    Hangup {
        meeting: String,
        id: String,
        reply: Reply,
    },
}

/// The API's door to the dial-out thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct DialOutHandle {
    commands: std::sync::mpsc::Sender<Command>,
}

/// How long the API waits for the dial-out thread to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

impl DialOutHandle {
    async fn ask(&self, make: impl FnOnce(Reply) -> Command) -> Result<CallView, ApiError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || ApiError::DialOutUnavailable("the dial-out thread has stopped".to_owned());
        self.commands.send(make(reply)).map_err(|_| gone())?;
        match tokio::time::timeout(ANSWER_WITHIN, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(gone()),
            Err(_) => Err(ApiError::DialOutUnavailable(
                "the dial-out thread did not answer in time".to_owned(),
            )),
        }
    }

    /// Places a call.
    pub async fn dial(&self, request: DialRequest) -> Result<CallView, ApiError> {
        self.ask(|reply| Command::Dial(request, reply)).await
    }

    /// A call, live or ended.
    pub async fn show(&self, meeting: String, id: String) -> Result<CallView, ApiError> {
        self.ask(|reply| Command::Show { meeting, id, reply }).await
    }

    /// Ends a call: CANCEL before the answer, BYE after; the view is the
    /// call as it stands when asked (it ends a moment later).
    pub async fn hangup(&self, meeting: String, id: String) -> Result<CallView, ApiError> {
        self.ask(|reply| Command::Hangup { meeting, id, reply })
            .await
    }
}

/// The running dial-out service.
#[derive(Debug)]
pub struct DialOut {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pool: Option<JoinHandle<()>>,
}

impl DialOut {
    /// Binds the dial-out SIP socket and starts its thread and pool
    /// thread; the handle goes to the control API.
    pub fn start(
        options: &DialOutOptions,
        desk: MeetingDesk,
        counters: Arc<DialOutCounters>,
    ) -> Result<(Self, DialOutHandle), DialOutError> {
        let trunk = options.trunk.resolve().map_err(DialOutError::Trunk)?;
        let account = options.trunk.account().map_err(DialOutError::Trunk)?;
        let tls = options.trunk.tls().map_err(DialOutError::Trunk)?;
        if tls.is_some() && options.trunk.srtp() == TrunkSrtp::Off {
            tracing::warn!(
                "[sip.trunk] srtp is off on a TLS trunk: the calls' signalling is encrypted, their media is not"
            );
        }
        let sip = &options.sip;
        let media_ip = sip.media_ip();
        let addr = SocketAddr::new(media_ip, 0);
        let bind_error = |source| DialOutError::Bind { addr, source };
        let socket = UdpSocket::bind(addr).map_err(bind_error)?;
        let local_addr = socket.local_addr().map_err(bind_error)?;
        let settings = Arc::new(CallSettings {
            desk: desk.clone(),
            // The bridge counts its calls as dial-in outcomes: dial-out's
            // go to a sink of their own, and its outcomes to `counters`.
            counters: Arc::new(DialInCounters::default()),
            backend: options.backend,
            media_timeout: Duration::from_secs(sip.media_timeout_secs),
            digit_timeout: Duration::from_secs(sip.digit_timeout_secs),
            attempts: sip.attempts,
            opus_bitrate: sip.opus_bitrate,
            opus_complexity: sip.opus_complexity,
            audio_level_extension: sip.audio_level_extension,
            silence_suppression: sip.silence_suppression,
        });
        let (pool_events_tx, pool_events) = std::sync::mpsc::channel();
        let pool = PoolThread::start(0, Arc::clone(&settings), pool_events_tx)
            .map_err(DialOutError::Thread)?;
        let (commands_tx, commands) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let worker = thread::Worker::new(
            socket,
            thread::Setup {
                trunk,
                config: options.trunk.clone(),
                account,
                tls,
                media_ip,
                relay: options.relay,
                desk,
                settings,
                counters,
            },
            (pool.commands, pool_events),
            commands,
            Arc::clone(&stop),
        );
        let background = options.background;
        let thread = std::thread::Builder::new()
            .name("sluice-dialout".to_owned())
            .spawn(move || {
                background.enter("SIP dial-out");
                worker.run();
            })
            .map_err(DialOutError::Thread)?;
        tracing::info!(%local_addr, %trunk, "SIP dial-out ready");
        Ok((
            Self {
                local_addr,
                stop,
                thread: Some(thread),
                pool: Some(pool.thread),
            },
            DialOutHandle {
                commands: commands_tx,
            },
        ))
    }

    /// The dial-out SIP socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Hangs up every call, then stops the threads.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the dial-out thread panicked");
        }
        // The thread held the pool's command sender: the pool ends now.
        if let Some(pool) = self.pool.take()
            && pool.join().is_err()
        {
            tracing::error!("the dial-out media thread panicked");
        }
    }
}

impl Drop for DialOut {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
