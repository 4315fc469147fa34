//! Identifiers shared by the fast path and the control path: volumes, segments, devices,
//! Fibre Channel names and addresses, exchanges, workers and request correlation. Each is a
//! newtype so that a segment id can never be passed where a device id is expected.

use core::fmt;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
        pub struct $name(pub $inner);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    };
}

id_newtype!(
    /// A logical volume (LV), the host-visible virtual disk.
    LvId(u32),
    "lv"
);
id_newtype!(
    /// A volume segment (VSEG): a contiguous LBA range of one LV with its own Rmap and
    /// redirect table.
    VsegId(u32),
    "vseg"
);
id_newtype!(
    /// A physical logical unit the engine reaches through one or more paths.
    DeviceId(u32),
    "dev"
);
id_newtype!(
    /// A target exposure: one virtual target port (virtual WWPN and D_ID) with its LUN map.
    ExposureId(u32),
    "te"
);
id_newtype!(
    /// A fast-path worker. Its number is carried in the high bits of every exchange id it owns.
    WorkerId(u8),
    "fp"
);
id_newtype!(
    /// A switch port, numbered across the whole engine.
    PortId(u16),
    "port"
);
id_newtype!(
    /// A journal group: the per-worker journals of one journaled volume.
    JournalGroupId(u32),
    "jg"
);
id_newtype!(
    /// An engine (DVE) of the cluster.
    EngineId(u16),
    "dve"
);
id_newtype!(
    /// Correlates a control-path request with the fast path's reply.
    RequestId(u64),
    "req"
);
id_newtype!(
    /// A downstream I/O the control path asked the fast path to dispatch (`FPDispatchIO`).
    DispatchTag(u64),
    "dio"
);

/// A Fibre Channel port or node name (WWPN / WWNN), 64 bits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
pub struct Wwn(pub u64);

impl fmt::Debug for Wwn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0.to_be_bytes();
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
        )
    }
}

impl fmt::Display for Wwn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A 24-bit Fibre Channel address (S_ID / D_ID), stored in the low bits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
pub struct FcId(u32);

impl FcId {
    /// The directory (name) server's well-known address.
    pub const NAME_SERVER: FcId = FcId(0xFF_FFFC);
    /// The fabric login server's well-known address.
    pub const FABRIC_LOGIN: FcId = FcId(0xFF_FFFE);
    /// The fabric controller's well-known address.
    pub const FABRIC_CONTROLLER: FcId = FcId(0xFF_FFFD);

    /// An address from its 24 low bits; returns `None` if higher bits are set.
    pub const fn new(raw: u32) -> Option<FcId> {
        if raw <= 0xFF_FFFF { Some(FcId(raw)) } else { None }
    }

    /// The address as a 24-bit value.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Domain, area and port bytes.
    pub const fn to_bytes(self) -> [u8; 3] {
        [(self.0 >> 16) as u8, (self.0 >> 8) as u8, self.0 as u8]
    }
}

impl fmt::Debug for FcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06x}", self.0)
    }
}

impl fmt::Display for FcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A SCSI logical unit number as the host addresses it (single-level, 0..16383).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
pub struct Lun(pub u16);

/// An exchange id (OX_ID or RX_ID) the switch assigned: a slot index into the owning worker's
/// exchange table, with the worker's number in the high bits (seed 000's command slots), so
/// a frame that lands on another core is routed to its owner without a lookup.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ExchangeId(pub u16);

/// How an exchange id is split between the owning worker and the slot index.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExchangeIdLayout {
    worker_bits: u8,
}

impl ExchangeIdLayout {
    /// A layout with `worker_bits` high bits naming the worker (1 to 8 bits); the rest index
    /// slots. `0xFFFF` is reserved by FC as "unassigned" and is never produced.
    pub const fn new(worker_bits: u8) -> Option<ExchangeIdLayout> {
        if worker_bits >= 1 && worker_bits <= 8 { Some(ExchangeIdLayout { worker_bits }) } else { None }
    }

    /// Number of workers this layout can name.
    pub const fn max_workers(self) -> usize {
        1 << self.worker_bits
    }

    /// Number of slots per worker. The last slot of the last worker would encode as 0xFFFF,
    /// FC's "unassigned" value, so it is never handed out (see [`ExchangeIdLayout::compose`]).
    pub const fn slots_per_worker(self) -> usize {
        1 << (16 - self.worker_bits)
    }

    /// The exchange id of `slot` in `worker`'s table, or `None` if either is out of range or
    /// the result would be the reserved value 0xFFFF.
    pub const fn compose(self, worker: WorkerId, slot: u16) -> Option<ExchangeId> {
        let slot_bits = 16 - self.worker_bits as u32;
        if (worker.0 as usize) >= self.max_workers() || (slot as usize) >= self.slots_per_worker() {
            return None;
        }
        let raw = ((worker.0 as u32) << slot_bits) | slot as u32;
        if raw == 0xFFFF { None } else { Some(ExchangeId(raw as u16)) }
    }

    /// The worker that owns `xid`.
    pub const fn worker(self, xid: ExchangeId) -> WorkerId {
        WorkerId((xid.0 as u32 >> (16 - self.worker_bits as u32)) as u8)
    }

    /// The slot index of `xid` in its owner's table.
    pub const fn slot(self, xid: ExchangeId) -> u16 {
        let slot_bits = 16 - self.worker_bits as u32;
        (xid.0 as u32 & ((1u32 << slot_bits) - 1)) as u16
    }
}

impl fmt::Debug for ExchangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "xid{:04x}", self.0)
    }
}

/// Names one upstream (host) I/O in a worker for its whole life: the exchange id the worker
/// assigned plus an incarnation that changes each time the slot is reused, so a stale
/// reference from the control path can never touch a newer I/O in the same slot.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct IoTag {
    /// The worker that owns the I/O.
    pub worker: WorkerId,
    /// The exchange id (RX_ID towards the host).
    pub xid: ExchangeId,
    /// Incremented on every reuse of the slot.
    pub incarnation: u32,
}

/// Time on the engine's monotonic clock, in nanoseconds. The fast path stamps every upstream
/// I/O with it before reading the Rmap, so the control path can drain by timestamp.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Timestamp(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_id_round_trips_worker_and_slot() {
        let layout = ExchangeIdLayout::new(3).unwrap();
        assert_eq!(layout.max_workers(), 8);
        assert_eq!(layout.slots_per_worker(), 8192);
        let xid = layout.compose(WorkerId(5), 1234).unwrap();
        assert_eq!(layout.worker(xid), WorkerId(5));
        assert_eq!(layout.slot(xid), 1234);
        assert_eq!(layout.compose(WorkerId(8), 0), None);
        assert_eq!(layout.compose(WorkerId(0), 8192), None);
        assert_eq!(layout.compose(WorkerId(7), 8191), None, "0xFFFF is FC's unassigned id");
        assert_eq!(ExchangeIdLayout::new(0), None);
        assert_eq!(ExchangeIdLayout::new(9), None);
    }

    #[test]
    fn fc_id_is_24_bits() {
        assert_eq!(FcId::new(0x01_0203).unwrap().to_bytes(), [1, 2, 3]);
        assert_eq!(FcId::new(0x100_0000), None);
        assert_eq!(format!("{}", Wwn(0x5006_0160_3b20_19a1)), "50:06:01:60:3b:20:19:a1");
    }
}
