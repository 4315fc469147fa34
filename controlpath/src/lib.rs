//! `dve-controlpath`: the control path. It owns all metadata, answers every fast-path fault,
//! emulates SCSI for virtual LUNs, runs the fabric services and the data services, and serves
//! the management gRPC API.
//!
//! Modules: the engine's address plan ([`address`]), the control path core
//! ([`control_path`]), physical devices ([`device`]), the fabric services ([`fabric`]),
//! frames it builds ([`frames`]), volumes and their maps ([`volume`]), SCSI emulation
//! ([`scsi`]), the metadata store ([`store`]), the management gRPC service ([`management`])
//! and the runtime of the `dved` daemon ([`daemon`]).

pub mod address;
pub mod control_path;
pub mod daemon;
pub mod device;
pub mod error;
pub mod fabric;
pub mod frames;
pub mod management;
pub mod scsi;
pub mod store;
pub mod text_position;
pub mod volume;

pub use control_path::{ControlEvent, ControlPath, ControlPathConfig};
pub use error::Error;
