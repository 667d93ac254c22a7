//! The heartbeat: a thread that registers this node under
//! `sluice:node:{id}` with a TTL, refreshes it every `heartbeat` with the
//! node's current load, and deletes it on [`Membership::shutdown`] so the
//! others stop placing here at once rather than when the TTL runs out.
//!
//! When Redis goes away the thread reconnects with exponential backoff
//! (100 ms doubling to the heartbeat period); the node keeps forwarding,
//! and its registration reappears with the first beat that gets through
//! (a restarted Redis holds nothing, so every beat rewrites the record).
//! [`Membership::is_up`] says whether the last beat got through. Each beat
//! also renews the TTL of the meetings the node homes or hosts legs of
//! (see `book`), so nothing a dead cluster owned stays in Redis.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use redis::Connection;

use super::{ClusterError, ClusterLink, NodeLoad, NodeRecord, keys};

/// The first wait after a failed beat.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Reads, at each beat, the node's load and the ids of the meetings it
/// hosts legs of (from the control registry).
pub type LoadSource = Box<dyn Fn() -> (NodeLoad, Vec<String>) + Send>;

/// The running heartbeat thread.
#[derive(Debug)]
pub struct Membership {
    up: Arc<AtomicBool>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Membership {
    /// Starts beating for `link`'s node, advertising `api` and `media`
    /// (the bound addresses) and reading the load from `load`.
    pub fn start(
        link: Arc<ClusterLink>,
        api: SocketAddr,
        media: SocketAddr,
        load: LoadSource,
    ) -> Result<Self, ClusterError> {
        let up = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel();
        let beat_up = Arc::clone(&up);
        let thread = std::thread::Builder::new()
            .name("sluice-cluster".to_owned())
            .spawn(move || beat_loop(&link, (api, media), &load, &beat_up, &stopped))
            .map_err(|e| ClusterError::Unavailable {
                url: String::new(),
                reason: format!("cannot start the heartbeat thread: {e}"),
            })?;
        Ok(Self {
            up,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Whether the last heartbeat reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Stops beating and deletes the registration (best effort: with Redis
    /// away the TTL removes it).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the cluster heartbeat thread panicked");
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Where this node is reached: control API, media.
type Addresses = (SocketAddr, SocketAddr);

/// One beat: the record with its TTL and the id in the node set, in one
/// transaction so no reader sees the id without the record for long.
fn beat(
    connection: &mut Connection,
    link: &ClusterLink,
    (api, media): Addresses,
    (load, hosted): (NodeLoad, Vec<String>),
) -> redis::RedisResult<()> {
    let settings = link.settings();
    let record = NodeRecord {
        id: settings.node_id.clone(),
        api,
        media,
        load,
    };
    let json = serde_json::to_string(&record).map_err(|e| {
        redis::RedisError::from((redis::ErrorKind::Client, "serialize", e.to_string()))
    })?;
    let ttl_ms = u64::try_from(settings.ttl.as_millis()).unwrap_or(u64::MAX);
    redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(keys::node(&settings.node_id))
        .arg(json)
        .arg("PX")
        .arg(ttl_ms)
        .ignore()
        .cmd("SADD")
        .arg(keys::NODES)
        .arg(&settings.node_id)
        .ignore()
        .exec(connection)?;
    // The meetings this node homes or hosts legs of live on.
    super::book::renew(connection, &settings.node_id, &hosted)
}

fn beat_loop(
    link: &ClusterLink,
    addresses: Addresses,
    load: &LoadSource,
    up: &AtomicBool,
    stop: &mpsc::Receiver<()>,
) {
    let period = link.settings().heartbeat;
    let mut connection: Option<Connection> = None;
    let mut backoff = MIN_BACKOFF;
    let mut logged_down = false;
    loop {
        let result = match connection.as_mut() {
            Some(c) => beat(c, link, addresses, load()).map_err(|e| e.to_string()),
            None => match link.connect() {
                Ok(mut c) => {
                    let result = beat(&mut c, link, addresses, load()).map_err(|e| e.to_string());
                    connection = Some(c);
                    result
                }
                Err(e) => Err(e.to_string()),
            },
        };
        let wait = match result {
            Ok(()) => {
                if logged_down || !up.load(Ordering::Relaxed) {
                    tracing::info!(node = %link.settings().node_id, "registered in the cluster");
                }
                up.store(true, Ordering::Relaxed);
                logged_down = false;
                backoff = MIN_BACKOFF;
                period
            }
            Err(reason) => {
                connection = None;
                up.store(false, Ordering::Relaxed);
                if !logged_down {
                    tracing::warn!(
                        "cluster heartbeat failed, forwarding continues; retrying with backoff: {reason}"
                    );
                    logged_down = true;
                }
                let wait = backoff;
                backoff = (backoff * 2).min(period);
                wait
            }
        };
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    deregister(link, connection);
    up.store(false, Ordering::Relaxed);
}

fn deregister(link: &ClusterLink, connection: Option<Connection>) {
    let settings = link.settings();
    let connection = match connection {
        Some(c) => Ok(c),
        None => link.connect(),
    };
    let result = connection.map_err(|e| e.to_string()).and_then(|mut c| {
        redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(keys::node(&settings.node_id))
            .ignore()
            .cmd("SREM")
            .arg(keys::NODES)
            .arg(&settings.node_id)
            .ignore()
            .exec(&mut c)
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => tracing::info!(node = %settings.node_id, "left the cluster"),
        Err(e) => tracing::warn!(
            "could not deregister from the cluster ({e}); the registration expires in {:?}",
            settings.ttl
        ),
    }
}
