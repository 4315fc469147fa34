//! A tokio run loop around one [`Engine`]: feeds it the gRPC transport's envelopes, its timers
//! (from a monotonic clock) and the control path's commands, and hands back its events. The
//! thin I/O shell of DESIGN.md principle 1; all protocol logic stays in the engine.

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::address::{EngineId, OplockAddress};
use crate::engine::{Engine, EngineConfig};
use crate::event::{Event, UpdateKind};
use crate::oplock::OplockState;
use crate::store::SharedStore;
use crate::transport::grpc::GrpcTransport;

/// What the control path asks of a running engine.
#[derive(Debug)]
pub enum Command {
    /// `request_share`.
    Share(OplockAddress),
    /// `request_acquire`.
    Acquire(OplockAddress, UpdateKind),
    /// `release`.
    Release(OplockAddress),
    /// `request_unshare`.
    Unshare(OplockAddress),
    /// `request_leave`.
    Leave(OplockAddress),
    /// `purge_complete`.
    PurgeComplete(OplockAddress, u64),
    /// `cleanup_complete`.
    CleanupComplete(EngineId),
    /// `replay_complete`.
    ReplayComplete,
    /// Report the state of an oplock.
    State(OplockAddress, oneshot::Sender<Option<OplockState>>),
}

/// Run an engine until the command channel closes.
///
/// The engine's clock is nanoseconds since the UNIX epoch, read once at start and then
/// advanced by a monotonic clock: timers never jump, and the timestamps of acquire requests
/// (the tie-break between competing acquirers) are comparable between engines whose hosts'
/// clocks are synchronized (NTP). `Event::Purge::drain_before` is in the same time base.
pub async fn run_engine<S: SharedStore + Send>(
    config: EngineConfig,
    mut store: S,
    mut transport: GrpcTransport,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) {
    let start = Instant::now();
    let epoch =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let clock = move || epoch + start.elapsed().as_nanos() as u64;
    let mut engine = Engine::boot(config, clock(), &mut store);
    loop {
        while let Some(envelope) = engine.poll_transmit() {
            if let Err(e) = transport.send(envelope) {
                tracing::debug!(error = %e, "dropped");
            }
        }
        while let Some(event) = engine.poll_event() {
            let _ = events.send(event);
        }
        let deadline = engine
            .poll_timeout()
            .map(|t| start + std::time::Duration::from_nanos(t.saturating_sub(epoch).min(u64::MAX / 4)))
            .unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(3600));
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { return };
                let now = clock();
                let result = match command {
                    Command::Share(o) => { engine.request_share(now, &mut store, o); Ok(()) }
                    Command::Acquire(o, kind) => { engine.request_acquire(now, &mut store, o, kind); Ok(()) }
                    Command::Release(o) => engine.release(now, &mut store, o),
                    Command::Unshare(o) => { engine.request_unshare(now, &mut store, o); Ok(()) }
                    Command::Leave(o) => { engine.request_leave(now, &mut store, o); Ok(()) }
                    Command::PurgeComplete(o, token) => engine.purge_complete(now, &mut store, o, token),
                    Command::CleanupComplete(victim) => engine.cleanup_complete(now, &mut store, victim),
                    Command::ReplayComplete => engine.replay_complete(now, &mut store),
                    Command::State(o, reply) => {
                        let _ = reply.send(engine.oplock(&o).map(|op| op.state()));
                        Ok(())
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "command refused");
                }
            }
            envelope = transport.recv() => {
                let Some(envelope) = envelope else { return };
                engine.handle_message(clock(), &mut store, envelope);
            }
            _ = tokio::time::sleep_until(deadline) => {
                engine.handle_timeout(clock(), &mut store);
            }
        }
    }
}
