//! Idempotent producers: per partition, each producer id's epoch and its last five batches.
//!
//! A batch from a producer (producer id >= 0, base sequence >= 0) is checked against that
//! producer's state: a repeat of one of its last five batches is a duplicate (answered with the
//! original offsets, not written again); otherwise its sequence must follow the last one.
//! The state is snapshotted beside the segments (`<offset>.snapshot`) and, on open, rebuilt
//! from the newest snapshot by replaying the batch headers after it.

use std::collections::{HashMap, VecDeque};

use crate::batch::BatchHeader;
use crate::error::{CoreError, Result};

/// Batches remembered per producer for duplicate detection (Kafka's max.in.flight limit).
pub const REMEMBERED_BATCHES: usize = 5;
const SNAPSHOT_MAGIC: &[u8; 4] = b"FLPS";
const SNAPSHOT_VERSION: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
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

    /// Records a batch that was appended with its offsets assigned (also used by replay).
    pub fn record(&mut self, header: &BatchHeader) {
        if !is_idempotent(header) {
            return;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
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
        if reader.take::<2>()? != SNAPSHOT_VERSION.to_be_bytes() {
            return Err(bad("unknown version"));
        }
        let count = u32::from_be_bytes(reader.take::<4>()?);
        let mut state = ProducerState::default();
        for _ in 0..count {
            let pid = i64::from_be_bytes(reader.take::<8>()?);
            let epoch = i16::from_be_bytes(reader.take::<2>()?);
            let batches = reader.take::<1>()?[0] as usize;
            let mut entry = ProducerEntry { epoch, batches: VecDeque::new() };
            for _ in 0..batches.min(REMEMBERED_BATCHES) {
                entry.batches.push_back(BatchMeta {
                    first_sequence: i32::from_be_bytes(reader.take::<4>()?),
                    last_sequence: i32::from_be_bytes(reader.take::<4>()?),
                    first_offset: i64::from_be_bytes(reader.take::<8>()?),
                    last_offset: i64::from_be_bytes(reader.take::<8>()?),
                });
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
        state.record(&header(7, 0, 0, 3, 0));
        assert!(matches!(state.check(&header(7, 0, 5, 1, 0)), Err(CoreError::OutOfOrderSequence(_))));
        let dup = state.check(&header(7, 0, 0, 3, 99)).unwrap();
        assert_eq!(dup, Verdict::Duplicate(BatchMeta { first_sequence: 0, last_sequence: 2, first_offset: 0, last_offset: 2 }));
        assert_eq!(state.check(&header(7, 0, 3, 2, 0)).unwrap(), Verdict::Append);
        for i in 0..6 {
            state.record(&header(7, 0, 3 + i, 1, 3 + i as i64));
        }
        // The first batch fell out of the last five: a repeat of it is out of order now.
        assert!(matches!(state.check(&header(7, 0, 0, 3, 0)), Err(CoreError::OutOfOrderSequence(_))));
        assert!(matches!(state.check(&header(7, 1, 4, 1, 0)), Err(CoreError::OutOfOrderSequence(_))));
        assert_eq!(state.check(&header(7, 1, 0, 1, 0)).unwrap(), Verdict::Append);
        state.record(&header(7, 1, 0, 1, 20));
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
    fn sequence_wraps() {
        let mut state = ProducerState::default();
        state.record(&header(1, 0, 0, 1, 0));
        state.producers.get_mut(&1).unwrap().batches[0].last_sequence = i32::MAX - 1;
        let h = header(1, 0, i32::MAX, 3, 1);
        assert_eq!(last_sequence(&h), 1);
        assert_eq!(state.check(&h).unwrap(), Verdict::Append);
    }
}
