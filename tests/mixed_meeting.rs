//! One standard meeting with the three kinds of participant sluice has:
//! a browser (headless Chromium, WHIP and WHEP), an SDES participant (the
//! tests' own SRTP endpoint) and a telephone caller (SIPp's signalling,
//! the test's own RTP in G.711), each hearing the others, told apart by
//! the tone each one sends: the browser 700 Hz, the SDES participant
//! 1.2 kHz, the caller 440 Hz. The browser and the SDES participant also
//! see each other: each publishes video (the browser its fake camera,
//! the SDES participant a VP8 clip made here with libvpx), and each
//! decodes the other's.
//!
//! The relay (the `sluice` binary), Chromium, node and SIPp all run in a
//! network namespace of the test's own with only `lo`, as in
//! tests/webrtc_browser.rs; the browser side is the `mixed-dialin`
//! scenario of `tests/browser/webrtc.mjs`, which the test steps through
//! by lines on its stdin and stdout. Chromium and node are needed as for
//! the other browser tests (without them the test says so and passes,
//! except under `CI`), and SIPp (Debian's sip-tester).

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::media::level::audio_level_and_voice;
use sluice::media::tone::{Sine, goertzel_power};
use sluice::media::{G711, OpusDecoder, OpusEncoder};
use sluice::rtp::{PayloadType, RtpBuilder, RtpPacket, SeqNum, Ssrc};
use sluice::transcode::{EncoderKind, EncoderSettings, VideoEncoder};
use sluice::video::{VideoCodec, Vp8Packetizer, picture_height};
use support::browser::{browser_dir, browser_ready, in_netns};
use support::daemon::{RunningDaemon, loopback_config};
use support::phone::{Phone, Sipp};
use support::{Endpoint, http};

/// The meeting, numeric so that the caller dials it directly.
const MEETING: &str = "5550777";
const SDES_SSRC: u32 = 0x5D35_0777;
const SDES_VIDEO_SSRC: u32 = 0x5D35_0778;
/// The SDES participant's video: VP8 (payload type 96), 320x240, a frame
/// every third audio frame (60 ms), a key frame every `CLIP_FRAMES`.
const VIDEO_PT: u8 = 96;
const CLIP_FRAMES: u32 = 15;
const FRAME_TICKS: u32 = 90_000 * 60 / 1000;
const BROWSER_HZ: f32 = 700.0;
const SDES_HZ: f32 = 1200.0;
const CALLER_HZ: f32 = 440.0;
/// The tones' Goertzel power (a², a the amplitude as a fraction of full
/// scale) a listener must find at least: the tones are sent at 0.25 to
/// 0.5 of full scale (0.06 to 0.25), and mixing and G.711 lose some.
const HEARD: f32 = 0.005;
/// How many times stronger a source's own tone must be than another's
/// in what a listener receives from it (or, for the caller, than its own
/// tone in what it hears: the mix is N-1).
const DISTINCT: f32 = 10.0;
/// The RFC 6464 extension id the bridge writes its callers' levels under
/// and the relay reads SDES-keyed publishers' levels under (`[sip]
/// audio_level_extension`): 3, not the default 1, so that the two must
/// agree through the config.
const LEVEL_EXT: u8 = 3;

#[test]
fn a_browser_an_sdes_participant_and_a_dial_in_caller_hear_each_other() {
    if !browser_ready() {
        return;
    }
    in_netns(|| {
        let config = loopback_config(&format!("audio_level_extension = {LEVEL_EXT}\n"));
        let daemon = RunningDaemon::start("mixed-dialin", &config, &[]);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            three_kinds_of_participant(&daemon);
        }));
        let (_, log) = daemon.stop();
        if let Err(e) = outcome {
            eprintln!("relay log:\n{log}");
            std::panic::resume_unwind(e);
        }
    });
}

fn three_kinds_of_participant(daemon: &RunningDaemon) {
    let api = daemon.api;
    let sip = daemon.sip.expect("the relay's banner names its SIP port");
    let owner = json!({"account": "test", "verified": false});
    let meeting = http(
        api,
        "POST",
        "/v1/meetings",
        Some(&json!({"id": MEETING, "mode": "standard", "owner": owner})),
        None,
    );
    assert_eq!(meeting.status, 201, "{}", meeting.text);
    let path = format!("/v1/meetings/{MEETING}/participants");

    let sdes = http(api, "POST", &path, Some(&json!({"name": "sdes"})), None);
    assert_eq!(sdes.status, 201, "{}", sdes.text);
    let sdes = Endpoint::from_admission(&sdes.json());
    let sdes_id = sdes.id.clone();
    let stream = http(
        api,
        "POST",
        &format!("{path}/{sdes_id}/streams"),
        Some(&json!({"ssrc": SDES_SSRC, "kind": "audio", "codec": "opus", "payload_type": 111})),
        None,
    );
    assert_eq!(stream.status, 201, "{}", stream.text);
    let video =
        json!({"ssrc": SDES_VIDEO_SSRC, "kind": "video", "codec": "VP8", "payload_type": VIDEO_PT});
    let stream = http(
        api,
        "POST",
        &format!("{path}/{sdes_id}/streams"),
        Some(&video),
        None,
    );
    assert_eq!(stream.status, 201, "{}", stream.text);
    let sdes = SdesSide::start(sdes, vp8_clip());

    let browser = http(
        api,
        "POST",
        &path,
        Some(&json!({"name": "web", "transport": "webrtc"})),
        None,
    );
    assert_eq!(browser.status, 201, "{}", browser.text);
    let web = &browser.json()["webrtc"];
    let args =
        json!({"whip": web["whip"], "whep": web["whep"], "token": web["token"], "sdes": sdes_id});
    let mut page = Scenario::start(api, &args);

    // The browser publishes, views twice, hears the SDES participant in
    // both views and decodes its video in the first before the phone
    // calls.
    let ready = page.expect("READY ", Duration::from_secs(90), None);
    let ready: Value = serde_json::from_str(&ready).expect("READY carries JSON");
    let ssrc = |kind: &str| {
        let ssrc = ready[kind].as_u64().expect("an outbound SSRC");
        u32::try_from(ssrc).expect("SSRCs are 32 bits")
    };
    let (browser_audio, browser_video) = (ssrc("audio"), ssrc("video"));

    let mut phone = Caller::new();
    let sipp = Sipp::call(sip, "hungup.xml", MEETING, phone.phone.port(), 0);
    phone.phone.wait_for_relay();
    let (caller_id, caller_ssrc) = phone.tick_until("the caller in the roster", || {
        let roster = http(api, "GET", &format!("/v1/meetings/{MEETING}"), None, None).json();
        let caller = roster["roster"]
            .as_array()?
            .iter()
            .find(|p| p["source"] == "dial-in")?;
        let ssrc = caller["streams"][0]["ssrc"].as_u64()?;
        Some((caller["id"].as_str()?.to_owned(), ssrc as u32))
    });
    page.say(&format!("caller {caller_id}"));
    page.expect("CALLER-IN", Duration::from_secs(30), Some(&mut phone));
    let silent_until = Instant::now();
    page.say("talk");
    phone.talk();
    page.expect("HEARD", Duration::from_secs(60), Some(&mut phone));
    // Five seconds of talk at least for the phone and the SDES side.
    while phone.talked() < Duration::from_secs(5) {
        phone.tick();
    }
    page.say("done");
    let browser_text = page.finish(&mut phone);
    let (talk_from, talk_end) = (phone.talk_from(), phone.last_sent);

    // The integrator removes the caller: the bridge hangs up (SIPp waits
    // for the BYE).
    let r = http(api, "DELETE", &format!("{path}/{caller_id}"), None, None);
    assert_eq!(r.status, 204, "{}", r.text);
    sipp.succeeds();
    let received = sdes.stop();
    eprintln!("{browser_text}");

    // The caller hears the browser and the SDES participant, not itself:
    // the last two seconds it heard while it talked, well after the
    // joining prompt.
    let heard = phone.heard_since_talk();
    assert!(
        heard.len() >= 8000 * 3,
        "the caller heard only {} samples while it talked",
        heard.len()
    );
    let heard = &heard[heard.len() - 16_000..];
    let (browser, sdes_tone, own) = (
        goertzel_power(heard, 8000, BROWSER_HZ),
        goertzel_power(heard, 8000, SDES_HZ),
        goertzel_power(heard, 8000, CALLER_HZ),
    );
    eprintln!("at the caller: browser {browser}, SDES {sdes_tone}, its own {own}");
    assert!(
        browser > HEARD,
        "the caller does not hear the browser's {BROWSER_HZ} Hz: {browser}"
    );
    assert!(
        sdes_tone > HEARD,
        "the caller does not hear the SDES participant's {SDES_HZ} Hz: {sdes_tone}"
    );
    assert!(
        browser.min(sdes_tone) > DISTINCT * own,
        "the caller hears itself ({own}) next to the browser ({browser}) and SDES ({sdes_tone})"
    );

    // The SDES participant receives the caller: its tone, with an RFC
    // 6464 level in every packet that says it speaks while it talks (most
    // packets: a frame the phone sent late on a loaded machine is one of
    // silence) and that it is silent before.
    let counts: HashMap<u32, usize> = received.iter().map(|(k, v)| (*k, v.len())).collect();
    eprintln!("the SDES side received, by SSRC: {counts:?}");
    let from_caller = received.get(&caller_ssrc).map_or(&[][..], Vec::as_slice);
    let talking: Vec<_> = from_caller
        .iter()
        .filter(|p| p.at > talk_from + Duration::from_millis(500) && p.at < talk_end)
        .collect();
    assert!(
        talking.len() > 100,
        "the SDES participant received {} packets of the caller's stream {caller_ssrc} while \
         it talked (by SSRC: {counts:?})",
        talking.len()
    );
    let pcm = decode(talking.iter().copied());
    let (tone, other) = (
        goertzel_power(&pcm, 48_000, CALLER_HZ),
        goertzel_power(&pcm, 48_000, BROWSER_HZ).max(goertzel_power(&pcm, 48_000, SDES_HZ)),
    );
    assert!(
        tone > HEARD && tone > DISTINCT * other,
        "the SDES participant does not hear the caller's {CALLER_HZ} Hz: {tone} (other tones {other})"
    );
    let levels: Vec<_> = talking.iter().map(|p| p.level).collect();
    let speaking = levels
        .iter()
        .filter(|l| l.is_some_and(|(dbov, voice)| dbov < 40 && voice))
        .count();
    assert!(
        levels.iter().all(Option::is_some) && speaking * 10 >= levels.len() * 9,
        "the caller's packets should carry a speaking RFC 6464 level (extension {LEVEL_EXT}) \
         while it talks: {levels:?}"
    );
    let silent: Vec<_> = from_caller
        .iter()
        .filter(|p| p.at < silent_until)
        .map(|p| p.level)
        .collect();
    assert!(
        silent.iter().all(|l| l.is_some_and(|(dbov, _)| dbov > 90)),
        "the caller's packets should carry a silent level while it is silent: {silent:?}"
    );

    // The SDES participant receives the browser's audio (its tone) and
    // video: a stream with key frames of the camera's picture (320x240,
    // or smaller when Chromium scales down on a loaded machine).
    let audio = received.get(&browser_audio).map_or(&[][..], Vec::as_slice);
    let pcm = decode(audio.iter().filter(|p| p.at > talk_from && p.at < talk_end));
    let (tone, other) = (
        goertzel_power(&pcm, 48_000, BROWSER_HZ),
        goertzel_power(&pcm, 48_000, CALLER_HZ).max(goertzel_power(&pcm, 48_000, SDES_HZ)),
    );
    assert!(
        pcm.len() > 48_000 * 2 && tone > HEARD && tone > DISTINCT * other,
        "the SDES participant does not hear the browser's {BROWSER_HZ} Hz on {browser_audio}: \
         {} samples, {tone} (other tones {other}; by SSRC: {counts:?})",
        pcm.len()
    );
    let video = received.get(&browser_video).map_or(&[][..], Vec::as_slice);
    let heights: Vec<u32> = video
        .iter()
        .filter_map(|p| {
            picture_height(VideoCodec::Vp8, &p.payload)
                .or_else(|| picture_height(VideoCodec::H264, &p.payload))
        })
        .collect();
    assert!(
        video.len() > 100 && !heights.is_empty() && heights.iter().all(|h| (60..=240).contains(h)),
        "the SDES participant received {} packets of the browser's video {browser_video}, key \
         frames {heights:?} px high (by SSRC: {counts:?})",
        video.len()
    );
    eprintln!("the browser's video at the SDES side: key frames {heights:?} px high");
}

/// Decodes Opus packets in the order given (48 kHz mono).
fn decode<'a>(packets: impl Iterator<Item = &'a Received>) -> Vec<i16> {
    let mut decoder = OpusDecoder::new().expect("opus decoder");
    let mut pcm = Vec::new();
    for p in packets {
        if let Ok(samples) = decoder.decode(&p.payload) {
            pcm.extend_from_slice(samples);
        }
    }
    pcm
}

/// One packet the SDES participant received and authenticated.
struct Received {
    at: Instant,
    payload: Vec<u8>,
    /// Its RFC 6464 level and voice flag, if it carried one.
    level: Option<(u8, bool)>,
}

/// `CLIP_FRAMES` frames of VP8 (a key frame, then delta frames) of a
/// moving picture, 320x240, from sluice's own encoder (libvpx): looped,
/// a stream a decoder can join at every key frame.
fn vp8_clip() -> Vec<Vec<u8>> {
    let settings = EncoderSettings::new(EncoderKind::Libvpx, 320, 240, 300);
    let mut encoder = VideoEncoder::open(settings).expect("libvpx opens");
    let mut clip = Vec::new();
    for n in 0..CLIP_FRAMES {
        let picture = encoder.frame_mut().expect("a writable picture");
        let (w, h) = (picture.width() as usize, picture.height() as usize);
        for plane in 0..3 {
            let (pw, ph) = if plane == 0 { (w, h) } else { (w / 2, h / 2) };
            let stride = picture.stride(plane);
            let data = picture.data_mut(plane);
            for row in 0..ph {
                for col in 0..pw {
                    // A band moving right (luma), flat colour (chroma).
                    data[row * stride + col] = match plane {
                        0 => 40 + ((col + 8 * n as usize) / 16 % 8) as u8 * 24,
                        _ => 96 + 32 * plane as u8,
                    };
                }
            }
        }
        encoder
            .encode(i64::from(n * FRAME_TICKS), n == 0, |frame| {
                clip.push((frame.data.to_vec(), frame.keyframe));
            })
            .expect("encode");
    }
    assert!(
        clip.len() >= CLIP_FRAMES as usize / 2 && clip[0].1,
        "the clip starts with a key frame: {} frames",
        clip.len()
    );
    clip.into_iter().map(|(frame, _)| frame).collect()
}

/// Packetizes (RFC 7741) and sends one VP8 frame of the SDES
/// participant's video, the marker on its last packet.
fn send_vp8(
    sdes: &mut Endpoint,
    packetizer: &mut Vp8Packetizer,
    frame: &[u8],
    seq: &mut u16,
    timestamp: u32,
) {
    let mut payloads = Vec::new();
    packetizer
        .packetize(frame, 1100, |payload, marker| {
            payloads.push((payload.to_vec(), marker));
        })
        .expect("packetize");
    let pt = PayloadType::new(VIDEO_PT).expect("7 bits");
    for (payload, marker) in payloads {
        let mut buf = vec![0u8; payload.len() + 12 + 64];
        let len = RtpBuilder::new(pt, SeqNum(*seq), timestamp, Ssrc(SDES_VIDEO_SSRC))
            .marker(marker)
            .write(&payload, &mut buf)
            .expect("fits");
        let n = sdes.send.protect_rtp(&mut buf, len).expect("protect");
        sdes.socket.send_to(&buf[..n], sdes.relay).expect("send");
        *seq = seq.wrapping_add(1);
    }
}

/// The SDES participant on a thread of its own: it publishes a 1.2 kHz
/// Opus tone every 20 ms and `clip`, looped, as its video, and keeps
/// what it receives, by SSRC.
struct SdesSide {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<HashMap<u32, Vec<Received>>>>,
}

impl SdesSide {
    fn start(mut sdes: Endpoint, clip: Vec<Vec<u8>>) -> Self {
        sdes.socket
            .set_read_timeout(Some(Duration::from_millis(2)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut encoder = OpusEncoder::new(32_000, 5).expect("opus encoder");
            let mut sine = Sine::new(SDES_HZ, 48_000, 8000.0);
            let mut frame = [0i16; 960];
            let mut received = HashMap::<u32, Vec<Received>>::new();
            let mut buf = [0u8; 2048];
            let start = Instant::now();
            // Bounded: the test stops it well before.
            let until = start + Duration::from_secs(240);
            let mut seq = 0u16;
            let (mut packetizer, mut video_seq, mut frames) = (Vp8Packetizer::new(0), 0u16, 0u32);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < until {
                sine.fill(&mut frame);
                let opus = encoder.encode(&frame).expect("encode").to_vec();
                sdes.send_rtp(SDES_SSRC, seq, &opus);
                if seq.is_multiple_of(3) {
                    let picture = &clip[frames as usize % clip.len()];
                    let ts = frames.wrapping_mul(FRAME_TICKS);
                    send_vp8(&mut sdes, &mut packetizer, picture, &mut video_seq, ts);
                    frames += 1;
                }
                seq = seq.wrapping_add(1);
                let due = start + Duration::from_millis(20 * u64::from(seq));
                while Instant::now() < due {
                    let Ok((n, _)) = sdes.socket.recv_from(&mut buf) else {
                        continue;
                    };
                    if support::is_rtcp(&buf[..n]) {
                        continue;
                    }
                    let Ok(len) = sdes.recv.unprotect_rtp(&mut buf, n) else {
                        continue;
                    };
                    let Ok(packet) = RtpPacket::parse(&buf[..len]) else {
                        continue;
                    };
                    received
                        .entry(packet.header().ssrc().0)
                        .or_default()
                        .push(Received {
                            at: Instant::now(),
                            payload: packet.payload().to_vec(),
                            level: audio_level_and_voice(&packet, LEVEL_EXT),
                        });
                }
            }
            received
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> HashMap<u32, Vec<Received>> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("stopped once");
        thread.join().expect("the SDES side panicked")
    }
}

impl Drop for SdesSide {
    /// A test that failed before [`Self::stop`] stops it too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The phone's media: silence every 20 ms, then a 440 Hz tone once told
/// to talk; what it hears is kept by its [`Phone`].
struct Caller {
    phone: Phone,
    sine: Sine,
    next: Instant,
    /// When it started talking, and how much it had heard by then.
    talking: Option<(Instant, usize)>,
    /// When it sent its last frame.
    last_sent: Instant,
}

impl Caller {
    fn new() -> Self {
        Self {
            phone: Phone::new(),
            sine: Sine::new(CALLER_HZ, 8000, 8000.0),
            next: Instant::now(),
            talking: None,
            last_sent: Instant::now(),
        }
    }

    /// Sends the next frame and listens until the one after is due.
    fn tick(&mut self) {
        let mut ulaw = [0xFFu8; 160];
        if self.talking.is_some() {
            let mut pcm = [0i16; 160];
            self.sine.fill(&mut pcm);
            G711::Mu.encode(&pcm, &mut ulaw);
        }
        self.phone.send_pcmu(&ulaw);
        self.last_sent = Instant::now();
        self.next =
            self.next.max(Instant::now() - Duration::from_millis(100)) + Duration::from_millis(20);
        while Instant::now() < self.next {
            self.phone.listen();
        }
    }

    /// Ticks until `check` answers (15 s at most).
    fn tick_until<T>(&mut self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(found) = check() {
                return found;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            for _ in 0..5 {
                self.tick();
            }
        }
    }

    fn talk(&mut self) {
        self.talking = Some((Instant::now(), self.heard_pcmu().len()));
    }

    fn talk_from(&self) -> Instant {
        self.talking.expect("the caller talked").0
    }

    fn talked(&self) -> Duration {
        self.talk_from().elapsed()
    }

    fn heard_pcmu(&self) -> Vec<u8> {
        self.phone.heard(0)
    }

    /// What it heard since it started talking, decoded.
    fn heard_since_talk(&self) -> Vec<i16> {
        let (_, from) = self.talking.expect("the caller talked");
        let ulaw = &self.heard_pcmu()[from..];
        let mut pcm = vec![0i16; ulaw.len()];
        G711::Mu.decode(ulaw, &mut pcm);
        pcm
    }
}

/// The `mixed-dialin` browser scenario, stepped by lines.
struct Scenario {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    transcript: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Scenario {
    fn start(api: std::net::SocketAddr, args: &Value) -> Self {
        let mut child = Command::new("node")
            .arg(browser_dir().join("webrtc.mjs"))
            .arg("mixed-dialin")
            .arg(format!("http://{api}"))
            .arg(args.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node");
        let stdin = child.stdin.take().expect("stdin piped");
        let transcript = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout piped");
        let stderr = child.stderr.take().expect("stderr piped");
        let out = Arc::clone(&transcript);
        let err = Arc::clone(&transcript);
        let readers = vec![
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    out.lock().unwrap().push_str(&format!("{line}\n"));
                    let _ = tx.send(line);
                }
            }),
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    err.lock().unwrap().push_str(&format!("{line}\n"));
                }
            }),
        ];
        Self {
            child,
            stdin,
            lines,
            transcript,
            readers,
        }
    }

    fn transcript(&self) -> String {
        self.transcript.lock().unwrap().clone()
    }

    /// The rest of the first line starting with `prefix`, within `within`;
    /// the phone, if any, ticks meanwhile.
    fn expect(&mut self, prefix: &str, within: Duration, mut phone: Option<&mut Caller>) -> String {
        let deadline = Instant::now() + within;
        loop {
            let line = match phone.as_deref_mut() {
                Some(phone) => match self.lines.try_recv() {
                    Ok(line) => Some(line),
                    Err(TryRecvError::Empty) => {
                        phone.tick();
                        None
                    }
                    Err(TryRecvError::Disconnected) => self.failed(prefix),
                },
                None => match self.lines.recv_timeout(Duration::from_millis(100)) {
                    Ok(line) => Some(line),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => self.failed(prefix),
                },
            };
            if let Some(rest) = line.as_deref().and_then(|l| l.strip_prefix(prefix)) {
                return rest.to_owned();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the browser did not say {prefix:?} within {within:?}:\n{}",
                    self.transcript()
                );
            }
        }
    }

    fn failed(&mut self, waiting_for: &str) -> ! {
        let status = self.child.wait().expect("wait for node");
        thread::sleep(Duration::from_millis(200));
        panic!(
            "the browser scenario ended ({status}) before saying {waiting_for:?}:\n{}",
            self.transcript()
        );
    }

    fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to the scenario");
        self.stdin.flush().expect("flush");
    }

    /// Waits (30 s at most, the phone ticking) for the scenario to pass;
    /// its output.
    fn finish(mut self, phone: &mut Caller) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().expect("wait");
            }
            phone.tick();
        };
        for reader in self.readers.drain(..) {
            reader.join().expect("output reader");
        }
        let text = self.transcript();
        assert!(status.success(), "the browser scenario failed:\n{text}");
        text
    }
}

impl Drop for Scenario {
    /// A test that failed half-way ends the scenario (and its Chromium).
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
