//! `dve-controlpath`: the control path. It owns all metadata, answers every fast-path fault,
//! emulates SCSI for virtual LUNs, runs the fabric services and the data services, and serves
//! the management gRPC API.

pub mod scsi;
pub mod store;
