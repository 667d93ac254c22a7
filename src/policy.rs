//! Admission policy: every decision about who may create a meeting and who
//! may join one, in one place and free of I/O.
//!
//! The control API (and later the SIP gateway) gathers the facts, calls
//! [`check_create`] or [`check_admit`], and turns a [`Refusal`] into its
//! answer (an HTTP status, a SIP 403 and a prompt). The rules follow
//! DESIGN.md, "the security model": E2EE meetings never admit observers or
//! dial-in callers, whatever the configuration, because either would need
//! the relay to hold the media key.

use ring::digest::{SHA256, digest};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::relay::MeetingMode;

/// Who may create E2EE meetings (`[policy] e2ee` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum E2eePolicy {
    /// Only owners whose identity the integrator verified. The default.
    #[default]
    VerifiedOnly,
    /// Any owner.
    All,
    /// Nobody: every meeting is standard.
    Disabled,
}

impl E2eePolicy {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::VerifiedOnly => "verified-only",
            Self::All => "all",
            Self::Disabled => "disabled",
        }
    }
}

/// A share of a packet worker's time (`[policy] max_worker_busy`): above
/// 0, at most 1.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Deserialize)]
#[serde(try_from = "f64")]
pub struct BusyShare(f64);

// Only finite values in (0, 1] are ever made, so equality is total.
impl Eq for BusyShare {}

impl BusyShare {
    /// The share, 0 to 1.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for BusyShare {
    type Error = String;

    fn try_from(share: f64) -> Result<Self, Self::Error> {
        if share > 0.0 && share <= 1.0 {
            Ok(Self(share))
        } else {
            Err(format!(
                "max_worker_busy must be a share above 0 and at most 1 (e.g. 0.85), not {share}"
            ))
        }
    }
}

/// The node's admission policy (`[policy]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Who may create E2EE meetings.
    pub e2ee: E2eePolicy,
    /// Participants one meeting holds at most.
    pub max_participants_per_meeting: usize,
    /// Participants (legs) the whole node holds at most.
    pub max_participants_per_node: usize,
    /// Meetings the node holds at most (each one costs every routing
    /// snapshot a little, so the count is bounded too).
    pub max_meetings: usize,
    /// Above this busy share of its busiest packet worker the node refuses
    /// new participants (`node_overloaded`), so those it carries keep
    /// their quality.
    pub max_worker_busy: BusyShare,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            e2ee: E2eePolicy::VerifiedOnly,
            max_participants_per_meeting: 100,
            max_participants_per_node: 5000,
            max_meetings: 2500,
            max_worker_busy: BusyShare(0.85),
        }
    }
}

/// A participant's role in a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs the meeting.
    Host,
    /// Takes part. The default.
    #[default]
    Attendee,
    /// Receives only; the relay may let one into standard meetings only.
    Observer,
}

impl Role {
    /// The API spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Attendee => "attendee",
            Self::Observer => "observer",
        }
    }
}

/// How a participant reaches the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Admitted by the integrator through the control API. The default.
    #[default]
    Api,
    /// A telephone caller bridged in through SIP (plain G.711 audio).
    DialIn,
}

impl Source {
    /// The API spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::DialIn => "dial-in",
        }
    }
}

/// What admission needs to know about the meeting.
#[derive(Debug, Clone, Copy)]
pub struct MeetingFacts<'a> {
    /// E2EE or standard.
    pub mode: MeetingMode,
    /// Whether the meeting refuses new participants.
    pub locked: bool,
    /// The passcode a joiner must give, if the meeting has one.
    pub passcode: Option<&'a str>,
    /// Participants in the meeting now.
    pub participants: usize,
}

/// Who asks to join, and how.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    /// The role asked for.
    pub role: Role,
    /// The passcode given, if any.
    pub passcode: Option<&'a str>,
    /// How the participant arrives.
    pub source: Source,
    /// Whether it asked for renditions (`receive`): the relay would have
    /// to read its media.
    pub transcoding: bool,
}

/// Why a request was refused. Each has a stable API code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An E2EE meeting asked for by an owner the policy does not trust.
    E2eeRequiresVerifiedOwner,
    /// E2EE meetings are disabled on this node.
    E2eeDisabled,
    /// The meeting is locked.
    MeetingLocked,
    /// The passcode is missing or does not match.
    WrongPasscode,
    /// E2EE meetings admit no observers.
    E2eeForbidsObservers,
    /// E2EE meetings admit no dial-in callers.
    E2eeForbidsDialIn,
    /// E2EE meetings cannot transcode: the relay cannot read SFrame.
    E2eeForbidsTranscoding,
    /// The meeting holds its maximum.
    MeetingFull {
        /// `max_participants_per_meeting`.
        limit: usize,
    },
    /// The node holds its maximum.
    NodeFull {
        /// `max_participants_per_node`.
        limit: usize,
    },
    /// The node holds `max_meetings` meetings.
    TooManyMeetings {
        /// `max_meetings`.
        limit: usize,
    },
    /// The busiest packet worker is above `max_worker_busy`.
    NodeOverloaded {
        /// Its busy share, in percent.
        busy_percent: u8,
        /// `max_worker_busy`, in percent.
        limit_percent: u8,
    },
}

impl Refusal {
    /// The API error code.
    pub fn code(self) -> &'static str {
        match self {
            Self::E2eeRequiresVerifiedOwner => "e2ee_requires_verified_owner",
            Self::E2eeDisabled => "e2ee_disabled",
            Self::MeetingLocked => "meeting_locked",
            Self::WrongPasscode => "wrong_passcode",
            Self::E2eeForbidsObservers => "e2ee_forbids_observers",
            Self::E2eeForbidsDialIn => "e2ee_forbids_dial_in",
            Self::E2eeForbidsTranscoding => "e2ee_forbids_transcoding",
            Self::MeetingFull { .. } => "meeting_full",
            Self::NodeFull { .. } => "node_full",
            Self::TooManyMeetings { .. } => "too_many_meetings",
            Self::NodeOverloaded { .. } => "node_overloaded",
        }
    }

    /// A sentence for the person behind the client.
    pub fn message(self) -> String {
        match self {
            Self::E2eeRequiresVerifiedOwner => {
                "E2EE meetings need an owner whose identity is verified on this node".to_owned()
            }
            Self::E2eeDisabled => "E2EE meetings are disabled on this node".to_owned(),
            Self::MeetingLocked => "the meeting is locked".to_owned(),
            Self::WrongPasscode => "the passcode is missing or wrong".to_owned(),
            Self::E2eeForbidsObservers => {
                "E2EE meetings admit no observers: the relay cannot read their media".to_owned()
            }
            Self::E2eeForbidsDialIn => {
                "E2EE meetings admit no dial-in callers: the phone network carries plain audio"
                    .to_owned()
            }
            Self::E2eeForbidsTranscoding => {
                "E2EE meetings cannot transcode (receive): the relay cannot read their \
                 SFrame-encrypted media; receive the original streams instead"
                    .to_owned()
            }
            Self::MeetingFull { limit } => {
                format!("the meeting is full ({limit} participants at most)")
            }
            Self::NodeFull { limit } => {
                format!("this node is full ({limit} participants at most)")
            }
            Self::TooManyMeetings { limit } => {
                format!("this node holds its maximum of {limit} meetings; end one first")
            }
            Self::NodeOverloaded {
                busy_percent,
                limit_percent,
            } => format!(
                "this node's busiest packet worker is {busy_percent}% busy, above its \
                 {limit_percent}% limit; retry after the Retry-After delay or join through \
                 another node"
            ),
        }
    }
}

/// Whether an owner may create a meeting of `mode` on a node that holds
/// `meetings` now.
pub fn check_create(
    policy: &Policy,
    mode: MeetingMode,
    owner_verified: bool,
    meetings: usize,
) -> Result<(), Refusal> {
    if meetings >= policy.max_meetings {
        return Err(Refusal::TooManyMeetings {
            limit: policy.max_meetings,
        });
    }
    match (mode, policy.e2ee) {
        (MeetingMode::Standard, _) | (MeetingMode::E2ee, E2eePolicy::All) => Ok(()),
        (MeetingMode::E2ee, E2eePolicy::Disabled) => Err(Refusal::E2eeDisabled),
        (MeetingMode::E2ee, E2eePolicy::VerifiedOnly) if owner_verified => Ok(()),
        (MeetingMode::E2ee, E2eePolicy::VerifiedOnly) => Err(Refusal::E2eeRequiresVerifiedOwner),
    }
}

/// Whether `who` may join the meeting described by `meeting`, on a node
/// that holds `node_participants` now.
///
/// Checked in this order, so the answer names the most lasting obstacle:
/// what the meeting's mode forbids, the lock, the passcode, then capacity.
pub fn check_admit(
    policy: &Policy,
    meeting: &MeetingFacts<'_>,
    who: &Admission<'_>,
    node_participants: usize,
) -> Result<(), Refusal> {
    if meeting.mode == MeetingMode::E2ee {
        if who.source == Source::DialIn {
            return Err(Refusal::E2eeForbidsDialIn);
        }
        if who.role == Role::Observer {
            return Err(Refusal::E2eeForbidsObservers);
        }
        if who.transcoding {
            return Err(Refusal::E2eeForbidsTranscoding);
        }
    }
    if meeting.locked {
        return Err(Refusal::MeetingLocked);
    }
    if let Some(expected) = meeting.passcode {
        match who.passcode {
            Some(given) if secrets_equal(given, expected) => {}
            _ => return Err(Refusal::WrongPasscode),
        }
    }
    if meeting.participants >= policy.max_participants_per_meeting {
        return Err(Refusal::MeetingFull {
            limit: policy.max_participants_per_meeting,
        });
    }
    if node_participants >= policy.max_participants_per_node {
        return Err(Refusal::NodeFull {
            limit: policy.max_participants_per_node,
        });
    }
    Ok(())
}

/// Whether the node may take a new participant while its busiest packet
/// worker is `busiest` busy (0 to 1). Checked after [`check_admit`]: a
/// lasting obstacle is the better answer than a passing one.
pub fn check_load(policy: &Policy, busiest: f64) -> Result<(), Refusal> {
    let limit = policy.max_worker_busy.get();
    if busiest > limit {
        let percent = |share: f64| (share.clamp(0.0, 1.0) * 100.0).round() as u8;
        return Err(Refusal::NodeOverloaded {
            busy_percent: percent(busiest),
            limit_percent: percent(limit),
        });
    }
    Ok(())
}

/// Compares two secrets (passcodes, API tokens) in time that depends on
/// neither: both are hashed first, so not even the length leaks.
pub fn secrets_equal(given: &str, expected: &str) -> bool {
    let given = digest(&SHA256, given.as_bytes());
    let expected = digest(&SHA256, expected.as_bytes());
    given.as_ref().ct_eq(expected.as_ref()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use MeetingMode::{E2ee, Standard};

    fn policy(e2ee: E2eePolicy) -> Policy {
        Policy {
            e2ee,
            max_participants_per_meeting: 3,
            max_participants_per_node: 10,
            max_meetings: 5,
            ..Policy::default()
        }
    }

    #[test]
    fn load_above_the_limit_is_refused_with_both_figures() {
        let p = policy(E2eePolicy::All);
        assert_eq!(check_load(&p, 0.85), Ok(()));
        assert_eq!(
            check_load(&p, 0.9),
            Err(Refusal::NodeOverloaded {
                busy_percent: 90,
                limit_percent: 85
            })
        );
        assert_eq!(
            Refusal::NodeOverloaded {
                busy_percent: 90,
                limit_percent: 85
            }
            .code(),
            "node_overloaded"
        );
        assert!(BusyShare::try_from(f64::NAN).is_err());
        assert!(BusyShare::try_from(0.0).is_err());
        assert!(BusyShare::try_from(1.0).is_ok());
    }

    #[test]
    fn creation_follows_the_e2ee_policy() {
        use E2eePolicy::*;
        let cases = [
            // (policy, mode, owner verified, outcome)
            (VerifiedOnly, Standard, false, Ok(())),
            (VerifiedOnly, Standard, true, Ok(())),
            (VerifiedOnly, E2ee, true, Ok(())),
            (
                VerifiedOnly,
                E2ee,
                false,
                Err(Refusal::E2eeRequiresVerifiedOwner),
            ),
            (All, E2ee, false, Ok(())),
            (All, E2ee, true, Ok(())),
            (All, Standard, false, Ok(())),
            (Disabled, E2ee, true, Err(Refusal::E2eeDisabled)),
            (Disabled, E2ee, false, Err(Refusal::E2eeDisabled)),
            (Disabled, Standard, false, Ok(())),
        ];
        for (e2ee, mode, verified, outcome) in cases {
            assert_eq!(
                check_create(&policy(e2ee), mode, verified, 4),
                outcome,
                "{e2ee:?} {mode:?} verified={verified}"
            );
        }
    }

    #[test]
    fn creation_stops_at_max_meetings() {
        let p = policy(E2eePolicy::All);
        assert_eq!(check_create(&p, Standard, false, 4), Ok(()));
        assert_eq!(
            check_create(&p, Standard, true, 5),
            Err(Refusal::TooManyMeetings { limit: 5 })
        );
        assert!(
            Refusal::TooManyMeetings { limit: 5 }
                .message()
                .contains('5')
        );
    }

    struct Case {
        mode: MeetingMode,
        locked: bool,
        meeting_passcode: Option<&'static str>,
        participants: usize,
        node: usize,
        role: Role,
        passcode: Option<&'static str>,
        source: Source,
        transcoding: bool,
        outcome: Result<(), Refusal>,
    }

    const OPEN: Case = Case {
        mode: Standard,
        locked: false,
        meeting_passcode: None,
        participants: 0,
        node: 0,
        role: Role::Attendee,
        passcode: None,
        source: Source::Api,
        transcoding: false,
        outcome: Ok(()),
    };

    #[test]
    fn admission_table() {
        use Refusal::*;
        let cases = [
            OPEN,
            Case {
                role: Role::Host,
                ..OPEN
            },
            Case {
                role: Role::Observer,
                ..OPEN
            },
            Case {
                source: Source::DialIn,
                ..OPEN
            },
            Case { mode: E2ee, ..OPEN },
            Case {
                mode: E2ee,
                role: Role::Host,
                ..OPEN
            },
            // E2EE refuses observers and dial-in, before anything else.
            Case {
                mode: E2ee,
                role: Role::Observer,
                outcome: Err(E2eeForbidsObservers),
                ..OPEN
            },
            Case {
                mode: E2ee,
                source: Source::DialIn,
                outcome: Err(E2eeForbidsDialIn),
                ..OPEN
            },
            // Renditions: standard meetings only, refused before the lock.
            Case {
                transcoding: true,
                ..OPEN
            },
            Case {
                mode: E2ee,
                transcoding: true,
                locked: true,
                outcome: Err(E2eeForbidsTranscoding),
                ..OPEN
            },
            Case {
                mode: E2ee,
                source: Source::DialIn,
                role: Role::Observer,
                locked: true,
                outcome: Err(E2eeForbidsDialIn),
                ..OPEN
            },
            Case {
                mode: E2ee,
                role: Role::Observer,
                locked: true,
                participants: 3,
                outcome: Err(E2eeForbidsObservers),
                ..OPEN
            },
            // The lock refuses everyone, hosts included, and before the passcode.
            Case {
                locked: true,
                outcome: Err(MeetingLocked),
                ..OPEN
            },
            Case {
                locked: true,
                role: Role::Host,
                outcome: Err(MeetingLocked),
                ..OPEN
            },
            Case {
                locked: true,
                mode: E2ee,
                meeting_passcode: Some("1234"),
                passcode: Some("1234"),
                outcome: Err(MeetingLocked),
                ..OPEN
            },
            // Passcodes: missing counts as wrong; extra is ignored.
            Case {
                meeting_passcode: Some("1234"),
                passcode: Some("1234"),
                ..OPEN
            },
            Case {
                meeting_passcode: Some("1234"),
                passcode: Some("1235"),
                outcome: Err(WrongPasscode),
                ..OPEN
            },
            Case {
                meeting_passcode: Some("1234"),
                passcode: Some("12345"),
                outcome: Err(WrongPasscode),
                ..OPEN
            },
            Case {
                meeting_passcode: Some("1234"),
                passcode: Some(""),
                outcome: Err(WrongPasscode),
                ..OPEN
            },
            Case {
                meeting_passcode: Some("1234"),
                outcome: Err(WrongPasscode),
                ..OPEN
            },
            Case {
                meeting_passcode: Some("1234"),
                participants: 3,
                outcome: Err(WrongPasscode),
                ..OPEN
            },
            Case {
                passcode: Some("anything"),
                ..OPEN
            },
            // Capacity: the meeting's limit, then the node's.
            Case {
                participants: 2,
                node: 9,
                ..OPEN
            },
            Case {
                participants: 3,
                outcome: Err(MeetingFull { limit: 3 }),
                ..OPEN
            },
            Case {
                participants: 3,
                node: 10,
                outcome: Err(MeetingFull { limit: 3 }),
                ..OPEN
            },
            Case {
                node: 10,
                outcome: Err(NodeFull { limit: 10 }),
                ..OPEN
            },
            Case {
                mode: E2ee,
                node: 11,
                outcome: Err(NodeFull { limit: 10 }),
                ..OPEN
            },
        ];
        for (i, case) in cases.iter().enumerate() {
            let meeting = MeetingFacts {
                mode: case.mode,
                locked: case.locked,
                passcode: case.meeting_passcode,
                participants: case.participants,
            };
            let who = Admission {
                role: case.role,
                passcode: case.passcode,
                source: case.source,
                transcoding: case.transcoding,
            };
            // The E2EE setting governs creation only, never admission.
            for e2ee in [
                E2eePolicy::VerifiedOnly,
                E2eePolicy::All,
                E2eePolicy::Disabled,
            ] {
                assert_eq!(
                    check_admit(&policy(e2ee), &meeting, &who, case.node),
                    case.outcome,
                    "case {i} under {e2ee:?}"
                );
            }
        }
    }

    #[test]
    fn every_refusal_has_a_distinct_code_and_a_message() {
        let all = [
            Refusal::E2eeRequiresVerifiedOwner,
            Refusal::E2eeDisabled,
            Refusal::MeetingLocked,
            Refusal::WrongPasscode,
            Refusal::E2eeForbidsObservers,
            Refusal::E2eeForbidsDialIn,
            Refusal::MeetingFull { limit: 7 },
            Refusal::NodeFull { limit: 9 },
            Refusal::TooManyMeetings { limit: 3 },
        ];
        let mut codes: Vec<_> = all.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(Refusal::MeetingFull { limit: 7 }.message().contains('7'));
        assert!(Refusal::NodeFull { limit: 9 }.message().contains('9'));
        assert!(all.iter().all(|r| !r.message().is_empty()));
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(secrets_equal("s3cret", "s3cret"));
        assert!(!secrets_equal("s3cret", "s3cre"));
        assert!(!secrets_equal("", "s3cret"));
        assert!(secrets_equal("", ""));
    }
}
