//! Replays the malformed frames committed under `tests/corpus/` (made by
//! `tests/corpus/generate.py`): each must be rejected with the error variant listed in
//! `tests/corpus/EXPECTED`, and no prefix of any of them may panic.

use std::path::Path;

use dve_wire::parse_packet;

#[test]
fn every_malformed_frame_is_rejected_with_the_expected_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let manifest = std::fs::read_to_string(dir.join("EXPECTED")).expect("tests/corpus/EXPECTED");
    let mut checked = 0;
    let mut problems = Vec::new();
    for line in manifest.lines().filter(|l| !l.trim().is_empty()) {
        let (name, expected) = line.split_once(' ').expect("`file variant` per line");
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        match parse_packet(&bytes) {
            Ok(p) => problems.push(format!("{name}: parsed, expected {expected}: {p:?}")),
            Err(e) => {
                let got = format!("{e:?}");
                if !got.starts_with(expected) {
                    problems.push(format!("{name}: got {got} ({e}), expected {expected}"));
                }
            }
        }
        // Every truncation of a malformed frame is handled too.
        for n in 0..bytes.len() {
            let _ = parse_packet(&bytes[..n]);
        }
        checked += 1;
    }
    assert!(checked >= 30, "corpus has only {checked} frames");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_truncation_of_every_sample_frame_is_an_error_not_a_panic() {
    #[allow(dead_code)]
    #[path = "../examples/sample_capture/scenario.rs"]
    mod scenario;
    for (_, frame) in scenario::build().frames {
        assert!(parse_packet(&frame).is_ok(), "sample frame does not parse");
        for n in 0..frame.len() {
            // FIP frames carry Ethernet padding, so some prefixes still parse.
            let _ = parse_packet(&frame[..n]);
        }
        // Single-bit flips anywhere give an error or a frame that still parses, never a panic.
        for i in (0..frame.len()).step_by(3) {
            let mut f = frame.clone();
            f[i] ^= 0x20;
            let _ = parse_packet(&f);
        }
    }
}
