//! A process-wide cap on open segment files.
//!
//! Ten thousand partitions with a few segments each would exhaust file descriptors if every file
//! stayed open, so segment files are opened on demand and kept in a least-recently-used set of
//! bounded size. Callers hold an `Arc<File>`: evicting a file from the set never closes it under
//! a reader (a fetch being sent with `sendfile` keeps its descriptor until it is done).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{CoreError, Result};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static CAPACITY: AtomicUsize = AtomicUsize::new(1024);

struct OpenSet {
    tick: u64,
    files: HashMap<u64, (Arc<File>, u64)>,
}

static OPEN: Mutex<Option<OpenSet>> = Mutex::new(None);

/// A unique key for a file that may be opened through the cache.
pub fn new_file_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Sets how many segment files may stay open at once (at least 16).
pub fn set_capacity(capacity: usize) {
    CAPACITY.store(capacity.max(16), Ordering::Relaxed);
}

pub fn open_count() -> usize {
    OPEN.lock().map(|g| g.as_ref().map_or(0, |s| s.files.len())).unwrap_or(0)
}

/// The open file for `id`, opening `path` read-write when it is not in the set.
pub fn get(id: u64, path: &Path) -> Result<Arc<File>> {
    let mut guard = OPEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let set = guard.get_or_insert_with(|| OpenSet { tick: 0, files: HashMap::new() });
    set.tick += 1;
    let tick = set.tick;
    if let Some((file, used)) = set.files.get_mut(&id) {
        *used = tick;
        return Ok(file.clone());
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| CoreError::io(format!("open {}", path.display()), e))?;
    let file = Arc::new(file);
    if set.files.len() >= CAPACITY.load(Ordering::Relaxed) {
        if let Some(oldest) = set.files.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| *k) {
            set.files.remove(&oldest);
        }
    }
    set.files.insert(id, (file.clone(), tick));
    Ok(file)
}

/// Drops `id` from the set (its file is being deleted or truncated away).
pub fn forget(id: u64) {
    if let Ok(mut guard) = OPEN.lock() {
        if let Some(set) = guard.as_mut() {
            set.files.remove(&id);
        }
    }
}
