//! One install at a time per alias, across threads and processes.
//!
//! Racing pulls were already safe (each unpacks into its own scratch folder
//! and renames a verified file into place), but every one of them ran pip:
//! forty tests starting at once meant forty downloads of the same 98 MB. A
//! pull that finds no good copy therefore takes an exclusive lock on
//! `<home>/locks/<alias>.lock` and looks again before installing, so those
//! that waited find the file the first one installed.
//!
//! The lock is the operating system's advisory file lock (`flock` on Linux),
//! held by an open file description: two threads that each open the file
//! exclude each other just as two processes do, and a killed holder's lock
//! goes away with it. The lock file itself is never removed; removing it
//! would let a late opener lock an inode nobody else sees.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::error::StoreError;

/// Held while installing one alias; released when dropped (the file closes).
#[derive(Debug)]
pub(crate) struct InstallLock {
    _file: File,
}

impl InstallLock {
    /// Blocks until no other thread or process holds the alias's lock.
    pub(crate) fn acquire(locks_dir: &Path, alias: &str) -> Result<Self, StoreError> {
        fs::create_dir_all(locks_dir).map_err(StoreError::io(locks_dir, "create"))?;
        let path = lock_path(locks_dir, alias);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(StoreError::io(&path, "open the install lock"))?;
        file.lock()
            .map_err(StoreError::io(&path, "take the install lock"))?;
        Ok(InstallLock { _file: file })
    }
}

pub(crate) fn lock_path(locks_dir: &Path, alias: &str) -> PathBuf {
    locks_dir.join(format!("{alias}.lock"))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    use super::*;

    #[test]
    fn the_lock_file_is_named_after_the_alias_and_reusable() {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("locks");
        let first = InstallLock::acquire(&locks, "smollm2").unwrap();
        assert!(locks.join("smollm2.lock").is_file());
        drop(first);
        // Released on drop: taking it again does not block.
        let _again = InstallLock::acquire(&locks, "smollm2").unwrap();
        let _other = InstallLock::acquire(&locks, "other").unwrap();
    }

    #[test]
    fn a_lock_held_in_this_process_is_seen_by_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("locks");
        let held = InstallLock::acquire(&locks, "smollm2").unwrap();
        let path = lock_path(&locks, "smollm2");
        // `flock -n` fails at once (exit 1) when the lock is taken.
        let probe = || {
            Command::new("flock")
                .arg("-n")
                .arg(&path)
                .arg("true")
                .status()
                .unwrap()
        };
        assert!(!probe().success(), "another process got the held lock");
        drop(held);
        assert!(probe().success(), "the lock was not released on drop");
    }

    #[test]
    fn a_lock_held_by_another_process_makes_this_one_wait() {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("locks");
        fs::create_dir_all(&locks).unwrap();
        let path = lock_path(&locks, "smollm2");
        // The child takes the lock, says so, and holds it until its stdin
        // closes; then it writes the marker file and exits.
        let marker = dir.path().join("child-was-done");
        let mut child = Command::new("flock")
            .arg(&path)
            .arg("sh")
            .arg("-c")
            .arg(format!("echo held; read _; touch '{}'", marker.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "held\n");
        let mut stdin = child.stdin.take().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let _lock = InstallLock::acquire(&locks, "smollm2").unwrap();
                // The child only lets go after writing the marker.
                marker.exists()
            });
            writeln!(stdin).unwrap();
            drop(stdin);
            assert!(
                waiter.join().unwrap(),
                "took the lock while the child held it"
            );
        });
        assert!(child.wait().unwrap().success());
    }
}
