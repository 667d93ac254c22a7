//! `cargo xtask deb`: the Debian package (cargo-deb, metadata in the root
//! Cargo.toml, maintainer scripts in packaging/deb/), and the checks CI
//! runs on it: lintian with no errors, then an install into a throwaway
//! root (`dpkg --root` with chrootless maintainer scripts) that checks
//! every path the systemd unit names landed, the user exists, nothing was
//! enabled, and a purge removes it again.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::packages::{self, Stage};
use crate::sh;

/// Builds the release binary and the .deb; returns the .deb's path.
pub(crate) fn build() -> Result<PathBuf, String> {
    packages::ensure(Stage::Ci)?;
    packages::ensure_cargo_tool("cargo-deb", "cargo-deb")?;
    sh::say("building the release binary and the Debian package (cargo deb)");
    sh::run(&[
        "cargo",
        "build",
        "--release",
        "--package",
        "sluice",
        "--bin",
        "sluice",
    ])?;
    let out_dir = sh::target_dir().join("debian");
    let out = out_dir.to_string_lossy().into_owned();
    sh::run(&[
        "cargo",
        "deb",
        "--package",
        "sluice",
        "--no-build",
        "--output",
        &out,
    ])?;
    let mut debs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&out_dir)
        .map_err(|e| format!("{out}: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("sluice_") && n.ends_with("_amd64.deb"))
        })
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    debs.sort();
    let deb = debs
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| format!("cargo deb wrote no sluice_*_amd64.deb into {out}"))?;
    eprintln!("    built {}", deb.display());
    // dpkg-shlibdeps found the FFmpeg and libopus runtime libraries the
    // binary links (libswresample no longer: callers' audio is decoded and
    // encoded at 8 kHz by libopus itself, media/libopus.rs).
    let depends = sh::output("dpkg-deb", &["--field", &deb.to_string_lossy(), "Depends"])?;
    for library in [
        "libavcodec",
        "libavutil",
        "libswscale",
        "libopus0",
        "libc6",
        "systemd",
    ] {
        if !depends.contains(library) {
            return Err(format!(
                "the package's Depends lacks {library}: {}",
                depends.trim()
            ));
        }
    }
    eprintln!("    Depends: {}", depends.trim());
    Ok(deb)
}

/// lintian, failing on any error (warnings are printed, see the report).
pub(crate) fn lint(deb: &Path) -> Result<(), String> {
    sh::say("lintian (no errors allowed)");
    let deb = deb.to_string_lossy();
    sh::run(&["lintian", "--fail-on", "error", "--info", &deb])
}

/// Installs `deb` into a fresh root and checks it against the unit.
pub(crate) fn install_check(deb: &Path) -> Result<(), String> {
    sh::say("installing the package into a throwaway root (dpkg --root) and checking it");
    let root = sh::target_dir().join("deb-root");
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    }
    let admin = root.join("var/lib/dpkg");
    for dir in ["info", "updates", "triggers"] {
        mkdir(&admin.join(dir))?;
    }
    for file in ["status", "available"] {
        write(&admin.join(file), "")?;
    }
    mkdir(&root.join("etc"))?;
    let root_arg = format!("--root={}", root.display());
    let deb_arg = deb.to_string_lossy();
    // The root holds no libc or FFmpeg, so Depends cannot be met there; the
    // scripts run on the host's tools with DPKG_ROOT pointing at the root.
    let dpkg = |args: &[&str]| -> Result<(), String> {
        let mut argv = vec![
            "dpkg",
            &root_arg,
            "--force-script-chrootless",
            "--force-depends",
        ];
        argv.extend_from_slice(args);
        sh::run(&argv)
    };
    dpkg(&["--install", &deb_arg])?;
    check_installed(&root)?;
    dpkg(&["--purge", "sluice"])?;
    for gone in ["usr/bin/sluice", "etc/sluice/sluice.toml", "var/lib/sluice"] {
        if root.join(gone).exists() {
            return Err(format!("/{gone} is still there after dpkg --purge"));
        }
    }
    eprintln!("    purge removed the binary, the config and /var/lib/sluice");
    std::fs::remove_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))
}

fn mkdir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The value of `Key=` in a unit file's text.
fn unit_value<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .next()
        .map(str::trim)
}

/// The numeric id of `name` in a passwd/group file's text.
fn id_of(file: &str, name: &str) -> Option<u32> {
    file.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| f.get(2)?.parse().ok())
}

fn check_installed(root: &Path) -> Result<(), String> {
    let unit_path = root.join("usr/lib/systemd/system/sluice.service");
    let unit = read(&unit_path)?;
    if unit != read(&sh::root().join("systemd/sluice.service"))? {
        return Err("the installed unit differs from systemd/sluice.service".to_owned());
    }
    let exec = unit_value(&unit, "ExecStart").ok_or("the unit has no ExecStart")?;
    let words: Vec<&str> = exec.split_whitespace().collect();
    let binary = root.join(words[0].trim_start_matches('/'));
    let mode = std::fs::metadata(&binary)
        .map_err(|e| format!("ExecStart names {}, which is not installed: {e}", words[0]))?
        .permissions()
        .mode();
    if mode & 0o111 == 0 {
        return Err(format!("{} is not executable ({mode:o})", words[0]));
    }
    let config = words
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| w[1])
        .ok_or("ExecStart passes no --config")?;
    let config_path = root.join(config.trim_start_matches('/'));
    let config_meta = std::fs::metadata(&config_path)
        .map_err(|e| format!("ExecStart's --config {config} is not installed: {e}"))?;

    let passwd = read(&root.join("etc/passwd"))?;
    let group = read(&root.join("etc/group"))?;
    let user = unit_value(&unit, "User").ok_or("the unit has no User")?;
    let group_name = unit_value(&unit, "Group").ok_or("the unit has no Group")?;
    let uid = id_of(&passwd, user).ok_or(format!("User={user} was not created"))?;
    let gid = id_of(&group, group_name).ok_or(format!("Group={group_name} was not created"))?;
    if config_meta.gid() != gid || config_meta.mode() & 0o777 != 0o640 {
        return Err(format!(
            "{config} should be 0640 root:{group_name}, is {:o} {}:{}",
            config_meta.mode() & 0o777,
            config_meta.uid(),
            config_meta.gid()
        ));
    }
    // The directories the unit's sandbox expects, made by tmpfiles.
    for (key, base) in [
        ("StateDirectory", "var/lib"),
        ("ConfigurationDirectory", "etc"),
    ] {
        let name = unit_value(&unit, key).ok_or(format!("the unit has no {key}"))?;
        let dir = root.join(base).join(name);
        if !dir.is_dir() {
            return Err(format!("{key}={name}: /{base}/{name} was not created"));
        }
    }
    let state = std::fs::metadata(root.join("var/lib/sluice")).map_err(|e| e.to_string())?;
    if state.uid() != uid {
        return Err("/var/lib/sluice is not owned by the sluice user".to_owned());
    }
    for file in [
        "usr/lib/sysusers.d/sluice.conf",
        "usr/lib/tmpfiles.d/sluice.conf",
        "usr/lib/sysctl.d/60-sluice.conf",
        "usr/share/sluice/contrib/grafana/sluice.json",
        "usr/share/sluice/contrib/prometheus/alerts.yml",
        "usr/share/doc/sluice/copyright",
    ] {
        if !root.join(file).is_file() {
            return Err(format!("/{file} is not installed"));
        }
    }
    let conffiles = read(&root.join("var/lib/dpkg/info/sluice.conffiles"))?;
    if !conffiles.lines().any(|l| l.trim() == config) {
        return Err(format!("{config} is not a conffile: {conffiles:?}"));
    }
    let wants = root.join("etc/systemd/system/multi-user.target.wants/sluice.service");
    if wants.exists() || wants.is_symlink() {
        return Err("installing enabled the unit; it must wait for the operator".to_owned());
    }
    // The shipped config is valid for the shipped binary.
    let binary_arg = binary.to_string_lossy();
    let config_arg = config_path.to_string_lossy();
    sh::run(&[&binary_arg, "check-config", &config_arg])?;
    eprintln!(
        "    ExecStart {}, --config {config}, User/Group {user}/{group_name}, state and config \
         directories, conffile, not enabled: all as the unit expects",
        words[0]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_values_and_ids_are_read() {
        let unit = "[Service]\nExecStart=/usr/bin/sluice run --config /etc/sluice/sluice.toml\n\
                    User=sluice\n";
        assert_eq!(
            unit_value(unit, "ExecStart"),
            Some("/usr/bin/sluice run --config /etc/sluice/sluice.toml")
        );
        assert_eq!(unit_value(unit, "User"), Some("sluice"));
        assert_eq!(unit_value(unit, "Group"), None);
        assert_eq!(id_of("root:x:0:\nsluice:x:999:\n", "sluice"), Some(999));
        assert_eq!(id_of("root:x:0:\n", "sluice"), None);
    }
}
