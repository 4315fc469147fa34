//! A degraded mirror acknowledges a write only once what makes it safe is in the metadata
//! store: the dead side's DEAD state (else a restart would read from the side that missed the
//! write), then the live sides' age stamps (else a resync after a restart would not copy it).
//! The store here fails commits on demand: while it does, the write waits (the death) or is
//! refused with BUSY and changes nothing (a stamp); once it works again, all goes on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use dve_controlpath::store::{Batch, MemoryStore, MetadataStore, Record, StoreError, Table};
use dve_controlpath::volume::LayoutSpec;
use dve_controlpath::{ControlPath, ControlPathConfig};
use dve_fp_api::mapping::SideState;
use dve_sim::disk::DiskMode;
use dve_sim::host::HostOp;
use dve_tests::bench::Bench;

/// A memory store whose next `failures` commits fail without applying anything.
#[derive(Debug, Clone, Default)]
struct FlakyStore {
    records: Arc<Mutex<MemoryStore>>,
    failures: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl FlakyStore {
    fn records(&self) -> MemoryStore {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).snapshot()
    }
}

impl MetadataStore for FlakyStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).get(table, key)
    }

    fn scan(&self, table: Table) -> Result<Vec<Record>, StoreError> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner).scan(table)
    }

    fn commit(&mut self, batch: Batch) -> Result<(), StoreError> {
        let fail =
            self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if fail {
            let commit = self.failed.fetch_add(1, Ordering::SeqCst) + 1;
            return Err(StoreError::InjectedCrash { commit });
        }
        self.records.lock().unwrap_or_else(PoisonError::into_inner).commit(batch)
    }
}

fn pattern(byte: u8, blocks: usize) -> Bytes {
    Bytes::from(vec![byte; blocks * 512])
}

#[test]
fn a_degraded_mirror_acknowledges_writes_only_once_their_safety_is_committed() {
    let store = FlakyStore::default();
    let mut bench = Bench::with_metadata_store(1, &[16_384, 16_384], Box::new(store.clone()));
    let lv = bench.volume("m", 16_384, |d| LayoutSpec::Mirror { sides: d }, &[0, 1]);
    let lun = bench.expose(lv, &[0]);
    bench.start_hosts();
    let write = |bench: &mut Bench, lba: u64, byte: u8| {
        bench.request(0, lun, HostOp::Write { lba, data: pattern(byte, 8) })
    };
    let good = |outcome: Result<dve_sim::host::IoOutcome, String>| outcome.is_ok_and(|o| o.status == 0);
    assert!(good(write(&mut bench, 0, 0xa1)), "a write to the whole mirror");

    // Side 1 fails a write; its DEAD state fails to commit three times. The write waits and
    // is acknowledged only when the fourth try commits it.
    bench.disks[1].set_mode(DiskMode::WriteErrors);
    store.failures.store(3, Ordering::SeqCst);
    assert!(good(write(&mut bench, 8, 0xb2)), "acknowledged once the death is committed");
    assert_eq!(store.failed.load(Ordering::SeqCst), 3, "the failed commits were tried again");
    let mut restarted = ControlPath::new(ControlPathConfig::new(1, 3, 2));
    restarted.attach_store(Box::new(store.records())).expect("the store loads");
    let states = restarted.volume(lv).map(|v| v.record.side_states.clone());
    assert_eq!(states, Some(vec![SideState::Alive, SideState::Dead]), "a restart knows side 1 is stale");

    // A write to an age extent not yet stamped while nothing commits: refused (BUSY, retried
    // by the host until it gives up), and nothing written.
    store.failures.store(u64::MAX, Ordering::SeqCst);
    let refused = write(&mut bench, 8_192, 0xc3);
    assert!(!good(refused.clone()), "refused while its stamp cannot commit: {refused:?}");
    store.failures.store(0, Ordering::SeqCst);
    let read = bench.request(0, lun, HostOp::Read { lba: 8_192, blocks: 8 }).expect("read");
    assert_eq!(read.data, vec![0; 8 * 512], "the refused write changed nothing");
    assert!(good(write(&mut bench, 8_192, 0xc3)), "accepted once its stamp commits");
    let read = bench.request(0, lun, HostOp::Read { lba: 8_192, blocks: 8 }).expect("read");
    assert_eq!(read.data, pattern(0xc3, 8).to_vec());
    let read = bench.request(0, lun, HostOp::Read { lba: 8, blocks: 8 }).expect("read");
    assert_eq!(read.data, pattern(0xb2, 8).to_vec());
}
