//! Fuzzes the whole-frame parser, Ethernet down to SCSI, and checks that every frame that
//! parses is rebuilt byte for byte (fill bytes and Ethernet padding aside).
#![no_main]

use dve_wire::WireEmit;
use dve_wire::ct::{NsAccept, code};
use dve_wire::scsi::cdb::RwCdb;
use dve_wire::scsi::data::{ReadCapacity10Data, ReadCapacity16Data, ReportLunsData};
use dve_wire::scsi::inquiry::{StandardInquiry, VpdRepr};
use dve_wire::scsi::sense::SenseRepr;
use dve_wire::stack::{FcPayload, Packet, emit_fcoe_frame, emit_fip_frame, parse_packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = parse_packet(data) else { return };
    let mut out = vec![0u8; data.len() + 64];
    match packet {
        Packet::Fcoe { frame, payload } => {
            let fill = frame.fc_range.end - frame.fc_range.start - 24 - frame.payload.len();
            let fill_is_zero = data[frame.fc_range.end - fill..frame.fc_range.end].iter().all(|b| *b == 0);
            if fill_is_zero {
                let n = emit_fcoe_frame(&mut out, &frame.ethernet, &frame.fcoe, &frame.header, frame.payload)
                    .expect("re-emit");
                assert_eq!(&out[..n], data, "FCoE frame does not round-trip");
            }
            match payload {
                FcPayload::FcpCmnd { cmnd, cdb } => {
                    let m = cmnd.emit(&mut out).expect("re-emit FCP_CMND");
                    assert_eq!(&out[..m], frame.payload);
                    if let Some(cdb) = cdb {
                        let m = cdb.emit(&mut out).expect("re-emit CDB");
                        assert_eq!(&out[..m], &cmnd.cdb[..m]);
                    }
                    if let Ok(v) = RwCdb::new_checked(cmnd.cdb) {
                        let _ = (v.lba(), v.transfer_length());
                    }
                }
                FcPayload::FcpData(d) => {
                    let _ = StandardInquiry::parse(d);
                    let _ = VpdRepr::parse(d);
                    let _ = ReportLunsData::parse(d).map(|r| r.iter().count());
                    let _ = ReadCapacity10Data::parse(d);
                    let _ = ReadCapacity16Data::parse(d);
                    let _ = SenseRepr::parse(d);
                }
                FcPayload::Ct { body, .. } => {
                    for c in [code::RFT_ID, code::GID_FT, code::GPN_ID, code::GNN_ID] {
                        if let Ok(a) = NsAccept::parse(c, body) {
                            let m = a.emit(&mut out).expect("re-emit CT accept");
                            assert_eq!(&out[..m], body);
                        }
                    }
                }
                FcPayload::Els(e) => {
                    let m = e.emit(&mut out).expect("re-emit ELS");
                    assert_eq!(&out[..m], frame.payload);
                }
                _ => {}
            }
        }
        Packet::Fip { ethernet, fip } => {
            let n = emit_fip_frame(&mut out, &ethernet, &fip).expect("re-emit FIP");
            let used = ethernet.header_len() + fip.buffer_len();
            assert!(n >= used);
            assert_eq!(&out[..used], &data[..used], "FIP frame does not round-trip");
        }
    }
});
