//! A worker in steady state allocates nothing per frame: once its lists, pools and spare
//! buffers have grown to the load, host reads and writes through every primitive but the
//! journal (whose region fills) run without a single allocation in the worker's own calls.
//! The process's allocator is counted; the harness's own allocations (its emulated host and
//! disks, the frames it hands the worker) fall outside the calls and are not.

mod support;

use std::alloc::System;

use dve_fp_api::ids::DeviceId;
use dve_fp_api::mapping::{
    MirrorSet, MirrorSide, Placement, ReadPolicy, RedirectEntry, SideLayout, SideState, StorageDescriptor,
    StripeSet,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use support::*;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations and reallocations the process has made so far.
fn allocations() -> usize {
    let stats = GLOBAL.stats();
    stats.allocations + stats.reallocations
}

fn placement(device: u32, lba: u64) -> Placement {
    Placement { device: DeviceId(device), lba }
}

fn layouts() -> Vec<(&'static str, RedirectEntry)> {
    let stripe = StripeSet::new(3, (1..=4).map(|d| placement(d, 0)).collect()).unwrap();
    let side =
        |d| MirrorSide { layout: SideLayout::Single(placement(d, 0)), state: SideState::Alive, read_cost: 1 };
    let mirror = MirrorSet::new(vec![side(1), side(2)], ReadPolicy::RoundRobin).unwrap();
    let raid10 = MirrorSet::new(
        vec![
            MirrorSide {
                layout: SideLayout::Stripe(
                    StripeSet::new(3, vec![placement(1, 0), placement(2, 0)]).unwrap(),
                ),
                state: SideState::Alive,
                read_cost: 1,
            },
            MirrorSide {
                layout: SideLayout::Stripe(
                    StripeSet::new(3, vec![placement(3, 0), placement(4, 0)]).unwrap(),
                ),
                state: SideState::Alive,
                read_cost: 1,
            },
        ],
        ReadPolicy::RoundRobin,
    )
    .unwrap();
    vec![
        ("linear", single(1, 0)),
        ("stripe-4", RedirectEntry::read_write(StorageDescriptor::Stripe(stripe))),
        ("mirror-2", RedirectEntry::read_write(StorageDescriptor::Mirror(mirror))),
        ("raid-10", RedirectEntry::read_write(StorageDescriptor::Mirror(raid10))),
    ]
}

/// One round of I/O: writes and reads of 4 KiB and 12 KiB at moving addresses, each checked.
fn round(bed: &mut Testbed, n: u64) {
    for (blocks, seed) in [(8usize, 1u8), (24, 2)] {
        let lba = (n * 40) % 4000;
        let data = pattern(seed.wrapping_add(n as u8), blocks);
        let ox = bed.write(lba, data.clone());
        assert_eq!(bed.result(ox).status, Some(0), "write {n}: upcalls {:?}", bed.upcalls);
        let ox = bed.read(lba, blocks as u32);
        assert_eq!(bed.result(ox).status, Some(0), "read {n}");
        assert!(bed.result(ox).data == data, "read {n} returns what was written");
    }
}

#[test]
fn a_worker_in_steady_state_allocates_nothing_for_reads_and_writes() {
    for (name, entry) in layouts() {
        let mut bed = Testbed::single(|_| {}, 4096, table(vec![entry]));
        bed.meter = Some(allocations);
        // Warm-up: lists, pools and spare buffers grow to the load.
        for n in 0..64 {
            round(&mut bed, n);
        }
        let warm = bed.worker_allocations;
        bed.worker_allocations = 0;
        for n in 64..320 {
            round(&mut bed, n);
        }
        assert_eq!(
            bed.worker_allocations, 0,
            "{name}: the worker allocated {} times over 1,024 I/Os in steady state ({warm} while warming up)",
            bed.worker_allocations
        );
        assert!(warm > 0, "{name}: the meter counts the worker's allocations");
    }
}
