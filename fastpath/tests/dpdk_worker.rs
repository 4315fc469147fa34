//! A real worker's poll loop over two DPDK ports: FCoE frames for a physical D_ID that
//! arrive on one port leave by the other with the Ethernet addresses rewritten and the FC
//! frame (CRC included) untouched. Each `net_ring` device loops what is sent on it back to
//! itself, so the test injects frames by transmitting on the receiving port and reads the
//! forwarded ones from the other port, which the worker only transmits on.

#![cfg(feature = "dpdk")]

mod dpdk_eal;

use dpdk_eal::eal;

use dve_fastpath::port::{DpdkPort, DpdkPortConfig};
use dve_fastpath::worker::emit::fpma;
use dve_fastpath::worker::run::WorkerMesh;
use dve_fastpath::{PortConfig, Worker, WorkerConfig};
use dve_fp_api::frame::{FRAME_CAPACITY, Frame, FramePool, TxFrame};
use dve_fp_api::ids::{FcId, PortId, RequestId, Timestamp, WorkerId};
use dve_fp_api::mapping::FabricRoute;
use dve_fp_api::message::{MappingEntry, ToFp};
use dve_fp_api::port::PacketIo;
use dve_fp_api::transport::fp_channel;
use dve_wire::ethernet::{EthernetRepr, MacAddr, VlanTag};
use dve_wire::fc::{self, FcHeaderRepr, f_ctl, fc_type, r_ctl};
use dve_wire::fcoe::{Eof, FcoeRepr, Sof};
use dve_wire::stack::{emit_fcoe_frame, parse_fcoe_frame};

/// The disk the route leads to.
const DISK_FC: u32 = 0x02_0001;

/// An FCP_DATA frame from a host to the disk carrying `payload_len` bytes.
fn data_frame(payload_len: usize, ox_id: u16) -> Vec<u8> {
    let header = FcHeaderRepr {
        r_ctl: r_ctl::SOLICITED_DATA,
        d_id: fc::FcId(DISK_FC),
        cs_ctl: 0,
        s_id: fc::FcId(0x01_0001),
        fc_type: fc_type::FCP,
        f_ctl: f_ctl::END_SEQUENCE,
        seq_id: 1,
        df_ctl: 0,
        seq_cnt: 0,
        ox_id,
        rx_id: 0x0042,
        parameter: 0,
    };
    let ethernet = EthernetRepr {
        dst_addr: MacAddr([0x02, 0, 0, 0, 0, 0x10]),
        src_addr: MacAddr([0x0e, 0xfc, 0x00, 0x01, 0x00, 0x01]),
        vlan: Some(VlanTag { pcp: 3, dei: false, vid: 100 }),
        ethertype: 0,
    };
    let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7) as u8).collect();
    let mut buf = vec![0u8; FRAME_CAPACITY];
    let fcoe = FcoeRepr { sof: Sof::I3, eof: Eof::T };
    let len = emit_fcoe_frame(&mut buf, &ethernet, &fcoe, &header, &payload[..]).expect("an FCoE frame");
    buf.truncate(len);
    buf
}

#[test]
fn a_worker_forwards_frames_between_dpdk_ports() {
    let eal = eal();
    let pool = FramePool::new(256, 0);
    let mut ports: Vec<DpdkPort> = ["net_ring0", "net_ring1"]
        .into_iter()
        .zip(0..)
        .map(|(name, id)| {
            DpdkPort::open(&eal, name, DpdkPortConfig::new(PortId(id), pool.clone()))
                .unwrap_or_else(|e| panic!("open {name}: {e}"))
        })
        .collect();
    let port_configs: Vec<PortConfig> = ports
        .iter()
        .map(|port| PortConfig {
            id: port.id(),
            mac: port.mac().expect("a ring device has a MAC address"),
            initiator_fc_id: FcId::new(0x03_0000 + u32::from(port.id().0)).unwrap(),
        })
        .collect();
    let out_mac = port_configs[1].mac;
    let mut worker = Worker::new(WorkerConfig::new(WorkerId(0), port_configs));
    let route = FabricRoute { fc_id: FcId::new(DISK_FC).unwrap(), port: PortId(1) };
    worker.handle_message(
        Timestamp(0),
        ToFp::AddMapping { req: RequestId(1), entry: MappingEntry::Route(route) },
    );
    let mesh = WorkerMesh::new(1, 16);
    let (fp, _cp) = fp_channel(64);
    let mut scratch = Vec::new();

    let sent = [data_frame(2112, 1), data_frame(512, 2)];
    let mut inject: Vec<TxFrame> =
        sent.iter().map(|b| TxFrame::whole(Frame::copy_from(b).unwrap())).collect();
    assert_eq!(ports[0].tx_burst(&mut inject), 2);
    let report = worker.poll(Timestamp(1), &mut ports, &[PortId(0)], &mesh, &fp, &mut scratch);
    assert_eq!((report.frames_in, report.frames_out), (2, 2));

    let mut forwarded = Vec::new();
    assert_eq!(ports[1].rx_burst(&mut forwarded, 8), 2);
    for (got, sent) in forwarded.iter().zip(&sent) {
        let got = got.as_slice();
        assert_eq!(got.len(), sent.len());
        assert_eq!(&got[0..6], &fpma(0x0E_FC00, DISK_FC).0, "to the disk's fabric-provided MAC");
        assert_eq!(&got[6..12], &out_mac.0, "from the output port's own MAC");
        assert_eq!(&got[12..], &sent[12..], "the rest, FC CRC included, unchanged");
        parse_fcoe_frame(got).expect("still a valid FCoE frame");
    }
    assert_eq!(ports[0].rx_burst(&mut forwarded, 8), 0, "nothing loops back to the input port");
    assert_eq!(ports[0].counters().rx_frames, 2);
    assert_eq!(ports[1].counters().tx_frames, 2);
}
