//! The simulator's disk ([`DiskTarget`]): an FCP target with one logical unit (LUN 0) of
//! sparse blocks, a latency model with queueing, and failure modes that can be switched at
//! any time.
//!
//! At start it logs in to the fabric (FLOGI, PLOGI to the name server, RFT_ID for FCP, RNN_ID).
//! It then answers any initiator: PLOGI, PRLI (target function), LOGO, ABTS (BA_ACC, the
//! exchange is dropped), task management (the initiator's other exchanges are cleared), and
//! SCSI: INQUIRY (standard data and VPD pages 0x00, 0x80, 0x83 with the logical unit's NAA
//! designator, the same on every port of a multi-port disk, and the target port's name), REPORT LUNS (LUN 0), READ CAPACITY(10)/(16), TEST UNIT READY,
//! REQUEST SENSE, READ and WRITE (6, 10, 16) and SYNCHRONIZE CACHE (GOOD). Anything else gets
//! CHECK CONDITION, ILLEGAL REQUEST with INVALID COMMAND OPERATION CODE; an access past the
//! last block LBA OUT OF RANGE; a CDB it cannot parse INVALID FIELD IN CDB; another LUN
//! LOGICAL UNIT NOT SUPPORTED (INQUIRY there returns peripheral qualifier 3).
//!
//! An FCP_CMND from an initiator without PLOGI and PRLI is refused with a LOGO to it (FC-LS:
//! a frame from an N_Port that is not logged in is discarded and answered with LOGO); its
//! exchange is not opened.
//!
//! Timing: a command is executed when its service ends: data and status for reads, status
//! after all data arrived for writes (write data is applied to the blocks then, with GOOD).
//! Service takes [`LatencyModel::service_time`]; at most `queue_depth` commands are in service
//! and the rest wait, first come first served. Write data is asked for as soon as the command
//! arrives, in bursts of at most `max_burst` bytes (FCP_XFER_RDY), and the command queues for
//! service once all of it has arrived. So [`DiskTarget::receive`] often returns nothing and
//! [`DiskTarget::on_timer`] emits what became due at [`DiskTarget::next_timer`].
//!
//! No frame can make it panic; malformed or unexpected frames are counted and dropped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dve_wire::Error as WireError;
use dve_wire::WireEmit;
use dve_wire::bls::BlsRepr;
use dve_wire::els::{
    ElsRepr, LogoRepr, LsRjtRepr, PrliPage, prli_fcp, prli_flags, reject_explanation, reject_reason,
};
use dve_wire::fc::{FcHeaderRepr, FcId, f_ctl, fc_type, r_ctl};
use dve_wire::fcp::{FcpCmndRepr, FcpRspRepr, FcpXferRdyRepr, Residual, lun_from_index, lun_index};
use dve_wire::scsi::cdb::Cdb;
use dve_wire::scsi::data::{ReadCapacity10Data, ReadCapacity16Data, ReportLunsData};
use dve_wire::scsi::inquiry::{
    Designator, Designators, NO_LUN, StandardInquiry, VpdPage, VpdRepr, code_set, designator_type, vpd_page,
};
use dve_wire::scsi::sense::{Asc, SenseKey, SenseRepr};
use dve_wire::scsi::status;

use crate::engine::IntMap;
use crate::host::nport::{self, FabricLogin, FabricStep, Inbound, NPort, Registration, fc_header};
use crate::workload::{BlockContent, CorruptReason, decode_blocks, intact_stamp, is_zero, stamp_block};

/// The usual block size.
pub const DEFAULT_BLOCK_SIZE: u32 = 512;
/// Longest transfer one command may ask for; longer ones get INVALID FIELD IN CDB.
pub const MAX_TRANSFER_BYTES: u64 = 32 * 1024 * 1024;
/// Lists of write data frames a disk port keeps for reuse at most.
const SPARE_WRITE_LISTS: usize = 64;
/// How long the disk waits for the fabric's answer to a login request.
pub const FABRIC_TIMEOUT_NS: u64 = 200_000_000;
/// T10 vendor identification in INQUIRY data.
pub const VENDOR: &str = "DVESIM";
/// Product revision level in INQUIRY data.
pub const REVISION: &str = "0001";

/// How long a command takes once in service, and how many are served at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LatencyModel {
    /// Time every command takes.
    pub fixed_ns: u64,
    /// Additional time per KiB transferred (data in or out).
    pub per_kib_ns: u64,
    /// Commands served in parallel (0 counts as 1).
    pub queue_depth: u32,
}

impl Default for LatencyModel {
    /// A fast SSD: 50 µs per command, about 2 GB/s, 16 commands in parallel.
    fn default() -> LatencyModel {
        LatencyModel { fixed_ns: 50_000, per_kib_ns: 500, queue_depth: 16 }
    }
}

impl LatencyModel {
    /// Service time of a command moving `bytes`, multiplied by `slowdown`.
    pub fn service_time(&self, bytes: u64, slowdown: u32) -> u64 {
        let transfer = bytes.saturating_mul(self.per_kib_ns) / 1024;
        self.fixed_ns.saturating_add(transfer).saturating_mul(u64::from(slowdown.max(1)))
    }

    fn slots(&self) -> usize {
        self.queue_depth.max(1) as usize
    }
}

/// How a [`DiskTarget`] is set up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiskConfig {
    /// Name in reports; also the INQUIRY product identification (first 16 bytes).
    pub name: String,
    /// World-wide port name.
    pub port_name: u64,
    /// The logical unit's name, the same on every port of a multi-port disk: its VPD 0x83
    /// NAA designator and serial number are made from it (by default the port name).
    pub unit_name: u64,
    /// World-wide node name.
    pub node_name: u64,
    /// Burned-in MAC address, used until fabric login assigns a fabric-provided one.
    pub mac: [u8; 6],
    /// Block length in bytes.
    pub block_size: u32,
    /// Capacity in blocks.
    pub blocks: u64,
    /// Service time and parallelism.
    pub latency: LatencyModel,
    /// Largest write burst asked for in one FCP_XFER_RDY (0: the whole transfer at once).
    pub max_burst: u32,
}

impl DiskConfig {
    /// A disk of `blocks` 512-byte blocks with the default latency model and whole-transfer
    /// bursts.
    pub fn new(
        name: impl Into<String>,
        port_name: u64,
        node_name: u64,
        mac: [u8; 6],
        blocks: u64,
    ) -> DiskConfig {
        DiskConfig {
            name: name.into(),
            port_name,
            unit_name: port_name,
            node_name,
            mac,
            block_size: DEFAULT_BLOCK_SIZE,
            blocks,
            latency: LatencyModel::default(),
            max_burst: 0,
        }
    }
}

/// How the disk behaves; switch with [`DiskTarget::set_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum DiskMode {
    /// Everything works.
    #[default]
    Healthy,
    /// Answers nothing at all, not even login; switching to it loses every login and
    /// command in progress (a power loss), but not the blocks.
    Dead,
    /// Writes end with CHECK CONDITION, MEDIUM ERROR, WRITE ERROR (03h/0Ch/00h); their data
    /// is not applied. All writes, or a share of them drawn from the disk's own seeded
    /// sequence ([`DiskTarget::set_write_errors`]).
    WriteErrors,
    /// Reads end with CHECK CONDITION, MEDIUM ERROR, UNRECOVERED READ ERROR (03h/11h/00h)
    /// and send no data.
    ReadErrors,
    /// Accepts commands and never answers them (links services and ABTS still work).
    Hang,
    /// Every service time is multiplied by `factor`.
    Slow {
        /// The slowdown.
        factor: u32,
    },
}

/// Commands received, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommandCounts {
    /// READ(6/10/16).
    pub read: u64,
    /// WRITE(6/10/16).
    pub write: u64,
    /// INQUIRY.
    pub inquiry: u64,
    /// REPORT LUNS.
    pub report_luns: u64,
    /// READ CAPACITY(10/16).
    pub read_capacity: u64,
    /// TEST UNIT READY.
    pub test_unit_ready: u64,
    /// SYNCHRONIZE CACHE(10/16).
    pub synchronize_cache: u64,
    /// REQUEST SENSE.
    pub request_sense: u64,
    /// Task management functions.
    pub task_management: u64,
    /// Unsupported or unparsable commands.
    pub unsupported: u64,
}

/// Counters of a disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Frames received (while not dead).
    pub frames_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Received frames dropped as malformed or unexpected.
    pub dropped_frames: u64,
    /// Frames ignored because the disk was dead.
    pub ignored_while_dead: u64,
    /// Commands by kind.
    pub commands: CommandCounts,
    /// Bytes of data read from the blocks and sent.
    pub bytes_read: u64,
    /// Bytes of data written to the blocks.
    pub bytes_written: u64,
    /// CHECK CONDITION statuses sent.
    pub check_conditions: u64,
    /// Medium errors reported (failure modes).
    pub medium_errors: u64,
    /// Exchanges aborted by ABTS.
    pub aborts: u64,
    /// Process logins accepted.
    pub logins: u64,
    /// LOGOs sent to initiators that were not logged in.
    pub logouts_sent: u64,
}

/// Blocks per page of the [`BlockStore`].
const PAGE_BLOCKS: u64 = 128;
/// Pages found by index rather than by hash: the first 4 GiB of a disk of 512-byte blocks
/// (a directory of at most 2 MiB, grown only as far as the highest page written).
const DIRECT_PAGES: u64 = 1 << 16;

/// One block of the [`BlockStore`]: its bytes, or what they are without keeping them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Stored {
    /// Every byte zero (never written, or written with zeros).
    #[default]
    Zero,
    /// Exactly the intact stamp of (write id, LBA) at the block's length, as
    /// [`stamp_block`] makes it: the simulator's workloads write nothing else, so almost every
    /// block is kept as these 16 bytes and made again when read.
    Stamp {
        /// The stamp's write id.
        write_id: u64,
        /// The LBA stamped in it (the volume's, not the disk's).
        lba: u64,
    },
    /// Any other content, as written.
    Bytes(Box<[u8]>),
}

impl Stored {
    /// What a block of these bytes is kept as; `reuse` is the block's old bytes, overwritten
    /// in place when the new content needs bytes too.
    fn of(block: &[u8], reuse: Stored) -> Stored {
        // A line at a time, not byte by byte: copies and replicas write many zero blocks,
        // whose every byte is looked at.
        if is_zero(block) {
            return Stored::Zero;
        }
        if let Some((write_id, lba)) = intact_stamp(block) {
            return Stored::Stamp { write_id, lba };
        }
        match reuse {
            Stored::Bytes(mut old) if old.len() == block.len() => {
                old.copy_from_slice(block);
                Stored::Bytes(old)
            }
            _ => Stored::Bytes(block.into()),
        }
    }

    /// Writes the block's bytes into `out` (a block long).
    fn read_into(&self, out: &mut [u8]) {
        match self {
            Stored::Zero => out.fill(0),
            Stored::Stamp { write_id, lba } => stamp_block(*write_id, *lba, out),
            Stored::Bytes(bytes) => out.copy_from_slice(bytes),
        }
    }
}

/// A block as a disk keeps it (by content: zero, an intact stamp, or its bytes), for the
/// simulator's checks over whole volume images: an image of kept blocks is 16 to 24 bytes a
/// block where its bytes would be 512, is read out of the store without making the bytes,
/// and is told from another by its entries (one form per content, so at one block size equal
/// entries are equal bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptBlock(Stored);

impl KeptBlock {
    /// The block of these bytes.
    pub fn of(bytes: &[u8]) -> KeptBlock {
        KeptBlock(Stored::of(bytes, Stored::Zero))
    }

    /// What [`decode_blocks`] finds in the block's bytes read as LBA `lba` of its volume,
    /// without making them: an intact stamp is its write's data where it was stamped for and a
    /// misplaced block anywhere else (the decoder reads the header's LBA before the rest).
    pub fn content(&self, lba: u64) -> BlockContent {
        match &self.0 {
            Stored::Zero => BlockContent::Zero,
            Stored::Stamp { write_id, lba: stamped } if *stamped == lba => {
                BlockContent::Stamped { write_id: *write_id }
            }
            Stored::Stamp { lba: found, .. } => {
                BlockContent::Corrupt(CorruptReason::WrongLba { found: *found })
            }
            Stored::Bytes(bytes) => {
                let mut decoded = Vec::with_capacity(1);
                decode_blocks(bytes, bytes.len(), lba, &mut decoded);
                decoded.pop().unwrap_or(BlockContent::Zero)
            }
        }
    }

    /// Writes the block's bytes into `out` (a block long).
    pub fn read_into(&self, out: &mut [u8]) {
        self.0.read_into(out);
    }
}

/// [`PAGE_BLOCKS`] consecutive blocks, zero until written.
#[derive(Debug)]
struct Page {
    blocks: Box<[Stored]>,
    /// Bit `i`: block `i` of the page was written.
    written: u128,
}

impl Page {
    fn new() -> Page {
        Page { blocks: vec![Stored::Zero; PAGE_BLOCKS as usize].into_boxed_slice(), written: 0 }
    }
}

/// Read data that stays in the store until a frame is built: its bytes are made straight
/// into the frame's buffer ([`WireEmit`]), with no copy in between.
struct StoredRange<'a> {
    blocks: &'a BlockStore,
    lba: u64,
    /// Bytes from the start of block `lba`.
    offset: usize,
    len: usize,
}

impl WireEmit for StoredRange<'_> {
    fn buffer_len(&self) -> usize {
        self.len
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let have = buf.len();
        let Some(out) = buf.get_mut(..self.len) else {
            return Err(WireError::BufferTooSmall { what: "read data", need: self.len, have });
        };
        self.blocks.read_bytes_into(self.lba, self.offset, out);
        Ok(self.len)
    }
}

/// Where the data of a reply comes from as its frames are emitted.
#[derive(Clone, Copy)]
enum ReadData<'a> {
    Bytes(&'a [u8]),
    /// Blocks from `lba` on, made from the store into each frame.
    Stored {
        blocks: &'a BlockStore,
        lba: u64,
    },
}

/// The blocks: a sparse map of pages, unwritten blocks read as zeros. Blocks are kept by
/// content ([`Stored`]): a written block that is a workload's intact stamp is kept as its
/// (write id, LBA) and stamped again when read, so the store holds no copy of the data the
/// run writes and a page costs no 64 KiB to clear; the bytes read back are the bytes written,
/// whatever they are.
#[derive(Debug)]
struct BlockStore {
    block_size: usize,
    /// Pages by number, for the first [`DIRECT_PAGES`] pages: an index instead of a hash,
    /// and one cache line fewer to miss per block looked up. Grown on demand.
    direct: Vec<Option<Page>>,
    /// Pages from number [`DIRECT_PAGES`] on (disks of many GiB stay sparse).
    pages: IntMap<u64, Page>,
    /// Blocks ever written (since the last wipe).
    written: u64,
}

impl BlockStore {
    fn new(block_size: usize) -> BlockStore {
        BlockStore { block_size, direct: Vec::new(), pages: IntMap::default(), written: 0 }
    }

    /// Page `number`, if it exists.
    #[inline]
    fn page(&self, number: u64) -> Option<&Page> {
        if number < DIRECT_PAGES {
            self.direct.get(number as usize)?.as_ref()
        } else {
            self.pages.get(&number)
        }
    }

    /// Page `number`, made (all zero) if it does not exist.
    fn page_mut(&mut self, number: u64) -> &mut Page {
        if number < DIRECT_PAGES {
            let index = number as usize;
            if index >= self.direct.len() {
                self.direct.resize_with(index + 1, || None);
            }
            self.direct[index].get_or_insert_with(Page::new)
        } else {
            self.pages.entry(number).or_insert_with(Page::new)
        }
    }

    /// Splits `blocks` blocks from `lba` on into runs inside one page: (block index in the
    /// run's page, page number, blocks in the run, blocks before the run).
    fn runs(lba: u64, blocks: usize) -> impl Iterator<Item = (usize, u64, usize, usize)> {
        let mut done = 0;
        std::iter::from_fn(move || {
            if done >= blocks {
                return None;
            }
            let b = lba.wrapping_add(done as u64);
            let first = (b % PAGE_BLOCKS) as usize;
            let n = (PAGE_BLOCKS as usize - first).min(blocks - done);
            let run = (first, b / PAGE_BLOCKS, n, done);
            done += n;
            Some(run)
        })
    }

    /// Block `block` (zero when its page does not exist).
    fn get(&self, block: u64) -> &Stored {
        static ZERO: Stored = Stored::Zero;
        self.page(block / PAGE_BLOCKS).map_or(&ZERO, |page| &page.blocks[(block % PAGE_BLOCKS) as usize])
    }

    /// Stores `bytes` (a block long) as block `block`.
    fn put(&mut self, block: u64, bytes: &[u8]) {
        let page = self.page_mut(block / PAGE_BLOCKS);
        let slot = &mut page.blocks[(block % PAGE_BLOCKS) as usize];
        *slot = Stored::of(bytes, std::mem::take(slot));
    }

    /// Whether block `block` holds exactly `bytes` (a block long), found without making its
    /// bytes: a stamp is compared as the decoder checks one.
    fn holds(&self, block: u64, bytes: &[u8]) -> bool {
        match self.get(block) {
            Stored::Zero => is_zero(bytes),
            Stored::Stamp { write_id, lba } => intact_stamp(bytes) == Some((*write_id, *lba)),
            Stored::Bytes(stored) => **stored == *bytes,
        }
    }

    fn read(&self, lba: u64, count: u64) -> Vec<u8> {
        let len = (count as usize).saturating_mul(self.block_size);
        let mut out = vec![0; len];
        self.read_into(lba, &mut out);
        out
    }

    /// Fills `out` with the whole blocks from `lba` on that fit in it.
    fn read_into(&self, lba: u64, out: &mut [u8]) {
        let len = out.len() / self.block_size * self.block_size;
        self.read_bytes_into(lba, 0, &mut out[..len]);
    }

    /// Fills `out` with the bytes of the blocks from `lba` on, from `offset` bytes into them,
    /// whatever the block boundaries.
    fn read_bytes_into(&self, lba: u64, offset: usize, out: &mut [u8]) {
        let bs = self.block_size;
        let mut scratch = Vec::new();
        for (block, within, n, done) in BlockStore::pieces(bs, lba, offset, out.len()) {
            let stored = self.get(block);
            if n == bs {
                stored.read_into(&mut out[done..done + bs]);
            } else {
                scratch.resize(bs, 0);
                stored.read_into(&mut scratch);
                out[done..done + n].copy_from_slice(&scratch[within..within + n]);
            }
        }
    }

    /// Splits `len` bytes from `offset` bytes into block `lba` on into pieces inside one
    /// block: (block, bytes before the piece in its block, bytes in the piece, bytes before
    /// the piece).
    fn pieces(
        bs: usize,
        lba: u64,
        offset: usize,
        len: usize,
    ) -> impl Iterator<Item = (u64, usize, usize, usize)> {
        let mut done = 0;
        std::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let at = offset + done;
            let within = at % bs;
            let n = (bs - within).min(len - done);
            let piece = (lba.wrapping_add((at / bs) as u64), within, n, done);
            done += n;
            Some(piece)
        })
    }

    /// Writes whole blocks (a trailing partial block is ignored).
    fn write(&mut self, lba: u64, data: &[u8]) {
        let bs = self.block_size;
        let blocks = data.len() / bs;
        self.write_bytes(lba, 0, &data[..blocks * bs]);
        self.mark_written(lba, blocks);
    }

    /// Writes `data` into the blocks from `lba` on, starting `offset` bytes into them,
    /// whatever the block boundaries (a block written in part keeps the rest of its bytes);
    /// counts nothing as written (see [`BlockStore::mark_written`]).
    fn write_bytes(&mut self, lba: u64, offset: usize, data: &[u8]) {
        let bs = self.block_size;
        let mut scratch = Vec::new();
        for (block, within, n, done) in BlockStore::pieces(bs, lba, offset, data.len()) {
            if n == bs {
                self.put(block, &data[done..done + bs]);
            } else {
                scratch.resize(bs, 0);
                self.get(block).read_into(&mut scratch);
                scratch[within..within + n].copy_from_slice(&data[done..done + n]);
                self.put(block, &scratch);
            }
        }
    }

    /// Counts `blocks` blocks from `lba` on as written, as [`BlockStore::write`] does.
    fn mark_written(&mut self, lba: u64, blocks: usize) {
        for (first, page, n, _) in BlockStore::runs(lba, blocks) {
            let page = self.page_mut(page);
            let bits = if n == 128 { u128::MAX } else { ((1u128 << n) - 1) << first };
            let fresh = u64::from((bits & !page.written).count_ones());
            page.written |= bits;
            self.written += fresh;
        }
    }

    fn wipe(&mut self) {
        self.direct.clear();
        self.pages.clear();
        self.written = 0;
    }
}

/// What the disk records about a control request it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiskControl {
    Fabric(FabricStep),
    /// LOGO to an initiator that sent a command without being logged in.
    Logo(FcId),
}

/// An initiator's login with the disk.
#[derive(Debug, Clone, Copy)]
struct Session {
    process_login: bool,
    max_payload: usize,
}

/// A prepared answer: data in (before truncation to FCP_DL) or the count of data out
/// received, and the status.
#[derive(Debug, Clone)]
struct Reply {
    status: u8,
    sense: Option<SenseRepr>,
    data: Vec<u8>,
    /// Data in still in the store, read as it is sent: (first block, bytes). Set only for
    /// READ, whose `data` is then empty.
    stored: Option<(u64, usize)>,
    received: usize,
}

impl Reply {
    fn good(data: Vec<u8>) -> Reply {
        Reply { status: status::GOOD, sense: None, data, stored: None, received: 0 }
    }

    fn check(key: SenseKey, asc: Asc) -> Reply {
        Reply {
            status: status::CHECK_CONDITION,
            sense: Some(SenseRepr::fixed(key, asc)),
            data: Vec::new(),
            stored: None,
            received: 0,
        }
    }

    /// The residual against FCP_DL of the bytes this reply moved, either way.
    fn residual(&self, fcp_dl: u32) -> Residual {
        let moved = self.data_len().max(self.received) as u64;
        match moved.cmp(&u64::from(fcp_dl)) {
            std::cmp::Ordering::Less => Residual::Under(fcp_dl - moved as u32),
            std::cmp::Ordering::Equal => Residual::None,
            std::cmp::Ordering::Greater => {
                Residual::Over(u32::try_from(moved - u64::from(fcp_dl)).unwrap_or(u32::MAX))
            }
        }
    }

    /// Bytes of data in, before truncation to FCP_DL.
    fn data_len(&self) -> usize {
        self.stored.map_or(self.data.len(), |(_, len)| len)
    }

    fn illegal(asc: Asc) -> Reply {
        Reply::check(SenseKey::IllegalRequest, asc)
    }
}

/// What a command does when its service ends.
#[derive(Debug)]
enum Work {
    Read {
        lba: u64,
        blocks: u64,
    },
    /// `len` bytes to write; `data` holds the data frames received so far (they arrive in
    /// order), each with where its payload lies in it: kept as they came, so the data is
    /// copied once, into the store, rather than into a buffer first.
    Write {
        lba: u64,
        len: usize,
        data: Vec<(Vec<u8>, Range<usize>)>,
    },
    Answer(Reply),
}

impl Work {
    fn bytes(&self, block_size: u32) -> u64 {
        match self {
            Work::Read { blocks, .. } => blocks * u64::from(block_size),
            Work::Write { len, .. } => *len as u64,
            Work::Answer(reply) => reply.data.len() as u64,
        }
    }
}

/// Where a command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Write data arriving: the next offset expected, the end of the burst asked for, the
    /// end of the whole transfer.
    Receiving {
        next: u32,
        burst_end: u32,
        total: u32,
    },
    Queued,
    InService {
        due: u64,
    },
    /// Accepted while hung: never answered.
    Hung,
}

/// A command's exchange, keyed by the RX_ID the disk assigned.
#[derive(Debug)]
struct TargetExchange {
    initiator: FcId,
    ox_id: u16,
    fcp_dl: u32,
    work: Work,
    stage: Stage,
}

/// The FCP disk target (see the module documentation).
#[derive(Debug)]
pub struct DiskTarget {
    config: DiskConfig,
    mode: DiskMode,
    port: NPort<DiskControl>,
    fabric: FabricLogin,
    sessions: BTreeMap<FcId, Session>,
    exchanges: BTreeMap<u16, TargetExchange>,
    waiting: VecDeque<u16>,
    in_service: BTreeSet<(u64, u16)>,
    next_rx_id: u16,
    /// Shared by every port of the disk (see [`DiskTarget::another_port`]).
    store: Arc<Mutex<BlockStore>>,
    stats: DiskStats,
    /// In [`DiskMode::WriteErrors`], the share of writes that fail, per million.
    write_error_ppm: u32,
    /// The xorshift state that draws which writes fail (seeded from the port name, so runs
    /// repeat).
    error_draw: u64,
    /// Lists of data frames of finished writes, emptied, for the next writes: a fresh list
    /// per write costs an allocation.
    spare_write_lists: Vec<Vec<(Vec<u8>, Range<usize>)>>,
    /// Bumped by every call that may change what [`DiskTarget::next_timer`] says (see
    /// [`DiskTarget::generation`]).
    generation: u64,
}

impl DiskTarget {
    /// A healthy disk with every block zero, not logged in.
    pub fn new(config: DiskConfig) -> DiskTarget {
        let store = Arc::new(Mutex::new(BlockStore::new(config.block_size.max(1) as usize)));
        DiskTarget::with_store(config, store)
    }

    /// Another port of the same disk: its own N_Port (`config` names it), logins, exchanges
    /// and queue, over the same blocks. The caller keeps the ports' modes in step.
    pub fn another_port(&self, config: DiskConfig) -> DiskTarget {
        DiskTarget::with_store(config, Arc::clone(&self.store))
    }

    /// The blocks (shared with the disk's other ports; never held across a call).
    fn blocks(&self) -> MutexGuard<'_, BlockStore> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_store(config: DiskConfig, store: Arc<Mutex<BlockStore>>) -> DiskTarget {
        let error_draw = config.port_name | 1;
        let port = NPort::new(config.mac, config.port_name, config.node_name);
        let registrations = vec![Registration::Fc4TypeFcp, Registration::NodeName];
        DiskTarget {
            config,
            mode: DiskMode::Healthy,
            port,
            fabric: FabricLogin::new(registrations, FABRIC_TIMEOUT_NS),
            sessions: BTreeMap::new(),
            exchanges: BTreeMap::new(),
            waiting: VecDeque::new(),
            in_service: BTreeSet::new(),
            next_rx_id: 1,
            write_error_ppm: 1_000_000,
            error_draw,
            store,
            stats: DiskStats::default(),
            spare_write_lists: Vec::new(),
            generation: 0,
        }
    }

    /// A number that changes whenever [`DiskTarget::next_timer`] may have changed: every
    /// call but a write's data frame that leaves its burst unfinished (most frames a disk
    /// receives), so a caller may keep the answer until it does.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The configuration.
    pub fn config(&self) -> &DiskConfig {
        &self.config
    }

    /// The N_Port ID the fabric assigned, once logged in.
    pub fn fc_id(&self) -> Option<u32> {
        self.port.fc_id().map(|id| id.0)
    }

    /// Whether fabric login and the name-server registrations have completed.
    pub fn is_online(&self) -> bool {
        self.fabric.phase() == nport::FabricPhase::Online
    }

    /// The current mode.
    pub fn mode(&self) -> DiskMode {
        self.mode
    }

    /// Starts (or restarts) fabric login. Nothing is sent while dead.
    pub fn start(&mut self, now: u64) -> Vec<Vec<u8>> {
        self.generation += 1;
        if self.mode == DiskMode::Dead {
            return Vec::new();
        }
        self.port.clear_requests();
        self.fabric.start(now, &mut self.port, DiskControl::Fabric)
    }

    /// Fail `fraction` (0 to 1) of the writes from now on, as [`DiskMode::WriteErrors`].
    pub fn set_write_errors(&mut self, fraction: f64) {
        self.set_mode(DiskMode::WriteErrors);
        self.write_error_ppm = (fraction.clamp(0.0, 1.0) * 1_000_000.0).round() as u32;
    }

    /// Gives a finished write's data frames back for reuse, and its list to later writes.
    fn recycle_write_data(&mut self, mut data: Vec<(Vec<u8>, Range<usize>)>) {
        for (frame, _) in data.drain(..) {
            crate::engine::recycle_frame_buffer(frame);
        }
        if self.spare_write_lists.len() < SPARE_WRITE_LISTS {
            self.spare_write_lists.push(data);
        }
    }

    /// Whether this write fails.
    fn draw_write_error(&mut self) -> bool {
        if self.write_error_ppm >= 1_000_000 {
            return true;
        }
        let mut x = self.error_draw;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.error_draw = x;
        (x % 1_000_000) < u64::from(self.write_error_ppm)
    }

    /// Switches the failure mode. Becoming [`DiskMode::Dead`] forgets every initiator login
    /// and every command in progress; fabric login survives (requests it had outstanding are
    /// sent again once the disk is back). Leaving it keeps the blocks; [`DiskTarget::wipe`]
    /// clears them.
    pub fn set_mode(&mut self, mode: DiskMode) {
        self.generation += 1;
        // A mode set directly fails every write when it fails writes at all.
        self.write_error_ppm = 1_000_000;
        if mode == DiskMode::Dead && self.mode != DiskMode::Dead {
            self.sessions.clear();
            self.exchanges.clear();
            self.waiting.clear();
            self.in_service.clear();
        }
        self.mode = mode;
    }

    /// Sets every block to zero.
    pub fn wipe(&mut self) {
        self.blocks().wipe();
    }

    /// Reads `blocks` blocks at `lba` directly (for the simulator's checks); blocks beyond
    /// the capacity read as zeros too.
    pub fn read_blocks(&self, lba: u64, blocks: u64) -> Vec<u8> {
        self.blocks().read(lba, blocks)
    }

    /// Reads `blocks` blocks from `lba` on into the start of `out` (no buffer of their own);
    /// returns the bytes read.
    pub fn read_blocks_into(&self, lba: u64, blocks: u64, out: &mut [u8]) -> usize {
        let store = self.blocks();
        let len = (blocks as usize).saturating_mul(store.block_size);
        store.read_into(lba, &mut out[..len]);
        len
    }

    /// The disk's block size in bytes.
    pub fn block_size(&self) -> usize {
        self.blocks().block_size
    }

    /// Blocks `lba..lba + out.len()` as kept ([`KeptBlock`]), written over `out`.
    pub fn kept_blocks_into(&self, lba: u64, out: &mut [KeptBlock]) {
        let store = self.blocks();
        for (i, kept) in out.iter_mut().enumerate() {
            *kept = KeptBlock(store.get(lba.wrapping_add(i as u64)).clone());
        }
    }

    /// The first of `kept` (blocks of this disk's size) that block `lba + i` does not hold,
    /// as `i`: entries compared, no bytes made.
    pub fn first_difference_kept(&self, lba: u64, kept: &[KeptBlock]) -> Option<u64> {
        let store = self.blocks();
        kept.iter()
            .enumerate()
            .position(|(i, k)| *store.get(lba.wrapping_add(i as u64)) != k.0)
            .map(|i| i as u64)
    }

    /// The first of the whole blocks of `data` that block `lba + i` does not hold, as `i`
    /// (for the simulator's checks: no bytes are made for blocks kept as stamps).
    pub fn first_difference(&self, lba: u64, data: &[u8]) -> Option<u64> {
        let store = self.blocks();
        let bs = store.block_size;
        data.chunks_exact(bs)
            .enumerate()
            .position(|(i, block)| !store.holds(lba.wrapping_add(i as u64), block))
            .map(|i| i as u64)
    }

    /// The first of `blocks` blocks at which this disk from `lba` on and `other` from
    /// `other_lba` on differ, as an offset (for the simulator's mirror checks). Blocks are
    /// kept in one form for each content ([`Stored::of`]), so equal entries are equal bytes
    /// and the bytes are not made.
    pub fn first_difference_with(
        &self,
        lba: u64,
        other: &DiskTarget,
        other_lba: u64,
        blocks: u64,
    ) -> Option<u64> {
        let differ = |x: &BlockStore, y: &BlockStore| {
            (0..blocks).find(|i| x.get(lba.wrapping_add(*i)) != y.get(other_lba.wrapping_add(*i)))
        };
        if Arc::ptr_eq(&self.store, &other.store) {
            let store = self.blocks();
            return differ(&store, &store);
        }
        let (x, y) = (self.blocks(), other.blocks());
        if x.block_size != y.block_size {
            let (a, b) = (x.read(lba, blocks), y.read(other_lba, blocks));
            return a
                .chunks(x.block_size)
                .zip(b.chunks(y.block_size))
                .position(|(p, q)| p != q)
                .map(|i| i as u64);
        }
        differ(&x, &y)
    }

    /// Writes whole blocks at `lba` directly (for the simulator's setup).
    pub fn write_blocks(&mut self, lba: u64, data: &[u8]) {
        self.blocks().write(lba, data);
    }

    /// Number of blocks ever written (the rest read as zeros).
    pub fn blocks_written(&self) -> u64 {
        self.blocks().written
    }

    /// The counters.
    pub fn stats(&self) -> DiskStats {
        let frames = self.port.counters();
        DiskStats {
            frames_in: frames.frames_in,
            bytes_in: frames.bytes_in,
            frames_out: frames.frames_out,
            bytes_out: frames.bytes_out,
            dropped_frames: frames.dropped_frames,
            ..self.stats
        }
    }

    /// Commands accepted and not answered yet (receiving data, queued, in service, hung).
    pub fn outstanding(&self) -> usize {
        self.exchanges.len()
    }

    /// The earliest time [`DiskTarget::on_timer`] has work (none while dead).
    pub fn next_timer(&self) -> Option<u64> {
        if self.mode == DiskMode::Dead {
            return None;
        }
        let service = self.in_service.first().map(|(due, _)| *due);
        [service, self.port.next_deadline(), self.fabric.next_timer()].into_iter().flatten().min()
    }

    /// Emits what became due at `now`: finished commands (data and status), fabric login
    /// retries.
    pub fn on_timer(&mut self, now: u64) -> Vec<Vec<u8>> {
        self.generation += 1;
        if self.mode == DiskMode::Dead {
            return Vec::new();
        }
        let mut out = self.fabric.on_timer(now, &mut self.port, DiskControl::Fabric);
        for request in self.port.expire(now) {
            if let DiskControl::Fabric(step) = request.purpose {
                out.extend(self.fabric.on_timeout(now, &mut self.port, step, DiskControl::Fabric));
            }
        }
        while let Some(&(due, rx_id)) = self.in_service.first() {
            if due > now {
                break;
            }
            self.in_service.remove(&(due, rx_id));
            let frames = self.complete(rx_id);
            if out.is_empty() {
                // Usually the only frames: taken as they are, not copied into a grown list.
                out = frames;
            } else {
                out.extend(frames);
            }
            // The freed slot was free from `due` on.
            self.start_service(due);
        }
        out
    }

    /// Handles a received Ethernet frame; returns the frames to send at once. Never panics.
    pub fn receive(&mut self, now: u64, frame: &[u8]) -> Vec<Vec<u8>> {
        self.receive_frame(now, frame.to_vec())
    }

    /// [`DiskTarget::receive`], for a frame the disk may keep: write data stays in its frame
    /// until the write is executed (frames not kept go back to the simulator's spare frame
    /// buffers, see [`crate::engine::recycle_frame_buffer`]).
    pub fn receive_frame(&mut self, now: u64, frame: Vec<u8>) -> Vec<Vec<u8>> {
        if self.mode == DiskMode::Dead {
            self.stats.ignored_while_dead += 1;
            crate::engine::recycle_frame_buffer(frame);
            return Vec::new();
        }
        let mut kept = None;
        let out = self.handle_frame(now, &frame, &mut kept);
        let exchange = kept.and_then(|(rx_id, payload)| Some((self.exchanges.get_mut(&rx_id)?, payload)));
        match exchange {
            Some((TargetExchange { work: Work::Write { data, .. }, .. }, payload)) => {
                data.push((frame, payload))
            }
            _ => crate::engine::recycle_frame_buffer(frame),
        }
        out
    }

    /// Handles a received frame; a write data frame accepted for exchange `rx_id` sets
    /// `kept` to `(rx_id, where its payload lies in the frame)`, for the caller to keep.
    fn handle_frame(
        &mut self,
        now: u64,
        frame: &[u8],
        kept: &mut Option<(u16, Range<usize>)>,
    ) -> Vec<Vec<u8>> {
        let Some(inbound) = self.port.accept(frame) else { return Vec::new() };
        let h = inbound.header;
        // Data frames bump the generation themselves, only when they end a burst.
        if (h.fc_type, h.r_ctl) != (fc_type::FCP, r_ctl::SOLICITED_DATA) {
            self.generation += 1;
        }
        let handled = match (h.fc_type, h.r_ctl) {
            (fc_type::ELS, r_ctl::ELS_REPLY) | (fc_type::CT, r_ctl::SOLICITED_CONTROL) => {
                self.on_reply(now, &inbound)
            }
            (fc_type::ELS, r_ctl::ELS_REQUEST) => self.on_els_request(&inbound),
            (fc_type::FCP, r_ctl::UNSOLICITED_COMMAND) => self.on_command(now, &inbound),
            (fc_type::FCP, r_ctl::SOLICITED_DATA) => {
                subslice_range(frame, inbound.payload).and_then(|payload| {
                    let out = self.on_data(now, &inbound)?;
                    *kept = Some((h.rx_id, payload));
                    Some(out)
                })
            }
            (fc_type::BLS, r_ctl::BLS_ABTS) => self.on_abts(now, &inbound),
            _ => None,
        };
        handled.unwrap_or_else(|| {
            self.port.count_dropped();
            Vec::new()
        })
    }

    // ---- link services ------------------------------------------------------------------

    fn on_reply(&mut self, now: u64, inbound: &Inbound<'_>) -> Option<Vec<Vec<u8>>> {
        let (request, reply) = self.port.take_reply(inbound)?;
        Some(match request.purpose {
            DiskControl::Fabric(step) => {
                let assigned = inbound.header.d_id;
                self.fabric.on_reply(now, &mut self.port, step, assigned, &reply, DiskControl::Fabric).frames
            }
            DiskControl::Logo(_) => Vec::new(),
        })
    }

    fn on_els_request(&mut self, inbound: &Inbound<'_>) -> Option<Vec<Vec<u8>>> {
        let h = inbound.header;
        if h.is_from_responder() || inbound.payload.is_empty() {
            return None;
        }
        let reply = match ElsRepr::parse(inbound.payload) {
            Ok(ElsRepr::Plogi(params)) => {
                self.end_session(h.s_id);
                let session = Session {
                    process_login: false,
                    max_payload: nport::data_payload_for(params.rcv_data_field_size()),
                };
                self.sessions.insert(h.s_id, session);
                ElsRepr::AccLogin(self.port.login_params())
            }
            Ok(ElsRepr::Prli(page)) => self.process_login(h.s_id, page),
            Ok(ElsRepr::Logo(_)) => {
                self.end_session(h.s_id);
                ElsRepr::Acc
            }
            _ => reject(reject_reason::COMMAND_NOT_SUPPORTED, reject_explanation::NONE),
        };
        Some(self.port.reply_els(&h, &reply).into_iter().collect())
    }

    fn process_login(&mut self, from: FcId, page: PrliPage) -> ElsRepr {
        let Some(session) = self.sessions.get_mut(&from) else {
            return reject(reject_reason::UNABLE_TO_PERFORM, reject_explanation::LOGIN_REQUIRED);
        };
        if page.fc_type != fc_type::FCP {
            return reject(reject_reason::UNABLE_TO_PERFORM, reject_explanation::REQUEST_NOT_SUPPORTED);
        }
        session.process_login = true;
        self.stats.logins += 1;
        ElsRepr::AccPrli(PrliPage {
            flags: prli_flags::IMAGE_PAIR_ESTABLISHED | 1,
            originator_pa: 0,
            responder_pa: 0,
            service_params: prli_fcp::TARGET | prli_fcp::READ_XFER_RDY_DISABLED,
            ..page
        })
    }

    /// Logs an initiator out: its session and every exchange it had.
    fn end_session(&mut self, initiator: FcId) {
        self.sessions.remove(&initiator);
        self.drop_exchanges(|e| e.initiator == initiator);
    }

    fn drop_exchanges(&mut self, doomed: impl Fn(&TargetExchange) -> bool) -> usize {
        let rx_ids: Vec<u16> = self.exchanges.iter().filter(|(_, e)| doomed(e)).map(|(rx, _)| *rx).collect();
        for rx_id in &rx_ids {
            self.drop_exchange(*rx_id);
        }
        rx_ids.len()
    }

    fn drop_exchange(&mut self, rx_id: u16) {
        if let Some(exchange) = self.exchanges.remove(&rx_id) {
            self.waiting.retain(|rx| *rx != rx_id);
            if let Stage::InService { due } = exchange.stage {
                self.in_service.remove(&(due, rx_id));
            }
        }
    }

    /// ABTS: drop the exchange (if known) and accept.
    fn on_abts(&mut self, now: u64, inbound: &Inbound<'_>) -> Option<Vec<Vec<u8>>> {
        let h = inbound.header;
        BlsRepr::parse(h.r_ctl, inbound.payload).ok()?;
        if h.is_from_responder() || !self.sessions.contains_key(&h.s_id) {
            return None;
        }
        let found = self
            .exchanges
            .iter()
            .find(|(rx, e)| {
                e.initiator == h.s_id && e.ox_id == h.ox_id && (h.rx_id == 0xFFFF || **rx == h.rx_id)
            })
            .map(|(rx, _)| *rx);
        let rx_id = match found {
            Some(rx_id) => {
                self.stats.aborts += 1;
                self.drop_exchange(rx_id);
                self.start_service(now);
                rx_id
            }
            None => h.rx_id,
        };
        let accept =
            BlsRepr::BaAcc { seq_id: None, ox_id: h.ox_id, rx_id, low_seq_cnt: 0, high_seq_cnt: 0xFFFF };
        let header = FcHeaderRepr {
            seq_id: self.port.next_seq_id(),
            ..fc_header(h.s_id, r_ctl::BLS_BA_ACC, fc_type::BLS, nport::F_CTL_FINAL_REPLY, h.ox_id, rx_id)
        };
        Some(self.port.emit(&header, &accept).into_iter().collect())
    }

    /// LOGO to an initiator that is not logged in (one at a time per initiator).
    fn refuse_initiator(&mut self, now: u64, initiator: FcId) -> Vec<Vec<u8>> {
        if self.port.requests().any(|r| r.purpose == DiskControl::Logo(initiator)) {
            return Vec::new();
        }
        let Some(own) = self.port.fc_id() else { return Vec::new() };
        self.stats.logouts_sent += 1;
        let logo = ElsRepr::Logo(LogoRepr { port_id: own, port_name: self.config.port_name });
        let deadline = now.saturating_add(FABRIC_TIMEOUT_NS);
        self.port.send_els(deadline, initiator, &logo, DiskControl::Logo(initiator)).into_iter().collect()
    }

    // ---- commands -------------------------------------------------------------------

    fn allocate_rx_id(&mut self) -> Option<u16> {
        for _ in 0..=u32::from(u16::MAX) {
            let candidate = self.next_rx_id;
            self.next_rx_id = candidate.wrapping_add(1);
            if candidate != 0xFFFF && !self.exchanges.contains_key(&candidate) {
                return Some(candidate);
            }
        }
        None
    }

    fn on_command(&mut self, now: u64, inbound: &Inbound<'_>) -> Option<Vec<Vec<u8>>> {
        let h = inbound.header;
        if h.is_from_responder() {
            return None;
        }
        if !self.sessions.get(&h.s_id).is_some_and(|s| s.process_login) {
            return Some(self.refuse_initiator(now, h.s_id));
        }
        let cmnd = FcpCmndRepr::parse(inbound.payload).ok()?;
        if self.exchanges.values().any(|e| e.initiator == h.s_id && e.ox_id == h.ox_id) {
            // A duplicate of a command in progress.
            return None;
        }
        let rx_id = self.allocate_rx_id()?;
        if cmnd.task_management != 0 {
            return Some(self.task_management(&h, rx_id, &cmnd));
        }
        let work = self.plan(&cmnd);
        let stage = if self.mode == DiskMode::Hang { Stage::Hung } else { Stage::Queued };
        let mut exchange =
            TargetExchange { initiator: h.s_id, ox_id: h.ox_id, fcp_dl: cmnd.fcp_dl, work, stage };
        let mut out = Vec::new();
        if stage == Stage::Queued
            && let Work::Write { len, .. } = &exchange.work
            && *len > 0
        {
            let total = *len as u32;
            let burst_end = self.burst_end(0, total);
            exchange.stage = Stage::Receiving { next: 0, burst_end, total };
            out.extend(self.xfer_rdy(h.s_id, h.ox_id, rx_id, 0, burst_end));
        }
        let queued = exchange.stage == Stage::Queued;
        self.exchanges.insert(rx_id, exchange);
        if queued {
            self.waiting.push_back(rx_id);
            self.start_service(now);
        }
        Some(out)
    }

    fn burst_end(&self, from: u32, total: u32) -> u32 {
        match self.config.max_burst {
            0 => total,
            burst => from.saturating_add(burst).min(total),
        }
    }

    fn xfer_rdy(&mut self, to: FcId, ox_id: u16, rx_id: u16, from: u32, to_offset: u32) -> Option<Vec<u8>> {
        let ready = FcpXferRdyRepr { data_ro: from, burst_len: to_offset - from };
        let f_ctl = f_ctl::EXCHANGE_CONTEXT | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
        let header = FcHeaderRepr {
            seq_id: self.port.next_seq_id(),
            ..fc_header(to, r_ctl::DATA_DESCRIPTOR, fc_type::FCP, f_ctl, ox_id, rx_id)
        };
        self.port.emit(&header, &ready)
    }

    /// Write data: accepted in order within the burst asked for; the next burst is asked
    /// for when one is complete, and the command queues for service when all has arrived.
    fn on_data(&mut self, now: u64, inbound: &Inbound<'_>) -> Option<Vec<Vec<u8>>> {
        let h = inbound.header;
        let exchange = self.exchanges.get_mut(&h.rx_id)?;
        if exchange.initiator != h.s_id || exchange.ox_id != h.ox_id || h.is_from_responder() {
            return None;
        }
        let Stage::Receiving { next, burst_end, total } = exchange.stage else { return None };
        let Work::Write { .. } = &exchange.work else { return None };
        let offset = h.relative_offset().unwrap_or(next);
        let len = inbound.payload.len() as u32;
        if offset != next || offset.checked_add(len)? > burst_end || len == 0 {
            return None;
        }
        // The caller (`receive_frame`) keeps the payload with its frame: the data from
        // byte `offset` on, since frames are accepted in order only.
        let next = offset + len;
        if next < burst_end {
            exchange.stage = Stage::Receiving { next, burst_end, total };
            return Some(Vec::new());
        }
        // The burst ends: a new one is asked for, or the write starts its service.
        self.generation += 1;
        if next < total {
            let burst_end = self.burst_end(next, total);
            if let Some(exchange) = self.exchanges.get_mut(&h.rx_id) {
                exchange.stage = Stage::Receiving { next, burst_end, total };
            }
            return Some(self.xfer_rdy(h.s_id, h.ox_id, h.rx_id, next, burst_end).into_iter().collect());
        }
        exchange.stage = Stage::Queued;
        self.waiting.push_back(h.rx_id);
        self.start_service(now);
        Some(Vec::new())
    }

    /// Starts serving waiting commands while slots are free, from time `at`.
    fn start_service(&mut self, at: u64) {
        let slowdown = match self.mode {
            DiskMode::Slow { factor } => factor,
            _ => 1,
        };
        while self.in_service.len() < self.config.latency.slots() {
            let Some(rx_id) = self.waiting.pop_front() else { break };
            let Some(exchange) = self.exchanges.get_mut(&rx_id) else { continue };
            let bytes = exchange.work.bytes(self.config.block_size);
            let due = at.saturating_add(self.config.latency.service_time(bytes, slowdown));
            exchange.stage = Stage::InService { due };
            self.in_service.insert((due, rx_id));
        }
    }

    /// A command's service ended: execute it and answer, unless the disk hangs.
    fn complete(&mut self, rx_id: u16) -> Vec<Vec<u8>> {
        if self.mode == DiskMode::Hang {
            if let Some(exchange) = self.exchanges.get_mut(&rx_id) {
                exchange.stage = Stage::Hung;
            }
            return Vec::new();
        }
        let Some(exchange) = self.exchanges.remove(&rx_id) else { return Vec::new() };
        let reply = self.execute(exchange.work);
        self.answer(exchange.initiator, exchange.ox_id, rx_id, exchange.fcp_dl, &reply)
    }

    fn execute(&mut self, work: Work) -> Reply {
        match work {
            Work::Read { .. } if self.mode == DiskMode::ReadErrors => {
                self.stats.medium_errors += 1;
                Reply::check(SenseKey::MediumError, Asc::UNRECOVERED_READ_ERROR)
            }
            Work::Read { lba, blocks } => {
                // Read by `answer` straight into the frames, at this same instant.
                let len = (blocks as usize).saturating_mul(self.blocks().block_size);
                self.stats.bytes_read += len as u64;
                Reply { stored: Some((lba, len)), ..Reply::good(Vec::new()) }
            }
            Work::Write { data, .. } if self.mode == DiskMode::WriteErrors && self.draw_write_error() => {
                self.stats.medium_errors += 1;
                let received = data.iter().map(|(_, payload)| payload.len()).sum();
                self.recycle_write_data(data);
                Reply { received, ..Reply::check(SenseKey::MediumError, Asc::WRITE_ERROR) }
            }
            Work::Write { lba, data, .. } => {
                let mut received = 0;
                {
                    let mut blocks = self.blocks();
                    for (frame, payload) in &data {
                        blocks.write_bytes(lba, received, &frame[payload.clone()]);
                        received += payload.len();
                    }
                    // Whole blocks only, as `BlockStore::write` counts them.
                    let block_size = blocks.block_size;
                    blocks.mark_written(lba, received / block_size);
                }
                self.stats.bytes_written += received as u64;
                self.recycle_write_data(data);
                Reply { received, ..Reply::good(Vec::new()) }
            }
            Work::Answer(reply) => reply,
        }
    }

    /// Sends a reply: its data (cut to FCP_DL) as one sequence, then FCP_RSP with the
    /// residual and sense.
    fn answer(
        &mut self,
        initiator: FcId,
        ox_id: u16,
        rx_id: u16,
        fcp_dl: u32,
        reply: &Reply,
    ) -> Vec<Vec<u8>> {
        let max_payload = self.sessions.get(&initiator).map_or(nport::MAX_DATA_PAYLOAD, |s| s.max_payload);
        let sent = reply.data_len().min(fcp_dl as usize);
        let mut out = match reply.stored {
            Some((lba, _)) => {
                // A clone of the handle, so the guard does not borrow `self` (the port emits).
                let store = Arc::clone(&self.store);
                let blocks = store.lock().unwrap_or_else(PoisonError::into_inner);
                self.send_data(
                    initiator,
                    ox_id,
                    rx_id,
                    ReadData::Stored { blocks: &blocks, lba },
                    sent,
                    max_payload,
                )
            }
            None => self.send_data(initiator, ox_id, rx_id, ReadData::Bytes(&reply.data), sent, max_payload),
        };
        let residual = reply.residual(fcp_dl);
        if reply.status == status::CHECK_CONDITION {
            self.stats.check_conditions += 1;
        }
        let mut sense = [0u8; 64];
        let sense_len = reply.sense.and_then(|s| s.emit(&mut sense).ok());
        let rsp = FcpRspRepr {
            scsi_status: reply.status,
            residual,
            sense: sense_len.map(|n| &sense[..n]),
            ..FcpRspRepr::good()
        };
        let f_ctl =
            f_ctl::EXCHANGE_CONTEXT | f_ctl::LAST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
        let header = FcHeaderRepr {
            seq_id: self.port.next_seq_id(),
            ..fc_header(initiator, r_ctl::COMMAND_STATUS, fc_type::FCP, f_ctl, ox_id, rx_id)
        };
        out.extend(self.port.emit(&header, &rsp));
        out
    }

    /// Read data as one sequence: frames of at most `max_payload` bytes with relative offsets;
    /// the disk keeps the sequence initiative (FCP_RSP follows).
    fn send_data(
        &mut self,
        to: FcId,
        ox_id: u16,
        rx_id: u16,
        data: ReadData<'_>,
        len: usize,
        max_payload: usize,
    ) -> Vec<Vec<u8>> {
        if len == 0 {
            return Vec::new();
        }
        let seq_id = self.port.next_seq_id();
        let count = len.div_ceil(max_payload);
        // Room for FCP_RSP too, which `answer` adds.
        let mut out = Vec::with_capacity(count + 1);
        for i in 0..count {
            let offset = i * max_payload;
            let n = max_payload.min(len - offset);
            let last = i + 1 == count;
            let f_ctl =
                f_ctl::EXCHANGE_CONTEXT | f_ctl::RELATIVE_OFFSET | if last { f_ctl::END_SEQUENCE } else { 0 };
            let header = FcHeaderRepr {
                seq_id,
                seq_cnt: i as u16,
                parameter: (i * max_payload) as u32,
                ..fc_header(to, r_ctl::SOLICITED_DATA, fc_type::FCP, f_ctl, ox_id, rx_id)
            };
            let frame = match data {
                ReadData::Bytes(bytes) => self.port.emit(&header, &bytes[offset..offset + n]),
                ReadData::Stored { blocks, lba } => {
                    self.port.emit(&header, &StoredRange { blocks, lba, offset, len: n })
                }
            };
            out.extend(frame);
        }
        out
    }

    /// A task management function: the initiator's other exchanges (on the LUN, for a
    /// LOGICAL UNIT RESET) are cleared and the function reported complete.
    fn task_management(&mut self, h: &FcHeaderRepr, rx_id: u16, cmnd: &FcpCmndRepr<'_>) -> Vec<Vec<u8>> {
        self.stats.commands.task_management += 1;
        let initiator = h.s_id;
        if cmnd.task_management & dve_wire::fcp::tmf::TARGET_RESET != 0 {
            self.drop_exchanges(|_| true);
        } else if cmnd.task_management & dve_wire::fcp::tmf::CLEAR_ACA == 0 {
            self.drop_exchanges(|e| e.initiator == initiator);
        }
        let info = [0u8, 0, 0, dve_wire::fcp::rsp_code::COMPLETE];
        let rsp = FcpRspRepr { response_info: Some(&info), ..FcpRspRepr::good() };
        let f_ctl =
            f_ctl::EXCHANGE_CONTEXT | f_ctl::LAST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
        let header = FcHeaderRepr {
            seq_id: self.port.next_seq_id(),
            ..fc_header(initiator, r_ctl::COMMAND_STATUS, fc_type::FCP, f_ctl, h.ox_id, rx_id)
        };
        self.port.emit(&header, &rsp).into_iter().collect()
    }

    // ---- SCSI -------------------------------------------------------------------------

    /// Decides what a command will do, checking what can be checked at once.
    fn plan(&mut self, cmnd: &FcpCmndRepr<'_>) -> Work {
        let lun = lun_index(&cmnd.lun);
        let cdb = match Cdb::parse(cmnd.cdb) {
            Ok(cdb) => cdb,
            Err(WireError::UnknownOpcode(_)) => {
                self.stats.commands.unsupported += 1;
                return Work::Answer(Reply::illegal(Asc::INVALID_COMMAND_OPERATION_CODE));
            }
            Err(_) => {
                self.stats.commands.unsupported += 1;
                return Work::Answer(Reply::illegal(Asc::INVALID_FIELD_IN_CDB));
            }
        };
        self.count_command(&cdb);
        match cdb {
            Cdb::ReportLuns { allocation_length, .. } => Work::Answer(report_luns(allocation_length)),
            Cdb::Inquiry { evpd, page_code, allocation_length, .. } => {
                Work::Answer(self.inquiry(lun, evpd, page_code, allocation_length))
            }
            _ if lun != Some(0) => Work::Answer(Reply::illegal(Asc::LOGICAL_UNIT_NOT_SUPPORTED)),
            Cdb::ReadCapacity10 { .. } => Work::Answer(self.read_capacity_10()),
            Cdb::ReadCapacity16 { allocation_length, .. } => {
                Work::Answer(self.read_capacity_16(allocation_length))
            }
            Cdb::TestUnitReady { .. } | Cdb::SynchronizeCache10(_) | Cdb::SynchronizeCache16(_) => {
                Work::Answer(Reply::good(Vec::new()))
            }
            Cdb::RequestSense { allocation_length, .. } => Work::Answer(request_sense(allocation_length)),
            Cdb::Read6(_)
            | Cdb::Read10(_)
            | Cdb::Read16(_)
            | Cdb::Write6(_)
            | Cdb::Write10(_)
            | Cdb::Write16(_) => self.plan_read_write(&cdb, cmnd.fcp_dl),
            _ => Work::Answer(Reply::illegal(Asc::INVALID_COMMAND_OPERATION_CODE)),
        }
    }

    fn count_command(&mut self, cdb: &Cdb) {
        let counts = &mut self.stats.commands;
        let counter = match cdb {
            Cdb::Read6(_) | Cdb::Read10(_) | Cdb::Read16(_) => &mut counts.read,
            Cdb::Write6(_) | Cdb::Write10(_) | Cdb::Write16(_) => &mut counts.write,
            Cdb::Inquiry { .. } => &mut counts.inquiry,
            Cdb::ReportLuns { .. } => &mut counts.report_luns,
            Cdb::ReadCapacity10 { .. } | Cdb::ReadCapacity16 { .. } => &mut counts.read_capacity,
            Cdb::TestUnitReady { .. } => &mut counts.test_unit_ready,
            Cdb::SynchronizeCache10(_) | Cdb::SynchronizeCache16(_) => &mut counts.synchronize_cache,
            Cdb::RequestSense { .. } => &mut counts.request_sense,
            _ => &mut counts.unsupported,
        };
        *counter += 1;
    }

    fn plan_read_write(&mut self, cdb: &Cdb, fcp_dl: u32) -> Work {
        let Some((lba, blocks)) = cdb.read_write_extent() else {
            return Work::Answer(Reply::illegal(Asc::INVALID_FIELD_IN_CDB));
        };
        let blocks = u64::from(blocks);
        if lba.checked_add(blocks).is_none_or(|end| end > self.config.blocks) {
            return Work::Answer(Reply::illegal(Asc::LBA_OUT_OF_RANGE));
        }
        let bytes = blocks * u64::from(self.config.block_size);
        if bytes > MAX_TRANSFER_BYTES {
            return Work::Answer(Reply::illegal(Asc::INVALID_FIELD_IN_CDB));
        }
        if matches!(cdb, Cdb::Read6(_) | Cdb::Read10(_) | Cdb::Read16(_)) {
            return Work::Read { lba, blocks };
        }
        if bytes != u64::from(fcp_dl) {
            // The data the initiator would send does not match the blocks to write.
            return Work::Answer(Reply::illegal(Asc::INVALID_FIELD_IN_CDB));
        }
        let data = self.spare_write_lists.pop().unwrap_or_default();
        Work::Write { lba, len: bytes as usize, data }
    }

    fn inquiry(&self, lun: Option<u16>, evpd: bool, page_code: u8, allocation_length: u16) -> Reply {
        let mut data = [0u8; 256];
        let emitted = match (lun, evpd) {
            (Some(0), false) => StandardInquiry::disk(VENDOR, &self.config.name, REVISION).emit(&mut data),
            (_, false) => {
                let none =
                    StandardInquiry { peripheral: NO_LUN, ..StandardInquiry::disk(VENDOR, "", REVISION) };
                none.emit(&mut data)
            }
            (Some(0), true) => match self.vpd_page(page_code, &mut data) {
                Some(result) => result,
                None => return Reply::illegal(Asc::INVALID_FIELD_IN_CDB),
            },
            (_, true) => return Reply::illegal(Asc::LOGICAL_UNIT_NOT_SUPPORTED),
        };
        match emitted {
            Ok(len) => Reply::good(data[..len.min(usize::from(allocation_length))].to_vec()),
            Err(_) => Reply::check(SenseKey::HardwareError, Asc::INTERNAL_TARGET_FAILURE),
        }
    }

    /// Emits VPD page `page_code` into `out`; `None` for a page the disk does not have.
    fn vpd_page(&self, page_code: u8, out: &mut [u8]) -> Option<Result<usize, WireError>> {
        let serial = format!("{:016X}", self.config.unit_name);
        let port_name = self.config.port_name.to_be_bytes();
        let naa = naa_identifier(self.config.unit_name).to_be_bytes();
        let designators = [
            Designator {
                protocol_id: 0,
                code_set: code_set::BINARY,
                piv: false,
                association: 0,
                designator_type: designator_type::NAA,
                designator: &naa,
            },
            Designator {
                protocol_id: 0,
                code_set: code_set::BINARY,
                piv: true,
                association: 1,
                designator_type: designator_type::NAA,
                designator: &port_name,
            },
        ];
        let page = match page_code {
            vpd_page::SUPPORTED_PAGES => VpdPage::SupportedPages(&[
                vpd_page::SUPPORTED_PAGES,
                vpd_page::UNIT_SERIAL_NUMBER,
                vpd_page::DEVICE_IDENTIFICATION,
            ]),
            vpd_page::UNIT_SERIAL_NUMBER => VpdPage::UnitSerialNumber(serial.as_bytes()),
            vpd_page::DEVICE_IDENTIFICATION => VpdPage::DeviceIdentification(Designators::List(&designators)),
            _ => return None,
        };
        Some(VpdRepr { peripheral: 0, page }.emit(out))
    }

    fn read_capacity_10(&self) -> Reply {
        let last_lba = u32::try_from(self.config.blocks.saturating_sub(1)).unwrap_or(u32::MAX);
        emitted(&ReadCapacity10Data { last_lba, block_len: self.config.block_size }, u32::MAX)
    }

    fn read_capacity_16(&self, allocation_length: u32) -> Reply {
        let data = ReadCapacity16Data {
            last_lba: self.config.blocks.saturating_sub(1),
            block_len: self.config.block_size,
            flags: [0; 4],
        };
        emitted(&data, allocation_length)
    }
}

/// GOOD with `data` as parameter data, cut to `allocation_length`.
fn emitted<W: WireEmit>(data: &W, allocation_length: u32) -> Reply {
    let mut buf = vec![0u8; data.buffer_len()];
    match data.emit(&mut buf) {
        Ok(_) => {
            buf.truncate(buf.len().min(allocation_length as usize));
            Reply::good(buf)
        }
        Err(_) => Reply::check(SenseKey::HardwareError, Asc::INTERNAL_TARGET_FAILURE),
    }
}

fn report_luns(allocation_length: u32) -> Reply {
    if allocation_length < 16 {
        return Reply::illegal(Asc::INVALID_FIELD_IN_CDB);
    }
    emitted(&ReportLunsData::List(&[lun_from_index(0)]), allocation_length)
}

/// REQUEST SENSE: nothing to report (errors are reported with their status).
fn request_sense(allocation_length: u8) -> Reply {
    emitted(&SenseRepr::fixed(SenseKey::NoSense, Asc::NO_ADDITIONAL_SENSE), u32::from(allocation_length))
}

/// The logical unit's NAA designator: the port name if it is NAA 5 (IEEE registered),
/// otherwise NAA 5 with the port name's low 60 bits.
/// Where `part`, a subslice of `whole`, lies in it; `None` if it is not inside.
fn subslice_range(whole: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

fn naa_identifier(port_name: u64) -> u64 {
    if port_name >> 60 == 5 { port_name } else { (5 << 60) | (port_name & 0x0FFF_FFFF_FFFF_FFFF) }
}

fn reject(reason: u8, explanation: u8) -> ElsRepr {
    ElsRepr::LsRjt(LsRjtRepr { reason, explanation, vendor: 0 })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use dve_wire::els::ElsRepr;
    use dve_wire::fc::{FcHeaderRepr, FcId, f_ctl, fc_type, r_ctl};
    use dve_wire::fcp::{FcpCmndRepr, TaskAttribute, lun_from_index};
    use dve_wire::scsi::data::{ReadCapacity10Data, ReadCapacity16Data, ReportLunsData};
    use dve_wire::scsi::inquiry::{StandardInquiry, VpdPage, VpdRepr};
    use dve_wire::scsi::status;
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::host::nport::{F_CTL_REQUEST, fc_header};
    use crate::host::testbed::{Bench, disk_config, disk_wwpn, forge};
    use crate::host::{Completion, HostOp, HostRequest, IoOutcome};

    fn outcome(c: &Completion) -> &IoOutcome {
        c.result.as_ref().expect("the request completes with a status")
    }

    fn command(bench: &mut Bench, lun: u16, cdb: &[u8], data_in_len: u32) -> IoOutcome {
        let op = HostOp::Command { cdb: cdb.to_vec(), data_out: Vec::new(), data_in_len };
        let request = HostRequest { target: disk_wwpn(0), lun, op };
        let (id, frames) = bench.host.submit(bench.now, request).expect("accepted");
        bench.send(0, frames);
        outcome(&bench.wait(id)).clone()
    }

    fn check(key: u8, asc: Asc) -> Option<(u8, u8, u8)> {
        Some((key, asc.asc, asc.ascq))
    }

    #[test]
    fn write_and_read_errors_give_medium_errors() {
        let mut bench = Bench::ready();
        bench.disks[0].set_mode(DiskMode::WriteErrors);
        let done = bench.io(HostOp::Write { lba: 4, data: Bytes::from(vec![7; 1024]) });
        assert_eq!(outcome(&done).status, status::CHECK_CONDITION);
        assert_eq!(outcome(&done).sense, check(0x03, Asc::WRITE_ERROR));
        assert_eq!((done.retries, outcome(&done).residual), (0, 0));
        assert_eq!(bench.disks[0].read_blocks(4, 2), vec![0; 1024], "failed write data is not applied");
        assert_eq!(bench.disks[0].blocks_written(), 0);

        bench.disks[0].set_mode(DiskMode::Healthy);
        assert!(outcome(&bench.io(HostOp::Write { lba: 4, data: Bytes::from(vec![7; 1024]) })).is_good());
        bench.disks[0].set_mode(DiskMode::ReadErrors);
        let read = bench.io(HostOp::Read { lba: 4, blocks: 2 });
        assert_eq!(outcome(&read).sense, check(0x03, Asc::UNRECOVERED_READ_ERROR));
        assert_eq!(outcome(&read).residual, 1024, "no data sent");
        assert!(bench.tapped(r_ctl::SOLICITED_DATA, fc_type::FCP).iter().all(|t| t.from != 1));
        let stats = bench.disks[0].stats();
        assert_eq!((stats.medium_errors, stats.check_conditions, stats.bytes_written), (2, 2, 1024));
    }

    #[test]
    fn a_share_of_writes_fails_when_asked() {
        let mut bench = Bench::ready();
        bench.disks[0].set_write_errors(0.25);
        let mut failed = 0;
        for i in 0..400u64 {
            let done = bench.io(HostOp::Write { lba: i % 64, data: Bytes::from(vec![i as u8; 512]) });
            if !outcome(&done).is_good() {
                assert_eq!(outcome(&done).sense, check(0x03, Asc::WRITE_ERROR));
                failed += 1;
            }
        }
        assert!((60..=140).contains(&failed), "about a quarter of 400 writes failed: {failed}");
        assert_eq!(bench.disks[0].stats().medium_errors, failed);
        bench.disks[0].set_write_errors(1.0);
        assert!(!outcome(&bench.io(HostOp::Write { lba: 0, data: Bytes::from(vec![1; 512]) })).is_good());
    }

    #[test]
    fn slow_mode_multiplies_service_time() {
        let mut bench = Bench::ready();
        let healthy = bench.io(HostOp::Read { lba: 0, blocks: 8 }).latency();
        bench.disks[0].set_mode(DiskMode::Slow { factor: 10 });
        let slow = bench.io(HostOp::Read { lba: 0, blocks: 8 }).latency();
        let service = disk_config(0).latency.service_time(4096, 1);
        assert_eq!((healthy, slow), (service, 10 * service));
    }

    #[test]
    fn hang_accepts_commands_and_answers_only_abts() {
        let mut bench = Bench::ready();
        bench.disks[0].set_mode(DiskMode::Hang);
        bench.submit(HostOp::Write { lba: 0, data: Bytes::from(vec![1; 512]) });
        bench.submit(HostOp::Read { lba: 0, blocks: 1 });
        bench.run_for(crate::host::testbed::IO_TIMEOUT_NS / 2);
        assert_eq!(bench.disks[0].outstanding(), 2);
        assert!(bench.tap.iter().all(|t| t.from != 1), "nothing answered");
        assert_eq!(bench.disks[0].next_timer(), None);
        bench.run_for(crate::host::testbed::IO_TIMEOUT_NS);
        assert_eq!(bench.disks[0].stats().aborts, 2);
        assert_eq!(bench.tapped(r_ctl::BLS_BA_ACC, fc_type::BLS).len(), 2);
    }

    #[test]
    fn unsupported_out_of_range_and_other_luns_are_refused() {
        let mut bench = Bench::ready();
        let illegal = |asc| check(0x05, asc);
        assert_eq!(
            command(&mut bench, 0, &[0xC5; 16], 0).sense,
            illegal(Asc::INVALID_COMMAND_OPERATION_CODE)
        );
        let mode_sense = [0x1A, 0, 0x3F, 0, 255, 0];
        assert_eq!(
            command(&mut bench, 0, &mode_sense, 255).sense,
            illegal(Asc::INVALID_COMMAND_OPERATION_CODE)
        );
        let bad_field = [0x00, 0, 0, 1, 0, 0];
        assert_eq!(command(&mut bench, 0, &bad_field, 0).sense, illegal(Asc::INVALID_FIELD_IN_CDB));
        let done = bench.io(HostOp::Read { lba: 4095, blocks: 2 });
        assert_eq!(outcome(&done).sense, illegal(Asc::LBA_OUT_OF_RANGE));
        let done = bench.io(HostOp::Write { lba: 4096, data: Bytes::from(vec![0; 512]) });
        assert_eq!(outcome(&done).sense, illegal(Asc::LBA_OUT_OF_RANGE));
        assert!(bench.tapped(r_ctl::DATA_DESCRIPTOR, fc_type::FCP).is_empty(), "no data asked for");
        let tur = [0u8; 6];
        assert_eq!(command(&mut bench, 1, &tur, 0).sense, illegal(Asc::LOGICAL_UNIT_NOT_SUPPORTED));
        let inquiry = command(&mut bench, 1, &[0x12, 0, 0, 0, 36, 0], 36);
        assert_eq!(StandardInquiry::parse(&inquiry.data).unwrap().peripheral, NO_LUN);
        assert_eq!(bench.disks[0].stats().commands.unsupported, 3);
    }

    #[test]
    fn inquiry_pages_identify_the_disk() {
        let mut bench = Bench::ready();
        let standard = command(&mut bench, 0, &[0x12, 0, 0, 0, 96, 0], 96);
        let inquiry = StandardInquiry::parse(&standard.data).unwrap();
        assert_eq!((&inquiry.vendor[..6], &inquiry.product[..5]), (&b"DVESIM"[..], &b"disk0"[..]));
        assert_eq!(standard.residual, 96 - 36);
        let page = |bench: &mut Bench, code: u8| command(bench, 0, &[0x12, 1, code, 0, 255, 0], 255).data;
        let supported = page(&mut bench, 0x00);
        assert_eq!(VpdRepr::parse(&supported).unwrap().page, VpdPage::SupportedPages(&[0x00, 0x80, 0x83]));
        let serial = page(&mut bench, 0x80);
        let expected = format!("{:016X}", disk_wwpn(0));
        assert_eq!(VpdRepr::parse(&serial).unwrap().page, VpdPage::UnitSerialNumber(expected.as_bytes()));
        let ids = page(&mut bench, 0x83);
        let VpdPage::DeviceIdentification(designators) = VpdRepr::parse(&ids).unwrap().page else { panic!() };
        let list: Vec<_> = designators.iter().collect();
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].association, list[0].designator_type), (0, designator_type::NAA));
        assert_eq!(list[0].designator, &naa_identifier(disk_wwpn(0)).to_be_bytes());
        assert_eq!(list[0].designator[0] >> 4, 5, "NAA 5");
        assert_eq!((list[1].association, list[1].piv), (1, true));
        assert_eq!(list[1].designator, &disk_wwpn(0).to_be_bytes());
        let unknown = command(&mut bench, 0, &[0x12, 1, 0xB0, 0, 255, 0], 255);
        assert_eq!(unknown.sense, check(0x05, Asc::INVALID_FIELD_IN_CDB));
    }

    #[test]
    fn capacity_luns_and_housekeeping_commands() {
        let mut bench = Bench::ready();
        let rc10 = command(&mut bench, 0, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
        assert_eq!(
            ReadCapacity10Data::parse(&rc10.data).unwrap(),
            ReadCapacity10Data { last_lba: 4095, block_len: 512 }
        );
        let mut rc16 = [0u8; 16];
        rc16[0] = 0x9E;
        rc16[1] = 0x10;
        rc16[13] = 32;
        let data = command(&mut bench, 0, &rc16, 32).data;
        assert_eq!(ReadCapacity16Data::parse(&data).unwrap().last_lba, 4095);
        let report = command(&mut bench, 5, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], 256);
        let luns: Vec<[u8; 8]> = ReportLunsData::parse(&report.data).unwrap().iter().collect();
        assert_eq!(luns, vec![lun_from_index(0)]);
        let short = command(&mut bench, 0, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], 8);
        assert_eq!(short.sense, check(0x05, Asc::INVALID_FIELD_IN_CDB));
        assert!(command(&mut bench, 0, &[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0).is_good());
        let sense = command(&mut bench, 0, &[0x03, 0, 0, 0, 18, 0], 18);
        assert_eq!(SenseRepr::parse(&sense.data).unwrap().key, SenseKey::NoSense);
        let counts = bench.disks[0].stats().commands;
        assert_eq!((counts.read_capacity, counts.synchronize_cache, counts.request_sense), (3, 1, 1));
    }

    #[test]
    fn queue_depth_limits_commands_in_service() {
        let mut config = disk_config(0);
        config.latency = LatencyModel { fixed_ns: 1_000_000, per_kib_ns: 0, queue_depth: 2 };
        let mut bench = Bench::ready_with(config);
        let ids: Vec<_> = (0..5).map(|i| bench.submit(HostOp::Read { lba: i, blocks: 1 })).collect();
        let latencies: Vec<u64> = ids.into_iter().map(|id| bench.wait(id).latency()).collect();
        assert_eq!(latencies, [1_000_000, 1_000_000, 2_000_000, 2_000_000, 3_000_000]);
    }

    fn cmnd_frame(from: FcId, to: FcId, ox_id: u16, task_management: u8) -> Vec<u8> {
        let cdb = [0u8; 16];
        let cmnd = FcpCmndRepr {
            lun: lun_from_index(0),
            crn: 0,
            priority: 0,
            task_attribute: TaskAttribute::Simple,
            task_management,
            wrdata: false,
            rddata: false,
            cdb: &cdb,
            fcp_dl: 0,
        };
        let header = FcHeaderRepr {
            s_id: from,
            ..fc_header(to, r_ctl::UNSOLICITED_COMMAND, fc_type::FCP, F_CTL_REQUEST, ox_id, 0xFFFF)
        };
        forge(&header, &cmnd)
    }

    #[test]
    fn a_command_from_an_initiator_not_logged_in_gets_a_logo() {
        let mut bench = Bench::ready();
        let disk_id = bench.fc_id_of(1);
        let stranger = FcId(0x01_0F0F);
        let disk = &mut bench.disks[0];
        let out = disk.receive(1, &cmnd_frame(stranger, disk_id, 1, 0));
        assert_eq!(out.len(), 1);
        let view = dve_wire::parse_fcoe_frame(&out[0]).unwrap();
        assert_eq!((view.header.d_id, view.header.r_ctl), (stranger, r_ctl::ELS_REQUEST));
        assert!(matches!(ElsRepr::parse(view.payload), Ok(ElsRepr::Logo(l)) if l.port_id == disk_id));
        assert!(disk.receive(2, &cmnd_frame(stranger, disk_id, 2, 0)).is_empty(), "one LOGO at a time");
        assert_eq!((disk.outstanding(), disk.stats().logouts_sent), (0, 1));
    }

    #[test]
    fn task_management_clears_the_initiators_commands() {
        let mut bench = Bench::ready();
        bench.disks[0].set_mode(DiskMode::Hang);
        bench.submit(HostOp::Read { lba: 0, blocks: 1 });
        bench.settle();
        assert_eq!(bench.disks[0].outstanding(), 1);
        let (host_id, disk_id) = (bench.fc_id_of(0), bench.fc_id_of(1));
        let out = bench.disks[0].receive(bench.now, &cmnd_frame(host_id, disk_id, 0x4000, 0x02));
        assert_eq!((out.len(), bench.disks[0].outstanding()), (1, 0));
        let view = dve_wire::parse_fcoe_frame(&out[0]).unwrap();
        let rsp = dve_wire::fcp::FcpRspRepr::parse(view.payload).unwrap();
        assert_eq!(rsp.response_code(), Some(0));
        assert_eq!(view.header.f_ctl & f_ctl::EXCHANGE_CONTEXT, f_ctl::EXCHANGE_CONTEXT);
    }

    #[test]
    fn dead_answers_nothing_and_comes_back_with_its_data() {
        let mut bench = Bench::ready();
        let data = vec![0x5A; 1024];
        assert!(outcome(&bench.io(HostOp::Write { lba: 100, data: Bytes::from(data.clone()) })).is_good());
        bench.disks[0].set_mode(DiskMode::Dead);
        let (host_id, disk_id) = (bench.fc_id_of(0), bench.fc_id_of(1));
        assert!(bench.disks[0].receive(bench.now, &cmnd_frame(host_id, disk_id, 9, 0)).is_empty());
        assert_eq!(bench.disks[0].stats().ignored_while_dead, 1);
        bench.disks[0].set_mode(DiskMode::Healthy);
        assert_eq!(outcome(&bench.io(HostOp::Read { lba: 100, blocks: 2 })).data, data);
        bench.disks[0].wipe();
        assert_eq!(bench.disks[0].blocks_written(), 0);
        assert_eq!(outcome(&bench.io(HostOp::Read { lba: 100, blocks: 2 })).data, vec![0; 1024]);
    }

    #[test]
    fn direct_block_access() {
        let mut disk = DiskTarget::new(DiskConfig::new("d", 1, 2, [2, 0, 0, 0, 0, 3], 64));
        assert_eq!(disk.read_blocks(3, 2), vec![0; 1024]);
        disk.write_blocks(3, &[9; 1100]);
        assert_eq!(disk.blocks_written(), 2, "a trailing partial block is ignored");
        assert_eq!(disk.read_blocks(2, 3), [vec![0; 512], vec![9; 1024]].concat());
        assert_eq!(disk.next_timer(), None);
    }

    proptest! {
        #[test]
        fn writing_in_pieces_stores_what_one_write_would(
            lba in 0u64..1000,
            blocks in 0usize..400,
            cuts in vec(any::<usize>(), 0..6),
            block_size in prop::sample::select(vec![1usize, 8, 512]),
        ) {
            let data: Vec<u8> = (0..blocks * block_size).map(|i| (i % 251) as u8 + 1).collect();
            let mut whole = BlockStore::new(block_size);
            whole.write(lba, &data);
            let mut pieces = BlockStore::new(block_size);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            for pair in cuts.windows(2) {
                pieces.write_bytes(lba, pair[0], &data[pair[0]..pair[1]]);
            }
            pieces.mark_written(lba, blocks);
            prop_assert_eq!(pieces.written, whole.written);
            prop_assert_eq!(pieces.read(lba.saturating_sub(3), blocks as u64 + 6), whole.read(lba.saturating_sub(3), blocks as u64 + 6));
        }

        #[test]
        fn the_paged_store_reads_what_a_map_of_blocks_would(
            ops in vec((0u64..600, 0usize..300, any::<u8>(), any::<bool>()), 1..30),
            block_size in prop::sample::select(vec![1usize, 8, 512]),
        ) {
            let mut store = BlockStore::new(block_size);
            let mut model: std::collections::HashMap<u64, Vec<u8>> = std::collections::HashMap::new();
            for (lba, len, byte, is_write) in ops {
                let lba = lba + (u64::MAX - 700) * u64::from(byte == 7);
                if is_write {
                    let data: Vec<u8> = (0..len * block_size / 4 + 1).map(|i| byte ^ i as u8).collect();
                    store.write(lba, &data);
                    for (i, chunk) in data.chunks_exact(block_size).enumerate() {
                        model.insert(lba + i as u64, chunk.to_vec());
                    }
                } else {
                    let count = (len / 4) as u64;
                    let mut expected = vec![0u8; count as usize * block_size];
                    for (i, chunk) in expected.chunks_exact_mut(block_size).enumerate() {
                        if let Some(block) = model.get(&(lba + i as u64)) {
                            chunk.copy_from_slice(block);
                        }
                    }
                    prop_assert_eq!(store.read(lba, count), expected);
                }
                prop_assert_eq!(store.written, model.len() as u64);
            }
        }
    }

    #[test]
    fn differences_are_found_without_reading_the_blocks_out() {
        let config = |name: &str, port: u64| DiskConfig::new(name, port, port + 1, [2, 0, 0, 0, 0, 3], 64);
        let mut a = DiskTarget::new(config("a", 1));
        let mut b = DiskTarget::new(config("b", 5));
        let b_port = b.another_port(config("b", 6));
        let mut data = vec![0u8; 8 * 512];
        for (i, block) in data.chunks_exact_mut(512).enumerate() {
            stamp_block(7, 100 + i as u64, block);
        }
        data[5 * 512 + 300] ^= 1; // kept as bytes
        data[6 * 512..7 * 512].fill(0);
        a.write_blocks(10, &data);
        b.write_blocks(20, &data);
        assert_eq!(a.first_difference(10, &data), None);
        assert_eq!(a.first_difference_with(10, &b, 20, 10), None);
        assert_eq!(b.first_difference_with(20, &b_port, 20, 10), None, "one store behind two ports");
        let mut other = data.clone();
        other[5 * 512 + 301] ^= 1;
        assert_eq!(a.first_difference(10, &other), Some(5));
        b.write_blocks(25, &other[5 * 512..6 * 512]);
        assert_eq!(a.first_difference_with(10, &b, 20, 10), Some(5));
        assert_eq!(a.first_difference_with(9, &b, 19, 10), Some(6));
        assert_eq!(b.first_difference_with(20, &b_port, 19, 3), Some(0));
        assert_eq!(a.first_difference(13, &data[3 * 512..]), None);
        assert_eq!(a.first_difference(12, &data[3 * 512..]), Some(0));
    }

    #[test]
    fn kept_images_decode_and_compare_as_their_bytes() {
        let config = DiskConfig::new("a", 1, 2, [2, 0, 0, 0, 0, 3], 64);
        let mut a = DiskTarget::new(config);
        let mut data = vec![0u8; 8 * 512];
        for (i, block) in data.chunks_exact_mut(512).enumerate() {
            stamp_block(7, 100 + i as u64, block);
        }
        data[2 * 512 + 300] ^= 1; // a damaged stamp, kept as bytes
        data[3 * 512..4 * 512].fill(0);
        data[4 * 512..5 * 512].fill(0x5a); // foreign bytes
        let stamp_of_101 = data[512..1024].to_vec();
        data[5 * 512..6 * 512].copy_from_slice(&stamp_of_101); // misdirected
        a.write_blocks(10, &data);
        let mut kept = vec![KeptBlock::default(); 9];
        a.kept_blocks_into(10, &mut kept);
        let mut decoded = Vec::new();
        for (i, block) in kept.iter().enumerate() {
            let bytes = data.get(i * 512..(i + 1) * 512).unwrap_or(&[0; 512]);
            assert_eq!(*block, KeptBlock::of(bytes), "block {i} kept as its bytes are");
            let mut made = [0u8; 512];
            block.read_into(&mut made);
            assert_eq!(made, bytes, "block {i} reads back");
            for lba in [100 + i as u64, 101, 7] {
                decode_blocks(bytes, 512, lba, &mut decoded);
                assert_eq!(decoded, [block.content(lba)], "block {i} read as LBA {lba}");
            }
        }
        assert_eq!(a.first_difference_kept(10, &kept), None);
        assert_eq!(a.first_difference_kept(11, &kept), Some(0));
        let mut other = kept.clone();
        other[6] = KeptBlock::of(&data[512..1024]);
        assert_eq!(a.first_difference_kept(10, &other), Some(6));
    }

    proptest! {
        /// Blocks kept as stamps, zeros or bytes read back as they were written, in whole
        /// blocks or in pieces at any byte: damaged stamps, stamps cut short and stamps of
        /// another length are kept as bytes, never as the stamp they resemble.
        #[test]
        fn blocks_kept_by_content_read_back_as_written(
            writes in vec((0u64..40, 1usize..6, any::<u64>(), 0u8..4, any::<usize>(), any::<usize>()), 1..25),
            block_size in prop::sample::select(vec![24usize, 100, 512]),
            // At the start of the disk, and across the end of the pages found by index
            // (those past it are kept in a map).
            base in prop::sample::select(vec![0u64, DIRECT_PAGES * PAGE_BLOCKS - 20]),
        ) {
            let mut store = BlockStore::new(block_size);
            let mut model = vec![0u8; 50 * block_size];
            for (lba, blocks, id, kind, at, cut) in writes {
                let mut data = vec![0u8; blocks * block_size];
                for (i, block) in data.chunks_exact_mut(block_size).enumerate() {
                    stamp_block(id, lba + i as u64, block);
                }
                let at = at % data.len();
                match kind {
                    0 => {}
                    1 => data[at] ^= 1 << (at % 7),
                    2 => data[at..].fill(0),
                    _ => data.truncate(1 + at),
                }
                let offset = usize::from(kind == 3) * (cut % block_size);
                let cut = cut % (data.len() + 1);
                store.write_bytes(base + lba, offset, &data[..cut]);
                store.write_bytes(base + lba, offset + cut, &data[cut..]);
                let start = lba as usize * block_size + offset;
                model[start..start + data.len()].copy_from_slice(&data);
                prop_assert_eq!(&store.read(base, 50), &model);
            }
            for (i, block) in model.chunks_exact(block_size).enumerate() {
                let stored = store.get(base + i as u64);
                match intact_stamp(block) {
                    Some((write_id, lba)) => prop_assert_eq!(stored, &Stored::Stamp { write_id, lba }),
                    None if block.iter().all(|b| *b == 0) => prop_assert_eq!(stored, &Stored::Zero),
                    None => prop_assert!(matches!(stored, Stored::Bytes(_)), "block {} kept as {:?}", i, stored),
                }
            }
        }
    }

    #[test]
    fn fabric_login_registers_fcp_and_the_node_name() {
        let mut bench = Bench::new(vec![disk_config(0)]);
        bench.start();
        let ct: Vec<u16> = bench
            .tap
            .iter()
            .filter(|t| t.from == 1 && t.header.fc_type == fc_type::CT)
            .map(|t| u16::from_be_bytes([t.payload[8], t.payload[9]]))
            .collect();
        assert_eq!(ct, [dve_wire::ct::code::RFT_ID, dve_wire::ct::code::RNN_ID]);
        assert!(bench.disks[0].is_online());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic_the_disk(frames in vec(vec(any::<u8>(), 0..120), 1..8)) {
            let mut disk = DiskTarget::new(disk_config(0));
            let _ = disk.start(0);
            for frame in &frames {
                prop_assert!(disk.receive(1, frame).is_empty());
            }
            prop_assert_eq!(disk.stats().dropped_frames, frames.len() as u64);
        }

        #[test]
        fn forged_frames_never_panic_a_busy_disk(
            frames in vec((any::<u8>(), prop_oneof![Just(1u8), Just(8), Just(0), any::<u8>()], 0u32..0x100_0000, any::<u16>(), 0u16..4, any::<u32>(), vec(any::<u8>(), 0..64)), 1..12),
            cdb in vec(any::<u8>(), 16),
            fcp_dl in 0u32..70_000,
        ) {
            let mut bench = Bench::ready_with(DiskConfig { max_burst: 700, ..disk_config(0) });
            bench.submit(HostOp::Write { lba: 8, data: Bytes::from(vec![5; 4096]) });
            let (host_id, disk_id) = (bench.fc_id_of(0), bench.fc_id_of(1));
            let cmnd = FcpCmndRepr {
                lun: lun_from_index(0), crn: 0, priority: 0, task_attribute: TaskAttribute::Simple,
                task_management: 0, wrdata: cdb[0] & 1 == 0, rddata: cdb[0] & 1 == 1, cdb: &cdb, fcp_dl,
            };
            let header = FcHeaderRepr { s_id: host_id, ..fc_header(disk_id, r_ctl::UNSOLICITED_COMMAND, fc_type::FCP, F_CTL_REQUEST, 0x5000, 0xFFFF) };
            let out = bench.disks[0].receive(bench.now, &forge(&header, &cmnd));
            bench.send(1, out);
            for (r_ctl, fc_type, f_ctl, ox_id, rx_id, parameter, payload) in frames {
                let header = FcHeaderRepr { s_id: host_id, parameter, ..fc_header(disk_id, r_ctl, fc_type, f_ctl, ox_id, rx_id) };
                let out = bench.disks[0].receive(bench.now, &forge(&header, &payload[..]));
                bench.send(1, out);
            }
            bench.run_for(50 * crate::host::testbed::IO_TIMEOUT_NS);
            prop_assert!(bench.disks[0].outstanding() <= 2);
        }
    }
}
