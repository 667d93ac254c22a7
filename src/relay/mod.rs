//! The relay core: routing decisions for the packet workers, sans-IO.
//!
//! The routing snapshot ([`RoutingSnapshot`]) is the contract between the control plane (which
//! publishes) and the workers (which read).

mod snapshot;
mod transmit;

pub use snapshot::{
    Latch, LegId, LegRoute, MediaKind, MeetingIdx, MeetingMode, RoutingSnapshot, SnapshotCell,
    StreamRoute, empty_cell,
};
pub use transmit::{SLOT, Transmit, Transmits};
