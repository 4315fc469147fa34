//! The FP API of seed 003 section 2 as typed messages: [`ToCp`] carries the upcalls from a
//! fast-path worker to the control path (and its replies to queries), [`ToFp`] the downcalls
//! from the control path to a worker. Each variant's doc names the seed's call.

use core::ops::Range;

use bytes::Bytes;

use crate::error::Error;
use crate::frame::{Frame, TxFrame};
use crate::ids::{
    DeviceId, DispatchTag, ExposureId, FcId, IoTag, JournalGroupId, LvId, PortId, RequestId, Timestamp,
    VsegId, WorkerId,
};
use crate::io::{DownstreamRequest, HostIo, IoStatus, PendingFilter, PendingIo, QueueReason};
use crate::mapping::{
    DevicePath, DiscoveredDevice, Extent, FabricRoute, JournalRegion, LunMask, LvDescriptor, PortLogin,
    RedirectIndex, RedirectTable, TargetExposure,
};
use crate::stats::FpStatistics;

/// A piece of mapping the control path grants a worker (`FPAddMapping`, `FPReplaceMapping`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MappingEntry {
    /// A volume and its segment descriptors.
    Lv(LvDescriptor),
    /// A segment's whole redirect table (loaded on the first access to the segment).
    Redirects {
        /// The segment.
        vseg: VsegId,
        /// The table.
        table: RedirectTable,
    },
    /// Rmap extents of a segment, in segment blocks.
    Extents {
        /// The segment.
        vseg: VsegId,
        /// Sorted, non-overlapping extents.
        extents: Vec<Extent<RedirectIndex>>,
    },
    /// The path to a device.
    DevicePath(DevicePath),
    /// A worker's journal in a journal group (a swap replaces it).
    Journal(JournalRegion),
    /// Where a physical N_Port is: frames to its address are forwarded there unchanged.
    Route(FabricRoute),
    /// A host's fabric login: its port name behind its address.
    Login(PortLogin),
}

impl MappingEntry {
    /// The key that names what this entry replaces or what removes it.
    pub fn key(&self) -> MappingKey {
        match self {
            MappingEntry::Lv(lv) => MappingKey::Lv(lv.id),
            MappingEntry::Redirects { vseg, .. } => MappingKey::Redirects(*vseg),
            MappingEntry::Extents { vseg, extents } => {
                let start = extents.first().map_or(0, |e| e.start);
                let end = extents.last().map_or(0, |e| e.end);
                MappingKey::Extents { vseg: *vseg, blocks: start..end }
            }
            MappingEntry::DevicePath(path) => MappingKey::DevicePath(path.device),
            MappingEntry::Journal(region) => {
                MappingKey::Journal { group: region.group, worker: region.worker }
            }
            MappingEntry::Route(route) => MappingKey::Route(route.fc_id),
            MappingEntry::Login(login) => MappingKey::Login(login.fc_id),
        }
    }
}

/// Names cached mapping to remove or replace (`FPRemoveMapping`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MappingKey {
    /// A volume, its segments and everything cached for them.
    Lv(LvId),
    /// Everything cached for a segment: redirect table and extents.
    Vseg(VsegId),
    /// A segment's redirect table (the segment's extents go with it, since they index it).
    Redirects(VsegId),
    /// The cached extents overlapping these segment blocks.
    Extents {
        /// The segment.
        vseg: VsegId,
        /// Segment blocks.
        blocks: Range<u64>,
    },
    /// A device's path: I/O to the device faults until a new path is added.
    DevicePath(DeviceId),
    /// A worker's journal: journal writes fault until a new region is added.
    Journal {
        /// The group.
        group: JournalGroupId,
        /// The worker.
        worker: crate::ids::WorkerId,
    },
    /// The route to a physical N_Port.
    Route(FcId),
    /// A host's login (after LOGO): its frames fault until it logs in again.
    Login(FcId),
}

/// The control path's answer to a mapping miss (`CpMappingMiss` returns).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MissVerdict {
    /// CONTINUE: here is the mapping (the worker adds it and resumes the I/O).
    Continue(Vec<MappingEntry>),
    /// IGNORE: no mapping is valid; complete the I/O with this status.
    Ignore(IoStatus),
    /// QUEUE: hand the I/O over with `CpQueueIO`.
    Queue,
}

/// Which pending I/Os to abort (`FPAbortPendingIOs`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AbortTarget {
    /// One upstream I/O and its downstream I/Os.
    Io(IoTag),
    /// One downstream I/O the control path dispatched.
    Dispatch(DispatchTag),
    /// Every pending I/O the filter selects.
    Matching(PendingFilter),
}

/// Messages from a fast-path worker to the control path.
#[derive(Clone, PartialEq, Debug)]
pub enum ToCp {
    /// `CpMappingMiss`: the worker could not map this I/O; answer with [`ToFp::MappingMissReply`].
    MappingMiss {
        /// The upstream I/O.
        io: IoTag,
        /// What the host asked.
        request: HostIo,
    },
    /// `CpQueueIO`: the control path takes over this upstream I/O.
    QueueIo {
        /// The upstream I/O.
        io: IoTag,
        /// What the host asked.
        request: HostIo,
        /// Why.
        reason: QueueReason,
    },
    /// `CpDispatchIOComplete`: a downstream I/O from `FPDispatchIO` finished.
    DispatchIoComplete {
        /// The control path's tag.
        tag: DispatchTag,
        /// How it ended.
        status: IoStatus,
        /// Data read, for reads and commands with data in.
        data: Option<Bytes>,
    },
    /// Acknowledgement of an invalidation (`FPRemoveMapping`, `FPReplaceMapping`): the worker
    /// finished the I/O in hand and starts nothing new under the old entry. I/Os stamped
    /// before `at` may still be using it; the control path drains them by timestamp.
    InvalidationAck {
        /// The request acknowledged.
        req: RequestId,
        /// The worker.
        worker: WorkerId,
        /// When the old entry stopped being used for new I/O.
        at: Timestamp,
    },
    /// Reply to `FPDiscover`.
    Discovered {
        /// The request.
        req: RequestId,
        /// Devices this worker's ports reach.
        devices: Vec<DiscoveredDevice>,
    },
    /// Reply to `FPQueryPendingIOs`.
    PendingIos {
        /// The request.
        req: RequestId,
        /// The worker.
        worker: WorkerId,
        /// The selected entries of both lists.
        ios: Vec<PendingIo>,
    },
    /// Reply to `FPAbortPendingIOs`.
    Aborted {
        /// The request.
        req: RequestId,
        /// Upstream I/Os aborted.
        ios: Vec<IoTag>,
        /// Dispatched downstream I/Os aborted.
        dispatches: Vec<DispatchTag>,
    },
    /// The host aborted a write whose legs had been sent: some may have landed and others
    /// not, so the copies its layout keeps (a journal, mirror sides) may disagree there.
    /// Sent once every leg's abort is answered (or given up), so no leg can land after it;
    /// the host's ABTS comes with it, for the control path to answer once the copies agree.
    WriteAborted {
        /// What the host asked.
        request: HostIo,
        /// The port the ABTS arrived on.
        port: PortId,
        /// The host's ABTS, the whole Ethernet frame.
        abts: Frame,
    },
    /// Reply to `FPQueryStatistics`.
    Statistics {
        /// The request.
        req: RequestId,
        /// The counters.
        stats: Box<FpStatistics>,
    },
    /// Reply to `FPGetData`: the I/O's data (host write data the worker collected).
    Data {
        /// The request.
        req: RequestId,
        /// The I/O.
        io: IoTag,
        /// The bytes, or why not.
        result: Result<Bytes, Error>,
    },
    /// A frame the worker does not handle itself: fabric login and services, link services to
    /// virtual targets, frames of exchanges the control path originated, aborts. The control
    /// path reaches hosts and disks only through the workers' ports (seed 003 Fig. 4A).
    ControlFrame {
        /// The port it arrived on.
        port: PortId,
        /// The whole Ethernet frame.
        frame: Frame,
    },
    /// Reply to requests that return nothing else (`FPExpose`, `FPHide`, `FPAddMapping`,
    /// `FPPutData`, the LUN mask, pause and resume): done, or why not.
    Done {
        /// The request.
        req: RequestId,
        /// The outcome.
        result: Result<(), Error>,
    },
}

/// Messages from the control path to a fast-path worker.
#[derive(Clone, PartialEq, Debug)]
pub enum ToFp {
    /// `FPDiscover`: list the physical devices the worker's ports reach.
    Discover {
        /// Correlates the reply.
        req: RequestId,
    },
    /// `FPExpose`: make a virtual target and its LUNs visible to hosts.
    Expose {
        /// Correlates the reply.
        req: RequestId,
        /// The exposure.
        exposure: TargetExposure,
    },
    /// `FPHide`: hide a virtual target.
    Hide {
        /// Correlates the reply.
        req: RequestId,
        /// The exposure.
        exposure: ExposureId,
    },
    /// `FPAddMapping`: add to the worker's mapping cache. Always safe: the worst case is a
    /// fault.
    AddMapping {
        /// Correlates the reply.
        req: RequestId,
        /// The entry.
        entry: MappingEntry,
    },
    /// `FPReplaceMapping`: atomically replace the entry with the same key; acknowledged like
    /// a removal.
    ReplaceMapping {
        /// Correlates the acknowledgement.
        req: RequestId,
        /// The new entry.
        entry: MappingEntry,
    },
    /// `FPRemoveMapping`: revoke authority; acknowledged with [`ToCp::InvalidationAck`].
    RemoveMapping {
        /// Correlates the acknowledgement.
        req: RequestId,
        /// What to remove.
        key: MappingKey,
    },
    /// `FPQueryPendingIOs`.
    QueryPendingIos {
        /// Correlates the reply.
        req: RequestId,
        /// Which entries.
        filter: PendingFilter,
    },
    /// `FPAbortPendingIOs`: abort I/Os; upstream I/Os are completed with `status`.
    AbortPendingIos {
        /// Correlates the reply.
        req: RequestId,
        /// Which.
        target: AbortTarget,
        /// The status aborted upstream I/Os complete with (none: drop silently, e.g. after
        /// an ABTS the control path answers itself).
        status: Option<IoStatus>,
    },
    /// `FPQueryStatistics`.
    QueryStatistics {
        /// Correlates the reply.
        req: RequestId,
    },
    /// `FPDispatchIO`: send this downstream I/O; completes with [`ToCp::DispatchIoComplete`].
    DispatchIo(DownstreamRequest),
    /// `FPGetData`: fetch a queued write's data from the host (the worker solicits it with
    /// XFER_RDY if it has not yet) and return it.
    GetData {
        /// Correlates the reply.
        req: RequestId,
        /// The upstream I/O.
        io: IoTag,
    },
    /// `FPPutData`: send read data to the host for a queued I/O, at a byte offset.
    PutData {
        /// Correlates the reply.
        req: RequestId,
        /// The upstream I/O.
        io: IoTag,
        /// Byte offset in the I/O's data.
        offset: u32,
        /// The bytes.
        data: Bytes,
    },
    /// `FPQueueIOComplete`: the control path set the status of a queued I/O; complete it to
    /// the host.
    QueueIoComplete {
        /// The upstream I/O.
        io: IoTag,
        /// Its status.
        status: IoStatus,
    },
    /// The LUN masking FP API: which hosts may use the fast path for an LV.
    SetLunMask {
        /// Correlates the reply.
        req: RequestId,
        /// The mask.
        mask: LunMask,
    },
    /// Pause an LV: new I/O to it is held, not started, until resumed.
    PauseLv {
        /// Correlates the reply.
        req: RequestId,
        /// The volume.
        lv: LvId,
    },
    /// Resume a paused LV: held I/O proceeds.
    ResumeLv {
        /// Correlates the reply.
        req: RequestId,
        /// The volume.
        lv: LvId,
    },
    /// Transmit a frame the control path built (fabric and link-service replies, its own
    /// exchanges) on one of the worker's ports.
    SendFrame {
        /// The port.
        port: PortId,
        /// The frame.
        frame: TxFrame,
    },
    /// The answer to [`ToCp::MappingMiss`].
    MappingMissReply {
        /// The upstream I/O.
        io: IoTag,
        /// CONTINUE, IGNORE or QUEUE.
        verdict: MissVerdict,
    },
}

/// Which way a call goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// Fast path to control path (upcall).
    FpToCp,
    /// Control path to fast path (downcall).
    CpToFp,
}

/// One call of the seed's FP API and the Rust message that carries it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ApiCall {
    /// The seed's name.
    pub seed: &'static str,
    /// The Rust message.
    pub rust: &'static str,
    /// Which way it goes.
    pub direction: Direction,
}

const fn call(seed: &'static str, rust: &'static str, direction: Direction) -> ApiCall {
    ApiCall { seed, rust, direction }
}

/// Every FP API call, seed name beside Rust name. Replies to queries are listed under the
/// query they answer.
pub const API_CALLS: &[ApiCall] = &[
    call("CpMappingMiss", "ToCp::MappingMiss", Direction::FpToCp),
    call("CpMappingMiss (CONTINUE/IGNORE/QUEUE)", "ToFp::MappingMissReply", Direction::CpToFp),
    call("CpQueueIO", "ToCp::QueueIo", Direction::FpToCp),
    call("CpDispatchIOComplete", "ToCp::DispatchIoComplete", Direction::FpToCp),
    call("invalidation acknowledgement", "ToCp::InvalidationAck", Direction::FpToCp),
    call("FPDiscover", "ToFp::Discover", Direction::CpToFp),
    call("FPDiscover (reply)", "ToCp::Discovered", Direction::FpToCp),
    call("FPExpose", "ToFp::Expose", Direction::CpToFp),
    call("FPHide", "ToFp::Hide", Direction::CpToFp),
    call("FPAddMapping", "ToFp::AddMapping", Direction::CpToFp),
    call("FPReplaceMapping", "ToFp::ReplaceMapping", Direction::CpToFp),
    call("FPRemoveMapping", "ToFp::RemoveMapping", Direction::CpToFp),
    call("FPQueryPendingIOs", "ToFp::QueryPendingIos", Direction::CpToFp),
    call("FPQueryPendingIOs (reply)", "ToCp::PendingIos", Direction::FpToCp),
    call("FPAbortPendingIOs", "ToFp::AbortPendingIos", Direction::CpToFp),
    call("FPAbortPendingIOs (reply)", "ToCp::Aborted", Direction::FpToCp),
    call("FPQueryStatistics", "ToFp::QueryStatistics", Direction::CpToFp),
    call("FPQueryStatistics (reply)", "ToCp::Statistics", Direction::FpToCp),
    call("FPDispatchIO", "ToFp::DispatchIo", Direction::CpToFp),
    call("FPGetData", "ToFp::GetData", Direction::CpToFp),
    call("FPGetData (reply)", "ToCp::Data", Direction::FpToCp),
    call("FPPutData", "ToFp::PutData", Direction::CpToFp),
    call("FPQueueIOComplete", "ToFp::QueueIoComplete", Direction::CpToFp),
    call("LUN Masking FP API", "ToFp::SetLunMask", Direction::CpToFp),
    call("pause LV", "ToFp::PauseLv", Direction::CpToFp),
    call("resume LV", "ToFp::ResumeLv", Direction::CpToFp),
    call("(completion of requests without data)", "ToCp::Done", Direction::FpToCp),
    call("(a host aborted a write in flight)", "ToCp::WriteAborted", Direction::FpToCp),
    call("(CP reaches hosts through the FP: frame to CP)", "ToCp::ControlFrame", Direction::FpToCp),
    call("(CP reaches hosts through the FP: frame from CP)", "ToFp::SendFrame", Direction::CpToFp),
];

impl ToCp {
    /// The Rust name of the message, as listed in [`API_CALLS`].
    pub fn rust_name(&self) -> &'static str {
        match self {
            ToCp::MappingMiss { .. } => "ToCp::MappingMiss",
            ToCp::QueueIo { .. } => "ToCp::QueueIo",
            ToCp::DispatchIoComplete { .. } => "ToCp::DispatchIoComplete",
            ToCp::InvalidationAck { .. } => "ToCp::InvalidationAck",
            ToCp::Discovered { .. } => "ToCp::Discovered",
            ToCp::PendingIos { .. } => "ToCp::PendingIos",
            ToCp::Aborted { .. } => "ToCp::Aborted",
            ToCp::WriteAborted { .. } => "ToCp::WriteAborted",
            ToCp::Statistics { .. } => "ToCp::Statistics",
            ToCp::Data { .. } => "ToCp::Data",
            ToCp::ControlFrame { .. } => "ToCp::ControlFrame",
            ToCp::Done { .. } => "ToCp::Done",
        }
    }
}

impl ToFp {
    /// The Rust name of the message, as listed in [`API_CALLS`].
    pub fn rust_name(&self) -> &'static str {
        match self {
            ToFp::Discover { .. } => "ToFp::Discover",
            ToFp::Expose { .. } => "ToFp::Expose",
            ToFp::Hide { .. } => "ToFp::Hide",
            ToFp::AddMapping { .. } => "ToFp::AddMapping",
            ToFp::ReplaceMapping { .. } => "ToFp::ReplaceMapping",
            ToFp::RemoveMapping { .. } => "ToFp::RemoveMapping",
            ToFp::QueryPendingIos { .. } => "ToFp::QueryPendingIos",
            ToFp::AbortPendingIos { .. } => "ToFp::AbortPendingIos",
            ToFp::QueryStatistics { .. } => "ToFp::QueryStatistics",
            ToFp::DispatchIo(_) => "ToFp::DispatchIo",
            ToFp::GetData { .. } => "ToFp::GetData",
            ToFp::PutData { .. } => "ToFp::PutData",
            ToFp::QueueIoComplete { .. } => "ToFp::QueueIoComplete",
            ToFp::SetLunMask { .. } => "ToFp::SetLunMask",
            ToFp::PauseLv { .. } => "ToFp::PauseLv",
            ToFp::ResumeLv { .. } => "ToFp::ResumeLv",
            ToFp::SendFrame { .. } => "ToFp::SendFrame",
            ToFp::MappingMissReply { .. } => "ToFp::MappingMissReply",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ExchangeId, Wwn};
    use crate::io::{Cdb, IoKind, VDevice};
    use crate::mapping::HostSet;

    fn tag() -> IoTag {
        IoTag { worker: WorkerId(0), xid: ExchangeId(1), incarnation: 0 }
    }

    fn host_io() -> HostIo {
        HostIo {
            initiator: Wwn(1),
            initiator_fc_id: crate::ids::FcId::new(0x010203).unwrap(),
            vdevice: VDevice { exposure: ExposureId(1), lun: crate::ids::Lun(0) },
            lv: None,
            vseg: None,
            kind: IoKind::Read,
            lba: 0,
            blocks: 8,
            data_len: 4096,
            cdb: Cdb::new(&[0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]).unwrap(),
            received: Timestamp(0),
        }
    }

    /// One message of every kind: adding a variant without listing it in [`API_CALLS`]
    /// fails here (the `rust_name` matches are exhaustive).
    #[test]
    fn every_message_is_listed_and_every_listed_call_exists() {
        let req = RequestId(1);
        let reason = QueueReason { cause: crate::fault::FaultCause::NotReadWrite, failure: None };
        let to_cp = [
            ToCp::MappingMiss { io: tag(), request: host_io() },
            ToCp::QueueIo { io: tag(), request: host_io(), reason },
            ToCp::DispatchIoComplete { tag: DispatchTag(1), status: IoStatus::GOOD, data: None },
            ToCp::InvalidationAck { req, worker: WorkerId(0), at: Timestamp(1) },
            ToCp::Discovered { req, devices: vec![] },
            ToCp::PendingIos { req, worker: WorkerId(0), ios: vec![] },
            ToCp::Aborted { req, ios: vec![], dispatches: vec![] },
            ToCp::WriteAborted { request: host_io(), port: PortId(0), abts: Frame::empty() },
            ToCp::Statistics { req, stats: Box::default() },
            ToCp::Data { req, io: tag(), result: Ok(Bytes::new()) },
            ToCp::Done { req, result: Ok(()) },
            ToCp::ControlFrame { port: PortId(0), frame: Frame::empty() },
        ];
        let mask = LunMask { lv: LvId(1), readers: HostSet::All, writers: HostSet::All };
        let to_fp = [
            ToFp::Discover { req },
            ToFp::Expose {
                req,
                exposure: TargetExposure {
                    id: ExposureId(1),
                    port_name: Wwn(1),
                    node_name: Wwn(2),
                    fc_id: crate::ids::FcId::new(1).unwrap(),
                    luns: vec![],
                },
            },
            ToFp::Hide { req, exposure: ExposureId(1) },
            ToFp::AddMapping { req, entry: MappingEntry::Extents { vseg: VsegId(1), extents: vec![] } },
            ToFp::ReplaceMapping { req, entry: MappingEntry::Extents { vseg: VsegId(1), extents: vec![] } },
            ToFp::RemoveMapping { req, key: MappingKey::Vseg(VsegId(1)) },
            ToFp::QueryPendingIos { req, filter: PendingFilter::default() },
            ToFp::AbortPendingIos { req, target: AbortTarget::Io(tag()), status: None },
            ToFp::QueryStatistics { req },
            ToFp::DispatchIo(DownstreamRequest {
                tag: DispatchTag(1),
                device: DeviceId(1),
                op: crate::io::DownstreamOp::Read { lba: 0, blocks: 1 },
            }),
            ToFp::GetData { req, io: tag() },
            ToFp::PutData { req, io: tag(), offset: 0, data: Bytes::new() },
            ToFp::QueueIoComplete { io: tag(), status: IoStatus::GOOD },
            ToFp::SetLunMask { req, mask },
            ToFp::PauseLv { req, lv: LvId(1) },
            ToFp::ResumeLv { req, lv: LvId(1) },
            ToFp::MappingMissReply { io: tag(), verdict: MissVerdict::Queue },
            ToFp::SendFrame { port: PortId(0), frame: TxFrame::whole(Frame::empty()) },
        ];
        let mut names: Vec<&str> = to_cp.iter().map(ToCp::rust_name).collect();
        names.extend(to_fp.iter().map(ToFp::rust_name));
        let mut listed: Vec<&str> = API_CALLS.iter().map(|c| c.rust).collect();
        names.sort_unstable();
        listed.sort_unstable();
        assert_eq!(names, listed);
        for call in API_CALLS {
            let direction =
                if call.rust.starts_with("ToCp::") { Direction::FpToCp } else { Direction::CpToFp };
            assert_eq!(call.direction, direction, "{}", call.rust);
        }
        // The seed's 13 CP->FP calls and 3 FP->CP calls all appear by name.
        for seed in [
            "CpMappingMiss",
            "CpQueueIO",
            "CpDispatchIOComplete",
            "FPDiscover",
            "FPExpose",
            "FPHide",
            "FPAddMapping",
            "FPReplaceMapping",
            "FPRemoveMapping",
            "FPQueryPendingIOs",
            "FPAbortPendingIOs",
            "FPQueryStatistics",
            "FPDispatchIO",
            "FPGetData",
            "FPPutData",
            "FPQueueIOComplete",
        ] {
            assert!(API_CALLS.iter().any(|c| c.seed == seed), "{seed} missing");
        }
    }
}
