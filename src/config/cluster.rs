//! `[cluster]`: joining other appliances of the rack through Redis
//! (DESIGN.md, "Cluster"). Absent, the node runs alone exactly as before.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{ConfigError, Location};

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The Redis server holding membership and meetings (`redis://host:port`).
    pub redis: Option<String>,
    /// This node's name in the cluster, unique in the rack.
    pub node_id: Option<String>,
    /// Where other nodes and integrators reach this node's control API;
    /// `[control] listen` when absent.
    pub advertise_api: Option<SocketAddr>,
    /// Where participants and other nodes send this node media; the
    /// `[media]` public address when absent.
    pub advertise_media: Option<SocketAddr>,
    /// How often the node refreshes its registration (at most 2000).
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// How long a registration outlives the last heartbeat (at most 10).
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
}

fn default_heartbeat_ms() -> u64 {
    1000
}

fn default_ttl_secs() -> u64 {
    5
}

/// A validated `[cluster]`: everything resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The Redis URL.
    pub redis: String,
    /// This node's name.
    pub node_id: String,
    /// The control API address other nodes use (port 0: the bound port).
    pub advertise_api: SocketAddr,
    /// The media address handed out for legs on this node (port 0: the
    /// bound port).
    pub advertise_media: SocketAddr,
    /// The heartbeat period.
    pub heartbeat: std::time::Duration,
    /// The registration's time to live.
    pub ttl: std::time::Duration,
}

impl ClusterConfig {
    /// Checks the section and resolves its defaults against the control
    /// and media addresses.
    pub(super) fn settle(
        &self,
        text: &str,
        origin: &str,
        control_listen: SocketAddr,
        media_public: SocketAddr,
    ) -> Result<ClusterSettings, ConfigError> {
        let at = |key| Location::of_key(text, origin, "cluster", key);
        let out_of_range =
            |key: &'static str, value: String, range: &'static str| ConfigError::OutOfRange {
                at: at(key),
                section: "cluster",
                key,
                value,
                range,
            };
        let missing = |key: &'static str, example: &'static str| ConfigError::ClusterMissing {
            at: Location::of_section(text, origin, "cluster"),
            key,
            example,
        };
        let redis = self
            .redis
            .clone()
            .ok_or_else(|| missing("redis", "\"redis://10.0.0.5:6379\""))?;
        if let Err(e) = redis::Client::open(redis.as_str()) {
            return Err(ConfigError::BadValue {
                at: at("redis"),
                section: Some("cluster"),
                key: "redis",
                value: format!("{redis:?}"),
                reason: format!("{e}; use a URL such as \"redis://10.0.0.5:6379\""),
            });
        }
        let node_id = self
            .node_id
            .clone()
            .ok_or_else(|| missing("node_id", "\"rack1-a\""))?;
        let id_ok = (1..=64).contains(&node_id.len())
            && node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !id_ok {
            return Err(out_of_range(
                "node_id",
                format!("{node_id:?}"),
                "1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        // A defaulted address may carry port 0 (the port is then the one
        // bound at start, filled in by the daemon); a written one may not.
        let check = |key: &'static str, given: Option<SocketAddr>, default: SocketAddr, whom| {
            let addr = given.unwrap_or(default);
            if addr.ip().is_unspecified() || (given.is_some() && addr.port() == 0) {
                return Err(out_of_range(key, format!("\"{addr}\""), whom));
            }
            Ok(addr)
        };
        let advertise_api = check(
            "advertise_api",
            self.advertise_api,
            control_listen,
            "an IP and port the other nodes can reach (set advertise_api when the control \
             API listens on all addresses)",
        )?;
        let advertise_media = check(
            "advertise_media",
            self.advertise_media,
            media_public,
            "an IP and port participants and the other nodes can reach",
        )?;
        if !(100..=2000).contains(&self.heartbeat_ms) {
            return Err(out_of_range(
                "heartbeat_ms",
                self.heartbeat_ms.to_string(),
                "100 to 2000",
            ));
        }
        if !(2..=10).contains(&self.ttl_secs) {
            return Err(out_of_range(
                "ttl_secs",
                self.ttl_secs.to_string(),
                "2 to 10",
            ));
        }
        if self.ttl_secs * 1000 < 2 * self.heartbeat_ms {
            return Err(out_of_range(
                "ttl_secs",
                self.ttl_secs.to_string(),
                "at least two heartbeats (ttl_secs * 1000 >= 2 * heartbeat_ms)",
            ));
        }
        Ok(ClusterSettings {
            redis,
            node_id,
            advertise_api,
            advertise_media,
            heartbeat: std::time::Duration::from_millis(self.heartbeat_ms),
            ttl: std::time::Duration::from_secs(self.ttl_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{Config, ConfigError};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_with_env(text, "sluice.toml", &|_| None)
    }

    #[test]
    fn without_the_section_the_node_runs_alone() {
        assert_eq!(parse("").unwrap().cluster_settings().unwrap(), None);
    }

    #[test]
    fn a_full_section_resolves_every_key() {
        let c = parse(
            "[cluster]\nredis = \"redis://127.0.0.1:6390\"\nnode_id = \"rack1-a\"\n\
             advertise_api = \"10.0.0.11:7480\"\nadvertise_media = \"10.0.0.11:40000\"\n\
             heartbeat_ms = 500\nttl_secs = 3\n",
        )
        .unwrap();
        let s = c.cluster_settings().unwrap().unwrap();
        assert_eq!(s.redis, "redis://127.0.0.1:6390");
        assert_eq!(s.node_id, "rack1-a");
        assert_eq!(s.advertise_api, "10.0.0.11:7480".parse().unwrap());
        assert_eq!(s.advertise_media, "10.0.0.11:40000".parse().unwrap());
        assert_eq!(s.heartbeat, Duration::from_millis(500));
        assert_eq!(s.ttl, Duration::from_secs(3));
    }

    #[test]
    fn advertised_addresses_default_to_the_listen_addresses() {
        let c = parse("[cluster]\nredis = \"redis://127.0.0.1\"\nnode_id = \"a\"\n").unwrap();
        let s = c.cluster_settings().unwrap().unwrap();
        assert_eq!(s.advertise_api, "127.0.0.1:7480".parse().unwrap());
        assert_eq!(s.advertise_media, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(s.heartbeat, Duration::from_secs(1));
        assert_eq!(s.ttl, Duration::from_secs(5));
    }

    #[test]
    fn missing_and_bad_keys_name_the_fix() {
        let e = parse("# rack\n[cluster]\nnode_id = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "sluice.toml:2:1: [cluster] needs redis; add a line such as \
             redis = \"redis://10.0.0.5:6379\""
        );
        let e = parse("[cluster]\nredis = \"redis://h\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs node_id"), "{e}");
        let e = parse("[cluster]\nredis = \"http://h\"\nnode_id = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("sluice.toml:2:1: ") && e.contains("redis://"),
            "{e}"
        );
        let e = parse("[cluster]\nredis = \"redis://h\"\nnode_id = \"a b\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("sluice.toml:3:1: ") && e.contains("node_id"),
            "{e}"
        );
        let e = parse("[cluster]\nredis = \"redis://h\"\nnode_id = \"a\"\nheartbeat_ms = 5000\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("heartbeat_ms = 5000") && e.contains("100 to 2000"),
            "{e}"
        );
        let e = parse("[cluster]\nredis = \"redis://h\"\nnode_id = \"a\"\nttl_secs = 11\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 to 10"), "{e}");
        let e = parse(
            "[cluster]\nredis = \"redis://h\"\nnode_id = \"a\"\nheartbeat_ms = 2000\nttl_secs = 3\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("two heartbeats"), "{e}");
        let e = parse("[cluster]\nredis = \"redis://h\"\nnode_id = \"a\"\nttl = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key `ttl` in [cluster]"), "{e}");
    }

    #[test]
    fn an_api_on_all_addresses_needs_an_advertised_one() {
        let env = |_: &str| Some("t".to_owned());
        let text = "[control]\nlisten = \"0.0.0.0:7480\"\n[cluster]\nredis = \"redis://h\"\nnode_id = \"a\"\n";
        let e = Config::parse_with_env(text, "sluice.toml", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("set advertise_api"), "{e}");
        let fixed = format!("{text}advertise_api = \"10.0.0.1:7480\"\n");
        assert!(Config::parse_with_env(&fixed, "sluice.toml", &env).is_ok());
        let e = parse(
            "[cluster]\nredis = \"redis://h\"\nnode_id = \"a\"\nadvertise_media = \"10.0.0.1:0\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("advertise_media"), "{e}");
    }
}
