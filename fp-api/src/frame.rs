//! Frame buffers: fixed-size pooled storage shared by reference count. A received frame, or
//! any slice of it (a data payload), can go to several places (every mirror side, the
//! control path) without a copy, and the storage returns to its pool when the last reference
//! drops, so a worker in steady state does not allocate per frame.

use core::fmt;
use core::ops::Range;
use std::sync::{Arc, Weak};

use crossbeam_queue::ArrayQueue;

/// Bytes of storage per frame: an FCoE frame with a 2112-byte FC payload, its headers,
/// CRC, EOF and an 802.1Q tag fits.
pub const FRAME_CAPACITY: usize = 2240;

struct Slot {
    bytes: Box<[u8]>,
    home: Weak<ArrayQueue<Arc<Slot>>>,
}

/// A pool of frame storage. Cloning the pool shares it.
#[derive(Clone)]
pub struct FramePool {
    free: Arc<ArrayQueue<Arc<Slot>>>,
}

impl fmt::Debug for FramePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramePool")
            .field("free", &self.free.len())
            .field("capacity", &self.free.capacity())
            .finish()
    }
}

impl FramePool {
    /// A pool that keeps up to `capacity` free buffers, `prefill` of them allocated now.
    pub fn new(capacity: usize, prefill: usize) -> FramePool {
        let pool = FramePool { free: Arc::new(ArrayQueue::new(capacity.max(1))) };
        for _ in 0..prefill.min(capacity) {
            let _ = pool.free.push(pool.fresh_slot());
        }
        pool
    }

    fn fresh_slot(&self) -> Arc<Slot> {
        Arc::new(Slot { bytes: vec![0; FRAME_CAPACITY].into_boxed_slice(), home: Arc::downgrade(&self.free) })
    }

    /// A writable buffer of `len` bytes (at most [`FRAME_CAPACITY`]), zeroed only if fresh:
    /// callers write every byte they emit. Falls back to allocating when the pool is empty.
    pub fn alloc(&self, len: usize) -> Option<FrameMut> {
        if len > FRAME_CAPACITY {
            return None;
        }
        let slot = self.free.pop().unwrap_or_else(|| self.fresh_slot());
        Some(FrameMut { slot: Some(slot), len })
    }

    /// Free buffers in the pool now.
    pub fn available(&self) -> usize {
        self.free.len()
    }
}

/// Return a slot to its pool if this is the last reference; otherwise just drop the reference.
fn release(mut slot: Arc<Slot>) {
    if Arc::get_mut(&mut slot).is_some()
        && let Some(home) = slot.home.upgrade()
    {
        // A full pool lets the storage go back to the allocator.
        let _ = home.push(slot);
    }
}

/// A frame being built: exclusive, writable.
pub struct FrameMut {
    slot: Option<Arc<Slot>>,
    len: usize,
}

impl FrameMut {
    /// A standalone buffer holding `bytes` (tests, control-path frames), not from a pool.
    pub fn from_slice(bytes: &[u8]) -> Option<FrameMut> {
        if bytes.len() > FRAME_CAPACITY {
            return None;
        }
        let mut storage = vec![0; FRAME_CAPACITY].into_boxed_slice();
        storage[..bytes.len()].copy_from_slice(bytes);
        Some(FrameMut { slot: Some(Arc::new(Slot { bytes: storage, home: Weak::new() })), len: bytes.len() })
    }

    /// Change the length (at most [`FRAME_CAPACITY`]); returns false if too long.
    pub fn set_len(&mut self, len: usize) -> bool {
        if len > FRAME_CAPACITY {
            return false;
        }
        self.len = len;
        true
    }

    /// The frame's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        match self.slot.as_mut().and_then(Arc::get_mut) {
            Some(slot) => &mut slot.bytes[..len],
            // A FrameMut is only ever built around a slot nobody else references.
            None => &mut [],
        }
    }

    /// [`FrameMut::as_mut_slice`], inlined where it is called: the worker writes every frame
    /// it builds through it, and the call cost about 6 instructions a frame. Separate, so
    /// code that calls `as_mut_slice` (the benchmark's forwarder reference) compiles as it did.
    /// Always inlined: `#[inline]` alone left it a call in the mirror's data path.
    #[inline(always)]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        match self.slot.as_mut().and_then(Arc::get_mut) {
            Some(slot) => &mut slot.bytes[..len],
            // A FrameMut is only ever built around a slot nobody else references.
            None => &mut [],
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.slot.as_ref().map_or(&[][..], |s| &s.bytes[..self.len])
    }

    /// Make it shareable.
    pub fn freeze(mut self) -> Frame {
        let slot = self.slot.take();
        Frame { slot, start: 0, end: self.len as u32 }
    }
}

impl Drop for FrameMut {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            release(slot);
        }
    }
}

impl fmt::Debug for FrameMut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FrameMut({} bytes)", self.len)
    }
}

/// A shared, read-only frame or slice of one. Cloning and slicing never copy bytes.
pub struct Frame {
    slot: Option<Arc<Slot>>,
    start: u32,
    end: u32,
}

impl Frame {
    /// An empty frame.
    pub const fn empty() -> Frame {
        Frame { slot: None, start: 0, end: 0 }
    }

    /// A frame holding a copy of `bytes` (tests, the simulator's links).
    pub fn copy_from(bytes: &[u8]) -> Option<Frame> {
        FrameMut::from_slice(bytes).map(FrameMut::freeze)
    }

    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        self.slot.as_ref().map_or(&[][..], |s| &s.bytes[self.start as usize..self.end as usize])
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// A sub-range of this frame sharing its storage; `None` if out of bounds.
    pub fn slice(&self, range: Range<usize>) -> Option<Frame> {
        if range.start > range.end || range.end > self.len() {
            return None;
        }
        Some(Frame {
            slot: self.slot.clone(),
            start: self.start + range.start as u32,
            end: self.start + range.end as u32,
        })
    }

    /// This frame narrowed to a sub-range, as [`Frame::slice`] gives it, for a caller done
    /// with the whole: the reference moves with it, so the storage's count is neither raised
    /// for the slice nor lowered again when the whole drops. `None` (the frame dropped) if
    /// out of bounds.
    #[inline]
    pub fn into_slice(mut self, range: Range<usize>) -> Option<Frame> {
        if range.start > range.end || range.end > self.len() {
            return None;
        }
        self.end = self.start + range.end as u32;
        self.start += range.start as u32;
        Some(self)
    }

    /// The bytes, writable, if nothing else references the frame's storage and the frame
    /// starts at the storage's start (a frame fresh from a port, not a slice): a frame
    /// forwarded with its headers changed is then rewritten where it is. One question to the
    /// reference count, where [`Frame::try_into_mut`], [`FrameMut::as_mut_slice`] and
    /// [`FrameMut::freeze`] ask twice and move the frame twice. (Always inlined: a call cost the
    /// fast path about 35 a frame.)
    #[inline(always)]
    pub fn exclusive_bytes(&mut self) -> Option<&mut [u8]> {
        if self.start != 0 {
            return None;
        }
        let end = self.end as usize;
        self.slot.as_mut().and_then(Arc::get_mut).map(|slot| &mut slot.bytes[..end])
    }

    /// The frame's whole storage, writable, past the frame's end too, under the same
    /// conditions as [`Frame::exclusive_bytes`]: a frame sent on to several places can carry
    /// the other copies' headers in the room after it (taken with [`Frame::storage_slice`])
    /// rather than a buffer each.
    #[inline(always)]
    pub fn exclusive_storage(&mut self) -> Option<&mut [u8]> {
        if self.start != 0 {
            return None;
        }
        self.slot.as_mut().and_then(Arc::get_mut).map(|slot| &mut slot.bytes[..])
    }

    /// Bytes `range` of this frame's storage, counted from the frame's start, sharing it: as
    /// [`Frame::slice`], but the range may reach past the frame's end into the storage's room
    /// after it (what [`Frame::exclusive_storage`] wrote there). `None` past the storage.
    #[inline]
    pub fn storage_slice(&self, range: Range<usize>) -> Option<Frame> {
        let slot = self.slot.as_ref()?;
        let start = self.start as usize + range.start;
        let end = self.start as usize + range.end;
        if range.start > range.end || end > slot.bytes.len() {
            return None;
        }
        Some(Frame { slot: Some(slot.clone()), start: start as u32, end: end as u32 })
    }

    /// The frame as a writable buffer, if nothing else references its storage and it starts
    /// at the storage's start (a frame fresh from a port): headers can then be rewritten in
    /// place. Otherwise the frame comes back unchanged.
    pub fn try_into_mut(mut self) -> Result<FrameMut, Frame> {
        let unique = self.start == 0 && self.slot.as_mut().is_some_and(|s| Arc::get_mut(s).is_some());
        if !unique {
            return Err(self);
        }
        let len = self.end as usize;
        Ok(FrameMut { slot: self.slot.take(), len })
    }

    /// Whether two frames share storage (for tests of zero-copy paths).
    pub fn shares_storage_with(&self, other: &Frame) -> bool {
        match (&self.slot, &other.slot) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Clone for Frame {
    fn clone(&self) -> Frame {
        Frame { slot: self.slot.clone(), start: self.start, end: self.end }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            release(slot);
        }
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Frame {}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame({} bytes)", self.len())
    }
}

/// A frame to transmit as up to three pieces: headers built for this destination, a payload
/// shared with other frames (the same write data to every mirror side), and a short trailer
/// (FCoE's CRC and EOF). Ports gather the pieces; nothing is copied before the wire.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TxFrame {
    /// Headers (or the whole frame).
    pub head: Frame,
    /// Shared payload, if any.
    pub body: Option<Frame>,
    /// Trailer bytes.
    pub tail: Trailer,
}

/// Up to 12 trailer bytes carried inline: fill bytes (up to 3), the FC CRC (4) and the
/// FCoE EOF with its reserved bytes (4).
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct Trailer {
    bytes: [u8; Trailer::MAX],
    len: u8,
}

impl Trailer {
    /// The longest trailer.
    pub const MAX: usize = 12;

    /// No trailer.
    pub const NONE: Trailer = Trailer { bytes: [0; Trailer::MAX], len: 0 };

    /// A trailer of up to [`Trailer::MAX`] bytes; `None` if longer.
    pub fn new(bytes: &[u8]) -> Option<Trailer> {
        if bytes.len() > Trailer::MAX {
            return None;
        }
        let mut t = Trailer { bytes: [0; Trailer::MAX], len: bytes.len() as u8 };
        t.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(t)
    }

    /// The trailer that follows an FC frame's payload on an FCoE link: `fill` zero bytes (at
    /// most 3), the FC CRC (least significant byte first, as FCoE sends it), the EOF code and
    /// three reserved zero bytes; `None` if `fill` is over 3. The same trailer as
    /// [`Trailer::new`] of those bytes, built as one little-endian number shifted past the
    /// fill rather than copied through a slice of variable length: the fast path makes one for
    /// every data frame it sends in pieces.
    #[inline]
    pub fn fcoe(fill: usize, crc: u32, eof: u8) -> Option<Trailer> {
        if fill > 3 {
            return None;
        }
        let word = (u128::from(crc) | u128::from(eof) << 32) << (8 * fill);
        let bytes = word.to_le_bytes();
        Some(Trailer { bytes: *bytes.first_chunk()?, len: fill as u8 + 8 })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// How many bytes.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl TxFrame {
    /// A frame that is a single piece.
    pub fn whole(frame: Frame) -> TxFrame {
        TxFrame { head: frame, body: None, tail: Trailer::NONE }
    }

    /// Total length on the wire.
    #[inline]
    pub fn len(&self) -> usize {
        self.head.len() + self.body.as_ref().map_or(0, Frame::len) + self.tail.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pieces in order.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> + '_ {
        [Some(self.head.as_slice()), self.body.as_ref().map(Frame::as_slice), Some(self.tail.as_slice())]
            .into_iter()
            .flatten()
    }

    /// The frame as one buffer from `pool`, its pieces copied in order (a receiving port's
    /// gather; a NIC's DMA on hardware). `None` if the pool cannot lend a buffer that long.
    pub fn gathered_in(&self, pool: &FramePool) -> Option<Frame> {
        let mut out = pool.alloc(self.len())?;
        let buf = out.as_mut_slice();
        let mut at = 0;
        for piece in self.pieces() {
            buf[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        }
        Some(out.freeze())
    }

    /// Append the bytes as they go on the wire (what a link or a capture sees).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for piece in self.pieces() {
            out.extend_from_slice(piece);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_returns_to_the_pool_when_the_last_reference_drops() {
        let pool = FramePool::new(4, 2);
        assert_eq!(pool.available(), 2);
        let mut f = pool.alloc(100).unwrap();
        f.as_mut_slice()[..3].copy_from_slice(b"abc");
        let frame = f.freeze();
        let payload = frame.slice(1..3).unwrap();
        assert_eq!(payload.as_slice(), b"bc");
        assert!(payload.shares_storage_with(&frame));
        assert_eq!(frame.clone().into_slice(1..3).map(|f| f.as_slice().to_vec()), Some(b"bc".to_vec()));
        assert!(frame.clone().into_slice(2..101).is_none());
        assert_eq!(frame.clone().into_slice(0..3).unwrap().into_slice(1..2).unwrap().as_slice(), b"b");
        assert_eq!(pool.available(), 1);
        drop(frame);
        assert_eq!(pool.available(), 1, "the payload slice still holds the storage");
        drop(payload);
        assert_eq!(pool.available(), 2);
        let unique = pool.alloc(10).unwrap().freeze();
        let shared = unique.clone();
        let back = unique.try_into_mut().unwrap_err();
        drop(shared);
        let mut back = back;
        let shared = back.clone();
        assert!(back.exclusive_bytes().is_none(), "shared");
        assert!(back.slice(1..3).unwrap().exclusive_bytes().is_none(), "a slice is not the whole");
        drop(shared);
        back.exclusive_bytes().unwrap()[0] = 7;
        assert_eq!(back.as_slice()[0], 7);
        let mut writable = back.try_into_mut().unwrap();
        writable.as_mut_slice()[0] = 1;
        assert_eq!(writable.freeze().as_slice()[0], 1);
        assert!(pool.alloc(FRAME_CAPACITY + 1).is_none());
    }

    #[test]
    fn the_room_after_a_frame_is_written_only_while_the_frame_is_alone() {
        let mut frame = Frame::copy_from(b"frame").unwrap();
        let storage = frame.exclusive_storage().unwrap();
        assert_eq!(storage.len(), FRAME_CAPACITY);
        storage[5..9].copy_from_slice(b"head");
        assert_eq!(frame.as_slice(), b"frame", "the frame keeps its length");
        let head = frame.storage_slice(5..9).unwrap();
        assert_eq!(head.as_slice(), b"head");
        assert!(head.shares_storage_with(&frame));
        assert!(frame.exclusive_storage().is_none(), "shared now");
        assert!(frame.storage_slice(0..FRAME_CAPACITY + 1).is_none());
        assert!(head.slice(1..3).unwrap().exclusive_storage().is_none(), "a slice is not the whole");
        drop(head);
        assert!(frame.exclusive_storage().is_some());
        assert!(Frame::empty().storage_slice(0..1).is_none());
    }

    #[test]
    fn tx_frames_gather_their_pieces() {
        let head = Frame::copy_from(b"head").unwrap();
        let body = Frame::copy_from(b"-body-").unwrap();
        let tx = TxFrame { head, body: Some(body.clone()), tail: Trailer::new(b"crc!").unwrap() };
        let mut wire = Vec::new();
        tx.write_to(&mut wire);
        assert_eq!(wire, b"head-body-crc!");
        assert_eq!(tx.len(), wire.len());
        assert!(tx.body.as_ref().unwrap().shares_storage_with(&body));
        assert!(Frame::copy_from(b"x").unwrap().slice(0..2).is_none());
        let pool = FramePool::new(2, 0);
        assert_eq!(tx.gathered_in(&pool).unwrap().as_slice(), &wire[..]);
    }

    proptest::proptest! {
        /// The FCoE trailer built as a number is the one built from its bytes, for every
        /// fill, CRC and EOF; a fill over 3 makes none.
        #[test]
        fn fcoe_trailers_match_their_bytes(fill in 0usize..6, crc: u32, eof: u8) {
            let mut bytes = vec![0u8; fill];
            bytes.extend_from_slice(&crc.to_le_bytes());
            bytes.extend_from_slice(&[eof, 0, 0, 0]);
            let expected = if fill <= 3 { Trailer::new(&bytes) } else { None };
            let built = Trailer::fcoe(fill, crc, eof);
            proptest::prop_assert_eq!(built, expected);
            if let Some(t) = built {
                proptest::prop_assert_eq!(t.as_slice(), &bytes[..]);
                proptest::prop_assert_eq!(t.len(), bytes.len());
            }
        }
    }
}
