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

use super::{ClusterError, ClusterLink, NodeLoad, NodeRecord, RosterEntry, keys};

/// The first wait after a failed beat.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// A meeting with legs on this node, and those legs as roster entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedMeeting {
    /// The meeting id.
    pub id: String,
    /// Participant id → entry, for this node's participants.
    pub roster: Vec<(String, RosterEntry)>,
}

/// Reads, at each beat, the node's load and the meetings it hosts legs of
/// (from the control registry).
pub type LoadSource = Box<dyn Fn() -> (NodeLoad, Vec<HostedMeeting>) + Send>;

/// Where the cluster's Redis keeps a random value set once: a new value
/// means Redis restarted empty, and the nodes put their meetings back.
const EPOCH: &str = "sluice:epoch";

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
    (load, hosted): (NodeLoad, Vec<HostedMeeting>),
    epoch: &mut Option<String>,
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
    let me = &settings.node_id;
    // Redis restarted empty (a new epoch): put back what this node knows.
    let fresh = format!("{:x}", u64::from(std::process::id()) ^ nanos_now());
    let (current,): (String,) = redis::pipe()
        .cmd("SET")
        .arg(EPOCH)
        .arg(fresh)
        .arg("NX")
        .ignore()
        .cmd("GET")
        .arg(EPOCH)
        .query(connection)?;
    let seeds = link.seeds_retained(|r| &r.home == me || hosted.iter().any(|h| h.id == r.id));
    if epoch.as_ref().is_some_and(|seen| *seen != current) {
        for record in &seeds {
            let roster = hosted
                .iter()
                .find(|h| h.id == record.id)
                .map_or(&[][..], |h| &h.roster[..]);
            super::book::reseed(connection, me, record, roster)?;
        }
        tracing::warn!(
            meetings = seeds.len(),
            "the cluster's Redis restarted empty: this node put its meetings back"
        );
    }
    *epoch = Some(current);
    // The meetings this node homes or hosts legs of live on.
    let ids: Vec<String> = hosted.into_iter().map(|h| h.id).collect();
    super::book::renew(connection, me, &ids)
}

/// A value that differs between start-ups, for the epoch (not a secret).
fn nanos_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
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
    let mut epoch = None;
    loop {
        let result = match connection.as_mut() {
            Some(c) => beat(c, link, addresses, load(), &mut epoch).map_err(|e| e.to_string()),
            None => match link.connect() {
                Ok(mut c) => {
                    let result = beat(&mut c, link, addresses, load(), &mut epoch)
                        .map_err(|e| e.to_string());
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
