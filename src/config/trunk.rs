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

/// Whether dial-out calls offer SDES SRTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// SDES SRTP: `required` by default on TLS, `off` otherwise.
    #[serde(default)]
    pub srtp: Option<TrunkSrtp>,
    /// How long a call may ring before it is cancelled as not answered.
    #[serde(default = "default_ring_timeout")]
    pub ring_timeout_secs: u64,
    /// Outbound calls in progress at most; more are refused.
    #[serde(default = "default_max_calls")]
    pub max_calls: usize,
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
        if self.transport == TrunkTransport::Tls {
            return Err(
                "transport = \"tls\" is not supported for dial-out yet; use \"udp\" or \"tcp\""
                    .to_owned(),
            );
        }
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
                "not supported for dial-out",
            ),
        ] {
            let e = parse(&format!("[sip.trunk]\n{text}\n")).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.contains("[sip.trunk]"), "{e}");
        }
        let e = parse("[sip.trunk]\naddress = \"127.0.0.1:5080\"\nsrtp = \"maybe\"\n").unwrap_err();
        assert!(e.contains("maybe"), "{e}");
        let e = parse("[sip.trunk]\naddres = \"127.0.0.1:5080\"\n").unwrap_err();
        assert!(e.contains("addres"), "{e}");
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
