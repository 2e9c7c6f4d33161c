//! Idempotent producers: per partition, each producer id's epoch and its last five batches;
//! and transactional producers' open transactions (their first offset here), which hold back
//! the last stable offset until the COMMIT or ABORT marker arrives.
//!
//! A batch from a producer (producer id >= 0, base sequence >= 0) is checked against that
//! producer's state: a repeat of one of its last five batches is a duplicate (answered with the
//! original offsets, not written again); otherwise its sequence must follow the last one.
//! The state is snapshotted beside the segments (`<offset>.snapshot`) and, on open, rebuilt
//! from the newest snapshot by replaying the batch headers after it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::batch::{BatchHeader, Marker};
use crate::error::{CoreError, Result};

/// Batches remembered per producer for duplicate detection (Kafka's max.in.flight limit).
pub const REMEMBERED_BATCHES: usize = 5;
const SNAPSHOT_MAGIC: &[u8; 4] = b"FLPS";
/// Version 2 added each producer's open transaction, coordinator epoch and last timestamp.
const SNAPSHOT_VERSION: u16 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    /// First offset of the producer's open transaction in this partition; -1 when none.
    pub txn_first_offset: i64,
    /// The coordinator epoch of the producer's last transaction marker here.
    pub coordinator_epoch: i32,
    /// The largest timestamp of the producer's last batch.
    pub last_timestamp: i64,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry { epoch: 0, batches: VecDeque::new(), txn_first_offset: -1, coordinator_epoch: -1, last_timestamp: -1 }
    }
}

/// A transaction that a marker ended in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub aborted: bool,
}

/// What to do with an incoming batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Append,
    Duplicate(BatchMeta),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset -> producer id (the smallest is the first unstable offset).
    ongoing: BTreeMap<i64, i64>,
}

/// Sequences wrap from i32::MAX back to 0, as Kafka's do.
fn sequence_after(sequence: i32, delta: i32) -> i32 {
    ((sequence as i64 + delta as i64) % (i32::MAX as i64 + 1)) as i32
}

pub fn last_sequence(header: &BatchHeader) -> i32 {
    sequence_after(header.base_sequence, header.last_offset_delta)
}

pub fn is_idempotent(header: &BatchHeader) -> bool {
    header.producer_id >= 0 && header.base_sequence >= 0
}

impl ProducerState {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn clear(&mut self) {
        self.producers.clear();
        self.ongoing.clear();
    }

    /// The first offset of the oldest open transaction: read_committed consumers stop there.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Open transactions, oldest first: (producer id, first offset).
    pub fn ongoing(&self) -> Vec<(i64, i64)> {
        self.ongoing.iter().map(|(first, pid)| (*pid, *first)).collect()
    }

    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer: (id, its entry), by id.
    pub fn entries(&self) -> Vec<(i64, &ProducerEntry)> {
        let mut all: Vec<(i64, &ProducerEntry)> = self.producers.iter().map(|(pid, e)| (*pid, e)).collect();
        all.sort_unstable_by_key(|(pid, _)| *pid);
        all
    }

    /// Checks a batch (offsets not yet assigned) against its producer's state.
    pub fn check(&self, header: &BatchHeader) -> Result<Verdict> {
        if !is_idempotent(header) {
            return Ok(Verdict::Append);
        }
        let (pid, epoch, first) = (header.producer_id, header.producer_epoch, header.base_sequence);
        let Some(entry) = self.producers.get(&pid) else {
            if first != 0 {
                return Err(CoreError::UnknownProducerId(format!(
                    "producer {pid} has no state here and sent sequence {first}, not 0"
                )));
            }
            return Ok(Verdict::Append);
        };
        if epoch < entry.epoch {
            return Err(CoreError::InvalidProducerEpoch(format!(
                "producer {pid} sent epoch {epoch}, but epoch {} is current",
                entry.epoch
            )));
        }
        if epoch > entry.epoch {
            if first != 0 {
                return Err(CoreError::OutOfOrderSequence(format!(
                    "producer {pid} began epoch {epoch} with sequence {first}, not 0"
                )));
            }
            return Ok(Verdict::Append);
        }
        let last = last_sequence(header);
        if let Some(meta) = entry.batches.iter().find(|m| m.first_sequence == first && m.last_sequence == last) {
            return Ok(Verdict::Duplicate(*meta));
        }
        let expected = entry.batches.back().map_or(0, |m| sequence_after(m.last_sequence, 1));
        if first != expected {
            return Err(CoreError::OutOfOrderSequence(format!(
                "producer {pid} epoch {epoch} sent sequence {first}, expected {expected}"
            )));
        }
        Ok(Verdict::Append)
    }

    /// Records a batch that was appended with its offsets assigned (also used by replay);
    /// `marker` is what a control batch carries. A marker ending an open transaction returns it.
    pub fn record(&mut self, header: &BatchHeader, marker: Option<Marker>) -> Option<CompletedTxn> {
        if header.producer_id < 0 || !(is_idempotent(header) || header.is_transactional()) {
            return None;
        }
        let pid = header.producer_id;
        let entry = self.producers.entry(pid).or_default();
        entry.last_timestamp = header.max_timestamp;
        if header.is_control() {
            let marker = marker?;
            if header.producer_epoch > entry.epoch {
                entry.epoch = header.producer_epoch;
                entry.batches.clear();
            }
            entry.coordinator_epoch = entry.coordinator_epoch.max(marker.coordinator_epoch);
            let first = std::mem::replace(&mut entry.txn_first_offset, -1);
            if first < 0 {
                return None;
            }
            self.ongoing.remove(&first);
            return Some(CompletedTxn { producer_id: pid, first_offset: first, last_offset: header.base_offset, aborted: !marker.commit });
        }
        if header.is_transactional() && entry.txn_first_offset < 0 {
            entry.txn_first_offset = header.base_offset;
            self.ongoing.insert(header.base_offset, pid);
        }
        if !is_idempotent(header) {
            return None;
        }
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchMeta {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
        });
        while entry.batches.len() > REMEMBERED_BATCHES {
            entry.batches.pop_front();
        }
        None
    }

    /// Serialises the state: magic, version, count, entries, then a CRC32C of all before it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.producers.len() * 64);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        for pid in ids {
            let entry = &self.producers[pid];
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&entry.epoch.to_be_bytes());
            out.push(entry.batches.len() as u8);
            for m in &entry.batches {
                out.extend_from_slice(&m.first_sequence.to_be_bytes());
                out.extend_from_slice(&m.last_sequence.to_be_bytes());
                out.extend_from_slice(&m.first_offset.to_be_bytes());
                out.extend_from_slice(&m.last_offset.to_be_bytes());
            }
            out.extend_from_slice(&entry.txn_first_offset.to_be_bytes());
            out.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
            out.extend_from_slice(&entry.last_timestamp.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<ProducerState> {
        let bad = |why: &str| CoreError::InvalidArgument(format!("producer state snapshot is unreadable: {why}"));
        if bytes.len() < 14 || &bytes[..4] != SNAPSHOT_MAGIC {
            return Err(bad("no magic"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().unwrap()) {
            return Err(bad("CRC mismatch"));
        }
        let mut reader = SliceReader { buf: body, pos: 4 };
        let version = u16::from_be_bytes(reader.take::<2>()?);
        if !(1..=SNAPSHOT_VERSION).contains(&version) {
            return Err(bad("unknown version"));
        }
        let count = u32::from_be_bytes(reader.take::<4>()?);
        let mut state = ProducerState::default();
        for _ in 0..count {
            let pid = i64::from_be_bytes(reader.take::<8>()?);
            let epoch = i16::from_be_bytes(reader.take::<2>()?);
            let batches = reader.take::<1>()?[0] as usize;
            let mut entry = ProducerEntry { epoch, ..Default::default() };
            for _ in 0..batches.min(REMEMBERED_BATCHES) {
                entry.batches.push_back(BatchMeta {
                    first_sequence: i32::from_be_bytes(reader.take::<4>()?),
                    last_sequence: i32::from_be_bytes(reader.take::<4>()?),
                    first_offset: i64::from_be_bytes(reader.take::<8>()?),
                    last_offset: i64::from_be_bytes(reader.take::<8>()?),
                });
            }
            if version >= 2 {
                entry.txn_first_offset = i64::from_be_bytes(reader.take::<8>()?);
                entry.coordinator_epoch = i32::from_be_bytes(reader.take::<4>()?);
                entry.last_timestamp = i64::from_be_bytes(reader.take::<8>()?);
            }
            if entry.txn_first_offset >= 0 {
                state.ongoing.insert(entry.txn_first_offset, pid);
            }
            state.producers.insert(pid, entry);
        }
        if reader.pos != body.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(state)
    }
}

struct SliceReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl SliceReader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self
            .buf
            .get(self.pos..self.pos + N)
            .ok_or_else(|| CoreError::InvalidArgument("producer state snapshot is truncated".into()))?;
        self.pos += N;
        Ok(bytes.try_into().unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    #[test]
    fn sequences_duplicates_and_epochs() {
        let mut state = ProducerState::default();
        assert_eq!(state.check(&header(7, 0, 0, 3, 0)).unwrap(), Verdict::Append);
        state.record(&header(7, 0, 0, 3, 0), None);
        assert!(matches!(state.check(&header(7, 0, 5, 1, 0)), Err(CoreError::OutOfOrderSequence(_))));
        let dup = state.check(&header(7, 0, 0, 3, 99)).unwrap();
        assert_eq!(dup, Verdict::Duplicate(BatchMeta { first_sequence: 0, last_sequence: 2, first_offset: 0, last_offset: 2 }));
        assert_eq!(state.check(&header(7, 0, 3, 2, 0)).unwrap(), Verdict::Append);
        for i in 0..6 {
            state.record(&header(7, 0, 3 + i, 1, 3 + i as i64), None);
        }
        // The first batch fell out of the last five: a repeat of it is out of order now.
        assert!(matches!(state.check(&header(7, 0, 0, 3, 0)), Err(CoreError::OutOfOrderSequence(_))));
        assert!(matches!(state.check(&header(7, 1, 4, 1, 0)), Err(CoreError::OutOfOrderSequence(_))));
        assert_eq!(state.check(&header(7, 1, 0, 1, 0)).unwrap(), Verdict::Append);
        state.record(&header(7, 1, 0, 1, 20), None);
        assert!(matches!(state.check(&header(7, 0, 9, 1, 0)), Err(CoreError::InvalidProducerEpoch(_))));
        assert!(matches!(state.check(&header(8, 0, 1, 1, 0)), Err(CoreError::UnknownProducerId(_))));
        assert_eq!(state.check(&header(-1, -1, -1, 1, 0)).unwrap(), Verdict::Append);
        let copy = ProducerState::from_bytes(&state.to_bytes()).unwrap();
        assert_eq!(copy, state);
        let mut damaged = state.to_bytes();
        damaged[6] ^= 1;
        assert!(ProducerState::from_bytes(&damaged).is_err());
    }

    #[test]
    fn transactions_open_with_their_first_batch_and_end_with_a_marker() {
        let mut state = ProducerState::default();
        let mut txn = header(7, 0, 0, 2, 10);
        txn.attributes = crate::batch::ATTR_TRANSACTIONAL;
        state.record(&txn, None);
        let mut more = header(7, 0, 2, 1, 12);
        more.attributes = crate::batch::ATTR_TRANSACTIONAL;
        state.record(&more, None);
        let mut other = header(9, 0, 0, 1, 13);
        other.attributes = crate::batch::ATTR_TRANSACTIONAL;
        state.record(&other, None);
        assert_eq!(state.first_unstable_offset(), Some(10));
        assert_eq!(state.ongoing(), vec![(7, 10), (9, 13)]);
        let copy = ProducerState::from_bytes(&state.to_bytes()).unwrap();
        assert_eq!(copy, state);
        let mut marker = header(7, 1, -1, 1, 14);
        marker.attributes = crate::batch::ATTR_TRANSACTIONAL | crate::batch::ATTR_CONTROL;
        let done = state.record(&marker, Some(Marker { commit: false, coordinator_epoch: 3 }));
        assert_eq!(done, Some(CompletedTxn { producer_id: 7, first_offset: 10, last_offset: 14, aborted: true }));
        assert_eq!(state.first_unstable_offset(), Some(13));
        // The marker's epoch is the producer's now: the old epoch is fenced, the new starts at 0.
        assert!(matches!(state.check(&header(7, 0, 3, 1, 0)), Err(CoreError::InvalidProducerEpoch(_))));
        assert_eq!(state.check(&header(7, 1, 0, 1, 0)).unwrap(), Verdict::Append);
        assert_eq!(state.entry(7).unwrap().coordinator_epoch, 3);
        // A marker for a producer without an open transaction here ends nothing.
        assert_eq!(state.record(&marker, Some(Marker { commit: true, coordinator_epoch: 3 })), None);
    }

    #[test]
    fn a_version_1_snapshot_is_still_read() {
        let mut state = ProducerState::default();
        state.record(&header(5, 2, 0, 3, 0), None);
        let mut v1 = Vec::new();
        v1.extend_from_slice(SNAPSHOT_MAGIC);
        v1.extend_from_slice(&1u16.to_be_bytes());
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.extend_from_slice(&5i64.to_be_bytes());
        v1.extend_from_slice(&2i16.to_be_bytes());
        v1.push(1);
        for v in [0i32, 2] {
            v1.extend_from_slice(&v.to_be_bytes());
        }
        for v in [0i64, 2] {
            v1.extend_from_slice(&v.to_be_bytes());
        }
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_be_bytes());
        let read = ProducerState::from_bytes(&v1).unwrap();
        assert_eq!(read.entry(5).unwrap().batches, state.entry(5).unwrap().batches);
        assert_eq!(read.entry(5).unwrap().txn_first_offset, -1);
    }

    #[test]
    fn sequence_wraps() {
        let mut state = ProducerState::default();
        state.record(&header(1, 0, 0, 1, 0), None);
        state.producers.get_mut(&1).unwrap().batches[0].last_sequence = i32::MAX - 1;
        let h = header(1, 0, i32::MAX, 3, 1);
        assert_eq!(last_sequence(&h), 1);
        assert_eq!(state.check(&h).unwrap(), Verdict::Append);
    }
}
