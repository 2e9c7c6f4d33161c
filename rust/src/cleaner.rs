//! Log compaction (`cleanup.policy=compact`): keep the last record of each key.
//!
//! A pass looks at the sealed segments (never the active one) old enough for
//! `min.compaction.lag.ms`, when the dirty part (written since the last pass) is at least
//! `min.cleanable.dirty.ratio` of them. It maps each key in the dirty part to its last offset,
//! then rewrites every cleanable segment keeping a record unless a later record has its key, or
//! it is a tombstone (null value) older than `delete.retention.ms`. Offsets never change (gaps
//! are normal); a batch keeps its base offset, last offset delta, timestamps and producer
//! fields, and compressed batches are decompressed, filtered and compressed again with their
//! codec. Each rewritten segment goes to `<base>.log.cleaned`, is renamed `.log.swap` once
//! complete, and then replaces `.log`; recovery deletes `.cleaned` files and finishes `.swap`
//! renames, so a crash leaves a segment either old or new, never a mix.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::fs::{self, File};
use std::io::Write;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::batch::{self, parse_records, BatchHeader, RecordRef, HEADER_SIZE, LOG_OVERHEAD};
use crate::compression;
use crate::error::{CoreError, Result};

/// The decompressed records section of one whole batch.
fn records_of(batch_bytes: &[u8], header: &BatchHeader) -> Result<Vec<u8>> {
    compression::decompress(header.compression(), &batch_bytes[HEADER_SIZE..], usize::MAX)
}

/// Calls `f(header, batch bytes)` for each batch of a segment file up to `size` bytes, until it
/// answers `Break`.
pub fn for_each_batch(path: &Path, size: u64, mut f: impl FnMut(&BatchHeader, &[u8]) -> Result<ControlFlow<()>>) -> Result<()> {
    let file = File::open(path).map_err(|e| CoreError::io(format!("open {}", path.display()), e))?;
    let mut position = 0u64;
    let mut buf = Vec::new();
    while position + HEADER_SIZE as u64 <= size {
        let mut head = [0u8; HEADER_SIZE];
        file.read_exact_at(&mut head, position).map_err(|e| CoreError::io(format!("read {}", path.display()), e))?;
        let header = batch::parse_header(&head)?;
        buf.resize(header.size(), 0);
        file.read_exact_at(&mut buf, position).map_err(|e| CoreError::io(format!("read {}", path.display()), e))?;
        if f(&header, &buf)?.is_break() {
            break;
        }
        position += header.size() as u64;
    }
    Ok(())
}

/// The offset of each key's last record in the dirty part of a log, by a 128-bit digest of the
/// key, as Kafka's cleaner keeps an MD5 of it. Keyed by the keys themselves, a pass over a log of
/// 8.5 M small records held 1 GB and spent 0.9 s freeing them one by one. The digest is two
/// SipHashes under the process's secret keys (std's `RandomState`; the two differ in one of
/// their two keys), so no producer can choose two keys that collide (a collision would drop the
/// older key's last value); by chance, one pass over 10^9 keys collides with odds of about
/// 10^-21.
pub struct LastOffsets {
    digests: [RandomState; 2],
    map: HashMap<Digest, i64, BuildHasherDefault<DigestHasher>>,
}

/// Two u64s rather than a u128, whose alignment would make each entry of the map 32 bytes, not 24.
#[derive(PartialEq, Eq, Clone, Copy)]
struct Digest(u64, u64);

impl Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.1);
    }
}

impl Default for LastOffsets {
    fn default() -> Self {
        LastOffsets { digests: [RandomState::new(), RandomState::new()], map: HashMap::default() }
    }
}

impl LastOffsets {
    fn digest(&self, key: &[u8]) -> Digest {
        let [high, low] = &self.digests;
        Digest(high.hash_one(key), low.hash_one(key))
    }

    pub fn insert(&mut self, key: &[u8], offset: i64) {
        let digest = self.digest(key);
        self.map.insert(digest, offset);
    }

    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.map.get(&self.digest(key)).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The map's own hash of a digest: half of it, already uniform (hashing it again would cost a
/// third of an insert).
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; anything else is folded in, not dropped.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, half: u64) {
        self.0 = half;
    }
}

/// Maps each key seen in batches at or after `from` to the offset of its last record.
pub fn add_keys(map: &mut LastOffsets, header: &BatchHeader, batch_bytes: &[u8], from: i64) -> Result<()> {
    if header.is_control() || header.last_offset() < from {
        return Ok(());
    }
    let records = records_of(batch_bytes, header)?;
    for record in parse_records(&records, header.record_count)? {
        let offset = header.base_offset + record.offset_delta as i64;
        if let (Some((start, end)), true) = (record.key, offset >= from) {
            map.insert(&records[start..end], offset);
        }
    }
    Ok(())
}

/// What cleaning did.
#[derive(Debug, Default, Clone, Copy)]
pub struct CleanStats {
    pub segments: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    /// Keys in the pass's map (at most its `max_keys`, or one batch's).
    pub keys_mapped: usize,
}

/// The batch with only the records `keep` says to keep, or None when none are left.
pub fn filter_batch(
    header: &BatchHeader,
    batch_bytes: &[u8],
    keep: impl Fn(i64, Option<&[u8]>, bool) -> bool,
    stats: &mut CleanStats,
) -> Result<Option<Vec<u8>>> {
    if header.is_control() {
        return Ok(Some(batch_bytes.to_vec()));
    }
    let records = records_of(batch_bytes, header)?;
    let parsed = parse_records(&records, header.record_count)?;
    let kept: Vec<&RecordRef> = parsed
        .iter()
        .filter(|r| keep(header.base_offset + r.offset_delta as i64, r.key.map(|(s, e)| &records[s..e]), r.tombstone()))
        .collect();
    stats.records_removed += (parsed.len() - kept.len()) as u64;
    if kept.len() == parsed.len() {
        return Ok(Some(batch_bytes.to_vec()));
    }
    if kept.is_empty() {
        return Ok(None);
    }
    let mut body = Vec::new();
    for record in &kept {
        body.extend_from_slice(&records[record.start..record.end]);
    }
    // Kafka's cleaner also rewrites a batch at its codec's default level.
    let body = compression::compress(header.compression(), &body, None)?;
    let mut out = Vec::with_capacity(HEADER_SIZE + body.len());
    out.extend_from_slice(&batch_bytes[..HEADER_SIZE]);
    out.extend_from_slice(&body);
    let length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    out[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = batch::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(Some(out))
}

pub fn cleaned_path(log_path: &Path) -> std::path::PathBuf {
    log_path.with_extension("log.cleaned")
}

pub fn swap_path(log_path: &Path) -> std::path::PathBuf {
    log_path.with_extension("log.swap")
}

/// The index files written beside a `.cleaned` file, and the names they take in place.
fn cleaned_index_paths(log_path: &Path) -> [(std::path::PathBuf, std::path::PathBuf); 2] {
    ["index", "timeindex"].map(|suffix| (log_path.with_extension(format!("{suffix}.cleaned")), log_path.with_extension(suffix)))
}

/// Writes `bytes` to the segment's `.cleaned` file, and `indexes` (offset index, time index)
/// beside it, and fsyncs them; a failure removes them. Opening a log deletes `.cleaned` files:
/// the output of a pass is not in place until `mark_complete`, which the pass does with the
/// log held, as the segment goes in.
pub fn write_cleaned(log_path: &Path, bytes: &[u8], indexes: Option<(Vec<u8>, Vec<u8>)>) -> Result<()> {
    // No index file of an earlier, failed pass may go in place beside this one's log.
    remove_cleaned(log_path);
    let mut files = vec![(cleaned_path(log_path), bytes)];
    let [(offsets_path, _), (times_path, _)] = cleaned_index_paths(log_path);
    if let Some((offsets, times)) = &indexes {
        files.push((offsets_path, offsets));
        files.push((times_path, times));
    }
    for (path, contents) in files {
        let written = File::create(&path).and_then(|mut file| file.write_all(contents).and_then(|_| file.sync_all()));
        if let Err(e) = written {
            remove_cleaned(log_path);
            return Err(CoreError::io(format!("write {}", path.display()), e));
        }
    }
    Ok(())
}

/// Removes what `write_cleaned` wrote for a segment (a pass dropped, or failed).
pub fn remove_cleaned(log_path: &Path) {
    let _ = fs::remove_file(cleaned_path(log_path));
    for (cleaned, _) in cleaned_index_paths(log_path) {
        let _ = fs::remove_file(cleaned);
    }
}

/// Renames the `.cleaned` file `.swap`: from here a crash finishes the swap on open.
pub fn mark_complete(log_path: &Path) -> Result<()> {
    let cleaned = cleaned_path(log_path);
    fs::rename(&cleaned, swap_path(log_path)).map_err(|e| CoreError::io(format!("rename {}", cleaned.display()), e))
}

/// Replaces a segment's `.log` with its `.swap` file; its index files are renamed `.deleted`
/// (to be rebuilt, or replaced by the pass's), and returned for the caller to unlink once it
/// lets go of the log: an unlink can wait for the device (a filesystem mounted with `discard`).
pub fn complete_swap(log_path: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut retired = Vec::new();
    for suffix in ["index", "timeindex"] {
        retired.extend(crate::segment::rename_aside(&log_path.with_extension(suffix), ".deleted")?);
    }
    let swap = swap_path(log_path);
    fs::rename(&swap, log_path).map_err(|e| CoreError::io(format!("rename {}", swap.display()), e))?;
    Ok(retired)
}

/// Renames a segment's `.log` file `.replaced` before `complete_swap` puts the cleaned one in
/// its place: a rename over it would unlink it there and then (~200 ms a GiB on ext4), with the
/// log held. The caller unlinks it after letting go. An open finishes the swap of a `.swap`
/// file whether or not the `.log` is still there, and then removes a `.replaced` file beside a
/// `.log`, or renames it back where there is none (`restore_replaced`).
pub fn retire_replaced(log_path: &Path) -> Result<Option<std::path::PathBuf>> {
    crate::segment::rename_aside(log_path, ".replaced")
}

/// At open, after the swaps were finished: a `.replaced` file left by a crash goes if its
/// segment's `.log` is there, and is the `.log` again if not (the cleaned file's renames did not
/// all reach the disk). Whether it became the `.log` again.
pub fn restore_replaced(replaced: &Path) -> Result<bool> {
    let log_path = replaced.with_extension("");
    if log_path.exists() {
        fs::remove_file(replaced).map_err(|e| CoreError::io(format!("delete {}", replaced.display()), e))?;
        return Ok(false);
    }
    fs::rename(replaced, &log_path).map_err(|e| CoreError::io(format!("rename {}", replaced.display()), e))?;
    Ok(true)
}

/// After `complete_swap`: the index files the pass wrote take their place. Whatever is not
/// there (none were written, or a rename failed) the segment's open rebuilds from the log.
pub fn place_cleaned_indexes(log_path: &Path) {
    for (cleaned, placed) in cleaned_index_paths(log_path) {
        let _ = fs::rename(cleaned, placed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::build_batch;

    #[test]
    fn parses_records_of_a_built_batch() {
        let b = build_batch(10, 5, &[b"one", b"two", b"three"]);
        let header = batch::validate_batch(&b).unwrap();
        let records = records_of(&b, &header).unwrap();
        let parsed = parse_records(&records, header.record_count).unwrap();
        assert_eq!(parsed.iter().map(|r| r.offset_delta).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(parsed.iter().all(|r| r.key.is_none() && !r.tombstone()));
        let mut stats = CleanStats::default();
        let kept = filter_batch(&header, &b, |offset, _, _| offset != 11, &mut stats).unwrap().unwrap();
        let kept_header = batch::validate_batch(&kept).unwrap();
        assert_eq!((kept_header.record_count, kept_header.last_offset_delta, kept_header.base_offset), (2, 2, 10));
        assert_eq!(stats.records_removed, 1);
        assert!(filter_batch(&header, &b, |_, _, _| false, &mut stats).unwrap().is_none());
    }
}
