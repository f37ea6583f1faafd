//! Private scratch folders inside the store, removed when dropped.
//!
//! A pull unpacks into its own folder under `<home>/tmp` (same filesystem as
//! `<home>/models`, so the final move is a rename) and the folder goes away
//! on success, on error and on unwinding alike. Only a killed process leaves
//! one behind; the next pull sweeps those once they are a day old.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::StoreError;

/// A name no other thread or process picks at the same time: pid, clock and
/// a per-process counter.
pub(crate) fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
}

/// Far longer than any pull takes, so a live pull's folder is never swept.
const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

impl ScratchDir {
    pub(crate) fn new_in(parent: &Path, prefix: &str) -> Result<Self, StoreError> {
        fs::create_dir_all(parent).map_err(StoreError::io(parent, "create"))?;
        sweep_stale(parent, prefix);
        loop {
            let path = parent.join(unique_name(prefix));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(ScratchDir { path }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::io(&path, "create")(e)),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Best effort: removes `<prefix>-*` folders left by killed processes.
fn sweep_stale(parent: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let named_like_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&format!("{prefix}-")));
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > STALE_AFTER);
        if named_like_ours && stale {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_dirs_are_distinct_and_removed_on_drop() {
        let home = tempfile::tempdir().unwrap();
        let a = ScratchDir::new_in(&home.path().join("tmp"), "pull").unwrap();
        let b = ScratchDir::new_in(&home.path().join("tmp"), "pull").unwrap();
        assert_ne!(a.path(), b.path());
        fs::write(a.path().join("f"), b"x").unwrap();
        let (pa, pb) = (a.path().to_path_buf(), b.path().to_path_buf());
        drop(a);
        assert!(!pa.exists());
        assert!(pb.exists());
    }

    #[test]
    fn folders_left_by_killed_pulls_are_swept_after_a_day() {
        let home = tempfile::tempdir().unwrap();
        let tmp = home.path().join("tmp");
        let old = ScratchDir::new_in(&tmp, "pull-m").unwrap();
        let recent = ScratchDir::new_in(&tmp, "pull-m").unwrap();
        let other = tmp.join("unrelated");
        fs::create_dir(&other).unwrap();
        let two_days_ago = SystemTime::now() - 2 * STALE_AFTER;
        for dir in [old.path(), other.as_path()] {
            fs::File::open(dir)
                .unwrap()
                .set_modified(two_days_ago)
                .unwrap();
        }
        let (old_path, recent_path) = (old.path().to_path_buf(), recent.path().to_path_buf());
        std::mem::forget(old); // as if its process had been killed
        let _new = ScratchDir::new_in(&tmp, "pull-m").unwrap();
        assert!(!old_path.exists());
        assert!(recent_path.exists());
        assert!(other.exists(), "only our own prefix is swept");
    }
}
