//! The HTTP/JSON control API (DESIGN.md, "Control API").
//!
//! The integrator's signalling server creates meetings, admits
//! participants and learns their SRTP keys here. Every mutation republishes
//! the routing snapshot the packet workers read (see `registry.rs`); admission
//! decisions come from [`crate::policy`]. The server runs on its own thread
//! with a current-thread tokio runtime, so the packet workers never share a
//! core with it by accident and nothing else in the process needs tokio:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use sluice::control::{ControlOptions, ControlServer};
//! # let (cell, metrics) = (sluice::relay::empty_cell(), Arc::new(sluice::metrics::MetricsHub::new("ring")));
//! let opts = ControlOptions {
//!     listen: "127.0.0.1:7480".parse().unwrap(),
//!     token: None,
//!     media_address: "127.0.0.1:40000".parse().unwrap(),
//!     policy: Default::default(),
//!     limits: Default::default(),
//!     cluster: None,
//!     audio_level_extension: 1,
//!     background: Default::default(),
//! };
//! let server = ControlServer::start(opts, cell, metrics)?;
//! // ... run the packet workers ...
//! server.shutdown();
//! # Ok::<(), sluice::control::ControlError>(())
//! ```
//!
//! [`router`] gives the same service without a socket, for tests.

mod api;
mod auth;
mod cascade;
mod clustered;
mod desk;
mod dialout;
mod edge;
mod error;
mod extract;
mod hygiene;
mod listing;
mod meet_page;
mod openapi;
mod registry;
mod webrtc;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tokio::sync::watch;

pub use desk::{BridgeLeg, DIAL_IN_OPUS_PT, DeskError, MeetingDesk, MeetingLookup, MixerLeg};
pub use edge::{EdgeLimits, MAX_HEAD, MAX_HEADER_FIELDS, MAX_URI};
pub use error::ApiError;
pub(crate) use registry::Transcodes;
pub use webrtc::{RegistrySink, WebrtcEdge};

use crate::cluster::{ClusterLink, HostedMeeting, NodeLoad};
use crate::metrics::MetricsHub;
use crate::policy::Policy;
use crate::relay::SnapshotCell;
use registry::Registry;

/// How long [`ControlServer::shutdown`] lets running requests finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the control API needs to start.
#[derive(Clone)]
pub struct ControlOptions {
    /// Where the API listens (port 0 picks a free one).
    pub listen: SocketAddr,
    /// The bearer token every request but `/healthz` must carry; `None`
    /// leaves the API open (the config allows that on loopback only).
    pub token: Option<String>,
    /// The address participants send media to, handed out on admission.
    pub media_address: SocketAddr,
    /// The admission policy.
    pub policy: Policy,
    /// Timeouts and connection caps of the TCP edge.
    pub limits: EdgeLimits,
    /// Cluster mode: the link to the cluster's Redis; `None` alone.
    pub cluster: Option<Arc<ClusterLink>>,
    /// The RFC 6464 header extension id SDES-keyed publishers carry their
    /// audio level under (`[sip] audio_level_extension`, which the dial-in
    /// bridge writes its callers' levels under): WHEP slots rank by it.
    pub audio_level_extension: u8,
    /// The API thread's scheduling class: below the packet workers, so a
    /// storm of admissions never delays forwarding (`[media] background`).
    pub background: crate::net::priority::Background,
}

impl fmt::Debug for ControlOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlOptions")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("media_address", &self.media_address)
            .field("policy", &self.policy)
            .field("limits", &self.limits)
            .field("cluster", &self.cluster)
            .field("audio_level_extension", &self.audio_level_extension)
            .field("background", &self.background)
            .finish()
    }
}

/// The state every handler shares: the registry (behind the one lock the
/// control thread takes, never across an `.await`), metrics and the token.
#[derive(Clone)]
pub struct ControlState {
    inner: Arc<Shared>,
}

struct Shared {
    registry: Mutex<Registry>,
    metrics: Arc<MetricsHub>,
    /// Replaced whole on a config reload; read per request without a lock.
    token: arc_swap::ArcSwapOption<String>,
    cluster: Option<Arc<ClusterLink>>,
    /// Cluster mode: wakes the cascade thread (`cascade::Cascader`).
    cascade: Option<std::sync::mpsc::Sender<cascade::Wake>>,
    /// The media port's WebRTC side, once the daemon attached it.
    webrtc: std::sync::OnceLock<WebrtcEdge>,
    /// Dial-out, once the daemon started it (`[sip.trunk]`).
    dial_out: std::sync::OnceLock<crate::dialout::DialOutHandle>,
}

impl fmt::Debug for ControlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlState").finish_non_exhaustive()
    }
}

impl ControlState {
    /// A fresh registry publishing into `cell`.
    pub fn new(opts: &ControlOptions, cell: SnapshotCell, metrics: Arc<MetricsHub>) -> Self {
        // Without a server no cascade thread runs: wakes go nowhere.
        Self::build(opts.clone(), cell, metrics).0
    }

    /// The state, and in cluster mode the receiving end of its cascade
    /// wakes (for the thread `ControlServer::start` starts).
    fn build(
        opts: ControlOptions,
        cell: SnapshotCell,
        metrics: Arc<MetricsHub>,
    ) -> (Self, Option<std::sync::mpsc::Receiver<cascade::Wake>>) {
        let (cascade, woken) = match opts.cluster {
            Some(_) => {
                let (wake, woken) = std::sync::mpsc::channel();
                (Some(wake), Some(woken))
            }
            None => (None, None),
        };
        let state = Self {
            inner: Arc::new(Shared {
                registry: Mutex::new({
                    let mut registry =
                        Registry::new(cell, Arc::clone(&metrics), opts.policy, opts.media_address);
                    registry.set_sdes_level_extension(opts.audio_level_extension);
                    registry
                }),
                metrics,
                token: arc_swap::ArcSwapOption::from(opts.token.map(Arc::new)),
                cluster: opts.cluster,
                cascade,
                webrtc: std::sync::OnceLock::new(),
                dial_out: std::sync::OnceLock::new(),
            }),
        };
        (state, woken)
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Handlers validate before they mutate and publish last, so a
        // panicking handler leaves the registry whole: keep serving.
        self.inner
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn metrics(&self) -> &MetricsHub {
        &self.inner.metrics
    }

    fn token(&self) -> Option<Arc<String>> {
        self.inner.token.load_full()
    }

    /// Applies a config reload: the token guards the next request, the
    /// policy the next creation and admission. Says what changed.
    fn reload(&self, token: Option<String>, policy: Policy) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.token().as_deref() != token.as_ref() {
            self.inner.token.store(token.map(Arc::new));
            changed.push("[control] API token");
        }
        let mut registry = self.registry();
        if registry.policy() != policy {
            registry.set_policy(policy);
            changed.push("[policy]");
        }
        changed
    }

    /// Gives the WHIP/WHEP endpoints the media port's handshake thread
    /// (once; the daemon calls it after starting the thread).
    pub fn attach_webrtc(&self, edge: WebrtcEdge) {
        let _ = self.inner.webrtc.set(edge);
    }

    fn webrtc(&self) -> Option<&WebrtcEdge> {
        self.inner.webrtc.get()
    }

    /// Gives `POST .../dial` the dial-out thread (once; the daemon calls
    /// it when `[sip.trunk]` is configured).
    pub fn attach_dial_out(&self, handle: crate::dialout::DialOutHandle) {
        let _ = self.inner.dial_out.set(handle);
    }

    fn dial_out(&self) -> Option<&crate::dialout::DialOutHandle> {
        self.inner.dial_out.get()
    }

    /// The cluster link, in cluster mode.
    pub(crate) fn cluster(&self) -> Option<&Arc<ClusterLink>> {
        self.inner.cluster.as_ref()
    }

    /// Cluster mode: this node changed what it hosts of `meeting` (a leg
    /// seated or gone, a stream published): the cascade reconciles it now
    /// and tells the other nodes. A no-op alone.
    pub(crate) fn cascade_changed(&self, meeting: &str) {
        if let Some(wake) = &self.inner.cascade {
            // Fails only once the cascade thread ended (shutting down).
            let _ = wake.send(cascade::Wake::Local(meeting.to_owned()));
        }
    }

    /// This node's load, as the cluster heartbeat publishes it, and the
    /// ids of the meetings it hosts legs of.
    pub fn node_load(&self) -> (NodeLoad, Vec<HostedMeeting>) {
        let node = self
            .cluster()
            .map(|l| l.settings().node_id.clone())
            .unwrap_or_default();
        let registry = self.registry();
        (registry.node_load(), registry.hosted_meetings(&node))
    }
}

/// The whole API as a service, without a socket.
pub fn router(state: ControlState) -> Router {
    Router::new()
        .route(
            "/v1/meetings",
            post(api::create_meeting).get(listing::list_meetings),
        )
        .route(
            "/v1/meetings/{id}",
            get(api::show_meeting).delete(api::delete_meeting),
        )
        .route("/v1/meetings/{id}/lock", post(api::set_lock))
        .route("/v1/meetings/{id}/participants", post(api::add_participant))
        .route(
            "/v1/meetings/{id}/participants/{pid}",
            axum::routing::delete(api::delete_participant).get(listing::show_participant),
        )
        .route(
            "/v1/meetings/{id}/participants/{pid}/streams",
            post(api::add_stream),
        )
        .route(
            "/v1/meetings/{id}/participants/{pid}/whip",
            post(webrtc::whip).options(webrtc::options),
        )
        .route(
            "/v1/meetings/{id}/participants/{pid}/whep",
            post(webrtc::whep).options(webrtc::options),
        )
        .route(
            "/v1/meetings/{id}/participants/{pid}/webrtc/{sid}",
            axum::routing::delete(webrtc::delete_session)
                .get(webrtc::get_session)
                .patch(webrtc::patch_session)
                .options(webrtc::options),
        )
        .route("/v1/meetings/{id}/dial", post(dialout::dial))
        .route(
            "/v1/meetings/{id}/calls/{cid}",
            get(dialout::show_call).delete(dialout::hangup_call),
        )
        .route("/v1/cluster/nodes", get(crate::cluster::api::list_nodes))
        .route(
            "/v1/cluster/local/meetings/{id}",
            axum::routing::delete(clustered::drop_local_meeting),
        )
        .route("/v1/openapi.json", get(api::openapi))
        .route("/metrics", get(api::metrics))
        .route("/healthz", get(api::healthz))
        .route("/meet", get(meet_page::page))
        .route("/meet/{asset}", get(meet_page::asset))
        .fallback(api::not_found)
        .layer(from_fn_with_state(state.clone(), auth::require_token))
        .layer(axum::middleware::from_fn(hygiene::guard))
        .layer(from_fn_with_state(state.clone(), error::finish))
        .with_state(state)
}

/// Why the control API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The listen address cannot be bound.
    #[error("cannot listen for the control API on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The tokio runtime or the thread could not be created.
    #[error("cannot start the control API thread: {0}")]
    Thread(std::io::Error),
}

/// The running control API: a thread serving [`router`] on a socket.
#[derive(Debug)]
pub struct ControlServer {
    local_addr: SocketAddr,
    state: ControlState,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    /// Cluster mode: the thread that keeps the relay legs in line.
    cascader: Option<cascade::Cascader>,
}

impl ControlServer {
    /// Binds `opts.listen` (before returning, so errors surface here) and
    /// serves the API on a new thread until [`ControlServer::shutdown`].
    pub fn start(
        opts: ControlOptions,
        cell: SnapshotCell,
        metrics: Arc<MetricsHub>,
    ) -> Result<Self, ControlError> {
        let bind_error = |source| ControlError::Bind {
            addr: opts.listen,
            source,
        };
        let listener = std::net::TcpListener::bind(opts.listen).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(ControlError::Thread)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(bind_error)?
        };
        let limits = opts.limits;
        let background = opts.background;
        let (state, woken) = ControlState::build(opts, cell, metrics);
        let app = router(state.clone());
        let (stop, stopped) = watch::channel(false);
        let edge_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-control".to_owned())
            .spawn(move || {
                background.enter("control API");
                let local = tokio::task::LocalSet::new();
                let served =
                    edge::serve(listener, app, edge_state, limits, stopped, SHUTDOWN_GRACE);
                runtime.block_on(local.run_until(served));
            })
            .map_err(ControlError::Thread)?;
        tracing::info!(%local_addr, "control API listening");
        let mut server = Self {
            local_addr,
            stop,
            thread: Some(thread),
            state,
            cascader: None,
        };
        if let (Some(link), Some(wake), Some(woken)) =
            (server.state.cluster(), &server.state.inner.cascade, woken)
        {
            let cascader = cascade::Cascader::start(
                server.state.clone(),
                link,
                wake.clone(),
                woken,
                background,
            )
            .map_err(ControlError::Thread)?;
            server.cascader = Some(cascader);
        }
        Ok(server)
    }

    /// The dial-in side's handle on this server's registry.
    pub fn desk(&self) -> MeetingDesk {
        MeetingDesk::new(self.state.clone())
    }

    /// Applies a config reload (see [`ControlState`]): the new token and
    /// policy take effect for the next request; who is admitted stays.
    /// Returns what changed, for the log.
    pub fn reload(&self, token: Option<String>, policy: Policy) -> Vec<&'static str> {
        self.state.reload(token, policy)
    }

    /// The state its handlers share (the cluster heartbeat reads the load
    /// through it).
    pub fn state(&self) -> &ControlState {
        &self.state
    }

    /// The address the API listens on (the chosen port when it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets running requests finish for up to five
    /// seconds, and joins the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(cascader) = self.cascader.take() {
            cascader.shutdown();
        }
        // The receiver is gone only if the thread ended already.
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the control API thread panicked");
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
