//! Fixed-size metadata chunks: on disk an Rmap is stored, and locked, in chunks (default
//! 32 MiB of virtual space each), so changing a variable extent means taking every chunk it
//! overlaps, rounded out to chunk boundaries.

use core::ops::Range;

use crate::error::Error;

/// The chunk size of a segment's on-disk Rmap, in blocks.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ChunkGeometry {
    chunk_blocks: u64,
}

impl ChunkGeometry {
    /// The default chunk: 32 MiB of virtual space.
    pub const DEFAULT_BYTES: u64 = 32 << 20;

    /// Chunks of `chunk_blocks` blocks.
    pub fn new(chunk_blocks: u64) -> Result<ChunkGeometry, Error> {
        if chunk_blocks == 0 {
            return Err(Error::InvalidDescriptor("a metadata chunk must hold at least one block"));
        }
        Ok(ChunkGeometry { chunk_blocks })
    }

    /// The default 32 MiB chunk for a block size.
    pub fn for_block_size(block_size: u32) -> Result<ChunkGeometry, Error> {
        if block_size == 0 || u64::from(block_size) > ChunkGeometry::DEFAULT_BYTES {
            return Err(Error::InvalidDescriptor("block size must be between 1 byte and 32 MiB"));
        }
        ChunkGeometry::new(ChunkGeometry::DEFAULT_BYTES / u64::from(block_size))
    }

    /// Blocks per chunk.
    pub fn chunk_blocks(&self) -> u64 {
        self.chunk_blocks
    }

    /// Indexes of the chunks that cover `blocks`, rounded out to chunk boundaries. An empty
    /// range covers no chunk.
    pub fn covering(&self, blocks: Range<u64>) -> Range<u64> {
        if blocks.start >= blocks.end {
            return 0..0;
        }
        blocks.start / self.chunk_blocks..(blocks.end - 1) / self.chunk_blocks + 1
    }

    /// The blocks of chunk `index`.
    pub fn blocks_of(&self, index: u64) -> Range<u64> {
        let start = index.saturating_mul(self.chunk_blocks);
        start..start.saturating_add(self.chunk_blocks)
    }

    /// `blocks` rounded out to chunk boundaries: what has to be locked to change it.
    pub fn rounded_out(&self, blocks: Range<u64>) -> Range<u64> {
        let chunks = self.covering(blocks);
        if chunks.is_empty() {
            return 0..0;
        }
        self.blocks_of(chunks.start).start..self.blocks_of(chunks.end - 1).end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_out_to_chunks() {
        let g = ChunkGeometry::for_block_size(512).unwrap();
        assert_eq!(g.chunk_blocks(), 65536);
        assert_eq!(g.covering(0..1), 0..1);
        assert_eq!(g.covering(65535..65537), 0..2);
        assert_eq!(g.covering(65536..131072), 1..2);
        assert_eq!(g.covering(10..10), 0..0);
        assert_eq!(g.rounded_out(100..70000), 0..131072);
        assert!(ChunkGeometry::new(0).is_err());
    }
}
