//! `[sip.trunk]`: the SIP trunk dial-out calls go through (DESIGN.md,
//! "Dial-out"). Checked whole at config load, the credentials file read
//! then too, so a daemon that starts can dial.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::sip::TrunkAccount;

/// How the trunk is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrunkTransport {
    /// SIP over UDP.
    #[default]
    Udp,
    /// SIP over TCP.
    Tcp,
    /// SIP over TLS.
    Tls,
}

/// Whether dial-out calls offer SDES SRTP. Written `"required"`,
/// `"optional"` or `"off"`; `true` and `false` mean `"required"` and
/// `"off"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkSrtp {
    /// Offer RTP/SAVP only: a trunk that wants plain RTP fails the call.
    Required,
    /// Offer RTP/SAVP; a plain RTP answer is taken too.
    Optional,
    /// Offer plain RTP/AVP.
    Off,
}

/// `[sip.trunk]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// `host:port` of the trunk (an SBC or a PBX); a name is resolved at
    /// start-up.
    pub address: String,
    /// `udp` (default), `tcp` or `tls`.
    #[serde(default)]
    pub transport: TrunkTransport,
    /// A file with one `user:password` line for digest authentication.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// The From URI when a dial request names none
    /// (`sip:meetings@sluice.example.org`).
    #[serde(default)]
    pub from: Option<String>,
    /// SDES SRTP: `required` by default on TLS (`srtp = false` or
    /// `"off"` opts out), `off` otherwise.
    #[serde(default)]
    pub srtp: Option<TrunkSrtp>,
    /// `transport = "tls"`: the PEM file of the CA certificates the
    /// trunk's certificate must be issued by (required: this build carries
    /// no system root store).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// The name (DNS name or IP address) the trunk's certificate must be
    /// for; the host of `address` by default.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// A PEM client certificate chain for trunks that ask for one (with
    /// `tls_key`).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// How long a call may ring before it is cancelled as not answered.
    #[serde(default = "default_ring_timeout")]
    pub ring_timeout_secs: u64,
    /// Outbound calls in progress at most; more are refused.
    #[serde(default = "default_max_calls")]
    pub max_calls: usize,
}

impl<'de> Deserialize<'de> for TrunkSrtp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Choice;
        impl serde::de::Visitor<'_> for Choice {
            type Value = TrunkSrtp;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"required\", \"optional\", \"off\", true or false")
            }
            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<TrunkSrtp, E> {
                Ok(if on {
                    TrunkSrtp::Required
                } else {
                    TrunkSrtp::Off
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TrunkSrtp, E> {
                match v {
                    "required" => Ok(TrunkSrtp::Required),
                    "optional" => Ok(TrunkSrtp::Optional),
                    "off" => Ok(TrunkSrtp::Off),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Choice)
    }
}

fn default_ring_timeout() -> u64 {
    60
}

fn default_max_calls() -> usize {
    100
}

impl TrunkConfig {
    /// The SRTP choice, its transport's default applied.
    pub fn srtp(&self) -> TrunkSrtp {
        self.srtp.unwrap_or(match self.transport {
            TrunkTransport::Tls => TrunkSrtp::Required,
            _ => TrunkSrtp::Off,
        })
    }

    /// The trunk's address, resolved.
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        let mut addrs = self.address.to_socket_addrs().map_err(|e| {
            format!(
                "address = {:?} is not a reachable host:port ({e}); use e.g. \"192.0.2.10:5060\"",
                self.address
            )
        })?;
        addrs
            .next()
            .ok_or_else(|| format!("address = {:?} resolves to nothing", self.address))
    }

    /// The name the trunk's certificate must be for: `tls_server_name`,
    /// else the host of `address`.
    pub fn tls_server_name(&self) -> String {
        if let Some(name) = &self.tls_server_name {
            return name.clone();
        }
        if let Ok(addr) = self.address.parse::<SocketAddr>() {
            return addr.ip().to_string();
        }
        let host = self
            .address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(host, _)| host);
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned()
    }

    /// The TLS client setup for `transport = "tls"` (`None` otherwise),
    /// its files read and checked.
    pub fn tls(&self) -> Result<Option<crate::dialout::TrunkTls>, String> {
        if self.transport != TrunkTransport::Tls {
            return Ok(None);
        }
        let Some(ca) = &self.tls_ca else {
            return Err("transport = \"tls\" needs tls_ca = \"/path/to/ca.pem\", the PEM file of the CA certificates the trunk's certificate is issued by (this build has no system root store to fall back on)".to_owned());
        };
        let client = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => {
                return Err(
                    "tls_cert and tls_key go together; set both for a client certificate, or neither"
                        .to_owned(),
                );
            }
        };
        crate::dialout::TrunkTls::new(ca, &self.tls_server_name(), client).map(Some)
    }

    /// The account in `credentials_file`, if one is named.
    pub fn account(&self) -> Result<Option<TrunkAccount>, String> {
        self.credentials_file
            .as_deref()
            .map(load_account)
            .transpose()
    }

    /// Every check, as a sentence that says what to fix.
    pub(crate) fn check(&self) -> Result<(), String> {
        self.resolve()?;
        if self.transport != TrunkTransport::Tls
            && (self.tls_ca.is_some()
                || self.tls_server_name.is_some()
                || self.tls_cert.is_some()
                || self.tls_key.is_some())
        {
            return Err(
                "tls_ca, tls_server_name, tls_cert and tls_key are for transport = \"tls\"; set transport = \"tls\" or remove them"
                    .to_owned(),
            );
        }
        self.tls()?;
        if let Some(from) = &self.from
            && !is_sip_uri(from)
        {
            return Err(format!(
                "from = {from:?} is not a SIP URI; use e.g. \"sip:meetings@sluice.example.org\""
            ));
        }
        if !(5..=600).contains(&self.ring_timeout_secs) {
            return Err(format!(
                "ring_timeout_secs = {} is out of range; use 5 to 600",
                self.ring_timeout_secs
            ));
        }
        if !(1..=crate::sip::MAX_OUTBOUND_CALLS).contains(&self.max_calls) {
            return Err(format!(
                "max_calls = {} is out of range; use 1 to {}",
                self.max_calls,
                crate::sip::MAX_OUTBOUND_CALLS
            ));
        }
        self.account().map(drop)
    }
}

/// `sip:user@host` or `sips:...`, printable, no spaces or angle brackets:
/// what may go into a From or Request-URI as it is.
pub fn is_sip_uri(uri: &str) -> bool {
    let lower = uri.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("sip:")
        .or_else(|| lower.strip_prefix("sips:"));
    rest.is_some_and(|r| !r.is_empty() && r.split('@').all(|p| !p.is_empty()))
        && uri.len() <= 256
        && uri
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>\"\\".contains(&b))
}

/// Reads one `user:password` line (`#` comments and blank lines skipped).
/// The error names the file's problem, never the password.
pub fn load_account(path: &Path) -> Result<TrunkAccount, String> {
    let text = Zeroizing::new(super::read_bounded(path).map_err(|e| {
        let why = match e {
            super::BoundedReadError::TooLarge => "it is larger than 1 MiB".to_owned(),
            super::BoundedReadError::Io(reason) => reason,
        };
        format!(
            "cannot use credentials_file {} ({why}); write one \"user:password\" line there",
            path.display()
        )
    })?);
    parse_account(&text).map_err(|why| {
        format!(
            "credentials_file {}: {why}; write one \"user:password\" line there",
            path.display()
        )
    })
}

fn parse_account(text: &str) -> Result<TrunkAccount, String> {
    let mut found = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if found.is_some() {
            return Err(format!("line {} is a second account", n + 1));
        }
        let Some((user, password)) = line.split_once(':') else {
            return Err(format!("line {} has no ':'", n + 1));
        };
        if user.is_empty() || user.len() > 128 || !user.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "line {}: the user name is empty or not printable",
                n + 1
            ));
        }
        if password.is_empty() {
            return Err(format!("line {}: the password is empty", n + 1));
        }
        found = Some(TrunkAccount {
            user: user.to_owned(),
            password: Zeroizing::new(password.to_owned()),
        });
    }
    found.ok_or_else(|| "it holds no user:password line".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_one_line_and_errors_never_show_the_password() {
        let a = parse_account("# the trunk\nsluice:p4ss:word\n").unwrap();
        assert_eq!(a.user, "sluice");
        assert_eq!(a.password.as_str(), "p4ss:word");
        assert!(!format!("{a:?}").contains("p4ss"));
        assert!(parse_account("").unwrap_err().contains("no user"));
        assert!(parse_account("a:b\nc:d\n").unwrap_err().contains("second"));
        assert!(parse_account("nocolon\n").unwrap_err().contains("line 1"));
        assert!(parse_account("a:\n").unwrap_err().contains("empty"));
        let missing = load_account(Path::new("/nonexistent/trunk")).unwrap_err();
        assert!(missing.contains("/nonexistent/trunk"), "{missing}");
    }

    fn parse(text: &str) -> Result<crate::config::Config, String> {
        crate::config::Config::parse(text, "sluice.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn the_trunk_section_is_checked_at_load() {
        let dir = std::env::temp_dir().join(format!("sluice-trunk-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let creds = dir.join("trunk");
        std::fs::write(&creds, "sluice:secret\n").unwrap();
        let ok = parse(&format!(
            "[sip.trunk]\naddress = \"127.0.0.1:5080\"\ncredentials_file = \"{}\"\n\
             from = \"sip:meet@sluice.test\"\n",
            creds.display()
        ))
        .unwrap();
        let trunk = ok.sip.trunk.unwrap();
        assert_eq!(trunk.transport, TrunkTransport::Udp);
        assert_eq!(trunk.srtp(), TrunkSrtp::Off);
        assert_eq!(trunk.ring_timeout_secs, 60);
        assert_eq!(trunk.account().unwrap().unwrap().user, "sluice");
        let tcp = parse(
            "[sip.trunk]\naddress = \"127.0.0.1:5080\"\ntransport = \"tcp\"\nsrtp = \"required\"\n",
        )
        .unwrap()
        .sip
        .trunk
        .unwrap();
        assert_eq!(tcp.srtp(), TrunkSrtp::Required);
        for (text, want) in [
            (
                "address = \"no-such-host.invalid:5060\"",
                "not a reachable host:port",
            ),
            ("address = \"127.0.0.1\"", "not a reachable host:port"),
            (
                "address = \"127.0.0.1:5080\"\ncredentials_file = \"/nonexistent/x\"",
                "/nonexistent/x",
            ),
            (
                "address = \"127.0.0.1:5080\"\nfrom = \"meet\"",
                "not a SIP URI",
            ),
            (
                "address = \"127.0.0.1:5080\"\nring_timeout_secs = 1",
                "5 to 600",
            ),
            (
                "address = \"127.0.0.1:5080\"\ntransport = \"tls\"",
                "needs tls_ca",
            ),
            (
                "address = \"127.0.0.1:5080\"\ntls_ca = \"/x.pem\"",
                "are for transport = \"tls\"",
            ),
            (
                "address = \"127.0.0.1:5080\"\ntransport = \"tls\"\ntls_ca = \"/nonexistent/ca.pem\"",
                "holds no readable PEM certificates",
            ),
        ] {
            let e = parse(&format!("[sip.trunk]\n{text}\n")).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.contains("[sip.trunk]"), "{e}");
        }
        let e = parse("[sip.trunk]\naddress = \"127.0.0.1:5080\"\nsrtp = \"maybe\"\n").unwrap_err();
        assert!(e.contains("maybe") && e.contains("\"required\""), "{e}");
        let e = parse("[sip.trunk]\naddres = \"127.0.0.1:5080\"\n").unwrap_err();
        assert!(e.contains("addres"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_tls_trunk_needs_a_ca_bundle_and_requires_srtp_unless_opted_out() {
        let dir = std::env::temp_dir().join(format!("sluice-trunk-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["trunk.test".to_owned()]).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, made.cert.pem()).unwrap();
        let key = dir.join("key.pem");
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        let tls = |extra: &str| {
            parse(&format!(
                "[sip.trunk]\naddress = \"127.0.0.1:5061\"\ntransport = \"tls\"\n\
                 tls_ca = \"{}\"\n{extra}",
                ca.display()
            ))
        };
        let trunk = tls("").unwrap().sip.trunk.unwrap();
        assert_eq!(trunk.srtp(), TrunkSrtp::Required);
        assert_eq!(trunk.tls_server_name(), "127.0.0.1");
        assert!(trunk.tls().unwrap().is_some());
        // The opt-out is explicit, either way it is written.
        for off in ["srtp = false", "srtp = \"off\""] {
            assert_eq!(tls(off).unwrap().sip.trunk.unwrap().srtp(), TrunkSrtp::Off);
        }
        assert_eq!(
            tls("srtp = true").unwrap().sip.trunk.unwrap().srtp(),
            TrunkSrtp::Required
        );
        let named = tls("tls_server_name = \"sbc.example.org\"")
            .unwrap()
            .sip
            .trunk
            .unwrap();
        assert_eq!(named.tls_server_name(), "sbc.example.org");
        // A client certificate: both files or neither.
        let client = format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"",
            ca.display(),
            key.display()
        );
        assert!(
            tls(&client)
                .unwrap()
                .sip
                .trunk
                .unwrap()
                .tls()
                .unwrap()
                .is_some()
        );
        let e = tls(&format!("tls_cert = \"{}\"", ca.display())).unwrap_err();
        assert!(e.contains("go together"), "{e}");
        let e = tls("tls_server_name = \"not a name!\"").unwrap_err();
        assert!(e.contains("neither a DNS name"), "{e}");
        // A file with no certificate in it.
        let e = parse(&format!(
            "[sip.trunk]\naddress = \"127.0.0.1:5061\"\ntransport = \"tls\"\ntls_ca = \"{}\"\n",
            key.display()
        ))
        .unwrap_err();
        assert!(e.contains("no usable CA certificate"), "{e}");
        // A name in `address` is the default server name.
        let by_name = TrunkConfig {
            address: "sbc.example.org:5061".to_owned(),
            ..trunk
        };
        assert_eq!(by_name.tls_server_name(), "sbc.example.org");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sip_uris() {
        assert!(is_sip_uri("sip:+15551234@trunk.example:5060"));
        assert!(is_sip_uri("sips:alice@example.org"));
        for bad in [
            "tel:+1555",
            "sip:",
            "sip:a b@c",
            "sip:<a>@b",
            "+1555",
            "sip:@h",
        ] {
            assert!(!is_sip_uri(bad), "{bad}");
        }
    }
}
