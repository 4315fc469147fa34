//! The in-memory backend of the metadata store, for tests: one `BTreeMap` per [`Table`], and
//! crash injection ([`MemoryStore::fail_after`]) with snapshots ([`MemoryStore::snapshot`]) to
//! model what is on disk when an engine restarts.

use super::{Batch, BatchOp, MetadataStore, Record, StoreError, Table};
use std::collections::BTreeMap;

/// The metadata store in memory. Cloning it copies everything, including an armed failure;
/// [`MemoryStore::snapshot`] copies only the records.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    tables: [BTreeMap<Vec<u8>, Vec<u8>>; Table::ALL.len()],
    /// Commits attempted so far, failed ones included.
    commits: u64,
    /// The number of the commit that is to fail, if one is armed.
    failing_commit: Option<u64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arm a crash: the next `commits_that_succeed` commits apply, and the commit after them
    /// fails with [`StoreError::InjectedCrash`] without applying anything, as if the engine
    /// crashed before the transaction committed. `fail_after(0)` fails the very next commit.
    ///
    /// The failure happens once; later commits apply again. Arming replaces any failure armed
    /// before.
    pub fn fail_after(&mut self, commits_that_succeed: u64) {
        self.failing_commit = Some(self.commits.saturating_add(commits_that_succeed).saturating_add(1));
    }

    /// Disarm a failure armed by [`MemoryStore::fail_after`] that has not happened yet.
    pub fn disarm_failure(&mut self) {
        self.failing_commit = None;
    }

    /// What is on disk: a store with the same records and nothing else (no armed failure, the
    /// commit count at zero), as an engine restarting after a crash would find it.
    pub fn snapshot(&self) -> MemoryStore {
        MemoryStore { tables: self.tables.clone(), commits: 0, failing_commit: None }
    }

    /// The number of commits attempted on this store, failed ones included.
    pub fn commits(&self) -> u64 {
        self.commits
    }
}

impl MetadataStore for MemoryStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tables[table.index()].get(key).cloned())
    }

    fn scan(&self, table: Table) -> Result<Vec<Record>, StoreError> {
        Ok(self.tables[table.index()].iter().map(|(key, value)| (key.clone(), value.clone())).collect())
    }

    fn commit(&mut self, batch: Batch) -> Result<(), StoreError> {
        self.commits = self.commits.saturating_add(1);
        if self.failing_commit == Some(self.commits) {
            self.failing_commit = None;
            return Err(StoreError::InjectedCrash { commit: self.commits });
        }
        // Nothing below can fail, so the batch applies whole.
        for operation in batch.into_operations() {
            match operation {
                BatchOp::Put { table, key, value } => {
                    self.tables[table.index()].insert(key, value);
                }
                BatchOp::Delete { table, key } => {
                    self.tables[table.index()].remove(&key);
                }
            }
        }
        Ok(())
    }
}

/// A memory store whose handles share one store (tests): the engine commits through one
/// handle while the test keeps another, to look at what was committed or to restart an
/// engine from it.
#[cfg(test)]
#[derive(Clone, Debug)]
pub(crate) struct SharedMemoryStore(pub(crate) std::sync::Arc<std::sync::Mutex<MemoryStore>>);

#[cfg(test)]
impl SharedMemoryStore {
    /// Handles on `store`.
    pub(crate) fn new(store: MemoryStore) -> SharedMemoryStore {
        SharedMemoryStore(std::sync::Arc::new(std::sync::Mutex::new(store)))
    }
}

#[cfg(test)]
impl MetadataStore for SharedMemoryStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.lock().map_err(|_| StoreError::InjectedCrash { commit: 0 })?.get(table, key)
    }
    fn scan(&self, table: Table) -> Result<Vec<Record>, StoreError> {
        self.0.lock().map_err(|_| StoreError::InjectedCrash { commit: 0 })?.scan(table)
    }
    fn commit(&mut self, batch: Batch) -> Result<(), StoreError> {
        self.0.lock().map_err(|_| StoreError::InjectedCrash { commit: 0 })?.commit(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_put(key: &[u8], value: &[u8]) -> Batch {
        let mut batch = Batch::new();
        batch.put(Table::Journals, key.to_vec(), value.to_vec());
        batch
    }

    #[test]
    fn fail_after_counts_the_commits_that_succeed_first() {
        let mut store = MemoryStore::new();
        store.fail_after(2);
        store.commit(one_put(b"a", b"1")).expect("first applies");
        store.commit(one_put(b"b", b"2")).expect("second applies");
        let mut crashing = one_put(b"c", b"3");
        crashing.delete(Table::Journals, b"a".to_vec());
        match store.commit(crashing) {
            Err(StoreError::InjectedCrash { commit: 3 }) => {}
            other => panic!("expected the third commit to crash, got {other:?}"),
        }
        assert_eq!(
            store.scan(Table::Journals).expect("scan"),
            vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]
        );
        // One shot: the next commit applies again.
        store.commit(one_put(b"d", b"4")).expect("applies after the crash");
        assert_eq!(store.commits(), 4);
        assert_eq!(store.get(Table::Journals, b"d").expect("get"), Some(b"4".to_vec()));
    }

    #[test]
    fn fail_after_zero_fails_the_next_commit_and_disarm_cancels() {
        let mut store = MemoryStore::new();
        store.fail_after(0);
        assert!(matches!(store.commit(one_put(b"a", b"1")), Err(StoreError::InjectedCrash { commit: 1 })));
        store.fail_after(0);
        store.disarm_failure();
        store.commit(one_put(b"a", b"1")).expect("disarmed");
        assert_eq!(store.get(Table::Journals, b"a").expect("get"), Some(b"1".to_vec()));
    }

    #[test]
    fn a_snapshot_keeps_the_records_only_and_is_independent() {
        let mut store = MemoryStore::new();
        store.commit(one_put(b"a", b"1")).expect("commit");
        store.fail_after(5);
        let mut restarted = store.snapshot();
        assert_eq!(restarted.commits(), 0);
        store.commit(one_put(b"b", b"2")).expect("commit");
        assert_eq!(restarted.get(Table::Journals, b"b").expect("get"), None);
        // The snapshot carries no armed failure: six commits all apply.
        for number in 0..6u8 {
            restarted.commit(one_put(&[number], b"x")).expect("no failure armed");
        }
        assert_eq!(restarted.scan(Table::Journals).expect("scan").len(), 7);

        // A clone copies the armed failure too.
        let mut cloned = store.clone();
        cloned.fail_after(0);
        assert!(cloned.commit(Batch::new()).is_err());
        store.commit(Batch::new()).expect("the original is not affected");
    }
}
