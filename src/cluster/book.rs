//! Meetings as the cluster keeps them in Redis, so any node can answer for
//! any meeting and admit into it:
//!
//! - `sluice:meeting:{id}`: a hash of the meeting's facts: `mode`,
//!   `owner`, `verified`, `passcode` (a PBKDF2 hash, never the passcode
//!   itself, see [`super::passcode`]), `locked`, `home` (the node placed
//!   for it) and `participants` (the seat count);
//! - `sluice:meeting:{id}:roster`: participant id → JSON [`RosterEntry`];
//! - `sluice:node:{node}:homes`: the ids of the meetings placed on a node;
//! - `sluice:meetings`: every meeting id, a sorted set of score 0 read in
//!   id order (`ZRANGEBYLEX`) for `GET /v1/meetings`; an id whose meeting
//!   expired is pruned when a listing meets it.
//!
//! Nothing lives forever: the heartbeat of every node that homes a meeting
//! or hosts one of its legs renews both keys' TTL ([`MEETING_TTL`]), so the
//! meetings of a cluster that died expire on their own.
//!
//! Every change that a limit or the lock constrains runs as one Lua script,
//! so two nodes admitting at once can never both take the last seat: Redis
//! runs a script to completion before the next command.

use std::collections::BTreeMap;

use redis::Script;
use serde::{Deserialize, Serialize};

use super::{ClusterError, ClusterLink};
use crate::relay::MeetingMode;

/// How long a meeting outlives the last heartbeat of a node homing it or
/// hosting one of its legs: long enough to re-home it when its home dies.
pub const MEETING_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Every meeting id (see the module doc).
const INDEX: &str = "sluice:meetings";

fn homes_key(node: &str) -> String {
    format!("sluice:node:{node}:homes")
}

fn meeting_key(id: &str) -> String {
    format!("sluice:meeting:{id}")
}

fn roster_key(id: &str) -> String {
    format!("sluice:meeting:{id}:roster")
}

/// Creates the meeting unless its id is taken.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'mode', ARGV[1], 'owner', ARGV[2], 'verified', ARGV[3],
  'passcode', ARGV[4], 'locked', '0', 'home', ARGV[5], 'participants', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('DEL', KEYS[2])
redis.call('SADD', KEYS[3], ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[7])
redis.call('ZADD', KEYS[4], 0, ARGV[6])
redis.call('PEXPIRE', KEYS[4], ARGV[7])
return 1
";

/// Takes a seat: the meeting exists, is unlocked and below the limit.
const ADMIT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if redis.call('HGET', KEYS[1], 'locked') == '1' then return 'locked' end
local seated = tonumber(redis.call('HGET', KEYS[1], 'participants') or '0')
if seated >= tonumber(ARGV[1]) then return 'full' end
redis.call('HINCRBY', KEYS[1], 'participants', 1)
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 'ok'
";

/// Moves a meeting whose home died to a live node (only if the home is
/// still the dead one: two nodes re-homing at once agree on one).
const REHOME: &str = r"
if redis.call('HGET', KEYS[1], 'home') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'home', ARGV[2])
redis.call('SREM', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return 1
";

/// Puts back a meeting a restarted Redis lost, from a node that still
/// knows it: the facts unless another node put them back first, then this
/// node's participants (each seat once).
const RESEED: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'mode', ARGV[1], 'owner', ARGV[2], 'verified', ARGV[3],
    'passcode', ARGV[4], 'locked', ARGV[5], 'home', ARGV[6], 'participants', '0')
  redis.call('SADD', KEYS[3], ARGV[8])
  redis.call('PEXPIRE', KEYS[3], ARGV[7])
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('ZADD', KEYS[4], 0, ARGV[8])
redis.call('PEXPIRE', KEYS[4], ARGV[7])
for i = 9, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('HINCRBY', KEYS[1], 'participants', 1)
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return 1
";

/// A heartbeat's renewal: every meeting this node homes (pruning the
/// deleted and expired ones) and every meeting it hosts legs of
/// (ARGV[2..]) lives another MEETING_TTL, and so does the id index. Key names are built here, so
/// this needs a single Redis (not Redis Cluster), as the rest does.
const RENEW: &str = r"
local ttl = ARGV[1]
local function renew(id)
  local key = 'sluice:meeting:' .. id
  if redis.call('PEXPIRE', key, ttl) == 1 then
    redis.call('PEXPIRE', key .. ':roster', ttl)
    return true
  end
  return false
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not renew(id) then redis.call('SREM', KEYS[1], id) end
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
for i = 2, #ARGV do renew(ARGV[i]) end
return 1
";

/// Gives a seat back (a no-op for a participant not on the roster).
const LEAVE: &str = r"
local entry = redis.call('HGET', KEYS[2], ARGV[1])
if not entry then return false end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'participants', -1)
end
return entry
";

/// Sets the lock of an existing meeting.
const LOCK: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'locked', ARGV[1])
return 1
";

/// What a node stores about a participant it hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterEntry {
    /// The display name.
    pub name: String,
    /// `host`, `attendee` or `observer`.
    pub role: String,
    /// `api` or `dial-in` (the policy's source names).
    pub source: String,
    /// The node that hosts the participant's leg.
    pub node: String,
}

/// A meeting's facts, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingRecord {
    /// The id.
    pub id: String,
    /// E2EE or standard.
    pub mode: MeetingMode,
    /// The owner's account.
    pub owner: String,
    /// Whether the integrator vouched for the owner's identity.
    pub verified: bool,
    /// The passcode's PBKDF2 hash; `None` without a passcode.
    pub passcode_hash: Option<String>,
    /// Whether the meeting admits nobody.
    pub locked: bool,
    /// The node the meeting was placed on.
    pub home: String,
    /// Seats taken.
    pub participants: u64,
    /// Participant id → entry, sorted by id.
    pub roster: BTreeMap<String, RosterEntry>,
}

/// Why a seat was refused (the caller maps it to the policy's refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatRefusal {
    /// The meeting is gone.
    Missing,
    /// The meeting is locked.
    Locked,
    /// The meeting has `max` participants already.
    Full,
}

/// The meetings in the cluster's Redis.
#[derive(Debug)]
pub struct MeetingBook<'a> {
    link: &'a ClusterLink,
}

impl<'a> MeetingBook<'a> {
    /// The book behind `link`.
    pub fn new(link: &'a ClusterLink) -> Self {
        Self { link }
    }

    /// Stores a new meeting; `false` when the id is taken.
    pub fn create(&self, record: &MeetingRecord) -> Result<bool, ClusterError> {
        let created: i64 = self.link.run(|c| {
            Script::new(CREATE)
                .key(meeting_key(&record.id))
                .key(roster_key(&record.id))
                .key(homes_key(&record.home))
                .key(INDEX)
                .arg(record.mode.name())
                .arg(&record.owner)
                .arg(u8::from(record.verified))
                .arg(record.passcode_hash.as_deref().unwrap_or(""))
                .arg(&record.home)
                .arg(&record.id)
                .arg(ttl_ms())
                .invoke(c)
        })?;
        Ok(created == 1)
    }

    /// The meeting `id`, with its roster; `None` when there is none.
    pub fn get(&self, id: &str) -> Result<Option<MeetingRecord>, ClusterError> {
        let (fields, roster): (BTreeMap<String, String>, BTreeMap<String, String>) =
            self.link.run(|c| {
                redis::pipe()
                    .cmd("HGETALL")
                    .arg(meeting_key(id))
                    .cmd("HGETALL")
                    .arg(roster_key(id))
                    .query(c)
            })?;
        if fields.is_empty() {
            return Ok(None);
        }
        parse_record(id, &fields, roster).map(Some)
    }

    /// Deletes the meeting; its roster as it was (`None`: no such meeting).
    pub fn delete(&self, id: &str) -> Result<Option<MeetingRecord>, ClusterError> {
        let Some(record) = self.get(id)? else {
            return Ok(None);
        };
        self.link.run(|c| {
            redis::pipe()
                .atomic()
                .cmd("DEL")
                .arg(meeting_key(id))
                .arg(roster_key(id))
                .arg(streams_key(id))
                .ignore()
                .cmd("SREM")
                .arg(homes_key(&record.home))
                .arg(id)
                .ignore()
                .cmd("ZREM")
                .arg(INDEX)
                .arg(id)
                .ignore()
                .exec(c)
        })?;
        Ok(Some(record))
    }

    /// Locks or unlocks; `false` when there is no such meeting.
    pub fn set_locked(&self, id: &str, locked: bool) -> Result<bool, ClusterError> {
        let done: i64 = self.link.run(|c| {
            Script::new(LOCK)
                .key(meeting_key(id))
                .arg(u8::from(locked))
                .invoke(c)
        })?;
        Ok(done == 1)
    }

    /// Takes one of at most `max` seats for participant `pid`, atomically
    /// with the lock and the count (the race-free half of admission).
    pub fn take_seat(
        &self,
        id: &str,
        pid: &str,
        entry: &RosterEntry,
        max: usize,
    ) -> Result<Result<(), SeatRefusal>, ClusterError> {
        let json = serde_json::to_string(entry).map_err(|e| ClusterError::Corrupt {
            what: "roster entry".to_owned(),
            reason: e.to_string(),
        })?;
        let answer: String = self.link.run(|c| {
            Script::new(ADMIT)
                .key(meeting_key(id))
                .key(roster_key(id))
                .arg(max)
                .arg(pid)
                .arg(json)
                .invoke(c)
        })?;
        Ok(match answer.as_str() {
            "ok" => Ok(()),
            "locked" => Err(SeatRefusal::Locked),
            "full" => Err(SeatRefusal::Full),
            _ => Err(SeatRefusal::Missing),
        })
    }

    /// Re-homes meeting `id` from the dead node `from` to `to`; `false`
    /// when another node re-homed it first (or it is gone).
    pub fn rehome(&self, id: &str, from: &str, to: &str) -> Result<bool, ClusterError> {
        let done: i64 = self.link.run(|c| {
            Script::new(REHOME)
                .key(meeting_key(id))
                .key(homes_key(from))
                .key(homes_key(to))
                .arg(from)
                .arg(to)
                .arg(id)
                .arg(ttl_ms())
                .invoke(c)
        })?;
        Ok(done == 1)
    }

    /// Gives participant `pid`'s seat back; its entry, if it had one.
    pub fn leave(&self, id: &str, pid: &str) -> Result<Option<RosterEntry>, ClusterError> {
        let entry: Option<String> = self.link.run(|c| {
            Script::new(LEAVE)
                .key(meeting_key(id))
                .key(roster_key(id))
                .arg(pid)
                .invoke(c)
        })?;
        entry
            .map(|json| {
                serde_json::from_str(&json).map_err(|e| ClusterError::Corrupt {
                    what: format!("roster entry {pid:?}"),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }
}

impl MeetingRecord {
    /// Meeting `id` as Redis holds it: its hash's `fields` and its
    /// roster (participant id → JSON entry). Anything that does not parse
    /// is [`ClusterError::Corrupt`] (any host on the Redis network may
    /// have written it).
    pub fn from_hash(
        id: &str,
        fields: &BTreeMap<String, String>,
        roster: BTreeMap<String, String>,
    ) -> Result<Self, ClusterError> {
        parse_record(id, fields, roster)
    }
}

fn parse_record(
    id: &str,
    fields: &BTreeMap<String, String>,
    roster: BTreeMap<String, String>,
) -> Result<MeetingRecord, ClusterError> {
    let corrupt = |reason: String| ClusterError::Corrupt {
        what: format!("meeting {id:?}"),
        reason,
    };
    let field = |name: &str| {
        fields
            .get(name)
            .cloned()
            .ok_or_else(|| corrupt(format!("no field {name}")))
    };
    let mode = match field("mode")?.as_str() {
        "e2ee" => MeetingMode::E2ee,
        "standard" => MeetingMode::Standard,
        other => return Err(corrupt(format!("mode {other:?}"))),
    };
    let participants = field("participants")?
        .parse()
        .map_err(|e| corrupt(format!("participants: {e}")))?;
    let mut entries = BTreeMap::new();
    for (pid, json) in roster {
        let entry = serde_json::from_str(&json).map_err(|e| corrupt(format!("roster: {e}")))?;
        entries.insert(pid, entry);
    }
    Ok(MeetingRecord {
        id: id.to_owned(),
        mode,
        owner: field("owner")?,
        verified: field("verified")? == "1",
        passcode_hash: Some(field("passcode")?).filter(|h| !h.is_empty()),
        locked: field("locked")? == "1",
        home: field("home")?,
        participants,
        roster: entries,
    })
}

/// Drops from the id index the ids (ARGV) whose meeting is gone, unless
/// created again meanwhile.
const PRUNE: &str = r"
for i = 1, #ARGV do
  if redis.call('EXISTS', 'sluice:meeting:' .. ARGV[i]) == 0 then
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return 1
";

impl MeetingBook<'_> {
    /// One page of the cluster's meetings in id order: the first `limit`
    /// after `after` (exclusive) that `keep` holds, without rosters, and
    /// whether more follow. Ids whose meeting expired are pruned from the
    /// index on the way; an unreadable meeting is skipped (and logged).
    pub fn page(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&MeetingRecord) -> bool,
    ) -> Result<(Vec<MeetingRecord>, bool), ClusterError> {
        let batch = limit.saturating_add(1).clamp(16, 1000);
        let mut cursor = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let mut out = Vec::new();
        loop {
            let ids: Vec<String> = self.link.run(|c| {
                redis::cmd("ZRANGEBYLEX")
                    .arg(INDEX)
                    .arg(&cursor)
                    .arg("+")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(batch)
                    .query(c)
            })?;
            let Some(last) = ids.last() else {
                return Ok((out, false));
            };
            cursor = format!("({last}");
            let hashes: Vec<BTreeMap<String, String>> = self.link.run(|c| {
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.cmd("HGETALL").arg(meeting_key(id));
                }
                pipe.query(c)
            })?;
            let mut gone = Vec::new();
            let mut more = false;
            for (id, fields) in ids.iter().zip(&hashes) {
                if fields.is_empty() {
                    gone.push(id);
                    continue;
                }
                let record = match parse_record(id, fields, BTreeMap::new()) {
                    Ok(record) => record,
                    Err(e) => {
                        tracing::warn!("listing skips an unreadable meeting: {e}");
                        continue;
                    }
                };
                if !keep(&record) {
                    continue;
                }
                if out.len() == limit {
                    more = true;
                    break;
                }
                out.push(record);
            }
            if !gone.is_empty() {
                self.link
                    .run(|c| Script::new(PRUNE).key(INDEX).arg(&gone).invoke::<i64>(c))?;
            }
            if more || ids.len() < batch {
                return Ok((out, more));
            }
        }
    }
}

/// [`MEETING_TTL`] in milliseconds.
fn ttl_ms() -> u64 {
    u64::try_from(MEETING_TTL.as_millis()).unwrap_or(u64::MAX)
}

/// The heartbeat's renewal of `node`'s meetings (see `RENEW`), on the
/// heartbeat thread's own connection.
pub(crate) fn renew(
    connection: &mut redis::Connection,
    node: &str,
    hosted: &[String],
) -> redis::RedisResult<()> {
    Script::new(RENEW)
        .key(homes_key(node))
        .key(INDEX)
        .arg(ttl_ms())
        .arg(hosted)
        .invoke::<i64>(connection)
        .map(drop)
}

/// Puts `record` (with this node's `roster`) back after Redis lost it.
pub(crate) fn reseed(
    connection: &mut redis::Connection,
    node: &str,
    record: &MeetingRecord,
    roster: &[(String, RosterEntry)],
) -> redis::RedisResult<()> {
    let script = Script::new(RESEED);
    let mut invocation = script.key(meeting_key(&record.id));
    invocation
        .key(roster_key(&record.id))
        .key(homes_key(node))
        .key(INDEX)
        .arg(record.mode.name())
        .arg(&record.owner)
        .arg(u8::from(record.verified))
        .arg(record.passcode_hash.as_deref().unwrap_or(""))
        .arg(u8::from(record.locked))
        .arg(node)
        .arg(ttl_ms())
        .arg(&record.id);
    for (pid, entry) in roster {
        let json = serde_json::to_string(entry).map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::Client, "serialize", e.to_string()))
        })?;
        invocation.arg(pid).arg(json);
    }
    invocation.invoke::<i64>(connection).map(drop)
}

/// A published stream as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEntry {
    /// The node whose leg publishes it.
    pub node: String,
    /// The publishing participant.
    pub participant: String,
    /// `audio` or `video`.
    pub kind: String,
    /// The RTP payload type.
    pub payload_type: u8,
    /// The codec name.
    pub codec: String,
}

fn streams_key(id: &str) -> String {
    format!("sluice:meeting:{id}:streams")
}

fn cascade_key(id: &str, a: &str, b: &str) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("sluice:meeting:{id}:cascade:{lo}:{hi}")
}

/// Makes the streams hash hold exactly `node`'s `streams` (ssrc → JSON)
/// among its entries, leaving the other nodes' alone.
const PUBLISH_STREAMS: &str = r"
local mine = {}
for i = 3, #ARGV, 2 do mine[ARGV[i]] = ARGV[i + 1] end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, entry = pcall(cjson.decode, all[i + 1])
  if ok and entry.node == ARGV[1] and mine[all[i]] == nil then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
for ssrc, json in pairs(mine) do redis.call('HSET', KEYS[1], ssrc, json) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
";

/// The pair's keys: the first node to ask draws them, both read the same.
const PAIR_KEYS: &str = r"
redis.call('HSETNX', KEYS[1], 'lo_to_hi', ARGV[1])
redis.call('HSETNX', KEYS[1], 'hi_to_lo', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('HMGET', KEYS[1], 'lo_to_hi', 'hi_to_lo')
";

impl MeetingBook<'_> {
    /// Publishes `node`'s streams of meeting `id` and returns every node's:
    /// ssrc → entry.
    pub fn publish_streams(
        &self,
        id: &str,
        node: &str,
        streams: &[(u32, StreamEntry)],
    ) -> Result<BTreeMap<u32, StreamEntry>, ClusterError> {
        let mut args = Vec::with_capacity(streams.len() * 2);
        for (ssrc, entry) in streams {
            let json = serde_json::to_string(entry).map_err(|e| ClusterError::Corrupt {
                what: "stream entry".to_owned(),
                reason: e.to_string(),
            })?;
            args.push(ssrc.to_string());
            args.push(json);
        }
        let all: BTreeMap<String, String> = self.link.run(|c| {
            Script::new(PUBLISH_STREAMS)
                .key(streams_key(id))
                .arg(node)
                .arg(ttl_ms())
                .arg(&args)
                .invoke(c)
        })?;
        let mut out = BTreeMap::new();
        for (ssrc, json) in all {
            // Entries that do not parse are another version's: skipped.
            if let (Ok(ssrc), Ok(entry)) = (ssrc.parse(), serde_json::from_str(&json)) {
                out.insert(ssrc, entry);
            }
        }
        Ok(out)
    }

    /// Every node's published streams of meeting `id`: ssrc → entry.
    pub fn streams(&self, id: &str) -> Result<BTreeMap<u32, StreamEntry>, ClusterError> {
        let all: BTreeMap<String, String> = self
            .link
            .run(|c| redis::cmd("HGETALL").arg(streams_key(id)).query(c))?;
        Ok(all
            .into_iter()
            .filter_map(|(ssrc, json)| {
                Some((ssrc.parse().ok()?, serde_json::from_str(&json).ok()?))
            })
            .collect())
    }

    /// The keys of the relay legs between `me` and `other` in meeting
    /// `id`: (what `me` sends, what `other` sends), each key ‖ salt for
    /// AEAD_AES_256_GCM; `candidates` are used if no node drew them yet.
    pub fn pair_keys(
        &self,
        id: &str,
        me: &str,
        other: &str,
        candidates: (&[u8], &[u8]),
    ) -> Result<(Vec<u8>, Vec<u8>), ClusterError> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let (lo_to_hi, hi_to_lo): (String, String) = self.link.run(|c| {
            Script::new(PAIR_KEYS)
                .key(cascade_key(id, me, other))
                .arg(b64.encode(candidates.0))
                .arg(b64.encode(candidates.1))
                .arg(ttl_ms())
                .invoke(c)
        })?;
        let decode = |text: &str| {
            b64.decode(text).map_err(|e| ClusterError::Corrupt {
                what: format!("cascade keys of meeting {id:?}"),
                reason: e.to_string(),
            })
        };
        let (lo_to_hi, hi_to_lo) = (decode(&lo_to_hi)?, decode(&hi_to_lo)?);
        Ok(if me <= other {
            (lo_to_hi, hi_to_lo)
        } else {
            (hi_to_lo, lo_to_hi)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::MeetingRecord;
    use crate::relay::MeetingMode;

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_meeting_hash_reads_back_and_a_foreign_one_is_refused() {
        let good = fields(&[
            ("mode", "e2ee"),
            ("owner", "ops"),
            ("verified", "1"),
            ("passcode", ""),
            ("locked", "0"),
            ("home", "a"),
            ("participants", "1"),
        ]);
        let roster = BTreeMap::from([(
            "p1".to_owned(),
            r#"{"name":"n","role":"host","source":"api","node":"b"}"#.to_owned(),
        )]);
        let record = MeetingRecord::from_hash("m", &good, roster).expect("parses");
        assert_eq!(record.mode, MeetingMode::E2ee);
        assert_eq!(record.passcode_hash, None);
        assert_eq!(record.roster["p1"].node, "b");
        for (field, bad) in [("mode", "plain"), ("participants", "-1"), ("home", "")] {
            let mut broken = good.clone();
            if bad.is_empty() {
                broken.remove(field);
            } else {
                broken.insert(field.to_owned(), bad.to_owned());
            }
            assert!(MeetingRecord::from_hash("m", &broken, BTreeMap::new()).is_err());
        }
        let roster = BTreeMap::from([("p1".to_owned(), "{".to_owned())]);
        assert!(MeetingRecord::from_hash("m", &good, roster).is_err());
    }
}
