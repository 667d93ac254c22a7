//! The memory layout the kernels in `hw/gpu/aes_gcm.cl` expect, and the
//! packing of a batch into it. Sans-IO: filled and read on the host,
//! tested without a device.

use crate::GpuError;

/// 32-bit words per key slot (round count, bitsliced round keys, powers of H).
pub const KEY_WORDS: usize = 640;
/// How many GHASH blocks (AAD, data and the length block together) one
/// job may span: the kernel holds H^1 ..= H^MAX_BLOCKS per key.
pub const MAX_BLOCKS: usize = 128;
/// 32-bit words per job descriptor.
pub const JOB_WORDS: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// AES-GCM nonce length as SRTP uses it.
pub const NONCE_LEN: usize = 12;

/// GHASH blocks a job of `aad` and `data` bytes spans.
pub fn blocks(aad: usize, data: usize) -> usize {
    aad.div_ceil(16) + data.div_ceil(16) + 1
}

/// Whether a job of these lengths fits the kernels.
pub fn fits(aad: usize, data: usize) -> bool {
    blocks(aad, data) <= MAX_BLOCKS
}

/// A batch being packed: descriptors, the input bytes (AAD and data at
/// 16-byte aligned offsets) and where each job's output goes.
#[derive(Debug, Default)]
pub struct Packing {
    pub(crate) desc: Vec<u32>,
    pub(crate) input: Vec<u8>,
    /// Output bytes needed (sum of data lengths, 16-aligned each).
    pub(crate) out_len: usize,
    /// Per job: (output offset, data length).
    pub(crate) outputs: Vec<(usize, usize)>,
    /// Offset and length of the last data pushed, for shared payloads.
    last_data: Option<(usize, usize)>,
}

fn align16(n: usize) -> usize {
    n.div_ceil(16) * 16
}

fn word(n: usize) -> u32 {
    // Offsets and lengths are bounded by the batch sizes the lanes build
    // (well under 4 GiB); saturate rather than wrap if a caller ever
    // exceeds that, which the kernel then reads as out of range.
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Packing {
    /// Forgets every job, keeping the memory.
    pub fn clear(&mut self) {
        self.desc.clear();
        self.input.clear();
        self.out_len = 0;
        self.outputs.clear();
        self.last_data = None;
    }

    /// Jobs packed so far.
    pub fn len(&self) -> usize {
        self.outputs.len()
    }

    /// Whether no job is packed.
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    fn append(&mut self, bytes: &[u8]) -> usize {
        let at = self.input.len();
        self.input.extend_from_slice(bytes);
        self.input.resize(align16(self.input.len()), 0);
        at
    }

    /// Adds a job over its own `data`.
    pub fn push(
        &mut self,
        slot: u32,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &[u8],
    ) -> Result<(), GpuError> {
        if !fits(aad.len(), data.len()) {
            return Err(GpuError::TooLong {
                aad: aad.len(),
                data: data.len(),
            });
        }
        let data_at = self.append(data);
        self.last_data = Some((data_at, data.len()));
        self.push_desc(slot, nonce, aad, data_at, data.len());
        Ok(())
    }

    /// Adds a job over the same data as the previous job (a fan-out: one
    /// payload uploaded once, sealed under many keys).
    pub fn push_same_data(
        &mut self,
        slot: u32,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
    ) -> Result<(), GpuError> {
        let (data_at, data_len) = self.last_data.unwrap_or((0, 0));
        if !fits(aad.len(), data_len) {
            return Err(GpuError::TooLong {
                aad: aad.len(),
                data: data_len,
            });
        }
        self.push_desc(slot, nonce, aad, data_at, data_len);
        Ok(())
    }

    fn push_desc(
        &mut self,
        slot: u32,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data_at: usize,
        data_len: usize,
    ) {
        let aad_at = self.append(aad);
        let out_at = self.out_len;
        self.out_len += align16(data_len);
        self.outputs.push((out_at, data_len));
        self.desc.push(slot);
        for chunk in nonce.chunks_exact(4) {
            self.desc
                .push(u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
        }
        self.desc.extend([
            word(aad_at),
            word(aad.len()),
            word(data_at),
            word(data_len),
            word(out_at),
            0,
            0,
            0,
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_pack_at_aligned_offsets_and_share_data() {
        let mut p = Packing::default();
        p.push(3, &[1; 12], &[9; 12], &[7; 20]).unwrap();
        p.push_same_data(4, &[2; 12], &[8; 13]).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p.desc.len(), 2 * JOB_WORDS);
        // data at 0 (20 bytes, padded to 32), aad 1 at 32, aad 2 at 48.
        assert_eq!(
            &p.desc[..JOB_WORDS],
            &[
                3,
                0x0101_0101,
                0x0101_0101,
                0x0101_0101,
                32,
                12,
                0,
                20,
                0,
                0,
                0,
                0
            ]
        );
        assert_eq!(
            &p.desc[JOB_WORDS..],
            &[
                4,
                0x0202_0202,
                0x0202_0202,
                0x0202_0202,
                48,
                13,
                0,
                20,
                32,
                0,
                0,
                0
            ]
        );
        assert_eq!(p.input.len(), 64);
        assert_eq!(p.outputs, vec![(0, 20), (32, 20)]);
        assert_eq!(p.out_len, 64);
    }

    #[test]
    fn jobs_longer_than_the_powers_of_h_are_refused() {
        let mut p = Packing::default();
        // 16 AAD blocks + 111 data blocks + 1 length block = 128: fits.
        assert!(p.push(0, &[0; 12], &[0; 256], &[0; 111 * 16]).is_ok());
        assert_eq!(
            p.push(0, &[0; 12], &[0; 256], &[0; 111 * 16 + 1]),
            Err(GpuError::TooLong {
                aad: 256,
                data: 111 * 16 + 1
            })
        );
        assert_eq!(p.len(), 1);
    }
}
