//! Where a new meeting or a new leg goes (DESIGN.md, "Cluster"): a pure
//! function of the live nodes' published records, so every node that asks
//! with the same view gets the same answer, and tests need no Redis.
//!
//! - A node has room while it is below its leg limit and its busiest
//!   packet worker is not past `[policy] max_worker_busy` (both as it
//!   published them).
//! - A meeting goes to the least-loaded live node with room: lowest fill
//!   (legs / max), then fewest legs, then fewest meetings, then the
//!   smallest node id (a deterministic tie-break).
//! - A participant goes to the node it names (`node` hint), else to its
//!   meeting's home node; when that node is gone or full, to the best
//!   other node by the same order. The meeting then spans both.

use super::NodeRecord;

/// Why no node could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// No node is registered (Redis was just restarted, or every node died).
    #[error("no live node is registered in the cluster")]
    NoNodes,
    /// Every live node is at its leg limit.
    #[error("every live node of the cluster is full")]
    AllFull,
    /// The `node` hint names no live node.
    #[error("no live node is called {0:?}")]
    UnknownNode(String),
    /// The `node` hint names a node that is full.
    #[error("node {0:?} is full")]
    NodeFull(String),
}

/// The order placement prefers nodes in: the smallest key wins.
fn rank(node: &NodeRecord) -> (u64, u64, u64, &str) {
    (
        node.load.fill_ppm(),
        node.load.legs,
        node.load.meetings,
        &node.id,
    )
}

/// The least-loaded live node with room, for a new meeting.
pub fn place_meeting(nodes: &[NodeRecord]) -> Result<&NodeRecord, PlacementError> {
    if nodes.is_empty() {
        return Err(PlacementError::NoNodes);
    }
    nodes
        .iter()
        .filter(|n| n.load.has_room())
        .min_by(|a, b| rank(a).cmp(&rank(b)))
        .ok_or(PlacementError::AllFull)
}

/// The node a new participant's leg goes to: `hint` if given (an explicit
/// choice: a full or unknown hinted node is an error, not a detour), else
/// `home` while it is live and has room, else the best other node.
pub fn place_participant<'a>(
    nodes: &'a [NodeRecord],
    home: Option<&str>,
    hint: Option<&str>,
) -> Result<&'a NodeRecord, PlacementError> {
    if let Some(hint) = hint {
        let node = nodes
            .iter()
            .find(|n| n.id == hint)
            .ok_or_else(|| PlacementError::UnknownNode(hint.to_owned()))?;
        return if node.load.has_room() {
            Ok(node)
        } else {
            Err(PlacementError::NodeFull(hint.to_owned()))
        };
    }
    if let Some(node) = home.and_then(|home| nodes.iter().find(|n| n.id == home))
        && node.load.has_room()
    {
        return Ok(node);
    }
    place_meeting(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::NodeLoad;

    fn node(id: &str, legs: u64, max_legs: u64) -> NodeRecord {
        NodeRecord {
            id: id.to_owned(),
            api: "127.0.0.1:7480".parse().unwrap(),
            media: "127.0.0.1:40000".parse().unwrap(),
            load: NodeLoad {
                legs,
                streams: 0,
                meetings: 0,
                max_legs,
                busy_ppm: 0,
                max_busy_ppm: 1_000_000,
            },
        }
    }

    #[test]
    fn a_meeting_goes_to_the_least_filled_node() {
        let nodes = [node("a", 50, 100), node("b", 10, 100), node("c", 30, 100)];
        assert_eq!(place_meeting(&nodes).unwrap().id, "b");
        // Fill, not count: 40 of 1000 is emptier than 10 of 100.
        let nodes = [node("a", 10, 100), node("b", 40, 1000)];
        assert_eq!(place_meeting(&nodes).unwrap().id, "b");
    }

    #[test]
    fn a_node_past_its_busy_limit_is_passed_over_like_a_full_one() {
        let mut nodes = [node("a", 0, 100), node("b", 50, 100)];
        nodes[0].load.busy_ppm = 900_000;
        nodes[0].load.max_busy_ppm = 850_000;
        assert_eq!(place_meeting(&nodes).unwrap().id, "b");
        assert_eq!(place_participant(&nodes, Some("a"), None).unwrap().id, "b");
        // A record from before the busy share was published has room.
        let old: crate::cluster::NodeLoad =
            serde_json::from_str(r#"{"legs":1,"streams":0,"meetings":1,"max_legs":5}"#).unwrap();
        assert!(old.has_room());
    }

    #[test]
    fn ties_break_the_same_way_in_any_order() {
        let mut nodes = vec![node("c", 0, 10), node("a", 0, 10), node("b", 0, 10)];
        assert_eq!(place_meeting(&nodes).unwrap().id, "a");
        nodes.reverse();
        assert_eq!(place_meeting(&nodes).unwrap().id, "a");
        // Same fill and legs: fewer meetings wins before the id.
        nodes[0].load.meetings = 3;
        nodes[1].load.meetings = 1;
        nodes[2].load.meetings = 2;
        assert_eq!(place_meeting(&nodes).unwrap().id, nodes[1].id);
    }

    #[test]
    fn full_nodes_are_skipped_and_none_left_is_an_error() {
        let nodes = [node("a", 10, 10), node("b", 9, 10)];
        assert_eq!(place_meeting(&nodes).unwrap().id, "b");
        let nodes = [node("a", 10, 10), node("b", 10, 10)];
        assert_eq!(place_meeting(&nodes), Err(PlacementError::AllFull));
        assert_eq!(place_meeting(&[]), Err(PlacementError::NoNodes));
    }

    #[test]
    fn meetings_spread_over_nodes_as_their_load_grows() {
        // Placing twenty one-leg meetings, each raising its node's load,
        // spreads them 7/7/6 over three equal nodes.
        let mut nodes = vec![node("a", 0, 100), node("b", 0, 100), node("c", 0, 100)];
        for _ in 0..20 {
            let id = place_meeting(&nodes).unwrap().id.clone();
            let chosen = nodes.iter_mut().find(|n| n.id == id).unwrap();
            chosen.load.legs += 1;
            chosen.load.meetings += 1;
        }
        let legs: Vec<u64> = nodes.iter().map(|n| n.load.legs).collect();
        assert_eq!(legs, [7, 7, 6]);
    }

    #[test]
    fn a_participant_follows_its_meeting_until_the_home_is_full_or_gone() {
        let nodes = [node("a", 5, 10), node("b", 1, 10), node("c", 2, 10)];
        assert_eq!(place_participant(&nodes, Some("a"), None).unwrap().id, "a");
        let full = [node("a", 10, 10), node("b", 1, 10), node("c", 2, 10)];
        assert_eq!(place_participant(&full, Some("a"), None).unwrap().id, "b");
        // A dead home (not in the list) re-homes the participant too.
        assert_eq!(place_participant(&nodes, Some("z"), None).unwrap().id, "b");
        assert_eq!(place_participant(&nodes, None, None).unwrap().id, "b");
    }

    #[test]
    fn a_hint_is_obeyed_or_refused_never_rerouted() {
        let nodes = [node("a", 5, 10), node("b", 10, 10)];
        assert_eq!(
            place_participant(&nodes, Some("b"), Some("a")).unwrap().id,
            "a"
        );
        assert_eq!(
            place_participant(&nodes, Some("a"), Some("b")),
            Err(PlacementError::NodeFull("b".to_owned()))
        );
        assert_eq!(
            place_participant(&nodes, None, Some("q")),
            Err(PlacementError::UnknownNode("q".to_owned()))
        );
    }
}
