//! Feeds arbitrary bytes to what cluster mode reads back from Redis (which
//! any host on the Redis network may have written): node records and
//! roster entries as JSON, stored passcode hashes, and placement over
//! whatever records parsed. None of it may panic.
//!
//! Input layout: byte 0 picks the split point of the rest between the
//! JSON and the passcode that is checked against it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::cluster::{NodeRecord, RosterEntry, passcode, place_meeting, place_participant};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(rest.len());
    let (json, given) = rest.split_at(at);
    let text = String::from_utf8_lossy(json);
    let given = String::from_utf8_lossy(given);
    // A stored hash of any shape verifies nothing but its passcode.
    let _ = passcode::verify(&given, &text);
    let _ = serde_json::from_str::<RosterEntry>(&text);
    let mut nodes: Vec<NodeRecord> = serde_json::from_str(&text).unwrap_or_default();
    if let Ok(one) = serde_json::from_str::<NodeRecord>(&text) {
        nodes.push(one);
    }
    if let Ok(chosen) = place_meeting(&nodes) {
        assert!(chosen.load.has_room());
    }
    let _ = place_participant(&nodes, Some(&given), None);
    let _ = place_participant(&nodes, None, Some(&given));
});
