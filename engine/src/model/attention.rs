//! Causal multi-head attention with grouped KV heads over the cache, in
//! the flash-attention way: keys and values are read in tiles of [`TILE`]
//! positions (decoded from the cache's precision once per tile), and the
//! softmax is computed online, so no score row as long as the context is
//! ever built and the cache is streamed once per block of tokens.
//!
//! Work is split into tasks of (block of up to [`TOKEN_BLOCK`] tokens,
//! chunk of [`CHUNK`] positions, KV heads). The Q heads that read one KV
//! head share every tile, and so do the tokens of a block, so each tile is
//! decoded once for all of them. A long context is split into chunks so a
//! single decoded token still keeps every thread busy; the chunks' partial
//! results are merged in position order afterwards.
//!
//! Within a task the tiles are the outer loop and the KV heads the inner
//! one. The cache holds a position's heads side by side, so a tile of all
//! heads is one contiguous run of memory and the cache is read front to
//! back; one head at a time over the whole context read it in strides,
//! which the prefetchers follow poorly (at depth 8k the decoding of those
//! strided rows, waiting on memory, was over half of a decode step).
//!
//! Tile and chunk boundaries are fixed multiples of position, never of the
//! thread count or the batch, and which task covers which heads changes no
//! operation: a token gets the same bits whether it came in a prompt batch
//! or alone, on any node, with any number of threads.

#[cfg(target_arch = "x86_64")]
mod f16_in_place;

use std::ops::Range;

use rayon::prelude::*;

use super::kv_cache::KvRows;
#[cfg(target_arch = "x86_64")]
use crate::kernels::dot::Isa;
#[cfg(target_arch = "x86_64")]
use crate::kernels::f16_heads;
use crate::kernels::vector::{
    axpy, exp, exp_shifted, scores_tile, scores_tile_pair, weighted_rows, SCORE_TILE,
};
#[cfg(target_arch = "x86_64")]
use f16_in_place::group_tile_f16;

/// Positions decoded and scored at once.
const TILE: usize = SCORE_TILE;
/// Positions one task covers at most.
const CHUNK: usize = 256;
/// Tokens that share the tiles one task decodes.
const TOKEN_BLOCK: usize = 8;
/// Tokens up to which a task reads an f16 cache in place
/// ([`group_tile_f16`]) instead of widening each tile into memory once for
/// all of them.
#[cfg(target_arch = "x86_64")]
const FUSED_TOKENS: usize = 2;

/// Shapes for one attention call.
pub struct AttnShape {
    pub head_dim: usize,
    /// Owned Q heads and how many of them read each owned KV head.
    pub n_q: usize,
    pub n_kv: usize,
    /// Global index of the first owned Q head, and of the first owned KV head.
    pub q_start: usize,
    pub kv_start: usize,
    pub group: usize,
}

/// The owned Q heads (contiguous) that read one local KV head.
struct Group {
    kv: usize,
    heads: Range<usize>,
}

/// One task: tokens `tokens` of the call, the head groups `groups` (indices
/// into [`Inputs::groups`]), over positions `positions`.
#[derive(Clone)]
struct Task {
    tokens: Range<usize>,
    groups: Range<usize>,
    positions: Range<usize>,
}

/// What every task of one call reads.
struct Inputs<'a> {
    shape: &'a AttnShape,
    groups: Vec<Group>,
    q: &'a [f32],
    k: KvRows<'a>,
    v: KvRows<'a>,
    pos: usize,
}

/// Bytes attention allocates at most with a `context`-token cache and
/// `threads` workers: per worker two decoded tiles (keys, values) and one
/// token block's chunk partials of all `n_q` heads, plus the few-token
/// path's partials.
pub fn scratch_bytes(head_dim: usize, n_q: usize, context: usize, threads: usize) -> u64 {
    let partials = context.div_ceil(CHUNK) * TOKEN_BLOCK * n_q * (head_dim + 2);
    let per_thread = 2 * TILE * head_dim + partials;
    4 * (threads * per_thread + partials) as u64
}

/// Per-thread buffers.
#[derive(Default)]
struct Scratch {
    keys: Vec<f32>,
    values: Vec<f32>,
    /// Chunk partials of one block (the block-parallel path).
    partial: Vec<f32>,
}

/// `q` is `tokens x n_q x head_dim` for positions `pos..pos+tokens`;
/// `k`/`v` hold positions `0..pos+tokens` (`[pos][n_kv][head_dim]` at the
/// cache's precision). Writes `tokens x n_q x head_dim` into `out`.
///
/// A prompt batch runs its token blocks in parallel, each block working
/// through its chunks in turn; a few tokens (decode) run their chunks in
/// parallel instead. Both compute every chunk's partial the same way and
/// merge them the same way, so both give the same bits.
pub fn attend(shape: &AttnShape, q: &[f32], k: KvRows, v: KvRows, pos: usize, out: &mut [f32]) {
    let hd = shape.head_dim;
    if hd == 0 || shape.n_q == 0 {
        return;
    }
    let tokens = q.len() / (shape.n_q * hd);
    let inputs = Inputs {
        shape,
        groups: groups(shape),
        q,
        k,
        v,
        pos,
    };
    if tokens > TOKEN_BLOCK {
        by_block(&inputs, out);
    } else {
        by_chunk(&inputs, tokens, out);
    }
}

/// The runs of owned Q heads that read one KV head, in head order.
fn groups(shape: &AttnShape) -> Vec<Group> {
    let kv_of = |h: usize| (shape.q_start + h) / shape.group - shape.kv_start;
    let mut groups = Vec::new();
    let mut first = 0;
    while first < shape.n_q {
        let kv = kv_of(first);
        let mut end = first + 1;
        while end < shape.n_q && kv_of(end) == kv {
            end += 1;
        }
        groups.push(Group {
            kv,
            heads: first..end,
        });
        first = end;
    }
    groups
}

/// The chunks of positions that tokens `tokens` see, in order.
fn chunks(pos: usize, tokens: &Range<usize>) -> impl Iterator<Item = Range<usize>> {
    let seen = pos + tokens.end;
    (0..seen)
        .step_by(CHUNK)
        .map(move |c| c..(c + CHUNK).min(seen))
}

/// Floats of one chunk's partial for `tokens` tokens and `heads` heads:
/// per token and head, the running maximum, the running sum of
/// exponentials, and `head_dim` outputs.
fn partial_len(tokens: usize, heads: usize, hd: usize) -> usize {
    tokens * heads * (hd + 2)
}

/// Partials are laid out chunk after chunk, and within a chunk group after
/// group (token-major within a group): a task over one chunk and a run of
/// groups writes one contiguous slot.
fn group_len(inputs: &Inputs, tokens: usize, g: usize) -> usize {
    partial_len(tokens, inputs.groups[g].heads.len(), inputs.shape.head_dim)
}

/// Prompt batches: one task per block of tokens and chunk, over all heads;
/// a block's output rows are contiguous.
fn by_block(inputs: &Inputs, out: &mut [f32]) {
    let sh = inputs.shape;
    let width = sh.n_q * sh.head_dim;
    let all = 0..inputs.groups.len();
    out.par_chunks_mut(TOKEN_BLOCK * width)
        .enumerate()
        .for_each_init(Scratch::default, |s, (b, o)| {
            let t0 = b * TOKEN_BLOCK;
            let tokens = t0..t0 + o.len() / width;
            let per_chunk = partial_len(tokens.len(), sh.n_q, sh.head_dim);
            let mut partial = std::mem::take(&mut s.partial);
            partial.clear();
            for c in chunks(inputs.pos, &tokens) {
                let at = partial.len();
                partial.resize(at + per_chunk, 0.0);
                let task = Task {
                    tokens: tokens.clone(),
                    groups: all.clone(),
                    positions: c,
                };
                run_task(inputs, &task, s, &mut partial[at..]);
            }
            merge_all(inputs, &tokens, &partial, t0, o);
            s.partial = partial;
        });
}

/// A few tokens: one task per chunk, merged afterwards. When the chunks are
/// too few to keep every thread busy, one task per (chunk, KV head).
fn by_chunk(inputs: &Inputs, tokens: usize, out: &mut [f32]) {
    let sh = inputs.shape;
    let all = 0..tokens;
    let n_groups = inputs.groups.len();
    let chunk_list: Vec<Range<usize>> = chunks(inputs.pos, &all).collect();
    let split = chunk_list.len() < 2 * rayon::current_num_threads();
    let runs: Vec<Range<usize>> = if split {
        (0..n_groups).map(|g| g..g + 1).collect()
    } else {
        std::iter::once(0..n_groups).collect()
    };
    let mut tasks = Vec::new();
    for c in chunk_list {
        for groups in runs.iter().cloned() {
            tasks.push(Task {
                tokens: all.clone(),
                groups,
                positions: c.clone(),
            });
        }
    }
    let len = |t: &Task| t.groups.clone().map(|g| group_len(inputs, tokens, g)).sum();
    let mut partial = vec![0.0f32; tasks.iter().map(len).sum::<usize>()];
    let mut slots = Vec::with_capacity(tasks.len());
    let mut rest = partial.as_mut_slice();
    for t in &tasks {
        let (mine, after) = rest.split_at_mut(len(t));
        slots.push(mine);
        rest = after;
    }
    tasks
        .par_iter()
        .zip(slots)
        .for_each_init(Scratch::default, |s, (t, slot)| {
            run_task(inputs, t, s, slot)
        });
    debug_assert_eq!(partial.len() % partial_len(tokens, sh.n_q, sh.head_dim), 0);
    merge_all(inputs, &all, &partial, 0, out);
}

fn run_task(inputs: &Inputs, t: &Task, s: &mut Scratch, slot: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::detected().contains(&Isa::Avx2) {
        // SAFETY: Isa::Avx2 means AVX2, FMA and F16C, what the function enables.
        return unsafe { task_avx2(inputs, t, s, slot) };
    }
    task_body::<false>(inputs, t, s, slot)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn task_avx2(inputs: &Inputs, t: &Task, s: &mut Scratch, slot: &mut [f32]) {
    task_body::<true>(inputs, t, s, slot)
}

/// One chunk: for each tile of its positions and each of the task's KV
/// heads, the scores of every (token, Q head), the online-softmax update,
/// and the weighted values. `slot` gets `[max, sum, out...]` per (token,
/// head), group after group, token-major within a group. `F16C`: the CPU
/// has AVX and F16C, so an f16 cache can be read by [`group_tile_f16`].
#[inline(always)]
fn task_body<const F16C: bool>(inputs: &Inputs, t: &Task, s: &mut Scratch, slot: &mut [f32]) {
    let hd = inputs.shape.head_dim;
    for p in slot.chunks_exact_mut(hd + 2) {
        p[0] = f32::NEG_INFINITY;
        p[1] = 0.0;
        p[2..].fill(0.0);
    }
    s.keys.resize(TILE * hd, 0.0);
    s.values.resize(TILE * hd, 0.0);
    let mut j0 = t.positions.start;
    while j0 < t.positions.end {
        let tile = j0..(j0 + TILE).min(t.positions.end);
        let mut group_at = 0;
        for g in t.groups.clone() {
            let group = &inputs.groups[g];
            let len = partial_len(t.tokens.len(), group.heads.len(), hd);
            let group_slot = &mut slot[group_at..][..len];
            group_at += len;
            #[cfg(target_arch = "x86_64")]
            if F16C && t.tokens.len() <= FUSED_TOKENS && f16_heads::fits(hd) {
                if let (KvRows::F16(k), KvRows::F16(v)) = (inputs.k, inputs.v) {
                    // SAFETY: `F16C` says the CPU has AVX and F16C.
                    unsafe { group_tile_f16(inputs, &t.tokens, group, &tile, (k, v), group_slot) };
                    continue;
                }
            }
            group_tile(inputs, &t.tokens, group, &tile, s, group_slot);
        }
        j0 = tile.end;
    }
}

/// Positions of `tile` that token `tok` of the call sees (up to and
/// including its own), or `None` when it sees none of them.
#[inline(always)]
fn visible(inputs: &Inputs, tok: usize, tile: &Range<usize>) -> Option<usize> {
    let seen = (inputs.pos + tok + 1).min(tile.end);
    (seen > tile.start).then(|| seen - tile.start)
}

/// One tile of one KV head for `tokens` x the group's Q heads: the tile's
/// keys and values are widened to f32 once into the scratch, then every
/// (token, head) scores it and adds its weighted values.
#[inline(always)]
fn group_tile(
    inputs: &Inputs,
    tokens: &Range<usize>,
    group: &Group,
    tile: &Range<usize>,
    s: &mut Scratch,
    group_slot: &mut [f32],
) {
    let sh = inputs.shape;
    let hd = sh.head_dim;
    let row = sh.n_kv * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    let stride = hd + 2;
    let heads = group.heads.len();
    inputs
        .k
        .head_rows(row, hd, group.kv, tile.clone(), &mut s.keys);
    inputs
        .v
        .head_rows(row, hd, group.kv, tile.clone(), &mut s.values);
    // Every (token, head) that sees the tile: where its query and its slot
    // are, and how many of the tile's positions it sees.
    let seen = tokens
        .clone()
        .enumerate()
        .filter_map(|(bi, tok)| visible(inputs, tok, tile).map(|n| (bi, tok, n)));
    let mut items = seen.flat_map(|(bi, tok, n)| {
        group.heads.clone().enumerate().map(move |(hi, h)| {
            let query = (tok * sh.n_q + h) * hd;
            (query, (bi * heads + hi) * stride, n)
        })
    });
    let query = |at: usize| &inputs.q[at..][..hd];
    // Scored two at a time (one pass over the keys for both where the CPU
    // allows); each then takes its own softmax step and weighted values, so
    // pairing changes no operation. Past a short tile's end the tiles hold
    // earlier, finite rows: their scores are computed and never used.
    let mut scores = [[0.0f32; TILE]; 2];
    while let Some(a) = items.next() {
        let b = items.next();
        match b {
            Some(b) => scores_tile_pair(query(a.0), query(b.0), &s.keys, scale, &mut scores),
            None => scores_tile(query(a.0), &s.keys, scale, &mut scores[0]),
        }
        for ((_, slot, n), scores) in [Some(a), b].into_iter().flatten().zip(&mut scores) {
            let p = &mut group_slot[slot..][..stride];
            softmax_step(p, &mut scores[..n]);
            weighted_rows(&mut p[2..], &scores[..n], &s.values[..n * hd]);
        }
    }
}

/// The online-softmax step of one (token, head) slot `p` = `[max, sum,
/// out...]` for a tile's scores: rescales what earlier tiles added when the
/// maximum grows, turns the scores into their weights `e^(score - max)`,
/// and adds those to the sum. The caller adds the weighted values.
#[inline(always)]
fn softmax_step(p: &mut [f32], scores: &mut [f32]) {
    let tile_max = scores.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let max = p[0].max(tile_max);
    if max > p[0] {
        // Rescale what earlier tiles added (exp(-inf) = 0 first).
        let shrink = exp(p[0] - max);
        p[1] *= shrink;
        p[2..].iter_mut().for_each(|o| *o *= shrink);
        p[0] = max;
    }
    p[1] += exp_shifted(scores, max);
}

/// Merges the chunk partials of `tokens` x all heads (laid out as
/// [`group_len`] says) into the output rows; `out` starts at token `first`.
fn merge_all(
    inputs: &Inputs,
    tokens: &Range<usize>,
    partial: &[f32],
    first: usize,
    out: &mut [f32],
) {
    let sh = inputs.shape;
    let per_chunk = partial_len(tokens.len(), sh.n_q, sh.head_dim);
    let n_chunks = partial.len() / per_chunk;
    let mut group_at = 0;
    for (g, group) in inputs.groups.iter().enumerate() {
        let view = ChunkPartials {
            partial: &partial[group_at..],
            per_chunk,
            n_chunks,
        };
        merge(sh, tokens, &group.heads, &view, first, out);
        group_at += group_len(inputs, tokens.len(), g);
    }
}

/// One group's partials: chunk `c`'s start at `c * per_chunk`.
struct ChunkPartials<'a> {
    partial: &'a [f32],
    per_chunk: usize,
    n_chunks: usize,
}

/// Merges one group's chunk partials of `tokens` x `heads` into the output
/// rows; `out` starts at token `first`.
fn merge(
    shape: &AttnShape,
    tokens: &Range<usize>,
    heads: &Range<usize>,
    view: &ChunkPartials,
    first: usize,
    out: &mut [f32],
) {
    let hd = shape.head_dim;
    let stride = hd + 2;
    for (bi, tok) in tokens.clone().enumerate() {
        for (hi, h) in heads.clone().enumerate() {
            let of = |c: usize| {
                &view.partial[c * view.per_chunk + (bi * heads.len() + hi) * stride..][..stride]
            };
            let max = (0..view.n_chunks).fold(f32::NEG_INFINITY, |m, c| m.max(of(c)[0]));
            let o = &mut out[((tok - first) * shape.n_q + h) * hd..][..hd];
            o.fill(0.0);
            let mut sum = 0.0f32;
            for c in 0..view.n_chunks {
                let p = of(c);
                if p[1] == 0.0 {
                    continue; // no position of this chunk is visible to the token
                }
                let w = exp(p[0] - max);
                sum += p[1] * w;
                axpy(o, w, &p[2..]);
            }
            let inv = 1.0 / sum;
            o.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention one head at a time, straight from the definition, in f64.
    fn reference(s: &AttnShape, q: &[f32], k: &[f32], v: &[f32], pos: usize) -> Vec<f32> {
        let hd = s.head_dim;
        let tokens = q.len() / (s.n_q * hd);
        let mut out = vec![0.0f32; q.len()];
        for t in 0..tokens {
            for h in 0..s.n_q {
                let kv = (s.q_start + h) / s.group - s.kv_start;
                let qh = &q[(t * s.n_q + h) * hd..][..hd];
                let n = pos + t + 1;
                let at = |j: usize| (j * s.n_kv + kv) * hd;
                let scores: Vec<f64> = (0..n)
                    .map(|j| {
                        let d: f64 = qh
                            .iter()
                            .zip(&k[at(j)..at(j) + hd])
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum();
                        d / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..hd {
                    let o: f64 = (0..n).map(|j| e[j] / sum * v[at(j) + d] as f64).sum();
                    out[(t * s.n_q + h) * hd + d] = o as f32;
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2000) as f32 / 1000.0 - 1.0)
            .collect()
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    }

    fn run(s: &AttnShape, q: &[f32], k: &[f32], v: &[f32], pos: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; q.len()];
        attend(s, q, KvRows::F32(k), KvRows::F32(v), pos, &mut out);
        out
    }

    #[test]
    fn grouped_heads_match_the_definition_also_when_a_split_starts_mid_group() {
        // 6 Q heads in groups of 3 over 2 KV heads; then a tensor-split
        // node owning Q heads 2..5 (reading KV heads 0 and 1).
        let whole = AttnShape {
            head_dim: 16,
            n_q: 6,
            n_kv: 2,
            q_start: 0,
            kv_start: 0,
            group: 3,
        };
        let part = AttnShape {
            n_q: 3,
            q_start: 2,
            ..whole
        };
        for s in [&whole, &part] {
            // Past one chunk, with a token block cut by the batch's end.
            for (tokens, pos) in [(5, 7), (11, 300), (1, 700)] {
                let q = values(tokens * s.n_q * s.head_dim, 1);
                let k = values((pos + tokens) * s.n_kv * s.head_dim, 2);
                let v = values((pos + tokens) * s.n_kv * s.head_dim, 3);
                let out = run(s, &q, &k, &v, pos);
                let want = reference(s, &q, &k, &v, pos);
                let w = worst(&out, &want);
                assert!(w < 1e-5, "q_start {} pos {pos}: off by {w}", s.q_start);
            }
        }
    }

    #[test]
    fn a_token_gets_the_same_bits_alone_as_in_a_batch() {
        let s = AttnShape {
            head_dim: 32,
            n_q: 4,
            n_kv: 2,
            q_start: 0,
            kv_start: 0,
            group: 2,
        };
        let (tokens, pos) = (20, 290);
        let width = s.n_q * s.head_dim;
        let q = values(tokens * width, 4);
        let k = values((pos + tokens) * s.n_kv * s.head_dim, 5);
        let v = values((pos + tokens) * s.n_kv * s.head_dim, 6);
        let batch = run(&s, &q, &k, &v, pos);
        for t in [0, 7, 8, 19] {
            let kv_len = (pos + t + 1) * s.n_kv * s.head_dim;
            let alone = run(
                &s,
                &q[t * width..][..width],
                &k[..kv_len],
                &v[..kv_len],
                pos + t,
            );
            assert_eq!(alone, batch[t * width..][..width], "token {t}");
        }
    }

    #[test]
    fn an_f16_cache_gives_the_bits_of_its_values_widened_to_f32() {
        // Read in place (a token or two, where the CPU allows) or widened a
        // tile at a time, an f16 cache must give what the same values as
        // f32 give. Groups of 1 to 6 Q heads cover every block of heads.
        for (n_q, n_kv, hd) in [(3, 3, 32), (6, 3, 16), (9, 3, 64), (8, 2, 32), (12, 2, 48)] {
            let s = AttnShape {
                head_dim: hd,
                n_q,
                n_kv,
                q_start: 0,
                kv_start: 0,
                group: n_q / n_kv,
            };
            let row = n_kv * hd;
            for (tokens, pos) in [(1, 0), (1, 45), (2, 300), (1, 1100), (11, 70)] {
                let q = values(tokens * n_q * hd, 10);
                let halves = |seed| {
                    values((pos + tokens) * row, seed)
                        .into_iter()
                        .map(half::f16::from_f32)
                        .collect::<Vec<_>>()
                };
                let (k16, v16) = (halves(11), halves(12));
                let widen = |h: &[half::f16]| h.iter().map(|x| x.to_f32()).collect::<Vec<_>>();
                let want = run(&s, &q, &widen(&k16), &widen(&v16), pos);
                let mut got = vec![0.0f32; q.len()];
                attend(&s, &q, KvRows::F16(&k16), KvRows::F16(&v16), pos, &mut got);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{n_q}/{n_kv} heads of {hd}, {tokens} at {pos}"
                );
            }
        }
    }

    #[test]
    fn reduced_precision_caches_stay_close_to_f32() {
        use crate::model::kv_cache::KvCache;
        use crate::model::kv_type::KvType;
        let s = AttnShape {
            head_dim: 32,
            n_q: 4,
            n_kv: 2,
            q_start: 0,
            kv_start: 0,
            group: 2,
        };
        let (tokens, pos) = (3, 40);
        let row = s.n_kv * s.head_dim;
        let q = values(tokens * s.n_q * s.head_dim, 7);
        let k = values((pos + tokens) * row, 8);
        let v = values((pos + tokens) * row, 9);
        let exact = run(&s, &q, &k, &v, pos);
        for (kind, bound) in [(KvType::F16, 2e-3), (KvType::Q8_0, 2e-2)] {
            let mut c = KvCache::new(1, row, pos + tokens, kind);
            c.append(0, 0, &k, &v);
            c.commit(pos + tokens);
            let (kc, vc) = c.layer(0, pos + tokens);
            let mut out = vec![0.0f32; q.len()];
            attend(&s, &q, kc, vc, pos, &mut out);
            let w = worst(&out, &exact);
            assert!(w > 0.0 && w < bound, "{kind}: off by {w}");
        }
    }
}
