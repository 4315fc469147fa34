//! The control path's error type: what a management request or a metadata operation got wrong,
//! named so that the caller (a gRPC client, a scenario file) can fix it.

use dve_fp_api::ids::{DeviceId, LvId, Wwn};

/// Errors of the control path.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// No device with this id.
    #[error("unknown device {0:?}")]
    UnknownDevice(DeviceId),
    /// The device has not answered READ CAPACITY yet.
    #[error("device {0:?} is not ready (capacity unknown)")]
    DeviceNotReady(DeviceId),
    /// No device is known for this target port name.
    #[error("no device behind target port name {0}")]
    UnknownTarget(Wwn),
    /// Not enough free space on a device.
    #[error("device {device:?} has {free} free blocks, {wanted} wanted")]
    NoSpace {
        /// The device.
        device: DeviceId,
        /// Blocks asked for.
        wanted: u64,
        /// Blocks free.
        free: u64,
    },
    /// No volume with this id.
    #[error("unknown volume {0:?}")]
    UnknownVolume(LvId),
    /// No volume with this name.
    #[error("unknown volume named {0:?}")]
    UnknownVolumeName(String),
    /// A volume has no such mirror side (the message names the volume and its sides).
    #[error("unknown mirror side: {0}")]
    UnknownSide(String),
    /// No volume is exposed at this LUN of the virtual target.
    #[error("no volume is exposed as LUN {0}")]
    UnknownLun(u16),
    /// The control path does not do this yet.
    #[error("not supported by the control path yet: {0}")]
    Unsupported(String),
    /// A volume with this name exists already.
    #[error("a volume named {0:?} exists already")]
    DuplicateVolume(String),
    /// A field of a request is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The operation is not possible in the volume's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The mapping model refused a change.
    #[error("mapping: {0}")]
    Mapping(#[from] dve_fp_api::Error),
    /// The metadata store failed.
    #[error("metadata store: {0}")]
    Store(String),
    /// The daemon could not start or stop (see `daemon::DaemonError`).
    #[error("daemon: {0}")]
    Daemon(String),
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Error {
        Error::Store(e.to_string())
    }
}

impl Error {
    /// An invalid-argument error for `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidArgument { field, reason: reason.into() }
    }
}
