//! Incremental volumes (seed 003 Fig. 22): three writable volumes share one base, which
//! becomes read-only for good. Each diverges on its own: its writes go to its private store,
//! blocks it never wrote still read the base's data (also the rest of a copy granule a
//! partial write touched), and the base refuses writes.

use dve_controlpath::volume::LayoutSpec;
use dve_fp_api::ids::Wwn;
use dve_sim::host::HostOp;
use dve_tests::bench::{Bench, disk_wwpn};

fn pattern(seed: u8, blocks: usize) -> Vec<u8> {
    (0..blocks * 512).map(|i| seed.wrapping_mul(37).wrapping_add((i % 251) as u8)).collect()
}

#[test]
fn three_incrementals_of_one_base_diverge_independently() {
    let mut b = Bench::new(4, &[65_536, 65_536]);
    let base = b.volume("base", 4096, |d| LayoutSpec::Linear { devices: d }, &[0]);
    let base_lun = b.expose(base, &[0]);
    b.start(&[0]);
    let original = pattern(1, 1024);
    let w =
        b.request(0, base_lun, HostOp::Write { lba: 0, data: original.clone().into() }).expect("base write");
    assert_eq!(w.status, 0);

    let store = b.switch.control().device_of(Wwn(disk_wwpn(1))).expect("disk 1");
    let mut luns = Vec::new();
    for k in 1..=3 {
        let inc =
            b.switch.control_mut().create_incremental(base, &format!("inc{k}"), store).expect("incremental");
        luns.push(b.expose(inc, &[k]));
    }
    b.idle(1_000_000);
    b.start(&[1, 2, 3]);

    // Each host writes its own data at an offset that is not granule aligned (blocks
    // 100..140 of the 128-block granules 0 and 1), and one incremental writes elsewhere too.
    for k in 1..=3usize {
        let data = pattern(10 + k as u8, 40);
        let w = b.request(k, luns[k - 1], HostOp::Write { lba: 100, data: data.into() }).expect("write");
        assert_eq!(w.status, 0, "incremental {k} takes writes");
    }
    let extra = pattern(99, 8);
    assert_eq!(
        b.request(2, luns[1], HostOp::Write { lba: 900, data: extra.clone().into() }).expect("write").status,
        0
    );

    for k in 1..=3usize {
        let read = b.request(k, luns[k - 1], HostOp::Read { lba: 0, blocks: 1024 }).expect("read").data;
        let mut expected = original.clone();
        expected[100 * 512..140 * 512].copy_from_slice(&pattern(10 + k as u8, 40));
        if k == 2 {
            expected[900 * 512..908 * 512].copy_from_slice(&extra);
        }
        assert!(read == expected, "incremental {k} holds the base plus only its own writes");
    }
    // The base is read-only for good and unchanged.
    let refused =
        b.request(0, base_lun, HostOp::Write { lba: 0, data: pattern(7, 8).into() }).expect("completes");
    assert_eq!((refused.status, refused.sense.map(|s| (s.0, s.1))), (2, Some((0x07, 0x27))));
    assert_eq!(b.request(0, base_lun, HostOp::Read { lba: 0, blocks: 1024 }).expect("read").data, original);
}
