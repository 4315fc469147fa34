//! Frames a worker queued to transmit, kept per port as they are queued, so the poll loop
//! hands each port its list whole instead of picking that port's frames out of one mixed
//! list (a move of every frame per port, about 40 instructions per frame sent).

use dve_fp_api::frame::TxFrame;
use dve_fp_api::ids::PortId;
use dve_fp_api::stats::FpStatistics;

use super::config::PortConfig;
use super::port_slot;

/// The order-log entry of a frame for a port the worker has no slot for.
const OTHER: u16 = u16::MAX;

/// Frames waiting to be transmitted: one list per port slot of the worker's configuration,
/// one for ports outside it, and the order they were queued in across ports (the simulator
/// and tests take them in that order).
#[derive(Debug, Default)]
pub(super) struct Transmits {
    /// Per port slot, in queueing order.
    per_port: Vec<Vec<TxFrame>>,
    /// Frames for ports the worker has no slot for, in queueing order.
    other: Vec<(PortId, TxFrame)>,
    /// The slot (or [`OTHER`]) of every frame queued, in order.
    order: Vec<u16>,
    /// Reused list [`Transmits::take_in_order`] hands out.
    merged: Vec<(PortId, TxFrame)>,
}

impl Transmits {
    /// Empty lists for `ports`.
    pub(super) fn new(ports: &[PortConfig]) -> Transmits {
        Transmits {
            per_port: ports.iter().map(|_| Vec::with_capacity(64)).collect(),
            other: Vec::new(),
            order: Vec::with_capacity(256),
            merged: Vec::new(),
        }
    }

    /// Queue `frame` for `port`.
    #[inline(always)]
    pub(super) fn push(&mut self, ports: &[PortConfig], port: PortId, frame: TxFrame) {
        // Ports are numbered by position nearly always (see `port_slot`).
        let at = usize::from(port.0);
        if let Some(list) = self.per_port.get_mut(at)
            && ports.get(at).is_some_and(|p| p.id == port)
        {
            list.push(frame);
            self.order.push(port.0);
        } else {
            self.push_searched(ports, port, frame);
        }
    }

    /// [`Transmits::push`] for a port not found at its number's position.
    #[inline(never)]
    fn push_searched(&mut self, ports: &[PortConfig], port: PortId, frame: TxFrame) {
        match port_slot(ports, port).and_then(|at| Some((at, self.per_port.get_mut(at)?))) {
            Some((at, list)) if at < usize::from(OTHER) => {
                list.push(frame);
                self.order.push(at as u16);
            }
            _ => {
                self.other.push((port, frame));
                self.order.push(OTHER);
            }
        }
    }

    /// Whether none is waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Add the frames waiting to the port statistics of `stats` (made from `ports` in their
    /// order, one per port); ports without statistics count nothing.
    pub(super) fn count_into(&self, ports: &[PortConfig], stats: &mut FpStatistics) {
        for (at, list) in self.per_port.iter().enumerate().filter(|(_, l)| !l.is_empty()) {
            let Some(port) = ports.get(at).map(|p| p.id) else { continue };
            if let Some(s) = stats.ports.get_mut(at).filter(|s| s.port == port) {
                s.frames_out += list.len() as u64;
                s.bytes_out += list.iter().map(TxFrame::len).sum::<usize>() as u64;
            }
        }
        for (port, frame) in &self.other {
            count_one(ports, stats, *port, frame);
        }
    }

    /// Drop the `n` frames queued last, counting them into `stats` first (they were queued,
    /// and queued frames are counted as sent).
    pub(super) fn drop_last(&mut self, n: usize, ports: &[PortConfig], stats: &mut FpStatistics) {
        for _ in 0..n.min(self.order.len()) {
            let at = usize::from(self.order.pop().unwrap_or(OTHER));
            let dropped = match self.per_port.get_mut(at) {
                Some(list) => list.pop().zip(ports.get(at).map(|p| p.id)),
                None => self.other.pop().map(|(port, frame)| (frame, port)),
            };
            if let Some((frame, port)) = dropped {
                count_one(ports, stats, port, &frame);
            }
        }
    }

    /// The list of the port in slot `at`, to send whole (an empty list is left in its place
    /// by whoever takes it); frames for other ports stay.
    pub(super) fn port_list(&mut self, at: usize) -> Option<&mut Vec<TxFrame>> {
        self.per_port.get_mut(at)
    }

    /// Move the frames for `port` queued outside any slot onto `batch`.
    pub(super) fn take_other(&mut self, port: PortId, batch: &mut Vec<TxFrame>) {
        if !self.other.is_empty() {
            batch.extend(self.other.extract_if(.., |(p, _)| *p == port).map(|(_, f)| f));
        }
    }

    /// Forget every frame still waiting (after a flush: those for ports not flushed).
    pub(super) fn clear(&mut self) {
        for list in &mut self.per_port {
            list.clear();
        }
        self.other.clear();
        self.order.clear();
    }

    /// Every frame waiting, with its port, in the order queued.
    pub(super) fn take_in_order(&mut self, ports: &[PortConfig]) -> std::vec::Drain<'_, (PortId, TxFrame)> {
        // Reversed, each list gives its next frame from its end.
        for list in &mut self.per_port {
            list.reverse();
        }
        self.other.reverse();
        self.merged.clear();
        for &at in &self.order {
            let at = usize::from(at);
            let next = match self.per_port.get_mut(at) {
                Some(list) => list.pop().zip(ports.get(at).map(|p| p.id)).map(|(frame, port)| (port, frame)),
                None => self.other.pop(),
            };
            self.merged.extend(next);
        }
        self.order.clear();
        self.merged.drain(..)
    }
}

/// Count one frame for `port` into `stats`, if the port has statistics.
fn count_one(ports: &[PortConfig], stats: &mut FpStatistics, port: PortId, frame: &TxFrame) {
    let at = port_slot(ports, port).filter(|&at| stats.ports.get(at).is_some_and(|s| s.port == port));
    if let Some(s) = at.and_then(|at| stats.ports.get_mut(at)) {
        s.frames_out += 1;
        s.bytes_out += frame.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use dve_fp_api::frame::{Frame, Trailer};
    use dve_fp_api::ids::FcId;
    use dve_fp_api::stats::PortStatistics;
    use dve_wire::ethernet::MacAddr;
    use proptest::prelude::*;

    use super::*;

    /// What the worker counted before it kept frames per port: each frame on its own, in one
    /// list of (port, frame).
    fn count_per_frame(ports: &[PortConfig], stats: &mut FpStatistics, tx: &[(PortId, TxFrame)]) {
        for (port, frame) in tx {
            count_one(ports, stats, *port, frame);
        }
    }

    fn frame(head: usize, body: Option<usize>, tail: usize) -> TxFrame {
        TxFrame {
            head: Frame::copy_from(&vec![1; head]).unwrap_or(Frame::empty()),
            body: body.and_then(|len| Frame::copy_from(&vec![2; len])),
            tail: Trailer::new(&[3; 12][..tail]).unwrap_or_default(),
        }
    }

    fn same(a: &[(PortId, TxFrame)], b: &[(PortId, TxFrame)]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|((pa, fa), (pb, fb))| {
                pa == pb
                    && fa.head.shares_storage_with(&fb.head)
                    && fa.body.as_ref().map(Frame::len) == fb.body.as_ref().map(Frame::len)
                    && fa.tail == fb.tail
            })
    }

    proptest! {
        /// Frames kept per port are counted, dropped from the end and taken in order exactly
        /// as the one mixed list they replace: ports numbered by position or not, ports with
        /// no statistics and ports the worker does not have.
        #[test]
        fn per_port_lists_behave_as_one_list(
            numbering in prop::sample::select(vec![vec![0u16, 1, 2], vec![2, 0, 1], vec![0, 5], vec![1]]),
            statistics_for in prop::sample::select(vec![0usize, 1, 3]),
            frames in prop::collection::vec((0u16..7, 0usize..80, prop::option::of(0usize..40), 0usize..12), 0..24),
            dropped in 0usize..6,
        ) {
            let ports: Vec<PortConfig> = numbering
                .iter()
                .map(|&p| PortConfig {
                    id: PortId(p),
                    mac: MacAddr([2, 0, 0, 0, 0, p as u8]),
                    initiator_fc_id: FcId::new(0x01_0000 + u32::from(p)).unwrap_or_default(),
                })
                .collect();
            let stats = FpStatistics {
                ports: ports
                    .iter()
                    .take(statistics_for)
                    .map(|p| PortStatistics { port: p.id, frames_out: 3, bytes_out: 100, ..PortStatistics::default() })
                    .collect(),
                ..FpStatistics::default()
            };
            let list: Vec<(PortId, TxFrame)> = frames
                .iter()
                .map(|&(port, head, body, tail)| (PortId(port % 6), frame(head, body, tail)))
                .collect();
            let mut queued = Transmits::new(&ports);
            for (port, frame) in &list {
                queued.push(&ports, *port, frame.clone());
            }
            prop_assert_eq!(queued.is_empty(), list.is_empty());
            let (mut by_lists, mut by_frame) = (stats.clone(), stats);
            queued.count_into(&ports, &mut by_lists);
            count_per_frame(&ports, &mut by_frame, &list);
            prop_assert_eq!(&by_lists, &by_frame);
            let kept = list.len().saturating_sub(dropped);
            queued.drop_last(dropped, &ports, &mut by_lists);
            count_per_frame(&ports, &mut by_frame, &list[kept..]);
            prop_assert_eq!(&by_lists, &by_frame);
            let taken: Vec<(PortId, TxFrame)> = queued.take_in_order(&ports).collect();
            prop_assert!(same(&taken, &list[..kept]));
            prop_assert!(queued.is_empty());
            prop_assert_eq!(queued.take_in_order(&ports).count(), 0);
        }
    }
}
