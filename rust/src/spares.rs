//! Empty files made ahead of a segment roll, off the append path.
//!
//! A roll creates the new segment's three files and a producer snapshot with the partition
//! held. On this project's ext4 VM a create took about 0.3 ms and a rename 0.02 ms, so the
//! creates were most of a roll's median (`bench/bench_roll.py`). After each roll a thread of
//! their own (`make_soon`) makes one empty file of each kind in the partition's directory, and
//! the next roll renames them into place. A roll that finds none creates its files as before.
//! Spares are never written; an open keeps the empty ones a stop left, for its first roll.
//!
//! With `preallocate`, the log spare's first blocks are reserved there too (`fallocate` with
//! KEEP_SIZE: the file stays empty), so that a new segment's first reservations, which may wait
//! for ext4's allocator to read block bitmaps, are not made on the append path.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// The files a roll makes, by the suffix they take: the segment's three and its snapshot.
pub const KINDS: [&str; 4] = [".log", ".index", ".timeindex", ".snapshot.tmp"];

/// Ends the name of a spare (`log.spare`, `index.spare`, ...): no segment file ends so.
const SUFFIX: &str = ".spare";

pub struct Spares {
    dir: PathBuf,
    /// Set once the log closes or its directory is to be deleted: no spare is made there after,
    /// so that none lands in it while it is removed. `make` holds it throughout, so that
    /// `take` can tell when one is under way.
    retired: Mutex<bool>,
    /// In the spares' queue: a partition waits there once however often it rolls meanwhile.
    queued: AtomicBool,
    /// Bytes of the log spare's blocks to reserve (`preallocate`); 0: none.
    reserve: AtomicU64,
}

impl Spares {
    pub fn new(dir: &Path) -> Self {
        Spares { dir: dir.to_path_buf(), retired: Mutex::new(false), queued: AtomicBool::new(false), reserve: AtomicU64::new(0) }
    }

    fn path(&self, kind: &str) -> PathBuf {
        self.dir.join(format!("{}{SUFFIX}", kind.trim_start_matches('.')))
    }

    /// Makes the spares that are missing. A failure (a full disk) leaves the next roll to
    /// create its files itself.
    pub fn make(&self) {
        self.queued.store(false, Ordering::Release);
        let retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        if *retired {
            return;
        }
        for kind in KINDS {
            let made = OpenOptions::new().write(true).create_new(true).open(self.path(kind));
            if let (".log", Ok(file)) = (kind, made) {
                reserve(&file, self.reserve.load(Ordering::Acquire));
            }
        }
    }

    /// How much of the log spare's blocks `make` reserves from now on (0: none).
    pub fn set_reserve(&self, bytes: u64) {
        self.reserve.store(bytes, Ordering::Release);
    }

    /// Renames the spare of `kind` to `target`, and gives its metadata (its blocks: what was
    /// reserved); None when there is none to take. Only an empty regular file goes in place
    /// (not a directory or file someone put there by hand). None while a `make` is under way:
    /// the rename would wait for its reservation (both take the inode's lock), or leave the
    /// reservation to run on an active segment.
    pub fn take(&self, kind: &str, target: &Path) -> Option<fs::Metadata> {
        let _not_making = self.retired.try_lock().ok()?;
        let spare = self.path(kind);
        let meta = fs::symlink_metadata(&spare).ok().filter(|m| m.is_file() && m.len() == 0)?;
        fs::rename(spare, target).ok()?;
        Some(meta)
    }

    /// As the log closes or its directory is deleted: waits for a `make` under way, and stops
    /// later ones.
    pub fn retire(&self) {
        *self.retired.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }
}

/// Reserves `bytes` of `file`'s blocks without changing its size. Best effort: a filesystem
/// that cannot (or a full disk) leaves the segment's appends to reserve as they go.
fn reserve(file: &File, bytes: u64) {
    if bytes > 0 {
        // SAFETY: fallocate reads no memory of ours; the descriptor is open for writing.
        let _ = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, bytes as libc::off_t) };
    }
}

/// Queues `spares` to be made on the spares' thread, started on first use. It holds them
/// weakly: a log closed meanwhile gets none.
/// `reserve`: bytes of the log spare's blocks to reserve (`preallocate`; 0: none).
pub fn make_soon(spares: &Arc<Spares>, reserve: u64) {
    spares.set_reserve(reserve);
    static QUEUE: OnceLock<Sender<Weak<Spares>>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Weak<Spares>>();
        // Without the thread, sends fail and rolls create their files.
        let _ = std::thread::Builder::new().name("fastlog-spares".into()).spawn(move || {
            for spares in receiver {
                if let Some(spares) = spares.upgrade() {
                    spares.make();
                }
            }
        });
        sender
    });
    if !spares.queued.swap(true, Ordering::AcqRel) {
        let _ = queue.send(Arc::downgrade(spares));
    }
}

/// Whether a file of a partition's directory is a spare (which an open keeps when empty).
pub fn is_spare(name: &str) -> bool {
    name.ends_with(SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_are_made_once_taken_once_and_never_after_retirement() {
        let dir = tempfile::tempdir().unwrap();
        let spares = Spares::new(dir.path());
        assert!(spares.take(".log", &dir.path().join("0.log")).is_none(), "none made yet");
        spares.make();
        spares.make(); // the ones there stay as they are
        let mut names: Vec<String> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["index.spare", "log.spare", "snapshot.tmp.spare", "timeindex.spare"]);
        assert!(names.iter().all(|n| is_spare(n)));
        assert!(spares.take(".log", &dir.path().join("0.log")).is_some());
        assert!(spares.take(".log", &dir.path().join("1.log")).is_none(), "taken once");
        assert_eq!(fs::metadata(dir.path().join("0.log")).unwrap().len(), 0);
        // What is not an empty regular file stays where it is.
        fs::write(dir.path().join("log.spare"), b"x").unwrap();
        fs::remove_file(dir.path().join("timeindex.spare")).unwrap();
        fs::create_dir(dir.path().join("timeindex.spare")).unwrap();
        assert!(spares.take(".log", &dir.path().join("2.log")).is_none() && spares.take(".timeindex", &dir.path().join("2.timeindex")).is_none());
        assert!(!dir.path().join("2.log").exists() && !dir.path().join("2.timeindex").exists());
        spares.retire();
        fs::remove_file(dir.path().join("index.spare")).unwrap();
        spares.make();
        assert!(!dir.path().join("index.spare").exists(), "none made once retired");
    }
}
