//! Age lists in the metadata store. Seed 003 keeps them in persistent metadata, so that an
//! engine that restarts still knows what a dead mirror side missed and resyncs only that.
//! A list is stored in chunks of [`CHUNK_EXTENTS`] extents, run-length encoded, so a write's
//! stamp commits only the chunks it changed.

use std::collections::BTreeMap;

use dve_fp_api::ids::{EngineId, VsegId};
use dve_fp_api::mapping::{Age, AgeList};

use crate::error::Error;
use crate::store::{Batch, MetadataStore, StoreError, Table, scan_json};

/// Extents per stored chunk of an age list.
pub(super) const CHUNK_EXTENTS: usize = 1024;

/// One stored chunk of an age list.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
struct AgeChunk {
    /// Blocks per age extent (of the whole list).
    extent_blocks: u64,
    /// Extents of the whole list.
    extents: u64,
    /// Runs of equal ages, in order: (extents, generation, engine).
    runs: Vec<(u32, u32, u16)>,
}

/// Key of chunk `chunk` of the list of `side` of `vseg`: in key order, a list's chunks are
/// consecutive and in order.
fn chunk_key(vseg: VsegId, side: usize, chunk: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(12);
    key.extend_from_slice(&vseg.0.to_be_bytes());
    key.extend_from_slice(&(side as u32).to_be_bytes());
    key.extend_from_slice(&(chunk as u32).to_be_bytes());
    key
}

fn parse_key(key: &[u8]) -> Option<(VsegId, usize, usize)> {
    let word = |i: usize| key.get(i..i + 4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
    if key.len() != 12 {
        return None;
    }
    Some((VsegId(word(0)?), word(4)? as usize, word(8)? as usize))
}

fn chunk_count(extents: usize) -> usize {
    extents.div_ceil(CHUNK_EXTENTS)
}

/// The chunk holding age extent `extent`.
pub(super) fn chunk_of(extent: usize) -> usize {
    extent / CHUNK_EXTENTS
}

fn encode(list: &AgeList, chunk: usize) -> AgeChunk {
    let ages = list.ages();
    let start = (chunk * CHUNK_EXTENTS).min(ages.len());
    let end = (start + CHUNK_EXTENTS).min(ages.len());
    let mut runs: Vec<(u32, u32, u16)> = Vec::new();
    for age in &ages[start..end] {
        match runs.last_mut() {
            Some((n, generation, engine)) if *generation == age.generation && *engine == age.engine.0 => {
                *n += 1
            }
            _ => runs.push((1, age.generation, age.engine.0)),
        }
    }
    AgeChunk { extent_blocks: list.extent_blocks(), extents: ages.len() as u64, runs }
}

/// Put chunks `chunks` of `list`, the list of `side` of `vseg`, into `batch`.
pub(super) fn put_chunks(
    batch: &mut Batch,
    vseg: VsegId,
    side: usize,
    list: &AgeList,
    chunks: impl IntoIterator<Item = usize>,
) -> Result<(), StoreError> {
    for chunk in chunks {
        batch.put_json(Table::AgeLists, chunk_key(vseg, side, chunk), &encode(list, chunk))?;
    }
    Ok(())
}

/// Put every chunk of `list` into `batch`.
pub(super) fn put_list(
    batch: &mut Batch,
    vseg: VsegId,
    side: usize,
    list: &AgeList,
) -> Result<(), StoreError> {
    put_chunks(batch, vseg, side, list, 0..chunk_count(list.len()))
}

/// Delete every chunk of a list of `extents` extents.
pub(super) fn delete_list(batch: &mut Batch, vseg: VsegId, side: usize, extents: usize) {
    for chunk in 0..chunk_count(extents) {
        batch.delete(Table::AgeLists, chunk_key(vseg, side, chunk));
    }
}

/// Every age list the store holds, by segment and side. A record that does not decode, or a
/// list whose chunks are missing or disagree, is an error naming it.
pub(super) fn load(
    store: &(impl MetadataStore + ?Sized),
) -> Result<BTreeMap<(VsegId, usize), AgeList>, Error> {
    let records: Vec<(Vec<u8>, AgeChunk)> = scan_json(store, Table::AgeLists)?;
    let mut chunks: BTreeMap<(VsegId, usize), Vec<(usize, AgeChunk)>> = BTreeMap::new();
    for (key, chunk) in records {
        let (vseg, side, index) =
            parse_key(&key).ok_or_else(|| Error::Store(format!("age list key {key:?} is malformed")))?;
        chunks.entry((vseg, side)).or_default().push((index, chunk));
    }
    let mut lists = BTreeMap::new();
    for ((vseg, side), parts) in chunks {
        let malformed = |why: &str| Error::Store(format!("age list of {vseg:?} side {side}: {why}"));
        let (extent_blocks, extents) = (parts[0].1.extent_blocks, parts[0].1.extents);
        let extents = usize::try_from(extents).map_err(|_| malformed("too many extents"))?;
        if parts.len() != chunk_count(extents) {
            return Err(malformed("chunks are missing"));
        }
        let mut ages = Vec::with_capacity(extents);
        // Scans return keys in order, so the chunks come in order.
        for (expected, (index, chunk)) in parts.into_iter().enumerate() {
            if index != expected || chunk.extent_blocks != extent_blocks || chunk.extents != extents as u64 {
                return Err(malformed("chunks disagree"));
            }
            let before = ages.len();
            for (n, generation, engine) in chunk.runs {
                if n == 0 {
                    return Err(malformed("an empty run"));
                }
                let age = Age { generation, engine: EngineId(engine) };
                ages.extend(std::iter::repeat_n(age, n as usize).take(CHUNK_EXTENTS));
            }
            let expected_len = CHUNK_EXTENTS.min(extents - before);
            if ages.len() - before != expected_len {
                return Err(malformed("a chunk's runs do not cover it"));
            }
        }
        let list = AgeList::from_ages(extent_blocks, ages).map_err(|e| malformed(&e.to_string()))?;
        lists.insert((vseg, side), list);
    }
    Ok(lists)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn age(generation: u32) -> Age {
        Age { generation, engine: EngineId(3) }
    }

    #[test]
    fn lists_come_back_as_they_were_stored() {
        let mut store = MemoryStore::new();
        let mut long = AgeList::new(2500 * 8, 8, age(0)).unwrap();
        for i in [0, 1, 1023, 1024, 2047, 2499] {
            long.set(i, age(i as u32 + 1)).unwrap();
        }
        let short = AgeList::new(100, 8, age(4)).unwrap();
        let mut batch = Batch::new();
        put_list(&mut batch, VsegId(7), 1, &long).unwrap();
        put_list(&mut batch, VsegId(7), 0, &short).unwrap();
        store.commit(batch).unwrap();
        let lists = load(&store).unwrap();
        assert_eq!(lists.len(), 2);
        assert_eq!(lists[&(VsegId(7), 1)], long);
        assert_eq!(lists[&(VsegId(7), 0)], short);

        // A stamp commits only its chunk.
        long.set(1500, age(9)).unwrap();
        let mut batch = Batch::new();
        put_chunks(&mut batch, VsegId(7), 1, &long, [chunk_of(1500)]).unwrap();
        assert_eq!(batch.len(), 1);
        store.commit(batch).unwrap();
        assert_eq!(load(&store).unwrap()[&(VsegId(7), 1)], long);

        let mut batch = Batch::new();
        delete_list(&mut batch, VsegId(7), 1, long.len());
        store.commit(batch).unwrap();
        assert_eq!(load(&store).unwrap().keys().copied().collect::<Vec<_>>(), [(VsegId(7), 0)]);
    }

    #[test]
    fn damaged_lists_are_refused_with_their_name() {
        let list = AgeList::new(3000 * 8, 8, age(0)).unwrap();
        type Damage<'a> = Box<dyn Fn(&mut Batch) + 'a>;
        let cases: [(&str, Damage<'_>); 4] = [
            (
                "chunks are missing",
                Box::new(|b| {
                    b.delete(Table::AgeLists, chunk_key(VsegId(2), 0, 1));
                }),
            ),
            (
                "chunks disagree",
                Box::new(|b| {
                    let mut chunk = encode(&list, 1);
                    chunk.extent_blocks = 16;
                    b.put_json(Table::AgeLists, chunk_key(VsegId(2), 0, 1), &chunk).unwrap();
                }),
            ),
            (
                "do not cover",
                Box::new(|b| {
                    let mut chunk = encode(&list, 2);
                    chunk.runs[0].0 -= 1;
                    b.put_json(Table::AgeLists, chunk_key(VsegId(2), 0, 2), &chunk).unwrap();
                }),
            ),
            (
                "malformed",
                Box::new(|b| {
                    b.put_json(Table::AgeLists, vec![1, 2, 3], &encode(&list, 0)).unwrap();
                }),
            ),
        ];
        for (why, damage) in cases {
            let mut store = MemoryStore::new();
            let mut batch = Batch::new();
            put_list(&mut batch, VsegId(2), 0, &list).unwrap();
            store.commit(batch).unwrap();
            let mut batch = Batch::new();
            damage(&mut batch);
            store.commit(batch).unwrap();
            let error = load(&store).unwrap_err().to_string();
            assert!(error.contains(why), "{why}: {error}");
        }
    }
}
