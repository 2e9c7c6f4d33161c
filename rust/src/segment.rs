//! One segment of a partition log: `<base offset>.log` with its `.index` and `.timeindex`.
//!
//! The `.log` file holds record batches exactly as they went over the wire (offsets assigned).
//! Only the last segment of a log (the active one) is appended to; it keeps its index entries in
//! memory and writes them to its index files when the log is flushed or the segment sealed (an
//! index newer than the last flush is rebuilt by recovery anyway). Sealed segments map their
//! index files on demand through the process-wide set in `files`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::batch::{self, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};
use crate::error::{CoreError, Result};
use crate::files;
use crate::spares::Spares;
use crate::index::{self, OFFSET_ENTRY};

pub fn segment_file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// The index entries of the active segment, and how much of each is on disk already.
#[derive(Default)]
struct ActiveIndexes {
    offsets: Vec<u8>,
    times: Vec<u8>,
    offsets_on_disk: usize,
    times_on_disk: usize,
    bytes_since_entry: u64,
    /// Timestamp of the last time-index entry: a new entry is made only when the max grows.
    time_indexed_max: i64,
}

/// Index entries to search: borrowed from the active segment or a shared map of a sealed one.
pub enum IndexView<'a> {
    Memory(&'a [u8]),
    Mapped(Arc<Mmap>),
    Empty,
}

impl IndexView<'_> {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            IndexView::Memory(b) => b,
            IndexView::Mapped(m) => m,
            IndexView::Empty => &[],
        }
    }
}

/// Renames `path` to itself plus `suffix` (a file to unlink once the log is let go): the new
/// path, or None when there was no such file.
pub fn rename_aside(path: &Path, suffix: &str) -> Result<Option<PathBuf>> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(suffix);
    match fs::rename(path, &aside) {
        Ok(()) => Ok(Some(aside.into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CoreError::io(format!("rename {}", path.display()), e)),
    }
}

/// The files of a segment, by suffix: what deleting or retiring it removes.
const SEGMENT_FILES: [&str; 4] = [".log", ".index", ".timeindex", crate::txn_index::SUFFIX];

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
    /// Present while the segment is active (or being rebuilt).
    active: Option<ActiveIndexes>,
    /// How far the `.log` file's blocks are reserved (`preallocate`), past its size; 0 when not.
    preallocated_to: u64,
    /// A reservation failed (no support, a full disk): not tried again for this segment.
    preallocate_failed: bool,
}

/// The most `preallocate` reserves ahead of the appends: the active segment's size, at least a
/// page, at most this, within `segment.bytes`. What the roll does not use it gives back.
pub const PREALLOCATE_AHEAD_MAX: u64 = 8 << 20;

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

impl Drop for Segment {
    fn drop(&mut self) {
        files::forget(self.file_id);
    }
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
            active: None,
            preallocated_to: 0,
            preallocate_failed: false,
        }
    }

    /// Creates the files of a new active segment (an existing one is emptied), or renames
    /// `spares` made ahead into place where there are some.
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64, spares: Option<&Spares>) -> Result<Segment> {
        let mut segment = Segment::blank(dir, base_offset, now_ms);
        for suffix in [".log", ".index", ".timeindex"] {
            let path = segment.path(suffix);
            if let Some(spare) = spares.and_then(|spares| spares.take(suffix, &path)) {
                if suffix == ".log" {
                    // What the spares' thread reserved (`preallocate`), given back at the roll
                    // as the appends' own reserve is.
                    segment.preallocated_to = std::os::unix::fs::MetadataExt::blocks(&spare) * 512;
                }
                continue;
            }
            File::create(&path).map_err(|e| CoreError::io(format!("create {}", path.display()), e))?;
        }
        segment.active = Some(ActiveIndexes { time_indexed_max: -1, ..Default::default() });
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

    pub fn file(&self) -> Result<Arc<File>> {
        files::get(self.file_id, &self.log_path())
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    pub fn offset_index(&self) -> Result<IndexView<'_>> {
        self.index_view(false)
    }

    pub fn time_index(&self) -> Result<IndexView<'_>> {
        self.index_view(true)
    }

    fn index_view(&self, time: bool) -> Result<IndexView<'_>> {
        if let Some(active) = &self.active {
            return Ok(IndexView::Memory(if time { &active.times } else { &active.offsets }));
        }
        let (key, suffix) = if time { (self.file_id * 2 + 1, ".timeindex") } else { (self.file_id * 2, ".index") };
        Ok(files::get_map(key, &self.path(suffix))?.map_or(IndexView::Empty, IndexView::Mapped))
    }

    pub fn index_entry_count(&self) -> Result<usize> {
        Ok(self.offset_index()?.as_slice().len() / OFFSET_ENTRY)
    }

    /// Appends batches whose offsets are already assigned; `headers` describe them in order.
    /// `parts` are written in one `pwritev`, so a caller may pass patched headers and the
    /// producer's untouched record bytes without joining them first. `preallocate_limit`: the
    /// file's blocks are reserved ahead of the appends up to there (`segment.bytes`), 0: not.
    pub fn append(&mut self, parts: &[&[u8]], headers: &[BatchHeader], index_interval: u64, preallocate_limit: u64) -> Result<()> {
        let file = self.file()?;
        if preallocate_limit > 0 && !self.preallocate_failed {
            let end = self.size + parts.iter().map(|p| p.len() as u64).sum::<u64>();
            if end > self.preallocated_to {
                self.preallocate(&file, end, preallocate_limit);
            }
        }
        write_all_at(&file, parts, self.size)
            .map_err(|e| CoreError::io(format!("append to {}", self.log_path().display()), e))?;
        let mut position = self.size;
        for header in headers {
            self.note_batch(header, position, index_interval);
            position += header.size() as u64;
        }
        self.size = position;
        Ok(())
    }

    /// Reserves the file's blocks from its end on, past `end`, without changing its size
    /// (`fallocate` with KEEP_SIZE: readers and recovery see the file as it is). Appends into
    /// reserved blocks need no block allocation, which on ext4 waits for the inode's allocation
    /// lock whenever writeback holds it: 4-33 ms per write beside a flush here, 0.2-0.3 ms with
    /// the blocks reserved. But the reservation runs here, on the append path, and may wait for
    /// the allocator to read block bitmaps (7-9 ms at times here), which writeback would
    /// otherwise do: hence off by default (bench/README.md, "preallocate"). A segment taken from
    /// a spare comes with its first 8 MiB reserved on the spares' thread. A filesystem that
    /// cannot, or a full disk, leaves the appends as they were: the write reports what matters.
    fn preallocate(&mut self, file: &File, end: u64, limit: u64) {
        let target = (end + end.clamp(4096, PREALLOCATE_AHEAD_MAX)).min(limit);
        let from = self.preallocated_to.max(self.size);
        if target <= from {
            return;
        }
        // SAFETY: fallocate reads no memory of ours; the descriptor is open for writing.
        let done = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, from as libc::off_t, (target - from) as libc::off_t) };
        self.preallocate_failed = done != 0;
        self.preallocated_to = target; // a failure may have reserved part of it: given back all the same
    }

    /// Gives back the blocks reserved past the file's end (a same-size truncate frees them), at
    /// a roll or a clean stop. Cheap: 0.05 ms for 64 MiB here, as nothing was written there.
    /// Best effort: a failure only leaves the blocks reserved until the segment is deleted.
    pub fn release_preallocation(&mut self) {
        if self.preallocated_to != 0 {
            self.preallocated_to = 0;
            self.give_back_past_end(0);
        }
    }

    /// At open: a reserve that a crash left on the active segment (more than `slack` bytes of
    /// blocks past its end) is given back, as the roll would have.
    pub fn release_leftover_preallocation(&mut self) {
        self.give_back_past_end(8192);
    }

    fn give_back_past_end(&self, slack: u64) {
        use std::os::unix::fs::MetadataExt;
        let Ok(file) = self.file() else { return };
        let Ok(meta) = file.metadata() else { return };
        // Only a file as long as what this segment holds: anything else is recovery's business.
        if meta.len() == self.size && meta.blocks() * 512 > self.size.next_multiple_of(4096) + slack {
            let _ = file.set_len(self.size);
        }
    }

    /// Accounts for one batch at `position`: offsets, timestamps and (every interval) index entries.
    fn note_batch(&mut self, header: &BatchHeader, position: u64, index_interval: u64) {
        let last_offset = header.last_offset();
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = last_offset;
        }
        self.next_offset = header.next_offset();
        let (base, max_ts, max_ts_offset) = (self.base_offset, self.max_timestamp, self.offset_of_max_timestamp);
        let Some(active) = self.active.as_mut() else { return };
        if active.bytes_since_entry >= index_interval || position == 0 {
            let relative = (last_offset - base) as i32;
            active.offsets.extend_from_slice(&index::offset_entry(relative, position as u32));
            if max_ts > active.time_indexed_max {
                active.times.extend_from_slice(&index::time_entry(max_ts, (max_ts_offset - base) as i32));
                active.time_indexed_max = max_ts;
            }
            active.bytes_since_entry = 0;
        }
        active.bytes_since_entry += header.size() as u64;
    }

    /// The offset and time index files of a segment whose `.log` file will hold `bytes`
    /// (whole batches, from the segment's base offset on), built as appends build them: what
    /// a cleaner pass writes beside its output, so that putting it in place needs no scan.
    pub fn indexes_of(bytes: &[u8], base_offset: i64, index_interval: u64) -> Result<(Vec<u8>, Vec<u8>)> {
        let mut segment = Segment::blank(Path::new(""), base_offset, 0);
        segment.active = Some(ActiveIndexes { time_indexed_max: -1, ..Default::default() });
        let mut position = 0;
        while position < bytes.len() {
            let header = batch::parse_header(&bytes[position..])?;
            segment.note_batch(&header, position as u64, index_interval);
            position += header.size();
        }
        let active = segment.active.take().unwrap_or_default();
        Ok((active.offsets, active.times))
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
    pub fn find_batch(&self, file: &File, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let mut position = index::offset_lookup(self.offset_index()?.as_slice(), offset - self.base_offset);
        while let Some(header) = self.header_at(file, position)? {
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += header.size() as u64;
        }
        Ok(None)
    }

    /// Position of the first batch whose max timestamp is >= `timestamp`, or None.
    pub fn find_batch_by_time(&self, file: &File, timestamp: i64) -> Result<Option<(u64, BatchHeader)>> {
        let relative = index::time_lookup(self.time_index()?.as_slice(), timestamp);
        let mut position = index::offset_lookup(self.offset_index()?.as_slice(), relative);
        while let Some(header) = self.header_at(file, position)? {
            if header.max_timestamp >= timestamp {
                return Ok(Some((position, header)));
            }
            position += header.size() as u64;
        }
        Ok(None)
    }

    /// Walks every batch from the start, checking length, magic, CRC and offset order, and
    /// rebuilds both indexes in memory as it goes (the segment is active afterwards, with
    /// nothing on disk yet). Stops at the first bad batch; the caller truncates there.
    pub fn recover(&mut self, rules: ScanRules) -> Result<ScanResult> {
        let path = self.log_path();
        let file = File::open(&path).map_err(|e| CoreError::io(format!("open {}", path.display()), e))?;
        let file_size = file.metadata().map_err(|e| CoreError::io(format!("stat {}", path.display()), e))?.len();
        let mut batches = BatchReader::new(file, &path, file_size);
        files::forget(self.file_id);
        self.active = Some(ActiveIndexes { time_indexed_max: -1, ..Default::default() });
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
        let mut invalid_reason = None;
        loop {
            let position = batches.position;
            let batch_bytes = match batches.next()? {
                Some(Ok(bytes)) => bytes,
                Some(Err(reason)) => {
                    invalid_reason = Some(reason);
                    break;
                }
                None => break,
            };
            let checked = if rules.verify_crc { batch::validate_batch(batch_bytes) } else { batch::parse_header(batch_bytes) };
            let in_order = |h: &BatchHeader| {
                let starts_right =
                    if rules.contiguous { h.base_offset == self.next_offset } else { h.base_offset >= self.next_offset };
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
            self.note_batch(&header, position, rules.index_interval);
            batches.advance();
        }
        self.size = batches.position;
        Ok(ScanResult { valid_bytes: batches.position, invalid_reason })
    }

    /// Reads the first `size` bytes of this segment's file (what was appended when the caller
    /// looked) and checks each batch as recovery does (length, magic, CRC, offsets ascending),
    /// changing nothing: the offset and reason of the first bad batch, or None. A file
    /// deleted meanwhile (retention) has nothing wrong with it.
    pub fn verify_file(path: &Path, base_offset: i64, size: u64) -> Result<Option<(i64, String)>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CoreError::io(format!("open {}", path.display()), e)),
        };
        let mut batches = BatchReader::new(file, path, size);
        let mut next_offset = base_offset;
        loop {
            let position = batches.position;
            match batches.next()? {
                None => return Ok(None),
                Some(Err(reason)) => return Ok(Some((next_offset, reason))),
                Some(Ok(bytes)) => match batch::validate_batch(bytes) {
                    Ok(h) if h.base_offset >= next_offset => next_offset = h.next_offset(),
                    Ok(h) => return Ok(Some((next_offset, format!("batch at position {position} has offset {} out of order", h.base_offset)))),
                    Err(e) => return Ok(Some((next_offset, format!("batch at position {position}: {e}")))),
                },
            }
            batches.advance();
        }
    }

    /// Writes what the active indexes hold beyond what is on disk, fsyncing when asked.
    fn persist_indexes(&mut self, fsync: bool) -> Result<()> {
        let offsets_path = self.path(".index");
        let times_path = self.path(".timeindex");
        let Some(active) = self.active.as_mut() else { return Ok(()) };
        for (entries, on_disk, path) in [
            (&active.offsets, &mut active.offsets_on_disk, offsets_path),
            (&active.times, &mut active.times_on_disk, times_path),
        ] {
            if *on_disk == entries.len() && !fsync {
                continue;
            }
            let ctx = |e| CoreError::io(format!("write {}", path.display()), e);
            let mut file = OpenOptions::new().create(true).write(true).truncate(*on_disk == 0).open(&path).map_err(ctx)?;
            file.write_all_at(&entries[*on_disk..], *on_disk as u64).map_err(ctx)?;
            file.set_len(entries.len() as u64).map_err(ctx)?;
            if fsync {
                file.sync_data().map_err(ctx)?;
            }
            *on_disk = entries.len();
            let _ = file.flush();
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
        self.preallocated_to = 0; // freed with the rest past `size`
        Ok(())
    }

    /// Makes this segment the active one: its index entries read into memory.
    pub fn activate(&mut self) -> Result<()> {
        if self.is_active() {
            return Ok(());
        }
        let offsets = self.offset_index()?.as_slice().to_vec();
        let times = self.time_index()?.as_slice().to_vec();
        files::forget(self.file_id);
        self.active = Some(ActiveIndexes {
            time_indexed_max: index::last_time_entry(&times).map_or(-1, |(ts, _)| ts),
            offsets_on_disk: offsets.len(),
            times_on_disk: times.len(),
            offsets,
            times,
            // The next entry comes one interval after the last batch; unknown here, so soon.
            bytes_since_entry: u64::MAX / 2,
        });
        Ok(())
    }

    /// Stops appending: index files written in full and fsynced, mapped when next needed.
    pub fn seal(&mut self) -> Result<()> {
        self.release_preallocation();
        self.persist_indexes(true)?;
        self.active = None;
        Ok(())
    }

    /// Writes the active segment's new index entries, without fsync (a flush in steps syncs them).
    pub fn write_indexes(&mut self) -> Result<()> {
        self.persist_indexes(false)
    }

    /// `seal` without the fsyncs: the index files are written, and synced by a later flush.
    pub fn seal_unsynced(&mut self) -> Result<()> {
        self.release_preallocation();
        self.persist_indexes(false)?;
        self.active = None;
        Ok(())
    }

    /// Loads what a sealed segment knows without a scan: indexes checked, rebuilt if not sane,
    /// the batches after the last index entry read for the next offset and max timestamp.
    pub fn load_sealed(&mut self, rules: ScanRules) -> Result<Option<String>> {
        // An unreadable tail counts as an inconsistent index: the rebuild below reports it.
        if self.indexes_look_complete(rules.index_interval).unwrap_or(false) {
            return Ok(None);
        }
        let scan = self.recover(ScanRules { verify_crc: false, ..rules })?;
        self.seal()?;
        let mut note = format!("rebuilt the indexes of {}", self.log_path().display());
        if let Some(reason) = scan.invalid_reason {
            note.push_str(&format!(" (stopped early: {reason})"));
        }
        Ok(Some(note))
    }

    /// Opens the active segment without a recovery scan when all of it was flushed (its last
    /// offset is below `recovery_point`, as after a clean stop) and its indexes are sane, the
    /// way a sealed segment is loaded; Kafka too trusts what lies below the recovery point.
    /// False when the segment needs `recover` (which resets what this read).
    pub fn load_flushed_active(&mut self, recovery_point: i64, index_interval: u64) -> Result<bool> {
        if self.indexes_look_complete(index_interval).unwrap_or(false) && self.next_offset <= recovery_point {
            self.activate()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Whether the index files are present, sane, and not short: every batch after the last
    /// offset-index entry starts within one index interval of it, and the walk from that entry
    /// ends exactly at the end of the file. Sets `next_offset` from that walk.
    fn indexes_look_complete(&mut self, index_interval: u64) -> Result<bool> {
        if self.size == 0 || !self.path(".index").exists() || !self.path(".timeindex").exists() {
            return Ok(false);
        }
        let start = {
            let offsets = self.offset_index()?;
            let times = self.time_index()?;
            if !index::offset_index_is_sane(offsets.as_slice(), self.size)
                || !index::time_index_is_sane(times.as_slice(), i32::MAX as i64)
            {
                return Ok(false);
            }
            index::offset_lookup(offsets.as_slice(), i64::MAX)
        };
        // The time index's last entry is the max timestamp up to the last offset-index entry;
        // the batches after it may raise it.
        if let Some((ts, relative)) = index::last_time_entry(self.time_index()?.as_slice()) {
            self.max_timestamp = ts;
            self.offset_of_max_timestamp = self.base_offset + relative;
        }
        let file = self.file()?;
        let mut position = start;
        while let Some(header) = self.header_at(&file, position)? {
            if position > start && position - start >= index_interval.max(1) {
                return Ok(false);
            }
            if header.max_timestamp > self.max_timestamp {
                self.max_timestamp = header.max_timestamp;
                self.offset_of_max_timestamp = header.last_offset();
            }
            self.next_offset = header.next_offset();
            position += header.size() as u64;
        }
        if self.max_timestamp < 0 {
            // Kafka falls back to the file's modification time when no batch had a timestamp.
            self.max_timestamp = modified_ms(&self.log_path()).unwrap_or(-1);
        }
        Ok(position == self.size)
    }

    /// Fsyncs the log file and the index files: an active segment's offset and time indexes
    /// written first, a sealed one's as they are (a roll seals without syncing them), and the
    /// transaction index, as Kafka's segment flush does.
    pub fn fsync(&mut self) -> Result<()> {
        let file = self.file()?;
        file.sync_data().map_err(|e| CoreError::io(format!("fsync {}", self.log_path().display()), e))?;
        let mut unsynced = vec![self.path(crate::txn_index::SUFFIX)];
        if self.active.is_some() {
            self.persist_indexes(true)?;
        } else {
            unsynced.extend([self.path(".index"), self.path(".timeindex")]);
        }
        for path in unsynced {
            match File::open(&path).and_then(|file| file.sync_data()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CoreError::io(format!("fsync {}", path.display()), e)),
            }
        }
        Ok(())
    }

    /// Removes the segment's files from disk.
    pub fn delete_files(self) -> Result<()> {
        files::forget(self.file_id);
        for suffix in SEGMENT_FILES {
            let path = self.path(suffix);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CoreError::io(format!("delete {}", path.display()), e)),
            }
        }
        Ok(())
    }

    /// Renames the segment's files to `<name>.deleted`, for the caller to delete once it no
    /// longer holds the log: unlinking a 1 GiB file takes about 200 ms on ext4, and opening the
    /// log deletes what a crash left. Returns the renamed files.
    pub fn retire_files(self) -> Result<Vec<PathBuf>> {
        files::forget(self.file_id);
        let mut retired = Vec::new();
        for suffix in SEGMENT_FILES {
            retired.extend(rename_aside(&self.path(suffix), ".deleted")?);
        }
        Ok(retired)
    }

    pub fn forget_file(&self) {
        files::forget(self.file_id);
    }
}

/// `pwritev` of all `parts` at `offset`, looping over short writes.
fn write_all_at(file: &File, parts: &[&[u8]], mut offset: u64) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    let mut first = 0;
    while first < parts.len() {
        let iov: Vec<libc::iovec> = parts[first..]
            .iter()
            .take(512)
            .map(|p| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() })
            .collect();
        // SAFETY: every iovec points into a live slice of `parts` for the duration of the call.
        let written = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), iov.len() as i32, offset as libc::off_t) };
        if written < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        let mut written = written as usize;
        if written == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "pwritev wrote nothing"));
        }
        offset += written as u64;
        while written > 0 {
            let part = parts[first];
            if written >= part.len() {
                written -= part.len();
                first += 1;
            } else {
                parts[first] = &part[written..];
                written = 0;
            }
        }
    }
    Ok(())
}

fn modified_ms(path: &Path) -> Option<i64> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    Some(modified.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64)
}

/// A segment file's batches in order, read through one buffer: recovery and verification
/// walk files the same way and differ only in what they check.
struct BatchReader<'a> {
    reader: std::io::BufReader<File>,
    path: &'a Path,
    /// Where the batch `next` returned starts (until `advance`).
    position: u64,
    size: u64,
    bytes: Vec<u8>,
}

impl<'a> BatchReader<'a> {
    fn new(file: File, path: &'a Path, size: u64) -> Self {
        BatchReader { reader: std::io::BufReader::with_capacity(1 << 20, file), path, position: 0, size, bytes: Vec::new() }
    }

    /// The next batch's bytes; None at `size`; Err(why) for bytes that cannot be a batch (a
    /// tail shorter than a header, a length past the end or below a header's).
    fn next(&mut self) -> Result<Option<std::result::Result<&[u8], String>>> {
        let position = self.position;
        if position >= self.size {
            return Ok(None);
        }
        let remaining = self.size - position;
        if remaining < HEADER_SIZE as u64 {
            return Ok(Some(Err(format!("{remaining} trailing bytes are less than a batch header"))));
        }
        let path = self.path;
        let read_error = |e| CoreError::io(format!("read {}", path.display()), e);
        let mut head = [0u8; LOG_OVERHEAD];
        self.reader.read_exact(&mut head).map_err(read_error)?;
        let Some((_, length)) = batch::peek_offset_and_size(&head).filter(|(_, n)| *n >= HEADER_SIZE && (*n as u64) <= remaining) else {
            return Ok(Some(Err(format!("batch at position {position} has an impossible length"))));
        };
        self.bytes.clear();
        self.bytes.extend_from_slice(&head);
        self.bytes.resize(length, 0);
        self.reader.read_exact(&mut self.bytes[LOG_OVERHEAD..]).map_err(read_error)?;
        Ok(Some(Ok(&self.bytes)))
    }

    /// Moves past the batch `next` returned.
    fn advance(&mut self) {
        self.position += self.bytes.len() as u64;
    }
}
