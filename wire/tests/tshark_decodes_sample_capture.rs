//! Wireshark's dissectors are the independent check of every frame kind we build: the sample
//! capture is written, `tshark` decodes it, and each frame must decode as the intended
//! protocol, with a good FC CRC, no malformed packet or expert info, and the OX_ID, RX_ID,
//! LBA, transfer length, SCSI status and sense we wrote. Without tshark this test fails.

#[path = "../examples/sample_capture/scenario.rs"]
#[allow(dead_code)]
mod scenario;

use std::process::Command;

use dve_wire::pcap::PcapWriter;

const FIELDS: &[&str] = &[
    "frame.number",
    "fip",
    "fcels",
    "fcdns",
    "fcp",
    "scsi",
    "fc.r_ctl",
    "fc.ox_id",
    "fc.rx_id",
    "fcoe.crc.status",
    "scsi_sbc.rdwr10.lba",
    "scsi_sbc.rdwr16.lba",
    "scsi_sbc.rdwr10.xferlen",
    "scsi_sbc.rdwr12.xferlen",
    "fcp.status",
    "scsi.sns.key",
    "scsi.sns.asc",
    "scsi.sns.ascascq",
    "_ws.malformed",
    "_ws.expert",
];

fn column<'a>(row: &'a [&'a str], name: &str) -> &'a str {
    let i = FIELDS.iter().position(|f| *f == name).expect("known field");
    row.get(i).copied().unwrap_or("")
}

/// A hex field's value; `u64::MAX` (which no checked field holds) when absent or not hex,
/// so that the comparison reports it.
fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or(u64::MAX)
}

#[test]
fn tshark_decodes_sample_capture() {
    let capture = scenario::build();
    let path = std::env::temp_dir().join(format!("dve-wire-sample-{}.pcap", std::process::id()));
    {
        let file = std::fs::File::create(&path).expect("create pcap");
        let mut w = PcapWriter::new(std::io::BufWriter::new(file)).expect("pcap header");
        for (ts, frame) in &capture.frames {
            w.write_frame(*ts, frame).expect("pcap record");
        }
        w.flush().expect("flush pcap");
    }

    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(&path).args(["-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!(
            "tshark could not be run ({e}): this test needs Wireshark's tshark; install it with \
             `DEBIAN_FRONTEND=noninteractive apt-get install -y tshark`"
        ),
    };
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("tshark output is UTF-8");
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), capture.expected.len(), "tshark saw a different number of frames:\n{text}");

    let mut problems = Vec::new();
    for (row, want) in rows.iter().zip(&capture.expected) {
        let n = column(row, "frame.number");
        let mut check = |ok: bool, what: String| {
            if !ok {
                problems.push(format!("frame {n}: {what}"));
            }
        };
        check(column(row, "_ws.malformed").is_empty(), "malformed packet".into());
        let expert = column(row, "_ws.expert");
        let expert_ok = match want.known_expert {
            None => expert.is_empty(),
            Some(known) => expert.is_empty() || expert.contains(known),
        };
        check(expert_ok, format!("expert info: {expert}"));
        let proto = match want.protocol {
            "scsi" => !column(row, "scsi").is_empty() && !column(row, "fcp").is_empty(),
            "fc" => !column(row, "fc.r_ctl").is_empty(),
            p => !column(row, p).is_empty(),
        };
        check(proto, format!("does not decode as {}: {row:?}", want.protocol));
        if let Some((ox, rx)) = want.exchange {
            check(
                column(row, "fcoe.crc.status") == "1",
                format!("FC CRC not good: {:?}", column(row, "fcoe.crc.status")),
            );
            let got = (hex(column(row, "fc.ox_id")), hex(column(row, "fc.rx_id")));
            check(
                got == (u64::from(ox), u64::from(rx)),
                format!("OX_ID/RX_ID {got:x?}, wrote {ox:#x}/{rx:#x}"),
            );
        }
        if let Some(r) = want.r_ctl {
            check(
                hex(column(row, "fc.r_ctl")) == u64::from(r),
                format!("R_CTL {}, wrote {r:#x}", column(row, "fc.r_ctl")),
            );
        }
        if let Some((lba, len)) = want.rw {
            let lba10 = column(row, "scsi_sbc.rdwr10.lba");
            let got_lba = if lba10.is_empty() {
                hex(column(row, "scsi_sbc.rdwr16.lba"))
            } else {
                lba10.parse().expect("LBA")
            };
            let len10 = column(row, "scsi_sbc.rdwr10.xferlen");
            let got_len: u64 = if len10.is_empty() { column(row, "scsi_sbc.rdwr12.xferlen") } else { len10 }
                .parse()
                .expect("transfer length");
            check(
                (got_lba, got_len) == (lba, u64::from(len)),
                format!("LBA/length {got_lba}/{got_len}, wrote {lba}/{len}"),
            );
        }
        if let Some(s) = want.scsi_status {
            check(
                hex(column(row, "fcp.status")) == u64::from(s),
                format!("SCSI status {}, wrote {s:#x}", column(row, "fcp.status")),
            );
        }
        if let Some((key, asc)) = want.sense {
            // Wireshark shows the ASC alone for fixed format, ASC+ASCQ for descriptor format.
            let asc_field = column(row, "scsi.sns.asc");
            let got_asc =
                if asc_field.is_empty() { hex(column(row, "scsi.sns.ascascq")) >> 8 } else { hex(asc_field) };
            let got = (hex(column(row, "scsi.sns.key")), got_asc);
            check(
                got == (u64::from(key), u64::from(asc)),
                format!("sense key/ASC {got:x?}, wrote {key:#x}/{asc:#x}"),
            );
        }
    }
    assert!(
        problems.is_empty(),
        "tshark disagrees with what was written:\n{}\n\ntshark output:\n{text}",
        problems.join("\n")
    );
}
