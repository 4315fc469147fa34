//! The randomized deterministic checker: thousands of seeded schedules of 3 to 5 engines and
//! several oplocks with random delays, crashes and restarts, partitions and (in raw mode)
//! message loss and duplication; invariants after every step, liveness after healing. A
//! failing schedule prints its seed; `DVE_COHERENCY_SEED=<seed>` replays it verbosely.

mod common;

use common::{Scenario, harsh_scenario_for, run_seed, scenario_for};

fn run_range(range: std::ops::Range<u64>) {
    run_range_of(range, scenario_for);
}

fn run_range_of(range: std::ops::Range<u64>, scenario: fn(u64) -> Scenario) {
    let mut totals = [0u64; 7];
    for seed in range.clone() {
        match run_seed(seed, scenario(seed), false) {
            Ok(world) => {
                let counts = [
                    world.steps,
                    world.acquisitions,
                    world.evictions,
                    world.cascades,
                    world.self_evictions,
                    world.replays,
                    world.sweeps,
                ];
                for (total, n) in totals.iter_mut().zip(counts) {
                    *total += n;
                }
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    let [steps, acquisitions, evictions, cascades, self_evictions, replays, sweeps] = totals;
    eprintln!(
        "seeds {range:?}: {steps} steps, {acquisitions} acquisitions, {evictions} evictions \
         ({cascades} cascading), {self_evictions} engines found themselves evicted, \
         {replays} boot replays, {sweeps} sweeps"
    );
}

#[test]
fn schedules_0() {
    run_range(0..2_500);
}

#[test]
fn schedules_1() {
    run_range(2_500..5_000);
}

#[test]
fn schedules_2() {
    run_range(5_000..7_500);
}

#[test]
fn schedules_3() {
    run_range(7_500..10_000);
}

/// Replays `DVE_COHERENCY_SEED` with a trace of every step (does nothing without it).
#[test]
fn replay() {
    let Ok(seed) = std::env::var("DVE_COHERENCY_SEED") else {
        return;
    };
    let seed: u64 = seed.parse().expect("DVE_COHERENCY_SEED is a number");
    let scenario =
        if std::env::var("DVE_COHERENCY_HARSH").is_ok() { harsh_scenario_for } else { scenario_for };
    if let Err(failure) = run_seed(seed, scenario(seed), true) {
        panic!("{failure}");
    }
}

/// More seeds on demand: `DVE_COHERENCY_SEEDS=10000..100000`, harsh ones with
/// `DVE_COHERENCY_HARSH=1` (does nothing without it).
#[test]
fn extra_seeds() {
    let Ok(range) = std::env::var("DVE_COHERENCY_SEEDS") else {
        return;
    };
    let (start, end) = range.split_once("..").expect("DVE_COHERENCY_SEEDS is start..end");
    let scenario =
        if std::env::var("DVE_COHERENCY_HARSH").is_ok() { harsh_scenario_for } else { scenario_for };
    run_range_of(start.parse().expect("start")..end.parse().expect("end"), scenario);
}

/// Frequent crashes, 10% raw loss and duplication, longer schedules.
#[test]
fn harsh_schedules() {
    run_range_of(100_000..101_000, harsh_scenario_for);
}
