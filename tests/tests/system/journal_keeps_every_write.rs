//! The journal primitive under a full journal: a journaled volume's journal fills, the
//! faulted write is run by the control path, which swaps the worker's journal and appends
//! the write to its own journal of the group. Every acknowledged write is on the primary;
//! every journal entry on the device decodes and carries exactly the data written there.
//! (The volume is not replicated, so closed journal slots are free again at once and older
//! entries are overwritten, which is why not every write is still found.)

use dve_fp_api::journal::JournalEntryHeader;
use dve_sim::host::HostOp;
use dve_tests::bench::Bench;

#[test]
fn writes_past_a_full_journal_are_journaled_by_the_control_path_and_entries_are_exact() {
    let mut b = Bench::new(1, &[65_536, 65_536]);
    // 192 journal blocks: two slots of 32 for each worker and for the control path.
    let (_, lun) = b.journaled_volume(4096, 192);
    let mut written = Vec::new();
    for k in 0..6u64 {
        let data: Vec<u8> = (0..16 * 512).map(|i| (i as u64 * 7 + k * 13) as u8).collect();
        let w = b.request(0, lun, HostOp::Write { lba: k * 16, data: data.clone().into() }).expect("write");
        assert_eq!(w.status, 0);
        written.push((k * 16, data));
    }
    // Every write is on the primary.
    for (lba, data) in &written {
        assert_eq!(&b.disks[0].read_blocks(*lba, 16), data);
    }
    // Every write is in a journal: scan the journal device's entries.
    let journal = b.disks[1].read_blocks(0, 192);
    let mut found = Vec::new();
    for block in 0..192usize {
        if let Some(h) = JournalEntryHeader::decode(&journal[block * 512..(block + 1) * 512]) {
            let data = journal[(block + 1) * 512..(block + 1 + h.blocks as usize) * 512].to_vec();
            found.push((h.worker.0, h.lba, data));
        }
    }
    assert!(found.len() >= 2, "{} entries", found.len());
    for (worker, lba, data) in &found {
        let original = written.iter().find(|(l, _)| l == lba).map(|(_, d)| d);
        assert_eq!(original, Some(data), "the entry of worker {worker} at {lba} holds that write");
    }
    let (last_lba, last_data) = written.last().expect("writes");
    assert!(found.iter().any(|(_, l, d)| l == last_lba && d == last_data), "the newest write is journaled");
    assert!(
        found.iter().any(|(w, _, _)| *w == 15),
        "the control path journaled at least one write: {:?}",
        found.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>()
    );
}
