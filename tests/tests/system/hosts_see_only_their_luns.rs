//! Hosts log in, discover the engine's virtual target through the name server and see only
//! the LUNs exposed to them; a host with nothing exposed sees no target at all. INQUIRY,
//! READ CAPACITY and REPORT LUNS describe each volume as it is, and verified I/O works. A
//! hidden LUN is gone for every host at once, and comes back with its data when exposed again.

use dve_controlpath::volume::LayoutSpec;
use dve_sim::host::HostOp;
use dve_tests::bench::Bench;

const BLOCKS: u64 = 16_384;

fn bench() -> (Bench, u16, u16) {
    let mut b = Bench::new(3, &[65_536, 65_536]);
    let v1 = b.volume("v1", BLOCKS, |d| LayoutSpec::Linear { devices: d }, &[0]);
    let v2 = b.volume("v2", 2 * BLOCKS, |d| LayoutSpec::Mirror { sides: d }, &[0, 1]);
    let lun1 = b.expose(v1, &[0]);
    let lun2 = b.expose(v2, &[0, 1]);
    b.start_hosts();
    (b, lun1, lun2)
}

#[test]
fn each_host_discovers_exactly_the_luns_exposed_to_it_and_a_masked_host_sees_nothing() {
    let (b, lun1, lun2) = bench();
    let luns = |h: usize| -> Vec<(u16, u64)> {
        b.hosts[h].targets().iter().flat_map(|t| t.luns.iter().map(|l| (l.lun, l.blocks))).collect()
    };
    assert_eq!(luns(0), vec![(lun1, BLOCKS), (lun2, 2 * BLOCKS)]);
    assert_eq!(luns(1), vec![(lun2, 2 * BLOCKS)]);
    assert!(b.hosts[2].targets().is_empty(), "host 2 sees no target: {:?}", b.hosts[2].targets());
}

#[test]
fn inquiry_read_capacity_and_report_luns_match_the_volumes() {
    let (mut b, lun1, lun2) = bench();
    // READ CAPACITY(16): last LBA and block size.
    let cap = b.command(0, lun2, &[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], &[], 32);
    assert_eq!(cap.status, 0);
    assert_eq!(u64::from_be_bytes(cap.data[0..8].try_into().unwrap()), 2 * BLOCKS - 1);
    assert_eq!(u32::from_be_bytes(cap.data[8..12].try_into().unwrap()), 512);
    // INQUIRY VPD 0x83: an NAA designator, stable and distinct per volume.
    let vpd =
        |b: &mut Bench, h: usize, lun: u16| b.command(h, lun, &[0x12, 1, 0x83, 0, 255, 0], &[], 255).data;
    let id1 = vpd(&mut b, 0, lun1);
    let id2 = vpd(&mut b, 0, lun2);
    assert_eq!(id1[1], 0x83);
    assert_ne!(id1, id2, "each volume has its own identifier");
    assert_eq!(vpd(&mut b, 1, lun2), id2, "every host sees the same identifier");
    // Standard INQUIRY: a direct-access device.
    let std = b.command(0, lun1, &[0x12, 0, 0, 0, 36, 0], &[], 36);
    assert_eq!(std.data[0] & 0x1F, 0);
    assert_eq!(&std.data[8..11], b"DVE");
    // REPORT LUNS lists what the host may see.
    let report = |b: &mut Bench, h: usize| {
        let data = b.command(h, 0, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[], 256).data;
        let n = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize / 8;
        (0..n).map(|i| u16::from_be_bytes([data[8 + i * 8] & 0x3F, data[9 + i * 8]])).collect::<Vec<u16>>()
    };
    assert_eq!(report(&mut b, 0), vec![lun1, lun2]);
    assert_eq!(report(&mut b, 1), vec![lun2]);
}

#[test]
fn a_host_cannot_reach_a_lun_not_exposed_to_it_and_verified_io_works_where_it_may() {
    let (mut b, lun1, lun2) = bench();
    // Host 1 addresses v1's LUN anyway: LOGICAL UNIT NOT SUPPORTED.
    let read10 = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0];
    let refused = b.command(1, lun1, &read10, &[], 4096);
    assert_eq!(refused.status, 2, "CHECK CONDITION");
    assert_eq!(refused.sense.map(|s| (s.0, s.1)), Some((0x05, 0x25)));
    // Where it may: a write, then a read of the same blocks returns it.
    let data: Vec<u8> = (0..8 * 512).map(|i| (i * 7 % 251) as u8).collect();
    let w = b.request(1, lun2, HostOp::Write { lba: 100, data: data.clone().into() }).expect("write");
    assert_eq!(w.status, 0);
    let r = b.request(1, lun2, HostOp::Read { lba: 100, blocks: 8 }).expect("read");
    assert_eq!(r.data, data);
}

#[test]
fn a_hidden_lun_is_gone_for_every_host_and_exposed_again_keeps_its_data() {
    let (mut b, lun1, lun2) = bench();
    let data: Vec<u8> = (0..8 * 512).map(|i| (i * 13 % 241) as u8).collect();
    let w = b.request(1, lun2, HostOp::Write { lba: 40, data: data.clone().into() }).expect("write");
    assert_eq!(w.status, 0);
    let v2 = b.hide(lun2);
    for h in [0, 1] {
        let read = b.command(h, lun2, &[0x28, 0, 0, 0, 0, 40, 0, 0, 8, 0], &[], 4096);
        assert_eq!(read.status, 2, "host {h}: CHECK CONDITION");
        assert_eq!(
            read.sense.map(|s| (s.0, s.1)),
            Some((0x05, 0x25)),
            "host {h}: LOGICAL UNIT NOT SUPPORTED"
        );
    }
    let report = b.command(0, 0, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], &[], 256).data;
    assert_eq!(u32::from_be_bytes(report[0..4].try_into().unwrap()), 8, "host 0 sees one LUN: {report:?}");
    assert_eq!(u16::from_be_bytes([report[8] & 0x3F, report[9]]), lun1);
    // Host 0 saw the LUN go: its next command to the LUN it keeps is answered REPORTED LUNS
    // DATA HAS CHANGED once (the initiator retries a unit attention at once); host 1 sees
    // nothing else, so nothing else tells it.
    let tur = [0u8; 6];
    let retries = b.hosts[0].stats().retries;
    assert_eq!(b.command(0, lun1, &tur, &[], 0).status, 0);
    assert_eq!(b.hosts[0].stats().retries, retries + 1, "the unit attention was reported once");
    assert_eq!(b.command(0, lun1, &tur, &[], 0).status, 0);
    assert_eq!(b.hosts[0].stats().retries, retries + 1, "and only once");
    // Exposed again (the same LUN is free): its data is still there.
    assert_eq!(b.expose(v2, &[1]), lun2);
    let read = b.request(1, lun2, HostOp::Read { lba: 40, blocks: 8 }).expect("read");
    assert_eq!(read.status, 0);
    assert_eq!(read.data, data);
}
