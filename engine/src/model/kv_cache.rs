//! Keys and values of past positions, per layer, for the KV heads this
//! process owns. Stored f32, position-major: `[pos][kv_head][head_dim]`.
//! The whole context is reserved up front as address space, so the cache
//! never moves or doubles; a page becomes resident memory only when a
//! position on it is written, so a short session on a long-context model
//! stays small and a full one takes exactly what the plan predicts.

pub struct KvCache {
    layers: Vec<LayerCache>,
    row: usize,
    context: usize,
    len: usize,
}

struct LayerCache {
    k: Vec<f32>,
    v: Vec<f32>,
}

impl KvCache {
    /// `row` = owned KV heads × head_dim.
    pub fn new(n_layers: usize, row: usize, context: usize) -> Self {
        Self {
            layers: (0..n_layers)
                .map(|_| LayerCache {
                    k: Vec::with_capacity(context * row),
                    v: Vec::with_capacity(context * row),
                })
                .collect(),
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

    /// Forgets positions from `pos` on.
    pub fn truncate(&mut self, pos: usize) {
        self.len = self.len.min(pos);
        for l in &mut self.layers {
            l.k.truncate(self.len * self.row);
            l.v.truncate(self.len * self.row);
        }
    }

    /// Appends `k`/`v` rows for layer `layer` at positions `pos..`; the caller
    /// appends every layer for the same positions, then calls [`Self::commit`].
    pub fn append(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let l = &mut self.layers[layer];
        l.k.truncate(pos * self.row);
        l.v.truncate(pos * self.row);
        l.k.extend_from_slice(k);
        l.v.extend_from_slice(v);
    }

    pub fn commit(&mut self, new_len: usize) {
        self.len = new_len;
    }

    /// Keys and values of layer `layer` for positions `0..upto`.
    pub fn layer(&self, layer: usize, upto: usize) -> (&[f32], &[f32]) {
        let l = &self.layers[layer];
        (&l.k[..upto * self.row], &l.v[..upto * self.row])
    }

    /// Bytes a full context would take (for memory prediction).
    pub fn full_bytes(&self) -> usize {
        self.layers.len() * self.context * self.row * 2 * 4
    }

    /// Bytes of the positions held now (the resident part of the cache).
    pub fn used_bytes(&self) -> usize {
        self.layers.len() * self.len * self.row * 2 * 4
    }
}
