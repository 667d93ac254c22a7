//! Helpers shared by the unit tests of the crate.

/// Hex to bytes, ignoring whitespace (for vectors copied from RFCs).
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).expect("test hex is valid"))
        .collect()
}

/// Every AES-GCM backend the tests must cover. Outside CI a machine
/// without an OpenCL device tests the CPU backends only (and says so);
/// with `CI` set the GPU backend is required, so CI cannot skip it.
pub(crate) fn backend_kinds() -> Vec<crate::crypto::BackendKind> {
    let kinds = crate::crypto::BackendKind::usable();
    if !kinds.contains(&crate::crypto::BackendKind::Gpu) {
        let why = crate::crypto::gpu::process_engine(true)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the GPU backend has no OpenCL device ({why}): install pocl-opencl-icd"
        );
        eprintln!("GPU backend not tested here: {why}");
    }
    kinds
}
