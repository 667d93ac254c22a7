//! The targets by name: `ceiling` (no relay), `forward` (plain
//! forwarding through sluice's data plane, no crypto: the baseline of
//! relay CPU per packet), `sluice` (the daemon binary) and `rtpengine`
//! (Debian's rtpengine-daemon, in [`crate::rtpengine`]).

pub mod ceiling;
pub mod cluster;
pub mod forward;
pub mod sluice;

use std::path::PathBuf;

use ::sluice::srtp::SrtpProfile;

pub use self::ceiling::Ceiling;
pub use self::cluster::SluiceCluster;
pub use self::sluice::{Sluice, SluiceOptions};
use crate::target::{Target, TargetError};

/// Target names `--targets` accepts, in report order.
pub const NAMES: &[&str] = &["ceiling", "forward", "sluice", "rtpengine"];

/// How targets are set up for a run.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    /// The sluice binary (None: look next to this program and in the
    /// workspace's target directory).
    pub sluice_binary: Option<PathBuf>,
    /// Cores the relay may run on (`--cpu-pin`); empty: any.
    pub relay_cores: Vec<usize>,
    /// Relay packet workers (0: one per relay core, or per core).
    pub relay_workers: usize,
    /// Relay packet I/O backend (sluice: `auto`, `io_uring`, `recvmmsg`).
    pub relay_io: String,
}

impl Default for TargetOptions {
    fn default() -> Self {
        Self {
            sluice_binary: None,
            relay_cores: Vec::new(),
            relay_workers: 0,
            relay_io: "auto".into(),
        }
    }
}

/// Starts the target called `name`.
pub fn open(
    name: &str,
    profile: SrtpProfile,
    options: &TargetOptions,
) -> Result<Box<dyn Target>, TargetError> {
    match name {
        "ceiling" => Ok(Box::new(Ceiling::new(profile))),
        "forward" => Ok(Box::new(forward::Forward::start(
            profile,
            options.relay_workers,
            &options.relay_io,
            &options.relay_cores,
        )?)),
        "sluice" => {
            let binary = match &options.sluice_binary {
                Some(path) => path.clone(),
                None => sluice::find_binary().map_err(|reason| TargetError::Start {
                    target: "sluice",
                    reason,
                })?,
            };
            let opts = SluiceOptions {
                binary,
                relay_cores: options.relay_cores.clone(),
                workers: options.relay_workers,
                io: options.relay_io.clone(),
                cluster: None,
            };
            Ok(Box::new(Sluice::start(&opts)?))
        }
        "rtpengine" => {
            let engine = crate::rtpengine::Rtpengine::start(profile)?;
            // `--cpu-pin`: the relay's cores, as sluice and forward get.
            if let (Some(pid), false) = (engine.pid(), options.relay_cores.is_empty()) {
                crate::pin::pin_process(pid, &options.relay_cores).map_err(|reason| {
                    TargetError::Start {
                        target: "rtpengine",
                        reason,
                    }
                })?;
            }
            Ok(Box::new(engine))
        }
        other => Err(TargetError::Start {
            target: "unknown",
            reason: format!(
                "no target called {other:?}; known targets: {}",
                NAMES.join(", ")
            ),
        }),
    }
}
