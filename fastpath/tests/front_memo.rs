//! The cache remembers the decision chain's front half (exposure, LUN map, login, volume, LUN
//! mask, exposure to the host, pause) per (target, LUN, initiator), and the segment the last
//! command there started in. A remembered decision must never survive a change: after every
//! kind of change, a cache that remembered decisions before it resolves every command exactly
//! as a cache that went through the same changes without resolving anything in between.

use dve_fastpath::WorkerConfig;
use dve_fastpath::cache::{CacheConfig, MappingCache};
use dve_fastpath::worker::translate::{Command, Plan, Resolution, Resolved, resolve};
use dve_fp_api::ids::{DeviceId, ExposureId, FcId, Lun, LvId, PortId, VsegId, WorkerId, Wwn};
use dve_fp_api::io::IoKind;
use dve_fp_api::mapping::{
    DevicePath, Extent, HostSet, LunMapping, LunMask, LvDescriptor, Placement, PortLogin, RedirectEntry,
    RedirectIndex, RedirectTable, StorageDescriptor, TargetExposure, VsegDescriptor,
};
use dve_fp_api::message::{MappingEntry, MappingKey};

const TARGETS: [u32; 2] = [0x0A_0001, 0x0A_0002];
const HOSTS: [(u32, u64); 2] = [(0x01_0001, 0x2100), (0x01_0002, 0x2200)];

fn fc(id: u32) -> FcId {
    FcId::new(id).unwrap()
}

fn exposure(id: u32, target: u32, luns: Vec<LunMapping>) -> TargetExposure {
    TargetExposure {
        id: ExposureId(id),
        port_name: Wwn(0x5000 + u64::from(id)),
        node_name: Wwn(0x4000),
        fc_id: fc(target),
        luns,
    }
}

fn lun(lun: u16, lv: u32, hosts: HostSet) -> LunMapping {
    LunMapping { lun: Lun(lun), lv: LvId(lv), hosts }
}

/// Volume `lv` with two segments of 1000 blocks each, ids `10 * lv` and `10 * lv + 1`.
fn volume(lv: u32, block_size: u32) -> LvDescriptor {
    let segs = (0..2)
        .map(|i| VsegDescriptor {
            id: VsegId(10 * lv + i),
            lv: LvId(lv),
            start: u64::from(i) * 1000,
            blocks: 1000,
        })
        .collect();
    LvDescriptor::new(LvId(lv), block_size, segs).unwrap()
}

fn table(device: u32) -> RedirectTable {
    let mut t = RedirectTable::new(4);
    t.insert(RedirectEntry::read_write(StorageDescriptor::Single(Placement {
        device: DeviceId(device),
        lba: 0,
    })))
    .unwrap();
    t
}

fn path(device: u32, block_size: u32) -> MappingEntry {
    MappingEntry::DevicePath(DevicePath {
        device: DeviceId(device),
        port: PortId(1),
        target_fc_id: fc(0x02_0000 + device),
        lun: Lun(0),
        block_size,
    })
}

/// Two exposures, two volumes (one per exposure, both LUN 0; volume 2 also as LUN 1 of the
/// first), two logged-in hosts, every segment mapped whole.
fn setup() -> Vec<Change> {
    let mut changes = vec![
        Change::Expose(exposure(
            1,
            TARGETS[0],
            vec![lun(0, 1, HostSet::All), lun(1, 2, HostSet::only(vec![Wwn(HOSTS[0].1)]))],
        )),
        Change::Expose(exposure(2, TARGETS[1], vec![lun(0, 2, HostSet::All)])),
    ];
    for (fc_id, wwn) in HOSTS {
        changes.push(Change::Add(MappingEntry::Login(PortLogin { fc_id: fc(fc_id), port_name: Wwn(wwn) })));
    }
    for lv in [1, 2] {
        changes.push(Change::Add(MappingEntry::Lv(volume(lv, 512))));
        changes.push(Change::Add(path(lv, 512)));
        for seg in [10 * lv, 10 * lv + 1] {
            changes.push(Change::Add(MappingEntry::Redirects { vseg: VsegId(seg), table: table(lv) }));
            changes.push(Change::Add(MappingEntry::Extents {
                vseg: VsegId(seg),
                extents: vec![Extent { start: 0, end: 1000, value: RedirectIndex(0) }],
            }));
        }
    }
    changes
}

#[derive(Clone, Debug)]
enum Change {
    Expose(TargetExposure),
    Hide(ExposureId),
    Mask(LunMask),
    Pause(LvId, bool),
    Add(MappingEntry),
    Remove(MappingKey),
}

fn apply(cache: &mut MappingCache, change: &Change) {
    match change {
        Change::Expose(e) => cache.expose(e.clone()),
        Change::Hide(id) => {
            let _ = cache.hide(*id);
        }
        Change::Mask(mask) => {
            let _ = cache.set_mask(mask.clone());
        }
        Change::Pause(lv, paused) => {
            let _ = cache.set_paused(*lv, *paused);
        }
        Change::Add(entry) => {
            let _ = cache.add(entry.clone());
        }
        Change::Remove(key) => cache.remove(key),
    }
}

/// Every command the test asks about: each target, LUN, host and direction, in both segments
/// and across their boundary.
fn commands() -> Vec<Command> {
    let mut out = Vec::new();
    for target in TARGETS {
        for l in 0..3 {
            for (host, _) in HOSTS {
                for kind in [IoKind::Read, IoKind::Write] {
                    for (lba, blocks) in [(10, 8), (1500, 8), (996, 8)] {
                        out.push(Command {
                            target: fc(target),
                            lun: Lun(l),
                            initiator: fc(host),
                            kind,
                            lba,
                            blocks,
                        });
                    }
                }
            }
        }
    }
    out
}

fn outcome(
    cache: &mut MappingCache,
    config: &WorkerConfig,
    cmd: &Command,
) -> (Resolution, Resolved, Option<Plan>) {
    let mut plan = Plan::default();
    let (resolution, resolved) = resolve(cache, config, cmd, |_, _, _| false, &mut plan);
    (resolution, resolved, (resolution == Resolution::Dispatch).then_some(plan))
}

/// Every kind of change the control path makes to a worker's cache, one at a time.
fn changes() -> Vec<Change> {
    vec![
        Change::Expose(exposure(1, TARGETS[0], vec![lun(0, 2, HostSet::All)])),
        Change::Expose(exposure(1, TARGETS[0], vec![lun(0, 1, HostSet::only(vec![Wwn(HOSTS[1].1)]))])),
        Change::Expose(exposure(3, TARGETS[0], vec![lun(2, 1, HostSet::All)])),
        Change::Hide(ExposureId(1)),
        Change::Hide(ExposureId(2)),
        Change::Mask(LunMask {
            lv: LvId(1),
            readers: HostSet::All,
            writers: HostSet::only(vec![Wwn(HOSTS[1].1)]),
        }),
        Change::Mask(LunMask { lv: LvId(2), readers: HostSet::only(vec![]), writers: HostSet::All }),
        Change::Pause(LvId(1), true),
        Change::Pause(LvId(2), true),
        Change::Pause(LvId(2), false),
        Change::Remove(MappingKey::Lv(LvId(1))),
        Change::Add(MappingEntry::Lv(volume(1, 4096))),
        Change::Add(MappingEntry::Lv(
            LvDescriptor::new(
                LvId(1),
                512,
                vec![
                    VsegDescriptor { id: VsegId(10), lv: LvId(1), start: 0, blocks: 1200 },
                    VsegDescriptor { id: VsegId(11), lv: LvId(1), start: 1200, blocks: 800 },
                ],
            )
            .unwrap(),
        )),
        Change::Remove(MappingKey::Login(fc(HOSTS[0].0))),
        Change::Add(MappingEntry::Login(PortLogin { fc_id: fc(HOSTS[1].0), port_name: Wwn(HOSTS[0].1) })),
        Change::Remove(MappingKey::Vseg(VsegId(10))),
        Change::Remove(MappingKey::Redirects(VsegId(21))),
        Change::Remove(MappingKey::Extents { vseg: VsegId(10), blocks: 0..20 }),
        Change::Remove(MappingKey::DevicePath(DeviceId(2))),
        Change::Add(path(1, 4096)),
    ]
}

#[test]
fn a_remembered_front_never_outlives_a_change() {
    let config = WorkerConfig::new(WorkerId(0), Vec::new());
    for first in changes() {
        for second in changes() {
            // `warm` resolves every command before and between the changes, so it remembers
            // fronts and segments; `cold` only goes through the changes.
            let (mut warm, mut cold) = (
                MappingCache::new(WorkerId(0), CacheConfig::default()),
                MappingCache::new(WorkerId(0), CacheConfig::default()),
            );
            for change in setup() {
                apply(&mut warm, &change);
                apply(&mut cold, &change);
            }
            for cmd in commands() {
                outcome(&mut warm, &config, &cmd);
            }
            for change in [&first, &second] {
                apply(&mut warm, change);
                apply(&mut cold, change);
                for cmd in commands() {
                    let fresh = {
                        // A cache with nothing remembered: the same changes, a first resolve.
                        let mut fresh = MappingCache::new(WorkerId(0), CacheConfig::default());
                        for c in setup() {
                            apply(&mut fresh, &c);
                        }
                        apply(&mut fresh, &first);
                        if std::ptr::eq(change, &second) {
                            apply(&mut fresh, &second);
                        }
                        outcome(&mut fresh, &config, &cmd)
                    };
                    assert_eq!(
                        outcome(&mut warm, &config, &cmd),
                        fresh,
                        "{cmd:?} after {first:?} then {second:?}"
                    );
                }
                // `cold` resolved nothing before this change: its first answers must agree.
                for cmd in commands() {
                    assert_eq!(outcome(&mut cold, &config, &cmd), outcome(&mut warm, &config, &cmd));
                }
            }
        }
    }
}

#[test]
fn a_remembered_front_is_used_and_gives_the_same_answers_as_a_fresh_one() {
    let config = WorkerConfig::new(WorkerId(0), Vec::new());
    let mut cache = MappingCache::new(WorkerId(0), CacheConfig::default());
    for change in setup() {
        apply(&mut cache, &change);
    }
    let first: Vec<_> = commands().iter().map(|cmd| outcome(&mut cache, &config, cmd)).collect();
    let again: Vec<_> = commands().iter().map(|cmd| outcome(&mut cache, &config, cmd)).collect();
    assert_eq!(first, again);
    assert!(first.iter().any(|(r, _, _)| *r == Resolution::Dispatch));
}
