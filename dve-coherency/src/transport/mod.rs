//! Transports for [`Envelope`](crate::message::Envelope)s: ordered reliable datagrams between
//! engines. `memory` is the simulated network; `grpc` runs over tonic bidirectional streams.

pub mod grpc;
pub mod memory;
