//! The management gRPC API over a running engine: a tonic server on 127.0.0.1 serves the
//! bench engine (a real switch with discovered disks), and the generated client lists the
//! devices, creates a mirrored volume, exposes it, grows a linear one, splits and merges its
//! segments, takes a snapshot,
//! starts, pauses and resumes a migration and follows it in the task list and by watching
//! it to its end, limits a migration's rate, cancels one (its destination's claims freed, as
//! a finished one's source's are); hides and deletes
//! volumes and claims their space again; bad requests get the status code that says why,
//! name the field, and change nothing.

use std::sync::{Arc, Mutex, MutexGuard};

use dve_controlpath::ControlPath;
use dve_controlpath::management::{EngineAccess, ManagementService};
use dve_fp_api::ids::Wwn;
use dve_fp_api::stats::FpStatistics;
use dve_proto::management as pb;
use dve_proto::management::management_client::ManagementClient;
use dve_tests::bench::{Bench, disk_wwpn, host_wwpn};
use tonic::Code;
use tonic::transport::Channel;

/// Disks of the bench: 32 MiB each.
const DISK_BLOCKS: u64 = 65_536;

/// The bench engine lent to the service: every call runs under the lock, then the
/// control path's downcalls are moved to the workers.
#[derive(Clone, Debug)]
struct BenchEngine(Arc<Mutex<Bench>>);

impl BenchEngine {
    fn lock(&self) -> MutexGuard<'_, Bench> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl EngineAccess for BenchEngine {
    fn with_control<R>(&self, f: impl FnOnce(&mut ControlPath) -> R) -> R {
        let mut bench = self.lock();
        let result = f(bench.switch.control_mut());
        let now = bench.now;
        let frames = bench.switch.settle(now);
        // No host is started and management changes only reach the workers: nothing goes
        // out on a port (the bench cannot take frames from outside its own loop).
        assert!(frames.is_empty(), "a management call sent frames: {frames:?}");
        result
    }

    fn worker_statistics(&self) -> Vec<FpStatistics> {
        let bench = self.lock();
        bench.switch.statistics(bench.now)
    }
}

fn wwpn(w: u64) -> String {
    Wwn(w).to_string()
}

fn disk(i: usize) -> String {
    wwpn(disk_wwpn(i))
}

fn linear(device: &str) -> pb::Layout {
    pb::Layout {
        kind: Some(pb::layout::Kind::Linear(pb::Linear {
            placement: Some(pb::Placement { device_id: device.to_string(), start_lba: 0 }),
        })),
    }
}

fn mirror(devices: &[String]) -> pb::Layout {
    pb::Layout {
        kind: Some(pb::layout::Kind::Mirror(pb::Mirror {
            sides: devices.iter().map(|d| linear(d)).collect(),
        })),
    }
}

fn create(name: &str, blocks: u64, layout: pb::Layout) -> pb::CreateVolumeRequest {
    pb::CreateVolumeRequest { name: name.to_string(), blocks, block_size: 0, layout: Some(layout) }
}

/// A read-only snapshot of `source` named `name`, its store on `store` if given.
fn snapshot_of(source: &str, name: &str, store: Option<pb::Placement>) -> pb::CreateSnapshotRequest {
    pb::CreateSnapshotRequest {
        source: source.into(),
        snapshot: name.into(),
        store,
        writable: false,
        copy_granularity_blocks: 0,
    }
}

/// Expose `volume` to host 0 on the engine's one virtual target, at the next free LUN.
fn expose_to_host_0(volume: &str) -> pb::ExposeVolumeRequest {
    pb::ExposeVolumeRequest {
        volume: volume.into(),
        target_wwpn: String::new(),
        lun: None,
        host_wwpns: vec![wwpn(host_wwpn(0))],
    }
}

/// A runtime, the bench engine with `disks` disks, a server on an ephemeral port and a
/// client connected to it.
fn start(disks: usize) -> (tokio::runtime::Runtime, BenchEngine, ManagementClient<Channel>) {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let engine = BenchEngine(Arc::new(Mutex::new(Bench::new(1, &vec![DISK_BLOCKS; disks]))));
    let service = ManagementService::new(engine.clone()).into_server();
    let client = runtime.block_on(async {
        let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().expect("address"))
            .expect("bound");
        let address = incoming.local_addr().expect("local address");
        tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
        ManagementClient::connect(format!("http://{address}")).await.expect("connected")
    });
    (runtime, engine, client)
}

fn layout_kind(segment: &pb::Segment) -> &pb::layout::Kind {
    segment.layout.as_ref().and_then(|l| l.kind.as_ref()).expect("segment layout")
}

#[test]
fn a_grpc_client_builds_exposes_grows_snapshots_and_migrates_volumes() {
    let (runtime, engine, mut client) = start(5);
    runtime.block_on(async {
        // The discovered disks, by target port name.
        let devices =
            client.list_devices(pb::ListDevicesRequest {}).await.expect("devices").into_inner().devices;
        assert_eq!(devices.len(), 5);
        for i in 0..5 {
            let d = devices.iter().find(|d| d.target_wwpn == disk(i)).expect("disk listed");
            assert_eq!((d.blocks, d.block_size, d.lun), (DISK_BLOCKS, 512, 0));
            assert_eq!(d.paths.len(), 1, "{d:?}");
        }

        // A mirror over d0 and d1, exposed to host 0.
        let m0 = client
            .create_volume(create("m0", 8192, mirror(&[disk(0), disk(1)])))
            .await
            .expect("m0")
            .into_inner();
        assert_eq!((m0.name.as_str(), m0.blocks, m0.block_size), ("m0", 8192, 512));
        assert_eq!(m0.naa_id.len(), 16);
        let [segment] = &m0.segments[..] else { panic!("one segment: {m0:?}") };
        let pb::layout::Kind::Mirror(sides) = layout_kind(segment) else { panic!("a mirror: {segment:?}") };
        assert_eq!(sides.sides.len(), 2);
        let exposure = client.expose_volume(expose_to_host_0("m0")).await.expect("exposed").into_inner();
        assert_eq!(exposure.volume, "m0");
        assert_eq!(exposure.host_wwpns, vec![wwpn(host_wwpn(0))]);
        let target = engine.lock().target();
        assert_eq!(exposure.target_wwpn, wwpn(target));
        let exposures = client.list_exposures(pb::Empty {}).await.expect("exposures").into_inner().exposures;
        assert_eq!(exposures, vec![exposure.clone()]);
        let lv = engine.with_control(|c| c.volume_named("m0").expect("m0"));
        assert_eq!(
            engine.with_control(|c| c.volume(lv).map(|v| v.record.hosts.clone())),
            Some(vec![Wwn(host_wwpn(0))])
        );

        // A linear volume on d2 grows by a segment on d3.
        client.create_volume(create("l0", 4096, linear(&disk(2)))).await.expect("l0");
        let grown = client
            .grow_volume(pb::GrowVolumeRequest {
                name: "l0".into(),
                add_blocks: 2048,
                layout: Some(linear(&disk(3))),
            })
            .await
            .expect("grown")
            .into_inner();
        assert_eq!(grown.blocks, 6144);
        assert_eq!(
            grown.segments.iter().map(|s| (s.start_lba, s.blocks)).collect::<Vec<_>>(),
            [(0, 4096), (4096, 2048)]
        );
        let fetched = client.get_volume(pb::VolumeRef { name: "l0".into() }).await.expect("l0").into_inner();
        assert_eq!(fetched, grown);

        // Its first segment split in two, then merged back; its grown segment is on another
        // disk, so merging it into the first is refused and changes nothing.
        let change = |at_lba| pb::SegmentChangeRequest { volume: "l0".into(), at_lba };
        client.split_segment(change(1000)).await.expect("split");
        let starts = |v: pb::Volume| v.segments.iter().map(|s| (s.start_lba, s.blocks)).collect::<Vec<_>>();
        let split = client.get_volume(pb::VolumeRef { name: "l0".into() }).await.expect("l0").into_inner();
        assert_eq!(starts(split), [(0, 1000), (1000, 3096), (4096, 2048)]);
        let refused = client.merge_segments(change(4096)).await.expect_err("not contiguous");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("does not continue"), "{refused:?}");
        let outside = client.split_segment(change(6144)).await.expect_err("beyond the end");
        assert_eq!(outside.code(), Code::InvalidArgument, "{outside:?}");
        assert!(outside.message().contains("at"), "{outside:?}");
        client.merge_segments(change(1000)).await.expect("merged");
        let merged = client.get_volume(pb::VolumeRef { name: "l0".into() }).await.expect("l0").into_inner();
        assert_eq!(starts(merged), [(0, 4096), (4096, 2048)]);

        // A snapshot of another linear volume.
        client.create_volume(create("s0", 2048, linear(&disk(4)))).await.expect("s0");
        let snapshot =
            client.create_snapshot(snapshot_of("s0", "s0-snap", None)).await.expect("snapshot").into_inner();
        assert_eq!((snapshot.kind.as_str(), snapshot.volume.as_str()), ("snapshot-completion", "s0-snap"));
        let snap =
            client.get_volume(pb::VolumeRef { name: "s0-snap".into() }).await.expect("snapshot volume");
        assert_eq!(snap.into_inner().blocks, 2048);
        // Its completion is listed with the other tasks while it runs, then no more.
        let tasks = client.list_tasks(pb::Empty {}).await.expect("tasks").into_inner().tasks;
        let listed = tasks.iter().find(|t| t.id == snapshot.id).expect("the completion is listed");
        assert_eq!((listed.kind.as_str(), listed.total_blocks), ("snapshot-completion", 2048), "{listed:?}");
        assert!(listed.done_blocks <= 2048, "{listed:?}");
        // Part way, the listing shows the completion's progress.
        let moved = engine.lock().run_until(5_000_000_000, |b| {
            b.switch.control().snapshot_completions().iter().any(|p| p.pushed > 0)
        });
        assert!(moved, "the completion pushes");
        let tasks = client.list_tasks(pb::Empty {}).await.expect("tasks").into_inner().tasks;
        let part = tasks.iter().find(|t| t.id == snapshot.id).expect("still completing");
        assert!(part.done_blocks > listed.done_blocks, "{part:?} after {listed:?}");
        let completed =
            engine.lock().run_until(5_000_000_000, |b| b.switch.control().snapshot_completions().is_empty());
        assert!(completed, "the snapshot completes");
        let tasks = client.list_tasks(pb::Empty {}).await.expect("tasks").into_inner().tasks;
        assert!(tasks.iter().all(|t| t.id != snapshot.id), "{tasks:?}");

        // l0 migrates from d2, d3 to d4, d1, is paused, resumed, and ends on the new disks.
        let to = pb::Layout {
            kind: Some(pb::layout::Kind::Stripe(pb::Stripe {
                unit_blocks: 0,
                members: [disk(4), disk(1)]
                    .iter()
                    .map(|d| pb::Placement { device_id: d.clone(), start_lba: 0 })
                    .collect(),
            })),
        };
        let task = client
            .start_migration(pb::StartMigrationRequest {
                volume: "l0".into(),
                segment: 0,
                destination: Some(to),
                rate_limit_bytes_per_sec: 0,
            })
            .await
            .expect("migration started")
            .into_inner();
        assert_eq!((task.kind.as_str(), task.volume.as_str(), task.total_blocks), ("migration", "l0", 6144));
        assert_eq!(task.state(), pb::TaskState::Running);
        let tasks = client.list_tasks(pb::Empty {}).await.expect("tasks").into_inner().tasks;
        assert_eq!(tasks.iter().filter(|t| t.id == task.id).count(), 1, "{tasks:?}");

        let paused = client
            .control_task(pb::ControlTaskRequest { id: task.id, control: pb::TaskControl::Pause.into() })
            .await
            .expect("paused")
            .into_inner();
        assert_eq!(paused.state(), pb::TaskState::Paused);
        engine.lock().idle(5_000_000);
        let tasks = client.list_tasks(pb::Empty {}).await.expect("tasks").into_inner().tasks;
        let held = tasks.iter().find(|t| t.id == task.id).expect("still listed");
        assert_eq!((held.state(), held.done_blocks), (pb::TaskState::Paused, paused.done_blocks));

        client
            .control_task(pb::ControlTaskRequest { id: task.id, control: pb::TaskControl::Resume.into() })
            .await
            .expect("resumed");
        let mut watch = client.watch_task(pb::TaskRef { id: task.id }).await.expect("watched").into_inner();
        let first = watch.message().await.expect("stream").expect("the task as it is");
        assert_eq!((first.state(), first.kind.as_str()), (pb::TaskState::Running, "migration"));
        let finished = engine.lock().run_until(5_000_000_000, |b| b.switch.control().migrations().is_empty());
        assert!(finished, "the migration ends");
        // The watch follows it to its end, then closes.
        let mut seen = vec![first];
        while let Some(update) = watch.message().await.expect("stream") {
            seen.push(update);
        }
        let last = seen.last().expect("updates");
        assert_eq!((last.state(), last.done_blocks, last.total_blocks), (pb::TaskState::Done, 6144, 6144));
        assert!(seen.windows(2).all(|w| w[0].done_blocks <= w[1].done_blocks && w[0] != w[1]), "{seen:?}");
        let ended = client.watch_task(pb::TaskRef { id: task.id }).await.expect_err("ended");
        assert_eq!(ended.code(), Code::NotFound, "{ended:?}");
        let tasks = client.list_tasks(pb::Empty {}).await.expect("tasks").into_inner().tasks;
        assert!(tasks.iter().all(|t| t.id != task.id), "{tasks:?}");
        let moved = client.get_volume(pb::VolumeRef { name: "l0".into() }).await.expect("l0").into_inner();
        let on: Vec<String> = moved
            .segments
            .iter()
            .map(|s| match layout_kind(s) {
                pb::layout::Kind::Linear(l) => l.placement.as_ref().expect("placement").device_id.clone(),
                other => panic!("linear segments: {other:?}"),
            })
            .collect();
        assert_eq!(on, [disk(4), disk(1)]);

        // Statistics: both workers and the control path's own counters.
        let stats = client.get_statistics(pb::Empty {}).await.expect("statistics").into_inner();
        assert_eq!(stats.workers.len(), 3, "{stats:?}");
        let control = stats.workers.iter().find(|w| w.worker == 15).expect("control path counters");
        assert!(control.faults.iter().any(|f| f.cause == "cp.revocations" && f.count > 0), "{control:?}");
    });
}

/// Blocks claimed on disk `i` of the bench.
fn claimed(engine: &BenchEngine, i: usize) -> u64 {
    engine.with_control(|c| {
        let device = c.device_of(Wwn(disk_wwpn(i))).expect("disk known");
        c.devices().get(device).expect("device").allocated
    })
}

#[test]
fn a_cancelled_migration_copies_back_frees_its_destination_and_a_finished_one_frees_its_source() {
    let (runtime, engine, mut client) = start(3);
    runtime.block_on(async {
        client.create_volume(create("l0", 16_384, linear(&disk(0)))).await.expect("l0");
        let claims = [claimed(&engine, 0), claimed(&engine, 1), claimed(&engine, 2)];
        assert_eq!(claims, [16_384, 0, 0]);
        let migrate = |to: usize| pb::StartMigrationRequest {
            volume: "l0".into(),
            segment: 0,
            destination: Some(linear(&disk(to))),
            rate_limit_bytes_per_sec: 0,
        };
        let control =
            |id: u64, control: pb::TaskControl| pb::ControlTaskRequest { id, control: control.into() };

        // Halfway to d1, the migration is paused, then cancelled: the cancel goes on paused or not.
        let task = client.start_migration(migrate(1)).await.expect("migration started").into_inner();
        assert_eq!(claimed(&engine, 1), 16_384, "the destination is claimed at the start");
        let halfway = engine.lock().run_until(5_000_000_000, |b| {
            b.switch.control().migrations().first().is_some_and(|m| m.copied >= 8_192)
        });
        assert!(halfway, "the migration got halfway");
        client.control_task(control(task.id, pb::TaskControl::Pause)).await.expect("paused");
        let moved = client.list_tasks(pb::Empty {}).await.expect("tasks").into_inner().tasks[0].done_blocks;
        let cancelling = client
            .control_task(control(task.id, pb::TaskControl::Cancel))
            .await
            .expect("cancelled")
            .into_inner();
        assert_eq!(
            (cancelling.state(), cancelling.cancelling),
            (pb::TaskState::Running, true),
            "{cancelling:?}"
        );
        assert!(cancelling.done_blocks >= moved, "{cancelling:?}, {moved} moved when paused");
        let again = client.control_task(control(task.id, pb::TaskControl::Cancel)).await.expect_err("twice");
        assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
        assert!(again.message().contains("already being cancelled"), "{}", again.message());
        let mut watch = client.watch_task(pb::TaskRef { id: task.id }).await.expect("watched").into_inner();
        let ended = engine.lock().run_until(5_000_000_000, |b| b.switch.control().migrations().is_empty());
        assert!(ended, "the cancel ends");
        let mut seen = Vec::new();
        while let Some(update) = watch.message().await.expect("stream") {
            seen.push(update);
        }
        let last = seen.last().expect("updates");
        assert_eq!(last.state(), pb::TaskState::Cancelled, "{seen:?}");
        // Counting down while the moved part goes back.
        assert!(seen.windows(2).all(|w| w[0].done_blocks >= w[1].done_blocks), "{seen:?}");
        let l0 = client.get_volume(pb::VolumeRef { name: "l0".into() }).await.expect("l0").into_inner();
        let [segment] = &l0.segments[..] else { panic!("one segment: {l0:?}") };
        let pb::layout::Kind::Linear(on) = layout_kind(segment) else { panic!("linear: {segment:?}") };
        assert_eq!(on.placement.as_ref().expect("placement").device_id, disk(0), "still on d0");
        assert_eq!([claimed(&engine, 0), claimed(&engine, 1)], [16_384, 0], "d1's claim is free again");
        let late = client.control_task(control(task.id, pb::TaskControl::Cancel)).await.expect_err("ended");
        assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");

        // A migration to d2 runs to its end: d0's claim is free, d2 holds the volume.
        client.start_migration(migrate(2)).await.expect("second migration started");
        let ended = engine.lock().run_until(5_000_000_000, |b| b.switch.control().migrations().is_empty());
        assert!(ended, "the second migration ends");
        let done = client.list_tasks(pb::Empty {}).await.expect("tasks").into_inner().tasks;
        assert!(done.is_empty(), "{done:?}");
        assert_eq!([claimed(&engine, 0), claimed(&engine, 1), claimed(&engine, 2)], [0, 0, 16_384]);

        // Only migrations are cancelled; a resync is refused as not supported.
        client.create_volume(create("m0", 4_096, mirror(&[disk(0), disk(1)]))).await.expect("m0");
        let resync = 2u64 << 48 | 1;
        let status =
            client.control_task(control(resync, pb::TaskControl::Cancel)).await.expect_err("a resync");
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    });
}

#[test]
fn a_rate_limited_migration_copies_no_faster_than_its_limit() {
    let (runtime, engine, mut client) = start(2);
    runtime.block_on(async {
        client.create_volume(create("l0", 16_384, linear(&disk(0)))).await.expect("l0");
        let migrate = |rate: u64| pb::StartMigrationRequest {
            volume: "l0".into(),
            segment: 0,
            destination: Some(linear(&disk(1))),
            rate_limit_bytes_per_sec: rate,
        };
        let slow = client.start_migration(migrate(100)).await.expect_err("under a block per second");
        assert_eq!(slow.code(), Code::InvalidArgument, "{slow:?}");
        assert!(slow.message().contains("rate_limit_bytes_per_sec"), "{}", slow.message());
        assert_eq!(claimed(&engine, 1), 0, "the refused migration claimed nothing");

        // 4 MiB/s is 8,192 blocks a second: in 250 ms of virtual time, 2,048 blocks, give or
        // take the chunk (128 blocks) in hand.
        client.start_migration(migrate(4 << 20)).await.expect("migration started");
        engine.lock().idle(250_000_000);
        let copied = engine.with_control(|c| c.migrations()[0].copied);
        assert!((2_048 - 128..=2_048 + 128).contains(&copied), "{copied} blocks copied in 250 ms");
        let ended = engine.lock().run_until(5_000_000_000, |b| b.switch.control().migrations().is_empty());
        assert!(ended, "the limited migration ends");
        assert_eq!([claimed(&engine, 0), claimed(&engine, 1)], [0, 16_384]);
    });
}

/// Task `id`, paused, makes no progress over 50 ms of virtual time (once the step in hand,
/// if any, has finished) and is not done.
async fn held_still(engine: &BenchEngine, client: &mut ManagementClient<Channel>, id: u64) {
    let mut task = async || {
        let tasks = client.list_tasks(pb::Empty {}).await.expect("tasks").into_inner().tasks;
        tasks.into_iter().find(|t| t.id == id).expect("still listed")
    };
    engine.lock().idle(10_000_000);
    let before = task().await;
    engine.lock().idle(50_000_000);
    let after = task().await;
    assert_eq!(after.state(), pb::TaskState::Paused, "{after:?}");
    assert_eq!(after.done_blocks, before.done_blocks, "{after:?} after {before:?}");
    assert!(after.done_blocks < after.total_blocks, "{after:?}");
}

#[test]
fn a_resync_and_a_snapshot_completion_pause_and_resume() {
    let (runtime, engine, mut client) = start(3);
    runtime.block_on(async {
        client.create_volume(create("lin", 16_384, linear(&disk(0)))).await.expect("lin");
        let control =
            |id: u64, control: pb::TaskControl| pb::ControlTaskRequest { id, control: control.into() };
        let resync = client
            .add_mirror_side(pb::AddMirrorSideRequest {
                volume: "lin".into(),
                segment: 0,
                side: Some(linear(&disk(1))),
            })
            .await
            .expect("side added")
            .into_inner();
        let paused = client.control_task(control(resync.id, pb::TaskControl::Pause)).await.expect("paused");
        assert_eq!(paused.into_inner().state(), pb::TaskState::Paused);
        held_still(&engine, &mut client, resync.id).await;
        let cancel =
            client.control_task(control(resync.id, pb::TaskControl::Cancel)).await.expect_err("cancel");
        assert_eq!(cancel.code(), Code::Unimplemented, "{cancel:?}");
        let resumed =
            client.control_task(control(resync.id, pb::TaskControl::Resume)).await.expect("resumed");
        assert_eq!(resumed.into_inner().state(), pb::TaskState::Running);
        let ended = engine.lock().run_until(5_000_000_000, |b| b.switch.control().resyncs().is_empty());
        assert!(ended, "the resync ends");

        let snapshot = client
            .create_snapshot(snapshot_of("lin", "lin-snap", None))
            .await
            .expect("snapshot")
            .into_inner();
        let taken = engine.lock().run_until(1_000_000_000, |b| {
            b.switch.control().snapshot_completions().first().is_some_and(|p| p.pushed > 0)
        });
        assert!(taken, "the completion started");
        let paused = client.control_task(control(snapshot.id, pb::TaskControl::Pause)).await.expect("paused");
        assert_eq!(paused.into_inner().state(), pb::TaskState::Paused);
        held_still(&engine, &mut client, snapshot.id).await;
        client.control_task(control(snapshot.id, pb::TaskControl::Resume)).await.expect("resumed");
        let completed =
            engine.lock().run_until(5_000_000_000, |b| b.switch.control().snapshot_completions().is_empty());
        assert!(completed, "the snapshot completes");
    });
}

#[test]
fn a_snapshot_store_goes_where_it_is_asked_or_the_request_says_why() {
    let (runtime, engine, mut client) = start(4);
    runtime.block_on(async {
        client.create_volume(create("s", 4_096, linear(&disk(0)))).await.expect("s");
        client.create_volume(create("t", 4_096, linear(&disk(1)))).await.expect("t");
        let member = snapshot_of;
        let snapshot = |name: &str, store: Option<pb::Placement>| snapshot_of("s", name, store);
        let on = |d: String, start_lba: u64| Some(pb::Placement { device_id: d, start_lba });
        let cases = [
            ("the source's device", snapshot("x", on(disk(0), 0)), Code::InvalidArgument, "store"),
            ("an LBA", snapshot("x", on(disk(2), 100)), Code::InvalidArgument, "store.start_lba"),
            (
                "a malformed device",
                snapshot("x", on("22:zz".into(), 0)),
                Code::InvalidArgument,
                "store.device_id",
            ),
            ("an unknown device", snapshot("x", on(wwpn(0x2200_0000_0000_0999), 0)), Code::NotFound, "22:00"),
        ];
        for (what, request, code, named) in cases {
            let status = client.create_snapshot(request).await.expect_err(what);
            assert_eq!(status.code(), code, "{what}: {status:?}");
            assert!(
                status.message().contains(named),
                "{what}: {:?} does not name {named:?}",
                status.message()
            );
            assert_eq!([claimed(&engine, 2), claimed(&engine, 3)], [0, 0], "{what} claimed nothing");
        }
        // d3 is not where the control path would put it (d2 and d3 tie, d2 first): it goes there.
        client.create_snapshot(snapshot("s-snap", on(disk(3), 0))).await.expect("snapshot on d3");
        assert_eq!([claimed(&engine, 2), claimed(&engine, 3)], [0, 4_096]);
        // A group's members choose theirs too, each checked before any is claimed.
        client.create_volume(create("u", 4_096, linear(&disk(1)))).await.expect("u");
        let group = |t_store, u_store| pb::CreateGroupSnapshotRequest {
            members: vec![member("t", "t-g", t_store), member("u", "u-g", u_store)],
        };
        let status = client
            .create_group_snapshot(group(on(disk(2), 0), on(disk(1), 0)))
            .await
            .expect_err("u's device");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("store"), "{}", status.message());
        assert_eq!(
            [claimed(&engine, 2), claimed(&engine, 3)],
            [0, 4_096],
            "the refused group claimed nothing"
        );
        let mut group = group(on(disk(2), 0), on(disk(2), 0));
        group.members[1].writable = true;
        let task = client.create_group_snapshot(group).await.expect("both on d2").into_inner();
        assert_eq!(task.volume, "t-g,u-g");
        assert_eq!([claimed(&engine, 2), claimed(&engine, 3)], [8_192, 4_096]);
        let writable = |name: &str| {
            engine.with_control(|c| {
                let v = c.volumes().find(|v| v.record.name == name).expect("snapshot");
                matches!(
                    v.record.layout,
                    dve_controlpath::volume::LayoutSpec::Snapshot { writable: true, .. }
                )
            })
        };
        assert_eq!([writable("t-g"), writable("u-g")], [false, true], "u-g was asked writable");
    });
}

#[test]
fn a_snapshot_copy_granularity_is_a_power_of_two_up_to_2048_blocks_or_the_request_says_why() {
    let (runtime, engine, mut client) = start(4);
    runtime.block_on(async {
        client.create_volume(create("s", 4_096, linear(&disk(0)))).await.expect("s");
        client.create_volume(create("t", 4_096, linear(&disk(1)))).await.expect("t");
        let granular = |source: &str, name: &str, blocks: u32| pb::CreateSnapshotRequest {
            copy_granularity_blocks: blocks,
            ..snapshot_of(source, name, None)
        };
        for blocks in [3, 96, 4_096] {
            let status = client.create_snapshot(granular("s", "x", blocks)).await.expect_err("refused");
            assert_eq!(status.code(), Code::InvalidArgument, "{blocks}: {status:?}");
            assert!(status.message().contains("copy_granularity_blocks"), "{}", status.message());
            let group = pb::CreateGroupSnapshotRequest {
                members: vec![granular("s", "s-g", 8), granular("t", "t-g", blocks)],
            };
            let status = client.create_group_snapshot(group).await.expect_err("refused member");
            assert_eq!(status.code(), Code::InvalidArgument, "{blocks}: {status:?}");
            assert!(status.message().contains("members[1].copy_granularity_blocks"), "{}", status.message());
            assert_eq!([claimed(&engine, 2), claimed(&engine, 3)], [0, 0], "{blocks} claimed nothing");
        }
        client.create_snapshot(granular("s", "s-snap", 2_048)).await.expect("2048 blocks");
        client.create_volume(create("u", 4_096, linear(&disk(1)))).await.expect("u");
        let group = pb::CreateGroupSnapshotRequest {
            members: vec![granular("t", "t-g", 1), snapshot_of("u", "u-g", None)],
        };
        client.create_group_snapshot(group).await.expect("1 block and the default");
    });
}

#[test]
fn bad_management_requests_get_the_code_that_says_why_and_change_nothing() {
    let (runtime, engine, mut client) = start(3);
    runtime.block_on(async {
        client.create_volume(create("v0", 4096, linear(&disk(0)))).await.expect("v0");
        let before = client.list_volumes(pb::Empty {}).await.expect("volumes").into_inner();
        let free_before =
            engine.with_control(|c| c.devices().iter().map(|d| d.allocated).collect::<Vec<_>>());

        let cases: Vec<(&str, pb::CreateVolumeRequest, Code, &str)> = vec![
            (
                "an unknown device",
                create("v1", 4096, mirror(&[disk(1), wwpn(0x2200_0000_0000_0099)])),
                Code::NotFound,
                "22:00:00:00:00:00:00:99",
            ),
            ("a duplicate name", create("v0", 4096, linear(&disk(1))), Code::AlreadyExists, "v0"),
            ("a zero size", create("v1", 0, linear(&disk(1))), Code::InvalidArgument, "blocks"),
            (
                "too little space",
                create("v1", 2 * DISK_BLOCKS, mirror(&[disk(1), disk(2)])),
                Code::ResourceExhausted,
                "wanted (dev2 is target 22:00:00:00:00:00:00:02)",
            ),
            (
                "a malformed WWPN",
                create("v1", 4096, linear("22:00:zz")),
                Code::InvalidArgument,
                "layout.linear.placement.device_id",
            ),
            (
                "a placement at a chosen LBA",
                pb::CreateVolumeRequest {
                    layout: Some(pb::Layout {
                        kind: Some(pb::layout::Kind::Linear(pb::Linear {
                            placement: Some(pb::Placement { device_id: disk(1), start_lba: 8 }),
                        })),
                    }),
                    ..create("v1", 4096, linear(&disk(1)))
                },
                Code::InvalidArgument,
                "layout.linear.placement.start_lba",
            ),
            (
                "no layout",
                pb::CreateVolumeRequest { layout: None, ..create("v1", 1, linear(&disk(1))) },
                Code::InvalidArgument,
                "layout",
            ),
            ("no name", create("", 4096, linear(&disk(1))), Code::InvalidArgument, "name"),
        ];
        for (what, request, code, named) in cases {
            let status = client.create_volume(request).await.expect_err(what);
            assert_eq!(status.code(), code, "{what}: {status:?}");
            assert!(
                status.message().contains(named),
                "{what}: {:?} does not name {named:?}",
                status.message()
            );
            let after = client.list_volumes(pb::Empty {}).await.expect("volumes").into_inner();
            assert_eq!(after, before, "{what} changed the volumes");
            let free_after =
                engine.with_control(|c| c.devices().iter().map(|d| d.allocated).collect::<Vec<_>>());
            assert_eq!(free_after, free_before, "{what} claimed space");
        }

        // Other refusals: unknown names, zero growth, unsupported RPCs and options.
        let grow_unknown = client
            .grow_volume(pb::GrowVolumeRequest {
                name: "nope".into(),
                add_blocks: 8,
                layout: Some(linear(&disk(1))),
            })
            .await
            .expect_err("unknown volume");
        assert_eq!(grow_unknown.code(), Code::NotFound);
        let grow_zero = client
            .grow_volume(pb::GrowVolumeRequest {
                name: "v0".into(),
                add_blocks: 0,
                layout: Some(linear(&disk(1))),
            })
            .await
            .expect_err("zero growth");
        assert_eq!(grow_zero.code(), Code::InvalidArgument);
        assert!(grow_zero.message().contains("add_blocks"), "{}", grow_zero.message());
        let expose_bad_host = client
            .expose_volume(pb::ExposeVolumeRequest {
                volume: "v0".into(),
                target_wwpn: String::new(),
                lun: None,
                host_wwpns: vec!["not-a-wwpn".into()],
            })
            .await
            .expect_err("malformed host");
        assert_eq!(expose_bad_host.code(), Code::InvalidArgument);
        assert!(expose_bad_host.message().contains("host_wwpns[0]"), "{}", expose_bad_host.message());
        let delete = client.delete_volume(pb::VolumeRef { name: "nope".into() }).await.expect_err("unknown");
        assert_eq!(delete.code(), Code::NotFound);
        assert!(delete.message().contains("nope"), "{}", delete.message());
        for (what, id, code) in [
            ("no id", 0, Code::InvalidArgument),
            ("an id of no kind", 9 << 48 | 1, Code::InvalidArgument),
            ("no such migration", 1 << 48 | 99, Code::NotFound),
        ] {
            let status = client.watch_task(pb::TaskRef { id }).await.expect_err(what);
            assert_eq!(status.code(), code, "{what}: {status:?}");
        }
        let pause_nothing = client
            .control_task(pb::ControlTaskRequest { id: 1 << 48 | 1, control: pb::TaskControl::Pause.into() })
            .await
            .expect_err("not migrating");
        assert_eq!(pause_nothing.code(), Code::FailedPrecondition);
        let replicate = |volume: &str, replica: &str, interval: u32| pb::StartReplicationRequest {
            volume: volume.into(),
            replica: replica.into(),
            consistency_interval_ms: interval,
        };
        let replication_cases = [
            (
                "a volume that is not journaled",
                replicate("v0", &disk(2), 100),
                Code::FailedPrecondition,
                "journaled",
            ),
            ("no interval", replicate("v0", &disk(2), 0), Code::InvalidArgument, "consistency_interval_ms"),
            ("a malformed replica", replicate("v0", "22:zz", 100), Code::InvalidArgument, "replica"),
            ("an unknown volume", replicate("nope", &disk(2), 100), Code::NotFound, "nope"),
        ];
        for (what, request, code, named) in replication_cases {
            let status = client.start_replication(request).await.expect_err(what);
            assert_eq!(status.code(), code, "{what}: {status:?}");
            assert!(
                status.message().contains(named),
                "{what}: {:?} does not name {named:?}",
                status.message()
            );
        }
        let after = client.list_volumes(pb::Empty {}).await.expect("volumes").into_inner();
        assert_eq!(after, before);
        let free_after = engine.with_control(|c| c.devices().iter().map(|d| d.allocated).collect::<Vec<_>>());
        assert_eq!(free_after, free_before, "refused replications claimed space");
        assert!(
            client.list_exposures(pb::Empty {}).await.expect("exposures").into_inner().exposures.is_empty()
        );

        // A journaled volume replicates: the task is listed with its baseline progress.
        let journaled = pb::Layout {
            kind: Some(pb::layout::Kind::Journaled(Box::new(pb::Journaled {
                primary: Some(Box::new(linear(&disk(1)))),
                journals: vec![pb::Placement { device_id: disk(2), start_lba: 0 }],
                journal_blocks: 768,
            }))),
        };
        client.create_volume(create("j0", 4096, journaled)).await.expect("journaled volume");
        let task =
            client.start_replication(replicate("j0", &disk(0), 100)).await.expect("replicating").into_inner();
        assert_eq!(
            (task.kind.as_str(), task.volume.as_str(), task.total_blocks),
            ("replication", "j0", 4096)
        );
        let tasks = client.list_tasks(pb::Empty {}).await.expect("tasks").into_inner().tasks;
        assert!(tasks.iter().any(|t| t.id == task.id && t.kind == "replication"), "{tasks:?}");
        let again = client.start_replication(replicate("j0", &disk(0), 100)).await.expect_err("twice");
        assert_eq!(again.code(), Code::FailedPrecondition);

        // Paused and resumed (twice each: asking for the state it is in changes nothing),
        // committed so a restart would keep it; then stopped, which a pause cannot follow.
        let control =
            |id: u64, control: pb::TaskControl| pb::ControlTaskRequest { id, control: control.into() };
        for (how, state) in [
            (pb::TaskControl::Pause, pb::TaskState::Paused),
            (pb::TaskControl::Pause, pb::TaskState::Paused),
            (pb::TaskControl::Resume, pb::TaskState::Running),
            (pb::TaskControl::Resume, pb::TaskState::Running),
        ] {
            let t = client.control_task(control(task.id, how)).await.expect("pause or resume").into_inner();
            assert_eq!((t.id, t.state), (task.id, state.into()), "{how:?}");
            assert!(t.done_blocks <= t.total_blocks, "{t:?}");
        }
        client.control_task(control(task.id, pb::TaskControl::Cancel)).await.expect("stopped");
        let late = client.control_task(control(task.id, pb::TaskControl::Pause)).await;
        assert!(late.is_err_and(|s| s.code() == Code::FailedPrecondition), "a stopping replication paused");
    });
}

#[test]
fn a_hidden_volume_is_deleted_and_its_space_claimed_again() {
    let (runtime, engine, mut client) = start(3);
    runtime.block_on(async {
        for name in ["a", "b"] {
            client.create_volume(create(name, 4096, linear(&disk(0)))).await.expect(name);
        }
        let exposure = client.expose_volume(expose_to_host_0("a")).await.expect("exposed").into_inner();
        let claims = |name: &'static str| {
            engine.with_control(move |c| {
                let lv = c.volume_named(name).expect(name);
                c.volume(lv).map(|v| v.record.allocations.clone()).expect("volume")
            })
        };
        let a_claim = claims("a");
        let lister = client.clone();
        let volumes = || {
            let mut lister = lister.clone();
            async move { lister.list_volumes(pb::Empty {}).await.expect("volumes").into_inner() }
        };
        let before = volumes().await;

        // Exposed: refused, and nothing changes.
        let refused = client.delete_volume(pb::VolumeRef { name: "a".into() }).await.expect_err("exposed");
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert!(refused.message().contains("hide it first"), "{}", refused.message());
        assert_eq!(volumes().await, before);

        // Bad hides: a LUN nobody holds, a LUN out of range, another target.
        let hide = |target: String, lun: u32| pb::HideVolumeRequest { target_wwpn: target, lun };
        let cases = [
            ("a free LUN", hide(String::new(), 7), Code::NotFound, "LUN 7"),
            ("a LUN out of range", hide(String::new(), 1 << 20), Code::InvalidArgument, "lun"),
            ("another target", hide(wwpn(0x5000_0000_0000_0999), exposure.lun), Code::NotFound, "50:00"),
            ("a malformed target", hide("50:zz".into(), exposure.lun), Code::InvalidArgument, "target_wwpn"),
        ];
        for (what, request, code, named) in cases {
            let status = client.hide_volume(request).await.expect_err(what);
            assert_eq!(status.code(), code, "{what}: {status:?}");
            assert!(
                status.message().contains(named),
                "{what}: {:?} does not name {named:?}",
                status.message()
            );
            let exposures = client.list_exposures(pb::Empty {}).await.expect("exposures").into_inner();
            assert_eq!(exposures.exposures.len(), 1, "{what} changed the exposures");
        }

        // Hidden, then deleted: gone from every list, its space claimed by the next volume.
        client.hide_volume(hide(exposure.target_wwpn.clone(), exposure.lun)).await.expect("hidden");
        assert!(
            client.list_exposures(pb::Empty {}).await.expect("exposures").into_inner().exposures.is_empty()
        );
        let lv = engine.with_control(|c| c.volume_named("a").expect("a"));
        assert_eq!(engine.with_control(|c| c.volume(lv).map(|v| v.record.hosts.len())), Some(0));
        client.delete_volume(pb::VolumeRef { name: "a".into() }).await.expect("deleted");
        let gone = client.get_volume(pb::VolumeRef { name: "a".into() }).await.expect_err("deleted");
        assert_eq!(gone.code(), Code::NotFound);
        assert_eq!(volumes().await.volumes.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["b"]);
        client.create_volume(create("c", 4096, linear(&disk(0)))).await.expect("c");
        assert_eq!(claims("c"), a_claim, "the deleted volume's blocks are claimed again");
        let mark = engine.with_control(|c| c.devices().iter().map(|d| d.allocated).max());
        assert_eq!(mark, Some(8192), "no block above the two claims is taken");

        // While a snapshot completes, neither it nor its source may go; once it completed,
        // it reads its own store only, and either may be deleted.
        client.create_snapshot(snapshot_of("b", "b-snap", None)).await.expect("snapshot");
        for name in ["b", "b-snap"] {
            let refused = client.delete_volume(pb::VolumeRef { name: name.into() }).await.expect_err(name);
            assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
            assert!(refused.message().contains("completing"), "{}", refused.message());
        }
        assert_eq!(volumes().await.volumes.len(), 3);
        let snap = engine.with_control(|c| c.volume_named("b-snap").expect("b-snap"));
        let completed =
            engine.lock().run_until(5_000_000_000, |b| !b.switch.control().snapshot_completing(snap));
        assert!(completed, "the snapshot completes");
        let kept = claims("b-snap");
        client.delete_volume(pb::VolumeRef { name: "b".into() }).await.expect("the source deleted");
        assert_eq!(claims("b-snap"), kept);
        client.delete_volume(pb::VolumeRef { name: "b-snap".into() }).await.expect("the snapshot deleted");
        assert_eq!(volumes().await.volumes.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["c"]);
    });
}

#[test]
fn a_mirror_is_snapshotted_and_the_snapshot_and_its_source_are_deleted() {
    let (runtime, engine, mut client) = start(3);
    runtime.block_on(async {
        client.create_volume(create("m", 4096, mirror(&[disk(0), disk(1)]))).await.expect("m");
        let snapshot = |name: &str| snapshot_of("m", name, None);
        let task = client.create_snapshot(snapshot("m-snap")).await.expect("snapshot").into_inner();
        assert_eq!((task.kind.as_str(), task.volume.as_str()), ("snapshot-completion", "m-snap"));
        // The store is on the device that holds no side.
        let store = engine.with_control(|c| {
            let lv = c.volume_named("m-snap").expect("m-snap");
            c.volume(lv).map(|v| v.record.allocations[0].device).expect("snapshot")
        });
        let third = engine.with_control(|c| c.device_of(Wwn(disk_wwpn(2))));
        assert_eq!(Ok(store), third);
        let again = client.create_snapshot(snapshot("m-snap2")).await.expect_err("completing");
        assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
        assert!(again.message().contains("still completing"), "{}", again.message());

        let snap = engine.with_control(|c| c.volume_named("m-snap").expect("m-snap"));
        let completed =
            engine.lock().run_until(5_000_000_000, |b| !b.switch.control().snapshot_completing(snap));
        assert!(completed, "the snapshot completes");
        // The mirror is back to one redirect entry per segment: a side may be added again.
        let entries = engine.with_control(|c| {
            let lv = c.volume_named("m").expect("m");
            c.volume(lv).map(|v| v.segments.iter().map(|s| s.redirects().len()).collect::<Vec<_>>())
        });
        assert_eq!(entries, Some(vec![1]));
        client.delete_volume(pb::VolumeRef { name: "m".into() }).await.expect("the source deleted");
        let kept = client.get_volume(pb::VolumeRef { name: "m-snap".into() }).await.expect("m-snap");
        assert_eq!(kept.into_inner().blocks, 4096);
        client.delete_volume(pb::VolumeRef { name: "m-snap".into() }).await.expect("the snapshot deleted");
        let volumes = client.list_volumes(pb::Empty {}).await.expect("volumes").into_inner();
        assert!(volumes.volumes.is_empty(), "{volumes:?}");
    });
}

#[test]
fn mirror_sides_are_added_online_and_bad_additions_say_why_and_change_nothing() {
    let (runtime, engine, mut client) = start(4);
    runtime.block_on(async {
        client.create_volume(create("lin", 4096, linear(&disk(0)))).await.expect("lin");
        client.create_volume(create("mir", 4096, mirror(&[disk(1), disk(2)]))).await.expect("mir");
        let stripe = pb::Layout {
            kind: Some(pb::layout::Kind::Stripe(pb::Stripe {
                unit_blocks: 64,
                members: [disk(1), disk(2)]
                    .iter()
                    .map(|d| pb::Placement { device_id: d.clone(), start_lba: 0 })
                    .collect(),
            })),
        };
        client.create_volume(create("str", 4096, stripe.clone())).await.expect("str");
        let lister = client.clone();
        let volumes = || {
            let mut lister = lister.clone();
            async move { lister.list_volumes(pb::Empty {}).await.expect("volumes").into_inner() }
        };
        let before = volumes().await;
        let add = |volume: &str, segment: u64, side: Option<pb::Layout>| pb::AddMirrorSideRequest {
            volume: volume.into(),
            segment,
            side,
        };
        let cases = [
            ("no volume name", add("", 0, Some(linear(&disk(3)))), Code::InvalidArgument, "volume"),
            ("an unknown volume", add("nope", 0, Some(linear(&disk(3)))), Code::NotFound, "nope"),
            ("no side", add("lin", 0, None), Code::InvalidArgument, "side"),
            ("one segment", add("lin", 1, Some(linear(&disk(3)))), Code::Unimplemented, "segment"),
            ("a striped side", add("lin", 0, Some(stripe.clone())), Code::Unimplemented, "side"),
            (
                "an unknown device",
                add("lin", 0, Some(linear(&wwpn(0x2200_0000_0000_0999)))),
                Code::NotFound,
                "22:00",
            ),
            (
                "a device it is on",
                add("mir", 0, Some(linear(&disk(2)))),
                Code::InvalidArgument,
                "already holds",
            ),
            ("a stripe set", add("str", 0, Some(linear(&disk(3)))), Code::Unimplemented, "stripe"),
        ];
        for (what, request, code, named) in cases {
            let status = client.add_mirror_side(request).await.expect_err(what);
            assert_eq!(status.code(), code, "{what}: {status:?}");
            assert!(
                status.message().contains(named),
                "{what}: {:?} does not name {named:?}",
                status.message()
            );
            assert_eq!(volumes().await, before, "{what} changed a volume");
        }

        // A linear volume becomes a mirror whose new side resynchronizes; a second addition
        // waits for it to end.
        let task =
            client.add_mirror_side(add("lin", 0, Some(linear(&disk(3))))).await.expect("added").into_inner();
        assert_eq!(task.kind, "resync", "{task:?}");
        let busy = client.add_mirror_side(add("lin", 0, Some(linear(&disk(1))))).await.expect_err("busy");
        assert_eq!(busy.code(), Code::FailedPrecondition, "{busy:?}");
        let lin = client.get_volume(pb::VolumeRef { name: "lin".into() }).await.expect("lin").into_inner();
        let pb::layout::Kind::Mirror(m) = layout_kind(&lin.segments[0]) else {
            panic!("not a mirror: {lin:?}")
        };
        assert_eq!(m.sides.len(), 2);
        let lv = engine.with_control(|c| c.volume_named("lin").expect("lin"));
        let done = engine.lock().run_until(5_000_000_000, |b| b.switch.control().resyncs().is_empty());
        assert!(done, "the new side is copied");
        let states = engine.with_control(|c| c.volume(lv).map(|v| v.record.side_states.clone()));
        assert_eq!(states, Some(vec![dve_fp_api::mapping::SideState::Alive; 2]));
        // And a mirror takes a third side.
        client.add_mirror_side(add("mir", 0, Some(linear(&disk(3))))).await.expect("third side");
        let done = engine.lock().run_until(5_000_000_000, |b| b.switch.control().resyncs().is_empty());
        assert!(done, "the third side is copied");
        let mir = client.get_volume(pb::VolumeRef { name: "mir".into() }).await.expect("mir").into_inner();
        let pb::layout::Kind::Mirror(m) = layout_kind(&mir.segments[0]) else {
            panic!("not a mirror: {mir:?}")
        };
        assert_eq!(m.sides.len(), 3);
    });
}

#[test]
fn mirror_sides_are_removed_online_and_bad_removals_say_why_and_change_nothing() {
    let (runtime, engine, mut client) = start(4);
    runtime.block_on(async {
        client.create_volume(create("mir", 4096, mirror(&[disk(0), disk(1), disk(2)]))).await.expect("mir");
        client.create_volume(create("lin", 4096, linear(&disk(3)))).await.expect("lin");
        let lister = client.clone();
        let volumes = || {
            let mut lister = lister.clone();
            async move { lister.list_volumes(pb::Empty {}).await.expect("volumes").into_inner() }
        };
        let before = volumes().await;
        let remove = |volume: &str, side: Option<pb::Layout>, side_index: Option<u32>| {
            pb::RemoveMirrorSideRequest { volume: volume.into(), segment: 0, side, side_index }
        };
        let stripe = pb::Layout {
            kind: Some(pb::layout::Kind::Stripe(pb::Stripe {
                unit_blocks: 64,
                members: [disk(0), disk(1)]
                    .iter()
                    .map(|d| pb::Placement { device_id: d.clone(), start_lba: 0 })
                    .collect(),
            })),
        };
        let cases = [
            ("no volume name", remove("", None, Some(0)), Code::InvalidArgument, "volume"),
            ("an unknown volume", remove("nope", None, Some(0)), Code::NotFound, "nope"),
            ("no side", remove("mir", None, None), Code::InvalidArgument, "side"),
            (
                "one segment",
                pb::RemoveMirrorSideRequest { segment: 1, ..remove("mir", None, Some(0)) },
                Code::Unimplemented,
                "segment",
            ),
            ("a striped side", remove("mir", Some(stripe), None), Code::Unimplemented, "side"),
            ("an unknown index", remove("mir", None, Some(3)), Code::NotFound, "no side 3"),
            (
                "an unknown device",
                remove("mir", Some(linear(&wwpn(0x2200_0000_0000_0999))), None),
                Code::NotFound,
                "22:00",
            ),
            ("a device it is not on", remove("mir", Some(linear(&disk(3))), None), Code::NotFound, "no side"),
            (
                "a device and an index that disagree",
                remove("mir", Some(linear(&disk(1))), Some(2)),
                Code::InvalidArgument,
                "side_index",
            ),
            ("a linear volume", remove("lin", None, Some(0)), Code::FailedPrecondition, "not a mirror"),
        ];
        for (what, request, code, named) in cases {
            let status = client.remove_mirror_side(request).await.expect_err(what);
            assert_eq!(status.code(), code, "{what}: {status:?}");
            assert!(
                status.message().contains(named),
                "{what}: {:?} does not name {named:?}",
                status.message()
            );
            assert_eq!(volumes().await, before, "{what} changed a volume");
        }

        // By device: the mirror keeps two sides; by index: it becomes linear on the last one.
        let mir = client
            .remove_mirror_side(remove("mir", Some(linear(&disk(0))), None))
            .await
            .expect("side on disk 0 removed")
            .into_inner();
        let pb::layout::Kind::Mirror(m) = layout_kind(&mir.segments[0]) else {
            panic!("not a mirror: {mir:?}")
        };
        assert_eq!(m.sides.len(), 2);
        engine.lock().run_until(100_000_000, |_| false);
        // Disk 1 dies: disk 2 is the only current side and cannot go.
        let lv = engine.with_control(|c| c.volume_named("mir").expect("mir"));
        engine.with_control(|c| {
            let d1 = c.device_of(dve_fp_api::ids::Wwn(dve_tests::bench::disk_wwpn(1))).expect("disk 1");
            let side = c.side_of_device(lv, d1).expect("a side");
            assert_eq!(side, 0, "disk 1's side took index 0");
        });
        let last = remove("mir", Some(linear(&disk(1))), Some(0));
        let mir = client.remove_mirror_side(last).await.expect("side 0 removed").into_inner();
        let pb::layout::Kind::Linear(l) = layout_kind(&mir.segments[0]) else {
            panic!("not linear: {mir:?}")
        };
        assert_eq!(l.placement.as_ref().map(|p| p.device_id.clone()), Some(disk(2)));
        let gone = client.remove_mirror_side(remove("mir", None, Some(0))).await.expect_err("linear now");
        assert_eq!(gone.code(), Code::FailedPrecondition, "{gone:?}");
        // The whole of disks 0 and 1 is free again once the workers let go.
        engine.lock().run_until(100_000_000, |_| false);
        client.create_volume(create("again", 65_536, mirror(&[disk(0), disk(1)]))).await.expect("room again");
    });
}

#[test]
fn a_volume_is_exposed_as_the_lun_asked_for_and_a_taken_lun_is_refused() {
    let (runtime, _engine, mut client) = start(2);
    runtime.block_on(async {
        for name in ["a", "b"] {
            client.create_volume(create(name, 4096, linear(&disk(0)))).await.expect(name);
        }
        let at = |volume: &str, lun: Option<u32>| pb::ExposeVolumeRequest { lun, ..expose_to_host_0(volume) };
        let a = client.expose_volume(at("a", Some(7))).await.expect("a as LUN 7").into_inner();
        assert_eq!((a.lun, a.volume.as_str()), (7, "a"));
        let lister = client.clone();
        let listed = || {
            let mut lister = lister.clone();
            async move { lister.list_exposures(pb::Empty {}).await.expect("exposures").into_inner().exposures }
        };
        let before = listed().await;

        // Refused, naming what is wrong, and nothing changes.
        let cases = [
            ("a LUN another volume holds", at("b", Some(7)), Code::FailedPrecondition, "holds volume \"a\""),
            ("moving an exposed volume", at("a", Some(3)), Code::FailedPrecondition, "exposed as LUN 7"),
            ("past the last LUN", at("b", Some(16_384)), Code::InvalidArgument, "16383"),
            ("not a LUN at all", at("b", Some(1 << 20)), Code::InvalidArgument, "lun"),
        ];
        for (what, request, code, named) in cases {
            let status = client.expose_volume(request).await.expect_err(what);
            assert_eq!(status.code(), code, "{what}: {status:?}");
            assert!(status.message().contains(named), "{what}: {}", status.message());
            assert_eq!(listed().await, before, "{what} changed the exposures");
        }

        // Asking again for the LUN it has, or for none, keeps it; unset picks the lowest free.
        assert_eq!(client.expose_volume(at("a", Some(7))).await.expect("again").into_inner().lun, 7);
        assert_eq!(client.expose_volume(at("a", None)).await.expect("unset").into_inner().lun, 7);
        assert_eq!(client.expose_volume(at("b", None)).await.expect("b").into_inner().lun, 0);
        // Hidden, LUN 7 is free for another volume.
        client.hide_volume(pb::HideVolumeRequest { target_wwpn: String::new(), lun: 7 }).await.expect("hidden");
        client.hide_volume(pb::HideVolumeRequest { target_wwpn: String::new(), lun: 0 }).await.expect("hidden");
        assert_eq!(client.expose_volume(at("b", Some(7))).await.expect("b as 7").into_inner().lun, 7);
    });
}
