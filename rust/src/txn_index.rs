//! The aborted-transaction index (`<segment base>.txnindex`, Kafka's layout): one 34-byte entry
//! per transaction aborted in that segment, so that a `read_committed` fetch can tell consumers
//! which producers' records to drop. Entry: version i16 (0) | producer id i64 | first offset
//! i64 | last offset i64 (the ABORT marker's) | last stable offset i64 (after the abort).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{CoreError, Result};

pub const SUFFIX: &str = ".txnindex";
const ENTRY_SIZE: usize = 34;
const VERSION: i16 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn to_bytes(self) -> [u8; ENTRY_SIZE] {
        let mut out = [0u8; ENTRY_SIZE];
        out[..2].copy_from_slice(&VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }

    fn from_bytes(b: &[u8]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().unwrap());
        (i16::from_be_bytes([b[0], b[1]]) == VERSION).then(|| AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        })
    }
}

/// The entries of an index file (none when it does not exist); a torn last entry is ignored.
pub fn read(path: &Path) -> Result<Vec<AbortedTxn>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CoreError::io(format!("read {}", path.display()), e)),
    };
    Ok(bytes.chunks_exact(ENTRY_SIZE).filter_map(AbortedTxn::from_bytes).collect())
}

/// Adds one entry at the end of an index file (created when missing).
pub fn append(path: &Path, entry: &AbortedTxn) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| CoreError::io(format!("open {}", path.display()), e))?;
    file.write_all(&entry.to_bytes()).map_err(|e| CoreError::io(format!("write {}", path.display()), e))
}

/// Replaces an index file with `entries` (removed when there are none).
pub fn rewrite(path: &Path, entries: &[AbortedTxn]) -> Result<()> {
    if entries.is_empty() {
        return match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CoreError::io(format!("delete {}", path.display()), e)),
            _ => Ok(()),
        };
    }
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_bytes()).collect();
    let tmp = path.with_extension("txnindex.tmp");
    fs::write(&tmp, &bytes).map_err(|e| CoreError::io(format!("write {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| CoreError::io(format!("rename {}", tmp.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        assert!(read(&path).unwrap().is_empty());
        let a = AbortedTxn { producer_id: 7, first_offset: 3, last_offset: 9, last_stable_offset: 10 };
        let b = AbortedTxn { producer_id: 8, first_offset: 11, last_offset: 12, last_stable_offset: 13 };
        append(&path, &a).unwrap();
        append(&path, &b).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 68);
        OpenOptions::new().append(true).open(&path).unwrap().write_all(&[0, 0, 1]).unwrap();
        assert_eq!(read(&path).unwrap(), vec![a, b]);
        rewrite(&path, &[a]).unwrap();
        assert_eq!(read(&path).unwrap(), vec![a]);
        rewrite(&path, &[]).unwrap();
        assert!(!path.exists());
    }
}
