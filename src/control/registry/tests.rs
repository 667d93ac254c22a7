//! The registry's routing: a join, leave or stream changes only the
//! entries it touches, and every other meeting's fan-out set is the very
//! same `Arc` in the next snapshot (what lets the workers skip re-planning
//! it), while the published snapshot always equals the state.

use std::sync::Arc;

use super::*;
use crate::relay::empty_cell;

fn registry() -> Registry {
    let policy = Policy {
        max_participants_per_node: 100_000,
        ..Policy::default()
    };
    Registry::new(
        empty_cell(),
        Arc::new(MetricsHub::new("ring")),
        policy,
        "127.0.0.1:1".parse().unwrap(),
    )
}

fn meeting(registry: &mut Registry, id: &str) {
    registry
        .create_meeting(NewMeeting {
            id: Some(id.to_owned()),
            mode: MeetingMode::E2ee,
            owner: Owner {
                account: "alice".to_owned(),
                verified: true,
            },
            passcode: None,
        })
        .unwrap();
}

fn join(registry: &mut Registry, meeting: &str) -> String {
    let new = NewParticipant::attendee("p", None);
    registry.admit(meeting, new).unwrap().id.clone()
}

/// The snapshot a full rebuild from the registry's state would publish.
fn rebuilt(registry: &Registry) -> (Vec<LegId>, Vec<u32>, Vec<(u32, LegId)>) {
    let mut legs = Vec::new();
    let mut streams = Vec::new();
    let mut rtcp = Vec::new();
    for m in registry.meetings.values() {
        for p in &m.participants {
            legs.push(p.leg.id);
            rtcp.push((p.rtcp_ssrc, p.leg.id));
            streams.extend(p.streams.iter().map(|s| s.route.ssrc));
        }
    }
    legs.sort_unstable();
    streams.sort_unstable();
    rtcp.sort_unstable();
    (legs, streams, rtcp)
}

fn published(registry: &Registry) -> (Vec<LegId>, Vec<u32>, Vec<(u32, LegId)>) {
    let snapshot = registry.cell.load();
    let mut legs: Vec<_> = snapshot.legs.keys().copied().collect();
    let mut streams: Vec<_> = snapshot.streams.keys().copied().collect();
    let mut rtcp: Vec<_> = snapshot.rtcp_ssrcs.iter().map(|(s, l)| (*s, *l)).collect();
    legs.sort_unstable();
    streams.sort_unstable();
    rtcp.sort_unstable();
    (legs, streams, rtcp)
}

#[test]
fn a_join_replaces_only_its_own_meetings_fanout_set() {
    let mut registry = registry();
    meeting(&mut registry, "a");
    meeting(&mut registry, "b");
    join(&mut registry, "a");
    join(&mut registry, "b");
    let before = registry.cell.load_full();
    let (a, b) = (registry.meetings["a"].idx, registry.meetings["b"].idx);
    join(&mut registry, "a");
    let after = registry.cell.load_full();
    assert_eq!(after.generation, before.generation + 1);
    assert!(Arc::ptr_eq(&before.meetings[&b], &after.meetings[&b]));
    assert!(!Arc::ptr_eq(&before.meetings[&a], &after.meetings[&a]));
    assert_eq!(after.meetings[&a].len(), 2);
    // The leg routes themselves are shared, not copied.
    for (id, route) in before.legs.iter() {
        assert!(Arc::ptr_eq(route, &after.legs[id]));
    }
    assert_eq!(after.next_leg, 3);
}

#[test]
fn the_published_snapshot_always_equals_the_state() {
    let mut registry = registry();
    meeting(&mut registry, "a");
    meeting(&mut registry, "b");
    let mut people = Vec::new();
    for i in 0..6 {
        let m = if i % 2 == 0 { "a" } else { "b" };
        people.push((m, join(&mut registry, m)));
        assert_eq!(published(&registry), rebuilt(&registry));
    }
    for (k, (m, p)) in people.iter().enumerate() {
        let new = NewStream {
            ssrc: 0x100 + k as u32,
            kind: MediaKind::Audio,
            codec: "opus".to_owned(),
            payload_type: 111,
        };
        registry.add_stream(m, p, new).unwrap();
        assert_eq!(published(&registry), rebuilt(&registry));
    }
    let (m, p) = &people[2];
    registry.remove_participant(m, p).unwrap();
    assert_eq!(published(&registry), rebuilt(&registry));
    assert_eq!(registry.node_participants(), 5);
    let idx = registry.meetings["a"].idx;
    assert_eq!(registry.cell.load().meetings[&idx].len(), 2);

    registry.delete_meeting("b").unwrap();
    assert_eq!(published(&registry), rebuilt(&registry));
    assert_eq!(registry.node_participants(), 2);
    let snapshot = registry.cell.load();
    assert_eq!(snapshot.meetings.len(), 1);
    assert_eq!(snapshot.legs.len(), 2);
}

/// A replaced snapshot that a reader (a worker's turn) still holds is kept
/// by the registry, so the reader's release is never the one that frees
/// it; the registry frees it at a later publication once it alone holds
/// it, and keeps none that no one reads.
#[test]
fn replaced_snapshots_are_freed_by_the_registry_not_by_a_reader() {
    let mut r = registry();
    meeting(&mut r, "m");
    let reader = r.cell.load_full();
    let weak = Arc::downgrade(&reader);
    join(&mut r, "m");
    assert!(
        r.retired.iter().any(|s| Arc::ptr_eq(s, &reader)),
        "kept while read"
    );
    drop(reader);
    assert!(
        weak.upgrade().is_some(),
        "the reader's release freed nothing"
    );
    join(&mut r, "m");
    assert!(weak.upgrade().is_none(), "freed by the next publication");
    assert!(r.retired.is_empty(), "nothing unread is kept");
    for _ in 0..2 * RETIRED_KEPT {
        let _held = r.cell.load_full();
        join(&mut r, "m");
    }
    assert!(r.retired.len() <= RETIRED_KEPT, "bounded");
}
