//! Several sequences through one forward pass (continuous batching): each
//! segment is one sequence's rows at its own positions with its own KV
//! cache. The matmuls run over the rows of every segment together, so the
//! weights are read once per step; RoPE, the KV append and attention follow
//! each segment. A row gets the same bits as its sequence run alone: the
//! kernels are independent per row and attention is per segment.

use super::error::ModelError;
use super::kv_cache::KvCache;
use super::transformer::{AllReduce, Transformer, PREFILL_BATCH};

/// Segments whose last rows go through the output head in one matmul. The
/// memory prediction counts this many logits rows on a head node.
pub const HEAD_ROWS: usize = 8;

/// One sequence's part of a batched pass: `rows` activations at positions
/// `pos..`, appended to `cache` (`None`: the model's own cache, for at most
/// one segment). `seq` only names the sequence in errors.
pub struct Segment<'c> {
    pub seq: u32,
    pub rows: usize,
    pub pos: usize,
    pub cache: Option<&'c mut KvCache>,
}

/// The rows of one segment that fall in one pass of at most
/// [`PREFILL_BATCH`] rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub segment: usize,
    pub pos: usize,
    pub rows: usize,
}

/// Cuts segments of `(pos, rows)` into passes of at most [`PREFILL_BATCH`]
/// rows, in order, splitting a segment where a pass fills up, so the
/// working buffers stay the size the memory prediction counts. Every
/// member of a tensor group cuts the same passes from the same segments.
pub fn passes(segments: &[(usize, usize)]) -> Vec<Vec<Piece>> {
    let mut out: Vec<Vec<Piece>> = Vec::new();
    let mut room = 0;
    for (segment, &(pos, rows)) in segments.iter().enumerate() {
        let mut done = 0;
        while done < rows {
            if room == 0 {
                out.push(Vec::new());
                room = PREFILL_BATCH;
            }
            let n = (rows - done).min(room);
            if let Some(pass) = out.last_mut() {
                pass.push(Piece {
                    segment,
                    pos: pos + done,
                    rows: n,
                });
            }
            done += n;
            room -= n;
        }
    }
    out
}

impl Transformer {
    /// Runs the owned layers on `x` (the rows of every segment, one
    /// segment after another) in place. Every segment is checked before
    /// anything runs, so a bad one leaves every cache as it was.
    pub fn forward_layers_segments(
        &mut self,
        x: &mut [f32],
        segments: &mut [Segment],
        reduce: &mut dyn AllReduce,
    ) -> Result<(), ModelError> {
        self.check_segments(x.len(), segments)?;
        self.clear_expert_spans();
        self.run_segments(x, segments, reduce)
    }

    /// [`Self::forward_layers_segments`] after its checks.
    pub(super) fn run_segments(
        &mut self,
        x: &mut [f32],
        segments: &mut [Segment],
        reduce: &mut dyn AllReduce,
    ) -> Result<(), ModelError> {
        let h = self.config().hidden;
        let shape: Vec<(usize, usize)> = segments.iter().map(|s| (s.pos, s.rows)).collect();
        let mut at = 0;
        for pass in passes(&shape) {
            let rows: usize = pass.iter().map(|p| p.rows).sum();
            let chunk = x
                .get_mut(at * h..(at + rows) * h)
                .ok_or_else(|| ModelError::Other("fewer activations than rows".into()))?;
            self.forward_chunk(chunk, &pass, segments, reduce)?;
            at += rows;
        }
        Ok(())
    }

    fn check_segments(&self, values: usize, segments: &[Segment]) -> Result<(), ModelError> {
        if segments.is_empty() {
            return Err(ModelError::Other("no sequences to run".into()));
        }
        if segments.iter().filter(|s| s.cache.is_none()).count() > 1 {
            return Err(ModelError::Other(
                "two segments of one pass share the model's own KV cache".into(),
            ));
        }
        for s in segments {
            let cache = s.cache.as_deref().unwrap_or(self.cache());
            let why = if s.rows == 0 {
                Some(ModelError::Other("no tokens to run".into()))
            } else if s.pos + s.rows > cache.context() {
                Some(ModelError::ContextFull {
                    needed: s.pos + s.rows,
                    context: cache.context(),
                })
            } else if s.pos > cache.len() {
                Some(ModelError::Other(format!(
                    "position {} skips ahead of the {} cached positions",
                    s.pos,
                    cache.len()
                )))
            } else {
                None
            };
            if let Some(e) = why {
                return Err(ModelError::InSequence {
                    seq: s.seq,
                    source: Box::new(e),
                });
            }
        }
        let h = self.config().hidden;
        let rows: usize = segments.iter().map(|s| s.rows).sum();
        if values != rows * h {
            return Err(ModelError::Other(format!(
                "{values} activations for {rows} rows of width {h}"
            )));
        }
        Ok(())
    }

    /// The output head on rows `last` of `x` (as after
    /// [`Self::forward_layers_segments`]; a segment's last row each),
    /// [`HEAD_ROWS`] rows per matmul; `each` receives every group's logits,
    /// `rows x` this process's vocabulary slice, in order.
    pub fn head_segments(
        &mut self,
        x: &[f32],
        last: &[usize],
        each: &mut dyn FnMut(&[f32]) -> Result<(), ModelError>,
    ) -> Result<(), ModelError> {
        let h = self.config().hidden;
        let mut rows = Vec::with_capacity(HEAD_ROWS * h);
        let mut logits = Vec::new();
        for group in last.chunks(HEAD_ROWS) {
            rows.clear();
            for &r in group {
                let row = x
                    .get(r * h..(r + 1) * h)
                    .ok_or_else(|| ModelError::Other(format!("no hidden row {r}")))?;
                rows.extend_from_slice(row);
            }
            self.head_rows(&rows, &mut logits)?;
            each(&logits)?;
        }
        Ok(())
    }

    /// The whole model in this process for several sequences at once: the
    /// logits of each segment's last token, in segment order.
    pub fn forward_segments(
        &mut self,
        tokens: &[&[u32]],
        segments: &mut [Segment],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        if tokens.len() != segments.len()
            || tokens
                .iter()
                .zip(&*segments)
                .any(|(t, s)| t.len() != s.rows)
        {
            return Err(ModelError::Other(
                "token lists do not match the segments".into(),
            ));
        }
        let mut x = Vec::new();
        for (t, s) in tokens.iter().zip(&*segments) {
            let e = self.embed(t).map_err(|e| ModelError::InSequence {
                seq: s.seq,
                source: Box::new(e),
            })?;
            x.extend_from_slice(&e);
        }
        self.forward_layers_segments(&mut x, segments, &mut super::transformer::NoReduce)?;
        let last = last_rows(segments.iter().map(|s| s.rows));
        let vocab = self.weights().output.as_ref().map_or(0, |w| w.rows);
        let mut out = Vec::with_capacity(last.len());
        self.head_segments(&x, &last, &mut |group| {
            out.extend(group.chunks(vocab.max(1)).map(<[f32]>::to_vec));
            Ok(())
        })?;
        Ok(out)
    }
}

/// The index of each segment's last row, for segments of `rows` rows
/// one after another.
pub fn last_rows(rows: impl IntoIterator<Item = usize>) -> Vec<usize> {
    let mut end = 0;
    rows.into_iter()
        .map(|n| {
            end += n;
            end.saturating_sub(1)
        })
        .collect()
}

/// Borrows the parked KV caches of `seqs` (distinct ids), in order; the
/// sequence `current`, whose cache is in the model, gets `None`. A sequence
/// seen for the first time gets a cache from `fresh`, parked from now on.
pub fn parked_caches<'p>(
    parked: &'p mut Vec<(u32, KvCache)>,
    current: u32,
    seqs: &[u32],
    fresh: &dyn Fn() -> KvCache,
) -> Vec<Option<&'p mut KvCache>> {
    for &seq in seqs {
        if seq != current && !parked.iter().any(|(s, _)| *s == seq) {
            parked.push((seq, fresh()));
        }
    }
    let mut out: Vec<Option<&'p mut KvCache>> = seqs.iter().map(|_| None).collect();
    for (s, cache) in parked.iter_mut() {
        if let Some(i) = seqs.iter().position(|q| q == s) {
            out[i] = Some(cache);
        }
    }
    out
}

/// The first id that is listed twice, if any.
pub fn repeated(seqs: &[u32]) -> Option<u32> {
    seqs.iter()
        .enumerate()
        .find(|(i, s)| seqs[..*i].contains(s))
        .map(|(_, &s)| s)
}

#[cfg(test)]
#[path = "segments_tests.rs"]
mod tests;
