//! Headless Chromium for the browser tests: whether it and its driver are
//! here, and a network namespace of the test's own (only `lo`) to run
//! the relay and the browser in, so nothing leaves what the test made.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `tests/browser`: the scenarios (node, playwright-core).
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Whether Chromium, node and the driver are here; panics under `CI`.
pub fn browser_ready() -> bool {
    let chromium = Path::new("/usr/bin/chromium").exists();
    let driver = browser_dir().join("node_modules/playwright-core").exists();
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if chromium && driver && node {
        return true;
    }
    let missing = format!(
        "chromium at /usr/bin/chromium: {chromium}, node: {node}, \
         tests/browser/node_modules: {driver} (run `npm ci --prefix tests/browser`)"
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "the browser tests need {missing}"
    );
    eprintln!("skipping the browser test: {missing}");
    false
}

/// One browser scenario at a time: Chromium is heavy on a 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` on a thread moved into a new network namespace with `lo` up;
/// processes it starts (the relay, node, Chromium) live there too.
pub fn in_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let _one = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("unshare(CLONE_NEWNET): the browser tests run as root");
                let up = Command::new("ip")
                    .args(["link", "set", "lo", "up"])
                    .status()
                    .expect("run ip");
                assert!(up.success(), "ip link set lo up failed");
                f()
            })
            .join()
            .expect("the namespaced thread panicked")
    })
}
