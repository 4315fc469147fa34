//! A cancelled migration's task reads CANCELLED after the engine restarts from its metadata
//! store, until the next migration of the volume ends (then DONE) or the volume is deleted
//! (a later volume with its id starts clean).

use dve_controlpath::volume::LayoutSpec;
use dve_fp_api::ids::{DeviceId, LvId, Wwn};
use dve_tests::bench::{Bench, disk_wwpn};

fn disk(b: &Bench, i: usize) -> DeviceId {
    b.switch.control().device_of(Wwn(disk_wwpn(i))).expect("disk known")
}

fn migrate_to_the_end(b: &mut Bench, lv: LvId, to: DeviceId) {
    b.control(|c| c.start_migration(lv, &[to], None)).expect("migration started");
    let ended = b.run_until(5_000_000_000, |b| b.switch.control().migrations().is_empty());
    assert!(ended, "the migration ends");
}

#[test]
fn a_cancelled_migration_reads_cancelled_after_a_restart_until_the_next_one_ends() {
    let mut b = Bench::with_store(1, &[16_384, 16_384, 16_384]);
    let (d0, d1, d2) = (disk(&b, 0), disk(&b, 1), disk(&b, 2));
    let lv =
        b.control(|c| c.create_volume("l0", 8_192, LayoutSpec::Linear { devices: vec![d0] })).expect("l0");
    b.control(|c| c.start_migration(lv, &[d1], None)).expect("migration started");
    let started =
        b.run_until(5_000_000_000, |b| b.switch.control().migrations().first().is_some_and(|m| m.copied > 0));
    assert!(started, "the migration moved something");
    b.control(|c| c.cancel_migration(lv)).expect("cancelled");
    let ended = b.run_until(5_000_000_000, |b| b.switch.control().migrations().is_empty());
    assert!(ended, "the cancel ends");
    assert!(b.switch.control().migration_cancelled(lv));

    b.restart_engine();
    assert!(b.switch.control().migration_cancelled(lv), "still cancelled after a restart");

    // The next migration's end clears it, in memory and in the store.
    migrate_to_the_end(&mut b, lv, d2);
    assert!(!b.switch.control().migration_cancelled(lv));
    b.restart_engine();
    assert!(!b.switch.control().migration_cancelled(lv), "done, not cancelled, after a restart");

    // Cancelled again, then the volume is deleted: a new volume that gets its id (the
    // highest) is not marked, before or after a restart.
    b.control(|c| c.start_migration(lv, &[d0], None)).expect("third migration");
    b.control(|c| c.cancel_migration(lv)).expect("cancelled");
    let ended = b.run_until(5_000_000_000, |b| b.switch.control().migrations().is_empty());
    assert!(ended && b.switch.control().migration_cancelled(lv));
    b.control(|c| c.delete_volume(lv)).expect("deleted");
    b.idle(1_000_000);
    b.restart_engine();
    let again = b.control(|c| c.create_volume("again", 8_192, LayoutSpec::Linear { devices: vec![d1] }));
    let again = again.expect("created");
    assert_eq!(again, lv, "the deleted volume's id is given again");
    assert!(!b.switch.control().migration_cancelled(again));
    b.restart_engine();
    assert!(!b.switch.control().migration_cancelled(again), "no mark of the deleted volume is left");
}
