//! Relay-to-relay legs (DESIGN.md, "Cluster", "Media services are
//! participants"): when a meeting's legs sit on several nodes, this node
//! holds one leg per other node hosting legs of it. The leg is an ordinary
//! SRTP leg of the data plane: its `relay_to_client` key protects what this
//! node sends the other (each local publisher's streams, once), its
//! `client_to_relay` key authenticates what the other sends here (the
//! other node's publishers' streams, published on the leg under their own
//! SSRCs), and it is latched from the start to the other node's media
//! address. Keys are AEAD_AES_256_GCM, agreed through Redis.
//!
//! Split horizon without a line in the packet path: a relay leg belongs to
//! the meeting's *relay* fan-out set (`Meeting::relay_idx`), which holds
//! this node's own legs only. A packet from another node therefore reaches
//! local receivers and never another relay; a local publisher's packet
//! fans out over the meeting's set, which holds the relay legs too.
//! E2EE payloads pass through untouched, as on any leg (hop keys only).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};

use super::{Registry, Stream};
use crate::relay::{LegId, LegRoute, RoutingSnapshot, StreamRoute};
use crate::srtp::MasterKey;

/// A relay leg to one other node.
#[derive(Debug)]
pub(crate) struct RelayLeg {
    node: String,
    leg: Arc<LegRoute>,
    pub(super) streams: Vec<Stream>,
}

/// A local publisher's stream: (ssrc, kind, payload type, codec, participant).
pub(crate) type LocalStream = (u32, crate::relay::MediaKind, u8, String, String);

/// What the cascade wants a relay leg to the node `node` to be.
#[derive(Debug)]
pub(crate) struct WantedRelay {
    pub(crate) node: String,
    pub(crate) address: std::net::SocketAddr,
    /// What the other node sends here.
    pub(crate) inbound: MasterKey,
    /// What this node sends the other.
    pub(crate) outbound: MasterKey,
    /// The other node's publishers' streams: (ssrc, kind, payload type, codec).
    pub(crate) streams: Vec<(u32, crate::relay::MediaKind, u8, String)>,
}

impl RelayLeg {
    /// Its leg's id.
    pub(super) fn id(&self) -> LegId {
        self.leg.id
    }
}

/// Puts the relay legs and their streams into the registry's routes (the
/// fan-out sets are `refresh_sets`'s).
pub(super) fn route(routes: &mut RoutingSnapshot, relays: &[RelayLeg]) {
    for relay in relays {
        routes.insert_leg(Arc::clone(&relay.leg));
        for stream in &relay.streams {
            routes
                .streams
                .insert(stream.route.ssrc, Arc::clone(&stream.route));
        }
    }
}

/// Takes the relay legs and their streams out of the registry's routes.
pub(super) fn unroute(routes: &mut RoutingSnapshot, relays: &[RelayLeg]) {
    for relay in relays {
        routes.legs.remove(&relay.leg.id);
        for stream in &relay.streams {
            routes.streams.remove(&stream.route.ssrc);
        }
    }
}

impl Registry {
    /// The meetings with legs here, each with its local publishers'
    /// streams: (meeting, [(ssrc, kind, payload type, codec, participant)]).
    pub(crate) fn local_streams(&self) -> Vec<(String, Vec<LocalStream>)> {
        self.meetings
            .values()
            .filter(|m| !m.participants.is_empty() || !m.relays.is_empty())
            .map(|m| {
                let streams = m
                    .participants
                    .iter()
                    .flat_map(|p| {
                        p.streams.iter().map(|s| {
                            (
                                s.route.ssrc,
                                s.route.kind,
                                s.route.payload_type,
                                s.codec.clone(),
                                p.id.clone(),
                            )
                        })
                    })
                    .collect();
                (m.id.clone(), streams)
            })
            .collect()
    }

    /// Whether meeting `id` has legs of its own here.
    pub(crate) fn hosts_legs_of(&self, id: &str) -> bool {
        self.meetings
            .get(id)
            .is_some_and(|m| !m.participants.is_empty())
    }

    /// Makes the relay legs of meeting `id` what `wanted` says: legs to
    /// nodes no longer wanted go, new ones come (latched to the other
    /// node's address), streams follow the other node's publishers.
    /// Publishes only when something changed. SSRCs taken here already
    /// are skipped (and logged): the API keeps them unique per node only.
    pub(crate) fn sync_relays(&mut self, id: &str, wanted: Vec<WantedRelay>) {
        let Some(meeting) = self.meetings.get_mut(id) else {
            return;
        };
        // Out of the routes as they are, back in as they end up (below).
        unroute(&mut self.routes, &meeting.relays);
        let mut changed = false;
        let mut freed = Vec::new();
        meeting.relays.retain(|r| {
            let keep = wanted.iter().any(|w| {
                w.node == r.node
                    && w.address == r.leg.latch.get().unwrap_or(w.address)
                    && w.inbound.as_bytes() == r.leg.client_to_relay.as_bytes()
                    && w.outbound.as_bytes() == r.leg.relay_to_client.as_bytes()
            });
            if !keep {
                freed.extend(r.streams.iter().map(|s| s.route.ssrc));
                changed = true;
            }
            keep
        });
        for ssrc in freed {
            self.ssrcs.remove(&ssrc);
        }
        let (mode, relay_idx) = (meeting.mode, meeting.relay_idx);
        for want in wanted {
            let at = self
                .meetings
                .get(id)
                .and_then(|m| m.relays.iter().position(|r| r.node == want.node));
            let at = match at {
                Some(at) => at,
                None => {
                    let latch = Arc::<crate::relay::Latch>::default();
                    latch.set(want.address);
                    let leg = LegRoute {
                        id: LegId(self.next_leg),
                        meeting: relay_idx,
                        mode,
                        client_to_relay: want.inbound.clone(),
                        relay_to_client: want.outbound.clone(),
                        latch,
                        next_srtcp_index: Arc::new(AtomicU32::new(0)),
                        highest_srtcp_index: Arc::new(AtomicU64::new(0)),
                    };
                    self.next_leg += 1;
                    let Some(meeting) = self.meetings.get_mut(id) else {
                        return;
                    };
                    meeting.relays.push(RelayLeg {
                        node: want.node.clone(),
                        leg: Arc::new(leg),
                        streams: Vec::new(),
                    });
                    changed = true;
                    meeting.relays.len() - 1
                }
            };
            changed |= self.sync_relay_streams(id, at, &want.streams);
        }
        if let Some(meeting) = self.meetings.get(id) {
            route(&mut self.routes, &meeting.relays);
            if changed {
                super::refresh_sets(&mut self.routes, meeting);
            }
        }
        if changed {
            self.publish();
        }
    }

    /// Makes relay `at`'s streams `wanted`; whether anything changed.
    fn sync_relay_streams(
        &mut self,
        id: &str,
        at: usize,
        wanted: &[(u32, crate::relay::MediaKind, u8, String)],
    ) -> bool {
        let Some(relay) = self.meetings.get_mut(id).and_then(|m| m.relays.get_mut(at)) else {
            return false;
        };
        let before = relay.streams.len();
        let mut freed = Vec::new();
        relay.streams.retain(|s| {
            let keep = wanted.iter().any(|w| w.0 == s.route.ssrc);
            if !keep {
                freed.push(s.route.ssrc);
            }
            keep
        });
        let mut changed = relay.streams.len() != before;
        let leg = relay.leg.id;
        let missing: Vec<_> = wanted
            .iter()
            .filter(|w| !relay.streams.iter().any(|s| s.route.ssrc == w.0))
            .cloned()
            .collect();
        for ssrc in freed {
            self.ssrcs.remove(&ssrc);
        }
        for (ssrc, kind, payload_type, codec) in missing {
            if !self.ssrcs.insert(ssrc) {
                tracing::warn!(meeting = %id, ssrc, "another node's stream uses an SSRC taken here; not relayed");
                continue;
            }
            let Some(relay) = self.meetings.get_mut(id).and_then(|m| m.relays.get_mut(at)) else {
                return changed;
            };
            relay.streams.push(Stream {
                route: Arc::new(StreamRoute {
                    ssrc,
                    leg,
                    kind,
                    payload_type,
                    highest_index: Arc::new(AtomicU64::new(0)),
                }),
                codec,
            });
            changed = true;
        }
        changed
    }
}
