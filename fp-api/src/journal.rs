//! The journal entry format of the journal primitive: each journaled write appends one header
//! block, then the data, at the worker's own journal position. The control path's copy agent
//! and the replica's applier read it back, so both sides share this one definition.

use crate::error::Error;
use crate::ids::{LvId, VsegId, WorkerId};

/// Identifies a journal header block.
pub const JOURNAL_MAGIC: [u8; 8] = *b"DVEJRNL1";

/// Bytes of a header that carry information; the rest of the block is zero.
pub const JOURNAL_HEADER_LEN: usize = 64;

/// The header block before each journaled write's data.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct JournalEntryHeader {
    /// The journal's sequence (changes at every swap).
    pub journal_sequence: u64,
    /// Position of the header in the journal, in journal blocks.
    pub position: u64,
    /// The worker that appended it.
    pub worker: WorkerId,
    /// The volume written.
    pub lv: LvId,
    /// The segment written.
    pub vseg: VsegId,
    /// First volume block written.
    pub lba: u64,
    /// Blocks of data following the header.
    pub blocks: u32,
    /// Bytes per block of the data.
    pub block_size: u32,
    /// When the worker received the write (orders entries of different workers).
    pub timestamp: u64,
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(v)
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(v)
}

impl JournalEntryHeader {
    /// Write the header into the first [`JOURNAL_HEADER_LEN`] bytes of `block`.
    pub fn encode(&self, block: &mut [u8]) -> Result<(), Error> {
        if block.len() < JOURNAL_HEADER_LEN {
            return Err(Error::OutOfRange {
                what: "journal header byte",
                index: JOURNAL_HEADER_LEN as u64,
                len: block.len() as u64,
            });
        }
        block[..JOURNAL_HEADER_LEN].fill(0);
        block[0..8].copy_from_slice(&JOURNAL_MAGIC);
        block[8..16].copy_from_slice(&self.journal_sequence.to_be_bytes());
        block[16..24].copy_from_slice(&self.position.to_be_bytes());
        block[24] = self.worker.0;
        block[28..32].copy_from_slice(&self.lv.0.to_be_bytes());
        block[32..36].copy_from_slice(&self.vseg.0.to_be_bytes());
        block[36..40].copy_from_slice(&self.blocks.to_be_bytes());
        block[40..48].copy_from_slice(&self.lba.to_be_bytes());
        block[48..52].copy_from_slice(&self.block_size.to_be_bytes());
        block[56..64].copy_from_slice(&self.timestamp.to_be_bytes());
        Ok(())
    }

    /// Read a header block; `None` if it is not one (end of the written part of a journal).
    pub fn decode(block: &[u8]) -> Option<JournalEntryHeader> {
        if block.len() < JOURNAL_HEADER_LEN || block[0..8] != JOURNAL_MAGIC {
            return None;
        }
        Some(JournalEntryHeader {
            journal_sequence: be64(block, 8),
            position: be64(block, 16),
            worker: WorkerId(block[24]),
            lv: LvId(be32(block, 28)),
            vseg: VsegId(be32(block, 32)),
            blocks: be32(block, 36),
            lba: be64(block, 40),
            block_size: be32(block, 48),
            timestamp: be64(block, 56),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_garbage_is_not_a_header() {
        let h = JournalEntryHeader {
            journal_sequence: 3,
            position: 40,
            worker: WorkerId(2),
            lv: LvId(9),
            vseg: VsegId(11),
            lba: 1 << 40,
            blocks: 16,
            block_size: 512,
            timestamp: 123_456,
        };
        let mut block = [0xAAu8; 512];
        h.encode(&mut block).unwrap();
        assert_eq!(JournalEntryHeader::decode(&block), Some(h));
        assert_eq!(JournalEntryHeader::decode(&[0u8; 512]), None);
        assert!(h.encode(&mut [0u8; 10]).is_err());
    }
}
