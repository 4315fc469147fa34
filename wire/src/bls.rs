//! Basic link services: ABTS (abort an exchange), BA_ACC and BA_RJT. Which one a frame
//! carries is decided by R_CTL, so parsing takes R_CTL and the payload.

use crate::emit::WireEmit;
use crate::error::{Error, Result};
use crate::fc::r_ctl;
use crate::field::{be16, check_len, check_room, check_zero, put16};

/// Length of a BA_ACC payload.
pub const BA_ACC_LEN: usize = 12;
/// Length of a BA_RJT payload.
pub const BA_RJT_LEN: usize = 4;

/// BA_RJT reason codes.
pub mod reject_reason {
    /// Invalid command code.
    pub const INVALID_COMMAND: u8 = 0x01;
    /// Logical error.
    pub const LOGICAL_ERROR: u8 = 0x03;
    /// Logical busy.
    pub const LOGICAL_BUSY: u8 = 0x05;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u8 = 0x07;
    /// Unable to perform the request.
    pub const UNABLE_TO_PERFORM: u8 = 0x09;
    /// Vendor unique.
    pub const VENDOR_UNIQUE: u8 = 0xFF;
}

/// BA_RJT explanations.
pub mod reject_explanation {
    /// No additional explanation.
    pub const NONE: u8 = 0x00;
    /// Invalid OX_ID-RX_ID combination.
    pub const INVALID_OX_RX_ID: u8 = 0x03;
    /// Sequence aborted, no sequence information provided.
    pub const SEQUENCE_ABORTED: u8 = 0x05;
}

/// A basic link service frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlsRepr {
    /// Abort sequence (empty payload; the exchange is named by the header's OX_ID/RX_ID).
    Abts,
    /// Basic accept.
    BaAcc {
        /// SEQ_ID of the last deliverable sequence, if valid.
        seq_id: Option<u8>,
        /// OX_ID of the aborted exchange.
        ox_id: u16,
        /// RX_ID of the aborted exchange.
        rx_id: u16,
        /// Lowest SEQ_CNT aborted.
        low_seq_cnt: u16,
        /// Highest SEQ_CNT aborted.
        high_seq_cnt: u16,
    },
    /// Basic reject.
    BaRjt {
        /// Reason code (see [`reject_reason`]).
        reason: u8,
        /// Explanation (see [`reject_explanation`]).
        explanation: u8,
        /// Vendor unique byte.
        vendor: u8,
    },
}

impl BlsRepr {
    /// Parses the payload of a frame whose R_CTL is a basic link service.
    pub fn parse(rctl: u8, p: &[u8]) -> Result<BlsRepr> {
        let exact = |n: usize, what: &'static str| {
            check_len(what, p, n)?;
            if p.len() != n { Err(Error::BadLength { what, expected: n, found: p.len() }) } else { Ok(()) }
        };
        match rctl {
            r_ctl::BLS_ABTS => {
                exact(0, "ABTS")?;
                Ok(BlsRepr::Abts)
            }
            r_ctl::BLS_BA_ACC => {
                exact(BA_ACC_LEN, "BA_ACC")?;
                let seq_id = match p[0] {
                    0x80 => Some(p[1]),
                    0x00 => {
                        check_zero("BA_ACC SEQ_ID without validity", u64::from(p[1]))?;
                        None
                    }
                    other => {
                        return Err(Error::Reserved {
                            field: "BA_ACC SEQ_ID validity",
                            value: u64::from(other),
                        });
                    }
                };
                check_zero("BA_ACC reserved", u64::from(be16(p, 2)))?;
                Ok(BlsRepr::BaAcc {
                    seq_id,
                    ox_id: be16(p, 4),
                    rx_id: be16(p, 6),
                    low_seq_cnt: be16(p, 8),
                    high_seq_cnt: be16(p, 10),
                })
            }
            r_ctl::BLS_BA_RJT => {
                exact(BA_RJT_LEN, "BA_RJT")?;
                check_zero("BA_RJT reserved", u64::from(p[0]))?;
                Ok(BlsRepr::BaRjt { reason: p[1], explanation: p[2], vendor: p[3] })
            }
            other => Err(Error::Unsupported { field: "BLS R_CTL", value: u64::from(other) }),
        }
    }

    /// The R_CTL a frame carrying this payload has.
    pub fn r_ctl(&self) -> u8 {
        match self {
            BlsRepr::Abts => r_ctl::BLS_ABTS,
            BlsRepr::BaAcc { .. } => r_ctl::BLS_BA_ACC,
            BlsRepr::BaRjt { .. } => r_ctl::BLS_BA_RJT,
        }
    }
}

impl WireEmit for BlsRepr {
    fn buffer_len(&self) -> usize {
        match self {
            BlsRepr::Abts => 0,
            BlsRepr::BaAcc { .. } => BA_ACC_LEN,
            BlsRepr::BaRjt { .. } => BA_RJT_LEN,
        }
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        check_room("BLS", buf, len)?;
        match *self {
            BlsRepr::Abts => {}
            BlsRepr::BaAcc { seq_id, ox_id, rx_id, low_seq_cnt, high_seq_cnt } => {
                buf[0] = if seq_id.is_some() { 0x80 } else { 0 };
                buf[1] = seq_id.unwrap_or(0);
                put16(buf, 2, 0);
                put16(buf, 4, ox_id);
                put16(buf, 6, rx_id);
                put16(buf, 8, low_seq_cnt);
                put16(buf, 10, high_seq_cnt);
            }
            BlsRepr::BaRjt { reason, explanation, vendor } => {
                buf[..4].copy_from_slice(&[0, reason, explanation, vendor]);
            }
        }
        Ok(len)
    }
}
