//! LV reconfiguration: a volume grows by a segment on another disk while a host uses it. The
//! host's next command meets CAPACITY DATA HAS CHANGED (it retries), READ CAPACITY reports
//! the new size, and the new blocks take writes that read back.

use dve_controlpath::volume::LayoutSpec;
use dve_fp_api::ids::Wwn;
use dve_sim::host::HostOp;
use dve_tests::bench::{Bench, disk_wwpn};

#[test]
fn a_volume_grows_by_a_segment_and_hosts_are_told_by_a_unit_attention() {
    let mut b = Bench::new(1, &[65_536, 65_536]);
    let lv = b.volume("v", 8192, |d| LayoutSpec::Linear { devices: d }, &[0]);
    let lun = b.expose(lv, &[0]);
    b.start_hosts();
    let data: Vec<u8> = (0..4096).map(|i| (i % 253) as u8).collect();
    assert_eq!(
        b.request(0, lun, HostOp::Write { lba: 8000, data: data.clone().into() }).expect("write").status,
        0
    );

    let device = b.switch.control().device_of(Wwn(disk_wwpn(1))).expect("disk 1");
    b.switch.control_mut().grow_volume(lv, 8192, device).expect("grown");
    let out = b.switch.settle(b.now);
    assert!(out.is_empty(), "growing sends nothing to hosts by itself");

    let retries_before = b.hosts[0].stats().retries;
    let cap = b.command(0, lun, &[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], &[], 32);
    assert_eq!(cap.status, 0);
    assert_eq!(u64::from_be_bytes(cap.data[0..8].try_into().unwrap()), 16_383, "the new last LBA");
    assert_eq!(b.hosts[0].stats().retries, retries_before + 1, "the unit attention was reported once");

    // A write across the old end into the new segment reads back whole.
    let across: Vec<u8> = (0..16 * 512).map(|i| (i % 241) as u8).collect();
    assert_eq!(
        b.request(0, lun, HostOp::Write { lba: 8184, data: across.clone().into() }).expect("write").status,
        0
    );
    assert_eq!(b.request(0, lun, HostOp::Read { lba: 8184, blocks: 16 }).expect("read").data, across);
    assert_eq!(b.request(0, lun, HostOp::Read { lba: 8000, blocks: 8 }).expect("read").data, data);
    // Refused changes change nothing.
    let stripe_like = b.switch.control_mut().grow_volume(lv, 0, device);
    assert!(stripe_like.is_err());
    assert_eq!(b.switch.control().volume(lv).map(|v| v.record.blocks), Some(16_384));
}
