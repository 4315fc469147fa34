//! The metadata store the simulator gives each engine: in memory, and able to keep the image
//! a crash right after a chosen transaction would leave on disk, so an injected kill can
//! restart the engine from exactly that point.

use std::sync::{Arc, Mutex, PoisonError};

use dve_controlpath::store::{Batch, MemoryStore, MetadataStore, Record, StoreError, Table};

/// Where the image of the store after transaction `n` is left.
pub type CrashImage = Arc<Mutex<Option<MemoryStore>>>;

/// A [`MemoryStore`] that copies its records aside after its `n`-th commit.
#[derive(Debug)]
pub struct CrashableStore {
    inner: MemoryStore,
    commits: u64,
    image_after: Option<u64>,
    image: CrashImage,
}

impl CrashableStore {
    /// A store over `inner` that leaves its records in `image` right after its
    /// `image_after`-th commit.
    pub fn over(inner: MemoryStore, image_after: Option<u64>, image: CrashImage) -> CrashableStore {
        CrashableStore { inner, commits: 0, image_after, image }
    }
}

impl MetadataStore for CrashableStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }

    fn scan(&self, table: Table) -> Result<Vec<Record>, StoreError> {
        self.inner.scan(table)
    }

    fn commit(&mut self, batch: Batch) -> Result<(), StoreError> {
        self.inner.commit(batch)?;
        self.commits += 1;
        if self.image_after == Some(self.commits) {
            *self.image.lock().unwrap_or_else(PoisonError::into_inner) = Some(self.inner.snapshot());
        }
        Ok(())
    }
}
