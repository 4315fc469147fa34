//! The one mapping from control-path errors to gRPC status codes (DESIGN.md principle 7: a
//! bad request gets a status that names the field), plus the constructors the request checks
//! use for errors found before the engine is touched.

use tonic::{Code, Status};

use crate::ControlPath;
use crate::error::Error;

/// The gRPC status of a control-path error. Every variant is mapped explicitly:
/// arguments to `INVALID_ARGUMENT` (the message names the field), unknown names and ids to
/// `NOT_FOUND`, a taken name to `ALREADY_EXISTS`, missing space to `RESOURCE_EXHAUSTED`,
/// state conflicts to `FAILED_PRECONDITION`, what is not built yet to `UNIMPLEMENTED`, a failed metadata commit to `UNAVAILABLE` (the
/// change was not made; retrying may succeed) and a mapping-model refusal or a daemon failure
/// to `INTERNAL`.
pub fn status_of(error: &Error) -> Status {
    let code = match error {
        Error::InvalidArgument { .. } => Code::InvalidArgument,
        Error::UnknownVolume(_)
        | Error::UnknownVolumeName(_)
        | Error::UnknownDevice(_)
        | Error::UnknownTarget(_)
        | Error::UnknownLun(_)
        | Error::UnknownSide(_) => Code::NotFound,
        Error::DuplicateVolume(_) => Code::AlreadyExists,
        Error::NoSpace { .. } => Code::ResourceExhausted,
        Error::DeviceNotReady(_) | Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::Store(_) => Code::Unavailable,
        Error::Mapping(_) | Error::Daemon(_) => Code::Internal,
        Error::Unsupported(_) => Code::Unimplemented,
    };
    Status::new(code, error.to_string())
}

/// [`status_of`], with the device the error names (by id) also named by its target port
/// name, the name requests use.
pub fn status_naming_devices(control: &ControlPath, error: &Error) -> Status {
    let status = status_of(error);
    let device = match error {
        Error::UnknownDevice(d) | Error::DeviceNotReady(d) | Error::NoSpace { device: d, .. } => *d,
        _ => return status,
    };
    match control.devices().get(device) {
        Some(d) => {
            Status::new(status.code(), format!("{} ({device} is target {})", status.message(), d.target))
        }
        None => status,
    }
}

/// `INVALID_ARGUMENT` naming `field`, for a request refused before it reaches the engine.
pub fn invalid_field(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("invalid {field}: {reason}"))
}

/// `INVALID_ARGUMENT` for a required field left empty.
pub fn missing_field(field: &str) -> Status {
    Status::invalid_argument(format!("invalid {field}: missing"))
}

/// `UNIMPLEMENTED` naming what the control path does not support yet.
pub fn not_supported(what: impl std::fmt::Display) -> Status {
    Status::unimplemented(format!("not supported by the control path yet: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dve_fp_api::ids::{DeviceId, LvId, Wwn};

    #[test]
    fn every_error_variant_maps_to_its_code() {
        let cases = [
            (Error::invalid("blocks", "zero"), Code::InvalidArgument),
            (Error::UnknownVolume(LvId(3)), Code::NotFound),
            (Error::UnknownVolumeName("v".into()), Code::NotFound),
            (Error::UnknownDevice(DeviceId(1)), Code::NotFound),
            (Error::UnknownTarget(Wwn(7)), Code::NotFound),
            (Error::UnknownLun(3), Code::NotFound),
            (Error::UnknownSide("m has no side 2".into()), Code::NotFound),
            (Error::Unsupported("deleting snapshots".into()), Code::Unimplemented),
            (Error::DuplicateVolume("v".into()), Code::AlreadyExists),
            (Error::NoSpace { device: DeviceId(1), wanted: 9, free: 1 }, Code::ResourceExhausted),
            (Error::DeviceNotReady(DeviceId(1)), Code::FailedPrecondition),
            (Error::FailedPrecondition("busy".into()), Code::FailedPrecondition),
            (Error::Store("disk full".into()), Code::Unavailable),
            (Error::Daemon("worker 0 panicked".into()), Code::Internal),
        ];
        for (error, code) in cases {
            assert_eq!(status_of(&error).code(), code, "{error}");
        }
        assert!(status_of(&Error::invalid("blocks", "zero")).message().contains("blocks"));
    }
}
