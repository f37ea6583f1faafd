//! Keys and values of past positions, per layer, for the KV heads this
//! process owns, stored at a [`KvType`] precision, position-major:
//! `[pos][kv_head][head_dim]`. The whole context is reserved up front as
//! address space, so the cache never moves or doubles; a page becomes
//! resident memory only when a position on it is written, so a short
//! session on a long-context model stays small and a full one takes exactly
//! what the plan predicts.

use std::ops::Range;

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::kv_type::{KvType, KV_Q8_BLOCK};
use crate::kernels::dequant::dequantize_row;
use crate::kernels::prefetch::prefetch;
use crate::kernels::quantize::quantize_row;
use crate::kernels::QuantType;

pub struct KvCache {
    layers: Vec<LayerCache>,
    kind: KvType,
    /// Values per position: owned KV heads × head_dim.
    row: usize,
    context: usize,
    len: usize,
}

struct LayerCache {
    k: Stored,
    v: Stored,
}

/// One layer's keys (or values) at the cache's precision.
enum Stored {
    F32(Vec<f32>),
    F16(Vec<f16>),
    /// Q8_0 blocks, `KvType::Q8_0.row_bytes(row)` bytes a position.
    Q8(Vec<u8>),
}

impl Stored {
    fn with_capacity(kind: KvType, values: usize) -> Self {
        match kind {
            KvType::F32 => Stored::F32(Vec::with_capacity(values)),
            KvType::F16 => Stored::F16(Vec::with_capacity(values)),
            KvType::Q8_0 => Stored::Q8(Vec::with_capacity(KvType::Q8_0.row_bytes(values))),
        }
    }

    /// Keeps the first `positions` rows of `row` values.
    fn truncate(&mut self, positions: usize, row: usize) {
        match self {
            Stored::F32(v) => v.truncate(positions * row),
            Stored::F16(v) => v.truncate(positions * row),
            Stored::Q8(v) => v.truncate(positions * KvType::Q8_0.row_bytes(row)),
        }
    }

    fn extend(&mut self, x: &[f32]) {
        match self {
            Stored::F32(v) => v.extend_from_slice(x),
            Stored::F16(v) => v.extend(x.iter().map(|&a| f16::from_f32(a))),
            Stored::Q8(v) => {
                let at = v.len();
                v.resize(at + KvType::Q8_0.row_bytes(x.len()), 0);
                quantize_row(QuantType::Q8_0, x, &mut v[at..]);
            }
        }
    }

    /// The stored bits of the first `positions` rows, as bytes.
    fn bytes(&self, positions: usize, row: usize) -> Vec<u8> {
        match self.rows(positions, row) {
            KvRows::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            KvRows::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            KvRows::Q8(v) => v.to_vec(),
        }
    }

    fn rows(&self, positions: usize, row: usize) -> KvRows<'_> {
        match self {
            Stored::F32(v) => KvRows::F32(&v[..positions * row]),
            Stored::F16(v) => KvRows::F16(&v[..positions * row]),
            Stored::Q8(v) => KvRows::Q8(&v[..positions * KvType::Q8_0.row_bytes(row)]),
        }
    }
}

/// A borrowed run of cached positions of one layer's keys or values.
#[derive(Clone, Copy)]
pub enum KvRows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    Q8(&'a [u8]),
}

impl KvRows<'_> {
    /// Writes head `head`'s `hd` values at each position of `positions`
    /// into `out` as f32, one position after another. `row` is the values a
    /// position holds (all owned heads).
    ///
    /// It also asks for the same head's rows one call ahead (the next
    /// tile, `positions.len()` later) to be brought into cache: without it
    /// a long context's decode step waited on memory for each row it
    /// decoded (the hardware prefetchers do not run far enough ahead of a
    /// read that hops between keys, values and heads).
    #[inline(always)]
    pub fn head_rows(
        &self,
        row: usize,
        hd: usize,
        head: usize,
        positions: Range<usize>,
        out: &mut [f32],
    ) {
        let ahead = positions.len();
        let dst = out.chunks_exact_mut(hd);
        match self {
            KvRows::F32(v) => {
                for (j, o) in positions.zip(dst) {
                    prefetch(v, (j + ahead) * row + head * hd, hd);
                    o.copy_from_slice(&v[j * row + head * hd..][..hd]);
                }
            }
            KvRows::F16(v) => {
                for (j, o) in positions.zip(dst) {
                    prefetch(v, (j + ahead) * row + head * hd, hd);
                    widen(&v[j * row + head * hd..][..hd], o);
                }
            }
            KvRows::Q8(v) => {
                let row_bytes = KvType::Q8_0.row_bytes(row);
                let head_bytes = KvType::Q8_0.row_bytes(hd);
                debug_assert!(hd.is_multiple_of(KV_Q8_BLOCK));
                for (j, o) in positions.zip(dst) {
                    prefetch(v, (j + ahead) * row_bytes + head * head_bytes, head_bytes);
                    let src = &v[j * row_bytes + head * head_bytes..][..head_bytes];
                    dequantize_row(QuantType::Q8_0, src, o);
                }
            }
        }
    }
}

/// f16 to f32. `half`'s slice conversion checks the CPU and calls out per
/// eight values, a tenth of a small model's decode; with F16C this is one
/// inlined instruction per eight.
#[inline(always)]
fn widen(src: &[f16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("f16c") {
        // SAFETY: the CPU has F16C (and so AVX), all the function enables.
        return unsafe { widen_f16c(src, dst) };
    }
    src.convert_to_f32_slice(dst)
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx,f16c")]
unsafe fn widen_f16c(src: &[f16], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = src.len().min(dst.len());
    let whole = n - n % 8;
    for i in (0..whole).step_by(8) {
        let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
        _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
    }
    for i in whole..n {
        dst[i] = src[i].to_f32();
    }
}

impl KvCache {
    /// `row` = owned KV heads × head_dim.
    pub fn new(n_layers: usize, row: usize, context: usize, kind: KvType) -> Self {
        Self {
            layers: (0..n_layers)
                .map(|_| LayerCache {
                    k: Stored::with_capacity(kind, context * row),
                    v: Stored::with_capacity(kind, context * row),
                })
                .collect(),
            kind,
            row,
            context,
            len: 0,
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn context(&self) -> usize {
        self.context
    }

    pub fn kind(&self) -> KvType {
        self.kind
    }

    /// Forgets positions from `pos` on.
    pub fn truncate(&mut self, pos: usize) {
        self.len = self.len.min(pos);
        for l in &mut self.layers {
            l.k.truncate(self.len, self.row);
            l.v.truncate(self.len, self.row);
        }
    }

    /// Appends `k`/`v` rows for layer `layer` at positions `pos..`; the caller
    /// appends every layer for the same positions, then calls [`Self::commit`].
    pub fn append(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let l = &mut self.layers[layer];
        l.k.truncate(pos, self.row);
        l.v.truncate(pos, self.row);
        l.k.extend(k);
        l.v.extend(v);
    }

    pub fn commit(&mut self, new_len: usize) {
        self.len = new_len;
    }

    /// Keys and values of layer `layer` for positions `0..upto`.
    pub fn layer(&self, layer: usize, upto: usize) -> (KvRows<'_>, KvRows<'_>) {
        let l = &self.layers[layer];
        (l.k.rows(upto, self.row), l.v.rows(upto, self.row))
    }

    /// SHA-256 of every held position's stored bits, layer by layer, keys
    /// then values: two caches with equal digests hold the same bits. Shows
    /// that a cache rebuilt by replaying its tokens at once equals the one
    /// built a step at a time.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update((self.len as u64).to_le_bytes());
        for l in &self.layers {
            h.update(l.k.bytes(self.len, self.row));
            h.update(l.v.bytes(self.len, self.row));
        }
        h.finalize().into()
    }

    /// Bytes a full context would take (for memory prediction).
    pub fn full_bytes(&self) -> usize {
        self.layers.len() * self.context * self.kind.row_bytes(self.row) * 2
    }

    /// Bytes of the positions held now (the resident part of the cache).
    pub fn used_bytes(&self) -> usize {
        self.layers.len() * self.len * self.kind.row_bytes(self.row) * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_gives_halfs_value_for_every_f16() {
        // All 65536 bit patterns, in a length that leaves a remainder
        // past the eight-wide steps; a NaN need only stay a NaN.
        let src: Vec<f16> = (0..=u16::MAX)
            .map(f16::from_bits)
            .chain([f16::ONE; 5])
            .collect();
        let mut got = vec![0.0f32; src.len()];
        widen(&src, &mut got);
        for (h, g) in src.iter().zip(&got) {
            if h.is_nan() {
                assert!(g.is_nan(), "{:#06x}", h.to_bits());
            } else {
                assert_eq!(g.to_bits(), h.to_f32().to_bits(), "{:#06x}", h.to_bits());
            }
        }
    }

    #[test]
    fn each_precision_gives_back_what_it_stored_within_its_rounding() {
        // 2 heads of 32 values, 3 positions.
        let (hd, heads, n) = (32, 2, 3);
        let row = hd * heads;
        let x: Vec<f32> = (0..n * row)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        for (kind, tol) in [
            (KvType::F32, 0.0),
            (KvType::F16, 1e-3),
            (KvType::Q8_0, 1e-2),
        ] {
            let mut c = KvCache::new(1, row, 8, kind);
            c.append(0, 0, &x, &x);
            c.commit(n);
            assert_eq!(c.used_bytes(), 2 * n * kind.row_bytes(row));
            let (k, _) = c.layer(0, n);
            let mut out = vec![0.0; n * hd];
            k.head_rows(row, hd, 1, 0..n, &mut out);
            for j in 0..n {
                for d in 0..hd {
                    let want = x[j * row + hd + d];
                    let got = out[j * hd + d];
                    assert!((got - want).abs() <= tol, "{kind}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn truncate_then_append_rewrites_the_tail() {
        let row = 32;
        let mut c = KvCache::new(1, row, 4, KvType::Q8_0);
        let a = vec![1.0f32; 2 * row];
        c.append(0, 0, &a, &a);
        c.commit(2);
        c.truncate(1);
        let b = vec![-0.5f32; row];
        c.append(0, 1, &b, &b);
        c.commit(2);
        let (_, v) = c.layer(0, 2);
        let mut out = vec![0.0; 2 * row];
        v.head_rows(row, row, 0, 0..2, &mut out);
        assert!((out[0] - 1.0).abs() < 1e-3, "{}", out[0]);
        assert!((out[row] + 0.5).abs() < 1e-3, "{}", out[row]);
    }
}
