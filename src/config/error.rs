//! Config errors, each displayed as one sentence an operator can act on:
//! where (`file:line:column`), what is wrong, and how to fix it.
//!
//! toml reports a byte span and a serde message; [`ConfigError::from_toml`]
//! turns those into structured variants, naming the section and key from
//! the schema tables below (and from the text around the span when the
//! message does not identify them).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};

/// A position in a config file, 1-based; displayed `origin:line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name (or whatever the text was parsed as).
    pub origin: String,
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Location {
    /// The position of byte `offset` in `text`.
    pub(crate) fn at_offset(text: &str, origin: &str, offset: usize) -> Self {
        let before = text.get(..offset.min(text.len())).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Self {
            origin: origin.to_owned(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }

    /// Where `key` of `[section]` is written, or the start of the file if
    /// it is not written (it then has its default).
    pub(crate) fn of_key(text: &str, origin: &str, section: &str, key: &str) -> Self {
        let offset = DeTable::parse(text).ok().and_then(|doc| {
            let table = find(doc.get_ref(), section)?.get_ref();
            let DeValue::Table(table) = table else {
                return None;
            };
            table
                .iter()
                .find(|(k, _)| k.get_ref() == key)
                .map(|(k, _)| k.span().start)
        });
        Self::at_offset(text, origin, offset.unwrap_or(0))
    }

    /// Where the `[section]` header is written (the start of the file if
    /// it is not found).
    pub(crate) fn of_section(text: &str, origin: &str, section: &str) -> Self {
        let header = format!("[{section}]");
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            if line.trim() == header {
                return Self::at_offset(
                    text,
                    origin,
                    offset + (line.len() - line.trim_start().len()),
                );
            }
            offset += line.len();
        }
        Self::at_offset(text, origin, 0)
    }
}

fn find<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<&'a toml::Spanned<DeValue<'i>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v)
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.origin, self.line, self.column)
    }
}

/// Why a config was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The text is not TOML.
    Syntax {
        /// Where.
        at: Location,
        /// The parser's description.
        reason: String,
    },
    /// A key or section sluice does not know (often a typo).
    UnknownKey {
        /// Where the key is written.
        at: Location,
        /// Its section; `None` for a top-level (section) name.
        section: Option<&'static str>,
        /// The key as written.
        key: String,
        /// The keys that section accepts.
        expected: &'static [&'static str],
    },
    /// A value outside a fixed set of choices.
    NotAllowed {
        /// Where the value is written.
        at: Location,
        /// Its section.
        section: &'static str,
        /// Its key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// The accepted values.
        allowed: &'static [&'static str],
    },
    /// A value of the wrong type or form.
    BadValue {
        /// Where the value is written.
        at: Location,
        /// Its section; `None` for a top-level name.
        section: Option<&'static str>,
        /// Its key.
        key: &'static str,
        /// The value as written in the file.
        value: String,
        /// What the parser said.
        reason: String,
    },
    /// Anything else the schema refuses.
    Other {
        /// Where.
        at: Location,
        /// What the parser said.
        reason: String,
    },
    /// The control API would listen off loopback with no token to guard it.
    ControlExposed {
        /// Where `[control] listen` is written.
        at: Location,
        /// The address.
        listen: SocketAddr,
        /// The environment variable that could hold the token.
        token_env: String,
    },
    /// The address handed to participants would be 0.0.0.0 or `::`.
    UnspecifiedMediaAddress {
        /// Where the address is written.
        at: Location,
        /// The address.
        ip: IpAddr,
    },
    /// A number outside the range its key accepts.
    OutOfRange {
        /// Where the value is written.
        at: Location,
        /// Its section.
        section: &'static str,
        /// Its key.
        key: &'static str,
        /// The value.
        value: String,
        /// The accepted range, in words (`1 to 14`).
        range: &'static str,
    },
    /// `[cluster]` lacks a key it cannot do without.
    ClusterMissing {
        /// Where `[cluster]` is written.
        at: Location,
        /// The key.
        key: &'static str,
        /// An example value, as TOML.
        example: &'static str,
    },
    /// `[control] token_file` cannot be read or is empty.
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The config file is larger than [`super::MAX_FILE_BYTES`].
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// `[media] workers` is more than this machine can run.
    TooManyWorkers {
        /// Where `workers` is written.
        at: Location,
        /// The value.
        workers: usize,
        /// The most this machine takes.
        max: usize,
        /// Its cores.
        cores: usize,
        /// Its open-file limit.
        fd_limit: u64,
    },
    /// `[sip] auth_file` cannot be read or has a bad line.
    AuthFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `[sip] listen_tls` without a usable certificate and key.
    SipTls {
        /// Why, as a sentence fragment.
        reason: String,
    },
    /// `[webrtc] certificate`/`private_key` unusable.
    WebrtcCertificate {
        /// Why, as a sentence fragment.
        reason: String,
    },
    /// `[sip.trunk]` is unusable (an address that does not resolve, a bad
    /// credentials file, a value out of range).
    Trunk {
        /// Where `[sip.trunk]` is written.
        at: Location,
        /// What to fix, as a sentence.
        reason: String,
    },
    /// The config file itself cannot be read.
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Each section and the keys it accepts, in the order the file lists them.
const SECTIONS: &[(&str, &[&str])] = &[
    (
        "transcode",
        &[
            "enabled",
            "encoders",
            "max_sessions",
            "threads",
            "linger_secs",
        ],
    ),
    (
        "control",
        &[
            "listen",
            "token_file",
            "token_env",
            "header_timeout_secs",
            "idle_timeout_secs",
            "max_connections",
            "max_connections_per_source",
        ],
    ),
    (
        "media",
        &[
            "listen",
            "advertise",
            "workers",
            "io",
            "pin_cores",
            "gso",
            "multishot",
            "fixed_files",
            "background",
            "worker_class",
        ],
    ),
    ("crypto", &["backend", "gpu"]),
    (
        "policy",
        &[
            "e2ee",
            "max_participants_per_meeting",
            "max_participants_per_node",
            "max_meetings",
            "max_worker_busy",
        ],
    ),
    (
        "sip",
        &[
            "enabled",
            "listen",
            "media_ip",
            "ivr_user",
            "media_threads",
            "max_calls",
            "media_timeout_secs",
            "answer_delay_ms",
            "digit_timeout_secs",
            "attempts",
            "opus_bitrate",
            "opus_complexity",
            "audio_level_extension",
            "silence_suppression",
            "allow",
            "invite_rate",
            "invite_burst",
            "max_pending_per_source",
            "auth_file",
            "auth_realm",
        ],
    ),
    (
        "cluster",
        &[
            "redis",
            "node_id",
            "advertise_api",
            "advertise_media",
            "heartbeat_ms",
            "ttl_secs",
        ],
    ),
    ("log", &["format", "level"]),
    ("webrtc", &["certificate", "private_key"]),
];

/// The top-level names: the sections.
const TOP: [&str; 9] = [
    "control",
    "media",
    "crypto",
    "policy",
    "sip",
    "log",
    "transcode",
    "webrtc",
    "cluster",
];

/// Keys whose value is one of a fixed set.
const CHOICES: &[(&str, &str, &[&str])] = &[
    ("media", "io", &["auto", "io_uring", "recvmmsg"]),
    (
        "media",
        "background",
        &["normal", "nice-10", "nice-19", "batch", "idle"],
    ),
    ("media", "worker_class", &["realtime", "normal"]),
    ("crypto", "backend", &["auto", "ring", "aes-gcm"]),
    ("crypto", "gpu", &["auto", "off", "always"]),
    ("policy", "e2ee", &["verified-only", "all", "disabled"]),
    ("log", "format", &["text", "json"]),
    ("log", "level", &["error", "warn", "info", "debug", "trace"]),
];

/// How to write each free-form value.
fn hint(section: Option<&str>, key: &str) -> &'static str {
    match (section, key) {
        (Some("control"), "listen") => "use an address and port such as \"127.0.0.1:7480\"",
        (Some("media"), "listen") => "use an address and port such as \"127.0.0.1:40000\"",
        (Some("control"), "token_file") => "use a path such as \"/etc/sluice/api-token\"",
        (Some("control"), "token_env") => "use a variable name such as \"SLUICE_API_TOKEN\"",
        (Some("control"), _) => "use a whole number",
        (Some("media"), "advertise") => "use an IP address such as \"203.0.113.7\"",
        (Some("media"), "workers") => "use a whole number, 0 for one per core",
        (Some("media"), "pin_cores" | "gso" | "multishot" | "fixed_files") => "use true or false",
        (Some("policy"), _) => "use a whole number",
        (Some("sip"), "listen") => "use an address and port such as \"127.0.0.1:5060\"",
        (Some("sip"), "media_ip") => "use an IP address such as \"203.0.113.7\"",
        (Some("sip"), "enabled") => "use true or false",
        (Some("sip"), "ivr_user") => "use a SIP user name such as \"meet\"",
        (Some("sip"), "allow") => {
            "use a list of networks such as [\"192.0.2.10/32\", \"10.1.0.0/16\"]"
        }
        (Some("sip"), "auth_file") => "use a path such as \"/etc/sluice/sip-users\"",
        (Some("sip"), "auth_realm") => "use a realm name such as \"sluice\"",
        (Some("sip"), _) => "use a whole number",
        (Some("transcode"), "enabled") => "use true or false",
        (Some("transcode"), "encoders") => "use a list such as [\"libx264\", \"libvpx\"]",
        (Some("transcode"), _) => "use a whole number",
        (Some("cluster"), "redis") => "use a URL such as \"redis://10.0.0.5:6379\"",
        (Some("cluster"), "node_id") => "use a name such as \"rack1-a\"",
        (Some("cluster"), "advertise_api" | "advertise_media") => {
            "use an address and port such as \"10.0.0.11:7480\""
        }
        (Some("cluster"), _) => "use a whole number",
        (None, _) => "write it as a [section] of keys",
        _ => "see the commented defaults in systemd/sluice.toml",
    }
}

/// The words in backticks in a serde message, in order.
fn backticked(message: &str) -> Vec<String> {
    message
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The `[section]` header in force at byte `offset` (the last one above it).
fn section_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    before[..line_start].lines().rev().find_map(|line| {
        let line = line.trim();
        line.starts_with('[').then(|| {
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned()
        })
    })
}

/// The key whose value starts at byte `offset`: the name left of the
/// nearest `=` before it on the same line (inline tables included).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
    let eq = line.rfind('=')?;
    let key = line[..eq]
        .rsplit(['{', ','])
        .next()?
        .trim()
        .trim_matches(['"', '\'']);
    (!key.is_empty()).then(|| key.to_owned())
}

impl ConfigError {
    /// Turns a toml error on `text` into a structured one.
    pub(crate) fn from_toml(err: &toml::de::Error, text: &str, origin: &str) -> Self {
        let span = err.span().unwrap_or(0..0);
        let at = Location::at_offset(text, origin, span.start);
        let message = err.message().trim();
        let words = backticked(message);
        let mut reason = message.lines().collect::<Vec<_>>().join("; ");
        if DeTable::parse(text).is_err() {
            return Self::Syntax { at, reason };
        }
        if message.starts_with("unknown field") && !words.is_empty() {
            let expected = &words[1..];
            if expected == TOP {
                return Self::UnknownKey {
                    at,
                    section: None,
                    key: words[0].clone(),
                    expected: &TOP,
                };
            }
            if let Some((section, keys)) = SECTIONS.iter().find(|(_, keys)| *keys == expected) {
                return Self::UnknownKey {
                    at,
                    section: Some(section),
                    key: words[0].clone(),
                    expected: keys,
                };
            }
        }
        if message.starts_with("unknown variant") && !words.is_empty() {
            let allowed = &words[1..];
            if let Some((section, key, values)) =
                CHOICES.iter().find(|(_, _, values)| *values == allowed)
            {
                return Self::NotAllowed {
                    at,
                    section,
                    key,
                    value: words[0].clone(),
                    allowed: values,
                };
            }
        }
        // A value of the wrong type: find its key from the text (a dotted
        // key such as `media.workers` names its own section).
        let written = key_at(text, span.start).unwrap_or_default();
        let (section, key) = match written.rsplit_once('.') {
            Some((section, key)) => (Some(section.to_owned()), key.to_owned()),
            None => (section_at(text, span.start), written),
        };
        let Some((section, key)) = schema_key(section.as_deref(), &key) else {
            return Self::Other { at, reason };
        };
        // serde names our Rust type; the operator needs to hear "table".
        if let Some(i) = reason.find("expected struct ") {
            reason.replace_range(i.., "expected a table");
        }
        Self::BadValue {
            at,
            section,
            key,
            value: text.get(span).unwrap_or_default().trim().to_owned(),
            reason,
        }
    }
}

/// The schema's own names for `key` in `section` (`None`: top level).
fn schema_key(section: Option<&str>, key: &str) -> Option<(Option<&'static str>, &'static str)> {
    match section {
        None => TOP
            .iter()
            .find(|name| **name == key)
            .map(|name| (None, *name)),
        Some(section) => {
            let (section, keys) = SECTIONS.iter().find(|(name, _)| *name == section)?;
            let key = keys.iter().find(|name| **name == key)?;
            Some((Some(*section), *key))
        }
    }
}

/// `[section] key`, or `key` at the top level.
struct Qualified<'a>(Option<&'a str>, &'a str);

impl fmt::Display for Qualified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(section) => write!(f, "[{section}] {}", self.1),
            None => f.write_str(self.1),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax { at, reason } => {
                write!(
                    f,
                    "{at}: this is not valid TOML ({reason}); correct the syntax there"
                )
            }
            Self::UnknownKey {
                at,
                section: Some(section),
                key,
                expected,
            } => write!(
                f,
                "{at}: unknown key `{key}` in [{section}]; expected one of {}",
                expected.join(", ")
            ),
            Self::UnknownKey {
                at,
                section: None,
                key,
                expected,
            } => {
                let sections: Vec<String> = expected.iter().map(|s| format!("[{s}]")).collect();
                write!(
                    f,
                    "{at}: unknown section `{key}`; expected one of {}",
                    sections.join(", ")
                )
            }
            Self::NotAllowed {
                at,
                section,
                key,
                value,
                allowed,
            } => {
                let quoted: Vec<String> = allowed.iter().map(|v| format!("\"{v}\"")).collect();
                let choices = match quoted.split_last() {
                    Some((last, rest)) if !rest.is_empty() => {
                        format!("{} or {last}", rest.join(", "))
                    }
                    _ => quoted.join(""),
                };
                write!(
                    f,
                    "{at}: {} = \"{value}\" is not allowed; use {choices}",
                    Qualified(Some(section), key)
                )
            }
            Self::BadValue {
                at,
                section,
                key,
                value,
                reason,
            } => write!(
                f,
                "{at}: {} = {value} is not valid ({reason}); {}",
                Qualified(*section, key),
                hint(*section, key)
            ),
            Self::Other { at, reason } => write!(
                f,
                "{at}: {reason}; see the commented defaults in systemd/sluice.toml"
            ),
            Self::ControlExposed {
                at,
                listen,
                token_env,
            } => write!(
                f,
                "{at}: refusing to expose the control API on {listen} without a token: set \
                 [control] token_file or the {token_env} environment variable"
            ),
            Self::UnspecifiedMediaAddress { at, ip } => write!(
                f,
                "{at}: participants cannot send media to {ip}: set [media] advertise to the IP \
                 they should use"
            ),
            Self::OutOfRange {
                at,
                section,
                key,
                value,
                range,
            } => write!(
                f,
                "{at}: [{section}] {key} = {value} is out of range; use {range}"
            ),
            Self::ClusterMissing { at, key, example } => write!(
                f,
                "{at}: [cluster] needs {key}; add a line such as {key} = {example}"
            ),
            Self::TokenFile { path, reason } => write!(
                f,
                "cannot read the API token from {} ({reason}); put the token in that file or \
                 fix [control] token_file",
                path.display()
            ),
            Self::TooLarge { path, limit } => write!(
                f,
                "the config file {} is larger than {limit} bytes; point --config at the TOML \
                 config (systemd/sluice.toml is a few kilobytes)",
                path.display()
            ),
            Self::TooManyWorkers {
                at,
                workers,
                max,
                cores,
                fd_limit,
            } => write!(
                f,
                "{at}: [media] workers = {workers} is more than this machine runs ({cores} \
                 cores, open-file limit {fd_limit}); use 0 (one per core) or at most {max}"
            ),
            Self::AuthFile { path, reason } => write!(
                f,
                "cannot use the SIP credentials in {} ({reason}); write one \
                 \"user:password\" a line or fix [sip] auth_file",
                path.display()
            ),
            Self::SipTls { reason } => write!(
                f,
                "cannot serve SIP over TLS: {reason}; set [sip] tls_cert and tls_key to a \
                 PEM certificate chain and its private key, or remove listen_tls"
            ),
            Self::WebrtcCertificate { reason } => write!(
                f,
                "cannot use the WebRTC certificate: {reason}; set [webrtc] certificate and \
                 private_key to a PEM certificate and its PKCS#8 private key, or remove both \
                 to have one made at start-up"
            ),
            Self::Trunk { at, reason } => write!(f, "{at}: [sip.trunk] {reason}"),
            Self::Unreadable { path, reason } => write!(
                f,
                "cannot read the config file {} ({reason}); check the path and its permissions",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn error(text: &str) -> String {
        Config::parse_with_env(text, "sluice.toml", &|_| None)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn unknown_keys_name_the_section_and_the_keys_it_accepts() {
        let text = "# sluice\n\n[media]\nlisten = \"127.0.0.1:40000\"\n\n\nworker = 4\n";
        assert_eq!(
            error(text),
            "sluice.toml:7:1: unknown key `worker` in [media]; expected one of listen, \
             advertise, workers, io, pin_cores, gso, multishot, fixed_files, background, \
             worker_class"
        );
        assert_eq!(
            error("[control]\n  token = \"x\"\n"),
            "sluice.toml:2:3: unknown key `token` in [control]; expected one of listen, \
             token_file, token_env, header_timeout_secs, idle_timeout_secs, max_connections, \
             max_connections_per_source"
        );
        assert_eq!(
            error("[policy]\nmax_participants = 3\n"),
            "sluice.toml:2:1: unknown key `max_participants` in [policy]; expected one of \
             e2ee, max_participants_per_meeting, max_participants_per_node, max_meetings, \
             max_worker_busy"
        );
        assert_eq!(
            error("[crypto]\nbackend = \"ring\"\nbakend = \"ring\"\n"),
            "sluice.toml:3:1: unknown key `bakend` in [crypto]; expected one of backend, gpu"
        );
    }

    #[test]
    fn unknown_sections_are_named() {
        assert_eq!(
            error("[media]\nworkers = 2\n\n[medai]\nworkers = 2\n"),
            "sluice.toml:4:2: unknown section `medai`; expected one of [control], [media], \
             [crypto], [policy], [sip], [log], [transcode], [webrtc], [cluster]"
        );
    }

    #[test]
    fn values_outside_their_choices_list_the_choices() {
        assert_eq!(
            error("[policy]\nmax_participants_per_node = 10\ne2ee = \"sometimes\"\n"),
            "sluice.toml:3:8: [policy] e2ee = \"sometimes\" is not allowed; use \
             \"verified-only\", \"all\" or \"disabled\""
        );
        assert_eq!(
            error("[media]\nio = \"epoll\"\n"),
            "sluice.toml:2:6: [media] io = \"epoll\" is not allowed; use \"auto\", \
             \"io_uring\" or \"recvmmsg\""
        );
        assert_eq!(
            error("[crypto]\nbackend = \"openssl\"\n"),
            "sluice.toml:2:11: [crypto] backend = \"openssl\" is not allowed; use \"auto\", \
             \"ring\" or \"aes-gcm\""
        );
        assert_eq!(
            error("[media]\nbackground = \"x\"\n"),
            "sluice.toml:2:14: [media] background = \"x\" is not allowed; use \"normal\", \
             \"nice-10\", \"nice-19\", \"batch\" or \"idle\""
        );
        assert_eq!(
            error("[media]\nworker_class = \"fifo\"\n"),
            "sluice.toml:2:16: [media] worker_class = \"fifo\" is not allowed; use \"realtime\" \
             or \"normal\""
        );
    }

    #[test]
    fn values_of_the_wrong_form_say_how_to_write_them() {
        assert_eq!(
            error("[media]\nworkers = \"four\"\n"),
            "sluice.toml:2:11: [media] workers = \"four\" is not valid (invalid type: string \
             \"four\", expected usize); use a whole number, 0 for one per core"
        );
        assert_eq!(
            error("[control]\nlisten = \"localhost\"\n"),
            "sluice.toml:2:10: [control] listen = \"localhost\" is not valid (invalid socket \
             address syntax); use an address and port such as \"127.0.0.1:7480\""
        );
        assert_eq!(
            error("[media]\npin_cores = 1\n"),
            "sluice.toml:2:13: [media] pin_cores = 1 is not valid (invalid type: integer \
             `1`, expected a boolean); use true or false"
        );
        assert_eq!(
            error("[policy]\nmax_participants_per_node = -1\n"),
            "sluice.toml:2:29: [policy] max_participants_per_node = -1 is not valid (invalid \
             value: integer `-1`, expected usize); use a whole number"
        );
        assert_eq!(
            error("media = 3\n"),
            "sluice.toml:1:9: media = 3 is not valid (invalid type: integer `3`, expected a \
             table); write it as a [section] of keys"
        );
    }

    #[test]
    fn syntax_errors_point_at_the_fault() {
        assert_eq!(
            error("[media]\nworkers = \n"),
            "sluice.toml:2:11: this is not valid TOML (string values must be quoted, \
             expected literal string); correct the syntax there"
        );
        assert_eq!(
            error("[media]\nworkers = 1\nworkers = 2\n"),
            "sluice.toml:3:1: this is not valid TOML (duplicate key); correct the syntax there"
        );
    }
}
