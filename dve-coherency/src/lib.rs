//! `dve-coherency`: coherency between engines. Oplock state machines, cluster membership,
//! eviction and caretaker recovery, and the transports that carry their messages (gRPC between
//! processes, an in-memory network for the simulator).
