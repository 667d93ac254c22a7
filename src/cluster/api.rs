//! The cluster's own endpoints on the control API (`/v1/cluster/...`).
//! Redis commands here block the control thread for at most the link's
//! timeouts (300 ms to connect, 500 ms a command); the packet workers are
//! never involved.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::control::{ApiError, ControlState};

/// `GET /v1/cluster/nodes`: the live nodes, sorted by id, with their load.
pub(crate) async fn list_nodes(State(state): State<ControlState>) -> Result<Json<Value>, ApiError> {
    let link = state.cluster().ok_or(ApiError::NotClustered)?;
    let me = &link.settings().node_id;
    let nodes: Vec<Value> = link
        .live_nodes()?
        .into_iter()
        .map(|n| {
            json!({
                "id": n.id,
                "api": n.api.to_string(),
                "media": n.media.to_string(),
                "load": n.load,
                "self": &n.id == me,
            })
        })
        .collect();
    Ok(Json(json!({ "nodes": nodes })))
}
