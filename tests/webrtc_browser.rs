//! Browsers through sluice: Debian's Chromium (headless, fake camera and
//! microphone) publishes over WHIP and views over WHEP, ICE-lite and
//! DTLS-SRTP on the media port. Each test runs the relay and the browser
//! in a network namespace of its own with only `lo` (Chromium gathers
//! loopback candidates with `--allow-loopback-in-peer-connection`), so
//! nothing leaves the namespace the test made. The scenarios are
//! `tests/browser/webrtc.mjs`.
//!
//! Chromium and `tests/browser/node_modules` (`npm ci --prefix
//! tests/browser`, which `cargo xtask test` runs) are needed: without them
//! the tests say so and pass, except under `CI`, where they fail.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::browser::{browser_dir, browser_ready, in_netns};
use support::daemon::{RunningDaemon, loopback_config};
use support::{Endpoint, http};

/// Runs a scenario of `webrtc.mjs` against the relay at `api`; panics
/// with its output unless it passed within 90 s.
fn scenario(name: &str, api: std::net::SocketAddr, extra: &[String]) -> String {
    let mut child = Command::new("node")
        .arg(browser_dir().join("webrtc.mjs"))
        .arg(name)
        .arg(format!("http://{api}"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("node output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "scenario {name} failed:\n{text}");
    text
}

fn run(name: &str) {
    if !browser_ready() {
        return;
    }
    in_netns(|| {
        let daemon = RunningDaemon::start(
            &format!("webrtc-{name}"),
            &loopback_config(""),
            &[("SLUICE_LOG", "info")],
        );
        let outcome = std::panic::catch_unwind(|| scenario(name, daemon.api, &[]));
        let (_, log) = daemon.stop();
        match outcome {
            Ok(text) => eprintln!("{text}"),
            Err(e) => {
                eprintln!("relay log:\n{log}");
                std::panic::resume_unwind(e);
            }
        }
    });
}

#[test]
fn a_browser_publishes_over_whip_and_another_views_over_whep() {
    run("publish-view");
}

#[test]
fn two_browsers_see_and_hear_each_other_and_a_third_joins_without_renegotiation() {
    run("late-joiner");
}

/// WHEP slots follow the speaker: a viewer's one audio and one video slot
/// go from a silent first publisher to a later one who speaks, the page's
/// GET on its session names him, and the video decodes on across the
/// switch under the slot's one SSRC.
#[test]
fn receive_slots_follow_the_speaker_and_stay_one_stream() {
    run("speaker");
}

#[test]
fn the_same_in_an_e2ee_meeting_and_deleting_the_participant_stops_its_video() {
    run("publish-view-e2ee");
}

/// A browser and an SDES participant (the tests' own SRTP endpoint) in
/// one standard meeting: the browser receives the SDES audio stream (its
/// inbound-rtp for that SSRC counts packets), and the SDES side receives
/// and authenticates the browser's streams under its own key.
#[test]
fn a_browser_and_an_sdes_participant_receive_each_others_streams() {
    if !browser_ready() {
        return;
    }
    in_netns(|| {
        let daemon = RunningDaemon::start("webrtc-mixed", &loopback_config(""), &[]);
        let api = daemon.api;
        let owner = json!({"account": "test", "verified": false});
        let meeting = http(
            api,
            "POST",
            "/v1/meetings",
            Some(&json!({"mode": "standard", "owner": owner})),
            None,
        );
        assert_eq!(meeting.status, 201, "{}", meeting.text);
        let id = meeting.json()["id"].as_str().expect("id").to_owned();
        let path = format!("/v1/meetings/{id}/participants");
        let sdes = http(api, "POST", &path, Some(&json!({"name": "sdes"})), None);
        assert_eq!(sdes.status, 201, "{}", sdes.text);
        let mut sdes = Endpoint::from_admission(&sdes.json());
        sdes.socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .expect("timeout");
        const SSRC: u32 = 0x5D35_0001;
        let stream = http(
            api,
            "POST",
            &format!("{path}/{}/streams", sdes.id),
            Some(&json!({"ssrc": SSRC, "kind": "audio", "codec": "opus", "payload_type": 111})),
            None,
        );
        assert_eq!(stream.status, 201, "{}", stream.text);
        let browser = http(
            api,
            "POST",
            &path,
            Some(&json!({"name": "web", "transport": "webrtc"})),
            None,
        );
        assert_eq!(browser.status, 201, "{}", browser.text);
        let web = &browser.json()["webrtc"];
        let args = json!({
            "whip": web["whip"], "whep": web["whep"], "token": web["token"], "sdes_ssrc": SSRC,
        })
        .to_string();

        let node = std::thread::spawn(move || {
            std::panic::catch_unwind(|| scenario("mixed", api, &[args]))
        });
        // 20 ms Opus frames (a valid "silence" TOC + frame), and whatever
        // the relay sends back, counted by SSRC once authenticated.
        let mut received = std::collections::HashMap::<u32, usize>::new();
        let mut seq = 0u16;
        let mut buf = [0u8; 2048];
        let until = Instant::now() + Duration::from_secs(60);
        while !node.is_finished() && Instant::now() < until {
            sdes.send_rtp(SSRC, seq, &[0xF8, 0xFF, 0xFE]);
            seq = seq.wrapping_add(1);
            let tick = Instant::now() + Duration::from_millis(20);
            while Instant::now() < tick {
                let Ok((n, _)) = sdes.socket.recv_from(&mut buf) else {
                    continue;
                };
                if n >= 12 && !(64..96).contains(&(buf[1] & 0x7f)) {
                    let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                    if sdes.recv.unprotect_rtp(&mut buf, n).is_ok() {
                        *received.entry(ssrc).or_default() += 1;
                    }
                }
            }
        }
        let outcome = node.join().expect("node thread");
        let (_, log) = daemon.stop();
        let text = match outcome {
            Ok(text) => text,
            Err(e) => {
                eprintln!("relay log:\n{log}");
                std::panic::resume_unwind(e);
            }
        };
        eprintln!("{text}\nSDES side received, by SSRC: {received:?}");
        let from_browser: usize = received
            .iter()
            .filter(|(ssrc, _)| **ssrc != SSRC)
            .map(|(_, n)| n)
            .sum();
        assert!(
            received.len() >= 2 && from_browser > 100,
            "the SDES participant should receive the browser's audio and video: {received:?}"
        );
    });
}

/// A WHEP viewer whose offer lists only VP8 (`setCodecPreferences`), in
/// a standard meeting where the real `ffmpeg` CLI publishes H.264 over
/// SDES-keyed SRTP: the offer's codecs are its receive preferences, so it
/// gets a VP8 rendition in its slot and decodes it (getStats: frames
/// decoded rise, codec video/VP8), and one transcode ran.
#[test]
fn a_whep_viewer_offering_only_vp8_decodes_a_rendition_of_an_h264_publisher() {
    if !browser_ready() {
        return;
    }
    in_netns(|| {
        let daemon = RunningDaemon::start("webrtc-codec", &loopback_config(""), &[]);
        let api = daemon.api;
        let owner = json!({"account": "test", "verified": false});
        let meeting = http(
            api,
            "POST",
            "/v1/meetings",
            Some(&json!({"mode": "standard", "owner": owner})),
            None,
        );
        assert_eq!(meeting.status, 201, "{}", meeting.text);
        let id = meeting.json()["id"].as_str().expect("id").to_owned();
        let path = format!("/v1/meetings/{id}/participants");
        let camera = http(
            api,
            "POST",
            &path,
            Some(&json!({"name": "camera", "srtp_profile": "AES_CM_128_HMAC_SHA1_80"})),
            None,
        );
        assert_eq!(camera.status, 201, "{}", camera.text);
        let camera = camera.json();
        const SSRC: u32 = 0x5eed_0002;
        let stream = http(
            api,
            "POST",
            &format!("{path}/{}/streams", camera["id"].as_str().expect("id")),
            Some(&json!({"ssrc": SSRC, "kind": "video", "codec": "H264", "payload_type": 96})),
            None,
        );
        assert_eq!(stream.status, 201, "{}", stream.text);
        let browser = http(
            api,
            "POST",
            &path,
            Some(&json!({"name": "web", "transport": "webrtc"})),
            None,
        );
        assert_eq!(browser.status, 201, "{}", browser.text);
        let web = &browser.json()["webrtc"];
        let args = json!({"whep": web["whep"], "token": web["token"], "codec": "VP8"}).to_string();
        // 40 s of 640x360 at 30 fps, GOP 1 s, in real time: longer than
        // the scenario, which ends it.
        let key = camera["media"]["client_to_relay"].as_str().expect("key");
        let port = daemon.media.port();
        let mut ffmpeg = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi"])
            .args(["-i", "testsrc2=size=640x360:rate=30", "-t", "40"])
            .args(["-pix_fmt", "yuv420p", "-g", "30", "-c:v", "libx264"])
            .args([
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
                "-b:v",
                "800k",
            ])
            .args([
                "-f",
                "rtp",
                "-payload_type",
                "96",
                "-ssrc",
                &SSRC.to_string(),
            ])
            .args(["-srtp_out_suite", "AES_CM_128_HMAC_SHA1_80"])
            .args(["-srtp_out_params", key])
            .arg(format!(
                "srtp://127.0.0.1:{port}?rtcpport={port}&pkt_size=1200"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("ffmpeg runs");
        let outcome = std::panic::catch_unwind(|| scenario("codec-view", api, &[args]));
        let _ = ffmpeg.kill();
        let _ = ffmpeg.wait();
        let metrics = http(api, "GET", "/metrics", None, None).text;
        let (_, log) = daemon.stop();
        let text = match outcome {
            Ok(text) => text,
            Err(e) => {
                eprintln!("relay log:\n{log}");
                std::panic::resume_unwind(e);
            }
        };
        eprintln!("{text}");
        let started = support::metric(&metrics, "sluice_transcode_started_total");
        assert_eq!(started, 1.0, "one transcode, for the viewer");
        let active = support::metric(&metrics, "sluice_transcode_active{encoder=\"libvpx\"}");
        assert_eq!(active, 1.0, "a VP8 rendition");
    });
}
