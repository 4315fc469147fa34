//! Incremental FC CRC-32 updates. The CRC is linear, so when a frame's header changes the new
//! CRC is the old one XOR the raw CRC of the change, shifted past the bytes that follow it:
//! rewriting a forwarded 2 KiB data frame costs work in the header's size, not the payload's.

/// The reflected CRC-32 polynomial (IEEE 802.3, the FC CRC).
const POLY: u32 = 0xEDB8_8320;

/// Longest stretch of bytes a change can be shifted past: an FC frame.
pub const MAX_SHIFT: usize = 2200;

/// Tables for raw CRC updates and zero-shifts up to [`MAX_SHIFT`] bytes.
#[derive(Clone)]
pub struct CrcPatcher {
    byte_table: [u32; 256],
    /// `x^(8n) mod P` for n = 0..=MAX_SHIFT, the operator that appends n zero bytes.
    zero_shift: Box<[u32]>,
}

impl core::fmt::Debug for CrcPatcher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CrcPatcher")
    }
}

/// Multiply two polynomials modulo P in the reflected representation (zlib's `multmodp`).
fn mul_mod_p(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut product = 0u32;
    loop {
        if a & m != 0 {
            product ^= b;
            if a & (m - 1) == 0 {
                break;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    product
}

impl Default for CrcPatcher {
    fn default() -> Self {
        CrcPatcher::new()
    }
}

impl CrcPatcher {
    /// Build the tables (a few microseconds; once per worker).
    pub fn new() -> CrcPatcher {
        let mut byte_table = [0u32; 256];
        for (i, slot) in byte_table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            }
            *slot = c;
        }
        // x^0 is the top bit in the reflected representation; x^8 is one zero byte.
        let one_byte = mul_mod_p(1u32 << 31, 1u32 << 23);
        let mut zero_shift = Vec::with_capacity(MAX_SHIFT + 1);
        let mut power = 1u32 << 31;
        for _ in 0..=MAX_SHIFT {
            zero_shift.push(power);
            power = mul_mod_p(power, one_byte);
        }
        CrcPatcher { byte_table, zero_shift: zero_shift.into_boxed_slice() }
    }

    /// The raw (no pre- or post-inversion) CRC of `bytes`, which is linear in them.
    fn raw(&self, bytes: &[u8]) -> u32 {
        let mut c = 0u32;
        for &b in bytes {
            c = self.byte_table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        c
    }

    /// The CRC after bytes changed: `old_crc` was over a message whose window at some offset
    /// held `old` and now holds `new` (same length), followed by `trailing` unchanged bytes.
    /// Returns `None` if `trailing` exceeds [`MAX_SHIFT`] or the windows differ in length.
    #[inline]
    pub fn patch(&self, old_crc: u32, old: &[u8], new: &[u8], trailing: usize) -> Option<u32> {
        if old.len() != new.len() || trailing > MAX_SHIFT {
            return None;
        }
        let mut c = 0u32;
        for (&a, &b) in old.iter().zip(new) {
            c = self.byte_table[((c ^ u32::from(a ^ b)) & 0xFF) as usize] ^ (c >> 8);
        }
        Some(old_crc ^ mul_mod_p(self.zero_shift[trailing], c))
    }

    /// The CRC of `a || b` from the CRCs of `a` and `b` and the length of `b` (zlib's
    /// `crc32_combine`), for `b` up to [`MAX_SHIFT`] bytes.
    pub fn combine(&self, crc_a: u32, crc_b: u32, len_b: usize) -> Option<u32> {
        let shift = *self.zero_shift.get(len_b)?;
        Some(mul_mod_p(shift, crc_a) ^ crc_b)
    }

    /// Check the tables against a plain CRC (used by tests).
    pub fn raw_crc(&self, bytes: &[u8]) -> u32 {
        self.raw(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc(bytes: &[u8]) -> u32 {
        crc32fast::hash(bytes)
    }

    #[test]
    fn patching_a_header_equals_recomputing() {
        let p = CrcPatcher::new();
        let mut frame: Vec<u8> = (0..2072u32).map(|i| (i * 7 + 3) as u8).collect();
        let old_crc = crc(&frame);
        let old_header = frame[..24].to_vec();
        for (i, b) in frame[1..20].iter_mut().enumerate() {
            *b ^= (i as u8).wrapping_mul(37) | 1;
        }
        let patched = p.patch(old_crc, &old_header, &frame[..24], frame.len() - 24).unwrap();
        assert_eq!(patched, crc(&frame));
        // A window in the middle (a CDB's LBA).
        let old_mid = frame[40..48].to_vec();
        frame[40..48].copy_from_slice(&[9; 8]);
        let patched = p.patch(patched, &old_mid, &frame[40..48], frame.len() - 48).unwrap();
        assert_eq!(patched, crc(&frame));
    }

    #[test]
    fn combine_matches_crc_of_the_concatenation() {
        let p = CrcPatcher::new();
        let a = b"the fc header....".to_vec();
        let b: Vec<u8> = (0..2048u32).map(|i| i as u8).collect();
        let whole: Vec<u8> = a.iter().chain(&b).copied().collect();
        assert_eq!(p.combine(crc(&a), crc(&b), b.len()), Some(crc(&whole)));
        assert_eq!(p.combine(crc(&a), crc(&[]), 0), Some(crc(&a)));
        assert_eq!(p.combine(0, 0, MAX_SHIFT + 1), None);
    }
}
