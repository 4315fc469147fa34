//! Extended link services (FC-LS): FLOGI, FDISC and PLOGI with their service parameters,
//! PRLI (one FCP service parameter page), LOGO, LS_ACC and LS_RJT with reason codes.

use crate::emit::WireEmit;
use crate::error::{Error, Result};
use crate::fc::FcId;
use crate::field::{
    array, be16, be24, be32, be64, check_len, check_room, check_zero, put16, put24, put32, put64,
};

/// ELS command codes (first byte of the payload).
pub mod command {
    /// Link service reject.
    pub const LS_RJT: u8 = 0x01;
    /// Link service accept.
    pub const LS_ACC: u8 = 0x02;
    /// N_Port login.
    pub const PLOGI: u8 = 0x03;
    /// Fabric login.
    pub const FLOGI: u8 = 0x04;
    /// Logout.
    pub const LOGO: u8 = 0x05;
    /// Process login.
    pub const PRLI: u8 = 0x20;
    /// Fabric discovery (login of an additional N_Port ID).
    pub const FDISC: u8 = 0x51;
}

/// LS_RJT reason codes.
pub mod reject_reason {
    /// Invalid ELS command code.
    pub const INVALID_COMMAND: u8 = 0x01;
    /// Logical error.
    pub const LOGICAL_ERROR: u8 = 0x03;
    /// Logical busy.
    pub const LOGICAL_BUSY: u8 = 0x05;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u8 = 0x07;
    /// Unable to perform the command request.
    pub const UNABLE_TO_PERFORM: u8 = 0x09;
    /// Command not supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x0B;
    /// Command already in progress.
    pub const COMMAND_IN_PROGRESS: u8 = 0x0E;
    /// Vendor specific error.
    pub const VENDOR_SPECIFIC: u8 = 0xFF;
}

/// LS_RJT reason code explanations (a subset).
pub mod reject_explanation {
    /// No additional explanation.
    pub const NONE: u8 = 0x00;
    /// Service parameter error: options.
    pub const OPTIONS: u8 = 0x01;
    /// Invalid N_Port/F_Port name.
    pub const INVALID_PORT_NAME: u8 = 0x0D;
    /// Invalid node/fabric name.
    pub const INVALID_NODE_NAME: u8 = 0x0E;
    /// Invalid common service parameters.
    pub const INVALID_COMMON_PARAMETERS: u8 = 0x0F;
    /// Login required.
    pub const LOGIN_REQUIRED: u8 = 0x1E;
    /// Insufficient resources.
    pub const INSUFFICIENT_RESOURCES: u8 = 0x29;
    /// Request not supported.
    pub const REQUEST_NOT_SUPPORTED: u8 = 0x2C;
}

/// Length of a FLOGI/FDISC/PLOGI payload (and of its LS_ACC).
pub const LOGIN_LEN: usize = 116;
/// Length of a PRLI with one service parameter page (and of its LS_ACC).
pub const PRLI_LEN: usize = 20;
/// Length of a LOGO payload.
pub const LOGO_LEN: usize = 16;
/// Length of an LS_RJT payload.
pub const LS_RJT_LEN: usize = 8;
/// Length of a bare LS_ACC.
pub const ACC_LEN: usize = 4;

/// Common service parameter feature bits (bytes 8-9 of a login payload).
pub mod common_features {
    /// Continuously increasing relative offset.
    pub const CONTINUOUS_INCREASING_OFFSET: u16 = 0x8000;
    /// Random relative offset.
    pub const RANDOM_RELATIVE_OFFSET: u16 = 0x4000;
    /// Multiple N_Port_ID support (NPIV).
    pub const NPIV: u16 = 0x2000;
    /// The sender is an F_Port (in the ACC to FLOGI).
    pub const F_PORT: u16 = 0x1000;
}

/// The service parameters of FLOGI, FDISC, PLOGI and of their LS_ACC (FC-LS "login").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoginParams {
    /// Highest FC-PH version supported.
    pub fc_ph_high: u8,
    /// Lowest FC-PH version supported.
    pub fc_ph_low: u8,
    /// Buffer-to-buffer credit.
    pub bb_credit: u16,
    /// Common features (see [`common_features`]).
    pub common_features: u16,
    /// BB_SC_N (high 4 bits) and receive data field size (low 12 bits).
    pub bb_rcv_size: u16,
    /// Word 2: total concurrent sequences and relative offset by category (PLOGI) or R_A_TOV
    /// (FLOGI and its ACC).
    pub csp_word2: u32,
    /// E_D_TOV in milliseconds.
    pub e_d_tov: u32,
    /// Port name (WWPN).
    pub port_name: u64,
    /// Node name (WWNN), or the fabric name in the ACC to FLOGI.
    pub node_name: u64,
    /// Class 1, 2, 3 and 4 service parameters, 16 bytes each.
    pub class_params: [[u8; 16]; 4],
    /// Vendor version level.
    pub vendor_version: [u8; 16],
}

impl LoginParams {
    /// Typical parameters of an N_Port with class 3 service and the given names.
    pub fn n_port(port_name: u64, node_name: u64) -> LoginParams {
        let mut class3 = [0u8; 16];
        class3[0] = 0x80; // class valid
        class3[4] = 0x08; // receive data field size 2048 (0x0800)
        class3[11] = 0xff; // open sequences per exchange
        LoginParams {
            fc_ph_high: 0x20,
            fc_ph_low: 0x20,
            bb_credit: 10,
            common_features: common_features::CONTINUOUS_INCREASING_OFFSET,
            bb_rcv_size: 2048,
            csp_word2: 0x00ff_0003,
            e_d_tov: 2000,
            port_name,
            node_name,
            class_params: [[0; 16], [0; 16], class3, [0; 16]],
            vendor_version: [0; 16],
        }
    }

    /// Receive data field size (low 12 bits of `bb_rcv_size`).
    pub fn rcv_data_field_size(&self) -> u16 {
        self.bb_rcv_size & 0x0fff
    }

    fn parse(p: &[u8]) -> Result<LoginParams> {
        check_len("login service parameters", p, LOGIN_LEN)?;
        if p.len() != LOGIN_LEN {
            return Err(Error::BadLength { what: "login payload", expected: LOGIN_LEN, found: p.len() });
        }
        Ok(LoginParams {
            fc_ph_high: p[4],
            fc_ph_low: p[5],
            bb_credit: be16(p, 6),
            common_features: be16(p, 8),
            bb_rcv_size: be16(p, 10),
            csp_word2: be32(p, 12),
            e_d_tov: be32(p, 16),
            port_name: be64(p, 20),
            node_name: be64(p, 28),
            class_params: [array(p, 36), array(p, 52), array(p, 68), array(p, 84)],
            vendor_version: array(p, 100),
        })
    }

    fn emit(&self, code: u8, b: &mut [u8]) {
        b[0..4].copy_from_slice(&[code, 0, 0, 0]);
        b[4] = self.fc_ph_high;
        b[5] = self.fc_ph_low;
        put16(b, 6, self.bb_credit);
        put16(b, 8, self.common_features);
        put16(b, 10, self.bb_rcv_size);
        put32(b, 12, self.csp_word2);
        put32(b, 16, self.e_d_tov);
        put64(b, 20, self.port_name);
        put64(b, 28, self.node_name);
        for (i, c) in self.class_params.iter().enumerate() {
            b[36 + 16 * i..52 + 16 * i].copy_from_slice(c);
        }
        b[100..116].copy_from_slice(&self.vendor_version);
    }
}

/// PRLI service parameter word bits for FCP (word 3 of the page).
pub mod prli_fcp {
    /// Retry (FCP-2 error recovery).
    pub const RETRY: u32 = 0x100;
    /// Confirmed completion allowed.
    pub const CONFIRMED_COMPLETION: u32 = 0x80;
    /// Data overlay allowed.
    pub const DATA_OVERLAY: u32 = 0x40;
    /// Initiator function.
    pub const INITIATOR: u32 = 0x20;
    /// Target function.
    pub const TARGET: u32 = 0x10;
    /// Read FCP_XFER_RDY disabled.
    pub const READ_XFER_RDY_DISABLED: u32 = 0x02;
    /// Write FCP_XFER_RDY disabled.
    pub const WRITE_XFER_RDY_DISABLED: u32 = 0x01;
}

/// PRLI page flag bits (byte 2 of the page).
pub mod prli_flags {
    /// Originator process associator valid.
    pub const OPAV: u8 = 0x80;
    /// Responder process associator valid.
    pub const RPAV: u8 = 0x40;
    /// Establish image pair.
    pub const ESTABLISH_IMAGE_PAIR: u8 = 0x20;
    /// Image pair established (in the accept; shares the bit with the request flag).
    pub const IMAGE_PAIR_ESTABLISHED: u8 = 0x20;
    /// Accept response code mask (low 4 bits), 1 = request executed.
    pub const RESPONSE_CODE_MASK: u8 = 0x0f;
}

/// One PRLI service parameter page (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrliPage {
    /// FC-4 TYPE (8 for FCP).
    pub fc_type: u8,
    /// TYPE code extension.
    pub type_ext: u8,
    /// Flags (see [`prli_flags`]), with the response code in the accept.
    pub flags: u8,
    /// Originator process associator.
    pub originator_pa: u32,
    /// Responder process associator.
    pub responder_pa: u32,
    /// Service parameters (see [`prli_fcp`]).
    pub service_params: u32,
}

impl PrliPage {
    fn parse(p: &[u8]) -> Result<PrliPage> {
        check_len("PRLI", p, PRLI_LEN)?;
        if p[1] != 0x10 {
            return Err(Error::BadLength {
                what: "PRLI page length",
                expected: 0x10,
                found: usize::from(p[1]),
            });
        }
        let len = usize::from(be16(p, 2));
        if len != PRLI_LEN || p.len() != PRLI_LEN {
            return Err(Error::BadLength {
                what: "PRLI payload length",
                expected: PRLI_LEN,
                found: len.max(p.len()),
            });
        }
        check_zero("PRLI page reserved byte", u64::from(p[7]))?;
        Ok(PrliPage {
            fc_type: p[4],
            type_ext: p[5],
            flags: p[6],
            originator_pa: be32(p, 8),
            responder_pa: be32(p, 12),
            service_params: be32(p, 16),
        })
    }

    fn emit(&self, code: u8, b: &mut [u8]) {
        b[0] = code;
        b[1] = 0x10;
        put16(b, 2, PRLI_LEN as u16);
        b[4] = self.fc_type;
        b[5] = self.type_ext;
        b[6] = self.flags;
        b[7] = 0;
        put32(b, 8, self.originator_pa);
        put32(b, 12, self.responder_pa);
        put32(b, 16, self.service_params);
    }
}

/// A LOGO: the N_Port ID and port name logging out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogoRepr {
    /// N_Port ID of the port logging out.
    pub port_id: FcId,
    /// Port name of the port logging out.
    pub port_name: u64,
}

/// An LS_RJT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LsRjtRepr {
    /// Reason code (see [`reject_reason`]).
    pub reason: u8,
    /// Reason explanation (see [`reject_explanation`]).
    pub explanation: u8,
    /// Vendor unique byte.
    pub vendor: u8,
}

/// An extended link service request or reply.
///
/// The payload of an LS_ACC depends on the request; parsing tells the forms apart by length
/// (116 bytes: login parameters, 20 bytes with a PRLI page header: PRLI accept, 4 bytes:
/// bare accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElsRepr {
    /// Fabric login.
    Flogi(LoginParams),
    /// Fabric discovery (NPIV login).
    Fdisc(LoginParams),
    /// N_Port login.
    Plogi(LoginParams),
    /// Process login.
    Prli(PrliPage),
    /// Logout.
    Logo(LogoRepr),
    /// Accept of FLOGI, FDISC or PLOGI.
    AccLogin(LoginParams),
    /// Accept of PRLI.
    AccPrli(PrliPage),
    /// Accept with no parameters (LOGO and others).
    Acc,
    /// Reject.
    LsRjt(LsRjtRepr),
}

impl ElsRepr {
    /// The ELS command code of this message.
    pub fn command(&self) -> u8 {
        match self {
            ElsRepr::Flogi(_) => command::FLOGI,
            ElsRepr::Fdisc(_) => command::FDISC,
            ElsRepr::Plogi(_) => command::PLOGI,
            ElsRepr::Prli(_) => command::PRLI,
            ElsRepr::Logo(_) => command::LOGO,
            ElsRepr::AccLogin(_) | ElsRepr::AccPrli(_) | ElsRepr::Acc => command::LS_ACC,
            ElsRepr::LsRjt(_) => command::LS_RJT,
        }
    }

    /// Whether this is a reply (LS_ACC or LS_RJT), to be sent with R_CTL ELS reply.
    pub fn is_reply(&self) -> bool {
        matches!(self.command(), command::LS_ACC | command::LS_RJT)
    }

    /// Parses an ELS payload.
    pub fn parse(p: &[u8]) -> Result<ElsRepr> {
        check_len("ELS command code", p, 4)?;
        let code = p[0];
        // PRLI's bytes 1..4 carry the page length and payload length.
        let is_prli =
            code == command::PRLI || (code == command::LS_ACC && p.len() == PRLI_LEN && p[1] == 0x10);
        if !is_prli {
            check_zero("ELS command word reserved bytes", u64::from(be24(p, 1)))?;
        }
        let exact = |n: usize, what: &'static str| {
            check_len(what, p, n)?;
            if p.len() != n { Err(Error::BadLength { what, expected: n, found: p.len() }) } else { Ok(()) }
        };
        Ok(match code {
            command::FLOGI => ElsRepr::Flogi(LoginParams::parse(p)?),
            command::FDISC => ElsRepr::Fdisc(LoginParams::parse(p)?),
            command::PLOGI => ElsRepr::Plogi(LoginParams::parse(p)?),
            command::PRLI => ElsRepr::Prli(PrliPage::parse(p)?),
            command::LOGO => {
                exact(LOGO_LEN, "LOGO")?;
                check_zero("LOGO reserved byte", u64::from(p[4]))?;
                ElsRepr::Logo(LogoRepr { port_id: FcId(be24(p, 5)), port_name: be64(p, 8) })
            }
            command::LS_ACC if is_prli => ElsRepr::AccPrli(PrliPage::parse(p)?),
            command::LS_ACC => match p.len() {
                ACC_LEN => ElsRepr::Acc,
                LOGIN_LEN => ElsRepr::AccLogin(LoginParams::parse(p)?),
                n => {
                    return Err(Error::BadLength {
                        what: "LS_ACC (4, 20 or 116 bytes)",
                        expected: ACC_LEN,
                        found: n,
                    });
                }
            },
            command::LS_RJT => {
                exact(LS_RJT_LEN, "LS_RJT")?;
                check_zero("LS_RJT reserved byte", u64::from(p[4]))?;
                ElsRepr::LsRjt(LsRjtRepr { reason: p[5], explanation: p[6], vendor: p[7] })
            }
            other => return Err(Error::UnknownElsCommand(other)),
        })
    }
}

impl WireEmit for ElsRepr {
    fn buffer_len(&self) -> usize {
        match self {
            ElsRepr::Flogi(_) | ElsRepr::Fdisc(_) | ElsRepr::Plogi(_) | ElsRepr::AccLogin(_) => LOGIN_LEN,
            ElsRepr::Prli(_) | ElsRepr::AccPrli(_) => PRLI_LEN,
            ElsRepr::Logo(_) => LOGO_LEN,
            ElsRepr::Acc => ACC_LEN,
            ElsRepr::LsRjt(_) => LS_RJT_LEN,
        }
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        check_room("ELS", buf, len)?;
        let b = &mut buf[..len];
        let code = self.command();
        match self {
            ElsRepr::Flogi(l) | ElsRepr::Fdisc(l) | ElsRepr::Plogi(l) | ElsRepr::AccLogin(l) => {
                l.emit(code, b)
            }
            ElsRepr::Prli(p) | ElsRepr::AccPrli(p) => p.emit(code, b),
            ElsRepr::Logo(l) => {
                if !l.port_id.is_valid() {
                    return Err(Error::ValueTooLarge {
                        field: "LOGO N_Port ID",
                        value: u64::from(l.port_id.0),
                    });
                }
                b[0..5].copy_from_slice(&[code, 0, 0, 0, 0]);
                put24(b, 5, l.port_id.0);
                put64(b, 8, l.port_name);
            }
            ElsRepr::Acc => b.copy_from_slice(&[code, 0, 0, 0]),
            ElsRepr::LsRjt(r) => b.copy_from_slice(&[code, 0, 0, 0, 0, r.reason, r.explanation, r.vendor]),
        }
        Ok(len)
    }
}
