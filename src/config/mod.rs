//! The daemon's TOML configuration (`/etc/sluice/sluice.toml`).
//!
//! [`Config::parse`] reads the text, refuses unknown keys and values with one
//! sentence naming the file, line, column and fix ([`ConfigError`]), then
//! checks what only makes sense as a whole (a control API off loopback needs
//! a token). Every key has a default; the commented file with exactly those
//! defaults ships as `systemd/sluice.toml` and is embedded here
//! ([`Config::default_embedded`]). Secrets never live in this file: the API
//! token comes from `token_file` or an environment variable
//! ([`Config::api_token`]).

mod cluster;
mod error;
mod transcode;
mod trunk;
mod webrtc;

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

pub use cluster::{ClusterConfig, ClusterSettings};
pub use error::{ConfigError, Location};
pub use transcode::TranscodeConfig;
pub use trunk::{TrunkConfig, TrunkSrtp, TrunkTransport, is_sip_uri, load_account};
pub use webrtc::WebrtcConfig;

use crate::policy::Policy;

/// The default config, as shipped in `systemd/sluice.toml`.
pub const EMBEDDED: &str = include_str!("../../systemd/sluice.toml");

/// The largest config file (or token file) read; anything longer is refused
/// unread, so `check-config /dev/zero` ends at once.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[control]`: the HTTP control API.
    pub control: ControlConfig,
    /// `[media]`: the packet workers.
    pub media: MediaConfig,
    /// `[crypto]`: the AES-GCM backend.
    pub crypto: CryptoConfig,
    /// `[policy]`: admission rules.
    pub policy: Policy,
    /// `[sip]`: telephone dial-in.
    pub sip: SipConfig,
    /// `[log]`: how the daemon writes its log.
    pub log: LogConfig,
    /// `[transcode]`: video renditions.
    pub transcode: TranscodeConfig,
    /// `[webrtc]`: the DTLS certificate browsers see.
    pub webrtc: WebrtcConfig,
    /// `[cluster]`: other nodes of the rack, through Redis; alone without it.
    pub cluster: Option<ClusterConfig>,
}

/// `[log]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Plain text lines or one JSON object per line.
    pub format: LogFormat,
    /// The least severe level written (`SLUICE_LOG` overrides it).
    pub level: LogLevel,
}

/// `[log] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event; colour only on a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[log] level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// What an operator wants in the journal.
    #[default]
    Info,
    /// Per-request detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The filter directive (`tracing_subscriber::EnvFilter` syntax).
    pub fn name(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// `[control]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Where the API listens.
    pub listen: SocketAddr,
    /// A file holding the bearer token (trimmed).
    pub token_file: Option<PathBuf>,
    /// The environment variable holding the token when there is no file.
    pub token_env: String,
    /// A client must send a request's whole head within this long (408).
    pub header_timeout_secs: u64,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout_secs: u64,
    /// Connections open at once, all sources together.
    pub max_connections: usize,
    /// Connections open at once from one source IP.
    pub max_connections_per_source: usize,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 7480),
            token_file: None,
            token_env: "SLUICE_API_TOKEN".to_owned(),
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 1024,
            max_connections_per_source: 128,
        }
    }
}

impl ControlConfig {
    /// The TCP edge limits these keys ask for.
    pub fn edge_limits(&self) -> crate::control::EdgeLimits {
        crate::control::EdgeLimits {
            header_timeout: std::time::Duration::from_secs(self.header_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs),
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
        }
    }

    fn validate(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let range = |key: &'static str, value: u64, low: u64, high: u64, words: &'static str| {
            if (low..=high).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange {
                    at: Location::of_key(text, origin, "control", key),
                    section: "control",
                    key,
                    value: value.to_string(),
                    range: words,
                })
            }
        };
        range(
            "header_timeout_secs",
            self.header_timeout_secs,
            1,
            300,
            "1 to 300",
        )?;
        range(
            "idle_timeout_secs",
            self.idle_timeout_secs,
            1,
            3600,
            "1 to 3600",
        )?;
        range(
            "max_connections",
            self.max_connections as u64,
            1,
            65_536,
            "1 to 65536",
        )?;
        if self.max_connections_per_source == 0
            || self.max_connections_per_source > self.max_connections
        {
            return Err(ConfigError::OutOfRange {
                at: Location::of_key(text, origin, "control", "max_connections_per_source"),
                section: "control",
                key: "max_connections_per_source",
                value: self.max_connections_per_source.to_string(),
                range: "1 to max_connections",
            });
        }
        Ok(())
    }
}

/// `[media]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// The UDP address the workers listen on.
    pub listen: SocketAddr,
    /// The IP handed out to participants; the listen IP when absent.
    pub advertise: Option<IpAddr>,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Which socket API the workers use.
    pub io: IoChoice,
    /// Whether each worker is pinned to its own core.
    pub pin_cores: bool,
    /// Whether runs of equal-sized datagrams to one receiver go out as one
    /// UDP GSO send where the kernel offers it (bench/README.md, #12).
    pub gso: bool,
    /// Whether io_uring workers receive with one multishot request into a
    /// registered buffer ring (Linux ≥ 6.0) instead of `recvmmsg`; off
    /// until a benchmark resolves a difference (bench/README.md, #12).
    pub multishot: bool,
    /// Whether io_uring workers register their socket with their ring and
    /// name it by index in each request (`IORING_REGISTER_FILES`); off
    /// until a benchmark shows it faster (bench/README.md, #12).
    pub fixed_files: bool,
    /// The scheduling class of every thread that is not a packet worker
    /// and can burn CPU in a burst (the control API, the WebRTC handshake
    /// thread, SIP signalling, the cluster cascade): below the workers, so
    /// joins never delay media (`crate::net::priority`, measured in
    /// bench/README.md).
    pub background: crate::net::priority::Background,
    /// How the packet workers are scheduled: `realtime` (`SCHED_FIFO` at
    /// priority 1, where the process may) or `normal`
    /// (`crate::net::priority::WorkerClass`, measured in bench/README.md).
    pub worker_class: crate::net::priority::WorkerClass,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 40000),
            advertise: None,
            workers: 0,
            io: IoChoice::Auto,
            pin_cores: true,
            gso: true,
            multishot: false,
            fixed_files: false,
            background: crate::net::priority::Background::default(),
            worker_class: crate::net::priority::WorkerClass::default(),
        }
    }
}

impl MediaConfig {
    /// The address participants send media to: the advertised IP (or the
    /// listen IP) and the listen port.
    pub fn public_address(&self) -> SocketAddr {
        SocketAddr::new(
            self.advertise.unwrap_or(self.listen.ip()),
            self.listen.port(),
        )
    }
}

impl MediaConfig {
    /// `workers` against this machine: at most four per core (more only
    /// time-share the cores), and few enough that each worker's socket,
    /// ring and eventfd fit the open-file limit with room for calls.
    fn validate(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let fd_limit = open_file_limit();
        let max = workers_limit(cores, fd_limit);
        if self.workers > max {
            return Err(ConfigError::TooManyWorkers {
                at: Location::of_key(text, origin, "media", "workers"),
                workers: self.workers,
                max,
                cores,
                fd_limit,
            });
        }
        Ok(())
    }
}

/// File descriptors one packet worker holds (socket, io_uring, eventfd and
/// headroom), for [`workers_limit`].
const FDS_PER_WORKER: u64 = 8;
/// File descriptors kept for everything else (API connections, SIP, calls).
const FDS_RESERVED: u64 = 256;

/// The most workers this machine takes: four per core, bounded by what the
/// open-file limit leaves after [`FDS_RESERVED`].
pub(crate) fn workers_limit(cores: usize, fd_limit: u64) -> usize {
    let by_fds = fd_limit.saturating_sub(FDS_RESERVED) / FDS_PER_WORKER;
    cores
        .saturating_mul(4)
        .min(usize::try_from(by_fds).unwrap_or(usize::MAX))
}

/// The soft `RLIMIT_NOFILE` of this process (`u64::MAX` when unlimited).
fn open_file_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft)
}

/// Why [`read_bounded`] failed.
enum BoundedReadError {
    TooLarge,
    Io(String),
}

/// Reads a UTF-8 file of at most [`MAX_FILE_BYTES`], never reading more
/// than one byte past the limit (so `/dev/zero` costs nothing).
fn read_bounded(path: &Path) -> Result<String, BoundedReadError> {
    let file = std::fs::File::open(path).map_err(|e| BoundedReadError::Io(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| BoundedReadError::Io(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(BoundedReadError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| BoundedReadError::Io("it is not UTF-8 text".to_owned()))
}

/// `[media] io`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoChoice {
    /// io_uring where the kernel allows it, recvmmsg otherwise.
    #[default]
    Auto,
    /// io_uring only.
    IoUring,
    /// recvmmsg/sendmmsg only.
    Recvmmsg,
}

/// `[sip]`: the SIP user agent server that bridges phone callers in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Whether dial-in runs at all.
    pub enabled: bool,
    /// The UDP address SIP listens on (a PBX or SBC sends INVITEs here).
    pub listen: SocketAddr,
    /// The IP callers send RTP to; the SIP listen IP when absent.
    pub media_ip: Option<IpAddr>,
    /// The Request-URI user that reaches the voice menu (`sip:meet@host`);
    /// any other user is taken as a meeting id.
    pub ivr_user: String,
    /// Media pool threads (decode, mix, encode); 0 means one per core.
    pub media_threads: usize,
    /// Calls at most on this node; more are answered 503.
    pub max_calls: usize,
    /// A call from which no RTP arrives for this long is hung up.
    pub media_timeout_secs: u64,
    /// How long a call rings (180) before it is answered.
    pub answer_delay_ms: u64,
    /// How long the voice menu waits for the next digit.
    pub digit_timeout_secs: u64,
    /// Tries at entering a meeting number or passcode before hanging up.
    pub attempts: u32,
    /// The Opus bitrate of the caller's stream into the meeting.
    pub opus_bitrate: u32,
    /// The Opus encoder complexity, 0 (cheapest) to 10.
    pub opus_complexity: u8,
    /// The RTP header extension id (RFC 6464 audio level) meeting clients
    /// use; the bridge mixes the loudest speakers by it, by energy without it,
    /// and writes its callers' levels under it, and WHEP receive slots rank
    /// SDES-keyed publishers (callers included) by it.
    pub audio_level_extension: u8,
    /// Whether a silent caller's voice stream pauses (DTX-style): after
    /// 200 ms below -55 dBov only one Opus frame every 400 ms is encoded
    /// and sent, until the caller speaks again.
    pub silence_suppression: bool,
    /// The networks SIP requests are taken from (the trunk's addresses);
    /// anything else is dropped unanswered and counted.
    pub allow: Vec<IpNet>,
    /// New INVITEs one source IP may send per second (a token bucket
    /// refilled at this rate); more are dropped unanswered and counted.
    pub invite_rate: u32,
    /// The bucket's depth: INVITEs one source may send in a burst.
    pub invite_burst: u32,
    /// Calls from one source IP not yet confirmed by an ACK, at most (its
    /// share of the dialog table); more are answered 503 without state.
    pub max_pending_per_source: usize,
    /// A file of `user:password` lines (one trunk account a line): when
    /// set, every INVITE must carry RFC 8760 / RFC 7616 digest credentials
    /// (SHA-256) of one of them.
    pub auth_file: Option<PathBuf>,
    /// The digest realm (RFC 7616 §3.3).
    pub auth_realm: String,
    /// Where SIP over TCP listens (RFC 3261 §18); off when absent.
    pub listen_tcp: Option<SocketAddr>,
    /// Where SIP over TLS listens (RFC 3261 §18, `sips:` per RFC 5630);
    /// off when absent. Needs `tls_cert` and `tls_key`.
    pub listen_tls: Option<SocketAddr>,
    /// The PEM certificate chain SIP over TLS presents.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Whether a call over TLS must offer SRTP (SDES): plain RTP next to
    /// encrypted signalling would leak the audio. On by default.
    pub tls_require_srtp: bool,
    /// TCP and TLS connections held at once, at most; more are closed at
    /// accept.
    pub max_connections: usize,
    /// TCP and TLS connections one source IP may hold at once.
    pub max_connections_per_source: usize,
    /// A connection that carries nothing (not even a keep-alive) for this
    /// long is closed; a TLS handshake must finish within 10 s.
    pub connection_idle_secs: u64,
    /// `[sip.trunk]`: where dial-out calls go; no dial-out without it.
    pub trunk: Option<TrunkConfig>,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 5060),
            media_ip: None,
            ivr_user: "meet".to_owned(),
            media_threads: 0,
            max_calls: 1000,
            media_timeout_secs: 30,
            answer_delay_ms: 0,
            digit_timeout_secs: 10,
            attempts: 3,
            opus_bitrate: 24_000,
            opus_complexity: 1,
            audio_level_extension: 1,
            silence_suppression: true,
            allow: vec![
                // Prefix lengths 8 (≤ 32) and 128 (≤ 128) are valid.
                IpNet::new(Ipv4Addr::new(127, 0, 0, 0).into(), 8).expect("a valid prefix"),
                IpNet::new(std::net::Ipv6Addr::LOCALHOST.into(), 128).expect("a valid prefix"),
            ],
            invite_rate: 20,
            invite_burst: 40,
            max_pending_per_source: 64,
            auth_file: None,
            auth_realm: "sluice".to_owned(),
            listen_tcp: None,
            listen_tls: None,
            tls_cert: None,
            tls_key: None,
            tls_require_srtp: true,
            max_connections: 512,
            max_connections_per_source: 32,
            connection_idle_secs: 300,
            trunk: None,
        }
    }
}

impl SipConfig {
    fn validate(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let out_of_range =
            |key: &'static str, value: String, range: &'static str| ConfigError::OutOfRange {
                at: Location::of_key(text, origin, "sip", key),
                section: "sip",
                key,
                value,
                range,
            };
        let checks: [(&'static str, u64, u64, u64, &'static str); 7] = [
            (
                "answer_delay_ms",
                self.answer_delay_ms,
                0,
                30_000,
                "0 to 30000",
            ),
            (
                "opus_complexity",
                self.opus_complexity.into(),
                0,
                10,
                "0 to 10",
            ),
            (
                "opus_bitrate",
                self.opus_bitrate.into(),
                6_000,
                510_000,
                "6000 to 510000",
            ),
            (
                "audio_level_extension",
                self.audio_level_extension.into(),
                1,
                14,
                "1 to 14",
            ),
            ("attempts", self.attempts.into(), 1, 10, "1 to 10"),
            (
                "digit_timeout_secs",
                self.digit_timeout_secs,
                1,
                300,
                "1 to 300",
            ),
            (
                "media_timeout_secs",
                self.media_timeout_secs,
                1,
                86_400,
                "1 to 86400",
            ),
        ];
        for (key, value, low, high, range) in checks {
            if !(low..=high).contains(&value) {
                return Err(out_of_range(key, value.to_string(), range));
            }
        }
        if self.max_calls == 0 {
            return Err(out_of_range("max_calls", "0".to_owned(), "1 or more"));
        }
        if !(1..=10_000).contains(&self.invite_rate) {
            return Err(out_of_range(
                "invite_rate",
                self.invite_rate.to_string(),
                "1 to 10000",
            ));
        }
        if self.invite_burst < 1 || self.invite_burst > 100_000 {
            return Err(out_of_range(
                "invite_burst",
                self.invite_burst.to_string(),
                "1 to 100000",
            ));
        }
        if !(1..=crate::sip::MAX_DIALOGS).contains(&self.max_pending_per_source) {
            return Err(out_of_range(
                "max_pending_per_source",
                self.max_pending_per_source.to_string(),
                "1 to 10000",
            ));
        }
        if self.auth_realm.is_empty()
            || self.auth_realm.len() > 64
            || !self
                .auth_realm
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(out_of_range(
                "auth_realm",
                format!("{:?}", self.auth_realm),
                "1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        if let Some(path) = &self.auth_file {
            crate::sip::Credentials::load(path).map_err(|reason| ConfigError::AuthFile {
                path: path.clone(),
                reason,
            })?;
        }
        if !(1..=100_000).contains(&self.max_connections) {
            return Err(out_of_range(
                "max_connections",
                self.max_connections.to_string(),
                "1 to 100000",
            ));
        }
        if !(1..=self.max_connections).contains(&self.max_connections_per_source) {
            return Err(out_of_range(
                "max_connections_per_source",
                self.max_connections_per_source.to_string(),
                "1 to max_connections",
            ));
        }
        if !(10..=86_400).contains(&self.connection_idle_secs) {
            return Err(out_of_range(
                "connection_idle_secs",
                self.connection_idle_secs.to_string(),
                "10 to 86400",
            ));
        }
        if self.listen_tls.is_some() {
            crate::dialin::server_tls(self.tls_cert.as_deref(), self.tls_key.as_deref())
                .map_err(|reason| ConfigError::SipTls { reason })?;
        }
        if self.ivr_user.is_empty()
            || !self
                .ivr_user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(out_of_range(
                "ivr_user",
                format!("{:?}", self.ivr_user),
                "letters, digits, '-', '_' or '.'",
            ));
        }
        if self.media_ip().is_unspecified() {
            let key = if self.media_ip.is_some() {
                "media_ip"
            } else {
                "listen"
            };
            return Err(out_of_range(
                key,
                format!("\"{}\"", self.media_ip()),
                "a specific IP callers can reach (set media_ip when SIP listens on all addresses)",
            ));
        }
        if let Some(trunk) = &self.trunk {
            trunk.check().map_err(|reason| ConfigError::Trunk {
                at: Location::of_section(text, origin, "sip.trunk"),
                reason,
            })?;
        }
        Ok(())
    }

    /// The IP callers are told to send RTP to.
    pub fn media_ip(&self) -> IpAddr {
        self.media_ip.unwrap_or(self.listen.ip())
    }
}

/// `[crypto]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CryptoConfig {
    /// Which AES-GCM backend to use.
    pub backend: CryptoChoice,
    /// When batches may go to a GPU.
    pub gpu: GpuChoice,
}

/// `[crypto] gpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuChoice {
    /// Probe for a GPU at start-up, calibrate, and send it the batches
    /// above the crossover it measured; CPU only when there is none or it
    /// never wins.
    #[default]
    Auto,
    /// Never use a GPU.
    Off,
    /// Every batch on the first OpenCL device (any kind); refuse to start
    /// without one.
    Always,
}

/// `[crypto] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CryptoChoice {
    /// The fastest backend measured on this machine.
    #[default]
    Auto,
    /// `ring`.
    Ring,
    /// The RustCrypto `aes-gcm` crate.
    AesGcm,
}

impl Config {
    /// The shipped defaults, parsed from the embedded `systemd/sluice.toml`.
    pub fn default_embedded() -> Self {
        // The embedded file is a constant; a test parses it and compares it
        // with `Config::default()`, so this cannot fail in a built binary.
        Self::parse(EMBEDDED, "sluice.toml (built in)").expect("the embedded config is valid")
    }

    /// Reads and parses the file at `path`.
    /// Files over [`MAX_FILE_BYTES`] are refused unread.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_bounded(path).map_err(|e| match e {
            BoundedReadError::TooLarge => ConfigError::TooLarge {
                path: path.to_owned(),
                limit: MAX_FILE_BYTES,
            },
            BoundedReadError::Io(reason) => ConfigError::Unreadable {
                path: path.to_owned(),
                reason,
            },
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses `text`; `origin` names it in errors (usually the file name).
    /// The token source is resolved from the process environment.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::parse_with_env(text, origin, &|name| std::env::var(name).ok())
    }

    /// [`Config::parse`], reading environment variables through `env`.
    pub fn parse_with_env(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        // Syntax first, so a schema error is never reported for a broken file.
        if let Err(e) = text.parse::<toml::Table>() {
            return Err(ConfigError::from_toml(&e, text, origin));
        }
        let config: Self =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(&e, text, origin))?;
        config.validate(text, origin, env)?;
        Ok(config)
    }

    fn validate(
        &self,
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if !self.control.listen.ip().is_loopback() && self.api_token_with(env)?.is_none() {
            return Err(ConfigError::ControlExposed {
                at: Location::of_key(text, origin, "control", "listen"),
                listen: self.control.listen,
                token_env: self.control.token_env.clone(),
            });
        }
        let public = self.media.public_address().ip();
        if public.is_unspecified() {
            let key = if self.media.advertise.is_some() {
                "advertise"
            } else {
                "listen"
            };
            return Err(ConfigError::UnspecifiedMediaAddress {
                at: Location::of_key(text, origin, "media", key),
                ip: public,
            });
        }
        self.control.validate(text, origin)?;
        self.media.validate(text, origin)?;
        self.policy_validate(text, origin)?;
        self.sip.validate(text, origin)?;
        self.transcode.validate(text, origin)?;
        self.webrtc.validate()?;
        self.cluster_settings_in(text, origin).map(drop)
    }

    fn policy_validate(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        if self.policy.max_meetings == 0 {
            return Err(ConfigError::OutOfRange {
                at: Location::of_key(text, origin, "policy", "max_meetings"),
                section: "policy",
                key: "max_meetings",
                value: "0".to_owned(),
                range: "1 or more",
            });
        }
        Ok(())
    }

    /// The resolved `[cluster]` section; `None` when the node runs alone.
    pub fn cluster_settings(&self) -> Result<Option<ClusterSettings>, ConfigError> {
        self.cluster_settings_in("", "sluice.toml")
    }

    fn cluster_settings_in(
        &self,
        text: &str,
        origin: &str,
    ) -> Result<Option<ClusterSettings>, ConfigError> {
        self.cluster
            .as_ref()
            .map(|c| {
                c.settle(
                    text,
                    origin,
                    self.control.listen,
                    self.media.public_address(),
                )
            })
            .transpose()
    }

    /// The bearer token guarding the control API: the trimmed contents of
    /// `token_file` if set, else the `token_env` environment variable, else
    /// none. An empty variable counts as unset; an empty file is an error.
    pub fn api_token(&self) -> Result<Option<String>, ConfigError> {
        self.api_token_with(&|name| std::env::var(name).ok())
    }

    fn api_token_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, ConfigError> {
        if let Some(path) = &self.control.token_file {
            let text = read_bounded(path).map_err(|e| ConfigError::TokenFile {
                path: path.clone(),
                reason: match e {
                    BoundedReadError::TooLarge => {
                        format!("the file is larger than {MAX_FILE_BYTES} bytes")
                    }
                    BoundedReadError::Io(reason) => reason,
                },
            })?;
            let token = text.trim();
            if token.is_empty() {
                return Err(ConfigError::TokenFile {
                    path: path.clone(),
                    reason: "the file is empty".to_owned(),
                });
            }
            return Ok(Some(token.to_owned()));
        }
        Ok(env(&self.control.token_env)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::E2eePolicy;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_with_env(text, "sluice.toml", &no_env)
    }

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("sluice-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn sip_tls_needs_a_usable_certificate_and_key() {
        let e = parse("[sip]\nlisten_tls = \"127.0.0.1:0\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls_cert and tls_key are both needed"), "{e}");
        assert!(e.contains("set [sip] tls_cert and tls_key"), "{e}");
        let dir = std::env::temp_dir().join(format!("sluice-tls-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let text = format!(
            "[sip]\nlisten_tls = \"127.0.0.1:0\"\ntls_cert = \"{0}\"\ntls_key = \"{0}\"\n",
            junk.display()
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("holds no certificate"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
        let e = parse("[sip]\nmax_connections_per_source = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_connections_per_source = 0"), "{e}");
    }

    #[test]
    fn sip_values_out_of_range_name_key_line_and_range() {
        let e = parse("[sip]\nopus_complexity = 11\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "sluice.toml:2:1: [sip] opus_complexity = 11 is out of range; use 0 to 10"
        );
        let e = parse("[sip]\naudio_level_extension = 15\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("audio_level_extension = 15") && e.contains("1 to 14"),
            "{e}"
        );
        let e = parse("[sip]\nlisten = \"0.0.0.0:5060\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("sluice.toml:2:") && e.contains("set media_ip"),
            "{e}"
        );
        let ok = parse("[sip]\nlisten = \"0.0.0.0:5060\"\nmedia_ip = \"192.0.2.1\"\n").unwrap();
        assert_eq!(ok.sip.media_ip(), "192.0.2.1".parse::<IpAddr>().unwrap());
        let e = parse("[sip]\nivr_user = \"a b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ivr_user"), "{e}");
        let e = parse("[sip]\nmax_calls = 0\n").unwrap_err().to_string();
        assert!(e.contains("max_calls = 0"), "{e}");
    }

    #[test]
    fn the_embedded_file_is_exactly_the_defaults() {
        assert_eq!(Config::default_embedded(), Config::default());
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(
            parse("[log]\nformat = \"json\"\nlevel = \"debug\"\n")
                .unwrap()
                .log,
            LogConfig {
                format: LogFormat::Json,
                level: LogLevel::Debug
            }
        );
        let e = parse("[log]\nformat = \"xml\"\n").unwrap_err().to_string();
        assert!(e.contains("sluice.toml:2:") && e.contains("xml"), "{e}");
        let c = Config::default();
        assert_eq!(c.control.listen, "127.0.0.1:7480".parse().unwrap());
        assert_eq!(c.media.public_address(), "127.0.0.1:40000".parse().unwrap());
        assert_eq!(c.policy.e2ee, E2eePolicy::VerifiedOnly);
        assert_eq!(c.policy.max_participants_per_meeting, 100);
        assert_eq!(c.policy.max_participants_per_node, 5000);
        assert!(c.media.pin_cores);
        assert!(c.media.gso);
        assert!(!c.media.multishot);
        assert!(!c.media.fixed_files);
    }

    #[test]
    fn every_key_can_be_set() {
        let text = r#"
[control]
listen = "127.0.0.1:9000"
token_file = "/etc/sluice/token"
token_env = "OTHER"

[media]
listen = "0.0.0.0:50000"
advertise = "203.0.113.7"
workers = 4
io = "io_uring"
pin_cores = false
gso = false
multishot = true
fixed_files = true

[crypto]
backend = "aes-gcm"
gpu = "off"

[policy]
e2ee = "all"
max_participants_per_meeting = 10
max_participants_per_node = 20
max_worker_busy = 0.7
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.policy.max_worker_busy.get(), 0.7);
        assert_eq!(
            c.control.token_file,
            Some(PathBuf::from("/etc/sluice/token"))
        );
        assert_eq!(c.control.token_env, "OTHER");
        assert_eq!(c.media.workers, 4);
        assert_eq!(c.media.io, IoChoice::IoUring);
        assert!(!c.media.gso);
        assert!(c.media.multishot);
        assert!(c.media.fixed_files);
        assert_eq!(c.crypto.backend, CryptoChoice::AesGcm);
        assert_eq!(c.crypto.gpu, GpuChoice::Off);
        assert_eq!(c.policy.e2ee, E2eePolicy::All);
        assert_eq!(
            c.media.public_address(),
            "203.0.113.7:50000".parse().unwrap()
        );
        let c = parse("[media]\nio = \"recvmmsg\"\n[crypto]\nbackend = \"ring\"\n").unwrap();
        assert_eq!(c.media.io, IoChoice::Recvmmsg);
        assert_eq!(c.crypto.backend, CryptoChoice::Ring);
        assert_eq!(c.crypto.gpu, GpuChoice::Auto);
        let c = parse("[crypto]\ngpu = \"always\"\n").unwrap();
        assert_eq!(c.crypto.gpu, GpuChoice::Always);
    }

    #[test]
    fn worker_class_is_realtime_or_normal() {
        use crate::net::priority::WorkerClass;
        assert_eq!(parse("").unwrap().media.worker_class, WorkerClass::Realtime);
        for class in WorkerClass::ALL {
            let text = format!("[media]\nworker_class = \"{}\"\n", class.name());
            assert_eq!(parse(&text).unwrap().media.worker_class, class);
        }
        let e = parse("[media]\nworker_class = \"fifo\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sluice.toml:2:") && e.contains("fifo") && e.contains("realtime"),
            "{e}"
        );
    }

    #[test]
    fn background_names_one_of_five_scheduling_classes() {
        use crate::net::priority::Background;
        assert_eq!(parse("").unwrap().media.background, Background::default());
        for class in Background::ALL {
            let text = format!("[media]\nbackground = \"{}\"\n", class.name());
            assert_eq!(parse(&text).unwrap().media.background, class);
        }
        let e = parse("[media]\nbackground = \"realtime\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sluice.toml:2:") && e.contains("realtime"),
            "{e}"
        );
    }

    #[test]
    fn max_worker_busy_defaults_to_085_and_must_be_a_share() {
        assert_eq!(parse("").unwrap().policy.max_worker_busy.get(), 0.85);
        for bad in ["0", "1.5", "-0.1"] {
            let err = parse(&format!("[policy]\nmax_worker_busy = {bad}\n")).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("max_worker_busy must be a share"), "{text}");
        }
    }

    #[test]
    fn an_exposed_control_api_needs_a_token() {
        let text = "# API\n[control]\n  listen = \"0.0.0.0:7480\"\n";
        let err = parse(text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sluice.toml:3:3: refusing to expose the control API on 0.0.0.0:7480 without a \
             token: set [control] token_file or the SLUICE_API_TOKEN environment variable"
        );
        // The environment variable resolves it; an empty one does not.
        let env = |name: &str| (name == "SLUICE_API_TOKEN").then(|| "t0ken".to_owned());
        assert!(Config::parse_with_env(text, "sluice.toml", &env).is_ok());
        let empty = |_: &str| Some("  ".to_owned());
        assert!(Config::parse_with_env(text, "sluice.toml", &empty).is_err());
        // A renamed variable is the one named in the error.
        let renamed = "[control]\nlisten = \"[::]:7480\"\ntoken_env = \"API_TOKEN\"\n";
        assert!(
            parse(renamed)
                .unwrap_err()
                .to_string()
                .ends_with("set [control] token_file or the API_TOKEN environment variable")
        );
        // IPv6 loopback needs none.
        assert!(parse("[control]\nlisten = \"[::1]:7480\"\n").is_ok());
    }

    #[test]
    fn the_token_comes_from_the_file_first_then_the_environment() {
        let path = temp_file("token", "  s3cret\n");
        let text = format!(
            "[control]\nlisten = \"0.0.0.0:7480\"\ntoken_file = {:?}\n",
            path.display().to_string()
        );
        let env = |_: &str| Some("from-env".to_owned());
        let c = Config::parse_with_env(&text, "sluice.toml", &env).unwrap();
        assert_eq!(c.api_token_with(&env).unwrap().as_deref(), Some("s3cret"));
        let c = Config::default();
        assert_eq!(c.api_token_with(&env).unwrap().as_deref(), Some("from-env"));
        assert_eq!(c.api_token_with(&no_env).unwrap(), None);

        std::fs::write(&path, "\n").unwrap();
        let err = Config::parse_with_env(&text, "sluice.toml", &env).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        std::fs::remove_file(&path).unwrap();
        let err = Config::parse_with_env(&text, "sluice.toml", &env).unwrap_err();
        assert!(matches!(err, ConfigError::TokenFile { .. }), "{err}");
    }

    #[test]
    fn media_must_be_reachable_at_a_specific_address() {
        let err = parse("[media]\nlisten = \"0.0.0.0:40000\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "sluice.toml:2:1: participants cannot send media to 0.0.0.0: set [media] \
             advertise to the IP they should use"
        );
        let err = parse("[media]\nlisten = \"0.0.0.0:1\"\nadvertise = \"::\"\n").unwrap_err();
        assert!(err.to_string().starts_with("sluice.toml:3:1: "), "{err}");
    }

    #[test]
    fn load_names_the_file() {
        let path = temp_file("load.toml", "[media]\nworker = 1\n");
        let err = Config::load(&path).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}:2:1: unknown key", path.display())),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            Config::load(&path).unwrap_err(),
            ConfigError::Unreadable { .. }
        ));
    }
}
