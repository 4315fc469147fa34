//! Moving data through a worker: host write data kept as shared frames and sent to each leg
//! as the leg asks for it (XFER_RDY), solicited from the host only as far as some leg needs,
//! and released once every leg that needs it has had it; journal header blocks; and the
//! data of control-path I/O (`FPDispatchIO` writes, `FPPutData`, `FPGetData`).

use bytes::Bytes;
use dve_fp_api::frame::TxFrame;
use dve_fp_api::ids::{ExchangeId, FcId, IoTag, Timestamp};
use dve_fp_api::io::IoKind;
use dve_fp_api::journal::JournalEntryHeader;
use dve_fp_api::message::ToCp;
use dve_wire::fc::{FcHeaderRepr, FcId as WireFcId, f_ctl, fc_type, r_ctl};
use dve_wire::fcoe::{Eof, Sof};

use super::emit::{self, FC_HEADER};
use super::state::{DownOwner, Downstream, HostPiece, LegFrames, UpState, Upstream};
use super::translate::MAX_LEGS;
use super::{Received, Worker};

/// Most payload bytes the worker puts in a data frame it builds.
const DATA_FRAME_BYTES: usize = 2048;

/// A leg's next data frame, made before the leg's state moves on ([`Worker::leg_sent`]).
struct LegStep {
    frame: emit::LegDataFrame,
    port: dve_fp_api::ids::PortId,
    /// The frame ends the leg's request.
    last: bool,
    /// How far into the host's data the leg's request reaches.
    wanted_upto: u32,
}

/// A slice of leg data ready to send.
struct LegPayload {
    body: dve_fp_api::frame::Frame,
    len: u32,
    fill: usize,
    /// The original frame's header and CRC, when the body is that frame's whole payload.
    patch_from: Option<([u8; FC_HEADER], u32, usize)>,
}

impl Worker {
    /// Host write data for exchange `rx.header.rx_id`.
    pub(super) fn host_data(&mut self, frame: dve_fp_api::frame::Frame, rx: &Received) {
        let xid = ExchangeId(rx.header.rx_id);
        let Some(up) = self.up.get_mut(xid) else { return };
        // Only the exchange's own host, in that exchange: a late frame of an exchange whose
        // slot was taken since (or another host's frame) must not land in this write.
        if up.host_ox_id != rx.header.ox_id || up.host.get() != rx.header.s_id.0 {
            return;
        }
        let offset = rx.header.parameter;
        let len = rx.payload_len as u32;
        let in_range = offset.checked_add(len).is_some_and(|end| end <= up.request.data_len);
        if !up.data_out || !in_range || !matches!(up.state, UpState::Active | UpState::Queued) {
            return;
        }
        let fc_end = rx.fc_end;
        let payload_end = rx.fc_start + FC_HEADER + rx.payload_len;
        let Some(trailer) = frame.as_slice().get(payload_end..fc_end + 4) else { return };
        let (fill_bytes, stored) = trailer.split_at(trailer.len() - 4);
        let Ok(fill) = u8::try_from(fill_bytes.len()) else { return };
        let patchable = fill_bytes.iter().all(|&b| b == 0);
        let Some(stored) = stored.first_chunk::<4>() else { return };
        let crc = u32::from_le_bytes(*stored);
        let (fc_start, fc_len) = (rx.fc_start as u32, (rx.fc_end - rx.fc_start) as u32);
        let piece = |frame| HostPiece { offset, len, crc, frame, fc_start, fc_len, fill, patchable };
        // The usual case, a frame every leg is waiting for, goes straight to them. Refused
        // (with nothing changed), it is kept as a piece.
        let piece = if up.pieces.is_empty() && offset == up.received_upto && up.state == UpState::Active {
            let legs = up.plan.as_ref().map_or(0, |p| p.leg_count);
            if patchable && fill <= 3 && legs > 0 {
                let sent = match legs {
                    1 => self.forward_to_one_leg(xid, frame, rx, crc),
                    2 => self.forward_to_two_legs(xid, frame, rx, crc),
                    _ => self.forward_in_order(xid, frame, rx, crc),
                };
                match sent {
                    Ok(()) => return,
                    Err(frame) => piece(frame),
                }
            } else {
                piece(frame)
            }
        } else {
            piece(frame)
        };
        let Some(up) = self.up.get_mut(xid) else { return };
        // Frames nearly always arrive in order: the new piece then goes last, with no search.
        let at = if up.pieces.last().is_none_or(|p| p.offset < offset) {
            up.pieces.push(piece);
            up.pieces.len() - 1
        } else {
            let at = up.pieces.partition_point(|p| p.offset < offset);
            if up.pieces.get(at).is_some_and(|p| p.offset == offset) {
                return; // a retransmitted frame
            }
            up.pieces.insert(at, piece);
            at
        };
        // Advance the contiguous mark over every piece that now joins it.
        for p in &up.pieces[at..] {
            if p.offset > up.received_upto {
                break;
            }
            up.received_upto = up.received_upto.max(p.end());
        }
        if up.state == UpState::Queued {
            self.serve_get_data(xid);
        } else {
            self.pump(xid);
        }
    }

    /// Host write data `frame` (located as `rx` says, its CRC `host_crc`, with zero fill of at
    /// most 3 bytes, so its CRC can be patched) of an active write that holds no piece and
    /// whose data it continues, sent straight to the legs when every leg of the plan waits for
    /// exactly it (its sent data ends at the frame's offset, its request takes the whole
    /// payload, the leg has a [`emit::WriteHead`]): what [`Worker::host_data`] and
    /// [`Worker::pump`] do with it then, frame for frame and state for state (as a piece it
    /// would be served to each leg in order and dropped at once), without the piece list, the
    /// search for the piece, the second look for more that finds none, or the marks over legs
    /// that have just been served. The first leg's frame is written over the host's (as
    /// [`Worker::forward_to_one_leg`] does for a plan of one leg); the others share its
    /// payload, the last taking the reference. The frame comes back if any leg is not waiting
    /// for it, and becomes a piece; nothing has changed then.
    fn forward_in_order(
        &mut self,
        up_xid: ExchangeId,
        frame: dve_fp_api::frame::Frame,
        rx: &Received,
        host_crc: u32,
    ) -> Result<(), dve_fp_api::frame::Frame> {
        let Some(up) = self.up.get(up_xid) else { return Err(frame) };
        let Some(plan) = up.plan.as_ref() else { return Err(frame) };
        if up.request.kind != IoKind::Write {
            return Err(frame);
        }
        let (leg_count, block_size) = (usize::from(plan.leg_count), plan.block_size);
        let legs = up.legs;
        let (offset, len) = (rx.header.parameter, rx.payload_len as u32);
        let fc_start = rx.fc_start;
        let start = fc_start + FC_HEADER;
        let range = start..start + len as usize;
        let Some(old) = frame.as_slice().get(fc_start..).and_then(|b| b.first_chunk::<FC_HEADER>()) else {
            return Err(frame);
        };
        if range.end > frame.len() {
            return Err(frame);
        }
        let mut waiting = 0;
        for down in legs.first(leg_count) {
            if !self.leg_waits_for(down, offset, len) {
                return Err(frame);
            }
            waiting += 1;
        }
        if waiting != leg_count {
            return Err(frame);
        }
        let old = *old;
        let fc_len = rx.fc_end - fc_start;
        let trailing = fc_len - FC_HEADER;
        let fill = fc_len - FC_HEADER - len as usize;
        let mut needed = 0;
        // The frame the legs' payloads are sliced from: the host's, until the first leg's frame
        // is written over it; then that frame, whose payload is the same bytes in the same
        // place (only headers and trailer were written).
        let mut source = Some(frame);
        for (i, down_xid) in legs.first(leg_count).enumerate() {
            let Some(down) = self.down.get_mut(down_xid) else { continue };
            let Some((_, want_end)) = down.wanted else { continue };
            let sent = down.sent_upto;
            let (fields, last) = next_fields(down, down_xid, sent, len, fill, want_end);
            let seq_cnt = fields.seq_cnt;
            let LegFrames::Write(head) = &mut down.frames else { continue };
            // Fill is at most 3: F_CTL is in range.
            let Some(hb) = head.header(fields) else { continue };
            let crc = head
                .header_change(
                    (&mut self.address_changes, &mut self.write_changes),
                    &self.crc,
                    &old,
                    &hb,
                    trailing,
                )
                .map(|c| host_crc ^ c);
            let sof = if seq_cnt == 0 { Sof::I3 } else { Sof::N3 };
            let eof = if last { Eof::T } else { Eof::N };
            let port = down.port;
            let leg_end = down.leg.data_offset + down.leg.blocks * block_size;
            let wanted_upto =
                (down.leg.data_offset + want_end.saturating_sub(down.leg.header_bytes)).min(leg_end);
            // The first leg's frame is written over the host's while the host frame is the
            // worker's alone (no pool buffer, nothing to gather); every other leg sends its own
            // header with the payload shared from that frame, the last taking it.
            // `None`: no buffer for the header; `Some(None)`: no frame could be made.
            let mut out: Option<Option<TxFrame>> = None;
            if i == 0
                && let (Some(crc), Some(whole)) = (crc, source.take())
            {
                match head.data_frame_in_place(whole, &hb, sof, eof, fc_len, crc) {
                    Ok(frame) => {
                        source = Some(frame.head.clone());
                        out = Some(Some(frame));
                    }
                    Err(whole) => source = Some(whole),
                }
            }
            if out.is_none() {
                let whole = if i + 1 == leg_count { source.take() } else { source.clone() };
                // A match: the closure of `and_then` stayed a call (about 25 a frame).
                let body = match whole {
                    Some(w) => w.into_slice(range.clone()),
                    None => None,
                };
                let Some(body) = body else { continue };
                // A match, not `or_else`: the call it stayed cost about 13 a frame.
                let buf = match self.spare_buffers.pop() {
                    Some(buf) => Some(buf),
                    None => self.pool.alloc(dve_fp_api::frame::FRAME_CAPACITY),
                };
                out = buf.map(|buf| head.data_frame(buf, &hb, sof, eof, body, fill, crc));
            }
            down.seq_cnt = seq_cnt.wrapping_add(1);
            down.sent_upto = sent + len;
            // As `serve_leg_frame`: with no buffer the leg's state has moved on but its
            // request stays.
            let Some(out) = out else {
                needed = needed.max(wanted_upto);
                continue;
            };
            if last {
                down.wanted = None;
            } else {
                needed = needed.max(wanted_upto);
            }
            if let Some(out) = out {
                self.send(port, out);
            }
        }
        // The rest of `pump` for the legs as they are now: the piece is behind every one.
        self.after_forwarding(up_xid, offset + len, needed);
        Ok(())
    }

    /// [`Worker::forward_in_order`] for a plan of two legs (a two-way mirror, a journaled
    /// write) and a host frame the worker holds alone with room after it: the first leg's frame
    /// written over the host's, the second's headers in the room after it and its payload the
    /// same bytes by reference (no buffer taken, see [`emit::two_data_frames`]). The same
    /// frames sent and the same state left as `forward_in_order`, which takes any frame this
    /// cannot; the frame comes back with nothing changed if a leg is not waiting for it.
    fn forward_to_two_legs(
        &mut self,
        up_xid: ExchangeId,
        frame: dve_fp_api::frame::Frame,
        rx: &Received,
        host_crc: u32,
    ) -> Result<(), dve_fp_api::frame::Frame> {
        let Some(up) = self.up.get(up_xid) else { return Err(frame) };
        let Some(plan) = up.plan.as_ref() else { return Err(frame) };
        if up.request.kind != IoKind::Write {
            return Err(frame);
        }
        let block_size = plan.block_size;
        let (Some(a), Some(b)) = (up.legs.get(0), up.legs.get(1)) else { return Err(frame) };
        let (offset, len) = (rx.header.parameter, rx.payload_len as u32);
        let fc_start = rx.fc_start;
        let start = fc_start + FC_HEADER;
        let range = start..start + len as usize;
        let Some(&old) = frame.as_slice().get(fc_start..).and_then(|b| b.first_chunk::<FC_HEADER>()) else {
            return Err(frame);
        };
        if range.end > frame.len()
            || !self.leg_waits_for(a, offset, len)
            || !self.leg_waits_for(b, offset, len)
        {
            return Err(frame);
        }
        let fc_len = rx.fc_end - fc_start;
        let trailing = fc_len - FC_HEADER;
        let fill = trailing - len as usize;
        let changes = (host_crc, &old, len, fill, trailing, block_size);
        let (Some(sa), Some(sb)) = (self.leg_step(a, changes), self.leg_step(b, changes)) else {
            return self.forward_in_order(up_xid, frame, rx, host_crc);
        };
        match emit::two_data_frames(frame, fc_len, range, fill, [&sa.frame, &sb.frame]) {
            Ok([fa, fb]) => {
                let needed = self.leg_sent(a, len, &sa).max(self.leg_sent(b, len, &sb));
                self.send(sa.port, fa);
                self.send(sb.port, fb);
                self.after_forwarding(up_xid, offset + len, needed);
                Ok(())
            }
            Err(frame) => self.forward_in_order(up_xid, frame, rx, host_crc),
        }
    }

    /// Whether leg `down_xid` waits for exactly the host data at `offset`, `len` bytes (see
    /// [`waits_for`]).
    #[inline(always)]
    fn leg_waits_for(&self, down_xid: ExchangeId, offset: u32, len: u32) -> bool {
        self.down.get(down_xid).is_some_and(|d| waits_for(d, offset, len))
    }

    /// Leg `down_xid`'s next data frame for a host frame with CRC `host_crc`, FC header `old`,
    /// `len` payload bytes, `fill` and `trailing` bytes after its header, in a write of
    /// `block_size` blocks; the leg's state is left as it was (see [`Worker::leg_sent`]).
    /// `None` if the leg has no request or head, or the CRC change cannot be had.
    #[inline(always)]
    fn leg_step(
        &mut self,
        down_xid: ExchangeId,
        (host_crc, old, len, fill, trailing, block_size): (u32, &[u8; FC_HEADER], u32, usize, usize, u32),
    ) -> Option<LegStep> {
        let down = self.down.get_mut(down_xid)?;
        let (_, want_end) = down.wanted?;
        let sent = down.sent_upto;
        let (fields, last) = next_fields(down, down_xid, sent, len, fill, want_end);
        let seq_cnt = fields.seq_cnt;
        let LegFrames::Write(head) = &mut down.frames else { return None };
        let hb = head.header(fields)?;
        let change = head.header_change(
            (&mut self.address_changes, &mut self.write_changes),
            &self.crc,
            old,
            &hb,
            trailing,
        )?;
        let leg_end = down.leg.data_offset + down.leg.blocks * block_size;
        Some(LegStep {
            frame: emit::LegDataFrame {
                macs: head.macs(),
                hb,
                sof: if seq_cnt == 0 { Sof::I3 } else { Sof::N3 },
                eof: if last { Eof::T } else { Eof::N },
                crc: host_crc ^ change,
            },
            port: down.port,
            last,
            wanted_upto: (down.leg.data_offset + want_end.saturating_sub(down.leg.header_bytes)).min(leg_end),
        })
    }

    /// Leg `down_xid` sent the `len` bytes of `step`: its state moves on. Returns how far into
    /// the host's data the leg still needs data (0 once its request is met).
    #[inline(always)]
    fn leg_sent(&mut self, down_xid: ExchangeId, len: u32, step: &LegStep) -> u32 {
        let Some(down) = self.down.get_mut(down_xid) else { return 0 };
        down.seq_cnt = down.seq_cnt.wrapping_add(1);
        down.sent_upto += len;
        if step.last {
            down.wanted = None;
            0
        } else {
            step.wanted_upto
        }
    }

    /// [`Worker::forward_in_order`] for a plan of one leg, a host frame `frame` (located as
    /// `rx` says, its CRC `host_crc`) with zero fill of at most 3 bytes: the same frame sent and
    /// the same state left, or the frame back with nothing changed. The leg is looked up once,
    /// and the host frame goes on as it is rather than as a piece.
    fn forward_to_one_leg(
        &mut self,
        up_xid: ExchangeId,
        frame: dve_fp_api::frame::Frame,
        rx: &Received,
        host_crc: u32,
    ) -> Result<(), dve_fp_api::frame::Frame> {
        let Some(up) = self.up.get(up_xid) else { return Err(frame) };
        let Some(plan) = up.plan.as_ref() else { return Err(frame) };
        if up.request.kind != IoKind::Write {
            return Err(frame);
        }
        let block_size = plan.block_size;
        let Some(down_xid) = up.legs.get(0) else { return Err(frame) };
        let (offset, len) = (rx.header.parameter, rx.payload_len as u32);
        let fc_start = rx.fc_start;
        let start = fc_start + FC_HEADER;
        let range = start..start + len as usize;
        let Some(&old) = frame.as_slice().get(fc_start..).and_then(|b| b.first_chunk::<FC_HEADER>()) else {
            return Err(frame);
        };
        if range.end > frame.len() {
            return Err(frame);
        }
        let Some(down) = self.down.get_mut(down_xid) else { return Err(frame) };
        if !waits_for(down, offset, len) {
            return Err(frame);
        }
        let Some((_, want_end)) = down.wanted else { return Err(frame) };
        let sent = down.sent_upto;
        let fc_len = rx.fc_end - fc_start;
        let trailing = fc_len - FC_HEADER;
        let fill = fc_len - FC_HEADER - len as usize;
        let (fields, last) = next_fields(down, down_xid, sent, len, fill, want_end);
        let seq_cnt = fields.seq_cnt;
        let LegFrames::Write(head) = &mut down.frames else { return Err(frame) };
        let mut needed = 0;
        let port = down.port;
        // Fill is at most 3: F_CTL is in range, and a header is always made.
        let out = if let Some(hb) = head.header(fields) {
            let crc = head
                .header_change(
                    (&mut self.address_changes, &mut self.write_changes),
                    &self.crc,
                    &old,
                    &hb,
                    trailing,
                )
                .map(|c| host_crc ^ c);
            let sof = if seq_cnt == 0 { Sof::I3 } else { Sof::N3 };
            let eof = if last { Eof::T } else { Eof::N };
            let leg_end = down.leg.data_offset + down.leg.blocks * block_size;
            let wanted_upto =
                (down.leg.data_offset + want_end.saturating_sub(down.leg.header_bytes)).min(leg_end);
            // Written over the host's frame when it is the leg's alone; else gathered.
            let whole = match crc {
                Some(crc) => match head.data_frame_in_place(frame, &hb, sof, eof, fc_len, crc) {
                    Ok(out) => Ok(out),
                    Err(frame) => Err(frame),
                },
                None => Err(frame),
            };
            match whole {
                Ok(out) => {
                    down.seq_cnt = seq_cnt.wrapping_add(1);
                    down.sent_upto = sent + len;
                    if last {
                        down.wanted = None;
                    } else {
                        needed = wanted_upto;
                    }
                    Some(out)
                }
                Err(frame) => match frame.into_slice(range) {
                    Some(body) => {
                        let buf = self
                            .spare_buffers
                            .pop()
                            .or_else(|| self.pool.alloc(dve_fp_api::frame::FRAME_CAPACITY));
                        let out = buf.map(|buf| head.data_frame(buf, &hb, sof, eof, body, fill, crc));
                        down.seq_cnt = seq_cnt.wrapping_add(1);
                        down.sent_upto = sent + len;
                        // As `serve_leg_frame`: with no buffer the leg's state has moved on but
                        // its request stays.
                        match out {
                            None => {
                                needed = wanted_upto;
                                None
                            }
                            Some(out) => {
                                if last {
                                    down.wanted = None;
                                } else {
                                    needed = wanted_upto;
                                }
                                out
                            }
                        }
                    }
                    None => None,
                },
            }
        } else {
            None
        };
        if let Some(out) = out {
            self.send(port, out);
        }
        // The rest of `pump` for the leg as it is now: the frame is behind it.
        self.after_forwarding(up_xid, offset + len, needed);
        Ok(())
    }

    /// What `pump` does after a host frame went straight to the legs: the data received up to
    /// `received_end`, the legs needing it up to `needed`, and the host asked for more when
    /// a leg waits for data not yet solicited. Always inlined: both callers are per frame.
    #[inline(always)]
    fn after_forwarding(&mut self, up_xid: ExchangeId, received_end: u32, needed: u32) {
        let Some(up) = self.up.get_mut(up_xid) else { return };
        up.received_upto = up.received_upto.max(received_end);
        let needed = needed.max(up.needed_upto);
        let solicit = next_solicit(up, needed, self.config.max_burst);
        up.needed_upto = needed;
        if let Some((ro, len)) = solicit {
            self.solicit(up_xid, ro, len);
        }
    }

    /// [`Worker::pump`] after leg `down_xid` of host write `up_xid` asked for data (its
    /// XFER_RDY) when no host data is held and the leg is past its journal header block: then
    /// nothing can be sent and nothing dropped, and since every other leg's request was taken
    /// into `needed_upto` when it came (an XFER_RDY is the one place a request is made), only
    /// this leg's adds to what the host is asked for. Anything else goes to `pump`.
    pub(super) fn leg_ready(&mut self, up_xid: ExchangeId, down_xid: ExchangeId) {
        let Some(d) = self.down.get(down_xid) else { return self.pump(up_xid) };
        let Some((_, want_end)) = d.wanted else { return self.pump(up_xid) };
        if d.sent_upto < d.leg.header_bytes || d.sent_upto >= want_end {
            return self.pump(up_xid);
        }
        let (leg, max_burst) = (d.leg, self.config.max_burst);
        let Some(up) = self.up.get_mut(up_xid) else { return };
        let (Some(plan), true, true) =
            (up.plan.as_ref(), up.pieces.is_empty(), up.request.kind == IoKind::Write)
        else {
            return self.pump(up_xid);
        };
        let leg_end = leg.data_offset + leg.blocks * plan.block_size;
        let leg_needs = (leg.data_offset + (want_end - leg.header_bytes)).min(leg_end);
        let needed = leg_needs.max(up.needed_upto);
        let solicit = next_solicit(up, needed, max_burst);
        up.needed_upto = needed;
        if let Some((ro, len)) = solicit {
            self.solicit(up_xid, ro, len);
        }
    }

    /// Send every leg of host write `up_xid` what it asked for and has arrived, ask the host
    /// for more if a leg waits for it, and drop data no leg needs any more.
    pub(super) fn pump(&mut self, up_xid: ExchangeId) {
        let Some(up) = self.up.get(up_xid) else { return };
        if up.request.kind != IoKind::Write {
            return;
        }
        // Only the plan's legs can be set; without a plan, look at every slot.
        let (leg_count, block_size) =
            up.plan.as_ref().map_or((MAX_LEGS, 0), |p| (usize::from(p.leg_count), p.block_size));
        let legs = up.legs;
        let mut needed = 0;
        let mut keep_from = u32::MAX;
        // Serving a leg changes only that leg's state, so each leg's part of the marks can be
        // taken right after serving it, in one pass over the legs.
        // With no host data held (a device's XFER_RDY before the data came), a leg past its
        // journal header block has nothing to send and serving it only finds that out; one
        // whose request is already met must still have it cleared, as serving does.
        let idle = up.pieces.is_empty();
        for down in legs.first(leg_count) {
            let busy = |d: &super::state::Downstream| {
                d.sent_upto < d.leg.header_bytes
                    || d.wanted.is_some_and(|(_, want_end)| d.sent_upto >= want_end)
            };
            if !idle || self.down.get(down).is_some_and(busy) {
                self.serve_leg(up_xid, down);
            }
            let Some(d) = self.down.get(down) else { continue };
            let leg_start = d.leg.data_offset;
            let leg_end = leg_start + d.leg.blocks * block_size;
            if let Some((_, want_end)) = d.wanted {
                needed = needed.max((leg_start + want_end.saturating_sub(d.leg.header_bytes)).min(leg_end));
            }
            let next = leg_start + d.sent_upto.saturating_sub(d.leg.header_bytes);
            if next < leg_end {
                keep_from = keep_from.min(next);
            }
        }
        let Some(up) = self.up.get(up_xid) else { return };
        let needed = needed.max(up.needed_upto);
        let solicit = next_solicit(up, needed, self.config.max_burst);
        let Some(up) = self.up.get_mut(up_xid) else { return };
        up.needed_upto = needed;
        let drop = up.pieces.iter().take_while(|p| p.end() <= keep_from).count();
        // Most calls drop nothing, and the last drops everything: neither needs a `Drain`
        // (about 35 instructions even when empty).
        match drop {
            0 => {}
            n if n == up.pieces.len() => up.pieces.clear(),
            n => {
                up.pieces.drain(..n);
            }
        }
        if let Some((ro, len)) = solicit {
            self.solicit(up_xid, ro, len);
        }
    }

    /// Ask the host for `len` bytes of write data at `ro` (an upstream FCP_XFER_RDY).
    pub(super) fn solicit(&mut self, up_xid: ExchangeId, ro: u32, len: u32) {
        let Some(up) = self.up.get_mut(up_xid) else { return };
        up.solicited_upto = ro + len;
        let seq_id = up.take_seq_id();
        let (port, host, target, ox) = (up.port, up.host, up.target, up.host_ox_id);
        let Some(src) = self.port_config(port).map(|p| p.mac) else { return };
        let key = emit::HostKey { src, host: host.get(), target: target.get() };
        let seq = emit::HostSequence { seq_id, ox_id: ox, rx_id: up_xid.0 };
        let fc_map = self.config.fc_map;
        let frame = self.templated(|t, b| t.transfer_ready.transfer_ready(b, &key, seq, (ro, len), fc_map));
        if let Some(frame) = frame {
            self.send(port, TxFrame::whole(frame));
        }
    }

    /// Send leg `down_xid` as much of its requested range as the worker has.
    // Out of line: inlined, `pump` set up for it on every call, the device's XFER_RDY
    // included, which serves nothing (25 instructions a linear write, 59 a mirror-2 write).
    #[inline(never)]
    fn serve_leg(&mut self, up_xid: ExchangeId, down_xid: ExchangeId) {
        loop {
            let Some(down) = self.down.get(down_xid) else { return };
            let Some((_, want_end)) = down.wanted else { return };
            let sent = down.sent_upto;
            if sent >= want_end {
                if let Some(down) = self.down.get_mut(down_xid) {
                    down.wanted = None;
                }
                return;
            }
            let leg = down.leg;
            if sent >= leg.header_bytes && matches!(down.frames, LegFrames::Write(_)) {
                match self.serve_leg_frame(up_xid, down_xid, sent, want_end) {
                    Some(true) => continue,
                    _ => return,
                }
            }
            let payload = if sent < leg.header_bytes {
                let end = want_end.min(leg.header_bytes).min(sent + DATA_FRAME_BYTES as u32);
                let Some(body) = self.journal_header_bytes(up_xid, sent, end) else { return };
                let len = end - sent;
                LegPayload { body, len, fill: ((4 - len % 4) % 4) as usize, patch_from: None }
            } else {
                let Some(up) = self.up.get(up_xid) else { return };
                let u = leg.data_offset + (sent - leg.header_bytes);
                let at = up.pieces.partition_point(|p| p.end() <= u);
                let Some(piece) = up.pieces.get(at).filter(|p| p.offset <= u) else { return };
                let take_end = piece.end().min(u + (want_end - sent));
                match leg_payload(piece, u, take_end) {
                    // As in `serve_leg_frame`: only a patched CRC carries a corruption along.
                    Some(payload)
                        if payload.patch_from.is_none()
                            && self.config.cut_through
                            && !piece.arrived_intact() =>
                    {
                        return;
                    }
                    Some(payload) => payload,
                    None => return,
                }
            };
            let last = sent + payload.len >= want_end;
            let Some(down) = self.down.get_mut(down_xid) else { return };
            let seq_cnt = down.seq_cnt;
            down.seq_cnt = down.seq_cnt.wrapping_add(1);
            down.sent_upto = sent + payload.len;
            let mut f = f_ctl::RELATIVE_OFFSET | payload.fill as u32;
            if last {
                f |= f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
            }
            let header = FcHeaderRepr {
                r_ctl: r_ctl::SOLICITED_DATA,
                d_id: WireFcId(down.target.get()),
                cs_ctl: 0,
                s_id: WireFcId(down.initiator.get()),
                fc_type: fc_type::FCP,
                f_ctl: f,
                seq_id: down.seq_id,
                df_ctl: 0,
                seq_cnt,
                ox_id: down_xid.0,
                rx_id: down.target_rx_id,
                parameter: sent,
            };
            let port = down.port;
            let Some(src) = self.port_config(port).map(|p| p.mac) else { return };
            let encoded = emit::encode_header(&header);
            let crc = payload.patch_from.and_then(|(old, crc, trailing)| {
                Some(crc ^ self.address_changes.header_change(&self.crc, &old, &encoded, trailing)?)
            });
            let sof = if seq_cnt == 0 { Sof::I3 } else { Sof::N3 };
            let eof = if last { Eof::T } else { Eof::N };
            let Some(head) = self.buffer() else { return };
            let frame = emit::gathered_data_frame_encoded(
                head,
                src,
                &encoded,
                header.d_id.0,
                sof,
                eof,
                payload.body,
                payload.fill,
                crc,
                self.config.fc_map,
            );
            if let Some(frame) = frame {
                self.send(port, frame);
            }
            if last && let Some(down) = self.down.get_mut(down_xid) {
                down.wanted = None;
                return;
            }
        }
    }

    /// Send leg `down_xid` (which has a [`emit::WriteHead`] and has sent its journal header
    /// block, if any) its next data frame from the host's, at leg offset `sent` of the
    /// `want_end` it asked for: the head copied from the leg's, the payload a slice of the host
    /// frame, its CRC patched when the frame is the host frame's whole payload. What the
    /// general path of [`Worker::serve_leg`] sends, byte for byte. `Some(true)` if the leg may
    /// want more, `Some(false)` after its last frame, `None` if nothing could be sent.
    #[inline]
    fn serve_leg_frame(
        &mut self,
        up_xid: ExchangeId,
        down_xid: ExchangeId,
        sent: u32,
        want_end: u32,
    ) -> Option<bool> {
        let down = self.down.get_mut(down_xid)?;
        let up = self.up.get(up_xid)?;
        let leg = down.leg;
        let u = leg.data_offset + (sent - leg.header_bytes);
        let at = up.pieces.partition_point(|p| p.end() <= u);
        let piece = up.pieces.get(at).filter(|p| p.offset <= u)?;
        let take_end = piece.end().min(u + (want_end - sent));
        let len = take_end - u;
        let whole = u == piece.offset && take_end == piece.end();
        let fill = if whole { usize::from(piece.fill) } else { ((4 - len % 4) % 4) as usize };
        let (fields, last) = next_fields(down, down_xid, sent, len, fill, want_end);
        let seq_cnt = fields.seq_cnt;
        let LegFrames::Write(head) = &mut down.frames else { return None };
        let hb = head.header(fields)?;
        let fc_start = piece.fc_start as usize;
        let start = fc_start + FC_HEADER + (u - piece.offset) as usize;
        let body = piece.frame.slice(start..start + len as usize)?;
        let crc = if whole && piece.patchable {
            let old = piece.frame.as_slice().get(fc_start..)?.first_chunk::<FC_HEADER>()?;
            let trailing = piece.fc_len as usize - FC_HEADER;
            head.header_change(
                (&mut self.address_changes, &mut self.write_changes),
                &self.crc,
                old,
                &hb,
                trailing,
            )
            .map(|c| piece.crc ^ c)
        } else if self.config.cut_through && !piece.arrived_intact() {
            // A fresh CRC would make a corrupted payload look good: the frame counts as lost
            // (the leg waits, and times out as it would for a lost one).
            return None;
        } else {
            None
        };
        let sof = if seq_cnt == 0 { Sof::I3 } else { Sof::N3 };
        let eof = if last { Eof::T } else { Eof::N };
        let port = down.port;
        let buf = self.spare_buffers.pop().or_else(|| self.pool.alloc(dve_fp_api::frame::FRAME_CAPACITY));
        let frame = buf.map(|buf| head.data_frame(buf, &hb, sof, eof, body, fill, crc));
        down.seq_cnt = seq_cnt.wrapping_add(1);
        down.sent_upto = sent + len;
        // No buffer: the leg's state has moved on, as the general path leaves it.
        let frame = frame?;
        if last {
            down.wanted = None;
        }
        if let Some(frame) = frame {
            self.send(port, frame);
        }
        Some(!last)
    }

    /// Bytes `[from, to)` of the journal header block of host write `up_xid`.
    fn journal_header_bytes(
        &self,
        up_xid: ExchangeId,
        from: u32,
        to: u32,
    ) -> Option<dve_fp_api::frame::Frame> {
        let up = self.up.get(up_xid)?;
        let plan = up.plan?;
        let journal = plan.journal?;
        let header = JournalEntryHeader {
            journal_sequence: journal.region.sequence,
            position: journal.position,
            worker: self.config.id,
            lv: plan.lv,
            vseg: plan.vseg,
            lba: up.request.lba,
            blocks: plan.blocks,
            block_size: plan.block_size,
            timestamp: up.request.received.0,
        };
        let mut block = [0u8; dve_fp_api::journal::JOURNAL_HEADER_LEN];
        header.encode(&mut block).ok()?;
        let mut buf = self.pool.alloc((to - from) as usize)?;
        let out = buf.as_mut_slice();
        out.fill(0);
        for (i, byte) in out.iter_mut().enumerate() {
            if let Some(b) = block.get(from as usize + i) {
                *byte = *b;
            }
        }
        Some(buf.freeze())
    }

    /// `FPGetData` for a queued write: answer when all the data is in, asking the host for the
    /// rest meanwhile.
    pub(super) fn serve_get_data(&mut self, xid: ExchangeId) {
        let Some(tag) = self.up.tag_of(xid) else { return };
        let Some(up) = self.up.get_mut(xid) else { return };
        let Some(req) = up.get_data else { return };
        let total = up.request.data_len;
        if up.received_upto >= total {
            // The data leaves the frames it came in for a buffer with no CRC: verify what was
            // cut through. A corrupted frame fails the I/O (the host retries it) rather than
            // being asked for again, which FCP allows only where the host agreed to it.
            if self.config.cut_through && !up.pieces.iter().all(|p| p.arrived_intact()) {
                up.get_data = None;
                self.upcalls.push_back(ToCp::Data {
                    req,
                    io: tag,
                    result: Err(dve_fp_api::Error::CorruptData(tag)),
                });
                return;
            }
            let mut data = Vec::with_capacity(total as usize);
            for piece in &up.pieces {
                let start = piece.fc_start as usize + FC_HEADER;
                data.extend_from_slice(&piece.frame.as_slice()[start..start + piece.len as usize]);
            }
            data.truncate(total as usize);
            up.get_data = None;
            self.upcalls.push_back(ToCp::Data { req, io: tag, result: Ok(Bytes::from(data)) });
            return;
        }
        if up.received_upto >= up.solicited_upto {
            let from = up.solicited_upto;
            let len = (total - from).min(self.config.max_burst);
            self.solicit(xid, from, len);
        }
    }

    /// Send the data of a control-path write leg the device asked for.
    pub(super) fn send_dispatch_data(&mut self, down_xid: ExchangeId) {
        loop {
            let Some(down) = self.down.get_mut(down_xid) else { return };
            let Some((_, want_end)) = down.wanted else { return };
            let Some(data) = down.control.as_ref().and_then(|c| c.data_out.clone()) else { return };
            let sent = down.sent_upto;
            let end = want_end.min(data.len() as u32);
            if sent >= end {
                down.wanted = None;
                return;
            }
            let chunk_end = end.min(sent + DATA_FRAME_BYTES as u32);
            let last = chunk_end >= end;
            let seq_cnt = down.seq_cnt;
            down.seq_cnt = down.seq_cnt.wrapping_add(1);
            down.sent_upto = chunk_end;
            let mut f = f_ctl::RELATIVE_OFFSET;
            if last {
                f |= f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
                down.wanted = None;
            }
            let header = FcHeaderRepr {
                r_ctl: r_ctl::SOLICITED_DATA,
                d_id: WireFcId(down.target.get()),
                cs_ctl: 0,
                s_id: WireFcId(down.initiator.get()),
                fc_type: fc_type::FCP,
                f_ctl: f,
                seq_id: down.seq_id,
                df_ctl: 0,
                seq_cnt,
                ox_id: down_xid.0,
                rx_id: down.target_rx_id,
                parameter: sent,
            };
            let port = down.port;
            let Some(src) = self.port_config(port).map(|p| p.mac) else { return };
            let payload = &data[sent as usize..chunk_end as usize];
            let sof = if seq_cnt == 0 { Sof::I3 } else { Sof::N3 };
            let eof = if last { Eof::T } else { Eof::N };
            if let Some(frame) = self.whole_frame(src, &header, sof, eof, payload) {
                self.send(port, TxFrame::whole(frame));
            }
            if last {
                return;
            }
        }
    }

    /// `FPPutData`: send read data to the host of a queued I/O.
    pub(super) fn put_data(&mut self, tag: IoTag, offset: u32, data: &[u8]) -> Result<(), dve_fp_api::Error> {
        let up = self.up.get_tagged_mut(tag).ok_or(dve_fp_api::Error::UnknownIo(tag))?;
        let end = offset.checked_add(data.len() as u32);
        if end.is_none_or(|end| end > up.request.data_len) {
            return Err(dve_fp_api::Error::DataOutOfRange {
                offset,
                len: data.len() as u32,
                data_len: up.request.data_len,
            });
        }
        let seq_id = up.take_seq_id();
        up.read_bytes += data.len() as u32;
        let (port, host, target, ox) = (up.port, up.host, up.target, up.host_ox_id);
        let src = self.port_config(port).map(|p| p.mac).ok_or(dve_fp_api::Error::NoRoom("port"))?;
        let chunks = data.len().div_ceil(DATA_FRAME_BYTES).max(1);
        for (i, chunk) in data.chunks(DATA_FRAME_BYTES).enumerate() {
            let last = i + 1 == chunks;
            let mut f = f_ctl::EXCHANGE_CONTEXT | f_ctl::RELATIVE_OFFSET;
            if last {
                f |= f_ctl::END_SEQUENCE;
            }
            let header = FcHeaderRepr {
                r_ctl: r_ctl::SOLICITED_DATA,
                d_id: WireFcId(host.get()),
                cs_ctl: 0,
                s_id: WireFcId(target.get()),
                fc_type: fc_type::FCP,
                f_ctl: f,
                seq_id,
                df_ctl: 0,
                seq_cnt: i as u16,
                ox_id: ox,
                rx_id: tag.xid.0,
                parameter: offset + (i * DATA_FRAME_BYTES) as u32,
            };
            let sof = if i == 0 { Sof::I3 } else { Sof::N3 };
            let eof = if last { Eof::T } else { Eof::N };
            let frame = self
                .whole_frame(src, &header, sof, eof, chunk)
                .ok_or(dve_fp_api::Error::NoRoom("frame buffers"))?;
            self.send(port, TxFrame::whole(frame));
        }
        Ok(())
    }

    /// Held I/O of a resumed volume goes through the chain again, in arrival order.
    pub(super) fn release_held(&mut self, _now: Timestamp) {
        let held: Vec<ExchangeId> = self.held.drain(..).collect();
        for xid in held {
            let paused = self
                .up
                .get(xid)
                .and_then(|u| u.request.lv)
                .and_then(|lv| self.cache.lv(lv))
                .is_some_and(|lv| lv.paused);
            if paused {
                self.held.push_back(xid);
            } else {
                self.start(xid);
            }
        }
    }

    /// Whether host `host` has an exchange open with OX_ID `ox` (duplicate command detection).
    pub fn has_exchange_from(&self, host: FcId, ox: u16) -> bool {
        self.up.iter().any(|(_, u)| u.host == host && u.host_ox_id == ox)
    }

    /// The data owner of a downstream exchange, for tests.
    pub fn downstream_owner(&self, xid: ExchangeId) -> Option<DownOwner> {
        self.down.get(xid).map(|d| d.owner)
    }
}

/// The part `[from, to)` (host data offsets) of `piece` as a leg payload; the whole payload
/// keeps the original frame's fill bytes so its CRC can be patched.
fn leg_payload(piece: &HostPiece, from: u32, to: u32) -> Option<LegPayload> {
    let payload_start = piece.fc_start as usize + FC_HEADER;
    if from == piece.offset && to == piece.end() {
        let fc_end = (piece.fc_start + piece.fc_len) as usize;
        let fill = fc_end - payload_start - piece.len as usize;
        let body = piece.frame.slice(payload_start..payload_start + piece.len as usize)?;
        let mut old = [0u8; FC_HEADER];
        old.copy_from_slice(&piece.frame.as_slice()[piece.fc_start as usize..payload_start]);
        // Fill bytes were zero in every frame we accept into a piece? Not necessarily: only
        // patch when they are, since the gathered frame always carries zero fill.
        let fill_zero =
            piece.frame.as_slice()[payload_start + piece.len as usize..fc_end].iter().all(|&b| b == 0);
        let patch_from = fill_zero.then_some((old, piece.crc, fc_end - piece.fc_start as usize - FC_HEADER));
        return Some(LegPayload { body, len: piece.len, fill, patch_from });
    }
    let start = payload_start + (from - piece.offset) as usize;
    let len = to - from;
    let body = piece.frame.slice(start..start + len as usize)?;
    Some(LegPayload { body, len, fill: ((4 - len % 4) % 4) as usize, patch_from: None })
}

/// The burst to ask the host for (offset, length), if a leg needs data up to `needed` past what
/// was solicited and everything solicited has arrived: one burst outstanding at a time.
#[inline(always)]
fn next_solicit(up: &Upstream, needed: u32, max_burst: u32) -> Option<(u32, u32)> {
    (up.received_upto >= up.solicited_upto && needed > up.solicited_upto)
        .then(|| (up.solicited_upto, (needed - up.solicited_upto).min(max_burst)))
}

/// Whether leg `down` waits for exactly the host data at `offset`, `len` bytes: its sent data
/// ends there, its request takes the whole payload (which is not empty: `serve_leg_frame`
/// finds no piece for an empty frame, so 1 <= len <= want_end - sent), and it has a
/// [`emit::WriteHead`].
#[inline(always)]
fn waits_for(down: &Downstream, offset: u32, len: u32) -> bool {
    let sent = down.sent_upto;
    matches!(down.frames, LegFrames::Write(_))
        && down.wanted.is_some_and(|(_, want_end)| {
            sent >= down.leg.header_bytes
                && sent < want_end
                && down.leg.data_offset + (sent - down.leg.header_bytes) == offset
                && len.wrapping_sub(1) < want_end - sent
        })
}

/// The header fields of leg `down` (exchange `down_xid`)'s next data frame: `len` payload
/// bytes and `fill` from `sent` of a request ending at `want_end`; and whether the frame ends
/// the request (it then ends the sequence and passes the initiative).
#[inline(always)]
fn next_fields(
    down: &Downstream,
    down_xid: ExchangeId,
    sent: u32,
    len: u32,
    fill: usize,
    want_end: u32,
) -> (emit::WriteFields, bool) {
    let last = sent + len >= want_end;
    let mut f = f_ctl::RELATIVE_OFFSET | fill as u32;
    if last {
        f |= f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
    }
    let fields = emit::WriteFields {
        f_ctl: f,
        seq_id: down.seq_id,
        seq_cnt: down.seq_cnt,
        ox_id: down_xid.0,
        rx_id: down.target_rx_id,
        parameter: sent,
    };
    (fields, last)
}
