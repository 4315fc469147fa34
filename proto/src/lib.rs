//! `dve-proto`: the protocol buffers of DVE's two gRPC services and the code prost and tonic
//! generate from them: `management` (volumes, exposures, data services, tasks, statistics) and
//! `coherency` (ordered reliable datagrams between engines).

/// The management API that `dvectl` and any gRPC client use (`proto/management.proto`).
#[allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod management {
    tonic::include_proto!("dve.management.v1");
}

/// Ordered reliable datagrams between engines (`proto/coherency.proto`).
#[allow(missing_docs, clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod coherency {
    tonic::include_proto!("dve.coherency.v1");
}
