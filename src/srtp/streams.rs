//! Per-SSRC state tables. A session keeps one table per direction and
//! protocol; entries are created only for packets that authenticated (or,
//! when sending, that the relay itself produced), so a flood of forged
//! SSRCs allocates nothing. Lookups hash the SSRC with one multiply.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::SrtpError;

/// A table of per-SSRC state with an upper bound on its size.
#[derive(Debug)]
pub(crate) struct StreamTable<S> {
    map: HashMap<u32, S, BuildHasherDefault<SsrcHasher>>,
    limit: usize,
}

impl<S: Default> StreamTable<S> {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            map: HashMap::default(),
            limit,
        }
    }

    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    pub(crate) fn get(&self, ssrc: u32) -> Option<&S> {
        self.map.get(&ssrc)
    }

    /// The entry for `ssrc`, created (from `Default`) if the limit allows.
    pub(crate) fn entry(&mut self, ssrc: u32) -> Result<&mut S, SrtpError> {
        self.entry_with(ssrc, S::default)
    }

    /// The entry for `ssrc`, created by `make` if the limit allows.
    pub(crate) fn entry_with(
        &mut self,
        ssrc: u32,
        make: impl FnOnce() -> S,
    ) -> Result<&mut S, SrtpError> {
        let full = self.map.len() >= self.limit;
        match self.map.entry(ssrc) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(_) if full => {
                Err(SrtpError::TooManyStreams { limit: self.limit })
            }
            std::collections::hash_map::Entry::Vacant(e) => Ok(e.insert(make())),
        }
    }

    pub(crate) fn remove(&mut self, ssrc: u32) {
        self.map.remove(&ssrc);
    }
}

/// Fibonacci hashing of a 32-bit SSRC: the multiply spreads the bits into
/// the high half, which the hash table's control bytes use.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SsrcHasher(u64);

impl Hasher for SsrcHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_refused_past_the_limit_but_existing_ones_stay_reachable() {
        let mut t: StreamTable<u32> = StreamTable::new(2);
        *t.entry(1).unwrap() = 10;
        *t.entry(2).unwrap() = 20;
        assert_eq!(
            t.entry(3).unwrap_err(),
            SrtpError::TooManyStreams { limit: 2 }
        );
        assert_eq!(*t.entry(1).unwrap(), 10);
        t.remove(1);
        assert!(t.entry(3).is_ok());
        assert_eq!(t.get(2), Some(&20));
    }
}
