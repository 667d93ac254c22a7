//! Cascading (DESIGN.md, "Cluster"): makes this node's relay legs match
//! the cluster. For a meeting with legs here it publishes this node's
//! streams to Redis, reads the roster and every node's streams, and wants
//! one relay leg to each other live node that hosts legs of the meeting,
//! carrying that node's streams; the registry does the rest (see
//! `registry/relays.rs`). Both nodes of a pair see each other in the
//! roster, so each builds its half; their keys come from one Redis hash
//! that the first of them fills.
//!
//! One thread, the [`Cascader`], owns the reconciling, woken by [`Wake`]:
//! a local change (a leg seated or gone, a stream published) reconciles
//! that meeting at once and then announces it on the cluster's change
//! channel (`cluster::changes`), so every other node hosting the meeting
//! reconciles it at once too: the cascade forms when a meeting starts
//! spanning a pair, not at the next heartbeat, and goes when it stops.
//! Every heartbeat period the thread also reconciles every meeting, which
//! repairs whatever a lost notice (Redis away) left behind.
//!
//! A Redis error skips the meeting: the relay legs stay as they were and
//! media keeps flowing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use super::ControlState;
use super::registry::{LocalStream, WantedRelay};
use crate::cluster::{ClusterError, ClusterLink, MeetingBook, StreamEntry};
use crate::relay::MediaKind;
use crate::srtp::{MasterKey, SrtpProfile};

/// The relay legs' profile (what the issue asks of them).
const PROFILE: SrtpProfile = SrtpProfile::AeadAes256Gcm;

fn kind_of(name: &str) -> MediaKind {
    if name == "video" {
        MediaKind::Video
    } else {
        MediaKind::Audio
    }
}

/// What wakes the cascade thread.
#[derive(Debug)]
pub(crate) enum Wake {
    /// This node changed what it hosts of the meeting: reconcile, then
    /// announce it to the other nodes.
    Local(String),
    /// Another node announced a change of the meeting: reconcile.
    Remote(String),
    /// End the thread.
    Stop,
}

/// Reconciles the meetings with legs here that `only` names (every one
/// when `None`).
fn reconcile(state: &ControlState, only: Option<&BTreeSet<String>>) {
    let Some(link) = state.cluster() else {
        return;
    };
    let mut local = state.registry().local_streams();
    if let Some(only) = only {
        local.retain(|(meeting, _)| only.contains(meeting));
    }
    if local.is_empty() {
        return;
    }
    let nodes = match link.live_nodes() {
        Ok(nodes) => nodes,
        Err(e) => {
            tracing::debug!("cascade pass skipped: {e}");
            return;
        }
    };
    for (meeting, streams) in local {
        match wanted(state, link, &nodes, &meeting, &streams) {
            Ok(wanted) => state.registry().sync_relays(&meeting, wanted),
            Err(e) => tracing::debug!(%meeting, "cascade pass skipped: {e}"),
        }
    }
}

/// The cascade thread (see the module doc) and the change feed that
/// wakes it for other nodes' notices.
#[derive(Debug)]
pub(crate) struct Cascader {
    wake: Sender<Wake>,
    thread: Option<JoinHandle<()>>,
    feed: Option<crate::cluster::ChangeFeed>,
}

impl Cascader {
    /// Starts reconciling for `state` (in cluster mode), woken through
    /// `wake` / `woken` (the pair `ControlState` holds the sender of),
    /// its thread in `background` (control work, below the packet workers).
    pub(crate) fn start(
        state: ControlState,
        link: &Arc<ClusterLink>,
        wake: Sender<Wake>,
        woken: Receiver<Wake>,
        background: crate::net::priority::Background,
    ) -> std::io::Result<Self> {
        let period = link.settings().heartbeat;
        let remote = wake.clone();
        let feed = crate::cluster::ChangeFeed::start(
            Arc::clone(link),
            Box::new(move |meeting| {
                // Fails only once the cascade thread ended: nothing to do.
                let _ = remote.send(Wake::Remote(meeting));
            }),
        )?;
        let thread = std::thread::Builder::new()
            .name("sluice-cascade".to_owned())
            .spawn(move || {
                background.enter("cluster cascade");
                run(&state, &woken, period);
            })?;
        Ok(Self {
            wake,
            thread: Some(thread),
            feed: Some(feed),
        })
    }

    /// Stops the feed and the thread and joins them.
    pub(crate) fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(feed) = self.feed.take() {
            feed.shutdown();
        }
        let _ = self.wake.send(Wake::Stop);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the cascade thread panicked");
        }
    }
}

impl Drop for Cascader {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn run(state: &ControlState, woken: &Receiver<Wake>, period: Duration) {
    let mut next_pass = Instant::now();
    loop {
        let wait = next_pass.saturating_duration_since(Instant::now());
        let first = match woken.recv_timeout(wait) {
            Ok(wake) => wake,
            Err(RecvTimeoutError::Timeout) => {
                reconcile(state, None);
                next_pass = Instant::now() + period;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Everything queued meanwhile goes in one pass (a burst of joins
        // reconciles each meeting once).
        let (mut local, mut remote) = (BTreeSet::new(), BTreeSet::new());
        for wake in std::iter::once(first).chain(woken.try_iter()) {
            match wake {
                Wake::Local(meeting) => {
                    local.insert(meeting);
                }
                Wake::Remote(meeting) => {
                    remote.insert(meeting);
                }
                Wake::Stop => return,
            }
        }
        remote.extend(local.iter().cloned());
        reconcile(state, Some(&remote));
        // Announced only now, with this node's streams in Redis, so the
        // others read them when they reconcile.
        if let Some(link) = state.cluster() {
            for meeting in &local {
                if let Err(e) = link.announce(meeting) {
                    tracing::debug!(%meeting, "change not announced (the next pass repairs it): {e}");
                }
            }
        }
    }
}

fn wanted(
    state: &ControlState,
    link: &ClusterLink,
    nodes: &[crate::cluster::NodeRecord],
    meeting: &str,
    streams: &[LocalStream],
) -> Result<Vec<WantedRelay>, ClusterError> {
    let me = &link.settings().node_id;
    let book = MeetingBook::new(link);
    let mine: Vec<(u32, StreamEntry)> = streams
        .iter()
        .map(|(ssrc, kind, pt, codec, pid)| {
            let entry = StreamEntry {
                node: me.clone(),
                participant: pid.clone(),
                kind: match kind {
                    MediaKind::Audio => "audio",
                    MediaKind::Video => "video",
                }
                .to_owned(),
                payload_type: *pt,
                codec: codec.clone(),
            };
            (*ssrc, entry)
        })
        .collect();
    let all = book.publish_streams(meeting, me, &mine)?;
    // No legs of our own (only relays left): we want no relay legs.
    if !state.registry().hosts_legs_of(meeting) {
        return Ok(Vec::new());
    }
    let Some(record) = book.get(meeting)? else {
        return Ok(Vec::new());
    };
    let mut others: Vec<&str> = record
        .roster
        .values()
        .map(|e| e.node.as_str())
        .filter(|n| n != me)
        .collect();
    others.sort_unstable();
    others.dedup();
    let rng = SystemRandom::new();
    let mut out = Vec::new();
    for other in others {
        let Some(node) = nodes.iter().find(|n| n.id == other) else {
            continue; // dead: its legs died with it
        };
        let mut candidates = [0u8; 88];
        rng.fill(&mut candidates)
            .map_err(|_| ClusterError::Corrupt {
                what: "the system random generator".to_owned(),
                reason: "it failed".to_owned(),
            })?;
        let (a, b) = candidates.split_at(44);
        let (send, receive) = book.pair_keys(meeting, me, other, (a, b))?;
        let key = |bytes: &[u8]| {
            MasterKey::new(PROFILE, bytes).map_err(|e| ClusterError::Corrupt {
                what: format!("cascade keys of meeting {meeting:?}"),
                reason: e.to_string(),
            })
        };
        let streams = all
            .iter()
            .filter(|(_, e)| e.node == other && record.roster.contains_key(&e.participant))
            .map(|(ssrc, e)| (*ssrc, kind_of(&e.kind), e.payload_type, e.codec.clone()))
            .collect();
        out.push(WantedRelay {
            node: other.to_owned(),
            address: node.media,
            inbound: key(&receive)?,
            outbound: key(&send)?,
            streams,
        });
    }
    Ok(out)
}
