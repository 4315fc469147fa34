//! The in-process FP API channel: two bounded lock-free rings, one per direction. The worker's
//! side never blocks (it polls, and a full ring is its problem to count); the control path's
//! side is async, woken when the worker posts a message or frees room.

use core::future::poll_fn;
use core::task::Poll;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

use crate::error::Error;
use crate::message::{ToCp, ToFp};

/// One direction: the ring and the wakers of its two ends.
#[derive(Debug)]
struct Ring<T> {
    queue: ArrayQueue<T>,
    /// The async consumer waiting for a message.
    consumer: AtomicWaker,
    /// The async producer waiting for room.
    producer: AtomicWaker,
    /// Set when the producer waits, so the poll-mode consumer wakes it only then (a relaxed
    /// load per pop, instead of an atomic swap).
    producer_waiting: AtomicBool,
    /// Set while the async consumer may be parked on `consumer`, so that the producer wakes it
    /// only then: a plain load per push, instead of the two read-modify-writes of
    /// `AtomicWaker::wake` when nobody is registered (the poll-mode consumer never is). Only
    /// the consumer writes it. Why no wakeup is lost: see [`Ring::wake_parked_consumer`].
    consumer_waiting: AtomicBool,
}

impl<T> Ring<T> {
    fn new(capacity: usize) -> Ring<T> {
        Ring {
            queue: ArrayQueue::new(capacity.max(1)),
            consumer: AtomicWaker::new(),
            producer: AtomicWaker::new(),
            producer_waiting: AtomicBool::new(false),
            consumer_waiting: AtomicBool::new(false),
        }
    }

    /// After a push: wakes the async consumer if it may be parked.
    ///
    /// No wakeup is lost. A consumer parks only after registering its waker, setting
    /// `consumer_waiting` (`SeqCst`) and then finding the ring empty with `pop`. In
    /// crossbeam-queue 0.3 (`ArrayQueue`, checked at 0.3.14) `push` advances the tail with a
    /// `SeqCst` compare-exchange, and `pop` reports empty only after a `SeqCst` fence and a load
    /// of the tail. In the single total order of `SeqCst` operations, either:
    /// - the push's compare-exchange comes before the consumer's fence: the consumer's tail load
    ///   sees it, its `pop` does not report empty (it waits for the slot and takes a message),
    ///   and it does not park; or
    /// - the fence comes first: then the consumer's store of `true`, before its fence, is seen
    ///   by our `SeqCst` load below, which comes after our compare-exchange (or a later store is
    ///   seen: a later poll's clearing, which that poll follows with its own `pop`, to which
    ///   the same two cases apply).
    ///
    /// Reading the consumer's `true` also orders its registration before our `wake`, so the
    /// wake finds that waker. The consumer clears the flag only in a poll that is not going to
    /// park. Test: `async_consumer_parked_at_every_message_is_always_woken`.
    fn wake_parked_consumer(&self) {
        if self.consumer_waiting.load(Ordering::SeqCst) {
            self.consumer.wake();
        }
    }

    fn pop_and_wake_producer(&self) -> Option<T> {
        let item = self.queue.pop()?;
        // SeqCst, like the producer's store: with the pop's SeqCst compare-exchange on the
        // head and the fence a full push takes before it reads the head, either the producer's
        // retry sees this slot free or this load sees its flag. Relaxed on both sides would
        // allow both to miss (the store-buffering pattern), and the producer would park for
        // good. On x86 a SeqCst load is a plain load.
        if self.producer_waiting.load(Ordering::SeqCst) {
            self.producer_waiting.store(false, Ordering::Relaxed);
            self.producer.wake();
        }
        Some(item)
    }
}

#[derive(Debug)]
struct Shared {
    to_cp: Ring<ToCp>,
    to_fp: Ring<ToFp>,
    fp_gone: AtomicBool,
    cp_gone: AtomicBool,
}

/// Make a channel whose rings each hold `capacity` messages.
pub fn fp_channel(capacity: usize) -> (FpEndpoint, CpEndpoint) {
    let shared = Arc::new(Shared {
        to_cp: Ring::new(capacity),
        to_fp: Ring::new(capacity),
        fp_gone: AtomicBool::new(false),
        cp_gone: AtomicBool::new(false),
    });
    (FpEndpoint { shared: shared.clone() }, CpEndpoint { shared })
}

/// The worker's end: non-blocking send and receive.
#[derive(Debug)]
pub struct FpEndpoint {
    shared: Arc<Shared>,
}

impl FpEndpoint {
    /// Post a message to the control path. A full ring hands the message back: the worker
    /// keeps it and retries on a later poll, it never waits.
    #[allow(clippy::result_large_err, reason = "the message comes back by value: no allocation")]
    pub fn try_send(&self, message: ToCp) -> Result<(), (Error, ToCp)> {
        if self.shared.cp_gone.load(Ordering::Acquire) {
            return Err((Error::Disconnected, message));
        }
        let ring = &self.shared.to_cp;
        match ring.queue.push(message) {
            Ok(()) => {
                ring.wake_parked_consumer();
                Ok(())
            }
            Err(message) => Err((Error::RingFull("fast path to control path"), message)),
        }
    }

    /// The next message from the control path, if any.
    pub fn try_recv(&self) -> Option<ToFp> {
        self.shared.to_fp.pop_and_wake_producer()
    }

    /// Whether the control path has gone (its end was dropped).
    pub fn is_disconnected(&self) -> bool {
        self.shared.cp_gone.load(Ordering::Acquire)
    }
}

impl Drop for FpEndpoint {
    fn drop(&mut self) {
        self.shared.fp_gone.store(true, Ordering::Release);
        self.shared.to_cp.consumer.wake();
        self.shared.to_fp.producer.wake();
    }
}

/// The control path's end: async send and receive, plus non-blocking forms.
#[derive(Debug)]
pub struct CpEndpoint {
    shared: Arc<Shared>,
}

impl CpEndpoint {
    /// The next message from the worker; `None` once the worker is gone and the ring empty.
    pub async fn recv(&self) -> Option<ToCp> {
        let ring = &self.shared.to_cp;
        poll_fn(|cx| {
            // Not parked while polling: pushes need not wake. Read first, so that a consumer
            // that finds messages every time does not write the line the producer reads.
            if ring.consumer_waiting.load(Ordering::Relaxed) {
                ring.consumer_waiting.store(false, Ordering::Relaxed);
            }
            if let Some(message) = ring.queue.pop() {
                return Poll::Ready(Some(message));
            }
            ring.consumer.register(cx.waker());
            // The order matters: register, then announce, then look again (see
            // `Ring::wake_parked_consumer`). A message posted before the announcement would
            // not have woken us, and this pop finds it.
            ring.consumer_waiting.store(true, Ordering::SeqCst);
            if let Some(message) = ring.queue.pop() {
                ring.consumer_waiting.store(false, Ordering::Relaxed);
                return Poll::Ready(Some(message));
            }
            if self.shared.fp_gone.load(Ordering::Acquire) {
                return Poll::Ready(ring.queue.pop());
            }
            Poll::Pending
        })
        .await
    }

    /// The next message from the worker, if one is there.
    pub fn try_recv(&self) -> Option<ToCp> {
        self.shared.to_cp.queue.pop()
    }

    /// Send to the worker, waiting for room if the ring is full.
    pub async fn send(&self, message: ToFp) -> Result<(), Error> {
        let ring = &self.shared.to_fp;
        let mut pending = Some(message);
        poll_fn(|cx| {
            if self.shared.fp_gone.load(Ordering::Acquire) {
                return Poll::Ready(Err(Error::Disconnected));
            }
            let Some(message) = pending.take() else { return Poll::Ready(Ok(())) };
            match ring.queue.push(message) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(message) => {
                    ring.producer.register(cx.waker());
                    ring.producer_waiting.store(true, Ordering::SeqCst);
                    // Room freed between the push and the registration would not wake us.
                    match ring.queue.push(message) {
                        Ok(()) => Poll::Ready(Ok(())),
                        Err(message) => {
                            pending = Some(message);
                            Poll::Pending
                        }
                    }
                }
            }
        })
        .await
    }

    /// Send to the worker if there is room now.
    #[allow(clippy::result_large_err, reason = "the message comes back by value: no allocation")]
    pub fn try_send(&self, message: ToFp) -> Result<(), (Error, ToFp)> {
        if self.shared.fp_gone.load(Ordering::Acquire) {
            return Err((Error::Disconnected, message));
        }
        self.shared.to_fp.queue.push(message).map_err(|m| (Error::RingFull("control path to fast path"), m))
    }

    /// Whether the worker has gone.
    pub fn is_disconnected(&self) -> bool {
        self.shared.fp_gone.load(Ordering::Acquire)
    }
}

impl Drop for CpEndpoint {
    fn drop(&mut self) {
        self.shared.cp_gone.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RequestId;

    fn query(n: u64) -> ToFp {
        ToFp::QueryStatistics { req: RequestId(n) }
    }

    fn done(n: u64) -> ToCp {
        ToCp::Done { req: RequestId(n), result: Ok(()) }
    }

    #[test]
    fn full_rings_hand_the_message_back() {
        let (fp, cp) = fp_channel(2);
        assert!(fp.try_send(done(1)).is_ok());
        assert!(fp.try_send(done(2)).is_ok());
        let (err, back) = fp.try_send(done(3)).unwrap_err();
        assert_eq!(err, Error::RingFull("fast path to control path"));
        assert_eq!(back, done(3));
        assert_eq!(cp.try_recv(), Some(done(1)));
        assert!(cp.try_send(query(1)).is_ok());
        assert_eq!(fp.try_recv(), Some(query(1)));
        assert_eq!(fp.try_recv(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_side_waits_for_messages_and_room_in_order() {
        let (fp, cp) = fp_channel(4);
        let worker = std::thread::spawn(move || {
            // A poll-mode worker: echo every query back as a completion, in order.
            let mut seen = 0;
            while seen < 1000 {
                if let Some(ToFp::QueryStatistics { req }) = fp.try_recv() {
                    let mut reply = done(req.0);
                    while let Err((_, back)) = fp.try_send(reply) {
                        reply = back;
                        std::thread::yield_now();
                    }
                    seen += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        });
        let sender = async {
            for n in 0..1000 {
                cp.send(query(n)).await.unwrap();
            }
        };
        let receiver = async {
            for n in 0..1000 {
                assert_eq!(cp.recv().await, Some(done(n)));
            }
        };
        tokio::join!(sender, receiver);
        worker.join().unwrap();
        assert_eq!(cp.recv().await, None, "the worker is gone and the ring is empty");
        assert_eq!(cp.send(query(0)).await, Err(Error::Disconnected));
    }

    /// The race a lost wakeup needs: the worker posts each message only once the control path
    /// has taken the previous one, so the control path is usually about to park, or parking,
    /// when the next message arrives. A lost wakeup parks it for good, and the watchdog here
    /// (on the test thread, independent of any runtime's timers) sees it stop making progress.
    #[test]
    fn async_consumer_parked_at_every_message_is_always_woken() {
        use std::sync::atomic::AtomicU64;
        use std::time::{Duration, Instant};

        const MESSAGES: u64 = 20_000;
        let (fp, cp) = fp_channel(4);
        let taken = Arc::new(AtomicU64::new(0));
        let worker_taken = taken.clone();
        std::thread::spawn(move || {
            for n in 0..MESSAGES {
                while worker_taken.load(Ordering::Acquire) < n {
                    std::thread::yield_now();
                }
                assert!(fp.try_send(done(n)).is_ok(), "at most one message is in flight");
            }
        });
        let control_path_taken = taken.clone();
        let control_path = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            runtime.block_on(async {
                for n in 0..MESSAGES {
                    assert_eq!(cp.recv().await, Some(done(n)));
                    control_path_taken.store(n + 1, Ordering::Release);
                }
            });
        });
        let (mut seen, mut since) = (0, Instant::now());
        while !control_path.is_finished() {
            let now_taken = taken.load(Ordering::Acquire);
            if now_taken != seen {
                (seen, since) = (now_taken, Instant::now());
            }
            // On failure both threads are left behind, parked or spinning; the test fails.
            assert!(since.elapsed() < Duration::from_secs(10), "message {seen} never woke the control path");
            std::thread::sleep(Duration::from_millis(1));
        }
        control_path.join().expect("the control path took every message in order");
    }
}
