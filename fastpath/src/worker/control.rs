//! The control side of the FP API as a worker answers it: mapping grants and revocations
//! (acknowledged once nothing new starts under the old entry), pending-list queries and
//! aborts, statistics, control-path I/O, queued-I/O data and completion, masks, pause and
//! resume, and the verdicts on mapping misses.

use dve_fp_api::Error;
use dve_fp_api::ids::{ExchangeId, Timestamp};
use dve_fp_api::io::{DownstreamOp, IoKind, IoStatus, PendingFilter, PendingIo, PendingSide, PendingState};
use dve_fp_api::mapping::DiscoveredDevice;
use dve_fp_api::message::{AbortTarget, MissVerdict, ToCp, ToFp};

use super::Worker;
use super::state::{DownOwner, DownState, UpState};
use super::translate::Leg;

impl Worker {
    /// Handle one message from the control path.
    pub fn handle_message(&mut self, now: Timestamp, message: ToFp) {
        match message {
            ToFp::Discover { req } => {
                let devices = self
                    .cache
                    .device_paths()
                    .map(|p| DiscoveredDevice {
                        port: p.port,
                        target: self.cache.login(p.target_fc_id).unwrap_or_default(),
                        target_fc_id: p.target_fc_id,
                        lun: p.lun,
                    })
                    .collect();
                self.upcalls.push_back(ToCp::Discovered { req, devices });
            }
            ToFp::Expose { req, exposure } => {
                self.cache.expose(exposure);
                self.upcalls.push_back(ToCp::Done { req, result: Ok(()) });
            }
            ToFp::Hide { req, exposure } => {
                let result = self.cache.hide(exposure);
                self.upcalls.push_back(ToCp::Done { req, result });
            }
            ToFp::AddMapping { req, entry } => {
                let result = self.cache.add(entry);
                self.upcalls.push_back(ToCp::Done { req, result });
            }
            ToFp::ReplaceMapping { req, entry } => {
                self.cache.remove(&entry.key());
                // A replacement that cannot be added leaves the entry removed: I/O faults,
                // which is always safe.
                let _ = self.cache.add(entry);
                self.upcalls.push_back(ToCp::InvalidationAck { req, worker: self.config.id, at: now });
            }
            ToFp::RemoveMapping { req, key } => {
                self.cache.remove(&key);
                self.upcalls.push_back(ToCp::InvalidationAck { req, worker: self.config.id, at: now });
            }
            ToFp::QueryPendingIos { req, filter } => {
                let ios = self.pending(&filter);
                self.upcalls.push_back(ToCp::PendingIos { req, worker: self.config.id, ios });
            }
            ToFp::AbortPendingIos { req, target, status } => {
                let (ios, dispatches) = self.abort(target, status);
                self.upcalls.push_back(ToCp::Aborted { req, ios, dispatches });
            }
            ToFp::QueryStatistics { req } => {
                let stats = Box::new(self.statistics(now));
                self.upcalls.push_back(ToCp::Statistics { req, stats });
            }
            ToFp::DispatchIo(request) => self.dispatch_for_cp(now, request),
            ToFp::GetData { req, io } => match self.up.get_tagged_mut(io) {
                Some(up) if up.data_out && up.state == UpState::Queued => {
                    up.get_data = Some(req);
                    self.serve_get_data(io.xid);
                }
                Some(_) => self.upcalls.push_back(ToCp::Data {
                    req,
                    io,
                    result: Err(Error::InvalidDescriptor(
                        "FPGetData needs a command with data out, queued to the control path",
                    )),
                }),
                None => self.upcalls.push_back(ToCp::Data { req, io, result: Err(Error::UnknownIo(io)) }),
            },
            ToFp::PutData { req, io, offset, data } => {
                let result = self.put_data(io, offset, &data);
                self.upcalls.push_back(ToCp::Done { req, result });
            }
            ToFp::QueueIoComplete { io, status } => {
                if let Some(up) = self.up.get_tagged(io) {
                    let (port, host, target, ox, len) =
                        (up.port, up.host, up.target, up.host_ox_id, up.request.data_len);
                    self.finish_upstream(io.xid, port, host, target, ox, &status, len);
                }
            }
            ToFp::SetLunMask { req, mask } => {
                let result = self.cache.set_mask(mask);
                self.upcalls.push_back(ToCp::Done { req, result });
            }
            ToFp::PauseLv { req, lv } => {
                let result = self.cache.set_paused(lv, true);
                self.upcalls.push_back(ToCp::Done { req, result });
            }
            ToFp::ResumeLv { req, lv } => {
                let result = self.cache.set_paused(lv, false);
                self.upcalls.push_back(ToCp::Done { req, result });
                self.release_held(now);
            }
            ToFp::SendFrame { port, frame } => self.send(port, frame),
            ToFp::MappingMissReply { io, verdict } => {
                let Some(up) = self.up.get_tagged(io) else { return };
                if up.state != UpState::AwaitingVerdict {
                    return;
                }
                match verdict {
                    MissVerdict::Continue(entries) => {
                        for entry in entries {
                            // A bad entry only means the retry misses again.
                            let _ = self.cache.add(entry);
                        }
                        self.start(io.xid);
                    }
                    MissVerdict::Ignore(status) => {
                        let (port, host, target, ox, len) =
                            (up.port, up.host, up.target, up.host_ox_id, up.request.data_len);
                        self.finish_upstream(io.xid, port, host, target, ox, &status, len);
                    }
                    MissVerdict::Queue => self.queue_to_cp(io.xid, dve_fp_api::FaultCause::Miss, None),
                }
            }
        }
    }

    /// The pending lists, filtered.
    fn pending(&self, filter: &PendingFilter) -> Vec<PendingIo> {
        let mut ios = Vec::new();
        for (tag, up) in self.up.iter() {
            let (first_block, blocks) = match up.plan {
                Some(plan) => (plan.seg_block, plan.blocks),
                None => (up.request.lba, up.request.blocks),
            };
            let io = PendingIo {
                side: PendingSide::Upstream,
                io: Some(tag),
                dispatch: None,
                state: up.state.pending_state(),
                vseg: up.plan.map(|p| p.vseg).or(up.request.vseg),
                first_block,
                blocks,
                write: up.request.kind == IoKind::Write,
                device: None,
                timestamp: up.request.received,
            };
            if filter.matches(&io) {
                ios.push(io);
            }
        }
        for (_, down) in self.down.iter() {
            let (parent, dispatch, vseg) = match down.owner {
                DownOwner::Host { up, .. } => {
                    let parent = self.up.tag_of(up);
                    let vseg = self.up.get(up).and_then(|u| u.plan.map(|p| p.vseg));
                    (parent, None, vseg)
                }
                DownOwner::ControlPath(tag) => (None, Some(tag), None),
            };
            let io = PendingIo {
                side: PendingSide::Downstream,
                io: parent,
                dispatch,
                state: match down.state {
                    DownState::Active => PendingState::Pending,
                    DownState::Aborting => PendingState::Failed,
                },
                vseg,
                first_block: down.leg.lba,
                blocks: down.leg.blocks,
                write: down.write,
                device: Some(down.leg.device),
                timestamp: down.timestamp,
            };
            if filter.matches(&io) {
                ios.push(io);
            }
        }
        ios.extend(self.aborted_writes.iter().map(|w| w.pending()).filter(|io| filter.matches(io)));
        ios
    }

    /// Abort what `target` selects; upstream I/Os are answered with `status` if given.
    fn abort(
        &mut self,
        target: AbortTarget,
        status: Option<IoStatus>,
    ) -> (Vec<dve_fp_api::ids::IoTag>, Vec<dve_fp_api::ids::DispatchTag>) {
        let mut ios = Vec::new();
        let mut dispatches = Vec::new();
        let mut up_xids: Vec<ExchangeId> = Vec::new();
        let mut down_xids: Vec<ExchangeId> = Vec::new();
        match target {
            AbortTarget::Io(tag) => {
                if self.up.get_tagged(tag).is_some() {
                    up_xids.push(tag.xid);
                }
            }
            AbortTarget::Dispatch(tag) => {
                down_xids.extend(
                    self.down
                        .iter()
                        .filter(|(_, d)| {
                            d.owner == DownOwner::ControlPath(tag) && d.state == DownState::Active
                        })
                        .map(|(t, _)| t.xid),
                );
            }
            AbortTarget::Matching(filter) => {
                for io in self.pending(&filter) {
                    match (io.side, io.io, io.dispatch) {
                        (PendingSide::Upstream, Some(tag), _) => up_xids.push(tag.xid),
                        (PendingSide::Downstream, _, Some(tag)) => {
                            down_xids.extend(
                                self.down
                                    .iter()
                                    .filter(|(_, d)| d.owner == DownOwner::ControlPath(tag))
                                    .map(|(t, _)| t.xid),
                            );
                        }
                        (PendingSide::Downstream, Some(parent), None) => up_xids.push(parent.xid),
                        _ => {}
                    }
                }
            }
        }
        up_xids.sort_unstable();
        up_xids.dedup();
        for xid in up_xids {
            let Some(tag) = self.up.tag_of(xid) else { continue };
            if let (Some(status), Some(up)) = (status, self.up.get(xid)) {
                let seq = up.next_seq_id;
                let (port, host, target, ox, len) =
                    (up.port, up.host, up.target, up.host_ox_id, up.request.data_len);
                self.send_response(port, host, target, ox, xid.0, seq, &status, len);
            }
            self.abort_upstream(xid);
            ios.push(tag);
        }
        down_xids.sort_unstable();
        down_xids.dedup();
        for xid in down_xids {
            if let Some(DownOwner::ControlPath(tag)) = self.down.get(xid).map(|d| d.owner) {
                self.abort_downstream(xid);
                dispatches.push(tag);
            }
        }
        (ios, dispatches)
    }

    /// `FPDispatchIO`: originate a downstream I/O for the control path.
    fn dispatch_for_cp(&mut self, now: Timestamp, request: dve_fp_api::io::DownstreamRequest) {
        let tag = request.tag;
        let block_size = self.cache.device(request.device).map(|p| p.block_size);
        let (leg, write, cdb, data) = match (&request.op, block_size) {
            (_, None) => {
                self.upcalls.push_back(ToCp::DispatchIoComplete {
                    tag,
                    status: IoStatus { status: dve_fp_api::io::ScsiStatus(0xFF), sense: None, residual: 0 },
                    data: None,
                });
                return;
            }
            (DownstreamOp::Read { lba, blocks }, Some(_)) => (
                Leg { device: request.device, lba: *lba, blocks: *blocks, ..Leg::default() },
                false,
                None,
                None,
            ),
            (DownstreamOp::Write { lba, blocks, data }, Some(_)) => (
                Leg { device: request.device, lba: *lba, blocks: *blocks, ..Leg::default() },
                true,
                None,
                Some(data.clone()),
            ),
            (DownstreamOp::Command { cdb, data_out, data_in_len }, Some(_)) => {
                let write = !data_out.is_empty();
                let len = if write { data_out.len() as u32 } else { *data_in_len };
                (
                    Leg { device: request.device, ..Leg::default() },
                    write,
                    Some((*cdb, len)),
                    write.then(|| data_out.clone()),
                )
            }
        };
        match self.start_leg(DownOwner::ControlPath(tag), leg, write, now, cdb) {
            Some(xid) => {
                if let Some(control) = self.down.get_mut(xid).and_then(|d| d.control.as_deref_mut()) {
                    control.data_out = data;
                }
            }
            None => self.upcalls.push_back(ToCp::DispatchIoComplete {
                tag,
                status: IoStatus { status: dve_fp_api::io::ScsiStatus::BUSY, sense: None, residual: 0 },
                data: None,
            }),
        }
    }
}
