//! Ordered reliable datagrams between engines over gRPC (`proto/coherency.proto`): one
//! bidirectional `Exchange` stream per peer, sequence numbers with cumulative acks, resend of
//! unacknowledged datagrams after a reconnect, and duplicate suppression at the receiver. A
//! restarted sender starts a new session; what its old session had in flight is lost, as
//! across a crash, which is what the engine's timeouts are for.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dve_proto::coherency::coherency_client::CoherencyClient;
use dve_proto::coherency::coherency_server::{Coherency, CoherencyServer};
use dve_proto::coherency::{self as pb, frame};
use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream, UnboundedReceiverStream};

use crate::address::{EngineId, OplockAddress};
use crate::error::Error;
use crate::message::{AcquirePriority, Body, Envelope, Message};

/// Encode an envelope as a datagram with sequence number `seq`.
pub fn to_datagram(envelope: &Envelope, seq: u64) -> pb::Datagram {
    let m = &envelope.message;
    let mut d = pb::Datagram {
        seq,
        from: envelope.from,
        incarnation: envelope.incarnation,
        to: envelope.to,
        guid: m.oplock.guid,
        luid: m.oplock.luid,
        index: m.oplock.index,
        round: m.round,
        ..Default::default()
    };
    let kind = match m.body {
        Body::Join => pb::Kind::Join,
        Body::Leave => pb::Kind::Leave,
        Body::Share => pb::Kind::Share,
        Body::Unshare => pb::Kind::Unshare,
        Body::Acquire { priority, restrictive } => {
            d.requested_at = priority.requested_at;
            d.priority_engine = priority.engine;
            d.restrictive = restrictive;
            pb::Kind::Acquire
        }
        Body::Release => pb::Kind::Release,
        Body::Ack { old_dirty, sharing } => {
            d.old_dirty = old_dirty;
            d.sharing = sharing;
            pb::Kind::Ack
        }
        Body::Nak => pb::Kind::Nak,
    };
    d.set_kind(kind);
    d
}

/// Decode a datagram; `None` for an unknown kind.
pub fn from_datagram(d: &pb::Datagram) -> Option<Envelope> {
    let body = match d.kind() {
        pb::Kind::Unspecified => return None,
        pb::Kind::Join => Body::Join,
        pb::Kind::Leave => Body::Leave,
        pb::Kind::Share => Body::Share,
        pb::Kind::Unshare => Body::Unshare,
        pb::Kind::Acquire => Body::Acquire {
            priority: AcquirePriority { requested_at: d.requested_at, engine: d.priority_engine },
            restrictive: d.restrictive,
        },
        pb::Kind::Release => Body::Release,
        pb::Kind::Ack => Body::Ack { old_dirty: d.old_dirty, sharing: d.sharing },
        pb::Kind::Nak => Body::Nak,
    };
    Some(Envelope {
        from: d.from,
        incarnation: d.incarnation,
        to: d.to,
        message: Message { oplock: OplockAddress::new(d.guid, d.luid, d.index), round: d.round, body },
    })
}

/// What the receiver remembers per sender: its session and the last sequence delivered.
type Sessions = Arc<Mutex<BTreeMap<EngineId, (u64, u64)>>>;

/// The server side: accepts peers' streams, delivers each datagram once, in order.
#[derive(Debug, Clone)]
struct Receiver {
    sessions: Sessions,
    inbound: mpsc::UnboundedSender<Envelope>,
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<pb::Frame, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Coherency for Receiver {
    type ExchangeStream = FrameStream;

    async fn exchange(
        &self,
        request: tonic::Request<tonic::Streaming<pb::Frame>>,
    ) -> Result<tonic::Response<FrameStream>, tonic::Status> {
        let mut frames = request.into_inner();
        let (acks, ack_stream) = mpsc::unbounded_channel::<Result<pb::Frame, tonic::Status>>();
        let sessions = self.sessions.clone();
        let inbound = self.inbound.clone();
        tokio::spawn(async move {
            let mut sender: Option<EngineId> = None;
            while let Some(Ok(frame)) = frames.next().await {
                match frame.frame {
                    Some(frame::Frame::Hello(hello)) => {
                        let mut map = sessions.lock().unwrap_or_else(|e| e.into_inner());
                        let entry = map.entry(hello.from).or_insert((hello.session, 0));
                        if entry.0 != hello.session {
                            // The sender restarted: a fresh sequence.
                            *entry = (hello.session, 0);
                        }
                        sender = Some(hello.from);
                        let last = entry.1;
                        drop(map);
                        let _ = acks
                            .send(Ok(pb::Frame { frame: Some(frame::Frame::Ack(pb::Ack { seq: last })) }));
                    }
                    Some(frame::Frame::Datagram(d)) => {
                        let Some(from) = sender else { break };
                        let last = {
                            let mut map = sessions.lock().unwrap_or_else(|e| e.into_inner());
                            let entry = map.entry(from).or_insert((0, 0));
                            if d.seq == entry.1 + 1 {
                                entry.1 = d.seq;
                                if let Some(envelope) = from_datagram(&d) {
                                    let _ = inbound.send(envelope);
                                }
                            }
                            // Duplicates (seq <= last) are acknowledged again, not delivered.
                            entry.1
                        };
                        let _ = acks
                            .send(Ok(pb::Frame { frame: Some(frame::Frame::Ack(pb::Ack { seq: last })) }));
                    }
                    _ => {}
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(UnboundedReceiverStream::new(ack_stream))))
    }
}

/// One engine's gRPC transport: a server for inbound streams and one sending link per peer.
#[derive(Debug)]
pub struct GrpcTransport {
    me: EngineId,
    session: u64,
    local_addr: SocketAddr,
    links: BTreeMap<EngineId, mpsc::UnboundedSender<Envelope>>,
    inbound: mpsc::UnboundedReceiver<Envelope>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl GrpcTransport {
    /// Serve on `addr` (port 0 for an ephemeral one) inside the current tokio runtime.
    /// `session` must differ between runs of the same engine (e.g. random, or a boot counter).
    pub async fn bind(me: EngineId, session: u64, addr: SocketAddr) -> Result<Self, Error> {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::Transport(e.to_string()))?;
        let local_addr = listener.local_addr().map_err(|e| Error::Transport(e.to_string()))?;
        let (inbound_tx, inbound) = mpsc::unbounded_channel();
        let receiver = Receiver { sessions: Arc::default(), inbound: inbound_tx };
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(CoherencyServer::new(receiver))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stop.await;
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "coherency server stopped");
            }
        });
        Ok(GrpcTransport {
            me,
            session,
            local_addr,
            links: BTreeMap::new(),
            inbound,
            shutdown: Some(shutdown),
        })
    }

    /// The address peers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Start a sending link to `peer` at `uri` (e.g. `http://127.0.0.1:5000`). It connects
    /// lazily and reconnects forever.
    pub fn add_peer(&mut self, peer: EngineId, uri: String) {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_link(self.me, self.session, uri, rx));
        self.links.insert(peer, tx);
    }

    /// Queue an envelope for its recipient.
    pub fn send(&self, envelope: Envelope) -> Result<(), Error> {
        let link = self.links.get(&envelope.to).ok_or(Error::UnknownPeer(envelope.to))?;
        link.send(envelope).map_err(|_| Error::Transport("link closed".into()))
    }

    /// The next envelope delivered to this engine.
    pub async fn recv(&mut self) -> Option<Envelope> {
        self.inbound.recv().await
    }

    /// Stop serving and drop every link.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        self.links.clear();
    }
}

impl Drop for GrpcTransport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The sending side of one peer: number datagrams, keep them until acked, resend after a
/// reconnect.
async fn run_link(me: EngineId, session: u64, uri: String, mut queue: mpsc::UnboundedReceiver<Envelope>) {
    let mut unacked: VecDeque<pb::Datagram> = VecDeque::new();
    let mut next_seq = 1u64;
    let mut closed = false;
    while !closed || !unacked.is_empty() {
        let mut client = match CoherencyClient::connect(uri.clone()).await {
            Ok(client) => client,
            Err(_) => {
                // Peer down: keep queueing (the engine's timeouts decide what it means).
                if closed {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                while let Ok(envelope) = queue.try_recv() {
                    unacked.push_back(to_datagram(&envelope, next_seq));
                    next_seq += 1;
                }
                continue;
            }
        };
        let (out, out_stream) = mpsc::channel::<pb::Frame>(1024);
        let hello = pb::Frame { frame: Some(frame::Frame::Hello(pb::Hello { from: me, session })) };
        if out.send(hello).await.is_err() {
            continue;
        }
        let mut responses = match client.exchange(ReceiverStream::new(out_stream)).await {
            Ok(response) => response.into_inner(),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // The peer's first answer says what it has delivered from us. Less than what we
        // still hold means it restarted: what we sent its old life is lost, as across a crash.
        match responses.next().await {
            Some(Ok(pb::Frame { frame: Some(frame::Frame::Ack(ack)) })) => {
                while unacked.front().is_some_and(|d| d.seq <= ack.seq) {
                    unacked.pop_front();
                }
                if unacked.front().is_some_and(|d| d.seq > ack.seq + 1) || next_seq <= ack.seq {
                    unacked.clear();
                    next_seq = ack.seq + 1;
                }
            }
            _ => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let mut resend_ok = true;
        for d in &unacked {
            if out.send(pb::Frame { frame: Some(frame::Frame::Datagram(*d)) }).await.is_err() {
                resend_ok = false;
                break;
            }
        }
        if !resend_ok {
            continue;
        }
        loop {
            tokio::select! {
                envelope = queue.recv(), if !closed => {
                    let Some(envelope) = envelope else {
                        closed = true;
                        if unacked.is_empty() { return; }
                        continue;
                    };
                    let d = to_datagram(&envelope, next_seq);
                    next_seq += 1;
                    unacked.push_back(d);
                    if out.send(pb::Frame { frame: Some(frame::Frame::Datagram(d)) }).await.is_err() {
                        break;
                    }
                }
                response = responses.next() => {
                    match response {
                        Some(Ok(pb::Frame { frame: Some(frame::Frame::Ack(ack)) })) => {
                            while unacked.front().is_some_and(|d| d.seq <= ack.seq) {
                                unacked.pop_front();
                            }
                            if closed && unacked.is_empty() {
                                return;
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_round_trip() {
        let bodies = [
            Body::Join,
            Body::Leave,
            Body::Share,
            Body::Unshare,
            Body::Acquire { priority: AcquirePriority { requested_at: 77, engine: 3 }, restrictive: true },
            Body::Release,
            Body::Ack { old_dirty: true, sharing: false },
            Body::Nak,
        ];
        for body in bodies {
            let envelope = Envelope {
                from: 1,
                incarnation: 4,
                to: 2,
                message: Message { oplock: OplockAddress::rmap(9, 128, 64), round: 5, body },
            };
            assert_eq!(from_datagram(&to_datagram(&envelope, 12)), Some(envelope));
        }
    }
}
