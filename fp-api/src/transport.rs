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
}

impl<T> Ring<T> {
    fn new(capacity: usize) -> Ring<T> {
        Ring {
            queue: ArrayQueue::new(capacity.max(1)),
            consumer: AtomicWaker::new(),
            producer: AtomicWaker::new(),
            producer_waiting: AtomicBool::new(false),
        }
    }

    fn pop_and_wake_producer(&self) -> Option<T> {
        let item = self.queue.pop()?;
        if self.producer_waiting.load(Ordering::Relaxed) {
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
                ring.consumer.wake();
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
            if let Some(message) = ring.queue.pop() {
                return Poll::Ready(Some(message));
            }
            ring.consumer.register(cx.waker());
            // A message posted between the pop and the registration would not have woken us.
            if let Some(message) = ring.queue.pop() {
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
                    ring.producer_waiting.store(true, Ordering::Relaxed);
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
}
