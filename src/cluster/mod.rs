//! Cluster mode: the appliances of a rack share membership and meetings
//! through Redis (DESIGN.md, "Cluster").
//!
//! - [`node`]: what a node publishes under its TTL key (address, load).
//! - [`placement`]: the sans-IO choice of a node for a meeting or a leg.
//! - [`link`]: the one Redis connection the control plane uses, with
//!   timeouts, so a Redis outage answers `cluster_unavailable` at once.
//! - [`book`]: meetings in Redis, seats taken by Lua scripts (atomic).
//! - [`passcode`]: the salted PBKDF2 hash stored instead of a passcode.
//! - [`changes`]: the notices a node publishes when what it hosts of a
//!   meeting changes, so the others cascade at once.
//! - [`membership`]: the heartbeat thread that registers this node,
//!   refreshes its TTL, reconnects with backoff and deregisters on stop.
//!
//! Nothing here is on the packet path: workers never wait on Redis, and a
//! Redis outage only stops changes, never forwarding.
//! Membership and consensus are Redis's (TTL keys, `MULTI`, Lua scripts);
//! nothing home-made.

pub(crate) mod api;
pub mod book;
pub mod changes;
pub mod link;
pub mod membership;
pub mod node;
pub mod passcode;
pub mod placement;

pub use book::{MeetingBook, MeetingRecord, RosterEntry, SeatRefusal, StreamEntry};
pub use changes::ChangeFeed;
pub use link::{ClusterLink, keys};
pub use membership::{HostedMeeting, Membership};
pub use node::{NodeLoad, NodeRecord};
pub use placement::{PlacementError, place_meeting, place_participant};

/// Why a cluster operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Redis cannot be reached or did not answer in time.
    #[error("the cluster's Redis at {url} is unreachable ({reason})")]
    Unavailable {
        /// The Redis URL.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// Redis holds something sluice did not write (or a newer sluice did).
    #[error("the cluster's Redis holds an unreadable {what}: {reason}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Why it does not parse.
        reason: String,
    },
    /// No node could take the meeting or the leg.
    #[error(transparent)]
    Placement(#[from] PlacementError),
}
