//! The simulator's FCP initiator ([`Initiator`]): a host bus adapter at frame level.
//!
//! It logs in to the fabric (FLOGI, PLOGI to the name server, RFT_ID for FCP), discovers the
//! FCP targets (GID_FT, GPN_ID, PLOGI, PRLI as an initiator) and their logical units (REPORT
//! LUNS, standard INQUIRY, READ CAPACITY(16)), then runs SCSI commands as FCP exchanges:
//! READ/WRITE(10) or (16) for block I/O, any CDB for the rest. Write data goes out only as the
//! target asks for it (FCP_XFER_RDY, exactly the burst asked, in frames of at most 2048 bytes
//! with relative offsets); read data is placed by relative offset; FCP_RSP is decoded with its
//! residual and its sense data (fixed or descriptor format).
//!
//! Recovery: an exchange that outlives the I/O timeout is aborted (ABTS) and, once the target
//! answers the abort (BA_ACC or BA_RJT) or a second timeout passes, retried on a fresh OX_ID.
//! CHECK CONDITION with UNIT ATTENTION, ABORTED COMMAND or NOT READY, BUSY and TASK SET FULL
//! are retried too, as is a GOOD status that arrives without all its data; a target that
//! logs the host out (LOGO, or LS_RJT to a command) is logged in again and the commands it
//! dropped are retried. Every request completes once ([`Completion`]) with its final outcome.
//!
//! Sans-I/O: every method takes the virtual time in nanoseconds and returns the whole Ethernet
//! frames to transmit; [`Initiator::next_timer`] says when [`Initiator::on_timer`] must run.
//! No frame can make it panic: what it cannot parse or does not expect is counted
//! ([`InitiatorStats::dropped_frames`]) and dropped.
//!
//! [`nport`] holds what the initiator shares with the disk target ([`crate::disk`]).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use dve_wire::WireEmit;
use dve_wire::bls::BlsRepr;
use dve_wire::ct::{NsAccept, NsRequest};
use dve_wire::els::{ElsRepr, LsRjtRepr, PrliPage, prli_fcp, prli_flags, reject_explanation, reject_reason};
use dve_wire::fc::{FcHeaderRepr, FcId, UNASSIGNED_X_ID, f_ctl, fc_type, r_ctl};
use dve_wire::fcp::{
    FcpCmndRepr, FcpRspRepr, FcpXferRdyRepr, Residual, TaskAttribute, lun_from_index, lun_index,
};
use dve_wire::scsi::cdb::{Cdb, Lba10, Lba16};
use dve_wire::scsi::data::{ReadCapacity16Data, ReportLunsData};
use dve_wire::scsi::inquiry::StandardInquiry;
use dve_wire::scsi::sense::{SenseKey, SenseRepr};
use dve_wire::scsi::status;

use self::nport::{
    ControlReply, ControlRequest, FabricLogin, FabricPhase, FabricStep, Inbound, NPort, Registration,
    fc_header,
};

pub mod nport {
    //! The N_Port plumbing the simulated initiator and disk target share: addressing (FC-MAP
    //! 0x0EFC00 fabric-provided MAC addresses), building and accepting FCoE frames through
    //! `dve-wire`, exchange and sequence ids, the ELS and name-server (CT) requests a port
    //! originates with their deadlines, and the fabric login sequence (FLOGI, PLOGI to the
    //! name server, registrations) with its retries.

    use std::collections::{BTreeMap, BTreeSet};

    use dve_wire::WireEmit;
    use dve_wire::ct::{self, CtHeaderRepr, NsAccept, NsRequest};
    use dve_wire::els::{ElsRepr, LoginParams};
    use dve_wire::emit::Concat;
    use dve_wire::ethernet::{ETHERTYPE_FCOE, EthernetRepr, MacAddr};
    use dve_wire::fc::{FcHeaderRepr, FcId, UNASSIGNED_X_ID, f_ctl, fc_type, r_ctl};
    use dve_wire::fcoe::{Eof, FcoeRepr, Sof};
    use dve_wire::stack::{emit_fcoe_frame, fcoe_frame_len, parse_fcoe_frame};

    /// The FC-MAP of fabric-provided MAC addresses (the FC-BB-5 default).
    pub const FC_MAP: u32 = 0x0E_FC00;
    /// The MAC address that frames to the fabric's well-known addresses (0xFFFFF0 and up) go to.
    pub const FABRIC_MAC: MacAddr = MacAddr([0x0e, 0xfc, 0x00, 0xff, 0xff, 0xfe]);
    /// Largest data payload a port puts in one frame.
    pub const MAX_DATA_PAYLOAD: usize = 2048;
    /// Smallest receive data field size honoured from a peer's login parameters.
    pub const MIN_DATA_PAYLOAD: usize = 256;
    /// F_CTL of a one-frame request opening an exchange: first and only frame of the first
    /// sequence, sequence initiative handed to the responder.
    pub const F_CTL_REQUEST: u32 = f_ctl::FIRST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
    /// F_CTL of a one-frame reply from the responder that ends the exchange (LS_ACC, LS_RJT,
    /// CT accept or reject, BA_ACC).
    pub const F_CTL_FINAL_REPLY: u32 = f_ctl::EXCHANGE_CONTEXT | f_ctl::LAST_SEQUENCE | f_ctl::END_SEQUENCE;

    /// The destination MAC address of a frame to `d_id`: the fabric's MAC for its well-known
    /// addresses, otherwise the N_Port's fabric-provided MAC (FC-MAP, then the FC_ID).
    pub fn mac_for(d_id: FcId) -> MacAddr {
        if d_id.0 >= 0xFF_FFF0 { FABRIC_MAC } else { MacAddr::fpma(FC_MAP, d_id) }
    }

    /// The data payload size to use towards a peer that advertised `rcv_data_field_size`.
    pub fn data_payload_for(rcv_data_field_size: u16) -> usize {
        usize::from(rcv_data_field_size).clamp(MIN_DATA_PAYLOAD, MAX_DATA_PAYLOAD)
    }

    /// An FC header with no sequence position or parameter yet; the source address is
    /// filled in by [`NPort::emit`].
    pub fn fc_header(d_id: FcId, r_ctl: u8, fc_type: u8, f_ctl: u32, ox_id: u16, rx_id: u16) -> FcHeaderRepr {
        FcHeaderRepr {
            r_ctl,
            d_id,
            cs_ctl: 0,
            s_id: FcId::UNASSIGNED,
            fc_type,
            f_ctl,
            seq_id: 0,
            df_ctl: 0,
            seq_cnt: 0,
            ox_id,
            rx_id,
            parameter: 0,
        }
    }

    /// Frame and byte counters of one port.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct FrameCounters {
        /// Frames received.
        pub frames_in: u64,
        /// Bytes received (whole Ethernet frames).
        pub bytes_in: u64,
        /// Frames sent.
        pub frames_out: u64,
        /// Bytes sent (whole Ethernet frames).
        pub bytes_out: u64,
        /// Frames received and dropped: malformed, not addressed to this port, or unexpected.
        pub dropped_frames: u64,
        /// Frames that could not be built (a bug if ever non-zero).
        pub emit_errors: u64,
    }

    /// A received frame that passed the checks of [`NPort::accept`].
    #[derive(Debug, Clone, Copy)]
    pub struct Inbound<'a> {
        /// The FC header.
        pub header: FcHeaderRepr,
        /// The FC payload, fill bytes removed.
        pub payload: &'a [u8],
    }

    /// Which protocol a control request used, so its reply can be decoded.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ControlKind {
        /// An extended link service request.
        Els,
        /// A name-server request with this CT command code.
        NameServer(u16),
    }

    /// An ELS or name-server request a port sent and awaits the reply of.
    #[derive(Debug, Clone)]
    pub struct ControlRequest<P> {
        /// What the owner sent it for.
        pub purpose: P,
        /// Where it went.
        pub d_id: FcId,
        /// ELS or CT.
        pub kind: ControlKind,
        /// When it times out.
        pub deadline: u64,
    }

    /// The decoded reply to a control request.
    #[derive(Debug, Clone, Copy)]
    pub enum ControlReply<'a> {
        /// LS_ACC or LS_RJT.
        Els(ElsRepr),
        /// A name-server accept.
        NsAccept(NsAccept<'a>),
        /// A name-server reject.
        NsReject {
            /// Reason code.
            reason: u8,
            /// Reason code explanation.
            explanation: u8,
        },
    }

    /// One N_Port's addressing, frame building and outstanding control requests. `P` is what
    /// its owner records about each request.
    #[derive(Debug)]
    pub struct NPort<P> {
        mac: MacAddr,
        port_name: u64,
        node_name: u64,
        fc_id: Option<FcId>,
        next_ox_id: u16,
        next_rx_id: u16,
        next_seq_id: u8,
        ox_ids_in_use: BTreeSet<u16>,
        requests: BTreeMap<u16, ControlRequest<P>>,
        counters: FrameCounters,
    }

    impl<P> NPort<P> {
        /// A port with its burned-in MAC address and names, not logged in.
        pub fn new(mac: [u8; 6], port_name: u64, node_name: u64) -> NPort<P> {
            NPort {
                mac: MacAddr(mac),
                port_name,
                node_name,
                fc_id: None,
                next_ox_id: 1,
                next_rx_id: 1,
                next_seq_id: 0,
                ox_ids_in_use: BTreeSet::new(),
                requests: BTreeMap::new(),
                counters: FrameCounters::default(),
            }
        }

        /// The N_Port ID the fabric assigned, if logged in.
        pub fn fc_id(&self) -> Option<FcId> {
            self.fc_id
        }

        /// Sets (or clears) the N_Port ID.
        pub fn set_fc_id(&mut self, fc_id: Option<FcId>) {
            self.fc_id = fc_id;
        }

        /// The port name (WWPN).
        pub fn port_name(&self) -> u64 {
            self.port_name
        }

        /// The node name (WWNN).
        pub fn node_name(&self) -> u64 {
            self.node_name
        }

        /// The service parameters this port sends in FLOGI, PLOGI and their accepts.
        pub fn login_params(&self) -> LoginParams {
            LoginParams::n_port(self.port_name, self.node_name)
        }

        /// The frame counters.
        pub fn counters(&self) -> FrameCounters {
            self.counters
        }

        /// Counts a received frame as dropped.
        pub fn count_dropped(&mut self) {
            self.counters.dropped_frames += 1;
        }

        /// A SEQ_ID for a new sequence this port initiates.
        pub fn next_seq_id(&mut self) -> u8 {
            let id = self.next_seq_id;
            self.next_seq_id = id.wrapping_add(1);
            id
        }

        /// Allocates an OX_ID no exchange of this port uses (wrapping, never 0xFFFF); `None` if
        /// every one is in use. Free it with [`NPort::release_ox_id`].
        pub fn allocate_ox_id(&mut self) -> Option<u16> {
            for _ in 0..=u32::from(u16::MAX) {
                let candidate = self.next_ox_id;
                self.next_ox_id = candidate.wrapping_add(1);
                if candidate != UNASSIGNED_X_ID && self.ox_ids_in_use.insert(candidate) {
                    return Some(candidate);
                }
            }
            None
        }

        /// Frees an OX_ID.
        pub fn release_ox_id(&mut self, ox_id: u16) {
            self.ox_ids_in_use.remove(&ox_id);
        }

        /// An RX_ID for a one-frame reply whose exchange the port does not keep.
        pub fn next_reply_rx_id(&mut self) -> u16 {
            let id = self.next_rx_id;
            self.next_rx_id = if id >= 0xFFFE { 1 } else { id + 1 };
            id
        }

        /// Builds a whole FCoE frame: the source address is the port's FC_ID (zero before
        /// fabric login), the Ethernet source its fabric-provided MAC (its own MAC before
        /// login), SOF i3 for a sequence's first frame (SEQ_CNT 0) and n3 after, EOF t on the
        /// frame that ends a sequence and n otherwise.
        pub fn emit<W: WireEmit + ?Sized>(&mut self, header: &FcHeaderRepr, payload: &W) -> Option<Vec<u8>> {
            let header = FcHeaderRepr { s_id: self.fc_id.unwrap_or(FcId::UNASSIGNED), ..*header };
            let ethernet = EthernetRepr {
                dst_addr: mac_for(header.d_id),
                src_addr: self.fc_id.map_or(self.mac, |id| MacAddr::fpma(FC_MAP, id)),
                vlan: None,
                ethertype: ETHERTYPE_FCOE,
            };
            let sof = if header.seq_cnt == 0 { Sof::I3 } else { Sof::N3 };
            let eof = if header.is_end_of_sequence() { Eof::T } else { Eof::N };
            let mut buf =
                crate::engine::frame_buffer_to_overwrite(fcoe_frame_len(&ethernet, payload.buffer_len()));
            match emit_fcoe_frame(&mut buf, &ethernet, &FcoeRepr { sof, eof }, &header, payload) {
                Ok(len) => {
                    buf.truncate(len);
                    self.counters.frames_out += 1;
                    self.counters.bytes_out += len as u64;
                    Some(buf)
                }
                Err(_) => {
                    self.counters.emit_errors += 1;
                    None
                }
            }
        }

        /// Checks a received Ethernet frame (FCoE, CRC, FC header) and that it is addressed to
        /// this port once it has an FC_ID; counts it, and counts it dropped if it fails.
        pub fn accept<'a>(&mut self, frame: &'a [u8]) -> Option<Inbound<'a>> {
            self.counters.frames_in += 1;
            self.counters.bytes_in += frame.len() as u64;
            let Ok(view) = parse_fcoe_frame(frame) else {
                self.count_dropped();
                return None;
            };
            if self.fc_id.is_some_and(|own| own != view.header.d_id) {
                self.count_dropped();
                return None;
            }
            Some(Inbound { header: view.header, payload: view.payload })
        }

        /// Sends an ELS request on a new exchange and records it until its reply or `deadline`.
        pub fn send_els(&mut self, deadline: u64, d_id: FcId, els: &ElsRepr, purpose: P) -> Option<Vec<u8>> {
            let ox_id = self.allocate_ox_id()?;
            let header = FcHeaderRepr {
                seq_id: self.next_seq_id(),
                ..fc_header(d_id, r_ctl::ELS_REQUEST, fc_type::ELS, F_CTL_REQUEST, ox_id, UNASSIGNED_X_ID)
            };
            self.requests.insert(ox_id, ControlRequest { purpose, d_id, kind: ControlKind::Els, deadline });
            self.emit(&header, els)
        }

        /// Sends a name-server request (CT) to the directory server on a new exchange and
        /// records it until its reply or `deadline`.
        pub fn send_name_server(
            &mut self,
            deadline: u64,
            request: &NsRequest,
            purpose: P,
        ) -> Option<Vec<u8>> {
            let ox_id = self.allocate_ox_id()?;
            let d_id = FcId::DIRECTORY;
            let header = FcHeaderRepr {
                seq_id: self.next_seq_id(),
                ..fc_header(
                    d_id,
                    r_ctl::UNSOLICITED_CONTROL,
                    fc_type::CT,
                    F_CTL_REQUEST,
                    ox_id,
                    UNASSIGNED_X_ID,
                )
            };
            let command = request.command();
            let kind = ControlKind::NameServer(command);
            self.requests.insert(ox_id, ControlRequest { purpose, d_id, kind, deadline });
            self.emit(&header, &Concat(CtHeaderRepr::name_server_request(command), request))
        }

        /// Sends the one-frame reply to an ELS request a peer sent.
        pub fn reply_els(&mut self, request: &FcHeaderRepr, reply: &ElsRepr) -> Option<Vec<u8>> {
            let rx_id = self.next_reply_rx_id();
            let header = FcHeaderRepr {
                seq_id: self.next_seq_id(),
                ..fc_header(
                    request.s_id,
                    r_ctl::ELS_REPLY,
                    fc_type::ELS,
                    F_CTL_FINAL_REPLY,
                    request.ox_id,
                    rx_id,
                )
            };
            self.emit(&header, reply)
        }

        /// If `inbound` is the well-formed reply to an outstanding control request (same
        /// OX_ID, from the address it went to, sent by the responder, the right R_CTL and
        /// TYPE), removes the request and returns it with the decoded reply.
        pub fn take_reply<'a>(
            &mut self,
            inbound: &Inbound<'a>,
        ) -> Option<(ControlRequest<P>, ControlReply<'a>)> {
            let h = &inbound.header;
            let request = self.requests.get(&h.ox_id)?;
            if h.s_id != request.d_id || !h.is_from_responder() {
                return None;
            }
            let reply = match (request.kind, h.fc_type, h.r_ctl) {
                (ControlKind::Els, fc_type::ELS, r_ctl::ELS_REPLY) => {
                    ElsRepr::parse(inbound.payload).ok().filter(ElsRepr::is_reply).map(ControlReply::Els)
                }
                (ControlKind::NameServer(command), fc_type::CT, r_ctl::SOLICITED_CONTROL) => {
                    parse_name_server_reply(command, inbound.payload)
                }
                _ => None,
            }?;
            let request = self.requests.remove(&h.ox_id)?;
            self.release_ox_id(h.ox_id);
            Some((request, reply))
        }

        /// Removes and returns the control requests whose deadline is at or before `now`.
        pub fn expire(&mut self, now: u64) -> Vec<ControlRequest<P>> {
            let due: Vec<u16> =
                self.requests.iter().filter(|(_, r)| r.deadline <= now).map(|(ox, _)| *ox).collect();
            let mut expired = Vec::with_capacity(due.len());
            for ox_id in due {
                if let Some(request) = self.requests.remove(&ox_id) {
                    self.release_ox_id(ox_id);
                    expired.push(request);
                }
            }
            expired
        }

        /// The earliest control request deadline.
        pub fn next_deadline(&self) -> Option<u64> {
            self.requests.values().map(|r| r.deadline).min()
        }

        /// The outstanding control requests.
        pub fn requests(&self) -> impl Iterator<Item = &ControlRequest<P>> {
            self.requests.values()
        }

        /// Forgets every outstanding control request (their late replies will be dropped).
        pub fn clear_requests(&mut self) {
            for ox_id in self.requests.keys() {
                self.ox_ids_in_use.remove(ox_id);
            }
            self.requests.clear();
        }
    }

    fn parse_name_server_reply(command: u16, payload: &[u8]) -> Option<ControlReply<'_>> {
        let (header, body) = CtHeaderRepr::parse(payload).ok()?;
        if !header.is_name_server() {
            return None;
        }
        match header.command {
            ct::code::ACCEPT => NsAccept::parse(command, body).ok().map(ControlReply::NsAccept),
            ct::code::REJECT => {
                Some(ControlReply::NsReject { reason: header.reason, explanation: header.explanation })
            }
            _ => None,
        }
    }

    /// A registration a port makes with the name server once logged in to it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Registration {
        /// RFT_ID with the FCP FC-4 type.
        Fc4TypeFcp,
        /// RPN_ID with the port name.
        PortName,
        /// RNN_ID with the node name.
        NodeName,
    }

    impl Registration {
        fn request(self, port_id: FcId, port_name: u64, node_name: u64) -> NsRequest {
            match self {
                Registration::Fc4TypeFcp => {
                    NsRequest::RftId { port_id, fc4_types: ct::fc4_types_with([0; 32], fc_type::FCP) }
                }
                Registration::PortName => NsRequest::RpnId { port_id, port_name },
                Registration::NodeName => NsRequest::RnnId { port_id, node_name },
            }
        }
    }

    /// A step of fabric login, recorded with the request that performs it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FabricStep {
        /// FLOGI to the fabric login server.
        Flogi,
        /// PLOGI to the directory server.
        NameServerLogin,
        /// The registration at this index.
        Register(usize),
    }

    /// Where fabric login stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FabricPhase {
        /// Not started, or stopped (link down).
        Offline,
        /// FLOGI, name-server login or registrations in progress.
        LoggingIn,
        /// Logged in and registered.
        Online,
    }

    /// What a fabric login reply led to.
    #[derive(Debug, Default)]
    pub struct FabricProgress {
        /// Frames to send.
        pub frames: Vec<Vec<u8>>,
        /// Login just completed.
        pub online: bool,
    }

    /// The fabric login sequence: FLOGI, PLOGI to the name server, then each registration
    /// in turn. A rejected FLOGI or name-server login starts over from FLOGI after a pause;
    /// a timed-out request is sent again; a rejected registration is skipped. It never gives
    /// up, as an HBA keeps trying to log in.
    #[derive(Debug)]
    pub struct FabricLogin {
        registrations: Vec<Registration>,
        phase: FabricPhase,
        restart_at: Option<u64>,
        timeout_ns: u64,
        flogis: u64,
    }

    impl FabricLogin {
        /// A login that makes `registrations` and waits `timeout_ns` for each reply.
        pub fn new(registrations: Vec<Registration>, timeout_ns: u64) -> FabricLogin {
            FabricLogin {
                registrations,
                phase: FabricPhase::Offline,
                restart_at: None,
                timeout_ns: timeout_ns.max(1),
                flogis: 0,
            }
        }

        /// Where login stands.
        pub fn phase(&self) -> FabricPhase {
            self.phase
        }

        /// FLOGIs sent so far.
        pub fn flogis(&self) -> u64 {
            self.flogis
        }

        /// Starts (or restarts) login with a FLOGI.
        pub fn start<P>(&mut self, now: u64, port: &mut NPort<P>, wrap: fn(FabricStep) -> P) -> Vec<Vec<u8>> {
            self.phase = FabricPhase::LoggingIn;
            self.restart_at = None;
            self.send(now, port, FabricStep::Flogi, wrap)
        }

        /// Stops login (link down); the caller clears the port's requests and address.
        pub fn stop(&mut self) {
            self.phase = FabricPhase::Offline;
            self.restart_at = None;
        }

        fn send<P>(
            &mut self,
            now: u64,
            port: &mut NPort<P>,
            step: FabricStep,
            wrap: fn(FabricStep) -> P,
        ) -> Vec<Vec<u8>> {
            let deadline = now.saturating_add(self.timeout_ns);
            let frame = match step {
                FabricStep::Flogi => {
                    self.flogis += 1;
                    port.set_fc_id(None);
                    let flogi = ElsRepr::Flogi(port.login_params());
                    port.send_els(deadline, FcId::FABRIC_LOGIN, &flogi, wrap(step))
                }
                FabricStep::NameServerLogin => {
                    let plogi = ElsRepr::Plogi(port.login_params());
                    port.send_els(deadline, FcId::DIRECTORY, &plogi, wrap(step))
                }
                FabricStep::Register(index) => {
                    let (Some(own), Some(registration)) = (port.fc_id(), self.registrations.get(index))
                    else {
                        return Vec::new();
                    };
                    let request = registration.request(own, port.port_name(), port.node_name());
                    port.send_name_server(deadline, &request, wrap(step))
                }
            };
            frame.into_iter().collect()
        }

        /// The next step after `step` succeeded, or the end of login.
        fn advance<P>(
            &mut self,
            now: u64,
            port: &mut NPort<P>,
            next: usize,
            wrap: fn(FabricStep) -> P,
        ) -> FabricProgress {
            if next < self.registrations.len() {
                FabricProgress {
                    frames: self.send(now, port, FabricStep::Register(next), wrap),
                    online: false,
                }
            } else {
                self.phase = FabricPhase::Online;
                FabricProgress { frames: Vec::new(), online: true }
            }
        }

        /// Handles the reply to a login step. `assigned` is the D_ID of the reply frame: for
        /// FLOGI's accept, the N_Port ID the fabric assigned.
        pub fn on_reply<P>(
            &mut self,
            now: u64,
            port: &mut NPort<P>,
            step: FabricStep,
            assigned: FcId,
            reply: &ControlReply<'_>,
            wrap: fn(FabricStep) -> P,
        ) -> FabricProgress {
            if self.phase != FabricPhase::LoggingIn {
                return FabricProgress::default();
            }
            let accepted = matches!(reply, ControlReply::Els(ElsRepr::AccLogin(_)));
            match step {
                FabricStep::Flogi if accepted && assigned != FcId::UNASSIGNED && assigned.0 < 0xFF_FFF0 => {
                    port.set_fc_id(Some(assigned));
                    FabricProgress {
                        frames: self.send(now, port, FabricStep::NameServerLogin, wrap),
                        online: false,
                    }
                }
                FabricStep::NameServerLogin if accepted => self.advance(now, port, 0, wrap),
                FabricStep::Flogi | FabricStep::NameServerLogin => {
                    self.restart_at = Some(now.saturating_add(self.timeout_ns));
                    FabricProgress::default()
                }
                FabricStep::Register(index) => self.advance(now, port, index + 1, wrap),
            }
        }

        /// Handles a login request that got no reply: sends it again.
        pub fn on_timeout<P>(
            &mut self,
            now: u64,
            port: &mut NPort<P>,
            step: FabricStep,
            wrap: fn(FabricStep) -> P,
        ) -> Vec<Vec<u8>> {
            if self.phase != FabricPhase::LoggingIn {
                return Vec::new();
            }
            self.send(now, port, step, wrap)
        }

        /// When login restarts after a rejection.
        pub fn next_timer(&self) -> Option<u64> {
            self.restart_at
        }

        /// Restarts login if its pause after a rejection is over.
        pub fn on_timer<P>(
            &mut self,
            now: u64,
            port: &mut NPort<P>,
            wrap: fn(FabricStep) -> P,
        ) -> Vec<Vec<u8>> {
            match self.restart_at {
                Some(at) if at <= now && self.phase == FabricPhase::LoggingIn => {
                    self.restart_at = None;
                    self.send(now, port, FabricStep::Flogi, wrap)
                }
                _ => Vec::new(),
            }
        }
    }
}

/// Default time an exchange may take before the initiator aborts it (virtual ns).
pub const DEFAULT_IO_TIMEOUT_NS: u64 = 200_000_000;
/// Default number of retries of one request.
pub const DEFAULT_MAX_RETRIES: u32 = 5;
/// Pause before retrying a command the target answered BUSY, TASK SET FULL or NOT READY.
pub const BUSY_RETRY_DELAY_NS: u64 = 100_000;
/// Largest LUN the initiator addresses (single-level flat addressing).
pub const MAX_LUN: u16 = 16383;
/// Most LUNs of one target the initiator scans.
const MAX_SCANNED_LUNS: usize = 512;
/// Allocation lengths of the discovery commands.
const REPORT_LUNS_ALLOCATION: u32 = 4096;
const INQUIRY_ALLOCATION: u16 = 96;
const READ_CAPACITY_16_ALLOCATION: u32 = 32;
/// Data in reserved for at an exchange's start at most (more grows as it arrives).
const MAX_DATA_IN_RESERVE: usize = 1 << 20;
/// RSCN's ELS command code (not decoded by `dve-wire`; only the code is looked at).
const ELS_RSCN: u8 = 0x61;

/// How an [`Initiator`] is set up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InitiatorConfig {
    /// Name in reports.
    pub name: String,
    /// World-wide port name.
    pub port_name: u64,
    /// World-wide node name.
    pub node_name: u64,
    /// Burned-in MAC address, used until fabric login assigns a fabric-provided one.
    pub mac: [u8; 6],
    /// Time an exchange (or a login request) may take before it is aborted and retried.
    pub io_timeout_ns: u64,
    /// Retries of one request (and failed logins of one target) before giving up.
    pub max_retries: u32,
}

impl InitiatorConfig {
    /// A configuration with the default timeout and retry count.
    pub fn new(name: impl Into<String>, port_name: u64, node_name: u64, mac: [u8; 6]) -> InitiatorConfig {
        InitiatorConfig {
            name: name.into(),
            port_name,
            node_name,
            mac,
            io_timeout_ns: DEFAULT_IO_TIMEOUT_NS,
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }
}

/// Identifies a submitted request in its [`Completion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// What a request does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostOp {
    /// Read `blocks` blocks at `lba` (READ(10), or READ(16) when LBA or length need it).
    Read {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
    },
    /// Write `data` (at least one whole block) at `lba` (WRITE(10) or WRITE(16)).
    Write {
        /// First block.
        lba: u64,
        /// The data, a whole number of blocks.
        data: Bytes,
    },
    /// Any SCSI command: the CDB (1 to 16 bytes, or more in multiples of 4), the data to
    /// send, the number of bytes expected back. At most one direction carries data.
    Command {
        /// The CDB.
        cdb: Vec<u8>,
        /// Data sent to the target (empty: none).
        data_out: Vec<u8>,
        /// Bytes expected from the target (0: none).
        data_in_len: u32,
    },
}

/// A request to one logical unit of one discovered target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRequest {
    /// The target's port name (WWPN).
    pub target: u64,
    /// The logical unit.
    pub lun: u16,
    /// What to do.
    pub op: HostOp,
}

/// Why [`Initiator::submit`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Fabric login has not completed.
    #[error("the initiator is not logged in to the fabric")]
    Offline,
    /// No target with this port name has been discovered.
    #[error("no target with port name {0:#018x} was discovered")]
    UnknownTarget(u64),
    /// A read or write to a LUN whose block size discovery has not learnt.
    #[error("LUN {lun} of target {target:#018x} was not discovered, its block size is unknown")]
    UnknownLun {
        /// The target.
        target: u64,
        /// The LUN.
        lun: u16,
    },
    /// The LUN does not fit flat addressing.
    #[error("LUN {0} is beyond flat addressing (0..=16383)")]
    InvalidLun(u16),
    /// Write data that is empty or not a whole number of blocks.
    #[error("write data of {len} bytes is not a whole, non-zero number of {block_size}-byte blocks")]
    NotWholeBlocks {
        /// Bytes given.
        len: usize,
        /// The LUN's block size.
        block_size: u32,
    },
    /// A transfer longer than FCP_DL can say (or than a CDB can address).
    #[error("a transfer of {0} bytes does not fit the command")]
    TooLarge(u64),
    /// A CDB FCP cannot carry.
    #[error("a CDB of {0} bytes cannot be carried (1 to 16, or 16 plus a multiple of 4 up to 268)")]
    BadCdbLength(usize),
    /// Data in both directions.
    #[error("bidirectional commands are not supported")]
    Bidirectional,
}

/// The SCSI outcome of a request: the last status the target returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoOutcome {
    /// SCSI status (see `dve_wire::scsi::status`).
    pub status: u8,
    /// Sense key, ASC and ASCQ, when the response carried sense data.
    pub sense: Option<(u8, u8, u8)>,
    /// Data read (empty for writes and commands without data in).
    pub data: Vec<u8>,
    /// The FCP residual: positive for an underrun (bytes not transferred), negative for an
    /// overrun (bytes the command wanted beyond FCP_DL), 0 for neither.
    pub residual: i64,
}

impl IoOutcome {
    /// Whether the status is GOOD.
    pub fn is_good(&self) -> bool {
        self.status == status::GOOD
    }
}

/// Why a request failed without a final SCSI status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IoFailure {
    /// Every attempt timed out and was aborted.
    #[error("timed out and aborted, retries exhausted")]
    TimedOut,
    /// The link went down (or the fabric logged the initiator out).
    #[error("the link went down")]
    LinkDown,
    /// The target refused login (PLOGI/PRLI) or did not answer it, too often.
    #[error("the target could not be logged in")]
    LoginFailed,
    /// The target left the fabric or is not an FCP target.
    #[error("the target is gone from the fabric or is not an FCP target")]
    TargetGone,
    /// The target rejected the exchange (LS_RJT or LOGO) every time.
    #[error("the target rejected the exchange, retries exhausted")]
    Rejected,
    /// The target aborted the exchange (ABTS) every time.
    #[error("the target aborted the exchange, retries exhausted")]
    AbortedByTarget,
    /// FCP_RSP carried a failure response code (e.g. invalid FCP_CMND fields).
    #[error("FCP_RSP response code {0:#04x}")]
    ResponseCode(u8),
    /// GOOD status while data frames were missing, every time.
    #[error("GOOD status but {received} of {expected} data bytes arrived, retries exhausted")]
    DataUnderrun {
        /// Bytes the status implied.
        expected: u64,
        /// Bytes that arrived.
        received: u64,
    },
}

/// A finished request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The id [`Initiator::submit`] returned.
    pub id: RequestId,
    /// When it was first submitted.
    pub submitted: u64,
    /// When it completed.
    pub completed: u64,
    /// How many times it was retried.
    pub retries: u32,
    /// The final outcome.
    pub result: Result<IoOutcome, IoFailure>,
}

impl Completion {
    /// Completion time minus first submission time.
    pub fn latency(&self) -> u64 {
        self.completed.saturating_sub(self.submitted)
    }
}

/// A logical unit found by discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredLun {
    /// The LUN.
    pub lun: u16,
    /// Capacity in blocks (READ CAPACITY(16)).
    pub blocks: u64,
    /// Block length in bytes.
    pub block_size: u32,
    /// T10 vendor identification (INQUIRY), trimmed.
    pub vendor: String,
    /// Product identification, trimmed.
    pub product: String,
    /// Product revision level, trimmed.
    pub revision: String,
}

/// An FCP target found by discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredTarget {
    /// Its port name.
    pub port_name: u64,
    /// Its node name (from its PLOGI accept).
    pub node_name: u64,
    /// Its N_Port ID.
    pub fc_id: u32,
    /// Logged in (PLOGI and PRLI accepted) right now.
    pub online: bool,
    /// Its ready logical units, by LUN.
    pub luns: Vec<DiscoveredLun>,
}

/// Counters of an initiator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InitiatorStats {
    /// Frames received.
    pub frames_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Received frames dropped as malformed or unexpected.
    pub dropped_frames: u64,
    /// Requests submitted.
    pub submitted: u64,
    /// Requests completed (successfully or not).
    pub completed: u64,
    /// Completions with an [`IoFailure`].
    pub failed: u64,
    /// Retries of requests (after retryable statuses, aborts, logouts).
    pub retries: u64,
    /// Exchange timeouts (a second timeout of the same exchange while aborting counts again).
    pub timeouts: u64,
    /// ABTS sent.
    pub aborts: u64,
    /// Target logins completed (PRLI accepted).
    pub target_logins: u64,
    /// Logouts by targets (LOGO, or LS_RJT to a command).
    pub target_logouts: u64,
    /// FLOGIs sent.
    pub fabric_logins: u64,
}

/// A SCSI command as it goes on the wire.
#[derive(Debug, Clone)]
struct ScsiCommand {
    /// 16 bytes, or more in multiples of 4.
    cdb: CdbBytes,
    data_out: Bytes,
    data_in_len: u32,
}

impl ScsiCommand {
    fn fcp_dl(&self) -> u32 {
        if self.data_out.is_empty() { self.data_in_len } else { self.data_out.len() as u32 }
    }

    fn from_cdb(cdb: Cdb, data_in_len: u32) -> ScsiCommand {
        let mut bytes = [0u8; 16];
        // Every CDB the initiator builds itself fits 16 bytes.
        let _ = cdb.emit(&mut bytes);
        ScsiCommand { cdb: CdbBytes::Short(bytes), data_out: Bytes::new(), data_in_len }
    }
}

/// The bytes of a CDB: 16 of them held inline (every read and write, so that a request
/// allocates nothing for its CDB), longer ones on the heap.
#[derive(Debug, Clone)]
enum CdbBytes {
    Short([u8; 16]),
    Long(Vec<u8>),
}

impl CdbBytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            CdbBytes::Short(bytes) => bytes,
            CdbBytes::Long(bytes) => bytes,
        }
    }
}

/// Who a request is for.
#[derive(Debug, Clone)]
enum Origin {
    /// The simulator, through [`Initiator::submit`].
    User(RequestId),
    /// LUN discovery.
    Discovery(DiscoveryStep),
}

/// The discovery command a request carries.
#[derive(Debug, Clone)]
enum DiscoveryStep {
    ReportLuns,
    Inquiry,
    ReadCapacity(StandardInquiry),
}

/// Where a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestState {
    /// Waiting for its target to be logged in.
    WaitingLogin,
    /// Waiting to be retried at this time.
    RetryAt(u64),
    /// On the wire as the exchange with this OX_ID.
    InFlight(u16),
}

#[derive(Debug)]
struct PendingRequest {
    origin: Origin,
    port: usize,
    lun: u16,
    command: ScsiCommand,
    submitted: u64,
    retries: u32,
    state: RequestState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExchangePhase {
    Open,
    /// ABTS sent, waiting for BA_ACC/BA_RJT.
    Aborting,
}

/// An FCP exchange this initiator originated, keyed by its OX_ID.
#[derive(Debug)]
struct ScsiExchange {
    request: u64,
    port: usize,
    rx_id: u16,
    phase: ExchangePhase,
    deadline: u64,
    data_in: Vec<u8>,
    bytes_in: u64,
}

/// What the initiator records about a control request it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostControl {
    Fabric(FabricStep),
    GidFt { attempt: u32 },
    GpnId { port: usize, attempt: u32 },
    Plogi { port: usize },
    Prli { port: usize },
}

/// The initiator's session with a remote N_Port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortState {
    /// GPN_ID sent.
    Naming,
    LoggedOut,
    PlogiSent,
    PrliSent,
    LoggedIn,
    /// Logged in, but PRLI says it is no FCP target.
    NotTarget,
    /// Login failed too often; retried only when a request needs it.
    Failed,
    /// No longer listed by the name server (or superseded by another record).
    Gone,
}

#[derive(Debug)]
struct RemotePort {
    fc_id: FcId,
    port_name: Option<u64>,
    node_name: u64,
    state: PortState,
    login_failures: u32,
    relogin_at: Option<u64>,
    needs_scan: bool,
    target: Option<usize>,
    max_payload: usize,
}

impl RemotePort {
    fn new(fc_id: FcId) -> RemotePort {
        RemotePort {
            fc_id,
            port_name: None,
            node_name: 0,
            state: PortState::Naming,
            login_failures: 0,
            relogin_at: None,
            needs_scan: true,
            target: None,
            max_payload: nport::MAX_DATA_PAYLOAD,
        }
    }

    /// Whether nothing about this port is in progress.
    fn is_settled(&self) -> bool {
        match self.state {
            PortState::LoggedIn | PortState::NotTarget | PortState::Failed | PortState::Gone => true,
            PortState::LoggedOut => self.relogin_at.is_none(),
            PortState::Naming | PortState::PlogiSent | PortState::PrliSent => false,
        }
    }
}

/// How a finished exchange turns out for its request.
#[derive(Debug)]
enum Verdict {
    /// Complete the request with this.
    Done(Result<IoOutcome, IoFailure>),
    /// Retry after `delay` ns, or complete with `exhausted` once retries run out.
    Retry { delay: u64, exhausted: Result<IoOutcome, IoFailure> },
}

/// The FCP initiator (see the module documentation).
#[derive(Debug)]
pub struct Initiator {
    config: InitiatorConfig,
    port: NPort<HostControl>,
    fabric: FabricLogin,
    remote: Vec<RemotePort>,
    targets: Vec<DiscoveredTarget>,
    /// For each entry of `targets`, its index in `remote`.
    target_ports: Vec<usize>,
    requests: BTreeMap<u64, PendingRequest>,
    exchanges: BTreeMap<u16, ScsiExchange>,
    completions: VecDeque<Completion>,
    next_request: u64,
    discovery_started: bool,
    stats: InitiatorStats,
    /// Buffers of read data handed back by the caller ([`Initiator::recycle_read_buffer`]),
    /// for the next reads' data.
    spare_read_buffers: Vec<Vec<u8>>,
    /// Bumped by every call that may change what [`Initiator::is_ready`] and
    /// [`Initiator::next_timer`] say (see [`Initiator::generation`]).
    generation: u64,
}

/// Read data buffers an initiator keeps for reuse at most.
const SPARE_READ_BUFFERS: usize = 16;

impl Initiator {
    /// An initiator that has not started.
    pub fn new(config: InitiatorConfig) -> Initiator {
        let port = NPort::new(config.mac, config.port_name, config.node_name);
        let fabric = FabricLogin::new(vec![Registration::Fc4TypeFcp], config.io_timeout_ns);
        Initiator {
            config,
            port,
            fabric,
            remote: Vec::new(),
            targets: Vec::new(),
            target_ports: Vec::new(),
            requests: BTreeMap::new(),
            exchanges: BTreeMap::new(),
            completions: VecDeque::new(),
            next_request: 0,
            discovery_started: false,
            stats: InitiatorStats::default(),
            spare_read_buffers: Vec::new(),
            generation: 0,
        }
    }

    /// Gives back the data of a completed read ([`IoOutcome::data`]) once the caller is done
    /// with it: a later read's data goes there instead of into a fresh allocation.
    pub fn recycle_read_buffer(&mut self, buffer: Vec<u8>) {
        if buffer.capacity() > 0
            && buffer.capacity() <= MAX_DATA_IN_RESERVE
            && self.spare_read_buffers.len() < SPARE_READ_BUFFERS
        {
            self.spare_read_buffers.push(buffer);
        }
    }

    /// The configuration.
    pub fn config(&self) -> &InitiatorConfig {
        &self.config
    }

    /// The N_Port ID the fabric assigned, once logged in.
    pub fn fc_id(&self) -> Option<u32> {
        self.port.fc_id().map(|id| id.0)
    }

    /// Whether fabric login has completed.
    pub fn is_online(&self) -> bool {
        self.fabric.phase() == FabricPhase::Online
    }

    /// Starts (or restarts) fabric login with a FLOGI; discovery follows on its own as
    /// replies arrive. Requests still pending fail with [`IoFailure::LinkDown`].
    pub fn start(&mut self, now: u64) -> Vec<Vec<u8>> {
        self.generation += 1;
        self.reset_sessions(now, IoFailure::LinkDown);
        self.fabric.start(now, &mut self.port, HostControl::Fabric)
    }

    /// The link went down: every pending request fails with [`IoFailure::LinkDown`], every
    /// login is lost. Call [`Initiator::start`] when the link is back.
    pub fn link_down(&mut self, now: u64) {
        self.generation += 1;
        self.reset_sessions(now, IoFailure::LinkDown);
        self.fabric.stop();
        self.port.set_fc_id(None);
    }

    /// Runs discovery again (GID_FT, then GPN_ID and login for new ports, a LUN rescan of
    /// logged-in targets); ports the name server no longer lists go offline.
    pub fn rediscover(&mut self, now: u64) -> Vec<Vec<u8>> {
        self.generation += 1;
        if !self.is_online() {
            return Vec::new();
        }
        self.discovery_started = true;
        self.send_gid_ft(now, 0)
    }

    /// The FCP targets discovered so far.
    pub fn targets(&self) -> &[DiscoveredTarget] {
        &self.targets
    }

    /// The discovered target with this port name.
    pub fn target(&self, port_name: u64) -> Option<&DiscoveredTarget> {
        self.targets.iter().find(|t| t.port_name == port_name)
    }

    /// Whether fabric login and discovery have finished and nothing about any remote port
    /// is in progress (a re-login after a target's LOGO makes it false for a while).
    pub fn is_ready(&self) -> bool {
        self.is_online()
            && self.discovery_started
            && !self.port.requests().any(|r| !matches!(r.purpose, HostControl::Fabric(_)))
            && self.remote.iter().all(RemotePort::is_settled)
            && !self.requests.values().any(|r| matches!(r.origin, Origin::Discovery(_)))
    }

    /// Requests submitted and not completed yet.
    pub fn in_flight(&self) -> usize {
        self.requests.values().filter(|r| matches!(r.origin, Origin::User(_))).count()
    }

    /// The counters.
    pub fn stats(&self) -> InitiatorStats {
        let frames = self.port.counters();
        InitiatorStats {
            frames_in: frames.frames_in,
            bytes_in: frames.bytes_in,
            frames_out: frames.frames_out,
            bytes_out: frames.bytes_out,
            dropped_frames: frames.dropped_frames,
            fabric_logins: self.fabric.flogis(),
            ..self.stats
        }
    }

    /// Submits a request to a discovered target. The frames to send come back with its id;
    /// if the target is logged out, the request waits for a new login (which this starts).
    pub fn submit(
        &mut self,
        now: u64,
        request: HostRequest,
    ) -> Result<(RequestId, Vec<Vec<u8>>), SubmitError> {
        self.generation += 1;
        if !self.is_online() {
            return Err(SubmitError::Offline);
        }
        let target = self
            .targets
            .iter()
            .position(|t| t.port_name == request.target)
            .ok_or(SubmitError::UnknownTarget(request.target))?;
        if request.lun > MAX_LUN {
            return Err(SubmitError::InvalidLun(request.lun));
        }
        let command = self.build_command(target, request.lun, request.op)?;
        let id = RequestId(self.next_request);
        self.stats.submitted += 1;
        let port = self.target_ports[target];
        let frames = self.enqueue(now, port, request.lun, command, Origin::User(id));
        Ok((id, frames))
    }

    /// The next finished request, oldest first.
    pub fn poll_completion(&mut self) -> Option<Completion> {
        self.completions.pop_front()
    }

    /// A number that changes whenever [`Initiator::is_ready`] or [`Initiator::next_timer`]
    /// may have changed (every call but read data received, completions polled and buffers
    /// recycled), so a caller may keep their answers until it does.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The earliest time [`Initiator::on_timer`] has work: an exchange, login or discovery
    /// deadline, a delayed retry or re-login.
    pub fn next_timer(&self) -> Option<u64> {
        let exchanges = self.exchanges.values().map(|e| e.deadline).min();
        let retries = self
            .requests
            .values()
            .filter_map(|r| match r.state {
                RequestState::RetryAt(at) => Some(at),
                _ => None,
            })
            .min();
        let relogins = self.remote.iter().filter_map(|p| p.relogin_at).min();
        [self.fabric.next_timer(), self.port.next_deadline(), exchanges, retries, relogins]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs what is due at `now`: timeouts (ABTS, retries), delayed retries, re-logins.
    pub fn on_timer(&mut self, now: u64) -> Vec<Vec<u8>> {
        self.generation += 1;
        let mut out = self.fabric.on_timer(now, &mut self.port, HostControl::Fabric);
        for request in self.port.expire(now) {
            out.extend(self.on_control_timeout(now, request));
        }
        let due: Vec<u16> =
            self.exchanges.iter().filter(|(_, e)| e.deadline <= now).map(|(ox, _)| *ox).collect();
        for ox_id in due {
            out.extend(self.on_exchange_timeout(now, ox_id));
        }
        let retries: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| matches!(r.state, RequestState::RetryAt(at) if at <= now))
            .map(|(key, _)| *key)
            .collect();
        for key in retries {
            out.extend(self.dispatch(now, key));
        }
        let relogins: Vec<usize> = (0..self.remote.len())
            .filter(|i| self.remote[*i].relogin_at.is_some_and(|at| at <= now))
            .collect();
        for port in relogins {
            out.extend(self.login_port(now, port));
        }
        out
    }

    /// Handles a received Ethernet frame; returns the frames to send in answer. Never
    /// panics: malformed or unexpected frames are counted and dropped.
    pub fn receive(&mut self, now: u64, frame: &[u8]) -> Vec<Vec<u8>> {
        let Some(inbound) = self.port.accept(frame) else { return Vec::new() };
        let h = inbound.header;
        // Read data only fills an exchange's buffer: no deadline, login or request changes,
        // and most frames a host receives are read data.
        if (h.fc_type, h.r_ctl) != (fc_type::FCP, r_ctl::SOLICITED_DATA) {
            self.generation += 1;
        }
        let handled = match (h.fc_type, h.r_ctl) {
            (fc_type::ELS, r_ctl::ELS_REPLY) | (fc_type::CT, r_ctl::SOLICITED_CONTROL) => {
                self.on_reply(now, &inbound)
            }
            (fc_type::ELS, r_ctl::ELS_REQUEST) => self.on_els_request(now, &inbound),
            (fc_type::FCP, r_ctl::DATA_DESCRIPTOR) => self.on_xfer_rdy(&inbound),
            (fc_type::FCP, r_ctl::SOLICITED_DATA) => self.on_data(&inbound),
            (fc_type::FCP, r_ctl::COMMAND_STATUS) => self.on_response(now, &inbound),
            (fc_type::BLS, r_ctl::BLS_BA_ACC | r_ctl::BLS_BA_RJT) => self.on_abort_reply(now, &inbound),
            (fc_type::BLS, r_ctl::BLS_ABTS) => self.on_target_abort(now, &inbound),
            _ => None,
        };
        handled.unwrap_or_else(|| {
            self.port.count_dropped();
            Vec::new()
        })
    }

    // ---- requests -------------------------------------------------------------------

    fn lun_block_size(&self, target: usize, lun: u16) -> Result<u32, SubmitError> {
        let t = &self.targets[target];
        t.luns
            .iter()
            .find(|l| l.lun == lun)
            .map(|l| l.block_size)
            .ok_or(SubmitError::UnknownLun { target: t.port_name, lun })
    }

    fn build_command(&self, target: usize, lun: u16, op: HostOp) -> Result<ScsiCommand, SubmitError> {
        match op {
            HostOp::Read { lba, blocks } => {
                let block_size = self.lun_block_size(target, lun)?;
                let len = u64::from(blocks) * u64::from(block_size);
                let len32 = u32::try_from(len).map_err(|_| SubmitError::TooLarge(len))?;
                Ok(ScsiCommand::from_cdb(read_write_cdb(false, lba, blocks), len32))
            }
            HostOp::Write { lba, data } => {
                let block_size = self.lun_block_size(target, lun)?;
                let len = data.len();
                if len == 0 || len % block_size as usize != 0 {
                    return Err(SubmitError::NotWholeBlocks { len, block_size });
                }
                u32::try_from(len).map_err(|_| SubmitError::TooLarge(len as u64))?;
                let blocks = (len / block_size as usize) as u32;
                let command = ScsiCommand::from_cdb(read_write_cdb(true, lba, blocks), 0);
                Ok(ScsiCommand { data_out: data, ..command })
            }
            HostOp::Command { cdb, data_out, data_in_len } => {
                if !data_out.is_empty() && data_in_len > 0 {
                    return Err(SubmitError::Bidirectional);
                }
                u32::try_from(data_out.len()).map_err(|_| SubmitError::TooLarge(data_out.len() as u64))?;
                Ok(ScsiCommand { cdb: pad_cdb(&cdb)?, data_out: Bytes::from(data_out), data_in_len })
            }
        }
    }

    /// Records a new request and sends it (or parks it until its target is logged in).
    fn enqueue(
        &mut self,
        now: u64,
        port: usize,
        lun: u16,
        command: ScsiCommand,
        origin: Origin,
    ) -> Vec<Vec<u8>> {
        let key = self.next_request;
        self.next_request += 1;
        let request = PendingRequest {
            origin,
            port,
            lun,
            command,
            submitted: now,
            retries: 0,
            state: RequestState::WaitingLogin,
        };
        self.requests.insert(key, request);
        self.dispatch(now, key)
    }

    /// Sends a request if its target is logged in; otherwise parks it and starts a login.
    fn dispatch(&mut self, now: u64, key: u64) -> Vec<Vec<u8>> {
        let Some(request) = self.requests.get_mut(&key) else { return Vec::new() };
        let port = request.port;
        let remote = &self.remote[port];
        match remote.state {
            PortState::LoggedIn => self.start_exchange(now, key),
            PortState::Naming | PortState::PlogiSent | PortState::PrliSent => {
                request.state = RequestState::WaitingLogin;
                Vec::new()
            }
            PortState::LoggedOut if remote.relogin_at.is_some() => {
                request.state = RequestState::WaitingLogin;
                Vec::new()
            }
            PortState::LoggedOut | PortState::Failed => {
                request.state = RequestState::WaitingLogin;
                self.remote[port].login_failures = 0;
                self.login_port(now, port)
            }
            PortState::NotTarget | PortState::Gone => self.finish(now, key, Err(IoFailure::TargetGone)),
        }
    }

    /// Opens the exchange of a request: FCP_CMND on a fresh OX_ID.
    fn start_exchange(&mut self, now: u64, key: u64) -> Vec<Vec<u8>> {
        let Some(ox_id) = self.port.allocate_ox_id() else {
            if let Some(request) = self.requests.get_mut(&key) {
                request.state = RequestState::RetryAt(now.saturating_add(BUSY_RETRY_DELAY_NS));
            }
            return Vec::new();
        };
        let Some(request) = self.requests.get_mut(&key) else {
            self.port.release_ox_id(ox_id);
            return Vec::new();
        };
        request.state = RequestState::InFlight(ox_id);
        let d_id = self.remote[request.port].fc_id;
        let command = &request.command;
        // Room for the data in up front (up to a bound), so it is not regrown frame by frame.
        let reserve = (command.data_in_len as usize).min(MAX_DATA_IN_RESERVE);
        let data_in = match self.spare_read_buffers.pop() {
            Some(mut buffer) if reserve > 0 => {
                buffer.clear();
                buffer.reserve(reserve);
                buffer
            }
            Some(buffer) => {
                self.spare_read_buffers.push(buffer);
                Vec::new()
            }
            None => Vec::with_capacity(reserve),
        };
        let cmnd = FcpCmndRepr {
            lun: lun_from_index(request.lun),
            crn: 0,
            priority: 0,
            task_attribute: TaskAttribute::Simple,
            task_management: 0,
            wrdata: !command.data_out.is_empty(),
            rddata: command.data_in_len > 0,
            cdb: command.cdb.as_slice(),
            fcp_dl: command.fcp_dl(),
        };
        let header = FcHeaderRepr {
            seq_id: self.port.next_seq_id(),
            ..fc_header(
                d_id,
                r_ctl::UNSOLICITED_COMMAND,
                fc_type::FCP,
                nport::F_CTL_REQUEST,
                ox_id,
                UNASSIGNED_X_ID,
            )
        };
        let frame = self.port.emit(&header, &cmnd);
        let exchange = ScsiExchange {
            request: key,
            port: request.port,
            rx_id: UNASSIGNED_X_ID,
            phase: ExchangePhase::Open,
            deadline: now.saturating_add(self.config.io_timeout_ns),
            data_in,
            bytes_in: 0,
        };
        self.exchanges.insert(ox_id, exchange);
        frame.into_iter().collect()
    }

    /// Applies a verdict: completes the request, or retries it while retries remain.
    fn conclude(&mut self, now: u64, key: u64, verdict: Verdict) -> Vec<Vec<u8>> {
        let (delay, exhausted) = match verdict {
            Verdict::Done(result) => return self.finish(now, key, result),
            Verdict::Retry { delay, exhausted } => (delay, exhausted),
        };
        let Some(request) = self.requests.get_mut(&key) else { return Vec::new() };
        if request.retries >= self.config.max_retries {
            return self.finish(now, key, exhausted);
        }
        request.retries += 1;
        self.stats.retries += 1;
        if delay == 0 {
            self.dispatch(now, key)
        } else {
            request.state = RequestState::RetryAt(now.saturating_add(delay));
            Vec::new()
        }
    }

    /// Completes a request: a [`Completion`] for the simulator's, the next discovery step
    /// for discovery's.
    fn finish(&mut self, now: u64, key: u64, result: Result<IoOutcome, IoFailure>) -> Vec<Vec<u8>> {
        let Some(request) = self.requests.remove(&key) else { return Vec::new() };
        if let RequestState::InFlight(ox_id) = request.state
            && self.exchanges.get(&ox_id).is_some_and(|e| e.request == key)
        {
            self.exchanges.remove(&ox_id);
            self.port.release_ox_id(ox_id);
        }
        match request.origin {
            Origin::User(id) => {
                self.stats.completed += 1;
                if result.is_err() {
                    self.stats.failed += 1;
                }
                let completion = Completion {
                    id,
                    submitted: request.submitted,
                    completed: now,
                    retries: request.retries,
                    result,
                };
                self.completions.push_back(completion);
                Vec::new()
            }
            Origin::Discovery(step) => self.on_discovery_result(now, request.port, request.lun, step, result),
        }
    }

    /// Removes an exchange and frees its OX_ID; returns its request.
    fn close_exchange(&mut self, ox_id: u16) -> Option<ScsiExchange> {
        let exchange = self.exchanges.remove(&ox_id)?;
        self.port.release_ox_id(ox_id);
        Some(exchange)
    }

    /// Fails every pending request and forgets every session (start, link down, fabric
    /// logout).
    fn reset_sessions(&mut self, now: u64, failure: IoFailure) {
        let exchanges: Vec<u16> = self.exchanges.keys().copied().collect();
        for ox_id in exchanges {
            self.close_exchange(ox_id);
        }
        self.port.clear_requests();
        for port in &mut self.remote {
            port.state = PortState::Gone;
            port.relogin_at = None;
        }
        for target in &mut self.targets {
            target.online = false;
        }
        let keys: Vec<u64> = self.requests.keys().copied().collect();
        for key in keys {
            // Discovery requests fail too; with an error they start nothing.
            self.finish(now, key, Err(failure.clone()));
        }
        self.discovery_started = false;
    }

    /// Requests parked for `port`'s login.
    fn waiting_on(&self, port: usize) -> Vec<u64> {
        self.requests
            .iter()
            .filter(|(_, r)| r.port == port && r.state == RequestState::WaitingLogin)
            .map(|(key, _)| *key)
            .collect()
    }

    fn fail_waiting(&mut self, now: u64, port: usize, failure: IoFailure) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for key in self.waiting_on(port) {
            out.extend(self.finish(now, key, Err(failure.clone())));
        }
        out
    }

    // ---- FCP exchanges ----------------------------------------------------------------

    /// The open exchange `ox_id` if `h` comes from its target as the responder.
    fn open_exchange_for(&self, h: &FcHeaderRepr) -> Option<&ScsiExchange> {
        let exchange = self.exchanges.get(&h.ox_id)?;
        let from_target = self.remote[exchange.port].fc_id == h.s_id && h.is_from_responder();
        (from_target && exchange.phase == ExchangePhase::Open).then_some(exchange)
    }

    fn on_xfer_rdy(&mut self, inbound: &Inbound<'_>) -> Option<Vec<Vec<u8>>> {
        let h = inbound.header;
        let exchange = self.open_exchange_for(&h)?;
        let ready = FcpXferRdyRepr::parse(inbound.payload).ok()?;
        let request = self.requests.get(&exchange.request)?;
        let data = &request.command.data_out;
        let start = ready.data_ro as usize;
        let end = start.checked_add(ready.burst_len as usize)?;
        if ready.burst_len == 0 || end > data.len() {
            return None;
        }
        let burst = data.slice(start..end);
        let (d_id, max_payload) = (h.s_id, self.remote[exchange.port].max_payload);
        if let Some(exchange) = self.exchanges.get_mut(&h.ox_id) {
            exchange.rx_id = h.rx_id;
        }
        Some(self.send_burst(d_id, h.ox_id, h.rx_id, ready.data_ro, &burst, max_payload))
    }

    /// Sends one write burst as one sequence: frames of at most `max_payload` bytes with
    /// relative offsets; the last ends the sequence and hands the initiative back.
    fn send_burst(
        &mut self,
        d_id: FcId,
        ox_id: u16,
        rx_id: u16,
        offset: u32,
        burst: &[u8],
        max_payload: usize,
    ) -> Vec<Vec<u8>> {
        let seq_id = self.port.next_seq_id();
        let count = burst.len().div_ceil(max_payload);
        let mut out = Vec::with_capacity(count);
        for (i, chunk) in burst.chunks(max_payload).enumerate() {
            let last = i + 1 == count;
            let f_ctl = f_ctl::RELATIVE_OFFSET
                | if last { f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE } else { 0 };
            let header = FcHeaderRepr {
                seq_id,
                seq_cnt: i as u16,
                parameter: offset.wrapping_add((i * max_payload) as u32),
                ..fc_header(d_id, r_ctl::SOLICITED_DATA, fc_type::FCP, f_ctl, ox_id, rx_id)
            };
            out.extend(self.port.emit(&header, chunk));
        }
        out
    }

    fn on_data(&mut self, inbound: &Inbound<'_>) -> Option<Vec<Vec<u8>>> {
        let h = inbound.header;
        let exchange = self.open_exchange_for(&h)?;
        let limit = u64::from(self.requests.get(&exchange.request)?.command.data_in_len);
        let offset = u64::from(h.relative_offset().unwrap_or(exchange.bytes_in as u32));
        let end = offset + inbound.payload.len() as u64;
        if end > limit {
            return None;
        }
        let exchange = self.exchanges.get_mut(&h.ox_id)?;
        if exchange.data_in.len() as u64 == offset {
            // In order, the usual case: no zeroing of bytes about to be overwritten.
            exchange.data_in.extend_from_slice(inbound.payload);
        } else {
            if (exchange.data_in.len() as u64) < end {
                exchange.data_in.resize(end as usize, 0);
            }
            exchange.data_in[offset as usize..end as usize].copy_from_slice(inbound.payload);
        }
        exchange.bytes_in += inbound.payload.len() as u64;
        exchange.rx_id = h.rx_id;
        Some(Vec::new())
    }

    fn on_response(&mut self, now: u64, inbound: &Inbound<'_>) -> Option<Vec<Vec<u8>>> {
        let h = inbound.header;
        self.open_exchange_for(&h)?;
        let rsp = FcpRspRepr::parse(inbound.payload).ok()?;
        let exchange = self.close_exchange(h.ox_id)?;
        let data_in_len = self.requests.get(&exchange.request).map_or(0, |r| r.command.data_in_len);
        let verdict = judge_response(&rsp, exchange.data_in, exchange.bytes_in, data_in_len);
        Some(self.conclude(now, exchange.request, verdict))
    }

    fn on_abort_reply(&mut self, now: u64, inbound: &Inbound<'_>) -> Option<Vec<Vec<u8>>> {
        let h = inbound.header;
        let exchange = self.exchanges.get(&h.ox_id)?;
        if exchange.phase != ExchangePhase::Aborting || self.remote[exchange.port].fc_id != h.s_id {
            return None;
        }
        BlsRepr::parse(h.r_ctl, inbound.payload).ok()?;
        let exchange = self.close_exchange(h.ox_id)?;
        let verdict = Verdict::Retry { delay: 0, exhausted: Err(IoFailure::TimedOut) };
        Some(self.conclude(now, exchange.request, verdict))
    }

    /// The target aborts one of our exchanges: accept, and retry the command.
    fn on_target_abort(&mut self, now: u64, inbound: &Inbound<'_>) -> Option<Vec<Vec<u8>>> {
        let h = inbound.header;
        BlsRepr::parse(h.r_ctl, inbound.payload).ok()?;
        let exchange = self.exchanges.get(&h.ox_id)?;
        if self.remote[exchange.port].fc_id != h.s_id {
            return None;
        }
        let accept = BlsRepr::BaAcc {
            seq_id: None,
            ox_id: h.ox_id,
            rx_id: h.rx_id,
            low_seq_cnt: 0,
            high_seq_cnt: 0xFFFF,
        };
        let header = FcHeaderRepr {
            seq_id: self.port.next_seq_id(),
            ..fc_header(
                h.s_id,
                r_ctl::BLS_BA_ACC,
                fc_type::BLS,
                f_ctl::LAST_SEQUENCE | f_ctl::END_SEQUENCE,
                h.ox_id,
                h.rx_id,
            )
        };
        let mut out: Vec<Vec<u8>> = self.port.emit(&header, &accept).into_iter().collect();
        let exchange = self.close_exchange(h.ox_id)?;
        let verdict = Verdict::Retry { delay: 0, exhausted: Err(IoFailure::AbortedByTarget) };
        out.extend(self.conclude(now, exchange.request, verdict));
        Some(out)
    }

    fn on_exchange_timeout(&mut self, now: u64, ox_id: u16) -> Vec<Vec<u8>> {
        let Some(exchange) = self.exchanges.get_mut(&ox_id) else { return Vec::new() };
        self.stats.timeouts += 1;
        match exchange.phase {
            ExchangePhase::Open => {
                exchange.phase = ExchangePhase::Aborting;
                exchange.deadline = now.saturating_add(self.config.io_timeout_ns);
                let (d_id, rx_id) = (self.remote[exchange.port].fc_id, exchange.rx_id);
                self.stats.aborts += 1;
                let header = FcHeaderRepr {
                    seq_id: self.port.next_seq_id(),
                    ..fc_header(
                        d_id,
                        r_ctl::BLS_ABTS,
                        fc_type::BLS,
                        f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE,
                        ox_id,
                        rx_id,
                    )
                };
                self.port.emit(&header, &BlsRepr::Abts).into_iter().collect()
            }
            ExchangePhase::Aborting => {
                let Some(exchange) = self.close_exchange(ox_id) else { return Vec::new() };
                let verdict = Verdict::Retry { delay: 0, exhausted: Err(IoFailure::TimedOut) };
                self.conclude(now, exchange.request, verdict)
            }
        }
    }

    // ---- link services ------------------------------------------------------------------

    fn on_reply(&mut self, now: u64, inbound: &Inbound<'_>) -> Option<Vec<Vec<u8>>> {
        if let Some((request, reply)) = self.port.take_reply(inbound) {
            return Some(self.on_control_reply(now, request, &reply, inbound.header.d_id));
        }
        // An LS_RJT on one of our FCP exchanges: the target refuses us (not logged in).
        let h = inbound.header;
        let rejected = h.fc_type == fc_type::ELS
            && matches!(ElsRepr::parse(inbound.payload), Ok(ElsRepr::LsRjt(_)))
            && self.exchanges.get(&h.ox_id).is_some_and(|e| self.remote[e.port].fc_id == h.s_id);
        if !rejected {
            return None;
        }
        let port = self.exchanges.get(&h.ox_id)?.port;
        Some(self.logged_out_by_target(now, port))
    }

    fn on_control_reply(
        &mut self,
        now: u64,
        request: ControlRequest<HostControl>,
        reply: &ControlReply<'_>,
        assigned: FcId,
    ) -> Vec<Vec<u8>> {
        match request.purpose {
            HostControl::Fabric(step) => {
                let progress =
                    self.fabric.on_reply(now, &mut self.port, step, assigned, reply, HostControl::Fabric);
                let mut out = progress.frames;
                if progress.online {
                    out.extend(self.rediscover(now));
                }
                out
            }
            HostControl::GidFt { .. } => self.on_gid_ft(now, reply),
            HostControl::GpnId { port, .. } => self.on_gpn_id(now, port, reply),
            HostControl::Plogi { port } => self.on_plogi_reply(now, port, reply),
            HostControl::Prli { port } => self.on_prli_reply(now, port, reply),
        }
    }

    fn on_control_timeout(&mut self, now: u64, request: ControlRequest<HostControl>) -> Vec<Vec<u8>> {
        let max = self.config.max_retries;
        match request.purpose {
            HostControl::Fabric(step) => {
                self.fabric.on_timeout(now, &mut self.port, step, HostControl::Fabric)
            }
            HostControl::GidFt { attempt } if attempt < max => self.send_gid_ft(now, attempt + 1),
            HostControl::GidFt { .. } => Vec::new(),
            HostControl::GpnId { port, attempt } if attempt < max => self.send_gpn_id(now, port, attempt + 1),
            HostControl::GpnId { port, .. } => {
                self.remote[port].state = PortState::Gone;
                Vec::new()
            }
            HostControl::Plogi { port } if self.remote[port].state == PortState::PlogiSent => {
                self.login_failed(now, port)
            }
            HostControl::Prli { port } if self.remote[port].state == PortState::PrliSent => {
                self.login_failed(now, port)
            }
            HostControl::Plogi { .. } | HostControl::Prli { .. } => Vec::new(),
        }
    }

    fn deadline(&self, now: u64) -> u64 {
        now.saturating_add(self.config.io_timeout_ns)
    }

    fn send_gid_ft(&mut self, now: u64, attempt: u32) -> Vec<Vec<u8>> {
        let request = NsRequest::GidFt { domain_scope: 0, area_scope: 0, fc_type: fc_type::FCP };
        let deadline = self.deadline(now);
        self.port.send_name_server(deadline, &request, HostControl::GidFt { attempt }).into_iter().collect()
    }

    fn send_gpn_id(&mut self, now: u64, port: usize, attempt: u32) -> Vec<Vec<u8>> {
        let request = NsRequest::GpnId { port_id: self.remote[port].fc_id };
        let deadline = self.deadline(now);
        self.port
            .send_name_server(deadline, &request, HostControl::GpnId { port, attempt })
            .into_iter()
            .collect()
    }

    fn on_gid_ft(&mut self, now: u64, reply: &ControlReply<'_>) -> Vec<Vec<u8>> {
        let mut listed: Vec<FcId> = match reply {
            ControlReply::NsAccept(NsAccept::PortIds(ids)) => ids.iter().collect(),
            // A reject means no port registered FCP.
            ControlReply::NsReject { .. } => Vec::new(),
            _ => return Vec::new(),
        };
        listed.sort();
        listed.dedup();
        let own = self.port.fc_id();
        listed.retain(|id| Some(*id) != own && id.is_valid() && id.0 < 0xFF_FFF0);
        let mut out = Vec::new();
        for port in 0..self.remote.len() {
            let p = &self.remote[port];
            if p.state != PortState::Gone && !listed.contains(&p.fc_id) {
                out.extend(self.port_gone(now, port));
            }
        }
        for id in listed {
            out.extend(self.on_port_listed(now, id));
        }
        out
    }

    fn port_gone(&mut self, now: u64, port: usize) -> Vec<Vec<u8>> {
        let p = &mut self.remote[port];
        p.state = PortState::Gone;
        p.relogin_at = None;
        if let Some(t) = p.target {
            self.targets[t].online = false;
        }
        self.fail_waiting(now, port, IoFailure::TargetGone)
    }

    fn on_port_listed(&mut self, now: u64, id: FcId) -> Vec<Vec<u8>> {
        let Some(port) = self.remote.iter().position(|p| p.fc_id == id && p.state != PortState::Gone) else {
            self.remote.push(RemotePort::new(id));
            return self.send_gpn_id(now, self.remote.len() - 1, 0);
        };
        let p = &mut self.remote[port];
        p.needs_scan = true;
        match p.state {
            PortState::LoggedIn => {
                p.needs_scan = false;
                self.start_scan(now, port)
            }
            PortState::LoggedOut | PortState::Failed => {
                p.login_failures = 0;
                if p.relogin_at.is_some() { Vec::new() } else { self.login_port(now, port) }
            }
            PortState::Naming
            | PortState::PlogiSent
            | PortState::PrliSent
            | PortState::NotTarget
            | PortState::Gone => Vec::new(),
        }
    }

    fn on_gpn_id(&mut self, now: u64, port: usize, reply: &ControlReply<'_>) -> Vec<Vec<u8>> {
        if self.remote[port].state != PortState::Naming {
            return Vec::new();
        }
        let ControlReply::NsAccept(NsAccept::PortName(port_name)) = *reply else {
            self.remote[port].state = PortState::Gone;
            return Vec::new();
        };
        if port_name == self.port.port_name() {
            self.remote[port].state = PortState::Gone;
            return Vec::new();
        }
        let known =
            (0..self.remote.len()).find(|i| *i != port && self.remote[*i].port_name == Some(port_name));
        let port = match known {
            Some(old) => {
                // The same port under a new address: its old record (and target entry) moves.
                let fc_id = self.remote[port].fc_id;
                self.remote[port].state = PortState::Gone;
                let record = &mut self.remote[old];
                record.fc_id = fc_id;
                record.needs_scan = true;
                record.login_failures = 0;
                if let Some(t) = record.target {
                    self.targets[t].fc_id = fc_id.0;
                    self.targets[t].online = false;
                }
                old
            }
            None => {
                self.remote[port].port_name = Some(port_name);
                port
            }
        };
        self.login_port(now, port)
    }

    fn login_port(&mut self, now: u64, port: usize) -> Vec<Vec<u8>> {
        let p = &mut self.remote[port];
        p.state = PortState::PlogiSent;
        p.relogin_at = None;
        let d_id = p.fc_id;
        let plogi = ElsRepr::Plogi(self.port.login_params());
        let deadline = self.deadline(now);
        self.port.send_els(deadline, d_id, &plogi, HostControl::Plogi { port }).into_iter().collect()
    }

    fn on_plogi_reply(&mut self, now: u64, port: usize, reply: &ControlReply<'_>) -> Vec<Vec<u8>> {
        let p = &mut self.remote[port];
        if p.state != PortState::PlogiSent {
            return Vec::new();
        }
        let ControlReply::Els(ElsRepr::AccLogin(params)) = *reply else {
            return self.login_failed(now, port);
        };
        if p.port_name.is_some_and(|name| name != params.port_name) {
            return self.login_failed(now, port);
        }
        p.max_payload = nport::data_payload_for(params.rcv_data_field_size());
        p.node_name = params.node_name;
        p.state = PortState::PrliSent;
        let d_id = p.fc_id;
        let prli = ElsRepr::Prli(PrliPage {
            fc_type: fc_type::FCP,
            type_ext: 0,
            flags: prli_flags::ESTABLISH_IMAGE_PAIR,
            originator_pa: 0,
            responder_pa: 0,
            service_params: prli_fcp::INITIATOR | prli_fcp::READ_XFER_RDY_DISABLED,
        });
        let deadline = self.deadline(now);
        self.port.send_els(deadline, d_id, &prli, HostControl::Prli { port }).into_iter().collect()
    }

    fn on_prli_reply(&mut self, now: u64, port: usize, reply: &ControlReply<'_>) -> Vec<Vec<u8>> {
        if self.remote[port].state != PortState::PrliSent {
            return Vec::new();
        }
        let page = match *reply {
            ControlReply::Els(ElsRepr::AccPrli(page))
                if page.fc_type == fc_type::FCP && page.flags & prli_flags::RESPONSE_CODE_MASK == 1 =>
            {
                page
            }
            _ => return self.login_failed(now, port),
        };
        if page.service_params & prli_fcp::TARGET == 0 {
            self.remote[port].state = PortState::NotTarget;
            return self.fail_waiting(now, port, IoFailure::TargetGone);
        }
        self.port_logged_in(now, port)
    }

    fn port_logged_in(&mut self, now: u64, port: usize) -> Vec<Vec<u8>> {
        self.stats.target_logins += 1;
        let target = self.ensure_target(port);
        let p = &mut self.remote[port];
        p.state = PortState::LoggedIn;
        p.login_failures = 0;
        let t = &mut self.targets[target];
        t.online = true;
        t.fc_id = p.fc_id.0;
        t.node_name = p.node_name;
        let mut out = Vec::new();
        if std::mem::take(&mut p.needs_scan) {
            out.extend(self.start_scan(now, port));
        }
        for key in self.waiting_on(port) {
            out.extend(self.dispatch(now, key));
        }
        out
    }

    /// The index in `targets` of a remote port that is a target, added if new.
    fn ensure_target(&mut self, port: usize) -> usize {
        if let Some(t) = self.remote[port].target {
            return t;
        }
        let p = &self.remote[port];
        self.targets.push(DiscoveredTarget {
            port_name: p.port_name.unwrap_or_default(),
            node_name: p.node_name,
            fc_id: p.fc_id.0,
            online: false,
            luns: Vec::new(),
        });
        self.target_ports.push(port);
        let t = self.targets.len() - 1;
        self.remote[port].target = Some(t);
        t
    }

    /// PLOGI or PRLI was refused or unanswered: try again after a pause, or give up (and
    /// fail the requests waiting) once it failed more than `max_retries` times in a row.
    fn login_failed(&mut self, now: u64, port: usize) -> Vec<Vec<u8>> {
        let retry_pause = (self.config.io_timeout_ns / 8).max(1);
        let p = &mut self.remote[port];
        p.login_failures += 1;
        if p.login_failures > self.config.max_retries {
            p.state = PortState::Failed;
            p.relogin_at = None;
            return self.fail_waiting(now, port, IoFailure::LoginFailed);
        }
        p.state = PortState::LoggedOut;
        p.relogin_at = Some(now.saturating_add(retry_pause));
        Vec::new()
    }

    /// The target logged us out (LOGO, or LS_RJT to a command): its exchanges are gone, so
    /// their requests are retried, which logs in again.
    fn logged_out_by_target(&mut self, now: u64, port: usize) -> Vec<Vec<u8>> {
        let p = &mut self.remote[port];
        // A logout that crosses a login in progress refers to the old session.
        if p.state != PortState::LoggedIn {
            return Vec::new();
        }
        self.stats.target_logouts += 1;
        p.state = PortState::LoggedOut;
        p.relogin_at = None;
        if let Some(t) = p.target {
            self.targets[t].online = false;
        }
        let dropped: Vec<u16> =
            self.exchanges.iter().filter(|(_, e)| e.port == port).map(|(ox, _)| *ox).collect();
        let mut out = Vec::new();
        for ox_id in dropped {
            if let Some(exchange) = self.close_exchange(ox_id) {
                let verdict = Verdict::Retry { delay: 0, exhausted: Err(IoFailure::Rejected) };
                out.extend(self.conclude(now, exchange.request, verdict));
            }
        }
        out
    }

    /// ELS requests from peers: PLOGI and PRLI are accepted (as an initiator), LOGO
    /// accepted and acted on, RSCN accepted and followed by a rediscovery, the rest rejected.
    fn on_els_request(&mut self, now: u64, inbound: &Inbound<'_>) -> Option<Vec<Vec<u8>>> {
        let h = inbound.header;
        if h.is_from_responder() || inbound.payload.is_empty() {
            return None;
        }
        let mut after = Vec::new();
        let reply = match ElsRepr::parse(inbound.payload) {
            Ok(ElsRepr::Plogi(_)) => ElsRepr::AccLogin(self.port.login_params()),
            Ok(ElsRepr::Prli(page)) if page.fc_type == fc_type::FCP => ElsRepr::AccPrli(PrliPage {
                flags: prli_flags::IMAGE_PAIR_ESTABLISHED | 1,
                service_params: prli_fcp::INITIATOR | prli_fcp::READ_XFER_RDY_DISABLED,
                ..page
            }),
            Ok(ElsRepr::Logo(_)) => {
                after = self.on_logo(now, h.s_id);
                ElsRepr::Acc
            }
            Err(_) if inbound.payload[0] == ELS_RSCN => {
                after = self.rediscover(now);
                ElsRepr::Acc
            }
            _ => ElsRepr::LsRjt(LsRjtRepr {
                reason: reject_reason::COMMAND_NOT_SUPPORTED,
                explanation: reject_explanation::NONE,
                vendor: 0,
            }),
        };
        let mut out: Vec<Vec<u8>> = self.port.reply_els(&h, &reply).into_iter().collect();
        out.extend(after);
        Some(out)
    }

    fn on_logo(&mut self, now: u64, from: FcId) -> Vec<Vec<u8>> {
        if from == FcId::FABRIC_LOGIN {
            // The fabric logged us out: log in again from scratch (after the LS_ACC).
            return self.start(now);
        }
        match self.remote.iter().position(|p| p.fc_id == from && p.state != PortState::Gone) {
            Some(port) => self.logged_out_by_target(now, port),
            None => Vec::new(),
        }
    }

    // ---- LUN discovery ---------------------------------------------------------------

    fn start_scan(&mut self, now: u64, port: usize) -> Vec<Vec<u8>> {
        let cdb = Cdb::ReportLuns { select_report: 0, allocation_length: REPORT_LUNS_ALLOCATION, control: 0 };
        let command = ScsiCommand::from_cdb(cdb, REPORT_LUNS_ALLOCATION);
        self.enqueue(now, port, 0, command, Origin::Discovery(DiscoveryStep::ReportLuns))
    }

    fn on_discovery_result(
        &mut self,
        now: u64,
        port: usize,
        lun: u16,
        step: DiscoveryStep,
        result: Result<IoOutcome, IoFailure>,
    ) -> Vec<Vec<u8>> {
        let Ok(outcome) = result else { return Vec::new() };
        if !outcome.is_good() {
            return Vec::new();
        }
        match step {
            DiscoveryStep::ReportLuns => self.on_report_luns(now, port, &outcome.data),
            DiscoveryStep::Inquiry => {
                let Ok(inquiry) = StandardInquiry::parse(&outcome.data) else { return Vec::new() };
                if inquiry.peripheral >> 5 != 0 {
                    // No logical unit there.
                    self.forget_lun(port, lun);
                    return Vec::new();
                }
                let cdb = Cdb::ReadCapacity16 { allocation_length: READ_CAPACITY_16_ALLOCATION, control: 0 };
                let command = ScsiCommand::from_cdb(cdb, READ_CAPACITY_16_ALLOCATION);
                self.enqueue(now, port, lun, command, Origin::Discovery(DiscoveryStep::ReadCapacity(inquiry)))
            }
            DiscoveryStep::ReadCapacity(inquiry) => {
                if let Ok(capacity) = ReadCapacity16Data::parse(&outcome.data)
                    && capacity.block_len > 0
                {
                    self.record_lun(
                        port,
                        DiscoveredLun {
                            lun,
                            blocks: capacity.last_lba.saturating_add(1),
                            block_size: capacity.block_len,
                            vendor: trimmed(&inquiry.vendor),
                            product: trimmed(&inquiry.product),
                            revision: trimmed(&inquiry.revision),
                        },
                    );
                }
                Vec::new()
            }
        }
    }

    fn on_report_luns(&mut self, now: u64, port: usize, data: &[u8]) -> Vec<Vec<u8>> {
        let Ok(list) = ReportLunsData::parse(data) else { return Vec::new() };
        let mut luns: Vec<u16> = list.iter().filter_map(|l| lun_index(&l)).collect();
        luns.sort_unstable();
        luns.dedup();
        luns.truncate(MAX_SCANNED_LUNS);
        if let Some(t) = self.remote[port].target {
            self.targets[t].luns.retain(|l| luns.contains(&l.lun));
        }
        let mut out = Vec::new();
        for lun in luns {
            let cdb =
                Cdb::Inquiry { evpd: false, page_code: 0, allocation_length: INQUIRY_ALLOCATION, control: 0 };
            let command = ScsiCommand::from_cdb(cdb, u32::from(INQUIRY_ALLOCATION));
            out.extend(self.enqueue(now, port, lun, command, Origin::Discovery(DiscoveryStep::Inquiry)));
        }
        out
    }

    fn record_lun(&mut self, port: usize, lun: DiscoveredLun) {
        let Some(t) = self.remote[port].target else { return };
        let luns = &mut self.targets[t].luns;
        match luns.binary_search_by_key(&lun.lun, |l| l.lun) {
            Ok(at) => luns[at] = lun,
            Err(at) => luns.insert(at, lun),
        }
    }

    fn forget_lun(&mut self, port: usize, lun: u16) {
        if let Some(t) = self.remote[port].target {
            self.targets[t].luns.retain(|l| l.lun != lun);
        }
    }
}

/// READ or WRITE: the 10-byte CDB when LBA and length fit it, else the 16-byte one.
fn read_write_cdb(write: bool, lba: u64, blocks: u32) -> Cdb {
    match (u32::try_from(lba), u16::try_from(blocks)) {
        (Ok(lba), Ok(length)) => {
            let fields = Lba10 { lba, length, ..Lba10::default() };
            if write { Cdb::Write10(fields) } else { Cdb::Read10(fields) }
        }
        _ => {
            let fields = Lba16 { lba, length: blocks, ..Lba16::default() };
            if write { Cdb::Write16(fields) } else { Cdb::Read16(fields) }
        }
    }
}

/// The CDB as FCP_CMND carries it: padded to 16 bytes, or longer in multiples of 4.
fn pad_cdb(cdb: &[u8]) -> Result<CdbBytes, SubmitError> {
    let len = cdb.len();
    let extra = len.saturating_sub(16);
    if len == 0 || !extra.is_multiple_of(4) || extra / 4 > 63 {
        return Err(SubmitError::BadCdbLength(len));
    }
    if len <= 16 {
        let mut padded = [0u8; 16];
        padded[..len].copy_from_slice(cdb);
        return Ok(CdbBytes::Short(padded));
    }
    Ok(CdbBytes::Long(cdb.to_vec()))
}

/// The residual of an FCP_RSP as a signed byte count (underrun positive).
fn signed_residual(residual: Residual) -> i64 {
    match residual {
        Residual::None => 0,
        Residual::Under(n) => i64::from(n),
        Residual::Over(n) => -i64::from(n),
    }
}

/// Whether a status is worth retrying, and after how long.
fn retry_delay(outcome: &IoOutcome) -> Option<u64> {
    match outcome.status {
        status::BUSY | status::TASK_SET_FULL => Some(BUSY_RETRY_DELAY_NS),
        status::CHECK_CONDITION => match outcome.sense.map(|(key, _, _)| SenseKey::from_code(key)) {
            Some(SenseKey::UnitAttention | SenseKey::AbortedCommand) => Some(0),
            Some(SenseKey::NotReady) => Some(BUSY_RETRY_DELAY_NS),
            _ => None,
        },
        _ => None,
    }
}

/// Turns an FCP_RSP and the data that arrived into a verdict.
fn judge_response(rsp: &FcpRspRepr<'_>, mut data: Vec<u8>, bytes_in: u64, data_in_len: u32) -> Verdict {
    if let Some(code) = rsp.response_code()
        && code != dve_wire::fcp::rsp_code::COMPLETE
    {
        return Verdict::Done(Err(IoFailure::ResponseCode(code)));
    }
    let residual = signed_residual(rsp.residual);
    let expected = match rsp.residual {
        Residual::Under(n) => data_in_len.saturating_sub(n),
        _ => data_in_len,
    };
    if rsp.scsi_status == status::GOOD && bytes_in < u64::from(expected) {
        let failure = IoFailure::DataUnderrun { expected: u64::from(expected), received: bytes_in };
        return Verdict::Retry { delay: 0, exhausted: Err(failure) };
    }
    data.resize(expected as usize, 0);
    let sense =
        rsp.sense.and_then(|s| SenseRepr::parse(s).ok()).map(|s| (s.key as u8, s.asc.asc, s.asc.ascq));
    let outcome = IoOutcome { status: rsp.scsi_status, sense, data, residual };
    match retry_delay(&outcome) {
        Some(delay) => Verdict::Retry { delay, exhausted: Ok(outcome) },
        None => Verdict::Done(Ok(outcome)),
    }
}

/// An ASCII INQUIRY field without its padding.
fn trimmed(field: &[u8]) -> String {
    String::from_utf8_lossy(field).trim().to_string()
}

#[cfg(test)]
pub(crate) mod testbed {
    //! A bench for unit tests: one initiator and some disks cabled to a tiny fabric that
    //! answers FLOGI, name-server PLOGI and the name-server requests, and routes every
    //! other frame by D_ID with no delay. Every frame a node sends is checked to parse and to
    //! carry the MAC addresses FPMA requires.

    use std::collections::{BTreeMap, VecDeque};

    use dve_wire::WireEmit;
    use dve_wire::ct::{
        CtHeaderRepr, NsAccept, NsRequest, PortIdList, fc4_types_contains, reject_explanation,
    };
    use dve_wire::els::{ElsRepr, LoginParams, common_features};
    use dve_wire::emit::Concat;
    use dve_wire::ethernet::{EthernetRepr, MacAddr};
    use dve_wire::fc::{FcHeaderRepr, FcId, fc_type, r_ctl};
    use dve_wire::fcoe::{Eof, FcoeRepr, Sof};
    use dve_wire::stack::{emit_fcoe_frame, fcoe_frame_len, parse_fcoe_frame};

    use super::nport::{F_CTL_FINAL_REPLY, FABRIC_MAC, FC_MAP, mac_for};
    use super::{Completion, HostOp, HostRequest, Initiator, InitiatorConfig, RequestId};
    use crate::disk::{DiskConfig, DiskTarget, LatencyModel};

    pub(crate) const HOST_WWPN: u64 = 0x2100_0000_0000_0001;
    pub(crate) const HOST_WWNN: u64 = 0x2000_0000_0000_0001;
    pub(crate) const IO_TIMEOUT_NS: u64 = 10_000_000;
    pub(crate) const MAX_RETRIES: u32 = 3;
    const FABRIC_NAME: u64 = 0x1000_0000_00FA_B000;

    /// The WWPN of disk `i`.
    pub(crate) fn disk_wwpn(i: usize) -> u64 {
        0x5000_0000_0000_0100 + i as u64
    }

    pub(crate) fn host_config() -> InitiatorConfig {
        InitiatorConfig {
            io_timeout_ns: IO_TIMEOUT_NS,
            max_retries: MAX_RETRIES,
            ..InitiatorConfig::new("host", HOST_WWPN, HOST_WWNN, [2, 0, 0, 0, 0, 1])
        }
    }

    pub(crate) fn disk_config(i: usize) -> DiskConfig {
        DiskConfig {
            latency: LatencyModel { fixed_ns: 100_000, per_kib_ns: 100, queue_depth: 4 },
            ..DiskConfig::new(
                format!("disk{i}"),
                disk_wwpn(i),
                disk_wwpn(i) | 0xF0_0000,
                [2, 0, 0, 0, 1, i as u8],
                4096,
            )
        }
    }

    #[derive(Debug, Clone, Copy)]
    struct NameEntry {
        node: usize,
        port_name: u64,
        node_name: u64,
        fcp: bool,
    }

    /// A routed frame: who sent it, its header and payload.
    #[derive(Debug, Clone)]
    pub(crate) struct Tapped {
        pub from: usize,
        pub header: FcHeaderRepr,
        pub payload: Vec<u8>,
    }

    type DropFilter = Box<dyn FnMut(&Tapped) -> bool>;

    /// Node 0 is the initiator, node `i + 1` disk `i`.
    pub(crate) struct Bench {
        pub now: u64,
        pub host: Initiator,
        pub disks: Vec<DiskTarget>,
        names: BTreeMap<u32, NameEntry>,
        queue: VecDeque<(usize, Vec<u8>)>,
        pub tap: Vec<Tapped>,
        pub drop_if: Option<DropFilter>,
        pub dropped_by_filter: usize,
    }

    impl Bench {
        pub fn new(disks: Vec<DiskConfig>) -> Bench {
            Bench {
                now: 1_000,
                host: Initiator::new(host_config()),
                disks: disks.into_iter().map(DiskTarget::new).collect(),
                names: BTreeMap::new(),
                queue: VecDeque::new(),
                tap: Vec::new(),
                drop_if: None,
                dropped_by_filter: 0,
            }
        }

        /// A bench with one default disk, logged in and discovered.
        pub fn ready() -> Bench {
            Bench::ready_with(disk_config(0))
        }

        pub fn ready_with(disk: DiskConfig) -> Bench {
            let mut bench = Bench::new(vec![disk]);
            bench.start();
            assert!(bench.run_until(1_000_000_000, |b| b.host.is_ready()), "discovery finishes");
            bench.tap.clear();
            bench
        }

        /// Starts the disks, lets them register, then starts the host.
        pub fn start(&mut self) {
            for i in 0..self.disks.len() {
                let frames = self.disks[i].start(self.now);
                self.send(i + 1, frames);
            }
            self.settle();
            let frames = self.host.start(self.now);
            self.send(0, frames);
            self.settle();
        }

        pub fn send(&mut self, from: usize, frames: Vec<Vec<u8>>) {
            self.queue.extend(frames.into_iter().map(|f| (from, f)));
        }

        pub fn settle(&mut self) {
            let mut rounds = 0;
            while let Some((from, frame)) = self.queue.pop_front() {
                rounds += 1;
                assert!(rounds < 1_000_000, "frames keep bouncing");
                self.route(from, frame);
            }
        }

        fn route(&mut self, from: usize, frame: Vec<u8>) {
            let view = parse_fcoe_frame(&frame).expect("every node sends well-formed frames");
            let h = view.header;
            assert_eq!(view.ethernet.dst_addr, mac_for(h.d_id), "destination MAC is the FPMA of D_ID");
            if h.s_id != FcId::UNASSIGNED {
                assert_eq!(
                    view.ethernet.src_addr,
                    MacAddr::fpma(FC_MAP, h.s_id),
                    "source MAC is the FPMA of S_ID"
                );
            }
            let tapped = Tapped { from, header: h, payload: view.payload.to_vec() };
            if let Some(filter) = self.drop_if.as_mut()
                && filter(&tapped)
            {
                self.dropped_by_filter += 1;
                return;
            }
            self.tap.push(tapped);
            if h.d_id.0 >= 0xFF_FFF0 {
                let replies = self.fabric(from, &h, view.payload);
                for reply in replies {
                    self.deliver(from, reply);
                }
            } else if let Some(entry) = self.names.get(&h.d_id.0).copied() {
                self.deliver(entry.node, frame);
            }
        }

        pub fn deliver(&mut self, to: usize, frame: Vec<u8>) {
            let out = if to == 0 {
                self.host.receive(self.now, &frame)
            } else {
                self.disks[to - 1].receive(self.now, &frame)
            };
            self.send(to, out);
        }

        /// The fabric's answer to a frame for a well-known address.
        fn fabric(&mut self, from: usize, h: &FcHeaderRepr, payload: &[u8]) -> Vec<Vec<u8>> {
            let mut fabric_params = LoginParams::n_port(FABRIC_NAME, FABRIC_NAME);
            fabric_params.common_features |= common_features::F_PORT;
            match (h.d_id, h.fc_type) {
                (FcId::FABRIC_LOGIN, fc_type::ELS) => {
                    let Ok(ElsRepr::Flogi(params)) = ElsRepr::parse(payload) else { return Vec::new() };
                    let assigned = 0x01_0001 + from as u32;
                    let entry = NameEntry {
                        node: from,
                        port_name: params.port_name,
                        node_name: params.node_name,
                        fcp: false,
                    };
                    self.names.insert(assigned, entry);
                    vec![reply(
                        h,
                        FcId(assigned),
                        r_ctl::ELS_REPLY,
                        fc_type::ELS,
                        &ElsRepr::AccLogin(fabric_params),
                    )]
                }
                (FcId::DIRECTORY, fc_type::ELS) => {
                    vec![reply(h, h.s_id, r_ctl::ELS_REPLY, fc_type::ELS, &ElsRepr::AccLogin(fabric_params))]
                }
                (FcId::DIRECTORY, fc_type::CT) => self.name_server(h, payload).into_iter().collect(),
                _ => Vec::new(),
            }
        }

        fn name_server(&mut self, h: &FcHeaderRepr, payload: &[u8]) -> Option<Vec<u8>> {
            let (ct, body) = CtHeaderRepr::parse(payload).ok()?;
            let request = NsRequest::parse(ct.command, body).ok()?;
            let me = h.s_id.0;
            let ids: Vec<FcId> = self.names.iter().filter(|(_, e)| e.fcp).map(|(id, _)| FcId(*id)).collect();
            let accept = match request {
                NsRequest::RftId { fc4_types, .. } => {
                    self.names.get_mut(&me)?.fcp = fc4_types_contains(&fc4_types, fc_type::FCP);
                    NsAccept::Registered
                }
                NsRequest::RnnId { node_name, .. } => {
                    self.names.get_mut(&me)?.node_name = node_name;
                    NsAccept::Registered
                }
                NsRequest::RpnId { .. } => NsAccept::Registered,
                NsRequest::GidFt { .. } if !ids.is_empty() => NsAccept::PortIds(PortIdList::Ids(&ids)),
                NsRequest::GpnId { port_id } if self.names.contains_key(&port_id.0) => {
                    NsAccept::PortName(self.names[&port_id.0].port_name)
                }
                NsRequest::GnnId { port_id } if self.names.contains_key(&port_id.0) => {
                    NsAccept::NodeName(self.names[&port_id.0].node_name)
                }
                _ => {
                    let reject =
                        CtHeaderRepr::name_server_reject(0x09, reject_explanation::PORT_ID_NOT_REGISTERED);
                    return Some(reply(h, h.s_id, r_ctl::SOLICITED_CONTROL, fc_type::CT, &reject));
                }
            };
            let payload = Concat(CtHeaderRepr::name_server_accept(), accept);
            Some(reply(h, h.s_id, r_ctl::SOLICITED_CONTROL, fc_type::CT, &payload))
        }

        /// The FC_ID node `node` was assigned.
        pub fn fc_id_of(&self, node: usize) -> FcId {
            self.names.iter().find(|(_, e)| e.node == node).map(|(id, _)| FcId(*id)).expect("node logged in")
        }

        pub fn next_timer(&self) -> Option<u64> {
            let disks = self.disks.iter().filter_map(DiskTarget::next_timer).min();
            [self.host.next_timer(), disks].into_iter().flatten().min()
        }

        /// Runs timers due at `now`.
        fn fire(&mut self) {
            let out = self.host.on_timer(self.now);
            self.send(0, out);
            for i in 0..self.disks.len() {
                let out = self.disks[i].on_timer(self.now);
                self.send(i + 1, out);
            }
        }

        /// Delivers frames and fires timers until `done` holds or nothing is due before `limit`.
        pub fn run_until(&mut self, limit: u64, done: impl Fn(&Bench) -> bool) -> bool {
            for _ in 0..1_000_000 {
                self.settle();
                if done(self) {
                    return true;
                }
                match self.next_timer() {
                    Some(at) if at <= limit => {
                        self.now = self.now.max(at);
                        self.fire();
                    }
                    _ => return false,
                }
            }
            panic!("timers keep firing at the same time");
        }

        /// Runs for `ns` of virtual time.
        pub fn run_for(&mut self, ns: u64) {
            let end = self.now + ns;
            self.run_until(end, |_| false);
            self.now = self.now.max(end);
        }

        /// Submits a request to disk 0, LUN 0.
        pub fn submit(&mut self, op: HostOp) -> RequestId {
            let request = HostRequest { target: disk_wwpn(0), lun: 0, op };
            let (id, frames) = self.host.submit(self.now, request).expect("request accepted");
            self.send(0, frames);
            id
        }

        /// Submits and runs until the request completes.
        pub fn io(&mut self, op: HostOp) -> Completion {
            let id = self.submit(op);
            self.wait(id)
        }

        pub fn wait(&mut self, id: RequestId) -> Completion {
            let mut done = Vec::new();
            loop {
                let limit = self.now + 10_000_000_000;
                self.run_until(limit, |b| b.host.completions.iter().any(|c| c.id == id));
                while let Some(c) = self.host.poll_completion() {
                    done.push(c);
                }
                if let Some(at) = done.iter().position(|c| c.id == id) {
                    let completion = done.remove(at);
                    self.host.completions.extend(done);
                    return completion;
                }
                assert!(self.next_timer().is_some(), "request {id:?} never completes");
            }
        }

        /// Frames in the tap matching R_CTL and TYPE.
        pub fn tapped(&self, r_ctl: u8, fc_type: u8) -> Vec<&Tapped> {
            self.tap.iter().filter(|t| t.header.r_ctl == r_ctl && t.header.fc_type == fc_type).collect()
        }
    }

    /// A frame from the fabric (the well-known address `h` was sent to) answering `h`.
    fn reply<W: WireEmit + ?Sized>(
        h: &FcHeaderRepr,
        to: FcId,
        r_ctl: u8,
        fc_type: u8,
        payload: &W,
    ) -> Vec<u8> {
        let header = FcHeaderRepr {
            r_ctl,
            d_id: to,
            s_id: h.d_id,
            fc_type,
            f_ctl: F_CTL_FINAL_REPLY,
            seq_cnt: 0,
            rx_id: 0xFFFF,
            ..*h
        };
        frame_with_macs(&header, FABRIC_MAC, payload)
    }

    /// A frame built outside any node (tests forge frames with it).
    pub(crate) fn forge<W: WireEmit + ?Sized>(header: &FcHeaderRepr, payload: &W) -> Vec<u8> {
        frame_with_macs(header, MacAddr::fpma(FC_MAP, header.s_id), payload)
    }

    fn frame_with_macs<W: WireEmit + ?Sized>(header: &FcHeaderRepr, src: MacAddr, payload: &W) -> Vec<u8> {
        let eth = EthernetRepr { dst_addr: mac_for(header.d_id), src_addr: src, vlan: None, ethertype: 0 };
        let mut buf = vec![0u8; fcoe_frame_len(&eth, payload.buffer_len())];
        let sof = if header.seq_cnt == 0 { Sof::I3 } else { Sof::N3 };
        let n = emit_fcoe_frame(&mut buf, &eth, &FcoeRepr { sof, eof: Eof::T }, header, payload)
            .expect("test frame");
        buf.truncate(n);
        buf
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use dve_wire::bls::BlsRepr;
    use dve_wire::els::{ElsRepr, prli_fcp};
    use dve_wire::fc::{FcHeaderRepr, FcId, f_ctl, fc_type, r_ctl};
    use dve_wire::fcp::{FcpCmndRepr, FcpRspRepr, FcpXferRdyRepr, Residual};
    use dve_wire::scsi::cdb::Cdb;
    use dve_wire::scsi::opcode;
    use dve_wire::scsi::sense::{Asc, SenseKey, SenseRepr};
    use dve_wire::scsi::status;
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::nport::{NPort, fc_header};
    use super::testbed::{
        Bench, IO_TIMEOUT_NS, MAX_RETRIES, Tapped, disk_config, disk_wwpn, forge, host_config,
    };
    use super::*;
    use crate::disk::DiskMode;

    fn pattern(seed: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add(seed ^ (i >> 9) as u8)).collect()
    }

    fn outcome(c: &Completion) -> &IoOutcome {
        c.result.as_ref().expect("the request succeeds")
    }

    fn commands(bench: &Bench) -> Vec<(u16, Vec<u8>)> {
        bench
            .tapped(r_ctl::UNSOLICITED_COMMAND, fc_type::FCP)
            .iter()
            .map(|t| (t.header.ox_id, FcpCmndRepr::parse(&t.payload).expect("FCP_CMND").cdb.to_vec()))
            .collect()
    }

    /// A header from disk 0 to the host on exchange `ox_id`, as the responder.
    fn from_disk(bench: &Bench, r_ctl: u8, fc_type: u8, f_ctl: u32, ox_id: u16) -> FcHeaderRepr {
        FcHeaderRepr {
            s_id: bench.fc_id_of(1),
            ..fc_header(bench.fc_id_of(0), r_ctl, fc_type, f_ctl | f_ctl::EXCHANGE_CONTEXT, ox_id, 0x0042)
        }
    }

    fn forged_status(bench: &Bench, ox_id: u16, scsi_status: u8, sense: Option<SenseRepr>) -> Vec<u8> {
        let mut bytes = [0u8; 64];
        let len = sense.map(|s| s.emit(&mut bytes).expect("sense"));
        let rsp = FcpRspRepr { scsi_status, sense: len.map(|n| &bytes[..n]), ..FcpRspRepr::good() };
        let f = f_ctl::LAST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
        forge(&from_disk(bench, r_ctl::COMMAND_STATUS, fc_type::FCP, f, ox_id), &rsp)
    }

    fn open_exchange(bench: &Bench) -> u16 {
        *bench.host.exchanges.keys().next().expect("an exchange is open")
    }

    #[test]
    fn login_and_discovery_find_the_disk() {
        let bench = Bench::ready();
        let host = &bench.host;
        assert!(host.is_online() && host.is_ready());
        assert_eq!(host.fc_id(), Some(bench.fc_id_of(0).0));
        assert_eq!(host.targets().len(), 1);
        let target = &host.targets()[0];
        assert_eq!(
            (target.port_name, target.fc_id, target.online),
            (disk_wwpn(0), bench.fc_id_of(1).0, true)
        );
        assert_eq!(target.node_name, disk_config(0).node_name);
        let lun = DiscoveredLun {
            lun: 0,
            blocks: 4096,
            block_size: 512,
            vendor: "DVESIM".into(),
            product: "disk0".into(),
            revision: "0001".into(),
        };
        assert_eq!(target.luns, vec![lun]);
        let stats = host.stats();
        assert_eq!((stats.target_logins, stats.dropped_frames, stats.fabric_logins), (1, 0, 1));
        assert!(bench.disks[0].is_online());
        assert_eq!(bench.disks[0].stats().logins, 1);
    }

    #[test]
    fn discovery_speaks_the_protocol() {
        let mut bench = Bench::new(vec![disk_config(0)]);
        bench.start();
        assert!(bench.run_until(1_000_000_000, |b| b.host.is_ready()));
        let from_host: Vec<&Tapped> = bench.tap.iter().filter(|t| t.from == 0).collect();
        let flogi = from_host[0];
        assert_eq!((flogi.header.d_id, flogi.header.s_id), (FcId::FABRIC_LOGIN, FcId::UNASSIGNED));
        assert!(
            matches!(ElsRepr::parse(&flogi.payload), Ok(ElsRepr::Flogi(p)) if p.port_name == host_config().port_name)
        );
        assert_eq!(flogi.header.f_ctl & 0xFF_FFF0, nport::F_CTL_REQUEST);
        let prli = from_host
            .iter()
            .find_map(|t| match ElsRepr::parse(&t.payload) {
                Ok(ElsRepr::Prli(page)) if t.header.fc_type == fc_type::ELS => Some(page),
                _ => None,
            })
            .expect("PRLI sent");
        assert_eq!(prli.service_params & (prli_fcp::INITIATOR | prli_fcp::TARGET), prli_fcp::INITIATOR);
        let cdbs: Vec<u8> = commands(&bench).iter().map(|(_, cdb)| cdb[0]).collect();
        assert_eq!(cdbs, [opcode::REPORT_LUNS, opcode::INQUIRY, opcode::SERVICE_ACTION_IN_16]);
    }

    #[test]
    fn write_then_read_back() {
        let mut bench = Bench::ready();
        let data = pattern(7, 8 * 512);
        let written = bench.io(HostOp::Write { lba: 10, data: Bytes::from(data.clone()) });
        assert!(outcome(&written).is_good());
        assert_eq!((written.retries, outcome(&written).residual), (0, 0));
        assert!(written.completed > written.submitted);
        let read = bench.io(HostOp::Read { lba: 10, blocks: 8 });
        assert_eq!(outcome(&read).data, data);
        assert_eq!(bench.disks[0].read_blocks(10, 8), data);

        let cmnds = bench.tapped(r_ctl::UNSOLICITED_COMMAND, fc_type::FCP);
        let write = FcpCmndRepr::parse(&cmnds[0].payload).unwrap();
        assert_eq!(
            (write.cdb[0], write.wrdata, write.rddata, write.fcp_dl),
            (opcode::WRITE_10, true, false, 4096)
        );
        assert_eq!(cmnds[0].header.f_ctl & 0xFF_FFF0, nport::F_CTL_REQUEST);
        assert_eq!(cmnds[0].header.rx_id, 0xFFFF);
        let read_cmnd = FcpCmndRepr::parse(&cmnds[1].payload).unwrap();
        assert_eq!((read_cmnd.cdb[0], read_cmnd.wrdata, read_cmnd.rddata), (opcode::READ_10, false, true));

        let data_frames = bench.tapped(r_ctl::SOLICITED_DATA, fc_type::FCP);
        let (out, back): (Vec<&&Tapped>, Vec<&&Tapped>) = data_frames.iter().partition(|t| t.from == 0);
        for frames in [&out, &back] {
            let offsets: Vec<u32> = frames.iter().map(|t| t.header.parameter).collect();
            assert_eq!(offsets, [0, 2048]);
            assert!(frames.iter().all(|t| t.header.f_ctl & f_ctl::RELATIVE_OFFSET != 0));
            assert_eq!(frames.iter().map(|t| t.header.seq_cnt).collect::<Vec<_>>(), [0, 1]);
            assert_eq!(frames[0].header.seq_id, frames[1].header.seq_id);
            assert_eq!(frames[0].header.f_ctl & f_ctl::END_SEQUENCE, 0);
            assert_ne!(frames[1].header.f_ctl & f_ctl::END_SEQUENCE, 0);
        }
        assert_ne!(out[1].header.f_ctl & f_ctl::SEQUENCE_INITIATIVE, 0, "the host hands the initiative back");
        assert!(back.iter().all(|t| t.header.is_from_responder()));
        let rsp = bench.tapped(r_ctl::COMMAND_STATUS, fc_type::FCP);
        assert!(rsp.iter().all(|t| t.header.f_ctl & f_ctl::LAST_SEQUENCE != 0));
    }

    #[test]
    fn sixteen_byte_cdbs_when_the_lba_or_length_needs_them() {
        let mut bench = Bench::ready_with(crate::disk::DiskConfig { blocks: 1 << 33, ..disk_config(0) });
        let lba = (1u64 << 32) + 5;
        let data = pattern(3, 3 * 512);
        assert!(outcome(&bench.io(HostOp::Write { lba, data: Bytes::from(data.clone()) })).is_good());
        assert_eq!(outcome(&bench.io(HostOp::Read { lba, blocks: 3 })).data, data);
        let opcodes: Vec<u8> = commands(&bench).iter().map(|(_, cdb)| cdb[0]).collect();
        assert_eq!(opcodes, [opcode::WRITE_16, opcode::READ_16]);
        assert!(
            matches!(read_write_cdb(false, 5, 70_000), Cdb::Read16(f) if f.lba == 5 && f.length == 70_000)
        );
        assert!(matches!(read_write_cdb(true, 5, 8), Cdb::Write10(f) if f.lba == 5 && f.length == 8));
    }

    fn burst_test(max_burst: u32, blocks: usize, expected: &[(u32, u32)]) {
        let mut bench = Bench::ready_with(crate::disk::DiskConfig { max_burst, ..disk_config(0) });
        let data = pattern(9, blocks * 512);
        assert!(outcome(&bench.io(HostOp::Write { lba: 100, data: Bytes::from(data.clone()) })).is_good());
        let asked: Vec<(u32, u32)> = bench
            .tapped(r_ctl::DATA_DESCRIPTOR, fc_type::FCP)
            .iter()
            .map(|t| FcpXferRdyRepr::parse(&t.payload).map(|r| (r.data_ro, r.burst_len)).unwrap())
            .collect();
        assert_eq!(asked, expected);
        // Each burst is one sequence of frames of at most 2048 bytes, exactly covering it.
        let sent: Vec<&Tapped> =
            bench.tapped(r_ctl::SOLICITED_DATA, fc_type::FCP).into_iter().filter(|t| t.from == 0).collect();
        let mut at = 0;
        for &(ro, len) in expected {
            let frames: Vec<&&Tapped> =
                sent.iter().filter(|t| t.header.parameter >= ro && t.header.parameter < ro + len).collect();
            assert!(
                frames.iter().all(|t| t.payload.len() <= 2048 && t.header.seq_id == frames[0].header.seq_id)
            );
            assert_eq!(frames.iter().map(|t| t.payload.len() as u32).sum::<u32>(), len);
            let last = frames.last().unwrap().header.f_ctl;
            assert_eq!(
                last & (f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE),
                f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE
            );
            for frame in &frames {
                assert_eq!(frame.header.parameter, at);
                at += frame.payload.len() as u32;
            }
        }
        assert_eq!(outcome(&bench.io(HostOp::Read { lba: 100, blocks: blocks as u32 })).data, data);
    }

    #[test]
    fn writes_send_exactly_the_unaligned_bursts_asked_for() {
        burst_test(1000, 7, &[(0, 1000), (1000, 1000), (2000, 1000), (3000, 584)]);
        burst_test(5000, 16, &[(0, 5000), (5000, 3192)]);
        burst_test(0, 5, &[(0, 2560)]);
    }

    #[test]
    fn an_xfer_rdy_beyond_the_data_is_dropped() {
        let mut bench = Bench::ready();
        bench.disks[0].set_mode(DiskMode::Hang);
        bench.submit(HostOp::Write { lba: 0, data: Bytes::from(vec![1; 512]) });
        bench.settle();
        let ox_id = open_exchange(&bench);
        let f = f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
        let header = from_disk(&bench, r_ctl::DATA_DESCRIPTOR, fc_type::FCP, f, ox_id);
        let dropped = bench.host.stats().dropped_frames;
        for (data_ro, burst_len) in [(0, 513), (512, 1), (0, 0), (u32::MAX, 2)] {
            let frame = forge(&header, &FcpXferRdyRepr { data_ro, burst_len });
            assert!(bench.host.receive(bench.now, &frame).is_empty());
        }
        assert_eq!(bench.host.stats().dropped_frames, dropped + 4);
        let frame = forge(&header, &FcpXferRdyRepr { data_ro: 256, burst_len: 256 });
        assert_eq!(bench.host.receive(bench.now, &frame).len(), 1, "a burst inside the data is sent");
    }

    #[test]
    fn a_hung_command_is_aborted_and_retried_on_a_fresh_exchange() {
        let mut bench = Bench::ready();
        bench.disks[0].set_mode(DiskMode::Hang);
        let id = bench.submit(HostOp::Read { lba: 0, blocks: 1 });
        assert!(bench.run_until(bench.now + 10 * IO_TIMEOUT_NS, |b| b.host.stats().retries == 1));
        // The retry went to the hung disk too; it gets aborted and retried once more.
        bench.disks[0].set_mode(DiskMode::Healthy);
        let done = bench.wait(id);
        assert!(outcome(&done).is_good());
        assert_eq!(done.retries, 2);
        let stats = bench.host.stats();
        assert_eq!((stats.timeouts, stats.aborts, stats.retries), (2, 2, 2));
        let abts = bench.tapped(r_ctl::BLS_ABTS, fc_type::BLS);
        let accepted = bench.tapped(r_ctl::BLS_BA_ACC, fc_type::BLS);
        assert_eq!((abts.len(), accepted.len()), (2, 2));
        let oxes: Vec<u16> = commands(&bench).iter().map(|(ox, _)| *ox).collect();
        assert_eq!(oxes.len(), 3);
        assert_eq!(abts.iter().map(|t| t.header.ox_id).collect::<Vec<_>>(), oxes[..2]);
        assert!(oxes[0] != oxes[1] && oxes[1] != oxes[2] && oxes[0] != oxes[2]);
        assert_eq!(bench.disks[0].stats().aborts, 2);
        assert_eq!(done.latency(), 2 * IO_TIMEOUT_NS + (done.latency() - 2 * IO_TIMEOUT_NS));
        assert!(done.latency() >= 2 * IO_TIMEOUT_NS);
    }

    #[test]
    fn a_dead_target_times_out_after_every_retry() {
        let mut bench = Bench::ready();
        bench.disks[0].set_mode(DiskMode::Dead);
        let done = bench.io(HostOp::Read { lba: 0, blocks: 1 });
        assert_eq!(done.result, Err(IoFailure::TimedOut));
        assert_eq!(done.retries, MAX_RETRIES);
        let attempts = u64::from(MAX_RETRIES) + 1;
        let stats = bench.host.stats();
        assert_eq!((stats.aborts, stats.timeouts, stats.failed), (attempts, 2 * attempts, 1));
        assert_eq!(
            done.latency(),
            2 * IO_TIMEOUT_NS * attempts,
            "each attempt: a timeout, then one for the ABTS"
        );
        assert_eq!(bench.host.exchanges.len(), 0);
        assert_eq!(bench.host.next_timer(), None);
    }

    #[test]
    fn unit_attention_is_retried_at_once() {
        let mut bench = Bench::ready();
        let mut first = true;
        bench.drop_if = Some(Box::new(move |t| {
            let hit = first && t.header.r_ctl == r_ctl::UNSOLICITED_COMMAND;
            first &= !hit;
            hit
        }));
        let id = bench.submit(HostOp::Read { lba: 0, blocks: 1 });
        bench.settle();
        let ox_id = open_exchange(&bench);
        let sense = SenseRepr::fixed(SenseKey::UnitAttention, Asc::POWER_ON_RESET);
        let frame = forged_status(&bench, ox_id, status::CHECK_CONDITION, Some(sense));
        bench.deliver(0, frame);
        let done = bench.wait(id);
        assert!(outcome(&done).is_good());
        assert_eq!((done.retries, bench.host.stats().retries), (1, 1));
        assert_ne!(commands(&bench)[0].0, ox_id);
    }

    #[test]
    fn busy_is_retried_after_a_pause_until_retries_run_out() {
        let mut bench = Bench::ready();
        bench.drop_if = Some(Box::new(|t| t.header.r_ctl == r_ctl::UNSOLICITED_COMMAND));
        let id = bench.submit(HostOp::Read { lba: 0, blocks: 1 });
        for attempt in 0..=MAX_RETRIES {
            assert!(bench.run_until(bench.now + IO_TIMEOUT_NS / 2, |b| !b.host.exchanges.is_empty()));
            let frame = forged_status(&bench, open_exchange(&bench), status::BUSY, None);
            let sent_at = bench.now;
            bench.deliver(0, frame);
            if attempt < MAX_RETRIES {
                assert_eq!(bench.host.next_timer(), Some(sent_at + BUSY_RETRY_DELAY_NS));
            }
        }
        let done = bench.wait(id);
        assert_eq!(outcome(&done).status, status::BUSY, "the last status is reported");
        assert_eq!(done.retries, MAX_RETRIES);
    }

    #[test]
    fn descriptor_sense_is_decoded_and_medium_errors_are_not_retried() {
        let mut bench = Bench::ready();
        bench.drop_if = Some(Box::new(|t| t.header.r_ctl == r_ctl::UNSOLICITED_COMMAND));
        let id = bench.submit(HostOp::Read { lba: 0, blocks: 1 });
        bench.settle();
        let sense = SenseRepr {
            information: Some(7),
            ..SenseRepr::descriptor(SenseKey::MediumError, Asc::UNRECOVERED_READ_ERROR)
        };
        let frame = forged_status(&bench, open_exchange(&bench), status::CHECK_CONDITION, Some(sense));
        bench.deliver(0, frame);
        let done = bench.wait(id);
        assert_eq!(outcome(&done).sense, Some((0x03, 0x11, 0x00)));
        assert_eq!(done.retries, 0);
    }

    #[test]
    fn a_lost_read_data_frame_is_caught_and_the_read_retried() {
        let mut bench = Bench::ready();
        let data = pattern(5, 16 * 512);
        assert!(outcome(&bench.io(HostOp::Write { lba: 0, data: Bytes::from(data.clone()) })).is_good());
        let mut first = true;
        bench.drop_if = Some(Box::new(move |t| {
            let hit = first && t.from == 1 && t.header.r_ctl == r_ctl::SOLICITED_DATA;
            first &= !hit;
            hit
        }));
        let done = bench.io(HostOp::Read { lba: 0, blocks: 16 });
        assert_eq!(outcome(&done).data, data);
        assert_eq!(done.retries, 1);
    }

    #[test]
    fn a_target_that_lost_the_login_is_logged_in_again() {
        let mut bench = Bench::ready();
        // A power cycle: the disk forgets every login.
        bench.disks[0].set_mode(DiskMode::Dead);
        bench.disks[0].set_mode(DiskMode::Healthy);
        let ids: Vec<RequestId> = (0..3).map(|i| bench.submit(HostOp::Read { lba: i, blocks: 1 })).collect();
        for id in ids {
            let done = bench.wait(id);
            assert!(outcome(&done).is_good());
            assert_eq!(done.retries, 1);
        }
        let stats = bench.host.stats();
        assert_eq!((stats.target_logouts, stats.target_logins), (1, 2));
        assert_eq!(bench.disks[0].stats().logouts_sent, 1, "one LOGO while it is outstanding");
        assert!(bench.host.is_ready() && bench.host.targets()[0].online);
    }

    #[test]
    fn rediscovery_rescans_and_keeps_the_target() {
        let mut bench = Bench::ready();
        let frames = bench.host.rediscover(bench.now);
        bench.send(0, frames);
        assert!(bench.run_until(bench.now + IO_TIMEOUT_NS, |b| b.host.is_ready()));
        assert_eq!(bench.host.targets().len(), 1);
        assert_eq!(bench.host.targets()[0].luns.len(), 1);
        assert_eq!(commands(&bench).len(), 3, "REPORT LUNS, INQUIRY, READ CAPACITY again");
    }

    #[test]
    fn any_scsi_command_goes_through() {
        let mut bench = Bench::ready();
        let tur = bench.io(HostOp::Command { cdb: vec![0; 6], data_out: Vec::new(), data_in_len: 0 });
        assert!(outcome(&tur).is_good());
        let serial = bench.io(HostOp::Command {
            cdb: vec![0x12, 1, 0x80, 0, 255, 0],
            data_out: Vec::new(),
            data_in_len: 255,
        });
        let serial = outcome(&serial);
        assert_eq!(&serial.data[4..], format!("{:016X}", disk_wwpn(0)).as_bytes());
        assert_eq!(serial.residual, 255 - 20);
        let write10 = vec![0x2A, 0, 0, 0, 0, 9, 0, 0, 1, 0];
        let written = bench.io(HostOp::Command { cdb: write10, data_out: vec![0xAB; 512], data_in_len: 0 });
        assert!(outcome(&written).is_good());
        assert_eq!(bench.disks[0].read_blocks(9, 1), vec![0xAB; 512]);
    }

    #[test]
    fn submit_refuses_what_it_cannot_send() {
        let mut offline = Initiator::new(host_config());
        let read = HostRequest { target: disk_wwpn(0), lun: 0, op: HostOp::Read { lba: 0, blocks: 1 } };
        assert_eq!(offline.submit(0, read.clone()).unwrap_err(), SubmitError::Offline);
        let mut bench = Bench::ready();
        let now = bench.now;
        let mut refuse = |target: u64, lun: u16, op: HostOp| {
            bench.host.submit(now, HostRequest { target, lun, op }).unwrap_err()
        };
        let t = disk_wwpn(0);
        assert_eq!(refuse(7, 0, read.op.clone()), SubmitError::UnknownTarget(7));
        assert_eq!(refuse(t, 3, read.op.clone()), SubmitError::UnknownLun { target: t, lun: 3 });
        assert_eq!(refuse(t, 20_000, read.op.clone()), SubmitError::InvalidLun(20_000));
        let odd = HostOp::Write { lba: 0, data: Bytes::from(vec![0; 100]) };
        assert_eq!(refuse(t, 0, odd), SubmitError::NotWholeBlocks { len: 100, block_size: 512 });
        let empty = HostOp::Write { lba: 0, data: Bytes::new() };
        assert_eq!(refuse(t, 0, empty), SubmitError::NotWholeBlocks { len: 0, block_size: 512 });
        let command =
            |cdb: Vec<u8>, data_out: Vec<u8>, data_in_len| HostOp::Command { cdb, data_out, data_in_len };
        assert_eq!(refuse(t, 0, command(Vec::new(), Vec::new(), 0)), SubmitError::BadCdbLength(0));
        assert_eq!(refuse(t, 0, command(vec![0; 17], Vec::new(), 0)), SubmitError::BadCdbLength(17));
        assert_eq!(refuse(t, 0, command(vec![0; 6], vec![1], 1)), SubmitError::Bidirectional);
        let huge = HostOp::Read { lba: 0, blocks: u32::MAX };
        assert_eq!(refuse(t, 0, huge), SubmitError::TooLarge(u64::from(u32::MAX) * 512));
        assert_eq!(bench.host.in_flight(), 0);
    }

    #[test]
    fn malformed_and_unexpected_frames_are_counted_and_dropped() {
        let mut bench = Bench::ready();
        let before = bench.host.stats().dropped_frames;
        let status = forged_status(&bench, 0x7777, status::GOOD, None);
        let mut bad_crc = status.clone();
        let at = bad_crc.len() - 9;
        bad_crc[at] ^= 1;
        let mut elsewhere = from_disk(&bench, r_ctl::COMMAND_STATUS, fc_type::FCP, f_ctl::END_SEQUENCE, 1);
        elsewhere.d_id = FcId(0x0A_0A0A);
        let responder = f_ctl::LAST_SEQUENCE | f_ctl::END_SEQUENCE;
        let frames = [
            Vec::new(),
            vec![0xFF; 10],
            vec![0; 100],
            bad_crc,
            status,
            forge(&elsewhere, &FcpRspRepr::good()),
            forge(
                &from_disk(&bench, r_ctl::DATA_DESCRIPTOR, fc_type::FCP, 0, 0x7777),
                &FcpXferRdyRepr { data_ro: 0, burst_len: 512 },
            ),
            forge(&from_disk(&bench, r_ctl::ELS_REPLY, fc_type::ELS, responder, 0x7777), &ElsRepr::Acc),
            forge(
                &from_disk(&bench, r_ctl::BLS_BA_ACC, fc_type::BLS, responder, 0x7777),
                &BlsRepr::BaAcc { seq_id: None, ox_id: 0x7777, rx_id: 1, low_seq_cnt: 0, high_seq_cnt: 0 },
            ),
            forge(&from_disk(&bench, r_ctl::SOLICITED_DATA, fc_type::FCP, 0, 0x7777), &[1u8; 64][..]),
            forge(&from_disk(&bench, 0x44, 0x99, 0, 1), &[0u8; 8][..]),
        ];
        for frame in &frames {
            assert!(bench.host.receive(bench.now, frame).is_empty());
        }
        assert_eq!(bench.host.stats().dropped_frames, before + frames.len() as u64);
        assert_eq!(bench.host.poll_completion(), None);
    }

    #[test]
    fn the_same_inputs_give_the_same_frames() {
        let run = || {
            let mut bench = Bench::ready_with(crate::disk::DiskConfig { max_burst: 3000, ..disk_config(0) });
            for i in 0..6u8 {
                bench.submit(HostOp::Write {
                    lba: u64::from(i) * 16,
                    data: Bytes::from(pattern(i, 16 * 512)),
                });
                bench.submit(HostOp::Read { lba: u64::from(i) * 8, blocks: 24 });
            }
            bench.run_for(IO_TIMEOUT_NS);
            bench.tap.iter().map(|t| (t.from, t.header, t.payload.clone())).collect::<Vec<_>>()
        };
        let first = run();
        assert!(first.len() > 100);
        assert_eq!(first, run());
    }

    #[test]
    fn ox_ids_are_distinct_wrap_and_skip_those_in_use() {
        let mut port: NPort<()> = NPort::new([2, 0, 0, 0, 0, 9], 1, 2);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..0xFFFE {
            let ox = port.allocate_ox_id().expect("free ids remain");
            assert_ne!(ox, 0xFFFF);
            assert!(seen.insert(ox));
        }
        assert_eq!(port.allocate_ox_id(), Some(0), "0 is the last one free");
        assert_eq!(port.allocate_ox_id(), None);
        port.release_ox_id(77);
        assert_eq!(port.allocate_ox_id(), Some(77));
    }

    fn interesting_r_ctl() -> impl Strategy<Value = u8> {
        prop_oneof![
            Just(r_ctl::SOLICITED_DATA),
            Just(r_ctl::DATA_DESCRIPTOR),
            Just(r_ctl::COMMAND_STATUS),
            Just(r_ctl::UNSOLICITED_COMMAND),
            Just(r_ctl::ELS_REQUEST),
            Just(r_ctl::ELS_REPLY),
            Just(r_ctl::SOLICITED_CONTROL),
            Just(r_ctl::BLS_ABTS),
            Just(r_ctl::BLS_BA_ACC),
            Just(r_ctl::BLS_BA_RJT),
            any::<u8>(),
        ]
    }

    fn interesting_type() -> impl Strategy<Value = u8> {
        prop_oneof![
            Just(fc_type::FCP),
            Just(fc_type::ELS),
            Just(fc_type::BLS),
            Just(fc_type::CT),
            any::<u8>()
        ]
    }

    /// A payload that is random bytes or a well-formed IU with random fields.
    fn interesting_payload() -> impl Strategy<Value = Vec<u8>> {
        let iu = |w: &dyn WireEmit| {
            let mut b = vec![0u8; w.buffer_len()];
            w.emit(&mut b).map(|_| b).unwrap_or_default()
        };
        prop_oneof![
            vec(any::<u8>(), 0..80),
            (any::<u32>(), any::<u32>())
                .prop_map(move |(data_ro, burst_len)| iu(&FcpXferRdyRepr { data_ro, burst_len })),
            (any::<u8>(), 0u8..3, any::<u32>()).prop_map(move |(scsi_status, kind, n)| {
                let residual = [Residual::None, Residual::Under(n), Residual::Over(n)][usize::from(kind)];
                iu(&FcpRspRepr { scsi_status, residual, ..FcpRspRepr::good() })
            }),
            Just(iu(&ElsRepr::Acc)),
            Just(iu(&ElsRepr::Logo(dve_wire::els::LogoRepr { port_id: FcId(1), port_name: 2 }))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic_the_initiator(frames in vec(vec(any::<u8>(), 0..120), 1..8)) {
            let mut host = Initiator::new(host_config());
            let _ = host.start(0);
            for frame in &frames {
                let _ = host.receive(1, frame);
                let _ = host.on_timer(2);
            }
            prop_assert_eq!(host.stats().dropped_frames, frames.len() as u64);
        }

        #[test]
        fn forged_frames_never_panic_a_busy_initiator(
            frames in vec((interesting_r_ctl(), interesting_type(), 0u32..0x100_0000, 0usize..4, any::<u16>(), any::<u32>(), any::<bool>(), interesting_payload()), 1..12)
        ) {
            let mut bench = Bench::ready();
            bench.disks[0].set_mode(DiskMode::Hang);
            bench.submit(HostOp::Read { lba: 0, blocks: 4 });
            bench.submit(HostOp::Write { lba: 8, data: Bytes::from(vec![5; 2048]) });
            bench.settle();
            let open: Vec<u16> = bench.host.exchanges.keys().copied().collect();
            for (r_ctl, fc_type, f_ctl, pick, rx_id, parameter, from_disk, payload) in frames {
                let ox_id = open.get(pick).copied().unwrap_or(pick as u16);
                let s_id = if from_disk { bench.fc_id_of(1) } else { FcId(0xFF_FFFC) };
                let header = FcHeaderRepr { s_id, parameter, ..fc_header(bench.fc_id_of(0), r_ctl, fc_type, f_ctl, ox_id, rx_id) };
                let frame = forge(&header, &payload[..]);
                let out = bench.host.receive(bench.now, &frame);
                bench.send(0, out);
                bench.settle();
            }
            bench.disks[0].set_mode(DiskMode::Healthy);
            bench.run_for(20 * IO_TIMEOUT_NS);
            prop_assert_eq!(bench.host.in_flight(), 0, "every request completes one way or another");
        }
    }
}
