//! Feeds arbitrary bytes to what cluster mode reads back from Redis (which
//! any host on the Redis network may have written): node records and
//! roster entries as JSON, stored passcode hashes, meeting hashes (one
//! `field=value` a line), change notices off the pub/sub channel, and
//! placement over whatever records parsed. None of it may panic.
//!
//! Input layout: byte 0 picks the split point of the rest between the
//! JSON and the passcode that is checked against it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

use sluice::cluster::changes::parse_notice;
use sluice::cluster::{
    MeetingRecord, NodeRecord, RosterEntry, passcode, place_meeting, place_participant,
};

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
    let _ = parse_notice(json);
    let fields: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let roster = BTreeMap::from([("p".to_owned(), given.clone().into_owned())]);
    let _ = MeetingRecord::from_hash("m", &fields, roster);
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
