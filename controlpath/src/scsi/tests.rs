//! End-to-end tests of [`execute`]: unit attention delivery, sense for bad commands,
//! reservation conflicts between initiators, persistent reservation flows with the unit
//! attentions they post, the LUN mask, and a property test that no input panics and that a
//! failing command changes nothing.

use dve_fp_api::ids::{LvId, Wwn};
use dve_fp_api::io::{ScsiStatus, Sense};
use dve_fp_api::mapping::volume::HostSet;
use dve_wire::scsi::cdb::{Cdb, Lba10, Lba16, Reserve10Fields};
use dve_wire::scsi::data::{ReadCapacity10Data, ReadCapacity16Data};
use dve_wire::scsi::inquiry::StandardInquiry;
use dve_wire::scsi::opcode;
use dve_wire::scsi::sense::{Asc, SenseKey, SenseRepr};
use dve_wire::scsi::status;
use proptest::prelude::*;

use super::outcome::emit_vec;
use super::reservation::pr_out;
use super::*;

const A: u64 = 0x2100_0024_FF00_000A;
const B: u64 = 0x2100_0024_FF00_000B;
const C: u64 = 0x2100_0024_FF00_000C;

fn lun() -> VirtualLun {
    let mut l = VirtualLun::new(LvId(3), 512, 10_000, SystemIdentity { oui: 0x00_1B_C5, serial: 77 });
    l.thin = true;
    l
}

fn cdb(c: Cdb) -> Vec<u8> {
    emit_vec(&c).expect("test CDB emits")
}

fn tur() -> Vec<u8> {
    cdb(Cdb::TestUnitReady { control: 0 })
}

fn read10(lba: u32, length: u16) -> Vec<u8> {
    cdb(Cdb::Read10(Lba10 { lba, length, ..Lba10::default() }))
}

fn write10(lba: u32, length: u16) -> Vec<u8> {
    cdb(Cdb::Write10(Lba10 { lba, length, ..Lba10::default() }))
}

fn pr_out_cdb(service_action: u8, pr_type: u8) -> Vec<u8> {
    cdb(Cdb::PersistentReserveOut {
        service_action,
        scope: 0,
        pr_type,
        parameter_list_length: 24,
        control: 0,
    })
}

fn pr_params(key: u64, sa_key: u64) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p
}

fn sense_of(o: &ScsiOutcome) -> Option<(u8, u8, u8)> {
    o.sense.map(|s| (s.key, s.asc, s.ascq))
}

fn ua(u: UnitAttention) -> Option<(u8, u8, u8)> {
    Some((SenseKey::UnitAttention as u8, u.asc().asc, u.asc().ascq))
}

fn illegal(asc: Asc) -> Option<(u8, u8, u8)> {
    Some((SenseKey::IllegalRequest as u8, asc.asc, asc.ascq))
}

/// A state where `initiators` have been told about power on.
fn state_with(initiators: &[u64]) -> LunScsiState {
    let mut s = LunScsiState::new();
    for &i in initiators {
        let o = execute(&lun(), &mut s, i, &tur(), &[]);
        assert_eq!(sense_of(&o), ua(UnitAttention::PowerOnReset));
    }
    s
}

#[test]
fn power_on_unit_attention_is_reported_once_and_not_to_inquiry() {
    let l = lun();
    let mut s = LunScsiState::new();
    let inq = cdb(Cdb::Inquiry { evpd: false, page_code: 0, allocation_length: 96, control: 0 });
    let o = execute(&l, &mut s, A, &inq, &[]);
    assert!(o.is_good());
    assert_eq!(StandardInquiry::parse(&o.data_in).unwrap().vendor, *b"DVE     ");
    assert_eq!(s, LunScsiState::new(), "INQUIRY neither reports nor clears the UA");

    let o = execute(&l, &mut s, A, &read10(0, 1), &[]);
    assert_eq!(o.status, status::CHECK_CONDITION);
    assert_eq!(sense_of(&o), ua(UnitAttention::PowerOnReset));
    assert_eq!(o.effect, None);
    let o = execute(&l, &mut s, A, &read10(0, 1), &[]);
    assert_eq!(o.effect, Some(LayoutEffect::Read { lba: 0, blocks: 1 }));
    assert_eq!(sense_of(&execute(&l, &mut s, B, &tur(), &[])), ua(UnitAttention::PowerOnReset));
    assert!(execute(&l, &mut s, B, &tur(), &[]).is_good());
}

#[test]
fn request_sense_returns_the_unit_attention_as_data() {
    let l = lun();
    let mut s = LunScsiState::new();
    let rs = cdb(Cdb::RequestSense { desc: false, allocation_length: 252, control: 0 });
    let o = execute(&l, &mut s, A, &rs, &[]);
    assert!(o.is_good());
    assert_eq!(o.data_in.len(), 18);
    let sense = SenseRepr::parse(&o.data_in).unwrap();
    assert_eq!((sense.key, sense.asc), (SenseKey::UnitAttention, Asc::POWER_ON_RESET));
    assert_eq!(&o.data_in[..3], &[0x70, 0x00, 0x06]);
    assert_eq!(&o.data_in[12..14], &[0x29, 0x00]);
    let o = execute(&l, &mut s, A, &rs, &[]);
    let sense = SenseRepr::parse(&o.data_in).unwrap();
    assert_eq!((sense.key, sense.asc), (SenseKey::NoSense, Asc::NO_ADDITIONAL_SENSE));
    assert!(execute(&l, &mut s, A, &tur(), &[]).is_good(), "already reported");

    s.capacity_changed();
    let desc = cdb(Cdb::RequestSense { desc: true, allocation_length: 8, control: 0 });
    let o = execute(&l, &mut s, A, &desc, &[]);
    assert_eq!(o.data_in, [0x72, 0x06, 0x2A, 0x09, 0, 0, 0, 0]);
}

#[test]
fn capacity_change_reaches_every_initiator_once() {
    let mut l = lun();
    let mut s = state_with(&[A, B]);
    l.capacity_blocks = 20_000;
    s.capacity_changed();
    let rc = cdb(Cdb::ReadCapacity10 { control: 0 });
    for i in [A, B] {
        assert_eq!(sense_of(&execute(&l, &mut s, i, &rc, &[])), ua(UnitAttention::CapacityDataHasChanged));
        let o = execute(&l, &mut s, i, &rc, &[]);
        assert_eq!(ReadCapacity10Data::parse(&o.data_in).unwrap().last_lba, 19_999);
    }
    let rc16 = cdb(Cdb::ReadCapacity16 { allocation_length: 32, control: 0 });
    let o = execute(&l, &mut s, A, &rc16, &[]);
    let d = ReadCapacity16Data::parse(&o.data_in).unwrap();
    assert_eq!((d.last_lba, d.block_len, d.flags[2]), (19_999, 512, 0xC0));
}

#[test]
fn unsupported_opcodes_bad_fields_and_ranges() {
    let l = lun();
    let mut s = state_with(&[A]);
    let before = s.clone();
    let log_sense = [0x4D, 0, 0, 0, 0, 0, 0, 0, 0x10, 0];
    let o = execute(&l, &mut s, A, &log_sense, &[]);
    assert_eq!(o.status, status::CHECK_CONDITION);
    assert_eq!(sense_of(&o), illegal(Asc::INVALID_COMMAND_OPERATION_CODE));
    let rl = [opcode::REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    assert_eq!(sense_of(&execute(&l, &mut s, A, &rl, &[])), illegal(Asc::INVALID_COMMAND_OPERATION_CODE));
    let evpd0 = [opcode::INQUIRY, 0, 0x80, 0, 96, 0];
    assert_eq!(sense_of(&execute(&l, &mut s, A, &evpd0, &[])), illegal(Asc::INVALID_FIELD_IN_CDB));
    let bad_vpd = cdb(Cdb::Inquiry { evpd: true, page_code: 0xC0, allocation_length: 96, control: 0 });
    assert_eq!(sense_of(&execute(&l, &mut s, A, &bad_vpd, &[])), illegal(Asc::INVALID_FIELD_IN_CDB));
    assert_eq!(sense_of(&execute(&l, &mut s, A, &read10(9_999, 2), &[])), illegal(Asc::LBA_OUT_OF_RANGE));
    let sync = cdb(Cdb::SynchronizeCache16(Lba16 { lba: 10_001, length: 0, ..Lba16::default() }));
    assert_eq!(sense_of(&execute(&l, &mut s, A, &sync, &[])), illegal(Asc::LBA_OUT_OF_RANGE));
    let verify = [0x2F, 0, 0, 0, 0x27, 0x0F, 0, 0, 2, 0]; // LBA 9999, 2 blocks
    assert_eq!(sense_of(&execute(&l, &mut s, A, &verify, &[])), illegal(Asc::LBA_OUT_OF_RANGE));
    let verify_ok = [0x2F, 0, 0, 0, 0x27, 0x0F, 0, 0, 1, 0];
    assert!(execute(&l, &mut s, A, &verify_ok, &[]).is_good());
    let stop = [0x1B, 0, 0, 0, 0, 0];
    assert!(execute(&l, &mut s, A, &stop, &[]).is_good());
    assert_eq!(
        sense_of(&execute(&l, &mut s, A, &[opcode::READ_16, 0, 0], &[])),
        illegal(Asc::INVALID_FIELD_IN_CDB)
    );
    let ms_saved = cdb(Cdb::ModeSense6 {
        dbd: false,
        page_control: 3,
        page_code: 0x3F,
        subpage_code: 0,
        allocation_length: 255,
        control: 0,
    });
    assert_eq!(
        sense_of(&execute(&l, &mut s, A, &ms_saved, &[])),
        illegal(Asc::SAVING_PARAMETERS_NOT_SUPPORTED)
    );
    assert_eq!(s, before);
}

#[test]
fn provisioning_commands_return_effects() {
    let l = lun();
    let mut s = state_with(&[A]);
    let mut list = vec![0, 22, 0, 16, 0, 0, 0, 0];
    list.extend_from_slice(&100u64.to_be_bytes());
    list.extend_from_slice(&[0, 0, 0, 50, 0, 0, 0, 0]);
    let unmap = cdb(Cdb::Unmap { anchor: false, group: 0, parameter_list_length: 24, control: 0 });
    let o = execute(&l, &mut s, A, &unmap, &list);
    assert_eq!(o.effect, Some(LayoutEffect::Unmap(vec![(100, 50)])));
    assert_eq!(o.io_status(24).residual, 0);
    let ws = cdb(Cdb::WriteSame16(Lba16 { flags: 0x08, lba: 9_000, length: 1_000, ..Lba16::default() }));
    let o = execute(&l, &mut s, A, &ws, &[0u8; 512]);
    assert_eq!(
        o.effect,
        Some(LayoutEffect::WriteSame { lba: 9_000, blocks: 1_000, block: vec![0; 512], unmap: true })
    );
    let ws10 = cdb(Cdb::WriteSame10(Lba10 { lba: 9_000, length: 1_001, ..Lba10::default() }));
    assert_eq!(sense_of(&execute(&l, &mut s, A, &ws10, &[0u8; 512])), illegal(Asc::LBA_OUT_OF_RANGE));
    let mut thick = lun();
    thick.thin = false;
    assert_eq!(
        sense_of(&execute(&thick, &mut s, A, &unmap, &list)),
        illegal(Asc::INVALID_COMMAND_OPERATION_CODE)
    );
}

#[test]
fn spc2_reservation_conflicts_between_two_initiators() {
    let l = lun();
    let mut s = state_with(&[A, B]);
    let reserve = cdb(Cdb::Reserve6 { control: 0 });
    let release = cdb(Cdb::Release10(Reserve10Fields::default()));
    assert!(execute(&l, &mut s, A, &reserve, &[]).is_good());
    assert_eq!(s.reservations.legacy_holder(), Some(A));
    for c in [tur(), read10(0, 1), write10(0, 1), reserve.clone(), cdb(Cdb::ReadCapacity10 { control: 0 })] {
        assert_eq!(execute(&l, &mut s, B, &c, &[]).status, status::RESERVATION_CONFLICT, "{c:02x?}");
    }
    let inq = cdb(Cdb::Inquiry { evpd: false, page_code: 0, allocation_length: 36, control: 0 });
    assert!(execute(&l, &mut s, B, &inq, &[]).is_good());
    assert!(execute(&l, &mut s, B, &release, &[]).is_good(), "RELEASE by a non-holder is GOOD");
    assert_eq!(s.reservations.legacy_holder(), Some(A));
    let prin = cdb(Cdb::PersistentReserveIn { service_action: 0, allocation_length: 8, control: 0 });
    assert_eq!(execute(&l, &mut s, A, &prin, &[]).status, status::RESERVATION_CONFLICT);
    assert_eq!(
        execute(&l, &mut s, A, &write10(0, 1), &[]).effect,
        Some(LayoutEffect::Write { lba: 0, blocks: 1 })
    );
    let mask = s.lun_mask(LvId(3));
    assert_eq!(mask.readers, HostSet::only(vec![Wwn(A)]));
    assert_eq!(mask.writers, HostSet::only(vec![Wwn(A)]));
    assert!(execute(&l, &mut s, A, &release, &[]).is_good());
    assert!(execute(&l, &mut s, B, &write10(0, 1), &[]).is_good());
    assert_eq!(s.lun_mask(LvId(3)).writers, HostSet::only(vec![Wwn(A), Wwn(B)]));
}

#[test]
fn persistent_reservation_register_reserve_preempt_flow() {
    let l = lun();
    let mut s = state_with(&[A, B, C]);
    let register = pr_out_cdb(pr_out::REGISTER, 0);
    assert!(execute(&l, &mut s, A, &register, &pr_params(0, 0xAAAA)).is_good());
    assert!(execute(&l, &mut s, B, &register, &pr_params(0, 0xBBBB)).is_good());
    // A reserves Write Exclusive.
    let o = execute(&l, &mut s, A, &pr_out_cdb(pr_out::RESERVE, 1), &pr_params(0xAAAA, 0));
    assert!(o.is_good());
    assert_eq!(o.io_status(24).residual, 0);
    // B and C may read, not write.
    for i in [B, C] {
        assert!(execute(&l, &mut s, i, &read10(0, 8), &[]).is_good());
        assert_eq!(execute(&l, &mut s, i, &write10(0, 8), &[]).status, status::RESERVATION_CONFLICT);
    }
    let ms = cdb(Cdb::ModeSense10 {
        llbaa: false,
        dbd: true,
        page_control: 0,
        page_code: 0x08,
        subpage_code: 0,
        allocation_length: 100,
        control: 0,
    });
    assert!(execute(&l, &mut s, C, &ms, &[]).is_good(), "MODE SENSE reads");
    assert!(execute(&l, &mut s, A, &ms, &[]).is_good());
    assert!(execute(&l, &mut s, C, &tur(), &[]).is_good());
    let sync = cdb(Cdb::SynchronizeCache10(Lba10::default()));
    assert_eq!(execute(&l, &mut s, C, &sync, &[]).status, status::RESERVATION_CONFLICT);
    let mask = s.lun_mask(LvId(3));
    assert_eq!(mask.readers, HostSet::only(vec![Wwn(A), Wwn(B), Wwn(C)]));
    assert_eq!(mask.writers, HostSet::only(vec![Wwn(A)]));
    // C is not registered: it cannot reserve or preempt.
    let preempt = pr_out_cdb(pr_out::PREEMPT, 3);
    assert_eq!(execute(&l, &mut s, C, &preempt, &pr_params(0, 0xAAAA)).status, status::RESERVATION_CONFLICT);

    // B preempts A with Exclusive Access: A's registration goes, A is told once.
    let generation = s.reservations.generation();
    assert!(execute(&l, &mut s, B, &preempt, &pr_params(0xBBBB, 0xAAAA)).is_good());
    assert_eq!(s.reservations.generation(), generation + 1);
    assert_eq!(s.reservations.key_of(A), None);
    assert_eq!(
        s.reservations.reservation(),
        Some(PersistentReservation { holder: B, pr_type: PrType::ExclusiveAccess })
    );
    assert!(!s.fast_path_reads(A), "pending UA masks A");
    let o = execute(&l, &mut s, A, &read10(0, 1), &[]);
    assert_eq!(sense_of(&o), ua(UnitAttention::RegistrationsPreempted));
    assert_eq!(execute(&l, &mut s, A, &read10(0, 1), &[]).status, status::RESERVATION_CONFLICT);
    assert_eq!(execute(&l, &mut s, C, &read10(0, 1), &[]).status, status::RESERVATION_CONFLICT);
    assert_eq!(execute(&l, &mut s, C, &ms, &[]).status, status::RESERVATION_CONFLICT);
    assert!(execute(&l, &mut s, C, &cdb(Cdb::ReadCapacity10 { control: 0 }), &[]).is_good());
    assert!(execute(&l, &mut s, B, &write10(0, 1), &[]).is_good());
    let mask = s.lun_mask(LvId(3));
    assert_eq!(mask.readers, HostSet::only(vec![Wwn(B)]));

    // READ KEYS and READ RESERVATION through execute.
    let keys = cdb(Cdb::PersistentReserveIn { service_action: 0, allocation_length: 100, control: 0 });
    let o = execute(&l, &mut s, C, &keys, &[]);
    let mut want = (generation + 1).to_be_bytes().to_vec();
    want.extend_from_slice(&[0, 0, 0, 8]);
    want.extend_from_slice(&0xBBBBu64.to_be_bytes());
    assert_eq!(o.data_in, want);
    let short = cdb(Cdb::PersistentReserveIn { service_action: 1, allocation_length: 12, control: 0 });
    let o = execute(&l, &mut s, C, &short, &[]);
    assert_eq!(o.data_in.len(), 12);
    assert_eq!(&o.data_in[4..8], &[0, 0, 0, 16]);

    // CLEAR by B: C was never registered, so nobody else is told.
    assert!(execute(&l, &mut s, B, &pr_out_cdb(pr_out::CLEAR, 0), &pr_params(0xBBBB, 0)).is_good());
    assert_eq!(s.reservations.reservation(), None);
    assert!(s.unit_attentions.queue(C).is_none());
    assert!(execute(&l, &mut s, C, &write10(0, 1), &[]).is_good());
}

#[test]
fn registrants_only_release_tells_the_other_registrants() {
    let l = lun();
    let mut s = state_with(&[A, B, C]);
    let register = pr_out_cdb(pr_out::REGISTER, 0);
    execute(&l, &mut s, A, &register, &pr_params(0, 1));
    execute(&l, &mut s, B, &register, &pr_params(0, 2));
    assert!(execute(&l, &mut s, A, &pr_out_cdb(pr_out::RESERVE, 5), &pr_params(1, 0)).is_good());
    assert!(execute(&l, &mut s, B, &write10(0, 1), &[]).is_good(), "registrants may write");
    assert_eq!(execute(&l, &mut s, C, &write10(0, 1), &[]).status, status::RESERVATION_CONFLICT);
    let bad = execute(&l, &mut s, A, &pr_out_cdb(pr_out::RELEASE, 1), &pr_params(1, 0));
    assert_eq!(sense_of(&bad), illegal(outcome::asc::INVALID_RELEASE_OF_PERSISTENT_RESERVATION));
    assert!(execute(&l, &mut s, A, &pr_out_cdb(pr_out::RELEASE, 5), &pr_params(1, 0)).is_good());
    assert_eq!(sense_of(&execute(&l, &mut s, B, &tur(), &[])), ua(UnitAttention::ReservationsReleased));
    assert!(execute(&l, &mut s, B, &tur(), &[]).is_good());
    assert!(execute(&l, &mut s, C, &tur(), &[]).is_good(), "C was not registered");
}

#[test]
fn pr_out_parameter_errors_and_legacy_interplay() {
    let l = lun();
    let mut s = state_with(&[A, B]);
    let before = s.clone();
    let short_len = cdb(Cdb::PersistentReserveOut {
        service_action: 0,
        scope: 0,
        pr_type: 0,
        parameter_list_length: 20,
        control: 0,
    });
    assert_eq!(
        sense_of(&execute(&l, &mut s, A, &short_len, &[0; 24])),
        illegal(Asc::PARAMETER_LIST_LENGTH_ERROR)
    );
    assert_eq!(
        sense_of(&execute(&l, &mut s, A, &pr_out_cdb(pr_out::REGISTER, 0), &[0; 10])),
        illegal(Asc::PARAMETER_LIST_LENGTH_ERROR)
    );
    let mut sip = pr_params(0, 1);
    sip[20] = 0x08;
    assert_eq!(
        sense_of(&execute(&l, &mut s, A, &pr_out_cdb(pr_out::REGISTER, 0), &sip)),
        illegal(Asc::INVALID_FIELD_IN_PARAMETER_LIST)
    );
    assert_eq!(s, before);
    // With a registration, SPC-2 RESERVE and RELEASE conflict for everyone.
    execute(&l, &mut s, A, &pr_out_cdb(pr_out::REGISTER, 0), &pr_params(0, 1));
    let reserve10 = cdb(Cdb::Reserve10(Reserve10Fields::default()));
    assert_eq!(execute(&l, &mut s, B, &reserve10, &[]).status, status::RESERVATION_CONFLICT);
    assert_eq!(execute(&l, &mut s, A, &reserve10, &[]).status, status::RESERVATION_CONFLICT);
    let third_party = cdb(Cdb::Reserve10(Reserve10Fields { flags: 0x10, ..Reserve10Fields::default() }));
    assert_eq!(sense_of(&execute(&l, &mut s, B, &third_party, &[])), illegal(Asc::INVALID_FIELD_IN_CDB));
}

#[test]
fn io_status_maps_to_the_fp_api() {
    let l = lun();
    let mut s = state_with(&[A]);
    let inq = cdb(Cdb::Inquiry { evpd: true, page_code: 0x00, allocation_length: 255, control: 0 });
    let st = execute(&l, &mut s, A, &inq, &[]).io_status(255);
    assert!(st.is_good());
    assert_eq!(st.residual, 255 - 9);
    let st = execute(&l, &mut s, A, &read10(10_000, 1), &[]).io_status(512);
    assert_eq!(st.status, ScsiStatus::CHECK_CONDITION);
    assert_eq!(st.sense, Some(Sense { key: 0x05, asc: 0x21, ascq: 0x00 }));
    assert_eq!(st.residual, 512);
}

#[test]
fn state_round_trips_through_json_and_power_on_resets() {
    let l = lun();
    let mut s = state_with(&[A, B]);
    execute(&l, &mut s, A, &pr_out_cdb(pr_out::REGISTER, 0), &pr_params(0, 5));
    execute(&l, &mut s, A, &pr_out_cdb(pr_out::RESERVE, 3), &pr_params(5, 0));
    s.capacity_changed();
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<LunScsiState>(&json).unwrap(), s);
    s.power_on();
    assert_eq!(s, LunScsiState::new());
}

/// Operation codes worth aiming at, so random CDBs reach the command handlers.
const OPCODES: &[u8] = &[
    0x00, 0x03, 0x08, 0x0A, 0x12, 0x16, 0x17, 0x1A, 0x1B, 0x25, 0x28, 0x2A, 0x2F, 0x35, 0x41, 0x42, 0x56,
    0x57, 0x5A, 0x5E, 0x5F, 0x88, 0x8A, 0x8F, 0x91, 0x93, 0x9E, 0xA0, 0x4D, 0xFF,
];

fn command_strategy() -> impl Strategy<Value = (u64, Vec<u8>, Vec<u8>)> {
    let initiator = prop::sample::select(vec![A, B, C]);
    let random_cdb = prop::collection::vec(any::<u8>(), 0..20);
    // Mostly zero or small bytes after the opcode, so that parsing and range checks pass often.
    let byte = prop_oneof![
        17 => Just(0u8),
        3 => prop::sample::select(vec![1u8, 2, 3, 8, 0x10, 0x3F, 0x80, 0xFF]),
    ];
    let aimed_cdb =
        (prop::sample::select(OPCODES), prop::collection::vec(byte, 15..16)).prop_map(|(op, mut rest)| {
            rest.insert(0, op);
            rest
        });
    let descriptor = (0u64..10_100, 0u32..200);
    let unmap = prop::collection::vec(descriptor, 0..5).prop_map(|ds| {
        let n = ds.len() * 16;
        let mut p = Vec::new();
        p.extend_from_slice(&((n + 6) as u16).to_be_bytes());
        p.extend_from_slice(&(n as u16).to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        for (lba, blocks) in ds {
            p.extend_from_slice(&lba.to_be_bytes());
            p.extend_from_slice(&blocks.to_be_bytes());
            p.extend_from_slice(&[0; 4]);
        }
        let len = p.len() as u16;
        (cdb(Cdb::Unmap { anchor: false, group: 0, parameter_list_length: len, control: 0 }), p)
    });
    // Each initiator usually registers and presents its own key (its low byte), so that
    // RESERVE, RELEASE, PREEMPT and CLEAR get past the registration check.
    let own_key = |i: u64| i & 0xff;
    let key = prop::sample::select(vec![
        None,
        None,
        None,
        None,
        Some(0u64),
        Some(0x0A),
        Some(0x0B),
        Some(0x0C),
        Some(7),
    ]);
    let pr_out = (
        initiator.clone(),
        prop::sample::select(vec![0u8, 0, 0, 6, 6, 1, 1, 2, 3, 4, 4, 4, 5, 7, 8]),
        prop::sample::select(vec![0u8, 1, 3, 5, 6, 7, 8, 2]),
        key.clone(),
        key,
        any::<u8>(),
    )
        .prop_map(move |(i, sa, t, k, sk, flags)| {
            let c = vec![0x5F, sa, t, 0, 0, 0, 0, 0, 24, 0];
            let k = k.unwrap_or(if sa == 0 { 0 } else { own_key(i) });
            let sk = sk.unwrap_or(if sa == 0 || sa == 6 { own_key(i) } else { 0 });
            let mut p = pr_params(k, sk);
            p[20] = flags & 0x01;
            (i, c, p)
        });
    let data = prop::collection::vec(any::<u8>(), 0..600);
    prop_oneof![
        2 => (initiator.clone(), random_cdb, data.clone()),
        4 => (initiator.clone(), aimed_cdb, data),
        4 => pr_out,
        1 => (initiator, unmap).prop_map(|(i, (c, d))| (i, c, d)),
    ]
}

fn check_invariants(s: &LunScsiState) -> Result<(), TestCaseError> {
    let r = &s.reservations;
    if let Some(res) = r.reservation() {
        prop_assert!(r.registrations().count() > 0, "a reservation needs a registration");
        prop_assert!(
            res.pr_type.is_all_registrants() || r.key_of(res.holder).is_some(),
            "the holder is registered"
        );
    }
    prop_assert!(r.registrations().all(|(_, k)| k != 0), "no zero key is registered");
    prop_assert!(
        r.legacy_holder().is_none() || (r.reservation().is_none() && r.registrations().count() == 0)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_input_panics_and_failures_change_nothing(
        commands in prop::collection::vec(command_strategy(), 1..60),
        thin in any::<bool>(),
        seen in any::<bool>(),
    ) {
        let mut l = lun();
        l.thin = thin;
        let mut s = if seen { state_with(&[A, B, C]) } else { LunScsiState::new() };
        for (initiator, c, d) in commands {
            let before = s.clone();
            let o = execute(&l, &mut s, initiator, &c, &d);
            let ua_reported = o.sense_key() == Some(SenseKey::UnitAttention);
            if !o.is_good() && !ua_reported {
                prop_assert_eq!(&s, &before, "failed command {:02x?} changed state", c);
            }
            if ua_reported {
                prop_assert_eq!(o.status, status::CHECK_CONDITION);
                prop_assert_eq!(&s.reservations, &before.reservations);
            }
            prop_assert_eq!(o.sense.is_some(), o.status == status::CHECK_CONDITION);
            if !o.is_good() {
                prop_assert!(o.data_in.is_empty() && o.effect.is_none());
            }
            if let Some(LayoutEffect::Unmap(ranges)) = &o.effect {
                for &(lba, blocks) in ranges {
                    prop_assert!(blocks > 0 && lba + u64::from(blocks) <= l.capacity_blocks);
                }
            }
            check_invariants(&s)?;
        }
        let json = serde_json::to_string(&s).unwrap();
        prop_assert_eq!(serde_json::from_str::<LunScsiState>(&json).unwrap(), s);
    }

    #[test]
    fn random_bytes_never_panic(cdb in prop::collection::vec(any::<u8>(), 0..40), data in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut s = state_with(&[A]);
        let _ = execute(&lun(), &mut s, A, &cdb, &data);
        let _ = execute_report_luns(&[0, 1, 40_000], &cdb);
        let _ = execute_no_lun(&cdb);
    }
}
