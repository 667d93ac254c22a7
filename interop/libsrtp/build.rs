//! Finds the system libsrtp2 through pkg-config and tells cargo how to link it.

fn main() {
    // src/ffi.rs mirrors the 2.5 header, and the behaviours documented in
    // src/lib.rs (pending ROC, replay statuses) were read from 2.5's srtp.c.
    if let Err(err) = pkg_config::Config::new()
        .atleast_version("2.5")
        .probe("libsrtp2")
    {
        panic!(
            "libsrtp2 not found: install the Debian package libsrtp2-dev \
             (apt-get install libsrtp2-dev) [pkg-config said: {err}]"
        );
    }
}
