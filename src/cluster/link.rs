//! The control plane's connection to the cluster's Redis: opened lazily,
//! dropped on the first error and reopened on the next call, every command
//! bounded by a short timeout. The API runs its Redis commands through
//! [`ClusterLink::run`]; when Redis is away a change is refused at once
//! with `cluster_unavailable` (503) instead of hanging.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::{Client, Connection, RedisError};

use std::collections::BTreeMap;

use super::{ClusterError, MeetingRecord, NodeRecord};
use crate::config::ClusterSettings;

/// How long connecting to Redis may take before the call fails.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// The Redis key names, all under `sluice:`.
pub mod keys {
    /// The set of node ids that registered (pruned of expired ones).
    pub const NODES: &str = "sluice:nodes";

    /// A node's registration (JSON [`super::NodeRecord`], with a TTL).
    pub fn node(id: &str) -> String {
        format!("sluice:node:{id}")
    }
}

/// A lazily opened, self-healing Redis connection.
pub struct ClusterLink {
    settings: ClusterSettings,
    client: Client,
    /// Held only for one command (or one script) at a time.
    connection: Mutex<Option<Connection>>,
    /// The facts of the meetings this node homes or hosts legs of, kept to
    /// put them back should Redis restart empty (see `membership`).
    seeds: Mutex<BTreeMap<String, MeetingRecord>>,
}

impl std::fmt::Debug for ClusterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLink")
            .field("redis", &redacted(&self.settings.redis))
            .field("node_id", &self.settings.node_id)
            .finish_non_exhaustive()
    }
}

impl ClusterLink {
    /// A link to `settings.redis`; connects on first use.
    pub fn new(settings: ClusterSettings) -> Result<Self, ClusterError> {
        let client =
            Client::open(settings.redis.as_str()).map_err(|e| unavailable(&settings, &e))?;
        Ok(Self {
            settings,
            client,
            connection: Mutex::new(None),
            seeds: Mutex::new(BTreeMap::new()),
        })
    }

    /// This node's settings.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// A fresh connection with the timeouts set (for the heartbeat thread,
    /// which keeps its own).
    pub fn connect(&self) -> Result<Connection, ClusterError> {
        let connection = self
            .client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(|e| unavailable(&self.settings, &e))?;
        connection
            .set_read_timeout(Some(COMMAND_TIMEOUT))
            .and_then(|()| connection.set_write_timeout(Some(COMMAND_TIMEOUT)))
            .map_err(|e| unavailable(&self.settings, &e))?;
        Ok(connection)
    }

    /// Runs `op` on the shared connection, opening it if needed. Any error
    /// drops the connection, so the next call starts clean.
    pub fn run<T>(
        &self,
        op: impl FnOnce(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, ClusterError> {
        // A panic inside `op` leaves at worst a half-used connection,
        // which the next error replaces.
        let mut slot = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(self.connect()?);
        }
        // Just filled when it was empty.
        let connection = slot.as_mut().expect("a connection is open");
        match op(connection) {
            Ok(value) => Ok(value),
            Err(e) => {
                *slot = None;
                Err(unavailable(&self.settings, &e))
            }
        }
    }

    /// Remembers `record`'s facts (not its roster) for a re-seed.
    pub fn remember(&self, record: &MeetingRecord) {
        let facts = MeetingRecord {
            roster: BTreeMap::new(),
            ..record.clone()
        };
        self.seeds().insert(record.id.clone(), facts);
    }

    /// Updates the remembered facts of `record`, if it is remembered.
    pub fn refresh(&self, record: &MeetingRecord) {
        let mut seeds = self.seeds();
        if let Some(seed) = seeds.get_mut(&record.id) {
            *seed = MeetingRecord {
                roster: BTreeMap::new(),
                ..record.clone()
            };
        }
    }

    /// Forgets meeting `id` (deleted).
    pub fn forget(&self, id: &str) {
        self.seeds().remove(id);
    }

    /// The remembered meetings that `keep` holds; the others are dropped.
    pub fn seeds_retained(&self, keep: impl Fn(&MeetingRecord) -> bool) -> Vec<MeetingRecord> {
        let mut seeds = self.seeds();
        seeds.retain(|_, r| keep(r));
        seeds.values().cloned().collect()
    }

    fn seeds(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, MeetingRecord>> {
        // A map of plain facts: a panic mid-insert leaves it usable.
        self.seeds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every live node, sorted by id. Ids whose key expired are pruned
    /// from the node set on the way.
    pub fn live_nodes(&self) -> Result<Vec<NodeRecord>, ClusterError> {
        live_nodes(self)
    }
}

fn live_nodes(link: &ClusterLink) -> Result<Vec<NodeRecord>, ClusterError> {
    let (ids, values) = link.run(|c| {
        let mut ids: Vec<String> = redis::cmd("SMEMBERS").arg(keys::NODES).query(c)?;
        ids.sort();
        if ids.is_empty() {
            return Ok((ids, Vec::new()));
        }
        let node_keys: Vec<String> = ids.iter().map(|id| keys::node(id)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&node_keys).query(c)?;
        let gone: Vec<&String> = ids
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(id, _)| id)
            .collect();
        if !gone.is_empty() {
            // A node that registers again between MGET and SREM is put
            // back by its next heartbeat (SADD every beat).
            redis::cmd("SREM").arg(keys::NODES).arg(gone).exec(c)?;
        }
        Ok((ids, values))
    })?;
    let mut nodes = Vec::with_capacity(ids.len());
    for (id, value) in ids.iter().zip(values) {
        let Some(value) = value else { continue };
        match serde_json::from_str::<NodeRecord>(&value) {
            Ok(record) => nodes.push(record),
            Err(e) => tracing::warn!(node = %id, "skipping an unreadable node record: {e}"),
        }
    }
    Ok(nodes)
}

fn unavailable(settings: &ClusterSettings, e: &dyn std::fmt::Display) -> ClusterError {
    ClusterError::Unavailable {
        url: redacted(&settings.redis),
        reason: e.to_string(),
    }
}

/// The URL without a password, fit for logs and error bodies.
pub(crate) fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redacted("redis://:s3cret@10.0.0.5:6379"),
            "redis://***@10.0.0.5:6379"
        );
        assert_eq!(
            redacted("redis://10.0.0.5:6379/0"),
            "redis://10.0.0.5:6379/0"
        );
    }
}
