//! An engine coming back from its metadata store: the devices it restored are awaited until
//! they log in again (or a grace period ends), and I/O to volumes on them is parked in the
//! control path meanwhile instead of failing, so a restart costs hosts a pause, not errors.

use std::collections::BTreeSet;

use bytes::Bytes;
use dve_fp_api::ids::{DeviceId, IoTag, LvId};
use dve_fp_api::io::HostIo;
use dve_fp_api::mapping::SideState;

use super::ControlPath;

/// How long restored devices are awaited after the store is attached.
pub const DISCOVERY_GRACE_NS: u64 = 5_000_000_000;

/// Restored devices not seen yet, and the I/O waiting for them.
#[derive(Debug, Default)]
pub(super) struct Awaiting {
    devices: BTreeSet<DeviceId>,
    /// When the grace period ends (set at the first tick after the store is attached).
    until: Option<u64>,
    parked: Vec<(IoTag, HostIo, Option<Bytes>)>,
}

impl ControlPath {
    /// Every restored device is awaited until it answers discovery again.
    pub(super) fn await_restored_devices(&mut self) {
        self.awaiting.devices = self.devices.iter().map(|d| d.id).collect();
        self.awaiting.until = None;
    }

    /// Whether `lv` uses a device (of a side that is not dead) still awaited.
    pub(super) fn awaits_devices(&self, lv: LvId) -> bool {
        if self.awaiting.devices.is_empty() {
            return false;
        }
        let Some(v) = self.volumes.get(&lv) else { return false };
        let dead: BTreeSet<DeviceId> = (0..v.record.side_states.len())
            .filter(|s| v.record.side_states[*s] == SideState::Dead)
            .flat_map(|s| self.side_devices(lv, s))
            .collect();
        let mut devices = v.record.layout.devices();
        devices.extend(self.migration_destinations(lv));
        devices.extend(self.snapshot_devices(lv));
        devices.iter().any(|d| self.awaiting.devices.contains(d) && !dead.contains(d))
    }

    /// Park an I/O until the volume's devices are back; false if it need not wait.
    pub(super) fn park_until_devices(&mut self, io: IoTag, request: &HostIo, data: &Option<Bytes>) -> bool {
        if !request.lv.is_some_and(|lv| self.awaits_devices(lv)) {
            return false;
        }
        self.awaiting.parked.push((io, *request, data.clone()));
        true
    }

    /// A device answered discovery: I/O no longer waiting for anything runs.
    pub(super) fn awaited_device_online(&mut self, device: DeviceId) {
        if self.awaiting.devices.remove(&device) {
            self.release_parked(false);
        }
    }

    /// Ends the grace period when it is over.
    pub(super) fn awaiting_tick(&mut self) {
        if self.awaiting.devices.is_empty() {
            return;
        }
        let until = *self.awaiting.until.get_or_insert(self.now.saturating_add(DISCOVERY_GRACE_NS));
        if self.now >= until {
            self.awaiting.devices.clear();
            self.release_parked(true);
        }
    }

    fn release_parked(&mut self, all: bool) {
        let parked = std::mem::take(&mut self.awaiting.parked);
        for (io, request, data) in parked {
            if all || !request.lv.is_some_and(|lv| self.awaits_devices(lv)) {
                self.start_manual_with(io, request, data);
            } else {
                self.awaiting.parked.push((io, request, data));
            }
        }
    }
}
