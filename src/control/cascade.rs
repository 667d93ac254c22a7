//! Cascading (DESIGN.md, "Cluster"): run on every heartbeat, it makes this
//! node's relay legs match the cluster. For each meeting with legs here it
//! publishes this node's streams to Redis, reads the roster and every
//! node's streams, and wants one relay leg to each other live node that
//! hosts legs of the meeting, carrying that node's streams; the registry
//! does the rest (see `registry/relays.rs`). Both nodes of a pair see each
//! other in the roster, so each builds its half; their keys come from one
//! Redis hash that the first of them fills.
//!
//! A Redis error skips the tick: the relay legs stay as they were and
//! media keeps flowing.

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

/// One reconciliation pass over every meeting with legs here.
pub(crate) fn tick(state: &ControlState) {
    let Some(link) = state.cluster() else {
        return;
    };
    let local = state.registry().local_streams();
    if local.is_empty() {
        return;
    }
    let nodes = match link.live_nodes() {
        Ok(nodes) => nodes,
        Err(e) => {
            tracing::debug!("cascade tick skipped: {e}");
            return;
        }
    };
    for (meeting, streams) in local {
        match wanted(state, link, &nodes, &meeting, &streams) {
            Ok(wanted) => state.registry().sync_relays(&meeting, wanted),
            Err(e) => tracing::debug!(%meeting, "cascade tick skipped: {e}"),
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
