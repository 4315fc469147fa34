//! A completed snapshot reads its own store only: its source can be hidden and deleted, the
//! source's blocks claimed by a new volume and overwritten, and the snapshot still returns
//! the source's data at the snapshot instant, block for block.

use dve_controlpath::volume::LayoutSpec;
use dve_sim::host::HostOp;
use dve_tests::bench::Bench;

const BLOCKS: u64 = 2048;

fn pattern(seed: u8, blocks: u64) -> Vec<u8> {
    (0..blocks as usize * 512).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn a_completed_snapshot_outlives_its_deleted_source() {
    let mut b = Bench::new(1, &[16_384, 16_384]);
    let source = b.volume("src", BLOCKS, |d| LayoutSpec::Linear { devices: d }, &[0]);
    let lun = b.expose(source, &[0]);
    b.start_hosts();
    let before = pattern(7, 64);
    for chunk in 0..BLOCKS / 64 {
        let w =
            b.request(0, lun, HostOp::Write { lba: chunk * 64, data: before.clone().into() }).expect("write");
        assert_eq!(w.status, 0);
    }
    let snapshot = b.control(|c| c.create_snapshot(source, "snap", false)).expect("snapshot");
    // Written after the instant: the snapshot must not see it.
    let after = pattern(99, 64);
    let w = b.request(0, lun, HostOp::Write { lba: 0, data: after.clone().into() }).expect("write");
    assert_eq!(w.status, 0);
    let completed = b.run_until(10_000_000_000, |b| !b.switch.control().snapshot_completing(snapshot));
    assert!(completed, "the snapshot completes");

    // The source goes; a new volume takes its blocks and is overwritten everywhere.
    b.hide(lun);
    b.control(|c| c.delete_volume(source)).expect("the source is deleted");
    b.idle(1_000_000);
    let reused = b.volume("new", BLOCKS, |d| LayoutSpec::Linear { devices: d }, &[0]);
    let claims = |b: &mut Bench, lv| b.control(|c| c.volume(lv).map(|v| v.record.allocations.clone()));
    let new_claims = claims(&mut b, reused).expect("new volume");
    assert_eq!(
        (new_claims[0].device, new_claims[0].lba),
        (
            b.control(|c| c.device_of(dve_fp_api::ids::Wwn(dve_tests::bench::disk_wwpn(0)))).expect("disk 0"),
            0
        ),
        "the source's blocks are reused"
    );
    // The host discovered LUN 0 only: the new volume takes it, then the snapshot does.
    let new_lun = b.expose(reused, &[0]);
    assert_eq!(new_lun, lun);
    let junk = pattern(200, 64);
    for chunk in 0..BLOCKS / 64 {
        let w = b
            .request(0, new_lun, HostOp::Write { lba: chunk * 64, data: junk.clone().into() })
            .expect("write");
        assert_eq!(w.status, 0);
    }
    b.hide(new_lun);
    assert_eq!(b.expose(snapshot, &[0]), lun);
    for chunk in 0..BLOCKS / 64 {
        let r = b.request(0, lun, HostOp::Read { lba: chunk * 64, blocks: 64 }).expect("read");
        assert_eq!(r.status, 0);
        assert!(r.data == before, "snapshot blocks {}..+64 are the source's at the instant", chunk * 64);
    }
}
