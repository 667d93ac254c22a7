//! What a node publishes about itself under its TTL key: where to reach it
//! and how loaded it is. Serialized as JSON, so `redis-cli GET` reads it.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A node's load, as placement weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeLoad {
    /// Legs (participants) the node hosts.
    pub legs: u64,
    /// Streams published on the node.
    pub streams: u64,
    /// Meetings with at least one leg on the node.
    pub meetings: u64,
    /// Legs the node admits at most (`[policy] max_participants_per_node`).
    pub max_legs: u64,
    /// How busy its busiest packet worker is, in millionths (0 from a
    /// record without it).
    #[serde(default)]
    pub busy_ppm: u64,
    /// The busy share above which the node refuses new legs
    /// (`[policy] max_worker_busy`), in millionths.
    #[serde(default = "all_of_it")]
    pub max_busy_ppm: u64,
}

fn all_of_it() -> u64 {
    1_000_000
}

impl NodeLoad {
    /// Whether one more leg fits: below the leg limit, and the busiest
    /// worker not past the share at which the node sheds new legs.
    pub fn has_room(&self) -> bool {
        self.legs < self.max_legs && self.busy_ppm <= self.max_busy_ppm
    }

    /// The fraction of the node's legs in use, in millionths (integer, so
    /// placement compares exactly and ties are real ties).
    pub fn fill_ppm(&self) -> u64 {
        if self.max_legs == 0 {
            return 1_000_000;
        }
        self.legs.saturating_mul(1_000_000) / self.max_legs
    }
}

/// One live node, as it registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's `[cluster] node_id`.
    pub id: String,
    /// Its control API (`advertise_api`).
    pub api: SocketAddr,
    /// Its media address (`advertise_media`).
    pub media: SocketAddr,
    /// Its load at the last heartbeat.
    pub load: NodeLoad,
}
