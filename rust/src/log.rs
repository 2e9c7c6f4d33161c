//! A partition's log: an ordered run of segments in one directory (`<topic>-<partition>`).
//!
//! Offsets: `log_start_offset` (first readable), `log_end_offset` (next to assign), and the
//! `high_watermark` (last offset consumers may see, exclusive), kept apart from the log end so
//! that replication can move it later. The `recovery_point` is the offset below which everything
//! is known to be on disk (fsynced); a restart scans and validates only from there.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::batch::{self, BatchHeader};
use crate::checkpoint;
use crate::compression;
use crate::cleaner::{self, CleanStats};
use crate::error::{CoreError, Result};
use crate::producer_state::{self, CompletedTxn, ProducerState, Verdict};
use crate::segment::{self, ScanRules, Segment};
use crate::spares::{self, Spares};
use crate::txn_index::{self, AbortedTxn};

/// Per-log settings, named after Kafka's topic configs.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub segment_index_bytes: u64,
    pub index_interval_bytes: u64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub max_message_bytes: usize,
    pub flush_messages: i64,
    pub flush_ms: i64,
    /// `message.timestamp.type=LogAppendTime`.
    pub log_append_time: bool,
    /// `cleanup.policy` includes `compact`: offsets may have gaps.
    pub compacted: bool,
    /// `compression.type`: the codec batches are stored with; None keeps the producer's.
    pub compression: Option<i16>,
    /// `compression.gzip.level` and `compression.zstd.level` (None: the codec's default), used
    /// when the log compresses for `compression.type`.
    pub gzip_level: Option<i32>,
    pub zstd_level: Option<i32>,
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    /// `preallocate`: the active segment's blocks are reserved ahead of its appends.
    pub preallocate: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1024 * 1024 + 12,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            log_append_time: false,
            compacted: false,
            compression: None,
            gzip_level: None,
            zstd_level: None,
            delete_retention_ms: 24 * 3600 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            preallocate: false,
        }
    }
}

/// What one append did.
#[derive(Debug, Clone, Copy)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's time when LogAppendTime applies, else -1.
    pub log_append_time: i64,
    pub record_count: i64,
    pub log_start_offset: i64,
    pub rolled: bool,
}

/// A run of whole batches inside one segment file, to be sent as it is.
pub struct FileSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub length: u64,
    pub base_offset: i64,
}

const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
/// The first offset the cleaner has not compacted yet (Kafka keeps one such file per log dir).
const CLEANER_FILE: &str = "cleaner-offset-checkpoint";

pub struct PartitionLog {
    dir: PathBuf,
    pub config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub recovery_point: i64,
    unflushed_messages: i64,
    last_flush_ms: i64,
    /// (leader epoch, first offset written in it), ascending: answers OffsetForLeaderEpoch.
    epochs: Vec<(i32, i64)>,
    /// The leader-epoch checkpoint was written without fsync (on an append); the next flush syncs it.
    epochs_unsynced: bool,
    /// Counts those unsynced writes: a flush in steps clears `epochs_unsynced` only if none
    /// came after its plan.
    epochs_written: u64,
    /// Records appended in all, and how many of them flushes covered: two flushes in steps
    /// that overlap take off `unflushed_messages` only what neither took off before.
    messages_appended: i64,
    messages_flushed: i64,
    /// Counts truncations (`truncate_to`, `restart_at`): a flush in steps planned before one
    /// does not move the recovery point, since what lies past the cut may be new and unsynced.
    truncations: u64,
    /// The first fsync of a flush in steps that failed: every later flush fails with it, as
    /// pages whose writeback failed may never reach the disk while a later fsync (through a
    /// new descriptor) reports success. Kafka takes the log directory offline.
    sync_failure: Option<String>,
    /// What opening the log had to repair, for the caller to log.
    pub repairs: Vec<String>,
    producers: ProducerState,
    first_dirty_offset: i64,
    /// Aborted transactions, by the base of the segment holding their ABORT marker (that
    /// segment's `.txnindex`), in marker order.
    aborted: BTreeMap<i64, Vec<AbortedTxn>>,
    /// Segments whose `.txnindex` got entries since the last flush (synced by it; a flush in
    /// steps syncs every `.txnindex` from the recovery point on as well).
    txn_index_unsynced: Vec<i64>,
    /// Counts deletions and truncations of segments: a compaction pass run without the log
    /// held puts its output in place only if this has not moved since its plan.
    generation: u64,
    /// Files of deleted segments and of the index files and producer snapshots that went
    /// (renamed `.deleted`), and of segments a cleaned one replaced (renamed `.replaced`), for
    /// `take_retired`'s caller to unlink once it lets go of the log.
    retired: Vec<PathBuf>,
    /// Offsets of the producer snapshots rolls wrote without fsync, as `<offset>.snapshot.tmp`
    /// (which an open deletes): a flush syncs them and puts them in place once the transaction
    /// indexes below them are on disk.
    pending_snapshots: Vec<i64>,
    /// A segment was rolled since the last `take_rolled`: its caller has the sealed segment
    /// flushed off the append path (`flusher`).
    rolled: bool,
    /// Files the spares' thread made ahead of the next roll (`spares`).
    spares: Arc<Spares>,
}

/// How far a flush in three steps (`plan_flush`) goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FlushUpTo {
    /// The log end: `flush.ms`, `flush.messages`, an explicit flush.
    LogEnd,
    /// The segments rolls sealed: the flusher's thread, after a roll.
    Sealed,
}

/// A flush in three steps, for a caller that must not hold the log through fsyncs (each one
/// waits for the device to empty its cache: 1-50 ms here). `plan_flush`, held: the active
/// segment's index entries written, the files listed. `sync`, unheld: every file fsynced.
/// `finish_flush`, held: the recovery point moved to what was planned.
pub struct PlannedFlush {
    dir: PathBuf,
    truncations: u64,
    upto: FlushUpTo,
    /// Everything below this offset is in `files`.
    offset: i64,
    files: Vec<PathBuf>,
    snapshots: Vec<i64>,
    txn_indexes: Vec<i64>,
    epochs_written: u64,
    messages_appended: i64,
}

impl PlannedFlush {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fsyncs the planned files, the pending snapshots and the directory, with the log let go.
    /// The active segment's files only grow past what is planned; a sealed segment's change
    /// only by a cleaner's swap, whose output was synced before it went in place. A file
    /// deleted meanwhile (retention, that swap) is skipped.
    pub fn sync(&self) -> Result<()> {
        let snapshots = self.snapshots.iter().map(|offset| pending_snapshot_path(&self.dir, *offset));
        for path in self.files.iter().cloned().chain(snapshots) {
            match File::open(&path).and_then(|file| file.sync_all()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CoreError::io(format!("fsync {}", path.display()), e)),
            }
        }
        checkpoint::sync_dir(&self.dir)
    }
}

/// How many logs of this process have noted a sync failure: the broker looks for the failed
/// logs (to log them and take them offline) only when this has moved.
pub static SYNC_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.snapshot"))
}

fn pending_snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    snapshot_path(dir, offset).with_extension("snapshot.tmp")
}

/// A sealed segment that a compaction pass reads.
struct SealedSegment {
    base: i64,
    size: u64,
    next_offset: i64,
    path: PathBuf,
}

/// A compaction pass, planned with the log held and run without it: sealed segments' files do
/// not change while appends go to the active segment, and `generation` tells the pass's end
/// whether segments were deleted or truncated meanwhile.
pub struct CleanPlan {
    /// The log's directory, where `CleanOutput::settle_step` syncs and checkpoints.
    dir: PathBuf,
    sealed: Vec<SealedSegment>,
    end_offset: i64,
    first_dirty: i64,
    /// Tombstones and markers of transactions that kept nothing older than this go.
    horizon: i64,
    /// Aborted transactions' (first offset, last offset), by producer.
    aborted: HashMap<i64, Vec<(i64, i64)>>,
    generation: u64,
    /// `index.interval.bytes`, for the index files written beside each cleaned segment.
    index_interval: u64,
    /// Most keys the pass maps (Kafka's `log.cleaner.dedupe.buffer.size`): it cleans as far
    /// into the dirty part as they cover, and leaves the rest to the next pass.
    max_keys: usize,
}

/// What a pass wrote (`.cleaned` files, with their index files, beside their segments), to be
/// put in place.
pub struct CleanOutput {
    /// (base, `.log` path) of each segment rewritten; the first `placed` are in place.
    rewritten: Vec<(i64, PathBuf)>,
    placed: usize,
    /// (segment base, producer id, offset) of each transaction marker left out.
    dropped_markers: Vec<(i64, i64, i64)>,
    /// `.txnindex` files a step rewrote without their markers' entries, for `settle_step` to sync.
    txn_indexes_rewritten: Vec<PathBuf>,
    /// A sync of `settle_step` failed: the caller notes it on the log (see `sync_failure`).
    sync_failed: bool,
    stats: CleanStats,
    end_offset: i64,
    generation: u64,
    dir: PathBuf,
}

/// Where `finish_clean_step` left a pass.
pub enum CleanStep {
    More,
    /// The pass is over: what it did, or None when it was dropped.
    Done(Option<CleanStats>),
}

impl CleanOutput {
    /// Removes the files of the segments not in place yet: what was planned has changed, or
    /// the log is gone.
    pub fn discard(&mut self) {
        for (_, path) in &self.rewritten[self.placed..] {
            cleaner::remove_cleaned(path);
        }
        self.placed = self.rewritten.len();
    }

    /// What a step of `finish_clean_step` leaves to its caller, to do once it has let go of the
    /// log: makes the step's renames durable, then unlinks the files it retired (`retired`:
    /// `take_retired`) and, when the pass is over, records where it ended. With the log held,
    /// these fsyncs and unlinks kept the partition's appends waiting 10-20 ms a step (a
    /// directory fsync, a checkpoint's two, and on a filesystem mounted with `discard` every
    /// unlink waits for the device). A failed directory sync leaves the retired files to the next
    /// open.
    pub fn settle_step(&mut self, step: &CleanStep, retired: Vec<PathBuf>) -> Result<()> {
        if let Err(e) = self.sync_step() {
            self.sync_failed = true;
            return Err(e);
        }
        delete_retired(retired);
        if let CleanStep::Done(Some(_)) = step {
            // Only passes write this file, one at a time; a truncation since only leaves it
            // ahead of the log, which delays the next pass, as it would have anyway.
            checkpoint::write(&self.dir.join(CLEANER_FILE), &[self.end_offset.to_string()])?;
        }
        Ok(())
    }

    /// Whether `settle_step` failed to sync: its caller passes the error to the log's
    /// `note_sync_failure`, as a flush's would be.
    pub fn sync_failed(&self) -> bool {
        self.sync_failed
    }

    /// The rewritten `.txnindex` files (written and renamed in place unsynced, with the log
    /// held: a crash before this may leave one empty or stale, as before this sync existed),
    /// then the directory with the step's renames.
    fn sync_step(&mut self) -> Result<()> {
        for path in self.txn_indexes_rewritten.drain(..) {
            match File::open(&path).and_then(|file| file.sync_all()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(CoreError::io(format!("fsync {}", path.display()), e)),
                _ => {}
            }
        }
        checkpoint::sync_dir(&self.dir)
    }
}

impl CleanPlan {
    /// Maps at most `max_keys` keys (see `max_keys`).
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The log's generation when the pass was planned (see `PartitionLog::generation`).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Reads the sealed segments and writes each one that loses records to its `.cleaned` file.
    /// A failure removes what it wrote.
    pub fn run(self) -> Result<CleanOutput> {
        let never = AtomicBool::new(false);
        self.run_until(&never)?.ok_or_else(|| CoreError::io("compaction pass", std::io::ErrorKind::Interrupted.into()))
    }

    /// `run`, given up between two batches once `stop` is set (the log is closing or being
    /// deleted): None, with what it wrote removed. A pass over a large log takes seconds, and
    /// a topic's deletion or the broker's stop would wait for all of it.
    pub fn run_until(self, stop: &AtomicBool) -> Result<Option<CleanOutput>> {
        let mut output = CleanOutput {
            rewritten: Vec::new(),
            placed: 0,
            dropped_markers: Vec::new(),
            txn_indexes_rewritten: Vec::new(),
            sync_failed: false,
            stats: CleanStats::default(),
            end_offset: self.end_offset,
            generation: self.generation,
            dir: self.dir.clone(),
        };
        match self.rewrite(&mut output, stop) {
            Ok(()) => Ok(Some(output)),
            Err(e) => {
                output.discard();
                if is_stopped_error(&e) { Ok(None) } else { Err(e) }
            }
        }
    }

    /// Records of aborted transactions go, and never hide an earlier value of their key.
    fn is_aborted(&self, h: &BatchHeader) -> bool {
        h.is_transactional()
            && !h.is_control()
            && self.aborted.get(&h.producer_id).is_some_and(|ranges| {
                let after = ranges.partition_point(|&(first, _)| first <= h.base_offset);
                after > 0 && h.base_offset < ranges[after - 1].1
            })
    }

    fn rewrite(&self, output: &mut CleanOutput, stop: &AtomicBool) -> Result<()> {
        let stats = &mut output.stats;
        let mut keys = cleaner::LastOffsets::default();
        // Where the map ends: the first batch that found it full (`max_keys`, after one batch at
        // least, so that every pass moves on), or the end of the plan. The next pass starts there.
        let mut covered_end = self.end_offset;
        for segment in self.sealed.iter().filter(|s| s.next_offset > self.first_dirty) {
            if covered_end < self.end_offset {
                break;
            }
            cleaner::for_each_batch(&segment.path, segment.size, |h, b| {
                check_not_stopped(stop)?;
                // A batch's records may all be new keys: one that could pass `max_keys` waits.
                let could_fill = keys.len().saturating_add(h.record_count.max(0) as usize) > self.max_keys;
                if could_fill && !keys.is_empty() && h.last_offset() >= self.first_dirty {
                    covered_end = h.base_offset;
                    return Ok(ControlFlow::Break(()));
                }
                if !self.is_aborted(h) {
                    cleaner::add_keys(&mut keys, h, b, self.first_dirty)?;
                }
                Ok(ControlFlow::Continue(()))
            })?;
            stats.bytes_read += segment.size;
        }
        output.end_offset = covered_end;
        stats.keys_mapped = keys.len();
        // Producers whose current transaction still has records in the cleaned log: its marker
        // stays. A marker whose transaction kept nothing goes once past `delete.retention.ms`
        // (a replay then finds neither, so no transaction is left open), as Kafka's cleaner does.
        let mut txn_has_records: HashMap<i64, bool> = HashMap::new();
        for segment in self.sealed.iter().take_while(|s| s.base < covered_end) {
            let mut out = Vec::with_capacity(segment.size as usize);
            let mut changed = false;
            cleaner::for_each_batch(&segment.path, segment.size, |header, bytes| {
                check_not_stopped(stop)?;
                if header.base_offset >= covered_end {
                    // Past the map: a later record of a key there is not known, so nothing goes
                    // (a tombstone dropped here would bring back its key's value kept below).
                    out.extend_from_slice(bytes);
                    return Ok(ControlFlow::Continue(()));
                }
                if self.is_aborted(header) {
                    stats.records_removed += header.record_count.max(0) as u64;
                    changed = true;
                    return Ok(ControlFlow::Continue(()));
                }
                if header.is_control() {
                    let had_records = txn_has_records.remove(&header.producer_id).unwrap_or(false);
                    if !had_records && header.max_timestamp < self.horizon {
                        stats.records_removed += header.record_count.max(0) as u64;
                        changed = true;
                        output.dropped_markers.push((segment.base, header.producer_id, header.base_offset));
                    } else {
                        out.extend_from_slice(bytes);
                    }
                    return Ok(ControlFlow::Continue(()));
                }
                let keep = |offset: i64, key: Option<&[u8]>, tombstone: bool| {
                    let superseded = key.and_then(|k| keys.get(k)).is_some_and(|last| last > offset);
                    !(superseded || (tombstone && header.max_timestamp < self.horizon))
                };
                match cleaner::filter_batch(header, bytes, keep, stats)? {
                    Some(kept) => {
                        changed |= kept.len() != bytes.len();
                        out.extend_from_slice(&kept);
                        if header.is_transactional() {
                            txn_has_records.insert(header.producer_id, true);
                        }
                    }
                    None => changed = true,
                }
                Ok(ControlFlow::Continue(()))
            })?;
            if changed {
                // Built here, unheld, so that putting the segment in place needs no scan of it.
                let indexes = Segment::indexes_of(&out, segment.base, self.index_interval).ok();
                cleaner::write_cleaned(&segment.path, &out, indexes)?;
                stats.bytes_written += out.len() as u64;
                output.rewritten.push((segment.base, segment.path.clone()));
            }
        }
        Ok(())
    }
}

const STOPPED_PASS: &str = "compaction pass stopped";

/// The error that ends a pass whose `stop` was set (`run_until` tells it from a real one).
fn check_not_stopped(stop: &AtomicBool) -> Result<()> {
    if stop.load(Ordering::Relaxed) {
        return Err(CoreError::io(STOPPED_PASS, std::io::ErrorKind::Interrupted.into()));
    }
    Ok(())
}

fn is_stopped_error(e: &CoreError) -> bool {
    matches!(e, CoreError::Io(context, _) if context == STOPPED_PASS)
}

fn parse_segment_base(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse().ok()).flatten()
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering every segment from `recovery_point` on.
    pub fn open(dir: &Path, config: LogConfig, recovery_point: i64, log_start_offset: i64, now_ms: i64) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| CoreError::io(format!("create {}", dir.display()), e))?;
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments: BTreeMap::new(),
            log_start_offset: 0,
            high_watermark: 0,
            recovery_point: 0,
            unflushed_messages: 0,
            last_flush_ms: now_ms,
            epochs: Vec::new(),
            epochs_unsynced: false,
            epochs_written: 0,
            messages_appended: 0,
            messages_flushed: 0,
            truncations: 0,
            sync_failure: None,
            repairs: Vec::new(),
            producers: ProducerState::default(),
            first_dirty_offset: 0,
            aborted: BTreeMap::new(),
            txn_index_unsynced: Vec::new(),
            generation: 0,
            retired: Vec::new(),
            pending_snapshots: Vec::new(),
            rolled: false,
            spares: Arc::new(Spares::new(dir)),
        };
        let mut bases = log.list_segment_files()?;
        bases.sort_unstable();
        for base in bases {
            log.segments.insert(base, Segment::open_existing(dir, base, now_ms)?);
        }
        log.load_segments(recovery_point, now_ms)?;
        if log.segments.is_empty() {
            let base = log_start_offset.max(0);
            log.segments.insert(base, Segment::create(dir, base, now_ms, None)?);
        }
        let first_base = *log.segments.keys().next().unwrap();
        let end = log.log_end_offset();
        log.log_start_offset = log_start_offset.clamp(first_base, end);
        log.high_watermark = end;
        log.recovery_point = recovery_point.clamp(0, end);
        log.active_mut().activate()?;
        log.active_mut().release_leftover_preallocation();
        log.load_epochs()?;
        log.load_txn_indexes()?;
        log.load_producer_state()?;
        log.first_dirty_offset = checkpoint::read(&log.dir.join(CLEANER_FILE))
            .ok()
            .and_then(|lines| lines.first().and_then(|l| l.trim().parse().ok()))
            .unwrap_or(0);
        Ok(log)
    }

    fn list_segment_files(&mut self) -> Result<Vec<i64>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| CoreError::io(format!("list {}", self.dir.display()), e))?;
        let mut bases = Vec::new();
        let mut replaced = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| CoreError::io(format!("list {}", self.dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if spares::is_spare(&name) {
                // Kept for the first roll when empty, as they are made (a stop leaves them). One
                // that holds blocks reserved for `preallocate`, since turned off, is removed.
                let keep = |m: fs::Metadata| m.len() == 0 && (self.config.preallocate || std::os::unix::fs::MetadataExt::blocks(&m) == 0);
                if !entry.metadata().is_ok_and(keep) {
                    let _ = fs::remove_file(entry.path());
                }
            } else if name.ends_with(".log.replaced") {
                replaced.push(entry.path()); // once every swap is finished
            } else if name.ends_with(".snapshot.tmp") {
                // A roll's snapshot that no flush put in place: a replay from an older one
                // (or from the log start) rebuilds what it held. Routine after a crash.
                let _ = fs::remove_file(entry.path());
            } else if name.ends_with(".tmp") || name.ends_with(".deleted") || name.ends_with(".cleaned") {
                let _ = fs::remove_file(entry.path());
                self.repairs.push(format!("removed leftover file {}", entry.path().display()));
            } else if let Some(stem) = name.strip_suffix(".swap") {
                // A cleaned segment was complete but not yet in place: finish the swap.
                let log_path = self.dir.join(stem);
                delete_retired(cleaner::complete_swap(&log_path)?);
                self.repairs.push(format!("completed the swap of cleaned segment {}", log_path.display()));
                if let Some(base) = parse_segment_base(stem) {
                    bases.push(base);
                }
            } else if let Some(base) = parse_segment_base(&name) {
                bases.push(base);
            }
        }
        for path in replaced {
            if cleaner::restore_replaced(&path)? {
                self.repairs.push(format!("restored {}: its cleaned segment did not reach the disk", path.display()));
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                bases.extend(name.strip_suffix(".replaced").and_then(parse_segment_base));
            } else {
                self.repairs.push(format!("removed leftover file {}", path.display()));
            }
        }
        Ok(bases)
    }

    /// Scans segments from the one holding the recovery point; trusts (after a sanity check)
    /// the ones before it, and the active one when all of it is below the recovery point (a
    /// clean stop: a restart then reads no record data). A bad batch truncates the log there
    /// and drops every later segment.
    fn load_segments(&mut self, recovery_point: i64, _now_ms: i64) -> Result<()> {
        let scan_from = self.segments.range(..=recovery_point).next_back().map_or(i64::MIN, |(b, _)| *b);
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let mut expected_next = None;
        for (i, base) in bases.iter().enumerate() {
            let rules = self.scan_rules(bases.get(i + 1).copied().unwrap_or(i64::MAX));
            let segment = self.segments.get_mut(base).unwrap();
            let mut cut_reason = None;
            if let Some(next) = expected_next {
                if *base < next {
                    cut_reason = Some(format!("segment {base} overlaps the previous one, which ends at {next}"));
                }
            }
            if cut_reason.is_none() {
                let last = i + 1 == bases.len();
                if *base >= scan_from && last && segment.load_flushed_active(recovery_point, rules.index_interval)? {
                    expected_next = Some(segment.next_offset);
                    continue;
                }
                if *base >= scan_from {
                    let scan = segment.recover(rules)?;
                    if let Some(reason) = scan.invalid_reason {
                        let file_size = fs::metadata(segment.log_path()).map(|m| m.len()).unwrap_or(0);
                        self.repairs.push(format!(
                            "{}: {reason}; truncated {} bytes from position {}",
                            segment.log_path().display(),
                            file_size.saturating_sub(scan.valid_bytes),
                            scan.valid_bytes
                        ));
                        segment.truncate_file(scan.valid_bytes)?;
                        self.drop_segments_after(&bases[i + 1..], "an earlier segment had a corrupt tail")?;
                        return Ok(());
                    }
                    if i + 1 < bases.len() {
                        segment.seal()?;
                    }
                } else if let Some(note) = segment.load_sealed(rules)? {
                    self.repairs.push(note);
                }
                expected_next = Some(segment.next_offset);
                continue;
            }
            self.drop_segments_after(&bases[i..], cut_reason.as_deref().unwrap())?;
            return Ok(());
        }
        Ok(())
    }

    fn scan_rules(&self, offset_limit: i64) -> ScanRules {
        ScanRules {
            index_interval: self.config.index_interval_bytes,
            verify_crc: true,
            contiguous: !self.config.compacted,
            offset_limit,
        }
    }

    fn drop_segments_after(&mut self, bases: &[i64], reason: &str) -> Result<()> {
        for base in bases {
            if let Some(segment) = self.segments.remove(base) {
                self.repairs.push(format!("deleted segment {}: {reason}", segment.log_path().display()));
                segment.delete_files()?;
            }
        }
        Ok(())
    }

    /// Up to where the active segment's blocks are reserved ahead of appends (`preallocate`).
    fn preallocate_limit(&self) -> u64 {
        if self.config.preallocate { self.config.segment_bytes } else { 0 }
    }

    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log always has a segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a log always has a segment")
    }

    /// "topic-index", the name of the log's directory, as Kafka prints a partition.
    fn partition_name(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// Counts deletions and truncations of segments (a pass planned before a change is dropped).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The files of segments deleted or replaced since the last call (see `retired`): the caller
    /// unlinks them (`delete_retired`) after it lets go of the log.
    pub fn take_retired(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.retired)
    }

    pub fn log_end_offset(&self) -> i64 {
        self.segments.values().next_back().map_or(0, |s| s.next_offset)
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Validates a producer's batches, checks idempotent producers' sequences, assigns offsets
    /// and appends them to the active segment. A duplicate of one of a producer's last five
    /// batches is not written again: the answer carries its original offsets and no records.
    /// Flushes afterwards when `flush.messages` is reached.
    pub fn append(&mut self, data: &[u8], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo> {
        let info = self.append_unflushed(data, leader_epoch, now_ms)?;
        if self.flush_due() {
            self.flush(now_ms)?;
        }
        Ok(info)
    }

    /// Like `append`, without the flush that `flush.messages` may call for: the caller checks
    /// `flush_due` and flushes (the server does it off its event loop, before answering).
    pub fn append_unflushed(&mut self, data: &[u8], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo> {
        self.check_no_sync_failure("append to")?; // before the duplicate check: a retry is not acknowledged either
        let headers = if self.config.compacted {
            batch::validate_compacted_produce(data, self.config.max_message_bytes, &self.partition_name())?
        } else {
            batch::validate_produce(data, self.config.max_message_bytes)?
        };
        if headers.iter().any(|h| h.is_control()) {
            return Err(CoreError::InvalidRecord("clients may not write control batches (transaction markers)".into()));
        }
        if headers.len() > 1 && headers.iter().any(producer_state::is_idempotent) {
            return Err(CoreError::InvalidRecord(format!(
                "an idempotent producer must send one batch per partition, not {}",
                headers.len()
            )));
        }
        if let Verdict::Duplicate(meta) = self.producers.check(&headers[0])? {
            return Ok(AppendInfo {
                base_offset: meta.first_offset,
                last_offset: meta.last_offset,
                log_append_time: -1,
                record_count: 0,
                log_start_offset: self.log_start_offset,
                rolled: false,
            });
        }
        match self.recompressed(data, &headers)? {
            Some((bytes, headers)) => self.append_validated(&bytes, &headers, leader_epoch, now_ms),
            None => self.append_validated(data, &headers, leader_epoch, now_ms),
        }
    }

    /// A follower's append: the leader's batches as they are, offsets and leader epochs
    /// included (Kafka's `appendAsFollower`). Each batch's CRC is checked; a trailing partial
    /// batch (a fetch cut by its byte budget) is left for the next fetch. The first batch must
    /// start at the log end. Producer state and the leader-epoch cache follow the batches, so
    /// that this replica can lead with them. Returns (first offset, next offset) appended.
    pub fn append_replica(&mut self, data: &[u8], now_ms: i64) -> Result<(i64, i64)> {
        self.check_no_sync_failure("append to")?;
        let start = self.log_end_offset();
        let mut pos = 0;
        while data.len() - pos >= batch::HEADER_SIZE {
            let Some((_, size)) = batch::peek_offset_and_size(&data[pos..]) else { break };
            if size > data.len() - pos {
                break; // a partial batch at the end of the fetch
            }
            let bytes = &data[pos..pos + size];
            let header = batch::checked_header(bytes)?;
            let expected = self.log_end_offset();
            if header.base_offset != expected {
                return Err(CoreError::CorruptBatch(format!(
                    "replicated batch at offset {} does not follow the log end {expected} of {}",
                    header.base_offset,
                    self.partition_name()
                )));
            }
            self.maybe_roll(size as u64, header.last_offset(), now_ms)?;
            let interval = self.config.index_interval_bytes;
            let preallocate = self.preallocate_limit();
            self.active_mut().append(&[bytes], &[header], interval, preallocate)?;
            self.note_producer_batch(&header, bytes)?;
            let epoch = header.partition_leader_epoch;
            if epoch >= 0 && self.epochs.last().is_none_or(|(e, _)| epoch > *e) {
                self.epochs.push((epoch, header.base_offset));
                self.write_epochs(false)?;
                self.epochs_unsynced = true;
                self.epochs_written += 1;
            }
            self.unflushed_messages += header.record_count as i64;
            self.messages_appended += header.record_count as i64;
            pos += size;
        }
        Ok((start, self.log_end_offset()))
    }

    /// The batches re-encoded with the topic's `compression.type`, when any differs from it.
    fn recompressed(&self, data: &[u8], headers: &[BatchHeader]) -> Result<Option<(Vec<u8>, Vec<BatchHeader>)>> {
        let Some(codec) = self.config.compression else { return Ok(None) };
        if headers.iter().all(|h| h.compression() == codec || h.is_control()) {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(data.len());
        let mut pos = 0;
        for header in headers {
            let batch = &data[pos..pos + header.size()];
            if header.compression() == codec || header.is_control() {
                out.extend_from_slice(batch);
            } else {
                let level = match codec {
                    compression::GZIP => self.config.gzip_level,
                    compression::ZSTD => self.config.zstd_level,
                    _ => None,
                };
                out.extend(batch::recompress(batch, header, codec, level, self.config.max_message_bytes)?);
            }
            pos += header.size();
        }
        let headers = batch::validate_produce(&out, usize::MAX)?;
        Ok(Some((out, headers)))
    }

    fn append_validated(&mut self, bytes: &[u8], headers: &[BatchHeader], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo> {
        let base_offset = self.log_end_offset();
        let append_time = self.config.log_append_time.then_some(now_ms);
        let (patched, assigned) = batch::patched_headers(bytes, headers, base_offset, leader_epoch, append_time);
        let rolled = self.maybe_roll(bytes.len() as u64, assigned.last_offset, now_ms)?;
        let interval = self.config.index_interval_bytes;
        let mut shifted: Vec<BatchHeader> = Vec::with_capacity(headers.len());
        let mut next = base_offset;
        for header in headers {
            let mut h = *header;
            h.base_offset = next;
            if let Some(t) = append_time {
                h.max_timestamp = t;
            }
            next = h.next_offset();
            shifted.push(h);
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(headers.len() * 2);
        let mut pos = 0;
        for (head, header) in patched.iter().zip(headers) {
            parts.push(head);
            parts.push(&bytes[pos + batch::HEADER_SIZE..pos + header.size()]);
            pos += header.size();
        }
        let preallocate = self.preallocate_limit();
        self.active_mut().append(&parts, &shifted, interval, preallocate)?;
        let mut pos = 0;
        for header in &shifted {
            self.note_producer_batch(header, &bytes[pos..pos + header.size()])?;
            pos += header.size();
        }
        if self.epochs.last().is_none_or(|(epoch, _)| leader_epoch > *epoch) && leader_epoch >= 0 {
            self.epochs.push((leader_epoch, base_offset));
            // No fsync on the produce path (it cost ~400 µs on each partition's first append);
            // the flush that makes these batches durable syncs the checkpoint too, as Kafka does.
            self.write_epochs(false)?;
            self.epochs_unsynced = true;
            self.epochs_written += 1;
        }
        let record_count: i64 = headers.iter().map(|h| h.record_count as i64).sum();
        self.unflushed_messages += record_count;
        self.messages_appended += record_count;
        Ok(AppendInfo {
            base_offset,
            last_offset: assigned.last_offset,
            log_append_time: append_time.unwrap_or(-1),
            record_count,
            log_start_offset: self.log_start_offset,
            rolled,
        })
    }

    /// Starts a new segment when the active one would outgrow `segment.bytes`, is older than
    /// `segment.ms`, has a full index, or would overflow its 32-bit relative offsets.
    fn maybe_roll(&mut self, incoming: u64, last_offset: i64, now_ms: i64) -> Result<bool> {
        let config = self.config.clone();
        let active = self.active_mut();
        if active.size == 0 {
            return Ok(false);
        }
        let max_index_entries = (config.segment_index_bytes / 8).max(1) as usize;
        let full = active.size + incoming > config.segment_bytes
            || now_ms - active.created_ms > config.segment_ms
            || active.index_entry_count()? >= max_index_entries
            || last_offset - active.base_offset > i32::MAX as i64;
        if !full {
            return Ok(false);
        }
        self.roll(now_ms)?;
        Ok(true)
    }

    pub fn roll(&mut self, now_ms: i64) -> Result<()> {
        let next = self.log_end_offset();
        if self.active().size == 0 {
            return Ok(());
        }
        // No fsync here, with the log held (an append that rolled waited 1.4-1.9 ms at the
        // median and up to 105 ms for three): the sealed segment's files and the snapshot are synced by
        // `flusher::after_roll` on the flusher's thread, or by the next flush, as Kafka's roll leaves
        // them to its scheduler.
        self.active_mut().seal_unsynced()?;
        self.segments.insert(next, Segment::create(&self.dir, next, now_ms, Some(&self.spares))?);
        self.write_pending_snapshot()?;
        self.rolled = true;
        Ok(())
    }

    /// What the spares' thread reserves of the next segment's blocks (`preallocate`): as much
    /// as its appends would reserve ahead at most, within `segment.bytes`.
    pub fn preallocate_ahead(&self) -> u64 {
        self.preallocate_limit().min(segment::PREALLOCATE_AHEAD_MAX)
    }

    /// The partition's spares, for the spares' thread to make after a roll.
    pub fn spares(&self) -> Arc<Spares> {
        Arc::clone(&self.spares)
    }

    /// Whether a segment was rolled since the last call (see `rolled`).
    pub fn take_rolled(&mut self) -> bool {
        std::mem::take(&mut self.rolled)
    }

    /// Step one of a flush in three steps (see `PlannedFlush`), with the log held: writes the
    /// active segment's index entries (for `LogEnd`) and lists what `sync` must fsync. None when
    /// nothing lies unflushed there.
    pub fn plan_flush(&mut self, upto: FlushUpTo) -> Result<Option<PlannedFlush>> {
        self.check_no_sync_failure("flush")?;
        let offset = match upto {
            FlushUpTo::LogEnd => self.log_end_offset(),
            FlushUpTo::Sealed => self.active().base_offset,
        };
        if offset <= self.recovery_point && self.pending_snapshots.is_empty() && !self.epochs_unsynced {
            return Ok(None);
        }
        if upto == FlushUpTo::LogEnd {
            self.active_mut().write_indexes()?;
        }
        let from = self.segments.range(..=self.recovery_point).next_back().map_or(i64::MIN, |(b, _)| *b);
        let segments = self.segments.range(from..).filter(|(base, _)| upto == FlushUpTo::LogEnd || **base < offset);
        let mut files: Vec<PathBuf> = segments.flat_map(|(_, s)| [".log", ".index", ".timeindex", txn_index::SUFFIX].map(|x| s.path(x))).collect();
        files.extend(self.txn_index_unsynced.iter().filter_map(|base| self.segments.get(base)).map(|s| s.path(txn_index::SUFFIX)));
        if self.epochs_unsynced {
            files.push(self.dir.join(LEADER_EPOCH_FILE));
        }
        Ok(Some(PlannedFlush {
            dir: self.dir.clone(),
            truncations: self.truncations,
            upto,
            offset,
            files,
            snapshots: self.pending_snapshots.clone(),
            txn_indexes: self.txn_index_unsynced.clone(),
            epochs_written: self.epochs_written,
            messages_appended: self.messages_appended,
        }))
    }

    /// Records that a flush in steps failed to sync (see `sync_failure`).
    pub fn note_sync_failure(&mut self, error: &CoreError) {
        if self.sync_failure.is_none() {
            self.sync_failure = Some(error.to_string());
            SYNC_FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether a flush's sync failed (see `sync_failure`): `/metrics` shows it.
    pub fn sync_failed(&self) -> bool {
        self.sync_failure.is_some()
    }

    /// Why a flush's sync failed, if one did: the broker logs it and takes the replica offline.
    pub fn sync_failure(&self) -> Option<&str> {
        self.sync_failure.as_deref()
    }

    /// After a failed sync the log takes no more records and flushes no more (KAFKA_STORAGE_ERROR
    /// for each): what it acknowledged since might never reach the disk, as Kafka's log
    /// directory goes offline. Reopening the log (a restart) tries again.
    fn check_no_sync_failure(&self, what: &str) -> Result<()> {
        match &self.sync_failure {
            Some(why) => Err(CoreError::io(format!("{what} {}", self.dir.display()), std::io::Error::other(format!("an earlier fsync failed: {why}")))),
            None => Ok(()),
        }
    }

    /// Step three, with the log held, after `PlannedFlush::sync`: puts the synced snapshots in
    /// place and moves the recovery point to the planned offset, unless the log was truncated
    /// since. Renames only; true when the caller must sync the directory again (and unlink what
    /// `take_retired` hands over) once it lets go. The recovery point moves before that sync:
    /// the data below it is on disk, and a snapshot whose rename is lost only means a longer
    /// replay.
    pub fn finish_flush(&mut self, flush: PlannedFlush, now_ms: i64) -> Result<bool> {
        if flush.truncations != self.truncations {
            return Ok(false);
        }
        let placed = !flush.snapshots.is_empty();
        for offset in flush.snapshots {
            self.place_pending_snapshot(offset)?;
        }
        if placed {
            self.retire_old_snapshots()?;
        }
        if self.epochs_written == flush.epochs_written {
            self.epochs_unsynced = false;
        }
        self.txn_index_unsynced.retain(|base| !flush.txn_indexes.contains(base));
        self.recovery_point = self.recovery_point.max(flush.offset);
        // A flush of the sealed segments leaves the count be: records appended to the active
        // segment since the roll are in its plan's count but not in its files.
        if flush.upto == FlushUpTo::LogEnd {
            if flush.messages_appended > self.messages_flushed {
                self.unflushed_messages = (self.unflushed_messages - (flush.messages_appended - self.messages_flushed)).max(0);
                self.messages_flushed = flush.messages_appended;
            }
            self.last_flush_ms = self.last_flush_ms.max(now_ms);
        }
        Ok(placed)
    }

    /// Whole batches from `offset`, at most `max_bytes` (but at least one batch when `min_one`),
    /// none at or past `max_offset` (the high watermark for consumers). `None` when there is
    /// nothing to return; an error when `offset` is outside [log start, log end].
    pub fn read(&mut self, offset: i64, max_bytes: u64, max_offset: i64, min_one: bool) -> Result<Option<FileSlice>> {
        let end = self.log_end_offset();
        if offset < self.log_start_offset || offset > end {
            return Err(CoreError::OffsetOutOfRange(format!(
                "offset {offset} is outside the log of {} [{}, {end}]",
                self.dir.display(),
                self.log_start_offset
            )));
        }
        let upper = max_offset.min(end);
        if offset >= upper {
            return Ok(None);
        }
        let first_base = self.segments.range(..=offset).next_back().map_or(offset, |(b, _)| *b);
        for (_, segment) in self.segments.range(first_base..) {
            let file = segment.file()?;
            let Some((start, first)) = segment.find_batch(&file, offset)? else { continue };
            if first.base_offset >= upper {
                return Ok(None);
            }
            let mut length = 0u64;
            let mut position = start;
            let mut header = Some(first);
            while let Some(h) = header {
                if h.base_offset >= upper {
                    break;
                }
                let size = h.size() as u64;
                if length + size > max_bytes && !(length == 0 && min_one) {
                    break;
                }
                length += size;
                position += size;
                header = segment.header_at(&file, position)?;
            }
            if length == 0 {
                return Ok(None);
            }
            return Ok(Some(FileSlice { file, position: start, length, base_offset: first.base_offset }));
        }
        Ok(None)
    }

    /// The first batch holding a record with timestamp >= `timestamp`, read whole, with its
    /// offset; the caller finds the exact record inside it.
    pub fn batch_for_timestamp(&mut self, timestamp: i64) -> Result<Option<(i64, Vec<u8>)>> {
        let start = self.log_start_offset;
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        for base in bases {
            let segment = self.segments.get_mut(&base).unwrap();
            if segment.max_timestamp < timestamp || segment.next_offset <= start {
                continue;
            }
            let file = segment.file()?;
            if let Some((position, header)) = segment.find_batch_by_time(&file, timestamp)? {
                if header.last_offset() < start {
                    continue;
                }
                let mut bytes = vec![0u8; header.size()];
                use std::os::unix::fs::FileExt;
                file.read_exact_at(&mut bytes, position)
                    .map_err(|e| CoreError::io(format!("read {}", segment.log_path().display()), e))?;
                return Ok(Some((header.base_offset, bytes)));
            }
        }
        Ok(None)
    }

    /// (max timestamp, offset of the batch's last record holding it) over the whole log.
    pub fn max_timestamp(&self) -> (i64, i64) {
        self.segments
            .values()
            .filter(|s| s.size > 0)
            .map(|s| (s.max_timestamp, s.offset_of_max_timestamp))
            .fold((-1, -1), |best, cur| if cur.0 > best.0 { cur } else { best })
    }

    /// Whether `flush.messages` records have been appended since the last flush.
    pub fn flush_due(&self) -> bool {
        self.unflushed_messages >= self.config.flush_messages
    }

    /// The three steps of `plan_flush` in one go, with the log held throughout: a clean stop's
    /// flush, and `append`'s for `flush.messages`. Moves the recovery point to the log end.
    pub fn flush(&mut self, now_ms: i64) -> Result<()> {
        let Some(flush) = self.plan_flush(FlushUpTo::LogEnd)? else { return Ok(()) };
        if let Err(e) = flush.sync() {
            self.note_sync_failure(&e);
            return Err(e);
        }
        let dir = flush.dir.clone();
        if self.finish_flush(flush, now_ms)? {
            checkpoint::sync_dir(&dir)?;
        }
        delete_retired(self.take_retired());
        Ok(())
    }

    /// Whether `flush.ms` has passed since the last flush with something unflushed.
    pub fn flush_ms_passed(&self, now_ms: i64) -> bool {
        self.recovery_point < self.log_end_offset() && now_ms - self.last_flush_ms >= self.config.flush_ms
    }

    /// DeleteRecords: moves the log start to `offset` (at most the high watermark) and deletes
    /// segments wholly below it.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64> {
        if offset > self.high_watermark || offset < 0 {
            return Err(CoreError::OffsetOutOfRange(format!(
                "cannot delete records before {offset}: the log of {} holds [{}, {}]",
                self.dir.display(),
                self.log_start_offset,
                self.high_watermark
            )));
        }
        self.log_start_offset = self.log_start_offset.max(offset);
        self.delete_segments_below_start()?;
        Ok(self.log_start_offset)
    }

    fn delete_segments_below_start(&mut self) -> Result<usize> {
        let mut doomed = Vec::new();
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        for pair in bases.windows(2) {
            if pair[1] <= self.log_start_offset {
                doomed.push(pair[0]);
            }
        }
        self.delete_segments(&doomed)
    }

    fn delete_segments(&mut self, bases: &[i64]) -> Result<usize> {
        if !bases.is_empty() {
            self.generation += 1;
        }
        for base in bases {
            if let Some(segment) = self.segments.remove(base) {
                self.retired.extend(segment.retire_files()?);
            }
            self.aborted.remove(base);
        }
        if let Some(first) = self.segments.keys().next() {
            self.log_start_offset = self.log_start_offset.max(*first);
        }
        Ok(bases.len())
    }

    /// Deletes whole sealed segments past `retention.ms` (by their newest timestamp) or beyond
    /// `retention.bytes`, oldest first; never the active segment. Returns how many went.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize> {
        let config = &self.config;
        let mut doomed = Vec::new();
        let mut total = self.size_bytes() as i64;
        let sealed: Vec<(i64, u64, i64)> = {
            let n = self.segments.len();
            self.segments.values().take(n.saturating_sub(1)).map(|s| (s.base_offset, s.size, s.max_timestamp)).collect()
        };
        for (base, size, max_timestamp) in sealed {
            let expired = config.retention_ms >= 0 && max_timestamp >= 0 && now_ms - max_timestamp > config.retention_ms;
            let oversize = config.retention_bytes >= 0 && total - size as i64 >= config.retention_bytes;
            if !(expired || oversize) {
                break;
            }
            doomed.push(base);
            total -= size as i64;
        }
        let mut deleted = self.delete_segments(&doomed)?;
        deleted += self.delete_segments_below_start()?;
        Ok(deleted)
    }

    /// One compaction pass (see `cleaner`); None when the log is not compacted or not dirty
    /// enough. The three steps, for a caller that holds the log only for the first and the last:
    /// `plan_clean`, `CleanPlan::run` (reads and writes only sealed segments' files) and
    /// `finish_clean_step`.
    pub fn clean(&mut self, now_ms: i64) -> Result<Option<CleanStats>> {
        let Some(plan) = self.plan_clean(now_ms) else { return Ok(None) };
        let mut output = plan.run()?;
        loop {
            let step = self.finish_clean_step(&mut output, now_ms, None)?;
            if let Err(e) = output.settle_step(&step, self.take_retired()) {
                if output.sync_failed() {
                    self.note_sync_failure(&e);
                }
                return Err(e);
            }
            if let CleanStep::Done(stats) = step {
                return Ok(stats);
            }
        }
    }

    /// What a compaction pass would clean now, or None when there is nothing worth it.
    pub fn plan_clean(&self, now_ms: i64) -> Option<CleanPlan> {
        if !self.config.compacted || self.segments.len() < 2 {
            return None;
        }
        let lag = self.config.min_compaction_lag_ms;
        // Open transactions are not cleaned: their outcome decides what stays.
        let stable = self.producers.first_unstable_offset().unwrap_or(i64::MAX);
        let sealed: Vec<SealedSegment> = self
            .segments
            .values()
            .take(self.segments.len() - 1)
            .take_while(|s| (lag <= 0 || s.max_timestamp <= now_ms - lag) && s.next_offset <= stable)
            .map(|s| SealedSegment { base: s.base_offset, size: s.size, next_offset: s.next_offset, path: s.log_path() })
            .collect();
        let end_offset = sealed.last()?.next_offset;
        let first_dirty = self.first_dirty_offset.max(self.log_start_offset);
        let total: u64 = sealed.iter().map(|s| s.size).sum();
        let dirty: u64 = sealed.iter().filter(|s| s.next_offset > first_dirty).map(|s| s.size).sum();
        if first_dirty >= end_offset || total == 0 || (dirty as f64) < self.config.min_cleanable_dirty_ratio * total as f64 {
            return None;
        }
        // Indexed by producer (its aborted transactions never overlap, sorted by first offset),
        // so each batch costs a lookup and a binary search, not a pass over every abort.
        let mut aborted: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for t in self.aborted.values().flatten() {
            aborted.entry(t.producer_id).or_default().push((t.first_offset, t.last_offset));
        }
        for ranges in aborted.values_mut() {
            ranges.sort_unstable();
        }
        Some(CleanPlan {
            dir: self.dir.clone(),
            sealed,
            end_offset,
            first_dirty,
            horizon: now_ms - self.config.delete_retention_ms,
            aborted,
            generation: self.generation,
            index_interval: self.config.index_interval_bytes,
            max_keys: usize::MAX,
        })
    }

    /// Puts a pass's cleaned segments in place, in steps: each stops at `deadline` (after one
    /// segment at least), so that a caller holding the log for one step lets appends and
    /// fetches of this partition in between. Between steps the log is valid, some segments
    /// cleaned and others not, as after a crash in the middle of a pass. A pass that segments
    /// were deleted or truncated under since its plan (retention, DeleteRecords, replication's
    /// truncation) is dropped from there, its remaining files removed: the next pass plans
    /// again.
    pub fn finish_clean_step(&mut self, output: &mut CleanOutput, now_ms: i64, deadline: Option<std::time::Instant>) -> Result<CleanStep> {
        if output.generation != self.generation {
            output.discard();
            return Ok(CleanStep::Done(None));
        }
        let mut placed = Vec::new();
        while let Some((base, path)) = output.rewritten.get(output.placed).cloned() {
            output.placed += 1;
            if !self.segments.contains_key(&base) {
                cleaner::remove_cleaned(&path);
                continue;
            }
            // Renamed first: if that fails, the segment is still in the log.
            cleaner::mark_complete(&path)?;
            if let Some(segment) = self.segments.remove(&base) {
                segment.forget_file();
            }
            self.retired.extend(cleaner::retire_replaced(&path)?);
            self.retired.extend(cleaner::complete_swap(&path)?);
            cleaner::place_cleaned_indexes(&path);
            let mut fresh = Segment::open_existing(&self.dir, base, now_ms)?;
            // The pass's index files, checked as a sealed segment's are at open; rebuilt from the
            // log (the slow part, with the log held) only when missing or not sane. Gaps are what
            // cleaning leaves, whatever the topic's policy has become since the plan.
            fresh.load_sealed(ScanRules { verify_crc: false, contiguous: false, ..self.scan_rules(i64::MAX) })?;
            self.segments.insert(base, fresh);
            placed.push(base);
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                break;
            }
        }
        // An aborted transaction whose marker is gone must leave the index too: a reader told of
        // it would skip the producer's batches until an ABORT marker that no longer comes.
        let markers: Vec<(i64, i64)> =
            output.dropped_markers.iter().filter(|(base, _, _)| placed.contains(base)).map(|&(_, id, offset)| (id, offset)).collect();
        if !markers.is_empty() {
            let rewritten = self.forget_aborted(&markers)?;
            output.txn_indexes_rewritten.extend(rewritten);
        }
        if output.placed < output.rewritten.len() {
            return Ok(CleanStep::More);
        }
        let mut stats = output.stats;
        stats.segments = output.rewritten.len();
        self.first_dirty_offset = output.end_offset;
        Ok(CleanStep::Done(Some(stats)))
    }

    /// Cuts the log back so that `offset` is the next offset (replication's truncation).
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        self.generation += 1;
        self.truncations += 1;
        let offset = offset.max(self.log_start_offset);
        let first = *self.segments.keys().next().unwrap();
        let doomed: Vec<i64> = self.segments.range(offset..).map(|(b, _)| *b).filter(|b| *b != first).collect();
        for base in doomed {
            if let Some(segment) = self.segments.remove(&base) {
                self.retired.extend(segment.retire_files()?);
            }
        }
        let rules = ScanRules { verify_crc: false, ..self.scan_rules(i64::MAX) };
        let segment = self.active_mut();
        segment.seal()?;
        let file = segment.file()?;
        let cut = segment.find_batch(&file, offset)?.map_or(segment.size, |(position, _)| position);
        segment.truncate_file(cut)?;
        segment.recover(rules)?;
        segment.fsync()?;
        let end = self.log_end_offset();
        self.high_watermark = self.high_watermark.min(end);
        self.recovery_point = self.recovery_point.min(end);
        self.epochs.retain(|(_, start)| *start < end);
        self.write_epochs(true)?;
        for (offset, path) in self.snapshot_files()? {
            if offset > end {
                let _ = fs::remove_file(path);
            }
        }
        self.drop_pending_snapshots(|offset| offset > end);
        self.load_producer_state()?;
        Ok(())
    }

    /// Empties the log and starts it at `offset` (Kafka's truncateFullyAndStartAt): a follower
    /// whose log end is below the leader's log start (records the leader deleted) takes the
    /// leader's log from there. Every segment, the leader-epoch cache and producer state go.
    pub fn restart_at(&mut self, offset: i64, now_ms: i64) -> Result<()> {
        self.generation += 1;
        self.truncations += 1;
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        for base in bases {
            if let Some(segment) = self.segments.remove(&base) {
                self.retired.extend(segment.retire_files()?);
            }
        }
        for (_, path) in self.snapshot_files()? {
            let _ = fs::remove_file(path);
        }
        self.drop_pending_snapshots(|_| true);
        let offset = offset.max(0);
        self.segments.insert(offset, Segment::create(&self.dir, offset, now_ms, None)?);
        self.active_mut().activate()?;
        self.log_start_offset = offset;
        self.high_watermark = offset;
        self.recovery_point = offset;
        self.unflushed_messages = 0;
        self.messages_flushed = self.messages_appended;
        self.epochs.clear();
        self.write_epochs(true)?;
        self.producers.clear();
        self.aborted.clear();
        self.txn_index_unsynced.clear();
        self.first_dirty_offset = offset;
        checkpoint::sync_dir(&self.dir)?;
        Ok(())
    }

    /// Writes a COMMIT or ABORT marker of a producer's transaction (the coordinator's
    /// WriteTxnMarkers): its offset. A marker of an older epoch than the producer's is refused.
    pub fn append_marker(&mut self, producer_id: i64, producer_epoch: i16, marker: batch::Marker, leader_epoch: i32, now_ms: i64) -> Result<i64> {
        self.check_no_sync_failure("append to")?;
        if let Some(entry) = self.producers.entry(producer_id) {
            if producer_epoch < entry.epoch {
                return Err(CoreError::InvalidProducerEpoch(format!(
                    "transaction marker of producer {producer_id} has epoch {producer_epoch}, but epoch {} is current",
                    entry.epoch
                )));
            }
            if marker.coordinator_epoch >= 0 && marker.coordinator_epoch < entry.coordinator_epoch {
                return Err(CoreError::CoordinatorFenced(format!(
                    "transaction marker of producer {producer_id} from coordinator epoch {}, but epoch {} wrote its last",
                    marker.coordinator_epoch, entry.coordinator_epoch
                )));
            }
        }
        let bytes = batch::build_marker_batch(producer_id, producer_epoch, marker, now_ms);
        let headers = batch::validate_produce(&bytes, usize::MAX)?;
        Ok(self.append_validated(&bytes, &headers, leader_epoch, now_ms)?.base_offset)
    }

    /// The last stable offset: read_committed consumers see nothing at or past it (the first
    /// offset of the oldest open transaction, at most the high watermark).
    pub fn last_stable_offset(&self) -> i64 {
        self.producers.first_unstable_offset().map_or(self.high_watermark, |first| first.min(self.high_watermark))
    }

    /// Aborted transactions whose records may lie in [fetch_offset, upper): (producer id,
    /// first offset), as a read_committed Fetch returns them.
    pub fn aborted_transactions(&self, fetch_offset: i64, upper: i64) -> Vec<(i64, i64)> {
        let first_base = self.segments.range(..=fetch_offset).next_back().map_or(i64::MIN, |(b, _)| *b);
        self.aborted
            .range(first_base..)
            .flat_map(|(_, entries)| entries)
            .filter(|t| t.last_offset >= fetch_offset && t.first_offset < upper)
            .map(|t| (t.producer_id, t.first_offset))
            .collect()
    }

    /// Open transactions, oldest first: (producer id, first offset).
    pub fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        self.producers.ongoing()
    }

    /// Every producer with state here: (id, epoch, last sequence, last timestamp, coordinator
    /// epoch, first offset of its open transaction or -1), as DescribeProducers answers.
    pub fn producers(&self) -> Vec<(i64, i16, i32, i64, i32, i64)> {
        self.producers
            .entries()
            .into_iter()
            .map(|(pid, e)| {
                let last_sequence = e.batches.back().map_or(-1, |m| m.last_sequence);
                (pid, e.epoch, last_sequence, e.last_timestamp, e.coordinator_epoch, e.txn_first_offset)
            })
            .collect()
    }

    /// Producer state after an appended (or replayed) batch; an aborted transaction's entry
    /// goes into the `.txnindex` of the segment holding its marker.
    fn note_producer_batch(&mut self, header: &BatchHeader, bytes: &[u8]) -> Result<()> {
        let marker = if header.is_control() { batch::marker_of(header, bytes) } else { None };
        let Some(CompletedTxn { producer_id, first_offset, last_offset, aborted: true }) = self.producers.record(header, marker) else {
            return Ok(());
        };
        let last_stable_offset = self.producers.first_unstable_offset().unwrap_or(last_offset + 1);
        let entry = AbortedTxn { producer_id, first_offset, last_offset, last_stable_offset };
        let base = self.segments.range(..=last_offset).next_back().map_or(last_offset, |(b, _)| *b);
        if let Some(segment) = self.segments.get(&base) {
            txn_index::append(&segment.path(txn_index::SUFFIX), &entry)?;
        }
        self.aborted.entry(base).or_default().push(entry);
        if !self.txn_index_unsynced.contains(&base) {
            self.txn_index_unsynced.push(base);
        }
        Ok(())
    }

    fn load_txn_indexes(&mut self) -> Result<()> {
        self.aborted.clear();
        for (base, segment) in &self.segments {
            let entries = txn_index::read(&segment.path(txn_index::SUFFIX))?;
            if !entries.is_empty() {
                self.aborted.insert(*base, entries);
            }
        }
        Ok(())
    }

    /// Drops the aborted-transaction entries whose markers are at or past `offset` (replay
    /// writes them again).
    fn forget_aborted_from(&mut self, offset: i64) -> Result<()> {
        self.forget_aborted_where(|t| t.last_offset >= offset).map(drop)
    }

    /// Drops the aborted-transaction entries of these (producer id, marker offset) pairs.
    fn forget_aborted(&mut self, markers: &[(i64, i64)]) -> Result<Vec<PathBuf>> {
        self.forget_aborted_where(|t| markers.contains(&(t.producer_id, t.last_offset)))
    }

    /// Drops the entries `doomed` picks, rewriting the index files that change (unsynced): the
    /// paths of those rewritten.
    fn forget_aborted_where(&mut self, doomed: impl Fn(&AbortedTxn) -> bool) -> Result<Vec<PathBuf>> {
        let mut rewritten = Vec::new();
        let bases: Vec<i64> = self.aborted.keys().copied().collect();
        for base in bases {
            let entries = self.aborted.get_mut(&base).unwrap();
            let before = entries.len();
            entries.retain(|t| !doomed(t));
            if entries.len() == before {
                continue;
            }
            let kept = entries.clone();
            if kept.is_empty() {
                self.aborted.remove(&base);
            }
            if let Some(segment) = self.segments.get(&base) {
                let path = segment.path(txn_index::SUFFIX);
                txn_index::rewrite(&path, &kept)?;
                rewritten.push(path);
            }
        }
        Ok(rewritten)
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` we know and the offset it ends at.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let Some(position) = self.epochs.iter().rposition(|(e, _)| *e <= epoch) else {
            return (-1, -1);
        };
        let found = self.epochs[position].0;
        let end = self.epochs.get(position + 1).map_or(self.log_end_offset(), |(_, start)| *start);
        (found, end)
    }

    pub fn latest_epoch(&self) -> i32 {
        self.epochs.last().map_or(-1, |(e, _)| *e)
    }

    fn write_epochs(&self, sync: bool) -> Result<()> {
        let lines: Vec<String> = self.epochs.iter().map(|(e, o)| format!("{e} {o}")).collect();
        checkpoint::write_with(&self.dir.join(LEADER_EPOCH_FILE), &lines, sync)
    }

    fn load_epochs(&mut self) -> Result<()> {
        let path = self.dir.join(LEADER_EPOCH_FILE);
        let lines = match checkpoint::read(&path) {
            Ok(lines) => lines,
            Err(e) => {
                self.repairs.push(format!("ignored {}: {e}", path.display()));
                Vec::new()
            }
        };
        let end = self.log_end_offset();
        self.epochs = lines
            .iter()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
            })
            .filter(|(_, start): &(i32, i64)| *start <= end)
            .collect();
        Ok(())
    }

    /// `<offset>.snapshot` files of producer state, oldest first.
    fn snapshot_files(&self) -> Result<Vec<(i64, PathBuf)>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| CoreError::io(format!("list {}", self.dir.display()), e))?;
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(offset) = name.strip_suffix(".snapshot").and_then(|s| s.parse::<i64>().ok()) {
                found.push((offset, entry.path()));
            }
        }
        found.sort_unstable();
        Ok(found)
    }

    /// Writes and syncs the producer state as of the log end (a clean stop), keeping the two
    /// newest snapshots.
    fn write_producer_snapshot(&mut self) -> Result<()> {
        let end = self.log_end_offset();
        let (path, tmp) = (snapshot_path(&self.dir, end), pending_snapshot_path(&self.dir, end));
        self.pending_snapshots.retain(|offset| *offset != end); // this one takes its place
        let ctx = |op: &str| format!("{op} producer snapshot {}", path.display());
        let mut file = File::create(&tmp).map_err(|e| CoreError::io(ctx("create"), e))?;
        use std::io::Write;
        file.write_all(&self.producers.to_bytes()).and_then(|_| file.sync_all()).map_err(|e| CoreError::io(ctx("write"), e))?;
        fs::rename(&tmp, &path).map_err(|e| CoreError::io(ctx("rename"), e))?;
        self.retire_old_snapshots()?;
        delete_retired(self.take_retired());
        Ok(())
    }

    /// A roll's snapshot: written, neither synced nor in place (see `pending_snapshots`).
    fn write_pending_snapshot(&mut self) -> Result<()> {
        let end = self.log_end_offset();
        if self.pending_snapshots.contains(&end) {
            return Ok(()); // a roll at the same offset before a truncation: the same state
        }
        let tmp = pending_snapshot_path(&self.dir, end);
        let written = if self.spares.take(".snapshot.tmp", &tmp).is_some() {
            fs::OpenOptions::new().write(true).truncate(true).open(&tmp).and_then(|mut file| file.write_all(&self.producers.to_bytes()))
        } else {
            fs::write(&tmp, self.producers.to_bytes())
        };
        written.map_err(|e| CoreError::io(format!("write producer snapshot {}", tmp.display()), e))?;
        self.pending_snapshots.push(end);
        Ok(())
    }

    /// Renames a pending snapshot, synced by the caller, into place.
    fn place_pending_snapshot(&mut self, offset: i64) -> Result<()> {
        let Some(i) = self.pending_snapshots.iter().position(|o| *o == offset) else { return Ok(()) };
        self.pending_snapshots.remove(i);
        let tmp = pending_snapshot_path(&self.dir, offset);
        match fs::rename(&tmp, snapshot_path(&self.dir, offset)) {
            // Gone (removed by hand?): a replay from an older snapshot does without it.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CoreError::io(format!("rename {}", tmp.display()), e)),
            _ => Ok(()),
        }
    }

    /// Renames every snapshot but the two newest `.deleted`, for `take_retired`'s caller.
    fn retire_old_snapshots(&mut self) -> Result<()> {
        let snapshots = self.snapshot_files()?;
        for (_, old) in snapshots.iter().rev().skip(2) {
            self.retired.extend(crate::segment::rename_aside(old, ".deleted")?);
        }
        Ok(())
    }

    /// Forgets the pending snapshots at the offsets `doomed` picks, and removes their files.
    fn drop_pending_snapshots(&mut self, doomed: impl Fn(i64) -> bool) {
        let dir = &self.dir;
        self.pending_snapshots.retain(|offset| {
            if doomed(*offset) {
                let _ = fs::remove_file(pending_snapshot_path(dir, *offset));
            }
            !doomed(*offset)
        });
    }

    /// Loads the newest readable snapshot at or below the log end and replays later batches.
    fn load_producer_state(&mut self) -> Result<()> {
        self.producers.clear();
        let end = self.log_end_offset();
        let mut from = self.segments.keys().next().copied().unwrap_or(0);
        for (offset, path) in self.snapshot_files()?.into_iter().rev() {
            if offset > end {
                continue;
            }
            match fs::read(&path).map_err(|e| CoreError::io(format!("read {}", path.display()), e)).and_then(|b| ProducerState::from_bytes(&b)) {
                Ok(state) => {
                    self.producers = state;
                    from = offset;
                    break;
                }
                Err(e) => self.repairs.push(format!("ignored {}: {e}", path.display())),
            }
        }
        self.forget_aborted_from(from)?;
        self.replay_producers(from)
    }

    fn replay_producers(&mut self, from: i64) -> Result<()> {
        let first = self.segments.range(..=from).next_back().map_or(from, |(b, _)| *b);
        let bases: Vec<i64> = self.segments.range(first..).map(|(b, _)| *b).collect();
        for base in bases {
            // (header, the batch's bytes for a control batch: its marker), read before noting
            // them, since noting an abort writes to the segment's index.
            let mut batches = Vec::new();
            {
                let segment = self.segments.get_mut(&base).unwrap();
                let file = segment.file()?;
                let Some((mut position, _)) = segment.find_batch(&file, from)? else { continue };
                while let Some(header) = segment.header_at(&file, position)? {
                    let mut bytes = Vec::new();
                    if header.is_control() {
                        bytes = vec![0u8; header.size()];
                        use std::os::unix::fs::FileExt;
                        file.read_exact_at(&mut bytes, position)
                            .map_err(|e| CoreError::io(format!("read {}", segment.log_path().display()), e))?;
                    }
                    batches.push((header, bytes));
                    position += header.size() as u64;
                }
            }
            for (header, bytes) in batches {
                self.note_producer_batch(&header, &bytes)?;
            }
        }
        Ok(())
    }

    /// Flushes and seals the active segment's index files (clean shutdown).
    pub fn close(&mut self, now_ms: i64) -> Result<()> {
        self.spares.retire(); // none lands in a directory its owner may remove once this returns
        delete_retired(self.take_retired());
        self.flush(now_ms)?;
        self.active_mut().release_preallocation();
        self.write_producer_snapshot()?;
        for segment in self.segments.values() {
            segment.forget_file();
        }
        Ok(())
    }

    /// Removes the whole log directory (topic deletion).
    pub fn delete(self) -> Result<()> {
        self.spares.retire();
        for segment in self.segments.values() {
            segment.forget_file();
        }
        fs::remove_dir_all(&self.dir).map_err(|e| CoreError::io(format!("delete {}", self.dir.display()), e))
    }
}

impl Drop for PartitionLog {
    /// A log dropped without `close` (or `delete`) gets no spare after either.
    fn drop(&mut self) {
        self.spares.retire();
    }
}

impl PartitionLog {
    /// (file, base offset, bytes written) of every segment: what `verify` reads, without
    /// holding the log while it does.
    pub fn segment_extents(&self) -> Vec<(PathBuf, i64, u64)> {
        self.segments.values().map(|s| (s.log_path(), s.base_offset, s.size)).collect()
    }
}

/// Unlinks the files `take_retired` handed over; one that cannot go is left to the next open.
pub fn delete_retired(paths: Vec<PathBuf>) {
    for path in paths {
        let _ = fs::remove_file(path);
    }
}

/// Checks every batch of the segments in `extents` (see `Segment::verify_file`): the offset
/// and reason of the first bad one, or None. For data that recovery does not look at again
/// (below the recovery point), so that a damaged replica is found before it is served.
pub fn verify(extents: &[(PathBuf, i64, u64)]) -> Result<Option<(i64, String)>> {
    for (path, base_offset, size) in extents {
        if let Some((offset, why)) = Segment::verify_file(path, *base_offset, *size)? {
            return Ok(Some((offset, format!("{}: {why}", path.display()))));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::build_batch;
    use crate::segment::segment_file_name;
    use std::os::unix::fs::FileExt;

    fn small_config() -> LogConfig {
        LogConfig { segment_bytes: 1000, index_interval_bytes: 100, ..LogConfig::default() }
    }

    fn read_all(log: &mut PartitionLog, from: i64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut offset = from;
        while let Some(slice) = log.read(offset, 1 << 20, i64::MAX, true).unwrap() {
            let mut buf = vec![0u8; slice.length as usize];
            slice.file.read_exact_at(&mut buf, slice.position).unwrap();
            let mut pos = 0;
            while pos < buf.len() {
                let h = batch::parse_header(&buf[pos..]).unwrap();
                offset = h.next_offset();
                pos += h.size();
            }
            out.extend(buf);
        }
        out
    }

    #[test]
    fn verify_finds_a_damaged_batch_below_the_recovery_point_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = PartitionLog::open(&path, small_config(), 0, 0, 0).unwrap();
        for i in 0..30i64 {
            log.append(&build_batch(0, 1000 + i, &[format!("value-{i:04}-{}", "x".repeat(40)).as_bytes()]), 0, 5).unwrap();
        }
        log.flush(5).unwrap();
        assert_eq!(verify(&log.segment_extents()).unwrap(), None);
        let (second, _, size) = log.segment_extents()[1].clone();
        let file = std::fs::OpenOptions::new().write(true).open(&second).unwrap();
        file.write_all_at(b"\xff", size / 2).unwrap();
        let (offset, why) = verify(&log.segment_extents()).unwrap().expect("the flipped byte is found");
        assert!(offset >= log.segment_extents()[1].1 && offset < 30, "{offset}");
        assert!(why.contains(&second.display().to_string()), "{why}");
        assert_eq!(log.log_end_offset(), 30, "verify changes nothing");
    }

    #[test]
    fn append_read_roll_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = PartitionLog::open(&path, small_config(), 0, 0, 0).unwrap();
        let mut expected = Vec::new();
        for i in 0..50i64 {
            let value = format!("value-{i:04}-{}", "x".repeat(40));
            let info = log.append(&build_batch(0, 1000 + i, &[value.as_bytes(), b"second"]), 0, 5).unwrap();
            assert_eq!(info.base_offset, i * 2);
            assert_eq!(info.last_offset, i * 2 + 1);
        }
        assert!(log.segment_count() > 3, "segments roll at segment.bytes");
        assert_eq!(log.log_end_offset(), 100);
        let all = read_all(&mut log, 0);
        expected.extend(all.clone());
        // Reading from the middle of a batch starts at that batch.
        let slice = log.read(37, 1, i64::MAX, true).unwrap().unwrap();
        assert_eq!(slice.base_offset, 36);
        assert!(log.read(101, 10, i64::MAX, true).is_err());
        assert!(log.read(100, 10, i64::MAX, true).unwrap().is_none());
        log.close(0).unwrap();
        drop(log);
        // A reopen from recovery point 0 rescans everything and finds the same bytes.
        let mut log = PartitionLog::open(&path, small_config(), 0, 0, 0).unwrap();
        assert!(log.repairs.is_empty(), "{:?}", log.repairs);
        assert_eq!(log.log_end_offset(), 100);
        assert_eq!(read_all(&mut log, 0), expected);
        // A reopen that trusts all but the last segment reads the same too.
        drop(log);
        let mut log = PartitionLog::open(&path, small_config(), 100, 0, 0).unwrap();
        assert_eq!(read_all(&mut log, 0), expected);
        assert_eq!(log.max_timestamp(), (1049, 99));
    }

    #[test]
    fn a_cleanly_closed_active_segment_is_not_rescanned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let config = LogConfig { index_interval_bytes: 100, ..LogConfig::default() };
        let mut log = PartitionLog::open(&path, config.clone(), 0, 0, 0).unwrap();
        for i in 0..30i64 {
            // The max timestamp comes in the last batch, after the last index entry.
            let ts = if i == 29 { 5000 } else { 1000 + i };
            log.append(&build_batch(0, ts, &["v".repeat(60).as_bytes()]), 0, 0).unwrap();
        }
        log.close(0).unwrap();
        let recovery_point = log.recovery_point;
        assert_eq!(recovery_point, 30);
        drop(log);
        // A flipped byte in a record below the recovery point: a scan would cut the log there.
        let seg = path.join(format!("{:020}.log", 0));
        let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(b"X", 200).unwrap();
        let mut log = PartitionLog::open(&path, config.clone(), recovery_point, 0, 0).unwrap();
        assert!(log.repairs.is_empty(), "trusted, not scanned: {:?}", log.repairs);
        assert_eq!(log.log_end_offset(), 30);
        assert_eq!(log.max_timestamp(), (5000, 29));
        assert_eq!(log.append(&build_batch(0, 6000, &[b"after"]), 0, 0).unwrap().base_offset, 30);
        assert_eq!(log.read(30, 1 << 20, i64::MAX, true).unwrap().unwrap().base_offset, 30);
        drop(log);
        // Without the recovery point (an unclean stop) the same segment is scanned and cut.
        let log = PartitionLog::open(&path, config, 0, 0, 0).unwrap();
        assert_eq!(log.repairs.len(), 1, "{:?}", log.repairs);
        assert!(log.log_end_offset() < 30);
    }

    #[test]
    fn the_leader_epoch_checkpoint_is_written_on_append_and_synced_by_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = PartitionLog::open(&path, LogConfig::default(), 0, 0, 0).unwrap();
        log.append(&build_batch(0, 1, &[b"a"]), 0, 0).unwrap();
        log.append(&build_batch(0, 1, &[b"b"]), 3, 0).unwrap();
        assert!(log.epochs_unsynced);
        assert_eq!(checkpoint::read(&path.join(LEADER_EPOCH_FILE)).unwrap(), vec!["0 0", "3 1"]);
        log.flush(0).unwrap();
        assert!(!log.epochs_unsynced);
        drop(log);
        let log = PartitionLog::open(&path, LogConfig::default(), 2, 0, 0).unwrap();
        assert_eq!(log.epochs, vec![(0, 0), (3, 1)]);
    }

    #[test]
    fn a_follower_appends_the_leaders_batches_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let mut leader = PartitionLog::open(&dir.path().join("l-0"), LogConfig::default(), 0, 0, 0).unwrap();
        leader.append(&build_batch(0, 1, &[b"a", b"b"]), 2, 0).unwrap();
        leader.append(&build_batch(0, 1, &[b"c"]), 5, 0).unwrap();
        let fetched = read_all(&mut leader, 0);
        let mut follower = PartitionLog::open(&dir.path().join("f-0"), LogConfig::default(), 0, 0, 0).unwrap();
        // a partial batch at the end waits for the next fetch
        assert_eq!(follower.append_replica(&fetched[..fetched.len() - 3], 0).unwrap(), (0, 2));
        assert_eq!(follower.append_replica(&fetched[0..0], 0).unwrap(), (2, 2));
        let err = follower.append_replica(&fetched, 0).unwrap_err();
        assert!(err.to_string().contains("does not follow the log end 2"), "{err}");
        let rest = read_all(&mut leader, 2);
        assert_eq!(follower.append_replica(&rest, 0).unwrap(), (2, 3));
        assert_eq!(read_all(&mut follower, 0), fetched);
        assert_eq!(follower.epochs, vec![(2, 0), (5, 2)]);
        assert_eq!(follower.end_offset_for_epoch(2), (2, 2));
        let mut corrupt = rest.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        follower.truncate_to(2).unwrap();
        assert!(follower.append_replica(&corrupt, 0).is_err(), "a bad CRC is refused");
        assert_eq!(follower.log_end_offset(), 2);
    }

    #[test]
    fn a_log_restarted_at_an_offset_starts_there_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = PartitionLog::open(&path, small_config(), 0, 0, 0).unwrap();
        for _ in 0..20 {
            log.append(&build_batch(0, 1, &[b"some bytes"]), 1, 0).unwrap();
        }
        assert!(log.segment_count() > 1);
        log.restart_at(500, 0).unwrap();
        assert_eq!((log.log_start_offset, log.log_end_offset(), log.high_watermark, log.segment_count()), (500, 500, 500, 1));
        assert_eq!(log.latest_epoch(), -1);
        let mut leader = PartitionLog::open(&dir.path().join("l-0"), LogConfig::default(), 0, 0, 0).unwrap();
        leader.restart_at(500, 0).unwrap();
        leader.append(&build_batch(0, 1, &[b"x"]), 4, 0).unwrap();
        let fetched = read_all(&mut leader, 500);
        assert_eq!(log.append_replica(&fetched, 0).unwrap(), (500, 501));
        drop(log);
        let log = PartitionLog::open(&path, small_config(), 0, 500, 0).unwrap();
        assert_eq!((log.log_start_offset, log.log_end_offset(), log.latest_epoch()), (500, 501, 4), "it reopens as it was left");
    }

    #[test]
    fn torn_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = PartitionLog::open(&path, LogConfig::default(), 0, 0, 0).unwrap();
        for _ in 0..3 {
            log.append(&build_batch(0, 1, &[b"abc"]), 0, 0).unwrap();
        }
        let seg = path.join(format!("{:020}.log", 0));
        let len = fs::metadata(&seg).unwrap().len();
        drop(log);
        let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 5).unwrap();
        let mut log = PartitionLog::open(&path, LogConfig::default(), 0, 0, 0).unwrap();
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(log.repairs.len(), 1, "{:?}", log.repairs);
        assert_eq!(log.append(&build_batch(0, 1, &[b"abc"]), 0, 0).unwrap().base_offset, 2);
    }

    #[test]
    fn retention_truncation_and_delete_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut config = small_config();
        config.retention_bytes = 2000;
        let mut log = PartitionLog::open(&path, config.clone(), 0, 0, 0).unwrap();
        for i in 0..60i64 {
            log.append(&build_batch(0, i, &["y".repeat(100).as_bytes()]), 0, 0).unwrap();
        }
        let before = log.segment_count();
        let deleted = log.apply_retention(10).unwrap();
        assert!(deleted > 0 && log.segment_count() == before - deleted);
        // The deleted segments' files wait, renamed, for whoever holds the log to let go of it.
        let retired = log.take_retired();
        assert!(retired.len() >= 2 * deleted && retired.iter().all(|p| p.to_string_lossy().ends_with(".deleted") && p.exists()));
        let first_retired = retired[0].clone();
        delete_retired(retired);
        assert!(!first_retired.exists());
        assert!(log.take_retired().is_empty());
        assert!(log.size_bytes() <= 2000 + 1000);
        assert!(log.log_start_offset > 0);
        assert!(log.read(0, 100, i64::MAX, true).is_err());
        let start = log.log_start_offset;
        assert!(log.delete_records_before(start + 3).is_err(), "the high watermark has not moved");
        log.high_watermark = log.log_end_offset();
        log.delete_records_before(start + 3).unwrap();
        assert_eq!(log.log_start_offset, start + 3);
        log.truncate_to(55).unwrap();
        assert_eq!(log.log_end_offset(), 55);
        // What a crash leaves renamed goes when the log is opened again.
        let leftover = log.take_retired();
        assert!(!leftover.is_empty());
        log.close(0).unwrap();
        drop(log);
        let mut log = PartitionLog::open(&path, config, 55, start + 3, 0).unwrap();
        assert!(leftover.iter().all(|p| !p.exists()), "{:?}", log.repairs);
        assert_eq!(log.log_end_offset(), 55);
        assert_eq!(log.append(&build_batch(0, 1, &[b"z"]), 1, 0).unwrap().base_offset, 55);
        assert_eq!(log.end_offset_for_epoch(0), (0, 55));
        assert_eq!(log.end_offset_for_epoch(1), (1, 56));
    }

    #[test]
    fn short_or_missing_indexes_of_trusted_segments_are_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = PartitionLog::open(&path, small_config(), 0, 0, 0).unwrap();
        for i in 0..40i64 {
            log.append(&build_batch(0, i, &["w".repeat(60).as_bytes()]), 0, 0).unwrap();
        }
        let expected = read_all(&mut log, 0);
        log.close(0).unwrap();
        drop(log);
        let first = path.join(format!("{:020}.index", 0));
        let entries = fs::read(&first).unwrap();
        fs::write(&first, &entries[..8]).unwrap();
        fs::remove_file(path.join(format!("{:020}.timeindex", 0))).unwrap();
        let mut log = PartitionLog::open(&path, small_config(), 40, 0, 0).unwrap();
        assert_eq!(log.repairs.len(), 1, "{:?}", log.repairs);
        assert!(log.repairs[0].contains("rebuilt the indexes"));
        assert_eq!(fs::read(&first).unwrap(), entries);
        assert_eq!(read_all(&mut log, 0), expected);
    }

    fn idempotent_batch(pid: i64, epoch: i16, seq: i32, values: &[&[u8]]) -> Vec<u8> {
        let mut b = build_batch(0, 1, values);
        b[43..51].copy_from_slice(&pid.to_be_bytes());
        b[51..53].copy_from_slice(&epoch.to_be_bytes());
        b[53..57].copy_from_slice(&seq.to_be_bytes());
        let crc = batch::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn idempotent_duplicates_survive_restarts_and_crashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = PartitionLog::open(&path, small_config(), 0, 0, 0).unwrap();
        for seq in 0..30 {
            let info = log.append(&idempotent_batch(42, 0, seq * 2, &[b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", b"b"]), 0, 0).unwrap();
            assert_eq!(info.base_offset, seq as i64 * 2);
        }
        let dup = log.append(&idempotent_batch(42, 0, 56, &[b"x", b"y"]), 0, 0).unwrap();
        assert_eq!((dup.base_offset, dup.last_offset, dup.record_count), (56, 57, 0));
        assert_eq!(log.log_end_offset(), 60);
        assert!(matches!(log.append(&idempotent_batch(42, 0, 70, &[b"x"]), 0, 0), Err(CoreError::OutOfOrderSequence(_))));
        let mut two = idempotent_batch(42, 0, 60, &[b"x"]);
        two.extend(idempotent_batch(42, 0, 61, &[b"y"]));
        assert!(matches!(log.append(&two, 0, 0), Err(CoreError::InvalidRecord(_))));
        log.close(0).unwrap();
        drop(log);
        // Clean restart: the snapshot at the log end holds the state.
        let mut log = PartitionLog::open(&path, small_config(), 60, 0, 0).unwrap();
        assert_eq!(log.append(&idempotent_batch(42, 0, 58, &[b"x", b"y"]), 0, 0).unwrap().record_count, 0);
        assert_eq!(log.append(&idempotent_batch(42, 0, 60, &[b"z"]), 0, 0).unwrap().base_offset, 60);
        drop(log);
        // A crash: snapshots after the last roll are missing; replaying headers rebuilds them.
        for entry in fs::read_dir(&path).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "snapshot") {
                fs::remove_file(entry.path()).unwrap();
            }
        }
        let mut log = PartitionLog::open(&path, small_config(), 0, 0, 0).unwrap();
        assert_eq!(log.append(&idempotent_batch(42, 0, 60, &[b"z"]), 0, 0).unwrap().record_count, 0);
        assert!(matches!(log.append(&idempotent_batch(42, -1, 61, &[b"z"]), 0, 0), Ok(_) | Err(_)));
        log.truncate_to(50).unwrap();
        assert_eq!(log.append(&idempotent_batch(42, 0, 50, &[b"again", b"again"]), 0, 0).unwrap().base_offset, 50);
    }

    fn transactional(mut b: Vec<u8>, pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
        b[21..23].copy_from_slice(&batch::ATTR_TRANSACTIONAL.to_be_bytes());
        b[43..51].copy_from_slice(&pid.to_be_bytes());
        b[51..53].copy_from_slice(&epoch.to_be_bytes());
        b[53..57].copy_from_slice(&seq.to_be_bytes());
        let crc = batch::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn marker(commit: bool) -> batch::Marker {
        batch::Marker { commit, coordinator_epoch: 0 }
    }

    /// The last stable offset with the high watermark at the log end (a single replica).
    fn stable(log: &mut PartitionLog) -> i64 {
        log.high_watermark = log.log_end_offset();
        log.last_stable_offset()
    }

    #[test]
    fn transactions_hold_the_last_stable_offset_and_aborts_are_indexed_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = PartitionLog::open(&path, small_config(), 0, 0, 0).unwrap();
        log.append(&build_batch(0, 1, &[b"plain"]), 0, 0).unwrap(); // 0
        log.append(&transactional(build_batch(0, 1, &[b"a1", b"a2"]), 7, 0, 0), 0, 0).unwrap(); // 1-2
        log.append(&transactional(build_batch(0, 1, &[b"b1"]), 8, 0, 0), 0, 0).unwrap(); // 3
        assert_eq!(log.last_stable_offset(), 0, "at most the high watermark");
        assert_eq!(stable(&mut log), 1);
        assert_eq!(log.append_marker(7, 0, marker(false), 0, 0).unwrap(), 4);
        assert_eq!(stable(&mut log), 3);
        assert_eq!(log.append_marker(8, 0, marker(true), 0, 0).unwrap(), 5);
        assert_eq!(stable(&mut log), 6);
        assert_eq!(log.aborted_transactions(0, 6), vec![(7, 1)]);
        assert_eq!(log.aborted_transactions(5, 6), vec![]);
        assert_eq!(log.aborted_transactions(0, 1), vec![]);
        assert!(path.join("00000000000000000000.txnindex").exists());
        // The producer's epoch moved with... nothing: an older marker epoch is refused.
        log.append(&transactional(build_batch(0, 1, &[b"c"]), 7, 2, 0), 0, 0).unwrap(); // 6
        assert!(matches!(log.append_marker(7, 1, marker(false), 0, 0), Err(CoreError::InvalidProducerEpoch(_))));
        assert!(matches!(log.append(&transactional(build_batch(0, 1, &[b"z"]), 7, 1, 1), 0, 0), Err(CoreError::InvalidProducerEpoch(_))));
        // A client may not write markers itself.
        let forged = batch::build_marker_batch(9, 0, marker(true), 0);
        assert!(matches!(log.append(&forged, 0, 0), Err(CoreError::InvalidRecord(_))));
        log.close(0).unwrap();
        drop(log);
        // Clean restart: the open transaction (offset 6) and the index come back.
        let mut log = PartitionLog::open(&path, small_config(), 7, 0, 0).unwrap();
        assert_eq!(stable(&mut log), 6);
        assert_eq!(log.aborted_transactions(0, 7), vec![(7, 1)]);
        assert_eq!(log.append_marker(7, 2, marker(false), 0, 0).unwrap(), 7);
        drop(log);
        // A crash without snapshots: replay rebuilds the open transactions and the index,
        // without duplicate entries.
        for entry in fs::read_dir(&path).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "snapshot") {
                fs::remove_file(entry.path()).unwrap();
            }
        }
        let mut log = PartitionLog::open(&path, small_config(), 0, 0, 0).unwrap();
        assert_eq!(stable(&mut log), 8);
        assert_eq!(log.aborted_transactions(0, 8), vec![(7, 1), (7, 6)]);
        assert_eq!(log.producers().iter().find(|p| p.0 == 7).map(|p| (p.1, p.5)), Some((2, -1)));
        // Truncating below the second abort forgets it and reopens that transaction.
        log.truncate_to(7).unwrap();
        assert_eq!(log.aborted_transactions(0, 8), vec![(7, 1)]);
        assert_eq!(log.ongoing_transactions(), vec![(7, 6)]);
        assert_eq!(stable(&mut log), 6);
        // A marker of an older coordinator than the producer's last is fenced; an operator's
        // abort (coordinator epoch -1) is not checked.
        let from = |coordinator_epoch| batch::Marker { commit: false, coordinator_epoch };
        log.append_marker(7, 2, from(3), 0, 0).unwrap();
        assert!(matches!(log.append_marker(7, 2, from(2), 0, 0), Err(CoreError::CoordinatorFenced(_))));
        assert!(log.append_marker(7, 2, from(-1), 0, 0).is_ok());
    }

    #[test]
    fn the_cleaner_removes_aborted_records_and_stops_at_open_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = small_config();
        config.compacted = true;
        config.segment_bytes = 200;
        config.min_cleanable_dirty_ratio = 0.0;
        let mut log = PartitionLog::open(&dir.path().join("t-0"), config, 0, 0, 0).unwrap();
        log.append(&keyed_batch(1, b"k", Some(b"committed")), 0, 0).unwrap(); // 0
        log.append(&transactional(keyed_batch(1, b"k", Some(b"aborted")), 7, 0, 0), 0, 0).unwrap(); // 1
        log.append_marker(7, 0, marker(false), 0, 0).unwrap(); // 2
        log.append(&transactional(keyed_batch(1, b"j", Some(b"open")), 8, 0, 0), 0, 0).unwrap(); // 3
        for i in 0..6 {
            log.append(&keyed_batch(1, format!("x{i}").as_bytes(), Some(b"filler")), 0, 0).unwrap();
        }
        log.clean(10).unwrap();
        log.high_watermark = log.log_end_offset();
        let bytes = read_all(&mut log, 0);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("committed") && !text.contains("aborted"), "{text}");
        assert!(text.contains("open") && text.contains("filler"));
        assert_eq!(log.last_stable_offset(), 3);
    }

    #[test]
    fn the_cleaner_finds_each_aborted_transaction_among_many() {
        // Two producers, each with alternating aborted and committed transactions: only the
        // aborted ones' records go (the cleaner looks them up per producer, by offset).
        let dir = tempfile::tempdir().unwrap();
        let mut config = small_config();
        config.compacted = true;
        config.segment_bytes = 300;
        config.min_cleanable_dirty_ratio = 0.0;
        let mut log = PartitionLog::open(&dir.path().join("t-0"), config, 0, 0, 0).unwrap();
        for round in 0..6i32 {
            for producer in [7i64, 9] {
                let commit = round % 2 == 1;
                let value = format!("{}-p{producer}-r{round}", if commit { "kept" } else { "gone" });
                let key = format!("k{producer}-{round}");
                log.append(&transactional(keyed_batch(1, key.as_bytes(), Some(value.as_bytes())), producer, 0, round), 0, 0).unwrap();
            }
            for producer in [7i64, 9] {
                log.append_marker(producer, 0, marker(round % 2 == 1), 0, 0).unwrap();
            }
        }
        for i in 0..6 {
            log.append(&keyed_batch(1, format!("x{i}").as_bytes(), Some(b"filler")), 0, 0).unwrap();
        }
        log.clean(10).unwrap();
        log.high_watermark = log.log_end_offset();
        let text = String::from_utf8_lossy(&read_all(&mut log, 0)).into_owned();
        for round in 0..6 {
            for producer in [7, 9] {
                let kept = text.contains(&format!("p{producer}-r{round}"));
                assert_eq!(kept, round % 2 == 1, "round {round} of producer {producer}: {text}");
            }
        }
    }

    #[test]
    fn markers_go_once_their_transaction_kept_nothing_and_the_horizon_passed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut config = small_config();
        config.compacted = true;
        config.segment_bytes = 200;
        config.min_cleanable_dirty_ratio = 0.0;
        config.delete_retention_ms = 1000;
        let mut log = PartitionLog::open(&path, config.clone(), 0, 0, 0).unwrap();
        log.append(&transactional(keyed_batch(1, b"k", Some(b"aborted")), 7, 0, 0), 0, 0).unwrap(); // 0
        log.append_marker(7, 0, marker(false), 0, 0).unwrap(); // 1: its data goes, so will it
        log.append(&transactional(keyed_batch(1, b"kept", Some(b"committed")), 8, 0, 0), 0, 0).unwrap(); // 2
        log.append_marker(8, 0, marker(true), 0, 0).unwrap(); // 3: its record stays, so does it
        for i in 0..6 {
            log.append(&keyed_batch(1, format!("x{i}").as_bytes(), Some(b"filler")), 0, 0).unwrap();
        }
        let count_markers = |log: &mut PartitionLog| {
            log.high_watermark = log.log_end_offset();
            let mut bytes = read_all(log, 0);
            let mut n = 0;
            while bytes.len() >= batch::HEADER_SIZE {
                let h = batch::parse_header(&bytes).unwrap();
                n += h.is_control() as usize;
                bytes.drain(..h.size());
            }
            n
        };
        log.clean(100).unwrap(); // markers stamped at 0; the horizon is 100 - 1000
        assert_eq!(count_markers(&mut log), 2);
        log.first_dirty_offset = 0;
        log.clean(5000).unwrap();
        assert_eq!(count_markers(&mut log), 1, "the abort marker went, the commit marker of a kept record stayed");
        assert_eq!(log.aborted_transactions(0, 100), vec![], "and its index entry with it");
        log.close(5000).unwrap();
        drop(log);
        for entry in fs::read_dir(&path).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "snapshot") {
                fs::remove_file(entry.path()).unwrap();
            }
        }
        let mut log = PartitionLog::open(&path, config, 0, 0, 0).unwrap();
        assert!(log.ongoing_transactions().is_empty(), "a replay from the start leaves nothing open");
        assert_eq!(stable(&mut log), log.log_end_offset());
    }

    use crate::batch::push_varlong as zigzag;

    /// One record with `key` and `value` (None: a tombstone), in an uncompressed batch.
    fn keyed_batch(timestamp: i64, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
        keyed_records(timestamp, &[(key, value)])
    }

    /// One batch of these (key, value or tombstone) records.
    fn keyed_records(timestamp: i64, keyed: &[(&[u8], Option<&[u8]>)]) -> Vec<u8> {
        let mut records = Vec::new();
        for (delta, (key, value)) in keyed.iter().enumerate() {
            let mut body = vec![0u8];
            zigzag(0, &mut body);
            zigzag(delta as i64, &mut body);
            zigzag(key.len() as i64, &mut body);
            body.extend_from_slice(key);
            match value {
                Some(v) => {
                    zigzag(v.len() as i64, &mut body);
                    body.extend_from_slice(v);
                }
                None => zigzag(-1, &mut body),
            }
            zigzag(0, &mut body);
            zigzag(body.len() as i64, &mut records);
            records.extend_from_slice(&body);
        }
        let placeholders = vec![&b"x"[..]; keyed.len()];
        let mut b = build_batch(0, timestamp, &placeholders);
        b.truncate(batch::HEADER_SIZE);
        b.extend_from_slice(&records);
        let length = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = batch::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn a_compacted_log_refuses_a_batch_with_keyless_records_and_writes_none_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { compacted: true, ..small_config() };
        let mut log = PartitionLog::open(&dir.path().join("orders-3"), config, 0, 0, 0).unwrap();
        let err = log.append(&build_batch(0, 5, &[b"a", b"b"]), 0, 0).unwrap_err();
        assert_eq!(err.kafka_error_code(), 87);
        let CoreError::RecordErrors(message, records) = err else { panic!("not record errors") };
        let why = "Compacted topic cannot accept message without key in topic partition orders-3";
        assert_eq!(records, vec![(0, why.to_string()), (1, why.to_string())]);
        assert!(message.starts_with("One or more records have been rejected due to 2 record errors in total"), "{message}");
        assert_eq!(log.log_end_offset(), 0);
        log.append(&keyed_batch(5, b"", Some(b"an empty key is a key")), 0, 0).unwrap();
        assert_eq!(log.log_end_offset(), 1);
    }

    #[test]
    fn compaction_keeps_the_last_value_of_each_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-0");
        let config = LogConfig { compacted: true, segment_bytes: 600, delete_retention_ms: 1000, ..small_config() };
        let mut log = PartitionLog::open(&path, config.clone(), 0, 0, 0).unwrap();
        for i in 0..60i64 {
            let key = format!("key-{}", i % 5);
            let value = format!("value-{i}");
            let tombstone = i == 57; // key-2's last record is a tombstone
            log.append(&keyed_batch(i, key.as_bytes(), (!tombstone).then_some(value.as_bytes())), 0, 0).unwrap();
        }
        log.high_watermark = log.log_end_offset();
        let before = log.size_bytes();
        // Young tombstones stay; superseded records go.
        let stats = log.clean(100).unwrap().unwrap();
        assert!(stats.records_removed > 0 && log.size_bytes() < before, "{stats:?}");
        assert!(log.clean(100).unwrap().is_none(), "nothing dirty until more is written");
        let mut seen = Vec::new();
        let data = read_all(&mut log, 0);
        let mut pos = 0;
        while pos < data.len() {
            let h = batch::parse_header(&data[pos..]).unwrap();
            let records = &data[pos + batch::HEADER_SIZE..pos + h.size()];
            for r in batch::parse_records(records, h.record_count).unwrap() {
                let key = r.key.map(|(s, e)| records[s..e].to_vec());
                seen.push((h.base_offset + r.offset_delta as i64, key, r.tombstone()));
            }
            pos += h.size();
        }
        // Every offset still there is the last of its key within the cleaned range, or in the
        // active segment; offsets only increase, with gaps.
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
        let active_base = *log.segments.keys().next_back().unwrap();
        for (offset, key, _) in seen.iter().filter(|(o, _, _)| *o < active_base) {
            let later = seen.iter().any(|(o, k, _)| o > offset && k == key);
            assert!(!later || seen.iter().any(|(o, _, _)| *o >= active_base), "offset {offset} kept though superseded");
        }
        assert!(seen.iter().any(|(_, _, t)| *t), "the young tombstone is kept");
        // After delete.retention.ms the tombstone goes too, once the log is dirty again.
        for i in 60..70i64 {
            log.append(&keyed_batch(i, format!("key-{}", i % 5).as_bytes(), Some(b"again")), 0, 0).unwrap();
        }
        log.roll(0).unwrap();
        log.clean(10_000).unwrap().unwrap();
        drop(log);
        let reopened = PartitionLog::open(&path, config, 0, 0, 0).unwrap();
        assert_eq!(reopened.log_end_offset(), 70);
        assert!(reopened.repairs.is_empty(), "{:?}", reopened.repairs);
    }

    /// A compacted log of 60 records over five keys in 600-byte segments.
    fn dirty_compacted_log(path: &Path) -> PartitionLog {
        let config = LogConfig { compacted: true, segment_bytes: 600, delete_retention_ms: 1000, ..small_config() };
        let mut log = PartitionLog::open(path, config, 0, 0, 0).unwrap();
        for i in 0..60i64 {
            log.append(&keyed_batch(i, format!("key-{}", i % 5).as_bytes(), Some(format!("value-{i}").as_bytes())), 0, 0).unwrap();
        }
        log.high_watermark = log.log_end_offset();
        log
    }

    /// Puts a pass in place one segment per step, with an append between steps; the steps taken.
    fn finish_in_steps(log: &mut PartitionLog, output: &mut CleanOutput, now_ms: i64) -> (usize, Option<CleanStats>) {
        let mut steps = 0;
        loop {
            steps += 1;
            let step = log.finish_clean_step(output, now_ms, Some(std::time::Instant::now())).unwrap();
            output.settle_step(&step, log.take_retired()).unwrap(); // as a caller does once it lets go of the log
            match step {
                CleanStep::Done(stats) => return (steps, stats),
                CleanStep::More => {
                    log.append(&keyed_batch(now_ms, b"between", Some(b"steps")), 0, 0).unwrap();
                }
            }
        }
    }

    fn swap_files(dir: &Path) -> Vec<String> {
        let names = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
        names.filter(|n| n.ends_with(".swap") || n.ends_with(".cleaned")).collect()
    }

    #[test]
    fn appends_made_while_a_pass_runs_unheld_stay_and_its_output_goes_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-0");
        let mut log = dirty_compacted_log(&path);
        let before = log.size_bytes();
        let plan = log.plan_clean(100).expect("dirty enough");
        let mut output = plan.run().unwrap();
        assert!(!swap_files(&path).is_empty(), "the pass wrote its segments beside the live ones");
        for i in 60..80i64 {
            log.append(&keyed_batch(i, b"new", Some(b"while cleaning")), 0, 0).unwrap();
        }
        let rewritten = output.rewritten.len();
        let (steps, stats) = finish_in_steps(&mut log, &mut output, 100);
        let stats = stats.unwrap();
        assert!(rewritten > 1 && steps == rewritten, "one segment a step: {steps} steps, {rewritten} segments");
        assert!(stats.records_removed > 0 && stats.segments == rewritten, "{stats:?}");
        let end = 80 + steps as i64 - 1;
        assert_eq!(log.log_end_offset(), end, "what was appended meanwhile and between the steps is there");
        assert!(log.size_bytes() < before + 40 * 100);
        assert!(swap_files(&path).is_empty());
        let last = read_all(&mut log, 60);
        assert_eq!(batch::parse_header(&last).unwrap().base_offset, 60);
        drop(log);
        let reopened = PartitionLog::open(&path, LogConfig { compacted: true, segment_bytes: 600, ..small_config() }, 0, 0, 0).unwrap();
        assert_eq!(reopened.log_end_offset(), end);
        assert!(reopened.repairs.is_empty(), "{:?}", reopened.repairs);
    }

    fn rolled_log(path: &Path) -> PartitionLog {
        let mut log = PartitionLog::open(path, small_config(), 0, 0, 0).unwrap();
        while log.segment_count() < 3 {
            log.append(&keyed_batch(0, b"k", Some(&[7u8; 100])), 0, 0).unwrap();
        }
        log
    }

    fn file_names(dir: &Path, suffix: &str) -> Vec<String> {
        let names = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
        names.filter(|n| n.ends_with(suffix)).collect()
    }

    #[test]
    fn a_roll_renames_the_spares_made_ahead_into_place_and_a_closed_or_deleted_log_gets_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = rolled_log(&path);
        log.spares().make();
        assert_eq!(file_names(&path, ".spare").len(), 4);
        let next = log.log_end_offset();
        log.roll(0).unwrap();
        assert!(file_names(&path, ".spare").is_empty(), "the roll took all four");
        for suffix in [".log", ".index", ".timeindex"] {
            assert_eq!(fs::metadata(path.join(format!("{next:020}{suffix}"))).unwrap().len(), 0);
        }
        assert!(fs::metadata(path.join(format!("{next:020}.snapshot.tmp"))).unwrap().len() > 0, "the snapshot is written");
        log.append(&keyed_batch(0, b"k", Some(b"after the roll")), 0, 0).unwrap();
        log.spares().make();
        let spares = log.spares();
        log.close(0).unwrap();
        fs::write(path.join("log.spare"), b"never written by fastlog").unwrap();
        fs::remove_file(path.join("index.spare")).unwrap();
        spares.make();
        assert!(!path.join("index.spare").exists(), "none made for a closed log");
        // An open keeps the empty spares for its first roll, and removes one that is not empty.
        let reopened = PartitionLog::open(&path, small_config(), 0, 0, 0).unwrap();
        assert_eq!(file_names(&path, ".spare").len(), 2);
        assert_eq!(reopened.log_end_offset(), next + 1);
        assert_eq!(reopened.segment_count(), 4);
        let spares = reopened.spares();
        reopened.delete().unwrap();
        fs::create_dir(&path).unwrap();
        spares.make();
        assert!(file_names(&path, ".spare").is_empty(), "none made for a deleted log");
    }

    #[test]
    fn a_roll_leaves_its_fsyncs_to_a_flush_off_the_append_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = rolled_log(&path);
        let active_base = log.active().base_offset;
        assert!(log.take_rolled() && !log.take_rolled());
        assert_eq!(log.recovery_point, 0);
        assert!(file_names(&path, ".snapshot").is_empty(), "a roll's snapshot is not in place before it is synced");
        assert_eq!(file_names(&path, ".snapshot.tmp").len(), 2);
        let flush = log.plan_flush(FlushUpTo::Sealed).unwrap().expect("two sealed segments");
        flush.sync().unwrap(); // as the flusher does, with the log let go
        log.finish_flush(flush, 0).unwrap();
        assert_eq!(log.recovery_point, active_base);
        assert!(file_names(&path, ".snapshot.tmp").is_empty());
        assert_eq!(file_names(&path, ".snapshot").len(), 2);
        assert!(log.plan_flush(FlushUpTo::Sealed).unwrap().is_none(), "nothing left to flush");
        drop(log); // a crash: what lies below the recovery point is trusted
        let reopened = PartitionLog::open(&path, small_config(), active_base, 0, 0).unwrap();
        assert!(reopened.repairs.is_empty(), "{:?}", reopened.repairs);
        assert_eq!(reopened.active().base_offset, active_base);
    }

    #[test]
    fn a_truncation_between_a_rolled_flushs_plan_and_finish_keeps_the_recovery_point() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = rolled_log(&path);
        let flush = log.plan_flush(FlushUpTo::Sealed).unwrap().unwrap();
        flush.sync().unwrap();
        log.truncate_to(1).unwrap(); // replication's truncation while the flusher synced
        assert!(file_names(&path, ".snapshot.tmp").is_empty(), "the snapshots above the new end are gone");
        log.finish_flush(flush, 0).unwrap();
        assert_eq!(log.recovery_point, 0);
        assert!(file_names(&path, ".snapshot").is_empty());
    }

    #[test]
    fn a_flush_puts_what_a_roll_left_in_place_and_a_crash_before_it_replays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = rolled_log(&path);
        let end = log.log_end_offset();
        log.flush(0).unwrap();
        assert_eq!(log.recovery_point, end);
        assert!(file_names(&path, ".snapshot.tmp").is_empty() && file_names(&path, ".snapshot").len() == 2);
        let mut crashed = rolled_log(&dir.path().join("t-1"));
        crashed.take_rolled();
        let end = crashed.log_end_offset();
        drop(crashed); // nothing flushed: the open scans from the start and drops the pending snapshots
        let reopened = PartitionLog::open(&dir.path().join("t-1"), small_config(), 0, 0, 0).unwrap();
        assert_eq!(reopened.log_end_offset(), end);
        assert!(file_names(&dir.path().join("t-1"), ".snapshot.tmp").is_empty());
    }

    #[test]
    fn a_flush_in_steps_covers_what_was_appended_before_its_plan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = PartitionLog::open(&path, LogConfig { segment_bytes: 1 << 20, ..LogConfig::default() }, 0, 0, 0).unwrap();
        for _ in 0..3 {
            log.append(&keyed_batch(0, b"k", Some(b"v")), 0, 0).unwrap();
        }
        let planned = log.log_end_offset();
        let flush = log.plan_flush(FlushUpTo::LogEnd).unwrap().expect("three records unflushed");
        log.append(&keyed_batch(0, b"k", Some(b"after the plan")), 1, 0).unwrap(); // a new leader epoch too
        flush.sync().unwrap();
        assert!(!log.finish_flush(flush, 7).unwrap(), "no snapshot to put in place");
        assert_eq!(log.recovery_point, planned);
        assert_eq!((log.unflushed_messages, log.last_flush_ms), (1, 7), "the append after the plan is still unflushed");
        assert!(log.epochs_unsynced, "the checkpoint written after the plan was not synced");
        let flush = log.plan_flush(FlushUpTo::LogEnd).unwrap().expect("one record and the checkpoint");
        flush.sync().unwrap();
        log.finish_flush(flush, 8).unwrap();
        assert_eq!((log.recovery_point, log.unflushed_messages, log.epochs_unsynced), (planned + 1, 0, false));
        assert!(log.plan_flush(FlushUpTo::LogEnd).unwrap().is_none());
        drop(log);
        let reopened = PartitionLog::open(&path, LogConfig::default(), planned + 1, 0, 0).unwrap();
        assert_eq!(reopened.log_end_offset(), planned + 1);
        assert!(reopened.repairs.is_empty(), "{:?}", reopened.repairs);
    }

    #[test]
    fn overlapping_flushes_take_each_record_off_the_count_once_and_a_failed_sync_sticks() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(&dir.path().join("t-0"), LogConfig::default(), 0, 0, 0).unwrap();
        log.append(&keyed_batch(0, b"k", Some(b"1")), 0, 0).unwrap();
        let first = log.plan_flush(FlushUpTo::LogEnd).unwrap().unwrap();
        log.append(&keyed_batch(0, b"k", Some(b"2")), 0, 0).unwrap();
        let second = log.plan_flush(FlushUpTo::LogEnd).unwrap().unwrap(); // flush.ms and flush.messages at once
        log.append(&keyed_batch(0, b"k", Some(b"3")), 0, 0).unwrap();
        log.finish_flush(second, 9).unwrap();
        log.finish_flush(first, 8).unwrap();
        assert_eq!((log.unflushed_messages, log.recovery_point, log.last_flush_ms), (1, 2, 9));
        log.note_sync_failure(&CoreError::io("fsync x".to_string(), std::io::Error::other("EIO")));
        assert!(log.plan_flush(FlushUpTo::LogEnd).is_err() && log.flush(10).is_err(), "no later flush claims the data is on disk");
    }

    #[test]
    fn with_preallocate_a_log_spare_comes_reserved_and_its_roll_gives_back_what_was_not_used() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let reserves = reserves_blocks(dir.path());
        let size = |p: &Path| { let m = fs::metadata(p).unwrap(); (m.len(), m.blocks() * 512) };
        let path = dir.path().join("t-0");
        let config = LogConfig { preallocate: true, segment_bytes: 4 << 20, ..LogConfig::default() };
        let mut log = PartitionLog::open(&path, config.clone(), 0, 0, 0).unwrap();
        assert_eq!(log.preallocate_ahead(), 4 << 20, "as much as the segment, at most 8 MiB");
        log.append(&keyed_batch(0, b"k", Some(&[7u8; 1000])), 0, 0).unwrap(); // a roll leaves an empty segment be
        log.spares().set_reserve(log.preallocate_ahead());
        log.spares().make();
        let spare = path.join("log.spare");
        assert_eq!(size(&spare).0, 0, "a spare stays empty");
        assert!(!reserves || size(&spare).1 >= 4 << 20, "{:?}", size(&spare));
        log.roll(1).unwrap();
        let active = log.active().log_path();
        assert!(!reserves || size(&active).1 >= 4 << 20, "the roll took the reserved spare");
        log.append(&keyed_batch(0, b"k", Some(&[7u8; 1000])), 0, 2).unwrap();
        assert!(!reserves || size(&active).1 < 5 << 20, "no reserve of its own on top: {:?}", size(&active));
        log.roll(3).unwrap();
        assert!(size(&active).1 < size(&active).0 + 8192, "the roll gave back what it did not use: {:?}", size(&active));
        // A reserved spare that a log with preallocate since turned off takes: given back too.
        log.append(&keyed_batch(0, b"k", Some(&[7u8; 1000])), 0, 4).unwrap();
        log.spares().make();
        log.config.preallocate = false;
        log.roll(4).unwrap();
        let taken = log.active().log_path();
        assert!(!reserves || size(&taken).1 >= 4 << 20, "the roll took the reserved spare");
        log.append(&keyed_batch(0, b"k", Some(&[7u8; 1000])), 0, 5).unwrap();
        log.roll(6).unwrap();
        assert!(size(&taken).1 < size(&taken).0 + 8192, "given back: {:?}", size(&taken));
        // A reserved spare is kept by an open with preallocate, removed by one without.
        log.spares().make();
        let end = log.log_end_offset();
        log.close(7).unwrap();
        drop(PartitionLog::open(&path, config.clone(), end, 0, 0).unwrap());
        assert!(!reserves || size(&spare).1 >= 4 << 20, "kept: {:?}", size(&spare));
        drop(PartitionLog::open(&path, LogConfig { preallocate: false, ..config.clone() }, end, 0, 0).unwrap());
        assert!(!reserves || !spare.exists(), "removed, not left to hold its blocks");
        let plain = PartitionLog::open(&dir.path().join("u-0"), LogConfig { preallocate: false, ..config }, 0, 0, 0).unwrap();
        assert_eq!(plain.preallocate_ahead(), 0, "without preallocate, spares reserve nothing");
    }

    #[test]
    fn preallocate_reserves_blocks_ahead_of_the_appends_and_gives_them_back_at_a_roll_and_a_stop() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let reserves = reserves_blocks(dir.path());
        let path = dir.path().join("t-0");
        let config = LogConfig { preallocate: true, segment_bytes: 1 << 20, ..LogConfig::default() };
        let mut log = PartitionLog::open(&path, config.clone(), 0, 0, 0).unwrap();
        let value = vec![7u8; 100_000];
        log.append(&keyed_batch(0, b"k", Some(&value)), 0, 0).unwrap();
        let size = |p: &Path| { let m = fs::metadata(p).unwrap(); (m.len(), m.blocks() * 512) };
        let first = log.active().log_path();
        let (bytes, reserved) = size(&first);
        assert!(!reserves || reserved >= 2 * bytes - 4096, "{bytes} bytes, {reserved} reserved: as much again ahead");
        while log.segment_count() < 2 {
            log.append(&keyed_batch(0, b"k", Some(&value)), 0, 0).unwrap();
        }
        let (bytes, reserved) = size(&first);
        assert!(bytes <= 1 << 20 && reserved < bytes + 8192, "the roll gave back what it did not use: {bytes} bytes, {reserved}");
        let second = log.active().log_path();
        assert!(!reserves || size(&second).1 > size(&second).0 + 4096);
        let end = log.log_end_offset();
        log.close(1).unwrap();
        assert!(size(&second).1 < size(&second).0 + 8192, "a clean stop gives the active segment's back");
        let mut reopened = PartitionLog::open(&path, config.clone(), end, 0, 0).unwrap();
        assert_eq!(reopened.log_end_offset(), end);
        assert!(reopened.repairs.is_empty(), "{:?}", reopened.repairs);
        reopened.truncate_to(end - 1).unwrap();
        assert_eq!(reopened.append(&keyed_batch(0, b"k", Some(&value)), 0, 2).unwrap().base_offset, end - 1);
        assert!(!reserves || size(&second).1 > size(&second).0 + 8192);
        drop(reopened); // no clean stop: the reserve stays, as after a crash
        let mut again = PartitionLog::open(&path, LogConfig { preallocate: false, ..config }, 0, 0, 0).unwrap();
        assert!(size(&second).1 < size(&second).0 + 8192, "an open gives back what a crash left");
        assert_eq!(again.log_end_offset(), end);
        assert!(again.repairs.iter().all(|r| r.starts_with("removed leftover file")), "{:?}", again.repairs);
        again.roll(3).unwrap();
        assert!(size(&second).1 < size(&second).0 + 8192);
    }

    #[test]
    fn after_a_failed_sync_appends_are_refused_until_the_log_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = PartitionLog::open(&path, LogConfig::default(), 0, 0, 0).unwrap();
        let first = idempotent_batch(7, 0, 0, &[b"1"]);
        log.append(&first, 0, 0).unwrap();
        // A file the sync cannot open (a symlink to itself: ELOOP) stands in for a failed writeback.
        let txn_index = log.active().path(txn_index::SUFFIX);
        let _ = fs::remove_file(&txn_index);
        std::os::unix::fs::symlink(&txn_index, &txn_index).unwrap();
        assert!(log.flush(1).is_err());
        assert!(log.sync_failure().is_some_and(|why| why.contains("txnindex")), "{:?}", log.sync_failure());
        let refused = log.append(&keyed_batch(0, b"k", Some(b"2")), 0, 2).unwrap_err();
        assert_eq!(refused.kafka_error_code(), 56, "{refused}");
        assert!(refused.to_string().contains("an earlier fsync failed"), "{refused}");
        assert_eq!(log.append(&first, 0, 2).unwrap_err().kafka_error_code(), 56, "nor is a producer's retry acknowledged");
        assert_eq!(log.append_replica(&first, 2).unwrap_err().kafka_error_code(), 56);
        assert_eq!(log.log_end_offset(), 1);
        drop(log);
        fs::remove_file(&txn_index).unwrap();
        let mut reopened = PartitionLog::open(&path, LogConfig::default(), 0, 0, 0).unwrap();
        assert_eq!(reopened.append(&keyed_batch(0, b"k", Some(b"2")), 0, 3).unwrap().base_offset, 1);
        reopened.flush(4).unwrap();
    }

    #[test]
    fn the_flusher_moves_the_recovery_point_past_a_rolled_segment_and_spares_are_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = rolled_log(&path);
        assert!(log.take_rolled());
        log.config.preallocate = true;
        let ahead = log.preallocate_ahead();
        assert!(ahead > 0);
        let active_base = log.active().base_offset;
        let shared: crate::flusher::SharedLog = Arc::new(std::sync::Mutex::new(Some(log)));
        crate::flusher::after_roll(&shared, shared.lock().unwrap().as_ref().unwrap());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while shared.lock().unwrap().as_ref().unwrap().recovery_point != active_base || file_names(&path, ".spare").len() < 4 {
            assert!(std::time::Instant::now() < deadline, "the flusher did not flush, or no spares were made, within 10 s");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // With preallocate, the log spare (made first) came with the next segment's first blocks reserved.
        use std::os::unix::fs::MetadataExt;
        let spare = fs::metadata(path.join("log.spare")).unwrap();
        assert!(!reserves_blocks(dir.path()) || spare.blocks() * 512 >= ahead);
    }

    /// Whether the filesystem at `dir` reserves blocks with `fallocate` (KEEP_SIZE).
    fn reserves_blocks(dir: &Path) -> bool {
        use std::os::fd::AsRawFd;
        let probe = File::create(dir.join("probe")).unwrap();
        // SAFETY: a plain call on a descriptor we own.
        unsafe { libc::fallocate(probe.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, 1 << 20) == 0 }
    }

    /// Each key's last value reading the whole log (none once its last record is a tombstone),
    /// and how many records are left.
    fn table_of(log: &mut PartitionLog) -> (BTreeMap<Vec<u8>, Vec<u8>>, usize) {
        let data = read_all(log, 0);
        let (mut table, mut count, mut pos) = (BTreeMap::new(), 0, 0);
        while pos < data.len() {
            let h = batch::parse_header(&data[pos..]).unwrap();
            let records = &data[pos + batch::HEADER_SIZE..pos + h.size()];
            for r in batch::parse_records(records, h.record_count).unwrap() {
                let (start, end) = r.key.unwrap();
                match r.value {
                    Some((s, e)) => table.insert(records[start..end].to_vec(), records[s..e].to_vec()),
                    None => table.remove(&records[start..end]),
                };
                count += 1;
            }
            pos += h.size();
        }
        (table, count)
    }

    #[test]
    fn a_pass_whose_key_map_fills_cleans_as_far_as_it_covers_and_the_next_goes_on() {
        // One record a batch, then three: a batch that could fill the map waits for a pass.
        for per_batch in [1, 3] {
            passes_over_a_bounded_map_clean_as_one_unbounded_pass(per_batch);
        }
    }

    fn passes_over_a_bounded_map_clean_as_one_unbounded_pass(per_batch: usize) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { compacted: true, segment_bytes: 600, delete_retention_ms: 0, min_cleanable_dirty_ratio: 0.0, ..small_config() };
        let mut logs: Vec<PartitionLog> = ["unbounded", "bounded"]
            .iter()
            .map(|name| PartitionLog::open(&dir.path().join(name), config.clone(), 0, 0, 0).unwrap())
            .collect();
        // Twelve keys, the last record of six of them a tombstone (60-65), then seven other
        // keys: some pass finds a tombstone past the end of its map.
        let records: Vec<(String, Option<String>)> = (0..120i64)
            .map(|i| {
                let key = if i < 66 { format!("key-{}", i % 12) } else { format!("late-{}", i % 7) };
                (key, (!(60..66).contains(&i)).then(|| format!("value-{i}")))
            })
            .collect();
        for log in &mut logs {
            for (i, chunk) in records.chunks(per_batch).enumerate() {
                let chunk: Vec<(&[u8], Option<&[u8]>)> = chunk.iter().map(|(k, v)| (k.as_bytes(), v.as_deref().map(str::as_bytes))).collect();
                log.append(&keyed_records(i as i64, &chunk), 0, 0).unwrap();
            }
            log.high_watermark = log.log_end_offset();
        }
        let (written, _) = table_of(&mut logs[0]);
        logs[0].clean(100).unwrap().unwrap();
        let (unbounded, unbounded_count) = table_of(&mut logs[0]);
        assert_eq!(unbounded, written);
        let bounded = &mut logs[1];
        let mut passes = 0;
        while let Some(plan) = bounded.plan_clean(100) {
            passes += 1;
            assert!(passes <= 60, "each pass moves on");
            let planned_end = plan.end_offset;
            // A map of no key at all still maps one batch, so that a pass moves on.
            let mut output = plan.with_max_keys(if passes == 1 { 0 } else { 4 }).run().unwrap();
            if passes == 1 {
                assert!(output.end_offset > 0 && output.end_offset < planned_end, "one batch is mapped, not the dirty part");
            }
            assert!(output.stats.keys_mapped <= 4.max(per_batch), "pass {passes} mapped {}", output.stats.keys_mapped);
            loop {
                let step = bounded.finish_clean_step(&mut output, 100, None).unwrap();
                output.settle_step(&step, bounded.take_retired()).unwrap();
                if let CleanStep::Done(_) = step {
                    break;
                }
            }
            // Never a value back from the dead, never a last value lost, at any pass.
            assert_eq!(table_of(bounded).0, written, "after pass {passes} ({per_batch} a batch)");
        }
        assert!(passes > 1);
        let (table, count) = table_of(bounded);
        assert_eq!(table, unbounded);
        assert_eq!(count, unbounded_count, "the passes together clean as much as one unbounded pass ({per_batch} a batch)");
    }

    #[test]
    fn a_pass_maps_no_more_than_max_keys_however_many_records_a_batch_holds() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { compacted: true, segment_bytes: 400, min_cleanable_dirty_ratio: 0.0, ..small_config() };
        let mut log = PartitionLog::open(&dir.path().join("wide-0"), config, 0, 0, 0).unwrap();
        // Batches of three records, each of a key of its own.
        for batch in 0..20 {
            let keys: Vec<String> = (0..3).map(|i| format!("key-{}", batch * 3 + i)).collect();
            let records: Vec<(&[u8], Option<&[u8]>)> = keys.iter().map(|k| (k.as_bytes(), Some(&b"v"[..]))).collect();
            log.append(&keyed_records(batch, &records), 0, 0).unwrap();
        }
        log.high_watermark = log.log_end_offset();
        let mut passes = 0;
        while let Some(plan) = log.plan_clean(100) {
            passes += 1;
            assert!(passes <= 40, "each pass moves on");
            let mut output = plan.with_max_keys(if passes == 1 { 2 } else { 7 }).run().unwrap();
            // The first batch is mapped whole, even past the bound, so that a pass moves on.
            let most = if passes == 1 { 3 } else { 6 };
            assert!(output.stats.keys_mapped <= most, "pass {passes} mapped {} keys", output.stats.keys_mapped);
            loop {
                let step = log.finish_clean_step(&mut output, 100, None).unwrap();
                output.settle_step(&step, log.take_retired()).unwrap();
                if let CleanStep::Done(_) = step {
                    break;
                }
            }
        }
        assert!(passes > 2);
    }

    #[test]
    fn a_stopped_pass_writes_nothing_and_a_later_one_cleans() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-0");
        let mut log = dirty_compacted_log(&path);
        let before = fs::read_dir(&path).unwrap().count();
        let stop = AtomicBool::new(true);
        assert!(log.plan_clean(100).unwrap().run_until(&stop).unwrap().is_none());
        assert_eq!(fs::read_dir(&path).unwrap().count(), before, "no .cleaned file is left");
        stop.store(false, Ordering::Relaxed);
        let mut output = log.plan_clean(100).unwrap().run_until(&stop).unwrap().unwrap();
        assert!(!output.rewritten.is_empty());
        assert!(finish_in_steps(&mut log, &mut output, 100).1.is_some());
    }

    #[test]
    fn a_step_leaves_its_fsyncs_and_unlinks_to_its_caller() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-0");
        let mut log = dirty_compacted_log(&path);
        let mut output = log.plan_clean(100).unwrap().run().unwrap();
        let step = log.finish_clean_step(&mut output, 100, None).unwrap();
        assert!(matches!(step, CleanStep::Done(Some(_))));
        let retired = log.take_retired();
        let named = |suffix: &str| retired.iter().filter(|p| p.to_string_lossy().ends_with(suffix)).count();
        assert_eq!(named(".log.replaced"), output.rewritten.len());
        assert_eq!(named(".index.deleted"), output.rewritten.len(), "the old index files are renamed, not unlinked, with the log held");
        assert!(retired.iter().all(|p| p.exists()));
        assert!(!path.join(CLEANER_FILE).exists(), "the checkpoint is written once the log is let go");
        output.settle_step(&step, retired.clone()).unwrap();
        assert!(retired.iter().all(|p| !p.exists()));
        assert_eq!(checkpoint::read(&path.join(CLEANER_FILE)).unwrap(), vec![output.end_offset.to_string()]);
    }

    #[test]
    fn a_cleaned_segment_goes_in_place_with_index_files_equal_to_a_rebuilds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-0");
        let config = LogConfig { compacted: true, segment_bytes: 3000, ..small_config() };
        let mut log = PartitionLog::open(&path, config.clone(), 0, 0, 0).unwrap();
        for i in 0..200i64 {
            // Every fourth record's key is written again: each pass keeps most of a segment.
            let key = if i % 4 == 0 { "again".to_string() } else { format!("key-{i}") };
            log.append(&keyed_batch(i, key.as_bytes(), Some(format!("value-{i}").as_bytes())), 0, 0).unwrap();
        }
        log.high_watermark = log.log_end_offset();
        let mut output = log.plan_clean(100).unwrap().run().unwrap();
        let bases: Vec<i64> = output.rewritten.iter().map(|(base, _)| *base).collect();
        finish_in_steps(&mut log, &mut output, 100).1.unwrap();
        log.close(0).unwrap();
        drop(log);
        let index_files = || -> Vec<Vec<u8>> {
            let names = bases.iter().flat_map(|b| [segment_file_name(*b, ".index"), segment_file_name(*b, ".timeindex")]);
            names.map(|name| fs::read(path.join(name)).unwrap()).collect()
        };
        let written = index_files();
        assert!(bases.len() > 2 && written.iter().filter(|f| f.len() > 12).count() > 2, "{bases:?}");
        for name in bases.iter().flat_map(|b| [segment_file_name(*b, ".index"), segment_file_name(*b, ".timeindex")]) {
            fs::remove_file(path.join(name)).unwrap();
        }
        let reopened = PartitionLog::open(&path, config, i64::MAX, 0, 0).unwrap();
        assert_eq!(reopened.repairs.iter().filter(|r| r.starts_with("rebuilt the indexes")).count(), bases.len());
        assert_eq!(index_files(), written, "what the pass wrote is what a scan of its output builds");
    }

    #[test]
    fn a_pass_whose_segments_were_truncated_or_deleted_meanwhile_is_dropped_with_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-0");
        let mut log = dirty_compacted_log(&path);
        let mut output = log.plan_clean(100).unwrap().run().unwrap();
        log.truncate_to(30).unwrap(); // replication's truncation, under the pass
        assert!(finish_in_steps(&mut log, &mut output, 100).1.is_none());
        assert!(swap_files(&path).is_empty(), "the pass's files are gone");
        assert_eq!(log.log_end_offset(), 30);
        let mut output = log.plan_clean(100).unwrap().run().unwrap();
        assert!(matches!(log.finish_clean_step(&mut output, 100, Some(std::time::Instant::now())).unwrap(), CleanStep::More));
        log.delete_records_before(20).unwrap(); // DeleteRecords, between two steps
        assert!(finish_in_steps(&mut log, &mut output, 100).1.is_none());
        assert!(swap_files(&path).is_empty(), "what was not in place yet is gone");
        assert!(log.clean(100).unwrap().is_some(), "the next pass plans again");
        assert_eq!(log.log_end_offset(), 30);
    }

    #[test]
    fn a_crash_while_a_pass_runs_unheld_brings_nothing_truncated_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-0");
        let mut log = dirty_compacted_log(&path);
        let output = log.plan_clean(100).unwrap().run().unwrap();
        assert!(!output.rewritten.is_empty());
        log.truncate_to(30).unwrap(); // a follower's truncation under the pass
        for i in 30..35i64 {
            log.append_unflushed(&keyed_batch(i, b"after", Some(b"the new leader's")), 1, 0).unwrap();
        }
        log.close(0).unwrap();
        drop((log, output)); // the process dies before the pass's next step
        let mut reopened = PartitionLog::open(&path, LogConfig { compacted: true, segment_bytes: 600, ..small_config() }, 0, 0, 0).unwrap();
        assert_eq!(reopened.log_end_offset(), 35, "{:?}", reopened.repairs);
        let tail = read_all(&mut reopened, 30);
        assert_eq!(batch::parse_header(&tail).unwrap().partition_leader_epoch, 1, "offset 30 is the new leader's record");
        assert!(swap_files(&path).is_empty());
    }

    #[test]
    fn a_swap_left_by_a_crash_is_completed_and_a_partial_clean_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-0");
        let config = LogConfig { compacted: true, segment_bytes: 400, ..small_config() };
        let mut log = PartitionLog::open(&path, config.clone(), 0, 0, 0).unwrap();
        for i in 0..20i64 {
            log.append(&keyed_batch(i, b"same-key", Some(format!("v{i}").as_bytes())), 0, 0).unwrap();
        }
        log.close(0).unwrap();
        drop(log);
        let first = path.join(format!("{:020}.log", 0));
        let original = fs::read(&first).unwrap();
        // A clean that died before finishing its output file: the original stays.
        fs::write(cleaner::cleaned_path(&first), b"half a segment").unwrap();
        let log = PartitionLog::open(&path, config.clone(), 20, 0, 0).unwrap();
        assert!(!cleaner::cleaned_path(&first).exists());
        assert_eq!(fs::read(&first).unwrap(), original);
        drop(log);
        // A clean that died after completing its output: the swap is finished on open.
        let kept = original[..keyed_batch(0, b"same-key", Some(b"v0")).len()].to_vec();
        fs::write(cleaner::swap_path(&first), &kept).unwrap();
        let log = PartitionLog::open(&path, config.clone(), 20, 0, 0).unwrap();
        assert_eq!(fs::read(&first).unwrap(), kept);
        assert!(log.repairs.iter().any(|r| r.contains("completed the swap")), "{:?}", log.repairs);
        assert_eq!(log.log_end_offset(), 20);
        drop(log);
        // A clean that died between retiring the replaced file and the swap: no `.log`, its
        // `.replaced` file and the `.swap`. The swap is finished and the old file removed.
        let replaced = cleaner::retire_replaced(&first).unwrap().expect("the segment's file");
        fs::write(cleaner::swap_path(&first), &kept).unwrap();
        let log = PartitionLog::open(&path, config.clone(), 20, 0, 0).unwrap();
        assert_eq!(fs::read(&first).unwrap(), kept);
        assert!(!replaced.exists());
        assert_eq!(log.log_end_offset(), 20);
        drop(log);
        // A disk that kept the retirement's rename but not the one before it: no `.log`, no
        // `.swap`. The replaced file is the segment again.
        fs::rename(&first, first.with_extension("log.replaced")).unwrap();
        let log = PartitionLog::open(&path, config, 20, 0, 0).unwrap();
        assert_eq!(fs::read(&first).unwrap(), kept);
        assert!(log.repairs.iter().any(|r| r.starts_with("restored")), "{:?}", log.repairs);
        assert_eq!(log.log_end_offset(), 20);
    }

    #[test]
    fn timestamp_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(&dir.path().join("t-0"), small_config(), 0, 0, 0).unwrap();
        for i in 0..40i64 {
            log.append(&build_batch(0, i * 10, &["v".repeat(50).as_bytes()]), 0, 0).unwrap();
        }
        for target in [0, 5, 10, 155, 390] {
            let (offset, bytes) = log.batch_for_timestamp(target).unwrap().unwrap();
            let h = batch::parse_header(&bytes).unwrap();
            assert!(h.max_timestamp >= target);
            assert_eq!(offset, (target + 9) / 10);
        }
        assert!(log.batch_for_timestamp(391).unwrap().is_none());
    }
}
