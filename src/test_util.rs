//! Helpers shared by the unit tests of the crate.

/// Hex to bytes, ignoring whitespace (for vectors copied from RFCs).
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).expect("test hex is valid"))
        .collect()
}
