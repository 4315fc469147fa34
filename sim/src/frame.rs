//! Frames as the simulator's hosts and disks build them and its links carry them: each one a
//! fast-path pool buffer ([`FrameMut`]), so a frame a node sends is handed to an engine's
//! worker as it is, and a frame an engine transmits whole goes to a node as it is; neither
//! end of a link copies it. Only a frame an engine sends in pieces (a header of its own
//! before write data shared with other frames) is gathered into one buffer.
//!
//! Buffers come from a per-thread stack of spares, most recently freed first: a frame is
//! built, carried and dropped millions of times a run, and a buffer just freed is still in the
//! cache. A frame dropped anywhere returns its storage to the pool it came from (its home);
//! the stack takes back, at each allocation, what returned to the simulator's own pool.

use std::ops::{Deref, DerefMut};

use dve_fp_api::frame::{FRAME_CAPACITY, Frame, FrameMut, FramePool, TxFrame};

/// The longest frame a [`WireFrame`] holds: any FCoE frame (2112 bytes of FC payload with
/// every header, the CRC, EOF and an 802.1Q tag) fits.
pub const WIRE_FRAME_CAPACITY: usize = FRAME_CAPACITY;

/// Spare buffers kept on the stack at most; more go back to their pools.
const SPARE_FRAMES: usize = 64;
/// Buffers the simulator's own pool keeps while they wait to be taken onto the stack.
const POOL_CAPACITY: usize = 4096;

thread_local! {
    /// Buffers free for the next frames, most recently freed last.
    static SPARES: std::cell::RefCell<Vec<FrameMut>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The home of buffers the simulator allocates: a frame dropped by a worker, a host or a
    /// disk returns its storage here.
    static POOL: FramePool = FramePool::new(POOL_CAPACITY, 0);
}

/// One frame on a simulated wire: exclusive, writable, and usable as a byte slice.
pub struct WireFrame(FrameMut);

impl WireFrame {
    /// A buffer of `len` bytes for a frame that is then written whole (`None` if longer
    /// than [`WIRE_FRAME_CAPACITY`]). A reused buffer keeps the bytes of the frame it held:
    /// the frame emitters of `dve_wire` write every byte of a frame, whatever the buffer
    /// held (the fast path builds its frames in reused buffers the same way), so clearing it
    /// first would only write it twice.
    pub fn to_overwrite(len: usize) -> Option<WireFrame> {
        if len > WIRE_FRAME_CAPACITY {
            return None;
        }
        let spare = SPARES.with_borrow_mut(|spares| {
            // What was freed since the last call, oldest first, so the newest is on top.
            POOL.with(|pool| {
                while pool.available() > 0 {
                    match pool.alloc(0) {
                        Some(buffer) if spares.len() < SPARE_FRAMES => spares.push(buffer),
                        // Past the bound the storage goes back to the pool (or is freed).
                        _ => break,
                    }
                }
            });
            spares.pop()
        });
        let mut buffer = match spare {
            Some(buffer) => buffer,
            None => POOL.with(|pool| pool.alloc(len))?,
        };
        buffer.set_len(len).then_some(WireFrame(buffer))
    }

    /// A frame holding a copy of `bytes` (`None` if too long).
    pub fn copy_from(bytes: &[u8]) -> Option<WireFrame> {
        let mut frame = WireFrame::to_overwrite(bytes.len())?;
        frame.copy_from_slice(bytes);
        Some(frame)
    }

    /// An engine's transmitted frame on the wire: the buffer itself when the frame is one
    /// piece nothing else references, else its pieces gathered into a spare buffer (after
    /// which the header's buffer, if nothing else references it, becomes a spare: it is
    /// warm). `None` if too long.
    pub fn from_transmitted(tx: TxFrame) -> Option<WireFrame> {
        let TxFrame { head, body, tail } = tx;
        if body.is_none() && tail.as_slice().is_empty() {
            match head.try_into_mut() {
                Ok(buffer) => return Some(WireFrame(buffer)),
                Err(head) => return WireFrame::copy_from(head.as_slice()),
            }
        }
        let body_len = body.as_ref().map_or(0, Frame::len);
        let mut frame = WireFrame::to_overwrite(head.len() + body_len + tail.as_slice().len())?;
        let (head_bytes, rest) = <[u8]>::split_at_mut(&mut frame, head.len());
        head_bytes.copy_from_slice(head.as_slice());
        let (body_bytes, tail_bytes) = rest.split_at_mut(body_len);
        if let Some(body) = &body {
            body_bytes.copy_from_slice(body.as_slice());
        }
        tail_bytes.copy_from_slice(tail.as_slice());
        if let Ok(buffer) = head.try_into_mut() {
            WireFrame(buffer).recycle();
        }
        Some(frame)
    }

    /// Keeps the buffer as a spare for the next frame built on this thread (its storage still
    /// belongs to its pool, which gets it back when that frame drops).
    pub fn recycle(self) {
        SPARES.with_borrow_mut(|spares| {
            if spares.len() < SPARE_FRAMES {
                spares.push(self.0);
            }
        });
    }

    /// Shortens the frame to `len` bytes (a longer `len` changes nothing).
    pub fn truncate(&mut self, len: usize) {
        if len < self.0.len() {
            self.0.set_len(len);
        }
    }

    /// The frame as the fast path takes it.
    pub fn into_frame(self) -> Frame {
        self.0.freeze()
    }
}

impl Deref for WireFrame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl DerefMut for WireFrame {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.0.as_mut_slice()
    }
}

impl AsRef<[u8]> for WireFrame {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl PartialEq for WireFrame {
    fn eq(&self, other: &WireFrame) -> bool {
        self[..] == other[..]
    }
}

impl Eq for WireFrame {}

impl std::fmt::Debug for WireFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WireFrame({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use dve_fp_api::frame::Trailer;

    use super::*;

    #[test]
    fn transmitted_frames_reach_the_wire_whole() {
        let whole = Frame::copy_from(b"whole frame").unwrap();
        let shared = whole.clone();
        // Referenced elsewhere: copied.
        let wire = WireFrame::from_transmitted(TxFrame::whole(whole)).unwrap();
        assert_eq!(&wire[..], b"whole frame");
        // Unique: handed over as it is.
        let wire = WireFrame::from_transmitted(TxFrame::whole(shared)).unwrap();
        assert_eq!(&wire[..], b"whole frame");
        let tx = TxFrame {
            head: Frame::copy_from(b"head").unwrap(),
            body: Some(Frame::copy_from(b"-body-").unwrap()),
            tail: Trailer::new(b"crc!").unwrap(),
        };
        let wire = WireFrame::from_transmitted(tx).unwrap();
        assert_eq!(&wire[..], b"head-body-crc!");
        assert!(WireFrame::to_overwrite(WIRE_FRAME_CAPACITY + 1).is_none());
    }

    #[test]
    fn buffers_are_reused_most_recent_first() {
        let mut a = WireFrame::copy_from(b"first").unwrap();
        a.truncate(3);
        assert_eq!(&a[..], b"fir");
        let b = WireFrame::copy_from(b"second").unwrap();
        drop(a);
        drop(b);
        // Both went back to the pool, the second last: it comes out first.
        let c = WireFrame::to_overwrite(6).unwrap();
        assert_eq!(&c[..], b"second");
        let d = WireFrame::to_overwrite(3).unwrap();
        assert_eq!(&d[..], b"fir");
    }
}
