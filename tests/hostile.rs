//! The probes of issue #16 replayed on 127.0.0.1, each a regression test:
//! a SIP INVITE flood from one source while a caller from another joins,
//! the allow-list, stateless refusals, slow HTTP clients and connection
//! caps, the edge's JSON errors, `Cache-Control`, ids, bounds, and SIGHUP
//! under load (the binary itself). Everything bounded in count and time.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::config::Config;
use sluice::daemon::Daemon;
use support::{Endpoint, http, metric};

/// A daemon on free loopback ports; `extra` may hold a `[control]`
/// section of its own (it is merged with the listen address).
fn start(extra: &str) -> Daemon {
    let extra = if extra.contains("[control]\n") {
        extra.replacen("[control]\n", "[control]\nlisten = \"127.0.0.1:0\"\n", 1)
    } else {
        format!("[control]\nlisten = \"127.0.0.1:0\"\n{extra}")
    };
    let text =
        format!("[media]\nlisten = \"127.0.0.1:0\"\nworkers = 1\npin_cores = false\n\n{extra}");
    let config = Config::parse(&text, "test.toml").expect("test config parses");
    Daemon::start(&config).expect("daemon starts")
}

fn meeting(api: SocketAddr, id: &str) {
    let body = json!({"id": id, "mode": "standard", "owner": {"account": "ops"}});
    let r = http(api, "POST", "/v1/meetings", Some(&body), None);
    assert_eq!(r.status, 201, "{}", r.text);
}

fn metrics(api: SocketAddr) -> String {
    http(api, "GET", "/metrics", None, None).text
}

// ----- SIP -----

/// A hand-made SIP peer on its own loopback address.
struct Peer {
    socket: UdpSocket,
    local: SocketAddr,
    sip: SocketAddr,
}

impl Peer {
    fn on(ip: &str, sip: SocketAddr) -> Self {
        let socket = UdpSocket::bind((ip, 0)).expect("bind a loopback address");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let local = socket.local_addr().expect("addr");
        Self { socket, local, sip }
    }

    fn invite(&self, user: &str, call_id: &str) -> String {
        let (local, sip) = (self.local, self.sip);
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
            ip = local.ip()
        );
        format!(
            "INVITE sip:{user}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id};rport\r\n\
             From: <sip:pbx@{local}>;tag=t-{call_id}\r\nTo: <sip:{user}@{sip}>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:pbx@{local}>\r\nMax-Forwards: 70\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    }

    fn in_dialog(
        &self,
        method: &str,
        user: &str,
        call_id: &str,
        to_tag: &str,
        cseq: u32,
    ) -> String {
        let (local, sip) = (self.local, self.sip);
        format!(
            "{method} sip:{user}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-{method}-{cseq};rport\r\n\
             From: <sip:pbx@{local}>;tag=t-{call_id}\r\nTo: <sip:{user}@{sip}>;tag={to_tag}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    }

    fn send(&self, message: &str) {
        self.socket
            .send_to(message.as_bytes(), self.sip)
            .expect("send");
    }

    /// Everything that arrives within `within`.
    fn collect(&self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        got
    }

    /// The first final answer for `call_id`, within `within`.
    fn final_answer(&self, call_id: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 8192];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let status: u16 = text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if status >= 200 && text.contains(&format!("Call-ID: {call_id}\r\n")) {
                    return Some(text);
                }
            }
        }
        None
    }

    /// Calls `user` and completes the handshake (ACK); returns the To tag.
    /// The INVITE is retransmitted as a UA's Timer A does (every 500 ms
    /// here), for up to 8 s: under a flood the first may be dropped.
    fn join(&self, user: &str, call_id: &str) -> String {
        let invite = self.invite(user, call_id);
        let deadline = Instant::now() + Duration::from_secs(8);
        let answer = loop {
            self.send(&invite);
            if let Some(answer) = self.final_answer(call_id, Duration::from_millis(500)) {
                break answer;
            }
            assert!(Instant::now() < deadline, "no answer to the INVITE");
        };
        assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
        let tag = to_tag(&answer);
        self.send(&self.in_dialog("ACK", user, call_id, &tag, 1));
        tag
    }
}

fn to_tag(response: &str) -> String {
    response
        .lines()
        .find(|l| l.starts_with("To:"))
        .and_then(|l| l.split(";tag=").nth(1))
        .expect("a To tag")
        .trim()
        .to_owned()
}

#[test]
fn a_flood_of_invites_from_one_source_leaves_a_caller_from_another_joining() {
    let daemon = start("[sip]\nlisten = \"127.0.0.1:0\"\nmedia_threads = 1\n");
    let api = daemon.control_addr();
    let sip = daemon.sip_addr().expect("SIP on");
    meeting(api, "5550101");
    // 127.0.0.2 floods: INVITEs to the real meeting (each would be a call)
    // and to unknown meetings (each a 404), never an ACK.
    let flooder = Peer::on("127.0.0.2", sip);
    let started = Instant::now();
    for n in 0..3000 {
        let user = if n % 2 == 0 { "5550101" } else { "9999999" };
        flooder.send(&flooder.invite(user, &format!("flood-{n}")));
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The legitimate caller from 127.0.0.3 joins at once.
    let caller = Peer::on("127.0.0.3", sip);
    let tag = caller.join("5550101", "legit-1");
    let text = metrics(api);
    assert_eq!(
        metric(&text, "sluice_dialin_active_calls"),
        1.0 + held(&text)
    );
    // What the kernel did not drop from the full socket buffer was cut by
    // the rate (the burst is 40) or refused statelessly.
    assert!(
        metric(&text, "sluice_sip_edge_total{reason=\"rate-limited\"}") >= 100.0,
        "{text}"
    );
    assert!(
        metric(&text, "sluice_sip_edge_total{reason=\"stateless-refusal\"}") >= 1.0,
        "{text}"
    );
    // The flood got at most a bounded share of the table and few answers.
    let answers = flooder.collect(Duration::from_millis(700));
    assert!(
        answers.len() < 200,
        "{} answers to the flood",
        answers.len()
    );
    // 404s are stateless: none is ever retransmitted.
    let not_found: Vec<&String> = answers
        .iter()
        .filter(|a| a.starts_with("SIP/2.0 404"))
        .collect();
    let mut ids: Vec<&str> = not_found
        .iter()
        .filter_map(|a| a.lines().find(|l| l.starts_with("Call-ID:")))
        .collect();
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "a 404 was retransmitted");
    assert!(
        flooder
            .collect(Duration::from_millis(1200))
            .iter()
            .all(|a| !a.starts_with("SIP/2.0 404")),
        "404s came again after Timer G would have fired"
    );
    // The caller's call is up: BYE is answered 200.
    caller.send(&caller.in_dialog("BYE", "5550101", "legit-1", &tag, 2));
    let bye = caller
        .final_answer("legit-1", Duration::from_secs(3))
        .expect("an answer to BYE");
    assert!(bye.starts_with("SIP/2.0 200"), "{bye}");
    daemon.shutdown();
}

/// Flood calls the relay answered and still holds (at most the share).
fn held(text: &str) -> f64 {
    let held = metric(text, "sluice_dialin_active_calls") - 1.0;
    assert!(held <= 64.0, "the flood holds {held} calls");
    held
}

#[test]
fn sources_outside_the_allow_list_get_no_answer() {
    let daemon = start("[sip]\nlisten = \"127.0.0.1:0\"\nallow = [\"127.0.0.3/32\"]\n");
    let api = daemon.control_addr();
    let sip = daemon.sip_addr().expect("SIP on");
    meeting(api, "5550102");
    let stranger = Peer::on("127.0.0.2", sip);
    stranger.send(&stranger.invite("5550102", "stranger-1"));
    assert!(stranger.collect(Duration::from_millis(500)).is_empty());
    let trunk = Peer::on("127.0.0.3", sip);
    trunk.join("5550102", "trunk-1");
    let text = metrics(api);
    assert_eq!(
        metric(&text, "sluice_sip_edge_total{reason=\"not-allowed\"}"),
        1.0
    );
    daemon.shutdown();
}

#[test]
fn digest_auth_from_a_credentials_file_guards_the_trunk() {
    let dir = std::env::temp_dir().join(format!("sluice-digest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let users = dir.join("sip-users");
    std::fs::write(&users, "pbx:s3cret\n").expect("write");
    let daemon = start(&format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\nauth_file = {:?}\n",
        users.display().to_string()
    ));
    let api = daemon.control_addr();
    let sip = daemon.sip_addr().expect("SIP on");
    meeting(api, "5550103");
    let pbx = Peer::on("127.0.0.2", sip);
    pbx.send(&pbx.invite("5550103", "auth-1"));
    let challenge = pbx
        .final_answer("auth-1", Duration::from_secs(3))
        .expect("a challenge");
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let www = challenge
        .lines()
        .find_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .expect("WWW-Authenticate");
    assert!(www.contains("algorithm=SHA-256"), "{www}");
    let uri = format!("sip:5550103@{sip}");
    let auth = sluice::sip::client_authorization(www, "pbx", "s3cret", "INVITE", &uri)
        .expect("credentials");
    let invite = pbx.invite("5550103", "auth-2").replace(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\nAuthorization: {auth}\r\n"),
    );
    pbx.send(&invite);
    let answer = pbx
        .final_answer("auth-2", Duration::from_secs(5))
        .expect("an answer");
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    // The SDP answer takes the offered events 0-15 and no more.
    assert!(answer.contains("a=fmtp:101 0-15\r\n"), "{answer}");
    daemon.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

// ----- HTTP -----

fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("t");
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn body_of(response: &str) -> serde_json::Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}

#[test]
fn slow_clients_are_cut_off_after_the_header_timeout_while_others_are_served() {
    let daemon = start("[control]\nheader_timeout_secs = 1\n[sip]\nenabled = false\n");
    let api = daemon.control_addr();
    // 100 clients each send half a request and stall.
    let slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(api).expect("connect");
            s.write_all(b"GET /v1/meetings/x HTTP/1.1\r\nHost: a\r\nX-Slow: ")
                .expect("write");
            s.set_read_timeout(Some(Duration::from_secs(4))).expect("t");
            s
        })
        .collect();
    // Meanwhile a legitimate client gets answers.
    for _ in 0..5 {
        let r = http(api, "GET", "/healthz", None, None);
        assert_eq!(r.status, 200);
    }
    let started = Instant::now();
    for mut s in slow {
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
        assert_eq!(body_of(&out)["error"]["code"], "request_timeout");
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    daemon.shutdown();
}

#[test]
fn a_stalled_body_is_cut_off_after_the_idle_timeout() {
    let daemon = start("[control]\nidle_timeout_secs = 1\n[sip]\nenabled = false\n");
    let api = daemon.control_addr();
    let mut s = TcpStream::connect(api).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("t");
    s.write_all(
        b"POST /v1/meetings HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"mode\":",
    )
    .expect("write");
    let started = Instant::now();
    let mut out = Vec::new();
    let ended = s.read_to_end(&mut out);
    assert!(ended.is_ok(), "the relay closed the connection: {ended:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
    // No meeting was created from half a body.
    assert_eq!(
        metric(&metrics(api), "sluice_meetings{mode=\"standard\"}"),
        0.0,
        "half a body created something"
    );
    daemon.shutdown();
}

#[test]
fn connections_beyond_the_per_source_cap_get_503_and_the_token_is_checked_first() {
    let daemon = start(
        "[control]\nmax_connections = 50\nmax_connections_per_source = 5\n[sip]\nenabled = false\n",
    );
    let api = daemon.control_addr();
    let held: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(api).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let out = raw(api, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
    assert_eq!(body_of(&out)["error"]["code"], "too_many_connections");
    drop(held);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(http(api, "GET", "/healthz", None, None).status, 200);
    daemon.shutdown();

    // With a token, a request without it is refused on its head alone:
    // the body it announces is never awaited.
    let daemon = token_daemon();
    let api = daemon.control_addr();
    let mut s = TcpStream::connect(api).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
    s.write_all(b"POST /v1/meetings HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
        .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 401 "), "{out}");
    assert_eq!(body_of(&out)["error"]["code"], "unauthorized");
    daemon.shutdown();
}

fn token_daemon() -> Daemon {
    let dir = std::env::temp_dir().join(format!("sluice-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let token = dir.join("token");
    std::fs::write(&token, "t0ken\n").expect("write");
    start(&format!(
        "[control]\ntoken_file = {:?}\n[sip]\nenabled = false\n",
        token.display().to_string()
    ))
}

#[test]
fn long_uris_and_large_heads_get_json_errors() {
    let daemon = start("[sip]\nenabled = false\n");
    let api = daemon.control_addr();
    let long = format!(
        "GET /v1/meetings/{} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(70_000)
    );
    let out = raw(api, long.as_bytes());
    assert!(out.starts_with("HTTP/1.1 414 "), "{out}");
    assert_eq!(body_of(&out)["error"]["code"], "uri_too_long");
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(40_000)
    );
    let out = raw(api, big.as_bytes());
    assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
    assert_eq!(body_of(&out)["error"]["code"], "headers_too_large");
    // One request per connection: a second, pipelined request (here one
    // that the edge would refuse) is never served past the edge's checks;
    // the first is answered with Connection: close and the connection ends.
    let mut s = TcpStream::connect(api).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
    let second = format!(
        "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /v1/meetings/{} HTTP/1.1\r\nHost: a\r\n\r\n",
        "c".repeat(70_000)
    );
    let _ = s.write_all(second.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("connection: close"),
        "{out}"
    );
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    // A request that is not HTTP.
    let out = raw(api, b"\x16\x03\x01 hello\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    daemon.shutdown();
}

#[test]
fn ids_keys_and_bounds() {
    let daemon = start("[policy]\nmax_meetings = 3\n[sip]\nenabled = false\n");
    let api = daemon.control_addr();
    for id in ["%2e", "%2e%2e", ".hidden"] {
        let r = http(api, "GET", &format!("/v1/meetings/{id}"), None, None);
        assert_eq!(r.status, 400, "{id}: {}", r.text);
    }
    let r = http(
        api,
        "POST",
        "/v1/meetings",
        Some(&json!({"id": "..", "mode": "standard", "owner": {"account": "a"}})),
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text);
    // A 404 quotes a short prefix of the id, never the whole of it.
    let long = "z".repeat(64);
    let r = http(api, "GET", &format!("/v1/meetings/{long}"), None, None);
    assert_eq!(r.status, 404);
    assert!(r.text.len() < 200, "{}", r.text);
    // The answer carrying keys is never cached.
    meeting(api, "m1");
    let mut s = TcpStream::connect(api).expect("connect");
    let body = json!({"name": "alice"}).to_string();
    write!(
        s,
        "POST /v1/meetings/m1/participants HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    assert!(out.starts_with("HTTP/1.1 201 "), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("cache-control: no-store\r\n"),
        "{out}"
    );
    // Empty text the spec now refuses too.
    let r = http(
        api,
        "POST",
        "/v1/meetings",
        Some(&json!({"mode": "standard", "owner": {"account": ""}})),
        None,
    );
    assert_eq!(r.status, 400);
    // [policy] max_meetings.
    meeting(api, "m2");
    meeting(api, "m3");
    let r = http(
        api,
        "POST",
        "/v1/meetings",
        Some(&json!({"mode": "standard", "owner": {"account": "a"}})),
        None,
    );
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.error_code(), "too_many_meetings");
    let spec = http(api, "GET", "/v1/openapi.json", None, None).json();
    let account = &spec["components"]["schemas"]["Owner"]["properties"]["account"];
    assert_eq!(account["minLength"], 1);
    daemon.shutdown();
}

// ----- the binary: bounds at check time, SIGHUP under load -----

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

fn check_config(path: &std::path::Path) -> (bool, String) {
    let out = Command::new(SLUICE)
        .arg("check-config")
        .arg(path)
        .output()
        .expect("run check-config");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

#[test]
fn check_config_bounds_the_file_and_the_workers() {
    let (ok, message) = check_config(std::path::Path::new("/dev/zero"));
    assert!(!ok);
    assert!(message.contains("larger than 1048576 bytes"), "{message}");
    let dir = std::env::temp_dir().join(format!("sluice-bounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("workers.toml");
    std::fs::write(&path, "[media]\nworkers = 100000\n").expect("write");
    let (ok, message) = check_config(&path);
    assert!(!ok);
    assert!(
        message.contains(":2:1: [media] workers = 100000 is more than this machine runs"),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The daemon as systemd runs it, killed if a test fails early.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn config_text(max_per_meeting: u32) -> String {
    format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n[media]\nlisten = \"127.0.0.1:0\"\nworkers = 1\n\
         pin_cores = false\n[policy]\nmax_participants_per_meeting = {max_per_meeting}\n\
         [sip]\nlisten = \"127.0.0.1:0\"\nmedia_threads = 1\n[log]\nlevel = \"info\"\n"
    )
}

fn signal(child: &Running, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).expect("pid"));
    nix::sys::signal::kill(pid, signal).expect("signal");
}

#[test]
fn sighup_reloads_a_changed_policy_under_load_and_refuses_a_bad_config() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("sluice-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("sluice.toml");
    std::fs::write(&path, config_text(10)).expect("write");
    let mut child = Running(
        Command::new(SLUICE)
            .args(["run", "--config"])
            .arg(&path)
            .env_remove("SLUICE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_line = |what: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {what:?}"),
            }
        }
    };
    let banner = wait_line("control API on http://");
    let field = |after: &str| -> SocketAddr {
        banner
            .split(after)
            .nth(1)
            .and_then(|rest| rest.split([',', ' ', ')']).next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{after} in {banner}"))
    };
    let api = field("control API on http://");
    let sip = field("SIP dial-in on udp ");

    // A meeting with two web participants and a phone caller.
    meeting(api, "5550200");
    let admit = |name: &str| {
        let r = http(
            api,
            "POST",
            "/v1/meetings/5550200/participants",
            Some(&json!({"name": name})),
            None,
        );
        (r.status, r)
    };
    let (status, a) = admit("alice");
    assert_eq!(status, 201);
    let (status, b) = admit("bob");
    assert_eq!(status, 201);
    let mut alice = Endpoint::from_admission(&a.json());
    let mut bob = Endpoint::from_admission(&b.json());
    let stream = json!({"ssrc": 0x0A11CE, "kind": "audio", "codec": "opus", "payload_type": 111});
    let r = http(
        api,
        "POST",
        &format!("/v1/meetings/5550200/participants/{}/streams", alice.id),
        Some(&stream),
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = http(
        api,
        "POST",
        &format!("/v1/meetings/5550200/participants/{}/streams", bob.id),
        Some(&json!({"ssrc": 0x0B0B, "kind": "audio", "codec": "opus", "payload_type": 111})),
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let phone = Peer::on("127.0.0.1", sip);
    let tag = phone.join("5550200", "hup-call");
    // Both web participants' addresses are learned from a first packet.
    alice.send_rtp(0x0A11CE, 0, b"latch");
    bob.send_rtp(0x0B0B, 0, b"latch");
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&metrics(api), "sluice_latches_total") < 2.0 {
        assert!(Instant::now() < deadline, "no latches");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = bob.drain();
    // Bob reads while alice sends, so his own socket buffer drops nothing.
    let receiver = std::thread::spawn(move || {
        let mut seen = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut buf = [0u8; 2048];
        while seen.len() < 1500 && Instant::now() < deadline {
            let Ok((len, _)) = bob.socket.recv_from(&mut buf) else {
                continue;
            };
            let mut d = buf[..len].to_vec();
            if support::is_rtcp(&d) {
                continue;
            }
            if bob.recv.unprotect_rtp(&mut d, len).is_ok()
                && u32::from_be_bytes([d[8], d[9], d[10], d[11]]) == 0x0A11CE
            {
                seen.insert(u16::from_be_bytes([d[12], d[13]]));
            }
        }
        seen.len()
    });

    // Alice streams 1,500 packets at ~1 ms while the config is reloaded
    // twice: once changed, once broken.
    let sender = std::thread::spawn(move || {
        for seq in 1..=1500u16 {
            alice.send_rtp(0x0A11CE, seq, &seq.to_be_bytes());
            std::thread::sleep(Duration::from_micros(900));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&path, config_text(3)).expect("write");
    signal(&child, nix::sys::signal::Signal::SIGHUP);
    let reloaded = wait_line("config reloaded");
    assert!(
        reloaded.contains("[policy] max_participants_per_meeting"),
        "{reloaded}"
    );
    std::fs::write(&path, "[media]\nworker = 1\n").expect("write");
    let (ok, expected) = check_config(&path);
    assert!(!ok);
    let expected = expected.trim_start_matches("sluice: ").to_owned();
    signal(&child, nix::sys::signal::Signal::SIGHUP);
    let refused = wait_line("reload refused");
    assert!(refused.contains(&expected), "{refused}\nvs {expected}");
    sender.join().expect("sender");

    // Every packet arrived at bob.
    let seen = receiver.join().expect("receiver");
    assert_eq!(seen, 1500, "packets lost across the reloads");

    // The reloaded policy (3 per meeting) holds, not the broken file's.
    let (status, full) = admit("carol");
    assert_eq!(status, 409, "{}", full.text);
    assert_eq!(full.error_code(), "meeting_full");
    // The call survived both reloads.
    assert_eq!(metric(&metrics(api), "sluice_dialin_active_calls"), 1.0);
    phone.send(&phone.in_dialog("BYE", "5550200", "hup-call", &tag, 2));
    let bye = phone
        .final_answer("hup-call", Duration::from_secs(3))
        .expect("an answer to BYE");
    assert!(bye.starts_with("SIP/2.0 200"), "{bye}");

    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_reload_changes_the_sip_allow_list_and_the_api_token_at_once() {
    let dir = std::env::temp_dir().join(format!("sluice-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let token = dir.join("token");
    std::fs::write(&token, "first\n").expect("write");
    let text = |allow: &str| {
        format!(
            "[control]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n[media]\nlisten = \"127.0.0.1:0\"\n\
             workers = 1\npin_cores = false\n[sip]\nlisten = \"127.0.0.1:0\"\nallow = [\"{allow}\"]\n",
            token.display().to_string()
        )
    };
    let parse = |t: &str| Config::parse(t, "test.toml").expect("parses");
    let mut daemon = Daemon::start(&parse(&text("127.0.0.3/32"))).expect("starts");
    let api = daemon.control_addr();
    let sip = daemon.sip_addr().expect("SIP on");
    let options = |peer: &Peer, n: u32| {
        let local = peer.local;
        format!(
            "OPTIONS sip:meet@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-o{n};rport\r\n\
             From: <sip:probe@{local}>;tag=o{n}\r\nTo: <sip:meet@{sip}>\r\nCall-ID: opt-{n}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let peer = Peer::on("127.0.0.2", sip);
    peer.send(&options(&peer, 1));
    assert!(peer.collect(Duration::from_millis(300)).is_empty());
    assert_eq!(
        http(api, "GET", "/metrics", None, Some("first")).status,
        200
    );

    std::fs::write(&token, "second\n").expect("write");
    let report = daemon
        .reload(&parse(&text("127.0.0.2/32")))
        .expect("reload");
    assert_eq!(report.applied, ["[sip] allow", "[control] API token"]);
    assert!(report.restart.is_empty());
    let mut answered = None;
    for n in 2..12 {
        peer.send(&options(&peer, n));
        if let Some(a) = peer.final_answer(&format!("opt-{n}"), Duration::from_millis(200)) {
            answered = Some(a);
            break;
        }
    }
    assert!(
        answered
            .expect("OPTIONS answered after the reload")
            .starts_with("SIP/2.0 200")
    );
    assert_eq!(
        http(api, "GET", "/metrics", None, Some("first")).status,
        401
    );
    assert_eq!(
        http(api, "GET", "/metrics", None, Some("second")).status,
        200
    );

    // A token file that vanished refuses the whole reload.
    std::fs::remove_file(&token).expect("remove");
    assert!(daemon.reload(&parse(&text("127.0.0.3/32"))).is_err());
    assert_eq!(
        http(api, "GET", "/metrics", None, Some("second")).status,
        200
    );
    peer.send(&options(&peer, 20));
    assert!(
        peer.final_answer("opt-20", Duration::from_secs(1))
            .is_some()
    );
    daemon.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}
