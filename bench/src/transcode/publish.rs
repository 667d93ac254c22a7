//! The bench's publishers, one per stream, the same for both targets: the
//! [`Clip`]'s RTP payloads replayed in real time under SRTP
//! (AES_CM_128_HMAC_SHA1_80), to sluice's media port (one publisher leg
//! per meeting) or to an ffmpeg process's SDP input.
//!
//! Publisher k's frame n leaves at `start + n × 33.3 ms + k × 33.3 ms ÷ K`,
//! so the K sources are not all in phase (real cameras are not), each
//! frame's packets in one burst as an encoder hands them over.

use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use sluice::crypto::AnyGcm;
use sluice::rtp::{PayloadType, RtpBuilder, SeqNum, Ssrc};
use sluice::srtp::{MasterKey, SrtpProfile, SrtpSession};

use super::clip::{Clip, TICKS_PER_FRAME};
use super::{FRAME, StepError};

/// The SRTP profile of every bench leg (WebRTC's SDES default).
pub const PROFILE: SrtpProfile = SrtpProfile::AesCm128HmacSha1_80;
/// Publisher k's SSRC is this plus k.
pub const PUBLISHER_SSRC: u32 = 0x5eed_0000;
/// Frames sent after a step's last measured one, so that one is followed
/// by more, as in a live stream: FFmpeg's H.264 parser ends an access
/// unit only when the next one begins, and would hold the last forever.
pub const TAIL_FRAMES: u32 = super::clip::FPS / 2;

/// One stream's sender.
#[derive(Debug)]
pub struct Publisher {
    /// The socket it sends from (for sluice: the one its leg latched).
    pub socket: UdpSocket,
    /// Where its packets go.
    pub dest: SocketAddr,
    /// Its SRTP protect context.
    pub srtp: SrtpSession<AnyGcm>,
}

impl Publisher {
    /// A publisher sending from a fresh loopback socket to `dest` under
    /// `key`.
    pub fn to(dest: SocketAddr, key: &MasterKey) -> Result<Self, StepError> {
        let socket =
            UdpSocket::bind("127.0.0.1:0").map_err(StepError::io("binding a publisher"))?;
        let _ = socket2::SockRef::from(&socket).set_send_buffer_size(4 << 20);
        let srtp = SrtpSession::new(AnyGcm::default(), key)
            .map_err(|e| StepError::Other(format!("SRTP keys: {e}")))?;
        Ok(Self { socket, dest, srtp })
    }
}

/// A fresh random master key and salt of [`PROFILE`].
pub fn random_key() -> Result<(MasterKey, Vec<u8>), StepError> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = vec![0u8; PROFILE.key_material_len()];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| StepError::Other("no randomness for an SRTP key".into()))?;
    let key =
        MasterKey::new(PROFILE, &bytes).map_err(|e| StepError::Other(format!("SRTP key: {e}")))?;
    Ok((key, bytes))
}

/// Replays `frames` frames of `clip` for every publisher (and
/// [`TAIL_FRAMES`] more), pinned to `cores`; returns, per publisher, when
/// each frame's last packet left.
pub fn send(
    mut publishers: Vec<Publisher>,
    clip: &Clip,
    pt: u8,
    frames: u32,
    start: Instant,
    cores: &[usize],
) -> Result<Vec<Vec<Instant>>, StepError> {
    crate::pin::pin_current_thread(cores).map_err(StepError::Other)?;
    let pt = PayloadType::new(pt).ok_or_else(|| StepError::Other(format!("payload type {pt}")))?;
    let k = publishers.len().max(1) as u32;
    let frames = frames + TAIL_FRAMES;
    let mut sent = vec![Vec::with_capacity(frames as usize); publishers.len()];
    let mut seqs = vec![0u16; publishers.len()];
    let mut buf = vec![0u8; 1600];
    for n in 0..frames {
        let frame = &clip.frames[n as usize % clip.frames.len()];
        let ts = n.wrapping_mul(TICKS_PER_FRAME);
        for (i, p) in publishers.iter_mut().enumerate() {
            super::sleep_until(start + FRAME * n + FRAME * i as u32 / k);
            let ssrc = Ssrc(PUBLISHER_SSRC + i as u32);
            for (payload, marker) in &frame.packets {
                let len = RtpBuilder::new(pt, SeqNum(seqs[i]), ts, ssrc)
                    .marker(*marker)
                    .write(payload, &mut buf)
                    .map_err(|e| StepError::Other(format!("RTP: {e}")))?;
                seqs[i] = seqs[i].wrapping_add(1);
                let len = p
                    .srtp
                    .protect_rtp(&mut buf, len)
                    .map_err(|e| StepError::Other(format!("SRTP: {e}")))?;
                // A full buffer is a lost packet, as on a network.
                let _ = p.socket.send_to(&buf[..len], p.dest);
            }
            sent[i].push(Instant::now());
        }
    }
    Ok(sent)
}
