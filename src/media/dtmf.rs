//! DTMF digits as RTP events (RFC 4733 §2.3, §3.2): parse an event
//! payload, report each digit of a stream once, and write the packet
//! sequence a sender produces for one key press.
//!
//! A sender repeats an event while the key is held, every packet with the
//! event's start timestamp and a growing duration (§2.5.1.2), and sends its
//! end three times (§2.5.1.4). [`DtmfDetector`] reports a digit at the first
//! packet of a new timestamp and ignores the rest; the same key pressed
//! twice is two events with two timestamps, so two digits.

/// The most a single event packet's duration field can say, in timestamp
/// units; longer events are split into segments (§2.5.1.3).
pub const MAX_SEGMENT: u16 = u16::MAX;

/// Why an event payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    /// Fewer than the 4 bytes of one event.
    #[error("telephone-event payload of {0} bytes, needs 4")]
    TooShort(usize),
    /// An event code that is not a DTMF digit (16 and up: flash, modem and
    /// fax tones, RFC 4734).
    #[error("telephone-event {0} is not a DTMF digit")]
    NotDtmf(u8),
    /// A character that is not a DTMF digit, given to the encoder.
    #[error("{0:?} is not a DTMF digit (0-9 * # A-D)")]
    BadDigit(char),
}

/// One telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: char,
    /// The E bit: this is (a retransmission of) the event's last packet.
    pub end: bool,
    /// Power level in -dBm0, 0..=63.
    pub volume: u8,
    /// Duration so far, in RTP timestamp units (8 kHz for a phone call).
    pub duration: u16,
}

const DIGITS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// The event code for a DTMF `digit` (RFC 4733 §3.2); lowercase a-d too.
pub fn event_code(digit: char) -> Result<u8, DtmfError> {
    DIGITS
        .iter()
        .position(|&d| d == digit.to_ascii_uppercase())
        .map(|i| i as u8)
        .ok_or(DtmfError::BadDigit(digit))
}

/// Parses the first event of a telephone-event payload (further events,
/// RFC 2198 redundancy, are ignored; the R bit is ignored).
pub fn parse(payload: &[u8]) -> Result<Event, DtmfError> {
    let &[code, flags, d0, d1, ..] = payload else {
        return Err(DtmfError::TooShort(payload.len()));
    };
    let digit = *DIGITS
        .get(usize::from(code))
        .ok_or(DtmfError::NotDtmf(code))?;
    Ok(Event {
        digit,
        end: flags & 0x80 != 0,
        volume: flags & 0x3f,
        duration: u16::from_be_bytes([d0, d1]),
    })
}

impl Event {
    /// The 4-byte payload for this event.
    pub fn to_bytes(&self) -> Result<[u8; 4], DtmfError> {
        let code = event_code(self.digit)?;
        let [d0, d1] = self.duration.to_be_bytes();
        Ok([code, u8::from(self.end) << 7 | (self.volume & 0x3f), d0, d1])
    }
}

/// Writes `event` into the first 4 bytes of `out`; returns 4.
pub fn encode_event(event: &Event, out: &mut [u8]) -> Result<usize, DtmfError> {
    let bytes = event.to_bytes()?;
    let len = out.len();
    let dst = out.get_mut(..4).ok_or(DtmfError::TooShort(len))?;
    dst.copy_from_slice(&bytes);
    Ok(4)
}

/// One RTP packet of a key press: the marker bit and the payload. All
/// packets of one press share the RTP timestamp of its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// Set on the first packet only (§2.5.1.1).
    pub marker: bool,
    /// The telephone-event payload.
    pub payload: [u8; 4],
}

/// The packets a sender produces for `digit` held `duration` timestamp
/// units: one every `step` units (160 = 20 ms at 8 kHz) with the duration
/// so far, the first with the marker, then the end packet three times.
pub fn digit_packets(
    digit: char,
    volume: u8,
    duration: u16,
    step: u16,
) -> Result<impl Iterator<Item = EventPacket>, DtmfError> {
    event_code(digit)?;
    let step = step.max(1);
    let updates = duration.div_ceil(step).saturating_sub(1);
    let packet = move |d: u16, end: bool, marker: bool| EventPacket {
        marker,
        payload: Event {
            digit,
            end,
            volume,
            duration: d,
        }
        .to_bytes()
        // The digit was checked above.
        .unwrap_or_default(),
    };
    let progress = (1..=updates).map(move |i| packet(i.saturating_mul(step), false, i == 1));
    let ends = (0..3).map(move |i| packet(duration, true, i == 0 && updates == 0));
    Ok(progress.chain(ends))
}

/// Turns a stream of telephone-event packets into digits, each once.
#[derive(Debug, Clone, Default)]
pub struct DtmfDetector {
    /// The event being received: its timestamp, digit and whether its end
    /// was seen.
    current: Option<(u32, char, bool)>,
}

impl DtmfDetector {
    /// A detector that has seen nothing.
    #[must_use]
    pub const fn new() -> Self {
        Self { current: None }
    }

    /// Feeds one received packet: its RTP timestamp, marker bit and
    /// payload. Returns the digit when this packet starts a new event,
    /// `None` for an update or retransmission of the current one, and an
    /// error (the packet ignored) for a payload that is not a DTMF event.
    ///
    /// A packet with a new timestamp but no marker, the same digit as an
    /// event whose end has not been seen, is the next segment of a long
    /// event (§2.5.1.3) and not a new digit.
    pub fn handle_packet(
        &mut self,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<Option<char>, DtmfError> {
        let event = parse(payload)?;
        let new = match self.current {
            None => true,
            Some((ts, _, _)) if ts == timestamp => false,
            Some((_, digit, ended)) => marker || ended || digit != event.digit,
        };
        let ended_before = match self.current {
            Some((ts, _, ended)) if ts == timestamp => ended,
            _ => false,
        };
        self.current = Some((timestamp, event.digit, event.end || ended_before));
        Ok(new.then_some(event.digit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds every packet of `digit` pressed at `ts`; returns the digits.
    fn press(det: &mut DtmfDetector, digit: char, ts: u32) -> Vec<char> {
        digit_packets(digit, 10, 800, 160)
            .unwrap()
            .filter_map(|p| det.handle_packet(ts, p.marker, &p.payload).unwrap())
            .collect()
    }

    #[test]
    fn parse_fields() {
        let e = parse(&[11, 0x8a, 0x03, 0x20]).unwrap();
        assert_eq!(
            e,
            Event {
                digit: '#',
                end: true,
                volume: 10,
                duration: 800
            }
        );
        assert_eq!(e.to_bytes().unwrap(), [11, 0x8a, 0x03, 0x20]);
        assert_eq!(parse(&[5, 0x00, 0, 160, 9, 9]).unwrap().digit, '5');
        assert_eq!(parse(&[15, 0, 0, 0]).unwrap().digit, 'D');
        assert_eq!(parse(&[16, 0, 0, 0]), Err(DtmfError::NotDtmf(16)));
        assert_eq!(parse(&[1, 2, 3]), Err(DtmfError::TooShort(3)));
        assert_eq!(event_code('x'), Err(DtmfError::BadDigit('x')));
        assert_eq!(event_code('b'), Ok(13));
        let mut out = [0u8; 4];
        assert_eq!(encode_event(&e, &mut out), Ok(4));
        assert_eq!(out, [11, 0x8a, 0x03, 0x20]);
    }

    #[test]
    fn packet_sequence() {
        let packets: Vec<_> = digit_packets('7', 10, 800, 160).unwrap().collect();
        // Durations 160..640, then the end (800) three times.
        assert_eq!(packets.len(), 4 + 3);
        let events: Vec<_> = packets.iter().map(|p| parse(&p.payload).unwrap()).collect();
        assert!(packets[0].marker && packets[1..].iter().all(|p| !p.marker));
        let durations: Vec<_> = events.iter().map(|e| e.duration).collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800]);
        assert_eq!(events.iter().filter(|e| e.end).count(), 3);
        assert!(events.iter().all(|e| e.digit == '7' && e.volume == 10));
        // A press shorter than one step: only the end packets, the first
        // with the marker.
        let short: Vec<_> = digit_packets('1', 0, 100, 160).unwrap().collect();
        assert_eq!(short.len(), 3);
        assert!(short[0].marker);
    }

    #[test]
    fn each_digit_once_and_repeats_counted() {
        let mut det = DtmfDetector::new();
        let mut digits = Vec::new();
        digits.extend(press(&mut det, '1', 1000));
        digits.extend(press(&mut det, '1', 3000));
        digits.extend(press(&mut det, '#', 5000));
        assert_eq!(digits, ['1', '1', '#']);
        // A late retransmission of an end packet changes nothing.
        let end = Event {
            digit: '#',
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(
            det.handle_packet(5000, false, &end.to_bytes().unwrap()),
            Ok(None)
        );
    }

    #[test]
    fn lost_start_still_reports_once() {
        let mut det = DtmfDetector::new();
        let packets: Vec<_> = digit_packets('9', 10, 800, 160).unwrap().collect();
        let got: Vec<_> = packets[2..]
            .iter()
            .filter_map(|p| det.handle_packet(42, p.marker, &p.payload).unwrap())
            .collect();
        assert_eq!(got, ['9']);
    }

    #[test]
    fn long_event_segments_are_one_digit() {
        let mut det = DtmfDetector::new();
        let update = |d| Event {
            digit: '0',
            end: false,
            volume: 5,
            duration: d,
        };
        let b = |e: Event| e.to_bytes().unwrap();
        assert_eq!(det.handle_packet(0, true, &b(update(160))), Ok(Some('0')));
        assert_eq!(
            det.handle_packet(0, false, &b(update(MAX_SEGMENT))),
            Ok(None)
        );
        // The next segment: new timestamp, no marker.
        assert_eq!(det.handle_packet(65_535, false, &b(update(160))), Ok(None));
        // A different digit with a new timestamp is a new press even if
        // its marker packet was lost.
        let five = Event {
            digit: '5',
            ..update(160)
        };
        assert_eq!(det.handle_packet(80_000, false, &b(five)), Ok(Some('5')));
        assert_eq!(
            det.handle_packet(80_000, false, &[200, 0, 0, 0]),
            Err(DtmfError::NotDtmf(200))
        );
    }
}
