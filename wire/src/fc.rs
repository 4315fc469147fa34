//! The FC-2 frame header (24 bytes) with every field, the R_CTL, TYPE and F_CTL codes, and
//! the view of an FC frame as header plus payload (fill bytes, per F_CTL, trimmed off).

use core::fmt;

use crate::error::{Error, Result};
use crate::field::{be16, be24, be32, check_len, check_room, put16, put24, put32};

/// Length of the FC-2 frame header.
pub const HEADER_LEN: usize = 24;
/// Largest FC frame payload.
pub const MAX_PAYLOAD_LEN: usize = 2112;

/// A 24-bit Fibre Channel address identifier (N_Port ID, well-known address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FcId(pub u32);

impl FcId {
    /// The fabric login server (F_Port controller).
    pub const FABRIC_LOGIN: FcId = FcId(0xFF_FFFE);
    /// The directory (name) server.
    pub const DIRECTORY: FcId = FcId(0xFF_FFFC);
    /// The fabric controller.
    pub const FABRIC_CONTROLLER: FcId = FcId(0xFF_FFFD);
    /// No address (before fabric login).
    pub const UNASSIGNED: FcId = FcId(0);

    /// Whether the value fits 24 bits.
    pub fn is_valid(self) -> bool {
        self.0 <= 0xFF_FFFF
    }
}

impl fmt::Display for FcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06x}", self.0)
    }
}

/// R_CTL values: routing bits (high nibble) and information category (low nibble).
pub mod r_ctl {
    /// Device data, solicited data (FCP_DATA).
    pub const SOLICITED_DATA: u8 = 0x01;
    /// Device data, unsolicited control (CT request).
    pub const UNSOLICITED_CONTROL: u8 = 0x02;
    /// Device data, solicited control (CT reply).
    pub const SOLICITED_CONTROL: u8 = 0x03;
    /// Device data, data descriptor (FCP_XFER_RDY).
    pub const DATA_DESCRIPTOR: u8 = 0x05;
    /// Device data, unsolicited command (FCP_CMND).
    pub const UNSOLICITED_COMMAND: u8 = 0x06;
    /// Device data, command status (FCP_RSP).
    pub const COMMAND_STATUS: u8 = 0x07;
    /// Extended link service request.
    pub const ELS_REQUEST: u8 = 0x22;
    /// Extended link service reply.
    pub const ELS_REPLY: u8 = 0x23;
    /// Basic link service: abort sequence.
    pub const BLS_ABTS: u8 = 0x81;
    /// Basic link service: accept.
    pub const BLS_BA_ACC: u8 = 0x84;
    /// Basic link service: reject.
    pub const BLS_BA_RJT: u8 = 0x85;
}

/// TYPE values (data structure type).
pub mod fc_type {
    /// Basic link service.
    pub const BLS: u8 = 0x00;
    /// Extended link service.
    pub const ELS: u8 = 0x01;
    /// FCP (SCSI).
    pub const FCP: u8 = 0x08;
    /// Fibre Channel services (common transport).
    pub const CT: u8 = 0x20;
}

/// F_CTL bits (24-bit field).
pub mod f_ctl {
    /// The frame comes from the exchange responder.
    pub const EXCHANGE_CONTEXT: u32 = 0x80_0000;
    /// The frame comes from the sequence recipient.
    pub const SEQUENCE_CONTEXT: u32 = 0x40_0000;
    /// First sequence of the exchange.
    pub const FIRST_SEQUENCE: u32 = 0x20_0000;
    /// Last sequence of the exchange.
    pub const LAST_SEQUENCE: u32 = 0x10_0000;
    /// Last frame of the sequence.
    pub const END_SEQUENCE: u32 = 0x08_0000;
    /// End connection (class 1/6).
    pub const END_CONNECTION: u32 = 0x04_0000;
    /// CS_CTL holds a priority.
    pub const CS_CTL_PRIORITY: u32 = 0x02_0000;
    /// Sequence initiative is transferred.
    pub const SEQUENCE_INITIATIVE: u32 = 0x01_0000;
    /// X_ID reassigned (obsolete).
    pub const X_ID_REASSIGNED: u32 = 0x00_8000;
    /// Invalidate X_ID (obsolete).
    pub const INVALIDATE_X_ID: u32 = 0x00_4000;
    /// ACK form (two bits).
    pub const ACK_FORM_MASK: u32 = 0x00_3000;
    /// Data compression (obsolete).
    pub const DATA_COMPRESSION: u32 = 0x00_0800;
    /// Data encryption (obsolete).
    pub const DATA_ENCRYPTION: u32 = 0x00_0400;
    /// Retransmitted sequence.
    pub const RETRANSMITTED_SEQUENCE: u32 = 0x00_0200;
    /// Unidirectional transmit (class 1).
    pub const UNIDIRECTIONAL_TRANSMIT: u32 = 0x00_0100;
    /// Continue sequence condition (two bits).
    pub const CONTINUE_SEQUENCE_MASK: u32 = 0x00_00C0;
    /// Abort sequence condition (two bits).
    pub const ABORT_SEQUENCE_MASK: u32 = 0x00_0030;
    /// The parameter field holds a relative offset.
    pub const RELATIVE_OFFSET: u32 = 0x00_0008;
    /// Exchange reassembly.
    pub const EXCHANGE_REASSEMBLY: u32 = 0x00_0004;
    /// Number of fill bytes at the end of the payload (two bits).
    pub const FILL_BYTES_MASK: u32 = 0x00_0003;
}

/// X_ID value meaning "not assigned" (an RX_ID before the responder picks one).
pub const UNASSIGNED_X_ID: u16 = 0xFFFF;

/// A view of an FC frame: 24-byte header, payload, fill bytes.
#[derive(Debug, Clone)]
pub struct FcFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FcFrame<T> {
    /// Wraps a buffer without checks (for building).
    pub fn new_unchecked(buffer: T) -> Self {
        FcFrame { buffer }
    }

    /// Wraps a buffer after checking that it holds the header and the fill bytes F_CTL
    /// announces, and that the payload is at most [`MAX_PAYLOAD_LEN`] bytes.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        check_len("FC header", b, HEADER_LEN)?;
        if b.len() - HEADER_LEN > MAX_PAYLOAD_LEN {
            return Err(Error::BadLength {
                what: "FC payload (at most 2112 bytes)",
                expected: MAX_PAYLOAD_LEN,
                found: b.len() - HEADER_LEN,
            });
        }
        let frame = FcFrame { buffer };
        let fill = frame.fill_bytes();
        let have = frame.buffer.as_ref().len() - HEADER_LEN;
        if fill > have {
            return Err(Error::BadLength { what: "FC fill bytes (F_CTL)", expected: have, found: fill });
        }
        Ok(frame)
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// R_CTL.
    pub fn r_ctl(&self) -> u8 {
        self.b()[0]
    }
    /// Destination address.
    pub fn d_id(&self) -> FcId {
        FcId(be24(self.b(), 1))
    }
    /// CS_CTL (class-specific control) or priority.
    pub fn cs_ctl(&self) -> u8 {
        self.b()[4]
    }
    /// Source address.
    pub fn s_id(&self) -> FcId {
        FcId(be24(self.b(), 5))
    }
    /// TYPE.
    pub fn fc_type(&self) -> u8 {
        self.b()[8]
    }
    /// F_CTL (24 bits).
    pub fn f_ctl(&self) -> u32 {
        be24(self.b(), 9)
    }
    /// SEQ_ID.
    pub fn seq_id(&self) -> u8 {
        self.b()[12]
    }
    /// DF_CTL (optional headers present).
    pub fn df_ctl(&self) -> u8 {
        self.b()[13]
    }
    /// SEQ_CNT.
    pub fn seq_cnt(&self) -> u16 {
        be16(self.b(), 14)
    }
    /// Originator exchange id.
    pub fn ox_id(&self) -> u16 {
        be16(self.b(), 16)
    }
    /// Responder exchange id.
    pub fn rx_id(&self) -> u16 {
        be16(self.b(), 18)
    }
    /// Parameter (relative offset for data frames).
    pub fn parameter(&self) -> u32 {
        be32(self.b(), 20)
    }
    /// Fill bytes at the end of the payload, from F_CTL.
    pub fn fill_bytes(&self) -> usize {
        (self.f_ctl() & f_ctl::FILL_BYTES_MASK) as usize
    }
    /// The payload without the fill bytes.
    pub fn payload(&self) -> &[u8] {
        let b = self.b();
        let end = b.len().saturating_sub(self.fill_bytes()).max(HEADER_LEN);
        &b[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FcFrame<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    /// Sets R_CTL.
    pub fn set_r_ctl(&mut self, v: u8) {
        self.bm()[0] = v;
    }
    /// Sets the destination address.
    pub fn set_d_id(&mut self, v: FcId) {
        put24(self.bm(), 1, v.0);
    }
    /// Sets CS_CTL.
    pub fn set_cs_ctl(&mut self, v: u8) {
        self.bm()[4] = v;
    }
    /// Sets the source address.
    pub fn set_s_id(&mut self, v: FcId) {
        put24(self.bm(), 5, v.0);
    }
    /// Sets TYPE.
    pub fn set_fc_type(&mut self, v: u8) {
        self.bm()[8] = v;
    }
    /// Sets F_CTL (low 24 bits of `v`).
    pub fn set_f_ctl(&mut self, v: u32) {
        put24(self.bm(), 9, v);
    }
    /// Sets SEQ_ID.
    pub fn set_seq_id(&mut self, v: u8) {
        self.bm()[12] = v;
    }
    /// Sets DF_CTL.
    pub fn set_df_ctl(&mut self, v: u8) {
        self.bm()[13] = v;
    }
    /// Sets SEQ_CNT.
    pub fn set_seq_cnt(&mut self, v: u16) {
        put16(self.bm(), 14, v);
    }
    /// Sets OX_ID.
    pub fn set_ox_id(&mut self, v: u16) {
        put16(self.bm(), 16, v);
    }
    /// Sets RX_ID.
    pub fn set_rx_id(&mut self, v: u16) {
        put16(self.bm(), 18, v);
    }
    /// Sets the parameter field.
    pub fn set_parameter(&mut self, v: u32) {
        put32(self.bm(), 20, v);
    }
    /// The payload without fill bytes, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let fill = self.fill_bytes();
        let b = self.bm();
        let end = b.len().saturating_sub(fill).max(HEADER_LEN);
        &mut b[HEADER_LEN..end]
    }
}

/// Every field of the FC-2 frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FcHeaderRepr {
    /// R_CTL (see [`r_ctl`]).
    pub r_ctl: u8,
    /// Destination address.
    pub d_id: FcId,
    /// CS_CTL or priority.
    pub cs_ctl: u8,
    /// Source address.
    pub s_id: FcId,
    /// TYPE (see [`fc_type`]).
    pub fc_type: u8,
    /// F_CTL (24 bits, see [`f_ctl`]); the frame builder sets the fill-byte bits.
    pub f_ctl: u32,
    /// SEQ_ID.
    pub seq_id: u8,
    /// DF_CTL.
    pub df_ctl: u8,
    /// SEQ_CNT.
    pub seq_cnt: u16,
    /// OX_ID.
    pub ox_id: u16,
    /// RX_ID.
    pub rx_id: u16,
    /// Parameter: relative offset of FCP_DATA, or link-control information.
    pub parameter: u32,
}

impl FcHeaderRepr {
    /// Reads every header field.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(frame: &FcFrame<T>) -> Result<FcHeaderRepr> {
        let b = frame.b();
        let header = b.first_chunk::<HEADER_LEN>().ok_or(Error::Truncated {
            what: "FC header",
            need: HEADER_LEN,
            have: b.len(),
        })?;
        Ok(FcHeaderRepr::from_bytes(header))
    }

    /// Reads every header field from the header's bytes. Switches parse a header per frame:
    /// one fixed-size array spares a bounds check per field.
    #[inline]
    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> FcHeaderRepr {
        let be24 = |at: usize| u32::from_be_bytes([0, b[at], b[at + 1], b[at + 2]]);
        let be16 = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        FcHeaderRepr {
            r_ctl: b[0],
            d_id: FcId(be24(1)),
            cs_ctl: b[4],
            s_id: FcId(be24(5)),
            fc_type: b[8],
            f_ctl: be24(9),
            seq_id: b[12],
            df_ctl: b[13],
            seq_cnt: be16(14),
            ox_id: be16(16),
            rx_id: be16(18),
            parameter: u32::from_be_bytes([b[20], b[21], b[22], b[23]]),
        }
    }

    /// The header's bytes; fails as [`FcHeaderRepr::emit`] does on a field out of range.
    #[inline]
    pub fn to_bytes(&self) -> Result<[u8; HEADER_LEN]> {
        for (what, v) in [("D_ID", self.d_id), ("S_ID", self.s_id)] {
            if !v.is_valid() {
                return Err(Error::ValueTooLarge { field: what, value: u64::from(v.0) });
            }
        }
        if self.f_ctl > 0xFF_FFFF {
            return Err(Error::ValueTooLarge { field: "F_CTL", value: u64::from(self.f_ctl) });
        }
        let mut b = [0u8; HEADER_LEN];
        let put24 = |b: &mut [u8; HEADER_LEN], at: usize, v: u32| {
            b[at..at + 3].copy_from_slice(&v.to_be_bytes()[1..]);
        };
        b[0] = self.r_ctl;
        put24(&mut b, 1, self.d_id.0);
        b[4] = self.cs_ctl;
        put24(&mut b, 5, self.s_id.0);
        b[8] = self.fc_type;
        put24(&mut b, 9, self.f_ctl);
        b[12] = self.seq_id;
        b[13] = self.df_ctl;
        b[14..16].copy_from_slice(&self.seq_cnt.to_be_bytes());
        b[16..18].copy_from_slice(&self.ox_id.to_be_bytes());
        b[18..20].copy_from_slice(&self.rx_id.to_be_bytes());
        b[20..24].copy_from_slice(&self.parameter.to_be_bytes());
        Ok(b)
    }

    /// Header length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes every header field.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut FcFrame<T>) -> Result<()> {
        check_room("FC header", frame.buffer.as_ref(), HEADER_LEN)?;
        let bytes = self.to_bytes()?;
        frame.bm()[..HEADER_LEN].copy_from_slice(&bytes);
        Ok(())
    }

    /// Whether this frame comes from the exchange responder.
    pub fn is_from_responder(&self) -> bool {
        self.f_ctl & f_ctl::EXCHANGE_CONTEXT != 0
    }

    /// The relative offset of a data frame, if F_CTL says the parameter holds one.
    pub fn relative_offset(&self) -> Option<u32> {
        (self.f_ctl & f_ctl::RELATIVE_OFFSET != 0).then_some(self.parameter)
    }

    /// Whether this is the last frame of its sequence.
    pub fn is_end_of_sequence(&self) -> bool {
        self.f_ctl & f_ctl::END_SEQUENCE != 0
    }
}
