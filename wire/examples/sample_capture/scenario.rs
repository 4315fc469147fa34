//! The frames of the sample capture: a host logs in to the fabric through FIP, registers with
//! and queries the name server, logs in to a target and runs INQUIRY, REPORT LUNS, a READ(10),
//! a WRITE(16) with XFER_RDY, a failing READ (CHECK CONDITION), an aborted READ(16) (ABTS,
//! BA_ACC, BA_RJT) and a PRLI that is rejected (LS_RJT); then keep-alive and clear virtual
//! links. Also FDISC (NPIV), TEST UNIT READY with a unit attention in descriptor-format
//! sense, and READ CAPACITY(16). Shared by
//! the `sample-capture` example and the test that decodes it with tshark.

use dve_wire::bls::BlsRepr;
use dve_wire::ct::{self, CtHeaderRepr, NsAccept, NsRequest, PortIdList};
use dve_wire::els::{self, ElsRepr, LoginParams, LogoRepr, LsRjtRepr, PrliPage};
use dve_wire::emit::Concat;
use dve_wire::ethernet::{EthernetRepr, MacAddr, VlanTag};
use dve_wire::fc::{FcHeaderRepr, FcId, UNASSIGNED_X_ID, f_ctl, fc_type, r_ctl};
use dve_wire::fcoe::{Eof, FcoeRepr, Sof};
use dve_wire::fcp::{FcpCmndRepr, FcpRspRepr, FcpXferRdyRepr, Residual, TaskAttribute, lun_from_index};
use dve_wire::fip::{FipDescriptor, FipDescriptors, FipOperation, FipRepr, flags};
use dve_wire::scsi::cdb::{Cdb, Lba10, Lba16};
use dve_wire::scsi::data::{ReadCapacity16Data, ReportLunsData};
use dve_wire::scsi::inquiry::{Designator, Designators, StandardInquiry, VpdPage, VpdRepr};
use dve_wire::scsi::sense::{Asc, SenseKey, SenseRepr};
use dve_wire::scsi::status;
use dve_wire::{WireEmit, emit_fc_frame, emit_fcoe_frame, emit_fip_frame};

/// FC-MAP of the fabric.
pub const FC_MAP: u32 = 0x0E_FC00;
/// The host's ENode MAC.
pub const HOST_ENODE_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
/// The switch's (FCF's) MAC.
pub const FCF_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);
/// The host's N_Port ID, assigned by FLOGI.
pub const HOST_ID: FcId = FcId(0x01_0001);
/// The target's N_Port ID.
pub const TARGET_ID: FcId = FcId(0x01_0002);
/// Host port name.
pub const HOST_WWPN: u64 = 0x2100_0000_0000_0001;
/// Host node name.
pub const HOST_WWNN: u64 = 0x2000_0000_0000_0001;
/// Target port name.
pub const TARGET_WWPN: u64 = 0x5000_0000_0000_0002;
/// Target node name.
pub const TARGET_WWNN: u64 = 0x5000_0000_0000_0001;
/// Switch name.
pub const SWITCH_WWN: u64 = 0x1000_0000_0000_00fe;
/// Block size of the target's LUN.
pub const BLOCK: u32 = 512;

/// What a frame is meant to be, for the test to compare with tshark's decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Innermost protocol tshark should name in `frame.protocols` (e.g. "fip", "fcels",
    /// "fcdns", "fcp", "scsi").
    pub protocol: &'static str,
    /// OX_ID and RX_ID, for FCoE frames.
    pub exchange: Option<(u16, u16)>,
    /// LBA and transfer length of a READ/WRITE command.
    pub rw: Option<(u64, u32)>,
    /// SCSI status of an FCP_RSP.
    pub scsi_status: Option<u8>,
    /// R_CTL, for FCoE frames.
    pub r_ctl: Option<u8>,
    /// Sense key and ASC of a CHECK CONDITION.
    pub sense: Option<(u8, u8)>,
    /// The one expert info Wireshark is known to add to this frame, if any.
    pub known_expert: Option<&'static str>,
}

impl Expected {
    fn of(protocol: &'static str) -> Expected {
        Expected {
            protocol,
            exchange: None,
            rw: None,
            scsi_status: None,
            r_ctl: None,
            sense: None,
            known_expert: None,
        }
    }
}

/// The capture being built: frames with nanosecond timestamps, and what each is meant to be.
#[derive(Debug, Default)]
pub struct Capture {
    /// (timestamp, frame bytes).
    pub frames: Vec<(u64, Vec<u8>)>,
    /// One entry per frame.
    pub expected: Vec<Expected>,
    now: u64,
}

fn host_mac() -> MacAddr {
    MacAddr::fpma(FC_MAP, HOST_ID)
}

fn eth(src: MacAddr, dst: MacAddr) -> EthernetRepr {
    EthernetRepr { dst_addr: dst, src_addr: src, vlan: None, ethertype: 0 }
}

/// One frame of a sequence: its header fields that vary.
struct Hdr {
    r_ctl: u8,
    fc_type: u8,
    s_id: FcId,
    d_id: FcId,
    f_ctl: u32,
    seq_id: u8,
    seq_cnt: u16,
    ox_id: u16,
    rx_id: u16,
    parameter: u32,
}

impl Hdr {
    fn repr(&self) -> FcHeaderRepr {
        FcHeaderRepr {
            r_ctl: self.r_ctl,
            d_id: self.d_id,
            cs_ctl: 0,
            s_id: self.s_id,
            fc_type: self.fc_type,
            f_ctl: self.f_ctl,
            seq_id: self.seq_id,
            df_ctl: 0,
            seq_cnt: self.seq_cnt,
            ox_id: self.ox_id,
            rx_id: self.rx_id,
            parameter: self.parameter,
        }
    }
}

/// F_CTL of a single-frame sequence from the originator that passes the initiative.
const ORIG_SEQ: u32 = f_ctl::FIRST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
/// F_CTL of the responder's last sequence.
const RESP_LAST: u32 =
    f_ctl::EXCHANGE_CONTEXT | f_ctl::LAST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
/// F_CTL of a responder sequence that passes the initiative back.
const RESP_SEQ: u32 = f_ctl::EXCHANGE_CONTEXT | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;

impl Capture {
    fn push(&mut self, frame: Vec<u8>, expected: Expected) {
        self.now += 25_000;
        self.frames.push((self.now, frame));
        self.expected.push(expected);
    }

    fn fip(&mut self, ethernet: EthernetRepr, fip: &FipRepr<'_>) {
        self.fip_with(ethernet, fip, Expected::of("fip"));
    }

    fn fip_with(&mut self, ethernet: EthernetRepr, fip: &FipRepr<'_>, expected: Expected) {
        let mut buf = vec![0u8; 2048];
        let n = emit_fip_frame(&mut buf, &ethernet, fip).expect("FIP frame");
        buf.truncate(n);
        self.push(buf, expected);
    }

    #[allow(clippy::too_many_arguments)]
    fn fcoe<P: WireEmit + ?Sized>(
        &mut self,
        ethernet: EthernetRepr,
        sof: Sof,
        eof: Eof,
        hdr: Hdr,
        payload: &P,
        expected: Expected,
    ) {
        let mut buf = vec![0u8; 2400];
        let n = emit_fcoe_frame(&mut buf, &ethernet, &FcoeRepr { sof, eof }, &hdr.repr(), payload)
            .expect("FCoE frame");
        buf.truncate(n);
        let exchange = Some((hdr.ox_id, hdr.rx_id));
        self.push(buf, Expected { exchange, r_ctl: Some(hdr.r_ctl), ..expected });
    }

    /// A single-frame sequence (SOFi3/EOFt).
    fn single<P: WireEmit + ?Sized>(
        &mut self,
        from_host: bool,
        hdr: Hdr,
        payload: &P,
        protocol: &'static str,
    ) {
        let (src, dst) = if from_host { (host_mac(), FCF_MAC) } else { (FCF_MAC, host_mac()) };
        let expected = Expected::of(protocol);
        self.fcoe(eth(src, dst), Sof::I3, Eof::T, hdr, payload, expected);
    }

    fn els_exchange(&mut self, d_id: FcId, ox_id: u16, rx_id: u16, request: &ElsRepr, reply: &ElsRepr) {
        let req = Hdr {
            r_ctl: r_ctl::ELS_REQUEST,
            fc_type: fc_type::ELS,
            s_id: HOST_ID,
            d_id,
            f_ctl: ORIG_SEQ,
            seq_id: 0,
            seq_cnt: 0,
            ox_id,
            rx_id: UNASSIGNED_X_ID,
            parameter: 0,
        };
        self.single(true, req, request, "fcels");
        let rep = Hdr {
            r_ctl: r_ctl::ELS_REPLY,
            fc_type: fc_type::ELS,
            s_id: d_id,
            d_id: HOST_ID,
            f_ctl: RESP_LAST,
            seq_id: 0,
            seq_cnt: 0,
            ox_id,
            rx_id,
            parameter: 0,
        };
        self.single(false, rep, reply, "fcels");
    }

    fn ct_exchange<A: WireEmit + ?Sized>(
        &mut self,
        ox_id: u16,
        request: &NsRequest,
        reply_header: CtHeaderRepr,
        reply: &A,
    ) {
        let rx_id = 0x0200 + ox_id;
        let req_hdr = CtHeaderRepr::name_server_request(request.command());
        let req = Hdr {
            r_ctl: r_ctl::UNSOLICITED_CONTROL,
            fc_type: fc_type::CT,
            s_id: HOST_ID,
            d_id: FcId::DIRECTORY,
            f_ctl: ORIG_SEQ,
            seq_id: 0,
            seq_cnt: 0,
            ox_id,
            rx_id: UNASSIGNED_X_ID,
            parameter: 0,
        };
        self.single(true, req, &Concat(req_hdr, request), "fcdns");
        let rep = Hdr {
            r_ctl: r_ctl::SOLICITED_CONTROL,
            fc_type: fc_type::CT,
            s_id: FcId::DIRECTORY,
            d_id: HOST_ID,
            f_ctl: RESP_LAST,
            seq_id: 0,
            seq_cnt: 0,
            ox_id,
            rx_id,
            parameter: 0,
        };
        self.single(false, rep, &Concat(reply_header, reply), "fcdns");
    }

    fn command(&mut self, ox_id: u16, cdb: &Cdb, fcp_dl: u32, vlan: Option<VlanTag>) {
        let mut cdb16 = [0u8; 16];
        cdb.emit(&mut cdb16).expect("CDB");
        let write = cdb.data_direction() == dve_wire::scsi::cdb::DataDirection::Write;
        let cmnd = FcpCmndRepr {
            lun: lun_from_index(0),
            crn: 0,
            priority: 0,
            task_attribute: TaskAttribute::Simple,
            task_management: 0,
            rddata: !write && fcp_dl > 0,
            wrdata: write,
            cdb: &cdb16,
            fcp_dl,
        };
        let hdr = Hdr {
            r_ctl: r_ctl::UNSOLICITED_COMMAND,
            fc_type: fc_type::FCP,
            s_id: HOST_ID,
            d_id: TARGET_ID,
            f_ctl: ORIG_SEQ,
            seq_id: 1,
            seq_cnt: 0,
            ox_id,
            rx_id: UNASSIGNED_X_ID,
            parameter: 0,
        };
        let rw = cdb.read_write_extent();
        let expected = Expected { rw, ..Expected::of("scsi") };
        self.fcoe(EthernetRepr { vlan, ..eth(host_mac(), FCF_MAC) }, Sof::I3, Eof::T, hdr, &cmnd, expected);
    }

    /// Data frames of one sequence, 2048 bytes each, from the target (read) or host (write).
    fn data(&mut self, ox_id: u16, rx_id: u16, from_target: bool, data: &[u8], vlan: Option<VlanTag>) {
        let chunks: Vec<&[u8]> = data.chunks(2048).collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.iter().enumerate() {
            let mut fctl = f_ctl::RELATIVE_OFFSET;
            if from_target {
                fctl |= f_ctl::EXCHANGE_CONTEXT;
            }
            if i == last {
                fctl |= f_ctl::END_SEQUENCE | if from_target { 0 } else { f_ctl::SEQUENCE_INITIATIVE };
            }
            let (s_id, d_id, src, dst) = if from_target {
                (TARGET_ID, HOST_ID, FCF_MAC, host_mac())
            } else {
                (HOST_ID, TARGET_ID, host_mac(), FCF_MAC)
            };
            let hdr = Hdr {
                r_ctl: r_ctl::SOLICITED_DATA,
                fc_type: fc_type::FCP,
                s_id,
                d_id,
                f_ctl: fctl,
                seq_id: 2,
                seq_cnt: i as u16,
                ox_id,
                rx_id,
                parameter: (i * 2048) as u32,
            };
            let sof = if i == 0 { Sof::I3 } else { Sof::N3 };
            let eof = if i == last { Eof::T } else { Eof::N };
            // Wireshark hands only the frame at relative offset 0 to FCP; the rest stay FC data.
            let expected = Expected::of(if i == 0 { "fcp" } else { "fc" });
            self.fcoe(EthernetRepr { vlan, ..eth(src, dst) }, sof, eof, hdr, *chunk, expected);
        }
    }

    fn xfer_rdy(&mut self, ox_id: u16, rx_id: u16, data_ro: u32, burst_len: u32) {
        let hdr = Hdr {
            r_ctl: r_ctl::DATA_DESCRIPTOR,
            fc_type: fc_type::FCP,
            s_id: TARGET_ID,
            d_id: HOST_ID,
            f_ctl: RESP_SEQ,
            seq_id: 3,
            seq_cnt: 0,
            ox_id,
            rx_id,
            parameter: 0,
        };
        let expected = Expected::of("fcp");
        self.fcoe(
            eth(FCF_MAC, host_mac()),
            Sof::I3,
            Eof::T,
            hdr,
            &FcpXferRdyRepr { data_ro, burst_len },
            expected,
        );
    }

    fn response(&mut self, ox_id: u16, rx_id: u16, rsp: &FcpRspRepr<'_>, vlan: Option<VlanTag>) {
        let hdr = Hdr {
            r_ctl: r_ctl::COMMAND_STATUS,
            fc_type: fc_type::FCP,
            s_id: TARGET_ID,
            d_id: HOST_ID,
            f_ctl: RESP_LAST,
            seq_id: 4,
            seq_cnt: 0,
            ox_id,
            rx_id,
            parameter: 0,
        };
        let sense = rsp.sense.and_then(|s| SenseRepr::parse(s).ok()).map(|s| (s.key as u8, s.asc.asc));
        let expected = Expected { scsi_status: Some(rsp.scsi_status), sense, ..Expected::of("fcp") };
        self.fcoe(EthernetRepr { vlan, ..eth(FCF_MAC, host_mac()) }, Sof::I3, Eof::T, hdr, rsp, expected);
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Builds every frame of the sample capture.
pub fn build() -> Capture {
    let mut c = Capture::default();

    // Fabric login through FIP.
    let sol = [
        FipDescriptor::MacAddress(HOST_ENODE_MAC),
        FipDescriptor::NameIdentifier(HOST_WWNN),
        FipDescriptor::MaxFcoeSize(2158),
    ];
    c.fip(
        eth(HOST_ENODE_MAC, MacAddr::ALL_FCF_MACS),
        &FipRepr {
            operation: FipOperation::DiscoverySolicitation,
            flags: flags::FP,
            descriptors: FipDescriptors::List(&sol),
        },
    );
    let adv = [
        FipDescriptor::Priority(128),
        FipDescriptor::MacAddress(FCF_MAC),
        FipDescriptor::NameIdentifier(SWITCH_WWN),
        FipDescriptor::Fabric { vf_id: 0, fc_map: FC_MAP, fabric_name: SWITCH_WWN },
        FipDescriptor::FkaAdvPeriod { flags: 0, period_ms: 8000 },
    ];
    c.fip(
        eth(FCF_MAC, HOST_ENODE_MAC),
        &FipRepr {
            operation: FipOperation::DiscoveryAdvertisement,
            flags: flags::FP | flags::SOLICITED | flags::AVAILABLE | flags::FCF,
            descriptors: FipDescriptors::List(&adv),
        },
    );
    let mut flogi = [0u8; 256];
    let flogi_hdr = FcHeaderRepr {
        r_ctl: r_ctl::ELS_REQUEST,
        d_id: FcId::FABRIC_LOGIN,
        cs_ctl: 0,
        s_id: FcId::UNASSIGNED,
        fc_type: fc_type::ELS,
        f_ctl: ORIG_SEQ,
        seq_id: 0,
        df_ctl: 0,
        seq_cnt: 0,
        ox_id: 0x0001,
        rx_id: UNASSIGNED_X_ID,
        parameter: 0,
    };
    let n = emit_fc_frame(&mut flogi, &flogi_hdr, &ElsRepr::Flogi(LoginParams::n_port(HOST_WWPN, HOST_WWNN)))
        .expect("FLOGI");
    let req = [FipDescriptor::Flogi(&flogi[..n]), FipDescriptor::MacAddress(MacAddr::default())];
    c.fip(
        eth(HOST_ENODE_MAC, FCF_MAC),
        &FipRepr {
            operation: FipOperation::LinkServiceRequest,
            flags: flags::FP,
            descriptors: FipDescriptors::List(&req),
        },
    );
    let mut acc = [0u8; 256];
    let mut fabric = LoginParams::n_port(0x2000_0000_0000_00fe, SWITCH_WWN);
    fabric.common_features |= els::common_features::F_PORT;
    fabric.csp_word2 = 10_000;
    let acc_hdr = FcHeaderRepr {
        r_ctl: r_ctl::ELS_REPLY,
        d_id: HOST_ID,
        s_id: FcId::FABRIC_LOGIN,
        f_ctl: RESP_LAST,
        rx_id: 0x0100,
        ..flogi_hdr
    };
    let n = emit_fc_frame(&mut acc, &acc_hdr, &ElsRepr::AccLogin(fabric)).expect("FLOGI ACC");
    let rep = [FipDescriptor::Flogi(&acc[..n]), FipDescriptor::MacAddress(host_mac())];
    c.fip(
        eth(FCF_MAC, HOST_ENODE_MAC),
        &FipRepr {
            operation: FipOperation::LinkServiceReply,
            flags: flags::FP,
            descriptors: FipDescriptors::List(&rep),
        },
    );

    // NPIV: a second N_Port ID for the same ENode through FIP FDISC.
    let fdisc_hdr = FcHeaderRepr { ox_id: 0x000a, ..flogi_hdr };
    let n =
        emit_fc_frame(&mut flogi, &fdisc_hdr, &ElsRepr::Fdisc(LoginParams::n_port(HOST_WWPN + 1, HOST_WWNN)))
            .expect("FDISC");
    let req = [FipDescriptor::Fdisc(&flogi[..n]), FipDescriptor::MacAddress(MacAddr::default())];
    c.fip(
        eth(HOST_ENODE_MAC, FCF_MAC),
        &FipRepr {
            operation: FipOperation::LinkServiceRequest,
            flags: flags::FP,
            descriptors: FipDescriptors::List(&req),
        },
    );
    let npiv_id = FcId(HOST_ID.0 + 2);
    let acc_hdr = FcHeaderRepr { d_id: npiv_id, rx_id: 0x010a, ..acc_hdr };
    let n = emit_fc_frame(&mut acc, &acc_hdr, &ElsRepr::AccLogin(fabric)).expect("FDISC ACC");
    let rep = [FipDescriptor::Fdisc(&acc[..n]), FipDescriptor::MacAddress(MacAddr::fpma(FC_MAP, npiv_id))];
    // Wireshark matches an ELS reply to its request by address; it makes an exception for
    // FLOGI from S_ID 0 but not for FDISC, so it cannot tell what this ACC accepts.
    let known_expert = Some("No record of Exchange. Unable to decode ACC");
    c.fip_with(
        eth(FCF_MAC, HOST_ENODE_MAC),
        &FipRepr {
            operation: FipOperation::LinkServiceReply,
            flags: flags::FP,
            descriptors: FipDescriptors::List(&rep),
        },
        Expected { known_expert, ..Expected::of("fip") },
    );

    // Name server: log in, register, query.
    let ns_login = ElsRepr::Plogi(LoginParams::n_port(HOST_WWPN, HOST_WWNN));
    c.els_exchange(
        FcId::DIRECTORY,
        0x0002,
        0x0102,
        &ns_login,
        &ElsRepr::AccLogin(LoginParams::n_port(0x2000_0000_0000_00fc, SWITCH_WWN)),
    );
    let types = ct::fc4_types_with([0; 32], fc_type::FCP);
    let accept = CtHeaderRepr::name_server_accept();
    c.ct_exchange(
        0x0003,
        &NsRequest::RftId { port_id: HOST_ID, fc4_types: types },
        accept,
        &NsAccept::Registered,
    );
    c.ct_exchange(
        0x0004,
        &NsRequest::RpnId { port_id: HOST_ID, port_name: HOST_WWPN },
        accept,
        &NsAccept::Registered,
    );
    c.ct_exchange(
        0x0005,
        &NsRequest::RnnId { port_id: HOST_ID, node_name: HOST_WWNN },
        accept,
        &NsAccept::Registered,
    );
    let targets = [TARGET_ID];
    c.ct_exchange(
        0x0006,
        &NsRequest::GidFt { domain_scope: 0, area_scope: 0, fc_type: fc_type::FCP },
        accept,
        &NsAccept::PortIds(PortIdList::Ids(&targets)),
    );
    c.ct_exchange(0x0007, &NsRequest::GpnId { port_id: TARGET_ID }, accept, &NsAccept::PortName(TARGET_WWPN));
    c.ct_exchange(0x0008, &NsRequest::GnnId { port_id: TARGET_ID }, accept, &NsAccept::NodeName(TARGET_WWNN));
    let reject = CtHeaderRepr::name_server_reject(
        ct::reject_reason::UNABLE_TO_PERFORM,
        ct::reject_explanation::PORT_ID_NOT_REGISTERED,
    );
    c.ct_exchange(0x0009, &NsRequest::GpnId { port_id: FcId(0x01_0099) }, reject, &[][..]);

    // Target login.
    c.els_exchange(
        TARGET_ID,
        0x0010,
        0x0110,
        &ElsRepr::Plogi(LoginParams::n_port(HOST_WWPN, HOST_WWNN)),
        &ElsRepr::AccLogin(LoginParams::n_port(TARGET_WWPN, TARGET_WWNN)),
    );
    let prli = PrliPage {
        fc_type: fc_type::FCP,
        type_ext: 0,
        flags: els::prli_flags::ESTABLISH_IMAGE_PAIR,
        originator_pa: 0,
        responder_pa: 0,
        service_params: els::prli_fcp::INITIATOR | els::prli_fcp::READ_XFER_RDY_DISABLED,
    };
    let prli_acc = PrliPage {
        flags: els::prli_flags::IMAGE_PAIR_ESTABLISHED | 0x01,
        service_params: els::prli_fcp::TARGET | els::prli_fcp::READ_XFER_RDY_DISABLED,
        ..prli
    };
    c.els_exchange(TARGET_ID, 0x0011, 0x0111, &ElsRepr::Prli(prli), &ElsRepr::AccPrli(prli_acc));

    // TEST UNIT READY: the first command after login sees a unit attention, in descriptor format.
    c.command(0x001e, &Cdb::TestUnitReady { control: 0 }, 0, None);
    let ua = SenseRepr::descriptor(SenseKey::UnitAttention, Asc::POWER_ON_RESET);
    let mut ua_bytes = vec![0u8; ua.buffer_len()];
    ua.emit(&mut ua_bytes).expect("sense");
    c.response(
        0x001e,
        0x011e,
        &FcpRspRepr { scsi_status: status::CHECK_CONDITION, sense: Some(&ua_bytes), ..FcpRspRepr::good() },
        None,
    );

    // READ CAPACITY(16).
    c.command(0x001f, &Cdb::ReadCapacity16 { allocation_length: 32, control: 0 }, 32, None);
    let cap = ReadCapacity16Data { last_lba: (1 << 33) - 1, block_len: BLOCK, flags: [0; 4] };
    let mut data = vec![0u8; cap.buffer_len()];
    cap.emit(&mut data).expect("READ CAPACITY data");
    c.data(0x001f, 0x011f, true, &data, None);
    c.response(0x001f, 0x011f, &FcpRspRepr::good(), None);

    // INQUIRY, standard data, tagged with a VLAN.
    let vlan = Some(VlanTag { pcp: 3, dei: false, vid: 100 });
    let inq = StandardInquiry::disk("DVE", "VIRTUAL VOLUME", "0001");
    c.command(
        0x0020,
        &Cdb::Inquiry { evpd: false, page_code: 0, allocation_length: 36, control: 0 },
        36,
        vlan,
    );
    let mut data = vec![0u8; inq.buffer_len()];
    inq.emit(&mut data).expect("INQUIRY data");
    c.data(0x0020, 0x0120, true, &data, vlan);
    c.response(0x0020, 0x0120, &FcpRspRepr::good(), vlan);

    // INQUIRY, device identification VPD page.
    let naa = [0x60u8, 0x01, 0x40, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01];
    let ids = [Designator {
        protocol_id: 0,
        code_set: 1,
        piv: false,
        association: 0,
        designator_type: 3,
        designator: &naa,
    }];
    let vpd = VpdRepr { peripheral: 0, page: VpdPage::DeviceIdentification(Designators::List(&ids)) };
    c.command(
        0x0021,
        &Cdb::Inquiry { evpd: true, page_code: 0x83, allocation_length: 255, control: 0 },
        255,
        None,
    );
    let mut data = vec![0u8; vpd.buffer_len()];
    vpd.emit(&mut data).expect("VPD");
    c.data(0x0021, 0x0121, true, &data, None);
    c.response(
        0x0021,
        0x0121,
        &FcpRspRepr { residual: Residual::Under(255 - data.len() as u32), ..FcpRspRepr::good() },
        None,
    );

    // REPORT LUNS.
    let luns = [lun_from_index(0), lun_from_index(1)];
    c.command(0x0022, &Cdb::ReportLuns { select_report: 0, allocation_length: 4096, control: 0 }, 4096, None);
    let rl = ReportLunsData::List(&luns);
    let mut data = vec![0u8; rl.buffer_len()];
    rl.emit(&mut data).expect("REPORT LUNS data");
    c.data(0x0022, 0x0122, true, &data, None);
    c.response(
        0x0022,
        0x0122,
        &FcpRspRepr { residual: Residual::Under(4096 - data.len() as u32), ..FcpRspRepr::good() },
        None,
    );

    // READ(10): 16 blocks in four data frames.
    let read = Cdb::Read10(Lba10 { lba: 0x1000, length: 16, ..Lba10::default() });
    c.command(0x0030, &read, 16 * BLOCK, None);
    c.data(0x0030, 0x0130, true, &pattern(16 * BLOCK as usize, 1), None);
    c.response(0x0030, 0x0130, &FcpRspRepr::good(), None);

    // WRITE(16) above 2 TiB: XFER_RDY, two data frames, good status.
    let write = Cdb::Write16(Lba16 { lba: 0x1_0000_0000, length: 8, ..Lba16::default() });
    c.command(0x0031, &write, 8 * BLOCK, None);
    c.xfer_rdy(0x0031, 0x0131, 0, 8 * BLOCK);
    c.data(0x0031, 0x0131, false, &pattern(8 * BLOCK as usize, 2), None);
    c.response(0x0031, 0x0131, &FcpRspRepr::good(), None);

    // READ(10) past the end: CHECK CONDITION, ILLEGAL REQUEST / LBA OUT OF RANGE.
    let bad = Cdb::Read10(Lba10 { lba: 0x00ff_ffff, length: 8, ..Lba10::default() });
    c.command(0x0032, &bad, 8 * BLOCK, None);
    let sense = SenseRepr {
        information: Some(0x00ff_ffff),
        ..SenseRepr::fixed(SenseKey::IllegalRequest, Asc::LBA_OUT_OF_RANGE)
    };
    let mut sense_bytes = vec![0u8; sense.buffer_len()];
    sense.emit(&mut sense_bytes).expect("sense");
    let rsp = FcpRspRepr {
        scsi_status: status::CHECK_CONDITION,
        residual: Residual::Under(8 * BLOCK),
        sense: Some(&sense_bytes),
        ..FcpRspRepr::good()
    };
    c.response(0x0032, 0x0132, &rsp, None);

    // READ(16) aborted by ABTS, accepted by BA_ACC.
    let slow = Cdb::Read16(Lba16 { lba: 0x2000, length: 64, ..Lba16::default() });
    c.command(0x0033, &slow, 64 * BLOCK, None);
    let abts = Hdr {
        r_ctl: r_ctl::BLS_ABTS,
        fc_type: fc_type::BLS,
        s_id: HOST_ID,
        d_id: TARGET_ID,
        f_ctl: f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE,
        seq_id: 5,
        seq_cnt: 0,
        ox_id: 0x0033,
        rx_id: 0x0133,
        parameter: 0,
    };
    c.single(true, abts, &BlsRepr::Abts, "fc");
    let ba_acc =
        BlsRepr::BaAcc { seq_id: None, ox_id: 0x0033, rx_id: 0x0133, low_seq_cnt: 0, high_seq_cnt: 0xffff };
    let hdr = Hdr {
        r_ctl: r_ctl::BLS_BA_ACC,
        fc_type: fc_type::BLS,
        s_id: TARGET_ID,
        d_id: HOST_ID,
        f_ctl: RESP_LAST,
        seq_id: 5,
        seq_cnt: 0,
        ox_id: 0x0033,
        rx_id: 0x0133,
        parameter: 0,
    };
    c.single(false, hdr, &ba_acc, "fc");

    // A second ABTS for the exchange already aborted: BA_RJT.
    let abts = Hdr {
        r_ctl: r_ctl::BLS_ABTS,
        fc_type: fc_type::BLS,
        s_id: HOST_ID,
        d_id: TARGET_ID,
        f_ctl: f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE,
        seq_id: 6,
        seq_cnt: 0,
        ox_id: 0x0033,
        rx_id: 0x0133,
        parameter: 0,
    };
    c.single(true, abts, &BlsRepr::Abts, "fc");
    let ba_rjt = BlsRepr::BaRjt {
        reason: dve_wire::bls::reject_reason::LOGICAL_ERROR,
        explanation: dve_wire::bls::reject_explanation::INVALID_OX_RX_ID,
        vendor: 0,
    };
    let hdr = Hdr {
        r_ctl: r_ctl::BLS_BA_RJT,
        fc_type: fc_type::BLS,
        s_id: TARGET_ID,
        d_id: HOST_ID,
        f_ctl: RESP_LAST,
        seq_id: 6,
        seq_cnt: 0,
        ox_id: 0x0033,
        rx_id: 0x0133,
        parameter: 0,
    };
    c.single(false, hdr, &ba_rjt, "fc");

    // Logout, then a PRLI without a login: LS_RJT.
    c.els_exchange(
        TARGET_ID,
        0x0040,
        0x0140,
        &ElsRepr::Logo(LogoRepr { port_id: HOST_ID, port_name: HOST_WWPN }),
        &ElsRepr::Acc,
    );
    let rjt = LsRjtRepr {
        reason: els::reject_reason::LOGICAL_ERROR,
        explanation: els::reject_explanation::LOGIN_REQUIRED,
        vendor: 0,
    };
    c.els_exchange(TARGET_ID, 0x0041, 0x0141, &ElsRepr::Prli(prli), &ElsRepr::LsRjt(rjt));

    // Keep-alive, then the FCF clears the virtual link.
    let ka = [FipDescriptor::MacAddress(HOST_ENODE_MAC)];
    c.fip(
        eth(HOST_ENODE_MAC, FCF_MAC),
        &FipRepr {
            operation: FipOperation::KeepAlive,
            flags: flags::FP,
            descriptors: FipDescriptors::List(&ka),
        },
    );
    let cvl = [
        FipDescriptor::MacAddress(FCF_MAC),
        FipDescriptor::NameIdentifier(SWITCH_WWN),
        FipDescriptor::VxPortId { mac: host_mac(), port_id: HOST_ID, port_name: HOST_WWPN },
    ];
    c.fip(
        eth(FCF_MAC, HOST_ENODE_MAC),
        &FipRepr {
            operation: FipOperation::ClearVirtualLinks,
            flags: flags::FP,
            descriptors: FipDescriptors::List(&cvl),
        },
    );
    c
}
