//! One segment of a partition log: `<base offset>.log` with its `.index` and `.timeindex`.
//!
//! The `.log` file holds record batches exactly as they went over the wire (offsets assigned).
//! Only the last segment of a log (the active one) is appended to; it keeps its index entries in
//! memory and also appends them to its index files. Sealed segments map their index files lazily.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{self, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};
use crate::error::{CoreError, Result};
use crate::files;
use crate::index::{self, IndexBytes, OFFSET_ENTRY};

pub fn segment_file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

pub struct Segment {
    pub base_offset: i64,
    file_id: u64,
    dir: PathBuf,
    /// Bytes of whole batches in the `.log` file.
    pub size: u64,
    /// One past the last offset stored here (`base_offset` while empty).
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
    /// Wall-clock time the segment was created or opened, for `segment.ms`.
    pub created_ms: i64,
    offset_index: Option<IndexBytes>,
    time_index: Option<IndexBytes>,
    /// Open handles on the index files while the segment is active.
    index_writers: Option<(File, File)>,
    bytes_since_index_entry: u64,
    /// Timestamp of the last time-index entry: a new entry is made only when the max grows.
    time_indexed_max: i64,
}

/// What a recovery scan accepts as a valid batch.
#[derive(Clone, Copy)]
pub struct ScanRules {
    pub index_interval: u64,
    pub verify_crc: bool,
    /// Offsets must follow each other without gaps (every log that is not compacted).
    pub contiguous: bool,
    /// Offsets must stay below this (the next segment's base offset).
    pub offset_limit: i64,
}

/// What a recovery scan found in a segment.
pub struct ScanResult {
    pub valid_bytes: u64,
    pub invalid_reason: Option<String>,
}

impl Segment {
    pub fn path(&self, suffix: &str) -> PathBuf {
        self.dir.join(segment_file_name(self.base_offset, suffix))
    }

    pub fn log_path(&self) -> PathBuf {
        self.path(".log")
    }

    fn blank(dir: &Path, base_offset: i64, now_ms: i64) -> Segment {
        Segment {
            base_offset,
            file_id: files::new_file_id(),
            dir: dir.to_path_buf(),
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            created_ms: now_ms,
            offset_index: None,
            time_index: None,
            index_writers: None,
            bytes_since_index_entry: 0,
            time_indexed_max: -1,
        }
    }

    /// Creates the three empty files of a new active segment (an existing empty one is reused).
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> Result<Segment> {
        let mut segment = Segment::blank(dir, base_offset, now_ms);
        let log_path = segment.log_path();
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| CoreError::io(format!("create {}", log_path.display()), e))?;
        segment.offset_index = Some(IndexBytes::Owned(Vec::new()));
        segment.time_index = Some(IndexBytes::Owned(Vec::new()));
        segment.open_index_writers(true)?;
        Ok(segment)
    }

    /// Opens an existing segment without reading its batches: size from the file, indexes lazily.
    pub fn open_existing(dir: &Path, base_offset: i64, now_ms: i64) -> Result<Segment> {
        let mut segment = Segment::blank(dir, base_offset, now_ms);
        let log_path = segment.log_path();
        let meta = fs::metadata(&log_path).map_err(|e| CoreError::io(format!("stat {}", log_path.display()), e))?;
        segment.size = meta.len();
        Ok(segment)
    }

    fn open_index_writers(&mut self, truncate: bool) -> Result<()> {
        let open = |path: PathBuf| {
            OpenOptions::new()
                .create(true)
                .append(!truncate)
                .write(true)
                .truncate(truncate)
                .open(&path)
                .map_err(|e| CoreError::io(format!("open {}", path.display()), e))
        };
        self.index_writers = Some((open(self.path(".index"))?, open(self.path(".timeindex"))?));
        Ok(())
    }

    pub fn file(&self) -> Result<Arc<File>> {
        files::get(self.file_id, &self.log_path())
    }

    pub fn is_active(&self) -> bool {
        self.index_writers.is_some()
    }

    pub fn index_entry_count(&mut self) -> Result<usize> {
        Ok(self.offset_index_bytes()?.as_slice().len() / OFFSET_ENTRY)
    }

    fn offset_index_bytes(&mut self) -> Result<&IndexBytes> {
        if self.offset_index.is_none() {
            self.offset_index = Some(index::map_file(&self.path(".index"))?);
        }
        Ok(self.offset_index.as_ref().unwrap())
    }

    fn time_index_bytes(&mut self) -> Result<&IndexBytes> {
        if self.time_index.is_none() {
            self.time_index = Some(index::map_file(&self.path(".timeindex"))?);
        }
        Ok(self.time_index.as_ref().unwrap())
    }

    /// Appends batches whose offsets are already assigned; `headers` describe them in order.
    pub fn append(&mut self, bytes: &[u8], headers: &[BatchHeader], index_interval: u64) -> Result<()> {
        let file = self.file()?;
        file.write_all_at(bytes, self.size)
            .map_err(|e| CoreError::io(format!("append to {}", self.log_path().display()), e))?;
        let mut position = self.size;
        for header in headers {
            self.note_batch(header, position, index_interval)?;
            position += header.size() as u64;
        }
        self.size = position;
        Ok(())
    }

    /// Accounts for one batch at `position`: offsets, timestamps and (every interval) index entries.
    fn note_batch(&mut self, header: &BatchHeader, position: u64, index_interval: u64) -> Result<()> {
        let last_offset = header.last_offset();
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = last_offset;
        }
        self.next_offset = header.next_offset();
        if self.bytes_since_index_entry >= index_interval || position == 0 {
            let relative = (last_offset - self.base_offset) as i32;
            let entry = index::offset_entry(relative, position as u32);
            self.push_index_entry(&entry, false)?;
            if self.max_timestamp > self.time_indexed_max {
                let relative_max = (self.offset_of_max_timestamp - self.base_offset) as i32;
                let entry = index::time_entry(self.max_timestamp, relative_max);
                self.push_index_entry(&entry, true)?;
                self.time_indexed_max = self.max_timestamp;
            }
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += header.size() as u64;
        Ok(())
    }

    fn push_index_entry(&mut self, entry: &[u8], time: bool) -> Result<()> {
        let slot = if time { &mut self.time_index } else { &mut self.offset_index };
        if let Some(IndexBytes::Owned(entries)) = slot {
            entries.extend_from_slice(entry);
        }
        if let Some((offset_file, time_file)) = self.index_writers.as_mut() {
            let file = if time { time_file } else { offset_file };
            file.write_all(entry).map_err(|e| CoreError::io("append index entry", e))?;
        }
        Ok(())
    }

    /// Reads the batch header at `position`, or None at the end of the segment.
    pub fn header_at(&self, file: &File, position: u64) -> Result<Option<BatchHeader>> {
        if position + HEADER_SIZE as u64 > self.size {
            return Ok(None);
        }
        let mut buf = [0u8; HEADER_SIZE];
        file.read_exact_at(&mut buf, position)
            .map_err(|e| CoreError::io(format!("read {} at {position}", self.log_path().display()), e))?;
        batch::parse_header(&buf).map(Some)
    }

    /// Position of the first batch whose last offset is >= `offset` (with that header), or None.
    pub fn find_batch(&mut self, file: &File, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let relative = offset - self.base_offset;
        let mut position = index::offset_lookup(self.offset_index_bytes()?.as_slice(), relative);
        while let Some(header) = self.header_at(file, position)? {
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += header.size() as u64;
        }
        Ok(None)
    }

    /// Position of the first batch whose max timestamp is >= `timestamp`, or None.
    pub fn find_batch_by_time(&mut self, file: &File, timestamp: i64) -> Result<Option<(u64, BatchHeader)>> {
        let relative = index::time_lookup(self.time_index_bytes()?.as_slice(), timestamp);
        let start = index::offset_lookup(self.offset_index_bytes()?.as_slice(), relative);
        let mut position = start;
        while let Some(header) = self.header_at(file, position)? {
            if header.max_timestamp >= timestamp {
                return Ok(Some((position, header)));
            }
            position += header.size() as u64;
        }
        Ok(None)
    }

    /// Walks every batch from the start, checking length, magic, CRC and offset order, and
    /// rebuilds both indexes as it goes. Stops at the first bad batch; the caller truncates there.
    pub fn recover(&mut self, rules: ScanRules) -> Result<ScanResult> {
        let path = self.log_path();
        let file = File::open(&path).map_err(|e| CoreError::io(format!("open {}", path.display()), e))?;
        let file_size = file.metadata().map_err(|e| CoreError::io(format!("stat {}", path.display()), e))?.len();
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        self.reset_indexes();
        let mut position = 0u64;
        let mut batch_bytes = Vec::new();
        let mut invalid_reason = None;
        while position < file_size {
            let remaining = file_size - position;
            if remaining < HEADER_SIZE as u64 {
                invalid_reason = Some(format!("{remaining} trailing bytes are less than a batch header"));
                break;
            }
            let mut head = [0u8; LOG_OVERHEAD];
            reader.read_exact(&mut head).map_err(|e| CoreError::io(format!("read {}", path.display()), e))?;
            let (_, size) = match batch::peek_offset_and_size(&head) {
                Some(v) if v.1 as u64 <= remaining && v.1 >= HEADER_SIZE => v,
                _ => {
                    invalid_reason = Some(format!("batch at position {position} has an impossible length"));
                    break;
                }
            };
            batch_bytes.clear();
            batch_bytes.extend_from_slice(&head);
            batch_bytes.resize(size, 0);
            reader
                .read_exact(&mut batch_bytes[LOG_OVERHEAD..])
                .map_err(|e| CoreError::io(format!("read {}", path.display()), e))?;
            let checked = if rules.verify_crc { batch::validate_batch(&batch_bytes) } else { batch::parse_header(&batch_bytes) };
            let in_order = |h: &BatchHeader| {
                let starts_right = if rules.contiguous { h.base_offset == self.next_offset } else { h.base_offset >= self.next_offset };
                starts_right && h.last_offset() < rules.offset_limit && h.last_offset() - self.base_offset <= i32::MAX as i64
            };
            let header = match checked {
                Ok(h) if in_order(&h) => h,
                Ok(h) => {
                    invalid_reason = Some(format!(
                        "batch at position {position} has offset {} out of order (expected >= {})",
                        h.base_offset, self.next_offset
                    ));
                    break;
                }
                Err(e) => {
                    invalid_reason = Some(format!("batch at position {position}: {e}"));
                    break;
                }
            };
            self.note_batch(&header, position, rules.index_interval)?;
            position += size as u64;
        }
        self.size = position;
        Ok(ScanResult { valid_bytes: position, invalid_reason })
    }

    fn reset_indexes(&mut self) {
        self.offset_index = Some(IndexBytes::Owned(Vec::new()));
        self.time_index = Some(IndexBytes::Owned(Vec::new()));
        self.index_writers = None;
        self.bytes_since_index_entry = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
        self.time_indexed_max = -1;
    }

    /// Writes the in-memory indexes to disk in full (after a rebuild).
    pub fn write_indexes(&self) -> Result<()> {
        for (slot, suffix) in [(&self.offset_index, ".index"), (&self.time_index, ".timeindex")] {
            if let Some(IndexBytes::Owned(entries)) = slot {
                index::write_file(&self.path(suffix), entries)?;
            }
        }
        Ok(())
    }

    /// Cuts the `.log` file to `size` bytes (a torn or corrupt tail, or a truncation).
    pub fn truncate_file(&mut self, size: u64) -> Result<()> {
        let file = self.file()?;
        file.set_len(size)
            .and_then(|_| file.sync_all())
            .map_err(|e| CoreError::io(format!("truncate {}", self.log_path().display()), e))?;
        self.size = size;
        Ok(())
    }

    /// Makes this segment the active one: indexes in memory, index files open for appending.
    pub fn activate(&mut self) -> Result<()> {
        if self.is_active() {
            return Ok(());
        }
        let offset_entries = self.offset_index_bytes()?.as_slice().to_vec();
        let time_entries = self.time_index_bytes()?.as_slice().to_vec();
        self.time_indexed_max = index::last_time_entry(&time_entries).map_or(-1, |(ts, _)| ts);
        self.offset_index = Some(IndexBytes::Owned(offset_entries));
        self.time_index = Some(IndexBytes::Owned(time_entries));
        self.write_indexes()?;
        self.open_index_writers(false)?;
        // The next index entry comes one interval after the last batch; unknown here, so soon.
        self.bytes_since_index_entry = u64::MAX / 2;
        Ok(())
    }

    /// Stops appending: index files are complete on disk and get mapped when next needed.
    pub fn seal(&mut self) -> Result<()> {
        if let Some((offset_file, time_file)) = self.index_writers.take() {
            offset_file.sync_all().and_then(|_| time_file.sync_all()).map_err(|e| CoreError::io("fsync index", e))?;
        }
        self.offset_index = None;
        self.time_index = None;
        Ok(())
    }

    /// Loads what a sealed segment knows without a scan: indexes checked, rebuilt if not sane,
    /// the last batch read for the next offset, and the max timestamp from the time index.
    pub fn load_sealed(&mut self, rules: ScanRules) -> Result<Option<String>> {
        // An unreadable tail counts as an inconsistent index: the rebuild below reports it.
        if self.indexes_look_complete(rules.index_interval).unwrap_or(false) {
            if let Some((ts, rel)) = index::last_time_entry(self.time_index_bytes()?.as_slice()) {
                self.max_timestamp = ts;
                self.offset_of_max_timestamp = self.base_offset + rel;
            }
            if self.max_timestamp < 0 {
                // Kafka falls back to the file's modification time when no batch had a timestamp.
                self.max_timestamp = modified_ms(&self.log_path()).unwrap_or(-1);
            }
            return Ok(None);
        }
        let scan = self.recover(ScanRules { verify_crc: false, ..rules })?;
        self.write_indexes()?;
        self.offset_index = None;
        self.time_index = None;
        let mut note = format!("rebuilt the indexes of {}", self.log_path().display());
        if let Some(reason) = scan.invalid_reason {
            note.push_str(&format!(" (stopped early: {reason})"));
        }
        Ok(Some(note))
    }

    /// Whether the index files are present, sane, and not short: every batch after the last
    /// offset-index entry starts within one index interval of it, and the walk from that entry
    /// ends exactly at the end of the file. Sets `next_offset` from that walk.
    fn indexes_look_complete(&mut self, index_interval: u64) -> Result<bool> {
        if self.size == 0 || !self.path(".index").exists() || !self.path(".timeindex").exists() {
            return Ok(false);
        }
        let log_size = self.size;
        if !index::offset_index_is_sane(self.offset_index_bytes()?.as_slice(), log_size)
            || !index::time_index_is_sane(self.time_index_bytes()?.as_slice(), i32::MAX as i64)
        {
            return Ok(false);
        }
        let file = self.file()?;
        let start = index::offset_lookup(self.offset_index_bytes()?.as_slice(), i64::MAX);
        let mut position = start;
        while let Some(header) = self.header_at(&file, position)? {
            if position > start && position - start >= index_interval.max(1) {
                return Ok(false);
            }
            self.next_offset = header.next_offset();
            position += header.size() as u64;
        }
        Ok(position == log_size)
    }

    pub fn fsync(&self) -> Result<()> {
        let file = self.file()?;
        file.sync_data().map_err(|e| CoreError::io(format!("fsync {}", self.log_path().display()), e))?;
        if let Some((offset_file, time_file)) = &self.index_writers {
            offset_file.sync_data().and_then(|_| time_file.sync_data()).map_err(|e| CoreError::io("fsync index", e))?;
        }
        Ok(())
    }

    /// Removes the segment's files from disk.
    pub fn delete_files(self) -> Result<()> {
        files::forget(self.file_id);
        for suffix in [".log", ".index", ".timeindex"] {
            let path = self.path(suffix);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CoreError::io(format!("delete {}", path.display()), e)),
            }
        }
        Ok(())
    }

    pub fn forget_file(&self) {
        files::forget(self.file_id);
    }
}

fn modified_ms(path: &Path) -> Option<i64> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    Some(modified.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64)
}
