//! The `dve-sim` binary (being written).
fn main() {}
