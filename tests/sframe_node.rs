//! The meeting page's SFrame code (`web/sframe.js`, `web/meetkeys.js`)
//! under Node's test runner: the RFC 9605 Appendix C vectors (header,
//! key derivation, AES-GCM encryption for suites 0x0004 and 0x0005) and
//! the meeting keyring (KID per sender, counter per frame, rotation with
//! an overlap, clear codec bytes, frames that fail to authenticate).
//!
//! Without `node` the test says so and passes, except when `CI` is set:
//! then a missing `node` fails it (`cargo xtask test` installs nodejs).

use std::process::Command;

#[test]
fn sframe_javascript_passes_the_rfc_9605_vectors_under_node() {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = match Command::new("node")
        .args(["--test", "tests/web/"])
        .current_dir(root)
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but `node` cannot run ({e}): install nodejs (cargo xtask test does)"
            );
            eprintln!("skipped: `node` cannot run ({e}); install nodejs to run the SFrame tests");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node --test tests/web/ failed:\n{stdout}\n{stderr}"
    );
    // Every test file ran and none was skipped: a renamed file or a
    // `test.skip` must not pass unnoticed.
    let count = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {key} ")))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no `# {key}` line in node's report:\n{stdout}"))
    };
    assert!(count("pass") >= 12, "{stdout}");
    assert_eq!(count("fail"), 0, "{stdout}");
    assert_eq!(count("skipped"), 0, "{stdout}");
    assert_eq!(count("todo"), 0, "{stdout}");
}
