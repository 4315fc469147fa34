//! The engine's ports and its FC address plan: which worker serves each port, each port's
//! MAC and the switch's own initiator address on it, the N_Port IDs the fabric login server
//! hands out, and the addresses of virtual targets.

use dve_fp_api::ids::{FcId, PortId, WorkerId};
use dve_wire::ethernet::MacAddr;

/// Area byte of virtual target addresses (no physical port uses it).
const VIRTUAL_AREA: u32 = 0xF0;
/// Port byte of the switch's own initiator address on each port.
const INITIATOR_PORT_BYTE: u32 = 0xFE;
/// Highest port byte the login server assigns to N_Ports (0xF0 and up are reserved).
const LAST_NPORT_BYTE: u32 = 0xEF;

/// One port of the engine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EnginePort {
    /// The port.
    pub id: PortId,
    /// The worker that receives on it.
    pub worker: WorkerId,
    /// Its MAC address.
    pub mac: MacAddr,
    /// The switch's initiator address on it (S_ID of downstream I/O).
    pub initiator_fc_id: FcId,
}

/// The address plan of one engine: domain `domain`, area `port + 1` for N_Ports on a port.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AddressPlan {
    domain: u8,
    ports: Vec<EnginePort>,
}

impl AddressPlan {
    /// `ports` ports dealt round robin to `workers` workers, in FC domain `domain`. At most
    /// 239 ports (areas 1..=239).
    pub fn new(domain: u8, ports: u16, workers: u8) -> AddressPlan {
        let workers = workers.max(1);
        let ports = (0..ports.min(239))
            .map(|p| {
                let area = u32::from(p) + 1;
                EnginePort {
                    id: PortId(p),
                    worker: WorkerId((p % u16::from(workers)) as u8),
                    mac: MacAddr([0x02, 0xD5, domain, 0, (p >> 8) as u8, p as u8]),
                    initiator_fc_id: FcId::new((u32::from(domain) << 16) | (area << 8) | INITIATOR_PORT_BYTE)
                        .unwrap_or_default(),
                }
            })
            .collect();
        AddressPlan { domain, ports }
    }

    /// The FC domain.
    pub fn domain(&self) -> u8 {
        self.domain
    }

    /// Every port.
    pub fn ports(&self) -> &[EnginePort] {
        &self.ports
    }

    /// One port.
    pub fn port(&self, id: PortId) -> Option<&EnginePort> {
        self.ports.get(usize::from(id.0)).filter(|p| p.id == id)
    }

    /// The `n`-th N_Port address on `port` (n from 1), if the plan has room.
    pub fn nport_address(&self, port: PortId, n: u32) -> Option<FcId> {
        if n == 0 || n > LAST_NPORT_BYTE || self.port(port).is_none() {
            return None;
        }
        let area = u32::from(port.0) + 1;
        FcId::new((u32::from(self.domain) << 16) | (area << 8) | n)
    }

    /// The address of virtual target number `n` (from 1).
    pub fn virtual_target_address(&self, n: u32) -> Option<FcId> {
        if n == 0 || n > LAST_NPORT_BYTE {
            return None;
        }
        FcId::new((u32::from(self.domain) << 16) | (VIRTUAL_AREA << 8) | n)
    }

    /// The worker serving `port`.
    pub fn worker_of(&self, port: PortId) -> Option<WorkerId> {
        self.port(port).map(|p| p.worker)
    }

    /// Every worker, in order.
    pub fn workers(&self) -> Vec<WorkerId> {
        let mut workers: Vec<WorkerId> = self.ports.iter().map(|p| p.worker).collect();
        workers.sort_unstable();
        workers.dedup();
        workers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_do_not_collide() {
        let plan = AddressPlan::new(1, 10, 2);
        let mut seen = std::collections::BTreeSet::new();
        for port in plan.ports() {
            assert!(seen.insert(port.initiator_fc_id.get()));
            for n in 1..=LAST_NPORT_BYTE {
                assert!(seen.insert(plan.nport_address(port.id, n).unwrap().get()));
            }
        }
        for n in 1..=LAST_NPORT_BYTE {
            assert!(seen.insert(plan.virtual_target_address(n).unwrap().get()));
        }
        assert_eq!(plan.workers(), vec![WorkerId(0), WorkerId(1)]);
        assert_eq!(plan.worker_of(PortId(3)), Some(WorkerId(1)));
        assert!(plan.nport_address(PortId(10), 1).is_none());
    }
}
