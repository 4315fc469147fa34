//! `dve-sim`: the deterministic packet-level simulator. It runs the real fast-path,
//! control-path and coherency code in virtual time over simulated links, hosts and disks, and
//! checks every read against an integrity oracle.
