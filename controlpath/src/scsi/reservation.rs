//! Reservations of one LV: SPC-2 RESERVE/RELEASE and SPC-3/SPC-4 persistent reservations
//! (PERSISTENT RESERVE IN and OUT), the access they leave each initiator
//! ([`ReservationState::may_read`], [`ReservationState::may_write`], from which the caller
//! computes the fast path's LUN mask), and the RESERVATION CONFLICT check every command goes
//! through ([`ReservationState::permits`]).
//!
//! Initiators are named by port name (WWPN). A registration belongs to the initiator port
//! whatever target port it came through (DVE's virtual targets are one device on every
//! engine), so every registration behaves as if ALL_TG_PT were set, and REPORT CAPABILITIES
//! says ATP_C.
//!
//! # Conflict table
//!
//! Each command has an [`Access`] class. For an initiator that does not hold the reservation
//! (for the registrants-only and all-registrants types: that is not registered):
//!
//! | class | commands | SPC-2 RESERVE by another | Write Exclusive (any WE type) | Exclusive Access (any EA type) |
//! |---|---|---|---|---|
//! | `Exempt` | INQUIRY, REPORT LUNS, REQUEST SENSE | allowed | allowed | allowed |
//! | `Shared` | TEST UNIT READY, READ CAPACITY(10/16), START STOP UNIT with START=1 and POWER CONDITION=0 | conflict | allowed | allowed |
//! | `Read` | READ(6/10/16), VERIFY(10/16), MODE SENSE(6/10) | conflict | allowed | conflict |
//! | `Write` | WRITE(6/10/16), WRITE SAME(10/16), UNMAP, SYNCHRONIZE CACHE(10/16), other START STOP UNIT | conflict | conflict | conflict |
//! | `LegacyReservation` | RESERVE(6/10), RELEASE(6/10) | see below | conflict | conflict |
//! | `Persistent` | PERSISTENT RESERVE IN/OUT | conflict (also for the holder) | per service action | per service action |
//!
//! This follows SPC-4 (spc4r17 table 45: MODE SENSE is allowed under Write Exclusive and
//! conflicts under Exclusive Access) and SBC-3 table 13 (READ CAPACITY is always allowed;
//! START STOP UNIT only with START=1 and no power condition), and the SPC-2 rules as Linux
//! LIO applies them: under an SPC-2 reservation only INQUIRY, REPORT LUNS, REQUEST SENSE and
//! RELEASE are allowed to others, and persistent reservation commands conflict for everyone.
//! RESERVE and RELEASE conflict for everyone while any registration exists (SPC-3 5.6.3 with
//! CRH=0); RELEASE by an initiator that holds nothing is GOOD and changes nothing; RESERVE by
//! another initiator than the holder conflicts.
//!
//! PERSISTENT RESERVE OUT from an unregistered initiator conflicts for every service action
//! except REGISTER with a zero reservation key and REGISTER AND IGNORE EXISTING KEY; a
//! reservation key that does not match the initiator's registration conflicts too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::outcome::{Failure, asc};
use super::unit_attention::UnitAttention;

/// Persistent reservation types (SPC-4 table 169).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PrType {
    /// Write Exclusive (1h).
    WriteExclusive,
    /// Exclusive Access (3h).
    ExclusiveAccess,
    /// Write Exclusive – Registrants Only (5h).
    WriteExclusiveRegistrantsOnly,
    /// Exclusive Access – Registrants Only (6h).
    ExclusiveAccessRegistrantsOnly,
    /// Write Exclusive – All Registrants (7h).
    WriteExclusiveAllRegistrants,
    /// Exclusive Access – All Registrants (8h).
    ExclusiveAccessAllRegistrants,
}

impl PrType {
    /// The type from its 4-bit code.
    pub fn from_code(code: u8) -> Option<PrType> {
        Some(match code {
            0x1 => PrType::WriteExclusive,
            0x3 => PrType::ExclusiveAccess,
            0x5 => PrType::WriteExclusiveRegistrantsOnly,
            0x6 => PrType::ExclusiveAccessRegistrantsOnly,
            0x7 => PrType::WriteExclusiveAllRegistrants,
            0x8 => PrType::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    /// The 4-bit code.
    pub fn code(self) -> u8 {
        match self {
            PrType::WriteExclusive => 0x1,
            PrType::ExclusiveAccess => 0x3,
            PrType::WriteExclusiveRegistrantsOnly => 0x5,
            PrType::ExclusiveAccessRegistrantsOnly => 0x6,
            PrType::WriteExclusiveAllRegistrants => 0x7,
            PrType::ExclusiveAccessAllRegistrants => 0x8,
        }
    }

    /// Every registrant is a reservation holder.
    pub fn is_all_registrants(self) -> bool {
        matches!(self, PrType::WriteExclusiveAllRegistrants | PrType::ExclusiveAccessAllRegistrants)
    }

    /// Registrants have access; the initiator that reserved is the holder.
    pub fn is_registrants_only(self) -> bool {
        matches!(self, PrType::WriteExclusiveRegistrantsOnly | PrType::ExclusiveAccessRegistrantsOnly)
    }

    /// Initiators without access may not read either.
    pub fn is_exclusive_access(self) -> bool {
        matches!(
            self,
            PrType::ExclusiveAccess
                | PrType::ExclusiveAccessRegistrantsOnly
                | PrType::ExclusiveAccessAllRegistrants
        )
    }
}

/// A persistent reservation: who reserved (for the all-registrants types every registrant
/// holds it) and its type. The scope is always the logical unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PersistentReservation {
    /// The initiator that established it.
    pub holder: u64,
    /// The type.
    pub pr_type: PrType,
}

/// How a command is checked against the reservations (see the module's conflict table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Never conflicts.
    Exempt,
    /// Conflicts only under another initiator's SPC-2 reservation.
    Shared,
    /// Needs read access.
    Read,
    /// Needs write (full) access.
    Write,
    /// RESERVE/RELEASE(6/10): decided by the command itself.
    LegacyReservation,
    /// PERSISTENT RESERVE IN/OUT: conflicts under any SPC-2 reservation, else decided per
    /// service action.
    Persistent,
}

/// PERSISTENT RESERVE OUT service actions.
pub mod pr_out {
    /// REGISTER.
    pub const REGISTER: u8 = 0x00;
    /// RESERVE.
    pub const RESERVE: u8 = 0x01;
    /// RELEASE.
    pub const RELEASE: u8 = 0x02;
    /// CLEAR.
    pub const CLEAR: u8 = 0x03;
    /// PREEMPT.
    pub const PREEMPT: u8 = 0x04;
    /// REGISTER AND IGNORE EXISTING KEY.
    pub const REGISTER_AND_IGNORE_EXISTING_KEY: u8 = 0x06;
}

/// PERSISTENT RESERVE IN service actions.
pub mod pr_in {
    /// READ KEYS.
    pub const READ_KEYS: u8 = 0x00;
    /// READ RESERVATION.
    pub const READ_RESERVATION: u8 = 0x01;
    /// REPORT CAPABILITIES.
    pub const REPORT_CAPABILITIES: u8 = 0x02;
    /// READ FULL STATUS.
    pub const READ_FULL_STATUS: u8 = 0x03;
}

/// Length of the PERSISTENT RESERVE OUT parameter list (without SPEC_I_PT).
pub const PR_OUT_PARAMETER_LIST_LEN: usize = 24;

/// Unit attentions a reservation change establishes: `(initiator, condition)`.
pub type Notices = Vec<(u64, UnitAttention)>;

/// The reservations of one LV.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReservationState {
    legacy_holder: Option<u64>,
    registrations: BTreeMap<u64, u64>,
    generation: u32,
    reservation: Option<PersistentReservation>,
    aptpl: bool,
}

/// The fields of a PERSISTENT RESERVE OUT parameter list DVE uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PrOutParams {
    key: u64,
    sa_key: u64,
    aptpl: bool,
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn parse_pr_out_params(parameter_list_length: u32, data_out: &[u8]) -> Result<PrOutParams, Failure> {
    if parameter_list_length as usize != PR_OUT_PARAMETER_LIST_LEN
        || data_out.len() < PR_OUT_PARAMETER_LIST_LEN
    {
        return Err(Failure::PARAMETER_LIST_LENGTH_ERROR);
    }
    let p = &data_out[..PR_OUT_PARAMETER_LIST_LEN];
    if p[20] & 0x08 != 0 {
        // SPEC_I_PT: SIP_C is not reported.
        return Err(Failure::INVALID_FIELD_IN_PARAMETER_LIST);
    }
    Ok(PrOutParams { key: be64(p, 0), sa_key: be64(p, 8), aptpl: p[20] & 0x01 != 0 })
}

impl ReservationState {
    /// No reservation, no registration.
    pub fn new() -> ReservationState {
        ReservationState::default()
    }

    /// The holder of the SPC-2 reservation.
    pub fn legacy_holder(&self) -> Option<u64> {
        self.legacy_holder
    }

    /// The registrations `(initiator, reservation key)`, by initiator.
    pub fn registrations(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.registrations.iter().map(|(&i, &k)| (i, k))
    }

    /// The reservation key `initiator` registered.
    pub fn key_of(&self, initiator: u64) -> Option<u64> {
        self.registrations.get(&initiator).copied()
    }

    /// PRgeneration: counts REGISTER, REGISTER AND IGNORE EXISTING KEY, CLEAR and PREEMPT.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The persistent reservation.
    pub fn reservation(&self) -> Option<PersistentReservation> {
        self.reservation
    }

    /// Activate persist through power loss (the last registration asked for it).
    pub fn aptpl(&self) -> bool {
        self.aptpl
    }

    /// Whether `initiator` is a persistent reservation holder (for the all-registrants types:
    /// any registrant).
    pub fn holds_reservation(&self, initiator: u64) -> bool {
        match self.reservation {
            None => false,
            Some(r) if r.pr_type.is_all_registrants() => self.registrations.contains_key(&initiator),
            Some(r) => r.holder == initiator,
        }
    }

    /// Whether the persistent reservation gives `initiator` full access: it holds it, or the
    /// type is registrants-only or all-registrants and it is registered.
    fn has_persistent_access(&self, initiator: u64) -> bool {
        match self.reservation {
            None => true,
            Some(r) if r.pr_type.is_all_registrants() || r.pr_type.is_registrants_only() => {
                self.registrations.contains_key(&initiator)
            }
            Some(r) => r.holder == initiator,
        }
    }

    /// Whether `initiator`'s reads are allowed (fast-path LUN mask readers).
    pub fn may_read(&self, initiator: u64) -> bool {
        if let Some(h) = self.legacy_holder {
            return h == initiator;
        }
        match self.reservation {
            None => true,
            Some(r) => !r.pr_type.is_exclusive_access() || self.has_persistent_access(initiator),
        }
    }

    /// Whether `initiator`'s writes are allowed (fast-path LUN mask writers).
    pub fn may_write(&self, initiator: u64) -> bool {
        if let Some(h) = self.legacy_holder {
            return h == initiator;
        }
        self.has_persistent_access(initiator)
    }

    /// Whether a command of class `access` from `initiator` may proceed (else RESERVATION
    /// CONFLICT); see the module's conflict table.
    pub fn permits(&self, initiator: u64, access: Access) -> bool {
        match access {
            Access::Exempt | Access::LegacyReservation => true,
            Access::Shared => self.legacy_holder.is_none_or(|h| h == initiator),
            Access::Read => self.may_read(initiator),
            Access::Write => self.may_write(initiator),
            Access::Persistent => self.legacy_holder.is_none(),
        }
    }

    /// A power on or hard reset of the LV: the SPC-2 reservation is released and, unless
    /// APTPL was asked for, every registration and the persistent reservation are lost.
    /// PRgeneration restarts at zero.
    pub fn power_on(&mut self) {
        self.legacy_holder = None;
        if !self.aptpl {
            self.registrations.clear();
            self.reservation = None;
        }
        self.generation = 0;
    }

    /// RESERVE(6/10).
    pub(crate) fn reserve_legacy(&mut self, initiator: u64) -> Result<(), Failure> {
        if !self.registrations.is_empty() || self.reservation.is_some() {
            return Err(Failure::Conflict);
        }
        match self.legacy_holder {
            Some(h) if h != initiator => Err(Failure::Conflict),
            _ => {
                self.legacy_holder = Some(initiator);
                Ok(())
            }
        }
    }

    /// RELEASE(6/10).
    pub(crate) fn release_legacy(&mut self, initiator: u64) -> Result<(), Failure> {
        if !self.registrations.is_empty() || self.reservation.is_some() {
            return Err(Failure::Conflict);
        }
        if self.legacy_holder == Some(initiator) {
            self.legacy_holder = None;
        }
        Ok(())
    }

    /// PERSISTENT RESERVE OUT. Either the whole service action applies and the unit
    /// attentions it establishes are returned, or nothing changes.
    pub(crate) fn persistent_reserve_out(
        &mut self,
        initiator: u64,
        service_action: u8,
        scope: u8,
        pr_type: u8,
        parameter_list_length: u32,
        data_out: &[u8],
    ) -> Result<Notices, Failure> {
        if !matches!(
            service_action,
            pr_out::REGISTER
                | pr_out::RESERVE
                | pr_out::RELEASE
                | pr_out::CLEAR
                | pr_out::PREEMPT
                | pr_out::REGISTER_AND_IGNORE_EXISTING_KEY
        ) {
            return Err(Failure::INVALID_FIELD_IN_CDB);
        }
        let params = parse_pr_out_params(parameter_list_length, data_out)?;
        let mut next = self.clone();
        let notices = match service_action {
            pr_out::REGISTER => next.register(initiator, params, false)?,
            pr_out::REGISTER_AND_IGNORE_EXISTING_KEY => next.register(initiator, params, true)?,
            pr_out::RESERVE => next.reserve(initiator, params, scope, pr_type)?,
            pr_out::RELEASE => next.release(initiator, params, scope, pr_type)?,
            pr_out::CLEAR => next.clear(initiator, params)?,
            _ => next.preempt(initiator, params, scope, pr_type)?,
        };
        *self = next;
        Ok(notices)
    }

    /// The registered key of `initiator`, which must be `key`.
    fn check_registered(&self, initiator: u64, key: u64) -> Result<u64, Failure> {
        match self.registrations.get(&initiator) {
            Some(&k) if k == key => Ok(k),
            _ => Err(Failure::Conflict),
        }
    }

    fn register(
        &mut self,
        initiator: u64,
        p: PrOutParams,
        ignore_existing: bool,
    ) -> Result<Notices, Failure> {
        let current = self.registrations.get(&initiator).copied();
        if !ignore_existing {
            match current {
                None if p.key != 0 => return Err(Failure::Conflict),
                Some(k) if k != p.key => return Err(Failure::Conflict),
                _ => {}
            }
        }
        let mut notices = Vec::new();
        match (current, p.sa_key) {
            (None, 0) => return Ok(notices),
            (Some(_), 0) => self.unregister(initiator, &mut notices),
            (_, key) => {
                self.registrations.insert(initiator, key);
                self.aptpl = p.aptpl;
            }
        }
        self.generation = self.generation.wrapping_add(1);
        Ok(notices)
    }

    /// Removes `initiator`'s registration and releases what it held.
    fn unregister(&mut self, initiator: u64, notices: &mut Notices) {
        self.registrations.remove(&initiator);
        let Some(r) = self.reservation else { return };
        if r.pr_type.is_all_registrants() {
            if self.registrations.is_empty() {
                self.reservation = None;
            }
        } else if r.holder == initiator {
            self.reservation = None;
            if r.pr_type.is_registrants_only() {
                notices.extend(self.registrations.keys().map(|&i| (i, UnitAttention::ReservationsReleased)));
            }
        }
    }

    fn valid_type(scope: u8, pr_type: u8) -> Result<PrType, Failure> {
        if scope != 0 {
            return Err(Failure::INVALID_FIELD_IN_CDB);
        }
        PrType::from_code(pr_type).ok_or(Failure::INVALID_FIELD_IN_CDB)
    }

    fn reserve(
        &mut self,
        initiator: u64,
        p: PrOutParams,
        scope: u8,
        pr_type: u8,
    ) -> Result<Notices, Failure> {
        self.check_registered(initiator, p.key)?;
        let pr_type = Self::valid_type(scope, pr_type)?;
        match self.reservation {
            None => {
                self.reservation = Some(PersistentReservation { holder: initiator, pr_type });
                Ok(Vec::new())
            }
            Some(r) if r.pr_type == pr_type && self.holds_reservation(initiator) => Ok(Vec::new()),
            Some(_) => Err(Failure::Conflict),
        }
    }

    fn release(
        &mut self,
        initiator: u64,
        p: PrOutParams,
        scope: u8,
        pr_type: u8,
    ) -> Result<Notices, Failure> {
        self.check_registered(initiator, p.key)?;
        let Some(r) = self.reservation else { return Ok(Vec::new()) };
        if !self.holds_reservation(initiator) {
            return Ok(Vec::new());
        }
        if scope != 0 || pr_type != r.pr_type.code() {
            return Err(Failure::illegal(asc::INVALID_RELEASE_OF_PERSISTENT_RESERVATION));
        }
        self.reservation = None;
        let mut notices = Vec::new();
        if r.pr_type.is_registrants_only() || r.pr_type.is_all_registrants() {
            notices.extend(
                self.registrations
                    .keys()
                    .filter(|&&i| i != initiator)
                    .map(|&i| (i, UnitAttention::ReservationsReleased)),
            );
        }
        Ok(notices)
    }

    fn clear(&mut self, initiator: u64, p: PrOutParams) -> Result<Notices, Failure> {
        self.check_registered(initiator, p.key)?;
        let notices = self
            .registrations
            .keys()
            .filter(|&&i| i != initiator)
            .map(|&i| (i, UnitAttention::ReservationsPreempted))
            .collect();
        self.registrations.clear();
        self.reservation = None;
        self.generation = self.generation.wrapping_add(1);
        Ok(notices)
    }

    /// Removes the registrations of every initiator but `initiator` whose key is `key` (all of
    /// them but `initiator`'s if `key` is `None`); returns the REGISTRATIONS PREEMPTED notices.
    fn remove_registrations(&mut self, initiator: u64, key: Option<u64>) -> Notices {
        let victims: Vec<u64> = self
            .registrations
            .iter()
            .filter(|&(&i, &k)| i != initiator && key.is_none_or(|key| key == k))
            .map(|(&i, _)| i)
            .collect();
        for i in &victims {
            self.registrations.remove(i);
        }
        victims.into_iter().map(|i| (i, UnitAttention::RegistrationsPreempted)).collect()
    }

    fn preempt(
        &mut self,
        initiator: u64,
        p: PrOutParams,
        scope: u8,
        pr_type: u8,
    ) -> Result<Notices, Failure> {
        self.check_registered(initiator, p.key)?;
        let pr_type = Self::valid_type(scope, pr_type)?;
        let holder_key = match self.reservation {
            Some(r) if !r.pr_type.is_all_registrants() => self.registrations.get(&r.holder).copied(),
            _ => None,
        };
        let notices = match self.reservation {
            // All registrants and a zero key: everyone else goes, the preempter reserves.
            Some(r) if r.pr_type.is_all_registrants() && p.sa_key == 0 => {
                let notices = self.remove_registrations(initiator, None);
                self.reservation = Some(PersistentReservation { holder: initiator, pr_type });
                notices
            }
            // The key names the holder: its registrations go, the preempter reserves.
            Some(r) if holder_key == Some(p.sa_key) => {
                let mut notices = self.remove_registrations(initiator, Some(p.sa_key));
                self.reservation = Some(PersistentReservation { holder: initiator, pr_type });
                if r.pr_type != pr_type {
                    notices.extend(
                        self.registrations
                            .keys()
                            .filter(|&&i| i != initiator)
                            .map(|&i| (i, UnitAttention::ReservationsReleased)),
                    );
                }
                notices
            }
            // Otherwise only registrations are removed; the reservation stays.
            _ => {
                if p.sa_key == 0 {
                    return Err(Failure::INVALID_FIELD_IN_PARAMETER_LIST);
                }
                let notices = self.remove_registrations(initiator, Some(p.sa_key));
                if notices.is_empty() {
                    return Err(Failure::Conflict);
                }
                notices
            }
        };
        self.generation = self.generation.wrapping_add(1);
        Ok(notices)
    }

    /// PERSISTENT RESERVE IN data (not yet cut to the allocation length). `relative_port` is
    /// reported in READ FULL STATUS.
    pub(crate) fn persistent_reserve_in(
        &self,
        service_action: u8,
        relative_port: u16,
    ) -> Result<Vec<u8>, Failure> {
        let mut d = Vec::new();
        match service_action {
            pr_in::READ_KEYS => {
                d.extend_from_slice(&self.generation.to_be_bytes());
                d.extend_from_slice(&((8 * self.registrations.len()) as u32).to_be_bytes());
                for key in self.registrations.values() {
                    d.extend_from_slice(&key.to_be_bytes());
                }
            }
            pr_in::READ_RESERVATION => {
                d.extend_from_slice(&self.generation.to_be_bytes());
                match self.reservation {
                    None => d.extend_from_slice(&0u32.to_be_bytes()),
                    Some(r) => {
                        d.extend_from_slice(&16u32.to_be_bytes());
                        let key = if r.pr_type.is_all_registrants() {
                            0
                        } else {
                            self.registrations.get(&r.holder).copied().unwrap_or(0)
                        };
                        d.extend_from_slice(&key.to_be_bytes());
                        d.extend_from_slice(&[0; 4]); // obsolete
                        d.push(0); // reserved
                        d.push(r.pr_type.code()); // scope 0 (LU) | type
                        d.extend_from_slice(&[0; 2]); // obsolete
                    }
                }
            }
            pr_in::REPORT_CAPABILITIES => {
                d.extend_from_slice(&8u16.to_be_bytes());
                d.push(0x04 | 0x01); // ATP_C, PTPL_C (CRH, SIP_C, RLR_C clear)
                d.push(0x80 | u8::from(self.aptpl)); // TMV, ALLOW COMMANDS 0, PTPL_A
                d.push(0xEA); // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
                d.push(0x01); // EX_AC_AR
                d.extend_from_slice(&[0; 2]);
            }
            pr_in::READ_FULL_STATUS => {
                d.extend_from_slice(&self.generation.to_be_bytes());
                d.extend_from_slice(&((48 * self.registrations.len()) as u32).to_be_bytes());
                for (&initiator, &key) in &self.registrations {
                    d.extend_from_slice(&key.to_be_bytes());
                    d.extend_from_slice(&[0; 4]);
                    let holder = self.holds_reservation(initiator);
                    d.push(0x02 | u8::from(holder)); // ALL_TG_PT, R_HOLDER
                    d.push(match (holder, self.reservation) {
                        (true, Some(r)) => r.pr_type.code(),
                        _ => 0,
                    });
                    d.extend_from_slice(&[0; 4]);
                    d.extend_from_slice(&relative_port.to_be_bytes());
                    d.extend_from_slice(&24u32.to_be_bytes());
                    // FCP TransportID: format 00b, protocol 0h, N_PORT_NAME at byte 8.
                    d.extend_from_slice(&[0; 8]);
                    d.extend_from_slice(&initiator.to_be_bytes());
                    d.extend_from_slice(&[0; 8]);
                }
            }
            _ => return Err(Failure::INVALID_FIELD_IN_CDB),
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u64 = 0x2100_0000_0000_000A;
    const B: u64 = 0x2100_0000_0000_000B;
    const C: u64 = 0x2100_0000_0000_000C;

    fn params(key: u64, sa_key: u64) -> [u8; 24] {
        let mut p = [0u8; 24];
        p[..8].copy_from_slice(&key.to_be_bytes());
        p[8..16].copy_from_slice(&sa_key.to_be_bytes());
        p
    }

    fn out(
        s: &mut ReservationState,
        i: u64,
        sa: u8,
        t: u8,
        key: u64,
        sa_key: u64,
    ) -> Result<Notices, Failure> {
        s.persistent_reserve_out(i, sa, 0, t, 24, &params(key, sa_key))
    }

    fn registered(keys: &[(u64, u64)]) -> ReservationState {
        let mut s = ReservationState::new();
        for &(i, k) in keys {
            out(&mut s, i, pr_out::REGISTER, 0, 0, k).unwrap();
        }
        s
    }

    #[test]
    fn register_rules() {
        let mut s = ReservationState::new();
        assert_eq!(
            out(&mut s, A, pr_out::REGISTER, 0, 5, 1),
            Err(Failure::Conflict),
            "unregistered, key != 0"
        );
        assert_eq!(out(&mut s, A, pr_out::REGISTER, 0, 0, 0), Ok(vec![]));
        assert_eq!(s.generation(), 0, "registering key 0 does nothing");
        out(&mut s, A, pr_out::REGISTER, 0, 0, 0x11).unwrap();
        assert_eq!((s.key_of(A), s.generation()), (Some(0x11), 1));
        assert_eq!(out(&mut s, A, pr_out::REGISTER, 0, 0x12, 0x13), Err(Failure::Conflict), "wrong key");
        out(&mut s, A, pr_out::REGISTER, 0, 0x11, 0x13).unwrap();
        assert_eq!((s.key_of(A), s.generation()), (Some(0x13), 2));
        out(&mut s, A, pr_out::REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0xdead, 0x14).unwrap();
        assert_eq!(s.key_of(A), Some(0x14));
        out(&mut s, A, pr_out::REGISTER, 0, 0x14, 0).unwrap();
        assert_eq!((s.key_of(A), s.generation()), (None, 4));
        out(&mut s, B, pr_out::REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0x99, 0x15).unwrap();
        assert_eq!(s.key_of(B), Some(0x15));
    }

    #[test]
    fn parameter_list_checks() {
        let mut s = ReservationState::new();
        let p = params(0, 1);
        assert_eq!(s.persistent_reserve_out(A, 0, 0, 0, 23, &p), Err(Failure::PARAMETER_LIST_LENGTH_ERROR));
        assert_eq!(
            s.persistent_reserve_out(A, 0, 0, 0, 24, &p[..20]),
            Err(Failure::PARAMETER_LIST_LENGTH_ERROR)
        );
        let mut sip = p;
        sip[20] = 0x08;
        assert_eq!(
            s.persistent_reserve_out(A, 0, 0, 0, 24, &sip),
            Err(Failure::INVALID_FIELD_IN_PARAMETER_LIST)
        );
        assert_eq!(s.persistent_reserve_out(A, 0x05, 0, 0, 24, &p), Err(Failure::INVALID_FIELD_IN_CDB));
        assert_eq!(s, ReservationState::new());
        let mut aptpl = p;
        aptpl[20] = 0x01;
        s.persistent_reserve_out(A, 0, 0, 0, 24, &aptpl).unwrap();
        assert!(s.aptpl());
    }

    #[test]
    fn write_exclusive_access() {
        let mut s = registered(&[(A, 1), (B, 2)]);
        assert!(s.may_write(C), "registrations alone restrict nothing");
        assert_eq!(out(&mut s, C, pr_out::RESERVE, 1, 0, 0), Err(Failure::Conflict), "unregistered");
        assert_eq!(out(&mut s, A, pr_out::RESERVE, 1, 9, 0), Err(Failure::Conflict), "wrong key");
        assert_eq!(
            s.persistent_reserve_out(A, pr_out::RESERVE, 1, 1, 24, &params(1, 0)),
            Err(Failure::INVALID_FIELD_IN_CDB),
            "scope"
        );
        assert_eq!(out(&mut s, A, pr_out::RESERVE, 2, 1, 0), Err(Failure::INVALID_FIELD_IN_CDB), "type");
        out(&mut s, A, pr_out::RESERVE, 1, 1, 0).unwrap();
        assert_eq!(s.generation(), 2, "RESERVE does not count");
        assert_eq!(out(&mut s, A, pr_out::RESERVE, 1, 1, 0), Ok(vec![]), "same type again");
        assert_eq!(out(&mut s, A, pr_out::RESERVE, 3, 1, 0), Err(Failure::Conflict), "other type");
        assert_eq!(out(&mut s, B, pr_out::RESERVE, 1, 2, 0), Err(Failure::Conflict));
        assert!(s.may_read(A) && s.may_write(A));
        assert!(s.may_read(B) && !s.may_write(B));
        assert!(s.may_read(C) && !s.may_write(C));
        assert!(s.permits(C, Access::Read) && !s.permits(C, Access::Write) && s.permits(C, Access::Shared));
        // RELEASE by a non-holder does nothing; by the holder with the wrong type fails.
        assert_eq!(out(&mut s, B, pr_out::RELEASE, 1, 2, 0), Ok(vec![]));
        assert!(s.reservation().is_some());
        assert_eq!(
            out(&mut s, A, pr_out::RELEASE, 3, 1, 0),
            Err(Failure::illegal(asc::INVALID_RELEASE_OF_PERSISTENT_RESERVATION))
        );
        assert_eq!(out(&mut s, A, pr_out::RELEASE, 1, 1, 0), Ok(vec![]), "no UA for WE");
        assert!(s.reservation().is_none() && s.may_write(C));
    }

    #[test]
    fn exclusive_access_registrants_only() {
        let mut s = registered(&[(A, 1), (B, 2)]);
        out(&mut s, A, pr_out::RESERVE, 6, 1, 0).unwrap();
        assert!(s.may_read(B) && s.may_write(B), "registrants have access");
        assert!(!s.may_read(C) && !s.may_write(C));
        assert!(!s.holds_reservation(B), "but only A holds it");
        assert_eq!(out(&mut s, B, pr_out::RELEASE, 6, 2, 0), Ok(vec![]));
        assert!(s.reservation().is_some());
        assert_eq!(
            out(&mut s, A, pr_out::RELEASE, 6, 1, 0),
            Ok(vec![(B, UnitAttention::ReservationsReleased)])
        );
        // Unregistering the holder releases too, with the same UA.
        out(&mut s, A, pr_out::RESERVE, 6, 1, 0).unwrap();
        assert_eq!(
            out(&mut s, A, pr_out::REGISTER, 0, 1, 0),
            Ok(vec![(B, UnitAttention::ReservationsReleased)])
        );
        assert!(s.reservation().is_none());
    }

    #[test]
    fn all_registrants_lasts_until_the_last_registrant_leaves() {
        let mut s = registered(&[(A, 1), (B, 2)]);
        out(&mut s, A, pr_out::RESERVE, 8, 1, 0).unwrap();
        assert!(s.holds_reservation(A) && s.holds_reservation(B));
        assert_eq!(out(&mut s, B, pr_out::RESERVE, 8, 2, 0), Ok(vec![]), "B holds it too");
        out(&mut s, A, pr_out::REGISTER, 0, 1, 0).unwrap();
        assert!(s.reservation().is_some());
        assert!(!s.may_read(A));
        out(&mut s, B, pr_out::REGISTER, 0, 2, 0).unwrap();
        assert!(s.reservation().is_none());
    }

    #[test]
    fn clear_removes_everything_and_tells_the_others() {
        let mut s = registered(&[(A, 1), (B, 2), (C, 3)]);
        out(&mut s, B, pr_out::RESERVE, 3, 2, 0).unwrap();
        assert_eq!(out(&mut s, C, pr_out::CLEAR, 0, 4, 0), Err(Failure::Conflict));
        let n = out(&mut s, C, pr_out::CLEAR, 0, 3, 0).unwrap();
        assert_eq!(
            n,
            vec![(A, UnitAttention::ReservationsPreempted), (B, UnitAttention::ReservationsPreempted)]
        );
        assert_eq!((s.registrations().count(), s.reservation(), s.generation()), (0, None, 4));
    }

    #[test]
    fn preempt_the_holder() {
        let mut s = registered(&[(A, 1), (B, 2), (C, 2)]);
        out(&mut s, B, pr_out::RESERVE, 1, 2, 0).unwrap();
        let g = s.generation();
        let n = out(&mut s, A, pr_out::PREEMPT, 3, 1, 2).unwrap();
        assert_eq!(
            n,
            vec![(B, UnitAttention::RegistrationsPreempted), (C, UnitAttention::RegistrationsPreempted),],
            "every registration with the key goes; type changed but nobody else is left"
        );
        assert_eq!(
            s.reservation(),
            Some(PersistentReservation { holder: A, pr_type: PrType::ExclusiveAccess })
        );
        assert_eq!(s.generation(), g + 1);
        assert!(!s.may_read(B));
    }

    #[test]
    fn preempt_type_change_tells_remaining_registrants() {
        let mut s = registered(&[(A, 1), (B, 2), (C, 3)]);
        out(&mut s, B, pr_out::RESERVE, 1, 2, 0).unwrap();
        let n = out(&mut s, A, pr_out::PREEMPT, 3, 1, 2).unwrap();
        assert_eq!(
            n,
            vec![(B, UnitAttention::RegistrationsPreempted), (C, UnitAttention::ReservationsReleased)]
        );
        // Same type: no RESERVATIONS RELEASED.
        let n = out(&mut s, C, pr_out::PREEMPT, 3, 3, 1).unwrap();
        assert_eq!(n, vec![(A, UnitAttention::RegistrationsPreempted)]);
        assert_eq!(s.reservation().unwrap().holder, C);
    }

    #[test]
    fn preempt_registrations_only() {
        let mut s = registered(&[(A, 1), (B, 2), (C, 3)]);
        assert_eq!(out(&mut s, A, pr_out::PREEMPT, 1, 1, 0), Err(Failure::INVALID_FIELD_IN_PARAMETER_LIST));
        assert_eq!(out(&mut s, A, pr_out::PREEMPT, 1, 1, 7), Err(Failure::Conflict), "no such key");
        assert_eq!(out(&mut s, A, pr_out::PREEMPT, 1, 1, 1), Err(Failure::Conflict), "own key only");
        assert_eq!(
            out(&mut s, A, pr_out::PREEMPT, 1, 1, 3),
            Ok(vec![(C, UnitAttention::RegistrationsPreempted)])
        );
        assert!(s.reservation().is_none(), "no reservation is created without one to preempt");
        out(&mut s, B, pr_out::RESERVE, 1, 2, 0).unwrap();
        // A key that is not the holder's removes only registrations.
        out(&mut s, C, pr_out::REGISTER, 0, 0, 3).unwrap();
        assert_eq!(
            out(&mut s, A, pr_out::PREEMPT, 3, 1, 3),
            Ok(vec![(C, UnitAttention::RegistrationsPreempted)])
        );
        assert_eq!(s.reservation().unwrap().holder, B);
    }

    #[test]
    fn preempt_all_registrants_with_zero_key() {
        let mut s = registered(&[(A, 1), (B, 2), (C, 3)]);
        out(&mut s, B, pr_out::RESERVE, 7, 2, 0).unwrap();
        let n = out(&mut s, A, pr_out::PREEMPT, 1, 1, 0).unwrap();
        assert_eq!(
            n,
            vec![(B, UnitAttention::RegistrationsPreempted), (C, UnitAttention::RegistrationsPreempted)]
        );
        assert_eq!(
            s.reservation(),
            Some(PersistentReservation { holder: A, pr_type: PrType::WriteExclusive })
        );
        assert_eq!(s.registrations().collect::<Vec<_>>(), [(A, 1)]);
    }

    #[test]
    fn legacy_reserve_release() {
        let mut s = ReservationState::new();
        s.reserve_legacy(A).unwrap();
        s.reserve_legacy(A).unwrap();
        assert_eq!(s.reserve_legacy(B), Err(Failure::Conflict));
        assert!(s.may_read(A) && s.may_write(A) && !s.may_read(B) && !s.may_write(B));
        assert!(!s.permits(B, Access::Shared) && s.permits(B, Access::Exempt));
        assert!(!s.permits(A, Access::Persistent), "PR commands conflict under SPC-2 reservations");
        s.release_legacy(B).unwrap();
        assert_eq!(s.legacy_holder(), Some(A), "RELEASE by another does nothing");
        s.release_legacy(A).unwrap();
        assert_eq!(s.legacy_holder(), None);
        let mut s = registered(&[(A, 1)]);
        assert_eq!(s.reserve_legacy(A), Err(Failure::Conflict));
        assert_eq!(s.release_legacy(B), Err(Failure::Conflict));
    }

    #[test]
    fn power_on_keeps_only_aptpl_registrations() {
        let mut s = registered(&[(A, 1)]);
        out(&mut s, A, pr_out::RESERVE, 1, 1, 0).unwrap();
        s.power_on();
        assert_eq!(s, ReservationState::new());
        let mut s = ReservationState::new();
        let mut p = params(0, 1);
        p[20] = 1;
        s.persistent_reserve_out(A, 0, 0, 0, 24, &p).unwrap();
        s.power_on();
        assert_eq!(s.key_of(A), Some(1));
        assert_eq!(s.generation(), 0);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ReservationState>(&json).unwrap(), s);
    }

    #[test]
    fn pr_in_data_layouts() {
        let mut s = registered(&[(A, 0x1111), (B, 0x2222)]);
        out(&mut s, B, pr_out::RESERVE, 5, 0x2222, 0).unwrap();
        let keys = s.persistent_reserve_in(pr_in::READ_KEYS, 1).unwrap();
        let mut want = vec![0, 0, 0, 2, 0, 0, 0, 16];
        want.extend_from_slice(&0x1111u64.to_be_bytes());
        want.extend_from_slice(&0x2222u64.to_be_bytes());
        assert_eq!(keys, want);

        let res = s.persistent_reserve_in(pr_in::READ_RESERVATION, 1).unwrap();
        let mut want = vec![0, 0, 0, 2, 0, 0, 0, 16];
        want.extend_from_slice(&0x2222u64.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0x05, 0, 0]);
        assert_eq!(res, want);
        assert_eq!(
            ReservationState::new().persistent_reserve_in(pr_in::READ_RESERVATION, 1).unwrap(),
            [0, 0, 0, 0, 0, 0, 0, 0]
        );

        let caps = s.persistent_reserve_in(pr_in::REPORT_CAPABILITIES, 1).unwrap();
        assert_eq!(caps, [0x00, 0x08, 0x05, 0x80, 0xEA, 0x01, 0x00, 0x00]);

        let full = s.persistent_reserve_in(pr_in::READ_FULL_STATUS, 3).unwrap();
        assert_eq!(full.len(), 8 + 2 * 48);
        assert_eq!(&full[..8], &[0, 0, 0, 2, 0, 0, 0, 96]);
        let a = &full[8..56];
        assert_eq!(&a[..8], &0x1111u64.to_be_bytes());
        assert_eq!((a[12], a[13]), (0x02, 0x00), "A is registered, not the holder");
        assert_eq!(&a[18..24], &[0, 3, 0, 0, 0, 24]);
        assert_eq!(&a[24..32], &[0; 8]);
        assert_eq!(&a[32..40], &A.to_be_bytes());
        let b = &full[56..104];
        assert_eq!((b[12], b[13]), (0x03, 0x05), "B holds a WE-RO reservation");

        assert_eq!(s.persistent_reserve_in(0x04, 1), Err(Failure::INVALID_FIELD_IN_CDB));
    }
}
