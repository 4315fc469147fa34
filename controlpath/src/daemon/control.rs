//! The control path in the running engine: [`Engine`] holds it under one lock together
//! with the ordered downcall queue of each worker, and [`run_control`] is the tokio task
//! that feeds it the workers' upcalls and the ticks. The management service reaches the same
//! lock through `access`, so a management call and an upcall never interleave.
//!
//! Downcalls go to a worker's ring with `try_send`. A full ring keeps the rest of that
//! worker's downcalls, in order, in its queue; they are retried after every later step and
//! on a short timer, and never dropped: a lost grant, revocation or `SendFrame` would leave
//! the fast path and the control path disagreeing.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dve_fp_api::Error as FpError;
use dve_fp_api::ids::WorkerId;
use dve_fp_api::message::{ToCp, ToFp};
use dve_fp_api::transport::CpEndpoint;
use futures::FutureExt;
use futures::stream::{self, BoxStream, SelectAll, StreamExt};
use tokio::sync::{Notify, broadcast, watch};

use super::clock::EngineClock;
use crate::{ControlEvent, ControlPath};

/// Upcalls handled under one lock before the lock is let go (management calls wait no
/// longer than this many upcalls).
const UPCALL_BATCH: usize = 256;

/// How soon downcalls a full ring refused are tried again when nothing else happens.
const RETRY_INTERVAL: Duration = Duration::from_micros(200);

/// One worker's side of the control path: its ring and the downcalls waiting for room.
#[derive(Debug)]
struct WorkerLink {
    endpoint: Arc<CpEndpoint>,
    waiting: VecDeque<ToFp>,
}

/// The control path and the way to its workers, behind the engine's lock.
#[derive(Debug)]
pub struct Engine {
    /// The control path.
    pub control: ControlPath,
    links: Vec<WorkerLink>,
    events: broadcast::Sender<ControlEvent>,
    /// Downcalls addressed to a worker the engine does not have (a bug; counted, not sent).
    pub misaddressed: u64,
    /// Downcalls that met a worker already gone (the engine is stopping).
    pub undeliverable: u64,
}

impl Engine {
    /// The control path with the control-path end of each worker's ring, worker `i` at
    /// index `i`; events are announced on `events`.
    pub fn new(
        control: ControlPath,
        endpoints: Vec<Arc<CpEndpoint>>,
        events: broadcast::Sender<ControlEvent>,
    ) -> Engine {
        let links =
            endpoints.into_iter().map(|endpoint| WorkerLink { endpoint, waiting: VecDeque::new() }).collect();
        Engine { control, links, events, misaddressed: 0, undeliverable: 0 }
    }

    /// Move every downcall the control path queued to its worker's ring, in order, and
    /// announce its events. Returns whether downcalls still wait for room.
    pub fn settle(&mut self) -> bool {
        while let Some((worker, message)) = self.control.poll_downcall() {
            match self.links.get_mut(usize::from(worker.0)) {
                Some(link) => link.waiting.push_back(message),
                None => self.misaddressed += 1,
            }
        }
        let mut waiting = false;
        for link in &mut self.links {
            while let Some(message) = link.waiting.pop_front() {
                match link.endpoint.try_send(message) {
                    Ok(()) => {}
                    Err((FpError::Disconnected, _)) => {
                        self.undeliverable += 1 + link.waiting.len() as u64;
                        link.waiting.clear();
                    }
                    Err((_, message)) => {
                        link.waiting.push_front(message);
                        waiting = true;
                        break;
                    }
                }
            }
        }
        for event in self.control.take_events() {
            // Nobody listening is fine: the events are news, not state.
            let _ = self.events.send(event);
        }
        waiting
    }

    /// Whether downcalls wait for room in a worker's ring.
    pub fn has_waiting(&self) -> bool {
        self.links.iter().any(|l| !l.waiting.is_empty())
    }

    /// Downcalls waiting for room, per worker.
    pub fn waiting(&self) -> Vec<usize> {
        self.links.iter().map(|l| l.waiting.len()).collect()
    }
}

/// The engine's lock, shared by the control-path task and the management service.
#[derive(Debug, Clone)]
pub struct SharedEngine {
    engine: Arc<Mutex<Engine>>,
    /// Woken when a management call left downcalls waiting, so the task retries them.
    retry: Arc<Notify>,
}

impl SharedEngine {
    /// Share `engine`.
    pub fn new(engine: Engine) -> SharedEngine {
        SharedEngine { engine: Arc::new(Mutex::new(engine)), retry: Arc::new(Notify::new()) }
    }

    /// The engine, locked. A panic under the lock (a bug in one call) leaves the state the
    /// store reloads from intact, and the engine's other users keep working.
    pub fn lock(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `f` on the control path, then move its downcalls (see [`Engine::settle`]).
    pub fn with_control<R>(&self, f: impl FnOnce(&mut ControlPath) -> R) -> R {
        let mut engine = self.lock();
        let result = f(&mut engine.control);
        if engine.settle() {
            self.retry.notify_one();
        }
        result
    }
}

/// Every worker's upcalls as one stream of `(worker, upcall)`; a worker's stream ends when
/// its thread is gone.
pub fn upcalls(endpoints: &[Arc<CpEndpoint>]) -> SelectAll<BoxStream<'static, (WorkerId, ToCp)>> {
    stream::select_all(endpoints.iter().enumerate().map(|(i, endpoint)| {
        let worker = WorkerId(u8::try_from(i).unwrap_or(u8::MAX));
        stream::unfold(Arc::clone(endpoint), move |endpoint| async move {
            let message = endpoint.recv().await?;
            Some(((worker, message), endpoint))
        })
        .boxed()
    }))
}

/// The control-path task: hands every upcall to the control path as it arrives, ticks it
/// every `tick`, moves the downcalls after each step, and ends when `stop` turns true.
pub async fn run_control(
    shared: SharedEngine,
    mut upcalls: SelectAll<BoxStream<'static, (WorkerId, ToCp)>>,
    clock: EngineClock,
    tick: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(tick);
    // A late tick is not made up for with a burst: the control path's timers read the time.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waiting = shared.lock().settle();
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            Some((worker, message)) = upcalls.next() => {
                let mut engine = shared.lock();
                let now = clock.now();
                engine.control.handle_upcall(now, worker, message);
                // Take what else is there without waiting, under the same lock.
                for _ in 1..UPCALL_BATCH {
                    match upcalls.next().now_or_never() {
                        Some(Some((worker, message))) => engine.control.handle_upcall(now, worker, message),
                        _ => break,
                    }
                }
                waiting = engine.settle();
            }
            _ = ticker.tick() => {
                let mut engine = shared.lock();
                engine.control.tick(clock.now());
                waiting = engine.settle();
            }
            () = shared.retry.notified() => {
                waiting = shared.lock().has_waiting();
            }
            () = tokio::time::sleep(RETRY_INTERVAL), if waiting => {
                waiting = shared.lock().settle();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dve_fp_api::ids::RequestId;
    use dve_fp_api::transport::fp_channel;

    fn query(n: u64) -> ToFp {
        ToFp::QueryStatistics { req: RequestId(n) }
    }

    #[test]
    fn a_full_ring_keeps_the_downcalls_in_order_until_there_is_room() {
        let (fp, cp) = fp_channel(2);
        let (events, _) = broadcast::channel(4);
        let control = ControlPath::new(crate::ControlPathConfig::new(1, 1, 1));
        let mut engine = Engine::new(control, vec![Arc::new(cp)], events);
        engine.links[0].waiting.extend((0..5).map(query));
        assert!(engine.settle(), "three wait for room");
        assert_eq!(engine.waiting(), [3]);
        let mut received = Vec::new();
        received.extend(fp.try_recv());
        assert!(engine.settle());
        while let Some(message) = fp.try_recv() {
            received.push(message);
            engine.settle();
        }
        assert!(!engine.has_waiting());
        assert_eq!(received, (0..5).map(query).collect::<Vec<_>>(), "every downcall, in order");

        drop(fp);
        engine.links[0].waiting.push_back(query(5));
        assert!(!engine.settle(), "a worker that is gone takes nothing more");
        assert_eq!(engine.undeliverable, 1);
    }
}
