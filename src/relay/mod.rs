//! The relay core: routing decisions for the packet workers, sans-IO.
//!
//! The routing snapshot ([`RoutingSnapshot`]) is the contract between the
//! control plane (which publishes) and the workers (which read);
//! [`RelayWorker`] is one worker's packet path, fed datagrams and writing
//! [`Transmits`].

mod deferred;
mod fanout;
mod height_probe;
mod latching;
mod legs;
mod path;
mod pt_rewrite;
mod rtcp_route;
mod slot_feed;
mod slot_rewrite;
mod slot_rtcp;
mod snapshot;
mod transmit;
mod worker;

#[cfg(test)]
mod slot_tests;
#[cfg(test)]
mod tests;

pub use height_probe::SourceHeight;
pub use path::Path;
pub use pt_rewrite::PtMap;
pub use slot_feed::SourceFeed;
pub use slot_rewrite::{feedback_to_sources, rewrite_header};
pub use slot_rtcp::rtcp_for_viewer;
pub use snapshot::{
    IdHash, IdHasher, Latch, LegId, LegRoute, MediaKind, MeetingIdx, MeetingMode, Members,
    RoutingSnapshot, SlotEntry, SlotMap, SnapshotCell, StreamRoute, empty_cell,
};
pub use transmit::{SLOT, Transmit, Transmits};
pub use worker::{RelayWorker, UnroutedSink};
