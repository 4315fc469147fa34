//! Writes a pcap file covering every frame kind `dve-wire` builds:
//! `cargo run -p dve-wire --example sample-capture -- OUT.pcap`.

mod sample_capture {
    pub mod scenario;
}

use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;

use dve_wire::pcap::PcapWriter;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: sample-capture OUT.pcap");
        return ExitCode::from(2);
    };
    let capture = sample_capture::scenario::build();
    let result = File::create(&path).and_then(|f| {
        let mut w = PcapWriter::new(BufWriter::new(f))?;
        for (ts, frame) in &capture.frames {
            w.write_frame(*ts, frame)?;
        }
        w.flush()
    });
    match result {
        Ok(()) => {
            println!("wrote {} frames to {}", capture.frames.len(), path.to_string_lossy());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write {}: {e}", path.to_string_lossy());
            ExitCode::FAILURE
        }
    }
}
