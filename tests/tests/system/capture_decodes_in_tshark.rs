//! Captures of ports in the default scenario open in Wireshark's `tshark` with no malformed
//! frame and no bad checksum: every frame the switch, the hosts and the disks emit is
//! well-formed FCoE.
//! Without tshark (installed by `.ci/run`) this test fails.

use std::process::Command;

use dve_sim::report::options::{PcapRequest, RunOptions};
use dve_tests::quiet;

fn tshark(path: &std::path::Path) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "frame.protocols",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert.severity",
            "-e",
            "fcoe.crc.status",
        ])
        .output()
        .expect("tshark runs (installed by .ci/run)");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn captures_of_a_host_port_and_a_disk_port_decode_without_errors() {
    let s = dve_sim::scenario::Scenario::default_scenario().expect("the default scenario parses");
    let dir = std::env::temp_dir();
    let host = dir.join(format!("dve-sim-h1-{}.pcap", std::process::id()));
    let disk = dir.join(format!("dve-sim-d1-{}.pcap", std::process::id()));
    let options = RunOptions {
        duration_override_ms: Some(300),
        pcaps: vec![
            PcapRequest { port: "h1".into(), path: host.clone() },
            PcapRequest { port: "d1".into(), path: disk.clone() },
        ],
        ..quiet()
    };
    let report = dve_sim::world::run(&s, &options).expect("run");
    assert!(report.is_clean());
    for path in [&host, &disk] {
        let text = tshark(path);
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
        assert!(rows.len() > 100, "{} frames in {}", rows.len(), path.display());
        for row in &rows {
            let protocols = row.get(1).copied().unwrap_or("");
            assert!(protocols.contains("fcoe") || protocols.contains("fip"), "not FCoE: {row:?}");
            assert!(row.get(2).is_none_or(|m| m.is_empty()), "malformed: {row:?}");
            // Expert info of error severity (bad CRC, malformed) is a failure; notes are not.
            let severity = row.get(3).copied().unwrap_or("");
            assert!(
                !severity.split(',').any(|s| s == "8388608" || s == "0x00800000"),
                "expert error: {row:?}"
            );
            // Wireshark checksum status: 0 bad, 1 good, 2 unverified.
            assert!(row.get(4).is_none_or(|c| *c != "0"), "bad FC CRC: {row:?}");
        }
        let _ = std::fs::remove_file(path);
    }
}
