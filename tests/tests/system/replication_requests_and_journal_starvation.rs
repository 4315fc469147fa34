//! Asynchronous replication on the zero-latency bench: bad requests are refused with the
//! reason and change nothing; with a journal of six one-write slots, every writer keeps
//! running out of journal space, so writes wait for the copy agent, consistency points come
//! early, and still every write completes and the replica ends equal to the primary. A
//! stopped replication frees its replica's claim, and the journal stops keeping slots for it.

use dve_controlpath::error::Error;
use dve_controlpath::volume::LayoutSpec;
use dve_fp_api::ids::Wwn;
use dve_sim::host::HostOp;
use dve_tests::bench::{Bench, disk_wwpn};

#[test]
fn bad_replication_requests_are_refused_and_change_nothing() {
    let mut b = Bench::new(1, &[65_536, 65_536, 65_536, 1024]);
    let linear = b.volume("l", 1024, |d| LayoutSpec::Linear { devices: d }, &[0]);
    let journaled = b.volume(
        "j",
        4096,
        |d| LayoutSpec::Journal { primary: d[0], journal: d[1], journal_blocks: 192 },
        &[1, 2],
    );
    let control = b.switch.control_mut();
    let device = |c: &dve_controlpath::control_path::ControlPath, i: usize| {
        c.device_of(Wwn(disk_wwpn(i))).expect("discovered")
    };
    let (d1, d2, d3) = (device(control, 1), device(control, 2), device(control, 3));
    let before: Vec<u64> = control.devices().iter().map(|d| d.allocated).collect();
    let refusals = [
        (control.start_replication(linear, d2, 1_000_000), "not journaled"),
        (control.start_replication(journaled, d1, 1_000_000), "replica device"),
        (control.start_replication(journaled, d2, 1_000_000), "replica device"),
        (control.start_replication(journaled, d2, 0), "interval"),
        (control.start_replication(journaled, d3, 1_000_000), "free"),
    ];
    for (result, why) in refusals {
        let err = result.expect_err(why);
        assert!(err.to_string().contains(why) || matches!(err, Error::NoSpace { .. }), "{why}: {err}");
    }
    let after: Vec<u64> = control.devices().iter().map(|d| d.allocated).collect();
    assert_eq!(before, after, "no space claimed by a refused request");
    assert!(control.replications().is_empty());
}

#[test]
fn writes_outrunning_a_tiny_journal_wait_for_the_copy_agent_and_the_replica_catches_up() {
    let mut b = Bench::new(1, &[65_536, 65_536, 65_536]);
    // Six slots of 32 blocks: each holds one 16-block write (a header block and 16 of data).
    let (lv, lun) = b.journaled_volume(4096, 192);
    let replica = b.switch.control().device_of(Wwn(disk_wwpn(2))).expect("discovered");
    b.switch.control_mut().start_replication(lv, replica, 5_000_000).expect("replicating");
    let mut written = Vec::new();
    for k in 0..40u64 {
        let lba = (k * 37) % 240 * 16;
        let data: Vec<u8> = (0..16 * 512).map(|i| (i as u64 * 31 + k * 7) as u8).collect();
        let w = b.request(0, lun, HostOp::Write { lba, data: data.into() }).expect("write");
        assert_eq!(w.status, 0, "write {k} completed");
        written.push(lba);
    }
    // Long enough for the next consistency point, the copy agent and the applier.
    let caught_up = b.run_until(2_000_000_000, |b| {
        b.switch.control().replications().first().is_some_and(|r| {
            r.applied_cycle.is_some()
                && b.disks[2].read_blocks(r.replica.lba, 4096) == b.disks[0].read_blocks(0, 4096)
        })
    });
    let progress = b.switch.control().replications()[0];
    assert!(caught_up, "the replica equals the primary: {progress:?}");
    assert!(progress.cycles_applied >= 2, "{progress:?}");
    assert_eq!(progress.baseline_blocks, 4096);
    let waits = b.switch.control().counters().manual.journal_waits;
    assert!(waits > 0, "writes waited for journal space: {waits}");
}

#[test]
fn a_stopped_replication_frees_its_replica_and_the_journal_keeps_no_slot_for_it() {
    let mut b = Bench::new(1, &[65_536, 65_536, 65_536]);
    let (lv, lun) = b.journaled_volume(4096, 192);
    let replica = b.switch.control().device_of(Wwn(disk_wwpn(2))).expect("discovered");
    let claimed = |b: &Bench| b.switch.control().devices().get(replica).map(|d| d.allocated);
    b.switch.control_mut().start_replication(lv, replica, 5_000_000).expect("replicating");
    assert_eq!(claimed(&b), Some(4096));
    let write = |b: &mut Bench, k: u64| {
        let lba = (k * 37) % 240 * 16;
        let data: Vec<u8> = (0..16 * 512).map(|i| (i as u64 * 13 + k) as u8).collect();
        let w = b.request(0, lun, HostOp::Write { lba, data: data.into() }).expect("write");
        assert_eq!(w.status, 0, "write {k} completed");
    };
    for k in 0..20 {
        write(&mut b, k);
    }
    let control = b.switch.control_mut();
    control.stop_replication(lv).expect("stopping");
    let again = control.stop_replication(lv).expect_err("twice");
    assert!(again.to_string().contains("already stopping"), "{again}");
    assert!(control.replications()[0].stopping);
    let stopped = b.run_until(2_000_000_000, |b| b.switch.control().replications().is_empty());
    assert!(stopped, "the replication ends");
    assert_eq!(claimed(&b), Some(0), "the replica's claim is free");
    let not_replicated = b.switch.control_mut().stop_replication(lv).expect_err("stopped");
    assert!(not_replicated.to_string().contains("not replicated"), "{not_replicated}");
    // Six slots of one write each: without a copy agent, writes go on only if the journal
    // no longer keeps closed slots for it.
    for k in 20..80 {
        write(&mut b, k);
    }
    let waits = b.switch.control().counters().manual.journal_waits;
    for k in 80..100 {
        write(&mut b, k);
    }
    assert_eq!(b.switch.control().counters().manual.journal_waits, waits, "no write waits for journal space");
}
