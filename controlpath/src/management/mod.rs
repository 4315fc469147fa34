//! The management gRPC API (`proto/management.proto`) served with tonic over a running
//! engine. The control path is a sans-I/O core owned by whoever runs the engine (the daemon,
//! a test bench), so the service reaches it only through [`EngineAccess`], which the owner
//! implements.
//!
//! Every request is checked before the engine is touched ([`request`]): missing fields, zero
//! sizes, malformed WWPNs and unsupported options are refused with `INVALID_ARGUMENT` (or
//! `UNIMPLEMENTED`) naming the field. The control path's own refusals are mapped by one
//! function, [`status::status_of`]. A refused request changes nothing: the control path
//! checks every claim before making any and rolls back a failed commit.
//!
//! What the control path does not support yet answers `UNIMPLEMENTED` with a message naming
//! what is missing: cancelling a resync or a snapshot completion, migrating one segment,
//! adding or removing a mirror side of one segment only or a side that is not one device.
//!
//! `dved` serves it over the running engine (`crate::daemon::access::ControlAccess`); the
//! scenario test `tests/tests/management_grpc.rs` serves it over the zero-latency bench
//! engine. `dvectl` is the client.

pub mod reply;
pub mod request;
pub mod status;

use dve_fp_api::ids::{LvId, Wwn};
use dve_fp_api::stats::FpStatistics;
use dve_proto::management as pb;
use dve_proto::management::management_server::{Management, ManagementServer};
use std::sync::Arc;
use std::time::Duration;

use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::ControlPath;
use crate::control_path::SnapshotOptions;
use crate::error::Error;
use reply::TaskId;
use request::{
    LayoutRequest, SnapshotRequest, migration_destination, name_field, placement_field, wwpn_field,
};
use status::{invalid_field, missing_field, not_supported, status_of};

/// How the management service reaches the engine's control path.
///
/// The contract: [`EngineAccess::with_control`] runs `f` with exclusive access to the
/// control path (for a `Mutex`-wrapped engine: under the lock) and, before returning, the
/// owner moves every downcall the call queued (`ControlPath::poll_downcall`) to its workers,
/// so a change the service made reaches the fast path before the reply goes out. The
/// service never polls downcalls or takes events itself: those stay the owner's. The call
/// runs on a thread of the gRPC runtime and blocks it while it waits for the engine, so the
/// owner should hold its lock only for short steps.
pub trait EngineAccess: Send + Sync + 'static {
    /// Run `f` on the control path, then move its downcalls to the workers.
    fn with_control<R>(&self, f: impl FnOnce(&mut ControlPath) -> R) -> R;

    /// The fast-path workers' counters, for `GetStatistics`; none by default.
    fn worker_statistics(&self) -> Vec<FpStatistics> {
        Vec::new()
    }
}

/// The `Management` gRPC service over an engine reached through `E`.
#[derive(Debug)]
pub struct ManagementService<E> {
    /// Shared with the streams of `WatchTask`, which outlive the call that opened them.
    engine: Arc<E>,
}

/// How often a `WatchTask` stream looks at its task.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(100);

impl<E: EngineAccess> ManagementService<E> {
    /// A service over `engine`.
    pub fn new(engine: E) -> ManagementService<E> {
        ManagementService { engine: Arc::new(engine) }
    }

    /// The service wrapped for a tonic `Server` (`Server::builder().add_service(..)`).
    pub fn into_server(self) -> ManagementServer<ManagementService<E>> {
        ManagementServer::new(self)
    }

    /// Run `f` on the control path, mapping its error to a status whose message also names
    /// the devices it mentions by target port name.
    fn control<T>(&self, f: impl FnOnce(&mut ControlPath) -> Result<T, Error>) -> Result<T, Status> {
        self.engine.with_control(|c| f(c).map_err(|e| status::status_naming_devices(c, &e)))
    }

    /// A split or a merge of the named volume's segments at a block.
    fn change_segments(
        &self,
        r: pb::SegmentChangeRequest,
        change: fn(&mut ControlPath, LvId, u64) -> Result<(), Error>,
    ) -> Result<Response<pb::Empty>, Status> {
        let name = name_field("volume", &r.volume)?;
        self.control(|c| change(c, volume_named(c, name)?, r.at_lba))?;
        Ok(Response::new(pb::Empty {}))
    }
}

/// The volume named `name`, with its id.
fn volume_named(control: &ControlPath, name: &str) -> Result<LvId, Error> {
    control.volume_named(name)
}

/// The reply for volume `lv` (which exists: it was just found or made).
fn volume_of(control: &ControlPath, lv: LvId) -> Result<pb::Volume, Error> {
    let volume = control.volume(lv).ok_or(Error::UnknownVolume(lv))?;
    Ok(reply::volume_reply(control, volume))
}

/// The task `id` as it stands, or `NOT_FOUND`.
fn task_of(control: &ControlPath, id: TaskId) -> Result<pb::Task, Error> {
    let missing = || Error::FailedPrecondition(format!("task {:#x} is not running", id.to_wire()));
    match id {
        TaskId::Migration(lv) => control
            .migrations()
            .iter()
            .find(|m| m.lv == lv)
            .map(|m| reply::migration_task(control, m))
            .ok_or_else(missing),
        TaskId::Resync(lv, side) => control
            .resyncs()
            .iter()
            .find(|r| r.lv == lv && r.side == usize::from(side))
            .map(|r| reply::resync_task(control, r))
            .ok_or_else(missing),
        TaskId::SnapshotCompletion(snapshot) => control
            .snapshot_completions()
            .iter()
            .any(|p| p.snapshot == snapshot)
            .then(|| reply::snapshot_task(control, snapshot))
            .ok_or_else(missing),
        TaskId::Replication(lv) => control
            .replications()
            .iter()
            .find(|r| r.lv == lv)
            .map(|r| reply::replication_task(control, r))
            .ok_or_else(missing),
    }
}

#[tonic::async_trait]
impl<E: EngineAccess> Management for ManagementService<E> {
    async fn list_devices(
        &self,
        _request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesReply>, Status> {
        let devices = self.engine.with_control(|c| c.devices().iter().map(reply::device_reply).collect());
        Ok(Response::new(pb::ListDevicesReply { devices }))
    }

    async fn create_volume(
        &self,
        request: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let r = request.into_inner();
        let name = name_field("name", &r.name)?;
        if r.blocks == 0 {
            return Err(invalid_field("blocks", "a volume needs at least one block"));
        }
        if !matches!(r.block_size, 0 | 512 | 4096) {
            return Err(invalid_field(
                "block_size",
                format!("{} is not 512 or 4096 (or 0: the devices'", r.block_size),
            ));
        }
        let layout = LayoutRequest::parse("layout", r.layout.as_ref())?;
        let volume = self.control(|c| {
            let spec = layout.resolve(c)?;
            if r.block_size != 0 {
                for device in spec.devices() {
                    let size = c.devices().get(device).map_or(0, |d| d.block_size);
                    if size != r.block_size {
                        return Err(Error::invalid(
                            "block_size",
                            format!("{device} has {size}-byte blocks, {} asked", r.block_size),
                        ));
                    }
                }
            }
            let lv = c.create_volume(name, r.blocks, spec)?;
            volume_of(c, lv)
        })?;
        Ok(Response::new(volume))
    }

    /// The volume must be hidden and idle (no task, snapshot or incremental uses it).
    async fn delete_volume(&self, request: Request<pb::VolumeRef>) -> Result<Response<pb::Empty>, Status> {
        let r = request.into_inner();
        let name = name_field("name", &r.name)?;
        self.control(|c| {
            let lv = volume_named(c, name)?;
            c.delete_volume(lv)
        })?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn get_volume(&self, request: Request<pb::VolumeRef>) -> Result<Response<pb::Volume>, Status> {
        let r = request.into_inner();
        let name = name_field("name", &r.name)?;
        let volume = self.control(|c| {
            let lv = volume_named(c, name)?;
            volume_of(c, lv)
        })?;
        Ok(Response::new(volume))
    }

    async fn list_volumes(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<pb::ListVolumesReply>, Status> {
        let volumes = self.engine.with_control(|c| c.volumes().map(|v| reply::volume_reply(c, v)).collect());
        Ok(Response::new(pb::ListVolumesReply { volumes }))
    }

    async fn grow_volume(
        &self,
        request: Request<pb::GrowVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let r = request.into_inner();
        let name = name_field("name", &r.name)?;
        if r.add_blocks == 0 {
            return Err(invalid_field("add_blocks", "a volume grows by at least one block"));
        }
        let device = match LayoutRequest::parse("layout", r.layout.as_ref())? {
            LayoutRequest::Linear(device) => device,
            _ => return Err(invalid_field("layout", "a volume grows by a linear segment on one device")),
        };
        let volume = self.control(|c| {
            let lv = volume_named(c, name)?;
            let device = c.device_of(device)?;
            c.grow_volume(lv, r.add_blocks, device)?;
            volume_of(c, lv)
        })?;
        Ok(Response::new(volume))
    }

    async fn split_segment(
        &self,
        request: Request<pb::SegmentChangeRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.change_segments(request.into_inner(), ControlPath::split_segment)
    }

    async fn merge_segments(
        &self,
        request: Request<pb::SegmentChangeRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.change_segments(request.into_inner(), ControlPath::merge_segments)
    }

    async fn expose_volume(
        &self,
        request: Request<pb::ExposeVolumeRequest>,
    ) -> Result<Response<pb::Exposure>, Status> {
        let r = request.into_inner();
        let name = name_field("volume", &r.volume)?;
        let target = if r.target_wwpn.trim().is_empty() {
            None
        } else {
            Some(wwpn_field("target_wwpn", &r.target_wwpn)?)
        };
        let lun = r
            .lun
            .map(|l| {
                u16::try_from(l)
                    .map_err(|_| Status::invalid_argument(format!("invalid lun: {l} is not a LUN")))
            })
            .transpose()?;
        if r.host_wwpns.is_empty() {
            return Err(not_supported("exposing to every host (empty host_wwpns): name the hosts"));
        }
        let hosts = r
            .host_wwpns
            .iter()
            .enumerate()
            .map(|(i, h)| wwpn_field(&format!("host_wwpns[{i}]"), h))
            .collect::<Result<Vec<Wwn>, Status>>()?;
        let exposure = self.engine.with_control(|c| {
            if let Some(target) = target
                && target != c.exposure().port_name
            {
                return Err(not_supported(format!(
                    "more virtual targets (target_wwpn {target}): the engine has one, {}",
                    c.exposure().port_name
                )));
            }
            let lv = volume_named(c, name).map_err(|e| status_of(&e))?;
            match lun {
                Some(lun) => c.expose_at(lv, &hosts, lun),
                None => c.expose(lv, &hosts),
            }
            .map_err(|e| status_of(&e))?;
            reply::exposure_reply(c, lv).ok_or_else(|| Status::internal("the exposure just made is missing"))
        })?;
        Ok(Response::new(exposure))
    }

    async fn hide_volume(
        &self,
        request: Request<pb::HideVolumeRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = request.into_inner();
        let target = if r.target_wwpn.trim().is_empty() {
            None
        } else {
            Some(wwpn_field("target_wwpn", &r.target_wwpn)?)
        };
        let lun = u16::try_from(r.lun)
            .ok()
            .filter(|l| *l < 16_384)
            .ok_or_else(|| invalid_field("lun", format!("{} is not a LUN (0 to 16383)", r.lun)))?;
        self.engine.with_control(|c| {
            if let Some(target) = target
                && target != c.exposure().port_name
            {
                return Err(Status::not_found(format!(
                    "no virtual target {target}: the engine has one, {}",
                    c.exposure().port_name
                )));
            }
            c.hide(lun).map(|_| ()).map_err(|e| status_of(&e))
        })?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn list_exposures(
        &self,
        _request: Request<pb::Empty>,
    ) -> Result<Response<pb::ListExposuresReply>, Status> {
        let exposures = self.engine.with_control(|c| {
            c.exposure().luns.iter().filter_map(|m| reply::exposure_reply(c, m.lv)).collect()
        });
        Ok(Response::new(pb::ListExposuresReply { exposures }))
    }

    async fn create_snapshot(
        &self,
        request: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let r = SnapshotRequest::parse("", &request.into_inner())?;
        let task = self.control(|c| {
            let source = volume_named(c, &r.source)?;
            let store = r.store.map(|w| c.device_of(w)).transpose()?;
            let options = SnapshotOptions {
                writable: r.writable,
                store,
                copy_granularity_blocks: r.copy_granularity_blocks,
            };
            let snapshot = c.create_snapshot_with(source, &r.snapshot, options)?;
            Ok(reply::snapshot_task(c, snapshot))
        })?;
        Ok(Response::new(task))
    }

    async fn create_group_snapshot(
        &self,
        request: Request<pb::CreateGroupSnapshotRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let r = request.into_inner();
        if r.members.len() < 2 {
            return Err(invalid_field("members", "a group snapshot needs two or more members"));
        }
        let members = r
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| SnapshotRequest::parse(&format!("members[{i}]."), m))
            .collect::<Result<Vec<_>, Status>>()?;
        let task = self.control(|c| {
            let sources =
                members.iter().map(|m| volume_named(c, &m.source)).collect::<Result<Vec<_>, _>>()?;
            let names: Vec<String> = members.iter().map(|m| m.snapshot.clone()).collect();
            let options = members
                .iter()
                .map(|m| {
                    let store = m.store.map(|w| c.device_of(w)).transpose()?;
                    Ok(SnapshotOptions {
                        writable: m.writable,
                        store,
                        copy_granularity_blocks: m.copy_granularity_blocks,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            let snapshots = c.create_group_snapshot(&sources, &names, &options)?;
            let first = *snapshots
                .first()
                .ok_or_else(|| Error::FailedPrecondition("the group snapshot made no snapshot".into()))?;
            let mut task = reply::snapshot_task(c, first);
            task.volume = names.join(",");
            task.total_blocks = snapshots.iter().filter_map(|s| c.volume(*s)).map(|v| v.record.blocks).sum();
            Ok(task)
        })?;
        Ok(Response::new(task))
    }

    async fn create_incremental(
        &self,
        request: Request<pb::CreateIncrementalRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let r = request.into_inner();
        let base = name_field("base", &r.base)?;
        let name = name_field("name", &r.name)?;
        let store = placement_field("store", r.store.as_ref())?;
        let volume = self.control(|c| {
            let base = volume_named(c, base)?;
            let store = c.device_of(store)?;
            let lv = c.create_incremental(base, name, store)?;
            volume_of(c, lv)
        })?;
        Ok(Response::new(volume))
    }

    async fn start_migration(
        &self,
        request: Request<pb::StartMigrationRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let r = request.into_inner();
        let name = name_field("volume", &r.volume)?;
        if r.segment != 0 {
            return Err(not_supported(
                "migrating one segment (segment): the control path migrates whole volumes; leave it 0",
            ));
        }
        let rate_limit = core::num::NonZeroU64::new(r.rate_limit_bytes_per_sec);
        let destination = migration_destination(r.destination.as_ref())?;
        let task = self.control(|c| {
            let lv = volume_named(c, name)?;
            let to = destination.iter().map(|w| c.device_of(*w)).collect::<Result<Vec<_>, _>>()?;
            c.start_migration(lv, &to, rate_limit)?;
            task_of(c, TaskId::Migration(lv))
        })?;
        Ok(Response::new(task))
    }

    /// The side is a linear layout on one device (named by target port name); it is added to
    /// every segment, and the task returned is the side's resync, which copies the whole
    /// volume onto it.
    async fn add_mirror_side(
        &self,
        request: Request<pb::AddMirrorSideRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let r = request.into_inner();
        let name = name_field("volume", &r.volume)?;
        if r.segment != 0 {
            return Err(not_supported(
                "adding a side to one segment (segment): mirror sides span the whole volume; leave it 0",
            ));
        }
        let target = match LayoutRequest::parse("side", r.side.as_ref())? {
            LayoutRequest::Linear(target) => target,
            _ => {
                return Err(not_supported(
                    "a side that is not one device (side): a mirror's sides are single devices; give side.linear",
                ));
            }
        };
        let task = self.control(|c| {
            let lv = volume_named(c, name)?;
            let device = c.device_of(target)?;
            let side = c.add_mirror_side(lv, device)?;
            task_of(c, TaskId::Resync(lv, side as u16))
        })?;
        Ok(Response::new(task))
    }

    /// The side is named by its device (a linear layout, as AddMirrorSide names it), by its
    /// index, or both (then they must agree); the reply is the volume without it.
    async fn remove_mirror_side(
        &self,
        request: Request<pb::RemoveMirrorSideRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let r = request.into_inner();
        let name = name_field("volume", &r.volume)?;
        if r.segment != 0 {
            return Err(not_supported(
                "removing a side from one segment (segment): mirror sides span the whole volume; leave it 0",
            ));
        }
        let target = match r.side.as_ref() {
            None => None,
            Some(side) => match LayoutRequest::parse("side", Some(side))? {
                LayoutRequest::Linear(target) => Some(target),
                _ => {
                    return Err(not_supported(
                        "naming a side by a layout that is not one device (side): give side.linear or side_index",
                    ));
                }
            },
        };
        if target.is_none() && r.side_index.is_none() {
            return Err(missing_field("side (or side_index)"));
        }
        let volume = self.control(|c| {
            let lv = volume_named(c, name)?;
            let by_device = match target {
                Some(target) => {
                    let device = c.device_of(target)?;
                    Some(c.side_of_device(lv, device).ok_or_else(|| {
                        Error::UnknownSide(format!("the device of target {target} holds no side of {name}"))
                    })?)
                }
                None => None,
            };
            let side = match (by_device, r.side_index) {
                (Some(a), Some(b)) if a != b as usize => {
                    return Err(Error::invalid(
                        "side_index",
                        format!("side {b} is not the side on the device named (that is side {a})"),
                    ));
                }
                (Some(side), _) => side,
                (None, Some(index)) => index as usize,
                (None, None) => return Err(Error::invalid("side", "missing")),
            };
            c.remove_mirror_side(lv, side)?;
            volume_of(c, lv)
        })?;
        Ok(Response::new(volume))
    }

    /// The replica is named by the port name of the target that holds it (a volume of the
    /// remote site, reached through the fabric like any device).
    async fn start_replication(
        &self,
        request: Request<pb::StartReplicationRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let r = request.into_inner();
        let name = name_field("volume", &r.volume)?;
        let replica = wwpn_field("replica", &r.replica)?;
        if r.consistency_interval_ms == 0 {
            return Err(missing_field("consistency_interval_ms"));
        }
        let interval_ns = u64::from(r.consistency_interval_ms) * 1_000_000;
        let task = self.control(|c| {
            let lv = volume_named(c, name)?;
            let device = c.device_of(replica)?;
            c.start_replication(lv, device, interval_ns)?;
            task_of(c, TaskId::Replication(lv))
        })?;
        Ok(Response::new(task))
    }

    async fn list_tasks(&self, _request: Request<pb::Empty>) -> Result<Response<pb::ListTasksReply>, Status> {
        let tasks = self.engine.with_control(|c| reply::tasks(c));
        Ok(Response::new(pb::ListTasksReply { tasks }))
    }

    async fn control_task(
        &self,
        request: Request<pb::ControlTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let r = request.into_inner();
        if r.id == 0 {
            return Err(missing_field("id"));
        }
        let id = TaskId::from_wire(r.id)
            .ok_or_else(|| invalid_field("id", format!("{:#x} names no task", r.id)))?;
        let control = pb::TaskControl::try_from(r.control)
            .map_err(|_| invalid_field("control", format!("{} is not a task control", r.control)))?;
        if control == pb::TaskControl::Unspecified {
            return Err(missing_field("control"));
        }
        let paused = control == pb::TaskControl::Pause;
        let task = self.control(|c| {
            let (TaskId::Migration(lv) | TaskId::Resync(lv, _) | TaskId::SnapshotCompletion(lv) | TaskId::Replication(lv)) =
                id;
            if c.volume(lv).is_none() {
                return Err(Error::UnknownVolume(lv));
            }
            match (id, control) {
                (TaskId::Replication(lv), pb::TaskControl::Cancel) => c.stop_replication(lv)?,
                (TaskId::Replication(lv), _) => c.pause_replication(lv, paused)?,
                (TaskId::Migration(lv), pb::TaskControl::Cancel) => c.cancel_migration(lv)?,
                (_, pb::TaskControl::Cancel) => {
                    return Err(Error::Unsupported(
                        "cancelling a resync or a snapshot completion (only a migration can be undone); pause it instead"
                            .into(),
                    ));
                }
                (TaskId::Migration(lv), _) => c.pause_migration(lv, paused)?,
                (TaskId::Resync(lv, side), _) => c.pause_resync(lv, usize::from(side), paused)?,
                (TaskId::SnapshotCompletion(snapshot), _) => c.pause_snapshot_completion(snapshot, paused)?,
            }
            task_of(c, id)
        })?;
        Ok(Response::new(task))
    }

    type WatchTaskStream = ReceiverStream<Result<pb::Task, Status>>;

    /// The task as it is now, then every change (looked at each [`WATCH_INTERVAL`]), ending
    /// with its final state; the stream also ends if the task's volume goes. Only a running
    /// task can be watched.
    async fn watch_task(
        &self,
        request: Request<pb::TaskRef>,
    ) -> Result<Response<Self::WatchTaskStream>, Status> {
        let r = request.into_inner();
        if r.id == 0 {
            return Err(missing_field("id"));
        }
        let id = TaskId::from_wire(r.id)
            .ok_or_else(|| invalid_field("id", format!("{:#x} names no task", r.id)))?;
        let first = self
            .engine
            .with_control(|c| reply::task(c, id))
            .filter(|t| !reply::task_ended(t))
            .ok_or_else(|| Status::not_found(format!("task {:#x} is not running", r.id)))?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let engine = Arc::clone(&self.engine);
        tokio::spawn(async move {
            let mut last = first;
            if tx.send(Ok(last.clone())).await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(WATCH_INTERVAL).await;
                let Some(now) = engine.with_control(|c| reply::task(c, id)) else { return };
                if now != last {
                    // A closed stream (the client left) ends the watch.
                    if tx.send(Ok(now.clone())).await.is_err() {
                        return;
                    }
                }
                if reply::task_ended(&now) {
                    return;
                }
                last = now;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_statistics(&self, _request: Request<pb::Empty>) -> Result<Response<pb::Statistics>, Status> {
        let (control, queued) =
            self.engine.with_control(|c| (reply::control_statistics(c), u64::from(c.has_downcalls())));
        let mut workers: Vec<pb::WorkerStatistics> =
            self.engine.worker_statistics().iter().map(reply::worker_statistics).collect();
        workers.push(control);
        Ok(Response::new(pb::Statistics { workers, cp_queue_depth: queued }))
    }
}
