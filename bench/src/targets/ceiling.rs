//! The loopback ceiling: no relay at all. Each publisher sends its SRTP
//! packets straight to every other participant's socket under a key the
//! receivers share with it, so the figures show what the generator, the
//! kernel's loopback path and the crypto cost alone. Every relay is
//! measured as a fraction of this.

use std::net::SocketAddr;

use ring::rand::{SecureRandom, SystemRandom};
use sluice::srtp::{MasterKey, SrtpProfile};

use crate::target::{LegPlan, MeetingSpec, Path, Target, TargetError};

/// No relay: generator straight to sink.
#[derive(Debug)]
pub struct Ceiling {
    profile: SrtpProfile,
    random: SystemRandom,
}

impl Ceiling {
    /// The ceiling for legs of `profile`.
    pub fn new(profile: SrtpProfile) -> Self {
        Self {
            profile,
            random: SystemRandom::new(),
        }
    }

    fn key(&self, meeting: usize) -> Result<MasterKey, TargetError> {
        let mut material = vec![0u8; self.profile.key_material_len()];
        let fail = |reason: String| TargetError::Admit {
            target: "ceiling",
            meeting,
            reason,
        };
        self.random
            .fill(&mut material)
            .map_err(|_| fail("the system random source failed".into()))?;
        MasterKey::new(self.profile, &material).map_err(|e| fail(e.to_string()))
    }
}

impl Target for Ceiling {
    fn name(&self) -> &'static str {
        "ceiling"
    }

    fn describe(&self) -> String {
        format!(
            "no relay: generator straight to sink over loopback, {}",
            self.profile
        )
    }

    fn admit(
        &mut self,
        meeting: &MeetingSpec,
        participants: &[SocketAddr],
    ) -> Result<Vec<LegPlan>, TargetError> {
        let publishers = meeting.publishers.len();
        let keys = (0..publishers)
            .map(|_| self.key(meeting.index))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(participants
            .iter()
            .enumerate()
            .map(|(me, _)| LegPlan {
                rtcp_ssrc: None,
                behind_hop: false,
                sends: match keys.get(me) {
                    Some(key) => participants
                        .iter()
                        .enumerate()
                        .filter(|(other, _)| *other != me)
                        .map(|(_, addr)| Path {
                            relay: *addr,
                            key: Some(key.clone()),
                        })
                        .collect(),
                    None => Vec::new(),
                },
                receives: keys
                    .iter()
                    .enumerate()
                    .filter(|(publisher, _)| *publisher != me)
                    .map(|(publisher, key)| Path {
                        relay: participants[publisher],
                        key: Some(key.clone()),
                    })
                    .collect(),
            })
            .collect())
    }

    fn pid(&self) -> Option<u32> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{StreamKind, StreamSpec};

    #[test]
    fn publishers_send_to_everyone_else_and_receivers_know_each_source() {
        let stream = |ssrc| StreamSpec {
            ssrc,
            kind: StreamKind::Audio,
            payload_type: 111,
        };
        let meeting = MeetingSpec {
            index: 0,
            e2ee: false,
            profile: SrtpProfile::AeadAes128Gcm,
            publishers: vec![vec![stream(1)], vec![stream(2)]],
            subscribers: 1,
        };
        let addrs: Vec<SocketAddr> = (0..3)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 5000 + i)))
            .collect();
        let plans = Ceiling::new(SrtpProfile::AeadAes128Gcm)
            .admit(&meeting, &addrs)
            .expect("admits");
        assert_eq!(plans.len(), 3);
        assert_eq!(plans[0].sends.len(), 2);
        assert!(plans[2].sends.is_empty());
        assert_eq!(plans[2].receives.len(), 2);
        assert_eq!(plans[1].receives.len(), 1);
        assert_eq!(plans[1].receives[0].relay, addrs[0]);
        let sent = plans[0].sends[0]
            .key
            .as_ref()
            .map(|k| k.as_bytes().to_vec());
        let known = plans[1].receives[0]
            .key
            .as_ref()
            .map(|k| k.as_bytes().to_vec());
        assert_eq!(sent, known);
    }
}
