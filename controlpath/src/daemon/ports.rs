//! How the workers get their ports. Every worker may transmit on every port (a read comes
//! from a disk on one port and goes to a host on another), while only the worker serving a
//! port receives from it, so each worker needs a transmit handle to every port.
//! [`PortSet`] makes them: a backend with real queues gives each worker its own transmit
//! queue per port (DPDK: one tx queue per worker), the software backend shares each port's
//! cable between handles ([`SoftwarePort::handle`]).

use std::time::Duration;

use dve_fastpath::port::{SoftwarePort, software_link};
use dve_fp_api::frame::FramePool;
use dve_fp_api::ids::{PortId, WorkerId};
use dve_fp_api::port::PacketIo;

use super::DaemonError;

/// The engine's ports, able to hand each worker a handle on every one of them.
pub trait PortSet {
    /// A worker's handle on one port.
    type Port: PacketIo + Send + 'static;

    /// How many ports there are (numbered from 0).
    fn port_count(&self) -> usize;

    /// Handles on every port, in port order, for `worker`; it receives only on the ports the
    /// address plan gives it.
    fn handles_for(&mut self, worker: WorkerId) -> Result<Vec<Self::Port>, DaemonError>;

    /// How long a worker whose poll found nothing to do sleeps before polling again; `None`
    /// to keep polling (a dedicated core).
    fn idle_pause(&self) -> Option<Duration>;
}

/// Frames each direction of a software cable holds.
pub const SOFTWARE_CABLE_FRAMES: usize = 4096;

/// Software ports: in-memory cables whose far ends the caller keeps, so only users inside
/// the process (tests, demos) reach the engine through them.
#[derive(Debug)]
pub struct SoftwarePortSet {
    /// The engine's end of each cable, from which every worker's handle is made.
    ends: Vec<SoftwarePort>,
}

impl SoftwarePortSet {
    /// `count` ports; returns the set and the far end of each cable, in port order.
    pub fn new(count: usize) -> (SoftwarePortSet, Vec<SoftwarePort>) {
        // Received frames that arrive in pieces are gathered into buffers of this pool; the
        // far ends send whole frames, so the engine's ends rarely need it.
        let pool = FramePool::new(1024, 0);
        let (ends, far) = (0..count)
            .map(|p| {
                let id = PortId(u16::try_from(p).unwrap_or(u16::MAX));
                software_link(id, id, SOFTWARE_CABLE_FRAMES, pool.clone())
            })
            .unzip();
        (SoftwarePortSet { ends }, far)
    }
}

impl PortSet for SoftwarePortSet {
    type Port = SoftwarePort;

    fn port_count(&self) -> usize {
        self.ends.len()
    }

    fn handles_for(&mut self, _worker: WorkerId) -> Result<Vec<SoftwarePort>, DaemonError> {
        Ok(self.ends.iter().map(SoftwarePort::handle).collect())
    }

    /// A software port has no interrupt to wait on, and its far end is driven by threads of
    /// the same machine: a worker spinning on an idle port would take a core from them. A
    /// pause of 50 us when idle costs a frame at most that much latency.
    fn idle_pause(&self) -> Option<Duration> {
        Some(Duration::from_micros(50))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dve_fp_api::frame::{Frame, TxFrame};

    #[test]
    fn every_worker_transmits_on_every_port_and_the_far_end_hears_it() {
        let (mut set, mut far) = SoftwarePortSet::new(3);
        assert_eq!(set.port_count(), 3);
        for w in 0..2u8 {
            let mut handles = set.handles_for(WorkerId(w)).unwrap();
            assert_eq!(
                handles.iter().map(PacketIo::id).collect::<Vec<_>>(),
                [PortId(0), PortId(1), PortId(2)]
            );
            for handle in &mut handles {
                let frame = Frame::copy_from(&[w, handle.id().0 as u8]).unwrap();
                assert_eq!(handle.tx_burst(&mut vec![TxFrame::whole(frame)]), 1);
            }
        }
        for (p, end) in far.iter_mut().enumerate() {
            let mut got = Vec::new();
            end.rx_burst(&mut got, 8);
            let got: Vec<&[u8]> = got.iter().map(Frame::as_slice).collect();
            assert_eq!(got, [[0, p as u8], [1, p as u8]], "port {p}");
        }
    }
}
