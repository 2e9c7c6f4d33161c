//! Kafka's offset checkpoint files (`recovery-point-offset-checkpoint`,
//! `log-start-offset-checkpoint`, `leader-epoch-checkpoint`): a version line, a count line, then
//! one entry a line. Written to a temp file, fsynced, renamed over the old one, and the directory
//! fsynced, so a crash leaves the old or the new file, never a mix.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{CoreError, Result};

/// Writes `lines` (entries already formatted) under version 0.
pub fn write(path: &Path, lines: &[String]) -> Result<()> {
    write_with(path, lines, true)
}

/// `write`, with the fsyncs of the file and its directory only when `sync`: a caller that
/// skips them must write the file again with `sync` before it relies on it surviving a crash.
pub fn write_with(path: &Path, lines: &[String], sync: bool) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut text = format!("0\n{}\n", lines.len());
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    let ctx = |op: &str| format!("{op} checkpoint {}", path.display());
    let mut file = File::create(&tmp).map_err(|e| CoreError::io(ctx("create"), e))?;
    file.write_all(text.as_bytes())
        .and_then(|_| if sync { file.sync_all() } else { Ok(()) })
        .map_err(|e| CoreError::io(ctx("write"), e))?;
    fs::rename(&tmp, path).map_err(|e| CoreError::io(ctx("rename"), e))?;
    if let (true, Some(dir)) = (sync, path.parent()) {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads the entry lines; a missing file reads as no entries, a malformed one is an error.
pub fn read(path: &Path) -> Result<Vec<String>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CoreError::io(format!("read checkpoint {}", path.display()), e)),
    };
    let bad = |why: &str| CoreError::InvalidArgument(format!("malformed checkpoint {}: {why}", path.display()));
    let mut lines = text.lines();
    if lines.next() != Some("0") {
        return Err(bad("unknown version"));
    }
    let count: usize = lines.next().and_then(|l| l.trim().parse().ok()).ok_or_else(|| bad("no entry count"))?;
    let entries: Vec<String> = lines.filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
    if entries.len() != count {
        return Err(bad("entry count does not match"));
    }
    Ok(entries)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CoreError::io(format!("fsync directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recovery-point-offset-checkpoint");
        assert!(read(&path).unwrap().is_empty());
        write(&path, &["t 0 42".into(), "t 1 7".into()]).unwrap();
        assert_eq!(read(&path).unwrap(), vec!["t 0 42".to_string(), "t 1 7".to_string()]);
        fs::write(&path, "0\n3\na 0 1\n").unwrap();
        assert!(read(&path).is_err());
    }
}
