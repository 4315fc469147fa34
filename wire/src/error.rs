//! The crate's one error type: every way a frame, CDB or buffer can be wrong, with enough
//! detail (field name, expected and found values) for a log line or a counter to say why.

/// Everything that can be wrong with input to a parser or with a buffer given to a builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the structure does.
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes the structure needs.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The caller's output buffer is too small for what is being built.
    #[error("buffer too small for {what}: need {need} bytes, have {have}")]
    BufferTooSmall {
        /// The structure being built.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A length field (or the length of the buffer) disagrees with the structure.
    #[error("bad length of {what}: expected {expected}, found {found}")]
    BadLength {
        /// The structure or field whose length is wrong.
        what: &'static str,
        /// The length the structure requires.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// The FC CRC-32 carried in an FCoE frame does not match its contents.
    #[error("bad FC CRC: computed {expected:#010x}, frame carries {found:#010x}")]
    BadCrc {
        /// The CRC computed over the FC frame.
        expected: u32,
        /// The CRC found in the trailer.
        found: u32,
    },
    /// An FCoE start-of-frame code that FC-BB-5 does not define.
    #[error("bad FCoE SOF code {0:#04x}")]
    BadSof(u8),
    /// An FCoE end-of-frame code that FC-BB-5 does not define.
    #[error("bad FCoE EOF code {0:#04x}")]
    BadEof(u8),
    /// An encapsulation version this crate does not speak (FCoE or FIP).
    #[error("unsupported {what} version {version}")]
    BadVersion {
        /// The protocol whose version is wrong.
        what: &'static str,
        /// The version found.
        version: u8,
    },
    /// A reserved field or bit is not zero, or a field holds a reserved value.
    #[error("reserved value {value:#x} in {field}")]
    Reserved {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A field holds a value that is defined but that this crate cannot represent or accept.
    #[error("unsupported value {value:#x} in {field}")]
    Unsupported {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A value to be built does not fit its wire field.
    #[error("value {value:#x} does not fit {field}")]
    ValueTooLarge {
        /// The field.
        field: &'static str,
        /// The value given.
        value: u64,
    },
    /// The Ethernet frame carries neither FCoE nor FIP.
    #[error("ethertype {0:#06x} is neither FCoE nor FIP")]
    UnknownEthertype(u16),
    /// A SCSI CDB is shorter than its operation code requires.
    #[error("CDB for opcode {opcode:#04x} needs {expected} bytes, found {found}")]
    CdbLength {
        /// The SCSI operation code.
        opcode: u8,
        /// The CDB length the operation code implies.
        expected: usize,
        /// The bytes available.
        found: usize,
    },
    /// A SCSI operation code (or service action) this crate does not parse.
    #[error("unknown SCSI operation code {0:#04x}")]
    UnknownOpcode(u8),
    /// An extended link service command code this crate does not parse.
    #[error("unknown ELS command code {0:#04x}")]
    UnknownElsCommand(u8),
    /// A name-server command code this crate does not parse.
    #[error("unknown CT command code {0:#06x}")]
    UnknownCtCommand(u16),
}

/// The result type of every fallible function in this crate.
pub type Result<T> = core::result::Result<T, Error>;
