#!/usr/bin/env python3
"""Writes the malformed-frame corpus from a capture made by the sample-capture example.

    cargo run -p dve-wire --example sample-capture -- /tmp/sample.pcap
    python3 wire/tests/corpus/generate.py /tmp/sample.pcap

Each case is a frame of the sample capture with one fault; EXPECTED lists, per file, the
error variant dve-wire must return (the replay test checks it and that nothing panics).
"""
import struct
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).parent


def read_pcap(path):
    data = Path(path).read_bytes()
    off, frames = 24, []
    while off < len(data):
        _, _, incl, _ = struct.unpack_from("<IIII", data, off)
        frames.append(bytearray(data[off + 16: off + 16 + incl]))
        off += 16 + incl
    return frames


def eth_len(f):
    return 18 if f[12:14] == b"\x81\x00" else 14


def fix_crc(f):
    """Recomputes the FC CRC so that a fault inside the FC frame is reached by the parser."""
    start = eth_len(f) + 14
    end = len(f) - 8
    f[end:end + 4] = struct.pack("<I", zlib.crc32(bytes(f[start:end])) & 0xFFFFFFFF)
    return f


def fc(f, at):
    return eth_len(f) + 14 + at


def main():
    frames = read_pcap(sys.argv[1])
    fr = lambda n: bytearray(frames[n - 1])  # tshark frame numbers
    cases = {}

    def case(name, frame, expected):
        cases[name] = (bytes(frame), expected)

    case("empty", b"", "Truncated")
    case("ethernet-short", fr(41)[:13], "Truncated")
    case("vlan-tag-cut", fr(32)[:16], "Truncated")
    f = fr(41); f[12:14] = b"\x08\x00"; case("ethertype-ipv4", f, "UnknownEthertype")
    case("fcoe-header-only", fr(41)[:28], "Truncated")
    case("fcoe-fc-header-cut", fr(41)[:14 + 14 + 20], "Truncated")
    case("fcoe-missing-trailer", fr(41)[:-8], "BadEof")
    case("fcoe-odd-length", fr(41)[:-1], "BadLength")
    f = fr(41); f[14] = 0x10; case("fcoe-version-1", f, "BadVersion")
    f = fr(41); f[20] = 0x01; case("fcoe-reserved-byte", f, "Reserved")
    f = fr(41); f[27] = 0x99; case("fcoe-bad-sof", f, "BadSof")
    f = fr(41); f[-4] = 0x40; case("fcoe-bad-eof", f, "BadEof")
    f = fr(41); f[-2] = 0x01; case("fcoe-trailer-reserved", f, "Reserved")
    f = fr(41); f[-8] ^= 0xFF; case("fcoe-bad-crc", f, "BadCrc")
    f = fr(42); f[-8:-8] = bytes(128); case("fc-payload-longer-than-2112", fix_crc(f), "BadLength")
    f = fr(42); f[100] ^= 0x01; case("fcp-data-flipped-bit", f, "BadCrc")
    # FC_CTL says 3 fill bytes but the frame has no payload.
    f = fr(55); f[fc(f, 11)] |= 0x03; case("fc-fill-longer-than-payload", fix_crc(f), "BadLength")
    # FCP_CMND whose additional CDB length claims 8 more bytes than present.
    f = fr(41); f[fc(f, 24 + 11)] |= 0x08; case("fcp-cmnd-add-cdb-length", fix_crc(f), "BadLength")
    f = fr(41); f[fc(f, 24 + 12)] = 0xC0; case("scsi-unknown-opcode", fix_crc(f), "UnknownOpcode")
    f = fr(41); f[fc(f, 24 + 12 + 6)] = 0xC0; case("scsi-read10-reserved-group-bits", fix_crc(f), "Reserved")
    f = fr(41); f[fc(f, 24 + 9)] = 0x03; case("fcp-cmnd-reserved-task-attribute", fix_crc(f), "Reserved")
    # FCP_RSP claiming more sense bytes than it carries.
    f = fr(53); f[fc(f, 24 + 16):fc(f, 24 + 20)] = struct.pack(">I", 0xFFFF_FFF0); case("fcp-rsp-sense-length", fix_crc(f), "Truncated")
    f = fr(53); f[fc(f, 24 + 10)] |= 0x0C; case("fcp-rsp-over-and-under", fix_crc(f), "Reserved")
    f = fr(53); f[fc(f, 24 + 24)] = 0x7E; case("sense-unknown-response-code", fix_crc(f), "Unsupported")
    f = fr(48); f[fc(f, 24 + 8)] = 1; case("xfer-rdy-reserved", fix_crc(f), "Reserved")
    f = fr(7); f[fc(f, 24)] = 0x77; case("els-unknown-command", fix_crc(f), "UnknownElsCommand")
    f = fr(7); f[fc(f, 24 + 1)] = 0x01; case("els-reserved-byte", fix_crc(f), "Reserved")
    f = fr(8); f[fc(f, 0)] = 0x22; case("els-acc-with-request-r-ctl", fix_crc(f), "Unsupported")
    f = fr(62); f[fc(f, 24 + 4)] = 0x01; case("ls-rjt-reserved", fix_crc(f), "Reserved")
    f = fr(26); f[fc(f, 24 + 3)] = 0x24; case("prli-acc-payload-length", fix_crc(f), "BadLength")
    f = fr(56); f[fc(f, 24)] = 0x40; case("ba-acc-seq-id-validity", fix_crc(f), "Reserved")
    f = fr(9); f[fc(f, 24)] = 0x02; case("ct-revision-2", fix_crc(f), "BadVersion")
    f = fr(9); f[fc(f, 24 + 8):fc(f, 24 + 10)] = b"\x01\x99"; case("ct-unknown-command", fix_crc(f), "UnknownCtCommand")
    f = fr(9); f[fc(f, 24 + 16)] = 0x01; case("ct-rft-id-reserved", fix_crc(f), "Reserved")
    f = fr(1); f[14] = 0x20; case("fip-version-2", f, "BadVersion")
    f = fr(1); f[19] = 0x07; case("fip-unknown-subcode", f, "Unsupported")
    f = fr(1); f[20:22] = b"\x00\x40"; case("fip-descriptor-list-too-long", f, "Truncated")
    f = fr(1); f[25] = 0; case("fip-descriptor-zero-length", f, "BadLength")
    f = fr(1); f[25] = 3; case("fip-mac-descriptor-wrong-length", f, "BadLength")
    f = fr(3); f[24 + 2] = 0x01; case("fip-flogi-descriptor-reserved", f, "Reserved")
    case("fip-header-cut", fr(1)[:20], "Truncated")

    manifest = []
    for name, (data, expected) in sorted(cases.items()):
        (HERE / f"{name}.bin").write_bytes(data)
        manifest.append(f"{name}.bin {expected}")
    (HERE / "EXPECTED").write_text("\n".join(manifest) + "\n")
    print(f"wrote {len(cases)} cases")


if __name__ == "__main__":
    main()
