//! Parameter data of REPORT LUNS and READ CAPACITY(10)/(16): what the control path returns
//! in FCP_DATA for those commands.

use crate::emit::WireEmit;
use crate::error::{Error, Result};
use crate::field::{array, be32, be64, check_len, check_room, check_zero_bytes, put32, put64};

/// Length of READ CAPACITY(10) data.
pub const READ_CAPACITY_10_LEN: usize = 8;
/// Length of READ CAPACITY(16) data.
pub const READ_CAPACITY_16_LEN: usize = 32;

/// READ CAPACITY(10) data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReadCapacity10Data {
    /// Last LBA (0xFFFFFFFF if the capacity needs READ CAPACITY(16)).
    pub last_lba: u32,
    /// Block length in bytes.
    pub block_len: u32,
}

impl ReadCapacity10Data {
    /// Parses the 8 bytes.
    pub fn parse(b: &[u8]) -> Result<ReadCapacity10Data> {
        check_len("READ CAPACITY(10) data", b, READ_CAPACITY_10_LEN)?;
        Ok(ReadCapacity10Data { last_lba: be32(b, 0), block_len: be32(b, 4) })
    }
}

impl WireEmit for ReadCapacity10Data {
    fn buffer_len(&self) -> usize {
        READ_CAPACITY_10_LEN
    }

    fn emit(&self, b: &mut [u8]) -> Result<usize> {
        check_room("READ CAPACITY(10) data", b, READ_CAPACITY_10_LEN)?;
        put32(b, 0, self.last_lba);
        put32(b, 4, self.block_len);
        Ok(READ_CAPACITY_10_LEN)
    }
}

/// READ CAPACITY(16) data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReadCapacity16Data {
    /// Last LBA.
    pub last_lba: u64,
    /// Block length in bytes.
    pub block_len: u32,
    /// Bytes 12..16 (protection, logical blocks per physical block exponent, LBPME/LBPRZ,
    /// lowest aligned LBA) as on the wire.
    pub flags: [u8; 4],
}

impl ReadCapacity16Data {
    /// Parses the 32 bytes; bytes 16..32 must be zero.
    pub fn parse(b: &[u8]) -> Result<ReadCapacity16Data> {
        check_len("READ CAPACITY(16) data", b, READ_CAPACITY_16_LEN)?;
        check_zero_bytes("READ CAPACITY(16) reserved", &b[16..32])?;
        Ok(ReadCapacity16Data { last_lba: be64(b, 0), block_len: be32(b, 8), flags: array(b, 12) })
    }
}

impl WireEmit for ReadCapacity16Data {
    fn buffer_len(&self) -> usize {
        READ_CAPACITY_16_LEN
    }

    fn emit(&self, b: &mut [u8]) -> Result<usize> {
        check_room("READ CAPACITY(16) data", b, READ_CAPACITY_16_LEN)?;
        put64(b, 0, self.last_lba);
        put32(b, 8, self.block_len);
        b[12..16].copy_from_slice(&self.flags);
        b[16..32].fill(0);
        Ok(READ_CAPACITY_16_LEN)
    }
}

/// REPORT LUNS parameter data: a list of 8-byte LUNs, on the wire or to emit.
#[derive(Debug, Clone, Copy)]
pub enum ReportLunsData<'a> {
    /// LUN list bytes after the 8-byte header.
    Wire(&'a [u8]),
    /// LUNs to emit.
    List(&'a [[u8; 8]]),
}

impl<'a> ReportLunsData<'a> {
    /// Parses REPORT LUNS data. The list may be cut short by the allocation length: only
    /// whole entries that are present are returned.
    pub fn parse(b: &'a [u8]) -> Result<ReportLunsData<'a>> {
        check_len("REPORT LUNS header", b, 8)?;
        let list_len = be32(b, 0) as usize;
        if !list_len.is_multiple_of(8) {
            return Err(Error::BadLength {
                what: "REPORT LUNS list length (multiple of 8)",
                expected: list_len - list_len % 8,
                found: list_len,
            });
        }
        check_zero_bytes("REPORT LUNS reserved", &b[4..8])?;
        let have = (b.len() - 8).min(list_len);
        Ok(ReportLunsData::Wire(&b[8..8 + have - have % 8]))
    }

    /// Iterates over the LUNs.
    pub fn iter(&self) -> impl Iterator<Item = [u8; 8]> + 'a {
        let (wire, list): (&'a [u8], &'a [[u8; 8]]) = match *self {
            ReportLunsData::Wire(w) => (w, &[]),
            ReportLunsData::List(l) => (&[], l),
        };
        wire.chunks_exact(8).map(|c| array(c, 0)).chain(list.iter().copied())
    }

    /// Number of LUNs.
    pub fn len(&self) -> usize {
        match self {
            ReportLunsData::Wire(w) => w.len() / 8,
            ReportLunsData::List(l) => l.len(),
        }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartialEq for ReportLunsData<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for ReportLunsData<'_> {}

impl WireEmit for ReportLunsData<'_> {
    fn buffer_len(&self) -> usize {
        8 + 8 * self.len()
    }

    fn emit(&self, b: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        check_room("REPORT LUNS data", b, len)?;
        put32(b, 0, (len - 8) as u32);
        b[4..8].fill(0);
        for (i, lun) in self.iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&lun);
        }
        Ok(len)
    }
}
