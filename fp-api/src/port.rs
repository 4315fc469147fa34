//! The port abstraction every fast-path worker drives: receive and transmit in bursts. The
//! software port, the simulator's links and the DPDK port implement it; the worker assumes
//! nothing else about them.

use crate::frame::{Frame, TxFrame};
use crate::ids::PortId;

/// A port a worker polls. Bursts amortize per-call costs, as DPDK's `rx_burst`/`tx_burst` do.
pub trait PacketIo {
    /// The port's number.
    fn id(&self) -> PortId;

    /// Receive up to `max` frames, appended to `out`; returns how many.
    fn rx_burst(&mut self, out: &mut Vec<Frame>, max: usize) -> usize;

    /// Transmit frames from the front of `frames`, removing those the port accepted; returns
    /// how many. Frames left are the caller's to retry or drop (the port was full).
    fn tx_burst(&mut self, frames: &mut Vec<TxFrame>) -> usize;

    /// Whether the link is up.
    fn link_up(&self) -> bool;
}
