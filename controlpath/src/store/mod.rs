//! The control path's durable metadata store: a transactional key-value store of named
//! [`Table`]s behind the [`MetadataStore`] trait, with a redb backend ([`RedbStore`]) for engines
//! and an in-memory backend with crash injection ([`MemoryStore`]) for tests. The control path
//! encodes its records itself; [`Batch::put_json`] and [`get_json`] do it with serde JSON.

mod memory;
mod redb;

pub use self::memory::MemoryStore;
#[cfg(test)]
pub(crate) use self::memory::SharedMemoryStore;
pub use self::redb::RedbStore;

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::PathBuf;

/// A record as [`MetadataStore::scan`] returns it: its key, then its value.
pub type Record = (Vec<u8>, Vec<u8>);

/// A transactional key-value store of the control path's tables.
///
/// Keys and values are bytes; within a table, records are ordered by key bytes
/// (lexicographically). Writes go through [`Batch`]es, each applied atomically by
/// [`MetadataStore::commit`].
pub trait MetadataStore: Send + fmt::Debug {
    /// One record: the value stored under `key` in `table`, if any.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every record of a table, in key order.
    fn scan(&self, table: Table) -> Result<Vec<Record>, StoreError>;

    /// Apply a batch atomically: all of it is durable when this returns `Ok`, or none of it is
    /// applied. Operations apply in the order they were added to the batch.
    fn commit(&mut self, batch: Batch) -> Result<(), StoreError>;
}

impl<S: MetadataStore + ?Sized> MetadataStore for Box<S> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(table, key)
    }

    fn scan(&self, table: Table) -> Result<Vec<Record>, StoreError> {
        (**self).scan(table)
    }

    fn commit(&mut self, batch: Batch) -> Result<(), StoreError> {
        (**self).commit(batch)
    }
}

/// Read one record and decode it from JSON (the encoding of [`Batch::put_json`]).
///
/// A record that does not decode as `T` is a [`StoreError::Decode`] naming the table and key.
pub fn get_json<T: DeserializeOwned>(
    store: &(impl MetadataStore + ?Sized),
    table: Table,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    match store.get(table, key)? {
        None => Ok(None),
        Some(value) => decode_json(table, key, &value).map(Some),
    }
}

/// Read every record of a table, in key order, decoding each value from JSON.
///
/// The first record that does not decode as `T` is a [`StoreError::Decode`] naming the table
/// and key.
pub fn scan_json<T: DeserializeOwned>(
    store: &(impl MetadataStore + ?Sized),
    table: Table,
) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
    store
        .scan(table)?
        .into_iter()
        .map(|(key, value)| {
            let decoded = decode_json(table, &key, &value)?;
            Ok((key, decoded))
        })
        .collect()
}

fn decode_json<T: DeserializeOwned>(table: Table, key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|source| StoreError::Decode { table, key: key.to_vec(), source })
}

/// The control path's tables. Each has a stable name, which is its name in the redb file:
/// never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Physical devices (downstream LUNs) and their paths.
    Devices,
    /// Logical volumes (LV).
    Volumes,
    /// Volume segments (VSEG) and their storage descriptors.
    Segments,
    /// Rmap chunk records: the fixed-size on-disk chunks of the extent maps.
    Rmaps,
    /// Redirect tables of the segments.
    Redirects,
    /// Target exposures.
    Exposures,
    /// Host LUN maps and masks.
    HostMaps,
    /// SCSI reservations.
    Reservations,
    /// Pending unit attentions.
    UnitAttentions,
    /// Age lists of mirrors, for fast resync.
    AgeLists,
    /// Journals of asynchronous replication.
    Journals,
    /// Tasks and tasksets that a surviving engine resumes.
    Tasks,
    /// Counters, such as identifier allocators.
    Counters,
}

impl Table {
    /// Every table, in declaration order.
    pub const ALL: [Table; 13] = [
        Table::Devices,
        Table::Volumes,
        Table::Segments,
        Table::Rmaps,
        Table::Redirects,
        Table::Exposures,
        Table::HostMaps,
        Table::Reservations,
        Table::UnitAttentions,
        Table::AgeLists,
        Table::Journals,
        Table::Tasks,
        Table::Counters,
    ];

    /// The table's stable name (its name in the redb file).
    pub const fn name(self) -> &'static str {
        match self {
            Table::Devices => "devices",
            Table::Volumes => "volumes",
            Table::Segments => "segments",
            Table::Rmaps => "rmaps",
            Table::Redirects => "redirects",
            Table::Exposures => "exposures",
            Table::HostMaps => "host_maps",
            Table::Reservations => "reservations",
            Table::UnitAttentions => "unit_attentions",
            Table::AgeLists => "age_lists",
            Table::Journals => "journals",
            Table::Tasks => "tasks",
            Table::Counters => "counters",
        }
    }

    /// The table's position in [`Table::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One write of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// Store `value` under `key`, replacing any previous value.
    Put {
        /// The table written.
        table: Table,
        /// The record's key.
        key: Vec<u8>,
        /// The record's new value.
        value: Vec<u8>,
    },
    /// Remove the record under `key`, if there is one.
    Delete {
        /// The table written.
        table: Table,
        /// The record's key.
        key: Vec<u8>,
    },
}

/// Writes to apply together, in order, by [`MetadataStore::commit`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    operations: Vec<BatchOp>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Store `value` under `key` in `table`.
    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.operations.push(BatchOp::Put { table, key: key.into(), value: value.into() });
        self
    }

    /// Store `value`, encoded as JSON, under `key` in `table`. If it does not encode, the batch
    /// is unchanged and the error names the table and key.
    pub fn put_json<T: Serialize + ?Sized>(
        &mut self,
        table: Table,
        key: impl Into<Vec<u8>>,
        value: &T,
    ) -> Result<&mut Self, StoreError> {
        let key = key.into();
        match serde_json::to_vec(value) {
            Ok(encoded) => Ok(self.put(table, key, encoded)),
            Err(source) => Err(StoreError::Encode { table, key, source }),
        }
    }

    /// Remove the record under `key` in `table`, if there is one.
    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) -> &mut Self {
        self.operations.push(BatchOp::Delete { table, key: key.into() });
        self
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// The number of operations in the batch.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// The operations, in the order they apply.
    pub fn operations(&self) -> &[BatchOp] {
        &self.operations
    }

    /// The operations, in the order they apply, by value.
    pub fn into_operations(self) -> Vec<BatchOp> {
        self.operations
    }
}

/// What went wrong in the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists but does not hold a redb database.
    #[error("{} is not a metadata store (not a redb database): {source}", .path.display())]
    NotADatabase {
        /// The file opened.
        path: PathBuf,
        /// What redb reported.
        source: Box<::redb::Error>,
    },
    /// The file could not be opened or created as a redb database.
    #[error("cannot open metadata store {}: {source}", .path.display())]
    Open {
        /// The file opened.
        path: PathBuf,
        /// What redb reported.
        source: Box<::redb::Error>,
    },
    /// A read or a commit failed in redb.
    #[error("metadata store {}: cannot {action}: {source}", .path.display())]
    Backend {
        /// The store's file.
        path: PathBuf,
        /// What the store was doing, such as "read table volumes".
        action: String,
        /// What redb reported.
        source: Box<::redb::Error>,
    },
    /// A record's value could not be decoded from JSON as the type asked for.
    #[error("cannot decode record {} of table {table}: {source}", KeyDisplay(.key))]
    Decode {
        /// The record's table.
        table: Table,
        /// The record's key.
        key: Vec<u8>,
        /// What serde_json reported.
        source: serde_json::Error,
    },
    /// A value could not be encoded as JSON.
    #[error("cannot encode record {} of table {table}: {source}", KeyDisplay(.key))]
    Encode {
        /// The record's table.
        table: Table,
        /// The record's key.
        key: Vec<u8>,
        /// What serde_json reported.
        source: serde_json::Error,
    },
    /// A failure injected by [`MemoryStore::fail_after`]: the commit did not happen, as if the
    /// engine had crashed before the transaction committed.
    #[error("injected crash: commit number {commit} of the memory store was not applied")]
    InjectedCrash {
        /// The number of the commit that failed, counting every commit of the store from 1.
        commit: u64,
    },
}

/// Shows a key as text when it is printable ASCII, else as hexadecimal bytes.
struct KeyDisplay<'a>(&'a [u8]);

impl fmt::Display for KeyDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let printable = !self.0.is_empty() && self.0.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
        if printable {
            f.write_str("\"")?;
            for byte in self.0 {
                write!(f, "{}", char::from(*byte))?;
            }
            f.write_str("\"")
        } else {
            f.write_str("0x")?;
            for byte in self.0 {
                write!(f, "{byte:02x}")?;
            }
            if self.0.is_empty() {
                f.write_str(" (empty)")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers shared by the store's tests: unique temporary directories.

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A directory under the system temp dir, unique to this process and call, removed on drop.
    #[derive(Debug)]
    pub(crate) struct TempDir {
        path: PathBuf,
    }

    impl TempDir {
        /// Create a fresh directory whose name contains `label`.
        pub(crate) fn new(label: &str) -> TempDir {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let number = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("dve-store-test-{}-{label}-{number}", std::process::id()));
            // A leftover from an earlier process with the same id: start clean.
            let _ = std::fs::remove_dir_all(&path);
            if let Err(err) = std::fs::create_dir_all(&path) {
                panic!("cannot create test directory {}: {err}", path.display());
            }
            TempDir { path }
        }

        /// The directory.
        pub(crate) fn path(&self) -> &Path {
            &self.path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::TempDir;
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::collections::{BTreeMap, HashSet};

    #[test]
    fn table_names_are_unique_and_all_is_in_index_order() {
        let names: HashSet<&str> = Table::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), Table::ALL.len());
        for (position, table) in Table::ALL.iter().enumerate() {
            assert_eq!(table.index(), position);
            assert_eq!(table.to_string(), table.name());
        }
    }

    #[test]
    fn batch_keeps_operations_in_order() {
        let mut batch = Batch::new();
        assert!(batch.is_empty());
        batch.put(Table::Volumes, b"a".to_vec(), b"1".to_vec()).delete(Table::Volumes, b"a".to_vec());
        assert_eq!(batch.len(), 2);
        assert!(!batch.is_empty());
        assert_eq!(
            batch.operations(),
            &[
                BatchOp::Put { table: Table::Volumes, key: b"a".to_vec(), value: b"1".to_vec() },
                BatchOp::Delete { table: Table::Volumes, key: b"a".to_vec() },
            ]
        );
    }

    fn put_get_delete_and_scan_order(store: &mut dyn MetadataStore) {
        let mut batch = Batch::new();
        batch
            .put(Table::Segments, vec![0x02], b"two".to_vec())
            .put(Table::Segments, vec![0x01, 0xff], b"one-ff".to_vec())
            .put(Table::Segments, vec![0xff], b"ff".to_vec())
            .put(Table::Segments, Vec::new(), b"empty key".to_vec())
            .put(Table::Segments, vec![0x01], b"one".to_vec())
            .put(Table::Redirects, vec![0x01], b"other table".to_vec());
        store.commit(batch).expect("commit");

        assert_eq!(
            store.scan(Table::Segments).expect("scan"),
            vec![
                (Vec::new(), b"empty key".to_vec()),
                (vec![0x01], b"one".to_vec()),
                (vec![0x01, 0xff], b"one-ff".to_vec()),
                (vec![0x02], b"two".to_vec()),
                (vec![0xff], b"ff".to_vec()),
            ],
            "key order is byte order, shorter prefix first"
        );
        assert_eq!(store.get(Table::Redirects, &[0x01]).expect("get"), Some(b"other table".to_vec()));
        assert_eq!(store.get(Table::Exposures, &[0x01]).expect("get"), None);

        // Operations apply in order: the last word on a key wins.
        let mut batch = Batch::new();
        batch
            .put(Table::Segments, vec![0x02], b"replaced".to_vec())
            .delete(Table::Segments, vec![0xff])
            .put(Table::Segments, vec![0xff], b"back".to_vec())
            .put(Table::Segments, vec![0x03], b"gone".to_vec())
            .delete(Table::Segments, vec![0x03])
            .delete(Table::Segments, vec![0x42]);
        store.commit(batch).expect("commit");
        assert_eq!(store.get(Table::Segments, &[0x02]).expect("get"), Some(b"replaced".to_vec()));
        assert_eq!(store.get(Table::Segments, &[0xff]).expect("get"), Some(b"back".to_vec()));
        assert_eq!(store.get(Table::Segments, &[0x03]).expect("get"), None);
        assert_eq!(store.scan(Table::Segments).expect("scan").len(), 5);

        store.commit(Batch::new()).expect("an empty batch commits");
        assert_eq!(store.scan(Table::Segments).expect("scan").len(), 5);
    }

    #[test]
    fn put_get_delete_and_scan_order_on_both_backends() {
        put_get_delete_and_scan_order(&mut MemoryStore::new());
        let dir = TempDir::new("basic");
        let mut redb = RedbStore::open(dir.path().join("meta.redb")).expect("open");
        put_get_delete_and_scan_order(&mut redb);
        let mut boxed: Box<dyn MetadataStore> = Box::new(MemoryStore::new());
        put_get_delete_and_scan_order(&mut boxed);
    }

    fn atomicity_batches() -> (Batch, Batch) {
        let mut committed = Batch::new();
        committed.put(Table::Reservations, b"lun0".to_vec(), b"host-a".to_vec()).put(
            Table::UnitAttentions,
            b"host-b".to_vec(),
            b"reset".to_vec(),
        );
        let mut failing = Batch::new();
        failing
            .put(Table::Reservations, b"lun0".to_vec(), b"host-c".to_vec())
            .delete(Table::UnitAttentions, b"host-b".to_vec())
            .put(Table::Tasks, b"t1".to_vec(), b"resync".to_vec());
        (committed, failing)
    }

    fn assert_only_the_committed_batch(store: &dyn MetadataStore) {
        assert_eq!(store.get(Table::Reservations, b"lun0").expect("get"), Some(b"host-a".to_vec()));
        assert_eq!(store.get(Table::UnitAttentions, b"host-b").expect("get"), Some(b"reset".to_vec()));
        assert_eq!(store.scan(Table::Tasks).expect("scan"), Vec::new());
    }

    #[test]
    fn a_failing_batch_changes_nothing() {
        let (committed, failing) = atomicity_batches();
        let mut memory = MemoryStore::new();
        memory.commit(committed.clone()).expect("commit");
        memory.fail_after(0);
        assert!(matches!(memory.commit(failing.clone()), Err(StoreError::InjectedCrash { .. })));
        assert_only_the_committed_batch(&memory);
        assert_only_the_committed_batch(&memory.snapshot());

        let dir = TempDir::new("atomic");
        let mut redb = RedbStore::open(dir.path().join("meta.redb")).expect("open");
        redb.commit(committed).expect("commit");
        redb.apply_then_abort_for_test(failing).expect("abort");
        assert_only_the_committed_batch(&redb);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct VolumeRecord {
        name: String,
        blocks: u64,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct OtherRecord {
        #[allow(dead_code)]
        colour: String,
    }

    fn json_round_trip(store: &mut dyn MetadataStore) {
        let volume = VolumeRecord { name: "lv0".into(), blocks: 2048 };
        let mut batch = Batch::new();
        batch.put_json(Table::Volumes, b"lv0".to_vec(), &volume).expect("a plain struct encodes");
        store.commit(batch).expect("commit");

        let read: Option<VolumeRecord> = get_json(store, Table::Volumes, b"lv0").expect("decodes");
        assert_eq!(read, Some(volume));
        let absent: Option<VolumeRecord> = get_json(store, Table::Volumes, b"lv1").expect("absent is fine");
        assert_eq!(absent, None);
        let all: Vec<(Vec<u8>, VolumeRecord)> = scan_json(store, Table::Volumes).expect("decodes");
        assert_eq!(all.len(), 1);

        let wrong = get_json::<OtherRecord>(store, Table::Volumes, b"lv0");
        match wrong {
            Err(err @ StoreError::Decode { .. }) => {
                let message = err.to_string();
                assert!(message.contains("volumes"), "{message}");
                assert!(message.contains("\"lv0\""), "{message}");
            }
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    #[test]
    fn json_records_round_trip_and_bad_ones_name_table_and_key() {
        json_round_trip(&mut MemoryStore::new());
        let dir = TempDir::new("json");
        let mut redb = RedbStore::open(dir.path().join("meta.redb")).expect("open");
        json_round_trip(&mut redb);
    }

    #[test]
    fn put_json_that_cannot_encode_leaves_the_batch_unchanged() {
        // JSON object keys must be strings: a map keyed by pairs does not encode.
        let mut unencodable = BTreeMap::new();
        unencodable.insert((1u8, 2u8), 3u8);
        let mut batch = Batch::new();
        let result = batch.put_json(Table::Counters, vec![0x01, 0xff], &unencodable);
        match result {
            Err(err @ StoreError::Encode { .. }) => {
                let message = err.to_string();
                assert!(message.contains("counters"), "{message}");
                assert!(message.contains("0x01ff"), "{message}");
            }
            other => panic!("expected an encode error, got {other:?}"),
        }
        assert!(batch.is_empty());
    }

    /// The model: what every table should hold.
    type Model = BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>;

    fn apply_to_model(model: &mut Model, batch: &Batch) {
        for operation in batch.operations() {
            match operation {
                BatchOp::Put { table, key, value } => {
                    model.entry(*table).or_default().insert(key.clone(), value.clone());
                }
                BatchOp::Delete { table, key } => {
                    if let Some(records) = model.get_mut(table) {
                        records.remove(key);
                    }
                }
            }
        }
    }

    fn assert_agrees(store: &dyn MetadataStore, model: &Model, probe_keys: &[Vec<u8>]) {
        for table in Table::ALL {
            let expected: Vec<Record> = model
                .get(&table)
                .map(|records| records.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let scanned = store.scan(table).expect("scan");
            assert_eq!(scanned, expected, "scan of {table} in {store:?}");
            for key in probe_keys {
                let expected = model.get(&table).and_then(|records| records.get(key));
                let got = store.get(table, key).expect("get");
                assert_eq!(got.as_ref(), expected, "get {key:?} of {table} in {store:?}");
            }
        }
    }

    /// One step of the property test.
    #[derive(Debug, Clone)]
    enum Step {
        /// Commit the batch on every backend.
        Commit(Batch),
        /// Commit the batch on every backend with a crash injected before it commits.
        CrashingCommit(Batch),
        /// Close and reopen the redb file; restart the memory store from its snapshot.
        Reopen,
    }

    // A few tables and short keys over a small alphabet, so that operations collide.
    fn operation_strategy() -> impl Strategy<Value = BatchOp> {
        let table =
            prop::sample::select(vec![Table::Devices, Table::Rmaps, Table::HostMaps, Table::Counters]);
        let key = prop::collection::vec(prop::sample::select(vec![0u8, 1, 0x7f, 0xff]), 0..3);
        let value = prop::collection::vec(any::<u8>(), 0..24);
        prop_oneof![
            3 => (table.clone(), key.clone(), value)
                .prop_map(|(table, key, value)| BatchOp::Put { table, key, value }),
            1 => (table, key).prop_map(|(table, key)| BatchOp::Delete { table, key }),
        ]
    }

    fn batch_strategy() -> impl Strategy<Value = Batch> {
        prop::collection::vec(operation_strategy(), 0..8).prop_map(|operations| Batch { operations })
    }

    fn step_strategy() -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => batch_strategy().prop_map(Step::Commit),
            2 => batch_strategy().prop_map(Step::CrashingCommit),
            1 => Just(Step::Reopen),
        ]
    }

    fn probe_keys() -> Vec<Vec<u8>> {
        let alphabet = [0u8, 1, 0x7f, 0xff];
        let mut keys = vec![Vec::new()];
        for a in alphabet {
            keys.push(vec![a]);
            for b in alphabet {
                keys.push(vec![a, b]);
            }
        }
        keys
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn backends_agree_with_a_btreemap_model(steps in prop::collection::vec(step_strategy(), 1..12)) {
            let dir = TempDir::new("model");
            let path = dir.path().join("meta.redb");
            let mut redb = RedbStore::open(&path).expect("open");
            let mut memory = MemoryStore::new();
            let mut model = Model::new();
            let probes = probe_keys();

            for step in steps {
                match step {
                    Step::Commit(batch) => {
                        memory.commit(batch.clone()).expect("memory commit");
                        redb.commit(batch.clone()).expect("redb commit");
                        apply_to_model(&mut model, &batch);
                    }
                    Step::CrashingCommit(batch) => {
                        memory.fail_after(0);
                        let memory_result = memory.commit(batch.clone());
                        prop_assert!(
                            matches!(memory_result, Err(StoreError::InjectedCrash { .. })),
                            "memory: {memory_result:?}"
                        );
                        // redb: every write done in the transaction, then the transaction
                        // aborted instead of committed.
                        redb.apply_then_abort_for_test(batch).expect("redb abort");
                    }
                    Step::Reopen => {
                        drop(redb);
                        redb = RedbStore::open(&path).expect("reopen");
                        memory = memory.snapshot();
                    }
                }
                assert_agrees(&memory, &model, &probes);
                assert_agrees(&redb, &model, &probes);
            }

            drop(redb);
            let reopened = RedbStore::open(&path).expect("final reopen");
            assert_agrees(&reopened, &model, &probes);
        }
    }
}
