//! The [`WireEmit`] trait: how a payload-level representation (an ELS, an FCP IU, a CT
//! message, SCSI data) says how long it is and writes itself into a caller's buffer.

use crate::error::Result;

/// A representation that can be written into a caller-provided buffer without allocating.
pub trait WireEmit {
    /// The number of bytes [`WireEmit::emit`] writes.
    fn buffer_len(&self) -> usize;

    /// Writes exactly [`WireEmit::buffer_len`] bytes at the start of `buf` and returns that
    /// count, or fails with [`crate::Error::BufferTooSmall`] without a partial guarantee.
    fn emit(&self, buf: &mut [u8]) -> Result<usize>;
}

impl WireEmit for [u8] {
    fn buffer_len(&self) -> usize {
        self.len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        crate::field::check_room("raw bytes", buf, self.len())?;
        buf[..self.len()].copy_from_slice(self);
        Ok(self.len())
    }
}

impl<E: WireEmit + ?Sized> WireEmit for &E {
    fn buffer_len(&self) -> usize {
        (**self).buffer_len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        (**self).emit(buf)
    }
}

/// Copies a sequence of representations back to back; used by tests and by builders of
/// payloads that concatenate parts.
#[derive(Debug, Clone, Copy)]
pub struct Concat<A, B>(pub A, pub B);

impl<A: WireEmit, B: WireEmit> WireEmit for Concat<A, B> {
    fn buffer_len(&self) -> usize {
        self.0.buffer_len() + self.1.buffer_len()
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        crate::field::check_room("concatenated payload", buf, self.buffer_len())?;
        let n = self.0.emit(buf)?;
        let m = self.1.emit(&mut buf[n..])?;
        Ok(n + m)
    }
}
