//! Attention over an f16 cache read in place, for a token or two at a
//! time on x86-64 with AVX and F16C: the kernels of
//! [`crate::kernels::f16_heads`] widen each key and value row in registers
//! once for every Q head of its group, where [`super::group_tile`] widens a
//! tile into memory and reads it back per head. Same operations, same
//! order, same bits.

use std::ops::Range;

use half::f16;

use super::{softmax_step, visible, Group, Inputs, TILE};
use crate::kernels::f16_heads::{self, Ahead, HeadRows};

/// [`group_tile`] for an f16 cache, reading the rows in place: each key
/// and value row is widened in registers once for up to
/// [`f16_heads::MAX_HEADS`] Q heads of a token at a time. The same
/// operations in the same order, so the same bits.
///
/// # Safety
/// AVX and F16C.
#[target_feature(enable = "avx,f16c")]
pub(super) unsafe fn group_tile_f16(
    inputs: &Inputs,
    tokens: &Range<usize>,
    group: &Group,
    tile: &Range<usize>,
    (k, v): (&[f16], &[f16]),
    group_slot: &mut [f32],
) {
    let sh = inputs.shape;
    let hd = sh.head_dim;
    let row = sh.n_kv * hd;
    let stride = hd + 2;
    let heads = group.heads.len();
    assert!(k.len() >= tile.end * row && v.len() >= tile.end * row);
    assert!(f16_heads::fits(hd) && group.kv < sh.n_kv);
    let rows = tile.start * row + group.kv * hd;
    let (keys, values) = (k[rows..].as_ptr(), v[rows..].as_ptr());
    // The same head's rows a tile on, asked for while this tile is read.
    let next = rows + tile.len() * row;
    fn ahead(cache: &[f16], next: usize, row: usize, count: usize) -> Ahead<'_> {
        let rows = cache.get(next..).unwrap_or(&[]);
        Ahead {
            rows,
            stride: row,
            count,
        }
    }
    let keys_ahead = ahead(k, next, row, tile.len());
    let values_ahead = ahead(v, next, row, tile.len());
    let mut scores = [[0.0f32; TILE]; f16_heads::MAX_HEADS];
    for (bi, tok) in tokens.clone().enumerate() {
        let Some(n) = visible(inputs, tok, tile) else {
            continue;
        };
        let mut first = 0;
        while first < heads {
            let count = (heads - first).min(f16_heads::MAX_HEADS);
            let q = &inputs.q[(tok * sh.n_q + group.heads.start + first) * hd..][..count * hd];
            let slots = &mut group_slot[(bi * heads + first) * stride..][..count * stride];
            // The first block of heads asks for the next tile.
            let none = Ahead::NONE;
            let first_block = bi == 0 && first == 0;
            let heads = HeadBlock {
                q: q.as_ptr(),
                keys: HeadRows {
                    first: keys,
                    stride: row,
                    hd,
                    ahead: if first_block { keys_ahead } else { none },
                },
                values: HeadRows {
                    first: values,
                    stride: row,
                    hd,
                    ahead: if first_block { values_ahead } else { none },
                },
                n,
            };
            match count {
                1 => heads.run::<1>(&mut scores, slots),
                2 => heads.run::<2>(&mut scores, slots),
                3 => heads.run::<3>(&mut scores, slots),
                _ => heads.run::<4>(&mut scores, slots),
            }
            first += count;
        }
    }
}

/// Up to [`f16_heads::MAX_HEADS`] Q heads of one token against one tile of
/// their KV head in an f16 cache.
struct HeadBlock<'a> {
    /// The heads' queries, one after another.
    q: *const f32,
    /// The tile's key and value rows of the KV head.
    keys: HeadRows<'a>,
    values: HeadRows<'a>,
    /// Positions of the tile the token sees.
    n: usize,
}

impl HeadBlock<'_> {
    /// Scores, softmax step and weighted values of `N` heads, whose slots
    /// (`[max, sum, out...]` each) are `slots`.
    ///
    /// # Safety
    /// AVX and F16C; the pointers hold what their fields say, for `N` heads
    /// and `n` rows.
    #[target_feature(enable = "avx,f16c")]
    unsafe fn run<const N: usize>(
        &self,
        scores: &mut [[f32; TILE]; f16_heads::MAX_HEADS],
        slots: &mut [f32],
    ) {
        let hd = self.keys.hd;
        let stride = hd + 2;
        assert!(slots.len() >= N * stride);
        let scale = 1.0 / (hd as f32).sqrt();
        let mine: &mut [[f32; TILE]; N] = (&mut scores[..N]).try_into().expect("N <= MAX_HEADS");
        let n = self.n;
        f16_heads::scores::<N>(self.q, self.keys, n, scale, mine);
        for (i, s) in mine.iter_mut().enumerate() {
            softmax_step(&mut slots[i * stride..][..stride], &mut s[..n]);
        }
        f16_heads::weighted::<N>(slots.as_mut_ptr().add(2), stride, mine, self.values, n);
    }
}
