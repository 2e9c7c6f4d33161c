//! Flushes the segments that rolls sealed, on a thread of its own, as Kafka's roll leaves the
//! flush of the old segment and of the producer snapshot to its scheduler. The append that
//! rolled used to fsync them itself with the partition held: 1.4-1.9 ms at the median and up
//! to 105 ms here, during which every produce and fetch of the partition waited.
//!
//! `flush_unheld` is also how the Python layer flushes (`flush.ms`, `flush.messages`, an
//! explicit flush): each log is held twice, briefly, to plan (which files) and to finish
//! (snapshots renamed in place, the recovery point moved), and the fsyncs run between.

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::checkpoint;
use crate::error::Result;
use crate::log::{delete_retired, FlushUpTo, PartitionLog};
use crate::spares;

/// A partition's log as the Python layer shares it (None once closed).
pub type SharedLog = Arc<Mutex<Option<PartitionLog>>>;
type WeakLog = Weak<Mutex<Option<PartitionLog>>>;

/// Queues `log` for a flush of its sealed segments (`flush_unheld` up to `Sealed`) on the
/// flusher's thread, started on first use. The queue holds the log weakly: a log closed and
/// dropped meanwhile is skipped.
pub fn after_roll(log: &SharedLog, rolled: &PartitionLog) {
    // The next roll's files, made on a thread of their own: fsyncs here can lag several rolls.
    spares::make_soon(&rolled.spares(), rolled.preallocate_ahead());
    static QUEUE: OnceLock<Sender<WeakLog>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<WeakLog>();
        // Without the thread, sends fail: flushes and clean stops still sync what rolls left.
        let _ = std::thread::Builder::new().name("fastlog-flusher".into()).spawn(move || {
            for log in receiver {
                if let Some(log) = log.upgrade() {
                    // A failed sync leaves the recovery point where it was and sticks to the
                    // log: its appends and flushes fail since. The broker finds it through
                    // `sync_failure`, logs it and takes the replica offline, as Kafka takes such
                    // a log's directory offline.
                    let _ = flush_unheld(&log, FlushUpTo::Sealed, 0);
                }
            }
        });
        sender
    });
    let _ = queue.send(Arc::downgrade(log));
}

/// Flushes `log` in three steps (see `PlannedFlush`), holding it only to plan and to finish.
pub fn flush_unheld(log: &SharedLog, upto: FlushUpTo, now_ms: i64) -> Result<()> {
    flush_in_steps(
        |step| {
            if let Some(log) = log.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                step(log);
            }
        },
        upto,
        now_ms,
    )
}

/// A flush in three steps through `with_log`, which runs a step on the log with it held (or
/// not at all when the log is gone, which ends the flush).
pub fn flush_in_steps(with_log: impl Fn(&mut dyn FnMut(&mut PartitionLog)), upto: FlushUpTo, now_ms: i64) -> Result<()> {
    let mut planned = None;
    with_log(&mut |log| planned = Some(log.plan_flush(upto)));
    let Some(flush) = planned.transpose()?.flatten() else { return Ok(()) };
    let dir = flush.dir().to_path_buf();
    if let Err(e) = flush.sync() {
        with_log(&mut |log| log.note_sync_failure(&e));
        return Err(e);
    }
    let (mut flush, mut finished) = (Some(flush), None);
    with_log(&mut |log| {
        if let Some(flush) = flush.take() {
            finished = Some(log.finish_flush(flush, now_ms).map(|placed| (placed, log.take_retired())));
        }
    });
    let Some((placed, retired)) = finished.transpose()? else { return Ok(()) };
    if placed {
        checkpoint::sync_dir(&dir)?; // the snapshots' renames
    }
    delete_retired(retired);
    Ok(())
}
