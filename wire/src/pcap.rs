//! A pcap writer (Ethernet link type, nanosecond timestamps given by the caller, so the
//! simulator's virtual clock can stamp frames) and a matching reader for tests and tools.

use std::io::{self, Read, Write};

/// Magic number of a pcap file with nanosecond timestamps.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// Magic number of a pcap file with microsecond timestamps.
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Default snapshot length: whole FCoE frames (2112-byte payload) fit with room to spare.
pub const DEFAULT_SNAPLEN: u32 = 65_535;

/// Writes Ethernet frames to a pcap stream.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header (nanosecond magic, Ethernet link type) and returns the writer.
    pub fn new(out: W) -> io::Result<Self> {
        PcapWriter::with_snaplen(out, DEFAULT_SNAPLEN)
    }

    /// Like [`PcapWriter::new`] with a given snapshot length; longer frames are cut.
    pub fn with_snaplen(mut out: W, snaplen: u32) -> io::Result<Self> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&MAGIC_NANOS.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out, snaplen })
    }

    /// Appends one frame captured at `timestamp_ns` nanoseconds since the epoch (or since
    /// the start of a simulation).
    pub fn write_frame(&mut self, timestamp_ns: u64, frame: &[u8]) -> io::Result<()> {
        let orig_len = u32::try_from(frame.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame longer than 4 GiB"))?;
        let incl_len = orig_len.min(self.snaplen);
        let secs = u32::try_from(timestamp_ns / 1_000_000_000)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "timestamp past 2106"))?;
        let nanos = (timestamp_ns % 1_000_000_000) as u32;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&nanos.to_le_bytes());
        h[8..12].copy_from_slice(&incl_len.to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&frame[..incl_len as usize])
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Gives the underlying writer back.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// One record read back from a pcap stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapRecord {
    /// Timestamp in nanoseconds.
    pub timestamp_ns: u64,
    /// Original frame length.
    pub orig_len: u32,
    /// Captured bytes.
    pub data: Vec<u8>,
}

/// Reads a little-endian pcap stream with Ethernet link type (either timestamp resolution).
#[derive(Debug)]
pub struct PcapReader<R: Read> {
    input: R,
    nanos: bool,
}

impl<R: Read> PcapReader<R> {
    /// Reads and checks the file header.
    pub fn new(mut input: R) -> io::Result<Self> {
        let mut h = [0u8; 24];
        input.read_exact(&mut h)?;
        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let nanos = match magic {
            MAGIC_NANOS => true,
            MAGIC_MICROS => false,
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "not a little-endian pcap file")),
        };
        let link = u32::from_le_bytes([h[20], h[21], h[22], h[23]]);
        if link != LINKTYPE_ETHERNET {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "pcap link type is not Ethernet"));
        }
        Ok(PcapReader { input, nanos })
    }

    /// Reads the next record, or `None` at the end of the stream.
    pub fn next_record(&mut self) -> io::Result<Option<PcapRecord>> {
        let mut h = [0u8; 16];
        match self.input.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let frac = u64::from(word(4));
        let timestamp_ns = u64::from(word(0)) * 1_000_000_000 + if self.nanos { frac } else { frac * 1000 };
        let incl = word(8);
        if incl > 0x0400_0000 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "pcap record longer than 64 MiB"));
        }
        let mut data = vec![0u8; incl as usize];
        self.input.read_exact(&mut data)?;
        Ok(Some(PcapRecord { timestamp_ns, orig_len: word(12), data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_with_their_timestamps() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_frame(1_500_000_123, &[1, 2, 3]).unwrap();
        w.write_frame(2_000_000_000, &[0xaa; 70]).unwrap();
        let bytes = w.into_inner();
        assert_eq!(&bytes[0..4], &MAGIC_NANOS.to_le_bytes());
        let mut r = PcapReader::new(&bytes[..]).unwrap();
        let a = r.next_record().unwrap().unwrap();
        assert_eq!((a.timestamp_ns, a.orig_len, a.data), (1_500_000_123, 3, vec![1, 2, 3]));
        let b = r.next_record().unwrap().unwrap();
        assert_eq!((b.timestamp_ns, b.data.len()), (2_000_000_000, 70));
        assert!(r.next_record().unwrap().is_none());
    }

    #[test]
    fn snaplen_cuts_long_frames() {
        let mut w = PcapWriter::with_snaplen(Vec::new(), 16).unwrap();
        w.write_frame(0, &[7; 100]).unwrap();
        let bytes = w.into_inner();
        let rec = PcapReader::new(&bytes[..]).unwrap().next_record().unwrap().unwrap();
        assert_eq!((rec.orig_len, rec.data.len()), (100, 16));
    }
}
