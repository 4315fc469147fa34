//! Print every FP API call: the seed's name, the Rust message, and its direction, one per
//! line, so the mapping can be checked against seed 003 section 2.

use dve_fp_api::{API_CALLS, Direction};

fn main() {
    for call in API_CALLS {
        let direction = match call.direction {
            Direction::FpToCp => "FP->CP",
            Direction::CpToFp => "CP->FP",
        };
        println!("{:<40} {:<28} {direction}", call.seed, call.rust);
    }
}
