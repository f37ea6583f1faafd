//! Calibration: what one node can do, measured in a fraction of a second
//! when it is connected (docs/ARCHITECTURE.md, "Predicting speed"). The
//! planner's cost model turns these figures, with the links' measured
//! latency and bandwidth, into predicted tokens per second for a layout.
//!
//! `measure` runs the measurement on the calling thread's rayon pool;
//! [`cached`] keeps one result per thread count for the life of the
//! process, and on disk under the shardlab home for an hour, so a machine
//! measures once however many nodes it starts and coordinators it serves.

mod measure;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::model::gguf::GgmlType;

pub use measure::{measure, CALIBRATED_TYPES};

/// One weight type's matmul throughput with the weights in cache, so the
/// figure is the kernel's arithmetic rate, not memory's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelRate {
    pub dtype: GgmlType,
    /// Weight bytes per second for one token (a decode step).
    pub decode: f64,
    /// Weight bytes x tokens per second for a 32-token batch (prefill).
    pub prefill: f64,
    /// Weight bytes per second for one token over weights far larger than
    /// the caches: memory and arithmetic together, as a big model decodes.
    pub streamed: f64,
    /// Seconds each weight row costs beyond its bytes (its sums reduced
    /// and stored): what makes narrow matrices slower per byte. `decode`
    /// and `streamed` are measured on rows of 1024 values.
    pub row_overhead: f64,
}

impl KernelRate {
    /// Seconds per byte a one-token matmul waits on memory beyond its
    /// arithmetic: streaming takes `1/streamed` a byte, of which
    /// `1/decode` is arithmetic.
    pub fn memory_seconds_per_byte(&self) -> f64 {
        (1.0 / self.streamed.max(1.0) - 1.0 / self.decode.max(1.0)).max(0.0)
    }

    /// Seconds of arithmetic for one token over `rows` rows of `bytes` in
    /// all: a cost per byte and one per row, which `decode` (rows of 1024
    /// values) holds together.
    pub fn arithmetic_seconds(&self, bytes: f64, rows: f64) -> f64 {
        let row_bytes = self.dtype.row_bytes(1024).unwrap_or(1024) as f64;
        let per_byte = (1.0 / self.decode.max(1.0) - self.row_overhead / row_bytes).max(0.0);
        bytes * per_byte + rows * self.row_overhead
    }
}

/// What a node measured of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The machine, so nodes sharing one are known to share its cores and
    /// its memory bandwidth.
    pub host: String,
    /// Cores the machine offers this process.
    pub cores: usize,
    /// Worker threads the figures were measured with (the node's own).
    pub threads: usize,
    /// Bytes per second `threads` threads read from a buffer far larger
    /// than the caches.
    pub bandwidth: f64,
    /// The same with one thread per core: the machine's whole bandwidth,
    /// which nodes on one machine share.
    pub host_bandwidth: f64,
    pub kernels: Vec<KernelRate>,
    /// Seconds one matmul call costs beyond its arithmetic: handing the
    /// rows to the thread pool and collecting them (a tiny matrix's time).
    pub call_overhead: f64,
    /// How long measuring took.
    pub seconds: f64,
}

impl Calibration {
    /// The kernel rate for `dtype`; a type not measured takes the slowest
    /// measured rate (the cost model then errs towards slow).
    pub fn kernel(&self, dtype: GgmlType) -> KernelRate {
        if let Some(k) = self.kernels.iter().find(|k| k.dtype == dtype) {
            return k.clone();
        }
        let slowest = |f: fn(&KernelRate) -> f64| {
            self.kernels
                .iter()
                .map(f)
                .fold(f64::INFINITY, f64::min)
                .min(self.bandwidth)
                .max(1.0)
        };
        KernelRate {
            dtype,
            decode: slowest(|k| k.decode),
            prefill: slowest(|k| k.prefill),
            streamed: slowest(|k| k.streamed),
            row_overhead: self
                .kernels
                .iter()
                .map(|k| k.row_overhead)
                .fold(0.0, f64::max),
        }
    }
}

/// Measured calibrations by thread count, kept for the process's life.
static CACHE: Mutex<Option<HashMap<usize, Calibration>>> = Mutex::new(None);

/// Held while one calibration is measured, so callers that arrive meanwhile
/// (nodes in one process, connected at once) wait for its figures instead
/// of measuring beside it: concurrent measurements slow each other, and a
/// crowded machine then took a minute to answer a connect.
static MEASURING: Mutex<()> = Mutex::new(());

/// How long a calibration saved on disk stays good: a machine's speed does
/// not change between two connects, but a laptop's power state does over
/// hours.
pub const SAVED_FOR: Duration = Duration::from_secs(3600);

/// A calibration as saved on disk, with what makes it still apply.
#[derive(Serialize, Deserialize)]
struct Saved {
    /// The build that measured it ([`build`]).
    version: String,
    /// Seconds since the Unix epoch when it was measured.
    measured_at: u64,
    calibration: Calibration,
}

/// This process's calibration at `threads` threads: the figures measured
/// earlier in this process, else those saved in `dir` by this build on this
/// machine within [`SAVED_FOR`], else measured now (on a pool of that many
/// threads) and saved there.
pub fn cached(threads: usize, dir: Option<&Path>) -> Calibration {
    let threads = threads.max(1);
    let known = || {
        CACHE
            .lock()
            .ok()
            .and_then(|g| g.as_ref().and_then(|m| m.get(&threads).cloned()))
    };
    if let Some(c) = known() {
        return c;
    }
    // A poisoned guard only means another measurement panicked; measure.
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = known() {
        return c;
    }
    let file = dir.map(|d| d.join(format!("calibration-{threads}-threads.json")));
    let figures = match file.as_deref().and_then(|f| load(f, threads)) {
        Some(c) => c,
        None => {
            let measured = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
                Ok(pool) => pool.install(|| measure(threads)),
                Err(_) => measure(threads),
            };
            if let Some(f) = &file {
                // A calibration not saved is measured again next time.
                let _ = save(f, &measured);
            }
            measured
        }
    };
    if let Ok(mut g) = CACHE.lock() {
        g.get_or_insert_with(HashMap::new)
            .insert(threads, figures.clone());
    }
    figures
}

/// Forgets what this process measured and what `dir` holds, so the next
/// [`cached`] measures again.
pub fn forget(dir: Option<&Path>) {
    if let Ok(mut g) = CACHE.lock() {
        *g = None;
    }
    if let Some(entries) = dir.and_then(|d| std::fs::read_dir(d).ok()) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("calibration-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// This build: the version and when the running binary was written, so a
/// rebuilt or differently optimised binary measures itself again.
fn build() -> String {
    let written = std::env::current_exe()
        .and_then(std::fs::metadata)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    format!("{} {written}", env!("CARGO_PKG_VERSION"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn load(file: &Path, threads: usize) -> Option<Calibration> {
    let saved: Saved = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    let host = crate::platform::hostname().unwrap_or_else(|| "unknown".into());
    let fresh = now().saturating_sub(saved.measured_at) < SAVED_FOR.as_secs();
    let same = saved.version == build()
        && saved.calibration.host == host
        && saved.calibration.threads == threads;
    (fresh && same).then_some(saved.calibration)
}

/// Written to a temporary file and renamed, so a reader never sees half.
fn save(file: &Path, c: &Calibration) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let saved = Saved {
        version: build(),
        measured_at: now(),
        calibration: c.clone(),
    };
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(&saved)?)?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_calibration_is_reused_until_it_is_stale_or_from_elsewhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("calibration-3-threads.json");
        let mut c = measure(1);
        c.threads = 3;
        save(&file, &c).expect("saves");
        // JSON keeps figures to the last digit or so.
        let back = load(&file, 3).expect("reused");
        assert_eq!((back.host.as_str(), back.threads), (c.host.as_str(), 3));
        assert!((back.bandwidth / c.bandwidth - 1.0).abs() < 1e-12);
        assert_eq!(back.kernels.len(), c.kernels.len());
        // Another thread count, another machine, an old one: not reused.
        assert_eq!(load(&file, 2), None);
        let mut elsewhere = c.clone();
        elsewhere.host = "another-machine".into();
        save(&file, &elsewhere).expect("saves");
        assert_eq!(load(&file, 3), None);
        let old = Saved {
            version: build(),
            measured_at: now() - SAVED_FOR.as_secs() - 1,
            calibration: c,
        };
        std::fs::write(&file, serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(load(&file, 3), None);
        // A malformed file is measured over, not trusted.
        std::fs::write(&file, b"{").unwrap();
        assert_eq!(load(&file, 3), None);
    }
}
