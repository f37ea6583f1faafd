//! Writes GGUF v3 files. Owned by the synth work; see `model::synth`.
