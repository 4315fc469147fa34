//! FCoE encapsulation (FC-BB-5): the 14-byte header with version and SOF, the encapsulated
//! FC frame, and the trailer with the FC CRC-32 and EOF. Owns the CRC: computed on build,
//! verified on parse.

use crate::error::{Error, Result};
use crate::field::{check_len, check_room, check_zero_bytes};

/// Length of the FCoE header (version, reserved bytes, SOF).
pub const HEADER_LEN: usize = 14;
/// Length of the FCoE trailer (CRC, EOF, reserved bytes).
pub const TRAILER_LEN: usize = 8;
/// The only FCoE version defined.
pub const VERSION: u8 = 0;

macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident, $err:ident, { $($(#[$vm:meta])* $v:ident = $c:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v = $c),* }

        impl $name {
            /// Every defined code.
            pub const ALL: &'static [$name] = &[$($name::$v),*];

            /// The code byte on the wire.
            pub fn code(self) -> u8 {
                self as u8
            }
        }

        impl TryFrom<u8> for $name {
            type Error = Error;
            fn try_from(v: u8) -> Result<$name> {
                match v {
                    $($c => Ok($name::$v),)*
                    other => Err(Error::$err(other)),
                }
            }
        }
    };
}

code_enum!(
    /// Start-of-frame delimiter codes.
    Sof, BadSof, {
        /// Fabric frame.
        F = 0x28,
        /// Initiate, class 4.
        I4 = 0x29,
        /// Initiate, class 2.
        I2 = 0x2D,
        /// Initiate, class 3: first frame of a sequence.
        I3 = 0x2E,
        /// Normal, class 4.
        N4 = 0x31,
        /// Normal, class 2.
        N2 = 0x35,
        /// Normal, class 3: later frames of a sequence.
        N3 = 0x36,
        /// Connect, class 4.
        C4 = 0x39,
    }
);

code_enum!(
    /// End-of-frame delimiter codes.
    Eof, BadEof, {
        /// Normal: more frames of the sequence follow.
        N = 0x41,
        /// Terminate: last frame of the sequence.
        T = 0x42,
        /// Remove-terminate (class 4).
        Rt = 0x44,
        /// Disconnect-terminate (class 1/4).
        Dt = 0x46,
        /// Normal-invalid.
        Ni = 0x49,
        /// Disconnect-terminate-invalid.
        Dti = 0x4E,
        /// Remove-terminate-invalid.
        Rti = 0x4F,
        /// Abort.
        A = 0x50,
    }
);

/// The FC CRC-32 of an FC frame (header and payload with fill bytes): the IEEE 802.3 CRC.
pub fn fc_crc(fc_frame: &[u8]) -> u32 {
    // A fresh hasher asks the CPU for its features every time (about 40 instructions, a
    // third of a command frame's CRC); a copy of one made once does not.
    static HASHER: std::sync::LazyLock<crc32fast::Hasher> = std::sync::LazyLock::new(crc32fast::Hasher::new);
    let mut hasher = HASHER.clone();
    hasher.update(fc_frame);
    hasher.finalize()
}

/// A view of an FCoE PDU: the Ethernet payload of a frame of ethertype 0x8906.
#[derive(Debug, Clone)]
pub struct FcoeFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FcoeFrame<T> {
    /// Wraps a buffer without checks (for building into a buffer of the right size).
    pub fn new_unchecked(buffer: T) -> Self {
        FcoeFrame { buffer }
    }

    /// Wraps a buffer after checking that it holds header, a whole FC header and trailer,
    /// and that the FC frame is a multiple of four bytes long.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        check_len("FCoE frame", b, HEADER_LEN + crate::fc::HEADER_LEN + TRAILER_LEN)?;
        let fc_len = b.len() - HEADER_LEN - TRAILER_LEN;
        if !fc_len.is_multiple_of(4) {
            return Err(Error::BadLength {
                what: "FC frame in FCoE (multiple of 4)",
                expected: fc_len - fc_len % 4,
                found: fc_len,
            });
        }
        Ok(FcoeFrame { buffer })
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// FCoE version (high nibble of the first byte).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// The raw SOF byte.
    pub fn sof_code(&self) -> u8 {
        self.buffer.as_ref()[HEADER_LEN - 1]
    }

    /// The raw EOF byte.
    pub fn eof_code(&self) -> u8 {
        let b = self.buffer.as_ref();
        b[b.len() - 4]
    }

    /// The CRC carried in the trailer (stored least significant byte first, like the FCS).
    pub fn crc(&self) -> u32 {
        let b = self.buffer.as_ref();
        let at = b.len() - TRAILER_LEN;
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// The encapsulated FC frame: FC header, payload and fill bytes.
    pub fn fc_frame(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[HEADER_LEN..b.len() - TRAILER_LEN]
    }

    /// Checks version, reserved bytes, SOF, EOF and CRC.
    pub fn check(&self) -> Result<()> {
        self.check_framing()?;
        self.check_crc()
    }

    /// Version, reserved bytes, SOF and EOF (everything but the CRC, in the order `check`
    /// reports them), returning the delimiters.
    fn check_framing(&self) -> Result<(Sof, Eof)> {
        let b = self.buffer.as_ref();
        if self.version() != VERSION {
            return Err(Error::BadVersion { what: "FCoE", version: self.version() });
        }
        check_zero_bytes("FCoE header reserved bits", &b[0..1])?;
        check_zero_bytes("FCoE header reserved bytes", &b[1..HEADER_LEN - 1])?;
        let sof = Sof::try_from(self.sof_code())?;
        let eof = Eof::try_from(self.eof_code())?;
        check_zero_bytes("FCoE trailer reserved bytes", &b[b.len() - 3..])?;
        Ok((sof, eof))
    }

    fn check_crc(&self) -> Result<()> {
        let expected = fc_crc(self.fc_frame());
        let found = self.crc();
        if expected != found {
            return Err(Error::BadCrc { expected, found });
        }
        Ok(())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FcoeFrame<T> {
    /// The encapsulated FC frame, writable.
    pub fn fc_frame_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let end = b.len() - TRAILER_LEN;
        &mut b[HEADER_LEN..end]
    }

    /// Recomputes and stores the CRC; call after rewriting any byte of the FC frame.
    pub fn fill_crc(&mut self) {
        let crc = fc_crc(self.fc_frame());
        let b = self.buffer.as_mut();
        let at = b.len() - TRAILER_LEN;
        b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// The FCoE encapsulation fields (everything but the FC frame and the CRC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FcoeRepr {
    /// Start-of-frame delimiter.
    pub sof: Sof,
    /// End-of-frame delimiter.
    pub eof: Eof,
}

impl FcoeRepr {
    /// Parses and fully checks (version, reserved bytes, SOF, EOF, CRC).
    pub fn parse<T: AsRef<[u8]>>(frame: &FcoeFrame<T>) -> Result<FcoeRepr> {
        let (sof, eof) = frame.check_framing()?;
        frame.check_crc()?;
        Ok(FcoeRepr { sof, eof })
    }

    /// Length of an FCoE PDU carrying an FC frame of `fc_frame_len` bytes.
    pub fn buffer_len(fc_frame_len: usize) -> usize {
        HEADER_LEN + fc_frame_len + TRAILER_LEN
    }

    /// Writes header and trailer and computes the CRC: the FC frame must already be in place
    /// (the buffer's length decides where the trailer goes).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut FcoeFrame<T>) -> Result<()> {
        let b = frame.buffer.as_mut();
        check_room("FCoE frame", b, HEADER_LEN + TRAILER_LEN)?;
        b[..HEADER_LEN - 1].fill(0);
        b[0] = VERSION << 4;
        b[HEADER_LEN - 1] = self.sof.code();
        let n = b.len();
        b[n - 4] = self.eof.code();
        b[n - 3..].fill(0);
        frame.fill_crc();
        Ok(())
    }
}
