//! How the daemon writes its log (`[log]` in the config), to stderr.
//!
//! - `format = "text"` on a terminal: coloured, timestamped lines.
//! - `format = "text"` anywhere else (a file, a pipe): the same lines with
//!   no ANSI escape at all (`NO_COLOR` turns colour off on a terminal too).
//! - Under systemd (stderr is the journal stream named by `JOURNAL_STREAM`):
//!   no timestamp (the journal keeps its own) and each line starts with its
//!   syslog priority, `<3>` error, `<4>` warning, `<6>` info, `<7>` debug
//!   and trace, which journald turns into the entry's PRIORITY
//!   (`SyslogLevelPrefix=`, on by default), so `journalctl -p warning`
//!   filters by it.
//! - `format = "json"`: one JSON object per line (`timestamp`, `level`,
//!   `target`, the event's fields), for log shippers.
//!
//! No formatter here redacts anything: secrets stay out of the log because
//! the types that hold them never print them (`MasterKey` and the control
//! options' token have hand-written `Debug`), which `tests/logs.rs` checks
//! end to end at trace level.

use std::fmt;
use std::io::IsTerminal as _;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Layered, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::{LogConfig, LogFormat};

/// The environment variable that overrides `[log] level`.
pub const LEVEL_ENV: &str = "SLUICE_LOG";

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `SLUICE_LOG` is not a filter.
    #[error(
        "{LEVEL_ENV}={value:?} is not a log filter ({reason}); use a level such as \"info\" or \
         directives such as \"info,sluice::sip=debug\""
    )]
    Filter {
        /// The variable's value.
        value: String,
        /// What the parser said.
        reason: String,
    },
    /// A global subscriber was already installed.
    #[error("logging was already set up in this process")]
    AlreadySet,
    /// The subscriber whose level was to change no longer exists.
    #[error("the log subscriber is gone; the level cannot change")]
    Gone,
}

/// Where the log lines go, as far as formatting cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSink {
    /// A person is watching: colour is welcome.
    pub terminal: bool,
    /// The systemd journal reads the lines: priority prefixes, no timestamp.
    pub journal: bool,
}

impl LogSink {
    /// What stderr of this process is.
    pub fn stderr() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            terminal: std::io::stderr().is_terminal() && !no_color,
            journal: stderr_is_journal(),
        }
    }
}

/// Whether stderr is the journal stream systemd connected: `JOURNAL_STREAM`
/// is `device:inode` of that stream (systemd.exec(5)), and a child that
/// redirected stderr elsewhere inherits the variable, so compare.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(meta) => dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino()),
        Err(_) => false,
    }
}

/// The level filter: `SLUICE_LOG` (`env`) when set, else `[log] level`.
pub fn filter(config: &LogConfig, env: Option<&str>) -> Result<EnvFilter, LogError> {
    match env.map(str::trim).filter(|v| !v.is_empty()) {
        Some(value) => EnvFilter::builder()
            .parse(value)
            .map_err(|e| LogError::Filter {
                value: value.to_owned(),
                reason: e.to_string(),
            }),
        None => Ok(EnvFilter::new(config.level.name())),
    }
}

/// Changes the level filter of a running subscriber (SIGHUP reloads it).
pub type LevelHandle = reload::Handle<EnvFilter, Registry>;

/// A subscriber writing `config.format` for `sink` to `writer`, and the
/// handle that swaps its level filter at run time.
pub fn subscriber<W>(
    config: &LogConfig,
    sink: LogSink,
    filter: EnvFilter,
    writer: W,
) -> (Box<dyn Subscriber + Send + Sync>, LevelHandle)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
    let (filter, handle) = reload::Layer::new(filter);
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    let format: Box<dyn Layer<Filtered> + Send + Sync> = match config.format {
        LogFormat::Json => Box::new(
            layer
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_ansi(false),
        ),
        LogFormat::Text if sink.journal => Box::new(
            layer
                .with_ansi(false)
                .without_time()
                .event_format(JournalPriority(
                    tracing_subscriber::fmt::format()
                        .with_ansi(false)
                        .without_time(),
                )),
        ),
        LogFormat::Text => Box::new(layer.with_ansi(sink.terminal)),
    };
    let subscriber = tracing_subscriber::registry().with(filter).with(format);
    (Box::new(subscriber), handle)
}

/// Installs the process-wide subscriber for `config`, on stderr; the
/// handle changes its level later.
pub fn init(config: &LogConfig) -> Result<LevelHandle, LogError> {
    let filter = filter(config, env_level().as_deref())?;
    let (subscriber, handle) = subscriber(config, LogSink::stderr(), filter, std::io::stderr);
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LogError::AlreadySet)?;
    Ok(handle)
}

/// Sets the level of a running subscriber to `config`'s (`SLUICE_LOG`, when
/// set, still wins, as at start-up).
pub fn set_level(handle: &LevelHandle, config: &LogConfig) -> Result<(), LogError> {
    let filter = filter(config, env_level().as_deref())?;
    handle.reload(filter).map_err(|_| LogError::Gone)
}

fn env_level() -> Option<String> {
    std::env::var(LEVEL_ENV).ok()
}

/// Prefixes each line with its syslog priority for journald (sd-daemon(3)).
#[derive(Debug)]
struct JournalPriority<F>(F);

/// The syslog priority journald reads from a `<N>` prefix.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::config::LogLevel;

    /// A writer into a shared buffer, so a test reads what was logged.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Self;
        fn make_writer(&'w self) -> Self {
            self.clone()
        }
    }

    fn logged(format: LogFormat, sink: LogSink, env: Option<&str>) -> String {
        let config = LogConfig {
            format,
            level: LogLevel::Info,
        };
        let out = Captured::default();
        let (subscriber, _) = subscriber(&config, sink, filter(&config, env).unwrap(), out.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(worker = 3, "packet worker stopped");
            tracing::warn!("socket buffer capped");
            tracing::info!(local_addr = "127.0.0.1:7480", "control API listening");
            tracing::debug!("not at info");
        });
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    const FILE: LogSink = LogSink {
        terminal: false,
        journal: false,
    };

    #[test]
    fn text_off_a_terminal_has_no_escape_codes() {
        let text = logged(LogFormat::Text, FILE, None);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(text.contains("ERROR sluice::logging::tests: packet worker stopped worker=3"));
        let coloured = logged(
            LogFormat::Text,
            LogSink {
                terminal: true,
                journal: false,
            },
            None,
        );
        assert!(coloured.contains("\x1b["), "a terminal gets colour");
    }

    #[test]
    fn the_journal_gets_priorities_and_no_timestamps() {
        let sink = LogSink {
            terminal: false,
            journal: true,
        };
        let text = logged(LogFormat::Text, sink, None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("<3>ERROR sluice::logging::tests: packet worker stopped"));
        assert!(lines[1].starts_with("<4> WARN "), "{}", lines[1]);
        assert!(lines[2].starts_with("<6> INFO "), "{}", lines[2]);
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn json_is_one_object_per_line_with_level_and_fields() {
        let text = logged(LogFormat::Json, FILE, None);
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0]["level"], "ERROR");
        assert_eq!(events[0]["message"], "packet worker stopped");
        assert_eq!(events[0]["worker"], 3);
        assert_eq!(events[0]["target"], "sluice::logging::tests");
        assert!(events[0]["timestamp"].is_string());
        assert_eq!(events[1]["level"], "WARN");
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn the_environment_overrides_the_level_and_bad_filters_say_how() {
        let debug = logged(LogFormat::Text, FILE, Some("debug"));
        assert!(debug.contains("not at info"));
        let quiet = logged(LogFormat::Text, FILE, Some("error"));
        assert_eq!(quiet.lines().count(), 1);
        let config = LogConfig::default();
        let e = filter(&config, Some("info,sluice=loud"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("SLUICE_LOG=\"info,sluice=loud\" is not a log filter"),
            "{e}"
        );
        assert!(e.contains("use a level such as \"info\""), "{e}");
    }
}
