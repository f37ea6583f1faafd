//! What the coordinator holds while it loads a cluster: a slice is cut
//! when it is hashed and again when it is sent, and dropped after each,
//! so at most one slice per worker thread is alive at once (not every
//! node's whole shard), and each tensor read from the mapped file is
//! released from the coordinator's resident memory once done with.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::harness::{cluster_of, tiny_model};
use crate::cluster::coordinator::ModelToLoad;
use crate::kernels::{Weight, WeightBytes};
use crate::model::error::ModelError;
use crate::model::gguf::GgufModel;
use crate::model::kv_type::KvType;
use crate::model::weights::{SliceRule, TensorSource};
use crate::shard::plan::{plan, KvSpec, LayoutRequest};

/// The model file, each slice handed out as an owned copy the source can
/// watch: how many are still held when the next is cut, and which tensors
/// were released.
struct Watched<'a> {
    file: &'a GgufModel,
    handed_out: Mutex<Vec<Weak<Vec<u8>>>>,
    most_alive: AtomicUsize,
    cut: Mutex<BTreeSet<String>>,
    released: Mutex<BTreeSet<String>>,
}

impl TensorSource for Watched<'_> {
    fn source_name(&self) -> String {
        self.file.source_name()
    }

    fn tensor(&self, name: &str) -> Result<Option<Weight>, ModelError> {
        TensorSource::tensor(self.file, name)
    }

    fn local_tensor(&self, name: &str, rule: &SliceRule) -> Result<Option<Weight>, ModelError> {
        let Some(w) = self.file.local_tensor(name, rule)? else {
            return Ok(None);
        };
        let buf = Arc::new(w.data.to_vec());
        let mut handed_out = self.handed_out.lock().expect("lock");
        handed_out.retain(|b| b.strong_count() > 0);
        handed_out.push(Arc::downgrade(&buf));
        self.most_alive
            .fetch_max(handed_out.len(), Ordering::Relaxed);
        self.cut.lock().expect("lock").insert(name.to_string());
        let len = buf.len();
        Ok(Some(Weight {
            data: WeightBytes::Owned { buf, start: 0, len },
            ..w
        }))
    }

    fn release(&self, name: &str) {
        self.released.lock().expect("lock").insert(name.to_string());
    }
}

#[test]
fn the_coordinator_holds_one_slice_per_worker_while_it_loads() {
    let m = tiny_model();
    let (mut cluster, _nodes) = cluster_of(2);
    let p = plan(
        &m.summary,
        &cluster.budgets(),
        &LayoutRequest::Tensor,
        KvSpec::new(64, KvType::F16),
    )
    .expect("plans");
    let source = Watched {
        file: &m.gguf,
        handed_out: Mutex::new(Vec::new()),
        most_alive: AtomicUsize::new(0),
        cut: Mutex::new(BTreeSet::new()),
        released: Mutex::new(BTreeSet::new()),
    };
    let model = ModelToLoad {
        name: "tiny".into(),
        config: &m.summary.config,
        source: &source,
        file: None,
    };
    // Hashing runs on the worker pool (two threads here, whatever the
    // machine), sending on one thread per node.
    const POOL: usize = 2;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(POOL)
        .build()
        .expect("pool");
    let summary = pool
        .install(|| cluster.load(&model, &p, &|_| {}))
        .expect("loads");
    assert!(summary.bytes_sent > 0, "the nodes' caches were empty");
    let workers = POOL + p.nodes.len();
    let slices = p.nodes.len() * m.gguf.tensor_count();
    assert!(slices > 2 * workers, "the model is too small to tell");
    let most = source.most_alive.load(Ordering::Relaxed);
    assert!(
        most <= workers,
        "{most} slices held at once, for {workers} workers ({slices} slices in all)"
    );
    let cut = source.cut.lock().expect("lock").clone();
    let released = source.released.lock().expect("lock").clone();
    assert!(!cut.is_empty());
    assert_eq!(cut, released, "every tensor read is released once sent");
}
