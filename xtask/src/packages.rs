//! The system packages sluice needs, in ONE list, and the code that
//! installs the missing ones with apt-get.
//!
//! To add a package: add a line to [`APT`] saying who needs it and when
//! (`Build`: compiling the daemon; `Test`: `cargo xtask test`; `Ci`: the
//! other gates of `cargo xtask ci`). Nothing else needs to change.

use crate::sh;

/// When a package is needed; each stage includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// `cargo xtask run`: building the daemon.
    Build,
    /// `cargo xtask test`: the test suite's reference peers and tools.
    Test,
    /// `cargo xtask ci` / `cargo xtask deb`: packaging and the other gates.
    Ci,
}

/// One Debian package: its name, when it is needed, and what needs it.
#[derive(Debug)]
pub(crate) struct Package {
    pub(crate) name: &'static str,
    pub(crate) stage: Stage,
    pub(crate) why: &'static str,
}

const fn pkg(name: &'static str, stage: Stage, why: &'static str) -> Package {
    Package { name, stage, why }
}

/// Every Debian (bookworm) package any command needs.
pub(crate) const APT: &[Package] = &[
    pkg(
        "pkg-config",
        Stage::Build,
        "finds the FFmpeg and libsrtp libraries for the -sys crates",
    ),
    pkg(
        "clang",
        Stage::Build,
        "bindgen (ffmpeg-sys-next) parses the FFmpeg headers",
    ),
    pkg("libclang-dev", Stage::Build, "bindgen loads libclang"),
    pkg(
        "libavcodec-dev",
        Stage::Build,
        "ffmpeg-next: G.711/Opus codecs of the dial-in bridge",
    ),
    pkg(
        "libavformat-dev",
        Stage::Build,
        "ffmpeg-next links libavformat",
    ),
    pkg(
        "libavutil-dev",
        Stage::Build,
        "ffmpeg-next: FFmpeg utilities",
    ),
    pkg(
        "libswresample-dev",
        Stage::Build,
        "ffmpeg-next: 8 kHz <-> 48 kHz resampling",
    ),
    pkg(
        "libswscale-dev",
        Stage::Build,
        "ffmpeg-next: scaling for the video renditions (src/transcode/)",
    ),
    pkg(
        "libsrtp2-dev",
        Stage::Test,
        "interop/libsrtp: the reference SRTP peer in tests and benches",
    ),
    pkg(
        "rtpengine-daemon",
        Stage::Test,
        "bench/tests/rtpengine.rs and the bench's rtpengine target",
    ),
    pkg(
        "iproute2",
        Stage::Test,
        "ip netns, veth and tc netem for tests/faults.rs; `ip link set lo up` in the browser \
         tests' network namespaces",
    ),
    pkg(
        "sip-tester",
        Stage::Test,
        "SIPp, the phone in tests/dialin.rs",
    ),
    pkg(
        "socat",
        Stage::Test,
        "the OpenSSL TLS hop in front of SIPp's TCP (Debian's SIPp has no TLS) in tests/dialin.rs",
    ),
    pkg(
        "ocl-icd-libopencl1",
        Stage::Test,
        "the OpenCL loader crates/sluice-gpu opens at run time",
    ),
    pkg(
        "pocl-opencl-icd",
        Stage::Test,
        "an OpenCL driver on the CPU: the GPU AES-GCM kernels run on it in the tests",
    ),
    pkg(
        "clinfo",
        Stage::Ci,
        "lists the OpenCL devices in the CI log",
    ),
    pkg(
        "redis-server",
        Stage::Test,
        "the cluster's Redis in tests/cluster.rs (private instances on free ports)",
    ),
    pkg(
        "ffmpeg",
        Stage::Test,
        "the ffmpeg CLI: an SRTP peer in tests/ffmpeg_no_mux.rs, the rendition tests' publisher and baseline",
    ),
    pkg(
        "prometheus",
        Stage::Test,
        "promtool, for tests/contrib.rs and the alert rules gate",
    ),
    pkg(
        "python3-venv",
        Stage::Ci,
        "the venv .ci/schemathesis.sh installs schemathesis (PyPI) in",
    ),
    pkg(
        "systemd",
        Stage::Ci,
        "systemd-analyze verify; systemd-sysusers/-tmpfiles in the deb install check",
    ),
    pkg(
        "dpkg-dev",
        Stage::Ci,
        "dpkg-shlibdeps: cargo-deb computes the package's Depends with it",
    ),
    pkg(
        "chromium",
        Stage::Test,
        "headless Chromium: the browser in the WebRTC and meeting-page tests (tests/browser/)",
    ),
    pkg(
        "nodejs",
        Stage::Test,
        "runs the browser tests' driver (playwright-core, tests/browser/); the machine's \
         NodeSource build carries npm (Debian's own npm package conflicts with it)",
    ),
    pkg("lintian", Stage::Ci, "checks the .deb (no errors allowed)"),
];

/// The packages needed up to `stage`.
pub(crate) fn needed(stage: Stage) -> impl Iterator<Item = &'static Package> {
    APT.iter().filter(move |p| p.stage <= stage)
}

fn is_debian() -> bool {
    std::path::Path::new("/etc/debian_version").exists()
        && sh::found("apt-get")
        && sh::found("dpkg-query")
}

fn installed(name: &str) -> bool {
    sh::output("dpkg-query", &["-W", "-f=${Status}", name])
        .is_ok_and(|status| status.trim() == "install ok installed")
}

/// What `stage` still needs installed, given whether this is Debian and
/// which packages are; an error naming every package off Debian.
fn missing(
    stage: Stage,
    debian: bool,
    installed: &dyn Fn(&str) -> bool,
) -> Result<Vec<&'static Package>, String> {
    if !debian {
        let names: Vec<&str> = needed(stage).map(|p| p.name).collect();
        return Err(format!(
            "this is not a Debian system (no /etc/debian_version, apt-get or dpkg-query), so \
             xtask cannot install what sluice needs. Install the equivalents of these Debian \
             bookworm packages yourself, then run the command again:\n  {}",
            names.join(" ")
        ));
    }
    Ok(needed(stage).filter(|p| !installed(p.name)).collect())
}

/// Installs what `stage` needs and is missing: a no-op when all is there.
pub(crate) fn ensure(stage: Stage) -> Result<(), String> {
    let missing = missing(stage, is_debian(), &installed)?;
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|p| p.name).collect();
    sh::say(&format!(
        "installing system packages with apt-get: {}",
        names.join(" ")
    ));
    for p in &missing {
        eprintln!("    {:<18} {}", p.name, p.why);
    }
    let root = sh::output("id", &["-u"]).is_ok_and(|uid| uid.trim() == "0");
    let prefix: &[&str] = if root {
        &[]
    } else if sh::found("sudo") {
        &["sudo", "--preserve-env=DEBIAN_FRONTEND"]
    } else {
        return Err(format!(
            "installing needs root and there is no sudo: as root, run\n  apt-get update && \
             apt-get install -y {}",
            names.join(" ")
        ));
    };
    let apt = |args: &[&str]| -> Result<(), String> {
        let mut argv: Vec<&str> = prefix.to_vec();
        argv.push("apt-get");
        argv.extend_from_slice(args);
        sh::run_env(&argv, &[("DEBIAN_FRONTEND", "noninteractive")])
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq"];
    install.extend(names.iter().copied());
    apt(&install)
}

/// Cargo subcommands some commands need, installed once when missing.
pub(crate) fn ensure_cargo_tool(binary: &str, crate_name: &str) -> Result<(), String> {
    if sh::output("cargo", &[&binary["cargo-".len()..], "--version"]).is_ok() {
        return Ok(());
    }
    sh::say(&format!(
        "installing {crate_name} (cargo install --locked, once)"
    ));
    sh::run(&["cargo", "install", crate_name, "--locked", "--quiet"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_unique_and_each_package_says_why() {
        let mut names: Vec<&str> = APT.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), APT.len(), "a package is listed twice");
        assert!(APT.iter().all(|p| p.why.len() > 10));
        assert!(needed(Stage::Build).all(|p| p.stage == Stage::Build));
        assert_eq!(needed(Stage::Ci).count(), APT.len());
    }

    #[test]
    fn only_the_missing_are_installed_and_off_debian_every_name_is_printed() {
        let all = missing(Stage::Test, true, &|_| true).unwrap();
        assert!(all.is_empty(), "nothing to do when everything is there");
        let some = missing(Stage::Build, true, &|name| name != "clang").unwrap();
        assert_eq!(some.len(), 1);
        assert_eq!(some[0].name, "clang");
        let e = missing(Stage::Test, false, &|_| true).unwrap_err();
        assert!(e.starts_with("this is not a Debian system"), "{e}");
        for p in needed(Stage::Test) {
            assert!(e.contains(p.name), "{e}");
        }
        assert!(!e.contains("lintian"), "only what the command needs: {e}");
    }
}
