//! SPC-3 persistent reservations and SPC-2 reservations between two hosts sharing a volume:
//! the holder writes, the other host gets RESERVATION CONFLICT (the fast path's LUN mask
//! follows), and after release it writes again.

use dve_controlpath::volume::LayoutSpec;
use dve_sim::host::HostOp;
use dve_tests::bench::Bench;

const CONFLICT: u8 = 0x18;

fn pr_out(service: u8, pr_type: u8, key: u64, sa_key: u64) -> (Vec<u8>, Vec<u8>) {
    let cdb = vec![0x5F, service, pr_type, 0, 0, 0, 0, 0, 24, 0];
    let mut params = vec![0u8; 24];
    params[0..8].copy_from_slice(&key.to_be_bytes());
    params[8..16].copy_from_slice(&sa_key.to_be_bytes());
    (cdb, params)
}

fn write(b: &mut Bench, h: usize, lun: u16) -> u8 {
    let data = vec![h as u8 + 1; 4096];
    b.request(h, lun, HostOp::Write { lba: 8, data: data.into() }).expect("write completes").status
}

fn read(b: &mut Bench, h: usize, lun: u16) -> u8 {
    b.request(h, lun, HostOp::Read { lba: 8, blocks: 8 }).expect("read completes").status
}

fn shared() -> (Bench, u16) {
    let mut b = Bench::new(2, &[65_536]);
    let v = b.volume("shared", 16_384, |d| LayoutSpec::Linear { devices: d }, &[0]);
    let lun = b.expose(v, &[0, 1]);
    b.start_hosts();
    (b, lun)
}

#[test]
fn a_persistent_write_exclusive_reservation_blocks_the_other_hosts_writes_until_released() {
    let (mut b, lun) = shared();
    assert_eq!(write(&mut b, 1, lun), 0, "before any reservation host 1 writes");
    for (h, key) in [(0, 0xAAAA), (1, 0xBBBB)] {
        let (cdb, params) = pr_out(0x00, 0, 0, key); // REGISTER
        assert_eq!(b.command(h, lun, &cdb, &params, 0).status, 0);
    }
    let (cdb, params) = pr_out(0x01, 0x01, 0xAAAA, 0); // RESERVE, Write Exclusive
    assert_eq!(b.command(0, lun, &cdb, &params, 0).status, 0);
    assert_eq!(write(&mut b, 0, lun), 0, "the holder writes");
    assert_eq!(write(&mut b, 1, lun), CONFLICT, "the other host may not write");
    assert_eq!(read(&mut b, 1, lun), 0, "but may read under Write Exclusive");
    // READ KEYS shows both registrations.
    let keys = b.command(1, lun, &[0x5E, 0x00, 0, 0, 0, 0, 0, 0, 64, 0], &[], 64).data;
    assert_eq!(u32::from_be_bytes(keys[4..8].try_into().unwrap()), 16);
    let (cdb, params) = pr_out(0x02, 0x01, 0xAAAA, 0); // RELEASE
    assert_eq!(b.command(0, lun, &cdb, &params, 0).status, 0);
    assert_eq!(write(&mut b, 1, lun), 0, "after release host 1 writes again");
}

#[test]
fn an_spc2_reservation_blocks_every_command_of_the_other_host_but_inquiry() {
    let (mut b, lun) = shared();
    assert_eq!(read(&mut b, 1, lun), 0);
    assert_eq!(b.command(0, lun, &[0x16, 0, 0, 0, 0, 0], &[], 0).status, 0, "RESERVE(6)");
    assert_eq!(read(&mut b, 1, lun), CONFLICT);
    assert_eq!(write(&mut b, 1, lun), CONFLICT);
    assert_eq!(b.command(1, lun, &[0x12, 0, 0, 0, 36, 0], &[], 36).status, 0, "INQUIRY still answers");
    assert_eq!(write(&mut b, 0, lun), 0);
    assert_eq!(b.command(0, lun, &[0x17, 0, 0, 0, 0, 0], &[], 0).status, 0, "RELEASE(6)");
    assert_eq!(read(&mut b, 1, lun), 0);
}
