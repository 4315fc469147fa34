//! Incremental FC CRC-32 updates. The CRC is linear, so when a frame's header changes the new
//! CRC is the old one XOR the raw CRC of the change, shifted past the bytes that follow it:
//! rewriting a forwarded 2 KiB data frame costs work in the header's size, not the payload's.

/// The reflected CRC-32 polynomial (IEEE 802.3, the FC CRC).
const POLY: u32 = 0xEDB8_8320;

/// Longest stretch of bytes a change can be shifted past: an FC frame.
pub const MAX_SHIFT: usize = 2200;

/// Slicing-by-8 tables, made at compile time: `SLICES[0]` advances a raw CRC by one byte,
/// `SLICES[k]` accounts for a byte followed by `k` more.
static SLICES: [[u32; 256]; 8] = slicing_tables();

const fn slicing_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            bit += 1;
        }
        tables[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = tables[k - 1][i];
            tables[k][i] = (prev >> 8) ^ tables[0][(prev & 0xFF) as usize];
            i += 1;
        }
        k += 1;
    }
    tables
}

/// The raw CRC (no pre- or post-inversion) of the bytes of `words`, each a big-endian word:
/// the CRC change of a window that changed by them, at the end of a message (a frame's CRC
/// changes by exactly this when the last `8 * words.len()` bytes before it change so).
#[inline]
pub fn raw_of_words(words: &[u64]) -> u32 {
    // Slicing-by-8 takes the window as a little-endian word.
    words.iter().fold(0, |crc, &word| slice8(crc, word.swap_bytes()))
}

/// The raw CRC `crc` advanced over 8 bytes, given as a little-endian word: one slicing-by-8
/// step.
#[inline]
fn slice8(crc: u32, le_word: u64) -> u32 {
    let x = le_word ^ u64::from(crc);
    let t = &SLICES;
    t[7][x as u8 as usize]
        ^ t[6][(x >> 8) as u8 as usize]
        ^ t[5][(x >> 16) as u8 as usize]
        ^ t[4][(x >> 24) as u8 as usize]
        ^ t[3][(x >> 32) as u8 as usize]
        ^ t[2][(x >> 40) as u8 as usize]
        ^ t[1][(x >> 48) as u8 as usize]
        ^ t[0][(x >> 56) as u8 as usize]
}

/// Tables for raw CRC updates and zero-shifts up to [`MAX_SHIFT`] bytes.
#[derive(Clone)]
pub struct CrcPatcher {
    /// `x^(8n) mod P` for n = 0..=MAX_SHIFT, the operator that appends n zero bytes.
    zero_shift: Box<[u32]>,
    /// The shift past [`HOT_SHIFT`] zero bytes as four byte tables: a header patched on a
    /// full 2 KiB data frame (nearly every forwarded frame) takes four lookups instead of a
    /// product.
    hot_shift: Box<[[u32; 256]; 4]>,
    /// Per byte of an FC header's SEQ_ID and exchange ids ([`ID_BYTES`]), the CRC change of
    /// that byte changing by each value ahead of a [`HOT_SHIFT`] payload: a write leg's first
    /// frame changes its header as the last frame of an earlier leg with the same addresses
    /// did but in those bytes, and the change of five bytes is five lookups where the
    /// header's is the address memo's look-up, two slicing steps and a shift.
    hot_ids: Box<[[u32; 256]; ID_BYTES.len()]>,
}

/// The FC header bytes [`CrcPatcher::ids_change`] covers: SEQ_ID (12), OX_ID (16, 17) and
/// RX_ID (18, 19).
const ID_BYTES: [usize; 5] = [12, 16, 17, 18, 19];

/// The bits of an FC header's second big-endian word (bytes 8..16) that hold SEQ_ID.
pub const SEQ_ID_BITS: u64 = 0xFF << 24;

/// The bits of an FC header's third big-endian word (bytes 16..24) that hold OX_ID and RX_ID.
pub const EXCHANGE_ID_BITS: u64 = 0xFFFF_FFFF << 32;

/// The trailing length the byte tables serve: a 2048-byte FCP data payload, the size the
/// worker and FCP targets cut data into.
pub const HOT_SHIFT: usize = 2048;

impl core::fmt::Debug for CrcPatcher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CrcPatcher")
    }
}

/// Multiply two polynomials modulo P in the reflected representation (zlib's `multmodp`), a
/// bit at a time: used to build the tables, and as the reference the fast product is tested
/// against.
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
        // x^0 is the top bit in the reflected representation; x^8 is one zero byte.
        let one_byte = mul_mod_p(1u32 << 31, 1u32 << 23);
        let mut zero_shift = Vec::with_capacity(MAX_SHIFT + 1);
        let mut power = 1u32 << 31;
        for _ in 0..=MAX_SHIFT {
            zero_shift.push(power);
            power = mul_mod_p(power, one_byte);
        }
        let mut patcher = CrcPatcher {
            zero_shift: zero_shift.into_boxed_slice(),
            hot_shift: Box::new([[0; 256]; 4]),
            hot_ids: Box::new([[0; 256]; ID_BYTES.len()]),
        };
        // The tables come from the product, which needs the patcher's own tables.
        let shift = patcher.zero_shift[HOT_SHIFT];
        for k in 0..4 {
            for byte in 0..256 {
                patcher.hot_shift[k][byte] = patcher.multiply(shift, (byte as u32) << (8 * k));
            }
        }
        let zeros = [0u8; 24];
        for (k, &at) in ID_BYTES.iter().enumerate() {
            for byte in 0..256 {
                let mut header = zeros;
                header[at] = byte as u8;
                patcher.hot_ids[k][byte] = patcher.patch(0, &zeros, &header, HOT_SHIFT).unwrap_or_default();
            }
        }
        patcher
    }

    /// `change` shifted past `trailing` zero bytes (`trailing` at most [`MAX_SHIFT`]).
    #[inline]
    fn shift(&self, change: u32, trailing: usize) -> u32 {
        if trailing == HOT_SHIFT {
            // The product is linear in `change`: one table per byte of it.
            let t = &*self.hot_shift;
            return t[0][change as u8 as usize]
                ^ t[1][(change >> 8) as u8 as usize]
                ^ t[2][(change >> 16) as u8 as usize]
                ^ t[3][(change >> 24) as u8 as usize];
        }
        self.multiply(self.zero_shift[trailing], change)
    }

    /// The raw (no pre- or post-inversion) CRC of `old XOR new` byte by byte (equal lengths),
    /// which is linear in them: the CRC of what changed.
    #[inline]
    fn raw_of_change(&self, old: &[u8], new: &[u8]) -> u32 {
        let t = &SLICES;
        let mut c = 0u32;
        let mut old8 = old.chunks_exact(8);
        let mut new8 = new.chunks_exact(8);
        for (a, b) in (&mut old8).zip(&mut new8) {
            let mut x = [0u8; 8];
            for ((x, a), b) in x.iter_mut().zip(a).zip(b) {
                *x = a ^ b;
            }
            c = slice8(c, u64::from_le_bytes(x));
        }
        for (&a, &b) in old8.remainder().iter().zip(new8.remainder()) {
            c = t[0][(c ^ u32::from(a ^ b)) as u8 as usize] ^ (c >> 8);
        }
        c
    }

    /// The raw CRC of `bytes`.
    fn raw(&self, bytes: &[u8]) -> u32 {
        bytes.iter().fold(0, |c, &b| SLICES[0][(c ^ u32::from(b)) as u8 as usize] ^ (c >> 8))
    }

    /// `a * b mod P` in the reflected representation, without a branch per bit: the
    /// carry-less product of the two words by 4-bit windows of `a`, then its upper half
    /// (the powers x^32 and up) folded back with one slicing step over four zero bytes.
    #[inline]
    fn multiply(&self, a: u32, b: u32) -> u32 {
        // `b` times every polynomial of degree below 4.
        let (b1, b2, b4, b8) = (u64::from(b), u64::from(b) << 1, u64::from(b) << 2, u64::from(b) << 3);
        let multiples = [
            0,
            b1,
            b2,
            b2 ^ b1,
            b4,
            b4 ^ b1,
            b4 ^ b2,
            b4 ^ b2 ^ b1,
            b8,
            b8 ^ b1,
            b8 ^ b2,
            b8 ^ b2 ^ b1,
            b8 ^ b4,
            b8 ^ b4 ^ b1,
            b8 ^ b4 ^ b2,
            b8 ^ b4 ^ b2 ^ b1,
        ];
        let mut product = 0u64;
        for window in 0..8 {
            product ^= multiples[((a >> (4 * window)) & 0xF) as usize] << (4 * window);
        }
        // Bit 31 - i of a reflected word is the coefficient of x^i, so the product's x^k sits
        // at bit 62 - k: one shift left puts x^0..x^31 in the upper word and x^32..x^63 in
        // the lower, a reflected word times x^32.
        let product = product << 1;
        let high = (product >> 32) as u32;
        let low = product as u32;
        let t = &SLICES;
        high ^ t[3][low as u8 as usize]
            ^ t[2][(low >> 8) as u8 as usize]
            ^ t[1][(low >> 16) as u8 as usize]
            ^ t[0][(low >> 24) as u8 as usize]
    }

    /// The CRC after bytes changed: `old_crc` was over a message whose window at some offset
    /// held `old` and now holds `new` (same length), followed by `trailing` unchanged bytes.
    /// Returns `None` if `trailing` exceeds [`MAX_SHIFT`] or the windows differ in length.
    #[inline]
    pub fn patch(&self, old_crc: u32, old: &[u8], new: &[u8], trailing: usize) -> Option<u32> {
        if old.len() != new.len() || trailing > MAX_SHIFT {
            return None;
        }
        let change = self.raw_of_change(old, new);
        Some(old_crc ^ self.shift(change, trailing))
    }

    /// The CRC change of 8 bytes changing by `delta` (their XOR, read as a big-endian word)
    /// followed by `trailing` unchanged bytes: [`CrcPatcher::patch`] for one 8-byte window, in
    /// one slicing step and a shift. `None` if `trailing` exceeds [`MAX_SHIFT`].
    #[inline]
    pub fn word_change(&self, delta: u64, trailing: usize) -> Option<u32> {
        if trailing > MAX_SHIFT {
            return None;
        }
        Some(self.shift(self.step(0, delta), trailing))
    }

    /// [`CrcPatcher::word_change`] for 16 bytes changing by `first` then `second`.
    #[inline]
    pub fn words_change(&self, first: u64, second: u64, trailing: usize) -> Option<u32> {
        if trailing > MAX_SHIFT {
            return None;
        }
        Some(self.shift(self.step(self.step(0, first), second), trailing))
    }

    /// The CRC change of an FC header followed by [`HOT_SHIFT`] bytes whose second and third
    /// big-endian words change by `second` and `third` within [`SEQ_ID_BITS`] and
    /// [`EXCHANGE_ID_BITS`] (other bits are ignored): one table lookup per byte.
    #[inline(always)]
    pub fn ids_change(&self, second: u64, third: u64) -> u32 {
        let t = &*self.hot_ids;
        t[0][(second >> 24) as u8 as usize]
            ^ t[1][(third >> 56) as u8 as usize]
            ^ t[2][(third >> 48) as u8 as usize]
            ^ t[3][(third >> 40) as u8 as usize]
            ^ t[4][(third >> 32) as u8 as usize]
    }

    /// The raw CRC `crc` advanced over the 8 bytes of `word` (the first byte its top byte).
    #[inline]
    fn step(&self, crc: u32, word: u64) -> u32 {
        // Slicing-by-8 takes the window as a little-endian word.
        slice8(crc, word.swap_bytes())
    }

    /// The CRC of `a || b` from the CRCs of `a` and `b` and the length of `b` (zlib's
    /// `crc32_combine`), for `b` up to [`MAX_SHIFT`] bytes.
    pub fn combine(&self, crc_a: u32, crc_b: u32, len_b: usize) -> Option<u32> {
        let shift = *self.zero_shift.get(len_b)?;
        Some(self.multiply(shift, crc_a) ^ crc_b)
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

    /// Ten thousand pseudo-random words (xorshift64), the same every run.
    fn words() -> impl Iterator<Item = u64> {
        let mut x = 0x1234_5678_9ABC_DEF1u64;
        (0..10_000).map(move |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
    }

    #[test]
    fn the_windowed_product_matches_the_bitwise_one() {
        let p = CrcPatcher::new();
        for x in words() {
            // The bitwise reference never ends for a zero multiplier.
            let (a, b) = (((x >> 32) as u32).max(1), x as u32);
            assert_eq!(p.multiply(a, b), mul_mod_p(a, b), "{a:#x} * {b:#x}");
        }
        for (a, b) in [(1, 0), (u32::MAX, u32::MAX), (1 << 31, 0xDEAD_BEEF), (0xDEAD_BEEF, 1 << 31)] {
            assert_eq!(p.multiply(a, b), mul_mod_p(a, b));
        }
    }

    #[test]
    fn the_hot_shift_tables_match_the_product() {
        let p = CrcPatcher::new();
        for x in words().map(|w| w as u32) {
            assert_eq!(p.shift(x, HOT_SHIFT), p.multiply(p.zero_shift[HOT_SHIFT], x), "{x:#x}");
        }
        assert_eq!(p.shift(0, HOT_SHIFT), 0);
    }

    #[test]
    fn id_changes_match_the_patch() {
        let p = CrcPatcher::new();
        for x in words() {
            let (second, third) = (x.rotate_left(17), x);
            let mut old = [0u8; 24];
            for (i, b) in old.iter_mut().enumerate() {
                *b = (x >> (i % 8 * 8)) as u8 ^ i as u8;
            }
            let mut new = old;
            new[8..16].copy_from_slice(
                &(u64::from_be_bytes(old[8..16].try_into().unwrap()) ^ (second & SEQ_ID_BITS)).to_be_bytes(),
            );
            new[16..24].copy_from_slice(
                &(u64::from_be_bytes(old[16..24].try_into().unwrap()) ^ (third & EXCHANGE_ID_BITS))
                    .to_be_bytes(),
            );
            assert_eq!(Some(p.ids_change(second, third)), p.patch(0, &old, &new, HOT_SHIFT), "{x:#x}");
        }
    }

    #[test]
    fn patching_windows_of_any_length_equals_recomputing() {
        let p = CrcPatcher::new();
        let mut frame: Vec<u8> = (0..300u32).map(|i| (i * 13 + 5) as u8).collect();
        for len in 0..40 {
            let at = 17;
            let old_crc = crc(&frame);
            let old = frame[at..at + len].to_vec();
            for (i, b) in frame[at..at + len].iter_mut().enumerate() {
                *b = b.wrapping_mul(3) ^ (i as u8 + len as u8);
            }
            let trailing = frame.len() - at - len;
            assert_eq!(p.patch(old_crc, &old, &frame[at..at + len], trailing), Some(crc(&frame)), "{len}");
        }
    }

    #[test]
    fn word_changes_are_the_patch_of_their_window() {
        let p = CrcPatcher::new();
        for (i, x) in words().enumerate().take(2000) {
            let old = (x.rotate_left(7) ^ 0x5555).to_be_bytes();
            let new = x.to_be_bytes();
            let delta = u64::from_be_bytes(old) ^ x;
            let trailing = [0, 4, 16, 2048, 2064, 1000, MAX_SHIFT][i % 7];
            assert_eq!(p.word_change(delta, trailing), p.patch(0, &old, &new, trailing), "{x:#x}");
        }
        assert_eq!(p.word_change(1, MAX_SHIFT + 1), None);
        for (i, (x, y)) in words().zip(words().skip(1)).enumerate().take(2000) {
            let old: Vec<u8> = [x.to_be_bytes(), y.to_be_bytes()].concat();
            let new: Vec<u8> =
                [(x ^ 0xFF00_0000_FFFF_0000).to_be_bytes(), y.rotate_left(9).to_be_bytes()].concat();
            let (d1, d2) = (0xFF00_0000_FFFF_0000, y ^ y.rotate_left(9));
            let trailing = [0, 4, 16, 2048, 2064, 1000, MAX_SHIFT][i % 7];
            assert_eq!(p.words_change(d1, d2, trailing), p.patch(0, &old, &new, trailing));
        }
        assert_eq!(p.words_change(1, 1, MAX_SHIFT + 1), None);
    }

    #[test]
    fn the_compile_time_tables_are_the_patchers() {
        // Built at run time, as the patcher built its own before it used these.
        let mut tables = [[0u32; 256]; 8];
        for (i, slot) in tables[0].iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            }
            *slot = c;
        }
        for k in 1..8 {
            for i in 0..256 {
                let prev = tables[k - 1][i];
                tables[k][i] = (prev >> 8) ^ tables[0][(prev & 0xFF) as usize];
            }
        }
        assert_eq!(tables, SLICES);
    }

    #[test]
    fn raw_of_words_patches_the_end_of_a_message() {
        let mut message: Vec<u8> = (0..120u32).map(|i| (i * 29 + 1) as u8).collect();
        for (i, x) in words().enumerate().take(500) {
            let n = 1 + i % 5;
            let old_crc = crc(&message);
            let at = message.len() - 8 * n;
            let delta: Vec<u64> = (0..n as u32).map(|k| x.rotate_left(k * 13)).collect();
            for (k, d) in delta.iter().enumerate() {
                for (b, db) in message[at + 8 * k..at + 8 * k + 8].iter_mut().zip(d.to_be_bytes()) {
                    *b ^= db;
                }
            }
            assert_eq!(old_crc ^ raw_of_words(&delta), crc(&message));
        }
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
