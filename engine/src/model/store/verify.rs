//! Checking a model file against its alias: size, then a streamed sha256.
//!
//! Hashing 100 MB takes a few tenths of a second, which every test and every
//! command would pay again and again, so a verified file gets a small marker
//! next to it (`<file>.verified`) recording the digest together with the size
//! and modification time it had. While those still match, the file is trusted
//! without re-hashing; any write to the file changes its mtime and forces a
//! fresh hash.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::alias::AliasInfo;
use super::error::StoreError;
use super::scratch::unique_name;

const MARKER_SUFFIX: &str = ".verified";

/// Lower-case hex sha256 of the file, read in 1 MiB chunks.
pub(crate) fn sha256_file(path: &Path) -> Result<String, StoreError> {
    let mut file = File::open(path).map_err(StoreError::io(path, "open"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::io(path, "read")(e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks a freshly installed file against `alias`; deletes it when it fails,
/// so a bad download never lingers where it could be mistaken for a good one.
pub(crate) fn verify_or_delete(path: &Path, alias: &AliasInfo) -> Result<(), StoreError> {
    let found = fs::metadata(path)
        .map_err(StoreError::io(path, "stat"))?
        .len();
    if found != alias.bytes {
        let _ = fs::remove_file(path);
        return Err(StoreError::SizeMismatch {
            path: path.to_path_buf(),
            expected: alias.bytes,
            found,
        });
    }
    let digest = sha256_file(path)?;
    if digest != alias.sha256 {
        let _ = fs::remove_file(path);
        return Err(StoreError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: alias.sha256.to_string(),
            found: digest,
        });
    }
    Ok(())
}

/// What identifies one version of a file cheaply: its size and mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    bytes: u64,
    modified_ns: u128,
}

impl Stamp {
    /// `None` when the file is missing; a filesystem without mtimes gets a
    /// stamp that never matches a marker, so the file is always re-hashed.
    pub(crate) fn of(path: &Path) -> Result<Option<Stamp>, StoreError> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(path, "stat")(e)),
        };
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(Some(Stamp {
            bytes: meta.len(),
            modified_ns,
        }))
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

fn marker_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(MARKER_SUFFIX);
    file.with_file_name(name)
}

fn marker_text(stamp: Stamp, sha256: &str) -> String {
    format!(
        "sha256 {sha256}\nbytes {}\nmodified_ns {}\n",
        stamp.bytes, stamp.modified_ns
    )
}

/// Whether the marker says this exact version of the file was verified.
fn marker_vouches(file: &Path, stamp: Stamp, sha256: &str) -> bool {
    stamp.modified_ns != 0
        && fs::read_to_string(marker_path(file)).is_ok_and(|t| t == marker_text(stamp, sha256))
}

/// Records that the file with `stamp` hashed to `sha256`. Written to a unique
/// name and renamed, so a concurrent reader sees the old marker or the new
/// one, never half of one.
pub(crate) fn write_marker(file: &Path, stamp: Stamp, sha256: &str) -> Result<(), StoreError> {
    let marker = marker_path(file);
    let tmp = marker.with_file_name(unique_name(".marker"));
    fs::write(&tmp, marker_text(stamp, sha256)).map_err(StoreError::io(&tmp, "write"))?;
    fs::rename(&tmp, &marker).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        StoreError::io(&marker, "rename a marker into")(e)
    })
}

/// Whether the cached file at `path` is a good copy of `alias`: the size
/// first (free), then the marker, and a full hash only when the marker does
/// not vouch for it. Returns its size when good. A bad copy is left in place:
/// the caller replaces it by an atomic rename, which is safe even when
/// another process is reading it.
pub(crate) fn cached_copy_is_good(
    path: &Path,
    alias: &AliasInfo,
) -> Result<Option<u64>, StoreError> {
    let Some(stamp) = Stamp::of(path)? else {
        return Ok(None);
    };
    if stamp.bytes != alias.bytes {
        return Ok(None);
    }
    if marker_vouches(path, stamp, alias.sha256) {
        return Ok(Some(stamp.bytes));
    }
    if sha256_file(path)? != alias.sha256 {
        return Ok(None);
    }
    write_marker(path, stamp, alias.sha256)?;
    Ok(Some(stamp.bytes))
}

/// Marker files live beside models; listings skip them.
pub(crate) fn is_marker(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(MARKER_SUFFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias_for(content: &[u8], sha256: &'static str) -> AliasInfo {
        AliasInfo {
            bytes: content.len() as u64,
            sha256,
            ..super::super::alias::ALIASES[0]
        }
    }

    // sha256("abc"), from FIPS 180-2.
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn sha256_matches_the_published_vector_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("abc");
        fs::write(&small, b"abc").unwrap();
        assert_eq!(sha256_file(&small).unwrap(), ABC);
        // 3 MiB + 1 of 'a' spans several read chunks; compare with a one-shot hash.
        let big = dir.path().join("big");
        let data = vec![b'a'; (3 << 20) + 1];
        fs::write(&big, &data).unwrap();
        let expect = hex::encode(Sha256::digest(&data));
        assert_eq!(sha256_file(&big).unwrap(), expect);
    }

    #[test]
    fn verify_deletes_a_file_of_the_wrong_size_or_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        fs::write(&path, b"abd").unwrap();
        let err = verify_or_delete(&path, &alias_for(b"abc", ABC)).unwrap_err();
        assert!(matches!(err, StoreError::ChecksumMismatch { .. }), "{err}");
        assert!(err.to_string().contains(ABC), "{err}");
        assert!(!path.exists());

        fs::write(&path, b"abcd").unwrap();
        let err = verify_or_delete(&path, &alias_for(b"abc", ABC)).unwrap_err();
        assert!(
            err.to_string().contains("expected 3 bytes, found 4"),
            "{err}"
        );
        assert!(!path.exists());

        fs::write(&path, b"abc").unwrap();
        verify_or_delete(&path, &alias_for(b"abc", ABC)).unwrap();
        assert!(path.exists());
    }

    #[test]
    fn marker_is_written_once_and_invalidated_by_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        fs::write(&path, b"abc").unwrap();
        let alias = alias_for(b"abc", ABC);
        assert_eq!(cached_copy_is_good(&path, &alias).unwrap(), Some(3));
        assert!(marker_path(&path).exists());
        assert!(is_marker(&marker_path(&path)));

        // Same size, different bytes, newer mtime: the marker no longer vouches.
        fs::write(&path, b"abd").unwrap();
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        let later =
            fs::metadata(&path).unwrap().modified().unwrap() + std::time::Duration::from_secs(2);
        f.set_modified(later).unwrap();
        assert_eq!(cached_copy_is_good(&path, &alias).unwrap(), None);

        assert_eq!(
            cached_copy_is_good(&dir.path().join("absent"), &alias).unwrap(),
            None
        );
    }
}
