//! Bounds checks and big-endian accessors for wire fields. Every parser checks a length with
//! [`check_len`] before it reads fixed offsets, so the accessors index without further checks.

use crate::error::{Error, Result};

/// Fails with [`Error::Truncated`] unless `buf` holds at least `need` bytes.
pub(crate) fn check_len(what: &'static str, buf: &[u8], need: usize) -> Result<()> {
    if buf.len() < need { Err(Error::Truncated { what, need, have: buf.len() }) } else { Ok(()) }
}

/// Fails with [`Error::BufferTooSmall`] unless the output buffer holds `need` bytes.
pub(crate) fn check_room(what: &'static str, buf: &[u8], need: usize) -> Result<()> {
    if buf.len() < need { Err(Error::BufferTooSmall { what, need, have: buf.len() }) } else { Ok(()) }
}

/// Fails with [`Error::Reserved`] unless `value` is zero.
pub(crate) fn check_zero(field: &'static str, value: u64) -> Result<()> {
    if value != 0 { Err(Error::Reserved { field, value }) } else { Ok(()) }
}

/// Fails with [`Error::Reserved`] unless every byte of `bytes` is zero.
pub(crate) fn check_zero_bytes(field: &'static str, bytes: &[u8]) -> Result<()> {
    // OR-ing every byte has no early exit, so it runs as wide loads; which byte is not zero
    // matters only for the error.
    if bytes.iter().fold(0u8, |acc, &b| acc | b) == 0 {
        return Ok(());
    }
    let value = bytes.iter().copied().find(|&b| b != 0).unwrap_or_default();
    Err(Error::Reserved { field, value: u64::from(value) })
}

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn be24(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([0, b[at], b[at + 1], b[at + 2]])
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(v)
}

pub(crate) fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut v = [0u8; N];
    v.copy_from_slice(&b[at..at + N]);
    v
}

pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn put24(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 3].copy_from_slice(&v.to_be_bytes()[1..]);
}

pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}
