//! Checks of management requests before they reach the engine: required fields, sizes,
//! WWPN strings and layouts, each refusal naming its field. What passes is a typed request
//! naming devices by target port name; [`LayoutRequest::resolve`] turns those names into
//! device ids against the control path (an unknown name is `NOT_FOUND`, nothing changed).

use dve_fp_api::ids::{DeviceId, Wwn};
use dve_proto::management as pb;
use tonic::Status;

use super::status::{invalid_field, missing_field};
use crate::ControlPath;
use crate::control_path::copy_granularity_refusal;
use crate::error::Error;
use crate::volume::LayoutSpec;

/// Parse a WWPN written as eight colon-separated hex bytes (`50:06:01:60:3b:20:19:a1`) or as
/// 16 hex digits, optionally prefixed `0x`.
pub fn parse_wwpn(text: &str) -> Result<Wwn, String> {
    let text = text.trim();
    let digits: String = if text.contains(':') {
        let parts: Vec<&str> = text.split(':').collect();
        if parts.len() != 8 || parts.iter().any(|p| p.len() != 2) {
            return Err(format!("{text:?} is not eight colon-separated hex bytes"));
        }
        parts.concat()
    } else {
        text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text).to_string()
    };
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{text:?} is not a WWPN (16 hex digits, e.g. 50:06:01:60:3b:20:19:a1)"));
    }
    u64::from_str_radix(&digits, 16).map(Wwn).map_err(|e| format!("{text:?}: {e}"))
}

/// A WWPN field, required.
pub fn wwpn_field(field: &str, text: &str) -> Result<Wwn, Status> {
    if text.trim().is_empty() {
        return Err(missing_field(field));
    }
    parse_wwpn(text).map_err(|reason| invalid_field(field, reason))
}

/// A name field (volume, snapshot), required.
pub fn name_field<'a>(field: &str, name: &'a str) -> Result<&'a str, Status> {
    if name.is_empty() {
        return Err(missing_field(field));
    }
    if name.len() > 255 || name.chars().any(char::is_control) {
        return Err(invalid_field(field, "at most 255 printable characters"));
    }
    Ok(name)
}

/// A placement: its device (a target port name) and a start LBA that must be 0, because the
/// control path claims space on devices itself.
pub fn placement_field(field: &str, placement: Option<&pb::Placement>) -> Result<Wwn, Status> {
    let placement = placement.ok_or_else(|| missing_field(field))?;
    if placement.start_lba != 0 {
        return Err(invalid_field(
            &format!("{field}.start_lba"),
            "the control path claims space on devices itself: leave it 0",
        ));
    }
    wwpn_field(&format!("{field}.device_id"), &placement.device_id)
}

fn placements(field: &str, list: &[pb::Placement]) -> Result<Vec<Wwn>, Status> {
    list.iter().enumerate().map(|(i, p)| placement_field(&format!("{field}[{i}]"), Some(p))).collect()
}

fn unit_field(field: &str, unit: u32) -> Result<u64, Status> {
    if unit == 0 || !unit.is_power_of_two() {
        return Err(invalid_field(field, format!("{unit} is not a power of two")));
    }
    Ok(u64::from(unit))
}

/// A layout as a request names it: devices by target port name.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum LayoutRequest {
    /// One device.
    Linear(Wwn),
    /// RAID 0.
    Stripe {
        /// Stripe unit in blocks.
        unit_blocks: u64,
        /// Members in order.
        members: Vec<Wwn>,
    },
    /// RAID 1 with one device per side.
    Mirror(Vec<Wwn>),
    /// RAID 10: two stripe sets of equal width and unit.
    Raid10 {
        /// Stripe unit in blocks.
        unit_blocks: u64,
        /// Side 0's members.
        side_a: Vec<Wwn>,
        /// Side 1's members.
        side_b: Vec<Wwn>,
    },
    /// A primary device journaled to a journal device.
    Journaled {
        /// The primary.
        primary: Wwn,
        /// The journal device (split between the workers by the control path).
        journal: Wwn,
        /// Journal blocks in all.
        journal_blocks: u64,
    },
}

impl LayoutRequest {
    /// Check a layout field of a request.
    pub fn parse(field: &str, layout: Option<&pb::Layout>) -> Result<LayoutRequest, Status> {
        let kind = layout.and_then(|l| l.kind.as_ref()).ok_or_else(|| missing_field(field))?;
        Ok(match kind {
            pb::layout::Kind::Linear(linear) => LayoutRequest::Linear(placement_field(
                &format!("{field}.linear.placement"),
                linear.placement.as_ref(),
            )?),
            pb::layout::Kind::Stripe(stripe) => {
                let unit_blocks = unit_field(&format!("{field}.stripe.unit_blocks"), stripe.unit_blocks)?;
                let members = placements(&format!("{field}.stripe.members"), &stripe.members)?;
                if members.len() < 2 {
                    return Err(invalid_field(
                        &format!("{field}.stripe.members"),
                        "a stripe needs two or more",
                    ));
                }
                LayoutRequest::Stripe { unit_blocks, members }
            }
            pb::layout::Kind::Mirror(mirror) => Self::parse_mirror(field, mirror)?,
            pb::layout::Kind::Journaled(journaled) => {
                let inner = format!("{field}.journaled.primary");
                let primary = match LayoutRequest::parse(&inner, journaled.primary.as_deref())? {
                    LayoutRequest::Linear(device) => device,
                    _ => return Err(invalid_field(&inner, "the journaled primary must be linear")),
                };
                let journals = placements(&format!("{field}.journaled.journals"), &journaled.journals)?;
                let [journal] = journals[..] else {
                    return Err(invalid_field(
                        &format!("{field}.journaled.journals"),
                        "name exactly one journal device: the control path splits it between the workers",
                    ));
                };
                if journaled.journal_blocks == 0 {
                    return Err(invalid_field(&format!("{field}.journaled.journal_blocks"), "must not be 0"));
                }
                LayoutRequest::Journaled { primary, journal, journal_blocks: journaled.journal_blocks }
            }
        })
    }

    fn parse_mirror(field: &str, mirror: &pb::Mirror) -> Result<LayoutRequest, Status> {
        let sides_field = format!("{field}.mirror.sides");
        if mirror.sides.len() < 2 {
            return Err(invalid_field(&sides_field, "a mirror needs two or more sides"));
        }
        let sides = mirror
            .sides
            .iter()
            .enumerate()
            .map(|(i, side)| LayoutRequest::parse(&format!("{sides_field}[{i}]"), Some(side)))
            .collect::<Result<Vec<_>, Status>>()?;
        if let Some(devices) = sides
            .iter()
            .map(|s| if let LayoutRequest::Linear(d) = s { Some(*d) } else { None })
            .collect::<Option<Vec<Wwn>>>()
        {
            return Ok(LayoutRequest::Mirror(devices));
        }
        match &sides[..] {
            [
                LayoutRequest::Stripe { unit_blocks: a_unit, members: side_a },
                LayoutRequest::Stripe { unit_blocks: b_unit, members: side_b },
            ] => {
                if a_unit != b_unit || side_a.len() != side_b.len() {
                    return Err(invalid_field(
                        &sides_field,
                        "RAID 10 sides need the same width and stripe unit",
                    ));
                }
                Ok(LayoutRequest::Raid10 {
                    unit_blocks: *a_unit,
                    side_a: side_a.clone(),
                    side_b: side_b.clone(),
                })
            }
            _ => Err(invalid_field(
                &sides_field,
                "sides are all linear (a mirror) or exactly two stripes (RAID 10); other mixes are not supported",
            )),
        }
    }

    /// Every device the layout names, in layout order.
    pub fn devices(&self) -> Vec<Wwn> {
        match self {
            LayoutRequest::Linear(d) => vec![*d],
            LayoutRequest::Stripe { members, .. } => members.clone(),
            LayoutRequest::Mirror(sides) => sides.clone(),
            LayoutRequest::Raid10 { side_a, side_b, .. } => side_a.iter().chain(side_b).copied().collect(),
            LayoutRequest::Journaled { primary, journal, .. } => vec![*primary, *journal],
        }
    }

    /// The control path's layout, with each target port name mapped to its device.
    pub fn resolve(&self, control: &ControlPath) -> Result<LayoutSpec, Error> {
        let ids = |list: &[Wwn]| {
            list.iter().map(|w| control.device_of(*w)).collect::<Result<Vec<DeviceId>, Error>>()
        };
        Ok(match self {
            LayoutRequest::Linear(d) => LayoutSpec::Linear { devices: vec![control.device_of(*d)?] },
            LayoutRequest::Stripe { unit_blocks, members } => {
                LayoutSpec::Stripe { devices: ids(members)?, unit_blocks: *unit_blocks }
            }
            LayoutRequest::Mirror(sides) => LayoutSpec::Mirror { sides: ids(sides)? },
            LayoutRequest::Raid10 { unit_blocks, side_a, side_b } => {
                LayoutSpec::Raid10 { side_a: ids(side_a)?, side_b: ids(side_b)?, unit_blocks: *unit_blocks }
            }
            LayoutRequest::Journaled { primary, journal, journal_blocks } => LayoutSpec::Journal {
                primary: control.device_of(*primary)?,
                journal: control.device_of(*journal)?,
                journal_blocks: *journal_blocks,
            },
        })
    }
}

/// The checked fields of a snapshot request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SnapshotRequest {
    /// The source volume's name.
    pub source: String,
    /// The snapshot's name.
    pub snapshot: String,
    /// Whether hosts may write the snapshot.
    pub writable: bool,
    /// The device its store is claimed on, if chosen (by target port name).
    pub store: Option<Wwn>,
    /// Blocks a write to the source pushes at least, if chosen.
    pub copy_granularity_blocks: Option<u64>,
}

impl SnapshotRequest {
    /// Check a snapshot request (`field` prefixes field names, for group members).
    pub fn parse(field: &str, request: &pb::CreateSnapshotRequest) -> Result<SnapshotRequest, Status> {
        let source = name_field(&format!("{field}source"), &request.source)?;
        let snapshot = name_field(&format!("{field}snapshot"), &request.snapshot)?;
        let store = match &request.store {
            None => None,
            Some(placement) => Some(placement_field(&format!("{field}store"), Some(placement))?),
        };
        let copy_granularity_blocks = match u64::from(request.copy_granularity_blocks) {
            0 => None,
            blocks => match copy_granularity_refusal(blocks) {
                Some(why) => return Err(invalid_field(&format!("{field}copy_granularity_blocks"), why)),
                None => Some(blocks),
            },
        };
        Ok(SnapshotRequest {
            source: source.to_string(),
            snapshot: snapshot.to_string(),
            writable: request.writable,
            store,
            copy_granularity_blocks,
        })
    }
}

/// The new devices of a migration: a linear destination names one, a stripe destination
/// names several in the order of the volume's data devices (its unit must be 0: the volume
/// keeps its layout, only its devices change).
pub fn migration_destination(layout: Option<&pb::Layout>) -> Result<Vec<Wwn>, Status> {
    let kind = layout.and_then(|l| l.kind.as_ref()).ok_or_else(|| missing_field("destination"))?;
    match kind {
        pb::layout::Kind::Linear(linear) => {
            Ok(vec![placement_field("destination.linear.placement", linear.placement.as_ref())?])
        }
        pb::layout::Kind::Stripe(stripe) => {
            if stripe.unit_blocks != 0 {
                return Err(invalid_field(
                    "destination.stripe.unit_blocks",
                    "a migration keeps the volume's stripe unit: leave it 0 and list the new devices",
                ));
            }
            let devices = placements("destination.stripe.members", &stripe.members)?;
            if devices.is_empty() {
                return Err(missing_field("destination.stripe.members"));
            }
            Ok(devices)
        }
        pb::layout::Kind::Mirror(_) | pb::layout::Kind::Journaled(_) => Err(invalid_field(
            "destination",
            "name the new devices as a linear placement or a stripe's members",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wwpns_parse_in_both_spellings_and_malformed_ones_are_refused() {
        assert_eq!(parse_wwpn("50:06:01:60:3b:20:19:a1"), Ok(Wwn(0x5006_0160_3b20_19a1)));
        assert_eq!(parse_wwpn("500601603B2019A1"), Ok(Wwn(0x5006_0160_3b20_19a1)));
        for bad in ["", "50:06", "zz:06:01:60:3b:20:19:a1", "500601603b2019a1ff", "5:06:01:60:3b:20:19:a1:"] {
            assert!(parse_wwpn(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn layouts_name_the_offending_field() {
        let linear = |id: &str, lba| pb::Layout {
            kind: Some(pb::layout::Kind::Linear(pb::Linear {
                placement: Some(pb::Placement { device_id: id.into(), start_lba: lba }),
            })),
        };
        let err = LayoutRequest::parse("layout", Some(&linear("bogus", 0))).unwrap_err();
        assert!(err.message().contains("layout.linear.placement.device_id"), "{}", err.message());
        let err = LayoutRequest::parse("layout", Some(&linear("0x2200000000000001", 5))).unwrap_err();
        assert!(err.message().contains("start_lba"), "{}", err.message());
        let mirror = pb::Layout {
            kind: Some(pb::layout::Kind::Mirror(pb::Mirror {
                sides: vec![linear("0x2200000000000001", 0), linear("0x2200000000000002", 0)],
            })),
        };
        assert_eq!(
            LayoutRequest::parse("layout", Some(&mirror)).unwrap(),
            LayoutRequest::Mirror(vec![Wwn(0x2200_0000_0000_0001), Wwn(0x2200_0000_0000_0002)])
        );
        assert!(LayoutRequest::parse("layout", None).unwrap_err().message().contains("layout"));
    }
}
