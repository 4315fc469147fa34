//! Three engines, each in its own tokio runtime with its own gRPC server on an ephemeral
//! loopback port, one shared metadata store: share, acquire with purge at the peers, release,
//! then kill one engine (drop its runtime) and watch the survivors evict it, recover its
//! non-volatile oplock as caretaker and acquire again.

use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use dve_coherency::node::{Command, run_engine};
use dve_coherency::transport::grpc::GrpcTransport;
use dve_coherency::{
    EngineConfig, EngineId, Envelope, Event, OplockAddress, OplockState, SharedMemoryStore, SharedStore,
    UpdateKind,
};
use tokio::sync::{mpsc, oneshot};

const MS: u64 = 1_000_000;
/// Generous bound so a slow CI machine cannot hang the test; never asserted on.
const WAIT: Duration = Duration::from_secs(30);

fn config(id: EngineId) -> EngineConfig {
    EngineConfig {
        id,
        ack_timeout: 400 * MS,
        retry_interval: 100 * MS,
        boot_wait: 1_000 * MS,
        membership_check_interval: 200 * MS,
        sweep_interval: 3_600_000 * MS,
        sweep_age: 3_600_000 * MS,
        eviction_grace: 300 * MS,
    }
}

struct Node {
    id: EngineId,
    runtime: Option<tokio::runtime::Runtime>,
    commands: mpsc::UnboundedSender<Command>,
    events: std_mpsc::Receiver<Event>,
}

impl Node {
    fn send(&self, command: Command) {
        self.commands.send(command).expect("engine running");
    }

    fn wait(&self, what: &str, matches: impl Fn(&Event) -> bool) -> Event {
        loop {
            let event = self
                .events
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("engine {} never saw {what}", self.id));
            if matches(&event) {
                return event;
            }
        }
    }

    fn state(&self, oplock: OplockAddress) -> Option<OplockState> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::State(oplock, tx));
        futures::executor::block_on(rx).expect("engine answers")
    }

    /// A crash: the runtime and everything on it (server, links, engine) vanish.
    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The control path of the test: completes purges, cleanups and replays at once and reports
/// every event.
async fn auto_control_path(
    mut events: mpsc::UnboundedReceiver<Event>,
    commands: mpsc::UnboundedSender<Command>,
    report: std_mpsc::Sender<Event>,
) {
    while let Some(event) = events.recv().await {
        match &event {
            Event::Purge { oplock, blocking: true, token, .. } => {
                let _ = commands.send(Command::PurgeComplete(*oplock, *token));
            }
            Event::Caretaker { victim, .. } => {
                let _ = commands.send(Command::CleanupComplete(*victim));
            }
            Event::Replay { .. } => {
                let _ = commands.send(Command::ReplayComplete);
            }
            _ => {}
        }
        let _ = report.send(event);
    }
}

fn start_cluster(store: &SharedMemoryStore) -> Vec<Node> {
    let ids: [EngineId; 3] = [0, 1, 2];
    let mut runtimes = Vec::new();
    let mut transports = Vec::new();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for id in ids {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let bind: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let transport = runtime.block_on(GrpcTransport::bind(id, 1000 + id as u64, bind)).expect("bind");
        addrs.push(transport.local_addr());
        transports.push(transport);
        runtimes.push(runtime);
    }
    let mut nodes = Vec::new();
    for ((id, runtime), mut transport) in ids.into_iter().zip(runtimes).zip(transports) {
        let _guard = runtime.enter();
        for (peer, addr) in ids.into_iter().zip(&addrs) {
            if peer != id {
                transport.add_peer(peer, format!("http://{addr}"));
            }
        }
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let (report, events) = std_mpsc::channel();
        runtime.spawn(run_engine(config(id), store.clone(), transport, command_rx, event_tx));
        runtime.spawn(auto_control_path(event_rx, commands.clone(), report));
        drop(_guard);
        nodes.push(Node { id, runtime: Some(runtime), commands, events });
    }
    nodes
}

#[test]
fn acquire_purge_release_and_eviction_of_a_killed_peer_over_grpc() {
    let store = SharedMemoryStore::new();
    let mut nodes = start_cluster(&store);
    for node in &nodes {
        node.wait("online", |e| matches!(e, Event::Online { .. }));
    }

    // Everyone shares the Rmap oplock of one block.
    let rmap = OplockAddress::rmap(42, 0, 64);
    for node in &nodes {
        node.send(Command::Share(rmap));
    }
    for node in &nodes {
        node.wait("shared", |e| matches!(e, Event::Shared { oplock } if *oplock == rmap));
    }

    // Engine 0 acquires for a restrictive update: the others purge and drain first.
    nodes[0].send(Command::Acquire(rmap, UpdateKind::Restrictive));
    for node in &nodes[1..] {
        node.wait("purge", |e| {
            matches!(e, Event::Purge { oplock, drain_before: Some(_), blocking: true, .. } if *oplock == rmap)
        });
    }
    nodes[0].wait("acquired", |e| matches!(e, Event::Acquired { oplock, .. } if *oplock == rmap));
    assert_eq!(nodes[0].state(rmap), Some(OplockState::Acquired));
    for node in &nodes[1..] {
        assert_ne!(node.state(rmap), Some(OplockState::Sharing));
        assert_ne!(node.state(rmap), Some(OplockState::Acquired));
    }
    // Release: the others are woken and share again.
    nodes[0].send(Command::Release(rmap));
    for node in &nodes[1..] {
        node.wait("shared again", |e| matches!(e, Event::Shared { oplock } if *oplock == rmap));
    }

    // Engine 2 takes write authority over a mirror extent (non-volatile) and keeps it.
    let extent = OplockAddress::mirror_write(42, 0, 64);
    nodes[2].send(Command::Acquire(extent, UpdateKind::Restrictive));
    nodes[2].wait("acquired extent", |e| matches!(e, Event::Acquired { oplock, .. } if *oplock == extent));
    nodes[2].send(Command::Release(extent));
    assert_eq!(store.owner(extent), Some(2));

    // Kill engine 2. Engine 1 wants the extent: the share asks the recent owner, which is
    // silent, so engine 1 evicts it and becomes caretaker of the extent.
    nodes[2].kill();
    nodes[1].send(Command::Acquire(extent, UpdateKind::Restrictive));
    let caretaker = nodes[1].wait("caretaker", |e| matches!(e, Event::Caretaker { victim: 2, .. }));
    let Event::Caretaker { oplocks, .. } = caretaker else { unreachable!() };
    assert!(oplocks.iter().any(|o| o.oplock == extent && o.owned_by == Some(2)));
    nodes[1].wait("acquired extent", |e| matches!(e, Event::Acquired { oplock, .. } if *oplock == extent));
    assert_eq!(store.owner(extent), Some(1));
    let record = store.eviction_of(2).expect("engine 2 is on the elist");
    assert_eq!(record.caretaker, 1);
    assert!(record.done);
    assert!(!store.members().contains_key(&2));

    // Engine 0 acquires the Rmap oplock that engine 2 was sharing: no answer needed from it now.
    nodes[0].send(Command::Acquire(rmap, UpdateKind::Restrictive));
    nodes[0].wait("acquired again", |e| matches!(e, Event::Acquired { oplock, .. } if *oplock == rmap));
    nodes[0].send(Command::Release(rmap));

    for node in &mut nodes {
        node.kill();
    }
}

/// The receiving side delivers every sequence number once and in order across reconnects of
/// one session, and starts over for a new session (the sender restarted).
#[test]
fn datagrams_are_deduplicated_across_reconnects_and_reset_by_a_new_session() {
    use dve_coherency::transport::grpc::to_datagram;
    use dve_coherency::{Body, Message};
    use dve_proto::coherency::coherency_client::CoherencyClient;
    use dve_proto::coherency::{Frame, Hello, frame};
    use tokio_stream::StreamExt;

    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
    runtime.block_on(async {
        let mut receiver =
            GrpcTransport::bind(1, 1, "127.0.0.1:0".parse().expect("addr")).await.expect("bind");
        let uri = format!("http://{}", receiver.local_addr());
        let envelope = |round: u64| Envelope {
            from: 0,
            incarnation: 1,
            to: 1,
            message: Message { oplock: OplockAddress::rmap(1, 0, 64), round, body: Body::Release },
        };
        // One stream: hello, then the datagrams with these sequence numbers; wait for the acks.
        let stream = |session: u64, seqs: Vec<u64>| {
            let uri = uri.clone();
            async move {
                let mut client = CoherencyClient::connect(uri).await.expect("connect");
                let mut frames = vec![Frame { frame: Some(frame::Frame::Hello(Hello { from: 0, session })) }];
                for seq in &seqs {
                    frames.push(Frame {
                        frame: Some(frame::Frame::Datagram(to_datagram(&envelope(*seq), *seq))),
                    });
                }
                let mut acks =
                    client.exchange(tokio_stream::iter(frames)).await.expect("exchange").into_inner();
                for _ in 0..=seqs.len() {
                    acks.next().await.expect("ack").expect("ok");
                }
            }
        };
        stream(7, vec![1, 2, 2, 1, 3]).await;
        stream(7, vec![2, 3, 4]).await; // reconnect: resend of 2 and 3 is suppressed
        stream(8, vec![1]).await; // a new session starts over
        let mut rounds = Vec::new();
        for _ in 0..5 {
            let envelope =
                tokio::time::timeout(WAIT, receiver.recv()).await.expect("delivered").expect("open");
            rounds.push(envelope.message.round);
        }
        assert_eq!(rounds, vec![1, 2, 3, 4, 1]);
    });
}

/// The sending side of a link: when its stream breaks (here a proxy between the two engines
/// drops every TCP connection, several times while datagrams flow), it reconnects, resends
/// what was not acknowledged, and the receiver delivers every datagram exactly once, in order.
#[test]
fn a_broken_stream_reconnects_and_resends_without_loss_or_duplicates() {
    use dve_coherency::{Body, Message};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::broadcast;

    const N: u64 = 200;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    runtime.block_on(async {
        let mut receiver =
            GrpcTransport::bind(1, 1, "127.0.0.1:0".parse().expect("addr")).await.expect("bind");
        let target = receiver.local_addr();
        // A TCP proxy whose connections are all dropped on every `cut`.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy");
        let proxy = listener.local_addr().expect("proxy addr");
        let (cut, _) = broadcast::channel::<()>(16);
        let cuts = cut.clone();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                let mut cut_rx = cuts.subscribe();
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.recv() => {}
                    }
                });
            }
        });
        let mut sender = GrpcTransport::bind(0, 5, "127.0.0.1:0".parse().expect("addr")).await.expect("bind");
        sender.add_peer(1, format!("http://{proxy}"));
        let envelope = |round: u64| Envelope {
            from: 0,
            incarnation: 1,
            to: 1,
            message: Message { oplock: OplockAddress::rmap(1, 0, 64), round, body: Body::Release },
        };
        let mut rounds = Vec::new();
        for round in 1..=N {
            sender.send(envelope(round)).expect("queued");
            if round % 40 == 0 {
                // Let some datagrams reach the receiver and some acks come back, then cut.
                while rounds.len() < (round - 20) as usize {
                    let e =
                        tokio::time::timeout(WAIT, receiver.recv()).await.expect("delivered").expect("open");
                    rounds.push(e.message.round);
                }
                let before = connections.load(std::sync::atomic::Ordering::SeqCst);
                let _ = cut.send(());
                // The link notices and reconnects (through the proxy) before the next cut.
                tokio::time::timeout(WAIT, async {
                    while connections.load(std::sync::atomic::Ordering::SeqCst) == before {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
                .await
                .expect("reconnected");
            }
        }
        while rounds.len() < N as usize {
            let e = tokio::time::timeout(WAIT, receiver.recv()).await.expect("delivered").expect("open");
            rounds.push(e.message.round);
        }
        assert_eq!(rounds, (1..=N).collect::<Vec<_>>());
        // Nothing more: the resent datagrams the receiver already had are not delivered again.
        let extra = tokio::time::timeout(Duration::from_millis(300), receiver.recv()).await;
        assert!(extra.is_err(), "delivered twice: {extra:?}");
        assert!(
            connections.load(std::sync::atomic::Ordering::SeqCst) >= 6,
            "one connection, then one more after each of the 5 cuts"
        );
        sender.shutdown();
    });
}
