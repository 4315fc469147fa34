//! The redb backend of the metadata store: one redb file per engine, one redb table per
//! [`Table`], each [`Batch`] one write transaction committed with immediate durability, reads
//! from read transactions.

use super::{Batch, BatchOp, MetadataStore, Record, StoreError, Table};
use ::redb::{
    Builder, Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, StorageError,
    TableDefinition, TableError, WriteTransaction,
};
use std::path::{Path, PathBuf};

/// How every table is stored: byte keys in lexicographic order, byte values.
type RecordTable<'name> = TableDefinition<'name, &'static [u8], &'static [u8]>;

fn definition(table: Table) -> RecordTable<'static> {
    TableDefinition::new(table.name())
}

/// The metadata store in a redb file.
#[derive(Debug)]
pub struct RedbStore {
    path: PathBuf,
    database: Database,
}

impl RedbStore {
    /// Open the store in the redb file at `path`, creating the file (and every table) if it is
    /// missing or empty.
    ///
    /// The file's integrity is checked as it opens, so a damaged file is an error rather than a
    /// later panic. A file that is not a redb database is [`StoreError::NotADatabase`]; a file
    /// that another `RedbStore` holds open is [`StoreError::Open`].
    pub fn open(path: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut builder = Builder::new();
        builder.set_check_integrity_on_open(true);
        let database = match builder.create(&path) {
            Ok(database) => database,
            Err(err) => return Err(open_error(path, err)),
        };
        let store = RedbStore { path, database };
        store.create_missing_tables()?;
        Ok(store)
    }

    /// The redb file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Create every table that the file lacks, so that a new file lists them all.
    fn create_missing_tables(&self) -> Result<(), StoreError> {
        let transaction = self.begin_write()?;
        for table in Table::ALL {
            // Opening a table in a write transaction creates it; the handle is not needed.
            let created = transaction.open_table(definition(table)).map(drop);
            if let Err(err) = created {
                let error = self.backend_error(format!("create table {table}"), err);
                abort_quietly(transaction);
                return Err(error);
            }
        }
        transaction.commit().map_err(|err| self.backend_error("commit the creation of the tables", err))
    }

    fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let mut transaction = self
            .database
            .begin_write()
            .map_err(|err| self.backend_error("begin a write transaction", err))?;
        if let Err(err) = transaction.set_durability(Durability::Immediate) {
            let error = self.backend_error("ask for immediate durability", err);
            abort_quietly(transaction);
            return Err(error);
        }
        Ok(transaction)
    }

    /// A write transaction holding every operation of `batch`, not yet committed. If an
    /// operation fails, the transaction is aborted and nothing is applied.
    fn write_batch(&self, batch: Batch) -> Result<WriteTransaction, StoreError> {
        let transaction = self.begin_write()?;
        match self.apply_operations(&transaction, batch) {
            Ok(()) => Ok(transaction),
            Err(error) => {
                abort_quietly(transaction);
                Err(error)
            }
        }
    }

    fn apply_operations(&self, transaction: &WriteTransaction, batch: Batch) -> Result<(), StoreError> {
        // Each table is opened once per transaction, when the batch first writes it.
        let mut opened: [Option<::redb::Table<'_, &'static [u8], &'static [u8]>>; Table::ALL.len()] =
            Default::default();
        for operation in batch.into_operations() {
            let table = match &operation {
                BatchOp::Put { table, .. } | BatchOp::Delete { table, .. } => *table,
            };
            let slot = &mut opened[table.index()];
            let records = match slot {
                Some(records) => records,
                None => {
                    let records = transaction
                        .open_table(definition(table))
                        .map_err(|err| self.backend_error(format!("open table {table}"), err))?;
                    slot.insert(records)
                }
            };
            match operation {
                BatchOp::Put { key, value, .. } => {
                    records
                        .insert(key.as_slice(), value.as_slice())
                        .map_err(|err| self.backend_error(format!("write table {table}"), err))?;
                }
                BatchOp::Delete { key, .. } => {
                    records
                        .remove(key.as_slice())
                        .map_err(|err| self.backend_error(format!("delete from table {table}"), err))?;
                }
            }
        }
        Ok(())
    }

    /// Do every write of `batch` in a write transaction, then abort it instead of committing:
    /// the crash before commit that the crash-consistency tests need.
    #[cfg(test)]
    pub(crate) fn apply_then_abort_for_test(&mut self, batch: Batch) -> Result<(), StoreError> {
        let transaction = self.write_batch(batch)?;
        transaction.abort().map_err(|err| self.backend_error("abort a write transaction", err))
    }

    fn backend_error(&self, action: impl Into<String>, source: impl Into<::redb::Error>) -> StoreError {
        StoreError::Backend {
            path: self.path.clone(),
            action: action.into(),
            source: Box::new(source.into()),
        }
    }
}

/// Abort a transaction that already failed: the first error is the one worth reporting, and
/// the transaction is discarded either way.
fn abort_quietly(transaction: WriteTransaction) {
    if let Err(err) = transaction.abort() {
        tracing::warn!(error = %err, "metadata store: aborting a failed write transaction failed too");
    }
}

fn open_error(path: PathBuf, err: DatabaseError) -> StoreError {
    let not_a_database = matches!(
        &err,
        DatabaseError::Storage(StorageError::Io(io)) if io.kind() == std::io::ErrorKind::InvalidData
    );
    let source = Box::new(::redb::Error::from(err));
    if not_a_database { StoreError::NotADatabase { path, source } } else { StoreError::Open { path, source } }
}

impl MetadataStore for RedbStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let transaction =
            self.database.begin_read().map_err(|err| self.backend_error("begin a read transaction", err))?;
        let records = match transaction.open_table(definition(table)) {
            Ok(records) => records,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(err) => return Err(self.backend_error(format!("open table {table}"), err)),
        };
        let value = records.get(key).map_err(|err| self.backend_error(format!("read table {table}"), err))?;
        Ok(value.map(|value| value.value().to_vec()))
    }

    fn scan(&self, table: Table) -> Result<Vec<Record>, StoreError> {
        let transaction =
            self.database.begin_read().map_err(|err| self.backend_error("begin a read transaction", err))?;
        let records = match transaction.open_table(definition(table)) {
            Ok(records) => records,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(err) => return Err(self.backend_error(format!("open table {table}"), err)),
        };
        let iterator =
            records.iter().map_err(|err| self.backend_error(format!("scan table {table}"), err))?;
        iterator
            .map(|record| {
                let (key, value) =
                    record.map_err(|err| self.backend_error(format!("scan table {table}"), err))?;
                Ok((key.value().to_vec(), value.value().to_vec()))
            })
            .collect()
    }

    fn commit(&mut self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let transaction = self.write_batch(batch)?;
        transaction.commit().map_err(|err| self.backend_error("commit a write transaction", err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::TempDir;

    #[test]
    fn records_survive_reopening_the_file() {
        let dir = TempDir::new("reopen");
        let path = dir.path().join("meta.redb");
        {
            let mut store = RedbStore::open(&path).expect("create");
            let mut batch = Batch::new();
            batch
                .put(Table::Volumes, b"lv0".to_vec(), b"first".to_vec())
                .put(Table::Rmaps, vec![0, 0, 0, 1], vec![9; 100])
                .put(Table::Counters, b"next_volume".to_vec(), 7u64.to_be_bytes().to_vec());
            store.commit(batch).expect("commit");
            let mut batch = Batch::new();
            batch
                .put(Table::Volumes, b"lv0".to_vec(), b"second".to_vec())
                .delete(Table::Rmaps, vec![0, 0, 0, 1]);
            store.commit(batch).expect("commit");
        }
        let store = RedbStore::open(&path).expect("reopen");
        assert_eq!(store.path(), path);
        assert_eq!(store.get(Table::Volumes, b"lv0").expect("get"), Some(b"second".to_vec()));
        assert_eq!(store.scan(Table::Rmaps).expect("scan"), Vec::new());
        assert_eq!(
            store.get(Table::Counters, b"next_volume").expect("get"),
            Some(7u64.to_be_bytes().to_vec())
        );
    }

    #[test]
    fn an_aborted_batch_leaves_the_file_as_it_was() {
        let dir = TempDir::new("abort");
        let path = dir.path().join("meta.redb");
        let mut store = RedbStore::open(&path).expect("create");
        let mut batch = Batch::new();
        batch.put(Table::Devices, b"d0".to_vec(), b"kept".to_vec());
        store.commit(batch).expect("commit");

        let mut batch = Batch::new();
        batch
            .put(Table::Devices, b"d0".to_vec(), b"lost".to_vec())
            .put(Table::Devices, b"d1".to_vec(), b"lost".to_vec())
            .delete(Table::Devices, b"d0".to_vec());
        store.apply_then_abort_for_test(batch).expect("abort");
        let expected = vec![(b"d0".to_vec(), b"kept".to_vec())];
        assert_eq!(store.scan(Table::Devices).expect("scan"), expected);
        drop(store);
        let store = RedbStore::open(&path).expect("reopen");
        assert_eq!(store.scan(Table::Devices).expect("scan"), expected);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = TempDir::new("garbage");
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "these are not the records you are looking for\n".repeat(200))
            .expect("write the test file");
        let mut noise = Vec::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..16_384 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            noise.push(state as u8);
        }
        let random = dir.path().join("noise.bin");
        std::fs::write(&random, noise).expect("write the test file");

        for path in [text, random] {
            let before = std::fs::read(&path).expect("read the test file");
            match RedbStore::open(&path) {
                Err(err @ StoreError::NotADatabase { .. }) => {
                    let message = err.to_string();
                    assert!(message.contains("not a metadata store"), "{message}");
                    assert!(message.contains(&path.display().to_string()), "{message}");
                }
                other => panic!("expected NotADatabase for {}, got {other:?}", path.display()),
            }
            let after = std::fs::read(&path).expect("read the test file");
            assert_eq!(before, after, "opening must not change {}", path.display());
        }
    }

    #[test]
    fn a_file_held_open_by_another_store_is_refused() {
        let dir = TempDir::new("locked");
        let path = dir.path().join("meta.redb");
        let _first = RedbStore::open(&path).expect("create");
        match RedbStore::open(&path) {
            Err(err @ StoreError::Open { .. }) => {
                assert!(err.to_string().contains("cannot open metadata store"), "{err}");
            }
            other => panic!("expected Open error, got {other:?}"),
        }
    }

    #[test]
    fn a_new_file_lists_every_table_empty() {
        let dir = TempDir::new("fresh");
        let store = RedbStore::open(dir.path().join("meta.redb")).expect("create");
        for table in Table::ALL {
            assert_eq!(store.scan(table).expect("scan"), Vec::new(), "{table}");
            assert_eq!(store.get(table, b"anything").expect("get"), None, "{table}");
        }
    }
}
