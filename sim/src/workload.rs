//! The fio-like workload generator ([`Workload`]) that drives one initiator against one
//! (target, LUN), and the [`stamp_block`]/[`decode_block`] codec that makes every written
//! block say which write put it there.
//!
//! A workload keeps `queue_depth` operations in flight between its start and stop times:
//! reads or writes (by `read_fraction`) of `block_size_blocks` blocks, sequential through the
//! region (wrapping) or at random block-size-aligned offsets in it, with `think_time_ns`
//! between an operation's completion and the next use of its slot. Two of its operations never
//! overlap while in flight, so what a read returns is decided by completed writes only. With
//! `verify_after_write`, each successful write is followed by a read of the same blocks
//! ([`PlannedOp::VerifyRead`]), issued before new operations and even after the stop time.
//! All randomness comes from a ChaCha8 generator seeded by the caller: the same seed and the
//! same sequence of calls give the same operations.
//!
//! The workload plans; the simulator submits: it allocates write ids (globally), stamps write
//! data with [`stamp_blocks`], submits through the initiator, keeps latency histograms from
//! each completion (`completed - submitted`), and reports back with
//! [`Workload::on_complete`].
//!
//! Stamped block layout: bytes 0..4 the magic `DVE1`, 4..12 the write id and 12..20 the
//! volume LBA (big-endian), 20..24 a checksum of write id, LBA, payload and length
//! (big-endian, see `stamp_checksum`), then the payload: little-endian 64-bit words in
//! arithmetic progression from a seed that is a bijective hash of (write id, LBA), so every
//! word is computed independently of the others (generation and checking vectorize) and two
//! blocks' payloads agree in no word unless they are the same (write id, LBA).

use std::collections::VecDeque;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::host::{IoFailure, IoOutcome};

/// First bytes of every stamped block.
pub const STAMP_MAGIC: [u8; 4] = *b"DVE1";
/// Length of a stamped block's header (magic, write id, LBA, checksum).
pub const STAMP_HEADER_LEN: usize = 24;
/// Attempts at finding a random offset that overlaps nothing in flight.
const RANDOM_PICK_ATTEMPTS: usize = 8;

/// Where in the region operations go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AccessPattern {
    /// One after the other from the region's start, wrapping at its end.
    Sequential,
    /// At uniformly random offsets aligned to the operation size.
    Random,
}

/// What a workload does.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkloadSpec {
    /// Fraction of operations that are reads (0.0 to 1.0); the rest are writes.
    pub read_fraction: f64,
    /// Blocks per operation.
    pub block_size_blocks: u32,
    /// Operations kept in flight.
    pub queue_depth: u32,
    /// Sequential or random offsets.
    pub pattern: AccessPattern,
    /// Pause between an operation's completion and the next use of its slot.
    pub think_time_ns: u64,
    /// Read back every successfully written range.
    pub verify_after_write: bool,
    /// The region: first block and number of blocks.
    pub region: (u64, u64),
    /// When the first operations go out.
    pub start_ns: u64,
    /// No new operation goes out at or after this time (verify reads still do).
    pub stop_ns: u64,
}

/// An operation the workload wants submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlannedOp {
    /// Read `blocks` blocks at `lba`.
    Read {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
    },
    /// Write `blocks` blocks at `lba`, with data the simulator stamps ([`stamp_blocks`]).
    Write {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
    },
    /// Read back what a completed write put at `lba`.
    VerifyRead {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
    },
}

impl PlannedOp {
    /// First block.
    pub fn lba(&self) -> u64 {
        match *self {
            PlannedOp::Read { lba, .. }
            | PlannedOp::Write { lba, .. }
            | PlannedOp::VerifyRead { lba, .. } => lba,
        }
    }

    /// Number of blocks.
    pub fn blocks(&self) -> u32 {
        match *self {
            PlannedOp::Read { blocks, .. }
            | PlannedOp::Write { blocks, .. }
            | PlannedOp::VerifyRead { blocks, .. } => blocks,
        }
    }

    /// Whether it writes.
    pub fn is_write(&self) -> bool {
        matches!(self, PlannedOp::Write { .. })
    }

    fn end(&self) -> u64 {
        self.lba().saturating_add(u64::from(self.blocks()))
    }

    fn overlaps(&self, other: &PlannedOp) -> bool {
        self.lba() < other.end() && other.lba() < self.end()
    }
}

/// Counters of a workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkloadStats {
    /// Operations handed out.
    pub issued: u64,
    /// Operations reported complete.
    pub completed: u64,
    /// Completions that failed or ended with a status other than GOOD.
    pub failed: u64,
    /// Reads handed out (verify reads not included).
    pub reads: u64,
    /// Writes handed out.
    pub writes: u64,
    /// Verify reads handed out.
    pub verify_reads: u64,
    /// Blocks read by successful reads and verify reads.
    pub blocks_read: u64,
    /// Blocks written by successful writes.
    pub blocks_written: u64,
}

/// The workload generator (see the module documentation).
#[derive(Debug)]
pub struct Workload {
    spec: WorkloadSpec,
    rng: ChaCha8Rng,
    /// Next sequential offset.
    cursor: u64,
    /// When each free slot may be used again, earliest first.
    free_slots: VecDeque<u64>,
    in_flight: Vec<PlannedOp>,
    verifies: VecDeque<PlannedOp>,
    /// The caller's in-flight count at the last [`Workload::next_ops`], less completions since.
    caller_in_flight: usize,
    /// Nothing could be planned without overlapping an operation in flight.
    blocked: bool,
    stats: WorkloadStats,
}

impl Workload {
    /// A workload with its own ChaCha8 generator seeded with `seed`.
    pub fn new(spec: WorkloadSpec, seed: u64) -> Workload {
        let slots = spec.queue_depth.max(1) as usize;
        Workload {
            cursor: spec.region.0,
            free_slots: std::iter::repeat_n(spec.start_ns, slots).collect(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            spec,
            in_flight: Vec::new(),
            verifies: VecDeque::new(),
            caller_in_flight: 0,
            blocked: false,
            stats: WorkloadStats::default(),
        }
    }

    /// The specification.
    pub fn spec(&self) -> &WorkloadSpec {
        &self.spec
    }

    /// The counters.
    pub fn stats(&self) -> WorkloadStats {
        self.stats
    }

    /// Operations handed out and not reported complete.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether the workload will plan nothing more: stop time reached, nothing in flight,
    /// no verify read pending.
    pub fn is_done(&self, now: u64) -> bool {
        now >= self.spec.stop_ns && self.in_flight.is_empty() && self.verifies.is_empty()
    }

    /// Blocks per operation (the region's size if smaller).
    fn op_blocks(&self) -> u32 {
        let region = u32::try_from(self.spec.region.1).unwrap_or(u32::MAX);
        self.spec.block_size_blocks.max(1).min(region)
    }

    fn slots(&self) -> usize {
        self.spec.queue_depth.max(1) as usize
    }

    /// What to submit now. `in_flight` is how many of this workload's operations the caller
    /// has in flight (normally [`Workload::in_flight`]); the larger count limits new ones.
    pub fn next_ops(&mut self, now: u64, in_flight: usize) -> Vec<PlannedOp> {
        self.caller_in_flight = in_flight;
        let mut ops = Vec::new();
        if now < self.spec.start_ns || self.spec.region.1 == 0 {
            return ops;
        }
        while in_flight.max(self.in_flight.len()) < self.slots() {
            match self.free_slots.front() {
                Some(ready) if *ready <= now => {}
                _ => break,
            }
            let Some(op) = self.take_verify().or_else(|| self.plan(now)) else { break };
            self.free_slots.pop_front();
            self.count_issued(&op);
            self.in_flight.push(op);
            ops.push(op);
        }
        ops
    }

    /// The next verify read that overlaps nothing in flight.
    fn take_verify(&mut self) -> Option<PlannedOp> {
        let at = self.verifies.iter().position(|v| !self.in_flight.iter().any(|op| op.overlaps(v)))?;
        self.verifies.remove(at)
    }

    /// A new read or write, unless the stop time passed or every candidate offset overlaps
    /// an operation in flight.
    fn plan(&mut self, now: u64) -> Option<PlannedOp> {
        if now >= self.spec.stop_ns {
            return None;
        }
        let blocks = self.op_blocks();
        let lba = match self.spec.pattern {
            AccessPattern::Sequential => self.sequential_lba(blocks),
            AccessPattern::Random => self.random_lba(blocks),
        };
        let Some(lba) = lba else {
            self.blocked = true;
            return None;
        };
        let read = self.rng.random::<f64>() < self.spec.read_fraction;
        Some(if read { PlannedOp::Read { lba, blocks } } else { PlannedOp::Write { lba, blocks } })
    }

    fn is_free(&self, lba: u64, blocks: u32) -> bool {
        let candidate = PlannedOp::Read { lba, blocks };
        !self.in_flight.iter().any(|op| op.overlaps(&candidate))
    }

    fn sequential_lba(&mut self, blocks: u32) -> Option<u64> {
        let (start, len) = self.spec.region;
        let end = start.saturating_add(len);
        let lba = self.cursor;
        if !self.is_free(lba, blocks) {
            return None;
        }
        let next = lba + u64::from(blocks);
        self.cursor = if next.saturating_add(u64::from(blocks)) > end { start } else { next };
        Some(lba)
    }

    fn random_lba(&mut self, blocks: u32) -> Option<u64> {
        let (start, len) = self.spec.region;
        let offsets = (len / u64::from(blocks)).max(1);
        for _ in 0..RANDOM_PICK_ATTEMPTS {
            let lba = start + self.rng.random_range(0..offsets) * u64::from(blocks);
            if self.is_free(lba, blocks) {
                return Some(lba);
            }
        }
        None
    }

    fn count_issued(&mut self, op: &PlannedOp) {
        self.stats.issued += 1;
        match op {
            PlannedOp::Read { .. } => self.stats.reads += 1,
            PlannedOp::Write { .. } => self.stats.writes += 1,
            PlannedOp::VerifyRead { .. } => self.stats.verify_reads += 1,
        }
    }

    /// Reports that `op` (as [`Workload::next_ops`] returned it) completed at `now`. Its slot
    /// becomes free after the think time; a successful write is queued for verification if
    /// the spec asks for it. An operation the workload does not have in flight is ignored.
    pub fn on_complete(&mut self, now: u64, op: PlannedOp, outcome: &Result<IoOutcome, IoFailure>) {
        let Some(at) = self.in_flight.iter().position(|o| *o == op) else { return };
        self.in_flight.swap_remove(at);
        self.caller_in_flight = self.caller_in_flight.saturating_sub(1);
        self.blocked = false;
        let ready = now.saturating_add(self.spec.think_time_ns);
        let slot = self.free_slots.partition_point(|t| *t <= ready);
        self.free_slots.insert(slot, ready);
        self.stats.completed += 1;
        let good = outcome.as_ref().is_ok_and(IoOutcome::is_good);
        if !good {
            self.stats.failed += 1;
            return;
        }
        let blocks = u64::from(op.blocks());
        match op {
            PlannedOp::Write { lba, blocks: n } => {
                self.stats.blocks_written += blocks;
                if self.spec.verify_after_write {
                    self.verifies.push_back(PlannedOp::VerifyRead { lba, blocks: n });
                }
            }
            PlannedOp::Read { .. } | PlannedOp::VerifyRead { .. } => self.stats.blocks_read += blocks,
        }
    }

    /// When [`Workload::next_ops`] next has something to hand out, if no completion comes
    /// first; `None` when only a completion can unblock it (or it is done).
    pub fn next_wakeup(&self) -> Option<u64> {
        if self.spec.region.1 == 0 || self.caller_in_flight.max(self.in_flight.len()) >= self.slots() {
            return None;
        }
        let at = (*self.free_slots.front()?).max(self.spec.start_ns);
        let verify_ready = self.verifies.iter().any(|v| !self.in_flight.iter().any(|op| op.overlaps(v)));
        if verify_ready || (!self.blocked && at < self.spec.stop_ns) { Some(at) } else { None }
    }
}

/// What a block read back holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockContent {
    /// Every byte zero: never written (or written with zeros).
    Zero,
    /// Intact data of this write.
    Stamped {
        /// The write id it was stamped with.
        write_id: u64,
    },
    /// Neither zero nor an intact stamp.
    Corrupt(CorruptReason),
}

/// Why a block is not an intact stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorruptReason {
    /// Shorter than a stamp's header.
    TooShort,
    /// The magic is wrong (random or foreign data).
    BadMagic,
    /// A stamp for another block (data landed at the wrong LBA).
    WrongLba {
        /// The LBA stamped in it.
        found: u64,
    },
    /// The checksum does not match (a torn or damaged block).
    BadChecksum,
    /// Header and checksum fine, payload not what the write id and LBA produce.
    PayloadMismatch,
}

/// Stamps one block of write `write_id` at volume LBA `lba` into `out` (its whole length).
/// A buffer shorter than the header gets payload bytes only.
pub fn stamp_block(write_id: u64, lba: u64, out: &mut [u8]) {
    let seed = payload_seed(write_id, lba);
    if out.len() < STAMP_HEADER_LEN {
        fill_payload(seed, out);
        return;
    }
    out[0..4].copy_from_slice(&STAMP_MAGIC);
    out[4..12].copy_from_slice(&write_id.to_be_bytes());
    out[12..20].copy_from_slice(&lba.to_be_bytes());
    // The checksum of an intact stamp follows from the header alone (see `intact_checksum`):
    // the payload is not read back.
    let checksum = intact_checksum(write_id, lba, seed, out.len());
    out[20..24].copy_from_slice(&checksum.to_be_bytes());
    fill_payload(seed, &mut out[STAMP_HEADER_LEN..]);
}

/// The data of a write of `blocks` blocks of `block_size` bytes at volume LBA `lba`, every
/// block stamped with `write_id`.
///
/// The data is stamped into the buffer of an earlier write that is done with (see
/// [`WriteBuffer`]), not into a fresh zeroed one: every byte is written by the stamps, so the
/// old bytes never show, and a run stamps a write every few microseconds.
pub fn stamp_blocks(write_id: u64, lba: u64, blocks: u32, block_size: u32) -> Bytes {
    let block_size = block_size.max(1) as usize;
    let len = blocks as usize * block_size;
    let mut data = SPARE_WRITE_BUFFERS.with_borrow_mut(Vec::pop).unwrap_or_default();
    // A buffer keeps the longest length it was ever given (its bytes stay initialized), so
    // only a write longer than any before in it zeroes bytes (then stamped over, as the rest
    // is); cutting it to each write's length would zero them again at every longer write.
    if data.len() < len {
        data.resize(len, 0);
    }
    for (i, block) in data[..len].chunks_exact_mut(block_size).enumerate() {
        stamp_block(write_id, lba + i as u64, block);
    }
    Bytes::from_owner(WriteBuffer { data, len })
}

/// Write buffers kept for reuse at most.
const SPARE_WRITE_BUFFER_COUNT: usize = 64;
/// Write buffers larger than this are not kept.
const SPARE_WRITE_BUFFER_CAPACITY: usize = 1 << 20;

thread_local! {
    /// Buffers of writes whose data nobody references any more, for the next writes.
    static SPARE_WRITE_BUFFERS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The storage behind a write's [`Bytes`] (the initiator, its bursts and the caller share
/// them): when the last of them drops, the buffer goes back to the spares [`stamp_blocks`]
/// takes from.
struct WriteBuffer {
    /// The buffer, as long as the longest write it held.
    data: Vec<u8>,
    /// This write's length: the bytes the [`Bytes`] show.
    len: usize,
}

impl AsRef<[u8]> for WriteBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl Drop for WriteBuffer {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.data);
        if buffer.capacity() == 0 || buffer.capacity() > SPARE_WRITE_BUFFER_CAPACITY {
            return;
        }
        // `try_with`: a buffer dropped while the thread's storage is being torn down is freed.
        let _ = SPARE_WRITE_BUFFERS.try_with(|spares| {
            let mut spares = spares.borrow_mut();
            if spares.len() < SPARE_WRITE_BUFFER_COUNT {
                spares.push(buffer);
            }
        });
    }
}

/// The (write id, LBA) of which `block` is the intact stamp, byte for byte (what
/// [`stamp_block`] writes into a buffer of its length); `None` for any other content. Lets a
/// store keep such a block as the pair and make its bytes again when read.
pub fn intact_stamp(block: &[u8]) -> Option<(u64, u64)> {
    if block.len() < STAMP_HEADER_LEN || block[0..4] != STAMP_MAGIC {
        return None;
    }
    let (write_id, lba) = (be64(&block[4..12]), be64(&block[12..20]));
    let seed = payload_seed(write_id, lba);
    let intact = be32(&block[20..24]) == intact_checksum(write_id, lba, seed, block.len())
        && payload_matches(seed, &block[STAMP_HEADER_LEN..]);
    intact.then_some((write_id, lba))
}

/// Decodes a block read back from volume LBA `lba`.
pub fn decode_block(block: &[u8], lba: u64) -> BlockContent {
    match decode_header(block, lba) {
        Err(content) => content,
        Ok(write_id) => decode_rest(block, lba, write_id, stamp_checksum(block)),
    }
}

/// Decodes the blocks of `data` (blocks of `block_size` bytes, the last one possibly shorter)
/// read back from volume LBA `lba` on: `out[i]` is what [`decode_block`] says of block `i`.
///
/// The same verdicts, found faster: the payload is compared first, and when it is the one
/// the header's write id and LBA produce, the block's checksum is the intact stamp's, which
/// follows from the header ([`intact_checksum`]) without reading the payload again. Only
/// blocks whose payload differs have their checksum computed over their bytes.
pub fn decode_blocks(data: &[u8], block_size: usize, lba: u64, out: &mut Vec<BlockContent>) {
    out.clear();
    let block_size = block_size.max(1);
    for (i, block) in data.chunks(block_size).enumerate() {
        let b = lba.wrapping_add(i as u64);
        let write_id = match decode_header(block, b) {
            Err(content) => {
                out.push(content);
                continue;
            }
            Ok(write_id) => write_id,
        };
        let seed = payload_seed(write_id, b);
        let matches = payload_matches(seed, &block[STAMP_HEADER_LEN..]);
        let stored = be32(&block[20..24]);
        let checksum =
            if matches { intact_checksum(write_id, b, seed, block.len()) } else { stamp_checksum(block) };
        out.push(verdict(write_id, stored, checksum, matches));
    }
}

/// What a block that passed the header checks is, given its stored and computed checksums
/// and whether its payload is the one its header names.
fn verdict(write_id: u64, stored: u32, checksum: u32, matches: bool) -> BlockContent {
    if stored != checksum {
        BlockContent::Corrupt(CorruptReason::BadChecksum)
    } else if !matches {
        BlockContent::Corrupt(CorruptReason::PayloadMismatch)
    } else {
        BlockContent::Stamped { write_id }
    }
}

/// The checks up to the checksum: the write id of a block that looks stamped for `lba`, or
/// what the block is otherwise.
fn decode_header(block: &[u8], lba: u64) -> Result<u64, BlockContent> {
    if is_zero(block) {
        return Err(BlockContent::Zero);
    }
    if block.len() < STAMP_HEADER_LEN {
        return Err(BlockContent::Corrupt(CorruptReason::TooShort));
    }
    if block[0..4] != STAMP_MAGIC {
        return Err(BlockContent::Corrupt(CorruptReason::BadMagic));
    }
    let write_id = be64(&block[4..12]);
    let found = be64(&block[12..20]);
    if found != lba {
        return Err(BlockContent::Corrupt(CorruptReason::WrongLba { found }));
    }
    Ok(write_id)
}

/// The checks from the checksum on, given the block's checksum computed over it.
fn decode_rest(block: &[u8], lba: u64, write_id: u64, checksum: u32) -> BlockContent {
    if be32(&block[20..24]) != checksum {
        return BlockContent::Corrupt(CorruptReason::BadChecksum);
    }
    if !payload_matches(payload_seed(write_id, lba), &block[STAMP_HEADER_LEN..]) {
        return BlockContent::Corrupt(CorruptReason::PayloadMismatch);
    }
    BlockContent::Stamped { write_id }
}

/// Whether every byte of `block` is zero.
pub(crate) fn is_zero(block: &[u8]) -> bool {
    // A stamp starts with its magic: most blocks are told by their first byte. Others a
    // whole line at a time (the OR of 64 bytes vectorizes), stopping at the first nonzero one.
    block.first().is_none_or(|first| *first == 0)
        && block.chunks(64).all(|line| line.iter().fold(0u8, |acc, byte| acc | byte) == 0)
}

fn be64(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(b);
    u64::from_be_bytes(v)
}

fn be32(b: &[u8]) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(b);
    u32::from_be_bytes(v)
}

fn le64(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(b);
    u64::from_le_bytes(v)
}

/// Odd (so that multiplying by it is a bijection on 64-bit words).
const CHECKSUM_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;
/// Where the checksum's state starts.
const CHECKSUM_SEED: u64 = 0x243F_6A88_85A3_08D3;

/// Folds one word into the checksum's state. Every step is a bijection of the state (xor
/// with the word, multiplication by an odd constant, xor with its own high bits shifted
/// down), so two inputs that differ in one word always leave the state different.
#[inline(always)]
fn checksum_mix(state: u64, word: u64) -> u64 {
    let x = (state ^ word).wrapping_mul(CHECKSUM_MULTIPLIER);
    x ^ (x >> 29)
}

/// The checksum of a stamped block over its write id, LBA (as the header stores them),
/// payload and length. The payload enters through two sums of its little-endian words (a
/// short last word zero-padded), modulo 2^64: `A = Σ w_k` and `B = Σ (k + 1)·w_k`. A change
/// of one word changes `A`; a change of two words that keeps `A` changes `B` unless the
/// difference times the distance between them is a multiple of 2^64. The sums, unlike a
/// chain of multiplications, have a closed form for a stamp's arithmetic progression, so
/// stamping and checking an intact block never compute them word by word
/// ([`intact_checksum`]); a block whose payload differs from its stamp's does.
fn stamp_checksum(block: &[u8]) -> u32 {
    let (mut a, mut b) = (0u64, 0u64);
    let mut words = block[STAMP_HEADER_LEN..].chunks_exact(8);
    let mut weight = 1u64;
    for word in &mut words {
        let w = le64(word);
        a = a.wrapping_add(w);
        b = b.wrapping_add(w.wrapping_mul(weight));
        weight += 1;
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut padded = [0u8; 8];
        padded[..rest.len()].copy_from_slice(rest);
        let w = u64::from_le_bytes(padded);
        a = a.wrapping_add(w);
        b = b.wrapping_add(w.wrapping_mul(weight));
    }
    fold_checksum(be64(&block[4..12]), be64(&block[12..20]), a, b, block.len())
}

/// The checksum from its parts (see [`stamp_checksum`]).
fn fold_checksum(write_id: u64, lba: u64, a: u64, b: u64, len: usize) -> u32 {
    let mut h = checksum_mix(CHECKSUM_SEED, write_id);
    h = checksum_mix(h, lba);
    h = checksum_mix(h, a);
    h = checksum_mix(h, b);
    h = checksum_mix(h, len as u64);
    (h ^ (h >> 32)) as u32
}

/// [`stamp_checksum`] of the intact stamp of (write id, LBA) in a block of `len` bytes (at
/// least a header), from the closed forms of the sums over the progression `s + k·t` of `n`
/// whole words: `A = n·s + t·n(n-1)/2`, `B = s·n(n+1)/2 + t·(n-1)n(n+1)/3`, plus the
/// zero-padded partial word, if any, at weight `n + 1`. `seed` is the stamp's
/// [`payload_seed`] (its callers need it too).
fn intact_checksum(write_id: u64, lba: u64, seed: u64, len: usize) -> u32 {
    // What depends on the length alone is worked out once for 512-byte blocks, nearly
    // every block a run stamps, checks or stores (a call per block, some 80 instructions
    // before, half of them for these).
    let sums = if len == 512 { PROGRESSION_512 } else { Progression::of(len) };
    let s = seed;
    let mut a = sums.n.wrapping_mul(s).wrapping_add(sums.t_pairs);
    let mut b = s.wrapping_mul(sums.triangle).wrapping_add(sums.t_pyramid);
    if sums.rest != 0 {
        let last = s.wrapping_add(PAYLOAD_STEP.wrapping_mul(sums.n)) & (u64::MAX >> (64 - 8 * sums.rest));
        a = a.wrapping_add(last);
        b = b.wrapping_add(last.wrapping_mul(sums.n + 1));
    }
    fold_checksum(write_id, lba, a, b, len)
}

/// The parts of [`intact_checksum`]'s sums that follow from the block's length alone.
#[derive(Clone, Copy)]
struct Progression {
    /// Whole payload words.
    n: u64,
    /// `t·n(n-1)/2`.
    t_pairs: u64,
    /// `n(n+1)/2`.
    triangle: u64,
    /// `t·(n-1)n(n+1)/3`.
    t_pyramid: u64,
    /// Bytes of the partial last word (0 when there is none).
    rest: usize,
}

/// [`Progression`] of a 512-byte block.
const PROGRESSION_512: Progression = Progression::of(512);

impl Progression {
    const fn of(len: usize) -> Progression {
        let payload = len - STAMP_HEADER_LEN;
        let n = (payload / 8) as u64;
        // The integers n(n-1)/2, n(n+1)/2 and (n-1)n(n+1)/3, modulo 2^64: the factor
        // divisible by 2 (or 3) is divided first, so the division is exact before anything
        // wraps.
        let (below, above) = (n.saturating_sub(1), n + 1);
        let pairs = if n.is_multiple_of(2) { (n / 2).wrapping_mul(below) } else { n.wrapping_mul(below / 2) };
        let triangle =
            if n.is_multiple_of(2) { (n / 2).wrapping_mul(above) } else { n.wrapping_mul(above / 2) };
        let pyramid = match n % 3 {
            0 => (n / 3).wrapping_mul(below).wrapping_mul(above),
            1 => (below / 3).wrapping_mul(n).wrapping_mul(above),
            _ => (above / 3).wrapping_mul(below).wrapping_mul(n),
        };
        Progression {
            n,
            t_pairs: PAYLOAD_STEP.wrapping_mul(pairs),
            triangle,
            t_pyramid: PAYLOAD_STEP.wrapping_mul(pyramid),
            rest: payload % 8,
        }
    }
}

/// What consecutive payload words differ by: odd, so `j` words apart two words of one
/// block differ by `j·t`, never zero for `j < 2^64`: data shifted by whole words never
/// matches its place.
const PAYLOAD_STEP: u64 = 0x9E37_79B9_7F4A_7C15;

/// The first payload word of (write id, LBA): a bijective mix (splitmix64's finalizer) of a
/// value that is itself a bijection of the write id for a given LBA and of the LBA for a
/// given write id. So two writes of one block, or two blocks of one write, have different
/// seeds, and with one step for all their payloads, differ in every word.
fn payload_seed(write_id: u64, lba: u64) -> u64 {
    let mut z = write_id.rotate_left(32) ^ lba.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x4456_4531;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes the payload that starts at `seed` into `out`: word `k` (little-endian) is
/// `seed + k·t`, the last one cut to what fits. Each word is the last plus a constant, with
/// no multiplication: the loop vectorizes with baseline SSE2 (64-bit adds).
fn fill_payload(seed: u64, out: &mut [u8]) {
    let mut words = out.chunks_exact_mut(8);
    let mut w = seed;
    for chunk in &mut words {
        chunk.copy_from_slice(&w.to_le_bytes());
        w = w.wrapping_add(PAYLOAD_STEP);
    }
    let rest = words.into_remainder();
    let n = rest.len();
    rest.copy_from_slice(&w.to_le_bytes()[..n]);
}

/// Whether `payload` is the payload that starts at `seed` (as [`fill_payload`] writes it).
/// The differences of all words are or'ed together with no early exit (blocks read back
/// almost always match), so the loop vectorizes.
fn payload_matches(seed: u64, payload: &[u8]) -> bool {
    let mut words = payload.chunks_exact(8);
    let mut w = seed;
    let mut difference = 0;
    for word in &mut words {
        difference |= le64(word) ^ w;
        w = w.wrapping_add(PAYLOAD_STEP);
    }
    // A partial last word is compared as the whole word with the expected bytes after it
    // (a slice comparison calls `bcmp`, even for no bytes at all).
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut padded = w.to_le_bytes();
        padded[..rest.len()].copy_from_slice(rest);
        difference |= u64::from_le_bytes(padded) ^ w;
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::Rng;

    use super::*;

    fn spec() -> WorkloadSpec {
        WorkloadSpec {
            read_fraction: 0.5,
            block_size_blocks: 8,
            queue_depth: 4,
            pattern: AccessPattern::Random,
            think_time_ns: 0,
            verify_after_write: false,
            region: (1000, 1024),
            start_ns: 100,
            stop_ns: 1_000_000,
        }
    }

    fn good() -> Result<IoOutcome, IoFailure> {
        Ok(IoOutcome { status: 0, sense: None, data: Vec::new(), residual: 0 })
    }

    #[test]
    fn stamps_decode_and_damage_is_named() {
        let mut block = [0u8; 512];
        stamp_block(42, 7, &mut block);
        assert_eq!(&block[..4], b"DVE1");
        assert_eq!(decode_block(&block, 7), BlockContent::Stamped { write_id: 42 });
        assert_eq!(decode_block(&block, 8), BlockContent::Corrupt(CorruptReason::WrongLba { found: 7 }));
        assert_eq!(decode_block(&[0u8; 512], 7), BlockContent::Zero);
        assert_eq!(decode_block(&[1u8; 512], 7), BlockContent::Corrupt(CorruptReason::BadMagic));
        assert_eq!(decode_block(&[1u8; 10], 7), BlockContent::Corrupt(CorruptReason::TooShort));
        for at in [5, 300, 511] {
            let mut damaged = block;
            damaged[at] ^= 0x10;
            assert_eq!(
                decode_block(&damaged, 7),
                BlockContent::Corrupt(CorruptReason::BadChecksum),
                "byte {at}"
            );
        }
        // A consistent header and checksum over another write's payload.
        let mut other = [0u8; 512];
        stamp_block(43, 7, &mut other);
        let mut spliced = block;
        spliced[STAMP_HEADER_LEN..].copy_from_slice(&other[STAMP_HEADER_LEN..]);
        let check = stamp_checksum(&spliced);
        spliced[20..24].copy_from_slice(&check.to_be_bytes());
        assert_eq!(decode_block(&spliced, 7), BlockContent::Corrupt(CorruptReason::PayloadMismatch));
        assert_ne!(block[STAMP_HEADER_LEN..], other[STAMP_HEADER_LEN..], "payloads differ by write id");
    }

    #[test]
    fn batches_name_damage_as_single_blocks_do() {
        let stamped = stamp_blocks(77, 500, 12, 512);
        let mut data = stamped.to_vec();
        data[3 * 512 + 21] ^= 4; // the stored checksum
        data[5 * 512 + 100] ^= 1; // the payload
        data[7 * 512 + 6] ^= 1; // the write id: another write's header over this payload
        let mut out = Vec::new();
        decode_blocks(&data, 512, 500, &mut out);
        for (i, content) in out.iter().enumerate() {
            let expected = match i {
                3 | 5 | 7 => BlockContent::Corrupt(CorruptReason::BadChecksum),
                _ => BlockContent::Stamped { write_id: 77 },
            };
            assert_eq!(*content, expected, "block {i}");
            assert_eq!(decode_block(&data[i * 512..(i + 1) * 512], 500 + i as u64), expected);
        }
    }

    #[test]
    fn the_intact_checksum_is_the_checksum_of_the_block() {
        for len in (24..=600).chain([1024, 2048, 4096, 4100, 65536 + 3]) {
            for (write_id, lba) in [(7 + len as u64, 1000 + len as u64), (u64::MAX, u64::MAX - 1), (1, 0)] {
                let mut block = vec![0u8; len];
                stamp_block(write_id, lba, &mut block);
                assert_eq!(
                    intact_checksum(write_id, lba, payload_seed(write_id, lba), len),
                    stamp_checksum(&block),
                    "checksum of a {len}-byte block of ({write_id}, {lba})"
                );
                assert_eq!(
                    stamp_checksum_of(&block),
                    intact_checksum(write_id, lba, payload_seed(write_id, lba), len)
                );
            }
        }
    }

    /// The checksum a block carries.
    fn stamp_checksum_of(block: &[u8]) -> u32 {
        be32(&block[20..24])
    }

    #[test]
    fn payload_words_are_independent_of_one_another() {
        // The payload is the progression itself: word k is seed + k·t, whatever came before.
        let mut block = vec![0u8; 4096];
        stamp_block(5, 6, &mut block);
        let seed = payload_seed(5, 6);
        for (k, word) in block[STAMP_HEADER_LEN..].chunks_exact(8).enumerate() {
            assert_eq!(le64(word), seed.wrapping_add(PAYLOAD_STEP.wrapping_mul(k as u64)), "word {k}");
        }
    }

    /// Every corruption the oracle must see, on one 512-byte block of write 1000 at LBA 64
    /// among its neighbours: the decode is never "intact".
    #[test]
    fn misdirected_torn_stale_damaged_and_shifted_blocks_are_caught() {
        const BS: usize = 512;
        let (id, lba) = (1000u64, 64u64);
        let write = stamp_blocks(id, lba - 1, 3, BS as u32).to_vec();
        let block = &write[BS..2 * BS];
        assert_eq!(decode_block(block, lba), BlockContent::Stamped { write_id: id });
        let corrupt = |b: &[u8], what: &str| {
            let one = decode_block(b, lba);
            let mut batch = Vec::new();
            decode_blocks(b, BS, lba, &mut batch);
            assert_eq!(batch, [one], "{what}");
            assert!(matches!(one, BlockContent::Corrupt(_)), "{what}: {one:?}");
        };
        // Misdirected: the neighbours, and the same write's block for another LBA.
        corrupt(&write[..BS], "the block before");
        corrupt(&write[2 * BS..], "the block after");
        for other in [0, 63, 65, u64::MAX] {
            let mut b = vec![0u8; BS];
            stamp_block(id, other, &mut b);
            corrupt(&b, &format!("block for LBA {other}"));
        }
        // Stale: other writes of the block, alone or under this write's header and checksum.
        for other in [0, 1, 999, 1001, id ^ (1 << 63)] {
            let mut stale = vec![0u8; BS];
            stamp_block(other, lba, &mut stale);
            assert_eq!(decode_block(&stale, lba), BlockContent::Stamped { write_id: other });
            let mut spliced = block.to_vec();
            spliced[STAMP_HEADER_LEN..].copy_from_slice(&stale[STAMP_HEADER_LEN..]);
            corrupt(&spliced, &format!("payload of write {other}"));
            // Torn: this write's bytes up to any point, the stale write's after it, and the
            // other way round (a cut where the two agree, in the magic, is no tear).
            for cut in 1..BS {
                for (first, second) in [(block, &stale[..]), (&stale[..], block)] {
                    let mut torn = first.to_vec();
                    torn[cut..].copy_from_slice(&second[cut..]);
                    if torn != first && torn != second {
                        corrupt(&torn, &format!("torn at {cut}, write {other}"));
                    }
                }
            }
        }
        // One byte changed, anywhere, to any other value.
        for at in 0..BS {
            for flip in 1..=255u8 {
                let mut damaged = block.to_vec();
                damaged[at] ^= flip;
                let content = decode_block(&damaged, lba);
                assert!(matches!(content, BlockContent::Corrupt(_)), "byte {at} ^ {flip}: {content:?}");
            }
        }
        // Shifted by any number of bytes: the whole block (data read from the wrong offset
        // of the write), and the payload alone under an intact header, either way, with the
        // bytes shifted in taken from the neighbours or zero.
        for shift in 1..BS {
            corrupt(&write[BS - shift..2 * BS - shift], &format!("block {shift} bytes early"));
            corrupt(&write[BS + shift..2 * BS + shift], &format!("block {shift} bytes late"));
            for zero in [false, true] {
                let mut early = block.to_vec();
                let mut late = block.to_vec();
                let payload = &block[STAMP_HEADER_LEN..];
                let n = payload.len();
                if shift < n {
                    early[STAMP_HEADER_LEN..STAMP_HEADER_LEN + n - shift].copy_from_slice(&payload[shift..]);
                    late[STAMP_HEADER_LEN + shift..].copy_from_slice(&payload[..n - shift]);
                    if zero {
                        early[BS - shift..].fill(0);
                        late[STAMP_HEADER_LEN..STAMP_HEADER_LEN + shift].fill(0);
                    } else {
                        early[BS - shift..].copy_from_slice(&write[2 * BS..2 * BS + shift]);
                    }
                    corrupt(&early, &format!("payload {shift} bytes early, zero {zero}"));
                    corrupt(&late, &format!("payload {shift} bytes late, zero {zero}"));
                }
            }
        }
    }

    #[test]
    fn payload_mismatch_is_found_in_every_word() {
        let mut block = vec![0u8; 512];
        stamp_block(3, 9, &mut block);
        let seed = payload_seed(3, 9);
        assert!(payload_matches(seed, &block[STAMP_HEADER_LEN..]));
        for at in STAMP_HEADER_LEN..block.len() {
            let mut damaged = block.clone();
            damaged[at] ^= 0x10;
            assert!(!payload_matches(seed, &damaged[STAMP_HEADER_LEN..]), "byte {at}");
        }
        for len in STAMP_HEADER_LEN..block.len() {
            assert!(payload_matches(seed, &block[STAMP_HEADER_LEN..len]), "prefix of {len} bytes");
        }
    }

    #[test]
    fn stamp_blocks_stamps_each_block_with_its_lba() {
        let data = stamp_blocks(9, 100, 3, 512);
        assert_eq!(data.len(), 1536);
        for (i, block) in data.chunks(512).enumerate() {
            assert_eq!(decode_block(block, 100 + i as u64), BlockContent::Stamped { write_id: 9 });
        }
    }

    proptest! {
        #[test]
        fn stamp_round_trips(write_id in any::<u64>(), lba in any::<u64>(), len in 24usize..4200) {
            let mut block = vec![0u8; len];
            stamp_block(write_id, lba, &mut block);
            prop_assert_eq!(decode_block(&block, lba), BlockContent::Stamped { write_id });
        }

        #[test]
        fn batches_agree_with_one_block_at_a_time(
            write_id in any::<u64>(),
            lba in 0u64..1 << 40,
            blocks in 1u32..40,
            block_size in prop::sample::select(vec![8u32, 24, 31, 64, 512, 520]),
            damage in prop::collection::vec((any::<usize>(), 0u8..8), 0..6),
            zeroed in prop::collection::vec(any::<usize>(), 0..3),
            tail in 0usize..600,
            other_lba in any::<bool>(),
        ) {
            let stamped = stamp_blocks(write_id, lba, blocks, block_size);
            let data = stamped.clone();
            let bs = block_size as usize;
            for (i, block) in data.chunks(bs).enumerate() {
                let mut one = vec![0u8; bs];
                stamp_block(write_id, lba + i as u64, &mut one);
                prop_assert_eq!(block, &one[..]);
            }
            // Damaged, zeroed and truncated blocks decode the same in a batch as alone.
            let mut data = data.to_vec();
            for (at, bit) in damage {
                let at = at % data.len();
                data[at] ^= 1 << bit;
            }
            for z in zeroed {
                let b = z % blocks as usize;
                data[b * bs..(b + 1) * bs].fill(0);
            }
            data.truncate(data.len().saturating_sub(tail % bs.max(1)).max(1));
            let first = if other_lba { lba + 1 } else { lba };
            let mut batch = Vec::new();
            decode_blocks(&data, bs, first, &mut batch);
            let alone: Vec<_> =
                data.chunks(bs).enumerate().map(|(i, b)| decode_block(b, first + i as u64)).collect();
            prop_assert_eq!(batch, alone);
        }

        #[test]
        fn damage_never_decodes_as_intact(write_id in any::<u64>(), lba in 0u64..1 << 40, at in 0usize..512, bit in 0u8..8) {
            let mut block = [0u8; 512];
            stamp_block(write_id, lba, &mut block);
            block[at] ^= 1 << bit;
            prop_assert!(matches!(decode_block(&block, lba), BlockContent::Corrupt(_)));
        }

        #[test]
        fn ops_stay_in_the_region_aligned_and_never_overlap(seed in any::<u64>(), sequential in any::<bool>(), steps in 1usize..200) {
            let pattern = if sequential { AccessPattern::Sequential } else { AccessPattern::Random };
            let spec = WorkloadSpec { pattern, queue_depth: 6, region: (1000, 100), block_size_blocks: 7, ..spec() };
            let mut w = Workload::new(spec, seed);
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 1);
            let mut now = 100;
            for _ in 0..steps {
                let ops = w.next_ops(now, w.in_flight());
                for op in &ops {
                    prop_assert!(op.lba() >= 1000 && op.lba() + u64::from(op.blocks()) <= 1100);
                    prop_assert_eq!((op.lba() - 1000) % 7, 0);
                }
                let flying = w.in_flight.clone();
                for (i, a) in flying.iter().enumerate() {
                    for b in &flying[i + 1..] {
                        prop_assert!(!a.overlaps(b), "{:?} overlaps {:?}", a, b);
                    }
                }
                prop_assert!(w.in_flight() <= 6);
                if !flying.is_empty() {
                    let done = flying[rng.random_range(0..flying.len())];
                    w.on_complete(now, done, &good());
                }
                now += 10;
            }
        }
    }

    #[test]
    fn keeps_the_queue_full_between_start_and_stop() {
        let mut w = Workload::new(WorkloadSpec { stop_ns: 1000, ..spec() }, 1);
        assert!(w.next_ops(50, 0).is_empty(), "nothing before the start");
        assert_eq!(w.next_wakeup(), Some(100));
        let ops = w.next_ops(100, 0);
        assert_eq!(ops.len(), 4);
        assert!(w.next_ops(100, 4).is_empty());
        assert_eq!(w.next_wakeup(), None, "only a completion frees a slot");
        w.on_complete(200, ops[0], &good());
        assert_eq!(w.next_wakeup(), Some(200));
        assert_eq!(w.next_ops(200, 3).len(), 1);
        for op in w.in_flight.clone() {
            w.on_complete(1000, op, &good());
        }
        assert!(w.next_ops(1000, 0).is_empty(), "nothing new at the stop time");
        assert_eq!(w.next_wakeup(), None);
        assert!(w.is_done(1000));
        assert_eq!((w.stats().issued, w.stats().completed), (5, 5));
    }

    #[test]
    fn think_time_delays_the_slot() {
        let mut w = Workload::new(WorkloadSpec { queue_depth: 1, think_time_ns: 500, ..spec() }, 1);
        let op = w.next_ops(100, 0)[0];
        w.on_complete(300, op, &good());
        assert_eq!(w.next_wakeup(), Some(800));
        assert!(w.next_ops(799, 0).is_empty());
        assert_eq!(w.next_ops(800, 0).len(), 1);
    }

    #[test]
    fn sequential_ops_walk_the_region_and_wrap() {
        let spec =
            WorkloadSpec { pattern: AccessPattern::Sequential, region: (10, 20), queue_depth: 1, ..spec() };
        let mut w = Workload::new(spec, 3);
        let mut lbas = Vec::new();
        for t in 0..5 {
            let op = w.next_ops(100 + t, 0)[0];
            lbas.push(op.lba());
            w.on_complete(100 + t, op, &good());
        }
        assert_eq!(lbas, [10, 18, 10, 18, 10], "an 8-block op does not fit at 26");
    }

    #[test]
    fn successful_writes_are_read_back_first() {
        let spec = WorkloadSpec { read_fraction: 0.0, verify_after_write: true, queue_depth: 2, ..spec() };
        let mut w = Workload::new(spec, 5);
        let ops = w.next_ops(100, 0);
        assert!(ops.iter().all(PlannedOp::is_write));
        w.on_complete(200, ops[0], &good());
        w.on_complete(200, ops[1], &Err(IoFailure::TimedOut));
        let next = w.next_ops(200, 0);
        let (lba, blocks) = (ops[0].lba(), ops[0].blocks());
        assert_eq!(next[0], PlannedOp::VerifyRead { lba, blocks });
        assert!(next[1].is_write(), "a failed write is not verified");
        let stats = w.stats();
        assert_eq!((stats.writes, stats.verify_reads, stats.failed, stats.blocks_written), (3, 1, 1, 8));
        // Verify reads still go out after the stop time.
        w.on_complete(2_000_000, next[1], &good());
        assert_eq!(w.next_ops(2_000_000, 1), [PlannedOp::VerifyRead { lba: next[1].lba(), blocks: 8 }]);
    }

    #[test]
    fn the_same_seed_gives_the_same_ops() {
        let run = |seed| {
            let mut w = Workload::new(spec(), seed);
            let mut all = Vec::new();
            for t in 0..50 {
                let ops = w.next_ops(100 + t, w.in_flight());
                all.extend(ops.iter().copied());
                if let Some(op) = w.in_flight.first().copied() {
                    w.on_complete(100 + t, op, &good());
                }
            }
            all
        };
        assert_eq!(run(11), run(11));
        assert_ne!(run(11), run(12));
        let reads = run(11).iter().filter(|op| matches!(op, PlannedOp::Read { .. })).count();
        assert!(reads > 10 && reads < 45, "about half reads, got {reads}");
    }

    #[test]
    fn an_empty_region_plans_nothing() {
        let mut w = Workload::new(WorkloadSpec { region: (0, 0), ..spec() }, 1);
        assert!(w.next_ops(100, 0).is_empty());
        assert_eq!(w.next_wakeup(), None);
    }
}
