//! Round-trip properties for every frame kind: parse(build(fields)) == fields, and
//! build(parse(bytes)) == bytes for bytes that parse (arbitrary bytes for the lossless
//! headers, built frames with random mutations for the rest).

use dve_wire::bls::BlsRepr;
use dve_wire::ct::{CtHeaderRepr, NsAccept, NsRequest, PortIdList, code};
use dve_wire::els::{ElsRepr, LoginParams, LogoRepr, LsRjtRepr, PrliPage};
use dve_wire::ethernet::{EthernetFrame, EthernetRepr, MacAddr, VlanTag};
use dve_wire::fc::{FcFrame, FcHeaderRepr, FcId, f_ctl, fc_type, r_ctl};
use dve_wire::fcoe::{Eof, FcoeRepr, Sof};
use dve_wire::fcp::{FcpCmndRepr, FcpRspRepr, FcpXferRdyRepr, Residual, TaskAttribute};
use dve_wire::fip::{FipDescriptor, FipDescriptors, FipOperation, FipRepr};
use dve_wire::scsi::cdb::{Cdb, Lba6, Lba10, Lba16, Reserve10Fields, RwCdb};
use dve_wire::scsi::data::{ReadCapacity10Data, ReadCapacity16Data, ReportLunsData};
use dve_wire::scsi::inquiry::{Designator, Designators, StandardInquiry, VpdPage, VpdRepr};
use dve_wire::scsi::sense::{Asc, SenseFormat, SenseKey, SenseRepr};
use dve_wire::stack::locate_fcoe_frame;
use dve_wire::stack::{
    FcPayload, Packet, emit_fcoe_frame, emit_fip_frame, parse_encapsulated_els, parse_packet,
};
use dve_wire::{WireEmit, parse_fcoe_frame};
use proptest::prelude::*;

fn to_vec<E: WireEmit + ?Sized>(e: &E) -> Vec<u8> {
    let mut v = vec![0u8; e.buffer_len()];
    let n = e.emit(&mut v).expect("emit");
    assert_eq!(n, v.len());
    v
}

fn fc_id() -> impl Strategy<Value = FcId> {
    (0u32..=0xFF_FFFF).prop_map(FcId)
}

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn ethernet() -> impl Strategy<Value = EthernetRepr> {
    let vlan = prop::option::of((0u8..8, any::<bool>(), 0u16..4096).prop_map(|(pcp, dei, vid)| VlanTag {
        pcp,
        dei,
        vid,
    }));
    (mac(), mac(), vlan).prop_map(|(dst_addr, src_addr, vlan)| EthernetRepr {
        dst_addr,
        src_addr,
        vlan,
        ethertype: 0x8906,
    })
}

fn fc_header() -> impl Strategy<Value = FcHeaderRepr> {
    (
        any::<u8>(),
        fc_id(),
        any::<u8>(),
        fc_id(),
        any::<u8>(),
        0u32..=0xFF_FFFF,
        any::<(u8, u8, u16, u16, u16, u32)>(),
    )
        .prop_map(
            |(
                r_ctl,
                d_id,
                cs_ctl,
                s_id,
                fc_type,
                f_ctl,
                (seq_id, df_ctl, seq_cnt, ox_id, rx_id, parameter),
            )| FcHeaderRepr {
                r_ctl,
                d_id,
                cs_ctl,
                s_id,
                fc_type,
                f_ctl,
                seq_id,
                df_ctl,
                seq_cnt,
                ox_id,
                rx_id,
                parameter,
            },
        )
}

fn sof() -> impl Strategy<Value = Sof> {
    prop::sample::select(Sof::ALL)
}

fn eof() -> impl Strategy<Value = Eof> {
    prop::sample::select(Eof::ALL)
}

fn login() -> impl Strategy<Value = LoginParams> {
    (
        any::<(u8, u8, u16, u16, u16, u32, u32)>(),
        any::<(u64, u64)>(),
        any::<[[u8; 16]; 4]>(),
        any::<[u8; 16]>(),
    )
        .prop_map(|((h, l, bb, cf, rs, w2, ed), (pn, nn), class_params, vendor_version)| LoginParams {
            fc_ph_high: h,
            fc_ph_low: l,
            bb_credit: bb,
            common_features: cf,
            bb_rcv_size: rs,
            csp_word2: w2,
            e_d_tov: ed,
            port_name: pn,
            node_name: nn,
            class_params,
            vendor_version,
        })
}

fn prli() -> impl Strategy<Value = PrliPage> {
    any::<(u8, u8, u8, u32, u32, u32)>().prop_map(
        |(fc_type, type_ext, flags, originator_pa, responder_pa, service_params)| PrliPage {
            fc_type,
            type_ext,
            flags,
            originator_pa,
            responder_pa,
            service_params,
        },
    )
}

fn els() -> impl Strategy<Value = ElsRepr> {
    prop_oneof![
        login().prop_map(ElsRepr::Flogi),
        login().prop_map(ElsRepr::Fdisc),
        login().prop_map(ElsRepr::Plogi),
        login().prop_map(ElsRepr::AccLogin),
        prli().prop_map(ElsRepr::Prli),
        prli().prop_map(ElsRepr::AccPrli),
        (fc_id(), any::<u64>())
            .prop_map(|(port_id, port_name)| ElsRepr::Logo(LogoRepr { port_id, port_name })),
        Just(ElsRepr::Acc),
        any::<(u8, u8, u8)>().prop_map(|(reason, explanation, vendor)| ElsRepr::LsRjt(LsRjtRepr {
            reason,
            explanation,
            vendor
        })),
    ]
}

fn bls() -> impl Strategy<Value = BlsRepr> {
    prop_oneof![
        Just(BlsRepr::Abts),
        (any::<Option<u8>>(), any::<(u16, u16, u16, u16)>()).prop_map(
            |(seq_id, (ox_id, rx_id, low_seq_cnt, high_seq_cnt))| {
                BlsRepr::BaAcc { seq_id, ox_id, rx_id, low_seq_cnt, high_seq_cnt }
            }
        ),
        any::<(u8, u8, u8)>().prop_map(|(reason, explanation, vendor)| BlsRepr::BaRjt {
            reason,
            explanation,
            vendor
        }),
    ]
}

fn ns_request() -> impl Strategy<Value = NsRequest> {
    prop_oneof![
        (fc_id(), any::<[u8; 32]>()).prop_map(|(port_id, fc4_types)| NsRequest::RftId { port_id, fc4_types }),
        (fc_id(), any::<u64>()).prop_map(|(port_id, port_name)| NsRequest::RpnId { port_id, port_name }),
        (fc_id(), any::<u64>()).prop_map(|(port_id, node_name)| NsRequest::RnnId { port_id, node_name }),
        any::<(u8, u8, u8)>().prop_map(|(domain_scope, area_scope, fc_type)| NsRequest::GidFt {
            domain_scope,
            area_scope,
            fc_type
        }),
        fc_id().prop_map(|port_id| NsRequest::GpnId { port_id }),
        fc_id().prop_map(|port_id| NsRequest::GnnId { port_id }),
    ]
}

fn ct_header() -> impl Strategy<Value = CtHeaderRepr> {
    (fc_id(), any::<(u8, u8, u8, u16, u16)>(), any::<(u8, u8, u8, u8)>()).prop_map(
        |(
            in_id,
            (gs_type, gs_subtype, options, command, max_size),
            (fragment_id, reason, explanation, vendor),
        )| CtHeaderRepr {
            revision: 1,
            in_id,
            gs_type,
            gs_subtype,
            options,
            command,
            max_size,
            fragment_id,
            reason,
            explanation,
            vendor,
        },
    )
}

fn lba10() -> impl Strategy<Value = Lba10> {
    (any::<u8>(), any::<u32>(), 0u8..64, any::<u16>(), any::<u8>())
        .prop_map(|(flags, lba, group, length, control)| Lba10 { flags, lba, group, length, control })
}

fn lba16() -> impl Strategy<Value = Lba16> {
    (any::<u8>(), any::<u64>(), any::<u32>(), 0u8..64, any::<u8>())
        .prop_map(|(flags, lba, length, group, control)| Lba16 { flags, lba, length, group, control })
}

fn lba6() -> impl Strategy<Value = Lba6> {
    (0u32..0x20_0000, any::<u8>(), any::<u8>()).prop_map(|(lba, length, control)| Lba6 {
        lba,
        length,
        control,
    })
}

fn cdb() -> impl Strategy<Value = Cdb> {
    let r10 =
        any::<(u8, u8, u16, u8)>().prop_map(|(flags, third_party_id, parameter_list_length, control)| {
            Reserve10Fields { flags, third_party_id, parameter_list_length, control }
        });
    prop_oneof![
        any::<u8>().prop_map(|control| Cdb::TestUnitReady { control }),
        any::<(bool, u8, u8)>().prop_map(|(desc, allocation_length, control)| Cdb::RequestSense {
            desc,
            allocation_length,
            control
        }),
        lba6().prop_map(Cdb::Read6),
        lba6().prop_map(Cdb::Write6),
        lba10().prop_map(Cdb::Read10),
        lba10().prop_map(Cdb::Write10),
        lba16().prop_map(Cdb::Read16),
        lba16().prop_map(Cdb::Write16),
        (any::<bool>(), any::<u8>(), any::<u16>(), any::<u8>()).prop_map(
            |(evpd, page_code, allocation_length, control)| Cdb::Inquiry {
                evpd,
                page_code: if evpd { page_code } else { 0 },
                allocation_length,
                control
            }
        ),
        any::<u8>().prop_map(|control| Cdb::ReadCapacity10 { control }),
        any::<(u32, u8)>()
            .prop_map(|(allocation_length, control)| Cdb::ReadCapacity16 { allocation_length, control }),
        any::<(u8, u32, u8)>().prop_map(|(select_report, allocation_length, control)| Cdb::ReportLuns {
            select_report,
            allocation_length,
            control
        }),
        (any::<bool>(), 0u8..4, 0u8..64, any::<(u8, u8, u8)>()).prop_map(
            |(dbd, page_control, page_code, (subpage_code, allocation_length, control))| {
                Cdb::ModeSense6 { dbd, page_control, page_code, subpage_code, allocation_length, control }
            }
        ),
        (any::<(bool, bool)>(), 0u8..4, 0u8..64, any::<(u8, u16, u8)>()).prop_map(
            |((llbaa, dbd), page_control, page_code, (subpage_code, allocation_length, control))| {
                Cdb::ModeSense10 {
                    llbaa,
                    dbd,
                    page_control,
                    page_code,
                    subpage_code,
                    allocation_length,
                    control,
                }
            }
        ),
        lba10().prop_map(Cdb::SynchronizeCache10),
        lba16().prop_map(Cdb::SynchronizeCache16),
        any::<u8>().prop_map(|control| Cdb::Reserve6 { control }),
        any::<u8>().prop_map(|control| Cdb::Release6 { control }),
        r10.clone().prop_map(Cdb::Reserve10),
        r10.prop_map(Cdb::Release10),
        (0u8..32, any::<(u16, u8)>()).prop_map(|(service_action, (allocation_length, control))| {
            Cdb::PersistentReserveIn { service_action, allocation_length, control }
        }),
        (0u8..32, 0u8..16, 0u8..16, any::<(u32, u8)>()).prop_map(
            |(service_action, scope, pr_type, (parameter_list_length, control))| {
                Cdb::PersistentReserveOut { service_action, scope, pr_type, parameter_list_length, control }
            }
        ),
        (any::<bool>(), 0u8..64, any::<(u16, u8)>()).prop_map(
            |(anchor, group, (parameter_list_length, control))| Cdb::Unmap {
                anchor,
                group,
                parameter_list_length,
                control
            }
        ),
        lba10().prop_map(Cdb::WriteSame10),
        lba16().prop_map(Cdb::WriteSame16),
    ]
}

fn sense() -> impl Strategy<Value = SenseRepr> {
    (
        any::<bool>(),
        any::<bool>(),
        0u8..16,
        any::<(u8, u8)>(),
        any::<Option<u32>>(),
        any::<bool>(),
        any::<Option<[u8; 3]>>(),
    )
        .prop_map(|(descriptor, deferred, key, (asc, ascq), info, wide, sks)| SenseRepr {
            format: if descriptor { SenseFormat::Descriptor } else { SenseFormat::Fixed },
            deferred,
            key: SenseKey::from_code(key),
            asc: Asc { asc, ascq },
            information: info.map(|i| if descriptor && wide { u64::from(i) << 32 | 7 } else { u64::from(i) }),
            sense_key_specific: sks.map(|s| [s[0] | 0x80, s[1], s[2]]),
        })
}

fn fip_descriptor() -> impl Strategy<Value = FipDescriptor<'static>> {
    prop_oneof![
        any::<u8>().prop_map(FipDescriptor::Priority),
        mac().prop_map(FipDescriptor::MacAddress),
        (0u32..=0xFF_FFFF).prop_map(FipDescriptor::FcMap),
        any::<u64>().prop_map(FipDescriptor::NameIdentifier),
        (any::<u16>(), 0u32..=0xFF_FFFF, any::<u64>())
            .prop_map(|(vf_id, fc_map, fabric_name)| FipDescriptor::Fabric { vf_id, fc_map, fabric_name }),
        any::<u16>().prop_map(FipDescriptor::MaxFcoeSize),
        (mac(), fc_id(), any::<u64>()).prop_map(|(mac, port_id, port_name)| FipDescriptor::VxPortId {
            mac,
            port_id,
            port_name
        }),
        any::<(u8, u32)>().prop_map(|(flags, period_ms)| FipDescriptor::FkaAdvPeriod { flags, period_ms }),
        any::<[u8; 8]>().prop_map(FipDescriptor::VendorId),
        (0u16..4096).prop_map(FipDescriptor::Vlan),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn ethernet_header_bytes_round_trip(bytes in prop::collection::vec(any::<u8>(), 14..40)) {
        let frame = EthernetFrame::new_checked(&bytes[..]);
        if let Ok(frame) = frame {
            let repr = EthernetRepr::parse(&frame).unwrap();
            let mut out = vec![0u8; repr.header_len()];
            repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..])).unwrap();
            prop_assert_eq!(&out[..], &bytes[..repr.header_len()]);
        }
    }

    #[test]
    fn fc_header_bytes_round_trip(bytes in any::<[u8; 24]>()) {
        let repr = FcHeaderRepr::parse(&FcFrame::new_unchecked(&bytes[..])).unwrap();
        let mut out = [0u8; 24];
        repr.emit(&mut FcFrame::new_unchecked(&mut out[..])).unwrap();
        prop_assert_eq!(out, bytes);
    }

    #[test]
    fn fcoe_frame_fields_round_trip(eth in ethernet(), s in sof(), e in eof(), hdr in fc_header(),
                                    payload in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = vec![0u8; 4096];
        let n = emit_fcoe_frame(&mut buf, &eth, &FcoeRepr { sof: s, eof: e }, &hdr, &payload[..]).unwrap();
        let view = parse_fcoe_frame(&buf[..n]).unwrap();
        prop_assert_eq!(view.ethernet, eth);
        prop_assert_eq!(view.fcoe, FcoeRepr { sof: s, eof: e });
        let fill = ((4 - payload.len() % 4) % 4) as u32;
        prop_assert_eq!(view.header, FcHeaderRepr { f_ctl: (hdr.f_ctl & !f_ctl::FILL_BYTES_MASK) | fill, ..hdr });
        prop_assert_eq!(view.payload, &payload[..]);
        // build(parse(x)) == x
        let mut again = vec![0u8; n];
        let m = emit_fcoe_frame(&mut again, &view.ethernet, &view.fcoe, &view.header, view.payload).unwrap();
        prop_assert_eq!(&again[..m], &buf[..n]);
    }

    #[test]
    fn fcoe_any_corruption_is_detected(eth in ethernet(), hdr in fc_header(), payload in prop::collection::vec(any::<u8>(), 0..64),
                                       at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut buf = vec![0u8; 512];
        let n = emit_fcoe_frame(&mut buf, &eth, &FcoeRepr { sof: Sof::I3, eof: Eof::T }, &hdr, &payload[..]).unwrap();
        let buf = &mut buf[..n];
        let eth_len = eth.header_len();
        // Corrupt anything after the Ethernet header: FCoE header, FC frame, CRC or trailer.
        let i = eth_len + at.index(n - eth_len);
        buf[i] ^= flip;
        // SOF and EOF are outside the CRC: a flip there may turn one valid code into another.
        match parse_fcoe_frame(buf) {
            Err(_) => {}
            Ok(v) => prop_assert_ne!(v.fcoe, FcoeRepr { sof: Sof::I3, eof: Eof::T }),
        }
    }

    /// The fast path's split check (lengths and header first, the rest only for frames it acts
    /// on) accepts exactly the frames the full parse accepts, with the same header and payload,
    /// whatever byte is corrupted (or none).
    #[test]
    fn locating_then_verifying_agrees_with_the_full_parse(eth in ethernet(), hdr in fc_header(),
                                    payload in prop::collection::vec(any::<u8>(), 0..80),
                                    at in any::<prop::sample::Index>(), flip in 0u8..=255, cut in 0usize..4) {
        let mut buf = vec![0u8; 512];
        let n = emit_fcoe_frame(&mut buf, &eth, &FcoeRepr { sof: Sof::N3, eof: Eof::N }, &hdr, &payload[..]).unwrap();
        let buf = &mut buf[..n];
        let i = at.index(n);
        buf[i] ^= flip;
        let buf = &buf[..n - cut];
        let full = parse_fcoe_frame(buf);
        let split = locate_fcoe_frame(buf).and_then(|info| info.verify(buf).map(|()| info));
        match (full, split) {
            (Ok(view), Ok(info)) => {
                prop_assert_eq!(view.header, info.header);
                prop_assert_eq!(view.fc_range.clone(), info.fc_start..info.fc_end);
                prop_assert_eq!(view.payload, &buf[info.payload_start()..info.payload_start() + info.payload_len]);
            }
            (Err(_), Err(_)) => {}
            (full, split) => prop_assert!(false, "full parse {:?}, split check {:?}", full.map(|v| v.header), split),
        }
    }

    #[test]
    fn els_round_trip(e in els()) {
        let bytes = to_vec(&e);
        let parsed = ElsRepr::parse(&bytes).unwrap();
        prop_assert_eq!(parsed, e);
        prop_assert_eq!(to_vec(&parsed), bytes);
    }

    #[test]
    fn bls_round_trip(b in bls()) {
        let bytes = to_vec(&b);
        let parsed = BlsRepr::parse(b.r_ctl(), &bytes).unwrap();
        prop_assert_eq!(parsed, b);
        prop_assert_eq!(to_vec(&parsed), bytes);
    }

    #[test]
    fn ct_request_round_trip(h in ct_header(), r in ns_request()) {
        let h = CtHeaderRepr { command: r.command(), ..h };
        let mut bytes = to_vec(&h);
        bytes.extend(to_vec(&r));
        let (ph, body) = CtHeaderRepr::parse(&bytes).unwrap();
        prop_assert_eq!(ph, h);
        let pr = NsRequest::parse(ph.command, body).unwrap();
        prop_assert_eq!(pr, r);
        prop_assert_eq!(to_vec(&pr), body.to_vec());
    }

    #[test]
    fn ct_accept_round_trip(ids in prop::collection::vec(fc_id(), 1..20), name in any::<u64>(), which in 0usize..4) {
        let (req, acc) = match which {
            0 => (code::GID_FT, NsAccept::PortIds(PortIdList::Ids(&ids))),
            1 => (code::GPN_ID, NsAccept::PortName(name)),
            2 => (code::GNN_ID, NsAccept::NodeName(name)),
            _ => (code::RFT_ID, NsAccept::Registered),
        };
        let bytes = to_vec(&acc);
        let parsed = NsAccept::parse(req, &bytes).unwrap();
        prop_assert_eq!(parsed, acc);
        prop_assert_eq!(to_vec(&parsed), bytes);
    }

    #[test]
    fn fcp_cmnd_round_trip(lun in any::<[u8; 8]>(), crn in any::<u8>(), priority in 0u8..16, attr in 0usize..4, tm in any::<u8>(),
                           rd in any::<bool>(), wr in any::<bool>(), extra in 0usize..4, cdb in prop::collection::vec(any::<u8>(), 28), dl in any::<u32>()) {
        let attrs = [TaskAttribute::Simple, TaskAttribute::HeadOfQueue, TaskAttribute::Ordered, TaskAttribute::Aca];
        let c = FcpCmndRepr { lun, crn, priority, task_attribute: attrs[attr], task_management: tm, rddata: rd, wrdata: wr,
                              cdb: &cdb[..16 + 4 * extra], fcp_dl: dl };
        let bytes = to_vec(&c);
        let parsed = FcpCmndRepr::parse(&bytes).unwrap();
        prop_assert_eq!(parsed, c);
        prop_assert_eq!(to_vec(&parsed), bytes);
    }

    #[test]
    fn fcp_xfer_rdy_round_trip(data_ro in any::<u32>(), burst_len in any::<u32>()) {
        let x = FcpXferRdyRepr { data_ro, burst_len };
        let bytes = to_vec(&x);
        prop_assert_eq!(FcpXferRdyRepr::parse(&bytes).unwrap(), x);
    }

    #[test]
    fn fcp_rsp_round_trip(q in any::<u16>(), conf in any::<bool>(), status in any::<u8>(), resid in 0u8..3, n in any::<u32>(),
                          info in prop::option::of(prop_oneof![Just(4usize), Just(8usize)]), sense in prop::option::of(prop::collection::vec(any::<u8>(), 0..64))) {
        let info_bytes = [0u8, 0, 0, 5, 0, 0, 0, 0];
        let r = FcpRspRepr {
            status_qualifier: q,
            confirm_requested: conf,
            scsi_status: status,
            residual: match resid { 0 => Residual::None, 1 => Residual::Over(n), _ => Residual::Under(n) },
            response_info: info.map(|l| &info_bytes[..l]),
            sense: sense.as_deref(),
        };
        let bytes = to_vec(&r);
        let parsed = FcpRspRepr::parse(&bytes).unwrap();
        prop_assert_eq!(parsed, r);
        prop_assert_eq!(to_vec(&parsed), bytes);
    }

    #[test]
    fn cdb_round_trip(c in cdb()) {
        let bytes = to_vec(&c);
        let parsed = Cdb::parse(&bytes).unwrap();
        prop_assert_eq!(parsed, c);
        prop_assert_eq!(to_vec(&parsed), bytes.clone());
        // Inside FCP's 16-byte field the trailing zeros are ignored.
        let mut padded = bytes.clone();
        padded.resize(16.max(bytes.len()), 0);
        prop_assert_eq!(Cdb::parse(&padded).unwrap(), c);
        // The fast path's view agrees with the decoded CDB.
        if let Some((lba, len)) = c.read_write_extent() {
            let v = RwCdb::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!((v.lba(), v.transfer_length()), (lba, len));
        }
    }

    #[test]
    fn cdb_bytes_round_trip(bytes in prop::collection::vec(any::<u8>(), 1..17)) {
        if let Ok(c) = Cdb::parse(&bytes) {
            let out = to_vec(&c);
            prop_assert_eq!(&out[..], &bytes[..out.len()]);
        }
    }

    #[test]
    fn rw_cdb_rewrite(c in prop_oneof![lba10().prop_map(Cdb::Read10), lba16().prop_map(Cdb::Write16)], lba in any::<u32>(), len in any::<u16>()) {
        let mut bytes = to_vec(&c);
        let mut v = RwCdb::new_checked(&mut bytes[..]).unwrap();
        v.set_lba(u64::from(lba)).unwrap();
        v.set_transfer_length(u32::from(len)).unwrap();
        prop_assert_eq!(Cdb::parse(&bytes).unwrap().read_write_extent(), Some((u64::from(lba), u32::from(len))));
    }

    #[test]
    fn sense_round_trip(s in sense()) {
        let s = if s.format == SenseFormat::Fixed { SenseRepr { information: s.information.map(|i| i & 0xffff_ffff), ..s } } else { s };
        let bytes = to_vec(&s);
        let parsed = SenseRepr::parse(&bytes).unwrap();
        prop_assert_eq!(parsed, s);
        prop_assert_eq!(to_vec(&parsed), bytes);
    }

    #[test]
    fn inquiry_round_trip(p in any::<u8>(), rmb in any::<bool>(), v in any::<u8>(), f in any::<(u8, u8, u8, u8)>(),
                          vendor in any::<[u8; 8]>(), product in any::<[u8; 16]>(), revision in any::<[u8; 4]>()) {
        let i = StandardInquiry { peripheral: p, removable: rmb, version: v, flags3: f.0, flags5: f.1, flags6: f.2, flags7: f.3, vendor, product, revision };
        let bytes = to_vec(&i);
        prop_assert_eq!(StandardInquiry::parse(&bytes).unwrap(), i);
    }

    #[test]
    fn vpd_round_trip(serial in prop::collection::vec(any::<u8>(), 0..40), naa in any::<[u8; 16]>(), which in 0usize..3) {
        let pages = [0x00u8, 0x80, 0x83];
        let ds = [
            Designator { protocol_id: 0, code_set: 1, piv: false, association: 0, designator_type: 3, designator: &naa },
            Designator { protocol_id: 0, code_set: 2, piv: true, association: 1, designator_type: 1, designator: &serial },
        ];
        let page = match which {
            0 => VpdPage::SupportedPages(&pages),
            1 => VpdPage::UnitSerialNumber(&serial),
            _ => VpdPage::DeviceIdentification(Designators::List(&ds)),
        };
        let r = VpdRepr { peripheral: 0, page };
        let bytes = to_vec(&r);
        let parsed = VpdRepr::parse(&bytes).unwrap();
        prop_assert_eq!(parsed, r);
        prop_assert_eq!(to_vec(&parsed), bytes);
    }

    #[test]
    fn scsi_data_round_trip(luns in prop::collection::vec(any::<[u8; 8]>(), 0..10), l10 in any::<(u32, u32)>(), l16 in any::<(u64, u32, [u8; 4])>()) {
        let r = ReportLunsData::List(&luns);
        let bytes = to_vec(&r);
        prop_assert_eq!(ReportLunsData::parse(&bytes).unwrap(), r);
        let c10 = ReadCapacity10Data { last_lba: l10.0, block_len: l10.1 };
        prop_assert_eq!(ReadCapacity10Data::parse(&to_vec(&c10)).unwrap(), c10);
        let c16 = ReadCapacity16Data { last_lba: l16.0, block_len: l16.1, flags: l16.2 };
        prop_assert_eq!(ReadCapacity16Data::parse(&to_vec(&c16)).unwrap(), c16);
    }

    #[test]
    fn fip_round_trip(eth in ethernet(), op in prop::sample::select(FipOperation::ALL.to_vec()), flags in any::<u16>(),
                      descs in prop::collection::vec(fip_descriptor(), 0..8), login in login(), hdr in fc_header()) {
        let mut els = vec![0u8; 200];
        let hdr = FcHeaderRepr { r_ctl: r_ctl::ELS_REQUEST, fc_type: fc_type::ELS, ..hdr };
        let n = dve_wire::emit_fc_frame(&mut els, &hdr, &ElsRepr::Flogi(login)).unwrap();
        let mut all = descs.clone();
        all.push(FipDescriptor::Flogi(&els[..n]));
        let fip = FipRepr { operation: op, flags, descriptors: FipDescriptors::List(&all) };
        let mut buf = vec![0u8; 2048];
        let len = emit_fip_frame(&mut buf, &eth, &fip).unwrap();
        let Packet::Fip { ethernet, fip: parsed } = parse_packet(&buf[..len]).unwrap() else { panic!("not FIP") };
        prop_assert_eq!(ethernet.src_addr, eth.src_addr);
        prop_assert_eq!(parsed, fip);
        let mut again = vec![0u8; 2048];
        let len2 = emit_fip_frame(&mut again, &ethernet, &parsed).unwrap();
        prop_assert_eq!(&again[..len2], &buf[..len]);
        let Some(Ok(FipDescriptor::Flogi(f))) = parsed.descriptors.iter().last() else { panic!("no FLOGI") };
        prop_assert_eq!(parse_encapsulated_els(f).unwrap().1, ElsRepr::Flogi(login));
    }

    #[test]
    fn whole_fcp_frames_round_trip(eth in ethernet(), hdr in fc_header(), c in cdb(), dl in any::<u32>()) {
        let mut cdb16 = [0u8; 16];
        c.emit(&mut cdb16).unwrap();
        let cmnd = FcpCmndRepr { lun: [0; 8], crn: 0, priority: 0, task_attribute: TaskAttribute::Simple, task_management: 0,
                                 rddata: true, wrdata: false, cdb: &cdb16, fcp_dl: dl };
        let hdr = FcHeaderRepr { r_ctl: r_ctl::UNSOLICITED_COMMAND, fc_type: fc_type::FCP, ..hdr };
        let mut buf = vec![0u8; 256];
        let n = emit_fcoe_frame(&mut buf, &eth, &FcoeRepr { sof: Sof::I3, eof: Eof::T }, &hdr, &cmnd).unwrap();
        let Packet::Fcoe { payload: FcPayload::FcpCmnd { cmnd: parsed, cdb }, .. } = parse_packet(&buf[..n]).unwrap() else { panic!("not FCP_CMND") };
        prop_assert_eq!(parsed, cmnd);
        prop_assert_eq!(cdb, Some(c));
    }
}

fn mutate(bytes: &mut [u8], edits: &[(prop::sample::Index, u8)]) {
    if bytes.is_empty() {
        return;
    }
    for (at, value) in edits {
        let i = at.index(bytes.len());
        bytes[i] = *value;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// build(parse(x)) == x for every x a parser accepts: valid messages with a few bytes
    /// overwritten either fail to parse or rebuild to exactly the mutated bytes.
    #[test]
    fn mutated_messages_that_parse_rebuild_exactly(
        e in els(), b in bls(), r in ns_request(), h in ct_header(), c in cdb(), s in sense(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = to_vec(&e);
        mutate(&mut bytes, &edits);
        if let Ok(p) = ElsRepr::parse(&bytes) {
            prop_assert_eq!(to_vec(&p), bytes);
        }

        let mut bytes = to_vec(&b);
        mutate(&mut bytes, &edits);
        if let Ok(p) = BlsRepr::parse(b.r_ctl(), &bytes) {
            prop_assert_eq!(to_vec(&p), bytes);
        }

        let mut bytes = to_vec(&r);
        mutate(&mut bytes, &edits);
        if let Ok(p) = NsRequest::parse(r.command(), &bytes) {
            prop_assert_eq!(to_vec(&p), bytes);
        }

        let mut bytes = to_vec(&h);
        mutate(&mut bytes, &edits);
        if let Ok((p, rest)) = CtHeaderRepr::parse(&bytes) {
            prop_assert!(rest.is_empty());
            prop_assert_eq!(to_vec(&p), bytes);
        }

        let mut bytes = to_vec(&c);
        mutate(&mut bytes, &edits);
        if let Ok(p) = Cdb::parse(&bytes) {
            let out = to_vec(&p);
            prop_assert_eq!(&out[..], &bytes[..out.len()]);
        }

        let mut cdb16 = [0u8; 16];
        c.emit(&mut cdb16).unwrap();
        let cmnd = FcpCmndRepr { lun: [0; 8], crn: 1, priority: 0, task_attribute: TaskAttribute::Simple, task_management: 0,
                                 rddata: false, wrdata: true, cdb: &cdb16, fcp_dl: 512 };
        let mut bytes = to_vec(&cmnd);
        mutate(&mut bytes, &edits);
        if let Ok(p) = FcpCmndRepr::parse(&bytes) {
            prop_assert_eq!(to_vec(&p), bytes);
        }

        let sense_bytes = to_vec(&s);
        let rsp = FcpRspRepr { scsi_status: 2, sense: Some(&sense_bytes), ..FcpRspRepr::good() };
        let mut bytes = to_vec(&rsp);
        mutate(&mut bytes, &edits);
        if let Ok(p) = FcpRspRepr::parse(&bytes) {
            // Up to three trailing zero bytes are accepted as padding and not rebuilt.
            let out = to_vec(&p);
            prop_assert_eq!(&out[..], &bytes[..out.len()]);
            prop_assert!(bytes[out.len()..].iter().all(|b| *b == 0));
        }

        let mut bytes = to_vec(&FcpXferRdyRepr { data_ro: 0, burst_len: 4096 });
        mutate(&mut bytes, &edits);
        if let Ok(p) = FcpXferRdyRepr::parse(&bytes) {
            prop_assert_eq!(to_vec(&p), bytes);
        }
    }

    #[test]
    fn mutated_fip_frames_that_parse_rebuild_exactly(
        eth in ethernet(), descs in prop::collection::vec(fip_descriptor(), 1..6),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let fip = FipRepr { operation: FipOperation::DiscoveryAdvertisement, flags: 0, descriptors: FipDescriptors::List(&descs) };
        let mut buf = vec![0u8; 1024];
        let n = emit_fip_frame(&mut buf, &eth, &fip).unwrap();
        let at = eth.header_len();
        mutate(&mut buf[at..n], &edits);
        if let Ok(Packet::Fip { ethernet, fip }) = parse_packet(&buf[..n]) {
            let used = ethernet.header_len() + fip.buffer_len();
            let mut again = vec![0u8; 1024];
            emit_fip_frame(&mut again, &ethernet, &fip).unwrap();
            prop_assert_eq!(&again[..used], &buf[..used]);
        }
    }
}
