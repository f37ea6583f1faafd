//! Recovery rebuilds a KV cache by replaying the tokens it held in one
//! prefill. That is only honest if the rebuilt cache holds the same bits as
//! the one built a step at a time: shown here in one process for the f16
//! and f32 caches (the tiny model's 16-wide heads do not fill a q8_0 block),
//! and on the nodes of a tensor and a pipeline split on the exact wire.

use super::harness::{argmax, cluster_of, load, reference_with_kv, tiny_model, PROMPT, TOKENS};
use crate::model::kv_type::KvType;
use crate::parallel::WireDtype;
use crate::shard::plan::LayoutRequest;

#[test]
fn a_cache_rebuilt_by_replay_equals_the_one_built_step_by_step() {
    let m = tiny_model();
    for kv in [KvType::F16, KvType::F32] {
        let mut t = reference_with_kv(&m, kv);
        let mut held = PROMPT.to_vec();
        let mut logits = t.forward(&PROMPT, 0).expect("prefill");
        for _ in 0..TOKENS {
            let next = argmax(&logits);
            logits = t.forward(&[next], held.len()).expect("decode");
            held.push(next);
        }
        let stepped = t.cache().digest();
        let stepped_logits = logits;

        t.truncate(0);
        let replayed_logits = t.forward(&held, 0).expect("replay");
        assert_eq!(t.cache().len(), held.len());
        assert_eq!(t.cache().digest(), stepped, "{kv:?}: the caches differ");
        let bits = |l: &[f32]| l.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&replayed_logits), bits(&stepped_logits), "{kv:?}");
    }
}

#[test]
fn node_caches_rebuilt_by_replay_equal_the_ones_built_step_by_step() {
    let m = tiny_model();
    let layouts = [
        LayoutRequest::Tensor,
        LayoutRequest::Pipeline {
            layers: Some(vec![0..1, 1..2]),
        },
    ];
    for layout in layouts {
        let (mut cluster, _nodes) = cluster_of(2);
        cluster.wire = WireDtype::F64;
        load(&mut cluster, &m, &layout);
        let mut held = PROMPT.to_vec();
        let mut logits = cluster.step(&PROMPT, 0).expect("prefill");
        for _ in 0..TOKENS {
            let next = argmax(&logits);
            logits = cluster.step(&[next], held.len()).expect("decode");
            held.push(next);
        }
        let stepped = cluster.kv_digests(0).expect("digests");
        assert_eq!(stepped.len(), 2);
        assert!(stepped.iter().all(|(_, n, _)| *n as usize == held.len()));

        // A fresh load, as after a recovery, then the tokens replayed at once.
        load(&mut cluster, &m, &layout);
        let replayed_logits = cluster.step(&held, 0).expect("replay");
        assert_eq!(
            cluster.kv_digests(0).expect("digests"),
            stepped,
            "{layout:?}"
        );
        let bits = |l: &[f32]| l.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&replayed_logits), bits(&logits), "{layout:?}");
    }
}
