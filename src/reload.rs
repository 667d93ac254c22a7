//! What a config reload (SIGHUP, `systemctl reload sluice`) may change in
//! a running daemon, and what needs a restart. Pure: two configs in, the
//! plan out; [`crate::daemon::Daemon::reload`] applies it.
//!
//! Taken at run time: `[log] level`, all of `[policy]` (it governs the
//! next creation and admission: who is in stays in), the API token (read
//! again from `token_file` or `token_env`, even when the config text did
//! not change), and the `[sip]` limits: `allow`, `invite_rate`,
//! `invite_burst`, `max_pending_per_source`, `auth_file`, `auth_realm`,
//! `max_calls`, `answer_delay_ms`. Everything else (listen addresses,
//! workers and their scheduling class, crypto, the I/O features (`gso`,
//! `multishot`, `fixed_files`),
//! the edge's limits, the media settings of calls) is
//! bound into sockets and threads at start: a change is reported as
//! needing a restart and the running value stays.

use crate::config::Config;

/// The result of comparing the running config with a new one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReloadPlan {
    /// Keys whose new value takes effect now.
    pub applied: Vec<&'static str>,
    /// Keys whose new value needs a restart (the running value stays).
    pub restart: Vec<&'static str>,
    /// The config the daemon runs with afterwards: the old one with the
    /// run-time keys taken from the new one.
    pub running: Config,
}

/// Pushes `[section] field` onto `$list` for each field that differs.
macro_rules! differ {
    ($list:expr, $old:expr, $new:expr, $section:literal, [$($field:ident),* $(,)?]) => {
        $(
            if $old.$field != $new.$field {
                $list.push(concat!("[", $section, "] ", stringify!($field)));
            }
        )*
    };
}

/// Compares `old` (running) with `new` (just read and validated).
pub fn plan(old: &Config, new: &Config) -> ReloadPlan {
    let mut applied = Vec::new();
    let mut restart = Vec::new();
    differ!(applied, old.log, new.log, "log", [level]);
    differ!(restart, old.log, new.log, "log", [format]);
    differ!(
        applied,
        old.policy,
        new.policy,
        "policy",
        [
            e2ee,
            max_participants_per_meeting,
            max_participants_per_node,
            max_meetings,
            max_worker_busy
        ]
    );
    differ!(
        applied,
        old.control,
        new.control,
        "control",
        [token_file, token_env]
    );
    differ!(
        restart,
        old.control,
        new.control,
        "control",
        [
            listen,
            header_timeout_secs,
            idle_timeout_secs,
            max_connections,
            max_connections_per_source
        ]
    );
    differ!(
        restart,
        old.media,
        new.media,
        "media",
        [
            listen,
            advertise,
            workers,
            io,
            pin_cores,
            gso,
            multishot,
            fixed_files,
            background,
            worker_class
        ]
    );
    differ!(restart, old.crypto, new.crypto, "crypto", [backend, gpu]);
    differ!(
        applied,
        old.sip,
        new.sip,
        "sip",
        [
            allow,
            invite_rate,
            invite_burst,
            max_pending_per_source,
            auth_file,
            auth_realm,
            max_calls,
            answer_delay_ms,
            max_connections,
            max_connections_per_source,
            connection_idle_secs
        ]
    );
    differ!(
        restart,
        old.sip,
        new.sip,
        "sip",
        [
            enabled,
            listen,
            media_ip,
            ivr_user,
            media_threads,
            media_timeout_secs,
            digit_timeout_secs,
            attempts,
            opus_bitrate,
            opus_complexity,
            audio_level_extension,
            silence_suppression,
            listen_tcp,
            listen_tls,
            tls_cert,
            tls_key,
            tls_require_srtp,
            trunk
        ]
    );
    // Whole sections read only at start: the encoder probe and the
    // cluster's Redis link are made once.
    if old.transcode != new.transcode {
        restart.push("[transcode]");
    }
    if old.webrtc != new.webrtc {
        restart.push("[webrtc]");
    }
    if old.cluster != new.cluster {
        restart.push("[cluster]");
    }
    let mut running = old.clone();
    running.log.level = new.log.level;
    running.policy = new.policy;
    running
        .control
        .token_file
        .clone_from(&new.control.token_file);
    running.control.token_env.clone_from(&new.control.token_env);
    running.sip.allow.clone_from(&new.sip.allow);
    running.sip.invite_rate = new.sip.invite_rate;
    running.sip.invite_burst = new.sip.invite_burst;
    running.sip.max_pending_per_source = new.sip.max_pending_per_source;
    running.sip.auth_file.clone_from(&new.sip.auth_file);
    running.sip.auth_realm.clone_from(&new.sip.auth_realm);
    running.sip.max_calls = new.sip.max_calls;
    running.sip.answer_delay_ms = new.sip.answer_delay_ms;
    running.sip.max_connections = new.sip.max_connections;
    running.sip.max_connections_per_source = new.sip.max_connections_per_source;
    running.sip.connection_idle_secs = new.sip.connection_idle_secs;
    ReloadPlan {
        applied,
        restart,
        running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse_with_env(text, "sluice.toml", &|_| None).unwrap()
    }

    /// Every key of the sections `plan` compares key by key, named here
    /// by destructuring without `..`: a new key fails to compile until it
    /// is added below and to `plan` (a key missing from `plan` would be
    /// dropped silently by a reload, neither applied nor reported).
    #[test]
    fn every_key_of_the_compared_sections_is_applied_or_reported() {
        use crate::config::{ControlConfig, LogConfig, MediaConfig, SipConfig};
        let old = parse("");
        let Config {
            control:
                ControlConfig {
                    listen: _,
                    token_file: _,
                    token_env: _,
                    header_timeout_secs: _,
                    idle_timeout_secs: _,
                    max_connections: _,
                    max_connections_per_source: _,
                },
            media:
                MediaConfig {
                    listen: _,
                    advertise: _,
                    workers: _,
                    io: _,
                    pin_cores: _,
                    gso: _,
                    multishot: _,
                    fixed_files: _,
                    background: _,
                    worker_class: _,
                },
            crypto: crate::config::CryptoConfig { backend: _, gpu: _ },
            log: LogConfig {
                format: _,
                level: _,
            },
            ..
        } = &old;
        let SipConfig {
            enabled: _,
            listen: _,
            media_ip: _,
            ivr_user: _,
            media_threads: _,
            max_calls: _,
            media_timeout_secs: _,
            answer_delay_ms: _,
            digit_timeout_secs: _,
            attempts: _,
            opus_bitrate: _,
            opus_complexity: _,
            audio_level_extension: _,
            silence_suppression: _,
            allow: _,
            invite_rate: _,
            invite_burst: _,
            max_pending_per_source: _,
            auth_file: _,
            auth_realm: _,
            listen_tcp: _,
            listen_tls: _,
            tls_cert: _,
            tls_key: _,
            tls_require_srtp: _,
            max_connections: _,
            max_connections_per_source: _,
            connection_idle_secs: _,
            trunk: _,
        } = &old.sip;
        // Keys that only `plan`'s own lists name: each changed alone must
        // show up in exactly one of the two lists.
        let cases = [
            ("[media]\ngso = false\n", "[media] gso"),
            ("[media]\nmultishot = true\n", "[media] multishot"),
            ("[media]\nfixed_files = true\n", "[media] fixed_files"),
            ("[media]\nbackground = \"normal\"\n", "[media] background"),
            (
                "[media]\nworker_class = \"normal\"\n",
                "[media] worker_class",
            ),
            ("[media]\npin_cores = false\n", "[media] pin_cores"),
            ("[crypto]\ngpu = \"off\"\n", "[crypto] gpu"),
            ("[log]\nformat = \"json\"\n", "[log] format"),
            (
                "[control]\nidle_timeout_secs = 7\n",
                "[control] idle_timeout_secs",
            ),
        ];
        for (text, key) in cases {
            let new = parse(text);
            assert_ne!(old, new, "{text} changes nothing: fix the case");
            let p = plan(&old, &new);
            let named = p.applied.iter().chain(&p.restart).filter(|k| **k == key);
            assert_eq!(
                named.count(),
                1,
                "{key}: applied {:?}, restart {:?}",
                p.applied,
                p.restart
            );
        }
    }

    #[test]
    fn nothing_changed_is_an_empty_plan() {
        let c = parse("");
        let p = plan(&c, &c);
        assert!(p.applied.is_empty() && p.restart.is_empty());
        assert_eq!(p.running, c);
    }

    #[test]
    fn run_time_keys_apply_and_the_rest_waits_for_a_restart() {
        let old = parse("");
        let new = parse(
            "[policy]\nmax_participants_per_meeting = 7\n[log]\nlevel = \"debug\"\n\
             [media]\nworkers = 1\n[sip]\ninvite_rate = 5\nlisten = \"127.0.0.1:5070\"\n",
        );
        let p = plan(&old, &new);
        assert_eq!(
            p.applied,
            [
                "[log] level",
                "[policy] max_participants_per_meeting",
                "[sip] invite_rate"
            ]
        );
        assert_eq!(p.restart, ["[media] workers", "[sip] listen"]);
        // The running config takes the run-time keys, keeps the others.
        assert_eq!(p.running.policy.max_participants_per_meeting, 7);
        assert_eq!(p.running.sip.invite_rate, 5);
        assert_eq!(p.running.media.workers, old.media.workers);
        assert_eq!(p.running.sip.listen, old.sip.listen);
        // A second reload of the same file still names what waits.
        let again = plan(&p.running, &new);
        assert!(again.applied.is_empty());
        assert_eq!(again.restart, ["[media] workers", "[sip] listen"]);
    }
}
