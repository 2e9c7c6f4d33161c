//! Sparse indexes of a segment, laid out as Kafka lays them out.
//!
//! `.index`: 8-byte entries (offset relative to the segment base: i32, file position: i32).
//! `.timeindex`: 12-byte entries (timestamp: i64, relative offset: i32).
//! Entries are big-endian and ascending; a lookup is a binary search for the last entry whose key
//! is <= the target. Sealed segments are searched through a memory map; the active segment keeps
//! its entries in memory (bounded by `segment.bytes / index.interval.bytes`) and appends them to
//! the file as they are made.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{CoreError, Result};

pub const OFFSET_ENTRY: usize = 8;
pub const TIME_ENTRY: usize = 12;

/// Where an index's entries live: in memory for the active segment, mapped for sealed ones.
pub enum IndexBytes {
    Owned(Vec<u8>),
    Mapped(Arc<Mmap>),
    Empty,
}

impl IndexBytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            IndexBytes::Owned(v) => v,
            IndexBytes::Mapped(m) => m,
            IndexBytes::Empty => &[],
        }
    }
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// Index of the last entry whose key is <= `target`, or None when every key is larger.
fn last_at_or_below(entries: &[u8], width: usize, target: i64, key: impl Fn(&[u8], usize) -> i64) -> Option<usize> {
    let count = entries.len() / width;
    let (mut lo, mut hi) = (0usize, count);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if key(entries, mid * width) <= target {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo.checked_sub(1)
}

/// File position to start scanning from for `relative_offset` (0 when no entry is at or below it).
pub fn offset_lookup(entries: &[u8], relative_offset: i64) -> u64 {
    match last_at_or_below(entries, OFFSET_ENTRY, relative_offset, |b, at| be_i32(b, at) as i64) {
        Some(i) => be_i32(entries, i * OFFSET_ENTRY + 4) as u32 as u64,
        None => 0,
    }
}

/// Relative offset to start scanning from for the first record with timestamp >= `timestamp`.
pub fn time_lookup(entries: &[u8], timestamp: i64) -> i64 {
    // The last entry strictly below the target: records at the target may follow it.
    match last_at_or_below(entries, TIME_ENTRY, timestamp - 1, be_i64) {
        Some(i) => be_i32(entries, i * TIME_ENTRY + 8) as i64,
        None => 0,
    }
}

pub fn last_time_entry(entries: &[u8]) -> Option<(i64, i64)> {
    let n = entries.len() / TIME_ENTRY;
    (n > 0).then(|| {
        let at = (n - 1) * TIME_ENTRY;
        (be_i64(entries, at), be_i32(entries, at + 8) as i64)
    })
}

pub fn offset_entry(relative_offset: i32, position: u32) -> [u8; OFFSET_ENTRY] {
    let mut e = [0u8; OFFSET_ENTRY];
    e[..4].copy_from_slice(&relative_offset.to_be_bytes());
    e[4..].copy_from_slice(&position.to_be_bytes());
    e
}

pub fn time_entry(timestamp: i64, relative_offset: i32) -> [u8; TIME_ENTRY] {
    let mut e = [0u8; TIME_ENTRY];
    e[..8].copy_from_slice(&timestamp.to_be_bytes());
    e[8..].copy_from_slice(&relative_offset.to_be_bytes());
    e
}

/// Checks an offset index found on disk: whole entries, ascending, positions inside the log.
pub fn offset_index_is_sane(entries: &[u8], log_size: u64) -> bool {
    if entries.len() % OFFSET_ENTRY != 0 {
        return false;
    }
    let mut previous = (-1i64, -1i64);
    for chunk in entries.chunks_exact(OFFSET_ENTRY) {
        let (rel, pos) = (be_i32(chunk, 0) as i64, be_i32(chunk, 4) as u32 as i64);
        if rel <= previous.0 || pos <= previous.1 || pos as u64 >= log_size {
            return false;
        }
        previous = (rel, pos);
    }
    true
}

/// Checks a time index found on disk: whole entries, timestamps and offsets not decreasing.
pub fn time_index_is_sane(entries: &[u8], max_relative_offset: i64) -> bool {
    if entries.len() % TIME_ENTRY != 0 {
        return false;
    }
    let mut previous = (i64::MIN, -1i64);
    for chunk in entries.chunks_exact(TIME_ENTRY) {
        let (ts, rel) = (be_i64(chunk, 0), be_i32(chunk, 8) as i64);
        if ts < previous.0 || rel < previous.1 || rel > max_relative_offset {
            return false;
        }
        previous = (ts, rel);
    }
    true
}

/// Maps an index file read-only; an empty file maps to nothing (mmap of 0 bytes is an error).
pub fn map_file(path: &Path) -> Result<IndexBytes> {
    let file = File::open(path).map_err(|e| CoreError::io(format!("open {}", path.display()), e))?;
    let len = file.metadata().map_err(|e| CoreError::io(format!("stat {}", path.display()), e))?.len();
    if len == 0 {
        return Ok(IndexBytes::Empty);
    }
    // SAFETY: index files of sealed segments are never written again while mapped; a truncation
    // happens only through this process, which drops the map first.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| CoreError::io(format!("mmap {}", path.display()), e))?;
    Ok(IndexBytes::Mapped(Arc::new(map)))
}

/// Writes a whole index file (used when rebuilding) and fsyncs it.
pub fn write_file(path: &Path, entries: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(|e| CoreError::io(format!("create {}", path.display()), e))?;
    file.write_all(entries)
        .and_then(|_| file.sync_all())
        .map_err(|e| CoreError::io(format!("write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let mut entries = Vec::new();
        for (rel, pos) in [(5, 100u32), (10, 200), (20, 400)] {
            entries.extend_from_slice(&offset_entry(rel, pos));
        }
        assert_eq!(offset_lookup(&entries, 0), 0);
        assert_eq!(offset_lookup(&entries, 5), 100);
        assert_eq!(offset_lookup(&entries, 19), 200);
        assert_eq!(offset_lookup(&entries, 1000), 400);
        assert_eq!(offset_lookup(&[], 7), 0);
        assert!(offset_index_is_sane(&entries, 401));
        assert!(!offset_index_is_sane(&entries, 400));
        assert!(!offset_index_is_sane(&entries[..7], 1000));
    }

    #[test]
    fn time_lookup_starts_before_target() {
        let mut entries = Vec::new();
        for (ts, rel) in [(100i64, 3), (200, 8), (300, 15)] {
            entries.extend_from_slice(&time_entry(ts, rel));
        }
        assert_eq!(time_lookup(&entries, 50), 0);
        assert_eq!(time_lookup(&entries, 100), 0);
        assert_eq!(time_lookup(&entries, 101), 3);
        assert_eq!(time_lookup(&entries, 300), 8);
        assert_eq!(last_time_entry(&entries), Some((300, 15)));
        assert!(time_index_is_sane(&entries, 15));
        assert!(!time_index_is_sane(&entries, 14));
    }
}
