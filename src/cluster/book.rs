//! Meetings as the cluster keeps them in Redis, so any node can answer for
//! any meeting and admit into it:
//!
//! - `sluice:meeting:{id}`: a hash of the meeting's facts: `mode`,
//!   `owner`, `verified`, `passcode` (a PBKDF2 hash, never the passcode
//!   itself, see [`super::passcode`]), `locked`, `home` (the node placed
//!   for it) and `participants` (the seat count);
//! - `sluice:meeting:{id}:roster`: participant id → JSON [`RosterEntry`];
//! - `sluice:meetings`: the set of meeting ids.
//!
//! Every change that a limit or the lock constrains runs as one Lua script,
//! so two nodes admitting at once can never both take the last seat: Redis
//! runs a script to completion before the next command.

use std::collections::BTreeMap;

use redis::Script;
use serde::{Deserialize, Serialize};

use super::{ClusterError, ClusterLink};
use crate::relay::MeetingMode;

/// The set of meeting ids.
const MEETINGS: &str = "sluice:meetings";

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
redis.call('SADD', KEYS[3], ARGV[6])
redis.call('DEL', KEYS[2])
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
return 'ok'
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
                .key(MEETINGS)
                .arg(record.mode.name())
                .arg(&record.owner)
                .arg(u8::from(record.verified))
                .arg(record.passcode_hash.as_deref().unwrap_or(""))
                .arg(&record.home)
                .arg(&record.id)
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
        Ok(Some(MeetingRecord {
            id: id.to_owned(),
            mode,
            owner: field("owner")?,
            verified: field("verified")? == "1",
            passcode_hash: Some(field("passcode")?).filter(|h| !h.is_empty()),
            locked: field("locked")? == "1",
            home: field("home")?,
            participants,
            roster: entries,
        }))
    }

    /// Every meeting id, sorted.
    pub fn ids(&self) -> Result<Vec<String>, ClusterError> {
        let mut ids: Vec<String> = self
            .link
            .run(|c| redis::cmd("SMEMBERS").arg(MEETINGS).query(c))?;
        ids.sort();
        Ok(ids)
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
                .ignore()
                .cmd("SREM")
                .arg(MEETINGS)
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
