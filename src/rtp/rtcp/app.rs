//! Application-defined packets (APP, PT 204, RFC 3550 §6.7).

use super::{APPLICATION, RtcpError};
use crate::rtp::types::Ssrc;
use crate::rtp::wire::Reader;

/// An APP packet: a subtype, a source, a 4-character name and opaque data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct App<'a> {
    subtype: u8,
    ssrc: Ssrc,
    name: [u8; 4],
    data: &'a [u8],
}

impl<'a> App<'a> {
    /// Reads an APP body (after the common header); `subtype` is the
    /// header's 5-bit count field.
    pub(crate) fn parse(subtype: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let short = RtcpError::BodyTooShort {
            packet_type: APPLICATION,
            needed: 8,
            got: body.len(),
        };
        let mut r = Reader::new(body);
        let ssrc = Ssrc(r.u32().ok_or(short)?);
        let name = *r.array().ok_or(short)?;
        Ok(Self {
            subtype,
            ssrc,
            name,
            data: r.rest(),
        })
    }

    #[must_use]
    pub const fn subtype(&self) -> u8 {
        self.subtype
    }

    #[must_use]
    pub const fn ssrc(&self) -> Ssrc {
        self.ssrc
    }

    /// Four ASCII characters naming the application.
    #[must_use]
    pub const fn name(&self) -> [u8; 4] {
        self.name
    }

    /// Application-dependent data, a whole number of 32-bit words.
    #[must_use]
    pub const fn data(&self) -> &'a [u8] {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let body = [0, 0, 0, 5, b'T', b'E', b'S', b'T', 1, 2, 3, 4];
        let app = App::parse(3, &body).unwrap();
        assert_eq!(app.subtype(), 3);
        assert_eq!(app.ssrc(), Ssrc(5));
        assert_eq!(&app.name(), b"TEST");
        assert_eq!(app.data(), &[1, 2, 3, 4]);
        assert_eq!(App::parse(0, &body[..8]).unwrap().data(), &[] as &[u8]);
        assert_eq!(
            App::parse(0, &body[..4]),
            Err(RtcpError::BodyTooShort {
                packet_type: 204,
                needed: 8,
                got: 4
            })
        );
    }
}
