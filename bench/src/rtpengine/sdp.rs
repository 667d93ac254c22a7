//! The little SDP (RFC 4566) the rtpengine target speaks: it writes one
//! offer or answer with a single m-line, and reads back from rtpengine's
//! rewritten SDP the address and port of that m-line and its SDES
//! `a=crypto` lines (RFC 4568 §9.1).
//!
//! One m-line per call because a [`crate::target::Path`] is one address:
//! every packet a publisher sends goes to it, audio and video alike, so the
//! m-line lists all of the publisher's payload types and rtpengine, which
//! forwards by port and SSRC, relays them all.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sluice::srtp::MasterKey;

use crate::target::StreamKind;

/// Standard base64, writing padding and reading it with or without
/// (rtpengine omits it in `inline:` keys).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why rtpengine's SDP could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// No `m=` line.
    #[error("SDP has no m= line")]
    NoMedia,
    /// No `c=` line at session or media level.
    #[error("SDP has no c= line for its m= line")]
    NoConnection,
    /// A line that does not parse.
    #[error("SDP line {line:?} does not parse")]
    BadLine {
        /// The line.
        line: String,
    },
}

/// The media direction attribute (RFC 4566 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendonly`: the publisher.
    SendOnly,
    /// `a=recvonly`: a receiver.
    RecvOnly,
}

/// One SDES crypto attribute to write.
#[derive(Debug, Clone, Copy)]
pub struct Crypto<'a> {
    /// The attribute's tag (an answer repeats the chosen offer tag).
    pub tag: u32,
    /// Suite and key material.
    pub key: &'a MasterKey,
}

/// An SDP body with one m-line, as a participant would send it.
#[derive(Debug, Clone)]
pub struct MediaDescription<'a> {
    /// Where the participant receives (and sends from).
    pub addr: SocketAddr,
    /// `(payload type, kind)` of every stream on the m-line; the first
    /// decides the media type.
    pub formats: &'a [(u8, StreamKind)],
    /// Send-only publisher or receive-only participant.
    pub direction: Direction,
    /// SDES keys (`RTP/SAVP`); none for plain `RTP/AVP`.
    pub cryptos: &'a [Crypto<'a>],
}

impl MediaDescription<'_> {
    /// The SDP text, CRLF line ends.
    pub fn write(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) => format!("IP4 {ip}"),
            IpAddr::V6(ip) => format!("IP6 {ip}"),
        };
        let media = match self.formats.first() {
            Some((_, StreamKind::Video)) => "video",
            _ => "audio",
        };
        let proto = if !self.cryptos.is_empty() {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        };
        let mut pts: Vec<u8> = Vec::with_capacity(self.formats.len());
        for &(pt, _) in self.formats {
            if !pts.contains(&pt) {
                pts.push(pt);
            }
        }
        let mut sdp = String::with_capacity(512);
        // `write!` into a String cannot fail.
        let _ = write!(
            sdp,
            "v=0\r\no=- 1 1 IN {ip}\r\ns=sluice-bench\r\nc=IN {ip}\r\nt=0 0\r\nm={media} {port} {proto}",
            port = self.addr.port()
        );
        for pt in &pts {
            let _ = write!(sdp, " {pt}");
        }
        sdp.push_str("\r\n");
        for pt in pts {
            let kind = self
                .formats
                .iter()
                .find(|f| f.0 == pt)
                .map_or(StreamKind::Audio, |f| f.1);
            let codec = match kind {
                StreamKind::Audio => "opus/48000/2",
                StreamKind::Video => "VP8/90000",
            };
            let _ = write!(sdp, "a=rtpmap:{pt} {codec}\r\n");
        }
        sdp.push_str(match self.direction {
            Direction::SendOnly => "a=sendonly\r\n",
            Direction::RecvOnly => "a=recvonly\r\n",
        });
        for c in self.cryptos {
            let _ = write!(
                sdp,
                "a=crypto:{} {} inline:{}\r\n",
                c.tag,
                c.key.profile().name(),
                BASE64.encode(c.key.as_bytes())
            );
        }
        sdp
    }
}

/// One `a=crypto` line read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoLine {
    /// Its tag.
    pub tag: u32,
    /// Its suite name, as written (rtpengine offers suites sluice lacks).
    pub suite: String,
    /// The decoded `inline:` key material (master key ‖ master salt).
    pub key: Vec<u8>,
}

/// The first m-line of an SDP rtpengine rewrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedMedia {
    /// Where rtpengine receives for this side (and sends from).
    pub addr: SocketAddr,
    /// The transport protocol of the m-line (`RTP/SAVP`, `RTP/AVP`).
    pub proto: String,
    /// Its SDES crypto lines, in order.
    pub cryptos: Vec<CryptoLine>,
}

impl RelayedMedia {
    /// Reads the first m-line of `sdp`.
    pub fn parse(sdp: &str) -> Result<Self, SdpError> {
        let bad = |line: &str| SdpError::BadLine {
            line: line.to_owned(),
        };
        let mut session_ip = None;
        let mut media: Option<(u16, String)> = None;
        let mut media_ip = None;
        let mut cryptos = Vec::new();
        for line in sdp.lines().map(str::trim_end) {
            if let Some(rest) = line.strip_prefix("m=") {
                if media.is_some() {
                    break;
                }
                let mut fields = rest.split_ascii_whitespace();
                let port = fields
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| bad(line))?;
                let proto = fields.next().ok_or_else(|| bad(line))?.to_owned();
                media = Some((port, proto));
            } else if let Some(rest) = line.strip_prefix("c=") {
                let ip = parse_connection(rest).ok_or_else(|| bad(line))?;
                if media.is_some() {
                    media_ip = Some(ip);
                } else {
                    session_ip = Some(ip);
                }
            } else if let Some(rest) = line.strip_prefix("a=crypto:")
                && media.is_some()
            {
                cryptos.push(parse_crypto(rest).ok_or_else(|| bad(line))?);
            }
        }
        let (port, proto) = media.ok_or(SdpError::NoMedia)?;
        let ip = media_ip.or(session_ip).ok_or(SdpError::NoConnection)?;
        Ok(Self {
            addr: SocketAddr::new(ip, port),
            proto,
            cryptos,
        })
    }

    /// The first crypto line offering `suite`, if any.
    pub fn crypto(&self, suite: &str) -> Option<&CryptoLine> {
        self.cryptos.iter().find(|c| c.suite == suite)
    }

    /// The crypto line with tag `tag`, if any.
    pub fn crypto_tagged(&self, tag: u32) -> Option<&CryptoLine> {
        self.cryptos.iter().find(|c| c.tag == tag)
    }
}

/// `IN IP4 <addr>` (a multicast `/ttl` suffix is cut off).
fn parse_connection(rest: &str) -> Option<IpAddr> {
    let mut fields = rest.split_ascii_whitespace();
    let (net, family, addr) = (fields.next()?, fields.next()?, fields.next()?);
    let addr = addr.split('/').next()?;
    let ip: IpAddr = addr.parse().ok()?;
    let family_ok = matches!(
        (family, ip),
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_))
    );
    (net == "IN" && family_ok).then_some(ip)
}

/// `<tag> <suite> inline:<key>[|lifetime][|mki:len][;…] [params]`.
fn parse_crypto(rest: &str) -> Option<CryptoLine> {
    let mut fields = rest.split_ascii_whitespace();
    let tag = fields.next()?.parse().ok()?;
    let suite = fields.next()?.to_owned();
    let key_params = fields.next()?;
    let first = key_params.split(';').next()?;
    let inline = first.strip_prefix("inline:")?;
    let key = BASE64.decode(inline.split('|').next()?).ok()?;
    Some(CryptoLine { tag, suite, key })
}

#[cfg(test)]
mod tests {
    use sluice::srtp::SrtpProfile;

    use super::*;

    /// Shaped like rtpengine 10.5's rewritten offer, shortened.
    const REWRITTEN: &str = "v=0\r\n\
        o=- 1 1 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        c=IN IP4 127.0.0.1\r\n\
        t=0 0\r\n\
        m=audio 40000 RTP/SAVP 111\r\n\
        a=rtpmap:111 opus/48000/2\r\n\
        a=sendrecv\r\n\
        a=rtcp:40001\r\n\
        a=crypto:1 AEAD_AES_256_GCM inline:CLJDjZvbUkVfgkpvpzpxtgM95PsiA4wBfWsGZqx9wzX6Zcv/iDeJHJR+J2w\r\n\
        a=crypto:2 AEAD_AES_128_GCM inline:AP6qew+d1erMFrxthsx3CYBfOnGFkU8Tj4uzeA\r\n\
        a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:SIHWnJd5lrxt9LGwm1V9UHabXM4kihlwUsZa0trE|2^31|1:1\r\n";

    #[test]
    fn reads_address_and_keys_from_a_rewritten_sdp() {
        let m = RelayedMedia::parse(REWRITTEN).unwrap();
        assert_eq!(m.addr, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(m.proto, "RTP/SAVP");
        assert_eq!(m.cryptos.len(), 3);
        let gcm = m.crypto("AEAD_AES_256_GCM").unwrap();
        assert_eq!((gcm.tag, gcm.key.len()), (1, 44));
        assert_eq!(m.crypto("AEAD_AES_128_GCM").unwrap().key.len(), 28);
        let cm = m.crypto("AES_CM_128_HMAC_SHA1_80").unwrap();
        assert_eq!((cm.tag, cm.key.len()), (7, 30));
        assert!(m.crypto("AES_CM_128_HMAC_SHA1_32").is_none());
    }

    #[test]
    fn media_level_connection_wins_and_only_the_first_m_line_counts() {
        let sdp = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 5004 RTP/AVP 96\r\n\
                   c=IN IP6 ::1\r\nm=audio 6000 RTP/SAVP 0\r\n\
                   a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:SIHWnJd5lrxt9LGwm1V9UHabXM4kihlwUsZa0trE\r\n";
        let m = RelayedMedia::parse(sdp).unwrap();
        assert_eq!(m.addr, "[::1]:5004".parse().unwrap());
        assert!(m.cryptos.is_empty());
    }

    #[test]
    fn broken_sdp_is_an_error() {
        assert_eq!(RelayedMedia::parse("v=0\r\n"), Err(SdpError::NoMedia));
        assert_eq!(
            RelayedMedia::parse("m=audio 1 RTP/AVP 0\r\n"),
            Err(SdpError::NoConnection)
        );
        for bad in [
            "c=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n",
            "c=IN IP4 nope\r\nm=audio 1 RTP/AVP 0\r\n",
            "c=IN IP6 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\n",
            "c=IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=crypto:1 X inline:!!\r\n",
            "c=IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=crypto:x X inline:AA\r\n",
        ] {
            assert!(
                matches!(RelayedMedia::parse(bad), Err(SdpError::BadLine { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn writes_an_offer_that_reads_back() {
        let key = MasterKey::new(SrtpProfile::AeadAes256Gcm, &[7; 44]).unwrap();
        let other = MasterKey::new(SrtpProfile::AeadAes256Gcm, &[9; 44]).unwrap();
        let sdp = MediaDescription {
            addr: "127.0.0.1:5000".parse().unwrap(),
            formats: &[
                (111, StreamKind::Audio),
                (96, StreamKind::Video),
                (111, StreamKind::Audio),
            ],
            direction: Direction::SendOnly,
            cryptos: &[
                Crypto { tag: 1, key: &key },
                Crypto {
                    tag: 2,
                    key: &other,
                },
            ],
        }
        .write();
        assert!(sdp.contains("m=audio 5000 RTP/SAVP 111 96\r\n"), "{sdp}");
        assert_eq!(sdp.matches("a=rtpmap:").count(), 2);
        assert!(sdp.contains("a=rtpmap:96 VP8/90000\r\n"));
        assert!(sdp.contains("a=sendonly\r\n"));
        let m = RelayedMedia::parse(&sdp).unwrap();
        assert_eq!(m.addr, "127.0.0.1:5000".parse().unwrap());
        let c = m.crypto("AEAD_AES_256_GCM").unwrap();
        assert_eq!((c.tag, c.key.as_slice()), (1, key.as_bytes()));
        assert_eq!(m.crypto_tagged(2).unwrap().key, other.as_bytes());
        assert!(m.crypto_tagged(3).is_none());

        let plain = MediaDescription {
            addr: "[::1]:6000".parse().unwrap(),
            formats: &[(96, StreamKind::Video)],
            direction: Direction::RecvOnly,
            cryptos: &[],
        }
        .write();
        assert!(
            plain.contains("c=IN IP6 ::1\r\nt=0 0\r\nm=video 6000 RTP/AVP 96\r\n"),
            "{plain}"
        );
        assert!(!plain.contains("a=crypto"));
    }
}
