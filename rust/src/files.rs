//! Process-wide caps on open segment files and on memory-mapped index files.
//!
//! Ten thousand partitions with a few segments each would exhaust file descriptors (and the
//! kernel's limit on memory maps) if every file stayed open, so segment files are opened and
//! sealed segments' indexes mapped on demand, and kept in least-recently-used sets of bounded
//! size. Callers hold an `Arc`: evicting an entry never closes a file under a reader (a fetch
//! being sent with `sendfile` keeps its descriptor until it is done).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use memmap2::Mmap;

use crate::error::{CoreError, Result};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A least-recently-used set: `by_tick` orders entries by last use, so eviction is O(log n).
struct Lru<T> {
    capacity: usize,
    tick: u64,
    by_id: HashMap<u64, (T, u64)>,
    by_tick: BTreeMap<u64, u64>,
}

impl<T: Clone> Lru<T> {
    fn new(capacity: usize) -> Self {
        Lru { capacity, tick: 0, by_id: HashMap::new(), by_tick: BTreeMap::new() }
    }

    fn get(&mut self, id: u64) -> Option<T> {
        self.tick += 1;
        let tick = self.tick;
        let (value, used) = self.by_id.get_mut(&id)?;
        self.by_tick.remove(used);
        *used = tick;
        self.by_tick.insert(tick, id);
        Some(value.clone())
    }

    fn insert(&mut self, id: u64, value: T) {
        self.remove(id);
        self.shrink_to(self.capacity.saturating_sub(1));
        self.tick += 1;
        self.by_id.insert(id, (value, self.tick));
        self.by_tick.insert(self.tick, id);
    }

    fn remove(&mut self, id: u64) {
        if let Some((_, used)) = self.by_id.remove(&id) {
            self.by_tick.remove(&used);
        }
    }

    fn shrink_to(&mut self, size: usize) {
        while self.by_id.len() > size {
            let Some((_, oldest)) = self.by_tick.pop_first() else { break };
            self.by_id.remove(&oldest);
        }
    }
}

static FILES: Mutex<Option<Lru<Arc<File>>>> = Mutex::new(None);
static MAPS: Mutex<Option<Lru<Arc<Mmap>>>> = Mutex::new(None);
const DEFAULT_FILES: usize = 1024;
/// Two maps per sealed segment; the kernel allows 65,530 maps per process by default.
const DEFAULT_MAPS: usize = 16 * 1024;

fn with_set<T: Clone, R>(set: &Mutex<Option<Lru<T>>>, default: usize, f: impl FnOnce(&mut Lru<T>) -> R) -> R {
    let mut guard = set.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    f(guard.get_or_insert_with(|| Lru::new(default)))
}

/// A unique key for a segment whose files may be opened through the sets.
pub fn new_file_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Sets how many segment files may stay open at once (at least 16), closing the excess now.
pub fn set_capacity(capacity: usize) {
    with_set(&FILES, DEFAULT_FILES, |set| {
        set.capacity = capacity.max(16);
        set.shrink_to(set.capacity);
    });
}

pub fn open_count() -> usize {
    with_set(&FILES, DEFAULT_FILES, |set| set.by_id.len())
}

pub fn mapped_count() -> usize {
    with_set(&MAPS, DEFAULT_MAPS, |set| set.by_id.len())
}

/// The open file for `id`, opening `path` read-write when it is not in the set.
pub fn get(id: u64, path: &Path) -> Result<Arc<File>> {
    if let Some(file) = with_set(&FILES, DEFAULT_FILES, |set| set.get(id)) {
        return Ok(file);
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| CoreError::io(format!("open {}", path.display()), e))?;
    let file = Arc::new(file);
    with_set(&FILES, DEFAULT_FILES, |set| set.insert(id, file.clone()));
    Ok(file)
}

/// The read-only map of index file `path` (key `id`); None when the file is empty.
pub fn get_map(id: u64, path: &Path) -> Result<Option<Arc<Mmap>>> {
    if let Some(map) = with_set(&MAPS, DEFAULT_MAPS, |set| set.get(id)) {
        return Ok(Some(map));
    }
    let file = File::open(path).map_err(|e| CoreError::io(format!("open {}", path.display()), e))?;
    let len = file.metadata().map_err(|e| CoreError::io(format!("stat {}", path.display()), e))?.len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: index files of sealed segments are not written while mapped: a segment is
    // rewritten only after `forget` dropped its maps from the set, and readers holding an old
    // map keep the old inode's pages (files are replaced by rename or truncated only when
    // rebuilt at open, before any reader exists).
    let map = unsafe { Mmap::map(&file) }.map_err(|e| CoreError::io(format!("mmap {}", path.display()), e))?;
    let map = Arc::new(map);
    with_set(&MAPS, DEFAULT_MAPS, |set| set.insert(id, map.clone()));
    Ok(Some(map))
}

/// Drops everything held for segment `id` (its file and both index maps).
pub fn forget(id: u64) {
    with_set(&FILES, DEFAULT_FILES, |set| set.remove(id));
    with_set(&MAPS, DEFAULT_MAPS, |set| {
        set.remove(id * 2);
        set.remove(id * 2 + 1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut lru = Lru::new(3);
        for id in 0..3 {
            lru.insert(id, id);
        }
        assert_eq!(lru.get(0), Some(0));
        lru.insert(3, 3);
        assert_eq!(lru.get(1), None, "1 was the least recently used");
        assert_eq!(lru.get(0), Some(0));
        lru.capacity = 1;
        lru.shrink_to(1);
        assert_eq!(lru.by_id.len(), 1);
        assert_eq!(lru.get(0), Some(0));
    }
}
