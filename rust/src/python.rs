//! The Python binding: converts arguments, releases the GIL for work, maps errors to exceptions.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, TryLockError};
use std::time::{Duration, Instant};

use crate::batch;
use crate::checkpoint;
use crate::error::CoreError;
use crate::files;
use crate::flusher;
use crate::log::{CleanOutput, CleanStep, FlushUpTo, LogConfig, PartitionLog};
use crate::partition_metrics;
use crate::produce;
use crate::quorum::Quorum;

create_exception!(_core, StorageError, PyException, "Base of every error raised by fastlog's core.");
create_exception!(_core, CorruptRecordError, StorageError, "A record batch failed validation: CORRUPT_MESSAGE.");
create_exception!(_core, RecordTooLargeError, StorageError, "A record batch exceeds the size limit: MESSAGE_TOO_LARGE.");
create_exception!(_core, OffsetOutOfRangeError, StorageError, "An offset outside the log: OFFSET_OUT_OF_RANGE.");
create_exception!(_core, LogIOError, StorageError, "A disk operation failed: KAFKA_STORAGE_ERROR.");
create_exception!(_core, OutOfOrderSequenceError, StorageError, "A producer's sequence does not follow its last: OUT_OF_ORDER_SEQUENCE_NUMBER.");
create_exception!(_core, InvalidProducerEpochError, StorageError, "A producer epoch older than the current one: INVALID_PRODUCER_EPOCH.");
create_exception!(_core, UnknownProducerIdError, StorageError, "A producer without state here, mid-sequence: UNKNOWN_PRODUCER_ID.");
create_exception!(_core, InvalidRecordError, StorageError, "A produce request the log cannot take: INVALID_RECORD.");
create_exception!(_core, CoordinatorFencedError, StorageError, "A marker from an older transaction coordinator: TRANSACTION_COORDINATOR_FENCED.");

impl From<CoreError> for PyErr {
    fn from(err: CoreError) -> PyErr {
        let message = err.to_string();
        match err {
            CoreError::CorruptBatch(_) => CorruptRecordError::new_err(message),
            CoreError::BatchTooLarge(_) => RecordTooLargeError::new_err(message),
            CoreError::OffsetOutOfRange(_) => OffsetOutOfRangeError::new_err(message),
            CoreError::InvalidArgument(_) => pyo3::exceptions::PyValueError::new_err(message),
            CoreError::Io(..) => LogIOError::new_err(message),
            CoreError::OutOfOrderSequence(_) => OutOfOrderSequenceError::new_err(message),
            CoreError::InvalidProducerEpoch(_) => InvalidProducerEpochError::new_err(message),
            CoreError::UnknownProducerId(_) => UnknownProducerIdError::new_err(message),
            CoreError::InvalidRecord(_) => InvalidRecordError::new_err(message),
            CoreError::CoordinatorFenced(_) => CoordinatorFencedError::new_err(message),
            // args: (message, [(index of the record in its batch, why)]), for KIP-467's record_errors
            CoreError::RecordErrors(_, records) => InvalidRecordError::new_err((message, records)),
        }
    }
}

/// CRC32C (Castagnoli) of `data`, as record batches carry it.
#[pyfunction]
#[pyo3(name = "crc32c")]
fn crc32c_of(py: Python<'_>, data: &[u8]) -> u32 {
    if data.len() < 4096 {
        return batch::crc32c(data);
    }
    py.detach(|| batch::crc32c(data))
}

/// Validates a producer's run of record batches; returns (record count, batch count).
#[pyfunction]
#[pyo3(signature = (data, max_batch_bytes = 1 << 30))]
fn validate_batches(py: Python<'_>, data: &[u8], max_batch_bytes: usize) -> PyResult<(i64, usize)> {
    let headers = py.detach(|| batch::validate_produce(data, max_batch_bytes))?;
    Ok((headers.iter().map(|h| h.record_count as i64).sum(), headers.len()))
}

/// The schema ids the records of a run of batches carry (broker-side schema validation):
/// ([(record index, part)] of unframed keys/values, [(part, id, first record index)]); part 0
/// is a key, 1 a value.
#[pyfunction]
#[pyo3(signature = (data, keys, values, max_batch_bytes = 1 << 30))]
fn schema_ids(py: Python<'_>, data: &[u8], keys: bool, values: bool, max_batch_bytes: usize) -> PyResult<(Vec<(i32, u8)>, Vec<(u8, u32, i32)>)> {
    let found = py.detach(|| crate::schema_ids::schema_ids(data, keys, values, max_batch_bytes))?;
    Ok((found.unframed, found.ids))
}

/// Copies `data` with offsets assigned from `base_offset` (used by tests and internal writers).
#[pyfunction]
#[pyo3(signature = (data, base_offset, leader_epoch = 0, log_append_time = None))]
fn assign_offsets<'py>(
    py: Python<'py>,
    data: &[u8],
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut owned = data.to_vec();
    py.detach(|| -> Result<(), CoreError> {
        let headers = batch::validate_produce(&owned, usize::MAX)?;
        batch::assign_offsets(&mut owned, &headers, base_offset, leader_epoch, log_append_time);
        Ok(())
    })?;
    Ok(PyBytes::new(py, &owned))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Reads Kafka-named topic configs (`segment.bytes`, `retention.ms`, ...) into a LogConfig.
fn log_config(config: Option<&Bound<'_, PyDict>>) -> PyResult<LogConfig> {
    let mut c = LogConfig::default();
    let Some(config) = config else { return Ok(c) };
    for (key, value) in config.iter() {
        let key: String = key.extract()?;
        let int = || -> PyResult<i64> {
            value.extract::<i64>().map_err(|_| {
                pyo3::exceptions::PyValueError::new_err(format!("log config {key} must be an integer, not {value}"))
            })
        };
        let non_negative = |v: i64| -> PyResult<u64> {
            u64::try_from(v).map_err(|_| pyo3::exceptions::PyValueError::new_err(format!("log config {key} must be >= 0, not {v}")))
        };
        let level = |v: i64, levels: &std::ops::RangeInclusive<i32>| -> PyResult<i32> {
            i32::try_from(v).ok().filter(|v| levels.contains(v)).ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err(format!("log config {key} must be in {}..={}, not {v}", levels.start(), levels.end()))
            })
        };
        match key.as_str() {
            "segment.bytes" => c.segment_bytes = non_negative(int()?)?.max(batch::HEADER_SIZE as u64),
            "segment.ms" => c.segment_ms = int()?,
            "segment.index.bytes" => c.segment_index_bytes = non_negative(int()?)?,
            "index.interval.bytes" => c.index_interval_bytes = non_negative(int()?)?,
            "retention.ms" => c.retention_ms = int()?,
            "retention.bytes" => c.retention_bytes = int()?,
            "max.message.bytes" => c.max_message_bytes = non_negative(int()?)? as usize,
            "flush.messages" => c.flush_messages = int()?,
            "flush.ms" => c.flush_ms = int()?,
            "delete.retention.ms" => c.delete_retention_ms = int()?,
            "min.compaction.lag.ms" => c.min_compaction_lag_ms = int()?,
            // Kafka's -1 is zlib's default.
            "compression.gzip.level" => c.gzip_level = match int()? { -1 => None, v => Some(level(v, &crate::compression::GZIP_LEVELS)?) },
            // zstd's own range (negative levels are its fast ones), as Kafka accepts.
            "compression.zstd.level" => c.zstd_level = Some(level(int()?, &zstd::compression_level_range())?),
            "min.cleanable.dirty.ratio" => {
                c.min_cleanable_dirty_ratio = value.extract::<f64>().map_err(|_| {
                    pyo3::exceptions::PyValueError::new_err(format!("log config {key} must be a number, not {value}"))
                })?
            }
            "preallocate" => {
                c.preallocate = value.extract::<bool>().map_err(|_| {
                    pyo3::exceptions::PyValueError::new_err(format!("log config {key} must be true or false, not {value}"))
                })?
            }
            "cleanup.policy" => {
                let v: String = value.extract()?;
                c.compacted = v.split(',').any(|p| p.trim() == "compact");
            }
            "compression.type" => {
                let v: String = value.extract()?;
                c.compression = match v.as_str() {
                    "producer" => None,
                    "uncompressed" => Some(crate::compression::NONE),
                    "gzip" => Some(crate::compression::GZIP),
                    "snappy" => Some(crate::compression::SNAPPY),
                    "lz4" => Some(crate::compression::LZ4),
                    "zstd" => Some(crate::compression::ZSTD),
                    _ => return Err(pyo3::exceptions::PyValueError::new_err(format!("unknown compression.type {v}"))),
                }
            }
            "message.timestamp.type" => {
                let v: String = value.extract()?;
                c.log_append_time = match v.as_str() {
                    "LogAppendTime" => true,
                    "CreateTime" => false,
                    _ => return Err(pyo3::exceptions::PyValueError::new_err(format!("unknown message.timestamp.type {v}"))),
                }
            }
            _ => {} // other topic configs are the Python layer's business
        }
    }
    Ok(c)
}

/// A run of whole batches in a segment file: hand `fileno()`, `position` and `len()` to
/// `os.sendfile`. Holding the slice keeps the file open, even if the segment is deleted.
#[pyclass(frozen, module = "fastlog._core")]
struct FileSlice {
    file: Arc<File>,
    #[pyo3(get)]
    position: u64,
    #[pyo3(get)]
    length: u64,
    #[pyo3(get)]
    base_offset: i64,
}

#[pymethods]
impl FileSlice {
    fn fileno(&self) -> i32 {
        self.file.as_raw_fd()
    }
    fn __len__(&self) -> usize {
        self.length as usize
    }
    /// The bytes of the slice (a copy, for internal readers).
    fn read<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let mut buf = vec![0u8; self.length as usize];
        py.detach(|| self.file.read_exact_at(&mut buf, self.position))
            .map_err(|e| CoreError::io("read file slice", e))?;
        Ok(PyBytes::new(py, &buf))
    }
    fn __repr__(&self) -> String {
        format!("FileSlice(base_offset={}, position={}, length={})", self.base_offset, self.position, self.length)
    }
}

/// How long a compaction pass holds its log at a time to put cleaned segments in place (one
/// segment at least), and its pause between two such steps.
const CLEAN_STEP: Duration = Duration::from_millis(2);
const CLEAN_STEP_PAUSE: Duration = Duration::from_micros(200);

/// A partition log on disk. Every method releases the GIL while it works.
#[pyclass(frozen, module = "fastlog._core")]
struct Log {
    // Shared so that the partition table can let go of its lock before it waits for a log.
    inner: Arc<Mutex<Option<PartitionLog>>>,
    /// Held for a whole compaction pass, which holds `inner` only at its start and end.
    cleaning: Mutex<()>,
    /// Set by `close`, `delete` and `stop_cleaning`: a compaction pass under way gives up at its
    /// next batch, and no other starts.
    cleaning_stopped: AtomicBool,
    #[pyo3(get)]
    path: PathBuf,
}

impl Log {
    fn lock(&self) -> PyResult<MutexGuardLog<'_>> {
        self.open(self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }
    /// The log, locked, for a caller that stays attached to the interpreter (a getter): taken at
    /// once when free, else waited for detached. Whoever holds it may be in an fsync, a segment
    /// roll or a cleaner pass, and a wait with the GIL held (or, on a free-threaded build,
    /// attached, which holds up every stop-the-world pause) would stop every thread's Python.
    fn lock_attached(&self, py: Python<'_>) -> PyResult<MutexGuardLog<'_>> {
        loop {
            match self.inner.try_lock() {
                Ok(guard) => return self.open(guard),
                Err(TryLockError::Poisoned(p)) => return self.open(p.into_inner()),
                Err(TryLockError::WouldBlock) => py.detach(|| drop(self.inner.lock())),
            }
        }
    }
    /// A compaction step's settling failed: a failed sync sticks to the log, as a flush's does.
    fn settle_failed(&self, output: &CleanOutput, error: CoreError) -> PyErr {
        if output.sync_failed() {
            if let Some(log) = self.inner.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                log.note_sync_failure(&error);
            }
        }
        error.into()
    }
    /// Flushes without holding the log through the fsyncs (`flusher::flush_unheld`): they were
    /// most of a flush's time, which appends and fetches of this partition (and the loop
    /// serving them) waited for.
    fn flush_unheld(&self, py: Python<'_>, now: i64) -> PyResult<()> {
        py.detach(|| {
            drop(self.lock()?); // a closed log raises
            flusher::flush_unheld(&self.inner, FlushUpTo::LogEnd, now).map_err(PyErr::from)
        })
    }
    fn is_closed(&self, py: Python<'_>) -> bool {
        py.detach(|| self.inner.lock().map_or_else(|p| p.into_inner().is_none(), |guard| guard.is_none()))
    }
    fn open<'a>(&self, guard: MutexGuard<'a, Option<PartitionLog>>) -> PyResult<MutexGuardLog<'a>> {
        if guard.is_none() {
            return Err(LogIOError::new_err(format!("log {} is closed", self.path.display())));
        }
        Ok(MutexGuardLog(guard))
    }
    fn with<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut PartitionLog) -> Result<T, CoreError> + Send) -> PyResult<T> {
        py.detach(|| {
            let (result, retired) = {
                let mut guard = self.lock()?;
                let log = guard.0.as_mut().unwrap();
                let result = f(log);
                if log.take_rolled() {
                    flusher::after_roll(&self.inner, log);
                }
                (result, log.take_retired())
            };
            // Deleted segments' files are unlinked with the log let go: ~200 ms for 1 GiB.
            crate::log::delete_retired(retired);
            result.map_err(PyErr::from)
        })
    }
}

struct MutexGuardLog<'a>(MutexGuard<'a, Option<PartitionLog>>);

#[pymethods]
impl Log {
    /// Opens or creates the log in `path`, recovering from `recovery_point`.
    #[new]
    #[pyo3(signature = (path, config = None, recovery_point = 0, log_start_offset = 0))]
    fn new(py: Python<'_>, path: PathBuf, config: Option<&Bound<'_, PyDict>>, recovery_point: i64, log_start_offset: i64) -> PyResult<Self> {
        let config = log_config(config)?;
        let log = py.detach(|| PartitionLog::open(&path, config, recovery_point, log_start_offset, now_ms()))?;
        Ok(Log { inner: Arc::new(Mutex::new(Some(log))), cleaning: Mutex::new(()), cleaning_stopped: AtomicBool::new(false), path })
    }

    /// Validates and appends a producer's record batches.
    /// Returns (base_offset, last_offset, log_append_time or -1, record_count).
    #[pyo3(signature = (data, leader_epoch = 0, now_ms = None))]
    fn append(&self, py: Python<'_>, data: &[u8], leader_epoch: i32, now_ms: Option<i64>) -> PyResult<(i64, i64, i64, i64)> {
        let now = now_ms.unwrap_or_else(self::now_ms);
        let (info, flush_due) = self.with(py, |log| {
            let info = log.append_unflushed(data, leader_epoch, now)?;
            Ok((info, log.flush_due()))
        })?;
        if flush_due {
            // `flush.messages` reached: answered once on disk, as `PartitionLog::append` is,
            // but with the fsyncs done without the log held (`flush_unheld`).
            let flushed = self.flush(py);
            // A log closed in between flushed the records as it closed.
            if flushed.is_err() && !self.is_closed(py) {
                flushed?;
            }
        }
        Ok((info.base_offset, info.last_offset, info.log_append_time, info.record_count))
    }

    /// Writes a transaction's COMMIT or ABORT marker for `producer_id`: its offset. An epoch
    /// older than the producer's here is refused (InvalidProducerEpochError), and so is one of
    /// a coordinator epoch older than the producer's last marker's (CoordinatorFencedError;
    /// a negative coordinator epoch, an operator's abort, is not checked).
    #[pyo3(signature = (producer_id, producer_epoch, commit, coordinator_epoch = 0, leader_epoch = 0))]
    fn append_marker(&self, py: Python<'_>, producer_id: i64, producer_epoch: i16, commit: bool, coordinator_epoch: i32, leader_epoch: i32) -> PyResult<i64> {
        let now = self::now_ms();
        let marker = crate::batch::Marker { commit, coordinator_epoch };
        self.with(py, |log| log.append_marker(producer_id, producer_epoch, marker, leader_epoch, now))
    }

    /// The last stable offset: the first offset of the oldest open transaction, at most the
    /// high watermark (read_committed consumers see nothing from there).
    #[getter]
    fn last_stable_offset(&self, py: Python<'_>) -> PyResult<i64> {
        Ok(self.lock_attached(py)?.0.as_ref().unwrap().last_stable_offset())
    }

    /// Aborted transactions whose records may lie in [fetch_offset, upper): [(producer id, first offset)].
    fn aborted_transactions(&self, py: Python<'_>, fetch_offset: i64, upper: i64) -> PyResult<Vec<(i64, i64)>> {
        Ok(self.lock_attached(py)?.0.as_ref().unwrap().aborted_transactions(fetch_offset, upper))
    }

    /// Open transactions, oldest first: [(producer id, first offset)].
    fn ongoing_transactions(&self, py: Python<'_>) -> PyResult<Vec<(i64, i64)>> {
        Ok(self.lock_attached(py)?.0.as_ref().unwrap().ongoing_transactions())
    }

    /// Producers with state here: [(id, epoch, last sequence, last timestamp, coordinator
    /// epoch, first offset of the open transaction or -1)].
    fn producers(&self, py: Python<'_>) -> PyResult<Vec<(i64, i16, i32, i64, i32, i64)>> {
        Ok(self.lock_attached(py)?.0.as_ref().unwrap().producers())
    }

    /// Empties the log and starts it at `offset` (a follower behind the leader's log start).
    fn restart_at(&self, py: Python<'_>, offset: i64) -> PyResult<()> {
        let now = self::now_ms();
        self.with(py, |log| log.restart_at(offset, now))
    }

    /// A follower's append of the leader's batches, offsets and epochs kept (CRCs checked; a
    /// trailing partial batch is left out). Returns (first offset, next offset) appended.
    #[pyo3(signature = (data, now_ms = None))]
    fn append_replica(&self, py: Python<'_>, data: &[u8], now_ms: Option<i64>) -> PyResult<(i64, i64)> {
        let now = now_ms.unwrap_or_else(self::now_ms);
        self.with(py, |log| log.append_replica(data, now))
    }

    /// `append_replica` if nothing holds the log now, else None: the event loop calls this and
    /// never waits behind a cleaner pass, a flush or retention (it retries on a worker thread).
    #[pyo3(signature = (data, now_ms = None))]
    fn try_append_replica(&self, py: Python<'_>, data: &[u8], now_ms: Option<i64>) -> PyResult<Option<(i64, i64)>> {
        let now = now_ms.unwrap_or_else(self::now_ms);
        py.detach(|| {
            let mut guard = match self.inner.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
            };
            let Some(log) = guard.as_mut() else {
                return Err(LogIOError::new_err(format!("log {} is closed", self.path.display())));
            };
            let appended = log.append_replica(data, now);
            if log.take_rolled() {
                flusher::after_roll(&self.inner, log);
            }
            appended.map(Some).map_err(PyErr::from)
        })
    }

    /// Whole batches from `offset`, up to `max_bytes` (at least one batch when `min_one`), none at
    /// or past `max_offset` (default: the high watermark). None when there is nothing to read.
    #[pyo3(signature = (offset, max_bytes, max_offset = None, min_one = true))]
    fn read(&self, py: Python<'_>, offset: i64, max_bytes: i64, max_offset: Option<i64>, min_one: bool) -> PyResult<Option<FileSlice>> {
        let max_bytes = max_bytes.max(0) as u64;
        let slice = self.with(py, |log| {
            let upper = max_offset.unwrap_or(log.high_watermark);
            log.read(offset, max_bytes, upper, min_one)
        })?;
        Ok(slice.map(|s| FileSlice { file: s.file, position: s.position, length: s.length, base_offset: s.base_offset }))
    }

    /// Checks every batch on disk (length, magic, CRC, offset order) without holding the log
    /// or the GIL while it reads: (offset, why) of the first bad batch, or None.
    fn verify(&self, py: Python<'_>) -> PyResult<Option<(i64, String)>> {
        let extents = self.lock_attached(py)?.0.as_ref().unwrap().segment_extents();
        Ok(py.detach(|| crate::log::verify(&extents))?)
    }

    /// Like `read`, as bytes (empty when there is nothing).
    #[pyo3(signature = (offset, max_bytes, max_offset = None, min_one = true))]
    fn read_bytes<'py>(&self, py: Python<'py>, offset: i64, max_bytes: i64, max_offset: Option<i64>, min_one: bool) -> PyResult<Bound<'py, PyBytes>> {
        match self.read(py, offset, max_bytes, max_offset, min_one)? {
            Some(slice) => slice.read(py),
            None => Ok(PyBytes::new(py, b"")),
        }
    }

    #[getter]
    fn log_start_offset(&self, py: Python<'_>) -> PyResult<i64> {
        Ok(self.lock_attached(py)?.0.as_ref().unwrap().log_start_offset)
    }
    #[getter]
    fn log_end_offset(&self, py: Python<'_>) -> PyResult<i64> {
        Ok(self.lock_attached(py)?.0.as_ref().unwrap().log_end_offset())
    }
    #[getter]
    fn high_watermark(&self, py: Python<'_>) -> PyResult<i64> {
        Ok(self.lock_attached(py)?.0.as_ref().unwrap().high_watermark)
    }
    #[setter]
    fn set_high_watermark(&self, py: Python<'_>, value: i64) -> PyResult<()> {
        let mut guard = self.lock_attached(py)?;
        let log = guard.0.as_mut().unwrap();
        log.high_watermark = value.clamp(log.log_start_offset, log.log_end_offset());
        Ok(())
    }
    #[getter]
    fn recovery_point(&self, py: Python<'_>) -> PyResult<i64> {
        Ok(self.lock_attached(py)?.0.as_ref().unwrap().recovery_point)
    }
    #[getter]
    fn size_bytes(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.lock_attached(py)?.0.as_ref().unwrap().size_bytes())
    }
    #[getter]
    fn segment_count(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.lock_attached(py)?.0.as_ref().unwrap().segment_count())
    }
    #[getter]
    fn latest_epoch(&self, py: Python<'_>) -> PyResult<i32> {
        Ok(self.lock_attached(py)?.0.as_ref().unwrap().latest_epoch())
    }
    /// Why a sync of this log failed (on the flusher's thread or in a flush), if one did: the
    /// log then refuses appends and flushes until it is opened again.
    #[getter]
    fn sync_failure(&self, py: Python<'_>) -> PyResult<Option<String>> {
        Ok(self.lock_attached(py)?.0.as_ref().unwrap().sync_failure().map(str::to_owned))
    }
    /// What opening the log repaired (torn tails, rebuilt indexes), for the log file.
    #[getter]
    fn repairs(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        Ok(self.lock_attached(py)?.0.as_ref().unwrap().repairs.clone())
    }

    /// Replaces the Kafka-named settings this log uses (retention, segment size, ...).
    fn reconfigure(&self, py: Python<'_>, config: &Bound<'_, PyDict>) -> PyResult<()> {
        let config = log_config(Some(config))?;
        self.lock_attached(py)?.0.as_mut().unwrap().config = config;
        Ok(())
    }

    /// Fsyncs all unflushed data and moves the recovery point to the log end.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.flush_unheld(py, now_ms())
    }

    /// Flushes if `flush.ms` has passed since the last flush; returns whether it did.
    #[pyo3(signature = (now_ms = None))]
    fn flush_if_due(&self, py: Python<'_>, now_ms: Option<i64>) -> PyResult<bool> {
        let now = now_ms.unwrap_or_else(self::now_ms);
        let due = py.detach(|| self.lock().map(|log| log.0.as_ref().unwrap().flush_ms_passed(now)))?;
        if due {
            self.flush_unheld(py, now)?;
        }
        Ok(due)
    }

    /// Starts a new segment now (if the active one holds anything).
    fn roll(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |log| log.roll(now_ms()))
    }

    /// (base offset of the batch, its bytes) of the first batch with a record at or after
    /// `timestamp`; None when every record is older.
    fn batch_for_timestamp<'py>(&self, py: Python<'py>, timestamp: i64) -> PyResult<Option<(i64, Bound<'py, PyBytes>)>> {
        let found = self.with(py, |log| log.batch_for_timestamp(timestamp))?;
        Ok(found.map(|(offset, bytes)| (offset, PyBytes::new(py, &bytes))))
    }

    /// (max timestamp, offset of the last record of the batch holding it), or (-1, -1).
    fn max_timestamp(&self, py: Python<'_>) -> PyResult<(i64, i64)> {
        self.with(py, |log| Ok(log.max_timestamp()))
    }

    /// DeleteRecords: advances the log start offset (up to the high watermark); returns it.
    fn delete_records(&self, py: Python<'_>, offset: i64) -> PyResult<i64> {
        self.with(py, |log| log.delete_records_before(offset))
    }

    /// Deletes segments past retention.ms / retention.bytes; returns how many.
    #[pyo3(signature = (now_ms = None))]
    fn apply_retention(&self, py: Python<'_>, now_ms: Option<i64>) -> PyResult<usize> {
        let now = now_ms.unwrap_or_else(self::now_ms);
        self.with(py, |log| log.apply_retention(now))
    }

    /// One compaction pass when the log is compacted and dirty enough; returns what it did
    /// (segments, bytes_read, bytes_written, records_removed) or None. It maps at most
    /// `max_keys` keys of the dirty part, and cleans as far as they cover.
    #[pyo3(signature = (now_ms = None, max_keys = None))]
    fn clean(&self, py: Python<'_>, now_ms: Option<i64>, max_keys: Option<usize>) -> PyResult<Option<(usize, u64, u64, u64)>> {
        let now = now_ms.unwrap_or_else(self::now_ms);
        // The log is held to plan the pass and, in steps of about CLEAN_STEP, to put its output
        // in place, not while it reads and rewrites sealed segments: appends, fetches and the
        // getters of this partition go on meanwhile. Held for the whole pass, a pass over 300 MB
        // stopped a loop that produced to the partition for 140 ms.
        let stats = py.detach(|| {
            let _one_pass_at_a_time = self.cleaning.lock().unwrap_or_else(|p| p.into_inner());
            if self.cleaning_stopped.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let Some(plan) = self.lock()?.0.as_ref().unwrap().plan_clean(now) else { return Ok(None) };
            let plan = plan.with_max_keys(max_keys.unwrap_or(usize::MAX));
            let planned_at = plan.generation();
            let mut output = match plan.run_until(&self.cleaning_stopped) {
                Ok(Some(output)) => output,
                Ok(None) => return Ok(None),
                // Retention or a truncation took a planned segment away under the pass.
                Err(_) if self.lock()?.0.as_ref().unwrap().generation() != planned_at => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            loop {
                if self.cleaning_stopped.load(Ordering::Relaxed) {
                    output.discard();
                    return Ok(None);
                }
                let (step, retired) = match self.lock() {
                    Ok(mut guard) => {
                        let log = guard.0.as_mut().unwrap();
                        let step = log.finish_clean_step(&mut output, now, Some(Instant::now() + CLEAN_STEP));
                        (step.map_err(PyErr::from), log.take_retired())
                    }
                    // A close between the check above and this lock.
                    Err(_) if self.cleaning_stopped.load(Ordering::Relaxed) => {
                        output.discard();
                        return Ok(None);
                    }
                    Err(e) => (Err(e), Vec::new()),
                };
                // The step's directory fsync, the unlinks of the files it retired and the pass's
                // checkpoint happen with the log let go; after a failed step the retired files are
                // left for the next open.
                let step = step.and_then(|step| match output.settle_step(&step, retired) {
                    Ok(()) => Ok(step),
                    Err(e) => Err(self.settle_failed(&output, e)),
                });
                match step {
                    Ok(CleanStep::Done(stats)) => return Ok(stats),
                    // The mutex is not fair: without a pause, this thread would take it again
                    // before a waiter woken by its release.
                    Ok(CleanStep::More) => std::thread::sleep(CLEAN_STEP_PAUSE),
                    Err(e) => {
                        output.discard();
                        return Err(e);
                    }
                }
            }
        })?;
        Ok(stats.map(|s| (s.segments, s.bytes_read, s.bytes_written, s.records_removed)))
    }

    /// Removes every record at or after `offset`.
    fn truncate_to(&self, py: Python<'_>, offset: i64) -> PyResult<()> {
        self.with(py, |log| log.truncate_to(offset))
    }

    /// OffsetForLeaderEpoch: (largest known epoch <= `epoch`, the offset where it ends).
    fn end_offset_for_epoch(&self, py: Python<'_>, epoch: i32) -> PyResult<(i32, i64)> {
        self.with(py, |log| Ok(log.end_offset_for_epoch(epoch)))
    }

    /// Gives up a compaction pass under way (at its next batch) and every later one: for a
    /// broker that stops, which would otherwise wait for the pass.
    fn stop_cleaning(&self) {
        self.cleaning_stopped.store(true, Ordering::Relaxed);
    }

    /// Flushes and closes; later calls raise. A compaction pass under way is given up.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.cleaning_stopped.store(true, Ordering::Relaxed);
        py.detach(|| {
            let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(mut log) = guard.take() {
                log.close(now_ms())?;
            }
            Ok::<(), CoreError>(())
        })?;
        Ok(())
    }

    /// Closes the log and deletes its directory. A compaction pass under way is given up, and
    /// waited for (it writes files there with the log let go) until it has removed them.
    fn delete(&self, py: Python<'_>) -> PyResult<()> {
        self.cleaning_stopped.store(true, Ordering::Relaxed);
        py.detach(|| {
            let _no_pass = self.cleaning.lock().unwrap_or_else(|p| p.into_inner());
            let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(log) = guard.take() {
                log.delete()?;
            }
            Ok::<(), CoreError>(())
        })?;
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("Log({:?})", self.path)
    }
}

/// The logs of every topic's partitions by name, for requests handled wholly in Rust. The
/// Python log manager keeps it in step with its topics.
#[pyclass(frozen, module = "fastlog._core")]
struct PartitionTable {
    topics: RwLock<HashMap<String, Vec<Py<Log>>>>,
    /// In a cluster: topics other brokers host, with their partition counts.
    elsewhere: RwLock<HashMap<String, i32>>,
    /// In a cluster: this broker's role for each partition it holds, by topic and partition.
    roles: RwLock<HashMap<String, Vec<Option<produce::Role>>>>,
    /// In a cluster, a partition whose role is not set yet (its logs just opened) is not led
    /// here; alone, every partition is.
    unset_is_follower: std::sync::atomic::AtomicBool,
}

impl produce::Partitions for PartitionTable {
    fn with_log<T>(
        &self,
        topic: &str,
        index: i32,
        f: impl FnOnce(&mut PartitionLog) -> Result<T, CoreError>,
    ) -> Option<Result<T, CoreError>> {
        // The table is let go before the wait for the log: a writer queued behind the read lock
        // (a topic created or deleted) would otherwise hold up every partition's produce until
        // this one's fsync or cleaner pass ends.
        let shared = {
            let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
            let log = topics.get(topic)?.get(usize::try_from(index).ok()?)?.get();
            Arc::clone(&log.inner)
        };
        let mut guard = shared.lock().unwrap_or_else(|p| p.into_inner());
        Some(match guard.as_mut() {
            Some(log) => {
                let result = f(log);
                if log.take_rolled() {
                    flusher::after_roll(&shared, log);
                }
                result
            }
            None => Err(CoreError::io(
                format!("log of {topic}-{index}"),
                std::io::Error::other("the log is closed"),
            )),
        })
    }

    fn hosted_elsewhere(&self, topic: &str, index: i32) -> bool {
        let elsewhere = self.elsewhere.read().unwrap_or_else(|p| p.into_inner());
        elsewhere.get(topic).is_some_and(|count| (0..*count).contains(&index))
    }

    fn role(&self, topic: &str, index: i32, default: produce::Role) -> produce::Role {
        let roles = self.roles.read().unwrap_or_else(|p| p.into_inner());
        let set = roles.get(topic).and_then(|r| r.get(usize::try_from(index).ok()?).copied().flatten());
        let unset = if self.unset_is_follower.load(std::sync::atomic::Ordering::Relaxed) {
            produce::Role { kind: produce::RoleKind::NotLeader, ..default }
        } else {
            default
        };
        set.unwrap_or(unset)
    }
}

#[pymethods]
impl PartitionTable {
    #[new]
    fn new() -> Self {
        PartitionTable {
            topics: RwLock::new(HashMap::new()),
            elsewhere: RwLock::new(HashMap::new()),
            roles: RwLock::new(HashMap::new()),
            unset_is_follower: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// In a cluster: partitions without a role set are not led here (Produce answers
    /// NOT_LEADER_OR_FOLLOWER until the replica manager says otherwise).
    fn set_cluster_mode(&self) {
        self.unset_is_follower.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets this broker's role for a partition: `kind` "alone" (the only replica), "leader"
    /// (of followers: the high watermark is moved from Python) or "follower" (Produce answers
    /// NOT_LEADER_OR_FOLLOWER); `isr_short` refuses acks=all with NOT_ENOUGH_REPLICAS.
    fn set_role(&self, topic: String, index: usize, leader_epoch: i32, kind: &str, isr_short: bool) -> PyResult<()> {
        let kind = match kind {
            "alone" => produce::RoleKind::Alone,
            "leader" => produce::RoleKind::Leader,
            "follower" => produce::RoleKind::NotLeader,
            other => return Err(pyo3::exceptions::PyValueError::new_err(format!("unknown partition role {other:?}"))),
        };
        let mut roles = self.roles.write().unwrap_or_else(|p| p.into_inner());
        let partitions = roles.entry(topic).or_default();
        if partitions.len() <= index {
            partitions.resize(index + 1, None);
        }
        partitions[index] = Some(produce::Role { leader_epoch, kind, isr_short });
        Ok(())
    }

    /// Forgets the roles of `topic`'s partitions.
    fn clear_roles(&self, topic: &str) {
        self.roles.write().unwrap_or_else(|p| p.into_inner()).remove(topic);
    }

    /// Replaces the set of topics (name -> partition count) that other brokers host.
    fn set_hosted_elsewhere(&self, topics: HashMap<String, i32>) {
        *self.elsewhere.write().unwrap_or_else(|p| p.into_inner()) = topics;
    }

    /// Sets (or replaces) the logs of `topic`'s partitions, in partition order. The lock is
    /// waited for without the GIL: a reader may hold it through an fsync.
    fn set_topic(&self, py: Python<'_>, topic: String, logs: Vec<Py<Log>>) {
        let replaced = py.detach(|| self.topics.write().unwrap_or_else(|p| p.into_inner()).insert(topic, logs));
        drop(replaced); // with the GIL again
    }

    fn remove_topic(&self, py: Python<'_>, topic: &str) {
        let removed = py.detach(|| self.topics.write().unwrap_or_else(|p| p.into_inner()).remove(topic));
        drop(removed);
    }

    /// The per-partition gauges of `/metrics` in Prometheus' text format: topics by name,
    /// partitions in order, closed logs left out. The logs are read and the text written with
    /// the GIL released and the table unlocked, so a log busy with an fsync or a cleaner pass
    /// delays the scrape and nothing else.
    fn metrics_text<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let mut logs: Vec<(String, Vec<Py<Log>>)> = {
            // Never waited for with the GIL held: a writer queued behind an fsync would stop
            // every loop's Python until that fsync ends.
            let topics = loop {
                match self.topics.try_read() {
                    Ok(topics) => break topics,
                    Err(TryLockError::Poisoned(p)) => break p.into_inner(),
                    Err(TryLockError::WouldBlock) => py.detach(|| std::thread::sleep(Duration::from_micros(200))),
                }
            };
            topics.iter().map(|(name, logs)| (name.clone(), logs.iter().map(|log| log.clone_ref(py)).collect())).collect()
        };
        logs.sort_by(|a, b| a.0.cmp(&b.0));
        let text = py.detach(|| {
            let mut rows = Vec::new();
            for (name, partitions) in &logs {
                for (index, log) in partitions.iter().enumerate() {
                    let guard = log.get().inner.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(log) = guard.as_ref() {
                        rows.push((name.as_str(), index, partition_metrics::PartitionGauges {
                            size_bytes: log.size_bytes(),
                            log_end_offset: log.log_end_offset(),
                            high_watermark: log.high_watermark,
                            log_start_offset: log.log_start_offset,
                            segments: log.segment_count(),
                            recovery_point: log.recovery_point,
                            sync_failed: log.sync_failed(),
                        }));
                    }
                }
            }
            partition_metrics::render(&rows)
        });
        drop(logs);
        PyBytes::new(py, text.as_bytes())
    }

    /// Handles a Produce request frame (without its size prefix) of a version in `versions`:
    /// decodes it and appends every partition's batches with the GIL released. None when the
    /// frame is not one this path decodes (the caller's codec then answers it).
    /// `may_write`, when given, is asked once per topic of the request (with the GIL held,
    /// before anything is appended) whether the client may write it: the ACLs' check.
    /// `verify_txn`, when given, is asked for each partition a transactional request writes
    /// (transactional id, producer id, epoch, topic, partition) for the Kafka error code that
    /// refuses the write, 0 to let it through (KIP-890's verification), or a negative number:
    /// the frame is declined (None) for the Python path, which asks a remote coordinator.
    #[pyo3(signature = (frame, versions, leader_epoch = 0, now_ms = None, may_write = None, verify_txn = None))]
    #[allow(clippy::too_many_arguments)]
    fn produce(
        &self,
        py: Python<'_>,
        frame: &Bound<'_, PyAny>,
        versions: (i16, i16),
        leader_epoch: i32,
        now_ms: Option<i64>,
        may_write: Option<&Bound<'_, PyAny>>,
        verify_txn: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Produced>> {
        let now = now_ms.unwrap_or_else(self::now_ms);
        let produced = if let Ok(bytes) = frame.cast::<PyBytes>() {
            let data = bytes.as_bytes();
            let Some(denied) = denied_topics(data, versions, may_write)? else { return Ok(None) };
            let unverified = unverified_writes(data, versions, verify_txn)?;
            if unverified.iter().any(|(_, _, code)| *code < 0) {
                return Ok(None); // a coordinator elsewhere must be asked: the Python path does
            }
            py.detach(|| produce::handle_refusing(data, versions, self, leader_epoch, now, &denied, &unverified))
        } else if let Ok(array) = frame.cast::<PyByteArray>() {
            // SAFETY: the server hands over a frame buffer that nothing else references, so no
            // Python code can resize or write it while the GIL is released (nor `may_write`,
            // which is only given topic names).
            let data = unsafe { array.as_bytes() };
            let Some(denied) = denied_topics(data, versions, may_write)? else { return Ok(None) };
            let unverified = unverified_writes(data, versions, verify_txn)?;
            if unverified.iter().any(|(_, _, code)| *code < 0) {
                return Ok(None);
            }
            py.detach(|| produce::handle_refusing(data, versions, self, leader_epoch, now, &denied, &unverified))
        } else {
            return Err(pyo3::exceptions::PyTypeError::new_err("a Produce frame must be bytes or bytearray"));
        };
        Ok(produced.map(|inner| Produced { inner }))
    }
}

/// The topics of a Produce frame `may_write` refuses (none without it); None when the frame
/// is one the fast path declines.
fn denied_topics(frame: &[u8], versions: (i16, i16), may_write: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<String>>> {
    let Some(may_write) = may_write else { return Ok(Some(Vec::new())) };
    let Some(names) = produce::topic_names(frame, versions) else { return Ok(None) };
    let mut denied = Vec::new();
    for name in names {
        if !may_write.call1((name.as_str(),))?.is_truthy()? && !denied.contains(&name) {
            denied.push(name);
        }
    }
    Ok(Some(denied))
}

/// The partitions of a transactional Produce frame that `verify_txn` refuses: (topic,
/// partition, error code).
fn unverified_writes(frame: &[u8], versions: (i16, i16), verify_txn: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<(String, i32, i16)>> {
    let Some(verify_txn) = verify_txn else { return Ok(Vec::new()) };
    let Some((id, writes)) = produce::transactional_writes(frame, versions) else { return Ok(Vec::new()) };
    let mut refused = Vec::new();
    for (topic, index, producer_id, epoch) in writes {
        let code: i16 = verify_txn.call1((id.as_str(), producer_id, epoch, topic.as_str(), index))?.extract()?;
        if code != 0 {
            refused.push((topic, index, code));
        }
    }
    Ok(refused)
}

/// A Produce request whose batches are appended (`PartitionTable.produce`).
#[pyclass(module = "fastlog._core")]
struct Produced {
    inner: produce::Produced,
}

#[pymethods]
impl Produced {
    /// [(topic, partition)] that got records.
    #[getter]
    fn appended(&self) -> Vec<(String, i32)> {
        self.inner.appended.clone()
    }
    /// [(topic, records, bytes)] appended.
    #[getter]
    fn per_topic(&self) -> Vec<(String, i64, u64)> {
        self.inner.per_topic.clone()
    }
    /// [(topic, partition, Kafka error code, why)] refused.
    #[getter]
    fn refused(&self) -> Vec<(String, i32, i16, String)> {
        self.inner.refused.clone()
    }
    /// [(topic, partition, offset)]: led partitions whose acks=all answer waits until the
    /// high watermark reaches `offset`.
    #[getter]
    fn awaiting_replicas(&self) -> Vec<(String, i32, i64)> {
        self.inner.awaiting_replicas.clone()
    }
    /// The request's timeout_ms.
    #[getter]
    fn timeout_ms(&self) -> i32 {
        self.inner.timeout_ms
    }
    /// Answers a partition with `error_code` instead of its append's offsets.
    fn fail(&mut self, topic: &str, index: i32, error_code: i16) {
        self.inner.fail(topic, index, error_code);
    }
    /// Whether `flush` must run before the response is sent (`flush.messages` reached).
    #[getter]
    fn needs_flush(&self) -> bool {
        self.inner.needs_flush()
    }
    /// Fsyncs the partitions that need it, with the GIL released (call it from a worker thread).
    fn flush(&mut self, py: Python<'_>, table: &PartitionTable) {
        let inner = &mut self.inner;
        py.detach(|| inner.flush(table, now_ms()));
    }
    /// The response frame (size prefix included), or None for acks=0.
    fn response<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.inner.response().map(|r| PyBytes::new(py, &r))
    }
}

/// Caps how many segment files stay open across all logs.
#[pyfunction]
fn set_open_file_limit(limit: usize) {
    files::set_capacity(limit);
}

#[pyfunction]
fn open_file_count() -> usize {
    files::open_count()
}

/// How many sealed segments' index files are memory-mapped now (capped process-wide).
#[pyfunction]
fn mapped_index_count() -> usize {
    files::mapped_count()
}

/// How many logs of this process have noted a failed sync since it started: the broker looks
/// for them (`Log.sync_failure`) only when this moved.
#[pyfunction]
fn sync_failure_count() -> u64 {
    crate::log::SYNC_FAILURES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Writes a Kafka offset checkpoint file atomically (temp file, fsync, rename, fsync dir).
#[pyfunction]
fn write_checkpoint(py: Python<'_>, path: PathBuf, lines: Vec<String>) -> PyResult<()> {
    py.detach(|| checkpoint::write(&path, &lines))?;
    Ok(())
}

/// Reads a Kafka offset checkpoint file's entry lines ([] when the file does not exist).
#[pyfunction]
fn read_checkpoint(py: Python<'_>, path: PathBuf) -> PyResult<Vec<String>> {
    Ok(py.detach(|| checkpoint::read(&path))?)
}

/// One node of a cluster's metadata quorum (raft-rs, its log in `dir`); the Python controller
/// drives it: `tick` on a clock, `step` with peers' messages, `ready` for what to send and apply.
#[pyclass(frozen, module = "fastlog._core")]
struct MetadataQuorum {
    inner: Mutex<Quorum>,
}

impl MetadataQuorum {
    fn quorum(&self) -> MutexGuard<'_, Quorum> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl MetadataQuorum {
    #[new]
    fn new(py: Python<'_>, node_id: u64, voters: Vec<u64>, dir: PathBuf) -> PyResult<Self> {
        let quorum = py.detach(|| Quorum::open(node_id, &voters, &dir))?;
        Ok(MetadataQuorum { inner: Mutex::new(quorum) })
    }

    fn tick(&self) {
        self.quorum().tick();
    }

    /// Hands a peer's encoded raft message to the state machine.
    fn step(&self, message: &[u8]) -> PyResult<()> {
        Ok(self.quorum().step(message)?)
    }

    /// Appends `data` to the metadata log; ValueError unless this node leads.
    fn propose(&self, data: Vec<u8>) -> PyResult<()> {
        Ok(self.quorum().propose(data)?)
    }

    /// Persists (and fsyncs) what raft asks, then returns ([(peer id, message)], [(index, data)],
    /// (index, data) or None): the messages to send, the entries committed since the last call,
    /// and a snapshot from the leader to load before those entries.
    #[allow(clippy::type_complexity)]
    fn ready<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Vec<(u64, Bound<'py, PyBytes>)>, Vec<(u64, Bound<'py, PyBytes>)>, Option<(u64, Bound<'py, PyBytes>)>)> {
        let out = py.detach(|| self.quorum().ready())?;
        let bytes = |items: Vec<(u64, Vec<u8>)>| items.into_iter().map(|(n, b)| (n, PyBytes::new(py, &b))).collect();
        let snapshot = out.snapshot.map(|(index, data)| (index, PyBytes::new(py, &data)));
        Ok((bytes(out.messages), bytes(out.committed), snapshot))
    }

    /// The snapshot the log starts from, (index, data), or None.
    #[getter]
    fn snapshot<'py>(&self, py: Python<'py>) -> Option<(u64, Bound<'py, PyBytes>)> {
        self.quorum().snapshot().map(|(index, data)| (index, PyBytes::new(py, &data)))
    }

    /// Makes `data` (the whole state as of applied index `index`) the start of the log: the
    /// entries before it leave the write-ahead file (fsynced, with the GIL released).
    fn compact(&self, py: Python<'_>, index: u64, data: Vec<u8>) -> PyResult<()> {
        Ok(py.detach(|| self.quorum().compact(index, data))?)
    }

    /// For observers: ([(index, data)], index read up to) of the committed entries after
    /// `after` (about `max_bytes` at most), or None when `after` precedes the snapshot.
    #[allow(clippy::type_complexity)]
    fn committed_after<'py>(&self, py: Python<'py>, after: u64, max_bytes: u64) -> PyResult<Option<(Vec<(u64, Bound<'py, PyBytes>)>, u64)>> {
        let read = py.detach(|| self.quorum().committed_after(after, max_bytes))?;
        Ok(read.map(|(entries, upto)| (entries.into_iter().map(|(n, b)| (n, PyBytes::new(py, &b))).collect(), upto)))
    }

    #[getter]
    fn leader_id(&self) -> u64 {
        self.quorum().leader_id()
    }

    #[getter]
    fn term(&self) -> u64 {
        self.quorum().term()
    }

    #[getter]
    fn is_leader(&self) -> bool {
        self.quorum().is_leader()
    }

    /// The index up to which the metadata log is committed.
    #[getter]
    fn commit_index(&self) -> u64 {
        self.quorum().commit_index()
    }

    /// [(voter, last log index known on it)]: complete on the leader; elsewhere 0 for others.
    #[getter]
    fn voter_progress(&self) -> Vec<(u64, u64)> {
        self.quorum().voter_progress()
    }

    /// On the leader, the voters heard from within the last election timeout; else [].
    #[getter]
    fn active_voters(&self) -> Vec<u64> {
        self.quorum().active_voters()
    }
}

// The shared classes keep their state behind Mutexes (frozen pyclasses) and hold no Python
// state across a released GIL; the per-request `Produced` is guarded by PyO3's borrow flag. So a
// free-threaded CPython may call this module from several threads without turning the GIL on.
#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("CorruptRecordError", py.get_type::<CorruptRecordError>())?;
    m.add("RecordTooLargeError", py.get_type::<RecordTooLargeError>())?;
    m.add("OffsetOutOfRangeError", py.get_type::<OffsetOutOfRangeError>())?;
    m.add("LogIOError", py.get_type::<LogIOError>())?;
    m.add("OutOfOrderSequenceError", py.get_type::<OutOfOrderSequenceError>())?;
    m.add("InvalidProducerEpochError", py.get_type::<InvalidProducerEpochError>())?;
    m.add("CoordinatorFencedError", py.get_type::<CoordinatorFencedError>())?;
    m.add("UnknownProducerIdError", py.get_type::<UnknownProducerIdError>())?;
    m.add("InvalidRecordError", py.get_type::<InvalidRecordError>())?;
    m.add_function(wrap_pyfunction!(crc32c_of, m)?)?;
    m.add_function(wrap_pyfunction!(validate_batches, m)?)?;
    m.add_function(wrap_pyfunction!(schema_ids, m)?)?;
    m.add_function(wrap_pyfunction!(assign_offsets, m)?)?;
    m.add_function(wrap_pyfunction!(set_open_file_limit, m)?)?;
    m.add_function(wrap_pyfunction!(open_file_count, m)?)?;
    m.add_function(wrap_pyfunction!(mapped_index_count, m)?)?;
    m.add_function(wrap_pyfunction!(sync_failure_count, m)?)?;
    m.add_function(wrap_pyfunction!(write_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(read_checkpoint, m)?)?;
    m.add_class::<Log>()?;
    m.add_class::<FileSlice>()?;
    m.add_class::<PartitionTable>()?;
    m.add_class::<Produced>()?;
    m.add_class::<MetadataQuorum>()?;
    Ok(())
}
