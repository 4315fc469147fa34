//! Deleting the volumes that carry more than their blocks: an incremental (its granule
//! records go with it, and the base of the last one is writable again) and a journaled
//! volume (its journal's claim and the workers' journal regions go with it). Each deletion
//! is checked by what hosts then read and write, and by a restart from the metadata store.

use dve_controlpath::volume::LayoutSpec;
use dve_fp_api::ids::{LvId, Wwn};
use dve_sim::host::HostOp;
use dve_tests::bench::{Bench, disk_wwpn};

fn pattern(seed: u8, blocks: usize) -> Vec<u8> {
    (0..blocks * 512).map(|i| seed.wrapping_mul(37).wrapping_add((i % 251) as u8)).collect()
}

fn write(b: &mut Bench, host: usize, lun: u16, lba: u64, data: &[u8]) -> u8 {
    b.request(host, lun, HostOp::Write { lba, data: data.to_vec().into() }).expect("write completes").status
}

fn read(b: &mut Bench, host: usize, lun: u16, lba: u64, blocks: u32) -> Vec<u8> {
    b.request(host, lun, HostOp::Read { lba, blocks }).expect("read completes").data.to_vec()
}

fn names(b: &Bench) -> Vec<String> {
    b.switch.control().volumes().map(|v| v.record.name.clone()).collect()
}

fn claims(b: &Bench, lv: LvId) -> Vec<dve_controlpath::volume::Allocation> {
    b.switch.control().volume(lv).expect("volume").record.allocations.clone()
}

#[test]
fn deleting_every_incremental_of_a_base_makes_the_base_writable_again() {
    let mut b = Bench::with_store(3, &[65_536, 65_536]);
    let base = b.volume("base", 4096, |d| LayoutSpec::Linear { devices: d }, &[0]);
    let base_lun = b.expose(base, &[0]);
    b.start(&[0]);
    let original = pattern(1, 1024);
    assert_eq!(write(&mut b, 0, base_lun, 0, &original), 0);

    let store = b.switch.control().device_of(Wwn(disk_wwpn(1))).expect("disk 1");
    let inc1 = b.control(|c| c.create_incremental(base, "inc1", store)).expect("inc1");
    let inc2 = b.control(|c| c.create_incremental(base, "inc2", store)).expect("inc2");
    let lun1 = b.expose(inc1, &[1]);
    let lun2 = b.expose(inc2, &[2]);
    b.idle(1_000_000);
    b.start(&[1, 2]);
    // Each writes into granules 0 and 1: copied from the base, recorded in the store.
    assert_eq!(write(&mut b, 1, lun1, 100, &pattern(11, 40)), 0);
    assert_eq!(write(&mut b, 2, lun2, 100, &pattern(12, 40)), 0);
    let inc1_claim = claims(&b, inc1);

    let refused = b.control(|c| c.delete_volume(inc1)).expect_err("exposed");
    assert!(refused.to_string().contains("hide it first"), "{refused}");
    b.hide(lun1);
    b.control(|c| c.delete_volume(inc1)).expect("an idle, hidden incremental is deleted");
    assert_eq!(names(&b), ["base", "inc2"]);
    b.idle(1_000_000);

    // inc2 still shares the base: the base refuses writes, inc2 reads the base plus its own.
    assert_ne!(write(&mut b, 0, base_lun, 0, &pattern(7, 8)), 0, "the base is still read-only");
    let mut expected = original.clone();
    expected[100 * 512..140 * 512].copy_from_slice(&pattern(12, 40));
    assert!(read(&mut b, 2, lun2, 0, 1024) == expected, "inc2 is untouched");

    // The last incremental goes: the base takes writes again, from the fast path.
    b.hide(lun2);
    b.control(|c| c.delete_volume(inc2)).expect("deleted");
    b.idle(1_000_000);
    assert!(!b.switch.control().is_read_only(base));
    let new = pattern(7, 8);
    assert_eq!(write(&mut b, 0, base_lun, 0, &new), 0, "the base is writable again");
    let mut expected = original;
    expected[..new.len()].copy_from_slice(&new);
    assert!(read(&mut b, 0, base_lun, 0, 1024) == expected);

    // The private store's blocks are claimable again.
    let again = b.control(|c| c.create_volume("again", 4096, LayoutSpec::Linear { devices: vec![store] }));
    assert_eq!(claims(&b, again.expect("created")), inc1_claim);

    // What was committed agrees: a restarted engine loads the base, writable, and no granule
    // record of a deleted incremental (one would make the load fail).
    let committed = b.switch.kill().expect("the store");
    b.switch.restart(committed).expect("the engine restarts from its store");
    assert_eq!(names(&b), ["base", "again"]);
    assert!(!b.switch.control().is_read_only(base));
}

#[test]
fn a_journaled_volume_is_deleted_with_its_journal() {
    let mut b = Bench::with_store(1, &[65_536, 65_536]);
    let (j, lun) = b.journaled_volume(4096, 1024);
    for k in 0..16u8 {
        assert_eq!(write(&mut b, 0, lun, u64::from(k) * 64, &pattern(k, 8)), 0);
    }
    let claimed = claims(&b, j);
    assert_eq!(claimed.len(), 2, "the primary and the journal");
    b.hide(lun);
    b.control(|c| c.delete_volume(j)).expect("a hidden journaled volume is deleted");
    assert!(names(&b).is_empty());
    b.idle(1_000_000);

    // Another journaled volume takes the same blocks (and the same journal group once the
    // deleted one's id is free): its writes are journaled in its own regions and read back.
    let (primary, journal) = (claimed[0].device, claimed[1].device);
    let j2 = b.control(|c| {
        c.create_volume("j2", 4096, LayoutSpec::Journal { primary, journal, journal_blocks: 1024 })
    });
    let j2 = j2.expect("created");
    assert_eq!(claims(&b, j2), claimed, "the deleted volume's blocks, journal included, are claimed again");
    let lun2 = b.expose(j2, &[0]);
    b.idle(1_000_000);
    let data = pattern(42, 16);
    assert_eq!(write(&mut b, 0, lun2, 8, &data), 0);
    assert!(read(&mut b, 0, lun2, 8, 16) == data);

    let committed = b.switch.kill().expect("the store");
    b.switch.restart(committed).expect("the engine restarts from its store");
    assert_eq!(names(&b), ["j2"]);
}
