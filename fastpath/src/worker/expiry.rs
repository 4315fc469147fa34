//! Downstream I/O a device never answers: after the configured timeout the worker aborts it
//! (ABTS) and fails the leg, so the host I/O reaches the control path with a
//! `DownstreamError` instead of hanging until the host gives up; aborted slots the device
//! never acknowledges are reclaimed after a second timeout.

use dve_fp_api::ids::Timestamp;
use dve_fp_api::io::{DownstreamFailure, IoKind, IoStatus, ScsiStatus};
use dve_fp_api::message::ToCp;

use crate::worker::Worker;
use crate::worker::state::{DownOwner, DownState};

impl Worker {
    /// Expire silent downstream I/O. Cheap to call on every poll: the list is scanned at
    /// most eight times per timeout.
    pub fn expire(&mut self, now: Timestamp) {
        let timeout = self.config.downstream_timeout_ns.max(1);
        if now.0 < self.next_expiry_scan {
            return;
        }
        self.next_expiry_scan = now.0.saturating_add((timeout / 8).max(1));
        let mut expired = std::mem::take(&mut self.expired);
        expired.clear();
        expired.extend(
            self.down
                .iter()
                .filter(|(_, d)| {
                    let age = now.0.saturating_sub(d.timestamp.0);
                    match d.state {
                        DownState::Active => age >= timeout,
                        DownState::Aborting => age >= timeout.saturating_mul(2),
                    }
                })
                .map(|(tag, _)| tag.xid),
        );
        for &xid in &expired {
            let Some(down) = self.down.get_mut(xid) else { continue };
            if down.state == DownState::Aborting {
                // The device answered neither the leg nor its abort in two timeouts: the
                // slot is reclaimed, and an aborted write waiting on it goes on without.
                self.down.remove(xid);
                self.leg_abort_settled(xid);
                continue;
            }
            down.timestamp = now;
            let (owner, device) = (down.owner, down.leg.device);
            self.abort_downstream(xid);
            self.stats.downstream_timeouts += 1;
            match owner {
                DownOwner::ControlPath(tag) => {
                    let status = IoStatus { status: ScsiStatus::TASK_ABORTED, sense: None, residual: 0 };
                    self.upcalls.push_back(ToCp::DispatchIoComplete { tag, status, data: None });
                }
                DownOwner::Host { up: up_xid, leg } => {
                    let Some(up) = self.up.get_mut(up_xid) else { continue };
                    up.legs.set(usize::from(leg), None);
                    up.outstanding = up.outstanding.saturating_sub(1);
                    if up.failure.is_none() {
                        up.failure = Some(DownstreamFailure { device, status: None, leg });
                    }
                    let write = up.request.kind == IoKind::Write;
                    if up.outstanding == 0 {
                        self.complete_upstream(now, up_xid);
                    } else if write {
                        self.pump(up_xid);
                    }
                }
            }
        }
        self.expired = expired;
    }
}
